#![no_main]
//! Upstox FeedResponse frames: never panic; rejects lie inside the frame; ticks encode to JSON.

mod common;

use layer1::parsers::{upstox, FrameMeta};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut sink = common::Sink { frame: data, json: Vec::new() };
    upstox::parse_frame(data, &FrameMeta::default(), &mut sink);
});
