//! The simulator's generic JSON feed: an "NSE data vendor" that sends JSON ticks.
//!
//! Protocol: header auth on the upgrade (`SimConfig::json_auth_header` =
//! `SimConfig::json_auth_value`, default `x-api-key: sim_json_key`); a text greeting
//! `{"type":"welcome"}`; requests `{"action":"subscribe"|"unsubscribe","symbols":["INFY",...]}`
//! answered with `{"type":"ack",...}`; ticks as text frames holding a JSON array of objects keyed
//! as [`SIM_JSON_MAP`] says (the close in paise, times in epoch ms). Symbols are the trading
//! symbols of the simulator's [`CATALOG`](super::vendors::CATALOG); the market keys them by their
//! Upstox key.

use super::vendors::{Request, CATALOG};
use crate::{
    parsers::json::{encode_object, JsonMapping},
    tick::{Mode, Tick},
};

/// The field mapping that reads the simulator's JSON feed (`JSON_FEED_MAP` for tests and demos).
pub const SIM_JSON_MAP: &str = "token=symbol,ltp=last_price,ltq=last_qty,volume=vol,open=o,high=h,low=l,close=prev_close_paise*0.01,exchangeTime=ts_ms";

/// The subscribe template the simulator understands.
pub const SIM_JSON_SUBSCRIBE: &str = r#"{"action":"subscribe","symbols":{symbols}}"#;

/// The unsubscribe template the simulator understands.
pub const SIM_JSON_UNSUBSCRIBE: &str = r#"{"action":"unsubscribe","symbols":{symbols}}"#;

/// The engine's `JSON_FEED_*` settings for a simulator JSON feed at `url` started with `cfg`:
/// URL, auth header and value, the subscribe/unsubscribe templates and the mapping it speaks.
pub fn engine_env(url: String, cfg: &super::SimConfig) -> Vec<(&'static str, String)> {
    vec![
        ("JSON_FEED_URL", url),
        ("JSON_FEED_AUTH_HEADER", cfg.json_auth_header.clone()),
        ("JSON_FEED_AUTH_VALUE", cfg.json_auth_value.clone()),
        ("JSON_FEED_SUBSCRIBE", SIM_JSON_SUBSCRIBE.to_owned()),
        ("JSON_FEED_UNSUBSCRIBE", SIM_JSON_UNSUBSCRIBE.to_owned()),
        ("JSON_FEED_MAP", SIM_JSON_MAP.to_owned()),
    ]
}

fn trading_symbol(canonical: &str) -> &str {
    canonical.split_once(':').map_or(canonical, |p| p.1)
}

/// The market key of a vendor symbol (`INFY` -> `NSE_EQ|INE009A01021`).
fn market_key(symbol: &str) -> Option<&'static str> {
    CATALOG
        .iter()
        .find(|c| trading_symbol(c.0) == symbol)
        .map(|c| c.2)
}

/// The vendor symbol of a market key.
fn symbol_of(market_key: &str) -> Option<&'static str> {
    CATALOG
        .iter()
        .find(|c| c.2 == market_key)
        .map(|c| trading_symbol(c.0))
}

/// Parses a JSON feed request; unknown symbols are skipped.
pub(crate) fn request(v: &serde_json::Value) -> Option<Request> {
    let action = match v.get("action")?.as_str()? {
        "subscribe" => "subscribe",
        "unsubscribe" => "unsubscribe",
        _ => return None,
    };
    let keys = v
        .get("symbols")?
        .as_array()?
        .iter()
        .filter_map(|s| s.as_str())
        .filter_map(|s| market_key(s).map(|k| (s.to_owned(), k.to_owned())))
        .collect();
    Some(Request {
        action: action.to_owned(),
        mode: None,
        mode_value: Mode::Quote,
        keys,
    })
}

/// The mapping the simulator writes with.
pub(crate) fn mapping() -> Option<JsonMapping> {
    JsonMapping::parse(SIM_JSON_MAP, "NSE").ok()
}

/// Appends one tick object (market key in `t.token`) to `out`.
pub(crate) fn encode(map: &JsonMapping, t: &Tick, out: &mut Vec<serde_json::Value>) {
    let Some(sym) = symbol_of(t.token.as_str()) else {
        return;
    };
    let mut vt = *t;
    let Ok(tok) = crate::tick::Token::new(sym) else {
        return;
    };
    vt.token = tok;
    out.push(encode_object(map, &vt));
}

/// One text frame: a JSON array of the objects of `ticks` (market ticks).
pub(crate) fn encode_frame(map: Option<&JsonMapping>, ticks: &[Tick]) -> String {
    let mut out = Vec::with_capacity(ticks.len());
    if let Some(m) = map {
        for t in ticks {
            encode(m, t, &mut out);
        }
    }
    serde_json::Value::Array(out).to_string()
}

/// A tick object whose price is not a number (the malformed fault).
pub(crate) const MALFORMED: &str = r#"[{"symbol":"INFY","last_price":"n/a","ts_ms":1}]"#;

/// A frame cut inside an object (the truncated fault).
pub(crate) const TRUNCATED: &str = r#"[{"symbol":"INFY","last_pr"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_map_symbols_to_market_keys() {
        let r = request(
            &serde_json::json!({"action":"subscribe","symbols":["INFY","NIFTY 50","NOPE"]}),
        )
        .unwrap();
        assert_eq!(r.action, "subscribe");
        assert_eq!(
            r.keys,
            vec![
                ("INFY".to_owned(), "NSE_EQ|INE009A01021".to_owned()),
                ("NIFTY 50".to_owned(), "NSE_INDEX|Nifty 50".to_owned()),
            ]
        );
        assert!(request(&serde_json::json!({"action":"x"})).is_none());
        assert!(mapping().is_some());
    }
}
