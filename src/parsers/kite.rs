//! Zerodha Kite ticker: binary frame parser and encoder (big-endian, several packets per frame).
//!
//! Frame: `[0,2)` u16 packet count N, then N times a u16 length L and L packet bytes. The packet
//! length gives the mode: 8 ltp; 28/32 index quote/full; 44/184 quote/full. Every field is read as
//! unsigned 32-bit (as pykiteconnect `>I` and gokiteconnect do), depth order counts as u16.
//! Prices divide by 100, CDS (segment 3) by 10,000,000, BCD (6) and NCO (12, NSE commodity, as
//! in pykiteconnect 5.2) by 10,000, as IEEE
//! division of the integer, which is bit-for-bit what the official SDKs compute. Packet layouts
//! are zerocopy views over the frame, so nothing is copied. A frame's packets are decoded into
//! one reused tick that each packet rewrites only where it carries data (fields the previous
//! packet carried and this one does not are reset), so every tick delivered equals a fresh
//! decode of its packet. Token texts come from a per-thread [`U32TokenCache`] (an instrument's
//! decimal token is formatted once, then copied). On a CPU with SSSE3 (detected at run time) the
//! frame walk runs as a second compiled instance whose quote packets convert their ten numbers
//! with SIMD (`simd::quote`), bit for bit the values of the scalar form.
//!
//! A 1-byte frame is a heartbeat. Text frames are JSON (`order`, `error`, `message`) and are
//! classified by [`classify_text`], never parsed as ticks.

use zerocopy::{
    byteorder::big_endian::{I32, U16, U32},
    FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned,
};

use super::{FrameMeta, FrameOutcome, ParseError, TextKind, TickSink};
use crate::{
    tick::{Depth, Exchange, Fields, Level, Mode, Tick, Token, U32TokenCache, DEPTH_LEVELS},
    vendor::Vendor,
};

/// Largest frame accepted. 3000 instruments (Kite's per-connection cap) in full mode need
/// 2 + 3000 × 186 = 558,002 bytes; 1 MiB leaves room without letting garbage through unbounded.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// Kite's subscription modes, for [`encode_packet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KiteMode {
    /// 8-byte packet: token and last price.
    Ltp,
    /// 44-byte packet (28 for an index).
    Quote,
    /// 184-byte packet with depth (32 for an index).
    Full,
}

impl KiteMode {
    /// The packet length for this mode, for an index or a tradable instrument.
    pub const fn packet_len(self, index: bool) -> usize {
        match (self, index) {
            (KiteMode::Ltp, _) => 8,
            (KiteMode::Quote, true) => 28,
            (KiteMode::Quote, false) => 44,
            (KiteMode::Full, true) => 32,
            (KiteMode::Full, false) => 184,
        }
    }
}

/// The index segment code (`token & 0xff`).
pub const SEGMENT_INDICES: u8 = 9;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Default)]
#[repr(C)]
struct LtpPacket {
    token: U32,
    ltp: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Default)]
#[repr(C)]
struct IndexQuotePacket {
    token: U32,
    ltp: U32,
    // Indices order their prices high, low, open, close (tradables: open, high, low, close).
    high: U32,
    low: U32,
    open: U32,
    close: U32,
    // The wire "price change"; every SDK ignores it and computes change from ltp and close.
    change: I32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Default)]
#[repr(C)]
struct IndexFullPacket {
    quote: IndexQuotePacket,
    exchange_ts: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Default)]
#[repr(C)]
struct QuotePacket {
    token: U32,
    ltp: U32,
    ltq: U32,
    atp: U32,
    volume: U32,
    total_buy_qty: U32,
    total_sell_qty: U32,
    open: U32,
    high: U32,
    low: U32,
    close: U32,
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Default, Clone, Copy)]
#[repr(C)]
struct DepthEntry {
    qty: U32,
    price: U32,
    orders: U16,
    padding: [u8; 2],
}

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned, Default)]
#[repr(C)]
struct FullPacket {
    quote: QuotePacket,
    last_trade_time: U32,
    oi: U32,
    oi_day_high: U32,
    oi_day_low: U32,
    exchange_ts: U32,
    // Five bids then five asks.
    depth: [DepthEntry; 2 * DEPTH_LEVELS],
}

// The layouts must match the documented packet lengths exactly.
const _: () = assert!(size_of::<LtpPacket>() == 8);
const _: () = assert!(size_of::<IndexQuotePacket>() == 28);
const _: () = assert!(size_of::<IndexFullPacket>() == 32);
const _: () = assert!(size_of::<QuotePacket>() == 44);
const _: () = assert!(size_of::<DepthEntry>() == 12);
const _: () = assert!(size_of::<FullPacket>() == 184);

/// The price divisor for a segment, as the official SDKs apply it.
pub const fn divisor(segment: u8) -> f64 {
    match segment {
        3 => 10_000_000.0,
        6 | 12 => 10_000.0,
        _ => 100.0,
    }
}

/// Each segment code's exchange and price divisor, indexed by code: one load per packet
/// instead of two matches. Built from [`Exchange::from_kite_segment`] and [`divisor`].
// Evaluated at compile time: an index out of bounds fails the build, it cannot panic at run time.
#[allow(clippy::indexing_slicing)]
const SEGMENTS: [Option<(Exchange, f64)>; 13] = {
    let mut t = [None; 13];
    let mut seg = 0;
    while seg < 13 {
        if let Some(e) = Exchange::from_kite_segment(seg as u8) {
            t[seg] = Some((e, divisor(seg as u8)));
        }
        seg += 1;
    }
    t
};

#[inline(always)]
fn ts_ms(secs: U32) -> i64 {
    i64::from(secs.get()) * 1000
}

/// Converts raw wire prices to rupees: `raw as f64 / div` for each, exactly as the SDKs do (IEEE
/// division, correctly rounded). Written as one loop over an array so the divisions are issued
/// together (packed `divpd`, two per instruction) instead of one dependent-looking chain.
#[inline(always)]
fn prices<const N: usize>(raw: [u32; N], div: f64) -> [f64; N] {
    let mut out = [0.0; N];
    for (o, r) in out.iter_mut().zip(raw) {
        *o = f64::from(r) / div;
    }
    out
}

