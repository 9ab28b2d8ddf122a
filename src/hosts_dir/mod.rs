//! `--hosts-dir DIR`: per-machine rules in a directory, one small file per
//! machine, like dnsmasq's `dhcp-hostsdir` (which OpenStack Ironic drives).
//!
//! A file holds rules for one or more machines, in either of two forms,
//! told apart by content:
//!
//! - rackboot's own, TOML like a `[[mac]]` entry: `mac = "52:54:00:12:34:56"`
//!   with `file = "special/pxelinux.0"` (boot this file) or `ignore = true`
//!   (never answer this machine); several machines as `[[mac]]` tables;
//! - dnsmasq's `dhcp-host` lines, as Ironic writes them:
//!   `52:54:00:12:34:56,set:TAG` (a known machine: it gets the ordinary
//!   answer) and `52:54:00:12:34:56,ignore` (never answered). Addresses,
//!   names and lease times are the DHCP server's business and are passed
//!   over; a leading `dhcp-host=` is accepted.
//!
//! Hidden and editor files (names starting with `.`, ending in `~`,
//! `.swp` or `.tmp`, or `#...#`) are skipped, as dnsmasq does; symlinks are
//! followed (a Kubernetes ConfigMap's entries are symlinks through
//! `..data`). A rule from the directory replaces the main configuration's
//! `[[mac]]` and `ignore_macs` entries for the same MAC (or prefix).
//!
//! The directory (not its files: editors and ConfigMaps replace files by
//! rename) is watched with inotify; after ~100 ms without events the whole
//! directory is read again and the policy rebuilt ([`crate::reload::Live`]).

mod parse;
mod watch;

pub use parse::parse;
pub use watch::watch;

use std::collections::HashMap;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::dhcp::{MacOverride, MacPattern, ProxyConfig};

/// A host file larger than this is refused: they hold a line or two.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// What the directory says of one machine (or MAC prefix).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostAction {
    /// Boot this file (as a `[[mac]]` entry does).
    Boot(String),
    /// Never answer it.
    Ignore,
    /// Known (dnsmasq `set:` tags, no boot rule): the ordinary answer.
    Known,
}

/// One machine's rule and where it was written (`path:line`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostRule {
    pub mac: MacPattern,
    pub action: HostAction,
    pub place: String,
}

/// A reading of the whole directory.
#[derive(Debug, Clone, Default)]
pub struct Hosts {
    /// In file name order, then line order; one per MAC.
    pub rules: Vec<HostRule>,
    /// Files read (hidden and editor files not counted).
    pub files: usize,
}

impl Hosts {
    /// Whether the two readings ask the same of the policy.
    pub fn same_rules(&self, other: &Hosts) -> bool {
        self.rules.len() == other.rules.len()
            && self
                .rules
                .iter()
                .zip(&other.rules)
                .all(|(a, b)| a.mac == b.mac && a.action == b.action)
    }

    /// `N machines from M files`, for the log.
    pub fn summary(&self) -> String {
        format!(
            "{} machine{} from {} file{}",
            self.rules.len(),
            if self.rules.len() == 1 { "" } else { "s" },
            self.files,
            if self.files == 1 { "" } else { "s" }
        )
    }

    /// Puts the rules into `config`: each replaces the main
    /// configuration's `[[mac]]` and `ignore_macs` entries for its MAC.
    pub fn merge_into(&self, config: &mut ProxyConfig) {
        let named = |pattern: &MacPattern| self.rules.iter().any(|r| r.mac == *pattern);
        config.mac.retain(|over| !named(&over.mac));
        config.proxy.ignore_macs.retain(|pattern| !named(pattern));
        for rule in &self.rules {
            match &rule.action {
                HostAction::Boot(file) => config.mac.push(MacOverride::new(rule.mac, file.clone())),
                HostAction::Ignore => config.proxy.ignore_macs.push(rule.mac),
                HostAction::Known => {}
            }
        }
    }
}

/// Whether a directory entry is skipped: hidden, editor backups and swap
/// files, temporary files (dnsmasq skips `.*`, `*~` and `#*#`).
pub fn skipped(name: &[u8]) -> bool {
    name.is_empty()
        || name.starts_with(b".")
        || name.ends_with(b"~")
        || name.ends_with(b".swp")
        || name.ends_with(b".tmp")
        || (name.len() > 1 && name.starts_with(b"#") && name.ends_with(b"#"))
}

