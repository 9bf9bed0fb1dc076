//! Per-tick routing: the canonical instrument id of a vendor tick, and multi-vendor failover.
//!
//! [`Routing`] is built once at start-up from the resolved subscriptions and shared read-only
//! (an `Arc`) by every feed thread's pipeline. For each tick the pipeline calls
//! [`Routing::route`], which sets `Tick::instrument_id` (so the JSON `instrument` and the Kafka
//! key become `EXCHANGE:SYMBOL`, see [`crate::instruments::names`]) and decides whether the tick
//! reaches `market.ticks`.
//!
//! Failover: an instrument subscribed on two vendors has a primary and a standby. A per-instrument
//! atomic "active vendor" slot, shared by the feed threads, says whose ticks are produced. A
//! standby tick switches the slot to the standby when the primary has been silent for the stale
//! bound; the primary's next tick switches it back. Only the active vendor's ticks pass; the
//! others are counted in `failover_suppressed_ticks_total{vendor}` (their frames still reach
//! `market.raw`). Switches are logged and counted in `failover_switches_total{to}`. Everything on
//! this path is lock-free and allocation-free: hash lookups into immutable maps, atomic loads,
//! and a compare-exchange on a switch.
//!
//! Instruments added while running (the daily instrument-list refresh,
//! [`crate::instruments::refresh`]) are mapped with [`Routing::add_late`] into a second table
//! behind a `RwLock`, consulted only for a tick the start-up table does not know and only once
//! something was added (an atomic flag), so the start-up instruments never touch the lock. Late
//! instruments get their failover pair like start-up ones: every start-up instrument has a pair
//! slot whose vendors are atomics (unset while it is not redundant), so a refresh that finds a
//! start-up symbol newly listed on the other vendor pairs it without a lock; a pair of two late
//! vendors lives in the late table. The vendor that was producing stays active; the primary's
//! next tick takes over as usual.

use std::sync::{
    atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering},
    RwLock,
};

use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::{
    fasthash::FastMap,
    tick::{Exchange, Tick, Token},
    vendor::Vendor,
};

/// The verdict for one tick.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Produce it.
    Produce,
    /// Another vendor is active for this instrument: do not produce.
    Suppress,
}

/// One instrument's failover slot. `primary`/`standby` hold vendor codes, 0 while the instrument
/// is not redundant (written once, standby before primary, by [`Routing::add_late`]).
struct Pair {
    primary: AtomicU8,
    standby: AtomicU8,
    active: AtomicU8,
    last_primary_ns: AtomicU64,
    last_standby_ns: AtomicU64,
}

impl Pair {
    /// A non-redundant instrument of `vendor` (pairable later).
    fn single(vendor: Vendor) -> Pair {
        Pair {
            primary: AtomicU8::new(0),
            standby: AtomicU8::new(0),
            active: AtomicU8::new(vendor.code()),
            last_primary_ns: AtomicU64::new(0),
            last_standby_ns: AtomicU64::new(0),
        }
    }

    /// A redundant instrument whose primary's clock starts at `now_ns`.
    fn redundant(primary: Vendor, standby: Vendor, now_ns: u64) -> Pair {
        Pair {
            primary: AtomicU8::new(primary.code()),
            standby: AtomicU8::new(standby.code()),
            active: AtomicU8::new(primary.code()),
            last_primary_ns: AtomicU64::new(now_ns),
            last_standby_ns: AtomicU64::new(0),
        }
    }

    /// `(primary, standby)` once redundant.
    fn vendors(&self) -> Option<(Vendor, Vendor)> {
        // Primary first: it is written last, so seeing it means the standby is there too.
        let p = Vendor::from_code(self.primary.load(Ordering::Acquire))?;
        let s = Vendor::from_code(self.standby.load(Ordering::Acquire))?;
        Some((p, s))
    }

    /// Makes a non-redundant slot redundant; false when it already was. The vendor producing
    /// now stays active (the primary's next tick takes over if that is the standby).
    fn pair_late(&self, primary: Vendor, standby: Vendor, now_ns: u64) -> bool {
        if self.vendors().is_some() || primary == standby {
            return false;
        }
        let active = self.active.load(Ordering::Acquire);
        if active != primary.code() && active != standby.code() {
            self.active.store(primary.code(), Ordering::Release);
        }
        self.last_primary_ns.store(now_ns, Ordering::Relaxed);
        self.standby.store(standby.code(), Ordering::Release);
        self.primary.store(primary.code(), Ordering::Release);
        true
    }
}

