//! Socket set-up shared by both I/O backends: listen sockets (one per
//! shard, SO_REUSEPORT), transfer sockets (ephemeral or from a port range),
//! and packet-info control messages.

use std::io;
use std::mem::size_of;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

/// Where a datagram came from and where it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvMeta {
    pub from: SocketAddr,
    /// The destination address of the datagram (from IP_PKTINFO).
    pub local_ip: Option<IpAddr>,
    /// The receiving interface, 0 when unknown.
    pub ifindex: u32,
}

/// Room for one IPv4 or IPv6 packet-info control message.
pub const CONTROL_LEN: usize = 64;
const _: () = assert!(CONTROL_LEN >= cmsg_space(size_of::<libc::in6_pktinfo>()));

const fn cmsg_align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}
const fn cmsg_space(len: usize) -> usize {
    cmsg_align(size_of::<libc::cmsghdr>()) + cmsg_align(len)
}

fn set_int_opt(socket: &Socket, level: i32, name: i32, value: i32) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `value` lives across the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            size_of::<i32>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

fn new_udp(addr: &SocketAddr) -> io::Result<Socket> {
    let socket = Socket::new(
        Domain::for_address(*addr),
        Type::DGRAM.nonblocking().cloexec(),
        Some(Protocol::UDP),
    )?;
    if addr.is_ipv6() {
        socket.set_only_v6(true)?;
    }
    Ok(socket)
}

/// Explains a failed bind in words a user can act on.
pub fn bind_error(addr: SocketAddr, err: io::Error) -> io::Error {
    let hint = match err.raw_os_error() {
        Some(libc::EACCES) | Some(libc::EPERM) => format!(
            "binding {addr} needs privilege: run as root, or grant the binary \
             `setcap cap_net_bind_service=+ep $(command -v rackboot)`, or listen on a port above 1023 \
             (e.g. --listen {}:6969)",
            if addr.is_ipv6() {
                format!("[{}]", addr.ip())
            } else {
                addr.ip().to_string()
            }
        ),
        Some(libc::EADDRINUSE) => {
            format!("{addr} is already in use (another TFTP server running?)")
        }
        Some(libc::EADDRNOTAVAIL) => format!("{addr} is not an address of this machine"),
        _ => format!("cannot bind {addr}: {err}"),
    };
    io::Error::new(err.kind(), hint)
}

/// A shard's listen socket: SO_REUSEPORT so every shard binds the same
/// address and the kernel spreads requests, packet info for the
/// destination address and interface, and large buffers for bursts.
pub fn bind_listen(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = new_udp(&addr)?;
    socket.set_reuse_port(true)?;
    socket.set_reuse_address(true)?;
    enable_pktinfo(&socket, addr.is_ipv6())?;
    let _ = socket.set_recv_buffer_size(4 << 20);
    let _ = socket.set_send_buffer_size(4 << 20);
    socket.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
    Ok(socket.into())
}

fn enable_pktinfo(socket: &Socket, ipv6: bool) -> io::Result<()> {
    if ipv6 {
        set_int_opt(socket, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO, 1)
    } else {
        set_int_opt(socket, libc::IPPROTO_IP, libc::IP_PKTINFO, 1)
    }
}

/// Picks transfer ports: ephemeral, or round-robin through a range.
#[derive(Debug, Clone)]
pub struct PortPicker {
    range: Option<(u16, u16)>,
    cursor: u32,
}

impl PortPicker {
    pub fn new(range: Option<(u16, u16)>, shard: usize) -> PortPicker {
        // Shards start at different points so they rarely collide.
        PortPicker {
            range,
            cursor: (shard as u32).wrapping_mul(7919),
        }
    }

    /// A socket for one transfer, bound to the address the request came to.
    pub fn bind(&mut self, local_ip: IpAddr) -> io::Result<UdpSocket> {
        let Some((lo, hi)) = self.range else {
            return bind_transfer(SocketAddr::new(local_ip, 0));
        };
        let span = u32::from(hi - lo) + 1;
        for _ in 0..span {
            let port = lo + (self.cursor % span) as u16;
            self.cursor = self.cursor.wrapping_add(1);
            match bind_transfer(SocketAddr::new(local_ip, port)) {
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                other => return other,
            }
        }
        Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            "every port of --port-range is busy",
        ))
    }
}

