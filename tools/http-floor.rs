//! http-floor: how cheaply one server thread can push a file's bytes into
//! TCP sockets, method by method, side by side in one run, so the HTTP
//! body path is chosen on evidence. No HTTP: each of N loopback
//! connections (default 8) is sent the whole file K times back to back,
//! then a FIN; K is chosen so a run moves `--gib` GiB in all. The file is
//! opened and mapped once, pre-faulted with MADV_POPULATE_READ (which also
//! reads it into the page cache), and every method serves that same
//! mapping or descriptor in the same `--chunk-kib` chunks (default 1 MiB):
//!
//! - `send`: `send(MSG_DONTWAIT)` straight from the mapping on
//!   non-blocking sockets, re-armed by edge-triggered epoll on EAGAIN;
//! - `sendfile`: `sendfile(2)` the same way (nginx with `sendfile on;
//!   sendfile_max_chunk 1m`);
//! - `uring-splice`: io_uring splice file→pipe linked to splice
//!   pipe→socket, one pipe per connection sized to the chunk with
//!   F_SETPIPE_SZ where allowed;
//! - `uring-send`: io_uring `Send` from the mapping, one SQE per chunk and
//!   per connection in flight, the next queued by the completion;
//! - `uring-send-zc`: the same with `SendZc` (MSG_ZEROCOPY's io_uring
//!   form), the notifications counted, and those that say the kernel
//!   copied after all.
//!
//! The server side is one thread pinned to `--server-cpu` (default 0), the
//! client one thread pinned to `--client-cpu` (default 1) that `recv`s
//! every connection into one reusable buffer, counting the bytes. Before
//! the timed runs each method serves the file once per connection to a
//! client that compares every byte with the file (`--no-verify` skips
//! this). Then each method runs `--repeat` times (default 3), interleaved
//! round-robin with the starting method rotated every round, and the table
//! gives per-column medians:
//!
//! - GiB/s: bytes over wall time, first byte offered to last byte read;
//! - server CPU-s/GiB: all the transfer's work on the server's CPU: the
//!   server thread's CPU time (getrusage RUSAGE_THREAD), its io-wq
//!   workers' (io_uring runs every splice in a kernel worker thread, never
//!   inline; they are pinned to the server's CPU with
//!   IORING_REGISTER_IOWQ_AFF) and that CPU's ksoftirqd's (network
//!   softirq work the kernel deferred to it; both from schedstat), with
//!   the last two also shown on their own;
//! - client CPU-s/GiB (the client thread and its CPU's ksoftirqd) and the
//!   sum of both: the whole cost of the transfer;
//! - busy: each side's CPU over wall time; the side near 100% bounds the
//!   throughput;
//! - calls/GiB and waits/GiB: send/sendfile syscalls or SQEs, and
//!   epoll_wait or io_uring_enter calls;
//! - other: CPU time other processes (or the hypervisor, as steal) took on
//!   the two pinned CPUs during the run, from /proc/stat, as a share of
//!   both: a run with much of it was disturbed.
//!
//! ```text
//! head -c 64M /dev/urandom > /tmp/http-floor-64m
//! cargo run --release --bin http-floor -- --file /tmp/http-floor-64m --gib 4
//! cargo run --release --bin http-floor -- --file /tmp/http-floor-64m \
//!     --methods send,sendfile --chunk-kib 256 --json /tmp/http-floor.json
//! ```
//!
//! What loopback does not show of a NIC:
//!
//! - Nothing DMAs. The receiver's `recv` copies every byte out of the skb
//!   whatever the method. `send` copies once more, mapping → skb, in the
//!   server; with a NIC that copy is the only one. `sendfile` and splice
//!   put references to the page-cache pages in the skb: no copy on the
//!   server, and on loopback those pages are copied by the receiver
//!   anyway, where a NIC would DMA them and no CPU would touch the bytes.
//!   The receiver's copy costs more for them: it reads page-cache pages
//!   (from memory, for a file larger than the caches) a 4 KiB fragment at
//!   a time, where after `send` it reads skb pages the sender has just
//!   written (warm in a shared L3) in larger fragments.
//! - MSG_ZEROCOPY / `SendZc` pin the user pages, but an skb delivered to a
//!   local socket must not keep them, so the kernel copies them
//!   (skb_orphan_frags_rx) in the sender's softirq and the notification
//!   reports ZC_COPIED: on loopback it is `send` plus pinning plus a
//!   notification per request, never cheaper. On a NIC it saves the copy,
//!   and the pages stay pinned until the data is acknowledged.
//! - Transmitting on loopback runs the receiver's TCP input (netif_rx,
//!   NET_RX softirq) on the sending CPU, in the sender's context: without
//!   IRQ_TIME_ACCOUNTING it is charged to the sending thread. So the server
//!   column includes the client socket's receive processing, and the
//!   client column the processing of its ACKs on the server's sockets
//!   (freeing sent skbs, waking the server). Which side pays also shifts
//!   with load: a segment that arrives while the client holds its socket
//!   goes to the socket's backlog, processed (and charged) by the client.
//!   The sum column has no such ambiguity.
//! - Loopback's MTU is 64 KiB: segments are few and large, where a NIC
//!   with a 1500-byte MTU leans on TSO and per-packet costs matter more.
//!
//! Not a server: loopback benchmarks only (127.0.0.1, ephemeral ports).

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::{Ipv4Addr, Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Barrier;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use memmap2::{Advice, Mmap};
use serde::Serialize;

const GIB: f64 = (1u64 << 30) as f64;
/// The longest any wait (epoll_wait, io_uring_enter) blocks before its loop
/// looks at the deadline and the other side's abort flag again.
const TICK: Duration = Duration::from_millis(100);
/// From <linux/io_uring.h>; io-uring 0.7 keeps its `sys` module private.
/// Asks `SendZc` to say in its notification whether the kernel copied.
const IORING_SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// Set in a notification's `res` when the kernel copied the data after all.
const IORING_NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;

#[derive(Clone, Copy, PartialEq, Eq, Debug, ValueEnum)]
enum Method {
    /// send(MSG_DONTWAIT) from the mapping, epoll on EAGAIN.
    Send,
    /// sendfile(2) on a non-blocking socket, epoll on EAGAIN.
    Sendfile,
    /// io_uring splice file→pipe linked to splice pipe→socket.
    UringSplice,
    /// io_uring Send from the mapping.
    UringSend,
    /// io_uring SendZc from the mapping.
    UringSendZc,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Send => "send",
            Method::Sendfile => "sendfile",
            Method::UringSplice => "uring-splice",
            Method::UringSend => "uring-send",
            Method::UringSendZc => "uring-send-zc",
        }
    }

    fn uses_uring(self) -> bool {
        matches!(
            self,
            Method::UringSplice | Method::UringSend | Method::UringSendZc
        )
    }
}

