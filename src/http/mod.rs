//! The HTTP surface on the metrics thread: Prometheus text, health and readiness, the status
//! page with its JSON API and live stream, and the **Trigger Backfill** command.
//!
//! | route | does |
//! |---|---|
//! | `GET /metrics` | Prometheus text of the process registry |
//! | `GET /health`, `/health/live`, `/health/ready` | liveness; readiness = Kafka reachable and, during market hours, every configured feed connected (the body says what is not) |
//! | `GET /` (+ `/assets/app.css`, `/assets/app.js`) | the status page, compiled into the binary |
//! | `GET /api/status` | JSON snapshot: connections, rates and their 15-minute history, queues, journal, latency, backfill |
//! | `GET /api/events` | the same snapshot as Server-Sent Events, one every 500 ms (without history) |
//! | `POST /api/backfill` | publishes `START_BACKFILL` on Redis `system:commands` |
//!
//! Threads, none pinned and none on the hot path (no async runtime):
//! - `http`: accepts (non-blocking listener, checked every 20 ms) and hands each connection to a
//!   bounded queue; when the queue is full the client gets 503 at once;
//! - `http-worker-N` (a few): read one request within a deadline, answer it, close; a live
//!   stream is answered with its head and handed to the sampler;
//! - `http-sampler`: samples the counters every 500 ms into the rate ring and writes one event to
//!   every live stream with non-blocking writes (a stream that cannot take it is dropped); the
//!   number of streams is bounded;
//! - `http-backfill`: reads the backfill status key from Redis every 500 ms.
//!
//! A slow or hostile client therefore holds at most one worker for at most the read timeout, and
//! never the accept loop, a feed thread or the producer.

mod assets;
pub mod backfill;
pub mod error;
mod routes;
pub mod security;
pub mod snapshot;
mod sse;
pub mod wire;

use std::{
    io::{ErrorKind, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{atomic::AtomicUsize, Arc, Mutex},
    thread::JoinHandle,
    time::{Duration, Instant},
};

pub use backfill::{RedisTarget, STATUS_KEY};
pub use error::HttpError;
pub use security::Exposure;
pub use snapshot::{HISTORY_LEN, SAMPLE_MS};
pub use wire::{MAX_BODY_BYTES, MAX_HEAD_BYTES};

use crate::{
    config::Config,
    error::Error,
    metrics::Metrics,
    shutdown::Shutdown,
    status::{MarketSource, StatusRegistry},
    vendor::Vendor,
};

/// Largest request head accepted (kept under its historical name).
pub const MAX_REQUEST_BYTES: usize = MAX_HEAD_BYTES;

/// The state the routes read (what every build has: metrics and version).
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Process metrics.
    pub metrics: &'static Metrics,
    /// Engine version.
    pub version: &'static str,
}

/// Bounds on what clients may ask of the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Requests a client may make at once. Default 60.
    pub per_client_burst: u32,
    /// Requests per second a client may sustain. Default 20.
    pub per_client_per_s: u32,
    /// Live streams at once. Default 8.
    pub max_streams: usize,
    /// Request worker threads. Default 4.
    pub workers: usize,
    /// Connections waiting for a worker before new ones get 503. Default 32.
    pub queue: usize,
    /// Time a client has to send its whole request. Default 2 s.
    pub read_timeout: Duration,
    /// Least time between two accepted backfill triggers. Default 2 s.
    pub trigger_interval: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_client_burst: 60,
            per_client_per_s: 20,
            max_streams: 8,
            workers: 4,
            queue: 32,
            read_timeout: Duration::from_secs(2),
            trigger_interval: Duration::from_secs(2),
        }
    }
}

/// Everything beyond metrics and version: where connection status, market phase and backfill
/// come from, who may trigger, and the bounds.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Connection status ([`crate::status::global`] in the engine).
    pub status: &'static StatusRegistry,
    /// Loopback or remote (token for `POST`).
    pub exposure: Exposure,
    /// Redis for the backfill trigger and status; `None` disables both (shown on the page).
    pub redis: Option<RedisTarget>,
    /// Market phase source.
    pub market: MarketSource,
    /// Vendors configured to stream; readiness wants each connected during market hours.
    pub feeds: Vec<Vendor>,
    /// A connection silent for longer than this is marked stale (`STALE_MS`).
    pub stale_after: Duration,
    /// Client bounds.
    pub limits: Limits,
}

impl HttpOptions {
    /// Defaults for a server on `addr`: the global status registry, loopback or (tokenless,
    /// so `POST` always refused) remote by address, no Redis, the IST-hours fallback market, no
    /// configured feeds, 5 s stale limit.
    pub fn for_addr(addr: SocketAddr) -> HttpOptions {
        HttpOptions {
            status: crate::status::global(),
            exposure: Exposure::for_addr(addr, None),
            redis: None,
            market: MarketSource::ist_hours_only(),
            feeds: Vec::new(),
            stale_after: Duration::from_secs(5),
            limits: Limits::default(),
        }
    }

    /// From the engine's configuration: exposure by `HTTP_ADDR` with `STATUS_TOKEN`, Redis at
    /// `REDIS_URL`, the feeds that have credentials, `STALE_MS`.
    pub fn from_config(config: &Config) -> HttpOptions {
        let mut feeds = Vec::new();
        if config.kite.is_some() {
            feeds.push(Vendor::Kite);
        }
        if config.upstox.is_some() {
            feeds.push(Vendor::Upstox);
        }
        HttpOptions {
            exposure: Exposure::for_addr(config.http_addr, config.status_token.clone()),
            redis: Some(RedisTarget::new(&config.redis_url)),
            feeds,
            stale_after: config.feed.stale,
            ..HttpOptions::for_addr(config.http_addr)
        }
    }
}

