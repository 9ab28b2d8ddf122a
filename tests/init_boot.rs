//! `rackboot init` on a clean root, then real firmware in QEMU (the
//! harness of tests/pxe/): a BIOS machine (SeaBIOS with QEMU's iPXE ROM)
//! and a UEFI machine (OVMF with EDK2's own PXE, which boots snponly.efi)
//! each reach the menu the tree holds, with nothing else added; and a
//! second `init` changes nothing.
//!
//! Needs root and the packages of .ci/install.sh (qemu-system-x86, ovmf,
//! ipxe-qemu, ipxe, pxelinux, syslinux-common, dnsmasq, iproute2); a
//! missing one fails the test with its name.

mod pxe;

use std::path::{Path, PathBuf};
use std::process::Command;

use pxe::qemu::Machine;
use pxe::{BIOS_BOOT_TIMEOUT, Scene, UEFI_BOOT_TIMEOUT};

const MENU_ENTRY: &str = "Boot from Local Disk";

/// Runs `rackboot init --root ROOT`; its standard output.
fn init(root: &Path) -> String {
    let out = Command::new(pxe::RACKBOOT)
        .args(["init", "--root"])
        .arg(root)
        .output()
        .expect("run rackboot init");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "rackboot init failed:\n{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn config_beside(root: &Path) -> PathBuf {
    root.parent().unwrap().join("rackboot.toml")
}

/// Lays out the tree, checks a second init leaves every file as it was,
/// starts rackboot on the generated configuration and boots `machine`
/// until the menu shows.
fn boot_to_menu(test: &str, n: u8, machine: Machine, timeout: std::time::Duration) -> Scene {
    machine.require();
    let mut scene = Scene::new(test, n);
    let first = init(&scene.root);
    for file in ["pxelinux.0", "ldlinux.c32", "menu.c32", "pxelinux.cfg/default", "snponly.efi", "boot.ipxe"] {
        let path = scene.root.join(file);
        scene.check(path.exists(), || format!("init did not write {file}:\n{first}"));
        scene.check(first.contains(&format!("wrote {}", path.display())), || {
            format!("init did not say it wrote {file}:\n{first}")
        });
    }
    let config = config_beside(&scene.root);
    let stamps = |root: &Path| -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut all = vec![config.clone()];
        for entry in walk(root) {
            all.push(entry);
        }
        all.into_iter()
            .map(|p| {
                let m = std::fs::metadata(&p).unwrap().modified().unwrap();
                (p, m)
            })
            .collect()
    };
    let before = stamps(&scene.root);
    let second = init(&scene.root);
    scene.check(
        !second.contains("wrote ") && second.matches("unchanged ").count() == before.len(),
        || format!("a second init changed something:\n{second}"),
    );
    scene.check(stamps(&scene.root) == before, || {
        "a second init touched a file".into()
    });

    scene.start_rackboot_raw(&["--config", config.to_str().unwrap()]);
    scene.boot(machine);
    scene.wait_serial(0, MENU_ENTRY, timeout);
    scene.stop_vm();
    scene
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn bios_boots_an_initialised_root_to_the_menu() {
    let scene = boot_to_menu("init-bios", 29, Machine::SeaBiosIpxeRom, BIOS_BOOT_TIMEOUT);
    // The iPXE ROM got the menu script directly.
    let replies = pxe::proxy_lines(&scene.rackboot_log());
    scene.check(
        replies.iter().any(|r| r.arch == "Bios" && r.file == "boot.ipxe"),
        || format!("no Bios offer naming boot.ipxe: {replies:?}"),
    );
    scene.check_dhcp_server_not_pxe();
}

#[test]
fn uefi_boots_an_initialised_root_to_the_menu() {
    let scene = boot_to_menu("init-uefi", 30, Machine::OvmfPxe, UEFI_BOOT_TIMEOUT);
    // EDK2's PXE booted snponly.efi, whose iPXE then got the menu script.
    let transfers = pxe::tftp_lines(&scene.rackboot_log());
    for file in ["snponly.efi", "boot.ipxe"] {
        scene.check(
            transfers.iter().any(|t| t.file == file && t.outcome == "Complete"),
            || format!("{file} not transferred: {transfers:?}"),
        );
    }
    scene.check_dhcp_server_not_pxe();
}
