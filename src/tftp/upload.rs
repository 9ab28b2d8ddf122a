//! The write transfer (WRQ): a client uploading one file, lock-step as in
//! RFC 1350. The caller stores each in-order payload; this machine decides
//! what to acknowledge and when the upload is complete or abandoned.

use std::time::{Duration, Instant};

/// What the caller must do with a received DATA packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataAction {
    /// Append the payload at `offset`, then send `ack`.
    Store {
        offset: u64,
        ack: u16,
        last: bool,
    },
    /// A duplicate of a stored block: re-send `ack` (the client missed it).
    Reack {
        ack: u16,
    },
    /// Out of sequence, or past the size bound: ignore / refuse.
    Ignore,
    TooLarge,
}

#[derive(Debug)]
pub struct WriteTransfer {
    blksize: u64,
    max_size: u64,
    /// Absolute number of the last block stored (0 before any).
    stored: u64,
    complete: bool,
    last_activity: Instant,
    idle_limit: Duration,
}

impl WriteTransfer {
    pub fn new(blksize: u16, max_size: u64, idle_limit: Duration, now: Instant) -> Self {
        WriteTransfer {
            blksize: u64::from(blksize.max(1)),
            max_size,
            stored: 0,
            complete: false,
            last_activity: now,
            idle_limit,
        }
    }

    pub fn is_complete(&self) -> bool {
        self.complete
    }

    pub fn bytes_stored(&self) -> u64 {
        // The caller tracks exact bytes; this bounds them for the size check.
        self.stored * self.blksize
    }

    /// The client went silent for too long.
    pub fn is_idle(&self, now: Instant) -> bool {
        !self.complete && now.saturating_duration_since(self.last_activity) >= self.idle_limit
    }

    pub fn deadline(&self) -> Instant {
        self.last_activity + self.idle_limit
    }

    pub fn on_data(&mut self, wire_block: u16, payload_len: usize, now: Instant) -> DataAction {
        let expected = self.stored + 1;
        if wire_block == expected as u16 && !self.complete {
            let offset = self.stored * self.blksize;
            if offset + payload_len as u64 > self.max_size {
                return DataAction::TooLarge;
            }
            self.stored = expected;
            self.last_activity = now;
            let last = (payload_len as u64) < self.blksize;
            self.complete = last;
            DataAction::Store {
                offset,
                ack: wire_block,
                last,
            }
        } else if wire_block == self.stored as u16 {
            self.last_activity = now;
            DataAction::Reack { ack: wire_block }
        } else {
            DataAction::Ignore
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_in_order_and_reacks_duplicates() {
        let now = Instant::now();
        let mut w = WriteTransfer::new(512, 10_000, Duration::from_secs(5), now);
        assert_eq!(
            w.on_data(1, 512, now),
            DataAction::Store {
                offset: 0,
                ack: 1,
                last: false
            }
        );
        assert_eq!(w.on_data(1, 512, now), DataAction::Reack { ack: 1 });
        assert_eq!(w.on_data(3, 512, now), DataAction::Ignore);
        assert_eq!(
            w.on_data(2, 10, now),
            DataAction::Store {
                offset: 512,
                ack: 2,
                last: true
            }
        );
        assert!(w.is_complete());
    }

    #[test]
    fn refuses_past_the_bound() {
        let now = Instant::now();
        let mut w = WriteTransfer::new(512, 600, Duration::from_secs(5), now);
        assert!(matches!(w.on_data(1, 512, now), DataAction::Store { .. }));
        assert_eq!(w.on_data(2, 512, now), DataAction::TooLarge);
    }
}
