#![no_main]
//! Angel frames: never panic; every reject's bytes lie inside the frame; ticks encode to JSON.

mod common;

use layer1::parsers::{angel, FrameMeta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sink = common::Sink { frame: data, json: Vec::new() };
    angel::parse_frame(data, &FrameMeta::default(), &mut sink);
    angel::parse_text(data, &mut sink);
});
