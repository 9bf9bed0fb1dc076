//! The HTTP surface end to end over real sockets: every route, readiness, the backfill trigger
//! through a real Redis, the token and cross-origin rules in remote mode, and hostile clients.
// Test code: a failed expectation is the test failing, with its message.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;
mod http_support;

use std::{
    io::{Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use http_support::{get, post, send, TestServer};
use layer1::{
    config::Secret,
    control::{self, ControlCommand},
    feed::{ConnState, FeedEvent},
    http::{Exposure, RedisTarget},
    status::{ConnectionStatus, MarketPhase, MarketSource},
    vendor::Vendor,
};

fn redis_target(tag: &str) -> RedisTarget {
    RedisTarget {
        url: common::redis_url(),
        commands_channel: common::unique(&format!("test:commands:{tag}")),
        status_key: common::unique(&format!("test:backfill:{tag}")),
    }
}

fn redis() -> redis::Connection {
    redis::Client::open(common::redis_url())
        .expect("client")
        .get_connection_with_timeout(Duration::from_secs(2))
        .expect("redis")
}

/// A subscriber on `channel` that forwards every message it gets.
fn subscriber(
    channel: &str,
) -> (
    crossbeam_channel::Receiver<String>,
    std::thread::JoinHandle<()>,
) {
    let (tx, rx) = crossbeam_channel::unbounded();
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let channel = channel.to_owned();
    let join = std::thread::spawn(move || {
        let mut conn = redis();
        conn.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut ps = conn.as_pubsub();
        ps.subscribe(&channel).expect("subscribe");
        ready_tx.send(()).expect("ready");
        let end = Instant::now() + Duration::from_secs(20);
        while Instant::now() < end {
            match ps.get_message() {
                Ok(m) => {
                    if tx.send(m.get_payload::<String>().expect("text")).is_err() {
                        return;
                    }
                }
                Err(e) if e.is_timeout() => {}
                Err(e) => panic!("subscriber: {e}"),
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("subscribed");
    (rx, join)
}

fn always(phase: MarketPhase) -> MarketSource {
    MarketSource::new("test", move |_| phase)
}

#[test]
fn every_get_route_answers_with_the_right_type() {
    let s = TestServer::start(|_| {});
    s.metrics.kafka_up.set(1);
    // Labelled families appear in the exposition once they have a child.
    s.metrics.ticks_total.with_label_values(&["kite"]).inc();
    let page = get(s.addr, "/");
    assert_eq!(page.status, 200);
    assert!(page
        .header("content-type")
        .unwrap()
        .starts_with("text/html"));
    assert!(page.body.contains("Trigger Backfill") && page.body.contains("/assets/app.js"));
    let csp = page.header("content-security-policy").expect("csp");
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"),
        "{csp}"
    );
    // Nothing is loaded from elsewhere: no absolute URL in the page's own files.
    for path in ["/", "/assets/app.css", "/assets/app.js"] {
        let r = get(s.addr, path);
        assert_eq!(r.status, 200, "{path}");
        assert!(
            !r.body.contains("http://") && !r.body.contains("https://"),
            "{path} refers to another origin"
        );
    }
    assert!(get(s.addr, "/assets/app.js")
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(get(s.addr, "/assets/app.css")
        .header("content-type")
        .unwrap()
        .starts_with("text/css"));
    let m = get(s.addr, "/metrics");
    assert_eq!(m.status, 200);
    for name in [
        "ingestion_ticks_total{vendor=\"kite\"} 1",
        "kafka_up 1",
        "journal_bytes 0",
        "ack_latency_seconds_bucket",
        "handoff_latency_seconds_bucket",
    ] {
        assert!(m.body.contains(name), "{name} missing from /metrics");
    }
    assert_eq!(get(s.addr, "/health").json()["status"], "ok");
    assert_eq!(get(s.addr, "/health/live").json()["status"], "live");
    let st = get(s.addr, "/api/status");
    assert_eq!(st.status, 200);
    let v = st.json();
    assert_eq!(v["engine"]["version"], "9.9.9-test");
    assert_eq!(v["history"]["interval_ms"], 500);
    assert_eq!(v["security"]["token_required"], false);
    assert_eq!(v["backfill"]["state"], "unavailable");
    assert!(v["connections"].as_array().unwrap().is_empty());
    assert_eq!(get(s.addr, "/nope").status, 404);
    assert_eq!(get(s.addr, "/api/status?x=1").status, 200);
    for (method, path) in [
        ("POST", "/metrics"),
        ("DELETE", "/api/status"),
        ("PUT", "/"),
        ("GET", "/api/backfill"),
        ("POST", "/health/ready"),
    ] {
        let r = send(
            s.addr,
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\nContent-Length: 0\r\n\r\n",
                s.addr
            )
            .as_bytes(),
        );
        assert_eq!(r.status, 405, "{method} {path}");
        assert_eq!(r.json()["error"], "HTTP_METHOD");
    }
}

#[test]
fn readiness_needs_kafka_and_every_feed_live_during_market_hours() {
    let s = TestServer::start(|o| {
        o.market = always(MarketPhase::Open);
        o.feeds = vec![Vendor::Kite];
        o.stale_after = Duration::from_millis(300);
    });
    s.metrics.kafka_up.set(0);
    let r = get(s.addr, "/health/ready");
    assert_eq!(r.status, 503);
    let reasons = r.json()["reasons"].to_string();
    assert!(
        reasons.contains("kafka unreachable") && reasons.contains("kite: no connection"),
        "{reasons}"
    );

    s.metrics.kafka_up.set(1);
    s.status.thread_placement(0, "feed-0", Some(1));
    s.status.connection_update(ConnectionStatus {
        vendor: Vendor::Kite,
        conn: 1,
        state: ConnState::Open,
        reconnects: 0,
        instruments: 10,
        last_message_ns: Some(layer1::clock::now_unix_ns()),
    });
    let r = get(s.addr, "/health/ready");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["market"], "open");

    // The simulator stalls: no message for longer than the stale limit.
    std::thread::sleep(Duration::from_millis(500));
    let r = get(s.addr, "/health/ready");
    assert_eq!(r.status, 503);
    assert!(
        r.json()["reasons"]
            .to_string()
            .contains("kite conn 1: stale"),
        "{}",
        r.body
    );
    let v = get(s.addr, "/api/status").json();
    assert_eq!(v["connections"][0]["stale"], true);
    assert_eq!(v["health"]["ready"], false);

    // Messages again, then the watchdog and a disconnect.
    s.status
        .last_message(Vendor::Kite, 1, layer1::clock::now_unix_ns());
    assert_eq!(get(s.addr, "/health/ready").status, 200);
    s.status.on_feed_event(&FeedEvent::Stale {
        conn: 1,
        vendor: Vendor::Kite,
        silent_ms: 6000,
    });
    s.status.on_feed_event(&FeedEvent::Disconnected {
        conn: 1,
        vendor: Vendor::Kite,
        reason: "CONN_STALE",
        retry_in_ms: 500,
        attempt: 1,
    });
    let r = get(s.addr, "/health/ready");
    assert_eq!(r.status, 503);
    assert!(
        r.json()["reasons"]
            .to_string()
            .contains("kite conn 1: backing_off"),
        "{}",
        r.body
    );
    // Kafka stopped: not ready whatever the feeds do.
    s.status.on_feed_event(&FeedEvent::State {
        conn: 1,
        vendor: Vendor::Kite,
        state: ConnState::Open,
    });
    s.status
        .last_message(Vendor::Kite, 1, layer1::clock::now_unix_ns());
    assert_eq!(get(s.addr, "/health/ready").status, 200);
    s.metrics.kafka_up.set(0);
    assert_eq!(get(s.addr, "/health/ready").status, 503);
    assert_eq!(
        get(s.addr, "/api/status").json()["health"]["overall"],
        "down"
    );
}

/// Ticks being dropped is never silent on the health routes: the journal refusing records at its
/// cap, or a feed queue the producer makes no room in, makes `/health` degraded (with the counts
/// behind it) and `/health/ready` 503 with the reason, outside market hours too, until it ends.
#[test]
fn dropping_ticks_degrades_health_and_readiness_until_it_stops() {
    let s = TestServer::start(|o| {
        o.market = always(MarketPhase::Closed);
    });
    s.metrics.kafka_up.set(1);
    let healthy = || {
        assert_eq!(get(s.addr, "/health").json()["status"], "ok");
        assert_eq!(get(s.addr, "/health/ready").status, 200);
    };
    let not_ready_because = |why: &str| {
        let r = get(s.addr, "/health/ready");
        assert_eq!(r.status, 503);
        assert!(r.body.contains(why), "{}", r.body);
    };
    healthy();
    assert_eq!(get(s.addr, "/health").json()["journal"]["full"], false);

    // The journal at its cap.
    s.metrics.journal_dropped_total.inc_by(7);
    s.metrics.journal_full.set(1);
    let h = get(s.addr, "/health").json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(
        (
            h["journal"]["full"].clone(),
            h["journal"]["dropped"].clone()
        ),
        (true.into(), 7.into())
    );
    not_ready_because("journal full: records dropped (7 so far)");
    assert_eq!(
        get(s.addr, "/api/status").json()["health"]["overall"],
        "degraded"
    );
    s.metrics.journal_full.set(0);
    healthy();

    // A feed queue dropping; the back-pressure waits before it are counted in the body.
    s.metrics
        .queue_full_total
        .with_label_values(&["feed"])
        .inc_by(3);
    s.metrics
        .ticks_dropped_total
        .with_label_values(&["kite"])
        .inc_by(5);
    s.metrics.feed_queues_dropping.inc();
    let h = get(s.addr, "/health").json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["feedQueues"]["fullWaits"], 3);
    assert_eq!(h["feedQueues"]["dropping"], 1);
    assert_eq!(h["feedQueues"]["ticksDropped"], 5);
    not_ready_because("feed queue(s) dropping ticks");
    s.metrics.feed_queues_dropping.dec();
    healthy();
}

#[test]
fn outside_market_hours_feeds_are_not_required() {
    let s = TestServer::start(|o| {
        o.market = always(MarketPhase::Closed);
        o.feeds = vec![Vendor::Kite, Vendor::Upstox];
    });
    s.metrics.kafka_up.set(1);
    let r = get(s.addr, "/health/ready");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.json()["market"], "closed");
    s.metrics.kafka_up.set(0);
    assert_eq!(get(s.addr, "/health/ready").status, 503);
}

#[test]
fn status_snapshot_follows_the_counters() {
    let s = TestServer::start(|o| o.market = always(MarketPhase::Open));
    s.metrics.kafka_up.set(1);
    s.metrics.redis_up.set(1);
    s.status.thread_placement(1, "feed-1", Some(3));
    s.status.on_feed_event(&FeedEvent::State {
        conn: 0x0100,
        vendor: Vendor::Upstox,
        state: ConnState::Open,
    });
    s.status.on_feed_event(&FeedEvent::Subscribed {
        conn: 0x0100,
        vendor: Vendor::Upstox,
        instruments: 250,
    });
    s.metrics
        .ticks_rejected_total
        .with_label_values(&["upstox", "VALIDATION_PRICE"])
        .inc_by(7);
    s.metrics.queue_depth.with_label_values(&["feed-1"]).set(42);
    s.metrics
        .queue_full_total
        .with_label_values(&["feed-1"])
        .inc_by(3);
    s.metrics.journal_bytes.set(123_456);
    s.metrics.kafka_in_flight.set(9);
    for _ in 0..1000 {
        s.metrics.handoff_latency.observe(12e-6);
        s.metrics.ack_latency.observe(3e-3);
    }
    // Counters move for about two seconds; the sampler turns them into rates.
    let ticks = s.metrics.ticks_total.with_label_values(&["upstox"]);
    let acked = s
        .metrics
        .kafka_acked_total
        .with_label_values(&["market.ticks"]);
    let end = Instant::now() + Duration::from_secs(2);
    while Instant::now() < end {
        ticks.inc_by(100);
        acked.inc_by(90);
        s.status
            .last_message(Vendor::Upstox, 0x0100, layer1::clock::now_unix_ns());
        std::thread::sleep(Duration::from_millis(20));
    }
    let v = get(s.addr, "/api/status").json();
    let rate = v["rates"]["ticks_in_per_s"].as_f64().unwrap();
    assert!(rate > 1000.0 && rate < 10_000.0, "ticks/s {rate}");
    assert!(v["rates"]["produced_per_s"].as_f64().unwrap() > 0.0);
    let hist = v["history"]["ticks_in"].as_array().unwrap();
    assert!(
        hist.len() >= 3 && hist.len() <= layer1::http::HISTORY_LEN,
        "{}",
        hist.len()
    );
    assert!(hist.iter().any(|x| x.as_f64().unwrap() > 0.0));
    assert_eq!(v["history"]["last_seq"], v["seq"]);
    let c = &v["connections"][0];
    assert_eq!(
        (
            c["vendor"].as_str(),
            c["conn"].as_u64(),
            c["thread"].as_str(),
            c["core"].as_u64()
        ),
        (Some("upstox"), Some(256), Some("feed-1"), Some(3))
    );
    assert_eq!(
        (
            c["state"].as_str(),
            c["instruments"].as_u64(),
            c["stale"].as_bool()
        ),
        (Some("open"), Some(250), Some(false))
    );
    assert_eq!(v["rejected"][0]["reason"], "VALIDATION_PRICE");
    assert_eq!(v["rejected"][0]["total"], 7);
    assert_eq!(v["queues"][0]["depth"], 42);
    assert_eq!(v["queues"][0]["full_total"], 3);
    assert_eq!(v["journal"]["bytes"], 123_456);
    assert_eq!(v["kafka"]["in_flight"], 9);
    let p50 = v["latency"]["handoff"]["p50_us"]
        .as_f64()
        .expect("handoff p50");
    assert!(p50 > 10.0 && p50 <= 20.0, "handoff p50 {p50}");
    let ack99 = v["latency"]["ack"]["p99_us"].as_f64().expect("ack p99");
    assert!(ack99 > 2000.0 && ack99 <= 5000.0, "ack p99 {ack99}");
    assert_eq!(v["market"]["phase"], "open");
    assert_eq!(v["health"]["overall"], "ok", "{}", v["health"]);
}

#[test]
fn post_backfill_reaches_a_real_redis_subscriber() {
    http_support::redis_service();
    let target = redis_target("post");
    let channel = target.commands_channel.clone();
    let s = TestServer::start(|o| {
        o.redis = Some(target);
        o.limits.trigger_interval = Duration::from_millis(600);
    });
    let (rx, join) = subscriber(&channel);
    let r = post(
        s.addr,
        "/api/backfill",
        &format!(
            "Origin: http://{}\r\nSec-Fetch-Site: same-origin\r\n",
            s.addr
        ),
        "{\"days\":3}",
    );
    assert_eq!(r.status, 202, "{}", r.body);
    assert_eq!(r.json()["receivers"], 1);
    let msg = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("published message");
    let ControlCommand::StartBackfill(p) =
        control::parse_command(msg.as_bytes()).expect("the control listener parses it");
    assert_eq!(
        (p.days, p.source.as_deref(), p.force),
        (Some(3), Some("http"), false)
    );
    // A second trigger at once is refused by the trigger interval.
    let r = post(s.addr, "/api/backfill", "", "");
    assert_eq!(r.status, 429);
    assert!(r.header("retry-after").is_some());
    std::thread::sleep(Duration::from_millis(700));
    // Bad bodies never reach Redis.
    let r = post(s.addr, "/api/backfill", "", "{\"days\":99}");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (400, Some("HTTP_BAD_BODY"))
    );
    // The same command from redis-cli's path and from the page are one thing.
    let r = post(s.addr, "/api/backfill", "", "");
    assert_eq!(r.status, 202, "{}", r.body);
    assert!(rx
        .recv_timeout(Duration::from_secs(5))
        .expect("second")
        .starts_with("START_BACKFILL"));
    drop(rx);
    drop(s);
    let _ = join.join();

    // Nobody listening: the page is told, not left waiting.
    let s = TestServer::start(|o| o.redis = Some(redis_target("nobody")));
    let r = post(s.addr, "/api/backfill", "", "");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (503, Some("HTTP_NO_LISTENER"))
    );
}

