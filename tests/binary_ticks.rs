//! `KAFKA_TICK_FORMAT=binary` end to end, against real parts: the vendor simulator serves Kite
//! quote and full ticks over loopback, the whole engine ingests them and produces the compact
//! binary form to the local broker, and every record consumed back decodes
//! (`layer1::encode::decode_binary`), carries the `bin1` schema header and its instrument as key.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    missing_docs
)]

mod common;

use std::time::Duration;

use common::acked;
use layer1::{
    encode::{binary::BINARY_SCHEMA, decode_binary},
    tick::Fields,
    vendor::Vendor,
};

#[test]
fn binary_tick_records_decode_with_their_key_and_schema_header() {
    let journal = std::env::temp_dir().join(common::unique("journal-bin"));
    let subscribe: Vec<String> = (1..=40u32)
        .map(|i| {
            let mode = if i % 4 == 0 { "full" } else { "quote" };
            format!("kite:{}@{mode}", i * 256 + 1)
        })
        .collect();
    let (sim, topics, engine) = common::kite_quote_engine(
        5_000,
        21,
        "test.bin",
        &journal,
        &[
            ("SUBSCRIBE", subscribe.join(",")),
            ("KAFKA_TICK_FORMAT", "binary".into()),
        ],
    );
    assert!(
        common::wait_until(Duration::from_secs(60), || acked(&topics[0]) >= 3_000),
        "binary ticks are acknowledged within 60 s"
    );
    sim.set_rate(0).expect("pause generation");
    let report = engine.stop();
    let _ = std::fs::remove_dir_all(&journal);
    let p = report.producer.expect("producer report");
    assert_eq!((p.failed, p.dropped), (0, 0));

    let records = common::consume_records(&topics[0], 3_000, Duration::from_secs(60));
    assert!(records.len() >= 3_000, "consumed {}", records.len());
    let mut with_depth = 0;
    for r in &records {
        let header = |name: &str| {
            r.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_slice())
        };
        assert_eq!(header("schema"), Some(BINARY_SCHEMA));
        assert_eq!(header("vendor"), Some(&b"kite"[..]));
        let t = decode_binary(&r.payload).expect("every record decodes");
        assert_eq!(Some(t.instrument.as_bytes()), r.key.as_deref());
        assert_eq!(t.vendor, Vendor::Kite.code());
        assert!(!t.token.is_empty());
        assert!(t.fields.has(Fields::LTP) && t.values[0] > 0.0, "{t:?}");
        assert!(t.received_at_ns > 0);
        if t.fields.has(Fields::DEPTH) {
            with_depth += 1;
            assert!(t.bid_len > 0 || t.ask_len > 0, "{t:?}");
        }
    }
    assert!(with_depth > 0, "full-mode ticks carried their depth");
}
