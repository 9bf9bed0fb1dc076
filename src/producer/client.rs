//! The rdkafka side of the producer: client settings, the delivery-report context that does the
//! accounting, and topic administration.

use std::{
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex,
    },
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
    time::Duration,
};

use crossbeam_channel::Sender;
use rdkafka::{
    admin::{
        AdminClient, AdminOptions, AlterConfig, NewTopic, OwnedResourceSpecifier,
        ResourceSpecifier, TopicReplication,
    },
    client::{ClientContext, DefaultClientContext},
    config::ClientConfig,
    error::KafkaError,
    message::{Headers, Message},
    producer::{BaseProducer, DeliveryResult, Producer, ProducerContext},
    types::RDKafkaErrorCode,
};

use super::ProducerError;
use crate::config::KafkaConfig;

/// A record whose delivery failed, handed back to the producer thread to rescue or re-drain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
    /// The producer's sequence number for the record (its delivery opaque).
    pub seq: u64,
    /// Topic it was sent to.
    pub topic: String,
    /// Its key, if any.
    pub key: Option<Vec<u8>>,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Its headers as (name, value) pairs.
    pub headers: Vec<(String, Vec<u8>)>,
    /// The error librdkafka reported.
    pub error: String,
    /// Its code: [`refused_for_good`] tells whether sending the record again can succeed.
    pub code: RDKafkaErrorCode,
}

/// The largest record the engine produces, and the `max.message.bytes` of the topics it
/// creates: a dead-letter record of the largest frame a feed accepts
/// ([`crate::feed::MAX_MESSAGE_BYTES`], its bytes in base64 plus the reject's fields) fits with
/// room to spare, and so does that frame on `market.raw`.
pub const MAX_RECORD_BYTES: usize = 8 << 20;

/// The smallest `batch.size` (`KAFKA_BATCH_BYTES`) the engine uses, the Java producer's default:
/// below it a request carries a handful of ticks and throughput falls with it. A topic whose
/// `max.message.bytes` is too small even for it refuses whole batches of small records.
pub const MIN_BATCH_BYTES: usize = 16 << 10;

/// The `batch.size` that fits a topic whose `max.message.bytes` is `limit`. librdkafka counts a
/// batch's records uncompressed with their framing, and the broker checks the batch as sent,
/// compressed, with its 61-byte header: a sixteenth of the limit and 1 KiB are left for that
/// header and for compression's worst case on incompressible bytes (lz4, zstd and gzip add well
/// under 1 %).
pub(super) fn batch_bytes_within(limit: usize) -> usize {
    limit.saturating_sub(limit / 16 + 1024)
}

/// Whether a record refused with `code` would be refused again however often it is sent: too
/// large or invalid for its topic. Such a record is settled (counted in
/// `kafka_records_refused_total` and logged), never rescued, journaled or re-drained: sent
/// again it would fail again, hold its journal segment open forever and send every later
/// record through the journal behind it.
pub fn refused_for_good(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::MessageBatchTooLarge
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTimestamp
    )
}

/// Whether `f`, refused as too large, may have been refused for its batch rather than for
/// itself: it is no larger than `batch_bytes` (librdkafka's `batch.size`), so it went in a batch
/// with others, which a topic whose `max.message.bytes` was lowered under the batch size
/// refuses whole. A record larger than a batch is sent alone: refused, it is refused for good.
pub fn refused_for_its_batch(f: &FailedRecord, batch_bytes: usize) -> bool {
    let bytes = f.payload.len()
        + f.key.as_ref().map_or(0, Vec::len)
        + f.headers
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>();
    matches!(
        f.code,
        RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::MessageBatchTooLarge
    ) && bytes <= batch_bytes
}

/// Size of the ring of receive times indexed by sequence number (a power of two above
/// librdkafka's `queue.buffering.max.messages`, so a slot is never reused while in flight).
const RING: usize = 1 << 18;

/// Counters shared between the delivery callback (run inside `poll`) and readers elsewhere.
#[derive(Debug)]
pub struct DeliveryStats {
    /// Records handed to librdkafka.
    pub sent: AtomicU64,
    /// Records the broker acknowledged.
    pub acked: AtomicU64,
    /// Records whose delivery report carried an error.
    pub failed: AtomicU64,
    /// Set by the client's error callback when every broker is down; the producer thread
    /// takes it (swap to false) and switches to the journal.
    pub outage: AtomicBool,
    /// Set when librdkafka raises a fatal error (an error event flagged fatal: the client
    /// accepts no record again) or a send is refused with `_FATAL`; the producer thread takes it
    /// and replaces the client.
    pub fatal: AtomicBool,
    /// A fatal-error drill asked for ([`super::ProducerHandle::drill_fatal_error`]).
    pub(super) drill_fatal: AtomicBool,
    /// Sequence range `[lo, hi)` of records currently being drained from the journal.
    pub drain_lo: AtomicU64,
    /// See `drain_lo`.
    pub drain_hi: AtomicU64,
    /// Acknowledged sequence numbers inside the drain range (only the producer thread locks it:
    /// the callback runs inside that thread's `poll`).
    pub drain_acks: Mutex<Vec<u64>>,
    /// Receive time of each in-flight record, by `seq % RING`.
    received: Box<[AtomicU64]>,
}

