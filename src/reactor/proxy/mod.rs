//! The proxyDHCP sockets: UDP 67 and 4011, served by one thread. A rack
//! powering on sends tens of thousands of DISCOVERs a second, which one
//! core answers when each wake-up reads a batch (`recvmmsg`) and sends a
//! batch (`sendmmsg`), and nothing on the way allocates or asks the kernel
//! anything (the interface table is read from memory). Port 4011 is read
//! before each batch of port 67: a machine halfway through its boot is
//! answered before new ones. IP_PKTINFO says which interface and address
//! each request came to, and the reply leaves from there.

pub mod batch;
pub mod delayed;
mod status;
mod uring;

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crossbeam_utils::CachePadded;
use socket2::{Domain, Protocol, Socket, Type};

use self::batch::{Arrival, BATCH, RecvBatch, SendBatch};
use self::delayed::DelayQueue;
use super::socket::bind_error;
use super::{IoMode, Shared};
use crate::dhcp::{
    Destination, MAX_REPLY_LEN, MacPattern, Policy, Reason, Reply, Request, ServerPort,
    SilenceCounts,
};
use crate::metrics::ProxyMetrics;
use crate::net::View;
use crate::published::{Published, Reader};
use crate::status::StatusSink;

/// How the proxy listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyListen {
    /// Bind to this interface only (SO_BINDTODEVICE).
    pub interface: Option<String>,
    /// The ports, normally 67 and 4011 (tests may move them).
    pub dhcp_port: u16,
    pub pxe_port: u16,
    /// Log every reply at info (dnsmasq's log-dhcp); otherwise at debug.
    pub log_replies: bool,
    /// Answer only on interfaces whose address lies in one of these
    /// networks (dnsmasq's `dhcp-range=NET,proxy[,MASK]`; without a mask,
    /// the interface's own). Empty: answer everywhere.
    pub subnets: Vec<(Ipv4Addr, Option<Ipv4Addr>)>,
}

impl Default for ProxyListen {
    fn default() -> Self {
        ProxyListen {
            interface: None,
            dhcp_port: 67,
            pxe_port: 4011,
            log_replies: true,
            subnets: Vec::new(),
        }
    }
}

/// The bound proxy sockets, made before privileges are dropped.
pub struct ProxySockets {
    dhcp: UdpSocket,
    pxe: UdpSocket,
}

pub fn bind(settings: &ProxyListen) -> io::Result<ProxySockets> {
    Ok(ProxySockets {
        dhcp: bind_one(settings, settings.dhcp_port)?,
        pxe: bind_one(settings, settings.pxe_port)?,
    })
}

fn bind_one(settings: &ProxyListen, port: u16) -> io::Result<UdpSocket> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let socket = Socket::new(
        Domain::IPV4,
        Type::DGRAM.cloexec().nonblocking(),
        Some(Protocol::UDP),
    )?;
    // A DHCP server on the same host may hold port 67 as well: both see
    // broadcasts when both set SO_REUSEADDR.
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    // Room for a rack's burst while a batch is answered: forced past
    // rmem_max while we are still root (stock kernels cap SO_RCVBUF at
    // 208 KiB, which 500 clients powering on at once overflow).
    force_buffer_size(&socket, libc::SO_RCVBUFFORCE, libc::SO_RCVBUF, 4 << 20);
    force_buffer_size(&socket, libc::SO_SNDBUFFORCE, libc::SO_SNDBUF, 4 << 20);
    if let Some(name) = &settings.interface {
        socket.bind_device(Some(name.as_bytes())).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("--interface {name}: {e} (does the interface exist? root needed)"),
            )
        })?;
    }
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
    Ok(socket.into())
}

/// Sets a socket buffer size with the `*FORCE` option (CAP_NET_ADMIN),
/// else with the plain one, which the kernel caps at its maximum.
fn force_buffer_size(socket: &Socket, force: libc::c_int, plain: libc::c_int, size: libc::c_int) {
    for name in [force, plain] {
        // SAFETY: `size` outlives the call and its length is passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                libc::SOL_SOCKET,
                name,
                (&size as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc == 0 {
            return;
        }
    }
}

/// Counters, logged at shutdown.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyStats {
    pub offers: u64,
    pub acks: u64,
    /// Datagrams not answered, by reason.
    pub silences: SilenceCounts,
    /// Replies the kernel refused to send.
    pub unsent: u64,
}

impl ProxyStats {
    pub fn answered(&self) -> u64 {
        self.offers + self.acks
    }

    /// The totals of the proxy thread's metric cells.
    pub fn of(metrics: &ProxyMetrics) -> ProxyStats {
        let mut silences = SilenceCounts::default();
        for reason in Reason::ALL {
            silences.add_n(reason, metrics.silences[reason as usize].get());
        }
        ProxyStats {
            offers: metrics.offers(),
            acks: metrics.acks(),
            silences,
            unsent: metrics.unsent.get(),
        }
    }
}

