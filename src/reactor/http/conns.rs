//! One shard's HTTP connections: accepting (or refusing over the cap),
//! reading, answering through `http::Connection`, sending from the
//! mapping, timing out, and one log line per response.

use std::io;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use slab::Slab;

use super::io::{self as sock, SEND_CHUNK};
use super::{GENERATION_LIMIT, HttpIo, HttpKey, OPEN, SENDING};
use crate::files::{ResolveError, ServedFile};
use crate::http::response::{self, MAX_HEAD_LEN};
use crate::http::{Connection, Limits, Lookup, Method, Served, Status, Version};
use crate::metrics::{HttpMetrics, ShardMetrics};
use crate::reactor::Shared;
use crate::status::{BootEvent, FileOutcome, Name, Protocol, StatusSink};
use crossbeam_utils::CachePadded;

/// How often idle connections are checked against their deadlines.
const SWEEP: Duration = Duration::from_millis(100);
/// Longest path kept for the log line.
const LOG_PATH: usize = 256;
/// File bytes one connection may send per readiness event before the
/// shard turns to its other work (TFTP timers, other connections); it
/// goes on at the next turn. One chunk: with a thousand connections
/// starting at once, each gets its first megabyte before any gets its
/// second (with 4 MiB, half of them waited over a second for a first byte).
const DRIVE_BUDGET: u64 = SEND_CHUNK as u64;

/// One client connection and the response in progress.
struct Conn {
    stream: TcpStream,
    peer: SocketAddr,
    generation: u32,
    machine: Connection,
    /// The file the current response sends from.
    file: Option<Arc<ServedFile>>,
    /// The current response, for its log line.
    current: Option<Current>,
    /// In the shard's list of connections to go on with.
    queued: bool,
}

struct Current {
    served: Served,
    started: Instant,
    path: [u8; LOG_PATH],
    path_len: usize,
    /// Counted in [`SENDING`].
    sending: bool,
}

/// The HTTP side of one shard.
pub struct HttpShard {
    index: usize,
    shared: Arc<Shared>,
    listeners: Vec<TcpListener>,
    conns: Slab<Conn>,
    /// Connections that stopped at [`DRIVE_BUDGET`] with more to send.
    ready: Vec<usize>,
    /// The list being worked through (swapped with `ready`, so neither
    /// gives its memory back between turns).
    going_on: Vec<usize>,
    generation: u32,
    limits: Limits,
    next_sweep: Instant,
    /// This shard's metric cells (shared with its TFTP side, same thread).
    pub metrics: Arc<CachePadded<ShardMetrics>>,
    overloaded: [u8; MAX_HEAD_LEN + 64],
    overloaded_len: usize,
}

impl HttpShard {
    pub fn new(index: usize, shared: Arc<Shared>, listeners: Vec<TcpListener>) -> HttpShard {
        let mut overloaded = [0u8; MAX_HEAD_LEN + 64];
        let overloaded_len = response::overloaded(&mut overloaded);
        HttpShard {
            index,
            listeners,
            conns: Slab::new(),
            ready: Vec::new(),
            going_on: Vec::new(),
            generation: 0,
            limits: Limits::default(),
            next_sweep: Instant::now() + SWEEP,
            metrics: shared.metrics.shard(index),
            overloaded,
            overloaded_len,
            shared,
        }
    }

    /// Asks the backend to watch the listeners.
    pub fn start(&mut self, io: &mut impl HttpIo) {
        for (i, l) in self.listeners.iter().enumerate() {
            io.watch_http(HttpKey::Listener(i), l.as_raw_fd());
        }
    }

    pub fn is_listening(&self) -> bool {
        !self.listeners.is_empty()
    }

    /// Draining: no new connections; responses under way go on.
    pub fn stop_listening(&mut self, io: &mut impl HttpIo) {
        for (i, l) in self.listeners.drain(..).enumerate() {
            io.unwatch_http(HttpKey::Listener(i), l.as_raw_fd());
        }
    }

