//! Feed threads against the vendor simulator, over real sockets on 127.0.0.1.
//!
//! Every simulator binds port 0; every wait is bounded; timings are shrunk (stale 300 ms,
//! heartbeat 100 ms, backoff 20..200 ms) so the file runs in seconds.

// Helpers outside `#[test]` functions: a poisoned lock or a simulator that cannot start is a
// test failure, and a panic is how a test reports one.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, RwLock, RwLockReadGuard},
    time::{Duration, Instant},
};

use layer1::{
    feed::{
        kite::{KiteConnector, KiteSettings},
        spawn_feed_thread,
        upstox::{UpstoxConnector, UpstoxSettings},
        ConnState, Credential, FeedEvent, FeedSettings, FeedSpec, FeedStats, FeedThread,
        FrameHandler, FrameMeta, Instrument, Mode,
    },
    parsers::{self, ParseError, TickSink},
    sim::{Fault, SimConfig, SimHandle, SimStats, Simulator, Target},
    tick::Tick,
    vendor::Vendor,
};

#[derive(Default)]
struct Shared {
    events: Vec<(Instant, FeedEvent)>,
    frames: u64,
    ticks: u64,
    rejects: u64,
    per_token: HashMap<String, u64>,
}

#[derive(Clone, Default)]
struct TestHandler(Arc<Mutex<Shared>>);

struct Sink<'a>(&'a mut Shared);

impl TickSink for Sink<'_> {
    fn tick(&mut self, tick: &Tick) {
        self.0.ticks += 1;
        *self
            .0
            .per_token
            .entry(tick.token.as_str().to_owned())
            .or_default() += 1;
    }
    fn reject(&mut self, _err: &ParseError, _raw: &[u8]) {
        self.0.rejects += 1;
    }
}

impl FrameHandler for TestHandler {
    fn on_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let mut s = self.0.lock().unwrap();
        s.frames += 1;
        let pm = parsers::FrameMeta {
            received_at_ns: meta.received_at_ns,
            conn_id: meta.conn,
        };
        parsers::parse_frame(meta.vendor, meta.kind, payload, &pm, &mut Sink(&mut s));
    }
    fn on_event(&mut self, ev: &FeedEvent) {
        self.0
            .lock()
            .unwrap()
            .events
            .push((Instant::now(), ev.clone()));
    }
}

impl TestHandler {
    fn with<R>(&self, f: impl FnOnce(&Shared) -> R) -> R {
        f(&self.0.lock().unwrap())
    }
    fn per_token(&self) -> HashMap<String, u64> {
        self.with(|s| s.per_token.clone())
    }
    fn events(&self) -> Vec<(Instant, FeedEvent)> {
        self.with(|s| s.events.clone())
    }
}

/// The fd and RSS accounting test needs the process to itself: it takes this lock for writing,
/// every other test for reading.
static EXCLUSIVE: RwLock<()> = RwLock::new(());

fn shared() -> RwLockReadGuard<'static, ()> {
    EXCLUSIVE.read().unwrap_or_else(|p| p.into_inner())
}

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    cond()
}

fn settings(name: &str) -> FeedSettings {
    FeedSettings {
        name: name.to_owned(),
        backoff_base_ms: 20,
        backoff_cap_ms: 200,
        stale_ms: 300,
        heartbeat_ms: 100,
        connect_timeout_ms: 2000,
        jitter_seed: Some(7),
        ..FeedSettings::default()
    }
}

fn kite(sim: &SimHandle, token: Credential) -> KiteSettings {
    KiteSettings {
        base_url: sim.kite_url(),
        api_key: Credential::Value("sim_api_key".into()),
        access_token: token,
        ..KiteSettings::default()
    }
}

fn kite_spec(settings: KiteSettings, instruments: Vec<Instrument>) -> FeedSpec {
    FeedSpec {
        connector: Box::new(KiteConnector::new(settings)),
        instruments,
        ages: None,
    }
}

/// NSE equities (segment 1), NFO (2) and indices (9).
/// A feed thread with one Kite feed on the simulator, with its valid access token.
fn spawn_kite(
    settings: FeedSettings,
    sim: &SimHandle,
    instruments: Vec<Instrument>,
    h: &TestHandler,
) -> FeedThread<TestHandler> {
    spawn_feed_thread(
        settings,
        vec![kite_spec(
            kite(sim, Credential::Value("sim_access_token".into())),
            instruments,
        )],
        h.clone(),
        None,
    )
    .expect("spawn")
}

