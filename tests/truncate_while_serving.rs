//! A file truncated or rewritten in place while clients download it must
//! never crash or hang the server, and a client must never receive a
//! silently short file or a mix of old and new bytes: each running transfer
//! either completes with the content it started with or ends with an ERROR;
//! a file replaced by rename goes new to new transfers, old to running ones.
//!
//! Each scenario serves a 32 MiB pattern file to 20 concurrent clients (the
//! small blocking client below; half lock-step, half windowsize 8, blksize
//! 1468), each paced to about 2 MiB/s so that every transfer is mid-way when,
//! 1.5 s in, the test
//!
//! * (a) truncates the file in place to 1 MiB (`open(O_WRONLY)` + `set_len`),
//! * (b) rewrites all of it in place with other bytes (`open(O_WRONLY)`, no
//!   truncation, writes from offset 0 to the end), or
//! * (c) writes a new file and renames it over the served one.
//!
//! Asserted: every client either received exactly the original content
//! (same length, every byte compared) or got an ERROR packet; none received
//! a short or mixed file; none hung (each is bounded, a silent server counts
//! as a hang); for (c), every running transfer completes with the old
//! content; the writer's `open` is let in promptly (the server's read lease
//! is released in well under the kernel's lease-break time); and afterwards
//! the server is alive and a fresh request gets the new content exactly.
//!
//! (d) adds a storm: clients fetch a 8 MiB file over and over while it is
//! rewritten in place, alternating between two contents; every completed
//! fetch must be exactly one of the two, never a mix.
//!
//! Both I/O backends. The server runs as it does by default when started
//! as root: dropped to rackboot or nobody, with CAP_LEASE kept, so its read
//! leases still protect the root-owned file (tests/privileges.rs checks the
//! lease itself). The fixture's root is world-readable, its files 0644.

mod common;

use common::*;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const NAME: &str = "big.bin";
const SIZE: usize = 32 << 20;
const CLIENTS: usize = 20;
const BLKSIZE: usize = 1468;
/// Per-client pace, bytes per second.
const RATE: f64 = 2.0 * (1 << 20) as f64;
/// When the file is changed, after the clients started.
const CHANGE_AFTER: Duration = Duration::from_millis(1500);
/// A client silent for this long re-sends its last packet...
const CLIENT_RETRY: Duration = Duration::from_secs(1);
/// ...and counts as hung after this many retries in a row.
const CLIENT_RETRIES: u32 = 10;
/// Hard limit for one download.
const CLIENT_LIMIT: Duration = Duration::from_secs(90);
/// The writer's open must get in within this (the kernel would let it in
/// anyway after /proc/sys/fs/lease-break-time, 45 s by default).
const WRITER_OPEN_LIMIT: Duration = Duration::from_secs(5);

/// The scenarios each drive 20 paced clients: one at a time per binary, so
/// their timing does not depend on how many share the CPU.
static HEAVY: Mutex<()> = Mutex::new(());

fn heavy_lock() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------
// A small blocking TFTP client
// ---------------------------------------------------------------------------

#[derive(Debug)]
#[allow(dead_code)] // some fields are only read through Debug, in failure messages
enum End {
    /// The final block arrived: `len` bytes, `first_diff` the first byte
    /// that differs from the reference (or `None` when all are equal);
    /// `data` holds the bytes when the request asked to keep them.
    Complete {
        len: usize,
        first_diff: Option<usize>,
        data: Vec<u8>,
    },
    /// The server sent an ERROR after `at` bytes.
    Error { code: u16, msg: String, at: usize },
    /// No answer for `CLIENT_RETRIES` retries, or past `CLIENT_LIMIT`.
    Hung { at: usize, why: String },
}

impl End {
    fn is_exact(&self, reference_len: usize) -> bool {
        matches!(self, End::Complete { len, first_diff: None, .. } if *len == reference_len)
    }
}

