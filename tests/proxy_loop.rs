//! The real proxyDHCP loop (`reactor::proxy::run`) over real sockets, in
//! network namespaces joined by a veth pair: DISCOVERs broadcast-answered
//! to port 68, 4011 REQUESTs answered to ciaddr. It must answer 10,000 of
//! each without one heap allocation after warm-up, answer port 4011
//! before port 67 when both are queued, count what it drops by reason,
//! and serve an address added while it runs (the interface table follows
//! netlink).

mod common;
mod netns;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use netns::Link;
use rackboot::dhcp::{Arch, BootEntry, Policy, ProxyConfig, ProxySettings, Reason};
use rackboot::files::{FileCache, Root, RootOptions};
use rackboot::reactor::proxy::{self, ProxyListen, ProxyStats};
use rackboot::reactor::{IoMode, Settings, Shared, netlink};

struct CountingAllocator;

/// Set while the test measures; only the proxy thread's allocations count.
static MEASURING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static PROXY_THREAD: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if MEASURING.load(Ordering::Relaxed) && PROXY_THREAD.try_with(|p| p.get()).unwrap_or(false) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: every call forwards to the system allocator unchanged; counting
// touches an atomic and a const-initialised thread local, neither allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(format!(
        "{}/tests/fixtures/dhcp/{name}",
        env!("CARGO_MANIFEST_DIR")
    ))
    .expect(name)
}

/// A proxy loop running on its own thread inside the link's server
/// namespace.
struct Running {
    shared: Arc<Shared>,
    /// Boot events the loop posted (as `rackboot status` would see them).
    events: rackboot::status::EventQueue,
    thread: std::thread::JoinHandle<ProxyStats>,
    dhcp: SocketAddr,
    pxe: SocketAddr,
}

impl Running {
    /// Binds the sockets; `before_run` runs on the proxy thread between
    /// binding and serving (the test queues requests there).
    fn start(
        link: &Link,
        io: IoMode,
        subnets: Vec<(Ipv4Addr, Option<Ipv4Addr>)>,
        reply_delay_ms: u64,
        // Whether this loop's allocations are the ones counted (only one
        // test's: the others run beside it and allocate as they please).
        counted: bool,
        before_run: impl FnOnce(SocketAddr, SocketAddr) + Send + 'static,
    ) -> Running {
        let root = tempfile::tempdir().unwrap();
        let cache = FileCache::new(Root::open(root.path(), RootOptions::default()).unwrap(), 1);
        let server_ip = link.server_ip;
        let (tx, rx) = std::sync::mpsc::channel();
        // Room for a few turns of events: the reader below drains it on
        // its own schedule, as the status table does.
        let (sink, events) = rackboot::status::StatusSink::bounded(4096);
        let thread = link.server.spawn("proxy-under-test".into(), move || {
            // The table is read inside the namespace, as the server does.
            let (interfaces, route) = netlink::start();
            let shared =
                Arc::new(Shared::new(Settings::default(), cache, interfaces).with_status(sink));
            if let Some(route) = route {
                let shared = shared.clone();
                std::thread::spawn(move || netlink::watch(route, &shared.interfaces, &shared.stop));
            }
            let listen = ProxyListen {
                dhcp_port: free_port(),
                pxe_port: free_port(),
                log_replies: false,
                subnets,
                ..ProxyListen::default()
            };
            let sockets = proxy::bind(&listen).unwrap();
            let dhcp = SocketAddr::new(server_ip, listen.dhcp_port);
            let pxe = SocketAddr::new(server_ip, listen.pxe_port);
            before_run(dhcp, pxe);
            tx.send((shared.clone(), dhcp, pxe)).unwrap();
            PROXY_THREAD.with(|p| p.set(counted));
            let config = ProxyConfig {
                boot: vec![
                    BootEntry::new(Arch::Bios, "pxelinux.0"),
                    BootEntry::new(Arch::X64Uefi, "ipxe.efi"),
                ],
                proxy: ProxySettings {
                    reply_delay_ms,
                    ..ProxySettings::default()
                },
                ..ProxyConfig::default()
            };
            let policy = std::sync::Arc::new(rackboot::published::Published::new(
                Policy::new(config).unwrap(),
            ));
            proxy::run(sockets, policy, listen, shared, io)
        });
        let (shared, dhcp, pxe) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        drop(root);
        Running {
            shared,
            events,
            thread,
            dhcp,
            pxe,
        }
    }

