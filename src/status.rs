//! The shared status registry: what each vendor connection is doing, for the status page and
//! `/health/ready`.
//!
//! Writers are the feed threads (through their `FrameHandler::on_event`), at state changes and
//! at most about once a second per connection for the last-message time; the reader is the http
//! thread. Both are rare next to the tick rate, so one mutex around a small vector is enough and
//! the feed hot path never touches it per tick. A poisoned lock is recovered (the data is plain
//! values, valid after any panic), so a bug elsewhere never takes the status page down.
//!
//! The market phase (pre-open, open, closed, holiday) comes from a [`MarketSource`] that the
//! engine plugs in from its trading calendar and the vendors' market-status reports
//! ([`crate::market_status::market_source`]); [`MarketSource::ist_hours_only`] is a fallback that
//! knows NSE hours and weekends but no holidays.

use std::{
    fmt,
    sync::{Arc, Mutex, MutexGuard, OnceLock},
    time::Duration,
};

use serde::Serialize;

use crate::{
    feed::{ConnState, FeedEvent},
    vendor::Vendor,
};

/// Most connections the registry tracks; updates for more are dropped (and logged once), so a
/// runaway caller cannot grow the http thread's work without bound.
pub const MAX_CONNECTIONS: usize = 4096;
/// Most feed threads whose placement is recorded.
pub const MAX_THREADS: usize = 256;

/// One connection's status as a feed thread reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionStatus {
    /// Vendor.
    pub vendor: Vendor,
    /// Connection id: `(thread index << 8) | connection index` (as in `feed::FrameMeta::conn`).
    pub conn: u16,
    /// Current state.
    pub state: ConnState,
    /// Reconnect attempts since start.
    pub reconnects: u64,
    /// Instruments subscribed on this connection.
    pub instruments: usize,
    /// Unix ns of the last message of any kind, if one arrived.
    pub last_message_ns: Option<u64>,
}

/// A connection as the status page shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ConnectionView {
    /// Vendor name.
    pub vendor: &'static str,
    /// Connection id.
    pub conn: u16,
    /// Name of the feed thread that owns it (from [`StatusRegistry::thread_placement`]).
    pub thread: String,
    /// Core the thread is pinned to, if any.
    pub core: Option<usize>,
    /// State name (`connecting`, `open`, `stale`, `backing_off`, `closed`).
    pub state: &'static str,
    /// Unix ms when the current state began.
    pub since_ms: u64,
    /// Seconds in the current state (uptime while open).
    pub uptime_s: u64,
    /// Reconnect attempts since start.
    pub reconnects: u64,
    /// Subscribed instruments.
    pub instruments: usize,
    /// Milliseconds since the last message, if one arrived.
    pub last_message_age_ms: Option<u64>,
    /// Marked stale: the watchdog fired, or no message for longer than the stale limit while open.
    pub stale: bool,
    /// The last disconnect reason code, if any.
    pub last_error: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Entry {
    vendor: Vendor,
    conn: u16,
    state: ConnState,
    since_ns: u64,
    reconnects: u64,
    instruments: usize,
    last_message_ns: Option<u64>,
    watchdog_fired: bool,
    last_error: Option<&'static str>,
}

#[derive(Debug, Clone)]
struct Placement {
    thread: String,
    core: Option<usize>,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Entry>,
    threads: Vec<Option<Placement>>,
    overflow_logged: bool,
}

/// The registry. One per process ([`global`]); tests build their own with [`StatusRegistry::new`].
#[derive(Debug, Default)]
pub struct StatusRegistry {
    inner: Mutex<Inner>,
}