/// What a quote packet (44 bytes) carries.
pub const QUOTE_FIELDS: Fields = Fields(
    Fields::LTP.0
        | Fields::LTQ.0
        | Fields::ATP.0
        | Fields::VOLUME.0
        | Fields::TOTAL_BUY_QTY.0
        | Fields::TOTAL_SELL_QTY.0
        | Fields::OPEN.0
        | Fields::HIGH.0
        | Fields::LOW.0
        | Fields::CLOSE.0,
);
/// What a full packet (184 bytes) carries.
pub const FULL_FIELDS: Fields = Fields(
    QUOTE_FIELDS.0
        | Fields::LAST_TRADE_TIME.0
        | Fields::OI.0
        | Fields::OI_DAY_HIGH.0
        | Fields::OI_DAY_LOW.0
        | Fields::EXCHANGE_TIME.0
        | Fields::DEPTH.0
        | Fields::DEPTH_ORDERS.0,
);
/// What an index quote packet (28 bytes) carries.
pub const INDEX_QUOTE_FIELDS: Fields =
    Fields(Fields::LTP.0 | Fields::HIGH.0 | Fields::LOW.0 | Fields::OPEN.0 | Fields::CLOSE.0);
/// What an index full packet (32 bytes) carries: the quote plus the exchange time.
pub const INDEX_FULL_FIELDS: Fields = Fields(INDEX_QUOTE_FIELDS.0 | Fields::EXCHANGE_TIME.0);

/// Decodes one packet (without its length prefix) into `t`, overwriting all of it; on error `t`
/// is left as it was.
///
/// # Errors
/// [`ParseError::KiteUnknownLength`] for a length other than 8, 28, 32, 44, 184;
/// [`ParseError::KiteUnknownSegment`] for a token whose segment is not 1..=9 or 12.
pub fn decode_packet_into(packet: &[u8], meta: &FrameMeta, t: &mut Tick) -> Result<(), ParseError> {
    let mut fresh = scratch(meta);
    TOKENS.with(|tokens| decode_over::<false>(packet, &mut fresh, tokens))?;
    *t = fresh;
    Ok(())
}

thread_local! {
    /// The decimal text of the tokens this thread has decoded (a feed thread sees the same few
    /// thousand instruments all day). Constant-initialised and without a destructor, so an
    /// access is a plain thread-local address.
    static TOKENS: U32TokenCache = const { U32TokenCache::new() };
}

/// The tick [`decode_over`] starts from: the frame's identity, nothing carried.
#[inline]
fn scratch(meta: &FrameMeta) -> Tick {
    Tick {
        received_at_ns: meta.received_at_ns,
        conn_id: meta.conn_id,
        vendor: Vendor::Kite,
        ..Tick::EMPTY
    }
}

/// Decodes one packet into `t`, a tick reused for every packet of a frame (one ~500-byte tick
/// per call instead of one built from [`Tick::EMPTY`] per packet, which cost more than the
/// decoding of a quote packet).
///
/// `t` must come from [`scratch`] and have been touched only by this function, which keeps the
/// invariant of every parser output: a field whose presence bit is clear holds its
/// [`Tick::EMPTY`] value. It writes exactly the fields the packet carries and resets those the
/// previous packet carried and this one does not, so `t` afterwards equals a fresh decode of the
/// packet, field for field (tested against [`decode_packet`] on random mixed frames). On error
/// nothing has been written.
///
/// One dispatch on the length: each arm views its layout, then [`begin`] (with the arm's mode
/// and field set as constants) and the arm's own conversions.
///
/// `SIMD` (set only inside [`walk_ssse3`], on a CPU with SSSE3): a quote packet's ten numbers
/// are converted by [`simd::quote`], bit for bit the same values.
#[inline(always)]
fn decode_over<const SIMD: bool>(
    packet: &[u8],
    t: &mut Tick,
    tokens: &U32TokenCache,
) -> Result<(), ParseError> {
    let len = packet.len();
    // A function, so the error is built only on the (cold) error paths.
    let bad_len = || ParseError::KiteUnknownLength {
        len: u16::try_from(len).unwrap_or(u16::MAX),
    };
    // Length first: it decides the layout, and an unknown one says nothing about the token.
    match len {
        8 => {
            let p = LtpPacket::ref_from_bytes(packet).map_err(|_| bad_len())?;
            let div = begin(t, p.token.get(), Mode::Ltp, Fields::LTP, tokens)?;
            t.ltp = f64::from(p.ltp.get()) / div;
        }
        28 => {
            let q = IndexQuotePacket::ref_from_bytes(packet).map_err(|_| bad_len())?;
            let div = begin(t, q.token.get(), Mode::Quote, INDEX_QUOTE_FIELDS, tokens)?;
            index_prices(t, q, div);
        }
        32 => {
            // The 28-byte index quote plus the exchange timestamp.
            let p = IndexFullPacket::ref_from_bytes(packet).map_err(|_| bad_len())?;
            let fields = INDEX_FULL_FIELDS;
            let div = begin(t, p.quote.token.get(), Mode::Full, fields, tokens)?;
            index_prices(t, &p.quote, div);
            t.exchange_time_ms = ts_ms(p.exchange_ts);
        }
        44 => {
            let q = QuotePacket::ref_from_bytes(packet).map_err(|_| bad_len())?;
            let div = begin(t, q.token.get(), Mode::Quote, QUOTE_FIELDS, tokens)?;
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `SIMD` is true only in the instance `walk_ssse3` inlines, which runs only
            // after SSSE3 was detected (`parse_frame`).
            if SIMD && unsafe { simd::quote(t, q, div) } {
                return Ok(());
            }
            let [ltp, atp, open, high, low, close] = prices(
                [
                    q.ltp.get(),
                    q.atp.get(),
                    q.open.get(),
                    q.high.get(),
                    q.low.get(),
                    q.close.get(),
                ],
                div,
            );
            (t.ltp, t.atp, t.open, t.high, t.low, t.close) = (ltp, atp, open, high, low, close);
            t.ltq = f64::from(q.ltq.get());
            t.volume = f64::from(q.volume.get());
            t.total_buy_qty = f64::from(q.total_buy_qty.get());
            t.total_sell_qty = f64::from(q.total_sell_qty.get());
        }
        184 => {
            let p = FullPacket::ref_from_bytes(packet).map_err(|_| bad_len())?;
            let div = begin(t, p.quote.token.get(), Mode::Full, FULL_FIELDS, tokens)?;
            full(t, p, div);
        }
        _ => return Err(bad_len()),
    }
    Ok(())
}

/// The start of every packet's decode, once its layout is known: the token's segment gives the
/// exchange and price divisor (returned), or the error (`t` untouched); then the fields the
/// previous packet carried and this one (`fields`) does not are reset, and the identity is
/// written. Inlined into each arm of [`decode_over`], where `mode` and `fields` are constants.
#[inline(always)]
fn begin(
    t: &mut Tick,
    token: u32,
    mode: Mode,
    fields: Fields,
    tokens: &U32TokenCache,
) -> Result<f64, ParseError> {
    // The low byte is the segment by Kite's definition.
    let segment = (token & 0xff) as u8;
    let (exchange, div) = SEGMENTS
        .get(usize::from(segment))
        .copied()
        .flatten()
        .ok_or(ParseError::KiteUnknownSegment { token })?;
    // Nothing can fail from here on.
    if t.fields.0 & !fields.0 != 0 {
        reset_stale(t, fields);
    }
    t.fields = fields;
    t.mode = mode;
    t.exchange = exchange;
    t.is_index = segment == SEGMENT_INDICES;
    tokens.write(token, &mut t.token);
    Ok(div)
}

