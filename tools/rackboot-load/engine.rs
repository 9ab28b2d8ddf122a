//! The event loop: one thread drives every simulated client. Each running
//! transfer has its own non-blocking UDP socket (a fresh TID, as PXE
//! firmware uses), registered with epoll under its client's index; a heap
//! of deadlines drives the clients' retry timers. The loop owns the only
//! clock and hands `now` to the sans-IO clients.
//!
//! Sockets of abandoned transfers stay open (but unwatched) until the run
//! ends, so their ports are not reused by a later client that would then
//! receive the abandoned transfer's retransmissions.
//!
//! The `dhcp` scenario runs a `dhcp::Exchange` per client instead of TFTP
//! transfers, on a few shared sockets (`DhcpSockets`): one where OFFERs
//! arrive (a relay's giaddr:67, or *:68 for broadcasts) that also sends the
//! DISCOVERs, and a pool for the port-4011 REQUESTs and their ACKs, one
//! socket per `CLIENTS_PER_SOCKET` clients in flight. Replies are handed to
//! their client by xid. Starts, timers, the time limit and the progress
//! line are the same as for TFTP.
//!
//! Steps over HTTP (`--protocol http`, `--kernel-over http`) use one
//! non-blocking TCP connection per client (`HttpLink`), registered under
//! the client's index with `HTTP_KEY` set and kept open from one request
//! to the next (and from one pass to the next, unless the plan says each
//! pass is a new boot). `http::Connection` decides what to send and how
//! each response ends; the loop connects, writes the request, and reads
//! into one shared `READ_BUF` buffer, a few reads per wake-up, counting and
//! checking each chunk as it arrives. The retry timer heap holds the
//! stall deadline of each request.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, Read as _, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol as IpProtocol, Socket, Type};

use crate::client::{Ask, MAX_DATAGRAM, Outcome, Retry, Role, SEND_BUF, Transfer};
use crate::dhcp::{self, Ciaddr, Exchange, Offers, Via};
use crate::http;
use crate::report::Recorder;
use crate::scenario::{Identity, Plan, Protocol};

/// The longest the loop sleeps, so it notices starts and the time limit.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read from one socket per wake-up, for fairness.
const RECV_BUDGET: usize = 64;
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The kernel's usual default receive buffer; raised for large windows.
const DEFAULT_RCVBUF: usize = 212_992;
const MAX_RCVBUF: usize = 8 << 20;
/// DHCP clients in flight per pool socket.
const CLIENTS_PER_SOCKET: usize = 256;
/// Epoll keys of the shared DHCP sockets (TFTP keys are client indexes).
const SHARED_KEY: u64 = 1 << 63;
/// Datagrams read from a shared DHCP socket per wake-up.
const SHARED_RECV_BUDGET: usize = 256;
/// Loopback relay addresses tried in turn when none is given.
const LOOPBACK_RELAYS: std::ops::RangeInclusive<u8> = 1..=254;
/// Epoll keys of HTTP connections: the client index with this bit set.
const HTTP_KEY: u64 = 1 << 62;
/// The receive buffer every socket is read into (HTTP bodies: 256 KiB at
/// a time; at least one datagram).
const READ_BUF: usize = 256 << 10;
/// Reads from one HTTP connection per wake-up, for fairness.
const HTTP_READS: usize = 4;

/// How the clients are run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub server: SocketAddr,
    /// Clients running at once.
    pub concurrency: usize,
    /// Source addresses, client `i` binding `sources[i % len]`; empty: the
    /// wildcard address.
    pub sources: Vec<IpAddr>,
    /// Client starts are spread evenly over this (zero: all at once).
    pub spread: Duration,
    /// Clients start their plan over until this much time has passed.
    pub repeat_for: Option<Duration>,
    /// Everything stops after this; unfinished clients have failed.
    pub limit: Duration,
    pub ask: Ask,
    pub retry: Retry,
    pub progress: bool,
    /// The `dhcp` scenario: every client plays the proxyDHCP exchange and
    /// the plans are not used.
    pub dhcp: Option<dhcp::Setup>,
    /// Where steps over HTTP go; `None` when no plan has any.
    pub http: Option<HttpTarget>,
}

/// The HTTP server and how long a request may go without progress.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    pub server: SocketAddr,
    /// No progress (connecting, sending, receiving) for this long fails
    /// the request.
    pub stall: Duration,
    /// A response that starts later than this after its request counts
    /// as an unanswered request (the TFTP retry interval).
    pub answer_within: Duration,
}

