//! Dhan v2 live market feed: binary packet parser and encoder (little-endian).
//!
//! Every packet starts with an 8-byte header `<BHBI`: response code u8, message length u16,
//! exchange segment u8, security id u32 (vendor-protocols §4.2 and its Appendix). Packets by code:
//! 2 ticker (16 B), 3 market depth (v1, 112 B), 4 quote (50 B), 5 OI (12 B), 6 previous close
//! (16 B), 7 market status (8 B), 8 full (162 B), 50 disconnect (10 B). Prices are float32 rupees;
//! integers are unsigned; the last-trade time is IST clock time written as if it were UTC, so
//! 19,800 s are subtracted. Total *sell* quantity precedes total *buy* quantity on the wire.
//!
//! Unlike the official SDK (which decodes only a message's first packet), the parser walks every
//! packet of a frame by its length. Whether the length counts the header is UNCONFIRMED; the
//! walk accepts either reading when it matches the code's fixed size (total, or total − 8) and
//! steps by the fixed size, so both framings decode identically.

use zerocopy::{
    byteorder::little_endian::{F32, U16, U32},
    FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned,
};

use super::{FeedEvent, FrameMeta, FrameOutcome, MarketStatus, ParseError, TickSink};
use crate::{
    tick::{Exchange, Fields, Level, Mode, Tick, Token, DEPTH_LEVELS},
    vendor::Vendor,
};

/// Header length.
pub const HEADER_LEN: usize = 8;

/// Largest frame accepted. The SDK reads one packet per message; a frame of many full packets is
/// still far below this. Larger frames are refused whole before decoding.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// IST − UTC in seconds: Dhan's LTT encodes Indian clock time as if it were UTC (DhanHQ-py #51).
pub const IST_OFFSET_S: i64 = 19_800;

/// Response codes.
pub mod code {
    /// Ticker: LTP and LTT.
    pub const TICKER: u8 = 2;
    /// Market depth (v1 feed): LTP and five levels.
    pub const DEPTH: u8 = 3;
    /// Quote.
    pub const QUOTE: u8 = 4;
    /// Open interest.
    pub const OI: u8 = 5;
    /// Previous close and previous OI.
    pub const PREV_CLOSE: u8 = 6;
    /// Market status.
    pub const MARKET_STATUS: u8 = 7;
    /// Full: quote, OI and five levels.
    pub const FULL: u8 = 8;
    /// Server disconnect with a reason.
    pub const DISCONNECT: u8 = 50;
}

/// The fixed packet size (header included) of a response code.
pub const fn packet_len(code: u8) -> Option<usize> {
    match code {
        code::TICKER => Some(16),
        code::DEPTH => Some(112),
        code::QUOTE => Some(50),
        code::OI => Some(12),
        code::PREV_CLOSE => Some(16),
        code::MARKET_STATUS => Some(8),
        code::FULL => Some(162),
        code::DISCONNECT => Some(10),
        _ => None,
    }
}

/// Exchange segment codes and names (the request's `ExchangeSegment` strings).
pub const SEGMENTS: [(u8, &str); 8] = [
    (0, "IDX_I"),
    (1, "NSE_EQ"),
    (2, "NSE_FNO"),
    (3, "NSE_CURRENCY"),
    (4, "BSE_EQ"),
    (5, "MCX_COMM"),
    (7, "BSE_CURRENCY"),
    (8, "BSE_FNO"),
];

/// The segment name for a code.
pub fn segment_name(code: u8) -> Option<&'static str> {
    SEGMENTS.iter().find(|(c, _)| *c == code).map(|(_, n)| *n)
}

/// The segment code for a name.
pub fn segment_code(name: &str) -> Option<u8> {
    SEGMENTS.iter().find(|(_, n)| *n == name).map(|(c, _)| *c)
}

/// The engine exchange for a segment code, and whether it is the index segment.
pub const fn exchange_of(segment: u8) -> Option<(Exchange, bool)> {
    match segment {
        0 => Some((Exchange::Indices, true)),
        1 => Some((Exchange::Nse, false)),
        2 => Some((Exchange::Nfo, false)),
        3 => Some((Exchange::Cds, false)),
        4 => Some((Exchange::Bse, false)),
        5 => Some((Exchange::Mcx, false)),
        7 => Some((Exchange::Bcd, false)),
        8 => Some((Exchange::Bfo, false)),
        _ => None,
    }
}

