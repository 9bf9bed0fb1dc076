//! The status snapshot: counters sampled every 500 ms into a 15-minute ring of rates, latency
//! percentiles from the histograms over the last minute, and the JSON the page and
//! `/api/status` show.
//!
//! Sampling reads a handful of metric families (a few small allocations per 500 ms, never per
//! tick); the ring and the histogram windows are allocated once.

use std::{collections::BTreeMap, time::Instant};

use prometheus::{core::Collector, Histogram, IntCounterVec};
use serde::Serialize;

use crate::{metrics::Metrics, status::ConnectionView};

/// Sampling period.
pub const SAMPLE_MS: u64 = 500;
/// Samples kept: 15 minutes at [`SAMPLE_MS`].
pub const HISTORY_LEN: usize = 15 * 60 * 1000 / SAMPLE_MS as usize;
/// Latency percentiles are computed over this many samples (one minute).
const LATENCY_WINDOW: usize = 120;
/// Most histogram buckets tracked (the engine's histograms have at most 16).
const MAX_BUCKETS: usize = 24;

/// Counter totals at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Totals {
    /// `ingestion_ticks_total`, all vendors.
    pub ticks: u64,
    /// `kafka_records_sent_total`, all topics.
    pub sent: u64,
    /// `kafka_records_acked_total`, all topics.
    pub acked: u64,
    /// `ingestion_ticks_rejected_total`, all vendors and reasons.
    pub rejected: u64,
    /// `kafka_delivery_failures_total`, all topics.
    pub delivery_failures: u64,
}

/// Per-second rates over the last sample period.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rates {
    /// Ticks received per second.
    pub ticks_in_per_s: f64,
    /// Records acknowledged by Kafka per second.
    pub produced_per_s: f64,
    /// Records handed to the Kafka client per second.
    pub sent_per_s: f64,
    /// Ticks rejected per second.
    pub rejected_per_s: f64,
}

/// p50/p99/p99.9 of one histogram, in microseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Median.
    pub p50_us: Option<f64>,
    /// 99th percentile.
    pub p99_us: Option<f64>,
    /// 99.9th percentile.
    pub p999_us: Option<f64>,
    /// Observations the figures are drawn from.
    pub count: u64,
    /// Seconds covered (the last minute, or less right after start).
    pub window_s: u64,
}

/// The rate history the charts draw.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct History {
    /// Period between points.
    pub interval_ms: u64,
    /// Sequence number of the newest point (increases by one per sample).
    pub last_seq: u64,
    /// Ticks received per second, oldest first.
    pub ticks_in: Vec<f32>,
    /// Records acknowledged per second, oldest first.
    pub produced: Vec<f32>,
    /// Ticks rejected per second, oldest first.
    pub rejected: Vec<f32>,
}

/// The sum of a counter family over all its labels.
pub(super) fn sum_counter(v: &IntCounterVec) -> u64 {
    let mut total = 0f64;
    for mf in v.collect() {
        for m in mf.get_metric() {
            total += m.get_counter().get_value();
        }
    }
    total as u64
}

/// Cumulative bucket counts of one histogram, and their upper bounds.
#[derive(Debug, Clone, Copy)]
struct BucketCounts {
    counts: [u64; MAX_BUCKETS],
    total: u64,
}

impl Default for BucketCounts {
    fn default() -> Self {
        BucketCounts {
            counts: [0; MAX_BUCKETS],
            total: 0,
        }
    }
}

/// A one-minute window over a histogram: a ring of cumulative bucket counts.
#[derive(Debug)]
struct HistWindow {
    bounds: Vec<f64>,
    ring: Vec<BucketCounts>,
    head: usize,
    filled: usize,
}

impl HistWindow {
    fn new() -> Self {
        HistWindow {
            bounds: Vec::new(),
            ring: vec![BucketCounts::default(); LATENCY_WINDOW + 1],
            head: 0,
            filled: 0,
        }
    }

    fn read(h: &Histogram, bounds: &mut Vec<f64>) -> BucketCounts {
        let mut out = BucketCounts::default();
        for mf in h.collect() {
            if let Some(m) = mf.get_metric().first() {
                let hist = m.get_histogram();
                out.total = hist.get_sample_count();
                if bounds.is_empty() {
                    bounds.extend(
                        hist.get_bucket()
                            .iter()
                            .take(MAX_BUCKETS)
                            .map(|b| b.upper_bound()),
                    );
                }
                for (slot, b) in out.counts.iter_mut().zip(hist.get_bucket()) {
                    *slot = b.cumulative_count();
                }
            }
        }
        out
    }

