//! The Upstox Market Data Feed V3 connector: a one-time WebSocket URL from the authorize REST
//! call before every attempt, JSON requests sent as binary frames.
//!
//! Wire facts (vendor-protocols §2): `GET .../v3/feed/market-data-feed/authorize` with
//! `Authorization: Bearer <token>` returns `{"status":"success","data":{"authorized_redirect_uri":
//! "wss://...?requestId=..&code=.."}}`; the URI is single-use, so it is fetched anew for every
//! attempt. The REST call is blocking (`ureq`) and therefore runs on the feed thread's helper
//! thread, never on the loop. Requests: `{"guid":..,"method":"sub"|"unsub","data":{"mode":..,
//! "instrumentKeys":[..]}}` as UTF-8 JSON in a binary frame.

use std::{cell::Cell, time::Duration};

use tungstenite::Message;

use super::{
    event_loop::parse_retry_after_ms, ConnectError, ConnectRequest, Connector, ConnectorCaps,
    Credential, FrameKind, Instrument, Mode, Prepare,
};
use crate::vendor::Vendor;

/// Settings of an Upstox feed. Defaults are the production endpoint and documented limits.
#[derive(Debug, Clone)]
pub struct UpstoxSettings {
    /// The authorize endpoint. Default
    /// `https://api.upstox.com/v3/feed/market-data-feed/authorize`; tests use the simulator's.
    pub authorize_url: String,
    /// The access token (read before every attempt).
    pub access_token: Credential,
    /// Instruments per connection. Default 2000 (full mode, individual).
    pub max_instruments_per_conn: usize,
    /// Instrument keys per request message. Default 500.
    pub subscribe_batch: usize,
    /// Connections per app and user. Default 1.
    pub max_connections: usize,
    /// Timeout of the authorize call. Default 10 s.
    pub authorize_timeout: Duration,
}

impl Default for UpstoxSettings {
    fn default() -> Self {
        UpstoxSettings {
            authorize_url: "https://api.upstox.com/v3/feed/market-data-feed/authorize".to_owned(),
            access_token: Credential::Env("UPSTOX_ACCESS_TOKEN".to_owned()),
            max_instruments_per_conn: 2000,
            subscribe_batch: 500,
            max_connections: 1,
            authorize_timeout: Duration::from_secs(10),
        }
    }
}

/// The Upstox connector.
#[derive(Debug)]
pub struct UpstoxConnector {
    settings: UpstoxSettings,
    agent: ureq::Agent,
    guid: Cell<u64>,
}

impl UpstoxConnector {
    /// A connector with `settings`.
    pub fn new(settings: UpstoxSettings) -> Self {
        // Status codes are read, not turned into errors: a 429's Retry-After must survive.
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(settings.authorize_timeout))
            .http_status_as_error(false)
            .build()
            .into();
        UpstoxConnector {
            settings,
            agent,
            guid: Cell::new(0),
        }
    }

    fn next_guid(&self) -> String {
        let g = self.guid.get().wrapping_add(1);
        self.guid.set(g);
        format!("layer1-{g}")
    }

    fn requests(&self, method: &str, instruments: &[Instrument], out: &mut Vec<Message>) {
        let batch = self.settings.subscribe_batch.max(1);
        for mode in ["ltpc", "full", "option_greeks"] {
            let keys: Vec<&str> = instruments
                .iter()
                .filter(|i| upstox_mode(i.mode) == mode)
                .map(|i| &*i.key)
                .collect();
            for chunk in keys.chunks(batch) {
                let data = if method == "unsub" {
                    serde_json::json!({ "instrumentKeys": chunk })
                } else {
                    serde_json::json!({ "mode": mode, "instrumentKeys": chunk })
                };
                let body = serde_json::json!({
                    "guid": self.next_guid(),
                    "method": method,
                    "data": data,
                });
                // The vendor expects the JSON as a binary frame.
                out.push(Message::binary(body.to_string().into_bytes()));
            }
        }
    }
}

/// Upstox's name for a mode.
pub fn upstox_mode(m: Mode) -> &'static str {
    match m {
        Mode::Ltp => "ltpc",
        Mode::Quote | Mode::Full => "full",
        Mode::Greeks => "option_greeks",
    }
}

