//! The io_uring backend over real loopback sockets, driven by a tiny
//! blocking TFTP client. These fail (never skip) where io_uring is not
//! available: the backend is what they test.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::Duration;

use super::{RingConfig, run_with};
use crate::files::{FileCache, Root, RootOptions};
use crate::reactor::shard::{ShardCore, ShardStats};
use crate::reactor::socket::bind_listen;
use crate::reactor::{IoMode, Server, Settings, Shared};

fn uring_usable() -> bool {
    if let Err(e) = super::probe() {
        panic!("io_uring unavailable here ({e}): these tests need a kernel that allows it");
    }
    true
}

/// Deterministic, non-repeating-looking file contents.
fn contents(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn settings(listen: SocketAddr, shards: usize) -> Settings {
    Settings {
        listen: vec![listen],
        shards,
        io: IoMode::Uring,
        drain: Duration::from_millis(200),
        ..Settings::default()
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> SocketAddr {
    let probe = UdpSocket::bind("127.0.0.1:0").expect("bind an ephemeral port");
    probe.local_addr().expect("local address")
}

/// One shard run directly with a chosen ring configuration.
struct Shard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<io::Result<ShardStats>>>,
    addr: SocketAddr,
}

impl Shard {
    fn start(root: &Path, config: RingConfig) -> Shard {
        let socket = bind_listen("127.0.0.1:0".parse().unwrap()).expect("bind listen socket");
        let addr = socket.local_addr().unwrap();
        let cache = FileCache::new(Root::open(root, RootOptions::default()).unwrap(), 1);
        let shared = Arc::new(Shared::new(settings(addr, 1), cache, Default::default()));
        let for_thread = shared.clone();
        let thread = std::thread::spawn(move || {
            let mut core = ShardCore::new(0, for_thread.clone(), vec![socket]);
            let mut http = crate::reactor::http::HttpShard::new(0, for_thread.clone(), Vec::new());
            run_with(&mut core, &mut http, &for_thread, config)?;
            Ok(core.metrics.tftp.summary())
        });
        Shard {
            shared,
            thread: Some(thread),
            addr,
        }
    }

    /// Stops the shard once its transfers are over (the final ACK may
    /// still be on its way when the client returns).
    fn stop(mut self) -> ShardStats {
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while self.shared.active.load(Ordering::SeqCst) > 0 && std::time::Instant::now() < deadline
        {
            std::thread::sleep(Duration::from_millis(5));
        }
        self.shared.stop.store(true, Ordering::SeqCst);
        let thread = self.thread.take().unwrap();
        thread
            .join()
            .expect("shard panicked")
            .expect("shard failed")
    }
}

impl Drop for Shard {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// --- a minimal TFTP client -------------------------------------------------

const RRQ: u16 = 1;
const DATA: u16 = 3;
const ACK: u16 = 4;
const ERROR: u16 = 5;
const OACK: u16 = 6;

fn opcode(packet: &[u8]) -> u16 {
    u16::from_be_bytes([packet[0], packet[1]])
}

fn rrq(name: &str, options: &[(&str, String)]) -> Vec<u8> {
    let mut p = RRQ.to_be_bytes().to_vec();
    for field in [name, "octet"] {
        p.extend_from_slice(field.as_bytes());
        p.push(0);
    }
    for (k, v) in options {
        p.extend_from_slice(k.as_bytes());
        p.push(0);
        p.extend_from_slice(v.as_bytes());
        p.push(0);
    }
    p
}

fn ack(block: u16) -> [u8; 4] {
    let [a, b] = ACK.to_be_bytes();
    let [c, d] = block.to_be_bytes();
    [a, b, c, d]
}

fn client() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    s
}

/// Receives one datagram; `None` on timeout.
fn recv(socket: &UdpSocket, buf: &mut [u8]) -> Option<(usize, SocketAddr)> {
    match socket.recv_from(buf) {
        Ok(r) => Some(r),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("recv: {e}"),
    }
}

/// Downloads `name`: bare RRQ (blksize 512, lock-step) when `options` is
/// `None`, else blksize/windowsize as given. ACKs the end of each window
/// and re-ACKs on a timeout. Returns the file.
fn download(server: SocketAddr, name: &str, options: Option<(u16, u16)>) -> Vec<u8> {
    let socket = client();
    download_on(&socket, server, name, options, |_, _| {})
}

/// As `download`, calling `each_data(tid, block)` when a DATA arrives.
fn download_on(
    socket: &UdpSocket,
    server: SocketAddr,
    name: &str,
    options: Option<(u16, u16)>,
    mut each_data: impl FnMut(SocketAddr, u16),
) -> Vec<u8> {
    let opts: Vec<(&str, String)> = match options {
        Some((blksize, window)) => vec![
            ("blksize", blksize.to_string()),
            ("windowsize", window.to_string()),
        ],
        None => Vec::new(),
    };
    let (mut blksize, mut window) = (512usize, 1u16);
    socket.send_to(&rrq(name, &opts), server).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut file = Vec::new();
    let mut tid: Option<SocketAddr> = None;
    let mut last_acked: u16 = 0;
    let mut in_window = 0u16;
    let mut timeouts = 0;
    loop {
        let Some((n, from)) = recv(socket, &mut buf) else {
            timeouts += 1;
            assert!(
                timeouts < 20,
                "download of {name} stalled after {} bytes",
                file.len()
            );
            match tid {
                Some(t) => {
                    socket.send_to(&ack(last_acked), t).unwrap();
                }
                None => {
                    socket.send_to(&rrq(name, &opts), server).unwrap();
                }
            }
            in_window = 0;
            continue;
        };
        let packet = &buf[..n];
        if *tid.get_or_insert(from) != from {
            continue; // not our transfer
        }
        match opcode(packet) {
            OACK => {
                let fields: Vec<&[u8]> = packet[2..].split(|&b| b == 0).collect();
                for pair in fields.chunks(2) {
                    if let [k, v] = pair {
                        let value: usize = std::str::from_utf8(v).unwrap().parse().unwrap();
                        match *k {
                            b"blksize" => blksize = value,
                            b"windowsize" => window = value as u16,
                            _ => {}
                        }
                    }
                }
                socket.send_to(&ack(0), from).unwrap();
            }
            DATA => {
                let block = u16::from_be_bytes([packet[2], packet[3]]);
                each_data(from, block);
                if block != last_acked.wrapping_add(1) {
                    continue; // duplicate or out of order: wait for the resend
                }
                file.extend_from_slice(&packet[4..]);
                last_acked = block;
                in_window += 1;
                let last = packet.len() - 4 < blksize;
                if last || in_window >= window {
                    socket.send_to(&ack(block), from).unwrap();
                    in_window = 0;
                }
                if last {
                    return file;
                }
            }
            ERROR => panic!("server error {:?}", String::from_utf8_lossy(&packet[4..])),
            other => panic!("unexpected opcode {other}"),
        }
    }
}

fn root_with(files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes) in files {
        std::fs::write(dir.path().join(name), bytes).unwrap();
    }
    dir
}

// --- tests ---------------------------------------------------------------

#[test]
fn probe_succeeds_on_this_kernel_or_explains_why_not() {
    if let Err(e) = super::probe() {
        assert!(!e.to_string().is_empty());
    }
    // The probe's ring lived and died on another thread: no task work is
    // left to interrupt this thread's next blocking call.
    let socket = client();
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let err = socket.recv_from(&mut [0u8; 4]).unwrap_err();
    assert_ne!(err.kind(), io::ErrorKind::Interrupted);
}

#[test]
fn server_start_serves_a_windowed_download() {
    if !uring_usable() {
        return;
    }
    let bytes = contents(1_500_000, 1);
    let dir = root_with(&[("boot.img", &bytes)]);
    let addr = free_port();
    let cache = FileCache::new(Root::open(dir.path(), RootOptions::default()).unwrap(), 2);
    let server = Server::start(settings(addr, 2), cache, None).expect("start the server");
    assert_eq!(server.backend, IoMode::Uring);
    for _ in 0..4 {
        assert_eq!(download(addr, "boot.img", Some((1468, 8))), bytes);
    }
    let stats = server.shutdown().unwrap();
    assert_eq!(stats.completed, 4);
}

#[test]
fn a_3mb_file_goes_in_lock_step_at_blksize_512() {
    if !uring_usable() {
        return;
    }
    let bytes = contents(3 << 20, 2);
    let dir = root_with(&[("big.bin", &bytes)]);
    let shard = Shard::start(dir.path(), RingConfig::DEFAULT);
    assert_eq!(download(shard.addr, "big.bin", None), bytes);
    let stats = shard.stop();
    assert_eq!((stats.completed, stats.bytes), (1, 3 << 20));
}

#[test]
fn a_packet_from_a_stranger_port_gets_error_5_and_the_transfer_goes_on() {
    if !uring_usable() {
        return;
    }
    let bytes = contents(100_000, 3);
    let dir = root_with(&[("f", &bytes)]);
    let shard = Shard::start(dir.path(), RingConfig::DEFAULT);
    let stranger = client();
    let mut checked = false;
    let got = download_on(&client(), shard.addr, "f", None, |tid, block| {
        if block == 3 && !checked {
            checked = true;
            stranger.send_to(&ack(3), tid).unwrap();
            let mut buf = [0u8; 600];
            let (n, from) = recv(&stranger, &mut buf).expect("an answer to the stranger");
            assert_eq!(from, tid);
            assert_eq!(opcode(&buf[..n]), ERROR);
            assert_eq!(
                u16::from_be_bytes([buf[2], buf[3]]),
                5,
                "ERROR 5 (unknown transfer ID)"
            );
        }
    });
    assert!(checked);
    assert_eq!(got, bytes);
    assert_eq!(shard.stop().completed, 1);
}

#[test]
fn concurrent_downloads_share_the_ring() {
    if !uring_usable() {
        return;
    }
    let files: Vec<(String, Vec<u8>)> = (0..16)
        .map(|i| (format!("f{i}"), contents(200_000 + i * 977, i as u32)))
        .collect();
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, b)| (n.as_str(), b.as_slice()))
        .collect();
    let dir = root_with(&refs);
    let shard = Shard::start(dir.path(), RingConfig::DEFAULT);
    let addr = shard.addr;
    std::thread::scope(|s| {
        for (i, (name, bytes)) in files.iter().enumerate() {
            s.spawn(move || {
                let options = if i % 2 == 0 {
                    Some((1468, 16))
                } else {
                    Some((512, 4))
                };
                for _ in 0..3 {
                    assert_eq!(&download(addr, name, options), bytes, "{name}");
                }
            });
        }
    });
    assert_eq!(shard.stop().completed, 48);
}

