//! One shard's protocol work, independent of how packets move: it owns the
//! shard's sockets and transfers, turns received datagrams and timer ticks
//! into sends, and asks its I/O backend (io_uring or epoll) to do the rest.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::fs::File;
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slab::Slab;

use crossbeam_utils::CachePadded;

use super::socket::{PortPicker, RecvMeta};
use super::{Shared, telemetry};
use crate::files::{ResolveError, ServedFile};
use crate::metrics::{Direction, Refusal, ShardMetrics};
use crate::tftp::options::blksize_for_mtu;
use crate::tftp::upload::WriteTransfer;
use crate::tftp::{Negotiated, Outcome, ReadTransfer, Transmit};
use crate::wire::tftp::{self as wire, ErrorCode, Packet};

mod upload;

/// Uploads use blocks no larger than a receive buffer holds.
pub const UPLOAD_MAX_BLKSIZE: u16 = 1468;
/// How often shard 0 lets go of files no transfer used for a while.
const EXPIRY_EVERY: Duration = Duration::from_secs(1);
/// Largest OACK or ERROR we build.
const SMALL_PACKET: usize = 256;

/// What a shard asks of its I/O backend.
pub trait Backend {
    /// Start delivering datagrams arriving on `fd` as endpoint `key`.
    fn watch(&mut self, key: usize, fd: RawFd);
    /// Stop delivering for `key`; its socket is closed right after.
    fn unwatch(&mut self, key: usize, fd: RawFd);
    /// Send one datagram: `head`, then `payload` from a served file (and
    /// `more` packets after it, as GSO segments). When a payload is given
    /// its gate was begun once on this shard: the backend calls
    /// `gate().end(shard)` once the kernel no longer reads the bytes.
    fn send(&mut self, packet: Outgoing<'_>);
    /// How many DATA packets one `send` may carry (1: no GSO).
    fn max_segments(&self) -> usize {
        1
    }
}

pub struct Outgoing<'a> {
    pub fd: RawFd,
    pub to: SocketAddr,
    /// Source address for sends from a wildcard-bound socket.
    pub source: Option<IpAddr>,
    pub head: &'a [u8],
    pub payload: Option<(&'a Arc<ServedFile>, &'a [u8])>,
    /// Further DATA packets of the same transfer, to go out with this one
    /// as one UDP GSO send (UDP_SEGMENT): every packet the size of the
    /// first (head + payload), the last possibly shorter. Never more than
    /// `Backend::max_segments() - 1` of them.
    pub more: &'a [Segment<'a>],
}

impl<'a> Outgoing<'a> {
    /// A packet of `head` bytes alone (OACK, ACK, ERROR).
    pub fn single(
        fd: RawFd,
        to: SocketAddr,
        source: Option<IpAddr>,
        head: &'a [u8],
    ) -> Outgoing<'a> {
        Outgoing {
            fd,
            to,
            source,
            head,
            payload: None,
            more: &[],
        }
    }
}

/// One DATA packet of a GSO send: its header and its slice of the file.
#[derive(Clone, Copy)]
pub struct Segment<'a> {
    pub head: [u8; 4],
    pub payload: &'a [u8],
}

impl Segment<'_> {
    pub const EMPTY: Segment<'static> = Segment {
        head: [0; 4],
        payload: &[],
    };
}

/// Most DATA packets in one GSO send (the kernel allows 64 or more).
pub const MAX_SEGMENTS: usize = 64;
/// Most bytes in one GSO send: one IP datagram's worth, with headers.
pub const GSO_MAX_BYTES: usize = 65_000;

enum Endpoint {
    Listen { socket: UdpSocket, wildcard: bool },
    Transfer(Box<Transfer>),
}

struct Transfer {
    /// Own socket (a fresh TID), or `None` in single-port mode.
    socket: Option<UdpSocket>,
    send_fd: RawFd,
    source: Option<IpAddr>,
    peer: SocketAddr,
    started: Instant,
    /// The deadline a timer-heap entry exists for.
    scheduled: Option<Instant>,
    kind: Kind,
}

