#![no_main]
//! Kite frames: never panic; every reject's bytes lie inside the frame; ticks encode to JSON.

mod common;

use layer1::parsers::{kite, FrameMeta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sink = common::Sink { frame: data, json: Vec::new() };
    kite::parse_frame(data, &FrameMeta::default(), &mut sink);
    let _ = kite::classify_text(data);
});
