//! The steady-state TFTP packet path allocates nothing: an ACK in, the
//! next window out, through the real shard core (parse, transfer machine,
//! GSO batching, timer re-arm), with a backend that only counts sends.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rackboot::files::{FileCache, Root, RootOptions};
use rackboot::reactor::shard::{Backend, MAX_SEGMENTS, Outgoing, ShardCore};
use rackboot::reactor::socket::RecvMeta;
use rackboot::reactor::{Settings, Shared};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// Counts only on the thread that plays the shard, while measuring:
    /// background threads (file pre-faulting) allocate on their own.
    static COUNTING: Cell<bool> = const { Cell::new(false) };
}

fn count() {
    if COUNTING.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

// SAFETY: forwards to the system allocator unchanged, only counting.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Records the last DATA block sent and counts packets; ends file gates as
/// a real backend would once "the kernel" is done.
struct Recorder {
    shard: usize,
    packets: u64,
    last_block: u16,
    gso: bool,
}

impl Backend for Recorder {
    fn watch(&mut self, _key: usize, _fd: RawFd) {}
    fn unwatch(&mut self, _key: usize, _fd: RawFd) {}
    fn send(&mut self, packet: Outgoing<'_>) {
        self.packets += 1 + packet.more.len() as u64;
        let last_head = packet.more.last().map_or(packet.head, |s| &s.head[..]);
        if last_head.len() >= 4 && last_head[1] == 3 {
            self.last_block = u16::from_be_bytes([last_head[2], last_head[3]]);
        }
        if let Some((file, _)) = packet.payload {
            file.gate().end(self.shard);
        }
    }
    fn max_segments(&self) -> usize {
        if self.gso { MAX_SEGMENTS } else { 1 }
    }
}

fn rrq(options: &[(&str, &str)]) -> Vec<u8> {
    let mut p = vec![0, 1];
    for s in ["big.bin", "octet"]
        .into_iter()
        .chain(options.iter().flat_map(|(k, v)| [*k, *v]))
    {
        p.extend_from_slice(s.as_bytes());
        p.push(0);
    }
    p
}

fn steady_state_allocations(options: &[(&str, &str)], gso: bool) -> (u64, u64) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("big.bin"), vec![0x5a; 64 << 20]).unwrap();
    let cache = FileCache::new(Root::open(dir.path(), RootOptions::default()).unwrap(), 1);
    let listen = UdpSocket::bind("127.0.0.1:0").unwrap();
    // The real interface table, so the MTU clamp reads it as it does in
    // the server.
    let (interfaces, _) = rackboot::reactor::netlink::start();
    let settings = Settings {
        listen: vec![listen.local_addr().unwrap()],
        ..Settings::default()
    };
    let shared = Arc::new(Shared::new(settings, cache, interfaces));
    let mut core = ShardCore::new(0, shared, vec![listen]);
    let mut io = Recorder {
        shard: 0,
        packets: 0,
        last_block: 0,
        gso,
    };
    core.start(&mut io);
    let client: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    let meta = RecvMeta {
        from: client,
        local_ip: None,
        ifindex: 0,
    };
    let mut now = Instant::now();
    core.on_datagram(&mut io, 0, meta, &rrq(options), now);
    // The transfer's own socket is the endpoint after the listen socket.
    let transfer_key = 1;
    let transfer_meta = meta;
    let mut ack = [0u8, 4, 0, 0];
    let mut exchange = |core: &mut ShardCore, io: &mut Recorder, now: Instant| {
        ack[2..].copy_from_slice(&io.last_block.to_be_bytes());
        core.on_datagram(io, transfer_key, transfer_meta, &ack, now);
        core.on_timers(io, now);
    };
    // Warm up: the first windows may size the timer heap and the like.
    for _ in 0..200 {
        now += Duration::from_micros(100);
        exchange(&mut core, &mut io, now);
    }
    let before_alloc = ALLOCATIONS.load(Ordering::Relaxed);
    let before_packets = io.packets;
    COUNTING.with(|c| c.set(true));
    for _ in 0..2_000 {
        now += Duration::from_micros(100);
        exchange(&mut core, &mut io, now);
    }
    COUNTING.with(|c| c.set(false));
    (
        ALLOCATIONS.load(Ordering::Relaxed) - before_alloc,
        io.packets - before_packets,
    )
}

#[test]
fn ack_to_data_allocates_nothing() {
    for (options, gso) in [
        (&[][..], false),
        (&[("blksize", "1468")][..], false),
        (&[("blksize", "1468"), ("windowsize", "16")][..], true),
        (&[("blksize", "1468"), ("windowsize", "16")][..], false),
    ] {
        let (allocations, packets) = steady_state_allocations(options, gso);
        assert!(
            packets >= 2_000,
            "{options:?}: the transfer stalled after {packets} packets"
        );
        assert_eq!(
            allocations, 0,
            "{options:?} gso={gso}: {allocations} allocations for {packets} packets"
        );
    }
}