/// Instruments mapped after start-up, and failover pairs between two late vendors.
#[derive(Default)]
struct Late {
    ids: FastMap<(Vendor, Exchange, Token), u32>,
    pairs: FastMap<u32, Pair>,
}

/// Metrics of the failover, resolved once.
#[derive(Debug, Clone)]
struct FailoverMetrics {
    switches: [Option<IntCounter>; 6],
    suppressed: [Option<IntCounter>; 6],
}

fn families() -> Option<(IntCounterVec, IntCounterVec)> {
    static F: std::sync::OnceLock<Option<(IntCounterVec, IntCounterVec)>> =
        std::sync::OnceLock::new();
    F.get_or_init(|| {
        let reg = &crate::metrics::global().registry;
        let sw = IntCounterVec::new(
            Opts::new(
                "failover_switches_total",
                "Active-vendor switches of redundant instruments, by the vendor switched to",
            ),
            &["to"],
        )
        .ok()?;
        let sup = IntCounterVec::new(
            Opts::new(
                "failover_suppressed_ticks_total",
                "Ticks of a redundant instrument's inactive vendor, not produced to market.ticks",
            ),
            &["vendor"],
        )
        .ok()?;
        reg.register(Box::new(sw.clone())).ok()?;
        reg.register(Box::new(sup.clone())).ok()?;
        Some((sw, sup))
    })
    .clone()
}

impl FailoverMetrics {
    fn new() -> Self {
        let f = families();
        let child = |i: usize, which: bool| {
            let v = Vendor::from_code(u8::try_from(i).ok()?)?;
            let (sw, sup) = f.as_ref()?;
            Some(if which {
                sw.with_label_values(&[v.as_str()])
            } else {
                sup.with_label_values(&[v.as_str()])
            })
        };
        FailoverMetrics {
            switches: std::array::from_fn(|i| child(i, true)),
            suppressed: std::array::from_fn(|i| child(i, false)),
        }
    }
}

/// Counters the tests and the status page read.
#[derive(Debug, Default)]
pub struct RoutingStats {
    /// Switches made.
    pub switches: AtomicU64,
    /// Ticks suppressed.
    pub suppressed: AtomicU64,
    /// Failover pairs added after start-up ([`Routing::add_late`]).
    pub late_pairs: AtomicU64,
}

/// The routing table. Build with [`RoutingBuilder`].
pub struct Routing {
    ids: FastMap<(Vendor, Exchange, Token), u32>,
    pairs: FastMap<u32, Pair>,
    stale_ns: u64,
    metrics: FailoverMetrics,
    /// Instruments mapped after start-up ([`Routing::add_late`]).
    late: RwLock<Late>,
    has_late: AtomicBool,
    /// Live counters.
    pub stats: RoutingStats,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("instruments", &self.ids.len())
            .field("redundant", &self.pairs.len())
            .finish()
    }
}

/// Builds a [`Routing`].
#[derive(Debug, Default)]
pub struct RoutingBuilder {
    ids: FastMap<(Vendor, Exchange, Token), u32>,
    pairs: FastMap<u32, (Vendor, Vendor)>,
}

impl RoutingBuilder {
    /// Maps `vendor`'s tick token on `exchange` (the token and exchange its parser puts in the
    /// tick: Angel and Dhan tokens are unique only within an exchange) to the canonical
    /// instrument id. Returns false when the token does not fit a [`Token`].
    pub fn map(
        &mut self,
        vendor: Vendor,
        exchange: Exchange,
        token: &str,
        instrument_id: u32,
    ) -> bool {
        match Token::new(token) {
            Ok(t) => {
                self.ids.insert((vendor, exchange, t), instrument_id);
                true
            }
            Err(_) => false,
        }
    }

    /// Declares `instrument_id` redundant: `primary`'s ticks are produced while they flow,
    /// `standby`'s when the primary is stale.
    pub fn redundant(&mut self, instrument_id: u32, primary: Vendor, standby: Vendor) {
        if primary != standby {
            self.pairs.insert(instrument_id, (primary, standby));
        }
    }

