//! The generic JSON WebSocket connector: how a data vendor's "NSE" feed that sends JSON ticks is
//! attached, described entirely by configuration (`docs/json-feed.md`).
//!
//! - URL (`JSON_FEED_URL`), one auth header (`JSON_FEED_AUTH_HEADER`, value `JSON_FEED_AUTH_VALUE`
//!   or re-read from `JSON_FEED_AUTH_FILE` before every attempt) on the upgrade request;
//! - a subscribe message template (`JSON_FEED_SUBSCRIBE`) whose `{symbols}` placeholder becomes a
//!   JSON array of the vendor's symbols, sent as text in batches (`JSON_FEED_BATCH`), and an
//!   optional unsubscribe template (`JSON_FEED_UNSUBSCRIBE`);
//! - ticks parsed by [`crate::parsers::json`] with the field mapping (`JSON_FEED_MAP`).
//!
//! An [`Instrument`]'s key is `<EXCHANGE>|<SYMBOL>` (`NSE|INFY`); the vendor sees the symbol, the
//! tick carries it as its token. Symbols are the canonical `EXCHANGE:SYMBOL` names of
//! `SUBSCRIBE` ([`symbol_master`]): the feed is assumed to use the exchange's trading symbols.
//! Per-tick allocation: see [`crate::parsers::json`] (none unless a string holds an escape).

use tungstenite::Message;

use super::{
    ConnectError, ConnectRequest, Connector, ConnectorCaps, Credential, FrameKind, Instrument,
    Prepare,
};
use crate::{
    instruments::{InstrumentRecord, VendorMaster},
    parsers::json::exchange_from_name,
    vendor::Vendor,
};

/// The placeholder the subscribe template's symbols replace.
pub const SYMBOLS_PLACEHOLDER: &str = "{symbols}";

/// Settings of a JSON feed.
#[derive(Debug, Clone)]
pub struct JsonFeedSettings {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Auth header name (e.g. `Authorization`, `x-api-key`); empty sends none.
    pub auth_header: String,
    /// The header's value (read before every attempt); `None` sends no header.
    pub auth_value: Option<Credential>,
    /// Subscribe message template with a `{symbols}` placeholder.
    pub subscribe_template: String,
    /// Unsubscribe message template with a `{symbols}` placeholder; empty sends nothing.
    pub unsubscribe_template: String,
    /// Symbols per subscribe message. Default 100.
    pub batch: usize,
    /// Instruments per connection. Default 1000.
    pub max_instruments_per_conn: usize,
    /// Connections. Default 1.
    pub max_connections: usize,
    /// The vendor key of the token (from the mapping): a text frame containing it counts as data
    /// (resets the backoff); others (acks, errors) do not.
    pub token_key: String,
}

impl Default for JsonFeedSettings {
    fn default() -> Self {
        JsonFeedSettings {
            url: String::new(),
            auth_header: "Authorization".to_owned(),
            auth_value: None,
            subscribe_template: r#"{"action":"subscribe","symbols":{symbols}}"#.to_owned(),
            unsubscribe_template: String::new(),
            batch: 100,
            max_instruments_per_conn: 1000,
            max_connections: 1,
            token_key: "symbol".to_owned(),
        }
    }
}

/// The JSON feed connector.
#[derive(Debug, Clone)]
pub struct JsonConnector {
    settings: JsonFeedSettings,
    token_needle: Vec<u8>,
}

/// The vendor symbol of an instrument key `<EXCHANGE>|<SYMBOL>` (the key itself when it has no
/// `|`).
pub fn symbol_of_key(key: &str) -> &str {
    key.split_once('|').map_or(key, |p| p.1)
}

/// Fills `template`'s `{symbols}` with a JSON array of `symbols`.
pub fn fill(template: &str, symbols: &[&str]) -> String {
    let arr = serde_json::to_string(symbols).unwrap_or_else(|_| "[]".to_owned());
    template.replace(SYMBOLS_PLACEHOLDER, &arr)
}

/// The instrument list of a JSON feed: every `EXCHANGE:SYMBOL` entry of `SUBSCRIBE` (a known
/// exchange name; `@mode` suffixes ignored) listed under the key `EXCHANGE|SYMBOL`.
pub fn symbol_master(entries: &[String]) -> VendorMaster {
    let mut records = Vec::new();
    for e in entries {
        let body = e.rsplit_once('@').map_or(e.as_str(), |p| p.0);
        let symbol = crate::instruments::canonical(body);
        let Some((ex, sym)) = symbol.split_once(':') else {
            continue;
        };
        if exchange_from_name(ex).is_none() || sym.trim().is_empty() {
            continue;
        }
        records.push(InstrumentRecord {
            key: format!("{ex}|{sym}").into(),
            symbol: symbol.as_str().into(),
            token: 0,
            tick_size: 0.0,
        });
    }
    VendorMaster::new(records)
}

impl JsonConnector {
    /// A connector with `settings`.
    pub fn new(settings: JsonFeedSettings) -> Self {
        let token_needle = format!("\"{}\"", settings.token_key).into_bytes();
        JsonConnector {
            settings,
            token_needle,
        }
    }

