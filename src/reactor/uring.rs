//! The io_uring backend: per shard, one ring, one multishot `recvmsg` armed
//! on each socket and fed from a provided-buffer ring, and one `sendmsg`
//! per packet whose iovec is the 4-byte header plus a slice of the mapped
//! file, queued in the submission ring and submitted many at a time.
//!
//! A turn of the loop is one `io_uring_enter`: it submits everything the
//! last turn queued and sleeps until a datagram arrives or the next timer
//! is due; then the sends that completed give their slots back, every
//! received datagram goes to the shard, and due timers run.
//!
//! HTTP sockets get a multishot poll in the same ring; its completions hand
//! readiness to the shard's `HttpShard`, which does the socket calls.
//!
//! Memory the kernel may still use is owned here until its completion:
//! send slots (msghdr, iovecs, address, head bytes, a clone of the file's
//! `Arc`) and receive buffers (lent to the shard for one datagram, then
//! offered back). The ring is dropped before either (field and local
//! order), and shutdown waits for every send and receive to complete.

pub(crate) mod buf_ring;
pub(crate) mod datagram;
mod http_polls;
mod send_slots;
#[cfg(test)]
mod tests;
mod token;
mod watches;

use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use io_uring::opcode::{AsyncCancel, PollAdd, RecvMsg, RecvMsgMulti, SendMsg, Timeout};
use io_uring::types::{Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, Probe, cqueue, squeue};

use self::buf_ring::BufRing;
use self::datagram::RecvTemplate;
use self::http_polls::HttpPolls;
use self::send_slots::{NoSlot, SendSlots};
use self::token::Token;
use self::watches::Watches;
use super::http::{HttpIo, HttpKey, HttpShard};
use super::shard::{Backend, MAX_SEGMENTS, Outgoing, ShardCore};
use super::socket::is_gso_unsupported;
use super::{MAX_WAIT, Shared};

/// Sizes of one shard's ring and of the memory it lends the kernel.
#[derive(Debug, Clone, Copy)]
struct RingConfig {
    /// Submission ring entries; the completion ring gets twice as many,
    /// so a full submission ring of sends plus the receives arriving
    /// meanwhile fit.
    sq_entries: u32,
    /// Sends in flight at once; no more than the submission ring holds,
    /// so a full set of slots always fits one submit.
    send_slots: u32,
    /// Receive buffers (a power of two) and their size.
    recv_buffers: u16,
    recv_buf_len: u32,
}

impl RingConfig {
    /// Requests and ACKs are small; uploads are capped at blksize 1468
    /// (`UPLOAD_MAX_BLKSIZE`), and 2048-byte buffers leave 1840 bytes of
    /// payload after the recvmsg header, the source address field and the
    /// packet-info field. Buffers go back to the ring as soon as their
    /// datagram is handled, so 2048 of them cover bursts of that many
    /// datagrams between two turns (4 MiB per shard). 4096 send slots of
    /// about 600 bytes: 2.4 MiB per shard.
    const DEFAULT: RingConfig = RingConfig {
        sq_entries: 4096,
        send_slots: 1024,
        recv_buffers: 2048,
        recv_buf_len: 2048,
    };
}

const BUF_GROUP: u16 = 0;
/// Full socket buffer = lost packet (the retransmission timer covers it),
/// as in the epoll backend; also keeps every send's life short.
const SEND_FLAGS: u32 = (libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) as u32;
/// How long a send waits for a free slot before its packet counts as lost.
const SLOT_WAIT: Duration = Duration::from_secs(1);
/// How long shutdown waits for the kernel to finish with sends and
/// receives before leaking their memory rather than freeing it under it.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// Attempts at queueing one entry when the submission ring is full.
const PUSH_ATTEMPTS: usize = 8;