    fn sample(&mut self, h: &Histogram) {
        let now = Self::read(h, &mut self.bounds);
        self.head = (self.head + 1) % self.ring.len();
        if let Some(slot) = self.ring.get_mut(self.head) {
            *slot = now;
        }
        self.filled = (self.filled + 1).min(self.ring.len());
    }

    fn percentiles(&self) -> Percentiles {
        let n = self.ring.len();
        let (Some(newest), Some(oldest)) = (
            self.ring.get(self.head),
            self.ring.get((self.head + n + 1 - self.filled.max(1)) % n),
        ) else {
            return Percentiles::default();
        };
        let window = self.filled.saturating_sub(1);
        // Right after start there is no older sample: use everything observed so far.
        let base = if window == 0 {
            BucketCounts::default()
        } else {
            *oldest
        };
        let count = newest.total.saturating_sub(base.total);
        let q = |q: f64| quantile(&self.bounds, newest, &base, count, q);
        Percentiles {
            p50_us: q(0.5),
            p99_us: q(0.99),
            p999_us: q(0.999),
            count,
            window_s: (window as u64 * SAMPLE_MS) / 1000,
        }
    }
}

/// Prometheus-style `histogram_quantile` over the difference of two cumulative snapshots:
/// linear interpolation inside the bucket holding the rank; a rank in the `+Inf` bucket reports
/// the highest finite bound.
fn quantile(
    bounds: &[f64],
    newest: &BucketCounts,
    base: &BucketCounts,
    count: u64,
    q: f64,
) -> Option<f64> {
    if count == 0 {
        return None;
    }
    let rank = q * count as f64;
    let mut prev_bound = 0.0;
    let mut prev_cum = 0.0;
    for (i, bound) in bounds.iter().enumerate() {
        let cum = newest
            .counts
            .get(i)
            .copied()
            .unwrap_or(0)
            .saturating_sub(base.counts.get(i).copied().unwrap_or(0)) as f64;
        if cum >= rank {
            let in_bucket = cum - prev_cum;
            let frac = if in_bucket > 0.0 {
                (rank - prev_cum) / in_bucket
            } else {
                1.0
            };
            return Some((prev_bound + (bound - prev_bound) * frac) * 1e6);
        }
        prev_bound = *bound;
        prev_cum = cum;
    }
    bounds.last().map(|b| b * 1e6)
}

/// Samples the counters; owned by the sampler thread, read by request handlers under a lock.
#[derive(Debug)]
pub struct Sampler {
    ticks_in: Vec<f32>,
    produced: Vec<f32>,
    rejected: Vec<f32>,
    head: usize,
    len: usize,
    seq: u64,
    last: Option<(Instant, Totals)>,
    rates: Rates,
    totals: Totals,
    handoff: HistWindow,
    ack: HistWindow,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    /// An empty sampler with its ring allocated.
    pub fn new() -> Sampler {
        Sampler {
            ticks_in: vec![0.0; HISTORY_LEN],
            produced: vec![0.0; HISTORY_LEN],
            rejected: vec![0.0; HISTORY_LEN],
            head: 0,
            len: 0,
            seq: 0,
            last: None,
            rates: Rates::default(),
            totals: Totals::default(),
            handoff: HistWindow::new(),
            ack: HistWindow::new(),
        }
    }

    /// Reads the totals now.
    pub fn totals(m: &Metrics) -> Totals {
        Totals {
            ticks: sum_counter(&m.ticks_total),
            sent: sum_counter(&m.kafka_sent_total),
            acked: sum_counter(&m.kafka_acked_total),
            rejected: sum_counter(&m.ticks_rejected_total),
            delivery_failures: sum_counter(&m.kafka_failed_total),
        }
    }

    /// Takes one sample at `now`: rates since the previous sample go into the ring.
    pub fn sample(&mut self, m: &Metrics, now: Instant) {
        let totals = Self::totals(m);
        if let Some((at, prev)) = self.last {
            let dt = now.saturating_duration_since(at).as_secs_f64();
            if dt > 0.0 {
                let rate =
                    |a: u64, b: u64| ((a.saturating_sub(b)) as f64 / dt * 10.0).round() / 10.0;
                self.rates = Rates {
                    ticks_in_per_s: rate(totals.ticks, prev.ticks),
                    produced_per_s: rate(totals.acked, prev.acked),
                    sent_per_s: rate(totals.sent, prev.sent),
                    rejected_per_s: rate(totals.rejected, prev.rejected),
                };
                self.push(self.rates);
            }
        }
        self.last = Some((now, totals));
        self.totals = totals;
        self.handoff.sample(&m.handoff_latency);
        self.ack.sample(&m.ack_latency);
    }

