//! Feed threads: self-healing vendor WebSockets driven by one `mio::Poll` per thread.
//!
//! This module owns the connection layer: the public types a caller needs to start feed threads
//! ([`spawn_feed_thread`], [`FeedSettings`], [`FeedSpec`]), the [`Connector`] trait every vendor
//! implements ([`kite::KiteConnector`], [`upstox::UpstoxConnector`]), and the hand-off to the
//! parser ([`FrameHandler`]).
//!
//! Thread model: a feed thread owns one `mio::Poll`, every connection of the feeds it was given,
//! a timer heap (heartbeats, stale watchdogs, backoff, connect timeouts) whose next deadline is the
//! poll timeout, and a `mio::Waker` through which [`FeedControl`] delivers commands. Work that may
//! block (Upstox's authorize REST call, DNS) runs on one small helper thread per feed thread and
//! comes back over a channel plus the waker. Nothing in the loop sleeps.
//!
//! Hot path: a readable event drains the socket until `WouldBlock`. tungstenite performs only the
//! HTTP upgrade; after it our own RFC 6455 reader ([`ws`]) reads into one reusable buffer per
//! connection and hands each complete message to [`FrameHandler::on_frame`] as a slice of that
//! buffer (no copy, no allocation). Each read syscall that returns data takes one receive
//! timestamp, shared by the frames its bytes completed.

pub mod ages;
pub mod angel;
pub mod auth;
pub mod backoff;
pub mod dhan;
mod event_loop;
pub mod json;
pub mod kite;
pub mod metrics;
mod timers;
mod tls;
pub mod upstox;
pub mod ws;

use std::{
    fmt,
    path::PathBuf,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::Sender;
use thiserror::Error;

pub use crate::parsers::FrameKind;
pub use crate::tick::Mode;
pub use crate::vendor::Vendor;
pub use ages::InstrumentAges;
pub use metrics::FeedMetrics;
pub use tungstenite::Message;

/// What the parser is told about each frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameMeta {
    /// Connection id: `(thread index << 8) | connection index within the thread`.
    pub conn: u16,
    /// The vendor the frame came from.
    pub vendor: Vendor,
    /// Binary or text.
    pub kind: FrameKind,
    /// Unix nanoseconds, read once per read syscall that returned data: the time of the read
    /// that delivered the frame's last byte (frames completed by the same read share it).
    pub received_at_ns: u64,
}

/// The explicit state of one connection, as logged and exported as a metric (the value is the
/// gauge value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ConnState {
    /// Preparing credentials, resolving, TCP/TLS/WebSocket handshake in progress.
    Connecting = 0,
    /// Handshake done; subscriptions sent; frames flow.
    Open = 1,
    /// The watchdog saw no message for the stale limit; the connection is being torn down.
    Stale = 2,
    /// Waiting for the backoff (or `Retry-After`) deadline before the next attempt.
    BackingOff = 3,
    /// Shut down; no further attempts.
    Closed = 4,
}

impl ConnState {
    /// The lower-case name used in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            ConnState::Connecting => "connecting",
            ConnState::Open => "open",
            ConnState::Stale => "stale",
            ConnState::BackingOff => "backing_off",
            ConnState::Closed => "closed",
        }
    }
}

