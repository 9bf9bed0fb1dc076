//! Proves the feed thread allocates nothing per frame or per tick once warm, end to end over a
//! real WebSocket: the vendor simulator serves Kite over loopback, a feed thread reads it with
//! the engine's own [`Pipeline`] (raw frames on, so every frame is also copied for `market.raw`),
//! and a stand-in producer thread drains the hand-over queue and drops each item, which returns
//! the raw-frame buffers to the feed thread's pool as the real producer does. Allocations are
//! counted per OS thread (the counting allocator shared with the benches) and only the feed
//! thread's are compared, after a warm-up.

// Test code: a panic is the failure report.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::print_stdout
)]

#[path = "../benches/support/alloc.rs"]
#[allow(dead_code)]
mod alloc;

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use layer1::{
    feed::{
        kite::{KiteConnector, KiteSettings},
        spawn_feed_thread, Credential, FeedSettings, FeedSpec, FeedStats, Instrument, Mode,
    },
    pipeline::Pipeline,
    producer::{self, Outbound},
    sim::{SimConfig, Simulator},
    validate::ValidationLimits,
};

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

fn wait_until(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// What one measured window saw on the feed thread.
struct Window {
    allocs: u64,
    frames: u64,
    ticks: u64,
    bytes: u64,
    /// Hand-offs that found the queue full (the feed waited) in the window.
    waits: u64,
}

/// Runs the simulator -> feed thread -> pipeline -> drain chain over `ws://` or `wss://` and
/// counts the feed thread's allocations over 10,000 frames after 3,000 frames of warm-up.
fn measure(thread: &str, tls: bool, slow_drain: bool) -> Window {
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 40_000,
        max_packets_per_frame: 20,
        tls,
        ..SimConfig::default()
    })
    .expect("simulator starts");
    // A slow drain keeps a small queue full: the feed thread then waits in the hand-off
    // (back-pressure) with many raw frames in flight.
    let (tx, mut rx) = producer::queue(if slow_drain { 4096 } else { 65_536 });
    let ticks = Arc::new(AtomicU64::new(0));
    let raw = Arc::new(AtomicU64::new(0));
    let rejects = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let drain = {
        let (ticks, raw, rejects, stop) = (
            Arc::clone(&ticks),
            Arc::clone(&raw),
            Arc::clone(&rejects),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name("drain".into())
            .spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    n += 1;
                    if slow_drain && n % 50 == 0 {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    match rx.recv_timeout(Duration::from_millis(50)) {
                        Ok(Outbound::Tick(_)) => {
                            ticks.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Outbound::Raw(r)) => {
                            assert!(!r.payload.is_empty());
                            raw.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Outbound::Reject(_)) => {
                            rejects.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(_) | Err(_) => {}
                    }
                    // Dropping the item here returns its raw buffer to the feed's pool.
                }
            })
            .expect("drain thread")
    };
    let tokens: Vec<Instrument> = (0..200u32)
        .map(|i| Instrument::kite(((1000 + i) << 8) | 1, Mode::Quote))
        .collect();
    let settings = FeedSettings {
        name: thread.into(),
        // Heartbeat pings (and the simulator's pongs) inside the measured window too.
        heartbeat_ms: 100,
        extra_root_certs_pem: sim.ca_pem.clone().unwrap_or_default(),
        ..FeedSettings::default()
    };
    let base_url = if tls {
        sim.kite_tls_url().expect("tls url")
    } else {
        sim.kite_url()
    };
    let spec = FeedSpec {
        connector: Box::new(KiteConnector::new(KiteSettings {
            base_url,
            api_key: Credential::Value("sim_api_key".into()),
            access_token: Credential::Value("sim_access_token".into()),
            ..KiteSettings::default()
        })),
        instruments: tokens,
        ages: None,
    };
    let pipeline = Pipeline::new(tx, ValidationLimits::default(), true);
    let feed = spawn_feed_thread(settings, vec![spec], pipeline, None).expect("feed starts");
    let stats = Arc::clone(feed.stats());
    let frames = || FeedStats::get(&stats.frames);

    // Warm-up: buffers grow to the frame sizes, the raw pool fills, first-use statics settle.
    assert!(
        wait_until(Duration::from_secs(60), || frames() >= 3000),
        "frames flow (got {})",
        frames()
    );
    let m = layer1::metrics::global();
    let pool = || m.raw_buffer_allocations_total.get();
    let full = || m.queue_full_total.with_label_values(&["feed"]).get();
    let (p0, q0) = (pool(), full());
    let (a0, f0, t0, b0) = (
        alloc::allocs_of(thread),
        frames(),
        ticks.load(Ordering::Relaxed),
        FeedStats::get(&stats.bytes),
    );
    assert!(
        wait_until(Duration::from_secs(120), || frames() >= f0 + 10_000),
        "measured frames flow (got {})",
        frames() - f0
    );
    let (a1, f1, t1, b1) = (
        alloc::allocs_of(thread),
        frames(),
        ticks.load(Ordering::Relaxed),
        FeedStats::get(&stats.bytes),
    );
    let (p1, q1) = (pool(), full());
    let frame_errors = FeedStats::get(&stats.frame_errors);
    let pipeline = feed.shutdown(Duration::from_secs(5)).expect("feed stops");
    stop.store(true, Ordering::Relaxed);
    drain.join().expect("drain joins");
    let w = Window {
        allocs: a1 - a0,
        frames: f1 - f0,
        ticks: t1 - t0,
        bytes: b1 - b0,
        waits: q1 - q0,
    };
    println!(
        "{thread} ({}): {} allocations over {} frames, {} payload bytes and ~{} ticks after \
         warm-up ({:.5} per frame, {:.6} per tick); raw frames drained {}, rejects {}, \
         raw-buffer allocations in total {} (in the window {}); queue-full waits {}",
        if tls { "wss" } else { "ws" },
        w.allocs,
        w.frames,
        w.bytes,
        w.ticks,
        w.allocs as f64 / w.frames as f64,
        w.allocs as f64 / w.ticks.max(1) as f64,
        raw.load(Ordering::Relaxed),
        rejects.load(Ordering::Relaxed),
        pipeline.raw_allocations(),
        p1 - p0,
        w.waits,
    );
    assert_eq!(frame_errors, 0, "no framing errors");
    assert!(w.ticks > w.frames, "frames carried ticks");
    assert!(
        raw.load(Ordering::Relaxed) >= w.frames,
        "every frame went out raw"
    );
    w
}

