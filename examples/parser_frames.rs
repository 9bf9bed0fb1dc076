//! Writes parser test data: the committed fixtures, and random frames for the differential check
//! against the vendors' own decoders (`scripts/parser-diff/run.sh`).
//!
//! ```text
//! parser_frames fixtures DIR                       # regenerate tests/fixtures/{kite,upstox}
//! parser_frames random VENDOR N SEED CAPTURE JSONL # N random valid frames + our decoding
//! ```
//! `random` writes the frames as a capture file and, per frame, one JSON line
//! `{"frame":i,"ticks":[<tick JSON>...],"rejects":[<code>...]}` from our parser (not validated,
//! so every decoded field is compared).

#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing
)]

#[path = "../tests/support/gen.rs"]
mod gen;

use std::{fs, io::Write, path::Path};

use gen::Rng;
use layer1::{
    capture::{CaptureWriter, Record},
    encode::encode_json,
    parsers::{
        self,
        kite::{self, KiteMode},
        protobuf::{put_bytes, put_double, put_int64, put_message},
        upstox::{self, FeedType},
        FrameKind, FrameMeta, MarketStatus, ParseError, TickSink,
    },
    tick::{Fields, Level, Mode, Tick, Token},
    vendor::Vendor,
};

struct Lines {
    ticks: Vec<u8>,
    n_ticks: usize,
    rejects: Vec<&'static str>,
}

impl TickSink for Lines {
    fn tick(&mut self, t: &Tick) {
        if self.n_ticks > 0 {
            self.ticks.push(b',');
        }
        self.n_ticks += 1;
        encode_json(t, None, &mut self.ticks);
    }
    fn reject(&mut self, e: &ParseError, _raw: &[u8]) {
        self.rejects.push(e.code());
    }
}

fn random(vendor: &str, n: usize, seed: u64, cap: &Path, jsonl: &Path) {
    let mut rng = Rng(seed);
    let mut w =
        CaptureWriter::new(std::io::BufWriter::new(fs::File::create(cap).unwrap())).unwrap();
    let mut lines = std::io::BufWriter::new(fs::File::create(jsonl).unwrap());
    let vendor = Vendor::from_name(vendor).expect("vendor: kite or upstox");
    let mut frame = Vec::new();
    for i in 0..n {
        frame.clear();
        match vendor {
            Vendor::Kite => {
                gen::kite_frame(&mut rng, 8, &mut frame);
            }
            _ => {
                let ts = rng.below(1 << 42) as i64;
                gen::upstox_frame(&mut rng, 6, ts, &mut frame);
            }
        }
        let rec = Record {
            received_at_ns: 1_700_000_000_000_000_000 + i as u64,
            vendor,
            kind: FrameKind::Binary,
            conn_id: 0,
        };
        w.write_record(&rec, &frame).unwrap();
        let mut sink = Lines {
            ticks: Vec::new(),
            n_ticks: 0,
            rejects: Vec::new(),
        };
        let meta = FrameMeta {
            received_at_ns: rec.received_at_ns,
            conn_id: 0,
        };
        parsers::parse_frame(vendor, FrameKind::Binary, &frame, &meta, &mut sink);
        write!(lines, "{{\"frame\":{i},\"ticks\":[").unwrap();
        lines.write_all(&sink.ticks).unwrap();
        let rejects: Vec<String> = sink.rejects.iter().map(|c| format!("\"{c}\"")).collect();
        writeln!(lines, "],\"rejects\":[{}]}}", rejects.join(",")).unwrap();
    }
    w.flush().unwrap();
}

fn kite_packet(t: &Tick, mode: KiteMode) -> Vec<u8> {
    let mut p = Vec::new();
    kite::encode_packet(t, mode, &mut p);
    p
}

fn frame(packets: &[&[u8]]) -> Vec<u8> {
    let mut f = Vec::new();
    kite::encode_frame(packets, &mut f);
    f
}

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    fs::write(dir.join(name), bytes).unwrap();
}

