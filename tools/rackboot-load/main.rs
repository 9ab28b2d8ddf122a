//! rackboot-load: simulated PXE clients against any TFTP server (or, with
//! `--scenario dhcp`, any PXE proxyDHCP server; with `--protocol http` or
//! `--kernel-over http`, any HTTP server too), for benchmark runs and for
//! checking a server before a rack boots from it.
//!
//! One thread drives thousands of clients over non-blocking UDP and TCP
//! sockets (see `engine`); each client is a small sans-IO state machine
//! (`client` for TFTP, `http` for HTTP/1.1 on one kept-alive connection,
//! `dhcp` for the proxyDHCP exchange) following a plan (`scenario`);
//! `report` prints the summary and writes JSON and SVG. The exit code is 0
//! only if every client succeeded.
//!
//! ```text
//! rackboot-load --server 127.0.0.1:6969 --scenario pxelinux --clients 200 \
//!     --verify-dir /srv/tftp --json run.json --svg run.svg --progress
//! rackboot-load --server 127.0.0.1:6969 --file big.img --clients 16 \
//!     --blksize 1468 --windowsize 16 --tsize --repeat-for 10
//! rackboot-load --server 127.0.0.1:6969 --scenario abandon --file big.img \
//!     --clients 5000 --duration 10 --source-ips 127.0.0.2-127.0.0.254
//! rackboot-load --server 127.0.0.1:6767 --pxe-port 4011 --scenario dhcp \
//!     --clients 10000 --dhcp-arch 7 --concurrency 512 --json dhcp.json
//! # HTTP: 64 clients, each GETting a kernel then an initrd on one connection
//! rackboot-load --protocol http --http-server 127.0.0.1:8080 --clients 64 \
//!     --file vmlinuz --file initrd.img --verify-dir /srv/tftp --json h1.json
//! # a rack booting lpxelinux: modules and configuration over TFTP, then
//! # the kernel and initrd over HTTP
//! rackboot-load --server 127.0.0.1:6969 --scenario pxelinux --clients 1000 \
//!     --kernel-over http --http-server 127.0.0.1:8080 --verify-dir /srv/tftp
//! ```

mod client;
mod dhcp;
mod engine;
mod http;
mod report;
mod scenario;

use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;

use client::{Ask, Retry};
use scenario::{LocalFiles, Params, Protocol, Scenario};

/// The block size pxelinux asks for.
const PXELINUX_BLKSIZE: u16 = 1408;
/// Most source addresses `--source-ips` may name.
const MAX_SOURCES: u32 = 65_536;

