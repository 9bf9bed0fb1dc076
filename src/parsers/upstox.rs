//! Upstox Market Data Feed V3: protobuf `FeedResponse` parser and encoder.
//!
//! Schema (field numbers), from `MarketDataFeedV3.proto`:
//! - `FeedResponse`: 1 type (enum), 2 feeds (map<string, Feed>), 3 currentTs (int64 ms),
//!   4 marketInfo.
//! - `Feed`: oneof { 1 ltpc, 2 fullFeed, 3 firstLevelWithGreeks }, 4 requestMode.
//! - `FullFeed`: oneof { 1 marketFF, 2 indexFF }.
//! - `MarketFullFeed`: 1 ltpc, 2 marketLevel, 3 optionGreeks, 4 marketOHLC, 5 atp, 6 vtt, 7 oi,
//!   8 iv, 9 tbq, 10 tsq. `IndexFullFeed`: 1 ltpc, 2 marketOHLC.
//! - `FirstLevelWithGreeks`: 1 ltpc, 2 firstDepth, 3 optionGreeks, 4 vtt, 5 oi, 6 iv.
//! - `LTPC`: 1 ltp, 2 ltt, 3 ltq, 4 cp. `Quote`: 1 bidQ, 2 bidP, 3 askQ, 4 askP.
//! - `OptionGreeks`: 1 delta .. 5 rho. `MarketOHLC`: 1 repeated OHLC. `OHLC`: 1 interval,
//!   2 open, 3 high, 4 low, 5 close, 6 vol, 7 ts. `MarketInfo`: 1 map<string, MarketStatus>.
//!
//! One tick per `feeds` entry, keyed by the map key. Decoding follows protobuf's merge rules so
//! the result equals what the vendor's own (generated) decoder yields: fields in any order, the
//! last scalar wins, repeated sub-messages merge, and of a oneof the last member on the wire wins.
//! A field with an unexpected wire type is skipped as unknown, as generated code does. Because
//! `currentTs` (field 3) follows the feeds on the wire, the frame is walked twice: once for the
//! top-level scalars and framing, once to emit ticks.
//!
//! Each entry is first tried by a decoder specialised to the layout a protobuf serializer writes
//! (every field at most once, in field-number order, one-byte tags read as straight-line code);
//! any entry that is not of that layout, or holds any error, is decoded by the exact general
//! path, which alone decides errors. Both give the same tick wherever the fast one answers.

use super::{
    protobuf::{self, put_bytes, put_double, put_int64, put_message, Cursor, Reader, Value},
    FeedEvent, FrameMeta, FrameOutcome, MarketStatus, ParseError, TickSink,
};
use crate::{
    tick::{Exchange, Fields, Mode, Tick, Token, DEPTH_LEVELS},
    vendor::Vendor,
};

/// Largest frame accepted: 2000 full-mode instruments (the per-connection cap) at a generous
/// 1 KiB each fits with room; more is treated as garbage.
pub const MAX_FRAME_LEN: usize = 4 << 20;

/// `FeedResponse.type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FeedType {
    /// The snapshot after a subscribe.
    InitialFeed = 0,
    /// An incremental update.
    LiveFeed = 1,
    /// Segment statuses.
    MarketInfo = 2,
}

const LTPC_FIELDS: Fields = Fields(
    Fields::LTP.0
        | Fields::LTQ.0
        | Fields::LAST_TRADE_TIME.0
        | Fields::CLOSE.0
        | Fields::EXCHANGE_TIME.0,
);
const MARKET_FF_FIELDS: Fields = Fields(
    LTPC_FIELDS.0
        | Fields::ATP.0
        | Fields::VOLUME.0
        | Fields::OI.0
        | Fields::IV.0
        | Fields::TOTAL_BUY_QTY.0
        | Fields::TOTAL_SELL_QTY.0,
);
const GREEKS_FEED_FIELDS: Fields =
    Fields(LTPC_FIELDS.0 | Fields::VOLUME.0 | Fields::OI.0 | Fields::IV.0);
const OHLC_FIELDS: Fields = Fields(Fields::OPEN.0 | Fields::HIGH.0 | Fields::LOW.0);

/// Parses one binary frame (a serialized `FeedResponse`).
///
/// Every well-formed `feeds` entry becomes a tick; a bad entry is rejected with its bytes; a
/// break in the top-level framing rejects the rest of the frame, after the entries before it
/// were delivered. `marketInfo` entries become [`FeedEvent::MarketStatus`] events.
pub fn parse_frame<S: TickSink + ?Sized>(
    frame: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
) -> FrameOutcome {
    if let Some(refused) = super::refuse_oversized(frame, MAX_FRAME_LEN, sink) {
        return refused;
    }
    let mut out = FrameOutcome::default();
    // Pass 1: currentTs (last wins) and the extent of the well-framed prefix.
    let mut current_ts = 0i64;
    let mut good_end = frame.len();
    let mut framing_error = None;
    let mut r = Reader::new(frame);
    while let Some(f) = r.next() {
        match f {
            Ok((3, v)) => {
                if let Some(ts) = v.as_i64() {
                    current_ts = ts;
                }
            }
            Ok(_) => {}
            Err(e) => {
                good_end = r.field_start();
                framing_error = Some(e);
            }
        }
    }
    let good = frame.get(..good_end).unwrap_or(&[]);
    // Pass 2: emit.
    let mut tick = Tick::EMPTY;
    for (num, v) in Reader::new(good).flatten() {
        match (num, v) {
            (2, Value::Bytes(entry)) => match decode_entry(entry, current_ts, meta, &mut tick) {
                Ok(()) => {
                    sink.tick(&tick);
                    out.ticks += 1;
                }
                Err(e) => {
                    sink.reject(&e, entry);
                    out.rejects += 1;
                }
            },
            (4, Value::Bytes(info)) => market_info(info, current_ts, sink, &mut out),
            _ => {}
        }
    }
    if let Some(e) = framing_error {
        sink.reject(
            &ParseError::Protobuf(e),
            frame.get(good_end..).unwrap_or(&[]),
        );
        out.rejects += 1;
    }
    out
}

