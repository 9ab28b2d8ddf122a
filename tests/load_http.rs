//! `rackboot-load`'s HTTP mode against rackboot's HTTP server, on each I/O
//! backend:
//!
//! - 64 clients each GET a 4 MiB kernel then an 8 MiB initrd on one
//!   kept-alive connection, every body byte compared with the root;
//! - 200 clients boot as lpxelinux.0 does: `pxelinux.0`, `ldlinux.c32`, the
//!   configuration search and `menu.c32` over TFTP, then the kernel and
//!   initrd over HTTP on one connection, all byte-checked;
//! - the checks can fail: a local copy that differs in one byte of the
//!   initrd, and a server that closes the connection before the body's
//!   end, each make the tool report failure with exit code 1.
//!
//! Everything runs over 127.0.0.1 and is bounded by the tool's own
//! `--duration-limit` (and a kill a little later should it hang anyway).

mod common;

use common::load::{Load, field};
use common::*;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

/// The load generator stops itself after this.
const LOAD_LIMIT: Duration = Duration::from_secs(120);

/// Runs rackboot-load to completion (bounded by LOAD_LIMIT) and returns
/// its exit code, its JSON summary and its output.
fn run_load(args: &[String], dir: &Path, label: &str) -> (Option<i32>, serde_json::Value, String) {
    let started = std::time::Instant::now();
    let json = dir.join(format!("{label}.json"));
    let log = dir.join(format!("{label}.log"));
    let result = Load::start(args, LOAD_LIMIT, &json, &log).finish();
    eprintln!(
        "--- {label}: rackboot-load took {:.1?} ---\n{}",
        started.elapsed(),
        result.2
    );
    result
}
const KERNEL: u64 = 4 << 20;
const INITRD: u64 = 8 << 20;
/// Sizes close to syslinux 6.04's modules, plus the kernel and initrd.
const BOOT_FILES: [(&str, u64); 5] = [
    ("pxelinux.0", 42_412),
    ("ldlinux.c32", 122_308),
    ("menu.c32", 26_924),
    ("vmlinuz", KERNEL),
    ("initrd.img", INITRD),
];
const DEFAULT_CFG: &str = "\
DEFAULT menu.c32
PROMPT 0
LABEL linux
  KERNEL http://127.0.0.1/vmlinuz
  APPEND initrd=http://127.0.0.1/initrd.img
";
/// Configuration names pxelinux tries before `default`.
const MISSES_PER_CLIENT: u64 = 10;

/// Lays out the boot files; returns the bytes one pxelinux boot fetches.
fn boot_root(root: &Path) -> u64 {
    fs::create_dir_all(root.join("pxelinux.cfg")).unwrap();
    for (name, size) in BOOT_FILES {
        write_pattern_file(&root.join(name), size, name);
    }
    fs::write(root.join("pxelinux.cfg/default"), DEFAULT_CFG).unwrap();
    BOOT_FILES.iter().map(|(_, size)| size).sum::<u64>() + DEFAULT_CFG.len() as u64
}

