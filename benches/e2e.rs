//! End-to-end bench of issue 5: simulator process -> feed thread -> producer thread -> local Kafka.
//!
//! The simulator (and the historical-candle server of the backfill phase) run in a child process,
//! `layer1 sim --control --historical`, driven over its stdin, so this process holds the engine and
//! the bench's own bookkeeping only and its peak RSS is the engine's. One run prints: sustained
//! ticks/s at the maximum rate the simulator can offer; receive -> hand-off and receive -> ack
//! latency p50/p99/p99.9 at a fixed 100,000 ticks/s, with normal scheduling and with the feed
//! thread under `SCHED_FIFO` (`FEED_RT_PRIORITY`), and under `SCHED_FIFO` with its core kept for
//! it (every other thread of the bench, the simulator, the broker and Redis moved off it for the
//! phase, as `isolcpus` would keep them on a tuned host), each with what the feed thread did meanwhile
//! (CPU time, run-queue wait, involuntary switches, ticks per frame), and in a third engine with
//! the feed thread busy-polling (`FEED_BUSY_POLL`, normal scheduling) on its kept core; the
//! hand-off of the ticks of frames that were the first their socket read completed, apart;
//! allocations per tick on the
//! feed and producer threads; the engine's peak RSS; ticks lost and duplicated (everything the
//! simulator reports it sent, consumed back from Kafka after the engine's peak was read, and
//! compared); and Kafka's own Java producer (`ProducerPerformance`, same record size, acks=all)
//! on the same broker, with our throughput as a ratio of it. Figures are printed, never asserted.
//!
//! `cargo bench --bench e2e`. Env: `E2E_SECS` each phase's length (default 10);
//! `E2E_RT_PRIORITY` the feed thread's `SCHED_FIFO` priority in the second engine (default 50;
//! `off` runs both engines with normal scheduling); `E2E_FRAME_PACKETS` the simulator's most ticks
//! per frame (default 200); `KAFKA_BUFFER_MAX_MESSAGES`, `KAFKA_BUFFER_MAX_KBYTES` and
//! `QUEUE_CAPACITY`, when set, are passed to the engine (to compare memory sizings).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::large_stack_arrays,
    clippy::print_stdout,
    missing_docs
)]

use std::{
    collections::{HashMap, HashSet},
    hash::{Hash, Hasher},
    time::{Duration, Instant},
};

use layer1::{engine::Engine, shutdown::Shutdown};

#[path = "support/alloc.rs"]
mod alloc;
#[path = "support/bench_engine.rs"]
mod bench_engine;
#[path = "support/isolate.rs"]
mod isolate;
#[path = "support/sim_process.rs"]
mod sim_process;

use bench_engine::{acked, kite_vars, pause_and_drain};
use sim_process::SimProcess;

use alloc::{allocs_of, allocs_of_thread};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

/// Scheduler counters of one thread of this process (by name): CPU time and run-queue wait from
/// `/proc/self/task/TID/schedstat`, involuntary context switches from its `status`.
#[derive(Clone, Copy, Default)]
struct SchedSample {
    run_ns: u64,
    wait_ns: u64,
    slices: u64,
    involuntary: u64,
}

fn thread_tid(name: &str) -> Option<String> {
    std::fs::read_dir("/proc/self/task")
        .ok()?
        .flatten()
        .find_map(|e| {
            let tid = e.file_name().to_string_lossy().into_owned();
            let comm = std::fs::read_to_string(format!("/proc/self/task/{tid}/comm")).ok()?;
            (comm.trim() == name).then_some(tid)
        })
}

