//! Command line and configuration file.
//!
//! Every flag has a TOML key of the same name (dashes become underscores);
//! flags override the file. Errors name the file, the line, the key and
//! the fix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use serde::Deserialize;

use crate::dhcp::{Arch, BootEntry, ProxyConfig};
use crate::files::RootOptions;
use crate::reactor::proxy::ProxyListen;
use crate::reactor::{IoMode, Settings};
use crate::wire::tftp::MAX_BLKSIZE;

/// Where rackboot serves from when no root is given (Debian's convention).
pub const DEFAULT_ROOT: &str = "/srv/tftp";

#[derive(Debug, Parser, Default)]
#[command(
    name = "rackboot",
    version,
    about = "PXE boot appliance: proxyDHCP, TFTP and HTTP in one binary"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Configuration file (TOML; keys as the flags, dashes as underscores).
    #[arg(global = true, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory served over TFTP [default: /srv/tftp].
    #[arg(global = true, long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Address to listen on for TFTP, IPv4 or IPv6, repeatable; the port
    /// defaults to 69 [default: 0.0.0.0:69].
    #[arg(global = true, long, value_name = "ADDR[:PORT]")]
    pub listen: Vec<String>,
    /// Also serve the root over HTTP on this address, repeatable; the port
    /// defaults to 80 [default: off].
    #[arg(global = true, long, value_name = "ADDR[:PORT]")]
    pub http_listen: Vec<String>,
    /// Serve Prometheus metrics at /metrics on this address; the port
    /// defaults to 9469 [default: off].
    #[arg(global = true, long, value_name = "ADDR[:PORT]")]
    pub metrics_listen: Option<String>,
    /// Open HTTP connections, in all; more are answered 503 with
    /// Retry-After [default: 10000].
    #[arg(global = true, long, value_name = "N")]
    pub max_http_connections: Option<usize>,
    /// Ports for transfer sockets, e.g. 30000:30999 [default: ephemeral].
    #[arg(global = true, long, value_name = "A:B")]
    pub port_range: Option<String>,
    /// Serve every transfer from the listen port, told apart by client
    /// address (for NAT, firewalls and host networking).
    #[arg(global = true, long)]
    pub single_port: bool,
    /// Largest block size granted [default: 65464].
    #[arg(global = true, long, value_name = "BYTES")]
    pub max_blksize: Option<u16>,
    /// Largest window granted (RFC 7440) [default: 64].
    #[arg(global = true, long, value_name = "BLOCKS")]
    pub max_window: Option<u16>,
    /// Number of shards (threads) [default: one per core].
    #[arg(global = true, long, value_name = "N")]
    pub shards: Option<usize>,
    /// I/O backend [default: auto].
    #[arg(global = true, long, value_enum)]
    pub io: Option<IoMode>,
    /// Accept uploads (WRQ), stored atomically inside the root.
    #[arg(global = true, long)]
    pub allow_upload: bool,
    /// Largest upload accepted, in bytes [default: 268435456].
    #[arg(global = true, long, value_name = "BYTES")]
    pub max_upload: Option<u64>,
    /// Concurrent transfers, in all [default: 10000].
    #[arg(global = true, long, value_name = "N")]
    pub max_transfers: Option<usize>,
    /// Concurrent transfers per client address [default: 1000].
    #[arg(global = true, long, value_name = "N")]
    pub max_per_client: Option<usize>,
    /// Run as this user once the ports are bound (NAME, UID or UID:GID;
    /// `root` keeps root) [default, started as root: rackboot, else nobody,
    /// else 65534].
    #[arg(global = true, long, value_name = "NAME")]
    pub user: Option<String>,
    /// Lowercase every requested file name.
    #[arg(global = true, long)]
    pub lowercase: bool,
    /// Retry a missing file name ignoring case.
    #[arg(global = true, long)]
    pub case_insensitive: bool,
    /// Options never answered, for firmware that chokes on them
    /// (blksize, tsize, timeout, windowsize); repeatable.
    #[arg(global = true, long, value_name = "OPTION")]
    pub disable_option: Vec<String>,
    /// Seconds without progress before a transfer is abandoned [default: 10].
    #[arg(global = true, long, value_name = "SECS")]
    pub give_up: Option<u64>,
    /// Answer PXE clients of this architecture with this boot file as a
    /// proxyDHCP server, e.g. bios=pxelinux.0 or x64-uefi=ipxe.efi;
    /// repeatable (the TOML file's [[boot]] entries say more).
    #[arg(global = true, long, value_name = "ARCH=FILE")]
    pub boot: Vec<String>,
    /// What iPXE clients get instead of a boot file (a script or URL).
    #[arg(global = true, long, value_name = "FILE|URL")]
    pub ipxe_script: Option<String>,
    /// Answer DHCP only on this interface.
    #[arg(global = true, long, value_name = "NAME")]
    pub interface: Option<String>,
    /// Serve each client from its own directory, ROOT/<ip>/ or
    /// ROOT/<mac>/ (01-23-45-67-89-ab), where it exists (dnsmasq's
    /// tftp-unique-root). Remap rules are TOML only: [[remap]].
    #[arg(global = true, long, value_enum, value_name = "ip|mac")]
    pub unique_root: Option<crate::files::UniqueRoot>,
    /// Log lines as text or as JSON objects (one per line, the same
    /// fields), for log shippers [default: text].
    #[arg(global = true, long, value_enum, value_name = "FORMAT")]
    pub log_format: Option<LogFormat>,
    /// Run the PXE and TFTP lines of an existing dnsmasq.conf.
    #[arg(global = true, long, value_name = "FILE")]
    pub dnsmasq_conf: Option<PathBuf>,
    /// Per-machine rules, one small file per machine (rackboot's [[mac]]
    /// form or dnsmasq's dhcp-host lines, as dhcp-hostsdir), watched:
    /// changes apply within a second.
    #[arg(global = true, long, value_name = "DIR")]
    pub hosts_dir: Option<PathBuf>,
    /// The control socket for `rackboot status` and `rackboot reload`
    /// (mode 0600); `none` turns it off
    /// [default: /run/rackboot/control.sock].
    #[arg(global = true, long, value_name = "PATH")]
    pub control_socket: Option<PathBuf>,
    /// Machines the boot-status table keeps (the least recently seen go
    /// first) [default: 4096].
    #[arg(global = true, long, value_name = "N")]
    pub status_capacity: Option<usize>,
    /// Move the proxyDHCP ports (for tests in unprivileged setups).
    #[arg(global = true, long, hide = true, default_value_t = 67)]
    pub dhcp_port: u16,
    #[arg(global = true, long, hide = true, default_value_t = 4011)]
    pub pxe_port: u16,
    /// TEST ONLY: once the sandbox is on, try a plain open() of this
    /// absolute path and log the outcome (tests/sandbox.rs); repeatable.
    #[arg(long, hide = true, value_name = "PATH")]
    pub test_open_after_sandbox: Vec<PathBuf>,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Check the configuration without serving: boot files exist under the
    /// root, addresses exist, ports are free.
    Check,
    /// Lay out a bootable tree in the root (default /srv/tftp) from the
    /// installed boot loaders (pxelinux, syslinux-common, ipxe), with a
    /// menu and a rackboot.toml beside the root that serves it.
    Init {
        /// Replace files that differ from what init writes.
        #[arg(long)]
        force: bool,
    },
    /// Follow each booting machine through a packet capture (live on
    /// --interface, or --pcap FILE) and print one verdict per machine in
    /// the firmware's terms (PXE-E51, PXE-E53, PXE-E55, PXE-E32, ...).
    Doctor {
        /// Read this pcap file (Ethernet) instead of capturing live.
        #[arg(long, value_name = "FILE")]
        pcap: Option<PathBuf>,
        /// Follow only this machine (or MAC prefix).
        #[arg(long, value_name = "MAC")]
        mac: Option<crate::dhcp::MacPattern>,
        /// Stop a live capture after this many seconds (default: at Ctrl-C).
        #[arg(long, value_name = "SECS")]
        duration: Option<u64>,
    },
    /// Show what each recent machine's boot reached, from the running
    /// server (its control socket).
    Status {
        /// The whole table as JSON.
        #[arg(long)]
        json: bool,
        /// Refresh every SECS seconds until interrupted [default: 1].
        #[arg(long, value_name = "SECS", num_args = 0..=1, default_missing_value = "1")]
        watch: Option<u64>,
    },
    /// Ask the running server to read its configuration again (as SIGHUP);
    /// exits 1 when the new configuration is refused.
    Reload,
}

