//! Foundation tests against real parts: the local Kafka broker, Redis, the engine's HTTP thread
//! and the `layer1` binary itself.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::large_stack_arrays,
    clippy::print_stdout,
    missing_docs
)]

mod common;
mod http_support;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use layer1::{
    config::Config,
    control::{self, BackfillParams, ControlCommand},
    producer::{self, Outbound, ProducerSettings, Record, Topic},
    shutdown::Shutdown,
};

fn config_with(pairs: &[(&str, String)]) -> Config {
    let pairs: Vec<(String, String)> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Config::from_lookup(&move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
        .expect("config")
}

#[test]
fn kafka_round_trip_through_the_producer_thread() {
    common::services();
    let topic = common::unique("test.roundtrip");
    let cfg = config_with(&[
        ("KAFKA_BROKERS", common::brokers()),
        ("KAFKA_TOPIC_TICKS", topic.clone()),
    ]);
    producer::ensure_topics(&cfg.kafka.brokers, &[&topic], 3, Duration::from_secs(10))
        .expect("topic");
    let (tx, rx) = producer::queue(1024);
    let handle = producer::spawn(
        ProducerSettings {
            kafka: cfg.kafka.clone(),
            journal: layer1::config::JournalConfig {
                dir: std::env::temp_dir().join(common::unique("journal-roundtrip")),
                ..cfg.journal.clone()
            },
            core: None,
            rt_priority: None,
            flush_timeout: Duration::from_secs(10),
            batch: 256,
            capture_dir: None,
            live_coverage: None,
            topics_ready: None,
        },
        vec![rx],
    )
    .expect("producer");
    const N: usize = 2_000;
    for i in 0..N {
        let record = Record {
            topic: Topic::Ticks,
            key: Some(format!("NSE:SYM{}", i % 7).into_bytes()),
            payload: format!("{{\"seq\":{i}}}").into_bytes(),
            headers: vec![("vendor".into(), b"test".to_vec())],
            received_at_ns: layer1::clock::now_unix_ns(),
        };
        tx.send(Outbound::Record(record)).expect("queue");
    }
    drop(tx);
    let report = handle.join().expect("flushed");
    assert_eq!(report.acked, N as u64);
    assert_eq!(report.left_in_journal_bytes, 0);
    assert_eq!(report.journaled, 0);

    let got = common::consume_all(&topic, N, Duration::from_secs(30));
    assert_eq!(got.len(), N, "every record consumed back");
    // Content and per-key order: within a key, sequence numbers rise.
    let mut last: std::collections::HashMap<Vec<u8>, i64> = Default::default();
    let mut seen = vec![false; N];
    for (key, payload) in got {
        let v: serde_json::Value = serde_json::from_slice(&payload).expect("json");
        let seq = v["seq"].as_i64().expect("seq");
        let key = key.expect("key");
        assert_eq!(key, format!("NSE:SYM{}", seq % 7).into_bytes());
        let prev = last.insert(key, seq).unwrap_or(-1);
        assert!(seq > prev, "order kept per key");
        assert!(
            !std::mem::replace(&mut seen[seq as usize], true),
            "no duplicate"
        );
    }
    assert!(seen.iter().all(|s| *s));
}

#[test]
fn delete_topics_removes_a_runs_topics_and_ignores_unknown_ones() {
    common::services();
    let brokers = common::brokers();
    let topic = common::unique("test.delete");
    producer::ensure_topics(&brokers, &[&topic], 2, Duration::from_secs(10)).expect("topic");
    // Creation, like deletion, reaches the broker's metadata asynchronously (on a broker just
    // started, the first read can still miss it).
    assert!(
        common::wait_until(Duration::from_secs(20), || common::partitions_of(&topic)
            == 2),
        "topic created with 2 partitions: {}",
        common::partitions_of(&topic)
    );
    let unknown = common::unique("test.never.created");
    producer::delete_topics(&brokers, &[&topic, &unknown], Duration::from_secs(10))
        .expect("delete, the unknown one ignored");
    // Deletion completes asynchronously on the broker.
    assert!(
        common::wait_until(Duration::from_secs(20), || common::partitions_of(&topic)
            == 0),
        "topic gone"
    );
}

/// Topics the engine creates take its largest records (`producer::MAX_RECORD_BYTES`); a topic
/// made with another limit reports that limit, so the engine can warn of it at start-up; a
/// topic that does not exist is left out.
#[test]
fn created_topics_take_the_largest_records_and_their_limits_are_read_back() {
    common::services();
    let brokers = common::brokers();
    let ours = common::unique("test.limit.ours");
    let small = common::unique("test.limit.small");
    let absent = common::unique("test.limit.absent");
    producer::ensure_topics(&brokers, &[&ours], 1, Duration::from_secs(10)).expect("topic");
    producer::ensure_topics_sized(&brokers, &[&small], 1, 100_000, Duration::from_secs(10))
        .expect("small topic");
    // A topic just created can be listed without its configuration for a moment.
    let limits = common::wait_for(Duration::from_secs(20), || {
        let l =
            producer::topic_limits(&brokers, &[&ours, &small, &absent], Duration::from_secs(10))
                .expect("limits");
        (l.len() >= 2).then_some(l)
    })
    .unwrap_or_default();
    assert_eq!(
        limits,
        [
            (ours.clone(), producer::MAX_RECORD_BYTES),
            (small.clone(), 100_000)
        ],
        "{limits:?}"
    );
    producer::delete_topics(&brokers, &[&ours, &small], Duration::from_secs(10)).expect("delete");
}

#[test]
fn redis_publish_reaches_the_control_listener() {
    common::services();
    let (tx, rx) = crossbeam_channel::bounded(8);
    let shutdown = Shutdown::new();
    let sd = shutdown.clone();
    let url = common::redis_url();
    let listener = std::thread::spawn(move || control::run_listener(&url, &tx, &sd));
    let client = redis::Client::open(common::redis_url()).expect("client");
    let mut con = client.get_connection().expect("connection");
    // Publish until the subscription is live (PUBLISH returns the receiver count).
    let got = common::wait_for(Duration::from_secs(10), || {
        let receivers: i64 = redis::cmd("PUBLISH")
            .arg(control::COMMANDS_CHANNEL)
            .arg(r#"START_BACKFILL {"days":2}"#)
            .query(&mut con)
            .expect("publish");
        if receivers == 0 {
            return None;
        }
        rx.recv_timeout(Duration::from_secs(2)).ok()
    })
    .expect("command received");
    assert_eq!(
        got,
        ControlCommand::StartBackfill(BackfillParams {
            days: Some(2),
            ..Default::default()
        })
    );
    // A malformed message is refused and the listener goes on.
    let _: i64 = redis::cmd("PUBLISH")
        .arg(control::COMMANDS_CHANNEL)
        .arg("NOT_A_COMMAND")
        .query(&mut con)
        .expect("publish");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(control::COMMANDS_CHANNEL)
        .arg("START_BACKFILL")
        .query(&mut con)
        .expect("publish");
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(5))
            .expect("second command"),
        ControlCommand::StartBackfill(BackfillParams::default())
    );
    shutdown.trigger();
    listener.join().expect("listener joins");
}