    /// The connector for a configured JSON feed (`JSON_FEED_*`); the auth value is re-read from
    /// `JSON_FEED_AUTH_FILE` before every attempt when that is set.
    pub fn from_config(c: &crate::config::JsonFeedConfig) -> Self {
        let auth_value = match (&c.auth_file, &c.auth_value) {
            (Some(f), _) => Some(Credential::File(f.clone())),
            (None, Some(v)) => Some(Credential::Value(v.expose().to_owned())),
            (None, None) => None,
        };
        JsonConnector::new(JsonFeedSettings {
            url: c.url.clone(),
            auth_header: c.auth_header.clone(),
            auth_value,
            subscribe_template: c.subscribe_template.clone(),
            unsubscribe_template: c.unsubscribe_template.clone(),
            batch: c.batch,
            token_key: c
                .mapping
                .source_of(crate::parsers::json::JsonField::Token)
                .unwrap_or("symbol")
                .to_owned(),
            ..JsonFeedSettings::default()
        })
    }

    fn messages(&self, template: &str, instruments: &[Instrument], out: &mut Vec<Message>) {
        if template.is_empty() {
            return;
        }
        let symbols: Vec<&str> = instruments.iter().map(|i| symbol_of_key(&i.key)).collect();
        for chunk in symbols.chunks(self.settings.batch.max(1)) {
            out.push(Message::text(fill(template, chunk)));
        }
    }
}

impl Connector for JsonConnector {
    fn vendor(&self) -> Vendor {
        Vendor::Json
    }

    fn caps(&self) -> ConnectorCaps {
        ConnectorCaps {
            max_instruments_per_conn: self.settings.max_instruments_per_conn.max(1),
            subscribe_batch: self.settings.batch.max(1),
            max_connections: self.settings.max_connections.max(1),
        }
    }

    fn connect_request(&mut self) -> Result<Prepare, ConnectError> {
        let mut headers = Vec::new();
        if let (false, Some(c)) = (
            self.settings.auth_header.is_empty(),
            &self.settings.auth_value,
        ) {
            headers.push((self.settings.auth_header.clone(), c.read()?));
        }
        Ok(Prepare::Ready(ConnectRequest {
            url: self.settings.url.clone(),
            headers,
        }))
    }

    fn subscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.messages(&self.settings.subscribe_template, instruments, out);
    }

    fn unsubscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.messages(&self.settings.unsubscribe_template, instruments, out);
    }

    fn heartbeat(&self) -> Option<Message> {
        // A WebSocket ping: every server answers it, and its pong feeds the watchdog.
        Some(Message::Ping(bytes::Bytes::new()))
    }

    fn is_data(&self, kind: FrameKind, payload: &[u8]) -> bool {
        kind == FrameKind::Text
            && payload
                .windows(self.token_needle.len().max(1))
                .any(|w| w == self.token_needle.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Mode;

    #[test]
    fn subscribe_fills_symbols_in_batches_and_auth_goes_in_a_header() {
        let mut c = JsonConnector::new(JsonFeedSettings {
            url: "ws://127.0.0.1:1/feed".into(),
            auth_header: "x-api-key".into(),
            auth_value: Some(Credential::Value("k1".into())),
            batch: 2,
            ..JsonFeedSettings::default()
        });
        let ins: Vec<Instrument> = ["NSE|INFY", "NSE|NIFTY 50", "NFO|BANKNIFTY25DECFUT"]
            .iter()
            .enumerate()
            .map(|(i, k)| Instrument::upstox(i as u32, k, Mode::Full))
            .collect();
        let mut out = Vec::new();
        c.subscribe_messages(&ins, &mut out);
        assert_eq!(out.len(), 2);
        assert_eq!(
            out[0].to_text().unwrap(),
            r#"{"action":"subscribe","symbols":["INFY","NIFTY 50"]}"#
        );
        out.clear();
        c.unsubscribe_messages(&ins, &mut out);
        assert!(out.is_empty(), "no unsubscribe template, nothing sent");
        let Ok(Prepare::Ready(r)) = c.connect_request() else {
            panic!("ready expected")
        };
        assert_eq!(r.headers, vec![("x-api-key".to_owned(), "k1".to_owned())]);
        assert!(c.is_data(FrameKind::Text, br#"[{"symbol":"INFY"}]"#));
        assert!(!c.is_data(FrameKind::Text, br#"{"type":"ack"}"#));
    }

    #[test]
    fn symbol_master_lists_exchange_symbols() {
        let m = symbol_master(&[
            "nse:infy@ltp".to_owned(),
            "NSE:NIFTY 50".to_owned(),
            "kite:408065".to_owned(),
            "XYZ:A".to_owned(),
        ]);
        assert_eq!(m.len(), 2);
        assert_eq!(&*m.resolve("NSE:INFY").unwrap().key, "NSE|INFY");
        assert_eq!(m.symbol_of("NSE|NIFTY 50"), Some("NSE:NIFTY 50"));
    }
}
