//! Allocation-free latency histograms for the hot path: log-linear buckets (16 per power of
//! two, so a reported percentile is within about 6 % of the true value) over atomic counters.
//! Recording is one `leading_zeros`, a shift and one relaxed `fetch_add`.

use std::sync::atomic::{AtomicU64, Ordering};

const SUB_BITS: u32 = 4;
const SUB: usize = 1 << SUB_BITS;
// Index of the largest u64 is (63 - SUB_BITS + 1) * SUB + (SUB - 1).
const BUCKETS: usize = (64 - SUB_BITS as usize + 1) * SUB;

/// A histogram of nanosecond values.
pub struct LatencyHistogram {
    counts: Box<[AtomicU64]>,
    total: AtomicU64,
    max: AtomicU64,
}

impl std::fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LatencyHistogram")
            .field("count", &self.count())
            .finish()
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

fn index(ns: u64) -> usize {
    if ns < SUB as u64 {
        return ns as usize;
    }
    let exp = 63 - ns.leading_zeros();
    let mantissa = (ns >> (exp - SUB_BITS)) as usize & (SUB - 1);
    ((exp - SUB_BITS + 1) as usize) * SUB + mantissa
}

/// The smallest value that falls in bucket `i` (the lower bound reported for percentiles).
fn lower_bound(i: usize) -> u64 {
    if i < SUB {
        return i as u64;
    }
    let group = (i / SUB) as u32;
    let mantissa = (i % SUB) as u64;
    let exp = group + SUB_BITS - 1;
    (1u64 << exp) | (mantissa << (exp - SUB_BITS))
}

impl LatencyHistogram {
    /// An empty histogram.
    pub fn new() -> Self {
        LatencyHistogram {
            counts: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            total: AtomicU64::new(0),
            max: AtomicU64::new(0),
        }
    }

    /// Records one value in nanoseconds.
    #[inline]
    pub fn record(&self, ns: u64) {
        if let Some(c) = self.counts.get(index(ns)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.total.fetch_add(1, Ordering::Relaxed);
        self.max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Records `n` values of `ns` nanoseconds each (one bucket update for a group of items
    /// that share a measurement).
    #[inline]
    pub fn record_n(&self, ns: u64, n: u64) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.counts.get(index(ns)) {
            c.fetch_add(n, Ordering::Relaxed);
        }
        self.total.fetch_add(n, Ordering::Relaxed);
        self.max.fetch_max(ns, Ordering::Relaxed);
    }

    /// Values recorded.
    pub fn count(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Largest value recorded.
    pub fn max(&self) -> u64 {
        self.max.load(Ordering::Relaxed)
    }

    /// The value at quantile `q` (0.0..=1.0), as its bucket's lower bound; 0 when empty.
    pub fn quantile(&self, q: f64) -> u64 {
        let total = self.count();
        if total == 0 {
            return 0;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, c) in self.counts.iter().enumerate() {
            seen += c.load(Ordering::Relaxed);
            if seen >= rank {
                return lower_bound(i);
            }
        }
        self.max()
    }

    /// Moves every count of `self` into `into` and clears `self`, bucket by bucket (an atomic
    /// swap each), so values recorded concurrently land in one of the two, never in neither.
    /// `layer1 chaos` uses it to split one process-wide histogram into phases.
    pub fn take_into(&self, into: &LatencyHistogram) {
        let mut moved = 0;
        for (c, d) in self.counts.iter().zip(into.counts.iter()) {
            let n = c.swap(0, Ordering::Relaxed);
            if n > 0 {
                d.fetch_add(n, Ordering::Relaxed);
                moved += n;
            }
        }
        let _ = self
            .total
            .fetch_sub(moved.min(self.count()), Ordering::Relaxed);
        into.total.fetch_add(moved, Ordering::Relaxed);
        into.max
            .fetch_max(self.max.swap(0, Ordering::Relaxed), Ordering::Relaxed);
    }

    /// Clears every count (between bench phases).
    pub fn reset(&self) {
        for c in self.counts.iter() {
            c.store(0, Ordering::Relaxed);
        }
        self.total.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::Relaxed);
    }
}

/// The process's receive -> hand-off latency per frame: the time its last tick was queued, so
/// the worst of the frame's ticks (feed threads record, readers report).
pub fn handoff() -> &'static LatencyHistogram {
    static H: std::sync::OnceLock<LatencyHistogram> = std::sync::OnceLock::new();
    H.get_or_init(LatencyHistogram::new)
}

/// The process's receive -> hand-off latency per tick. The clock is read once every
/// [`crate::pipeline::STAMP_EVERY`] ticks queued (and at the frame's end), and each tick counts
/// the first reading taken after it was queued: an upper bound on its own latency, by at most
/// the time to queue that many ticks.
pub fn handoff_ticks() -> &'static LatencyHistogram {
    static H: std::sync::OnceLock<LatencyHistogram> = std::sync::OnceLock::new();
    H.get_or_init(LatencyHistogram::new)
}

/// [`handoff`] for the frames that were the first their socket read completed (so its count
/// is the reads that handed over ticks).
pub fn handoff_first_of_read() -> &'static LatencyHistogram {
    static H: std::sync::OnceLock<LatencyHistogram> = std::sync::OnceLock::new();
    H.get_or_init(LatencyHistogram::new)
}

/// [`handoff_ticks`] for the ticks of frames that were the first their socket read completed:
/// the engine's own hand-off, without the wait behind earlier frames that arrived in the same
/// read (their difference is what the sender's bursts add).
pub fn handoff_ticks_first_of_read() -> &'static LatencyHistogram {
    static H: std::sync::OnceLock<LatencyHistogram> = std::sync::OnceLock::new();
    H.get_or_init(LatencyHistogram::new)
}

/// The process's receive -> broker acknowledgement latency (the producer records).
pub fn ack() -> &'static LatencyHistogram {
    static H: std::sync::OnceLock<LatencyHistogram> = std::sync::OnceLock::new();
    H.get_or_init(LatencyHistogram::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_monotonic_and_tight() {
        let mut last = 0;
        for i in 0..BUCKETS - 1 {
            let lb = lower_bound(i);
            assert!(lb >= last);
            last = lb;
        }
        for v in [
            0u64,
            1,
            15,
            16,
            17,
            100,
            1_000,
            12_345,
            1_000_000,
            987_654_321,
            u64::MAX / 2,
        ] {
            let lb = lower_bound(index(v));
            assert!(lb <= v, "{v}: {lb}");
            assert!((v - lb) as f64 <= v as f64 * 0.0625 + 1.0, "{v}: {lb}");
        }
    }

    #[test]
    fn quantiles() {
        let h = LatencyHistogram::new();
        for v in 1..=1000u64 {
            h.record(v * 1000);
        }
        let p50 = h.quantile(0.5);
        assert!((470_000..=500_000).contains(&p50), "{p50}");
        let p99 = h.quantile(0.99);
        assert!((930_000..=990_000).contains(&p99), "{p99}");
        assert_eq!(h.max(), 1_000_000);
        // A group counts as that many values.
        h.record_n(2_000_000, 1000);
        assert_eq!(h.count(), 2000);
        assert!(h.quantile(0.75) >= 1_875_000, "{}", h.quantile(0.75));
        h.record_n(5, 0);
        assert_eq!(h.count(), 2000);
        h.reset();
        assert_eq!(h.quantile(0.5), 0);
    }
}
