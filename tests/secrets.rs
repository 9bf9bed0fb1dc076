//! Secrets audit (issue 9, point 4): the real `layer1 run` binary, configured with long,
//! recognisable fake credentials for every vendor and the status token, is driven through every
//! path that logs — connect, reconnect, auth failure (401/403 refusals and token expiry),
//! malformed/truncated/oversized frames, a rotated token file, a backfill with one vendor
//! refusing the credentials — and through config errors. Nothing it writes anywhere a person or
//! another system reads may contain a fake value, raw or URL-encoded: the log file, stderr and
//! stdout, `/metrics`, `/api/status`, the status page and its assets, `/health*`, the backfill
//! status key in Redis, and the DLQ records consumed back from Kafka.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

mod common;

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use layer1::{
    sim::{
        historical::{HistoricalConfig, HistoricalServer},
        Fault, SimConfig, SimHandle, Simulator, Target,
    },
    vendor::Vendor,
};

const KITE_API_KEY: &str = "LEAKCHECK_kite_api_key_9f8e7d6c5b4a";
const KITE_TOKEN: &str = "LEAKCHECK_kite_access_token_a1b2c3d4e5";
const KITE_TOKEN_ROTATED: &str = "LEAKCHECK_kite_rotated_token_f6a7b8c9d0";
const UPSTOX_TOKEN: &str = "LEAKCHECK/upstox+access=token_5e4d3c2b1a";
const ANGEL_API_KEY: &str = "LEAKCHECK_angel_api_key/+=1a2b3c4d";
const ANGEL_CLIENT: &str = "LEAKCHECK_angel_client_code_3c4d5e";
const ANGEL_JWT: &str = "LEAKCHECK.angel-jwt.payload/9z8y+7x6w";
const ANGEL_FEED: &str = "LEAKCHECK_angel_feed_token:6v5u/4t3s";
const DHAN_CLIENT: &str = "LEAKCHECK_dhan_client_id_7c6b5a49";
const DHAN_TOKEN: &str = "LEAKCHECK_dhan_access_token_8d7e6f5a4b";
const STATUS_TOKEN: &str = "LEAKCHECK_status_token_#&?=/+_0f1e2d3c";

const ALL: [&str; 11] = [
    KITE_API_KEY,
    KITE_TOKEN,
    KITE_TOKEN_ROTATED,
    UPSTOX_TOKEN,
    ANGEL_API_KEY,
    ANGEL_CLIENT,
    ANGEL_JWT,
    ANGEL_FEED,
    DHAN_CLIENT,
    DHAN_TOKEN,
    STATUS_TOKEN,
];