#[derive(Parser)]
#[command(
    name = "http-floor",
    about = "What one thread spends per GiB sending a file over loopback TCP, method by method"
)]
struct Cli {
    /// The file to serve (mapped once and read into the page cache).
    #[arg(long)]
    file: PathBuf,
    /// GiB each run moves, split evenly over the connections (rounded up
    /// to whole passes over the file).
    #[arg(long, default_value_t = 4.0)]
    gib: f64,
    /// Connections per run.
    #[arg(long, default_value_t = 8)]
    conns: usize,
    /// Bytes per send, sendfile, splice or SQE, in KiB.
    #[arg(long, default_value_t = 1024)]
    chunk_kib: usize,
    /// Timed runs per method, interleaved round-robin; medians are shown.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// The methods to measure, comma-separated.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_values_t = [
            Method::Send,
            Method::Sendfile,
            Method::UringSplice,
            Method::UringSend,
            Method::UringSendZc,
        ]
    )]
    methods: Vec<Method>,
    /// The CPU the server thread (and its io-wq workers) is pinned to.
    #[arg(long, default_value_t = 0)]
    server_cpu: usize,
    /// The CPU the client thread is pinned to.
    #[arg(long, default_value_t = 1)]
    client_cpu: usize,
    /// The client's receive buffer, in KiB (one, reused by every recv).
    #[arg(long, default_value_t = 256)]
    recv_kib: usize,
    /// Skip the untimed pass per method that checks every byte.
    #[arg(long)]
    no_verify: bool,
    /// A run taking longer than this many seconds fails.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Also write every run, the checks and the medians here as JSON.
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What one run does, the same for every method.
#[derive(Clone, Copy)]
struct Plan {
    conns: usize,
    /// Bytes each connection is sent: whole passes over the file.
    per_conn: u64,
    chunk: usize,
    recv_buf: usize,
    /// Whether the client compares every byte with the file.
    verify: bool,
    server_cpu: usize,
    client_cpu: usize,
    timeout: Duration,
}

/// The file, opened and mapped once for every run.
struct Source {
    file: File,
    map: Mmap,
}

impl Source {
    fn open(path: &Path) -> io::Result<Source> {
        let with_path = |e: io::Error| io::Error::new(e.kind(), format!("{}: {e}", path.display()));
        let file = File::open(path).map_err(with_path)?;
        // SAFETY: the benchmark's input is not changed while it runs (a
        // truncation would make reads of the mapping fault).
        let map = unsafe { Mmap::map(&file) }.map_err(with_path)?;
        if map.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is empty", path.display()),
            ));
        }
        // Fault every page in (reading the file into the page cache if it
        // was not) so that no run pays for page faults or disk reads.
        map.advise(Advice::PopulateRead).map_err(with_path)?;
        Ok(Source { file, map })
    }

    fn len(&self) -> usize {
        self.map.len()
    }
}

/// One timed run, or the medians of a method's runs.
#[derive(Serialize, Clone)]
struct Sample {
    method: &'static str,
    round: usize,
    bytes: u64,
    wall_s: f64,
    gib_per_s: f64,
    /// Server thread, its io-wq workers and its CPU's ksoftirqd.
    server_cpu_s_per_gib: f64,
    /// The io-wq workers' part of the above.
    worker_cpu_s_per_gib: f64,
    /// The ksoftirqd part of the above.
    server_softirqd_cpu_s_per_gib: f64,
    /// Client thread and its CPU's ksoftirqd.
    client_cpu_s_per_gib: f64,
    /// The ksoftirqd part of the above.
    client_softirqd_cpu_s_per_gib: f64,
    total_cpu_s_per_gib: f64,
    /// Server CPU (as above) over wall time.
    server_busy: f64,
    client_busy: f64,
    calls_per_gib: f64,
    waits_per_gib: f64,
    /// Other tasks' and steal time on the pinned CPUs, % of their time
    /// (ksoftirqd's counted above, not here).
    other_cpu_pct: f64,
    zc_notifs: u64,
    zc_copied: u64,
    pipe_bytes: usize,
    iowq_pinned: bool,
}

#[derive(Serialize)]
struct Check {
    method: &'static str,
    ok: bool,
    error: Option<String>,
}

