//! Generic JSON feed parser: text frames of JSON ticks mapped onto the [`Tick`] by configuration.
//!
//! A frame is one JSON object or an array of objects. Each object is read with `serde_json`
//! straight from the frame: keys and string values borrow from it (an escaped string is the one
//! case that copies), numbers are read in place, and only the keys the [`JsonMapping`] names are
//! looked at (everything else is skipped without being built). Per-tick allocation: none in the
//! common case; a key or string value containing a JSON escape (`\"`, `\u..`) allocates one
//! `String` for that value. This is the one parser allowed to allocate, as `docs/json-feed.md`
//! says.
//!
//! The mapping (`JSON_FEED_MAP`) is `target=source[*scale]` pairs, comma-separated: `target` is
//! a tick field by its JSON name (`token`, `ltp`, `ltq`, `atp`, `volume`, `totalBuyQty`,
//! `totalSellQty`, `open`, `high`, `low`, `close`, `oi`, `lastTradeTime`, `exchangeTime`,
//! `exchange`), `source` the vendor's key (top level of the object), `scale` an optional factor
//! applied to a number (`ltp=price_paise*0.01`, `exchangeTime=ts_s*1000`). Times are epoch ms
//! after scaling. `token` and `ltp` are required in the mapping and in every tick object; a
//! number may also arrive as a numeric string (`"1573.70"`); the token may be a string or an
//! integer. An object holding none of the mapped keys is a control message (subscribe ack,
//! status) and becomes a [`FeedEvent::Text`]; any other object missing `token` or `ltp`, or with
//! a mapped value of the wrong type, is a typed reject with the frame's bytes.
//!
//! The exchange of a tick is the mapped `exchange` value when present (`NSE`, `NFO`, ...), else
//! the mapping's default (`JSON_FEED_EXCHANGE`). The process holds one installed mapping
//! ([`install`]); [`parse_frame`] uses it, [`parse_frame_with`] takes one explicitly.

use std::{
    borrow::Cow,
    fmt,
    sync::{Arc, RwLock},
};

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{FeedEvent, FrameMeta, FrameOutcome, ParseError, TextKind, TickSink};
use crate::{
    tick::{Exchange, Fields, Mode, Tick, Token},
    vendor::Vendor,
};

/// Largest frame accepted; larger ones are rejected whole.
pub const MAX_FRAME_LEN: usize = 1 << 20;

/// A tick field a vendor key can be mapped to (names as in the tick JSON).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum JsonField {
    /// `token`: the vendor's instrument symbol (string or integer).
    Token,
    /// `ltp`.
    Ltp,
    /// `ltq`.
    Ltq,
    /// `atp`.
    Atp,
    /// `volume`.
    Volume,
    /// `totalBuyQty`.
    TotalBuyQty,
    /// `totalSellQty`.
    TotalSellQty,
    /// `open`.
    Open,
    /// `high`.
    High,
    /// `low`.
    Low,
    /// `close` (previous close).
    Close,
    /// `oi`.
    Oi,
    /// `lastTradeTime`, epoch ms after scaling.
    LastTradeTime,
    /// `exchangeTime`, epoch ms after scaling.
    ExchangeTime,
    /// `exchange`: `NSE`, `NFO`, ... (string).
    Exchange,
}

impl JsonField {
    /// Every field, for parsing the mapping.
    pub const ALL: [JsonField; 15] = [
        JsonField::Token,
        JsonField::Ltp,
        JsonField::Ltq,
        JsonField::Atp,
        JsonField::Volume,
        JsonField::TotalBuyQty,
        JsonField::TotalSellQty,
        JsonField::Open,
        JsonField::High,
        JsonField::Low,
        JsonField::Close,
        JsonField::Oi,
        JsonField::LastTradeTime,
        JsonField::ExchangeTime,
        JsonField::Exchange,
    ];