#[derive(Debug, Parser)]
#[command(
    name = "rackboot-load",
    version,
    about = "Simulated PXE clients against a TFTP, HTTP or proxyDHCP server: throughput, completion times, failures"
)]
struct Cli {
    /// The TFTP server to load (for `--scenario dhcp`: the proxyDHCP
    /// server's DHCP port, normally 67). Not needed when everything goes
    /// over HTTP to --http-server.
    #[arg(long, value_name = "ADDR:PORT")]
    server: Option<SocketAddr>,
    /// The HTTP server for `--protocol http` and `--kernel-over http`
    /// [default: --server's address, port 80].
    #[arg(long, value_name = "ADDR:PORT")]
    http_server: Option<SocketAddr>,
    /// Simulated clients in all.
    #[arg(long, default_value_t = 1, value_name = "N")]
    clients: usize,
    /// Clients running at once [default: all of them].
    #[arg(long, value_name = "C")]
    concurrency: Option<usize>,
    /// What each client does.
    #[arg(long, value_enum, default_value_t = Scenario::File)]
    scenario: Scenario,
    /// File for the `file` and `abandon` scenarios; repeat it for several
    /// files, fetched in order in each pass (`file` only).
    #[arg(long, value_name = "NAME")]
    file: Vec<String>,
    /// How the `file` scenario fetches its files: TFTP, or HTTP/1.1 GETs
    /// on one kept-alive connection per client.
    #[arg(long, value_enum, default_value_t = Protocol::Tftp)]
    protocol: Protocol,
    /// How the `pxelinux` scenario fetches the kernel and initrd (after
    /// the modules and configuration over TFTP): `http` as lpxelinux.0
    /// does with `http://` paths, on one connection per boot.
    #[arg(long, value_enum, default_value_t = Protocol::Tftp, value_name = "PROTOCOL")]
    kernel_over: Protocol,
    /// Block size to ask for; 0 asks for none [default: 1408 for pxelinux,
    /// none otherwise].
    #[arg(long, value_name = "BYTES")]
    blksize: Option<u16>,
    /// Window size to ask for (RFC 7440) [default: none, lock-step].
    #[arg(long, value_name = "BLOCKS", value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: Option<u16>,
    /// Ask for tsize (always done by the pxelinux scenario, as pxelinux does).
    #[arg(long)]
    tsize: bool,
    /// Kernel fetched at the end of the pxelinux scenario.
    #[arg(long, default_value = "vmlinuz", value_name = "NAME")]
    kernel: String,
    /// Initrd fetched after the kernel.
    #[arg(long, default_value = "initrd.img", value_name = "NAME")]
    initrd: String,
    /// Skip the kernel and initrd in the pxelinux scenario.
    #[arg(long)]
    no_kernel: bool,
    /// Local copy of the server's root: every block (HTTP: every body
    /// byte) is compared with it. Without it, only the length is checked
    /// against tsize (HTTP: Content-Length).
    #[arg(long, value_name = "DIR")]
    verify_dir: Option<PathBuf>,
    /// Spread client starts evenly over this many seconds [default: 10 for
    /// abandon, 0 (all at once) otherwise].
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// Clients start their plan over until this many seconds have passed
    /// (for steady-state measurements); percentiles are per pass.
    #[arg(long, value_name = "SECS")]
    repeat_for: Option<f64>,
    /// Hard stop: after this many seconds everything ends and unfinished
    /// clients count as failed.
    #[arg(long, default_value_t = 300.0, value_name = "SECS")]
    duration_limit: f64,
    /// Client retry interval: silence after which the RRQ or last ACK is
    /// sent again. HTTP: a response that starts later is counted as
    /// unanswered.
    #[arg(long, default_value_t = 1000, value_name = "MS")]
    timeout_ms: u64,
    /// Retransmissions in a row before a transfer fails. HTTP: a request
    /// fails after --timeout-ms x --retries without progress.
    #[arg(long, default_value_t = 5, value_name = "N")]
    retries: u32,
    /// Write the summary as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Write a picture: throughput over time and completion-time CDF.
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Source addresses to spread clients over, e.g. 127.0.0.2-127.0.0.254
    /// (comma-separated addresses or ranges) [default: any].
    #[arg(long, value_name = "A-B")]
    source_ips: Option<String>,
    /// A live progress line on stderr.
    #[arg(long)]
    progress: bool,
    /// `dhcp`: the client architecture (option 93): 0 BIOS, 7 or 9 x64
    /// UEFI, 16 x64 UEFI HTTP boot.
    #[arg(long, default_value_t = 0, value_name = "ARCH", value_parser = parse_arch)]
    dhcp_arch: u16,
    /// `dhcp`: the boot server port REQUESTs go to, on the --server address.
    #[arg(long, default_value_t = 4011, value_name = "PORT")]
    pxe_port: u16,
    /// `dhcp`: act as a relay agent with this address (giaddr): OFFERs come
    /// back to ADDR:67, which the tool binds [default: a free 127.0.67.x
    /// for a loopback server, else this host's address toward the server].
    #[arg(long, value_name = "ADDR", conflicts_with = "dhcp_broadcast")]
    dhcp_relay: Option<Ipv4Addr>,
    /// `dhcp`: no relay; receive the OFFERs broadcast to port 68, as
    /// clients on the server's own segment do.
    #[arg(long)]
    dhcp_broadcast: bool,
    /// `dhcp`: also accept a 4011 ACK with the client's address in yiaddr
    /// and ciaddr 0 (dnsmasq's boot-item form), to compare with dnsmasq.
    #[arg(long)]
    dhcp_swapped_ack: bool,
}

