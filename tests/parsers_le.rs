//! Randomized round trips and mutations for the little-endian parsers (Angel One, Dhan):
//! 120,000 frames in all. Encoded ticks decode to the values sent; mutated and random bytes never
//! panic and every reject's bytes lie inside the frame.

#![allow(clippy::unwrap_used, clippy::indexing_slicing)]

use layer1::{
    parsers::{angel, dhan, FrameMeta, ParseError, TickSink},
    tick::{Level, Tick},
};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Check<'a> {
    frame: &'a [u8],
    ticks: Vec<Tick>,
    rejects: usize,
}

impl TickSink for Check<'_> {
    fn tick(&mut self, t: &Tick) {
        self.ticks.push(*t);
    }
    fn reject(&mut self, _: &ParseError, raw: &[u8]) {
        let f = self.frame.as_ptr_range();
        let r = raw.as_ptr_range();
        assert!(raw.is_empty() || (r.start >= f.start && r.end <= f.end));
        self.rejects += 1;
    }
}

fn tick(rng: &mut Rng) -> Tick {
    let mut t = Tick::EMPTY;
    // Whole paise below 2^17 rupees, so float32 (Dhan) keeps every paisa.
    let p = |rng: &mut Rng| (100 + rng.below(9_000_000)) as f64 / 100.0;
    t.ltp = p(rng);
    t.atp = p(rng);
    t.open = p(rng);
    t.high = p(rng);
    t.low = p(rng);
    t.close = p(rng);
    t.ltq = rng.below(60_000) as f64;
    t.volume = rng.below(1 << 31) as f64;
    t.total_buy_qty = rng.below(1 << 31) as f64;
    t.total_sell_qty = rng.below(1 << 31) as f64;
    t.oi = rng.below(1 << 31) as f64;
    t.exchange_time_ms = 1_700_000_000_000 + rng.below(100_000_000_000) as i64;
    t.last_trade_time_ms = (1_700_000_000 + rng.below(100_000_000) as i64) * 1000;
    let nb = rng.below(6) as usize;
    let na = rng.below(6) as usize;
    for i in 0..nb {
        t.depth.bids[i] = Level {
            price: p(rng),
            qty: (1 + rng.below(1000)) as f64,
            orders: 1 + rng.below(100) as u32,
        };
    }
    for i in 0..na {
        t.depth.asks[i] = Level {
            price: p(rng),
            qty: (1 + rng.below(1000)) as f64,
            orders: 1 + rng.below(100) as u32,
        };
    }
    t.depth.bid_len = nb as u8;
    t.depth.ask_len = na as u8;
    t
}

fn run<'a>(frame: &'a [u8], dhan_frame: bool) -> Check<'a> {
    let mut c = Check {
        frame,
        ticks: Vec::new(),
        rejects: 0,
    };
    if dhan_frame {
        dhan::parse_frame(frame, &FrameMeta::default(), &mut c);
    } else {
        angel::parse_frame(frame, &FrameMeta::default(), &mut c);
        angel::parse_text(frame, &mut c);
    }
    c
}

#[test]
fn angel_round_trips_and_survives_mutation() {
    let mut rng = Rng(11);
    let modes = [
        angel::AngelMode::Ltp,
        angel::AngelMode::Quote,
        angel::AngelMode::SnapQuote,
    ];
    for i in 0..30_000 {
        let src = tick(&mut rng);
        let mode = modes[i % 3];
        let mut f = Vec::new();
        angel::encode_packet(
            &src,
            mode,
            1 + (i % 5) as u8,
            &format!("{}", rng.below(100_000)),
            i as i64,
            &mut f,
        );
        let c = run(&f, false);
        assert_eq!((c.ticks.len(), c.rejects), (1, 0));
        let t = c.ticks[0];
        assert_eq!(t.ltp, src.ltp);
        assert_eq!(t.exchange_time_ms, src.exchange_time_ms);
        if mode != angel::AngelMode::Ltp {
            assert_eq!(
                (t.open, t.high, t.low, t.close, t.volume),
                (src.open, src.high, src.low, src.close, src.volume)
            );
        }
        if mode == angel::AngelMode::SnapQuote {
            assert_eq!(t.depth.bids(), src.depth.bids());
            assert_eq!(t.depth.asks(), src.depth.asks());
            assert_eq!(t.last_trade_time_ms, src.last_trade_time_ms);
        }
        // Mutate: flip bytes, cut, extend.
        let mut m = f.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len() as u64) as usize;
            m[at] = rng.next() as u8;
        }
        m.truncate(rng.below(m.len() as u64 + 8) as usize);
        let _ = run(&m, false);
    }
    for _ in 0..20_000 {
        let n = rng.below(500) as usize;
        let r: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let _ = run(&r, false);
    }
}

