//! Coverage: which minutes of which (instrument, trading day) the engine already has, so a backfill
//! asks only for the gaps and never produces the same candle twice.
//!
//! Redis layout (one string per instrument and IST day, 1440 bits = 180 bytes, bit `m` = the
//! minute starting `m` minutes after IST midnight, Redis `SETBIT` bit order):
//! - `{prefix}:cov:live:{EXCHANGE:SYMBOL}:{YYYY-MM-DD}`: minutes with at least one live tick;
//! - `{prefix}:cov:{interval}:{EXCHANGE:SYMBOL}:{YYYY-MM-DD}`: minutes whose candles a backfill
//!   of that interval produced (or that the vendor confirmed empty inside a day it served).
//!
//! A bitmap is the densest form of minute ranges ([`MinuteSet::ranges`] gives them back) and it
//! merges atomically in Redis (`BITOP OR`), so live flushes and backfills never race.
//!
//! [`LiveCoverage`] is the producer thread's side: [`LiveCoverage::record`] is one hash lookup and
//! at most one atomic OR per tick, no allocation; [`LiveCoverage::flush`] runs on the backfill
//! control thread every few seconds and moves the bits to Redis.

use std::{
    collections::HashMap,
    sync::atomic::{AtomicI64, AtomicU64, Ordering},
    time::Duration,
};

use crate::calendar::{ist_day, ist_minute_of_day, MINUTES_PER_DAY};

/// Words of a day bitmap (1440 bits).
const WORDS: usize = 23;
/// Bytes of the Redis form.
const BYTES: usize = 180;

/// A set of minutes of one day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MinuteSet([u64; WORDS]);

impl MinuteSet {
    /// The empty set.
    pub const EMPTY: MinuteSet = MinuteSet([0; WORDS]);

    /// Adds minutes `[from, to)`.
    pub fn insert_range(&mut self, from: u32, to: u32) {
        for m in from..to.min(MINUTES_PER_DAY) {
            self.insert(m);
        }
    }

    /// Adds one minute.
    pub fn insert(&mut self, m: u32) {
        if let Some(w) = self.0.get_mut((m / 64) as usize) {
            *w |= 1 << (m % 64);
        }
    }

    /// True when `m` is in the set.
    pub fn contains(&self, m: u32) -> bool {
        self.0
            .get((m / 64) as usize)
            .is_some_and(|w| w & (1 << (m % 64)) != 0)
    }

    /// Union.
    pub fn union(&self, other: &MinuteSet) -> MinuteSet {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
        out
    }

    /// Minutes in `self` and not in `other`.
    pub fn minus(&self, other: &MinuteSet) -> MinuteSet {
        let mut out = *self;
        for (a, b) in out.0.iter_mut().zip(other.0.iter()) {
            *a &= !*b;
        }
        out
    }

    /// Number of minutes.
    pub fn len(&self) -> u32 {
        self.0.iter().map(|w| w.count_ones()).sum()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }

    /// The set as sorted half-open ranges `[from, to)`.
    pub fn ranges(&self) -> Vec<(u32, u32)> {
        let mut out: Vec<(u32, u32)> = Vec::new();
        for m in 0..MINUTES_PER_DAY {
            if self.contains(m) {
                match out.last_mut() {
                    Some(last) if last.1 == m => last.1 = m + 1,
                    _ => out.push((m, m + 1)),
                }
            }
        }
        out
    }

    /// Redis bitmap bytes (bit 0 = the most significant bit of byte 0).
    pub fn to_redis(&self) -> [u8; BYTES] {
        let mut out = [0u8; BYTES];
        for m in 0..MINUTES_PER_DAY {
            if self.contains(m) {
                if let Some(b) = out.get_mut((m / 8) as usize) {
                    *b |= 0x80 >> (m % 8);
                }
            }
        }
        out
    }

    /// From Redis bitmap bytes (shorter is fine: missing bytes are zero bits).
    pub fn from_redis(bytes: &[u8]) -> MinuteSet {
        let mut s = MinuteSet::EMPTY;
        for (i, b) in bytes.iter().take(BYTES).enumerate() {
            for bit in 0..8u32 {
                if b & (0x80 >> bit) != 0 {
                    s.insert(u32::try_from(i).unwrap_or(0) * 8 + bit);
                }
            }
        }
        s
    }
}

/// Key of the live-tick coverage of `symbol` on `date` (`YYYY-MM-DD`).
pub fn live_key(prefix: &str, symbol: &str, date: &str) -> String {
    format!("{prefix}:cov:live:{symbol}:{date}")
}

