//! `--metrics-listen` during real load: rackboot serving TFTP, HTTP and
//! proxyDHCP while rackboot-load boots 100 pxelinux clients (modules and
//! configuration over TFTP, kernel and initrd over HTTP) and then plays the
//! proxyDHCP exchange for 200 more. A scrape taken mid-run and one after
//! both pass Prometheus's own `promtool check metrics`, and the counters
//! after the run equal what rackboot-load counted itself: TFTP files,
//! configuration misses, HTTP responses, bytes, offers and ACKs. The HTTP
//! listener answers /metrics too. On both I/O backends.

mod common;

use common::load::{Load, field};
use common::*;
use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BOOTS: u64 = 100;
const DHCP_CLIENTS: u64 = 200;
/// Configuration names pxelinux tries before `default`.
const MISSES_PER_BOOT: u64 = 10;
const LOAD_LIMIT: Duration = Duration::from_secs(90);

const BOOT_FILES: [(&str, u64); 5] = [
    ("pxelinux.0", 42_412),
    ("ldlinux.c32", 122_308),
    ("menu.c32", 26_924),
    ("vmlinuz", 4 << 20),
    ("initrd.img", 8 << 20),
];

/// One scrape, in Prometheus's text format (what a plain GET gets).
fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
        .unwrap_or_else(|e| panic!("metrics endpoint {addr}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: rackboot\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no HTTP head: {response:.300}"));
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    body.to_string()
}

/// `promtool check metrics` on `text`: it must find nothing to say.
fn promtool_check(text: &str, what: &str) {
    require_program("promtool");
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics on the {what} scrape: {}\n{}{}\n--- scrape ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Samples by their full name with labels, e.g.
/// `rackboot_tftp_refusals_total{reason="not_found"}`.
fn samples(text: &str) -> HashMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').unwrap();
            (name.to_string(), value.parse().unwrap())
        })
        .collect()
}

/// The sum of every sample of `family` whose labels contain `with`.
fn total(s: &HashMap<String, f64>, family: &str, with: &str) -> u64 {
    s.iter()
        .filter(|(k, _)| {
            let name = k.split('{').next().unwrap();
            name == family && k.contains(with)
        })
        .map(|(_, v)| *v as u64)
        .sum()
}

fn boot_root(root: &Path) {
    fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
    for (name, size) in BOOT_FILES {
        write_pattern_file(&root.join(name), size, name);
    }
    fs::write(
        root.join("pxelinux.cfg/default"),
        "DEFAULT menu.c32\nLABEL linux\n  KERNEL http://x/vmlinuz\n",
    )
    .unwrap();
    fs::write(root.join("ipxe.efi"), b"ipxe").unwrap();
}