/// A feed thread with one Kite connection to a test's own server on `port`, its timers far
/// enough out that only the server's frames drive it.
fn spawn_on_port<H: FrameHandler + Send + 'static>(
    name: &str,
    port: u16,
    handler: H,
) -> Result<FeedThread<H>, layer1::feed::FeedError> {
    spawn_feed_thread(
        FeedSettings {
            stale_ms: 10_000,
            closed_stale_ms: 10_000,
            heartbeat_ms: 5_000,
            ..settings(name)
        },
        vec![kite_spec(
            KiteSettings {
                base_url: format!("ws://127.0.0.1:{port}/"),
                api_key: Credential::Value("k".into()),
                access_token: Credential::Value("t".into()),
                ..KiteSettings::default()
            },
            vec![Instrument::kite(256_265, Mode::Ltp)],
        )],
        handler,
        None,
    )
}

fn kite_tokens(n: u32) -> Vec<u32> {
    (0..n)
        .map(|i| {
            let seg = match i % 3 {
                0 => 1,
                1 => 2,
                _ => 9,
            };
            ((1000 + i) << 8) | seg
        })
        .collect()
}

fn sim(rate: u64) -> SimHandle {
    Simulator::start(SimConfig {
        ticks_per_sec: rate,
        ..SimConfig::default()
    })
    .expect("simulator starts")
}

fn stats(sim: &SimHandle) -> SimStats {
    sim.stats().expect("sim stats")
}

fn all_received(h: &TestHandler, tokens: &[u32], base: &HashMap<String, u64>) -> bool {
    let now = h.per_token();
    tokens.iter().all(|t| {
        let k = t.to_string();
        now.get(&k).copied().unwrap_or(0) > base.get(&k).copied().unwrap_or(0)
    })
}

fn count_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn reconnect_after_abrupt_drop_replays_subscriptions_and_ticks_resume() {
    let _shared = shared();
    let sim = sim(5000);
    let tokens = kite_tokens(60);
    let instruments = tokens
        .iter()
        .map(|t| Instrument::kite(*t, Mode::Full))
        .collect();
    let h = TestHandler::default();
    let feed = spawn_kite(settings("feed-drop"), &sim, instruments, &h);
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));

    sim.inject(Fault::Drop(Target::all(Vendor::Kite)))
        .expect("inject");
    assert!(wait_until(Duration::from_secs(5), || {
        let s = stats(&sim);
        s.connections.len() == 2 && s.open(Vendor::Kite) == 1
    }));
    let before = h.per_token();
    assert!(
        wait_until(Duration::from_secs(5), || all_received(
            &h, &tokens, &before
        )),
        "ticks resume for every instrument after the reconnect"
    );

    let s = stats(&sim);
    let second = &s.connections[1];
    let subscribed: Vec<String> = second
        .requests
        .iter()
        .filter(|r| r.action == "subscribe")
        .flat_map(|r| r.instruments.clone())
        .collect();
    let expected: Vec<String> = tokens.iter().map(u32::to_string).collect();
    assert_eq!(subscribed, expected, "the same subscriptions are replayed");
    assert!(second.requests.iter().any(|r| r.action == "mode"
        && r.mode.as_deref() == Some("full")
        && r.instruments.len() == 60));
    assert!(h.events().iter().any(|(_, e)| matches!(
        e,
        FeedEvent::Disconnected {
            reason: "CONN_CLOSED",
            ..
        }
    )));
    let stats = Arc::clone(feed.stats());
    assert_eq!(FeedStats::get(&stats.reconnects), 1);
    let t0 = Instant::now();
    feed.shutdown(Duration::from_secs(2)).expect("joins");
    assert!(t0.elapsed() < Duration::from_secs(1));
}

