//! The generic JSON WebSocket feed against the simulator's JSON vendor, configured the way the
//! engine is: `JSON_FEED_*` variables through `Config`, symbols through `SUBSCRIBE`, over real
//! sockets on 127.0.0.1 (port 0, every wait bounded).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;
use common::wait_until as wait_for;

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use layer1::{
    config::{Config, ConfigError},
    feed::{json::JsonConnector, spawn_feed_thread, FeedSettings, FeedSpec},
    instruments, parsers,
    pipeline::Pipeline,
    producer::{self, Outbound},
    sim::{
        json::{self, SIM_JSON_MAP},
        Fault, SimConfig, Simulator, Target,
    },
    subscribe,
    tick::{Exchange, Fields, Tick},
    validate::ValidationLimits,
    vendor::Vendor,
};

fn config(vars: &[(&str, String)]) -> Result<Config, ConfigError> {
    let m: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    Config::from_lookup(&move |k: &str| m.get(k).cloned())
}

#[derive(Default)]
struct Seen {
    ticks: HashMap<String, Vec<Tick>>,
    rejects: Vec<&'static str>,
}

fn drain(rx: &mut producer::Intake, d: Duration) -> Seen {
    let mut s = Seen::default();
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(Outbound::Tick(t)) => {
                let name = instruments::names::name_of(t.instrument_id)
                    .unwrap_or("?")
                    .to_owned();
                s.ticks.entry(name).or_default().push(t);
            }
            Ok(Outbound::Reject(r)) => s.rejects.push(r.code),
            _ => {}
        }
    }
    s
}

#[test]
fn json_feed_from_config_subscribes_maps_reconnects_and_rejects_malformed() {
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 400,
        heartbeat_ms: 100,
        ..SimConfig::default()
    })
    .unwrap();
    let cfg = config(
        &[
            json::engine_env(sim.json_url(), &SimConfig::default()),
            vec![("SUBSCRIBE", "NSE:INFY, NSE:NIFTY 50@ltp".into())],
        ]
        .concat(),
    )
    .unwrap();
    let j = cfg.vendors.json.clone().expect("JSON feed configured");
    assert!(
        !format!("{j:?}").contains("sim_json_key"),
        "the auth value never prints"
    );
    parsers::json::install(Arc::clone(&j.mapping));
    // Symbols resolve the way start_feeds resolves them.
    let master = layer1::feed::json::symbol_master(&cfg.subscribe);
    let masters = HashMap::from([(Vendor::Json, master)]);
    let mut plan = subscribe::plan(&cfg.subscribe, &masters, &[Vendor::Json], None);
    assert!(plan.unresolved.is_empty(), "{:?}", plan.unresolved);
    let routing = Arc::new(plan.routing.build(5000, 0));
    let (tx, mut rx) = producer::queue(1 << 16);
    let pipeline = Pipeline::new(tx, ValidationLimits::default(), false).with_routing(routing);
    let spec = FeedSpec {
        connector: Box::new(JsonConnector::from_config(&j)),
        instruments: plan.per_vendor.remove(&Vendor::Json).unwrap(),
        ages: None,
    };
    let settings = FeedSettings {
        stale_ms: 300,
        heartbeat_ms: 100,
        backoff_base_ms: 20,
        backoff_cap_ms: 200,
        connect_timeout_ms: 2000,
        jitter_seed: Some(7),
        ..FeedSettings::default()
    };
    let feed = spawn_feed_thread(settings, vec![spec], pipeline, None).unwrap();

    let got = drain(&mut rx, Duration::from_millis(1500));
    assert!(got.rejects.is_empty(), "{:?}", got.rejects);
    let now_ms = layer1::clock::now_unix_ms() as i64;
    for sym in ["NSE:INFY", "NSE:NIFTY 50"] {
        let ts = got
            .ticks
            .get(sym)
            .unwrap_or_else(|| panic!("{sym}: {:?}", got.ticks.keys()));
        let t = ts.last().unwrap();
        assert_eq!(t.vendor, Vendor::Json);
        assert_eq!(t.exchange, Exchange::Nse);
        assert_eq!(t.token.as_str(), sym.split_once(':').unwrap().1);
        assert!(t.ltp > 0.0 && t.has(Fields::LTP));
        // close arrives in paise and is scaled by *0.01; times are epoch ms.
        assert!(t.has(Fields::CLOSE) && t.close > 0.0);
        assert_eq!((t.close * 100.0).round() / 100.0, t.close);
        assert!((t.exchange_time_ms - now_ms).abs() < 60_000, "{t:?}");
        assert!(t.has(Fields::OPEN | Fields::HIGH | Fields::LOW));
    }
    let infy = got.ticks["NSE:INFY"].last().unwrap();
    assert!(infy.has(Fields::VOLUME) && infy.volume > 0.0);
    let st = sim.stats().unwrap();
    let first = st
        .connections
        .iter()
        .find(|c| c.vendor == Vendor::Json)
        .unwrap();
    let mut keys = first.requests[0].instruments.clone();
    keys.sort();
    assert_eq!(
        keys,
        ["INFY", "NIFTY 50"],
        "the template carried the symbols"
    );

    // Drop: the feed reconnects (auth header again) and resubscribes both symbols.
    sim.inject(Fault::Drop(Target::all(Vendor::Json))).unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let st = sim.stats().unwrap();
            let c: Vec<_> = st
                .connections
                .iter()
                .filter(|c| c.vendor == Vendor::Json)
                .collect();
            c.len() >= 2 && c.last().is_some_and(|c| c.open && c.subscribed == 2)
        }),
        "reconnected and resubscribed"
    );
    let _ = drain(&mut rx, Duration::from_millis(100));
    let after = drain(&mut rx, Duration::from_millis(800));
    assert!(
        after.ticks.contains_key("NSE:INFY"),
        "{:?}",
        after.ticks.keys()
    );

    // A mistyped price and a cut frame are rejected with their reasons; ticks go on.
    sim.inject(Fault::Malformed(Target::all(Vendor::Json)))
        .unwrap();
    sim.inject(Fault::Truncated(Target::all(Vendor::Json)))
        .unwrap();
    let bad = drain(&mut rx, Duration::from_millis(800));
    assert!(
        bad.rejects.contains(&"PARSE_JSON_BAD_FIELD"),
        "{:?}",
        bad.rejects
    );
    assert!(
        bad.rejects.contains(&"PARSE_JSON_SYNTAX"),
        "{:?}",
        bad.rejects
    );
    assert!(bad.ticks.contains_key("NSE:INFY"));
    let p = feed.shutdown(Duration::from_secs(5)).unwrap();
    assert_eq!(p.counts().rejects, 2);
}

