//! `layer1 chaos`: the whole engine under steady load and a seeded schedule of faults, with an
//! exact account of every tick at the end.
//!
//! This module owns the chaos run: the fault schedule (drawn from a seed), the injection of each
//! fault (through the vendor simulator, the Kafka and Redis scripts, and [`Engine::stop`], the
//! path SIGTERM takes), the measurement of recovery per fault kind, the split of the hand-off
//! latency into "during a fault" and "outside faults", and the final accounting and table.
//!
//! Setup: the simulator (Kite and Upstox on 127.0.0.1), the real local Kafka broker and Redis
//! (`scripts/services.sh up`), and the engine in-process with its own topics, journal, token
//! files and a capture directory. Faults run one at a time, each followed by a wait for its
//! recovery and a seeded quiet gap; the first cycle holds every kind once, in a seeded order,
//! and later cycles (while `--secs` lasts) draw kinds at random.
//!
//! **Accounting** (per vendor, exact, per tick): the simulator counts ticks it queued to a
//! connection ([`crate::sim::SimStats::ticks_sent`]). What the engine actually *read* off its
//! sockets is in the capture files (`CAPTURE_DIR`, every frame as received, one file per engine
//! run), decoded here with the engine's own parsers and validator into the exact JSON payloads
//! the producer writes. Ticks the simulator queued but the engine never read (in flight on a
//! connection the vendor dropped, expired, or that the engine closed while stopping) are shown
//! as "sent, never read": they are gone before the engine sees them, and only a backfill can
//! restore them. **Lost** is a read tick whose payload is not in `market.ticks`; **duplicated**
//! is a payload more times in `market.ticks` than it was read; **phantom** is a payload in
//! `market.ticks` that was never read. All three compare multisets of payload hashes, so none
//! of them can hide behind a matching total.
//!
//! Every service this run stops is restarted at its end, on failure and on unwind too
//! ([`ServicesGuard`]).

use std::{
    collections::{hash_map::DefaultHasher, HashMap},
    fmt,
    hash::{Hash, Hasher},
    io::{BufReader, Write},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    time::{Duration, Instant},
};

use prometheus::core::Collector;
use thiserror::Error;

use crate::{
    capture::CaptureReader,
    config::Config,
    encode::json::encode_json,
    engine::{Engine, EngineOptions},
    error::ErrorCode,
    latency::LatencyHistogram,
    parsers::{self, FrameMeta, ParseError, TickSink},
    producer::FlushReport,
    shutdown::Shutdown,
    sim::{Fault, SimConfig, SimHandle, SimStats, Simulator, Target},
    tick::Tick,
    validate::{validate, ValidationLimits},
    vendor::Vendor,
};

/// The vendors the chaos run streams from (both support every vendor-side fault).
const VENDORS: [Vendor; 2] = [Vendor::Kite, Vendor::Upstox];
const KITE_TOKENS: [u32; 8] = [
    408065, 738561, 779521, 2953217, 884737, 1270529, 341249, 12290,
];
const UPSTOX_KEYS: [&str; 4] = [
    "NSE_EQ|INE002A01018",
    "NSE_EQ|INE009A01021",
    "NSE_EQ|INE040A01034",
    "NSE_EQ|INE467B01029",
];
/// The engine's stale limit in the run: a stall lasts four times this.
const STALE_MS: u64 = 1_500;
/// The engine's largest accepted message (the feed default); an oversized frame exceeds it.
const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Ticks that must arrive after a fault for the vendor to count as flowing again.
const FLOWING: u64 = 50;

/// What a chaos run does. Every field has a default ([`Default`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChaosOptions {
    /// Seconds of load during which faults are scheduled (the first cycle, one fault of every
    /// kind, always completes even if it takes longer). Default 180.
    pub secs: u64,
    /// Ticks per second per simulator connection. Default 2000.
    pub rate: u64,
    /// Seed of the simulator's prices and of the fault schedule. Default 1.
    pub seed: u64,
}

impl Default for ChaosOptions {
    fn default() -> Self {
        ChaosOptions {
            secs: 180,
            rate: 2_000,
            seed: 1,
        }
    }
}

/// A kind of fault the run injects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultKind {
    /// The vendor closes the socket without a close frame.
    VendorDrop,
    /// The vendor goes silent (no ticks, no heartbeats) with the TCP connection open.
    Stall,
    /// One malformed and one truncated frame.
    Malformed,
    /// One frame larger than the engine's message limit.
    Oversize,
    /// The vendor's handshake answers 429 (Retry-After 1 s) three times, after a drop.
    Refuse429,
    /// The vendor's token expires (connections closed with a token error); the new token is
    /// written to the token file first, as the daily login job does.
    TokenExpiry,
    /// The Kafka broker is SIGKILLed, stays down 3 s, and is restarted.
    KafkaKill,
    /// Redis is shut down and restarted.
    RedisRestart,
    /// The engine is stopped through [`Engine::stop`] (SIGTERM's path) and started again on the
    /// same journal.
    EngineRestart,
}

impl FaultKind {
    /// Every kind, in table order.
    pub const ALL: [FaultKind; 9] = [
        FaultKind::VendorDrop,
        FaultKind::Stall,
        FaultKind::Malformed,
        FaultKind::Oversize,
        FaultKind::Refuse429,
        FaultKind::TokenExpiry,
        FaultKind::KafkaKill,
        FaultKind::RedisRestart,
        FaultKind::EngineRestart,
    ];

