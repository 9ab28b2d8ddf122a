//! dhcp-floor: the least a proxyDHCP server can do per request, as a
//! yardstick for tools/bench.py's DHCP scenarios. One thread, two sockets
//! (UDP 67 and 4011), no policy, no logging, no state: `recvmmsg` takes a
//! batch of up to 64 requests, each DISCOVER gets a fixed OFFER (xid,
//! flags, giaddr, chaddr and option 97 copied; 53, 54, 60 `PXEClient`, 43
//! with discovery control, one boot server and a one-item menu) and each
//! REQUEST on 4011 a fixed ACK (`pxelinux.0`, the boot item echoed), and
//! `sendmmsg` answers the whole batch. OFFERs are broadcast to
//! 255.255.255.255:68 (or unicast to giaddr:67 when relayed), ACKs go to
//! ciaddr at the request's source port; IP_PKTINFO from each request picks
//! the interface and source address of its reply. Whatever CPU it spends per
//! request is the kernel's UDP cost on this machine: a floor no real server
//! goes under. Not a server: benchmark namespaces only.
//!
//! ```text
//! ip netns exec bench-server dhcp-floor     # UDP 67 and 4011, all addresses
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};

/// Datagrams per recvmmsg / sendmmsg batch.
const BATCH: usize = 64;
/// Largest request read.
const MAX_DATAGRAM: usize = 1500;
/// Replies are padded to BOOTP's 300 bytes (ours are 304 at most).
const MIN_REPLY: usize = 300;
const MAX_REPLY: usize = 512;
/// Room for the IP_PKTINFO control message, 8-byte aligned.
const CONTROL_WORDS: usize = 8;
const MAGIC_COOKIE: [u8; 4] = [99, 130, 83, 99];

/// One datagram's buffers, request and reply; reused for every batch.
/// The mmsghdrs point into these, which never move (a Vec never resized).
struct Slot {
    rx: [u8; MAX_DATAGRAM],
    from: libc::sockaddr_in,
    control: [u64; CONTROL_WORDS],
    rx_iov: libc::iovec,
    tx: [u8; MAX_REPLY],
    to: libc::sockaddr_in,
    tx_iov: libc::iovec,
}

fn main() -> io::Result<()> {
    let sockets = [bind(67)?, bind(4011)?];
    let (mut slots, mut rx_msgs, mut tx_msgs) = (zeroed::<Slot>(), zeroed(), zeroed());
    let mut polls = sockets.each_ref().map(|s| libc::pollfd {
        fd: s.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `polls` holds two valid pollfds.
        if unsafe { libc::poll(polls.as_mut_ptr(), 2, -1) } < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        // 4011 first: a client halfway through its boot goes before new ones.
        for i in [1, 0] {
            if polls[i].revents != 0 {
                serve(polls[i].fd, i == 1, &mut slots, &mut rx_msgs, &mut tx_msgs);
            }
        }
    }
}

/// BATCH all-zero C structs.
fn zeroed<T>() -> Vec<T> {
    // SAFETY: used for Slot and mmsghdr, plain C data for which all-zero
    // bytes are valid (null pointers); `serve` sets every pointer it uses.
    (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect()
}

/// One socket bound to 0.0.0.0:`port`: broadcast allowed, IP_PKTINFO on,
/// a 4 MiB receive buffer (as rackboot's) so a burst is not lost to it.
fn bind(port: u16) -> io::Result<UdpSocket> {
    let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port))?;
    socket.set_broadcast(true)?;
    socket.set_nonblocking(true)?;
    for (level, name, value) in [
        (libc::IPPROTO_IP, libc::IP_PKTINFO, 1),
        (libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 4 << 20),
    ] {
        // SAFETY: `value` outlives the call and its size is passed.
        let rc = unsafe {
            libc::setsockopt(
                socket.as_raw_fd(),
                level,
                name,
                (&raw const value).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(socket)
}

/// Reads one batch from `fd` and answers it; errors lose the batch (the
/// client retries), as lost datagrams would.
fn serve(
    fd: RawFd,
    pxe: bool,
    slots: &mut [Slot],
    rx: &mut [libc::mmsghdr],
    tx: &mut [libc::mmsghdr],
) {
    for (slot, m) in slots.iter_mut().zip(rx.iter_mut()) {
        slot.rx_iov = libc::iovec {
            iov_base: slot.rx.as_mut_ptr().cast(),
            iov_len: MAX_DATAGRAM,
        };
        let h = &mut m.msg_hdr;
        h.msg_name = (&raw mut slot.from).cast();
        h.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        h.msg_iov = &raw mut slot.rx_iov;
        h.msg_iovlen = 1;
        h.msg_control = slot.control.as_mut_ptr().cast();
        h.msg_controllen = size_of::<[u64; CONTROL_WORDS]>();
    }
    // SAFETY: every header points into `slots`, sized as stated.
    let n = unsafe {
        libc::recvmmsg(
            fd,
            rx.as_mut_ptr(),
            BATCH as u32,
            libc::MSG_DONTWAIT,
            std::ptr::null_mut(),
        )
    };
    let mut replies = 0;
    for i in 0..n.max(0) as usize {
        // SAFETY: IP_PKTINFO is the only control message asked for; the
        // kernel wrote it (or nothing, when the room ran short).
        let info: libc::in_pktinfo = unsafe {
            let c = libc::CMSG_FIRSTHDR(&rx[i].msg_hdr);
            if c.is_null() || (*c).cmsg_type != libc::IP_PKTINFO {
                continue;
            }
            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast())
        };
        let slot = &mut slots[i];
        let request = &slot.rx[..rx[i].msg_len as usize];
        let local = Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr));
        let port = u16::from_be(slot.from.sin_port);
        let Some((len, to)) = answer(request, pxe, local, port, &mut slot.tx) else {
            continue;
        };
        slot.to = slot.from;
        slot.to.sin_addr.s_addr = u32::from(*to.ip()).to_be();
        slot.to.sin_port = to.port().to_be();
        slot.tx_iov = libc::iovec {
            iov_base: slot.tx.as_mut_ptr().cast(),
            iov_len: len,
        };
        let t = &mut tx[replies].msg_hdr;
        t.msg_name = (&raw mut slot.to).cast();
        t.msg_namelen = size_of::<libc::sockaddr_in>() as u32;
        t.msg_iov = &raw mut slot.tx_iov;
        t.msg_iovlen = 1;
        // The request's own IP_PKTINFO goes back with its reply: out of the
        // interface it came in by (a broadcast needs no route), from the
        // address it reached (ipi_addr is ignored on sending).
        t.msg_control = slot.control.as_mut_ptr().cast();
        t.msg_controllen = rx[i].msg_hdr.msg_controllen;
        replies += 1;
    }
    let mut sent = 0;
    while sent < replies {
        // SAFETY: as for the receive; each header points into `slots`.
        let m = unsafe { libc::sendmmsg(fd, tx[sent..].as_mut_ptr(), (replies - sent) as u32, 0) };
        if m <= 0 {
            break; // a lost reply is the client's to retry
        }
        sent += m as usize;
    }
}

