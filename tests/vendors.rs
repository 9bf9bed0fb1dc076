//! Kite, Upstox, Angel One and Dhan connectors subscribing by symbol, the instrument master and
//! its daily refresh in a running feed, failover and token rollover, against the vendor simulator over real sockets on 127.0.0.1 (port 0 everywhere, every wait bounded).

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
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use layer1::{
    feed::{
        angel::{AngelConnector, AngelSettings},
        dhan::{DhanConnector, DhanSettings},
        kite::{KiteConnector, KiteSettings},
        spawn_feed_thread,
        upstox::{UpstoxConnector, UpstoxSettings},
        Connector, Credential, FeedSettings, FeedSpec,
    },
    instruments::{self, LoadedFrom, MasterSource, VendorMaster},
    pipeline::Pipeline,
    producer::{self, Outbound},
    routing::Routing,
    sim::{Fault, SimConfig, SimHandle, Simulator, Target},
    subscribe,
    validate::ValidationLimits,
    vendor::Vendor,
};

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("layer1-vendors-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn settings() -> FeedSettings {
    FeedSettings {
        stale_ms: 300,
        heartbeat_ms: 100,
        backoff_base_ms: 20,
        backoff_cap_ms: 200,
        connect_timeout_ms: 2000,
        jitter_seed: Some(7),
        ..FeedSettings::default()
    }
}

fn sim() -> SimHandle {
    Simulator::start(SimConfig {
        ticks_per_sec: 400,
        heartbeat_ms: 100,
        ..SimConfig::default()
    })
    .unwrap()
}

fn masters(
    sim: &SimHandle,
    dir: &std::path::Path,
    vendors: &[Vendor],
) -> HashMap<Vendor, VendorMaster> {
    vendors
        .iter()
        .map(|&v| {
            let src = MasterSource {
                vendor: v,
                location: sim.instruments_url(v),
                cache_dir: dir.to_path_buf(),
                timeout: Duration::from_secs(5),
            };
            (v, instruments::load(&src, 1_732_700_000).unwrap().0)
        })
        .collect()
}

fn connector(v: Vendor, sim: &SimHandle, token: Credential) -> Box<dyn Connector> {
    match v {
        Vendor::Angel => Box::new(AngelConnector::new(AngelSettings {
            url: sim.angel_url(),
            api_key: Credential::Value("sim_angel_key".into()),
            client_code: Credential::Value("SIM1".into()),
            jwt: token,
            feed_token: Credential::Value("sim_angel_feed".into()),
            ..AngelSettings::default()
        })),
        Vendor::Dhan => Box::new(DhanConnector::new(DhanSettings {
            url: sim.dhan_url(),
            client_id: Credential::Value("1000000001".into()),
            access_token: token,
            ..DhanSettings::default()
        })),
        Vendor::Upstox => Box::new(UpstoxConnector::new(UpstoxSettings {
            authorize_url: sim.upstox_authorize_url(),
            access_token: token,
            ..UpstoxSettings::default()
        })),
        _ => Box::new(KiteConnector::new(KiteSettings {
            base_url: sim.kite_url(),
            api_key: Credential::Value("sim_api_key".into()),
            access_token: token,
            ..KiteSettings::default()
        })),
    }
}

fn default_token(v: Vendor) -> Credential {
    Credential::Value(
        match v {
            Vendor::Angel => "sim_angel_jwt",
            Vendor::Dhan => "sim_dhan_token",
            Vendor::Upstox => "sim_upstox_token",
            _ => "sim_access_token",
        }
        .into(),
    )
}

/// Drains ticks from the hand-over queue for `d`, counting (vendor, instrument name) pairs.
fn drain(rx: &mut producer::Intake, d: Duration) -> HashMap<(Vendor, String), u64> {
    let mut out = HashMap::new();
    let end = Instant::now() + d;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        if let Ok(Outbound::Tick(t)) = rx.recv_timeout(left) {
            let name = instruments::names::name_of(t.instrument_id)
                .unwrap_or("?")
                .to_owned();
            *out.entry((t.vendor, name)).or_default() += 1;
        }
    }
    out
}

