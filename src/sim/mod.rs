//! The vendor simulator: real Kite and Upstox V3 servers on 127.0.0.1 with fault injection.
//!
//! [`Simulator::start`] binds its listeners (port 0 unless configured), reports their addresses in
//! the [`SimHandle`], and runs one thread with one `mio` loop serving every listener and
//! connection (the host has two cores; the simulator must not take them from the engine).
//!
//! - **Kite**: WebSocket with `api_key`/`access_token` query auth; JSON text requests
//!   (`subscribe`, `mode`, `unsubscribe`); binary multi-packet frames in ltp/quote/full for
//!   equities, F&O and indices; a 1-byte heartbeat when idle; JSON text messages.
//! - **Upstox V3**: an HTTP authorize endpoint handing out one-time WebSocket URLs; JSON requests
//!   in binary frames; protobuf `FeedResponse` (`market_info` first, with the built-in calendar's
//!   session or the statuses set by [`SimHandle::set_market_status`], which also sends them to
//!   open connections; `initial_feed` after a subscribe, then `live_feed`); WebSocket pings when
//!   idle.
//! - Optional TLS listener for Kite (self-signed certificate generated at start; its PEM is in
//!   [`SimHandle::ca_pem`]).
//!
//! Prices come from a seeded random walk ([`market`]); frames are encoded with the crate's own
//! wire encoders (`crate::parsers::{kite, upstox}`). Faults ([`Fault`]) are injected on command or
//! on a seeded schedule ([`FaultSchedule`]). The simulator records what each connection asked for
//! and how many ticks it sent per instrument ([`SimStats`]).

mod cli;
pub mod historical;
pub mod json;
mod market;
mod server;
pub mod vendors;

use std::{
    collections::HashMap,
    fmt,
    net::SocketAddr,
    sync::Arc,
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crossbeam_channel::Sender;
use thiserror::Error;

pub use cli::{run_cli, stats_json, ControlCommand};

use crate::vendor::Vendor;

/// Simulator settings. Every field has a documented default ([`Default`]).
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Seed of prices, one-time codes and scheduled faults. Default 1.
    pub seed: u64,
    /// Ticks per second per connection, spread round-robin over its subscriptions. Default 1000.
    pub ticks_per_sec: u64,
    /// Most packets (Kite) or feed entries (Upstox) per frame; at high rates frames fill up to
    /// this. Default 200.
    pub max_packets_per_frame: usize,
    /// Generation period: ticks owed are sent every this many ms. Default 1.
    pub tick_interval_ms: u64,
    /// Idle period after which a heartbeat is sent (Kite 1-byte frame, Upstox ping). Default 1000.
    pub heartbeat_ms: u64,
    /// The Kite api_key the simulator accepts. Default `sim_api_key`.
    pub kite_api_key: String,
    /// The Kite access token the simulator accepts. Default `sim_access_token`.
    pub kite_access_token: String,
    /// The Upstox bearer token the authorize endpoint accepts. Default `sim_upstox_token`.
    pub upstox_access_token: String,
    /// Kite listener port (0 = any). Default 0.
    pub kite_port: u16,
    /// Upstox WebSocket listener port (0 = any). Default 0.
    pub upstox_port: u16,
    /// Upstox authorize HTTP port (0 = any). Default 0.
    pub http_port: u16,
    /// Also serve Kite over TLS with a generated self-signed certificate for `localhost` and
    /// 127.0.0.1. Default false.
    pub tls: bool,
    /// Kite TLS port (0 = any). Default 0.
    pub tls_port: u16,
    /// Faults injected on a schedule. Default none.
    pub fault_schedule: Option<FaultSchedule>,
    /// Angel listener port (0 = any). Default 0.
    pub angel_port: u16,
    /// Dhan listener port (0 = any). Default 0.
    pub dhan_port: u16,
    /// The Angel `x-api-key` accepted. Default `sim_angel_key`.
    pub angel_api_key: String,
    /// The Angel `x-client-code` accepted. Default `SIM1`.
    pub angel_client_code: String,
    /// The Angel JWT accepted (`Authorization: Bearer <jwt>`). Default `sim_angel_jwt`.
    pub angel_jwt: String,
    /// The Angel `x-feed-token` accepted. Default `sim_angel_feed`.
    pub angel_feed_token: String,
    /// The Dhan client id accepted. Default `1000000001`.
    pub dhan_client_id: String,
    /// The Dhan access token accepted. Default `sim_dhan_token`.
    pub dhan_access_token: String,
    /// JSON feed listener port (0 = any). Default 0.
    pub json_port: u16,
    /// The JSON feed's auth header (lower-case). Default `x-api-key`.
    pub json_auth_header: String,
    /// The JSON feed's accepted auth header value. Default `sim_json_key`.
    pub json_auth_value: String,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 1,
            ticks_per_sec: 1000,
            max_packets_per_frame: 200,
            tick_interval_ms: 1,
            heartbeat_ms: 1000,
            kite_api_key: "sim_api_key".to_owned(),
            kite_access_token: "sim_access_token".to_owned(),
            upstox_access_token: "sim_upstox_token".to_owned(),
            kite_port: 0,
            upstox_port: 0,
            http_port: 0,
            tls: false,
            tls_port: 0,
            fault_schedule: None,
            angel_port: 0,
            dhan_port: 0,
            angel_api_key: "sim_angel_key".to_owned(),
            angel_client_code: "SIM1".to_owned(),
            angel_jwt: "sim_angel_jwt".to_owned(),
            angel_feed_token: "sim_angel_feed".to_owned(),
            dhan_client_id: "1000000001".to_owned(),
            dhan_access_token: "sim_dhan_token".to_owned(),
            json_port: 0,
            json_auth_header: "x-api-key".to_owned(),
            json_auth_value: "sim_json_key".to_owned(),
        }
    }
}