    /// The tick JSON name.
    pub const fn as_str(self) -> &'static str {
        match self {
            JsonField::Token => "token",
            JsonField::Ltp => "ltp",
            JsonField::Ltq => "ltq",
            JsonField::Atp => "atp",
            JsonField::Volume => "volume",
            JsonField::TotalBuyQty => "totalBuyQty",
            JsonField::TotalSellQty => "totalSellQty",
            JsonField::Open => "open",
            JsonField::High => "high",
            JsonField::Low => "low",
            JsonField::Close => "close",
            JsonField::Oi => "oi",
            JsonField::LastTradeTime => "lastTradeTime",
            JsonField::ExchangeTime => "exchangeTime",
            JsonField::Exchange => "exchange",
        }
    }

    const fn bit(self) -> u32 {
        1 << (self as u32)
    }
}

impl fmt::Display for JsonField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exchange for its upper-case name (`NSE`, `NFO`, ...), as [`Exchange::as_str`] writes it.
pub fn exchange_from_name(name: &str) -> Option<Exchange> {
    Exchange::ALL
        .into_iter()
        .find(|e| e.as_str().eq_ignore_ascii_case(name.trim()))
}

/// One `target=source[*scale]` entry.
#[derive(Debug, Clone, PartialEq)]
struct FieldMap {
    target: JsonField,
    source: Box<str>,
    scale: f64,
    /// `1 / scale` when that is a whole number (`*0.01` divides by 100, which is exact where
    /// multiplying by 0.01 is not).
    divisor: Option<f64>,
}

impl FieldMap {
    fn apply(&self, x: f64) -> f64 {
        match self.divisor {
            Some(d) => x / d,
            None => x * self.scale,
        }
    }

    fn invert(&self, x: f64) -> f64 {
        match self.divisor {
            // Trim float noise (1899.55 * 100 = 189955.00000000003): the vendor sends paise.
            Some(d) => ((x * d) * 1e6).round() / 1e6,
            None => x / self.scale,
        }
    }
}

/// Why a `JSON_FEED_MAP` value is not a valid mapping.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// An entry is not `target=source[*scale]`.
    #[error("mapping entry `{0}` is not target=source[*scale]")]
    Syntax(String),
    /// A target that is not a tick field.
    #[error("unknown tick field `{0}` in the mapping")]
    UnknownTarget(String),
    /// A target mapped twice.
    #[error("tick field `{0}` mapped twice")]
    Duplicate(JsonField),
    /// `token` or `ltp` is not mapped.
    #[error("the mapping must map `{0}`")]
    Required(JsonField),
    /// The default exchange is not a known exchange name.
    #[error("unknown exchange `{0}`")]
    Exchange(String),
}

impl MappingError {
    /// A stable code for logs.
    pub const fn code(&self) -> &'static str {
        match self {
            MappingError::Syntax(_) => "JSON_MAP_SYNTAX",
            MappingError::UnknownTarget(_) => "JSON_MAP_UNKNOWN_TARGET",
            MappingError::Duplicate(_) => "JSON_MAP_DUPLICATE",
            MappingError::Required(_) => "JSON_MAP_REQUIRED",
            MappingError::Exchange(_) => "JSON_MAP_EXCHANGE",
        }
    }
}

/// The field mapping of a JSON feed (`JSON_FEED_MAP`, `JSON_FEED_EXCHANGE`).
#[derive(Debug, Clone, PartialEq)]
pub struct JsonMapping {
    fields: Vec<FieldMap>,
    exchange: Exchange,
}

