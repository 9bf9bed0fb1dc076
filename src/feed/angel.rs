//! The Angel One SmartAPI WebSocket 2.0 connector: header auth, JSON text requests, text `ping`
//! heartbeat.
//!
//! Wire facts (vendor-protocols §3): `wss://smartapisocket.angelone.in/smart-stream` with the
//! headers `Authorization` (the login JWT), `x-api-key`, `x-client-code` and `x-feed-token`; a
//! refused login is an HTTP 401 at the upgrade. Requests are text JSON
//! `{"correlationID":..,"action":1|0,"params":{"mode":1..3,"tokenList":[{"exchangeType":1,
//! "tokens":[..]}]}}`; the client sends the text `ping` and the server answers `pong`. Up to 1000
//! tokens per session and 3 connections per client code.
//!
//! An [`Instrument`]'s key is `<exchangeType>|<token>` (e.g. `1|2885`), as the instrument master
//! produces it.

use std::collections::BTreeMap;

use tungstenite::Message;

use super::{
    ConnectError, ConnectRequest, Connector, ConnectorCaps, Credential, FrameKind, Instrument,
    Prepare,
};
use crate::{parsers::angel::AngelMode, vendor::Vendor};

/// Settings of an Angel feed. Defaults are the production endpoint and documented limits.
#[derive(Debug, Clone)]
pub struct AngelSettings {
    /// Stream URL. Default `wss://smartapisocket.angelone.in/smart-stream`.
    pub url: String,
    /// The SmartAPI key (`x-api-key`).
    pub api_key: Credential,
    /// The client code (`x-client-code`).
    pub client_code: Credential,
    /// The login JWT (daily; read before every attempt). Sent as `Authorization: Bearer <jwt>`
    /// unless it already starts with `Bearer ` (the SDK stores it that way).
    pub jwt: Credential,
    /// The feed token from login (daily; read before every attempt).
    pub feed_token: Credential,
    /// Tokens per connection. Default 1000 (per session).
    pub max_instruments_per_conn: usize,
    /// Tokens per request message. Default 500.
    pub subscribe_batch: usize,
    /// Connections per client code. Default 3.
    pub max_connections: usize,
}

impl Default for AngelSettings {
    fn default() -> Self {
        AngelSettings {
            url: "wss://smartapisocket.angelone.in/smart-stream".to_owned(),
            api_key: Credential::Env("ANGEL_API_KEY".to_owned()),
            client_code: Credential::Env("ANGEL_CLIENT_CODE".to_owned()),
            jwt: Credential::Env("ANGEL_JWT".to_owned()),
            feed_token: Credential::Env("ANGEL_FEED_TOKEN".to_owned()),
            max_instruments_per_conn: 1000,
            subscribe_batch: 500,
            max_connections: 3,
        }
    }
}

/// The Angel connector.
#[derive(Debug, Clone)]
pub struct AngelConnector {
    settings: AngelSettings,
}

impl AngelConnector {
    /// A connector with `settings`.
    pub fn new(settings: AngelSettings) -> Self {
        AngelConnector { settings }
    }

    fn requests(&self, action: u8, instruments: &[Instrument], out: &mut Vec<Message>) {
        let batch = self.settings.subscribe_batch.max(1);
        for mode in [AngelMode::Ltp, AngelMode::Quote, AngelMode::SnapQuote] {
            let of_mode: Vec<&Instrument> = instruments
                .iter()
                .filter(|i| AngelMode::for_mode(i.mode) == mode)
                .collect();
            for chunk in of_mode.chunks(batch) {
                // Grouped by exchange type, as the request format requires.
                let mut groups: BTreeMap<u8, Vec<&str>> = BTreeMap::new();
                for i in chunk {
                    if let Some((et, tok)) = split_key(&i.key) {
                        groups.entry(et).or_default().push(tok);
                    }
                }
                if groups.is_empty() {
                    continue;
                }
                let list: Vec<serde_json::Value> = groups
                    .iter()
                    .map(|(et, toks)| serde_json::json!({"exchangeType": et, "tokens": toks}))
                    .collect();
                let body = serde_json::json!({
                    "correlationID": "layer1",
                    "action": action,
                    "params": {"mode": mode as u8, "tokenList": list},
                });
                out.push(Message::text(body.to_string()));
            }
        }
    }
}

