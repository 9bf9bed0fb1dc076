//! The producer thread: owns the only Kafka producer of the process, drains the feed threads'
//! bounded queues in batches, encodes records into reused buffers and sends them, accounts for
//! every delivery, and spills to the outage journal while Kafka is down.
//!
//! Feed threads never touch Kafka: they `try_send` into their own bounded crossbeam queue
//! ([`queue`]) and go on. When every queue is empty this thread parks on its own [`Wake`] (not on
//! the queues, whose waiting receiver would cost each send a wake-up, and never in `poll`, which
//! in rdkafka 0.38+ sleeps for its whole timeout); after each batch it serves every delivery
//! report ready (bounded; walked in place by `native.rs`, without rdkafka-rs's per-report
//! allocations), and moves between three modes:
//!
//! - **Direct**: records go straight to librdkafka, through `native.rs` (topic names made C
//!   strings once, header lists built in C, so a record costs no Rust allocation).
//! - **Spill**: entered when every broker is down, when a delivery fails, or when librdkafka's
//!   queue stays full. Records not yet on the wire are purged back from librdkafka and kept
//!   ("rescued"); new records are appended to the journal in arrival order. Once nothing is in
//!   flight and the broker answers again, the rescued records are written to the journal ahead of
//!   everything spilled (they are older), sorted by sequence number, and draining starts.
//! - **Drain**: the journal is sent back oldest first, one segment at a time, while new records
//!   keep going to its tail, so per-instrument order holds. A segment is deleted only when every
//!   record in it is acknowledged; a failure mid-segment returns to Spill and only the records not
//!   yet acknowledged are sent again. An empty journal returns to Direct.
//!
//! Shutdown: when every sender is dropped the thread drains its queues, flushes within the
//! configured bound, and journals whatever is not acknowledged by then (purging it back from
//! librdkafka), so a restart delivers it.

mod capture_files;
mod client;
mod encode;
mod error;
pub mod handover;
mod native;
mod topic_setup;
pub mod wake;

use std::{
    sync::{atomic::Ordering, Arc},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use capture_files::CAPTURE_RETRY;
pub use client::{
    check_broker, delete_topics, ensure_topics, ensure_topics_sized, producer_config,
    refused_for_good, refused_for_its_batch, set_topic_limit, topic_limits, DeliveryStats,
    FailedRecord, MAX_RECORD_BYTES, MIN_BATCH_BYTES,
};
use crossbeam_channel::Receiver;
pub use encode::TICK_SCHEMA_VERSION;
pub use error::ProducerError;
pub use handover::{queue, Handed, Handover, Intake};
use rdkafka::{
    error::RDKafkaErrorCode,
    producer::{Producer, PurgeConfig},
};
pub use topic_setup::{fit_batches_to_topics, prepare, prepare_later, TopicsReady};
pub use wake::Wake;

use crate::{
    config::{JournalConfig, KafkaConfig},
    journal::{Journal, JournalError, LoadedSegment, OwnedRecord, RecordRef},
    parsers::FrameKind,
    rawpool::RawBuf,
    shutdown::Shutdown,
    tick::Tick,
    vendor::Vendor,
};
use capture_files::CaptureFiles;

/// Which configured topic a record goes to. Names are resolved once at start-up; the code is
/// what the journal stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Topic {
    /// `KAFKA_TOPIC_TICKS`.
    Ticks = 0,
    /// `KAFKA_TOPIC_DLQ`.
    Dlq = 1,
    /// `KAFKA_TOPIC_RAW`.
    Raw = 2,
    /// `KAFKA_TOPIC_OHLC`.
    Ohlc = 3,
}

impl Topic {
    const ALL: [Topic; 4] = [Topic::Ticks, Topic::Dlq, Topic::Raw, Topic::Ohlc];

    fn from_code(c: u8) -> Option<Topic> {
        Self::ALL.into_iter().find(|t| *t as u8 == c)
    }
}

/// A prepared record, for what is not on the per-tick hot path (candles, tests).
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
    /// When the data was received (ns since epoch), for latency accounting; 0 if not live.
    pub received_at_ns: u64,
}

/// A raw frame as received, for `market.raw`.
#[derive(Debug, Clone)]
pub struct RawFrame {
    /// Vendor.
    pub vendor: Vendor,
    /// Connection id.
    pub conn_id: u16,
    /// Binary or text.
    pub kind: FrameKind,
    /// Receive time, epoch ns.
    pub received_at_ns: u64,
    /// The frame's bytes, in a buffer of the feed thread's pool that returns there when this
    /// frame is dropped (after it is encoded, journaled or captured).
    pub payload: RawBuf,
}

/// A rejected tick or unparseable frame, for the dead-letter topic.
#[derive(Debug, Clone)]
pub struct Reject {
    /// Vendor.
    pub vendor: Vendor,
    /// Connection id.
    pub conn_id: u16,
    /// Receive time, epoch ns.
    pub received_at_ns: u64,
    /// Stable reason label (the metric label).
    pub reason: &'static str,
    /// Stable error code.
    pub code: &'static str,
    /// A short static detail (the offending field, for validation rejects).
    pub detail: &'static str,
    /// The raw bytes (the packet or frame), in a pooled buffer like [`RawFrame::payload`].
    pub raw: RawBuf,
    /// The decoded tick, when the validator refused it.
    pub tick: Option<Tick>,
}

/// What feed and control threads hand to the producer thread, whole. Over the queue a tick
/// travels as its head plus the parts it carries, by value (no allocation per tick), and the
/// [`Intake`] rebuilds it ([`handover`]).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Outbound {
    /// A validated tick for `market.ticks`.
    Tick(Tick),
    /// A raw frame for `market.raw`.
    Raw(RawFrame),
    /// A reject for `market.ticks.dlq`.
    Reject(Box<Reject>),
    /// A prepared record.
    Record(Record),
}

impl Outbound {
    fn received_at_ns(&self) -> u64 {
        match self {
            Outbound::Tick(t) => t.received_at_ns,
            Outbound::Raw(r) => r.received_at_ns,
            Outbound::Reject(r) => r.received_at_ns,
            Outbound::Record(r) => r.received_at_ns,
        }
    }
}

/// Running producer thread.
#[derive(Debug)]
pub struct ProducerHandle {
    join: Option<JoinHandle<Result<FlushReport, ProducerError>>>,
    stats: Arc<DeliveryStats>,
    wake: Wake,
}