impl JsonMapping {
    /// Parses `target=source[*scale],...` with `exchange` (e.g. `NSE`) as the default exchange.
    ///
    /// # Errors
    /// [`MappingError`] naming the bad entry.
    pub fn parse(spec: &str, exchange: &str) -> Result<JsonMapping, MappingError> {
        let exchange =
            exchange_from_name(exchange).ok_or_else(|| MappingError::Exchange(exchange.into()))?;
        let mut fields: Vec<FieldMap> = Vec::new();
        for entry in spec.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (t, s) = entry
                .split_once('=')
                .ok_or_else(|| MappingError::Syntax(entry.into()))?;
            let target = JsonField::ALL
                .into_iter()
                .find(|f| f.as_str().eq_ignore_ascii_case(t.trim()))
                .ok_or_else(|| MappingError::UnknownTarget(t.trim().into()))?;
            let (source, scale) = match s.rsplit_once('*') {
                Some((src, k)) => (
                    src.trim(),
                    k.trim()
                        .parse::<f64>()
                        .ok()
                        .filter(|k| k.is_finite() && *k != 0.0)
                        .ok_or_else(|| MappingError::Syntax(entry.into()))?,
                ),
                None => (s.trim(), 1.0),
            };
            if source.is_empty() {
                return Err(MappingError::Syntax(entry.into()));
            }
            if fields.iter().any(|f| f.target == target) {
                return Err(MappingError::Duplicate(target));
            }
            let inv = 1.0 / scale;
            let divisor =
                (scale.abs() < 1.0 && (inv - inv.round()).abs() < 1e-9).then(|| inv.round());
            fields.push(FieldMap {
                target,
                source: source.into(),
                scale,
                divisor,
            });
        }
        for req in [JsonField::Token, JsonField::Ltp] {
            if !fields.iter().any(|f| f.target == req) {
                return Err(MappingError::Required(req));
            }
        }
        Ok(JsonMapping { fields, exchange })
    }

    /// The vendor key mapped to `target`, if any.
    pub fn source_of(&self, target: JsonField) -> Option<&str> {
        self.fields
            .iter()
            .find(|f| f.target == target)
            .map(|f| &*f.source)
    }

    /// The default exchange.
    pub fn exchange(&self) -> Exchange {
        self.exchange
    }

    fn find(&self, key: &str) -> Option<&FieldMap> {
        self.fields.iter().find(|f| &*f.source == key)
    }
}

static INSTALLED: RwLock<Option<Arc<JsonMapping>>> = RwLock::new(None);

/// Installs the process's JSON feed mapping (the engine does at start-up; a test may replace it).
pub fn install(mapping: Arc<JsonMapping>) {
    match INSTALLED.write() {
        Ok(mut g) => *g = Some(mapping),
        Err(p) => *p.into_inner() = Some(mapping),
    }
}

/// The installed mapping, if any.
pub fn installed() -> Option<Arc<JsonMapping>> {
    match INSTALLED.read() {
        Ok(g) => g.clone(),
        Err(p) => p.into_inner().clone(),
    }
}

/// Parses one text frame with the installed mapping; without one, the frame is rejected
/// ([`ParseError::JsonNotConfigured`]).
pub fn parse_frame<S: TickSink + ?Sized>(
    frame: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
) -> FrameOutcome {
    match installed() {
        Some(m) => parse_frame_with(&m, frame, meta, sink),
        None => {
            sink.reject(&ParseError::JsonNotConfigured, frame);
            FrameOutcome {
                rejects: 1,
                ..FrameOutcome::default()
            }
        }
    }
}

/// Parses one text frame (an object or an array of objects) with `mapping`.
pub fn parse_frame_with<S: TickSink + ?Sized>(
    mapping: &JsonMapping,
    frame: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
) -> FrameOutcome {
    if let Some(refused) = super::refuse_oversized(frame, MAX_FRAME_LEN, sink) {
        return refused;
    }
    let mut out = FrameOutcome::default();
    let mut st = State {
        mapping,
        meta,
        frame,
        sink,
        out: &mut out,
    };
    let mut de = serde_json::Deserializer::from_slice(frame);
    let res = (&mut de)
        .deserialize_any(FrameVisitor { st: &mut st })
        .and_then(|()| de.end());
    if res.is_err() {
        st.sink.reject(&ParseError::JsonSyntax, frame);
        st.out.rejects += 1;
    }
    out
}

struct State<'a, 'f, S: TickSink + ?Sized> {
    mapping: &'a JsonMapping,
    meta: &'a FrameMeta,
    frame: &'f [u8],
    sink: &'a mut S,
    out: &'a mut FrameOutcome,
}

impl<S: TickSink + ?Sized> State<'_, '_, S> {
    fn deliver(&mut self, r: Result<Option<Tick>, ParseError>) {
        match r {
            Ok(Some(t)) => {
                self.sink.tick(&t);
                self.out.ticks += 1;
            }
            Ok(None) => {
                self.sink.event(&FeedEvent::Text {
                    vendor: Vendor::Json,
                    kind: TextKind::Message,
                    raw: self.frame,
                });
                self.out.events += 1;
            }
            Err(e) => {
                self.sink.reject(&e, self.frame);
                self.out.rejects += 1;
            }
        }
    }
}