/// Key of the backfill coverage of `symbol` on `date` for `interval` (e.g. `minute`).
pub fn backfill_key(prefix: &str, interval: &str, symbol: &str, date: &str) -> String {
    format!("{prefix}:cov:{interval}:{symbol}:{date}")
}

/// ORs `set` into the bitmap at `key` atomically and refreshes its expiry.
///
/// # Errors
/// The Redis error.
pub fn merge(
    con: &mut redis::Connection,
    key: &str,
    set: &MinuteSet,
    ttl: Duration,
) -> redis::RedisResult<()> {
    // A temporary key holds the new bits; MULTI makes the write, the OR and the cleanup one step.
    let tmp = format!("{key}:merge:{}", std::process::id());
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
    redis::pipe()
        .atomic()
        .cmd("SET")
        .arg(&tmp)
        .arg(&set.to_redis()[..])
        .arg("PX")
        .arg(10_000)
        .ignore()
        .cmd("BITOP")
        .arg("OR")
        .arg(key)
        .arg(key)
        .arg(&tmp)
        .ignore()
        .cmd("DEL")
        .arg(&tmp)
        .ignore()
        .cmd("PEXPIRE")
        .arg(key)
        .arg(ttl_ms)
        .ignore()
        .query::<()>(con)
}

/// Reads the union of the bitmaps at `keys` (missing keys are empty).
///
/// # Errors
/// The Redis error.
pub fn read_union(con: &mut redis::Connection, keys: &[String]) -> redis::RedisResult<MinuteSet> {
    if keys.is_empty() {
        return Ok(MinuteSet::EMPTY);
    }
    let values: Vec<Option<Vec<u8>>> = redis::cmd("MGET").arg(keys).query(con)?;
    Ok(values.iter().flatten().fold(MinuteSet::EMPTY, |acc, v| {
        acc.union(&MinuteSet::from_redis(v))
    }))
}

/// One instrument's live bits for the two most recent IST days (today, and yesterday for ticks
/// that straddle midnight), indexed by day parity.
#[derive(Debug)]
struct DaySlot {
    day: AtomicI64,
    bits: [AtomicU64; WORDS],
}

impl DaySlot {
    fn new() -> DaySlot {
        DaySlot {
            day: AtomicI64::new(i64::MIN),
            bits: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }
}

#[derive(Debug)]
struct Slot {
    symbol: String,
    days: [DaySlot; 2],
}

/// Live-tick coverage shared between the producer thread (writer) and the backfill control
/// thread (flusher). Built once with every instrument the engine knows; unknown keys are ignored.
#[derive(Debug)]
pub struct LiveCoverage {
    index: HashMap<Box<[u8]>, u32>,
    slots: Box<[Slot]>,
}

impl LiveCoverage {
    /// Coverage for `instruments`: each canonical symbol gets a slot; every `(alias, symbol)`
    /// pair makes `alias` (e.g. `kite:408065`) record into the symbol's slot too.
    pub fn new<'a>(aliases: impl IntoIterator<Item = (&'a str, &'a str)>) -> LiveCoverage {
        let mut index: HashMap<Box<[u8]>, u32> = HashMap::new();
        let mut slots: Vec<Slot> = Vec::new();
        for (alias, symbol) in aliases {
            let slot = match index.get(symbol.as_bytes()) {
                Some(&i) => i,
                None => {
                    let i = u32::try_from(slots.len()).unwrap_or(u32::MAX);
                    slots.push(Slot {
                        symbol: symbol.to_owned(),
                        days: [DaySlot::new(), DaySlot::new()],
                    });
                    index.insert(symbol.as_bytes().into(), i);
                    i
                }
            };
            index.entry(alias.as_bytes().into()).or_insert(slot);
        }
        LiveCoverage {
            index,
            slots: slots.into_boxed_slice(),
        }
    }

    /// The slot of an instrument key, to resolve once and then call [`Self::record_slot`].
    pub fn slot_of(&self, key: &[u8]) -> Option<u32> {
        self.index.get(key).copied()
    }

    /// Records a tick of instrument `key` (canonical `EXCHANGE:SYMBOL` or `<vendor>:<token>`)
    /// with exchange time `exchange_time_ms`. One hash lookup, no allocation; unknown keys and
    /// times before 1970 are ignored.
    #[inline]
    pub fn record(&self, key: &[u8], exchange_time_ms: i64) {
        if let Some(slot) = self.slot_of(key) {
            self.record_slot(slot, exchange_time_ms);
        }
    }

