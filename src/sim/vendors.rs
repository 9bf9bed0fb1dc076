//! The simulator's Angel One and Dhan protocols, and the instrument lists it serves.
//!
//! The simulator's market keys instruments as `SEGMENT|ID` in Upstox's segment names (the market
//! derives the exchange from them); Angel's `(exchangeType, token)` and Dhan's
//! `(ExchangeSegment, SecurityId)` map onto those keys and back, so one market serves all four
//! vendors. Angel packets go one per frame (as the vendor sends them); Dhan packets are packed
//! several to a frame, which exercises the parser's length walk.

use crate::{
    parsers::{
        angel::{self, AngelMode},
        dhan,
    },
    tick::{Mode, Tick},
    vendor::Vendor,
};

const ANGEL_SEGMENTS: [(u8, &str); 6] = [
    (1, "NSE_EQ"),
    (2, "NSE_FO"),
    (3, "BSE_EQ"),
    (4, "BSE_FO"),
    (5, "MCX_FO"),
    (13, "NCD_FO"),
];

const DHAN_SEGMENTS: [(&str, &str); 8] = [
    ("IDX_I", "NSE_INDEX"),
    ("NSE_EQ", "NSE_EQ"),
    ("NSE_FNO", "NSE_FO"),
    ("NSE_CURRENCY", "NCD_FO"),
    ("BSE_EQ", "BSE_EQ"),
    ("MCX_COMM", "MCX_FO"),
    ("BSE_CURRENCY", "BCD_FO"),
    ("BSE_FNO", "BSE_FO"),
];

/// A parsed Angel or Dhan request: action, mode name, and (vendor key, market key) pairs.
pub(crate) struct Request {
    pub(crate) action: String,
    pub(crate) mode: Option<String>,
    pub(crate) mode_value: Mode,
    pub(crate) keys: Vec<(String, String)>,
}

/// Parses an Angel request (`action` 1/0, `params.mode`, `params.tokenList`).
pub(crate) fn angel_request(v: &serde_json::Value) -> Option<Request> {
    let action = match v.get("action")?.as_u64()? {
        1 => "subscribe",
        0 => "unsubscribe",
        _ => return None,
    };
    let params = v.get("params")?;
    let mode = params
        .get("mode")
        .and_then(serde_json::Value::as_u64)
        .unwrap_or(1);
    let am = AngelMode::from_code(u8::try_from(mode).ok()?)?;
    let mut keys = Vec::new();
    for g in params.get("tokenList")?.as_array()? {
        let et = g
            .get("exchangeType")
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let Some(seg) = ANGEL_SEGMENTS
            .iter()
            .find(|(c, _)| u64::from(*c) == et)
            .map(|(_, s)| *s)
        else {
            continue;
        };
        for t in g
            .get("tokens")
            .and_then(|t| t.as_array())
            .into_iter()
            .flatten()
        {
            if let Some(t) = t.as_str() {
                keys.push((format!("{et}|{t}"), format!("{seg}|{t}")));
            }
        }
    }
    Some(Request {
        action: action.to_owned(),
        mode: Some(mode.to_string()),
        mode_value: am.tick_mode(),
        keys,
    })
}

/// Parses a Dhan request (`RequestCode`, `InstrumentList`).
pub(crate) fn dhan_request(v: &serde_json::Value) -> Option<Request> {
    let code = v.get("RequestCode")?.as_u64()?;
    let (action, mode) = match code {
        15 => ("subscribe", Mode::Ltp),
        16 => ("unsubscribe", Mode::Ltp),
        17 => ("subscribe", Mode::Quote),
        18 => ("unsubscribe", Mode::Quote),
        21 => ("subscribe", Mode::Full),
        22 => ("unsubscribe", Mode::Full),
        _ => return None,
    };
    let mut keys = Vec::new();
    for i in v.get("InstrumentList")?.as_array()? {
        let seg = i
            .get("ExchangeSegment")
            .and_then(|s| s.as_str())
            .unwrap_or("");
        let id = i.get("SecurityId").and_then(|s| s.as_str()).unwrap_or("");
        if let Some((_, m)) = DHAN_SEGMENTS.iter().find(|(d, _)| *d == seg) {
            if !id.is_empty() {
                keys.push((format!("{seg}|{id}"), format!("{m}|{id}")));
            }
        }
    }
    Some(Request {
        action: action.to_owned(),
        mode: Some(code.to_string()),
        mode_value: mode,
        keys,
    })
}

/// Appends the vendor packet of market tick `t` (market key in `t.token`) in `mode`.
pub(crate) fn encode(vendor: Vendor, t: &Tick, mode: Mode, seq: i64, out: &mut Vec<u8>) {
    let Some((seg, id)) = t.token.as_str().split_once('|') else {
        return;
    };
    match vendor {
        Vendor::Angel => {
            let Some(et) = ANGEL_SEGMENTS
                .iter()
                .find(|(_, s)| *s == seg)
                .map(|(c, _)| *c)
            else {
                return;
            };
            angel::encode_packet(t, AngelMode::for_mode(mode), et, id, seq, out);
        }
        Vendor::Dhan => {
            let Some(code) = DHAN_SEGMENTS
                .iter()
                .find(|(_, m)| *m == seg)
                .and_then(|(d, _)| dhan::segment_code(d))
            else {
                return;
            };
            let Ok(sid) = id.parse::<u32>() else { return };
            let c = match mode {
                Mode::Ltp => dhan::code::TICKER,
                Mode::Quote => dhan::code::QUOTE,
                Mode::Full | Mode::Greeks => dhan::code::FULL,
            };
            dhan::encode_packet(t, c, code, sid, out);
        }
        _ => {}
    }
}