/// What the producer did over its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FlushReport {
    /// Records acknowledged.
    pub acked: u64,
    /// Delivery reports with an error (each then rescued or re-drained, not lost, unless
    /// refused for good: see `refused`).
    pub failed: u64,
    /// Records Kafka refused for good (too large or invalid for their topic, at the send or in
    /// a delivery report): counted and logged, not sent again.
    pub refused: u64,
    /// Records written to the journal.
    pub journaled: u64,
    /// Records drained from the journal and acknowledged.
    pub drained: u64,
    /// Records dropped because the journal was full (the documented last resort).
    pub dropped: u64,
    /// Records left in the journal at exit.
    pub left_in_journal_bytes: u64,
    /// Bytes of journaled records that the disk refused (full, or failing) and that were still
    /// only in memory at exit: lost. 0 unless the disk refused the journal's last records. An
    /// upper bound: a segment held in memory and partly drained when the stop could not rewrite
    /// it counts whole.
    pub unwritten_bytes: u64,
    /// Bytes of journal segments set aside unread (`JOURNAL_SEGMENT_QUARANTINED`): their
    /// records were not drained.
    pub quarantined_bytes: u64,
}

impl ProducerHandle {
    /// Delivery counters.
    pub fn stats(&self) -> &Arc<DeliveryStats> {
        &self.stats
    }

    /// The thread's wake-up, for the feed pipelines to notify once per frame
    /// ([`crate::pipeline::Pipeline::with_wake`]).
    pub fn wake(&self) -> Wake {
        self.wake.clone()
    }

    /// Raises a fatal error on the producer's librdkafka client, as librdkafka raises a real
    /// one (an idempotence invariant broken beyond repair): a drill of the recovery, which
    /// takes back what the client holds into the journal and replaces the client.
    pub fn drill_fatal_error(&self) {
        self.stats.drill_fatal.store(true, Ordering::Release);
        self.wake.notify();
    }

    /// Whether a drill asked for ([`ProducerHandle::drill_fatal_error`]) is not yet raised on
    /// the client: the thread raises it at its next turn, and records it sends until then go to
    /// the healthy client.
    pub fn fatal_drill_pending(&self) -> bool {
        self.stats.drill_fatal.load(Ordering::Acquire)
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
    /// The outage journal.
    pub journal: JournalConfig,
    /// Core to pin the thread to, if any.
    pub core: Option<usize>,
    /// `SCHED_FIFO` priority for the thread, if any (a refusal is logged; the thread runs on).
    pub rt_priority: Option<u8>,
    /// Bound on the final flush.
    pub flush_timeout: Duration,
    /// Records drained per queue per turn before a `poll`.
    pub batch: usize,
    /// Directory to write raw frames to as a capture file (one file per run), if any.
    pub capture_dir: Option<std::path::PathBuf>,
    /// Where live ticks mark the minutes they cover, so a backfill fetches only the gaps.
    pub live_coverage: Option<Arc<crate::backfill::LiveCoverage>>,
    /// Topics still to be made ready ([`prepare_later`]): every record is journaled until they
    /// are, and the client is made again if the batch size fitted to them differs. `None` when
    /// they were ready at start-up (or are the caller's business).
    pub topics_ready: Option<TopicsReady>,
}

/// A configured topic: its name (a C string, as librdkafka takes it) and `sent` counter,
/// resolved once.
struct TopicSlot {
    c_name: std::ffi::CString,
    sent: prometheus::IntCounter,
}

impl TopicSlot {
    /// The name as text (made from a `&str`, so always UTF-8).
    fn name(&self) -> &str {
        self.c_name.to_str().unwrap_or_default()
    }
}

struct Topics([TopicSlot; 4]);

impl Topics {
    /// The four topics of `k`.
    ///
    /// # Errors
    /// [`ProducerError::ClientConfig`] for a topic name with a NUL byte.
    fn new(k: &KafkaConfig) -> Result<Self, ProducerError> {
        let slot = |name: &str| {
            let c_name = std::ffi::CString::new(name).map_err(|_| {
                ProducerError::ClientConfig(format!("topic name {name:?} holds a NUL byte"))
            })?;
            Ok(TopicSlot {
                c_name,
                sent: crate::metrics::global()
                    .kafka_sent_total
                    .with_label_values(&[name]),
            })
        };
        Ok(Topics([
            slot(&k.topic_ticks)?,
            slot(&k.topic_dlq)?,
            slot(&k.topic_raw)?,
            slot(&k.topic_ohlc)?,
        ]))
    }

    fn slot(&self, t: Topic) -> &TopicSlot {
        let [ticks, dlq, raw, ohlc] = &self.0;
        match t {
            Topic::Ticks => ticks,
            Topic::Dlq => dlq,
            Topic::Raw => raw,
            Topic::Ohlc => ohlc,
        }
    }

