//! `rackboot init`: lays out a bootable tree from the boot loaders
//! installed on this machine (Debian's `pxelinux`, `syslinux-common` and
//! `ipxe` packages), with a menu and a `rackboot.toml` that serves it.
//!
//! The tree boots every client to one menu whose first entry boots the
//! local disk, as the dnsmasq + pxelinux guide this replaces does: BIOS
//! PXE ROMs get `pxelinux.0` and its menu (`pxelinux.cfg/default`), UEFI
//! firmware gets `snponly.efi` (iPXE over the firmware's own network
//! driver), and every iPXE, the firmware's own or a chained one, gets
//! `boot.ipxe`, an iPXE menu with the same entries.
//!
//! Nothing is half-made: every source file is checked before anything is
//! written (a missing one names its package and the command that installs
//! it); each file is written whole (a temporary file, then a rename); a
//! file that is already there with other contents is kept (`--force`
//! replaces it), so a second `init` changes nothing.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

/// A file of the tree copied from a package: (name in the tree, installed
/// source, Debian package).
type Loader = (&'static str, &'static str, &'static str);

/// Where Debian's packages put the files the tree is made of.
const LOADERS: &[Loader] = &[
    ("pxelinux.0", "/usr/lib/PXELINUX/pxelinux.0", "pxelinux"),
    ("lpxelinux.0", "/usr/lib/PXELINUX/lpxelinux.0", "pxelinux"),
    (
        "ldlinux.c32",
        "/usr/lib/syslinux/modules/bios/ldlinux.c32",
        "syslinux-common",
    ),
    (
        "menu.c32",
        "/usr/lib/syslinux/modules/bios/menu.c32",
        "syslinux-common",
    ),
    (
        "libutil.c32",
        "/usr/lib/syslinux/modules/bios/libutil.c32",
        "syslinux-common",
    ),
    (
        "libcom32.c32",
        "/usr/lib/syslinux/modules/bios/libcom32.c32",
        "syslinux-common",
    ),
    ("undionly.kpxe", "/usr/lib/ipxe/undionly.kpxe", "ipxe"),
    ("snponly.efi", "/usr/lib/ipxe/snponly.efi", "ipxe"),
    ("ipxe.efi", "/usr/lib/ipxe/ipxe.efi", "ipxe"),
];

/// The menu's local-boot entry, as the guide names it.
pub const LOCAL_BOOT: &str = "Boot from Local Disk";

/// pxelinux's menu. `SERIAL 0` shows it on a headless machine's serial
/// console as well as the screen.
const PXELINUX_DEFAULT: &str = "\
# Written by rackboot init. pxelinux reads this file (pxelinux.cfg/ beside
# pxelinux.0) after the per-machine ones (pxelinux.cfg/01-<mac>, <hex ip>).
SERIAL 0 115200
UI menu.c32
MENU TITLE rackboot
TIMEOUT 100
DEFAULT local
LABEL local
  MENU LABEL Boot from Local Disk
  LOCALBOOT 0
";

/// The iPXE menu, for BIOS and UEFI alike: `exit` hands the machine back
/// to its firmware, which boots the next device (the local disk).
const BOOT_IPXE: &str = "\
#!ipxe
# Written by rackboot init: what every iPXE gets instead of a boot file.
# Add entries that load a kernel over HTTP, e.g. (with --http-listen):
#   :install
#   kernel http://${next-server}/debian/linux
#   initrd http://${next-server}/debian/initrd.gz
#   boot
menu rackboot
item local Boot from Local Disk
item shell iPXE shell
choose --timeout 10000 --default local target || goto local
goto ${target}
:local
echo Booting from local disk
exit
:shell
shell
";

/// One file of the tree and what goes in it.
struct Item {
    /// Relative to the root (or the absolute path of the TOML file).
    path: PathBuf,
    contents: Vec<u8>,
}

/// What happened to each file.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Report {
    pub written: Vec<PathBuf>,
    pub unchanged: Vec<PathBuf>,
    /// Already there with other contents, left alone.
    pub kept: Vec<PathBuf>,
}