#[test]
fn angel_and_dhan_subscribe_by_symbol_receive_reconnect_and_resubscribe() {
    let sim = sim();
    let dir = tmpdir("connect");
    let m = masters(&sim, &dir, &[Vendor::Angel, Vendor::Dhan]);
    let entries: Vec<String> = [
        "NSE:INFY",
        "NSE:NIFTY 50@ltp",
        "NFO:BANKNIFTY25DECFUT@quote",
        "NSE:UNKNOWN1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for v in [Vendor::Angel, Vendor::Dhan] {
        let mut plan = subscribe::plan(&entries, &m, &[v], None);
        assert_eq!(
            plan.unresolved,
            vec!["NSE:UNKNOWN1"],
            "{v}: unknown symbol reported by name"
        );
        let routing: Arc<Routing> = Arc::new(plan.routing.build(5000, 0));
        let (tx, mut rx) = producer::queue(1 << 16);
        let pipeline = Pipeline::new(tx, ValidationLimits::default(), false).with_routing(routing);
        let spec = FeedSpec {
            connector: connector(v, &sim, default_token(v)),
            instruments: plan.per_vendor.remove(&v).unwrap(),
            ages: None,
        };
        let feed = spawn_feed_thread(settings(), vec![spec], pipeline, None).unwrap();
        let got = drain(&mut rx, Duration::from_millis(1500));
        for sym in ["NSE:INFY", "NSE:NIFTY 50", "NFO:BANKNIFTY25DECFUT"] {
            assert!(
                got.get(&(v, sym.to_owned())).copied().unwrap_or(0) > 0,
                "{v} {sym}: {got:?}"
            );
        }
        // Drop the connection: the feed reconnects and resubscribes all three.
        sim.inject(Fault::Drop(Target::all(v))).unwrap();
        assert!(
            wait_for(Duration::from_secs(5), || {
                let st = sim.stats().unwrap();
                let conns: Vec<_> = st.connections.iter().filter(|c| c.vendor == v).collect();
                conns.len() >= 2 && conns.last().is_some_and(|c| c.open && c.subscribed == 3)
            }),
            "{v}: reconnected and resubscribed"
        );
        let _ = drain(&mut rx, Duration::from_millis(100));
        let after = drain(&mut rx, Duration::from_millis(800));
        assert!(
            after.get(&(v, "NSE:INFY".to_owned())).copied().unwrap_or(0) > 0,
            "{v} after: {after:?}"
        );
        let st = sim.stats().unwrap();
        let last = st.connections.iter().rev().find(|c| c.vendor == v).unwrap();
        let mut keys: Vec<&String> = last.requests.iter().flat_map(|r| &r.instruments).collect();
        keys.sort();
        let want: Vec<String> = match v {
            Vendor::Angel => vec!["1|1594".into(), "1|99926000".into(), "2|52175".into()],
            _ => vec![
                "IDX_I|13".into(),
                "NSE_EQ|1594".into(),
                "NSE_FNO|52175".into(),
            ],
        };
        assert_eq!(keys, want.iter().collect::<Vec<_>>());
        let p = feed.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(p.counts().rejects, 0, "{v}: simulator frames all parse");
    }
}

