//! The compact binary form of a [`Tick`] (`KAFKA_TICK_FORMAT=binary`; layout in
//! `docs/tick-schema.md`, "Binary form"): a fixed little-endian head, then the token and the
//! instrument, then greeks and depth only when the tick carries them. Written into a
//! caller-reused `Vec<u8>` with no allocation once it has grown; [`decode_binary`] reads it back
//! for consumers in Rust and for the tests.

use crate::tick::{Fields, Level, Tick, DEPTH_LEVELS};

/// The first four bytes of every binary tick: `L1T` and the layout version.
pub const BINARY_MAGIC: [u8; 4] = *b"L1T\x01";

/// The `schema` header of a binary tick record (JSON ticks carry `1`).
pub const BINARY_SCHEMA: &[u8] = b"bin1";

/// Bytes before the token: magic, codes, lengths, times and the fourteen values.
pub const BINARY_HEAD: usize = 152;

/// The fourteen values of the head, in layout order.
fn values(t: &Tick) -> [f64; 14] {
    [
        t.ltp,
        t.ltq,
        t.atp,
        t.volume,
        t.total_buy_qty,
        t.total_sell_qty,
        t.open,
        t.high,
        t.low,
        t.close,
        t.oi,
        t.oi_day_high,
        t.oi_day_low,
        t.iv,
    ]
}

/// Most bytes of the instrument a binary tick carries (its length is one byte).
const INSTRUMENT_MAX: usize = 255;

/// `key` cut to at most [`INSTRUMENT_MAX`] bytes, never inside a UTF-8 character, so the cut
/// text is still UTF-8 and the record still decodes.
fn instrument_within_limit(key: &[u8]) -> &[u8] {
    if key.len() <= INSTRUMENT_MAX {
        return key;
    }
    let mut end = INSTRUMENT_MAX;
    // A continuation byte (0b10xx_xxxx) at `end` would be the middle of a character.
    while end > 0 && key.get(end).is_some_and(|b| b & 0xC0 == 0x80) {
        end -= 1;
    }
    key.get(..end).unwrap_or_default()
}

/// Appends `tick` in the binary form to `out`. `instrument` is the record's key (the canonical
/// `EXCHANGE:SYMBOL`, or `<vendor>:<token>`); past 255 bytes it is cut at a character boundary
/// (keys are far shorter).
pub fn encode_binary(tick: &Tick, instrument: &[u8], out: &mut Vec<u8>) {
    let f = tick.fields;
    let token = tick.token.as_str().as_bytes();
    let instrument = instrument_within_limit(instrument);
    let (bids, asks) = if f.has(Fields::DEPTH) {
        (tick.depth.bids(), tick.depth.asks())
    } else {
        (&[][..], &[][..])
    };
    out.extend_from_slice(&BINARY_MAGIC);
    out.push(tick.vendor.code());
    out.push(tick.exchange as u8);
    out.push(tick.mode as u8);
    out.push(u8::from(tick.is_index));
    out.extend_from_slice(&f.0.to_le_bytes());
    // Lengths fit a byte: a token is at most TOKEN_CAP (32), the instrument is cut at 255, a
    // side at most DEPTH_LEVELS (5).
    for len in [token.len(), instrument.len(), bids.len(), asks.len()] {
        out.push(u8::try_from(len).unwrap_or(u8::MAX));
    }
    out.extend_from_slice(&tick.received_at_ns.to_le_bytes());
    out.extend_from_slice(&tick.last_trade_time_ms.to_le_bytes());
    out.extend_from_slice(&tick.exchange_time_ms.to_le_bytes());
    for v in values(tick) {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(token);
    out.extend_from_slice(instrument);
    if f.has(Fields::GREEKS) {
        let g = &tick.greeks;
        for v in [g.delta, g.theta, g.gamma, g.vega, g.rho] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }
    for l in bids.iter().chain(asks) {
        out.extend_from_slice(&l.price.to_le_bytes());
        out.extend_from_slice(&l.qty.to_le_bytes());
        out.extend_from_slice(&l.orders.to_le_bytes());
    }
}

/// A binary tick read back: codes as they are on the wire, slices borrowed from the bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryTick<'a> {
    /// Vendor code (`vendor::Vendor::code`).
    pub vendor: u8,
    /// Exchange code.
    pub exchange: u8,
    /// Subscription mode code (1 ltp, 2 quote, 3 full, 4 greeks).
    pub mode: u8,
    /// Whether the instrument is an index.
    pub is_index: bool,
    /// Which fields the tick carries ([`Fields`] bits).
    pub fields: Fields,
    /// Receive time, epoch ns.
    pub received_at_ns: u64,
    /// Last trade time, epoch ms (0: not sent).
    pub last_trade_time_ms: i64,
    /// Exchange time, epoch ms (0: not sent).
    pub exchange_time_ms: i64,
    /// ltp, ltq, atp, volume, totalBuyQty, totalSellQty, open, high, low, close, oi, oiDayHigh,
    /// oiDayLow, iv (0 where the field bit is clear).
    pub values: [f64; 14],
    /// The vendor's token.
    pub token: &'a str,
    /// The instrument (the record's key).
    pub instrument: &'a str,
    /// delta, theta, gamma, vega, rho, when [`Fields::GREEKS`] is set.
    pub greeks: Option<[f64; 5]>,
    /// Bid levels, best first (the first `bid_len`).
    pub bids: [Level; DEPTH_LEVELS],
    /// Bid levels present.
    pub bid_len: usize,
    /// Ask levels, best first (the first `ask_len`).
    pub asks: [Level; DEPTH_LEVELS],
    /// Ask levels present.
    pub ask_len: usize,
}

