//! The read transfer: one client downloading one file, as a sans-IO state
//! machine (in the style of quinn-proto). The caller feeds ACKs, ERRORs and
//! clock ticks, and drains what to send with `poll_transmit`.
//!
//! Blocks are numbered with 64-bit absolute numbers internally (0 is the
//! OACK, 1 the first DATA) and only truncated to 16 bits on the wire, so
//! files of any size work: the wire number rolls over from 65535 to 0.
//!
//! Sending follows RFC 7440: up to `window` blocks in flight; an ACK for the
//! last block sent slides the window; an ACK short of it means the client saw
//! a gap, and the window restarts at once from the block after it (at most
//! once per flight, so clients that ACK every block don't trigger storms).
//! A duplicate or old ACK changes nothing: no Sorcerer's Apprentice.

use std::time::{Duration, Instant};

use super::options::Negotiated;
use super::rtt::{RttConfig, RttEstimator};

/// The least time between two window restarts for gaps.
const MIN_RESTART_GAP: Duration = Duration::from_millis(1);

/// What to send next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transmit {
    /// The OACK for the negotiated options.
    Oack,
    /// DATA `block` (wire number) carrying `len` bytes of the file at `offset`.
    Data { block: u16, offset: u64, len: usize },
}

/// How a transfer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Every block, the last one included, was acknowledged.
    Complete,
    /// Every block was sent but the last ACK never came. Clients often
    /// don't retransmit it, so this is not an error.
    CompleteUnconfirmed,
    /// The client sent an ERROR (UEFI firmware probes tsize this way, with 8).
    ClientError(u16),
    /// No progress within the give-up time.
    TimedOut,
    /// The client sent a new request from the same port before finishing.
    Superseded,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Complete | Outcome::CompleteUnconfirmed)
    }
}

/// Timing policy of a transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub rtt: RttConfig,
    /// A transfer with no progress for this long is abandoned.
    pub give_up: Duration,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            rtt: RttConfig::default(),
            give_up: Duration::from_secs(10),
        }
    }
}

impl Timing {
    /// The client's negotiated timeout caps back-off (RFC 2349): it expects
    /// a retransmission within that many seconds.
    pub fn for_negotiated(mut self, negotiated: &Negotiated) -> Timing {
        if let Some(secs) = negotiated.timeout {
            self.rtt.max = Duration::from_secs(u64::from(secs));
            self.give_up = self.give_up.max(self.rtt.max * 3);
        }
        self
    }
}

#[derive(Debug)]
pub struct ReadTransfer {
    file_len: u64,
    blksize: u64,
    window: u64,
    /// Absolute number of the final block (short, possibly empty).
    last_block: u64,
    /// First unacknowledged block: every block below it is acknowledged.
    una: u64,
    /// Next block `poll_transmit` hands out.
    next: u64,
    /// One past the highest block sent so far.
    sent_end: u64,
    /// While `una <= recover`, a gap was already answered: ACKs only slide,
    /// until a round trip has passed since `restarted_at`.
    recover: Option<u64>,
    restarted_at: Instant,
    /// When the current flight began (for round-trip samples).
    flight_start: Instant,
    deadline: Option<Instant>,
    last_progress: Instant,
    rtt: RttEstimator,
    timing: Timing,
    outcome: Option<Outcome>,
    pub stats: TransferStats,
}

/// Counters for the per-transfer log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferStats {
    pub blocks_sent: u64,
    pub blocks_resent: u64,
    pub timeouts: u64,
}

impl ReadTransfer {
    /// Starts a transfer; the first `poll_transmit` yields the OACK when
    /// options were accepted, DATA 1 otherwise.
    pub fn new(
        file_len: u64,
        negotiated: &Negotiated,
        timing: Timing,
        now: Instant,
    ) -> ReadTransfer {
        let oack = negotiated.needs_oack();
        let blksize = u64::from(negotiated.blksize.max(1));
        let first = if oack { 0 } else { 1 };
        let timing = timing.for_negotiated(negotiated);
        ReadTransfer {
            file_len,
            blksize,
            // Without an OACK the client knows nothing of windows: lock-step.
            window: if oack {
                u64::from(negotiated.window.max(1))
            } else {
                1
            },
            last_block: file_len / blksize + 1,
            una: first,
            next: first,
            sent_end: first,
            recover: None,
            restarted_at: now,
            flight_start: now,
            deadline: None,
            last_progress: now,
            rtt: RttEstimator::new(timing.rtt),
            timing,
            outcome: None,
            stats: TransferStats::default(),
        }
    }

    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    pub fn is_done(&self) -> bool {
        self.outcome.is_some()
    }