#[test]
fn silent_stall_is_detected_within_stale_plus_heartbeat_and_recovered() {
    let _shared = shared();
    let sim = sim(2000);
    let tokens = kite_tokens(10);
    let h = TestHandler::default();
    let st = settings("feed-stall");
    let (stale, hb) = (st.stale_ms, st.heartbeat_ms);
    let feed = spawn_kite(
        st,
        &sim,
        tokens
            .iter()
            .map(|t| Instrument::kite(*t, Mode::Quote))
            .collect(),
        &h,
    );
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));

    let injected = Instant::now();
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Kite),
        ms: 10_000,
    })
    .expect("inject");
    assert!(wait_until(Duration::from_secs(3), || h
        .events()
        .iter()
        .any(|(_, e)| matches!(e, FeedEvent::Stale { .. }))));
    let (detected_at, silent_ms) = h
        .events()
        .iter()
        .find_map(|(t, e)| match e {
            FeedEvent::Stale { silent_ms, .. } => Some((*t, *silent_ms)),
            _ => None,
        })
        .expect("stale event");
    let took = detected_at.duration_since(injected);
    assert!(
        took <= Duration::from_millis(stale + hb),
        "stall detected after {took:?}, limit {} ms",
        stale + hb
    );
    assert!(silent_ms >= stale);

    let before = h.per_token();
    assert!(
        wait_until(Duration::from_secs(5), || all_received(
            &h, &tokens, &before
        )),
        "recovered on a new connection"
    );
    assert_eq!(
        stats(&sim).open(Vendor::Kite),
        2,
        "the stalled socket is still open on the sim side"
    );
    assert!(FeedStats::get(&feed.stats().stale_events) >= 1);
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn hundred_consecutive_refusals_leak_no_sockets_timers_or_memory() {
    let _exclusive = EXCLUSIVE.write().unwrap_or_else(|p| p.into_inner());
    let sim = sim(1000);
    let h = TestHandler::default();
    let tokens = kite_tokens(3);
    // Warm up allocator and TLS roots once so the comparison measures the refusals only.
    let fds_before = count_fds();
    let rss_before = rss_kib();
    sim.inject(Fault::Refuse {
        vendor: Vendor::Kite,
        status: 503,
        retry_after_s: None,
        count: 100,
    })
    .expect("inject");
    let feed = spawn_kite(
        FeedSettings {
            backoff_base_ms: 1,
            backoff_cap_ms: 4,
            connect_timeout_ms: 300,
            ..settings("feed-refuse")
        },
        &sim,
        tokens
            .iter()
            .map(|t| Instrument::kite(*t, Mode::Ltp))
            .collect(),
        &h,
    );
    assert!(
        wait_until(Duration::from_secs(20), || all_received(
            &h,
            &tokens,
            &HashMap::new()
        )),
        "connects after the refusals"
    );
    let s = stats(&sim);
    assert_eq!(s.refused, 100);
    let st = Arc::clone(feed.stats());
    assert_eq!(FeedStats::get(&st.attempts), 101);
    let failures = h
        .events()
        .iter()
        .filter(|(_, e)| {
            matches!(
                e,
                FeedEvent::Disconnected {
                    reason: "CONN_HTTP",
                    ..
                }
            )
        })
        .count();
    assert_eq!(failures, 100);
    assert_eq!(
        FeedStats::get(&st.sockets),
        1,
        "only the open connection holds a socket"
    );
    // Cancelled connect timeouts surface and are dropped once their deadline passes; what
    // remains is the open connection's heartbeat and watchdog.
    assert!(
        wait_until(Duration::from_secs(2), || FeedStats::get(
            &st.timers_pending
        ) <= 2),
        "timers {}",
        FeedStats::get(&st.timers_pending)
    );
    // One client socket, one sim-side socket, the feed thread's epoll and eventfd.
    let fds_after = count_fds();
    assert!(
        fds_after <= fds_before + 6,
        "fds {fds_before} -> {fds_after}"
    );
    let rss_after = rss_kib();
    assert!(
        rss_after < rss_before + 32 * 1024,
        "rss {rss_before} KiB -> {rss_after} KiB"
    );
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn rate_limited_handshake_honours_retry_after() {
    let _shared = shared();
    let sim = sim(1000);
    sim.inject(Fault::Refuse {
        vendor: Vendor::Kite,
        status: 429,
        retry_after_s: Some(1),
        count: 1,
    })
    .expect("inject");
    let h = TestHandler::default();
    let tokens = kite_tokens(3);
    let feed = spawn_kite(
        settings("feed-429"),
        &sim,
        tokens
            .iter()
            .map(|t| Instrument::kite(*t, Mode::Ltp))
            .collect(),
        &h,
    );
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));
    let ev = h.events();
    let (refused_at, retry_in) = ev
        .iter()
        .find_map(|(t, e)| match e {
            FeedEvent::Disconnected {
                reason: "CONN_RATE_LIMITED",
                retry_in_ms,
                ..
            } => Some((*t, *retry_in_ms)),
            _ => None,
        })
        .expect("rate limited event");
    assert!(retry_in >= 1000, "retry in {retry_in} ms");
    let next_attempt = ev
        .iter()
        .find(|(t, e)| {
            *t > refused_at
                && matches!(
                    e,
                    FeedEvent::State {
                        state: ConnState::Connecting,
                        ..
                    }
                )
        })
        .map(|(t, _)| *t)
        .expect("a later attempt");
    assert!(next_attempt.duration_since(refused_at) >= Duration::from_millis(1000));
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn rotated_token_is_used_on_next_attempt_without_restart() {
    let _shared = shared();
    let sim = sim(1000);
    let dir = std::env::temp_dir().join(format!("layer1-feed-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("tmp dir");
    let file = dir.join("kite_token");
    std::fs::write(&file, "sim_access_token\n").expect("write token");
    let h = TestHandler::default();
    let tokens = kite_tokens(5);
    let feed = spawn_feed_thread(
        settings("feed-rotate"),
        vec![kite_spec(
            kite(&sim, Credential::File(file.clone())),
            tokens
                .iter()
                .map(|t| Instrument::kite(*t, Mode::Quote))
                .collect(),
        )],
        h.clone(),
        None,
    )
    .expect("spawn");
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));

    // The vendor expires the daily token; attempts with the old one are refused (403).
    sim.inject(Fault::ExpireToken {
        vendor: Vendor::Kite,
        new_token: "rotated_token".into(),
    })
    .expect("inject");
    assert!(wait_until(Duration::from_secs(5), || h
        .events()
        .iter()
        .any(|(_, e)| matches!(
            e,
            FeedEvent::Disconnected {
                reason: "CONN_UNAUTHORIZED",
                ..
            }
        ))));
    // The operator's token job writes the new token; no restart, no command.
    std::fs::write(&file, "rotated_token\n").expect("rotate");
    let before = h.per_token();
    assert!(
        wait_until(Duration::from_secs(5), || all_received(
            &h, &tokens, &before
        )),
        "ticks resume with the rotated token"
    );
    assert_eq!(stats(&sim).open(Vendor::Kite), 1);
    feed.shutdown(Duration::from_secs(2)).expect("joins");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn instruments_over_the_cap_open_a_second_connection_and_all_receive() {
    let _shared = shared();
    let sim = sim(100_000);
    let tokens = kite_tokens(4500);
    let h = TestHandler::default();
    let feed = spawn_kite(
        settings("feed-cap"),
        &sim,
        tokens
            .iter()
            .map(|t| Instrument::kite(*t, Mode::Quote))
            .collect(),
        &h,
    );
    assert!(
        wait_until(Duration::from_secs(15), || all_received(
            &h,
            &tokens,
            &HashMap::new()
        )),
        "every one of 4500 instruments ticks"
    );
    let s = stats(&sim);
    let mut subscribed: Vec<usize> = s
        .connections
        .iter()
        .filter(|c| c.open)
        .map(|c| c.subscribed)
        .collect();
    subscribed.sort_unstable();
    assert_eq!(subscribed, vec![1500, 3000]);
    assert_eq!(FeedStats::get(&feed.stats().connections), 2);
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn two_feed_threads_with_several_connections_run_independently_and_shut_down_promptly() {
    let _shared = shared();
    let sim = sim(3000);
    let a_tokens = kite_tokens(30);
    let b_tokens: Vec<u32> = kite_tokens(50).split_off(30);
    let capped = |cap| KiteSettings {
        max_instruments_per_conn: cap,
        max_connections: 4,
        ..kite(&sim, Credential::Value("sim_access_token".into()))
    };
    let (ha, hb) = (TestHandler::default(), TestHandler::default());
    let a = spawn_feed_thread(
        FeedSettings {
            thread_index: 0,
            ..settings("feed-a")
        },
        vec![kite_spec(
            capped(10),
            a_tokens
                .iter()
                .map(|t| Instrument::kite(*t, Mode::Full))
                .collect(),
        )],
        ha.clone(),
        None,
    )
    .expect("spawn a");
    let b = spawn_feed_thread(
        FeedSettings {
            thread_index: 1,
            ..settings("feed-b")
        },
        vec![kite_spec(
            capped(5),
            b_tokens
                .iter()
                .map(|t| Instrument::kite(*t, Mode::Ltp))
                .collect(),
        )],
        hb.clone(),
        None,
    )
    .expect("spawn b");
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &ha,
        &a_tokens,
        &HashMap::new()
    )));
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &hb,
        &b_tokens,
        &HashMap::new()
    )));
    assert_eq!(FeedStats::get(&a.stats().open_connections), 3);
    assert_eq!(FeedStats::get(&b.stats().open_connections), 4);
    // Connection ids carry the thread index in the high byte.
    let ids = |h: &TestHandler| -> Vec<u16> {
        h.events()
            .iter()
            .filter_map(|(_, e)| match e {
                FeedEvent::State {
                    conn,
                    state: ConnState::Open,
                    ..
                } => Some(*conn),
                _ => None,
            })
            .collect()
    };
    assert!(ids(&ha).iter().all(|c| c >> 8 == 0));
    assert!(ids(&hb).iter().all(|c| c >> 8 == 1));

    let t0 = Instant::now();
    a.shutdown(Duration::from_secs(2)).expect("a joins");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "a stopped in {:?}",
        t0.elapsed()
    );
    // B is unaffected by A's shutdown.
    let before = hb.per_token();
    assert!(wait_until(Duration::from_secs(3), || all_received(
        &hb, &b_tokens, &before
    )));
    assert!(wait_until(Duration::from_secs(2), || stats(&sim)
        .open(Vendor::Kite)
        == 4));
    let t0 = Instant::now();
    b.shutdown(Duration::from_secs(2)).expect("b joins");
    assert!(
        t0.elapsed() < Duration::from_millis(500),
        "b stopped in {:?}",
        t0.elapsed()
    );
}