#[test]
fn dhan_round_trips_multi_packet_frames_and_survives_mutation() {
    let mut rng = Rng(12);
    let codes = [
        dhan::code::TICKER,
        dhan::code::QUOTE,
        dhan::code::FULL,
        dhan::code::DEPTH,
    ];
    for _ in 0..40_000 {
        let n = 1 + rng.below(5) as usize;
        let mut f = Vec::new();
        let mut srcs = Vec::new();
        for _ in 0..n {
            let src = tick(&mut rng);
            let code = codes[rng.below(4) as usize];
            dhan::encode_packet(&src, code, 1, rng.below(1 << 31) as u32, &mut f);
            srcs.push((src, code));
        }
        let c = run(&f, true);
        assert_eq!((c.ticks.len(), c.rejects), (n, 0));
        for (t, (src, code)) in c.ticks.iter().zip(&srcs) {
            assert_eq!(t.ltp, src.ltp, "code {code}");
            if *code != dhan::code::DEPTH {
                assert_eq!(t.last_trade_time_ms, src.last_trade_time_ms);
            }
            if matches!(*code, dhan::code::QUOTE | dhan::code::FULL) {
                assert_eq!(
                    (t.total_buy_qty, t.total_sell_qty),
                    (src.total_buy_qty, src.total_sell_qty)
                );
                assert_eq!(
                    (t.open, t.high, t.low, t.atp),
                    (src.open, src.high, src.low, src.atp)
                );
            }
            if matches!(*code, dhan::code::FULL | dhan::code::DEPTH) {
                assert_eq!(t.depth.bids(), src.depth.bids());
                assert_eq!(t.depth.asks(), src.depth.asks());
            }
        }
        let mut m = f.clone();
        for _ in 0..1 + rng.below(4) {
            let at = rng.below(m.len() as u64) as usize;
            m[at] = rng.next() as u8;
        }
        m.truncate(rng.below(m.len() as u64 + 8) as usize);
        let _ = run(&m, true);
    }
    for _ in 0..30_000 {
        let n = rng.below(600) as usize;
        let r: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
        let _ = run(&r, true);
    }
}

/// Regression (found by the `angel` fuzz target): a SnapQuote whose last-trade timestamp is
/// `i64::MIN` panicked in the seconds-or-ms test (`abs` overflow, with overflow checks on). The
/// fixture is the minimised fuzz input; the sweep covers both sides of the 10^11 cut-over.
#[test]
fn angel_snapquote_extreme_last_trade_time_does_not_panic() {
    let fixture = include_bytes!("fixtures/angel/snapquote_ltt_i64_min.bin");
    assert_eq!(fixture.len(), angel::AngelMode::SnapQuote.packet_len());
    // The SnapQuote's last-trade timestamp follows the 123-byte quote part.
    const LTT_AT: usize = 123;
    assert_eq!(
        i64::from_le_bytes(fixture[LTT_AT..LTT_AT + 8].try_into().unwrap()),
        i64::MIN
    );
    let cut = 100_000_000_000_i64;
    for (raw, want_ms) in [
        (i64::MIN, i64::MIN),
        (i64::MIN + 1, i64::MIN + 1),
        (-cut, -cut),
        (-(cut - 1), -(cut - 1) * 1000),
        (0, 0),
        (1_795_750_199, 1_795_750_199_000),
        (cut - 1, (cut - 1) * 1000),
        (cut, cut),
        (i64::MAX, i64::MAX),
    ] {
        let mut f = fixture.to_vec();
        f[LTT_AT..LTT_AT + 8].copy_from_slice(&raw.to_le_bytes());
        let c = run(&f, false);
        assert_eq!((c.ticks.len(), c.rejects), (1, 0), "raw {raw}");
        assert_eq!(c.ticks[0].last_trade_time_ms, want_ms, "raw {raw}");
    }
}