    fn stop(self) -> ProxyStats {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.thread.join().expect("the proxy thread panicked")
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("0.0.0.0:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The client side: one socket on port 68, where offers are broadcast and
/// (being the requests' source port) where ACKs come back.
fn client_socket(link: &Link) -> UdpSocket {
    let s = link
        .client
        .udp_bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 68)));
    s.set_broadcast(true).unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    // Room for a burst of replies (root may exceed rmem_max).
    let size: libc::c_int = 4 << 20;
    // SAFETY: `size` outlives the call and its length is passed.
    let rc = unsafe {
        libc::setsockopt(
            std::os::fd::AsRawFd::as_raw_fd(&s),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            (&size as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0, "SO_RCVBUFFORCE: {}", std::io::Error::last_os_error());
    s
}

fn with_client(template: &[u8], n: u32, ciaddr: Option<IpAddr>) -> Vec<u8> {
    let mut p = template.to_vec();
    p[4..8].copy_from_slice(&(0x5000_0000 | n).to_be_bytes());
    p[28..34].copy_from_slice(&[0x52, 0x54, 0, (n >> 16) as u8, (n >> 8) as u8, n as u8]);
    if let Some(IpAddr::V4(ip)) = ciaddr {
        p[12..16].copy_from_slice(&ip.octets());
    }
    p
}

/// Option 53 of a reply.
fn message_type(reply: &[u8]) -> Option<u8> {
    let mut i = 240;
    while i + 1 < reply.len() && reply[i] != 255 {
        if reply[i] == 0 {
            i += 1;
            continue;
        }
        if reply[i] == 53 {
            return reply.get(i + 2).copied();
        }
        i += 2 + usize::from(reply[i + 1]);
    }
    None
}

/// Sends `count` requests (numbered from `first`) in windows and checks
/// each reply: xid, op, chaddr, option 53 `want`.
fn exchange(
    client: &UdpSocket,
    to: SocketAddr,
    template: &[u8],
    first: u32,
    count: u32,
    ciaddr: Option<IpAddr>,
    want: u8,
) {
    // Small enough that the replies fit the client's receive buffer.
    const WINDOW: u32 = 64;
    let mut buf = [0u8; 2048];
    let mut next = first;
    let end = first + count;
    while next < end {
        let window = WINDOW.min(end - next);
        let mut pending: std::collections::HashSet<u32> = (next..next + window).collect();
        for n in next..next + window {
            client
                .send_to(&with_client(template, n, ciaddr), to)
                .unwrap();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !pending.is_empty() && Instant::now() < deadline {
            let Ok((len, _)) = client.recv_from(&mut buf) else {
                continue;
            };
            let reply = &buf[..len];
            assert!(len >= 300 && reply[0] == 2, "not a BOOTREPLY");
            let n = u32::from_be_bytes(reply[4..8].try_into().unwrap()) & 0x00ff_ffff;
            assert_eq!(message_type(reply), Some(want), "option 53");
            assert_eq!(&reply[28..34], &with_client(template, n, None)[28..34]);
            assert_eq!(&reply[16..20], &[0; 4], "yiaddr must be 0");
            pending.remove(&n);
        }
        assert!(pending.is_empty(), "{} requests unanswered", pending.len());
        next += window;
    }
}

/// One test per backend: the io_uring loop and the recvmmsg loop.
macro_rules! on_both_backends {
    ($name:ident) => {
        mod $name {
            #[test]
            fn uring() {
                super::$name(rackboot::reactor::IoMode::Uring);
            }
            #[test]
            fn epoll() {
                super::$name(rackboot::reactor::IoMode::Epoll);
            }
        }
    };
}

on_both_backends!(ten_thousand_discovers_and_requests_without_an_allocation);
on_both_backends!(port_4011_is_answered_before_queued_discovers_and_drops_are_counted);
on_both_backends!(an_address_added_while_running_is_served_from);
on_both_backends!(a_delayed_offer_leaves_after_its_delay);

/// The allocation counter is global: the two backends' runs of this test
/// must not overlap.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn ten_thousand_discovers_and_requests_without_an_allocation(io: IoMode) {
    netns::require_root();
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let link = Link::new("pl", 81);
    let running = Running::start(&link, io, Vec::new(), 0, true, |_, _| {});
    let client = client_socket(&link);
    let discover = fixture("ovmf_x64_discover.bin");
    let request = fixture("ovmf_x64_request_4011.bin");
    let ciaddr = Some(link.client_ip);
    // Warm-up: whatever is made once (lazily) is made now.
    exchange(&client, running.dhcp, &discover, 0, 300, None, 2);
    exchange(&client, running.pxe, &request, 0, 300, ciaddr, 5);
    // The counter works: an allocation on the proxy thread would be seen
    // (checked on this thread by pretending to be it).
    MEASURING.store(true, Ordering::SeqCst);
    PROXY_THREAD.with(|p| p.set(true));
    drop(std::hint::black_box(Vec::<u8>::with_capacity(16)));
    PROXY_THREAD.with(|p| p.set(false));
    assert_eq!(ALLOCATIONS.swap(0, Ordering::SeqCst), 1);

    // Every reply is also counted in the metrics and posted to the status
    // queue; a reader drains the queue meanwhile, as the status table does.
    let posted = std::sync::atomic::AtomicU64::new(0);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                let n = running.events.drain().count() as u64;
                posted.fetch_add(n, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        exchange(&client, running.dhcp, &discover, 1000, 10_000, None, 2);
        exchange(&client, running.pxe, &request, 1000, 10_000, ciaddr, 5);
        MEASURING.store(false, Ordering::SeqCst);
        done.store(true, Ordering::SeqCst);
    });
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);
    let posted = posted.into_inner() + running.events.drain().count() as u64;
    let dropped = running.events.dropped();
    let metrics = running.shared.metrics.proxy.clone();
    let stats = running.stop();
    assert_eq!(stats.offers, 10_300);
    assert_eq!(stats.acks, 10_300);
    assert_eq!(metrics.replies[0][Arch::X64Uefi as usize].get(), 10_300);
    assert_eq!(metrics.replies[1][Arch::X64Uefi as usize].get(), 10_300);
    assert_eq!(
        posted + dropped,
        20_600,
        "every reply posted to the status queue ({posted} read, {dropped} dropped when full)"
    );
    assert!(posted > 0);
    assert_eq!(
        allocations, 0,
        "the proxy loop allocated while answering 20,000 requests"
    );
}