/// Resets every field a Kite packet can carry that `keep` (a constant in each arm of
/// [`decode_over`]) does not: as [`Tick::clear_fields`] of the stale fields, without a branch per
/// field (a field not carried already holds its empty value, so writing it again changes
/// nothing); the book (250 bytes) only when it is there. Called when the
/// previous packet carried something this one does not (a mode change within the frame).
#[inline(always)]
fn reset_stale(t: &mut Tick, keep: Fields) {
    let e = &Tick::EMPTY;
    macro_rules! reset {
        ($bit:expr, $($field:ident).+) => {
            if !keep.has($bit) {
                t.$($field).+ = e.$($field).+;
            }
        };
    }
    reset!(Fields::LTQ, ltq);
    reset!(Fields::ATP, atp);
    reset!(Fields::VOLUME, volume);
    reset!(Fields::TOTAL_BUY_QTY, total_buy_qty);
    reset!(Fields::TOTAL_SELL_QTY, total_sell_qty);
    reset!(Fields::OPEN, open);
    reset!(Fields::HIGH, high);
    reset!(Fields::LOW, low);
    reset!(Fields::CLOSE, close);
    reset!(Fields::OI, oi);
    reset!(Fields::OI_DAY_HIGH, oi_day_high);
    reset!(Fields::OI_DAY_LOW, oi_day_low);
    reset!(Fields::LAST_TRADE_TIME, last_trade_time_ms);
    reset!(Fields::EXCHANGE_TIME, exchange_time_ms);
    // Every Kite packet carries ltp; only full packets carry depth (with order counts).
    const _: () = assert!(
        (FULL_FIELDS.0 | INDEX_FULL_FIELDS.0)
            & !(Fields::LTP.0
                | Fields::LTQ.0
                | Fields::ATP.0
                | Fields::VOLUME.0
                | Fields::TOTAL_BUY_QTY.0
                | Fields::TOTAL_SELL_QTY.0
                | Fields::OPEN.0
                | Fields::HIGH.0
                | Fields::LOW.0
                | Fields::CLOSE.0
                | Fields::OI.0
                | Fields::OI_DAY_HIGH.0
                | Fields::OI_DAY_LOW.0
                | Fields::LAST_TRADE_TIME.0
                | Fields::EXCHANGE_TIME.0
                | Fields::DEPTH.0
                | Fields::DEPTH_ORDERS.0)
            == 0
    );
    if !keep.has(Fields::DEPTH) && t.fields.has(Fields::DEPTH) {
        t.depth = e.depth;
    }
}

/// An index packet's prices (indices order them high, low, open, close).
#[inline(always)]
fn index_prices(t: &mut Tick, q: &IndexQuotePacket, div: f64) {
    let [ltp, high, low, open, close] = prices(
        [
            q.ltp.get(),
            q.high.get(),
            q.low.get(),
            q.open.get(),
            q.close.get(),
        ],
        div,
    );
    (t.ltp, t.high, t.low, t.open, t.close) = (ltp, high, low, open, close);
}

/// A full packet's fields.
#[inline(always)]
fn full(t: &mut Tick, p: &FullPacket, div: f64) {
    let q = &p.quote;
    let [b0, b1, b2, b3, b4, a0, a1, a2, a3, a4] = &p.depth;
    let [ltp, atp, open, high, low, close, bp0, bp1, bp2, bp3, bp4, ap0, ap1, ap2, ap3, ap4] =
        prices(
            [
                q.ltp.get(),
                q.atp.get(),
                q.open.get(),
                q.high.get(),
                q.low.get(),
                q.close.get(),
                b0.price.get(),
                b1.price.get(),
                b2.price.get(),
                b3.price.get(),
                b4.price.get(),
                a0.price.get(),
                a1.price.get(),
                a2.price.get(),
                a3.price.get(),
                a4.price.get(),
            ],
            div,
        );
    let level = |e: &DepthEntry, price: f64| Level {
        price,
        qty: f64::from(e.qty.get()),
        orders: u32::from(e.orders.get()),
    };
    (t.ltp, t.atp, t.open, t.high, t.low, t.close) = (ltp, atp, open, high, low, close);
    t.ltq = f64::from(q.ltq.get());
    t.volume = f64::from(q.volume.get());
    t.total_buy_qty = f64::from(q.total_buy_qty.get());
    t.total_sell_qty = f64::from(q.total_sell_qty.get());
    t.last_trade_time_ms = ts_ms(p.last_trade_time);
    t.exchange_time_ms = ts_ms(p.exchange_ts);
    t.oi = f64::from(p.oi.get());
    t.oi_day_high = f64::from(p.oi_day_high.get());
    t.oi_day_low = f64::from(p.oi_day_low.get());
    t.depth = Depth {
        bids: [
            level(b0, bp0),
            level(b1, bp1),
            level(b2, bp2),
            level(b3, bp3),
            level(b4, bp4),
        ],
        asks: [
            level(a0, ap0),
            level(a1, ap1),
            level(a2, ap2),
            level(a3, ap3),
            level(a4, ap4),
        ],
        bid_len: DEPTH_LEVELS as u8,
        ask_len: DEPTH_LEVELS as u8,
    };
}

/// Decodes one packet (without its length prefix).
///
/// # Errors
/// As [`decode_packet_into`].
pub fn decode_packet(packet: &[u8], meta: &FrameMeta) -> Result<Tick, ParseError> {
    let mut t = Tick::EMPTY;
    decode_packet_into(packet, meta, &mut t)?;
    Ok(t)
}

/// Parses one binary frame, delivering every valid packet as a tick and every bad one as a
/// reject with its bytes. A length prefix that overruns the frame ends the walk (the rest cannot
/// be located) and the remainder is rejected whole.
pub fn parse_frame<S: TickSink + ?Sized>(
    frame: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
) -> FrameOutcome {
    #[cfg(target_arch = "x86_64")]
    let simd = simd::has_ssse3();
    #[cfg(not(target_arch = "x86_64"))]
    let simd = false;
    parse_frame_with(frame, meta, sink, simd)
}