/// Port 4011 batches read before the next batch of port 67.
const PXE_BATCHES_PER_TURN: usize = 4;

/// Serves until the server stops: with io_uring multishot receives when
/// `backend` is io_uring (and its set-up works), else with `recvmmsg`.
pub fn run(
    sockets: ProxySockets,
    policy: Arc<Published<Policy>>,
    settings: ProxyListen,
    shared: Arc<Shared>,
    backend: IoMode,
) -> ProxyStats {
    let mut answerer = Answerer {
        policy: policy.reader(),
        interfaces: shared.interfaces.reader(),
        settings,
        metrics: shared.metrics.proxy.clone(),
        status: shared.status.clone(),
        delayed: DelayQueue::default(),
        scratch: [0; MAX_REPLY_LEN],
        out_dhcp: SendBatch::default(),
        out_pxe: SendBatch::default(),
        dhcp_fd: sockets.dhcp.as_raw_fd(),
        pxe_fd: sockets.pxe.as_raw_fd(),
    };
    if backend == IoMode::Uring {
        match uring::setup() {
            Ok(serve) => {
                serve(&mut answerer, &shared);
                return ProxyStats::of(&answerer.metrics);
            }
            Err(e) => tracing::warn!("proxyDHCP: io_uring set-up failed ({e}); using recvmmsg"),
        }
    }
    serve_recvmmsg(&mut answerer, &shared);
    // The sockets close only now: the answerer used their descriptors.
    drop(sockets);
    ProxyStats::of(&answerer.metrics)
}

