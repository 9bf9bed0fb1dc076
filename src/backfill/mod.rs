//! Historical backfill: the missing OHLC candles of the last N trading days, fetched from the
//! vendors' REST APIs when the market is closed and produced to `KAFKA_TOPIC_OHLC`.
//!
//! Threads (none of them a feed or producer thread, so a slow or failing job never stalls live
//! ingestion):
//! - `backfill-ctl`: takes [`ControlCommand`]s from [`BackfillHandle::submit`], owns the
//!   founding document's `isBackfilling` flag (an `AtomicBool`), refuses triggers (already
//!   running, market open without `force`, bad parameters), fires the automatic job once after
//!   each market close and at start-up when a close was missed, and flushes [`LiveCoverage`]
//!   to Redis every few seconds;
//! - `backfill-job`: runs one job at a time under the Redis lock (renewed by `backfill-lock`),
//!   inside `catch_unwind`: a failure or a panic leaves status `failed` with the reason, and
//!   clears the flag and the lock; the thread goes on.
//!
//! Status: [`status`] (Redis key `system:layer1:backfill`, channel
//! `system:layer1:backfill:events`). Coverage: [`coverage`]. Vendors: [`fetch`]. Candle schema:
//! `docs/candles.md`. Error codes: `docs/errors.md`.

pub mod candle;
pub mod coverage;
pub mod error;
pub mod fetch;
pub mod instruments;
mod job;
pub mod lock;
pub mod ratelimit;
pub mod status;

use std::{
    panic::AssertUnwindSafe,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use candle::{Candle, Interval};
pub use coverage::LiveCoverage;
use crossbeam_channel::{Receiver, Sender, TrySendError};
pub use error::{BackfillError, Refusal};
pub use instruments::{BackfillInstrument, InstrumentSource, StaticInstruments};
use job::JobRequest;
pub use status::{State, Status, StatusBoard, StatusKeys};

use crate::{
    calendar::Calendar,
    config::{Config, Secret},
    control::{BackfillParams, ControlCommand},
    error::ErrorCode,
    producer::Handover,
    shutdown::Shutdown,
    vendor::Vendor,
};

/// The contract's status key.
pub const STATUS_KEY: &str = "system:layer1:backfill";
/// The channel every status change is published on.
pub const EVENTS_CHANNEL: &str = "system:layer1:backfill:events";
/// The lock key.
pub const LOCK_KEY: &str = "system:layer1:backfill:lock";
/// Prefix of coverage keys and of the last-close marker.
pub const KEY_PREFIX: &str = "layer1";

/// "Now" as Unix ms. Injectable so tests run on a chosen (e.g. closed-market) clock.
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| i64::try_from(crate::clock::now_unix_ms()).unwrap_or(i64::MAX))
}

/// One vendor's REST endpoint and credentials.
#[derive(Debug, Clone)]
pub struct VendorEndpoint {
    /// Base URL (`https://api.kite.trade`, `https://api.upstox.com`, or a simulator's).
    pub base_url: String,
    /// Kite's api_key (the `token api_key:access_token` header); `None` for Upstox.
    pub api_key: Option<Secret>,
    /// Access token.
    pub token: Secret,
    /// Requests per second.
    pub rps: u32,
    /// Most calendar days per request (Kite minute: 60; Upstox 1-15 minutes: one month).
    pub max_days: u32,
}

/// Retries of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts on 5xx or transport errors before giving up (default 4).
    pub max_attempts: u32,
    /// 429 answers tolerated for one request (default 10).
    pub max_rate_limited: u32,
    /// First backoff (default 250 ms), doubled per attempt.
    pub base: Duration,
    /// Backoff cap (default 8 s).
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            max_rate_limited: 10,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// The wait before retry `attempt` (1-based).
    pub fn backoff(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(16);
        self.base.saturating_mul(factor).min(self.cap)
    }
}

