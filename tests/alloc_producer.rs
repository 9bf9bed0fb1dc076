//! Proves the producer thread allocates (almost) nothing per record once warm, against real
//! parts: the vendor simulator serves Kite over loopback, the whole engine ingests it, and its
//! producer thread encodes every tick and raw frame, sends them to the local broker and serves
//! the delivery reports. Allocations are counted per OS thread (the counting allocator shared
//! with the benches) and only the producer thread's are compared, after a warm-up, against the
//! records Kafka acknowledged in the same window, once for each tick form (`KAFKA_TICK_FORMAT`
//! json and binary), one engine at a time.
//!
//! Before delivery reports were served in place (`src/producer/native.rs`), rdkafka-rs's `poll`
//! allocated a `Vec` and an `Arc` per report event: 0.03-0.07 allocations per tick in the e2e
//! bench, 30-70 per 1,000 records. The bound here is 1 per 1,000 (a log line or a metadata
//! change on the way may allocate; a per-report or per-record allocation cannot pass).

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

use std::sync::Mutex;
use std::time::Duration;

use common::acked;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

/// One engine at a time: the count is of the thread named "producer", and tests run in parallel.
static ONE_ENGINE: Mutex<()> = Mutex::new(());

#[test]
fn no_allocation_per_record_on_the_producer_thread_once_warm() {
    producer_allocations_per_record("json", 11);
}

#[test]
fn no_allocation_per_record_in_the_binary_tick_form() {
    producer_allocations_per_record("binary", 12);
}

/// Runs the engine with `KAFKA_TICK_FORMAT=format` and asserts the producer thread's allocations
/// over 5 s of load stay under 1 per 1,000 acknowledged records.
fn producer_allocations_per_record(format: &str, seed: u64) {
    let _one = ONE_ENGINE.lock().unwrap_or_else(|e| e.into_inner());
    let journal = std::env::temp_dir().join(common::unique("journal-alloc"));
    let extra = [("KAFKA_TICK_FORMAT", format.to_string())];
    let (sim, topics, engine) = common::kite_quote_engine(
        20_000,
        seed,
        &format!("test.alloc.{format}"),
        &journal,
        &extra,
    );

    // Warm-up: topics created, leaders known, buffers and the encoder's output grown.
    assert!(
        common::wait_until(Duration::from_secs(60), || acked(&topics[0]) > 20_000),
        "ticks are acknowledged within 60 s"
    );
    std::thread::sleep(Duration::from_secs(2));
    let (a0, t0, r0) = (
        alloc::allocs_of_thread("producer"),
        acked(&topics[0]),
        acked(&topics[1]),
    );
    std::thread::sleep(Duration::from_secs(5));
    let (a1, t1, r1) = (
        alloc::allocs_of_thread("producer"),
        acked(&topics[0]),
        acked(&topics[1]),
    );
    sim.set_rate(0).expect("pause generation");
    let report = engine.stop();
    let _ = std::fs::remove_dir_all(&journal);

    let allocs = a1 - a0;
    let records = (t1 - t0) + (r1 - r0);
    println!(
        "producer thread ({format} ticks): {allocs} allocations over {records} acknowledged records ({} ticks, {} raw frames) in 5 s",
        t1 - t0,
        r1 - r0
    );
    assert!(
        records > 50_000,
        "the window saw the engine's load: {records} records"
    );
    assert!(
        allocs * 1000 <= records,
        "{format}: {allocs} producer-thread allocations over {records} records: more than 1 per 1,000"
    );
    let p = report.producer.expect("producer report");
    assert_eq!((p.failed, p.dropped), (0, 0));
}
