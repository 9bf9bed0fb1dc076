//! Test-only: the xorshift64 generator the randomized unit tests share (deterministic, no
//! dependency), so a failing case is reproduced by its seed alone.

/// A generator of 64-bit values from `seed` (which must not be 0).
pub(crate) fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}