#[test]
fn backfill_status_and_refusals_reach_the_api() {
    http_support::redis_service();
    let target = redis_target("status");
    let key = target.status_key.clone();
    let channel = target.commands_channel.clone();
    let s = TestServer::start(|o| o.redis = Some(target));
    let wait_state = |want: &str| {
        common::wait_for(Duration::from_secs(5), || {
            let v = get(s.addr, "/api/status").json();
            (v["backfill"]["state"] == want).then_some(v)
        })
        .unwrap_or_else(|| panic!("backfill state {want} never shown"))
    };
    let mut r = redis();
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).expect("del");
    wait_state("idle");
    let running = serde_json::json!({
        "state": "running", "trigger": "http", "started": "2026-11-27T10:00:00Z",
        "progress": {"instruments_done": 2, "instruments_total": 8, "candles_done": 750, "candles_total": 3000},
        "current_instrument": "NSE:INFY", "errors": []
    });
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(running.to_string())
        .query(&mut r)
        .expect("set");
    let v = wait_state("running");
    assert_eq!(v["backfill"]["progress"]["instruments_total"], 8);
    assert_eq!(v["backfill"]["current_instrument"], "NSE:INFY");
    // While a job runs the trigger is refused here, before Redis.
    let (_rx, _join) = subscriber(&channel);
    let p = post(s.addr, "/api/backfill", "", "");
    assert_eq!(
        (p.status, p.json()["error"].as_str()),
        (409, Some("HTTP_BACKFILL_RUNNING"))
    );
    // A refusal written by the backfill thread shows its reason; a credential in it does not.
    let refused = serde_json::json!({
        "state": "refused", "reason": "market is open; use force (url ?access_token=zz-SECRET-zz-1234567890)",
        "errors": ["upstream 401: Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"]
    });
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg(refused.to_string())
        .query(&mut r)
        .expect("set");
    let v = wait_state("refused");
    let text = v["backfill"].to_string();
    assert!(text.contains("market is open; use force"), "{text}");
    assert!(
        !text.contains("zz-SECRET-zz-1234567890") && !text.contains("c2lnbmF0dXJl"),
        "{text}"
    );
    let _: () = redis::cmd("SET")
        .arg(&key)
        .arg("not json")
        .query(&mut r)
        .expect("set");
    let v = wait_state("unknown");
    assert!(v["backfill"]["error"]
        .as_str()
        .unwrap()
        .contains("not a JSON object"));
    let _: () = redis::cmd("DEL").arg(&key).query(&mut r).expect("del");
}