#[test]
fn kite_and_upstox_subscribe_by_symbol_receive_reconnect_and_resubscribe() {
    let sim = sim();
    let dir = tmpdir("connect-ku");
    let m = masters(&sim, &dir, &[Vendor::Kite, Vendor::Upstox]);
    let entries: Vec<String> = [
        "NSE:INFY",
        "NSE:NIFTY 50@ltp",
        "NFO:BANKNIFTY25DECFUT@quote",
        "NSE:UNKNOWN1",
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    for v in [Vendor::Kite, Vendor::Upstox] {
        let mut plan = subscribe::plan(&entries, &m, &[v], None);
        assert_eq!(
            plan.unresolved,
            vec!["NSE:UNKNOWN1"],
            "{v}: unknown symbol reported by name"
        );
        let routing: Arc<Routing> = Arc::new(plan.routing.build(5000, 0));
        let (tx, mut rx) = producer::queue(1 << 16);
        let pipeline = Pipeline::new(tx, ValidationLimits::default(), false).with_routing(routing);
        let spec = FeedSpec {
            connector: connector(v, &sim, default_token(v)),
            instruments: plan.per_vendor.remove(&v).unwrap(),
            ages: None,
        };
        let feed = spawn_feed_thread(settings(), vec![spec], pipeline, None).unwrap();
        let got = drain(&mut rx, Duration::from_millis(1500));
        for sym in ["NSE:INFY", "NSE:NIFTY 50", "NFO:BANKNIFTY25DECFUT"] {
            assert!(
                got.get(&(v, sym.to_owned())).copied().unwrap_or(0) > 0,
                "{v} {sym}: ticks carry the canonical name: {got:?}"
            );
        }
        // Drop the connection: the feed reconnects (Upstox: a fresh authorize call and
        // one-time URL) and resubscribes all three.
        let authorize_before = sim.stats().unwrap().authorize_calls;
        sim.inject(Fault::Drop(Target::all(v))).unwrap();
        assert!(
            wait_for(Duration::from_secs(5), || {
                let st = sim.stats().unwrap();
                let conns: Vec<_> = st.connections.iter().filter(|c| c.vendor == v).collect();
                conns.len() >= 2 && conns.last().is_some_and(|c| c.open && c.subscribed == 3)
            }),
            "{v}: reconnected and resubscribed"
        );
        if v == Vendor::Upstox {
            assert!(
                sim.stats().unwrap().authorize_calls > authorize_before,
                "a new one-time URL per reconnect"
            );
        }
        let _ = drain(&mut rx, Duration::from_millis(100));
        let after = drain(&mut rx, Duration::from_millis(800));
        for sym in ["NSE:INFY", "NSE:NIFTY 50", "NFO:BANKNIFTY25DECFUT"] {
            assert!(
                after.get(&(v, sym.to_owned())).copied().unwrap_or(0) > 0,
                "{v} {sym} after: {after:?}"
            );
        }
        let st = sim.stats().unwrap();
        let last = st.connections.iter().rev().find(|c| c.vendor == v).unwrap();
        let mut keys: Vec<&String> = last.requests.iter().flat_map(|r| &r.instruments).collect();
        keys.sort();
        keys.dedup();
        let want: Vec<String> = match v {
            Vendor::Kite => {
                let mut w = vec![
                    "408065".to_owned(),
                    "256265".to_owned(),
                    "13357058".to_owned(),
                ];
                w.sort();
                w
            }
            _ => vec![
                "NSE_EQ|INE009A01021".into(),
                "NSE_FO|52175".into(),
                "NSE_INDEX|Nifty 50".into(),
            ],
        };
        assert_eq!(keys, want.iter().collect::<Vec<_>>(), "{v}");
        let p = feed.shutdown(Duration::from_secs(5)).unwrap();
        assert_eq!(p.counts().rejects, 0, "{v}: simulator frames all parse");
    }
}

#[test]
fn instrument_master_caches_reuses_offline_and_refreshes_daily() {
    let sim = sim();
    let dir = tmpdir("master");
    let day = 1_732_665_600u64; // 2024-11-27 00:00 UTC
    let mut src = MasterSource {
        vendor: Vendor::Kite,
        location: sim.instruments_url(Vendor::Kite),
        cache_dir: dir.clone(),
        timeout: Duration::from_secs(5),
    };
    let calls = || sim.stats().unwrap().authorize_calls;
    let (m, from) = instruments::load(&src, day + 10_000).unwrap();
    assert_eq!(from, LoadedFrom::Fetched);
    assert_eq!(m.resolve("NSE:INFY").unwrap().token, 408_065);
    assert_eq!(m.symbol_of("256265"), Some("NSE:NIFTY 50"));
    let n = calls();
    // Same day after the mark: the cache serves, nothing is fetched.
    let (_, from) = instruments::load(&src, day + 50_000).unwrap();
    assert_eq!((from, calls()), (LoadedFrom::Cache, n));
    // Next day after 08:00 IST: refreshed.
    let (_, from) = instruments::load(&src, day + 86_400 + 9_100).unwrap();
    assert_eq!(from, LoadedFrom::Fetched);
    assert_eq!(calls(), n + 1);
    // Offline the day after: the stale cache is reused.
    src.location = "http://127.0.0.1:1/instruments/kite".into();
    let (m, from) = instruments::load(&src, day + 2 * 86_400 + 9_100).unwrap();
    assert_eq!(from, LoadedFrom::StaleCache);
    assert!(m.resolve("NFO:BANKNIFTY25DECFUT").is_some());
    // No cache and offline: a typed error.
    src.cache_dir = tmpdir("master-empty");
    assert!(instruments::load(&src, day).is_err());
}

/// Forwards what several feed threads' queues carry into one, until every feed is gone or the
/// reader is.
fn merge(mut from: Vec<producer::Intake>, to: &producer::Handover) {
    loop {
        let (mut moved, mut open) = (false, false);
        for q in &mut from {
            loop {
                match q.try_recv() {
                    Ok(item) => {
                        moved = true;
                        if to.send(item).is_err() {
                            return;
                        }
                    }
                    Err(crossbeam_channel::TryRecvError::Empty) => {
                        open = true;
                        break;
                    }
                    Err(crossbeam_channel::TryRecvError::Disconnected) => break,
                }
            }
        }
        if !open {
            return;
        }
        if !moved {
            std::thread::sleep(Duration::from_micros(200));
        }
    }
}

#[test]
fn failover_switches_to_standby_when_primary_stalls_and_back() {
    let sim = sim();
    let dir = tmpdir("failover");
    let m = masters(&sim, &dir, &[Vendor::Kite, Vendor::Dhan]);
    let entries = vec!["NSE:INFY".to_owned(), "NSE:SBIN".to_owned()];
    let mut plan = subscribe::plan(
        &entries,
        &m,
        &[Vendor::Kite, Vendor::Dhan],
        Some(Vendor::Dhan),
    );
    assert!(plan.unresolved.is_empty());
    let stale_ms = 300;
    let routing = Arc::new(plan.routing.build(stale_ms, layer1::clock::now_unix_ns()));
    // Two feed threads (one per vendor), one shared routing table; each has its own hand-over
    // queue (a tick's items come from one thread), read as one, as the producer thread does.
    let (merged, mut rx) = producer::queue(1 << 16);
    let mut intakes = Vec::new();
    let mut feeds = Vec::new();
    for (i, v) in [Vendor::Kite, Vendor::Dhan].into_iter().enumerate() {
        let (tx, intake) = producer::queue(1 << 16);
        intakes.push(intake);
        let pipeline = Pipeline::new(tx, ValidationLimits::default(), false)
            .with_routing(Arc::clone(&routing));
        let spec = FeedSpec {
            connector: connector(v, &sim, default_token(v)),
            instruments: plan.per_vendor.remove(&v).unwrap(),
            ages: None,
        };
        let s = FeedSettings {
            name: format!("feed-{i}"),
            thread_index: i as u8,
            // Long watchdog: the stall must look like stale data, not a dead socket.
            stale_ms: 10_000,
            ..settings()
        };
        feeds.push(spawn_feed_thread(s, vec![spec], pipeline, None).unwrap());
    }
    std::thread::spawn(move || merge(intakes, &merged));
    let infy = "NSE:INFY".to_owned();
    let steady = drain(&mut rx, Duration::from_millis(1000));
    assert!(
        steady
            .get(&(Vendor::Kite, infy.clone()))
            .copied()
            .unwrap_or(0)
            > 0,
        "{steady:?}"
    );
    assert_eq!(
        steady.get(&(Vendor::Dhan, infy.clone())),
        None,
        "standby suppressed: {steady:?}"
    );
    assert!(
        routing
            .stats
            .suppressed
            .load(std::sync::atomic::Ordering::Relaxed)
            > 0
    );
    // Stall the primary (socket open, nothing sent) for 2 s.
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Kite),
        ms: 2000,
    })
    .unwrap();
    let t0 = Instant::now();
    let mut first_standby = None;
    while t0.elapsed() < Duration::from_millis(1500) {
        if let Ok(Outbound::Tick(t)) = rx.recv_timeout(Duration::from_millis(50)) {
            if t.vendor == Vendor::Dhan && first_standby.is_none() {
                first_standby = Some(t0.elapsed());
            }
        }
    }
    let took = first_standby.expect("standby ticks flow while the primary is stalled");
    assert!(
        took < Duration::from_millis(stale_ms + 400),
        "within the stale bound: {took:?}"
    );
    let during = drain(&mut rx, Duration::from_millis(300));
    assert_eq!(
        during.get(&(Vendor::Kite, infy.clone())),
        None,
        "{during:?}"
    );
    assert!(
        during
            .get(&(Vendor::Dhan, infy.clone()))
            .copied()
            .unwrap_or(0)
            > 0
    );
    // The stall ends: the primary's ticks switch back, the standby is suppressed again.
    std::thread::sleep(Duration::from_millis(500));
    let _ = drain(&mut rx, Duration::from_millis(200));
    let back = drain(&mut rx, Duration::from_millis(600));
    assert!(
        back.get(&(Vendor::Kite, infy.clone()))
            .copied()
            .unwrap_or(0)
            > 0,
        "{back:?}"
    );
    assert_eq!(back.get(&(Vendor::Dhan, infy.clone())), None, "{back:?}");
    assert!(
        routing
            .stats
            .switches
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
    for f in feeds {
        f.shutdown(Duration::from_secs(5)).unwrap();
    }
}