#[test]
fn upstox_fetches_a_fresh_one_time_url_for_every_attempt() {
    let _shared = shared();
    let sim = sim(2000);
    let keys = [
        "NSE_EQ|INE002A01018",
        "NSE_EQ|INE009A01021",
        "NSE_INDEX|Nifty 50",
        "NSE_FO|65629",
    ];
    let instruments: Vec<Instrument> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| {
            Instrument::upstox(i as u32 + 1, k, if i == 2 { Mode::Ltp } else { Mode::Full })
        })
        .collect();
    let h = TestHandler::default();
    let feed = spawn_feed_thread(
        settings("feed-upstox"),
        vec![FeedSpec {
            connector: Box::new(UpstoxConnector::new(UpstoxSettings {
                authorize_url: sim.upstox_authorize_url(),
                access_token: Credential::Value("sim_upstox_token".into()),
                ..UpstoxSettings::default()
            })),
            instruments,
            ages: None,
        }],
        h.clone(),
        None,
    )
    .expect("spawn");
    let got_all = |base: &HashMap<String, u64>| {
        let now = h.per_token();
        keys.iter()
            .all(|k| now.get(*k).copied().unwrap_or(0) > base.get(*k).copied().unwrap_or(0))
    };
    assert!(wait_until(Duration::from_secs(5), || got_all(
        &HashMap::new()
    )));
    sim.inject(Fault::Drop(Target::all(Vendor::Upstox)))
        .expect("inject");
    assert!(wait_until(Duration::from_secs(5), || stats(&sim)
        .connections
        .len()
        == 2));
    let before = h.per_token();
    assert!(wait_until(Duration::from_secs(5), || got_all(&before)));
    let s = stats(&sim);
    assert!(s.authorize_calls >= 2, "one authorize call per attempt");
    let replayed: usize = s.connections[1]
        .requests
        .iter()
        .filter(|r| r.action == "sub")
        .map(|r| r.instruments.len())
        .sum();
    assert_eq!(replayed, keys.len());
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn wss_with_a_custom_root_ca_and_a_resolved_host_name() {
    let _shared = shared();
    let sim = Simulator::start(SimConfig {
        tls: true,
        ..SimConfig::default()
    })
    .expect("sim with tls");
    let tokens = kite_tokens(5);
    let h = TestHandler::default();
    let feed = spawn_feed_thread(
        FeedSettings {
            extra_root_certs_pem: sim.ca_pem.clone().expect("ca"),
            ..settings("feed-tls")
        },
        vec![kite_spec(
            KiteSettings {
                base_url: sim.kite_tls_url().expect("tls url"),
                ..kite(&sim, Credential::Value("sim_access_token".into()))
            },
            tokens
                .iter()
                .map(|t| Instrument::kite(*t, Mode::Full))
                .collect(),
        )],
        h.clone(),
        None,
    )
    .expect("spawn");
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn oversize_frames_are_refused_and_bad_frames_do_not_cost_the_connection() {
    let _shared = shared();
    let sim = sim(1000);
    let tokens = kite_tokens(5);
    let h = TestHandler::default();
    let feed = spawn_kite(
        FeedSettings {
            max_message_bytes: 64 * 1024,
            ..settings("feed-limits")
        },
        &sim,
        tokens
            .iter()
            .map(|t| Instrument::kite(*t, Mode::Full))
            .collect(),
        &h,
    );
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));
    sim.inject(Fault::Malformed(Target::all(Vendor::Kite)))
        .expect("inject");
    sim.inject(Fault::Truncated(Target::all(Vendor::Kite)))
        .expect("inject");
    assert!(wait_until(Duration::from_secs(3), || h.with(|s| s.rejects >= 2)));
    assert_eq!(
        stats(&sim).connections.len(),
        1,
        "parse errors never cost the connection"
    );

    sim.inject(Fault::Oversize {
        target: Target::all(Vendor::Kite),
        bytes: 1 << 20,
    })
    .expect("inject");
    assert!(wait_until(Duration::from_secs(3), || FeedStats::get(
        &feed.stats().refused_frames
    ) == 1));
    assert!(wait_until(Duration::from_secs(5), || stats(&sim)
        .connections
        .len()
        == 2));
    let before = h.per_token();
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h, &tokens, &before
    )));
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