/// Splits an Angel instrument key `<exchangeType>|<token>`.
pub fn split_key(key: &str) -> Option<(u8, &str)> {
    let (et, tok) = key.split_once('|')?;
    let et: u8 = et.parse().ok()?;
    (!tok.is_empty()).then_some((et, tok))
}

impl Connector for AngelConnector {
    fn vendor(&self) -> Vendor {
        Vendor::Angel
    }

    fn caps(&self) -> ConnectorCaps {
        ConnectorCaps {
            max_instruments_per_conn: self.settings.max_instruments_per_conn,
            subscribe_batch: self.settings.subscribe_batch,
            max_connections: self.settings.max_connections,
        }
    }

    fn connect_request(&mut self) -> Result<Prepare, ConnectError> {
        let s = &self.settings;
        let jwt = s.jwt.read()?;
        let auth = if jwt.starts_with("Bearer ") {
            jwt
        } else {
            format!("Bearer {jwt}")
        };
        Ok(Prepare::Ready(ConnectRequest {
            url: s.url.clone(),
            headers: vec![
                ("Authorization".to_owned(), auth),
                ("x-api-key".to_owned(), s.api_key.read()?),
                ("x-client-code".to_owned(), s.client_code.read()?),
                ("x-feed-token".to_owned(), s.feed_token.read()?),
            ],
        }))
    }

    fn subscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.requests(1, instruments, out);
    }

    fn unsubscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.requests(0, instruments, out);
    }

    fn heartbeat(&self) -> Option<Message> {
        // The documented heartbeat is the text `ping` (the server answers `pong`); the Python
        // SDK's control-frame ping is not what the docs describe.
        Some(Message::text("ping"))
    }

    fn is_data(&self, kind: FrameKind, payload: &[u8]) -> bool {
        kind == FrameKind::Binary && payload.len() > 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::Mode;

    #[test]
    fn requests_group_by_mode_and_exchange_type() {
        let c = AngelConnector::new(AngelSettings {
            subscribe_batch: 2,
            ..AngelSettings::default()
        });
        let ins = [
            Instrument::upstox(1, "1|2885", Mode::Full),
            Instrument::upstox(2, "2|45678", Mode::Full),
            Instrument::upstox(3, "1|1594", Mode::Ltp),
            Instrument::upstox(4, "1|3045", Mode::Full),
            Instrument::upstox(5, "bad", Mode::Full),
        ];
        let mut out = Vec::new();
        c.subscribe_messages(&ins, &mut out);
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap())
            .collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0]["params"]["mode"], 1);
        assert_eq!(v[0]["params"]["tokenList"][0]["tokens"][0], "1594");
        assert_eq!(v[1]["params"]["mode"], 3);
        assert_eq!(v[1]["params"]["tokenList"].as_array().unwrap().len(), 2);
        assert_eq!(v[1]["action"], 1);
        out.clear();
        c.unsubscribe_messages(&ins[..1], &mut out);
        let u: serde_json::Value = serde_json::from_str(out[0].to_text().unwrap()).unwrap();
        assert_eq!(u["action"], 0);
        assert_eq!(c.heartbeat(), Some(Message::text("ping")));
    }

    #[test]
    fn headers_carry_credentials_and_debug_hides_them() {
        let mut c = AngelConnector::new(AngelSettings {
            url: "ws://127.0.0.1:1/smart-stream".into(),
            api_key: Credential::Value("k".into()),
            client_code: Credential::Value("C1".into()),
            jwt: Credential::Value("jwt123".into()),
            feed_token: Credential::Value("ft".into()),
            ..AngelSettings::default()
        });
        let Ok(Prepare::Ready(r)) = c.connect_request() else {
            panic!("ready expected")
        };
        assert!(r
            .headers
            .contains(&("Authorization".into(), "Bearer jwt123".into())));
        assert!(!format!("{r:?}").contains("jwt123"));
        let mut c = AngelConnector::new(AngelSettings {
            jwt: Credential::File("/nonexistent/jwt".into()),
            ..AngelSettings::default()
        });
        assert!(matches!(
            c.connect_request(),
            Err(ConnectError::Credentials(_))
        ));
    }
}
