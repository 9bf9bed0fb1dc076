//! The journal's disk cap, on the whole engine: with Kafka unreachable the producer spills to the
//! journal; once the journal reaches `JOURNAL_MAX_BYTES` the documented policy applies (records
//! dropped and counted, never blocking the feed) and the engine says so: `journal_dropped_total`
//! and `journal_full` on `/metrics`, `/health` degraded with the counts, `/health/ready` 503 with
//! the reason. Its own test binary: the metrics are the process's, and this engine's Kafka is
//! down on purpose.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

mod common;
mod http_support;

use std::time::Duration;

/// The smallest cap the engine accepts.
const CAP: u64 = 1 << 20;

#[test]
fn a_full_journal_drops_counts_and_degrades_health_without_stalling_the_feed() {
    let journal = std::env::temp_dir().join(common::unique("journal-cap"));
    // Nothing listens on port 1 of loopback: the engine starts with Kafka unreachable.
    let extra = [
        ("KAFKA_BROKERS", "127.0.0.1:1".to_string()),
        ("JOURNAL_MAX_BYTES", CAP.to_string()),
    ];
    let (sim, _topics, engine) =
        common::kite_quote_engine(20_000, 13, "test.cap", &journal, &extra);
    let m = layer1::metrics::global();
    let addr = engine.http_addr();

    assert!(
        common::wait_until(Duration::from_secs(60), || m.journal_full.get() == 1),
        "the journal fills within 60 s at 20,000 ticks/s (dropped so far: {})",
        m.journal_dropped_total.get()
    );
    // Records keep arriving and keep being dropped and counted: the feed is not stalled.
    let dropped = m.journal_dropped_total.get();
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            m.journal_dropped_total.get() > dropped + 1_000
        }),
        "drops go on being counted while ticks arrive"
    );
    assert!(
        u64::try_from(m.journal_bytes.get()).unwrap_or(u64::MAX) <= CAP,
        "the journal holds no more than its cap: {} bytes",
        m.journal_bytes.get()
    );

    let health = http_support::get(addr, "/health");
    assert_eq!(health.status, 200);
    let h = health.json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["kafka"], "down", "{h}");
    assert_eq!(h["journal"]["full"], true, "{h}");
    assert!(
        h["journal"]["dropped"].as_u64().is_some_and(|d| d > 0),
        "{h}"
    );
    let ready = http_support::get(addr, "/health/ready");
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("journal full: records dropped"),
        "{}",
        ready.body
    );
    assert!(
        http_support::get(addr, "/metrics")
            .body
            .contains("journal_full 1"),
        "journal_full on /metrics"
    );

    sim.set_rate(0).expect("pause generation");
    let report = engine.stop().producer.expect("producer report");
    println!("{report:?}");
    assert!(report.dropped > 0, "the report counts the drops");
    assert_eq!(report.acked, 0, "nothing reached the absent broker");
    let _ = std::fs::remove_dir_all(&journal);
}