/// Whether this kernel and sandbox let us run the backend: ring set-up,
/// the opcodes used, timed waits, a provided-buffer ring and a multishot
/// receive that can be cancelled. Never panics.
///
/// Runs on a thread of its own: tearing a ring down leaves task work for
/// the thread that used it, which interrupts that thread's next blocking
/// call (EINTR), and the caller's thread has better things to wait for.
pub fn probe() -> io::Result<()> {
    std::thread::Builder::new()
        .name("io_uring-probe".into())
        .spawn(probe_here)?
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("io_uring probe panicked")))
}

fn probe_here() -> io::Result<()> {
    // Outlive the ring (dropped in reverse order): the kernel reads them.
    let socket = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM.nonblocking(),
        None,
    )?;
    let template = RecvTemplate::new();
    let mut ring = build_ring(8, 16).map_err(|e| {
        let hint = match e.raw_os_error() {
            Some(libc::EPERM) | Some(libc::ENOSYS) => {
                " (forbidden by a seccomp profile, or sysctl kernel.io_uring_disabled)"
            }
            _ => "",
        };
        io::Error::new(e.kind(), format!("io_uring_setup failed: {e}{hint}"))
    })?;
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| io::Error::new(e.kind(), format!("io_uring probe: {e}")))?;
    for (code, name) in [
        (RecvMsg::CODE, "IORING_OP_RECVMSG"),
        (SendMsg::CODE, "IORING_OP_SENDMSG"),
        (AsyncCancel::CODE, "IORING_OP_ASYNC_CANCEL"),
        (Timeout::CODE, "IORING_OP_TIMEOUT"),
    ] {
        if !probe.is_supported(code) {
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                format!("the kernel lacks {name}"),
            ));
        }
    }
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no timed waits (IORING_FEAT_EXT_ARG, kernel 5.11)",
        ));
    }
    let bufs = BufRing::register(&ring.submitter(), BUF_GROUP, 8, 256)?;
    let result = check_multishot(&mut ring, socket.as_raw_fd(), &template);
    // The ring goes first: until then the kernel may use the buffers.
    drop(ring);
    drop(bufs);
    result
}

/// Arms a multishot receive on an idle socket and cancels it: an old
/// kernel refuses the arm (EINVAL), a working one reports it cancelled.
fn check_multishot(ring: &mut IoUring, fd: RawFd, template: &RecvTemplate) -> io::Result<()> {
    let recv_token = Token::Recv {
        key: 0,
        generation: 0,
    }
    .encode();
    let recv = RecvMsgMulti::new(Fd(fd), template.as_ptr(), BUF_GROUP)
        .build()
        .user_data(recv_token);
    let cancel = AsyncCancel::new(recv_token)
        .build()
        .user_data(Token::Cancel.encode());
    // SAFETY: the template and the socket outlive the ring (locals of
    // `probe` declared before it); the buffers are the group registered
    // by `probe`, dropped after the ring. The cancel carries no pointers.
    unsafe {
        let mut sq = ring.submission();
        sq.push(&recv)
            .map_err(|_| io::Error::other("io_uring probe: submission ring full"))?;
        sq.push(&cancel)
            .map_err(|_| io::Error::other("io_uring probe: submission ring full"))?;
    }
    let timeout = Timespec::from(Duration::from_secs(1));
    let args = SubmitArgs::new().timespec(&timeout);
    let mut recv_result = None;
    let deadline = Instant::now() + Duration::from_secs(2);
    while recv_result.is_none() && Instant::now() < deadline {
        match ring.submitter().submit_with_args(1, &args) {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {}
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("io_uring probe: io_uring_enter: {e}"),
                ));
            }
        }
        for cqe in ring.completion() {
            if cqe.user_data() == recv_token && !cqueue::more(cqe.flags()) {
                recv_result = Some(cqe.result());
            }
        }
    }
    match recv_result {
        Some(r) if r == -libc::ECANCELED => Ok(()),
        Some(r) if r == -libc::EINVAL => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "no multishot recvmsg (kernel 6.0 or later needed)",
        )),
        Some(r) => Err(io::Error::from_raw_os_error(-r)),
        None => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "io_uring probe: no completion",
        )),
    }
}

