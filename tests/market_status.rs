//! Upstox `market_info` drives the stale watchdog, `/health`'s market phase and the backfill
//! guard: the simulator's Upstox server reports segment statuses, a real feed thread parses them
//! into the process's market-status store, and each consumer follows the vendor where it
//! contradicts the calendar. Last, the engine itself (`Engine::start`) shows the vendor's status
//! as `/health/ready`'s market.
//!
//! One test function: the store is process-wide (as in the engine), so the phases run in order.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;
mod http_support;

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, OnceLock,
    },
    time::Duration,
};

use layer1::{
    backfill::{self, BackfillSettings, Keys, StaticInstruments},
    calendar::{self, Calendar, MarketStatus as CalStatus, SessionHours},
    clock::date_from_days,
    config::Config,
    control::{BackfillParams, ControlCommand},
    feed::{
        spawn_feed_thread,
        upstox::{UpstoxConnector, UpstoxSettings},
        Credential, FeedSettings, FeedSpec, FeedStats, Instrument, Mode,
    },
    market_status::{self, Consumer, Source},
    parsers::MarketStatus,
    pipeline::Pipeline,
    producer,
    shutdown::Shutdown,
    sim::{Fault, SimConfig, Simulator, Target},
    status::MarketPhase,
    tick::Exchange,
    validate::ValidationLimits,
    vendor::Vendor,
};
use serde_json::Value;

fn now_ms() -> i64 {
    i64::try_from(layer1::clock::now_unix_ms()).unwrap()
}

/// A calendar whose answer does not depend on when the test runs: today and tomorrow (IST) are
/// either all-day sessions or holidays (a weekend day is closed either way).
fn calendar(open: bool) -> Calendar {
    let mut cal = Calendar::default();
    let today = calendar::ist_day(now_ms());
    for d in [today, today + 1] {
        if open {
            cal.add_special(
                date_from_days(d),
                SessionHours {
                    open: 0,
                    close: 1440,
                },
                "all-day test session",
            );
        } else {
            cal.add_holiday(date_from_days(d), "test holiday");
        }
    }
    cal
}

static OPEN_CAL: OnceLock<Calendar> = OnceLock::new();
static CLOSED_CAL: OnceLock<Calendar> = OnceLock::new();
/// Which calendar the watchdog consults now.
static CALENDAR_OPEN: AtomicBool = AtomicBool::new(true);

fn current_calendar() -> &'static Calendar {
    if CALENDAR_OPEN.load(Ordering::Acquire) {
        OPEN_CAL.get_or_init(|| calendar(true))
    } else {
        CLOSED_CAL.get_or_init(|| calendar(false))
    }
}

/// The watchdog input, wired as the engine wires `market_open_now`: the store over a calendar.
fn market_open() -> bool {
    market_status::global()
        .decide_for(Consumer::Watchdog, current_calendar(), now_ms())
        .status
        .is_open()
}

fn nse_status() -> Option<MarketStatus> {
    market_status::global()
        .fresh(Exchange::Nse, now_ms())
        .map(|r| r.status)
}