    /// Finishes the table. `stale_ms` is the primary's silence that makes the standby active;
    /// `now_ns` starts every primary's clock, so a primary gets one stale bound to deliver its
    /// first tick before the standby takes over.
    pub fn build(self, stale_ms: u64, now_ns: u64) -> Routing {
        // Every instrument gets a slot, so a later refresh can pair it without a lock.
        let mut pairs: FastMap<u32, Pair> = self
            .ids
            .iter()
            .map(|((v, _, _), id)| (*id, Pair::single(*v)))
            .collect();
        for (id, (p, s)) in self.pairs {
            pairs.insert(id, Pair::redundant(p, s, now_ns));
        }
        Routing {
            ids: self.ids,
            pairs,
            stale_ns: stale_ms.saturating_mul(1_000_000),
            metrics: FailoverMetrics::new(),
            late: RwLock::new(Late::default()),
            has_late: AtomicBool::new(false),
            stats: RoutingStats::default(),
        }
    }
}

impl Routing {
    /// Sets `tick.instrument_id` and decides whether the tick is produced. `now_ns` is the
    /// frame's receive time. Ticks of unmapped instruments keep id 0 and are produced.
    pub fn route(&self, tick: &mut Tick, now_ns: u64) -> Verdict {
        let key = (tick.vendor, tick.exchange, tick.token);
        if let Some(&id) = self.ids.get(&key) {
            tick.instrument_id = id;
            return match self.pairs.get(&id) {
                Some(p) => self.decide(id, p, tick.vendor, now_ns),
                None => Verdict::Produce,
            };
        }
        if !self.has_late.load(Ordering::Acquire) {
            return Verdict::Produce;
        }
        let g = self.late_read();
        let Some(&id) = g.ids.get(&key) else {
            return Verdict::Produce;
        };
        tick.instrument_id = id;
        // A late vendor of a start-up instrument shares the start-up slot.
        match self.pairs.get(&id).or_else(|| g.pairs.get(&id)) {
            Some(p) => self.decide(id, p, tick.vendor, now_ns),
            None => Verdict::Produce,
        }
    }

    fn late_read(&self) -> std::sync::RwLockReadGuard<'_, Late> {
        match self.late.read() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// The failover decision for a tick of `v` on instrument `id` with slot `p`.
    fn decide(&self, id: u32, p: &Pair, v: Vendor, now_ns: u64) -> Verdict {
        let Some((primary, standby)) = p.vendors() else {
            return Verdict::Produce;
        };
        if v == primary {
            p.last_primary_ns.store(now_ns, Ordering::Relaxed);
            if p.active.load(Ordering::Acquire) != v.code()
                && p.active
                    .compare_exchange(
                        standby.code(),
                        v.code(),
                        Ordering::AcqRel,
                        Ordering::Acquire,
                    )
                    .is_ok()
            {
                self.switched(id, standby, v, 0);
            }
            return Verdict::Produce;
        }
        if v != standby {
            return Verdict::Produce;
        }
        p.last_standby_ns.store(now_ns, Ordering::Relaxed);
        if p.active.load(Ordering::Acquire) == v.code() {
            return Verdict::Produce;
        }
        let silent = now_ns.saturating_sub(p.last_primary_ns.load(Ordering::Relaxed));
        if silent > self.stale_ns
            && p.active
                .compare_exchange(
                    primary.code(),
                    v.code(),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
        {
            self.switched(id, primary, v, silent);
            return Verdict::Produce;
        }
        self.stats.suppressed.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self
            .metrics
            .suppressed
            .get(usize::from(v.code()))
            .and_then(Option::as_ref)
        {
            c.inc();
        }
        Verdict::Suppress
    }

    fn switched(&self, id: u32, from: Vendor, to: Vendor, silent_ns: u64) {
        self.stats.switches.fetch_add(1, Ordering::Relaxed);
        if let Some(c) = self
            .metrics
            .switches
            .get(usize::from(to.code()))
            .and_then(Option::as_ref)
        {
            c.inc();
        }
        let name = crate::instruments::names::name_of(id).unwrap_or("");
        log::warn!(event = "failover_switch", instrument = name, from = from.as_str(), to = to.as_str(), primary_silent_ms = silent_ns / 1_000_000; "active vendor switched");
    }

    /// Maps every instrument of `more` that this table does not know yet (a refresh's plan)
    /// into the late table, and applies `more`'s failover pairs to instruments not yet
    /// redundant; returns how many instruments were added. `now_ns` starts a new primary's
    /// clock.
    pub fn add_late(&self, more: RoutingBuilder, now_ns: u64) -> usize {
        let mut g = match self.late.write() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut n = 0;
        for (k, id) in more.ids {
            if !self.ids.contains_key(&k) && g.ids.insert(k, id).is_none() {
                n += 1;
            }
        }
        let mut paired = 0usize;
        for (id, (primary, standby)) in more.pairs {
            let done = match self.pairs.get(&id) {
                Some(slot) => slot.pair_late(primary, standby, now_ns),
                None => match g.pairs.entry(id) {
                    std::collections::hash_map::Entry::Occupied(e) => {
                        e.get().pair_late(primary, standby, now_ns)
                    }
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(Pair::redundant(primary, standby, now_ns));
                        true
                    }
                },
            };
            if done {
                paired += 1;
                let name = crate::instruments::names::name_of(id).unwrap_or("");
                log::info!(event = "failover_pair_added", instrument = name, primary = primary.as_str(), standby = standby.as_str(); "instrument now redundant after the instrument refresh");
            }
        }
        if n > 0 {
            self.has_late.store(true, Ordering::Release);
        }
        self.stats
            .late_pairs
            .fetch_add(paired as u64, Ordering::Relaxed);
        n
    }