#[derive(Serialize)]
struct Report<'a> {
    file: String,
    file_bytes: usize,
    kernel: String,
    conns: usize,
    per_conn_bytes: u64,
    chunk_bytes: usize,
    recv_bytes: usize,
    repeat: usize,
    server_cpu: usize,
    client_cpu: usize,
    checks: &'a [Check],
    errors: &'a [String],
    runs: &'a [Sample],
    medians: &'a [Sample],
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("http-floor: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Everything; false when a check or a run failed.
fn run(cli: &Cli) -> io::Result<bool> {
    let invalid = |what: &str| io::Error::new(io::ErrorKind::InvalidInput, what.to_string());
    if cli.conns == 0 || cli.repeat == 0 || cli.recv_kib == 0 || cli.methods.is_empty() {
        return Err(invalid(
            "--conns, --repeat, --recv-kib and --methods want at least one",
        ));
    }
    // io_uring lengths are 32-bit.
    if cli.chunk_kib == 0 || cli.chunk_kib > 1 << 20 {
        return Err(invalid("--chunk-kib wants 1 to 1048576"));
    }
    if !(cli.gib > 0.0 && cli.gib <= 1024.0) {
        return Err(invalid("--gib wants more than 0, at most 1024"));
    }
    let mut methods: Vec<Method> = Vec::new();
    for &m in &cli.methods {
        if !methods.contains(&m) {
            methods.push(m);
        }
    }
    let src = Source::open(&cli.file)?;
    let len = src.len() as u64;
    let wanted = (cli.gib * GIB) as u64;
    let passes = wanted.div_ceil(cli.conns as u64 * len).max(1);
    let plan = Plan {
        conns: cli.conns,
        per_conn: passes * len,
        chunk: cli.chunk_kib << 10,
        recv_buf: cli.recv_kib << 10,
        verify: false,
        server_cpu: cli.server_cpu,
        client_cpu: cli.client_cpu,
        timeout: Duration::from_secs(cli.timeout_s),
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    println!(
        "http-floor: {} ({:.1} MiB), {} connections x {} passes = {:.2} GiB a run, \
         chunk {} KiB, recv {} KiB, server on CPU {}, client on CPU {}, kernel {kernel}",
        cli.file.display(),
        len as f64 / (1 << 20) as f64,
        cli.conns,
        passes,
        (plan.per_conn * cli.conns as u64) as f64 / GIB,
        cli.chunk_kib,
        cli.recv_kib,
        cli.server_cpu,
        cli.client_cpu,
    );

    // The untimed byte-exact pass: each connection gets the file once.
    let mut checks = Vec::new();
    let mut live: Vec<Method> = Vec::new();
    for &method in &methods {
        if cli.no_verify {
            live.push(method);
            continue;
        }
        let check_plan = Plan {
            per_conn: len,
            verify: true,
            ..plan
        };
        let result = run_once(method, &src, &check_plan, 0);
        let error = result.err().map(|e| e.to_string());
        eprintln!(
            "check {:<14} {}",
            method.name(),
            error.as_deref().unwrap_or("ok: every byte as in the file")
        );
        if error.is_none() {
            live.push(method);
        }
        checks.push(Check {
            method: method.name(),
            ok: error.is_none(),
            error,
        });
    }

    let mut runs: Vec<Sample> = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    // A method whose run failed is not run again.
    let mut failed: Vec<Method> = Vec::new();
    for round in 0..cli.repeat {
        let order: Vec<Method> = (0..live.len())
            .map(|j| live[(j + round) % live.len()])
            .collect();
        for method in order {
            if failed.contains(&method) {
                continue;
            }
            match run_once(method, &src, &plan, round + 1) {
                Ok(s) => {
                    eprintln!(
                        "round {}/{} {:<14} {:6.2} GiB/s  server {:.3}  client {:.3} CPU-s/GiB  other {:.0}%",
                        round + 1,
                        cli.repeat,
                        s.method,
                        s.gib_per_s,
                        s.server_cpu_s_per_gib,
                        s.client_cpu_s_per_gib,
                        s.other_cpu_pct
                    );
                    runs.push(s);
                }
                Err(e) => {
                    let line = format!("{}: round {}: {e}", method.name(), round + 1);
                    eprintln!("{line}");
                    errors.push(line);
                    failed.push(method);
                }
            }
        }
    }

    let medians: Vec<Sample> = methods
        .iter()
        .filter_map(|m| medians_of(m.name(), &runs))
        .collect();
    print_table(&medians, &checks, cli.repeat);
    for e in &errors {
        println!("error: {e}");
    }

    if let Some(path) = &cli.json {
        let report = Report {
            file: cli.file.display().to_string(),
            file_bytes: src.len(),
            kernel,
            conns: plan.conns,
            per_conn_bytes: plan.per_conn,
            chunk_bytes: plan.chunk,
            recv_bytes: plan.recv_buf,
            repeat: cli.repeat,
            server_cpu: plan.server_cpu,
            client_cpu: plan.client_cpu,
            checks: &checks,
            errors: &errors,
            runs: &runs,
            medians: &medians,
        };
        let out = io::BufWriter::new(File::create(path)?);
        serde_json::to_writer_pretty(out, &report).map_err(io::Error::other)?;
    }
    Ok(errors.is_empty() && checks.iter().all(|c| c.ok))
}

fn print_table(medians: &[Sample], checks: &[Check], repeat: usize) {
    println!();
    println!(
        "medians of {repeat}; CPU seconds per GiB delivered: server = thread + io-wq + ksoftirqd \
         on its CPU, client = thread + ksoftirqd on its CPU"
    );
    println!(
        "{:<14} {:>6} {:>7} {:>7} {:>7} {:>7} {:>7} {:>6} {:>6} {:>8} {:>8} {:>6} {:>6}",
        "method",
        "GiB/s",
        "server",
        "io-wq",
        "ksirqd",
        "client",
        "sum",
        "s.busy",
        "c.busy",
        "calls/G",
        "waits/G",
        "other",
        "check"
    );
    for s in medians {
        let check = checks
            .iter()
            .find(|c| c.method == s.method)
            .map_or("-", |c| if c.ok { "ok" } else { "FAIL" });
        println!(
            "{:<14} {:>6.2} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>7.3} {:>5.0}% {:>5.0}% {:>8.0} {:>8.0} {:>5.1}% {:>6}",
            s.method,
            s.gib_per_s,
            s.server_cpu_s_per_gib,
            s.worker_cpu_s_per_gib,
            s.server_softirqd_cpu_s_per_gib,
            s.client_cpu_s_per_gib,
            s.total_cpu_s_per_gib,
            s.server_busy * 100.0,
            s.client_busy * 100.0,
            s.calls_per_gib,
            s.waits_per_gib,
            s.other_cpu_pct,
            check
        );
    }
    for s in medians {
        if s.pipe_bytes > 0 {
            println!(
                "{}: pipes of {} KiB; io-wq workers {}pinned to the server's CPU",
                s.method,
                s.pipe_bytes >> 10,
                if s.iowq_pinned { "" } else { "NOT " }
            );
        }
        if s.zc_notifs > 0 {
            println!(
                "{}: {} of {} zero-copy notifications (median run) say the kernel copied",
                s.method, s.zc_copied, s.zc_notifs
            );
        }
    }
}

/// Each column's median over `method`'s runs (columns independently).
fn medians_of(method: &'static str, runs: &[Sample]) -> Option<Sample> {
    let mine: Vec<&Sample> = runs.iter().filter(|s| s.method == method).collect();
    let first = *mine.first()?;
    let m = |f: fn(&Sample) -> f64| median(mine.iter().map(|s| f(s)).collect());
    Some(Sample {
        method,
        round: 0,
        bytes: first.bytes,
        wall_s: m(|s| s.wall_s),
        gib_per_s: m(|s| s.gib_per_s),
        server_cpu_s_per_gib: m(|s| s.server_cpu_s_per_gib),
        worker_cpu_s_per_gib: m(|s| s.worker_cpu_s_per_gib),
        server_softirqd_cpu_s_per_gib: m(|s| s.server_softirqd_cpu_s_per_gib),
        client_cpu_s_per_gib: m(|s| s.client_cpu_s_per_gib),
        client_softirqd_cpu_s_per_gib: m(|s| s.client_softirqd_cpu_s_per_gib),
        total_cpu_s_per_gib: m(|s| s.total_cpu_s_per_gib),
        server_busy: m(|s| s.server_busy),
        client_busy: m(|s| s.client_busy),
        calls_per_gib: m(|s| s.calls_per_gib),
        waits_per_gib: m(|s| s.waits_per_gib),
        other_cpu_pct: m(|s| s.other_cpu_pct),
        zc_notifs: m(|s| s.zc_notifs as f64) as u64,
        zc_copied: m(|s| s.zc_copied as f64) as u64,
        pipe_bytes: first.pipe_bytes,
        iowq_pinned: mine.iter().all(|s| s.iowq_pinned),
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// What one side measured over its part of the run.
struct Side {
    start: Instant,
    end: Instant,
    /// The thread's own CPU time.
    cpu: Duration,
    /// CPU time of the io-wq workers (server side only).
    workers: Duration,
}

/// The server's counts over a run.
#[derive(Default)]
struct Counters {
    /// send/sendfile syscalls, or SQEs.
    calls: u64,
    /// epoll_wait or io_uring_enter calls.
    waits: u64,
    zc_notifs: u64,
    zc_copied: u64,
    pipe_bytes: usize,
    iowq_pinned: bool,
}

/// One run of `method`: fresh connections, both threads pinned and set up,
/// then released together.
fn run_once(method: Method, src: &Source, plan: &Plan, round: usize) -> io::Result<Sample> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?;
    let addr = listener.local_addr()?;
    let mut clients = Vec::with_capacity(plan.conns);
    let mut servers = Vec::with_capacity(plan.conns);
    for _ in 0..plan.conns {
        // Loopback connects complete at once; the backlog holds them all.
        let c = TcpStream::connect(addr)?;
        c.set_nonblocking(true)?;
        clients.push(c);
        let (s, _) = listener.accept()?;
        // io_uring's socket ops poll for readiness themselves, and its
        // splice runs in a worker that needs a blocking socket (on a
        // non-blocking one it would complete with -EAGAIN).
        s.set_nonblocking(!method.uses_uring())?;
        servers.push(s);
    }
    drop(listener);

    let barrier = Barrier::new(3);
    let abort = AtomicBool::new(false);
    let cpus: Vec<usize> = if plan.server_cpu == plan.client_cpu {
        vec![plan.server_cpu]
    } else {
        vec![plan.server_cpu, plan.client_cpu]
    };
    // ksoftirqd of each side's CPU (one thread when they share a CPU).
    let softirqd = [
        softirqd_pid(plan.server_cpu),
        softirqd_pid(plan.client_cpu).filter(|_| plan.client_cpu != plan.server_cpu),
    ];
    let (server, client, process_cpu, busy, softirq) = std::thread::scope(|s| {
        let server = s.spawn(|| server_side(method, &servers, src, plan, &barrier, &abort));
        let client = s.spawn(|| client_side(&clients, src, plan, &barrier, &abort));
        barrier.wait();
        let cpu_before = rusage(libc::RUSAGE_SELF);
        let busy_before = busy_seconds(&cpus);
        let softirq_before = softirqd.map(task_cpu);
        let server = server.join();
        let client = client.join();
        let process_cpu = rusage(libc::RUSAGE_SELF).saturating_sub(cpu_before);
        let busy = busy_seconds(&cpus) - busy_before;
        let softirq_after = softirqd.map(task_cpu);
        let softirq = [0, 1].map(|k| softirq_after[k].saturating_sub(softirq_before[k]));
        (server, client, process_cpu, busy, softirq)
    });
    let panicked = |who: &str| io::Error::other(format!("the {who} thread panicked"));
    let (server, counters) = server.map_err(|_| panicked("server"))??;
    let client = client.map_err(|_| panicked("client"))??;

    let bytes = plan.per_conn * plan.conns as u64;
    let gib = bytes as f64 / GIB;
    let wall = (server.end.max(client.end) - server.start.min(client.start)).as_secs_f64();
    let server_cpu = (server.cpu + server.workers + softirq[0]).as_secs_f64();
    let client_cpu = (client.cpu + softirq[1]).as_secs_f64();
    let other = (busy - (process_cpu + softirq[0] + softirq[1]).as_secs_f64()).max(0.0);
    Ok(Sample {
        method: method.name(),
        round,
        bytes,
        wall_s: wall,
        gib_per_s: gib / wall,
        server_cpu_s_per_gib: server_cpu / gib,
        worker_cpu_s_per_gib: server.workers.as_secs_f64() / gib,
        server_softirqd_cpu_s_per_gib: softirq[0].as_secs_f64() / gib,
        client_cpu_s_per_gib: client_cpu / gib,
        client_softirqd_cpu_s_per_gib: softirq[1].as_secs_f64() / gib,
        total_cpu_s_per_gib: (server_cpu + client_cpu) / gib,
        server_busy: server_cpu / wall,
        client_busy: client_cpu / wall,
        calls_per_gib: counters.calls as f64 / gib,
        waits_per_gib: counters.waits as f64 / gib,
        other_cpu_pct: 100.0 * other / (wall * cpus.len() as f64),
        zc_notifs: counters.zc_notifs,
        zc_copied: counters.zc_copied,
        pipe_bytes: counters.pipe_bytes,
        iowq_pinned: counters.iowq_pinned,
    })
}

/// When a side gives up: the deadline passed, or the other side failed.
struct Stop<'a> {
    abort: &'a AtomicBool,
    deadline: Instant,
}

impl Stop<'_> {
    fn check(&self) -> io::Result<()> {
        if self.abort.load(Ordering::Relaxed) {
            return Err(io::Error::other("the other side failed"));
        }
        if Instant::now() > self.deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the run took longer than --timeout-s",
            ));
        }
        Ok(())
    }
}

