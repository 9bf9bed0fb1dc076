//! Software prefetch: a hint that data will be read soon, so that a frame's lookups start their
//! memory loads together instead of each waiting for the one before. A hint only: it never
//! faults, changes no value, and compiles to nothing off x86-64.

/// Starts loading the cache line holding the start of `r` into every cache level.
#[inline(always)]
pub(crate) fn read<T>(r: &T) {
    #[cfg(target_arch = "x86_64")]
    {
        use core::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        // SAFETY: the intrinsic's only requirement is the `sse` target feature, part of the
        // x86-64 baseline, so every CPU this code runs on has it. `prefetcht0` reads no memory
        // architecturally and cannot fault, whatever the address (this one is a live reference).
        unsafe { _mm_prefetch::<_MM_HINT_T0>((r as *const T).cast::<i8>()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = r;
}

#[cfg(test)]
mod tests {
    use super::read;

    #[test]
    fn a_prefetch_changes_nothing_and_does_not_fault() {
        // Every byte of a buffer, its end (an empty tail) and a value on the stack: the hint is
        // accepted and every byte reads back unchanged.
        let buf: Vec<u8> = (0..=255).collect();
        for b in &buf {
            read(b);
        }
        let tail: &[u8] = buf.get(256..).unwrap_or_default();
        read(&tail);
        let x = 7u64;
        read(&x);
        assert_eq!(x, 7);
        assert!(buf.iter().enumerate().all(|(i, b)| usize::from(*b) == i));
    }
}
