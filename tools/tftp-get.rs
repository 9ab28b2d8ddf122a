//! tftp-get: a small TFTP read client for tools/bench.py, written apart
//! from rackboot and rackboot-load (it shares no code with either), so that
//! a benchmark's result does not rest on one client alone.
//!
//! It fetches one file `--count` times, `--concurrency` transfers at once
//! (one thread each, blocking sockets), and checks every block against the
//! local copy given with `--verify` at its offset, then the total length.
//! The receive side is an RFC 7440 client: ACK every `windowsize` in-order
//! blocks and the last one; on the first out-of-order block since the last
//! progress, ACK the last in-order block once (the server resends from
//! there); on a receive timeout, ACK it again (or resend the RRQ).
//!
//! ```text
//! tftp-get --server 127.0.0.1:69 --file f256m --verify /tmp/root/f256m \
//!     --blksize 65464 --windowsize 64 --count 2 --json out.json
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;

const OP_RRQ: u16 = 1;
const OP_DATA: u16 = 3;
const OP_ACK: u16 = 4;
const OP_ERROR: u16 = 5;
const OP_OACK: u16 = 6;
/// The largest blksize RFC 2348 allows.
const MAX_BLKSIZE: u16 = 65464;

#[derive(Parser)]
#[command(
    name = "tftp-get",
    about = "An independent TFTP read client: verified downloads, timings, JSON"
)]
struct Cli {
    /// The server's address (its well-known port).
    #[arg(long)]
    server: SocketAddr,
    /// The file to ask for.
    #[arg(long)]
    file: String,
    /// The local copy of the served file, compared with every transfer.
    #[arg(long)]
    verify: PathBuf,
    /// Ask for this blksize (RFC 2348); without it, no option (512).
    #[arg(long, value_parser = clap::value_parser!(u16).range(8..=MAX_BLKSIZE as i64))]
    blksize: Option<u16>,
    /// Ask for this windowsize (RFC 7440); without it, lock-step.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..))]
    windowsize: Option<u16>,
    /// SO_RCVBUF in bytes (SO_RCVBUFFORCE first as root); without it, the
    /// kernel's default (net.core.rmem_default).
    #[arg(long)]
    rcvbuf: Option<usize>,
    /// Transfers in all.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Transfers at once (one thread each).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    concurrency: u64,
    /// Receive timeout (SO_RCVTIMEO) before a re-ACK, in milliseconds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..))]
    timeout_ms: u64,
    /// Timeouts in a row before a transfer fails.
    #[arg(long, default_value_t = 10)]
    retries: u32,
    /// No transfer starts after this many seconds.
    #[arg(long, default_value_t = 120.0)]
    duration_limit: f64,
    /// Write the summary as a JSON object here.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What each thread counts; merged at the end.
#[derive(Default)]
struct Stats {
    ok_ms: Vec<f64>,
    failures: BTreeMap<String, u64>,
    bytes: u64,
    timeouts: u64,
    out_of_order: u64,
    rcvbuf: usize,
    /// (blksize, windowsize) granted in this thread's last transfer, and when.
    granted: Option<(Instant, u16, u16)>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        self.ok_ms.extend(other.ok_ms);
        for (kind, n) in other.failures {
            *self.failures.entry(kind).or_default() += n;
        }
        self.bytes += other.bytes;
        self.timeouts += other.timeouts;
        self.out_of_order += other.out_of_order;
        if other.rcvbuf != 0 {
            self.rcvbuf = other.rcvbuf;
        }
        if other.granted.map(|g| g.0) > self.granted.map(|g| g.0) {
            self.granted = other.granted;
        }
    }
}

/// Why a transfer failed: the kind counted in `failure_kinds`, and details.
struct Failure {
    kind: String,
    detail: String,
}

fn fail(kind: &str, detail: String) -> Failure {
    Failure {
        kind: kind.into(),
        detail,
    }
}

