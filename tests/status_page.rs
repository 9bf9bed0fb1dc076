//! The status page in a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/chromium.sh` when absent; no browser is downloaded), driven over the DevTools
//! protocol with tungstenite: the page loads, shows a live connection and a tick rate above
//! zero, draws its charts, and a real mouse click on **Trigger Backfill** publishes the command
//! on Redis and shows the job's progress and completion. A screenshot is saved to
//! `tests/artifacts/status-page.png` (git-ignored); with `LAYER1_DOCS_SCREENSHOT=1` also to
//! `docs/status-page.png`.
//!
//! The server state here is populated by the test (connection entries, counters moving at about
//! 1000 ticks/s, a real Redis status key written by a stand-in backfill job that reacts to the
//! published command) until the engine wires the simulator, feed threads and backfill into the
//! status registry; then the same checks run against `layer1 demo`'s engine.
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
    io::Write,
    net::TcpStream,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use http_support::TestServer;
use layer1::{
    feed::{ConnState, FeedEvent},
    http::RedisTarget,
    status::{ConnectionStatus, MarketPhase, MarketSource},
    vendor::Vendor,
};
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The Chromium binary, installed from Debian's packages when absent.
fn chromium_binary() -> PathBuf {
    let out = Command::new("bash")
        .arg(root().join("scripts/chromium.sh"))
        .stderr(Stdio::inherit())
        .output()
        .expect("scripts/chromium.sh");
    assert!(out.status.success(), "scripts/chromium.sh failed");
    let path = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_owned();
    assert!(Path::new(&path).exists(), "no chromium at {path:?}");
    PathBuf::from(path)
}

/// A headless Chromium with a fresh profile, killed and cleaned up on drop.
struct Browser {
    child: Child,
    profile: PathBuf,
    port: u16,
}

impl Browser {
    fn launch(url: &str) -> Browser {
        let bin = chromium_binary();
        let profile = std::env::temp_dir().join(common::unique("layer1-chromium"));
        std::fs::create_dir_all(&profile).expect("profile dir");
        let log = std::fs::File::create(profile.join("chromium.log")).expect("log file");
        let child = Command::new(bin)
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-extensions",
                "--disable-default-apps",
                "--mute-audio",
                "--hide-scrollbars",
                "--window-size=1280,1900",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg(url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start chromium");
        let mut b = Browser {
            child,
            profile,
            port: 0,
        };
        // Chromium writes the DevTools port it picked into the profile directory.
        let file = b.profile.join("DevToolsActivePort");
        b.port = common::wait_for(Duration::from_secs(30), || {
            std::fs::read_to_string(&file)
                .ok()
                .and_then(|t| t.lines().next().and_then(|l| l.trim().parse().ok()))
        })
        .unwrap_or_else(|| {
            panic!(
                "chromium did not start; log:\n{}",
                std::fs::read_to_string(b.profile.join("chromium.log")).unwrap_or_default()
            )
        });
        b
    }

    /// The DevTools WebSocket of the page showing `url_prefix`.
    fn page(&self, url_prefix: &str) -> Cdp {
        let ws_url = common::wait_for(Duration::from_secs(15), || {
            let addr = format!("127.0.0.1:{}", self.port).parse().ok()?;
            let r = http_support::send(
                addr,
                format!(
                    "GET /json/list HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
                    self.port
                )
                .as_bytes(),
            );
            let list: Value = serde_json::from_str(&r.body).ok()?;
            list.as_array()?
                .iter()
                .find(|t| {
                    t["type"] == "page"
                        && t["url"].as_str().is_some_and(|u| u.starts_with(url_prefix))
                })
                .and_then(|t| t["webSocketDebuggerUrl"].as_str().map(str::to_owned))
        })
        .expect("page target");
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .expect("host")
            .to_owned();
        let stream = TcpStream::connect(&host).expect("devtools socket");
        stream
            .set_read_timeout(Some(Duration::from_secs(15)))
            .expect("timeout");
        let (ws, _) =
            tungstenite::client::client(ws_url.as_str(), stream).expect("devtools handshake");
        Cdp { ws, next: 0 }
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // SIGTERM first so Chromium takes its renderer and GPU processes down with it; SIGKILL
        // if it has not gone within 5 s.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = common::wait_for(Duration::from_secs(5), || {
            self.child.try_wait().ok().flatten()
        });
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// A DevTools protocol session over one page's WebSocket.
struct Cdp {
    ws: tungstenite::WebSocket<TcpStream>,
    next: u64,
}

impl Cdp {
    fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        self.ws
            .send(tungstenite::Message::text(
                json!({"id": id, "method": method, "params": params}).to_string(),
            ))
            .expect("send");
        loop {
            let msg = self.ws.read().expect("devtools read");
            let Ok(text) = msg.to_text() else { continue };
            let Ok(v) = serde_json::from_str::<Value>(text) else {
                continue;
            };
            if v["id"] == id {
                assert!(v.get("error").is_none(), "{method}: {v}");
                return v["result"].clone();
            }
        }
    }

    fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(r.get("exceptionDetails").is_none(), "{expr}: {r}");
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it returns something truthy.
    fn wait_for(&mut self, what: &str, limit: Duration, expr: &str) -> Value {
        let end = Instant::now() + limit;
        loop {
            let v = self.eval(expr);
            if !(v.is_null() || v == false || v == "" || v == 0) {
                return v;
            }
            assert!(
                Instant::now() < end,
                "timed out waiting for {what}; page state: {}",
                self.eval(DOM_STATE)
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn click(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const r = document.querySelector({selector:?}).getBoundingClientRect(); return {{x: r.x + r.width / 2, y: r.y + r.height / 2}}; }})()"
        ));
        for kind in ["mouseMoved", "mousePressed", "mouseReleased"] {
            self.call("Input.dispatchMouseEvent", json!({"type": kind, "x": at["x"], "y": at["y"], "button": "left", "clickCount": 1}));
        }
    }

    fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64_decode(r["data"].as_str().expect("png data"))
    }
}

/// What the page exposes of its state, for failure messages.
const DOM_STATE: &str = "JSON.stringify({ds: Object.assign({}, document.body.dataset), msg: document.getElementById('trigger-msg').textContent, feeds: document.querySelector('#feeds tbody').innerText})";

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.bytes().filter_map(val) {
        acc = (acc << 6) | c;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Stands in for the backfill thread until the engine wires it: waits for `START_BACKFILL` on
/// the channel, then writes `running` with growing progress and finally `completed` to the key.
fn backfill_stand_in(
    target: RedisTarget,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Option<String>> {
    let (ready_tx, ready_rx) = crossbeam_channel::bounded(1);
    let join = std::thread::spawn(move || {
        let client = redis::Client::open(target.url.as_str()).expect("client");
        let mut writer = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("writer");
        let mut sub = client
            .get_connection_with_timeout(Duration::from_secs(2))
            .expect("subscriber");
        sub.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut ps = sub.as_pubsub();
        ps.subscribe(&target.commands_channel).expect("subscribe");
        ready_tx.send(()).expect("ready");
        let command = loop {
            if stop.load(Ordering::Relaxed) {
                return None;
            }
            match ps.get_message() {
                Ok(m) => break m.get_payload::<String>().expect("text"),
                Err(e) if e.is_timeout() => {}
                Err(e) => panic!("{e}"),
            }
        };
        let started = layer1::clock::format_rfc3339_ms(layer1::clock::now_unix_ns());
        let set = |w: &mut redis::Connection, v: Value| {
            let _: () = redis::cmd("SET")
                .arg(&target.status_key)
                .arg(v.to_string())
                .query(w)
                .expect("set");
        };
        const N: u64 = 6;
        let symbols = [
            "NSE:INFY",
            "NSE:TCS",
            "NSE:RELIANCE",
            "NSE:HDFCBANK",
            "NSE:ICICIBANK",
            "NSE:SBIN",
        ];
        for (i, sym) in (0..N).zip(symbols) {
            set(
                &mut writer,
                json!({
                    "state": "running", "trigger": "http", "started": started,
                    "progress": {"instruments_done": i, "instruments_total": N, "candles_done": i * 1875, "candles_total": N * 1875},
                    "current_instrument": sym, "errors": []
                }),
            );
            std::thread::sleep(Duration::from_millis(700));
        }
        set(
            &mut writer,
            json!({
                "state": "completed", "trigger": "http", "started": started,
                "finished": layer1::clock::format_rfc3339_ms(layer1::clock::now_unix_ns()),
                "progress": {"instruments_done": N, "instruments_total": N, "candles_done": N * 1875, "candles_total": N * 1875},
                "errors": []
            }),
        );
        Some(command)
    });
    ready_rx
        .recv_timeout(Duration::from_secs(5))
        .expect("stand-in subscribed");
    join
}

#[test]
fn status_page_shows_live_feeds_and_runs_a_backfill_in_chromium() {
    http_support::redis_service();
    let target = RedisTarget {
        url: common::redis_url(),
        commands_channel: common::unique("test:page:commands"),
        status_key: common::unique("test:page:backfill"),
    };
    let server = TestServer::start(|o| {
        o.redis = Some(target.clone());
        o.feeds = vec![Vendor::Kite, Vendor::Upstox];
        o.market = MarketSource::new("test: always open", |_| MarketPhase::Open);
    });
    let (m, st) = (server.metrics, server.status);
    m.kafka_up.set(1);
    m.redis_up.set(1);
    st.thread_placement(0, "feed-0", Some(1));
    st.on_feed_event(&FeedEvent::State {
        conn: 0,
        vendor: Vendor::Kite,
        state: ConnState::Open,
    });
    st.on_feed_event(&FeedEvent::Subscribed {
        conn: 0,
        vendor: Vendor::Kite,
        instruments: 120,
    });
    st.connection_update(ConnectionStatus {
        vendor: Vendor::Upstox,
        conn: 1,
        state: ConnState::Open,
        reconnects: 2,
        instruments: 80,
        last_message_ns: None,
    });
    m.ticks_rejected_total
        .with_label_values(&["kite", "VALIDATION_PRICE"])
        .inc_by(3);
    m.queue_depth.with_label_values(&["feed-0"]).set(12);
    m.journal_bytes.set(0);

    // Counters move like a feed at ~1000 ticks/s until the test ends.
    let stop = Arc::new(AtomicBool::new(false));
    let feeder = std::thread::spawn({
        let stop = Arc::clone(&stop);
        move || {
            let ticks_k = m.ticks_total.with_label_values(&["kite"]);
            let ticks_u = m.ticks_total.with_label_values(&["upstox"]);
            let acked = m.kafka_acked_total.with_label_values(&["market.ticks"]);
            let mut last_touch = Instant::now() - Duration::from_secs(1);
            while !stop.load(Ordering::Relaxed) {
                ticks_k.inc_by(30);
                ticks_u.inc_by(20);
                acked.inc_by(50);
                for i in 0..50 {
                    m.handoff_latency.observe(8e-6 + f64::from(i) * 2e-7);
                    m.ack_latency.observe(1.5e-3 + f64::from(i) * 4e-5);
                }
                if last_touch.elapsed() >= Duration::from_millis(500) {
                    let now = layer1::clock::now_unix_ns();
                    st.last_message(Vendor::Kite, 0, now);
                    st.last_message(Vendor::Upstox, 1, now);
                    last_touch = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    });
    let job = backfill_stand_in(target.clone(), Arc::clone(&stop));

    let url = format!("http://{}/", server.addr);
    let browser = Browser::launch(&url);
    let mut page = browser.page(&url);
    page.call("Page.enable", json!({}));
    page.call("Runtime.enable", json!({}));

    // Live connections and a tick rate above zero, from the event stream.
    page.wait_for("a live kite connection", Duration::from_secs(20), "document.querySelector('#feeds tbody tr[data-vendor=\"kite\"]')?.dataset.state === 'open' && Number(document.body.dataset.openConnections) >= 2");
    let rate = page.wait_for(
        "ticks/s > 0",
        Duration::from_secs(10),
        "Number(document.body.dataset.ticksPerS) > 0 && Number(document.body.dataset.ticksPerS)",
    );
    assert!(rate.as_f64().unwrap() > 100.0, "rate {rate}");
    assert_eq!(
        page.eval("document.getElementById('link').dataset.state"),
        "live"
    );
    assert_eq!(
        page.eval("document.getElementById('market').textContent"),
        "market: open"
    );
    assert!(page
        .eval("document.getElementById('engine-version').textContent")
        .as_str()
        .unwrap()
        .contains("9.9.9-test"));
    assert!(page
        .eval("document.querySelector('#rejected tbody').innerText")
        .as_str()
        .unwrap()
        .contains("VALIDATION_PRICE"));
    let feeds = page.eval("document.querySelector('#feeds tbody').innerText");
    assert!(feeds.as_str().unwrap().contains("feed-0"), "{feeds}");
    // The ticks chart has a line above its baseline once a few points exist.
    page.wait_for("the ticks chart", Duration::from_secs(10), "(() => { const c = document.getElementById('chart-in'); const g = c.getContext('2d'); const d = g.getImageData(0, 0, c.width, Math.floor(c.height * 0.8)).data; let n = 0; for (let i = 0; i < d.length; i += 4) { if (d[i + 2] > 200 && d[i] < 120) n++; } return n > 20; })()");
    page.wait_for(
        "latency figures",
        Duration::from_secs(5),
        "document.querySelector('#lat-handoff td').textContent.includes('µs')",
    );

    // A real mouse click on the header button.
    page.wait_for(
        "the button enabled",
        Duration::from_secs(5),
        "!document.getElementById('trigger').disabled",
    );
    page.click("#trigger");
    let mut saw_progress = false;
    let mut saw_disabled = false;
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let s = page.eval("JSON.stringify({state: document.body.dataset.backfillState, pct: Number(document.body.dataset.backfillPct), disabled: document.getElementById('trigger').disabled, bar: document.getElementById('bf-bar').style.width})");
        let s: Value = serde_json::from_str(s.as_str().unwrap()).unwrap();
        if s["state"] == "running" {
            let pct = s["pct"].as_f64().unwrap();
            saw_progress |= pct > 0.0 && pct < 100.0 && s["bar"] == format!("{pct}%");
            saw_disabled |= s["disabled"] == true;
        }
        if s["state"] == "completed" {
            assert_eq!(s["pct"], 100.0, "{s}");
            break;
        }
        assert!(
            Instant::now() < end,
            "no completion; page: {}",
            page.eval(DOM_STATE)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_progress,
        "the progress bar never showed partial progress"
    );
    assert!(saw_disabled, "the button stayed enabled while the job ran");
    assert_eq!(
        page.eval("document.getElementById('trigger').disabled"),
        false
    );
    assert_eq!(page.eval("document.body.dataset.triggerStatus"), "202");
    let command = job
        .join()
        .expect("stand-in")
        .expect("a command was published");
    assert!(
        command.starts_with("START_BACKFILL") && command.contains("\"source\":\"http\""),
        "{command}"
    );

    page.wait_for(
        "the completion message",
        Duration::from_secs(5),
        "document.getElementById('trigger-msg').textContent === 'completed'",
    );
    // Let the progress bar's 0.3 s width transition finish before the picture.
    std::thread::sleep(Duration::from_millis(600));
    let png = page.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "screenshot"
    );
    let dir = root().join("tests/artifacts");
    std::fs::create_dir_all(&dir).expect("artifacts dir");
    std::fs::File::create(dir.join("status-page.png"))
        .and_then(|mut f| f.write_all(&png))
        .expect("write screenshot");
    if std::env::var_os("LAYER1_DOCS_SCREENSHOT").is_some() {
        std::fs::write(root().join("docs/status-page.png"), &png).expect("docs screenshot");
    }

    // Phone-sized viewport: one column, nothing wider than the screen (the feeds table scrolls
    // inside its own box).
    page.call(
        "Emulation.setDeviceMetricsOverride",
        json!({"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": true}),
    );
    page.wait_for(
        "the phone layout",
        Duration::from_secs(5),
        "document.documentElement.clientWidth === 390",
    );
    std::thread::sleep(Duration::from_millis(300));
    let fits = page.eval("window.innerWidth === 390 && document.documentElement.scrollWidth <= 390 && document.getElementById('trigger').getBoundingClientRect().right <= 390");
    assert_eq!(
        fits,
        true,
        "page wider than a phone: {}",
        page.eval("JSON.stringify([window.innerWidth, document.documentElement.scrollWidth])")
    );
    let charts_stacked = page.eval("(() => { const a = document.getElementById('chart-in').getBoundingClientRect(); const b = document.getElementById('chart-out').getBoundingClientRect(); return b.top >= a.bottom; })()");
    assert_eq!(charts_stacked, true);
    std::fs::write(dir.join("status-page-phone.png"), page.screenshot()).expect("phone screenshot");

    stop.store(true, Ordering::Relaxed);
    feeder.join().expect("feeder");
    let mut r = redis::Client::open(target.url.as_str())
        .unwrap()
        .get_connection()
        .unwrap();
    let _: () = redis::cmd("DEL")
        .arg(&target.status_key)
        .query(&mut r)
        .unwrap();
    drop(page);
    drop(browser);
}