    /// When [`HttpShard::on_timers`] is due: now while connections wait
    /// to go on, at the next sweep while any is open.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            Some(Instant::now())
        } else if !self.conns.is_empty() {
            Some(self.next_sweep)
        } else {
            None
        }
    }

    /// A watched socket is ready.
    pub fn on_ready(&mut self, io: &mut impl HttpIo, key: HttpKey, now: Instant) {
        match key {
            HttpKey::Listener(i) => self.accept(io, i, now),
            HttpKey::Conn { key, generation } => {
                if self
                    .conns
                    .get(key)
                    .is_some_and(|c| c.generation == generation)
                {
                    self.drive(io, key, now);
                }
            }
        }
    }

    /// Goes on with the connections that stopped at their budget, and
    /// closes those whose deadline passed.
    pub fn on_timers(&mut self, io: &mut impl HttpIo, now: Instant) {
        std::mem::swap(&mut self.ready, &mut self.going_on);
        for i in 0..self.going_on.len() {
            let key = self.going_on[i];
            if let Some(conn) = self.conns.get_mut(key) {
                conn.queued = false;
                self.drive(io, key, now);
            }
        }
        self.going_on.clear();
        if now >= self.next_sweep {
            self.sweep(io, now);
            self.next_sweep = now + SWEEP;
        }
    }

    /// Closes every connection (the server stops).
    pub fn close_all(&mut self, io: &mut impl HttpIo) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            self.close(io, key, true);
        }
        self.stop_listening(io);
    }

    fn accept(&mut self, io: &mut impl HttpIo, listener: usize, now: Instant) {
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
            let _ = stream.set_nonblocking(true);
            if OPEN.load(Ordering::Relaxed) >= self.shared.settings.max_http_connections {
                // Over the cap: a 503 with Retry-After (iPXE waits and
                // retries) into the fresh socket's buffer, then close.
                let _ = sock::sendmsg(
                    stream.as_raw_fd(),
                    &[&self.overloaded[..self.overloaded_len]],
                );
                self.metrics.http.refused.inc();
                continue;
            }
            let _ = stream.set_nodelay(true);
            let fd = stream.as_raw_fd();
            self.generation = (self.generation + 1) % GENERATION_LIMIT;
            let generation = self.generation;
            let key = self.conns.insert(Conn {
                stream,
                peer,
                generation,
                machine: Connection::new(now, self.limits),
                file: None,
                current: None,
                queued: false,
            });
            io.watch_http(HttpKey::Conn { key, generation }, fd);
            OPEN.fetch_add(1, Ordering::Relaxed);
            self.metrics.http.connections.inc();
            self.metrics.http.open.up();
            self.drive(io, key, now);
        }
    }

    /// Reads, answers and sends until the socket would block either way
    /// (or the budget is spent: then the connection goes on next turn).
    fn drive(&mut self, io: &mut impl HttpIo, key: usize, now: Instant) {
        let index = self.index;
        let shared = &self.shared;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let mut aborted = false;
        let mut budget = DRIVE_BUDGET;
        loop {
            let mut progressed = false;
            if conn.machine.wants_read() {
                match sock::recv(conn.stream.as_raw_fd(), conn.machine.read_buf()) {
                    Ok(n) => {
                        conn.machine.received(n, now);
                        progressed = true;
                    }
                    Err(e)
                        if e.kind() == io::ErrorKind::WouldBlock
                            || e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
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
                    lookup(shared, p, conn.peer.ip(), &mut found)
                });
                if let Some(served) = served {
                    let sending = served.body.is_some_and(|(_, len)| len > 0);
                    conn.file = found.filter(|_| sending);
                    if sending {
                        SENDING.fetch_add(1, Ordering::Relaxed);
                    }
                    conn.current = Some(Current {
                        served,
                        started: now,
                        path,
                        path_len,
                        sending,
                    });
                    progressed = true;
                }
            }
            if let Some(t) = conn.machine.transmit() {
                let body = match (t.body, &conn.file) {
                    (Some((offset, left)), Some(file)) => Some((&**file, offset, left)),
                    _ => None,
                };
                let result = if t.body.is_some() && body.is_none() {
                    Err(io::Error::other("a body without its file"))
                } else {
                    sock::send(conn.stream.as_raw_fd(), t.head, body, index)
                };
                match result {
                    Ok(n) => {
                        let file_bytes = (n - t.head.len().min(n)) as u64;
                        self.metrics.http.sent_bytes.add(file_bytes);
                        budget = budget.saturating_sub(file_bytes);
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
                        finish(
                            &self.metrics.http,
                            &self.shared.status,
                            conn.peer,
                            &cur,
                            now,
                            false,
                        );
                    }
                    conn.file = None;
                }
            }
            if conn.machine.is_closed() || !progressed {
                break;
            }
            if budget == 0 {
                if !conn.queued {
                    conn.queued = true;
                    self.ready.push(key);
                }
                break;
            }
        }
        if conn.machine.is_closed() {
            self.close(io, key, aborted);
        }
    }

    /// Closes connections whose deadline passed.
    fn sweep(&mut self, io: &mut impl HttpIo, now: Instant) {
        let due: Vec<usize> = self
            .conns
            .iter_mut()
            .filter_map(|(key, c)| {
                c.machine.on_timeout(now);
                c.machine.is_closed().then_some(key)
            })
            .collect();
        for key in due {
            self.close(io, key, true);
        }
    }

    fn close(&mut self, io: &mut impl HttpIo, key: usize, aborted: bool) {
        let Some(conn) = self.conns.try_remove(key) else {
            return;
        };
        io.unwatch_http(
            HttpKey::Conn {
                key,
                generation: conn.generation,
            },
            conn.stream.as_raw_fd(),
        );
        if let Some(cur) = &conn.current {
            finish(
                &self.metrics.http,
                &self.shared.status,
                conn.peer,
                cur,
                Instant::now(),
                aborted,
            );
        }
        OPEN.fetch_sub(1, Ordering::Relaxed);
        self.metrics.http.open.down();
        // Dropping the stream closes it.
    }
}