fn market_info<S: TickSink + ?Sized>(
    info: &[u8],
    at_ms: i64,
    sink: &mut S,
    out: &mut FrameOutcome,
) {
    for f in Reader::new(info) {
        let entry = match f {
            Ok((1, Value::Bytes(entry))) => entry,
            Ok(_) => continue,
            Err(e) => {
                sink.reject(&ParseError::Protobuf(e), info);
                out.rejects += 1;
                return;
            }
        };
        let mut segment = "";
        let mut status = 0i64;
        let mut ok = true;
        for g in Reader::new(entry) {
            match g {
                Ok((1, Value::Bytes(b))) => match protobuf::as_str(b) {
                    Ok(s) => segment = s,
                    Err(e) => {
                        sink.reject(&ParseError::Protobuf(e), entry);
                        out.rejects += 1;
                        ok = false;
                    }
                },
                Ok((2, Value::Varint(v))) => status = v as i64,
                Ok(_) => {}
                Err(e) => {
                    sink.reject(&ParseError::Protobuf(e), entry);
                    out.rejects += 1;
                    ok = false;
                }
            }
        }
        if ok {
            // Enum values are int32 on the wire; a wider value is truncated as protobuf does.
            let status = MarketStatus::from_code(status as i32);
            sink.event(&FeedEvent::MarketStatus {
                vendor: Vendor::Upstox,
                segment,
                status,
                at_ms,
            });
            out.events += 1;
        }
    }
}

/// Walks a message's fields, calling `f` for each; stops at the first framing error.
#[inline(always)]
fn each<'a>(
    msg: &'a [u8],
    mut f: impl FnMut(u32, Value<'a>) -> Result<(), ParseError>,
) -> Result<(), ParseError> {
    for field in Reader::new(msg) {
        let (num, v) = field?;
        f(num, v)?;
    }
    Ok(())
}

/// The number of the last present member among `members` (sub-messages), 0 when none.
fn last_member(msg: &[u8], members: std::ops::RangeInclusive<u32>) -> Result<u32, ParseError> {
    let mut last = 0;
    each(msg, |num, v| {
        if members.contains(&num) && matches!(v, Value::Bytes(_)) {
            last = num;
        }
        Ok(())
    })?;
    Ok(last)
}

/// Decodes one `feeds` map entry into `t` (overwritten).
///
/// The common entry (each field once, in field-number order, one oneof member) is decoded in a
/// single pass by [`decode_entry_single`]. Anything else — a repeated field that protobuf would
/// merge, fields out of order, an unknown field, or any error — is decoded again by
/// [`decode_entry_exact`], which applies every merge rule and alone decides which error an
/// entry gets.
#[inline]
fn decode_entry(
    entry: &[u8],
    current_ts: i64,
    meta: &FrameMeta,
    t: &mut Tick,
) -> Result<(), ParseError> {
    match decode_entry_single(entry, current_ts, meta, t) {
        Some(()) => Ok(()),
        None => decode_entry_exact(entry, current_ts, meta, t),
    }
}

// One-byte tags (`field << 3 | wire type`; 0 varint, 1 fixed64, 2 length-delimited) of the
// layouts the fast path decodes, named `MESSAGE_FIELD`.
const ENTRY_KEY: u8 = 1 << 3 | 2;
const ENTRY_VALUE: u8 = 2 << 3 | 2;
const FEED_LTPC: u8 = 1 << 3 | 2;
const FEED_FULL: u8 = 2 << 3 | 2;
const FEED_GREEKS: u8 = 3 << 3 | 2;
const FEED_REQUEST_MODE: u8 = 4 << 3;
const FULL_MARKET: u8 = 1 << 3 | 2;
const FULL_INDEX: u8 = 2 << 3 | 2;
const LTPC_LTP: u8 = 1 << 3 | 1;
const LTPC_LTT: u8 = 2 << 3;
const LTPC_LTQ: u8 = 3 << 3;
const LTPC_CP: u8 = 4 << 3 | 1;
const QUOTE_BID_Q: u8 = 1 << 3;
const QUOTE_BID_P: u8 = 2 << 3 | 1;
const QUOTE_ASK_Q: u8 = 3 << 3;
const QUOTE_ASK_P: u8 = 4 << 3 | 1;
const GREEKS_DELTA: u8 = 1 << 3 | 1;
const GREEKS_THETA: u8 = 2 << 3 | 1;
const GREEKS_GAMMA: u8 = 3 << 3 | 1;
const GREEKS_VEGA: u8 = 4 << 3 | 1;
const GREEKS_RHO: u8 = 5 << 3 | 1;
const REPEATED_ITEM: u8 = 1 << 3 | 2;
const OHLC_INTERVAL: u8 = 1 << 3 | 2;
const OHLC_OPEN: u8 = 2 << 3 | 1;
const OHLC_HIGH: u8 = 3 << 3 | 1;
const OHLC_LOW: u8 = 4 << 3 | 1;
const OHLC_CLOSE: u8 = 5 << 3 | 1;
const OHLC_VOL: u8 = 6 << 3;
const OHLC_TS: u8 = 7 << 3;
const MFF_LTPC: u8 = 1 << 3 | 2;
const MFF_LEVEL: u8 = 2 << 3 | 2;
const MFF_GREEKS: u8 = 3 << 3 | 2;
const MFF_OHLC: u8 = 4 << 3 | 2;
const MFF_ATP: u8 = 5 << 3 | 1;
const MFF_VTT: u8 = 6 << 3;
const MFF_OI: u8 = 7 << 3 | 1;
const MFF_IV: u8 = 8 << 3 | 1;
const MFF_TBQ: u8 = 9 << 3 | 1;
const MFF_TSQ: u8 = 10 << 3 | 1;
const IFF_LTPC: u8 = 1 << 3 | 2;
const IFF_OHLC: u8 = 2 << 3 | 2;
const FLG_LTPC: u8 = 1 << 3 | 2;
const FLG_DEPTH: u8 = 2 << 3 | 2;
const FLG_GREEKS: u8 = 3 << 3 | 2;
const FLG_VTT: u8 = 4 << 3;
const FLG_OI: u8 = 5 << 3 | 1;
const FLG_IV: u8 = 6 << 3 | 1;

