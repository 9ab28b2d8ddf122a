//! Imports the PXE and TFTP subset of a dnsmasq configuration, so that a
//! dnsmasq proxyDHCP setup moves to rackboot as it is.
//!
//! Pure: it reads the file and its `conf-file=` includes and says what they
//! mean; nothing is checked against the network or the TFTP root (that is
//! `rackboot check`'s job). Every line that is not imported gives a
//! [`Warning`] naming file and line, never a silent drop; a value that makes
//! no sense gives an [`ImportError`] saying what to write instead.
//!
//! Lines are read the way dnsmasq reads them: `key=value` (spaces around `=`
//! allowed), values split at commas with the spaces around them trimmed,
//! double quotes protecting commas, spaces and `#` (with the escapes
//! `\" \\ \t \n \e \b \r` inside), and `#` starting a comment at the start
//! of a line or after whitespace.
//!
//! rackboot has no dnsmasq tags. A line that needs a tag (`tag:efi`) is for
//! some clients only, which rackboot cannot pick out: it is skipped with a
//! warning. A line that only excludes tags (`tag:!ipxe`, the usual guard
//! against chainloading loops) is meant for ordinary clients: it is imported
//! for all of them, with a warning.

use std::borrow::Cow;
use std::fmt;
use std::fs::{self, File};
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use crate::dhcp::{Arch, BootEntry, Prompt, ProxyConfig};
use crate::suggest::closest;

mod line;

pub use line::parse_fields;
use line::parse_line;

/// The largest file read: dnsmasq configurations are a few KiB, and this
/// keeps a stray `conf-file=` from reading something huge.
const MAX_FILE_BYTES: u64 = 1 << 20;
/// How deep `conf-file=` may nest.
const MAX_INCLUDE_DEPTH: usize = 16;

/// What a dnsmasq configuration asks of rackboot.
#[derive(Debug, Clone)]
pub struct Imported {
    /// From `pxe-service`, `pxe-prompt`, `dhcp-boot`, `dhcp-pxe-vendor` and
    /// `dhcp-reply-delay`. There is no local boot item unless a
    /// `pxe-service` defines one (dnsmasq shows none by default).
    pub proxy: ProxyConfig,
    /// A `dhcp-range=<network>,proxy` line was seen.
    pub proxy_enabled: bool,
    pub proxy_ranges: Vec<ProxyRange>,
    pub tftp: TftpImport,
    /// `interface=`, in order.
    pub interfaces: Vec<String>,
    /// `listen-address=`, in order.
    pub listen_addresses: Vec<IpAddr>,
    pub bind_interfaces: bool,
    /// `port=0`: dnsmasq's DNS server was off.
    pub dns_disabled: bool,
    pub log_dhcp: bool,
    /// Lines not imported, or imported with a difference, in reading order.
    pub warnings: Vec<Warning>,
    /// Where each boot file was named (`pxe-service`, `dhcp-boot`), for
    /// findings about it.
    pub origins: Vec<(String, PathBuf, usize)>,
}

/// A `dhcp-range=<network>,proxy[,<netmask>]` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProxyRange {
    pub network: Ipv4Addr,
    pub netmask: Option<Ipv4Addr>,
}

/// The TFTP options.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TftpImport {
    /// `enable-tftp`.
    pub enabled: bool,
    /// `enable-tftp=<interface>[,<interface>]`: serve TFTP only there.
    pub interfaces: Vec<String>,
    /// `tftp-root=`, as written.
    pub root: Option<PathBuf>,
    /// `tftp-secure`: serve only files owned by the server's user.
    pub secure: bool,
    /// `tftp-max=`: concurrent transfers.
    pub max: Option<usize>,
    /// `tftp-port-range=<first>,<last>`.
    pub port_range: Option<(u16, u16)>,
    pub single_port: bool,
    pub lowercase: bool,
    pub no_blocksize: bool,
    pub mtu: Option<u32>,
    /// `tftp-unique-root[=ip|mac]`.
    pub unique_root: Option<crate::files::UniqueRoot>,
}

/// A line that was not imported, or not exactly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub file: PathBuf,
    pub line: usize,
    pub text: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: {}", self.file.display(), self.line, self.text)
    }
}

/// Why a configuration cannot be imported, and what to write instead.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportError {
    pub file: PathBuf,
    /// `None` when the file itself cannot be read.
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.message),
            None => write!(f, "{}: {}", self.file.display(), self.message),
        }
    }
}

