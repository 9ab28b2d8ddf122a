//! The HTTP shards: one thread per shard, each with its own TCP listener
//! on every HTTP address (SO_REUSEPORT: the kernel spreads connections),
//! its own connections and an edge-triggered epoll loop. The protocol is
//! `http::Connection`; this loop only moves bytes: it reads into the
//! connection's buffer, opens files through the shared cache (the same
//! root, resolution and leases as TFTP) and sends the body with `send`
//! straight from the file's mapping, so the kernel copies from the page
//! cache into the socket and no user-space copy is made.
//!
//! A file rewritten in place while a response is going out ends that
//! response early by closing the connection: the client sees fewer bytes
//! than Content-Length said, never a mix of two versions.

use std::io;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use slab::Slab;
use socket2::{Domain, Protocol, Socket, Type};

use super::socket::bind_error;
use super::{MAX_WAIT, Shared};
use crate::files::{ResolveError, ServedFile};
use crate::http::response::{self, MAX_HEAD_LEN};
use crate::http::{Connection, Limits, Lookup, Method, Served, Status, Version};

/// Most bytes handed to one `send` (keeps one fast client from holding
/// the shard while others wait).
const SEND_CHUNK: usize = 1 << 20;
/// How often idle connections are checked against their deadlines.
const SWEEP: Duration = Duration::from_millis(100);
/// Listener keys in the epoll data; connections use their slab key.
const LISTENER_BASE: u64 = 1 << 40;
/// Longest path kept for the log line.
const LOG_PATH: usize = 256;

/// Binds one shard's listener on `addr`.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking().cloexec(),
        Some(Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
    socket.listen(4096)?;
    Ok(socket.into())
}

/// What one HTTP shard did, summed at shutdown.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HttpStats {
    pub connections: u64,
    pub responses: u64,
    pub ok: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Body bytes sent.
    pub bytes: u64,
    /// Responses cut short (file changed, client gone, stalled).
    pub aborted: u64,
    /// Connections refused with 503 (over the cap).
    pub refused: u64,
}

impl std::ops::AddAssign for HttpStats {
    fn add_assign(&mut self, o: HttpStats) {
        self.connections += o.connections;
        self.responses += o.responses;
        self.ok += o.ok;
        self.client_errors += o.client_errors;
        self.server_errors += o.server_errors;
        self.bytes += o.bytes;
        self.aborted += o.aborted;
        self.refused += o.refused;
    }
}

/// One client connection and the response in progress.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    machine: Connection,
    /// The file the current response sends from.
    file: Option<Arc<ServedFile>>,
    /// The current response, for its log line.
    current: Option<Current>,
}

struct Current {
    served: Served,
    started: Instant,
    path: [u8; LOG_PATH],
    path_len: usize,
}

/// The open connections of every HTTP shard, against the cap.
pub static OPEN: AtomicUsize = AtomicUsize::new(0);

struct HttpShard {
    index: usize,
    shared: Arc<Shared>,
    epfd: OwnedFd,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    limits: Limits,
    stats: HttpStats,
    overloaded: [u8; MAX_HEAD_LEN + 64],
    overloaded_len: usize,
}

/// Serves HTTP on `listeners` until the server stops.
pub fn run(
    index: usize,
    listeners: Vec<TcpListener>,
    shared: Arc<Shared>,
) -> io::Result<HttpStats> {
    // SAFETY: plain epoll_create1; the result is checked and owned.
    let epfd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    if epfd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nobody else owns.
    let epfd = unsafe { OwnedFd::from_raw_fd(epfd) };
    let mut overloaded = [0u8; MAX_HEAD_LEN + 64];
    let overloaded_len = response::overloaded(&mut overloaded);
    let mut shard = HttpShard {
        index,
        shared,
        epfd,
        listeners,
        conns: Slab::new(),
        limits: Limits::default(),
        stats: HttpStats::default(),
        overloaded,
        overloaded_len,
    };
    for (i, l) in shard.listeners.iter().enumerate() {
        epoll_add(
            shard.epfd.as_raw_fd(),
            l.as_raw_fd(),
            LISTENER_BASE + i as u64,
            libc::EPOLLIN as u32,
        )?;
    }
    let mut events = vec![libc::epoll_event { events: 0, u64: 0 }; 256];
    let mut next_sweep = Instant::now() + SWEEP;
    while !shard.shared.stop.load(Ordering::Relaxed) {
        let draining = shard.shared.draining.load(Ordering::Relaxed);
        if draining && !shard.listeners.is_empty() {
            // Stop taking connections; running responses finish.
            shard.listeners.clear();
        }
        if draining && shard.conns.is_empty() {
            break;
        }
        let wait = next_sweep
            .saturating_duration_since(Instant::now())
            .min(MAX_WAIT);
        // SAFETY: `events` has room for its length; epfd is valid.
        let n = unsafe {
            libc::epoll_wait(
                shard.epfd.as_raw_fd(),
                events.as_mut_ptr(),
                events.len() as i32,
                wait.as_millis() as i32,
            )
        };
        let now = Instant::now();
        for ev in events.iter().take(n.max(0) as usize) {
            let key = ev.u64;
            if key >= LISTENER_BASE {
                shard.accept((key - LISTENER_BASE) as usize, now);
            } else {
                shard.drive(key as usize, now);
            }
        }
        if now >= next_sweep {
            shard.sweep(now);
            next_sweep = now + SWEEP;
        }
    }
    for key in shard.conns.iter().map(|(k, _)| k).collect::<Vec<_>>() {
        shard.close(key, true);
    }
    Ok(shard.stats)
}

