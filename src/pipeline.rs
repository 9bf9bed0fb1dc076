//! The feed thread's frame handler: parse, validate, hand over. This is the per-tick hot path.
//!
//! For every frame: each packet is parsed into a stack `Tick`, validated, and copied into the
//! feed thread's bounded queue to the producer (its 184-byte head, with its depth sides and
//! greeks as items ahead of it only when it carries them: `crate::producer::handover`); then the raw frame is copied into a pooled
//! buffer for `market.raw` and capture files (`src/rawpool.rs`: filled when the pipeline is
//! built, each buffer returns from the producer thread, so the copy allocates nothing), after
//! the ticks so that it is not in their hand-off latency; rejects (parse errors and validator refusals) go
//! to the dead-letter topic with their bytes (pooled too) and reason and are counted in
//! `ingestion_ticks_rejected_total{vendor,reason}`. Nothing here allocates per tick or per frame
//! (a reject boxes its record: rejects are the exception path), locks, logs per tick above
//! `debug`, or makes a syscall beyond the hand-off stamps' clock reads (vDSO, no kernel entry:
//! one per [`STAMP_EVERY`] ticks and one per frame). The producer is notified once per frame
//! ([`crate::producer::Wake`]), which enters the kernel only when it parked asking for it.
//!
//! Queue-full policy (never a silent drop): back-pressure first. A full queue makes the feed
//! thread wait for the producer (counted in `queue_full_total{queue="feed"}`, logged once), so
//! the sockets are read no faster than Kafka takes the data and the vendor's TCP window closes.
//! Only if the producer makes no room for [`QUEUE_FULL_WAIT`] (it is stuck, not slow: it never
//! blocks on Kafka, it spills to the journal) is the item dropped, counted in
//! `ticks_dropped_total{vendor}`, logged and shown on `/health` (degraded, `feed_queues_dropping`)
//! and `/health/ready` (503); until the queue
//! accepts again, further items are tried once each without waiting, so a dead producer cannot
//! freeze the socket loop and its heartbeats.

use std::time::Duration;

use crossbeam_channel::{SendTimeoutError, Sender, TrySendError};
use prometheus::IntCounter;

use crate::{
    feed::{FeedEvent, FrameHandler, FrameMeta},
    metrics::Metrics,
    parsers::{self, FeedEvent as ParsedEvent, ParseError, TickSink},
    producer::{handover, Handed, Handover, RawFrame, Reject},
    rawpool::{PoolCounters, RawBuf, RawPool},
    tick::{Exchange, Tick},
    validate::{validate, ValidationLimits},
    vendor::Vendor,
};

/// How long a hand-off waits for space before the item is dropped and counted.
pub const QUEUE_FULL_WAIT: Duration = Duration::from_secs(5);

/// Ticks queued between two readings of the clock for the per-tick hand-off latency
/// ([`crate::latency::handoff_ticks`]): a reading (~20-30 ns) per 16 ticks costs under 2 ns a
/// tick, and bounds each tick's figure to within 16 hand-overs of its own.
pub const STAMP_EVERY: u32 = 16;

/// Raw-frame buffers per feed thread (`src/rawpool.rs`), allocated when the pipeline is built.
/// They bound the raw frames in flight to the producer: with all of them out the feed thread
/// waits for the producer, like on a full hand-over queue. 2,048 frames are ~20 ms of one-tick
/// frames at 100,000 ticks/s, and ~2 s of 100-tick frames.
pub const RAW_POOL_BUFFERS: usize = 2048;

/// Capacity of each pooled buffer. Frames up to this size never grow a buffer (a 200-packet
/// Kite quote frame is ~9 KB, a 50-entry Upstox full frame ~16 KB); larger ones grow it once
/// (counted in `raw_buffer_allocations_total`). Virtual size 32 MiB per feed thread; only the
/// buffers in use at the peak are ever touched (the pool hands out the most recently returned).
pub const RAW_POOL_BUFFER_BYTES: usize = 16 << 10;

