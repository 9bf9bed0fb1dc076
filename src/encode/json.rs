//! The camelCase JSON form of a [`Tick`] (documented in `docs/tick-schema.md`).
//!
//! Written by hand into a caller-reused `Vec<u8>` with `itoa` and `ryu`, so encoding allocates
//! nothing once the buffer has grown to a tick's size (serde_json would need a `Serialize` view
//! and still format floats through `fmt`). Fields the tick does not carry are left out; a carried
//! time of 0 is `null`; Upstox depth has `"orders":null`.

use crate::tick::{Fields, Level, Tick};

/// Appends `s` as a JSON string literal.
fn string(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    escaped(out, s);
    out.push(b'"');
}

/// Appends `s` escaped for the inside of a JSON string.
fn escaped(out: &mut Vec<u8>, s: &str) {
    for &b in s.as_bytes() {
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x00..=0x1f => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX.get(usize::from(b >> 4)).copied().unwrap_or(b'0'));
                out.push(HEX.get(usize::from(b & 0xf)).copied().unwrap_or(b'0'));
            }
            _ => out.push(b),
        }
    }
}

/// A price or ratio: shortest round-trip decimal; an integral value without `.0`; non-finite
/// values (which the validator rejects before this point) as `null`, never invalid JSON.
fn number(out: &mut Vec<u8>, v: f64) {
    if !v.is_finite() {
        out.extend_from_slice(b"null");
        return;
    }
    let mut buf = ryu::Buffer::new();
    let s = buf.format_finite(v);
    out.extend_from_slice(s.strip_suffix(".0").unwrap_or(s).as_bytes());
}

/// A quantity: an integer when it is one (the validator ensures that), else as [`number`].
fn quantity(out: &mut Vec<u8>, v: f64) {
    // Integral and within 2^53: exact as i64 (one SSE2 conversion each way, unlike `fract`).
    if v.abs() < 9_007_199_254_740_992.0 && (v as i64) as f64 == v {
        let mut buf = itoa::Buffer::new();
        out.extend_from_slice(buf.format(v as i64).as_bytes());
    } else {
        number(out, v);
    }
}

fn int(out: &mut Vec<u8>, v: i64) {
    let mut buf = itoa::Buffer::new();
    out.extend_from_slice(buf.format(v).as_bytes());
}

/// Epoch ms, or `null` for 0 (the vendor sent 0).
fn time(out: &mut Vec<u8>, ms: i64) {
    if ms == 0 {
        out.extend_from_slice(b"null");
    } else {
        int(out, ms);
    }
}

fn key(out: &mut Vec<u8>, name: &str) {
    out.extend_from_slice(b",\"");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\":");
}

fn levels(out: &mut Vec<u8>, levels: &[Level], orders: bool) {
    out.push(b'[');
    for (i, l) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"{\"price\":");
        number(out, l.price);
        out.extend_from_slice(b",\"qty\":");
        quantity(out, l.qty);
        out.extend_from_slice(b",\"orders\":");
        if orders {
            int(out, i64::from(l.orders));
        } else {
            out.extend_from_slice(b"null");
        }
        out.push(b'}');
    }
    out.push(b']');
}

