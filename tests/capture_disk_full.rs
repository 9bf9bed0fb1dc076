//! A capture file whose disk fills, on the whole engine: the frames it misses are counted, and
//! once the disk has room again the engine captures on in a new file (before, a capture stopped
//! for good at its first write error). Its own test binary: it reads the process's metrics.
//! Needs root, as `tests/disk_full.rs` does.

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
mod small_disk;

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use layer1::capture::CaptureReader;
use small_disk::{fill, small_disk, KIB};

/// The capture files in `dir` and their sizes, oldest first (their names carry the time).
fn captures(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut files: Vec<(PathBuf, u64)> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".l1cap"))
                .map(|e| (e.path(), e.metadata().map_or(0, |m| m.len())))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Records read back from the capture at `path`, and whether it ended cleanly (not cut off).
fn read_back(path: &Path) -> (usize, bool) {
    let mut reader = CaptureReader::new(std::fs::File::open(path).expect("open")).expect("header");
    let mut buf = Vec::new();
    let mut n = 0;
    loop {
        match reader.next_record(&mut buf) {
            Ok(Some(_)) => n += 1,
            Ok(None) => return (n, true),
            Err(_) => return (n, false),
        }
    }
}

#[test]
fn a_capture_whose_disk_fills_counts_what_it_misses_and_resumes_in_a_new_file() {
    common::services();
    let disk = small_disk("capture-full", 16 * 1024 * KIB);
    let dir = disk.join("captures");
    let journal = std::env::temp_dir().join(common::unique("capture-full-journal"));
    let extra = [("CAPTURE_DIR", dir.display().to_string())];
    let (sim, _topics, engine) =
        common::kite_quote_engine(20_000, 23, "test.capfull", &journal, &extra);
    let m = layer1::metrics::global();
    let missed_before = m.capture_frames_missed_total.get();

    assert!(
        common::wait_until(Duration::from_secs(30), || captures(&dir)
            .first()
            .is_some_and(|(_, n)| *n > 100_000)),
        "the engine captures: {:?}",
        captures(&dir)
    );
    // The disk fills: the capture's writes fail, and every frame from then on is missed.
    let filler = disk.join("filler");
    fill(&filler, 16 * 1024 * KIB);
    assert!(
        common::wait_until(Duration::from_secs(30), || {
            m.capture_frames_missed_total.get() > missed_before + 1_000
        }),
        "frames the capture misses are counted while ticks arrive ({} so far)",
        m.capture_frames_missed_total.get() - missed_before
    );

    // Past a retry while the disk is still full: the new file it tried is not left behind.
    std::thread::sleep(layer1::producer::CAPTURE_RETRY + Duration::from_secs(1));

    // Room again: a new capture file opens (within the 5 s retry) and grows.
    std::fs::remove_file(&filler).expect("free the disk");
    assert!(
        common::wait_until(Duration::from_secs(30), || captures(&dir)
            .get(1)
            .is_some_and(|(_, n)| *n > 100_000)),
        "a new capture file opens and grows: {:?}",
        captures(&dir)
    );
    let missed = m.capture_frames_missed_total.get();
    sim.set_rate(0).expect("pause generation");
    let report = engine.stop().producer.expect("producer report");
    assert_eq!(
        (report.dropped, report.refused, report.journaled),
        (0, 0, 0),
        "Kafka delivery went on unaffected: {report:?}"
    );
    assert_eq!(
        m.capture_frames_missed_total.get(),
        missed,
        "nothing missed once resumed"
    );

    // The tries that failed while the disk was full left no files; both captures read back,
    // the second one whole.
    let files = captures(&dir);
    assert_eq!(files.len(), 2, "{files:?}");
    let (first, _) = read_back(&files[0].0);
    let (second, whole) = read_back(&files[1].0);
    println!(
        "first capture {first} frames, second {second}, missed {}",
        missed - missed_before
    );
    assert!(first > 0 && second > 0, "{first} and {second} frames");
    assert!(whole, "the second capture ends cleanly");
    let _ = std::fs::remove_dir_all(&journal);
}
