//! The Dhan v2 live-feed connector: query-string auth, JSON text requests in batches of 100.
//!
//! Wire facts (vendor-protocols §4): `wss://api-feed.dhan.co?version=2&token=..&clientId=..&
//! authType=2`; requests `{"RequestCode":15|17|21,"InstrumentCount":n,"InstrumentList":
//! [{"ExchangeSegment":"NSE_EQ","SecurityId":"1333"}]}` with at most 100 instruments each,
//! unsubscribe = code + 1; the server pings every 10 s (tungstenite answers); 5000 instruments
//! per connection and 5 connections per user. A refused token arrives as a disconnect packet
//! (code 50, reasons 807-809) followed by a close.
//!
//! An [`Instrument`]'s key is `<ExchangeSegment>|<SecurityId>` (e.g. `NSE_EQ|1333`).

use tungstenite::Message;

use super::{
    kite::percent_encode, ConnectError, ConnectRequest, Connector, ConnectorCaps, Credential,
    FrameKind, Instrument, Mode, Prepare,
};
use crate::{parsers::dhan, vendor::Vendor};

/// Most instruments in one request message [DDOC].
pub const MAX_PER_MESSAGE: usize = 100;

/// Settings of a Dhan feed. Defaults are the production endpoint and documented limits.
#[derive(Debug, Clone)]
pub struct DhanSettings {
    /// Feed base URL. Default `wss://api-feed.dhan.co`.
    pub url: String,
    /// The Dhan client id.
    pub client_id: Credential,
    /// The access token (read before every attempt).
    pub access_token: Credential,
    /// Instruments per connection. Default 5000.
    pub max_instruments_per_conn: usize,
    /// Instruments per request message. Default (and maximum) 100.
    pub subscribe_batch: usize,
    /// Connections per user. Default 5.
    pub max_connections: usize,
}

impl Default for DhanSettings {
    fn default() -> Self {
        DhanSettings {
            url: "wss://api-feed.dhan.co".to_owned(),
            client_id: Credential::Env("DHAN_CLIENT_ID".to_owned()),
            access_token: Credential::Env("DHAN_ACCESS_TOKEN".to_owned()),
            max_instruments_per_conn: 5000,
            subscribe_batch: MAX_PER_MESSAGE,
            max_connections: 5,
        }
    }
}

/// The Dhan connector.
#[derive(Debug, Clone)]
pub struct DhanConnector {
    settings: DhanSettings,
}

/// Dhan's subscribe request code for a mode (15 ticker, 17 quote, 21 full).
pub const fn request_code(m: Mode) -> u8 {
    match m {
        Mode::Ltp => 15,
        Mode::Quote => 17,
        Mode::Full | Mode::Greeks => 21,
    }
}

/// Splits a Dhan instrument key `<ExchangeSegment>|<SecurityId>`.
pub fn split_key(key: &str) -> Option<(&str, &str)> {
    let (seg, id) = key.split_once('|')?;
    (dhan::segment_code(seg).is_some() && !id.is_empty()).then_some((seg, id))
}

impl DhanConnector {
    /// A connector with `settings`.
    pub fn new(settings: DhanSettings) -> Self {
        DhanConnector { settings }
    }

    fn requests(&self, unsubscribe: bool, instruments: &[Instrument], out: &mut Vec<Message>) {
        let batch = self.settings.subscribe_batch.clamp(1, MAX_PER_MESSAGE);
        for mode in [Mode::Ltp, Mode::Quote, Mode::Full] {
            let of_mode: Vec<(&str, &str)> = instruments
                .iter()
                .filter(|i| request_code(i.mode) == request_code(mode))
                .filter_map(|i| split_key(&i.key))
                .collect();
            for chunk in of_mode.chunks(batch) {
                let list: Vec<serde_json::Value> = chunk
                    .iter()
                    .map(|(s, id)| serde_json::json!({"ExchangeSegment": s, "SecurityId": id}))
                    .collect();
                let code = request_code(mode) + u8::from(unsubscribe);
                let body = serde_json::json!({
                    "RequestCode": code,
                    "InstrumentCount": list.len(),
                    "InstrumentList": list,
                });
                out.push(Message::text(body.to_string()));
            }
        }
    }
}

