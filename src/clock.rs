//! Wall-clock helpers: the one place that reads the system clock and formats time.
//!
//! Parsers never read the clock (they are given receive times); threads that need "now" call
//! [`now_unix_ns`] once per batch, not once per tick.

use std::time::{SystemTime, UNIX_EPOCH};

/// Nanoseconds since the Unix epoch (0 if the clock is before 1970, which only a broken host has).
pub fn now_unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch.
pub fn now_unix_ms() -> u64 {
    now_unix_ns() / 1_000_000
}

/// A civil (proleptic Gregorian) date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Date {
    /// Year, e.g. 2026.
    pub year: i32,
    /// Month 1..=12.
    pub month: u32,
    /// Day of month 1..=31.
    pub day: u32,
}

/// Converts days since 1970-01-01 to a civil date (Howard Hinnant's `civil_from_days`).
pub fn date_from_days(days: i64) -> Date {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    Date {
        year: i32::try_from(year).unwrap_or(i32::MAX),
        month: u32::try_from(month).unwrap_or(1),
        day: u32::try_from(day).unwrap_or(1),
    }
}

/// Converts a civil date to days since 1970-01-01 (Howard Hinnant's `days_from_civil`).
pub fn days_from_date(d: Date) -> i64 {
    let y = i64::from(d.year) - i64::from(d.month <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(d.month);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d.day) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Formats Unix nanoseconds as RFC 3339 UTC with milliseconds, e.g. `2026-11-27T13:51:10.123Z`.
pub fn format_rfc3339_ms(unix_ns: u64) -> String {
    let ms_total = unix_ns / 1_000_000;
    let secs = i64::try_from(ms_total / 1000).unwrap_or(i64::MAX);
    let ms = ms_total % 1000;
    let date = date_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.year,
        date.month,
        date.day,
        sod / 3600,
        (sod % 3600) / 60,
        sod % 60,
        ms
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        // 2026-11-27T13:51:10.123Z
        assert_eq!(
            format_rfc3339_ms(1_795_787_470_123_000_000),
            "2026-11-27T13:51:10.123Z"
        );
        assert_eq!(
            format_rfc3339_ms(951_782_400_000_000_000),
            "2000-02-29T00:00:00.000Z"
        );
    }

    #[test]
    fn days_round_trip() {
        for days in [-800_000_i64, -1, 0, 1, 10_957, 20_000, 2_932_896] {
            assert_eq!(days_from_date(date_from_days(days)), days);
        }
        let d = Date {
            year: 2026,
            month: 11,
            day: 27,
        };
        assert_eq!(date_from_days(days_from_date(d)), d);
    }
}