/// A side's clock and CPU counters, started after the barrier. Reading
/// /proc for the io-wq workers is done outside the thread's own window.
struct Meter {
    start: Instant,
    cpu: Duration,
    /// Server side only: each io-wq worker's run time at the start.
    workers: Option<HashMap<u32, u64>>,
}

impl Meter {
    fn start(with_workers: bool) -> Meter {
        let workers = with_workers.then(io_worker_times);
        Meter {
            cpu: rusage(libc::RUSAGE_THREAD),
            start: Instant::now(),
            workers,
        }
    }

    fn stop(self) -> Side {
        let end = Instant::now();
        let cpu = rusage(libc::RUSAGE_THREAD).saturating_sub(self.cpu);
        // Per worker, so one that came or went in between counts right.
        let ns: u64 = self.workers.map_or(0, |before| {
            io_worker_times()
                .iter()
                .map(|(tid, &t)| t.saturating_sub(before.get(tid).copied().unwrap_or(0)))
                .sum()
        });
        Side {
            start: self.start,
            end,
            cpu,
            workers: Duration::from_nanos(ns),
        }
    }
}

/// The server thread: pin, set up, wait for the client, serve, measure.
fn server_side(
    method: Method,
    socks: &[TcpStream],
    src: &Source,
    plan: &Plan,
    barrier: &Barrier,
    abort: &AtomicBool,
) -> io::Result<(Side, Counters)> {
    let setup = pin_to(plan.server_cpu).and_then(|()| {
        Ok(if method.uses_uring() {
            Server::Uring(Box::new(UringServer::new(method, socks, src, plan)?))
        } else {
            Server::Epoll(EpollServer::new(method, socks, src, plan)?)
        })
    });
    // Even a failed set-up waits here, or the others would wait forever.
    barrier.wait();
    let result = setup.and_then(|mut server| {
        let stop = Stop {
            abort,
            deadline: Instant::now() + plan.timeout,
        };
        let meter = Meter::start(true);
        let counters = match &mut server {
            Server::Epoll(s) => s.run(&stop)?,
            Server::Uring(s) => s.run(&stop)?,
        };
        Ok((meter.stop(), counters))
    });
    if result.is_err() {
        abort.store(true, Ordering::Relaxed);
    }
    result
}