fn parse_arch(text: &str) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|a| dhcp::ARCHES.contains(a))
        .ok_or_else(|| format!("expected one of {:?}", dhcp::ARCHES))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("rackboot-load: {e}");
            ExitCode::from(2)
        }
    }
}

/// Runs the load; `Ok(true)` when every client succeeded.
fn run(cli: &Cli) -> Result<bool, String> {
    let seconds = |name: &str, v: f64| {
        if (0.0..1e7).contains(&v) {
            Ok(Duration::from_secs_f64(v))
        } else {
            Err(format!("--{name} {v}: expected a number of seconds"))
        }
    };
    if cli.clients == 0 {
        return Err("--clients must be at least 1".into());
    }
    let params = Params {
        scenario: cli.scenario,
        files: cli.file.clone(),
        protocol: cli.protocol,
        kernel: (!cli.no_kernel).then(|| cli.kernel.clone()),
        initrd: (!cli.no_kernel).then(|| cli.initrd.clone()),
        kernel_over: cli.kernel_over,
    };
    let (server, http_server) = servers(cli, &params)?;
    let pxelinux = cli.scenario == Scenario::Pxelinux;
    let ask = Ask {
        blksize: match cli.blksize {
            Some(0) => None,
            Some(b) if b < 8 => return Err(format!("--blksize {b}: RFC 2348 allows 8 to 65464")),
            Some(b) => Some(b.min(65464)),
            None => pxelinux.then_some(PXELINUX_BLKSIZE),
        },
        windowsize: cli.windowsize,
        tsize: cli.tsize || pxelinux,
    };
    let spread = match (cli.duration, cli.scenario) {
        (Some(d), _) => seconds("duration", d)?,
        (None, Scenario::Abandon) => Duration::from_secs(10),
        (None, _) => Duration::ZERO,
    };
    let retry = Retry {
        interval: Duration::from_millis(cli.timeout_ms.max(1)),
        max: cli.retries,
    };
    let settings = engine::Settings {
        server,
        concurrency: cli.concurrency.unwrap_or(cli.clients).max(1),
        sources: match &cli.source_ips {
            Some(text) => parse_sources(text, server)?,
            None => Vec::new(),
        },
        spread,
        repeat_for: cli
            .repeat_for
            .map(|r| seconds("repeat-for", r))
            .transpose()?,
        limit: seconds("duration-limit", cli.duration_limit)?,
        ask,
        retry,
        progress: cli.progress,
        dhcp: if cli.scenario == Scenario::Dhcp {
            Some(dhcp_setup(cli, server)?)
        } else {
            None
        },
        http: http_server.map(|server| engine::HttpTarget {
            server,
            stall: retry.interval.saturating_mul(retry.max.max(1)),
            answer_within: retry.interval,
        }),
    };
    if settings.dhcp.is_some() && cli.clients > engine::MAX_DHCP_CLIENTS {
        return Err(format!(
            "--clients {}: the dhcp scenario has distinct MACs for at most {}",
            cli.clients,
            engine::MAX_DHCP_CLIENTS
        ));
    }
    let mut local = LocalFiles::new(cli.verify_dir.clone());
    let plans = (0..cli.clients)
        .map(|i| scenario::plan(&params, &mut local, i))
        .collect::<Result<Vec<_>, _>>()?;
    drop(local);
    raise_fd_limit();

    let cpu_before = cpu_seconds();
    let start = Instant::now();
    let mut rec = if settings.dhcp.is_some() {
        report::Recorder::for_dhcp(start)
    } else if http_server.is_some() {
        report::Recorder::new(start).with_http()
    } else {
        report::Recorder::new(start)
    };
    engine::run(&settings, plans, &mut rec, start).map_err(|e| format!("event loop: {e}"))?;
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_before;

    let scenario = format!("{:?}", cli.scenario).to_lowercase();
    let info = report::RunInfo {
        scenario: scenario.clone(),
        server: server.to_string(),
        clients: cli.clients,
        concurrency: settings.concurrency,
        http_server: http_server.map(|a| a.to_string()),
    };
    let summary = rec.summary(info, elapsed, cpu);
    print!("{}", summary.text());
    if let Some(path) = &cli.json {
        std::fs::write(path, summary.to_json())
            .map_err(|e| format!("--json {}: {e}", path.display()))?;
    }
    if let Some(path) = &cli.svg {
        let title = format!(
            "rackboot-load {scenario}: {} clients against {}",
            cli.clients,
            summary.against()
        );
        std::fs::write(path, rec.svg(&title))
            .map_err(|e| format!("--svg {}: {e}", path.display()))?;
    }
    Ok(summary.failed == 0 && summary.ok == cli.clients as u64)
}

