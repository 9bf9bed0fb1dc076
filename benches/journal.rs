//! The journal's read side, as the producer drains it after an outage: loading one full segment
//! (read from the page cache and indexed: checksums and record structure checked once) and then
//! reading every record of it in place with its headers, as the drain hands them to librdkafka.
//! Both are printed per record and against a baseline measured in the same run: one pass that
//! sums the segment's bytes, the least any reader of them does. Rounds alternate so the host's
//! slow spells fall on every case; the best round of each is printed, with the median (the read's
//! round is its best of a few passes).
//!
//! `cargo bench --bench journal`

#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used)]

use std::{hint::black_box, time::Instant};

use layer1::{
    config::FsyncPolicy,
    journal::{Journal, LoadedSegment, RecordRef, SEGMENT_BYTES},
};

const ROUNDS: usize = 15;
/// Passes over the loaded segment per round.
const PASSES: usize = 5;

/// Fills one segment with tick-shaped records (JSON payload of ~300 bytes, instrument key, the
/// producer's three tick headers) and seals it; returns the record count.
fn one_segment(j: &mut Journal) -> u64 {
    let mut payload = Vec::new();
    let mut n = 0u64;
    while j.bytes() < SEGMENT_BYTES - 4096 {
        let key = format!("NSE:{}", 256 + n % 1000);
        payload.clear();
        payload.extend_from_slice(
            format!("{{\"instrument\":\"{key}\",\"seq\":{n},\"pad\":\"").as_bytes(),
        );
        payload.resize(payload.len() + 240, b'x');
        payload.extend_from_slice(b"\"}");
        j.append(&RecordRef {
            topic: 0,
            key: key.as_bytes(),
            headers: &[
                ("vendor", b"kite"),
                ("schema", b"1"),
                ("receivedAt", b"1764400000000000000"),
            ],
            payload: &payload,
        })
        .expect("append");
        n += 1;
    }
    j.close().expect("seal");
    n
}

/// Every record's fields touched as the drain touches them: key, each header, payload.
fn read_all(seg: &LoadedSegment) -> usize {
    let mut sum = 0usize;
    for i in 0..seg.len() {
        let r = seg.get(i).expect("indexed record");
        sum += r.key.len() + r.payload.len() + usize::from(r.topic);
        for (name, value) in r.headers {
            sum += name.len() + value.len();
        }
    }
    sum
}

/// The one segment file's bytes, read outside the timed part.
fn segment_bytes(dir: &std::path::Path) -> Vec<u8> {
    std::fs::read_dir(dir)
        .expect("journal dir")
        .filter_map(Result::ok)
        .find(|e| e.path().extension().is_some_and(|x| x == "seg"))
        .and_then(|e| std::fs::read(e.path()).ok())
        .expect("the segment file")
}

fn ns_per(t: Instant, n: u64) -> f64 {
    t.elapsed().as_nanos() as f64 / n as f64
}

fn best_and_median(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (
        v.first().copied().unwrap_or(0.0),
        v.get(v.len() / 2).copied().unwrap_or(0.0),
    )
}

fn main() {
    let dir = std::env::temp_dir().join(format!("layer1-journal-bench-{}", std::process::id()));
    let mut j = Journal::open(&dir, u64::MAX, FsyncPolicy::Never).expect("journal opens");
    let n = one_segment(&mut j);
    let mut seg = LoadedSegment::default();
    let (mut load, mut read, mut floor) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes = 0usize;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        j.load_oldest(&mut seg).expect("load").expect("a segment");
        load.push(ns_per(t, n));
        assert_eq!(seg.len() as u64, n, "every record indexed");

        // The best of a few passes: one pass is short enough for a host hiccup to double it.
        let pass = (0..PASSES)
            .map(|_| {
                let t = Instant::now();
                black_box(read_all(black_box(&seg)));
                ns_per(t, n)
            })
            .fold(f64::INFINITY, f64::min);
        read.push(pass);

        let all = segment_bytes(&dir);
        bytes = all.len();
        let t = Instant::now();
        black_box(
            black_box(&all)
                .iter()
                .fold(0u64, |a, &b| a.wrapping_add(u64::from(b))),
        );
        floor.push(ns_per(t, n));
    }
    let _ = std::fs::remove_dir_all(&dir);
    let (lb, lm) = best_and_median(load);
    let (rb, rm) = best_and_median(read);
    let (fb, fm) = best_and_median(floor);
    println!(
        "one segment: {n} records, {bytes} bytes ({:.0} B per record), {ROUNDS} rounds",
        bytes as f64 / n as f64
    );
    println!("load (read + index)       best {lb:7.1} ns/record  median {lm:7.1}  = {:5.1}x the byte-sum floor (median)", lm / fm);
    println!("read every record in place best {rb:7.1} ns/record  median {rm:7.1}  = {:5.1}x the byte-sum floor (median)", rm / fm);
    println!("floor: sum of the bytes   best {fb:7.1} ns/record  median {fm:7.1}");
}
