//! Historical backfill against real parts: Redis (status, lock, coverage, `system:commands`), the
//! Kafka broker (candles through the producer thread) and the REST simulator of the Kite and
//! Upstox historical APIs. Every test uses its own Redis namespace, topic and simulator, and a
//! fixed clock, so they run side by side.

// Helpers outside #[test] fns are test code too (clippy.toml allows these in tests).
#![allow(clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use std::{
    collections::{HashMap, HashSet},
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use layer1::{
    backfill::{
        self, coverage, BackfillHandle, BackfillInstrument, BackfillSettings, InstrumentSource,
        Keys, RetryPolicy, StaticInstruments, VendorEndpoint,
    },
    calendar::{utc_ms, Calendar},
    clock::{days_from_date, Date},
    config::{Config, Secret},
    control::{self, BackfillParams, ControlCommand},
    producer::{self, Outbound, ProducerHandle, ProducerSettings, Record, Topic},
    shutdown::Shutdown,
    sim::historical::{HistoricalConfig, HistoricalServer},
    vendor::Vendor,
};
use serde_json::Value;

const INFY: &str = "kite:408065=NSE:INFY";
const RELIANCE_UPSTOX: &str = "upstox:NSE_EQ|INE002A01018=NSE:RELIANCE";
const SBIN_KITE: &str = "kite:779521=NSE:SBIN";

fn day(y: i32, m: u32, d: u32) -> i64 {
    days_from_date(Date {
        year: y,
        month: m,
        day: d,
    })
}

/// Unix ms of an IST wall-clock time.
fn ist(y: i32, m: u32, d: u32, hh: u32, mm: u32) -> i64 {
    utc_ms(day(y, m, d), hh * 60 + mm)
}

/// Friday 27 Nov 2026, 17:00 IST: closed, today's session over. Last 5 trading days: 20, 23, 25,
/// 26, 27 (24 Nov is a holiday).
fn friday_evening() -> i64 {
    ist(2026, 11, 27, 17, 0)
}

fn fixed(ms: i64) -> backfill::Clock {
    Arc::new(move || ms)
}

struct Fixture {
    sim: HistoricalServer,
    producer: Option<ProducerHandle>,
    tx: producer::Handover,
    live_tx: Option<producer::Handover>,
    topic: String,
    ns: String,
    shutdown: Shutdown,
}

impl Fixture {
    fn new(name: &str, kite_rps: u32, clock_ms: i64) -> Fixture {
        common::services();
        let topic = common::unique(&format!("test.ohlc.{name}"));
        let live_topic = common::unique(&format!("test.ticks.{name}"));
        let pairs = [
            ("KAFKA_BROKERS".to_owned(), common::brokers()),
            ("KAFKA_TOPIC_OHLC".to_owned(), topic.clone()),
            ("KAFKA_TOPIC_TICKS".to_owned(), live_topic.clone()),
        ];
        let cfg = Config::from_lookup(&move |k| {
            pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        })
        .expect("config");
        producer::ensure_topics(
            &cfg.kafka.brokers,
            &[&topic, &live_topic],
            1,
            Duration::from_secs(10),
        )
        .expect("topics");
        let (tx, rx) = producer::queue(65_536);
        let (live_tx, live_rx) = producer::queue(65_536);
        let producer = producer::spawn(
            ProducerSettings {
                kafka: cfg.kafka.clone(),
                journal: layer1::config::JournalConfig {
                    dir: std::env::temp_dir()
                        .join(common::unique(&format!("journal-backfill-{name}"))),
                    ..cfg.journal.clone()
                },
                core: None,
                rt_priority: None,
                flush_timeout: Duration::from_secs(10),
                batch: 1024,
                capture_dir: None,
                live_coverage: None,
                topics_ready: None,
            },
            vec![live_rx, rx],
        )
        .expect("producer");
        let sim = HistoricalServer::start(HistoricalConfig {
            seed: 7,
            kite_rps,
            upstox_rps: 50,
            clock: Arc::new(move || clock_ms),
            ..HistoricalConfig::default()
        })
        .expect("simulator");
        Fixture {
            sim,
            producer: Some(producer),
            tx,
            live_tx: Some(live_tx),
            topic,
            ns: common::unique(&format!("test.{name}")),
            shutdown: Shutdown::new(),
        }
    }

