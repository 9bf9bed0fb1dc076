//! A loopback gate in front of the test broker, for tests that need Kafka unreachable and then
//! back without stopping the broker other tests share; and the phases of a journal refusal
//! episode that the engine tests behind it share (the journal at its cap, the disk full).
#![allow(dead_code, unreachable_pub)]

use std::{
    io::Write,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use layer1::{
    engine::Engine,
    producer::{self, FlushReport},
    sim::SimHandle,
};

use crate::{common, http_support};

/// A loopback port in front of the broker: while shut it accepts each connection and closes it
/// at once (Kafka down, as a client sees it); once opened it relays new connections to the
/// broker. The broker advertises its own address, so after the first metadata answer the
/// engine also connects to it directly.
pub struct KafkaGate {
    /// Where the engine is to find "Kafka".
    pub addr: SocketAddr,
    open: Arc<AtomicBool>,
}

impl KafkaGate {
    /// A shut gate in front of `broker`.
    pub fn start(broker: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the gate");
        let addr = listener.local_addr().expect("gate address");
        let open = Arc::new(AtomicBool::new(false));
        let is_open = Arc::clone(&open);
        // Lives until the test process ends, blocked in accept.
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                if !is_open.load(Ordering::SeqCst) {
                    continue; // dropped: closed at once
                }
                if let Ok(server) = TcpStream::connect(&broker) {
                    relay(client, server);
                }
            }
        });
        Self { addr, open }
    }

    /// Relays new connections from now on.
    pub fn open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }
}

/// Copies bytes both ways between `a` and `b` until either side closes.
fn relay(a: TcpStream, b: TcpStream) {
    let (a2, b2) = (a.try_clone().expect("clone"), b.try_clone().expect("clone"));
    std::thread::spawn(move || pipe(a, b));
    std::thread::spawn(move || pipe(b2, a2));
}

fn pipe(from: TcpStream, to: TcpStream) {
    let _ = std::io::copy(&mut &from, &mut &to);
    let _ = (&to).flush();
    let _ = to.shutdown(Shutdown::Write);
}

/// The simulator at 20,000 ticks/s and an engine on it (`common::kite_quote_engine`) whose only
/// bootstrap address is a shut gate: it starts with Kafka unreachable.
pub fn engine_behind_gate(
    seed: u64,
    prefix: &str,
    journal: &Path,
    extra: &[(&'static str, String)],
) -> (KafkaGate, SimHandle, [String; 3], Engine) {
    let gate = KafkaGate::start(common::brokers());
    let mut vars = vec![("KAFKA_BROKERS", gate.addr.to_string())];
    vars.extend_from_slice(extra);
    let (sim, topics, engine) = common::kite_quote_engine(20_000, seed, prefix, journal, &vars);
    (gate, sim, topics, engine)
}

impl KafkaGate {
    /// Kafka back: the engine's topics created (it could not while Kafka was away) and the gate
    /// opened.
    pub fn bring_kafka_back(&self, topics: &[String; 3]) {
        let names: Vec<&str> = topics.iter().map(String::as_str).collect();
        producer::ensure_topics(&common::brokers(), &names, 3, Duration::from_secs(10))
            .expect("topics");
        self.open();
    }
}

/// The journal refuses records (`why`) and the engine says so while ticks keep arriving:
/// `journal_full` 1 within 60 s, then over 1,000 more drops counted within 10 s; `/health`
/// degraded with `journal.full` and the drops, `/health/ready` 503, `journal_full 1` on
/// `/metrics`. The `/health` document.
pub fn journal_refusing_while_ticks_arrive(addr: SocketAddr, why: &str) -> serde_json::Value {
    let m = layer1::metrics::global();
    assert!(
        common::wait_until(Duration::from_secs(60), || m.journal_full.get() == 1),
        "{why} within 60 s at 20,000 ticks/s, and the engine says so (dropped so far: {})",
        m.journal_dropped_total.get()
    );
    // Records keep arriving and keep being dropped and counted: the feed is not stalled.
    let dropped = m.journal_dropped_total.get();
    assert!(
        common::wait_until(Duration::from_secs(10), || {
            m.journal_dropped_total.get() > dropped + 1_000
        }),
        "drops go on being counted while ticks arrive"
    );
    let health = http_support::get(addr, "/health");
    assert_eq!(health.status, 200);
    let h = health.json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["journal"]["full"], true, "{h}");
    assert!(
        h["journal"]["dropped"].as_u64().is_some_and(|d| d > 0),
        "{h}"
    );
    let ready = http_support::get(addr, "/health/ready");
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("journal full: records dropped"),
        "{}",
        ready.body
    );
    assert!(
        http_support::get(addr, "/metrics")
            .body
            .contains("journal_full 1"),
        "journal_full on /metrics"
    );
    h
}

/// After the episode: over 1,000 more live ticks of `ticks_topic` acknowledged within 10 s and
/// none dropped; `/health` ok, `/health/ready` 200, `journal_full 0` on `/metrics`. The drops
/// counted over the episode.
pub fn live_ticks_flow_and_none_is_dropped(addr: SocketAddr, ticks_topic: &str) -> u64 {
    let m = layer1::metrics::global();
    let dropped = m.journal_dropped_total.get();
    let acked = common::acked(ticks_topic);
    assert!(
        common::wait_until(Duration::from_secs(10), || common::acked(ticks_topic)
            > acked + 1_000),
        "live ticks reach Kafka"
    );
    assert_eq!(m.journal_dropped_total.get(), dropped, "nothing dropped");
    let h = http_support::get(addr, "/health").json();
    assert_eq!(h["status"], "ok", "{h}");
    assert_eq!(h["journal"]["full"], false, "{h}");
    assert_eq!(h["journal"]["dropped"], dropped, "{h}");
    let ready = http_support::get(addr, "/health/ready");
    assert_eq!(ready.status, 200, "{}", ready.body);
    assert!(
        http_support::get(addr, "/metrics")
            .body
            .contains("journal_full 0"),
        "journal_full back to 0 on /metrics"
    );
    dropped
}

/// Stops the simulator's ticks and the engine, and checks its report: every record the journal
/// took was drained into Kafka, once (`drained == journaled`, more than 0), the drops are those
/// counted over the episode, and nothing was left only in memory. The report.
pub fn stops_with_every_journaled_record_drained_once(
    sim: &SimHandle,
    engine: Engine,
    dropped: u64,
) -> FlushReport {
    sim.set_rate(0).expect("pause generation");
    let report = engine.stop().producer.expect("producer report");
    println!("{report:?}");
    assert!(report.journaled > 0, "{report:?}");
    assert_eq!(
        report.drained, report.journaled,
        "every record the journal took reached Kafka, and none twice: {report:?}"
    );
    assert_eq!(report.dropped, dropped, "{report:?}");
    assert_eq!(report.unwritten_bytes, 0, "{report:?}");
    report
}