/// Everything the backfill threads need. Built from [`Config`] by [`BackfillSettings::from_config`];
/// every field is public so tests (and the demo) can point it at a simulator and a test clock.
#[derive(Clone)]
pub struct BackfillSettings {
    /// Redis URL.
    pub redis_url: String,
    /// This engine's id (status, lock holder).
    pub engine_id: String,
    /// Redis key names.
    pub keys: Keys,
    /// Trading calendar.
    pub calendar: Arc<Calendar>,
    /// Vendor-reported market status: a fresh report overrides the calendar's "market open"
    /// for the trigger guard and the automatic job ([`crate::market_status`]).
    pub market_status: Arc<crate::market_status::MarketStatusStore>,
    /// "Now".
    pub clock: Clock,
    /// Default trading days.
    pub days: u32,
    /// Default interval.
    pub interval: Interval,
    /// Automatic jobs after the close and at start-up.
    pub auto: bool,
    /// Delay after the close before the automatic job.
    pub auto_delay: Duration,
    /// Wait before the automatic job is tried again after a failure.
    pub auto_retry: Duration,
    /// Kite endpoint, when credentials are configured.
    pub kite: Option<VendorEndpoint>,
    /// Upstox endpoint, when credentials are configured.
    pub upstox: Option<VendorEndpoint>,
    /// Retries per request.
    pub retry: RetryPolicy,
    /// Whole-request HTTP timeout.
    pub http_timeout: Duration,
    /// Lock TTL (renewed every third).
    pub lock_ttl: Duration,
    /// Live coverage flush period.
    pub coverage_flush: Duration,
    /// Expiry of coverage keys.
    pub coverage_ttl: Duration,
    /// Longest wait for room in the producer queue before the job fails.
    pub producer_send_timeout: Duration,
}

impl std::fmt::Debug for BackfillSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackfillSettings")
            .field("engine_id", &self.engine_id)
            .field("keys", &self.keys)
            .field("days", &self.days)
            .field("interval", &self.interval)
            .field("auto", &self.auto)
            .field("kite", &self.kite)
            .field("upstox", &self.upstox)
            .finish_non_exhaustive()
    }
}

/// Redis names used by the backfill (configurable so tests can run side by side).
#[derive(Debug, Clone)]
pub struct Keys {
    /// Status key ([`STATUS_KEY`]).
    pub status: String,
    /// Events channel ([`EVENTS_CHANNEL`]).
    pub events: String,
    /// Lock key ([`LOCK_KEY`]).
    pub lock: String,
    /// Prefix of coverage keys and the last-close marker ([`KEY_PREFIX`]).
    pub prefix: String,
}

impl Default for Keys {
    fn default() -> Self {
        Keys {
            status: STATUS_KEY.into(),
            events: EVENTS_CHANNEL.into(),
            lock: LOCK_KEY.into(),
            prefix: KEY_PREFIX.into(),
        }
    }
}

impl Keys {
    /// Keys under a namespace (tests): `{ns}:backfill`, `{ns}:backfill:events`, ...
    pub fn namespaced(ns: &str) -> Keys {
        Keys {
            status: format!("{ns}:backfill"),
            events: format!("{ns}:backfill:events"),
            lock: format!("{ns}:backfill:lock"),
            prefix: ns.to_owned(),
        }
    }

    fn last_close(&self) -> String {
        format!("{}:backfill:last_close", self.prefix)
    }
}

fn engine_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .unwrap_or_default();
    let host = if host.is_empty() {
        "layer1".to_owned()
    } else {
        host
    };
    format!("{host}-{}", std::process::id())
}

impl BackfillSettings {
    /// Settings from the engine configuration: the contract's key names, the system clock, the
    /// holiday file (or the compiled-in list), vendors with configured credentials.
    pub fn from_config(config: &Config) -> BackfillSettings {
        let b = &config.backfill;
        BackfillSettings {
            redis_url: config.redis_url.clone(),
            engine_id: engine_id(),
            keys: Keys::default(),
            calendar: Arc::new(Calendar::load(b.holidays_file.as_deref())),
            market_status: Arc::clone(crate::market_status::global()),
            clock: system_clock(),
            days: b.days,
            interval: b.interval,
            auto: b.auto,
            auto_delay: b.auto_delay,
            auto_retry: Duration::from_secs(15 * 60),
            kite: config.kite.as_ref().map(|k| VendorEndpoint {
                base_url: b.kite_api_url.clone(),
                api_key: Some(k.api_key.clone()),
                token: k.access_token.clone(),
                rps: b.kite_rps,
                max_days: 60,
            }),
            upstox: config.upstox.as_ref().map(|u| VendorEndpoint {
                base_url: b.upstox_api_url.clone(),
                api_key: None,
                token: u.access_token.clone(),
                rps: b.upstox_rps,
                max_days: 28,
            }),
            retry: RetryPolicy::default(),
            http_timeout: Duration::from_secs(30),
            lock_ttl: Duration::from_secs(30),
            coverage_flush: Duration::from_secs(5),
            coverage_ttl: Duration::from_secs(60 * 86_400),
            producer_send_timeout: Duration::from_secs(30),
        }
    }