    fn settings(&self, engine: &str, clock_ms: i64, rps: u32, max_days: u32) -> BackfillSettings {
        let cfg = Config::from_lookup(&|_| None).expect("defaults");
        let mut s = BackfillSettings::from_config(&cfg);
        s.redis_url = common::redis_url();
        s.engine_id = engine.to_owned();
        s.keys = Keys::namespaced(&self.ns);
        s.calendar = Arc::new(Calendar::builtin());
        s.clock = fixed(clock_ms);
        s.auto = false;
        s.kite = Some(VendorEndpoint {
            base_url: self.sim.base_url(),
            api_key: Some(Secret::new("sim_api_key")),
            token: Secret::new("sim_access_token"),
            rps,
            max_days,
        });
        s.upstox = Some(VendorEndpoint {
            base_url: self.sim.base_url(),
            api_key: None,
            token: Secret::new("sim_upstox_token"),
            rps: 50,
            max_days,
        });
        s.retry = RetryPolicy {
            max_attempts: 3,
            max_rate_limited: 10,
            base: Duration::from_millis(50),
            cap: Duration::from_millis(400),
        };
        s.http_timeout = Duration::from_secs(5);
        s.lock_ttl = Duration::from_secs(3);
        s.coverage_flush = Duration::from_millis(200);
        s
    }

    fn spawn(&self, settings: BackfillSettings, instruments: &[&str]) -> BackfillHandle {
        let list: Vec<BackfillInstrument> = instruments
            .iter()
            .map(|i| BackfillInstrument::parse(i).expect("instrument"))
            .collect();
        backfill::spawn(
            settings,
            Arc::new(StaticInstruments(list)),
            self.tx.clone(),
            self.shutdown.clone(),
        )
        .expect("spawn")
    }

    fn redis(&self) -> redis::Connection {
        redis::Client::open(common::redis_url())
            .expect("client")
            .get_connection()
            .expect("redis")
    }

    fn status(&self) -> Value {
        let raw: Option<String> = redis::cmd("GET")
            .arg(Keys::namespaced(&self.ns).status)
            .query(&mut self.redis())
            .expect("get");
        raw.map(|r| serde_json::from_str(&r).expect("status json"))
            .unwrap_or(Value::Null)
    }

    /// Waits until the status key says `state` (for the job `after` when given).
    fn wait_state(&self, state: &str, limit: Duration) -> Value {
        common::wait_for(limit, || {
            let s = self.status();
            (s["state"] == state).then_some(s)
        })
        .unwrap_or_else(|| panic!("status never became {state}: {}", self.status()))
    }

    fn lock_held(&self) -> bool {
        let v: Option<String> = redis::cmd("GET")
            .arg(Keys::namespaced(&self.ns).lock)
            .query(&mut self.redis())
            .expect("get");
        v.is_some()
    }

    /// Every candle on the topic (reads until `expected` arrived, then `settle` more for extras).
    fn candles(&self, expected: usize, settle: Duration) -> Vec<(String, Value)> {
        let mut got = common::consume_all(&self.topic, expected, Duration::from_secs(30));
        if got.len() == expected {
            got.extend(
                common::consume_all(&self.topic, expected + 1, settle)
                    .into_iter()
                    .skip(expected),
            );
        }
        got.into_iter()
            .map(|(k, v)| {
                (
                    String::from_utf8(k.expect("key")).expect("utf8 key"),
                    serde_json::from_slice(&v).expect("candle json"),
                )
            })
            .collect()
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        self.shutdown.trigger();
        self.live_tx.take();
        let (tx, _) = producer::queue(1);
        self.tx = tx;
        if let Some(p) = self.producer.take() {
            let _ = p.join();
        }
    }
}

/// Collects every message on a channel from now on.
struct Events {
    seen: Arc<Mutex<Vec<Value>>>,
    stop: Arc<AtomicBool>,
}

impl Events {
    fn subscribe(channel: &str) -> Events {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
        let (s, st, ch) = (Arc::clone(&seen), Arc::clone(&stop), channel.to_owned());
        std::thread::spawn(move || {
            let mut con = redis::Client::open(common::redis_url())
                .expect("client")
                .get_connection()
                .expect("redis");
            con.set_read_timeout(Some(Duration::from_millis(100)))
                .expect("timeout");
            let mut ps = con.as_pubsub();
            ps.subscribe(&ch).expect("subscribe");
            ready_tx.send(()).expect("ready");
            while !st.load(Ordering::Acquire) {
                if let Ok(m) = ps.get_message() {
                    let text: String = m.get_payload().expect("payload");
                    s.lock()
                        .expect("events")
                        .push(serde_json::from_str(&text).expect("event json"));
                }
            }
        });
        ready_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("subscribed");
        Events { seen, stop }
    }