/// A client's HTTP connection: its socket and protocol state.
struct HttpLink {
    stream: TcpStream,
    conn: http::Connection,
    /// Whether epoll watches the socket for writability too.
    watch_out: bool,
}

/// One simulated client: its plan, where it stands in it, and the socket
/// and state machine of its current transfer.
struct Sim {
    plan: Plan,
    source: IpAddr,
    step: usize,
    transfer: Option<Transfer>,
    socket: Option<UdpSocket>,
    transfer_started: Instant,
    pass_started: Instant,
    /// The deadline a timer-heap entry exists for.
    scheduled: Option<Instant>,
    state: State,
    /// The `dhcp` scenario's exchange in progress.
    exchange: Option<Exchange>,
    /// The HTTP connection, open from the first step over HTTP on.
    http: Option<HttpLink>,
}

impl Sim {
    /// The file of the current step.
    fn file(&self) -> &str {
        self.plan
            .steps
            .get(self.step)
            .map_or("", |s| s.file.as_str())
    }

    /// When the timer of whatever the client is waiting for is due.
    fn deadline(&self) -> Option<Instant> {
        if let Some(exchange) = &self.exchange {
            return exchange.deadline();
        }
        if let Some(transfer) = &self.transfer {
            return transfer.deadline();
        }
        self.http.as_ref().and_then(|l| l.conn.deadline())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    Running,
    Done,
}

/// Runs every plan (client `i` follows `plans[i]`) to the end or to the
/// time limit, recording into `rec`.
pub fn run(
    settings: &Settings,
    plans: Vec<Plan>,
    rec: &mut Recorder,
    start: Instant,
) -> io::Result<()> {
    let wildcard = match settings.server {
        SocketAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    };
    let sims: Vec<Sim> = plans
        .into_iter()
        .enumerate()
        .map(|(i, plan)| Sim {
            plan,
            source: if settings.sources.is_empty() {
                wildcard
            } else {
                settings.sources[i % settings.sources.len()]
            },
            step: 0,
            transfer: None,
            socket: None,
            transfer_started: start,
            pass_started: start,
            scheduled: None,
            state: State::Waiting,
            exchange: None,
            http: None,
        })
        .collect();
    let dhcp = match &settings.dhcp {
        Some(setup) => Some(DhcpSockets::open(setup, settings, sims.len())?),
        None => None,
    };
    let mut engine = Engine {
        settings,
        epoll: Epoll::new()?,
        sims,
        timers: BinaryHeap::new(),
        parked: Vec::new(),
        rec,
        out: vec![0; SEND_BUF],
        start,
        next_start: 0,
        running: 0,
        dhcp,
    };
    if let Some(d) = &engine.dhcp {
        for (k, socket) in d.sockets().enumerate() {
            engine
                .epoll
                .add(socket.as_raw_fd(), SHARED_KEY | k as u64)?;
        }
    }
    engine.run()
}

/// The `dhcp` scenario's shared sockets and who is waiting on them.
struct DhcpSockets {
    setup: dhcp::Setup,
    /// Where OFFERs arrive; sends the DISCOVERs.
    offers: UdpSocket,
    /// giaddr of the DISCOVERs (0.0.0.0 for broadcast offers).
    giaddr: Ipv4Addr,
    /// REQUEST/ACK sockets; client `i` uses `pool[i % pool.len()]`.
    pool: Vec<UdpSocket>,
    /// The client each xid in flight belongs to.
    xids: HashMap<u32, usize>,
    next_xid: u32,
}

impl DhcpSockets {
    fn open(setup: &dhcp::Setup, settings: &Settings, clients: usize) -> io::Result<DhcpSockets> {
        let in_flight = settings.concurrency.min(clients);
        let pool_len = in_flight.div_ceil(CLIENTS_PER_SOCKET).max(1);
        let (offers, giaddr) = match setup.offers {
            Offers::Relay(Some(ip)) => (
                dhcp_socket(SocketAddrV4::new(ip, dhcp::RELAY_PORT), false)?,
                ip,
            ),
            Offers::Relay(None) => {
                let mut last = None;
                let mut found = None;
                for low in LOOPBACK_RELAYS {
                    let ip = Ipv4Addr::new(127, 0, 67, low);
                    match dhcp_socket(SocketAddrV4::new(ip, dhcp::RELAY_PORT), false) {
                        Ok(s) => {
                            found = Some((s, ip));
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                found.ok_or_else(|| last.unwrap_or_else(|| io::Error::other("no relay address")))?
            }
            Offers::Broadcast => (
                dhcp_socket(
                    SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, dhcp::CLIENT_PORT),
                    true,
                )?,
                Ipv4Addr::UNSPECIFIED,
            ),
        };
        let pool = (0..pool_len)
            .map(|k| {
                let ip = match settings.sources.get(k % settings.sources.len().max(1)) {
                    Some(IpAddr::V4(ip)) => *ip,
                    _ => Ipv4Addr::UNSPECIFIED,
                };
                dhcp_socket(SocketAddrV4::new(ip, 0), false)
            })
            .collect::<io::Result<Vec<_>>>()?;
        Ok(DhcpSockets {
            setup: *setup,
            offers,
            giaddr,
            pool,
            xids: HashMap::new(),
            // Random-looking, so replies to an earlier run never match.
            next_xid: std::process::id().wrapping_mul(0x9e37_79b9)
                ^ std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.subsec_nanos()),
        })
    }

    fn sockets(&self) -> impl Iterator<Item = &UdpSocket> {
        std::iter::once(&self.offers).chain(&self.pool)
    }

    fn socket(&self, k: usize) -> &UdpSocket {
        if k == 0 {
            &self.offers
        } else {
            &self.pool[k - 1]
        }
    }

    fn pool_of(&self, i: usize) -> &UdpSocket {
        &self.pool[i % self.pool.len()]
    }

    /// Client `i`'s identity for a new exchange, with a fresh xid.
    fn client(&mut self, i: usize) -> io::Result<dhcp::Client> {
        let id = Identity::of(i);
        let ciaddr = match self.setup.ciaddr {
            Ciaddr::PerClientLoopback => dhcp::loopback_ciaddr(id.ip),
            Ciaddr::Fixed(ip) => ip,
            Ciaddr::PoolSocket => match self.pool_of(i).local_addr()? {
                SocketAddr::V4(a) => *a.ip(),
                SocketAddr::V6(_) => Ipv4Addr::UNSPECIFIED,
            },
        };
        let mut xid = self.next_xid;
        while self.xids.contains_key(&xid) {
            xid = xid.wrapping_add(1);
        }
        self.next_xid = xid.wrapping_add(1);
        self.xids.insert(xid, i);
        Ok(dhcp::Client {
            mac: id.mac,
            uuid: id.uuid,
            xid,
            ciaddr,
            giaddr: self.giaddr,
        })
    }

    fn send(&self, i: usize, send: dhcp::Send, bytes: &[u8]) {
        let socket = match send.via {
            Via::Offers => &self.offers,
            Via::Pool => self.pool_of(i),
        };
        // A full buffer is a lost packet: the retry timer covers it.
        let _ = socket.send_to(&bytes[..send.len], send.to);
    }
}

/// Most clients of a `dhcp` run: each gets its own MAC and address.
pub const MAX_DHCP_CLIENTS: usize = 16_000_000;

/// A non-blocking DHCP socket with a large receive buffer (bursts of
/// replies to thousands of clients).
fn dhcp_socket(addr: SocketAddrV4, broadcast: bool) -> io::Result<UdpSocket> {
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, None)?;
    if broadcast {
        // Share *:68 with a DHCP client on this host: both get broadcasts.
        socket.set_reuse_address(true)?;
        socket.set_broadcast(true)?;
    }
    grow_rcvbuf(&socket, MAX_RCVBUF);
    socket.set_nonblocking(true)?;
    socket.bind(&SocketAddr::V4(addr).into()).map_err(|e| {
        let hint = if e.kind() == io::ErrorKind::PermissionDenied {
            " (ports under 1024 need root or CAP_NET_BIND_SERVICE)"
        } else if e.kind() == io::ErrorKind::AddrInUse {
            " (in use: choose another --dhcp-relay)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("bind {addr}: {e}{hint}"))
    })?;
    Ok(socket.into())
}

/// SO_RCVBUFFORCE where allowed (root), else SO_RCVBUF up to rmem_max.
fn grow_rcvbuf(socket: &Socket, bytes: usize) {
    let value = bytes as libc::c_int;
    // SAFETY: `value` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        let _ = socket.set_recv_buffer_size(bytes);
    }
}

struct Engine<'a> {
    settings: &'a Settings,
    epoll: Epoll,
    sims: Vec<Sim>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    /// Sockets of abandoned transfers, kept open until the end.
    parked: Vec<UdpSocket>,
    rec: &'a mut Recorder,
    out: Vec<u8>,
    start: Instant,
    /// The first client not started yet (clients start in index order).
    next_start: usize,
    running: usize,
    dhcp: Option<DhcpSockets>,
}

