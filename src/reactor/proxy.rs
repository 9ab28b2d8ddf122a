//! The proxyDHCP sockets: UDP 67 and 4011, one thread. A few packets per
//! booting machine need no sharding; what matters is answering from the
//! right interface with the right address, which IP_PKTINFO gives us.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use socket2::{Domain, Protocol, Socket, Type};

use super::Shared;
use super::socket::{CONTROL_LEN, bind_error, pktinfo_v4, recv_datagram, write_pktinfo_v4};
use crate::dhcp::{Destination, MAX_REPLY_LEN, Policy, Reply, Request, ServerPort};

/// How the proxy listens.
#[derive(Debug, Clone)]
pub struct ProxyListen {
    /// Bind to this interface only (SO_BINDTODEVICE).
    pub interface: Option<String>,
    /// The ports, normally 67 and 4011 (tests may move them).
    pub dhcp_port: u16,
    pub pxe_port: u16,
    /// Log every reply at info (dnsmasq's log-dhcp); otherwise at debug.
    pub log_replies: bool,
    /// Answer only on interfaces whose address lies in one of these
    /// networks (dnsmasq's `dhcp-range=NET,proxy[,MASK]`; without a mask,
    /// the interface's own). Empty: answer everywhere.
    pub subnets: Vec<(Ipv4Addr, Option<Ipv4Addr>)>,
}

impl Default for ProxyListen {
    fn default() -> Self {
        ProxyListen {
            interface: None,
            dhcp_port: 67,
            pxe_port: 4011,
            log_replies: true,
            subnets: Vec::new(),
        }
    }
}

/// Where a datagram arrived: interface and the local address the kernel
/// would answer from (`ipi_spec_dst`: the interface's own address even for
/// a broadcast).
#[derive(Debug, Clone, Copy)]
struct Arrival {
    from: SocketAddrV4,
    ifindex: i32,
    local: Ipv4Addr,
}

/// The bound proxy sockets, made before privileges are dropped.
pub struct ProxySockets {
    dhcp: UdpSocket,
    pxe: UdpSocket,
}

pub fn bind(settings: &ProxyListen) -> io::Result<ProxySockets> {
    Ok(ProxySockets {
        dhcp: bind_one(settings, settings.dhcp_port)?,
        pxe: bind_one(settings, settings.pxe_port)?,
    })
}

fn bind_one(settings: &ProxyListen, port: u16) -> io::Result<UdpSocket> {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, port));
    let socket = Socket::new(Domain::IPV4, Type::DGRAM.cloexec(), Some(Protocol::UDP))?;
    // A DHCP server on the same host may hold port 67 as well: both see
    // broadcasts when both set SO_REUSEADDR.
    socket.set_reuse_address(true)?;
    socket.set_broadcast(true)?;
    if let Some(name) = &settings.interface {
        socket.bind_device(Some(name.as_bytes())).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("--interface {name}: {e} (does the interface exist? root needed)"),
            )
        })?;
    }
    let on: libc::c_int = 1;
    // SAFETY: `on` outlives the call and its size is passed.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    socket.bind(&addr.into()).map_err(|e| bind_error(addr, e))?;
    Ok(socket.into())
}

/// A reply waiting for its configured delay.
struct Delayed {
    due: Instant,
    bytes: Vec<u8>,
    port: ServerPort,
    to: SocketAddrV4,
    arrival: Arrival,
}

impl PartialEq for Delayed {
    fn eq(&self, other: &Self) -> bool {
        self.due == other.due
    }
}
impl Eq for Delayed {}
impl PartialOrd for Delayed {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Delayed {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.due.cmp(&other.due)
    }
}

/// Counters, logged at shutdown.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProxyStats {
    pub answered: u64,
    pub silent: u64,
}