fn port_4011_is_answered_before_queued_discovers_and_drops_are_counted(io: IoMode) {
    netns::require_root();
    let link = Link::new("pq", 82);
    let client = Arc::new(client_socket(&link));
    let discover = fixture("ovmf_x64_discover.bin");
    let request = fixture("ovmf_x64_request_4011.bin");
    let not_pxe = fixture("windows_discover.bin");
    let ciaddr = Some(link.client_ip);
    let sender = client.clone();
    // Everything is queued on both sockets before the loop first looks.
    let running = Running::start(&link, io, Vec::new(), 0, false, move |dhcp, pxe| {
        for n in 0..200 {
            sender
                .send_to(&with_client(&discover, n, None), dhcp)
                .unwrap();
        }
        for n in 0..40 {
            sender
                .send_to(&with_client(&request, 1000 + n, ciaddr), pxe)
                .unwrap();
        }
        for n in 0..30 {
            sender
                .send_to(&with_client(&not_pxe, 2000 + n, None), dhcp)
                .unwrap();
        }
        for n in 0..20 {
            sender.send_to(&[1, 2, 3, n], dhcp).unwrap();
        }
        // Let the datagrams land before the loop starts.
        std::thread::sleep(Duration::from_millis(100));
    });
    let mut order = Vec::new();
    let mut buf = [0u8; 2048];
    while order.len() < 240 {
        let Ok((len, _)) = client.recv_from(&mut buf) else {
            break;
        };
        order.push(message_type(&buf[..len]));
    }
    // The unanswered datagrams may still be in the loop's hands.
    std::thread::sleep(Duration::from_millis(300));
    let stats = running.stop();
    assert_eq!(order.len(), 240, "every request answered");
    let first_offer = order.iter().position(|t| *t == Some(2)).unwrap();
    let acks_after = order[first_offer..]
        .iter()
        .filter(|t| **t == Some(5))
        .count();
    assert_eq!(
        (first_offer, acks_after),
        (40, 0),
        "all 40 ACKs come before the first OFFER"
    );
    assert_eq!((stats.offers, stats.acks), (200, 40));
    assert_eq!(stats.silences.get(Reason::NotPxe), 30, "{}", stats.silences);
    assert_eq!(
        stats.silences.get(Reason::Malformed),
        20,
        "{}",
        stats.silences
    );
    assert_eq!(stats.silences.total(), 50, "{}", stats.silences);
}