/// A ring with the cheapest task-work mode this kernel accepts: one
/// issuer, task work run only when we wait (no interrupts while the shard
/// works), every queued entry submitted even if one fails.
pub(crate) fn build_ring(sq: u32, cq: u32) -> io::Result<IoUring> {
    let tiers: [fn(&mut io_uring::Builder); 3] = [
        |b| {
            b.setup_single_issuer()
                .setup_defer_taskrun()
                .setup_submit_all();
        },
        |b| {
            b.setup_coop_taskrun().setup_submit_all();
        },
        |_| {},
    ];
    let mut last = io::Error::other("no ring set-up tried");
    for tier in tiers {
        let mut builder = IoUring::builder();
        builder.setup_cqsize(cq).setup_clamp();
        tier(&mut builder);
        match builder.build(sq) {
            Ok(ring) => return Ok(ring),
            // An older kernel refuses a flag it does not know: try fewer.
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// The shard's side of the ring: what `ShardCore` drives through
/// `Backend`. Receive buffers live outside it (see `run`) because the
/// shard reads a datagram from them while it holds `&mut UringIo`.
struct UringIo {
    /// First field: dropped before the memory below that the kernel uses.
    ring: IoUring,
    slots: SendSlots,
    watches: Watches,
    http_polls: HttpPolls,
    template: RecvTemplate,
    /// Receive completions taken off the completion ring but not yet
    /// handed to the shard (reaped while a send waited for a slot).
    received: Vec<cqueue::Entry>,
    /// Sends queued in the submission ring, not submitted yet (at most).
    queued_sends: usize,
    shard: usize,
    /// Whether UDP GSO works here (turned off at the first refusal).
    gso: bool,
}

impl UringIo {
    fn new(ring: IoUring, shard: usize, config: &RingConfig) -> UringIo {
        UringIo {
            ring,
            slots: SendSlots::new(config.send_slots),
            watches: Watches::default(),
            http_polls: HttpPolls::default(),
            template: RecvTemplate::new(),
            received: Vec::with_capacity(usize::from(config.recv_buffers)),
            queued_sends: 0,
            shard,
            gso: true,
        }
    }

    /// Queues `entry`, submitting (and reaping) to make room when the
    /// submission ring is full. False when it could not be queued.
    ///
    /// # Safety
    /// Everything `entry` points to must stay valid until its completion.
    unsafe fn push(&mut self, entry: &squeue::Entry) -> bool {
        for _ in 0..PUSH_ATTEMPTS {
            // SAFETY: the caller keeps what `entry` points to valid.
            if unsafe { self.ring.submission().push(entry) }.is_ok() {
                return true;
            }
            if let Err(e) = self.submit() {
                tracing::warn!("io_uring submit failed: {e}");
            }
            self.reap();
        }
        false
    }

    /// Hands every queued entry to the kernel without waiting.
    fn submit(&mut self) -> io::Result<()> {
        for _ in 0..PUSH_ATTEMPTS {
            let result = self.ring.submit();
            self.entered();
            match result {
                Ok(_) => return Ok(()),
                Err(e) => match e.raw_os_error() {
                    Some(libc::EINTR) => {}
                    // The completion ring is full: make room and retry.
                    Some(libc::EBUSY) | Some(libc::EAGAIN) => self.reap(),
                    _ => return Err(e),
                },
            }
        }
        Err(io::Error::other("io_uring submit kept failing"))
    }

    /// Submits what is queued and sleeps until `want` completions are
    /// ready or `timeout` passes.
    fn wait(&mut self, want: usize, timeout: Duration) -> io::Result<()> {
        let timespec = Timespec::from(timeout);
        let args = SubmitArgs::new().timespec(&timespec);
        let result = self.ring.submitter().submit_with_args(want, &args);
        self.entered();
        match result {
            Ok(_) => Ok(()),
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME) | Some(libc::EINTR) => Ok(()),
                Some(libc::EBUSY) | Some(libc::EAGAIN) => {
                    self.reap();
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// After any `io_uring_enter`: sends no longer in the submission ring
    /// were submitted.
    fn entered(&mut self) {
        let left = self.ring.submission().len();
        self.queued_sends = self.queued_sends.min(left);
    }

    /// Takes every completion off the ring: sends are finished here (slot
    /// freed, file gate ended), receives are kept for the shard.
    fn reap(&mut self) {
        for cqe in self.ring.completion() {
            match Token::decode(cqe.user_data()) {
                Token::Send { slot } => {
                    // A failed send is a lost packet (or window), recovered
                    // by the transfer's retransmission timer.
                    let was_gso = self.slots.complete(slot, self.shard);
                    if cqe.result() < 0 {
                        let errno = -cqe.result();
                        if was_gso && self.gso && is_gso_unsupported(errno) {
                            tracing::info!(
                                "UDP GSO unavailable here ({}); sending packet by packet",
                                io::Error::from_raw_os_error(errno)
                            );
                            self.gso = false;
                        }
                        tracing::trace!("send failed: {}", io::Error::from_raw_os_error(errno));
                    }
                }
                Token::Recv { .. } | Token::Http(_) => self.received.push(cqe),
                Token::Cancel | Token::Probe => {}
            }
        }
    }

    /// Arms the multishot receive for `token` on `fd`.
    fn arm(&mut self, token: Token, fd: RawFd) {
        let entry = RecvMsgMulti::new(Fd(fd), self.template.as_ptr(), BUF_GROUP)
            .build()
            .user_data(token.encode());
        // SAFETY: the msghdr template is boxed in `self` and the receive
        // buffers belong to the registered group; both outlive the ring
        // (`ring` is dropped first, `run` drops the buffers after `self`).
        // The kernel holds its own reference to the socket.
        if unsafe { self.push(&entry) } {
            self.watches.armed(token);
        } else {
            tracing::warn!("cannot arm a receive: the submission ring stays full");
        }
    }

    /// Waits for a send slot to free up. False once `SLOT_WAIT` has passed
    /// since `since`.
    fn wait_for_slot(&mut self, since: Instant) -> bool {
        if since.elapsed() >= SLOT_WAIT {
            return false;
        }
        if let Err(e) = self.wait(1, Duration::from_millis(10)) {
            tracing::warn!("io_uring wait failed: {e}");
        }
        self.reap();
        true
    }

    /// Arms the multishot poll of an HTTP socket.
    fn arm_http(&mut self, token: Token, fd: RawFd) {
        let mask = match token {
            Token::Http(HttpKey::Listener(_)) => libc::POLLIN,
            _ => libc::POLLIN | libc::POLLOUT | libc::POLLRDHUP,
        };
        let entry = PollAdd::new(Fd(fd), mask as u32)
            .multi(true)
            .build()
            .user_data(token.encode());
        // SAFETY: a poll points to no memory of ours; the kernel holds its
        // own reference to the socket.
        if unsafe { self.push(&entry) } {
            self.http_polls.armed();
        } else {
            tracing::warn!("cannot watch an HTTP socket: the submission ring stays full");
        }
    }

    /// Nothing of ours left in the kernel.
    fn quiescent(&self) -> bool {
        self.slots.in_flight() == 0
            && self.watches.outstanding() == 0
            && self.http_polls.outstanding() == 0
    }
}

impl Backend for UringIo {
    fn watch(&mut self, key: usize, fd: RawFd) {
        if self.watches.is_watched(key) {
            self.unwatch(key, fd); // never two receives under one token
        }
        match self.watches.watch(key, fd) {
            Some(token) => self.arm(token, fd),
            None => tracing::warn!("endpoint key {key} too large to watch"),
        }
    }

    fn unwatch(&mut self, key: usize, _fd: RawFd) {
        if let Some(token) = self.watches.unwatch(key) {
            let cancel = AsyncCancel::new(token.encode())
                .build()
                .user_data(Token::Cancel.encode());
            // SAFETY: a cancellation points to no memory.
            if !unsafe { self.push(&cancel) } {
                tracing::warn!("cannot cancel a receive: the submission ring stays full");
            }
        }
        // The caller closes the socket right after this; the kernel looks
        // descriptors up at submission, so sends still queued for it (a
        // last ERROR, say) must be submitted now, while it is open.
        if let Err(e) = self.submit() {
            tracing::warn!("io_uring submit failed: {e}");
        }
    }

    fn max_segments(&self) -> usize {
        if self.gso { MAX_SEGMENTS } else { 1 }
    }

    fn send(&mut self, packet: Outgoing<'_>) {
        if !packet.more.is_empty() && !self.gso {
            // GSO was just found unavailable: the window goes out packet by
            // packet, each holding the file's gate for its own send.
            if let Some((file, _)) = packet.payload {
                for segment in packet.more {
                    if file.gate().begin(self.shard) {
                        let single = Outgoing {
                            head: &segment.head,
                            payload: Some((file, segment.payload)),
                            more: &[],
                            ..packet
                        };
                        self.send(single);
                    }
                }
            }
            return self.send(Outgoing {
                more: &[],
                ..packet
            });
        }
        let since = Instant::now();
        let prepared = loop {
            match self.slots.prepare(&packet) {
                Ok(prepared) => break Some(prepared),
                Err(NoSlot::AllBusy) if self.wait_for_slot(since) => {}
                Err(NoSlot::AllBusy) => {
                    tracing::warn!(to = %packet.to, "every send slot stayed busy for {SLOT_WAIT:?}: packet dropped");
                    break None;
                }
                Err(NoSlot::HeadTooLong) => {
                    tracing::warn!(to = %packet.to, len = packet.head.len(), "packet head too long: dropped");
                    break None;
                }
            }
        };
        let Some((slot, msg)) = prepared else {
            if let Some((file, _)) = packet.payload {
                file.gate().end(self.shard);
            }
            return;
        };
        let entry = SendMsg::new(Fd(packet.fd), msg)
            .flags(SEND_FLAGS)
            .build()
            .user_data(Token::Send { slot }.encode());
        // SAFETY: `msg` and the iovecs, address, control and head bytes it
        // points to live in send slot `slot`, allocated once and never
        // moved, and reserved until this send's completion frees it; the
        // file bytes stay mapped through the slot's Arc<ServedFile>.
        if unsafe { self.push(&entry) } {
            self.queued_sends += 1;
        } else {
            tracing::warn!(to = %packet.to, "the submission ring stays full: packet dropped");
            self.slots.complete(slot, self.shard);
        }
    }
}

impl HttpIo for UringIo {
    fn watch_http(&mut self, key: HttpKey, fd: RawFd) {
        let token = self.http_polls.watch(key, fd);
        self.arm_http(token, fd);
    }

    fn unwatch_http(&mut self, key: HttpKey, _fd: RawFd) {
        if let Some(token) = self.http_polls.unwatch(key) {
            let cancel = AsyncCancel::new(token.encode())
                .build()
                .user_data(Token::Cancel.encode());
            // SAFETY: a cancellation points to no memory.
            if !unsafe { self.push(&cancel) } {
                tracing::warn!("cannot cancel an HTTP poll: the submission ring stays full");
            }
        }
    }
}

/// Runs one shard until `shared.stop` is set.
pub fn run(core: &mut ShardCore, http: &mut HttpShard, shared: &Shared) -> io::Result<()> {
    run_with(core, http, shared, RingConfig::DEFAULT)
}

fn run_with(
    core: &mut ShardCore,
    http: &mut HttpShard,
    shared: &Shared,
    config: RingConfig,
) -> io::Result<()> {
    let ring = build_ring(config.sq_entries, 2 * config.sq_entries)?;
    // Declared before `io` so it is dropped after the ring inside `io`:
    // the kernel may write into these buffers until the ring is gone.
    let mut bufs = BufRing::register(
        &ring.submitter(),
        BUF_GROUP,
        config.recv_buffers,
        config.recv_buf_len,
    )?;
    let mut io = UringIo::new(ring, core.index(), &config);
    if io.template.overhead() >= bufs.buf_len() as usize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "receive buffers too small for the recvmsg header",
        ));
    }
    core.start(&mut io);
    http.start(&mut io);
    let mut batch = Vec::with_capacity(usize::from(config.recv_buffers));
    let mut shard = Parts { core, http };
    let result = turns(&mut shard, shared, &mut io, &mut bufs, &mut batch);
    if let Err(e) = &result {
        tracing::error!(shard = shard.core.index(), "io_uring loop failed: {e}");
    }
    shutdown(&mut shard, io, bufs);
    result
}

/// The two protocols a shard serves.
struct Parts<'a> {
    core: &'a mut ShardCore,
    http: &'a mut HttpShard,
}

/// The loop proper, until `stop` is set or the ring fails.
fn turns(
    shard: &mut Parts<'_>,
    shared: &Shared,
    io: &mut UringIo,
    bufs: &mut BufRing,
    batch: &mut Vec<cqueue::Entry>,
) -> io::Result<()> {
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        if shared.draining.load(Ordering::Relaxed) {
            if shard.core.is_listening() {
                shard.core.stop_listening(io);
            }
            if shard.http.is_listening() {
                shard.http.stop_listening(io);
            }
        }
        // Everything the last turn queued goes out in this one enter,
        // which then sleeps until something arrives or a timer is due.
        // Even a zero wait enters for events: with deferred task work that
        // is when arrived datagrams get received.
        if io.received.is_empty() {
            let now = Instant::now();
            let deadline = match (shard.core.next_deadline(), shard.http.next_deadline()) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            let wait =
                deadline.map_or(MAX_WAIT, |d| d.saturating_duration_since(now).min(MAX_WAIT));
            // Each queued send completes during the submit (MSG_DONTWAIT),
            // so one completion more than that is real news. Should a send
            // not complete at once, the wait still ends on time.
            io.wait(1 + io.queued_sends, wait)?;
        } else {
            io.submit()?;
        }
        io.reap();
        deliver_received(shard, io, bufs, batch);
        shard.core.on_timers(io, Instant::now());
        shard.http.on_timers(io, Instant::now());
    }
}

