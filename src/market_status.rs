//! The market status the vendors report, shared by the feed threads, the stale watchdog,
//! `/health` and the backfill guard.
//!
//! This module owns [`MarketStatusStore`]: one atomic slot per exchange segment (NSE, NFO, BSE,
//! BFO, CDS, BCD, MCX, ...) holding the last status a vendor reported for it (Upstox
//! `market_info`) and when it arrived. The feed thread that parses the message writes the slot
//! ([`MarketStatusStore::record`]); the watchdog, the http thread and the backfill threads read
//! it through [`MarketStatusStore::decide`], which combines it with the exchange calendar:
//!
//! - a report is **fresh** when it arrived on the current IST civil day; an older one is ignored
//!   (yesterday's `NORMAL_CLOSE` says nothing about today);
//! - for every *watched* segment (those of the configured subscriptions,
//!   [`MarketStatusStore::watch`]; when none could be derived, every segment with a fresh report)
//!   the effective status is the fresh vendor report if there is one, else the calendar's;
//! - the market's status is the most active of those (open > pre-open > closing > closed >
//!   holiday), with its source: a segment the vendor reports open makes the market open even when
//!   the calendar says closed (a special session missing from the holiday file), and the vendor
//!   reporting every watched segment closed makes it closed on a day the calendar thinks trades
//!   (a holiday announced late). Without a fresh report the calendar is the authority.
//!
//! Index segments (`NSE_INDEX`, `BSE_INDEX`) are not stored: their status follows the cash
//! segment's. Statuses this build does not know (`Unknown`, e.g. Dhan's undocumented market
//! status packet) are logged by the pipeline and not stored.
//!
//! Lock-free: a report is one `AtomicU64` store (status in the top byte, receive time in ms
//! below), a decision a few atomic loads. Reports are rare (on connect and at each session
//! change), so each is logged and counted (`market_status_reports_total{segment,status}`);
//! decisions where the vendor overrides the calendar are counted in
//! `market_status_overrides_total{consumer,market}` and logged when they change
//! (`market_status_decision`).

use std::sync::{
    atomic::{AtomicU32, AtomicU64, AtomicU8, Ordering},
    Arc, OnceLock,
};

use prometheus::{IntCounterVec, Opts};

use crate::{
    calendar::{self, Calendar, MarketStatus as CalStatus},
    parsers::MarketStatus as VendorStatus,
    tick::Exchange,
};

/// Slots: one per `Exchange` code (the codes are below 16).
const SLOTS: usize = 16;
/// Receive time bits of a slot (the top byte holds the status).
const TIME_MASK: u64 = (1 << 56) - 1;

/// Where a decision came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A fresh vendor report.
    Vendor,
    /// The exchange calendar (no fresh report for the deciding segment).
    Calendar,
}

impl Source {
    /// Lower-case name for logs and JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Source::Vendor => "vendor",
            Source::Calendar => "calendar",
        }
    }
}

/// Who asked (a metric label, and one "last decision" per consumer for change logging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Consumer {
    /// The feed threads' stale watchdog.
    Watchdog,
    /// `/health` and the status page.
    Health,
    /// The backfill trigger guard and the automatic backfill.
    Backfill,
}

impl Consumer {
    /// Lower-case name for logs and metrics.
    pub const fn as_str(self) -> &'static str {
        match self {
            Consumer::Watchdog => "watchdog",
            Consumer::Health => "health",
            Consumer::Backfill => "backfill",
        }
    }

    const fn index(self) -> usize {
        match self {
            Consumer::Watchdog => 0,
            Consumer::Health => 1,
            Consumer::Backfill => 2,
        }
    }
}

/// The market status at an instant and where it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// The effective status.
    pub status: CalStatus,
    /// Whether a vendor report or the calendar decided it.
    pub source: Source,
    /// What the calendar alone says.
    pub calendar: CalStatus,
}

impl Decision {
    /// True when a vendor report contradicts the calendar on "is the normal market open".
    pub const fn overrides_calendar(&self) -> bool {
        matches!(self.source, Source::Vendor) && self.status.is_open() != self.calendar.is_open()
    }