#[test]
fn silence_outside_market_hours_causes_no_reconnect() {
    let _shared = shared();
    fn closed() -> bool {
        false
    }
    let sim = sim(1000);
    let tokens = kite_tokens(3);
    let h = TestHandler::default();
    let feed = spawn_kite(
        FeedSettings {
            market_open: closed,
            ..settings("feed-closed")
        },
        &sim,
        tokens
            .iter()
            .map(|t| Instrument::kite(*t, Mode::Ltp))
            .collect(),
        &h,
    );
    assert!(wait_until(Duration::from_secs(5), || all_received(
        &h,
        &tokens,
        &HashMap::new()
    )));
    sim.inject(Fault::Stall {
        target: Target::all(Vendor::Kite),
        ms: 1500,
    })
    .expect("inject");
    // Five times the open-market stale limit passes in silence.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(!h
        .events()
        .iter()
        .any(|(_, e)| matches!(e, FeedEvent::Stale { .. })));
    assert_eq!(stats(&sim).connections.len(), 1);
    let before = h.per_token();
    assert!(wait_until(Duration::from_secs(3), || all_received(
        &h, &tokens, &before
    )));
    assert_eq!(
        stats(&sim).connections.len(),
        1,
        "the same connection carries on"
    );
    feed.shutdown(Duration::from_secs(2)).expect("joins");
}

