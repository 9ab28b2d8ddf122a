//! rackboot against tftp-get (tools/tftp-get.rs), the benchmarks' second
//! TFTP client, written apart from rackboot and rackboot-load: a 24 MiB
//! file of pseudo-random bytes (fixed seed) at blksize 65464 windowsize 64
//! with the kernel's default receive buffer, at blksize 1468 lock-step four
//! at once, and against a local copy one byte off, which must fail as a
//! mismatch. Each run is bounded by --duration-limit, its retries and
//! CLIENT_TIMEOUT, so the test cannot hang.

mod common;

use common::*;
use std::path::Path;

const FILE: TestFile = TestFile {
    name: "second-client-24m.bin",
    size: 24 * 1024 * 1024,
};

/// Runs tftp-get against `server` for FILE, verified against `verify`;
/// returns the run and its JSON summary.
fn tftp_get(
    server: &Server,
    fx: &Fixture,
    verify: &Path,
    label: &str,
    extra: &[&str],
) -> (Outcome, serde_json::Value) {
    let json = fx.dir.path().join(format!("{label}.json"));
    let mut args: Vec<String> = vec![
        "--server".into(),
        server.addr_v4().to_string(),
        "--file".into(),
        FILE.name.into(),
        "--verify".into(),
        verify.display().to_string(),
        "--duration-limit".into(),
        "60".into(),
        "--json".into(),
        json.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let out = run_with_timeout(
        env!("CARGO_BIN_EXE_tftp-get"),
        &args,
        fx.dir.path(),
        CLIENT_TIMEOUT,
    );
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "{label}: no JSON at {} ({e}): {}",
            json.display(),
            out.describe()
        )
    });
    let summary =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{label}: bad JSON {text:?}: {e}"));
    eprintln!("{label}: {}", out.stdout.trim_end());
    (out, summary)
}

#[test]
fn tftp_get_against_rackboot() {
    let fx = Fixture::new(&[FILE]);
    let served = fx.root().join(FILE.name);
    let mut server = Server::spawn(&fx.root(), &ServerConfig::new(Io::Uring));

    // 1. Bulk: blksize 65464, windowsize 64, the kernel's default SO_RCVBUF.
    let (out, s) = tftp_get(
        &server,
        &fx,
        &served,
        "bulk",
        &["--blksize", "65464", "--windowsize", "64", "--count", "2"],
    );
    assert_eq!(out.code, Some(0), "bulk: {}", out.describe());
    assert_eq!(s["ok"], 2, "bulk: {s}");
    assert_eq!(s["failed"], 0, "bulk: {s}");
    assert_eq!(s["bytes"], 2 * FILE.size, "bulk: {s}");
    assert_eq!(s["blksize"], 65464, "bulk: {s}");
    assert_eq!(s["windowsize"], 64, "bulk: {s}");
    server.assert_alive();

    // 2. Lock-step at blksize 1468, four transfers of the same file at once.
    let (out, s) = tftp_get(
        &server,
        &fx,
        &served,
        "lockstep",
        &["--blksize", "1468", "--count", "4", "--concurrency", "4"],
    );
    assert_eq!(out.code, Some(0), "lockstep: {}", out.describe());
    assert_eq!(s["ok"], 4, "lockstep: {s}");
    assert_eq!(s["bytes"], 4 * FILE.size, "lockstep: {s}");
    assert_eq!(s["blksize"], 1468, "lockstep: {s}");
    assert_eq!(s["windowsize"], 1, "lockstep: {s}");
    server.assert_alive();

    // 3. The local copy differs in one byte in the middle: a mismatch.
    let mut altered = std::fs::read(&served).unwrap();
    altered[FILE.size as usize / 2] ^= 0x5a;
    let wrong = fx.outside().join("altered.bin");
    std::fs::write(&wrong, &altered).unwrap();
    let (out, s) = tftp_get(
        &server,
        &fx,
        &wrong,
        "mismatch",
        &["--blksize", "65464", "--windowsize", "64"],
    );
    assert!(
        out.code.is_some_and(|c| c != 0) && !out.timed_out,
        "mismatch: must exit nonzero: {}",
        out.describe()
    );
    assert_eq!(s["ok"], 0, "mismatch: {s}");
    assert_eq!(s["failure_kinds"]["mismatch"], 1, "mismatch: {s}");
    server.stop();
}