/// rackboot serving `root` over TFTP and over HTTP on 127.0.0.1.
fn start(root: &Path, io: Io) -> (Server, SocketAddr) {
    let http: SocketAddr = ([127, 0, 0, 1], free_tcp_port()).into();
    let mut cfg = ServerConfig::new(io);
    cfg.extra_args = vec!["--http-listen".into(), http.to_string()];
    // HTTP is rackboot's own: no stand-in server has it.
    let mut server = Server::spawn_with(ServerKind::Rackboot, root, &cfg);
    let deadline = Instant::now() + Duration::from_secs(15);
    while TcpStream::connect_timeout(&http, Duration::from_millis(200)).is_err() {
        server.assert_alive();
        assert!(
            Instant::now() < deadline,
            "no HTTP listener on {http}\n{}",
            server.log_tail()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    (server, http)
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

/// Asserts a run where every client succeeded, with one connection each.
fn assert_all_ok(
    code: Option<i32>,
    summary: &serde_json::Value,
    clients: u64,
    bytes: u64,
    context: &dyn Fn() -> String,
) {
    assert_eq!(field(summary, "ok"), clients, "{}", context());
    assert_eq!(field(summary, "failed"), 0, "{}", context());
    assert_eq!(code, Some(0), "exit code\n{}", context());
    assert_eq!(field(summary, "bytes"), bytes, "{}", context());
    assert_eq!(
        field(summary, "http_connections"),
        clients,
        "one kept-alive connection per client\n{}",
        context()
    );
}

fn http_load(io: Io) {
    let fixture = Fixture::new(&[]);
    let root = fixture.root();
    let boot_bytes = boot_root(&root);
    let (mut server, http) = start(&root, io);
    let dir = fixture.dir.path();
    let verify = root.display().to_string();
    let context = |output: &str| format!("{output}\n--- server log ---\n{}", server.log_tail());

    // (a) 64 clients, kernel then initrd, on one connection each.
    let clients = 64u64;
    let (code, summary, output) = run_load(
        &args(&[
            "--protocol",
            "http",
            "--http-server",
            &http.to_string(),
            "--clients",
            &clients.to_string(),
            "--file",
            "vmlinuz",
            "--file",
            "initrd.img",
            "--verify-dir",
            &verify,
        ]),
        dir,
        &format!("{io:?}-files"),
    );
    assert_all_ok(
        code,
        &summary,
        clients,
        clients * (KERNEL + INITRD),
        &|| context(&output),
    );
    assert_eq!(field(&summary, "transfers"), clients * 2);
    assert_eq!(field(&summary, "passes"), clients);

    // (b) 200 lpxelinux boots: TFTP, then HTTP.
    let clients = 200u64;
    let svg = dir.join("boot.svg");
    let (code, summary, output) = run_load(
        &args(&[
            "--server",
            &server.addr_v4().to_string(),
            "--scenario",
            "pxelinux",
            "--kernel-over",
            "http",
            "--http-server",
            &http.to_string(),
            "--clients",
            &clients.to_string(),
            "--verify-dir",
            &verify,
            "--svg",
            &svg.display().to_string(),
        ]),
        dir,
        &format!("{io:?}-pxelinux"),
    );
    assert_all_ok(code, &summary, clients, clients * boot_bytes, &|| {
        context(&output)
    });
    // pxelinux.0, ldlinux.c32, default, menu.c32, vmlinuz, initrd.img.
    assert_eq!(
        field(&summary, "transfers"),
        clients * 6,
        "{}",
        context(&output)
    );
    assert_eq!(
        field(&summary, "expected_misses"),
        clients * MISSES_PER_CLIENT,
        "{}",
        context(&output)
    );
    assert!(
        summary["p50_ms"].as_f64().unwrap() >= summary["transfer_p50_ms"].as_f64().unwrap(),
        "a pass covers the whole boot: {summary}"
    );
    let picture = fs::read_to_string(&svg).expect("--svg wrote a file");
    assert!(picture.starts_with("<svg") && picture.contains("<path"));

    // (c) A local copy with one byte of the initrd changed: every client
    // must report the mismatch, and the run must fail.
    let other = dir.join("other-copy");
    fs::create_dir_all(&other).unwrap();
    fs::copy(root.join("vmlinuz"), other.join("vmlinuz")).unwrap();
    let mut initrd = fs::read(root.join("initrd.img")).unwrap();
    let flipped = initrd.len() / 2 + 12_345;
    initrd[flipped] ^= 0x20;
    fs::write(other.join("initrd.img"), &initrd).unwrap();
    let clients = 4u64;
    let (code, summary, output) = run_load(
        &args(&[
            "--protocol",
            "http",
            "--http-server",
            &http.to_string(),
            "--clients",
            &clients.to_string(),
            "--file",
            "vmlinuz",
            "--file",
            "initrd.img",
            "--verify-dir",
            &other.display().to_string(),
        ]),
        dir,
        &format!("{io:?}-mismatch"),
    );
    assert_eq!(code, Some(1), "a mismatch must fail the run\n{output}");
    assert_eq!(field(&summary, "ok"), 0, "{output}");
    assert_eq!(field(&summary, "failed"), clients, "{output}");
    assert_eq!(
        summary["failures"]["http content mismatch"].as_u64(),
        Some(clients),
        "{output}"
    );
    assert!(
        output.contains(&format!("at byte {flipped}")),
        "the first differing byte is named\n{output}"
    );
    // The kernel arrived whole; the initrd up to the changed byte.
    assert_eq!(
        field(&summary, "bytes"),
        clients * (KERNEL + flipped as u64),
        "{output}"
    );

    server.assert_alive();
    server.stop();
}

#[test]
fn http_load_epoll() {
    http_load(Io::Epoll);
}

#[test]
fn http_load_uring() {
    http_load(Io::Uring);
}

/// A server that announces 1000 bytes, sends 10 and closes: each client
/// fails with a short body, and the run with exit code 1.
#[test]
fn a_short_body_fails_the_run() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let clients = 3u64;
    listener.set_nonblocking(true).unwrap();
    let serve = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        for _ in 0..clients {
            let mut stream = loop {
                match listener.accept() {
                    Ok((stream, _)) => break stream,
                    Err(_) if Instant::now() < deadline => {
                        std::thread::sleep(Duration::from_millis(10))
                    }
                    Err(e) => panic!("no connection from rackboot-load: {e}"),
                }
            };
            stream.set_nonblocking(false).unwrap();
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                head.push(byte[0]);
            }
            assert!(head.starts_with(b"GET /vmlinuz HTTP/1.1\r\n"), "{head:?}");
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789");
        } // dropping the stream closes it
    });
    let dir = tempfile::tempdir().unwrap();
    let (code, summary, output) = run_load(
        &args(&[
            "--protocol",
            "http",
            "--http-server",
            &addr.to_string(),
            "--clients",
            &clients.to_string(),
            "--file",
            "vmlinuz",
            "--timeout-ms",
            "500",
            "--retries",
            "4",
        ]),
        dir.path(),
        "short",
    );
    serve.join().unwrap();
    assert_eq!(code, Some(1), "{output}");
    assert_eq!(field(&summary, "failed"), clients, "{output}");
    assert_eq!(
        summary["failures"]["http short body"].as_u64(),
        Some(clients),
        "{output}"
    );
    assert_eq!(field(&summary, "bytes"), clients * 10, "{output}");
}
