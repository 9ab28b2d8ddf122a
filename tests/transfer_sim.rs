//! The read transfer against a simulated client over a simulated network,
//! in simulated time: loss, duplication and reordering, windows 1..64,
//! block-number rollover and zero-length last blocks. No sockets, no sleeps.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rackboot::tftp::{Limits, Negotiated, Outcome, ReadTransfer, Timing, Transmit};
use rackboot::wire::tftp::Options;

/// A small deterministic PRNG (xorshift64*), so every failure reproduces.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn chance(&mut self, percent: u32) -> bool {
        self.next() % 100 < u64::from(percent)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

#[derive(Clone, Copy)]
struct Network {
    loss: u32,
    duplicate: u32,
    /// Base one-way latency and random extra delay (which reorders).
    latency: Duration,
    jitter: Duration,
}

const LAN: Network = Network {
    loss: 0,
    duplicate: 0,
    latency: Duration::from_micros(100),
    jitter: Duration::ZERO,
};

enum Event {
    ToClient(Transmit),
    ToServer(u16),
    ClientTimer(u64),
}

/// An RFC 7440 receiver, as OVMF and atftp behave: ACK after `window`
/// in-order blocks, after the last block, and at once on a gap; re-ACK on
/// its own timeout.
struct Client {
    blksize: u64,
    window: u64,
    file_len: u64,
    expected: u64, // absolute number of the next block wanted
    since_ack: u64,
    done: bool,
    received_bytes: u64,
    timer_generation: u64,
}

impl Client {
    fn ack_block(&self) -> u16 {
        (self.expected - 1) as u16
    }

    /// Handles a packet; returns the ACK to send, if any.
    fn receive(&mut self, t: Transmit) -> Option<u16> {
        match t {
            Transmit::Oack => (self.expected == 1).then_some(0),
            Transmit::Data { block, offset, len } if !self.done => {
                if block != self.expected as u16 {
                    return Some(self.ack_block()); // gap or duplicate
                }
                // The server must describe exactly the next slice of the file.
                assert_eq!(
                    offset,
                    (self.expected - 1) * self.blksize,
                    "block {} offset",
                    self.expected
                );
                assert_eq!(len as u64, self.blksize.min(self.file_len - offset));
                self.received_bytes += len as u64;
                self.expected += 1;
                self.since_ack += 1;
                if (len as u64) < self.blksize {
                    self.done = true;
                    return Some(self.ack_block());
                }
                if self.since_ack == self.window {
                    self.since_ack = 0;
                    return Some(self.ack_block());
                }
                None
            }
            Transmit::Data { .. } => Some(self.ack_block()), // re-ACK the final block
        }
    }
}

struct Result {
    outcome: Outcome,
    elapsed: Duration,
    client_done: bool,
    sent: u64,
}

fn negotiated(blksize: u16, window: u16) -> Negotiated {
    let req = format!("blksize\0{blksize}\0windowsize\0{window}\0");
    Negotiated::for_read(
        &Options::parse(req.as_bytes()).unwrap(),
        &Limits::default(),
        0,
    )
}