impl std::error::Error for ImportError {}

/// Imports the dnsmasq configuration at `path` and the files it includes
/// (`conf-file=`, relative to the including file's directory).
pub fn import(path: &Path) -> Result<Imported, ImportError> {
    let bytes = read_config(path).map_err(|reason| ImportError {
        file: path.to_owned(),
        line: None,
        message: format!("cannot read the dnsmasq configuration: {reason}"),
    })?;
    import_bytes(&bytes, path)
}

/// Imports configuration text as if read from `origin` (which names it in
/// messages and anchors relative `conf-file=` paths). Never panics.
pub fn import_str(text: &str, origin: &Path) -> Result<Imported, ImportError> {
    import_bytes(text.as_bytes(), origin)
}

/// [`import_str`] for raw file contents: a line that is not UTF-8 is an
/// error unless the bad bytes are in a comment.
pub fn import_bytes(bytes: &[u8], origin: &Path) -> Result<Imported, ImportError> {
    let mut importer = Importer::new(origin);
    importer.read(bytes, origin)?;
    importer.finish();
    Ok(importer.out)
}

/// The supported options, for "did you mean".
#[rustfmt::skip]
const SUPPORTED: &[&str] = &[
    "dhcp-range", "pxe-service", "pxe-prompt", "dhcp-boot", "dhcp-pxe-vendor", "dhcp-reply-delay",
    "enable-tftp", "tftp-root", "tftp-secure", "tftp-max", "tftp-port-range", "tftp-single-port",
    "tftp-lowercase", "tftp-no-blocksize", "tftp-mtu", "tftp-unique-root", "interface",
    "listen-address", "bind-interfaces", "port", "log-dhcp", "conf-file",
];

/// dnsmasq's DNS options: warned about as such.
#[rustfmt::skip]
const DNS_OPTIONS: &[&str] = &[
    "server", "local", "address", "domain", "no-resolv", "resolv-file", "no-poll", "cache-size",
    "no-hosts", "addn-hosts", "hostsdir", "expand-hosts", "domain-needed", "bogus-priv",
    "log-queries", "strict-order", "all-servers", "no-negcache", "neg-ttl", "local-ttl",
    "max-ttl", "min-cache-ttl", "cname", "mx-host", "srv-host", "txt-record", "ptr-record",
    "host-record", "dnssec", "trust-anchor", "rebind-domain-ok", "stop-dns-rebind", "ipset",
    "nftset", "filterwin2k", "local-service", "edns-packet-max", "query-port", "servers-file",
    "auth-server", "auth-zone",
];

/// Other real dnsmasq options (DHCP server, daemon): told apart from typos.
#[rustfmt::skip]
const OTHER_OPTIONS: &[&str] = &[
    "dhcp-host", "dhcp-hostsfile", "dhcp-hostsdir", "dhcp-option", "dhcp-option-force",
    "dhcp-optsfile", "dhcp-optsdir", "dhcp-match", "dhcp-name-match", "dhcp-vendorclass",
    "dhcp-userclass", "dhcp-mac", "dhcp-circuitid", "dhcp-remoteid", "dhcp-subscrid",
    "dhcp-ignore", "dhcp-ignore-names", "dhcp-generate-names", "dhcp-broadcast",
    "dhcp-authoritative", "dhcp-leasefile", "dhcp-lease-max", "dhcp-no-override",
    "dhcp-script", "dhcp-sequential-ip", "dhcp-rapid-commit", "dhcp-relay", "dhcp-proxy",
    "dhcp-alternate-port", "dhcp-option-pxe", "dhcp-ttl", "tag-if", "bootp-dynamic",
    "no-ping", "leasefile-ro", "enable-ra", "ra-param", "user", "group", "pid-file",
    "log-facility", "log-async", "keep-in-foreground", "no-daemon", "except-interface",
    "no-dhcp-interface", "bind-dynamic", "conf-dir", "tftp-no-fail",
    "quiet-dhcp", "log-debug",
];

/// Leading tag fields of options that take conditions (dnsmasq's
/// `is_tag_prefix`).
const CONDITION_TAGS: &[&str] = &["tag:", "net:"];
/// `dhcp-range` also takes `set:`, which names the range.
const RANGE_TAGS: &[&str] = &["tag:", "set:", "net:"];