    /// The name shown in the table.
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultKind::VendorDrop => "vendor drop",
            FaultKind::Stall => "silent stall",
            FaultKind::Malformed => "malformed frames",
            FaultKind::Oversize => "oversized frame",
            FaultKind::Refuse429 => "429 storm",
            FaultKind::TokenExpiry => "token expiry",
            FaultKind::KafkaKill => "kafka SIGKILL",
            FaultKind::RedisRestart => "redis restart",
            FaultKind::EngineRestart => "engine stop+start",
        }
    }

    /// What "recovered" means for this kind (what the run measures).
    pub const fn recovery_meaning(self) -> &'static str {
        match self {
            FaultKind::VendorDrop
            | FaultKind::Oversize
            | FaultKind::Refuse429
            | FaultKind::TokenExpiry => "new vendor connection, ticks flowing",
            FaultKind::Stall => "stale detected: new connection, ticks flowing",
            FaultKind::Malformed => "rejects counted, same feed keeps ticking",
            FaultKind::KafkaKill => "broker back, kafka_up=1, journal drained",
            FaultKind::RedisRestart => "redis_up=1, engine subscribed again",
            FaultKind::EngineRestart => "every vendor ticking, journal drained",
        }
    }

    const fn needs_vendor(self) -> bool {
        matches!(
            self,
            FaultKind::VendorDrop
                | FaultKind::Stall
                | FaultKind::Malformed
                | FaultKind::Oversize
                | FaultKind::Refuse429
                | FaultKind::TokenExpiry
        )
    }

    /// How long recovery may take before the fault counts as not recovered.
    const fn deadline(self) -> Duration {
        match self {
            FaultKind::KafkaKill => Duration::from_secs(120),
            FaultKind::EngineRestart | FaultKind::RedisRestart => Duration::from_secs(45),
            _ => Duration::from_secs(30),
        }
    }
}

/// One injected fault and how it ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FaultOutcome {
    /// The kind.
    pub kind: FaultKind,
    /// The vendor hit, for vendor-side faults.
    pub vendor: Option<Vendor>,
    /// When it was injected, ms since the run started.
    pub at_ms: u64,
    /// Whether recovery (as [`FaultKind::recovery_meaning`]) was observed before the deadline.
    pub recovered: bool,
    /// From injection to recovery, ms (to the deadline when not recovered).
    pub recovery_ms: u64,
    /// Why it did not recover, when it did not.
    pub note: Option<String>,
}

/// The exact account of one vendor's ticks.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VendorAccount {
    /// Ticks the simulator queued to a connection of this vendor.
    pub sim_sent: u64,
    /// Ticks the engine read off its sockets (decoded from the capture files), valid or not.
    pub read: u64,
    /// Read ticks the validator refused (they go to the DLQ, not `market.ticks`).
    pub read_invalid: u64,
    /// Sent by the simulator but never read by the engine (connection ended under them).
    pub sent_never_read: u64,
    /// Read more times than the simulator sent (must be zero: the capture would be wrong).
    pub read_not_sent: u64,
    /// Records of this vendor in `market.ticks`.
    pub in_topic: u64,
    /// Valid ticks read whose payload is missing from `market.ticks`.
    pub lost: u64,
    /// Extra copies in `market.ticks` of payloads that were read.
    pub duplicated: u64,
    /// Payloads in `market.ticks` that were never read.
    pub phantom: u64,
    /// Longest gap between consecutive ticks' receive times in `market.ticks`, ms.
    pub longest_gap_ms: u64,
    /// When that gap started, ms since the run started.
    pub gap_at_ms: u64,
    /// Receive times of the extra copies (ms since the run started), to match them to faults.
    pub duplicate_at_ms: Vec<u64>,
}

/// What a chaos run found.
#[derive(Debug, Clone)]
pub struct ChaosReport {
    /// The options it ran with.
    pub options: ChaosOptions,
    /// Wall time of the loaded phase, s.
    pub load_secs: f64,
    /// Every fault, in injection order.
    pub faults: Vec<FaultOutcome>,
    /// Per vendor, in [`VENDORS`] order.
    pub vendors: Vec<(Vendor, VendorAccount)>,
    /// Records in the DLQ topic.
    pub dlq: u64,
    /// Frame remainders the engine's parsers refused in what it read (from the captures).
    pub parse_errors_read: u64,
    /// `ticks_dropped_total` grown during the run (hand-off queue full).
    pub dropped_at_handoff: u64,
    /// The producers' reports summed over engine runs (`left_in_journal_bytes`: the last run's).
    pub producer: FlushReport,
    /// Hand-off latency p99.9 while a fault was active, ns, and its sample count.
    pub handoff_during: (u64, u64),
    /// Hand-off latency p99.9 outside faults, ns, and its sample count.
    pub handoff_outside: (u64, u64),
    /// Peak resident set of the whole process (engine, simulator, harness), KiB.
    pub peak_rss_kib: u64,
    /// Where the journal, captures, token files and log of the run are.
    pub run_dir: PathBuf,
}

impl ChaosReport {
    /// Lost ticks, all vendors.
    pub fn lost(&self) -> u64 {
        self.vendors.iter().map(|(_, a)| a.lost).sum()
    }

    /// Duplicated ticks, all vendors.
    pub fn duplicated(&self) -> u64 {
        self.vendors.iter().map(|(_, a)| a.duplicated).sum()
    }

    /// Every way the run failed its promises: loss, duplicates, phantoms, drops, an inexact
    /// capture, a fault not recovered, a kind never injected, a journal left behind.
    pub fn failures(&self) -> Vec<String> {
        let mut out = Vec::new();
        for (v, a) in &self.vendors {
            if a.lost > 0 {
                out.push(format!(
                    "{v}: {} ticks read but not in market.ticks",
                    a.lost
                ));
            }
            if a.duplicated > 0 {
                let at: Vec<String> = a
                    .duplicate_at_ms
                    .iter()
                    .map(|x| format!("{:.1} s", *x as f64 / 1000.0))
                    .collect();
                out.push(format!(
                    "{v}: {} duplicated ticks, received at {}",
                    a.duplicated,
                    at.join(", ")
                ));
            }
            if a.phantom > 0 {
                out.push(format!(
                    "{v}: {} ticks in market.ticks never read",
                    a.phantom
                ));
            }
            if a.read_not_sent > 0 {
                out.push(format!("{v}: {} ticks read but not sent", a.read_not_sent));
            }
            if a.read == 0 {
                out.push(format!("{v}: no tick read"));
            }
        }
        if self.dropped_at_handoff > 0 || self.producer.dropped > 0 {
            out.push(format!(
                "dropped: {} at hand-off, {} by a full journal",
                self.dropped_at_handoff, self.producer.dropped
            ));
        }
        if self.producer.left_in_journal_bytes > 0 {
            out.push(format!(
                "{} bytes left in the journal",
                self.producer.left_in_journal_bytes
            ));
        }
        for f in self.faults.iter().filter(|f| !f.recovered) {
            out.push(format!(
                "{} at {} ms not recovered: {}",
                f.kind.as_str(),
                f.at_ms,
                f.note.as_deref().unwrap_or("deadline passed")
            ));
        }
        for k in FaultKind::ALL {
            if !self.faults.iter().any(|f| f.kind == k) {
                out.push(format!("{} never injected", k.as_str()));
            }
        }
        out
    }
}