/// The configuration file: the same keys as the flags.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub root: Option<PathBuf>,
    pub listen: Option<Vec<String>>,
    pub http_listen: Option<Vec<String>>,
    pub metrics_listen: Option<String>,
    pub max_http_connections: Option<usize>,
    pub port_range: Option<String>,
    pub single_port: Option<bool>,
    pub max_blksize: Option<u16>,
    pub max_window: Option<u16>,
    pub shards: Option<usize>,
    pub io: Option<IoMode>,
    pub allow_upload: Option<bool>,
    pub max_upload: Option<u64>,
    pub max_transfers: Option<usize>,
    pub max_per_client: Option<usize>,
    pub user: Option<String>,
    pub lowercase: Option<bool>,
    pub case_insensitive: Option<bool>,
    pub disable_option: Option<Vec<String>>,
    pub give_up: Option<u64>,
    pub interface: Option<String>,
    pub ipxe_script: Option<String>,
    /// `[proxy]`, `[[boot]]` and `[[mac]]`: see `dhcp::config`.
    pub proxy: Option<crate::dhcp::ProxySettings>,
    pub boot: Option<Vec<crate::dhcp::BootEntry>>,
    pub mac: Option<Vec<crate::dhcp::MacOverride>>,
    pub unique_root: Option<crate::files::UniqueRoot>,
    pub log_format: Option<LogFormat>,
    pub hosts_dir: Option<PathBuf>,
    pub control_socket: Option<PathBuf>,
    pub status_capacity: Option<usize>,
    /// `[[remap]]`: see `files::remap`.
    pub remap: Option<Vec<toml::Spanned<crate::files::RemapRule>>>,
    /// Where each remap rule starts (file:line), for errors.
    #[serde(skip)]
    pub remap_places: Vec<String>,
}

