//! Tests of the dnsmasq.conf import.
use super::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/dnsmasq")
        .join(name)
}

fn text(config: &str) -> Result<Imported, ImportError> {
    import_str(config, Path::new("dnsmasq.conf"))
}

fn ok(config: &str) -> Imported {
    text(config).unwrap_or_else(|e| panic!("{e}"))
}

fn err(config: &str) -> String {
    match text(config) {
        Ok(imported) => panic!("imported: {imported:?}"),
        Err(e) => e.to_string(),
    }
}

fn warnings(imported: &Imported) -> Vec<String> {
    imported.warnings.iter().map(Warning::to_string).collect()
}

fn entry(arch: Arch, file: &str, menu: Option<&str>) -> BootEntry {
    let mut entry = BootEntry::new(arch, file);
    entry.menu = menu.map(str::to_owned);
    entry
}

fn fallback(arch: Arch, file: &str) -> BootEntry {
    let mut entry = BootEntry::new(arch, file);
    entry.direct = true;
    entry
}

#[test]
fn imports_the_users_proxy_config() {
    let imported = import(&fixture("user-proxy.conf")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(warnings(&imported), Vec::<String>::new());
    assert!(imported.proxy_enabled);
    assert_eq!(
        imported.proxy_ranges,
        [ProxyRange {
            network: Ipv4Addr::new(10, 10, 10, 0),
            netmask: None
        }]
    );
    assert_eq!(
        imported.proxy.boot,
        [
            entry(Arch::Bios, "pxelinux.0", Some("Network Boot on VLAN 10")),
            entry(Arch::X64Uefi, "grubx64.efi", Some("PXE (UEFI)")),
            // The user's typo stays as written: `rackboot check` reports it.
            fallback(Arch::Ia32Uefi, "pxlinux.0"),
            fallback(Arch::Arm32Uefi, "pxlinux.0"),
            fallback(Arch::Arm64Uefi, "pxlinux.0"),
        ]
    );
    assert_eq!(imported.proxy.proxy.local_boot_menu, None);
    assert_eq!(imported.proxy.proxy.prompt, None);
    assert_eq!(imported.proxy.proxy.vendor_classes, ["PXEClient"]);
    assert!(imported.tftp.enabled);
    assert_eq!(imported.tftp.root.as_deref(), Some(Path::new("/tftpboot")));
    assert!(imported.dns_disabled);
    assert!(imported.log_dhcp);
    assert!(imported.interfaces.is_empty() && !imported.bind_interfaces);
}

#[test]
fn follows_conf_file_relative_to_the_including_file() {
    let imported = import(&fixture("include-main.conf")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        imported.proxy.boot,
        [entry(Arch::Bios, "pxelinux.0", Some("Install Linux"))]
    );
    assert_eq!(
        imported.proxy_ranges[0].netmask,
        Some(Ipv4Addr::new(255, 255, 255, 0))
    );
    // Reading goes on in the including file after the include.
    assert!(imported.log_dhcp);
    let child = fixture("include-pxe.conf");
    assert_eq!(
        imported.warnings,
        [Warning {
            file: child,
            line: 3,
            text: "cache-size: rackboot does not serve DNS; ignored".into()
        }]
    );
    // import_str resolves against the origin's directory too.
    let origin = fixture("virtual.conf");
    let imported = import_str("conf-file=include-pxe.conf", &origin).unwrap();
    assert_eq!(imported.proxy.boot.len(), 1);
}

#[test]
fn refuses_include_loops_and_missing_includes() {
    let e = import(&fixture("loop-a.conf")).unwrap_err();
    assert!(e.file.ends_with("loop-b.conf"), "{e}");
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("includes itself"), "{e}");
    let e = import_str("\nconf-file=nowhere.conf", &fixture("x.conf")).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.starts_with("conf-file: cannot read"), "{e}");
    let e = import_str("conf-file=.", &fixture("x.conf")).unwrap_err();
    assert!(e.message.contains("not a regular file"), "{e}");
    let e = import(&fixture("missing.conf")).unwrap_err();
    assert_eq!(e.line, None);
}

#[test]
fn limits_include_depth() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..20 {
        let next = format!("conf-file=f{}.conf\n", i + 1);
        fs::write(dir.path().join(format!("f{i}.conf")), next).unwrap();
    }
    fs::write(dir.path().join("f20.conf"), "log-dhcp\n").unwrap();
    let e = import(&dir.path().join("f0.conf")).unwrap_err();
    assert!(e.message.contains("nest more than 16"), "{e}");
    fs::write(dir.path().join("f10.conf"), "log-dhcp\n").unwrap();
    assert!(import(&dir.path().join("f0.conf")).unwrap().log_dhcp);
}

