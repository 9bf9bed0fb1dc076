//! The daily instrument-list refresh of a running engine.
//!
//! Vendors publish the day's instrument lists before 08:00 IST ([`super::REFRESH_MARK_UTC_S`]).
//! At start-up the lists are loaded once ([`super::load`]); a long-running engine runs a
//! [`DailyRefresh`] on a small housekeeping thread (`instruments`, never a feed thread: the
//! download is blocking REST). After each daily mark it reloads every vendor's list (fetching
//! anew, falling back to the cache as at start-up), re-resolves the configured symbols, and
//! subscribes the ones that became resolvable (a new contract, a symbol listed late) through
//! [`FeedControl::subscribe`]; their canonical names go into the routing table's late map
//! ([`Routing::add_late`]). Instruments already subscribed are left alone; symbols that
//! disappeared are not unsubscribed (their vendor stops sending). A symbol that is now listed on
//! both the primary and the `STANDBY_VENDOR` gets its failover pair as at start-up, whether both
//! sides are new or one was subscribed at start-up.
//!
//! The clock is injected ([`DailyRefresh::tick`] takes unix seconds), so tests drive it across
//! the mark without waiting for a day.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use super::{last_refresh_mark, MasterSource, VendorMaster};
use crate::{
    feed::{FeedControl, Instrument},
    routing::Routing,
    vendor::Vendor,
};

/// Where a vendor's feed runs: its thread's control handle and its index among that thread's
/// feeds.
#[derive(Debug, Clone)]
pub struct FeedHandle {
    /// The feed thread's command handle.
    pub control: FeedControl,
    /// The feed's index on that thread (as given to `spawn_feed_thread`).
    pub feed: usize,
}

/// What one refresh did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RefreshReport {
    /// Instruments newly subscribed, per vendor.
    pub subscribed: Vec<(Vendor, usize)>,
    /// Entries still unresolved.
    pub unresolved: Vec<String>,
    /// Vendors whose list could not be loaded (their instruments stay as they were).
    pub failed: Vec<Vendor>,
}

/// The refresh state: configured symbols, where lists come from, what is subscribed.
#[derive(Debug)]
pub struct DailyRefresh {
    entries: Vec<String>,
    order: Vec<Vendor>,
    standby: Option<Vendor>,
    sources: Vec<MasterSource>,
    feeds: HashMap<Vendor, FeedHandle>,
    routing: Arc<Routing>,
    subscribed: HashSet<(Vendor, u32, Box<str>)>,
    last_mark: u64,
}

fn ident(v: Vendor, i: &Instrument) -> (Vendor, u32, Box<str>) {
    (v, i.id, i.key.clone())
}

