//! A fast, non-cryptographic hasher for the lookup tables a feed thread consults on every tick
//! (instrument ids and failover pairs in [`crate::routing`]).
//!
//! std's default SipHash resists hash flooding, which matters when an attacker chooses the keys
//! a table holds. These tables hold only keys from the configuration and the instrument master;
//! a feed's ticks are only looked up in them, so hostile input cannot lengthen a probe sequence,
//! and SipHash's cost (it was about 40 % of the feed thread's CPU in `benches/e2e.rs` under
//! `perf`) buys nothing there. The mixing step is a rotate, xor and multiply by an odd constant
//! per 8-byte word; `finish` rotates the well-mixed high bits down, since hashbrown takes its
//! bucket index from the low bits and its tag from the top 7.

use std::{
    collections::HashMap,
    hash::{BuildHasherDefault, Hasher},
};

/// An odd 64-bit multiplier with well-spread bits.
pub(crate) const K: u64 = 0xf135_7aea_2e62_a9c5;

/// The hasher; see the module documentation.
#[derive(Debug, Default, Clone, Copy)]
pub struct FastHasher {
    h: u64,
}

impl FastHasher {
    #[inline]
    fn add(&mut self, word: u64) {
        self.h = (self.h.rotate_left(5) ^ word).wrapping_mul(K);
    }
}

impl Hasher for FastHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.add(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            if let Some(dst) = w.get_mut(..rest.len()) {
                dst.copy_from_slice(rest);
            }
            // The length keeps "ab" and "ab\0" apart.
            self.add(u64::from_le_bytes(w) ^ ((rest.len() as u64) << 59));
        }
    }

    #[inline]
    fn write_u8(&mut self, i: u8) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u16(&mut self, i: u16) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u32(&mut self, i: u32) {
        self.add(u64::from(i));
    }

    #[inline]
    fn write_u64(&mut self, i: u64) {
        self.add(i);
    }

    #[inline]
    fn write_usize(&mut self, i: usize) {
        self.add(i as u64);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.h.rotate_left(26)
    }
}

/// A `HashMap` with [`FastHasher`]: for tables whose keys come from configuration, not input.
pub type FastMap<K, V> = HashMap<K, V, BuildHasherDefault<FastHasher>>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::{collections::HashSet, hash::BuildHasher};

    fn hash_of(v: impl std::hash::Hash) -> u64 {
        BuildHasherDefault::<FastHasher>::default().hash_one(v)
    }

    #[test]
    fn distinct_keys_spread_over_buckets_and_tags() {
        // Kite-like numeric tokens and Upstox-like keys: no collisions among 100,000 of each,
        // and both the low bits (bucket) and the top 7 bits (hashbrown's tag) vary.
        let mut all = HashSet::new();
        let mut low = HashSet::new();
        let mut top = HashSet::new();
        for i in 0..100_000u32 {
            for h in [
                hash_of(i * 256 + 1),
                hash_of(format!("NSE_FO|{}", 40_000 + i)),
            ] {
                assert!(all.insert(h), "collision at {i}");
                low.insert(h & 0x3ff);
                top.insert(h >> 57);
            }
        }
        assert_eq!(low.len(), 1024);
        assert_eq!(top.len(), 128);
    }

    #[test]
    fn trailing_zero_bytes_and_lengths_are_told_apart() {
        assert_ne!(hash_of(b"ab".as_slice()), hash_of(b"ab\0".as_slice()));
        let mut h1 = FastHasher::default();
        h1.write(b"ab");
        let mut h2 = FastHasher::default();
        h2.write(b"ab\0");
        assert_ne!(h1.finish(), h2.finish());
    }

    fn key(i: u32) -> [u8; 32] {
        let mut k = [0u8; 32];
        for (d, s) in k.iter_mut().zip(i.to_le_bytes()) {
            *d = s;
        }
        k
    }

    #[test]
    fn a_map_finds_what_it_holds() {
        let mut m: FastMap<(u8, [u8; 32]), u32> = FastMap::default();
        for i in 0..10_000u32 {
            let k = key(i);
            m.insert((1, k), i);
        }
        for i in 0..10_000u32 {
            let k = key(i);
            assert_eq!(m.get(&(1, k)), Some(&i));
        }
    }
}
