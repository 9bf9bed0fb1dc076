//! The status page in a real headless Chromium (Debian's `chromium`, installed by
//! `scripts/chromium.sh` when absent; no browser is downloaded), driven over the DevTools
//! protocol with tungstenite, against the real engine: the vendor simulator streams Kite and
//! Upstox ticks into `Engine::start`'s feed threads, and the historical REST simulator serves the
//! backfill. The page loads, shows live connections and a tick rate above zero, draws its charts,
//! and a real mouse click on **Trigger Backfill** goes `POST /api/backfill` -> Redis
//! `system:commands` -> control thread -> backfill thread -> candles to Kafka, with the job's
//! progress and completion read back from `system:layer1:backfill` onto the page.
//!
//! The page's button sends no `force`, so the engine refuses a backfill while the market is open;
//! the test gives the engine a `HOLIDAYS_FILE` marking today (and tomorrow, for a run across IST
//! midnight) a holiday, so the market is closed whenever it runs. The backfill instruments carry
//! symbols unique to the run, so coverage left in Redis by earlier runs never leaves the job with
//! nothing to fetch; the test deletes its coverage keys at the end.
//!
//! Screenshots go to `tests/artifacts/status-page.png` and `status-page-phone.png`
//! (git-ignored); with `LAYER1_DOCS_SCREENSHOT=1` the desktop one also to `docs/status-page.png`.
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
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use layer1::{
    calendar::{self, DAY_MS},
    config::Config,
    engine::{Engine, StopReport},
    shutdown::Shutdown,
    sim::{
        historical::{HistoricalConfig, HistoricalServer},
        SimConfig, SimHandle, Simulator,
    },
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

/// Kite instruments the feed subscribes (the simulator streams them).
const KITE_TOKENS: [u32; 4] = [408065, 738561, 779521, 2953217];
/// Upstox instruments the feed subscribes.
const UPSTOX_KEYS: [&str; 2] = ["NSE_EQ|INE002A01018", "NSE_EQ|INE009A01021"];
/// What the backfill covers: Kite tokens with their base symbols (a run suffix is appended).
const BACKFILL: [(u32, &str); 6] = [
    (408065, "INFY"),
    (738561, "RELIANCE"),
    (779521, "SBIN"),
    (2953217, "TCS"),
    (341249, "HDFCBANK"),
    (1270529, "ICICIBANK"),
];

/// A holidays file: the compiled-in list without today's and tomorrow's rows, plus both as
/// holidays (IST dates), so the engine sees the market closed whatever the wall clock says.
fn holidays_file(dir: &Path) -> PathBuf {
    let now_ms = i64::try_from(layer1::clock::now_unix_ms()).unwrap();
    let days: Vec<String> = [now_ms, now_ms + DAY_MS]
        .iter()
        .map(|&ms| calendar::format_date(calendar::ist_date(ms)))
        .collect();
    let mut text: String = calendar::BUILTIN_HOLIDAYS
        .lines()
        .filter(|l| !days.iter().any(|d| l.starts_with(d.as_str())))
        .map(|l| format!("{l}\n"))
        .collect();
    for d in &days {
        text.push_str(&format!(
            "{d},holiday,,,layer1 status page test: market closed,confirmed\n"
        ));
    }
    let path = dir.join("holidays.csv");
    std::fs::write(&path, text).expect("holidays file");
    path
}

/// The engine running against both simulators; stopped (and its threads joined) on drop, so a
/// failed assertion never leaves it streaming.
struct Running {
    sim: Option<SimHandle>,
    _historical: HistoricalServer,
    shutdown: Shutdown,
    engine: Option<JoinHandle<StopReport>>,
    http: std::net::SocketAddr,
    topic_ohlc: String,
    dir: PathBuf,
    /// Unique suffix of the backfill symbols.
    tag: String,
}

impl Running {
    fn start() -> Running {
        common::services();
        let sc = SimConfig {
            ticks_per_sec: 1_000,
            seed: 11,
            ..SimConfig::default()
        };
        let sim = Simulator::start(sc.clone()).expect("vendor simulator");
        let historical =
            HistoricalServer::start(HistoricalConfig::default()).expect("historical simulator");
        let dir = std::env::temp_dir().join(common::unique("layer1-status-page"));
        std::fs::create_dir_all(&dir).expect("run dir");
        let holidays = holidays_file(&dir);
        // Short and unique to the run: `T<pid><ns>` (symbols are at most 64 characters).
        let tag = common::unique("T").replace('.', "");
        let backfill: Vec<String> = BACKFILL
            .iter()
            .map(|(t, s)| format!("kite:{t}=NSE:{s}-{tag}"))
            .collect();
        let mut subscribe: Vec<String> = KITE_TOKENS.iter().map(|t| format!("kite:{t}")).collect();
        subscribe.extend(UPSTOX_KEYS.iter().map(|k| format!("upstox:{k}")));
        let topic_ohlc = common::unique("test.page.ohlc");
        let vars: Vec<(&str, String)> = vec![
            ("KAFKA_BROKERS", common::brokers()),
            ("REDIS_URL", common::redis_url()),
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("KAFKA_TOPIC_TICKS", common::unique("test.page.ticks")),
            ("KAFKA_TOPIC_RAW", common::unique("test.page.raw")),
            ("KAFKA_TOPIC_DLQ", common::unique("test.page.dlq")),
            ("KAFKA_TOPIC_OHLC", topic_ohlc.clone()),
            ("KAFKA_PARTITIONS", "1".into()),
            ("JOURNAL_DIR", dir.join("journal").display().to_string()),
            ("CORE_PINNING", "off".into()),
            ("KITE_WS_URL", sim.kite_url()),
            ("KITE_API_KEY", sc.kite_api_key.clone()),
            ("KITE_ACCESS_TOKEN", sc.kite_access_token.clone()),
            ("UPSTOX_AUTHORIZE_URL", sim.upstox_authorize_url()),
            ("UPSTOX_ACCESS_TOKEN", sc.upstox_access_token.clone()),
            ("KITE_API_URL", historical.base_url()),
            ("UPSTOX_API_URL", historical.base_url()),
            ("SUBSCRIBE", subscribe.join(",")),
            ("BACKFILL_INSTRUMENTS", backfill.join(",")),
            ("BACKFILL_AUTO", "false".into()),
            ("BACKFILL_DAYS", "3".into()),
            // One request a second: six instruments take about five seconds, long enough for
            // the page (500 ms cadence) to show the job part-way.
            ("KITE_HISTORICAL_RPS", "1".into()),
            ("HOLIDAYS_FILE", holidays.display().to_string()),
        ];
        let config = Config::from_lookup(&move |k| {
            vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone())
        })
        .expect("config");
        let shutdown = Shutdown::new();
        // A status left by an earlier test's engine (e.g. a failed job) must not be what the
        // page shows when this run's button is clicked.
        let mut r = redis::Client::open(common::redis_url().as_str())
            .unwrap()
            .get_connection_with_timeout(Duration::from_secs(2))
            .unwrap();
        let _: i64 = redis::cmd("DEL")
            .arg(layer1::backfill::STATUS_KEY)
            .query(&mut r)
            .unwrap();
        let engine = Engine::start(Arc::new(config), shutdown.clone()).expect("engine");
        let http = engine.http_addr();
        // The engine's own loop hands the control thread's commands to the backfill thread.
        let engine = std::thread::spawn(move || engine.run_until_shutdown());
        Running {
            sim: Some(sim),
            _historical: historical,
            shutdown,
            engine: Some(engine),
            http,
            topic_ohlc,
            dir,
            tag,
        }
    }

    /// Stops the engine (bounded by its shutdown timeout) and the simulator.
    fn stop(&mut self) -> Option<StopReport> {
        self.shutdown.trigger();
        let report = self.engine.take().and_then(|j| j.join().ok());
        if let Some(sim) = self.sim.take() {
            sim.shutdown();
        }
        report
    }

    /// Deletes the coverage keys of this run's symbols (live and backfilled).
    fn delete_coverage(&self) {
        let Ok(mut r) = redis::Client::open(common::redis_url().as_str())
            .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(2)))
        else {
            return;
        };
        let pattern = format!("{}:cov:*-{}:*", layer1::backfill::KEY_PREFIX, self.tag);
        let mut cursor = 0u64;
        // Bounded: a SCAN pass ends when the cursor comes back to 0.
        for _ in 0..10_000 {
            let Ok((next, keys)): redis::RedisResult<(u64, Vec<String>)> = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query(&mut r)
            else {
                return;
            };
            if !keys.is_empty() {
                let _: redis::RedisResult<u64> = redis::cmd("DEL").arg(&keys).query(&mut r);
            }
            if next == 0 {
                return;
            }
            cursor = next;
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop();
        self.delete_coverage();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The backfill status document the engine wrote, read straight from Redis.
fn backfill_status() -> Value {
    let mut r = redis::Client::open(common::redis_url().as_str())
        .unwrap()
        .get_connection_with_timeout(Duration::from_secs(2))
        .unwrap();
    let raw: Option<String> = redis::cmd("GET")
        .arg(layer1::backfill::STATUS_KEY)
        .query(&mut r)
        .unwrap();
    raw.map_or(Value::Null, |t| serde_json::from_str(&t).unwrap())
}

#[test]
fn status_page_shows_live_feeds_and_runs_a_backfill_in_chromium() {
    let mut run = Running::start();
    let url = format!("http://{}/", run.http);
    let browser = Browser::launch(&url);
    let mut page = browser.page(&url);
    page.call("Page.enable", json!({}));
    page.call("Runtime.enable", json!({}));

    // Live connections (Kite and Upstox, from the simulator) and a tick rate above zero, from the
    // event stream.
    page.wait_for("live kite and upstox connections", Duration::from_secs(30), "document.querySelector('#feeds tbody tr[data-vendor=\"kite\"]')?.dataset.state === 'open' && document.querySelector('#feeds tbody tr[data-vendor=\"upstox\"]')?.dataset.state === 'open' && Number(document.body.dataset.openConnections) >= 2");
    let rate = page.wait_for(
        "ticks/s > 0",
        Duration::from_secs(15),
        "Number(document.body.dataset.ticksPerS) > 0 && Number(document.body.dataset.ticksPerS)",
    );
    assert!(rate.as_f64().unwrap() > 0.0, "rate {rate}");
    assert_eq!(
        page.eval("document.getElementById('link').dataset.state"),
        "live"
    );
    // The engine's calendar (the test's HOLIDAYS_FILE) marks today a holiday; on an IST weekend
    // the calendar reports the weekend first ("closed"). Either way the market is shut.
    let market = page.eval("document.getElementById('market').textContent");
    assert!(
        market == "market: holiday" || market == "market: closed",
        "market {market}"
    );
    assert!(page
        .eval("document.getElementById('engine-version').textContent")
        .as_str()
        .unwrap()
        .contains(env!("CARGO_PKG_VERSION")));
    let feeds = page.eval("document.querySelector('#feeds tbody').innerText");
    assert!(feeds.as_str().unwrap().contains("feed-0"), "{feeds}");
    // The ticks chart has a line above its baseline once a few points exist.
    page.wait_for("the ticks chart", Duration::from_secs(15), "(() => { const c = document.getElementById('chart-in'); const g = c.getContext('2d'); const d = g.getImageData(0, 0, c.width, Math.floor(c.height * 0.8)).data; let n = 0; for (let i = 0; i < d.length; i += 4) { if (d[i + 2] > 200 && d[i] < 120) n++; } return n > 20; })()");
    page.wait_for(
        "latency figures",
        Duration::from_secs(15),
        "/[0-9]/.test(document.querySelector('#lat-handoff td').textContent)",
    );

    // A real mouse click on the header button.
    page.wait_for(
        "the button enabled",
        Duration::from_secs(10),
        "!document.getElementById('trigger').disabled",
    );
    page.click("#trigger");
    let mut saw_progress = false;
    let mut saw_disabled = false;
    let mut saw_running = false;
    let end = Instant::now() + Duration::from_secs(60);
    loop {
        let s = page.eval("JSON.stringify({state: document.body.dataset.backfillState, pct: Number(document.body.dataset.backfillPct), disabled: document.getElementById('trigger').disabled, bar: document.getElementById('bf-bar').style.width, msg: document.getElementById('trigger-msg').textContent})");
        let s: Value = serde_json::from_str(s.as_str().unwrap()).unwrap();
        // A failure only counts once this run's job was seen running (anything earlier on the
        // page is a previous job's outcome); a refusal counts at once.
        let msg = s["msg"].as_str().unwrap_or("");
        let refused = msg.starts_with("refused");
        let failed = saw_running && msg.starts_with("failed");
        assert!(
            !refused && !failed,
            "the trigger was refused or the job failed: {s}; status: {}",
            backfill_status()
        );
        if s["state"] == "running" {
            saw_running = true;
            let pct = s["pct"].as_f64().unwrap();
            saw_progress |= pct > 0.0 && pct < 100.0 && s["bar"] == format!("{pct}%");
            saw_disabled |= s["disabled"] == true;
        }
        // A `completed` left by an earlier run shows until this job starts: only one after
        // `running` counts.
        if saw_running && s["state"] == "completed" {
            assert_eq!(s["pct"], 100.0, "{s}");
            break;
        }
        assert!(
            Instant::now() < end,
            "no completion; page: {}; status: {}",
            page.eval(DOM_STATE),
            backfill_status()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        saw_progress,
        "the progress bar never showed partial progress"
    );
    assert!(saw_disabled, "the button stayed enabled while the job ran");
    assert_eq!(page.eval("document.body.dataset.triggerStatus"), "202");
    page.wait_for(
        "the button enabled again",
        Duration::from_secs(5),
        "!document.getElementById('trigger').disabled",
    );
    page.wait_for(
        "the completion message",
        Duration::from_secs(5),
        "document.getElementById('trigger-msg').textContent === 'completed'",
    );
    let progress = page.eval("document.getElementById('bf-progress').textContent");
    assert!(
        progress.as_str().unwrap().starts_with("6 / 6 instruments"),
        "{progress}"
    );
    assert_ne!(
        page.eval("document.getElementById('bf-finished').textContent"),
        "–"
    );

    // The job was this engine's, triggered from the page, and its candles are in Kafka.
    let st = backfill_status();
    assert_eq!(st["state"], "completed", "{st}");
    assert_eq!(st["trigger"], "http", "{st}");
    assert!(
        st["engine"]
            .as_str()
            .unwrap()
            .ends_with(&format!("-{}", std::process::id())),
        "{st}"
    );
    assert_eq!(st["progress"]["instrumentsDone"], 6, "{st}");
    assert!(st["progress"]["candlesDone"].as_u64().unwrap() > 0, "{st}");
    assert_eq!(st["errors"], json!([]), "{st}");
    let candles = common::consume_all(&run.topic_ohlc, 1, Duration::from_secs(30));
    let key = candles
        .first()
        .and_then(|(k, _)| k.clone())
        .expect("a candle in Kafka");
    assert!(
        String::from_utf8_lossy(&key).ends_with(&run.tag),
        "candle keyed by one of the run's symbols: {key:?}"
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

    // Chromium down (SIGTERM, then SIGKILL after 5 s) before the engine stops.
    drop(page);
    let pid = browser.child.id();
    drop(browser);
    assert!(
        !Path::new(&format!("/proc/{pid}")).exists(),
        "chromium {pid} still running"
    );
    let report = run.stop().expect("engine stopped");
    let p = report.producer.expect("producer report");
    assert_eq!(p.dropped, 0);
}