/// A connection-level event, delivered to [`FrameHandler::on_event`] on the feed thread. Rare by
/// construction (state changes), so it may carry small values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A connection changed state.
    State {
        /// Connection id.
        conn: u16,
        /// Vendor.
        vendor: Vendor,
        /// The new state.
        state: ConnState,
    },
    /// The subscription set of a connection was (re)sent after it opened or changed.
    Subscribed {
        /// Connection id.
        conn: u16,
        /// Vendor.
        vendor: Vendor,
        /// Instruments sent in this replay.
        instruments: usize,
    },
    /// An attempt failed or an open connection was lost; a retry is scheduled.
    Disconnected {
        /// Connection id.
        conn: u16,
        /// Vendor.
        vendor: Vendor,
        /// Stable error code ([`ConnectError::code`]).
        reason: &'static str,
        /// Delay before the next attempt, in milliseconds.
        retry_in_ms: u64,
        /// Consecutive failed attempts (reset only after real data).
        attempt: u32,
    },
    /// The stale watchdog fired.
    Stale {
        /// Connection id.
        conn: u16,
        /// Vendor.
        vendor: Vendor,
        /// Milliseconds since the last message of any kind.
        silent_ms: u64,
    },
    /// Instruments could not be placed: every allowed connection of the feed is at its cap.
    CapacityExceeded {
        /// Vendor.
        vendor: Vendor,
        /// How many instruments were refused.
        refused: usize,
    },
}

/// Receives every complete frame and every connection event of one feed thread.
///
/// Called on the feed thread: `on_frame` must not block (push into a bounded queue and count what
/// does not fit). The payload borrows the connection's read buffer, which the next read reuses:
/// copy what must outlive the call (the pipeline copies raw frames into pooled buffers).
///
/// A frame is delivered in two calls: `on_frame` for what is latency-bound (its ticks), then
/// `after_frame` for the rest (the raw copy, bookkeeping). The event loop makes the `on_frame`
/// calls of every frame one socket read completed first, then their `after_frame` calls, in the
/// same order, so a frame's ticks never wait for the bookkeeping of the frames before it in the
/// read. A caller with one frame at a time uses [`FrameHandler::frame`].
pub trait FrameHandler {
    /// One complete WebSocket data message (reassembled if it came in fragments): its ticks.
    fn on_frame(&mut self, meta: &FrameMeta, payload: &[u8]);
    /// The same message again, with the same bytes, once the messages read with it have had
    /// `on_frame`: what can wait (default: nothing).
    fn after_frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        let _ = (meta, payload);
    }
    /// Both calls for one message.
    fn frame(&mut self, meta: &FrameMeta, payload: &[u8]) {
        self.on_frame(meta, payload);
        self.after_frame(meta, payload);
    }
    /// A connection event.
    fn on_event(&mut self, ev: &FeedEvent);
}

/// One desired subscription.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Instrument {
    /// The numeric id: Kite's instrument token; for Upstox an id assigned by configuration.
    /// Unique within a feed.
    pub id: u32,
    /// The vendor's textual key where it has one (Upstox `NSE_EQ|INE002A01018`); empty for Kite.
    pub key: Box<str>,
    /// The requested mode.
    pub mode: Mode,
}

impl Instrument {
    /// A Kite instrument (the key is the token itself).
    pub fn kite(token: u32, mode: Mode) -> Self {
        Instrument {
            id: token,
            key: Box::from(""),
            mode,
        }
    }

    /// An Upstox instrument with its instrument key.
    pub fn upstox(id: u32, key: &str, mode: Mode) -> Self {
        Instrument {
            id,
            key: Box::from(key),
            mode,
        }
    }
}

/// What a connector produces before every attempt: the URL (credentials included where the
/// vendor wants them in the query) and extra handshake headers.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectRequest {
    /// `ws://` or `wss://` URL.
    pub url: String,
    /// Extra HTTP headers for the upgrade request.
    pub headers: Vec<(String, String)>,
}

impl fmt::Debug for ConnectRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print credentials: the URL is redacted and header values are hidden.
        f.debug_struct("ConnectRequest")
            .field("url", &crate::redact::redact_url(&self.url))
            .field("headers", &self.headers.len())
            .finish()
    }
}

/// Work that may block (REST, file reads over NFS, DNS) and so runs on the helper thread.
pub type DeferredRequest = Box<dyn FnOnce() -> Result<ConnectRequest, ConnectError> + Send>;