fn an_address_added_while_running_is_served_from(io: IoMode) {
    netns::require_root();
    let link = Link::new("pa", 83);
    // Answer only on interfaces with an address in 10.77.0.0 (its own
    // prefix, as dnsmasq's `dhcp-range=10.77.0.0,proxy`).
    let ranges = vec![(Ipv4Addr::new(10, 77, 0, 0), None)];
    let running = Running::start(&link, io, ranges, 0, false, |_, _| {});
    let client = client_socket(&link);
    let discover = fixture("ovmf_x64_discover.bin");
    let mut buf = [0u8; 2048];
    client
        .send_to(&with_client(&discover, 1, None), running.dhcp)
        .unwrap();
    assert!(
        client.recv_from(&mut buf).is_err(),
        "answered on an interface outside the proxy range"
    );
    link.server
        .ip(&["addr", "add", "10.77.0.1/24", "dev", &link.server_if]);
    let deadline = Instant::now() + Duration::from_secs(5);
    let offer = loop {
        assert!(
            Instant::now() < deadline,
            "no offer after the address was added"
        );
        client
            .send_to(&with_client(&discover, 2, None), running.dhcp)
            .unwrap();
        if let Ok((len, _)) = client.recv_from(&mut buf) {
            break buf[..len].to_vec();
        }
    };
    // The reply names the new address: siaddr and option 54.
    assert_eq!(&offer[20..24], &[10, 77, 0, 1], "siaddr");
    let opt54 = offer
        .windows(6)
        .skip(240)
        .find(|w| w[0] == 54 && w[1] == 4)
        .expect("option 54");
    assert_eq!(&opt54[2..6], &[10, 77, 0, 1]);
    // And the address removed again: silence again.
    link.server
        .ip(&["addr", "del", "10.77.0.1/24", "dev", &link.server_if]);
    std::thread::sleep(Duration::from_millis(200));
    while client.recv_from(&mut buf).is_ok() {}
    client
        .send_to(&with_client(&discover, 3, None), running.dhcp)
        .unwrap();
    assert!(
        client.recv_from(&mut buf).is_err(),
        "answered after the address went"
    );
    let stats = running.stop();
    assert!(
        stats.silences.get(Reason::OutsideRanges) >= 2,
        "{}",
        stats.silences
    );
}

fn a_delayed_offer_leaves_after_its_delay(io: IoMode) {
    netns::require_root();
    let link = Link::new("pd", 84);
    let running = Running::start(&link, io, Vec::new(), 300, false, |_, _| {});
    let client = client_socket(&link);
    client
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let discover = fixture("ovmf_x64_discover.bin");
    let request = fixture("ovmf_x64_request_4011.bin");
    let mut buf = [0u8; 2048];
    let sent = Instant::now();
    for n in 0..20 {
        client
            .send_to(&with_client(&discover, n, None), running.dhcp)
            .unwrap();
    }
    // An ACK is never delayed: it comes first.
    client
        .send_to(
            &with_client(&request, 99, Some(link.client_ip)),
            running.pxe,
        )
        .unwrap();
    let (len, _) = client.recv_from(&mut buf).expect("the ACK");
    assert_eq!(message_type(&buf[..len]), Some(5));
    assert!(
        sent.elapsed() < Duration::from_millis(300),
        "the ACK waited"
    );
    for _ in 0..20 {
        let (len, _) = client.recv_from(&mut buf).expect("a delayed OFFER");
        assert_eq!(message_type(&buf[..len]), Some(2));
        assert!(
            sent.elapsed() >= Duration::from_millis(300),
            "an OFFER left early"
        );
    }
    let stats = running.stop();
    assert_eq!((stats.offers, stats.acks), (20, 1));
}