/// [`decode_entry_exact`] specialised to the layout a protobuf serializer writes: every field
/// at most once, in field-number order, with its schema's wire type, one oneof member, nothing
/// unknown. Each message is read as straight-line code, one [`Cursor::eat`] per field the schema
/// has, in order, instead of through the general reader's per-field dispatch; a message with
/// bytes left over after its last expected field is not of that layout. `None` means "not that
/// layout, use the exact path" — any surprise, including every error, which only the exact path
/// reports. Where it answers, the tick equals the exact path's (tested on encoded, hand-written,
/// random and mutated entries).
#[inline]
fn decode_entry_single(
    entry: &[u8],
    current_ts: i64,
    meta: &FrameMeta,
    t: &mut Tick,
) -> Option<()> {
    let mut c = Cursor::new(entry);
    let key = if c.eat(ENTRY_KEY) { c.bytes()? } else { &[] };
    if !c.eat(ENTRY_VALUE) {
        return None;
    }
    let feed = c.bytes()?;
    done(&c)?;
    let mut c = Cursor::new(feed);
    // One oneof member: whichever is present (in field order), and no second one after it.
    let case = [FEED_LTPC, FEED_FULL, FEED_GREEKS]
        .into_iter()
        .find(|&tag| c.eat(tag))?;
    let member = c.bytes()?;
    if c.eat(FEED_REQUEST_MODE) {
        c.varint()?;
    }
    done(&c)?;
    let (token, exchange, is_index) = key_fast(key)?;
    *t = Tick {
        received_at_ns: meta.received_at_ns,
        exchange_time_ms: current_ts,
        conn_id: meta.conn_id,
        vendor: Vendor::Upstox,
        exchange,
        is_index,
        token,
        ..Tick::EMPTY
    };
    match case {
        FEED_LTPC => {
            t.mode = Mode::Ltp;
            t.fields = LTPC_FIELDS;
            ltpc_fast(member, t)
        }
        FEED_FULL => {
            let mut c = Cursor::new(member);
            t.mode = Mode::Full;
            if c.eat(FULL_MARKET) {
                t.fields = MARKET_FF_FIELDS;
                market_ff_fast(c.bytes()?, t)?;
            } else if c.eat(FULL_INDEX) {
                t.fields = LTPC_FIELDS;
                index_ff_fast(c.bytes()?, t)?;
            } else {
                return None;
            }
            done(&c)
        }
        _ => {
            t.mode = Mode::Greeks;
            t.fields = GREEKS_FEED_FIELDS;
            greeks_feed_fast(member, t)
        }
    }
}

/// `Some` when the cursor consumed its whole message.
#[inline(always)]
fn done(c: &Cursor<'_>) -> Option<()> {
    c.at_end().then_some(())
}

/// An instrument key as the exact path checks it (UTF-8, at most the token's capacity,
/// `SEGMENT|ID` with a known segment and a non-empty id); `None` for anything else. Keys are
/// ASCII, which is valid UTF-8 without the general validator ([`Token::from_ascii`] checks);
/// other keys go the exact way.
#[inline(always)]
fn key_fast(key: &[u8]) -> Option<(Token, Exchange, bool)> {
    let bar = key.iter().position(|&b| b == b'|')?;
    let (segment, id) = (key.get(..bar)?, key.get(bar + 1..)?);
    if id.is_empty() {
        return None;
    }
    let (exchange, is_index) = Exchange::from_upstox_segment_bytes(segment)?;
    Some((Token::from_ascii(key)?, exchange, is_index))
}

#[inline(always)]
fn ltpc_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    let mut c = Cursor::new(m);
    if c.eat(LTPC_LTP) {
        t.ltp = c.f64()?;
    }
    if c.eat(LTPC_LTT) {
        t.last_trade_time_ms = c.varint()? as i64;
    }
    if c.eat(LTPC_LTQ) {
        t.ltq = (c.varint()? as i64) as f64;
    }
    if c.eat(LTPC_CP) {
        t.close = c.f64()?;
    }
    done(&c)
}

#[inline(always)]
fn greeks_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    t.fields.insert(Fields::GREEKS);
    let mut c = Cursor::new(m);
    let g = &mut t.greeks;
    for (tag, v) in [
        (GREEKS_DELTA, &mut g.delta),
        (GREEKS_THETA, &mut g.theta),
        (GREEKS_GAMMA, &mut g.gamma),
        (GREEKS_VEGA, &mut g.vega),
        (GREEKS_RHO, &mut g.rho),
    ] {
        if c.eat(tag) {
            *v = c.f64()?;
        }
    }
    done(&c)
}

/// As [`quote`].
#[inline(always)]
fn quote_fast(m: &[u8], t: &mut Tick, i: usize) -> Option<()> {
    let mut c = Cursor::new(m);
    let (mut bq, mut bp, mut aq, mut ap) = (0i64, 0.0, 0i64, 0.0);
    if c.eat(QUOTE_BID_Q) {
        bq = c.varint()? as i64;
    }
    if c.eat(QUOTE_BID_P) {
        bp = c.f64()?;
    }
    if c.eat(QUOTE_ASK_Q) {
        aq = c.varint()? as i64;
    }
    if c.eat(QUOTE_ASK_P) {
        ap = c.f64()?;
    }
    done(&c)?;
    if let (Some(bid), Some(ask)) = (t.depth.bids.get_mut(i), t.depth.asks.get_mut(i)) {
        bid.qty = bq as f64;
        bid.price = bp;
        ask.qty = aq as f64;
        ask.price = ap;
        // i < DEPTH_LEVELS here, so it fits in u8.
        t.depth.bid_len = (i + 1) as u8;
        t.depth.ask_len = (i + 1) as u8;
    }
    Some(())
}

/// `MarketLevel`: the repeated `Quote`s as depth levels 0, 1, ...
#[inline(always)]
fn market_level_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    t.fields.insert(Fields::DEPTH);
    let mut c = Cursor::new(m);
    let mut level = 0;
    while c.eat(REPEATED_ITEM) {
        quote_fast(c.bytes()?, t, level)?;
        level += 1;
    }
    done(&c)
}

/// As [`market_ohlc`], for one occurrence of the message (so no `1d` candle was found before).
#[inline(always)]
fn market_ohlc_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    let mut found = false;
    let mut c = Cursor::new(m);
    while c.eat(REPEATED_ITEM) {
        let mut o = Cursor::new(c.bytes()?);
        let interval = if o.eat(OHLC_INTERVAL) {
            o.bytes()?
        } else {
            &[]
        };
        let (mut open, mut high, mut low) = (0.0, 0.0, 0.0);
        if o.eat(OHLC_OPEN) {
            open = o.f64()?;
        }
        if o.eat(OHLC_HIGH) {
            high = o.f64()?;
        }
        if o.eat(OHLC_LOW) {
            low = o.f64()?;
        }
        // Read past: the candle's close, volume and time are not tick fields.
        if o.eat(OHLC_CLOSE) {
            o.f64()?;
        }
        if o.eat(OHLC_VOL) {
            o.varint()?;
        }
        if o.eat(OHLC_TS) {
            o.varint()?;
        }
        done(&o)?;
        // The exact path rejects a non-UTF-8 interval, so this one must see it too.
        let interval = protobuf::as_str(interval).ok()?;
        if !found && interval == "1d" {
            found = true;
            t.open = open;
            t.high = high;
            t.low = low;
            t.fields.insert(OHLC_FIELDS);
        }
    }
    done(&c)
}