/// Counts and logs one response.
fn finish(
    metrics: &HttpMetrics,
    status: &StatusSink,
    peer: SocketAddr,
    cur: &Current,
    now: Instant,
    aborted: bool,
) {
    let s = &cur.served;
    if cur.sending {
        SENDING.fetch_sub(1, Ordering::Relaxed);
    }
    metrics.response(s.status.code());
    if aborted {
        metrics.aborted.inc();
    }
    let elapsed = now.duration_since(cur.started);
    let secs = elapsed.as_secs_f64();
    let (start, len) = s.body.unwrap_or((0, 0));
    let path = &cur.path[..cur.path_len];
    if status.is_on() {
        status.post(BootEvent::File {
            ip: peer.ip(),
            protocol: Protocol::Http,
            name: Name::new(path),
            outcome: file_outcome(s.status.code(), s.method, aborted),
            bytes: len,
            elapsed,
        });
    }
    let path = String::from_utf8_lossy(path);
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
fn lookup(
    shared: &Shared,
    path: &[u8],
    client: IpAddr,
    found: &mut Option<Arc<ServedFile>>,
) -> Lookup {
    if path == b"metrics"
        && let Some(page) = shared.metrics_page.get()
    {
        let file = shared
            .cache
            .in_memory("metrics", page.render_text().into_bytes());
        let (ino, len, mtime_ns, modified) = file.version_stamp();
        *found = Some(file);
        return Lookup::Found {
            version: Version::new(ino, len, mtime_ns, modified),
            content_type: crate::metrics::endpoint::TEXT,
        };
    }
    match shared.cache.open_for(path, client) {
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

/// A response as the boot-status table sees it.
fn file_outcome(code: u16, method: Option<Method>, aborted: bool) -> FileOutcome {
    match code {
        _ if aborted => FileOutcome::Failed("cut short"),
        200..=299 if method == Some(Method::Head) => FileOutcome::Probe,
        200..=399 => FileOutcome::Complete,
        404 => FileOutcome::Refused("not found (HTTP 404)"),
        403 => FileOutcome::Refused("forbidden (HTTP 403)"),
        416 => FileOutcome::Refused("range not satisfiable (HTTP 416)"),
        503 => FileOutcome::Refused("server busy (HTTP 503)"),
        400..=499 => FileOutcome::Refused("bad request (HTTP 4xx)"),
        _ => FileOutcome::Refused("server error (HTTP 5xx)"),
    }
}
