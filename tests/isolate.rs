//! The e2e bench's `Isolation` (`benches/support/isolate.rs`, its `unsafe` CPU-set calls): a
//! thread not named `feed-*` is moved off the feed core and gets its own set back on drop; a
//! `feed-*` thread is left alone. One test in this binary, so no other test's threads are moved.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    unsafe_code
)]

#[path = "../benches/support/isolate.rs"]
mod isolate;

use std::{
    mem,
    sync::mpsc,
    thread::{self, JoinHandle},
};

/// The cores thread `tid` may run on.
fn cores_of(tid: i32) -> Vec<usize> {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    // SAFETY: `set` is valid and writable for its size.
    let rc = unsafe { libc::sched_getaffinity(tid, mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0, "sched_getaffinity({tid})");
    (0..layer1::affinity::CPU_SETSIZE)
        // SAFETY: c < CPU_SETSIZE, the set's size in bits.
        .filter(|c| unsafe { libc::CPU_ISSET(*c, &set) })
        .collect()
}

/// A named thread parked until the returned sender is dropped, with its tid.
fn parked(name: &str) -> (i32, JoinHandle<()>, mpsc::Sender<()>) {
    let (tid_tx, tid_rx) = mpsc::channel();
    let (stop_tx, stop_rx) = mpsc::channel::<()>();
    let h = thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            let _ = stop_rx.recv();
        })
        .unwrap();
    (tid_rx.recv().unwrap(), h, stop_tx)
}

#[test]
fn non_feed_threads_leave_the_feed_core_and_come_back() {
    let cores = layer1::affinity::available_cores();
    let feed_core = *cores.last().expect("some core");
    let (feed_tid, feed_h, feed_stop) = parked("feed-iso");
    let (other_tid, other_h, other_stop) = parked("other-iso");
    let (feed_before, other_before) = (cores_of(feed_tid), cores_of(other_tid));
    assert!(other_before.contains(&feed_core));

    let iso = isolate::Isolation::apply(&[feed_core], &[]);
    let rest: Vec<usize> = cores.iter().copied().filter(|c| *c != feed_core).collect();
    assert_eq!(cores_of(feed_tid), feed_before, "a feed thread stays put");
    if rest.is_empty() {
        // One core: there is nowhere to move to, and the kernel refuses an empty set.
        assert_eq!(cores_of(other_tid), other_before);
        assert!(iso.refused > 0);
    } else {
        assert_eq!(cores_of(other_tid), rest, "moved off the feed core");
        assert_eq!(iso.refused, 0);
        assert_eq!(iso.processes, ["bench (engine)"]);
    }
    drop(iso);
    assert_eq!(cores_of(other_tid), other_before, "its own set back");
    assert_eq!(cores_of(feed_tid), feed_before);

    drop((feed_stop, other_stop));
    feed_h.join().unwrap();
    other_h.join().unwrap();
}