impl Default for DeliveryStats {
    fn default() -> Self {
        DeliveryStats {
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            outage: AtomicBool::new(false),
            fatal: AtomicBool::new(false),
            drill_fatal: AtomicBool::new(false),
            drain_lo: AtomicU64::new(0),
            drain_hi: AtomicU64::new(0),
            drain_acks: Mutex::new(Vec::new()),
            received: (0..RING).map(|_| AtomicU64::new(0)).collect(),
        }
    }
}

impl DeliveryStats {
    /// Records sent and not yet reported.
    pub fn in_flight(&self) -> u64 {
        let sent = self.sent.load(Ordering::Acquire);
        sent.saturating_sub(
            self.acked.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire),
        )
    }

    /// Notes the receive time of record `seq` (0 = not a live record: no latency sample).
    pub(super) fn note_received(&self, seq: u64, received_at_ns: u64) {
        if let Some(slot) = self.received.get((seq as usize) & (RING - 1)) {
            slot.store(received_at_ns, Ordering::Relaxed);
        }
    }

    fn in_drain(&self, seq: u64) -> bool {
        seq >= self.drain_lo.load(Ordering::Acquire) && seq < self.drain_hi.load(Ordering::Acquire)
    }
}

/// librdkafka callbacks: delivery accounting and client errors.
pub(super) struct DeliveryContext {
    stats: Arc<DeliveryStats>,
    failed_tx: Sender<FailedRecord>,
    /// `kafka_records_acked_total{topic}` per configured topic, resolved once.
    acked: Vec<(String, prometheus::IntCounter)>,
}

impl DeliveryContext {
    /// A context that counts into `stats` and hands failed records to `failed_tx`.
    pub(super) fn new(
        stats: Arc<DeliveryStats>,
        failed_tx: Sender<FailedRecord>,
        cfg: &KafkaConfig,
    ) -> Self {
        let m = crate::metrics::global();
        let acked = [
            &cfg.topic_ticks,
            &cfg.topic_dlq,
            &cfg.topic_raw,
            &cfg.topic_ohlc,
        ]
        .into_iter()
        .map(|t| {
            (
                t.clone(),
                m.kafka_acked_total.with_label_values(&[t.as_str()]),
            )
        })
        .collect();
        DeliveryContext {
            stats,
            failed_tx,
            acked,
        }
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // librdkafka keeps retrying by itself; the producer thread reacts to AllBrokersDown by
        // spilling to the journal instead of letting records pile up in librdkafka's memory.
        if matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::AllBrokersDown)
        ) {
            crate::metrics::global().kafka_up.set(0);
            self.stats.outage.store(true, Ordering::Release);
        }
        log::error!(event = "kafka_client_error", code = format!("{error:?}"); "{reason}");
    }
}

impl ProducerContext for DeliveryContext {
    /// The record's sequence number.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, seq: usize) {
        // Reached only through `BaseProducer::poll`, which the engine no longer calls: reports
        // are served in `native::Client::serve_reports` and `flush`. `BaseProducer`'s drop
        // still polls after a purge; by then the producer thread's `finish` has left nothing.
        let seq = seq as u64;
        match result {
            Ok(msg) => self.on_acked(msg.topic(), seq),
            Err((err, msg)) => {
                let headers = msg
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|hd| {
                                (
                                    hd.key.to_owned(),
                                    hd.value.map(<[u8]>::to_vec).unwrap_or_default(),
                                )
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                self.on_failed(FailedRecord {
                    seq,
                    topic: msg.topic().to_owned(),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                    error: err.to_string(),
                    code: err.rdkafka_error_code().unwrap_or(RDKafkaErrorCode::Fail),
                });
            }
        }
    }
}

