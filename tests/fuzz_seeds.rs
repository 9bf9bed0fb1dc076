//! The Angel One, Dhan, JSON and capture fixtures in `tests/fixtures/` that seed the fuzz corpora
//! (`fuzz/seed.sh`). Kite and Upstox have real vendor captures; for Angel and Dhan no real capture
//! is available, so their fixtures are encoder output for a fixed tick, one per packet kind. This
//! test rebuilds them and fails if a committed file differs (an encoder or format change must be
//! seen), then parses each one and checks what comes out. `LAYER1_WRITE_FIXTURES=1` rewrites the
//! generated files instead of comparing them.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use std::path::PathBuf;

use layer1::{
    capture::{CaptureWriter, Record},
    decode::decode_from,
    parsers::{angel, dhan, json, FeedEvent, FrameKind, FrameMeta, ParseError, TickSink},
    tick::{Level, Tick},
    vendor::Vendor,
};

fn dir(sub: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(sub)
}

/// Compares `bytes` with the committed fixture (or writes it when asked).
fn check_fixture(sub: &str, name: &str, bytes: &[u8]) {
    let path = dir(sub).join(name);
    if std::env::var_os("LAYER1_WRITE_FIXTURES").is_some() {
        std::fs::create_dir_all(dir(sub)).unwrap();
        std::fs::write(&path, bytes).unwrap();
        return;
    }
    let committed = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (LAYER1_WRITE_FIXTURES=1 writes it)",
            path.display()
        )
    });
    assert!(
        committed == bytes,
        "{} differs from the encoder's output",
        path.display()
    );
}

fn read(sub: &str, name: &str) -> Vec<u8> {
    std::fs::read(dir(sub).join(name)).unwrap()
}

/// A tick with every field the Angel and Dhan packets carry, in whole paise (exact in float32).
fn sample_tick() -> Tick {
    let mut t = Tick::EMPTY;
    t.ltp = 2885.45;
    t.ltq = 25.0;
    t.atp = 2880.10;
    t.volume = 1_234_567.0;
    t.total_buy_qty = 45_000.0;
    t.total_sell_qty = 52_000.0;
    t.open = 2870.0;
    t.high = 2890.5;
    t.low = 2861.25;
    t.close = 2866.8;
    t.oi = 98_765.0;
    // 2026-11-27T09:30:00+05:30 and a trade one second earlier.
    t.exchange_time_ms = 1_795_750_200_000;
    t.last_trade_time_ms = 1_795_750_199_000;
    for i in 0..5 {
        // Five paise apart, computed in whole paise so each price is the nearest f64 to it.
        let paise = 5 * i as i64;
        t.depth.bids[i] = Level {
            price: (288_540 - paise) as f64 / 100.0,
            qty: 100.0 + 10.0 * i as f64,
            orders: 3 + i as u32,
        };
        t.depth.asks[i] = Level {
            price: (288_550 + paise) as f64 / 100.0,
            qty: 200.0 + 10.0 * i as f64,
            orders: 4 + i as u32,
        };
    }
    t.depth.bid_len = 5;
    t.depth.ask_len = 5;
    t
}

#[derive(Default)]
struct Collect {
    ticks: Vec<Tick>,
    rejects: Vec<&'static str>,
    events: usize,
}

impl TickSink for Collect {
    fn tick(&mut self, t: &Tick) {
        self.ticks.push(*t);
    }
    fn reject(&mut self, err: &ParseError, _: &[u8]) {
        self.rejects.push(err.code());
    }
    fn event(&mut self, _: &FeedEvent<'_>) {
        self.events += 1;
    }
}

const ANGEL_MODES: [(angel::AngelMode, &str); 4] = [
    (angel::AngelMode::Ltp, "ltp.bin"),
    (angel::AngelMode::Quote, "quote.bin"),
    (angel::AngelMode::SnapQuote, "snapquote.bin"),
    (angel::AngelMode::Depth20, "depth20.bin"),
];

#[test]
fn angel_fixtures_match_the_encoder_and_decode() {
    let src = sample_tick();
    for (i, (mode, name)) in ANGEL_MODES.iter().enumerate() {
        let mut f = Vec::new();
        angel::encode_packet(&src, *mode, 1, "2885", 100 + i as i64, &mut f);
        assert_eq!(f.len(), mode.packet_len());
        check_fixture("angel", name, &f);
        let mut c = Collect::default();
        angel::parse_frame(&read("angel", name), &FrameMeta::default(), &mut c);
        assert_eq!((c.ticks.len(), c.rejects.len()), (1, 0), "{name}");
        let t = c.ticks[0];
        assert_eq!(t.exchange_time_ms, src.exchange_time_ms, "{name}");
        if *mode != angel::AngelMode::Depth20 {
            assert_eq!(t.ltp, src.ltp, "{name}");
        }
        if matches!(mode, angel::AngelMode::Quote | angel::AngelMode::SnapQuote) {
            assert_eq!(
                (t.open, t.high, t.low, t.close, t.volume),
                (src.open, src.high, src.low, src.close, src.volume),
                "{name}"
            );
        }
        if matches!(
            mode,
            angel::AngelMode::SnapQuote | angel::AngelMode::Depth20
        ) {
            assert_eq!(t.depth.bids(), src.depth.bids(), "{name}");
            assert_eq!(t.depth.asks(), src.depth.asks(), "{name}");
        }
    }
    // Text frames: the heartbeat answer and an error reply.
    let mut c = Collect::default();
    assert!(angel::parse_text(&read("angel", "text_pong.txt"), &mut c).heartbeat);
    let out = angel::parse_text(&read("angel", "text_error.json"), &mut c);
    assert_eq!((out.events, c.events), (1, 1));
}

