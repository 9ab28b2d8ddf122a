//! The portable backend: epoll readiness, `recvmsg` until the socket is
//! empty, and `sendmsg` whose iovec points into the mapped file (the kernel
//! copies straight from the page cache): a window of packets in one UDP GSO
//! send where the kernel allows it, one packet per call otherwise. HTTP
//! listeners and connections sit in the same epoll set (edge-triggered for
//! connections). Used where io_uring is missing or forbidden (old kernels,
//! container seccomp).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::time::Instant;

use socket2::SockAddr;

use super::http::{GENERATION_LIMIT, HttpIo, HttpKey, HttpShard};
use super::shard::{Backend, MAX_SEGMENTS, Outgoing, ShardCore};
use super::socket::{
    CONTROL_LEN, RecvMeta, SEND_CONTROL_LEN, is_gso_unsupported, parse_control, recv_datagram,
    write_send_control,
};
use super::{MAX_WAIT, Shared};

/// Datagrams read from one socket per wake-up, so one busy client cannot
/// starve the others.
const RECV_BUDGET: usize = 64;
const RECV_BUF: usize = 65536;
/// Epoll data of HTTP sockets: this bit, then the listener bit or the
/// connection's generation (29 bits from bit 32) and key (low 32 bits);
/// TFTP endpoints use their plain key.
const HTTP_BIT: u64 = 1 << 63;
const HTTP_LISTENER_BIT: u64 = 1 << 62;

fn encode_http(key: HttpKey) -> u64 {
    match key {
        HttpKey::Listener(i) => HTTP_BIT | HTTP_LISTENER_BIT | i as u64,
        HttpKey::Conn { key, generation } => {
            HTTP_BIT | (u64::from(generation % GENERATION_LIMIT) << 32) | (key as u64 & 0xffff_ffff)
        }
    }
}

fn decode_http(data: u64) -> HttpKey {
    if data & HTTP_LISTENER_BIT != 0 {
        HttpKey::Listener((data & 0xffff_ffff) as usize)
    } else {
        HttpKey::Conn {
            key: (data & 0xffff_ffff) as usize,
            generation: ((data >> 32) % u64::from(GENERATION_LIMIT)) as u32,
        }
    }
}

struct EpollIo {
    epfd: OwnedFd,
    shard: usize,
    /// Socket of each endpoint key (slab keys are dense).
    fds: Vec<RawFd>,
    /// Whether UDP GSO works here (turned off at the first refusal).
    gso: bool,
}

impl Backend for EpollIo {
    fn watch(&mut self, key: usize, fd: RawFd) {
        if self.fds.len() <= key {
            self.fds.resize(key + 1, -1);
        }
        self.fds[key] = fd;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: key as u64,
        };
        // SAFETY: valid epoll fd and socket fd; `ev` is read during the call.
        unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) };
    }

    fn unwatch(&mut self, key: usize, fd: RawFd) {
        if let Some(slot) = self.fds.get_mut(key) {
            *slot = -1;
        }
        // SAFETY: as above; the event argument is ignored for DEL.
        unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }

    fn send(&mut self, packet: Outgoing<'_>) {
        if !packet.more.is_empty()
            && self.gso
            && let Err(errno) = send_gso(&packet)
            && is_gso_unsupported(errno)
        {
            tracing::info!(
                "UDP GSO unavailable here ({}); sending packet by packet",
                io::Error::from_raw_os_error(errno)
            );
            self.gso = false;
        }
        if packet.more.is_empty() || !self.gso {
            let first = packet.payload.map(|(_, bytes)| bytes);
            send_one(&packet, packet.head, first);
            for segment in packet.more {
                send_one(&packet, &segment.head, Some(segment.payload));
            }
        }
        if let Some((file, _)) = packet.payload {
            file.gate().end(self.shard);
        }
    }

    fn max_segments(&self) -> usize {
        if self.gso { MAX_SEGMENTS } else { 1 }
    }
}

impl HttpIo for EpollIo {
    fn watch_http(&mut self, key: HttpKey, fd: RawFd) {
        let events = match key {
            HttpKey::Listener(_) => libc::EPOLLIN,
            HttpKey::Conn { .. } => {
                libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET
            }
        };
        let mut ev = libc::epoll_event {
            events: events as u32,
            u64: encode_http(key),
        };
        // SAFETY: valid epoll fd and socket fd; `ev` is read during the call.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            tracing::warn!(
                "cannot watch an HTTP socket: {}",
                io::Error::last_os_error()
            );
        }
    }

    fn unwatch_http(&mut self, _key: HttpKey, fd: RawFd) {
        // SAFETY: as above; the event argument is ignored for DEL.
        unsafe {
            libc::epoll_ctl(
                self.epfd.as_raw_fd(),
                libc::EPOLL_CTL_DEL,
                fd,
                std::ptr::null_mut(),
            )
        };
    }
}

/// One datagram: `head` and `payload`.
fn send_one(packet: &Outgoing<'_>, head: &[u8], payload: Option<&[u8]>) {
    let mut iov = [libc::iovec {
        iov_base: head.as_ptr() as *mut _,
        iov_len: head.len(),
    }; 2];
    let iovcnt = match payload {
        Some(bytes) => {
            iov[1] = libc::iovec {
                iov_base: bytes.as_ptr() as *mut _,
                iov_len: bytes.len(),
            };
            2
        }
        None => 1,
    };
    // A full socket buffer (EAGAIN) is a lost packet: the transfer's
    // retransmission timer covers it like any other loss.
    let _ = sendmsg(packet, &mut iov[..iovcnt], None);
}