/// Where `init` writes the TOML for `root`: beside the root directory.
pub fn config_path(root: &Path) -> PathBuf {
    let absolute = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    match absolute.parent() {
        Some(parent) => parent.join("rackboot.toml"),
        None => absolute.join("rackboot.toml"),
    }
}

fn rackboot_toml(root: &Path) -> String {
    let root = std::path::absolute(root).unwrap_or_else(|_| root.to_path_buf());
    format!(
        "# Written by rackboot init: serve it with `rackboot --config {config}`.
# The site's DHCP server keeps handing out addresses; rackboot answers PXE
# clients as a proxy. Limit it to one interface with interface = \"eth0\".
root = {root:?}

[proxy]
ipxe_script = \"boot.ipxe\"        # every iPXE gets the menu, so chainloading never loops

[[boot]]
arch = \"bios\"
file = \"pxelinux.0\"

[[boot]]
arch = \"x64-uefi\"                  # option 93 values 7 and 9
file = \"snponly.efi\"
",
        config = config_path(&root).display(),
        root = root.display().to_string(),
    )
}

/// Reads every source first: `Err` names what is missing and how to
/// install it, before anything is written.
fn plan(root: &Path, loaders: &[Loader]) -> Result<Vec<Item>, String> {
    let mut items = Vec::new();
    let mut missing: Vec<(&str, &str)> = Vec::new();
    for &(name, source, package) in loaders {
        match fs::read(source) {
            Ok(contents) => items.push(Item {
                path: name.into(),
                contents,
            }),
            Err(_) => missing.push((source, package)),
        }
    }
    if !missing.is_empty() {
        let mut packages: Vec<&str> = missing.iter().map(|&(_, p)| p).collect();
        packages.sort_unstable();
        packages.dedup();
        let files: Vec<&str> = missing.iter().map(|&(f, _)| f).collect();
        return Err(format!(
            "missing {}: install the Debian package{} {} (apt-get install {}); nothing was written",
            files.join(", "),
            if packages.len() > 1 { "s" } else { "" },
            packages.join(", "),
            packages.join(" "),
        ));
    }
    items.push(Item {
        path: "pxelinux.cfg/default".into(),
        contents: PXELINUX_DEFAULT.into(),
    });
    items.push(Item {
        path: "boot.ipxe".into(),
        contents: BOOT_IPXE.into(),
    });
    items.push(Item {
        path: config_path(root),
        contents: rackboot_toml(root).into_bytes(),
    });
    Ok(items)
}

/// Lays out the tree under `root`; with `force`, files that differ are
/// replaced too.
pub fn init(root: &Path, force: bool) -> Result<Report, String> {
    init_from(root, force, LOADERS)
}

fn init_from(root: &Path, force: bool, loaders: &[Loader]) -> Result<Report, String> {
    let items = plan(root, loaders)?;
    let mut report = Report::default();
    for item in items {
        let path = root.join(&item.path);
        match fs::read(&path) {
            Ok(existing) if existing == item.contents => {
                report.unchanged.push(path);
                continue;
            }
            Ok(_) if !force => {
                report.kept.push(path);
                continue;
            }
            _ => {}
        }
        write_whole(&path, &item.contents).map_err(|e| format!("{}: {e}", path.display()))?;
        report.written.push(path);
    }
    Ok(report)
}