impl DailyRefresh {
    /// A refresher for `entries` (the `SUBSCRIBE` list) over `order` (configured vendors in
    /// preference order) and `standby`, loading lists from `sources`, subscribing through
    /// `feeds`, naming through `routing`. `initial` is what start-up subscribed; `loaded_s` when
    /// the lists were loaded (the mark at or before it counts as done).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        entries: Vec<String>,
        order: Vec<Vendor>,
        standby: Option<Vendor>,
        sources: Vec<MasterSource>,
        feeds: HashMap<Vendor, FeedHandle>,
        routing: Arc<Routing>,
        initial: &HashMap<Vendor, Vec<Instrument>>,
        loaded_s: u64,
    ) -> Self {
        let subscribed = initial
            .iter()
            .flat_map(|(v, ins)| ins.iter().map(move |i| ident(*v, i)))
            .collect();
        DailyRefresh {
            entries,
            order,
            standby,
            sources,
            feeds,
            routing,
            subscribed,
            last_mark: last_refresh_mark(loaded_s),
        }
    }

    /// Whether a daily mark has passed since the last refresh.
    pub fn due(&self, now_s: u64) -> bool {
        last_refresh_mark(now_s) > self.last_mark
    }

    /// Refreshes when due at `now_s` (unix seconds); `None` when not due.
    pub fn tick(&mut self, now_s: u64) -> Option<RefreshReport> {
        if !self.due(now_s) {
            return None;
        }
        self.last_mark = last_refresh_mark(now_s);
        Some(self.refresh(now_s))
    }

    /// Reloads the lists, re-resolves and subscribes what became resolvable.
    pub fn refresh(&mut self, now_s: u64) -> RefreshReport {
        let mut report = RefreshReport::default();
        let mut masters: HashMap<Vendor, VendorMaster> = HashMap::new();
        for src in &self.sources {
            match super::load(src, now_s) {
                Ok((m, from)) => {
                    log::info!(event = "instruments_refreshed", vendor = src.vendor.as_str(), count = m.len(), from = format!("{from:?}"); "daily instrument list refresh");
                    masters.insert(src.vendor, m);
                }
                Err(e) => {
                    log::error!(event = "instruments_refresh_failed", vendor = src.vendor.as_str(), code = crate::error::ErrorCode::code(&e); "{e}");
                    report.failed.push(src.vendor);
                }
            }
        }
        if self.order.contains(&Vendor::Json) {
            masters.insert(
                Vendor::Json,
                crate::feed::json::symbol_master(&self.entries),
            );
        }
        // A vendor whose list failed is left out of the plan entirely (its symbols must not move
        // to another vendor because of a download error).
        let order: Vec<Vendor> = self
            .order
            .iter()
            .copied()
            .filter(|v| masters.contains_key(v))
            .collect();
        let plan = crate::subscribe::plan(&self.entries, &masters, &order, self.standby);
        report.unresolved = plan.unresolved;
        let mut per_vendor: Vec<(Vendor, Vec<Instrument>)> = plan.per_vendor.into_iter().collect();
        per_vendor.sort_by_key(|(v, _)| *v);
        let mut pending: Vec<(Vendor, Vec<Instrument>)> = Vec::new();
        for (v, ins) in per_vendor {
            let new: Vec<Instrument> = ins
                .into_iter()
                .filter(|i| !self.subscribed.contains(&ident(v, i)))
                .collect();
            if !new.is_empty() && self.feeds.contains_key(&v) {
                pending.push((v, new));
            }
        }
        // Names first, so the first ticks of a new instrument already carry its canonical name.
        if !pending.is_empty() {
            self.routing
                .add_late(plan.routing, crate::clock::now_unix_ns());
        }
        for (v, new) in pending {
            let Some(h) = self.feeds.get(&v) else {
                continue;
            };
            let n = new.len();
            let ids: Vec<(Vendor, u32, Box<str>)> = new.iter().map(|i| ident(v, i)).collect();
            match h.control.subscribe(h.feed, new) {
                Ok(()) => {
                    log::info!(event = "instruments_subscribed_late", vendor = v.as_str(), count = n; "newly resolvable instruments subscribed");
                    report.subscribed.push((v, n));
                    self.subscribed.extend(ids);
                }
                Err(e) => {
                    log::error!(event = "instruments_subscribe_failed", vendor = v.as_str(), code = e.code(); "{e}");
                }
            }
        }
        for name in &report.unresolved {
            log::warn!(event = "subscription_unresolved", entry = name.as_str(); "still unresolved after the daily refresh: `{name}`");
        }
        report
    }
}

/// Runs `refresh` until `shutdown`: checks `now_s()` (unix seconds) every `every` and refreshes
/// after each daily mark. The body of the engine's `instruments` thread.
pub fn run(
    mut refresh: DailyRefresh,
    shutdown: &crate::shutdown::Shutdown,
    now_s: impl Fn() -> u64,
    every: std::time::Duration,
) {
    let step = every.min(std::time::Duration::from_millis(200));
    let mut waited = std::time::Duration::ZERO;
    while !shutdown.is_triggered() {
        if waited >= every {
            waited = std::time::Duration::ZERO;
            if let Some(r) = refresh.tick(now_s()) {
                log::info!(event = "instruments_refresh_done", subscribed = r.subscribed.iter().map(|x| x.1).sum::<usize>(), unresolved = r.unresolved.len(), failed = r.failed.len(); "daily instrument refresh done");
            }
        }
        std::thread::sleep(step);
        waited += step;
    }
}