    fn endpoint(&self, vendor: Vendor) -> Option<&VendorEndpoint> {
        match vendor {
            Vendor::Kite => self.kite.as_ref(),
            Vendor::Upstox => self.upstox.as_ref(),
            _ => None,
        }
    }
}

/// State shared by the backfill threads.
struct Runtime {
    settings: BackfillSettings,
    source: Arc<dyn InstrumentSource>,
    producer: Handover,
    board: Arc<StatusBoard>,
    live: Arc<LiveCoverage>,
    running: Arc<AtomicBool>,
    shutdown: Shutdown,
    client: redis::Client,
    nonce: AtomicU64,
}

/// The running backfill: hand it commands, give its [`LiveCoverage`] to the producer thread,
/// join it after shutdown.
#[derive(Debug)]
pub struct BackfillHandle {
    commands: Sender<ControlCommand>,
    running: Arc<AtomicBool>,
    live: Arc<LiveCoverage>,
    board: Arc<StatusBoard>,
    threads: Vec<JoinHandle<()>>,
}

impl BackfillHandle {
    /// Hands a command to the backfill control thread. Never blocks; a full queue is refused
    /// (and logged) rather than stalling the caller.
    /// A sender into the job queue, for the control thread to hand commands over directly.
    pub fn command_sender(&self) -> Sender<ControlCommand> {
        self.commands.clone()
    }

    /// Hands over a command without blocking; a full queue is refused (logged) instead.
    pub fn submit(&self, cmd: ControlCommand) {
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) =
            self.commands.try_send(cmd)
        {
            let r = Refusal::Busy;
            log::warn!(event = "backfill_refused", code = r.code(); "{r}");
        }
    }

    /// The founding document's `isBackfilling`.
    pub fn is_backfilling(&self) -> bool {
        self.running.load(Ordering::Acquire)
    }

    /// Live coverage, for the producer thread's per-tick [`LiveCoverage::record`].
    pub fn live_coverage(&self) -> Arc<LiveCoverage> {
        Arc::clone(&self.live)
    }

    /// The current status.
    pub fn status(&self) -> Status {
        self.board.snapshot()
    }

    /// Joins the threads; call after the shutdown flag was triggered (a running job stops at its
    /// next request or candle).
    pub fn join(mut self) {
        for t in self.threads.drain(..) {
            let name = t.thread().name().unwrap_or("backfill").to_owned();
            if t.join().is_err() {
                log::error!(event = "thread_panicked", thread = name.as_str(); "thread ended in a panic");
            }
        }
    }
}

/// Starts the backfill threads.
///
/// # Errors
/// [`BackfillError::Redis`] when the Redis URL does not parse, [`BackfillError::Spawn`] when a
/// thread cannot be started. Redis being down is not an error here: triggers are refused with a
/// logged reason until it is back.
pub fn spawn(
    settings: BackfillSettings,
    source: Arc<dyn InstrumentSource>,
    producer: Handover,
    shutdown: Shutdown,
) -> Result<BackfillHandle, BackfillError> {
    let client = redis::Client::open(settings.redis_url.as_str())
        .map_err(|e| BackfillError::Redis(crate::redact::redact(&e.to_string())))?;
    let board = Arc::new(StatusBoard::new(
        client.clone(),
        StatusKeys {
            key: settings.keys.status.clone(),
            channel: settings.keys.events.clone(),
        },
        &settings.engine_id,
    ));
    let instruments = source.instruments();
    let aliases: Vec<(String, String)> = instruments
        .iter()
        .flat_map(|i| {
            [
                (i.symbol.clone(), i.symbol.clone()),
                (i.vendor_key(), i.symbol.clone()),
            ]
        })
        .collect();
    let live = Arc::new(LiveCoverage::new(
        aliases.iter().map(|(a, s)| (a.as_str(), s.as_str())),
    ));
    let running = Arc::new(AtomicBool::new(false));
    let rt = Arc::new(Runtime {
        settings,
        source,
        producer,
        board: Arc::clone(&board),
        live: Arc::clone(&live),
        running: Arc::clone(&running),
        shutdown,
        client,
        nonce: AtomicU64::new(crate::clock::now_unix_ns()),
    });
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded::<ControlCommand>(16);
    let (job_tx, job_rx) = crossbeam_channel::bounded::<JobRequest>(1);
    let mut threads = Vec::new();
    {
        let rt = Arc::clone(&rt);
        threads.push(
            std::thread::Builder::new()
                .name("backfill-job".into())
                .spawn(move || job_thread(&rt, &job_rx))
                .map_err(|e| BackfillError::Spawn(e.kind()))?,
        );
    }
    {
        let rt = Arc::clone(&rt);
        threads.push(
            std::thread::Builder::new()
                .name("backfill-ctl".into())
                .spawn(move || control_thread(&rt, &cmd_rx, &job_tx))
                .map_err(|e| BackfillError::Spawn(e.kind()))?,
        );
    }
    Ok(BackfillHandle {
        commands: cmd_tx,
        running,
        live,
        board,
        threads,
    })
}

