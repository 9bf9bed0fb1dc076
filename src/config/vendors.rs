//! [`VendorsConfig`]: the Angel One and Dhan feeds, token files for daily rollover, instrument
//! lists and their cache, the subscription file, and the primary/standby vendor choice.

use std::path::PathBuf;

use super::{url, ConfigError, Reader, Secret};
use crate::vendor::Vendor;

/// Angel One SmartAPI credentials and endpoint.
#[derive(Debug, Clone)]
pub struct AngelConfig {
    /// Stream URL (`ANGEL_WS_URL`).
    pub ws_url: String,
    /// `x-api-key` (`ANGEL_API_KEY`).
    pub api_key: Secret,
    /// `x-client-code` (`ANGEL_CLIENT_CODE`).
    pub client_code: Secret,
    /// Login JWT (`ANGEL_JWT`), unless `jwt_file` is set.
    pub jwt: Option<Secret>,
    /// File holding the JWT, re-read before every connection attempt (`ANGEL_JWT_FILE`).
    pub jwt_file: Option<PathBuf>,
    /// Feed token (`ANGEL_FEED_TOKEN`), unless `feed_token_file` is set.
    pub feed_token: Option<Secret>,
    /// File holding the feed token (`ANGEL_FEED_TOKEN_FILE`).
    pub feed_token_file: Option<PathBuf>,
}

/// Dhan credentials and endpoint.
#[derive(Debug, Clone)]
pub struct DhanConfig {
    /// Feed URL (`DHAN_WS_URL`).
    pub ws_url: String,
    /// Client id (`DHAN_CLIENT_ID`).
    pub client_id: Secret,
    /// Access token (`DHAN_ACCESS_TOKEN`), unless `access_token_file` is set.
    pub access_token: Option<Secret>,
    /// File holding the access token (`DHAN_ACCESS_TOKEN_FILE`).
    pub access_token_file: Option<PathBuf>,
}

/// The generic JSON WebSocket feed (`docs/json-feed.md`).
#[derive(Debug, Clone)]
pub struct JsonFeedConfig {
    /// Feed URL (`JSON_FEED_URL`).
    pub url: String,
    /// Auth header name (`JSON_FEED_AUTH_HEADER`).
    pub auth_header: String,
    /// Auth header value (`JSON_FEED_AUTH_VALUE`), unless `auth_file` is set.
    pub auth_value: Option<Secret>,
    /// File holding the auth header value (`JSON_FEED_AUTH_FILE`).
    pub auth_file: Option<PathBuf>,
    /// Subscribe template with `{symbols}` (`JSON_FEED_SUBSCRIBE`).
    pub subscribe_template: String,
    /// Unsubscribe template (`JSON_FEED_UNSUBSCRIBE`); empty = none.
    pub unsubscribe_template: String,
    /// The field mapping (`JSON_FEED_MAP`, `JSON_FEED_EXCHANGE`).
    pub mapping: std::sync::Arc<crate::parsers::json::JsonMapping>,
    /// Symbols per subscribe message (`JSON_FEED_BATCH`).
    pub batch: usize,
}

/// The subscribe template used when `JSON_FEED_SUBSCRIBE` is unset.
const DEFAULT_JSON_SUBSCRIBE: &str = r#"{"action":"subscribe","symbols":{symbols}}"#;

