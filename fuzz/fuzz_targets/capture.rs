#![no_main]
//! `layer1 decode` over arbitrary bytes: never panics, and errors only for non-captures.

use layer1::decode::decode_from;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut err = Vec::new();
    let r = decode_from(data, &mut out, &mut err);
    if data.starts_with(b"L1CAP\0\0\x01") {
        assert!(r.is_ok());
    }
});