/// The epoll backend's loop: `poll` when idle, `recvmmsg` per batch.
fn serve_recvmmsg(server: &mut Answerer, shared: &Shared) {
    let mut batch = RecvBatch::default();
    let mut fds = [
        libc::pollfd {
            fd: server.dhcp_fd,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: server.pxe_fd,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    // Which sockets to read this turn: both at first, then what poll says.
    let (mut read_pxe, mut read_dhcp) = (true, true);
    while !shared.stop.load(Ordering::Relaxed) {
        // A full batch means more may be queued: read again before
        // sleeping; a short one drained the socket.
        let mut more = false;
        if read_pxe {
            for _ in 0..PXE_BATCHES_PER_TURN {
                let n = batch.recv(server.pxe_fd);
                server.answer_batch(&batch, n, ServerPort::Pxe);
                if n < BATCH {
                    break;
                }
                more = true;
            }
        }
        if read_dhcp {
            let n = batch.recv(server.dhcp_fd);
            server.answer_batch(&batch, n, ServerPort::Dhcp);
            more |= n == BATCH;
        }
        if !server.delayed.is_empty() {
            server.release_delayed(Instant::now());
        }
        server.flush();
        if more {
            // Port 4011 is looked at again between batches of port 67.
            (read_pxe, read_dhcp) = (true, true);
            continue;
        }
        let wait = server.delayed.next_due().map_or(super::MAX_WAIT, |due| {
            due.saturating_duration_since(Instant::now())
                .min(super::MAX_WAIT)
        });
        // SAFETY: `fds` is a valid array of two pollfds.
        unsafe { libc::poll(fds.as_mut_ptr(), 2, wait.as_millis() as i32) };
        read_dhcp = fds[0].revents & libc::POLLIN != 0;
        read_pxe = fds[1].revents & libc::POLLIN != 0;
    }
    server.flush();
}

/// Everything the loop needs to answer a batch.
struct Answerer {
    /// Swapped by a reload; looked at once per request (one atomic load).
    policy: Reader<Policy>,
    interfaces: View,
    settings: ProxyListen,
    /// The proxy thread's metric cells (it is their only writer).
    metrics: Arc<CachePadded<ProxyMetrics>>,
    status: StatusSink,
    delayed: DelayQueue,
    /// Where the policy writes a reply before it is queued.
    scratch: [u8; MAX_REPLY_LEN],
    out_dhcp: SendBatch,
    out_pxe: SendBatch,
    dhcp_fd: RawFd,
    pxe_fd: RawFd,
}

impl Answerer {
    fn fd(&self, port: ServerPort) -> RawFd {
        match port {
            ServerPort::Dhcp => self.dhcp_fd,
            ServerPort::Pxe => self.pxe_fd,
        }
    }

    fn answer_batch(&mut self, batch: &RecvBatch, received: usize, port: ServerPort) {
        for i in 0..received {
            match batch.get(i) {
                Some((bytes, arrival)) => self.answer(bytes, arrival, port),
                None => self.metrics.silence(Reason::Unreadable),
            }
        }
    }

    fn answer(&mut self, bytes: &[u8], arrival: Arrival, port: ServerPort) {
        // The address to answer as: with proxy ranges configured, the
        // receiving interface's address inside one of them (an address
        // added at run time counts at once), else the kernel's pick.
        let local = if self.settings.subnets.is_empty() {
            arrival.local
        } else {
            match self.interfaces.table().address_in(
                arrival.ifindex as u32,
                arrival.local,
                &self.settings.subnets,
            ) {
                Some(local) => local,
                None => {
                    self.metrics.silence(Reason::OutsideRanges);
                    tracing::debug!(client = %arrival.from, via = %arrival.local, "proxyDHCP: interface outside the proxy ranges");
                    return;
                }
            }
        };
        let arrival = Arrival { local, ..arrival };
        let request = Request {
            bytes,
            port,
            source: arrival.from,
            local_addr: local,
        };
        let (reply, answered) = match self.policy.get().answer_whom(&request, &mut self.scratch) {
            Ok(answer) => answer,
            Err(silence) => {
                self.metrics.silence(silence.reason());
                status::post_silence(&self.status, bytes, silence.reason());
                tracing::debug!(client = %arrival.from, port = port.number(), "proxyDHCP: no reply: {silence}");
                return;
            }
        };
        let to = reply.destination.socket_addr();
        if let Some(delay) = reply.delay.filter(|d| !d.is_zero()) {
            let bytes = &self.scratch[..reply.len];
            if !self.delayed.hold(
                Instant::now() + delay,
                bytes,
                reply.source_port,
                to,
                arrival,
            ) {
                self.metrics.silence(Reason::DelayQueueFull);
                return;
            }
        } else {
            let full = match reply.source_port {
                ServerPort::Pxe => self.out_pxe.is_full(),
                ServerPort::Dhcp => self.out_dhcp.is_full(),
            };
            if full {
                // Both, ACKs first: replies leave in the order of priority.
                self.flush();
            }
            let out = match reply.source_port {
                ServerPort::Pxe => &mut self.out_pxe,
                ServerPort::Dhcp => &mut self.out_dhcp,
            };
            out.push(&self.scratch[..reply.len], to, &arrival);
        }
        self.metrics.reply(reply.kind, reply.arch);
        status::post_reply(&self.status, &answered, &reply, &self.scratch[..reply.len]);
        log_reply(&self.settings, &reply, &arrival, &self.scratch[..reply.len]);
    }

    /// Queues every delayed reply that is due, as room allows.
    fn release_delayed(&mut self, now: Instant) {
        let (out_dhcp, out_pxe) = (&mut self.out_dhcp, &mut self.out_pxe);
        self.delayed.release(now, |bytes, port, to, arrival| {
            let out = match port {
                ServerPort::Pxe => &mut *out_pxe,
                ServerPort::Dhcp => &mut *out_dhcp,
            };
            if out.is_full() {
                return false;
            }
            out.push(bytes, to, arrival);
            true
        });
    }

    fn flush(&mut self) {
        if !self.out_pxe.is_empty() {
            self.metrics.unsent.add(self.out_pxe.flush(self.pxe_fd));
        }
        if !self.out_dhcp.is_empty() {
            self.metrics.unsent.add(self.out_dhcp.flush(self.dhcp_fd));
        }
    }
}

/// The boot file name of a reply, as text, for a log line.
struct BootFile<'a>(&'a [u8]);

impl std::fmt::Display for BootFile<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let file = self.0.get(108..236).unwrap_or(&[]);
        let file = file.split(|&b| b == 0).next().unwrap_or(&[]);
        f.write_str(&String::from_utf8_lossy(file))
    }
}

/// Where a reply went, for a log line.
struct To(Destination);

impl std::fmt::Display for To {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Destination::Broadcast68 => f.write_str("broadcast"),
            other => other.socket_addr().fmt(f),
        }
    }
}

/// Logs a reply; the fields are formatted only when the line is written.
fn log_reply(settings: &ProxyListen, reply: &Reply, arrival: &Arrival, bytes: &[u8]) {
    let mac = bytes.get(28..34).and_then(MacPattern::prefix);
    let mac = mac.as_ref().map(|m| m as &dyn std::fmt::Display);
    let mac = mac.unwrap_or(&"?");
    if settings.log_replies {
        tracing::info!(mac = %mac, arch = ?reply.arch, kind = ?reply.kind, file = %BootFile(bytes), to = %To(reply.destination), via = %arrival.local, "proxyDHCP");
    } else {
        tracing::debug!(mac = %mac, arch = ?reply.arch, kind = ?reply.kind, file = %BootFile(bytes), to = %To(reply.destination), via = %arrival.local, "proxyDHCP");
    }
}
