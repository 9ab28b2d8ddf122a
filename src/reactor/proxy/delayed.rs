//! Replies held back by `dhcp-reply-delay` (or `[proxy] reply_delay`):
//! a fixed pool of reply buffers and a heap of due times, allocated when
//! the first delayed reply arrives and never grown after, so holding a
//! reply costs no allocation. When the pool is full the reply is dropped
//! (and counted): a delay exists to let another server answer first, and a
//! client retries.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::net::SocketAddrV4;
use std::time::Instant;

use super::batch::Arrival;
use crate::dhcp::{MAX_REPLY_LEN, ServerPort};

/// Replies held at once, at most.
pub const CAPACITY: usize = 1024;

struct Held {
    bytes: [u8; MAX_REPLY_LEN],
    len: usize,
    port: ServerPort,
    to: SocketAddrV4,
    arrival: Arrival,
}

/// The held replies.
#[derive(Default)]
pub struct DelayQueue {
    slots: Vec<Held>,
    free: Vec<u32>,
    due: BinaryHeap<Reverse<(Instant, u32)>>,
}

impl DelayQueue {
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }

    /// When the next reply is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.peek().map(|Reverse((at, _))| *at)
    }

    /// Holds `bytes` until `at`; `false` when the queue is full.
    pub fn hold(
        &mut self,
        at: Instant,
        bytes: &[u8],
        port: ServerPort,
        to: SocketAddrV4,
        arrival: Arrival,
    ) -> bool {
        if self.slots.capacity() == 0 {
            self.slots.reserve_exact(CAPACITY);
            self.free.reserve_exact(CAPACITY);
            self.due.reserve(CAPACITY);
        }
        let index = match self.free.pop() {
            Some(i) => i,
            None if self.slots.len() < CAPACITY => {
                self.slots.push(Held {
                    bytes: [0; MAX_REPLY_LEN],
                    len: 0,
                    port,
                    to,
                    arrival,
                });
                (self.slots.len() - 1) as u32
            }
            None => return false,
        };
        let held = &mut self.slots[index as usize];
        let len = bytes.len().min(MAX_REPLY_LEN);
        held.bytes[..len].copy_from_slice(&bytes[..len]);
        held.len = len;
        held.port = port;
        held.to = to;
        held.arrival = arrival;
        self.due.push(Reverse((at, index)));
        true
    }

    /// Hands each reply due by `now` to `send` (bytes, source port,
    /// destination, arrival), while `send` says there is room.
    pub fn release(
        &mut self,
        now: Instant,
        mut send: impl FnMut(&[u8], ServerPort, SocketAddrV4, &Arrival) -> bool,
    ) {
        while let Some(&Reverse((at, index))) = self.due.peek() {
            if at > now {
                break;
            }
            let held = &self.slots[index as usize];
            if !send(&held.bytes[..held.len], held.port, held.to, &held.arrival) {
                break;
            }
            self.due.pop();
            self.free.push(index);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv4Addr;
    use std::time::Duration;

    #[test]
    fn replies_come_out_in_due_order_and_the_pool_is_bounded() {
        let mut q = DelayQueue::default();
        let t0 = Instant::now();
        let to = SocketAddrV4::new(Ipv4Addr::BROADCAST, 68);
        let arrival = Arrival {
            from: to,
            ifindex: 1,
            local: Ipv4Addr::LOCALHOST,
        };
        for i in 0..CAPACITY {
            let at = t0 + Duration::from_millis((CAPACITY - i) as u64);
            assert!(q.hold(at, &[i as u8; 3], ServerPort::Dhcp, to, arrival));
        }
        assert!(!q.hold(t0, &[0], ServerPort::Dhcp, to, arrival), "full");
        assert_eq!(q.next_due(), Some(t0 + Duration::from_millis(1)));
        let mut got = Vec::new();
        q.release(t0 + Duration::from_millis(2), |b, _, _, _| {
            got.push(b[0]);
            true
        });
        assert_eq!(got, [(CAPACITY - 1) as u8, (CAPACITY - 2) as u8]);
        // A send with no room keeps the reply for later.
        q.release(t0 + Duration::from_secs(5), |_, _, _, _| false);
        assert!(!q.is_empty());
        // Freed slots are reused, not grown.
        assert!(q.hold(t0, &[7], ServerPort::Pxe, to, arrival));
        let mut n = 0;
        q.release(t0 + Duration::from_secs(5), |_, _, _, _| {
            n += 1;
            true
        });
        assert_eq!(n, CAPACITY - 1);
        assert!(q.is_empty());
    }
}
