//! The PXE proxyDHCP exchange played by 500 simulated clients at once
//! against a running rackboot (BIOS and x64 UEFI boot entries, proxyDHCP
//! on free high ports of 127.0.0.1), with `rackboot-load --scenario dhcp`
//! checking every OFFER and ACK byte by byte with its own parser.
//!
//! Each client has its own MAC, UUID and xid: DISCOVER to the DHCP port,
//! the proxy OFFER (yiaddr 0, option 60 `PXEClient`, option 54, the BIOS
//! menu in option 43 or siaddr for UEFI), REQUEST to the boot server port
//! with ciaddr set (and the chosen menu item in option 43.71 for BIOS),
//! then the ACK: ciaddr echoed, yiaddr 0, siaddr, the boot file.
//!
//! How OFFERs come back on loopback: rackboot broadcasts them to
//! 255.255.255.255:68, or, for a relayed DISCOVER (giaddr set), unicasts
//! them to giaddr:67. The BIOS run acts as a relay (giaddr a free
//! 127.0.67.x, bound on port 67); the UEFI run listens for the broadcasts
//! on *:68. Both ports are privileged: the tests need root (CI runs them
//! as root) or CAP_NET_BIND_SERVICE. ACKs go to ciaddr at the REQUEST's
//! source port; each client's ciaddr is its own 127.x.y.z, which the
//! tool's wildcard-bound sockets receive.

mod common;

use common::load::{Load, field};
use common::*;
use std::fs;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: u64 = 500;
/// The load generator stops itself after this; the test kills it a little
/// later should it hang anyway.
const LOAD_LIMIT: Duration = Duration::from_secs(60);

/// Runs rackboot-load to completion (bounded by LOAD_LIMIT) and returns
/// its exit code, its JSON summary and its output.
fn run_load(args: &[String], json: &Path, log: &Path) -> (Option<i32>, serde_json::Value, String) {
    Load::start(args, LOAD_LIMIT, json, log).finish()
}

/// rackboot serving TFTP and proxyDHCP: BIOS gets `pxelinux.0` (through
/// the boot menu), x64 UEFI `ipxe.efi`. Returns the server and its DHCP
/// and boot server (4011) ports.
fn proxy_server(fixture: &Fixture) -> (Server, u16, u16) {
    let root = fixture.root();
    fs::write(root.join("pxelinux.0"), b"pxelinux").unwrap();
    fs::write(root.join("ipxe.efi"), b"ipxe").unwrap();
    let (dhcp_port, pxe_port) = free_proxy_ports();
    let mut cfg = ServerConfig::new(Io::Epoll);
    cfg.extra_args = [
        "--boot",
        "bios=pxelinux.0",
        "--boot",
        "x64-uefi=ipxe.efi",
        "--dhcp-port",
        &dhcp_port.to_string(),
        "--pxe-port",
        &pxe_port.to_string(),
    ]
    .map(String::from)
    .to_vec();
    (Server::spawn(&root, &cfg), dhcp_port, pxe_port)
}

/// 500 clients of architecture `arch` at once; every one must get its ACK
/// naming `boot_file`.
fn dhcp_storm(arch: &str, offers: &[&str], boot_file: &str) {
    require_low_ports();
    let fixture = Fixture::new(&[]);
    let (mut server, dhcp_port, pxe_port) = proxy_server(&fixture);
    let dir = fixture.dir.path();
    let json = dir.join(format!("dhcp-{arch}.json"));
    let svg = dir.join(format!("dhcp-{arch}.svg"));
    let mut args: Vec<String> = [
        "--server",
        &SocketAddr::from((Ipv4Addr::LOCALHOST, dhcp_port)).to_string(),
        "--pxe-port",
        &pxe_port.to_string(),
        "--scenario",
        "dhcp",
        "--dhcp-arch",
        arch,
        "--clients",
        &CLIENTS.to_string(),
        "--svg",
        &svg.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    args.extend(offers.iter().map(|s| s.to_string()));
    let started = Instant::now();
    let (code, summary, output) = run_load(&args, &json, &dir.join("load.log"));
    eprintln!(
        "--- arch {arch}: rackboot-load took {:.1?} ---\n{output}",
        started.elapsed()
    );
    let context = || format!("{output}\n--- server log ---\n{}", server.log_tail());

    assert_eq!(
        code,
        Some(0),
        "rackboot-load reports failure\n{}",
        context()
    );
    assert_eq!(field(&summary, "ok"), CLIENTS, "{}", context());
    assert_eq!(field(&summary, "failed"), 0, "{}", context());
    assert_eq!(field(&summary, "offers"), CLIENTS, "{}", context());
    assert_eq!(field(&summary, "acks"), CLIENTS, "{}", context());
    assert_eq!(summary["failures"], serde_json::json!({}), "{}", context());
    assert_eq!(
        summary["boot_files"],
        serde_json::json!({ boot_file: CLIENTS }),
        "every ACK names the architecture's file\n{}",
        context()
    );
    let picture = fs::read_to_string(&svg).expect("--svg wrote a file");
    assert!(
        picture.starts_with("<svg") && picture.contains("ACKs/s"),
        "bad SVG: {picture:.200}"
    );
    server.assert_alive();
    server.stop();
}

/// BIOS: the OFFER carries the boot menu; the REQUEST asks for its first
/// item (43.71 = 0x8000, layer 0), which the ACK echoes. As a relay agent.
#[test]
fn bios_clients_through_a_relay_get_the_menu_item_file() {
    dhcp_storm("0", &[], "pxelinux.0");
}

/// x64 UEFI (arch 7): no menu, siaddr in the OFFER. Broadcast OFFERs.
#[test]
fn uefi_clients_on_the_segment_get_their_file_from_broadcast_offers() {
    dhcp_storm("7", &["--dhcp-broadcast"], "ipxe.efi");
}

/// Nobody answering: every client fails with timeout-offer after its
/// retries, and the exit code says so.
#[test]
fn silence_fails_every_client_with_timeout_offer() {
    require_low_ports();
    let fixture = Fixture::new(&[]);
    let dir = fixture.dir.path();
    let silent = free_udp_port(false); // nothing listens there
    let args: Vec<String> = [
        "--server",
        &format!("127.0.0.1:{silent}"),
        "--scenario",
        "dhcp",
        "--clients",
        "5",
        "--timeout-ms",
        "50",
        "--retries",
        "2",
    ]
    .map(String::from)
    .to_vec();
    let (code, summary, output) = run_load(&args, &dir.join("silent.json"), &dir.join("s.log"));
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(field(&summary, "ok"), 0, "{output}");
    assert_eq!(field(&summary, "failed"), 5, "{output}");
    assert_eq!(field(&summary, "acks"), 0, "{output}");
    assert_eq!(summary["failures"]["timeout-offer"], 5, "{output}");
    assert_eq!(field(&summary, "unanswered_requests"), 5, "{output}");
}