fn json_feed(r: &Reader<'_>) -> Result<Option<JsonFeedConfig>, ConfigError> {
    if r.raw("JSON_FEED_URL").is_none() {
        return Ok(None);
    }
    let url = ws(r, "JSON_FEED_URL")?;
    const MAP: &str = "comma-separated target=source[*scale] pairs mapping at least token and ltp (docs/json-feed.md)";
    let spec = r.string("JSON_FEED_MAP", MAP)?;
    let exchange = r
        .raw("JSON_FEED_EXCHANGE")
        .unwrap_or_else(|| "NSE".to_owned());
    let mapping = crate::parsers::json::JsonMapping::parse(&spec, &exchange).map_err(|e| {
        ConfigError::Invalid {
            var: if matches!(e, crate::parsers::json::MappingError::Exchange(_)) {
                "JSON_FEED_EXCHANGE"
            } else {
                "JSON_FEED_MAP"
            },
            expected: MAP,
        }
    })?;
    let subscribe_template = r
        .raw("JSON_FEED_SUBSCRIBE")
        .unwrap_or_else(|| DEFAULT_JSON_SUBSCRIBE.to_owned());
    let unsubscribe_template = r.raw("JSON_FEED_UNSUBSCRIBE").unwrap_or_default();
    const TEMPLATE: &str = "a message template containing {symbols}";
    if !subscribe_template.contains(crate::feed::json::SYMBOLS_PLACEHOLDER) {
        return Err(ConfigError::Invalid {
            var: "JSON_FEED_SUBSCRIBE",
            expected: TEMPLATE,
        });
    }
    if !unsubscribe_template.is_empty()
        && !unsubscribe_template.contains(crate::feed::json::SYMBOLS_PLACEHOLDER)
    {
        return Err(ConfigError::Invalid {
            var: "JSON_FEED_UNSUBSCRIBE",
            expected: TEMPLATE,
        });
    }
    Ok(Some(JsonFeedConfig {
        url,
        auth_header: r.raw("JSON_FEED_AUTH_HEADER").unwrap_or_default(),
        auth_value: r.secret("JSON_FEED_AUTH_VALUE"),
        auth_file: path(r, "JSON_FEED_AUTH_FILE"),
        subscribe_template,
        unsubscribe_template,
        mapping: std::sync::Arc::new(mapping),
        batch: r.num("JSON_FEED_BATCH", 1usize, 10_000, "1..=10000")?,
    }))
}

/// Vendor-wide settings added with issue 6.
#[derive(Debug, Clone)]
pub struct VendorsConfig {
    /// Angel, when its credentials are set.
    pub angel: Option<AngelConfig>,
    /// Dhan, when its credentials are set.
    pub dhan: Option<DhanConfig>,
    /// The generic JSON feed, when `JSON_FEED_URL` is set.
    pub json: Option<JsonFeedConfig>,
    /// Kite token file (`KITE_ACCESS_TOKEN_FILE`): overrides `KITE_ACCESS_TOKEN`, re-read
    /// before every attempt.
    pub kite_token_file: Option<PathBuf>,
    /// Upstox token file (`UPSTOX_ACCESS_TOKEN_FILE`).
    pub upstox_token_file: Option<PathBuf>,
    /// Subscription file (`SUBSCRIBE_FILE`), added to `SUBSCRIBE`.
    pub subscribe_file: Option<PathBuf>,
    /// Vendor preference for a symbol's primary (`VENDOR_ORDER`).
    pub order: Vec<Vendor>,
    /// The standby vendor (`STANDBY_VENDOR`), when redundancy is wanted.
    pub standby: Option<Vendor>,
    /// Instrument-list cache directory (`INSTRUMENTS_CACHE_DIR`).
    pub instruments_cache_dir: PathBuf,
    /// Instrument-list URL or path per vendor (`<VENDOR>_INSTRUMENTS_URL`); empty = none.
    pub instruments_url: Vec<(Vendor, String)>,
}

fn path(r: &Reader<'_>, name: &'static str) -> Option<PathBuf> {
    r.raw(name).map(PathBuf::from)
}

fn ws(r: &Reader<'_>, name: &'static str) -> Result<String, ConfigError> {
    url(
        r,
        name,
        &["wss", "ws"],
        "a wss:// URL (ws:// only for a local simulator)",
    )
}

