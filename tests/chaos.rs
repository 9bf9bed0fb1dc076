//! The short chaos run: the whole engine (simulator, real Kafka, real Redis) under load with one
//! fault of every kind, broker SIGKILL and restart, Redis restart and an engine stop/start
//! included, then every tick accounted for from the captures and the consumed topics.
//!
//! It stops the shared broker and Redis: `layer1::chaos` restarts both when it ends, on failure
//! too (a drop guard), and this file is its own test binary, so cargo never runs it at the same
//! time as `tests/outage.rs`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

use layer1::chaos::{self, ChaosOptions, FaultKind};

#[test]
fn every_fault_recovers_with_nothing_lost_or_duplicated() {
    let mut progress = std::io::stdout();
    let report = chaos::run(
        &ChaosOptions {
            secs: 75,
            rate: 1_000,
            seed: 11,
        },
        &mut progress,
    )
    .expect("chaos run");
    println!("{report}");
    for k in FaultKind::ALL {
        assert!(
            report.faults.iter().any(|f| f.kind == k),
            "{} injected",
            k.as_str()
        );
    }
    for f in &report.faults {
        assert!(f.recovered, "recovered from {f:?}");
    }
    assert_eq!(report.lost(), 0, "zero lost");
    assert_eq!(report.duplicated(), 0, "zero duplicated");
    for (v, a) in &report.vendors {
        assert!(a.read > 0 && a.in_topic > 0, "{v} streamed: {a:?}");
        assert_eq!(a.phantom, 0, "{v}: nothing in the topic that was not read");
        assert_eq!(a.read_not_sent, 0, "{v}: the capture matches the simulator");
    }
    assert!(
        report.producer.journaled > 0,
        "the broker outage went through the journal"
    );
    assert!(report.dlq > 0, "malformed frames reached the DLQ");
    assert!(report.failures().is_empty(), "{:?}", report.failures());
}