struct Get<'a> {
    server: SocketAddr,
    name: &'a str,
    window: u16,
    /// Bytes per second; `None` for as fast as it goes.
    rate: Option<f64>,
    /// What the bytes are compared with.
    reference: &'a [u8],
    /// Bytes received in order so far, for the test to watch.
    progress: Option<&'a AtomicUsize>,
    /// Keep the received bytes (small files only).
    keep: bool,
}

fn ack(block: u16) -> [u8; 4] {
    let b = block.to_be_bytes();
    [0, 4, b[0], b[1]]
}

fn get(g: &Get) -> End {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("bind client");
    let blk = BLKSIZE.to_string();
    let win = g.window.to_string();
    let mut opts = vec![("blksize", blk.as_str()), ("tsize", "0")];
    if g.window > 1 {
        opts.push(("windowsize", win.as_str()));
    }
    let request = rrq(g.name, &opts);
    let started = Instant::now();
    let _ = sock.send_to(&request, g.server);
    let mut last_sent = request;
    let mut tid: Option<SocketAddr> = None;
    let (mut blksize, mut window) = (512usize, 1u64);
    let mut next: u16 = 1;
    let mut offset = 0usize;
    let mut first_diff: Option<usize> = None;
    let mut kept = Vec::new();
    let mut since_ack = 0u64;
    let mut retries = 0;
    let mut buf = vec![0u8; 65536];
    loop {
        if started.elapsed() > CLIENT_LIMIT {
            return End::Hung {
                at: offset,
                why: format!("not done after {CLIENT_LIMIT:?}"),
            };
        }
        sock.set_read_timeout(Some(CLIENT_RETRY)).unwrap();
        let (n, from) = match sock.recv_from(&mut buf) {
            Ok(x) => x,
            Err(_) => {
                retries += 1;
                if retries > CLIENT_RETRIES {
                    return End::Hung {
                        at: offset,
                        why: format!(
                            "no answer to {CLIENT_RETRIES} retries, {CLIENT_RETRY:?} apart"
                        ),
                    };
                }
                let _ = sock.send_to(&last_sent, tid.unwrap_or(g.server));
                continue;
            }
        };
        if tid.is_some_and(|t| t != from) {
            let _ = sock.send_to(&error_packet(5, "Unknown transfer ID"), from);
            continue;
        }
        retries = 0;
        let p = &buf[..n];
        match p {
            [0, 6, opts @ ..] if next == 1 => {
                tid = Some(from);
                let fields: Vec<&[u8]> = opts.split(|&b| b == 0).collect();
                for pair in fields.chunks(2).filter(|p| p.len() == 2) {
                    let v: usize = std::str::from_utf8(pair[1])
                        .ok()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    if pair[0].eq_ignore_ascii_case(b"blksize") {
                        blksize = v;
                    } else if pair[0].eq_ignore_ascii_case(b"windowsize") {
                        window = v as u64;
                    }
                }
                last_sent = ack(0).to_vec();
                let _ = sock.send_to(&last_sent, from);
            }
            [0, 3, hi, lo, data @ ..] => {
                tid.get_or_insert(from);
                let block = u16::from_be_bytes([*hi, *lo]);
                if block != next {
                    since_ack = 0;
                    last_sent = ack(next.wrapping_sub(1)).to_vec();
                    let _ = sock.send_to(&last_sent, from);
                    continue;
                }
                if first_diff.is_none() {
                    let end = (offset + data.len()).min(g.reference.len());
                    let want = &g.reference[offset.min(end)..end];
                    if let Some(i) = data.iter().zip(want).position(|(a, b)| a != b) {
                        first_diff = Some(offset + i);
                    } else if data.len() > want.len() {
                        first_diff = Some(offset + want.len()); // longer than the reference
                    }
                }
                if g.keep {
                    kept.extend_from_slice(data);
                }
                offset += data.len();
                if let Some(p) = g.progress {
                    p.store(offset, Ordering::SeqCst);
                }
                let last = data.len() < blksize;
                if let Some(rate) = g.rate {
                    // Read slowly: hold the ACK until the pace allows.
                    let due = Duration::from_secs_f64(offset as f64 / rate);
                    if let Some(wait) = due.checked_sub(started.elapsed()) {
                        std::thread::sleep(wait);
                    }
                }
                since_ack += 1;
                if last || since_ack >= window {
                    since_ack = 0;
                    last_sent = ack(block).to_vec();
                    let _ = sock.send_to(&last_sent, from);
                }
                if last {
                    if first_diff.is_none() && offset < g.reference.len() {
                        first_diff = Some(offset); // short
                    }
                    return End::Complete {
                        len: offset,
                        first_diff,
                        data: kept,
                    };
                }
                next = next.wrapping_add(1);
            }
            [0, 5, hi, lo, msg @ ..] => {
                return End::Error {
                    code: u16::from_be_bytes([*hi, *lo]),
                    msg: String::from_utf8_lossy(msg)
                        .trim_end_matches('\0')
                        .to_string(),
                    at: offset,
                };
            }
            _ => {}
        }
    }
}