#[test]
fn metrics_are_served_as_valid_prometheus_text() {
    let metrics = layer1::metrics::global();
    let counters = layer1::metrics::VendorCounters::new(metrics, layer1::vendor::Vendor::Kite);
    counters.ticks.inc();
    counters.packets.inc();
    counters.bytes.inc_by(44);
    metrics
        .external_api_calls_total
        .with_label_values(&["kite", "historical", "200"])
        .inc();
    let shutdown = Shutdown::new();
    let server = layer1::http::start(
        "127.0.0.1:0".parse().expect("addr"),
        layer1::http::HttpState {
            metrics,
            version: "test",
        },
        shutdown.clone(),
    )
    .expect("http");
    let metrics = http_support::get(server.addr, "/metrics");
    assert_eq!(metrics.status, 200);
    let body = metrics.body;
    for name in [
        "ingestion_ticks_total",
        "websocket_packets_total",
        "websocket_data_bytes_total",
        "external_api_calls_total",
    ] {
        assert!(
            body.contains(&format!("# TYPE {name} counter")),
            "{name} missing"
        );
    }
    assert!(
        body.contains("process_resident_memory_bytes"),
        "process metrics"
    );
    // Valid exposition: every sample line is `name{labels} value` with a parseable value.
    for line in body
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let (name, value) = line.rsplit_once(' ').expect("sample");
        assert!(value.parse::<f64>().is_ok(), "value in {line}");
        let bare = name.split('{').next().unwrap_or("");
        assert!(
            !bare.is_empty()
                && bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "{line}"
        );
        if let Some(labels) = name.split_once('{').map(|(_, l)| l) {
            assert!(labels.ends_with('}'), "{line}");
        }
    }
    let health = http_support::get(server.addr, "/health");
    assert_eq!(health.status, 200);
    assert!(health.json()["status"].is_string());
    assert_eq!(http_support::get(server.addr, "/nope").status, 404);
    // A hostile request line gets a refusal, not a hang or a crash.
    let mut s = TcpStream::connect(server.addr).expect("connect");
    s.write_all(&[b'A'; 20_000]).ok();
    let mut buf = String::new();
    let _ = s.read_to_string(&mut buf);
    assert!(buf.starts_with("HTTP/1.1 413"), "{buf}");
    shutdown.trigger();
    server.join.join().expect("http joins");
}