impl DeliveryContext {
    /// Accounts for record `seq` acknowledged on `topic`: counters, the ack latency sample, and
    /// the drain's acknowledged set. Allocates nothing outside a journal drain.
    pub(super) fn on_acked(&self, topic: &str, seq: u64) {
        let m = crate::metrics::global();
        m.kafka_up.set(1);
        if let Some((_, c)) = self.acked.iter().find(|(t, _)| t == topic) {
            c.inc();
        }
        if self.stats.in_drain(seq) {
            match self.stats.drain_acks.lock() {
                Ok(mut v) => v.push(seq),
                Err(p) => p.into_inner().push(seq),
            }
        } else if let Some(slot) = self.stats.received.get((seq as usize) & (RING - 1)) {
            let received = slot.load(Ordering::Relaxed);
            if received > 0 {
                let lat = crate::clock::now_unix_ns().saturating_sub(received);
                crate::latency::ack().record(lat);
                m.ack_latency.observe(lat as f64 * 1e-9);
            }
        }
        self.stats.acked.fetch_add(1, Ordering::AcqRel);
    }

    /// Notes that librdkafka raised a fatal error on the client (an error event flagged fatal):
    /// the producer thread replaces the client.
    pub(super) fn on_fatal(&self) {
        self.stats.fatal.store(true, Ordering::Release);
    }

    /// Accounts for a record whose delivery failed and hands it back to the producer thread.
    pub(super) fn on_failed(&self, failed: FailedRecord) {
        crate::metrics::global()
            .kafka_failed_total
            .with_label_values(&[failed.topic.as_str()])
            .inc();
        // The producer thread owns the receiver for as long as this context lives.
        if self.failed_tx.send(failed).is_err() {
            log::error!(event = "kafka_failed_record_after_stop"; "delivery failure after producer stop");
        }
        // Counted after the hand-back so in_flight never reads 0 while a failed record is only
        // in this callback.
        self.stats.failed.fetch_add(1, Ordering::AcqRel);
    }
}

/// The client settings every producer of this engine uses.
pub fn producer_config(cfg: &KafkaConfig) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &cfg.brokers)
        .set("client.id", "layer1")
        // Idempotence: acks=all, bounded in-flight, retries without duplicates or reordering.
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", cfg.linger_ms.to_string())
        // Above librdkafka's 1,000,000-byte default, which would refuse a large frame on
        // `market.raw` or its dead-letter record (batches stay within `batch.size`).
        .set("message.max.bytes", MAX_RECORD_BYTES.to_string())
        .set("compression.type", cfg.compression)
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set(
            "request.timeout.ms",
            cfg.message_timeout_ms.min(30_000).to_string(),
        )
        .set("batch.num.messages", "10000")
        // Fitted at start-up to the smallest `max.message.bytes` of the topics, which refuse a
        // larger batch as a whole (`fit_batches_to_topics`).
        .set("batch.size", cfg.batch_bytes.to_string())
        // The producer's standing buffer: enough for what is in flight plus bursts; beyond it
        // the producer waits (back-pressure) and, after a while, journals. Sizing reasoning:
        // docs/operations.md (Sizing).
        .set(
            "queue.buffering.max.messages",
            cfg.buffer_max_messages.to_string(),
        )
        .set(
            "queue.buffering.max.kbytes",
            cfg.buffer_max_kbytes.to_string(),
        )
        .set("socket.nagle.disable", "true")
        .set("reconnect.backoff.ms", "50")
        .set("reconnect.backoff.max.ms", "1000")
        .set("topic.metadata.refresh.interval.ms", "10000");
    c
}