/// The outcome of [`Connector::connect_request`].
pub enum Prepare {
    /// The request is ready now (cheap to build: environment variable or small token file).
    Ready(ConnectRequest),
    /// Run this on the feed thread's helper thread; the loop waits for it without blocking.
    Deferred(DeferredRequest),
}

impl fmt::Debug for Prepare {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Prepare::Ready(r) => f.debug_tuple("Ready").field(r).finish(),
            Prepare::Deferred(_) => f.write_str("Deferred(..)"),
        }
    }
}

/// Per-vendor limits the subscription registry and the loop obey.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectorCaps {
    /// Instruments one connection may carry (Kite 3000, Upstox full mode 2000).
    pub max_instruments_per_conn: usize,
    /// Instruments per subscribe request message.
    pub subscribe_batch: usize,
    /// Connections this feed may open (Kite 3 per api_key, Upstox 1 per app and user).
    pub max_connections: usize,
}

/// A vendor's connection recipe. One instance per feed; it lives on the feed thread.
pub trait Connector: Send {
    /// The vendor.
    fn vendor(&self) -> Vendor;
    /// Limits for the registry.
    fn caps(&self) -> ConnectorCaps;
    /// Produces the request for the next attempt, reading credentials afresh each time so a
    /// rotated token is used without a restart.
    ///
    /// # Errors
    /// [`ConnectError::Credentials`] when a credential cannot be read; the loop backs off.
    fn connect_request(&mut self) -> Result<Prepare, ConnectError>;
    /// Appends the messages that subscribe `instruments` (in vendor-sized batches) to `out`.
    fn subscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>);
    /// Appends the messages that unsubscribe `instruments` to `out`.
    fn unsubscribe_messages(&self, instruments: &[Instrument], out: &mut Vec<Message>);
    /// The application-level heartbeat the client sends, if any.
    fn heartbeat(&self) -> Option<Message>;
    /// Whether a frame is real market data (resets the backoff attempt counter), as opposed to
    /// a heartbeat or a control message. Default: any binary frame longer than one byte.
    fn is_data(&self, kind: FrameKind, payload: &[u8]) -> bool {
        kind == FrameKind::Binary && payload.len() > 1
    }
    /// The handshake was refused with 401/403: drop any cached credential so the next
    /// [`Connector::connect_request`] reads it again.
    fn credentials_rejected(&mut self) {}
}

/// Where a credential comes from. Read afresh before every connection attempt.
#[derive(Clone, PartialEq, Eq)]
pub enum Credential {
    /// A fixed value (tests, or a value the caller refreshes by other means).
    Value(String),
    /// An environment variable, read at each attempt.
    Env(String),
    /// A file whose trimmed content is the value, read at each attempt (daily token rotation
    /// writes a new file).
    File(PathBuf),
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Credential::Value(_) => f.write_str("Value(***)"),
            Credential::Env(v) => f.debug_tuple("Env").field(v).finish(),
            Credential::File(p) => f.debug_tuple("File").field(p).finish(),
        }
    }
}

impl Credential {
    /// The current value.
    ///
    /// # Errors
    /// [`ConnectError::Credentials`] when the variable is unset or empty or the file unreadable.
    pub fn read(&self) -> Result<String, ConnectError> {
        let v = match self {
            Credential::Value(v) => v.clone(),
            Credential::Env(name) => std::env::var(name)
                .map_err(|_| ConnectError::Credentials("environment variable unset"))?,
            Credential::File(path) => std::fs::read_to_string(path)
                .map_err(|_| ConnectError::Credentials("token file unreadable"))?,
        };
        let v = v.trim().to_owned();
        if v.is_empty() {
            return Err(ConnectError::Credentials("credential empty"));
        }
        // A rotated token read from a file or the environment is a secret the configuration
        // never saw: register it so the redactor masks it like the configured ones.
        crate::redact::register_secret(&v);
        Ok(v)
    }
}