impl StatusRegistry {
    /// An empty registry.
    pub fn new() -> StatusRegistry {
        StatusRegistry::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Records which thread (and core) owns connections whose id has `thread_index` in its high
    /// byte. Call once per feed thread at start-up.
    pub fn thread_placement(&self, thread_index: u8, thread: &str, core: Option<usize>) {
        let mut g = self.lock();
        let i = usize::from(thread_index);
        if i >= MAX_THREADS {
            return;
        }
        if g.threads.len() <= i {
            g.threads.resize(i + 1, None);
        }
        if let Some(slot) = g.threads.get_mut(i) {
            *slot = Some(Placement {
                thread: thread.to_owned(),
                core,
            });
        }
    }

    fn entry(inner: &mut Inner, vendor: Vendor, conn: u16, now_ns: u64) -> Option<&mut Entry> {
        let pos = inner
            .entries
            .iter()
            .position(|e| e.vendor == vendor && e.conn == conn);
        let pos = match pos {
            Some(p) => p,
            None => {
                if inner.entries.len() >= MAX_CONNECTIONS {
                    if !inner.overflow_logged {
                        inner.overflow_logged = true;
                        log::warn!(event = "status_registry_full", max = MAX_CONNECTIONS; "status registry full; further connections are not shown");
                    }
                    return None;
                }
                inner.entries.push(Entry {
                    vendor,
                    conn,
                    state: ConnState::Connecting,
                    since_ns: now_ns,
                    reconnects: 0,
                    instruments: 0,
                    last_message_ns: None,
                    watchdog_fired: false,
                    last_error: None,
                });
                inner.entries.len() - 1
            }
        };
        inner.entries.get_mut(pos)
    }

    fn set_state(e: &mut Entry, state: ConnState, now_ns: u64) {
        if e.state != state {
            e.state = state;
            e.since_ns = now_ns;
        }
        if state == ConnState::Open {
            e.watchdog_fired = false;
        }
    }

    /// Replaces everything known about one connection (creating it if new). `since` moves only
    /// when the state changes.
    pub fn connection_update(&self, s: ConnectionStatus) {
        let now = crate::clock::now_unix_ns();
        let mut g = self.lock();
        if let Some(e) = Self::entry(&mut g, s.vendor, s.conn, now) {
            Self::set_state(e, s.state, now);
            e.reconnects = s.reconnects;
            e.instruments = s.instruments;
            if s.last_message_ns.is_some() {
                e.last_message_ns = s.last_message_ns;
            }
        }
    }

    /// Applies a feed event: the simplest wiring is one call from `FrameHandler::on_event`.
    /// `Disconnected` counts a reconnect and keeps its reason; `Stale` marks the connection
    /// stale until it opens again; `Subscribed` sets the instrument count.
    pub fn on_feed_event(&self, ev: &FeedEvent) {
        let now = crate::clock::now_unix_ns();
        let mut g = self.lock();
        match *ev {
            FeedEvent::State {
                conn,
                vendor,
                state,
            } => {
                if let Some(e) = Self::entry(&mut g, vendor, conn, now) {
                    Self::set_state(e, state, now);
                }
            }
            FeedEvent::Subscribed {
                conn,
                vendor,
                instruments,
            } => {
                if let Some(e) = Self::entry(&mut g, vendor, conn, now) {
                    e.instruments = instruments;
                }
            }
            FeedEvent::Disconnected {
                conn,
                vendor,
                reason,
                ..
            } => {
                if let Some(e) = Self::entry(&mut g, vendor, conn, now) {
                    e.reconnects = e.reconnects.saturating_add(1);
                    e.last_error = Some(reason);
                    Self::set_state(e, ConnState::BackingOff, now);
                }
            }
            FeedEvent::Stale { conn, vendor, .. } => {
                if let Some(e) = Self::entry(&mut g, vendor, conn, now) {
                    e.watchdog_fired = true;
                    Self::set_state(e, ConnState::Stale, now);
                }
            }
            FeedEvent::CapacityExceeded { .. } => {}
        }
    }

    /// Records the time of a connection's last message. Call it at most about once a second per
    /// connection (e.g. when a frame arrives and a second has passed since the last call), never
    /// per tick.
    pub fn last_message(&self, vendor: Vendor, conn: u16, at_ns: u64) {
        let mut g = self.lock();
        if let Some(e) = Self::entry(&mut g, vendor, conn, at_ns) {
            e.last_message_ns = Some(at_ns);
        }
    }

    /// Forgets a connection (e.g. a feed removed at run time).
    pub fn remove(&self, vendor: Vendor, conn: u16) {
        self.lock()
            .entries
            .retain(|e| !(e.vendor == vendor && e.conn == conn));
    }

    /// The connections as shown, sorted by vendor and id. A connection is stale when its
    /// watchdog fired or, while open, no message arrived for longer than `stale_after`.
    pub fn snapshot(&self, now_ns: u64, stale_after: Duration) -> Vec<ConnectionView> {
        let g = self.lock();
        let stale_ns = u64::try_from(stale_after.as_nanos()).unwrap_or(u64::MAX);
        let mut out: Vec<ConnectionView> = g
            .entries
            .iter()
            .map(|e| {
                let placement = g
                    .threads
                    .get(usize::from(e.conn >> 8))
                    .and_then(Option::as_ref);
                let age_ns = e.last_message_ns.map(|t| now_ns.saturating_sub(t));
                let silent = match age_ns {
                    Some(a) => a > stale_ns,
                    // Open for longer than the limit without a single message.
                    None => now_ns.saturating_sub(e.since_ns) > stale_ns,
                };
                let stale = e.state == ConnState::Stale
                    || (e.watchdog_fired && e.state != ConnState::Open)
                    || (e.state == ConnState::Open && silent);
                ConnectionView {
                    vendor: e.vendor.as_str(),
                    conn: e.conn,
                    thread: placement
                        .map_or_else(|| format!("feed-{}", e.conn >> 8), |p| p.thread.clone()),
                    core: placement.and_then(|p| p.core),
                    state: e.state.as_str(),
                    since_ms: e.since_ns / 1_000_000,
                    uptime_s: now_ns.saturating_sub(e.since_ns) / 1_000_000_000,
                    reconnects: e.reconnects,
                    instruments: e.instruments,
                    last_message_age_ms: age_ns.map(|a| a / 1_000_000),
                    stale,
                    last_error: e.last_error,
                }
            })
            .collect();
        out.sort_by(|a, b| a.vendor.cmp(b.vendor).then(a.conn.cmp(&b.conn)));
        out
    }
}

/// A feed thread's throttle for [`StatusRegistry::last_message`]: call [`MessageClock::on_frame`]
/// for every frame; it forwards at most once a second per connection, so the registry's lock is
/// taken about once a second per connection whatever the tick rate. Allocates only when a
/// connection is first seen.
#[derive(Debug, Default)]
pub struct MessageClock {
    last: Vec<(Vendor, u16, u64)>,
}

/// How often [`MessageClock`] forwards a connection's last-message time.
pub const MESSAGE_CLOCK_NS: u64 = 1_000_000_000;

impl MessageClock {
    /// An empty throttle.
    pub fn new() -> MessageClock {
        MessageClock::default()
    }