/// Creates the producer.
///
/// # Errors
/// [`ProducerError::ClientConfig`] when librdkafka refuses the settings.
pub(super) fn create_producer(
    cfg: &KafkaConfig,
    ctx: DeliveryContext,
) -> Result<BaseProducer<DeliveryContext>, ProducerError> {
    producer_config(cfg)
        .create_with_context(ctx)
        .map_err(|e| ProducerError::ClientConfig(e.to_string()))
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on this thread (rdkafka's admin API is future-based; the engine
/// has no async runtime and needs none for a handful of start-up calls).
fn block_on<F: Future>(fut: F) -> F::Output {
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut fut = pin!(fut);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park_timeout(Duration::from_millis(50));
    }
}

/// Each topic's `max.message.bytes` as the broker reports it, for the topics it knows (the
/// others, and one created a moment ago whose configuration the broker does not list yet, are
/// left out), so the engine can say at start-up which topics would refuse its larger
/// records ([`MAX_RECORD_BYTES`]).
///
/// # Errors
/// [`ProducerError::Admin`] when the broker does not answer the request.
pub fn topic_limits(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<Vec<(String, usize)>, ProducerError> {
    let (admin, opts) = admin(brokers, timeout)?;
    let specs: Vec<ResourceSpecifier<'_>> =
        topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
    let results = block_on(admin.describe_configs(&specs, &opts))
        .map_err(|e| ProducerError::Admin(e.to_string()))?;
    Ok(results
        .into_iter()
        .filter_map(Result::ok)
        .filter_map(|r| {
            let OwnedResourceSpecifier::Topic(name) = &r.specifier else {
                return None;
            };
            let bytes = r.get("max.message.bytes")?.value.as_deref()?.parse().ok()?;
            Some((name.clone(), bytes))
        })
        .collect())
}

/// Checks that the broker answers a metadata request within `timeout`.
///
/// # Errors
/// [`ProducerError::Unreachable`] with the client's reason.
pub fn check_broker(brokers: &str, timeout: Duration) -> Result<usize, ProducerError> {
    let probe: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("log_level", "3")
        .create()
        .map_err(|e| ProducerError::ClientConfig(e.to_string()))?;
    probe
        .client()
        .fetch_metadata(None, timeout)
        .map(|md| md.brokers().len())
        .map_err(|e| ProducerError::Unreachable {
            brokers: brokers.to_owned(),
            reason: e.to_string(),
        })
}

/// An admin client for `brokers` and options bounding each call by `timeout`.
fn admin(
    brokers: &str,
    timeout: Duration,
) -> Result<(AdminClient<DefaultClientContext>, AdminOptions), ProducerError> {
    let admin = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| ProducerError::ClientConfig(e.to_string()))?;
    let opts = AdminOptions::new()
        .operation_timeout(Some(timeout))
        .request_timeout(Some(timeout));
    Ok((admin, opts))
}

/// Sets the `max.message.bytes` of an existing `topic` to `bytes`, as an operator would while
/// the engine runs (for drills and tests: the engine reads the new limit when the topic refuses
/// a batch under it). Kafka's AlterConfigs replaces the topic's whole set of dynamic settings:
/// any other setting made on the topic returns to the broker's default.
///
/// # Errors
/// [`ProducerError::Admin`] when the broker refuses or does not answer.
pub fn set_topic_limit(
    brokers: &str,
    topic: &str,
    bytes: usize,
    timeout: Duration,
) -> Result<(), ProducerError> {
    let (admin, opts) = admin(brokers, timeout)?;
    let value = bytes.to_string();
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", &value);
    let results = block_on(admin.alter_configs(&[change], &opts))
        .map_err(|e| ProducerError::Admin(e.to_string()))?;
    for r in results {
        if let Err((_, code)) = r {
            return Err(ProducerError::Admin(format!("alter {topic}: {code}")));
        }
    }
    Ok(())
}

/// Deletes `topics` (what a bench made for one run: a run writes gigabytes that the broker
/// would otherwise keep for its retention time). Topics that do not exist are not an error.
///
/// # Errors
/// [`ProducerError::Admin`] when the broker refuses for another reason than "unknown topic".
pub fn delete_topics(
    brokers: &str,
    topics: &[&str],
    timeout: Duration,
) -> Result<(), ProducerError> {
    let (admin, opts) = admin(brokers, timeout)?;
    let results = block_on(admin.delete_topics(topics, &opts))
        .map_err(|e| ProducerError::Admin(e.to_string()))?;
    for r in results {
        match r {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((name, code)) => {
                return Err(ProducerError::Admin(format!("delete {name}: {code}")))
            }
        }
    }
    Ok(())
}

/// Creates each topic with `partitions` partitions (replication 1 unless the cluster is larger:
/// librdkafka's default replication of -1 lets the broker decide) and a `max.message.bytes` of
/// [`MAX_RECORD_BYTES`] (the broker's default of 1 MiB would refuse a large frame on
/// `market.raw`) when it does not exist yet. An existing topic keeps its settings.
///
/// # Errors
/// [`ProducerError::Admin`] when the broker refuses for another reason than "already exists".
pub fn ensure_topics(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    timeout: Duration,
) -> Result<(), ProducerError> {
    ensure_topics_sized(brokers, topics, partitions, MAX_RECORD_BYTES, timeout)
}

/// [`ensure_topics`] with the topics' `max.message.bytes` given.
///
/// # Errors
/// [`ProducerError::Admin`] when the broker refuses for another reason than "already exists".
pub fn ensure_topics_sized(
    brokers: &str,
    topics: &[&str],
    partitions: i32,
    max_message_bytes: usize,
    timeout: Duration,
) -> Result<(), ProducerError> {
    let (admin, opts) = admin(brokers, timeout)?;
    let max_bytes = max_message_bytes.to_string();
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| {
            NewTopic::new(t, partitions, TopicReplication::Fixed(-1))
                .set("max.message.bytes", &max_bytes)
        })
        .collect();
    let results = block_on(admin.create_topics(&new, &opts))
        .map_err(|e| ProducerError::Admin(e.to_string()))?;
    for r in results {
        match r {
            Ok(name) => {
                log::info!(event = "kafka_topic_created", topic = name.as_str(), partitions = partitions; "created")
            }
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => {
                return Err(ProducerError::Admin(format!("create {name}: {code}")))
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode as E;

    /// Only a refusal that sending again cannot mend (the record too large or invalid for its
    /// topic) is final; an outage, a timeout, a leader change or a full queue is not.
    #[test]
    fn only_a_record_too_large_or_invalid_is_refused_for_good() {
        for code in [
            E::MessageSizeTooLarge,
            E::InvalidMessageSize,
            E::MessageBatchTooLarge,
            E::InvalidRecord,
            E::InvalidTimestamp,
        ] {
            assert!(super::refused_for_good(code), "{code:?}");
        }
        for code in [
            E::MessageTimedOut,
            E::AllBrokersDown,
            E::BrokerTransportFailure,
            E::QueueFull,
            E::NotLeaderForPartition,
            E::RequestTimedOut,
            E::UnknownTopicOrPartition,
            E::NotEnoughReplicas,
            E::InvalidMessage,
            E::Fail,
        ] {
            assert!(!super::refused_for_good(code), "{code:?}");
        }
    }

    /// A record refused as too large is taken as refused for its batch only if it fits a batch
    /// itself, key and headers included; any other refusal is not about its batch.
    #[test]
    fn a_record_under_the_batch_size_may_have_been_refused_for_its_batch() {
        let record = |code, payload: usize| super::FailedRecord {
            seq: 1,
            topic: "market.ticks".into(),
            key: Some(b"kite:256265".to_vec()),
            payload: vec![b'x'; payload],
            headers: vec![("vendor".into(), b"kite".to_vec())],
            error: String::new(),
            code,
        };
        // 11 key bytes and 10 header bytes: 979 bytes of payload make a 1,000-byte record.
        assert!(super::refused_for_its_batch(
            &record(E::MessageSizeTooLarge, 979),
            1_000
        ));
        assert!(super::refused_for_its_batch(
            &record(E::MessageBatchTooLarge, 10),
            1_000
        ));
        assert!(!super::refused_for_its_batch(
            &record(E::MessageSizeTooLarge, 980),
            1_000
        ));
        for code in [E::InvalidRecord, E::InvalidMessageSize, E::MessageTimedOut] {
            assert!(
                !super::refused_for_its_batch(&record(code, 10), 1_000),
                "{code:?}"
            );
        }
    }

    /// Every producer of the engine is idempotent with acks=all (issue 5's delivery guarantee:
    /// retries without duplicates or reordering), lingers 1 ms and compresses with lz4 unless
    /// configured otherwise, and takes the configured values when they are.
    #[test]
    fn every_producer_is_idempotent_with_acks_all_and_the_configured_batching() {
        let defaults = crate::config::Config::from_lookup(&|_| None).expect("defaults");
        let c = super::producer_config(&defaults.kafka);
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
        assert_eq!(c.get("linger.ms"), Some("1"));
        assert_eq!(
            c.get("message.max.bytes"),
            Some(super::MAX_RECORD_BYTES.to_string().as_str())
        );
        assert_eq!(c.get("compression.type"), Some("lz4"));
        assert_eq!(c.get("batch.size"), Some("1000000"));
        let set = crate::config::Config::from_lookup(&|k| match k {
            "KAFKA_LINGER_MS" => Some("5".to_owned()),
            "KAFKA_BATCH_BYTES" => Some("65536".to_owned()),
            "KAFKA_COMPRESSION" => Some("zstd".to_owned()),
            "KAFKA_BROKERS" => Some("10.0.0.1:9092,10.0.0.2:9092".to_owned()),
            _ => None,
        })
        .expect("settings");
        let c = super::producer_config(&set.kafka);
        assert_eq!(c.get("linger.ms"), Some("5"));
        assert_eq!(c.get("batch.size"), Some("65536"));
        assert_eq!(c.get("compression.type"), Some("zstd"));
        assert_eq!(
            c.get("bootstrap.servers"),
            Some("10.0.0.1:9092,10.0.0.2:9092")
        );
        assert_eq!(c.get("enable.idempotence"), Some("true"));
        assert_eq!(c.get("acks"), Some("all"));
    }
}
