//! The whole path against real parts: the vendor simulator -> feed thread -> parser, validator
//! -> hand-over queue -> producer thread -> the local Kafka broker, consumed back and compared.
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

use std::{collections::HashMap, sync::Arc, time::Duration};

use layer1::{
    config::Config,
    engine::Engine,
    parsers::{self, FeedEvent, FrameKind, FrameMeta, ParseError, TickSink},
    shutdown::Shutdown,
    sim::{Fault, SimConfig, SimHandle, Simulator, Target},
    tick::Tick,
    vendor::Vendor,
};

const KITE_TOKENS: [u32; 8] = [
    408065, 738561, 779521, 2953217, 884737, 1270529, 341249, 12290,
];
const UPSTOX_KEYS: [&str; 3] = [
    "NSE_EQ|INE002A01018",
    "NSE_EQ|INE009A01021",
    "NSE_EQ|INE040A01034",
];

struct Run {
    sim: SimHandle,
    topics: [String; 3],
    journal: std::path::PathBuf,
}

fn config(sim: &SimHandle, topics: &[String; 3], journal: &std::path::Path) -> Config {
    let sc = SimConfig::default();
    let mut subscribe: Vec<String> = KITE_TOKENS
        .iter()
        .map(|t| format!("kite:{t}@full"))
        .collect();
    subscribe.extend(UPSTOX_KEYS.iter().map(|k| format!("upstox:{k}@full")));
    let mut vars = common::kite_engine_vars(sim.kite_url(), topics, 3, journal);
    vars.extend([
        ("UPSTOX_AUTHORIZE_URL", sim.upstox_authorize_url()),
        ("UPSTOX_ACCESS_TOKEN", sc.upstox_access_token),
        ("SUBSCRIBE", subscribe.join(",")),
        ("CAPTURE_DIR", journal.join("capture").display().to_string()),
    ]);
    common::config(vars)
}

fn start(rate: u64) -> Run {
    common::services();
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: rate,
        seed: 7,
        ..SimConfig::default()
    })
    .expect("sim");
    let topics = common::run_topics("test.e2e");
    let journal = std::env::temp_dir().join(common::unique("journal-e2e"));
    Run {
        sim,
        topics,
        journal,
    }
}

/// Runs the engine against the simulator for `secs`, stops the simulator's generation, lets the
/// last frames arrive, then stops the engine (which flushes).
fn run_engine(
    run: &Run,
    secs: u64,
    during: impl FnOnce(&SimHandle),
) -> HashMap<(Vendor, String), u64> {
    let cfg = Arc::new(config(&run.sim, &run.topics, &run.journal));
    let engine = Engine::start(cfg, Shutdown::new()).expect("engine");
    std::thread::sleep(Duration::from_secs(1));
    during(&run.sim);
    std::thread::sleep(Duration::from_secs(secs));
    run.sim.set_rate(0).expect("pause generation");
    std::thread::sleep(Duration::from_millis(1500));
    let sent = run.sim.stats().expect("sim stats").ticks_sent;
    let report = engine.stop();
    let p = report.producer.expect("producer report");
    assert_eq!(p.dropped, 0);
    assert_eq!(p.left_in_journal_bytes, 0);
    sent
}

fn instrument_of(v: &serde_json::Value) -> (Vendor, String) {
    let vendor = Vendor::from_name(v["vendor"].as_str().expect("vendor")).expect("known vendor");
    (vendor, v["token"].as_str().expect("token").to_owned())
}

struct Collect(Vec<Vec<u8>>);

