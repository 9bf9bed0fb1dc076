//! The instrument master: each vendor's instrument list, loaded, cached on disk, refreshed daily,
//! and resolving the canonical `EXCHANGE:SYMBOL` to the vendor's key and back.
//!
//! Formats ([`formats`]): Kite's CSV dump (vendor-protocols §1, `vendor-samples/kite`), Upstox's
//! JSON list (plain JSON; the published `.json.gz` must be decompressed first: no gzip decoder
//! is linked), Angel's scrip-master JSON and Dhan's scrip-master CSV.
//!
//! Keys: Kite the decimal instrument token; Upstox the instrument key (`NSE_EQ|INE009A01021`);
//! Angel `<exchangeType>|<token>` (`1|1594`); Dhan `<ExchangeSegment>|<SecurityId>`
//! (`NSE_EQ|1594`). Canonical names are Kite's `exchange:tradingsymbol` convention (`NSE:INFY`,
//! `NFO:BANKNIFTY25DECFUT`, `NSE:NIFTY 50`); each vendor's list is mapped onto it.
//!
//! Caching ([`load`]): the list is fetched from its URL (or read from a local path) and written
//! to `<cache_dir>/<vendor>.instruments` with its fetch time beside it. A cache fetched after the
//! last daily refresh mark (08:00 IST, after the vendors publish the day's lists) is used as is;
//! an older one is refreshed, and when the fetch fails the old cache is reused (offline start)
//! with a warning. A running engine reloads after each mark ([`refresh`]).

pub mod formats;
pub mod names;
pub mod refresh;

use std::{
    collections::HashMap,
    fs,
    io::Read as _,
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::vendor::Vendor;

/// One instrument of one vendor.
#[derive(Debug, Clone, PartialEq)]
pub struct InstrumentRecord {
    /// Canonical `EXCHANGE:SYMBOL`.
    pub symbol: Box<str>,
    /// The vendor's key (see the module docs).
    pub key: Box<str>,
    /// The vendor's numeric token where it has one (Kite instrument token, Angel token, Dhan
    /// security id); 0 otherwise.
    pub token: u32,
    /// Tick size in rupees where the list gives it; 0 when unknown.
    pub tick_size: f64,
}

/// One vendor's instrument list, indexed both ways.
#[derive(Debug, Clone, Default)]
pub struct VendorMaster {
    records: Vec<InstrumentRecord>,
    by_symbol: HashMap<Box<str>, usize>,
    by_key: HashMap<Box<str>, usize>,
}

impl VendorMaster {
    /// Indexes `records`; on a duplicate symbol the first record wins (lists put the main
    /// listing first).
    pub fn new(records: Vec<InstrumentRecord>) -> Self {
        let mut by_symbol = HashMap::with_capacity(records.len());
        let mut by_key = HashMap::with_capacity(records.len());
        for (i, r) in records.iter().enumerate() {
            by_symbol.entry(r.symbol.clone()).or_insert(i);
            by_key.entry(r.key.clone()).or_insert(i);
        }
        VendorMaster {
            records,
            by_symbol,
            by_key,
        }
    }

    /// The record of a canonical symbol (case-insensitive on the exchange and symbol).
    pub fn resolve(&self, symbol: &str) -> Option<&InstrumentRecord> {
        let i = match self.by_symbol.get(symbol) {
            Some(i) => *i,
            None => *self.by_symbol.get(canonical(symbol).as_str())?,
        };
        self.records.get(i)
    }

    /// The canonical symbol of a vendor key.
    pub fn symbol_of(&self, key: &str) -> Option<&str> {
        self.by_key
            .get(key)
            .and_then(|&i| self.records.get(i))
            .map(|r| &*r.symbol)
    }

    /// Instruments in the list.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// True when the list is empty.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// Upper-cases and trims a symbol (`nse:infy` -> `NSE:INFY`).
pub fn canonical(symbol: &str) -> String {
    symbol.trim().to_ascii_uppercase()
}

/// Why an instrument list could not be loaded.
#[derive(Debug, Error)]
pub enum InstrumentError {
    /// Fetching failed and no cache exists.
    #[error("{vendor} instrument list: fetch failed ({reason}) and no cache exists")]
    Unavailable {
        /// Vendor.
        vendor: Vendor,
        /// Why the fetch failed.
        reason: String,
    },
    /// The list does not parse as the vendor's format.
    #[error("{vendor} instrument list: {reason}")]
    Format {
        /// Vendor.
        vendor: Vendor,
        /// What is wrong.
        reason: String,
    },
    /// The cache could not be written.
    #[error("instrument cache {path}: {source}")]
    Cache {
        /// The cache path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No URL or path is configured for the vendor.
    #[error("{0} instrument list: no URL or path configured")]
    NotConfigured(Vendor),
}

impl crate::error::ErrorCode for InstrumentError {
    fn code(&self) -> &'static str {
        match self {
            InstrumentError::Unavailable { .. } => "INSTRUMENTS_UNAVAILABLE",
            InstrumentError::Format { .. } => "INSTRUMENTS_FORMAT",
            InstrumentError::Cache { .. } => "INSTRUMENTS_CACHE",
            InstrumentError::NotConfigured(_) => "INSTRUMENTS_NOT_CONFIGURED",
        }
    }
}

/// Where a vendor's list comes from.
#[derive(Debug, Clone)]
pub struct MasterSource {
    /// The vendor.
    pub vendor: Vendor,
    /// `http(s)://` URL or a local file path.
    pub location: String,
    /// Cache directory.
    pub cache_dir: PathBuf,
    /// Fetch timeout. Default in config 30 s.
    pub timeout: Duration,
}

/// How a [`load`] was served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadedFrom {
    /// Downloaded (or read from the configured path) now; cache rewritten.
    Fetched,
    /// The cache was fresh.
    Cache,
    /// The fetch failed; a stale cache was reused.
    StaleCache,
}

/// Seconds after UTC midnight of the daily refresh mark: 08:00 IST = 02:30 UTC.
pub const REFRESH_MARK_UTC_S: u64 = 2 * 3600 + 30 * 60;

/// The latest refresh mark at or before `now_s` (unix seconds).
pub fn last_refresh_mark(now_s: u64) -> u64 {
    let day = now_s.saturating_sub(REFRESH_MARK_UTC_S) / 86_400;
    day * 86_400 + REFRESH_MARK_UTC_S
}

fn cache_paths(src: &MasterSource) -> (PathBuf, PathBuf) {
    let base = src.cache_dir.join(src.vendor.as_str());
    (
        base.with_extension("instruments"),
        base.with_extension("fetched_at"),
    )
}

fn fetch(src: &MasterSource) -> Result<Vec<u8>, String> {
    let loc = src.location.as_str();
    if loc.starts_with("http://") || loc.starts_with("https://") {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(src.timeout))
            .http_status_as_error(false)
            .build()
            .into();
        let mut resp = agent.get(loc).call().map_err(|e| e.to_string())?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(format!("http status {status}"));
        }
        let mut body = Vec::new();
        resp.body_mut()
            .with_config()
            .limit(512 << 20)
            .reader()
            .read_to_end(&mut body)
            .map_err(|e| e.to_string())?;
        Ok(body)
    } else if loc.is_empty() {
        Err("not configured".to_owned())
    } else {
        fs::read(loc).map_err(|e| e.kind().to_string())
    }
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), InstrumentError> {
    let tmp = path.with_extension("tmp");
    let err = |source| InstrumentError::Cache {
        path: path.to_owned(),
        source,
    };
    fs::write(&tmp, bytes).map_err(err)?;
    fs::rename(&tmp, path).map_err(err)
}