/// Random faults at a fixed period, drawn from `kinds` with the simulator's seeded RNG, each
/// applied to one random open connection.
#[derive(Debug, Clone)]
pub struct FaultSchedule {
    /// Period between faults in ms.
    pub every_ms: u64,
    /// The faults to draw from.
    pub kinds: Vec<ScheduledFault>,
}

/// A fault kind for [`FaultSchedule`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScheduledFault {
    /// Abrupt drop.
    Drop,
    /// Silent stall of the given ms.
    Stall(u64),
    /// One malformed frame.
    Malformed,
    /// One truncated frame.
    Truncated,
}

/// Which connections a fault hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    /// The vendor.
    pub vendor: Vendor,
    /// One connection by simulator id, or every open connection of the vendor.
    pub conn: Option<u64>,
}

impl Target {
    /// Every open connection of `vendor`.
    pub const fn all(vendor: Vendor) -> Self {
        Target { vendor, conn: None }
    }
}

/// A fault to inject now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// Close the socket without a close frame.
    Drop(Target),
    /// Send nothing (no ticks, no heartbeats) and read nothing for `ms`, TCP left open.
    Stall {
        /// Connections.
        target: Target,
        /// Duration.
        ms: u64,
    },
    /// Refuse the next `count` handshakes of `vendor` (Kite: the WebSocket upgrade; Upstox: the
    /// authorize call) with `status`, and `Retry-After: retry_after_s` when given.
    Refuse {
        /// Vendor.
        vendor: Vendor,
        /// HTTP status (429, 401, 403, 503...).
        status: u16,
        /// `Retry-After` seconds.
        retry_after_s: Option<u32>,
        /// How many handshakes.
        count: u32,
    },
    /// Send one frame of garbage.
    Malformed(Target),
    /// Send one frame whose declared content runs past its end.
    Truncated(Target),
    /// Send one binary frame of `bytes` bytes (tests the client's size limit).
    Oversize {
        /// Connections.
        target: Target,
        /// Frame size.
        bytes: usize,
    },
    /// Stop reading the client's messages for `ms` (its writes back up).
    SlowReader {
        /// Connections.
        target: Target,
        /// Duration.
        ms: u64,
    },
    /// The vendor's current token expires: open connections get a token error and are closed;
    /// from now on only `new_token` is accepted.
    ExpireToken {
        /// Vendor.
        vendor: Vendor,
        /// The token accepted from now on.
        new_token: String,
    },
}