/// [`parse_frame`], through the SSSE3 walk when `simd` (which must then be the CPU's verdict,
/// [`simd::has_ssse3`]); the tests pass false to hold the two walks equal.
#[inline(always)]
fn parse_frame_with<S: TickSink + ?Sized>(
    frame: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
    simd: bool,
) -> FrameOutcome {
    let mut out = FrameOutcome::default();
    if frame.len() == 1 {
        out.heartbeat = true;
        return out;
    }
    if let Some(refused) = super::refuse_oversized(frame, MAX_FRAME_LEN, sink) {
        return refused;
    }
    let Ok((count, rest)) = U16::read_from_prefix(frame) else {
        sink.reject(&ParseError::KiteTruncated { at: 0 }, frame);
        out.rejects += 1;
        return out;
    };
    TOKENS.with(|tokens| {
        #[cfg(target_arch = "x86_64")]
        if simd {
            // SAFETY: `simd` is true only when `simd::has_ssse3` said the CPU has SSSE3 (see
            // `parse_frame`), the only requirement of `walk_ssse3`.
            unsafe { walk_ssse3(frame, count.get(), rest, meta, sink, tokens, &mut out) };
            return;
        }
        let _ = simd; // Off x86-64 there is no SIMD walk to choose.
        walk::<false, S>(frame, count.get(), rest, meta, sink, tokens, &mut out);
    });
    out
}

/// [`walk`] compiled for SSSE3, with quote packets converted by [`simd::quote`]. Multiversioned
/// at the walk, not per packet, so the SIMD conversion inlines into the loop.
///
/// # Safety
/// The CPU must support SSSE3.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "ssse3")]
unsafe fn walk_ssse3<S: TickSink + ?Sized>(
    frame: &[u8],
    count: u16,
    rest: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
    tokens: &U32TokenCache,
    out: &mut FrameOutcome,
) {
    walk::<true, S>(frame, count, rest, meta, sink, tokens, out);
}

/// The packet walk of [`parse_frame`], from the first length prefix (`rest`) on. `SIMD`: quote
/// packets through [`simd::quote`]; only [`walk_ssse3`] instantiates it.
#[inline(always)]
fn walk<const SIMD: bool, S: TickSink + ?Sized>(
    frame: &[u8],
    count: u16,
    mut rest: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
    tokens: &U32TokenCache,
    out: &mut FrameOutcome,
) {
    // One tick for the whole frame, rewritten per packet (see `decode_over`).
    let mut tick = scratch(meta);
    let mut ahead = Lookahead {
        rest,
        left: if sink.wants_upcoming() { count } else { 0 },
    };
    ahead.advance(LOOKAHEAD, sink, tokens);
    for _ in 0..count {
        ahead.advance(1, sink, tokens);
        let at = frame.len() - rest.len();
        let Ok((len, body)) = U16::read_from_prefix(rest) else {
            sink.reject(&ParseError::KiteTruncated { at }, rest);
            out.rejects += 1;
            return;
        };
        let len = len.get();
        let Some((packet, next)) = body.split_at_checked(usize::from(len)) else {
            sink.reject(
                &ParseError::KitePacketOverrun {
                    declared: len,
                    available: body.len(),
                },
                rest,
            );
            out.rejects += 1;
            return;
        };
        rest = next;
        match decode_over::<SIMD>(packet, &mut tick, tokens) {
            Ok(()) => {
                sink.tick(&tick);
                out.ticks += 1;
            }
            Err(e) => {
                sink.reject(&e, packet);
                out.rejects += 1;
            }
        }
    }
    if !rest.is_empty() {
        sink.reject(&ParseError::KiteTrailingBytes { extra: rest.len() }, rest);
        out.rejects += 1;
    }
}

/// Packets the look-ahead runs ahead of the walk. A packet is 20-100 ns of work and a load
/// from memory ~100 ns, so a hinted line has arrived when its packet is decoded; eight lines in
/// flight are few enough not to evict one another or the frame.
const LOOKAHEAD: u16 = 8;

/// The walk's look-ahead over packet headers: [`LOOKAHEAD`] packets before the walk decodes a
/// packet, its instrument goes to [`TickSink::upcoming`] and its token text is prefetched. It
/// stops quietly at anything malformed, which the walk itself then reports.
struct Lookahead<'a> {
    rest: &'a [u8],
    left: u16,
}

impl Lookahead<'_> {
    #[inline(always)]
    fn advance<S: TickSink + ?Sized>(&mut self, n: u16, sink: &mut S, tokens: &U32TokenCache) {
        for _ in 0..n.min(self.left) {
            let Some((len, body)) = U16::read_from_prefix(self.rest).ok() else {
                self.left = 0;
                return;
            };
            let Some((packet, next)) = body.split_at_checked(usize::from(len.get())) else {
                self.left = 0;
                return;
            };
            self.rest = next;
            self.left -= 1;
            let Ok((token, _)) = U32::read_from_prefix(packet) else {
                continue;
            };
            let token = token.get();
            // The low byte is the segment; an unknown one is the walk's reject, not a hint.
            if let Some(Some((exchange, _))) = SEGMENTS.get(usize::from(token as u8)) {
                tokens.prefetch(token);
                sink.upcoming(Vendor::Kite, *exchange, Token::short_key_of_u32(token));
            }
        }
    }
}

/// The SSSE3 conversion of a quote packet's numbers.
#[cfg(target_arch = "x86_64")]
mod simd {
    use core::arch::x86_64::{
        __m128d, __m128i, _mm_castsi128_pd, _mm_div_pd, _mm_loadu_si128, _mm_set1_epi32,
        _mm_set1_pd, _mm_set_epi8, _mm_shuffle_epi8, _mm_storeu_pd, _mm_sub_pd, _mm_unpackhi_epi32,
        _mm_unpacklo_epi32,
    };

    use super::QuotePacket;
    use crate::tick::Tick;
    use zerocopy::IntoBytes;

    /// Whether the CPU has SSSE3 (`pshufb`); std caches the detection, so this is a load.
    #[inline]
    pub(super) fn has_ssse3() -> bool {
        std::arch::is_x86_feature_detected!("ssse3")
    }

    /// 2^52 as f64: `2^52 + x` is exact for every u32 `x`, and its bits are `0x4330_0000`
    /// above `x`.
    const TWO_52: f64 = 4_503_599_627_370_496.0;