fn bind_transfer(addr: SocketAddr) -> io::Result<UdpSocket> {
    let socket = new_udp(&addr)?;
    let _ = socket.set_send_buffer_size(1 << 20);
    socket.bind(&addr.into())?;
    Ok(socket.into())
}

/// The control messages of a received datagram: (level, type, data).
pub fn control_messages(control: &[u8]) -> impl Iterator<Item = (i32, i32, &[u8])> {
    let header = size_of::<libc::cmsghdr>();
    let mut rest = control;
    std::iter::from_fn(move || {
        if rest.len() < header {
            return None;
        }
        // SAFETY: at least `header` bytes remain; read_unaligned copes with
        // any alignment of the kernel's buffer.
        let cmsg: libc::cmsghdr = unsafe { std::ptr::read_unaligned(rest.as_ptr().cast()) };
        let len = cmsg.cmsg_len as usize;
        if len < header || len > rest.len() {
            return None;
        }
        let data = rest.get(cmsg_align(header)..len).unwrap_or(&[]);
        rest = rest.get(cmsg_align(len)..).unwrap_or(&[]);
        Some((cmsg.cmsg_level, cmsg.cmsg_type, data))
    })
}

/// The IPv4 packet info of a datagram: header destination, interface, and
/// the local address the kernel would answer from (`ipi_spec_dst`: the
/// interface's own address even for a broadcast).
pub fn pktinfo_v4(control: &[u8]) -> Option<(Ipv4Addr, u32, Ipv4Addr)> {
    control_messages(control).find_map(|(level, kind, data)| {
        if level != libc::IPPROTO_IP
            || kind != libc::IP_PKTINFO
            || data.len() < size_of::<libc::in_pktinfo>()
        {
            return None;
        }
        // SAFETY: length checked just above.
        let info: libc::in_pktinfo = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
        Some((
            Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)),
            info.ipi_ifindex as u32,
            Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)),
        ))
    })
}

/// Reads the packet-info control messages of a received datagram: its
/// destination address and receiving interface.
pub fn parse_control(control: &[u8]) -> (Option<IpAddr>, u32) {
    if let Some((dst, ifindex, _)) = pktinfo_v4(control) {
        return (Some(IpAddr::V4(dst)), ifindex);
    }
    control_messages(control)
        .find_map(|(level, kind, data)| {
            if level != libc::IPPROTO_IPV6
                || kind != libc::IPV6_PKTINFO
                || data.len() < size_of::<libc::in6_pktinfo>()
            {
                return None;
            }
            // SAFETY: length checked just above.
            let info: libc::in6_pktinfo = unsafe { std::ptr::read_unaligned(data.as_ptr().cast()) };
            Some((
                Some(IpAddr::V6(Ipv6Addr::from(info.ipi6_addr.s6_addr))),
                info.ipi6_ifindex,
            ))
        })
        .unwrap_or((None, 0))
}

/// A datagram read by `recv_datagram`.
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    pub control_len: usize,
    /// The payload did not fit the buffer (MSG_TRUNC).
    pub truncated: bool,
}

/// One non-blocking `recvmsg` with room for packet info; `None` when the
/// socket is empty (or the source is not IP).
pub fn recv_datagram(
    fd: std::os::fd::RawFd,
    buf: &mut [u8],
    control: &mut [u8; CONTROL_LEN],
) -> Option<Received> {
    // SAFETY: zeroed sockaddr_storage is valid; every pointer in msghdr
    // refers to buffers that outlive the call; the kernel writes at most the
    // lengths we pass.
    let (n, storage, control_len, flags) = unsafe {
        let mut storage: libc::sockaddr_storage = std::mem::zeroed();
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = (&mut storage as *mut libc::sockaddr_storage).cast();
        msg.msg_namelen = size_of::<libc::sockaddr_storage>() as u32;
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control.len();
        let n = libc::recvmsg(fd, &mut msg, libc::MSG_DONTWAIT);
        (n, storage, msg.msg_controllen, msg.msg_flags)
    };
    if n < 0 {
        return None;
    }
    let from = sockaddr_to_std(&storage)?;
    Some(Received {
        len: n as usize,
        from,
        control_len,
        truncated: flags & libc::MSG_TRUNC != 0,
    })
}