/// The server (TFTP or DHCP; for a run all over HTTP, the HTTP server)
/// and the HTTP server, if any step goes over HTTP.
fn servers(cli: &Cli, params: &Params) -> Result<(SocketAddr, Option<SocketAddr>), String> {
    match (cli.protocol, cli.scenario) {
        (Protocol::Http, Scenario::Pxelinux) => {
            return Err("--protocol http: pxelinux loads its modules over TFTP; \
                        use --kernel-over http for the kernel and initrd"
                .into());
        }
        (Protocol::Http, Scenario::Abandon | Scenario::Dhcp) => {
            return Err("--protocol http: only for --scenario file".into());
        }
        _ => {}
    }
    if cli.kernel_over == Protocol::Http {
        if cli.scenario != Scenario::Pxelinux {
            return Err("--kernel-over http: only for --scenario pxelinux".into());
        }
        if cli.no_kernel {
            return Err("--kernel-over http with --no-kernel: nothing goes over HTTP".into());
        }
    }
    let http = match (params.uses_http(), cli.http_server, cli.server) {
        (false, Some(_), _) => {
            return Err("--http-server: nothing goes over HTTP; \
                        add --protocol http or --kernel-over http"
                .into());
        }
        (false, None, _) => None,
        (true, Some(http), _) => Some(http),
        (true, None, Some(server)) => Some(SocketAddr::new(server.ip(), 80)),
        (true, None, None) => {
            return Err(
                "HTTP needs --http-server ADDR:PORT (or --server: its address, port 80)".into(),
            );
        }
    };
    match (cli.server, http) {
        (Some(server), _) => Ok((server, http)),
        (None, Some(http)) if !params.uses_tftp() => Ok((http, Some(http))),
        (None, _) => Err("--server ADDR:PORT is needed".into()),
    }
}

/// The `dhcp` scenario's addresses: where DISCOVERs and REQUESTs go, how
/// OFFERs come back, and the ciaddr that brings each client its ACK.
fn dhcp_setup(cli: &Cli, server: SocketAddr) -> Result<dhcp::Setup, String> {
    let SocketAddr::V4(server) = server else {
        return Err(format!("--server {server}: DHCP is IPv4 only"));
    };
    let loopback = server.ip().is_loopback();
    // This host's address toward the server (no packet is sent).
    let own_address = || -> Result<Ipv4Addr, String> {
        let probe = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0))
            .and_then(|s| s.connect(server).map(|()| s))
            .and_then(|s| s.local_addr())
            .map_err(|e| format!("--server {server}: no route: {e}"))?;
        match probe.ip() {
            IpAddr::V4(ip) => Ok(ip),
            IpAddr::V6(_) => Err(format!("--server {server}: no IPv4 route")),
        }
    };
    let offers = if cli.dhcp_broadcast {
        dhcp::Offers::Broadcast
    } else {
        match (cli.dhcp_relay, loopback) {
            (Some(ip), _) => dhcp::Offers::Relay(Some(ip)),
            (None, true) => dhcp::Offers::Relay(None),
            (None, false) => dhcp::Offers::Relay(Some(own_address()?)),
        }
    };
    if let dhcp::Offers::Relay(Some(ip)) = offers
        && ip == *server.ip()
        && server.port() == dhcp::RELAY_PORT
    {
        return Err(format!(
            "--dhcp-relay {ip}: the relay socket would take the server's own {ip}:67; \
             give another local address"
        ));
    }
    let ciaddr = if cli.source_ips.is_some() {
        dhcp::Ciaddr::PoolSocket
    } else if loopback {
        dhcp::Ciaddr::PerClientLoopback
    } else {
        dhcp::Ciaddr::Fixed(own_address()?)
    };
    Ok(dhcp::Setup {
        server,
        pxe: SocketAddrV4::new(*server.ip(), cli.pxe_port),
        arch: cli.dhcp_arch,
        offers,
        ciaddr,
        retry: Retry {
            interval: Duration::from_millis(cli.timeout_ms.max(1)),
            max: cli.retries,
        },
        swapped_ack: cli.dhcp_swapped_ack,
    })
}

