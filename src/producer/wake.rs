//! How the feed threads wake a parked producer thread without a system call on their path
//! while ticks flow.
//!
//! The producer used to wait on the hand-over channels themselves (`Select`). A waiting receiver
//! makes every send that finds it asleep wake it with a `futex` call, and the producer, faster
//! than one feed, was asleep for most sends: under `perf` a quarter of the feed thread's time
//! went to those wake-ups (on a VM, waking an idle vCPU is an inter-processor interrupt and a VM
//! exit, several microseconds, spent between two frames).
//!
//! Now the producer parks on its own [`Wake`] when every queue is empty, in one of two ways:
//! - while ticks flow (something arrived within [`QUIET_AFTER`]) it naps for [`FLOW_POLL`] and
//!   asks nobody to wake it, so a feed thread's [`Wake::notify`] (once per frame) is a fence and
//!   a load, never a system call; the nap adds at most [`FLOW_POLL`] to receive -> ack, against
//!   milliseconds for the broker's acknowledgement;
//! - once the feeds are quiet it parks for up to [`QUIET_POLL`] and asks to be woken, so the
//!   first frame after a pause costs its feed one wake-up.
//!
//! A feed also notifies before it waits on a full queue. Other senders (the backfill, tests)
//! need not notify: the producer never parks longer than [`QUIET_POLL`].

use std::{
    sync::{
        atomic::{fence, AtomicBool, Ordering},
        Arc, OnceLock,
    },
    thread::Thread,
    time::Duration,
};

/// The producer's nap while ticks flow (no wake-up requested).
pub const FLOW_POLL: Duration = Duration::from_micros(200);

/// Idle this long, the producer parks asking to be woken.
pub const QUIET_AFTER: Duration = Duration::from_millis(20);

/// The producer's longest park.
pub const QUIET_POLL: Duration = Duration::from_millis(2);

#[derive(Debug, Default)]
struct Inner {
    /// The producer is parked and asked to be woken.
    parked: AtomicBool,
    thread: OnceLock<Thread>,
}

/// The producer thread's wake-up; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Wake(Arc<Inner>);

impl Wake {
    /// A wake-up with no producer parked on it yet.
    pub fn new() -> Wake {
        Wake::default()
    }

    /// Wakes the producer if it is parked and asked to be woken. Call after queueing, not per
    /// item.
    #[inline]
    pub fn notify(&self) {
        // Pairs with the fence in `park`: either the producer's check sees what was queued
        // before this call, or this load sees its `parked` store (Dekker's argument).
        fence(Ordering::SeqCst);
        if self.0.parked.load(Ordering::Relaxed) && self.0.parked.swap(false, Ordering::AcqRel) {
            if let Some(t) = self.0.thread.get() {
                t.unpark();
            }
        }
    }

    /// Producer side: parks the calling thread for at most `timeout` unless `ready` (checked
    /// after announcing the park) says there is work. With `wake_me`, [`Wake::notify`] ends
    /// the park early; without, notifies cost the feeds nothing and the park runs its time.
    pub fn park(&self, timeout: Duration, wake_me: bool, ready: impl FnOnce() -> bool) {
        let me = self.0.thread.get_or_init(std::thread::current);
        if !wake_me || me.id() != std::thread::current().id() {
            // A nap (and any thread but the first to park, which is the one woken) sleeps out
            // its time unless there is work already.
            if !ready() {
                std::thread::sleep(timeout);
            }
            return;
        }
        self.0.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if !ready() {
            // A notify between the store and here leaves an unpark token: this returns at once.
            std::thread::park_timeout(timeout);
        }
        self.0.parked.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::{
        sync::atomic::AtomicU64,
        time::{Duration, Instant},
    };

    /// A notify after work is queued always reaches the parked producer: 2,000 hand-overs, each
    /// of which would stall for the whole park timeout if a wake-up were lost.
    #[test]
    fn no_wake_up_is_lost() {
        let wake = Wake::new();
        let queued = Arc::new(AtomicU64::new(0));
        let taken = Arc::new(AtomicU64::new(0));
        const N: u64 = 2000;
        let consumer = {
            let (wake, queued, taken) = (wake.clone(), Arc::clone(&queued), Arc::clone(&taken));
            std::thread::spawn(move || {
                let mut slow = 0u32;
                while taken.load(Ordering::Relaxed) < N {
                    let t = Instant::now();
                    wake.park(Duration::from_secs(5), true, || {
                        queued.load(Ordering::SeqCst) > taken.load(Ordering::Relaxed)
                    });
                    if t.elapsed() >= Duration::from_secs(5) {
                        slow += 1;
                    }
                    taken.store(queued.load(Ordering::SeqCst), Ordering::Relaxed);
                }
                slow
            })
        };
        for i in 1..=N {
            // Hand over item i, then wait until it is taken before the next.
            queued.store(i, Ordering::SeqCst);
            wake.notify();
            let deadline = Instant::now() + Duration::from_secs(30);
            while taken.load(Ordering::Relaxed) < i && Instant::now() < deadline {
                std::hint::spin_loop();
                std::thread::yield_now();
            }
        }
        assert_eq!(consumer.join().unwrap(), 0, "a park ran out its timeout");
    }

    /// Without a wake-up request, a notify neither wakes nor costs a wake-up later.
    #[test]
    fn a_nap_is_not_woken() {
        let wake = Wake::new();
        let w = wake.clone();
        let napper = std::thread::spawn(move || {
            let t = Instant::now();
            w.park(Duration::from_millis(200), false, || false);
            t.elapsed()
        });
        std::thread::sleep(Duration::from_millis(20));
        wake.notify();
        assert!(napper.join().unwrap() >= Duration::from_millis(200));
        assert!(!wake.0.parked.load(Ordering::Relaxed));
    }
}
