//! The producer thread: owns the only Kafka producer of the process, drains the feed threads'
//! bounded queues in batches, encodes records and sends them, and does the delivery accounting.
//!
//! Feed threads never touch Kafka: they `try_send` into their own bounded crossbeam queue
//! ([`queue`]) and go on. This thread blocks on those queues (never in `poll`, which in rdkafka
//! 0.38+ sleeps for its whole timeout), calls `poll(0)` once per batch to run delivery callbacks,
//! and on `QueueFull` polls and retries the record it got back, which pushes back on the feed
//! queues. Shutdown: when every sender is dropped, the thread drains what is queued, flushes
//! within the configured bound and reports what stayed unacknowledged.

mod client;
mod error;

use std::{
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use client::{check_broker, ensure_topics, producer_config, DeliveryStats, FailedRecord};
use crossbeam_channel::{bounded, Receiver, Select, Sender};
pub use error::ProducerError;
use rdkafka::{
    error::{KafkaError, RDKafkaErrorCode},
    producer::{BaseProducer, BaseRecord, Producer},
};

use crate::config::KafkaConfig;

/// Which configured topic a record goes to. Names are resolved once at start-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `KAFKA_TOPIC_TICKS`.
    Ticks,
    /// `KAFKA_TOPIC_DLQ`.
    Dlq,
    /// `KAFKA_TOPIC_RAW`.
    Raw,
    /// `KAFKA_TOPIC_OHLC`.
    Ohlc,
}

/// A prepared record: topic, key, payload, headers. Used for everything that is not on the
/// per-tick hot path (candles, control output, tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Destination.
    pub topic: Topic,
    /// Partitioning key.
    pub key: Option<Vec<u8>>,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// Headers as (name, value).
    pub headers: Vec<(String, Vec<u8>)>,
    /// When the data was received (ns since epoch), for latency accounting.
    pub received_at_ns: u64,
}

/// What feed and control threads hand to the producer thread.
#[derive(Debug)]
pub enum Outbound {
    /// A prepared record.
    Record(Record),
}

/// One hand-over queue: the sending half goes to a feed (or control) thread.
pub fn queue(capacity: usize) -> (Sender<Outbound>, Receiver<Outbound>) {
    bounded(capacity)
}

/// Counters of the producer thread, readable from other threads.
#[derive(Debug, Default)]
pub struct ProducerStats {
    /// Delivery accounting (sent, acked, failed).
    pub delivery: DeliveryStats,
}

/// Running producer thread.
#[derive(Debug)]
pub struct ProducerHandle {
    join: Option<JoinHandle<Result<FlushReport, ProducerError>>>,
    stats: Arc<DeliveryStats>,
}

/// What the final flush achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushReport {
    /// Records acknowledged over the thread's life.
    pub acked: u64,
    /// Delivery reports with an error over the thread's life.
    pub failed: u64,
    /// Records still unacknowledged at the deadline.
    pub in_flight: u64,
}

impl ProducerHandle {
    /// Delivery counters.
    pub fn stats(&self) -> &Arc<DeliveryStats> {
        &self.stats
    }

    /// Waits for the thread to finish (it does once every sender is dropped).
    ///
    /// # Errors
    /// The thread's own error, or [`ProducerError::Stopped`] if it panicked.
    pub fn join(mut self) -> Result<FlushReport, ProducerError> {
        match self.join.take() {
            Some(j) => j.join().unwrap_or(Err(ProducerError::Stopped)),
            None => Err(ProducerError::Stopped),
        }
    }
}

/// Settings of the producer thread.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// Kafka client settings and topic names.
    pub kafka: KafkaConfig,
    /// Core to pin the thread to, if any.
    pub core: Option<usize>,
    /// Bound on the final flush.
    pub flush_timeout: Duration,
    /// Records drained per batch before a `poll`.
    pub batch: usize,
}

/// A configured topic: its name and its `sent` counter, resolved once.
struct TopicSlot {
    name: String,
    sent: prometheus::IntCounter,
}

impl TopicSlot {
    fn new(name: &str) -> Self {
        TopicSlot {
            name: name.to_owned(),
            sent: crate::metrics::global().kafka_sent_total.with_label_values(&[name]),
        }
    }
}

struct TopicNames {
    ticks: TopicSlot,
    dlq: TopicSlot,
    raw: TopicSlot,
    ohlc: TopicSlot,
}

impl TopicNames {
    fn new(k: &KafkaConfig) -> Self {
        TopicNames {
            ticks: TopicSlot::new(&k.topic_ticks),
            dlq: TopicSlot::new(&k.topic_dlq),
            raw: TopicSlot::new(&k.topic_raw),
            ohlc: TopicSlot::new(&k.topic_ohlc),
        }
    }

    fn slot(&self, t: Topic) -> &TopicSlot {
        match t {
            Topic::Ticks => &self.ticks,
            Topic::Dlq => &self.dlq,
            Topic::Raw => &self.raw,
            Topic::Ohlc => &self.ohlc,
        }
    }

    fn by_name(&self, name: &str) -> Option<Topic> {
        [Topic::Ticks, Topic::Dlq, Topic::Raw, Topic::Ohlc].into_iter().find(|t| self.slot(*t).name == name)
    }
}

