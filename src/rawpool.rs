//! Raw-frame buffers that travel from a feed thread to the producer thread and come back: the
//! allocation-free way to keep a copy of every frame (for `market.raw`, capture files and the
//! dead-letter topic's raw bytes) while the feed thread reuses its read buffer.
//!
//! A [`RawPool`] belongs to one feed thread's pipeline and is filled when the pipeline is built
//! (on the thread that builds it, before the feed thread starts): `count` buffers of `capacity`
//! bytes. [`RawPool::copy`] takes the most recently returned free buffer (so only as many
//! buffers are ever touched as frames were in flight at once) and copies the frame into it (a
//! `memcpy`, cheap next to parsing). The [`RawBuf`] then moves through the hand-over queue by
//! value; whoever drops it (the producer once the record is encoded, journaled or captured; a
//! test; a failed send) sends the buffer back over the bounded return channel, without
//! allocating.
//!
//! Policy when every buffer is in flight: back-pressure, like the hand-over queue. The feed
//! thread waits for the producer to return one (counted in `queue_full_total{queue="raw_pool"}`),
//! so raw frames in flight, and their memory, are bounded by the pool. Only if none comes back
//! within [`RAW_POOL_WAIT`] (the producer is stuck, not slow) does it allocate one (counted in
//! `raw_buffer_allocations_total` and [`RawPool::allocations`]) and stop waiting until buffers
//! return; a frame is never dropped here. A frame larger than its buffer grows the buffer (also
//! counted), which keeps the larger size. Buffers beyond `count` (those allocated while starved)
//! are freed when they come back to a full pool.

use crossbeam_channel::{bounded, Receiver, Sender};

/// How long the feed thread waits for a returned buffer before it allocates one.
pub const RAW_POOL_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// A frame's bytes in a buffer that returns to its pool when dropped.
pub struct RawBuf {
    buf: Vec<u8>,
    home: Option<Sender<Vec<u8>>>,
}

impl RawBuf {
    /// A buffer that belongs to no pool (an allocation; for code off the hot path).
    pub fn from_slice(bytes: &[u8]) -> Self {
        RawBuf {
            buf: bytes.to_vec(),
            home: None,
        }
    }

    /// An empty buffer (no allocation).
    pub fn empty() -> Self {
        RawBuf {
            buf: Vec::new(),
            home: None,
        }
    }
}

impl std::ops::Deref for RawBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf
    }
}

impl AsRef<[u8]> for RawBuf {
    fn as_ref(&self) -> &[u8] {
        &self.buf
    }
}

impl Clone for RawBuf {
    /// A copy outside the pool (an allocation): clones are for tests and cold paths.
    fn clone(&self) -> Self {
        RawBuf::from_slice(&self.buf)
    }
}

impl std::fmt::Debug for RawBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawBuf")
            .field("len", &self.buf.len())
            .field("pooled", &self.home.is_some())
            .finish()
    }
}

impl PartialEq for RawBuf {
    fn eq(&self, other: &Self) -> bool {
        self.buf == other.buf
    }
}

impl Eq for RawBuf {}

impl Drop for RawBuf {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            // A full channel (more buffers out than the pool keeps) or a dropped pool frees it.
            let _ = home.try_send(std::mem::take(&mut self.buf));
        }
    }
}

/// The free buffers of one feed thread.
pub struct RawPool {
    /// Free buffers, most recently returned on top.
    stack: Vec<Vec<u8>>,
    returned: Receiver<Vec<u8>>,
    home: Sender<Vec<u8>>,
    capacity: usize,
    /// Buffers not yet created (a pool built without filling creates them on first need).
    uncreated: usize,
    starved: bool,
    /// How long to wait for a returned buffer before allocating ([`RAW_POOL_WAIT`]).
    wait: std::time::Duration,
    allocations: u64,
    waits: u64,
    counters: PoolCounters,
}

/// Where a pool reports (the process metrics, or nothing in tests).
#[derive(Default)]
pub struct PoolCounters {
    /// `raw_buffer_allocations_total`.
    pub allocations: Option<prometheus::IntCounter>,
    /// `queue_full_total{queue="raw_pool"}`.
    pub waits: Option<prometheus::IntCounter>,
}