/// Why a connection attempt failed or an open connection was lost. Every variant is retried;
/// none ends the thread.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConnectError {
    /// A credential could not be read.
    #[error("credentials: {0}")]
    Credentials(&'static str),
    /// The URL is not a valid `ws://`/`wss://` URL.
    #[error("invalid url")]
    Url,
    /// Name resolution failed.
    #[error("resolve failed")]
    Resolve,
    /// TCP connect or socket I/O failed.
    #[error("io: {0}")]
    Io(std::io::ErrorKind),
    /// The TLS layer failed (certificate, protocol).
    #[error("tls failure")]
    Tls,
    /// The handshake was refused with 401 or 403.
    #[error("unauthorized (http {0})")]
    Unauthorized(u16),
    /// The handshake or REST call was refused with 429.
    #[error("rate limited, retry after {retry_after_ms:?} ms")]
    RateLimited {
        /// The server's `Retry-After`, if it gave one.
        retry_after_ms: Option<u64>,
    },
    /// Any other HTTP status on the handshake or authorize call.
    #[error("http status {0}")]
    Http(u16),
    /// The WebSocket protocol was violated, or the peer closed.
    #[error("websocket protocol: {0}")]
    Protocol(&'static str),
    /// A frame exceeded the configured size limit and was refused.
    #[error("frame over size limit")]
    FrameTooLarge,
    /// The connect (TCP + TLS + WebSocket) did not finish in time.
    #[error("connect timeout")]
    Timeout,
    /// The stale watchdog fired.
    #[error("stale: no message within the limit")]
    Stale,
    /// The peer closed the connection.
    #[error("closed by peer")]
    Closed,
}

impl ConnectError {
    /// A stable code for logs and metrics.
    pub const fn code(&self) -> &'static str {
        match self {
            ConnectError::Credentials(_) => "CONN_CREDENTIALS",
            ConnectError::Url => "CONN_URL",
            ConnectError::Resolve => "CONN_RESOLVE",
            ConnectError::Io(_) => "CONN_IO",
            ConnectError::Tls => "CONN_TLS",
            ConnectError::Unauthorized(_) => "CONN_UNAUTHORIZED",
            ConnectError::RateLimited { .. } => "CONN_RATE_LIMITED",
            ConnectError::Http(_) => "CONN_HTTP",
            ConnectError::Protocol(_) => "CONN_PROTOCOL",
            ConnectError::FrameTooLarge => "CONN_FRAME_TOO_LARGE",
            ConnectError::Timeout => "CONN_TIMEOUT",
            ConnectError::Stale => "CONN_STALE",
            ConnectError::Closed => "CONN_CLOSED",
        }
    }
}

/// Errors starting or stopping a feed thread.
#[derive(Debug, Error)]
pub enum FeedError {
    /// Creating the poll, waker or thread failed.
    #[error("feed thread setup: {0}")]
    Setup(#[from] std::io::Error),
    /// The TLS configuration could not be built (bad extra root certificate).
    #[error("tls configuration: {0}")]
    TlsConfig(String),
    /// The thread did not stop within the timeout.
    #[error("feed thread did not stop within the timeout")]
    JoinTimeout,
    /// The thread panicked.
    #[error("feed thread panicked")]
    Panicked,
    /// The thread is gone; the command was not delivered.
    #[error("feed thread not running")]
    NotRunning,
}

impl FeedError {
    /// A stable code for logs and metrics.
    pub const fn code(&self) -> &'static str {
        match self {
            FeedError::Setup(_) => "FEED_SETUP",
            FeedError::TlsConfig(_) => "FEED_TLS_CONFIG",
            FeedError::JoinTimeout => "FEED_JOIN_TIMEOUT",
            FeedError::Panicked => "FEED_PANICKED",
            FeedError::NotRunning => "FEED_NOT_RUNNING",
        }
    }
}

/// Whether the market is open now. Outside market hours silence is expected, so the watchdog
/// uses [`FeedSettings::closed_stale_ms`] instead of [`FeedSettings::stale_ms`].
pub type MarketOpenFn = fn() -> bool;

