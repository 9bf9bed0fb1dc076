//! The NSE/BSE trading calendar: IST time arithmetic, sessions, exchange holidays and special
//! sessions, the market status, and "the last N trading days" as the backfill needs them.
//!
//! Definitions (`vendor-protocols.md` section 6):
//! - IST is UTC+05:30 with no daylight saving, so IST civil time is a fixed offset from UTC;
//! - a *trading day* is an exchange session, not a weekday: Monday to Friday unless listed as a
//!   holiday, plus special sessions (Saturday/Sunday budget days, Muhurat) listed in the data file;
//! - a regular session has pre-open 09:00-09:08, the normal market 09:15-15:30 and the closing
//!   session 15:40-16:00; a special session keeps the same offsets around its own hours;
//! - the market is *closed* when the time is outside the normal market of a trading day, or the
//!   day is not a session;
//! - the last N trading days are the last N sessions whose normal market has ended by `now`
//!   (today counts only once its session is over).
//!
//! The holiday list lives in `data/holidays.csv` (compiled in as the fallback; a user copy is
//! loaded from `HOLIDAYS_FILE` at start-up). Dates use [`crate::clock`]'s civil-date helpers.

mod error;

use std::{collections::HashMap, path::Path};

pub use error::CalendarError;

use crate::clock::{date_from_days, days_from_date, Date};

/// IST minus UTC, in milliseconds (+05:30, no daylight saving).
pub const IST_OFFSET_MS: i64 = 19_800_000;
/// One minute in milliseconds.
pub const MINUTE_MS: i64 = 60_000;
/// One day in milliseconds.
pub const DAY_MS: i64 = 86_400_000;
/// Minutes in a day.
pub const MINUTES_PER_DAY: u32 = 1440;

/// The compiled-in copy of `data/holidays.csv`.
pub const BUILTIN_HOLIDAYS: &str = include_str!("../../data/holidays.csv");

/// The IST civil day (days since 1970-01-01) of a Unix millisecond instant.
pub fn ist_day(unix_ms: i64) -> i64 {
    (unix_ms + IST_OFFSET_MS).div_euclid(DAY_MS)
}

/// The IST civil date of a Unix millisecond instant.
pub fn ist_date(unix_ms: i64) -> Date {
    date_from_days(ist_day(unix_ms))
}

/// Minutes since IST midnight (0..1440) of a Unix millisecond instant.
pub fn ist_minute_of_day(unix_ms: i64) -> u32 {
    // rem_euclid is in 0..DAY_MS, so the quotient is in 0..1440 and fits.
    u32::try_from((unix_ms + IST_OFFSET_MS).rem_euclid(DAY_MS) / MINUTE_MS).unwrap_or(0)
}

/// The Unix millisecond instant of IST `minute` (minutes since midnight) on IST civil `day`.
pub fn utc_ms(day: i64, minute: u32) -> i64 {
    day * DAY_MS + i64::from(minute) * MINUTE_MS - IST_OFFSET_MS
}

/// Day of week of a civil day: 0 = Monday .. 6 = Sunday (1970-01-01 was a Thursday).
pub fn weekday(day: i64) -> u32 {
    u32::try_from((day + 3).rem_euclid(7)).unwrap_or(0)
}

/// Formats a civil date as `YYYY-MM-DD`.
pub fn format_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year, d.month, d.day)
}

/// Parses `YYYY-MM-DD` into a civil date, validating month and day.
pub fn parse_date(s: &str) -> Option<Date> {
    let mut it = s.trim().splitn(3, '-');
    let year: i32 = it.next()?.parse().ok()?;
    let month: u32 = it.next()?.parse().ok()?;
    let day: u32 = it.next()?.parse().ok()?;
    let d = Date { year, month, day };
    // Round-tripping through the day count rejects 2026-02-30 and friends.
    (date_from_days(days_from_date(d)) == d && (1..=12).contains(&month)).then_some(d)
}

/// Parses `HH:MM` into minutes since midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.trim().split_once(':')?;
    let (h, m): (u32, u32) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Normal-market hours of one session, in IST minutes since midnight (`open` inclusive,
/// `close` exclusive: the last 1-minute candle of 09:15-15:30 starts at 15:29).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionHours {
    /// Normal market opens (09:15 = 555).
    pub open: u32,
    /// Normal market closes (15:30 = 930).
    pub close: u32,
}

impl SessionHours {
    /// The regular NSE/BSE equity session, 09:15-15:30.
    pub const REGULAR: SessionHours = SessionHours {
        open: 555,
        close: 930,
    };