/// Serves until the server stops.
pub fn run(
    sockets: ProxySockets,
    policy: Policy,
    settings: ProxyListen,
    shared: Arc<Shared>,
) -> ProxyStats {
    let mut stats = ProxyStats::default();
    let mut delayed: BinaryHeap<Reverse<Delayed>> = BinaryHeap::new();
    let mut buf = vec![0u8; 4096];
    let mut out = [0u8; MAX_REPLY_LEN];
    let mut fds = [
        libc::pollfd {
            fd: sockets.dhcp.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: sockets.pxe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    while !shared.stop.load(Ordering::Relaxed) {
        let now = Instant::now();
        while delayed.peek().is_some_and(|Reverse(d)| d.due <= now) {
            let Some(Reverse(d)) = delayed.pop() else {
                break;
            };
            let socket = if d.port == ServerPort::Pxe {
                &sockets.pxe
            } else {
                &sockets.dhcp
            };
            send(socket, &d.bytes, d.to, d.arrival);
        }
        let wait = delayed.peek().map_or(50, |Reverse(d)| {
            d.due.saturating_duration_since(now).as_millis().min(50)
        });
        // SAFETY: `fds` is a valid array of two pollfds.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 2, wait as i32) };
        if n <= 0 {
            continue;
        }
        for (i, port) in [(0, ServerPort::Dhcp), (1, ServerPort::Pxe)] {
            if fds[i].revents & libc::POLLIN == 0 {
                continue;
            }
            let socket = if port == ServerPort::Pxe {
                &sockets.pxe
            } else {
                &sockets.dhcp
            };
            while let Some((len, arrival)) = recv(socket, &mut buf) {
                if !serves_subnet(&settings.subnets, arrival.local) {
                    stats.silent += 1;
                    tracing::debug!(client = %arrival.from, via = %arrival.local, "proxyDHCP: interface outside the proxy ranges");
                    continue;
                }
                let request = Request {
                    bytes: &buf[..len],
                    port,
                    source: arrival.from,
                    local_addr: arrival.local,
                };
                match policy.answer(&request, &mut out) {
                    Ok(reply) => {
                        stats.answered += 1;
                        log_reply(&settings, &reply, &arrival, &out[..reply.len]);
                        let to = reply.destination.socket_addr();
                        match reply.delay {
                            Some(delay) if !delay.is_zero() => delayed.push(Reverse(Delayed {
                                due: Instant::now() + delay,
                                bytes: out[..reply.len].to_vec(),
                                port: reply.source_port,
                                to,
                                arrival,
                            })),
                            _ => {
                                let socket = if reply.source_port == ServerPort::Pxe {
                                    &sockets.pxe
                                } else {
                                    &sockets.dhcp
                                };
                                send(socket, &out[..reply.len], to, arrival);
                            }
                        }
                    }
                    Err(silence) => {
                        stats.silent += 1;
                        tracing::debug!(client = %arrival.from, port = port.number(), "proxyDHCP: no reply: {silence}");
                    }
                }
            }
        }
    }
    stats
}

/// Whether requests arriving on the interface with address `local` are
/// ours to answer.
fn serves_subnet(subnets: &[(Ipv4Addr, Option<Ipv4Addr>)], local: Ipv4Addr) -> bool {
    subnets.is_empty()
        || subnets.iter().any(|&(network, mask)| {
            let Some(mask) = mask.or_else(|| interface_netmask(local)) else {
                return false;
            };
            let mask = u32::from(mask);
            u32::from(network) & mask == u32::from(local) & mask
        })
}

/// The netmask of the interface that holds `address`.
fn interface_netmask(address: Ipv4Addr) -> Option<Ipv4Addr> {
    let mut found = None;
    // SAFETY: getifaddrs allocates a list we walk read-only and free once;
    // each sockaddr is checked for AF_INET before being read as sockaddr_in.
    unsafe {
        let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
        if libc::getifaddrs(&mut list) != 0 {
            return None;
        }
        let mut cur = list;
        while !cur.is_null() {
            let ifa = &*cur;
            if !ifa.ifa_addr.is_null()
                && !ifa.ifa_netmask.is_null()
                && i32::from((*ifa.ifa_addr).sa_family) == libc::AF_INET
            {
                let addr = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                if Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)) == address {
                    let mask = &*(ifa.ifa_netmask as *const libc::sockaddr_in);
                    found = Some(Ipv4Addr::from(u32::from_be(mask.sin_addr.s_addr)));
                    break;
                }
            }
            cur = ifa.ifa_next;
        }
        libc::freeifaddrs(list);
    }
    found
}

fn log_reply(settings: &ProxyListen, reply: &Reply, arrival: &Arrival, bytes: &[u8]) {
    let chaddr = bytes.get(28..34).unwrap_or(&[]);
    let mac = chaddr
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":");
    let file = bytes
        .get(108..236)
        .map(|f| f.split(|&b| b == 0).next().unwrap_or(&[]))
        .unwrap_or(&[]);
    let file = String::from_utf8_lossy(file);
    let destination = match reply.destination {
        Destination::Broadcast68 => "broadcast".to_string(),
        other => other.socket_addr().to_string(),
    };
    if settings.log_replies {
        tracing::info!(mac, arch = ?reply.arch, kind = ?reply.kind, file = %file, to = destination, via = %arrival.local, "proxyDHCP");
    } else {
        tracing::debug!(mac, arch = ?reply.arch, kind = ?reply.kind, file = %file, to = destination, via = %arrival.local, "proxyDHCP");
    }
}

/// One non-blocking `recvmsg`; `None` when nothing (usable) is queued.
fn recv(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, Arrival)> {
    let mut control = [0u8; CONTROL_LEN];
    let got = recv_datagram(socket.as_raw_fd(), buf, &mut control)?;
    let SocketAddr::V4(from) = got.from else {
        return None;
    };
    let (_, ifindex, local) = pktinfo_v4(&control[..got.control_len])?;
    Some((
        got.len,
        Arrival {
            from,
            ifindex: ifindex as i32,
            local,
        },
    ))
}

/// Sends a reply out of the interface the request came in on, from the
/// address it was received on (IP_PKTINFO on send).
fn send(socket: &UdpSocket, bytes: &[u8], to: SocketAddrV4, arrival: Arrival) {
    let addr = socket2::SockAddr::from(SocketAddr::V4(to));
    let mut control = [0u8; CONTROL_LEN];
    let control_len = write_pktinfo_v4(&mut control, arrival.ifindex, arrival.local);
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut _,
        iov_len: bytes.len(),
    };
    // SAFETY: every msghdr pointer refers to locals that outlive the
    // synchronous sendmsg.
    let rc = unsafe {
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_name = addr.as_ptr() as *mut _;
        msg.msg_namelen = addr.len();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = control_len;
        libc::sendmsg(socket.as_raw_fd(), &msg, libc::MSG_NOSIGNAL)
    };
    if rc < 0 {
        tracing::warn!(to = %to, "proxyDHCP reply not sent: {}", io::Error::last_os_error());
    }
}