    /// Compact code for change detection: status (3 bits) and source.
    fn code(&self) -> u8 {
        let s = match self.status {
            CalStatus::PreOpen => 1,
            CalStatus::Open => 2,
            CalStatus::Closing => 3,
            CalStatus::Closed => 4,
            CalStatus::Holiday => 5,
        };
        s | (u8::from(matches!(self.source, Source::Vendor)) << 3)
    }
}

/// One segment's last vendor report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Report {
    /// The vendor's status.
    pub status: VendorStatus,
    /// Unix ms when it was received.
    pub received_ms: i64,
}

/// The calendar status a vendor status means: pre-open start and end are the pre-open session,
/// `NORMAL_OPEN` the normal market, `CLOSING_START` the closing session, `NORMAL_CLOSE` and
/// `CLOSING_END` closed. `None` for a status this build does not know.
pub const fn vendor_phase(s: VendorStatus) -> Option<CalStatus> {
    match s {
        VendorStatus::PreOpenStart | VendorStatus::PreOpenEnd => Some(CalStatus::PreOpen),
        VendorStatus::NormalOpen => Some(CalStatus::Open),
        VendorStatus::ClosingStart => Some(CalStatus::Closing),
        VendorStatus::NormalClose | VendorStatus::ClosingEnd => Some(CalStatus::Closed),
        VendorStatus::Unknown(_) => None,
    }
}

/// Ordering of "how active" a status is: a market with any watched segment open is open.
const fn rank(s: CalStatus) -> u8 {
    match s {
        CalStatus::Open => 4,
        CalStatus::PreOpen => 3,
        CalStatus::Closing => 2,
        CalStatus::Closed => 1,
        CalStatus::Holiday => 0,
    }
}

/// The stored segment of a vendor segment name (Upstox `NSE_EQ`, `NSE_FO`, `MCX_FO`, ...);
/// `None` for index segments and names this build does not know.
pub fn segment_exchange(name: &str) -> Option<Exchange> {
    match Exchange::from_upstox_segment(name) {
        Some((ex, false)) => Some(ex),
        _ => None,
    }
}

/// The exchange segment of a `SUBSCRIBE` entry: `NSE:INFY`, `NFO:BANKNIFTY25DECFUT@ltp`,
/// `upstox:NSE_EQ|INE002A01018`, `kite:408065` (Kite's token carries its segment in the low
/// byte). `None` when it cannot be told without the instrument list (Angel, Dhan, JSON tokens).
pub fn entry_exchange(entry: &str) -> Option<Exchange> {
    let body = entry.rsplit_once('@').map_or(entry, |(b, _)| b).trim();
    let (prefix, rest) = body.split_once(':')?;
    let rest = rest.trim();
    match prefix.trim().to_ascii_uppercase().as_str() {
        "NSE" => Some(Exchange::Nse),
        "NFO" => Some(Exchange::Nfo),
        "CDS" => Some(Exchange::Cds),
        "BSE" => Some(Exchange::Bse),
        "BFO" => Some(Exchange::Bfo),
        "BCD" => Some(Exchange::Bcd),
        "MCX" => Some(Exchange::Mcx),
        "NCO" => Some(Exchange::Nco),
        "UPSTOX" => {
            let seg = rest.split_once('|')?.0;
            Exchange::from_upstox_segment(seg).map(|(ex, _)| ex)
        }
        "KITE" => {
            let token: u32 = rest.parse().ok()?;
            match Exchange::from_kite_segment((token & 0xff) as u8)? {
                // Kite's indices are NSE's (or BSE's) index values: they follow the cash segment.
                Exchange::Indices => Some(Exchange::Nse),
                ex => Some(ex),
            }
        }
        _ => None,
    }
}

fn families() -> Option<&'static (IntCounterVec, IntCounterVec)> {
    static F: OnceLock<Option<(IntCounterVec, IntCounterVec)>> = OnceLock::new();
    F.get_or_init(|| {
        let reg = &crate::metrics::global().registry;
        let reports = IntCounterVec::new(
            Opts::new(
                "market_status_reports_total",
                "Market-status reports received from vendors (Upstox market_info), by segment and status",
            ),
            &["segment", "status"],
        )
        .ok()?;
        let overrides = IntCounterVec::new(
            Opts::new(
                "market_status_overrides_total",
                "Decisions where a fresh vendor market status overrode the exchange calendar, by consumer and resulting market",
            ),
            &["consumer", "market"],
        )
        .ok()?;
        reg.register(Box::new(reports.clone())).ok()?;
        reg.register(Box::new(overrides.clone())).ok()?;
        Some((reports, overrides))
    })
    .as_ref()
}

