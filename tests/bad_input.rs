//! Bad input where it enters (issue 9, point 3), refusal + metric + no panic, per entry point
//! that the other suites cover only in part:
//! - HTTP: hostile requests each get an error answer, are counted in `http_refused_total{code}`,
//!   and the server keeps serving (the answers themselves are checked in `tests/http_api.rs`);
//! - Redis `system:commands`: malformed messages through the real listener are counted in
//!   `control_commands_total{command="invalid",outcome=<code>}` and the listener keeps running
//!   (the typed errors are unit-tested in `src/control/mod.rs`);
//! - configuration: the real binary refuses malformed values with a typed code on stderr and
//!   exit status 1, never a panic. Config errors have no metric by design: the process exits
//!   before it serves `/metrics`; the exit status and the code are the signal.
//!
//! Parsers are covered by the randomized tests in `tests/parsers.rs` and `tests/parsers_le.rs`
//! and the fuzz targets in `fuzz/`.
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
    io::Write,
    net::TcpStream,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use http_support::{get, send, TestServer};
use layer1::{control, shutdown::Shutdown};

fn refused_total(m: &layer1::metrics::Metrics) -> u64 {
    use prometheus::core::Collector;
    m.http_refused_total
        .collect()
        .iter()
        .flat_map(|mf| {
            mf.get_metric()
                .iter()
                .map(|x| x.get_counter().get_value() as u64)
                .collect::<Vec<_>>()
        })
        .sum()
}