/// The default [`MarketOpenFn`]: always open (a proper exchange calendar comes later).
pub fn always_open() -> bool {
    true
}

/// The largest WebSocket message a feed accepts by default ([`FeedSettings::max_message_bytes`]).
/// The producer's record limit ([`crate::producer::MAX_RECORD_BYTES`]) is sized from it.
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;

/// Settings of one feed thread. Every field has a documented default ([`Default`]).
#[derive(Debug, Clone)]
pub struct FeedSettings {
    /// Thread name. Default `feed-0`.
    pub name: String,
    /// Thread index, the high byte of connection ids. Default 0.
    pub thread_index: u8,
    /// Core to pin the thread to; `None` leaves it unpinned. A core that is not allowed is
    /// logged as a warning and the thread runs unpinned. Default `None`.
    pub core: Option<usize>,
    /// `SCHED_FIFO` priority for the thread; `None` keeps normal scheduling. A refusal by the
    /// host is logged as an error and the thread runs on normally. Default `None`.
    pub rt_priority: Option<u8>,
    /// Poll the sockets without ever sleeping in `epoll_wait` (a zero timeout), so the thread
    /// keeps its core, caches and TLB warm between frames and no wake-up stands between a
    /// frame's arrival and its read. It takes the whole core: for a core of its own, under
    /// normal scheduling (a spinning `SCHED_FIFO` thread is throttled by the kernel). Default
    /// false.
    pub busy_poll: bool,
    /// Backoff base delay in ms (full jitter: delay uniform in `[0, min(cap, base * 2^n)]`).
    /// Default 1000.
    pub backoff_base_ms: u64,
    /// Backoff cap in ms. Default 30 000.
    pub backoff_cap_ms: u64,
    /// While the market is open, a connection with no message of any kind for this long is
    /// closed and reconnected. Default 5000 (the official Kite clients use 5 s).
    pub stale_ms: u64,
    /// The stale limit outside market hours, when silence is normal. Our heartbeat pings keep a
    /// healthy connection answering with pongs, so only a dead one trips it. Default 120 000.
    pub closed_stale_ms: u64,
    /// Interval of the client's application-level heartbeat. Default 2500.
    pub heartbeat_ms: u64,
    /// Limit for TCP connect + TLS + WebSocket handshake. Default 10 000.
    pub connect_timeout_ms: u64,
    /// Largest WebSocket message accepted; larger ones are refused from the header, before any
    /// buffering, and the connection is recycled. Default 4 MiB (a full Kite frame of 3000
    /// instruments in full mode is 552 KB).
    pub max_message_bytes: usize,
    /// Initial read buffer per connection; it grows to the largest frame seen (at most
    /// `max_message_bytes`) and is reused. Default 128 KiB.
    pub read_buffer_bytes: usize,
    /// Cap on queued outgoing bytes per connection. Default 4 MiB.
    pub max_write_buffer_bytes: usize,
    /// Frames read from one connection before the loop serves the others (the connection is
    /// revisited without waiting for a new event). Default 1024.
    pub max_frames_per_turn: usize,
    /// Extra PEM root certificates trusted for `wss://` (a test simulator's CA). Default none.
    pub extra_root_certs_pem: Vec<u8>,
    /// Market-hours input. Default [`always_open`].
    pub market_open: MarketOpenFn,
    /// Seed for backoff jitter; `None` seeds from the clock. Default `None`.
    pub jitter_seed: Option<u64>,
    /// Interval for refreshing the last-message-age gauges. Default 1000.
    pub metrics_refresh_ms: u64,
}