#[test]
fn remote_mode_needs_the_token_and_the_same_origin_for_post() {
    http_support::redis_service();
    const TOKEN: &str = "test-status-token-0123456789";
    let target = redis_target("remote");
    let channel = target.commands_channel.clone();
    // Bound to loopback for the test, secured as if it were reachable from elsewhere.
    let s = TestServer::start(|o| {
        o.exposure = Exposure::Remote {
            token: Some(Secret::new(TOKEN)),
        };
        o.redis = Some(target);
        o.limits.trigger_interval = Duration::from_millis(1);
    });
    let (rx, _join) = subscriber(&channel);
    let same = format!("Origin: http://{}\r\n", s.addr);
    let no_token = post(s.addr, "/api/backfill", &same, "");
    assert_eq!(
        (no_token.status, no_token.json()["error"].as_str()),
        (401, Some("HTTP_UNAUTHORIZED"))
    );
    assert!(no_token
        .header("www-authenticate")
        .unwrap()
        .starts_with("Bearer"));
    let wrong = post(
        s.addr,
        "/api/backfill",
        &format!("{same}Authorization: Bearer not-the-token-at-all\r\n"),
        "",
    );
    assert_eq!(wrong.status, 401);
    let basic = post(
        s.addr,
        "/api/backfill",
        &format!("{same}Authorization: Basic {TOKEN}\r\n"),
        "",
    );
    assert_eq!(basic.status, 401);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    for cross in [
        "Origin: http://evil.example\r\n".to_owned(),
        "Origin: null\r\n".to_owned(),
        format!("{same}Sec-Fetch-Site: cross-site\r\n"),
        "Sec-Fetch-Site: same-site\r\n".to_owned(),
    ] {
        let r = post(s.addr, "/api/backfill", &format!("{cross}{auth}"), "");
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (403, Some("HTTP_CROSS_ORIGIN")),
            "{cross}"
        );
    }
    assert!(rx.try_recv().is_err(), "nothing refused may reach Redis");
    let ok = post(
        s.addr,
        "/api/backfill",
        &format!("{same}Sec-Fetch-Site: same-origin\r\n{auth}"),
        "",
    );
    assert_eq!(ok.status, 202, "{}", ok.body);
    assert!(rx
        .recv_timeout(Duration::from_secs(5))
        .expect("published")
        .starts_with("START_BACKFILL"));
    // Remote mode accepts any Host (a proxy or DNS name), and GET needs no token...
    let g = send(
        s.addr,
        b"GET /api/status HTTP/1.1\r\nHost: layer1.example.net:8080\r\n\r\n",
    );
    assert_eq!(g.status, 200);
    assert_eq!(g.json()["security"]["token_required"], true);
    // ...and never shows it.
    for path in [
        "/",
        "/assets/app.js",
        "/api/status",
        "/metrics",
        "/health",
        "/health/ready",
    ] {
        assert!(
            !get(s.addr, path).body.contains(TOKEN),
            "{path} leaks the token"
        );
    }
}

