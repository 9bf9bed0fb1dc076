//! Feed-thread throughput and receive-to-handoff latency against the simulator.
//!
//! For each rate, the simulator streams Kite quote-mode frames on one connection through one feed
//! thread. The handler parses each frame with the crate's Kite parser and pushes every tick into a
//! bounded crossbeam channel drained by a consumer thread (the hand-off the producer thread will
//! see). Latency is `now - received_at_ns` at the push, recorded per tick in a fixed log-linear
//! histogram (no allocation per tick). Run: `cargo bench --bench feed` (add `-- --quick` for a
//! short run).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    clippy::panic,
    clippy::large_stack_arrays,
    clippy::print_stdout,
    missing_docs
)]

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use crossbeam_channel::{Sender, TrySendError};
use layer1::{
    feed::{
        kite::{KiteConnector, KiteSettings},
        spawn_feed_thread, Credential, FeedEvent, FeedSettings, FeedSpec, FrameHandler, FrameMeta,
        Instrument, Mode,
    },
    parsers::{self, ParseError, TickSink},
    sim::{SimConfig, Simulator},
    tick::Tick,
};

/// 64 octaves x 16 sub-buckets: about 6 % resolution from 1 ns to centuries.
struct Histogram {
    buckets: Box<[u64; 1024]>,
    count: u64,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: Box::new([0; 1024]),
            count: 0,
        }
    }

    fn index(v: u64) -> usize {
        if v < 16 {
            return v as usize;
        }
        let octave = 63 - u64::from(v.leading_zeros());
        let sub = (v >> (octave - 4)) & 0xf;
        ((octave - 3) * 16 + sub) as usize
    }

    fn upper(i: usize) -> u64 {
        if i < 16 {
            return i as u64;
        }
        let octave = (i / 16) as u64 + 3;
        let sub = (i % 16) as u64;
        ((16 + sub + 1) << (octave - 4)) - 1
    }

    fn record(&mut self, v: u64) {
        if let Some(b) = self.buckets.get_mut(Self::index(v)) {
            *b += 1;
            self.count += 1;
        }
    }

    fn quantile(&self, q: f64) -> u64 {
        let target = ((self.count as f64) * q).ceil() as u64;
        let mut seen = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            seen += b;
            if seen >= target.max(1) {
                return Self::upper(i);
            }
        }
        0
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

struct Counters {
    frames: AtomicU64,
    ticks: AtomicU64,
    full: AtomicU64,
    measuring: AtomicBool,
}

struct BenchHandler {
    tx: Sender<Tick>,
    c: Arc<Counters>,
    hist: Histogram,
}

struct PushSink<'a> {
    tx: &'a Sender<Tick>,
    hist: &'a mut Histogram,
    measuring: bool,
    ticks: u64,
    full: u64,
}

impl TickSink for PushSink<'_> {
    fn tick(&mut self, tick: &Tick) {
        match self.tx.try_send(*tick) {
            Ok(()) => {
                self.ticks += 1;
                if self.measuring {
                    self.hist
                        .record(now_ns().saturating_sub(tick.received_at_ns));
                }
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.full += 1,
        }
    }
    fn reject(&mut self, _err: &ParseError, _raw: &[u8]) {}
}

impl FrameHandler for BenchHandler {
    fn on_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let measuring = self.c.measuring.load(Ordering::Relaxed);
        let pm = parsers::FrameMeta {
            received_at_ns: meta.received_at_ns,
            conn_id: meta.conn,
        };
        let mut sink = PushSink {
            tx: &self.tx,
            hist: &mut self.hist,
            measuring,
            ticks: 0,
            full: 0,
        };
        parsers::parse_frame(meta.vendor, meta.kind, payload, &pm, &mut sink);
        let (ticks, full) = (sink.ticks, sink.full);
        if measuring {
            self.c.frames.fetch_add(1, Ordering::Relaxed);
            self.c.ticks.fetch_add(ticks, Ordering::Relaxed);
            self.c.full.fetch_add(full, Ordering::Relaxed);
        }
    }
    fn on_event(&mut self, _ev: &FeedEvent) {}
}