/// The shared store. One per process ([`global`]); tests build their own with
/// [`MarketStatusStore::new`].
#[derive(Debug)]
pub struct MarketStatusStore {
    slots: [AtomicU64; SLOTS],
    /// Bit `code` set for every watched exchange code; 0 = none derived.
    watched: AtomicU32,
    /// Last decision code per consumer (0 = none yet), for logging changes only.
    last: [AtomicU8; 3],
}

impl Default for MarketStatusStore {
    fn default() -> Self {
        MarketStatusStore::new()
    }
}

impl MarketStatusStore {
    /// An empty store: no reports, nothing watched.
    pub const fn new() -> MarketStatusStore {
        MarketStatusStore {
            slots: [const { AtomicU64::new(0) }; SLOTS],
            watched: AtomicU32::new(0),
            last: [const { AtomicU8::new(0) }; 3],
        }
    }

    /// Records `status` for the vendor segment `segment`, received at `received_ms` (Unix ms).
    /// Returns true when it was stored (a known, non-index segment and a known status). A change
    /// of a segment's status is logged at info; every stored report is counted.
    pub fn record(&self, segment: &str, status: VendorStatus, received_ms: i64) -> bool {
        let (Some(ex), Some(_)) = (segment_exchange(segment), vendor_phase(status)) else {
            return false;
        };
        let Some(slot) = self.slots.get(usize::from(ex as u8)) else {
            return false;
        };
        // Status codes 0..=5 are stored as 1..=6 so that 0 means "never reported".
        let code = u64::try_from(status.code()).unwrap_or(0) + 1;
        let t = u64::try_from(received_ms.max(0)).unwrap_or(0) & TIME_MASK;
        let previous = slot.swap((code << 56) | t, Ordering::AcqRel);
        if previous >> 56 != code {
            log::info!(event = "market_status_changed", segment = segment, exchange = ex.as_str(), status = status.as_str(); "vendor market status changed");
        }
        if let Some((reports, _)) = families() {
            reports.with_label_values(&[segment, status.as_str()]).inc();
        }
        true
    }

    /// The last report for `ex`, fresh or not.
    pub fn report(&self, ex: Exchange) -> Option<Report> {
        let v = self
            .slots
            .get(usize::from(ex as u8))?
            .load(Ordering::Acquire);
        let code = (v >> 56) as u8;
        if code == 0 {
            return None;
        }
        Some(Report {
            status: VendorStatus::from_code(i32::from(code) - 1),
            received_ms: i64::try_from(v & TIME_MASK).unwrap_or(0),
        })
    }

    /// The report for `ex` when it is fresh at `now_ms`: received on the same IST civil day.
    pub fn fresh(&self, ex: Exchange, now_ms: i64) -> Option<Report> {
        self.report(ex)
            .filter(|r| calendar::ist_day(r.received_ms) == calendar::ist_day(now_ms))
    }

    /// Sets the watched segments (those the engine subscribes to); replaces any earlier set.
    pub fn watch(&self, exchanges: impl IntoIterator<Item = Exchange>) {
        let mask = exchanges
            .into_iter()
            .filter(|e| (*e as u8) < 32)
            .fold(0u32, |m, e| m | (1 << (e as u8)));
        self.watched.store(mask, Ordering::Release);
    }

    /// The watched segments, in code order.
    pub fn watched(&self) -> Vec<Exchange> {
        let mask = self.watched.load(Ordering::Acquire);
        ALL.iter()
            .copied()
            .filter(|e| mask & (1 << (*e as u8)) != 0)
            .collect()
    }