/// The keys of the configuration file, for suggestions.
const KEYS: &[&str] = &[
    "root",
    "listen",
    "http_listen",
    "metrics_listen",
    "max_http_connections",
    "port_range",
    "single_port",
    "max_blksize",
    "max_window",
    "shards",
    "io",
    "allow_upload",
    "max_upload",
    "max_transfers",
    "max_per_client",
    "user",
    "lowercase",
    "case_insensitive",
    "disable_option",
    "give_up",
    "interface",
    "ipxe_script",
    "proxy",
    "boot",
    "mac",
    "unique_root",
    "remap",
    "log_format",
    "hosts_dir",
    "control_socket",
    "status_capacity",
];

/// A configuration error, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn err(msg: impl Into<String>) -> ConfigError {
    ConfigError(msg.into())
}

/// Everything the server needs, resolved from flags, file and defaults.
#[derive(Debug, Clone)]
pub struct Config {
    pub root: PathBuf,
    pub root_options: RootOptions,
    pub settings: Settings,
    pub user: Option<String>,
    /// `--metrics-listen`: where /metrics is served, if anywhere.
    pub metrics_listen: Option<SocketAddr>,
    /// The proxyDHCP policy's configuration, when proxyDHCP is on.
    pub proxy: Option<ProxyConfig>,
    pub proxy_listen: ProxyListen,
    /// Remap rules and per-client roots.
    pub naming: crate::files::Naming,
    /// Where imported boot files were named (file, `path:line`).
    pub origins: Vec<(String, String)>,
    /// Things in the imported configuration rackboot does not run.
    pub warnings: Vec<String>,
    /// `--hosts-dir`: per-machine rules, watched (see `hosts_dir`).
    pub hosts_dir: Option<PathBuf>,
    /// The control socket (`None`: off).
    pub control_socket: Option<PathBuf>,
    /// Machines the boot-status table keeps.
    pub status_capacity: usize,
}

