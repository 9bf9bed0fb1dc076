//! The loop's timers: one binary heap of deadlines, cancelled lazily by generation.
//!
//! A connection has at most one live timer per [`TimerKind`]; re-arming bumps the generation, so
//! an older heap entry is skipped when it surfaces. Dead entries are compacted away once they
//! outnumber the live ones, so a connection that fails a thousand times leaves nothing behind.

use std::{cmp::Reverse, collections::BinaryHeap, time::Instant};

/// What a timer does when it fires.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum TimerKind {
    /// Backoff over: start the next attempt.
    Retry = 0,
    /// The connect/handshake took too long.
    ConnectTimeout = 1,
    /// Send the application-level heartbeat.
    Heartbeat = 2,
    /// Check for silence.
    Watchdog = 3,
}

pub(crate) const KINDS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Entry {
    at: Instant,
    conn: usize,
    kind: TimerKind,
    generation: u64,
}

/// Per-connection generations, one per kind.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TimerSlots {
    generation: [u64; KINDS],
    armed: [bool; KINDS],
}

#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
    live: usize,
}

impl Timers {
    pub(crate) fn arm(
        &mut self,
        slots: &mut TimerSlots,
        conn: usize,
        kind: TimerKind,
        at: Instant,
    ) {
        let k = kind as usize;
        if let (Some(g), Some(a)) = (slots.generation.get_mut(k), slots.armed.get_mut(k)) {
            *g = g.wrapping_add(1);
            if !*a {
                self.live += 1;
            }
            *a = true;
            self.heap.push(Reverse(Entry {
                at,
                conn,
                kind,
                generation: *g,
            }));
        }
        self.compact_if_needed();
    }

    pub(crate) fn cancel(&mut self, slots: &mut TimerSlots, kind: TimerKind) {
        let k = kind as usize;
        if let (Some(g), Some(a)) = (slots.generation.get_mut(k), slots.armed.get_mut(k)) {
            *g = g.wrapping_add(1);
            if *a {
                self.live = self.live.saturating_sub(1);
            }
            *a = false;
        }
    }

    pub(crate) fn cancel_all(&mut self, slots: &mut TimerSlots) {
        for kind in [
            TimerKind::Retry,
            TimerKind::ConnectTimeout,
            TimerKind::Heartbeat,
            TimerKind::Watchdog,
        ] {
            self.cancel(slots, kind);
        }
    }

    /// The earliest pending deadline (possibly a dead entry: firing it is a no-op).
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.at)
    }

    /// Pops the next due entry. `slots_of` gives the slots of a connection so liveness can be
    /// checked; a live entry is disarmed and returned.
    pub(crate) fn pop_due(
        &mut self,
        now: Instant,
        mut slots_of: impl FnMut(usize) -> Option<TimerSlots>,
    ) -> Option<(usize, TimerKind, u64)> {
        while let Some(Reverse(e)) = self.heap.peek().copied() {
            if e.at > now {
                return None;
            }
            self.heap.pop();
            let k = e.kind as usize;
            if let Some(s) = slots_of(e.conn) {
                if s.armed.get(k) == Some(&true) && s.generation.get(k) == Some(&e.generation) {
                    return Some((e.conn, e.kind, e.generation));
                }
            }
        }
        None
    }

    /// Marks a fired timer as no longer armed (called with the generation `pop_due` returned).
    pub(crate) fn fired(&mut self, slots: &mut TimerSlots, kind: TimerKind, generation: u64) {
        let k = kind as usize;
        if slots.generation.get(k) == Some(&generation) {
            if let Some(a) = slots.armed.get_mut(k) {
                if *a {
                    self.live = self.live.saturating_sub(1);
                }
                *a = false;
            }
        }
    }

    /// Heap entries, dead ones included.
    pub(crate) fn pending(&self) -> usize {
        self.heap.len()
    }

    /// Live (armed) timers.
    #[cfg(test)]
    pub(crate) fn live(&self) -> usize {
        self.live
    }

    fn compact_if_needed(&mut self) {
        // Dead entries are only dropped when they surface; if cancellations pile them up (a
        // connection re-armed many times before its deadlines), rebuild without them. The
        // generation check needs the slots, which the heap does not have, so keep the newest
        // entry per (conn, kind): older ones are dead by construction.
        if self.heap.len() <= 2 * self.live + 64 {
            return;
        }
        let mut entries = std::mem::take(&mut self.heap).into_vec();
        entries.sort_unstable_by(|Reverse(a), Reverse(b)| {
            (a.conn, a.kind, Reverse(a.generation)).cmp(&(b.conn, b.kind, Reverse(b.generation)))
        });
        entries.dedup_by(|Reverse(later), Reverse(first)| {
            later.conn == first.conn && later.kind == first.kind
        });
        self.heap = BinaryHeap::from(entries);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn rearm_supersedes_and_cancel_removes() {
        let mut t = Timers::default();
        let mut s = TimerSlots::default();
        let now = Instant::now();
        t.arm(&mut s, 3, TimerKind::Retry, now + Duration::from_millis(5));
        t.arm(&mut s, 3, TimerKind::Retry, now + Duration::from_millis(1));
        t.arm(
            &mut s,
            3,
            TimerKind::Heartbeat,
            now + Duration::from_millis(2),
        );
        t.cancel(&mut s, TimerKind::Heartbeat);
        assert_eq!(t.live(), 1);
        let later = now + Duration::from_millis(10);
        let (c, k, g) = t.pop_due(later, |_| Some(s)).expect("retry due");
        assert_eq!((c, k), (3, TimerKind::Retry));
        t.fired(&mut s, k, g);
        assert!(t.pop_due(later, |_| Some(s)).is_none());
        assert_eq!(t.live(), 0);
        assert_eq!(t.pending(), 0);
    }

    #[test]
    fn many_rearms_do_not_grow_the_heap_without_bound() {
        let mut t = Timers::default();
        let mut s = TimerSlots::default();
        let far = Instant::now() + Duration::from_secs(3600);
        for _ in 0..10_000 {
            t.arm(&mut s, 0, TimerKind::ConnectTimeout, far);
            t.cancel(&mut s, TimerKind::ConnectTimeout);
            t.arm(&mut s, 0, TimerKind::Retry, far);
        }
        assert!(t.pending() <= 2 * t.live() + 65, "heap {}", t.pending());
    }
}