/// Per-vendor counters, resolved once.
struct VendorSlot {
    ticks: IntCounter,
    dropped: IntCounter,
}

/// The hand-off state that the parser's sink needs (split from [`Pipeline`] so the parser can
/// borrow it mutably while the frame's bytes are borrowed too).
struct Handoff {
    tx: Sender<Handed>,
    limits: ValidationLimits,
    metrics: &'static Metrics,
    queue_full: IntCounter,
    slots: [Option<VendorSlot>; 6],
    overflowing: bool,
    backpressure_logged: bool,
    /// Buffers for raw frames and rejects' bytes, recycled by the producer thread.
    pool: RawPool,
    /// Canonical ids and multi-vendor failover (issue 6); `None` produces every tick as parsed.
    routing: Option<std::sync::Arc<crate::routing::Routing>>,
    vendor: Vendor,
    conn: u16,
    received_at_ns: u64,
    /// The producer's wake-up: notified once per frame, and before waiting on a full queue.
    wake: Option<crate::producer::Wake>,
    /// Ticks queued since the clock was last read for [`crate::latency::handoff_ticks`].
    unstamped: u32,
    /// Whether the current frame is the first its socket read completed (its ticks queue behind
    /// no other frame's): its ticks also go to [`crate::latency::handoff_ticks_first_of_read`].
    first_of_read: bool,
    /// Rejects sent to the dead-letter topic: parse errors and validator refusals alike, counted
    /// where both pass ([`Handoff::reject`]).
    rejects: u64,
}

impl Drop for Handoff {
    fn drop(&mut self) {
        // A feed thread that ends while dropping no longer drops.
        if self.overflowing {
            self.metrics.feed_queues_dropping.dec();
        }
    }
}

impl Handoff {
    fn slot(&mut self, v: Vendor) -> &VendorSlot {
        let m = self.metrics;
        let i = usize::from(v.code()).min(5);
        let [s0, s1, s2, s3, s4, s5] = &mut self.slots;
        let entry = match i {
            0 => s0,
            1 => s1,
            2 => s2,
            3 => s3,
            4 => s4,
            _ => s5,
        };
        entry.get_or_insert_with(|| VendorSlot {
            ticks: m.ticks_total.with_label_values(&[v.as_str()]),
            dropped: m.ticks_dropped_total.with_label_values(&[v.as_str()]),
        })
    }

    fn push(&mut self, item: Handed) -> bool {
        let item = match self.tx.try_send(item) {
            Ok(()) => {
                if self.overflowing {
                    self.overflowing = false;
                    self.metrics.feed_queues_dropping.dec();
                    log::warn!(event = "queue_recovered", vendor = self.vendor.as_str(); "hand-over queue accepts again");
                }
                return true;
            }
            Err(TrySendError::Full(item)) if !self.overflowing => item,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped();
                return false;
            }
        };
        // Back-pressure: the feed thread waits for the producer, so its sockets stop being read
        // and the vendor's TCP window closes, instead of dropping what was already received.
        self.notify();
        self.queue_full.inc();
        if !self.backpressure_logged {
            log::warn!(event = "queue_backpressure", vendor = self.vendor.as_str(); "producer hand-over queue full; the feed waits for the producer");
            self.backpressure_logged = true;
        }
        match self.tx.send_timeout(item, QUEUE_FULL_WAIT) {
            Ok(()) => true,
            Err(SendTimeoutError::Timeout(_)) | Err(SendTimeoutError::Disconnected(_)) => {
                self.overflowing = true;
                // `/health` degraded and `/health/ready` 503 while any feed queue drops.
                self.metrics.feed_queues_dropping.inc();
                log::error!(event = "queue_full", vendor = self.vendor.as_str(), code = "PIPELINE_QUEUE_FULL"; "producer made no room for {} ms; dropping and counting until it does", QUEUE_FULL_WAIT.as_millis());
                self.dropped();
                false
            }
        }
    }

    /// Records the ticks queued since the last reading as handed off by `now_ns`.
    #[inline]
    fn stamp(&mut self, now_ns: u64) {
        let lat = now_ns.saturating_sub(self.received_at_ns);
        crate::latency::handoff_ticks().record_n(lat, u64::from(self.unstamped));
        if self.first_of_read {
            crate::latency::handoff_ticks_first_of_read().record_n(lat, u64::from(self.unstamped));
        }
        self.unstamped = 0;
    }

    /// Wakes the producer if it is parked.
    #[inline]
    fn notify(&self) {
        if let Some(w) = &self.wake {
            w.notify();
        }
    }

    fn dropped(&mut self) {
        let v = self.vendor;
        self.slot(v).dropped.inc();
    }

    fn reject(
        &mut self,
        reason: &'static str,
        code: &'static str,
        detail: &'static str,
        raw: &[u8],
        received_at_ns: u64,
        tick: Option<Tick>,
    ) {
        self.rejects += 1;
        let v = self.vendor;
        self.metrics
            .ticks_rejected_total
            .with_label_values(&[v.as_str(), reason])
            .inc();
        log::debug!(event = "tick_rejected", vendor = v.as_str(), reason = reason; "{detail}");
        let raw = if raw.is_empty() {
            RawBuf::empty()
        } else {
            self.pool.copy(raw)
        };
        let r = Reject {
            vendor: v,
            conn_id: self.conn,
            received_at_ns,
            reason,
            code,
            detail,
            raw,
            tick,
        };
        self.push(Handed::Reject(Box::new(r)));
    }
}

