//! A passive observer on the test bridge: an AF_PACKET socket opened inside
//! the test's namespace (from a thread that setns(2)s into it) that keeps
//! every UDP datagram to or from ports 67, 68, 69 and 4011, and every IPv4
//! packet as an Ethernet frame for a pcap file (what `rackboot doctor
//! --pcap` reads). It never sends.

use std::ffi::CString;
use std::fs::File;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};

use super::netns::Netns;

const PORTS: [u16; 4] = [67, 68, 69, 4011];

/// One UDP datagram seen on the bridge.
#[derive(Clone, Debug)]
pub struct Seen {
    /// Since the capture started.
    pub at: Duration,
    /// Sent by this host (rackboot, dnsmasq), not by the VM.
    pub outgoing: bool,
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub payload: Vec<u8>,
}

impl Seen {
    /// The DHCP message, for datagrams between DHCP/PXE ports.
    pub fn dhcp(&self) -> Option<Message> {
        let ports = [67, 68, 4011];
        if !ports.contains(&self.src.port()) || !ports.contains(&self.dst.port()) {
            return None;
        }
        Message::decode(&mut Decoder::new(&self.payload)).ok()
    }

    /// The file name of a TFTP read request to port 69.
    pub fn tftp_rrq(&self) -> Option<String> {
        if self.dst.port() != 69 || self.payload.get(..2) != Some(&[0, 1]) {
            return None;
        }
        let name = self.payload[2..].split(|&b| b == 0).next()?;
        Some(String::from_utf8_lossy(name).into_owned())
    }

    /// One line for failure reports.
    pub fn summary(&self) -> String {
        let what = if let Some(m) = self.dhcp() {
            let kind = m
                .opts()
                .msg_type()
                .map_or("BOOTP".into(), |t| format!("{t:?}"));
            format!(
                "{kind} xid={:#010x} yiaddr={} siaddr={} file={:?} 43={} 60={:?} 77={:?} 93={:?}",
                m.xid(),
                m.yiaddr(),
                m.siaddr(),
                field_text(m.fname()),
                m.opts().get(OptionCode::VendorExtensions).is_some(),
                class_id(&m),
                user_class(&m),
                arch(&m),
            )
        } else if let Some(file) = self.tftp_rrq() {
            format!("TFTP RRQ {file:?}")
        } else if self.payload.get(..2) == Some(&[0, 5]) {
            format!(
                "TFTP ERROR {}",
                String::from_utf8_lossy(self.payload.get(4..).unwrap_or_default())
            )
        } else {
            format!("{} bytes", self.payload.len())
        };
        format!(
            "{:>7.3}s {} {} -> {} {what}",
            self.at.as_secs_f64(),
            if self.outgoing { "out" } else { "in " },
            self.src,
            self.dst
        )
    }
}

/// A `file`/`sname` header field as text (dhcproto keeps the NUL).
pub fn field_text(field: Option<&[u8]>) -> String {
    let bytes = field.unwrap_or_default();
    let text = bytes.split(|&b| b == 0).next().unwrap_or_default();
    String::from_utf8_lossy(text).into_owned()
}