// ---------------------------------------------------------------------------
// Scenarios
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Change {
    Truncate,
    Rewrite,
    Rename,
}

/// What the file holds after `change`.
fn new_content(change: Change, original: &[u8]) -> Vec<u8> {
    match change {
        Change::Truncate => original[..1 << 20].to_vec(),
        Change::Rewrite => pattern_bytes("rewritten in place", SIZE),
        Change::Rename => pattern_bytes("renamed over", SIZE + 12_345),
    }
}

/// Applies `change` to `path`; returns how long the writer's open waited
/// (the server's lease break).
fn apply(change: Change, path: &Path, new: &[u8]) -> Duration {
    match change {
        Change::Truncate => {
            let t0 = Instant::now();
            let f = OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open for truncate");
            let waited = t0.elapsed();
            f.set_len(new.len() as u64).expect("truncate");
            drop(f);
            waited
        }
        Change::Rewrite => {
            let t0 = Instant::now();
            let mut f = OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open for rewrite");
            let waited = t0.elapsed();
            for chunk in new.chunks(1 << 20) {
                f.write_all(chunk).expect("rewrite");
            }
            f.sync_all().ok();
            drop(f);
            waited
        }
        Change::Rename => {
            let tmp = path.with_extension("new");
            std::fs::write(&tmp, new).unwrap();
            readable_by_all(&tmp);
            let t0 = Instant::now();
            std::fs::rename(&tmp, path).expect("rename over");
            t0.elapsed()
        }
    }
}

/// Root-owned and 0644: the dropped server reads it, and leases it only
/// through CAP_LEASE.
fn readable_by_all(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644)).unwrap();
}