fn backfill_status(ns: &str) -> Value {
    let mut con = redis::Client::open(common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let raw: Option<String> = redis::cmd("GET")
        .arg(Keys::namespaced(ns).status)
        .query(&mut con)
        .unwrap();
    raw.map(|r| serde_json::from_str(&r).unwrap())
        .unwrap_or(Value::Null)
}

fn wait_backfill(ns: &str, state: &str) -> Value {
    common::wait_for(Duration::from_secs(20), || {
        let s = backfill_status(ns);
        (s["state"] == state).then_some(s)
    })
    .unwrap_or_else(|| panic!("backfill never {state}: {}", backfill_status(ns)))
}

/// Starts a backfill whose calendar says `calendar_open`, triggers it once and returns the
/// final status.
fn trigger_backfill(calendar_open: bool, expect: &str) -> Value {
    let ns = common::unique("test.market-status");
    let cfg = Config::from_lookup(&|_| None).unwrap();
    let mut s = BackfillSettings::from_config(&cfg);
    s.redis_url = common::redis_url();
    s.engine_id = "market-status-test".into();
    s.keys = Keys::namespaced(&ns);
    s.calendar = Arc::new(calendar(calendar_open));
    s.market_status = Arc::clone(market_status::global());
    s.auto = false;
    s.kite = None;
    s.upstox = None;
    let (tx, _rx) = producer::queue(1024);
    let shutdown = Shutdown::new();
    let handle = backfill::spawn(
        s,
        Arc::new(StaticInstruments(Vec::new())),
        tx,
        shutdown.clone(),
    )
    .unwrap();
    handle.submit(ControlCommand::StartBackfill(BackfillParams {
        days: Some(1),
        ..Default::default()
    }));
    let st = wait_backfill(&ns, expect);
    shutdown.trigger();
    handle.join();
    let mut con = redis::Client::open(common::redis_url())
        .unwrap()
        .get_connection()
        .unwrap();
    let k = Keys::namespaced(&ns);
    let _: Result<(), _> = redis::cmd("DEL")
        .arg(&k.status)
        .arg(&k.lock)
        .arg(format!("{ns}:backfill:last_close"))
        .query(&mut con);
    st
}

#[test]
fn upstox_market_info_drives_the_watchdog_health_and_the_backfill_guard() {
    common::services();
    // Freshness is the IST day: do not straddle IST midnight (18:30 UTC) with this test.
    let minute = calendar::ist_minute_of_day(now_ms());
    if minute >= 1437 {
        std::thread::sleep(Duration::from_secs(u64::from(1441 - minute) * 60));
    }
    market_status::global().watch([Exchange::Nse]);
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 200,
        heartbeat_ms: 100,
        ..SimConfig::default()
    })
    .unwrap();
    // The vendor says NSE is closed, from the greeting on.
    sim.set_market_status(&[
        ("NSE_EQ", MarketStatus::NormalClose),
        ("NSE_INDEX", MarketStatus::NormalClose),
    ])
    .unwrap();
    CALENDAR_OPEN.store(true, Ordering::Release);

    let (tx, _rx) = producer::queue(1 << 16);
    let spec = FeedSpec {
        connector: Box::new(UpstoxConnector::new(UpstoxSettings {
            authorize_url: sim.upstox_authorize_url(),
            access_token: Credential::Value("sim_upstox_token".into()),
            ..UpstoxSettings::default()
        })),
        instruments: vec![Instrument::upstox(1, "NSE_EQ|INE002A01018", Mode::Ltp)],
        ages: None,
    };
    let feed = spawn_feed_thread(
        FeedSettings {
            stale_ms: 300,
            closed_stale_ms: 60_000,
            heartbeat_ms: 100,
            backoff_base_ms: 20,
            backoff_cap_ms: 200,
            connect_timeout_ms: 2000,
            jitter_seed: Some(3),
            market_open,
            ..FeedSettings::default()
        },
        vec![spec],
        Pipeline::new(tx, ValidationLimits::default(), false),
        None,
    )
    .unwrap();

    // 1. Vendor closed, calendar open (a holiday the calendar does not know).
    assert!(
        common::wait_for(Duration::from_secs(5), || (nse_status()
            == Some(MarketStatus::NormalClose))
        .then_some(()))
        .is_some(),
        "the greeting's market_info reached the store"
    );
    let d = market_status::global().decide(current_calendar(), now_ms());
    assert_eq!(
        (d.status, d.source, d.calendar),
        (CalStatus::Closed, Source::Vendor, CalStatus::Open)
    );
    assert!(!market_open());
    let health = market_status::market_source(
        current_calendar().clone(),
        Arc::clone(market_status::global()),
    );
    assert_eq!(
        health.phase(layer1::clock::now_unix_ns()),
        MarketPhase::Closed,
        "/health says closed"
    );
    // Five times the open-market stale limit in silence: no stale event, no reconnect.
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Upstox),
        ms: 1500,
    })
    .unwrap();
    std::thread::sleep(Duration::from_millis(1800));
    assert_eq!(FeedStats::get(&feed.stats().stale_events), 0);
    assert_eq!(sim.stats().unwrap().connections.len(), 1, "no reconnect");
    // The backfill is allowed although the calendar says the market is open.
    let done = trigger_backfill(true, "completed");
    assert_eq!(done["market"], "closed");

    // 2. Vendor open, calendar closed (a special session the calendar does not list).
    CALENDAR_OPEN.store(false, Ordering::Release);
    assert!(!market_open(), "calendar closed, vendor still says closed");
    sim.set_market_status(&[
        ("NSE_EQ", MarketStatus::NormalOpen),
        ("NSE_INDEX", MarketStatus::NormalOpen),
    ])
    .unwrap();
    assert!(
        common::wait_for(Duration::from_secs(5), || (nse_status()
            == Some(MarketStatus::NormalOpen))
        .then_some(()))
        .is_some(),
        "the status change reached the store"
    );
    assert!(market_open());
    let health = market_status::market_source(
        current_calendar().clone(),
        Arc::clone(market_status::global()),
    );
    assert_eq!(
        health.phase(layer1::clock::now_unix_ns()),
        MarketPhase::Open,
        "/health watches the session"
    );
    // Now silence is stale: the watchdog fires and the feed reconnects.
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Upstox),
        ms: 1500,
    })
    .unwrap();
    assert!(
        common::wait_for(Duration::from_secs(5), || (FeedStats::get(
            &feed.stats().stale_events
        ) >= 1)
            .then_some(()))
        .is_some(),
        "the watchdog fired"
    );
    assert!(
        common::wait_for(Duration::from_secs(10), || {
            let st = sim.stats().unwrap();
            (st.connections.len() >= 2 && st.open(Vendor::Upstox) == 1).then_some(())
        })
        .is_some(),
        "reconnected"
    );
    // The backfill is refused although the calendar says the market is closed.
    let refused = trigger_backfill(false, "refused");
    assert_eq!(refused["reasonCode"], "BACKFILL_REFUSED_MARKET_OPEN");
    assert_eq!(refused["market"], "open");
    assert!(refused["reason"]
        .as_str()
        .is_some_and(|r| r.contains("reported by the vendor")));

    feed.shutdown(Duration::from_secs(5)).unwrap();

    // 3. The engine wires the same store: `/health/ready` reports the market the vendor reports,
    //    whatever the real calendar says now.
    let dir = std::env::temp_dir().join(common::unique("layer1-market-status"));
    let vars: Vec<(&str, String)> = vec![
        ("KAFKA_BROKERS", common::brokers()),
        ("REDIS_URL", common::redis_url()),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("KAFKA_TOPIC_TICKS", common::unique("test.mstatus.ticks")),
        ("KAFKA_TOPIC_RAW", common::unique("test.mstatus.raw")),
        ("KAFKA_TOPIC_DLQ", common::unique("test.mstatus.dlq")),
        ("KAFKA_PARTITIONS", "1".into()),
        ("JOURNAL_DIR", dir.join("journal").display().to_string()),
        ("UPSTOX_AUTHORIZE_URL", sim.upstox_authorize_url()),
        ("UPSTOX_ACCESS_TOKEN", "sim_upstox_token".into()),
        ("SUBSCRIBE", "upstox:NSE_EQ|INE002A01018@ltp".into()),
        ("CORE_PINNING", "off".into()),
        ("BACKFILL_AUTO", "false".into()),
    ];
    let cfg =
        Config::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
            .unwrap();
    let engine = layer1::engine::Engine::start(Arc::new(cfg), Shutdown::new()).unwrap();
    let market = || {
        http_support::get(engine.http_addr(), "/health/ready").json()["market"]
            .as_str()
            .unwrap_or("")
            .to_owned()
    };
    for (status, want) in [
        (MarketStatus::NormalClose, "closed"),
        (MarketStatus::NormalOpen, "open"),
        (MarketStatus::NormalClose, "closed"),
    ] {
        sim.set_market_status(&[("NSE_EQ", status)]).unwrap();
        assert!(
            common::wait_for(Duration::from_secs(10), || (market() == want).then_some(()))
                .is_some(),
            "/health/ready market {want} after {}: {}",
            status.as_str(),
            market()
        );
    }
    engine.stop();
    let _ = std::fs::remove_dir_all(&dir);
    sim.shutdown();
}
