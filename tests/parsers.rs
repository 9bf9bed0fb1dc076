//! Parser integration tests: every committed fixture with its expected outcome, and a seeded
//! randomized run of 120,000 random, valid and mutated frames (stable Rust, no fuzzing engine).

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/gen.rs"]
mod gen;

use std::{fs, path::PathBuf};

use gen::Rng;
use layer1::{
    encode::encode_json,
    parsers::{
        self, kite, upstox, FeedEvent, FrameKind, FrameMeta, FrameOutcome, ParseError, TextKind,
        TickSink,
    },
    tick::{Exchange, Mode, Tick},
    validate::{validate, validate_exact, ValidationLimits},
    vendor::Vendor,
};

/// Collects everything and checks the sink contract as it goes: every reject's bytes lie
/// inside the frame, and every tick validates (as the exact validator does) and encodes to valid
/// JSON without panicking.
struct Checked<'f> {
    frame: &'f [u8],
    ticks: Vec<Tick>,
    rejects: Vec<&'static str>,
    events: Vec<String>,
    json: Vec<u8>,
    parse_json: bool,
}

impl<'f> Checked<'f> {
    fn new(frame: &'f [u8]) -> Self {
        Checked {
            frame,
            ticks: vec![],
            rejects: vec![],
            events: vec![],
            json: Vec::new(),
            parse_json: true,
        }
    }
}

impl TickSink for Checked<'_> {
    fn tick(&mut self, t: &Tick) {
        // The validator's fast passes decide nothing the rule-by-rule checks would not.
        let (now, lim) = (1_732_700_000_000_000_000, ValidationLimits::default());
        assert_eq!(
            validate(t, now, &lim),
            validate_exact(t, now, &lim),
            "{t:?}"
        );
        self.json.clear();
        encode_json(t, None, &mut self.json);
        if self.parse_json {
            serde_json::from_slice::<serde_json::Value>(&self.json).unwrap_or_else(|e| {
                panic!("invalid JSON {e}: {}", String::from_utf8_lossy(&self.json))
            });
        }
        self.ticks.push(*t);
    }

    fn reject(&mut self, err: &ParseError, raw: &[u8]) {
        let f = self.frame.as_ptr_range();
        let r = raw.as_ptr_range();
        assert!(
            raw.is_empty() || (r.start >= f.start && r.end <= f.end),
            "reject bytes outside the frame"
        );
        self.rejects.push(err.code());
    }

    fn event(&mut self, ev: &FeedEvent<'_>) {
        self.events.push(match ev {
            FeedEvent::Text { kind, .. } => format!("text:{}", kind.as_str()),
            FeedEvent::MarketStatus {
                segment, status, ..
            } => format!("{segment}:{}", status.as_str()),
            FeedEvent::VendorDisconnect { reason, .. } => format!("disconnect:{reason}"),
        });
    }
}

fn run(vendor: Vendor, kind: FrameKind, frame: &[u8]) -> (Checked<'_>, FrameOutcome) {
    let mut c = Checked::new(frame);
    let meta = FrameMeta {
        received_at_ns: 1_732_700_000_500_000_000,
        conn_id: 1,
    };
    let o = parsers::parse_frame(vendor, kind, frame, &meta, &mut c);
    assert_eq!(o.ticks as usize, c.ticks.len());
    assert_eq!(o.rejects as usize, c.rejects.len());
    (c, o)
}

