//! The rtnetlink socket that keeps the interface table current: one dump
//! of every link and IPv4 address at start, then the kernel's change
//! notifications (links, IPv4 addresses), read by a small watcher thread
//! that publishes each changed table. Readers never wait on it.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::net::{InterfaceTable, Interfaces};
use crate::wire::netlink::{self, DUMP_REQUEST_LEN, Event, kind};

/// Large enough for any message the kernel sends to a route socket (it
/// sizes dump batches by the page, up to 32 KiB).
const RECV_LEN: usize = 64 << 10;

/// A `NETLINK_ROUTE` socket subscribed to link and IPv4 address changes.
pub struct RouteSocket {
    fd: OwnedFd,
    buf: Vec<u8>,
    seq: u32,
}

impl RouteSocket {
    pub fn open() -> io::Result<RouteSocket> {
        // SAFETY: plain socket(2); the result is checked and owned at once.
        let fd = unsafe {
            libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_RAW | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
                libc::NETLINK_ROUTE,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` is a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid.
        let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
        addr.nl_groups = netlink::RTMGRP_LINK | netlink::RTMGRP_IPV4_IFADDR;
        // SAFETY: `addr` outlives the call and its size is passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&addr as *const libc::sockaddr_nl).cast(),
                size_of::<libc::sockaddr_nl>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(RouteSocket {
            fd,
            buf: vec![0; RECV_LEN],
            seq: 0,
        })
    }

    /// Reads every link, then every IPv4 address, into a fresh table.
    /// Change notifications that arrive meanwhile are applied as well.
    pub fn dump(&mut self) -> io::Result<InterfaceTable> {
        let mut table = InterfaceTable::new();
        for request in [kind::GETLINK, kind::GETADDR] {
            self.seq = self.seq.wrapping_add(1);
            let mut message = [0u8; DUMP_REQUEST_LEN];
            netlink::dump_request(request, self.seq, &mut message);
            // SAFETY: `message` outlives the call; its length is passed.
            let rc = unsafe {
                libc::send(
                    self.fd.as_raw_fd(),
                    message.as_ptr().cast(),
                    message.len(),
                    0,
                )
            };
            if rc < 0 {
                return Err(io::Error::last_os_error());
            }
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
            'dump: loop {
                if std::time::Instant::now() > deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "the kernel did not finish its interface dump within 5 s",
                    ));
                }
                self.wait_readable(100)?;
                while let Some(len) = self.recv()? {
                    for event in netlink::messages(&self.buf[..len]) {
                        let event = event.map_err(io::Error::other)?;
                        if event == Event::Done {
                            break 'dump;
                        }
                        table.apply(&event);
                    }
                }
            }
        }
        Ok(table)
    }

    /// Applies every queued notification to `table`; says whether it
    /// changed. A lost notification (the socket overflowed) reads the
    /// whole table again.
    pub fn drain(&mut self, table: &mut InterfaceTable) -> io::Result<bool> {
        let mut changed = false;
        loop {
            match self.recv() {
                Ok(Some(len)) => {
                    for event in netlink::messages(&self.buf[..len]) {
                        match event {
                            Ok(event) => changed |= table.apply(&event),
                            Err(e) => tracing::debug!("netlink: {e}"),
                        }
                    }
                }
                Ok(None) => return Ok(changed),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => {
                    tracing::warn!("interface notifications overflowed; reading the table again");
                    *table = self.dump()?;
                    return Ok(true);
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn recv(&mut self) -> io::Result<Option<usize>> {
        // SAFETY: the buffer outlives the call and its length is passed.
        let n = unsafe {
            libc::recv(
                self.fd.as_raw_fd(),
                self.buf.as_mut_ptr().cast(),
                self.buf.len(),
                libc::MSG_DONTWAIT,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
                _ => Err(e),
            };
        }
        Ok(Some(n as usize))
    }

    fn wait_readable(&self, timeout_ms: i32) -> io::Result<bool> {
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let n = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                return Ok(false);
            }
            return Err(e);
        }
        Ok(n > 0)
    }
}

/// Reads the table once; returns it shared, and the socket to watch for
/// changes (`None`, with one warning, where netlink is refused: the table
/// then stays as read, or empty).
pub fn start() -> (Arc<Interfaces>, Option<RouteSocket>) {
    match RouteSocket::open().and_then(|mut s| s.dump().map(|t| (s, t))) {
        Ok((socket, table)) => (Arc::new(Interfaces::new(table)), Some(socket)),
        Err(e) => {
            tracing::warn!(
                "cannot read the interface table over netlink ({e}): no MTU clamp, and \
                 dhcp-range entries without a mask match nothing"
            );
            (Arc::new(Interfaces::new(InterfaceTable::new())), None)
        }
    }
}

/// Publishes every change until `stop` is set.
pub fn watch(mut socket: RouteSocket, interfaces: &Interfaces, stop: &AtomicBool) {
    let mut table = (*interfaces.snapshot()).clone();
    while !stop.load(Ordering::Relaxed) {
        match socket.wait_readable(super::MAX_WAIT.as_millis() as i32) {
            Ok(false) => continue,
            Ok(true) => {}
            Err(e) => {
                tracing::warn!("interface watcher stopped: {e}");
                return;
            }
        }
        match socket.drain(&mut table) {
            Ok(true) => {
                tracing::debug!(
                    interfaces = table.interfaces().len(),
                    "interface table changed"
                );
                interfaces.publish(table.clone());
            }
            Ok(false) => {}
            Err(e) => {
                tracing::warn!("interface watcher stopped: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dump_holds_loopback_with_its_address_and_mtu() {
        let mut socket = RouteSocket::open().unwrap();
        let table = socket.dump().unwrap();
        // SAFETY: the name is a valid C string.
        let lo = unsafe { libc::if_nametoindex(c"lo".as_ptr()) };
        let entry = table.get(lo).expect("lo in the table");
        assert_eq!(entry.name.as_bytes(), b"lo");
        assert!(entry.mtu >= 1500);
        assert!(entry.addrs.contains(&(std::net::Ipv4Addr::LOCALHOST, 8)));
    }
}