fn us(ns: u64) -> f64 {
    ns as f64 / 1_000.0
}

impl fmt::Display for ChaosReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = &self.options;
        writeln!(
            f,
            "layer1 chaos: {:.0} s of load at {} ticks/s per connection (kite + upstox), seed {}",
            self.load_secs, o.rate, o.seed
        )?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<18} {:>8} {:>9} {:>13} {:>13}  recovered means",
            "fault", "injected", "recovered", "recovery p50", "recovery max"
        )?;
        for k in FaultKind::ALL {
            let mut ms: Vec<u64> = self
                .faults
                .iter()
                .filter(|x| x.kind == k)
                .map(|x| x.recovery_ms)
                .collect();
            ms.sort_unstable();
            let n = ms.len();
            let ok = self
                .faults
                .iter()
                .filter(|x| x.kind == k && x.recovered)
                .count();
            let p50 = ms.get(n / 2).copied().unwrap_or(0);
            let max = ms.last().copied().unwrap_or(0);
            writeln!(
                f,
                "{:<18} {:>8} {:>9} {:>10} ms {:>10} ms  {}",
                k.as_str(),
                n,
                ok,
                p50,
                max,
                k.recovery_meaning()
            )?;
        }
        let schedule: Vec<String> = self
            .faults
            .iter()
            .map(|x| {
                format!(
                    "{:.1} s {}{}",
                    x.at_ms as f64 / 1000.0,
                    x.kind.as_str(),
                    x.vendor.map(|v| format!(" ({v})")).unwrap_or_default()
                )
            })
            .collect();
        writeln!(f, "schedule: {}", schedule.join(", "))?;
        writeln!(f)?;
        let cols: Vec<&str> = self.vendors.iter().map(|(v, _)| v.as_str()).collect();
        write!(f, "{:<40}", "ticks")?;
        for c in &cols {
            write!(f, " {c:>10}")?;
        }
        writeln!(f, " {:>10}", "total")?;
        type Pick = fn(&VendorAccount) -> u64;
        let rows: [(&str, Pick); 10] = [
            ("sent by the simulator", |a| a.sim_sent),
            ("  sent, never read (conn ended under them)", |a| {
                a.sent_never_read
            }),
            ("read by the engine (capture)", |a| a.read),
            ("  refused by the validator", |a| a.read_invalid),
            ("in market.ticks (records)", |a| a.in_topic),
            ("LOST (read, not in market.ticks)", |a| a.lost),
            ("DUPLICATED", |a| a.duplicated),
            ("phantom (in topic, never read)", |a| a.phantom),
            ("read but never sent", |a| a.read_not_sent),
            ("longest data gap, ms", |a| a.longest_gap_ms),
        ];
        for (name, pick) in rows {
            write!(f, "{name:<40}")?;
            let mut total = 0u64;
            for (_, a) in &self.vendors {
                let x = pick(a);
                total = if name.starts_with("longest") {
                    total.max(x)
                } else {
                    total + x
                };
                write!(f, " {x:>10}")?;
            }
            writeln!(f, " {total:>10}")?;
        }
        write!(f, "{:<40}", "  gap started at, s into the run")?;
        for (_, a) in &self.vendors {
            write!(f, " {:>10.1}", a.gap_at_ms as f64 / 1000.0)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "in the DLQ: {} records ({} parse rejects read, {} validator refusals)",
            self.dlq,
            self.parse_errors_read,
            self.vendors
                .iter()
                .map(|(_, a)| a.read_invalid)
                .sum::<u64>()
        )?;
        writeln!(
            f,
            "dropped at hand-off: {}; producer: {} acked, {} journaled, {} drained from the journal, {} dropped, {} bytes left in the journal",
            self.dropped_at_handoff,
            self.producer.acked,
            self.producer.journaled,
            self.producer.drained,
            self.producer.dropped,
            self.producer.left_in_journal_bytes
        )?;
        writeln!(
            f,
            "hand-off latency p99.9: {:.1} µs during faults ({} ticks), {:.1} µs outside faults ({} ticks)",
            us(self.handoff_during.0),
            self.handoff_during.1,
            us(self.handoff_outside.0),
            self.handoff_outside.1
        )?;
        writeln!(
            f,
            "peak RSS (VmHWM, engine + simulator + harness in one process): {:.1} MiB",
            self.peak_rss_kib as f64 / 1024.0
        )?;
        let failures = self.failures();
        if failures.is_empty() {
            writeln!(
                f,
                "verdict: PASS (zero lost, zero duplicated, every fault recovered)"
            )
        } else {
            writeln!(f, "verdict: FAIL")?;
            for x in failures {
                writeln!(f, "  - {x}")?;
            }
            Ok(())
        }
    }
}

