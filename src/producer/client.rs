//! The rdkafka side of the producer: client settings, the delivery-report context that does the
//! accounting, and topic administration.

use std::{
    future::Future,
    pin::pin,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    task::{Context, Poll, Wake, Waker},
    thread::{self, Thread},
    time::Duration,
};

use crossbeam_channel::Sender;
use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::{ClientContext, DefaultClientContext},
    config::ClientConfig,
    error::KafkaError,
    message::{Headers, Message, OwnedHeaders},
    producer::{BaseProducer, DeliveryResult, Producer, ProducerContext},
    types::RDKafkaErrorCode,
};

use super::ProducerError;
use crate::config::KafkaConfig;

/// A record whose delivery failed, handed back to the producer thread to retry or journal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedRecord {
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
}

/// Counters shared between the delivery callback (run inside `poll`) and readers elsewhere.
#[derive(Debug, Default)]
pub struct DeliveryStats {
    /// Records handed to librdkafka.
    pub sent: AtomicU64,
    /// Records the broker acknowledged.
    pub acked: AtomicU64,
    /// Records whose delivery report carried an error.
    pub failed: AtomicU64,
    /// Receive -> ack latency sum in ns (with `acked`, gives the mean).
    pub ack_latency_ns_sum: AtomicU64,
}

impl DeliveryStats {
    /// Records sent and not yet reported.
    pub fn in_flight(&self) -> u64 {
        let sent = self.sent.load(Ordering::Acquire);
        sent.saturating_sub(self.acked.load(Ordering::Acquire) + self.failed.load(Ordering::Acquire))
    }
}

/// librdkafka callbacks: delivery accounting and client errors.
pub(super) struct DeliveryContext {
    stats: Arc<DeliveryStats>,
    failed_tx: Sender<FailedRecord>,
}

impl DeliveryContext {
    /// A context that counts into `stats` and hands failed records to `failed_tx`.
    pub(super) fn new(stats: Arc<DeliveryStats>, failed_tx: Sender<FailedRecord>) -> Self {
        DeliveryContext { stats, failed_tx }
    }
}

impl ClientContext for DeliveryContext {
    fn error(&self, error: KafkaError, reason: &str) {
        // AllBrokersDown and friends: librdkafka keeps retrying by itself; say so once per event.
        let m = crate::metrics::global();
        if matches!(error.rdkafka_error_code(), Some(RDKafkaErrorCode::AllBrokersDown)) {
            m.kafka_up.set(0);
        }
        log::error!(event = "kafka_client_error", code = format!("{error:?}"); "{reason}");
    }
}

impl ProducerContext for DeliveryContext {
    /// The send time in ns (receive time for ticks), for the ack-latency figure.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_ns: usize) {
        let m = crate::metrics::global();
        match result {
            Ok(msg) => {
                self.stats.acked.fetch_add(1, Ordering::AcqRel);
                m.kafka_up.set(1);
                m.kafka_acked_total.with_label_values(&[msg.topic()]).inc();
                let now = crate::clock::now_unix_ns();
                let lat = now.saturating_sub(sent_at_ns as u64);
                self.stats.ack_latency_ns_sum.fetch_add(lat, Ordering::Relaxed);
            }
            Err((err, msg)) => {
                m.kafka_failed_total.with_label_values(&[msg.topic()]).inc();
                let headers = msg
                    .headers()
                    .map(|h| {
                        h.iter()
                            .map(|hd| (hd.key.to_owned(), hd.value.map(<[u8]>::to_vec).unwrap_or_default()))
                            .collect()
                    })
                    .unwrap_or_default();
                let failed = FailedRecord {
                    topic: msg.topic().to_owned(),
                    key: msg.key().map(<[u8]>::to_vec),
                    payload: msg.payload().map(<[u8]>::to_vec).unwrap_or_default(),
                    headers,
                    error: err.to_string(),
                };
                // The producer thread owns the receiver for as long as this context lives, so a
                // send can only fail during teardown, after the final accounting.
                if self.failed_tx.send(failed).is_err() {
                    log::error!(event = "kafka_failed_record_dropped_at_teardown"; "delivery failure after producer stop");
                }
                // Counted after the hand-back so that in_flight never reads 0 while a failed
                // record is still only in this callback.
                self.stats.failed.fetch_add(1, Ordering::AcqRel);
            }
        }
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
        .set("compression.type", cfg.compression)
        .set("message.timeout.ms", cfg.message_timeout_ms.to_string())
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "200000")
        .set("queue.buffering.max.kbytes", "262144")
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
pub(super) fn create_producer(cfg: &KafkaConfig, ctx: DeliveryContext) -> Result<BaseProducer<DeliveryContext>, ProducerError> {
    producer_config(cfg)
        .create_with_context(ctx)
        .map_err(|e| ProducerError::ClientConfig(e.to_string()))
}

/// Builds Kafka headers from (name, value) pairs.
pub(super) fn owned_headers(pairs: &[(String, Vec<u8>)]) -> OwnedHeaders {
    pairs.iter().fold(OwnedHeaders::new_with_capacity(pairs.len()), |h, (k, v)| {
        h.insert(rdkafka::message::Header { key: k, value: Some(v) })
    })
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
        .map_err(|e| ProducerError::Unreachable { brokers: brokers.to_owned(), reason: e.to_string() })
}

/// Creates each topic with `partitions` partitions (replication 1 unless the cluster is larger:
/// librdkafka's default replication of -1 lets the broker decide) when it does not exist yet.
///
/// # Errors
/// [`ProducerError::Admin`] when the broker refuses for another reason than "already exists".
pub fn ensure_topics(brokers: &str, topics: &[&str], partitions: i32, timeout: Duration) -> Result<(), ProducerError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .map_err(|e| ProducerError::ClientConfig(e.to_string()))?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|t| NewTopic::new(t, partitions, TopicReplication::Fixed(-1)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(timeout)).request_timeout(Some(timeout));
    let results = block_on(admin.create_topics(&new, &opts)).map_err(|e| ProducerError::Admin(e.to_string()))?;
    for r in results {
        match r {
            Ok(name) => log::info!(event = "kafka_topic_created", topic = name.as_str(), partitions = partitions; "created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((name, code)) => return Err(ProducerError::Admin(format!("create {name}: {code}"))),
        }
    }
    Ok(())
}