#[inline(always)]
fn market_ff_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    let mut c = Cursor::new(m);
    if c.eat(MFF_LTPC) {
        ltpc_fast(c.bytes()?, t)?;
    }
    if c.eat(MFF_LEVEL) {
        market_level_fast(c.bytes()?, t)?;
    }
    if c.eat(MFF_GREEKS) {
        greeks_fast(c.bytes()?, t)?;
    }
    if c.eat(MFF_OHLC) {
        market_ohlc_fast(c.bytes()?, t)?;
    }
    if c.eat(MFF_ATP) {
        t.atp = c.f64()?;
    }
    if c.eat(MFF_VTT) {
        t.volume = (c.varint()? as i64) as f64;
    }
    if c.eat(MFF_OI) {
        t.oi = c.f64()?;
    }
    if c.eat(MFF_IV) {
        t.iv = c.f64()?;
    }
    if c.eat(MFF_TBQ) {
        t.total_buy_qty = c.f64()?;
    }
    if c.eat(MFF_TSQ) {
        t.total_sell_qty = c.f64()?;
    }
    done(&c)
}

#[inline(always)]
fn index_ff_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    let mut c = Cursor::new(m);
    if c.eat(IFF_LTPC) {
        ltpc_fast(c.bytes()?, t)?;
    }
    if c.eat(IFF_OHLC) {
        market_ohlc_fast(c.bytes()?, t)?;
    }
    done(&c)
}

#[inline(always)]
fn greeks_feed_fast(m: &[u8], t: &mut Tick) -> Option<()> {
    let mut c = Cursor::new(m);
    if c.eat(FLG_LTPC) {
        ltpc_fast(c.bytes()?, t)?;
    }
    if c.eat(FLG_DEPTH) {
        t.fields.insert(Fields::DEPTH);
        quote_fast(c.bytes()?, t, 0)?;
    }
    if c.eat(FLG_GREEKS) {
        greeks_fast(c.bytes()?, t)?;
    }
    if c.eat(FLG_VTT) {
        t.volume = (c.varint()? as i64) as f64;
    }
    if c.eat(FLG_OI) {
        t.oi = c.f64()?;
    }
    if c.eat(FLG_IV) {
        t.iv = c.f64()?;
    }
    done(&c)
}

/// Decodes one `feeds` map entry into `t` (overwritten), applying protobuf's merge rules.
#[cold]
#[inline(never)]
fn decode_entry_exact(
    entry: &[u8],
    current_ts: i64,
    meta: &FrameMeta,
    t: &mut Tick,
) -> Result<(), ParseError> {
    // A map entry is a message {1: key, 2: value}; repeated value fields merge, so find the key
    // and the oneof member that wins across all of them first.
    let mut key: &[u8] = &[];
    let mut case = 0u32;
    each(entry, |num, v| {
        match (num, v) {
            (1, Value::Bytes(b)) => key = b,
            (2, Value::Bytes(feed)) => {
                let c = last_member(feed, 1..=3)?;
                if c != 0 {
                    case = c;
                }
            }
            _ => {}
        }
        Ok(())
    })?;
    let key = protobuf::as_str(key)?;
    *t = Tick::EMPTY;
    t.token = Token::new(key).map_err(|e| ParseError::UpstoxKeyTooLong { len: e.len })?;
    let (segment, id) = key.split_once('|').ok_or(ParseError::UpstoxBadKey)?;
    if id.is_empty() {
        return Err(ParseError::UpstoxBadKey);
    }
    let (exchange, is_index) =
        Exchange::from_upstox_segment(segment).ok_or(ParseError::UpstoxUnknownSegment)?;
    t.vendor = Vendor::Upstox;
    t.exchange = exchange;
    t.is_index = is_index;
    t.received_at_ns = meta.received_at_ns;
    t.conn_id = meta.conn_id;
    t.exchange_time_ms = current_ts;
    // For a full feed, the FullFeed oneof winner across every merged occurrence.
    let mut full_case = 0u32;
    if case == 2 {
        each(entry, |num, v| {
            if let (2, Value::Bytes(feed)) = (num, v) {
                each(feed, |n, v| {
                    if let (2, Value::Bytes(ff)) = (n, v) {
                        let c = last_member(ff, 1..=2)?;
                        if c != 0 {
                            full_case = c;
                        }
                    }
                    Ok(())
                })?;
            }
            Ok(())
        })?;
    }
    match (case, full_case) {
        (1, _) => {
            t.mode = Mode::Ltp;
            t.fields = LTPC_FIELDS;
        }
        (2, 1) => {
            t.mode = Mode::Full;
            t.fields = MARKET_FF_FIELDS;
        }
        (2, 2) => {
            t.mode = Mode::Full;
            t.fields = LTPC_FIELDS;
        }
        (3, _) => {
            t.mode = Mode::Greeks;
            t.fields = GREEKS_FEED_FIELDS;
        }
        _ => return Err(ParseError::UpstoxEmptyFeed),
    }
    let mut ohlc_found = false;
    each(entry, |num, v| {
        let (2, Value::Bytes(feed)) = (num, v) else {
            return Ok(());
        };
        each(feed, |n, v| {
            let Value::Bytes(m) = v else { return Ok(()) };
            if n != case {
                return Ok(());
            }
            match case {
                1 => ltpc(m, t),
                2 => each(m, |n, v| match (n, v) {
                    (1, Value::Bytes(ff)) if full_case == 1 => market_ff(ff, t, &mut ohlc_found),
                    (2, Value::Bytes(ff)) if full_case == 2 => index_ff(ff, t, &mut ohlc_found),
                    _ => Ok(()),
                }),
                _ => greeks_feed(m, t),
            }
        })
    })?;
    Ok(())
}

#[inline]
fn ltpc(m: &[u8], t: &mut Tick) -> Result<(), ParseError> {
    each(m, |n, v| {
        match (n, v) {
            (1, Value::Fixed64(b)) => t.ltp = f64::from_bits(b),
            (2, Value::Varint(x)) => t.last_trade_time_ms = x as i64,
            (3, Value::Varint(x)) => t.ltq = (x as i64) as f64,
            (4, Value::Fixed64(b)) => t.close = f64::from_bits(b),
            _ => {}
        }
        Ok(())
    })
}