/// dnsmasq's `pxe-service` client system types (its CSA table) and what
/// rackboot serves them as. dnsmasq 2.9x has X86-64_EFI as 7 and BC_EFI as
/// 9, older ones the other way round: both are x64 UEFI here.
const CLIENT_SYSTEMS: [(&str, Option<Arch>); 12] = [
    ("x86PC", Some(Arch::Bios)),
    ("PC98", None),
    ("IA64_EFI", None),
    ("Alpha", None),
    ("Arc_x86", None),
    ("Intel_Lean_Client", None),
    ("IA32_EFI", Some(Arch::Ia32Uefi)),
    ("X86-64_EFI", Some(Arch::X64Uefi)),
    ("Xscale_EFI", None),
    ("BC_EFI", Some(Arch::X64Uefi)),
    ("ARM32_EFI", Some(Arch::Arm32Uefi)),
    ("ARM64_EFI", Some(Arch::Arm64Uefi)),
];

/// The last untagged `dhcp-boot`, applied once every `pxe-service` is known.
struct DhcpBoot {
    file: String,
    server: Option<Ipv4Addr>,
    at: (PathBuf, usize),
}

/// Reading state: the result so far and where we are.
struct Importer {
    out: Imported,
    file: PathBuf,
    line: usize,
    /// The option of the current line: prefixes its messages.
    key: String,
    /// Files being read, outermost first, canonicalised: including one of
    /// them again is a loop.
    open_files: Vec<PathBuf>,
    /// dnsmasq uses the last untagged `dhcp-boot`.
    dhcp_boot: Option<DhcpBoot>,
    /// The first `dhcp-pxe-vendor` replaces the default `PXEClient`.
    pxe_vendor_seen: bool,
    /// Whether a `pxe-service` or `pxe-prompt` line was seen (tagged or
    /// not): without one dnsmasq ignores PXE clients in proxy mode.
    pxe_enabled: bool,
    /// Whether the menu order difference was told (once is enough).
    local_boot_order_warned: bool,
}

impl Importer {
    fn new(origin: &Path) -> Self {
        let mut proxy = ProxyConfig::default();
        proxy.proxy.local_boot_menu = None;
        Importer {
            out: Imported {
                proxy,
                proxy_enabled: false,
                proxy_ranges: Vec::new(),
                tftp: TftpImport::default(),
                interfaces: Vec::new(),
                listen_addresses: Vec::new(),
                bind_interfaces: false,
                dns_disabled: false,
                log_dhcp: false,
                warnings: Vec::new(),
                origins: Vec::new(),
            },
            file: origin.to_owned(),
            line: 0,
            key: String::new(),
            open_files: Vec::new(),
            dhcp_boot: None,
            pxe_vendor_seen: false,
            pxe_enabled: false,
            local_boot_order_warned: false,
        }
    }

