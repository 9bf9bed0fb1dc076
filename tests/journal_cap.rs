//! The journal's disk cap, on the whole engine: with Kafka unreachable the producer spills to the
//! journal; once the journal reaches `JOURNAL_MAX_BYTES` the documented policy applies (records
//! dropped and counted, never blocking the feed) and the engine says so: `journal_dropped_total`
//! and `journal_full` on `/metrics`, `/health` degraded with the counts, `/health/ready` 503 with
//! the reason. When Kafka comes back the journal drains, nothing more is dropped, and the engine
//! says that too. Its own test binary: the metrics are the process's, and this engine's Kafka is
//! down on purpose: it reaches the broker through a gate this test opens.

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
mod kafka_gate;

use std::time::Duration;

/// The smallest cap the engine accepts.
const CAP: u64 = 1 << 20;

#[test]
fn a_full_journal_drops_counts_and_degrades_health_until_kafka_is_back() {
    let journal = std::env::temp_dir().join(common::unique("journal-cap"));
    let extra = [("JOURNAL_MAX_BYTES", CAP.to_string())];
    let (gate, sim, topics, engine) =
        kafka_gate::engine_behind_gate(13, "test.cap", &journal, &extra);
    let m = layer1::metrics::global();
    let addr = engine.http_addr();

    let h = kafka_gate::journal_refusing_while_ticks_arrive(addr, "the journal fills");
    assert_eq!(h["kafka"], "down", "{h}");
    assert!(
        u64::try_from(m.journal_bytes.get()).unwrap_or(u64::MAX) <= CAP,
        "the journal holds no more than its cap: {} bytes",
        m.journal_bytes.get()
    );

    gate.bring_kafka_back(&topics);
    assert!(
        common::wait_until(Duration::from_secs(60), || m.kafka_up.get() == 1
            && m.journal_full.get() == 0),
        "Kafka seen back and the refusal episode ended within 60 s (kafka_up {}, journal_full {})",
        m.kafka_up.get(),
        m.journal_full.get()
    );
    assert!(
        common::wait_until(Duration::from_secs(60), || m.journal_bytes.get() == 0
            && common::acked(&topics[0]) > 0),
        "the journal drains into Kafka (journal bytes {}, ticks acknowledged {})",
        m.journal_bytes.get(),
        common::acked(&topics[0])
    );
    let dropped = kafka_gate::live_ticks_flow_and_none_is_dropped(addr, &topics[0]);

    sim.set_rate(0).expect("pause generation");
    let report = engine.stop().producer.expect("producer report");
    println!("{report:?}");
    assert_eq!(report.dropped, dropped, "the report counts the drops");
    assert!(report.drained > 0, "the journal drained: {report:?}");
    assert!(report.acked > report.drained, "{report:?}");
    assert_eq!(report.left_in_journal_bytes, 0, "{report:?}");
    let _ = std::fs::remove_dir_all(&journal);
}