/// Writes the reply to `request` into `out`: an OFFER for a DISCOVER on 67,
/// an ACK for a REQUEST on 4011, nothing for anything else. Returns the
/// reply's length and where it goes.
fn answer(
    request: &[u8],
    pxe: bool,
    local: Ipv4Addr,
    port: u16,
    out: &mut [u8; MAX_REPLY],
) -> Option<(usize, SocketAddrV4)> {
    if request.len() < 240 || request[0] != 1 || request[236..240] != MAGIC_COOKIE {
        return None;
    }
    // The request options the reply depends on: 53, 97, and 43's item 71.
    let (mut message_type, mut uuid, mut item) = (0, None, [0x80, 0, 0, 0]);
    let mut i = 240;
    while i + 1 < request.len() && request[i] != 255 {
        if request[i] == 0 {
            i += 1;
            continue;
        }
        let data = request.get(i + 2..i + 2 + request[i + 1] as usize)?;
        match request[i] {
            53 if data.len() == 1 => message_type = data[0],
            97 => uuid = Some(data),
            // 43 from rackboot-load and PXE ROMs: the boot item (71) first.
            43 if data.len() >= 6 && data[0] == 71 && data[1] == 4 => {
                item.copy_from_slice(&data[2..6])
            }
            _ => {}
        }
        i += 2 + data.len();
    }
    // A REQUEST without ciaddr is not a PXE client's: none answered.
    if message_type != if pxe { 3 } else { 1 } || (pxe && request[12..16] == [0; 4]) {
        return None;
    }
    out.fill(0);
    out[0] = 2; // BOOTREPLY
    out[1..3].copy_from_slice(&request[1..3]); // htype, hlen
    out[4..8].copy_from_slice(&request[4..8]); // xid
    out[10..12].copy_from_slice(&request[10..12]); // flags
    if pxe {
        out[12..16].copy_from_slice(&request[12..16]); // ciaddr
    }
    out[20..24].copy_from_slice(&local.octets()); // siaddr: the TFTP server
    out[24..44].copy_from_slice(&request[24..44]); // giaddr, chaddr
    if pxe {
        out[108..118].copy_from_slice(b"pxelinux.0");
    }
    out[236..240].copy_from_slice(&MAGIC_COOKIE);
    let mut at = 240;
    let mut put = |code: u8, data: &[u8]| {
        out[at] = code;
        out[at + 1] = data.len() as u8;
        out[at + 2..at + 2 + data.len()].copy_from_slice(data);
        at += 2 + data.len();
    };
    put(53, &[if pxe { 5 } else { 2 }]);
    put(54, &local.octets());
    put(60, b"PXEClient");
    if let Some(uuid) = uuid.filter(|u| u.len() <= 32) {
        put(97, uuid);
    }
    if pxe {
        put(43, &[71, 4, item[0], item[1], item[2], item[3], 255]);
    } else {
        let ip = local.octets();
        put(
            43,
            &[
                6, 1, 3, // discovery control: no broadcast or multicast discovery
                8, 7, 0x80, 0, 1, ip[0], ip[1], ip[2], ip[3], // boot server 0x8000: us
                9, 7, 0x80, 0, 4, b'b', b'o', b'o', b't', // menu: one item
                255,
            ],
        );
    }
    out[at] = 255;
    let len = (at + 1).max(MIN_REPLY);
    let ciaddr = Ipv4Addr::from(<[u8; 4]>::try_from(&request[12..16]).ok()?);
    let giaddr = Ipv4Addr::from(<[u8; 4]>::try_from(&request[24..28]).ok()?);
    let to = match (pxe, giaddr.is_unspecified()) {
        (true, _) => SocketAddrV4::new(ciaddr, port),
        (false, false) => SocketAddrV4::new(giaddr, 67),
        (false, true) => SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
    };
    Some((len, to))
}
