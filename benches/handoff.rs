//! Where a frame's receive -> hand-off time goes, stage by stage, without sockets, simulator or
//! broker: the part of the end-to-end figure (`benches/e2e.rs`) that is the feed thread's own
//! work, and what each step of it adds.
//!
//! Each frame is a Kite quote frame of 123 packets (the end-to-end bench's mean at 100,000
//! ticks/s) over 1,000 instruments, copied into a receive buffer (as a socket read leaves it) after
//! a 1.2 ms wait (the frame spacing). One consumer thread drains the queues every 200 us, as the
//! producer thread does while ticks flow, so queue slots are written into lines the other core
//! last read. Cumulative stages, each timed from "receive" to its last tick:
//! 1. parse (the SSSE3 Kite walk into the reused tick);
//! 2. + validate;
//! 3. + route (canonical id lookup over 1,000 instruments);
//! 4. + hand-over: the tick's head into the crossbeam queue (192-byte items, no parts);
//! 5. the whole `Pipeline::on_frame` (raw frames off, timed to its return), waiting by spinning,
//!    then by sleeping (the core idles between frames, as the engine's feed thread does).
//!
//! Then the hand-over alone, 123 items per frame, at 480 bytes (a whole `Tick`, the item before
//! the head/parts split) and at 192 bytes (a head item).
//!
//! The cases run in turn, 100 frames each, over 6 rounds after a warm-up round, so the host's
//! slow spells (long and deep on a shared VM) fall on all of them alike. Figures per frame, p50 /
//! p90 / p99 over 600 frames per case; each stage's increment of p50 is printed as a share of the
//! whole pipeline's, the baseline of the same run (an increment within the noise can come out
//! negative). Printed, never asserted. `cargo bench --bench handoff`.
#![allow(
    clippy::print_stdout,
    clippy::unwrap_used,
    clippy::indexing_slicing,
    clippy::large_stack_arrays,
    missing_docs
)]

#[path = "../tests/support/gen.rs"]
mod gen;

use std::{
    hint::black_box,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender};
use gen::Rng;
use layer1::{
    feed::{FrameHandler, FrameKind, FrameMeta},
    parsers::{
        self,
        kite::{self, KiteMode},
        ParseError, TickSink,
    },
    pipeline::Pipeline,
    producer::{self, handover, Handed},
    routing::{Routing, RoutingBuilder},
    tick::{Exchange, Tick, Token},
    validate::{validate, ValidationLimits},
    vendor::Vendor,
};

/// Packets per frame: the end-to-end bench's mean at 100,000 ticks/s.
const PACKETS: usize = 123;
/// Instruments the frames cycle over (and the routing table holds).
const INSTRUMENTS: u32 = 1000;
/// Distinct frames (each case handles each once per round trip over them).
const FRAMES: usize = 600;
/// Measured rounds; each case handles `FRAMES / ROUNDS` frames per round.
const ROUNDS: usize = 6;
/// Slots per queue, as the engine's default `QUEUE_CAPACITY`.
const QUEUE: usize = 65_536;
/// The wait before each frame: the end-to-end bench's frame spacing.
const GAP: Duration = Duration::from_micros(1200);
/// The consumer's nap between drains, as the producer's while ticks flow.
const CONSUMER_NAP: Duration = Duration::from_micros(200);

fn token(i: u32) -> u32 {
    // NSE segment (1), as the end-to-end bench subscribes.
    (i + 1) * 256 + 1
}

fn frames() -> Vec<Vec<u8>> {
    let now_ms = (layer1::clock::now_unix_ns() / 1_000_000) as i64;
    let mut rng = Rng(7);
    (0..FRAMES)
        .map(|_| {
            let packets: Vec<Vec<u8>> = (0..PACKETS)
                .map(|_| {
                    let mut t = gen::kite_tick(&mut rng, 1);
                    t.token = Token::from_u32(token(rng.below(u64::from(INSTRUMENTS)) as u32));
                    let base = 100_000 + rng.below(100_000) as u32;
                    let p = |raw: u32| f64::from(raw) / 100.0;
                    (t.ltp, t.atp, t.close) = (p(base), p(base), p(base - 100));
                    (t.open, t.high, t.low) = (p(base - 50), p(base + 500), p(base - 500));
                    t.last_trade_time_ms = now_ms - 1000;
                    t.exchange_time_ms = now_ms - 500;
                    let mut b = Vec::new();
                    kite::encode_packet(&t, KiteMode::Quote, &mut b);
                    b
                })
                .collect();
            let refs: Vec<&[u8]> = packets.iter().map(Vec::as_slice).collect();
            let mut f = Vec::new();
            kite::encode_frame(&refs, &mut f);
            f
        })
        .collect()
}