/// Writes one control message (`level`, `kind`, `data`) at the start of
/// `buf`; returns the space it takes, 0 when `buf` is too short.
fn write_cmsg<T: Copy>(buf: &mut [u8], level: i32, kind: i32, data: T) -> usize {
    let header = cmsg_align(size_of::<libc::cmsghdr>());
    let space = cmsg_space(size_of::<T>());
    if buf.len() < space {
        return 0;
    }
    let cmsg = libc::cmsghdr {
        cmsg_len: (header + size_of::<T>()) as _,
        cmsg_level: level,
        cmsg_type: kind,
    };
    // SAFETY: `buf` holds `space` bytes, room for the header and `data`;
    // unaligned writes need no alignment of the caller's buffer.
    unsafe {
        std::ptr::write_unaligned(buf.as_mut_ptr().cast(), cmsg);
        std::ptr::write_unaligned(buf.as_mut_ptr().add(header).cast(), data);
    }
    space
}

/// Writes an IP_PKTINFO message: send from `source`, out of interface
/// `ifindex` (0: let routing choose).
pub fn write_pktinfo_v4(buf: &mut [u8], ifindex: i32, source: Ipv4Addr) -> usize {
    // SAFETY: in_pktinfo is plain data; all-zero is a valid value.
    let mut info: libc::in_pktinfo = unsafe { std::mem::zeroed() };
    info.ipi_ifindex = ifindex;
    info.ipi_spec_dst.s_addr = u32::from(source).to_be();
    write_cmsg(buf, libc::IPPROTO_IP, libc::IP_PKTINFO, info)
}

/// `UDP_SEGMENT` (linux/udp.h), not in the libc crate for glibc targets.
const UDP_SEGMENT: libc::c_int = 103;
/// Room for the source-address message and a GSO segment size together.
pub const SEND_CONTROL_LEN: usize = CONTROL_LEN + cmsg_space(size_of::<u16>());

/// Writes the control messages of a send: the source address (for a
/// wildcard-bound socket) and, for a GSO send, the segment size. Returns
/// their total length (0 when none is needed).
pub fn write_send_control(
    buf: &mut [u8; SEND_CONTROL_LEN],
    source: Option<IpAddr>,
    segment: Option<u16>,
) -> usize {
    let mut len = match source {
        None => 0,
        Some(IpAddr::V4(v4)) => write_pktinfo_v4(buf, 0, v4),
        Some(IpAddr::V6(v6)) => {
            // SAFETY: in6_pktinfo is plain data; all-zero is a valid value.
            let mut info: libc::in6_pktinfo = unsafe { std::mem::zeroed() };
            info.ipi6_addr.s6_addr = v6.octets();
            write_cmsg(buf, libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
        }
    };
    if let Some(size) = segment {
        len += write_cmsg(&mut buf[len..], libc::SOL_UDP, UDP_SEGMENT, size);
    }
    len
}

/// Whether a send error means "this socket or device cannot do GSO".
pub fn is_gso_unsupported(errno: i32) -> bool {
    matches!(
        errno,
        libc::EIO | libc::EINVAL | libc::ENOPROTOOPT | libc::EOPNOTSUPP
    )
}

/// Converts a kernel socket address (IPv4 or IPv6) to a std one.
pub fn sockaddr_to_std(storage: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match i32::from(storage.ss_family) {
        libc::AF_INET => {
            // SAFETY: the family says the storage holds a sockaddr_in, and
            // sockaddr_storage is large and aligned enough for it.
            let sin: &libc::sockaddr_in =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr));
            Some(SocketAddr::new(IpAddr::V4(ip), u16::from_be(sin.sin_port)))
        }
        libc::AF_INET6 => {
            // SAFETY: as above, for sockaddr_in6.
            let sin6: &libc::sockaddr_in6 =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast() };
            let ip = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
            Some(SocketAddr::V6(std::net::SocketAddrV6::new(
                ip,
                u16::from_be(sin6.sin6_port),
                sin6.sin6_flowinfo,
                sin6.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_control_round_trips_through_the_parser() {
        let mut buf = [0u8; SEND_CONTROL_LEN];
        let n = write_send_control(&mut buf, Some("10.1.2.3".parse().unwrap()), Some(1472));
        assert!(n > 0);
        // The parser reads ipi_addr, the writer sets ipi_spec_dst: only the
        // framing round-trips, which is what matters here.
        let (ip, _) = parse_control(&buf[..n]);
        assert!(ip.is_some());
        assert_eq!(parse_control(&[1, 2, 3]), (None, 0));
    }
}