#[test]
fn rewritten_token_file_is_used_on_the_next_reconnect() {
    let sim = sim();
    let dir = tmpdir("rollover");
    let file = dir.join("dhan.token");
    std::fs::write(&file, "sim_dhan_token\n").unwrap();
    let (tx, mut rx) = producer::queue(1 << 16);
    let spec = FeedSpec {
        connector: connector(Vendor::Dhan, &sim, Credential::File(file.clone())),
        instruments: vec![layer1::feed::Instrument::upstox(
            1,
            "NSE_EQ|1594",
            layer1::tick::Mode::Full,
        )],
        ages: None,
    };
    let feed = spawn_feed_thread(
        settings(),
        vec![spec],
        Pipeline::new(tx, ValidationLimits::default(), false),
        None,
    )
    .unwrap();
    assert!(!drain(&mut rx, Duration::from_millis(600)).is_empty());
    // The login job rewrites the file while connected; the vendor then expires the old token.
    std::fs::write(&file, "day2_token\n").unwrap();
    sim.inject(Fault::ExpireToken {
        vendor: Vendor::Dhan,
        new_token: "day2_token".into(),
    })
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || {
            let st = sim.stats().unwrap();
            let d: Vec<_> = st
                .connections
                .iter()
                .filter(|c| c.vendor == Vendor::Dhan)
                .collect();
            d.len() >= 2 && d.last().is_some_and(|c| c.open && c.subscribed == 1)
        }),
        "reconnected with the new token"
    );
    let _ = drain(&mut rx, Duration::from_millis(100));
    assert!(
        !drain(&mut rx, Duration::from_millis(500)).is_empty(),
        "ticks flow again"
    );
    feed.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn bad_token_backs_off_without_flooding() {
    let sim = sim();
    for v in [Vendor::Angel, Vendor::Dhan] {
        let before = sim.stats().unwrap().refused;
        let auth_before = layer1::feed::auth::failures(v);
        let (tx, _rx) = producer::queue(1024);
        let spec = FeedSpec {
            connector: connector(v, &sim, Credential::Value("wrong".into())),
            instruments: vec![layer1::feed::Instrument::upstox(
                1,
                if v == Vendor::Angel {
                    "1|1594"
                } else {
                    "NSE_EQ|1594"
                },
                layer1::tick::Mode::Ltp,
            )],
            ages: None,
        };
        let s = FeedSettings {
            backoff_base_ms: 50,
            backoff_cap_ms: 400,
            ..settings()
        };
        let feed = spawn_feed_thread(
            s,
            vec![spec],
            Pipeline::new(tx, ValidationLimits::default(), false),
            None,
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(2000));
        let stats = feed.stats().clone();
        feed.shutdown(Duration::from_secs(5)).unwrap();
        let refused = sim.stats().unwrap().refused - before;
        // Without backoff a loop would reconnect hundreds of times in 2 s; the doubling backoff
        // (50 ms base, 400 ms cap, full jitter) allows a dozen or so.
        assert!(refused >= 2, "{v}: the vendor saw the retries ({refused})");
        assert!(
            refused <= 25,
            "{v}: {refused} attempts in 2 s is a retry storm"
        );
        assert!(layer1::feed::FeedStats::get(&stats.attempts) <= 26);
        // Each refusal is reported (metric, log, health status); the state itself is process-wide
        // and other tests' feeds of the same vendor may set it back to ok concurrently.
        assert!(
            layer1::feed::auth::failures(v) > auth_before,
            "{v}: auth failure recorded"
        );
    }
}