/// Why bytes are not a binary tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BinaryTickError {
    /// The first four bytes are not [`BINARY_MAGIC`] (another layout version, or not a tick).
    #[error("not a layer1 binary tick of layout version 1")]
    Magic,
    /// Shorter or longer than its own lengths say, or a count past its limit, or text that is
    /// not UTF-8.
    #[error("binary tick malformed")]
    Malformed,
}

impl crate::error::ErrorCode for BinaryTickError {
    fn code(&self) -> &'static str {
        match self {
            BinaryTickError::Magic => "TICK_BINARY_MAGIC",
            BinaryTickError::Malformed => "TICK_BINARY_MALFORMED",
        }
    }
}

struct Reader<'a> {
    b: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], BinaryTickError> {
        let (head, rest) = self
            .b
            .split_at_checked(n)
            .ok_or(BinaryTickError::Malformed)?;
        self.b = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], BinaryTickError> {
        self.take(N)?
            .try_into()
            .map_err(|_| BinaryTickError::Malformed)
    }
    fn f64(&mut self) -> Result<f64, BinaryTickError> {
        Ok(f64::from_le_bytes(self.array()?))
    }
    fn text(&mut self, n: usize) -> Result<&'a str, BinaryTickError> {
        std::str::from_utf8(self.take(n)?).map_err(|_| BinaryTickError::Malformed)
    }
    fn levels(&mut self, n: usize) -> Result<[Level; DEPTH_LEVELS], BinaryTickError> {
        let mut out = [Level::default(); DEPTH_LEVELS];
        for l in out.iter_mut().take(n) {
            l.price = self.f64()?;
            l.qty = self.f64()?;
            l.orders = u32::from_le_bytes(self.array()?);
        }
        Ok(out)
    }
}