fn control_thread(rt: &Runtime, commands: &Receiver<ControlCommand>, jobs: &Sender<JobRequest>) {
    let s = &rt.settings;
    let mut con: Option<redis::Connection> = None;
    let mut last_flush = Instant::now();
    let mut next_auto = Instant::now();
    let mut first_auto = true;
    loop {
        match commands.recv_timeout(Duration::from_millis(100)) {
            Ok(ControlCommand::StartBackfill(params)) => {
                let trigger = params.source.clone().unwrap_or_else(|| "redis".to_owned());
                trigger_job(rt, &mut con, jobs, &params, trigger);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {}
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => {
                // The handle is gone; keep serving automatic jobs and flushes until shutdown.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if rt.shutdown.is_triggered() {
            break;
        }
        if last_flush.elapsed() >= s.coverage_flush {
            last_flush = Instant::now();
            flush_live(rt, &mut con);
        }
        if s.auto && Instant::now() >= next_auto {
            next_auto = Instant::now() + Duration::from_secs(1);
            if let Some(trigger) = auto_due(rt, &mut con, first_auto) {
                next_auto = Instant::now() + s.auto_retry;
                trigger_job(
                    rt,
                    &mut con,
                    jobs,
                    &BackfillParams::default(),
                    trigger.to_owned(),
                );
            }
            first_auto = false;
        }
    }
    flush_live(rt, &mut con);
}

fn redis_con<'a>(
    rt: &Runtime,
    con: &'a mut Option<redis::Connection>,
) -> Option<&'a mut redis::Connection> {
    if con.is_none() {
        match rt
            .client
            .get_connection_with_timeout(Duration::from_secs(2))
        {
            Ok(c) => {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                *con = Some(c);
            }
            Err(e) => {
                log::warn!(event = "backfill_redis_unavailable", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
                return None;
            }
        }
    }
    con.as_mut()
}

fn flush_live(rt: &Runtime, con: &mut Option<redis::Connection>) {
    let Some(c) = redis_con(rt, con) else { return };
    if let Err(e) = rt
        .live
        .flush(c, &rt.settings.keys.prefix, rt.settings.coverage_ttl)
    {
        log::warn!(event = "backfill_live_flush_failed", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
        *con = None;
    }
}

/// The market status for the backfill: the calendar, overridden by a fresh vendor report (the
/// vendor says open on a day the calendar thinks closed: refused; the vendor says closed on a
/// day the calendar thinks open: allowed).
fn market_now(s: &BackfillSettings, now: i64) -> crate::market_status::Decision {
    s.market_status
        .decide_for(crate::market_status::Consumer::Backfill, &s.calendar, now)
}

/// The automatic trigger to fire now, if any: the market is closed, the last session closed at
/// least `auto_delay` ago, and no job has covered that close yet (in any engine).
fn auto_due(
    rt: &Runtime,
    con: &mut Option<redis::Connection>,
    first: bool,
) -> Option<&'static str> {
    let s = &rt.settings;
    let now = (s.clock)();
    if rt.running.load(Ordering::Acquire) || market_now(s, now).status.is_open() {
        return None;
    }
    let last = s.calendar.last_closed_session(now)?;
    let delay = i64::try_from(s.auto_delay.as_millis()).unwrap_or(i64::MAX);
    if now < last.close_ms().saturating_add(delay) {
        return None;
    }
    let c = redis_con(rt, con)?;
    let covered: Option<i64> = match redis::cmd("GET").arg(s.keys.last_close()).query(c) {
        Ok(v) => v,
        Err(_) => {
            *con = None;
            return None;
        }
    };
    if covered.is_some_and(|c| c >= last.close_ms()) {
        return None;
    }
    Some(if first { "auto-startup" } else { "auto-close" })
}

fn trigger_job(
    rt: &Runtime,
    con: &mut Option<redis::Connection>,
    jobs: &Sender<JobRequest>,
    params: &BackfillParams,
    trigger: String,
) {
    let s = &rt.settings;
    let now = (s.clock)();
    let decision = market_now(s, now);
    let market = decision.status;
    log::info!(event = "backfill_market_check", trigger = trigger.as_str(), market = market.as_str(), source = decision.source.as_str(), calendar = decision.calendar.as_str(), force = params.force; "backfill trigger: market {} (from the {})", market.as_str(), decision.source.as_str());
    let interval = match params.interval.as_deref() {
        None => Ok(s.interval),
        Some(i) => Interval::parse(i).ok_or_else(|| Refusal::Invalid(format!("interval {i:?} (use minute, 3minute, 5minute, 10minute, 15minute, 30minute or 60minute)"))),
    };
    let interval = match interval {
        Ok(i) => i,
        Err(r) => return refuse(rt, con, &trigger, market.as_str(), params.force, &r),
    };
    if rt
        .running
        .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        let r = Refusal::Running;
        log::info!(event = "backfill_refused", code = r.code(), trigger = trigger.as_str(); "{r}");
        rt.board.update("refused-while-running", |st| {
            st.refused_while_running = Some(status::RefusalNote {
                at: status::now_rfc3339(),
                trigger: trigger.clone(),
                code: r.code(),
                reason: r.to_string(),
            });
        });
        return;
    }
    if market.is_open() && !params.force {
        rt.running.store(false, Ordering::Release);
        return refuse(
            rt,
            con,
            &trigger,
            market.as_str(),
            false,
            &Refusal::MarketOpen {
                status: match decision.source {
                    crate::market_status::Source::Vendor => "open, as reported by the vendor",
                    crate::market_status::Source::Calendar => market.as_str(),
                },
            },
        );
    }
    let req = JobRequest {
        trigger: trigger.clone(),
        days: params.days.unwrap_or(s.days),
        interval,
        symbols: params.symbols.clone(),
        force: params.force,
        market: market.as_str(),
    };
    if jobs.try_send(req).is_err() {
        rt.running.store(false, Ordering::Release);
        refuse(
            rt,
            con,
            &trigger,
            market.as_str(),
            params.force,
            &Refusal::Busy,
        );
    }
}