#[test]
fn loopback_refuses_rebinding_hosts_and_cross_origin_posts() {
    let s = TestServer::start(|_| {});
    let r = send(
        s.addr,
        b"GET /api/status HTTP/1.1\r\nHost: attacker.example:8080\r\n\r\n",
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (421, Some("HTTP_HOST"))
    );
    let r = send(
        s.addr,
        format!(
            "GET /api/status HTTP/1.1\r\nHost: localhost:{}\r\n\r\n",
            s.addr.port()
        )
        .as_bytes(),
    );
    assert_eq!(r.status, 200);
    let r = post(
        s.addr,
        "/api/backfill",
        "Origin: http://attacker.example\r\n",
        "",
    );
    assert_eq!(r.status, 403);
}

fn elapsed_reply(
    addr: std::net::SocketAddr,
    parts: &[&[u8]],
    gap: Duration,
) -> (http_support::Reply, Duration) {
    let start = Instant::now();
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    for p in parts {
        // Stop sending once the server has answered or closed: writing into a closed connection
        // draws a reset that can discard the answer before it is read.
        s.set_read_timeout(Some(Duration::from_millis(1)))
            .expect("timeout");
        if s.peek(&mut [0u8; 1]).is_ok() {
            break;
        }
        if s.write_all(p).is_err() {
            break;
        }
        std::thread::sleep(gap);
    }
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    (http_support::parse(&buf), start.elapsed())
}