fn kite_fixtures(dir: &Path) {
    let mut rng = Rng(0x4b49_5445);
    let real_full = fs::read(dir.join("real_full.bin")).unwrap();
    let real_quote = fs::read(dir.join("real_quote.bin")).unwrap();
    put(dir, "frame_real.bin", &frame(&[&real_full, &real_quote]));

    // Every segment in every mode (index layouts for segment 9).
    let mut all = Vec::new();
    for seg in gen::KITE_SEGMENTS {
        let mut t = gen::kite_tick(&mut rng, seg);
        // Realistic values so the fixture also passes validation.
        let div = kite::divisor(seg);
        let p = |raw: u32| f64::from(raw) / div;
        t.ltp = p(150_025);
        t.atp = p(149_900);
        t.open = p(149_000);
        t.high = p(151_000);
        t.low = p(148_500);
        t.close = p(149_500);
        t.last_trade_time_ms = 1_732_700_000_000;
        t.exchange_time_ms = 1_732_700_001_000;
        for i in 0..5 {
            t.depth.bids[i] = Level {
                price: p(150_000 - 5 * i as u32),
                qty: 10.0,
                orders: 2,
            };
            t.depth.asks[i] = Level {
                price: p(150_050 + 5 * i as u32),
                qty: 20.0,
                orders: 3,
            };
        }
        for mode in [KiteMode::Ltp, KiteMode::Quote, KiteMode::Full] {
            all.push(kite_packet(&t, mode));
        }
    }
    let refs: Vec<&[u8]> = all.iter().map(Vec::as_slice).collect();
    put(dir, "frame_all_segments.bin", &frame(&refs));

    let ltp = kite_packet(&gen::kite_tick(&mut rng, 1), KiteMode::Ltp);
    put(dir, "heartbeat.bin", &[0]);
    put(dir, "count_zero.bin", &[0, 0]);
    let mut f = frame(&[&ltp]);
    f[1] = 2;
    f.push(0);
    put(dir, "truncated_length_prefix.bin", &f);
    let mut f = frame(&[&ltp]);
    f[1] = 2;
    f.extend_from_slice(&184u16.to_be_bytes());
    f.extend_from_slice(&real_full[..20]);
    put(dir, "packet_overrun.bin", &f);
    put(dir, "unknown_length.bin", &frame(&[&ltp, &[7u8; 64], &ltp]));
    let mut seg0 = ltp.clone();
    seg0[3] = 0;
    let mut seg10 = ltp.clone();
    seg10[3] = 10;
    put(dir, "unknown_segment.bin", &frame(&[&ltp, &seg0, &seg10]));
    let mut f = frame(&[&ltp, &real_quote]);
    f.extend_from_slice(&[1, 2, 3, 4, 5]);
    put(dir, "trailing_bytes.bin", &f);
    put(dir, "truncated_count.bin", &[]);
    put(
        dir,
        "text_order.json",
        br#"{"type":"order","data":{"order_id":"151220000000000","status":"COMPLETE"}}"#,
    );
    put(
        dir,
        "text_error.json",
        br#"{"type":"error","data":"Invalid access token"}"#,
    );
    put(
        dir,
        "text_message.json",
        br#"{"type":"message","data":"Market closes early today"}"#,
    );
}

fn upstox_full(key: &str, mode: Mode) -> Tick {
    let mut t = Tick::EMPTY;
    t.vendor = Vendor::Upstox;
    t.token = Token::new(key).unwrap();
    let (ex, idx) =
        layer1::tick::Exchange::from_upstox_segment(key.split('|').next().unwrap()).unwrap();
    t.exchange = ex;
    t.is_index = idx;
    t.mode = mode;
    t.ltp = 2874.35;
    t.close = 2860.5;
    t.ltq = 25.0;
    t.last_trade_time_ms = 1_732_700_000_123;
    t.atp = 2870.12;
    t.volume = 1_234_567.0;
    t.oi = 4500.0;
    t.iv = 0.1834;
    t.total_buy_qty = 120_000.0;
    t.total_sell_qty = 98_000.0;
    t.open = 2861.0;
    t.high = 2880.0;
    t.low = 2855.25;
    t.greeks.delta = 0.52;
    t.greeks.theta = -3.1;
    t.greeks.gamma = 0.0012;
    t.greeks.vega = 1.7;
    t.greeks.rho = 0.4;
    for i in 0..5 {
        t.depth.bids[i] = Level {
            price: 2874.3 - 0.05 * i as f64,
            qty: 10.0 + i as f64,
            orders: 0,
        };
        t.depth.asks[i] = Level {
            price: 2874.4 + 0.05 * i as f64,
            qty: 20.0 + i as f64,
            orders: 0,
        };
    }
    t.depth.bid_len = 5;
    t.depth.ask_len = 5;
    t.fields = Fields::OPEN | Fields::HIGH | Fields::LOW | Fields::DEPTH;
    if key.starts_with("NSE_FO") || key.starts_with("BSE_FO") {
        t.fields.insert(Fields::GREEKS);
    }
    t
}

fn feed(ticks: &[Tick]) -> Vec<u8> {
    let mut f = Vec::new();
    upstox::encode_feed_response(ticks, FeedType::LiveFeed, 1_732_700_000_456, &mut f);
    f
}