#[test]
fn json_feed_config_errors_name_the_variable() {
    let base = |map: &str| {
        config(&[
            ("JSON_FEED_URL", "ws://127.0.0.1:1/feed".into()),
            ("JSON_FEED_MAP", map.into()),
        ])
    };
    assert!(base("token=symbol,ltp=last_price").is_ok());
    for bad in [
        "ltp=last_price",
        "token=symbol,ltp=p,nope=x",
        "token=s,ltp=p*abc",
    ] {
        let e = base(bad).unwrap_err().to_string();
        assert!(e.contains("JSON_FEED_MAP"), "{bad}: {e}");
    }
    let e = config(&[
        ("JSON_FEED_URL", "ws://127.0.0.1:1/feed".into()),
        ("JSON_FEED_MAP", "token=s,ltp=p".into()),
        ("JSON_FEED_SUBSCRIBE", r#"{"sub":1}"#.into()),
    ])
    .unwrap_err()
    .to_string();
    assert!(e.contains("JSON_FEED_SUBSCRIBE"), "{e}");
    // Unset URL: no JSON feed.
    assert!(config(&[]).unwrap().vendors.json.is_none());
}

#[test]
fn json_feed_is_a_failover_standby_and_primary() {
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 400,
        heartbeat_ms: 100,
        ..SimConfig::default()
    })
    .unwrap();
    let json_vars = |order: &str, standby: &str| {
        config(
            &[
                json::engine_env(sim.json_url(), &SimConfig::default()),
                vec![
                    ("SUBSCRIBE", "NSE:INFY".into()),
                    ("VENDOR_ORDER", order.into()),
                    ("STANDBY_VENDOR", standby.into()),
                ],
            ]
            .concat(),
        )
    };
    // `json` is a vendor name in both variables.
    let cfg = json_vars("kite,json", "json").unwrap();
    assert_eq!(cfg.vendors.order, vec![Vendor::Kite, Vendor::Json]);
    assert_eq!(cfg.vendors.standby, Some(Vendor::Json));
    let primary_json = json_vars("json,kite", "kite").unwrap();
    assert_eq!(primary_json.vendors.order, vec![Vendor::Json, Vendor::Kite]);
    let e = json_vars("kite,bogus", "").unwrap_err().to_string();
    assert!(e.contains("VENDOR_ORDER") && e.contains("json"), "{e}");

    let j = cfg.vendors.json.clone().unwrap();
    parsers::json::install(Arc::clone(&j.mapping));
    let kite_list = layer1::sim::vendors::instrument_list(Vendor::Kite).unwrap();
    let masters = HashMap::from([
        (
            Vendor::Kite,
            instruments::formats::parse(Vendor::Kite, kite_list.as_bytes()).unwrap(),
        ),
        (
            Vendor::Json,
            layer1::feed::json::symbol_master(&cfg.subscribe),
        ),
    ]);

    // JSON as the primary: it lists every EXCHANGE:SYMBOL, Kite stands by.
    let p = subscribe::plan(
        &cfg.subscribe,
        &masters,
        &primary_json.vendors.order,
        primary_json.vendors.standby,
    );
    assert!(p.unresolved.is_empty(), "{:?}", p.unresolved);
    let r = p.routing.build(300, layer1::clock::now_unix_ns());
    let infy = instruments::names::intern("NSE:INFY").unwrap();
    assert_eq!(r.active(infy), Some(Vendor::Json), "json is the primary");

    // JSON as the standby of Kite, running against the simulator.
    let mut plan = subscribe::plan(
        &cfg.subscribe,
        &masters,
        &cfg.vendors.order,
        cfg.vendors.standby,
    );
    assert!(plan.unresolved.is_empty(), "{:?}", plan.unresolved);
    // The routing's stale bound (500 ms) is well below the stall (2 s) and the connection
    // watchdog's (5 s), so the switch is the routing's doing, not a reconnect's.
    let routing = Arc::new(plan.routing.build(500, layer1::clock::now_unix_ns()));
    assert_eq!(
        routing.active(infy),
        Some(Vendor::Kite),
        "kite is the primary"
    );
    let (tx, mut rx) = producer::queue(1 << 16);
    let pipeline =
        Pipeline::new(tx, ValidationLimits::default(), false).with_routing(Arc::clone(&routing));
    let kite = FeedSpec {
        connector: Box::new(layer1::feed::kite::KiteConnector::new(
            layer1::feed::kite::KiteSettings {
                base_url: sim.kite_url(),
                api_key: layer1::feed::Credential::Value("sim_api_key".into()),
                access_token: layer1::feed::Credential::Value("sim_access_token".into()),
                ..layer1::feed::kite::KiteSettings::default()
            },
        )),
        instruments: plan.per_vendor.remove(&Vendor::Kite).unwrap(),
        ages: None,
    };
    let json = FeedSpec {
        connector: Box::new(JsonConnector::from_config(&j)),
        instruments: plan.per_vendor.remove(&Vendor::Json).unwrap(),
        ages: None,
    };
    let settings = FeedSettings {
        stale_ms: 5000,
        heartbeat_ms: 100,
        backoff_base_ms: 20,
        backoff_cap_ms: 200,
        connect_timeout_ms: 2000,
        jitter_seed: Some(11),
        ..FeedSettings::default()
    };
    let feed = spawn_feed_thread(settings, vec![kite, json], pipeline, None).unwrap();
    let vendors = |s: &Seen| -> Vec<Vendor> {
        let mut v: Vec<Vendor> = s
            .ticks
            .get("NSE:INFY")
            .map(|ts| ts.iter().map(|t| t.vendor).collect())
            .unwrap_or_default();
        v.dedup();
        v
    };
    // Both feeds stream; only Kite's ticks are produced.
    assert!(wait_for(Duration::from_secs(5), || {
        routing
            .stats
            .suppressed
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    }));
    let _ = drain(&mut rx, Duration::from_millis(100));
    let before = drain(&mut rx, Duration::from_millis(600));
    assert_eq!(vendors(&before), vec![Vendor::Kite], "primary only");
    // Kite goes silent: the JSON feed's ticks take over within the stale bound.
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Kite),
        ms: 2000,
    })
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || routing.active(infy)
            == Some(Vendor::Json)),
        "switched to the json standby"
    );
    let during = drain(&mut rx, Duration::from_millis(500));
    assert!(
        vendors(&during).contains(&Vendor::Json),
        "{:?}",
        vendors(&during)
    );
    // Kite's stall ends: its first tick makes it active again.
    assert!(
        wait_for(Duration::from_secs(10), || routing.active(infy)
            == Some(Vendor::Kite)),
        "switched back to kite"
    );
    let _ = drain(&mut rx, Duration::from_millis(100));
    let after = drain(&mut rx, Duration::from_millis(600));
    assert_eq!(vendors(&after), vec![Vendor::Kite], "primary only again");
    assert!(
        routing
            .stats
            .switches
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    feed.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn layer1_decode_reads_a_json_capture_with_the_configured_mapping() {
    use layer1::{
        capture::{CaptureWriter, Record},
        decode::{self, DecodeOptions},
    };
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 200,
        heartbeat_ms: 100,
        ..SimConfig::default()
    })
    .unwrap();
    let cfg = config(
        &[
            json::engine_env(sim.json_url(), &SimConfig::default()),
            vec![("SUBSCRIBE", "NSE:INFY, NSE:NIFTY 50".into())],
        ]
        .concat(),
    )
    .unwrap();
    let j = cfg.vendors.json.clone().unwrap();
    parsers::json::install(Arc::clone(&j.mapping));
    let master = layer1::feed::json::symbol_master(&cfg.subscribe);
    let mut plan = subscribe::plan(
        &cfg.subscribe,
        &HashMap::from([(Vendor::Json, master)]),
        &[Vendor::Json],
        None,
    );
    // Raw frames on: what the engine writes to market.raw and capture files.
    let (tx, mut rx) = producer::queue(1 << 16);
    let spec = FeedSpec {
        connector: Box::new(JsonConnector::from_config(&j)),
        instruments: plan.per_vendor.remove(&Vendor::Json).unwrap(),
        ages: None,
    };
    let feed = spawn_feed_thread(
        FeedSettings {
            heartbeat_ms: 100,
            jitter_seed: Some(5),
            ..FeedSettings::default()
        },
        vec![spec],
        Pipeline::new(tx, ValidationLimits::default(), true),
        None,
    )
    .unwrap();
    assert!(wait_for(Duration::from_secs(5), || rx.len() > 200));
    feed.shutdown(Duration::from_secs(5)).unwrap();
    // The capture of every frame the simulator sent, and the ticks the engine produced of them.
    let mut w = CaptureWriter::new(Vec::new()).unwrap();
    let mut produced: Vec<f64> = Vec::new();
    let mut frames = 0;
    while let Ok(item) = rx.try_recv() {
        match item {
            Outbound::Raw(f) => {
                frames += 1;
                w.write_record(
                    &Record {
                        received_at_ns: f.received_at_ns,
                        vendor: f.vendor,
                        kind: f.kind,
                        conn_id: f.conn_id,
                    },
                    &f.payload,
                )
                .unwrap();
            }
            Outbound::Tick(t) => produced.push(t.ltp),
            _ => {}
        }
    }
    assert!(frames > 0 && !produced.is_empty());
    let cap = w.into_inner();
    let dir = std::env::temp_dir().join(format!("layer1-json-decode-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("json.l1cap");
    std::fs::write(&path, &cap).unwrap();

    // In process: the mapping from the same configuration variables the engine reads.
    let vars: HashMap<&str, String> = HashMap::from([("JSON_FEED_MAP", SIM_JSON_MAP.to_owned())]);
    let mapping = decode::json_mapping(None, None, &|k| vars.get(k).cloned())
        .unwrap()
        .expect("mapping from JSON_FEED_MAP");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let s = decode::decode_from_with(
        &cap[..],
        &DecodeOptions {
            json_mapping: Some(mapping),
        },
        &mut out,
        &mut err,
    )
    .unwrap();
    assert_eq!(
        s.parse_error_count(),
        0,
        "{}",
        String::from_utf8_lossy(&err)
    );
    let lines: Vec<serde_json::Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let decoded: Vec<f64> = lines.iter().map(|l| l["ltp"].as_f64().unwrap()).collect();
    assert_eq!(
        decoded, produced,
        "decode prints the ticks the engine produced"
    );
    assert!(lines.iter().all(|l| l["vendor"] == "json"));
    assert!(
        lines
            .iter()
            .any(|l| l["close"].as_f64().is_some_and(|c| c > 0.0)),
        "mapped and scaled fields present: {:?}",
        lines.first()
    );
    assert!(decode::json_mapping(Some("ltp=x"), None, &|_| None).is_err());
    assert!(decode::json_mapping(None, None, &|_| None)
        .unwrap()
        .is_none());

    // The binary: --json-map, JSON_FEED_MAP from the environment, and neither.
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_layer1"));
        cmd.arg("decode")
            .arg(&path)
            .args(args)
            .current_dir(&dir)
            .env_remove("JSON_FEED_MAP")
            .env_remove("JSON_FEED_EXCHANGE");
        if let Some(m) = env {
            cmd.env("JSON_FEED_MAP", m);
        }
        cmd.output().unwrap()
    };
    let count = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).lines().count();
    let with_option = run(
        &["--json-map", SIM_JSON_MAP, "--json-exchange", "NSE"],
        None,
    );
    assert!(with_option.status.success(), "{with_option:?}");
    assert_eq!(count(&with_option), produced.len());
    let with_env = run(&[], Some(SIM_JSON_MAP));
    assert!(with_env.status.success());
    assert_eq!(with_env.stdout, with_option.stdout);
    let without = run(&[], None);
    assert!(without.status.success());
    assert_eq!(count(&without), 0);
    let e = String::from_utf8_lossy(&without.stderr);
    assert!(
        e.contains("PARSE_JSON_NOT_CONFIGURED") && e.contains("--json-map"),
        "{e}"
    );
    let bad = run(&["--json-map", "ltp=last_price"], None);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("JSON_MAP_REQUIRED"));
    std::fs::remove_dir_all(&dir).unwrap();
}