/// The sink for one frame: the hand-off plus the frame's bytes (a validator refusal carries the
/// whole frame to the DLQ).
struct FrameSink<'a> {
    h: &'a mut Handoff,
    frame: &'a [u8],
}

impl TickSink for FrameSink<'_> {
    fn tick(&mut self, tick: &Tick) {
        self.h.tick(tick, self.frame);
    }

    fn reject(&mut self, err: &ParseError, raw: &[u8]) {
        let received = self.h.received_at_ns;
        self.h
            .reject(err.label(), err.code(), "", raw, received, None);
    }

    fn event(&mut self, event: &ParsedEvent<'_>) {
        self.h.event(event);
    }

    fn wants_upcoming(&self) -> bool {
        self.h.routing.is_some()
    }

    #[inline]
    fn upcoming(&mut self, vendor: Vendor, exchange: Exchange, short_key: [u8; 16]) {
        if let Some(r) = &self.h.routing {
            r.prefetch(vendor, exchange, short_key);
        }
    }
}

impl Handoff {
    fn tick(&mut self, tick: &Tick, frame: &[u8]) {
        let id = match &self.routing {
            Some(r) => match r.resolve(tick, self.received_at_ns) {
                // A suppressed standby tick is not lost: its frame is on `market.raw` and the
                // routing counts it.
                (crate::routing::Verdict::Suppress, _) => return,
                (crate::routing::Verdict::Produce, id) => id,
            },
            None => None,
        };
        // The queued head is copied from the parser's tick with the routing's id written in; the
        // validator does not read the instrument id, so it checks the parser's tick.
        match validate(tick, tick.received_at_ns, &self.limits) {
            Ok(()) => {
                log::debug!(event = "tick", vendor = tick.vendor.as_str(), token = tick.token.as_str(), ltp = tick.ltp; "tick");
                // The head (and parts, when the tick carries depth or greeks) go into the queue;
                // a tick dropped at a stuck queue was not handed over: no latency for it.
                if handover::hand_tick(tick, id, |item| self.push(item)) {
                    self.unstamped += 1;
                    if self.unstamped == STAMP_EVERY {
                        self.stamp(crate::clock::now_unix_ns());
                    }
                }
            }
            Err(rej) => {
                let mut t = *tick;
                if let Some(id) = id {
                    t.instrument_id = id;
                }
                self.reject(
                    rej.reason.label(),
                    "VALIDATION_REJECTED",
                    rej.field,
                    frame,
                    tick.received_at_ns,
                    Some(t),
                );
            }
        }
    }