    /// Records a tick into a slot from [`Self::slot_of`]. At most one atomic OR, and none when
    /// the minute is already marked (the common case: many ticks per minute).
    #[inline]
    pub fn record_slot(&self, slot: u32, exchange_time_ms: i64) {
        if exchange_time_ms <= 0 {
            return;
        }
        let Some(s) = self.slots.get(slot as usize) else {
            return;
        };
        let day = ist_day(exchange_time_ms);
        let minute = ist_minute_of_day(exchange_time_ms);
        let Some(ds) = s.days.get((day & 1) as usize) else {
            return;
        };
        if ds.day.load(Ordering::Acquire) != day {
            // This parity slot still holds the day before yesterday (long flushed); clear it,
            // then claim it. The flusher discards a read that straddles the change.
            for w in &ds.bits {
                w.store(0, Ordering::Release);
            }
            ds.day.store(day, Ordering::SeqCst);
        }
        let Some(w) = ds.bits.get((minute / 64) as usize) else {
            return;
        };
        let mask = 1u64 << (minute % 64);
        if w.load(Ordering::Relaxed) & mask == 0 {
            w.fetch_or(mask, Ordering::Release);
        }
    }

    /// Moves every recorded minute to Redis (`{prefix}:cov:live:...`). Bits that could not be
    /// written are put back for the next flush. Returns the number of (instrument, day) bitmaps
    /// written.
    ///
    /// # Errors
    /// The first Redis error (the remaining slots keep their bits).
    pub fn flush(
        &self,
        con: &mut redis::Connection,
        prefix: &str,
        ttl: Duration,
    ) -> redis::RedisResult<usize> {
        let mut written = 0;
        for s in self.slots.iter() {
            for ds in &s.days {
                let day = ds.day.load(Ordering::SeqCst);
                if day == i64::MIN {
                    continue;
                }
                let mut set = MinuteSet::EMPTY;
                for (dst, src) in set.0.iter_mut().zip(ds.bits.iter()) {
                    *dst = src.swap(0, Ordering::AcqRel);
                }
                if set.is_empty() || ds.day.load(Ordering::SeqCst) != day {
                    // Empty, or the slot moved to a new day while we read: dropping the bits only
                    // makes a later backfill fetch a little more.
                    continue;
                }
                let date = crate::calendar::format_date(crate::clock::date_from_days(day));
                if let Err(e) = merge(con, &live_key(prefix, &s.symbol, &date), &set, ttl) {
                    if ds.day.load(Ordering::SeqCst) == day {
                        for (src, bits) in ds.bits.iter().zip(set.0.iter()) {
                            src.fetch_or(*bits, Ordering::AcqRel);
                        }
                    }
                    return Err(e);
                }
                written += 1;
            }
        }
        Ok(written)
    }

    /// Instruments tracked.
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// True when no instrument is tracked.
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minute_sets_round_trip_through_redis_bytes() {
        let mut s = MinuteSet::EMPTY;
        s.insert_range(555, 600);
        s.insert(0);
        s.insert(1439);
        assert_eq!(s.len(), 47);
        assert_eq!(s.ranges(), vec![(0, 1), (555, 600), (1439, 1440)]);
        let bytes = s.to_redis();
        assert_eq!(
            bytes[0], 0x80,
            "minute 0 is the MSB of byte 0 (Redis SETBIT order)"
        );
        assert_eq!(MinuteSet::from_redis(&bytes), s);
        let mut t = MinuteSet::EMPTY;
        t.insert_range(590, 700);
        assert_eq!(s.minus(&t).ranges(), vec![(0, 1), (555, 590), (1439, 1440)]);
        assert_eq!(s.union(&t).ranges(), vec![(0, 1), (555, 700), (1439, 1440)]);
        assert_eq!(MinuteSet::from_redis(&[0x40]).ranges(), vec![(1, 2)]);
    }

    #[test]
    fn live_record_marks_minutes_per_ist_day() {
        let cov = LiveCoverage::new([("kite:408065", "NSE:INFY"), ("NSE:INFY", "NSE:INFY")]);
        assert_eq!(cov.len(), 1);
        let day = crate::clock::days_from_date(crate::clock::Date {
            year: 2026,
            month: 11,
            day: 27,
        });
        let at = |m: u32| crate::calendar::utc_ms(day, m) + 30_000;
        cov.record(b"kite:408065", at(555));
        cov.record(b"NSE:INFY", at(556));
        cov.record(b"NSE:INFY", at(556));
        cov.record(b"unknown", at(557));
        let s = &cov.slots[0].days[(day & 1) as usize];
        assert_eq!(s.day.load(Ordering::SeqCst), day);
        let mut set = MinuteSet::EMPTY;
        for (d, w) in set.0.iter_mut().zip(s.bits.iter()) {
            *d = w.load(Ordering::SeqCst);
        }
        assert_eq!(set.ranges(), vec![(555, 557)]);
    }
}
