//! Seeded random generators of vendor frames and mutations, shared by the randomized parser
//! tests, the allocation test, the benches and the `parser_frames` example (differential check).
//! Included with `#[path]`, so it is not a test crate of its own.

// Test-data code: each includer uses a subset, and a panic here is a test failure.
#![allow(
    dead_code,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::panic
)]

use layer1::{
    parsers::{
        kite::{self, KiteMode},
        upstox::{self, FeedType},
    },
    tick::{Exchange, Fields, Level, Mode, Tick, Token, DEPTH_LEVELS},
    vendor::Vendor,
};

/// SplitMix64: tiny, seedable, good enough to drive test data.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub(crate) u64);

impl Rng {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub(crate) fn u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub(crate) fn bytes(&mut self, n: usize, out: &mut Vec<u8>) {
        for _ in 0..n {
            out.push(self.next_u64() as u8);
        }
    }
}

/// A wire u32 that is usually realistic and sometimes extreme.
fn wire_u32(rng: &mut Rng, typical: u32) -> u32 {
    match rng.below(10) {
        0 => 0,
        1 => rng.u32(),
        2 => u32::MAX,
        _ => rng.below(u64::from(typical)) as u32,
    }
}

pub(crate) const KITE_SEGMENTS: [u8; 10] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 12];

/// A Kite tick with every field set from wire integers (so it survives encoding exactly).
pub(crate) fn kite_tick(rng: &mut Rng, segment: u8) -> Tick {
    let token = ((rng.below(1 << 24) as u32) << 8) | u32::from(segment);
    let div = kite::divisor(segment);
    let price = |rng: &mut Rng| f64::from(wire_u32(rng, 5_000_000)) / div;
    let mut t = Tick::EMPTY;
    t.vendor = Vendor::Kite;
    t.token = Token::from_u32(token);
    t.ltp = price(rng);
    t.atp = price(rng);
    t.open = price(rng);
    t.high = price(rng);
    t.low = price(rng);
    t.close = price(rng);
    t.ltq = f64::from(wire_u32(rng, 10_000));
    t.volume = f64::from(wire_u32(rng, 100_000_000));
    t.total_buy_qty = f64::from(wire_u32(rng, 10_000_000));
    t.total_sell_qty = f64::from(wire_u32(rng, 10_000_000));
    t.oi = f64::from(wire_u32(rng, 10_000_000));
    t.oi_day_high = f64::from(wire_u32(rng, 10_000_000));
    t.oi_day_low = f64::from(wire_u32(rng, 10_000_000));
    t.last_trade_time_ms = i64::from(wire_u32(rng, 2_000_000_000)) * 1000;
    t.exchange_time_ms = i64::from(wire_u32(rng, 2_000_000_000)) * 1000;
    for i in 0..DEPTH_LEVELS {
        for side in [&mut t.depth.bids[i], &mut t.depth.asks[i]] {
            *side = Level {
                price: price(rng),
                qty: f64::from(wire_u32(rng, 100_000)),
                orders: rng.below(1 << 16) as u32,
            };
        }
    }
    t.depth.bid_len = DEPTH_LEVELS as u8;
    t.depth.ask_len = DEPTH_LEVELS as u8;
    t
}

pub(crate) fn kite_mode(rng: &mut Rng) -> KiteMode {
    *rng.pick(&[KiteMode::Ltp, KiteMode::Quote, KiteMode::Full])
}

/// Appends a valid Kite frame of 1..=max_packets packets; returns the packets' (start, len) in
/// the frame.
pub(crate) fn kite_frame(
    rng: &mut Rng,
    max_packets: u64,
    out: &mut Vec<u8>,
) -> Vec<(usize, usize)> {
    let n = 1 + rng.below(max_packets) as usize;
    let mut packets = Vec::with_capacity(n);
    for _ in 0..n {
        let seg = *rng.pick(&KITE_SEGMENTS);
        let t = kite_tick(rng, seg);
        let mut p = Vec::new();
        kite::encode_packet(&t, kite_mode(rng), &mut p);
        packets.push(p);
    }
    let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
    let base = out.len();
    kite::encode_frame(&refs, out);
    let mut at = base + 2;
    packets
        .iter()
        .map(|p| {
            let span = (at + 2, p.len());
            at += 2 + p.len();
            span
        })
        .collect()
}

pub(crate) const UPSTOX_KEYS: [&str; 10] = [
    "NSE_EQ|INE002A01018",
    "NSE_EQ|INE848E01016",
    "NSE_INDEX|Nifty 50",
    "NSE_INDEX|Nifty Bank",
    "NSE_FO|65629",
    "BSE_EQ|INE002A01018",
    "BSE_INDEX|SENSEX",
    "BSE_FO|1144821",
    "NCD_FO|12345",
    "MCX_FO|435823",
];