pub(super) fn read(r: &Reader<'_>) -> Result<VendorsConfig, ConfigError> {
    let angel_jwt = (r.secret("ANGEL_JWT"), path(r, "ANGEL_JWT_FILE"));
    let angel_ft = (
        r.secret("ANGEL_FEED_TOKEN"),
        path(r, "ANGEL_FEED_TOKEN_FILE"),
    );
    let angel = match (r.secret("ANGEL_API_KEY"), r.secret("ANGEL_CLIENT_CODE")) {
        (Some(api_key), Some(client_code)) => {
            if angel_jwt.0.is_none() && angel_jwt.1.is_none() {
                return Err(ConfigError::Missing {
                    var: "ANGEL_JWT",
                    expected: "ANGEL_JWT or ANGEL_JWT_FILE, with ANGEL_API_KEY",
                });
            }
            if angel_ft.0.is_none() && angel_ft.1.is_none() {
                return Err(ConfigError::Missing {
                    var: "ANGEL_FEED_TOKEN",
                    expected: "ANGEL_FEED_TOKEN or ANGEL_FEED_TOKEN_FILE, with ANGEL_API_KEY",
                });
            }
            Some(AngelConfig {
                ws_url: ws(r, "ANGEL_WS_URL")?,
                api_key,
                client_code,
                jwt: angel_jwt.0,
                jwt_file: angel_jwt.1,
                feed_token: angel_ft.0,
                feed_token_file: angel_ft.1,
            })
        }
        (None, None) => None,
        (Some(_), None) => {
            return Err(ConfigError::Missing {
                var: "ANGEL_CLIENT_CODE",
                expected: "set together with ANGEL_API_KEY",
            })
        }
        (None, Some(_)) => {
            return Err(ConfigError::Missing {
                var: "ANGEL_API_KEY",
                expected: "set together with ANGEL_CLIENT_CODE",
            })
        }
    };
    let dhan_tok = (
        r.secret("DHAN_ACCESS_TOKEN"),
        path(r, "DHAN_ACCESS_TOKEN_FILE"),
    );
    let dhan = match r.secret("DHAN_CLIENT_ID") {
        Some(client_id) => {
            if dhan_tok.0.is_none() && dhan_tok.1.is_none() {
                return Err(ConfigError::Missing {
                    var: "DHAN_ACCESS_TOKEN",
                    expected: "DHAN_ACCESS_TOKEN or DHAN_ACCESS_TOKEN_FILE, with DHAN_CLIENT_ID",
                });
            }
            Some(DhanConfig {
                ws_url: ws(r, "DHAN_WS_URL")?,
                client_id,
                access_token: dhan_tok.0,
                access_token_file: dhan_tok.1,
            })
        }
        None => None,
    };
    // The JSON feed (`json`) may be named like any vendor: as a primary it takes every
    // `EXCHANGE:SYMBOL` entry (it lists them all), as the standby it doubles every symbol.
    const ORDER: &str = "comma-separated vendor names: kite, upstox, angel, dhan, json";
    let order = r
        .list("VENDOR_ORDER")
        .iter()
        .map(|n| {
            Vendor::from_name(n).ok_or(ConfigError::Invalid {
                var: "VENDOR_ORDER",
                expected: ORDER,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let standby = match r.raw("STANDBY_VENDOR") {
        None => None,
        Some(n) => Some(Vendor::from_name(&n).ok_or(ConfigError::Invalid {
            var: "STANDBY_VENDOR",
            expected: "kite, upstox, angel, dhan or json",
        })?),
    };
    let urls = [
        (Vendor::Kite, "KITE_INSTRUMENTS_URL"),
        (Vendor::Upstox, "UPSTOX_INSTRUMENTS_URL"),
        (Vendor::Angel, "ANGEL_INSTRUMENTS_URL"),
        (Vendor::Dhan, "DHAN_INSTRUMENTS_URL"),
    ];
    Ok(VendorsConfig {
        angel,
        dhan,
        json: json_feed(r)?,
        kite_token_file: path(r, "KITE_ACCESS_TOKEN_FILE"),
        upstox_token_file: path(r, "UPSTOX_ACCESS_TOKEN_FILE"),
        subscribe_file: path(r, "SUBSCRIBE_FILE"),
        order,
        standby,
        instruments_cache_dir: PathBuf::from(
            r.raw("INSTRUMENTS_CACHE_DIR")
                .unwrap_or_else(|| ".state/instruments".to_owned()),
        ),
        instruments_url: urls
            .iter()
            .map(|(v, n)| (*v, r.raw(n).unwrap_or_default()))
            .collect(),
    })
}