fn routing() -> Arc<Routing> {
    let mut b = RoutingBuilder::default();
    for i in 0..INSTRUMENTS {
        b.map(Vendor::Kite, Exchange::Nse, &token(i).to_string(), i + 1);
    }
    Arc::new(b.build(5_000, layer1::clock::now_unix_ns()))
}

/// How the feed thread spends the gap before a frame.
#[derive(Clone, Copy, PartialEq)]
enum Wait {
    /// Spinning: the core stays busy and its caches stay this thread's.
    Spin,
    /// Sleeping: the core idles, as the engine's feed thread does in `epoll_wait`.
    Sleep,
}

fn wait(how: Wait) {
    match how {
        Wait::Sleep => std::thread::sleep(GAP),
        Wait::Spin => {
            let t = Instant::now();
            while t.elapsed() < GAP {
                std::hint::spin_loop();
            }
        }
    }
}

/// One thread draining every queue of the run every [`CONSUMER_NAP`], until dropped.
struct Consumer {
    stop: Arc<AtomicBool>,
    join: Option<std::thread::JoinHandle<()>>,
}

impl Consumer {
    fn start(queues: Queues) -> Consumer {
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&stop);
        let join = std::thread::spawn(move || {
            let mut queues = queues;
            while !s.load(Ordering::Relaxed) {
                while let Ok(item) = queues.ticks.try_recv() {
                    black_box(&item);
                }
                while let Ok(item) = queues.big.try_recv() {
                    black_box(&item);
                }
                while let Ok(item) = queues.small.try_recv() {
                    black_box(&item);
                }
                std::thread::sleep(CONSUMER_NAP);
            }
        });
        Consumer {
            stop,
            join: Some(join),
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}

/// The receiving ends, for the consumer.
struct Queues {
    ticks: producer::Intake,
    big: Receiver<[u64; 60]>,
    small: Receiver<[u64; 24]>,
}

/// The pipeline's per-tick steps up to `stage` (1 parse .. 4 hand-over), without its counters.
struct Staged {
    stage: u8,
    routing: Arc<Routing>,
    limits: ValidationLimits,
    tx: producer::Handover,
}

impl TickSink for Staged {
    fn tick(&mut self, t: &Tick) {
        if self.stage >= 2 {
            black_box(validate(t, t.received_at_ns, &self.limits).is_ok());
        }
        let id = if self.stage >= 3 {
            black_box(self.routing.resolve(t, t.received_at_ns)).1
        } else {
            None
        };
        if self.stage >= 4 {
            let tx = self.tx.sender();
            handover::hand_tick(t, id, |item: Handed| tx.try_send(item).is_ok());
        }
    }

    fn reject(&mut self, _: &ParseError, _: &[u8]) {}

    fn wants_upcoming(&self) -> bool {
        self.stage >= 3
    }

