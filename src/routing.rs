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
//! [`crate::instruments::refresh`]) are mapped with [`Routing::add_late`] into a second table,
//! consulted only for a tick the start-up table does not know. It is copied, extended and
//! published whole by swapping an atomic pointer (old copies are kept until the routing is
//! dropped), so readers never take a lock. Late
//! instruments get their failover pair like start-up ones: every start-up instrument has a pair
//! slot whose vendors are atomics (unset while it is not redundant), so a refresh that finds a
//! start-up symbol newly listed on the other vendor pairs it without a lock; a pair of two late
//! vendors lives in the late table (shared by its copies). The vendor that was producing stays active; the primary's
//! next tick takes over as usual.

use std::sync::{
    atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicU8, Ordering},
    Arc, Mutex,
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

/// A vendor's key for an instrument: the token and exchange its parser puts in the tick.
type Key = (Vendor, Exchange, Token);

/// Where a start-up key leads: the instrument id and the index of its failover slot.
#[derive(Debug, Clone, Copy, Default)]
struct Target {
    id: u32,
    pair: u32,
}

/// One slot of [`ShortTable`]; a zero key is an empty slot (a real key has a vendor code).
/// Aligned to 32 bytes (24 used) so that no slot spans two cache lines: the look-ahead
/// prefetches one line per lookup, and with 24-byte slots a quarter of the lookups still waited
/// for the second line of theirs.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct ShortSlot {
    key: [u64; 2],
    target: Target,
}

/// The start-up keys whose token fits [`Token::short_key`] (every numeric token), in one
/// open-addressed array of 32-byte slots at most a quarter full (a lookup finds ~98 % of keys
/// in its home slot or the next, with 1,000 keys; ~75 % at half full). A lookup hashes two words and
/// usually reads one cache line; the general map it replaced read four (two hashbrown control
/// groups and buckets, ids then pairs), and those were L2 misses on every tick under `perf`
/// because the core runs the broker and producer between frames.
#[derive(Debug)]
struct ShortTable {
    slots: Box<[ShortSlot]>,
    shift: u32,
    len: usize,
}

/// The packed key of a short token: its 16 bytes with vendor and exchange in bytes 14 and 15.
#[inline]
fn short_key(vendor: Vendor, exchange: Exchange, token: &Token) -> Option<[u64; 2]> {
    Some(pack(vendor, exchange, token.short_key()?))
}

/// A token's [`Token::short_key`] with vendor and exchange put in, as two words.
#[inline]
fn pack(vendor: Vendor, exchange: Exchange, mut k: [u8; 16]) -> [u64; 2] {
    let [.., v, e] = &mut k;
    *v = vendor.code();
    *e = exchange as u8;
    let x = u128::from_le_bytes(k);
    [x as u64, (x >> 64) as u64]
}