struct FrameVisitor<'s, 'a, 'f, S: TickSink + ?Sized> {
    st: &'s mut State<'a, 'f, S>,
}

impl<'de, S: TickSink + ?Sized> Visitor<'de> for FrameVisitor<'_, '_, '_, S> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object or an array of objects")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
        let r = read_object(self.st.mapping, self.st.meta, map)?;
        self.st.deliver(r);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(r) = seq.next_element_seed(ObjectSeed {
            mapping: self.st.mapping,
            meta: self.st.meta,
        })? {
            self.st.deliver(r);
        }
        Ok(())
    }
}

struct ObjectSeed<'a> {
    mapping: &'a JsonMapping,
    meta: &'a FrameMeta,
}

impl<'de> DeserializeSeed<'de> for ObjectSeed<'_> {
    type Value = Result<Option<Tick>, ParseError>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(ObjectVisitor {
            mapping: self.mapping,
            meta: self.meta,
        })
    }
}

struct ObjectVisitor<'a> {
    mapping: &'a JsonMapping,
    meta: &'a FrameMeta,
}

impl<'de> Visitor<'de> for ObjectVisitor<'_> {
    type Value = Result<Option<Tick>, ParseError>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
        read_object(self.mapping, self.meta, map)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Err(ParseError::JsonNotObject))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Err(ParseError::JsonNotObject))
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Err(ParseError::JsonNotObject))
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Err(ParseError::JsonNotObject))
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Err(ParseError::JsonNotObject))
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
        Ok(Err(ParseError::JsonNotObject))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Err(ParseError::JsonNotObject))
    }
}

/// A scalar JSON value, borrowed from the frame where possible.
enum Scalar<'de> {
    Num(f64),
    Int(i128),
    Str(Cow<'de, str>),
    Other,
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Int(i128::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Int(i128::from(v)))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Num(v))
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar<'de>, E> {
                // Only an escaped string lands here: the one allocation of this parser.
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Scalar<'de>, E> {
                Ok(Scalar::Other)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Scalar<'de>, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<Scalar<'de>, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Other)
            }
        }
        d.deserialize_any(V)
    }
}

/// A key, borrowed unless escaped.
struct Key<'de>(Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Key<'de>, E> {
                Ok(Key(Cow::Owned(v.to_owned())))
            }
        }
        d.deserialize_str(V)
    }
}

fn number(v: &Scalar<'_>) -> Option<f64> {
    let x = match v {
        Scalar::Num(x) => *x,
        Scalar::Int(i) => *i as f64,
        Scalar::Str(s) => s.trim().parse::<f64>().ok()?,
        Scalar::Other => return None,
    };
    x.is_finite().then_some(x)
}

fn token_of(v: &Scalar<'_>) -> Option<Token> {
    match v {
        Scalar::Str(s) if !s.trim().is_empty() => Token::new(s.trim()).ok(),
        Scalar::Int(i) => {
            let mut buf = itoa::Buffer::new();
            Token::new(buf.format(*i)).ok()
        }
        _ => None,
    }
}