/// Each frame's receive time and bytes, in arrival order.
type Stamps = Arc<Mutex<Vec<(u64, Vec<u8>)>>>;

/// Records each frame's receive time; on the first frame it lets the server send the second,
/// then stays busy for `busy`, so the second frame arrives while the loop is still draining.
struct StampHandler {
    stamps: Stamps,
    go: Option<std::sync::mpsc::Sender<()>>,
    busy: Duration,
}

impl FrameHandler for StampHandler {
    fn on_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        self.stamps
            .lock()
            .unwrap()
            .push((meta.received_at_ns, payload.to_vec()));
        if let Some(go) = self.go.take() {
            let _ = go.send(());
            std::thread::sleep(self.busy);
        }
    }
    fn on_event(&mut self, _ev: &FeedEvent) {}
}

/// A frame is stamped by the read that delivered it, not by the start of the drained batch: the
/// second frame arrives during the handler's work on the first and is read in the same readiness
/// event, yet its receive time is later than the first's by at least that work. (Stamping once
/// per batch gave both the same time.)
#[test]
fn frames_from_a_later_read_carry_that_reads_receive_time() {
    let _shared = shared();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut ws = tungstenite::accept(stream).expect("upgrade");
        ws.send(tungstenite::Message::Binary(vec![1u8; 8].into()))
            .expect("first");
        go_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("first frame seen");
        ws.send(tungstenite::Message::Binary(vec![2u8; 8].into()))
            .expect("second");
        // Keep the connection open until the client is done.
        std::thread::sleep(Duration::from_millis(500));
    });
    let busy = Duration::from_millis(40);
    let stamps: Stamps = Arc::new(Mutex::new(Vec::new()));
    let h = StampHandler {
        stamps: Arc::clone(&stamps),
        go: Some(go_tx),
        busy,
    };
    let feed = spawn_on_port("feed-stamp", port, h).expect("spawn");
    assert!(wait_until(Duration::from_secs(10), || stamps
        .lock()
        .unwrap()
        .len()
        >= 2));
    feed.shutdown(Duration::from_secs(2)).expect("joins");
    server.join().expect("server");
    let s = stamps.lock().unwrap();
    assert_eq!(s[0].1, vec![1u8; 8]);
    assert_eq!(s[1].1, vec![2u8; 8]);
    let gap = s[1].0.saturating_sub(s[0].0);
    assert!(
        gap >= busy.as_nanos() as u64,
        "second frame stamped {gap} ns after the first; it was read at least {busy:?} later"
    );
}