    /// Pre-open order entry: 15 to 7 minutes before the open (09:00-09:08 regularly).
    pub fn pre_open(self) -> (u32, u32) {
        (self.open.saturating_sub(15), self.open.saturating_sub(7))
    }

    /// The closing session: 10 to 30 minutes after the close (15:40-16:00 regularly).
    pub fn closing(self) -> (u32, u32) {
        (self.close + 10, self.close + 30)
    }

    /// Minutes of normal market.
    pub fn minutes(self) -> u32 {
        self.close.saturating_sub(self.open)
    }
}

/// One trading session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// IST civil day (days since 1970-01-01).
    pub day: i64,
    /// Normal-market hours.
    pub hours: SessionHours,
    /// True for a special session (budget weekend, Muhurat) rather than a regular weekday.
    pub special: bool,
}

impl Session {
    /// The civil date.
    pub fn date(&self) -> Date {
        date_from_days(self.day)
    }

    /// Unix ms of the normal-market open.
    pub fn open_ms(&self) -> i64 {
        utc_ms(self.day, self.hours.open)
    }

    /// Unix ms of the normal-market close.
    pub fn close_ms(&self) -> i64 {
        utc_ms(self.day, self.hours.close)
    }
}

/// What kind of day a civil day is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DayKind {
    /// A weekday session.
    Regular,
    /// A special session on a day that would otherwise be closed.
    Special,
    /// Saturday or Sunday with no special session.
    Weekend,
    /// An exchange holiday on a weekday.
    Holiday,
}

/// The market's state at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MarketStatus {
    /// Pre-open order entry and matching, before the normal market.
    PreOpen,
    /// Normal market.
    Open,
    /// The closing session (trades at the closing price); the market counts as closed.
    Closing,
    /// A trading day outside its sessions, or a weekend.
    Closed,
    /// An exchange holiday.
    Holiday,
}

impl MarketStatus {
    /// Lower-case name for JSON and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarketStatus::PreOpen => "pre-open",
            MarketStatus::Open => "open",
            MarketStatus::Closing => "closing",
            MarketStatus::Closed => "closed",
            MarketStatus::Holiday => "holiday",
        }
    }

    /// True only during the normal market: everything else is "market closed" (section 6).
    pub const fn is_open(self) -> bool {
        matches!(self, MarketStatus::Open)
    }
}

/// The exchange calendar: holidays and special sessions over the weekday rule.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    holidays: HashMap<i64, String>,
    specials: HashMap<i64, (SessionHours, String)>,
}

/// How far back [`Calendar::last_trading_days`] looks before giving up (a year of holidays
/// could never hide more than this).
const MAX_LOOKBACK_DAYS: i64 = 400;

impl Calendar {
    /// The compiled-in calendar (`data/holidays.csv` as built). Its parse is unit-tested, so
    /// the empty fallback below is only reachable by editing the file without running the tests.
    pub fn builtin() -> Calendar {
        match Calendar::from_csv(BUILTIN_HOLIDAYS) {
            Ok(c) => c,
            Err(e) => {
                log::error!(event = "calendar_builtin_invalid", code = crate::error::ErrorCode::code(&e); "{e}");
                Calendar::default()
            }
        }
    }

    /// Loads `path` when given; on any error logs it and falls back to the compiled-in copy,
    /// so a bad user file never stops the engine (it only loses the user's edits).
    pub fn load(path: Option<&Path>) -> Calendar {
        let Some(path) = path else {
            return Calendar::builtin();
        };
        match Calendar::from_file(path) {
            Ok(c) => {
                log::info!(event = "calendar_loaded", holidays = c.holidays.len(), specials = c.specials.len(); "trading calendar loaded from {}", path.display());
                c
            }
            Err(e) => {
                log::warn!(event = "calendar_fallback", code = crate::error::ErrorCode::code(&e); "{e}; using the compiled-in holiday list");
                Calendar::builtin()
            }
        }
    }

    /// Reads and parses a holidays CSV file.
    ///
    /// # Errors
    /// [`CalendarError::Io`] when unreadable, [`CalendarError::Parse`] naming the bad line.
    pub fn from_file(path: &Path) -> Result<Calendar, CalendarError> {
        let text = std::fs::read_to_string(path).map_err(|e| CalendarError::Io {
            path: path.display().to_string(),
            kind: e.kind(),
        })?;
        Calendar::from_csv(&text)
    }