/// The segment code for an engine exchange (indices map to `IDX_I`).
pub const fn segment_of(e: Exchange) -> Option<u8> {
    match e {
        Exchange::Indices => Some(0),
        Exchange::Nse => Some(1),
        Exchange::Nfo => Some(2),
        Exchange::Cds => Some(3),
        Exchange::Bse => Some(4),
        Exchange::Mcx => Some(5),
        Exchange::Bcd => Some(7),
        Exchange::Bfo => Some(8),
        _ => None,
    }
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Header {
    code: u8,
    len: U16,
    segment: u8,
    security_id: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Ticker {
    h: Header,
    ltp: F32,
    ltt: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy, Default)]
#[repr(C)]
struct DepthLevel {
    bid_qty: U32,
    ask_qty: U32,
    bid_orders: U16,
    ask_orders: U16,
    bid_price: F32,
    ask_price: F32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct DepthV1 {
    h: Header,
    ltp: F32,
    depth: [DepthLevel; 5],
}

/// The part quote and full packets share (`[8,34)`).
#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct QuoteHead {
    h: Header,
    ltp: F32,
    ltq: U16,
    ltt: U32,
    atp: F32,
    volume: U32,
    total_sell_qty: U32,
    total_buy_qty: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Quote {
    q: QuoteHead,
    open: F32,
    // Today's close, sent only after the market closes: not the previous close the tick's
    // `close` carries (that comes in packet 6), so it is not mapped.
    day_close: F32,
    high: F32,
    low: F32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Oi {
    h: Header,
    oi: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct PrevClose {
    h: Header,
    prev_close: F32,
    prev_oi: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Full {
    q: QuoteHead,
    oi: U32,
    oi_day_high: U32,
    oi_day_low: U32,
    open: F32,
    day_close: F32,
    high: F32,
    low: F32,
    depth: [DepthLevel; 5],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Clone, Copy)]
#[repr(C)]
struct Disconnect {
    h: Header,
    reason: U16,
}

const _: () = assert!(size_of::<Header>() == 8);
const _: () = assert!(size_of::<Ticker>() == 16);
const _: () = assert!(size_of::<DepthLevel>() == 20);
const _: () = assert!(size_of::<DepthV1>() == 112);
const _: () = assert!(size_of::<QuoteHead>() == 34);
const _: () = assert!(size_of::<Quote>() == 50);
const _: () = assert!(size_of::<Oi>() == 12);
const _: () = assert!(size_of::<PrevClose>() == 16);
const _: () = assert!(size_of::<Full>() == 162);
const _: () = assert!(size_of::<Disconnect>() == 10);

/// Rounds a float32 price to the segment's finest tick grid. float32 cannot hold every paisa
/// above 131,072, and `1573.7f32` widens to `1573.699951171875`; the exchange's ticks are
/// multiples of 0.01 (equity, F&O, MCX) or 0.0001 (currency futures: 0.0025), so rounding to that
/// grid restores the exchange's price wherever float32 kept it, instead of the SDK's
/// two-decimal string (which loses currency digits).
fn price(v: F32, currency: bool) -> f64 {
    let scale = if currency { 10_000.0 } else { 100.0 };
    let x = f64::from(v.get());
    if x.is_finite() {
        (x * scale).round() / scale
    } else {
        x
    }
}

/// LTT: IST-as-UTC epoch seconds to true epoch ms; 0 stays 0 (absent).
fn ltt_ms(v: U32) -> i64 {
    match i64::from(v.get()) {
        0 => 0,
        s => (s - IST_OFFSET_S) * 1000,
    }
}

const QUOTE_FIELDS: Fields = Fields(
    Fields::LTP.0
        | Fields::LTQ.0
        | Fields::LAST_TRADE_TIME.0
        | Fields::ATP.0
        | Fields::VOLUME.0
        | Fields::TOTAL_BUY_QTY.0
        | Fields::TOTAL_SELL_QTY.0
        | Fields::OPEN.0
        | Fields::HIGH.0
        | Fields::LOW.0,
);

fn quote_head(q: &QuoteHead, cur: bool, t: &mut Tick) {
    t.ltp = price(q.ltp, cur);
    t.ltq = f64::from(q.ltq.get());
    t.last_trade_time_ms = ltt_ms(q.ltt);
    t.atp = price(q.atp, cur);
    t.volume = f64::from(q.volume.get());
    t.total_sell_qty = f64::from(q.total_sell_qty.get());
    t.total_buy_qty = f64::from(q.total_buy_qty.get());
}

fn depth(levels: &[DepthLevel; 5], cur: bool, t: &mut Tick) {
    // A level pairs a bid and an ask; an empty side of a level is all zeros. Levels are best
    // first, so the carried length is the run of non-empty ones.
    let (mut nb, mut na) = (0u8, 0u8);
    for (i, l) in levels.iter().enumerate().take(DEPTH_LEVELS) {
        if l.bid_qty.get() != 0 || l.bid_price.get() != 0.0 {
            if let Some(d) = t.depth.bids.get_mut(i) {
                *d = Level {
                    price: price(l.bid_price, cur),
                    qty: f64::from(l.bid_qty.get()),
                    orders: u32::from(l.bid_orders.get()),
                };
                nb = nb.max(i as u8 + 1);
            }
        }
        if l.ask_qty.get() != 0 || l.ask_price.get() != 0.0 {
            if let Some(d) = t.depth.asks.get_mut(i) {
                *d = Level {
                    price: price(l.ask_price, cur),
                    qty: f64::from(l.ask_qty.get()),
                    orders: u32::from(l.ask_orders.get()),
                };
                na = na.max(i as u8 + 1);
            }
        }
    }
    t.depth.bid_len = nb;
    t.depth.ask_len = na;
}

/// What one packet decoded to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet {
    /// A tick was written.
    Tick,
    /// A market-status packet: segment and the status value.
    MarketStatus {
        /// Segment code.
        segment: u8,
        /// The raw status value.
        value: u32,
    },
    /// The server's disconnect notice (805 too many connections, 806 data APIs not subscribed,
    /// 807 token expired, 808 invalid client id, 809 authentication failed).
    Disconnect {
        /// The reason code.
        reason: u16,
    },
}

/// Decodes one packet of exactly its code's size into `t` (overwriting all of it) or into a
/// non-tick [`Packet`].
///
/// # Errors
/// [`ParseError::DhanTruncated`], [`ParseError::DhanUnknownCode`],
/// [`ParseError::DhanUnknownSegment`].
pub fn decode_packet_into(
    packet: &[u8],
    meta: &FrameMeta,
    t: &mut Tick,
) -> Result<Packet, ParseError> {
    let (h, _) =
        Header::read_from_prefix(packet).map_err(|_| ParseError::DhanTruncated { at: 0 })?;
    let need = packet_len(h.code).ok_or(ParseError::DhanUnknownCode { code: h.code })?;
    if packet.len() < need {
        return Err(ParseError::DhanTruncated { at: packet.len() });
    }
    let trunc = ParseError::DhanTruncated { at: packet.len() };
    match h.code {
        code::DISCONNECT => {
            let p = Disconnect::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            return Ok(Packet::Disconnect {
                reason: p.reason.get(),
            });
        }
        code::MARKET_STATUS => {
            // The SDK reports a fixed string whatever the bytes; the only value an 8-byte packet
            // can carry is in the header's id field, so that is what is reported. UNCONFIRMED:
            // the meaning of the values is not documented.
            return Ok(Packet::MarketStatus {
                segment: h.segment,
                value: h.security_id.get(),
            });
        }
        _ => {}
    }
    let (exchange, is_index) =
        exchange_of(h.segment).ok_or(ParseError::DhanUnknownSegment { code: h.segment })?;
    let cur = matches!(exchange, Exchange::Cds | Exchange::Bcd);
    *t = Tick::EMPTY;
    t.received_at_ns = meta.received_at_ns;
    t.conn_id = meta.conn_id;
    t.vendor = Vendor::Dhan;
    t.exchange = exchange;
    t.is_index = is_index;
    t.token = Token::from_u32(h.security_id.get());
    match h.code {
        code::TICKER => {
            let p = Ticker::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            t.mode = Mode::Ltp;
            t.ltp = price(p.ltp, cur);
            t.last_trade_time_ms = ltt_ms(p.ltt);
            t.fields = Fields::LTP | Fields::LAST_TRADE_TIME;
        }
        code::DEPTH => {
            let p = DepthV1::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            t.mode = Mode::Full;
            t.ltp = price(p.ltp, cur);
            depth(&p.depth, cur, t);
            t.fields = Fields::LTP | Fields::DEPTH | Fields::DEPTH_ORDERS;
        }
        code::QUOTE => {
            let p = Quote::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            t.mode = Mode::Quote;
            quote_head(&p.q, cur, t);
            t.open = price(p.open, cur);
            t.high = price(p.high, cur);
            t.low = price(p.low, cur);
            t.fields = QUOTE_FIELDS;
        }
        code::OI => {
            let p = Oi::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            t.mode = Mode::Quote;
            t.oi = f64::from(p.oi.get());
            t.fields = Fields::OI;
        }
        code::PREV_CLOSE => {
            let p = PrevClose::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            t.mode = Mode::Quote;
            t.close = price(p.prev_close, cur);
            t.fields = Fields::CLOSE;
        }
        code::FULL => {
            let p = Full::ref_from_prefix(packet).map_err(|_| trunc)?.0;
            t.mode = Mode::Full;
            quote_head(&p.q, cur, t);
            t.oi = f64::from(p.oi.get());
            t.oi_day_high = f64::from(p.oi_day_high.get());
            t.oi_day_low = f64::from(p.oi_day_low.get());
            t.open = price(p.open, cur);
            t.high = price(p.high, cur);
            t.low = price(p.low, cur);
            depth(&p.depth, cur, t);
            t.fields = QUOTE_FIELDS
                .with(Fields::OI)
                .with(Fields::OI_DAY_HIGH)
                .with(Fields::OI_DAY_LOW)
                .with(Fields::DEPTH)
                .with(Fields::DEPTH_ORDERS);
        }
        other => return Err(ParseError::DhanUnknownCode { code: other }),
    }
    Ok(Packet::Tick)
}

/// Parses one binary frame, walking every packet. A packet whose declared length disagrees with
/// its code's size is rejected, and the walk goes on by the fixed size; an unknown code is
/// skipped by its declared length when that is plausible, else the rest is rejected whole.
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
    let mut at = 0usize;
    while let Some(rest) = frame.get(at..).filter(|r| !r.is_empty()) {
        let Ok((h, _)) = Header::read_from_prefix(rest) else {
            sink.reject(&ParseError::DhanTruncated { at }, rest);
            out.rejects += 1;
            return out;
        };
        let declared = usize::from(h.len.get());
        let step = match packet_len(h.code) {
            Some(size) => {
                if declared != size && declared + HEADER_LEN != size {
                    let len = size.min(rest.len());
                    sink.reject(
                        &ParseError::DhanLengthMismatch {
                            code: h.code,
                            declared: h.len.get(),
                        },
                        rest.get(..len).unwrap_or(rest),
                    );
                    out.rejects += 1;
                    at += size;
                    continue;
                }
                size
            }
            None => {
                // Unknown code: skip it by its declared (total) length if that stays inside the
                // frame; otherwise the rest cannot be located.
                let ok = declared >= HEADER_LEN && declared <= rest.len();
                let len = if ok { declared } else { rest.len() };
                sink.reject(
                    &ParseError::DhanUnknownCode { code: h.code },
                    rest.get(..len).unwrap_or(rest),
                );
                out.rejects += 1;
                if !ok {
                    return out;
                }
                at += len;
                continue;
            }
        };
        let Some(packet) = rest.get(..step) else {
            sink.reject(&ParseError::DhanTruncated { at: frame.len() }, rest);
            out.rejects += 1;
            return out;
        };
        at += step;
        match decode_packet_into(packet, meta, &mut tick) {
            Ok(Packet::Tick) => {
                sink.tick(&tick);
                out.ticks += 1;
            }
            Ok(Packet::MarketStatus { segment, value }) => {
                sink.event(&FeedEvent::MarketStatus {
                    vendor: Vendor::Dhan,
                    segment: segment_name(segment).unwrap_or("UNKNOWN"),
                    status: MarketStatus::Unknown(i32::try_from(value).unwrap_or(i32::MAX)),
                    at_ms: 0,
                });
                out.events += 1;
            }
            Ok(Packet::Disconnect { reason }) => {
                sink.event(&FeedEvent::VendorDisconnect {
                    vendor: Vendor::Dhan,
                    reason,
                });
                out.events += 1;
            }
            Err(e) => {
                sink.reject(&e, packet);
                out.rejects += 1;
            }
        }
    }
    out
}

/// True for disconnect reasons that mean the credentials are bad (807 token expired, 808 invalid
/// client id, 809 authentication failed).
pub const fn is_auth_reason(reason: u16) -> bool {
    matches!(reason, 807..=809)
}

fn header(code: u8, segment: u8, security_id: u32) -> Header {
    Header {
        code,
        // The encoder writes the total length (header included), the reading under which the
        // documented fixed sizes are the lengths; the parser accepts either.
        len: U16::new(packet_len(code).unwrap_or(HEADER_LEN) as u16),
        segment,
        security_id: U32::new(security_id),
    }
}

fn f32p(v: f64) -> F32 {
    F32::new(v as f32)
}

fn u32q(v: f64) -> U32 {
    U32::new(v.round() as u32)
}

fn ltt_wire(ms: i64) -> U32 {
    if ms == 0 {
        return U32::new(0);
    }
    let s = ms.div_euclid(1000) + IST_OFFSET_S;
    U32::new(u32::try_from(s).unwrap_or(0))
}

fn quote_head_wire(t: &Tick, code: u8, segment: u8, id: u32) -> QuoteHead {
    QuoteHead {
        h: header(code, segment, id),
        ltp: f32p(t.ltp),
        ltq: U16::new(t.ltq.round().clamp(0.0, 65_535.0) as u16),
        ltt: ltt_wire(t.last_trade_time_ms),
        atp: f32p(t.atp),
        volume: u32q(t.volume),
        total_sell_qty: u32q(t.total_sell_qty),
        total_buy_qty: u32q(t.total_buy_qty),
    }
}

fn depth_wire(t: &Tick) -> [DepthLevel; 5] {
    let mut d = [DepthLevel::default(); 5];
    for (i, l) in d.iter_mut().enumerate() {
        if let Some(b) = t.depth.bids().get(i) {
            l.bid_qty = u32q(b.qty);
            l.bid_orders = U16::new(u16::try_from(b.orders).unwrap_or(u16::MAX));
            l.bid_price = f32p(b.price);
        }
        if let Some(a) = t.depth.asks().get(i) {
            l.ask_qty = u32q(a.qty);
            l.ask_orders = U16::new(u16::try_from(a.orders).unwrap_or(u16::MAX));
            l.ask_price = f32p(a.price);
        }
    }
    d
}

/// Appends one Dhan packet of response `code` for `tick` (segment code and security id given
/// explicitly). For [`code::MARKET_STATUS`] the id slot carries `security_id` as the status
/// value; for [`code::DISCONNECT`] the reason is `security_id` truncated to u16. Unknown codes
/// append nothing.
pub fn encode_packet(tick: &Tick, code: u8, segment: u8, security_id: u32, out: &mut Vec<u8>) {
    let h = header(code, segment, security_id);
    match code {
        code::TICKER => out.extend_from_slice(
            Ticker {
                h,
                ltp: f32p(tick.ltp),
                ltt: ltt_wire(tick.last_trade_time_ms),
            }
            .as_bytes(),
        ),
        code::DEPTH => out.extend_from_slice(
            DepthV1 {
                h,
                ltp: f32p(tick.ltp),
                depth: depth_wire(tick),
            }
            .as_bytes(),
        ),
        code::QUOTE => out.extend_from_slice(
            Quote {
                q: quote_head_wire(tick, code, segment, security_id),
                open: f32p(tick.open),
                day_close: F32::new(0.0),
                high: f32p(tick.high),
                low: f32p(tick.low),
            }
            .as_bytes(),
        ),
        code::OI => out.extend_from_slice(
            Oi {
                h,
                oi: u32q(tick.oi),
            }
            .as_bytes(),
        ),
        code::PREV_CLOSE => out.extend_from_slice(
            PrevClose {
                h,
                prev_close: f32p(tick.close),
                prev_oi: u32q(tick.oi),
            }
            .as_bytes(),
        ),
        code::MARKET_STATUS => out.extend_from_slice(h.as_bytes()),
        code::FULL => out.extend_from_slice(
            Full {
                q: quote_head_wire(tick, code, segment, security_id),
                oi: u32q(tick.oi),
                oi_day_high: u32q(tick.oi_day_high),
                oi_day_low: u32q(tick.oi_day_low),
                open: f32p(tick.open),
                day_close: F32::new(0.0),
                high: f32p(tick.high),
                low: f32p(tick.low),
                depth: depth_wire(tick),
            }
            .as_bytes(),
        ),
        code::DISCONNECT => out.extend_from_slice(
            Disconnect {
                h: header(code, segment, 0),
                reason: U16::new(security_id as u16),
            }
            .as_bytes(),
        ),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        ticks: Vec<Tick>,
        rejects: Vec<(ParseError, usize)>,
        statuses: Vec<(String, i32)>,
        disconnects: Vec<u16>,
    }

    impl TickSink for Collect {
        fn tick(&mut self, t: &Tick) {
            self.ticks.push(*t);
        }
        fn reject(&mut self, e: &ParseError, raw: &[u8]) {
            self.rejects.push((*e, raw.len()));
        }
        fn event(&mut self, e: &FeedEvent<'_>) {
            match e {
                FeedEvent::MarketStatus {
                    segment, status, ..
                } => self.statuses.push(((*segment).to_owned(), status.code())),
                FeedEvent::VendorDisconnect { reason, .. } => self.disconnects.push(*reason),
                _ => {}
            }
        }
    }

    fn collect(frame: &[u8]) -> Collect {
        let mut c = Collect::default();
        parse_frame(frame, &FrameMeta::default(), &mut c);
        c
    }

    fn sample() -> Tick {
        let mut t = Tick::EMPTY;
        t.ltp = 1573.7;
        t.ltq = 25.0;
        t.atp = 1570.05;
        t.volume = 2_000_000.0;
        t.total_buy_qty = 111.0;
        t.total_sell_qty = 222.0;
        t.open = 1560.0;
        t.high = 1580.5;
        t.low = 1555.25;
        t.close = 1567.8;
        t.oi = 3000.0;
        t.oi_day_high = 3100.0;
        t.oi_day_low = 2900.0;
        t.last_trade_time_ms = 1_732_700_000_000;
        for i in 0..5 {
            t.depth.bids[i] = Level {
                price: 1573.6 - 0.05 * i as f64,
                qty: 10.0 + i as f64,
                orders: 1,
            };
        }
        for i in 0..2 {
            t.depth.asks[i] = Level {
                price: 1573.75 + 0.05 * i as f64,
                qty: 5.0,
                orders: 2,
            };
        }
        t.depth.bid_len = 5;
        t.depth.ask_len = 2;
        t
    }

    #[test]
    fn every_packet_type_decodes() {
        let src = sample();
        let mut f = Vec::new();
        for c in [
            code::TICKER,
            code::DEPTH,
            code::QUOTE,
            code::OI,
            code::PREV_CLOSE,
            code::FULL,
        ] {
            let start = f.len();
            encode_packet(&src, c, 1, 1333, &mut f);
            assert_eq!(f.len() - start, packet_len(c).unwrap());
        }
        encode_packet(&src, code::MARKET_STATUS, 1, 2, &mut f);
        encode_packet(&src, code::DISCONNECT, 1, 807, &mut f);
        let c = collect(&f);
        assert!(c.rejects.is_empty(), "{:?}", c.rejects);
        assert_eq!(c.ticks.len(), 6);
        assert!(c
            .ticks
            .iter()
            .all(|t| t.token.as_str() == "1333" && t.exchange == Exchange::Nse));
        let [tk, dp, qt, oi, pc, full] = [0, 1, 2, 3, 4, 5].map(|i| c.ticks[i]);
        assert_eq!((tk.ltp, tk.last_trade_time_ms), (1573.7, 1_732_700_000_000));
        assert_eq!(dp.depth.bid_len, 5);
        assert_eq!(dp.depth.ask_len, 2);
        assert_eq!(qt.total_buy_qty, 111.0, "buy and sell are not swapped");
        assert_eq!(qt.total_sell_qty, 222.0);
        assert_eq!(
            (qt.open, qt.high, qt.low, qt.atp),
            (1560.0, 1580.5, 1555.25, 1570.05)
        );
        assert!(!qt.has(Fields::CLOSE));
        assert_eq!((oi.oi, oi.fields), (3000.0, Fields::OI));
        assert_eq!((pc.close, pc.fields), (1567.8, Fields::CLOSE));
        assert_eq!((full.oi_day_high, full.oi_day_low), (3100.0, 2900.0));
        assert_eq!(full.depth.asks[1].price, 1573.8);
        assert_eq!(c.statuses, vec![("NSE_EQ".to_owned(), 2)]);
        assert_eq!(c.disconnects, vec![807]);
        assert!(is_auth_reason(807) && !is_auth_reason(805));
    }

    #[test]
    fn ltt_is_shifted_from_ist_and_currency_keeps_four_decimals() {
        let mut src = sample();
        src.ltp = 83.1225;
        let mut f = Vec::new();
        encode_packet(&src, code::TICKER, 3, 10, &mut f);
        let raw = u32::from_le_bytes(f[12..16].try_into().unwrap());
        assert_eq!(i64::from(raw), 1_732_700_000 + 19_800);
        let t = collect(&f).ticks[0];
        assert_eq!(t.last_trade_time_ms, 1_732_700_000_000);
        assert_eq!(t.ltp, 83.1225);
        assert_eq!(t.exchange, Exchange::Cds);
        // Index segment.
        let mut f = Vec::new();
        encode_packet(&src, code::TICKER, 0, 13, &mut f);
        let t = collect(&f).ticks[0];
        assert!(t.is_index && t.exchange == Exchange::Indices);
    }

    #[test]
    fn header_exclusive_length_reads_the_same() {
        let src = sample();
        let mut f = Vec::new();
        encode_packet(&src, code::QUOTE, 2, 52_175, &mut f);
        encode_packet(&src, code::TICKER, 2, 52_175, &mut f);
        let mut g = f.clone();
        g[1..3].copy_from_slice(&42u16.to_le_bytes());
        g[51..53].copy_from_slice(&8u16.to_le_bytes());
        let (a, b) = (collect(&f), collect(&g));
        assert_eq!(a.ticks, b.ticks);
        assert_eq!(a.ticks.len(), 2);
    }

    #[test]
    fn malformations_are_typed_and_the_walk_goes_on() {
        let src = sample();
        let mut f = Vec::new();
        encode_packet(&src, code::TICKER, 1, 1, &mut f);
        // Unknown code 99 with a plausible length: skipped.
        f.extend_from_slice(&[99, 10, 0, 1, 0, 0, 0, 0, 7, 7]);
        // Bad length on a known code: rejected, walk continues by the fixed size.
        let at = f.len();
        encode_packet(&src, code::TICKER, 1, 2, &mut f);
        f[at + 1] = 77;
        // Unknown segment.
        encode_packet(&src, code::TICKER, 6, 3, &mut f);
        encode_packet(&src, code::TICKER, 1, 4, &mut f);
        // Truncated last packet.
        encode_packet(&src, code::FULL, 1, 5, &mut f);
        f.truncate(f.len() - 100);
        let c = collect(&f);
        let toks: Vec<&str> = c.ticks.iter().map(|t| t.token.as_str()).collect();
        assert_eq!(toks, ["1", "4"]);
        let errs: Vec<ParseError> = c.rejects.iter().map(|r| r.0).collect();
        assert_eq!(
            errs,
            [
                ParseError::DhanUnknownCode { code: 99 },
                ParseError::DhanLengthMismatch {
                    code: 2,
                    declared: 77
                },
                ParseError::DhanUnknownSegment { code: 6 },
                ParseError::DhanTruncated { at: f.len() },
            ]
        );
        // A header cut short.
        assert_eq!(
            collect(&[2, 16, 0]).rejects[0].0,
            ParseError::DhanTruncated { at: 0 }
        );
        // Unknown code with a runaway length ends the walk.
        let c = collect(&[99, 255, 255, 1, 0, 0, 0, 0, 1]);
        assert_eq!(c.rejects.len(), 1);
        assert!(collect(&[]).rejects.is_empty());
        let big = vec![2u8; MAX_FRAME_LEN + 1];
        assert!(matches!(
            collect(&big).rejects[0].0,
            ParseError::FrameTooLarge { .. }
        ));
    }
}
