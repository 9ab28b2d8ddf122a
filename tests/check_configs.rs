//! `rackboot check` against crafted trees: it reads the boot loaders' own
//! configurations (pxelinux, GRUB, iPXE) under the root, and every problem
//! is reported once, with its file:line and the fix.

use std::path::Path;

use rackboot::check::check;
use rackboot::config::{Cli, Config};

/// Writes `files` (path, contents) under `root`, creating directories.
fn tree(root: &Path, files: &[(&str, &str)]) {
    for (path, contents) in files {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }
}

/// A proxyDHCP configuration serving `root` with these `--boot` entries,
/// on ports that are always free.
fn cli(root: &Path, boot: &[&str]) -> Cli {
    Cli {
        root: Some(root.to_path_buf()),
        boot: boot.iter().map(|b| b.to_string()).collect(),
        listen: vec!["127.0.0.1:0".into()],
        dhcp_port: 0,
        pxe_port: 0,
        ..Cli::default()
    }
}

/// The errors and warnings of `check`, without the warnings about the
/// configuration itself (lines of an imported dnsmasq.conf not run).
fn problems(cli: &Cli) -> Vec<String> {
    let config = Config::resolve(cli).unwrap();
    let own: Vec<String> = config
        .warnings
        .iter()
        .map(|w| format!("warning: {w}"))
        .collect();
    check(&config)
        .into_iter()
        .filter(|f| f.starts_with("error:") || f.starts_with("warning:"))
        .filter(|f| !own.contains(f))
        .collect()
}

/// syslinux 6's BIOS files beside the loader, for a menu.
const SYSLINUX: &[(&str, &str)] = &[
    ("pxelinux.0", "x"),
    ("ldlinux.c32", "x"),
    ("menu.c32", "x"),
    ("libutil.c32", "x"),
];

/// The menu of the dnsmasq + pxelinux guide the seed setup follows.
const GUIDE_MENU: &str = "\
DEFAULT menu.c32
PROMPT 0
TIMEOUT 300
ONTIMEOUT local

MENU TITLE PXE Menu

LABEL ubuntu
    MENU LABEL Ubuntu 22.04 Installer
    KERNEL ubuntu/vmlinuz
    APPEND initrd=ubuntu/initrd.gz ip=dhcp

LABEL local
    MENU LABEL Boot from local disk
    LOCALBOOT 0
";

#[test]
fn seed_tree_gives_its_two_typos_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), SYSLINUX);
    tree(
        dir.path(),
        &[
            ("grubx64.efi", "x"),
            ("ubuntu/vmlinuz", "x"),
            ("ubuntu/initrd.gz", "x"),
            ("pxlinux.cfg/default", GUIDE_MENU),
        ],
    );
    let conf = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dnsmasq/user-proxy.conf");
    let seed = Cli {
        dnsmasq_conf: Some(conf.clone()),
        ..cli(dir.path(), &[])
    };
    let found = problems(&seed);
    assert_eq!(found.len(), 2, "{found:#?}");
    assert!(
        found[0].starts_with(&format!(
            "error: {}:4: boot file pxlinux.0 (",
            conf.display()
        )) && found[0].ends_with("did you mean pxelinux.0?"),
        "{found:#?}"
    );
    assert_eq!(
        found[1],
        "error: pxlinux.cfg: pxelinux.0 reads its configuration from pxelinux.cfg/ and never from pxlinux.cfg/ \
         (did you mean pxelinux.cfg?); rename the directory to pxelinux.cfg"
    );

    // Both fixed: nothing left.
    std::fs::rename(
        dir.path().join("pxlinux.cfg"),
        dir.path().join("pxelinux.cfg"),
    )
    .unwrap();
    let found = problems(&cli(
        dir.path(),
        &["bios=pxelinux.0", "x64-uefi=grubx64.efi"],
    ));
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn missing_module_and_its_libraries() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("boot/pxelinux.0", "x"),
            ("boot/vesamenu.c32", "x"),
            ("boot/libcom32.c32", "x"),
            (
                "boot/pxelinux.cfg/default",
                "ui vesamenu.c32\nlabel hdt\n  com32 hdt.c32\nlabel disk\n  COM32 chain.c32\n  APPEND hd0\n",
            ),
        ],
    );
    let found = problems(&cli(dir.path(), &["bios=boot/pxelinux.0"]));
    assert_eq!(
        found,
        [
            "error: boot/ldlinux.c32: not found: pxelinux.0 loads ldlinux.c32 from beside it before anything else; \
             copy ldlinux.c32 there from the same syslinux version as pxelinux.0",
            "error: boot/pxelinux.cfg/default:3: COM32 module hdt.c32 (boot/hdt.c32) not found under the root; \
             copy it to boot/hdt.c32 or correct the path",
            "error: boot/pxelinux.cfg/default:5: COM32 module chain.c32 (boot/chain.c32) not found under the root; \
             copy it to boot/chain.c32 or correct the path",
            "error: boot/pxelinux.cfg/default:1: vesamenu.c32 needs libutil.c32 beside it and boot/libutil.c32 is \
             not found; copy libutil.c32 there from the same syslinux version",
        ],
        "{found:#?}"
    );
}