impl Transfer {
    /// A packet of `head` bytes alone (OACK, ACK, ERROR) to the peer.
    fn single<'a>(&self, head: &'a [u8]) -> Outgoing<'a> {
        Outgoing::single(self.send_fd, self.peer, self.source, head)
    }
}

// Transfers are boxed already; the read variant is the common one.
#[allow(clippy::large_enum_variant)]
enum Kind {
    Read {
        machine: ReadTransfer,
        file: Arc<ServedFile>,
        negotiated: Negotiated,
    },
    Write(Box<Upload>),
}

struct Upload {
    machine: WriteTransfer,
    file: File,
    temp: PathBuf,
    target: PathBuf,
    name: String,
    bytes: u64,
    negotiated: Negotiated,
    /// Synced and renamed into place.
    stored: bool,
}

/// Per-shard counters, reported at shutdown.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardStats {
    pub requests: u64,
    pub completed: u64,
    pub failed: u64,
    pub refused: u64,
    /// Size probes: OACK then ERROR 8, as UEFI firmware does.
    pub probes: u64,
    pub malformed: u64,
    pub bytes: u64,
}

impl std::ops::AddAssign for ShardStats {
    fn add_assign(&mut self, other: ShardStats) {
        self.requests += other.requests;
        self.completed += other.completed;
        self.failed += other.failed;
        self.refused += other.refused;
        self.probes += other.probes;
        self.malformed += other.malformed;
        self.bytes += other.bytes;
    }
}

pub struct ShardCore {
    index: usize,
    shared: Arc<Shared>,
    endpoints: Slab<Endpoint>,
    /// Transfers by client address: how single-port mode tells them apart,
    /// and how a retransmitted request is recognised.
    peers: HashMap<SocketAddr, usize>,
    /// Whether the listen sockets are still open (closed when draining).
    listening: bool,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    ports: PortPicker,
    /// MTUs for the blksize clamp, from the shared interface table.
    interfaces: crate::net::View,
    scratch: [u8; SMALL_PACKET],
    upload_seq: u64,
    /// When shard 0 next lets go of files unused for a while.
    next_expiry: Instant,
    /// This shard's metric cells (it is their only writer).
    pub metrics: Arc<CachePadded<ShardMetrics>>,
}

impl ShardCore {
    pub fn new(index: usize, shared: Arc<Shared>, listen: Vec<UdpSocket>) -> ShardCore {
        let mut endpoints = Slab::new();
        for socket in listen {
            let wildcard = socket
                .local_addr()
                .map(|a| a.ip().is_unspecified())
                .unwrap_or(false);
            endpoints.insert(Endpoint::Listen { socket, wildcard });
        }
        let ports = PortPicker::new(shared.settings.port_range, index);
        ShardCore {
            interfaces: shared.interfaces.reader(),
            metrics: shared.metrics.shard(index),
            index,
            shared,
            endpoints,
            peers: HashMap::new(),
            listening: true,
            timers: BinaryHeap::new(),
            ports,
            scratch: [0; SMALL_PACKET],
            upload_seq: 0,
            next_expiry: Instant::now(),
        }
    }

    pub fn index(&self) -> usize {
        self.index
    }

    /// Counts a refused request and tells the status table.
    fn refused(&self, client: IpAddr, name: &[u8], reason: Refusal) {
        self.metrics.tftp.refuse(reason);
        telemetry::post_refused(&self.shared.status, client, name, reason);
    }

