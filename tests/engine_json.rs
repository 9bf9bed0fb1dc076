//! The whole engine with the generic JSON feed: `Engine::start_with` configured only through
//! `JSON_FEED_*` and `SUBSCRIBE`, against the simulator's JSON vendor, every tick consumed back
//! from the local Kafka broker's `market.ticks` with the mapped values and the canonical key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use std::{collections::HashMap, sync::Arc, time::Duration};

use layer1::{
    config::Config,
    engine::{Engine, EngineOptions},
    shutdown::Shutdown,
    sim::{json, SimConfig, Simulator},
    vendor::Vendor,
};

#[test]
fn engine_with_the_json_feed_produces_mapped_ticks_to_kafka() {
    common::services();
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 500,
        seed: 9,
        heartbeat_ms: 200,
        ..SimConfig::default()
    })
    .unwrap();
    let ticks_topic = common::unique("test.json.ticks");
    let dlq_topic = common::unique("test.json.dlq");
    let dir = std::env::temp_dir().join(common::unique("layer1-engine-json"));
    let vars: Vec<(&str, String)> = vec![
        ("KAFKA_BROKERS", common::brokers()),
        ("REDIS_URL", common::redis_url()),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("KAFKA_TOPIC_TICKS", ticks_topic.clone()),
        ("KAFKA_TOPIC_RAW", common::unique("test.json.raw")),
        ("KAFKA_TOPIC_DLQ", dlq_topic.clone()),
        ("KAFKA_PARTITIONS", "2".into()),
        ("JOURNAL_DIR", dir.join("journal").display().to_string()),
        (
            "INSTRUMENTS_CACHE_DIR",
            dir.join("instruments").display().to_string(),
        ),
        ("SUBSCRIBE", "NSE:INFY, NSE:NIFTY 50@ltp".into()),
        ("CORE_PINNING", "off".into()),
        ("BACKFILL_AUTO", "false".into()),
    ]
    .into_iter()
    .chain(json::engine_env(sim.json_url(), &SimConfig::default()))
    .collect();
    let cfg =
        Config::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let engine = Engine::start_with(Arc::new(cfg), Shutdown::new(), EngineOptions::default())
        .expect("engine");
    // Stream until both symbols were sent, then stop generation and let the last frames land.
    let streamed = common::wait_for(Duration::from_secs(15), || {
        let st = sim.stats().ok()?;
        let json: Vec<u64> = st
            .ticks_sent
            .iter()
            .filter(|((v, _), _)| *v == Vendor::Json)
            .map(|(_, n)| *n)
            .collect();
        (json.len() == 2 && json.iter().all(|n| *n >= 200)).then_some(())
    });
    assert!(streamed.is_some(), "the JSON feed subscribed both symbols");
    sim.set_rate(0).unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let sent: u64 = sim
        .stats()
        .unwrap()
        .ticks_sent
        .iter()
        .filter(|((v, _), _)| *v == Vendor::Json)
        .map(|(_, n)| *n)
        .sum();
    let report = engine.stop();
    let p = report.producer.expect("producer report");
    assert_eq!((p.dropped, p.left_in_journal_bytes), (0, 0));

    let records = common::consume_all(&ticks_topic, sent as usize, Duration::from_secs(60));
    assert_eq!(records.len() as u64, sent, "every tick the simulator sent");
    let mut per_key: HashMap<String, u64> = HashMap::new();
    for (key, payload) in &records {
        let key = String::from_utf8(key.clone().expect("key")).unwrap();
        let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
        assert_eq!(v["vendor"], "json");
        assert_eq!(v["exchange"], "NSE");
        assert_eq!(v["instrument"], key.as_str(), "keyed by the canonical name");
        assert_eq!(
            v["token"],
            key.split_once(':').unwrap().1,
            "the vendor's symbol"
        );
        let ltp = v["ltp"].as_f64().expect("ltp mapped from last_price");
        assert!(ltp > 0.0);
        // prev_close_paise * 0.01: rupees, the same order as the price (not 100x).
        let close = v["close"].as_f64().expect("close mapped and scaled");
        assert!(close > ltp * 0.5 && close < ltp * 2.0, "{v}");
        assert!(
            v["exchangeTime"]
                .as_i64()
                .is_some_and(|t| t > 1_600_000_000_000),
            "ts_ms mapped to exchangeTime (epoch ms): {v}"
        );
        *per_key.entry(key).or_default() += 1;
    }
    let mut keys: Vec<&String> = per_key.keys().collect();
    keys.sort();
    assert_eq!(keys, vec!["NSE:INFY", "NSE:NIFTY 50"]);
    assert!(
        common::consume_all(&dlq_topic, 1, Duration::from_secs(2)).is_empty(),
        "no rejects"
    );
    sim.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