impl Cli {
    /// The log format: the flag, else the configuration file's key (read
    /// before logging starts; a file that does not load says so later).
    pub fn log_format(&self) -> LogFormat {
        self.log_format
            .or_else(|| {
                let path = self.config.as_ref()?;
                FileConfig::load(path).ok()?.log_format
            })
            .unwrap_or_default()
    }
}

impl FileConfig {
    pub fn load(path: &Path) -> Result<FileConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            err(format!(
                "{}: cannot read the configuration file: {e}",
                path.display()
            ))
        })?;
        let mut file: FileConfig = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let place = match line {
                Some(l) => format!("{}:{l}", path.display()),
                None => path.display().to_string(),
            };
            let hint = match e.span().map(|s| &text[s.start.min(text.len())..s.end.min(text.len())]) {
                Some(key) if e.message().contains("unknown field") => match crate::suggest::closest(key, KEYS.iter().copied()) {
                    Some(near) => format!(" (did you mean `{near}`?)"),
                    None => " (the keys are the command-line flags with underscores; see `rackboot --help`)".into(),
                },
                _ => String::new(),
            };
            err(format!("{place}: {}{hint}", e.message().trim()))
        })?;
        file.remap_places = file
            .remap
            .iter()
            .flatten()
            .map(|rule| {
                let line = text[..rule.span().start.min(text.len())]
                    .matches('\n')
                    .count()
                    + 1;
                format!("{}:{line}", path.display())
            })
            .collect();
        Ok(file)
    }
}

/// Compiles the remap rules; a bad one is named with its file:line.
fn naming(
    cli: &Cli,
    file: &FileConfig,
    imported: Option<crate::files::UniqueRoot>,
) -> Result<crate::files::Naming, ConfigError> {
    let rules: Vec<_> = file
        .remap
        .iter()
        .flatten()
        .map(|r| r.get_ref().clone())
        .collect();
    let unique_root = cli.unique_root.or(file.unique_root).or(imported);
    crate::files::Naming::new(&rules, unique_root).map_err(|(index, e)| {
        let place = file.remap_places.get(index).map_or("", String::as_str);
        err(format!(
            "{place}: {e}; fix the expression (the regex crate's syntax)"
        ))
    })
}

/// Parses `ADDR[:PORT]`: `0.0.0.0`, `127.0.0.1:6969`, `::1`, `[::1]:69`.
pub fn parse_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    parse_address(text, "listen", 69)
}

/// Parses an `http_listen` address (`ADDR[:PORT]`, port 80 by default).
pub fn parse_http_listen(text: &str) -> Result<SocketAddr, ConfigError> {
    parse_address(text, "http_listen", 80)
}

fn parse_address(text: &str, key: &str, port: u16) -> Result<SocketAddr, ConfigError> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let bare = text.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<std::net::IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    Err(err(format!(
        "{key}: `{text}` is not an address; write ADDR or ADDR:PORT, e.g. 0.0.0.0:{port}, 127.0.0.1:6969 or [::1]:{port}"
    )))
}