/// The blocking authorize call: returns the one-time WebSocket URL.
fn authorize(agent: &ureq::Agent, url: &str, token: &str) -> Result<ConnectRequest, ConnectError> {
    let mut resp = agent
        .get(url)
        .header("Authorization", format!("Bearer {token}"))
        .header("Accept", "application/json")
        .call()
        .map_err(|e| match e {
            ureq::Error::Timeout(_) => ConnectError::Timeout,
            ureq::Error::Io(io) => ConnectError::Io(io.kind()),
            _ => ConnectError::Protocol("authorize request failed"),
        })?;
    let status = resp.status().as_u16();
    match status {
        200 => {}
        401 | 403 => return Err(ConnectError::Unauthorized(status)),
        429 => {
            let retry_after_ms = resp
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after_ms);
            return Err(ConnectError::RateLimited { retry_after_ms });
        }
        s => return Err(ConnectError::Http(s)),
    }
    let body = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024)
        .read_to_string()
        .map_err(|_| ConnectError::Protocol("authorize body unreadable"))?;
    let v: serde_json::Value = serde_json::from_str(&body)
        .map_err(|_| ConnectError::Protocol("authorize body not json"))?;
    let uri = v
        .get("data")
        .and_then(|d| {
            d.get("authorized_redirect_uri")
                .or_else(|| d.get("authorizedRedirectUri"))
        })
        .and_then(|u| u.as_str())
        .ok_or(ConnectError::Protocol(
            "authorize body without redirect uri",
        ))?;
    Ok(ConnectRequest {
        url: uri.to_owned(),
        headers: Vec::new(),
    })
}

impl Connector for UpstoxConnector {
    fn vendor(&self) -> Vendor {
        Vendor::Upstox
    }

    fn caps(&self) -> ConnectorCaps {
        ConnectorCaps {
            max_instruments_per_conn: self.settings.max_instruments_per_conn,
            subscribe_batch: self.settings.subscribe_batch,
            max_connections: self.settings.max_connections,
        }
    }

    fn connect_request(&mut self) -> Result<Prepare, ConnectError> {
        let token = self.settings.access_token.read()?;
        let agent = self.agent.clone();
        let url = self.settings.authorize_url.clone();
        Ok(Prepare::Deferred(Box::new(move || {
            authorize(&agent, &url, &token)
        })))
    }

    fn subscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.requests("sub", instruments, out);
    }

    fn unsubscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>) {
        self.requests("unsub", instruments, out);
    }

    fn heartbeat(&self) -> Option<Message> {
        // Upstox pings us when idle; our own ping is the application-level heartbeat the
        // founding document asks for, and its pong feeds the watchdog.
        Some(Message::Ping(bytes::Bytes::new()))
    }

    fn is_data(&self, kind: FrameKind, payload: &[u8]) -> bool {
        kind == FrameKind::Binary && !payload.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_binary_json_grouped_by_mode() {
        let c = UpstoxConnector::new(UpstoxSettings {
            access_token: Credential::Value("t".into()),
            subscribe_batch: 1,
            ..UpstoxSettings::default()
        });
        let ins = [
            Instrument::upstox(1, "NSE_EQ|INE002A01018", Mode::Full),
            Instrument::upstox(2, "NSE_INDEX|Nifty 50", Mode::Ltp),
        ];
        let mut out = Vec::new();
        c.subscribe_messages(&ins, &mut out);
        assert_eq!(out.len(), 2);
        let Message::Binary(first) = &out[0] else {
            panic!("binary expected")
        };
        let v: serde_json::Value = serde_json::from_slice(first).expect("json");
        assert_eq!(v["method"], "sub");
        assert_eq!(v["data"]["mode"], "ltpc");
        assert_eq!(v["data"]["instrumentKeys"][0], "NSE_INDEX|Nifty 50");
        out.clear();
        c.unsubscribe_messages(&ins[..1], &mut out);
        let Message::Binary(u) = &out[0] else {
            panic!("binary expected")
        };
        let v: serde_json::Value = serde_json::from_slice(u).expect("json");
        assert_eq!(v["method"], "unsub");
        assert!(v["data"].get("mode").is_none());
    }

    #[test]
    fn connect_request_is_deferred_and_reads_the_token() {
        let mut c = UpstoxConnector::new(UpstoxSettings {
            access_token: Credential::Value(String::new()),
            ..UpstoxSettings::default()
        });
        assert!(matches!(
            c.connect_request(),
            Err(ConnectError::Credentials(_))
        ));
        let mut c = UpstoxConnector::new(UpstoxSettings {
            access_token: Credential::Value("x".into()),
            // Nothing listens on port 1: the deferred call fails fast with an I/O error.
            authorize_url: "http://127.0.0.1:1/authorize".into(),
            authorize_timeout: Duration::from_secs(2),
            ..UpstoxSettings::default()
        });
        let Ok(Prepare::Deferred(f)) = c.connect_request() else {
            panic!("deferred expected")
        };
        assert!(f().is_err());
    }
}