impl Default for FeedSettings {
    fn default() -> Self {
        FeedSettings {
            name: "feed-0".to_owned(),
            thread_index: 0,
            core: None,
            rt_priority: None,
            busy_poll: false,
            backoff_base_ms: 1000,
            backoff_cap_ms: 30_000,
            stale_ms: 5000,
            closed_stale_ms: 120_000,
            heartbeat_ms: 2500,
            connect_timeout_ms: 10_000,
            max_message_bytes: MAX_MESSAGE_BYTES,
            read_buffer_bytes: 128 << 10,
            max_write_buffer_bytes: 4 << 20,
            max_frames_per_turn: 1024,
            extra_root_certs_pem: Vec::new(),
            market_open: always_open,
            jitter_seed: None,
            metrics_refresh_ms: 1000,
        }
    }
}

/// One feed on a thread: a connector and its initial instruments.
pub struct FeedSpec {
    /// The vendor recipe.
    pub connector: Box<dyn Connector>,
    /// Instruments to subscribe from the start.
    pub instruments: Vec<Instrument>,
    /// Optional shared per-instrument age table; the feed registers every subscribed id in it
    /// and the frame handler touches it as ticks are parsed.
    pub ages: Option<Arc<InstrumentAges>>,
}

impl fmt::Debug for FeedSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedSpec")
            .field("vendor", &self.connector.vendor())
            .field("instruments", &self.instruments.len())
            .finish()
    }
}

/// Counters a feed thread publishes for tests and the status page (relaxed atomics, updated once
/// per read batch or state change).
#[derive(Debug, Default)]
pub struct FeedStats {
    /// Connections currently open.
    pub open_connections: AtomicU64,
    /// Connection slots (open or not).
    pub connections: AtomicU64,
    /// Sockets currently allocated (connecting, handshaking or open).
    pub sockets: AtomicU64,
    /// Timer entries pending in the loop's heap.
    pub timers_pending: AtomicU64,
    /// Frames handed to the handler.
    pub frames: AtomicU64,
    /// Payload bytes handed to the handler.
    pub bytes: AtomicU64,
    /// Connection attempts started.
    pub attempts: AtomicU64,
    /// Reconnects (attempts after the first per connection).
    pub reconnects: AtomicU64,
    /// Stale watchdog firings.
    pub stale_events: AtomicU64,
    /// Frames refused for size.
    pub refused_frames: AtomicU64,
    /// Connections ended by a server frame that broke RFC 6455 or a size limit (`WS_*` codes in
    /// `docs/errors.md`; oversized frames are also in `refused_frames`).
    pub frame_errors: AtomicU64,
    /// Loop iterations (for idle-spin detection in tests).
    pub loop_turns: AtomicU64,
}

impl FeedStats {
    /// Reads one counter.
    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

pub(crate) enum Command {
    Subscribe {
        feed: usize,
        instruments: Vec<Instrument>,
    },
    Unsubscribe {
        feed: usize,
        ids: Vec<u32>,
    },
    /// Drop every connection of the thread now and reconnect (operator action).
    ReconnectAll,
    Shutdown,
}

/// A cloneable handle that sends commands to a feed thread and wakes its loop.
#[derive(Clone)]
pub struct FeedControl {
    tx: Sender<Command>,
    waker: Arc<mio::Waker>,
}

impl fmt::Debug for FeedControl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FeedControl")
    }
}

impl FeedControl {
    fn send(&self, cmd: Command) -> Result<(), FeedError> {
        self.tx.send(cmd).map_err(|_| FeedError::NotRunning)?;
        self.waker.wake().map_err(FeedError::Setup)
    }

    /// Adds instruments to feed number `feed` (index into the specs given at spawn); they are
    /// placed on connections with room, opening new connections up to the vendor limit.
    ///
    /// # Errors
    /// [`FeedError::NotRunning`] when the thread has stopped.
    pub fn subscribe(&self, feed: usize, instruments: Vec<Instrument>) -> Result<(), FeedError> {
        self.send(Command::Subscribe { feed, instruments })
    }

    /// Removes instruments (by id) from feed number `feed`.
    ///
    /// # Errors
    /// [`FeedError::NotRunning`] when the thread has stopped.
    pub fn unsubscribe(&self, feed: usize, ids: Vec<u32>) -> Result<(), FeedError> {
        self.send(Command::Unsubscribe { feed, ids })
    }

