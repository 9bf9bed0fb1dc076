//! Proves the producer thread allocates (almost) nothing per record while it drains the outage
//! journal back into Kafka, against real parts: a journal left by an earlier run (ten segments,
//! written through the journal's own API), the whole engine started on it with the vendor
//! simulator streaming live ticks (which go to the journal's tail while it drains, as after a real
//! outage) and the local broker. Allocations are counted per OS thread (the counting allocator
//! shared with the benches); only the producer thread's are compared, in a window after the first
//! segment, against the records Kafka acknowledged in it.
//!
//! Before segments were read into a reused buffer and sent from views into it, each drained
//! record cost the producer thread 8 allocations (its key, header names and values and payload
//! copied out of the segment, a `Vec` of header pairs per send): this test counted 458,743 over
//! 71,880 acknowledged records, live ones among them. The bound is 1 per 1,000: a segment's file
//! name or a log line may allocate, a per-record allocation cannot pass.
//!
//! In its own test binary: the counter finds the producer thread by name, and one engine per
//! process keeps that name unique.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

#[path = "../benches/support/alloc.rs"]
#[allow(dead_code)]
mod alloc;
mod common;

use std::time::Duration;

use common::acked;
use layer1::{
    config::FsyncPolicy,
    journal::{Journal, RecordRef, SEGMENT_BYTES},
};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// Segments the earlier run left.
const SEGMENTS: u64 = 10;

/// Writes about `SEGMENTS` full segments of tick-shaped records (topic code 0) into `dir`, as
/// a run stopped during an outage leaves them; returns how many.
fn earlier_run(dir: &std::path::Path) -> u64 {
    let mut j = Journal::open(dir, u64::MAX, FsyncPolicy::Never).expect("journal opens");
    let mut payload = Vec::new();
    let mut n = 0u64;
    while j.bytes() < SEGMENTS * SEGMENT_BYTES - 4096 {
        let key = format!("NSE:{}", 256 + n % 1000);
        payload.clear();
        payload.extend_from_slice(
            format!(
                "{{\"instrument\":\"{key}\",\"vendor\":\"kite\",\"ltp\":{}.{:02},\"seq\":{n},\"pad\":\"",
                1000 + n % 97,
                n % 100
            )
            .as_bytes(),
        );
        payload.resize(payload.len() + 200, b'x');
        payload.extend_from_slice(b"\"}");
        j.append(&RecordRef {
            topic: 0,
            key: key.as_bytes(),
            headers: &[("vendor", b"kite"), ("schema", b"1")],
            payload: &payload,
        })
        .expect("append");
        n += 1;
    }
    j.close().expect("close");
    n
}

#[test]
fn no_allocation_per_record_while_the_journal_drains() {
    let journal = std::env::temp_dir().join(common::unique("journal-drain-alloc"));
    let journaled = earlier_run(&journal);
    let per_segment = journaled / SEGMENTS;

    let (sim, topics, engine) =
        common::kite_quote_engine(20_000, 12, "test.drainalloc", &journal, &[]);
    // From the engine's start (the broker may have been started just before, by the helper).
    let started = std::time::Instant::now();
    let records = || acked(&topics[0]) + acked(&topics[1]);

    // Warm-up: the first segment drained (topics made, leaders known, buffers grown).
    assert!(
        common::wait_until(Duration::from_secs(90), || records() > per_segment + 5_000),
        "the first segment is acknowledged within 90 s"
    );
    let (a0, n0) = (alloc::allocs_of_thread("producer"), records());
    // Until four segments are through, while the journal is still draining.
    let reached = common::wait_until(Duration::from_secs(90), || records() > 4 * per_segment);
    let (a1, n1) = (alloc::allocs_of_thread("producer"), records());
    let draining = layer1::metrics::global().journal_bytes.get() > 0;
    // The rest drains and the engine goes back to producing directly.
    let emptied = common::wait_until(Duration::from_secs(120), || {
        layer1::metrics::global().journal_bytes.get() == 0
    });
    let took = started.elapsed();
    let live_raw = acked(&topics[1]);
    sim.set_rate(0).expect("pause generation");
    let report = engine.stop();
    let _ = std::fs::remove_dir_all(&journal);

    let allocs = a1 - a0;
    let window = n1 - n0;
    println!(
        "producer thread while draining: {allocs} allocations over {window} acknowledged records \
         (journal of {journaled} records in {SEGMENTS} segments; emptied {:.2} s after the engine \
         started, live raw frames acknowledged by then {live_raw})",
        took.as_secs_f64()
    );
    assert!(reached, "four segments drained within 90 s");
    assert!(
        draining,
        "the window ended before the journal emptied (it was draining throughout)"
    );
    assert!(
        window > 2 * per_segment,
        "the window saw at least two segments: {window} records"
    );
    assert!(
        allocs * 1000 <= window,
        "{allocs} producer-thread allocations over {window} drained records: more than 1 per 1,000"
    );
    assert!(emptied, "the journal emptied within 120 s");
    let p = report.producer.expect("producer report");
    assert!(
        p.drained >= journaled,
        "every record of the earlier run drained: {p:?}"
    );
    assert_eq!((p.failed, p.dropped, p.left_in_journal_bytes), (0, 0, 0));
}