/// Hands every reaped receive and poll completion to the shard, including
/// those reaped while the shard was sending.
fn deliver_received(
    shard: &mut Parts<'_>,
    io: &mut UringIo,
    bufs: &mut BufRing,
    batch: &mut Vec<cqueue::Entry>,
) {
    while !io.received.is_empty() {
        std::mem::swap(batch, &mut io.received);
        for cqe in batch.drain(..) {
            match Token::decode(cqe.user_data()) {
                Token::Http(key) => on_http_poll(shard.http, io, key, &cqe),
                _ => on_receive(shard.core, io, bufs, &cqe),
            }
        }
    }
}

/// One completion of an HTTP socket's multishot poll: readiness for the
/// shard (when the socket is still watched), and a re-arm when the kernel
/// ended the poll.
fn on_http_poll(http: &mut HttpShard, io: &mut UringIo, key: HttpKey, cqe: &cqueue::Entry) {
    let (result, more) = (cqe.result(), cqueue::more(cqe.flags()));
    if !more {
        io.http_polls.ended();
    }
    if io.http_polls.current(key).is_none() {
        return;
    }
    if result > 0 {
        http.on_ready(io, key, Instant::now());
    }
    if more {
        return;
    }
    // Still watched after the shard's work: the poll ended for a passing
    // reason (a full completion ring) and is armed again.
    if let Some(fd) = io.http_polls.current(key) {
        if ended_for_a_passing_reason(result) {
            io.arm_http(Token::Http(key), fd);
        } else {
            tracing::warn!(
                "HTTP poll ended: {}; this socket is no longer served",
                io::Error::from_raw_os_error(-result)
            );
        }
    }
}

