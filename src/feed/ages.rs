//! Per-instrument data age: when each subscribed instrument last produced a tick.
//!
//! A connection can be healthy while one instrument is silent (suspended, illiquid, dropped by
//! the vendor); this table makes that visible. It is a fixed-capacity open-addressing map of
//! atomics, so the parser thread can stamp it per tick without a lock or an allocation, and the
//! metrics thread can read it concurrently.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const EMPTY: u32 = u32::MAX;

/// Last-tick time per instrument id.
#[derive(Debug)]
pub struct InstrumentAges {
    keys: Box<[AtomicU32]>,
    last_ns: Box<[AtomicU64]>,
    mask: usize,
    len: AtomicU64,
}

impl InstrumentAges {
    /// A table for up to `capacity` instruments (sized to twice that, rounded to a power of two,
    /// so probes stay short). Id `u32::MAX` is reserved.
    pub fn with_capacity(capacity: usize) -> Self {
        let slots = (capacity.max(8) * 2).next_power_of_two();
        InstrumentAges {
            keys: (0..slots).map(|_| AtomicU32::new(EMPTY)).collect(),
            last_ns: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            mask: slots - 1,
            len: AtomicU64::new(0),
        }
    }

    fn start(&self, id: u32) -> usize {
        // Fibonacci hashing spreads sequential tokens.
        (u64::from(id).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as usize & self.mask
    }

    /// Registers `id` (idempotent). Returns false when the table is full or the id is reserved.
    pub fn register(&self, id: u32) -> bool {
        if id == EMPTY {
            return false;
        }
        let mut i = self.start(id);
        for _ in 0..=self.mask {
            let Some(k) = self.keys.get(i) else {
                return false;
            };
            match k.compare_exchange(EMPTY, id, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => {
                    self.len.fetch_add(1, Ordering::Relaxed);
                    return true;
                }
                Err(existing) if existing == id => return true,
                Err(_) => i = (i + 1) & self.mask,
            }
        }
        false
    }

    fn slot(&self, id: u32) -> Option<usize> {
        let mut i = self.start(id);
        for _ in 0..=self.mask {
            let k = self.keys.get(i)?.load(Ordering::Acquire);
            if k == id {
                return Some(i);
            }
            if k == EMPTY {
                return None;
            }
            i = (i + 1) & self.mask;
        }
        None
    }

    /// Records a tick for `id` at `now_ns` (ignored for unregistered ids).
    pub fn touch(&self, id: u32, now_ns: u64) {
        if let Some(ts) = self.slot(id).and_then(|i| self.last_ns.get(i)) {
            ts.store(now_ns, Ordering::Relaxed);
        }
    }

    /// When `id` last ticked (`Some(0)` = registered, never ticked; `None` = not registered).
    pub fn last_ns(&self, id: u32) -> Option<u64> {
        let i = self.slot(id)?;
        self.last_ns.get(i).map(|t| t.load(Ordering::Relaxed))
    }

    /// Registered instruments.
    pub fn len(&self) -> usize {
        usize::try_from(self.len.load(Ordering::Relaxed)).unwrap_or(usize::MAX)
    }

    /// True when nothing is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends to `out` every registered id silent for longer than `max_age_ns` at `now_ns`
    /// (never-ticked ones included), and returns the largest age seen (`u64::MAX` if one never
    /// ticked).
    pub fn silent(&self, now_ns: u64, max_age_ns: u64, out: &mut Vec<u32>) -> u64 {
        let mut oldest = 0;
        for (k, t) in self.keys.iter().zip(self.last_ns.iter()) {
            let id = k.load(Ordering::Acquire);
            if id == EMPTY {
                continue;
            }
            let last = t.load(Ordering::Relaxed);
            let age = if last == 0 {
                u64::MAX
            } else {
                now_ns.saturating_sub(last)
            };
            oldest = oldest.max(age);
            if age > max_age_ns {
                out.push(id);
            }
        }
        oldest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn register_touch_and_report_silence() {
        let a = InstrumentAges::with_capacity(100);
        for id in 1..=100 {
            assert!(a.register(id * 256 + 1));
        }
        assert!(a.register(257), "idempotent");
        assert_eq!(a.len(), 100);
        for id in 1..=99 {
            a.touch(id * 256 + 1, 1_000);
        }
        a.touch(7, 5); // unregistered: ignored
        assert_eq!(a.last_ns(7), None);
        let mut out = Vec::new();
        let oldest = a.silent(2_000, 5_000, &mut out);
        assert_eq!(out, vec![100 * 256 + 1]);
        assert_eq!(oldest, u64::MAX);
        a.touch(100 * 256 + 1, 1_500);
        out.clear();
        assert_eq!(a.silent(2_000, 5_000, &mut out), 1_000);
        assert!(out.is_empty());
        assert!(!a.register(u32::MAX));
    }

    #[test]
    fn full_table_refuses() {
        let a = InstrumentAges::with_capacity(4); // 16 slots
        let ok = (0..40).filter(|i| a.register(*i)).count();
        assert_eq!(ok, 16);
    }
}