#[test]
fn hostile_requests_are_bounded() {
    let s = TestServer::start(|o| o.limits.read_timeout = Duration::from_secs(3));
    // Oversized head.
    let mut big = b"GET / HTTP/1.1\r\nX-Fill: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 20_000));
    assert_eq!(send(s.addr, &big).status, 413);
    // Oversized body.
    let r = send(
        s.addr,
        format!(
            "POST /api/backfill HTTP/1.1\r\nHost: {}\r\nContent-Length: 100000\r\n\r\n",
            s.addr
        )
        .as_bytes(),
    );
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (413, Some("HTTP_TOO_LARGE"))
    );
    // Malformed request lines and headers.
    for bad in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET /\r\n\r\n",
        b"GET / HTTP/9.9\r\n\r\n",
        b"GET noslash HTTP/1.1\r\n\r\n",
        b"G\x00T / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nbroken header\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"POST /api/backfill HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"\xff\xfe\xfd / HTTP/1.1\r\n\r\n",
    ] {
        let r = send(s.addr, bad);
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (400, Some("HTTP_BAD_REQUEST")),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // Slowloris: one byte at a time is cut off at the request deadline, not per read...
    let slow = std::thread::spawn({
        let addr = s.addr;
        move || {
            let parts: Vec<&[u8]> = b"GET /api/status HTTP/1.1\r\nHost: 127.0.0.1\r\nX: y\r\n\r\n"
                .chunks(1)
                .collect();
            elapsed_reply(addr, &parts, Duration::from_millis(150))
        }
    });
    // ...while everyone else is served at once.
    std::thread::sleep(Duration::from_millis(100));
    let t = Instant::now();
    assert_eq!(get(s.addr, "/health/live").status, 200);
    assert!(
        t.elapsed() < Duration::from_millis(1500),
        "a slow client held up others: {:?}",
        t.elapsed()
    );
    let (r, took) = slow.join().expect("slow client");
    assert_eq!(
        (r.status, r.json()["error"].as_str()),
        (408, Some("HTTP_TIMEOUT"))
    );
    assert!(
        took >= Duration::from_millis(2900) && took < Duration::from_secs(6),
        "{took:?}"
    );
    // A client that connects and sends nothing is dropped at the deadline too.
    let (r, took) = elapsed_reply(s.addr, &[], Duration::ZERO);
    assert_eq!(r.status, 408);
    assert!(took < Duration::from_secs(6), "{took:?}");
    // Still serving.
    assert_eq!(get(s.addr, "/health/live").status, 200);
}