    fn all(&self) -> Vec<Value> {
        self.seen.lock().expect("events").clone()
    }

    fn with(&self, event: &str) -> Vec<Value> {
        self.all()
            .into_iter()
            .filter(|e| e["event"] == event)
            .collect()
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn start(params: BackfillParams) -> ControlCommand {
    ControlCommand::StartBackfill(params)
}

fn full_day(session_open: u32, session_close: u32) -> coverage::MinuteSet {
    let mut s = coverage::MinuteSet::EMPTY;
    s.insert_range(session_open, session_close);
    s
}

/// Checks candles against the simulator: valid OHLC, on the minute grid, equal to what it serves.
fn check_against_sim(f: &Fixture, candles: &[(String, Value)], tokens: &HashMap<&str, &str>) {
    let mut seen = HashSet::new();
    for (key, c) in candles {
        assert_eq!(c["instrument"].as_str(), Some(key.as_str()));
        assert_eq!(c["type"], "candle");
        assert_eq!(c["source"], "backfill");
        let ts = c["ts"].as_i64().expect("ts");
        assert!(
            seen.insert((key.clone(), ts)),
            "candle {key} {ts} produced twice"
        );
        let token = tokens[key.as_str()];
        let want = f
            .sim
            .candle(token, ts)
            .unwrap_or_else(|| panic!("no simulator candle for {key} at {ts}"));
        assert_eq!(c["open"].as_f64(), Some(want.open), "{key} {ts}");
        assert_eq!(c["high"].as_f64(), Some(want.high));
        assert_eq!(c["low"].as_f64(), Some(want.low));
        assert_eq!(c["close"].as_f64(), Some(want.close));
        assert_eq!(c["volume"].as_f64(), Some(want.volume));
        assert!(c["tsIst"].as_str().is_some_and(|s| s.ends_with("+05:30")));
    }
}

#[test]
fn publish_start_backfill_on_a_closed_market_fills_exactly_the_missing_candles() {
    // Only this test subscribes the control listener to the shared `system:commands` channel.
    let now = friday_evening();
    let f = Fixture::new("publish", 50, now);
    let handle = f.spawn(
        f.settings("engine-a", now, 50, 60),
        &[INFY, RELIANCE_UPSTOX],
    );
    let (open, close) = (555, 930);
    // Live ticks covered INFY on 25 Nov 10:00-10:59 (recorded as the producer thread would).
    let live = handle.live_coverage();
    for m in 600..660 {
        live.record(b"kite:408065", utc_ms(day(2026, 11, 25), m) + 17_000);
    }
    // An earlier backfill covered RELIANCE on 20 Nov.
    let prefix = Keys::namespaced(&f.ns).prefix;
    coverage::merge(
        &mut f.redis(),
        &coverage::backfill_key(&prefix, "minute", "NSE:RELIANCE", "2026-11-20"),
        &full_day(open, close),
        Duration::from_secs(600),
    )
    .expect("seed coverage");
    let events = Events::subscribe(&Keys::namespaced(&f.ns).events);

    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded(8);
    let sd = f.shutdown.clone();
    let listener =
        std::thread::spawn(move || control::run_listener(&common::redis_url(), &cmd_tx, &sd));
    let mut con = f.redis();
    common::wait_for(Duration::from_secs(10), || {
        let subs: Vec<(String, i64)> = redis::cmd("PUBSUB")
            .arg("NUMSUB")
            .arg(control::COMMANDS_CHANNEL)
            .query(&mut con)
            .expect("numsub");
        subs.first().is_some_and(|(_, n)| *n > 0).then_some(())
    })
    .expect("listener subscribed");
    let _: i64 = redis::cmd("PUBLISH")
        .arg(control::COMMANDS_CHANNEL)
        .arg("START_BACKFILL")
        .query(&mut con)
        .expect("publish");
    // The engine's command loop: hand what the control thread received to the backfill.
    let cmd = cmd_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("command received");
    handle.submit(cmd);

    let done = f.wait_state("completed", Duration::from_secs(60));
    let expected = 2 * 5 * 375 - 60 - 375;
    assert_eq!(
        done["days"],
        serde_json::json!([
            "2026-11-20",
            "2026-11-23",
            "2026-11-25",
            "2026-11-26",
            "2026-11-27"
        ])
    );
    assert_eq!(done["trigger"], "redis");
    assert_eq!(done["progress"]["candlesDone"], expected);
    assert_eq!(done["progress"]["candlesTotal"], expected);
    assert_eq!(done["progress"]["instrumentsDone"], 2);
    assert!(!handle.is_backfilling());
    assert!(!f.lock_held(), "lock released");
    // Progress was visible along the way.
    let progress: Vec<i64> = events
        .with("progress")
        .iter()
        .filter_map(|e| e["progress"]["candlesDone"].as_i64())
        .collect();
    assert!(events.with("started").len() == 1, "{:?}", events.all());
    assert!(
        progress.iter().any(|d| *d > 0 && *d < expected as i64),
        "intermediate progress seen: {progress:?}"
    );

    let candles = f.candles(expected, Duration::from_secs(3));
    assert_eq!(candles.len(), expected, "exactly the missing candles");
    check_against_sim(
        &f,
        &candles,
        &HashMap::from([
            ("NSE:INFY", "408065"),
            ("NSE:RELIANCE", "NSE_EQ|INE002A01018"),
        ]),
    );
    for (key, c) in &candles {
        let ts = c["ts"].as_i64().expect("ts");
        let minute = layer1::calendar::ist_minute_of_day(ts);
        let d = layer1::calendar::ist_day(ts);
        assert!((open..close).contains(&minute), "inside the session");
        assert!(
            !(key == "NSE:INFY" && d == day(2026, 11, 25) && (600..660).contains(&minute)),
            "live-covered minute refetched"
        );
        assert!(
            !(key == "NSE:RELIANCE" && d == day(2026, 11, 20)),
            "backfill-covered day refetched"
        );
    }
    f.shutdown.trigger();
    handle.join();
    listener.join().expect("listener");
}

#[test]
fn rerun_after_completion_produces_no_new_candles() {
    let now = friday_evening();
    let f = Fixture::new("rerun", 50, now);
    let handle = f.spawn(f.settings("engine-a", now, 50, 60), &[INFY]);
    handle.submit(start(BackfillParams {
        days: Some(2),
        ..Default::default()
    }));
    let first = f.wait_state("completed", Duration::from_secs(30));
    assert_eq!(first["progress"]["candlesDone"], 750);
    let calls = f.sim.requests(Vendor::Kite);
    handle.submit(start(BackfillParams {
        days: Some(2),
        ..Default::default()
    }));
    let second = common::wait_for(Duration::from_secs(30), || {
        let s = f.status();
        (s["state"] == "completed" && s["jobId"] != first["jobId"]).then_some(s)
    })
    .expect("second job completed");
    assert_eq!(second["progress"]["candlesTotal"], 0);
    assert_eq!(second["progress"]["candlesDone"], 0);
    assert_eq!(
        f.sim.requests(Vendor::Kite),
        calls,
        "nothing missing, nothing fetched"
    );
    assert_eq!(
        f.candles(750, Duration::from_secs(3)).len(),
        750,
        "no candle produced twice"
    );
    f.shutdown.trigger();
    handle.join();
}

#[test]
fn second_trigger_during_a_run_is_refused_and_the_first_completes() {
    let now = friday_evening();
    let f = Fixture::new("second", 5, now);
    // One day per request at 5 requests/s: 10 requests, about two seconds.
    let handle = f.spawn(f.settings("engine-a", now, 5, 1), &[INFY, SBIN_KITE]);
    let events = Events::subscribe(&Keys::namespaced(&f.ns).events);
    handle.submit(start(BackfillParams::default()));
    f.wait_state("running", Duration::from_secs(10));
    assert!(handle.is_backfilling());
    handle.submit(start(BackfillParams {
        source: Some("http".into()),
        ..Default::default()
    }));
    let refused = common::wait_for(Duration::from_secs(5), || {
        events.with("refused-while-running").pop()
    })
    .expect("refusal published");
    assert_eq!(
        refused["state"], "running",
        "the running job's status is kept"
    );
    assert_eq!(
        refused["refusedWhileRunning"]["code"],
        "BACKFILL_REFUSED_RUNNING"
    );
    assert_eq!(refused["refusedWhileRunning"]["trigger"], "http");
    let done = f.wait_state("completed", Duration::from_secs(30));
    assert_eq!(done["progress"]["candlesDone"], 2 * 5 * 375);
    assert_eq!(events.with("started").len(), 1, "one job ran");
    f.shutdown.trigger();
    handle.join();
}

#[test]
fn two_engines_triggered_at_once_run_one_job() {
    let now = friday_evening();
    let f = Fixture::new("two", 5, now);
    let a = f.spawn(f.settings("engine-a", now, 5, 1), &[INFY, SBIN_KITE]);
    let b = f.spawn(f.settings("engine-b", now, 5, 1), &[INFY, SBIN_KITE]);
    let events = Events::subscribe(&Keys::namespaced(&f.ns).events);
    a.submit(start(BackfillParams::default()));
    b.submit(start(BackfillParams::default()));
    let refused = common::wait_for(Duration::from_secs(10), || events.with("refused").pop())
        .expect("one engine refused");
    assert_eq!(refused["reasonCode"], "BACKFILL_REFUSED_LOCKED");
    let done = f.wait_state("completed", Duration::from_secs(30));
    let started = events.with("started");
    assert_eq!(started.len(), 1, "exactly one job: {started:?}");
    assert_ne!(
        refused["engine"], done["engine"],
        "the refused engine is the other one"
    );
    assert!(!a.is_backfilling() && !b.is_backfilling());
    assert_eq!(
        f.candles(2 * 5 * 375, Duration::from_secs(3)).len(),
        2 * 5 * 375,
        "no duplicates"
    );
    f.shutdown.trigger();
    a.join();
    b.join();
}

#[test]
fn open_market_trigger_is_refused_without_force_and_runs_with_it() {
    let now = ist(2026, 11, 27, 11, 0);
    let f = Fixture::new("open", 50, now);
    let handle = f.spawn(f.settings("engine-a", now, 50, 60), &[INFY]);
    handle.submit(start(BackfillParams {
        days: Some(2),
        ..Default::default()
    }));
    let refused = f.wait_state("refused", Duration::from_secs(10));
    assert_eq!(refused["reasonCode"], "BACKFILL_REFUSED_MARKET_OPEN");
    assert_eq!(refused["market"], "open");
    assert!(refused["reason"]
        .as_str()
        .is_some_and(|r| r.contains("market is open") && r.contains("force")));
    assert!(!handle.is_backfilling());
    assert_eq!(f.sim.requests(Vendor::Kite), 0);
    handle.submit(start(BackfillParams {
        days: Some(2),
        force: true,
        ..Default::default()
    }));
    let done = f.wait_state("completed", Duration::from_secs(30));
    assert_eq!(done["force"], true);
    // Today's session has not ended, so the two days are the previous two sessions.
    assert_eq!(
        done["days"],
        serde_json::json!(["2026-11-25", "2026-11-26"])
    );
    assert_eq!(f.candles(750, Duration::from_secs(2)).len(), 750);
    f.shutdown.trigger();
    handle.join();
}

#[test]
fn rate_limit_429_bursts_slow_the_job_but_never_exceed_the_limit() {
    let now = friday_evening();
    // Kite's real limit, 3 requests/s, enforced by the simulator too.
    let f = Fixture::new("ratelimit", 3, now);
    let handle = f.spawn(f.settings("engine-a", now, 3, 1), &[INFY, SBIN_KITE]);
    f.sim.inject_429(Vendor::Kite, 4);
    let t0 = Instant::now();
    handle.submit(start(BackfillParams::default()));
    // A second burst in the middle of the job.
    common::wait_for(Duration::from_secs(30), || {
        (f.sim.requests(Vendor::Kite) >= 8).then_some(())
    })
    .expect("job under way");
    f.sim.inject_429(Vendor::Kite, 3);
    let done = f.wait_state("completed", Duration::from_secs(60));
    let elapsed = t0.elapsed();
    let stats = f.sim.stats();
    assert_eq!(stats.injected_429, 7);
    assert_eq!(
        stats.over_limit, 0,
        "the client never went over the vendor's limit"
    );
    let peak = f
        .sim
        .max_requests_in_window(Vendor::Kite, Duration::from_secs(1));
    assert!(peak <= 3, "at most 3 requests in any second, saw {peak}");
    assert_eq!(done["progress"]["rateLimited"], 7);
    assert_eq!(
        done["progress"]["apiCalls"], 17,
        "10 requests plus 7 answered 429"
    );
    assert_eq!(done["progress"]["candlesDone"], 2 * 5 * 375);
    // 17 requests at 3/s plus two Retry-After pauses cannot take less than about 5 s.
    assert!(
        elapsed >= Duration::from_secs(5),
        "429s slowed the job: {elapsed:?}"
    );
    let candles = done["progress"]["candlesDone"].as_f64().expect("n");
    println!(
        "rate-limited backfill: {candles} candles, 17 calls in {:.2} s = {:.0} candles/s, {:.2} calls/s (limit 3/s)",
        elapsed.as_secs_f64(),
        candles / elapsed.as_secs_f64(),
        17.0 / elapsed.as_secs_f64()
    );
    f.shutdown.trigger();
    handle.join();
}

#[test]
fn rest_dying_mid_job_fails_clears_flag_and_lock_and_a_new_trigger_works() {
    let now = friday_evening();
    let mut f = Fixture::new("die", 20, now);
    let handle = f.spawn(f.settings("engine-a", now, 20, 1), &[INFY, RELIANCE_UPSTOX]);
    // Live ingestion: a feed-like sender keeps producing ticks through the same producer thread.
    let live_tx = f.live_tx.take().expect("live sender");
    let stop = Arc::new(AtomicBool::new(false));
    // Declared after the fixture, so dropped first: a failed assertion stops the feed thread
    // (whose sender keeps the producer alive) before the fixture joins the producer.
    let _stop_feed = StopOnDrop(Arc::clone(&stop));
    let sent = Arc::new(AtomicUsize::new(0));
    let feed = {
        let (stop, sent) = (Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || {
            let mut i = 0u64;
            while !stop.load(Ordering::Acquire) {
                let rec = Record {
                    topic: Topic::Ticks,
                    key: Some(b"kite:408065".to_vec()),
                    payload: format!("{{\"seq\":{i}}}").into_bytes(),
                    headers: vec![],
                    received_at_ns: layer1::clock::now_unix_ns(),
                };
                live_tx
                    .send_timeout(Outbound::Record(rec), Duration::from_millis(50))
                    .expect("live hand-off never blocks");
                sent.fetch_add(1, Ordering::Release);
                i += 1;
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let acked = Arc::clone(f.producer.as_ref().expect("producer").stats());
    f.sim.die_after(3);
    handle.submit(start(BackfillParams::default()));
    // Sample live acknowledgements while the job runs into the dead REST API.
    let mut samples = Vec::new();
    let failed = loop {
        samples.push(acked.acked.load(Ordering::Acquire));
        let s = f.status();
        if s["state"] == "failed" {
            break s;
        }
        assert!(samples.len() < 600, "job never failed: {s}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(failed["reasonCode"], "BACKFILL_INCOMPLETE");
    assert!(
        failed["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["code"] == "BACKFILL_TRANSPORT")),
        "{failed}"
    );
    assert!(!handle.is_backfilling(), "flag cleared");
    assert!(!f.lock_held(), "lock cleared");
    assert!(samples.len() >= 4, "the job ran a while");
    for w in samples.windows(4) {
        assert!(
            w[3] > w[0],
            "live acknowledgements kept flowing during the backfill: {samples:?}"
        );
    }
    // REST back: a new trigger works and fills what the failed job left.
    f.sim.revive();
    let before = f.status()["jobId"].clone();
    handle.submit(start(BackfillParams::default()));
    let done = common::wait_for(Duration::from_secs(30), || {
        let s = f.status();
        (s["state"] == "completed" && s["jobId"] != before).then_some(s)
    })
    .expect("second job completed");
    let first_done = failed["progress"]["candlesDone"].as_u64().expect("n");
    assert_eq!(
        done["progress"]["candlesDone"].as_u64().expect("n") + first_done,
        2 * 5 * 375
    );
    assert_eq!(
        f.candles(2 * 5 * 375, Duration::from_secs(3)).len(),
        2 * 5 * 375,
        "every candle exactly once over both jobs"
    );
    stop.store(true, Ordering::Release);
    feed.join().expect("feed");
    assert!(sent.load(Ordering::Acquire) > 0);
    f.shutdown.trigger();
    handle.join();
    f.sim.stop();
}

/// Sets a flag when dropped.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Release);
    }
}

/// Panics on its second call (the first is made by `spawn`), then behaves.
struct PanickyOnce {
    calls: AtomicUsize,
    inner: StaticInstruments,
}

impl InstrumentSource for PanickyOnce {
    fn instruments(&self) -> Vec<BackfillInstrument> {
        if self.calls.fetch_add(1, Ordering::AcqRel) == 1 {
            panic!("instrument master exploded");
        }
        self.inner.instruments()
    }
}

#[test]
fn a_panicking_job_is_reported_failed_and_the_engine_runs_on() {
    let now = friday_evening();
    let f = Fixture::new("panic", 50, now);
    let source = PanickyOnce {
        calls: AtomicUsize::new(0),
        inner: StaticInstruments(vec![BackfillInstrument::parse(INFY).expect("i")]),
    };
    let handle = backfill::spawn(
        f.settings("engine-a", now, 50, 60),
        Arc::new(source),
        f.tx.clone(),
        f.shutdown.clone(),
    )
    .expect("spawn");
    handle.submit(start(BackfillParams {
        days: Some(1),
        ..Default::default()
    }));
    let failed = f.wait_state("failed", Duration::from_secs(10));
    assert_eq!(failed["reasonCode"], "BACKFILL_PANIC");
    assert!(failed["reason"]
        .as_str()
        .is_some_and(|r| r.contains("instrument master exploded")));
    assert!(!handle.is_backfilling());
    assert!(!f.lock_held());
    handle.submit(start(BackfillParams {
        days: Some(1),
        ..Default::default()
    }));
    let done = f.wait_state("completed", Duration::from_secs(30));
    assert_eq!(done["progress"]["candlesDone"], 375);
    f.shutdown.trigger();
    handle.join();
}

#[test]
fn automatic_backfill_runs_once_at_start_up_after_a_missed_close() {
    // Saturday morning: Friday's close was never backfilled.
    let now = ist(2026, 11, 28, 10, 0);
    let f = Fixture::new("auto", 50, now);
    let mut s = f.settings("engine-a", now, 50, 60);
    s.auto = true;
    s.auto_delay = Duration::ZERO;
    s.days = 1;
    let events = Events::subscribe(&Keys::namespaced(&f.ns).events);
    let handle = f.spawn(s, &[INFY]);
    let done = f.wait_state("completed", Duration::from_secs(30));
    assert_eq!(done["trigger"], "auto-startup");
    assert_eq!(done["days"], serde_json::json!(["2026-11-27"]));
    let marker: Option<i64> = redis::cmd("GET")
        .arg(format!("{}:backfill:last_close", f.ns))
        .query(&mut f.redis())
        .expect("get");
    assert_eq!(marker, Some(ist(2026, 11, 27, 15, 30)));
    std::thread::sleep(Duration::from_millis(2500));
    assert_eq!(events.with("started").len(), 1, "once per close");
    assert_eq!(f.candles(375, Duration::from_secs(2)).len(), 375);
    f.shutdown.trigger();
    handle.join();
}

#[test]
fn bad_credentials_are_reported_not_retried_forever() {
    let now = friday_evening();
    let f = Fixture::new("auth", 50, now);
    let mut s = f.settings("engine-a", now, 50, 1);
    s.kite = s.kite.map(|k| VendorEndpoint {
        token: Secret::new("wrong_token_value"),
        ..k
    });
    let handle = f.spawn(s, &[INFY, SBIN_KITE]);
    handle.submit(start(BackfillParams {
        days: Some(3),
        ..Default::default()
    }));
    let failed = f.wait_state("failed", Duration::from_secs(10));
    assert!(
        failed["errors"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["code"] == "BACKFILL_AUTH")),
        "{failed}"
    );
    assert_eq!(
        f.sim.stats().auth_failed,
        1,
        "one 403, then the vendor is skipped"
    );
    assert!(
        !failed.to_string().contains("wrong_token_value"),
        "no credential in the status"
    );
    f.shutdown.trigger();
    handle.join();
}