#[inline]
fn greeks(m: &[u8], t: &mut Tick) -> Result<(), ParseError> {
    t.fields.insert(Fields::GREEKS);
    each(m, |n, v| {
        if let Value::Fixed64(b) = v {
            let x = f64::from_bits(b);
            match n {
                1 => t.greeks.delta = x,
                2 => t.greeks.theta = x,
                3 => t.greeks.gamma = x,
                4 => t.greeks.vega = x,
                5 => t.greeks.rho = x,
                _ => {}
            }
        }
        Ok(())
    })
}

/// One `Quote` as depth level `i` on both sides (levels past [`DEPTH_LEVELS`] are dropped).
#[inline]
fn quote(m: &[u8], t: &mut Tick, i: usize) -> Result<(), ParseError> {
    let (mut bq, mut bp, mut aq, mut ap) = (0i64, 0.0, 0i64, 0.0);
    each(m, |n, v| {
        match (n, v) {
            (1, Value::Varint(x)) => bq = x as i64,
            (2, Value::Fixed64(b)) => bp = f64::from_bits(b),
            (3, Value::Varint(x)) => aq = x as i64,
            (4, Value::Fixed64(b)) => ap = f64::from_bits(b),
            _ => {}
        }
        Ok(())
    })?;
    if let (Some(bid), Some(ask)) = (t.depth.bids.get_mut(i), t.depth.asks.get_mut(i)) {
        bid.qty = bq as f64;
        bid.price = bp;
        ask.qty = aq as f64;
        ask.price = ap;
        // i < DEPTH_LEVELS here, so it fits in u8.
        t.depth.bid_len = (i + 1) as u8;
        t.depth.ask_len = (i + 1) as u8;
    }
    Ok(())
}

/// `MarketOHLC`: open/high/low from the first entry whose interval is `1d`.
#[inline]
fn market_ohlc(m: &[u8], t: &mut Tick, found: &mut bool) -> Result<(), ParseError> {
    each(m, |n, v| {
        let (1, Value::Bytes(o)) = (n, v) else {
            return Ok(());
        };
        let mut interval: &[u8] = &[];
        let (mut open, mut high, mut low) = (0.0, 0.0, 0.0);
        each(o, |n, v| {
            match (n, v) {
                (1, Value::Bytes(b)) => interval = b,
                (2, Value::Fixed64(b)) => open = f64::from_bits(b),
                (3, Value::Fixed64(b)) => high = f64::from_bits(b),
                (4, Value::Fixed64(b)) => low = f64::from_bits(b),
                _ => {}
            }
            Ok(())
        })?;
        let interval = protobuf::as_str(interval)?;
        if !*found && interval == "1d" {
            *found = true;
            t.open = open;
            t.high = high;
            t.low = low;
            t.fields.insert(OHLC_FIELDS);
        }
        Ok(())
    })
}

#[inline]
fn market_ff(m: &[u8], t: &mut Tick, ohlc_found: &mut bool) -> Result<(), ParseError> {
    let mut level = usize::from(t.depth.bid_len);
    each(m, |n, v| {
        match (n, v) {
            (1, Value::Bytes(b)) => ltpc(b, t)?,
            (2, Value::Bytes(b)) => {
                t.fields.insert(Fields::DEPTH);
                each(b, |n, v| {
                    if let (1, Value::Bytes(q)) = (n, v) {
                        quote(q, t, level)?;
                        level += 1;
                    }
                    Ok(())
                })?;
            }
            (3, Value::Bytes(b)) => greeks(b, t)?,
            (4, Value::Bytes(b)) => market_ohlc(b, t, ohlc_found)?,
            (5, Value::Fixed64(b)) => t.atp = f64::from_bits(b),
            (6, Value::Varint(x)) => t.volume = (x as i64) as f64,
            (7, Value::Fixed64(b)) => t.oi = f64::from_bits(b),
            (8, Value::Fixed64(b)) => t.iv = f64::from_bits(b),
            (9, Value::Fixed64(b)) => t.total_buy_qty = f64::from_bits(b),
            (10, Value::Fixed64(b)) => t.total_sell_qty = f64::from_bits(b),
            _ => {}
        }
        Ok(())
    })
}

#[inline]
fn index_ff(m: &[u8], t: &mut Tick, ohlc_found: &mut bool) -> Result<(), ParseError> {
    each(m, |n, v| match (n, v) {
        (1, Value::Bytes(b)) => ltpc(b, t),
        (2, Value::Bytes(b)) => market_ohlc(b, t, ohlc_found),
        _ => Ok(()),
    })
}

