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

/// Vendor-wide settings added with issue 6.
#[derive(Debug, Clone)]
pub struct VendorsConfig {
    /// Angel, when its credentials are set.
    pub angel: Option<AngelConfig>,
    /// Dhan, when its credentials are set.
    pub dhan: Option<DhanConfig>,
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
    const ORDER: &str = "comma-separated vendor names: kite, upstox, angel, dhan";
    let order = r
        .list("VENDOR_ORDER")
        .iter()
        .map(|n| {
            Vendor::from_name(n)
                .filter(|v| *v != Vendor::Json)
                .ok_or(ConfigError::Invalid {
                    var: "VENDOR_ORDER",
                    expected: ORDER,
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let standby = match r.raw("STANDBY_VENDOR") {
        None => None,
        Some(n) => Some(Vendor::from_name(&n).filter(|v| *v != Vendor::Json).ok_or(
            ConfigError::Invalid {
                var: "STANDBY_VENDOR",
                expected: "kite, upstox, angel or dhan",
            },
        )?),
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