/// One completion of a multishot receive: a datagram for the shard (when
/// its watch is current), a buffer to give back, and a re-arm when the
/// kernel ended the receive.
fn on_receive(core: &mut ShardCore, io: &mut UringIo, bufs: &mut BufRing, cqe: &cqueue::Entry) {
    let token = Token::decode(cqe.user_data());
    let Token::Recv { key, .. } = token else {
        return;
    };
    let (result, flags) = (cqe.result(), cqe.flags());
    let filled = usize::try_from(result).unwrap_or(0);
    // The buffer is lent for the length of this `if` and given back to the
    // ring when `buf` drops, whether or not the datagram is delivered.
    if let Some(bid) = cqueue::buffer_select(flags)
        && let Some(buf) = bufs.take(bid, filled)
        && filled > 0
        && io.watches.current(token).is_some()
        && let Some((meta, payload)) = io.template.parse(buf.bytes())
    {
        core.on_datagram(io, key as usize, meta, payload, Instant::now());
    }
    if cqueue::more(flags) {
        return;
    }
    // The receive is over. Re-arm if it still belongs to a watched socket
    // and ended for a passing reason (ENOBUFS: every buffer was taken).
    let Some(fd) = io.watches.finished(token) else {
        return;
    };
    if ended_for_a_passing_reason(result) {
        io.arm(token, fd);
    } else {
        let err = io::Error::from_raw_os_error(-result);
        tracing::warn!(
            key,
            "receive ended: {err}; this endpoint no longer receives"
        );
    }
}