/// Why a chaos run could not run or failed its promises.
#[derive(Debug, Error)]
pub enum ChaosError {
    /// A command-line argument was not understood.
    #[error("chaos usage: {0}")]
    Usage(String),
    /// Kafka or Redis could not be started, stopped or restarted.
    #[error("chaos services: {0}")]
    Services(String),
    /// The simulator failed.
    #[error("chaos simulator: {0}")]
    Sim(#[from] crate::sim::SimError),
    /// The engine could not be configured or started.
    #[error("chaos engine: {0}")]
    Engine(String),
    /// The run directory or a capture file failed.
    #[error("chaos io: {0}")]
    Io(#[from] std::io::Error),
    /// The topics could not be consumed back.
    #[error("chaos kafka: {0}")]
    Kafka(String),
    /// The run completed and broke a promise (the table says which).
    #[error("chaos run failed: {0}")]
    Failed(String),
}

impl ErrorCode for ChaosError {
    fn code(&self) -> &'static str {
        match self {
            ChaosError::Usage(_) => "CHAOS_USAGE",
            ChaosError::Services(_) => "CHAOS_SERVICES",
            ChaosError::Sim(_) => "CHAOS_SIM",
            ChaosError::Engine(_) => "CHAOS_ENGINE",
            ChaosError::Io(_) => "CHAOS_IO",
            ChaosError::Kafka(_) => "CHAOS_KAFKA",
            ChaosError::Failed(_) => "CHAOS_FAILED",
        }
    }
}

/// `layer1 chaos [--secs N] [--rate R] [--seed S]`: runs [`run`], writes progress and the table
/// to `out`, logs the engine to `<run dir>/chaos.log`.
///
/// # Errors
/// [`ChaosError::Usage`] for bad arguments, any error of [`run`], and [`ChaosError::Failed`]
/// when the run lost, duplicated or did not recover (after the table is written).
pub fn run_cli(args: &[String], out: &mut dyn Write) -> Result<(), ChaosError> {
    let mut o = ChaosOptions::default();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut num = |name: &str| -> Result<u64, ChaosError> {
            it.next()
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| ChaosError::Usage(format!("{name} needs a whole number")))
        };
        match a.as_str() {
            "--secs" => o.secs = num("--secs")?.clamp(10, 86_400),
            "--rate" => o.rate = num("--rate")?.clamp(1, 1_000_000),
            "--seed" => o.seed = num("--seed")?,
            other => {
                return Err(ChaosError::Usage(format!(
                    "unknown argument `{other}` (--secs N --rate R --seed S)"
                )))
            }
        }
    }
    let dir = run_dir()?;
    let _log = crate::logging::init(log::LevelFilter::Info, Some(dir.join("chaos.log")))?;
    let report = run_in(&o, &dir, out)?;
    let _ = writeln!(out, "\n{report}");
    let failures = report.failures();
    if failures.is_empty() {
        Ok(())
    } else {
        Err(ChaosError::Failed(failures.join("; ")))
    }
}

