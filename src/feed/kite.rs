//! The Zerodha Kite ticker connector: query-string auth, JSON text requests, WS-ping heartbeat.
//!
//! Wire facts (vendor-protocols §1): `wss://ws.kite.trade?api_key=..&access_token=..`; requests
//! are text frames `{"a":"subscribe","v":[tokens]}` followed by `{"a":"mode","v":[mode,[tokens]]}`
//! (a token must be subscribed before its mode is set); the server sends a 1-byte binary frame as
//! its heartbeat when idle; up to 3000 instruments per connection and 3 connections per api_key.

use std::fmt::Write as _;

use tungstenite::Message;

use super::{
    ConnectError, ConnectRequest, Connector, ConnectorCaps, Credential, FrameKind, Instrument,
    Mode, Prepare,
};
use crate::vendor::Vendor;

/// Settings of a Kite feed. Defaults are the production endpoint and limits.
#[derive(Debug, Clone)]
pub struct KiteSettings {
    /// Ticker base URL. Default `wss://ws.kite.trade`; tests point it at the simulator
    /// (`ws://127.0.0.1:port/`).
    pub base_url: String,
    /// The API key.
    pub api_key: Credential,
    /// The daily access token (read before every attempt).
    pub access_token: Credential,
    /// Instruments per connection. Default 3000.
    pub max_instruments_per_conn: usize,
    /// Tokens per subscribe message. Default 1000 (keeps each request a few KB).
    pub subscribe_batch: usize,
    /// Connections per api_key. Default 3.
    pub max_connections: usize,
}

impl Default for KiteSettings {
    fn default() -> Self {
        KiteSettings {
            base_url: "wss://ws.kite.trade".to_owned(),
            api_key: Credential::Env("KITE_API_KEY".to_owned()),
            access_token: Credential::Env("KITE_ACCESS_TOKEN".to_owned()),
            max_instruments_per_conn: 3000,
            subscribe_batch: 1000,
            max_connections: 3,
        }
    }
}

/// The Kite connector.
#[derive(Debug, Clone)]
pub struct KiteConnector {
    settings: KiteSettings,
}

impl KiteConnector {
    /// A connector with `settings`.
    pub fn new(settings: KiteSettings) -> Self {
        KiteConnector { settings }
    }

    /// The request URL for the given credentials.
    fn url(&self, api_key: &str, token: &str) -> String {
        let base = self.settings.base_url.as_str();
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = String::with_capacity(base.len() + api_key.len() + token.len() + 32);
        url.push_str(base);
        url.push(sep);
        url.push_str("api_key=");
        percent_encode(api_key, &mut url);
        url.push_str("&access_token=");
        percent_encode(token, &mut url);
        url
    }
}

impl Connector for KiteConnector {
    fn vendor(&self) -> Vendor {
        Vendor::Kite
    }

    fn caps(&self) -> ConnectorCaps {
        ConnectorCaps {
            max_instruments_per_conn: self.settings.max_instruments_per_conn,
            subscribe_batch: self.settings.subscribe_batch,
            max_connections: self.settings.max_connections,
        }
    }

    fn connect_request(&mut self) -> Result<Prepare, ConnectError> {
        let api_key = self.settings.api_key.read()?;
        let token = self.settings.access_token.read()?;
        Ok(Prepare::Ready(ConnectRequest {
            url: self.url(&api_key, &token),
            headers: vec![("X-Kite-Version".to_owned(), "3".to_owned())],
        }))
    }

    fn subscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        let batch = self.settings.subscribe_batch.max(1);
        for chunk in instruments.chunks(batch) {
            out.push(Message::text(request(
                "subscribe",
                None,
                chunk.iter().map(|i| i.id),
            )));
            // Mode requests grouped by mode, after the subscribe that makes them valid.
            for mode in ["ltp", "quote", "full"] {
                if chunk.iter().any(|i| kite_mode(i.mode) == mode) {
                    let ids = chunk
                        .iter()
                        .filter(|i| kite_mode(i.mode) == mode)
                        .map(|i| i.id);
                    out.push(Message::text(request("mode", Some(mode), ids)));
                }
            }
        }
    }

    fn unsubscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        let batch = self.settings.subscribe_batch.max(1);
        for chunk in instruments.chunks(batch) {
            out.push(Message::text(request(
                "unsubscribe",
                None,
                chunk.iter().map(|i| i.id),
            )));
        }
    }

    fn heartbeat(&self) -> Option<Message> {
        // Kite's heartbeat is server to client; the client proves liveness with WS pings, whose
        // pongs also keep the watchdog fed outside market hours.
        Some(Message::Ping(bytes::Bytes::new()))
    }

    fn is_data(&self, kind: FrameKind, payload: &[u8]) -> bool {
        // The 1-byte binary frame is the heartbeat; text frames are postbacks and errors.
        kind == FrameKind::Binary && payload.len() > 1
    }
}