/// Whether a multishot receive that ended with `result` should simply be
/// armed again (ENOBUFS: every buffer was taken; or an interruption).
pub(crate) fn ended_for_a_passing_reason(result: i32) -> bool {
    result >= 0
        || matches!(
            -result,
            libc::ENOBUFS | libc::EINTR | libc::EAGAIN | libc::ENOMEM
        )
}

/// Ends every transfer, cancels every receive and waits (bounded) until
/// the kernel has finished with every send and receive.
fn shutdown(shard: &mut Parts<'_>, mut io: UringIo, mut bufs: BufRing) {
    shard.core.abort_all(&mut io, Instant::now());
    shard.http.close_all(&mut io);
    for key in io.watches.watched_keys() {
        io.unwatch(key, -1);
    }
    let deadline = Instant::now() + SHUTDOWN_WAIT;
    let mut batch = Vec::new();
    loop {
        if let Err(e) = io.submit() {
            tracing::warn!("io_uring submit failed: {e}");
        }
        io.reap();
        // Every watch is gone: this only gives buffers back and counts
        // the receives and polls that ended.
        deliver_received(shard, &mut io, &mut bufs, &mut batch);
        if io.quiescent() {
            return;
        }
        if Instant::now() >= deadline {
            tracing::warn!(
                sends = io.slots.in_flight(),
                receives = io.watches.outstanding(),
                http_polls = io.http_polls.outstanding(),
                "io_uring operations still in flight at shutdown; leaking their memory"
            );
            // The kernel may still read or write it: never free it.
            std::mem::forget(io);
            std::mem::forget(bufs);
            return;
        }
        if let Err(e) = io.wait(1, Duration::from_millis(10)) {
            tracing::warn!("io_uring wait failed: {e}");
        }
    }
}