fn change_while_serving(io: Io, change: Change) {
    let _heavy = heavy_lock();
    let fx = Fixture::new(&[]);
    let path = fx.root().join(NAME);
    write_pattern_file(&path, SIZE as u64, NAME);
    readable_by_all(&path);
    let original = Arc::new(pattern_bytes(NAME, SIZE));
    let new = new_content(change, &original);
    let mut server = Server::spawn(&fx.root(), &ServerConfig::new(io).dropped());
    let addr = server.addr_v4();
    let progress: Arc<Vec<AtomicUsize>> =
        Arc::new((0..CLIENTS).map(|_| AtomicUsize::new(0)).collect());
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (original, progress) = (original.clone(), progress.clone());
            std::thread::spawn(move || {
                let g = Get {
                    server: addr,
                    name: NAME,
                    window: if i % 2 == 0 { 1 } else { 8 },
                    rate: Some(RATE),
                    reference: &original,
                    progress: Some(&progress[i]),
                    keep: false,
                };
                get(&g)
            })
        })
        .collect();
    std::thread::sleep(CHANGE_AFTER);
    let at_change: Vec<usize> = progress.iter().map(|p| p.load(Ordering::SeqCst)).collect();
    let waited = apply(change, &path, &new);
    let ends: Vec<End> = clients
        .into_iter()
        .map(|c| c.join().expect("client panicked"))
        .collect();

    let mid_way = at_change.iter().filter(|&&b| b > 0 && b < SIZE).count();
    let (mut exact, mut errors, mut bad) = (0, Vec::new(), Vec::new());
    for (i, end) in ends.iter().enumerate() {
        match end {
            e if e.is_exact(SIZE) => exact += 1,
            End::Error { code, msg, at } => {
                errors.push(format!("client {i}: ERROR {code} {msg:?} after {at} bytes"))
            }
            other => bad.push(format!(
                "client {i} (at {} bytes when changed): {other:?}",
                at_change[i]
            )),
        }
    }
    let summary = format!(
        "{io:?} {change:?}: {mid_way}/{CLIENTS} mid-way when changed; {exact} completed with the original \
         content, {} ended with an ERROR, {} bad; the writer waited {waited:.1?}",
        errors.len(),
        bad.len()
    );
    eprintln!("{summary}");
    for e in errors.iter().take(3) {
        eprintln!("  {e}");
    }
    server.assert_alive();
    assert!(
        bad.is_empty(),
        "{summary}\nclients that got a short or mixed file, or hung:\n{}",
        bad.join("\n")
    );
    assert!(
        mid_way >= CLIENTS / 2,
        "{summary}: the test did not catch the transfers mid-way (progress {at_change:?})"
    );
    if change == Change::Rename {
        assert!(
            errors.is_empty(),
            "{summary}: a rename must not disturb running transfers:\n{}",
            errors.join("\n")
        );
    }
    assert!(
        waited < WRITER_OPEN_LIMIT,
        "{summary}: the writer waited {waited:?} for the server's lease"
    );
    // Errors carry code 0 ("not defined") with a message, per the design.
    for e in &ends {
        if let End::Error { code, .. } = e {
            assert_eq!(*code, 0, "{summary}: unexpected ERROR code in {e:?}");
        }
    }

    // A fresh request gets the new content, exactly.
    let end = get(&Get {
        server: addr,
        name: NAME,
        window: 16,
        rate: None,
        reference: &new,
        progress: None,
        keep: false,
    });
    assert!(
        end.is_exact(new.len()),
        "{summary}: a fresh request after the change got {end:?}, expected the new {} bytes",
        new.len()
    );
    server.assert_alive();
    server.stop();
}

#[test]
fn truncate_epoll() {
    change_while_serving(Io::Epoll, Change::Truncate);
}

#[test]
fn truncate_uring() {
    change_while_serving(Io::Uring, Change::Truncate);
}

#[test]
fn rewrite_in_place_epoll() {
    change_while_serving(Io::Epoll, Change::Rewrite);
}

#[test]
fn rewrite_in_place_uring() {
    change_while_serving(Io::Uring, Change::Rewrite);
}

#[test]
fn rename_over_epoll() {
    change_while_serving(Io::Epoll, Change::Rename);
}

#[test]
fn rename_over_uring() {
    change_while_serving(Io::Uring, Change::Rename);
}

// ---------------------------------------------------------------------------
// (d) fetches during repeated in-place rewrites
// ---------------------------------------------------------------------------

const STORM_SIZE: usize = 8 << 20;
const STORM_REWRITES: usize = 24;
const STORM_CLIENTS: usize = 8;

