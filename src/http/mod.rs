//! The HTTP surface on the metrics thread: Prometheus text, health and readiness, the status
//! page with its JSON API and live stream, and the **Trigger Backfill** command.
//!
//! | route | does |
//! |---|---|
//! | `GET /metrics` | Prometheus text of the process registry |
//! | `GET /health`, `/health/live`, `/health/ready` | liveness; readiness = Kafka reachable and, during market hours, every configured feed connected with its credentials accepted (the body says what is not, and carries every vendor's credential status) |
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
    feed::auth::AuthState,
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

/// Where the credential status of each vendor comes from: `(vendor, state, refusals since
/// start)` ([`crate::feed::auth::snapshot`] in the engine; a fixed list in tests).
pub type AuthSource = fn() -> Vec<(Vendor, AuthState, u64)>;

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
    /// Vendor credential status, shown in `/health/ready` and the page; a refusal makes the
    /// engine not ready during market hours.
    pub auth: AuthSource,
    /// Client bounds.
    pub limits: Limits,
}

impl HttpOptions {
    /// Defaults for a server on `addr`: the global status registry, loopback or (tokenless,
    /// so `POST` always refused) remote by address, no Redis, the IST-hours fallback market, no
    /// configured feeds, 5 s stale limit, the process's vendor credential table.
    pub fn for_addr(addr: SocketAddr) -> HttpOptions {
        HttpOptions {
            status: crate::status::global(),
            exposure: Exposure::for_addr(addr, None),
            redis: None,
            market: MarketSource::ist_hours_only(),
            feeds: Vec::new(),
            stale_after: Duration::from_secs(5),
            auth: crate::feed::auth::snapshot,
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

#[cfg(test)]
mod tests {
    use std::{
        io::{Read, Write},
        net::TcpStream,
    };

    use super::*;
    use crate::status::MarketPhase;

    fn refused_upstox() -> Vec<(Vendor, AuthState, u64)> {
        vec![
            (Vendor::Kite, AuthState::Ok, 0),
            (Vendor::Upstox, AuthState::Failed, 3),
            (Vendor::Angel, AuthState::Unknown, 0),
        ]
    }

    fn get(addr: SocketAddr, path: &str) -> (u16, serde_json::Value) {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
            .unwrap();
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw).into_owned();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, serde_json::from_str(body).unwrap())
    }

    /// Starts a server whose credential table says Upstox refused our token, in `phase`.
    fn server(phase: MarketPhase) -> (SocketAddr, &'static Metrics, Shutdown, JoinHandle<()>) {
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new().unwrap()));
        metrics.kafka_up.set(1);
        let addr: SocketAddr = "127.0.0.1:0".parse().unwrap();
        let mut opts = HttpOptions::for_addr(addr);
        opts.status = Box::leak(Box::new(StatusRegistry::new()));
        opts.market = MarketSource::new("test", move |_| phase);
        opts.auth = refused_upstox;
        let shutdown = Shutdown::new();
        let HttpServer { addr, join } = start_with(
            addr,
            HttpState {
                metrics,
                version: "test",
            },
            opts,
            shutdown.clone(),
        )
        .unwrap();
        (addr, metrics, shutdown, join)
    }

    #[test]
    fn a_refused_token_makes_the_engine_unready_during_market_hours() {
        let (addr, _, shutdown, join) = server(MarketPhase::Open);
        let (status, body) = get(addr, "/health/ready");
        assert_eq!(status, 503, "{body}");
        let reasons = body["reasons"].to_string();
        assert!(
            reasons.contains("upstox: credentials refused (3 refusals"),
            "{body}"
        );
        assert!(!reasons.contains("kite: credentials"), "{body}");
        assert_eq!(body["auth"]["upstox"]["state"], "auth_failed");
        assert_eq!(body["auth"]["upstox"]["failures"], 3);
        assert_eq!(body["auth"]["kite"]["state"], "ok");
        // Vendors without a verdict are left out.
        assert!(body["auth"].get("angel").is_none(), "{body}");
        shutdown.trigger();
        join.join().unwrap();
    }

    #[test]
    fn outside_market_hours_a_refused_token_is_shown_but_not_unready() {
        let (addr, _, shutdown, join) = server(MarketPhase::Closed);
        let (status, body) = get(addr, "/health/ready");
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["auth"]["upstox"]["state"], "auth_failed");
        // The page lists it among the things needing attention.
        let (status, snap) = get(addr, "/api/status");
        assert_eq!(status, 200);
        assert_eq!(snap["health"]["ready"], true, "{snap}");
        assert!(
            snap["health"]["reasons"]
                .to_string()
                .contains("upstox: credentials refused"),
            "{snap}"
        );
        shutdown.trigger();
        join.join().unwrap();
    }
}