/// Option 60 as text.
pub fn class_id(m: &Message) -> Option<String> {
    match m.opts().get(OptionCode::ClassIdentifier)? {
        DhcpOption::ClassIdentifier(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Option 77 as text.
pub fn user_class(m: &Message) -> Option<String> {
    match m.opts().get(OptionCode::UserClass)? {
        DhcpOption::UserClass(b) => Some(String::from_utf8_lossy(b).into_owned()),
        _ => None,
    }
}

/// Option 93 (client system architecture), first entry.
pub fn arch(m: &Message) -> Option<u16> {
    match m.opts().get(OptionCode::ClientSystemArchitecture)? {
        DhcpOption::ClientSystemArchitecture(a) => Some(u16::from(*a)),
        _ => None,
    }
}

pub fn msg_type(m: &Message) -> Option<MessageType> {
    m.opts().msg_type()
}

/// The running observer.
pub struct Capture {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    seen: Arc<Mutex<Vec<Seen>>>,
    frames: Arc<Mutex<Vec<Frame>>>,
}

/// One IPv4 packet with a rebuilt Ethernet header, and its wall-clock time.
struct Frame {
    at: Duration,
    bytes: Vec<u8>,
}

impl Capture {
    /// Starts observing `ifname` in `ns`; returns once the socket is bound.
    pub fn start(ns: &Netns, ifname: &str) -> Capture {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let frames = Arc::new(Mutex::new(Vec::new()));
        let (ready_tx, ready_rx) = mpsc::channel();
        let path = ns.path();
        let ifname = ifname.to_owned();
        let thread = {
            let stop = Arc::clone(&stop);
            let seen = Arc::clone(&seen);
            let frames = Arc::clone(&frames);
            std::thread::Builder::new()
                .name("pxe-capture".into())
                .spawn(move || {
                    let socket = match open(&path, &ifname) {
                        Ok(socket) => {
                            let _ = ready_tx.send(Ok(()));
                            socket
                        }
                        Err(e) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    run(&socket, &stop, &seen, &frames);
                })
                .expect("spawn capture thread")
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("packet capture in namespace {}: {e}", ns.name),
            Err(e) => panic!("packet capture did not start: {e}"),
        }
        Capture {
            stop,
            thread: Some(thread),
            seen,
            frames,
        }
    }

    pub fn packets(&self) -> Vec<Seen> {
        self.seen.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// DHCP messages with their datagrams.
    pub fn dhcp(&self) -> Vec<(Seen, Message)> {
        self.packets()
            .into_iter()
            .filter_map(|s| s.dhcp().map(|m| (s, m)))
            .collect()
    }

    /// File names of TFTP read requests, in order.
    pub fn tftp_reads(&self) -> Vec<String> {
        self.packets().iter().filter_map(Seen::tftp_rrq).collect()
    }

    /// Writes every IPv4 packet seen so far as a classic pcap file
    /// (microseconds, Ethernet link type).
    pub fn write_pcap(&self, path: &std::path::Path) {
        let frames = self.frames.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        out.extend_from_slice(&0xa1b2_c3d4u32.to_le_bytes());
        out.extend_from_slice(&2u16.to_le_bytes());
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&[0; 8]); // thiszone, sigfigs
        out.extend_from_slice(&65535u32.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes()); // LINKTYPE_ETHERNET
        for frame in frames.iter() {
            out.extend_from_slice(&(frame.at.as_secs() as u32).to_le_bytes());
            out.extend_from_slice(&frame.at.subsec_micros().to_le_bytes());
            let len = (frame.bytes.len() as u32).to_le_bytes();
            out.extend_from_slice(&len);
            out.extend_from_slice(&len);
            out.extend_from_slice(&frame.bytes);
        }
        std::fs::write(path, out).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    pub fn report(&self) -> String {
        self.packets()
            .iter()
            .map(Seen::summary)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn os_err(what: &str) -> String {
    format!("{what}: {}", std::io::Error::last_os_error())
}

/// Enters the namespace (this thread only) and binds a cooked AF_PACKET
/// socket to `ifname`.
fn open(ns_path: &std::path::Path, ifname: &str) -> Result<OwnedFd, String> {
    let ns = File::open(ns_path).map_err(|e| format!("{}: {e}", ns_path.display()))?;
    // SAFETY: setns on a valid namespace fd; it affects this thread only.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } != 0 {
        return Err(os_err("setns (root needed)"));
    }
    // ETH_P_ALL: packets the host sends reach only "all protocols" taps;
    // IPv4 is picked out per packet in `run`.
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain socket(2).
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
            i32::from(proto),
        )
    };
    if fd < 0 {
        return Err(os_err("AF_PACKET socket (root needed)"));
    }
    // SAFETY: fd is a fresh descriptor we own.
    let socket = unsafe { OwnedFd::from_raw_fd(fd) };
    let name = CString::new(ifname).expect("interface name");
    // SAFETY: NUL-terminated name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(os_err(&format!("interface {ifname}")));
    }
    // SAFETY: sockaddr_ll is plain old data.
    let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = proto;
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: a valid sockaddr_ll and its size.
    let rc = unsafe {
        libc::bind(
            socket.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            size_of::<libc::sockaddr_ll>() as u32,
        )
    };
    if rc != 0 {
        return Err(os_err("bind AF_PACKET"));
    }
    let timeout = libc::timeval {
        tv_sec: 0,
        tv_usec: 100_000,
    };
    // SAFETY: a valid timeval and its size.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&timeout as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as u32,
        );
    }
    // A deep queue: the VM's boot sends megabytes in bursts, and a frame
    // dropped here would be missing from the pcap doctor reads.
    let rcvbuf: libc::c_int = 32 << 20;
    // SAFETY: a valid int and its size (FORCE: root may exceed rmem_max).
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&rcvbuf as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as u32,
        );
    }
    Ok(socket)
}

