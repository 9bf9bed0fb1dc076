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
    clippy::panic
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

#[test]
fn feed_thread_allocates_nothing_per_frame_or_tick_once_warm() {
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: 40_000,
        max_packets_per_frame: 20,
        ..SimConfig::default()
    })
    .expect("simulator starts");
    let (tx, rx) = producer::queue(65_536);
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
                while !stop.load(Ordering::Relaxed) {
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
                        Ok(_) => {}
                        Err(_) => {}
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
        name: "feed-alloc".into(),
        // Heartbeat pings (and the simulator's pongs) inside the measured window too.
        heartbeat_ms: 100,
        ..FeedSettings::default()
    };
    let spec = FeedSpec {
        connector: Box::new(KiteConnector::new(KiteSettings {
            base_url: sim.kite_url(),
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
    let (a0, f0, t0) = (
        alloc::allocs_of("feed-alloc"),
        frames(),
        ticks.load(Ordering::Relaxed),
    );
    assert!(
        wait_until(Duration::from_secs(120), || frames() >= f0 + 10_000),
        "measured frames flow (got {})",
        frames() - f0
    );
    let (a1, f1, t1) = (
        alloc::allocs_of("feed-alloc"),
        frames(),
        ticks.load(Ordering::Relaxed),
    );
    let frame_errors = stats.frame_errors.load(Ordering::Relaxed);
    let pipeline = feed.shutdown(Duration::from_secs(5)).expect("feed stops");
    stop.store(true, Ordering::Relaxed);
    drain.join().expect("drain joins");
    let (allocs, nframes, nticks) = (a1 - a0, f1 - f0, t1 - t0);
    println!(
        "feed thread: {allocs} allocations over {nframes} frames and ~{nticks} ticks after warm-up \
         ({:.5} per frame); raw frames drained {}, rejects {}, raw-buffer allocations in total {}",
        allocs as f64 / nframes as f64,
        raw.load(Ordering::Relaxed),
        rejects.load(Ordering::Relaxed),
        pipeline.raw_allocations(),
    );
    assert_eq!(frame_errors, 0, "no framing errors");
    assert!(nticks > nframes, "frames carried ticks");
    assert!(
        raw.load(Ordering::Relaxed) >= nframes,
        "every frame went out raw"
    );
    assert_eq!(
        allocs, 0,
        "the feed thread allocated {allocs} times over {nframes} frames once warm"
    );
}
