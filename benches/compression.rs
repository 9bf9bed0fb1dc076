//! The producer's compression codec, chosen by measurement (issue 5): the whole engine (feed
//! thread, producer thread, librdkafka) against the local broker, with the simulator in its own
//! process as the vendor, once per `KAFKA_COMPRESSION` value, on the engine's own records.
//!
//! For each codec and subscription mode (Kite quote mode, and full mode with five-level depth, over
//! 1,000 instruments, raw frames on as by default), a fresh engine producing to fresh topics:
//! - at a fixed 100,000 ticks/s: receive -> broker ack p50 / p99, and the engine process's CPU
//!   time per tick (every thread of it, so librdkafka's broker threads, where the compression
//!   runs, are in; the simulator is a child process and is not);
//! - at the most the simulator can offer: ticks/s acknowledged;
//! - bytes per tick on the broker: the size of each topic's log segments (the broker keeps a
//!   producer's compressed batches as they came, so this is also what crossed the network) over
//!   the ticks acknowledged, for `market.ticks` and `market.raw` apart (per tick, not per raw
//!   frame: frames carry more ticks at the maximum rate, and the codecs' runs differ in it).
//!
//! `none` is the baseline measured in the same run: each codec's bytes and CPU are printed as a
//! ratio of it. The codecs run in turn, over [`ROUNDS`] rounds, so the host's slow spells fall on
//! all of them alike; the figures are each codec's median over the rounds. Printed, never
//! asserted. `cargo bench --bench compression`. Env: `COMP_SECS` each phase's length (default
//! 4), `COMP_ROUNDS` (default 2), `COMP_MODES` (default `quote,full`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

#[path = "support/bench_engine.rs"]
mod bench_engine;
#[path = "support/sim_process.rs"]
mod sim_process;

use std::{
    path::Path,
    time::{Duration, Instant},
};

use bench_engine::{acked, kite_vars, pause_and_drain};
use layer1::{engine::Engine, shutdown::Shutdown};
use sim_process::SimProcess;

/// Every value `KAFKA_COMPRESSION` takes; `none` first, the baseline.
const CODECS: [&str; 5] = ["none", "lz4", "snappy", "zstd", "gzip"];

/// Rounds of all the codecs in turn, unless `COMP_ROUNDS` says otherwise.
const ROUNDS: usize = 2;

/// What one engine run measured.
#[derive(Clone, Copy, Default)]
struct Sample {
    ack_p50_ns: u64,
    ack_p99_ns: u64,
    cpu_ns_per_tick: f64,
    max_rate: f64,
    /// `market.ticks` bytes per tick.
    tick_bytes: f64,
    /// `market.raw` bytes per tick.
    raw_bytes: f64,
}

/// User + system CPU time of this process (every thread), in ns.
fn process_cpu_ns() -> u64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: `ru` is a valid, writable rusage; getrusage writes only into it.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage");
    // SAFETY: getrusage returned 0, so it filled `ru`.
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// Bytes in the log segments of every partition of `topic` under the broker's data directory.
fn topic_log_bytes(data: &Path, topic: &str) -> u64 {
    let prefix = format!("{topic}-");
    std::fs::read_dir(data)
        .expect("broker data directory")
        .flatten()
        .filter(|d| {
            d.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix(&prefix))
                .is_some_and(|p| p.parse::<u32>().is_ok())
        })
        .flat_map(|d| std::fs::read_dir(d.path()).into_iter().flatten().flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == "log"))
        .map(|f| f.metadata().map_or(0, |m| m.len()))
        .sum()
}