#[test]
fn daily_refresh_in_a_running_feed_subscribes_newly_listed_symbols() {
    use layer1::instruments::refresh::{DailyRefresh, FeedHandle};
    let sim = sim();
    let dir = tmpdir("refresh");
    // The vendor's list as a local file: today's lacks NSE:TCS, tomorrow's lists it.
    let list = dir.join("kite-list.csv");
    let full = layer1::sim::vendors::instrument_list(Vendor::Kite).unwrap();
    let today: String = full
        .lines()
        .filter(|l| !l.contains(",TCS,"))
        .map(|l| format!("{l}\n"))
        .collect();
    std::fs::write(&list, &today).unwrap();
    let src = MasterSource {
        vendor: Vendor::Kite,
        location: list.display().to_string(),
        cache_dir: dir.join("cache"),
        timeout: Duration::from_secs(5),
    };
    let day = 1_732_665_600u64; // 2024-11-27 00:00 UTC; 08:00 IST is +9000 s
    let start = day + 10_000;
    let (m, _) = instruments::load(&src, start).unwrap();
    let entries = vec!["NSE:INFY".to_owned(), "NSE:TCS".to_owned()];
    let mut plan = subscribe::plan(
        &entries,
        &HashMap::from([(Vendor::Kite, m)]),
        &[Vendor::Kite],
        None,
    );
    assert_eq!(plan.unresolved, vec!["NSE:TCS"]);
    let initial = plan.per_vendor.clone();
    let routing = Arc::new(plan.routing.build(5000, 0));
    let (tx, mut rx) = producer::queue(1 << 16);
    let pipeline =
        Pipeline::new(tx, ValidationLimits::default(), false).with_routing(Arc::clone(&routing));
    let spec = FeedSpec {
        connector: connector(Vendor::Kite, &sim, default_token(Vendor::Kite)),
        instruments: plan.per_vendor.remove(&Vendor::Kite).unwrap(),
        ages: None,
    };
    let feed = spawn_feed_thread(settings(), vec![spec], pipeline, None).unwrap();
    // The injectable clock: the test hands the refresher its "now".
    let mut refresh = DailyRefresh::new(
        entries,
        vec![Vendor::Kite],
        None,
        vec![src],
        HashMap::from([(
            Vendor::Kite,
            FeedHandle {
                control: feed.control(),
                feed: 0,
            },
        )]),
        Arc::clone(&routing),
        &initial,
        start,
    );
    let tcs = (Vendor::Kite, "NSE:TCS".to_owned());
    let infy = (Vendor::Kite, "NSE:INFY".to_owned());
    let before = drain(&mut rx, Duration::from_millis(700));
    assert!(before.get(&infy).copied().unwrap_or(0) > 0, "{before:?}");
    assert_eq!(before.get(&tcs), None);
    std::fs::write(&list, &full).unwrap();
    assert!(
        refresh.tick(start + 3_600).is_none(),
        "same day: no refresh"
    );
    assert!(
        refresh.tick(day + 86_400 + 8_000).is_none(),
        "next day before 08:00 IST: no refresh"
    );
    let report = refresh
        .tick(day + 86_400 + 9_060)
        .expect("next day after 08:00 IST: refreshed");
    assert_eq!(report.subscribed, vec![(Vendor::Kite, 1)]);
    assert!(report.unresolved.is_empty() && report.failed.is_empty());
    assert!(
        wait_for(Duration::from_secs(5), || {
            let st = sim.stats().unwrap();
            st.connections
                .iter()
                .rev()
                .find(|c| c.vendor == Vendor::Kite)
                .is_some_and(|c| c.open && c.subscribed == 2)
        }),
        "the new symbol was subscribed on the open connection"
    );
    let _ = drain(&mut rx, Duration::from_millis(100));
    let after = drain(&mut rx, Duration::from_millis(800));
    assert!(
        after.get(&tcs).copied().unwrap_or(0) > 0,
        "new symbol's ticks carry its canonical name: {after:?}"
    );
    assert!(after.get(&infy).copied().unwrap_or(0) > 0);
    // Once per day; a repeated refresh subscribes nothing twice.
    assert!(refresh.tick(day + 86_400 + 40_000).is_none());
    assert!(refresh.refresh(day + 86_400 + 40_000).subscribed.is_empty());
    feed.shutdown(Duration::from_secs(5)).unwrap();
}