#[test]
fn feed_thread_allocates_nothing_per_frame_or_tick_once_warm() {
    let w = measure("feed-alloc", false, false);
    assert_eq!(
        w.allocs, 0,
        "the feed thread allocated {} times over {} frames once warm",
        w.allocs, w.frames
    );
}

/// Over `wss://` rustls 0.23's buffered API copies each received TLS record's plaintext into a
/// new `Vec` (`CommonState::take_received_plaintext`), so the feed thread allocates about once
/// per record there; everything of ours stays allocation-free. The bound: no more than one
/// allocation per frame plus one per 16 KiB record of payload (never per tick).
#[test]
fn over_tls_only_rustls_allocates_at_most_once_per_record() {
    let w = measure("feed-tls", true, false);
    let records = w.frames + w.bytes / 16_384 + 1;
    assert!(
        w.allocs <= 2 * records,
        "{} allocations over {} frames ({} bytes): more than rustls's one per record",
        w.allocs,
        w.frames,
        w.bytes
    );
}

/// The same with the hand-over queue kept full: the feed thread waits for the drain (the
/// back-pressure policy) with a queue's worth of raw frames in flight.
#[test]
fn under_back_pressure_the_feed_thread_allocates_nothing_either() {
    let w = measure("feed-bp", false, true);
    assert!(w.waits > 0, "the queue was full during the window");
    assert_eq!(
        w.allocs, 0,
        "the feed thread allocated {} times over {} frames under back-pressure",
        w.allocs, w.frames
    );
}