    fn by_name(&self, name: &str) -> Option<Topic> {
        Topic::ALL
            .into_iter()
            .find(|t| self.slot(*t).name() == name)
    }
}

/// A librdkafka client that accounts into `stats` and hands failed records to `failed_tx`.
fn new_client(
    kafka: &KafkaConfig,
    stats: &Arc<DeliveryStats>,
    failed_tx: &crossbeam_channel::Sender<FailedRecord>,
) -> Result<native::Client, ProducerError> {
    let ctx = client::DeliveryContext::new(Arc::clone(stats), failed_tx.clone(), kafka);
    native::Client::new(client::create_producer(kafka, ctx)?)
        .ok_or_else(|| ProducerError::ClientConfig("librdkafka gave no main queue".into()))
}

/// Starts the producer thread over `queues`.
///
/// # Errors
/// [`ProducerError::ClientConfig`] if the client cannot be created, [`ProducerError::Journal`]
/// if the journal directory cannot be opened; the thread is not started.
pub fn spawn(
    settings: ProducerSettings,
    queues: Vec<Intake>,
) -> Result<ProducerHandle, ProducerError> {
    let stats = Arc::new(DeliveryStats::default());
    let (failed_tx, failed_rx) = crossbeam_channel::unbounded();
    let producer = new_client(&settings.kafka, &stats, &failed_tx)?;
    let journal = Journal::open(
        &settings.journal.dir,
        settings.journal.max_bytes,
        settings.journal.fsync,
    )
    .map_err(|e| ProducerError::Journal(e.to_string()))?;
    let start_mode = if journal.is_empty() && settings.topics_ready.is_none() {
        Mode::Direct
    } else {
        Mode::Spill
    };
    if !journal.is_empty() {
        log::warn!(event = "journal_found", bytes = journal.bytes(); "journal holds records from an earlier run; they drain first");
    }
    if settings.topics_ready.is_some() {
        log::warn!(event = "kafka_topics_pending"; "the topics are not made yet: records go to the journal until the broker answers");
    }
    let topics = Topics::new(&settings.kafka)?;
    let capture = match &settings.capture_dir {
        Some(dir) => Some(CaptureFiles::open(dir).map_err(|e| {
            ProducerError::Journal(format!("capture file in {}: {e}", dir.display()))
        })?),
        None => None,
    };
    let thread_stats = Arc::clone(&stats);
    let wake = Wake::new();
    let thread_wake = wake.clone();
    let join = std::thread::Builder::new()
        .name("producer".into())
        .spawn(move || {
            crate::affinity::pin_current("producer", settings.core);
            crate::affinity::apply_realtime("producer", settings.rt_priority);
            let m = crate::metrics::global();
            m.journal_bytes
                .set(i64::try_from(journal.bytes()).unwrap_or(i64::MAX));
            let mut w = Worker {
                producer,
                stats: thread_stats,
                failed_rx,
                failed_tx,
                kafka: settings.kafka.clone(),
                topics,
                brokers: settings.kafka.brokers.clone(),
                journal,
                mode: start_mode,
                rescue: Vec::new(),
                drain: None,
                drain_spare: DrainBuffers::default(),
                drain_acks: Vec::new(),
                next_seq: 1,
                encoder: encode::Encoder::new(settings.kafka.tick_format),
                last_probe: None,
                report: FlushReport::default(),
                journal_refusing: None,
                raw_to_kafka: settings.kafka.raw_enabled,
                capture,
                tick_headers: Default::default(),
                live_coverage: settings.live_coverage.clone(),
                final_drain: false,
                topics_ready: settings.topics_ready.clone(),
                refit: None,
                refit_unchanged_at: None,
            };
            let mut queues = queues;
            w.run(&mut queues, settings.batch.max(1), &thread_wake);
            w.finish(settings.flush_timeout)
        })
        .map_err(|e| ProducerError::Admin(format!("spawn producer thread: {e}")))?;
    Ok(ProducerHandle {
        join: Some(join),
        stats,
        wake,
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Direct,
    Spill,
    Drain,
}

/// The buffers a drain works in: the segment's bytes and index, and which records are
/// acknowledged. Kept between segments, so draining allocates per segment at most.
#[derive(Default)]
struct DrainBuffers {
    seg: LoadedSegment,
    acked: Vec<bool>,
}

/// A journal segment being sent back (which one: `buf.seg.id()`).
struct DrainState {
    buf: DrainBuffers,
    /// Sequence number of record 0; record i has `base + i`.
    base: u64,
    /// Records of it not acknowledged yet.
    unacked: usize,
    /// Next record index to send.
    next: usize,
    failed: bool,
}

impl DrainState {
    /// Marks record `i` done (acknowledged, or skipped for good); true if it was not already.
    fn settle(&mut self, i: usize) -> bool {
        match self.buf.acked.get_mut(i) {
            Some(a) if !*a => {
                *a = true;
                self.unacked = self.unacked.saturating_sub(1);
                true
            }
            _ => false,
        }
    }
}

/// At most this many journal records are in flight at once while draining.
const DRAIN_WINDOW: usize = 20_000;

/// Pace of the thread that reads the topics' limits again after a refused batch, while the
/// broker does not answer.
const REFIT_PACE: Duration = Duration::from_millis(500);

/// After a reading of the topics' limits that left the batch size as it was, how long refused
/// batches are taken as refused for good before the limits are read again: a refusal that
/// reading cannot mend (a topic too small for even the smallest batch) costs one reading a
/// minute, not one per refused record.
const REFIT_AGAIN: Duration = Duration::from_secs(60);

/// Delivery-report events served per producer turn at most (each covers one produce request).
const MAX_REPORT_EVENTS: usize = 256;

/// librdkafka's queue staying full this long sends the producer to the journal. A full queue with
/// a live broker is saturation, answered by back-pressure (this thread polls and waits, the feed
/// queues fill, the feeds wait); spilling then would only add disk I/O to an overloaded host.
/// The journal is for a broker that is gone (all brokers down, failed deliveries) or stuck.
const QUEUE_FULL_SPILL: Duration = Duration::from_secs(5);

struct Worker {
    producer: native::Client,
    stats: Arc<DeliveryStats>,
    failed_rx: Receiver<FailedRecord>,
    /// For a replacement client's delivery context (after a fatal error).
    failed_tx: crossbeam_channel::Sender<FailedRecord>,
    /// The client settings, for a replacement client.
    kafka: KafkaConfig,
    topics: Topics,
    brokers: String,
    journal: Journal,
    mode: Mode,
    rescue: Vec<FailedRecord>,
    drain: Option<DrainState>,
    /// The last drain's buffers, for the next segment.
    drain_spare: DrainBuffers,
    /// The drain's acknowledgements taken from the delivery context (reused each turn).
    drain_acks: Vec<u64>,
    next_seq: u64,
    encoder: encode::Encoder,
    last_probe: Option<Instant>,
    report: FlushReport,
    /// In a refusal episode, and why: the journal refused a record and the episode has not
    /// ended (`journal_accepts`). Mirrored by the `journal_full` gauge, logged once per episode.
    journal_refusing: Option<Refusal>,
    /// Whether raw frames go to `market.raw` (they may come only for the capture file).
    raw_to_kafka: bool,
    /// Capture files (`CAPTURE_DIR`), if any.
    capture: Option<CaptureFiles>,
    /// Tick headers per vendor code, built on first use (copied in C per record).
    tick_headers: [Option<native::CHeaders>; 8],
    live_coverage: Option<Arc<crate::backfill::LiveCoverage>>,
    /// The journal's last segment is draining; intake is held until it is acknowledged.
    final_drain: bool,
    /// Topics not ready (at start-up, or their limits being read again after a refused batch):
    /// no drain starts until they are ([`TopicsReady`]).
    topics_ready: Option<TopicsReady>,
    /// The thread reading the topics' limits again after a refused batch, and its stop.
    refit: Option<(Shutdown, JoinHandle<()>)>,
    /// When the last reading found the batch size already fitted: refused batches are then
    /// settled as refused for good until [`REFIT_AGAIN`] has passed.
    refit_unchanged_at: Option<Instant>,
}

/// Why the journal refuses records, which decides when a refusal episode ends.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Refusal {
    /// At its cap: over once a drain has freed room ([`Journal::has_room`]).
    Full,
    /// Failing to write (I/O, a record the format cannot hold): over once the journal is no
    /// longer written to, the producer back to producing directly.
    Failing,
}

impl Refusal {
    /// Whether an episode of this kind is over, with the producer in `mode` (`has_room` asked
    /// only at the cap: it sums the segments' sizes).
    fn over(self, mode: Mode, has_room: impl FnOnce() -> bool) -> bool {
        match self {
            Refusal::Full => has_room(),
            Refusal::Failing => mode == Mode::Direct,
        }
    }
}

enum SendOutcome {
    Sent,
    /// The queue stayed full: the record was not taken.
    Full,
    /// Refused at once by librdkafka's own checks (chiefly a record over `message.max.bytes`):
    /// final for the record.
    Refused(RDKafkaErrorCode),
    /// The client failed fatally and takes no record: not taken, the client is to be replaced.
    Fatal,
}

impl Worker {
    fn run(&mut self, queues: &mut [Intake], batch: usize, wake: &Wake) {
        let mut open: Vec<bool> = vec![true; queues.len()];
        let m = crate::metrics::global();
        let depth = m.queue_depth.with_label_values(&["feed"]);
        let mut idle = false;
        let mut last_item = Instant::now();
        while open.iter().any(|o| *o) {
            if self.mode == Mode::Drain && self.final_drain {
                // The journal's last segment is in flight: hold intake (the feed queues absorb
                // it, newer than everything journaled) until it is acknowledged, so the journal
                // really empties under steady load and the producer returns to Direct.
                std::thread::sleep(Duration::from_millis(1));
                self.turn();
                continue;
            }
            if idle {
                // Nothing came last round: nap while ticks flow, park to be woken once the feeds
                // are quiet (see `wake`); either way delivery reports, mode changes and draining
                // keep going, and senders that do not notify are picked up.
                let quiet = last_item.elapsed() >= wake::QUIET_AFTER;
                let timeout = if quiet {
                    wake::QUIET_POLL
                } else {
                    wake::FLOW_POLL
                };
                wake.park(timeout, quiet, || queues.iter().any(|q| !q.is_empty()));
            }
            let mut total_depth = 0usize;
            let mut taken = 0usize;
            for (q, is_open) in queues.iter_mut().zip(open.iter_mut()) {
                if !*is_open {
                    continue;
                }
                for _ in 0..batch {
                    match q.try_recv() {
                        Ok(item) => {
                            taken += 1;
                            self.handle(item);
                        }
                        Err(crossbeam_channel::TryRecvError::Empty) => break,
                        Err(crossbeam_channel::TryRecvError::Disconnected) => {
                            *is_open = false;
                            break;
                        }
                    }
                }
                total_depth += q.len();
            }
            idle = taken == 0;
            if !idle {
                last_item = Instant::now();
            }
            depth.set(i64::try_from(total_depth).unwrap_or(i64::MAX));
            self.turn();
        }
    }

    /// Serves every event librdkafka has ready (at most [`MAX_REPORT_EVENTS`] a turn). One
    /// delivery-report event covers one produce request (a batch of one partition): served one
    /// per turn, reports would pile up behind the broker's acknowledgements, records count
    /// against librdkafka's buffer until their report is served, and the buffer would stand
    /// full, so the measured ack latency would become buffer size / rate instead of the
    /// broker's round trip.
    fn serve_delivery_reports(&mut self) {
        self.producer
            .serve_reports(Duration::ZERO, MAX_REPORT_EVENTS);
    }

    /// Housekeeping once per batch: delivery reports, mode changes, draining, journal sync.
    fn turn(&mut self) {
        if self.stats.drill_fatal.swap(false, Ordering::AcqRel) {
            self.producer.raise_fatal_error();
        }
        self.serve_delivery_reports();
        if self.stats.fatal.swap(false, Ordering::AcqRel) {
            self.replace_client();
        }
        self.collect_failures();
        if self.stats.outage.swap(false, Ordering::AcqRel) && self.mode == Mode::Direct {
            self.enter_spill("all brokers down");
        }
        match self.mode {
            Mode::Direct => {}
            Mode::Spill => self.try_start_drain(),
            Mode::Drain => self.pump_drain(),
        }
        if let Some(c) = self.capture.as_mut() {
            c.turn();
        }
        if self.mode != Mode::Direct {
            if let Err(e) = self.journal.sync() {
                // What it could not write stays buffered and is written again next turn.
                self.journal_refuses("journal_sync_failed", &e);
            }
        }
        self.journal_accepts();
        let m = crate::metrics::global();
        m.kafka_in_flight
            .set(i64::try_from(self.stats.in_flight()).unwrap_or(i64::MAX));
        m.journal_bytes
            .set(i64::try_from(self.journal.bytes()).unwrap_or(i64::MAX));
    }

    fn handle(&mut self, item: Outbound) {
        if let Outbound::Raw(r) = &item {
            if let Some(c) = self.capture.as_mut() {
                c.write(r);
            }
            if !self.raw_to_kafka {
                return;
            }
        }
        self.encoder.encode(&item);
        if let (Outbound::Tick(t), Some(live)) = (&item, &self.live_coverage) {
            // The minute this tick covers, so a later backfill skips it (a hashed lookup of the
            // key, no allocation).
            let at = if t.exchange_time_ms > 0 {
                t.exchange_time_ms
            } else {
                (t.received_at_ns / 1_000_000) as i64
            };
            live.record(self.encoder.key(), at);
        }
        if self.mode != Mode::Direct {
            self.spill(&item);
            return;
        }
        let seq = self.take_seq();
        self.stats.note_received(seq, item.received_at_ns());
        let mut headers = encode::HeaderList::new();
        let view = self.encoder.view(&item, &mut headers);
        let topic = self.encoder.topic();
        // Tick headers depend only on the vendor: build them once and copy the C list per record.
        let prebuilt = match &item {
            Outbound::Tick(t) => self
                .tick_headers
                .get_mut(usize::from(t.vendor.code()))
                .and_then(|slot| {
                    if slot.is_none() {
                        *slot = native::CHeaders::build(view.headers.iter().copied());
                    }
                    slot.as_ref().and_then(native::CHeaders::copy)
                }),
            _ => None,
        };
        match send(
            &self.producer,
            &self.stats,
            &self.topics,
            topic,
            &view,
            seq,
            prebuilt,
        ) {
            SendOutcome::Sent => {}
            SendOutcome::Refused(code) => {
                note_refused(
                    &mut self.report,
                    self.topics.slot(topic).name(),
                    view.payload.len(),
                    code,
                );
            }
            SendOutcome::Full => {
                self.enter_spill("librdkafka queue full");
                self.spill(&item);
            }
            SendOutcome::Fatal => {
                self.enter_spill("kafka client failed fatally");
                self.spill(&item);
            }
        }
    }

    fn take_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// Appends the encoded `item` to the journal.
    fn spill(&mut self, item: &Outbound) {
        let mut headers = encode::HeaderList::new();
        let view = self.encoder.view(item, &mut headers);
        match self.journal.append(&view) {
            Ok(()) => self.report.journaled += 1,
            Err(e) => self.journal_failed(&e),
        }
    }

    fn journal_failed(&mut self, e: &JournalError) {
        self.report.dropped += 1;
        crate::metrics::global().journal_dropped_total.inc();
        self.journal_refuses("journal_refused_record", e);
    }

    /// Opens a refusal episode for `e` unless one is open. Loud once per episode (the journal
    /// may fail on every record and every turn while a disk is full): an error log as `event`
    /// and `journal_full`, which makes `/health` degraded and `/health/ready` 503 until the
    /// episode ends (`journal_accepts`); dropped records are counted by the caller. Not ended
    /// when a smaller record still fits: near the cap, refusals and fits alternate.
    fn journal_refuses(&mut self, event: &'static str, e: &JournalError) {
        if self.journal_refusing.is_some() {
            return;
        }
        log::error!(event = event, code = crate::error::ErrorCode::code(e); "{e}; records the journal cannot take are dropped and counted until it accepts again");
        self.journal_refusing = Some(match e {
            JournalError::Full { .. } => Refusal::Full,
            _ => Refusal::Failing,
        });
        crate::metrics::global().journal_full.set(1);
    }

    /// Ends a refusal episode, checked every turn: at the cap, once Kafka is back and the drain
    /// has freed room ([`Journal::has_room`]; not at Kafka's return itself, when the journal is
    /// still at its cap and records that arrive before the drain frees space are refused);
    /// failing to write, once the producer produces directly again and writes no more to it.
    fn journal_accepts(&mut self) {
        if self
            .journal_refusing
            .is_some_and(|r| r.over(self.mode, || self.journal.has_room()))
        {
            self.journal_refusing = None;
            crate::metrics::global().journal_full.set(0);
            log::info!(event = "journal_accepts_again", dropped = self.report.dropped, journal_bytes = self.journal.bytes(); "the journal accepts records again");
        }
    }

    /// librdkafka raised a fatal error: the client takes no record again. What it holds is
    /// purged back (failed reports, rescued into the journal as an outage's are), the producer
    /// spills, and a new client takes over; the journal drains through it once the broker
    /// answers. A record the broker wrote but had not acknowledged may then be written twice:
    /// at-least-once at this boundary, as at a shutdown's purge.
    fn replace_client(&mut self) {
        let (code, reason) = self
            .producer
            .fatal_error()
            .unwrap_or((RDKafkaErrorCode::Fatal, String::new()));
        log::error!(event = "kafka_client_fatal", code = "PRODUCER_CLIENT_FATAL", kafka_error = format!("{code:?}"), in_flight = self.stats.in_flight(); "librdkafka's producer failed fatally ({reason}): its records are taken back into the journal and a new client is made");
        self.enter_spill("kafka client failed fatally");
        self.producer
            .base()
            .purge(PurgeConfig::default().queue().inflight());
        self.producer
            .flush(Duration::from_millis(500), MAX_REPORT_EVENTS);
        match new_client(&self.kafka, &self.stats, &self.failed_tx) {
            Ok(client) => {
                // The old client is dropped here; rdkafka-rs's drop purges and serves whatever
                // it still held through the same accounting.
                self.producer = client;
                crate::metrics::global().kafka_client_replaced_total.inc();
                log::warn!(event = "kafka_client_replaced"; "a new librdkafka client took over; the journal drains through it");
            }
            Err(e) => {
                // The next drain attempt's send fails with `_FATAL` again and retries this, at
                // the probe's pace (500 ms); meanwhile records go to the journal.
                log::error!(event = "kafka_client_replace_failed", code = crate::error::ErrorCode::code(&e); "{e}");
            }
        }
    }

    fn enter_spill(&mut self, why: &str) {
        if self.mode == Mode::Spill {
            return;
        }
        log::error!(event = "kafka_outage", reason = why, in_flight = self.stats.in_flight(); "spilling to the journal");
        // Records already handed to librdkafka stay there: its idempotent retry delivers them
        // without duplicates when the broker returns (within `message.timeout.ms`). Purging them
        // here would turn "possibly persisted" records (written by the broker, ack lost with the
        // connection) into journal records sent again later: duplicates. Only a timeout or the
        // shutdown deadline hands them back, to be rescued.
        self.final_drain = false;
        if let Some(d) = self.drain.as_mut() {
            d.failed = true;
        }
        self.mode = Mode::Spill;
        self.last_probe = None;
    }

    fn collect_failures(&mut self) {
        while let Ok(f) = self.failed_rx.try_recv() {
            let in_drain = self
                .drain
                .as_ref()
                .is_some_and(|d| f.seq >= d.base && f.seq < d.base + d.buf.acked.len() as u64);
            if refused_for_good(f.code) && !self.refit_may_mend(&f) {
                // Sent again it would fail again: settled where it is (a journal record as if
                // acknowledged, so its segment can commit), counted and logged, and no outage.
                if let Some(d) = self.drain.as_mut().filter(|_| in_drain) {
                    let i = f.seq.checked_sub(d.base).unwrap_or(u64::MAX);
                    d.settle(usize::try_from(i).unwrap_or(usize::MAX));
                }
                note_refused(&mut self.report, &f.topic, f.payload.len(), f.code);
                continue;
            }
            if refused_for_good(f.code) {
                // A batch too large for a topic whose limit was lowered: handled as an outage
                // (the record is sent again, from the journal) once the batch size fits again.
                self.refit_batches(&f);
            }
            if in_drain {
                // Still in its segment on disk; it is sent again when draining resumes.
                if self.mode == Mode::Drain {
                    self.enter_spill("delivery failed while draining");
                }
            } else {
                if self.mode == Mode::Direct {
                    self.enter_spill("delivery failed");
                }
                self.rescue.push(f);
            }
        }
        self.apply_drain_acks();
    }

    /// Whether reading the topics' limits again may mend the refusal of `f`: it may have been
    /// refused for its batch ([`refused_for_its_batch`]) and a reading is wanted
    /// ([`refit_wanted`]).
    fn refit_may_mend(&self, f: &FailedRecord) -> bool {
        refused_for_its_batch(f, self.kafka.batch_bytes)
            && refit_wanted(
                self.topics_ready.is_some(),
                self.kafka.batch_bytes,
                self.refit_unchanged_at,
            )
    }

    /// A topic refused a batch of records that each fit the batch size: its limit must have
    /// been lowered since it was read. The producer spills (the caller rescues the record), a
    /// `topics` thread reads the limits again ([`prepare_later`]), and no drain starts until it
    /// has: the journal then drains through a client whose batches fit ([`Self::topics_made_ready`]).
    fn refit_batches(&mut self, f: &FailedRecord) {
        if self.topics_ready.is_some() {
            return;
        }
        // Records librdkafka holds unsent come back (as failed reports, rescued into the journal
        // in order ahead of the spill) rather than going out in batches that may now fit: sent
        // ahead of this refused one, they would put later ticks of an instrument before it.
        // Records already sent stay, to be acknowledged or refused: purging them could write
        // twice what the broker took.
        self.producer.base().purge(PurgeConfig::default().queue());
        log::error!(event = "kafka_batch_refused", code = "PRODUCER_TOPIC_LIMIT", topic = f.topic.as_str(), kafka_error = format!("{:?}", f.code), batch_bytes = self.kafka.batch_bytes; "the topic refused a batch of records each under the batch size: its max.message.bytes must have been lowered; records go to the journal while its limit is read again and the batches fitted to it");
        let stop = Shutdown::new();
        match prepare_later(self.kafka.clone(), stop.clone(), REFIT_PACE) {
            Ok((ready, join)) => {
                self.topics_ready = Some(ready);
                self.refit = Some((stop, join));
            }
            Err(e) => {
                // Sent again as they are: if refused again, settled for good (counted, logged).
                log::error!(event = "kafka_refit_failed", code = "PRODUCER_TOPIC_LIMIT"; "cannot start the thread that reads the topics' limits: {e}");
                self.refit_unchanged_at = Some(Instant::now());
            }
        }
    }

    fn apply_drain_acks(&mut self) {
        // Swapped with this thread's own vector, both keeping their capacity: no allocation
        // per turn.
        self.drain_acks.clear();
        match self.stats.drain_acks.lock() {
            Ok(mut v) => std::mem::swap(&mut *v, &mut self.drain_acks),
            Err(p) => std::mem::swap(&mut *p.into_inner(), &mut self.drain_acks),
        }
        if let Some(d) = self.drain.as_mut() {
            for seq in &self.drain_acks {
                let i = seq
                    .checked_sub(d.base)
                    .and_then(|i| usize::try_from(i).ok());
                if i.is_some_and(|i| d.settle(i)) {
                    self.report.drained += 1;
                }
            }
        }
    }

    /// In Spill: once nothing is in flight and the broker answers, persist the rescued records
    /// ahead of the spill and start draining.
    fn try_start_drain(&mut self) {
        if self.stats.in_flight() > 0 {
            return;
        }
        if self
            .last_probe
            .is_some_and(|t| t.elapsed() < Duration::from_millis(500))
        {
            return;
        }
        self.last_probe = Some(Instant::now());
        self.collect_failures();
        if self.persist_rescue().is_err() {
            return;
        }
        if !self.topics_made_ready() {
            return;
        }
        if check_broker(&self.brokers, Duration::from_millis(300)).is_err() {
            return;
        }
        crate::metrics::global().kafka_up.set(1);
        log::info!(event = "kafka_recovered", journal_bytes = self.journal.bytes(); "draining the journal");
        self.mode = Mode::Drain;
        if let Some(d) = self.drain.as_mut() {
            // Resume the interrupted segment: only what is not acknowledged goes again.
            d.failed = false;
            d.next = 0;
        }
    }

    /// Whether the topics are ready to produce to. Once they are (made by [`prepare_later`]),
    /// a batch size fitted to them other than the client's makes a new client: in Spill with
    /// nothing in flight, the old one holds no record.
    fn topics_made_ready(&mut self) -> bool {
        let Some(ready) = &self.topics_ready else {
            return true;
        };
        let Some(batch_bytes) = ready.batch_bytes() else {
            return false;
        };
        self.topics_ready = None;
        if let Some((_, join)) = self.refit.take() {
            // Its mark was its last act.
            let _ = join.join();
            self.refit_unchanged_at = (batch_bytes == self.kafka.batch_bytes).then(Instant::now);
            if self.refit_unchanged_at.is_some() {
                log::warn!(event = "kafka_batch_size_unchanged", code = "PRODUCER_TOPIC_LIMIT", batch_bytes = batch_bytes; "the topics' limits, read again, leave the batch size as it was: records refused as too large are refused for good for the next {} s", REFIT_AGAIN.as_secs());
            }
        }
        if batch_bytes != self.kafka.batch_bytes {
            let kafka = KafkaConfig {
                batch_bytes,
                ..self.kafka.clone()
            };
            match new_client(&kafka, &self.stats, &self.failed_tx) {
                Ok(client) => {
                    self.producer = client;
                    self.kafka = kafka;
                    log::info!(event = "kafka_batch_size_applied", batch_bytes = batch_bytes; "a new client sends batches fitted to the topics");
                }
                Err(e) => {
                    // The same settings made the client at start-up, so this is not expected;
                    // the old client goes on with its batch size, and refusals are counted.
                    log::error!(event = "kafka_client_replace_failed", code = crate::error::ErrorCode::code(&e); "{e}");
                }
            }
        }
        true
    }

    /// Writes rescued records to the journal in sequence order (held in memory if the disk
    /// refuses them: `Journal::write_rescue`).
    ///
    /// # Errors
    /// A record the journal's format cannot hold; the records stay here, tried again.
    fn persist_rescue(&mut self) -> Result<(), JournalError> {
        if self.rescue.is_empty() {
            return Ok(());
        }
        let mut rescue = std::mem::take(&mut self.rescue);
        rescue.sort_by_key(|f| f.seq);
        let records: Vec<OwnedRecord> = rescue
            .iter()
            .filter_map(|f| {
                let topic = self.topics.by_name(&f.topic)?;
                Some(OwnedRecord {
                    topic: topic as u8,
                    key: f.key.clone().unwrap_or_default(),
                    headers: f.headers.clone(),
                    payload: f.payload.clone(),
                })
            })
            .collect();
        match self.journal.write_rescue(&records) {
            Ok(()) => {
                self.report.journaled += records.len() as u64;
                log::warn!(event = "journal_rescued", records = records.len(); "records returned by Kafka were journaled ahead of the spill");
                Ok(())
            }
            Err(e) => {
                // Kept here and tried again at the next probe, ahead of any drain.
                self.journal_refuses("journal_rescue_failed", &e);
                self.rescue = rescue;
                Err(e)
            }
        }
    }

    /// In Drain: keep a window of journal records in flight; commit finished segments.
    fn pump_drain(&mut self) {
        loop {
            if self.drain.is_none() {
                // Loading the open tail segment means this is the last one: hold intake while
                // it drains (see `run`).
                self.final_drain = self.journal.only_tail_left();
                let mut buf = std::mem::take(&mut self.drain_spare);
                match self.journal.load_oldest(&mut buf.seg) {
                    Ok(Some(_)) => {
                        let len = buf.seg.len();
                        let n = len as u64;
                        let base = self.next_seq;
                        self.next_seq += n.max(1);
                        self.stats.drain_lo.store(base, Ordering::Release);
                        self.stats.drain_hi.store(base + n, Ordering::Release);
                        buf.acked.clear();
                        buf.acked.resize(len, false);
                        self.drain = Some(DrainState {
                            buf,
                            base,
                            unacked: len,
                            next: 0,
                            failed: false,
                        });
                    }
                    Ok(None) => {
                        self.drain_spare = buf;
                        self.final_drain = false;
                        log::info!(event = "journal_drained", drained = self.report.drained; "journal empty; producing directly");
                        self.mode = Mode::Direct;
                        return;
                    }
                    Err(e @ JournalError::Quarantined { bytes, .. }) => {
                        // Set aside unread: the rest of the journal drains on.
                        self.drain_spare = buf;
                        self.report.quarantined_bytes += bytes;
                        crate::metrics::global()
                            .journal_segments_quarantined_total
                            .inc();
                        log::error!(event = "journal_segment_quarantined", code = crate::error::ErrorCode::code(&e); "{e}");
                        continue;
                    }
                    Err(e) => {
                        // Read again at the next probe; set aside at the last attempt.
                        self.drain_spare = buf;
                        self.journal_refuses("journal_read_failed", &e);
                        self.enter_spill("journal unreadable");
                        return;
                    }
                }
            }
            let Some(d) = self.drain.as_mut() else { return };
            if d.failed {
                return;
            }
            // Send the next unacknowledged records, bounded by the window.
            let mut in_window = self.stats.in_flight() as usize;
            while d.next < d.buf.seg.len() && in_window < DRAIN_WINDOW {
                let i = d.next;
                d.next += 1;
                if d.buf.acked.get(i).copied().unwrap_or(true) {
                    continue;
                }
                // Read in place from the segment's bytes; headers go straight into librdkafka's
                // list, so a record costs no Rust allocation.
                let Some((topic, r)) = d
                    .buf
                    .seg
                    .get(i)
                    .and_then(|r| Some((Topic::from_code(r.topic)?, r)))
                else {
                    log::error!(event = "journal_unknown_topic", index = i; "skipping a journal record with an unknown topic code");
                    d.settle(i);
                    continue;
                };
                let headers = match r.headers.len() {
                    0 => None,
                    _ => native::CHeaders::build(r.headers),
                };
                let view = RecordRef {
                    topic: r.topic,
                    key: r.key,
                    headers: &[],
                    payload: r.payload,
                };
                match send(
                    &self.producer,
                    &self.stats,
                    &self.topics,
                    topic,
                    &view,
                    d.base + i as u64,
                    headers,
                ) {
                    SendOutcome::Sent => in_window += 1,
                    SendOutcome::Refused(code) => {
                        let bytes = r.payload.len();
                        d.settle(i);
                        note_refused(
                            &mut self.report,
                            self.topics.slot(topic).name(),
                            bytes,
                            code,
                        );
                    }
                    SendOutcome::Full | SendOutcome::Fatal => {
                        d.next = i;
                        return;
                    }
                }
            }
            self.serve_delivery_reports();
            self.collect_failures();
            let Some(d) = self.drain.as_ref() else { return };
            if d.failed {
                return;
            }
            if d.unacked == 0 {
                if let Some(Err(e)) = d.buf.seg.id().map(|id| self.journal.commit(id)) {
                    log::error!(event = "journal_commit_failed", code = crate::error::ErrorCode::code(&e); "{e}; the drained segment is not sent again, and its file is deleted once the disk allows");
                }
                if let Some(done) = self.drain.take() {
                    self.drain_spare = done.buf;
                }
                self.stats.drain_lo.store(0, Ordering::Release);
                self.stats.drain_hi.store(0, Ordering::Release);
                continue;
            }
            return;
        }
    }

    fn finish(mut self, timeout: Duration) -> Result<FlushReport, ProducerError> {
        let deadline = Instant::now() + timeout;
        // In Spill, ask the broker at once rather than at the probe's pace: if it is back, the
        // journal drains before the deadline instead of waiting for the next start.
        self.last_probe = None;
        // Give in-flight records (and, with the broker back, the journal) until the deadline.
        while Instant::now() < deadline {
            self.producer
                .flush(Duration::from_millis(50), MAX_REPORT_EVENTS);
            self.turn();
            let settled = self.stats.in_flight() == 0 && self.rescue.is_empty();
            // A reading of the topics' limits after a refused batch is waited for: the broker
            // answered moments ago, and the journal can drain once it is done.
            let refitting = self.refit.is_some();
            if settled && (self.mode == Mode::Direct || (self.mode == Mode::Spill && !refitting)) {
                break;
            }
        }
        if let Some((stop, join)) = self.refit.take() {
            // Still reading the topics' limits: the journal waits for the next start, which
            // reads them itself.
            stop.trigger();
            let _ = join.join();
        }
        // Whatever librdkafka still holds comes back as failed reports and is journaled.
        if self.stats.in_flight() > 0 {
            self.producer
                .base()
                .purge(PurgeConfig::default().queue().inflight());
            self.producer
                .flush(Duration::from_millis(500), MAX_REPORT_EVENTS);
        }
        self.collect_failures();
        if let Some(d) = self.drain.take() {
            let acked = &d.buf.acked;
            let unacked = |i: usize| !acked.get(i).copied().unwrap_or(false);
            if let Err(e) = self.journal.replace(&d.buf.seg, unacked) {
                log::error!(event = "journal_rewrite_failed", code = crate::error::ErrorCode::code(&e); "{e}");
            }
        }
        if let Err(e) = self.persist_rescue() {
            // The journal cannot take them and the process is ending: lost, so counted as
            // dropped.
            let n = self.rescue.len() as u64;
            self.report.dropped += n;
            crate::metrics::global().journal_dropped_total.inc_by(n);
            log::error!(event = "journal_rescue_lost", code = crate::error::ErrorCode::code(&e), records = n; "{e}; records Kafka handed back could not be journaled at exit: they are lost and counted as dropped");
        }
        if let Err(e) = self.journal.close() {
            log::error!(event = "journal_close_failed", code = crate::error::ErrorCode::code(&e); "{e}");
        }
        self.report.acked = self.stats.acked.load(Ordering::Acquire);
        self.report.failed = self.stats.failed.load(Ordering::Acquire);
        self.report.left_in_journal_bytes = self.journal.bytes();
        self.report.unwritten_bytes = self.journal.unwritten_bytes();
        let undeleted = self.journal.undeleted();
        if !undeleted.is_empty() {
            let files: Vec<String> = undeleted.iter().map(|p| p.display().to_string()).collect();
            log::error!(event = "journal_undeleted_at_exit", code = "JOURNAL_IO", files = files.join(" "); "drained segments the disk would not delete are left behind: the next start sends their records again unless these files are deleted first");
        }
        if self.report.unwritten_bytes > 0 {
            log::error!(event = "journal_unwritten_at_exit", code = "JOURNAL_IO", unwritten_bytes = self.report.unwritten_bytes; "the disk refused the journal's last records; they are lost with this process");
        }
        let r = self.report;
        log::info!(
            event = "producer_stopped",
            acked = r.acked,
            failed = r.failed,
            journaled = r.journaled,
            drained = r.drained,
            dropped = r.dropped,
            journal_bytes = r.left_in_journal_bytes,
            unwritten_bytes = r.unwritten_bytes,
            quarantined_bytes = r.quarantined_bytes;
            "producer stopped"
        );
        Ok(r)
    }
}

/// Whether a record refused for its batch is sent again after reading the topics' limits: yes
/// while a reading is `pending` (its records wait in the journal for it); otherwise only if a
/// reading can lower `batch_bytes` (not at [`MIN_BATCH_BYTES`] already: a topic too small even
/// for that, the start-up error, refuses for good) and the last reading, if it changed nothing
/// (`unchanged_at`), is [`REFIT_AGAIN`] old.
fn refit_wanted(pending: bool, batch_bytes: usize, unchanged_at: Option<Instant>) -> bool {
    pending
        || (batch_bytes > MIN_BATCH_BYTES
            && unchanged_at.is_none_or(|t| t.elapsed() >= REFIT_AGAIN))
}

/// Accounts for a record Kafka refused for good: `kafka_records_refused_total{topic}`, the
/// report, and an error log at the 1st, 2nd, 4th, 8th ... refusal on the topic (a topic that
/// refuses every record logs a line per doubling, not one per record).
fn note_refused(report: &mut FlushReport, topic: &str, bytes: usize, code: RDKafkaErrorCode) {
    report.refused += 1;
    let counter = crate::metrics::global()
        .kafka_refused_total
        .with_label_values(&[topic]);
    counter.inc();
    let n = counter.get();
    if n.is_power_of_two() {
        log::error!(event = "kafka_record_refused", code = "PRODUCER_RECORD_REFUSED", topic = topic, bytes = bytes, kafka_error = format!("{code:?}"), refused_so_far = n; "Kafka refused a record for good (too large or invalid for the topic); not sent again");
    }
}

/// Sends one record, polling and retrying while librdkafka's queue is full, for at most
/// [`QUEUE_FULL_SPILL`]. Through [`native::Client::produce`]: no Rust allocation per record.
fn send(
    producer: &native::Client,
    stats: &DeliveryStats,
    topics: &Topics,
    topic: Topic,
    view: &RecordRef<'_>,
    seq: u64,
    prebuilt: Option<native::CHeaders>,
) -> SendOutcome {
    let slot = topics.slot(topic);
    let mut headers = match prebuilt {
        Some(h) => Some(h),
        None if view.headers.is_empty() => None,
        // Built in C from the borrowed pairs. `None` only if librdkafka cannot allocate a list;
        // the record then goes without headers rather than not at all.
        None => native::CHeaders::build(view.headers.iter().copied()),
    };
    let record = native::Native {
        payload: view.payload,
        key: view.key,
        seq: usize::try_from(seq).unwrap_or(usize::MAX),
    };
    let mut full_since: Option<Instant> = None;
    loop {
        match producer.produce(&slot.c_name, &record, &mut headers) {
            Ok(()) => {
                stats.sent.fetch_add(1, Ordering::AcqRel);
                slot.sent.inc();
                return SendOutcome::Sent;
            }
            Err(RDKafkaErrorCode::QueueFull) => {
                crate::metrics::global()
                    .queue_full_total
                    .with_label_values(&["librdkafka"])
                    .inc();
                let since = *full_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= QUEUE_FULL_SPILL || stats.outage.load(Ordering::Acquire) {
                    return SendOutcome::Full;
                }
                producer.serve_reports(Duration::from_millis(1), MAX_REPORT_EVENTS);
            }
            Err(RDKafkaErrorCode::Fatal) => {
                stats.fatal.store(true, Ordering::Release);
                return SendOutcome::Fatal;
            }
            Err(e) => return SendOutcome::Refused(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{refit_wanted, Mode, Refusal, MIN_BATCH_BYTES, REFIT_AGAIN};

    /// The limits are read again for a batch refusal unless no reading can lower the batch size
    /// (at the smallest batch) or the last one, under a minute ago, changed nothing; records
    /// refused while a reading is pending always wait for it.
    #[test]
    fn the_limits_are_read_again_only_when_a_reading_may_lower_the_batch_size() {
        let now = Instant::now();
        let long_ago = now.checked_sub(REFIT_AGAIN + Duration::from_secs(1));
        assert!(refit_wanted(false, 1_000_000, None));
        assert!(!refit_wanted(false, 1_000_000, Some(now)));
        assert!(refit_wanted(false, 1_000_000, long_ago));
        assert!(!refit_wanted(false, MIN_BATCH_BYTES, None));
        assert!(!refit_wanted(false, MIN_BATCH_BYTES, long_ago));
        assert!(refit_wanted(true, MIN_BATCH_BYTES, Some(now)));
        assert!(refit_wanted(true, 1_000_000, Some(now)));
    }

    /// At the cap an episode lasts until the journal has room, whatever the mode (in Spill it
    /// cannot gain any); failing to write, until the producer stops writing to it (Direct), room
    /// or not.
    #[test]
    fn a_refusal_episode_ends_by_its_cause() {
        for mode in [Mode::Direct, Mode::Spill, Mode::Drain] {
            assert!(Refusal::Full.over(mode, || true), "{mode:?}");
            assert!(!Refusal::Full.over(mode, || false), "{mode:?}");
            for room in [true, false] {
                assert_eq!(
                    Refusal::Failing.over(mode, || room),
                    mode == Mode::Direct,
                    "{mode:?}, room {room}"
                );
            }
        }
    }
}