/// Opens an event stream; returns the connection and the head plus first event.
fn open_stream(addr: std::net::SocketAddr) -> (TcpStream, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        s,
        "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .expect("write");
    let text = read_until(&mut s, |t| {
        t.matches("data: ").count() >= 1 || t.starts_with("HTTP/1.1 503")
    });
    (s, text)
}

fn read_until(s: &mut TcpStream, done: impl Fn(&str) -> bool) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let end = Instant::now() + Duration::from_secs(5);
    while Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(_) => break,
        }
        if done(&String::from_utf8_lossy(&buf)) {
            break;
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

#[test]
fn live_stream_paces_events_and_bounds_streams() {
    let s = TestServer::start(|o| o.limits.max_streams = 2);
    let (mut a, first) = open_stream(s.addr);
    assert!(
        first.starts_with("HTTP/1.1 200") && first.contains("Content-Type: text/event-stream"),
        "{first}"
    );
    let (_b, first_b) = open_stream(s.addr);
    assert!(first_b.starts_with("HTTP/1.1 200"));
    // A third stream is refused while two are open.
    let (_c, refused) = open_stream(s.addr);
    assert!(
        refused.starts_with("HTTP/1.1 503") && refused.contains("HTTP_TOO_MANY_STREAMS"),
        "{refused}"
    );
    // Events arrive at most every 500 ms, each a whole snapshot without history.
    let t = Instant::now();
    let text = read_until(&mut a, |t| t.matches("data: ").count() >= 4);
    let took = t.elapsed();
    let events: Vec<serde_json::Value> = text
        .split("\n\n")
        .filter_map(|e| e.trim_start_matches(|c| c != 'd').strip_prefix("data: "))
        .map(|d| serde_json::from_str(d).expect("event json"))
        .collect();
    assert!(events.len() >= 3, "{text}");
    assert!(
        took >= Duration::from_millis(950),
        "4 events in {took:?}: faster than one per 500 ms"
    );
    assert!(events
        .iter()
        .all(|e| e.get("history").is_none() && e["engine"]["version"] == "9.9.9-test"));
    let seqs: Vec<u64> = events.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(seqs.windows(2).all(|w| w[1] > w[0]), "{seqs:?}");
    // A closed stream frees its slot.
    drop(a);
    let reopened = common::wait_for(Duration::from_secs(5), || {
        let (c, head) = open_stream(s.addr);
        head.starts_with("HTTP/1.1 200").then_some(c)
    });
    assert!(reopened.is_some(), "slot never freed");
}

#[test]
fn per_client_request_rate_is_bounded() {
    let s = TestServer::start(|o| {
        o.limits.per_client_burst = 5;
        o.limits.per_client_per_s = 2;
    });
    let statuses: Vec<u16> = (0..8).map(|_| get(s.addr, "/health/live").status).collect();
    assert_eq!(&statuses[..5], &[200; 5]);
    let limited = get(s.addr, "/health/live");
    assert_eq!(
        (limited.status, limited.json()["error"].as_str()),
        (429, Some("HTTP_RATE_LIMITED"))
    );
    assert!(
        limited
            .header("retry-after")
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(get(s.addr, "/health/live").status, 200);
}

/// Every metric the Grafana dashboard and the alert rules query is one the engine exports.
#[test]
fn dashboard_and_alert_rules_query_exported_metrics() {
    let m = layer1::metrics::Metrics::new().expect("metrics");
    let _feed = layer1::feed::FeedMetrics::from_process(&m).expect("feed metrics");
    let mut known: std::collections::BTreeSet<String> = ["up".to_owned()].into();
    for mf in prometheus::Registry::gather(&m.registry) {
        let name = mf.name().to_owned();
        for suffix in ["", "_bucket", "_sum", "_count"] {
            known.insert(format!("{name}{suffix}"));
        }
    }
    // Families with labels are only gathered once they have a child; list the vectors too.
    for name in [
        "ingestion_ticks_total",
        "ingestion_ticks_rejected_total",
        "websocket_packets_total",
        "websocket_data_bytes_total",
        "external_api_calls_total",
        "kafka_records_sent_total",
        "kafka_records_acked_total",
        "kafka_delivery_failures_total",
        "kafka_records_refused_total",
        "queue_full_total",
        "queue_depth",
        "ticks_dropped_total",
        "control_commands_total",
        "feed_connection_state",
        "feed_reconnects_total",
        "feed_stale_total",
        "feed_last_message_age_seconds",
        "feed_frames_refused_total",
    ] {
        known.insert(name.to_owned());
    }
    let not_metrics = ["histogram_quantile", "day_of_week", "label_values"];
    let check = |text: &str, what: &str| {
        let mut n = 0;
        for tok in text.split(|c: char| !(c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
        {
            if tok.contains('_') && !tok.starts_with('_') && !not_metrics.contains(&tok) {
                assert!(
                    known.contains(tok),
                    "{what} uses {tok}, which the engine does not export"
                );
                n += 1;
            }
        }
        n
    };
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dash: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("docs/grafana-dashboard.json")).expect("dashboard"),
    )
    .expect("json");
    let mut exprs = 0;
    for p in dash["panels"].as_array().expect("panels") {
        for t in p["targets"].as_array().into_iter().flatten() {
            exprs += check(t["expr"].as_str().expect("expr"), "the dashboard");
        }
    }
    assert!(exprs > 20, "{exprs}");
    let rules = std::fs::read_to_string(root.join("docs/prometheus-alerts.yml")).expect("rules");
    let exprs: String = rules
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    assert!(check(&exprs, "the alert rules") > 15);
}