    /// Parses the CSV form documented at the top of `data/holidays.csv`.
    ///
    /// # Errors
    /// [`CalendarError::Parse`] with the 1-based line number and what was wrong.
    pub fn from_csv(text: &str) -> Result<Calendar, CalendarError> {
        let mut cal = Calendar::default();
        for (i, raw) in text.lines().enumerate() {
            let line_no = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with("date,") {
                continue;
            }
            let bad = |reason: &'static str| CalendarError::Parse {
                line: line_no,
                reason,
            };
            let cols: Vec<&str> = line.splitn(6, ',').map(str::trim).collect();
            let col = |n: usize| cols.get(n).copied().unwrap_or("");
            let date = parse_date(col(0)).ok_or(bad("date is not YYYY-MM-DD"))?;
            let day = days_from_date(date);
            let description = col(4).to_owned();
            match col(1) {
                "holiday" => {
                    cal.holidays.insert(day, description);
                }
                "special" => {
                    let open =
                        parse_hhmm(col(2)).ok_or(bad("special session needs open as HH:MM"))?;
                    let close =
                        parse_hhmm(col(3)).ok_or(bad("special session needs close as HH:MM"))?;
                    if close <= open {
                        return Err(bad("close must be after open"));
                    }
                    cal.specials
                        .insert(day, (SessionHours { open, close }, description));
                }
                _ => return Err(bad("kind must be holiday or special")),
            }
            match col(5) {
                "" | "confirmed" | "unconfirmed" => {}
                _ => return Err(bad("status must be confirmed or unconfirmed")),
            }
        }
        Ok(cal)
    }

    /// Adds a holiday (tests and callers that learn of a closure at run time).
    pub fn add_holiday(&mut self, date: Date, description: &str) {
        self.holidays
            .insert(days_from_date(date), description.to_owned());
    }

    /// Adds a special session.
    pub fn add_special(&mut self, date: Date, hours: SessionHours, description: &str) {
        self.specials
            .insert(days_from_date(date), (hours, description.to_owned()));
    }

    /// The kind of IST civil `day`.
    pub fn day_kind(&self, day: i64) -> DayKind {
        if self.specials.contains_key(&day) {
            DayKind::Special
        } else if weekday(day) >= 5 {
            DayKind::Weekend
        } else if self.holidays.contains_key(&day) {
            DayKind::Holiday
        } else {
            DayKind::Regular
        }
    }

    /// The holiday's description, when `day` is a listed holiday.
    pub fn holiday_name(&self, day: i64) -> Option<&str> {
        self.holidays.get(&day).map(String::as_str)
    }

    /// The session on `day`, if it is a trading day.
    pub fn session(&self, day: i64) -> Option<Session> {
        match self.day_kind(day) {
            DayKind::Regular => Some(Session {
                day,
                hours: SessionHours::REGULAR,
                special: false,
            }),
            DayKind::Special => self.specials.get(&day).map(|(hours, _)| Session {
                day,
                hours: *hours,
                special: true,
            }),
            DayKind::Weekend | DayKind::Holiday => None,
        }
    }

    /// The market status at `now_ms` (Unix ms).
    pub fn status(&self, now_ms: i64) -> MarketStatus {
        let day = ist_day(now_ms);
        let Some(s) = self.session(day) else {
            return if self.day_kind(day) == DayKind::Holiday {
                MarketStatus::Holiday
            } else {
                MarketStatus::Closed
            };
        };
        let minute = ist_minute_of_day(now_ms);
        let (pre_start, pre_end) = s.hours.pre_open();
        let (closing_start, closing_end) = s.hours.closing();
        if (s.hours.open..s.hours.close).contains(&minute) {
            MarketStatus::Open
        } else if (pre_start..pre_end).contains(&minute) {
            MarketStatus::PreOpen
        } else if (closing_start..closing_end).contains(&minute) {
            MarketStatus::Closing
        } else {
            MarketStatus::Closed
        }
    }

    /// True when the market is closed at `now_ms` (section 6, point 2).
    pub fn is_market_closed(&self, now_ms: i64) -> bool {
        !self.status(now_ms).is_open()
    }

    /// The last `n` sessions whose normal market ended at or before `now_ms`, oldest first.
    /// Fewer than `n` only if the calendar has no sessions for over a year back.
    pub fn last_trading_days(&self, now_ms: i64, n: usize) -> Vec<Session> {
        let mut out = Vec::with_capacity(n);
        let today = ist_day(now_ms);
        for back in 0..MAX_LOOKBACK_DAYS {
            if out.len() >= n {
                break;
            }
            if let Some(s) = self.session(today - back) {
                if s.close_ms() <= now_ms {
                    out.push(s);
                }
            }
        }
        out.reverse();
        out
    }

    /// The most recent session that has closed by `now_ms`.
    pub fn last_closed_session(&self, now_ms: i64) -> Option<Session> {
        self.last_trading_days(now_ms, 1).pop()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(y: i32, m: u32, d: u32) -> i64 {
        days_from_date(Date {
            year: y,
            month: m,
            day: d,
        })
    }

    /// Unix ms of an IST wall-clock time.
    fn ist(y: i32, m: u32, d: u32, hh: u32, mm: u32) -> i64 {
        utc_ms(day(y, m, d), hh * 60 + mm)
    }

    #[test]
    fn builtin_file_parses_and_every_holiday_is_a_weekday() {
        let c = Calendar::from_csv(BUILTIN_HOLIDAYS).expect("data/holidays.csv parses");
        assert!(c.holidays.len() >= 40, "2025-2027 listed");
        for d in c.holidays.keys() {
            assert!(
                weekday(*d) < 5,
                "{} is a weekend holiday",
                format_date(date_from_days(*d))
            );
        }
        for year in [2025, 2026, 2027] {
            assert!(
                c.holidays.keys().any(|d| date_from_days(*d).year == year),
                "{year} covered"
            );
        }
    }

    #[test]
    fn ist_day_boundary() {
        // 2026-11-26T18:29:59.999Z is 23:59:59.999 IST on the 26th; one ms later is the 27th.
        let before = ist(2026, 11, 27, 0, 0) - 1;
        assert_eq!(
            ist_date(before),
            Date {
                year: 2026,
                month: 11,
                day: 26
            }
        );
        assert_eq!(ist_minute_of_day(before), 1439);
        assert_eq!(
            ist_date(before + 1),
            Date {
                year: 2026,
                month: 11,
                day: 27
            }
        );
        assert_eq!(ist_minute_of_day(before + 1), 0);
        assert_eq!(
            crate::clock::format_rfc3339_ms((before + 1) as u64 * 1_000_000),
            "2026-11-26T18:30:00.000Z"
        );
        // 09:15 IST is 03:45 UTC.
        assert_eq!(
            crate::clock::format_rfc3339_ms(ist(2026, 11, 27, 9, 15) as u64 * 1_000_000),
            "2026-11-27T03:45:00.000Z"
        );
        // A UTC evening is already the next IST day: Friday 20:00 UTC is Saturday 01:30 IST.
        let fri_evening_utc = day(2026, 11, 27) * DAY_MS + 20 * 3_600_000;
        assert_eq!(
            ist_date(fri_evening_utc),
            Date {
                year: 2026,
                month: 11,
                day: 28
            }
        );
        let c = Calendar::builtin();
        assert_eq!(c.status(fri_evening_utc), MarketStatus::Closed);
        let last = c.last_trading_days(fri_evening_utc, 1);
        assert_eq!(
            last.first().map(Session::date),
            Some(Date {
                year: 2026,
                month: 11,
                day: 27
            })
        );
    }

    #[test]
    fn weekends_are_closed_and_skipped() {
        let c = Calendar::builtin();
        assert_eq!(weekday(day(2026, 11, 28)), 5, "2026-11-28 is a Saturday");
        assert_eq!(c.day_kind(day(2026, 11, 28)), DayKind::Weekend);
        assert_eq!(c.status(ist(2026, 11, 28, 10, 0)), MarketStatus::Closed);
        // Monday 30 Nov, 08:00: the last 5 trading days are Mon 23 .. Fri 27 (24 Nov is a
        // holiday, so the window starts a day earlier: 20, 23, 25, 26, 27).
        let days: Vec<u32> = c
            .last_trading_days(ist(2026, 11, 30, 8, 0), 5)
            .iter()
            .map(|s| s.date().day)
            .collect();
        assert_eq!(days, vec![20, 23, 25, 26, 27]);
    }

    #[test]
    fn a_holiday_is_not_a_trading_day() {
        let c = Calendar::builtin();
        let christmas = day(2025, 12, 25);
        assert_eq!(c.day_kind(christmas), DayKind::Holiday);
        assert_eq!(c.holiday_name(christmas), Some("Christmas"));
        assert_eq!(c.status(ist(2025, 12, 25, 11, 0)), MarketStatus::Holiday);
        assert!(c.is_market_closed(ist(2025, 12, 25, 11, 0)));
        // Friday 26 Dec after the close: 22, 23, 24, 26 and the Friday before (19).
        let days: Vec<(u32, u32)> = c
            .last_trading_days(ist(2025, 12, 26, 16, 0), 5)
            .iter()
            .map(|s| (s.date().month, s.date().day))
            .collect();
        assert_eq!(days, vec![(12, 19), (12, 22), (12, 23), (12, 24), (12, 26)]);
    }

    #[test]
    fn saturday_budget_session_trades() {
        let c = Calendar::builtin();
        let budget = day(2025, 2, 1);
        assert_eq!(weekday(budget), 5);
        assert_eq!(c.day_kind(budget), DayKind::Special);
        assert_eq!(c.status(ist(2025, 2, 1, 10, 0)), MarketStatus::Open);
        assert_eq!(c.status(ist(2025, 2, 1, 9, 3)), MarketStatus::PreOpen);
        // Monday 3 Feb before the open: Sat 1 Feb counts, Sun 2 Feb does not.
        let days: Vec<(u32, u32)> = c
            .last_trading_days(ist(2025, 2, 3, 8, 0), 3)
            .iter()
            .map(|s| (s.date().month, s.date().day))
            .collect();
        assert_eq!(days, vec![(1, 30), (1, 31), (2, 1)]);
        // Muhurat: a special session on a holiday, with its own hours.
        let muhurat = c.session(day(2025, 10, 21)).expect("muhurat session");
        assert_eq!(
            muhurat.hours,
            SessionHours {
                open: 13 * 60 + 45,
                close: 14 * 60 + 45
            }
        );
        assert_eq!(c.status(ist(2025, 10, 21, 10, 0)), MarketStatus::Closed);
        assert_eq!(c.status(ist(2025, 10, 21, 14, 0)), MarketStatus::Open);
    }

    #[test]
    fn sessions_and_today_only_once_ended() {
        let c = Calendar::builtin();
        // Friday 27 Nov 2026.
        assert_eq!(c.status(ist(2026, 11, 27, 9, 0)), MarketStatus::PreOpen);
        assert_eq!(c.status(ist(2026, 11, 27, 9, 10)), MarketStatus::Closed);
        assert_eq!(c.status(ist(2026, 11, 27, 9, 15)), MarketStatus::Open);
        assert_eq!(c.status(ist(2026, 11, 27, 15, 29)), MarketStatus::Open);
        assert_eq!(c.status(ist(2026, 11, 27, 15, 30)), MarketStatus::Closed);
        assert_eq!(c.status(ist(2026, 11, 27, 15, 45)), MarketStatus::Closing);
        assert_eq!(c.status(ist(2026, 11, 27, 16, 0)), MarketStatus::Closed);
        let during = c.last_trading_days(ist(2026, 11, 27, 12, 0), 1);
        assert_eq!(
            during.first().map(|s| s.date().day),
            Some(26),
            "today excluded while open"
        );
        let after = c.last_trading_days(ist(2026, 11, 27, 15, 30), 1);
        assert_eq!(
            after.first().map(|s| s.date().day),
            Some(27),
            "today counts once ended"
        );
        let s = after.first().copied().expect("session");
        assert_eq!(s.close_ms() - s.open_ms(), 375 * MINUTE_MS);
    }

    #[test]
    fn csv_errors_name_the_line() {
        let err =
            Calendar::from_csv("# c\n2026-02-30,holiday,,,x,confirmed\n").expect_err("bad date");
        assert_eq!(
            err,
            CalendarError::Parse {
                line: 2,
                reason: "date is not YYYY-MM-DD"
            }
        );
        assert!(Calendar::from_csv("2026-03-01,special,10:00,,x,confirmed").is_err());
        assert!(Calendar::from_csv("2026-03-01,closed,,,x,confirmed").is_err());
        assert!(Calendar::from_csv("2026-03-02,holiday,,,x,maybe").is_err());
        let c = Calendar::from_csv("2026-03-02,holiday,,,x,unconfirmed").expect("ok");
        assert_eq!(c.day_kind(day(2026, 3, 2)), DayKind::Holiday);
    }

    #[test]
    fn a_missing_user_file_falls_back_to_the_builtin_list() {
        let c = Calendar::load(Some(Path::new("/nonexistent/holidays.csv")));
        assert_eq!(c.day_kind(day(2025, 12, 25)), DayKind::Holiday);
    }
}
