//! HTTP inside the shards: each shard has its own TCP listener on every
//! HTTP address (SO_REUSEPORT: the kernel spreads connections over the
//! shards) and owns the connections it accepts, beside its TFTP
//! transfers, on the same thread and the same ring or epoll set. The
//! protocol is `http::Connection` (sans-IO); the shard's backend only
//! says when a socket is ready (a multishot poll in the io_uring ring, or
//! the epoll set) and [`HttpShard`] moves the bytes: it reads into the
//! connection's buffer, opens files through the shared cache (the same
//! root, resolution and leases as TFTP) and sends the body with `send`
//! straight from the file's mapping, so the kernel copies from the page
//! cache into the socket and no user-space copy is made (measured against
//! `sendfile`, io_uring `Send` and `Splice` in tools/http-floor.rs).
//!
//! A file rewritten in place while a response is going out ends that
//! response early by closing the connection: the client sees fewer bytes
//! than Content-Length said, never a mix of two versions (the bytes in the
//! socket were copied while the file's lease gate was held).

mod conns;
mod io;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::RawFd;
use std::sync::atomic::AtomicUsize;

use socket2::{Domain, Protocol, Socket, Type};

use super::socket::bind_error;

pub use conns::HttpShard;

/// The open connections of every shard, against `--max-http-connections`.
pub static OPEN: AtomicUsize = AtomicUsize::new(0);
/// Responses with a body still going out, in every shard (shutdown lets
/// them finish within the drain time, as it does TFTP transfers).
pub static SENDING: AtomicUsize = AtomicUsize::new(0);

/// Binds one shard's listener on `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
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

/// Connection generations wrap below this (29 bits), so every backend can
/// carry one beside the key in its 64-bit event data.
pub const GENERATION_LIMIT: u32 = 1 << 29;

/// Which HTTP socket a readiness event is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKey {
    /// The shard's listener number `index`.
    Listener(usize),
    /// Connection `key` of the shard's table; `generation` tells a late
    /// event for a closed connection from one for the next on that key.
    Conn { key: usize, generation: u32 },
}

/// What a shard backend does for HTTP: report readiness of the sockets it
/// is asked to watch (read, write or hang-up, edge-triggered: after an
/// event the shard works until the socket would block, or says so).
pub trait HttpIo {
    fn watch_http(&mut self, key: HttpKey, fd: RawFd);
    /// Called before the socket is closed.
    fn unwatch_http(&mut self, key: HttpKey, fd: RawFd);
}

/// What one shard's HTTP side did, summed at shutdown.
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