    /// The four big-endian u32 at `bytes` as native u32 lanes, in their order (`CROSS` false)
    /// or as lanes 0, 2, 1, 3 (`CROSS`), so that the first and third become the low pair.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn load_be<const CROSS: bool>(bytes: &[u8; 16]) -> __m128i {
        // Each output byte names its source byte: the lanes' bytes reversed (big-endian), and
        // with `CROSS` the middle lanes exchanged.
        let shuffle = if CROSS {
            _mm_set_epi8(12, 13, 14, 15, 4, 5, 6, 7, 8, 9, 10, 11, 0, 1, 2, 3)
        } else {
            _mm_set_epi8(12, 13, 14, 15, 8, 9, 10, 11, 4, 5, 6, 7, 0, 1, 2, 3)
        };
        // SAFETY: `bytes` is 16 readable bytes; the load is unaligned.
        let v = unsafe { _mm_loadu_si128(bytes.as_ptr().cast()) };
        _mm_shuffle_epi8(v, shuffle)
    }

    /// Lanes 0 and 1 (`HI` false) or 2 and 3 of `v` as exact f64: each u32 placed under the bits
    /// of 2^52, minus 2^52.
    #[inline]
    #[target_feature(enable = "ssse3")]
    fn to_f64<const HI: bool>(v: __m128i) -> __m128d {
        let magic = _mm_set1_epi32(0x4330_0000);
        let wide = if HI {
            _mm_unpackhi_epi32(v, magic)
        } else {
            _mm_unpacklo_epi32(v, magic)
        };
        _mm_sub_pd(_mm_castsi128_pd(wide), _mm_set1_pd(TWO_52))
    }

    #[inline]
    #[target_feature(enable = "ssse3")]
    fn pair(v: __m128d) -> [f64; 2] {
        let mut out = [0.0; 2];
        // SAFETY: `out` is 16 writable bytes; the store is unaligned.
        unsafe { _mm_storeu_pd(out.as_mut_ptr(), v) };
        out
    }

    /// Writes ltp, ltq, atp, volume, totalBuyQty, totalSellQty, open, high, low and close of
    /// `q` into `t`: the same values as the scalar arm of `decode_over` (a u32 is exact in an
    /// f64 either way, and `divpd` rounds each lane exactly as `divsd` does).
    #[inline]
    #[target_feature(enable = "ssse3")]
    /// Returns false, writing nothing, only if the packet were not 44 bytes (its layout is
    /// asserted to be, so the caller's scalar fallback is never taken).
    pub(super) fn quote(t: &mut Tick, q: &QuotePacket, div: f64) -> bool {
        let bytes = q.as_bytes();
        // Bytes 4..20: ltp ltq atp volume; 20..36: tbq tsq open high; 28..44: open high low close.
        let (Some(a), Some(b), Some(c)) = (
            bytes.get(4..20).and_then(|s| <&[u8; 16]>::try_from(s).ok()),
            bytes
                .get(20..36)
                .and_then(|s| <&[u8; 16]>::try_from(s).ok()),
            bytes
                .get(28..44)
                .and_then(|s| <&[u8; 16]>::try_from(s).ok()),
        ) else {
            return false;
        };
        // `a` as ltp atp ltq volume: the six prices make three pairs, so three divisions (the
        // divider's throughput bounds this function).
        let (a, b, c) = (load_be::<true>(a), load_be::<false>(b), load_be::<false>(c));
        let d = _mm_set1_pd(div);
        [t.ltp, t.atp] = pair(_mm_div_pd(to_f64::<false>(a), d));
        [t.ltq, t.volume] = pair(to_f64::<true>(a));
        [t.total_buy_qty, t.total_sell_qty] = pair(to_f64::<false>(b));
        [t.open, t.high] = pair(_mm_div_pd(to_f64::<true>(b), d));
        [t.low, t.close] = pair(_mm_div_pd(to_f64::<true>(c), d));
        true
    }
}

/// Classifies a text frame by its JSON `type` (`order`, `error`, `message`).
pub fn classify_text(text: &[u8]) -> TextKind {
    #[derive(serde::Deserialize)]
    struct Envelope<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<&'a str>,
    }
    match serde_json::from_slice::<Envelope<'_>>(text) {
        Ok(Envelope {
            kind: Some("order"),
        }) => TextKind::Order,
        Ok(Envelope {
            kind: Some("error"),
        }) => TextKind::Error,
        Ok(Envelope {
            kind: Some("message"),
        }) => TextKind::Message,
        _ => TextKind::Unknown,
    }
}

fn raw_price(p: f64, div: f64) -> U32 {
    // `as` saturates (and maps NaN to 0), which is the documented behaviour for out-of-range input.
    U32::new((p * div).round() as u32)
}

fn raw_qty(q: f64) -> U32 {
    U32::new(q.round() as u32)
}

fn raw_secs(ms: i64) -> U32 {
    U32::new((ms.div_euclid(1000)).clamp(0, i64::from(u32::MAX)) as u32)
}

fn encode_quote(t: &Tick, token: u32, div: f64) -> QuotePacket {
    QuotePacket {
        token: U32::new(token),
        ltp: raw_price(t.ltp, div),
        ltq: raw_qty(t.ltq),
        atp: raw_price(t.atp, div),
        volume: raw_qty(t.volume),
        total_buy_qty: raw_qty(t.total_buy_qty),
        total_sell_qty: raw_qty(t.total_sell_qty),
        open: raw_price(t.open, div),
        high: raw_price(t.high, div),
        low: raw_price(t.low, div),
        close: raw_price(t.close, div),
    }
}

fn encode_index(t: &Tick, token: u32, div: f64) -> IndexQuotePacket {
    let ltp = raw_price(t.ltp, div);
    let close = raw_price(t.close, div);
    IndexQuotePacket {
        token: U32::new(token),
        ltp,
        high: raw_price(t.high, div),
        low: raw_price(t.low, div),
        open: raw_price(t.open, div),
        close,
        change: I32::new((ltp.get() as i32).wrapping_sub(close.get() as i32)),
    }
}

