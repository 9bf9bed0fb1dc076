//! Raw-frame buffers that travel from a feed thread to the producer thread and come back: the
//! allocation-free way to keep a copy of every frame (for `market.raw`, capture files and the
//! dead-letter topic's raw bytes) while the feed thread reuses its read buffer.
//!
//! A [`RawPool`] belongs to one feed thread's pipeline. [`RawPool::copy`] takes a free buffer
//! from the pool's return channel and copies the frame into it (a `memcpy`, cheap next to
//! parsing). The [`RawBuf`] then moves through the hand-over queue by value; whoever drops it
//! (the producer once the record is encoded, journaled or captured; a test; a failed send) sends
//! the buffer back over the bounded return channel, without allocating.
//!
//! Policy when the pool has no free buffer, or none large enough (more frames in flight than the
//! pool holds, or a frame larger than any before): the feed thread allocates (or grows) one, and
//! counts it in `raw_buffer_allocations_total` and [`RawPool::allocations`]; it never waits and
//! never drops a frame. Memory stays bounded: the return channel holds at most `capacity`
//! buffers, so a buffer returned to a full channel is freed, and each buffer is at most as large
//! as the largest frame it carried (the feed's `max_message_bytes`). Once warm (enough buffers
//! for the frames in flight, each grown to the frame size), the count stays flat.

use crossbeam_channel::{bounded, Receiver, Sender};

/// Smallest capacity a new buffer gets, so small frames do not each grow it.
const MIN_CAPACITY: usize = 4096;

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
    free: Receiver<Vec<u8>>,
    home: Sender<Vec<u8>>,
    allocations: u64,
    counter: Option<prometheus::IntCounter>,
}

impl std::fmt::Debug for RawPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawPool")
            .field("free", &self.free.len())
            .field("allocations", &self.allocations)
            .finish()
    }
}

impl RawPool {
    /// A pool that keeps at most `capacity` free buffers (allocated lazily, on first need).
    /// Allocations are also counted in `counter` when given.
    pub fn new(capacity: usize, counter: Option<prometheus::IntCounter>) -> Self {
        let (home, free) = bounded(capacity.max(1));
        RawPool {
            free,
            home,
            allocations: 0,
            counter,
        }
    }

    /// `bytes` in a pooled buffer. Allocates (and counts) only when no free buffer is large
    /// enough.
    pub fn copy(&mut self, bytes: &[u8]) -> RawBuf {
        let mut buf = match self.free.try_recv() {
            Ok(b) => b,
            Err(_) => {
                self.count();
                Vec::with_capacity(bytes.len().max(MIN_CAPACITY))
            }
        };
        buf.clear();
        if buf.capacity() < bytes.len() {
            // Growing is an allocation too; the buffer keeps the larger size afterwards.
            self.count();
            buf.reserve_exact(bytes.len());
        }
        buf.extend_from_slice(bytes);
        RawBuf {
            buf,
            home: Some(self.home.clone()),
        }
    }

    fn count(&mut self) {
        self.allocations += 1;
        if let Some(c) = &self.counter {
            c.inc();
        }
    }

    /// Buffers allocated or grown so far.
    pub fn allocations(&self) -> u64 {
        self.allocations
    }

    /// Free buffers waiting in the pool.
    pub fn free(&self) -> usize {
        self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_are_reused() {
        let mut pool = RawPool::new(4, None);
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
        let big = vec![7u8; MIN_CAPACITY * 3];
        drop(pool.copy(&big));
        assert_eq!(pool.allocations(), 2);
        let again = pool.copy(&big);
        assert_eq!(&*again, &big[..]);
        assert_eq!(pool.allocations(), 2);
    }

    #[test]
    fn an_empty_pool_allocates_and_counts_never_blocks() {
        let counter = prometheus::IntCounter::new("t_raw_allocs", "t").ok();
        let mut pool = RawPool::new(2, counter.clone());
        let held: Vec<RawBuf> = (0..5u8).map(|i| pool.copy(&[i; 10])).collect();
        assert_eq!(pool.allocations(), 5);
        assert_eq!(counter.map(|c| c.get()), Some(5));
        for (i, b) in held.iter().enumerate() {
            assert_eq!(&**b, &[i as u8; 10]);
        }
        // Only `capacity` buffers are kept; the rest are freed.
        drop(held);
        assert_eq!(pool.free(), 2);
    }

    #[test]
    fn unpooled_buffers_and_a_dropped_pool_are_fine() {
        let mut pool = RawPool::new(1, None);
        let b = pool.copy(b"x");
        drop(pool);
        drop(b); // the channel is gone: the buffer is freed
        let c = RawBuf::from_slice(b"abc");
        assert_eq!(c.clone(), c);
        assert!(RawBuf::empty().is_empty());
    }
}