fn rewrite_storm(io: Io) {
    let _heavy = heavy_lock();
    let fx = Fixture::new(&[]);
    let path = fx.root().join("storm.bin");
    let a = Arc::new(pattern_bytes("storm A", STORM_SIZE));
    let b = Arc::new(pattern_bytes("storm B", STORM_SIZE));
    std::fs::write(&path, &*a).unwrap();
    readable_by_all(&path);
    let mut server = Server::spawn(&fx.root(), &ServerConfig::new(io).dropped());
    let addr = server.addr_v4();
    let writing = Arc::new(AtomicBool::new(true));
    let clients: Vec<_> = (0..STORM_CLIENTS)
        .map(|i| {
            let (a, b, writing) = (a.clone(), b.clone(), writing.clone());
            std::thread::spawn(move || {
                let mut tally = (0usize, 0usize, 0usize); // A, B, ERROR
                let mut bad = Vec::new();
                // Bounded: stops when the writer is done, or after 200 fetches.
                for _ in 0..200 {
                    if !writing.load(Ordering::SeqCst) {
                        break;
                    }
                    let g = Get {
                        server: addr,
                        name: "storm.bin",
                        window: if i % 2 == 0 { 1 } else { 16 },
                        rate: None,
                        reference: &a,
                        progress: None,
                        keep: true,
                    };
                    match get(&g) {
                        End::Complete { data, .. } if data == *a => tally.0 += 1,
                        End::Complete { data, .. } if data == *b => tally.1 += 1,
                        End::Complete { data, .. } => {
                            let diff_a = data.iter().zip(a.iter()).position(|(x, y)| x != y);
                            let diff_b = data.iter().zip(b.iter()).position(|(x, y)| x != y);
                            bad.push(format!(
                                "client {i}: a fetch completed with {} bytes that are neither A nor B \
                                 (first difference from A at {diff_a:?}, from B at {diff_b:?})",
                                data.len()
                            ));
                        }
                        End::Error { code: 0, .. } => tally.2 += 1,
                        other => bad.push(format!("client {i}: {other:?}")),
                    }
                }
                (tally, bad)
            })
        })
        .collect();
    let mut waits = Vec::new();
    for round in 0..STORM_REWRITES {
        std::thread::sleep(Duration::from_millis(150));
        let content = if round.is_multiple_of(2) { &b } else { &a };
        let t0 = Instant::now();
        let mut f = OpenOptions::new()
            .write(true)
            .open(&path)
            .expect("open for rewrite");
        waits.push(t0.elapsed());
        f.write_all(content).expect("rewrite");
        drop(f);
    }
    writing.store(false, Ordering::SeqCst);
    let mut totals = (0, 0, 0);
    let mut bad = Vec::new();
    for c in clients {
        let (t, b) = c.join().expect("client panicked");
        totals = (totals.0 + t.0, totals.1 + t.1, totals.2 + t.2);
        bad.extend(b);
    }
    let max_wait = waits.iter().max().copied().unwrap_or_default();
    let summary = format!(
        "{io:?} storm: {STORM_REWRITES} rewrites; fetches: {} whole A, {} whole B, {} ERROR 0, {} bad; \
         longest writer wait {max_wait:.1?}",
        totals.0,
        totals.1,
        totals.2,
        bad.len()
    );
    eprintln!("{summary}");
    server.assert_alive();
    assert!(bad.is_empty(), "{summary}\n{}", bad.join("\n"));
    assert!(max_wait < WRITER_OPEN_LIMIT, "{summary}");
    // Rewrite `round` wrote B when even, A when odd: the last one is in place.
    let last = if (STORM_REWRITES - 1).is_multiple_of(2) {
        &b
    } else {
        &a
    };
    let end = get(&Get {
        server: addr,
        name: "storm.bin",
        window: 16,
        rate: None,
        reference: last,
        progress: None,
        keep: false,
    });
    assert!(
        end.is_exact(STORM_SIZE),
        "{summary}: a fresh fetch got {end:?}"
    );
    server.stop();
}

#[test]
fn rewrite_storm_epoll() {
    rewrite_storm(Io::Epoll);
}

#[test]
fn rewrite_storm_uring() {
    rewrite_storm(Io::Uring);
}