/// Appends one Kite wire packet (without its length prefix) for `tick` in `mode`.
///
/// The instrument token is `tick.token` read as a decimal u32 (0 if it is not one, which the
/// parser rejects as segment 0). The layout (index or tradable) follows the token's segment
/// (`token & 0xff == 9` is an index), exactly as the parser infers it. Prices are scaled by the
/// segment's divisor and rounded; quantities rounded; values out of u32 range saturate; times
/// are whole seconds (ms / 1000, floored). Fields outside `mode` are not written; depth levels
/// past the tick's `bid_len`/`ask_len` are zero.
pub fn encode_packet(tick: &Tick, mode: KiteMode, out: &mut Vec<u8>) {
    let token = tick.token.as_u32().unwrap_or(0);
    let segment = (token & 0xff) as u8;
    let div = divisor(segment);
    let index = segment == SEGMENT_INDICES;
    match (mode, index) {
        (KiteMode::Ltp, _) => {
            let p = LtpPacket {
                token: U32::new(token),
                ltp: raw_price(tick.ltp, div),
            };
            out.extend_from_slice(p.as_bytes());
        }
        (KiteMode::Quote, true) => {
            out.extend_from_slice(encode_index(tick, token, div).as_bytes());
        }
        (KiteMode::Full, true) => {
            let p = IndexFullPacket {
                quote: encode_index(tick, token, div),
                exchange_ts: raw_secs(tick.exchange_time_ms),
            };
            out.extend_from_slice(p.as_bytes());
        }
        (KiteMode::Quote, false) => {
            out.extend_from_slice(encode_quote(tick, token, div).as_bytes());
        }
        (KiteMode::Full, false) => {
            let mut p = FullPacket {
                quote: encode_quote(tick, token, div),
                last_trade_time: raw_secs(tick.last_trade_time_ms),
                oi: raw_qty(tick.oi),
                oi_day_high: raw_qty(tick.oi_day_high),
                oi_day_low: raw_qty(tick.oi_day_low),
                exchange_ts: raw_secs(tick.exchange_time_ms),
                depth: [DepthEntry::default(); 2 * DEPTH_LEVELS],
            };
            let (bids, asks) = p.depth.split_at_mut(DEPTH_LEVELS);
            for (dst, src) in bids.iter_mut().zip(tick.depth.bids()) {
                encode_level(dst, src, div);
            }
            for (dst, src) in asks.iter_mut().zip(tick.depth.asks()) {
                encode_level(dst, src, div);
            }
            out.extend_from_slice(p.as_bytes());
        }
    }
}

fn encode_level(dst: &mut DepthEntry, src: &Level, div: f64) {
    dst.qty = raw_qty(src.qty);
    dst.price = raw_price(src.price, div);
    dst.orders = U16::new(u16::try_from(src.orders).unwrap_or(u16::MAX));
}