#[test]
fn daily_refresh_pairs_a_symbol_newly_listed_on_both_vendors() {
    use layer1::instruments::refresh::{DailyRefresh, FeedHandle};
    use std::sync::atomic::Ordering;
    let sim = sim();
    let dir = tmpdir("refresh-pair");
    // Both vendors' lists as local files: today's lack NSE:TCS, tomorrow's list it.
    let day = 1_732_665_600u64; // 2024-11-27 00:00 UTC; 08:00 IST is +9000 s
    let start = day + 10_000;
    let mut lists = Vec::new();
    let mut sources = Vec::new();
    let mut m = HashMap::new();
    for v in [Vendor::Kite, Vendor::Dhan] {
        let list = dir.join(format!("{v}-list.csv"));
        let full = layer1::sim::vendors::instrument_list(v).unwrap();
        let today: String = full
            .lines()
            .filter(|l| !l.contains(",TCS,"))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_ne!(today.len(), full.len(), "{v}: the list names TCS");
        std::fs::write(&list, &today).unwrap();
        let src = MasterSource {
            vendor: v,
            location: list.display().to_string(),
            cache_dir: dir.join("cache"),
            timeout: Duration::from_secs(5),
        };
        m.insert(v, instruments::load(&src, start).unwrap().0);
        lists.push((list, full));
        sources.push(src);
    }
    let entries = vec!["NSE:INFY".to_owned(), "NSE:TCS".to_owned()];
    let order = [Vendor::Kite, Vendor::Dhan];
    let mut plan = subscribe::plan(&entries, &m, &order, Some(Vendor::Dhan));
    assert_eq!(plan.unresolved, vec!["NSE:TCS"]);
    let initial = plan.per_vendor.clone();
    // A wide stale bound: the standby never takes over by accident while the primary streams.
    let routing = Arc::new(plan.routing.build(1000, layer1::clock::now_unix_ns()));
    let infy_id = instruments::names::intern("NSE:INFY").unwrap();
    let tcs_id = instruments::names::intern("NSE:TCS").unwrap();
    assert_eq!(routing.active(infy_id), Some(Vendor::Kite));
    assert_eq!(routing.active(tcs_id), None);
    let (tx, mut rx) = producer::queue(1 << 16);
    let pipeline =
        Pipeline::new(tx, ValidationLimits::default(), false).with_routing(Arc::clone(&routing));
    let specs = order
        .iter()
        .map(|v| FeedSpec {
            connector: connector(*v, &sim, default_token(*v)),
            instruments: plan.per_vendor.remove(v).unwrap(),
            ages: None,
        })
        .collect();
    let feed = spawn_feed_thread(
        FeedSettings {
            stale_ms: 5000,
            ..settings()
        },
        specs,
        pipeline,
        None,
    )
    .unwrap();
    let mut refresh = DailyRefresh::new(
        entries,
        order.to_vec(),
        Some(Vendor::Dhan),
        sources,
        order
            .iter()
            .enumerate()
            .map(|(i, v)| {
                (
                    *v,
                    FeedHandle {
                        control: feed.control(),
                        feed: i,
                    },
                )
            })
            .collect(),
        Arc::clone(&routing),
        &initial,
        start,
    );
    let tcs = "NSE:TCS".to_owned();
    for (list, full) in &lists {
        std::fs::write(list, full).unwrap();
    }
    let report = refresh
        .tick(day + 86_400 + 9_060)
        .expect("next day after 08:00 IST: refreshed");
    let mut subscribed = report.subscribed.clone();
    subscribed.sort();
    assert_eq!(subscribed, vec![(Vendor::Kite, 1), (Vendor::Dhan, 1)]);
    assert_eq!(routing.stats.late_pairs.load(Ordering::Relaxed), 1);
    assert_eq!(
        routing.active(tcs_id),
        Some(Vendor::Kite),
        "the new symbol is a failover pair with Kite as its primary"
    );
    // Both vendors stream TCS; only Kite's ticks are produced.
    assert!(wait_for(Duration::from_secs(5), || {
        sim.stats()
            .unwrap()
            .connections
            .iter()
            .filter(|c| c.open)
            .all(|c| c.subscribed == 2)
    }));
    let _ = drain(&mut rx, Duration::from_millis(200));
    let suppressed = routing.stats.suppressed.load(Ordering::Relaxed);
    let both = drain(&mut rx, Duration::from_millis(800));
    assert!(
        both.get(&(Vendor::Kite, tcs.clone())).copied().unwrap_or(0) > 0,
        "{both:?}"
    );
    assert_eq!(both.get(&(Vendor::Dhan, tcs.clone())), None, "{both:?}");
    assert!(routing.stats.suppressed.load(Ordering::Relaxed) > suppressed);
    // Kite goes silent: Dhan's TCS ticks take over, then hand back when Kite resumes.
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Kite),
        ms: 2500,
    })
    .unwrap();
    assert!(
        wait_for(Duration::from_secs(5), || routing.active(tcs_id)
            == Some(Vendor::Dhan)),
        "standby took over the late symbol"
    );
    let during = drain(&mut rx, Duration::from_millis(400));
    assert!(
        during
            .get(&(Vendor::Dhan, tcs.clone()))
            .copied()
            .unwrap_or(0)
            > 0,
        "{during:?}"
    );
    assert!(
        wait_for(Duration::from_secs(10), || routing.active(tcs_id)
            == Some(Vendor::Kite)),
        "primary back"
    );
    feed.shutdown(Duration::from_secs(5)).unwrap();
}
