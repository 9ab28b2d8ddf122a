//! Single-writer metric cells: the one thread that owns a cell adds to it
//! with a plain load and store (no read-modify-write, no lock, no
//! allocation; on x86 two `mov`s), and a scrape on another thread reads
//! it. `Relaxed` is enough: each cell is read on its own, and a scrape
//! that misses the last few increments shows them on the next.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// A monotonic count, written by one thread only.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(self.0.load(Relaxed).wrapping_add(n), Relaxed);
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A level that goes up and down, written by one thread only.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    #[inline]
    pub fn up(&self) {
        self.set(self.get().wrapping_add(1));
    }

    #[inline]
    pub fn down(&self) {
        self.set(self.get().saturating_sub(1));
    }

    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// A histogram over fixed upper bounds, written by one thread only. The
/// sum is kept in integer micro-units so it can be a plain counter too.
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Observations at or below each bound (not cumulative), then above all.
    buckets: Box<[Counter]>,
    sum_micros: Counter,
    count: Counter,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            buckets: (0..=bounds.len()).map(|_| Counter::default()).collect(),
            sum_micros: Counter::default(),
            count: Counter::default(),
        }
    }

    #[inline]
    pub fn observe(&self, v: f64) {
        let i = self.bounds.partition_point(|&b| b < v);
        self.buckets[i].inc();
        self.sum_micros.add((v.max(0.0) * 1e6) as u64);
        self.count.inc();
    }

    pub fn bounds(&self) -> &'static [f64] {
        self.bounds
    }

    /// Adds this histogram's cells into `into` (per-bucket counts, sum,
    /// count), for summing shards.
    pub fn add_to(&self, into: &mut HistogramSum) {
        if into.buckets.len() != self.buckets.len() {
            into.buckets = vec![0; self.buckets.len()];
        }
        for (sum, cell) in into.buckets.iter_mut().zip(self.buckets.iter()) {
            *sum += cell.get();
        }
        into.sum_micros += self.sum_micros.get();
        into.count += self.count.get();
    }
}

/// Shards' histograms summed at scrape time.
#[derive(Debug, Default, Clone)]
pub struct HistogramSum {
    pub buckets: Vec<u64>,
    pub sum_micros: u64,
    pub count: u64,
}

impl HistogramSum {
    /// `(upper bound, count in that bucket)` pairs, the last bound
    /// `f64::MAX` for +Inf, as `prometheus-client` encodes them (it makes
    /// the counts cumulative itself).
    pub fn per_bucket(&self, bounds: &[f64]) -> Vec<(f64, u64)> {
        self.buckets
            .iter()
            .enumerate()
            .map(|(i, &n)| (bounds.get(i).copied().unwrap_or(f64::MAX), n))
            .collect()
    }

    pub fn sum(&self) -> f64 {
        self.sum_micros as f64 / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_inclusive_upper_bounds() {
        static BOUNDS: [f64; 3] = [1.0, 2.0, 4.0];
        let h = Histogram::new(&BOUNDS);
        for v in [0.5, 1.0, 1.5, 4.0, 9.0] {
            h.observe(v);
        }
        let mut sum = HistogramSum::default();
        h.add_to(&mut sum);
        h.add_to(&mut sum);
        assert_eq!(
            sum.per_bucket(&BOUNDS),
            vec![(1.0, 4), (2.0, 2), (4.0, 2), (f64::MAX, 2)]
        );
        assert_eq!(sum.count, 10);
        assert!((sum.sum() - 2.0 * 16.0).abs() < 1e-6);
    }

    #[test]
    fn counters_add() {
        let c = Counter::default();
        c.inc();
        c.add(41);
        assert_eq!(c.get(), 42);
    }
}