#[test]
fn missing_kernel_of_a_menu_entry() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), SYSLINUX);
    tree(
        dir.path(),
        &[
            ("vmlinuz-6.1.0", "x"),
            ("initrd.img-6.1.0", "x"),
            (
                "pxelinux.cfg/default",
                "DEFAULT menu.c32\nMENU TITLE Boot\n\nLABEL debian\n  KERNEL vmlinuz-6.1\n  \
                 APPEND initrd=initrd.img-6.1.0 quiet\nLABEL rescue\n  LINUX /vmlinuz-6.1.0\n  INITRD ::initrd.img-6.1.0\n",
            ),
        ],
    );
    let found = problems(&cli(dir.path(), &["bios=pxelinux.0"]));
    assert_eq!(
        found,
        [
            "error: pxelinux.cfg/default:5: kernel vmlinuz-6.1 not found under the root (did you mean vmlinuz-6.1.0?)"
        ],
        "{found:#?}"
    );
}

#[test]
fn default_naming_no_label_and_include_loops() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), SYSLINUX);
    tree(
        dir.path(),
        &[
            ("vmlinuz", "x"),
            (
                "pxelinux.cfg/default",
                "DEFAULT instal\nINCLUDE pxelinux.cfg/menu.cfg\n",
            ),
            (
                "pxelinux.cfg/menu.cfg",
                "LABEL install\n  KERNEL vmlinuz\nMENU INCLUDE pxelinux.cfg/default\n",
            ),
        ],
    );
    let found = problems(&cli(dir.path(), &["bios=pxelinux.0"]));
    assert_eq!(
        found,
        [
            "error: pxelinux.cfg/menu.cfg:3: include pxelinux.cfg/default includes itself again \
             (pxelinux.cfg/default -> pxelinux.cfg/menu.cfg -> pxelinux.cfg/default), which pxelinux follows until \
             it runs out of memory; remove this include",
            "error: pxelinux.cfg/default:1: default instal names neither a label of this configuration nor a file \
             under the root (did you mean label install?)",
        ],
        "{found:#?}"
    );
}

#[test]
fn grub_cfg_with_one_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("grubnetx64.efi", "x"),
            ("casper/vmlinuz", "x"),
            ("casper/initrd", "x"),
            (
                "grub/grub.cfg",
                "set timeout=5\n\
                 menuentry 'Install Ubuntu' {\n\
                 \tlinux (tftp)/casper/vmlinuz ip=dhcp ---\n\
                 \tinitrd /casper/initrd /casper/firmware.cpio\n\
                 }\n\
                 menuentry 'Local' { chainloader (hd0,gpt1)/EFI/ubuntu/shimx64.efi; }\n\
                 source $prefix/extra.cfg\n",
            ),
        ],
    );
    let found = problems(&cli(dir.path(), &["x64-uefi=grubnetx64.efi"]));
    assert_eq!(
        found,
        [
            "error: grub/grub.cfg:4: initrd /casper/firmware.cpio not found under the root; \
          copy it to casper/firmware.cpio or correct the path"
        ],
        "{found:#?}"
    );
}

#[test]
fn ipxe_script_with_one_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("undionly.kpxe", "x"),
            (
                "boot.ipxe",
                "#!ipxe\ndhcp\nchain tftp://${next-server}/menus/linux.ipxe || shell\n",
            ),
            ("menus/vmlinuz", "x"),
            ("menus/initrd.img", "x"),
            (
                "menus/linux.ipxe",
                "#!ipxe\nkernel vmlinuz quiet\ninitrd initrd.img\ninitrd --name fw firmware.cpio\n\
                 chain http://boot.example.com/other.ipxe\nboot\n",
            ),
        ],
    );
    let mut with_script = cli(dir.path(), &["bios=undionly.kpxe"]);
    with_script.ipxe_script = Some("boot.ipxe".into());
    let found = problems(&with_script);
    assert_eq!(
        found,
        [
            "error: menus/linux.ipxe:4: initrd firmware.cpio (menus/firmware.cpio) not found under the root; \
          copy it to menus/firmware.cpio or correct the path"
        ],
        "{found:#?}"
    );
}

