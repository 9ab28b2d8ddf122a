//! The event loop: one thread drives every simulated client. Each running
//! transfer has its own non-blocking UDP socket (a fresh TID, as PXE
//! firmware uses), registered with epoll under its client's index; a heap
//! of deadlines drives the clients' retry timers. The loop owns the only
//! clock and hands `now` to the sans-IO clients.
//!
//! Sockets of abandoned transfers stay open (but unwatched) until the run
//! ends, so their ports are not reused by a later client that would then
//! receive the abandoned transfer's retransmissions.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::{self, Write as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::client::{Ask, MAX_DATAGRAM, Outcome, Retry, Role, SEND_BUF, Transfer};
use crate::report::Recorder;
use crate::scenario::Plan;

/// The longest the loop sleeps, so it notices starts and the time limit.
const MAX_WAIT: Duration = Duration::from_millis(100);
/// Datagrams read from one socket per wake-up, for fairness.
const RECV_BUDGET: usize = 64;
const PROGRESS_EVERY: Duration = Duration::from_millis(500);
/// The kernel's usual default receive buffer; raised for large windows.
const DEFAULT_RCVBUF: usize = 212_992;
const MAX_RCVBUF: usize = 8 << 20;

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
    let sims = plans
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
        })
        .collect();
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
    };
    engine.run()
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
}

impl Engine<'_> {
    fn run(&mut self) -> io::Result<()> {
        let limit = self.start + self.settings.limit;
        let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 1024];
        let mut buf = vec![0u8; MAX_DATAGRAM];
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
                self.on_readable(event.u64 as usize, now, &mut buf);
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
            self.begin_step(i, now);
        }
    }

    /// Opens a fresh socket for the client's current step and sends the RRQ.
    fn begin_step(&mut self, i: usize, now: Instant) {
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
        let Some(deadline) = sim.transfer.as_ref().and_then(Transfer::deadline) else {
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
        match sim.plan.next_step(sim.step, found) {
            Some(next) => {
                sim.step = next;
                self.begin_step(i, now);
            }
            None => {
                self.rec
                    .pass(now.saturating_duration_since(sim.pass_started));
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

    fn end_client(&mut self, i: usize, ok: bool) {
        let sim = &mut self.sims[i];
        sim.transfer = None;
        sim.socket = None;
        sim.scheduled = None;
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
                    let file = sim.transfer.as_ref().map_or("", |t| t.file()).to_string();
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

/// An epoll instance, level-triggered, for readability only.
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
        let mut event = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key,
        };
        // SAFETY: both descriptors are open; the kernel reads `event` during
        // the call only.
        if unsafe { libc::epoll_ctl(self.0.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut event) } < 0 {
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
