//! Angel One SmartAPI WebSocket 2.0: binary packet parser and encoder (little-endian, one packet
//! per frame).
//!
//! Packet (vendor-protocols §3.3 and its Appendix): `[0]` mode (1 LTP 51 B, 2 Quote 123 B,
//! 3 SnapQuote 379 B, 4 Depth-20 443 B), `[1]` exchange type, `[2,27)` token as NUL-padded ASCII,
//! `[27,35)` i64 sequence number, `[35,43)` i64 exchange timestamp in epoch ms, then the mode's
//! fields. Prices are int64 paise (÷100); total buy/sell quantities are float64; every other
//! number is a signed int64. SnapQuote's best-five entries are split by their buy/sell flag, not
//! by position, and zero-filled slots are skipped. Packet layouts are zerocopy views over the
//! frame, so nothing is copied.
//!
//! Text frames are the `pong` answer to our `ping` (a heartbeat) or JSON error replies
//! (`{"errorCode":"E1002",...}`), classified by [`classify_text`].

use zerocopy::{
    byteorder::little_endian::{F64, I16, I32, I64},
    FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned,
};

use super::{FeedEvent, FrameMeta, FrameOutcome, ParseError, TextKind, TickSink};
use crate::{
    tick::{Depth, Exchange, Fields, Level, Mode, Tick, Token, DEPTH_LEVELS},
    vendor::Vendor,
};

/// Bytes of the NUL-padded token field.
pub const TOKEN_FIELD_LEN: usize = 25;

/// Largest frame accepted: one Depth-20 packet is 443 bytes; anything over 64 KiB is not a
/// SmartAPI packet and is refused before any decoding.
pub const MAX_FRAME_LEN: usize = 64 << 10;

/// Angel's subscription modes (byte 0 of a packet, `params.mode` of a request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AngelMode {
    /// 51-byte packet: last traded price.
    Ltp = 1,
    /// 123-byte packet: quote.
    Quote = 2,
    /// 379-byte packet: quote, times, OI, best five, circuits.
    SnapQuote = 3,
    /// 443-byte packet: 20-level depth (retired by Angel in April 2025; layout per the JS SDK).
    Depth20 = 4,
}

impl AngelMode {
    /// The mode for a wire code.
    pub const fn from_code(code: u8) -> Option<AngelMode> {
        match code {
            1 => Some(AngelMode::Ltp),
            2 => Some(AngelMode::Quote),
            3 => Some(AngelMode::SnapQuote),
            4 => Some(AngelMode::Depth20),
            _ => None,
        }
    }

    /// The packet length of this mode.
    pub const fn packet_len(self) -> usize {
        match self {
            AngelMode::Ltp => 51,
            AngelMode::Quote => 123,
            AngelMode::SnapQuote => 379,
            AngelMode::Depth20 => 443,
        }
    }

    /// The engine mode a tick of this packet carries.
    pub const fn tick_mode(self) -> Mode {
        match self {
            AngelMode::Ltp => Mode::Ltp,
            AngelMode::Quote => Mode::Quote,
            AngelMode::SnapQuote | AngelMode::Depth20 => Mode::Full,
        }
    }

    /// The Angel mode used to subscribe an engine mode (greeks have no Angel equivalent and map
    /// to SnapQuote, the richest tick mode).
    pub const fn for_mode(m: Mode) -> AngelMode {
        match m {
            Mode::Ltp => AngelMode::Ltp,
            Mode::Quote => AngelMode::Quote,
            Mode::Full | Mode::Greeks => AngelMode::SnapQuote,
        }
    }
}

/// The engine exchange for an Angel exchange type (1 nse_cm, 2 nse_fo, 3 bse_cm, 4 bse_fo,
/// 5 mcx_fo, 13 cde_fo). NCDEX (7, ncx_fo) has no [`Exchange`] of its own and is refused rather
/// than mislabelled.
pub const fn exchange_of(exchange_type: u8) -> Option<Exchange> {
    match exchange_type {
        1 => Some(Exchange::Nse),
        2 => Some(Exchange::Nfo),
        3 => Some(Exchange::Bse),
        4 => Some(Exchange::Bfo),
        5 => Some(Exchange::Mcx),
        13 => Some(Exchange::Cds),
        _ => None,
    }
}