fn run_dir() -> Result<PathBuf, ChaosError> {
    let dir = std::env::temp_dir().join(format!(
        "layer1-chaos-{}-{}",
        std::process::id(),
        crate::clock::now_unix_ns() % 1_000_000_000
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}

/// Runs the chaos schedule against a fresh run directory under the system temp dir and returns
/// the report (whether or not it passed: see [`ChaosReport::failures`]). Progress lines go to
/// `progress`.
///
/// # Errors
/// [`ChaosError`] when the services, simulator or engine cannot be set up or the topics cannot
/// be read back.
pub fn run(o: &ChaosOptions, progress: &mut dyn Write) -> Result<ChaosReport, ChaosError> {
    let dir = run_dir()?;
    run_in(o, &dir, progress)
}

/// Restarts Kafka and Redis (`scripts/services.sh up`, which reuses what answers) when dropped,
/// so a chaos run never leaves the shared services down, even when it fails or unwinds.
#[derive(Debug)]
pub struct ServicesGuard;

impl Drop for ServicesGuard {
    fn drop(&mut self) {
        if let Err(e) = crate::services::up() {
            log::error!(event = "chaos_services_restore_failed"; "{e}");
        }
    }
}

/// A small seeded generator (SplitMix64) for the schedule.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n` > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Everything a run holds while the schedule plays.
struct Harness<'a> {
    sim: SimHandle,
    engine: Option<Engine>,
    config: Arc<Config>,
    kite_token_file: PathBuf,
    upstox_token_file: PathBuf,
    during: LatencyHistogram,
    outside: LatencyHistogram,
    in_fault: bool,
    started: Instant,
    producer: FlushReport,
    progress: &'a mut dyn Write,
    tokens_issued: u64,
}

fn metric_ticks(v: Vendor) -> u64 {
    crate::metrics::global()
        .ticks_total
        .with_label_values(&[v.as_str()])
        .get()
}

fn metric_rejected(v: Vendor) -> u64 {
    let mut total = 0.0;
    for mf in crate::metrics::global().ticks_rejected_total.collect() {
        for m in mf.get_metric() {
            if m.get_label()
                .iter()
                .any(|l| l.name() == "vendor" && l.value() == v.as_str())
            {
                total += m.get_counter().get_value();
            }
        }
    }
    total as u64
}

fn metric_dropped() -> u64 {
    let mut total = 0.0;
    for mf in crate::metrics::global().ticks_dropped_total.collect() {
        for m in mf.get_metric() {
            total += m.get_counter().get_value();
        }
    }
    total as u64
}

/// The newest open simulator connection of `vendor` (ids start at 0; `None` when none).
fn newest_conn(stats: &SimStats, vendor: Vendor) -> Option<u64> {
    stats
        .connections
        .iter()
        .filter(|c| c.vendor == vendor && c.open)
        .map(|c| c.id)
        .max()
}

fn script(dir: &str, name: &str, arg: Option<&str>) -> Result<(), ChaosError> {
    let path = crate::services::repo_root()
        .join("scripts")
        .join(dir)
        .join(name);
    let mut cmd = Command::new("bash");
    cmd.arg(&path);
    if let Some(a) = arg {
        cmd.arg(a);
    }
    let status = cmd
        .status()
        .map_err(|e| ChaosError::Services(format!("{}: {e}", path.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(ChaosError::Services(format!(
            "{} failed ({status})",
            path.display()
        )))
    }
}

fn answers(url: &str) -> bool {
    let hostport = url
        .trim_start_matches("redis://")
        .split(['/', ','])
        .next()
        .unwrap_or("");
    hostport
        .parse::<std::net::SocketAddr>()
        .ok()
        .is_some_and(|a| {
            std::net::TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok()
        })
}

/// Subscribers of the engine's command channel, or `None` when Redis does not answer.
fn command_subscribers(url: &str) -> Option<i64> {
    let client = redis::Client::open(url).ok()?;
    let mut con = client
        .get_connection_with_timeout(Duration::from_millis(500))
        .ok()?;
    let r: (String, i64) = redis::cmd("PUBSUB")
        .arg("NUMSUB")
        .arg(crate::control::COMMANDS_CHANNEL)
        .query(&mut con)
        .ok()?;
    Some(r.1)
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .unwrap_or(0)
}

fn write_token(path: &Path, token: &str) -> Result<(), ChaosError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, token)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

fn engine_config(
    sim: &SimHandle,
    dir: &Path,
    kite_token_file: &Path,
    upstox_token_file: &Path,
) -> Result<Config, ChaosError> {
    let sc = SimConfig::default();
    let run = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut subscribe: Vec<String> = KITE_TOKENS
        .iter()
        .map(|t| format!("kite:{t}@full"))
        .collect();
    subscribe.extend(UPSTOX_KEYS.iter().map(|k| format!("upstox:{k}@full")));
    let brokers = std::env::var("KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into());
    let redis = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let vars: Vec<(&str, String)> = vec![
        ("KAFKA_BROKERS", brokers),
        ("REDIS_URL", redis),
        ("HTTP_ADDR", "127.0.0.1:0".into()),
        ("KAFKA_TOPIC_TICKS", format!("chaos.{run}.ticks")),
        ("KAFKA_TOPIC_RAW", format!("chaos.{run}.raw")),
        ("KAFKA_TOPIC_DLQ", format!("chaos.{run}.dlq")),
        ("KAFKA_TOPIC_OHLC", format!("chaos.{run}.ohlc")),
        ("KAFKA_PARTITIONS", "3".into()),
        ("JOURNAL_DIR", dir.join("journal").display().to_string()),
        ("CAPTURE_DIR", dir.join("capture").display().to_string()),
        ("KITE_WS_URL", sim.kite_url()),
        ("KITE_API_KEY", sc.kite_api_key.clone()),
        ("KITE_ACCESS_TOKEN", sc.kite_access_token.clone()),
        (
            "KITE_ACCESS_TOKEN_FILE",
            kite_token_file.display().to_string(),
        ),
        ("UPSTOX_AUTHORIZE_URL", sim.upstox_authorize_url()),
        ("UPSTOX_ACCESS_TOKEN", sc.upstox_access_token.clone()),
        (
            "UPSTOX_ACCESS_TOKEN_FILE",
            upstox_token_file.display().to_string(),
        ),
        ("SUBSCRIBE", subscribe.join(",")),
        ("CORE_PINNING", "off".into()),
        ("STALE_MS", STALE_MS.to_string()),
        ("HEARTBEAT_MS", "500".into()),
        ("BACKOFF_BASE_MS", "100".into()),
        ("BACKOFF_CAP_MS", "2000".into()),
    ];
    Config::from_lookup(&move |k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone()))
        .map_err(|e| ChaosError::Engine(format!("config [{}]: {e}", e.code())))
}

/// The chaos run sees the market as open: the stale watchdog uses its market-hours limit.
fn always_open() -> bool {
    true
}

fn start_engine(config: &Arc<Config>) -> Result<Engine, ChaosError> {
    Engine::start_with(
        Arc::clone(config),
        Shutdown::new(),
        EngineOptions {
            market_open: always_open,
            extra_root_certs_pem: Vec::new(),
        },
    )
    .map_err(|e| ChaosError::Engine(format!("[{}] {e}", e.code())))
}

impl Harness<'_> {
    fn ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn say(&mut self, line: &str) {
        let at = self.ms() as f64 / 1000.0;
        let _ = writeln!(self.progress, "chaos [{at:>7.1} s] {line}");
        let _ = self.progress.flush();
    }

    /// Moves the hand-off samples recorded since the last call into the current phase.
    fn pump(&self) {
        let into = if self.in_fault {
            &self.during
        } else {
            &self.outside
        };
        crate::latency::handoff().take_into(into);
    }

    fn sleep(&self, d: Duration) {
        let end = Instant::now() + d;
        while Instant::now() < end {
            std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
            self.pump();
        }
    }

    /// Polls `cond` every 100 ms until it holds or `limit` passes; the time it took.
    fn wait(&self, limit: Duration, mut cond: impl FnMut(&Self) -> bool) -> Option<Duration> {
        let t0 = Instant::now();
        loop {
            self.pump();
            if cond(self) {
                return Some(t0.elapsed());
            }
            if t0.elapsed() >= limit {
                return None;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stats(&self) -> Option<SimStats> {
        self.sim.stats().ok()
    }

    /// Waits until `vendor` streams on a connection newer than `before` and `FLOWING` ticks
    /// arrived after that connection was first seen.
    fn wait_new_conn_flowing(
        &self,
        vendor: Vendor,
        before: Option<u64>,
        limit: Duration,
    ) -> Option<Duration> {
        let mut base: Option<u64> = None;
        self.wait(limit, |h| {
            if base.is_none() {
                let newer = h.stats().is_some_and(|s| newest_conn(&s, vendor) > before);
                if newer {
                    base = Some(metric_ticks(vendor));
                }
            }
            base.is_some_and(|b| metric_ticks(vendor) >= b + FLOWING)
        })
    }

    fn journal_drained(&self) -> bool {
        let m = crate::metrics::global();
        m.journal_bytes.get() == 0 && m.kafka_up.get() == 1
    }

    fn stop_engine(&mut self) {
        if let Some(e) = self.engine.take() {
            let r = e.stop();
            if let Some(p) = r.producer {
                self.producer.acked += p.acked;
                self.producer.failed += p.failed;
                self.producer.journaled += p.journaled;
                self.producer.drained += p.drained;
                self.producer.dropped += p.dropped;
                self.producer.left_in_journal_bytes = p.left_in_journal_bytes;
            }
        }
    }

    /// Injects one fault and waits for its recovery.
    fn inject(&mut self, kind: FaultKind, vendor: Vendor) -> Result<FaultOutcome, ChaosError> {
        let at_ms = self.ms();
        let before = self.stats().and_then(|s| newest_conn(&s, vendor));
        self.pump();
        self.in_fault = true;
        let vendor_opt = kind.needs_vendor().then_some(vendor);
        self.say(&format!(
            "inject {}{}",
            kind.as_str(),
            vendor_opt.map(|v| format!(" ({v})")).unwrap_or_default()
        ));
        let limit = kind.deadline();
        let mut note = None;
        let took = match kind {
            FaultKind::VendorDrop => {
                self.sim.inject(Fault::Drop(Target::all(vendor)))?;
                self.wait_new_conn_flowing(vendor, before, limit)
            }
            FaultKind::Stall => {
                self.sim.inject(Fault::Stall {
                    target: Target::all(vendor),
                    ms: STALE_MS * 4,
                })?;
                self.wait_new_conn_flowing(vendor, before, limit)
            }
            FaultKind::Oversize => {
                self.sim.inject(Fault::Oversize {
                    target: Target::all(vendor),
                    bytes: MAX_MESSAGE_BYTES + 1024,
                })?;
                self.wait_new_conn_flowing(vendor, before, limit)
            }
            FaultKind::Refuse429 => {
                self.sim.inject(Fault::Refuse {
                    vendor,
                    status: 429,
                    retry_after_s: Some(1),
                    count: 3,
                })?;
                let refused0 = self.stats().map_or(0, |s| s.refused);
                self.sim.inject(Fault::Drop(Target::all(vendor)))?;
                let r = self.wait_new_conn_flowing(vendor, before, limit);
                let refused = self
                    .stats()
                    .map_or(0, |s| s.refused.saturating_sub(refused0));
                if refused < 3 {
                    note = Some(format!("only {refused} of 3 handshakes refused"));
                }
                r.filter(|_| refused >= 3)
            }
            FaultKind::TokenExpiry => {
                self.tokens_issued += 1;
                let token = format!("chaos_token_{}_{}", vendor.as_str(), self.tokens_issued);
                let file = if vendor == Vendor::Kite {
                    &self.kite_token_file
                } else {
                    &self.upstox_token_file
                };
                write_token(file, &token)?;
                self.sim.inject(Fault::ExpireToken {
                    vendor,
                    new_token: token,
                })?;
                self.wait_new_conn_flowing(vendor, before, limit)
            }
            FaultKind::Malformed => {
                let r0 = metric_rejected(vendor);
                let t0 = metric_ticks(vendor);
                self.sim.inject(Fault::Malformed(Target::all(vendor)))?;
                self.sim.inject(Fault::Truncated(Target::all(vendor)))?;
                let r = self.wait(limit, |_| {
                    metric_rejected(vendor) >= r0 + 2 && metric_ticks(vendor) >= t0 + FLOWING
                });
                let after = self.stats().and_then(|s| newest_conn(&s, vendor));
                if after != before {
                    note = Some("the feed reconnected on a malformed frame".into());
                    None
                } else {
                    r
                }
            }
            FaultKind::KafkaKill => {
                script("kafka", "stop.sh", Some("--kill"))?;
                self.sleep(Duration::from_secs(3));
                self.say("restarting the broker");
                let restart = Instant::now();
                script("kafka", "start.sh", None)?;
                self.say(&format!(
                    "broker serving again after {:.1} s",
                    restart.elapsed().as_secs_f64()
                ));
                let left = limit.saturating_sub(Duration::from_millis(self.ms() - at_ms));
                let mut next_note = Instant::now() + Duration::from_secs(10);
                let mut notes = Vec::new();
                let r = self
                    .wait(left, |h| {
                        if Instant::now() >= next_note {
                            next_note += Duration::from_secs(10);
                            let m = crate::metrics::global();
                            notes.push(format!(
                                "at {:.1} s: journal {} bytes, kafka_up {}",
                                h.ms() as f64 / 1000.0,
                                m.journal_bytes.get(),
                                m.kafka_up.get()
                            ));
                        }
                        Harness::journal_drained(h)
                    })
                    .map(|_| Duration::from_millis(self.ms() - at_ms));
                for n in notes {
                    self.say(&format!("  {n}"));
                }
                r
            }
            FaultKind::RedisRestart => {
                let url = self.config.redis_url.clone();
                if let Ok(client) = redis::Client::open(url.as_str()) {
                    if let Ok(mut con) = client.get_connection_with_timeout(Duration::from_secs(1))
                    {
                        // The server closes the connection instead of answering.
                        let _: redis::RedisResult<()> =
                            redis::cmd("SHUTDOWN").arg("NOSAVE").query(&mut con);
                    }
                }
                let down = self.wait(Duration::from_secs(10), |_| !answers(&url));
                if down.is_none() {
                    note = Some("redis did not go down".into());
                }
                let seen_down = self
                    .wait(Duration::from_secs(5), |_| {
                        crate::metrics::global().redis_up.get() == 0
                    })
                    .is_some();
                script("redis", "start.sh", None)?;
                let left = limit.saturating_sub(Duration::from_millis(self.ms() - at_ms));
                let r = self
                    .wait(left, |_| {
                        crate::metrics::global().redis_up.get() == 1
                            && command_subscribers(&url).is_some_and(|n| n >= 1)
                    })
                    .map(|_| Duration::from_millis(self.ms() - at_ms));
                if !seen_down {
                    note = Some("redis_up never went to 0 while Redis was down".into());
                }
                r.filter(|_| down.is_some() && seen_down)
            }
            FaultKind::EngineRestart => {
                let befores: Vec<(Vendor, Option<u64>)> = {
                    let s = self.stats();
                    VENDORS
                        .iter()
                        .map(|&v| (v, s.as_ref().and_then(|s| newest_conn(s, v))))
                        .collect()
                };
                self.stop_engine();
                self.say(&format!(
                    "engine stopped ({} bytes left in the journal); starting again",
                    self.producer.left_in_journal_bytes
                ));
                self.engine = Some(start_engine(&self.config)?);
                let t0 = Instant::now();
                let mut ok = true;
                for (v, b) in befores {
                    let left = limit.saturating_sub(t0.elapsed());
                    ok &= self.wait_new_conn_flowing(v, b, left).is_some();
                }
                let left = limit.saturating_sub(t0.elapsed());
                ok &= self.wait(left, Harness::journal_drained).is_some();
                ok.then(|| Duration::from_millis(self.ms() - at_ms))
            }
        };
        self.pump();
        self.in_fault = false;
        let recovered = took.is_some();
        let recovery_ms = took.map_or_else(
            || u64::try_from(limit.as_millis()).unwrap_or(u64::MAX),
            |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
        );
        self.say(&format!(
            "  {} in {recovery_ms} ms{}",
            if recovered {
                "recovered"
            } else {
                "NOT RECOVERED"
            },
            note.as_deref()
                .map(|n| format!(" ({n})"))
                .unwrap_or_default()
        ));
        Ok(FaultOutcome {
            kind,
            vendor: vendor_opt,
            at_ms,
            recovered,
            recovery_ms,
            note,
        })
    }
}

fn run_in(
    o: &ChaosOptions,
    dir: &Path,
    progress: &mut dyn Write,
) -> Result<ChaosReport, ChaosError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    crate::services::up().map_err(|e| ChaosError::Services(e.to_string()))?;
    let _guard = ServicesGuard;
    let _ = writeln!(progress, "chaos: run directory {}", dir.display());
    let kite_token_file = dir.join("kite.token");
    let upstox_token_file = dir.join("upstox.token");
    let sc = SimConfig {
        seed: o.seed,
        ticks_per_sec: o.rate,
        ..SimConfig::default()
    };
    write_token(&kite_token_file, &sc.kite_access_token)?;
    write_token(&upstox_token_file, &sc.upstox_access_token)?;
    let sim = Simulator::start(sc)?;
    let config = Arc::new(engine_config(
        &sim,
        dir,
        &kite_token_file,
        &upstox_token_file,
    )?);
    let dropped0 = metric_dropped();
    crate::latency::handoff().reset();
    let engine = start_engine(&config)?;
    let mut h = Harness {
        sim,
        engine: Some(engine),
        config: Arc::clone(&config),
        kite_token_file,
        upstox_token_file,
        during: LatencyHistogram::new(),
        outside: LatencyHistogram::new(),
        in_fault: false,
        started: Instant::now(),
        producer: FlushReport::default(),
        progress,
        tokens_issued: 0,
    };
    let result = play(&mut h, o);
    // Whatever happened, stop generation and the engine so the account is final.
    let _ = h.sim.set_rate(0);
    h.sleep(Duration::from_secs(2));
    let drained = h
        .wait(Duration::from_secs(60), Harness::journal_drained)
        .is_some();
    let load_secs = h.started.elapsed().as_secs_f64();
    let stats = h.sim.stats();
    h.stop_engine();
    h.pump();
    let faults = result?;
    let stats = stats?;
    if !drained {
        h.say("the journal did not drain within 60 s of the end");
    }
    h.say("consuming the topics back");
    let mut book = Book::default();
    book.read_captures(&dir.join("capture"))?;
    let expected: u64 = book.per_vendor.values().map(|v| v.valid).sum();
    book.read_topic(&config, &config.kafka.topic_ticks, expected)?;
    let dlq = count_topic(&config.kafka.brokers, &config.kafka.topic_dlq, 1)?;
    let vendors = book.account(&stats, h.started);
    let report = ChaosReport {
        options: *o,
        load_secs,
        faults,
        vendors,
        dlq,
        parse_errors_read: book.parse_errors,
        dropped_at_handoff: metric_dropped().saturating_sub(dropped0),
        producer: h.producer,
        handoff_during: (h.during.quantile(0.999), h.during.count()),
        handoff_outside: (h.outside.quantile(0.999), h.outside.count()),
        peak_rss_kib: peak_rss_kib(),
        run_dir: dir.to_path_buf(),
    };
    h.sim.shutdown();
    Ok(report)
}

/// Plays the schedule: warm-up, one cycle of every kind in a seeded order, then seeded random
/// kinds while `secs` lasts.
fn play(h: &mut Harness<'_>, o: &ChaosOptions) -> Result<Vec<FaultOutcome>, ChaosError> {
    h.say(&format!(
        "load {} ticks/s per connection, {} s, seed {}",
        o.rate, o.secs, o.seed
    ));
    for v in VENDORS {
        if h.wait_new_conn_flowing(v, None, Duration::from_secs(30))
            .is_none()
        {
            return Err(ChaosError::Engine(format!("{v} never started streaming")));
        }
    }
    h.sleep(Duration::from_secs(2));
    let mut rng = Rng(o.seed ^ 0xC4A0_5EED);
    let mut first: Vec<FaultKind> = FaultKind::ALL.to_vec();
    for i in (1..first.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        first.swap(i, j);
    }
    let limit = Duration::from_secs(o.secs);
    let mut faults = Vec::new();
    let mut queue = first.into_iter();
    loop {
        let kind = match queue.next() {
            Some(k) => k,
            None if h.started.elapsed() < limit => {
                let i = rng.below(FaultKind::ALL.len() as u64) as usize;
                FaultKind::ALL
                    .get(i)
                    .copied()
                    .unwrap_or(FaultKind::VendorDrop)
            }
            None => break,
        };
        let vendor = VENDORS
            .get(rng.below(VENDORS.len() as u64) as usize)
            .copied()
            .unwrap_or(Vendor::Kite);
        faults.push(h.inject(kind, vendor)?);
        let gap = Duration::from_millis(2_000 + rng.below(2_000));
        h.sleep(gap);
    }
    let rest = limit.saturating_sub(h.started.elapsed());
    h.sleep(rest);
    Ok(faults)
}

/// Per-payload counts: read by the engine, and found in the topic.
#[derive(Debug, Default, Clone, Copy)]
struct Seen {
    read: u32,
    topic: u32,
}

#[derive(Debug, Default)]
struct VendorBook {
    payloads: HashMap<u64, Seen>,
    valid: u64,
    invalid: u64,
    in_topic: u64,
    received_ms: Vec<u64>,
    duplicate_ms: Vec<u64>,
}

/// The account: capture side and topic side, per vendor and per instrument.
#[derive(Debug, Default)]
struct Book {
    per_vendor: HashMap<Vendor, VendorBook>,
    read_per_instrument: HashMap<(Vendor, String), u64>,
    parse_errors: u64,
}

fn payload_hash(p: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    p.hash(&mut h);
    h.finish()
}

/// Decodes captured frames exactly as the pipeline does: parse, validate against the receive
/// time, encode the producer's payload.
struct CaptureSink<'a> {
    book: &'a mut Book,
    limits: ValidationLimits,
    buf: Vec<u8>,
}

impl TickSink for CaptureSink<'_> {
    fn tick(&mut self, t: &Tick) {
        *self
            .book
            .read_per_instrument
            .entry((t.vendor, t.token.as_str().to_owned()))
            .or_default() += 1;
        let vb = self.book.per_vendor.entry(t.vendor).or_default();
        if validate(t, t.received_at_ns, &self.limits).is_err() {
            vb.invalid += 1;
            return;
        }
        vb.valid += 1;
        self.buf.clear();
        encode_json(t, None, &mut self.buf);
        vb.payloads.entry(payload_hash(&self.buf)).or_default().read += 1;
    }

    fn reject(&mut self, _err: &ParseError, _raw: &[u8]) {
        self.book.parse_errors += 1;
    }
}

#[derive(serde::Deserialize)]
struct TopicTick {
    vendor: String,
    #[serde(rename = "receivedAt")]
    received_at: u64,
}

fn consumer(brokers: &str, topic: &str) -> Result<rdkafka::consumer::BaseConsumer, ChaosError> {
    use rdkafka::{consumer::Consumer, ClientConfig};
    let c: rdkafka::consumer::BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set(
            "group.id",
            format!("chaos-{}", crate::clock::now_unix_ns() % 1_000_000_000),
        )
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| ChaosError::Kafka(e.to_string()))?;
    c.subscribe(&[topic])
        .map_err(|e| ChaosError::Kafka(e.to_string()))?;
    Ok(c)
}

