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
//!
//! A window sent in one burst must fit the client's receive buffer. A
//! client with the kernel's default (208 KiB) takes three 64 KB blocks of a
//! 64-block window and loses the rest; an RFC 7440 client then ACKs the
//! last block before the gap and waits, so every window would cost a
//! restart and most of it sent again. The first such gap turns on pacing
//! (`Pace`): the window goes out in bursts of what the client absorbed,
//! spaced by the time it took to absorb them. Each further gap or timeout
//! slows it down (a block fewer per burst, down to one, then wider
//! spacing); each window that arrives whole shortens the spacing, and
//! spacing shortened to its floor ends pacing. Clients that take whole
//! windows never see any of it.

use std::time::{Duration, Instant};

use super::options::Negotiated;
use super::rtt::{RttConfig, RttEstimator};

/// The least time between two window restarts for gaps.
const MIN_RESTART_GAP: Duration = Duration::from_millis(1);
/// Bounds of the spacing between paced bursts: below the floor a timer per
/// burst costs more than it saves, above the ceiling pacing is slower than
/// resending.
const MIN_PACE_GAP: Duration = Duration::from_micros(20);
const MAX_PACE_GAP: Duration = Duration::from_millis(5);
/// A gap in a flight smaller than this is the network's loss, not the
/// client's buffer overflowing: every stack takes that much (Linux's
/// default receive buffer is 208 KiB), and pacing would only slow a lossy
/// link further.
const PACE_MIN_FLIGHT: u64 = 128 << 10;

/// Sending a window in bursts, for a client that cannot take it at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    /// Blocks per burst, less than the window.
    burst: u64,
    /// Time from the start of one burst to the start of the next.
    gap: Duration,
    /// One past the last block of the current burst.
    burst_end: u64,
    /// When the next burst may start.
    resume_at: Instant,
}

impl Pace {
    /// The client fell behind again: one block fewer per burst (and no
    /// more than `at_most`) while there is more than one, else wider
    /// spacing.
    fn slow_down(&mut self, at_most: u64) {
        if self.burst > 1 {
            self.burst = (self.burst - 1).min(at_most).max(1);
        } else {
            self.gap = (self.gap * 3 / 2).min(MAX_PACE_GAP);
        }
    }
}

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
    pace: Option<Pace>,
    outcome: Option<Outcome>,
    pub stats: TransferStats,
}