    /// Reads one file's contents; `path` names it.
    fn read(&mut self, bytes: &[u8], path: &Path) -> Result<(), ImportError> {
        let outer = (
            std::mem::replace(&mut self.file, path.to_owned()),
            self.line,
        );
        self.open_files.push(identity(path));
        for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
            self.line = index + 1;
            self.key.clear();
            self.read_line(raw)?;
        }
        self.open_files.pop();
        (self.file, self.line) = outer;
        Ok(())
    }

    fn read_line(&mut self, raw: &[u8]) -> Result<(), ImportError> {
        let (text, lossy) = match std::str::from_utf8(raw) {
            Ok(text) => (Cow::Borrowed(text), false),
            Err(_) => (String::from_utf8_lossy(raw), true),
        };
        let Some(line) = parse_line(&text).map_err(|message| self.error(message))? else {
            return Ok(());
        };
        let replaced = |s: &str| s.contains(char::REPLACEMENT_CHARACTER);
        if lossy && (replaced(&line.key) || line.value.iter().flatten().any(|f| replaced(f))) {
            return Err(self.error("this line is not valid UTF-8; save the file as UTF-8"));
        }
        self.key = line.key;
        let key = self.key.clone();
        self.option(&key, line.value)
    }

    fn option(&mut self, key: &str, value: Option<Vec<String>>) -> Result<(), ImportError> {
        match key {
            "dhcp-range" => self.dhcp_range(&self.required(value)?),
            "pxe-service" => self.pxe_service(&self.required(value)?),
            "pxe-prompt" => self.pxe_prompt(&self.required(value)?),
            "dhcp-boot" => self.dhcp_boot(&self.required(value)?),
            "dhcp-pxe-vendor" => self.dhcp_pxe_vendor(&self.required(value)?),
            "dhcp-reply-delay" => self.dhcp_reply_delay(&self.required(value)?),
            "enable-tftp" => {
                self.out.tftp.enabled = true;
                // A bare `enable-tftp=` means every interface, as no value does.
                let interfaces = value.filter(|v| *v != [""]).unwrap_or_default();
                self.out.tftp.interfaces.extend(self.names(&interfaces)?);
                Ok(())
            }
            "tftp-root" => self.tftp_root(&self.required(value)?),
            "tftp-secure" => self.flag(value).map(|()| self.out.tftp.secure = true),
            "tftp-max" => {
                let max = self.single(&self.required(value)?, "tftp-max=<transfers>")?;
                self.out.tftp.max = Some(self.number(&max, "a number of transfers")?);
                Ok(())
            }
            "tftp-port-range" => self.tftp_port_range(&self.required(value)?),
            "tftp-single-port" => self.flag(value).map(|()| self.out.tftp.single_port = true),
            "tftp-lowercase" => self.flag(value).map(|()| self.out.tftp.lowercase = true),
            "tftp-unique-root" => self.tftp_unique_root(value),
            "tftp-no-blocksize" => self.flag(value).map(|()| self.out.tftp.no_blocksize = true),
            "tftp-mtu" => {
                let mtu = self.single(&self.required(value)?, "tftp-mtu=<bytes>")?;
                self.out.tftp.mtu = Some(self.number(&mtu, "an MTU in bytes")?);
                Ok(())
            }
            "interface" => {
                let names = self.names(&self.required(value)?)?;
                self.out.interfaces.extend(names);
                Ok(())
            }
            "listen-address" => {
                for field in self.required(value)? {
                    let address = self.number(&field, "an IP address")?;
                    self.out.listen_addresses.push(address);
                }
                Ok(())
            }
            "bind-interfaces" => self.flag(value).map(|()| self.out.bind_interfaces = true),
            "port" => self.port(&self.required(value)?),
            "log-dhcp" => self.flag(value).map(|()| self.out.log_dhcp = true),
            "conf-file" => self.conf_file(&self.required(value)?),
            _ => {
                self.unsupported(key);
                Ok(())
            }
        }
    }

    /// `dhcp-range=[set:<tag>,]<network>,proxy[,<netmask>]`.
    fn dhcp_range(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let (tags, fields) = split_tags(fields, RANGE_TAGS);
        let is_proxy = fields
            .get(1)
            .is_some_and(|f| f.eq_ignore_ascii_case("proxy"));
        if !is_proxy {
            if fields.iter().any(|f| f.eq_ignore_ascii_case("proxy")) {
                return Err(self.error(
                    "\"proxy\" must follow the network address, as in dhcp-range=10.0.0.0,proxy",
                ));
            }
            self.warn(
                "rackboot serves only proxyDHCP; hand out addresses with your DHCP server \
                 (for proxyDHCP write dhcp-range=<network>,proxy); ignored",
            );
            return Ok(());
        }
        let network: Ipv4Addr = self.number(&fields[0], "an IPv4 network address")?;
        let netmask = match fields.get(2).filter(|f| !f.is_empty()) {
            Some(mask) => Some(self.netmask(mask)?),
            None => None,
        };
        if !tags.is_empty() {
            self.warn(format!(
                "{} ignored: rackboot has no tags; the range is imported",
                tags.join(",")
            ));
        }
        if fields.len() > 3 {
            self.warn("fields after the netmask ignored: a proxy range hands out no leases");
        }
        self.out.proxy_enabled = true;
        self.out.proxy_ranges.push(ProxyRange { network, netmask });
        Ok(())
    }

    /// `pxe-service=[tag:<tag>,]<CSA>,<menu text>[,<basename>|<boot service type>][,<server>]`.
    fn pxe_service(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let (tags, fields) = split_tags(fields, CONDITION_TAGS);
        if fields.len() < 2 {
            return Err(self.error(
                "needs a client system type and a menu text, as in \
                 pxe-service=x86PC,\"Install Linux\",pxelinux",
            ));
        }
        if fields.len() > 4 {
            return Err(self.error(
                "too many fields (quote a menu text that contains commas); the form is \
                 pxe-service=<client system type>,<menu text>[,<basename>][,<server address>]",
            ));
        }
        let client_system = client_system(&fields[0]).map_err(|message| self.error(message))?;
        let target = match fields.get(2) {
            Some(target) if target.is_empty() => {
                return Err(self.error(
                    "empty basename: give a file name, or drop the trailing comma for a local boot item",
                ));
            }
            target => target,
        };
        self.pxe_enabled = true;
        if !self.tags_allow(tags) {
            return Ok(());
        }
        let Some(arch) = client_system else {
            self.warn(format!(
                "client system type {} is not one rackboot serves; ignored",
                fields[0]
            ));
            return Ok(());
        };
        let menu = fields[1].clone();
        let server = match fields.get(3).filter(|f| !f.is_empty()) {
            Some(server) => self.server_address(server),
            None => None,
        };
        match target {
            None => self.local_boot(arch, menu),
            Some(number) if number.bytes().all(|b| b.is_ascii_digit()) => {
                if number.bytes().all(|b| b == b'0') {
                    self.local_boot(arch, menu);
                } else {
                    self.warn(format!(
                        "boot service type {number} ignored: rackboot does not send clients \
                         looking for other boot servers; give a file name instead"
                    ));
                }
            }
            Some(basename) => {
                let file = boot_file_name(basename);
                if arch == Arch::Bios
                    && self.out.proxy.proxy.local_boot_menu.is_some()
                    && !self.local_boot_order_warned
                {
                    self.local_boot_order_warned = true;
                    self.warn("follows the local boot item in dnsmasq's menu; rackboot lists the local boot item last");
                }
                let differs_from_first = (self.out.proxy.boot.iter())
                    .find(|e| e.arch == arch && arch != Arch::Bios)
                    .map(|first| first.file != file || first.server != server);
                if let Some(differs) = differs_from_first {
                    // BC_EFI and X86-64_EFI lines with the same file are the
                    // usual cover for firmware that swaps 7 and 9: no news.
                    if differs {
                        self.warn(format!(
                            "a second {arch} entry: only BIOS clients get a menu, the others boot the first entry; ignored"
                        ));
                    }
                    return Ok(());
                }
                self.out
                    .origins
                    .push((file.clone(), self.file.clone(), self.line));
                let mut entry = BootEntry::new(arch, file);
                entry.menu = Some(menu);
                entry.server = server;
                self.out.proxy.boot.push(entry);
            }
        }
        Ok(())
    }

    /// A `pxe-service` without a file: the BIOS menu's local boot item.
    fn local_boot(&mut self, arch: Arch, menu: String) {
        if arch != Arch::Bios {
            self.warn(format!(
                "a local boot item for {arch}: only BIOS clients get a menu; ignored"
            ));
        } else if self.out.proxy.proxy.local_boot_menu.is_some() {
            self.warn("a second local boot item: rackboot has one; ignored");
        } else {
            self.out.proxy.proxy.local_boot_menu = Some(menu);
        }
    }

    /// `pxe-prompt=[tag:<tag>,]<prompt>[,<timeout>]`.
    fn pxe_prompt(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let (tags, fields) = split_tags(fields, CONDITION_TAGS);
        let form = "the form is pxe-prompt=<prompt>[,<timeout in seconds>]; quote a prompt that contains commas";
        let (text, timeout) = match fields {
            [text] => (text, None),
            [text, timeout] => (text, Some(timeout).filter(|t| !t.is_empty())),
            _ => return Err(self.error(form)),
        };
        // Without a timeout dnsmasq waits for the user (255).
        let timeout = match timeout {
            Some(timeout) => self.number(timeout, "a timeout in seconds from 0 to 255")?,
            None => u8::MAX,
        };
        self.pxe_enabled = true;
        if !self.tags_allow(tags) {
            return Ok(());
        }
        if self.out.proxy.proxy.prompt.is_some() {
            self.warn("a second pxe-prompt: rackboot uses the last one");
        }
        self.out.proxy.proxy.prompt = Some(Prompt {
            timeout,
            text: text.clone(),
        });
        Ok(())
    }

    /// `dhcp-boot=[tag:<tag>,]<file>[,<server name>[,<server address>]]`.
    fn dhcp_boot(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let (tags, fields) = split_tags(fields, CONDITION_TAGS);
        let file = match fields {
            [file, ..] if !file.is_empty() && fields.len() <= 3 => file.clone(),
            _ => {
                return Err(self.error(
                    "the form is dhcp-boot=<file>[,<server name>[,<server address>]], as in \
                     dhcp-boot=pxelinux.0",
                ));
            }
        };
        if !self.tags_allow(tags) {
            return Ok(());
        }
        if let Some(name) = fields.get(1).filter(|f| !f.is_empty()) {
            self.warn(format!(
                "server name {name:?} not sent: rackboot names the server by address"
            ));
        }
        let server = match fields.get(2).filter(|f| !f.is_empty()) {
            Some(server) => self.server_address(server),
            None => None,
        };
        if self.dhcp_boot.is_some() {
            self.warn("a second dhcp-boot: the last one is used, as in dnsmasq");
        }
        self.dhcp_boot = Some(DhcpBoot {
            file,
            server,
            at: (self.file.clone(), self.line),
        });
        Ok(())
    }

    /// `dhcp-pxe-vendor=<vendor>[,...]`: replaces the default `PXEClient`.
    fn dhcp_pxe_vendor(&mut self, fields: &[String]) -> Result<(), ImportError> {
        if fields.iter().any(|f| f.is_empty()) {
            return Err(self.error(
                "empty vendor class; the form is dhcp-pxe-vendor=PXEClient[,HW-Client...]",
            ));
        }
        if !self.pxe_vendor_seen {
            self.pxe_vendor_seen = true;
            self.out.proxy.proxy.vendor_classes.clear();
        }
        self.out
            .proxy
            .proxy
            .vendor_classes
            .extend(fields.iter().cloned());
        Ok(())
    }

    /// `dhcp-reply-delay=[tag:<tag>,]<seconds>`.
    fn dhcp_reply_delay(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let (tags, fields) = split_tags(fields, CONDITION_TAGS);
        let seconds = self.single(fields, "dhcp-reply-delay=<seconds>")?;
        let seconds: u32 = self.number(&seconds, "a number of seconds")?;
        if self.tags_allow(tags) {
            self.out.proxy.proxy.reply_delay_ms = u64::from(seconds) * 1000;
        }
        Ok(())
    }

    /// `tftp-root=<directory>[,<interface>]`.
    fn tftp_root(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let (root, interface) = match fields {
            [root] if !root.is_empty() => (root, None),
            [root, interface] if !root.is_empty() => (root, Some(interface)),
            _ => return Err(self.error("the form is tftp-root=<directory>")),
        };
        if let Some(interface) = interface {
            self.warn(format!(
                "the root is not limited to interface {interface:?}: rackboot has one root for all"
            ));
        }
        if self.out.tftp.root.is_some() {
            self.warn("a second tftp-root: the last one is used");
        }
        let root = PathBuf::from(root);
        if root.is_relative() {
            self.warn("a relative root is taken from the directory rackboot runs in; write an absolute path");
        }
        self.out.tftp.root = Some(root);
        Ok(())
    }

    /// `tftp-unique-root[=ip|mac]` (ip when bare, as in dnsmasq).
    fn tftp_unique_root(&mut self, value: Option<Vec<String>>) -> Result<(), ImportError> {
        use crate::files::UniqueRoot;
        let kind = match value.as_deref() {
            None => UniqueRoot::Ip,
            Some([v]) if v == "ip" => UniqueRoot::Ip,
            Some([v]) if v == "mac" => UniqueRoot::Mac,
            _ => return Err(self.error("the form is tftp-unique-root or tftp-unique-root=ip|mac")),
        };
        self.out.tftp.unique_root = Some(kind);
        Ok(())
    }

    /// `tftp-port-range=<first>,<last>`.
    fn tftp_port_range(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let [first, last] = fields else {
            return Err(self.error("the form is tftp-port-range=<first port>,<last port>"));
        };
        let first: u16 = self.number(first, "a port number")?;
        let last: u16 = self.number(last, "a port number")?;
        if first == 0 || first > last {
            return Err(self.error(format!(
                "{first},{last} is not a range of ports; write the lower port first, neither 0"
            )));
        }
        self.out.tftp.port_range = Some((first, last));
        Ok(())
    }

    /// `port=<port>`: 0 turns dnsmasq's DNS off; rackboot serves no DNS anyway.
    fn port(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let port = self.single(fields, "port=<port>")?;
        let port: u16 = self.number(&port, "a port number")?;
        self.out.dns_disabled = port == 0;
        if port != 0 {
            self.warn(format!("rackboot does not serve DNS; port {port} ignored"));
        }
        Ok(())
    }

    /// `conf-file=<file>`, relative to the including file's directory.
    fn conf_file(&mut self, fields: &[String]) -> Result<(), ImportError> {
        let name = self.single(fields, "conf-file=<file>")?;
        if name.is_empty() {
            return Err(self.error("the form is conf-file=<file>"));
        }
        let path = match self.file.parent() {
            Some(dir) => dir.join(&name),
            None => PathBuf::from(&name),
        };
        if self.open_files.len() >= MAX_INCLUDE_DEPTH {
            return Err(self.error(format!(
                "includes nest more than {MAX_INCLUDE_DEPTH} deep; is there a loop?"
            )));
        }
        let id = identity(&path);
        if self.open_files.contains(&id) {
            let chain: Vec<String> = (self.open_files.iter().chain([&id]))
                .map(|p| p.display().to_string())
                .collect();
            return Err(self.error(format!(
                "{} includes itself ({}); remove one of the conf-file lines",
                path.display(),
                chain.join(" -> ")
            )));
        }
        let bytes = read_config(&path)
            .map_err(|reason| self.error(format!("cannot read {}: {reason}", path.display())))?;
        self.read(&bytes, &path)
    }

    /// Warns about an option rackboot does not import.
    fn unsupported(&mut self, key: &str) {
        let text = if DNS_OPTIONS.contains(&key) {
            "rackboot does not serve DNS; ignored".to_owned()
        } else if OTHER_OPTIONS.contains(&key) {
            "not a PXE/TFTP option; ignored".to_owned()
        } else if let Some(near) = closest(key, SUPPORTED.iter().copied()) {
            format!("unknown option; ignored (did you mean {near}?)")
        } else {
            "not a PXE/TFTP option; ignored".to_owned()
        };
        self.warn(text);
    }

    /// Whether a line with these condition tags is imported (see the module
    /// documentation), warning when tags are dropped.
    fn tags_allow(&mut self, tags: &[String]) -> bool {
        if tags.is_empty() {
            return true;
        }
        // Tag names follow the 4-byte prefix; `!` (or the old `#`) negates.
        let required: Vec<&str> = tags
            .iter()
            .map(|t| &t[4..])
            .filter(|name| !name.starts_with(['!', '#']))
            .collect();
        if required.is_empty() {
            self.warn(format!(
                "{} ignored: rackboot has no tags, so this applies to every client",
                tags.join(",")
            ));
            return true;
        }
        let hint = if required
            .iter()
            .any(|n| n.to_ascii_lowercase().contains("ipxe"))
        {
            "; to give iPXE a script, set proxy.ipxe_script"
        } else {
            ""
        };
        self.warn(format!(
            "skipped: it applies only to clients tagged {}, and rackboot has no tags{hint}",
            required.join(",")
        ));
        false
    }

    /// A server field: an IPv4 address, or a host name rackboot cannot use.
    fn server_address(&mut self, server: &str) -> Option<Ipv4Addr> {
        match server.parse() {
            Ok(address) => Some(address),
            Err(_) => {
                self.warn(format!(
                    "server {server:?} ignored: rackboot needs an IPv4 address; the default TFTP server is used"
                ));
                None
            }
        }
    }

    fn netmask(&self, text: &str) -> Result<Ipv4Addr, ImportError> {
        let mask: Ipv4Addr = self.number(text, "a netmask like 255.255.255.0")?;
        let bits = u32::from(mask);
        if bits.leading_ones() + bits.trailing_zeros() != 32 {
            return Err(self.error(format!(
                "{text} is not a netmask; write one like 255.255.255.0"
            )));
        }
        Ok(mask)
    }

    /// Interface names: none may be empty.
    fn names(&self, fields: &[String]) -> Result<Vec<String>, ImportError> {
        if fields.iter().any(|f| f.is_empty()) {
            return Err(self.error("empty interface name; the form is <name>[,<name>...]"));
        }
        Ok(fields.to_vec())
    }

    /// The value of an option that needs one.
    fn required(&self, value: Option<Vec<String>>) -> Result<Vec<String>, ImportError> {
        value.ok_or_else(|| self.error(format!("needs a value: {}=...", self.key)))
    }

    /// The one field of an option that takes exactly one.
    fn single(&self, fields: &[String], form: &str) -> Result<String, ImportError> {
        match fields {
            [field] => Ok(field.clone()),
            _ => Err(self.error(format!("the form is {form}"))),
        }
    }

    fn flag(&self, value: Option<Vec<String>>) -> Result<(), ImportError> {
        match value {
            None => Ok(()),
            Some(_) => Err(self.error(format!("takes no value: write just {}", self.key))),
        }
    }

    fn number<T: FromStr>(&self, text: &str, what: &str) -> Result<T, ImportError> {
        text.parse()
            .map_err(|_| self.error(format!("{text:?} is not {what}")))
    }

    /// Turns the last `dhcp-boot` into entries, now that every `pxe-service`
    /// is known. dnsmasq sends its file, in the offer itself (discovery
    /// control 8), to any PXE client whose architecture no `pxe-service`
    /// names: so it becomes a `direct` entry for each such architecture. It
    /// never overrides a `pxe-service`.
    fn finish(&mut self) {
        let Some(boot) = self.dhcp_boot.take() else {
            return;
        };
        let (at_file, at_line) = boot.at.clone();
        self.out.origins.push((boot.file.clone(), at_file, at_line));
        for arch in Arch::ALL.into_iter().filter(|a| !a.is_http()) {
            if !self.out.proxy.boot.iter().any(|e| e.arch == arch) {
                let mut entry = BootEntry::new(arch, boot.file.clone());
                entry.server = boot.server;
                entry.direct = true;
                self.out.proxy.boot.push(entry);
            }
        }
        if self.out.proxy_enabled && !self.pxe_enabled {
            let (file, line) = boot.at;
            self.out.warnings.push(Warning {
                file,
                line,
                text:
                    "dhcp-boot: dnsmasq answers PXE clients in proxy mode only when a pxe-service \
                       or pxe-prompt line is present, so it did not offer this file; rackboot will"
                        .to_owned(),
            });
        }
    }

    fn error(&self, message: impl Into<String>) -> ImportError {
        ImportError {
            file: self.file.clone(),
            line: Some(self.line),
            message: self.prefixed(message.into()),
        }
    }

    fn warn(&mut self, text: impl Into<String>) {
        let text = self.prefixed(text.into());
        self.out.warnings.push(Warning {
            file: self.file.clone(),
            line: self.line,
            text,
        });
    }

    fn prefixed(&self, text: String) -> String {
        if self.key.is_empty() {
            text
        } else {
            format!("{}: {text}", self.key)
        }
    }
}