/// One engine with `codec` over `mode` subscriptions: the fixed-rate phase, the maximum rate,
/// then the bytes its topics hold.
fn run_one(
    sim: &mut SimProcess,
    data: &Path,
    codec: &str,
    mode: &str,
    tag: &str,
    secs: u64,
    created: &mut Vec<String>,
) -> Sample {
    let topics = ["ticks", "raw", "dlq"].map(|t| format!("bench.comp.{tag}.{t}"));
    created.extend(topics.iter().cloned());
    let journal = std::env::temp_dir().join(format!("bench-comp-journal-{tag}"));
    let mut vars = kite_vars(sim, mode, &topics, &journal);
    vars.extend([
        ("KAFKA_COMPRESSION", codec.into()),
        ("BACKFILL_AUTO", "false".into()),
    ]);
    let config = bench_engine::config(vars);
    let sent_before = sim.ticks_frames().0;
    let engine = Engine::start(config, Shutdown::new()).expect("engine");
    std::thread::sleep(Duration::from_secs(2));

    sim.set_rate(100_000);
    std::thread::sleep(Duration::from_secs(1));
    layer1::latency::ack().reset();
    let (a0, c0) = (acked(&topics[0]), process_cpu_ns());
    std::thread::sleep(Duration::from_secs(secs));
    let (a1, c1) = (acked(&topics[0]), process_cpu_ns());
    let ack = layer1::latency::ack();
    let (ack_p50_ns, ack_p99_ns) = (ack.quantile(0.5), ack.quantile(0.99));

    sim.set_rate(2_000_000);
    std::thread::sleep(Duration::from_secs(1));
    let (m0, t0) = (acked(&topics[0]), Instant::now());
    std::thread::sleep(Duration::from_secs(secs));
    let max_rate = (acked(&topics[0]) - m0) as f64 / t0.elapsed().as_secs_f64();

    pause_and_drain(sim, &topics[0], sent_before);
    let _ = engine.stop();
    let _ = std::fs::remove_dir_all(&journal);
    let ticks = acked(&topics[0]).max(1) as f64;
    let per = |topic: &str| topic_log_bytes(data, topic) as f64 / ticks;
    Sample {
        ack_p50_ns,
        ack_p99_ns,
        cpu_ns_per_tick: (c1 - c0) as f64 / (a1 - a0).max(1) as f64,
        max_rate,
        tick_bytes: per(&topics[0]),
        raw_bytes: per(&topics[1]),
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn main() {
    let env = |k: &str| std::env::var(k).ok();
    let secs: u64 = env("COMP_SECS").and_then(|v| v.parse().ok()).unwrap_or(4);
    let rounds: usize = env("COMP_ROUNDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(ROUNDS);
    let modes: Vec<String> = env("COMP_MODES")
        .unwrap_or_else(|| "quote,full".into())
        .split(',')
        .map(str::to_owned)
        .collect();
    let _ = rustls::crypto::ring::default_provider().install_default();
    layer1::services::up().expect("services");
    let data = layer1::services::repo_root().join(".state/kafka/data");
    let run_id = layer1::clock::now_unix_ns() % 1_000_000_000;
    let mut sim = bench_engine::start_sim();
    let mut created = Vec::new();
    // samples[mode][codec] over the rounds.
    let mut samples = vec![vec![Vec::<Sample>::new(); CODECS.len()]; modes.len()];
    for round in 0..rounds {
        for (m, mode) in modes.iter().enumerate() {
            for (c, codec) in CODECS.iter().enumerate() {
                let tag = format!("{run_id}.{mode}.{codec}.{round}");
                let s = run_one(&mut sim, &data, codec, mode, &tag, secs, &mut created);
                eprintln!(
                    "round {round} {mode:<5} {codec:<6}: ack p50 {:.1} ms, {:.0} ns CPU/tick, max {:.0} ticks/s, {:.1} B/tick record, {:.1} B/tick raw",
                    s.ack_p50_ns as f64 / 1e6,
                    s.cpu_ns_per_tick,
                    s.max_rate,
                    s.tick_bytes,
                    s.raw_bytes
                );
                samples[m][c].push(s);
            }
        }
    }
    sim.quit();
    let names: Vec<&str> = created.iter().map(String::as_str).collect();
    if let Err(e) =
        layer1::producer::delete_topics("127.0.0.1:9092", &names, Duration::from_secs(30))
    {
        eprintln!("could not delete this run's topics: {e}");
    }

    println!("\n== compression codecs, whole engine -> local Kafka; {secs} s phases, median of {rounds} rounds; `none` is the baseline");
    for (m, mode) in modes.iter().enumerate() {
        let med = |c: usize, f: fn(&Sample) -> f64| median(samples[m][c].iter().map(f).collect());
        let base_cpu = med(0, |s| s.cpu_ns_per_tick);
        let base_tick = med(0, |s| s.tick_bytes);
        let base_raw = med(0, |s| s.raw_bytes);
        println!("-- Kite {mode} mode, 1,000 instruments, raw frames on");
        println!(
            "   codec   ack p50 ms  ack p99 ms  CPU ns/tick (x none)  max ticks/s  ticks B/tick (x none)  raw B/tick (x none)"
        );
        for (c, codec) in CODECS.iter().enumerate() {
            let cpu = med(c, |s| s.cpu_ns_per_tick);
            let tick = med(c, |s| s.tick_bytes);
            let raw = med(c, |s| s.raw_bytes);
            println!(
                "   {codec:<7} {:>10.2}  {:>10.2}  {:>11.0} ({:>5.2}x)  {:>11.0}  {:>12.1} ({:>5.3}x)  {:>10.1} ({:>5.3}x)",
                med(c, |s| s.ack_p50_ns as f64) / 1e6,
                med(c, |s| s.ack_p99_ns as f64) / 1e6,
                cpu,
                cpu / base_cpu.max(1.0),
                med(c, |s| s.max_rate),
                tick,
                tick / base_tick.max(1.0),
                raw,
                raw / base_raw.max(1.0),
            );
        }
    }
}