    /// Registers the listen sockets with the backend.
    pub fn start(&mut self, io: &mut impl Backend) {
        for (key, ep) in self.endpoints.iter() {
            if let Endpoint::Listen { socket, .. } = ep {
                io.watch(key, socket.as_raw_fd());
            }
        }
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((at, _))| *at)
    }

    /// Handles one received datagram.
    pub fn on_datagram(
        &mut self,
        io: &mut impl Backend,
        key: usize,
        meta: RecvMeta,
        bytes: &[u8],
        now: Instant,
    ) {
        let Some(endpoint) = self.endpoints.get(key) else {
            return;
        };
        let listen_key = match endpoint {
            Endpoint::Listen { .. } => key,
            Endpoint::Transfer(_) => return self.on_transfer_packet(io, key, meta, bytes, now),
        };
        if let Some(&transfer) = self.peers.get(&meta.from) {
            let is_request = matches!(bytes.get(..2), Some([0, 1]) | Some([0, 2]));
            if !is_request && self.shared.settings.single_port {
                return self.on_transfer_packet(io, transfer, meta, bytes, now);
            }
            if is_request {
                if self.is_retransmitted_request(transfer, bytes) {
                    tracing::debug!(client = %meta.from, "retransmitted request ignored: its transfer is running");
                    return;
                }
                // The client moved on (its last ACK may have been lost).
                let outcome = match self.endpoints.get(transfer) {
                    Some(Endpoint::Transfer(t)) if matches!(&t.kind, Kind::Read { machine, .. } if machine.all_sent()) => {
                        Outcome::CompleteUnconfirmed
                    }
                    _ => Outcome::Superseded,
                };
                self.finish(io, transfer, outcome, now);
            }
        }
        match Packet::parse(bytes) {
            Ok(Packet::Rrq(req)) => self.start_read(io, listen_key, meta, req, now),
            Ok(Packet::Wrq(req)) => self.start_write(io, listen_key, meta, req, now),
            Ok(Packet::Error { .. }) => {} // never answer an error with an error
            Ok(_) => {
                let (code, msg) = if self.shared.settings.single_port {
                    (ErrorCode::UnknownTid, "Unknown transfer ID")
                } else {
                    (
                        ErrorCode::IllegalOperation,
                        "Expected a read or write request",
                    )
                };
                self.reply_error(io, listen_key, meta, code, msg);
            }
            Err(e) => {
                self.metrics.tftp.malformed.inc();
                tracing::debug!(client = %meta.from, "malformed request dropped: {e}");
                if matches!(
                    e,
                    wire::Error::BadMode | wire::Error::StringTooLong | wire::Error::EmptyFilename
                ) {
                    self.reply_error(
                        io,
                        listen_key,
                        meta,
                        ErrorCode::IllegalOperation,
                        "Malformed request",
                    );
                }
            }
        }
    }

    /// Whether `bytes` repeats the request that started `transfer`: same
    /// file, and that transfer has not sent its last block yet.
    fn is_retransmitted_request(&self, transfer: usize, bytes: &[u8]) -> bool {
        let Some(Endpoint::Transfer(t)) = self.endpoints.get(transfer) else {
            return false;
        };
        let (Ok(Packet::Rrq(req)) | Ok(Packet::Wrq(req))) = Packet::parse(bytes) else {
            return false;
        };
        let Ok(name) = crate::files::resolve::normalise(req.filename) else {
            return false;
        };
        match &t.kind {
            Kind::Read { machine, file, .. } => name == file.name() && !machine.all_sent(),
            Kind::Write(up) => name == up.name,
        }
    }

    /// Draining: close the listen sockets so a new server can bind them,
    /// while running transfers finish on their own sockets. In single-port
    /// mode the listen sockets carry those transfers and stay open.
    pub fn stop_listening(&mut self, io: &mut impl Backend) {
        if !self.listening || self.shared.settings.single_port {
            return;
        }
        self.listening = false;
        let keys: Vec<usize> = self
            .endpoints
            .iter()
            .filter(|(_, e)| matches!(e, Endpoint::Listen { .. }))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            if let Endpoint::Listen { socket, .. } = self.endpoints.remove(key) {
                io.unwatch(key, socket.as_raw_fd());
            }
        }
    }

    pub fn is_listening(&self) -> bool {
        self.listening && !self.shared.settings.single_port
    }

    fn on_transfer_packet(
        &mut self,
        io: &mut impl Backend,
        key: usize,
        meta: RecvMeta,
        bytes: &[u8],
        now: Instant,
    ) {
        let Some(Endpoint::Transfer(t)) = self.endpoints.get_mut(key) else {
            return;
        };
        if meta.from != t.peer {
            // RFC 1350: a stray TID gets ERROR 5; the transfer goes on.
            let (fd, source) = (t.send_fd, t.source);
            let n = wire::emit_error(
                &mut self.scratch,
                ErrorCode::UnknownTid,
                "Unknown transfer ID",
            )
            .unwrap_or(0);
            io.send(Outgoing::single(fd, meta.from, source, &self.scratch[..n]));
            return;
        }
        match (&mut t.kind, Packet::parse(bytes)) {
            (Kind::Read { machine, .. }, Ok(Packet::Ack { block })) => machine.on_ack(block, now),
            (Kind::Read { machine, .. }, Ok(Packet::Error { code, .. })) => machine.on_error(code),
            (Kind::Write(_), Ok(Packet::Data { block, payload })) => {
                return self.on_upload_data(io, key, block, payload, now);
            }
            (Kind::Write(_), Ok(Packet::Error { code, .. })) => {
                return self.finish(io, key, Outcome::ClientError(code), now);
            }
            _ => {
                self.metrics.tftp.malformed.inc();
                return;
            }
        }
        self.pump(io, key, now);
    }

    /// Handles every timer due at `now`.
    pub fn on_timers(&mut self, io: &mut impl Backend, now: Instant) {
        if self.index == 0 && now >= self.next_expiry {
            self.next_expiry = now + EXPIRY_EVERY;
            self.shared.cache.expire_lingering(now);
        }
        while let Some(&Reverse((at, key))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            let Some(Endpoint::Transfer(t)) = self.endpoints.get_mut(key) else {
                continue;
            };
            if t.scheduled != Some(at) {
                continue; // superseded entry
            }
            t.scheduled = None;
            match &mut t.kind {
                Kind::Read { machine, .. } => {
                    machine.on_timeout(now);
                    self.pump(io, key, now);
                }
                Kind::Write(up) => {
                    let (idle, deadline) = (up.machine.is_idle(now), up.machine.deadline());
                    if idle {
                        self.finish(io, key, Outcome::TimedOut, now);
                    } else {
                        self.schedule(key, deadline);
                    }
                }
            }
        }
    }

    /// Ends every transfer (shutdown after the drain time).
    pub fn abort_all(&mut self, io: &mut impl Backend, now: Instant) {
        let keys: Vec<usize> = self
            .endpoints
            .iter()
            .filter(|(_, e)| matches!(e, Endpoint::Transfer(_)))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.send_transfer_error(io, key, ErrorCode::NotDefined, "Server shutting down");
            self.finish(io, key, Outcome::TimedOut, now);
        }
    }

    fn schedule(&mut self, key: usize, at: Instant) {
        if let Some(Endpoint::Transfer(t)) = self.endpoints.get_mut(key) {
            // Only an earlier deadline needs a new heap entry; a later one is
            // found when the earlier entry fires.
            if t.scheduled.is_none_or(|s| at < s) {
                t.scheduled = Some(at);
                self.timers.push(Reverse((at, key)));
            }
        }
    }

    /// Sends whatever the read transfer allows, then re-arms its timer or
    /// finishes it.
    fn pump<B: Backend>(&mut self, io: &mut B, key: usize, now: Instant) {
        let shard = self.index;
        let max_segments = io.max_segments().clamp(1, MAX_SEGMENTS);
        let Some(Endpoint::Transfer(t)) = self.endpoints.get_mut(key) else {
            return;
        };
        let Kind::Read {
            machine,
            file,
            negotiated,
        } = &mut t.kind
        else {
            return;
        };
        let file: &Arc<ServedFile> = file;
        let (fd, to, source) = (t.send_fd, t.peer, t.source);
        // Consecutive DATA packets go out together, as one GSO send where
        // the backend can: segments the size of the first, the last one
        // possibly shorter, at most ~64 KB in all.
        let mut window = [Segment::EMPTY; MAX_SEGMENTS];
        let mut count = 0;
        let mut revoked = false;
        let flush = |window: &[Segment<'_>], io: &mut B| -> bool {
            if window.is_empty() {
                return true;
            }
            if !file.gate().begin(shard) {
                return false;
            }
            let (first, more) = (&window[0], &window[1..]);
            io.send(Outgoing {
                fd,
                to,
                source,
                head: &first.head,
                payload: Some((file, first.payload)),
                more,
            });
            true
        };
        while let Some(tx) = machine.poll_transmit(now) {
            match tx {
                Transmit::Oack => {
                    revoked |= !flush(&window[..count], io);
                    count = 0;
                    let n = negotiated.emit_oack(&mut self.scratch).unwrap_or(0);
                    io.send(Outgoing::single(fd, to, source, &self.scratch[..n]));
                }
                Transmit::Data { block, offset, len } => {
                    // The last block completes the transfer: one fstat
                    // first, so a changed file ends with an ERROR instead.
                    if offset + len as u64 == file.len() && !file.unchanged() {
                        revoked = true;
                        break;
                    }
                    let segment = Segment {
                        head: wire::data_header(block),
                        payload: file.slice(offset, len),
                    };
                    let size = segment.payload.len();
                    let fits = count > 0
                        && count < max_segments
                        && size <= window[0].payload.len()
                        && (count + 1) * (window[0].payload.len() + 4) <= GSO_MAX_BYTES;
                    if count > 0 && !fits {
                        revoked |= !flush(&window[..count], io);
                        count = 0;
                    }
                    window[count] = segment;
                    count += 1;
                    // A short block ends a GSO send: nothing may follow it.
                    if count > 1 && size < window[0].payload.len() {
                        revoked |= !flush(&window[..count], io);
                        count = 0;
                    }
                }
            }
            if revoked {
                break;
            }
        }
        revoked |= !flush(&window[..count], io);
        if revoked {
            self.send_transfer_error(
                io,
                key,
                ErrorCode::NotDefined,
                "File changed during transfer, retry",
            );
            return self.finish(io, key, Outcome::TimedOut, now);
        }
        match (machine.outcome(), machine.poll_timeout()) {
            (Some(outcome), _) => self.finish(io, key, outcome, now),
            (None, Some(at)) => self.schedule(key, at),
            (None, None) => {}
        }
    }

    fn send_transfer_error(
        &mut self,
        io: &mut impl Backend,
        key: usize,
        code: ErrorCode,
        msg: &str,
    ) {
        let Some(Endpoint::Transfer(t)) = self.endpoints.get(key) else {
            return;
        };
        let n = wire::emit_error(&mut self.scratch, code, msg).unwrap_or(0);
        io.send(t.single(&self.scratch[..n]));
    }

    /// An ERROR answering a request, sent from the listen socket.
    fn reply_error(
        &mut self,
        io: &mut impl Backend,
        listen_key: usize,
        meta: RecvMeta,
        code: ErrorCode,
        msg: &str,
    ) {
        let Some(Endpoint::Listen { socket, wildcard }) = self.endpoints.get(listen_key) else {
            return;
        };
        let n = wire::emit_error(&mut self.scratch, code, msg).unwrap_or(0);
        let source = if *wildcard { meta.local_ip } else { None };
        io.send(Outgoing::single(
            socket.as_raw_fd(),
            meta.from,
            source,
            &self.scratch[..n],
        ));
    }

    /// Admission control: global and per-client caps. On success the
    /// counters are taken; `release` gives them back.
    fn admit(&mut self, client: IpAddr) -> bool {
        let s = &self.shared;
        if s.draining.load(Ordering::Relaxed) {
            return false;
        }
        if s.active.fetch_add(1, Ordering::SeqCst) >= s.settings.max_transfers {
            s.active.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        let mut per_client = s.per_client.lock().unwrap_or_else(|e| e.into_inner());
        let count = per_client.entry(client).or_insert(0);
        if *count as usize >= s.settings.max_per_client {
            drop(per_client);
            s.active.fetch_sub(1, Ordering::SeqCst);
            return false;
        }
        *count += 1;
        true
    }

    fn release(&self, client: IpAddr) {
        let s = &self.shared;
        s.active.fetch_sub(1, Ordering::SeqCst);
        let mut per_client = s.per_client.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = per_client.get_mut(&client) {
            *count -= 1;
            if *count == 0 {
                per_client.remove(&client);
            }
        }
    }

    fn limits_for(&mut self, meta: &RecvMeta) -> crate::tftp::Limits {
        let mut limits = self.shared.settings.limits;
        if let Some(mtu) = self.interfaces.table().mtu(meta.ifindex) {
            limits.mtu_blksize = Some(blksize_for_mtu(mtu, meta.from.is_ipv6()));
        }
        limits
    }

    /// Creates the transfer endpoint: a new socket, or the listen socket in
    /// single-port mode. Returns its key.
    fn open_transfer(
        &mut self,
        io: &mut impl Backend,
        listen_key: usize,
        meta: RecvMeta,
        kind: Kind,
        now: Instant,
    ) -> Option<usize> {
        let Some(Endpoint::Listen { socket, wildcard }) = self.endpoints.get(listen_key) else {
            return None;
        };
        let listen_fd = socket.as_raw_fd();
        let listen_ip = socket.local_addr().ok()?.ip();
        let local_ip = meta.local_ip.filter(|_| *wildcard).unwrap_or(listen_ip);
        let (socket, send_fd, source) = if self.shared.settings.single_port {
            (None, listen_fd, wildcard.then_some(local_ip))
        } else {
            match self.ports.bind(local_ip) {
                Ok(s) => {
                    let fd = s.as_raw_fd();
                    (Some(s), fd, None)
                }
                Err(e) => {
                    tracing::warn!("cannot open a transfer socket: {e}");
                    return None;
                }
            }
        };
        let transfer = Transfer {
            socket,
            send_fd,
            source,
            peer: meta.from,
            started: now,
            scheduled: None,
            kind,
        };
        let key = self
            .endpoints
            .insert(Endpoint::Transfer(Box::new(transfer)));
        if let Some(Endpoint::Transfer(t)) = self.endpoints.get(key)
            && t.socket.is_some()
        {
            io.watch(key, send_fd);
        }
        self.peers.insert(meta.from, key);
        self.metrics.tftp.active.up();
        Some(key)
    }

    fn start_read(
        &mut self,
        io: &mut impl Backend,
        listen_key: usize,
        meta: RecvMeta,
        req: wire::Request<'_>,
        now: Instant,
    ) {
        self.metrics.tftp.request(Direction::Read);
        let opened = match req.mode {
            wire::Mode::Octet => self.shared.cache.open_for(req.filename, meta.from.ip()),
            wire::Mode::Netascii => self
                .shared
                .cache
                .open_netascii_for(req.filename, meta.from.ip()),
        };
        let file = match opened {
            Ok(f) => f,
            Err(e) => {
                self.refused(meta.from.ip(), req.filename, telemetry::refusal(e));
                let name = String::from_utf8_lossy(req.filename);
                // One line per request, misses included: a pxelinux config
                // search is a dozen quick misses, and seeing them matters.
                if e == ResolveError::Overloaded {
                    tracing::warn!(client = %meta.from, file = %name, "out of file descriptors: request refused (raise the open-file limit or lower --max-transfers)");
                } else {
                    tracing::info!(client = %meta.from, file = %name, outcome = %e, "read refused");
                }
                let code = match e {
                    ResolveError::NotFound => ErrorCode::FileNotFound,
                    ResolveError::Refused => ErrorCode::AccessViolation,
                    ResolveError::Busy | ResolveError::Overloaded => ErrorCode::NotDefined,
                    ResolveError::TooLargeForNetascii => ErrorCode::DiskFull,
                };
                return self.reply_error(io, listen_key, meta, code, &e.to_string());
            }
        };
        if !self.admit(meta.from.ip()) {
            self.refused(meta.from.ip(), req.filename, Refusal::ServerBusy);
            tracing::warn!(client = %meta.from, "server busy: transfer refused");
            return self.reply_error(
                io,
                listen_key,
                meta,
                ErrorCode::NotDefined,
                "Server busy, try again",
            );
        }
        let limits = self.limits_for(&meta);
        let negotiated = Negotiated::for_read(&req.options, &limits, file.len());
        let machine = ReadTransfer::new(file.len(), &negotiated, self.shared.settings.timing, now);
        let kind = Kind::Read {
            machine,
            file,
            negotiated,
        };
        match self.open_transfer(io, listen_key, meta, kind, now) {
            Some(key) => self.pump(io, key, now),
            None => {
                self.release(meta.from.ip());
                self.reply_error(
                    io,
                    listen_key,
                    meta,
                    ErrorCode::NotDefined,
                    "Server busy, try again",
                );
            }
        }
    }

    /// Ends a transfer: one log line, resources returned.
    fn finish(&mut self, io: &mut impl Backend, key: usize, outcome: Outcome, now: Instant) {
        if !matches!(self.endpoints.get(key), Some(Endpoint::Transfer(_))) {
            return;
        }
        let Endpoint::Transfer(t) = self.endpoints.remove(key) else {
            return;
        };
        if let Some(socket) = &t.socket {
            io.unwatch(key, socket.as_raw_fd());
        }
        self.peers.remove(&t.peer);
        self.release(t.peer.ip());
        self.metrics.tftp.active.down();
        let elapsed = now.saturating_duration_since(t.started);
        let secs = elapsed.as_secs_f64().max(1e-6);
        match t.kind {
            Kind::Read {
                machine,
                file,
                negotiated,
            } => {
                let bytes = if outcome.is_success() {
                    file.len()
                } else {
                    machine.bytes_acked()
                };
                // UEFI firmware asks for the size (tsize) and then ends the
                // transfer with ERROR 8 before the real request: not a failure.
                let probe = outcome == Outcome::ClientError(8) && machine.bytes_acked() == 0;
                self.metrics.tftp.read_ended(
                    telemetry::metric_outcome(outcome, probe),
                    bytes,
                    &machine.stats,
                    elapsed,
                );
                let status = &self.shared.status;
                telemetry::post_read(status, t.peer, file.name(), outcome, probe, bytes, elapsed);
                let outcome: &dyn std::fmt::Debug = if probe { &"SizeProbe" } else { &outcome };
                tracing::info!(
                    client = %t.peer,
                    file = file.name(),
                    bytes,
                    options = %negotiated,
                    ms = elapsed.as_millis() as u64,
                    mib_s = format_args!("{:.1}", bytes as f64 / secs / (1 << 20) as f64),
                    resent = machine.stats.blocks_resent,
                    timeouts = machine.stats.timeouts,
                    paced = machine.stats.paced,
                    outcome = ?outcome,
                    "read"
                );
            }
            Kind::Write(up) => {
                let Upload {
                    file,
                    temp,
                    name,
                    bytes,
                    negotiated,
                    stored,
                    ..
                } = *up;
                drop(file);
                if !stored {
                    let _ = std::fs::remove_file(&temp);
                }
                self.metrics.tftp.write_ended(stored, bytes);
                tracing::info!(
                    client = %t.peer,
                    file = name,
                    bytes,
                    options = %negotiated,
                    ms = elapsed.as_millis() as u64,
                    outcome = if stored { "stored".to_string() } else { format!("{outcome:?}") },
                    "write"
                );
            }
        }
    }
}