impl ShortTable {
    fn with_capacity(n: usize) -> ShortTable {
        let cap = (n.max(8) * 4).next_power_of_two();
        ShortTable {
            slots: vec![ShortSlot::default(); cap].into_boxed_slice(),
            shift: 64 - cap.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, key: [u64; 2]) -> usize {
        let [a, b] = key;
        ((a ^ b.rotate_left(29)).wrapping_mul(crate::fasthash::K) >> self.shift) as usize
    }

    fn insert(&mut self, key: [u64; 2], target: Target) {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        // At most a quarter full, so an empty slot is always found.
        while let Some(s) = self.slots.get_mut(i) {
            if s.key == [0, 0] {
                self.len += 1;
                *s = ShortSlot { key, target };
                return;
            }
            if s.key == key {
                s.target = target;
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Starts loading `key`'s home slot (where a lookup of it begins) and the slot after it,
    /// which is in the next cache line when the home slot is the second of its line: at most a
    /// quarter full, the table finds ~98 % of keys within those two slots.
    #[inline]
    fn prefetch(&self, key: [u64; 2]) {
        let home = self.home(key);
        if let Some(s) = self.slots.get(home) {
            crate::prefetch::read(s);
        }
        if let Some(s) = self.slots.get((home + 1) & (self.slots.len() - 1)) {
            crate::prefetch::read(s);
        }
    }

    #[inline]
    fn get(&self, key: [u64; 2]) -> Option<Target> {
        let mask = self.slots.len() - 1;
        let mut i = self.home(key);
        loop {
            let s = self.slots.get(i)?;
            if s.key == key {
                return Some(s.target);
            }
            if s.key == [0, 0] {
                return None;
            }
            i = (i + 1) & mask;
        }
    }
}

/// Instruments mapped after start-up, and failover pairs between two late vendors. Published
/// whole: [`Routing::add_late`] builds a new one and swaps the pointer, so readers take no lock.
#[derive(Default, Clone)]
struct Late {
    ids: FastMap<Key, u32>,
    pairs: FastMap<u32, Arc<Pair>>,
}

/// The published [`Late`] table. Every table ever published is kept (in `all`, appended under
/// the writers' lock) until the routing is dropped, so a pointer a reader loaded stays valid;
/// a refresh publishes about one a day.
struct LateTables {
    current: AtomicPtr<Late>,
    all: Mutex<Vec<Arc<Late>>>,
}

impl LateTables {
    fn new() -> LateTables {
        LateTables {
            current: AtomicPtr::new(std::ptr::null_mut()),
            all: Mutex::new(Vec::new()),
        }
    }

    /// The current table, `None` until something was added late.
    #[inline]
    fn load(&self) -> Option<&Late> {
        let p = self.current.load(Ordering::Acquire);
        // SAFETY: a non-null `current` came from `Arc::as_ptr` of an `Arc<Late>` that `update`
        // pushed into `all` before storing the pointer (Release, paired with the Acquire above,
        // so the table's contents are visible). `all` only grows and lives as long as `self`,
        // so the `Late` outlives the returned borrow, and it is never mutated once published
        // (only shared references are ever made to it).
        unsafe { p.as_ref() }
    }

    /// Calls `f` on a copy of the current table and publishes the copy if `f` says it changed
    /// it (the second value `f` returns).
    fn update<R>(&self, f: impl FnOnce(&mut Late) -> (R, bool)) -> R {
        let mut all = match self.all.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        let mut next = all.last().map(|l| Late::clone(l)).unwrap_or_default();
        let (r, changed) = f(&mut next);
        if changed {
            let next = Arc::new(next);
            let p = Arc::as_ptr(&next).cast_mut();
            all.push(next);
            self.current.store(p, Ordering::Release);
        }
        r
    }

    /// Tables published so far.
    #[cfg(test)]
    fn published(&self) -> usize {
        self.all.lock().map_or(0, |g| g.len())
    }
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
    /// Start-up keys with short tokens (Kite, Angel, Dhan, short JSON tokens).
    short: ShortTable,
    /// Start-up keys with longer tokens (Upstox instrument keys).
    long: FastMap<Key, Target>,
    /// One failover slot per start-up instrument, indexed by [`Target::pair`].
    pairs: Box<[Pair]>,
    /// Instrument id -> index in `pairs`.
    pair_of: FastMap<u32, u32>,
    /// Whether any instrument is redundant: until one is, a tick needs no failover slot.
    any_redundant: AtomicBool,
    stale_ns: u64,
    metrics: FailoverMetrics,
    /// Instruments mapped after start-up ([`Routing::add_late`]).
    late: LateTables,
    /// Live counters.
    pub stats: RoutingStats,
}

impl std::fmt::Debug for Routing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Routing")
            .field("instruments", &self.len())
            .field("redundant", &self.any_redundant.load(Ordering::Relaxed))
            .finish()
    }
}

/// Builds a [`Routing`].
#[derive(Debug, Default)]
pub struct RoutingBuilder {
    ids: FastMap<Key, u32>,
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
        let mut pair_of: FastMap<u32, u32> = FastMap::default();
        let mut pairs: Vec<Pair> = Vec::new();
        let mut short = ShortTable::with_capacity(self.ids.len());
        let mut long = FastMap::default();
        for ((v, e, t), id) in self.ids {
            let pair = *pair_of.entry(id).or_insert_with(|| {
                pairs.push(match self.pairs.get(&id) {
                    Some(&(p, s)) => Pair::redundant(p, s, now_ns),
                    None => Pair::single(v),
                });
                u32::try_from(pairs.len() - 1).unwrap_or(u32::MAX)
            });
            let target = Target { id, pair };
            match short_key(v, e, &t) {
                Some(k) => short.insert(k, target),
                None => {
                    long.insert((v, e, t), target);
                }
            }
        }
        let any_redundant = pairs.iter().any(|p| p.vendors().is_some());
        Routing {
            short,
            long,
            pairs: pairs.into_boxed_slice(),
            pair_of,
            any_redundant: AtomicBool::new(any_redundant),
            stale_ns: stale_ms.saturating_mul(1_000_000),
            metrics: FailoverMetrics::new(),
            late: LateTables::new(),
            stats: RoutingStats::default(),
        }
    }
}

impl Routing {
    /// Sets `tick.instrument_id` and decides whether the tick is produced. `now_ns` is the
    /// frame's receive time. Ticks of unmapped instruments keep id 0 and are produced.
    #[inline]
    pub fn route(&self, tick: &mut Tick, now_ns: u64) -> Verdict {
        let (verdict, id) = self.resolve(tick, now_ns);
        if let Some(id) = id {
            tick.instrument_id = id;
        }
        verdict
    }

