//! A pxelinux-style sequence (pxelinux.0, ldlinux.c32, the missing
//! pxelinux.cfg/ lookups, pxelinux.cfg/default, menu.c32, then a kernel and
//! an initrd) served correctly to 200 concurrent clients, on each I/O
//! backend.
//!
//! `rackboot-load --scenario pxelinux` plays every client: it asks with
//! `tsize` and `blksize 1408` as pxelinux does, lock-step, from a fresh
//! port per file; the configuration search tries `pxelinux.cfg/<UUID>`,
//! `pxelinux.cfg/01-<MAC>` and the client's address in hex with 8 digits
//! down to 1 (10 names, all missing, each expected to draw ERROR 1) before
//! `pxelinux.cfg/default`. Every block is compared with the served file
//! (`--verify-dir`). All 200 clients start at once.

mod common;

use common::load::{Load, field};
use common::*;
use std::fs;
use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

const CLIENTS: u64 = 200;
/// Configuration names pxelinux tries before `default`: the UUID, the MAC
/// and 8 prefixes of the address in hex.
const MISSES_PER_CLIENT: u64 = 10;
/// The load generator stops itself after this; the test kills it a little
/// later should it hang anyway.
const LOAD_LIMIT: Duration = Duration::from_secs(150);

/// Runs rackboot-load to completion (bounded by LOAD_LIMIT) and returns
/// its exit code, its JSON summary and its output.
fn run_load(args: &[String], json: &Path, log: &Path) -> (Option<i32>, serde_json::Value, String) {
    Load::start(args, LOAD_LIMIT, json, log).finish()
}

/// Sizes close to syslinux 6.04's modules, plus a small kernel and initrd.
const BOOT_FILES: [(&str, u64); 5] = [
    ("pxelinux.0", 42_412),
    ("ldlinux.c32", 122_308),
    ("menu.c32", 26_924),
    ("vmlinuz", 2 << 20),
    ("initrd.img", 8 << 20),
];

const DEFAULT_CFG: &str = "\
DEFAULT menu.c32
PROMPT 0
TIMEOUT 50
MENU TITLE rackboot load test
LABEL linux
  MENU LABEL Boot the test kernel
  KERNEL vmlinuz
  APPEND initrd=initrd.img console=ttyS0 quiet
";

/// Lays out the boot files; returns the bytes one client downloads.
fn boot_root(root: &Path) -> u64 {
    fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
    for (name, size) in BOOT_FILES {
        write_pattern_file(&root.join(name), size, name);
    }
    fs::write(root.join("pxelinux.cfg/default"), DEFAULT_CFG).unwrap();
    BOOT_FILES.iter().map(|(_, size)| size).sum::<u64>() + DEFAULT_CFG.len() as u64
}

fn pxelinux_boot_storm(io: Io) {
    let fixture = Fixture::new(&[]);
    let root = fixture.root();
    let per_client = boot_root(&root);
    let mut server = Server::spawn(&root, &ServerConfig::new(io));
    let json = fixture.dir.path().join("pxelinux.json");
    let svg = fixture.dir.path().join("pxelinux.svg");
    let args: Vec<String> = [
        "--server",
        &server.addr_v4().to_string(),
        "--scenario",
        "pxelinux",
        "--clients",
        &CLIENTS.to_string(),
        "--kernel",
        "vmlinuz",
        "--initrd",
        "initrd.img",
        "--verify-dir",
        &root.display().to_string(),
        "--svg",
        &svg.display().to_string(),
    ]
    .map(String::from)
    .to_vec();
    let started = Instant::now();
    let (code, summary, output) = run_load(&args, &json, &fixture.dir.path().join("load.log"));
    eprintln!(
        "--- {io:?}: rackboot-load took {:.1?} ---\n{output}",
        started.elapsed()
    );
    let context = || format!("{output}\n--- server log ---\n{}", server.log_tail());

    assert_eq!(
        field(&summary, "ok"),
        CLIENTS,
        "every client must boot\n{}",
        context()
    );
    assert_eq!(field(&summary, "failed"), 0, "{}", context());
    assert_eq!(
        code,
        Some(0),
        "rackboot-load reports failure\n{}",
        context()
    );
    // pxelinux.0, ldlinux.c32, default, menu.c32, vmlinuz, initrd.img.
    assert_eq!(field(&summary, "transfers"), CLIENTS * 6, "{}", context());
    assert_eq!(
        field(&summary, "expected_misses"),
        CLIENTS * MISSES_PER_CLIENT,
        "{}",
        context()
    );
    assert_eq!(
        field(&summary, "bytes"),
        CLIENTS * per_client,
        "{}",
        context()
    );
    assert_eq!(
        field(&summary, "unanswered_requests"),
        0,
        "every request answered within 1 s\n{}",
        context()
    );
    let picture = fs::read_to_string(&svg).expect("--svg wrote a file");
    assert!(
        picture.starts_with("<svg") && picture.contains("<path"),
        "bad SVG: {picture:.200}"
    );

    // Still alive, and still serving: one more plain download of the
    // configuration (a single short block), ACKed so it ends at once.
    server.assert_alive();
    let sock = UdpSocket::bind((LOCALHOST_V4, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    sock.send_to(&rrq("pxelinux.cfg/default", &[]), server.addr_v4())
        .unwrap();
    let mut buf = [0u8; 1024];
    let (n, tid) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no answer after the storm: {e}\n{}", server.log_tail()));
    assert_eq!(
        &buf[..4],
        &[0, 3, 0, 1],
        "after the storm: {}",
        packet_summary(&buf[..n])
    );
    assert_eq!(&buf[4..n], DEFAULT_CFG.as_bytes());
    sock.send_to(&[0, 4, 0, 1], tid).unwrap();
    server.stop();
}

#[test]
fn pxelinux_boot_storm_epoll() {
    pxelinux_boot_storm(Io::Epoll);
}

#[test]
fn pxelinux_boot_storm_uring() {
    pxelinux_boot_storm(Io::Uring);
}