    fn event(&mut self, event: &ParsedEvent<'_>) {
        match event {
            ParsedEvent::Text { vendor, kind, raw } => {
                let text = String::from_utf8_lossy(raw);
                let text = crate::redact::redact(&text);
                if *kind == parsers::TextKind::Error {
                    log::error!(event = "vendor_error_message", vendor = vendor.as_str(); "{text}");
                } else {
                    log::info!(event = "vendor_text_message", vendor = vendor.as_str(), kind = kind.as_str(); "{text}");
                }
            }
            ParsedEvent::MarketStatus {
                vendor,
                segment,
                status,
                at_ms,
            } => {
                log::info!(event = "market_status", vendor = vendor.as_str(), segment = *segment, status = status.as_str(), at_ms = *at_ms; "market status");
                // Rare (on connect and at session changes): the watchdog, /health and the
                // backfill guard read it from the shared store.
                let received_ms = i64::try_from(self.received_at_ns / 1_000_000).unwrap_or(0);
                crate::market_status::global().record(segment, *status, received_ms);
            }
            ParsedEvent::VendorDisconnect { vendor, reason } => {
                crate::feed::auth::vendor_disconnect(*vendor, *reason);
            }
        }
    }
}

/// What a pipeline has seen, for tests and the status page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PipelineCounts {
    /// Frames handled.
    pub frames: u64,
    /// Ticks decoded (valid or not).
    pub ticks: u64,
    /// Rejects (parse errors and validator refusals).
    pub rejects: u64,
}

/// A callback for connection events (the status registry).
type EventObserver = Box<dyn FnMut(&FeedEvent) + Send>;

/// The frame handler of one feed thread.
pub struct Pipeline {
    handoff: Handoff,
    clock: crate::status::MessageClock,
    raw_enabled: bool,
    counts: PipelineCounts,
    /// Optional observer of connection events (the status registry).
    on_event: Option<EventObserver>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("counts", &self.counts)
            .finish()
    }
}

impl Pipeline {
    /// A handler that sends into `tx`, validating with `limits`; raw frames go to `market.raw`
    /// when `raw_enabled`.
    pub fn new(tx: Handover, limits: ValidationLimits, raw_enabled: bool) -> Self {
        let metrics = crate::metrics::global();
        Pipeline {
            clock: crate::status::MessageClock::new(),
            handoff: Handoff {
                tx: tx.sender().clone(),
                limits,
                metrics,
                queue_full: metrics.queue_full_total.with_label_values(&["feed"]),
                slots: [None, None, None, None, None, None],
                overflowing: false,
                backpressure_logged: false,
                // With raw frames off only rejects use the pool: no fill, and the rare
                // allocations count.
                pool: RawPool::new(
                    RAW_POOL_BUFFERS,
                    RAW_POOL_BUFFER_BYTES,
                    raw_enabled,
                    PoolCounters {
                        allocations: Some(metrics.raw_buffer_allocations_total.clone()),
                        waits: Some(metrics.queue_full_total.with_label_values(&["raw_pool"])),
                    },
                ),
                routing: None,
                vendor: Vendor::Kite,
                conn: 0,
                received_at_ns: 0,
                wake: None,
                unstamped: 0,
                first_of_read: false,
                rejects: 0,
            },
            raw_enabled,
            counts: PipelineCounts::default(),
            on_event: None,
        }
    }

    /// Also calls `f` for every connection event (after logging it).
    pub fn with_event_observer(mut self, f: impl FnMut(&FeedEvent) + Send + 'static) -> Self {
        self.on_event = Some(Box::new(f));
        self
    }

    /// Routes every tick through `routing` (canonical instrument ids, failover).
    pub fn with_routing(mut self, routing: std::sync::Arc<crate::routing::Routing>) -> Self {
        self.handoff.routing = Some(routing);
        self
    }

    /// Notifies `wake` (the producer thread's, [`crate::producer::ProducerHandle::wake`]) once
    /// per frame, so a parked producer starts on the frame's ticks without the hand-over
    /// queue waking it per tick. Without one the producer finds them within its poll interval.
    pub fn with_wake(mut self, wake: crate::producer::Wake) -> Self {
        self.handoff.wake = Some(wake);
        self
    }