/// What the threads share.
#[derive(Debug)]
struct Shared {
    state: HttpState,
    opts: HttpOptions,
    sampler: Mutex<snapshot::Sampler>,
    backfill: Arc<backfill::BackfillCache>,
    streams: Mutex<Vec<TcpStream>>,
    stream_count: AtomicUsize,
    limiter: Mutex<security::RateLimiter>,
    last_trigger: Mutex<Option<Instant>>,
    started: Instant,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    match m.lock() {
        Ok(g) => g,
        // The guarded values are plain data that stay valid after a panic elsewhere.
        Err(p) => p.into_inner(),
    }
}

/// A running HTTP server.
#[derive(Debug)]
pub struct HttpServer {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The accept thread; it joins the other http threads before it ends.
    pub join: JoinHandle<()>,
}

/// Binds `addr` and serves with [`HttpOptions::for_addr`] until `shutdown`.
///
/// # Errors
/// [`Error::HttpBind`] when the address cannot be bound; [`Error::Spawn`] if a thread fails.
pub fn start(addr: SocketAddr, state: HttpState, shutdown: Shutdown) -> Result<HttpServer, Error> {
    start_with(addr, state, HttpOptions::for_addr(addr), shutdown)
}

fn spawn(
    name: &'static str,
    thread: String,
    f: impl FnOnce() + Send + 'static,
) -> Result<JoinHandle<()>, Error> {
    std::thread::Builder::new()
        .name(thread)
        .spawn(f)
        .map_err(|e| Error::Spawn {
            name,
            kind: e.kind(),
        })
}

/// Binds `addr` and serves until `shutdown`.
///
/// # Errors
/// [`Error::HttpBind`] when the address cannot be bound; [`Error::Spawn`] if a thread fails.
pub fn start_with(
    addr: SocketAddr,
    state: HttpState,
    opts: HttpOptions,
    shutdown: Shutdown,
) -> Result<HttpServer, Error> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::HttpBind {
        addr,
        kind: e.kind(),
    })?;
    let bound = listener.local_addr().map_err(|e| Error::HttpBind {
        addr,
        kind: e.kind(),
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::HttpBind {
            addr,
            kind: e.kind(),
        })?;
    let limits = opts.limits.clone();
    let shared = Arc::new(Shared {
        limiter: Mutex::new(security::RateLimiter::new(
            limits.per_client_burst,
            limits.per_client_per_s,
        )),
        state,
        opts,
        sampler: Mutex::new(snapshot::Sampler::new()),
        backfill: Arc::new(backfill::BackfillCache::new()),
        streams: Mutex::new(Vec::with_capacity(limits.max_streams)),
        stream_count: AtomicUsize::new(0),
        last_trigger: Mutex::new(None),
        started: Instant::now(),
    });
    // Take the first sample now so the first snapshot already has a baseline.
    lock(&shared.sampler).sample(shared.state.metrics, Instant::now());

    let mut helpers = Vec::new();
    let (tx, rx) = crossbeam_channel::bounded::<(TcpStream, SocketAddr)>(limits.queue.max(1));
    for i in 0..limits.workers.max(1) {
        let (rx, shared) = (rx.clone(), Arc::clone(&shared));
        helpers.push(spawn(
            "http-worker",
            format!("http-worker-{i}"),
            move || routes::worker(&shared, &rx),
        )?);
    }
    drop(rx);
    {
        let (shared, sd) = (Arc::clone(&shared), shutdown.clone());
        helpers.push(spawn("http-sampler", "http-sampler".into(), move || {
            sse::sampler_loop(&shared, &sd)
        })?);
    }
    if let Some(target) = shared.opts.redis.clone() {
        let (cache, sd) = (Arc::clone(&shared.backfill), shutdown.clone());
        helpers.push(spawn("http-backfill", "http-backfill".into(), move || {
            backfill::watch(&target, &cache, &sd)
        })?);
    } else {
        shared.backfill.set(serde_json::json!({"state": "unavailable", "error": "backfill is not configured in this server (no Redis)"}));
    }

    let join = spawn("http", "http".into(), move || {
        log::info!(event = "http_listening", addr = bound.to_string(), exposure = shared.opts.exposure.as_str(); "status page on http://{bound}/");
        while !shutdown.is_triggered() {
            match listener.accept() {
                Ok((stream, peer)) => {
                    if let Err(crossbeam_channel::TrySendError::Full((mut stream, _))) =
                        tx.try_send((stream, peer))
                    {
                        // Every worker busy and the queue full: say so at once rather than queue
                        // without bound.
                        let _ = stream.set_nonblocking(true);
                        let _ = stream
                            .write_all(&wire::encode(&wire::Response::error(&HttpError::Busy)));
                        let _ = stream.shutdown(std::net::Shutdown::Write);
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                Err(e) => {
                    log::warn!(event = "http_accept_failed"; "{e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
            }
        }
        // Workers end when the queue's sender is gone; the others watch the shutdown flag.
        drop(tx);
        for h in helpers {
            if h.join().is_err() {
                log::error!(event = "thread_panicked", thread = "http-helper"; "an http helper thread ended in a panic");
            }
        }
    })?;
    Ok(HttpServer { addr: bound, join })
}