#[test]
fn few_slots_and_few_buffers_still_deliver_everything() {
    if !uring_usable() {
        return;
    }
    // 4 slots for windows of 16 (sends wait for slots), 4 receive buffers
    // for bursts of junk (the multishot receive runs dry and is re-armed).
    let config = RingConfig {
        sq_entries: 8,
        send_slots: 4,
        recv_buffers: 4,
        recv_buf_len: 2048,
    };
    let bytes = contents(700_000, 4);
    let dir = root_with(&[("f", &bytes)]);
    let shard = Shard::start(dir.path(), config);
    let junk = client();
    for _ in 0..3 {
        for _ in 0..200 {
            junk.send_to(&[0, 42, 1, 2, 3], shard.addr).unwrap();
        }
        assert_eq!(download(shard.addr, "f", Some((1468, 16))), bytes);
    }
    let stats = shard.stop();
    assert_eq!(stats.completed, 3);
    assert!(stats.malformed > 0);
}

#[test]
fn an_oversized_datagram_is_dropped_and_the_socket_keeps_receiving() {
    if !uring_usable() {
        return;
    }
    let bytes = contents(5000, 5);
    let dir = root_with(&[("f", &bytes)]);
    let shard = Shard::start(dir.path(), RingConfig::DEFAULT);
    let big = client();
    big.send_to(&vec![0u8; 4000], shard.addr).unwrap();
    assert_eq!(download(shard.addr, "f", None), bytes);
    let stats = shard.stop();
    assert_eq!((stats.completed, stats.malformed), (1, 1));
}