/// The client thread: pin, set up, wait for the server, read, measure.
fn client_side(
    socks: &[TcpStream],
    src: &Source,
    plan: &Plan,
    barrier: &Barrier,
    abort: &AtomicBool,
) -> io::Result<Side> {
    let setup = pin_to(plan.client_cpu).and_then(|()| Client::new(socks, plan));
    barrier.wait();
    let result = setup.and_then(|mut client| {
        let stop = Stop {
            abort,
            deadline: Instant::now() + plan.timeout,
        };
        let meter = Meter::start(false);
        client.run(src, plan, &stop)?;
        Ok(meter.stop())
    });
    if result.is_err() {
        abort.store(true, Ordering::Relaxed);
    }
    result
}

enum Server<'a> {
    Epoll(EpollServer<'a>),
    Uring(Box<UringServer<'a>>),
}

/// `send` and `sendfile`: non-blocking sockets, one chunk per ready
/// connection per sweep, edge-triggered epoll when none is ready.
struct EpollServer<'a> {
    method: Method,
    epoll: Epoll,
    socks: &'a [TcpStream],
    src: &'a Source,
    per_conn: u64,
    chunk: usize,
}

impl<'a> EpollServer<'a> {
    fn new(
        method: Method,
        socks: &'a [TcpStream],
        src: &'a Source,
        plan: &Plan,
    ) -> io::Result<EpollServer<'a>> {
        let epoll = Epoll::new()?;
        for (i, s) in socks.iter().enumerate() {
            epoll.add(
                s.as_raw_fd(),
                (libc::EPOLLOUT | libc::EPOLLET) as u32,
                i as u64,
            )?;
        }
        Ok(EpollServer {
            method,
            epoll,
            socks,
            src,
            per_conn: plan.per_conn,
            chunk: plan.chunk,
        })
    }

    fn run(&mut self, stop: &Stop) -> io::Result<Counters> {
        let n = self.socks.len();
        let len = self.src.len();
        let mut counters = Counters::default();
        let mut sent = vec![0u64; n];
        let mut ready = vec![true; n];
        let mut live = n;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n];
        while live > 0 {
            stop.check()?;
            for i in 0..n {
                if !ready[i] || sent[i] == self.per_conn {
                    continue;
                }
                let pos = (sent[i] % len as u64) as usize;
                let left = (self.per_conn - sent[i]).min(len as u64) as usize;
                let want = self.chunk.min(len - pos).min(left);
                counters.calls += 1;
                match self.write(self.socks[i].as_raw_fd(), pos, want) {
                    Ok(k) => {
                        sent[i] += k as u64;
                        // A short write means the send buffer filled: the
                        // kernel set SOCK_NOSPACE, so the edge comes when
                        // there is room again (nginx reads it the same way).
                        if k < want {
                            ready[i] = false;
                        }
                        if sent[i] == self.per_conn {
                            self.socks[i].shutdown(Shutdown::Write)?;
                            live -= 1;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => ready[i] = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(e),
                }
            }
            let any_ready = (0..n).any(|i| ready[i] && sent[i] < self.per_conn);
            if live > 0 && !any_ready {
                counters.waits += 1;
                let k = self.epoll.wait(&mut events, TICK)?;
                for ev in &events[..k] {
                    ready[ev.u64 as usize] = true;
                }
                if k == 0 {
                    // No edge within a tick: try them all rather than trust
                    // one that may have been missed.
                    ready.fill(true);
                }
            }
        }
        Ok(counters)
    }

    /// One send or sendfile of `want` bytes at `pos` in the file.
    fn write(&self, fd: RawFd, pos: usize, want: usize) -> io::Result<usize> {
        let n = match self.method {
            // SAFETY: `pos + want <= len`: the range lies inside the
            // mapping, which outlives the call; the kernel only reads it.
            Method::Send => unsafe {
                libc::send(
                    fd,
                    self.src.map.as_ptr().add(pos).cast(),
                    want,
                    libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
                )
            },
            Method::Sendfile => {
                // An explicit offset: the file's own position is neither
                // used nor moved, so every connection shares one descriptor.
                let mut off = pos as libc::off_t;
                // SAFETY: two open descriptors and a live offset; sendfile
                // reads `want` bytes of the file from the page cache.
                unsafe { libc::sendfile(fd, self.src.file.as_raw_fd(), &mut off, want) }
            }
            _ => unreachable!("io_uring methods are served by UringServer"),
        };
        if n < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(n as usize)
        }
    }
}