#[test]
fn hostile_http_requests_are_refused_counted_and_survived() {
    let s = TestServer::start(|_| {});
    let before = refused_total(s.metrics);
    let huge_header = format!(
        "GET / HTTP/1.1\r\nHost: {}\r\nX-Pad: {}\r\n\r\n",
        s.addr,
        "a".repeat(64 * 1024)
    );
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        ("garbage", b"\x00\x01\x02 not http at all\r\n\r\n".to_vec()),
        (
            "bad method",
            format!("BREW / HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).into_bytes(),
        ),
        (
            "unknown route",
            format!("GET /etc/passwd HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).into_bytes(),
        ),
        (
            "path traversal",
            format!("GET /assets/../../x HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).into_bytes(),
        ),
        (
            "foreign host (DNS rebinding)",
            b"GET /api/status HTTP/1.1\r\nHost: evil.example\r\n\r\n".to_vec(),
        ),
        ("oversized head", huge_header.into_bytes()),
        (
            "POST without length",
            format!("POST /api/backfill HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).into_bytes(),
        ),
        (
            "POST with a body larger than allowed",
            format!(
                "POST /api/backfill HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 10000000\r\n\r\n{{",
                s.addr
            )
            .into_bytes(),
        ),
        (
            "POST malformed JSON",
            format!(
                "POST /api/backfill HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 9\r\n\r\n{{\"days\":[",
                s.addr
            )
            .into_bytes(),
        ),
        (
            "GET on a POST-only route",
            format!("GET /api/backfill HTTP/1.1\r\nHost: {}\r\n\r\n", s.addr).into_bytes(),
        ),
    ];
    let mut refused = 0;
    for (name, raw) in &hostile {
        let r = send(s.addr, raw);
        // A closed connection without an answer (status 0) is also a refusal for a request that
        // is not HTTP; everything else must be a 4xx/5xx with a JSON error.
        assert!(
            r.status == 0 || r.status >= 400,
            "{name}: refused, got {} {}",
            r.status,
            r.body
        );
        if r.status >= 400 {
            refused += 1;
        }
    }
    // A client that sends half a request and goes away.
    {
        let mut c = TcpStream::connect(s.addr).unwrap();
        let _ = c.write_all(b"GET /metrics HTTP/1.1\r\nHo");
    }
    let counted = common::wait_for(Duration::from_secs(5), || {
        let n = refused_total(s.metrics) - before;
        (n >= refused).then_some(n)
    });
    assert!(
        counted.is_some(),
        "every refusal answered is counted in http_refused_total: {} of {refused}",
        refused_total(s.metrics) - before
    );
    let m = get(s.addr, "/metrics");
    assert_eq!(
        m.status, 200,
        "the server still serves after the hostile clients"
    );
    assert!(m.body.contains("http_refused_total{code=\""), "{}", m.body);
}

fn control_refusals(code: &str) -> u64 {
    layer1::metrics::global()
        .control_commands_total
        .with_label_values(&["invalid", code])
        .get()
}

#[test]
fn malformed_redis_commands_are_refused_counted_and_the_listener_survives() {
    http_support::redis_service();
    let shutdown = Shutdown::new();
    let (tx, rx) = crossbeam_channel::bounded(64);
    let url = common::redis_url();
    let sd = shutdown.clone();
    let listener = std::thread::spawn(move || control::run_listener(&url, &tx, &sd));
    assert!(
        common::wait_for(Duration::from_secs(10), || {
            (layer1::metrics::global().redis_up.get() == 1).then_some(())
        })
        .is_some(),
        "listener subscribed"
    );
    let codes = [
        "CONTROL_UNKNOWN_COMMAND",
        "CONTROL_MALFORMED",
        "CONTROL_TOO_LARGE",
        "CONTROL_NOT_TEXT",
    ];
    let before: Vec<u64> = codes.iter().map(|c| control_refusals(c)).collect();
    let messages: Vec<Vec<u8>> = vec![
        b"DROP_ALL_TOPICS".to_vec(),
        b"{\"command\":\"rm -rf\"}".to_vec(),
        b"START_BACKFILL {\"days\":".to_vec(),
        b"{\"command\":\"START_BACKFILL\",\"days\":99999}".to_vec(),
        b"{\"command\":\"START_BACKFILL\",\"evil\":true}".to_vec(),
        vec![b'x'; control::MAX_COMMAND_BYTES + 1],
        vec![0xff, 0xfe, 0x00, 0x80],
    ];
    let client = redis::Client::open(common::redis_url()).unwrap();
    let mut c = client.get_connection().unwrap();
    for m in &messages {
        let _: i64 = redis::cmd("PUBLISH")
            .arg(control::COMMANDS_CHANNEL)
            .arg(m.as_slice())
            .query(&mut c)
            .unwrap();
    }
    let end = Instant::now() + Duration::from_secs(10);
    let mut after: Vec<u64> = codes.iter().map(|c| control_refusals(c)).collect();
    while Instant::now() < end && after.iter().zip(&before).any(|(a, b)| a == b) {
        std::thread::sleep(Duration::from_millis(50));
        after = codes.iter().map(|c| control_refusals(c)).collect();
    }
    for ((code, a), b) in codes.iter().zip(&after).zip(&before) {
        assert!(a > b, "{code} counted: before {b}, after {a}");
    }
    let total: u64 = after.iter().sum::<u64>() - before.iter().sum::<u64>();
    assert!(
        total >= messages.len() as u64,
        "every message refused: {total}"
    );
    // None of them became a command (other processes may publish real ones on the shared
    // channel: only look at what arrived while ours were refused).
    while let Ok(cmd) = rx.try_recv() {
        let control::ControlCommand::StartBackfill(p) = cmd;
        assert!(
            p.days.is_none_or(|d| d <= 30),
            "out-of-range days accepted: {p:?}"
        );
    }
    assert!(!listener.is_finished(), "the listener keeps running");
    shutdown.trigger();
    let end = Instant::now() + Duration::from_secs(10);
    while !listener.is_finished() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(listener.is_finished(), "the listener stops on shutdown");
    listener.join().expect("no panic in the listener");
}

#[test]
fn malformed_configuration_exits_with_a_typed_code_and_no_panic() {
    let dir = std::env::temp_dir().join(common::unique("bad-config"));
    std::fs::create_dir_all(&dir).unwrap();
    let cases: Vec<(&str, &str, &str)> = vec![
        ("KAFKA_PARTITIONS", "many", "CONFIG_INVALID"),
        ("QUEUE_CAPACITY", "3", "CONFIG_INVALID"),
        ("HTTP_ADDR", "nowhere:port", "CONFIG_INVALID"),
        ("KAFKA_TOPIC_TICKS", "bad topic/name", "CONFIG_INVALID"),
        ("FEED_THREADS", "0", "CONFIG_INVALID"),
        ("FEED_CORES", "a,b", "CONFIG_INVALID"),
        ("LOG_LEVEL", "loud", "CONFIG_INVALID"),
        ("KITE_API_KEY", "only_the_key_set", "CONFIG_MISSING"),
        ("HTTP_ADDR", "0.0.0.0:0", "CONFIG_CONFLICT"),
        ("JOURNAL_FSYNC", "\u{0}\u{7f}\u{202e}", "CONFIG_INVALID"),
    ];
    let run = |vars: &[(&str, &str)], cwd: &std::path::Path| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_layer1"));
        cmd.arg("run")
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HTTP_ADDR", "127.0.0.1:0")
            .stdin(Stdio::null());
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for (var, value, code) in &cases {
        if value.contains('\u{0}') {
            continue; // the OS refuses NUL in the environment; the .env case below covers bytes
        }
        let (status, stderr) = run(&[(var, value)], &dir);
        assert_eq!(status, Some(1), "{var}={value:?}: exit 1, stderr {stderr}");
        assert!(
            stderr.contains(&format!("[{code}]")) && stderr.contains(var),
            "{var}={value:?}: typed error naming the variable: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{var}: no panic: {stderr}");
    }
    // A .env file with a syntax error and binary junk.
    std::fs::write(
        dir.join(".env"),
        b"KAFKA_BROKERS='unterminated\n\xff\xfe=\x00\n",
    )
    .unwrap();
    let (status, stderr) = run(&[], &dir);
    assert_eq!(status, Some(1), "broken .env: exit 1, stderr {stderr}");
    assert!(stderr.contains("[CONFIG_DOTENV]"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}