    fn push(&mut self, r: Rates) {
        self.head = (self.head + 1) % HISTORY_LEN;
        for (ring, v) in [
            (&mut self.ticks_in, r.ticks_in_per_s),
            (&mut self.produced, r.produced_per_s),
            (&mut self.rejected, r.rejected_per_s),
        ] {
            if let Some(slot) = ring.get_mut(self.head) {
                *slot = v as f32;
            }
        }
        self.len = (self.len + 1).min(HISTORY_LEN);
        self.seq += 1;
    }

    /// The latest rates.
    pub fn rates(&self) -> Rates {
        self.rates
    }

    /// Totals at the latest sample.
    pub fn last_totals(&self) -> Totals {
        self.totals
    }

    /// Sequence number of the newest point.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// Hand-off and ack latency percentiles over the last minute.
    pub fn latency(&self) -> (Percentiles, Percentiles) {
        (self.handoff.percentiles(), self.ack.percentiles())
    }

    /// The whole history, oldest first.
    pub fn history(&self) -> History {
        let start = (self.head + HISTORY_LEN + 1 - self.len) % HISTORY_LEN;
        let take = |ring: &Vec<f32>| -> Vec<f32> {
            (0..self.len)
                .filter_map(|i| ring.get((start + i) % HISTORY_LEN).copied())
                .collect()
        };
        History {
            interval_ms: SAMPLE_MS,
            last_seq: self.seq,
            ticks_in: take(&self.ticks_in),
            produced: take(&self.produced),
            rejected: take(&self.rejected),
        }
    }
}

/// One `(vendor, reason)` rejection total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejected {
    /// Vendor label.
    pub vendor: String,
    /// Reason label.
    pub reason: String,
    /// Total so far.
    pub total: u64,
}

/// One queue's depth and overflow count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Queue {
    /// Queue label.
    pub queue: String,
    /// Items waiting (last sampled by the producer).
    pub depth: i64,
    /// Hand-offs that found it full.
    pub full_total: u64,
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> &'a str {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map_or("", |l| l.value())
}

/// Rejections by vendor and reason, largest first. Label values are bounded by the engine (stable
/// reason codes), but they are still redacted before they reach the page.
pub fn rejected(m: &Metrics) -> Vec<Rejected> {
    let mut out: Vec<Rejected> = m
        .ticks_rejected_total
        .collect()
        .iter()
        .flat_map(|mf| mf.get_metric().iter())
        .map(|x| Rejected {
            vendor: crate::redact::redact(label(x, "vendor")),
            reason: crate::redact::redact(label(x, "reason")),
            total: x.get_counter().get_value() as u64,
        })
        .collect();
    out.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.reason.cmp(&b.reason)));
    out
}

/// Queue depths and overflow counts, by queue.
pub fn queues(m: &Metrics) -> Vec<Queue> {
    let mut by: BTreeMap<String, Queue> = BTreeMap::new();
    for mf in m.queue_depth.collect() {
        for x in mf.get_metric() {
            let q = crate::redact::redact(label(x, "queue"));
            by.entry(q.clone())
                .or_insert(Queue {
                    queue: q,
                    depth: 0,
                    full_total: 0,
                })
                .depth = x.get_gauge().get_value() as i64;
        }
    }
    for mf in m.queue_full_total.collect() {
        for x in mf.get_metric() {
            let q = crate::redact::redact(label(x, "queue"));
            by.entry(q.clone())
                .or_insert(Queue {
                    queue: q,
                    depth: 0,
                    full_total: 0,
                })
                .full_total = x.get_counter().get_value() as u64;
        }
    }
    by.into_values().collect()
}

/// Engine identity.
#[derive(Debug, Clone, Serialize)]
pub struct EngineView {
    /// `layer1`.
    pub name: &'static str,
    /// Crate version.
    pub version: &'static str,
    /// Seconds since the http thread started.
    pub uptime_s: u64,
    /// Server time, Unix ms.
    pub now_ms: u64,
}

/// Overall health.
#[derive(Debug, Clone, Serialize)]
pub struct HealthView {
    /// `ok`, `degraded` or `down`.
    pub overall: &'static str,
    /// What `/health/ready` answers.
    pub ready: bool,
    /// Why not ready, or what is degraded.
    pub reasons: Vec<String>,
    /// Kafka reachable.
    pub kafka: bool,
    /// Redis command subscription live.
    pub redis: bool,
}

