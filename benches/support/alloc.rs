//! Shared by the bench binaries (`#[path]`-included): a global allocator that counts allocations
//! per OS thread, so a bench can report allocations per tick on the feed and producer threads,
//! and the process's RSS from `/proc/self/status`.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
};

const SLOTS: usize = 256;
static COUNTS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static TIDS: [AtomicU64; SLOTS] = [const { AtomicU64::new(0) }; SLOTS];
static NEXT: AtomicUsize = AtomicUsize::new(0);
static TOTAL: AtomicU64 = AtomicU64::new(0);
thread_local! {
    static SLOT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The counting allocator; install with `#[global_allocator]`.
pub(crate) struct Counting;

fn slot() -> usize {
    SLOT.try_with(|s| {
        if s.get() == usize::MAX {
            let i = NEXT.fetch_add(1, Ordering::Relaxed) % SLOTS;
            // SAFETY: gettid has no preconditions and touches no memory.
            let tid = unsafe { libc::syscall(libc::SYS_gettid) } as u64;
            TIDS[i].store(tid, Ordering::Relaxed);
            s.set(i);
        }
        s.get()
    })
    .unwrap_or(SLOTS - 1)
}

fn count() {
    COUNTS[slot()].fetch_add(1, Ordering::Relaxed);
    TOTAL.fetch_add(1, Ordering::Relaxed);
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        count();
        // SAFETY: same layout contract as the caller's.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        // SAFETY: `p` came from `System.alloc` with `l`.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, n: usize) -> *mut u8 {
        count();
        // SAFETY: `p` came from `System.alloc` with `l`.
        unsafe { System.realloc(p, l, n) }
    }
}

/// Allocation counts of the live threads whose name starts with `prefix` (`feed-` for every
/// feed thread).
pub(crate) fn allocs_of(prefix: &str) -> u64 {
    allocs_where(|name| name.starts_with(prefix))
}

/// Allocation counts of the live threads named exactly `name` (`producer`: a prefix would also
/// take a test thread, which is named after its test function).
pub(crate) fn allocs_of_thread(name: &str) -> u64 {
    allocs_where(|n| n == name)
}

fn allocs_where(matches: impl Fn(&str) -> bool) -> u64 {
    let n = NEXT.load(Ordering::Relaxed).min(SLOTS);
    (0..n)
        .filter(|&i| {
            let tid = TIDS[i].load(Ordering::Relaxed);
            std::fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
                .is_ok_and(|c| matches(c.trim()))
        })
        .map(|i| COUNTS[i].load(Ordering::Relaxed))
        .sum()
}

/// Allocations by every thread.
#[allow(dead_code)]
pub(crate) fn total_allocs() -> u64 {
    TOTAL.load(Ordering::Relaxed)
}

/// `VmRSS` and `VmHWM` (peak) in MB.
pub(crate) fn rss_mb() -> (f64, f64) {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