/// Reads one binary tick (the whole of `bytes`).
///
/// # Errors
/// [`BinaryTickError::Magic`] for another layout, [`BinaryTickError::Malformed`] when the bytes
/// do not hold exactly what their lengths and field bits say.
pub fn decode_binary(bytes: &[u8]) -> Result<BinaryTick<'_>, BinaryTickError> {
    let mut r = Reader { b: bytes };
    if r.array::<4>().ok() != Some(BINARY_MAGIC) {
        return Err(BinaryTickError::Magic);
    }
    let [vendor, exchange, mode, flags] = r.array::<4>()?;
    let fields = Fields(u32::from_le_bytes(r.array()?));
    let [token_len, instrument_len, bid_len, ask_len] = r.array::<4>()?.map(usize::from);
    if bid_len > DEPTH_LEVELS || ask_len > DEPTH_LEVELS {
        return Err(BinaryTickError::Malformed);
    }
    let received_at_ns = u64::from_le_bytes(r.array()?);
    let last_trade_time_ms = i64::from_le_bytes(r.array()?);
    let exchange_time_ms = i64::from_le_bytes(r.array()?);
    let mut values = [0.0; 14];
    for v in &mut values {
        *v = r.f64()?;
    }
    let token = r.text(token_len)?;
    let instrument = r.text(instrument_len)?;
    let greeks = if fields.has(Fields::GREEKS) {
        Some([r.f64()?, r.f64()?, r.f64()?, r.f64()?, r.f64()?])
    } else {
        None
    };
    let bids = r.levels(bid_len)?;
    let asks = r.levels(ask_len)?;
    if !r.b.is_empty() {
        return Err(BinaryTickError::Malformed);
    }
    Ok(BinaryTick {
        vendor,
        exchange,
        mode,
        is_index: flags & 1 == 1,
        fields,
        received_at_ns,
        last_trade_time_ms,
        exchange_time_ms,
        values,
        token,
        instrument,
        greeks,
        bids,
        bid_len,
        asks,
        ask_len,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        tick::{Exchange, Greeks, Mode, Token},
        vendor::Vendor,
    };

    /// Bytes of one depth level (price f64, quantity f64, orders u32) and of the greeks section
    /// (five f64), as `docs/tick-schema.md` gives them.
    const LEVEL: usize = 20;
    const GREEKS: usize = 40;

    /// Bytes the binary form of a tick with these lengths takes, by the documented layout.
    fn binary_len(token: usize, instrument: usize, greeks: bool, levels: usize) -> usize {
        BINARY_HEAD + token + instrument + if greeks { GREEKS } else { 0 } + levels * LEVEL
    }

    fn quote() -> Tick {
        let mut t = Tick::EMPTY;
        t.vendor = Vendor::Kite;
        t.exchange = Exchange::Nse;
        t.mode = Mode::Quote;
        t.token = Token::from_u32(408_065);
        t.received_at_ns = 1_764_400_000_123_456_789;
        t.exchange_time_ms = 1_764_400_000_120;
        t.ltp = 1_520.35;
        t.ltq = 25.0;
        t.volume = 1_234_567.0;
        t.close = 1_500.0;
        t.fields = Fields::LTP
            .with(Fields::LTQ)
            .with(Fields::VOLUME)
            .with(Fields::CLOSE)
            .with(Fields::EXCHANGE_TIME);
        t
    }

    #[test]
    fn a_quote_tick_round_trips_in_the_documented_size() {
        let t = quote();
        // Into a buffer already grown, as the producer's: written in place, no allocation.
        let mut out = Vec::with_capacity(512);
        let at = out.as_ptr();
        encode_binary(&t, b"NSE:INFY", &mut out);
        assert_eq!((out.as_ptr(), out.capacity()), (at, 512));
        assert_eq!(out.len(), binary_len(6, 8, false, 0));
        assert_eq!(out.len(), 166, "the size docs/tick-schema.md gives");
        assert_eq!(out.get(..4), Some(&BINARY_MAGIC[..]));
        let d = decode_binary(&out).expect("decodes");
        assert_eq!(
            (d.vendor, d.exchange, d.mode, d.is_index),
            (
                Vendor::Kite.code(),
                Exchange::Nse as u8,
                Mode::Quote as u8,
                false
            )
        );
        assert_eq!(
            (d.fields, d.token, d.instrument),
            (t.fields, "408065", "NSE:INFY")
        );
        assert_eq!(
            (d.received_at_ns, d.last_trade_time_ms, d.exchange_time_ms),
            (t.received_at_ns, 0, t.exchange_time_ms)
        );
        assert_eq!(d.values, values(&t));
        assert_eq!((d.greeks, d.bid_len, d.ask_len), (None, 0, 0));
        // Fixed offsets, as documented: fields at 8, receive time at 16, ltp at 40.
        assert_eq!(out.get(8..12), Some(&t.fields.0.to_le_bytes()[..]));
        assert_eq!(out.get(16..24), Some(&t.received_at_ns.to_le_bytes()[..]));
        assert_eq!(out.get(40..48), Some(&t.ltp.to_le_bytes()[..]));
    }

    #[test]
    fn greeks_and_depth_follow_only_when_carried() {
        let mut t = quote();
        t.mode = Mode::Full;
        t.is_index = true;
        t.greeks = Greeks {
            delta: 0.5,
            theta: -1.25,
            gamma: 0.01,
            vega: 3.0,
            rho: -0.2,
        };
        for i in 0..3 {
            t.depth.bids[i] = Level {
                price: 1_520.0 - i as f64,
                qty: 10.0 * (i + 1) as f64,
                orders: i as u32 + 1,
            };
        }
        t.depth.asks[0] = Level {
            price: 1_520.5,
            qty: 7.0,
            orders: 2,
        };
        t.depth.bid_len = 3;
        t.depth.ask_len = 1;
        t.fields = t.fields.with(Fields::GREEKS).with(Fields::DEPTH);
        let mut out = vec![0xAA];
        encode_binary(&t, b"NSE:INFY", &mut out);
        let bytes = out.get(1..).expect("appended after what was there");
        assert_eq!(bytes.len(), binary_len(6, 8, true, 4));
        let d = decode_binary(bytes).expect("decodes");
        assert!(d.is_index);
        assert_eq!(d.greeks, Some([0.5, -1.25, 0.01, 3.0, -0.2]));
        assert_eq!((d.bid_len, d.ask_len), (3, 1));
        assert_eq!(d.bids.get(..3), t.depth.bids.get(..3));
        assert_eq!(d.asks.first(), t.depth.asks.first());
        // Depth levels in the tick but without the DEPTH bit are not written.
        t.fields = Fields(t.fields.0 & !Fields::DEPTH.0);
        out.clear();
        encode_binary(&t, b"NSE:INFY", &mut out);
        assert_eq!(out.len(), binary_len(6, 8, true, 0));
    }

    #[test]
    fn a_long_instrument_is_cut_whole_characters_and_still_decodes() {
        // 254 ASCII bytes then a 3-byte character: a cut at 255 would split it.
        let mut key = "A".repeat(254);
        key.push_str("\u{20b9}XYZ");
        let mut out = Vec::new();
        encode_binary(&quote(), key.as_bytes(), &mut out);
        let d = decode_binary(&out).expect("decodes");
        assert_eq!(d.instrument, "A".repeat(254));
        // At the limit exactly nothing is cut.
        let exact = "B".repeat(255);
        out.clear();
        encode_binary(&quote(), exact.as_bytes(), &mut out);
        assert_eq!(decode_binary(&out).expect("decodes").instrument, exact);
    }

    #[test]
    fn bad_bytes_are_refused_typed_never_a_panic() {
        let mut out = Vec::new();
        encode_binary(&quote(), b"NSE:INFY", &mut out);
        // Every truncation, and one byte too many.
        for n in 0..out.len() {
            let cut = out.get(..n).unwrap_or(&[]);
            let want = if n < 4 {
                BinaryTickError::Magic
            } else {
                BinaryTickError::Malformed
            };
            assert_eq!(decode_binary(cut), Err(want), "cut at {n}");
        }
        let mut long = out.clone();
        long.push(0);
        assert_eq!(decode_binary(&long), Err(BinaryTickError::Malformed));
        // Another layout version.
        let mut v2 = out.clone();
        v2[3] = 2;
        assert_eq!(decode_binary(&v2), Err(BinaryTickError::Magic));
        // A side of more levels than a tick holds.
        let mut deep = out.clone();
        deep[14] = 6;
        assert_eq!(decode_binary(&deep), Err(BinaryTickError::Malformed));
        // A token that is not UTF-8.
        let mut bad = out;
        bad[BINARY_HEAD] = 0xff;
        assert_eq!(decode_binary(&bad), Err(BinaryTickError::Malformed));
        use crate::error::ErrorCode as _;
        assert_eq!(BinaryTickError::Magic.code(), "TICK_BINARY_MAGIC");
        assert_eq!(BinaryTickError::Malformed.code(), "TICK_BINARY_MALFORMED");
    }
}
