//! [`BackfillConfig`]: the historical backfill's variables (`BACKFILL_*`, vendor REST base URLs,
//! the holidays file), read with the same rules as every other variable.

use std::{path::PathBuf, time::Duration};

use super::{url, ConfigError, Reader};
use crate::backfill::{BackfillInstrument, Interval};

/// Historical backfill settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackfillConfig {
    /// Start a job by itself after each market close and at start-up when a closed period was
    /// missed (`BACKFILL_AUTO`, default true).
    pub auto: bool,
    /// Wait this long after a close before the automatic job, so vendors have final candles
    /// (`BACKFILL_AUTO_DELAY_MS`, default 10 minutes).
    pub auto_delay: Duration,
    /// Trading days covered by a job without a `days` parameter (`BACKFILL_DAYS`, default 5).
    pub days: u32,
    /// Candle interval by default (`BACKFILL_INTERVAL`, default 1 minute).
    pub interval: Interval,
    /// Instruments to backfill until the instrument master exists (`BACKFILL_INSTRUMENTS`).
    pub instruments: Vec<BackfillInstrument>,
    /// User copy of the holiday list (`HOLIDAYS_FILE`); the compiled-in copy when unreadable.
    pub holidays_file: Option<PathBuf>,
    /// Kite REST base URL (`KITE_API_URL`).
    pub kite_api_url: String,
    /// Upstox REST base URL (`UPSTOX_API_URL`).
    pub upstox_api_url: String,
    /// Kite historical requests per second (`KITE_HISTORICAL_RPS`, default 3).
    pub kite_rps: u32,
    /// Upstox historical requests per second (`UPSTOX_HISTORICAL_RPS`, default 50).
    pub upstox_rps: u32,
}

pub(super) fn read(r: &Reader<'_>) -> Result<BackfillConfig, ConfigError> {
    const INTERVAL: &str = "minute, 3minute, 5minute, 10minute, 15minute, 30minute or 60minute";
    const INSTRUMENTS: &str =
        "comma-separated vendor:token=EXCHANGE:SYMBOL, e.g. kite:408065=NSE:INFY";
    let interval =
        Interval::parse(&r.string("BACKFILL_INTERVAL", INTERVAL)?).ok_or(ConfigError::Invalid {
            var: "BACKFILL_INTERVAL",
            expected: INTERVAL,
        })?;
    let instruments = match r.raw("BACKFILL_INSTRUMENTS") {
        Some(v) => BackfillInstrument::parse_list(&v).map_err(|_| ConfigError::Invalid {
            var: "BACKFILL_INSTRUMENTS",
            expected: INSTRUMENTS,
        })?,
        None => Vec::new(),
    };
    Ok(BackfillConfig {
        auto: r.boolean("BACKFILL_AUTO")?,
        auto_delay: r.millis(
            "BACKFILL_AUTO_DELAY_MS",
            0,
            86_400_000,
            "milliseconds 0..=86400000",
        )?,
        days: r.num("BACKFILL_DAYS", 1, 30, "trading days 1..=30")?,
        interval,
        instruments,
        holidays_file: r.raw("HOLIDAYS_FILE").map(PathBuf::from),
        kite_api_url: url(
            r,
            "KITE_API_URL",
            &["https", "http"],
            "an https:// URL (http:// only for a local simulator)",
        )?,
        upstox_api_url: url(
            r,
            "UPSTOX_API_URL",
            &["https", "http"],
            "an https:// URL (http:// only for a local simulator)",
        )?,
        kite_rps: r.num(
            "KITE_HISTORICAL_RPS",
            1,
            1000,
            "requests per second 1..=1000",
        )?,
        upstox_rps: r.num(
            "UPSTOX_HISTORICAL_RPS",
            1,
            1000,
            "requests per second 1..=1000",
        )?,
    })
}