/// What a handler was called with, in call order: (after_frame?, receive time, frame id).
type Calls = Arc<Mutex<Vec<(bool, u64, u8)>>>;

struct OrderHandler(Calls);

impl FrameHandler for OrderHandler {
    fn on_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let id = payload.first().copied().unwrap_or(0);
        self.0
            .lock()
            .unwrap()
            .push((false, meta.received_at_ns, id));
    }
    fn after_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let id = payload.first().copied().unwrap_or(0);
        self.0.lock().unwrap().push((true, meta.received_at_ns, id));
    }
    fn on_event(&mut self, _ev: &FeedEvent) {}
}

/// An unmasked server frame: FIN bit and opcode, then a short payload of `len` times `id`.
fn raw_frame(out: &mut Vec<u8>, fin_op: u8, id: u8, len: u8) {
    out.extend_from_slice(&[fin_op, len]);
    out.extend(std::iter::repeat_n(id, usize::from(len)));
}

/// The frames one read completed get their `after_frame` (the raw copy, bookkeeping) only
/// after every one of them had its `on_frame` (the ticks), in the same order, so a frame's ticks
/// do not wait for the bookkeeping of the frames ahead of it in the read; a reassembled message,
/// whose bytes the next fragment overwrites, has its bookkeeping at once, after what was waiting.
#[test]
fn frames_of_one_read_hand_over_their_ticks_before_any_bookkeeping() {
    use std::io::Write;
    let _shared = shared();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    const FRAGMENTED: u8 = 30;
    let server = std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let mut ws = tungstenite::accept(stream).expect("upgrade");
        let tcp = ws.get_mut();
        // Each batch is one write, so one read on loopback.
        for round in 0..5u8 {
            let mut batch = Vec::new();
            for i in 1..=4u8 {
                raw_frame(&mut batch, 0x82, round * 10 + i, 8);
            }
            tcp.write_all(&batch).expect("batch");
            std::thread::sleep(Duration::from_millis(30));
        }
        // Whole, fragmented (binary without FIN, then the continuation with it), whole.
        let mut batch = Vec::new();
        raw_frame(&mut batch, 0x82, 51, 8);
        raw_frame(&mut batch, 0x02, FRAGMENTED, 4);
        raw_frame(&mut batch, 0x80, FRAGMENTED, 4);
        raw_frame(&mut batch, 0x82, 52, 8);
        tcp.write_all(&batch).expect("mixed batch");
        std::thread::sleep(Duration::from_millis(500));
    });
    let calls: Calls = Arc::new(Mutex::new(Vec::new()));
    let feed = spawn_on_port("feed-order", port, OrderHandler(Arc::clone(&calls))).expect("spawn");
    let total = 5 * 4 + 3;
    assert!(wait_until(Duration::from_secs(10), || calls
        .lock()
        .unwrap()
        .iter()
        .filter(|c| c.0)
        .count()
        >= total));
    feed.shutdown(Duration::from_secs(2)).expect("joins");
    server.join().expect("server");
    let calls = calls.lock().unwrap().clone();
    let on: Vec<u8> = calls.iter().filter(|c| !c.0).map(|c| c.2).collect();
    let after: Vec<u8> = calls.iter().filter(|c| c.0).map(|c| c.2).collect();
    assert_eq!(on.len(), total, "{calls:?}");
    assert_eq!(after, on, "bookkeeping in the frames' order");
    for (i, &(is_after, _, id)) in calls.iter().enumerate() {
        if is_after {
            assert!(
                calls[..i].iter().any(|c| !c.0 && c.2 == id),
                "frame {id}'s bookkeeping before its ticks: {calls:?}"
            );
        }
    }
    // Per read (frames sharing a receive time) of whole frames only: every on_frame first.
    let mut reads: Vec<u64> = calls.iter().map(|c| c.1).collect();
    reads.dedup();
    let mut multi = 0;
    for at in reads {
        let of_read: Vec<&(bool, u64, u8)> = calls.iter().filter(|c| c.1 == at).collect();
        if of_read.iter().any(|c| c.2 == FRAGMENTED) {
            continue;
        }
        let first_after = of_read.iter().position(|c| c.0).unwrap();
        assert!(
            of_read[first_after..].iter().all(|c| c.0),
            "a frame's ticks waited for bookkeeping in its read: {of_read:?}"
        );
        if first_after > 1 {
            multi += 1;
        }
    }
    assert!(multi > 0, "no read held two frames: {calls:?}");
}