/// Appends `tick` as one JSON object (no trailing newline) to `out`.
///
/// `instrument` is the canonical `EXCHANGE:SYMBOL` from the instrument master; `None` writes
/// `<vendor>:<token>` instead.
pub fn encode_json(tick: &Tick, instrument: Option<&str>, out: &mut Vec<u8>) {
    let f = tick.fields;
    out.extend_from_slice(b"{\"vendor\":");
    string(out, tick.vendor.as_str());
    key(out, "token");
    string(out, tick.token.as_str());
    key(out, "exchange");
    string(out, tick.exchange.as_str());
    key(out, "mode");
    string(out, tick.mode.as_str());
    key(out, "instrument");
    match instrument {
        Some(name) => string(out, name),
        None => {
            // `<vendor>:<token>`; vendor names need no escaping.
            out.push(b'"');
            out.extend_from_slice(tick.vendor.as_str().as_bytes());
            out.push(b':');
            escaped(out, tick.token.as_str());
            out.push(b'"');
        }
    }
    let prices = [
        (Fields::LTP, "ltp", tick.ltp),
        (Fields::LTQ, "ltq", tick.ltq),
        (Fields::ATP, "atp", tick.atp),
        (Fields::VOLUME, "volume", tick.volume),
        (Fields::TOTAL_BUY_QTY, "totalBuyQty", tick.total_buy_qty),
        (Fields::TOTAL_SELL_QTY, "totalSellQty", tick.total_sell_qty),
        (Fields::OPEN, "open", tick.open),
        (Fields::HIGH, "high", tick.high),
        (Fields::LOW, "low", tick.low),
        (Fields::CLOSE, "close", tick.close),
    ];
    for (bit, name, v) in prices {
        if f.has(bit) {
            key(out, name);
            match name {
                "ltq" | "volume" | "totalBuyQty" | "totalSellQty" => quantity(out, v),
                _ => number(out, v),
            }
        }
    }
    if let Some(change) = tick.change_percent() {
        key(out, "change");
        number(out, change);
    }
    for (bit, name, v) in [
        (Fields::OI, "oi", tick.oi),
        (Fields::OI_DAY_HIGH, "oiDayHigh", tick.oi_day_high),
        (Fields::OI_DAY_LOW, "oiDayLow", tick.oi_day_low),
    ] {
        if f.has(bit) {
            key(out, name);
            quantity(out, v);
        }
    }
    if f.has(Fields::IV) {
        key(out, "iv");
        number(out, tick.iv);
    }
    if f.has(Fields::GREEKS) {
        let g = &tick.greeks;
        key(out, "greeks");
        out.extend_from_slice(b"{\"delta\":");
        number(out, g.delta);
        out.extend_from_slice(b",\"theta\":");
        number(out, g.theta);
        out.extend_from_slice(b",\"gamma\":");
        number(out, g.gamma);
        out.extend_from_slice(b",\"vega\":");
        number(out, g.vega);
        out.extend_from_slice(b",\"rho\":");
        number(out, g.rho);
        out.push(b'}');
    }
    if f.has(Fields::LAST_TRADE_TIME) {
        key(out, "lastTradeTime");
        time(out, tick.last_trade_time_ms);
    }
    if f.has(Fields::EXCHANGE_TIME) {
        key(out, "exchangeTime");
        time(out, tick.exchange_time_ms);
    }
    if f.has(Fields::DEPTH) {
        let orders = f.has(Fields::DEPTH_ORDERS);
        key(out, "depth");
        out.extend_from_slice(b"{\"bids\":");
        levels(out, tick.depth.bids(), orders);
        out.extend_from_slice(b",\"asks\":");
        levels(out, tick.depth.asks(), orders);
        out.push(b'}');
    }
    key(out, "receivedAt");
    int(
        out,
        i64::try_from(tick.received_at_ns / 1_000_000).unwrap_or(i64::MAX),
    );
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        parsers::{kite, upstox, FrameMeta, ParseError, TickSink},
        tick::{Mode, Token},
        vendor::Vendor,
    };
    use serde_json::Value;

    fn json(t: &Tick, name: Option<&str>) -> Value {
        let mut out = Vec::new();
        encode_json(t, name, &mut out);
        serde_json::from_slice(&out)
            .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out)))
    }

    #[test]
    fn real_kite_full_packet_matches_vendor_documented_values() {
        let pkt = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kite/real_full.bin"
        ))
        .unwrap();
        let vendor: Value = serde_json::from_slice(
            &std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/kite/real_full.json"
            ))
            .unwrap(),
        )
        .unwrap();
        let meta = FrameMeta {
            received_at_ns: 1_625_461_887_123_456_789,
            conn_id: 2,
        };
        let t = kite::decode_packet(&pkt, &meta).unwrap();
        let j = json(&t, None);
        assert_eq!(j["vendor"], "kite");
        assert_eq!(j["token"], "408065");
        assert_eq!(j["instrument"], "kite:408065");
        assert_eq!(j["exchange"], "NSE");
        assert_eq!(j["mode"], vendor["mode"]);
        assert_eq!(j["ltp"], vendor["last_price"]);
        assert_eq!(j["ltq"], vendor["last_quantity"]);
        assert_eq!(j["atp"], vendor["average_price"]);
        assert_eq!(j["volume"], vendor["volume"]);
        assert_eq!(j["totalBuyQty"], vendor["buy_quantity"]);
        assert_eq!(j["totalSellQty"], vendor["sell_quantity"]);
        for k in ["open", "high", "low", "close"] {
            assert_eq!(j[k].as_f64(), vendor["ohlc"][k].as_f64(), "{k}");
        }
        assert_eq!(j["oi"], vendor["oi"]);
        assert_eq!(j["oiDayHigh"], vendor["oi_day_high"]);
        assert_eq!(j["oiDayLow"], vendor["oi_day_low"]);
        // "2021-07-05T10:41:27+05:30" = 1625461887 s.
        assert_eq!(j["lastTradeTime"], 1_625_461_887_000i64);
        assert_eq!(j["exchangeTime"], 1_625_461_887_000i64);
        for (side, vside) in [("bids", "buy"), ("asks", "sell")] {
            let ours = j["depth"][side].as_array().unwrap();
            let theirs = vendor["depth"][vside].as_array().unwrap();
            assert_eq!(ours.len(), theirs.len());
            for (o, v) in ours.iter().zip(theirs) {
                assert_eq!(o["price"].as_f64(), v["price"].as_f64());
                assert_eq!(o["qty"], v["quantity"]);
                assert_eq!(o["orders"], v["orders"]);
            }
        }
        assert_eq!(j["receivedAt"], 1_625_461_887_123i64);
        assert!(j.get("iv").is_none() && j.get("greeks").is_none());
    }

    #[test]
    fn absent_fields_left_out_and_zero_times_null() {
        let mut t = Tick::EMPTY;
        t.vendor = Vendor::Kite;
        t.token = Token::from_u32(256265);
        t.mode = Mode::Ltp;
        t.fields = Fields::LTP | Fields::EXCHANGE_TIME;
        t.ltp = 24000.5;
        let j = json(&t, Some("NSE:NIFTY 50"));
        let obj = j.as_object().unwrap();
        let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "exchange",
                "exchangeTime",
                "instrument",
                "ltp",
                "mode",
                "receivedAt",
                "token",
                "vendor"
            ]
        );
        assert_eq!(j["exchangeTime"], Value::Null);
        assert_eq!(j["instrument"], "NSE:NIFTY 50");
    }

    #[test]
    fn escaping_and_upstox_depth_orders_null() {
        #[derive(Default)]
        struct One(Vec<Tick>);
        impl TickSink for One {
            fn tick(&mut self, t: &Tick) {
                self.0.push(*t);
            }
            fn reject(&mut self, e: &ParseError, _: &[u8]) {
                panic!("{e}");
            }
        }
        let mut t = Tick::EMPTY;
        t.vendor = Vendor::Upstox;
        t.token = Token::new("NSE_EQ|A\"B\\C\u{1}").unwrap();
        t.exchange = crate::tick::Exchange::Nse;
        t.mode = Mode::Full;
        t.fields = Fields::LTP | Fields::DEPTH | Fields::CLOSE;
        t.ltp = 10.0;
        t.close = 8.0;
        t.depth.bids[0].price = 9.95;
        t.depth.bids[0].qty = 3.0;
        t.depth.asks[0].price = 10.05;
        t.depth.bid_len = 1;
        t.depth.ask_len = 1;
        let mut frame = Vec::new();
        upstox::encode_feed_response(&[t], upstox::FeedType::LiveFeed, 0, &mut frame);
        let mut sink = One::default();
        upstox::parse_frame(&frame, &FrameMeta::default(), &mut sink);
        let j = json(&sink.0[0], None);
        assert_eq!(j["token"], "NSE_EQ|A\"B\\C\u{1}");
        assert_eq!(j["instrument"], "upstox:NSE_EQ|A\"B\\C\u{1}");
        assert_eq!(j["depth"]["bids"][0]["orders"], Value::Null);
        assert_eq!(j["depth"]["bids"][0]["price"], 9.95);
        assert_eq!(j["change"], 25.0);
        assert_eq!(j["ltp"], 10);
    }

    #[test]
    fn non_finite_never_breaks_json() {
        let mut t = Tick::EMPTY;
        t.token = Token::from_u32(1);
        t.fields = Fields::LTP | Fields::VOLUME;
        t.ltp = f64::NAN;
        t.volume = f64::INFINITY;
        let j = json(&t, None);
        assert_eq!(j["ltp"], Value::Null);
        assert_eq!(j["volume"], Value::Null);
    }
}
