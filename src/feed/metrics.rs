//! Prometheus metrics of the feed threads.
//!
//! One [`FeedMetrics`] is registered per process registry and cloned into every feed thread;
//! each connection resolves its labelled children once ([`ConnMetrics`]), so the hot path does an
//! atomic add per read batch and never hashes labels. `websocket_packets_total` and
//! `websocket_data_bytes_total` are labelled by `vendor` only (the founding document's names,
//! shared with `crate::metrics`); the connection families are labelled `vendor`, `conn`.

use prometheus::{
    Gauge, GaugeVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

use crate::vendor::Vendor;

/// The feed metric families.
#[derive(Debug, Clone)]
pub struct FeedMetrics {
    packets: IntCounterVec,
    bytes: IntCounterVec,
    state: IntGaugeVec,
    reconnects: IntCounterVec,
    stale: IntCounterVec,
    age: GaugeVec,
    refused: IntCounterVec,
}

impl FeedMetrics {
    /// Creates the families and registers them in `registry`.
    ///
    /// # Errors
    /// A `prometheus::Error` if a family is already registered there (create one per registry
    /// and clone it).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let packets = IntCounterVec::new(
            Opts::new("websocket_packets_total", "Count of raw WebSocket messages"),
            &["vendor"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "websocket_data_bytes_total",
                "Total WebSocket bandwidth in bytes",
            ),
            &["vendor"],
        )?;
        registry.register(Box::new(packets.clone()))?;
        registry.register(Box::new(bytes.clone()))?;
        Self::register_with(registry, packets, bytes)
    }

    /// For the process registry, whose `websocket_*` families [`crate::metrics::Metrics`]
    /// already holds: reuses them and registers the connection families beside them.
    ///
    /// # Errors
    /// A `prometheus::Error` if the connection families are already registered.
    pub fn from_process(m: &crate::metrics::Metrics) -> Result<Self, prometheus::Error> {
        Self::register_with(
            &m.registry,
            m.ws_packets_total.clone(),
            m.ws_bytes_total.clone(),
        )
    }

    fn register_with(
        registry: &Registry,
        packets: IntCounterVec,
        bytes: IntCounterVec,
    ) -> Result<Self, prometheus::Error> {
        let labels = &["vendor", "conn"];
        let m = FeedMetrics {
            packets,
            bytes,
            state: IntGaugeVec::new(
                Opts::new(
                    "feed_connection_state",
                    "0 connecting, 1 open, 2 stale, 3 backing off, 4 closed",
                ),
                labels,
            )?,
            reconnects: IntCounterVec::new(
                Opts::new(
                    "feed_reconnects_total",
                    "Connection attempts after the first",
                ),
                labels,
            )?,
            stale: IntCounterVec::new(
                Opts::new("feed_stale_total", "Stale watchdog firings"),
                labels,
            )?,
            age: GaugeVec::new(
                Opts::new(
                    "feed_last_message_age_seconds",
                    "Seconds since the connection's last message of any kind",
                ),
                labels,
            )?,
            refused: IntCounterVec::new(
                Opts::new(
                    "feed_frames_refused_total",
                    "Frames refused for exceeding the size limit",
                ),
                labels,
            )?,
        };
        registry.register(Box::new(m.state.clone()))?;
        registry.register(Box::new(m.reconnects.clone()))?;
        registry.register(Box::new(m.stale.clone()))?;
        registry.register(Box::new(m.age.clone()))?;
        registry.register(Box::new(m.refused.clone()))?;
        Ok(m)
    }

    /// The cached children of one connection.
    pub fn connection(&self, vendor: Vendor, conn: u16) -> ConnMetrics {
        let conn = conn.to_string();
        let l = [vendor.as_str(), conn.as_str()];
        ConnMetrics {
            packets: self.packets.with_label_values(&[vendor.as_str()]),
            bytes: self.bytes.with_label_values(&[vendor.as_str()]),
            state: self.state.with_label_values(&l),
            reconnects: self.reconnects.with_label_values(&l),
            stale: self.stale.with_label_values(&l),
            age: self.age.with_label_values(&l),
            refused: self.refused.with_label_values(&l),
        }
    }
}

/// One connection's metric children, resolved once.
#[derive(Debug, Clone)]
pub struct ConnMetrics {
    /// `websocket_packets_total{vendor}` (shared by the vendor's connections).
    pub packets: IntCounter,
    /// `websocket_data_bytes_total{vendor}`.
    pub bytes: IntCounter,
    /// `feed_connection_state`.
    pub state: IntGauge,
    /// `feed_reconnects_total`.
    pub reconnects: IntCounter,
    /// `feed_stale_total`.
    pub stale: IntCounter,
    /// `feed_last_message_age_seconds`.
    pub age: Gauge,
    /// `feed_frames_refused_total`.
    pub refused: IntCounter,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_once_and_children_are_shared() {
        let r = Registry::new();
        let m = FeedMetrics::register(&r).expect("register");
        assert!(
            FeedMetrics::register(&r).is_err(),
            "second registration refused"
        );
        let a = m.connection(Vendor::Kite, 3);
        let b = m.connection(Vendor::Kite, 4);
        a.packets.inc_by(5);
        assert_eq!(b.packets.get(), 5);
        let names: Vec<String> = r.gather().iter().map(|f| f.name().to_owned()).collect();
        assert!(names.iter().any(|n| n == "websocket_packets_total"));
        assert!(names.iter().any(|n| n == "websocket_data_bytes_total"));
    }
}
