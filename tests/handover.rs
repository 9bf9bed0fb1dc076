//! The hand-over queue moves a tick as its head plus the parts it carries (`src/producer/
//! handover.rs`). Here random Kite and Upstox frames (every mode: depth, greeks, neither) go
//! through the feed thread's real `Pipeline` into a real queue, and every tick the producer's
//! `Intake` rebuilds must be the tick the parser decoded, bit for bit, in order: produced when it
//! validates, in its dead-letter record when it does not.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/gen.rs"]
mod gen;

use gen::Rng;
use layer1::{
    feed::{FrameHandler, FrameMeta},
    parsers::{self, FrameKind, ParseError, TickSink},
    pipeline::Pipeline,
    producer::{self, Outbound},
    tick::{Fields, Tick},
    validate::ValidationLimits,
    vendor::Vendor,
};

/// Every tick the parser hands its sink.
#[derive(Default)]
struct Collect(Vec<Tick>);

impl TickSink for Collect {
    fn tick(&mut self, t: &Tick) {
        self.0.push(*t);
    }

    fn reject(&mut self, _: &ParseError, _: &[u8]) {}
}

const RECEIVED_AT_NS: u64 = 1_732_700_000_500_000_000;

/// Ticks in order: produced ones, and the decoded tick of each validation reject.
fn through_pipeline(
    p: &mut Pipeline,
    rx: &mut producer::Intake,
    vendor: Vendor,
    frame: &[u8],
) -> Vec<Tick> {
    let meta = FrameMeta {
        conn: 1,
        vendor,
        kind: FrameKind::Binary,
        received_at_ns: RECEIVED_AT_NS,
    };
    p.frame(&meta, frame);
    let mut out = Vec::new();
    while let Ok(item) = rx.try_recv() {
        match item {
            Outbound::Tick(t) => out.push(t),
            Outbound::Reject(r) => {
                assert_ne!(r.code, "PIPELINE_HANDOVER_INCOMPLETE", "a tick came apart");
                if let Some(t) = r.tick {
                    out.push(t);
                }
            }
            Outbound::Raw(_) | Outbound::Record(_) => {}
        }
    }
    assert!(rx.is_empty());
    out
}

#[test]
fn every_parsed_tick_comes_out_of_the_hand_over_queue_whole_and_in_order() {
    let (tx, mut rx) = producer::queue(1 << 12);
    let mut p = Pipeline::new(tx, ValidationLimits::default(), false);
    let mut rng = Rng(0x4a4d_2026);
    let mut frame = Vec::new();
    let (mut ticks, mut with_depth, mut with_greeks) = (0usize, 0usize, 0usize);
    for i in 0..6_000 {
        frame.clear();
        let vendor = if i % 2 == 0 {
            gen::kite_frame(&mut rng, 12, &mut frame);
            Vendor::Kite
        } else {
            gen::upstox_frame(&mut rng, 6, 0, &mut frame);
            Vendor::Upstox
        };
        let mut direct = Collect::default();
        let meta = parsers::FrameMeta {
            received_at_ns: RECEIVED_AT_NS,
            conn_id: 1,
        };
        parsers::parse_frame(vendor, FrameKind::Binary, &frame, &meta, &mut direct);
        let handed = through_pipeline(&mut p, &mut rx, vendor, &frame);
        assert_eq!(handed.len(), direct.0.len(), "frame {i}");
        for (a, b) in direct.0.iter().zip(&handed) {
            // Debug, not `==`: a NaN the validator refuses must come back as the same NaN.
            assert_eq!(format!("{a:?}"), format!("{b:?}"), "frame {i}");
            with_depth += usize::from(a.fields.has(Fields::DEPTH));
            with_greeks += usize::from(a.fields.has(Fields::GREEKS));
        }
        ticks += direct.0.len();
    }
    // The run covered every shape of tick.
    assert!(
        with_depth > 1_000 && with_greeks > 500 && ticks - with_depth > 1_000,
        "{ticks} ticks, {with_depth} with depth, {with_greeks} with greeks"
    );
}

/// The queue-full policy's last resort: a producer that makes no room for `QUEUE_FULL_WAIT`
/// is stuck, not slow, so the feed waits once (back-pressure, counted), then drops and counts
/// what does not fit, and `feed_queues_dropping` (which `/health` and `/health/ready` read)
/// says so; while it drops, later items are tried once without waiting (no new back-pressure
/// wait is counted), and once the queue accepts again, or the pipeline is gone, the gauge goes
/// back to 0.
#[test]
fn a_stuck_producer_makes_the_feed_drop_count_and_say_so_until_the_queue_accepts_again() {
    let m = layer1::metrics::global();
    let dropped = || m.ticks_dropped_total.with_label_values(&["kite"]).get();
    let waits = || m.queue_full_total.with_label_values(&["feed"]).get();
    let (tx, mut rx) = producer::queue(8);
    let mut p = Pipeline::new(tx, ValidationLimits::default(), false);
    let mut rng = Rng(0x5eed_f011);
    // A Kite frame whose tick count `fits` accepts.
    let mut frame_of = |fits: &dyn Fn(usize) -> bool| loop {
        let mut frame = Vec::new();
        gen::kite_frame(&mut rng, 40, &mut frame);
        let mut c = Collect::default();
        let meta = parsers::FrameMeta::default();
        parsers::parse_frame(Vendor::Kite, FrameKind::Binary, &frame, &meta, &mut c);
        if fits(c.0.len()) {
            return frame;
        }
    };
    // More ticks than the queue has slots, and one tick (at most four items).
    let frame = frame_of(&|n| n >= 12);
    let one = frame_of(&|n| n == 1);
    let meta = FrameMeta {
        conn: 1,
        vendor: Vendor::Kite,
        kind: FrameKind::Binary,
        received_at_ns: RECEIVED_AT_NS,
    };
    let (d0, w0) = (dropped(), waits());
    let started = std::time::Instant::now();
    p.frame(&meta, &frame);
    assert!(
        started.elapsed() >= layer1::pipeline::QUEUE_FULL_WAIT,
        "the feed waited for the producer first"
    );
    assert_eq!(waits(), w0 + 1, "one back-pressure wait, counted");
    let d1 = dropped();
    assert!(d1 > d0, "what did not fit was dropped and counted");
    assert_eq!(
        m.feed_queues_dropping.get(),
        1,
        "the dropping queue is shown"
    );

    // Still stuck: dropped at once, no new wait.
    p.frame(&meta, &frame);
    assert_eq!(waits(), w0 + 1, "no second wait while dropping");
    assert!(dropped() > d1);
    assert_eq!(m.feed_queues_dropping.get(), 1);

    // The producer takes what is queued: the queue accepts again.
    while rx.try_recv().is_ok() {}
    p.frame(&meta, &one);
    assert_eq!(m.feed_queues_dropping.get(), 0, "recovered");

    // Stuck again, and the feed thread ends while dropping: its queue no longer counts.
    p.frame(&meta, &frame);
    assert_eq!(m.feed_queues_dropping.get(), 1, "dropping again");
    drop(p);
    assert_eq!(
        m.feed_queues_dropping.get(),
        0,
        "a pipeline gone drops nothing"
    );
}