#[inline]
fn greeks_feed(m: &[u8], t: &mut Tick) -> Result<(), ParseError> {
    each(m, |n, v| {
        match (n, v) {
            (1, Value::Bytes(b)) => ltpc(b, t)?,
            (2, Value::Bytes(b)) => {
                // A single Quote, not repeated: a second occurrence merges into level 0.
                t.fields.insert(Fields::DEPTH);
                quote(b, t, 0)?;
            }
            (3, Value::Bytes(b)) => greeks(b, t)?,
            (4, Value::Varint(x)) => t.volume = (x as i64) as f64,
            (5, Value::Fixed64(b)) => t.oi = f64::from_bits(b),
            (6, Value::Fixed64(b)) => t.iv = f64::from_bits(b),
            _ => {}
        }
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------------
// Encoder

fn put_ltpc(out: &mut Vec<u8>, field: u32, t: &Tick) {
    put_message(out, field, |o| {
        put_double(o, 1, t.ltp);
        put_int64(o, 2, t.last_trade_time_ms);
        put_int64(o, 3, t.ltq as i64);
        put_double(o, 4, t.close);
    });
}

fn put_quote(o: &mut Vec<u8>, bid: &crate::tick::Level, ask: &crate::tick::Level) {
    put_int64(o, 1, bid.qty as i64);
    put_double(o, 2, bid.price);
    put_int64(o, 3, ask.qty as i64);
    put_double(o, 4, ask.price);
}

fn put_greeks(out: &mut Vec<u8>, field: u32, t: &Tick) {
    if t.has(Fields::GREEKS) {
        put_message(out, field, |o| {
            put_double(o, 1, t.greeks.delta);
            put_double(o, 2, t.greeks.theta);
            put_double(o, 3, t.greeks.gamma);
            put_double(o, 4, t.greeks.vega);
            put_double(o, 5, t.greeks.rho);
        });
    }
}

fn put_ohlc(out: &mut Vec<u8>, field: u32, t: &Tick) {
    if t.has(OHLC_FIELDS) {
        put_message(out, field, |o| {
            put_message(o, 1, |c| {
                put_bytes(c, 1, b"1d");
                put_double(c, 2, t.open);
                put_double(c, 3, t.high);
                put_double(c, 4, t.low);
                // The day candle's running close is the last price.
                put_double(c, 5, t.ltp);
            });
        });
    }
}

fn put_feed(out: &mut Vec<u8>, t: &Tick) {
    match (t.mode, t.is_index) {
        (Mode::Ltp, _) => put_ltpc(out, 1, t),
        (Mode::Greeks, _) => {
            put_message(out, 3, |o| {
                put_ltpc(o, 1, t);
                if t.has(Fields::DEPTH) {
                    let bid = t.depth.bids().first().copied().unwrap_or_default();
                    let ask = t.depth.asks().first().copied().unwrap_or_default();
                    put_message(o, 2, |q| put_quote(q, &bid, &ask));
                }
                put_greeks(o, 3, t);
                put_int64(o, 4, t.volume as i64);
                put_double(o, 5, t.oi);
                put_double(o, 6, t.iv);
            });
            put_int64(out, 4, 2);
        }
        (_, true) => {
            put_message(out, 2, |o| {
                put_message(o, 2, |i| {
                    put_ltpc(i, 1, t);
                    put_ohlc(i, 2, t);
                });
            });
            put_int64(out, 4, 1);
        }
        (_, false) => {
            put_message(out, 2, |o| {
                put_message(o, 1, |m| {
                    put_ltpc(m, 1, t);
                    if t.has(Fields::DEPTH) {
                        put_message(m, 2, |l| {
                            let n = t.depth.bid_len.max(t.depth.ask_len);
                            for i in 0..usize::from(n).min(DEPTH_LEVELS) {
                                let bid = t.depth.bids().get(i).copied().unwrap_or_default();
                                let ask = t.depth.asks().get(i).copied().unwrap_or_default();
                                put_message(l, 1, |q| put_quote(q, &bid, &ask));
                            }
                        });
                    }
                    put_greeks(m, 3, t);
                    put_ohlc(m, 4, t);
                    put_double(m, 5, t.atp);
                    put_int64(m, 6, t.volume as i64);
                    put_double(m, 7, t.oi);
                    put_double(m, 8, t.iv);
                    put_double(m, 9, t.total_buy_qty);
                    put_double(m, 10, t.total_sell_qty);
                });
            });
            put_int64(out, 4, 1);
        }
    }
}

/// Appends a serialized `FeedResponse` with one `feeds` entry per tick, keyed by `tick.token`
/// (the instrument key), and `currentTs = current_ts_ms`.
///
/// The feed kind follows `tick.mode`: `Ltp` -> `ltpc`; `Greeks` -> `firstLevelWithGreeks`
/// (depth level 0 as `firstDepth`); `Full` or `Quote` -> `fullFeed.indexFF` when `tick.is_index`,
/// else `fullFeed.marketFF` (up to 5 depth levels as `marketLevel`). Optional parts are written
/// when the tick carries them: depth ([`Fields::DEPTH`]), greeks ([`Fields::GREEKS`]), and a `1d`
/// `marketOHLC` candle ([`Fields::OPEN`]+`HIGH`+`LOW`). Zero scalars are omitted, as proto3
/// serializers do. Quantities are written as int64 where the schema says so (rounded toward 0).
pub fn encode_feed_response(
    ticks: &[Tick],
    feed_type: FeedType,
    current_ts_ms: i64,
    out: &mut Vec<u8>,
) {
    put_int64(out, 1, feed_type as i64);
    for t in ticks {
        put_message(out, 2, |e| {
            put_bytes(e, 1, t.token.as_str().as_bytes());
            put_message(e, 2, |f| put_feed(f, t));
        });
    }
    put_int64(out, 3, current_ts_ms);
}

/// Appends a serialized `market_info` `FeedResponse`: `type = market_info`, `currentTs`, and
/// `marketInfo.segmentStatus` with one entry per `(segment, status)`.
pub fn encode_market_info(
    statuses: &[(&str, MarketStatus)],
    current_ts_ms: i64,
    out: &mut Vec<u8>,
) {
    put_int64(out, 1, FeedType::MarketInfo as i64);
    put_int64(out, 3, current_ts_ms);
    put_message(out, 4, |m| {
        for (segment, status) in statuses {
            put_message(m, 1, |e| {
                put_bytes(e, 1, segment.as_bytes());
                put_int64(e, 2, i64::from(status.code()));
            });
        }
    });
}

#[cfg(test)]
mod tests {
    use super::super::protobuf::{PbError, Reader, Value};
    use super::*;
    use crate::tick::Level;

    #[derive(Default)]
    struct Collect {
        ticks: Vec<Tick>,
        rejects: Vec<(ParseError, Vec<u8>)>,
        events: Vec<(String, MarketStatus, i64)>,
    }

    impl TickSink for Collect {
        fn tick(&mut self, t: &Tick) {
            self.ticks.push(*t);
        }
        fn reject(&mut self, e: &ParseError, raw: &[u8]) {
            self.rejects.push((*e, raw.to_vec()));
        }
        fn event(&mut self, ev: &FeedEvent<'_>) {
            if let FeedEvent::MarketStatus {
                segment,
                status,
                at_ms,
                ..
            } = ev
            {
                self.events.push((segment.to_string(), *status, *at_ms));
            }
        }
    }

    fn parse(frame: &[u8]) -> Collect {
        let mut c = Collect::default();
        parse_frame(frame, &FrameMeta::default(), &mut c);
        c
    }

    fn base(key: &str, mode: Mode) -> Tick {
        let mut t = Tick::EMPTY;
        t.vendor = Vendor::Upstox;
        t.token = Token::new(key).unwrap();
        let (ex, idx) = Exchange::from_upstox_segment(key.split('|').next().unwrap()).unwrap();
        t.exchange = ex;
        t.is_index = idx;
        t.mode = mode;
        t.ltp = 2874.35;
        t.last_trade_time_ms = 1_732_700_000_123;
        t.ltq = 25.0;
        t.close = 2860.5;
        t.exchange_time_ms = 1_732_700_000_456;
        t.fields = LTPC_FIELDS;
        t
    }

    fn full(key: &str) -> Tick {
        let mut t = base(key, Mode::Full);
        t.fields = MARKET_FF_FIELDS | OHLC_FIELDS | Fields::DEPTH | Fields::GREEKS;
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
        for i in 0..DEPTH_LEVELS {
            t.depth.bids[i] = Level {
                price: 2874.3 - i as f64 * 0.05,
                qty: 10.0 + i as f64,
                orders: 0,
            };
            t.depth.asks[i] = Level {
                price: 2874.4 + i as f64 * 0.05,
                qty: 20.0 + i as f64,
                orders: 0,
            };
        }
        t.depth.bid_len = 5;
        t.depth.ask_len = 5;
        t
    }

    #[test]
    fn round_trip_ltpc_full_index_greeks() {
        let ltpc = base("NSE_EQ|INE002A01018", Mode::Ltp);
        let fullt = full("NSE_FO|65629");
        let mut idx = base("NSE_INDEX|Nifty 50", Mode::Full);
        idx.fields = LTPC_FIELDS | OHLC_FIELDS;
        idx.open = 24000.5;
        idx.high = 24100.0;
        idx.low = 23950.75;
        let mut gr = full("NSE_FO|45000");
        gr.mode = Mode::Greeks;
        gr.fields = GREEKS_FEED_FIELDS | Fields::DEPTH | Fields::GREEKS;
        gr.atp = 0.0;
        gr.total_buy_qty = 0.0;
        gr.total_sell_qty = 0.0;
        gr.open = 0.0;
        gr.high = 0.0;
        gr.low = 0.0;
        gr.depth.bid_len = 1;
        gr.depth.ask_len = 1;
        for i in 1..DEPTH_LEVELS {
            gr.depth.bids[i] = Level::default();
            gr.depth.asks[i] = Level::default();
        }
        let ticks = [ltpc, fullt, idx, gr];
        let mut frame = Vec::new();
        encode_feed_response(&ticks, FeedType::LiveFeed, 1_732_700_000_456, &mut frame);
        let c = parse(&frame);
        assert!(c.rejects.is_empty(), "{:?}", c.rejects);
        assert_eq!(c.ticks, ticks);
    }

    #[test]
    fn market_info_is_an_event() {
        let mut f = Vec::new();
        encode_market_info(
            &[
                ("NSE_EQ", MarketStatus::NormalOpen),
                ("MCX_FO", MarketStatus::PreOpenStart),
            ],
            1_732_700_000_000,
            &mut f,
        );
        let c = parse(&f);
        assert!(c.ticks.is_empty());
        assert_eq!(
            c.events,
            vec![
                ("NSE_EQ".into(), MarketStatus::NormalOpen, 1_732_700_000_000),
                (
                    "MCX_FO".into(),
                    MarketStatus::PreOpenStart,
                    1_732_700_000_000
                )
            ]
        );
    }

    #[test]
    fn bad_entries_are_rejected_and_others_survive() {
        let good = base("NSE_EQ|INE002A01018", Mode::Ltp);
        let mut frame = Vec::new();
        encode_feed_response(&[good], FeedType::LiveFeed, 5, &mut frame);
        // Hand-written entries: unknown segment, no '|', key too long, empty feed.
        for key in [
            "XYZ_EQ|1",
            "NOPIPE",
            "NSE_EQ|0123456789012345678901234567890",
        ] {
            put_message(&mut frame, 2, |e| {
                put_bytes(e, 1, key.as_bytes());
                put_message(e, 2, |f| put_ltpc(f, 1, &good));
            });
        }
        put_message(&mut frame, 2, |e| put_bytes(e, 1, b"NSE_EQ|X"));
        let c = parse(&frame);
        assert_eq!(c.ticks.len(), 1);
        let codes: Vec<_> = c.rejects.iter().map(|r| r.0).collect();
        assert_eq!(
            codes,
            vec![
                ParseError::UpstoxUnknownSegment,
                ParseError::UpstoxBadKey,
                ParseError::UpstoxKeyTooLong { len: 38 },
                ParseError::UpstoxEmptyFeed
            ]
        );
        // Truncation: the entries before the break still come through.
        let mut two = Vec::new();
        encode_feed_response(&[good, good], FeedType::LiveFeed, 0, &mut two);
        two.truncate(two.len() - 4);
        let c = parse(&two);
        assert_eq!(c.ticks.len(), 1);
        assert_eq!(c.rejects.len(), 1);
        assert_eq!(c.rejects[0].0, ParseError::Protobuf(PbError::LengthOverrun));
    }

    #[test]
    fn merge_rules() {
        // Oneof: last member wins; currentTs after feeds; OHLC picks '1d' not 'I1'.
        let t = base("NSE_EQ|INE002A01018", Mode::Ltp);
        let mut f = Vec::new();
        put_message(&mut f, 2, |e| {
            put_bytes(e, 1, b"NSE_EQ|INE002A01018");
            put_message(e, 2, |fd| {
                put_message(fd, 3, |g| put_ltpc(g, 1, &t));
                put_message(fd, 2, |ff| {
                    put_message(ff, 1, |m| {
                        put_ltpc(m, 1, &t);
                        put_message(m, 4, |o| {
                            put_message(o, 1, |c| {
                                put_bytes(c, 1, b"I1");
                                put_double(c, 2, 1.0);
                            });
                            put_message(o, 1, |c| {
                                put_bytes(c, 1, b"1d");
                                put_double(c, 2, 2.0);
                                put_double(c, 3, 3.0);
                                put_double(c, 4, 1.5);
                            });
                        });
                    });
                });
            });
        });
        put_int64(&mut f, 3, 99);
        let c = parse(&f);
        assert_eq!(c.ticks.len(), 1);
        let got = c.ticks[0];
        assert_eq!(got.mode, Mode::Full);
        assert_eq!((got.open, got.high, got.low), (2.0, 3.0, 1.5));
        assert_eq!(got.exchange_time_ms, 99);
        assert!(!got.has(Fields::GREEKS));
    }

    #[test]
    fn fast_path_takes_every_serializer_layout() {
        // Random ticks of every feed kind (zeros, negatives, NaN bits, 0..=7 depth levels, greeks
        // and OHLC present or not), and hand-written extras a real feed sends: an intraday candle
        // before the day one, more than five levels (full_d30). The fast path must answer for
        // every one of them (they are all in field order) and agree with the exact path.
        let mut next = crate::test_rng::xorshift(0x1234_5678_9abc_def1);
        let meta = FrameMeta {
            received_at_ns: 42,
            conn_id: 7,
        };
        let keys = [
            "NSE_EQ|INE002A01018",
            "NSE_FO|65629",
            "NSE_INDEX|Nifty 50",
            "MCX_FO|1",
        ];
        for round in 0..20_000 {
            let key = keys[round % keys.len()];
            let mut t = full(key);
            let mut val = |v: f64| match next() % 6 {
                0 => 0.0,
                1 => -v,
                2 => f64::from_bits(next()),
                _ => v,
            };
            t.ltp = val(t.ltp);
            t.close = val(t.close);
            t.atp = val(t.atp);
            t.oi = val(t.oi);
            t.greeks.delta = val(t.greeks.delta);
            t.ltq = (next() % 3) as f64 * 25.0;
            t.volume = [0.0, 1.0, 1e15, -5.0][(next() % 4) as usize];
            t.last_trade_time_ms = [0, -1, 1_732_700_000_123][(next() % 3) as usize];
            t.mode = [Mode::Ltp, Mode::Full, Mode::Greeks][(next() % 3) as usize];
            if next() % 2 == 0 {
                t.fields = Fields(t.fields.0 & !Fields::GREEKS.0);
            }
            if next() % 2 == 0 {
                t.fields = Fields(t.fields.0 & !OHLC_FIELDS.0);
            }
            if next() % 4 == 0 {
                t.fields = Fields(t.fields.0 & !Fields::DEPTH.0);
            }
            let n = (next() % 6) as u8;
            (t.depth.bid_len, t.depth.ask_len) = (n, n);
            let mut entry = Vec::new();
            put_bytes(&mut entry, 1, key.as_bytes());
            put_message(&mut entry, 2, |f| put_feed(f, &t));
            if round % 5 == 0 && t.mode == Mode::Full && !t.is_index {
                // Hand-written: 'I1' candle first, then '1d'; seven depth levels.
                entry.clear();
                put_bytes(&mut entry, 1, key.as_bytes());
                put_message(&mut entry, 2, |f| {
                    put_message(f, 2, |ff| {
                        put_message(ff, 1, |m| {
                            put_ltpc(m, 1, &t);
                            put_message(m, 2, |l| {
                                for i in 0..7 {
                                    let lv = Level {
                                        price: 100.0 + i as f64,
                                        qty: 3.0,
                                        orders: 0,
                                    };
                                    put_message(l, 1, |q| put_quote(q, &lv, &lv));
                                }
                            });
                            put_message(m, 4, |o| {
                                for (iv, x) in [(&b"I1"[..], 1.0), (&b"1d"[..], 2.0)] {
                                    put_message(o, 1, |c| {
                                        put_bytes(c, 1, iv);
                                        put_double(c, 2, x);
                                        put_double(c, 5, x);
                                        put_int64(c, 6, 9);
                                        put_int64(c, 7, 1_732_700_000_000);
                                    });
                                }
                            });
                            put_double(m, 10, t.total_sell_qty);
                        });
                    });
                    put_int64(f, 4, 1);
                });
            }
            let mut fast = Tick::EMPTY;
            assert!(
                decode_entry_single(&entry, 9, &meta, &mut fast).is_some(),
                "{entry:?}"
            );
            let mut exact = Tick::EMPTY;
            assert_eq!(decode_entry_exact(&entry, 9, &meta, &mut exact), Ok(()));
            // Debug form, so a NaN from the wire compares equal to itself.
            assert_eq!(format!("{fast:?}"), format!("{exact:?}"), "{entry:?}");
        }
    }

    #[test]
    fn single_pass_agrees_with_the_exact_path() {
        // Entries from the encoder, then mutated (bit flips, truncation, duplicated fields,
        // which protobuf merges): wherever the single pass answers, it must equal the exact one.
        let mut idx = base("NSE_INDEX|Nifty 50", Mode::Full);
        idx.fields = LTPC_FIELDS | OHLC_FIELDS;
        idx.open = 1.0;
        let mut gr = full("NSE_FO|45000");
        gr.mode = Mode::Greeks;
        let ticks = [
            base("NSE_EQ|INE002A01018", Mode::Ltp),
            full("NSE_FO|65629"),
            idx,
            gr,
        ];
        let mut entries: Vec<Vec<u8>> = Vec::new();
        for t in &ticks {
            let mut f = Vec::new();
            encode_feed_response(std::slice::from_ref(t), FeedType::LiveFeed, 7, &mut f);
            for field in Reader::new(&f) {
                if let Ok((2, Value::Bytes(e))) = field {
                    entries.push(e.to_vec());
                }
            }
        }
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let meta = FrameMeta::default();
        let (mut agreed, mut fell_back) = (0, 0);
        for round in 0..60_000 {
            let mut e = entries[round % entries.len()].clone();
            match next() % 4 {
                0 => {}
                1 => {
                    for _ in 0..1 + next() % 3 {
                        let at = (next() as usize) % e.len();
                        e[at] ^= 1 << (next() % 8);
                    }
                }
                2 => {
                    let cut = (next() as usize) % e.len();
                    e.truncate(cut);
                }
                _ => {
                    // Append a copy of another entry's fields: duplicate key and feed (a merge).
                    let other = &entries[(next() as usize) % entries.len()];
                    let from = (next() as usize) % other.len();
                    e.extend_from_slice(if next() % 2 == 0 {
                        other
                    } else {
                        &other[from..]
                    });
                }
            }
            let mut exact = Tick::EMPTY;
            let want = decode_entry_exact(&e, 7, &meta, &mut exact);
            let mut single = Tick::EMPTY;
            if decode_entry_single(&e, 7, &meta, &mut single).is_some() {
                assert_eq!(want, Ok(()), "{e:?}");
                // Debug form, so a NaN from the wire compares equal to itself.
                assert_eq!(format!("{single:?}"), format!("{exact:?}"), "{e:?}");
                agreed += 1;
            } else {
                fell_back += 1;
            }
            let mut via = Tick::EMPTY;
            assert_eq!(decode_entry(&e, 7, &meta, &mut via), want);
            if want.is_ok() {
                assert_eq!(format!("{via:?}"), format!("{exact:?}"));
            }
        }
        assert!(
            agreed > 10_000 && fell_back > 10_000,
            "{agreed} {fell_back}"
        );
    }
}
