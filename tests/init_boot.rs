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
    for file in [
        "pxelinux.0",
        "ldlinux.c32",
        "menu.c32",
        "pxelinux.cfg/default",
        "snponly.efi",
        "boot.ipxe",
    ] {
        let path = scene.root.join(file);
        scene.check(path.exists(), || {
            format!("init did not write {file}:\n{first}")
        });
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
        replies
            .iter()
            .any(|r| r.arch == "Bios" && r.file == "boot.ipxe"),
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
            transfers
                .iter()
                .any(|t| t.file == file && t.outcome == "Complete"),
            || format!("{file} not transferred: {transfers:?}"),
        );
    }
    scene.check_dhcp_server_not_pxe();
}

mod common;
mod netns;

/// The README's first command, `rackboot` with nothing configured, on a
/// machine whose /srv/tftp is empty: it lays out the tree (one log line
/// says so) and serves it, proxyDHCP included. Run in a network namespace
/// of its own and with a private, empty /srv (a tmpfs in a mount
/// namespace), so it touches neither this machine's network nor its /srv.
#[test]
fn the_bare_command_lays_out_and_serves_the_default_tree() {
    let ns = netns::Netns::create("bare");
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("rackboot.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let script = format!(
        "mount -t tmpfs tmpfs /srv && mkdir /srv/tftp && exec {}",
        pxe::RACKBOOT
    );
    let mut child = ns
        .command("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c", &script])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start rackboot with nothing configured");
    let read_log = || std::fs::read_to_string(&log_path).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !read_log().contains("proxyDHCP on ports 67 and 4011") {
        if std::time::Instant::now() > deadline || child.try_wait().unwrap().is_some() {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "rackboot did not start serving the default tree:\n{}",
                read_log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // The served tree is the init tree: pxelinux.0 as the package has it.
    let got = dir.path().join("pxelinux.0");
    let out = ns
        .command("curl")
        .args(["-s", "--max-time", "10", "-o"])
        .arg(&got)
        .arg("tftp://127.0.0.1/pxelinux.0")
        .output()
        .expect("run curl");
    // Stop only what this test started: the server, by its PID.
    // SAFETY: kill(2) on our own child's PID.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let _ = child.wait();
    let text = read_log();
    assert!(
        out.status.success(),
        "curl failed: {}\n{text}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(&got).unwrap(),
        std::fs::read("/usr/lib/PXELINUX/pxelinux.0").unwrap(),
        "{text}"
    );
    for needle in [
        "nothing configured and /srv/tftp empty: laid out a bootable tree",
        "using /srv/rackboot.toml (written by rackboot init)",
        "serving /srv/tftp over TFTP on 0.0.0.0:69",
    ] {
        assert!(text.contains(needle), "log lacks {needle:?}:\n{text}");
    }
}
