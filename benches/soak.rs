//! Soak (issue 9, point 2): the engine against the simulator at a fixed 100,000 ticks/s for a
//! bounded time (default 10 minutes, `SOAK_SECS` to change, `SOAK_INTERVAL_SECS` for the row
//! period, default 30), on the local Kafka broker. The simulator runs in its own process
//! (`layer1 sim --control`), so the memory and allocation columns are the engine's alone.
//!
//! Every interval prints one row: RSS now and peak, allocations in the interval on the feed and
//! producer threads (per-thread counter, as in `benches/e2e.rs`) and in the whole process, the
//! hand-over queue depth (metric `queue_depth`, last and max of 4 samples a second), journal
//! bytes, receive -> hand-off and receive -> ack latency p50/p99/p99.9 of the interval (the
//! `src/latency.rs` histograms, reset each interval), and ticks/s acknowledged by Kafka. At the
//! end it compares the last third of the rows with the middle third: memory and latency have
//! levelled off when the last third is not meaningfully above the middle one. Figures are
//! printed, never asserted; the exit status is 0 either way.
//!
//! `cargo bench --bench soak` (e.g. `SOAK_SECS=300 cargo bench --bench soak`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::large_stack_arrays,
    clippy::print_stdout,
    missing_docs
)]

use std::time::{Duration, Instant};

use prometheus::core::Collector;

use layer1::{engine::Engine, shutdown::Shutdown};

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/bench_engine.rs"]
mod bench_engine;
#[path = "support/sim_process.rs"]
mod sim_process;

use bench_engine::{acked, kite_vars};

