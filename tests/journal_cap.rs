//! The journal's disk cap, on the whole engine: with Kafka unreachable the producer spills to the
//! journal; once the journal reaches `JOURNAL_MAX_BYTES` the documented policy applies (records
//! dropped and counted, never blocking the feed) and the engine says so: `journal_dropped_total`
//! and `journal_full` on `/metrics`, `/health` degraded with the counts, `/health/ready` 503 with
//! the reason. When Kafka comes back the journal drains, nothing more is dropped, and the engine
//! says that too. Its own test binary: the metrics are the process's, and this engine's Kafka is
//! down on purpose: it reaches the broker through a gate this test opens.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout,
    missing_docs
)]

mod common;
mod http_support;

use std::{
    io::Write,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use layer1::producer;

/// The smallest cap the engine accepts.
const CAP: u64 = 1 << 20;

/// A loopback port in front of the broker: while shut it accepts each connection and closes it
/// at once (Kafka down, as a client sees it); once opened it relays new connections to the
/// broker. The broker advertises its own address, so after the first metadata answer the
/// engine also connects to it directly.
struct KafkaGate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
}

impl KafkaGate {
    fn start(broker: String) -> Self {
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

    fn open(&self) {
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

#[test]
fn a_full_journal_drops_counts_and_degrades_health_until_kafka_is_back() {
    let journal = std::env::temp_dir().join(common::unique("journal-cap"));
    // The engine starts with Kafka unreachable: its only bootstrap address is the shut gate.
    let gate = KafkaGate::start(common::brokers());
    let extra = [
        ("KAFKA_BROKERS", gate.addr.to_string()),
        ("JOURNAL_MAX_BYTES", CAP.to_string()),
    ];
    let (sim, topics, engine) = common::kite_quote_engine(20_000, 13, "test.cap", &journal, &extra);
    let m = layer1::metrics::global();
    let addr = engine.http_addr();

    assert!(
        common::wait_until(Duration::from_secs(60), || m.journal_full.get() == 1),
        "the journal fills within 60 s at 20,000 ticks/s (dropped so far: {})",
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
    assert!(
        u64::try_from(m.journal_bytes.get()).unwrap_or(u64::MAX) <= CAP,
        "the journal holds no more than its cap: {} bytes",
        m.journal_bytes.get()
    );

    let health = http_support::get(addr, "/health");
    assert_eq!(health.status, 200);
    let h = health.json();
    assert_eq!(h["status"], "degraded", "{h}");
    assert_eq!(h["kafka"], "down", "{h}");
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

    // Kafka comes back (the engine could not create its topics while it was away).
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    producer::ensure_topics(&common::brokers(), &names, 3, Duration::from_secs(10))
        .expect("topics");
    gate.open();
    assert!(
        common::wait_until(Duration::from_secs(60), || m.kafka_up.get() == 1
            && m.journal_full.get() == 0),
        "Kafka seen back and the refusal episode ended within 60 s (kafka_up {}, journal_full {})",
        m.kafka_up.get(),
        m.journal_full.get()
    );
    assert!(
        common::wait_until(Duration::from_secs(60), || m.journal_bytes.get() == 0
            && common::acked(&topics[0]) > 0),
        "the journal drains into Kafka (journal bytes {}, ticks acknowledged {})",
        m.journal_bytes.get(),
        common::acked(&topics[0])
    );
    // Ticks keep arriving and none is dropped any more.
    let dropped = m.journal_dropped_total.get();
    let acked = common::acked(&topics[0]);
    assert!(
        common::wait_until(Duration::from_secs(10), || common::acked(&topics[0])
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

    sim.set_rate(0).expect("pause generation");
    let report = engine.stop().producer.expect("producer report");
    println!("{report:?}");
    assert_eq!(report.dropped, dropped, "the report counts the drops");
    assert!(report.drained > 0, "the journal drained: {report:?}");
    assert!(report.acked > report.drained, "{report:?}");
    assert_eq!(report.left_in_journal_bytes, 0, "{report:?}");
    let _ = std::fs::remove_dir_all(&journal);
}