    /// The market status at `now_ms`, combining fresh vendor reports with `cal` (see the module
    /// documentation).
    pub fn decide(&self, cal: &Calendar, now_ms: i64) -> Decision {
        let from_calendar = cal.status(now_ms);
        let mask = self.watched.load(Ordering::Acquire);
        let mut best: Option<(CalStatus, Source)> = None;
        for ex in ALL {
            let watched = mask & (1 << (ex as u8)) != 0;
            let fresh = self.fresh(ex, now_ms).and_then(|r| vendor_phase(r.status));
            let candidate = match (mask == 0, watched, fresh) {
                // Nothing derived from the configuration: every freshly reported segment counts.
                (true, _, Some(p)) => (p, Source::Vendor),
                (true, _, None) | (false, false, _) => continue,
                (false, true, Some(p)) => (p, Source::Vendor),
                (false, true, None) => (from_calendar, Source::Calendar),
            };
            best = match best {
                None => Some(candidate),
                Some(b) => {
                    let (rc, rb) = (rank(candidate.0), rank(b.0));
                    // On a tie the fresh report wins: it is the newer information.
                    if rc > rb || (rc == rb && candidate.1 == Source::Vendor) {
                        Some(candidate)
                    } else {
                        Some(b)
                    }
                }
            };
        }
        let (mut status, mut source) = best.unwrap_or((from_calendar, Source::Calendar));
        // A vendor's "closed" on a day the calendar knows as a holiday agrees with it: keep the
        // calendar's more specific reason (the status page says "holiday", not "closed").
        if status == CalStatus::Closed && from_calendar == CalStatus::Holiday {
            status = CalStatus::Holiday;
            source = Source::Calendar;
        }
        Decision {
            status,
            source,
            calendar: from_calendar,
        }
    }

    /// [`decide`](Self::decide), then counts an override of the calendar and logs when the
    /// decision for `consumer` changed since its last call.
    pub fn decide_for(&self, consumer: Consumer, cal: &Calendar, now_ms: i64) -> Decision {
        let d = self.decide(cal, now_ms);
        if d.overrides_calendar() {
            if let Some((_, overrides)) = families() {
                overrides
                    .with_label_values(&[consumer.as_str(), d.status.as_str()])
                    .inc();
            }
        }
        if let Some(last) = self.last.get(consumer.index()) {
            let code = d.code();
            if last.swap(code, Ordering::AcqRel) != code {
                log::info!(event = "market_status_decision", consumer = consumer.as_str(), market = d.status.as_str(), source = d.source.as_str(), calendar = d.calendar.as_str(); "market status for {} is {} (from the {})", consumer.as_str(), d.status.as_str(), d.source.as_str());
            }
        }
        d
    }
}

/// Every exchange a slot can hold, in code order.
const ALL: [Exchange; 10] = Exchange::ALL;

/// The process-wide store: written by every feed thread's pipeline, read by the engine's
/// watchdog function, `/health` and the backfill.
pub fn global() -> &'static Arc<MarketStatusStore> {
    static G: OnceLock<Arc<MarketStatusStore>> = OnceLock::new();
    G.get_or_init(|| Arc::new(MarketStatusStore::new()))
}