/// Loop turns of a feed thread over `window` once its ticks flow, then its shutdown.
fn turns_while_streaming(busy_poll: bool, window: Duration) -> u64 {
    let sim = sim(2000);
    let tokens = kite_tokens(20);
    let instruments = tokens
        .iter()
        .map(|t| Instrument::kite(*t, Mode::Quote))
        .collect();
    let h = TestHandler::default();
    let feed = spawn_kite(
        FeedSettings {
            busy_poll,
            ..settings(if busy_poll {
                "feed-busy"
            } else {
                "feed-sleeps"
            })
        },
        &sim,
        instruments,
        &h,
    );
    assert!(
        wait_until(Duration::from_secs(5), || all_received(
            &h,
            &tokens,
            &HashMap::new()
        )),
        "ticks flow (busy_poll {busy_poll})"
    );
    let stats = Arc::clone(feed.stats());
    let before = h.per_token();
    let t0 = FeedStats::get(&stats.loop_turns);
    std::thread::sleep(window);
    let turns = FeedStats::get(&stats.loop_turns) - t0;
    assert!(
        wait_until(Duration::from_secs(5), || all_received(
            &h, &tokens, &before
        )),
        "ticks keep flowing (busy_poll {busy_poll})"
    );
    assert_eq!(FeedStats::get(&stats.reconnects), 0);
    feed.shutdown(Duration::from_secs(2)).expect("joins");
    turns
}

#[test]
fn a_busy_polling_feed_thread_never_sleeps_and_still_delivers() {
    // Alone: the busy thread takes a whole core while it runs.
    let _alone = EXCLUSIVE.write().unwrap_or_else(|p| p.into_inner());
    let window = Duration::from_millis(300);
    let sleeping = turns_while_streaming(false, window);
    let busy = turns_while_streaming(true, window);
    // Sleeping, the loop turns once per event (a few frames and pings per 10 ms); busy, once
    // per `epoll_wait(0)`, about a microsecond.
    assert!(
        busy > 10_000 && busy > 20 * sleeping,
        "busy-polling {busy} turns, sleeping {sleeping} in {window:?}"
    );
}