impl std::fmt::Debug for RawPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPool")
            .field("free", &self.free())
            .field("allocations", &self.allocations)
            .field("waits", &self.waits)
            .finish()
    }
}

impl RawPool {
    /// A pool of `count` buffers of `capacity` bytes, allocated now when `fill` (the feed
    /// threads' pools), else on first need (the allocations then count).
    pub fn new(count: usize, capacity: usize, fill: bool, counters: PoolCounters) -> Self {
        let count = count.max(1);
        let (home, returned) = bounded(count);
        let mut stack = Vec::with_capacity(count);
        if fill {
            stack.extend((0..count).map(|_| Vec::with_capacity(capacity)));
        }
        RawPool {
            uncreated: count - stack.len(),
            stack,
            returned,
            home,
            capacity,
            starved: false,
            wait: RAW_POOL_WAIT,
            allocations: 0,
            waits: 0,
            counters,
        }
    }

    /// `bytes` in a pooled buffer. Waits for the producer to return one when all are in flight;
    /// allocates (and counts) only when the pool was built unfilled, when starved, or when the
    /// frame is larger than the buffer.
    pub fn copy(&mut self, bytes: &[u8]) -> RawBuf {
        self.take_returned();
        let mut buf = match self.stack.pop() {
            Some(b) => b,
            None if self.uncreated > 0 => {
                self.uncreated -= 1;
                self.count_allocation();
                Vec::with_capacity(bytes.len().max(self.capacity))
            }
            None => self.wait(bytes.len()),
        };
        buf.clear();
        if buf.capacity() < bytes.len() {
            // Growing is an allocation too; the buffer keeps the larger size afterwards.
            self.count_allocation();
            buf.reserve_exact(bytes.len());
        }
        buf.extend_from_slice(bytes);
        RawBuf {
            buf,
            home: Some(self.home.clone()),
        }
    }

    /// Moves returned buffers onto the stack (one atomic load when there are none).
    fn take_returned(&mut self) {
        while let Ok(b) = self.returned.try_recv() {
            self.starved = false;
            if self.stack.len() < self.stack.capacity() {
                self.stack.push(b);
            }
        }
    }

    /// Every buffer is in flight: back-pressure until one returns, or allocate if none does.
    fn wait(&mut self, len: usize) -> Vec<u8> {
        if !self.starved {
            self.waits += 1;
            if let Some(c) = &self.counters.waits {
                c.inc();
            }
            if let Ok(b) = self.returned.recv_timeout(self.wait) {
                return b;
            }
            self.starved = true;
            log::error!(event = "raw_pool_starved", code = "PIPELINE_RAW_POOL_STARVED"; "no raw-frame buffer came back for {} ms; allocating and counting until they do", self.wait.as_millis());
        }
        self.count_allocation();
        Vec::with_capacity(len.max(self.capacity))
    }

    fn count_allocation(&mut self) {
        self.allocations += 1;
        if let Some(c) = &self.counters.allocations {
            c.inc();
        }
    }

    /// Buffers allocated or grown on the pool's thread so far (not the initial fill).
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    /// Times every buffer was in flight and the pool waited for one.
    pub fn waits(&self) -> u64 {
        self.waits
    }