    /// The vendor whose ticks are produced for `instrument_id`, when it is redundant.
    pub fn active(&self, instrument_id: u32) -> Option<Vendor> {
        let read = |p: &Pair| {
            p.vendors()?;
            Vendor::from_code(p.active.load(Ordering::Acquire))
        };
        match self.pairs.get(&instrument_id) {
            Some(p) => read(p),
            None => self.late_read().pairs.get(&instrument_id).and_then(read),
        }
    }

    /// Instruments mapped at start-up.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tick(v: Vendor, tok: &str) -> Tick {
        let mut t = Tick::EMPTY;
        t.exchange = Exchange::Nse;
        t.vendor = v;
        t.token = Token::new(tok).unwrap();
        t
    }

    #[test]
    fn standby_takes_over_after_the_stale_bound_and_hands_back() {
        let mut b = RoutingBuilder::default();
        b.map(Vendor::Kite, Exchange::Nse, "408065", 7);
        b.map(Vendor::Dhan, Exchange::Nse, "1594", 7);
        b.map(Vendor::Dhan, Exchange::Bse, "1594", 9);
        b.map(Vendor::Upstox, Exchange::Nse, "NSE_EQ|X", 8);
        b.redundant(7, Vendor::Kite, Vendor::Dhan);
        let ms = 1_000_000u64;
        let r = b.build(100, 0);
        let (mut k, mut d) = (tick(Vendor::Kite, "408065"), tick(Vendor::Dhan, "1594"));
        assert_eq!(r.route(&mut k, 10 * ms), Verdict::Produce);
        assert_eq!(k.instrument_id, 7);
        assert_eq!(r.route(&mut d, 50 * ms), Verdict::Suppress);
        assert_eq!(d.instrument_id, 7);
        // Primary silent for 101 ms: the standby's tick switches and is produced.
        assert_eq!(r.route(&mut d, 111 * ms), Verdict::Produce);
        assert_eq!(r.active(7), Some(Vendor::Dhan));
        assert_eq!(r.route(&mut d, 112 * ms), Verdict::Produce);
        // The primary is back: its tick switches back; the standby is suppressed again.
        assert_eq!(r.route(&mut k, 120 * ms), Verdict::Produce);
        assert_eq!(r.active(7), Some(Vendor::Kite));
        assert_eq!(r.route(&mut d, 121 * ms), Verdict::Suppress);
        assert_eq!(r.stats.switches.load(Ordering::Relaxed), 2);
        assert_eq!(r.stats.suppressed.load(Ordering::Relaxed), 2);
        // Unmapped and non-redundant instruments always pass.
        let mut u = tick(Vendor::Upstox, "NSE_EQ|X");
        assert_eq!(r.route(&mut u, 0), Verdict::Produce);
        assert_eq!(u.instrument_id, 8);
        let mut z = tick(Vendor::Angel, "1");
        assert_eq!(r.route(&mut z, 0), Verdict::Produce);
        assert_eq!(z.instrument_id, 0);
    }
    #[test]
    fn late_pairs_route_like_start_up_pairs() {
        let ms = 1_000_000u64;
        // At start-up: 7 only on Kite, 9 only on Dhan (the would-be standby), 8 not at all.
        let mut b = RoutingBuilder::default();
        b.map(Vendor::Kite, Exchange::Nse, "408065", 7);
        b.map(Vendor::Dhan, Exchange::Nse, "11536", 9);
        let r = b.build(100, 0);
        let (mut k7, mut d7) = (tick(Vendor::Kite, "408065"), tick(Vendor::Dhan, "1594"));
        assert_eq!(r.active(7), None, "not redundant yet");
        assert_eq!(r.route(&mut k7, 5 * ms), Verdict::Produce);
        // The refresh: 7 now also on Dhan; 9 now also on Kite (its primary); 8 new on both.
        let mut more = RoutingBuilder::default();
        more.map(Vendor::Kite, Exchange::Nse, "408065", 7);
        more.map(Vendor::Dhan, Exchange::Nse, "1594", 7);
        more.redundant(7, Vendor::Kite, Vendor::Dhan);
        more.map(Vendor::Kite, Exchange::Nse, "2953217", 9);
        more.map(Vendor::Dhan, Exchange::Nse, "11536", 9);
        more.redundant(9, Vendor::Kite, Vendor::Dhan);
        more.map(Vendor::Kite, Exchange::Nse, "779521", 8);
        more.map(Vendor::Dhan, Exchange::Nse, "3045", 8);
        more.redundant(8, Vendor::Kite, Vendor::Dhan);
        assert_eq!(r.add_late(more, 10 * ms), 4, "three new vendor keys");
        assert_eq!(r.stats.late_pairs.load(Ordering::Relaxed), 3);
        // 7: Kite stays active; Dhan is suppressed until Kite is silent for the bound.
        assert_eq!(r.active(7), Some(Vendor::Kite));
        assert_eq!(r.route(&mut d7, 20 * ms), Verdict::Suppress);
        assert_eq!(d7.instrument_id, 7);
        assert_eq!(r.route(&mut d7, 111 * ms), Verdict::Produce);
        assert_eq!(r.active(7), Some(Vendor::Dhan));
        assert_eq!(r.route(&mut k7, 112 * ms), Verdict::Produce);
        assert_eq!(r.route(&mut d7, 113 * ms), Verdict::Suppress);
        // 9: Dhan was producing; it stays active until Kite, the primary, sends.
        let (mut k9, mut d9) = (tick(Vendor::Kite, "2953217"), tick(Vendor::Dhan, "11536"));
        assert_eq!(r.active(9), Some(Vendor::Dhan));
        assert_eq!(r.route(&mut d9, 20 * ms), Verdict::Produce);
        assert_eq!(r.route(&mut k9, 21 * ms), Verdict::Produce);
        assert_eq!(k9.instrument_id, 9);
        assert_eq!(r.active(9), Some(Vendor::Kite));
        assert_eq!(r.route(&mut d9, 22 * ms), Verdict::Suppress);
        // 8: both vendors late; the primary has one bound to deliver.
        let (mut k8, mut d8) = (tick(Vendor::Kite, "779521"), tick(Vendor::Dhan, "3045"));
        assert_eq!(r.active(8), Some(Vendor::Kite));
        assert_eq!(r.route(&mut d8, 50 * ms), Verdict::Suppress);
        assert_eq!(d8.instrument_id, 8);
        assert_eq!(r.route(&mut d8, 111 * ms), Verdict::Produce);
        assert_eq!(r.route(&mut k8, 120 * ms), Verdict::Produce);
        assert_eq!(r.active(8), Some(Vendor::Kite));
        // A second refresh with the same plan changes nothing.
        let mut again = RoutingBuilder::default();
        again.redundant(8, Vendor::Dhan, Vendor::Kite);
        assert_eq!(r.add_late(again, 200 * ms), 0);
        assert_eq!(r.stats.late_pairs.load(Ordering::Relaxed), 3);
    }
}