/// One subscription request as the simulator received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubRequest {
    /// `subscribe`, `unsubscribe`, `mode` (Kite) or `sub`, `unsub`, `change_mode` (Upstox).
    pub action: String,
    /// The mode named, if any.
    pub mode: Option<String>,
    /// Instrument keys (Kite tokens in decimal).
    pub instruments: Vec<String>,
}

/// One connection's record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimConnStats {
    /// Simulator connection id (increasing, never reused).
    pub id: u64,
    /// Vendor.
    pub vendor: Vendor,
    /// Still open.
    pub open: bool,
    /// Every request received, in order.
    pub requests: Vec<SubRequest>,
    /// Instruments currently subscribed.
    pub subscribed: usize,
    /// Ticks sent on this connection.
    pub ticks_sent: u64,
    /// Data frames sent on this connection.
    pub frames_sent: u64,
}

/// A snapshot of the simulator's records.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Every connection ever accepted (handshake completed), oldest first.
    pub connections: Vec<SimConnStats>,
    /// Ticks sent per instrument key, per vendor.
    pub ticks_sent: HashMap<(Vendor, String), u64>,
    /// Handshakes (or authorize calls) refused, by fault or bad credentials.
    pub refused: u64,
    /// Upstox authorize calls answered.
    pub authorize_calls: u64,
    /// Faults applied, with the time since start in ms and a description.
    pub faults: Vec<(u64, String)>,
}

impl SimStats {
    /// Connections of `vendor` currently open.
    pub fn open(&self, vendor: Vendor) -> usize {
        self.connections
            .iter()
            .filter(|c| c.vendor == vendor && c.open)
            .count()
    }
}

/// Simulator errors.
#[derive(Debug, Error)]
pub enum SimError {
    /// Binding, polling or spawning failed.
    #[error("simulator io: {0}")]
    Io(#[from] std::io::Error),
    /// The TLS certificate or server config could not be built.
    #[error("simulator tls: {0}")]
    Tls(String),
    /// The simulator thread is gone.
    #[error("simulator not running")]
    NotRunning,
    /// The simulator did not answer in time.
    #[error("simulator timeout")]
    Timeout,
    /// A command-line argument was not understood.
    #[error("simulator usage: {0}")]
    Usage(String),
}

impl SimError {
    /// A stable code for logs.
    pub const fn code(&self) -> &'static str {
        match self {
            SimError::Io(_) => "SIM_IO",
            SimError::Tls(_) => "SIM_TLS",
            SimError::NotRunning => "SIM_NOT_RUNNING",
            SimError::Timeout => "SIM_TIMEOUT",
            SimError::Usage(_) => "SIM_USAGE",
        }
    }
}

pub(crate) enum SimCommand {
    Fault(Fault),
    MarketInfo(Vec<(String, crate::parsers::MarketStatus)>),
    SetRate(u64),
    Stats(Sender<SimStats>),
    Shutdown,
}

/// Entry point.
#[derive(Debug)]
pub struct Simulator;

impl Simulator {
    /// Binds the listeners on 127.0.0.1 and starts the simulator thread.
    ///
    /// # Errors
    /// [`SimError::Io`] when a port cannot be bound; [`SimError::Tls`] when TLS was asked for and
    /// the certificate could not be generated.
    pub fn start(config: SimConfig) -> Result<SimHandle, SimError> {
        server::start(config)
    }
}

/// A running simulator. Dropping it stops the thread.
pub struct SimHandle {
    /// Kite WebSocket address.
    pub kite_addr: SocketAddr,
    /// Upstox WebSocket address (reached through the one-time URL).
    pub upstox_addr: SocketAddr,
    /// Upstox authorize HTTP address.
    pub http_addr: SocketAddr,
    /// Kite TLS address, when enabled.
    pub kite_tls_addr: Option<SocketAddr>,
    /// The self-signed certificate (PEM) to trust for the TLS listener.
    pub ca_pem: Option<Vec<u8>>,
    /// Angel SmartAPI stream address.
    pub angel_addr: SocketAddr,
    /// Dhan feed address.
    pub dhan_addr: SocketAddr,
    /// JSON feed address.
    pub json_addr: SocketAddr,
    pub(crate) tx: Sender<SimCommand>,
    pub(crate) waker: Arc<mio::Waker>,
    pub(crate) join: Option<JoinHandle<()>>,
}

