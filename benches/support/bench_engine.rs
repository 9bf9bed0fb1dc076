//! Shared by the bench binaries that run the whole engine against the simulator process
//! (`#[path]`-included next to `sim_process.rs`): the engine's settings for such a run, and the
//! acknowledgement count the benches read their rates from.
#![allow(dead_code, clippy::expect_used)]

use std::{
    path::Path,
    sync::Arc,
    time::{Duration, Instant},
};

use layer1::{config::Config, sim::SimConfig};

use crate::sim_process::SimProcess;

/// The simulator process as the soak and compression benches run it: Kite frames of at most 200
/// ticks, seed 13, 1,000 ticks/s until the bench sets its rate.
pub(crate) fn start_sim() -> SimProcess {
    SimProcess::start(&[
        "--control",
        "--rate",
        "1000",
        "--seed",
        "13",
        "--frame-packets",
        "200",
    ])
}

/// The settings of a bench engine: the simulator's Kite server as the vendor, 1,000 NSE equities
/// in `mode` (`quote` or `full`) on one connection, this run's `topics` (ticks, raw, DLQ) with 6
/// partitions, its own `journal` directory, warnings and errors logged only. Callers add theirs.
pub(crate) fn kite_vars(
    sim: &SimProcess,
    mode: &str,
    topics: &[String; 3],
    journal: &Path,
) -> Vec<(&'static str, String)> {
    let sc = SimConfig::default();
    let subscribe: Vec<String> = (1..=1000u32)
        .map(|i| format!("kite:{}@{mode}", i * 256 + 1))
        .collect();
    vec![
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("KAFKA_TOPIC_TICKS", topics[0].clone()),
        ("KAFKA_TOPIC_RAW", topics[1].clone()),
        ("KAFKA_TOPIC_DLQ", topics[2].clone()),
        ("KAFKA_PARTITIONS", "6".into()),
        ("JOURNAL_DIR", journal.display().to_string()),
        ("KITE_WS_URL", sim.kite_url.clone()),
        ("KITE_API_KEY", sc.kite_api_key),
        ("KITE_ACCESS_TOKEN", sc.kite_access_token),
        ("SUBSCRIBE", subscribe.join(",")),
        ("LOG_LEVEL", "warn".into()),
    ]
}

/// The engine's config from `vars`, read as it would read them from its environment.
pub(crate) fn config(vars: Vec<(&'static str, String)>) -> Arc<Config> {
    Arc::new(
        Config::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .expect("config"),
    )
}

/// Records of `topic` that Kafka acknowledged to this process's engines.
pub(crate) fn acked(topic: &str) -> u64 {
    layer1::metrics::global()
        .kafka_acked_total
        .with_label_values(&[topic])
        .get()
}

/// Stops the simulator and waits (at most 60 s) until Kafka acknowledged on `topic` every tick
/// it sent after it had sent `sent_before`, so an engine can stop with nothing in flight; returns
/// the wait in seconds.
pub(crate) fn pause_and_drain(sim: &mut SimProcess, topic: &str, sent_before: u64) -> f64 {
    sim.set_rate(0);
    let t = Instant::now();
    std::thread::sleep(Duration::from_millis(500));
    let sent = sim.ticks_frames().0.saturating_sub(sent_before);
    while acked(topic) < sent && t.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(100));
    }
    t.elapsed().as_secs_f64()
}
