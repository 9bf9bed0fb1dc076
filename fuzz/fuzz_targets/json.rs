#![no_main]
//! Generic JSON feed frames under the worked example's mapping: never panic; every reject's bytes
//! lie inside the frame; ticks encode to JSON.

mod common;

use std::sync::OnceLock;

use layer1::parsers::{json, FrameMeta};
use libfuzzer_sys::fuzz_target;

fn mapping() -> Option<&'static json::JsonMapping> {
    static M: OnceLock<Option<json::JsonMapping>> = OnceLock::new();
    M.get_or_init(|| {
        json::JsonMapping::parse(
            "token=symbol,ltp=last_price,ltq=last_qty,volume=vol,close=prev_close_paise*0.01,exchangeTime=ts_ms,lastTradeTime=ltt_s*1000",
            "NSE",
        )
        .ok()
    })
    .as_ref()
}

fuzz_target!(|data: &[u8]| {
    if let Some(m) = mapping() {
        let mut sink = common::Sink { frame: data, json: Vec::new() };
        json::parse_frame_with(m, data, &FrameMeta::default(), &mut sink);
    }
});