/// The Angel exchange type for an engine exchange (the inverse of [`exchange_of`]).
pub const fn exchange_type_of(e: Exchange) -> Option<u8> {
    match e {
        Exchange::Nse => Some(1),
        Exchange::Nfo => Some(2),
        Exchange::Bse => Some(3),
        Exchange::Bfo => Some(4),
        Exchange::Mcx => Some(5),
        Exchange::Cds => Some(13),
        _ => None,
    }
}

/// The price divisor for an exchange type. Paise (÷100) is documented for cash [ADOC]; the
/// SmartAPI team says it "changes according to the segment", and currency (13, cde_fo) is
/// commonly reported as ÷10^7. UNCONFIRMED: no official SDK scales by segment (both print the
/// raw int64), so 10^7 for cde_fo follows the forum reports the sheet cites [AF-div].
pub const fn divisor(exchange_type: u8) -> f64 {
    match exchange_type {
        13 => 10_000_000.0,
        _ => 100.0,
    }
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Head {
    mode: u8,
    exchange_type: u8,
    token: [u8; TOKEN_FIELD_LEN],
    sequence: I64,
    exchange_ts_ms: I64,
    ltp: I64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct QuotePacket {
    head: Head,
    ltq: I64,
    atp: I64,
    volume: I64,
    total_buy_qty: F64,
    total_sell_qty: F64,
    open: I64,
    high: I64,
    low: I64,
    close: I64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Default)]
#[repr(C)]
struct BestFive {
    flag: I16,
    qty: I64,
    price: I64,
    orders: I16,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct SnapQuotePacket {
    quote: QuotePacket,
    last_trade_ts: I64,
    oi: I64,
    oi_change_pct: F64,
    best_five: [BestFive; 10],
    upper_circuit: I64,
    lower_circuit: I64,
    week52_high: I64,
    week52_low: I64,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Default)]
#[repr(C)]
struct Depth20Entry {
    qty: I32,
    price: I32,
    orders: I16,
}

/// Depth-20, as the JS SDK reads it: `[27,35)` exchange timestamp, `[35,43)` packet-received
/// time, then 20 buys and 20 sells. UNCONFIRMED (the Python SDK puts the timestamp at 35; the
/// mode was retired in April 2025), so this follows smartapi-javascript `websocket2.0.js`.
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Depth20Packet {
    mode: u8,
    exchange_type: u8,
    token: [u8; TOKEN_FIELD_LEN],
    exchange_ts_ms: I64,
    received_ts_ms: I64,
    buys: [Depth20Entry; 20],
    sells: [Depth20Entry; 20],
}

const _: () = assert!(size_of::<Head>() == 51);
const _: () = assert!(size_of::<QuotePacket>() == 123);
const _: () = assert!(size_of::<BestFive>() == 20);
const _: () = assert!(size_of::<SnapQuotePacket>() == 379);
const _: () = assert!(size_of::<Depth20Entry>() == 10);
const _: () = assert!(size_of::<Depth20Packet>() == 443);

const QUOTE_FIELDS: Fields = Fields(
    Fields::LTP.0
        | Fields::LTQ.0
        | Fields::ATP.0
        | Fields::VOLUME.0
        | Fields::TOTAL_BUY_QTY.0
        | Fields::TOTAL_SELL_QTY.0
        | Fields::OPEN.0
        | Fields::HIGH.0
        | Fields::LOW.0
        | Fields::CLOSE.0
        | Fields::EXCHANGE_TIME.0,
);
const SNAP_FIELDS: Fields = Fields(
    QUOTE_FIELDS.0
        | Fields::LAST_TRADE_TIME.0
        | Fields::OI.0
        | Fields::DEPTH.0
        | Fields::DEPTH_ORDERS.0,
);

/// The token text: ASCII up to the first NUL, non-empty.
fn token_of(raw: &[u8; TOKEN_FIELD_LEN]) -> Result<Token, ParseError> {
    let end = raw.iter().position(|&b| b == 0).unwrap_or(TOKEN_FIELD_LEN);
    let text = raw.get(..end).ok_or(ParseError::AngelBadToken)?;
    if text.is_empty() || !text.iter().all(|b| b.is_ascii_graphic()) {
        return Err(ParseError::AngelBadToken);
    }
    let s = std::str::from_utf8(text).map_err(|_| ParseError::AngelBadToken)?;
    Token::new(s).map_err(|_| ParseError::AngelBadToken)
}

fn qty(v: I64) -> f64 {
    v.get() as f64
}

/// The last-traded timestamp of a SnapQuote. UNCONFIRMED unit: the sheet gives none; the
/// exchange timestamp is documented as epoch ms, and SmartAPI's sample SnapQuote output shows a
/// 10-digit value, so a value below 10^11 is read as seconds and anything larger as ms.
/// `unsigned_abs`: `abs` of `i64::MIN` overflows (a panic with overflow checks; found by the
/// `angel` fuzz target).
fn last_trade_ms(v: i64) -> i64 {
    if v.unsigned_abs() < 100_000_000_000 {
        v.saturating_mul(1000)
    } else {
        v
    }
}

/// Decodes one packet into `t`, overwriting all of it.
///
/// # Errors
/// [`ParseError::AngelUnknownMode`], [`ParseError::AngelTruncated`],
/// [`ParseError::AngelUnknownExchange`], [`ParseError::AngelBadToken`].
pub fn decode_packet_into(packet: &[u8], meta: &FrameMeta, t: &mut Tick) -> Result<(), ParseError> {
    let (&mode_code, rest) = packet
        .split_first()
        .ok_or(ParseError::AngelTruncated { len: 0, need: 1 })?;
    let mode =
        AngelMode::from_code(mode_code).ok_or(ParseError::AngelUnknownMode { mode: mode_code })?;
    let need = mode.packet_len();
    if packet.len() < need {
        return Err(ParseError::AngelTruncated {
            len: packet.len(),
            need,
        });
    }
    let _ = rest;
    let exchange_type = packet.get(1).copied().unwrap_or(0);
    let exchange = exchange_of(exchange_type).ok_or(ParseError::AngelUnknownExchange {
        code: exchange_type,
    })?;
    let div = divisor(exchange_type);
    let price = |v: I64| v.get() as f64 / div;
    let truncated = ParseError::AngelTruncated {
        len: packet.len(),
        need,
    };
    *t = Tick::EMPTY;
    t.received_at_ns = meta.received_at_ns;
    t.conn_id = meta.conn_id;
    t.vendor = Vendor::Angel;
    t.exchange = exchange;
    t.mode = mode.tick_mode();
    match mode {
        AngelMode::Depth20 => {
            let p = Depth20Packet::ref_from_prefix(packet)
                .map_err(|_| truncated)?
                .0;
            t.token = token_of(&p.token)?;
            t.exchange_time_ms = p.exchange_ts_ms.get();
            t.fields = Fields::EXCHANGE_TIME | Fields::DEPTH | Fields::DEPTH_ORDERS;
            // The engine keeps the best five levels per side.
            let lvl = |e: &Depth20Entry| Level {
                price: f64::from(e.price.get()) / div,
                qty: f64::from(e.qty.get()),
                orders: u32::try_from(e.orders.get()).unwrap_or(0),
            };
            fill_side(
                &mut t.depth.bids,
                &mut t.depth.bid_len,
                p.buys.iter().map(lvl),
            );
            fill_side(
                &mut t.depth.asks,
                &mut t.depth.ask_len,
                p.sells.iter().map(lvl),
            );
            return Ok(());
        }
        AngelMode::Ltp => {
            let h = Head::ref_from_prefix(packet).map_err(|_| truncated)?.0;
            t.token = token_of(&h.token)?;
            t.exchange_time_ms = h.exchange_ts_ms.get();
            t.ltp = price(h.ltp);
            t.fields = Fields::LTP | Fields::EXCHANGE_TIME;
        }
        AngelMode::Quote | AngelMode::SnapQuote => {
            let q = QuotePacket::ref_from_prefix(packet)
                .map_err(|_| truncated)?
                .0;
            t.token = token_of(&q.head.token)?;
            t.exchange_time_ms = q.head.exchange_ts_ms.get();
            t.ltp = price(q.head.ltp);
            t.ltq = qty(q.ltq);
            t.atp = price(q.atp);
            t.volume = qty(q.volume);
            t.total_buy_qty = q.total_buy_qty.get();
            t.total_sell_qty = q.total_sell_qty.get();
            t.open = price(q.open);
            t.high = price(q.high);
            t.low = price(q.low);
            t.close = price(q.close);
            t.fields = QUOTE_FIELDS;
            if mode == AngelMode::SnapQuote {
                let s = SnapQuotePacket::ref_from_prefix(packet)
                    .map_err(|_| truncated)?
                    .0;
                t.last_trade_time_ms = last_trade_ms(s.last_trade_ts.get());
                t.oi = qty(s.oi);
                t.fields = SNAP_FIELDS;
                // Split by flag (1 buy, 0 sell), as smartapi-python does: the JS SDK's split by
                // position mislabels a book whose sides are not five and five. A zero-filled slot
                // (flag 0, nothing in it) is an empty level, not a sell at 0.
                let mut bids = [Level::default(); DEPTH_LEVELS];
                let mut asks = [Level::default(); DEPTH_LEVELS];
                let (mut nb, mut na) = (0usize, 0usize);
                for e in &s.best_five {
                    if e.qty.get() == 0 && e.price.get() == 0 && e.orders.get() == 0 {
                        continue;
                    }
                    let l = Level {
                        price: price(e.price),
                        qty: qty(e.qty),
                        orders: u32::try_from(e.orders.get()).unwrap_or(0),
                    };
                    let (side, n) = if e.flag.get() == 1 {
                        (&mut bids, &mut nb)
                    } else {
                        (&mut asks, &mut na)
                    };
                    if let Some(slot) = side.get_mut(*n) {
                        *slot = l;
                        *n += 1;
                    }
                }
                t.depth = Depth {
                    bids,
                    asks,
                    bid_len: nb as u8,
                    ask_len: na as u8,
                };
            }
        }
    }
    Ok(())
}

fn fill_side(dst: &mut [Level; DEPTH_LEVELS], len: &mut u8, src: impl Iterator<Item = Level>) {
    let mut n = 0u8;
    for l in src {
        if l.qty == 0.0 && l.price == 0.0 {
            continue;
        }
        if let Some(slot) = dst.get_mut(usize::from(n)) {
            *slot = l;
            n += 1;
        } else {
            break;
        }
    }
    *len = n;
}

/// Decodes one packet.
///
/// # Errors
/// As [`decode_packet_into`].
pub fn decode_packet(packet: &[u8], meta: &FrameMeta) -> Result<Tick, ParseError> {
    let mut t = Tick::EMPTY;
    decode_packet_into(packet, meta, &mut t)?;
    Ok(t)
}

/// Parses one binary frame: one packet, whose length must match its mode. Bytes after the
/// packet are rejected separately (the packet itself is still delivered).
pub fn parse_frame<S: TickSink + ?Sized>(
    frame: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
) -> FrameOutcome {
    if let Some(refused) = super::refuse_oversized(frame, MAX_FRAME_LEN, sink) {
        return refused;
    }
    let mut out = FrameOutcome::default();
    let mut tick = Tick::EMPTY;
    match decode_packet_into(frame, meta, &mut tick) {
        Ok(()) => {
            sink.tick(&tick);
            out.ticks += 1;
            let used = frame
                .first()
                .and_then(|&m| AngelMode::from_code(m))
                .map_or(frame.len(), AngelMode::packet_len);
            if let Some(extra) = frame.get(used..).filter(|r| !r.is_empty()) {
                sink.reject(
                    &ParseError::AngelTrailingBytes { extra: extra.len() },
                    extra,
                );
                out.rejects += 1;
            }
        }
        Err(e) => {
            sink.reject(&e, frame);
            out.rejects += 1;
        }
    }
    out
}

/// Handles a text frame: `pong` is the heartbeat answer; JSON with `errorCode` is an error
/// reply; anything else is reported as unknown text.
pub fn parse_text<S: TickSink + ?Sized>(text: &[u8], sink: &mut S) -> FrameOutcome {
    if text.trim_ascii() == b"pong" {
        return FrameOutcome {
            heartbeat: true,
            ..FrameOutcome::default()
        };
    }
    sink.event(&FeedEvent::Text {
        vendor: Vendor::Angel,
        kind: classify_text(text),
        raw: text,
    });
    FrameOutcome {
        events: 1,
        ..FrameOutcome::default()
    }
}

/// Classifies a JSON reply: one with a non-empty `errorCode` (E1001 invalid request, E1002
/// subscription limit) is an error.
pub fn classify_text(text: &[u8]) -> TextKind {
    #[derive(serde::Deserialize)]
    struct Reply<'a> {
        #[serde(rename = "errorCode", borrow, default)]
        error_code: Option<&'a str>,
    }
    match serde_json::from_slice::<Reply<'_>>(text) {
        Ok(Reply {
            error_code: Some(c),
        }) if !c.is_empty() => TextKind::Error,
        Ok(_) => TextKind::Message,
        Err(_) => TextKind::Unknown,
    }
}