/// A double that is usually a realistic price and sometimes anything.
fn wire_f64(rng: &mut Rng) -> f64 {
    match rng.below(12) {
        0 => 0.0,
        1 => f64::from_bits(rng.next_u64()),
        2 => -(rng.below(1000) as f64) / 7.0,
        _ => rng.below(10_000_000) as f64 / 100.0,
    }
}

fn wire_i64(rng: &mut Rng) -> f64 {
    // Within +-2^53 so the value survives f64.
    match rng.below(8) {
        0 => 0.0,
        1 => -(rng.below(1 << 53) as f64),
        _ => rng.below(1 << 40) as f64,
    }
}

/// An Upstox tick of a random key and mode, with the optional parts present at random.
pub(crate) fn upstox_tick(rng: &mut Rng, key: &str) -> Tick {
    let mut t = Tick::EMPTY;
    t.vendor = Vendor::Upstox;
    t.token = Token::new(key).unwrap();
    let seg = key.split('|').next().unwrap();
    let (ex, idx) = Exchange::from_upstox_segment(seg).unwrap_or((Exchange::Unknown, false));
    t.exchange = ex;
    t.is_index = idx;
    t.mode = *rng.pick(&[Mode::Ltp, Mode::Full, Mode::Greeks]);
    t.ltp = wire_f64(rng);
    t.close = wire_f64(rng);
    t.ltq = wire_i64(rng);
    t.last_trade_time_ms = wire_i64(rng) as i64;
    t.atp = wire_f64(rng);
    t.volume = wire_i64(rng);
    t.oi = wire_f64(rng);
    t.iv = wire_f64(rng);
    t.total_buy_qty = wire_f64(rng);
    t.total_sell_qty = wire_f64(rng);
    t.open = wire_f64(rng);
    t.high = wire_f64(rng);
    t.low = wire_f64(rng);
    t.greeks.delta = wire_f64(rng);
    t.greeks.theta = wire_f64(rng);
    t.greeks.gamma = wire_f64(rng);
    t.greeks.vega = wire_f64(rng);
    t.greeks.rho = wire_f64(rng);
    let levels = rng.below(DEPTH_LEVELS as u64 + 1) as usize;
    for i in 0..levels {
        t.depth.bids[i] = Level {
            price: wire_f64(rng),
            qty: wire_i64(rng),
            orders: 0,
        };
        t.depth.asks[i] = Level {
            price: wire_f64(rng),
            qty: wire_i64(rng),
            orders: 0,
        };
    }
    t.depth.bid_len = levels as u8;
    t.depth.ask_len = levels as u8;
    let mut f = Fields::NONE;
    if rng.chance(70) {
        f.insert(Fields::DEPTH);
    }
    if rng.chance(50) {
        f.insert(Fields::GREEKS);
    }
    if rng.chance(70) {
        f.insert(Fields::OPEN | Fields::HIGH | Fields::LOW);
    }
    t.fields = f;
    t
}

/// Appends a valid Upstox `FeedResponse` with 1..=max_feeds entries of distinct keys.
pub(crate) fn upstox_frame(
    rng: &mut Rng,
    max_feeds: u64,
    current_ts: i64,
    out: &mut Vec<u8>,
) -> usize {
    let n = 1 + rng.below(max_feeds.min(UPSTOX_KEYS.len() as u64)) as usize;
    let start = rng.below(UPSTOX_KEYS.len() as u64) as usize;
    let ticks: Vec<Tick> = (0..n)
        .map(|i| upstox_tick(rng, UPSTOX_KEYS[(start + i) % UPSTOX_KEYS.len()]))
        .collect();
    let ft = *rng.pick(&[FeedType::InitialFeed, FeedType::LiveFeed]);
    upstox::encode_feed_response(&ticks, ft, current_ts, out);
    n
}

/// Applies one random mutation in place.
pub(crate) fn mutate(rng: &mut Rng, frame: &mut Vec<u8>) {
    if frame.is_empty() {
        let n = 1 + rng.below(8) as usize;
        rng.bytes(n, frame);
        return;
    }
    let len = frame.len() as u64;
    match rng.below(7) {
        0 => {
            let i = rng.below(len) as usize;
            frame[i] ^= 1 << rng.below(8);
        }
        1 => frame.truncate(rng.below(len) as usize),
        2 => {
            let i = rng.below(len + 1) as usize;
            frame.insert(i, rng.next_u64() as u8);
        }
        3 => {
            let i = rng.below(len) as usize;
            frame[i] = rng.next_u64() as u8;
        }
        4 => {
            let i = rng.below(len) as usize;
            frame.remove(i);
        }
        5 => {
            // Duplicate a slice somewhere else.
            let a = rng.below(len) as usize;
            let b = (a + 1 + rng.below(16) as usize).min(frame.len());
            let piece = frame[a..b].to_vec();
            let at = rng.below(frame.len() as u64 + 1) as usize;
            frame.splice(at..at, piece);
        }
        _ => {
            let i = rng.below(len) as usize;
            frame[i] = *rng.pick(&[0x00, 0x7f, 0x80, 0xff]);
        }
    }
}