fn simulate(file_len: u64, n: Negotiated, net: Network, seed: u64) -> Result {
    let mut rng = Rng(seed | 1);
    let start = Instant::now();
    let mut now = start;
    let mut server = ReadTransfer::new(file_len, &n, Timing::default(), start);
    let window = if n.needs_oack() {
        u64::from(n.window)
    } else {
        1
    };
    let mut client = Client {
        blksize: u64::from(n.blksize),
        window,
        file_len,
        expected: 1,
        since_ack: 0,
        done: false,
        received_bytes: 0,
        timer_generation: 0,
    };
    let client_timeout = Duration::from_millis(500);
    let mut queue: BinaryHeap<Reverse<(Instant, u64)>> = BinaryHeap::new();
    let mut events: Vec<Option<Event>> = Vec::new();
    let push = |q: &mut BinaryHeap<_>, ev: &mut Vec<Option<Event>>, at: Instant, e: Event| {
        ev.push(Some(e));
        q.push(Reverse((at, ev.len() as u64 - 1)));
    };
    let limit = start + Duration::from_secs(3600);
    loop {
        while let Some(t) = server.poll_transmit(now) {
            let copies = if rng.chance(net.duplicate) { 2 } else { 1 };
            for _ in 0..copies {
                if !rng.chance(net.loss) {
                    let delay = net.latency
                        + Duration::from_nanos(rng.below(net.jitter.as_nanos() as u64 + 1));
                    push(&mut queue, &mut events, now + delay, Event::ToClient(t));
                }
            }
        }
        if server.is_done() && (client.done || !server.outcome().unwrap().is_success()) {
            break;
        }
        let next_event = queue.peek().map(|Reverse((at, _))| *at);
        let next_timer = server.poll_timeout();
        now = match (next_event, next_timer) {
            (Some(e), Some(t)) => e.min(t),
            (Some(e), None) => e,
            (None, Some(t)) => t,
            (None, None) => break,
        };
        assert!(now < limit, "simulation ran an hour without finishing");
        if next_timer == Some(now) {
            server.on_timeout(now);
            continue;
        }
        let Reverse((_, id)) = queue.pop().unwrap();
        match events[id as usize].take().unwrap() {
            Event::ToClient(t) => {
                if let Some(ack) = client.receive(t) {
                    let copies = if rng.chance(net.duplicate) { 2 } else { 1 };
                    for _ in 0..copies {
                        if !rng.chance(net.loss) {
                            let delay = net.latency
                                + Duration::from_nanos(rng.below(net.jitter.as_nanos() as u64 + 1));
                            push(&mut queue, &mut events, now + delay, Event::ToServer(ack));
                        }
                    }
                }
                if !client.done {
                    client.timer_generation += 1;
                    let g = client.timer_generation;
                    push(
                        &mut queue,
                        &mut events,
                        now + client_timeout,
                        Event::ClientTimer(g),
                    );
                }
            }
            Event::ToServer(block) => server.on_ack(block, now),
            Event::ClientTimer(g) => {
                if g == client.timer_generation && !client.done && !rng.chance(net.loss) {
                    push(
                        &mut queue,
                        &mut events,
                        now + net.latency,
                        Event::ToServer(client.ack_block()),
                    );
                }
            }
        }
    }
    if client.done {
        assert_eq!(
            client.received_bytes, file_len,
            "client got a short or long file"
        );
    }
    Result {
        outcome: server.outcome().expect("server still running"),
        elapsed: now - start,
        client_done: client.done,
        sent: server.stats.blocks_sent,
    }
}

#[test]
fn clean_network_all_windows() {
    for window in [1, 2, 4, 8, 16, 32, 64] {
        let r = simulate(1_000_000, negotiated(1468, window), LAN, 1);
        assert!(r.client_done, "window {window}");
        assert_eq!(r.outcome, Outcome::Complete);
        let blocks = 1_000_000 / 1468 + 1;
        assert_eq!(
            r.sent,
            blocks + 1,
            "window {window}: resends on a clean network"
        ); // + OACK
    }
}

#[test]
fn survives_loss_duplication_and_reordering() {
    let nets = [
        Network { loss: 5, ..LAN },
        Network { loss: 20, ..LAN },
        Network {
            duplicate: 20,
            ..LAN
        },
        Network {
            jitter: Duration::from_micros(400),
            ..LAN
        },
        Network {
            loss: 10,
            duplicate: 10,
            latency: Duration::from_millis(1),
            jitter: Duration::from_millis(2),
        },
    ];
    for (i, net) in nets.iter().enumerate() {
        for window in [1, 4, 16, 64] {
            for seed in 1..=3u64 {
                let r = simulate(
                    300_000,
                    negotiated(1468, window),
                    *net,
                    seed * 7919 + i as u64,
                );
                assert!(
                    r.client_done,
                    "net {i} window {window} seed {seed}: client incomplete, {:?}",
                    r.outcome
                );
                assert!(
                    r.outcome.is_success(),
                    "net {i} window {window}: {:?}",
                    r.outcome
                );
            }
        }
    }
}