#[test]
fn sigterm_stops_a_running_engine_with_every_thread_joined() {
    signal_stops_a_running_engine(libc::SIGTERM, "SIGTERM");
}

#[test]
fn sigint_stops_a_running_engine_with_every_thread_joined() {
    signal_stops_a_running_engine(libc::SIGINT, "SIGINT");
}

/// `layer1 run` as a process, in a directory of its own, with `env` over the local broker and
/// Redis and an ephemeral HTTP port; started: it logged `engine_started`.
struct EngineProcess {
    child: std::process::Child,
    dir: std::path::PathBuf,
    /// Its log lines up to `engine_started`.
    lines: Vec<String>,
    /// The ones after it, as they come.
    rest: crossbeam_channel::Receiver<String>,
    addr: std::net::SocketAddr,
}

impl EngineProcess {
    fn start(env: &[(&str, String)]) -> Self {
        common::services();
        let dir = std::env::temp_dir().join(common::unique("layer1-run"));
        std::fs::create_dir_all(&dir).expect("dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_layer1"))
            .arg("run")
            .current_dir(&dir)
            .env("HTTP_ADDR", "127.0.0.1:0")
            .env("KAFKA_BROKERS", common::brokers())
            .env("REDIS_URL", common::redis_url())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn layer1 run");
        let stderr = child.stderr.take().expect("stderr");
        let (line_tx, rest) = crossbeam_channel::unbounded::<String>();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = line_tx.send(line);
            }
        });
        let mut lines = Vec::new();
        let started = Instant::now();
        let addr = loop {
            let line = rest
                .recv_timeout(Duration::from_secs(30))
                .expect("engine logs while starting");
            lines.push(line.clone());
            let v: serde_json::Value = serde_json::from_str(&line).expect("log lines are JSON");
            if v["event"] == "engine_started" {
                break v["http"]
                    .as_str()
                    .expect("http addr")
                    .parse::<std::net::SocketAddr>()
                    .expect("addr");
            }
            assert!(started.elapsed() < Duration::from_secs(30));
        };
        Self {
            child,
            dir,
            lines,
            rest,
            addr,
        }
    }

    /// Sends `sig` (named `name`) and checks the process exits 0 within 20 s; every log line.
    fn stop(mut self, sig: libc::c_int, name: &str) -> Vec<String> {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a pid we spawned and own and a valid signal number; no memory
        // involved.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(20),
                "engine did not exit within 20 s of {name}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(status.success(), "exit status {status} after {name}");
        self.lines.extend(self.rest.try_iter());
        while let Ok(l) = self.rest.recv_timeout(Duration::from_millis(500)) {
            self.lines.push(l);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        self.lines
    }
}