#[test]
fn warns_about_other_lines_with_their_line_numbers() {
    let imported = ok("# comment\n\
                       \n\
                       domain-needed\n\
                       dhcp-option=3,10.0.0.1\n\
                       pxe-servce=x86PC,a,b\n\
                       dhcp-range=10.0.0.10,10.0.0.50,12h\n\
                       port=53\n\
                       completely-made-up\n");
    assert_eq!(
        warnings(&imported),
        [
            "dnsmasq.conf:3: domain-needed: rackboot does not serve DNS; ignored",
            "dnsmasq.conf:4: dhcp-option: not a PXE/TFTP option; ignored",
            "dnsmasq.conf:5: pxe-servce: unknown option; ignored (did you mean pxe-service?)",
            "dnsmasq.conf:6: dhcp-range: rackboot serves only proxyDHCP; hand out addresses \
             with your DHCP server (for proxyDHCP write dhcp-range=<network>,proxy); ignored",
            "dnsmasq.conf:7: port: rackboot does not serve DNS; port 53 ignored",
            "dnsmasq.conf:8: completely-made-up: not a PXE/TFTP option; ignored",
        ]
    );
    assert!(!imported.proxy_enabled && !imported.dns_disabled);
}

#[test]
fn quotes_protect_commas_spaces_and_hashes() {
    let imported = ok(
        r#"pxe-service = x86PC , "Install, then \"reboot\" # now" , pxelinux # trailing
pxe-prompt="Press F8, or wait",10
pxe-service=x86PC,Local disk#1"#,
    );
    assert_eq!(
        imported.proxy.boot,
        [entry(
            Arch::Bios,
            "pxelinux.0",
            Some("Install, then \"reboot\" # now")
        )]
    );
    assert_eq!(
        imported.proxy.proxy.prompt,
        Some(Prompt {
            timeout: 10,
            text: "Press F8, or wait".into()
        })
    );
    // `#` not after whitespace is text, as in dnsmasq.
    assert_eq!(
        imported.proxy.proxy.local_boot_menu.as_deref(),
        Some("Local disk#1")
    );
    assert!(imported.warnings.is_empty());
}

#[test]
fn pxe_service_forms() {
    let imported = ok("pxe-service=x86PC,\"Boot from local disk\"\n\
                       pxe-service=x86pc,Linux,linux/pxelinux,10.0.0.5\n\
                       pxe-service=x86PC,iPXE,undionly.kpxe,boot-server\n\
                       pxe-service=7,UEFI,ipxe.efi\n\
                       pxe-service=BC_EFI,Other,other.efi\n\
                       pxe-service=ARM64_EFI,Arm,grubaa64\n\
                       pxe-service=IA64_EFI,Itanium,elilo.efi\n\
                       pxe-service=x86PC,RIS,1\n");
    let mut linux = entry(Arch::Bios, "linux/pxelinux.0", Some("Linux"));
    linux.server = Some(Ipv4Addr::new(10, 0, 0, 5));
    assert_eq!(
        imported.proxy.boot,
        [
            linux,
            entry(Arch::Bios, "undionly.kpxe", Some("iPXE")),
            entry(Arch::X64Uefi, "ipxe.efi", Some("UEFI")),
            entry(Arch::Arm64Uefi, "grubaa64.0", Some("Arm")),
        ]
    );
    assert_eq!(
        imported.proxy.proxy.local_boot_menu.as_deref(),
        Some("Boot from local disk")
    );
    let lines: Vec<usize> = imported.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [2, 3, 5, 7, 8], "{:#?}", imported.warnings);
}

#[test]
fn dhcp_boot_is_the_file_of_architectures_without_pxe_service() {
    let imported = ok("dhcp-range=192.168.0.0,proxy\n\
                       dhcp-boot=undionly.kpxe,,192.168.0.2\n\
                       pxe-service=ARM64_EFI,Arm,grubaa64.efi\n");
    let mut expected = vec![entry(Arch::Arm64Uefi, "grubaa64.efi", Some("Arm"))];
    for arch in [Arch::Bios, Arch::Ia32Uefi, Arch::X64Uefi, Arch::Arm32Uefi] {
        let mut boot = fallback(arch, "undionly.kpxe");
        boot.server = Some(Ipv4Addr::new(192, 168, 0, 2));
        expected.push(boot);
    }
    assert_eq!(imported.proxy.boot, expected);
    assert!(imported.warnings.is_empty());

    // Without pxe-service or pxe-prompt dnsmasq stays silent in proxy mode.
    let imported = ok("dhcp-range=192.168.0.0,proxy\ndhcp-boot=a.0\ndhcp-boot=b.0");
    assert_eq!(imported.proxy.boot.len(), 5);
    assert!(imported.proxy.boot.iter().all(|e| e.file == "b.0"));
    let lines: Vec<usize> = imported.warnings.iter().map(|w| w.line).collect();
    assert_eq!(lines, [3, 3]);
}