    /// Records a frame of `vendor`/`conn` received at `at_ns`; forwards to `registry` when a second
    /// has passed since the last forward for that connection (or it is the first frame).
    /// Returns whether it forwarded.
    pub fn on_frame(
        &mut self,
        registry: &StatusRegistry,
        vendor: Vendor,
        conn: u16,
        at_ns: u64,
    ) -> bool {
        match self
            .last
            .iter_mut()
            .find(|(v, c, _)| *v == vendor && *c == conn)
        {
            Some((_, _, last)) if at_ns.saturating_sub(*last) < MESSAGE_CLOCK_NS => false,
            Some((_, _, last)) => {
                *last = at_ns;
                registry.last_message(vendor, conn, at_ns);
                true
            }
            None => {
                self.last.push((vendor, conn, at_ns));
                registry.last_message(vendor, conn, at_ns);
                true
            }
        }
    }
}

static GLOBAL: OnceLock<StatusRegistry> = OnceLock::new();

/// The process-wide registry.
pub fn global() -> &'static StatusRegistry {
    GLOBAL.get_or_init(StatusRegistry::new)
}

/// The market's phase, as the status page and readiness use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketPhase {
    /// Pre-open call auction (09:00-09:15 IST on NSE).
    PreOpen,
    /// Continuous trading.
    Open,
    /// Outside trading hours on a trading day, or a weekend.
    Closed,
    /// An exchange holiday.
    Holiday,
}