    /// When `on_timeout` must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            None
        } else {
            self.deadline
        }
    }

    pub fn rto(&self) -> Duration {
        self.rtt.rto()
    }

    /// Whether every block, the last one included, has been sent.
    pub fn all_sent(&self) -> bool {
        self.sent_end > self.last_block
    }

    /// Bytes of the file acknowledged so far.
    pub fn bytes_acked(&self) -> u64 {
        (self.una.saturating_sub(1) * self.blksize).min(self.file_len)
    }

    /// Whether the current flight holds resent blocks: the first
    /// unacknowledged one lies in the range resent after a gap or timeout.
    /// Karn's rule: no round-trip sample from such a flight.
    fn flight_resent(&self) -> bool {
        self.recover.is_some_and(|r| self.una <= r)
    }

    /// The last block the window currently allows.
    fn window_end(&self) -> u64 {
        if self.una == 0 {
            0 // the OACK travels alone: data waits for ACK 0
        } else {
            (self.una + self.window - 1).min(self.last_block)
        }
    }

    /// The next packet to send, if the window allows one.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit> {
        if self.outcome.is_some() || self.next > self.window_end() {
            return None;
        }
        let block = self.next;
        self.next += 1;
        if block < self.sent_end {
            self.stats.blocks_resent += 1;
        }
        self.sent_end = self.sent_end.max(block + 1);
        self.stats.blocks_sent += 1;
        if self.deadline.is_none() {
            self.deadline = Some(now + self.rtt.rto());
        }
        if block == 0 {
            return Some(Transmit::Oack);
        }
        let offset = (block - 1) * self.blksize;
        let len = self.blksize.min(self.file_len - offset) as usize;
        Some(Transmit::Data {
            block: block as u16,
            offset,
            len,
        })
    }

    /// An ACK from the client. Old and duplicate ACKs are ignored.
    pub fn on_ack(&mut self, wire_block: u16, now: Instant) {
        if self.outcome.is_some() {
            return;
        }
        // Map the 16-bit number to the absolute block at or below the
        // highest one sent.
        let Some(sent_high) = self.sent_end.checked_sub(1) else {
            return;
        };
        let back = u64::from((sent_high as u16).wrapping_sub(wire_block));
        let Some(block) = sent_high.checked_sub(back) else {
            return;
        };
        if block < self.una {
            return; // duplicate or old: never a resend
        }
        if !self.flight_resent() {
            self.rtt
                .sample(now.saturating_duration_since(self.flight_start));
        }
        self.rtt.on_progress();
        self.una = block + 1;
        self.last_progress = now;
        if self.una > self.last_block {
            self.outcome = Some(Outcome::Complete);
            self.deadline = None;
            return;
        }
        // A client that ACKs every block also ACKs short of what was sent;
        // answering a gap at most once per round trip keeps such clients
        // from triggering a window per ACK, while an RFC 7440 client, which
        // drops everything after a gap, gets each new hole filled at once.
        let round_trip = self
            .rtt
            .srtt()
            .unwrap_or(self.rtt.rto() / 2)
            .max(MIN_RESTART_GAP);
        let in_recovery = self.flight_resent() && now < self.restarted_at + round_trip;
        if block < sent_high && !in_recovery {
            // The client ACKed short of what was sent: it saw a gap.
            self.recover = Some(sent_high);
            self.restarted_at = now;
            self.next = self.una;
        } else {
            self.next = self.next.max(self.una);
        }
        self.flight_start = now;
        // Blocks una..next are still in flight: time them from now. When
        // nothing is, the next poll_transmit sends and arms the timer.
        self.deadline = (self.next > self.una).then(|| now + self.rtt.rto());
    }

    /// An ERROR from the client ends the transfer quietly.
    pub fn on_error(&mut self, code: u16) {
        if self.outcome.is_none() {
            self.outcome = Some(Outcome::ClientError(code));
            self.deadline = None;
        }
    }

    /// The deadline passed: resend from the first unacknowledged block with
    /// a doubled timeout, or give up.
    pub fn on_timeout(&mut self, now: Instant) {
        if self.outcome.is_some() || self.deadline.is_none_or(|d| now < d) {
            return;
        }
        self.stats.timeouts += 1;
        // The final phase is like any other: a client whose last ACK never
        // comes is only called complete after the give-up time, because the
        // last block itself may be what was lost.
        let final_sent = self.sent_end > self.last_block;
        if now.saturating_duration_since(self.last_progress) >= self.timing.give_up {
            self.outcome = Some(if final_sent {
                Outcome::CompleteUnconfirmed
            } else {
                Outcome::TimedOut
            });
        }
        if self.outcome.is_some() {
            self.deadline = None;
            return;
        }
        self.rtt.back_off();
        self.next = self.una;
        self.recover = self.sent_end.checked_sub(1);
        self.restarted_at = now;
        self.flight_start = now;
        self.deadline = None;
    }
}