/// Loads `src`'s list at `now_s` (unix seconds): from a cache fetched after the last refresh
/// mark, else fetched anew (and cached), else from a stale cache.
///
/// # Errors
/// [`InstrumentError::Unavailable`] when the fetch fails and there is no cache;
/// [`InstrumentError::Format`] when the bytes do not parse; [`InstrumentError::Cache`] when the
/// cache cannot be written.
pub fn load(src: &MasterSource, now_s: u64) -> Result<(VendorMaster, LoadedFrom), InstrumentError> {
    let (data_path, meta_path) = cache_paths(src);
    let fetched_at: Option<u64> = fs::read_to_string(&meta_path)
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let cached = fs::read(&data_path).ok();
    if let (Some(at), Some(bytes)) = (fetched_at, &cached) {
        if at >= last_refresh_mark(now_s) && at <= now_s {
            return Ok((formats::parse(src.vendor, bytes)?, LoadedFrom::Cache));
        }
    }
    match fetch(src) {
        Ok(bytes) => {
            // Parse before caching, so a bad download never replaces a good cache.
            let master = formats::parse(src.vendor, &bytes)?;
            fs::create_dir_all(&src.cache_dir).map_err(|source| InstrumentError::Cache {
                path: src.cache_dir.clone(),
                source,
            })?;
            write_atomic(&data_path, &bytes)?;
            write_atomic(&meta_path, now_s.to_string().as_bytes())?;
            log::info!(event = "instruments_fetched", vendor = src.vendor.as_str(), count = master.len(); "instrument list refreshed");
            Ok((master, LoadedFrom::Fetched))
        }
        Err(reason) => match cached {
            Some(bytes) => {
                log::warn!(event = "instruments_stale_cache", vendor = src.vendor.as_str(), reason = reason.as_str(); "instrument list fetch failed; using the cached list");
                Ok((formats::parse(src.vendor, &bytes)?, LoadedFrom::StaleCache))
            }
            None if src.location.is_empty() => Err(InstrumentError::NotConfigured(src.vendor)),
            None => Err(InstrumentError::Unavailable {
                vendor: src.vendor,
                reason: crate::redact::redact(&reason),
            }),
        },
    }
}

/// True when a list loaded at `loaded_s` is due for its daily refresh at `now_s`.
pub fn refresh_due(loaded_s: u64, now_s: u64) -> bool {
    loaded_s < last_refresh_mark(now_s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refresh_mark_is_0800_ist() {
        // 2024-11-27 02:29:59 UTC is before the mark: the previous day's mark applies.
        let day = 1_732_665_600; // 2024-11-27 00:00 UTC
        assert_eq!(last_refresh_mark(day + 9_000), day + 9_000);
        assert_eq!(last_refresh_mark(day + 8_999), day - 86_400 + 9_000);
        assert!(refresh_due(day + 8_000, day + 9_001));
        assert!(!refresh_due(day + 9_500, day + 80_000));
    }
}