fn read_object<'de, A: MapAccess<'de>>(
    mapping: &JsonMapping,
    meta: &FrameMeta,
    mut map: A,
) -> Result<Result<Option<Tick>, ParseError>, A::Error> {
    let mut t = Tick::EMPTY;
    t.vendor = Vendor::Json;
    t.exchange = mapping.exchange;
    t.received_at_ns = meta.received_at_ns;
    t.conn_id = meta.conn_id;
    let mut seen = 0u32;
    let mut err: Option<ParseError> = None;
    while let Some(Key(k)) = map.next_key::<Key<'de>>()? {
        let Some(fm) = mapping.find(&k) else {
            map.next_value::<IgnoredAny>()?;
            continue;
        };
        let v: Scalar<'de> = map.next_value()?;
        if err.is_some() {
            continue;
        }
        seen |= fm.target.bit();
        let bad = ParseError::JsonBadField { field: fm.target };
        let ok = match fm.target {
            JsonField::Token => token_of(&v).map(|tok| t.token = tok).is_some(),
            JsonField::Exchange => match &v {
                Scalar::Str(s) => exchange_from_name(s).map(|e| t.exchange = e).is_some(),
                _ => false,
            },
            target => match number(&v) {
                Some(x) => {
                    set_number(&mut t, target, fm.apply(x));
                    true
                }
                None => false,
            },
        };
        if !ok {
            err = Some(bad);
        }
    }
    if seen == 0 && err.is_none() {
        // None of the mapped keys: a control message (ack, status), not a tick.
        return Ok(Ok(None));
    }
    if let Some(e) = err {
        return Ok(Err(e));
    }
    for req in [JsonField::Token, JsonField::Ltp] {
        if seen & req.bit() == 0 {
            return Ok(Err(ParseError::JsonMissingField { field: req }));
        }
    }
    t.mode = if t.fields.0
        & !(Fields::LTP.0 | Fields::LTQ.0 | Fields::LAST_TRADE_TIME.0 | Fields::EXCHANGE_TIME.0)
        != 0
    {
        Mode::Quote
    } else {
        Mode::Ltp
    };
    Ok(Ok(Some(t)))
}

fn set_number(t: &mut Tick, target: JsonField, x: f64) {
    let ms = || x.round() as i64;
    let (slot, flag): (&mut f64, Fields) = match target {
        JsonField::Ltp => (&mut t.ltp, Fields::LTP),
        JsonField::Ltq => (&mut t.ltq, Fields::LTQ),
        JsonField::Atp => (&mut t.atp, Fields::ATP),
        JsonField::Volume => (&mut t.volume, Fields::VOLUME),
        JsonField::TotalBuyQty => (&mut t.total_buy_qty, Fields::TOTAL_BUY_QTY),
        JsonField::TotalSellQty => (&mut t.total_sell_qty, Fields::TOTAL_SELL_QTY),
        JsonField::Open => (&mut t.open, Fields::OPEN),
        JsonField::High => (&mut t.high, Fields::HIGH),
        JsonField::Low => (&mut t.low, Fields::LOW),
        JsonField::Close => (&mut t.close, Fields::CLOSE),
        JsonField::Oi => (&mut t.oi, Fields::OI),
        JsonField::LastTradeTime => {
            t.last_trade_time_ms = ms();
            t.fields.insert(Fields::LAST_TRADE_TIME);
            return;
        }
        JsonField::ExchangeTime => {
            t.exchange_time_ms = ms();
            t.fields.insert(Fields::EXCHANGE_TIME);
            return;
        }
        JsonField::Token | JsonField::Exchange => return,
    };
    *slot = x;
    t.fields.insert(flag);
}

