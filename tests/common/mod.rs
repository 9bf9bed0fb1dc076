//! Shared helpers for integration tests: real services, started once per test binary.
#![allow(dead_code, unreachable_pub)]

use std::{
    path::Path,
    sync::{Arc, OnceLock},
    time::{Duration, Instant},
};

use layer1::{
    config::Config,
    engine::Engine,
    shutdown::Shutdown,
    sim::{SimConfig, SimHandle, Simulator},
};

/// Kafka bootstrap servers the tests use.
pub fn brokers() -> String {
    std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into())
}

/// Redis URL the tests use.
pub fn redis_url() -> String {
    std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// Starts (or reuses) the local Kafka broker and Redis, once per test process. The script is
/// serialised with a file lock, so parallel test binaries never start two brokers.
pub fn services() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
        layer1::services::up().expect("scripts/services.sh up");
    });
}

/// The settings an engine test against the simulator's Kite server starts from: the local broker
/// and Redis, an ephemeral HTTP port, this run's ticks, raw and DLQ `topics` created with
/// `partitions`, its own `journal` directory, the simulator's Kite credentials, no core pinning
/// and no automatic backfill. Callers add theirs (`SUBSCRIBE` at least).
pub fn kite_engine_vars(
    kite_url: String,
    topics: &[String; 3],
    partitions: u32,
    journal: &Path,
) -> Vec<(&'static str, String)> {
    let sc = SimConfig::default();
    vec![
        ("KAFKA_BROKERS", brokers()),
        ("REDIS_URL", redis_url()),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("KAFKA_TOPIC_TICKS", topics[0].clone()),
        ("KAFKA_TOPIC_RAW", topics[1].clone()),
        ("KAFKA_TOPIC_DLQ", topics[2].clone()),
        ("KAFKA_PARTITIONS", partitions.to_string()),
        ("JOURNAL_DIR", journal.display().to_string()),
        ("KITE_WS_URL", kite_url),
        ("KITE_API_KEY", sc.kite_api_key),
        ("KITE_ACCESS_TOKEN", sc.kite_access_token),
        ("CORE_PINNING", "off".into()),
        ("BACKFILL_AUTO", "false".into()),
    ]
}

/// The simulator streaming Kite ticks at `rate` ticks/s, and a whole engine on it subscribed to
/// 200 of its instruments in quote mode, producing to this run's topics (named from `prefix`:
/// ticks, raw, DLQ) with `journal` as its outage journal and logging warnings only; `extra`
/// settings win over these (a `SUBSCRIBE` of other modes, a tick format).
pub fn kite_quote_engine(
    rate: u64,
    seed: u64,
    prefix: &str,
    journal: &Path,
    extra: &[(&'static str, String)],
) -> (SimHandle, [String; 3], Engine) {
    services();
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: rate,
        seed,
        ..SimConfig::default()
    })
    .expect("simulator starts");
    let topics = run_topics(prefix);
    let subscribe: Vec<String> = (1..=200u32)
        .map(|i| format!("kite:{}@quote", i * 256 + 1))
        .collect();
    // The first setting of a name wins (`config`), so `extra` goes first.
    let mut vars = extra.to_vec();
    vars.extend(kite_engine_vars(sim.kite_url(), &topics, 3, journal));
    vars.extend([
        ("SUBSCRIBE", subscribe.join(",")),
        ("LOG_LEVEL", "warn".into()),
    ]);
    let engine = Engine::start(Arc::new(config(vars)), Shutdown::new()).expect("engine starts");
    (sim, topics, engine)
}

/// A run's three topics, ticks, raw and DLQ, named from `prefix` and unique to this test run.
pub fn run_topics(prefix: &str) -> [String; 3] {
    [
        unique(&format!("{prefix}.ticks")),
        unique(&format!("{prefix}.raw")),
        unique(&format!("{prefix}.dlq")),
    ]
}

/// Deletes what a test made for its run: its `topics` (a run's topics hold what it wrote until
/// the broker's retention time) and its `journal` directory.
pub fn remove_run(topics: &[&str], journal: &Path) {
    let _ = std::fs::remove_dir_all(journal);
    layer1::producer::delete_topics(&brokers(), topics, Duration::from_secs(10))
        .expect("delete the run's topics");
}

/// A topic unique to this run (named from `prefix`) made with `partitions` and a
/// `max.message.bytes` of `bytes`, returned once its limit can be read back (a topic just created
/// can be listed without its configuration for a moment).
pub fn sized_topic(prefix: &str, partitions: i32, bytes: usize) -> String {
    let topic = unique(prefix);
    layer1::producer::ensure_topics_sized(
        &brokers(),
        &[&topic],
        partitions,
        bytes,
        Duration::from_secs(10),
    )
    .expect("sized topic");
    assert!(
        wait_until(Duration::from_secs(20), || {
            layer1::producer::topic_limits(&brokers(), &[&topic], Duration::from_secs(10))
                .is_ok_and(|l| l.len() == 1)
        }),
        "the limit of {topic} is readable"
    );
    topic
}

/// Records of `topic` Kafka has acknowledged to this process's engine so far.
pub fn acked(topic: &str) -> u64 {
    layer1::metrics::global()
        .kafka_acked_total
        .with_label_values(&[topic])
        .get()
}

/// The engine's config from `vars`, read as it would read them from its environment.
pub fn config(vars: Vec<(&'static str, String)>) -> Config {
    Config::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .expect("config")
}

/// A topic name unique to this test run.
pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}.{}.{}",
        std::process::id(),
        layer1::clock::now_unix_ns() % 1_000_000_000
    )
}

/// Polls `f` until it returns `Some` or `limit` passes.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// [`wait_for`] for a condition: true once `f` holds, false if `limit` passes first.
pub fn wait_until(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    wait_for(limit, || f().then_some(())).is_some()
}

/// Consumes every record of `topic` from the beginning until `expected` arrived or `limit`.
pub fn consume_all(
    topic: &str,
    expected: usize,
    limit: Duration,
) -> Vec<(Option<Vec<u8>>, Vec<u8>)> {
    consume_records(topic, expected, limit)
        .into_iter()
        .map(|r| (r.key, r.payload))
        .collect()
}

/// A record consumed back: key, payload, headers in order and timestamp.
#[derive(Debug, Clone)]
pub struct Consumed {
    pub key: Option<Vec<u8>>,
    pub payload: Vec<u8>,
    pub headers: Vec<(String, Vec<u8>)>,
    /// The record's Kafka timestamp in epoch ms (the producer's create time: when the engine
    /// handed it to librdkafka).
    pub timestamp_ms: Option<i64>,
}

/// [`consume_all`], with each record's headers.
pub fn consume_records(topic: &str, expected: usize, limit: Duration) -> Vec<Consumed> {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        message::Headers,
        ClientConfig, Message,
    };
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("test-consumer"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut out = Vec::new();
    let end = Instant::now() + limit;
    while out.len() < expected && Instant::now() < end {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_owned(), x.value.unwrap_or_default().to_vec()))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Consumed {
                key: m.key().map(<[u8]>::to_vec),
                payload: m.payload().unwrap_or_default().to_vec(),
                headers,
                timestamp_ms: m.timestamp().to_millis(),
            });
        }
    }
    out
}

/// Partition count of `topic` as the broker reports it, without creating it (0 when absent).
pub fn partitions_of(topic: &str) -> usize {
    use rdkafka::{
        consumer::{BaseConsumer, Consumer},
        ClientConfig,
    };
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("allow.auto.create.topics", "false")
        .create()
        .expect("client");
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    md.topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .map(|t| t.partitions().len())
        .sum()
}