fn parse_port_range(text: &str) -> Result<(u16, u16), ConfigError> {
    let bad = || {
        err(format!(
            "port_range: `{text}` is not A:B with 1 <= A <= B <= 65535, e.g. 30000:30999"
        ))
    };
    let (a, b) = text.split_once([':', '-', ',']).ok_or_else(bad)?;
    let (a, b): (u16, u16) = (
        a.trim().parse().map_err(|_| bad())?,
        b.trim().parse().map_err(|_| bad())?,
    );
    if a == 0 || a > b {
        return Err(bad());
    }
    Ok((a, b))
}

/// The TFTP side of an imported dnsmasq.conf: no `enable-tftp` means
/// another server does TFTP, so rackboot only answers DHCP.
fn apply_dnsmasq_tftp(
    d: &crate::dnsmasq_conf::Imported,
    s: &mut Settings,
    warnings: &mut Vec<String>,
) {
    let t = &d.tftp;
    if !t.enabled {
        s.listen.clear();
        warnings.push(
            "no enable-tftp in the dnsmasq configuration: TFTP is off, proxyDHCP only".into(),
        );
        return;
    }
    if !d.listen_addresses.is_empty() {
        s.listen = d
            .listen_addresses
            .iter()
            .map(|&ip| SocketAddr::new(ip, 69))
            .collect();
    }
    if let Some(max) = t.max {
        s.max_transfers = max.max(1);
    }
    s.port_range = t.port_range.or(s.port_range);
    s.single_port |= t.single_port;
    if t.no_blocksize {
        s.limits.blksize = false;
    }
    if let Some(mtu) = t.mtu {
        s.limits.max_blksize = crate::tftp::options::blksize_for_mtu(mtu, false);
    }
}

/// proxyDHCP is on when any boot entry is configured (TOML, flags, or a
/// dnsmasq.conf with a proxy dhcp-range).
fn proxy_config(
    cli: &Cli,
    file: &FileConfig,
    dnsmasq: Option<&crate::dnsmasq_conf::Imported>,
) -> Result<Option<ProxyConfig>, ConfigError> {
    let mut config = match dnsmasq {
        Some(d) if d.proxy_enabled => d.proxy.clone(),
        _ => ProxyConfig::default(),
    };
    if let Some(p) = &file.proxy {
        config.proxy = p.clone();
    }
    config.boot.extend(file.boot.clone().unwrap_or_default());
    config.mac.extend(file.mac.clone().unwrap_or_default());
    for spec in &cli.boot {
        let (arch, boot_file) = spec.split_once('=').ok_or_else(|| {
            err(format!(
                "--boot {spec}: write ARCH=FILE, e.g. bios=pxelinux.0 or x64-uefi=ipxe.efi"
            ))
        })?;
        let arch: Arch = arch
            .trim()
            .parse()
            .map_err(|e| err(format!("--boot {spec}: {e}")))?;
        config.boot.push(BootEntry::new(arch, boot_file.trim()));
    }
    if let Some(script) = cli.ipxe_script.clone().or(file.ipxe_script.clone()) {
        config.proxy.ipxe_script = Some(script);
    }
    if config.boot.is_empty() && config.mac.is_empty() {
        return Ok(None);
    }
    Ok(Some(config))
}