/// What a completion is for: `user_data` is the connection << 2 | kind.
const TO_PIPE: u64 = 0;
const TO_SOCKET: u64 = 1;
const SEND: u64 = 2;

/// One connection's progress in an io_uring run.
#[derive(Clone, Copy, Default)]
struct UringConn {
    /// Bytes moved from the file into the pipe (splice only).
    moved: u64,
    /// Bytes the socket took.
    sent: u64,
    /// Bytes in the pipe, not yet in the socket (splice only).
    in_pipe: usize,
    /// Requests in flight: at most two (a linked pair of splices).
    inflight: u8,
    done: bool,
}

/// io_uring: one request (or linked pair) in flight per connection, the
/// next queued from the completion of the last.
struct UringServer<'a> {
    /// First field: dropped (and its requests cancelled) before the pipes.
    ring: IoUring,
    /// Per connection (read end, write end); empty unless splicing.
    pipes: Vec<(OwnedFd, OwnedFd)>,
    method: Method,
    socks: &'a [TcpStream],
    src: &'a Source,
    per_conn: u64,
    chunk: usize,
    conns: Vec<UringConn>,
    live: usize,
    /// SendZc notifications still to come.
    notifs_due: u64,
    counters: Counters,
}

impl<'a> UringServer<'a> {
    fn new(
        method: Method,
        socks: &'a [TcpStream],
        src: &'a Source,
        plan: &Plan,
    ) -> io::Result<UringServer<'a>> {
        let entries = (4 * socks.len()).next_power_of_two().max(16) as u32;
        let ring = new_ring(entries)?;
        // io-wq workers (every splice runs in one) may run on any CPU the
        // cpuset allows, not the creating thread's: keep them on the
        // server's CPU so that they do not borrow the client's.
        let mut counters = Counters {
            iowq_pinned: ring
                .submitter()
                .register_iowq_aff(&cpu_set(plan.server_cpu)?)
                .is_ok(),
            ..Counters::default()
        };
        let mut chunk = plan.chunk;
        let mut pipes = Vec::new();
        if method == Method::UringSplice {
            for _ in socks {
                let (r, w, size) = pipe_sized(plan.chunk)?;
                // A splice moves at most what the pipe holds.
                chunk = chunk.min(size);
                counters.pipe_bytes = size;
                pipes.push((r, w));
            }
        }
        Ok(UringServer {
            ring,
            pipes,
            method,
            socks,
            src,
            per_conn: plan.per_conn,
            chunk,
            conns: vec![UringConn::default(); socks.len()],
            live: socks.len(),
            notifs_due: 0,
            counters,
        })
    }

    fn run(&mut self, stop: &Stop) -> io::Result<Counters> {
        for i in 0..self.conns.len() {
            self.next(i)?;
        }
        let ts = types::Timespec::new().nsec(TICK.as_nanos() as u32);
        let args = types::SubmitArgs::new().timespec(&ts);
        let mut cqes: Vec<(u64, i32, u32)> = Vec::with_capacity(4 * self.conns.len());
        while self.live > 0 || self.notifs_due > 0 {
            stop.check()?;
            self.counters.waits += 1;
            // Submits what `next` queued and waits for a completion, or a
            // tick (ETIME).
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Err(e) => return Err(e),
            }
            cqes.clear();
            cqes.extend(
                self.ring
                    .completion()
                    .map(|c| (c.user_data(), c.result(), c.flags())),
            );
            for &(user_data, res, flags) in &cqes {
                self.complete(user_data, res, flags)?;
            }
        }
        Ok(std::mem::take(&mut self.counters))
    }

    /// Queues connection `i`'s next request(s), or ends it.
    fn next(&mut self, i: usize) -> io::Result<()> {
        let c = self.conns[i];
        if c.inflight > 0 || c.done {
            return Ok(());
        }
        let sock = types::Fd(self.socks[i].as_raw_fd());
        let len = self.src.len();
        let user_data = (i as u64) << 2;
        match self.method {
            Method::UringSplice => {
                let (pipe_r, pipe_w) = (
                    types::Fd(self.pipes[i].0.as_raw_fd()),
                    types::Fd(self.pipes[i].1.as_raw_fd()),
                );
                if c.in_pipe > 0 {
                    // Left in the pipe by a short splice to the socket, or
                    // by a short splice into the pipe that cancelled its
                    // partner: empty the pipe first.
                    let out = opcode::Splice::new(pipe_r, -1, sock, -1, c.in_pipe as u32)
                        .build()
                        .user_data(user_data | TO_SOCKET);
                    self.push(&out)?;
                    self.conns[i].inflight = 1;
                } else if c.moved < self.per_conn {
                    let pos = (c.moved % len as u64) as usize;
                    let left = (self.per_conn - c.moved).min(len as u64) as usize;
                    let want = self.chunk.min(len - pos).min(left) as u32;
                    // File → pipe at an explicit offset (page references,
                    // no copy), then pipe → socket. IO_LINK starts the
                    // second when the first completes; a short first
                    // fails the link, and the second completes with
                    // -ECANCELED.
                    let fill = opcode::Splice::new(
                        types::Fd(self.src.file.as_raw_fd()),
                        pos as i64,
                        pipe_w,
                        -1,
                        want,
                    )
                    .build()
                    .flags(squeue::Flags::IO_LINK)
                    .user_data(user_data | TO_PIPE);
                    let drain = opcode::Splice::new(pipe_r, -1, sock, -1, want)
                        .build()
                        .user_data(user_data | TO_SOCKET);
                    self.push(&fill)?;
                    self.push(&drain)?;
                    self.conns[i].inflight = 2;
                } else {
                    self.finish(i)?;
                }
            }
            Method::UringSend | Method::UringSendZc => {
                if c.sent < self.per_conn {
                    let pos = (c.sent % len as u64) as usize;
                    let left = (self.per_conn - c.sent).min(len as u64) as usize;
                    let want = self.chunk.min(len - pos).min(left) as u32;
                    // SAFETY (pointer arithmetic): `pos < len`, inside the
                    // mapping.
                    let buf = unsafe { self.src.map.as_ptr().add(pos) };
                    // MSG_WAITALL: io_uring itself retries a short send on
                    // a stream socket until the whole chunk is queued.
                    let flags = libc::MSG_WAITALL | libc::MSG_NOSIGNAL;
                    let entry = if self.method == Method::UringSend {
                        opcode::Send::new(sock, buf, want).flags(flags).build()
                    } else {
                        opcode::SendZc::new(sock, buf, want)
                            .flags(flags)
                            .zc_flags(IORING_SEND_ZC_REPORT_USAGE)
                            .build()
                    };
                    self.push(&entry.user_data(user_data | SEND))?;
                    self.conns[i].inflight = 1;
                } else {
                    self.finish(i)?;
                }
            }
            _ => unreachable!("epoll methods are served by EpollServer"),
        }
        Ok(())
    }

    fn finish(&mut self, i: usize) -> io::Result<()> {
        // Everything is in the socket (SendZc's pages may still be pinned,
        // but they are the mapping's, which outlives the run): send the FIN.
        self.socks[i].shutdown(Shutdown::Write)?;
        self.conns[i].done = true;
        self.live -= 1;
        Ok(())
    }

    fn complete(&mut self, user_data: u64, res: i32, flags: u32) -> io::Result<()> {
        if cqueue::notif(flags) {
            // SendZc's second completion: the kernel let go of the pages.
            self.notifs_due = self.notifs_due.saturating_sub(1);
            self.counters.zc_notifs += 1;
            if res as u32 & IORING_NOTIF_USAGE_ZC_COPIED != 0 {
                self.counters.zc_copied += 1;
            }
            return Ok(());
        }
        let i = (user_data >> 2) as usize;
        let failed = |what: &str| {
            let e = io::Error::from_raw_os_error(-res);
            io::Error::new(e.kind(), format!("{what} on connection {i}: {e}"))
        };
        let c = &mut self.conns[i];
        c.inflight -= 1;
        match user_data & 3 {
            TO_PIPE if res > 0 => {
                c.in_pipe += res as usize;
                c.moved += res as u64;
            }
            TO_PIPE if res == 0 => return Err(io::Error::other("splice file→pipe moved nothing")),
            TO_PIPE => return Err(failed("splice file→pipe")),
            TO_SOCKET if res > 0 => {
                c.in_pipe -= res as usize;
                c.sent += res as u64;
            }
            // The splice into the pipe came up short (what it moved is
            // counted in `in_pipe`, and `next` sends it).
            TO_SOCKET if res == -libc::ECANCELED => {}
            TO_SOCKET if res == 0 => {
                return Err(io::Error::other("splice pipe→socket moved nothing"));
            }
            TO_SOCKET => return Err(failed("splice pipe→socket")),
            _ if res > 0 => {
                c.sent += res as u64;
                if cqueue::more(flags) {
                    self.notifs_due += 1;
                }
            }
            _ => return Err(failed("send")),
        }
        if self.conns[i].inflight == 0 {
            self.next(i)?;
        }
        Ok(())
    }

    fn push(&mut self, entry: &squeue::Entry) -> io::Result<()> {
        for _ in 0..2 {
            // SAFETY: every entry points into the mapping (which lives for
            // the whole program) or at descriptors: the sockets outlive the
            // ring, and the kernel holds its own references to the files
            // of requests in flight.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                self.counters.calls += 1;
                return Ok(());
            }
            // Full (never with 4 entries per connection, but cheap to
            // handle): hand what is queued to the kernel and retry.
            self.ring.submit()?;
        }
        Err(io::Error::other("the submission ring stays full"))
    }
}