/// Reads every file of the directory. The errors name file:line and the
/// fix; any error means the reading is not used.
pub fn read_dir(dir: &Path) -> Result<Hosts, Vec<String>> {
    let entries = fs::read_dir(dir).map_err(|e| {
        vec![format!(
            "{}: cannot read the hosts directory: {e}; create it (mkdir -p {}) or fix --hosts-dir",
            dir.display(),
            dir.display()
        )]
    })?;
    let mut names: Vec<_> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.file_name())
        .filter(|name| !skipped(name.as_bytes()))
        .collect();
    names.sort();
    let mut hosts = Hosts::default();
    let mut errors = Vec::new();
    let mut seen: HashMap<MacPattern, usize> = HashMap::new();
    for name in names {
        let path = dir.join(&name);
        // Following symlinks; one left dangling mid-update is skipped.
        let metadata = match fs::metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        if !metadata.is_file() {
            continue;
        }
        let bytes = match read_limited(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                errors.push(format!("{}: cannot read: {e}", path.display()));
                continue;
            }
        };
        hosts.files += 1;
        match parse(&bytes, &path) {
            Ok(rules) => {
                for rule in rules {
                    match seen.get(&rule.mac) {
                        Some(&i) if hosts.rules[i].action == rule.action => {}
                        Some(&i) => errors.push(format!(
                            "{}: {} already has another rule at {}; keep one of them",
                            rule.place, rule.mac, hosts.rules[i].place
                        )),
                        None => {
                            seen.insert(rule.mac, hosts.rules.len());
                            hosts.rules.push(rule);
                        }
                    }
                }
            }
            Err(e) => errors.extend(e),
        }
    }
    if errors.is_empty() {
        Ok(hosts)
    } else {
        Err(errors)
    }
}

fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    File::open(path)?
        .take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(io::Error::other(format!(
            "larger than {} KiB; a host file holds a line or two",
            MAX_FILE_BYTES / 1024
        )));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::parse::is_toml;
    use super::*;
    use std::time::{Duration, Instant};

    fn mac(text: &str) -> MacPattern {
        text.parse().unwrap()
    }

    fn rules(text: &str) -> Vec<(MacPattern, HostAction)> {
        parse(text.as_bytes(), Path::new("/hosts/m1"))
            .unwrap_or_else(|e| panic!("{e:?}"))
            .into_iter()
            .map(|r| (r.mac, r.action))
            .collect()
    }

    fn errors(text: &str) -> Vec<String> {
        parse(text.as_bytes(), Path::new("/hosts/m1")).unwrap_err()
    }

    #[test]
    fn ironic_lines() {
        let text = "# written by ironic\n\
                    52:54:00:12:34:56,set:a1b2c3,set:ironic\n\
                    \n\
                    52:54:00:12:34:57,ignore\n\
                    52:54:00:12:34:58\n";
        assert_eq!(
            rules(text),
            [
                (mac("52:54:00:12:34:56"), HostAction::Known),
                (mac("52:54:00:12:34:57"), HostAction::Ignore),
                (mac("52:54:00:12:34:58"), HostAction::Known),
            ]
        );
        let placed = parse(text.as_bytes(), Path::new("/hosts/m1")).unwrap();
        assert_eq!(placed[1].place, "/hosts/m1:4");
    }

    #[test]
    fn dnsmasq_lines_as_dnsmasq_writes_them() {
        // dhcp-host= prefix, addresses, names, lease times, several MACs,
        // wildcards, quotes and comments.
        assert_eq!(
            rules(
                "dhcp-host=52:54:00:12:34:56,10.0.0.5,node1,infinite,ignore # retired\n\
                 52:54:00:aa:bb:cc , 52:54:00:aa:bb:cd , set:\"rack 1\" , 12h\n\
                 00:1b:21:*:*:*,ignore\n\
                 52:54:00:00:00:01,id:*,[fd00::5],ignore\n"
            ),
            [
                (mac("52:54:00:12:34:56"), HostAction::Ignore),
                (mac("52:54:00:aa:bb:cc"), HostAction::Known),
                (mac("52:54:00:aa:bb:cd"), HostAction::Known),
                (mac("00:1b:21"), HostAction::Ignore),
                (mac("52:54:00:00:00:01"), HostAction::Ignore),
            ]
        );
        assert!(rules("# nothing yet\n\n").is_empty());
        assert!(rules("").is_empty());
    }

    #[test]
    fn dnsmasq_errors_name_every_bad_line_and_the_fix() {
        let e = errors(
            "52:54:00:12:34:56,ignore\n52:54:zz:12:34:56,ignore\nid:01:02:03,ignore\n10.0.0.5,node\ndhcp-range=10.0.0.0,proxy\n52:*:00:12:34:56\n\"open\n",
        );
        assert_eq!(e.len(), 6, "{e:?}");
        assert!(
            e[0].starts_with("/hosts/m1:2: `52:54:zz:12:34:56` is not a MAC address"),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("/hosts/m1:3: matches a client identifier"),
            "{e:?}"
        );
        assert!(
            e[2].starts_with("/hosts/m1:4: names no MAC address; write MAC"),
            "{e:?}"
        );
        assert!(
            e[3].starts_with("/hosts/m1:5: `dhcp-range=` does not belong"),
            "{e:?}"
        );
        assert!(e[4].starts_with("/hosts/m1:6: "), "{e:?}");
        assert!(e[5].starts_with("/hosts/m1:7: a double quote"), "{e:?}");
    }

    #[test]
    fn rackboot_form_one_machine_or_several() {
        assert_eq!(
            rules("# lab machine\nmac = \"52:54:00:12:34:56\"\nfile = \"special/pxelinux.0\"\n"),
            [(
                mac("52:54:00:12:34:56"),
                HostAction::Boot("special/pxelinux.0".into())
            )]
        );
        assert_eq!(
            rules("prefix = \"00:1b:21\"\nignore = true\n"),
            [(mac("00:1b:21"), HostAction::Ignore)]
        );
        let text = "[[mac]]\nmac = \"52:54:00:00:00:01\"\nfile = \"a.efi\"\n\n\
                    [[mac]]\nmac = \"52:54:00:00:00:02\"\nignore = true\n";
        assert_eq!(
            rules(text),
            [
                (mac("52:54:00:00:00:01"), HostAction::Boot("a.efi".into())),
                (mac("52:54:00:00:00:02"), HostAction::Ignore),
            ]
        );
        let placed = parse(text.as_bytes(), Path::new("/hosts/m1")).unwrap();
        assert_eq!(placed[1].place, "/hosts/m1:6");
    }

    #[test]
    fn rackboot_form_errors_name_the_line_and_the_fix() {
        let e = errors("mac = \"52:54:00:12:34:56\"\nfiel = \"x\"\n");
        assert!(
            e[0].starts_with("/hosts/m1:2: unknown field `fiel`"),
            "{e:?}"
        );
        assert!(e[0].contains("mac, file, ignore"), "{e:?}");
        let e = errors("\nmac = \"52:54:00:12:34:56\"\n");
        assert!(
            e[0].starts_with("/hosts/m1:2: 52:54:00:12:34:56 needs file = \"...\""),
            "{e:?}"
        );
        let e = errors("mac = \"52:54:00:12:34:56\"\nfile = \"x\"\nignore = true\n");
        assert!(e[0].contains("both a file and ignore = true"), "{e:?}");
        let e = errors("mac = \"52:54:00:12:34:5g\"\nfile = \"x\"\n");
        assert!(e[0].starts_with("/hosts/m1:1: bad MAC address"), "{e:?}");
        let e = errors("mac = \"52:54:00:12:34:56\"\nfile = \"x\n");
        assert!(e[0].starts_with("/hosts/m1:2: "), "{e:?}");
        let long = "x".repeat(300);
        let e = errors(&format!("mac = \"52:54:00:12:34:56\"\nfile = \"{long}\"\n"));
        assert!(e[0].contains("at most 255"), "{e:?}");
        let e = errors(
            "[[mac]]\nmac = \"52:54:00:12:34:56\"\nfile = \"a\"\n[[mac]]\nmac = \"52:54:00:12:34:57\"\n",
        );
        assert!(
            e[0].starts_with("/hosts/m1:5: 52:54:00:12:34:57 needs file"),
            "{e:?}"
        );
        let e = parse(
            b"mac = \"52:54:00:12:34:56\"\n\xff\n",
            Path::new("/hosts/m1"),
        )
        .unwrap_err();
        assert!(e[0].starts_with("/hosts/m1:2: not valid UTF-8"), "{e:?}");
    }

    #[test]
    fn the_form_is_told_by_content() {
        assert!(is_toml("# x\nmac = \"52:54:00:12:34:56\"\n"));
        assert!(is_toml("[[mac]]\n"));
        assert!(is_toml("  file=\"a\"\n"));
        assert!(!is_toml("52:54:00:12:34:56,ignore\n"));
        assert!(!is_toml("dhcp-host=52:54:00:12:34:56,ignore\n"));
        assert!(!is_toml("dhcp-host = 52:54:00:12:34:56,ignore\n"));
        assert!(!is_toml("# only a comment\n"));
        assert!(!is_toml("ab:cd:ef:01:02:03\n"));
    }

    #[test]
    fn editor_and_hidden_files_are_skipped() {
        for name in [
            ".hidden", "..data", "m1~", "m1.swp", ".m1.swp", "m1.tmp", "#m1#", "",
        ] {
            assert!(skipped(name.as_bytes()), "{name:?}");
        }
        for name in ["m1", "52:54:00:12:34:56", "node.toml", "#"] {
            assert!(!skipped(name.as_bytes()), "{name:?}");
        }
    }

    #[test]
    fn reading_a_directory() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("b"), "52:54:00:00:00:02,ignore\n").unwrap();
        fs::write(
            d.join("a"),
            "mac = \"52:54:00:00:00:01\"\nfile = \"a.efi\"\n",
        )
        .unwrap();
        fs::write(d.join(".b.swp"), "garbage, not read").unwrap();
        fs::write(d.join("b~"), "garbage, not read").unwrap();
        fs::create_dir(d.join("sub")).unwrap();
        // A ConfigMap's layout: entries are symlinks through `..data`.
        fs::create_dir(d.join("..2026_01")).unwrap();
        fs::write(d.join("..2026_01/c"), "52:54:00:00:00:03,set:x\n").unwrap();
        std::os::unix::fs::symlink("..2026_01", d.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/c", d.join("c")).unwrap();
        std::os::unix::fs::symlink("..data/gone", d.join("dangling")).unwrap();
        let hosts = read_dir(d).unwrap();
        assert_eq!(hosts.files, 3);
        assert_eq!(hosts.summary(), "3 machines from 3 files");
        let found: Vec<_> = hosts
            .rules
            .iter()
            .map(|r| (r.mac, r.action.clone()))
            .collect();
        assert_eq!(
            found,
            [
                (mac("52:54:00:00:00:01"), HostAction::Boot("a.efi".into())),
                (mac("52:54:00:00:00:02"), HostAction::Ignore),
                (mac("52:54:00:00:00:03"), HostAction::Known),
            ]
        );
        // The same MAC twice, the same rule: fine; another rule: an error
        // naming both places.
        fs::write(d.join("d"), "52:54:00:00:00:02,ignore\n").unwrap();
        assert_eq!(read_dir(d).unwrap().rules.len(), 3);
        fs::write(d.join("e"), "# x\n52:54:00:00:00:02,set:known\n").unwrap();
        let e = read_dir(d).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(
            e[0].contains("/e:2: 52:54:00:00:00:02 already has another rule at"),
            "{e:?}"
        );
        assert!(e[0].ends_with("/b:1; keep one of them"), "{e:?}");
        fs::remove_file(d.join("e")).unwrap();
        // Errors in several files are all reported.
        fs::write(d.join("f"), "nonsense\n").unwrap();
        fs::write(d.join("g"), "mac = 1\n").unwrap();
        assert_eq!(read_dir(d).unwrap_err().len(), 2);
        let e = read_dir(&d.join("missing")).unwrap_err();
        assert!(e[0].contains("mkdir -p"), "{e:?}");
    }

    #[test]
    fn directory_rules_replace_the_main_configurations_for_the_same_mac() {
        let mut config = ProxyConfig {
            mac: vec![
                MacOverride::new(mac("52:54:00:00:00:01"), "main.efi"),
                MacOverride::new(mac("52:54:00:00:00:02"), "kept.efi"),
                MacOverride::new(mac("52:54:00:00:00:03"), "dropped.efi"),
            ],
            ..ProxyConfig::default()
        };
        config.proxy.ignore_macs = vec![mac("52:54:00:00:00:04"), mac("00:1b:21")];
        let rule = |m: &str, action| HostRule {
            mac: mac(m),
            action,
            place: String::new(),
        };
        let hosts = Hosts {
            rules: vec![
                rule("52:54:00:00:00:01", HostAction::Boot("dir.efi".into())),
                rule("52:54:00:00:00:03", HostAction::Ignore),
                rule("52:54:00:00:00:04", HostAction::Known),
            ],
            files: 1,
        };
        hosts.merge_into(&mut config);
        let files: Vec<_> = config
            .mac
            .iter()
            .map(|m| (m.mac.to_string(), m.file.as_str()))
            .collect();
        assert_eq!(
            files,
            [
                ("52:54:00:00:00:02".to_owned(), "kept.efi"),
                ("52:54:00:00:00:01".to_owned(), "dir.efi"),
            ]
        );
        assert_eq!(
            config.proxy.ignore_macs,
            [mac("00:1b:21"), mac("52:54:00:00:00:03")]
        );
    }

    #[test]
    fn the_watcher_sees_a_rename_into_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let handle = watch(dir.path().to_owned(), move || {
            let _ = tx.send(Instant::now());
            false
        })
        .unwrap();
        let staged = dir.path().join(".m1.tmp");
        fs::write(&staged, "52:54:00:12:34:56,ignore\n").unwrap();
        let renamed = Instant::now();
        fs::rename(&staged, dir.path().join("m1")).unwrap();
        let seen = rx
            .recv_timeout(Duration::from_secs(2))
            .expect("no change seen");
        let after = seen - renamed;
        assert!(
            after >= Duration::from_millis(90) && after < Duration::from_millis(600),
            "{after:?}"
        );
        handle.join().unwrap();
    }
}