/// Parses `A-B`, `A` or a comma-separated list of them (IPv4 ranges; single
/// IPv6 addresses). Each must be of the server's address family.
fn parse_sources(text: &str, server: SocketAddr) -> Result<Vec<IpAddr>, String> {
    let bad = |why: &str| format!("--source-ips {text}: {why}; write e.g. 127.0.0.2-127.0.0.254");
    let mut out = Vec::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let a: Ipv4Addr = a.trim().parse().map_err(|_| bad("not an IPv4 range"))?;
                let b: Ipv4Addr = b.trim().parse().map_err(|_| bad("not an IPv4 range"))?;
                let (a, b) = (u32::from(a), u32::from(b));
                if a > b || b - a >= MAX_SOURCES {
                    return Err(bad("the range is reversed or larger than 65536 addresses"));
                }
                out.extend((a..=b).map(|ip| IpAddr::V4(Ipv4Addr::from(ip))));
            }
            None => out.push(part.parse().map_err(|_| bad("not an address"))?),
        }
    }
    if out.is_empty() {
        return Err(bad("no address given"));
    }
    if out.iter().any(|ip| ip.is_ipv4() != server.is_ipv4()) {
        return Err(bad(
            "source and server addresses must be of the same family",
        ));
    }
    Ok(out)
}

/// Each running transfer and HTTP connection holds a socket: allow as
/// many as the hard limit.
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write only the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            lim.rlim_cur = lim.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &lim);
        }
    }
}

/// User plus system CPU time of this process so far (getrusage).
fn cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is valid; getrusage writes only into it.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        if libc::getrusage(libc::RUSAGE_SELF, &mut usage) != 0 {
            return 0.0;
        }
        usage
    };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(usage.ru_utime) + secs(usage.ru_stime)
}