/// Percent-encoding of everything but RFC 3986 unreserved characters (what the connectors do).
fn url_encoded(v: &str) -> String {
    let mut out = String::new();
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Every form of every fake value that must never appear: raw, URL-encoded (upper and lower
/// case hex, `+` for space form), JSON-escaped.
fn forbidden() -> Vec<String> {
    let mut out = Vec::new();
    for v in ALL {
        out.push(v.to_owned());
        let enc = url_encoded(v);
        out.push(enc.to_lowercase().replace("leakcheck", "LEAKCHECK"));
        out.push(enc);
        out.push(
            serde_json::to_string(v)
                .unwrap()
                .trim_matches('"')
                .to_owned(),
        );
        // The distinctive tail alone (a partial leak, e.g. a value cut at a separator).
        let tail = &v[v.len() - 8..];
        if tail.bytes().all(|b| b.is_ascii_alphanumeric()) {
            out.push(tail.to_owned());
        }
    }
    out.sort();
    out.dedup();
    out
}

fn assert_clean(what: &str, text: &str) {
    for f in forbidden() {
        if let Some(at) = text.find(&f) {
            let start = text[..at]
                .char_indices()
                .rev()
                .nth(120)
                .map_or(0, |(i, _)| i);
            let end = (at + f.len() + 120).min(text.len());
            let end = (end..=text.len())
                .find(|&i| text.is_char_boundary(i))
                .unwrap_or(text.len());
            panic!(
                "credential {f:?} leaked in {what}: ...{}...",
                &text[start..end]
            );
        }
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One HTTP/1.1 exchange; returns the whole response (headers and body) as text. Reads until
/// the server closes or `limit` passes (the SSE stream never closes).
fn http(addr: SocketAddr, request: &str, limit: Duration) -> String {
    let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return String::new();
    };
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let _ = s.write_all(request.as_bytes());
    let end = Instant::now() + limit;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16384];
    while Instant::now() < end {
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(_) => break,
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

fn get(addr: SocketAddr, path: &str) -> String {
    http(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"),
        Duration::from_secs(5),
    )
}

fn tmp(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(common::unique(name));
    std::fs::create_dir_all(&d).unwrap();
    d
}

struct Setup {
    sim: SimHandle,
    historical: HistoricalServer,
    dir: PathBuf,
    http: SocketAddr,
    dlq: String,
    token_file: PathBuf,
}

fn engine_env(s: &Setup) -> Vec<(&'static str, String)> {
    vec![
        ("KAFKA_BROKERS", common::brokers()),
        ("REDIS_URL", common::redis_url()),
        ("HTTP_ADDR", s.http.to_string()),
        ("STATUS_TOKEN", STATUS_TOKEN.into()),
        ("KAFKA_TOPIC_TICKS", common::unique("test.secrets.ticks")),
        ("KAFKA_TOPIC_RAW", common::unique("test.secrets.raw")),
        ("KAFKA_TOPIC_DLQ", s.dlq.clone()),
        ("KAFKA_TOPIC_OHLC", common::unique("test.secrets.ohlc")),
        ("KAFKA_PARTITIONS", "1".into()),
        ("JOURNAL_DIR", s.dir.join("journal").display().to_string()),
        ("INSTRUMENTS_CACHE_DIR", s.dir.join("inst").display().to_string()),
        ("KITE_WS_URL", s.sim.kite_url()),
        ("KITE_API_KEY", KITE_API_KEY.into()),
        (
            "KITE_ACCESS_TOKEN_FILE",
            s.token_file.display().to_string(),
        ),
        ("KITE_API_URL", s.historical.base_url()),
        ("UPSTOX_AUTHORIZE_URL", s.sim.upstox_authorize_url()),
        ("UPSTOX_ACCESS_TOKEN", UPSTOX_TOKEN.into()),
        ("UPSTOX_API_URL", s.historical.base_url()),
        ("ANGEL_WS_URL", s.sim.angel_url()),
        ("ANGEL_API_KEY", ANGEL_API_KEY.into()),
        ("ANGEL_CLIENT_CODE", ANGEL_CLIENT.into()),
        ("ANGEL_JWT", ANGEL_JWT.into()),
        ("ANGEL_FEED_TOKEN", ANGEL_FEED.into()),
        ("DHAN_WS_URL", s.sim.dhan_url()),
        ("DHAN_CLIENT_ID", DHAN_CLIENT.into()),
        ("DHAN_ACCESS_TOKEN", DHAN_TOKEN.into()),
        (
            "SUBSCRIBE",
            "kite:408065,kite:738561@quote,upstox:NSE_EQ|INE002A01018,angel:1|2885,dhan:NSE_EQ|1333"
                .into(),
        ),
        // Instruments no other run has covered (coverage lives in the shared Redis), so the
        // backfill really calls the historical API.
        ("BACKFILL_INSTRUMENTS", {
            let n = 900_000 + std::process::id() % 90_000;
            format!("kite:{n}=NSE:LEAKA{n},upstox:NSE_EQ|LEAK{n}=NSE:LEAKB{n}")
        }),
        ("BACKFILL_DAYS", "1".into()),
        ("CORE_PINNING", "off".into()),
        ("LOG_LEVEL", "debug".into()),
        ("LOG_FILE", s.dir.join("layer1.log").display().to_string()),
        ("BACKOFF_BASE_MS", "50".into()),
        ("BACKOFF_CAP_MS", "500".into()),
        ("SHUTDOWN_TIMEOUT_MS", "5000".into()),
    ]
}

fn spawn_engine(env: &[(&'static str, String)], dir: &Path) -> Child {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_layer1"));
    cmd.arg("run")
        .current_dir(dir) // no stray .env
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("stdout.txt")).unwrap())
        .stderr(std::fs::File::create(dir.join("stderr.txt")).unwrap());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.spawn().expect("spawn layer1 run")
}

fn stop(mut child: Child) {
    let pid = i32::try_from(child.id()).unwrap();
    // SAFETY: signalling our own child by pid.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let end = Instant::now() + Duration::from_secs(20);
    while Instant::now() < end {
        if child.try_wait().ok().flatten().is_some() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("engine did not stop within 20 s of SIGTERM");
}

fn wait(limit: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

fn redis_get(key: &str) -> String {
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let v: Option<String> = redis::cmd("GET").arg(key).query(&mut c).unwrap_or(None);
    v.unwrap_or_default()
}

fn redis_publish(channel: &str, msg: &str) {
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut c = client.get_connection().unwrap();
    let _: i64 = redis::cmd("PUBLISH")
        .arg(channel)
        .arg(msg)
        .query(&mut c)
        .unwrap();
}

/// The binary refusing bad configurations that carry the fake values: the error text on stderr
/// names the variable, never the value.
fn config_errors(dir: &Path) -> Vec<(String, String)> {
    let cases: Vec<(&str, Vec<(&str, String)>)> = vec![
        (
            "token value and token file both set",
            vec![
                ("KITE_API_KEY", KITE_API_KEY.into()),
                ("KITE_ACCESS_TOKEN", KITE_TOKEN.into()),
                (
                    "KITE_ACCESS_TOKEN_FILE",
                    dir.join("nope").display().to_string(),
                ),
                ("SUBSCRIBE", "kite:408065".into()),
            ],
        ),
        (
            "secret inside an invalid URL",
            vec![
                ("KITE_API_KEY", KITE_API_KEY.into()),
                ("KITE_ACCESS_TOKEN", KITE_TOKEN.into()),
                (
                    "KITE_WS_URL",
                    format!("not a url ?api_key={KITE_API_KEY}&access_token={KITE_TOKEN}"),
                ),
                ("SUBSCRIBE", "kite:408065".into()),
            ],
        ),
        (
            "secret pasted into a non-secret variable",
            vec![
                ("UPSTOX_ACCESS_TOKEN", UPSTOX_TOKEN.into()),
                ("KAFKA_PARTITIONS", UPSTOX_TOKEN.into()),
                ("LOG_LEVEL", DHAN_TOKEN.into()),
            ],
        ),
        (
            "public address with a status token of a bad shape",
            vec![
                ("HTTP_ADDR", "0.0.0.0:0".into()),
                ("STATUS_TOKEN", format!("{STATUS_TOKEN}\n{ANGEL_JWT}")),
            ],
        ),
        (
            "api key without its token",
            vec![
                ("KITE_API_KEY", KITE_API_KEY.into()),
                ("DHAN_ACCESS_TOKEN", DHAN_TOKEN.into()),
                ("ANGEL_JWT", ANGEL_JWT.into()),
                ("ANGEL_FEED_TOKEN", ANGEL_FEED.into()),
            ],
        ),
    ];
    let mut out = Vec::new();
    for (name, vars) in cases {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_layer1"));
        cmd.arg("run")
            .current_dir(dir)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("KAFKA_BROKERS", "127.0.0.1:1")
            .env("REDIS_URL", "redis://127.0.0.1:1")
            .env("HTTP_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // A configuration the engine accepts would run; give it a moment, then stop it.
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end && child.try_wait().ok().flatten().is_none() {
            std::thread::sleep(Duration::from_millis(50));
        }
        if child.try_wait().ok().flatten().is_none() {
            // SAFETY: signalling our own child by pid.
            unsafe { libc::kill(i32::try_from(child.id()).unwrap(), libc::SIGTERM) };
        }
        let o = child.wait_with_output().unwrap();
        out.push((
            format!("config error output ({name})"),
            format!(
                "exit {:?}\n{}{}",
                o.status.code(),
                String::from_utf8_lossy(&o.stdout),
                String::from_utf8_lossy(&o.stderr)
            ),
        ));
    }
    out
}

#[test]
fn no_credential_appears_in_any_output_of_the_engine() {
    common::services();
    let dir = tmp("secrets");
    let token_file = dir.join("kite_token");
    std::fs::write(&token_file, format!("{KITE_TOKEN}\n")).unwrap();
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 500,
        seed: 3,
        kite_api_key: KITE_API_KEY.into(),
        kite_access_token: KITE_TOKEN.into(),
        upstox_access_token: UPSTOX_TOKEN.into(),
        angel_api_key: ANGEL_API_KEY.into(),
        angel_client_code: ANGEL_CLIENT.into(),
        angel_jwt: ANGEL_JWT.into(),
        angel_feed_token: ANGEL_FEED.into(),
        dhan_client_id: DHAN_CLIENT.into(),
        dhan_access_token: DHAN_TOKEN.into(),
        ..SimConfig::default()
    })
    .expect("sim");
    // The historical API accepts the Upstox token and refuses the Kite credentials (403): the
    // backfill goes through both its success and its auth-failure paths.
    let historical = HistoricalServer::start(HistoricalConfig {
        upstox_token: UPSTOX_TOKEN.into(),
        upstox_rps: 50,
        ..HistoricalConfig::default()
    })
    .expect("historical");
    let setup = Setup {
        sim,
        historical,
        http: SocketAddr::from(([127, 0, 0, 1], free_port())),
        dlq: common::unique("test.secrets.dlq"),
        token_file,
        dir,
    };
    let env = engine_env(&setup);
    let child = spawn_engine(&env, &setup.dir);
    let addr = setup.http;

    // Connect.
    assert!(
        wait(Duration::from_secs(30), || get(addr, "/health/live")
            .starts_with("HTTP/1.1 200")),
        "engine serves HTTP"
    );
    let sim = &setup.sim;
    assert!(
        wait(Duration::from_secs(20), || {
            let st = sim.stats().unwrap();
            [Vendor::Kite, Vendor::Upstox]
                .iter()
                .all(|&v| st.open(v) > 0)
        }),
        "Kite and Upstox connected with the fake credentials"
    );
    // Parse and validation errors (DLQ records), an oversized frame.
    for v in [Vendor::Kite, Vendor::Upstox, Vendor::Angel, Vendor::Dhan] {
        let _ = sim.inject(Fault::Malformed(Target::all(v)));
        let _ = sim.inject(Fault::Truncated(Target::all(v)));
    }
    let _ = sim.inject(Fault::Oversize {
        target: Target::all(Vendor::Kite),
        bytes: 8 << 20,
    });
    std::thread::sleep(Duration::from_millis(800));
    // Reconnect after a drop, with auth refusals (401 and 403) on the way.
    for (v, status) in [
        (Vendor::Kite, 403),
        (Vendor::Upstox, 401),
        (Vendor::Angel, 401),
        (Vendor::Dhan, 403),
    ] {
        let _ = sim.inject(Fault::Refuse {
            vendor: v,
            status,
            retry_after_s: None,
            count: 2,
        });
        let _ = sim.inject(Fault::Drop(Target::all(v)));
    }
    std::thread::sleep(Duration::from_secs(2));
    // Token expiry: Kite's token rotates and the token file is rewritten (the feed rereads it
    // before each attempt); Upstox's expires with no new one configured (repeated auth failure).
    sim.inject(Fault::ExpireToken {
        vendor: Vendor::Kite,
        new_token: KITE_TOKEN_ROTATED.into(),
    })
    .unwrap();
    std::fs::write(&setup.token_file, format!("{KITE_TOKEN_ROTATED}\n")).unwrap();
    let _ = sim.inject(Fault::ExpireToken {
        vendor: Vendor::Upstox,
        new_token: "LEAKCHECK_upstox_unknown_new_token_0000".into(),
    });
    let kite_back = wait(Duration::from_secs(20), || {
        let st = sim.stats().unwrap();
        st.connections
            .iter()
            .filter(|c| c.vendor == Vendor::Kite)
            .count()
            >= 3
            && st.open(Vendor::Kite) > 0
    });
    // Backfill: Upstox answers, Kite refuses (403).
    redis_publish(layer1::control::COMMANDS_CHANNEL, "START_BACKFILL");
    let backfilled = wait(Duration::from_secs(45), || {
        let st = setup.historical.stats();
        st.auth_failed > 0 && st.ok > 0
    });
    std::thread::sleep(Duration::from_secs(2));

    // Everything a person or another system reads while it runs.
    let mut surfaces: Vec<(String, String)> = Vec::new();
    for path in [
        "/",
        "/index.html",
        "/assets/app.js",
        "/assets/app.css",
        "/metrics",
        "/api/status",
        "/health",
        "/health/live",
        "/health/ready",
        "/nope?access_token=x",
    ] {
        surfaces.push((format!("GET {path}"), get(addr, path)));
    }
    surfaces.push((
        "GET /api/events (SSE, 3 s)".into(),
        http(
            addr,
            &format!(
                "GET /api/events HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n"
            ),
            Duration::from_secs(3),
        ),
    ));
    // A POST with a wrong bearer token and one with the right one (the answer must not echo it).
    for bearer in ["LEAKCHECK_wrong_bearer_value", STATUS_TOKEN] {
        let body = "{\"days\":1}";
        surfaces.push((
            format!("POST /api/backfill (bearer {})", &bearer[..14]),
            http(
                addr,
                &format!(
                    "POST /api/backfill HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {bearer}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                ),
                Duration::from_secs(5),
            ),
        ));
    }
    surfaces.push((
        "Redis backfill status key".into(),
        redis_get(layer1::backfill::STATUS_KEY),
    ));
    let metrics = get(addr, "/metrics");
    let status = get(addr, "/api/status");
    stop(child);

    let log = std::fs::read_to_string(setup.dir.join("layer1.log")).unwrap_or_default();
    let stderr = std::fs::read_to_string(setup.dir.join("stderr.txt")).unwrap_or_default();
    let stdout = std::fs::read_to_string(setup.dir.join("stdout.txt")).unwrap_or_default();
    let dlq = common::consume_all(&setup.dlq, usize::MAX, Duration::from_secs(8));
    let dlq_text: String = dlq
        .iter()
        .map(|(k, p)| {
            format!(
                "{} {}\n",
                String::from_utf8_lossy(k.as_deref().unwrap_or_default()),
                String::from_utf8_lossy(p)
            )
        })
        .collect();
    surfaces.push(("log file".into(), log.clone()));
    surfaces.push(("stderr".into(), stderr));
    surfaces.push(("stdout".into(), stdout));
    surfaces.push(("DLQ records".into(), dlq_text));
    surfaces.extend(config_errors(&setup.dir));

    // The paths were really driven (otherwise the audit proves nothing).
    let events: std::collections::BTreeSet<String> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter_map(|v| v["event"].as_str().map(str::to_owned))
        .collect();
    println!("log events seen: {events:?}");
    println!(
        "log lines: {}, DLQ records: {}, historical: {:?}",
        log.lines().count(),
        dlq.len(),
        setup.historical.stats()
    );
    assert!(log.lines().count() > 20, "the engine logged");
    assert!(!dlq.is_empty(), "rejects reached the DLQ");
    assert!(kite_back, "Kite reconnected with the rotated token file");
    assert!(
        backfilled,
        "the backfill ran: one vendor answered, one refused"
    );
    assert!(metrics.contains("ws_") || metrics.contains("ticks_total"));
    assert!(status.contains("HTTP/1.1 200"));

    for (what, text) in &surfaces {
        assert_clean(what, text);
    }
    println!(
        "secrets audit: {} surfaces, {} forbidden forms, none found",
        surfaces.len(),
        forbidden().len()
    );
    setup.sim.shutdown();
    let _ = std::fs::remove_dir_all(&setup.dir);
}