impl fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimHandle")
            .field("kite_addr", &self.kite_addr)
            .field("upstox_addr", &self.upstox_addr)
            .field("http_addr", &self.http_addr)
            .field("kite_tls_addr", &self.kite_tls_addr)
            .finish()
    }
}

impl SimHandle {
    fn send(&self, cmd: SimCommand) -> Result<(), SimError> {
        self.tx.send(cmd).map_err(|_| SimError::NotRunning)?;
        self.waker.wake().map_err(SimError::Io)
    }

    /// The Kite base URL (`ws://127.0.0.1:port/`).
    pub fn kite_url(&self) -> String {
        format!("ws://{}/", self.kite_addr)
    }

    /// The Kite TLS base URL (`wss://localhost:port/`), when enabled.
    pub fn kite_tls_url(&self) -> Option<String> {
        self.kite_tls_addr
            .map(|a| format!("wss://localhost:{}/", a.port()))
    }

    /// The Upstox authorize URL.
    pub fn upstox_authorize_url(&self) -> String {
        format!(
            "http://{}/v3/feed/market-data-feed/authorize",
            self.http_addr
        )
    }

    /// The Angel stream URL (`ws://127.0.0.1:port/smart-stream`).
    pub fn angel_url(&self) -> String {
        format!("ws://{}/smart-stream", self.angel_addr)
    }

    /// The Dhan feed base URL (`ws://127.0.0.1:port/`).
    pub fn dhan_url(&self) -> String {
        format!("ws://{}/", self.dhan_addr)
    }

    /// The JSON feed URL (`ws://127.0.0.1:port/feed`).
    pub fn json_url(&self) -> String {
        format!("ws://{}/feed", self.json_addr)
    }

    /// The URL of `vendor`'s instrument list, served in the vendor's own format.
    pub fn instruments_url(&self, vendor: Vendor) -> String {
        format!("http://{}/instruments/{}", self.http_addr, vendor.as_str())
    }

    /// Injects a fault now.
    ///
    /// # Errors
    /// [`SimError::NotRunning`] when the simulator stopped.
    pub fn inject(&self, fault: Fault) -> Result<(), SimError> {
        self.send(SimCommand::Fault(fault))
    }

    /// Sets the Upstox segment statuses: sent now as a `market_info` message on every open
    /// Upstox connection, and as the greeting of every later one (until set again). Before the
    /// first call the greeting follows the built-in exchange calendar.
    ///
    /// # Errors
    /// [`SimError::NotRunning`] when the simulator stopped.
    pub fn set_market_status(
        &self,
        statuses: &[(&str, crate::parsers::MarketStatus)],
    ) -> Result<(), SimError> {
        self.send(SimCommand::MarketInfo(
            statuses
                .iter()
                .map(|(s, st)| ((*s).to_owned(), *st))
                .collect(),
        ))
    }

    /// Changes the tick rate per connection.
    ///
    /// # Errors
    /// [`SimError::NotRunning`] when the simulator stopped.
    pub fn set_rate(&self, ticks_per_sec: u64) -> Result<(), SimError> {
        self.send(SimCommand::SetRate(ticks_per_sec))
    }

    /// A snapshot of the records.
    ///
    /// # Errors
    /// [`SimError::NotRunning`] or [`SimError::Timeout`] (2 s).
    pub fn stats(&self) -> Result<SimStats, SimError> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.send(SimCommand::Stats(tx))?;
        rx.recv_timeout(Duration::from_secs(2))
            .map_err(|_| SimError::Timeout)
    }

    /// Stops the thread and joins it (bounded by 5 s).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.send(SimCommand::Shutdown);
        if let Some(j) = self.join.take() {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !j.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(2));
            }
            if j.is_finished() {
                let _ = j.join();
            }
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        self.stop();
    }
}