#[cfg(test)]
#[allow(clippy::octal_escapes)] // "\0" then digits: NUL-separated option strings
mod tests {
    use super::*;
    use crate::tftp::options::Limits;
    use crate::wire::tftp::Options;

    fn negotiated(blksize: u16, window: u16) -> Negotiated {
        let mut req = Vec::new();
        for (k, v) in [
            ("blksize", blksize.to_string()),
            ("windowsize", window.to_string()),
        ] {
            req.extend_from_slice(k.as_bytes());
            req.push(0);
            req.extend_from_slice(v.as_bytes());
            req.push(0);
        }
        let opts = Options::parse(&req).unwrap();
        Negotiated::for_read(&opts, &Limits::default(), 0)
    }

    fn drain(t: &mut ReadTransfer, now: Instant) -> Vec<Transmit> {
        std::iter::from_fn(|| t.poll_transmit(now)).collect()
    }

    #[test]
    fn plain_lock_step_with_short_last_block() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(1000, &Negotiated::plain(), Timing::default(), now);
        assert_eq!(
            drain(&mut t, now),
            vec![Transmit::Data {
                block: 1,
                offset: 0,
                len: 512
            }]
        );
        t.on_ack(1, now);
        assert_eq!(
            drain(&mut t, now),
            vec![Transmit::Data {
                block: 2,
                offset: 512,
                len: 488
            }]
        );
        t.on_ack(2, now);
        assert_eq!(t.outcome(), Some(Outcome::Complete));
    }

    #[test]
    fn exact_multiple_ends_with_empty_block() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(1024, &Negotiated::plain(), Timing::default(), now);
        for block in 1..=2 {
            assert_eq!(drain(&mut t, now).len(), 1);
            t.on_ack(block, now);
        }
        assert_eq!(
            drain(&mut t, now),
            vec![Transmit::Data {
                block: 3,
                offset: 1024,
                len: 0
            }]
        );
        t.on_ack(3, now);
        assert_eq!(t.outcome(), Some(Outcome::Complete));
    }

    #[test]
    fn oack_then_window() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(10_000, &negotiated(1000, 4), Timing::default(), now);
        assert_eq!(drain(&mut t, now), vec![Transmit::Oack]);
        t.on_ack(0, now);
        let sent = drain(&mut t, now);
        assert_eq!(sent.len(), 4);
        assert_eq!(
            sent[3],
            Transmit::Data {
                block: 4,
                offset: 3000,
                len: 1000
            }
        );
    }

    #[test]
    fn duplicate_ack_sends_nothing() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(100_000, &negotiated(512, 8), Timing::default(), now);
        drain(&mut t, now);
        t.on_ack(0, now);
        assert_eq!(drain(&mut t, now).len(), 8);
        t.on_ack(8, now);
        assert_eq!(drain(&mut t, now).len(), 8);
        for _ in 0..5 {
            t.on_ack(8, now);
            t.on_ack(0, now);
            assert!(
                drain(&mut t, now).is_empty(),
                "old or duplicate ACK caused a send"
            );
        }
    }

    #[test]
    fn gap_ack_restarts_window_once() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(100_000, &negotiated(512, 8), Timing::default(), now);
        drain(&mut t, now);
        t.on_ack(0, now);
        drain(&mut t, now); // 1..=8
        t.on_ack(3, now); // client saw a gap after 3
        let resent = drain(&mut t, now);
        assert_eq!(
            resent.first(),
            Some(&Transmit::Data {
                block: 4,
                offset: 1536,
                len: 512
            })
        );
        assert_eq!(resent.len(), 8); // 4..=11
        t.on_ack(5, now); // in recovery: slide only, no second restart
        assert_eq!(
            drain(&mut t, now),
            vec![
                Transmit::Data {
                    block: 12,
                    offset: 11 * 512,
                    len: 512
                },
                Transmit::Data {
                    block: 13,
                    offset: 12 * 512,
                    len: 512
                },
            ]
        );
    }

    #[test]
    fn timeout_resends_from_first_unacked_and_backs_off() {
        let start = Instant::now();
        let mut t = ReadTransfer::new(100_000, &negotiated(512, 4), Timing::default(), start);
        drain(&mut t, start);
        t.on_ack(0, start);
        drain(&mut t, start);
        t.on_ack(2, start); // gap: restart from 3
        drain(&mut t, start);
        let rto = t.rto();
        let deadline = t.poll_timeout().unwrap();
        t.on_timeout(deadline - Duration::from_micros(1));
        assert!(drain(&mut t, deadline).is_empty(), "fired early");
        t.on_timeout(deadline);
        assert_eq!(
            drain(&mut t, deadline).first(),
            Some(&Transmit::Data {
                block: 3,
                offset: 1024,
                len: 512
            })
        );
        assert_eq!(t.rto(), rto * 2);
    }

    #[test]
    fn gives_up_after_bounded_silence() {
        let mut now = Instant::now();
        let mut t = ReadTransfer::new(100_000, &Negotiated::plain(), Timing::default(), now);
        let mut sends = 0;
        while !t.is_done() {
            sends += drain(&mut t, now).len();
            now = t.poll_timeout().unwrap();
            t.on_timeout(now);
        }
        assert_eq!(t.outcome(), Some(Outcome::TimedOut));
        assert!(sends < 20, "{sends} retransmissions");
        assert!(t.last_progress + Timing::default().give_up <= now);
        assert!(now - t.last_progress < Timing::default().give_up + Duration::from_secs(2));
    }

    #[test]
    fn lost_final_ack_is_complete_unconfirmed() {
        let mut now = Instant::now();
        let mut t = ReadTransfer::new(100, &Negotiated::plain(), Timing::default(), now);
        drain(&mut t, now);
        while !t.is_done() {
            now = t.poll_timeout().unwrap();
            t.on_timeout(now);
            drain(&mut t, now);
        }
        assert_eq!(t.outcome(), Some(Outcome::CompleteUnconfirmed));
    }

    #[test]
    fn client_error_ends_quietly() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(100, &negotiated(512, 1), Timing::default(), now);
        drain(&mut t, now);
        t.on_error(8);
        assert_eq!(t.outcome(), Some(Outcome::ClientError(8)));
        assert!(drain(&mut t, now).is_empty());
        assert_eq!(t.poll_timeout(), None);
    }

    #[test]
    fn ack_beyond_sent_is_ignored() {
        let now = Instant::now();
        let mut t = ReadTransfer::new(100_000, &Negotiated::plain(), Timing::default(), now);
        drain(&mut t, now);
        t.on_ack(2, now);
        t.on_ack(100, now);
        assert!(drain(&mut t, now).is_empty());
        assert!(!t.is_done());
    }

    #[test]
    fn rtt_converges_to_link() {
        let mut now = Instant::now();
        let mut t = ReadTransfer::new(1 << 20, &Negotiated::plain(), Timing::default(), now);
        for block in 1..=100u16 {
            drain(&mut t, now);
            now += Duration::from_micros(200);
            t.on_ack(block, now);
        }
        assert_eq!(t.rto(), Timing::default().rtt.min);
    }
}