const DHAN_CODES: [u8; 8] = [
    dhan::code::TICKER,
    dhan::code::QUOTE,
    dhan::code::FULL,
    dhan::code::DEPTH,
    dhan::code::OI,
    dhan::code::PREV_CLOSE,
    dhan::code::MARKET_STATUS,
    dhan::code::DISCONNECT,
];

#[test]
fn dhan_fixtures_match_the_encoder_and_decode() {
    let src = sample_tick();
    let mut all = Vec::new();
    for code in DHAN_CODES {
        let mut f = Vec::new();
        // Security id 2885 on NSE_EQ (segment 1); market status 1; disconnect reason 805.
        let id = match code {
            dhan::code::MARKET_STATUS => 1,
            dhan::code::DISCONNECT => 805,
            _ => 2885,
        };
        dhan::encode_packet(&src, code, 1, id, &mut f);
        assert_eq!(Some(f.len()), dhan::packet_len(code), "code {code}");
        check_fixture("dhan", &format!("code_{code}.bin"), &f);
        all.extend_from_slice(&f);
    }
    check_fixture("dhan", "frame_all_codes.bin", &all);
    let mut c = Collect::default();
    let out = dhan::parse_frame(
        &read("dhan", "frame_all_codes.bin"),
        &FrameMeta::default(),
        &mut c,
    );
    assert!(c.rejects.is_empty(), "{:?}", c.rejects);
    // Ticker, quote, full, depth, OI and previous close carry an instrument; status and
    // disconnect are events.
    assert_eq!(out.ticks, 6);
    assert!(out.events >= 1, "{out:?}");
    let full = c.ticks[2];
    assert_eq!(full.ltp, src.ltp);
    assert_eq!(full.depth.bids(), src.depth.bids());
    assert_eq!(full.depth.asks(), src.depth.asks());
}

/// The mapping the `json` fuzz target uses.
const FUZZ_JSON_MAP: &str = "token=symbol,ltp=last_price,ltq=last_qty,volume=vol,\
     close=prev_close_paise*0.01,exchangeTime=ts_ms,lastTradeTime=ltt_s*1000";

#[test]
fn json_fixtures_parse_under_the_fuzz_mapping() {
    let m = json::JsonMapping::parse(FUZZ_JSON_MAP, "NSE").unwrap();
    let run = |name: &str| {
        let mut c = Collect::default();
        json::parse_frame_with(&m, &read("json", name), &FrameMeta::default(), &mut c);
        c
    };
    let c = run("object.json");
    assert_eq!((c.ticks.len(), c.rejects.len()), (1, 0));
    assert_eq!(c.ticks[0].ltp, 2885.45);
    assert_eq!(c.ticks[0].close, 2866.8);
    assert_eq!(c.ticks[0].last_trade_time_ms, 1_795_750_199_000);
    let c = run("array.json");
    assert_eq!((c.ticks.len(), c.rejects.len()), (3, 0));
    let c = run("numeric_strings_escapes.json");
    assert_eq!((c.ticks.len(), c.rejects.len()), (1, 0));
    assert_eq!(c.ticks[0].ltp, 1573.7);
    let c = run("control.json");
    assert_eq!((c.ticks.len(), c.rejects.len(), c.events), (0, 0, 1));
    let c = run("missing_ltp.json");
    assert_eq!((c.ticks.len(), c.rejects.len()), (0, 1));
}

#[test]
fn capture_fixture_matches_the_writer_and_decodes() {
    let src = sample_tick();
    let mut w = CaptureWriter::new(Vec::new()).unwrap();
    let rec = |ns: u64, vendor, kind| Record {
        received_at_ns: ns,
        vendor,
        kind,
        conn_id: 1,
    };
    let t0 = 1_795_750_201_000_000_000;
    let kite = read("kite", "frame_real.bin");
    w.write_record(&rec(t0, Vendor::Kite, FrameKind::Binary), &kite)
        .unwrap();
    let upstox = read("upstox", "full_market.bin");
    w.write_record(&rec(t0 + 1_000, Vendor::Upstox, FrameKind::Binary), &upstox)
        .unwrap();
    let mut a = Vec::new();
    angel::encode_packet(&src, angel::AngelMode::Quote, 1, "2885", 7, &mut a);
    w.write_record(&rec(t0 + 2_000, Vendor::Angel, FrameKind::Binary), &a)
        .unwrap();
    let mut d = Vec::new();
    dhan::encode_packet(&src, dhan::code::TICKER, 1, 2885, &mut d);
    w.write_record(&rec(t0 + 3_000, Vendor::Dhan, FrameKind::Binary), &d)
        .unwrap();
    w.write_record(
        &rec(t0 + 4_000, Vendor::Kite, FrameKind::Text),
        br#"{"type":"error","data":"x"}"#,
    )
    .unwrap();
    let bytes = w.into_inner();
    check_fixture("capture", "mixed.l1cap", &bytes);

    let (mut out, mut err) = (Vec::new(), Vec::new());
    let summary = decode_from(&read("capture", "mixed.l1cap")[..], &mut out, &mut err).unwrap();
    assert_eq!(summary.parse_error_count(), 0);
    let lines = String::from_utf8(out).unwrap();
    // Kite's frame has ticks of its own; Angel and Dhan add one each.
    assert!(lines.lines().count() >= 3, "{lines}");
    assert!(lines.contains("2885.45"), "{lines}");
}