fn sched_of(name: &str) -> SchedSample {
    let Some(tid) = thread_tid(name) else {
        return SchedSample::default();
    };
    let st =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/schedstat")).unwrap_or_default();
    let v: Vec<u64> = st
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let status =
        std::fs::read_to_string(format!("/proc/self/task/{tid}/status")).unwrap_or_default();
    let involuntary = status
        .lines()
        .find(|l| l.starts_with("nonvoluntary_ctxt_switches"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0);
    SchedSample {
        run_ns: v.first().copied().unwrap_or(0),
        wait_ns: v.get(1).copied().unwrap_or(0),
        slices: v.get(2).copied().unwrap_or(0),
        involuntary,
    }
}

/// The scheduling policy of a thread of this process, as `chrt` would name it.
fn policy_of(name: &str) -> String {
    let Some(tid) = thread_tid(name).and_then(|t| t.parse::<i32>().ok()) else {
        return "thread not found".into();
    };
    // SAFETY: sched_getscheduler takes a tid and touches no memory.
    let p = unsafe { libc::sched_getscheduler(tid) } & !libc::SCHED_RESET_ON_FORK;
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid, writable sched_param.
    unsafe { libc::sched_getparam(tid, &mut param) };
    match p {
        libc::SCHED_FIFO => format!("SCHED_FIFO {}", param.sched_priority),
        libc::SCHED_OTHER => "SCHED_OTHER".into(),
        other => format!("policy {other}"),
    }
}

/// What one fixed-rate phase measured.
struct Phase {
    label: String,
    rate: f64,
    ticks: u64,
    handoff: (u64, u64, u64, u64, u64),
    handoff_ticks: (u64, u64, u64, u64, u64),
    /// The ticks and frames that were the first frame of their socket read.
    first_ticks: (u64, u64, u64, u64, u64),
    first_frames: u64,
    ack: (u64, u64, u64, u64),
    feed_allocs: u64,
    producer_allocs: u64,
    feed: SchedSample,
    producer: SchedSample,
    /// Hand-offs in the phase that found the feed queue full and waited (in the latency).
    backpressure: u64,
    secs: f64,
    sim_ticks: u64,
    sim_frames: u64,
}

fn delta(a: SchedSample, b: SchedSample) -> SchedSample {
    SchedSample {
        run_ns: b.run_ns.saturating_sub(a.run_ns),
        wait_ns: b.wait_ns.saturating_sub(a.wait_ns),
        slices: b.slices.saturating_sub(a.slices),
        involuntary: b.involuntary.saturating_sub(a.involuntary),
    }
}

/// Hand-offs so far that found a feed queue full (`queue_full_total{queue="feed"}`).
fn feed_queue_full() -> u64 {
    layer1::metrics::global()
        .queue_full_total
        .with_label_values(&["feed"])
        .get()
}

/// Runs the simulator at 100,000 ticks/s for `secs` (after `settle_secs`) and measures.
fn fixed_rate_phase(
    sim: &mut SimProcess,
    topic: &str,
    secs: u64,
    settle_secs: u64,
    label: String,
) -> Phase {
    sim.set_rate(100_000);
    std::thread::sleep(Duration::from_secs(settle_secs));
    layer1::latency::handoff().reset();
    layer1::latency::handoff_ticks().reset();
    layer1::latency::handoff_ticks_first_of_read().reset();
    layer1::latency::handoff_first_of_read().reset();
    layer1::latency::ack().reset();
    let (f0, p0, b0) = (
        allocs_of("feed-"),
        allocs_of_thread("producer"),
        acked(topic),
    );
    let (s0, q0) = (sched_of("feed-0"), sched_of("producer"));
    let w0 = feed_queue_full();
    let (st0, sf0) = sim.ticks_frames();
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let ticks = acked(topic) - b0;
    let elapsed = t.elapsed().as_secs_f64();
    let (f1, p1) = (allocs_of("feed-"), allocs_of_thread("producer"));
    let (s1, q1) = (sched_of("feed-0"), sched_of("producer"));
    let w1 = feed_queue_full();
    let (st1, sf1) = sim.ticks_frames();
    let h = layer1::latency::handoff();
    let ht = layer1::latency::handoff_ticks();
    let k = layer1::latency::ack();
    let summary = |h: &layer1::latency::LatencyHistogram| {
        (
            h.quantile(0.5),
            h.quantile(0.99),
            h.quantile(0.999),
            h.max(),
            h.count(),
        )
    };
    Phase {
        label,
        rate: ticks as f64 / elapsed,
        ticks,
        handoff: summary(h),
        handoff_ticks: summary(ht),
        first_ticks: summary(layer1::latency::handoff_ticks_first_of_read()),
        first_frames: layer1::latency::handoff_first_of_read().count(),
        ack: (
            k.quantile(0.5),
            k.quantile(0.99),
            k.quantile(0.999),
            k.count(),
        ),
        feed_allocs: f1 - f0,
        producer_allocs: p1 - p0,
        feed: delta(s0, s1),
        producer: delta(q0, q1),
        backpressure: w1 - w0,
        secs: elapsed,
        sim_ticks: st1 - st0,
        sim_frames: sf1 - sf0,
    }
}

fn print_phase(p: &Phase) {
    let (h, ht, k) = (p.handoff, p.handoff_ticks, p.ack);
    println!(
        "-- 100,000 ticks/s, {}: {:.0} ticks/s acknowledged",
        p.label, p.rate
    );
    println!(
        "   receive -> hand-off   p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  max {:>9.1} us  (n={} ticks, each stamped within {} hand-overs)",
        us(ht.0), us(ht.1), us(ht.2), us(ht.3), ht.4, layer1::pipeline::STAMP_EVERY
    );
    println!(
        "     per frame (last tick) p50 {:>6.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  max {:>9.1} us  (n={} frames)",
        us(h.0), us(h.1), us(h.2), us(h.3), h.4
    );
    let ft = p.first_ticks;
    println!(
        "     first frame of a read p50 {:>6.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  max {:>9.1} us  (n={} ticks, {:.1} %; {:.2} frames per read)",
        us(ft.0), us(ft.1), us(ft.2), us(ft.3), ft.4,
        100.0 * ft.4 as f64 / ht.4.max(1) as f64,
        h.4 as f64 / p.first_frames.max(1) as f64
    );
    println!(
        "   receive -> broker ack p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  (n={})",
        us(k.0),
        us(k.1),
        us(k.2),
        k.3
    );
    println!(
        "   feed queue full (the feed waited for the producer, inside the hand-off figures): {} times",
        p.backpressure
    );
    println!(
        "   allocations per tick: feed thread {:.4}, producer thread {:.4} (over {} ticks)",
        p.feed_allocs as f64 / p.ticks.max(1) as f64,
        p.producer_allocs as f64 / p.ticks.max(1) as f64,
        p.ticks
    );
    let per_frame = p.sim_ticks as f64 / p.sim_frames.max(1) as f64;
    let feed_ns_per_tick = p.feed.run_ns as f64 / p.sim_ticks.max(1) as f64;
    if p.feed.run_ns as f64 > 0.9 * p.secs * 1e9 {
        // Busy-polling: the thread is on CPU all the time, so its CPU time is not its work.
        println!(
            "   frames: {:.1} ticks per frame, {:.0} frames/s; feed thread spinning (its CPU time is the phase's)",
            per_frame,
            p.sim_frames as f64 / p.secs,
        );
    } else {
        println!(
            "   frames: {:.1} ticks per frame, {:.0} frames/s; feed thread CPU {:.0} ns per tick, so one frame is ~{:.1} us of work",
            per_frame,
            p.sim_frames as f64 / p.secs,
            feed_ns_per_tick,
            feed_ns_per_tick * per_frame / 1000.0
        );
    }
    for (name, s) in [("feed-0", p.feed), ("producer", p.producer)] {
        println!(
            "   {name:<8} thread: on CPU {:>5.1}% of the phase, waited runnable {:>7.1} ms in all ({:>6.1} us per wake-up over {} slices), involuntary switches {}",
            s.run_ns as f64 / (p.secs * 1e9) * 100.0,
            s.wait_ns as f64 / 1e6,
            s.wait_ns as f64 / 1000.0 / s.slices.max(1) as f64,
            s.slices,
            s.involuntary
        );
    }
}

fn main() {
    let secs: u64 = std::env::var("E2E_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let rt_priority: Option<u8> = match std::env::var("E2E_RT_PRIORITY").ok().as_deref() {
        Some("off") => None,
        Some(v) => Some(v.parse().expect("E2E_RT_PRIORITY: 1..=99 or off")),
        None => Some(50),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    layer1::services::up().expect("services");
    let run_id = layer1::clock::now_unix_ns() % 1_000_000_000;
    // This run's ticks, raw and DLQ topics.
    let topics = ["ticks", "raw", "dlq"].map(|t| format!("bench.e2e.{t}.{run_id}"));
    let ticks_topic = &topics[0];
    let frame_packets = std::env::var("E2E_FRAME_PACKETS").unwrap_or_else(|_| "200".into());
    let mut sim = SimProcess::start(&[
        "--control",
        "--historical",
        "--rate",
        "1000",
        "--seed",
        "11",
        "--frame-packets",
        &frame_packets,
    ]);
    let journal = std::env::temp_dir().join(format!("bench-e2e-journal-{run_id}"));
    // Candles for the backfill phase: 60 instruments (names unique to this run, so no coverage
    // from earlier runs applies) from the simulator process's historical REST server at Kite's
    // 3 requests/s.
    let backfill: Vec<String> = (1..=60u32)
        .map(|i| format!("kite:{}=NSE:B{run_id}N{i}", i * 256 + 1))
        .collect();
    // 1,000 NSE equities in quote mode on one Kite connection.
    let mut base_vars = kite_vars(&sim, "quote", &topics, &journal);
    base_vars.extend([
        ("KITE_API_URL", sim.historical_url.clone()),
        ("BACKFILL_INSTRUMENTS", backfill.join(",")),
        ("BACKFILL_AUTO", "false".into()),
    ]);
    let mut sizing = Vec::new();
    for name in [
        "KAFKA_BUFFER_MAX_MESSAGES",
        "KAFKA_BUFFER_MAX_KBYTES",
        "QUEUE_CAPACITY",
    ] {
        let v = std::env::var(name).unwrap_or_default();
        sizing.push(format!(
            "{name}={}",
            if v.is_empty() { "(default)" } else { &v }
        ));
        if !v.is_empty() {
            base_vars.push((name, v));
        }
    }
    let config = |rt: Option<u8>, busy_poll: bool| {
        let mut vars = base_vars.clone();
        if let Some(p) = rt {
            vars.push(("FEED_RT_PRIORITY", p.to_string()));
        }
        if busy_poll {
            vars.push(("FEED_BUSY_POLL", "true".into()));
        }
        bench_engine::config(vars)
    };
    let rss_at_start = alloc::rss_mb().0;

    // Engine 1, normal scheduling: 100,000 ticks/s on a fresh engine (as engine 2 below, so the
    // two latency phases start alike), then the maximum rate.
    let engine = Engine::start(config(None, false), Shutdown::new()).expect("engine");
    std::thread::sleep(Duration::from_secs(2));
    let plan = engine.core_plan().clone();
    let normal = fixed_rate_phase(
        &mut sim,
        ticks_topic,
        secs,
        3,
        format!("feed thread {}", policy_of("feed-0")),
    );
    sim.set_rate(2_000_000);
    std::thread::sleep(Duration::from_secs(2));
    let a0 = acked(ticks_topic);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let max_rate = (acked(ticks_topic) - a0) as f64 / t0.elapsed().as_secs_f64();
    // Pause, and let the backlog be acknowledged before the engine stops.
    let drained1 = pause_and_drain(&mut sim, ticks_topic, 0);
    let report1 = engine.stop();
    let (rss_between, rss_engine1) = alloc::rss_mb();

    // Engine 2, the feed thread under SCHED_FIFO (FEED_RT_PRIORITY): 100,000 ticks/s, then the
    // same rate while a backfill job runs on its own thread.
    let engine = Engine::start(config(rt_priority, false), Shutdown::new()).expect("engine 2");
    std::thread::sleep(Duration::from_secs(2));
    let rt = fixed_rate_phase(
        &mut sim,
        ticks_topic,
        secs,
        3,
        format!(
            "FEED_RT_PRIORITY={}: feed thread {}",
            rt_priority.map_or("(unset)".into(), |p| p.to_string()),
            policy_of("feed-0")
        ),
    );

    layer1::latency::handoff_ticks().reset();
    let redis = redis::Client::open("redis://127.0.0.1:6379").expect("redis");
    let mut con = redis.get_connection().expect("redis connection");
    let _: i64 = redis::cmd("PUBLISH")
        .arg("system:commands")
        .arg(r#"START_BACKFILL {"force":true}"#)
        .query(&mut con)
        .expect("publish");
    let t2 = Instant::now();
    let mut job = String::from("did not start within 90 s");
    let mut seen_running = false;
    while t2.elapsed() < Duration::from_secs(90) {
        std::thread::sleep(Duration::from_millis(200));
        let status: Option<String> = redis::cmd("GET")
            .arg("system:layer1:backfill")
            .query(&mut con)
            .unwrap_or(None);
        let v: serde_json::Value = status
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        // Only this run's job counts: it names this run's instruments.
        let ours = v["progress"]["instrumentsTotal"].as_u64() == Some(60);
        if ours && v["state"] == "running" {
            seen_running = true;
        } else if seen_running && ours {
            job = format!(
                "state {} after {:.1} s, progress {}",
                v["state"],
                t2.elapsed().as_secs_f64(),
                v["progress"]
            );
            break;
        }
    }
    let hc = layer1::latency::handoff_ticks();
    let lat_c = (
        hc.quantile(0.5),
        hc.quantile(0.99),
        hc.quantile(0.999),
        hc.count(),
    );

    // The same as the SCHED_FIFO phase, with the feed core kept for the feed thread (what
    // `isolcpus` gives a tuned host): everything else of ours and the broker on the other core.
    let feed_cores: Vec<usize> = plan.feed.iter().flatten().copied().collect();
    // What the kept core is kept from: the simulator, the broker and Redis.
    let mut others = vec![(sim.pid(), "simulator".to_owned())];
    others.extend(isolate::services());
    let isolated = if feed_cores.is_empty() {
        None
    } else {
        let iso = isolate::Isolation::apply(&feed_cores, &others);
        let label = format!(
            "FEED_RT_PRIORITY={}: feed thread {}, core {feed_cores:?} kept for it: {} moved to the other cores ({} threads could not be)",
            rt_priority.map_or("(unset)".into(), |p| p.to_string()),
            policy_of("feed-0"),
            iso.processes.join(", "),
            iso.refused
        );
        let phase = fixed_rate_phase(&mut sim, ticks_topic, secs, 3, label);
        drop(iso);
        Some(phase)
    };

    let drained2 = pause_and_drain(&mut sim, ticks_topic, 0);
    let report2 = engine.stop();

    // Engine 3: the feed thread busy-polling (FEED_BUSY_POLL, normal scheduling) on its kept
    // core, the tuned host's other answer to wake-up latency and caches gone cold between frames.
    let busy = if feed_cores.is_empty() {
        None
    } else {
        let engine = Engine::start(config(None, true), Shutdown::new()).expect("engine 3");
        std::thread::sleep(Duration::from_secs(2));
        let iso = isolate::Isolation::apply(&feed_cores, &others);
        let label = format!(
            "FEED_BUSY_POLL=true: feed thread {}, busy-polling, core {feed_cores:?} kept for it: {} moved to the other cores ({} threads could not be)",
            policy_of("feed-0"),
            iso.processes.join(", "),
            iso.refused
        );
        let phase = fixed_rate_phase(&mut sim, ticks_topic, secs, 3, label);
        drop(iso);
        let drained = pause_and_drain(&mut sim, ticks_topic, 0);
        let report = engine.stop();
        Some((phase, drained, report))
    };
    let stats = sim.stats();
    // The engine's peak, read before the consumer below allocates anything.
    let (rss_now, rss_peak) = alloc::rss_mb();
    sim.quit();
    let mut sent: HashMap<String, u64> = HashMap::new();
    if let Some(vendors) = stats["ticks_sent"].as_object() {
        for per in vendors.values() {
            for (key, n) in per.as_object().into_iter().flatten() {
                *sent.entry(key.clone()).or_default() += n.as_u64().unwrap_or(0);
            }
        }
    }

    // Lost and duplicated: consume the topic back.
    let expected: u64 = sent.values().sum();
    let (got, dupes, avg_size) = consume_and_check(ticks_topic, expected);
    let mut lost = 0u64;
    let mut extra = 0u64;
    for (key, n) in &sent {
        let g = got.get(key).copied().unwrap_or(0);
        lost += n.saturating_sub(g);
        extra += g.saturating_sub(*n);
    }

    // Kafka's own Java producer, same record size, acks=all, on the same broker.
    let java_n = (max_rate.max(50_000.0) * 5.0) as u64;
    let java_topic = format!("bench.e2e.java.{run_id}");
    let java = java_producer_perf(&java_topic, java_n, avg_size as usize);
    // This run's topics hold gigabytes; the broker would keep them for its retention time.
    let names: Vec<&str> = topics
        .iter()
        .chain([&java_topic])
        .map(String::as_str)
        .collect();
    if let Err(e) =
        layer1::producer::delete_topics("127.0.0.1:9092", &names, Duration::from_secs(30))
    {
        eprintln!("could not delete this run's topics: {e}");
    }

    println!("\n== layer1 end-to-end bench (simulator process -> feed -> producer -> Kafka), {secs} s phases");
    println!("2 cores shared with the broker, the simulator process and the Java baseline; core plan feed {:?}, producer {:?}", plan.feed, plan.producer);
    println!(
        "engine sizing: {}; simulator frames of at most {frame_packets} ticks",
        sizing.join(" ")
    );
    let item = std::mem::size_of::<layer1::producer::Handed>();
    let slots: usize = std::env::var("QUEUE_CAPACITY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(65_536);
    println!(
        "hand-over item: {item} B by value (a tick's head; a tick with depth or greeks adds 2-3 parts; whole Tick {} B); the feed queue's {slots} slots are {:.1} MB once touched",
        std::mem::size_of::<layer1::tick::Tick>(),
        (slots * item) as f64 / 1e6
    );
    println!("max rate: {max_rate:>12.0} ticks/s acknowledged by Kafka (quote mode, 1,000 instruments, raw topic on)");
    print_phase(&normal);
    print_phase(&rt);
    println!(
        "-- while a backfill runs (engine 2): hand-off p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  (n={} ticks; job: {job})",
        us(lat_c.0),
        us(lat_c.1),
        us(lat_c.2),
        lat_c.3
    );
    match (&isolated, &busy) {
        (Some(p), Some((b, _, _))) => {
            print_phase(p);
            print_phase(b);
        }
        _ => println!(
            "-- feed core kept for the feed thread, busy-polling: not run (the feed thread is not pinned)"
        ),
    }
    println!(
        "engine peak RSS: {rss_engine1:.1} MB (VmHWM of the bench process over engine 1: start, max rate, 100k/s; the simulator runs in its own process; includes the bench's counting allocator, not the consume-back; {rss_at_start:.1} MB before the engine)"
    );
    println!(
        "  over all engines {rss_peak:.1} MB: engines 2 and 3 start on top of the {rss_between:.1} MB the allocator kept from engine 1 ({rss_now:.1} MB after all stopped), so this is not one engine's peak"
    );
    println!("ticks sent by the simulator: {expected}; lost: {lost}; duplicated: {} (extra per instrument {extra})", dupes);
    let m = layer1::metrics::global();
    println!(
        "feed back-pressure waits over the whole run (the maximum-rate phase offers more than Kafka takes): {}; ticks dropped at the hand-off: {}",
        feed_queue_full(),
        m.ticks_dropped_total.with_label_values(&["kite"]).get()
    );
    println!(
        "producer report, engine 1 (backlog acknowledged {drained1:.1} s after the pause): {:?}",
        report1.producer
    );
    println!(
        "producer report, engine 2 (backlog acknowledged {drained2:.1} s after the pause): {:?}",
        report2.producer
    );
    if let Some((_, drained3, report3)) = &busy {
        println!(
            "producer report, engine 3 (backlog acknowledged {drained3:.1} s after the pause): {:?}",
            report3.producer
        );
    }
    match java {
        Some(j) => println!("Kafka ProducerPerformance ({java_n} records of {avg_size:.0} B, acks=all): {j:.0} records/s; layer1 end to end = {:.2}x of it", max_rate / j),
        None => println!("Kafka ProducerPerformance: could not run (see stderr)"),
    }
    let _ = std::fs::remove_dir_all(&journal);
}

/// Consumes `topic` until `expected` records or 30 s of silence; returns per-token counts, the
/// number of exact duplicate payloads, and the mean payload size.
fn consume_and_check(topic: &str, expected: u64) -> (HashMap<String, u64>, u64, f64) {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        ClientConfig, Message,
    };
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", "127.0.0.1:9092")
        .set("group.id", format!("bench-{topic}"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    let mut per: HashMap<String, u64> = HashMap::new();
    let mut seen: HashSet<u64> = HashSet::with_capacity(expected as usize);
    let (mut n, mut dupes, mut bytes) = (0u64, 0u64, 0u64);
    let mut last = Instant::now();
    while n < expected && last.elapsed() < Duration::from_secs(30) {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            last = Instant::now();
            let p = m.payload().unwrap_or_default();
            n += 1;
            bytes += p.len() as u64;
            let mut h = std::collections::hash_map::DefaultHasher::new();
            p.hash(&mut h);
            if !seen.insert(h.finish()) {
                dupes += 1;
            }
            let v: serde_json::Value = serde_json::from_slice(p).unwrap_or_default();
            if let Some(t) = v["token"].as_str() {
                *per.entry(t.to_owned()).or_default() += 1;
            }
        }
    }
    (per, dupes, bytes as f64 / n.max(1) as f64)
}

fn java_producer_perf(topic: &str, n: u64, size: usize) -> Option<f64> {
    let libs = layer1::services::repo_root().join("scripts/kafka/libs/*");
    let out = std::process::Command::new("java")
        .args(["-Xmx512m", "-cp"])
        .arg(libs)
        .args([
            "org.apache.kafka.tools.ProducerPerformance",
            "--topic",
            topic,
            "--num-records",
            &n.to_string(),
            "--record-size",
            &size.to_string(),
            "--throughput",
            "-1",
            "--producer-props",
            "bootstrap.servers=127.0.0.1:9092",
            "acks=all",
            "linger.ms=1",
            "compression.type=lz4",
            "enable.idempotence=true",
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "{}",
        String::from_utf8_lossy(&out.stderr)
            .lines()
            .filter(|l| !l.contains("INFO"))
            .take(5)
            .collect::<Vec<_>>()
            .join("\n")
    );
    // The summary line: "N records sent, X records/sec (Y MB/sec), ..."
    text.lines()
        .rev()
        .find(|l| l.contains("records sent"))?
        .split(',')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