/// Appends one Kite binary frame: the u16 packet count, then each packet with its u16 length.
/// Callers keep to at most 65,535 packets of at most 65,535 bytes (Kite's own framing limit);
/// larger counts or lengths saturate and yield a frame the parser rejects.
pub fn encode_frame(packets: &[&[u8]], out: &mut Vec<u8>) {
    let count = u16::try_from(packets.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&count.to_be_bytes());
    for p in packets {
        let len = u16::try_from(p.len()).unwrap_or(u16::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Token;

    struct Collect {
        ticks: Vec<Tick>,
        rejects: Vec<(ParseError, Vec<u8>)>,
    }

    impl TickSink for Collect {
        fn tick(&mut self, t: &Tick) {
            self.ticks.push(*t);
        }
        fn reject(&mut self, e: &ParseError, raw: &[u8]) {
            self.rejects.push((*e, raw.to_vec()));
        }
    }

    /// Records hints and ticks in the order the walk gives them.
    #[derive(Default)]
    struct Hinted {
        seen: Vec<(bool, [u8; 16])>,
        rejects: usize,
    }

    impl TickSink for Hinted {
        fn tick(&mut self, t: &Tick) {
            let mut k = t.token.short_key().unwrap_or_default();
            k[15] = t.exchange as u8;
            self.seen.push((false, k));
        }
        fn reject(&mut self, _: &ParseError, _: &[u8]) {
            self.rejects += 1;
        }
        fn wants_upcoming(&self) -> bool {
            true
        }
        fn upcoming(&mut self, vendor: Vendor, exchange: Exchange, mut short_key: [u8; 16]) {
            assert_eq!(vendor, Vendor::Kite);
            short_key[15] = exchange as u8;
            self.seen.push((true, short_key));
        }
    }

    /// The look-ahead hints every packet's instrument (token text and exchange exactly as its
    /// tick will carry them) LOOKAHEAD packets before the tick, never a packet of unknown
    /// segment, and stops quietly at a malformed frame: the ticks and rejects are those of a
    /// sink that takes no hints.
    #[test]
    fn lookahead_hints_each_instrument_before_its_tick() {
        let mut packets: Vec<Vec<u8>> = Vec::new();
        for i in 0..20u32 {
            let seg = [1u32, 2, 9, 12][i as usize % 4];
            let mut t = sample((i * 7919 + 1) << 8 | seg);
            t.is_index = seg == 9;
            let mut p = Vec::new();
            let mode = [KiteMode::Ltp, KiteMode::Quote, KiteMode::Full][i as usize % 3];
            encode_packet(&t, mode, &mut p);
            packets.push(p);
        }
        // Segment 0 is unknown: rejected by the walk, not hinted.
        packets.insert(5, [0u8, 0, 1, 0, 0, 0, 0, 1].to_vec());
        let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
        let mut frame = Vec::new();
        encode_frame(&refs, &mut frame);
        let mut h = Hinted::default();
        let out = parse_frame(&frame, &FrameMeta::default(), &mut h);
        assert_eq!((out.ticks, out.rejects, h.rejects), (20, 1, 1));
        let hints: Vec<[u8; 16]> = h.seen.iter().filter(|s| s.0).map(|s| s.1).collect();
        let ticks: Vec<[u8; 16]> = h.seen.iter().filter(|s| !s.0).map(|s| s.1).collect();
        assert_eq!(
            hints, ticks,
            "one hint per tick, same instrument, same order"
        );
        // Before the walk decodes packet j the look-ahead has read min(j + 1 + LOOKAHEAD, 21)
        // packet headers, and hinted all of them but the rejected sixth (tick i is packet i
        // before it, packet i + 1 after it).
        let mut hinted = 0usize;
        let mut tick = 0usize;
        for (is_hint, _) in &h.seen {
            if *is_hint {
                hinted += 1;
            } else {
                let window = usize::from(LOOKAHEAD) + 1 + tick + usize::from(tick >= 5);
                let expect = (window - usize::from(window > 5)).min(20);
                assert_eq!(hinted, expect, "hints before tick {tick}");
                tick += 1;
            }
        }
        // Truncated anywhere: the same ticks and rejects as without hints, and no panic.
        for cut in 0..frame.len() {
            let part = frame.get(..cut).unwrap_or_default();
            let mut hinted = Hinted::default();
            let a = parse_frame(part, &FrameMeta::default(), &mut hinted);
            let (plain, b) = collect(part);
            assert_eq!(a, b, "cut at {cut}");
            let got: Vec<[u8; 16]> = hinted.seen.iter().filter(|s| !s.0).map(|s| s.1).collect();
            assert_eq!(got.len(), plain.ticks.len());
        }
    }

    /// The SSSE3 quote conversion gives bit-identical ticks to the scalar one: random quote
    /// packets on every segment (so every divisor), with wire values at the u32 edges
    /// (0, 2^31 - 1, 2^31, u32::MAX) and random, mixed with ltp packets so the reused tick
    /// changes mode around them. (`reused_tick_equals_a_fresh_decode_of_every_packet` compares
    /// the same walk with the scalar `decode_packet` too.)
    #[cfg(target_arch = "x86_64")]
    #[test]
    fn simd_quote_equals_scalar() {
        assert!(
            simd::has_ssse3(),
            "every x86-64 CPU since 2006 has SSSE3; this test needs it"
        );
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let edges = [0u32, 1, 99, 100, 0x7fff_ffff, 0x8000_0000, u32::MAX];
        let segments = [1u32, 2, 3, 4, 5, 6, 7, 8, 12];
        let mut quotes = 0usize;
        for round in 0..2000 {
            let mut packets: Vec<Vec<u8>> = Vec::new();
            for k in 0..20 {
                let seg = segments[(next() % segments.len() as u64) as usize];
                let token = ((next() as u32) & !0xff) | seg;
                let mut p = token.to_be_bytes().to_vec();
                for _ in 0..10 {
                    let v = if next() % 3 == 0 {
                        edges[(next() % edges.len() as u64) as usize]
                    } else {
                        next() as u32
                    };
                    p.extend_from_slice(&v.to_be_bytes());
                }
                // Every fourth packet an ltp packet, for mode changes within the frame.
                if (round + k) % 4 == 0 {
                    p.truncate(8);
                } else {
                    quotes += 1;
                }
                packets.push(p);
            }
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let mut frame = Vec::new();
            encode_frame(&refs, &mut frame);
            let (fast, _) = collect(&frame);
            let mut slow = Collect {
                ticks: vec![],
                rejects: vec![],
            };
            parse_frame_with(&frame, &FrameMeta::default(), &mut slow, false);
            assert_eq!(fast.ticks.len(), 20);
            assert_eq!(slow.ticks.len(), 20);
            for (f, s) in fast.ticks.iter().zip(&slow.ticks) {
                let bits = |t: &Tick| {
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
                    ]
                    .map(f64::to_bits)
                };
                assert_eq!(bits(f), bits(s), "{}", f.token.as_str());
                assert_eq!(f, s);
            }
        }
        assert_eq!(quotes, 30_000);
    }

    fn collect(frame: &[u8]) -> (Collect, FrameOutcome) {
        let mut c = Collect {
            ticks: vec![],
            rejects: vec![],
        };
        let o = parse_frame(frame, &FrameMeta::default(), &mut c);
        (c, o)
    }

    fn sample(token: u32) -> Tick {
        // Prices built from wire integers so they survive the divisor exactly.
        let div = divisor((token & 0xff) as u8);
        let p = |raw: u32| f64::from(raw) / div;
        let mut t = Tick::EMPTY;
        t.token = Token::from_u32(token);
        t.ltp = p(157_370);
        t.ltq = 7.0;
        t.atp = p(157_037);
        t.volume = 1192471.0;
        t.total_buy_qty = 256443.0;
        t.total_sell_qty = 363009.0;
        t.open = p(156_915);
        t.high = p(157_500);
        t.low = p(156_105);
        t.close = p(156_780);
        t.last_trade_time_ms = 1625461887000;
        t.exchange_time_ms = 1625461887000;
        t.oi = 10.0;
        t.oi_day_high = 12.0;
        t.oi_day_low = 9.0;
        for i in 0..DEPTH_LEVELS {
            let i32 = i as u32;
            t.depth.bids[i] = Level {
                price: p(157_340 - 5 * i32),
                qty: 5.0 + i as f64,
                orders: 1 + i32,
            };
            t.depth.asks[i] = Level {
                price: p(157_370 + 5 * i32),
                qty: 50.0 + i as f64,
                orders: 3,
            };
        }
        t.depth.bid_len = 5;
        t.depth.ask_len = 5;
        t
    }

    /// Keeps only the fields a decoded packet of this mode carries, as the decoder sets them.
    fn project(src: &Tick, decoded: &Tick) -> Tick {
        let mut want = Tick::EMPTY;
        want.token = src.token;
        want.vendor = Vendor::Kite;
        want.exchange = decoded.exchange;
        want.is_index = decoded.is_index;
        want.mode = decoded.mode;
        want.fields = decoded.fields;
        let f = decoded.fields;
        macro_rules! keep {
            ($bit:expr, $($field:ident).+) => {
                if f.has($bit) {
                    want.$($field).+ = src.$($field).+;
                }
            };
        }
        keep!(Fields::LTP, ltp);
        keep!(Fields::LTQ, ltq);
        keep!(Fields::ATP, atp);
        keep!(Fields::VOLUME, volume);
        keep!(Fields::TOTAL_BUY_QTY, total_buy_qty);
        keep!(Fields::TOTAL_SELL_QTY, total_sell_qty);
        keep!(Fields::OPEN, open);
        keep!(Fields::HIGH, high);
        keep!(Fields::LOW, low);
        keep!(Fields::CLOSE, close);
        keep!(Fields::OI, oi);
        keep!(Fields::OI_DAY_HIGH, oi_day_high);
        keep!(Fields::OI_DAY_LOW, oi_day_low);
        keep!(Fields::LAST_TRADE_TIME, last_trade_time_ms);
        keep!(Fields::EXCHANGE_TIME, exchange_time_ms);
        keep!(Fields::DEPTH, depth);
        want
    }

    #[test]
    fn round_trip_every_mode_and_layout() {
        // NSE equity, NFO, CDS (÷1e7), BCD (÷1e4), index.
        for token in [
            408065u32,
            12_345 << 8 | 2,
            777 << 8 | 3,
            55 << 8 | 6,
            256_265,
        ] {
            for mode in [KiteMode::Ltp, KiteMode::Quote, KiteMode::Full] {
                let src = sample(token);
                let mut pkt = Vec::new();
                encode_packet(&src, mode, &mut pkt);
                let index = token & 0xff == 9;
                assert_eq!(pkt.len(), mode.packet_len(index));
                let got = decode_packet(&pkt, &FrameMeta::default()).unwrap();
                assert_eq!(got, project(&src, &got), "token {token} mode {mode:?}");
            }
        }
    }

    #[test]
    fn real_full_packet_matches_vendor_json() {
        // /work/shared/vendor-samples/kite/ticker_full.packet, checked against ticker_full.json.
        let pkt = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kite/real_full.bin"
        ))
        .unwrap();
        let t = decode_packet(&pkt, &FrameMeta::default()).unwrap();
        assert_eq!(t.token.as_str(), "408065");
        assert_eq!(t.exchange, Exchange::Nse);
        assert_eq!(t.mode, Mode::Full);
        assert_eq!(t.ltp, 1573.7);
        assert_eq!(t.depth.bids[0].price, 1573.4);
        assert_eq!(t.depth.asks[4].orders, 5);
        // The mock JSON's `change` is ltp - close; the schema's is percent of close.
        assert_eq!(t.ltp - t.close, 5.900000000000091);
        assert_eq!(t.change_percent(), Some((1573.7 - 1567.8) * 100.0 / 1567.8));
    }

    #[test]
    fn malformed_frames_keep_valid_packets() {
        let t = sample(408065);
        let mut ltp = Vec::new();
        encode_packet(&t, KiteMode::Ltp, &mut ltp);
        let odd = [0u8; 64];
        let mut frame = Vec::new();
        encode_frame(&[&ltp, &odd, &ltp], &mut frame);
        let (c, o) = collect(&frame);
        assert_eq!((o.ticks, o.rejects), (2, 1));
        assert_eq!(c.rejects[0].0, ParseError::KiteUnknownLength { len: 64 });
        assert_eq!(c.rejects[0].1.len(), 64);

        // Overrun: the last packet claims more than is left.
        let mut cut = frame.clone();
        cut.truncate(frame.len() - 3);
        let (c, o) = collect(&cut);
        assert_eq!((o.ticks, o.rejects), (1, 2));
        assert!(matches!(
            c.rejects[1].0,
            ParseError::KitePacketOverrun {
                declared: 8,
                available: 5
            }
        ));

        // Count larger than the packets present: truncated at a length prefix.
        let mut more = frame.clone();
        more[1] = 4;
        let (c, o) = collect(&more);
        assert_eq!((o.ticks, o.rejects), (2, 2));
        assert_eq!(
            c.rejects[1].0,
            ParseError::KiteTruncated { at: frame.len() }
        );

        // Trailing bytes.
        let mut trail = frame.clone();
        trail.extend_from_slice(&[1, 2, 3]);
        let (c, _) = collect(&trail);
        assert_eq!(c.rejects[1].0, ParseError::KiteTrailingBytes { extra: 3 });

        // Unknown segment.
        let mut bad = Vec::new();
        encode_packet(&sample(0x100), KiteMode::Ltp, &mut bad);
        let mut f = Vec::new();
        encode_frame(&[&bad], &mut f);
        let (c, _) = collect(&f);
        assert_eq!(
            c.rejects[0].0,
            ParseError::KiteUnknownSegment { token: 0x100 }
        );
    }

    #[test]
    fn heartbeat_and_tiny_frames() {
        let (_, o) = collect(&[0]);
        assert!(o.heartbeat);
        let (c, o) = collect(&[]);
        assert_eq!(o.rejects, 1);
        assert_eq!(c.rejects[0].0, ParseError::KiteTruncated { at: 0 });
        let (_, o) = collect(&[0, 0]);
        assert_eq!(o, FrameOutcome::default());
        let big = vec![0u8; MAX_FRAME_LEN + 1];
        let (c, _) = collect(&big);
        assert!(matches!(c.rejects[0].0, ParseError::FrameTooLarge { .. }));
    }

    #[test]
    fn text_classification() {
        assert_eq!(
            classify_text(br#"{"type":"order","data":{"x":1}}"#),
            TextKind::Order
        );
        assert_eq!(
            classify_text(br#"{"data":"bad token","type":"error"}"#),
            TextKind::Error
        );
        assert_eq!(
            classify_text(br#"{"type":"message","data":"hi"}"#),
            TextKind::Message
        );
        assert_eq!(classify_text(br#"{"type":"other"}"#), TextKind::Unknown);
        assert_eq!(classify_text(b"not json"), TextKind::Unknown);
    }

    #[test]
    fn reused_tick_equals_a_fresh_decode_of_every_packet() {
        // Frames of random packets of every length (and some unknown lengths and segments), in
        // random order: each tick the frame walk delivers from its reused tick must equal the
        // packet decoded alone from `Tick::EMPTY`, in every field, so nothing a previous packet
        // carried (depth, oi, times, ...) can survive into a packet that does not carry it.
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let meta = FrameMeta {
            received_at_ns: 1_732_700_000_000_000_000,
            conn_id: 3,
        };
        let (mut ticks, mut rejects) = (0, 0);
        for _ in 0..3_000 {
            let n = 1 + next() % 12;
            let mut packets = Vec::new();
            for _ in 0..n {
                let len = [8usize, 28, 32, 44, 184, 184, 44, 8, 0, 7, 64][(next() % 11) as usize];
                let mut p: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                if len >= 4 {
                    // Mostly known segments (9 = index), sometimes unknown ones.
                    p[3] = [1u8, 2, 3, 4, 5, 6, 7, 8, 9, 12, 9, 1, 0, 10][(next() % 14) as usize];
                }
                packets.push(p);
            }
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let mut frame = Vec::new();
            encode_frame(&refs, &mut frame);
            let mut c = Collect {
                ticks: vec![],
                rejects: vec![],
            };
            parse_frame(&frame, &meta, &mut c);
            let mut want_ticks = Vec::new();
            let mut want_rejects = Vec::new();
            for p in &packets {
                match decode_packet(p, &meta) {
                    Ok(t) => want_ticks.push(t),
                    Err(e) => want_rejects.push((e, p.clone())),
                }
            }
            assert_eq!(c.ticks, want_ticks);
            assert_eq!(c.rejects, want_rejects);
            ticks += want_ticks.len();
            rejects += want_rejects.len();
        }
        assert!(ticks > 10_000 && rejects > 1_000, "{ticks} {rejects}");

        // The plainest leak: a full packet then an ltp packet of the same instrument.
        let src = sample(408_065);
        let (mut full, mut ltp) = (Vec::new(), Vec::new());
        encode_packet(&src, KiteMode::Full, &mut full);
        encode_packet(&src, KiteMode::Ltp, &mut ltp);
        let mut frame = Vec::new();
        encode_frame(&[&full, &ltp], &mut frame);
        let (c, _) = collect(&frame);
        let mut want = Tick::EMPTY;
        want.token = src.token;
        want.exchange = Exchange::Nse;
        want.mode = Mode::Ltp;
        want.fields = Fields::LTP;
        want.ltp = src.ltp;
        assert_eq!(c.ticks[1], want);
        assert_eq!(c.ticks[0].depth, src.depth);
    }

    #[test]
    fn decode_packet_into_leaves_the_tick_alone_on_error() {
        let mut t = sample(408_065);
        let before = t;
        assert!(decode_packet_into(&[0u8; 9], &FrameMeta::default(), &mut t).is_err());
        assert!(decode_packet_into(&[0u8; 8], &FrameMeta::default(), &mut t).is_err());
        assert_eq!(t, before);
    }
}