impl Connector for DhanConnector {
    fn vendor(&self) -> Vendor {
        Vendor::Dhan
    }

    fn caps(&self) -> ConnectorCaps {
        ConnectorCaps {
            max_instruments_per_conn: self.settings.max_instruments_per_conn,
            subscribe_batch: self.settings.subscribe_batch.clamp(1, MAX_PER_MESSAGE),
            max_connections: self.settings.max_connections,
        }
    }

    fn connect_request(&mut self) -> Result<Prepare, ConnectError> {
        let token = self.settings.access_token.read()?;
        let client = self.settings.client_id.read()?;
        let base = self.settings.url.as_str();
        let sep = if base.contains('?') { '&' } else { '?' };
        let mut url = String::with_capacity(base.len() + token.len() + client.len() + 48);
        url.push_str(base);
        url.push(sep);
        url.push_str("version=2&token=");
        percent_encode(&token, &mut url);
        url.push_str("&clientId=");
        percent_encode(&client, &mut url);
        url.push_str("&authType=2");
        Ok(Prepare::Ready(ConnectRequest {
            url,
            headers: Vec::new(),
        }))
    }

    fn subscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.requests(false, instruments, out);
    }

    fn unsubscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.requests(true, instruments, out);
    }

    fn heartbeat(&self) -> Option<Message> {
        // Dhan pings us; our own WS ping is the application heartbeat, its pong feeds the
        // watchdog when the market is quiet.
        Some(Message::Ping(bytes::Bytes::new()))
    }

    fn is_data(&self, kind: FrameKind, payload: &[u8]) -> bool {
        // A disconnect notice (code 50) is not data: an auth refusal must not reset the backoff.
        kind == FrameKind::Binary
            && payload.len() >= dhan::HEADER_LEN
            && payload.first() != Some(&dhan::code::DISCONNECT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_batch_by_100_and_mode() {
        let c = DhanConnector::new(DhanSettings::default());
        let mut ins: Vec<Instrument> = (0..150)
            .map(|i| Instrument::upstox(i, &format!("NSE_EQ|{}", 1000 + i), Mode::Full))
            .collect();
        ins.push(Instrument::upstox(999, "IDX_I|13", Mode::Ltp));
        ins.push(Instrument::upstox(998, "NOPE|1", Mode::Ltp));
        let mut out = Vec::new();
        c.subscribe_messages(&ins, &mut out);
        let v: Vec<serde_json::Value> = out
            .iter()
            .map(|m| serde_json::from_str(m.to_text().unwrap()).unwrap())
            .collect();
        assert_eq!(v.len(), 3);
        assert_eq!(v[0]["RequestCode"], 15);
        assert_eq!(v[0]["InstrumentList"][0]["ExchangeSegment"], "IDX_I");
        assert_eq!(v[1]["RequestCode"], 21);
        assert_eq!(v[1]["InstrumentCount"], 100);
        assert_eq!(v[2]["InstrumentCount"], 50);
        out.clear();
        c.unsubscribe_messages(&ins[..1], &mut out);
        let u: serde_json::Value = serde_json::from_str(out[0].to_text().unwrap()).unwrap();
        assert_eq!(u["RequestCode"], 22);
    }

    #[test]
    fn url_carries_encoded_credentials_and_disconnect_is_not_data() {
        let mut c = DhanConnector::new(DhanSettings {
            url: "ws://127.0.0.1:1/".into(),
            client_id: Credential::Value("1000".into()),
            access_token: Credential::Value("a/b".into()),
            ..DhanSettings::default()
        });
        let Ok(Prepare::Ready(r)) = c.connect_request() else {
            panic!("ready expected")
        };
        assert_eq!(
            r.url,
            "ws://127.0.0.1:1/?version=2&token=a%2Fb&clientId=1000&authType=2"
        );
        assert!(!c.is_data(FrameKind::Binary, &[50, 10, 0, 1, 0, 0, 0, 0, 0x27, 0x03]));
        assert!(c.is_data(FrameKind::Binary, &[2, 16, 0, 1, 0, 0, 0, 0, 0, 0]));
    }
}