#[test]
fn tags_that_require_skip_tags_that_exclude_apply() {
    let imported = ok("dhcp-range=set:lan,10.0.0.0,proxy\n\
                       pxe-service=tag:!ipxe,x86PC,Chain,undionly.kpxe\n\
                       dhcp-boot=tag:ipxe,http://10.0.0.1/boot.ipxe\n\
                       pxe-service=tag:efi,X86-64_EFI,EFI,ipxe.efi\n");
    assert_eq!(
        imported.proxy.boot,
        [entry(Arch::Bios, "undionly.kpxe", Some("Chain"))]
    );
    assert!(imported.proxy_enabled);
    let text = warnings(&imported);
    assert_eq!(text.len(), 4, "{text:#?}");
    assert!(text[2].contains("tagged ipxe") && text[2].contains("proxy.ipxe_script"));
    assert!(text[3].starts_with("dnsmasq.conf:4: pxe-service: skipped"));
}

#[test]
fn other_pxe_and_tftp_options() {
    let imported = ok("dhcp-range=10.0.0.0,proxy,255.255.0.0\n\
                       dhcp-range=10.1.0.0,proxy\n\
                       dhcp-pxe-vendor=PXEClient,HW-Client\n\
                       dhcp-pxe-vendor=Other\n\
                       dhcp-reply-delay=2\n\
                       pxe-prompt=Menu\n\
                       enable-tftp=eth0,eth1\n\
                       tftp-root=/srv/tftp,eth0\n\
                       tftp-secure\n\
                       tftp-max=100\n\
                       tftp-port-range=50000,50100\n\
                       tftp-single-port\n\
                       tftp-lowercase\n\
                       tftp-no-blocksize\n\
                       tftp-mtu=1400\n\
                       interface=eth0,eth1\n\
                       interface=eth2\n\
                       listen-address=10.0.0.1,::1\n\
                       bind-interfaces\n\
                       Log-DHCP\n");
    assert_eq!(imported.proxy_ranges.len(), 2);
    assert_eq!(
        imported.proxy.proxy.vendor_classes,
        ["PXEClient", "HW-Client", "Other"]
    );
    assert_eq!(imported.proxy.proxy.reply_delay_ms, 2000);
    assert_eq!(
        imported.proxy.proxy.prompt,
        Some(Prompt {
            timeout: 255,
            text: "Menu".into()
        })
    );
    let tftp = &imported.tftp;
    assert!(tftp.enabled && tftp.secure && tftp.single_port && tftp.lowercase && tftp.no_blocksize);
    assert_eq!(tftp.interfaces, ["eth0", "eth1"]);
    assert_eq!(tftp.root.as_deref(), Some(Path::new("/srv/tftp")));
    assert_eq!(
        (tftp.max, tftp.port_range, tftp.mtu),
        (Some(100), Some((50000, 50100)), Some(1400))
    );
    assert_eq!(imported.interfaces, ["eth0", "eth1", "eth2"]);
    assert_eq!(
        imported.listen_addresses,
        [
            "10.0.0.1".parse::<IpAddr>().unwrap(),
            "::1".parse().unwrap()
        ]
    );
    assert!(imported.bind_interfaces && imported.log_dhcp);
    assert!(ok("enable-tftp=").tftp.interfaces.is_empty());
    assert_eq!(warnings(&imported).len(), 1, "{:#?}", imported.warnings); // the per-interface root
}