/// Starts the producer thread over `queues`.
///
/// # Errors
/// [`ProducerError::ClientConfig`] if the client cannot be created; the thread is not started.
pub fn spawn(settings: ProducerSettings, queues: Vec<Receiver<Outbound>>) -> Result<ProducerHandle, ProducerError> {
    let stats = Arc::new(DeliveryStats::default());
    let (failed_tx, failed_rx) = crossbeam_channel::unbounded();
    let ctx = client::DeliveryContext::new(Arc::clone(&stats), failed_tx);
    let producer = client::create_producer(&settings.kafka, ctx)?;
    let thread_stats = Arc::clone(&stats);
    let join = std::thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            crate::affinity::pin_current("producer", settings.core);
            let mut worker = Worker {
                producer,
                stats: thread_stats,
                failed_rx,
                topics: TopicNames::new(&settings.kafka),
                retry: Vec::new(),
            };
            worker.run(&queues, settings.batch.max(1));
            worker.finish(settings.flush_timeout)
        })
        .map_err(|e| ProducerError::Admin(format!("spawn producer thread: {e}")))?;
    Ok(ProducerHandle { join: Some(join), stats })
}

struct Worker {
    producer: BaseProducer<client::DeliveryContext>,
    stats: Arc<DeliveryStats>,
    failed_rx: Receiver<FailedRecord>,
    topics: TopicNames,
    /// Failed deliveries waiting to be re-sent (in failure order).
    retry: Vec<FailedRecord>,
}

impl Worker {
    fn run(&mut self, queues: &[Receiver<Outbound>], batch: usize) {
        let mut open: Vec<bool> = vec![true; queues.len()];
        let m = crate::metrics::global();
        while open.iter().any(|o| *o) {
            let mut sel = Select::new();
            for (q, _) in queues.iter().zip(&open).filter(|(_, o)| **o) {
                sel.recv(q);
            }
            // Wait for data without burning the core; the short timeout keeps delivery reports
            // and retries flowing while the feeds are quiet.
            let _ = sel.ready_timeout(Duration::from_millis(5));
            for (i, q) in queues.iter().enumerate() {
                let Some(is_open) = open.get_mut(i) else { continue };
                if !*is_open {
                    continue;
                }
                for _ in 0..batch {
                    match q.try_recv() {
                        Ok(item) => self.send(item),
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => {
                            *is_open = false;
                            break;
                        }
                    }
                }
                m.queue_depth.with_label_values(&["feed"]).set(i64::try_from(q.len()).unwrap_or(i64::MAX));
            }
            self.producer.poll(Duration::ZERO);
            self.resend_failed();
            m.kafka_in_flight.set(i64::try_from(self.stats.in_flight()).unwrap_or(i64::MAX));
        }
    }

    fn send(&mut self, item: Outbound) {
        match item {
            Outbound::Record(r) => {
                let headers = client::owned_headers(&r.headers);
                self.send_raw(r.topic, r.key.as_deref(), &r.payload, Some(headers), r.received_at_ns);
            }
        }
    }

    /// Sends one record, polling and retrying while librdkafka's queue is full.
    fn send_raw(
        &mut self,
        topic: Topic,
        key: Option<&[u8]>,
        payload: &[u8],
        headers: Option<rdkafka::message::OwnedHeaders>,
        received_at_ns: u64,
    ) {
        let slot = self.topics.slot(topic);
        let mut record = BaseRecord::with_opaque_to(&slot.name, usize::try_from(received_at_ns).unwrap_or(usize::MAX)).payload(payload);
        if let Some(k) = key {
            record = record.key(k);
        }
        if let Some(h) = headers {
            record = record.headers(h);
        }
        let m = crate::metrics::global();
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.stats.sent.fetch_add(1, Ordering::AcqRel);
                    slot.sent.inc();
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    m.queue_full_total.with_label_values(&["librdkafka"]).inc();
                    record = back;
                    // Serve delivery reports so the queue drains; this back-pressures the feed
                    // queues, which count their own overflow.
                    self.producer.poll(Duration::from_millis(1));
                }
                Err((e, _)) => {
                    // Refused before queuing (e.g. message too large): the record never entered
                    // librdkafka, so account for it as a failure with its bytes.
                    m.kafka_failed_total.with_label_values(&[&slot.name]).inc();
                    log::error!(event = "kafka_send_refused", topic = slot.name.as_str(), code = format!("{e:?}"); "record refused by the client");
                    return;
                }
            }
        }
    }

    fn resend_failed(&mut self) {
        self.retry.extend(self.failed_rx.try_iter());
        if self.retry.is_empty() {
            return;
        }
        let pending = std::mem::take(&mut self.retry);
        for f in pending {
            log::warn!(event = "kafka_delivery_retry", topic = f.topic.as_str(); "{}", f.error);
            let Some(topic) = self.topics.by_name(&f.topic) else {
                log::error!(event = "kafka_retry_unknown_topic", topic = f.topic.as_str(); "dropping retry for a topic this producer does not own");
                continue;
            };
            let headers = client::owned_headers(&f.headers);
            self.send_raw(topic, f.key.as_deref(), &f.payload, Some(headers), crate::clock::now_unix_ns());
        }
    }

    fn finish(mut self, timeout: Duration) -> Result<FlushReport, ProducerError> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let _ = self.producer.flush(Duration::from_millis(100));
            self.resend_failed();
            if self.stats.in_flight() == 0 && self.failed_rx.is_empty() && self.retry.is_empty() {
                break;
            }
        }
        let report = FlushReport {
            acked: self.stats.acked.load(Ordering::Acquire),
            failed: self.stats.failed.load(Ordering::Acquire),
            in_flight: self.stats.in_flight(),
        };
        log::info!(event = "producer_flushed", acked = report.acked, failed = report.failed, in_flight = report.in_flight; "producer stopped");
        if report.in_flight > 0 {
            return Err(ProducerError::FlushTimeout { in_flight: report.in_flight });
        }
        Ok(report)
    }
}