fn run(rate: u64, instruments: u32, measure: Duration) -> Option<String> {
    let sim = Simulator::start(SimConfig {
        ticks_per_sec: rate,
        max_packets_per_frame: 200,
        ..SimConfig::default()
    })
    .ok()?;
    let (tx, rx) = crossbeam_channel::bounded::<Tick>(1 << 16);
    let consumer = std::thread::spawn(move || {
        let mut n = 0u64;
        while let Ok(t) = rx.recv() {
            std::hint::black_box(&t);
            n += 1;
        }
        n
    });
    let c = Arc::new(Counters {
        frames: AtomicU64::new(0),
        ticks: AtomicU64::new(0),
        full: AtomicU64::new(0),
        measuring: AtomicBool::new(false),
    });
    let handler = BenchHandler {
        tx,
        c: Arc::clone(&c),
        hist: Histogram::new(),
    };
    let tokens = (0..instruments).map(|i| Instrument::kite(((1000 + i) << 8) | 1, Mode::Quote));
    let feed = spawn_feed_thread(
        FeedSettings {
            name: "bench-feed".into(),
            ..FeedSettings::default()
        },
        vec![FeedSpec {
            connector: Box::new(KiteConnector::new(KiteSettings {
                base_url: sim.kite_url(),
                api_key: Credential::Value("sim_api_key".into()),
                access_token: Credential::Value("sim_access_token".into()),
                ..KiteSettings::default()
            })),
            instruments: tokens.collect(),
            ages: None,
        }],
        handler,
        None,
    )
    .ok()?;
    std::thread::sleep(Duration::from_millis(700)); // connect, subscribe, warm up
    let sent_before = sim
        .stats()
        .ok()?
        .connections
        .iter()
        .map(|x| x.ticks_sent)
        .sum::<u64>();
    c.measuring.store(true, Ordering::Relaxed);
    let t0 = Instant::now();
    std::thread::sleep(measure);
    c.measuring.store(false, Ordering::Relaxed);
    let secs = t0.elapsed().as_secs_f64();
    let sent_after = sim
        .stats()
        .ok()?
        .connections
        .iter()
        .map(|x| x.ticks_sent)
        .sum::<u64>();
    let handler = feed.shutdown(Duration::from_secs(5)).ok()?;
    let hist = handler.hist;
    drop(handler.tx);
    let _ = consumer.join();
    sim.shutdown();
    let frames = c.frames.load(Ordering::Relaxed) as f64 / secs;
    let ticks = c.ticks.load(Ordering::Relaxed) as f64 / secs;
    let sent = (sent_after - sent_before) as f64 / secs;
    Some(format!(
        "{:>9} {:>10.0} {:>11.0} {:>11.0} {:>9.1} {:>9.1} {:>9.1} {:>8}",
        rate,
        sent,
        frames,
        ticks,
        hist.quantile(0.5) as f64 / 1000.0,
        hist.quantile(0.99) as f64 / 1000.0,
        hist.quantile(0.999) as f64 / 1000.0,
        c.full.load(Ordering::Relaxed),
    ))
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let measure = Duration::from_millis(if quick { 1000 } else { 3000 });
    let rates: &[u64] = if quick {
        &[10_000, 100_000, 1_000_000]
    } else {
        &[
            10_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 1_500_000,
        ]
    };
    let mut out = String::new();
    out.push_str("feed bench: 1 feed thread, 1 Kite connection, 1000 instruments, quote mode (44-byte packets), <=200 packets/frame\n");
    out.push_str(
        "   target   sim tick/s    frames/s     ticks/s   p50 us    p99 us  p99.9 us  q-full\n",
    );
    for &rate in rates {
        match run(rate, 1000, measure) {
            Some(line) => {
                out.push_str(&line);
                out.push('\n');
            }
            None => out.push_str(&format!("{rate:>9} failed to run\n")),
        }
    }
    use std::io::Write as _;
    let _ = std::io::stdout().write_all(out.as_bytes());
}