impl Engine<'_> {
    fn run(&mut self) -> io::Result<()> {
        let limit = self.start + self.settings.limit;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = vec![0u8; READ_BUF.max(MAX_DATAGRAM)];
        let mut next_progress = self.start + PROGRESS_EVERY;
        loop {
            let now = Instant::now();
            if now >= limit {
                self.expire(now);
                break;
            }
            self.start_due(now);
            if self.next_start == self.sims.len() && self.running == 0 {
                break;
            }
            if self.settings.progress && now >= next_progress {
                eprint!("\r{}", self.rec.progress_line(now, self.running));
                let _ = io::stderr().flush();
                next_progress = now + PROGRESS_EVERY;
            }
            let mut wake = limit.min(now + MAX_WAIT);
            if let Some(Reverse((at, _))) = self.timers.peek() {
                wake = wake.min(*at);
            }
            if self.next_start < self.sims.len() && self.running < self.settings.concurrency {
                wake = wake.min(self.start_time(self.next_start));
            }
            if self.settings.progress {
                wake = wake.min(next_progress);
            }
            let n = self
                .epoll
                .wait(&mut events, wake.saturating_duration_since(now))?;
            let now = Instant::now();
            for event in &events[..n] {
                let key = event.u64;
                if key & SHARED_KEY != 0 {
                    self.on_dhcp_readable((key & !SHARED_KEY) as usize, now, &mut buf);
                } else if key & HTTP_KEY != 0 {
                    let ready = event.events;
                    self.on_http((key & !HTTP_KEY) as usize, ready, now, &mut buf);
                } else {
                    self.on_readable(key as usize, now, &mut buf);
                }
            }
            self.on_timers(now);
        }
        if self.settings.progress {
            eprintln!("\r{}", self.rec.progress_line(Instant::now(), self.running));
        }
        self.parked.clear();
        Ok(())
    }

    fn start_time(&self, index: usize) -> Instant {
        let n = self.sims.len().max(1) as u32;
        self.start + self.settings.spread * index as u32 / n
    }

    fn start_due(&mut self, now: Instant) {
        while self.next_start < self.sims.len()
            && self.running < self.settings.concurrency
            && self.start_time(self.next_start) <= now
        {
            let i = self.next_start;
            self.next_start += 1;
            self.running += 1;
            self.sims[i].state = State::Running;
            self.sims[i].pass_started = now;
            self.sims[i].step = 0;
            if self.dhcp.is_some() {
                self.begin_exchange(i, now);
            } else {
                self.begin_step(i, now);
            }
        }
    }

    /// Starts client `i`'s DHCP exchange: sends its DISCOVER.
    fn begin_exchange(&mut self, i: usize, now: Instant) {
        let Some(d) = &mut self.dhcp else { return };
        let client = match d.client(i) {
            Ok(c) => c,
            Err(e) => {
                self.rec
                    .failure("local socket", || format!("client {i}: {e}"));
                return self.end_client(i, false);
            }
        };
        let mut exchange = Exchange::new(&d.setup, client, now);
        let send = exchange.start(now, &mut self.out);
        d.send(i, send, &self.out);
        self.sims[i].exchange = Some(exchange);
        self.arm(i);
    }

    /// Replies on shared socket `k`, handed to their clients by xid.
    fn on_dhcp_readable(&mut self, k: usize, now: Instant, buf: &mut [u8]) {
        for _ in 0..SHARED_RECV_BUDGET {
            let Some(d) = &mut self.dhcp else { return };
            let (len, from) = match d.socket(k).recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue, // an ICMP error report
            };
            // Unknown xids: late replies to finished clients, or someone
            // else's exchange (broadcast offers reach every client).
            let Some(&i) = dhcp::xid_of(&buf[..len]).and_then(|x| d.xids.get(&x)) else {
                continue;
            };
            let Some(exchange) = &mut self.sims[i].exchange else {
                continue;
            };
            let before = exchange.stage();
            if let Some(send) = exchange.handle(now, from, &buf[..len], &mut self.out) {
                d.send(i, send, &self.out);
            }
            if before == dhcp::Stage::Discover && exchange.stage() == dhcp::Stage::Request {
                self.rec.offer();
            }
            if exchange.outcome().is_some() {
                self.finish_exchange(i, now);
            } else {
                self.arm(i);
            }
        }
    }

    /// Records the exchange that just ended and moves the client on.
    fn finish_exchange(&mut self, i: usize, now: Instant) {
        let sim = &mut self.sims[i];
        let Some(exchange) = sim.exchange.take() else {
            return;
        };
        sim.scheduled = None;
        if let Some(d) = &mut self.dhcp {
            d.xids.remove(&exchange.client().xid);
        }
        self.rec
            .unanswered_requests(u64::from(exchange.unanswered()));
        match exchange.outcome() {
            Some(Ok(())) => {
                self.rec.ack(now, exchange.boot_file());
                self.rec
                    .pass(now.saturating_duration_since(sim.pass_started));
                let again = self
                    .settings
                    .repeat_for
                    .is_some_and(|r| now < self.start + r);
                if again {
                    sim.pass_started = now;
                    self.begin_exchange(i, now);
                } else {
                    self.end_client(i, true);
                }
            }
            Some(Err(f)) => {
                let mac = exchange.client().mac.map(|b| format!("{b:02x}")).join(":");
                let xid = exchange.client().xid;
                self.rec.failure(f.kind, || {
                    format!("client {i} ({mac}, xid {xid:#010x}): {f}")
                });
                self.end_client(i, false);
            }
            None => self.end_client(i, false),
        }
    }

    /// Starts the client's current step: over HTTP, or over TFTP from a
    /// fresh socket.
    fn begin_step(&mut self, i: usize, now: Instant) {
        let sim = &self.sims[i];
        match sim.plan.steps[sim.step].protocol {
            Protocol::Http => self.begin_http(i, now),
            Protocol::Tftp => self.begin_tftp(i, now),
        }
    }

    /// Opens a fresh socket for the client's current step and sends the RRQ.
    fn begin_tftp(&mut self, i: usize, now: Instant) {
        let socket = match self.open_socket(self.sims[i].source) {
            Ok(s) => s,
            Err(e) => {
                let source = self.sims[i].source;
                self.rec.failure("local socket", || {
                    format!("client {i}: cannot open a socket on {source}: {e}")
                });
                return self.end_client(i, false);
            }
        };
        if let Err(e) = self.epoll.add(socket.as_raw_fd(), i as u64) {
            self.rec
                .failure("local socket", || format!("client {i}: epoll: {e}"));
            return self.end_client(i, false);
        }
        let sim = &mut self.sims[i];
        let step = &sim.plan.steps[sim.step];
        let mut transfer = Transfer::new(
            self.settings.server,
            step.file.clone(),
            self.settings.ask,
            sim.plan.role,
            step.expect.clone(),
            self.settings.retry,
            now,
        );
        let send = transfer.request(now, &mut self.out);
        // A full send buffer is a lost packet: the retry timer covers it.
        let _ = socket.send_to(&self.out[..send.len], send.to);
        sim.transfer = Some(transfer);
        sim.socket = Some(socket);
        sim.transfer_started = now;
        self.arm(i);
    }

    fn open_socket(&self, source: IpAddr) -> io::Result<UdpSocket> {
        let socket = Socket::new(Domain::for_address(self.settings.server), Type::DGRAM, None)?;
        let ask = self.settings.ask;
        let window_bytes = usize::from(ask.windowsize.unwrap_or(1))
            * (usize::from(ask.blksize.unwrap_or(512)) + 64);
        let wanted = (2 * window_bytes).min(MAX_RCVBUF);
        if wanted > DEFAULT_RCVBUF {
            let _ = socket.set_recv_buffer_size(wanted);
        }
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::new(source, 0).into())?;
        Ok(socket.into())
    }

    fn on_readable(&mut self, i: usize, now: Instant, buf: &mut [u8]) {
        for _ in 0..RECV_BUDGET {
            let sim = &mut self.sims[i];
            // After a step ends, a stale event may name the next socket (or
            // none): reading it just finds nothing.
            let (Some(socket), Some(transfer)) = (&sim.socket, &mut sim.transfer) else {
                return;
            };
            let (len, from) = match socket.recv_from(buf) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => return, // an ICMP error report: nothing to read
            };
            let before = transfer.bytes();
            let answered = match transfer.handle(now, from, &buf[..len], &mut self.out) {
                Some(send) => socket.send_to(&self.out[..send.len], send.to).is_ok(),
                None => false,
            };
            let received = transfer.bytes() - before;
            let finished = transfer.outcome().is_some();
            self.rec.bytes(now, received);
            if finished {
                return self.finish_transfer(i, now);
            }
            self.arm(i);
            if answered {
                // The server waits for that ACK: the socket is most likely
                // empty, and level-triggered epoll reports it again if not.
                // Skipping the read that would say so saves a syscall per
                // ACK, half the reads of a lock-step transfer.
                return;
            }
        }
    }

    /// Makes sure the heap holds an entry at or before the client's deadline.
    fn arm(&mut self, i: usize) {
        let sim = &mut self.sims[i];
        let Some(deadline) = sim.deadline() else {
            return;
        };
        // Deadlines mostly move later; only an earlier one needs an entry.
        // A later one is found when the earlier entry fires.
        if sim.scheduled.is_none_or(|s| deadline < s) {
            sim.scheduled = Some(deadline);
            self.timers.push(Reverse((deadline, i)));
        }
    }

    fn on_timers(&mut self, now: Instant) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let sim = &mut self.sims[i];
            if sim.scheduled != Some(at) {
                continue; // superseded
            }
            sim.scheduled = None;
            if let (Some(exchange), Some(d)) = (&mut sim.exchange, &self.dhcp) {
                if let Some(send) = exchange.handle_timeout(now, &mut self.out) {
                    d.send(i, send, &self.out);
                }
                if exchange.outcome().is_some() {
                    self.finish_exchange(i, now);
                } else {
                    self.arm(i);
                }
                continue;
            }
            if sim.transfer.is_none() {
                if let Some(link) = &mut sim.http {
                    link.conn.on_timeout(now);
                    self.after_http(i, now);
                }
                continue;
            }
            let (Some(socket), Some(transfer)) = (&sim.socket, &mut sim.transfer) else {
                continue;
            };
            if let Some(send) = transfer.handle_timeout(now, &mut self.out) {
                let _ = socket.send_to(&self.out[..send.len], send.to);
            }
            if transfer.outcome().is_some() {
                self.finish_transfer(i, now);
            } else {
                self.arm(i);
            }
        }
    }

    /// Records the transfer that just ended and moves the client on.
    fn finish_transfer(&mut self, i: usize, now: Instant) {
        let sim = &mut self.sims[i];
        let (Some(transfer), Some(socket)) = (sim.transfer.take(), sim.socket.take()) else {
            return;
        };
        sim.scheduled = None;
        let outcome = transfer.outcome().cloned().unwrap_or(Outcome::Missing);
        let elapsed = now.saturating_duration_since(sim.transfer_started);
        self.rec.transfer(&outcome, elapsed, transfer.unanswered());
        if sim.plan.role == Role::Abandon {
            self.epoll.delete(socket.as_raw_fd());
            self.parked.push(socket);
        } // else dropping the socket closes it and takes it out of epoll
        let found = match &outcome {
            Outcome::Complete { .. } | Outcome::Accepted => true,
            Outcome::Missing => false,
            Outcome::Failed(failure) => {
                let file = transfer.file();
                self.rec
                    .failure(failure.kind(), || format!("client {i} `{file}`: {failure}"));
                return self.end_client(i, false);
            }
        };
        self.advance(i, now, found);
    }

    /// Moves the client past a step that ended well (`found`: the file
    /// was there): to its next step, the next pass, or the end.
    fn advance(&mut self, i: usize, now: Instant, found: bool) {
        let sim = &mut self.sims[i];
        match sim.plan.next_step(sim.step, found) {
            Some(next) => {
                sim.step = next;
                self.begin_step(i, now);
            }
            None => {
                self.rec
                    .pass(now.saturating_duration_since(sim.pass_started));
                if sim.plan.reconnect_each_pass {
                    sim.http = None;
                }
                let again = self
                    .settings
                    .repeat_for
                    .is_some_and(|r| now < self.start + r);
                if again {
                    sim.step = 0;
                    sim.pass_started = now;
                    self.begin_step(i, now);
                } else {
                    self.end_client(i, true);
                }
            }
        }
    }

    /// Sends the GET of the client's current step, on its connection if
    /// that can take another request, else on a new one.
    fn begin_http(&mut self, i: usize, now: Instant) {
        let settings = self.settings;
        let Some(target) = &settings.http else {
            self.rec.failure("local socket", || {
                format!("client {i}: a step over HTTP, but no HTTP server")
            });
            return self.end_client(i, false);
        };
        let sim = &mut self.sims[i];
        if !sim.http.as_ref().is_some_and(|l| l.conn.can_request()) {
            // Dropping the old socket closes it and takes it out of epoll.
            sim.http = None;
            match open_http(target, sim.source, now, &self.epoll, i) {
                Ok(link) => sim.http = Some(link),
                Err(e) => {
                    let source = sim.source;
                    self.rec.failure("http connect", || {
                        format!(
                            "client {i}: cannot open a connection from {source} to {}: {e}",
                            target.server
                        )
                    });
                    return self.end_client(i, false);
                }
            }
            self.rec.http_connection();
        }
        let (Some(link), Some(step)) = (&mut sim.http, sim.plan.steps.get(sim.step)) else {
            return;
        };
        link.conn.get(&step.file, step.expect.content.clone(), now);
        sim.transfer_started = now;
        self.on_http(i, 0, now, &mut []);
    }

    /// Drives client `i`'s HTTP connection after epoll reported `ready`
    /// (0: nothing, just send what is due): completes the connect, sends,
    /// reads into `buf`, and acts on the outcome.
    fn on_http(&mut self, i: usize, ready: u32, now: Instant, buf: &mut [u8]) {
        let sim = &mut self.sims[i];
        // A stale event (the link was replaced or closed) finds nothing.
        let Some(link) = &mut sim.http else { return };
        let (out, err, input) = (
            ready & libc::EPOLLOUT as u32 != 0,
            ready & (libc::EPOLLERR | libc::EPOLLHUP) as u32 != 0,
            ready & (libc::EPOLLIN | libc::EPOLLRDHUP) as u32 != 0,
        );
        if link.conn.is_connecting() && (out || err) {
            match link.stream.take_error() {
                Ok(Some(e)) | Err(e) => link.conn.connect_failed(&e.to_string()),
                // Writable and with a peer: connected (a stale event for a
                // newer socket still connecting has no peer yet).
                Ok(None) if link.stream.peer_addr().is_ok() => link.conn.connected(now),
                Ok(None) => {}
            }
        }
        while !link.conn.is_connecting() && !link.conn.to_send().is_empty() {
            match (&link.stream).write(link.conn.to_send()) {
                Ok(n) if n > 0 => link.conn.sent(n, now),
                Ok(_) => break,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    link.conn.closed(Some(&e));
                    break;
                }
            }
        }
        if (input || err) && !link.conn.is_connecting() {
            for _ in 0..HTTP_READS {
                if link.conn.outcome().is_some() || link.conn.is_closed() {
                    break;
                }
                match (&link.stream).read(buf) {
                    Ok(0) => link.conn.closed(None),
                    Ok(n) => {
                        let body = link.conn.received(&buf[..n], now);
                        self.rec.bytes(now, body);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => link.conn.closed(Some(&e)),
                }
            }
        }
        let want_out = link.conn.wants_write();
        if want_out != link.watch_out && !link.conn.is_closed() {
            match self.epoll.modify(
                link.stream.as_raw_fd(),
                HTTP_KEY | i as u64,
                http_events(want_out),
            ) {
                Ok(()) => link.watch_out = want_out,
                Err(e) => link.conn.closed(Some(&e)),
            }
        }
        self.after_http(i, now);
    }

    /// Acts on the state of client `i`'s HTTP connection: records a
    /// finished request and moves on, drops a dead idle connection, or
    /// re-arms the stall timer.
    fn after_http(&mut self, i: usize, now: Instant) {
        let sim = &mut self.sims[i];
        let Some(link) = &mut sim.http else { return };
        let Some(outcome) = link.conn.take_outcome() else {
            if link.conn.is_closed() {
                // Closed (or out of step) with nothing asked: a later step
                // opens a new connection. Level-triggered epoll would
                // report the closed socket again and again.
                sim.http = None;
            } else {
                self.arm(i);
            }
            return;
        };
        sim.scheduled = None;
        let elapsed = now.saturating_duration_since(sim.transfer_started);
        let unanswered = link.conn.unanswered();
        if !link.conn.can_request() {
            sim.http = None;
        }
        self.rec
            .transfer_ended(outcome.is_ok(), elapsed, unanswered);
        match outcome {
            Ok(_) => self.advance(i, now, true),
            Err(failure) => {
                let file = sim.file().to_string();
                self.rec.failure(failure.kind(), || {
                    format!("client {i} `{file}` over HTTP: {failure}")
                });
                self.end_client(i, false);
            }
        }
    }

    fn end_client(&mut self, i: usize, ok: bool) {
        let sim = &mut self.sims[i];
        sim.transfer = None;
        sim.socket = None;
        sim.http = None;
        sim.scheduled = None;
        if let (Some(exchange), Some(d)) = (sim.exchange.take(), &mut self.dhcp) {
            d.xids.remove(&exchange.client().xid);
        }
        if sim.state == State::Running {
            self.running -= 1;
        }
        sim.state = State::Done;
        self.rec.client_done(ok);
    }

    /// The time limit: every client not done has failed.
    fn expire(&mut self, now: Instant) {
        for i in 0..self.sims.len() {
            let sim = &self.sims[i];
            match sim.state {
                State::Done => continue,
                State::Running => {
                    let file = match &sim.exchange {
                        Some(x) if x.stage() == dhcp::Stage::Discover => "waiting for an OFFER",
                        Some(_) => "waiting for an ACK",
                        None => sim.file(),
                    }
                    .to_string();
                    let elapsed = now.saturating_duration_since(self.start);
                    self.rec.failure("duration limit", || {
                        format!("client {i} `{file}`: still running after {elapsed:.1?}")
                    });
                }
                State::Waiting => self
                    .rec
                    .failure("duration limit", || format!("client {i}: never started")),
            }
            self.end_client(i, false);
        }
    }
}

