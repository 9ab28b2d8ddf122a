//! Batched datagram I/O for the proxy sockets: one `recvmmsg` fills up to
//! [`BATCH`] receive slots, one `sendmmsg` sends up to [`BATCH`] replies.
//! Every buffer is allocated once, when the batch is made; the policy
//! writes each reply straight into its send slot.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::RawFd;

use crate::dhcp::MAX_REPLY_LEN;
use crate::reactor::socket::{CONTROL_LEN, pktinfo_v4, write_pktinfo_v4};

/// Datagrams per system call.
pub const BATCH: usize = 64;
/// Receive room per datagram: a DHCP request fits an Ethernet frame; a
/// larger one is cut short and dropped as unreadable.
pub const RECV_LEN: usize = 1536;

/// Where a datagram arrived: interface and the local address the kernel
/// would answer from (`ipi_spec_dst`: the interface's own address even for
/// a broadcast).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Arrival {
    pub from: SocketAddrV4,
    pub ifindex: i32,
    pub local: Ipv4Addr,
}

impl Arrival {
    /// Reads the source and the packet info of a received datagram;
    /// `None` unless both are IPv4.
    pub fn from_control(from: std::net::SocketAddr, control: &[u8]) -> Option<Arrival> {
        let std::net::SocketAddr::V4(from) = from else {
            return None;
        };
        let (_, ifindex, local) = pktinfo_v4(control)?;
        Some(Arrival {
            from,
            ifindex: ifindex as i32,
            local,
        })
    }
}

fn sockaddr_v4(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

fn from_sockaddr_v4(addr: &libc::sockaddr_in) -> SocketAddrV4 {
    SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    )
}

/// Points `header` at one slot's address, buffer and control room. The
/// slots are boxed and never move, so this is done once per slot.
fn point(
    header: &mut libc::msghdr,
    name: &mut libc::sockaddr_in,
    iov: &mut libc::iovec,
    buf: &mut [u8],
    control: &mut [u8; CONTROL_LEN],
) {
    *iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    header.msg_name = (name as *mut libc::sockaddr_in).cast();
    header.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
    header.msg_iov = iov;
    header.msg_iovlen = 1;
    header.msg_control = control.as_mut_ptr().cast();
    header.msg_controllen = CONTROL_LEN;
}

/// Plain-data slot arrays; boxed so the batch is one allocation.
struct RecvSlots {
    bufs: [[u8; RECV_LEN]; BATCH],
    names: [libc::sockaddr_in; BATCH],
    controls: [[u8; CONTROL_LEN]; BATCH],
    iovs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
}

/// Receive slots for one `recvmmsg`.
pub struct RecvBatch {
    slots: Box<RecvSlots>,
    filled: usize,
}

impl Default for RecvBatch {
    fn default() -> RecvBatch {
        // SAFETY: every field is plain data (bytes, C structs, pointers)
        // for which all-zero is valid; `new_zeroed` avoids a large stack
        // temporary.
        let mut slots = unsafe { Box::<RecvSlots>::new_zeroed().assume_init() };
        let s = &mut *slots;
        for i in 0..BATCH {
            point(
                &mut s.headers[i].msg_hdr,
                &mut s.names[i],
                &mut s.iovs[i],
                &mut s.bufs[i],
                &mut s.controls[i],
            );
        }
        RecvBatch { slots, filled: 0 }
    }
}

impl RecvBatch {
    /// Receives what is queued on `fd`, up to [`BATCH`] datagrams, without
    /// waiting; returns how many.
    pub fn recv(&mut self, fd: RawFd) -> usize {
        let s = &mut *self.slots;
        // The kernel wrote the lengths of the last receive: room again.
        for h in &mut s.headers[..self.filled] {
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_controllen = CONTROL_LEN;
        }
        // SAFETY: every header points into `slots`, which outlives the
        // call; the kernel writes at most the lengths set above.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                s.headers.as_mut_ptr(),
                BATCH as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        self.filled = if n < 0 { 0 } else { n as usize };
        self.filled
    }

    /// Datagram `i` of the last receive: its payload and arrival, or
    /// `None` when it was cut short or lacks an IPv4 source or packet info.
    pub fn get(&self, i: usize) -> Option<(&[u8], Arrival)> {
        if i >= self.filled {
            return None;
        }
        let s = &*self.slots;
        let h = &s.headers[i];
        if h.msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0
            || i32::from(s.names[i].sin_family) != libc::AF_INET
        {
            return None;
        }
        let control = &s.controls[i][..h.msg_hdr.msg_controllen.min(CONTROL_LEN)];
        let arrival = Arrival::from_control(from_sockaddr_v4(&s.names[i]).into(), control)?;
        let len = (h.msg_len as usize).min(RECV_LEN);
        Some((&s.bufs[i][..len], arrival))
    }
}

struct SendSlots {
    bufs: [[u8; MAX_REPLY_LEN]; BATCH],
    names: [libc::sockaddr_in; BATCH],
    controls: [[u8; CONTROL_LEN]; BATCH],
    iovs: [libc::iovec; BATCH],
    headers: [libc::mmsghdr; BATCH],
}