fn upstox_fixtures(dir: &Path) {
    let eq = "NSE_EQ|INE002A01018";
    put(dir, "ltpc.bin", &feed(&[upstox_full(eq, Mode::Ltp)]));
    put(
        dir,
        "full_market.bin",
        &feed(&[
            upstox_full(eq, Mode::Full),
            upstox_full("NSE_FO|65629", Mode::Full),
        ]),
    );
    put(
        dir,
        "full_index.bin",
        &feed(&[upstox_full("NSE_INDEX|Nifty 50", Mode::Full)]),
    );
    put(
        dir,
        "greeks.bin",
        &feed(&[upstox_full("NSE_FO|65629", Mode::Greeks)]),
    );
    let mut mi = Vec::new();
    upstox::encode_market_info(
        &[
            ("NSE_EQ", MarketStatus::NormalOpen),
            ("NSE_FO", MarketStatus::NormalOpen),
            ("BSE_EQ", MarketStatus::PreOpenEnd),
            ("MCX_FO", MarketStatus::ClosingEnd),
        ],
        1_732_700_000_000,
        &mut mi,
    );
    put(dir, "market_info.bin", &mi);
    let keys = [
        "NSE_EQ|INE002A01018",
        "NSE_INDEX|Nifty Bank",
        "NSE_FO|65629",
        "BSE_EQ|INE002A01018",
        "BSE_INDEX|SENSEX",
        "BSE_FO|1144821",
        "NCD_FO|12345",
        "BCD_FO|4567",
        "MCX_FO|435823",
    ];
    let ticks: Vec<Tick> = keys.iter().map(|k| upstox_full(k, Mode::Full)).collect();
    put(dir, "all_segments.bin", &feed(&ticks));

    // full_d30: 30 levels on the wire, 5 kept.
    let t = upstox_full("NSE_EQ|INE848E01016", Mode::Full);
    let mut d30 = Vec::new();
    put_message(&mut d30, 2, |e| {
        put_bytes(e, 1, b"NSE_EQ|INE848E01016");
        put_message(e, 2, |f| {
            put_message(f, 2, |ff| {
                put_message(ff, 1, |m| {
                    put_message(m, 1, |l| {
                        put_double(l, 1, t.ltp);
                        put_double(l, 4, t.close);
                    });
                    put_message(m, 2, |lv| {
                        for i in 0..30 {
                            put_message(lv, 1, |q| {
                                put_int64(q, 1, 100 + i);
                                put_double(q, 2, 2874.3 - 0.05 * i as f64);
                                put_int64(q, 3, 200 + i);
                                put_double(q, 4, 2874.4 + 0.05 * i as f64);
                            });
                        }
                    });
                });
            });
            put_int64(f, 4, 3);
        });
    });
    put_int64(&mut d30, 3, 1_732_700_000_456);
    put(dir, "full_d30.bin", &d30);

    // Malformations.
    let good = feed(&[
        upstox_full(eq, Mode::Ltp),
        upstox_full("NSE_FO|65629", Mode::Full),
    ]);
    put(dir, "truncated.bin", &good[..good.len() - 10]);
    let mut f = feed(&[upstox_full(eq, Mode::Ltp)]);
    f.extend_from_slice(&[
        0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
    ]);
    put(dir, "bad_varint.bin", &f);
    let mut f = feed(&[upstox_full(eq, Mode::Ltp)]);
    f.extend_from_slice(&[0x1b, 0x00]);
    put(dir, "bad_wire_type.bin", &f);
    let mut f = feed(&[upstox_full(eq, Mode::Ltp)]);
    f.extend_from_slice(&[0x12, 0x7f, 0x0a]);
    put(dir, "length_overrun.bin", &f);
    let entry = |key: &[u8], with_feed: bool| {
        let mut f = feed(&[upstox_full(eq, Mode::Ltp)]);
        put_message(&mut f, 2, |e| {
            put_bytes(e, 1, key);
            if with_feed {
                put_message(e, 2, |fd| put_message(fd, 1, |l| put_double(l, 1, 10.5)));
            }
        });
        f
    };
    put(dir, "bad_utf8_key.bin", &entry(b"NSE_EQ|\xff\xfe", true));
    put(dir, "unknown_segment.bin", &entry(b"NSE_XX|123", true));
    put(
        dir,
        "key_too_long.bin",
        &entry(b"NSE_EQ|0123456789012345678901234567", true),
    );
    put(dir, "bad_key.bin", &entry(b"INE002A01018", true));
    put(dir, "empty_feed.bin", &entry(b"NSE_EQ|INE002A01018", false));
    put(dir, "garbage.bin", &[0xff; 16]);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    match args.get(1).map(String::as_str) {
        Some("fixtures") => {
            let dir = Path::new(&args[2]);
            kite_fixtures(&dir.join("kite"));
            upstox_fixtures(&dir.join("upstox"));
            println!("fixtures written under {}", dir.display());
        }
        Some("random") => random(
            &args[2],
            args[3].parse().unwrap(),
            args[4].parse().unwrap(),
            Path::new(&args[5]),
            Path::new(&args[6]),
        ),
        _ => {
            eprintln!("usage: parser_frames fixtures DIR | random VENDOR N SEED CAPTURE JSONL");
            std::process::exit(2);
        }
    }
}