/// Counters for the per-transfer log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferStats {
    pub blocks_sent: u64,
    pub blocks_resent: u64,
    pub timeouts: u64,
    /// Times a gap made the window go out in paced bursts.
    pub paced: u64,
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
            pace: None,
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

    /// When `on_timeout` must be called next: the retransmission deadline,
    /// or the next paced burst if that comes first.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.outcome.is_some() {
            return None;
        }
        let burst = self
            .pace
            .filter(|p| self.next >= p.burst_end && self.next <= self.window_end())
            .map(|p| p.resume_at);
        match (self.deadline, burst) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether the window currently goes out in paced bursts.
    pub fn is_paced(&self) -> bool {
        self.pace.is_some()
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
        if let Some(pace) = &mut self.pace {
            if self.next >= pace.burst_end {
                if now < pace.resume_at {
                    return None;
                }
                pace.burst_end = self.next + pace.burst;
                pace.resume_at = now + pace.gap;
                // The window's blocks are timed from its latest burst, and
                // never run out while the next burst waits.
                self.deadline = Some(pace.resume_at + self.rtt.rto());
            }
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
        // Paced flights are stretched by the pacing itself: no sample.
        if !self.flight_resent() && self.pace.is_none() {
            self.rtt
                .sample(now.saturating_duration_since(self.flight_start));
        }
        self.rtt.on_progress();
        let flight_first = self.una;
        let whole_window = block >= self.window_end();
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
            let absorbed = block + 1 - flight_first;
            let flight = (sent_high + 1 - flight_first) * self.blksize;
            self.pace_after_gap(absorbed, flight, now);
        } else {
            self.next = self.next.max(self.una);
            if let Some(pace) = &mut self.pace {
                if block == sent_high {
                    // The client took everything sent: the next burst may
                    // start at once.
                    pace.burst_end = self.next;
                    pace.resume_at = now;
                }
                if whole_window {
                    self.pace_after_whole_window();
                }
            }
        }
        self.flight_start = now;
        // Blocks una..next are still in flight: time them from now. When
        // nothing is, the next poll_transmit sends and arms the timer.
        self.deadline = (self.next > self.una).then(|| now + self.rtt.rto());
    }

    /// A gap after `absorbed` blocks of a `flight` of bytes. The first one
    /// in a flight too big for a default receive buffer starts
    /// pacing: bursts of what the client took, spaced by the time it took;
    /// a later one widens the spacing. Either way the resend waits one
    /// spacing, while the client reads and drops what arrived after the
    /// gap.
    fn pace_after_gap(&mut self, absorbed: u64, flight: u64, now: Instant) {
        match &mut self.pace {
            Some(pace) => {
                // Too many at once or too fast.
                pace.slow_down(absorbed);
                pace.burst_end = self.next;
                pace.resume_at = now + pace.gap;
            }
            None if absorbed < self.window && flight >= PACE_MIN_FLIGHT => {
                let took = now.saturating_duration_since(self.flight_start);
                let gap = took.clamp(MIN_PACE_GAP, MAX_PACE_GAP);
                self.stats.paced += 1;
                self.pace = Some(Pace {
                    burst: absorbed.max(1),
                    gap,
                    burst_end: self.next,
                    resume_at: now + gap,
                });
            }
            None => {}
        }
    }

    /// A whole window arrived in order while paced: shorter spacing, and
    /// no pacing once the spacing reaches its floor (a later gap measures
    /// the client afresh).
    fn pace_after_whole_window(&mut self) {
        if let Some(pace) = &mut self.pace {
            pace.gap = pace.gap * 7 / 8;
            if pace.gap < MIN_PACE_GAP {
                self.pace = None;
            }
        }
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
        if let Some(pace) = &mut self.pace {
            // The end of a burst was lost unseen.
            pace.slow_down(u64::MAX);
            pace.burst_end = self.una;
            pace.resume_at = now;
        }
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

    fn blocks(sent: &[Transmit]) -> Vec<u16> {
        sent.iter()
            .filter_map(|tx| match tx {
                Transmit::Data { block, .. } => Some(*block),
                Transmit::Oack => None,
            })
            .collect()
    }

    #[test]
    fn gap_in_a_small_flight_restarts_at_once() {
        // 8 x 512 bytes fits any receive buffer: the gap is the network's.
        let now = Instant::now();
        let mut t = ReadTransfer::new(100_000, &negotiated(512, 8), Timing::default(), now);
        drain(&mut t, now);
        t.on_ack(0, now);
        drain(&mut t, now); // 1..=8
        t.on_ack(3, now);
        assert!(!t.is_paced());
        assert_eq!(blocks(&drain(&mut t, now)), [4, 5, 6, 7, 8, 9, 10, 11]);
        t.on_ack(5, now); // in recovery: slide only, no second restart
        assert_eq!(blocks(&drain(&mut t, now)), [12, 13]);
    }

    #[test]
    fn gap_ack_resends_in_paced_bursts() {
        let start = Instant::now();
        let mut t = ReadTransfer::new(100 << 20, &negotiated(32768, 8), Timing::default(), start);
        drain(&mut t, start);
        t.on_ack(0, start);
        assert_eq!(blocks(&drain(&mut t, start)), [1, 2, 3, 4, 5, 6, 7, 8]);
        let took = Duration::from_micros(300);
        let now = start + took;
        t.on_ack(3, now); // the client took 3 blocks, then saw a gap
        assert!(t.is_paced());
        assert_eq!(t.stats.paced, 1);
        assert!(
            drain(&mut t, now).is_empty(),
            "the resend waits while the client reads what followed the gap"
        );
        // Bursts of what the client took, spaced by the time it took.
        let mut at = now;
        for burst in [[4, 5, 6], [7, 8, 9]] {
            assert_eq!(t.poll_timeout(), Some(at + took));
            at += took;
            t.on_timeout(at);
            assert_eq!(blocks(&drain(&mut t, at)), burst);
        }
        t.on_ack(5, at); // in recovery: slides only, no second restart
        assert!(drain(&mut t, at).is_empty(), "paced, not ACK-clocked");
        at += took;
        t.on_timeout(at);
        assert_eq!(blocks(&drain(&mut t, at)), [10, 11, 12]);
        assert_eq!(t.stats.timeouts, 0, "pacing ticks are not timeouts");
    }

    #[test]
    fn whole_windows_end_pacing() {
        let start = Instant::now();
        let mut t = ReadTransfer::new(100 << 20, &negotiated(32768, 8), Timing::default(), start);
        drain(&mut t, start);
        t.on_ack(0, start);
        drain(&mut t, start);
        let mut now = start + Duration::from_micros(100);
        t.on_ack(4, now); // a gap after 4: bursts of 4
        assert!(t.is_paced());
        let mut windows = 0;
        while t.is_paced() {
            // Send the whole window burst by burst, then ACK all of it.
            while let Some(at) = t.poll_timeout().filter(|_| t.next <= t.window_end()) {
                now = now.max(at);
                t.on_timeout(now);
                drain(&mut t, now);
            }
            t.on_ack((t.sent_end - 1) as u16, now);
            windows += 1;
            assert!(windows < 20, "still paced after {windows} whole windows");
        }
        assert_eq!(t.stats.timeouts, 0);
        assert_eq!(blocks(&drain(&mut t, now)).len(), 8, "whole windows again");
    }

    #[test]
    fn timeout_resends_from_first_unacked_and_backs_off() {
        let start = Instant::now();
        let mut t = ReadTransfer::new(100_000, &negotiated(512, 4), Timing::default(), start);
        drain(&mut t, start);
        t.on_ack(0, start);
        assert_eq!(blocks(&drain(&mut t, start)), [1, 2, 3, 4]);
        let rto = t.rto();
        let deadline = t.poll_timeout().unwrap();
        t.on_timeout(deadline - Duration::from_micros(1));
        assert!(drain(&mut t, deadline).is_empty(), "fired early");
        t.on_timeout(deadline);
        assert_eq!(blocks(&drain(&mut t, deadline)), [1, 2, 3, 4]);
        assert_eq!(t.rto(), rto * 2);
        assert!(
            !t.is_paced(),
            "a lost ACK says nothing of the client's buffer"
        );
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

    /// An RFC 7440 client with a receive buffer of `capacity` blocks that
    /// reads one block per `drain` (after `wake` once the buffer was
    /// empty), as atftp does: it ACKs each whole window, ACKs the last
    /// in-order block once at a gap and ignores the rest until the resend,
    /// and re-ACKs after `client_timeout` without progress. The server
    /// spends `send` per block. Runs the transfer to its end and returns
    /// how long that took.
    struct SlowClient {
        capacity: usize,
        drain: Duration,
        wake: Duration,
        send: Duration,
        client_timeout: Duration,
    }

    impl SlowClient {
        fn run(&self, t: &mut ReadTransfer, start: Instant) -> Duration {
            use std::collections::VecDeque;
            let window = t.window;
            let mut now = start;
            let mut buffer: VecDeque<u64> = VecDeque::new();
            let mut next_read: Option<Instant> = None;
            let mut expected = 1u64;
            let mut acked = 0u64;
            let mut gap_acked = false;
            let mut last_progress = start;
            let mut acks: VecDeque<(Instant, u64)> = VecDeque::new();
            let mut arrivals: VecDeque<(Instant, u64)> = VecDeque::new();
            drain(t, now); // the OACK
            t.on_ack(0, now);
            let mut server_free = now;
            for _ in 0..10_000_000 {
                if t.is_done() {
                    return now - start;
                }
                // Server: handle what is due, then send.
                while acks.front().is_some_and(|(at, _)| *at <= now) {
                    let (_, block) = acks.pop_front().unwrap();
                    t.on_ack(block as u16, now);
                    if t.is_done() {
                        return now - start;
                    }
                }
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.on_timeout(now);
                }
                if server_free <= now {
                    let mut at = now;
                    while let Some(tx) = t.poll_transmit(now) {
                        let Transmit::Data { offset, .. } = tx else {
                            continue;
                        };
                        at += self.send;
                        arrivals.push_back((at, offset / t.blksize + 1));
                    }
                    server_free = at;
                }
                while arrivals.front().is_some_and(|(at, _)| *at <= now) {
                    let (at, block) = arrivals.pop_front().unwrap();
                    if buffer.len() < self.capacity {
                        if buffer.is_empty() && next_read.is_none() {
                            next_read = Some(at + self.wake);
                        }
                        buffer.push_back(block);
                    }
                }
                // Client: read what is due.
                while next_read.is_some_and(|r| r <= now) {
                    let block = buffer.pop_front().unwrap();
                    if block == expected {
                        expected += 1;
                        gap_acked = false;
                        last_progress = now;
                        if expected - 1 - acked >= window || block == t.last_block {
                            acked = expected - 1;
                            acks.push_back((now, acked));
                        }
                    } else if block > expected && !gap_acked {
                        gap_acked = true;
                        acked = expected - 1;
                        acks.push_back((now, acked));
                    }
                    next_read = (!buffer.is_empty()).then(|| now + self.drain);
                }
                if now - last_progress >= self.client_timeout {
                    last_progress = now;
                    acked = expected - 1;
                    acks.push_back((now, acked));
                }
                // Next event.
                let candidates = [
                    acks.front().map(|(at, _)| *at),
                    arrivals.front().map(|(at, _)| *at),
                    t.poll_timeout(),
                    next_read,
                    Some(server_free),
                    Some(last_progress + self.client_timeout),
                ];
                let soonest = candidates.into_iter().flatten().filter(|&c| c > now).min();
                now = soonest.unwrap_or(now + Duration::from_micros(1));
            }
            panic!("simulation did not finish");
        }
    }

    #[test]
    fn small_receive_buffer_gets_paced_bursts() {
        // 64 KB blocks, 64 to a window, into 3 blocks of buffer read at
        // ~3 GB/s: sent in one burst, 61 of every 64 would be lost (without
        // pacing this took 36 s, 944 blocks resent and 84 timeouts; with
        // it, 0.13 s).
        let client = SlowClient {
            capacity: 3,
            drain: Duration::from_micros(20),
            wake: Duration::from_micros(30),
            send: Duration::from_micros(12),
            client_timeout: Duration::from_secs(5),
        };
        let blocks = 2048u64;
        let start = Instant::now();
        let mut t = ReadTransfer::new(
            blocks * 65464,
            &negotiated(65464, 64),
            Timing::default(),
            start,
        );
        let took = client.run(&mut t, start);
        assert_eq!(t.outcome(), Some(Outcome::Complete));
        let floor = client.drain * blocks as u32;
        eprintln!("{:?} (floor {floor:?}), {:?}", took, t.stats);
        assert!(t.stats.blocks_resent < blocks / 4, "{:?}", t.stats);
        assert!(took < floor * 4, "took {took:?}, reading alone {floor:?}");
    }

    #[test]
    fn big_receive_buffer_is_never_paced() {
        let client = SlowClient {
            capacity: 128,
            drain: Duration::from_micros(20),
            wake: Duration::from_micros(30),
            send: Duration::from_micros(12),
            client_timeout: Duration::from_secs(5),
        };
        let start = Instant::now();
        let mut t = ReadTransfer::new(
            2048 * 65464,
            &negotiated(65464, 64),
            Timing::default(),
            start,
        );
        client.run(&mut t, start);
        assert_eq!(t.outcome(), Some(Outcome::Complete));
        assert_eq!(t.stats.paced, 0);
        assert_eq!(t.stats.blocks_resent, 0);
    }
}