/// The events an HTTP socket is watched for: always input (and hang-up),
/// output while connecting or while the request is going out.
fn http_events(out: bool) -> u32 {
    let input = (libc::EPOLLIN | libc::EPOLLRDHUP) as u32;
    if out {
        input | libc::EPOLLOUT as u32
    } else {
        input
    }
}

/// Opens client `index`'s non-blocking TCP connection to the HTTP server,
/// from `source` (unless the wildcard), and registers it.
fn open_http(
    target: &HttpTarget,
    source: IpAddr,
    now: Instant,
    epoll: &Epoll,
    index: usize,
) -> io::Result<HttpLink> {
    let socket = Socket::new(
        Domain::for_address(target.server),
        Type::STREAM.nonblocking().cloexec(),
        Some(IpProtocol::TCP),
    )?;
    socket.set_tcp_nodelay(true)?;
    if !source.is_unspecified() {
        socket.bind(&SocketAddr::new(source, 0).into())?;
    }
    match socket.connect(&target.server.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream: TcpStream = socket.into();
    epoll.add_for(
        stream.as_raw_fd(),
        HTTP_KEY | index as u64,
        http_events(true),
    )?;
    let host = target.server.to_string();
    Ok(HttpLink {
        stream,
        conn: http::Connection::new(host, target.stall, target.answer_within, now),
        watch_out: true,
    })
}

/// An epoll instance, level-triggered.
struct Epoll(OwnedFd);

impl Epoll {
    fn new() -> io::Result<Epoll> {
        // SAFETY: epoll_create1 takes no pointers; a non-negative result is
        // a new descriptor that nothing else owns.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just created and is owned by nothing else.
        Ok(Epoll(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    fn add(&self, fd: RawFd, key: u64) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, key, libc::EPOLLIN as u32)
    }

    /// Registers `fd` for `events`.
    fn add_for(&self, fd: RawFd, key: u64, events: u32) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_ADD, fd, key, events)
    }

    /// Changes the events `fd` is watched for.
    fn modify(&self, fd: RawFd, key: u64, events: u32) -> io::Result<()> {
        self.control(libc::EPOLL_CTL_MOD, fd, key, events)
    }

    fn control(&self, op: libc::c_int, fd: RawFd, key: u64, events: u32) -> io::Result<()> {
        let mut event = libc::epoll_event { events, u64: key };
        // SAFETY: both descriptors are open; the kernel reads `event` during
        // the call only.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), op, fd, &mut event) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    fn delete(&self, fd: RawFd) {
        // SAFETY: both descriptors are open; DEL ignores the event pointer.
        unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    /// Waits up to `timeout` (rounded up to whole milliseconds, so a short
    /// wait does not spin); returns how many events were filled in.
    fn wait(&self, events: &mut [libc::epoll_event], timeout: Duration) -> io::Result<usize> {
        let ms = timeout.as_micros().div_ceil(1000).min(i32::MAX as u128) as i32;
        let max = events.len().min(i32::MAX as usize) as i32;
        // SAFETY: `events` is writable for `max` entries for the duration of
        // the call.
        let n = unsafe { libc::epoll_wait(self.0.as_raw_fd(), events.as_mut_ptr(), max, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        Ok(n as usize)
    }
}