/// Writes a refusal: as the status when no engine holds the lock, else only as an event (the
/// key belongs to the running job).
fn refuse(
    rt: &Runtime,
    con: &mut Option<redis::Connection>,
    trigger: &str,
    market: &'static str,
    force: bool,
    r: &Refusal,
) {
    log::info!(event = "backfill_refused", code = r.code(), trigger = trigger; "{r}");
    let fill = |st: &mut Status| {
        *st = Status::idle(&rt.settings.engine_id);
        st.state = State::Refused;
        st.trigger = Some(trigger.to_owned());
        st.market = Some(market);
        st.force = force;
        st.reason = Some(r.to_string());
        st.reason_code = Some(r.code());
        st.finished_at = Some(status::now_rfc3339());
    };
    let held = redis_con(rt, con)
        .and_then(|c| lock::holder(c, &rt.settings.keys.lock).ok())
        .flatten();
    if held.is_some() {
        let mut st = Status::idle(&rt.settings.engine_id);
        fill(&mut st);
        rt.board.publish_only("refused", st);
    } else {
        rt.board.update("refused", fill);
    }
}

fn job_thread(rt: &Runtime, jobs: &Receiver<JobRequest>) {
    loop {
        match jobs.recv_timeout(Duration::from_millis(100)) {
            Ok(req) => {
                // Nothing in here may leave the flag set: a panic anywhere is caught and reported.
                let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run_one(rt, &req)));
                if let Err(p) = outcome {
                    let msg = panic_message(&p);
                    rt.running.store(false, Ordering::Release);
                    finish(rt, Err(BackfillError::Panic(msg)));
                }
                rt.running.store(false, Ordering::Release);
            }
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                if rt.shutdown.is_triggered() {
                    break;
                }
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => break,
        }
    }
}