fn packet(op: u16, block: u16) -> [u8; 4] {
    let [a, b] = op.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

fn rrq(cli: &Cli) -> Vec<u8> {
    let mut p = OP_RRQ.to_be_bytes().to_vec();
    let mut push = |s: &str| {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    };
    push(&cli.file);
    push("octet");
    if let Some(b) = cli.blksize {
        push("blksize");
        push(&b.to_string());
    }
    if let Some(w) = cli.windowsize {
        push("windowsize");
        push(&w.to_string());
    }
    p
}

/// The (blksize, windowsize) an OACK grants: only options asked for, none
/// larger than asked.
fn parse_oack(cli: &Cli, body: &[u8]) -> Result<(u16, u16), String> {
    let (mut blksize, mut window) = (512u16, 1u16);
    let fields: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    // NUL-terminated strings: the split leaves one empty piece at the end.
    if fields.last() != Some(&&b""[..]) || fields.len() % 2 != 1 {
        return Err("OACK not made of name/value pairs".into());
    }
    for pair in fields[..fields.len() - 1].chunks(2) {
        let name = String::from_utf8_lossy(pair[0]).to_ascii_lowercase();
        let value = String::from_utf8_lossy(pair[1]);
        let asked = match name.as_str() {
            "blksize" => cli.blksize,
            "windowsize" => cli.windowsize,
            _ => None,
        };
        let (Some(asked), Ok(v)) = (asked, value.parse::<u16>()) else {
            return Err(format!(
                "OACK option {name}={value} not asked or not a number"
            ));
        };
        let floor = if name == "blksize" { 8 } else { 1 };
        if v > asked || v < floor {
            return Err(format!("OACK grants {name} {v}, asked {asked}"));
        }
        if name == "blksize" {
            blksize = v;
        } else {
            window = v;
        }
    }
    Ok((blksize, window))
}

/// A fresh socket (a new TID) with the receive timeout and buffer asked.
fn open_socket(cli: &Cli) -> io::Result<(UdpSocket, usize)> {
    let any = match cli.server.ip() {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let sock = UdpSocket::bind(SocketAddr::new(any, 0))?;
    sock.set_read_timeout(Some(Duration::from_millis(cli.timeout_ms)))?;
    let fd = sock.as_raw_fd();
    let int = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    if let Some(bytes) = cli.rcvbuf {
        let v = bytes.min(i32::MAX as usize / 2) as libc::c_int;
        let set = |opt| {
            // SAFETY: setsockopt on our own socket with a c_int option value.
            unsafe { libc::setsockopt(fd, libc::SOL_SOCKET, opt, (&raw const v).cast(), int) }
        };
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if !(root && set(libc::SO_RCVBUFFORCE) == 0) && set(libc::SO_RCVBUF) != 0 {
            return Err(io::Error::last_os_error());
        }
    }
    let mut got: libc::c_int = 0;
    let mut len = int;
    // SAFETY: getsockopt into a c_int of our own, its length given.
    if unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&raw mut got).cast(),
            &mut len,
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    Ok((sock, got as usize))
}

/// One transfer from RRQ to the last block's ACK, or why it failed.
fn transfer(cli: &Cli, want: &[u8], buf: &mut [u8], stats: &mut Stats) -> Result<(), Failure> {
    let (sock, rcvbuf) = open_socket(cli).map_err(|e| fail("socket", e.to_string()))?;
    stats.rcvbuf = rcvbuf;
    let send = |p: &[u8], to: SocketAddr| {
        sock.send_to(p, to)
            .map(drop)
            .map_err(|e| fail("socket", format!("send: {e}")))
    };
    let request = rrq(cli);
    send(&request, cli.server)?;
    let mut peer: Option<SocketAddr> = None;
    let (mut blksize, mut window) = (512u16, 1u16);
    let mut negotiated = false; // an OACK or DATA 1 has fixed blksize and window
    let mut expected: u16 = 1; // the next block number wanted
    let mut offset = 0usize; // bytes verified so far
    let mut since_ack = 0u16; // in-order blocks since the last ACK
    let mut nacked = false; // re-ACKed a gap since the last progress
    let mut idle = 0u32; // timeouts in a row
    // On a failure after the server's TID is known, tell it to stop.
    let abort = |peer: Option<SocketAddr>, f: Failure| {
        if let Some(to) = peer {
            let mut p = packet(OP_ERROR, 0).to_vec();
            p.extend_from_slice(b"tftp-get: ");
            p.extend_from_slice(f.kind.as_bytes());
            p.push(0);
            let _ = sock.send_to(&p, to);
        }
        f
    };
    loop {
        let (n, from) = match sock.recv_from(buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                stats.timeouts += 1;
                idle += 1;
                if idle > cli.retries {
                    let at = if peer.is_none() {
                        "no reply to the RRQ".into()
                    } else {
                        format!("waiting for block {expected}")
                    };
                    return Err(abort(
                        peer,
                        fail(
                            "timeout",
                            format!("no answer after {} retries, {at}", cli.retries),
                        ),
                    ));
                }
                match peer {
                    None => send(&request, cli.server)?,
                    Some(to) => send(&packet(OP_ACK, expected.wrapping_sub(1)), to)?,
                }
                continue;
            }
            // ICMP port unreachable for an earlier send: wait on.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(abort(peer, fail("socket", format!("recv: {e}")))),
        };
        match peer {
            Some(p) if p != from => continue, // another TID: not ours
            None if from.ip() != cli.server.ip() => continue,
            None => peer = Some(from),
            Some(_) => {}
        }
        if n < 4 {
            return Err(abort(peer, fail("protocol", format!("{n}-byte datagram"))));
        }
        let op = u16::from_be_bytes([buf[0], buf[1]]);
        let num = u16::from_be_bytes([buf[2], buf[3]]);
        match op {
            OP_ERROR => {
                let msg = String::from_utf8_lossy(&buf[4..n]);
                return Err(fail(
                    "error",
                    format!("ERROR {num}: {}", msg.trim_end_matches('\0')),
                ));
            }
            OP_OACK if !negotiated => {
                (blksize, window) =
                    parse_oack(cli, &buf[2..n]).map_err(|e| abort(peer, fail("bad-oack", e)))?;
                negotiated = true;
                stats.granted = Some((Instant::now(), blksize, window));
                idle = 0;
                send(&packet(OP_ACK, 0), from)?;
            }
            // The OACK again (our ACK 0 lost) before any data: ACK it again;
            // later, ignore it.
            OP_OACK if offset == 0 => send(&packet(OP_ACK, 0), from)?,
            OP_OACK => {}
            OP_DATA if num == expected => {
                if !negotiated {
                    // DATA 1 without an OACK: the defaults, 512 / 1.
                    negotiated = true;
                    stats.granted = Some((Instant::now(), blksize, window));
                }
                let data = &buf[4..n];
                if data.len() > blksize as usize {
                    return Err(abort(
                        peer,
                        fail(
                            "length",
                            format!("block {num}: {} bytes, blksize {blksize}", data.len()),
                        ),
                    ));
                }
                let end = offset + data.len();
                if end > want.len() {
                    return Err(abort(
                        peer,
                        fail(
                            "length",
                            format!("{end}+ bytes, the file has {}", want.len()),
                        ),
                    ));
                }
                if data != &want[offset..end] {
                    let at = offset
                        + data
                            .iter()
                            .zip(&want[offset..end])
                            .position(|(a, b)| a != b)
                            .unwrap_or(0);
                    return Err(abort(
                        peer,
                        fail("mismatch", format!("byte {at} differs (block {num})")),
                    ));
                }
                offset = end;
                (idle, nacked) = (0, false);
                since_ack += 1;
                let last = data.len() < blksize as usize;
                if last || since_ack >= window {
                    send(&packet(OP_ACK, num), from)?;
                    since_ack = 0;
                }
                if last {
                    if offset != want.len() {
                        return Err(fail(
                            "length",
                            format!("{offset} bytes, the file has {}", want.len()),
                        ));
                    }
                    stats.bytes += offset as u64;
                    return Ok(());
                }
                expected = expected.wrapping_add(1);
            }
            OP_DATA => {
                // A gap or an old block: restart the server from the last
                // in-order block, once per stall.
                stats.out_of_order += 1;
                if !nacked {
                    send(&packet(OP_ACK, expected.wrapping_sub(1)), from)?;
                    (nacked, since_ack) = (true, 0);
                }
            }
            _ => return Err(abort(peer, fail("protocol", format!("opcode {op}")))),
        }
    }
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct we own.
    let mut r: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut r) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(r.ru_utime) + secs(r.ru_stime)
}

fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let want = match std::fs::read(&cli.verify) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("tftp-get: cannot read {}: {e}", cli.verify.display());
            return ExitCode::from(2);
        }
    };
    // One receive buffer per thread, one byte over the largest DATA asked
    // for, so that an oversized block shows instead of being truncated.
    let buf_len = cli.blksize.unwrap_or(512) as usize + 5;
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(cli.duration_limit.max(0.0));
    let next = AtomicUsize::new(0);
    let threads = cli.concurrency.min(cli.count.max(1) as u64) as usize;
    let mut stats = Stats::default();
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut st = Stats::default();
                    let mut buf = vec![0u8; buf_len];
                    while Instant::now() < deadline
                        && next.fetch_add(1, Ordering::Relaxed) < cli.count
                    {
                        let t0 = Instant::now();
                        match transfer(&cli, &want, &mut buf, &mut st) {
                            Ok(()) => st.ok_ms.push(t0.elapsed().as_secs_f64() * 1e3),
                            Err(f) => {
                                eprintln!("tftp-get: transfer failed ({}): {}", f.kind, f.detail);
                                *st.failures.entry(f.kind).or_default() += 1;
                            }
                        }
                    }
                    st
                })
            })
            .collect();
        for w in workers {
            stats.merge(w.join().expect("a transfer thread panicked"));
        }
    });
    let wall = start.elapsed().as_secs_f64().max(1e-9);
    let cpu = cpu_seconds();
    let ok = stats.ok_ms.len();
    let started = next.load(Ordering::Relaxed).min(cli.count);
    if started < cli.count {
        *stats.failures.entry("not-started".into()).or_default() += (cli.count - started) as u64;
    }
    let failed: u64 = stats.failures.values().sum();
    stats.ok_ms.sort_by(f64::total_cmp);
    let (p50, p99) = (
        percentile(&stats.ok_ms, 50.0),
        percentile(&stats.ok_ms, 99.0),
    );
    let mib_s = stats.bytes as f64 / (1 << 20) as f64 / wall;
    let (blksize, window) = stats.granted.map_or((0, 0), |g| (g.1, g.2));
    let kinds: Vec<String> = stats
        .failures
        .iter()
        .map(|(k, n)| format!("{}: {n}", json_string(k)))
        .collect();
    println!(
        "tftp-get: {ok} ok, {failed} failed {:?}, {} bytes in {wall:.3} s, {mib_s:.1} MiB/s, p50 {p50:.1} ms, \
         p99 {p99:.1} ms, cpu {cpu:.3} s, {} timeouts, {} out of order, rcvbuf {}, blksize {blksize}, windowsize {window}",
        stats.failures, stats.bytes, stats.timeouts, stats.out_of_order, stats.rcvbuf
    );
    if let Some(path) = &cli.json {
        let json = format!(
            "{{\"ok\": {ok}, \"failed\": {failed}, \"failure_kinds\": {{{}}}, \"bytes\": {}, \"wall_s\": {wall:.6}, \
             \"mib_per_s\": {mib_s:.3}, \"transfers_per_s\": {:.3}, \"p50_ms\": {p50:.3}, \"p99_ms\": {p99:.3}, \
             \"client_cpu_seconds\": {cpu:.6}, \"timeouts\": {}, \"out_of_order\": {}, \"rcvbuf\": {}, \
             \"blksize\": {blksize}, \"windowsize\": {window}}}\n",
            kinds.join(", "),
            stats.bytes,
            ok as f64 / wall,
            stats.timeouts,
            stats.out_of_order,
            stats.rcvbuf
        );
        if let Err(e) = std::fs::write(path, json) {
            eprintln!("tftp-get: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