/// `layer1 run` as a process, sent `sig` once started: it exits 0 within 20 s, having joined the
/// producer, control and HTTP threads and logged the end of its shutdown.
fn signal_stops_a_running_engine(sig: libc::c_int, name: &str) {
    let engine = EngineProcess::start(&[("KAFKA_TOPIC_TICKS", common::unique("test.shutdown"))]);
    assert_eq!(http_support::get(engine.addr, "/health").status, 200);
    let lines = engine.stop(sig, name);
    let joined: Vec<String> = lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["event"] == "thread_joined")
        .filter_map(|v| v["thread"].as_str().map(str::to_owned))
        .collect();
    for t in ["producer", "control", "http"] {
        assert!(joined.iter().any(|j| j == t), "{t} not joined: {joined:?}");
    }
    assert!(lines.iter().any(|l| l.contains("\"shutdown_complete\"")));
}

/// Topics made beforehand with a smaller `max.message.bytes` than the engine's records are named
/// at start-up, before `engine_started`: a warning under 8 MiB, an error when even the smallest
/// batch (16 KiB) would not fit (`PRODUCER_TOPIC_LIMIT`), and nothing for the topics the engine
/// made; and the batch size is cut once, to fit the smallest (here to its floor).
#[test]
fn topics_made_with_smaller_limits_are_named_at_start_up() {
    common::services();
    let brokers = common::brokers();
    let (ticks, dlq, raw, ohlc) = (
        common::unique("test.startlimit.ticks"),
        common::unique("test.startlimit.dlq"),
        common::unique("test.startlimit.raw"),
        common::unique("test.startlimit.ohlc"),
    );
    for (topic, bytes) in [(&ticks, 2_000_000), (&dlq, 500_000), (&ohlc, 10_000)] {
        producer::ensure_topics_sized(&brokers, &[topic], 1, bytes, Duration::from_secs(10))
            .expect("topic made beforehand");
    }
    // A topic just created can be listed without its configuration for a moment.
    assert!(
        common::wait_until(Duration::from_secs(20), || {
            producer::topic_limits(&brokers, &[&ticks, &dlq, &ohlc], Duration::from_secs(10))
                .is_ok_and(|l| l.len() == 3)
        }),
        "the limits are readable"
    );
    let engine = EngineProcess::start(&[
        ("KAFKA_TOPIC_TICKS", ticks.clone()),
        ("KAFKA_TOPIC_DLQ", dlq.clone()),
        ("KAFKA_TOPIC_RAW", raw.clone()),
        ("KAFKA_TOPIC_OHLC", ohlc.clone()),
    ]);
    let events: Vec<serde_json::Value> = engine
        .lines
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .collect();
    let limits: Vec<(String, String, u64)> = events
        .iter()
        .filter(|v| v["event"] == "kafka_topic_limit_low")
        .map(|v| {
            assert_eq!(v["code"], "PRODUCER_TOPIC_LIMIT", "{v}");
            (
                v["topic"].as_str().unwrap_or_default().to_owned(),
                v["level"].as_str().unwrap_or_default().to_ascii_lowercase(),
                v["max_message_bytes"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    // Batches are cut once, to the smallest batch: the candle topic is too small even for that.
    let lowered: Vec<(String, u64, u64)> = events
        .iter()
        .filter(|v| v["event"] == "kafka_batch_size_lowered")
        .map(|v| {
            (
                v["topic"].as_str().unwrap_or_default().to_owned(),
                v["batch_bytes"].as_u64().unwrap_or_default(),
                v["configured"].as_u64().unwrap_or_default(),
            )
        })
        .collect();
    engine.stop(libc::SIGTERM, "SIGTERM");
    let mut limits = limits;
    limits.sort();
    let mut expected = vec![
        (ticks.clone(), "warn".to_owned(), 2_000_000),
        (dlq.clone(), "warn".to_owned(), 500_000),
        (ohlc.clone(), "error".to_owned(), 10_000),
    ];
    expected.sort();
    assert_eq!(
        limits, expected,
        "the raw topic, made by the engine, is not named"
    );
    assert_eq!(
        lowered,
        vec![(ohlc.clone(), producer::MIN_BATCH_BYTES as u64, 1_000_000)]
    );
    producer::delete_topics(
        &brokers,
        &[&ticks, &dlq, &raw, &ohlc],
        Duration::from_secs(10),
    )
    .expect("delete");
}