/// Replies waiting for one `sendmmsg` from one socket.
pub struct SendBatch {
    slots: Box<SendSlots>,
    queued: usize,
}

impl Default for SendBatch {
    fn default() -> SendBatch {
        // SAFETY: as for `RecvBatch::new`.
        let mut slots = unsafe { Box::<SendSlots>::new_zeroed().assume_init() };
        let s = &mut *slots;
        for i in 0..BATCH {
            point(
                &mut s.headers[i].msg_hdr,
                &mut s.names[i],
                &mut s.iovs[i],
                &mut s.bufs[i],
                &mut s.controls[i],
            );
        }
        SendBatch { slots, queued: 0 }
    }
}

impl SendBatch {
    pub fn is_full(&self) -> bool {
        self.queued == BATCH
    }

    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Queues a reply to `to`, to leave by the interface `arrival` came in
    /// on, from the address it came to (IP_PKTINFO). Ignored when full:
    /// flush first when [`SendBatch::is_full`].
    pub fn push(&mut self, bytes: &[u8], to: SocketAddrV4, arrival: &Arrival) {
        if self.is_full() {
            return;
        }
        let i = self.queued;
        let s = &mut *self.slots;
        let len = bytes.len().min(MAX_REPLY_LEN);
        s.bufs[i][..len].copy_from_slice(&bytes[..len]);
        s.iovs[i].iov_len = len;
        s.names[i] = sockaddr_v4(to);
        s.headers[i].msg_hdr.msg_controllen =
            write_pktinfo_v4(&mut s.controls[i], arrival.ifindex, arrival.local);
        self.queued += 1;
    }

    /// Sends everything queued, from socket `fd`; returns how many replies
    /// the kernel refused (each logged once).
    pub fn flush(&mut self, fd: RawFd) -> u64 {
        let s = &mut *self.slots;
        let mut sent = 0;
        let mut refused = 0;
        while sent < self.queued {
            // SAFETY: headers[sent..queued] point into `slots`, which
            // outlives the synchronous call.
            let n = unsafe {
                libc::sendmmsg(
                    fd,
                    s.headers[sent..].as_mut_ptr(),
                    (self.queued - sent) as libc::c_uint,
                    libc::MSG_NOSIGNAL,
                )
            };
            if n > 0 {
                sent += n as usize;
                continue;
            }
            let err = io::Error::last_os_error();
            if err.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            // The first unsent reply failed: report it and go on with the
            // rest (a full socket buffer drops it, as a lossy LAN would).
            tracing::warn!(to = %from_sockaddr_v4(&s.names[sent]), "proxyDHCP reply not sent: {err}");
            refused += 1;
            sent += 1;
        }
        self.queued = 0;
        refused
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;
    use std::os::fd::AsRawFd;

    fn pktinfo_socket() -> UdpSocket {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        let on: libc::c_int = 1;
        // SAFETY: `on` outlives the call and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                s.as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_PKTINFO,
                (&on as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0);
        s
    }

    #[test]
    fn a_batch_round_trips_through_the_kernel() {
        let server = pktinfo_socket();
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = server.local_addr().unwrap();
        for i in 0..(BATCH + 5) {
            client.send_to(&[i as u8; 10], to).unwrap();
        }
        // One datagram too large for a slot.
        client.send_to(&vec![1u8; RECV_LEN + 1], to).unwrap();
        let mut batch = RecvBatch::default();
        assert_eq!(batch.recv(server.as_raw_fd()), BATCH);
        let (bytes, arrival) = batch.get(3).unwrap();
        assert_eq!(bytes, &[3u8; 10]);
        assert_eq!(arrival.local, Ipv4Addr::LOCALHOST);
        assert_eq!(
            std::net::SocketAddr::V4(arrival.from),
            client.local_addr().unwrap()
        );
        assert!(batch.get(BATCH).is_none());
        assert_eq!(batch.recv(server.as_raw_fd()), 6);
        assert!(batch.get(4).is_some());
        assert!(batch.get(5).is_none(), "cut short");
        assert_eq!(batch.recv(server.as_raw_fd()), 0);

        // Replies go back in order, each to its own address.
        let std::net::SocketAddr::V4(back) = client.local_addr().unwrap() else {
            unreachable!()
        };
        let mut out = SendBatch::default();
        for i in 0..3u8 {
            out.push(&[i, i], back, &arrival);
        }
        out.push(&[9, 9, 9], back, &arrival);
        assert_eq!(out.flush(server.as_raw_fd()), 0);
        assert!(out.is_empty());
        let mut buf = [0u8; 16];
        for want in [&[0u8, 0][..], &[1, 1], &[2, 2], &[9, 9, 9]] {
            let (n, from) = client.recv_from(&mut buf).unwrap();
            assert_eq!(&buf[..n], want);
            assert_eq!(from, to);
        }
    }
}
