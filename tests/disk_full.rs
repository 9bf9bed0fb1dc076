//! A disk that fills before the journal's cap: the journal keeps every record it took, and the
//! engine rides it out; and a disk that refuses to delete a drained segment: it is not sent
//! again. Each test mounts a small tmpfs in a mount namespace of its own thread
//! (the threads it starts share it; nothing else sees it), fills it with a file, and frees it
//! again by deleting that file. Needs root (CAP_SYS_ADMIN), as the services the tests start do.
//! Its own test binary: the engine test reads the process's metrics.

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

use layer1::{
    config::FsyncPolicy,
    journal::{Journal, JournalError, LoadedSegment, OwnedRecord, RecordRef},
};
use small_disk::{fill, set_read_only, small_disk, KIB};

fn record(payload: &[u8]) -> RecordRef<'_> {
    RecordRef {
        topic: 1,
        key: b"k",
        headers: &[],
        payload,
    }
}

/// Each intact record's payload, in order.
fn payloads(seg: &LoadedSegment) -> Vec<Vec<u8>> {
    (0..seg.len())
        .map(|i| seg.get(i).expect("record").payload.to_vec())
        .collect()
}

fn payload(i: u32, len: usize) -> Vec<u8> {
    let mut p = vec![(i % 251) as u8; len];
    p[..4].copy_from_slice(&i.to_le_bytes());
    p
}

#[test]
fn a_record_the_full_disk_cuts_short_is_cut_off_and_the_records_after_it_are_kept() {
    let disk = small_disk("disk-full-cut", 2048 * KIB);
    let filler = disk.join("filler");
    assert_eq!(fill(&filler, 800 * KIB), 800 * KIB);
    let mut j = Journal::open(&disk.join("journal"), 1 << 30, FsyncPolicy::Batch).expect("open");

    // Larger than the journal's write buffer: written straight to the file.
    let first = payload(1, 600 * KIB as usize);
    j.append(&record(&first))
        .expect("the first large record fits");
    // The disk has ~640 KiB left: it takes part of this one, then is full.
    let second = payload(2, 700 * KIB as usize);
    match j.append(&record(&second)) {
        Err(JournalError::Io { .. }) => {}
        other => panic!("the disk cannot take the second record: {other:?}"),
    }
    // Room again; the records after the refused one are kept, with none of its bytes between.
    std::fs::remove_file(&filler).expect("free the disk");
    let (a, b) = (payload(3, 100), payload(4, 200));
    j.append(&record(&a)).expect("append a");
    j.append(&record(&b)).expect("append b");
    j.sync().expect("sync");

    let mut seg = LoadedSegment::default();
    let id = j.load_oldest(&mut seg).expect("load").expect("a segment");
    assert_eq!(
        payloads(&seg),
        vec![first, a, b],
        "every record taken, in order, and nothing of the refused one ({} records read)",
        seg.len()
    );
    j.commit(id).expect("commit");
    assert!(j.is_empty());
}

#[test]
fn a_segment_the_full_disk_will_not_take_drains_from_memory_and_nothing_is_lost() {
    let disk = small_disk("disk-full-tail", 1024 * KIB);
    let mut j = Journal::open(&disk.join("journal"), 1 << 30, FsyncPolicy::Batch).expect("open");
    // ~100 KB of records, all still in the journal's write buffer.
    let records: Vec<Vec<u8>> = (0..100).map(|i| payload(i, 1000)).collect();
    for r in &records {
        j.append(&record(r)).expect("append");
    }
    let taken = j.bytes();
    // The disk fills but for ~48 KiB: the journal's flush writes part of its records, splitting
    // one, and is refused the rest.
    let filler = disk.join("filler");
    fill(&filler, 1024 * KIB - 48 * KIB);
    assert!(j.sync().is_err(), "the disk refuses the rest");
    let seg_file = std::fs::read_dir(disk.join("journal"))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("the open segment's file");
    let on_disk = std::fs::metadata(&seg_file).expect("segment").len();
    assert!(
        on_disk > 0 && on_disk < taken,
        "the file holds part of the records ({on_disk} of {taken} bytes)"
    );
    assert_eq!(j.bytes(), taken, "the journal still counts every record");
    assert_eq!(
        j.unwritten_bytes(),
        taken - on_disk,
        "the rest is in memory"
    );

    // The disk stays full: the segment drains from the file and memory together.
    let mut seg = LoadedSegment::default();
    let id = j
        .load_oldest(&mut seg)
        .expect("the open segment loads although the disk refuses it")
        .expect("a segment");
    assert_eq!(payloads(&seg), records, "every record taken, in order");
    assert_eq!(j.bytes(), taken, "held until acknowledged");
    j.commit(id).expect("commit");
    assert!(j.is_empty(), "{j:?}");
    assert_eq!(j.unwritten_bytes(), 0);
    assert!(!seg_file.exists(), "the drained segment's file is deleted");

    // And the journal goes on once the disk has room.
    std::fs::remove_file(&filler).expect("free the disk");
    let later = payload(500, 1000);
    j.append(&record(&later)).expect("append");
    j.sync().expect("sync");
    let id = j.load_oldest(&mut seg).expect("load").expect("a segment");
    assert_eq!(payloads(&seg), vec![later]);
    j.commit(id).expect("commit");
}