#[test]
fn malformed_values_name_file_line_and_fix() {
    assert_eq!(
        err("log-dhcp\n\n\npxe-service=x86-PC,Linux,pxelinux"),
        "dnsmasq.conf:4: pxe-service: unknown client system type \"x86-PC\" (did you mean x86PC?); \
         use one of x86PC, IA32_EFI, BC_EFI, X86-64_EFI, ARM32_EFI, ARM64_EFI or an option 93 number"
    );
    assert_eq!(
        err("dhcp-range=10.10.10,proxy"),
        "dnsmasq.conf:1: dhcp-range: \"10.10.10\" is not an IPv4 network address"
    );
    assert!(err("dhcp-range=10.0.0.0,proxy,255.0.255.0").contains("not a netmask"));
    assert!(err("dhcp-range=eth0,10.0.0.0,proxy").contains("must follow the network address"));
    assert_eq!(
        err("\ntftp-root"),
        "dnsmasq.conf:2: tftp-root: needs a value: tftp-root=..."
    );
    assert_eq!(
        err("log-dhcp=yes"),
        "dnsmasq.conf:1: log-dhcp: takes no value: write just log-dhcp"
    );
    assert_eq!(
        err("pxe-prompt=\"Press F8"),
        "dnsmasq.conf:1: a double quote is not closed; add the closing \""
    );
    assert!(
        err("pxe-prompt=Menu,300").contains("\"300\" is not a timeout in seconds from 0 to 255")
    );
    assert!(
        err("pxe-service=x86PC,Install, then reboot,pxelinux,10.0.0.1").contains("too many fields")
    );
    assert!(err("pxe-service=x86PC,Install,").contains("empty basename"));
    assert!(err("pxe-service=x86PC").contains("needs a client system type"));
    assert!(err("tftp-port-range=60000,50000").contains("not a range of ports"));
    assert!(err("tftp-max=lots").contains("\"lots\" is not a number of transfers"));
    assert!(err("listen-address=10.0.0.300").contains("not an IP address"));
    assert!(err("port=dns").contains("not a port number"));
    assert!(err("dhcp-boot=").contains("the form is dhcp-boot="));
    assert!(err("dhcp-reply-delay=1s").contains("not a number of seconds"));
    assert!(err("interface=eth0,").contains("empty interface name"));
}

#[test]
fn bad_utf8_is_an_error_outside_comments_only() {
    let imported = import_bytes(b"# d\xe9marrage\nlog-dhcp # \xff\n", Path::new("a.conf")).unwrap();
    assert!(imported.log_dhcp);
    let e = import_bytes(b"log-dhcp\npxe-prompt=D\xe9marrer\n", Path::new("a.conf")).unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("not valid UTF-8"));
}

#[test]
fn windows_line_endings() {
    let imported = ok("log-dhcp\r\ntftp-root=/tftp\r\n");
    assert_eq!(imported.tftp.root.as_deref(), Some(Path::new("/tftp")));
}

/// xorshift64*: deterministic inputs without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[test]
fn never_panics_on_random_input() {
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("fuzz.conf");
    let seed = fs::read(fixture("user-proxy.conf")).unwrap();
    // Exists, so that `conf-file=fuzz.conf` pieces make include loops.
    fs::write(&origin, &seed).unwrap();
    let pieces: Vec<&str> = SUPPORTED
        .iter()
        .copied()
        .chain([
            "=",
            ",",
            "\"",
            "\\",
            "#",
            " ",
            "\n",
            "tag:",
            "tag:!",
            "set:x",
            "proxy",
            "0",
            "255",
            "10.0.0.1",
            "x86PC",
            "BC_EFI",
            "7",
            "16",
            "é",
            "\u{FFFD}",
            "conf-file=fuzz.conf\n",
        ])
        .collect();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for round in 0..3000 {
        let input: Vec<u8> = match round % 3 {
            0 => (0..rng.below(200)).map(|_| rng.next() as u8).collect(),
            1 => (0..rng.below(40))
                .flat_map(|_| pieces[rng.below(pieces.len())].bytes())
                .collect(),
            _ => {
                let mut bytes = seed.clone();
                for _ in 0..=rng.below(8) {
                    let at = rng.below(bytes.len() + 1);
                    match rng.below(3) {
                        0 if at < bytes.len() => bytes[at] = rng.next() as u8,
                        1 if at < bytes.len() => {
                            bytes.remove(at);
                        }
                        _ => bytes.insert(at, b",\"#= \n"[rng.below(6)]),
                    }
                }
                bytes
            }
        };
        let _ = import_bytes(&input, &origin);
        if let Ok(text) = std::str::from_utf8(&input) {
            let _ = import_str(text, &origin);
        }
    }
}

#[test]
fn tftp_unique_root_is_imported() {
    use crate::files::UniqueRoot;
    assert_eq!(
        ok("tftp-unique-root\n").tftp.unique_root,
        Some(UniqueRoot::Ip)
    );
    assert_eq!(
        ok("tftp-unique-root=ip\n").tftp.unique_root,
        Some(UniqueRoot::Ip)
    );
    assert_eq!(
        ok("tftp-unique-root=mac\n").tftp.unique_root,
        Some(UniqueRoot::Mac)
    );
    assert!(err("tftp-unique-root=uuid\n").contains("tftp-unique-root=ip|mac"));
    assert!(warnings(&ok("tftp-unique-root\n")).is_empty());
}