use alloc::{allocs_of, allocs_of_thread, rss_mb};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn queue_depth() -> i64 {
    let m = layer1::metrics::global();
    m.queue_depth
        .collect()
        .iter()
        .flat_map(|mf| {
            mf.get_metric()
                .iter()
                .map(|x| x.get_gauge().get_value())
                .collect::<Vec<_>>()
        })
        .sum::<f64>() as i64
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

struct Row {
    t: u64,
    rss: f64,
    hwm: f64,
    feed_allocs: u64,
    prod_allocs: u64,
    all_allocs: u64,
    depth_last: i64,
    depth_max: i64,
    journal: i64,
    h: [u64; 3],
    k: [u64; 3],
    rate: f64,
}

fn mean(rows: &[Row], f: impl Fn(&Row) -> f64) -> f64 {
    if rows.is_empty() {
        return 0.0;
    }
    rows.iter().map(f).sum::<f64>() / rows.len() as f64
}

fn main() {
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(600);
    let interval: u64 = std::env::var("SOAK_INTERVAL_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(30)
        .max(1);
    let rate: u64 = std::env::var("SOAK_RATE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let _ = rustls::crypto::ring::default_provider().install_default();
    layer1::services::up().expect("services");
    let run_id = layer1::clock::now_unix_ns() % 1_000_000_000;
    let topics = [
        format!("bench.soak.ticks.{run_id}"),
        format!("bench.soak.raw.{run_id}"),
        format!("bench.soak.dlq.{run_id}"),
    ];
    // The simulator runs in its own process, so RSS and allocations below are the engine's.
    let mut sim = bench_engine::start_sim();
    // 1,000 NSE equities in quote mode on one Kite connection, as in the e2e bench.
    let journal = std::env::temp_dir().join(format!("bench-soak-journal-{run_id}"));
    let cfg = bench_engine::config(kite_vars(&sim, "quote", &topics, &journal));
    let engine = Engine::start(cfg, Shutdown::new()).expect("engine");
    std::thread::sleep(Duration::from_secs(2));
    sim.set_rate(rate);
    // Warm-up: connections, topic metadata, producer batches.
    std::thread::sleep(Duration::from_secs(5));

    println!(
        "\n== layer1 soak: {rate} ticks/s offered, {secs} s, a row every {interval} s (1,000 Kite instruments, quote mode, raw topic on; engine, simulator and broker share 2 cores)"
    );
    println!(
        "{:>5} {:>8} {:>8} {:>10} {:>10} {:>11} {:>7} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "t_s", "rss_MB", "peak_MB", "feed_allc", "prod_allc", "proc_allc", "q_last", "q_max",
        "journal_B", "ho_p50", "ho_p99", "ho_p999", "ack_p50", "ack_p99", "ack_p999", "acked/s"
    );
    println!("{:>5} {:>8} {:>8} {:>10} {:>10} {:>11} {:>7} {:>7} {:>9} {:>8} {:>8} {:>9} {:>8} {:>8} {:>9} {:>9}",
        "", "", "", "(interval)", "(interval)", "(interval)", "", "", "", "us", "us", "us", "us", "us", "us", "");
    let mut rows: Vec<Row> = Vec::new();
    let start = Instant::now();
    let end = start + Duration::from_secs(secs);
    let h = layer1::latency::handoff();
    let k = layer1::latency::ack();
    while Instant::now() < end {
        h.reset();
        k.reset();
        let (f0, p0, a0, t0) = (
            allocs_of("feed-"),
            allocs_of_thread("producer"),
            alloc::total_allocs(),
            acked(&topics[0]),
        );
        let i0 = Instant::now();
        let row_end = (i0 + Duration::from_secs(interval)).min(end);
        let (mut depth_last, mut depth_max) = (0, 0);
        while Instant::now() < row_end {
            std::thread::sleep(Duration::from_millis(250));
            depth_last = queue_depth();
            depth_max = depth_max.max(depth_last);
        }
        let dt = i0.elapsed().as_secs_f64();
        let (rss, hwm) = rss_mb();
        let row = Row {
            t: start.elapsed().as_secs(),
            rss,
            hwm,
            feed_allocs: allocs_of("feed-") - f0,
            prod_allocs: allocs_of_thread("producer") - p0,
            all_allocs: alloc::total_allocs() - a0,
            depth_last,
            depth_max,
            journal: layer1::metrics::global().journal_bytes.get(),
            h: [h.quantile(0.5), h.quantile(0.99), h.quantile(0.999)],
            k: [k.quantile(0.5), k.quantile(0.99), k.quantile(0.999)],
            rate: (acked(&topics[0]) - t0) as f64 / dt,
        };
        println!(
            "{:>5} {:>8.1} {:>8.1} {:>10} {:>10} {:>11} {:>7} {:>7} {:>9} {:>8.1} {:>8.1} {:>9.1} {:>8.1} {:>8.1} {:>9.1} {:>9.0}",
            row.t, row.rss, row.hwm, row.feed_allocs, row.prod_allocs, row.all_allocs,
            row.depth_last, row.depth_max, row.journal,
            us(row.h[0]), us(row.h[1]), us(row.h[2]), us(row.k[0]), us(row.k[1]), us(row.k[2]),
            row.rate
        );
        rows.push(row);
    }

    sim.set_rate(0);
    std::thread::sleep(Duration::from_secs(2));
    let report = engine.stop();
    sim.quit();

    // Levelling off: last third against middle third.
    let n = rows.len();
    let third = n / 3;
    println!();
    if third == 0 {
        println!("too few rows ({n}) to compare thirds; run longer or shorten SOAK_INTERVAL_SECS");
    } else {
        let mid = &rows[third..2 * third];
        let last = &rows[n - third..];
        let cmp = |name: &str, f: &dyn Fn(&Row) -> f64, tolerance: f64| {
            let (a, b) = (mean(mid, f), mean(last, f));
            let change = if a > 0.0 { (b - a) / a * 100.0 } else { 0.0 };
            let verdict = if b <= a * (1.0 + tolerance) {
                "levelled off"
            } else {
                "CLIMBING"
            };
            println!(
                "{name:<28} middle third {a:>12.1}  last third {b:>12.1}  ({change:+.1} %)  {verdict}"
            );
        };
        println!(
            "middle third = rows {}..{}, last third = rows {}..{}",
            third + 1,
            2 * third,
            n - third + 1,
            n
        );
        cmp("RSS MB", &|r| r.rss, 0.05);
        cmp("feed allocs / interval", &|r| r.feed_allocs as f64, 0.10);
        cmp(
            "producer allocs / interval",
            &|r| r.prod_allocs as f64,
            0.10,
        );
        cmp("hand-off p99 us", &|r| us(r.h[1]), 0.25);
        cmp("hand-off p99.9 us", &|r| us(r.h[2]), 0.25);
        cmp("ack p99 us", &|r| us(r.k[1]), 0.25);
        cmp("ack p99.9 us", &|r| us(r.k[2]), 0.25);
        cmp("queue depth max", &|r| r.depth_max as f64, 0.25);
        let (a, b) = (mean(mid, |r| r.rate), mean(last, |r| r.rate));
        println!(
            "{:<28} middle third {a:>12.1}  last third {b:>12.1}  ({})",
            "acked ticks/s",
            if b >= rate as f64 * 0.95 {
                "keeps up with the offered rate"
            } else {
                "BELOW the offered rate"
            }
        );
        let unmeasured = last.iter().filter(|r| r.k[0] == 0).count();
        if unmeasured > 0 {
            println!(
                "ack latency not measured in {unmeasured} of the last-third rows: records went through the journal (spill/drain), which keeps no receive time"
            );
        }
        println!("(tolerances: RSS +5 %, allocations +10 %, latency and queue depth +25 %; throughput at least 95 % of the offered rate)");
    }
    let m = layer1::metrics::global();
    println!(
        "feed back-pressure waits: {}; ticks dropped at the hand-off: {}; producer report: {:?}",
        m.queue_full_total.with_label_values(&["feed"]).get(),
        m.ticks_dropped_total.with_label_values(&["kite"]).get(),
        report.producer
    );
    delete_topics(&topics);
    let _ = std::fs::remove_dir_all(&journal);
}

/// Frees the broker's disk: a soak writes gigabytes.
fn delete_topics(topics: &[String]) {
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    if let Err(e) =
        layer1::producer::delete_topics("127.0.0.1:9092", &names, Duration::from_secs(30))
    {
        eprintln!("could not delete this run's topics: {e}");
    }
}