impl MarketPhase {
    /// The snake-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarketPhase::PreOpen => "pre_open",
            MarketPhase::Open => "open",
            MarketPhase::Closed => "closed",
            MarketPhase::Holiday => "holiday",
        }
    }

    /// True while feeds are expected to stream (pre-open and open), which is when readiness
    /// requires every configured feed to be connected.
    pub const fn is_trading_hours(self) -> bool {
        matches!(self, MarketPhase::PreOpen | MarketPhase::Open)
    }
}

/// Where the market phase comes from: a name (shown on the page) and a function of Unix ns.
#[derive(Clone)]
pub struct MarketSource {
    /// Shown next to the phase, so an operator knows whether holidays are considered.
    pub name: &'static str,
    phase: Arc<dyn Fn(u64) -> MarketPhase + Send + Sync>,
}

impl fmt::Debug for MarketSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketSource")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl MarketSource {
    /// A source backed by `phase` (e.g. the trading calendar).
    pub fn new(
        name: &'static str,
        phase: impl Fn(u64) -> MarketPhase + Send + Sync + 'static,
    ) -> MarketSource {
        MarketSource {
            name,
            phase: Arc::new(phase),
        }
    }

    /// The fallback until the trading calendar is plugged in: NSE hours in IST, Monday to Friday;
    /// it knows no holidays (a holiday shows as pre-open/open).
    pub fn ist_hours_only() -> MarketSource {
        MarketSource::new("ist-hours-only (no holiday calendar)", ist_hours_only)
    }

    /// The exchange calendar (`crate::calendar`): holidays and special sessions included; its
    /// closing session counts as closed, as the calendar itself says.
    pub fn calendar(cal: crate::calendar::Calendar) -> MarketSource {
        MarketSource::new("exchange calendar", move |now_ns| {
            let now_ms = i64::try_from(now_ns / 1_000_000).unwrap_or(i64::MAX);
            match cal.status(now_ms) {
                crate::calendar::MarketStatus::PreOpen => MarketPhase::PreOpen,
                crate::calendar::MarketStatus::Open => MarketPhase::Open,
                crate::calendar::MarketStatus::Closing | crate::calendar::MarketStatus::Closed => {
                    MarketPhase::Closed
                }
                crate::calendar::MarketStatus::Holiday => MarketPhase::Holiday,
            }
        })
    }

    /// The phase at `now_unix_ns`.
    pub fn phase(&self, now_unix_ns: u64) -> MarketPhase {
        (self.phase)(now_unix_ns)
    }
}

/// IST is UTC+05:30 all year (no daylight saving).
const IST_OFFSET_S: i64 = 5 * 3600 + 30 * 60;