fn epoll_add(epfd: RawFd, fd: RawFd, key: u64, events: u32) -> io::Result<()> {
    let mut ev = libc::epoll_event { events, u64: key };
    // SAFETY: valid descriptors; `ev` is read during the call.
    if unsafe { libc::epoll_ctl(epfd, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

impl HttpShard {
    fn accept(&mut self, listener: usize, now: Instant) {
        loop {
            let Some(l) = self.listeners.get(listener) else {
                return;
            };
            let (stream, peer) = match l.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // EMFILE and friends: the connection waits in the
                    // backlog; try again at the next wake-up.
                    tracing::warn!("HTTP accept failed: {e}");
                    return;
                }
            };
            if OPEN.load(Ordering::Relaxed) >= self.shared.settings.max_http_connections {
                // Over the cap: a 503 with Retry-After (iPXE waits and
                // retries) into the fresh socket's buffer, then close.
                let _ = stream.set_nonblocking(true);
                let _ = send(
                    stream.as_raw_fd(),
                    &self.overloaded[..self.overloaded_len],
                    0,
                );
                self.stats.refused += 1;
                continue;
            }
            let _ = stream.set_nonblocking(true);
            let _ = stream.set_nodelay(true);
            let fd = stream.as_raw_fd();
            let entry = self.conns.vacant_entry();
            let key = entry.key();
            let events = (libc::EPOLLIN | libc::EPOLLOUT | libc::EPOLLRDHUP | libc::EPOLLET) as u32;
            if epoll_add(self.epfd.as_raw_fd(), fd, key as u64, events).is_err() {
                continue;
            }
            entry.insert(Conn {
                stream,
                peer,
                machine: Connection::new(now, self.limits),
                file: None,
                current: None,
            });
            OPEN.fetch_add(1, Ordering::Relaxed);
            self.stats.connections += 1;
            self.drive(key, now);
        }
    }

    /// Reads, answers and sends until the socket would block either way.
    fn drive(&mut self, key: usize, now: Instant) {
        let index = self.index;
        let shared = &self.shared;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut aborted = false;
        loop {
            let mut progressed = false;
            if conn.machine.wants_read() {
                let fd = conn.stream.as_raw_fd();
                let buf = conn.machine.read_buf();
                // SAFETY: `buf` is valid for its length during the call.
                let n = unsafe {
                    libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
                };
                if n >= 0 {
                    conn.machine.received(n as usize, now);
                    progressed = true;
                } else {
                    let e = io::Error::last_os_error();
                    if e.kind() != io::ErrorKind::WouldBlock
                        && e.kind() != io::ErrorKind::Interrupted
                    {
                        conn.machine.abort();
                        aborted = true;
                    }
                }
            }
            if conn.current.is_none() {
                let mut found: Option<Arc<ServedFile>> = None;
                let mut path = [0u8; LOG_PATH];
                let mut path_len = 0;
                let served = conn.machine.poll_request(now, |p| {
                    path_len = p.len().min(LOG_PATH);
                    path[..path_len].copy_from_slice(&p[..path_len]);
                    lookup(shared, p, &mut found)
                });
                if let Some(served) = served {
                    conn.file = found.filter(|_| served.body.is_some_and(|(_, len)| len > 0));
                    conn.current = Some(Current {
                        served,
                        started: now,
                        path,
                        path_len,
                    });
                    progressed = true;
                }
            }
            if let Some(t) = conn.machine.transmit() {
                let fd = conn.stream.as_raw_fd();
                let result = if !t.head.is_empty() {
                    let more = if t.body.is_some() { libc::MSG_MORE } else { 0 };
                    send(fd, t.head, more)
                } else if let (Some((offset, left)), Some(file)) = (t.body, &conn.file) {
                    send_body(fd, file, offset, left, index)
                } else {
                    Err(io::Error::other("a body without its file"))
                };
                match result {
                    Ok(n) => {
                        let head = t.head.len().min(n);
                        self.stats.bytes += (n - head) as u64;
                        conn.machine.sent(n, now);
                        progressed = n > 0;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        conn.machine.abort();
                        aborted = true;
                    }
                }
                if conn.machine.transmit().is_none() && !aborted {
                    // The response is complete.
                    if let Some(cur) = conn.current.take() {
                        finish(&mut self.stats, conn.peer, &cur, now, false);
                    }
                    conn.file = None;
                }
            }
            if conn.machine.is_closed() || !progressed {
                break;
            }
        }
        if conn.machine.is_closed() {
            self.close(key, aborted);
        }
    }

    /// Closes connections whose deadline passed.
    fn sweep(&mut self, now: Instant) {
        let due: Vec<usize> = self
            .conns
            .iter_mut()
            .filter_map(|(key, c)| {
                c.machine.on_timeout(now);
                c.machine.is_closed().then_some(key)
            })
            .collect();
        for key in due {
            self.close(key, true);
        }
    }

    fn close(&mut self, key: usize, aborted: bool) {
        if !self.conns.contains(key) {
            return;
        }
        let conn = self.conns.remove(key);
        if let Some(cur) = &conn.current {
            finish(&mut self.stats, conn.peer, cur, Instant::now(), aborted);
        }
        OPEN.fetch_sub(1, Ordering::Relaxed);
        // Dropping the stream closes it (epoll forgets it with the fd).
    }
}

/// Counts and logs one response.
fn finish(stats: &mut HttpStats, peer: SocketAddr, cur: &Current, now: Instant, aborted: bool) {
    let s = &cur.served;
    stats.responses += 1;
    match s.status.code() {
        200..=399 => stats.ok += 1,
        400..=499 => stats.client_errors += 1,
        _ => stats.server_errors += 1,
    }
    if aborted {
        stats.aborted += 1;
    }
    let secs = now.duration_since(cur.started).as_secs_f64();
    let (start, len) = s.body.unwrap_or((0, 0));
    let path = String::from_utf8_lossy(&cur.path[..cur.path_len]);
    let method = match s.method {
        Some(Method::Get) => "GET",
        Some(Method::Head) => "HEAD",
        None => "-",
    };
    let mib_s = if secs > 0.0 {
        len as f64 / secs / (1 << 20) as f64
    } else {
        0.0
    };
    tracing::info!(
        client = %peer,
        method,
        path = %path,
        status = s.status.code(),
        range = %format_args!("{start}-{}", (start + len).saturating_sub(1)),
        bytes = len,
        ms = (secs * 1000.0) as u64,
        mib_s = %format_args!("{mib_s:.1}"),
        outcome = if aborted { "cut short" } else { "complete" },
        "http"
    );
}

/// Opens `path` through the cache for the connection machine.
fn lookup(shared: &Shared, path: &[u8], found: &mut Option<Arc<ServedFile>>) -> Lookup {
    match shared.cache.open(path) {
        Ok(file) => {
            let (ino, len, mtime_ns, modified) = file.version_stamp();
            let version = Version::new(ino, len, mtime_ns, modified);
            let content_type = response::content_type(path);
            *found = Some(file);
            Lookup::Found {
                version,
                content_type,
            }
        }
        Err(ResolveError::NotFound) | Err(ResolveError::TooLargeForNetascii) => {
            Lookup::Missing(Status::NotFound)
        }
        Err(ResolveError::Refused) => Lookup::Missing(Status::Forbidden),
        Err(ResolveError::Busy) | Err(ResolveError::Overloaded) => {
            Lookup::Missing(Status::ServiceUnavailable)
        }
    }
}

fn send(fd: RawFd, bytes: &[u8], flags: libc::c_int) -> io::Result<usize> {
    // SAFETY: `bytes` is valid for its length during the call.
    let n = unsafe {
        libc::send(
            fd,
            bytes.as_ptr().cast(),
            bytes.len(),
            flags | libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

/// Sends up to [`SEND_CHUNK`] bytes of the file from its mapping, inside
/// the lease's send gate; an error when the file is being rewritten (the
/// response must end short) or changed before its last bytes.
fn send_body(
    fd: RawFd,
    file: &ServedFile,
    offset: u64,
    left: u64,
    shard: usize,
) -> io::Result<usize> {
    let len = (left.min(SEND_CHUNK as u64)) as usize;
    if left == len as u64 && !file.unchanged() {
        return Err(io::Error::other("the file changed while it was served"));
    }
    if !file.gate().begin(shard) {
        return Err(io::Error::other("the file is being rewritten"));
    }
    let result = send(fd, file.slice(offset, len), 0);
    file.gate().end(shard);
    result
}