impl Config {
    /// Merges flags over the file (if any) over the defaults.
    pub fn resolve(cli: &Cli) -> Result<Config, ConfigError> {
        let file = match &cli.config {
            Some(path) => FileConfig::load(path)?,
            None => FileConfig::default(),
        };
        let dnsmasq = match &cli.dnsmasq_conf {
            Some(path) => Some(crate::dnsmasq_conf::import(path).map_err(|e| err(e.to_string()))?),
            None => None,
        };
        let mut s = Settings::default();
        let mut warnings = Vec::new();
        if let Some(d) = &dnsmasq {
            warnings.extend(d.warnings.iter().map(|w| w.to_string()));
            apply_dnsmasq_tftp(d, &mut s, &mut warnings);
        }
        let listen = if cli.listen.is_empty() {
            file.listen.clone().unwrap_or_default()
        } else {
            cli.listen.clone()
        };
        if !listen.is_empty() {
            s.listen = listen
                .iter()
                .map(|l| parse_listen(l))
                .collect::<Result<_, _>>()?;
        }
        let http_listen = if cli.http_listen.is_empty() {
            file.http_listen.clone().unwrap_or_default()
        } else {
            cli.http_listen.clone()
        };
        s.http_listen = http_listen
            .iter()
            .map(|l| parse_http_listen(l))
            .collect::<Result<_, _>>()?;
        if let Some(n) = cli.max_http_connections.or(file.max_http_connections) {
            s.max_http_connections = n.max(1);
        }
        if let Some(range) = cli.port_range.as_ref().or(file.port_range.as_ref()) {
            s.port_range = Some(parse_port_range(range)?);
        }
        s.single_port = cli.single_port || file.single_port.unwrap_or(false);
        if let Some(b) = cli.max_blksize.or(file.max_blksize) {
            if !(8..=MAX_BLKSIZE).contains(&b) {
                return Err(err(format!(
                    "max_blksize: {b} is outside 8..={MAX_BLKSIZE}"
                )));
            }
            s.limits.max_blksize = b;
        }
        if let Some(w) = cli.max_window.or(file.max_window) {
            if w == 0 {
                return Err(err("max_window: must be at least 1 (1 means lock-step)"));
            }
            s.limits.max_window = w;
        }
        if let Some(n) = cli.shards.or(file.shards)
            && n > 0
        {
            s.shards = n;
        }
        s.io = cli.io.or(file.io).unwrap_or_default();
        s.allow_upload = cli.allow_upload || file.allow_upload.unwrap_or(false);
        if let Some(m) = cli.max_upload.or(file.max_upload) {
            s.max_upload = m;
        }
        if let Some(m) = cli.max_transfers.or(file.max_transfers) {
            s.max_transfers = m.max(1);
        }
        if let Some(m) = cli.max_per_client.or(file.max_per_client) {
            s.max_per_client = m.max(1);
        }
        if let Some(g) = cli.give_up.or(file.give_up) {
            if g == 0 {
                return Err(err("give_up: must be at least 1 second"));
            }
            s.timing.give_up = Duration::from_secs(g);
        }
        let disabled = if cli.disable_option.is_empty() {
            file.disable_option.clone().unwrap_or_default()
        } else {
            cli.disable_option.clone()
        };
        for option in &disabled {
            match option.to_ascii_lowercase().as_str() {
                "blksize" => s.limits.blksize = false,
                "tsize" => s.limits.tsize = false,
                "timeout" => s.limits.timeout = false,
                "windowsize" => s.limits.windowsize = false,
                other => {
                    return Err(err(format!(
                        "disable_option: unknown option `{other}`; choose from blksize, tsize, timeout, windowsize"
                    )));
                }
            }
        }
        let imported_tftp = dnsmasq.as_ref().map(|d| &d.tftp);
        let root = cli
            .root
            .clone()
            .or(file.root.clone())
            .or(imported_tftp.and_then(|t| t.root.clone()))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT));
        let root_options = RootOptions {
            lowercase: cli.lowercase
                || file.lowercase.unwrap_or(false)
                || imported_tftp.is_some_and(|t| t.lowercase),
            case_insensitive: cli.case_insensitive || file.case_insensitive.unwrap_or(false),
            owned_only: imported_tftp.is_some_and(|t| t.secure),
        };
        let naming = naming(cli, &file, imported_tftp.and_then(|t| t.unique_root))?;
        let proxy = proxy_config(cli, &file, dnsmasq.as_ref())?;
        let imported_interface = dnsmasq.as_ref().and_then(|d| d.interfaces.first().cloned());
        if dnsmasq.as_ref().is_some_and(|d| d.interfaces.len() > 1) {
            warnings.push(format!(
                "interface: rackboot answers DHCP on one interface; using {} (or on all: remove the interface lines)",
                imported_interface.as_deref().unwrap_or("")
            ));
        }
        let proxy_listen = ProxyListen {
            interface: cli
                .interface
                .clone()
                .or(file.interface.clone())
                .or(imported_interface),
            dhcp_port: cli.dhcp_port,
            pxe_port: cli.pxe_port,
            log_replies: dnsmasq.as_ref().is_none_or(|d| d.log_dhcp),
            subnets: dnsmasq
                .as_ref()
                .map(|d| {
                    d.proxy_ranges
                        .iter()
                        .map(|r| (r.network, r.netmask))
                        .collect()
                })
                .unwrap_or_default(),
        };
        Ok(Config {
            root,
            root_options,
            settings: s,
            user: cli.user.clone().or(file.user.clone()),
            metrics_listen: cli
                .metrics_listen
                .as_ref()
                .or(file.metrics_listen.as_ref())
                .map(|l| parse_address(l, "metrics_listen", 9469))
                .transpose()?,
            proxy,
            proxy_listen,
            naming,
            origins: dnsmasq
                .as_ref()
                .map(|d| {
                    d.origins
                        .iter()
                        .map(|(file, path, line)| {
                            (file.clone(), format!("{}:{line}", path.display()))
                        })
                        .collect()
                })
                .unwrap_or_default(),
            warnings,
            hosts_dir: cli.hosts_dir.clone().or(file.hosts_dir.clone()),
            control_socket: match cli.control_socket.clone().or(file.control_socket.clone()) {
                Some(path) if path.as_os_str() == "none" => None,
                Some(path) => Some(path),
                None => Some(PathBuf::from(crate::status::control::DEFAULT_SOCKET)),
            },
            status_capacity: cli
                .status_capacity
                .or(file.status_capacity)
                .unwrap_or(crate::status::table::DEFAULT_CAPACITY)
                .max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_forms() {
        assert_eq!(
            parse_listen("127.0.0.1:6969").unwrap(),
            "127.0.0.1:6969".parse().unwrap()
        );
        assert_eq!(
            parse_listen("0.0.0.0").unwrap(),
            "0.0.0.0:69".parse().unwrap()
        );
        assert_eq!(parse_listen("::1").unwrap(), "[::1]:69".parse().unwrap());
        assert_eq!(parse_listen("[::1]").unwrap(), "[::1]:69".parse().unwrap());
        assert!(
            parse_listen("localhost")
                .unwrap_err()
                .0
                .contains("ADDR:PORT")
        );
    }

    #[test]
    fn file_errors_name_file_line_and_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rackboot.toml");
        std::fs::write(&path, "root = \"/srv/tftp\"\n\nmax_blocksize = 1468\n").unwrap();
        let e = FileConfig::load(&path).unwrap_err().0;
        assert!(e.contains("rackboot.toml:3"), "{e}");
        assert!(
            e.contains("max_blocksize") && e.contains("max_blksize"),
            "{e}"
        );
        std::fs::write(&path, "max_window = \"lots\"\n").unwrap();
        let e = FileConfig::load(&path).unwrap_err().0;
        assert!(e.contains("rackboot.toml:1"), "{e}");
    }

    #[test]
    fn flags_override_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "max_window = 8\nlisten = [\"127.0.0.1:7000\"]\nport_range = \"30000:30010\"\n",
        )
        .unwrap();
        let cli = Cli {
            config: Some(path),
            max_window: Some(16),
            ..Cli::default()
        };
        let c = Config::resolve(&cli).unwrap();
        assert_eq!(c.settings.limits.max_window, 16);
        assert_eq!(c.settings.listen, vec!["127.0.0.1:7000".parse().unwrap()]);
        assert_eq!(c.settings.port_range, Some((30000, 30010)));
        assert_eq!(c.root, PathBuf::from(DEFAULT_ROOT));
        let bad = Cli {
            port_range: Some("9:1".into()),
            ..Cli::default()
        };
        assert!(Config::resolve(&bad).unwrap_err().0.contains("A:B"));
    }
}