fn metrics_match_the_load(io: Io) {
    let fixture = Fixture::new(&[]);
    let root = fixture.root();
    boot_root(&root);
    let dir = fixture.dir.path();
    let http_port = free_tcp_port();
    let metrics_port = free_tcp_port();
    let (dhcp_port, pxe_port) = free_proxy_ports();
    let metrics = SocketAddr::from((Ipv4Addr::LOCALHOST, metrics_port));
    let mut cfg = ServerConfig::new(io);
    cfg.extra_args = [
        "--http-listen",
        &format!("127.0.0.1:{http_port}"),
        "--metrics-listen",
        &metrics.to_string(),
        "--boot",
        "x64-uefi=ipxe.efi",
        "--dhcp-port",
        &dhcp_port.to_string(),
        "--pxe-port",
        &pxe_port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut server = Server::spawn(&root, &cfg);

    // A scrape before any load: valid, and the baseline (the harness's
    // readiness probe is one refused request).
    let idle = scrape(metrics);
    promtool_check(&idle, "idle");
    let s = samples(&idle);
    let base = s.clone();
    assert_eq!(
        total(&s, "rackboot_tftp_refusals_total", "not_found"),
        total(&s, "rackboot_tftp_requests_total", ""),
        "{idle}"
    );
    assert_eq!(
        s[&format!(
            "rackboot_build_info{{version=\"{}\",backend=\"{}\"}}",
            env!("CARGO_PKG_VERSION"),
            if io == Io::Epoll { "epoll" } else { "io_uring" }
        )],
        1.0,
        "{idle}"
    );

    let boots: Vec<String> = [
        "--server",
        &server.addr_v4().to_string(),
        "--http-server",
        &format!("127.0.0.1:{http_port}"),
        "--scenario",
        "pxelinux",
        "--kernel-over",
        "http",
        "--clients",
        &BOOTS.to_string(),
        "--concurrency",
        "20",
        "--kernel",
        "vmlinuz",
        "--initrd",
        "initrd.img",
        "--verify-dir",
        &root.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let mut load = Load::start(
        &boots,
        LOAD_LIMIT,
        &dir.join("boots.json"),
        &dir.join("boots.log"),
    );
    // Mid-run: the first scrape that sees transfers while the load runs.
    let mut during = None;
    while load.is_running() {
        let text = scrape(metrics);
        let s = samples(&text);
        if total(&s, "rackboot_tftp_requests_total", "")
            > total(&base, "rackboot_tftp_requests_total", "")
        {
            during = Some(text);
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let during = during.expect("no scrape caught the load running");
    promtool_check(&during, "mid-run");
    let (code, boots, output) = load.finish();
    let context = || format!("{output}\n--- server log ---\n{}", server.log_tail());
    assert_eq!(code, Some(0), "rackboot-load failed\n{}", context());
    assert_eq!(field(&boots, "ok"), BOOTS, "{}", context());
    assert_eq!(
        field(&boots, "expected_misses"),
        BOOTS * MISSES_PER_BOOT,
        "{}",
        context()
    );

    let dhcp: Vec<String> = [
        "--server",
        &SocketAddr::from((Ipv4Addr::LOCALHOST, dhcp_port)).to_string(),
        "--pxe-port",
        &pxe_port.to_string(),
        "--scenario",
        "dhcp",
        "--dhcp-arch",
        "7",
        "--dhcp-broadcast",
        "--clients",
        &DHCP_CLIENTS.to_string(),
    ]
    .map(String::from)
    .to_vec();
    let (code, dhcp, output) = Load::start(
        &dhcp,
        LOAD_LIMIT,
        &dir.join("dhcp.json"),
        &dir.join("dhcp.log"),
    )
    .finish();
    assert_eq!(
        code,
        Some(0),
        "rackboot-load dhcp failed\n{output}\n{}",
        server.log_tail()
    );

    // The server counts a TFTP file when its last ACK arrives, which may
    // be a moment after the client has moved on: wait for the counts to
    // settle (bounded), then compare exactly.
    let http_files = BOOTS * 2;
    let tftp_files = field(&boots, "transfers") - http_files;
    let deadline = Instant::now() + Duration::from_secs(5);
    let (text, s) = loop {
        let text = scrape(metrics);
        let s = samples(&text);
        let settled = total(&s, "rackboot_tftp_transfers_total", "outcome=\"complete")
            >= tftp_files + total(&base, "rackboot_tftp_transfers_total", "outcome=\"complete")
            && total(&s, "rackboot_tftp_active_transfers", "") == 0
            && total(&s, "rackboot_http_responses_total", "") >= http_files;
        if settled || Instant::now() > deadline {
            break (text, s);
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    promtool_check(&text, "final");
    // What the load did: the final values less the baseline.
    let s: HashMap<String, f64> = s
        .iter()
        .map(|(k, v)| (k.clone(), v - base.get(k).copied().unwrap_or(0.0)))
        .collect();
    let tftp_done = total(
        &s,
        "rackboot_tftp_transfers_total",
        "direction=\"read\",outcome=\"complete",
    );
    assert_eq!(tftp_done, tftp_files, "TFTP files complete\n{text}");
    assert_eq!(
        total(&s, "rackboot_tftp_transfers_total", ""),
        tftp_files,
        "no TFTP transfer ended otherwise\n{text}"
    );
    assert_eq!(
        total(&s, "rackboot_tftp_refusals_total", "reason=\"not_found\""),
        field(&boots, "expected_misses"),
        "{text}"
    );
    assert_eq!(
        total(&s, "rackboot_tftp_requests_total", "direction=\"read\""),
        tftp_files + field(&boots, "expected_misses"),
        "{text}"
    );
    assert_eq!(
        total(&s, "rackboot_http_responses_total", "code=\"2xx\""),
        http_files,
        "{text}"
    );
    assert_eq!(
        total(&s, "rackboot_http_responses_total", ""),
        http_files,
        "{text}"
    );
    assert_eq!(
        total(&s, "rackboot_tftp_sent_bytes_total", "")
            + total(&s, "rackboot_http_sent_bytes_total", ""),
        field(&boots, "bytes"),
        "bytes over TFTP and HTTP\n{text}"
    );
    assert_eq!(
        total(&s, "rackboot_tftp_transfer_duration_seconds_count", ""),
        tftp_files,
        "{text}"
    );
    assert_eq!(
        total(
            &s,
            "rackboot_proxy_replies_total",
            "kind=\"offer\",arch=\"x64-uefi\""
        ),
        field(&dhcp, "offers"),
        "{text}"
    );
    assert_eq!(
        total(
            &s,
            "rackboot_proxy_replies_total",
            "kind=\"ack\",arch=\"x64-uefi\""
        ),
        field(&dhcp, "acks"),
        "{text}"
    );
    assert_eq!(field(&dhcp, "acks"), DHCP_CLIENTS);
    assert_eq!(
        total(&s, "rackboot_proxy_replies_total", ""),
        2 * DHCP_CLIENTS,
        "{text}"
    );
    assert!(
        total(&s, "rackboot_file_cache_files", "") <= BOOT_FILES.len() as u64 + 1,
        "{text}"
    );
    server.assert_alive();

    // The HTTP listener answers /metrics too, with the same counters.
    let over_http = scrape(SocketAddr::from((Ipv4Addr::LOCALHOST, http_port)));
    promtool_check(&over_http, "HTTP listener's");
    let again = samples(&over_http);
    assert_eq!(
        total(&again, "rackboot_tftp_sent_bytes_total", ""),
        total(&samples(&text), "rackboot_tftp_sent_bytes_total", ""),
        "{over_http}"
    );

    // OpenMetrics for scrapers that ask for it, with its EOF marker.
    let mut stream = TcpStream::connect(metrics).unwrap();
    stream
        .write_all(
            b"GET /metrics HTTP/1.1\r\nAccept: application/openmetrics-text; version=1.0.0\r\n\r\n",
        )
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    assert!(
        response.contains("Content-Type: application/openmetrics-text"),
        "{response:.300}"
    );
    assert!(response.ends_with("# EOF\n"), "{response}");
    server.stop();
}

/// One test for both backends, one after the other: the DHCP part
/// listens for broadcast offers on port 68, which two runs cannot share.
#[test]
fn metrics_match_the_load_on_both_backends() {
    metrics_match_the_load(Io::Uring);
    metrics_match_the_load(Io::Epoll);
}