/// The whole window in one GSO sendmsg.
fn send_gso(packet: &Outgoing<'_>) -> Result<(), i32> {
    let mut iov = [libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }; 2 * MAX_SEGMENTS];
    let first = packet.payload.map_or(&[][..], |(_, bytes)| bytes);
    iov[0] = libc::iovec {
        iov_base: packet.head.as_ptr() as *mut _,
        iov_len: packet.head.len(),
    };
    iov[1] = libc::iovec {
        iov_base: first.as_ptr() as *mut _,
        iov_len: first.len(),
    };
    for (i, segment) in packet.more.iter().take(MAX_SEGMENTS - 1).enumerate() {
        iov[2 + 2 * i] = libc::iovec {
            iov_base: segment.head.as_ptr() as *mut _,
            iov_len: segment.head.len(),
        };
        iov[3 + 2 * i] = libc::iovec {
            iov_base: segment.payload.as_ptr() as *mut _,
            iov_len: segment.payload.len(),
        };
    }
    let count = 2 * (1 + packet.more.len().min(MAX_SEGMENTS - 1));
    let segment_size = (packet.head.len() + first.len()) as u16;
    match sendmsg(packet, &mut iov[..count], Some(segment_size)) {
        Ok(()) => Ok(()),
        Err(libc::EAGAIN) => Ok(()), // a lost window; the timer resends it
        Err(errno) => Err(errno),
    }
}

fn sendmsg(
    packet: &Outgoing<'_>,
    iov: &mut [libc::iovec],
    segment: Option<u16>,
) -> Result<(), i32> {
    let addr = SockAddr::from(packet.to);
    let mut control = [0u8; SEND_CONTROL_LEN];
    let control_len = write_send_control(&mut control, packet.source, segment);
    // SAFETY: msghdr is plain data; every pointer in it refers to locals
    // (or the mapped file, kept alive by the caller's Arc) that outlive
    // the synchronous sendmsg call.
    let rc = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr() as *mut _;
        msg.msg_namelen = addr.len();
        msg.msg_iov = iov.as_mut_ptr();
        msg.msg_iovlen = iov.len();
        if control_len > 0 {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = control_len;
        }
        libc::sendmsg(packet.fd, &msg, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL)
    };
    if rc < 0 {
        Err(io::Error::last_os_error().raw_os_error().unwrap_or(0))
    } else {
        Ok(())
    }
}

pub fn run(core: &mut ShardCore, http: &mut HttpShard, shared: &Shared) -> io::Result<()> {
    // SAFETY: epoll_create1 returns a new descriptor we own.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created, owned here.
    let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
    let mut io = EpollIo {
        epfd,
        shard: core.index(),
        fds: Vec::new(),
        gso: true,
    };
    core.start(&mut io);
    http.start(&mut io);
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut buf = vec![0u8; RECV_BUF];
    let mut control = [0u8; CONTROL_LEN];
    loop {
        if shared.stop.load(Ordering::Relaxed) {
            core.abort_all(&mut io, Instant::now());
            http.close_all(&mut io);
            return Ok(());
        }
        if shared.draining.load(Ordering::Relaxed) {
            if core.is_listening() {
                core.stop_listening(&mut io);
            }
            if http.is_listening() {
                http.stop_listening(&mut io);
            }
        }
        let now = Instant::now();
        let deadline = match (core.next_deadline(), http.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let wait = deadline.map_or(MAX_WAIT, |d| d.saturating_duration_since(now).min(MAX_WAIT));
        // Round up so a sub-millisecond deadline does not spin.
        let wait_ms = wait.as_micros().div_ceil(1000) as i32;
        // SAFETY: `events` has the capacity we pass.
        let n = unsafe {
            libc::epoll_wait(
                io.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                wait_ms,
            )
        };
        if n < 0 {
            let err = io::Error::last_os_error();
            if err.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(err);
        }
        for event in &events[..n as usize] {
            if event.u64 & HTTP_BIT != 0 {
                http.on_ready(&mut io, decode_http(event.u64), Instant::now());
                continue;
            }
            let key = event.u64 as usize;
            for _ in 0..RECV_BUDGET {
                let Some(&fd) = io.fds.get(key).filter(|&&fd| fd >= 0) else {
                    break;
                };
                let Some((len, meta)) = recv(fd, &mut buf, &mut control) else {
                    break;
                };
                core.on_datagram(&mut io, key, meta, &buf[..len], Instant::now());
            }
        }
        core.on_timers(&mut io, Instant::now());
        http.on_timers(&mut io, Instant::now());
    }
}

/// One non-blocking `recvmsg`; `None` when the socket is empty.
fn recv(fd: RawFd, buf: &mut [u8], control: &mut [u8; CONTROL_LEN]) -> Option<(usize, RecvMeta)> {
    let got = recv_datagram(fd, buf, control)?;
    let (local_ip, ifindex) = parse_control(&control[..got.control_len]);
    // An oversized datagram is handed on empty: parsing fails, it is dropped.
    let len = if got.truncated { 0 } else { got.len };
    Some((
        len,
        RecvMeta {
            from: got.from,
            local_ip,
            ifindex,
        },
    ))
}
