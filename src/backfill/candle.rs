//! Candles: the interval vocabulary, the vendors' JSON candle arrays, IST timestamp parsing, the
//! validity rule, and the Kafka payload (`docs/candles.md`).

use serde::Serialize;

use crate::calendar::{IST_OFFSET_MS, MINUTE_MS};

/// A candle interval in whole minutes (1, 3, 5, 10, 15, 30 or 60: what both Kite and Upstox
/// serve for minute candles).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Interval(u32);

impl Interval {
    /// One-minute candles, the default.
    pub const MINUTE: Interval = Interval(1);

    /// Parses `minute`, `1minute`, `5minute`, `5m`, `5min` or `5`.
    pub fn parse(s: &str) -> Option<Interval> {
        let s = s.trim().to_ascii_lowercase();
        if s == "minute" {
            return Some(Interval::MINUTE);
        }
        let digits = s.trim_end_matches(|c: char| c.is_ascii_alphabetic());
        let unit = &s[digits.len()..];
        if !matches!(unit, "" | "m" | "min" | "minute" | "minutes") {
            return None;
        }
        match digits.parse::<u32>().ok()? {
            n @ (1 | 3 | 5 | 10 | 15 | 30 | 60) => Some(Interval(n)),
            _ => None,
        }
    }

    /// Minutes per candle.
    pub const fn minutes(self) -> u32 {
        self.0
    }

    /// Milliseconds per candle.
    pub const fn ms(self) -> i64 {
        self.0 as i64 * MINUTE_MS
    }

    /// Kite's name for it (`minute`, `5minute`, ...), also used in payloads and Redis keys.
    pub fn name(self) -> String {
        if self.0 == 1 {
            "minute".to_owned()
        } else {
            format!("{}minute", self.0)
        }
    }
}

/// One OHLC candle as a vendor sent it, start time normalised to Unix ms (UTC).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candle {
    /// Candle start, Unix ms.
    pub ts_ms: i64,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume traded in the interval.
    pub volume: f64,
    /// Open interest, when the vendor sent it.
    pub oi: Option<f64>,
}

impl Candle {
    /// The validity rule before anything reaches Kafka: finite positive prices, `low <= open,
    /// close <= high`, volume finite and not negative.
    pub fn is_valid(&self) -> bool {
        let prices = [self.open, self.high, self.low, self.close];
        prices.iter().all(|p| p.is_finite() && *p > 0.0)
            && self.low <= self.open.min(self.close)
            && self.high >= self.open.max(self.close)
            && self.volume.is_finite()
            && self.volume >= 0.0
            && self.oi.is_none_or(|o| o.is_finite() && o >= 0.0)
    }
}

/// Parses a vendor candle time: `2017-12-15T09:15:00+0530` (Kite, no colon in the offset),
/// `2023-10-01T00:00:00+05:30` (Upstox), or with `Z`. Returns Unix ms.
pub fn parse_time(s: &str) -> Option<i64> {
    let s = s.trim();
    let date = crate::calendar::parse_date(s.get(0..10)?)?;
    if s.get(10..11)? != "T" {
        return None;
    }
    let hh: i64 = s.get(11..13)?.parse().ok()?;
    let mm: i64 = s.get(14..16)?.parse().ok()?;
    let ss: i64 = s.get(17..19)?.parse().ok()?;
    if s.get(13..14)? != ":" || s.get(16..17)? != ":" || hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut rest = s.get(19..)?;
    // Fractional seconds, if any, are dropped: candles start on whole minutes.
    if let Some(frac) = rest.strip_prefix('.') {
        rest = frac.trim_start_matches(|c: char| c.is_ascii_digit());
    }
    let offset_ms = match rest {
        "Z" | "" => 0,
        _ => {
            let sign = match rest.get(0..1)? {
                "+" => 1,
                "-" => -1,
                _ => return None,
            };
            let digits: String = rest.get(1..)?.chars().filter(|c| *c != ':').collect();
            if digits.len() != 4 {
                return None;
            }
            let oh: i64 = digits.get(0..2)?.parse().ok()?;
            let om: i64 = digits.get(2..4)?.parse().ok()?;
            sign * (oh * 3_600_000 + om * 60_000)
        }
    };
    let local = crate::clock::days_from_date(date) * 86_400_000 + (hh * 3600 + mm * 60 + ss) * 1000;
    Some(local - offset_ms)
}

fn num(v: Option<&serde_json::Value>) -> Option<f64> {
    v.and_then(serde_json::Value::as_f64)
}

/// Reads `{"status":"success","data":{"candles":[[ts,o,h,l,c,vol(,oi)],...]}}` (both Kite and
/// Upstox). Rows that do not parse are counted in the second value, not fatal.
///
/// # Errors
/// A short reason when the body is not that shape or reports an error.
pub fn parse_candles(body: &str) -> Result<(Vec<Candle>, usize), String> {
    let v: serde_json::Value = serde_json::from_str(body).map_err(|e| format!("not JSON: {e}"))?;
    match v.get("status").and_then(serde_json::Value::as_str) {
        Some("success") => {}
        Some(other) => {
            let msg = v
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("");
            return Err(format!(
                "status {other}: {}",
                msg.chars().take(200).collect::<String>()
            ));
        }
        None => return Err("no status field".into()),
    }
    let rows = v
        .get("data")
        .and_then(|d| d.get("candles"))
        .and_then(serde_json::Value::as_array)
        .ok_or("no data.candles array")?;
    let mut out = Vec::with_capacity(rows.len());
    let mut bad = 0;
    for row in rows {
        let Some(a) = row.as_array() else {
            bad += 1;
            continue;
        };
        let ts = a
            .first()
            .and_then(serde_json::Value::as_str)
            .and_then(parse_time);
        let c = ts.and_then(|ts_ms| {
            Some(Candle {
                ts_ms,
                open: num(a.get(1))?,
                high: num(a.get(2))?,
                low: num(a.get(3))?,
                close: num(a.get(4))?,
                volume: num(a.get(5))?,
                oi: num(a.get(6)),
            })
        });
        match c {
            Some(c) => out.push(c),
            None => bad += 1,
        }
    }
    Ok((out, bad))
}