/// Reads `topic` from the beginning, calling `f` per record, until `expected` records arrived
/// and 5 s passed without one (so copies beyond the expected count are seen too), or 30 s of
/// silence, or 10 minutes.
fn drain_topic(
    brokers: &str,
    topic: &str,
    expected: u64,
    mut f: impl FnMut(&[u8]),
) -> Result<u64, ChaosError> {
    use rdkafka::Message;
    let c = consumer(brokers, topic)?;
    let end = Instant::now() + Duration::from_secs(600);
    let mut last = Instant::now();
    let mut n = 0u64;
    while Instant::now() < end {
        match c.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                n += 1;
                last = Instant::now();
                f(m.payload().unwrap_or_default());
            }
            Some(Err(e)) => log::warn!(event = "chaos_consume_error"; "{e}"),
            None => {
                let quiet = last.elapsed();
                if (n >= expected && quiet >= Duration::from_secs(5))
                    || quiet >= Duration::from_secs(30)
                {
                    break;
                }
            }
        }
    }
    Ok(n)
}

fn count_topic(brokers: &str, topic: &str, expected: u64) -> Result<u64, ChaosError> {
    drain_topic(brokers, topic, expected, |_| {})
}

impl Book {
    fn read_captures(&mut self, dir: &Path) -> Result<(), ChaosError> {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "l1cap"))
            .collect();
        files.sort();
        let mut sink = CaptureSink {
            book: self,
            limits: ValidationLimits::default(),
            buf: Vec::with_capacity(2048),
        };
        let mut payload = Vec::new();
        for path in files {
            let file = std::fs::File::open(&path)?;
            let mut reader = CaptureReader::new(BufReader::with_capacity(1 << 20, file))
                .map_err(|e| ChaosError::Io(std::io::Error::other(e.to_string())))?;
            loop {
                match reader.next_record(&mut payload) {
                    Ok(Some(rec)) => {
                        let meta = FrameMeta {
                            received_at_ns: rec.received_at_ns,
                            conn_id: rec.conn_id,
                        };
                        let _ =
                            parsers::parse_frame(rec.vendor, rec.kind, &payload, &meta, &mut sink);
                    }
                    Ok(None) => break,
                    Err(e) if e.is_resumable() => {
                        log::warn!(event = "chaos_capture_corrupt"; "{e}");
                    }
                    Err(e) => {
                        return Err(ChaosError::Io(std::io::Error::other(format!(
                            "{}: {e}",
                            path.display()
                        ))))
                    }
                }
            }
        }
        Ok(())
    }

    fn read_topic(
        &mut self,
        config: &Config,
        topic: &str,
        expected: u64,
    ) -> Result<(), ChaosError> {
        let per_vendor = &mut self.per_vendor;
        drain_topic(&config.kafka.brokers, topic, expected, |p| {
            let Ok(t) = serde_json::from_slice::<TopicTick>(p) else {
                return;
            };
            let Some(v) = Vendor::from_name(&t.vendor) else {
                return;
            };
            let vb = per_vendor.entry(v).or_default();
            vb.in_topic += 1;
            vb.received_ms.push(t.received_at);
            let seen = vb.payloads.entry(payload_hash(p)).or_default();
            seen.topic += 1;
            if seen.read > 0 && seen.topic > seen.read {
                vb.duplicate_ms.push(t.received_at);
            }
        })?;
        Ok(())
    }

    fn account(&mut self, stats: &SimStats, started: Instant) -> Vec<(Vendor, VendorAccount)> {
        let started_ms = crate::clock::now_unix_ms()
            .saturating_sub(u64::try_from(started.elapsed().as_millis()).unwrap_or(0));
        let mut out = Vec::new();
        for v in VENDORS {
            let mut a = VendorAccount::default();
            for ((sv, key), &sent) in &stats.ticks_sent {
                if *sv != v {
                    continue;
                }
                let read = self
                    .read_per_instrument
                    .get(&(v, key.clone()))
                    .copied()
                    .unwrap_or(0);
                a.sim_sent += sent;
                a.sent_never_read += sent.saturating_sub(read);
                a.read_not_sent += read.saturating_sub(sent);
            }
            for ((rv, key), &read) in &self.read_per_instrument {
                if *rv == v && !stats.ticks_sent.contains_key(&(v, key.clone())) {
                    a.read_not_sent += read;
                }
            }
            if let Some(vb) = self.per_vendor.get_mut(&v) {
                a.read = vb.valid + vb.invalid;
                a.read_invalid = vb.invalid;
                a.in_topic = vb.in_topic;
                for s in vb.payloads.values() {
                    let (r, t) = (u64::from(s.read), u64::from(s.topic));
                    if r > t {
                        a.lost += r - t;
                    } else if r == 0 {
                        a.phantom += t;
                    } else {
                        a.duplicated += t - r;
                    }
                }
                a.duplicate_at_ms = vb
                    .duplicate_ms
                    .iter()
                    .map(|x| x.saturating_sub(started_ms))
                    .collect();
                a.duplicate_at_ms.sort_unstable();
                vb.received_ms.sort_unstable();
                for w in vb.received_ms.windows(2) {
                    if let [x, y] = w {
                        if y - x > a.longest_gap_ms {
                            a.longest_gap_ms = y - x;
                            a.gap_at_ms = x.saturating_sub(started_ms);
                        }
                    }
                }
            }
            out.push((v, a));
        }
        out
    }
}