fn raw_price(p: f64, div: f64) -> I64 {
    // `as` saturates and maps NaN to 0: the documented behaviour for out-of-range input.
    I64::new((p * div).round() as i64)
}

fn raw_qty(q: f64) -> I64 {
    I64::new(q.round() as i64)
}

fn token_field(token: &str) -> [u8; TOKEN_FIELD_LEN] {
    let mut f = [0u8; TOKEN_FIELD_LEN];
    // At most 24 bytes so the field stays NUL-terminated, as the vendor sends it.
    for (d, s) in f.iter_mut().zip(token.bytes().take(TOKEN_FIELD_LEN - 1)) {
        *d = s;
    }
    f
}

/// Appends one Angel packet for `tick` in `mode`, with the given exchange type and token text
/// (the vendor's numeric token, e.g. `2885`) and sequence number. Prices are scaled by the
/// exchange type's divisor and rounded; the SnapQuote book writes bids with flag 1 then asks
/// with flag 0, zero-filling unused slots; circuits and 52-week values are written as 0.
pub fn encode_packet(
    tick: &Tick,
    mode: AngelMode,
    exchange_type: u8,
    token: &str,
    sequence: i64,
    out: &mut Vec<u8>,
) {
    let div = divisor(exchange_type);
    let head = Head {
        mode: mode as u8,
        exchange_type,
        token: token_field(token),
        sequence: I64::new(sequence),
        exchange_ts_ms: I64::new(tick.exchange_time_ms),
        ltp: raw_price(tick.ltp, div),
    };
    let quote = QuotePacket {
        head,
        ltq: raw_qty(tick.ltq),
        atp: raw_price(tick.atp, div),
        volume: raw_qty(tick.volume),
        total_buy_qty: F64::new(tick.total_buy_qty),
        total_sell_qty: F64::new(tick.total_sell_qty),
        open: raw_price(tick.open, div),
        high: raw_price(tick.high, div),
        low: raw_price(tick.low, div),
        close: raw_price(tick.close, div),
    };
    match mode {
        AngelMode::Ltp => out.extend_from_slice(head.as_bytes()),
        AngelMode::Quote => out.extend_from_slice(quote.as_bytes()),
        AngelMode::SnapQuote => {
            let mut best_five = [BestFive::default(); 10];
            let entry = |l: &Level, flag: i16| BestFive {
                flag: I16::new(flag),
                qty: raw_qty(l.qty),
                price: raw_price(l.price, div),
                orders: I16::new(i16::try_from(l.orders).unwrap_or(i16::MAX)),
            };
            let levels = tick
                .depth
                .bids()
                .iter()
                .map(|l| entry(l, 1))
                .chain(tick.depth.asks().iter().map(|l| entry(l, 0)));
            for (dst, src) in best_five.iter_mut().zip(levels) {
                *dst = src;
            }
            let p = SnapQuotePacket {
                quote,
                last_trade_ts: I64::new(tick.last_trade_time_ms.div_euclid(1000)),
                oi: raw_qty(tick.oi),
                oi_change_pct: F64::new(0.0),
                best_five,
                upper_circuit: I64::new(0),
                lower_circuit: I64::new(0),
                week52_high: I64::new(0),
                week52_low: I64::new(0),
            };
            out.extend_from_slice(p.as_bytes());
        }
        AngelMode::Depth20 => {
            let mut buys = [Depth20Entry::default(); 20];
            let mut sells = [Depth20Entry::default(); 20];
            let e = |l: &Level| Depth20Entry {
                qty: I32::new(l.qty.round() as i32),
                price: I32::new((l.price * div).round() as i32),
                orders: I16::new(i16::try_from(l.orders).unwrap_or(i16::MAX)),
            };
            for (d, s) in buys.iter_mut().zip(tick.depth.bids()) {
                *d = e(s);
            }
            for (d, s) in sells.iter_mut().zip(tick.depth.asks()) {
                *d = e(s);
            }
            let p = Depth20Packet {
                mode: mode as u8,
                exchange_type,
                token: token_field(token),
                exchange_ts_ms: I64::new(tick.exchange_time_ms),
                received_ts_ms: I64::new(tick.exchange_time_ms),
                buys,
                sells,
            };
            out.extend_from_slice(p.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Collect {
        ticks: Vec<Tick>,
        rejects: Vec<(ParseError, usize)>,
        events: usize,
    }

    impl TickSink for Collect {
        fn tick(&mut self, t: &Tick) {
            self.ticks.push(*t);
        }
        fn reject(&mut self, e: &ParseError, raw: &[u8]) {
            self.rejects.push((*e, raw.len()));
        }
        fn event(&mut self, _: &FeedEvent<'_>) {
            self.events += 1;
        }
    }

    fn collect(frame: &[u8]) -> Collect {
        let mut c = Collect {
            ticks: vec![],
            rejects: vec![],
            events: 0,
        };
        parse_frame(frame, &FrameMeta::default(), &mut c);
        c
    }

    fn sample() -> Tick {
        let mut t = Tick::EMPTY;
        t.ltp = 2885.35;
        t.ltq = 12.0;
        t.atp = 2880.1;
        t.volume = 1_234_567.0;
        t.total_buy_qty = 40_000.0;
        t.total_sell_qty = 50_500.0;
        t.open = 2870.0;
        t.high = 2890.55;
        t.low = 2865.2;
        t.close = 2860.0;
        t.exchange_time_ms = 1_732_700_000_123;
        t.last_trade_time_ms = 1_732_699_999_000;
        t.oi = 0.0;
        for i in 0..3 {
            t.depth.bids[i] = Level {
                price: 2885.3 - 0.05 * i as f64,
                qty: 10.0 + i as f64,
                orders: 1 + i as u32,
            };
        }
        for i in 0..4 {
            t.depth.asks[i] = Level {
                price: 2885.4 + 0.05 * i as f64,
                qty: 20.0 + i as f64,
                orders: 2,
            };
        }
        t.depth.bid_len = 3;
        t.depth.ask_len = 4;
        t
    }

    #[test]
    fn every_mode_round_trips() {
        let src = sample();
        for mode in [
            AngelMode::Ltp,
            AngelMode::Quote,
            AngelMode::SnapQuote,
            AngelMode::Depth20,
        ] {
            let mut pkt = Vec::new();
            encode_packet(&src, mode, 1, "2885", 7, &mut pkt);
            assert_eq!(pkt.len(), mode.packet_len());
            let c = collect(&pkt);
            assert!(c.rejects.is_empty(), "{mode:?}: {:?}", c.rejects);
            let t = c.ticks[0];
            assert_eq!(t.token.as_str(), "2885");
            assert_eq!(t.vendor, Vendor::Angel);
            assert_eq!(t.exchange, Exchange::Nse);
            assert_eq!(t.exchange_time_ms, src.exchange_time_ms);
            if mode != AngelMode::Depth20 {
                assert_eq!(t.ltp, 2885.35);
            }
            if matches!(mode, AngelMode::Quote | AngelMode::SnapQuote) {
                assert_eq!(
                    (t.open, t.high, t.low, t.close),
                    (2870.0, 2890.55, 2865.2, 2860.0)
                );
                assert_eq!((t.total_buy_qty, t.total_sell_qty), (40_000.0, 50_500.0));
                assert_eq!(t.volume, 1_234_567.0);
            }
            if matches!(mode, AngelMode::SnapQuote | AngelMode::Depth20) {
                assert_eq!((t.depth.bid_len, t.depth.ask_len), (3, 4), "{mode:?}");
                assert_eq!(t.depth.bids[2].price, 2885.2);
                assert_eq!(t.depth.asks[3].qty, 23.0);
            }
            if mode == AngelMode::SnapQuote {
                assert_eq!(t.last_trade_time_ms, src.last_trade_time_ms);
                assert!(t.has(Fields::OI));
            }
        }
    }

    #[test]
    fn book_is_split_by_flag_not_position() {
        let src = sample();
        let mut pkt = Vec::new();
        encode_packet(&src, AngelMode::SnapQuote, 2, "45678", 1, &mut pkt);
        // Move the first ask (entry 3, flag 0) to slot 0 and the first bid into slot 3: a
        // positional split would now report an ask as the best bid.
        let e = |i: usize| 147 + 20 * i;
        let (a, b) = (pkt[e(0)..e(1)].to_vec(), pkt[e(3)..e(4)].to_vec());
        pkt[e(0)..e(1)].copy_from_slice(&b);
        pkt[e(3)..e(4)].copy_from_slice(&a);
        let t = collect(&pkt).ticks[0];
        assert_eq!(t.exchange, Exchange::Nfo);
        assert_eq!(t.depth.bid_len, 3);
        assert!(t.depth.bids().iter().all(|l| l.price < 2885.35));
        assert!(t.depth.asks().iter().all(|l| l.price > 2885.35));
    }

    #[test]
    fn oi_change_is_a_double_and_currency_scales_by_1e7() {
        let mut src = sample();
        src.ltp = 83.1225;
        let mut pkt = Vec::new();
        encode_packet(&src, AngelMode::SnapQuote, 13, "1234", 1, &mut pkt);
        pkt[139..147].copy_from_slice(&1.25f64.to_le_bytes());
        let p = SnapQuotePacket::ref_from_bytes(&pkt).unwrap();
        assert_eq!(p.oi_change_pct.get(), 1.25);
        let t = collect(&pkt).ticks[0];
        assert_eq!(t.exchange, Exchange::Cds);
        assert_eq!(t.ltp, 83.1225);
        // The raw wire value is ltp × 10^7.
        assert_eq!(
            i64::from_le_bytes(pkt[43..51].try_into().unwrap()),
            831_225_000
        );
    }

    #[test]
    fn malformations_are_typed() {
        let src = sample();
        let mut pkt = Vec::new();
        encode_packet(&src, AngelMode::Quote, 1, "2885", 1, &mut pkt);
        let c = collect(&pkt[..100]);
        assert_eq!(
            c.rejects,
            vec![(
                ParseError::AngelTruncated {
                    len: 100,
                    need: 123
                },
                100
            )]
        );
        let mut bad = pkt.clone();
        bad[0] = 9;
        assert_eq!(
            collect(&bad).rejects[0].0,
            ParseError::AngelUnknownMode { mode: 9 }
        );
        let mut bad = pkt.clone();
        bad[1] = 7;
        assert_eq!(
            collect(&bad).rejects[0].0,
            ParseError::AngelUnknownExchange { code: 7 }
        );
        let mut bad = pkt.clone();
        bad[2] = 0;
        assert_eq!(collect(&bad).rejects[0].0, ParseError::AngelBadToken);
        let mut long = pkt.clone();
        long.extend_from_slice(&[1, 2, 3]);
        let c = collect(&long);
        assert_eq!(c.ticks.len(), 1);
        assert_eq!(
            c.rejects,
            vec![(ParseError::AngelTrailingBytes { extra: 3 }, 3)]
        );
        assert_eq!(
            collect(&[]).rejects[0].0,
            ParseError::AngelTruncated { len: 0, need: 1 }
        );
        let big = vec![1u8; MAX_FRAME_LEN + 1];
        assert!(matches!(
            collect(&big).rejects[0].0,
            ParseError::FrameTooLarge { .. }
        ));
    }

    #[test]
    fn text_frames() {
        let mut c = Collect {
            ticks: vec![],
            rejects: vec![],
            events: 0,
        };
        assert!(parse_text(b"pong", &mut c).heartbeat);
        assert_eq!(c.events, 0);
        assert_eq!(
            parse_text(br#"{"errorCode":"E1002","errorMessage":"limit"}"#, &mut c).events,
            1
        );
        assert_eq!(classify_text(br#"{"errorCode":"E1001"}"#), TextKind::Error);
        assert_eq!(
            classify_text(br#"{"correlationID":"x"}"#),
            TextKind::Message
        );
        assert_eq!(classify_text(b"garbage"), TextKind::Unknown);
    }
}