/// Encodes `tick` as one vendor object under `mapping` (the inverse of the parser, for the
/// simulator and tests): every mapped field is written under its source key, divided by its
/// scale; `token` as a string.
pub fn encode_object(mapping: &JsonMapping, tick: &Tick) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for f in &mapping.fields {
        let num = |x: f64| serde_json::json!(f.invert(x));
        let v = match f.target {
            JsonField::Token => serde_json::Value::String(tick.token.as_str().to_owned()),
            JsonField::Exchange => serde_json::Value::String(tick.exchange.as_str().to_owned()),
            JsonField::Ltp => num(tick.ltp),
            JsonField::Ltq => num(tick.ltq),
            JsonField::Atp => num(tick.atp),
            JsonField::Volume => num(tick.volume),
            JsonField::TotalBuyQty => num(tick.total_buy_qty),
            JsonField::TotalSellQty => num(tick.total_sell_qty),
            JsonField::Open => num(tick.open),
            JsonField::High => num(tick.high),
            JsonField::Low => num(tick.low),
            JsonField::Close => num(tick.close),
            JsonField::Oi => num(tick.oi),
            JsonField::LastTradeTime => num(tick.last_trade_time_ms as f64),
            JsonField::ExchangeTime => num(tick.exchange_time_ms as f64),
        };
        m.insert(f.source.to_string(), v);
    }
    serde_json::Value::Object(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        ticks: Vec<Tick>,
        rejects: Vec<ParseError>,
        events: usize,
    }

    impl TickSink for Collect {
        fn tick(&mut self, t: &Tick) {
            self.ticks.push(*t);
        }
        fn reject(&mut self, e: &ParseError, _raw: &[u8]) {
            self.rejects.push(*e);
        }
        fn event(&mut self, _e: &FeedEvent<'_>) {
            self.events += 1;
        }
    }

    const MAP: &str = "token=symbol,ltp=last_price,volume=vol,exchangeTime=ts_ms,close=prev_close_paise*0.01,lastTradeTime=ltt_s*1000";

    fn collect(m: &JsonMapping, frame: &str) -> Collect {
        let mut c = Collect::default();
        parse_frame_with(
            m,
            frame.as_bytes(),
            &FrameMeta {
                received_at_ns: 7,
                conn_id: 3,
            },
            &mut c,
        );
        c
    }

    #[test]
    fn maps_fields_with_scales_for_an_object_and_an_array() {
        let m = JsonMapping::parse(MAP, "NSE").unwrap();
        let c = collect(
            &m,
            r#"{"symbol":"INFY","last_price":1573.7,"vol":"2000","ts_ms":1732700000123,"prev_close_paise":156780,"ltt_s":1732700000,"extra":{"x":[1,2]}}"#,
        );
        assert!(c.rejects.is_empty(), "{:?}", c.rejects);
        let t = c.ticks[0];
        assert_eq!(t.token.as_str(), "INFY");
        assert_eq!((t.ltp, t.volume, t.close), (1573.7, 2000.0, 1567.8));
        assert_eq!(t.exchange_time_ms, 1_732_700_000_123);
        assert_eq!(t.last_trade_time_ms, 1_732_700_000_000);
        assert_eq!(
            (t.vendor, t.exchange, t.mode),
            (Vendor::Json, Exchange::Nse, Mode::Quote)
        );
        assert_eq!((t.received_at_ns, t.conn_id), (7, 3));
        assert!(t.has(Fields::CLOSE) && !t.has(Fields::OI));
        let c = collect(
            &m,
            r#"[{"symbol":"INFY","last_price":1},{"symbol":12,"last_price":"2.5"},{"type":"ack"}]"#,
        );
        assert_eq!(c.ticks.len(), 2);
        assert_eq!(c.ticks[1].token.as_str(), "12");
        assert_eq!(c.ticks[1].mode, Mode::Ltp);
        assert_eq!(
            c.events, 1,
            "an object with no mapped key is a control message"
        );
    }

    #[test]
    fn missing_and_mistyped_fields_are_typed_rejects() {
        let m = JsonMapping::parse(MAP, "NSE").unwrap();
        let c = collect(
            &m,
            r#"[{"symbol":"INFY"},{"last_price":1},{"symbol":"INFY","last_price":"abc"},{"symbol":true,"last_price":1},5,{"symbol":"A\"B","last_price":1}]"#,
        );
        assert_eq!(
            c.rejects,
            vec![
                ParseError::JsonMissingField {
                    field: JsonField::Ltp
                },
                ParseError::JsonMissingField {
                    field: JsonField::Token
                },
                ParseError::JsonBadField {
                    field: JsonField::Ltp
                },
                ParseError::JsonBadField {
                    field: JsonField::Token
                },
                ParseError::JsonNotObject,
            ]
        );
        assert_eq!(c.ticks.len(), 1, "an escaped string still parses");
        assert_eq!(c.ticks[0].token.as_str(), "A\"B");
        assert_eq!(
            collect(&m, "{not json").rejects,
            vec![ParseError::JsonSyntax]
        );
        assert_eq!(collect(&m, "{} x").rejects, vec![ParseError::JsonSyntax]);
        let big = "x".repeat(MAX_FRAME_LEN + 1);
        assert!(matches!(
            collect(&m, &big).rejects[0],
            ParseError::FrameTooLarge { .. }
        ));
    }

    #[test]
    fn mapping_errors_and_encoder_round_trip() {
        assert_eq!(
            JsonMapping::parse("ltp=a", "NSE"),
            Err(MappingError::Required(JsonField::Token))
        );
        assert!(matches!(
            JsonMapping::parse("token=a,ltp=b,bogus=c", "NSE"),
            Err(MappingError::UnknownTarget(_))
        ));
        assert!(matches!(
            JsonMapping::parse("token=a,ltp=b*x", "NSE"),
            Err(MappingError::Syntax(_))
        ));
        assert!(matches!(
            JsonMapping::parse("token=a,ltp=b,ltp=c", "NSE"),
            Err(MappingError::Duplicate(_))
        ));
        assert!(matches!(
            JsonMapping::parse("token=a,ltp=b", "XX"),
            Err(MappingError::Exchange(_))
        ));
        let m = JsonMapping::parse(&format!("{MAP},exchange=seg"), "NSE").unwrap();
        let mut t = Tick::EMPTY;
        t.token = Token::new("BANKNIFTY25DECFUT").unwrap();
        t.exchange = Exchange::Nfo;
        t.ltp = 51_000.05;
        t.volume = 10.0;
        t.close = 50_990.5;
        t.exchange_time_ms = 1_732_700_000_500;
        t.last_trade_time_ms = 1_732_700_000_000;
        let frame = serde_json::Value::Array(vec![encode_object(&m, &t)]).to_string();
        let got = collect(&m, &frame).ticks[0];
        assert_eq!(got.exchange, Exchange::Nfo);
        assert_eq!((got.ltp, got.close, got.volume), (t.ltp, t.close, t.volume));
        assert_eq!(got.exchange_time_ms, t.exchange_time_ms);
        assert_eq!(got.last_trade_time_ms, t.last_trade_time_ms);
    }

    /// The worked example of `docs/json-feed.md`: the config lines, the vendor message and the
    /// resulting tick JSON there are exactly what this produces.
    #[test]
    fn docs_worked_example() {
        let m = JsonMapping::parse(
            "token=symbol,ltp=last_price,ltq=last_qty,volume=vol,close=prev_close_paise*0.01,exchangeTime=ts_ms,lastTradeTime=ltt_s*1000",
            "NSE",
        )
        .unwrap();
        let msg = r#"[{"symbol":"INFY","last_price":1573.7,"last_qty":25,"vol":2000000,"prev_close_paise":156780,"ts_ms":1732700000123,"ltt_s":1732700000,"seq":991}]"#;
        let mut c = Collect::default();
        parse_frame_with(
            &m,
            msg.as_bytes(),
            &FrameMeta {
                received_at_ns: 1_732_700_000_150_000_000,
                conn_id: 0,
            },
            &mut c,
        );
        let mut out = Vec::new();
        crate::encode::encode_json(&c.ticks[0], Some("NSE:INFY"), &mut out);
        let json = String::from_utf8(out).unwrap();
        let doc = include_str!("../../docs/json-feed.md");
        assert!(
            doc.contains(msg),
            "docs/json-feed.md lacks the vendor message"
        );
        assert!(
            doc.contains(&json),
            "docs/json-feed.md lacks the tick:\n{json}"
        );
    }

    #[test]
    fn randomized_mutations_never_panic_and_always_account() {
        let m = JsonMapping::parse(MAP, "NSE").unwrap();
        let base = br#"[{"symbol":"INFY","last_price":1573.7,"vol":"2000","ts_ms":1732700000123,"prev_close_paise":156780},{"type":"ack"},{"symbol":"A\u0042","last_price":1}]"#;
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..5000 {
            let mut f = base.to_vec();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % f.len();
                match next() % 3 {
                    0 => f[i] = (next() & 0xff) as u8,
                    1 => {
                        f.remove(i);
                    }
                    _ => f.truncate(i),
                }
                if f.is_empty() {
                    break;
                }
            }
            let mut c = Collect::default();
            let o = parse_frame_with(&m, &f, &FrameMeta::default(), &mut c);
            assert_eq!(o.ticks as usize, c.ticks.len());
            assert_eq!(o.rejects as usize, c.rejects.len());
            assert!(
                o.ticks + o.rejects + o.events >= 1,
                "{:?}",
                String::from_utf8_lossy(&f)
            );
        }
    }
}