#[test]
fn loss_costs_milliseconds_not_seconds() {
    // 205 blocks at 5% loss each way: ~20 losses. Fixed 1 s timers would
    // need ~20 s; the adaptive timer should need well under one.
    let r = simulate(300_000, negotiated(1468, 1), Network { loss: 5, ..LAN }, 42);
    assert!(r.client_done);
    assert!(r.elapsed < Duration::from_secs(1), "took {:?}", r.elapsed);
}

#[test]
fn plain_rfc1350_without_options() {
    for len in [0, 1, 511, 512, 513, 1024, 100_000] {
        let r = simulate(
            len,
            Negotiated::plain(),
            Network { loss: 5, ..LAN },
            len + 3,
        );
        assert!(r.client_done, "len {len}");
    }
}

#[test]
fn rollover_past_65535_blocks_with_loss() {
    // 33 MiB at 512 bytes is 67,585 blocks: the wire number wraps once.
    let len = 33 * 1024 * 1024 + 17;
    let r = simulate(
        len,
        negotiated(512, 16),
        Network {
            loss: 1,
            duplicate: 1,
            ..LAN
        },
        9,
    );
    assert!(r.client_done && r.outcome.is_success());
}

#[test]
fn exact_multiple_with_window_ends_in_empty_block() {
    let r = simulate(1468 * 64, negotiated(1468, 16), LAN, 5);
    assert!(r.client_done);
    assert_eq!(r.sent, 64 + 1 + 1); // 64 full blocks, one empty, and the OACK
}

/// A 4 GiB file at blksize 512 with a 64-block window: 8.4 million blocks,
/// the wire number wrapping 128 times. Driven directly (no event queue) to
/// keep it fast; every block's offset is checked.
#[test]
fn four_gib_at_blksize_512() {
    let len: u64 = 4 << 30;
    let now = Instant::now();
    let mut t = ReadTransfer::new(len, &negotiated(512, 64), Timing::default(), now);
    assert_eq!(t.poll_transmit(now), Some(Transmit::Oack));
    t.on_ack(0, now);
    let mut expected: u64 = 1;
    while !t.is_done() {
        let mut last = None;
        while let Some(Transmit::Data {
            block,
            offset,
            len: n,
        }) = t.poll_transmit(now)
        {
            assert_eq!(block, expected as u16);
            assert_eq!(offset, (expected - 1) * 512);
            assert_eq!(n as u64, 512.min(len - offset));
            expected += 1;
            last = Some(block);
        }
        t.on_ack(last.expect("window stalled"), now);
    }
    assert_eq!(t.outcome(), Some(Outcome::Complete));
    assert_eq!(expected - 1, len / 512 + 1);
}

/// 20% loss each way, 8 MiB: every block has a 36% chance of needing a
/// resend, windows almost never arrive whole. Recovery must cost round
/// trips and a few milliseconds, never the timeout ceiling.
#[test]
fn heavy_loss_recovers_in_bounded_time() {
    for seed in 1..=3 {
        let r = simulate(
            8 << 20,
            negotiated(1468, 1),
            Network { loss: 20, ..LAN },
            seed,
        );
        eprintln!("lock-step {:?}", r.elapsed);
        assert!(
            r.client_done && r.elapsed < Duration::from_secs(30),
            "lock-step seed {seed}: {:?}",
            r.elapsed
        );
        let r = simulate(
            8 << 20,
            negotiated(1468, 16),
            Network { loss: 20, ..LAN },
            seed,
        );
        eprintln!("window {:?}", r.elapsed);
        assert!(
            r.client_done && r.elapsed < Duration::from_secs(30),
            "window 16 seed {seed}: {:?}",
            r.elapsed
        );
    }
}