impl TickSink for Collect {
    fn tick(&mut self, t: &Tick) {
        let mut out = Vec::new();
        layer1::encode::encode_json(t, None, &mut out);
        self.0.push(out);
    }
    fn reject(&mut self, _: &ParseError, _: &[u8]) {}
    fn event(&mut self, _: &FeedEvent<'_>) {}
}

#[test]
fn simulator_ticks_reach_kafka_exactly_once_in_order_with_their_raw_frames() {
    let run = start(2_000);
    let sent = run_engine(&run, 3, |_| {});
    let total: u64 = sent.values().sum();
    assert!(total > 1_000, "the simulator sent ticks: {total}");

    let records = common::consume_records(&run.topics[0], total as usize, Duration::from_secs(60));
    // Headers: the vendor and the payload schema's version, on every tick.
    for r in &records {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("tick json");
        let vendor = instrument_of(&v).0;
        assert_eq!(
            r.headers,
            vec![
                ("vendor".to_owned(), vendor.as_str().as_bytes().to_vec()),
                (
                    "schema".to_owned(),
                    layer1::producer::TICK_SCHEMA_VERSION.to_vec()
                ),
            ],
            "tick headers"
        );
    }
    let ticks: Vec<(Option<Vec<u8>>, Vec<u8>)> =
        records.into_iter().map(|r| (r.key, r.payload)).collect();
    let mut per_instrument: HashMap<(Vendor, String), u64> = HashMap::new();
    let mut last_volume: HashMap<(Vendor, String), f64> = HashMap::new();
    for (key, payload) in &ticks {
        let v: serde_json::Value = serde_json::from_slice(payload).expect("tick json");
        let inst = instrument_of(&v);
        assert_eq!(
            key.as_deref(),
            Some(format!("{}:{}", inst.0.as_str(), inst.1).as_bytes()),
            "keyed by instrument"
        );
        *per_instrument.entry(inst.clone()).or_default() += 1;
        // Volume only grows in the simulator, so a decrease would mean reordering.
        if let Some(vol) = v["volume"].as_f64() {
            let prev = last_volume.insert(inst.clone(), vol).unwrap_or(0.0);
            assert!(
                vol >= prev,
                "order kept for {inst:?}: volume {vol} after {prev}"
            );
        }
    }
    assert_eq!(
        per_instrument, sent,
        "every tick the simulator sent is in Kafka once"
    );
    assert!(
        common::consume_all(&run.topics[2], 1, Duration::from_secs(2)).is_empty(),
        "no rejects"
    );

    // Decoding market.raw reproduces market.ticks exactly.
    let raw_records = common::consume_records(&run.topics[1], usize::MAX, Duration::from_secs(8));
    assert!(!raw_records.is_empty());
    // Headers: vendor, frame kind and receive time (decimal epoch ns), in that order.
    for r in &raw_records {
        let names: Vec<&str> = r.headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(names, ["vendor", "kind", "receivedAt"], "raw headers");
        assert!(
            [&b"binary"[..], b"text"].contains(&r.headers[1].1.as_slice()),
            "frame kind"
        );
        let at: u64 = std::str::from_utf8(&r.headers[2].1)
            .expect("utf8")
            .parse()
            .expect("receive time in ns");
        assert!(at > 1_700_000_000_000_000_000, "receive time {at}");
    }
    let raw: Vec<(Option<Vec<u8>>, Vec<u8>)> = raw_records
        .into_iter()
        .map(|r| (r.key, r.payload))
        .collect();
    let mut from_raw = Collect(Vec::new());
    for (key, payload) in &raw {
        let key = String::from_utf8(key.clone().expect("raw key")).expect("utf8");
        let vendor = Vendor::from_name(key.split(':').next().unwrap_or("")).expect("vendor in key");
        parsers::parse_frame(
            vendor,
            FrameKind::Binary,
            payload,
            &FrameMeta::default(),
            &mut from_raw,
        );
    }
    let strip = |j: &[u8]| -> serde_json::Value {
        let mut v: serde_json::Value = serde_json::from_slice(j).expect("json");
        v.as_object_mut().expect("object").remove("receivedAt");
        v
    };
    let mut a: Vec<String> = from_raw.0.iter().map(|j| strip(j).to_string()).collect();
    let mut b: Vec<String> = ticks.iter().map(|(_, p)| strip(p).to_string()).collect();
    a.sort();
    b.sort();
    assert_eq!(a.len(), b.len(), "raw frames carry every tick");
    assert!(a == b, "raw frames decode to the same ticks");

    // `layer1 replay` of the capture written during the run yields the same ticks.
    let capture = std::fs::read_dir(run.journal.join("capture"))
        .expect("capture dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "l1cap"))
        .expect("a capture file");
    let replay_topic = common::unique("test.e2e.replay");
    let mut cfg = config(&run.sim, &run.topics, &run.journal);
    cfg.kafka.topic_ticks = replay_topic.clone();
    cfg.kafka.topic_raw = common::unique("test.e2e.replay-raw");
    cfg.capture_dir = None;
    let summary = layer1::replay::run(&cfg, &capture, false).expect("replay");
    assert!(!summary.truncated);
    assert_eq!(summary.producer.left_in_journal_bytes, 0);
    let replayed = common::consume_all(&replay_topic, ticks.len(), Duration::from_secs(60));
    let mut c: Vec<&[u8]> = replayed.iter().map(|(_, p)| p.as_slice()).collect();
    let mut d: Vec<&[u8]> = ticks.iter().map(|(_, p)| p.as_slice()).collect();
    c.sort();
    d.sort();
    assert!(
        c == d,
        "replay reproduces the live ticks byte for byte ({} vs {})",
        c.len(),
        d.len()
    );
    run.sim.shutdown();
    let _ = std::fs::remove_dir_all(&run.journal);
}

/// `layer1 replay --paced` keeps a capture's recorded spacing: no frame's ticks reach Kafka
/// before the frame's recorded offset from the first (their Kafka create time, taken when the
/// producer hands them to librdkafka, is never earlier), and it yields exactly the ticks the fast
/// replay of the same capture does. Six real Kite frames recorded over 1.5 s; each has a tick
/// the validator refuses, which both replays count and send to the dead-letter topic.
#[test]
fn paced_replay_keeps_the_recorded_spacing_and_yields_the_fast_replays_ticks() {
    use std::io::BufWriter;

    use layer1::capture::{CaptureWriter, Record};

    const OFFSETS_MS: [u64; 6] = [0, 250, 300, 700, 1_100, 1_500];
    common::services();
    let dir = std::env::temp_dir().join(common::unique("replay-paced"));
    std::fs::create_dir_all(&dir).expect("dir");
    let capture = dir.join("paced.l1cap");
    let frame = std::fs::read("tests/fixtures/kite/frame_real.bin").expect("fixture");
    let base_ms = layer1::clock::now_unix_ns() / 1_000_000 - 60_000;
    {
        let file = std::fs::File::create(&capture).expect("capture file");
        let mut w = CaptureWriter::new(BufWriter::new(file)).expect("header");
        for off in OFFSETS_MS {
            let rec = Record {
                received_at_ns: (base_ms + off) * 1_000_000,
                vendor: Vendor::Kite,
                kind: FrameKind::Binary,
                conn_id: 1,
            };
            w.write_record(&rec, &frame).expect("record");
        }
        w.flush().expect("flush");
    }
    let replay = |paced: bool| {
        let topics = common::run_topics("test.replay");
        let mut vars = common::kite_engine_vars("ws://127.0.0.1:1".into(), &topics, 1, &dir);
        vars.push(("SUBSCRIBE", "kite:408065@full".into()));
        let cfg = common::config(vars);
        let before_ms = layer1::clock::now_unix_ns() / 1_000_000;
        let started = std::time::Instant::now();
        let summary = layer1::replay::run(&cfg, &capture, paced).expect("replay");
        let took = started.elapsed();
        assert!(!summary.truncated);
        // Each frame holds two ticks; its full-mode one carries the capture's 2021 exchange
        // time, which the validator refuses as stale against the recorded receive time.
        let frames = OFFSETS_MS.len();
        assert_eq!(
            (summary.pipeline.ticks, summary.pipeline.rejects),
            (2 * frames as u64, frames as u64),
            "validator refusals are counted"
        );
        let records = common::consume_records(&topics[0], frames, Duration::from_secs(30));
        assert_eq!(
            records.len(),
            frames,
            "every valid replayed tick consumed back"
        );
        let dlq = common::consume_all(&topics[2], frames, Duration::from_secs(30));
        assert_eq!(
            dlq.len(),
            frames,
            "every refused tick in the dead-letter topic"
        );
        assert!(dlq
            .iter()
            .all(|(_, p)| serde_json::from_slice::<serde_json::Value>(p)
                .is_ok_and(|v| v["reason"] == "stale_time")));
        (records, before_ms, took)
    };
    let (fast, _, _) = replay(false);
    let (paced, before_ms, took) = replay(true);
    assert!(
        took >= Duration::from_millis(OFFSETS_MS[5]),
        "a paced replay lasts at least the recorded span: {took:?}"
    );
    for r in &paced {
        let v: serde_json::Value = serde_json::from_slice(&r.payload).expect("tick json");
        let offset = v["receivedAt"].as_u64().expect("receivedAt") - base_ms;
        assert!(
            OFFSETS_MS.contains(&offset),
            "recorded receive time kept: {offset}"
        );
        let at = r.timestamp_ms.expect("create time");
        // Whole milliseconds on both sides: 1 ms of slack for the truncation.
        assert!(
            at + 1 >= i64::try_from(before_ms + offset).expect("ms"),
            "the frame recorded at +{offset} ms reached Kafka at +{} ms",
            at - i64::try_from(before_ms).expect("ms")
        );
    }
    let sorted = |rs: &[common::Consumed]| {
        let mut p: Vec<Vec<u8>> = rs.iter().map(|r| r.payload.clone()).collect();
        p.sort();
        p
    };
    assert_eq!(
        sorted(&paced),
        sorted(&fast),
        "paced and fast replays yield the same ticks"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn malformed_frames_land_in_the_dlq_and_the_main_topic_stays_clean() {
    let run = start(1_000);
    run_engine(&run, 2, |sim| {
        for _ in 0..3 {
            sim.inject(Fault::Malformed(Target::all(Vendor::Kite)))
                .expect("inject");
            sim.inject(Fault::Truncated(Target::all(Vendor::Kite)))
                .expect("inject");
            sim.inject(Fault::Malformed(Target::all(Vendor::Upstox)))
                .expect("inject");
            std::thread::sleep(Duration::from_millis(200));
        }
    });
    let dlq = common::consume_all(&run.topics[2], 6, Duration::from_secs(20));
    assert!(dlq.len() >= 6, "rejects reached the DLQ: {}", dlq.len());
    let mut reasons = std::collections::BTreeSet::new();
    for (key, payload) in &dlq {
        let v: serde_json::Value = serde_json::from_slice(payload).expect("dlq json");
        assert!(v["reason"].as_str().is_some_and(|r| !r.is_empty()));
        assert!(v["code"]
            .as_str()
            .is_some_and(|c| c.starts_with("PARSE_") || c == "VALIDATION_REJECTED"));
        assert!(v["receivedAt"]
            .as_u64()
            .is_some_and(|t| t > 1_700_000_000_000));
        assert!(v["rawBase64"].is_string());
        assert_eq!(key.as_deref(), v["vendor"].as_str().map(str::as_bytes));
        reasons.insert(v["reason"].as_str().unwrap_or("").to_owned());
    }
    assert!(!reasons.is_empty());
    // The main topic holds only valid ticks.
    let ticks = common::consume_all(&run.topics[0], usize::MAX, Duration::from_secs(8));
    assert!(!ticks.is_empty());
    for (_, payload) in &ticks {
        let v: serde_json::Value = serde_json::from_slice(payload).expect("tick json");
        assert!(
            v["ltp"].as_f64().is_some_and(|p| p > 0.0 && p.is_finite()),
            "{v}"
        );
        assert!(v["token"].as_str().is_some_and(|t| !t.is_empty()));
    }
    run.sim.shutdown();
    let _ = std::fs::remove_dir_all(&run.journal);
}

/// `KAFKA_RAW_ENABLED=false` turns `market.raw` off: ticks still reach `market.ticks`, and no
/// raw frame is produced or acknowledged; with `CAPTURE_DIR` set the frames still go to the
/// capture file (the other consumer of raw frames).
#[test]
fn raw_topic_off_sends_no_raw_frame_and_ticks_still_flow() {
    let journal = std::env::temp_dir().join(common::unique("journal-rawoff"));
    let capture = journal.join("capture");
    let extra = [
        ("KAFKA_RAW_ENABLED", "false".to_string()),
        ("CAPTURE_DIR", capture.display().to_string()),
    ];
    let (sim, topics, engine) =
        common::kite_quote_engine(5_000, 17, "test.rawoff", &journal, &extra);
    assert!(
        common::wait_until(Duration::from_secs(60), || common::acked(&topics[0])
            > 5_000),
        "ticks are acknowledged"
    );
    sim.set_rate(0).expect("pause generation");
    let report = engine.stop();
    assert_eq!(common::acked(&topics[1]), 0, "no raw frame acknowledged");
    let raw = common::consume_all(&topics[1], 1, Duration::from_secs(3));
    assert!(
        raw.is_empty(),
        "market.raw stays empty: {} records",
        raw.len()
    );
    let captured: u64 = std::fs::read_dir(&capture)
        .expect("capture dir")
        .filter_map(Result::ok)
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum();
    assert!(
        captured > 100_000,
        "the capture file has the frames: {captured} bytes"
    );
    let p = report.producer.expect("producer report");
    assert_eq!((p.failed, p.dropped), (0, 0));
    let _ = std::fs::remove_dir_all(&journal);
}

/// A frame larger than Kafka's default record limit (1 MB) is in `market.raw` whole, and its
/// reject in the dead-letter topic with all its bytes: the engine produces records up to
/// `producer::MAX_RECORD_BYTES` and creates its topics to take them. (librdkafka's default
/// limit refused both at the send.)
#[test]
fn a_two_megabyte_frame_reaches_market_raw_whole_and_its_reject_the_dlq() {
    const BYTES: usize = 2_000_000;
    let run = start(1_000);
    run_engine(&run, 2, |sim| {
        sim.inject(Fault::Oversize {
            target: Target::all(Vendor::Kite),
            bytes: BYTES,
        })
        .expect("inject");
    });
    let raw = common::consume_all(&run.topics[1], usize::MAX, Duration::from_secs(8));
    assert!(
        raw.iter()
            .any(|(_, p)| p.len() == BYTES && p.iter().all(|b| *b == 0)),
        "the 2 MB frame is in market.raw whole ({} raw records, largest {} bytes)",
        raw.len(),
        raw.iter().map(|(_, p)| p.len()).max().unwrap_or(0)
    );
    let dlq = common::consume_all(&run.topics[2], usize::MAX, Duration::from_secs(8));
    // Over the parser's frame limit, the frame is refused whole: all 2,000,000 bytes in base64
    // (2,666,668 characters with the padding).
    let summary: Vec<(serde_json::Value, usize)> = dlq
        .iter()
        .map(|(_, p)| {
            let v: serde_json::Value = serde_json::from_slice(p).expect("dlq json");
            let len = v["rawBase64"].as_str().map_or(0, str::len);
            (v["reason"].clone(), len)
        })
        .collect();
    let found = dlq.iter().any(|(_, p)| {
        let v: serde_json::Value = serde_json::from_slice(p).expect("dlq json");
        v["reason"] == "frame_too_large"
            && v["rawBase64"].as_str().is_some_and(|s| {
                s.len() == BYTES.div_ceil(3) * 4
                    && s.trim_end_matches('=').bytes().all(|b| b == b'A')
            })
    });
    assert!(
        found,
        "the frame's reject is in the DLQ with all its bytes: {summary:?}"
    );
    assert_eq!(
        layer1::metrics::global()
            .kafka_refused_total
            .with_label_values(&[run.topics[1].as_str()])
            .get(),
        0
    );
    run.sim.shutdown();
    let _ = std::fs::remove_dir_all(&run.journal);
}

/// A topic that refuses records for good (here `market.raw` created with a 2,000-byte
/// `max.message.bytes`, under the size of most frames) costs only those records: they are
/// counted and logged, not rescued into the journal and sent again, so ticks keep flowing to
/// `market.ticks` and the journal stays empty. (Before, each refused record sent the engine
/// into an outage it never left: the journal grew by megabytes a second, ticks stopped.)
#[test]
fn records_a_topic_refuses_for_good_are_counted_and_hold_up_nothing_else() {
    common::services();
    let raw = common::sized_topic("test.refuse.raw", 3, 2_000);
    let journal = std::env::temp_dir().join(common::unique("journal-refuse"));
    let extra = [("KAFKA_TOPIC_RAW", raw.clone())];
    let (sim, topics, engine) =
        common::kite_quote_engine(20_000, 19, "test.refuse", &journal, &extra);
    let m = layer1::metrics::global();
    let refused = m.kafka_refused_total.with_label_values(&[raw.as_str()]);
    assert!(
        common::wait_until(Duration::from_secs(30), || common::acked(&topics[0]) > 0),
        "ticks reach Kafka"
    );
    // Ticks keep flowing through the refusals, straight to Kafka.
    let acked = common::acked(&topics[0]);
    assert!(
        common::wait_until(Duration::from_secs(30), || common::acked(&topics[0])
            > acked + 40_000),
        "ticks acknowledged while raw frames are refused: {} more, journal {} bytes",
        common::acked(&topics[0]) - acked,
        m.journal_bytes.get()
    );
    assert!(
        refused.get() > 100,
        "raw frames refused and counted: {}",
        refused.get()
    );
    // Nothing journaled: asserted on this engine's own report below (the `journal_bytes` gauge
    // is the whole process's, and other tests of this binary journal).
    sim.set_rate(0).expect("pause generation");
    std::thread::sleep(Duration::from_millis(500));
    let p = engine.stop().producer.expect("producer report");
    println!("{p:?}");
    assert_eq!(p.refused, refused.get(), "the report counts every refusal");
    assert_eq!((p.journaled, p.dropped, p.left_in_journal_bytes), (0, 0, 0));
    let ticks_sent = m
        .kafka_sent_total
        .with_label_values(&[topics[0].as_str()])
        .get();
    assert_eq!(
        common::acked(&topics[0]),
        ticks_sent,
        "every tick sent is acknowledged"
    );
    let _ = std::fs::remove_dir_all(&journal);
}

/// Topics made beforehand with a `max.message.bytes` under librdkafka's batch size (here
/// `market.ticks` at 60,000 bytes and `market.raw` at 100,000, one partition each, with a
/// 200 ms linger so batches grow) cost nothing: the engine reads their limits at start-up and
/// sends batches that fit the smallest, so every tick and raw frame is acknowledged and none is
/// refused. (Before, every batch over a topic's limit was refused as a whole, for good: in under
/// 2 s, 3,596 ticks were refused and lost and 166 acknowledged.)
#[test]
fn batches_fit_topics_made_with_limits_under_the_batch_size() {
    common::services();
    let ticks = common::sized_topic("test.fit.ticks", 1, 60_000);
    let raw = common::sized_topic("test.fit.raw", 1, 100_000);
    let journal = std::env::temp_dir().join(common::unique("journal-fit"));
    let extra = [
        ("KAFKA_TOPIC_TICKS", ticks.clone()),
        ("KAFKA_TOPIC_RAW", raw.clone()),
        ("KAFKA_LINGER_MS", "200".to_owned()),
    ];
    // `extra` wins over the helper's own topic names: ticks and frames go to the small topics.
    let (sim, _, engine) = common::kite_quote_engine(20_000, 23, "test.fit", &journal, &extra);
    let m = layer1::metrics::global();
    let refused = |t: &str| m.kafka_refused_total.with_label_values(&[t]).get();
    let done = common::wait_until(Duration::from_secs(60), || {
        common::acked(&ticks) > 40_000 || refused(&ticks) + refused(&raw) > 0
    });
    sim.set_rate(0).expect("pause generation");
    std::thread::sleep(Duration::from_millis(500));
    let p = engine.stop().producer.expect("producer report");
    println!("{p:?}");
    assert_eq!(
        (refused(&ticks), refused(&raw)),
        (0, 0),
        "no record refused by the small topics"
    );
    assert!(done, "ticks acknowledged: {}", common::acked(&ticks));
    assert!(common::acked(&raw) > 100, "raw frames acknowledged");
    assert_eq!((p.refused, p.journaled, p.dropped), (0, 0, 0));
    for topic in [&ticks, &raw] {
        let sent = m
            .kafka_sent_total
            .with_label_values(&[topic.as_str()])
            .get();
        assert_eq!(
            common::acked(topic),
            sent,
            "every record sent to {topic} is acknowledged"
        );
    }
    common::remove_run(&[&ticks, &raw], &journal);
}

/// A topic's `max.message.bytes` lowered under the batch size while the engine runs: the topic
/// refuses the batches in flight whole. The engine journals those records and what follows,
/// reads the limits again, and drains through a client whose batches fit: nothing is refused
/// for good, and every tick the simulator sent is in Kafka once.
#[test]
fn a_topic_limit_lowered_while_running_refits_the_batches_and_loses_nothing() {
    common::services();
    // One partition, so each batch is as large as the linger lets it grow.
    let ticks = common::sized_topic("test.refit.ticks", 1, layer1::producer::MAX_RECORD_BYTES);
    let raw = common::sized_topic("test.refit.raw", 1, layer1::producer::MAX_RECORD_BYTES);
    let journal = std::env::temp_dir().join(common::unique("journal-refit"));
    let extra = [
        ("KAFKA_TOPIC_TICKS", ticks.clone()),
        ("KAFKA_TOPIC_RAW", raw.clone()),
        ("KAFKA_LINGER_MS", "200".to_owned()),
    ];
    let (sim, topics, engine) =
        common::kite_quote_engine(20_000, 29, "test.refit", &journal, &extra);
    let m = layer1::metrics::global();
    let refused = |t: &str| m.kafka_refused_total.with_label_values(&[t]).get();
    assert!(
        common::wait_until(Duration::from_secs(30), || common::acked(&ticks) > 5_000),
        "ticks acknowledged before the limit is lowered: {}",
        common::acked(&ticks)
    );
    layer1::producer::set_topic_limit(&common::brokers(), &ticks, 60_000, Duration::from_secs(10))
        .expect("lower the limit");
    let lowered_at = common::acked(&ticks);
    let done = common::wait_until(Duration::from_secs(60), || {
        common::acked(&ticks) > lowered_at + 40_000 || refused(&ticks) > 0
    });
    sim.set_rate(0).expect("pause generation");
    std::thread::sleep(Duration::from_millis(500));
    let p = engine.stop().producer.expect("producer report");
    println!("{p:?}");
    let sent = sim.stats().expect("stats").ticks_sent;
    sim.shutdown();
    assert_eq!(refused(&ticks), 0, "no tick refused for good: {p:?}");
    assert!(
        done,
        "ticks acknowledged after the limit was lowered: {}",
        common::acked(&ticks) - lowered_at
    );
    assert!(
        p.journaled > 0,
        "the refused batches went through the journal: {p:?}"
    );
    assert_eq!(p.drained, p.journaled, "{p:?}");
    assert_eq!(
        (p.refused, p.dropped, p.left_in_journal_bytes),
        (0, 0, 0),
        "{p:?}"
    );
    let total: u64 = sent.values().sum();
    let records = common::consume_all(&ticks, total as usize, Duration::from_secs(60));
    let mut per_instrument: HashMap<(Vendor, String), u64> = HashMap::new();
    let mut last_volume: HashMap<(Vendor, String), f64> = HashMap::new();
    let mut out_of_order = 0u64;
    for (_, payload) in &records {
        let v: serde_json::Value = serde_json::from_slice(payload).expect("tick json");
        let inst = instrument_of(&v);
        *per_instrument.entry(inst.clone()).or_default() += 1;
        if let Some(vol) = v["volume"].as_f64() {
            if vol < last_volume.insert(inst, vol).unwrap_or(0.0) {
                out_of_order += 1;
            }
        }
    }
    println!(
        "{} ticks consumed of {total} sent; {out_of_order} after a later tick of their instrument",
        records.len()
    );
    assert_eq!(
        per_instrument, sent,
        "every tick the simulator sent is in Kafka once"
    );
    // Every batch sent after the refused one was as large, and was refused too: what the
    // broker took is in order, and the rest came back through the journal in order behind it.
    assert_eq!(out_of_order, 0, "order per instrument kept");
    common::remove_run(&[&ticks, &raw, &topics[2]], &journal);
}

/// A topic's limit lowered while the engine runs under even the smallest batch (16 KiB, the
/// start-up error's case): the one reading of the limits cuts the batch size to that, and what
/// the topic refuses then is counted as refused for good, not sent round the journal again and
/// again; the journal empties.
#[test]
fn a_limit_lowered_under_the_smallest_batch_is_read_once_then_refuses_for_good() {
    common::services();
    let ticks = common::sized_topic(
        "test.refit-floor.ticks",
        1,
        layer1::producer::MAX_RECORD_BYTES,
    );
    let journal = std::env::temp_dir().join(common::unique("journal-refit-floor"));
    let extra = [
        ("KAFKA_TOPIC_TICKS", ticks.clone()),
        ("KAFKA_LINGER_MS", "200".to_owned()),
    ];
    let (sim, topics, engine) =
        common::kite_quote_engine(20_000, 31, "test.refit-floor", &journal, &extra);
    let m = layer1::metrics::global();
    let refused = || m.kafka_refused_total.with_label_values(&[&ticks]).get();
    assert!(
        common::wait_until(Duration::from_secs(30), || common::acked(&ticks) > 5_000),
        "ticks acknowledged before the limit is lowered"
    );
    layer1::producer::set_topic_limit(&common::brokers(), &ticks, 2_000, Duration::from_secs(10))
        .expect("lower the limit");
    // Refusals counted for a while (going round the journal instead, none would be).
    let settled = common::wait_until(Duration::from_secs(30), || refused() > 10_000);
    sim.set_rate(0).expect("pause generation");
    std::thread::sleep(Duration::from_millis(500));
    let p = engine.stop().producer.expect("producer report");
    println!("{p:?}");
    sim.shutdown();
    assert!(settled, "refused for good: {} refused, {p:?}", refused());
    assert!(
        p.journaled > 0,
        "the first refused batches waited for the reading: {p:?}"
    );
    assert_eq!((p.dropped, p.left_in_journal_bytes), (0, 0), "{p:?}");
    common::remove_run(&[&ticks, &topics[1], &topics[2]], &journal);
}