/// Writes `contents` to a temporary file beside `path`, then renames it
/// over `path`: readers see the old file or the new one, never a part.
fn write_whole(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(contents)?;
    tmp.as_file().sync_all()?;
    // Readable by all, like the packages' own copies (a temporary file
    // starts at 0600).
    use std::os::unix::fs::PermissionsExt;
    tmp.as_file()
        .set_permissions(fs::Permissions::from_mode(0o644))?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Whether `root` is missing or holds nothing: the built-in default may
/// lay out a tree there.
pub fn is_empty_or_missing(root: &Path) -> bool {
    match fs::read_dir(root) {
        Ok(mut entries) => entries.next().is_none(),
        Err(e) => e.kind() == std::io::ErrorKind::NotFound,
    }
}

/// `rackboot init`: lays out the tree and says what it did.
pub fn run(root: &Path, force: bool) -> Result<(), String> {
    let report = init(root, force)?;
    for path in &report.written {
        println!("wrote {}", path.display());
    }
    for path in &report.unchanged {
        println!("unchanged {}", path.display());
    }
    for path in &report.kept {
        println!(
            "kept {}: it differs from what init writes (--force replaces it)",
            path.display()
        );
    }
    println!(
        "serve it with: rackboot --config {}",
        config_path(root).display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaders_installed() -> bool {
        LOADERS
            .iter()
            .all(|&(_, source, _)| Path::new(source).exists())
    }

    #[test]
    fn a_second_init_changes_nothing_and_edits_are_kept() {
        assert!(
            loaders_installed(),
            "the boot loader packages are missing: apt-get install pxelinux syslinux-common ipxe"
        );
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tftp");
        let first = init(&root, false).unwrap();
        assert_eq!(first.written.len(), LOADERS.len() + 3);
        assert!(first.unchanged.is_empty() && first.kept.is_empty());
        assert_eq!(
            fs::read(root.join("pxelinux.0")).unwrap(),
            fs::read("/usr/lib/PXELINUX/pxelinux.0").unwrap()
        );
        let toml = fs::read_to_string(dir.path().join("rackboot.toml")).unwrap();
        assert!(toml.contains(&format!("root = {:?}", root.display().to_string())));

        let second = init(&root, false).unwrap();
        assert!(second.written.is_empty(), "{second:?}");
        assert_eq!(second.unchanged.len(), LOADERS.len() + 3);

        fs::write(root.join("boot.ipxe"), "#!ipxe\nmine\n").unwrap();
        let third = init(&root, false).unwrap();
        assert_eq!(third.kept, vec![root.join("boot.ipxe")]);
        assert_eq!(
            fs::read_to_string(root.join("boot.ipxe")).unwrap(),
            "#!ipxe\nmine\n"
        );
        let forced = init(&root, true).unwrap();
        assert_eq!(forced.written, vec![root.join("boot.ipxe")]);
        assert_eq!(
            fs::read_to_string(root.join("boot.ipxe")).unwrap(),
            BOOT_IPXE
        );
    }

    #[test]
    fn a_missing_package_is_named_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tftp");
        let loaders: Vec<Loader> = LOADERS
            .iter()
            .copied()
            .chain([(
                "grubx64.efi",
                "/nonexistent/grubnetx64.efi",
                "grub-efi-amd64-signed",
            )])
            .collect();
        let err = init_from(&root, false, &loaders).unwrap_err();
        assert!(
            err.contains("/nonexistent/grubnetx64.efi")
                && err.contains("apt-get install grub-efi-amd64-signed")
                && err.contains("nothing was written"),
            "{err}"
        );
        assert!(!root.exists(), "the root was made");
        assert!(!dir.path().join("rackboot.toml").exists());
    }

    #[test]
    fn the_generated_toml_is_a_valid_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tftp");
        let path = dir.path().join("rackboot.toml");
        fs::write(&path, rackboot_toml(&root)).unwrap();
        let cli = crate::config::Cli {
            config: Some(path),
            ..Default::default()
        };
        let config = crate::config::Config::resolve(&cli).unwrap();
        assert_eq!(config.root, root);
        let proxy = config.proxy.expect("boot entries make a proxy");
        assert_eq!(proxy.boot.len(), 2);
    }

    #[test]
    fn menus_boot_the_local_disk_first() {
        assert!(PXELINUX_DEFAULT.contains(&format!("MENU LABEL {LOCAL_BOOT}")));
        assert!(PXELINUX_DEFAULT.contains("LOCALBOOT 0"));
        assert!(BOOT_IPXE.contains(&format!("item local {LOCAL_BOOT}")));
        assert!(BOOT_IPXE.contains("--default local"));
    }
}