#[test]
fn under_fsync_always_a_record_the_disk_refuses_now_is_kept_and_written_later() {
    let disk = small_disk("disk-full-always", 256 * KIB);
    let mut j = Journal::open(&disk.join("journal"), 1 << 30, FsyncPolicy::Always).expect("open");
    let filler = disk.join("filler");
    fill(&filler, 256 * KIB);
    // Taken into the write buffer; the flush and sync after it fail. Refusing it would count it
    // as dropped, yet it stays buffered and is written later.
    let r = payload(7, 1000);
    j.append(&record(&r))
        .expect("taken although the disk refuses it for now");
    assert_eq!(j.unwritten_bytes(), j.bytes(), "held in memory: {j:?}");
    assert!(j.sync().is_err(), "the disk still refuses it");
    std::fs::remove_file(&filler).expect("free the disk");
    j.sync().expect("written once the disk has room");
    assert_eq!(j.unwritten_bytes(), 0);
    let mut seg = LoadedSegment::default();
    let id = j.load_oldest(&mut seg).expect("load").expect("a segment");
    assert_eq!(payloads(&seg), vec![r]);
    j.commit(id).expect("commit");
}

#[test]
fn a_drained_segment_the_disk_will_not_delete_is_not_sent_again() {
    let disk = small_disk("disk-ro", 1024 * KIB);
    let dir = disk.join("journal");
    let mut j = Journal::open(&dir, 1 << 30, FsyncPolicy::Batch).expect("open");
    let records: Vec<Vec<u8>> = (0..10).map(|i| payload(i, 100)).collect();
    for r in &records {
        j.append(&record(r)).expect("append");
    }
    let mut seg = LoadedSegment::default();
    let id = j.load_oldest(&mut seg).expect("load").expect("a segment");
    assert_eq!(payloads(&seg), records);

    // Every record of it acknowledged, and the disk now refuses to delete its file.
    set_read_only(&disk, true);
    assert!(j.commit(id).is_err(), "the disk keeps the file");
    assert_eq!(j.undeleted().len(), 1);
    assert!(
        j.load_oldest(&mut seg).expect("load").is_none(),
        "a drained segment is not loaded, and its records sent, again ({} records)",
        seg.len()
    );
    assert!(j.is_empty(), "{j:?}");

    // Deleted once the disk allows it, so a restart does not send it again either.
    set_read_only(&disk, false);
    j.close().expect("close");
    assert!(j.undeleted().is_empty());
    let left: Vec<_> = std::fs::read_dir(&dir)
        .expect("journal dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn records_kafka_handed_back_are_kept_in_memory_when_the_disk_refuses_them() {
    let disk = small_disk("disk-full-rescue", 256 * KIB);
    let dir = disk.join("journal");
    let mut j = Journal::open(&dir, 1 << 30, FsyncPolicy::Batch).expect("open");
    fill(&disk.join("filler"), 256 * KIB);
    let records: Vec<OwnedRecord> = (0..50)
        .map(|i| OwnedRecord {
            topic: 1,
            key: format!("k{i}").into_bytes(),
            headers: vec![("vendor".into(), b"kite".to_vec())],
            payload: payload(i, 2000),
        })
        .collect();
    // Older than anything journaled: every drain waits for them. Refused by the disk, they are
    // kept in memory rather than holding the drain (that frees the disk) for ever.
    j.write_rescue(&records)
        .expect("kept although the disk refuses them");
    assert!(j.bytes() > 100_000, "counted: {j:?}");
    assert_eq!(j.unwritten_bytes(), j.bytes(), "all of it in memory");
    let files: Vec<_> = std::fs::read_dir(&dir)
        .expect("journal dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(files.is_empty(), "no partial file takes room: {files:?}");

    let mut seg = LoadedSegment::default();
    let id = j
        .load_oldest(&mut seg)
        .expect("load")
        .expect("the rescue segment");
    let back: Vec<OwnedRecord> = (0..seg.len())
        .map(|i| {
            let r = seg.get(i).expect("record");
            OwnedRecord {
                topic: r.topic,
                key: r.key.to_vec(),
                headers: r.headers.map(|(n, v)| (n.to_owned(), v.to_vec())).collect(),
                payload: r.payload.to_vec(),
            }
        })
        .collect();
    assert_eq!(back, records, "every record, in order");
    j.commit(id).expect("commit");
    assert!(j.is_empty(), "{j:?}");
    assert_eq!(j.unwritten_bytes(), 0);
}

#[test]
fn a_disk_full_before_the_cap_loses_nothing_the_journal_took_and_kafka_back_ends_it() {
    common::services();
    let disk = small_disk("disk-full-engine", 4096 * KIB);
    // 2 MiB left for the journal, whose cap (1 GiB) is far off.
    let filler = disk.join("filler");
    assert_eq!(fill(&filler, 2048 * KIB), 2048 * KIB);
    let journal = disk.join("journal");
    let (gate, sim, topics, engine) =
        kafka_gate::engine_behind_gate(17, "test.diskfull", &journal, &[]);
    let m = layer1::metrics::global();
    let addr = engine.http_addr();

    kafka_gate::journal_refusing_while_ticks_arrive(addr, "the disk fills");

    // Kafka comes back while the disk is still full: the journal's open segment, part of it
    // only in memory, drains all the same, and deleting it frees the disk.
    gate.bring_kafka_back(&topics);
    assert!(
        common::wait_until(Duration::from_secs(60), || m.kafka_up.get() == 1
            && m.journal_full.get() == 0
            && m.journal_bytes.get() == 0),
        "the journal drained and the episode ended within 60 s (kafka_up {}, journal_full {}, \
         journal bytes {})",
        m.kafka_up.get(),
        m.journal_full.get(),
        m.journal_bytes.get()
    );
    let dropped = kafka_gate::live_ticks_flow_and_none_is_dropped(addr, &topics[0]);
    let left: Vec<_> = std::fs::read_dir(&journal)
        .expect("journal dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(left.is_empty(), "no segment left behind: {left:?}");

    let report = kafka_gate::stops_with_every_journaled_record_drained_once(&sim, engine, dropped);
    assert_eq!(report.left_in_journal_bytes, 0, "{report:?}");
}