/// Kite's name for a mode (Kite has no greeks mode; it maps to `full`).
pub fn kite_mode(m: Mode) -> &'static str {
    match m {
        Mode::Ltp => "ltp",
        Mode::Quote => "quote",
        Mode::Full | Mode::Greeks => "full",
    }
}

/// `{"a":action,"v":[ids]}` or `{"a":"mode","v":["full",[ids]]}`.
fn request(action: &str, mode: Option<&str>, ids: impl Iterator<Item = u32>) -> String {
    let mut s = String::with_capacity(64);
    s.push_str("{\"a\":\"");
    s.push_str(action);
    s.push_str("\",\"v\":");
    if let Some(m) = mode {
        s.push_str("[\"");
        s.push_str(m);
        s.push_str("\",");
    }
    s.push('[');
    for (i, id) in ids.enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{id}");
    }
    s.push(']');
    if mode.is_some() {
        s.push(']');
    }
    s.push('}');
    s
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(crate) fn percent_encode(v: &str, out: &mut String) {
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connector() -> KiteConnector {
        KiteConnector::new(KiteSettings {
            base_url: "ws://127.0.0.1:1/".into(),
            api_key: Credential::Value("key".into()),
            access_token: Credential::Value("to/ken".into()),
            subscribe_batch: 2,
            ..KiteSettings::default()
        })
    }

    #[test]
    fn url_carries_encoded_credentials() {
        let mut c = connector();
        let Ok(Prepare::Ready(r)) = c.connect_request() else {
            panic!("ready expected")
        };
        assert_eq!(r.url, "ws://127.0.0.1:1/?api_key=key&access_token=to%2Fken");
        assert!(
            !format!("{r:?}").contains("to%2Fken"),
            "debug output redacts the token"
        );
    }

    #[test]
    fn subscribe_batches_then_modes() {
        let c = connector();
        let ins = [
            Instrument::kite(1, Mode::Full),
            Instrument::kite(2, Mode::Ltp),
            Instrument::kite(3, Mode::Full),
        ];
        let mut out = Vec::new();
        c.subscribe_messages(&ins, &mut out);
        let texts: Vec<String> = out
            .iter()
            .map(|m| m.to_text().unwrap_or("").to_owned())
            .collect();
        assert_eq!(
            texts,
            [
                r#"{"a":"subscribe","v":[1,2]}"#,
                r#"{"a":"mode","v":["ltp",[2]]}"#,
                r#"{"a":"mode","v":["full",[1]]}"#,
                r#"{"a":"subscribe","v":[3]}"#,
                r#"{"a":"mode","v":["full",[3]]}"#,
            ]
        );
        for t in &texts {
            assert!(
                serde_json::from_str::<serde_json::Value>(t).is_ok(),
                "valid json: {t}"
            );
        }
    }

    #[test]
    fn missing_credential_is_an_error_not_a_panic() {
        let mut c = KiteConnector::new(KiteSettings {
            access_token: Credential::File("/nonexistent/token".into()),
            api_key: Credential::Value("k".into()),
            ..KiteSettings::default()
        });
        assert!(matches!(
            c.connect_request(),
            Err(ConnectError::Credentials(_))
        ));
    }

    #[test]
    fn heartbeat_frame_is_not_data() {
        let c = connector();
        assert!(!c.is_data(FrameKind::Binary, &[0]));
        assert!(c.is_data(FrameKind::Binary, &[0, 1, 0, 8]));
        assert!(!c.is_data(FrameKind::Text, b"{\"type\":\"message\"}"));
    }
}