/// The `/health` and status-page market source: the calendar, overridden by fresh vendor reports.
pub fn market_source(cal: Calendar, store: Arc<MarketStatusStore>) -> crate::status::MarketSource {
    use crate::status::MarketPhase;
    crate::status::MarketSource::new("exchange calendar + vendor market status", move |now_ns| {
        let now_ms = i64::try_from(now_ns / 1_000_000).unwrap_or(i64::MAX);
        match store.decide_for(Consumer::Health, &cal, now_ms).status {
            CalStatus::PreOpen => MarketPhase::PreOpen,
            CalStatus::Open => MarketPhase::Open,
            CalStatus::Closing | CalStatus::Closed => MarketPhase::Closed,
            CalStatus::Holiday => MarketPhase::Holiday,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        calendar::{utc_ms, SessionHours},
        clock::{days_from_date, Date},
    };

    fn day(y: i32, m: u32, d: u32) -> i64 {
        days_from_date(Date {
            year: y,
            month: m,
            day: d,
        })
    }

    fn ist(d: i64, hh: u32, mm: u32) -> i64 {
        utc_ms(d, hh * 60 + mm)
    }

    #[test]
    fn slots_round_trip_and_ignore_index_and_unknown() {
        let s = MarketStatusStore::new();
        let t = ist(day(2026, 11, 27), 9, 15);
        assert!(s.record("NSE_EQ", VendorStatus::NormalOpen, t));
        assert!(s.record("MCX_FO", VendorStatus::PreOpenStart, t + 1));
        assert!(!s.record("NSE_INDEX", VendorStatus::NormalClose, t));
        assert!(!s.record("XYZ", VendorStatus::NormalClose, t));
        assert!(!s.record("NSE_FO", VendorStatus::Unknown(9), t));
        assert_eq!(
            s.report(Exchange::Nse),
            Some(Report {
                status: VendorStatus::NormalOpen,
                received_ms: t
            })
        );
        assert_eq!(
            s.report(Exchange::Mcx).map(|r| r.status),
            Some(VendorStatus::PreOpenStart)
        );
        assert_eq!(s.report(Exchange::Nfo), None);
        // Every status survives the packing.
        for code in 0..=5 {
            let st = VendorStatus::from_code(code);
            assert!(s.record("BSE_EQ", st, t));
            assert_eq!(s.report(Exchange::Bse).map(|r| r.status), Some(st));
        }
    }

    #[test]
    fn freshness_is_the_ist_day() {
        let s = MarketStatusStore::new();
        let d = day(2026, 11, 27);
        s.record("NSE_EQ", VendorStatus::NormalClose, ist(d, 15, 30));
        assert!(s.fresh(Exchange::Nse, ist(d, 23, 59)).is_some());
        // 00:00 IST next day (18:30 UTC): yesterday's close is no longer fresh.
        assert!(s.fresh(Exchange::Nse, ist(d + 1, 0, 0)).is_none());
        assert!(s.fresh(Exchange::Nse, ist(d, 0, 0) - 1).is_none());
    }

    #[test]
    fn entries_name_their_segment() {
        assert_eq!(entry_exchange("NSE:INFY"), Some(Exchange::Nse));
        assert_eq!(entry_exchange("NSE:NIFTY 50"), Some(Exchange::Nse));
        assert_eq!(
            entry_exchange("NFO:BANKNIFTY25DECFUT@ltp"),
            Some(Exchange::Nfo)
        );
        assert_eq!(entry_exchange("mcx:CRUDEOIL"), Some(Exchange::Mcx));
        assert_eq!(
            entry_exchange("upstox:NSE_FO|43919@full"),
            Some(Exchange::Nfo)
        );
        // 408065 = 0x63A01: segment 1 (NSE); 256265 = 0x3E909: segment 9 (indices -> NSE).
        assert_eq!(entry_exchange("kite:408065@full"), Some(Exchange::Nse));
        assert_eq!(entry_exchange("kite:256265"), Some(Exchange::Nse));
        assert_eq!(entry_exchange("dhan:1333"), None);
        assert_eq!(entry_exchange("INFY"), None);
    }

    #[test]
    fn the_calendar_decides_without_a_fresh_report() {
        let cal = Calendar::builtin();
        let s = MarketStatusStore::new();
        s.watch([Exchange::Nse]);
        let fri = day(2026, 11, 27);
        let d = s.decide(&cal, ist(fri, 11, 0));
        assert_eq!(
            (d.status, d.source, d.calendar),
            (CalStatus::Open, Source::Calendar, CalStatus::Open)
        );
        // Yesterday's report is ignored.
        s.record("NSE_EQ", VendorStatus::NormalClose, ist(fri - 1, 15, 30));
        assert_eq!(s.decide(&cal, ist(fri, 11, 0)).source, Source::Calendar);
        // A report for an unwatched segment is ignored too.
        s.record("MCX_FO", VendorStatus::NormalClose, ist(fri, 9, 0));
        let d = s.decide(&cal, ist(fri, 11, 0));
        assert_eq!((d.status, d.source), (CalStatus::Open, Source::Calendar));
        assert!(!d.overrides_calendar());
    }

    #[test]
    fn vendor_closed_on_a_calendar_holiday_keeps_the_holiday() {
        let cal = Calendar::builtin();
        let s = MarketStatusStore::new();
        s.watch([Exchange::Nse]);
        // Republic Day 2026, a Monday in the holiday file; the vendor agrees the market is shut.
        let holiday = day(2026, 1, 26);
        s.record("NSE_EQ", VendorStatus::NormalClose, ist(holiday, 9, 0));
        let d = s.decide(&cal, ist(holiday, 11, 0));
        assert_eq!(
            (d.status, d.source, d.calendar),
            (CalStatus::Holiday, Source::Calendar, CalStatus::Holiday)
        );
        assert!(!d.overrides_calendar());
        // An open report on that day still wins (a special session missing from the file).
        s.record("NSE_EQ", VendorStatus::NormalOpen, ist(holiday, 10, 0));
        let d = s.decide(&cal, ist(holiday, 11, 0));
        assert_eq!((d.status, d.source), (CalStatus::Open, Source::Vendor));
    }

    #[test]
    fn vendor_closed_on_a_calendar_trading_day_closes_the_market() {
        let cal = Calendar::builtin();
        let s = MarketStatusStore::new();
        s.watch([Exchange::Nse, Exchange::Nfo]);
        let fri = day(2026, 11, 27);
        s.record("NSE_EQ", VendorStatus::NormalClose, ist(fri, 9, 0));
        // NFO has no report: the calendar still says open for it.
        let d = s.decide(&cal, ist(fri, 11, 0));
        assert_eq!((d.status, d.source), (CalStatus::Open, Source::Calendar));
        s.record("NSE_FO", VendorStatus::NormalClose, ist(fri, 9, 0));
        let d = s.decide(&cal, ist(fri, 11, 0));
        assert_eq!(
            (d.status, d.source, d.calendar),
            (CalStatus::Closed, Source::Vendor, CalStatus::Open)
        );
        assert!(d.overrides_calendar());
        assert!(!s
            .decide_for(Consumer::Backfill, &cal, ist(fri, 11, 0))
            .status
            .is_open());
    }

    #[test]
    fn vendor_open_on_a_calendar_closed_day_opens_the_market() {
        // A Sunday with no special session in the calendar: the vendor says NSE is open (a
        // Muhurat session the holiday file does not list).
        let cal = Calendar::builtin();
        let s = MarketStatusStore::new();
        s.watch([Exchange::Nse]);
        let sun = day(2026, 11, 29);
        assert_eq!(cal.status(ist(sun, 18, 15)), CalStatus::Closed);
        s.record("NSE_EQ", VendorStatus::PreOpenStart, ist(sun, 18, 0));
        assert_eq!(s.decide(&cal, ist(sun, 18, 5)).status, CalStatus::PreOpen);
        s.record("NSE_EQ", VendorStatus::NormalOpen, ist(sun, 18, 15));
        let d = s.decide_for(Consumer::Watchdog, &cal, ist(sun, 18, 20));
        assert_eq!(
            (d.status, d.source, d.calendar),
            (CalStatus::Open, Source::Vendor, CalStatus::Closed)
        );
        assert!(d.overrides_calendar());
        // The session ends: closed again, by the vendor.
        s.record("NSE_EQ", VendorStatus::NormalClose, ist(sun, 19, 15));
        assert_eq!(s.decide(&cal, ist(sun, 19, 20)).status, CalStatus::Closed);
    }

    #[test]
    fn unwatched_store_uses_every_fresh_report() {
        let cal = Calendar::builtin();
        let s = MarketStatusStore::new();
        let fri = day(2026, 11, 27);
        // Nothing reported, nothing watched: the calendar.
        assert_eq!(s.decide(&cal, ist(fri, 20, 0)).source, Source::Calendar);
        s.record("NSE_EQ", VendorStatus::NormalClose, ist(fri, 15, 30));
        s.record("MCX_FO", VendorStatus::NormalOpen, ist(fri, 17, 0));
        let d = s.decide(&cal, ist(fri, 20, 0));
        assert_eq!((d.status, d.source), (CalStatus::Open, Source::Vendor));
        // Watching only NSE leaves MCX out.
        s.watch([Exchange::Nse]);
        assert_eq!(s.watched(), vec![Exchange::Nse]);
        let d = s.decide(&cal, ist(fri, 20, 0));
        assert_eq!((d.status, d.source), (CalStatus::Closed, Source::Vendor));
    }

    #[test]
    fn special_sessions_still_come_from_the_calendar() {
        let mut cal = Calendar::builtin();
        let sun = day(2026, 11, 29);
        cal.add_special(
            crate::clock::date_from_days(sun),
            SessionHours {
                open: 600,
                close: 660,
            },
            "test session",
        );
        let s = MarketStatusStore::new();
        s.watch([Exchange::Nse]);
        let d = s.decide(&cal, ist(sun, 10, 30));
        assert_eq!((d.status, d.source), (CalStatus::Open, Source::Calendar));
    }
}
