//! The read transfer under any sequence of ACKs, ERRORs and clock ticks:
//! never a block past the end of the file, never outside the window, and
//! it always finishes once the clock runs long enough.
#![no_main]

use std::time::{Duration, Instant};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use rackboot::tftp::{Limits, Negotiated, ReadTransfer, Timing, Transmit};
use rackboot::wire::tftp::Options;

#[derive(Arbitrary, Debug)]
enum Event {
    Ack(u16),
    /// ACK the block `n` back from the last one sent (plausible ACKs).
    AckRecent(u8),
    Error(u16),
    Tick(u16),
}

#[derive(Arbitrary, Debug)]
struct Input {
    file_len: u32,
    blksize: u16,
    window: u8,
    events: Vec<Event>,
}

fuzz_target!(|input: Input| {
    let req = format!("blksize\0{}\0windowsize\0{}\0", input.blksize, input.window);
    let n = Negotiated::for_read(
        &Options::parse(req.as_bytes()).unwrap(),
        &Limits::default(),
        0,
    );
    let file_len = u64::from(input.file_len);
    let start = Instant::now();
    let mut now = start;
    let mut t = ReadTransfer::new(file_len, &n, Timing::default(), now);
    let window = u64::from(n.window);
    let blksize = u64::from(n.blksize);
    let mut last_sent: u16 = 0;
    // Everything sent lies in the file, at or after the first unacknowledged
    // byte, within one window of it, and no more than a window at once.
    let mut drain = |t: &mut ReadTransfer, now: Instant, last_sent: &mut u16| {
        let acked = t.bytes_acked();
        let mut burst = 0u64;
        while let Some(tx) = t.poll_transmit(now) {
            if let Transmit::Data { block, offset, len } = tx {
                assert!(
                    offset + len as u64 <= file_len,
                    "block past the end of the file"
                );
                assert!(len as u64 <= blksize);
                assert!(offset >= acked, "resent an acknowledged block");
                assert!(offset < acked + window * blksize, "outside the window");
                *last_sent = block;
            }
            burst += 1;
            assert!(burst <= window, "more than a window at once");
        }
    };
    drain(&mut t, now, &mut last_sent);
    for event in input.events {
        match event {
            Event::Ack(b) => t.on_ack(b, now),
            Event::AckRecent(back) => t.on_ack(last_sent.wrapping_sub(u16::from(back)), now),
            Event::Error(code) => t.on_error(code),
            Event::Tick(ms) => {
                now += Duration::from_millis(u64::from(ms));
                t.on_timeout(now);
            }
        }
        drain(&mut t, now, &mut last_sent);
        if t.is_done() {
            return;
        }
    }
    // With no more input the transfer must give up in bounded time. A paced
    // transfer wakes once per burst (down to one block per burst), so a
    // window of 255 blocks takes up to 256 steps per retransmission.
    for _ in 0..100_000 {
        let Some(deadline) = t.poll_timeout() else {
            break;
        };
        now = now.max(deadline);
        t.on_timeout(now);
        drain(&mut t, now, &mut last_sent);
    }
    assert!(t.is_done(), "transfer never finished");
    assert!(now - start < Duration::from_secs(3600));
});