/// A Dhan disconnect packet with `reason`.
pub(crate) fn dhan_disconnect(reason: u16) -> Vec<u8> {
    let mut b = Vec::new();
    dhan::encode_packet(
        &Tick::EMPTY,
        dhan::code::DISCONNECT,
        1,
        u32::from(reason),
        &mut b,
    );
    b
}

/// The simulator's instrument catalogue: canonical symbol, Kite token, Upstox key, Angel
/// exchange type and token, Dhan segment and security id, tick size.
pub const CATALOG: &[(&str, u32, &str, u8, &str, &str, &str)] = &[
    (
        "NSE:INFY",
        408_065,
        "NSE_EQ|INE009A01021",
        1,
        "1594",
        "NSE_EQ",
        "1594",
    ),
    (
        "NSE:SBIN",
        779_521,
        "NSE_EQ|INE062A01020",
        1,
        "3045",
        "NSE_EQ",
        "3045",
    ),
    (
        "NSE:RELIANCE",
        738_561,
        "NSE_EQ|INE002A01018",
        1,
        "2885",
        "NSE_EQ",
        "2885",
    ),
    (
        "NSE:TCS",
        2_953_217,
        "NSE_EQ|INE467B01029",
        1,
        "11536",
        "NSE_EQ",
        "11536",
    ),
    (
        "NSE:NIFTY 50",
        256_265,
        "NSE_INDEX|Nifty 50",
        1,
        "99926000",
        "IDX_I",
        "13",
    ),
    (
        "NFO:BANKNIFTY25DECFUT",
        13_357_058,
        "NSE_FO|52175",
        2,
        "52175",
        "NSE_FNO",
        "52175",
    ),
];

fn csv_quote(s: &str) -> String {
    if s.contains(',') || s.contains('"') {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// The instrument list of `vendor` in its own format, for `GET /instruments/<vendor>`.
pub fn instrument_list(vendor: Vendor) -> Option<String> {
    let split = |sym: &'static str| sym.split_once(':').unwrap_or(("", sym));
    Some(match vendor {
        Vendor::Kite => {
            let mut s = String::from("instrument_token,exchange_token,tradingsymbol,name,last_price,expiry,strike,tick_size,lot_size,instrument_type,segment,exchange\n");
            for (sym, tok, ..) in CATALOG {
                let (ex, ts) = split(sym);
                let seg = if tok & 0xff == 9 { "INDICES" } else { ex };
                s.push_str(&format!(
                    "{tok},{},{},{},0.0,,0.0,0.05,1,EQ,{seg},{ex}\n",
                    tok >> 8,
                    csv_quote(ts),
                    csv_quote(ts)
                ));
            }
            s
        }
        Vendor::Upstox => {
            let v: Vec<serde_json::Value> = CATALOG
                .iter()
                .map(|(sym, _, key, ..)| {
                    let (_, ts) = split(sym);
                    let seg = key.split_once('|').map_or("", |p| p.0);
                    // Upstox names indices in mixed case (`Nifty 50`).
                    let name = key.split_once('|').map_or(ts, |p| p.1);
                    serde_json::json!({"segment": seg, "instrument_key": key, "trading_symbol": ts, "name": if seg.ends_with("_INDEX") { name } else { ts }})
                })
                .collect();
            serde_json::Value::Array(v).to_string()
        }
        Vendor::Angel => {
            let v: Vec<serde_json::Value> = CATALOG
                .iter()
                .map(|(sym, _, _, et, tok, ..)| {
                    let (ex, ts) = split(sym);
                    let index = *tok == "99926000";
                    let symbol = if ex == "NSE" && *et == 1 && !index {
                        format!("{ts}-EQ")
                    } else {
                        ts.to_owned()
                    };
                    serde_json::json!({"token": tok, "symbol": symbol, "name": ts, "exch_seg": ex,
                        "instrumenttype": if index { "AMXIDX" } else { "" }, "tick_size": "5.000000"})
                })
                .collect();
            serde_json::Value::Array(v).to_string()
        }
        Vendor::Dhan => {
            let mut s = String::from("SEM_EXM_EXCH_ID,SEM_SEGMENT,SEM_SMST_SECURITY_ID,SEM_INSTRUMENT_NAME,SEM_TRADING_SYMBOL,SEM_TICK_SIZE,SM_SYMBOL_NAME\n");
            for (sym, _, _, _, _, seg, id) in CATALOG {
                let (_, ts) = split(sym);
                let (ex, sg) = match *seg {
                    "IDX_I" => ("NSE", "I"),
                    "NSE_FNO" => ("NSE", "D"),
                    _ => ("NSE", "E"),
                };
                s.push_str(&format!(
                    "{ex},{sg},{id},X,{},0.05,{}\n",
                    csv_quote(ts),
                    csv_quote(ts)
                ));
            }
            s
        }
        Vendor::Json => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::instruments::formats;

    #[test]
    fn served_lists_resolve_every_catalog_symbol_on_every_vendor() {
        for v in [Vendor::Kite, Vendor::Upstox, Vendor::Angel, Vendor::Dhan] {
            let list = instrument_list(v).unwrap();
            let m = formats::parse(v, list.as_bytes()).unwrap();
            for (sym, tok, key, et, atok, seg, id) in CATALOG {
                let want = match v {
                    Vendor::Kite => tok.to_string(),
                    Vendor::Upstox => (*key).to_owned(),
                    Vendor::Angel => format!("{et}|{atok}"),
                    _ => format!("{seg}|{id}"),
                };
                assert_eq!(
                    m.resolve(sym).map(|r| r.key.to_string()),
                    Some(want),
                    "{v} {sym}"
                );
            }
        }
    }
}