/// A ring as src/reactor/uring.rs makes one: single issuer with deferred
/// task work where the kernel has them (the completion work of a send
/// retried after a poll wake-up runs in this thread, when it waits),
/// fewer flags where it does not.
fn new_ring(entries: u32) -> io::Result<IoUring> {
    let mut builder = IoUring::builder();
    builder
        .setup_clamp()
        .setup_single_issuer()
        .setup_defer_taskrun();
    match builder.build(entries) {
        Ok(ring) => Ok(ring),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::new(entries),
        Err(e) => Err(e),
    }
}

/// A pipe asked to hold `size` bytes, or as much of it as
/// /proc/sys/fs/pipe-max-size (1 MiB by default) allows without
/// CAP_SYS_RESOURCE; its size as granted (a per-user total can still
/// refuse, leaving the default 64 KiB).
fn pipe_sized(size: usize) -> io::Result<(OwnedFd, OwnedFd, usize)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both descriptors are fresh and owned by nothing else.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let max = std::fs::read_to_string("/proc/sys/fs/pipe-max-size")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(1 << 20);
    for want in [size, size.min(max)] {
        let want = want.min(i32::MAX as usize) as libc::c_int;
        // SAFETY: fcntl on our own descriptor with an integer argument. A
        // refusal (EPERM over the limits) leaves the pipe as it was.
        if unsafe { libc::fcntl(w.as_raw_fd(), libc::F_SETPIPE_SZ, want) } >= 0 {
            break;
        }
    }
    // SAFETY: as above; F_GETPIPE_SZ takes no argument.
    let got = cvt(unsafe { libc::fcntl(w.as_raw_fd(), libc::F_GETPIPE_SZ) })?;
    Ok((r, w, got as usize))
}

/// The client: every connection in one level-triggered epoll set, each
/// read into the same buffer until the FIN.
struct Client<'a> {
    epoll: Epoll,
    socks: &'a [TcpStream],
    buf: Vec<u8>,
}