fn run(socket: &OwnedFd, stop: &AtomicBool, seen: &Mutex<Vec<Seen>>, frames: &Mutex<Vec<Frame>>) {
    let started = Instant::now();
    // Room for a whole offloaded TCP segment as the host hands it over.
    let mut buf = vec![0u8; 1 << 18];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: sockaddr_ll is plain old data.
        let mut from: libc::sockaddr_ll = unsafe { zeroed() };
        let mut from_len = size_of::<libc::sockaddr_ll>() as u32;
        // SAFETY: buffer and address outlive the call; lengths are theirs.
        let n = unsafe {
            libc::recvfrom(
                socket.as_raw_fd(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
                (&mut from as *mut libc::sockaddr_ll).cast(),
                &mut from_len,
            )
        };
        if n <= 0 {
            continue;
        }
        if from.sll_protocol != (libc::ETH_P_IP as u16).to_be() {
            continue;
        }
        let outgoing = from.sll_pkttype == libc::PACKET_OUTGOING;
        // The cooked socket gives the source MAC and the packet type, not
        // the header: rebuild it (destination broadcast or unknown).
        let mut frame = Vec::with_capacity(14 + n as usize);
        let broadcast = from.sll_pkttype == libc::PACKET_BROADCAST;
        frame.extend_from_slice(&if broadcast { [0xff; 6] } else { [0; 6] });
        frame.extend_from_slice(&from.sll_addr[..6]);
        frame.extend_from_slice(&0x0800u16.to_be_bytes());
        frame.extend_from_slice(&buf[..n as usize]);
        let at = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        frames
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Frame { at, bytes: frame });
        if let Some(datagram) = parse(&buf[..n as usize], started.elapsed(), outgoing) {
            seen.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(datagram);
        }
    }
}

/// An IPv4 packet carrying UDP from or to one of [`PORTS`].
fn parse(ip: &[u8], at: Duration, outgoing: bool) -> Option<Seen> {
    if ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 17 {
        return None;
    }
    // Fragments (none expected) are skipped.
    if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
        return None;
    }
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
    let udp = ip.get(ihl..total)?;
    if udp.len() < 8 {
        return None;
    }
    let sport = u16::from_be_bytes([udp[0], udp[1]]);
    let dport = u16::from_be_bytes([udp[2], udp[3]]);
    if !PORTS.contains(&sport) && !PORTS.contains(&dport) {
        return None;
    }
    let udp_len = usize::from(u16::from_be_bytes([udp[4], udp[5]])).clamp(8, udp.len());
    let addr = |at: usize| Ipv4Addr::new(ip[at], ip[at + 1], ip[at + 2], ip[at + 3]);
    Some(Seen {
        at,
        outgoing,
        src: SocketAddrV4::new(addr(12), sport),
        dst: SocketAddrV4::new(addr(16), dport),
        payload: udp[8..udp_len].to_vec(),
    })
}