/// NSE equity hours without a holiday calendar: pre-open 09:00-09:15, open 09:15-15:30 IST,
/// Monday to Friday; closed otherwise.
pub fn ist_hours_only(now_unix_ns: u64) -> MarketPhase {
    let secs = i64::try_from(now_unix_ns / 1_000_000_000).unwrap_or(i64::MAX) + IST_OFFSET_S;
    let days = secs.div_euclid(86_400);
    let minute = secs.rem_euclid(86_400) / 60;
    // 1970-01-01 was a Thursday: weekday 0 = Monday.
    let weekday = (days + 3).rem_euclid(7);
    if weekday >= 5 {
        return MarketPhase::Closed;
    }
    match minute {
        540..=554 => MarketPhase::PreOpen,
        555..=929 => MarketPhase::Open,
        _ => MarketPhase::Closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn ist_fallback_hours() {
        // 2026-11-02 is a Monday. 03:30 UTC = 09:00 IST.
        let monday = (crate::clock::days_from_date(crate::clock::Date {
            year: 2026,
            month: 11,
            day: 2,
        }) as u64)
            * 86_400
            * S;
        let at = |h: u64, m: u64| monday + (h * 3600 + m * 60) * S;
        assert_eq!(ist_hours_only(at(3, 29)), MarketPhase::Closed);
        assert_eq!(ist_hours_only(at(3, 30)), MarketPhase::PreOpen);
        assert_eq!(ist_hours_only(at(3, 45)), MarketPhase::Open);
        assert_eq!(ist_hours_only(at(9, 59)), MarketPhase::Open);
        assert_eq!(ist_hours_only(at(10, 0)), MarketPhase::Closed);
        // Saturday at 10:00 IST.
        assert_eq!(
            ist_hours_only(monday + 5 * 86_400 * S + (4 * 3600 + 30 * 60) * S),
            MarketPhase::Closed
        );
    }

    #[test]
    fn events_drive_state_reconnects_and_staleness() {
        let r = StatusRegistry::new();
        r.thread_placement(1, "feed-1", Some(3));
        let conn = 0x0102;
        r.on_feed_event(&FeedEvent::State {
            conn,
            vendor: Vendor::Kite,
            state: ConnState::Open,
        });
        r.on_feed_event(&FeedEvent::Subscribed {
            conn,
            vendor: Vendor::Kite,
            instruments: 42,
        });
        let now = crate::clock::now_unix_ns();
        r.last_message(Vendor::Kite, conn, now);
        let v = r.snapshot(now + S, Duration::from_secs(5));
        assert_eq!(v.len(), 1);
        assert_eq!(
            (
                v[0].thread.as_str(),
                v[0].core,
                v[0].state,
                v[0].instruments
            ),
            ("feed-1", Some(3), "open", 42)
        );
        assert_eq!(v[0].last_message_age_ms, Some(1000));
        assert!(!v[0].stale);
        // Silent past the limit while open: stale without any event.
        assert!(r.snapshot(now + 6 * S, Duration::from_secs(5))[0].stale);
        r.on_feed_event(&FeedEvent::Stale {
            conn,
            vendor: Vendor::Kite,
            silent_ms: 6000,
        });
        r.on_feed_event(&FeedEvent::Disconnected {
            conn,
            vendor: Vendor::Kite,
            reason: "CONN_STALE",
            retry_in_ms: 100,
            attempt: 1,
        });
        let v = r.snapshot(now, Duration::from_secs(5));
        assert_eq!(
            (v[0].state, v[0].stale, v[0].reconnects, v[0].last_error),
            ("backing_off", true, 1, Some("CONN_STALE"))
        );
        r.on_feed_event(&FeedEvent::State {
            conn,
            vendor: Vendor::Kite,
            state: ConnState::Open,
        });
        r.last_message(Vendor::Kite, conn, now);
        assert!(!r.snapshot(now, Duration::from_secs(5))[0].stale);
        r.remove(Vendor::Kite, conn);
        assert!(r.snapshot(now, Duration::from_secs(5)).is_empty());
    }

    #[test]
    fn message_clock_forwards_once_a_second() {
        let r = StatusRegistry::new();
        let mut c = MessageClock::new();
        let t = 10 * S;
        assert!(c.on_frame(&r, Vendor::Kite, 1, t));
        assert!(!c.on_frame(&r, Vendor::Kite, 1, t + S / 2));
        assert!(c.on_frame(&r, Vendor::Upstox, 1, t + S / 2));
        assert!(c.on_frame(&r, Vendor::Kite, 1, t + S));
        let v = r.snapshot(t + S, Duration::from_secs(5));
        let kite = v.iter().find(|x| x.vendor == "kite").unwrap();
        assert_eq!(kite.last_message_age_ms, Some(0));
    }

    #[test]
    fn calendar_source_maps_the_calendar() {
        let m = MarketSource::calendar(crate::calendar::Calendar::builtin());
        // 2026-11-01 is a Sunday: closed whatever the hour.
        let sunday = (crate::clock::days_from_date(crate::clock::Date {
            year: 2026,
            month: 11,
            day: 1,
        }) as u64)
            * 86_400
            * S;
        assert_eq!(m.phase(sunday + 5 * 3600 * S), MarketPhase::Closed);
        assert_eq!(m.name, "exchange calendar");
    }

    #[test]
    fn registry_is_bounded() {
        let r = StatusRegistry::new();
        for i in 0..(MAX_CONNECTIONS + 10) {
            r.connection_update(ConnectionStatus {
                vendor: Vendor::Upstox,
                conn: (i % 65_536) as u16,
                state: ConnState::Open,
                reconnects: 0,
                instruments: 1,
                last_message_ns: None,
            });
        }
        assert_eq!(r.snapshot(0, Duration::from_secs(5)).len(), MAX_CONNECTIONS);
    }
}