impl<'a> Client<'a> {
    fn new(socks: &'a [TcpStream], plan: &Plan) -> io::Result<Client<'a>> {
        let epoll = Epoll::new()?;
        for (i, s) in socks.iter().enumerate() {
            epoll.add(s.as_raw_fd(), libc::EPOLLIN as u32, i as u64)?;
        }
        Ok(Client {
            epoll,
            socks,
            buf: vec![0u8; plan.recv_buf],
        })
    }

    fn run(&mut self, src: &Source, plan: &Plan, stop: &Stop) -> io::Result<()> {
        let n = self.socks.len();
        let mut got = vec![0u64; n];
        let mut open = n;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; n];
        while open > 0 {
            stop.check()?;
            let k = self.epoll.wait(&mut events, TICK)?;
            for ev in &events[..k] {
                let i = ev.u64 as usize;
                let fd = self.socks[i].as_raw_fd();
                // Read until a short read (the queue is drained; level
                // triggering brings us back for more) or the FIN.
                loop {
                    // SAFETY: `buf` is ours, writable for its whole length.
                    let r =
                        unsafe { libc::recv(fd, self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
                    if r > 0 {
                        let data = &self.buf[..r as usize];
                        if plan.verify && !same_as_file(&src.map, got[i], data) {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!(
                                    "connection {i}: {} bytes at stream offset {} differ from the file",
                                    data.len(),
                                    got[i]
                                ),
                            ));
                        }
                        got[i] += data.len() as u64;
                        if got[i] > plan.per_conn {
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                format!("connection {i}: more than {} bytes", plan.per_conn),
                            ));
                        }
                        if data.len() < self.buf.len() {
                            break;
                        }
                    } else if r == 0 {
                        if got[i] != plan.per_conn {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "connection {i}: FIN after {} of {} bytes",
                                    got[i], plan.per_conn
                                ),
                            ));
                        }
                        self.epoll.delete(fd)?;
                        open -= 1;
                        break;
                    } else {
                        let e = io::Error::last_os_error();
                        match e.kind() {
                            io::ErrorKind::WouldBlock => break,
                            io::ErrorKind::Interrupted => {}
                            _ => return Err(e),
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// Whether `data`, found at `offset` in a stream of back-to-back copies of
/// the file, is what the file holds there.
fn same_as_file(file: &[u8], offset: u64, data: &[u8]) -> bool {
    let mut pos = (offset % file.len() as u64) as usize;
    let mut rest = data;
    while !rest.is_empty() {
        let n = rest.len().min(file.len() - pos);
        if rest[..n] != file[pos..pos + n] {
            return false;
        }
        rest = &rest[n..];
        pos = 0;
    }
    true
}

/// A minimal epoll set.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: no pointers; the result is checked.
        let fd = cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        // SAFETY: a fresh descriptor owned by nothing else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, events: u32, token: u64) -> io::Result<()> {
        let mut ev = libc::epoll_event { events, u64: token };
        // SAFETY: `ev` is a valid event the kernel copies.
        cvt(unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
        Ok(())
    }

    fn delete(&self, fd: RawFd) -> io::Result<()> {
        // SAFETY: EPOLL_CTL_DEL ignores the event pointer (null is fine
        // since Linux 2.6.9).
        cvt(unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        })?;
        Ok(())
    }

    /// Ready events, at most `timeout` from now; none when interrupted.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        // SAFETY: the kernel writes at most `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.0.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as libc::c_int,
                timeout.as_millis() as libc::c_int,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                return Ok(0);
            }
            return Err(e);
        }
        Ok(n as usize)
    }
}

fn cpu_set(cpu: usize) -> io::Result<libc::cpu_set_t> {
    if cpu >= libc::CPU_SETSIZE as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("CPU {cpu} is out of range"),
        ));
    }
    // SAFETY: all-zero bits are the empty CPU set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, so the bit lies inside the set.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    Ok(set)
}

/// Pins the calling thread (pid 0 means the caller) to `cpu`.
fn pin_to(cpu: usize) -> io::Result<()> {
    let set = cpu_set(cpu)?;
    // SAFETY: a valid set of the size given.
    cvt(unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) })
        .map_err(|e| io::Error::new(e.kind(), format!("pinning to CPU {cpu}: {e}")))?;
    Ok(())
}

/// User plus system CPU time of the thread (RUSAGE_THREAD) or process.
/// The total is the scheduler's exact runtime; only the split is sampled.
fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: all-zero is a valid rusage, which getrusage overwrites.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is writable; `who` is RUSAGE_SELF or RUSAGE_THREAD.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Duration::ZERO;
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Nanoseconds on CPU of each io-wq worker thread of this process, by
/// thread id (io_uring names them iou-wrk-<creator's tid>).
fn io_worker_times() -> HashMap<u32, u64> {
    let mut times = HashMap::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return times;
    };
    for entry in dir.flatten() {
        let path = entry.path();
        let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let is_worker = std::fs::read_to_string(path.join("comm"))
            .is_ok_and(|comm| comm.starts_with("iou-wrk-"));
        if !is_worker {
            continue;
        }
        if let Some(ns) = schedstat_ns(&path) {
            times.insert(tid, ns);
        }
    }
    times
}

/// Run time in ns of the task whose /proc directory is `dir`. The first
/// field of schedstat (run time, wait time, time slices): the scheduler's
/// exact count, where /proc/PID/stat has ticks.
fn schedstat_ns(dir: &Path) -> Option<u64> {
    std::fs::read_to_string(dir.join("schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The pid of `cpu`'s ksoftirqd: the kernel thread that runs the softirq
/// work (here: loopback's TCP input) which did not fit in the budget of
/// the context that raised it. Its time belongs to no process of ours.
fn softirqd_pid(cpu: usize) -> Option<u32> {
    let name = format!("ksoftirqd/{cpu}\n");
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm == name).then_some(pid)
        })
}

/// A task's run time so far; zero when there is none or it cannot be read.
fn task_cpu(pid: Option<u32>) -> Duration {
    pid.and_then(|pid| schedstat_ns(Path::new(&format!("/proc/{pid}"))))
        .map_or(Duration::ZERO, Duration::from_nanos)
}

/// Seconds the given CPUs were busy, for anyone (user, nice, system, irq,
/// softirq, steal), from /proc/stat.
fn busy_seconds(cpus: &[usize]) -> f64 {
    // SAFETY: sysconf takes no pointers.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut ticks = 0u64;
    for line in stat.lines() {
        let mut fields = line.split_whitespace();
        let Some(cpu) = fields
            .next()
            .and_then(|name| name.strip_prefix("cpu"))
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if !cpus.contains(&cpu) {
            continue;
        }
        let v: Vec<u64> = fields.map(|f| f.parse().unwrap_or(0)).collect();
        // user nice system idle iowait irq softirq steal
        ticks += [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&k| v.get(k).copied().unwrap_or(0))
            .sum::<u64>();
    }
    ticks as f64 / hz
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}