/// A `pxe-service` client system type: `Ok(None)` for one dnsmasq knows but
/// rackboot does not serve.
fn client_system(name: &str) -> Result<Option<Arch>, String> {
    if let Some((_, arch)) = CLIENT_SYSTEMS
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        return Ok(*arch);
    }
    // dnsmasq also takes the option 93 number.
    if !name.is_empty() && name.bytes().all(|b| b.is_ascii_digit()) {
        let arch = name.parse().ok().and_then(Arch::from_code);
        return Ok(arch.filter(|a| !a.is_http()));
    }
    let hint = closest(name, CLIENT_SYSTEMS.iter().map(|(n, _)| *n))
        .map(|n| format!(" (did you mean {n}?)"))
        .unwrap_or_default();
    Err(format!(
        "unknown client system type {name:?}{hint}; use one of x86PC, IA32_EFI, BC_EFI, \
         X86-64_EFI, ARM32_EFI, ARM64_EFI or an option 93 number"
    ))
}

/// The file a `pxe-service` basename stands for: since 2.76 dnsmasq asks
/// for `<basename>.<layer>` (layer 0 in practice) unless the basename has a
/// dot anywhere, whatever the architecture (`pxelinux` → `pxelinux.0`).
fn boot_file_name(basename: &str) -> String {
    if basename.contains('.') {
        basename.to_owned()
    } else {
        format!("{basename}.0")
    }
}

/// Leading tag fields (`tag:x`, `tag:!x`, ...) and the rest.
fn split_tags<'a>(fields: &'a [String], prefixes: &[&str]) -> (&'a [String], &'a [String]) {
    let count = fields
        .iter()
        .take_while(|f| prefixes.iter().any(|p| f.starts_with(p)))
        .count();
    fields.split_at(count)
}

/// The same file under whatever name it is reached by, when it exists.
fn identity(path: &Path) -> PathBuf {
    fs::canonicalize(path).unwrap_or_else(|_| path.to_owned())
}

/// A configuration file's bytes; only regular files, so that a
/// `conf-file=` naming a FIFO or a device cannot block or run forever.
fn read_config(path: &Path) -> Result<Vec<u8>, String> {
    let metadata = fs::metadata(path).map_err(|e| e.to_string())?;
    if !metadata.is_file() {
        return Err("not a regular file (dnsmasq's conf-dir is not followed: name each file with conf-file)".into());
    }
    let file = File::open(path).map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(format!(
            "larger than {} KiB; is it a dnsmasq configuration?",
            MAX_FILE_BYTES / 1024
        ));
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests;