#[test]
fn a_missing_file_gets_error_1() {
    if !uring_usable() {
        return;
    }
    let dir = root_with(&[]);
    let shard = Shard::start(dir.path(), RingConfig::DEFAULT);
    let socket = client();
    socket.send_to(&rrq("nope", &[]), shard.addr).unwrap();
    let mut buf = [0u8; 600];
    let (n, from) = recv(&socket, &mut buf).expect("an error reply");
    assert_eq!(from, shard.addr, "a refusal comes from the listen socket");
    assert_eq!(
        (opcode(&buf[..n]), u16::from_be_bytes([buf[2], buf[3]])),
        (ERROR, 1)
    );
    shard.stop();
}

#[test]
fn a_buffer_is_lent_once_and_given_back_once() {
    if !uring_usable() {
        return;
    }
    let ring = super::build_ring(8, 16).unwrap();
    let mut bufs = super::BufRing::register(&ring.submitter(), 0, 4, 256).unwrap();
    {
        let buf = bufs
            .take(1, 100)
            .expect("a buffer the kernel could have filled");
        assert_eq!(buf.bytes().len(), 100);
    } // given back here
    assert_eq!(
        bufs.take(2, 9999).map(|b| b.bytes().len()),
        Some(256),
        "length clamped to the buffer"
    );
    assert!(bufs.take(4, 1).is_none(), "never offered");
    drop(ring);
}