    fn upcoming(&mut self, vendor: Vendor, exchange: Exchange, short_key: [u8; 16]) {
        self.routing.prefetch(vendor, exchange, short_key);
    }
}

/// One measured case: what runs on each frame.
enum Case {
    Staged(Staged),
    Pipeline(Box<Pipeline>),
    Big(Sender<[u64; 60]>),
    Small(Sender<[u64; 24]>),
}

impl Case {
    /// Handles one frame received at `at_ns`; returns the time from `at_ns` to the last tick's
    /// hand-over (for the pipeline: to the return of `on_frame`, raw frames off, so that is its
    /// per-frame figure plus the frame's counters; `after_frame` runs after the clock read).
    fn frame(&mut self, f: &[u8], seq: usize, at_ns: u64) -> u64 {
        match self {
            Case::Staged(sink) => {
                let meta = parsers::FrameMeta {
                    received_at_ns: at_ns,
                    conn_id: 1,
                };
                parsers::parse_frame(Vendor::Kite, FrameKind::Binary, f, &meta, sink);
            }
            Case::Pipeline(p) => {
                let meta = FrameMeta {
                    conn: 1,
                    vendor: Vendor::Kite,
                    kind: FrameKind::Binary,
                    received_at_ns: at_ns,
                };
                p.on_frame(&meta, f);
                // The ticks are handed over; the frame's bookkeeping is not in their latency.
                let t = layer1::clock::now_unix_ns() - at_ns;
                p.after_frame(&meta, f);
                return t;
            }
            Case::Big(tx) => items(tx, seq),
            Case::Small(tx) => items(tx, seq),
        }
        layer1::clock::now_unix_ns() - at_ns
    }
}

/// [`PACKETS`] items of `N` words into `tx`, nothing else.
fn items<const N: usize>(tx: &Sender<[u64; N]>, seq: usize) {
    let mut item = [1u64; N];
    item[N - 1] = seq as u64;
    for i in 0..PACKETS {
        item[0] = i as u64;
        let _ = tx.try_send(black_box(item));
    }
}

/// p50, p90, p99 in microseconds.
fn quantiles(mut ns: Vec<u64>) -> [f64; 3] {
    ns.sort_unstable();
    let at = |q: f64| ns[((ns.len() - 1) as f64 * q) as usize] as f64 / 1e3;
    [at(0.5), at(0.9), at(0.99)]
}

fn row(label: &str, q: [f64; 3], share: Option<f64>) {
    let share = share.map_or(String::new(), |s| {
        format!("  {:>5.1} % of the pipeline", s * 100.0)
    });
    println!(
        "{label:<44} p50 {:>6.1} us  p90 {:>6.1} us  p99 {:>6.1} us{share}",
        q[0], q[1], q[2]
    );
}

fn main() {
    let frames = frames();
    let routing = routing();
    // One hand-over queue for every tick case, as a feed thread has one.
    let (tx, rx) = layer1::producer::queue(QUEUE);
    let mut cases = Vec::new();
    for stage in 1..=4 {
        cases.push(Case::Staged(Staged {
            stage,
            routing: Arc::clone(&routing),
            limits: ValidationLimits::default(),
            tx: tx.clone(),
        }));
    }
    for _ in 0..2 {
        let p = Pipeline::new(tx.clone(), ValidationLimits::default(), false)
            .with_routing(Arc::clone(&routing));
        cases.push(Case::Pipeline(Box::new(p)));
    }
    drop(tx);
    let (big_tx, big) = crossbeam_channel::bounded(QUEUE);
    let (small_tx, small) = crossbeam_channel::bounded(QUEUE);
    cases.push(Case::Big(big_tx));
    cases.push(Case::Small(small_tx));
    let waits = [
        Wait::Spin,
        Wait::Spin,
        Wait::Spin,
        Wait::Spin,
        Wait::Spin,
        Wait::Sleep,
        Wait::Spin,
        Wait::Spin,
    ];
    let consumer = Consumer::start(Queues {
        ticks: rx,
        big,
        small,
    });
    println!(
        "{PACKETS}-packet Kite quote frames over {INSTRUMENTS} instruments, one every {} us, \
         consumer draining every {} us; per frame, {ROUNDS} rounds of the cases in turn:",
        GAP.as_micros(),
        CONSUMER_NAP.as_micros()
    );
    // Rounds of every case in turn, so that the host's slow spells (a shared VM's are long and
    // deep) fall on all of them alike; the first round warms up and is not counted.
    let per_round = frames.len() / ROUNDS;
    let mut recv = Vec::with_capacity(frames.iter().map(Vec::len).max().unwrap_or(0));
    let mut ns: Vec<Vec<u64>> = vec![Vec::new(); cases.len()];
    for round in 0..=ROUNDS {
        for ((case, how), out) in cases.iter_mut().zip(waits).zip(ns.iter_mut()) {
            let these = frames.iter().enumerate().skip((round % ROUNDS) * per_round);
            for (seq, f) in these.take(per_round) {
                wait(how);
                // As a socket read leaves it: the frame just copied into the receive buffer.
                recv.clear();
                recv.extend_from_slice(f);
                let t = case.frame(&recv, seq, layer1::clock::now_unix_ns());
                if round > 0 {
                    out.push(t);
                }
            }
        }
    }
    drop(consumer);
    for case in &cases {
        if let Case::Pipeline(p) = case {
            let c = p.counts();
            assert_eq!(c.rejects, 0, "every tick valid");
        }
    }
    let q: Vec<[f64; 3]> = ns.into_iter().map(quantiles).collect();
    let whole = q[4][0];
    let names = [
        "1 parse",
        "2 + validate",
        "3 + route",
        "4 + hand-over (192-byte head items)",
    ];
    let mut before = 0.0;
    for (name, v) in names.iter().zip(&q) {
        row(name, *v, Some((v[0] - before) / whole));
        before = v[0];
    }
    row("5 Pipeline::on_frame, spinning between", q[4], None);
    row("  the same, sleeping between frames", q[5], None);
    println!("hand-over alone, {PACKETS} items per frame:");
    row("  480-byte items (a whole Tick)", q[6], None);
    row("  192-byte items (a tick's head)", q[7], None);
    println!(
        "  192-byte / 480-byte time at p50: {:.2} (bytes: 0.40)",
        q[7][0] / q[6][0]
    );
}