fn panic_message(p: &Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

fn run_one(rt: &Runtime, req: &JobRequest) {
    let s = &rt.settings;
    let nonce = rt.nonce.fetch_add(1, Ordering::Relaxed);
    let job_id = format!("{}:{nonce:x}", s.engine_id);
    let guard = match lock::acquire(&rt.client, &s.keys.lock, &job_id, s.lock_ttl) {
        Ok(Some(g)) => g,
        Ok(None) => {
            let mut con = None;
            let owner = redis_con(rt, &mut con)
                .and_then(|c| lock::holder(c, &s.keys.lock).ok())
                .flatten()
                .unwrap_or_else(|| "unknown".into());
            rt.running.store(false, Ordering::Release);
            let r = Refusal::Locked { owner };
            log::info!(event = "backfill_refused", code = r.code(), trigger = req.trigger.as_str(); "{r}");
            let mut st = Status::idle(&s.engine_id);
            st.state = State::Refused;
            st.trigger = Some(req.trigger.clone());
            st.market = Some(req.market);
            st.reason = Some(r.to_string());
            st.reason_code = Some(r.code());
            rt.board.publish_only("refused", st);
            return;
        }
        Err(e) => {
            rt.running.store(false, Ordering::Release);
            finish(
                rt,
                Err(BackfillError::Redis(crate::redact::redact(&e.to_string()))),
            );
            return;
        }
    };
    log::info!(event = "backfill_started", trigger = req.trigger.as_str(), days = req.days, force = req.force; "backfill job {job_id} started");
    rt.board.update("started", |st| {
        *st = Status::idle(&s.engine_id);
        st.state = State::Running;
        st.job_id = Some(job_id.clone());
        st.trigger = Some(req.trigger.clone());
        st.market = Some(req.market);
        st.force = req.force;
        st.interval = Some(req.interval.name());
        st.started_at = Some(status::now_rfc3339());
    });
    let started = Instant::now();
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| job::run(rt, req, &guard)))
        .unwrap_or_else(|p| Err(BackfillError::Panic(panic_message(&p))));
    if result.is_ok() && req.symbols.is_none() {
        // Remember the close this job covered, so the automatic trigger (of any engine) does
        // not run again for it.
        if let Some(last) = s.calendar.last_closed_session((s.clock)()) {
            let mut con = None;
            if let Some(c) = redis_con(rt, &mut con) {
                let _ = redis::cmd("SET")
                    .arg(s.keys.last_close())
                    .arg(last.close_ms())
                    .query::<()>(c);
            }
        }
    }
    // Lock first, then the flag, then the final status: whoever reads `completed`/`failed` finds
    // both already cleared, and a new trigger's `started` can only come after this write.
    drop(guard);
    rt.running.store(false, Ordering::Release);
    let elapsed = started.elapsed().as_secs_f64();
    match &result {
        Ok(p) => log::info!(
            event = "backfill_completed",
            candles = p.candles_done,
            api_calls = p.api_calls,
            seconds = elapsed,
            candles_per_s = p.candles_done as f64 / elapsed.max(1e-9),
            api_calls_per_s = p.api_calls as f64 / elapsed.max(1e-9);
            "backfill job {job_id} completed"
        ),
        Err(e) => {
            log::error!(event = "backfill_failed", code = e.code(); "backfill job {job_id} failed: {e}")
        }
    }
    finish(rt, result.map(|_| ()));
}

fn finish(rt: &Runtime, result: Result<(), BackfillError>) {
    let at = status::now_rfc3339();
    match result {
        Ok(()) => rt.board.update("completed", |st| {
            st.state = State::Completed;
            st.finished_at = Some(at);
            st.current_instrument = None;
        }),
        Err(e) => rt.board.update("failed", |st| {
            st.state = State::Failed;
            st.finished_at = Some(at);
            st.reason = Some(e.to_string());
            st.reason_code = Some(e.code());
            if !matches!(e, BackfillError::Incomplete { .. }) {
                st.push_error(
                    st.current_instrument.clone().as_deref(),
                    e.code(),
                    e.to_string(),
                );
            }
        }),
    }
}
