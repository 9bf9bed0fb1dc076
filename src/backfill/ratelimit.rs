//! Per-vendor request pacing: a token bucket whose tokens come back one window after the call
//! that spent them *finished*, for each of the vendor's windows (Kite 3/s; Upstox 50/s, 500/min,
//! 2000/30 min).
//!
//! Why "after it finished": the vendor counts requests when they arrive, which is somewhere
//! between our send and our receipt of the answer. Returning a token a full window after the
//! answer means that any N+1 consecutive requests arrive more than a window apart, so no window
//! at the vendor ever sees more than N, however the OS schedules our thread. A plain refill-rate
//! bucket allows up to 2N in a window (a full bucket plus its refill).

use std::{
    collections::VecDeque,
    time::{Duration, Instant},
};

/// Margin added to every window, for clock granularity at the vendor.
const MARGIN: Duration = Duration::from_millis(20);

#[derive(Debug)]
struct Window {
    limit: usize,
    period: Duration,
    /// Completion times of the last `limit` requests, oldest first.
    done: VecDeque<Instant>,
}

/// The pacing state of one vendor. Not shared: one job thread owns it.
#[derive(Debug)]
pub struct RateLimiter {
    windows: Vec<Window>,
    /// Set by a 429's Retry-After: nothing is sent before this.
    blocked_until: Option<Instant>,
}

impl RateLimiter {
    /// A limiter with windows of (at most `limit` requests, per `period`). Zero limits are
    /// raised to 1.
    pub fn new(windows: &[(usize, Duration)]) -> RateLimiter {
        RateLimiter {
            windows: windows
                .iter()
                .map(|(limit, period)| Window {
                    limit: (*limit).max(1),
                    period: *period,
                    done: VecDeque::new(),
                })
                .collect(),
            blocked_until: None,
        }
    }

    /// How long to wait at `now` before the next request may start.
    pub fn wait_time(&self, now: Instant) -> Duration {
        let mut until = self.blocked_until.unwrap_or(now);
        for w in &self.windows {
            if w.done.len() >= w.limit {
                if let Some(oldest) = w.done.front() {
                    until = until.max(*oldest + w.period + MARGIN);
                }
            }
        }
        until.saturating_duration_since(now)
    }

    /// Records that a request finished (answered or failed) at `at`.
    pub fn finished(&mut self, at: Instant) {
        for w in &mut self.windows {
            w.done.push_back(at);
            while w.done.len() > w.limit {
                w.done.pop_front();
            }
        }
    }

    /// Sends nothing before `until` (a 429's Retry-After).
    pub fn block_until(&mut self, until: Instant) {
        self.blocked_until = Some(self.blocked_until.map_or(until, |b| b.max(until)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn n_per_window_counted_from_completion() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&[(3, Duration::from_secs(1))]);
        for i in 0..3 {
            assert_eq!(r.wait_time(t0), Duration::ZERO, "request {i} is free");
            r.finished(t0 + Duration::from_millis(10 * i));
        }
        // The fourth waits until a second after the first finished.
        assert_eq!(
            r.wait_time(t0 + Duration::from_millis(30)),
            Duration::from_millis(1000 + 20 - 30)
        );
        r.finished(t0 + Duration::from_millis(1100));
        // Window now [10, 20, 1100]: the oldest finished over a second ago, so the next is free.
        assert_eq!(
            r.wait_time(t0 + Duration::from_millis(1100)),
            Duration::ZERO
        );
        r.block_until(t0 + Duration::from_secs(5));
        assert_eq!(
            r.wait_time(t0 + Duration::from_secs(4)),
            Duration::from_secs(1)
        );
    }

    #[test]
    fn the_tightest_window_wins() {
        let t0 = Instant::now();
        let mut r = RateLimiter::new(&[(50, Duration::from_secs(1)), (2, Duration::from_secs(60))]);
        r.finished(t0);
        r.finished(t0);
        assert!(r.wait_time(t0) >= Duration::from_secs(60));
    }
}