/// The Kafka payload of one candle (`docs/candles.md`). Deterministic for a given candle, so a
/// consumer can deduplicate on (key, `interval`, `ts`) or on the bytes.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CandleRecord<'a> {
    /// Always `candle`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Canonical instrument, `EXCHANGE:SYMBOL` (also the Kafka key).
    pub instrument: &'a str,
    /// Exchange part of the instrument.
    pub exchange: &'a str,
    /// Interval name (`minute`, `5minute`, ...).
    pub interval: &'a str,
    /// Candle start, Unix ms UTC.
    pub ts: i64,
    /// Candle start as IST wall time, `YYYY-MM-DDTHH:MM:00+05:30`.
    pub ts_ist: String,
    /// Open.
    pub open: f64,
    /// High.
    pub high: f64,
    /// Low.
    pub low: f64,
    /// Close.
    pub close: f64,
    /// Volume.
    pub volume: f64,
    /// Open interest, or null.
    pub oi: Option<f64>,
    /// Vendor the candle came from.
    pub vendor: &'static str,
    /// The vendor's instrument token or key.
    pub vendor_token: &'a str,
    /// Always `backfill`.
    pub source: &'static str,
}

/// Formats Unix ms as IST wall time with offset, e.g. `2026-11-27T09:15:00+05:30`.
pub fn format_ist(ts_ms: i64) -> String {
    let local = ts_ms + IST_OFFSET_MS;
    let d = crate::clock::date_from_days(local.div_euclid(86_400_000));
    let sod = local.rem_euclid(86_400_000) / 1000;
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+05:30",
        d.year,
        d.month,
        d.day,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals() {
        assert_eq!(Interval::parse("minute"), Some(Interval::MINUTE));
        assert_eq!(Interval::parse("1minute"), Some(Interval::MINUTE));
        assert_eq!(Interval::parse("5minute").map(Interval::minutes), Some(5));
        assert_eq!(Interval::parse("15m").map(Interval::minutes), Some(15));
        assert_eq!(Interval::parse("7minute"), None);
        assert_eq!(Interval::parse("day"), None);
        assert_eq!(Interval::parse("5hours"), None);
        assert_eq!(Interval(5).name(), "5minute");
    }

    #[test]
    fn vendor_times_normalise_to_utc() {
        // 09:15 IST = 03:45 UTC.
        let kite = parse_time("2017-12-15T09:15:00+0530").expect("kite form");
        assert_eq!(
            crate::clock::format_rfc3339_ms(kite as u64 * 1_000_000),
            "2017-12-15T03:45:00.000Z"
        );
        assert_eq!(parse_time("2017-12-15T09:15:00+05:30"), Some(kite));
        assert_eq!(parse_time("2017-12-15T03:45:00Z"), Some(kite));
        assert_eq!(format_ist(kite), "2017-12-15T09:15:00+05:30");
        assert_eq!(parse_time("2017-12-15 09:15:00"), None);
        assert_eq!(parse_time("2017-13-15T09:15:00+0530"), None);
        assert_eq!(parse_time("garbage"), None);
    }

    #[test]
    fn kite_sample_parses() {
        let body = include_str!("../../tests/fixtures/kite/historical_minute.json");
        let (candles, bad) = parse_candles(body).expect("sample");
        assert_eq!(bad, 0);
        assert!(!candles.is_empty());
        assert!(candles.iter().all(Candle::is_valid));
        assert!(candles
            .windows(2)
            .all(|w| w[1].ts_ms - w[0].ts_ms == 60_000));
        let oi = include_str!("../../tests/fixtures/kite/historical_oi.json");
        let (candles, _) = parse_candles(oi).expect("oi sample");
        assert!(candles.iter().all(|c| c.oi.is_some()));
        assert!(parse_candles(
            r#"{"status":"error","message":"Incorrect api_key","error_type":"TokenException"}"#
        )
        .is_err());
        assert!(parse_candles("<html>").is_err());
    }

    #[test]
    fn validity() {
        let ok = Candle {
            ts_ms: 0,
            open: 10.0,
            high: 11.0,
            low: 9.0,
            close: 10.5,
            volume: 0.0,
            oi: None,
        };
        assert!(ok.is_valid());
        assert!(!Candle { high: 10.2, ..ok }.is_valid());
        assert!(!Candle { low: 10.1, ..ok }.is_valid());
        assert!(!Candle { volume: -1.0, ..ok }.is_valid());
        assert!(!Candle {
            open: f64::NAN,
            ..ok
        }
        .is_valid());
    }
}
