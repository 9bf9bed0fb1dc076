//! Proves the hot path allocates nothing per tick once warm: parse (Kite and Upstox) + validate +
//! JSON-encode into a reused buffer, counted by a global allocator wrapper.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic
)]

#[path = "support/gen.rs"]
mod gen;

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicU64, Ordering},
};

use gen::Rng;
use layer1::{
    encode::encode_json,
    parsers::{kite, upstox, FrameMeta, ParseError, TickSink},
    tick::Tick,
    validate::{validate, ValidationLimits},
};

struct Counting;

static ALLOCS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// GlobalAlloc contract; the wrapper only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same layout the caller gave us, per the GlobalAlloc contract.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: ptr came from System.alloc with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// The engine-shaped sink: validate, encode to a reused buffer, count.
struct Hot {
    json: Vec<u8>,
    ticks: u64,
    rejected: u64,
    parse_errors: u64,
    bytes: u64,
}

impl TickSink for Hot {
    fn tick(&mut self, t: &Tick) {
        if validate(t, t.received_at_ns, &ValidationLimits::default()).is_err() {
            self.rejected += 1;
        }
        self.json.clear();
        encode_json(t, None, &mut self.json);
        self.bytes += self.json.len() as u64;
        self.ticks += 1;
    }
    fn reject(&mut self, _: &ParseError, _: &[u8]) {
        self.parse_errors += 1;
    }
}

#[test]
fn parse_validate_encode_allocates_nothing_per_tick() {
    let mut rng = Rng(7);
    // Frames are built before counting (the feed thread receives them from tungstenite).
    let mut kite_frames = Vec::new();
    for _ in 0..500 {
        let mut f = Vec::new();
        gen::kite_frame(&mut rng, 20, &mut f);
        kite_frames.push(f);
    }
    let mut upstox_frames = Vec::new();
    for _ in 0..500 {
        let mut f = Vec::new();
        gen::upstox_frame(&mut rng, 8, 1_732_700_000_000, &mut f);
        upstox_frames.push(f);
    }
    let mut sink = Hot {
        json: Vec::with_capacity(4096),
        ticks: 0,
        rejected: 0,
        parse_errors: 0,
        bytes: 0,
    };
    let meta = FrameMeta {
        received_at_ns: 1_732_700_000_000_000_000,
        conn_id: 3,
    };
    let pass = |sink: &mut Hot| {
        for f in &kite_frames {
            kite::parse_frame(f, &meta, sink);
        }
        for f in &upstox_frames {
            upstox::parse_frame(f, &meta, sink);
        }
    };
    pass(&mut sink); // warm: the JSON buffer reaches its working size
    let warm_ticks = sink.ticks;
    let before = ALLOCS.load(Ordering::Relaxed);
    for _ in 0..3 {
        pass(&mut sink);
    }
    let allocs = ALLOCS.load(Ordering::Relaxed) - before;
    let ticks = sink.ticks - warm_ticks;
    assert!(ticks > 10_000, "only {ticks} ticks");
    assert!(sink.bytes > 0 && sink.parse_errors == 0);
    assert_eq!(allocs, 0, "{allocs} allocations over {ticks} ticks");

    // The counter itself works: a fresh Vec is counted.
    let before = ALLOCS.load(Ordering::Relaxed);
    let v: Vec<u8> = Vec::with_capacity(std::hint::black_box(64));
    drop(v);
    assert!(ALLOCS.load(Ordering::Relaxed) > before);
}