    /// Starts loading the table entry that [`Routing::resolve`] will read for this instrument
    /// (`short_key` as [`Token::short_key`] gives it), so that a frame's lookups overlap: the
    /// table is evicted between frames by whatever else the core runs.
    #[inline]
    pub fn prefetch(&self, vendor: Vendor, exchange: Exchange, short_key: [u8; 16]) {
        self.short.prefetch(pack(vendor, exchange, short_key));
    }

    /// [`Routing::route`] without writing the tick: the verdict and the instrument id, `None`
    /// for an unmapped instrument. The pipeline sets the id on the copy it queues.
    #[inline]
    pub fn resolve(&self, tick: &Tick, now_ns: u64) -> (Verdict, Option<u32>) {
        let found = match short_key(tick.vendor, tick.exchange, &tick.token) {
            Some(k) => self.short.get(k),
            None => self
                .long
                .get(&(tick.vendor, tick.exchange, tick.token))
                .copied(),
        };
        let Some(t) = found else {
            return self.resolve_late(tick, now_ns);
        };
        if !self.any_redundant.load(Ordering::Relaxed) {
            return (Verdict::Produce, Some(t.id));
        }
        let verdict = match self.pairs.get(t.pair as usize) {
            Some(p) => self.decide(t.id, p, tick.vendor, now_ns),
            None => Verdict::Produce,
        };
        (verdict, Some(t.id))
    }

    /// [`Routing::resolve`] for a key the start-up table does not know.
    fn resolve_late(&self, tick: &Tick, now_ns: u64) -> (Verdict, Option<u32>) {
        let Some(late) = self.late.load() else {
            return (Verdict::Produce, None);
        };
        let Some(&id) = late.ids.get(&(tick.vendor, tick.exchange, tick.token)) else {
            return (Verdict::Produce, None);
        };
        // A late vendor of a start-up instrument shares the start-up slot.
        let verdict = match self
            .startup_pair(id)
            .or_else(|| late.pairs.get(&id).map(|p| &**p))
        {
            Some(p) => self.decide(id, p, tick.vendor, now_ns),
            None => Verdict::Produce,
        };
        (verdict, Some(id))
    }

    /// The failover slot of a start-up instrument.
    fn startup_pair(&self, id: u32) -> Option<&Pair> {
        let i = *self.pair_of.get(&id)?;
        self.pairs.get(i as usize)
    }