    /// Drops every connection and reconnects them (subscriptions replayed).
    ///
    /// # Errors
    /// [`FeedError::NotRunning`] when the thread has stopped.
    pub fn reconnect_all(&self) -> Result<(), FeedError> {
        self.send(Command::ReconnectAll)
    }

    /// Asks the thread to close its connections and exit.
    ///
    /// # Errors
    /// [`FeedError::NotRunning`] when the thread has already stopped.
    pub fn shutdown(&self) -> Result<(), FeedError> {
        self.send(Command::Shutdown)
    }
}

/// A running feed thread. Dropping it without [`FeedThread::shutdown`] detaches the thread; call
/// `shutdown` to stop it and get the handler back.
pub struct FeedThread<H> {
    join: JoinHandle<H>,
    control: FeedControl,
    stats: Arc<FeedStats>,
}

impl<H> fmt::Debug for FeedThread<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FeedThread")
            .field("stats", &self.stats)
            .finish()
    }
}

impl<H> FeedThread<H> {
    /// A command handle.
    pub fn control(&self) -> FeedControl {
        self.control.clone()
    }

    /// The thread's live counters.
    pub fn stats(&self) -> &Arc<FeedStats> {
        &self.stats
    }

    /// Stops the thread (connections closed with a close frame, best effort) and joins it within
    /// `timeout`, returning the handler.
    ///
    /// # Errors
    /// [`FeedError::JoinTimeout`] if it does not stop in time (the thread is left detached),
    /// [`FeedError::Panicked`] if it panicked.
    pub fn shutdown(self, timeout: Duration) -> Result<H, FeedError> {
        // A thread that already exited has dropped its receiver; joining is all that is left.
        let _ = self.control.shutdown();
        let deadline = Instant::now() + timeout;
        while !self.join.is_finished() {
            if Instant::now() >= deadline {
                return Err(FeedError::JoinTimeout);
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        self.join.join().map_err(|_| FeedError::Panicked)
    }
}

/// Starts a feed thread serving `feeds`, handing frames and events to `handler`.
///
/// # Errors
/// [`FeedError::Setup`] when the poll, waker or thread cannot be created;
/// [`FeedError::TlsConfig`] when `settings.extra_root_certs_pem` does not parse.
pub fn spawn_feed_thread<H>(
    settings: FeedSettings,
    feeds: Vec<FeedSpec>,
    handler: H,
    metrics: Option<FeedMetrics>,
) -> Result<FeedThread<H>, FeedError>
where
    H: FrameHandler + Send + 'static,
{
    let tls = tls::client_config(&settings.extra_root_certs_pem)?;
    let poll = mio::Poll::new()?;
    let waker = Arc::new(mio::Waker::new(poll.registry(), event_loop::WAKER_TOKEN)?);
    // Bounded: commands are rare; a full queue means the thread is wedged, reported as an error.
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let stats = Arc::new(FeedStats::default());
    let control = FeedControl {
        tx,
        waker: Arc::clone(&waker),
    };
    let name = settings.name.clone();
    let rt = (name.clone(), settings.rt_priority);
    let lp = event_loop::FeedLoop::new(
        settings,
        poll,
        waker,
        rx,
        feeds,
        tls,
        metrics,
        Arc::clone(&stats),
    );
    let join = std::thread::Builder::new().name(name).spawn(move || {
        // Before the loop (which pins the thread): the policy holds for the thread's life.
        crate::affinity::apply_realtime(&rt.0, rt.1);
        lp.run(handler)
    })?;
    Ok(FeedThread {
        join,
        control,
        stats,
    })
}

/// Unix nanoseconds (the receive timestamp; one read per batch).
pub(crate) fn now_unix_ns() -> u64 {
    crate::clock::now_unix_ns()
}
