//! End-to-end bench of issue 5: simulator -> feed thread -> producer thread -> local Kafka.
//!
//! One run prints: sustained ticks/s at the maximum rate the simulator can offer; receive ->
//! hand-off and receive -> ack latency p50/p99/p99.9 at a fixed 100,000 ticks/s; allocations per
//! tick on the feed and producer threads; peak RSS; ticks lost and duplicated (everything the
//! simulator sent, consumed back from Kafka and compared); and Kafka's own Java producer
//! (`ProducerPerformance`, same record size, acks=all) on the same broker, with our throughput
//! as a ratio of it. Figures are printed, never asserted.
//!
//! `cargo bench --bench e2e` (env `E2E_SECS` sets each phase's length, default 10).
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
    sync::Arc,
    time::{Duration, Instant},
};

use layer1::{
    config::Config,
    engine::Engine,
    shutdown::Shutdown,
    sim::{SimConfig, Simulator},
};

#[path = "support/alloc.rs"]
mod alloc;

use alloc::allocs_of;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn peak_rss_mb() -> f64 {
    alloc::rss_mb().1
}

fn acked_ticks(topic: &str) -> u64 {
    layer1::metrics::global()
        .kafka_acked_total
        .with_label_values(&[topic])
        .get()
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

fn main() {
    let secs: u64 = std::env::var("E2E_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10);
    let _ = rustls::crypto::ring::default_provider().install_default();
    layer1::services::up().expect("services");
    let run_id = layer1::clock::now_unix_ns() % 1_000_000_000;
    let ticks_topic = format!("bench.e2e.ticks.{run_id}");
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 1_000,
        seed: 11,
        max_packets_per_frame: 200,
        ..SimConfig::default()
    })
    .expect("sim");
    let sc = SimConfig::default();
    // 1,000 NSE equities in quote mode on one Kite connection.
    let subscribe: Vec<String> = (1..=1000u32)
        .map(|i| format!("kite:{}@quote", i * 256 + 1))
        .collect();
    let journal = std::env::temp_dir().join(format!("bench-e2e-journal-{run_id}"));
    // Candles for phase C: 60 instruments (names unique to this run, so no coverage from earlier
    // runs applies) from the historical REST simulator at Kite's 3 requests/s.
    let historical = layer1::sim::historical::HistoricalServer::start(
        layer1::sim::historical::HistoricalConfig::default(),
    )
    .expect("historical sim");
    let backfill: Vec<String> = (1..=60u32)
        .map(|i| format!("kite:{}=NSE:B{run_id}N{i}", i * 256 + 1))
        .collect();
    let vars: Vec<(&str, String)> = vec![
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("KAFKA_TOPIC_TICKS", ticks_topic.clone()),
        ("KAFKA_TOPIC_RAW", format!("bench.e2e.raw.{run_id}")),
        ("KAFKA_TOPIC_DLQ", format!("bench.e2e.dlq.{run_id}")),
        ("KAFKA_PARTITIONS", "6".into()),
        ("JOURNAL_DIR", journal.display().to_string()),
        ("KITE_WS_URL", sim.kite_url()),
        ("KITE_API_KEY", sc.kite_api_key.clone()),
        ("KITE_ACCESS_TOKEN", sc.kite_access_token.clone()),
        ("SUBSCRIBE", subscribe.join(",")),
        ("LOG_LEVEL", "warn".into()),
        ("KITE_API_URL", historical.base_url()),
        ("BACKFILL_INSTRUMENTS", backfill.join(",")),
        ("BACKFILL_AUTO", "false".into()),
    ];
    let cfg =
        Config::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("config");
    let engine = Engine::start(Arc::new(cfg), Shutdown::new()).expect("engine");
    std::thread::sleep(Duration::from_secs(2));

    // Phase A: maximum rate.
    sim.set_rate(2_000_000).expect("rate");
    std::thread::sleep(Duration::from_secs(2));
    let a0 = acked_ticks(&ticks_topic);
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let max_rate = (acked_ticks(&ticks_topic) - a0) as f64 / t0.elapsed().as_secs_f64();

    // Phase B: fixed 100,000 ticks/s.
    sim.set_rate(100_000).expect("rate");
    // Let the backlog of the max-rate phase drain before measuring latency at the fixed rate.
    std::thread::sleep(Duration::from_secs(6));
    layer1::latency::handoff().reset();
    layer1::latency::ack().reset();
    let (f0, p0, b0) = (
        allocs_of("feed-"),
        allocs_of("producer"),
        acked_ticks(&ticks_topic),
    );
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let ticks_b = acked_ticks(&ticks_topic) - b0;
    let rate_b = ticks_b as f64 / t1.elapsed().as_secs_f64();
    let (f1, p1) = (allocs_of("feed-"), allocs_of("producer"));
    let h = layer1::latency::handoff();
    let k = layer1::latency::ack();
    let lat = (
        h.quantile(0.5),
        h.quantile(0.99),
        h.quantile(0.999),
        k.quantile(0.5),
        k.quantile(0.99),
        k.quantile(0.999),
    );

    // Phase C: the same 100,000 ticks/s while a backfill job runs on its own thread.
    layer1::latency::handoff().reset();
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
    let hc = layer1::latency::handoff();
    let lat_c = (
        hc.quantile(0.5),
        hc.quantile(0.99),
        hc.quantile(0.999),
        hc.count(),
    );

    sim.set_rate(0).expect("pause");
    std::thread::sleep(Duration::from_secs(2));
    let sent: HashMap<String, u64> = sim
        .stats()
        .expect("stats")
        .ticks_sent
        .into_iter()
        .map(|((_, key), n)| (key, n))
        .collect();
    let report = engine.stop();
    let rss = peak_rss_mb();
    sim.shutdown();

    // Lost and duplicated: consume the topic back.
    let expected: u64 = sent.values().sum();
    let (got, dupes, avg_size) = consume_and_check(&ticks_topic, expected);
    let mut lost = 0u64;
    let mut extra = 0u64;
    for (key, n) in &sent {
        let g = got.get(key).copied().unwrap_or(0);
        lost += n.saturating_sub(g);
        extra += g.saturating_sub(*n);
    }

    // Kafka's own Java producer, same record size, acks=all, on the same broker.
    let java_n = (max_rate.max(50_000.0) * 5.0) as u64;
    let java = java_producer_perf(
        &format!("bench.e2e.java.{run_id}"),
        java_n,
        avg_size as usize,
    );

    println!("\n== layer1 end-to-end bench (simulator -> feed -> producer -> Kafka), {secs} s phases, 2 cores shared with broker and simulator");
    println!("max rate: {max_rate:>12.0} ticks/s acknowledged by Kafka (quote mode, 1,000 instruments, raw topic on)");
    println!("fixed rate: {rate_b:>10.0} ticks/s acknowledged (target 100,000)");
    println!(
        "receive -> hand-off   p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  (n={})",
        us(lat.0),
        us(lat.1),
        us(lat.2),
        h.count()
    );
    println!(
        "receive -> broker ack p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  (n={})",
        us(lat.3),
        us(lat.4),
        us(lat.5),
        k.count()
    );
    println!(
        "allocations per tick: feed thread {:.4}, producer thread {:.4} (over {ticks_b} ticks)",
        (f1 - f0) as f64 / ticks_b.max(1) as f64,
        (p1 - p0) as f64 / ticks_b.max(1) as f64
    );
    println!(
        "  while a backfill runs: hand-off p50 {:>8.1} us  p99 {:>8.1} us  p99.9 {:>8.1} us  (n={}; job: {job})",
        us(lat_c.0),
        us(lat_c.1),
        us(lat_c.2),
        lat_c.3
    );
    println!("peak RSS: {rss:.1} MB (engine + simulator in one process)");
    println!("ticks sent by the simulator: {expected}; lost: {lost}; duplicated: {} (extra per instrument {extra})", dupes);
    let m = layer1::metrics::global();
    println!(
        "feed back-pressure waits: {}; ticks dropped at the hand-off: {}",
        m.queue_full_total.with_label_values(&["feed"]).get(),
        m.ticks_dropped_total.with_label_values(&["kite"]).get()
    );
    println!("producer report: {:?}", report.producer);
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