    /// Free buffers in the pool (including those returned and not yet taken back).
    pub fn free(&self) -> usize {
        self.stack.len() + self.returned.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lazy(count: usize) -> RawPool {
        RawPool::new(count, 64, false, PoolCounters::default())
    }

    #[test]
    fn buffers_come_back_and_are_reused() {
        let mut pool = lazy(4);
        let a = pool.copy(b"hello");
        assert_eq!(&*a, b"hello");
        assert_eq!(pool.allocations(), 1);
        drop(a);
        assert_eq!(pool.free(), 1);
        let b = pool.copy(b"world!");
        assert_eq!(&*b, b"world!");
        assert_eq!(pool.allocations(), 1, "the returned buffer was reused");
        drop(b);
        // Larger than the buffer: grown once, counted, then reused at the new size.
        let big = vec![7u8; 1000];
        drop(pool.copy(&big));
        assert_eq!(pool.allocations(), 2);
        let again = pool.copy(&big);
        assert_eq!(&*again, &big[..]);
        assert_eq!(pool.allocations(), 2);
    }

    #[test]
    fn a_filled_pool_never_allocates_while_frames_fit() {
        let mut pool = RawPool::new(8, 256, true, PoolCounters::default());
        for round in 0..100u8 {
            let held: Vec<RawBuf> = (0..8u8).map(|i| pool.copy(&[i ^ round; 200])).collect();
            for (i, b) in held.iter().enumerate() {
                assert_eq!(&**b, &[i as u8 ^ round; 200]);
            }
        }
        assert_eq!(pool.allocations(), 0);
        assert_eq!(pool.waits(), 0);
        assert_eq!(pool.free(), 8);
    }

    #[test]
    fn when_all_are_in_flight_the_feed_waits_for_a_return() {
        let waits = prometheus::IntCounter::new("t_raw_waits", "t").ok();
        let mut pool = RawPool::new(
            2,
            64,
            true,
            PoolCounters {
                allocations: None,
                waits: waits.clone(),
            },
        );
        let a = pool.copy(b"a");
        let b = pool.copy(b"b");
        // The "producer" returns one buffer a little later, from another thread.
        let t = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(a);
            b
        });
        let c = pool.copy(b"c");
        assert_eq!(&*c, b"c");
        assert_eq!(pool.waits(), 1);
        assert_eq!(waits.map(|w| w.get()), Some(1));
        assert_eq!(pool.allocations(), 0, "it waited instead of allocating");
        let b = t.join().ok();
        assert_eq!(b.as_deref(), Some(&b"b"[..]));
    }

    /// No buffer back within the wait (the producer stuck): the pool allocates and counts, and
    /// stops waiting (one wait counted) until a buffer returns; then it reuses, and waits again
    /// the next time every buffer is in flight.
    #[test]
    fn a_starved_pool_allocates_and_counts_without_waiting_until_buffers_return() {
        let allocations = prometheus::IntCounter::new("t_raw_allocs", "t").ok();
        let waits = prometheus::IntCounter::new("t_raw_waits2", "t").ok();
        let mut pool = RawPool::new(
            2,
            64,
            true,
            PoolCounters {
                allocations: allocations.clone(),
                waits: waits.clone(),
            },
        );
        pool.wait = std::time::Duration::from_millis(20);
        let held = [pool.copy(b"a"), pool.copy(b"b")];
        let starved: Vec<RawBuf> = (0..5u8).map(|i| pool.copy(&[i; 3])).collect();
        assert_eq!(
            starved.iter().map(|b| b[0]).collect::<Vec<_>>(),
            [0, 1, 2, 3, 4]
        );
        assert_eq!(pool.waits(), 1, "one wait, then no more while starved");
        assert_eq!(
            pool.allocations(),
            5,
            "each frame while starved is one allocation"
        );
        assert_eq!(waits.map(|c| c.get()), Some(1));
        assert_eq!(allocations.map(|c| c.get()), Some(5));
        // A buffer comes back: the starvation is over and it is reused.
        let [a, b] = held;
        drop(a);
        let c = pool.copy(b"c");
        assert_eq!(pool.allocations(), 5, "the returned buffer is reused");
        // Every buffer in flight again (the starved ones' returns are kept up to the pool's
        // size): the pool waits again before allocating.
        drop(starved);
        let mut more = Vec::new();
        while pool.free() > 0 {
            more.push(pool.copy(b"m"));
        }
        assert_eq!(pool.allocations(), 5);
        let d = pool.copy(b"d");
        assert_eq!(pool.waits(), 2, "waits again once it was fed");
        assert_eq!(pool.allocations(), 6);
        drop((b, c, d, more));
    }

    #[test]
    fn unpooled_buffers_and_a_dropped_pool_are_fine() {
        let mut pool = lazy(1);
        let b = pool.copy(b"x");
        drop(pool);
        drop(b); // the channel is gone: the buffer is freed
        let c = RawBuf::from_slice(b"abc");
        assert_eq!(c.clone(), c);
        assert!(RawBuf::empty().is_empty());
    }
}