    /// Whether `key` is mapped at start-up.
    fn knows(&self, key: &Key) -> bool {
        let (v, e, t) = key;
        match short_key(*v, *e, t) {
            Some(k) => self.short.get(k).is_some(),
            None => self.long.contains_key(key),
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
        let (n, paired) = self.late.update(|late| {
            let late_pairs_before = late.pairs.len();
            let mut n = 0;
            for (k, id) in more.ids {
                if !self.knows(&k) && late.ids.insert(k, id).is_none() {
                    n += 1;
                }
            }
            let mut paired = 0usize;
            for (id, (primary, standby)) in more.pairs {
                let done = match self.startup_pair(id) {
                    Some(slot) => slot.pair_late(primary, standby, now_ns),
                    None => match late.pairs.entry(id) {
                        std::collections::hash_map::Entry::Occupied(e) => {
                            e.get().pair_late(primary, standby, now_ns)
                        }
                        std::collections::hash_map::Entry::Vacant(e) => {
                            e.insert(Arc::new(Pair::redundant(primary, standby, now_ns)));
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
            // A start-up slot paired late is changed in place; the table only by additions.
            let grew = n > 0 || late.pairs.len() > late_pairs_before;
            ((n, paired), grew)
        });
        if paired > 0 {
            self.any_redundant.store(true, Ordering::Release);
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
        match self.startup_pair(instrument_id) {
            Some(p) => read(p),
            None => self
                .late
                .load()
                .and_then(|l| l.pairs.get(&instrument_id))
                .and_then(|p| read(p)),
        }
    }

    /// Instruments mapped at start-up.
    pub fn len(&self) -> usize {
        self.short.len + self.long.len()
    }

    /// True when nothing is mapped.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the look-ahead's two prefetched slots cover: the share of keys found in their home
    /// slot or the next, and that no slot spans two cache lines.
    #[test]
    fn nearly_every_short_key_is_in_its_home_slot_or_the_next() {
        assert_eq!(std::mem::align_of::<ShortSlot>(), 32);
        assert_eq!(std::mem::size_of::<ShortSlot>(), 32);
        for keys in [
            (1..=1000u32).map(|i| i * 256 + 1).collect::<Vec<_>>(),
            (1..=1000u32).collect(),
            (0..5000u32)
                .map(|i| i.wrapping_mul(2_654_435_761) % 20_000_000)
                .collect(),
        ] {
            let mut t = ShortTable::with_capacity(keys.len());
            let ks: Vec<[u64; 2]> = keys
                .iter()
                .map(|&k| pack(Vendor::Kite, Exchange::Nse, Token::short_key_of_u32(k)))
                .collect();
            for (i, k) in ks.iter().enumerate() {
                t.insert(
                    *k,
                    Target {
                        id: i as u32 + 1,
                        pair: 0,
                    },
                );
            }
            let mask = t.slots.len() - 1;
            let near = ks
                .iter()
                .filter(|k| {
                    let h = t.home(**k);
                    t.slots.get(h).is_some_and(|s| s.key == **k)
                        || t.slots.get((h + 1) & mask).is_some_and(|s| s.key == **k)
                })
                .count();
            assert!(near * 100 >= ks.len() * 95, "{near} of {}", ks.len());
            assert!(ks
                .iter()
                .enumerate()
                .all(|(i, k)| t.get(*k).map(|x| x.id) == Some(i as u32 + 1)));
        }
    }

    fn tick(v: Vendor, tok: &str) -> Tick {
        let mut t = Tick::EMPTY;
        t.exchange = Exchange::Nse;
        t.vendor = v;
        t.token = Token::new(tok).unwrap();
        t
    }

    /// A prefetch hint for any instrument (mapped or not, any exchange) changes no lookup, and
    /// packs the same key as the lookup of the token it stands for.
    #[test]
    fn prefetch_changes_no_lookup_and_packs_the_lookups_key() {
        let mut b = RoutingBuilder::default();
        for i in 0..500u32 {
            b.map(
                Vendor::Kite,
                Exchange::Nse,
                &(i * 256 + 1).to_string(),
                i + 1,
            );
        }
        let r = b.build(100, 0);
        for i in 0..1000u32 {
            let t = tick(Vendor::Kite, &(i * 256 + 1).to_string());
            let before = r.resolve(&t, 0);
            let key = Token::short_key_of_u32(i * 256 + 1);
            for e in Exchange::ALL {
                r.prefetch(Vendor::Kite, e, key);
            }
            assert_eq!(r.resolve(&t, 0), before);
            assert_eq!(before.1, (i < 500).then_some(i + 1));
            assert_eq!(
                pack(Vendor::Kite, Exchange::Nse, key),
                short_key(Vendor::Kite, Exchange::Nse, &t.token).unwrap_or_default()
            );
        }
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
        let tables = r.late.published();
        assert_eq!(r.add_late(again, 200 * ms), 0);
        assert_eq!(r.stats.late_pairs.load(Ordering::Relaxed), 3);
        assert_eq!(r.late.published(), tables, "nothing new, nothing published");
    }

    #[test]
    fn short_and_long_tokens_map_exactly() {
        let mut b = RoutingBuilder::default();
        let mut expect = Vec::new();
        for i in 0..3000u32 {
            let tok = (i * 256 + 1).to_string();
            b.map(Vendor::Kite, Exchange::Nse, &tok, i + 1);
            expect.push((Vendor::Kite, Exchange::Nse, tok, i + 1));
        }
        // The same number on another vendor or exchange is another instrument.
        b.map(Vendor::Dhan, Exchange::Nse, "257", 90_001);
        b.map(Vendor::Dhan, Exchange::Bse, "257", 90_002);
        // 13 bytes is the longest short key; 14 and more go to the general map.
        b.map(Vendor::Json, Exchange::Nse, "ABCDEFGHIJKLM", 90_003);
        b.map(Vendor::Json, Exchange::Nse, "ABCDEFGHIJKLMN", 90_004);
        b.map(Vendor::Upstox, Exchange::Nse, "NSE_EQ|INE002A01018", 90_005);
        for (v, e, t, id) in [
            (Vendor::Dhan, Exchange::Nse, "257", 90_001),
            (Vendor::Dhan, Exchange::Bse, "257", 90_002),
            (Vendor::Json, Exchange::Nse, "ABCDEFGHIJKLM", 90_003),
            (Vendor::Json, Exchange::Nse, "ABCDEFGHIJKLMN", 90_004),
            (Vendor::Upstox, Exchange::Nse, "NSE_EQ|INE002A01018", 90_005),
        ] {
            expect.push((v, e, t.to_string(), id));
        }
        let r = b.build(100, 0);
        assert_eq!(r.len(), expect.len());
        for (v, e, tok, id) in &expect {
            let mut t = tick(*v, tok);
            t.exchange = *e;
            assert_eq!(r.route(&mut t, 0), Verdict::Produce);
            assert_eq!(t.instrument_id, *id, "{v:?} {e:?} {tok}");
        }
        // Unknown keys: a prefix, an extension, the wrong exchange, another vendor.
        for (v, e, tok) in [
            (Vendor::Kite, Exchange::Nse, "25"),
            (Vendor::Kite, Exchange::Nse, "2570"),
            (Vendor::Kite, Exchange::Bse, "257"),
            (Vendor::Angel, Exchange::Nse, "257"),
            (Vendor::Json, Exchange::Nse, "ABCDEFGHIJKL"),
            (Vendor::Upstox, Exchange::Nse, "NSE_EQ|INE002A01019"),
        ] {
            let mut t = tick(v, tok);
            t.exchange = e;
            assert_eq!(r.route(&mut t, 0), Verdict::Produce);
            assert_eq!(t.instrument_id, 0, "{v:?} {e:?} {tok}");
        }
    }

    /// Readers on another thread route late instruments while tables are published under them
    /// (the published pointer's lifetime argument in `LateTables::load`).
    #[test]
    fn late_tables_swap_under_concurrent_readers() {
        let r = Arc::new(RoutingBuilder::default().build(100, 0));
        let reader = {
            let r = Arc::clone(&r);
            std::thread::spawn(move || {
                // Until the last table is seen (bounded, in case publishing fails).
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                let mut rounds = 0u64;
                while std::time::Instant::now() < deadline {
                    rounds += 1;
                    let mut last = 0;
                    for i in 1..=200u32 {
                        let mut t = tick(Vendor::Kite, &i.to_string());
                        r.route(&mut t, 0);
                        // An id, once seen, is the one that was mapped.
                        assert!(t.instrument_id == 0 || t.instrument_id == i + 1000);
                        last = t.instrument_id;
                    }
                    if last == 1200 {
                        return rounds;
                    }
                }
                0
            })
        };
        for i in 1..=200u32 {
            let mut more = RoutingBuilder::default();
            more.map(Vendor::Kite, Exchange::Nse, &i.to_string(), i + 1000);
            assert_eq!(r.add_late(more, 0), 1);
        }
        assert!(reader.join().unwrap() > 0, "the reader saw the last table");
        let mut t = tick(Vendor::Kite, "200");
        r.route(&mut t, 0);
        assert_eq!(t.instrument_id, 1200);
    }
}