fn fixture(path: &str) -> Vec<u8> {
    let p: PathBuf = [env!("CARGO_MANIFEST_DIR"), "tests/fixtures", path]
        .iter()
        .collect();
    fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn kite_fixtures() {
    use Vendor::Kite;
    let cases: &[(&str, usize, &[&str])] = &[
        ("kite/frame_real.bin", 2, &[]),
        ("kite/frame_all_segments.bin", 30, &[]),
        ("kite/count_zero.bin", 0, &[]),
        ("kite/truncated_count.bin", 0, &["PARSE_KITE_TRUNCATED"]),
        (
            "kite/truncated_length_prefix.bin",
            1,
            &["PARSE_KITE_TRUNCATED"],
        ),
        ("kite/packet_overrun.bin", 1, &["PARSE_KITE_PACKET_OVERRUN"]),
        ("kite/unknown_length.bin", 2, &["PARSE_KITE_UNKNOWN_LENGTH"]),
        (
            "kite/unknown_segment.bin",
            1,
            &["PARSE_KITE_UNKNOWN_SEGMENT", "PARSE_KITE_UNKNOWN_SEGMENT"],
        ),
        ("kite/trailing_bytes.bin", 2, &["PARSE_KITE_TRAILING_BYTES"]),
    ];
    for &(file, ticks, rejects) in cases {
        let bytes = fixture(file);
        let (c, o) = run(Kite, FrameKind::Binary, &bytes);
        assert_eq!(c.ticks.len(), ticks, "{file}");
        assert_eq!(c.rejects, rejects, "{file}");
        assert!(!o.heartbeat);
    }
    let bytes = fixture("kite/heartbeat.bin");
    let (c, o) = run(Kite, FrameKind::Binary, &bytes);
    assert!(o.heartbeat && c.ticks.is_empty() && c.rejects.is_empty());
    for (file, kind) in [
        ("kite/text_order.json", TextKind::Order),
        ("kite/text_error.json", TextKind::Error),
        ("kite/text_message.json", TextKind::Message),
    ] {
        let bytes = fixture(file);
        let (c, _) = run(Kite, FrameKind::Text, &bytes);
        assert_eq!(c.events, [format!("text:{}", kind.as_str())]);
        assert!(c.ticks.is_empty());
    }
    let big = vec![0u8; kite::MAX_FRAME_LEN + 1];
    let (c, _) = run(Kite, FrameKind::Binary, &big);
    assert_eq!(c.rejects, ["PARSE_FRAME_TOO_LARGE"]);

    // Every segment, every mode, with its exchange and divisor.
    let bytes = fixture("kite/frame_all_segments.bin");
    let (c, _) = run(Kite, FrameKind::Binary, &bytes);
    let want = [
        Exchange::Nse,
        Exchange::Nfo,
        Exchange::Cds,
        Exchange::Bse,
        Exchange::Bfo,
        Exchange::Bcd,
        Exchange::Mcx,
        Exchange::Mcxsx,
        Exchange::Indices,
        Exchange::Nco,
    ];
    for (chunk, ex) in c.ticks.chunks(3).zip(want) {
        let modes: Vec<_> = chunk.iter().map(|t| t.mode).collect();
        assert_eq!(modes, [Mode::Ltp, Mode::Quote, Mode::Full]);
        for t in chunk {
            assert_eq!(t.exchange, ex);
            let raw = 150_025.0 / kite::divisor(ex as u8);
            assert_eq!(t.ltp, raw, "{ex:?}");
            assert_eq!(
                validate(t, 1_732_700_002_000_000_000, &ValidationLimits::default()),
                Ok(()),
                "{t:?}"
            );
        }
    }
}

#[test]
fn kite_real_quote_packet_matches_vendor_json() {
    let vendor: serde_json::Value =
        serde_json::from_slice(&fixture("kite/real_quote.json")).unwrap();
    let t = kite::decode_packet(&fixture("kite/real_quote.bin"), &FrameMeta::default()).unwrap();
    assert_eq!(t.mode, Mode::Quote);
    assert_eq!(t.token.as_str(), vendor["instrument_token"].to_string());
    assert_eq!(Some(t.ltp), vendor["last_price"].as_f64());
    assert_eq!(Some(t.ltq), vendor["last_quantity"].as_f64());
    assert_eq!(Some(t.atp), vendor["average_price"].as_f64());
    assert_eq!(Some(t.volume), vendor["volume"].as_f64());
    assert_eq!(Some(t.total_buy_qty), vendor["buy_quantity"].as_f64());
    assert_eq!(Some(t.total_sell_qty), vendor["sell_quantity"].as_f64());
    for (ours, k) in [
        (t.open, "open"),
        (t.high, "high"),
        (t.low, "low"),
        (t.close, "close"),
    ] {
        assert_eq!(Some(ours), vendor["ohlc"][k].as_f64(), "{k}");
    }
}

#[test]
fn upstox_fixtures() {
    use Vendor::Upstox;
    let cases: &[(&str, usize, &[&str])] = &[
        ("upstox/ltpc.bin", 1, &[]),
        ("upstox/full_market.bin", 2, &[]),
        ("upstox/full_index.bin", 1, &[]),
        ("upstox/greeks.bin", 1, &[]),
        ("upstox/market_info.bin", 0, &[]),
        ("upstox/all_segments.bin", 9, &[]),
        ("upstox/full_d30.bin", 1, &[]),
        ("upstox/truncated.bin", 1, &["PARSE_UPSTOX_PB_LENGTH"]),
        ("upstox/bad_varint.bin", 1, &["PARSE_UPSTOX_PB_VARINT"]),
        (
            "upstox/bad_wire_type.bin",
            1,
            &["PARSE_UPSTOX_PB_WIRE_TYPE"],
        ),
        ("upstox/length_overrun.bin", 1, &["PARSE_UPSTOX_PB_LENGTH"]),
        ("upstox/bad_utf8_key.bin", 1, &["PARSE_UPSTOX_PB_UTF8"]),
        (
            "upstox/unknown_segment.bin",
            1,
            &["PARSE_UPSTOX_UNKNOWN_SEGMENT"],
        ),
        ("upstox/key_too_long.bin", 1, &["PARSE_UPSTOX_KEY_TOO_LONG"]),
        ("upstox/bad_key.bin", 1, &["PARSE_UPSTOX_BAD_KEY"]),
        ("upstox/empty_feed.bin", 1, &["PARSE_UPSTOX_EMPTY_FEED"]),
        ("upstox/garbage.bin", 0, &["PARSE_UPSTOX_PB_VARINT"]),
    ];
    for &(file, ticks, rejects) in cases {
        let bytes = fixture(file);
        let (c, _) = run(Upstox, FrameKind::Binary, &bytes);
        assert_eq!(c.ticks.len(), ticks, "{file}");
        assert_eq!(c.rejects, rejects, "{file}");
    }
    let bytes = fixture("upstox/market_info.bin");
    let (c, o) = run(Upstox, FrameKind::Binary, &bytes);
    assert_eq!(o.events, 4);
    assert_eq!(
        c.events,
        [
            "NSE_EQ:NORMAL_OPEN",
            "NSE_FO:NORMAL_OPEN",
            "BSE_EQ:PRE_OPEN_END",
            "MCX_FO:CLOSING_END"
        ]
    );

    let bytes = fixture("upstox/all_segments.bin");
    let (c, _) = run(Upstox, FrameKind::Binary, &bytes);
    let ex: Vec<_> = c.ticks.iter().map(|t| (t.exchange, t.is_index)).collect();
    assert_eq!(
        ex,
        [
            (Exchange::Nse, false),
            (Exchange::Nse, true),
            (Exchange::Nfo, false),
            (Exchange::Bse, false),
            (Exchange::Bse, true),
            (Exchange::Bfo, false),
            (Exchange::Cds, false),
            (Exchange::Bcd, false),
            (Exchange::Mcx, false),
        ]
    );
    for t in &c.ticks {
        assert_eq!(t.exchange_time_ms, 1_732_700_000_456);
        assert_eq!(
            validate(t, 1_732_700_001_000_000_000, &ValidationLimits::default()),
            Ok(()),
            "{t:?}"
        );
    }

    // full_d30: 30 levels on the wire, the best 5 kept, in order.
    let bytes = fixture("upstox/full_d30.bin");
    let (c, _) = run(Upstox, FrameKind::Binary, &bytes);
    let t = c.ticks[0];
    assert_eq!(t.depth.bids().len(), 5);
    assert_eq!(t.depth.bids()[4].qty, 104.0);
    assert_eq!(t.depth.asks()[0].qty, 200.0);

    let bytes = fixture("upstox/greeks.bin");
    let (c, _) = run(Upstox, FrameKind::Binary, &bytes);
    assert_eq!(c.ticks[0].mode, Mode::Greeks);
    assert_eq!(c.ticks[0].greeks.delta, 0.52);
    assert_eq!(c.ticks[0].depth.bids().len(), 1);
}

/// Re-encodes the parsed ticks of a valid Kite frame and requires the original packet bytes back.
fn kite_round_trip(rng: &mut Rng, frame: &mut Vec<u8>) -> usize {
    frame.clear();
    let spans = gen::kite_frame(rng, 12, frame);
    let (c, _) = run(Vendor::Kite, FrameKind::Binary, frame);
    assert!(c.rejects.is_empty(), "{:?}", c.rejects);
    assert_eq!(c.ticks.len(), spans.len());
    let mut again = Vec::new();
    for (t, &(at, len)) in c.ticks.iter().zip(&spans) {
        again.clear();
        let mode = match (t.mode, len) {
            (Mode::Ltp, _) => kite::KiteMode::Ltp,
            (Mode::Quote, _) => kite::KiteMode::Quote,
            _ => kite::KiteMode::Full,
        };
        kite::encode_packet(t, mode, &mut again);
        assert_eq!(again, frame[at..at + len]);
    }
    spans.len()
}

const SEED: u64 = 0x1a7e_2026;

#[test]
fn randomized_kite_frames() {
    let mut rng = Rng(SEED);
    let mut frame = Vec::new();
    let (mut valid, mut mutated, mut random) = (0, 0, 0);
    let mut survivors = 0usize;
    // 20,000 valid frames: every packet decodes and re-encodes to the same bytes.
    for _ in 0..20_000 {
        kite_round_trip(&mut rng, &mut frame);
        valid += 1;
    }
    // 20,000 valid frames with one bad packet spliced in: every valid packet still comes through.
    for _ in 0..20_000 {
        frame.clear();
        let mut packets: Vec<Vec<u8>> = (0..1 + rng.below(8))
            .map(|_| {
                let seg = *rng.pick(&gen::KITE_SEGMENTS);
                let t = gen::kite_tick(&mut rng, seg);
                let mut p = Vec::new();
                kite::encode_packet(&t, gen::kite_mode(&mut rng), &mut p);
                p
            })
            .collect();
        let good = packets.len();
        let mut bad = Vec::new();
        match rng.below(3) {
            0 => {
                // Mostly unknown lengths.
                let n = rng.below(200) as usize;
                rng.bytes(n, &mut bad);
            }
            1 => bad.extend_from_slice(&[0, 0, 0, 10, 1, 2, 3, 4]), // unknown segment
            _ => bad.extend_from_slice(&[0, 0, 1, 0, 0, 0, 0, 0]),  // segment 0
        }
        let at = rng.below(packets.len() as u64 + 1) as usize;
        packets.insert(at, bad.clone());
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        kite::encode_frame(&refs, &mut frame);
        let (c, _) = run(Vendor::Kite, FrameKind::Binary, &frame);
        let bad_is_valid = kite::decode_packet(&bad, &FrameMeta::default()).is_ok();
        assert_eq!(c.ticks.len(), good + usize::from(bad_is_valid));
        assert_eq!(c.rejects.len(), usize::from(!bad_is_valid));
        survivors += good;
        mutated += 1;
    }
    // 20,000 mutated frames (bit flips, truncation, insertion, deletion, duplication).
    for _ in 0..20_000 {
        frame.clear();
        gen::kite_frame(&mut rng, 8, &mut frame);
        for _ in 0..1 + rng.below(3) {
            gen::mutate(&mut rng, &mut frame);
        }
        let (mut c, _) = (Checked::new(&frame), ());
        c.parse_json = rng.chance(5);
        kite::parse_frame(&frame, &FrameMeta::default(), &mut c);
        mutated += 1;
    }
    // 10,000 random byte strings, 0..600 bytes.
    for _ in 0..10_000 {
        frame.clear();
        let n = rng.below(600) as usize;
        rng.bytes(n, &mut frame);
        run(Vendor::Kite, FrameKind::Binary, &frame);
        random += 1;
    }
    assert_eq!(valid + mutated + random, 70_000);
    assert!(survivors > 80_000);
}

#[test]
fn randomized_upstox_frames() {
    let mut rng = Rng(SEED ^ 0x55);
    let mut frame = Vec::new();
    let mut total = 0;
    // 15,000 valid frames: parse, re-encode, and require the same bytes.
    for _ in 0..15_000 {
        frame.clear();
        let ts = rng.below(1 << 42) as i64;
        let n = gen::upstox_frame(&mut rng, 6, ts, &mut frame);
        let (c, _) = run(Vendor::Upstox, FrameKind::Binary, &frame);
        assert!(c.rejects.is_empty(), "{:?}", c.rejects);
        assert_eq!(c.ticks.len(), n);
        let ft = if frame.first() == Some(&0x08) {
            upstox::FeedType::LiveFeed
        } else {
            upstox::FeedType::InitialFeed
        };
        let mut again = Vec::new();
        upstox::encode_feed_response(&c.ticks, ft, ts, &mut again);
        assert_eq!(again, frame);
        total += 1;
    }
    // 10,000 frames with one corrupted entry appended: the valid entries still come through.
    for _ in 0..10_000 {
        frame.clear();
        let n = gen::upstox_frame(&mut rng, 5, 0, &mut frame);
        let key: &[u8] = match rng.below(4) {
            0 => b"NOPE|1",
            1 => b"NSE_EQ",
            2 => b"\xff\xff|1",
            _ => b"NSE_EQ|012345678901234567890123456789",
        };
        layer1::parsers::protobuf::put_message(&mut frame, 2, |e| {
            layer1::parsers::protobuf::put_bytes(e, 1, key);
            layer1::parsers::protobuf::put_message(e, 2, |f| {
                layer1::parsers::protobuf::put_message(f, 1, |_| {})
            });
        });
        let (c, _) = run(Vendor::Upstox, FrameKind::Binary, &frame);
        assert_eq!(c.ticks.len(), n);
        assert_eq!(c.rejects.len(), 1);
        total += 1;
    }
    // 15,000 mutated frames and 10,000 random byte strings: no panic, contract holds.
    for i in 0..25_000 {
        frame.clear();
        if i < 15_000 {
            gen::upstox_frame(&mut rng, 6, 1_732_700_000_000, &mut frame);
            for _ in 0..1 + rng.below(3) {
                gen::mutate(&mut rng, &mut frame);
            }
        } else {
            let n = rng.below(400) as usize;
            rng.bytes(n, &mut frame);
        }
        let mut c = Checked::new(&frame);
        c.parse_json = rng.chance(5);
        upstox::parse_frame(&frame, &FrameMeta::default(), &mut c);
        total += 1;
    }
    assert_eq!(total, 50_000);
}
