//! The process's one Prometheus registry and every metric the engine exports.
//!
//! Names follow the founding document (`ingestion_ticks_total`, `websocket_packets_total`,
//! `websocket_data_bytes_total`, `external_api_calls_total{vendor,endpoint,status}`) plus the
//! engine's own. Hot paths never call `with_label_values` per tick (it hashes and takes a read
//! lock): they resolve their labelled children once (see [`VendorCounters`]) and `inc()` an atomic.

use std::sync::OnceLock;

use prometheus::{
    Encoder, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Every metric of the process, registered in [`Metrics::registry`].
#[derive(Debug)]
pub struct Metrics {
    /// The process registry, served on `GET /metrics`.
    pub registry: Registry,
    /// `ingestion_ticks_total{vendor}`: ticks received from vendors (decoded packets).
    pub ticks_total: IntCounterVec,
    /// `ingestion_ticks_rejected_total{vendor,reason}`: ticks and frames sent to the DLQ.
    pub ticks_rejected_total: IntCounterVec,
    /// `websocket_packets_total{vendor}`: raw WebSocket messages received.
    pub ws_packets_total: IntCounterVec,
    /// `websocket_data_bytes_total{vendor}`: raw WebSocket payload bytes received.
    pub ws_bytes_total: IntCounterVec,
    /// `external_api_calls_total{vendor,endpoint,status}`: HTTP calls to vendor REST APIs.
    pub external_api_calls_total: IntCounterVec,
    /// `kafka_records_sent_total{topic}`: records handed to librdkafka.
    pub kafka_sent_total: IntCounterVec,
    /// `kafka_records_acked_total{topic}`: records acknowledged by the broker.
    pub kafka_acked_total: IntCounterVec,
    /// `kafka_delivery_failures_total{topic}`: delivery reports with an error.
    pub kafka_failed_total: IntCounterVec,
    /// `kafka_records_refused_total{topic}`: records Kafka refused for good (too large or
    /// invalid for the topic), counted and logged instead of sent again.
    pub kafka_refused_total: IntCounterVec,
    /// `kafka_client_replaced_total`: producer clients replaced after librdkafka raised a
    /// fatal error.
    pub kafka_client_replaced_total: IntCounter,
    /// `kafka_in_flight_records`: records sent and not yet acknowledged or failed.
    pub kafka_in_flight: IntGauge,
    /// `kafka_up`: 1 when the broker answered the last metadata or delivery, else 0.
    pub kafka_up: IntGauge,
    /// `queue_full_total{queue}`: hand-offs that found a queue full.
    pub queue_full_total: IntCounterVec,
    /// `queue_depth{queue}`: items waiting in a hand-over queue (sampled).
    pub queue_depth: IntGaugeVec,
    /// `control_commands_total{command,outcome}`: messages on `system:commands`.
    pub control_commands_total: IntCounterVec,
    /// `http_refused_total{code}`: HTTP requests refused with an error answer (malformed,
    /// oversized, rate-limited, wrong host, unauthorised, unknown route...), by error code.
    pub http_refused_total: IntCounterVec,
    /// `redis_up`: 1 while the control thread's Redis subscription is live.
    pub redis_up: IntGauge,
    /// `log_records_dropped_total`: log lines dropped because the writer fell behind.
    pub log_dropped_total: IntCounter,
    /// `ticks_dropped_total{vendor}`: ticks dropped because the hand-over queue stayed full.
    pub ticks_dropped_total: IntCounterVec,
    /// `journal_dropped_total`: records dropped because the journal was full or failing.
    pub journal_dropped_total: IntCounter,
    /// `journal_segments_quarantined_total`: journal segments set aside unread after
    /// `journal::MAX_READ_ATTEMPTS` failed reads (their records not drained).
    pub journal_segments_quarantined_total: IntCounter,
    /// `capture_frames_missed_total`: raw frames not written to a capture file because it
    /// failed (an upper bound: frames not yet flushed when it failed count as missed).
    pub capture_frames_missed_total: IntCounter,
    /// `raw_buffer_allocations_total`: raw-frame buffers a feed thread had to allocate or grow
    /// because its pool had none free or none large enough (flat once warm, see
    /// `src/rawpool.rs`).
    pub raw_buffer_allocations_total: IntCounter,
    /// `handoff_latency_seconds`: frame receive -> queued for the producer.
    pub handoff_latency: Histogram,
    /// `ack_latency_seconds`: frame receive -> broker acknowledgement (observed by the producer
    /// thread on each delivery report).
    pub ack_latency: Histogram,
    /// `journal_bytes`: bytes held in the outage journal on disk (set by the producer thread).
    pub journal_bytes: IntGauge,
    /// `journal_full`: 1 from the journal's first refused record (at its cap, or failing to
    /// write: records are being dropped) until it accepts records again: at the cap, once Kafka
    /// is back and the drain has freed room; failing, once the journal has drained.
    pub journal_full: IntGauge,
    /// `feed_queues_dropping`: feed hand-over queues dropping ticks right now, because the
    /// producer made no room for `QUEUE_FULL_WAIT`; 0 once every queue accepts again.
    pub feed_queues_dropping: IntGauge,
}

fn counter_vec(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> prometheus::Result<IntCounterVec> {
    let c = IntCounterVec::new(Opts::new(name, help), labels)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn counter(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntCounter> {
    let c = IntCounter::new(name, help)?;
    r.register(Box::new(c.clone()))?;
    Ok(c)
}

fn gauge(r: &Registry, name: &str, help: &str) -> prometheus::Result<IntGauge> {
    let g = IntGauge::new(name, help)?;
    r.register(Box::new(g.clone()))?;
    Ok(g)
}

impl Metrics {
    /// Builds a registry with every metric, plus the `process_*` collector.
    ///
    /// # Errors
    /// Only if a metric definition is invalid, which the unit tests rule out.
    pub fn new() -> prometheus::Result<Metrics> {
        Self::build(true)
    }

    fn build(process: bool) -> prometheus::Result<Metrics> {
        let r = Registry::new();
        #[cfg(target_os = "linux")]
        if process {
            r.register(Box::new(
                prometheus::process_collector::ProcessCollector::for_self(),
            ))?;
        }
        let queue_depth = IntGaugeVec::new(
            Opts::new("queue_depth", "Items waiting in a hand-over queue"),
            &["queue"],
        )?;
        r.register(Box::new(queue_depth.clone()))?;
        let log_dropped_total = IntCounter::new(
            "log_records_dropped_total",
            "Log lines dropped because the writer fell behind",
        )?;
        r.register(Box::new(log_dropped_total.clone()))?;
        let journal_dropped_total = IntCounter::new(
            "journal_dropped_total",
            "Records dropped because the outage journal was full or failing",
        )?;
        r.register(Box::new(journal_dropped_total.clone()))?;
        let handoff_latency = Histogram::with_opts(
            HistogramOpts::new(
                "handoff_latency_seconds",
                "Frame receive to producer hand-off latency",
            )
            .buckets(vec![
                1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4, 1e-3, 1e-2, 1e-1,
            ]),
        )?;
        r.register(Box::new(handoff_latency.clone()))?;
        // Acks include the broker round trip and batching (linger), so the buckets reach seconds.
        let ack_latency = Histogram::with_opts(
            HistogramOpts::new(
                "ack_latency_seconds",
                "Frame receive to broker acknowledgement latency",
            )
            .buckets(vec![
                1e-4, 2e-4, 5e-4, 1e-3, 2e-3, 5e-3, 1e-2, 2e-2, 5e-2, 1e-1, 2e-1, 5e-1, 1.0, 5.0,
                30.0,
            ]),
        )?;
        r.register(Box::new(ack_latency.clone()))?;
        Ok(Metrics {
            ticks_total: counter_vec(
                &r,
                "ingestion_ticks_total",
                "Total ticks received from vendors",
                &["vendor"],
            )?,
            ticks_rejected_total: counter_vec(
                &r,
                "ingestion_ticks_rejected_total",
                "Ticks and frames rejected to the dead-letter topic",
                &["vendor", "reason"],
            )?,
            ws_packets_total: counter_vec(
                &r,
                "websocket_packets_total",
                "Count of raw WebSocket messages",
                &["vendor"],
            )?,
            ws_bytes_total: counter_vec(
                &r,
                "websocket_data_bytes_total",
                "Total WebSocket bandwidth in bytes",
                &["vendor"],
            )?,
            external_api_calls_total: counter_vec(
                &r,
                "external_api_calls_total",
                "HTTP requests to vendor APIs",
                &["vendor", "endpoint", "status"],
            )?,
            kafka_sent_total: counter_vec(
                &r,
                "kafka_records_sent_total",
                "Records handed to the Kafka client",
                &["topic"],
            )?,
            kafka_acked_total: counter_vec(
                &r,
                "kafka_records_acked_total",
                "Records acknowledged by the broker",
                &["topic"],
            )?,
            kafka_failed_total: counter_vec(
                &r,
                "kafka_delivery_failures_total",
                "Delivery reports with an error",
                &["topic"],
            )?,
            kafka_refused_total: counter_vec(
                &r,
                "kafka_records_refused_total",
                "Records Kafka refused for good (too large or invalid for the topic): not sent again",
                &["topic"],
            )?,
            capture_frames_missed_total: counter(
                &r,
                "capture_frames_missed_total",
                "Raw frames missing from capture files after a capture write failed (upper bound)",
            )?,
            journal_segments_quarantined_total: counter(
                &r,
                "journal_segments_quarantined_total",
                "Journal segments set aside unread after repeated read errors (records not drained)",
            )?,
            kafka_client_replaced_total: counter(
                &r,
                "kafka_client_replaced_total",
                "Producer clients replaced after librdkafka raised a fatal error",
            )?,
            kafka_in_flight: gauge(
                &r,
                "kafka_in_flight_records",
                "Records sent and not yet acknowledged",
            )?,
            kafka_up: gauge(&r, "kafka_up", "1 when the broker is reachable")?,
            ticks_dropped_total: counter_vec(
                &r,
                "ticks_dropped_total",
                "Ticks dropped because the producer hand-over queue stayed full",
                &["vendor"],
            )?,
            queue_full_total: counter_vec(
                &r,
                "queue_full_total",
                "Hand-offs that found a queue full",
                &["queue"],
            )?,
            control_commands_total: counter_vec(
                &r,
                "control_commands_total",
                "Messages received on system:commands",
                &["command", "outcome"],
            )?,
            http_refused_total: counter_vec(
                &r,
                "http_refused_total",
                "HTTP requests refused with an error answer, by error code",
                &["code"],
            )?,
            redis_up: gauge(
                &r,
                "redis_up",
                "1 while the Redis command subscription is live",
            )?,
            journal_dropped_total,
            raw_buffer_allocations_total: counter(
                &r,
                "raw_buffer_allocations_total",
                "Raw-frame buffers allocated or grown on a feed thread (pool empty or too small)",
            )?,
            queue_depth,
            log_dropped_total,
            handoff_latency,
            ack_latency,
            journal_bytes: gauge(
                &r,
                "journal_bytes",
                "Bytes held in the outage journal on disk",
            )?,
            journal_full: gauge(
                &r,
                "journal_full",
                "1 while the outage journal refuses records (records are dropped)",
            )?,
            feed_queues_dropping: gauge(
                &r,
                "feed_queues_dropping",
                "Feed hand-over queues dropping ticks because the producer made no room",
            )?,
            registry: r,
        })
    }

    /// Prometheus text exposition of every metric.
    pub fn render(&self) -> Vec<u8> {
        // Log drops are counted by the logger without a registry handle; sync them at scrape.
        let dropped = crate::logging::dropped();
        let seen = self.log_dropped_total.get();
        if dropped > seen {
            self.log_dropped_total.inc_by(dropped - seen);
        }
        let mut buf = Vec::with_capacity(16 * 1024);
        // Encoding into a Vec cannot fail on I/O; a malformed family would be our bug.
        if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut buf) {
            log::error!(event = "metrics_encode_failed"; "{e}");
        }
        buf
    }
}

static GLOBAL: OnceLock<Metrics> = OnceLock::new();

/// The process-wide metrics, created on first use.
///
/// If the registry could not be built (only a programming error in this module can cause that),
/// the process still runs with an empty fallback registry rather than panicking.
pub fn global() -> &'static Metrics {
    GLOBAL.get_or_init(|| match Metrics::new() {
        Ok(m) => m,
        Err(e) => {
            log::error!(event = "metrics_init_failed"; "{e}");
            fallback()
        }
    })
}

#[allow(clippy::expect_used)]
fn fallback() -> Metrics {
    // Only the process collector depends on the host (procfs); every other definition is static
    // and built by the unit tests, so this second attempt cannot fail short of a code change.
    Metrics::build(false).expect("static metric definitions are valid (unit-tested)")
}

/// Per-vendor counters resolved once, for a feed thread's hot path.
#[derive(Debug, Clone)]
pub struct VendorCounters {
    /// `ingestion_ticks_total{vendor}`.
    pub ticks: IntCounter,
    /// `websocket_packets_total{vendor}`.
    pub packets: IntCounter,
    /// `websocket_data_bytes_total{vendor}`.
    pub bytes: IntCounter,
}

impl VendorCounters {
    /// Resolves the children for `vendor`.
    pub fn new(m: &Metrics, vendor: crate::vendor::Vendor) -> VendorCounters {
        let v = [vendor.as_str()];
        VendorCounters {
            ticks: m.ticks_total.with_label_values(&v),
            packets: m.ws_packets_total.with_label_values(&v),
            bytes: m.ws_bytes_total.with_label_values(&v),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_exposes_the_founding_names() {
        let m = Metrics::new().expect("metrics");
        let c = VendorCounters::new(&m, crate::vendor::Vendor::Kite);
        c.ticks.inc();
        c.packets.inc();
        c.bytes.inc_by(184);
        m.external_api_calls_total
            .with_label_values(&["kite", "historical", "200"])
            .inc();
        let text = String::from_utf8(m.render()).expect("utf8");
        for name in [
            "ingestion_ticks_total{vendor=\"kite\"} 1",
            "websocket_packets_total{vendor=\"kite\"} 1",
            "websocket_data_bytes_total{vendor=\"kite\"} 184",
            "external_api_calls_total{endpoint=\"historical\",status=\"200\",vendor=\"kite\"} 1",
        ] {
            assert!(text.contains(name), "missing {name} in\n{text}");
        }
    }
}