/// Market phase and where it came from.
#[derive(Debug, Clone, Serialize)]
pub struct MarketView {
    /// `pre_open`, `open`, `closed`, `holiday`.
    pub phase: &'static str,
    /// The source's name.
    pub source: &'static str,
}

/// What the page needs to know about access.
#[derive(Debug, Clone, Serialize)]
pub struct SecurityView {
    /// `loopback` or `remote`.
    pub exposure: &'static str,
    /// `POST` needs `Authorization: Bearer`.
    pub token_required: bool,
}

/// Kafka figures.
#[derive(Debug, Clone, Serialize)]
pub struct KafkaView {
    /// Broker reachable.
    pub up: bool,
    /// Records sent and not yet acknowledged.
    pub in_flight: i64,
}

/// Journal figures.
#[derive(Debug, Clone, Serialize)]
pub struct JournalView {
    /// Bytes on disk.
    pub bytes: i64,
}

/// Latency figures.
#[derive(Debug, Clone, Serialize)]
pub struct LatencyView {
    /// Frame receive -> hand-off to the producer.
    pub handoff: Percentiles,
    /// Frame receive -> broker acknowledgement.
    pub ack: Percentiles,
}

/// The whole snapshot.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot<'a> {
    /// Identity.
    pub engine: EngineView,
    /// Health and readiness.
    pub health: HealthView,
    /// Market phase.
    pub market: MarketView,
    /// Access.
    pub security: SecurityView,
    /// Feed connections.
    pub connections: Vec<ConnectionView>,
    /// Sequence number of the latest rate sample.
    pub seq: u64,
    /// Latest rates.
    pub rates: Rates,
    /// Counter totals.
    pub totals: Totals,
    /// Rejections by reason.
    pub rejected: Vec<Rejected>,
    /// Queues.
    pub queues: Vec<Queue>,
    /// Kafka.
    pub kafka: KafkaView,
    /// Journal.
    pub journal: JournalView,
    /// Latency.
    pub latency: LatencyView,
    /// Backfill status as last read from Redis (sanitised).
    pub backfill: &'a serde_json::Value,
    /// Rate history (in `/api/status`, not in stream events).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<History>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_interpolate_within_buckets() {
        let bounds = vec![0.001, 0.002, 0.004];
        let mut newest = BucketCounts::default();
        // 50 obs <= 1 ms, 40 in (1, 2], 10 in (2, 4].
        newest.counts[0] = 50;
        newest.counts[1] = 90;
        newest.counts[2] = 100;
        newest.total = 100;
        let base = BucketCounts::default();
        let p50 = quantile(&bounds, &newest, &base, 100, 0.5).unwrap();
        assert!((p50 - 1000.0).abs() < 1e-6, "{p50}");
        let p99 = quantile(&bounds, &newest, &base, 100, 0.99).unwrap();
        assert!((p99 - 3800.0).abs() < 1e-6, "{p99}");
        assert_eq!(quantile(&bounds, &newest, &base, 0, 0.5), None);
    }

    #[test]
    fn sampler_rates_history_and_latency() {
        let m = Metrics::new().unwrap();
        let mut s = Sampler::new();
        let t0 = Instant::now();
        s.sample(&m, t0);
        m.ticks_total.with_label_values(&["kite"]).inc_by(500);
        m.kafka_acked_total.with_label_values(&["t"]).inc_by(250);
        for _ in 0..1000 {
            m.handoff_latency.observe(15e-6);
        }
        s.sample(&m, t0 + std::time::Duration::from_millis(500));
        assert_eq!(s.rates().ticks_in_per_s, 1000.0);
        assert_eq!(s.rates().produced_per_s, 500.0);
        let h = s.history();
        assert_eq!((h.ticks_in.as_slice(), h.last_seq), (&[1000.0f32][..], 1));
        let (handoff, ack) = s.latency();
        assert_eq!(handoff.count, 1000);
        let p50 = handoff.p50_us.unwrap();
        assert!(p50 > 10.0 && p50 <= 20.0, "{p50}");
        assert_eq!(ack.count, 0);
        // The ring wraps without growing.
        for i in 0..(HISTORY_LEN + 5) {
            s.sample(
                &m,
                t0 + std::time::Duration::from_millis(1000 + 500 * i as u64),
            );
        }
        assert_eq!(s.history().ticks_in.len(), HISTORY_LEN);
    }
}
