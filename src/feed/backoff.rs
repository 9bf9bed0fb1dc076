//! Reconnect backoff: capped exponential with full jitter, and the small deterministic RNG it uses.
//!
//! Full jitter (delay uniform in `[0, min(cap, base * 2^attempt)]`) spreads the reconnects of many
//! connections that failed together (a vendor restart) instead of synchronising them into a storm.

/// SplitMix64: tiny, fast, good enough for jitter and simulated prices; seedable so tests and the
/// simulator are reproducible.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator from `seed`.
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, bound]` (inclusive). Multiply-shift: the bias is below 2^-32 for the
    /// bounds used here and costs no division.
    pub fn up_to(&mut self, bound: u64) -> u64 {
        let span = u128::from(bound) + 1;
        let r = u128::from(self.next_u64());
        u64::try_from((r * span) >> 64).unwrap_or(bound)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit_f64(&mut self) -> f64 {
        // 53 random bits: the mantissa of an f64.
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Capped exponential backoff with full jitter.
#[derive(Debug, Clone)]
pub struct Backoff {
    base_ms: u64,
    cap_ms: u64,
    rng: SplitMix64,
}

impl Backoff {
    /// A backoff with `base_ms` (at least 1) and `cap_ms` (at least `base_ms`).
    pub fn new(base_ms: u64, cap_ms: u64, seed: u64) -> Self {
        let base_ms = base_ms.max(1);
        Backoff {
            base_ms,
            cap_ms: cap_ms.max(base_ms),
            rng: SplitMix64::new(seed),
        }
    }

    /// The upper bound of the delay for `attempt` (0-based): `min(cap, base * 2^attempt)`.
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        let factor = 1u64.checked_shl(attempt.min(62)).unwrap_or(u64::MAX);
        self.base_ms.saturating_mul(factor).min(self.cap_ms)
    }

    /// A delay drawn uniformly from `[0, ceiling_ms(attempt)]`.
    pub fn delay_ms(&mut self, attempt: u32) -> u64 {
        let ceiling = self.ceiling_ms(attempt);
        self.rng.up_to(ceiling)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceiling_doubles_to_the_cap() {
        let b = Backoff::new(1000, 30_000, 1);
        let got: Vec<u64> = (0..8).map(|a| b.ceiling_ms(a)).collect();
        assert_eq!(
            got,
            [1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]
        );
        assert_eq!(b.ceiling_ms(u32::MAX), 30_000);
    }

    #[test]
    fn delays_stay_within_full_jitter_bounds_and_spread() {
        let mut b = Backoff::new(1000, 30_000, 42);
        for attempt in 0..10 {
            let ceiling = b.ceiling_ms(attempt);
            let n = 2000;
            let mut sum = 0u64;
            let mut min = u64::MAX;
            let mut max = 0;
            for _ in 0..n {
                let d = b.delay_ms(attempt);
                assert!(d <= ceiling, "attempt {attempt}: {d} > {ceiling}");
                sum += d;
                min = min.min(d);
                max = max.max(d);
            }
            let mean = sum as f64 / f64::from(n);
            let expect = ceiling as f64 / 2.0;
            // Uniform on [0, c]: the mean of 2000 draws is within 5 % of c/2 with overwhelming
            // probability, and the draws cover most of the range (full, not "equal", jitter).
            assert!(
                (mean - expect).abs() < ceiling as f64 * 0.05,
                "attempt {attempt}: mean {mean}"
            );
            assert!(min < ceiling / 20, "attempt {attempt}: min {min}");
            assert!(max > ceiling - ceiling / 20, "attempt {attempt}: max {max}");
        }
    }

    #[test]
    fn same_seed_same_schedule() {
        let mut a = Backoff::new(50, 1000, 7);
        let mut b = Backoff::new(50, 1000, 7);
        for i in 0..50 {
            assert_eq!(a.delay_ms(i % 6), b.delay_ms(i % 6));
        }
    }

    #[test]
    fn degenerate_inputs_are_clamped() {
        let mut b = Backoff::new(0, 0, 3);
        assert_eq!(b.ceiling_ms(0), 1);
        assert!(b.delay_ms(10) <= 1);
    }
}