    /// What this pipeline has handled (rejects are counted by the hand-off, which every parse
    /// error and validator refusal passes through).
    pub fn counts(&self) -> PipelineCounts {
        PipelineCounts {
            rejects: self.handoff.rejects,
            ..self.counts
        }
    }

    /// Raw-frame buffers this pipeline allocated or grew on the feed thread (not the initial
    /// fill): 0 unless a frame was over [`RAW_POOL_BUFFER_BYTES`] or the producer starved it.
    pub fn raw_allocations(&self) -> u64 {
        self.handoff.pool.allocations()
    }
}

impl FrameHandler for Pipeline {
    fn on_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let h = &mut self.handoff;
        // The frames one read completed share its receive time (and connection): a frame that
        // does not is the first of its read.
        h.first_of_read = h.received_at_ns != meta.received_at_ns || h.conn != meta.conn;
        h.vendor = meta.vendor;
        h.conn = meta.conn;
        h.received_at_ns = meta.received_at_ns;
        // Ticks first: what else this frame needs (the raw copy, the status clock) is in
        // `after_frame`, which the event loop calls once every frame of the same read has had
        // its ticks handed over, so it is not in their latency.
        let pmeta = parsers::FrameMeta {
            received_at_ns: meta.received_at_ns,
            conn_id: meta.conn,
        };
        let mut sink = FrameSink { h, frame: payload };
        let outcome = parsers::parse_frame(meta.vendor, meta.kind, payload, &pmeta, &mut sink);
        let h = sink.h;
        if outcome.ticks > 0 {
            // Per frame, not per tick: one clock read (every tick of the frame shares its
            // receive time), the counter and the credentials-work mark.
            let now = crate::clock::now_unix_ns();
            h.stamp(now);
            let lat = now.saturating_sub(meta.received_at_ns);
            crate::latency::handoff().record(lat);
            if h.first_of_read {
                crate::latency::handoff_first_of_read().record(lat);
            }
            h.metrics.handoff_latency.observe(lat as f64 * 1e-9);
            h.slot(meta.vendor).ticks.inc_by(u64::from(outcome.ticks));
            crate::feed::auth::note_data(meta.vendor);
        }
        self.counts.frames += 1;
        self.counts.ticks += u64::from(outcome.ticks);
    }

    /// The raw frame's copy for `market.raw` and capture files, the producer's wake-up and the
    /// status clock: after the ticks of every frame read with this one are handed over.
    fn after_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let h = &mut self.handoff;
        h.vendor = meta.vendor;
        h.conn = meta.conn;
        if self.raw_enabled {
            let payload = h.pool.copy(payload);
            h.push(Handed::Raw(RawFrame {
                vendor: meta.vendor,
                conn_id: meta.conn,
                kind: meta.kind,
                received_at_ns: meta.received_at_ns,
                payload,
            }));
        }
        h.notify();
        // Last-message time for the status page: forwarded at most once a second per connection.
        self.clock.on_frame(
            crate::status::global(),
            meta.vendor,
            meta.conn,
            meta.received_at_ns,
        );
    }

    fn on_event(&mut self, ev: &FeedEvent) {
        match ev {
            FeedEvent::State {
                conn,
                vendor,
                state,
            } => {
                log::debug!(event = "pipeline_conn_state", conn = *conn, vendor = vendor.as_str(), state = format!("{state:?}"); "state");
            }
            FeedEvent::Disconnected { vendor, reason, .. } if *reason == "CONN_UNAUTHORIZED" => {
                crate::feed::auth::record_failure(*vendor, reason);
            }
            FeedEvent::CapacityExceeded { vendor, refused } => {
                log::error!(event = "subscription_capacity_exceeded", vendor = vendor.as_str(), refused = *refused; "instruments refused: every connection is at its cap");
            }
            _ => {}
        }
        if let Some(f) = self.on_event.as_mut() {
            f(ev);
        }
    }
}
