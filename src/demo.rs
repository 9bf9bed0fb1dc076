//! `layer1 demo`: the whole engine on one machine. Starts the local Kafka and Redis (the
//! project's scripts), the vendor simulator (Kite and Upstox protocols on loopback), and points
//! the engine's configuration at them.

use crate::{
    error::Error,
    sim::{
        historical::{HistoricalConfig, HistoricalServer},
        SimConfig, SimHandle, Simulator,
    },
};

/// The running simulators of a demo; dropping it does not stop them, call [`Demo::shutdown`].
#[derive(Debug)]
pub struct Demo {
    /// The WebSocket simulator (Kite, Upstox, Angel, Dhan).
    pub sim: SimHandle,
    /// The historical-candle REST simulator the backfill uses.
    pub historical: HistoricalServer,
}

impl Demo {
    /// Stops both simulators.
    pub fn shutdown(self) {
        self.sim.shutdown();
        drop(self.historical);
    }
}

/// What the demo backfills: the Kite instruments of [`DEMO_SUBSCRIBE`] with their names.
pub const DEMO_BACKFILL: &str =
    "kite:408065=NSE:INFY,kite:738561=NSE:RELIANCE,kite:779521=NSE:SBIN,kite:2953217=NSE:TCS";

/// Instruments the demo subscribes when `SUBSCRIBE` is not set: NSE equities, NFO, indices on
/// Kite, and equities and an index on Upstox.
pub const DEMO_SUBSCRIBE: &str = "kite:408065,kite:738561,kite:779521,kite:2953217,kite:256265@quote,kite:260105@quote,kite:12290,\
upstox:NSE_EQ|INE002A01018,upstox:NSE_EQ|INE009A01021,upstox:NSE_INDEX|Nifty 50";

/// Brings up services and the simulator, and sets the environment the engine's configuration
/// reads (simulator URLs and its demo credentials). Call before any thread is spawned.
///
/// # Errors
/// [`Error::Services`] when Kafka, Redis or the simulator cannot start.
pub fn prepare() -> Result<Demo, Error> {
    crate::services::up()?;
    let rate = std::env::var("DEMO_TICKS_PER_SEC")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000);
    let cfg = SimConfig {
        ticks_per_sec: rate,
        ..SimConfig::default()
    };
    let sim =
        Simulator::start(cfg.clone()).map_err(|e| Error::Services(format!("simulator: {e}")))?;
    let historical = HistoricalServer::start(HistoricalConfig::default())
        .map_err(|e| Error::Services(format!("historical simulator: {e}")))?;
    let vars = [
        ("KITE_WS_URL", sim.kite_url()),
        ("KITE_API_KEY", cfg.kite_api_key.clone()),
        ("KITE_ACCESS_TOKEN", cfg.kite_access_token.clone()),
        ("UPSTOX_AUTHORIZE_URL", sim.upstox_authorize_url()),
        ("UPSTOX_ACCESS_TOKEN", cfg.upstox_access_token.clone()),
        ("KITE_API_URL", historical.base_url()),
        ("UPSTOX_API_URL", historical.base_url()),
    ];
    for (k, v) in vars {
        // Single-threaded here (before the engine starts): setting the environment is sound.
        std::env::set_var(k, v);
    }
    if std::env::var("SUBSCRIBE").map_or(true, |s| s.trim().is_empty()) {
        std::env::set_var("SUBSCRIBE", DEMO_SUBSCRIBE);
    }
    if std::env::var("BACKFILL_INSTRUMENTS").map_or(true, |s| s.trim().is_empty()) {
        std::env::set_var("BACKFILL_INSTRUMENTS", DEMO_BACKFILL);
    }
    Ok(Demo { sim, historical })
}
