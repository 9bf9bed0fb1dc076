//! A journal directory that refuses changes during an outage (made immutable: no file created or
//! deleted in it, while the open segment can still be written), on the whole engine: records the
//! journal took still reach Kafka once it is back, each once, and a drained segment, which the
//! disk will not let it delete, is not sent again. Its own test binary: it reads the process's
//! metrics. Needs root, as `tests/disk_full.rs` does.

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
mod small_disk;

use std::time::Duration;

use small_disk::{set_immutable, small_disk, KIB};

#[test]
fn a_drained_segment_the_disk_will_not_delete_is_sent_once_under_the_whole_engine() {
    common::services();
    let disk = small_disk("journal-ro", 64 * 1024 * KIB);
    let journal = disk.join("journal");
    let (gate, sim, topics, engine) =
        kafka_gate::engine_behind_gate(19, "test.journalro", &journal, &[]);
    let m = layer1::metrics::global();
    let addr = engine.http_addr();

    assert!(
        common::wait_until(Duration::from_secs(60), || m.journal_bytes.get() > 1 << 20),
        "the engine spills to the journal while Kafka is away (journal bytes {})",
        m.journal_bytes.get()
    );
    // No file can be created or deleted in the journal from now on: the open segment still
    // takes records until it rolls at 8 MiB, then the next one cannot be created.
    set_immutable(&journal, true);
    kafka_gate::journal_refusing_while_ticks_arrive(
        addr,
        "the journal's disk refuses a new segment",
    );

    // Kafka back: the journal drains what it took, and the drained segment, whose file the disk
    // keeps, is not loaded and sent again (before: again and again).
    gate.bring_kafka_back(&topics);
    assert!(
        common::wait_until(Duration::from_secs(60), || m.kafka_up.get() == 1
            && m.journal_full.get() == 0
            && m.journal_bytes.get() == 0),
        "the journal drained once and the episode ended within 60 s (kafka_up {}, journal_full \
         {}, journal bytes {})",
        m.kafka_up.get(),
        m.journal_full.get(),
        m.journal_bytes.get()
    );
    let dropped = kafka_gate::live_ticks_flow_and_none_is_dropped(addr, &topics[0]);

    let report = kafka_gate::stops_with_every_journaled_record_drained_once(&sim, engine, dropped);

    // The file the disk kept is still there, as the shutdown's log says; deleted once it can be.
    set_immutable(&journal, false);
    let left: Vec<_> = std::fs::read_dir(&journal)
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .collect();
    assert_eq!(left.len(), 1, "the drained segment's file: {left:?}");
    let mut j =
        layer1::journal::Journal::open(&journal, 1 << 30, layer1::config::FsyncPolicy::Batch)
            .expect("open");
    let mut seg = layer1::journal::LoadedSegment::default();
    let id = j
        .load_oldest(&mut seg)
        .expect("load")
        .expect("the kept file");
    assert!(
        seg.len() as u64 <= report.journaled,
        "it holds records already in Kafka ({} of them)",
        seg.len()
    );
    j.commit(id).expect("deleted");
}
