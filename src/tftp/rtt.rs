//! Retransmission timer in the spirit of RFC 6298: smoothed round trip and
//! its variance, exponential back-off on repeated timeouts. On a LAN the
//! round trip is well under a millisecond, so a lost packet costs a few
//! milliseconds instead of the fixed seconds of classic TFTP servers.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RttConfig {
    /// Timeout before any round trip has been measured.
    pub initial: Duration,
    /// Floor: below this, scheduling jitter makes retransmits spurious.
    /// Low, because the estimate itself rises for slow clients, and a
    /// spurious resend costs one duplicate block (duplicate ACKs never
    /// cause resends).
    pub min: Duration,
    /// Ceiling for back-off (the client's negotiated timeout, if any).
    pub max: Duration,
}

impl Default for RttConfig {
    fn default() -> Self {
        RttConfig {
            initial: Duration::from_millis(200),
            min: Duration::from_millis(2),
            max: Duration::from_secs(1),
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct RttEstimator {
    config: RttConfig,
    srtt: Option<Duration>,
    rttvar: Duration,
    /// The timeout the measurements call for, before any back-off.
    base: Duration,
    /// Consecutive back-offs since the last progress.
    backoff: u32,
}

impl RttEstimator {
    pub fn new(config: RttConfig) -> Self {
        let base = config.initial.clamp(config.min, config.max.max(config.min));
        RttEstimator {
            config,
            srtt: None,
            rttvar: Duration::ZERO,
            base,
            backoff: 0,
        }
    }

    fn ceiling(&self) -> Duration {
        self.config.max.max(self.config.min)
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> Duration {
        let factor = 1u32 << self.backoff.min(16);
        self.base.saturating_mul(factor).min(self.ceiling())
    }

    pub fn srtt(&self) -> Option<Duration> {
        self.srtt
    }

    /// Feeds one round-trip measurement (never from a retransmitted packet:
    /// Karn's rule is the caller's job).
    pub fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let delta = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + delta) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
        let srtt = self.srtt.unwrap_or(rtt);
        self.base = (srtt + self.rttvar * 4).clamp(self.config.min, self.ceiling());
        self.backoff = 0;
    }

    /// Doubles the timeout after a retransmission timeout.
    pub fn back_off(&mut self) {
        if self.rto() < self.ceiling() {
            self.backoff += 1;
        }
    }

    /// New data got through: the path works, so the back-off ends (as TCP
    /// does), even when Karn's rule allows no new measurement. Under heavy
    /// loss, flights without a resend are rare; without this the timeout
    /// would ratchet up to its ceiling and every loss would cost a second.
    pub fn on_progress(&mut self) {
        self.backoff = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converges_to_floor_on_fast_links() {
        let mut r = RttEstimator::new(RttConfig::default());
        assert_eq!(r.rto(), Duration::from_millis(200));
        for _ in 0..20 {
            r.sample(Duration::from_micros(100));
        }
        assert_eq!(r.rto(), Duration::from_millis(2));
    }

    #[test]
    fn tracks_slow_links_and_backs_off_to_ceiling() {
        let mut r = RttEstimator::new(RttConfig::default());
        r.sample(Duration::from_millis(100));
        assert_eq!(r.rto(), Duration::from_millis(300));
        r.back_off();
        assert_eq!(r.rto(), Duration::from_millis(600));
        r.back_off();
        r.back_off();
        assert_eq!(r.rto(), Duration::from_secs(1));
        r.on_progress();
        assert_eq!(r.rto(), Duration::from_millis(300));
    }
}