/// A file's bytes, mapped read-only and populated up front: a page fault
/// per page during the run would slow the client, not the server. Verify
/// copies must not change during a run (a change shows up as a mismatch;
/// a file that shrinks faults the mapping's tail).
pub fn map_file(path: &std::path::Path) -> Option<Bytes> {
    let file = std::fs::File::open(path).ok()?;
    if file.metadata().ok()?.len() == 0 {
        return Some(Bytes::new()); // an empty file cannot be mapped
    }
    // SAFETY: see above; the mapping lives as long as any Bytes clone.
    let map = unsafe { memmap2::MmapOptions::new().populate().map(&file) }.ok()?;
    Some(Bytes::from_owner(map))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_ranges() {
        let v4: SocketAddr = "127.0.0.1:69".parse().unwrap();
        let ips = parse_sources("127.0.0.2-127.0.0.254", v4).unwrap();
        assert_eq!(ips.len(), 253);
        assert_eq!(ips[0], "127.0.0.2".parse::<IpAddr>().unwrap());
        assert_eq!(
            parse_sources("127.0.0.5, 127.0.1.1-127.0.1.2", v4)
                .unwrap()
                .len(),
            3
        );
        assert!(parse_sources("127.0.0.9-127.0.0.2", v4).is_err());
        assert!(parse_sources("::1", v4).is_err());
        assert!(parse_sources("", v4).is_err());
    }

    #[test]
    fn cli_parses() {
        let cli = Cli::try_parse_from([
            "rackboot-load",
            "--server",
            "127.0.0.1:6969",
            "--scenario",
            "pxelinux",
            "--clients",
            "200",
            "--verify-dir",
            "/tmp",
            "--json",
            "x.json",
        ])
        .unwrap();
        assert_eq!(cli.scenario, Scenario::Pxelinux);
        let dhcp = |extra: &[&str]| {
            let mut args = vec![
                "rackboot-load",
                "--server",
                "127.0.0.1:6767",
                "--scenario",
                "dhcp",
            ];
            args.extend_from_slice(extra);
            Cli::try_parse_from(args)
        };
        let cli = dhcp(&["--dhcp-arch", "16", "--pxe-port", "14011"]).unwrap();
        assert_eq!((cli.dhcp_arch, cli.pxe_port), (16, 14011));
        let setup = dhcp_setup(&cli, cli.server.unwrap()).unwrap();
        assert_eq!(setup.pxe, "127.0.0.1:14011".parse().unwrap());
        assert_eq!(setup.offers, dhcp::Offers::Relay(None));
        assert_eq!(setup.ciaddr, dhcp::Ciaddr::PerClientLoopback);
        assert!(dhcp(&["--dhcp-arch", "8"]).is_err());
        assert!(dhcp(&["--dhcp-broadcast", "--dhcp-relay", "127.0.0.9"]).is_err());
        let cli = dhcp(&["--dhcp-broadcast"]).unwrap();
        assert_eq!(
            dhcp_setup(&cli, cli.server.unwrap()).unwrap().offers,
            dhcp::Offers::Broadcast
        );
        assert!(
            Cli::try_parse_from([
                "rackboot-load",
                "--server",
                "127.0.0.1:69",
                "--windowsize",
                "0"
            ])
            .is_err()
        );
    }

    #[test]
    fn http_servers() {
        let servers_of = |args: &[&str]| {
            let mut all = vec!["rackboot-load"];
            all.extend_from_slice(args);
            let cli = Cli::try_parse_from(all).map_err(|e| e.to_string())?;
            let params = Params {
                scenario: cli.scenario,
                files: cli.file.clone(),
                protocol: cli.protocol,
                kernel: (!cli.no_kernel).then(|| cli.kernel.clone()),
                initrd: (!cli.no_kernel).then(|| cli.initrd.clone()),
                kernel_over: cli.kernel_over,
            };
            servers(&cli, &params)
        };
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        // All over HTTP: no --server needed.
        let h1 = [
            "--protocol",
            "http",
            "--http-server",
            "127.0.0.1:8080",
            "--file",
            "vmlinuz",
            "--file",
            "initrd.img",
        ];
        assert_eq!(
            servers_of(&h1),
            Ok((addr("127.0.0.1:8080"), Some(addr("127.0.0.1:8080"))))
        );
        // The HTTP server defaults to --server's address, port 80.
        assert_eq!(
            servers_of(&[
                "--server",
                "10.1.2.3:69",
                "--protocol",
                "http",
                "--file",
                "f"
            ]),
            Ok((addr("10.1.2.3:69"), Some(addr("10.1.2.3:80"))))
        );
        let s6 = [
            "--server",
            "127.0.0.1:6969",
            "--scenario",
            "pxelinux",
            "--kernel-over",
            "http",
            "--http-server",
            "127.0.0.1:8080",
        ];
        assert_eq!(
            servers_of(&s6),
            Ok((addr("127.0.0.1:6969"), Some(addr("127.0.0.1:8080"))))
        );
        // TFTP only: no HTTP server, and --server is needed.
        assert_eq!(
            servers_of(&["--server", "127.0.0.1:69", "--file", "f"]),
            Ok((addr("127.0.0.1:69"), None))
        );
        for bad in [
            &["--file", "f"][..],
            &["--protocol", "http", "--file", "f"],
            &[
                "--scenario",
                "pxelinux",
                "--kernel-over",
                "http",
                "--http-server",
                "127.0.0.1:80",
            ],
            &[
                "--server",
                "127.0.0.1:69",
                "--scenario",
                "pxelinux",
                "--protocol",
                "http",
            ],
            &[
                "--server",
                "127.0.0.1:69",
                "--kernel-over",
                "http",
                "--file",
                "f",
            ],
            &[
                "--server",
                "127.0.0.1:69",
                "--http-server",
                "127.0.0.1:80",
                "--file",
                "f",
            ],
            &[
                "--server",
                "127.0.0.1:69",
                "--scenario",
                "pxelinux",
                "--kernel-over",
                "http",
                "--no-kernel",
            ],
        ] {
            assert!(servers_of(bad).is_err(), "{bad:?}");
        }
    }
}
