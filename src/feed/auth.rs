//! Per-vendor credential health: whether the vendor last accepted or refused our token.
//!
//! Indian broker tokens expire overnight and are rewritten by an external login job; the feed
//! re-reads them before every attempt ([`super::Credential`]). When a vendor refuses them (HTTP
//! 401/403 at the handshake, or Dhan's disconnect reasons 807-809) this table records it, the
//! failure is logged once per episode and counted in `feed_auth_failures_total{vendor}`, and
//! [`snapshot`] gives the `/health/ready` body a per-vendor status to show. The reconnect itself
//! backs off exponentially in the feed loop, so a bad token never becomes a retry storm.
//!
//! Lock-free: one atomic per vendor, so the feed threads can update it from their hot path.

use std::sync::{
    atomic::{AtomicU64, AtomicU8, Ordering},
    OnceLock,
};

use prometheus::{IntCounterVec, Opts};

use crate::vendor::Vendor;

/// A vendor's credential status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum AuthState {
    /// No verdict yet (not connected since start).
    Unknown = 0,
    /// The vendor accepted the credentials and data flowed.
    Ok = 1,
    /// The vendor refused the credentials; the feed keeps retrying with backoff, re-reading the
    /// token file or variable before each attempt.
    Failed = 2,
}

impl AuthState {
    /// The lower-case name used in logs and the health body.
    pub const fn as_str(self) -> &'static str {
        match self {
            AuthState::Unknown => "unknown",
            AuthState::Ok => "ok",
            AuthState::Failed => "auth_failed",
        }
    }

    const fn from_u8(v: u8) -> AuthState {
        match v {
            1 => AuthState::Ok,
            2 => AuthState::Failed,
            _ => AuthState::Unknown,
        }
    }
}

struct Table {
    state: [AtomicU8; 6],
    failures: [AtomicU64; 6],
    metric: Option<IntCounterVec>,
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        let metric = IntCounterVec::new(
            Opts::new(
                "feed_auth_failures_total",
                "Vendor refusals of our credentials (handshake 401/403, Dhan 807-809)",
            ),
            &["vendor"],
        )
        .ok()
        .filter(|m| {
            crate::metrics::global()
                .registry
                .register(Box::new(m.clone()))
                .is_ok()
        });
        Table {
            state: Default::default(),
            failures: Default::default(),
            metric,
        }
    })
}

fn slot(v: Vendor) -> usize {
    usize::from(v.code()).min(5)
}

/// Records a refusal of `vendor`'s credentials (`code` is the stable error code or the vendor's
/// reason, for the log). Logged at `error` once per episode; counted every time.
pub fn record_failure(vendor: Vendor, code: &str) {
    let t = table();
    let i = slot(vendor);
    if let Some(m) = &t.metric {
        m.with_label_values(&[vendor.as_str()]).inc();
    }
    if let Some(f) = t.failures.get(i) {
        f.fetch_add(1, Ordering::Relaxed);
    }
    let prev = t
        .state
        .get(i)
        .map_or(0, |s| s.swap(AuthState::Failed as u8, Ordering::AcqRel));
    if prev != AuthState::Failed as u8 {
        log::error!(event = "vendor_auth_failed", vendor = vendor.as_str(), code = code; "the vendor refused our credentials: rewrite the token file or variable; the feed retries with backoff and re-reads it before each attempt");
    }
}

/// Records that `vendor` delivered data (its credentials work). One relaxed load per call in
/// the steady state; the pipeline calls it once per frame that carried ticks.
pub fn note_data(vendor: Vendor) {
    let Some(s) = table().state.get(slot(vendor)) else {
        return;
    };
    if s.load(Ordering::Relaxed) != AuthState::Ok as u8
        && s.swap(AuthState::Ok as u8, Ordering::AcqRel) == AuthState::Failed as u8
    {
        log::info!(event = "vendor_auth_recovered", vendor = vendor.as_str(); "the vendor accepts our credentials again");
    }
}

/// Handles a vendor's disconnect notice (Dhan code 50): auth reasons are recorded as failures,
/// every notice is logged.
pub fn vendor_disconnect(vendor: Vendor, reason: u16) {
    if vendor == Vendor::Dhan && crate::parsers::dhan::is_auth_reason(reason) {
        record_failure(vendor, "DHAN_DISCONNECT_AUTH");
    }
    log::error!(event = "vendor_disconnect", vendor = vendor.as_str(), reason = reason; "the vendor is closing the connection");
}

/// The current status of `vendor`.
pub fn state(vendor: Vendor) -> AuthState {
    table()
        .state
        .get(slot(vendor))
        .map_or(AuthState::Unknown, |s| {
            AuthState::from_u8(s.load(Ordering::Acquire))
        })
}

/// Refusals of `vendor`'s credentials since start.
pub fn failures(vendor: Vendor) -> u64 {
    table()
        .failures
        .get(slot(vendor))
        .map_or(0, |f| f.load(Ordering::Relaxed))
}

/// Every vendor's status and failure count, for the `/health/ready` body.
pub fn snapshot() -> Vec<(Vendor, AuthState, u64)> {
    Vendor::ALL
        .iter()
        .map(|&v| (v, state(v), failures(v)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_then_data_recovers() {
        // Json is used by no other test in this process, so the global table is ours.
        let v = Vendor::Json;
        let before = failures(v);
        record_failure(v, "CONN_UNAUTHORIZED");
        assert_eq!(state(v), AuthState::Failed);
        vendor_disconnect(v, 807); // not Dhan: logged, not counted
        assert_eq!(failures(v), before + 1);
        note_data(v);
        assert_eq!(state(v), AuthState::Ok);
        assert!(snapshot()
            .iter()
            .any(|(x, s, _)| *x == v && *s == AuthState::Ok));
    }
}