#[test]
fn config_for_one_mac_only() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), SYSLINUX);
    tree(
        dir.path(),
        &[(
            "pxelinux.cfg/01-52-54-00-12-34-56",
            "DEFAULT node\nLABEL node\n  KERNEL nodes/vmlinuz\n  APPEND initrd=nodes/initrd.img\n",
        )],
    );
    let found = problems(&cli(dir.path(), &["bios=pxelinux.0"]));
    assert_eq!(
        found,
        [
            "warning: pxelinux.cfg/default: not found: only the machines with a configuration of their own \
             (01-52-54-00-12-34-56) boot, any other stops at a boot: prompt; create it if others should boot",
            "error: pxelinux.cfg/01-52-54-00-12-34-56:3: kernel nodes/vmlinuz not found under the root; \
             copy it to nodes/vmlinuz or correct the path",
            "error: pxelinux.cfg/01-52-54-00-12-34-56:4: initrd nodes/initrd.img not found under the root; \
             copy it to nodes/initrd.img or correct the path",
        ],
        "{found:#?}"
    );
}

#[test]
fn configurations_cannot_read_outside_the_root() {
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.cfg"), "KERNEL /etc/shadow\n").unwrap();
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), SYSLINUX);
    tree(
        dir.path(),
        &[(
            "pxelinux.cfg/default",
            "INCLUDE ../../etc/passwd\nINCLUDE escape.cfg\nKERNEL http://10.9.9.9/elsewhere\n",
        )],
    );
    std::os::unix::fs::symlink(
        outside.path().join("secret.cfg"),
        dir.path().join("escape.cfg"),
    )
    .unwrap();
    let found = problems(&cli(dir.path(), &["bios=pxelinux.0"]));
    assert_eq!(
        found,
        [
            "error: pxelinux.cfg/default:1: included file ../../etc/passwd leads out of the root, which the server \
             refuses; put the file under the root",
            "error: pxelinux.cfg/default:2: included file escape.cfg cannot be served (Access violation); make it \
             a regular, readable file under the root",
        ],
        "{found:#?}"
    );
}

#[test]
fn per_machine_config_named_the_way_pxelinux_never_asks() {
    let dir = tempfile::tempdir().unwrap();
    tree(dir.path(), SYSLINUX);
    tree(
        dir.path(),
        &[
            ("vmlinuz", "x"),
            ("pxelinux.cfg/default", "DEFAULT vmlinuz\n"),
            ("pxelinux.cfg/52-54-00-12-34-56", "DEFAULT vmlinuz\n"),
        ],
    );
    let found = problems(&cli(dir.path(), &["bios=pxelinux.0"]));
    assert_eq!(
        found,
        [
            "warning: pxelinux.cfg/52-54-00-12-34-56: pxelinux.0 never asks for this name, so no machine reads it \
          (did you mean 01-52-54-00-12-34-56?); rename it"
        ],
        "{found:#?}"
    );
}

#[test]
fn ipxe_paths_through_variables_the_script_sets() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("ubuntu/vmlinuz", "x"),
            (
                "boot.ipxe",
                "#!ipxe\nset base-url http://${next-server}/ubuntu\nkernel ${base-url}/vmlinuz ip=dhcp\n\
                 initrd ${base-url}/initrd\ninitrd ${unknown}/firmware.cpio\n",
            ),
        ],
    );
    let found = problems(&cli(dir.path(), &[]));
    assert_eq!(
        found,
        [
            "error: boot.ipxe:4: initrd http://${next-server}/ubuntu/initrd (ubuntu/initrd) not found under the root; \
          copy it to ubuntu/initrd or correct the path"
        ],
        "{found:#?}"
    );
}

#[test]
fn modules_and_libraries_on_the_path() {
    let dir = tempfile::tempdir().unwrap();
    tree(
        dir.path(),
        &[
            ("pxelinux.0", "x"),
            ("ldlinux.c32", "x"),
            ("modules/menu.c32", "x"),
            ("lib/libutil.c32", "x"),
            ("modules/chain.c32", "x"),
            (
                "pxelinux.cfg/default",
                "PATH modules:lib\nUI menu.c32\nLABEL disk\n  COM32 chain.c32\n",
            ),
        ],
    );
    let found = problems(&cli(dir.path(), &["bios=pxelinux.0"]));
    assert_eq!(
        found,
        [
            "error: pxelinux.cfg/default:4: chain.c32 needs libcom32.c32 beside it and modules/libcom32.c32 is \
          not found; copy libcom32.c32 there from the same syslinux version"
        ],
        "{found:#?}"
    );
}
