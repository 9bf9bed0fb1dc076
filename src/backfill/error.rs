//! [`BackfillError`]: why a backfill job, or one instrument of it, failed; and [`Refusal`]: why a
//! trigger was not run. Both carry stable codes (`docs/errors.md`, section Backfill).

use thiserror::Error;

use crate::{error::ErrorCode, vendor::Vendor};

/// A failure of a job or of one instrument in it.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum BackfillError {
    /// Redis (status, lock or coverage) failed; the job stops.
    #[error("redis: {0}")]
    Redis(String),
    /// The Redis lock was lost while the job ran (expired, or taken over); the job stops.
    #[error("the backfill lock was lost")]
    LockLost,
    /// The vendor refused the credentials (401/403). Not retried; the vendor is skipped for the
    /// rest of the job.
    #[error("{vendor}: authentication refused (HTTP {status})")]
    Auth {
        /// Vendor.
        vendor: Vendor,
        /// HTTP status.
        status: u16,
    },
    /// Still rate-limited (429) after the configured number of waits.
    #[error("{vendor}: still rate-limited after {attempts} attempts")]
    RateLimited {
        /// Vendor.
        vendor: Vendor,
        /// Attempts made.
        attempts: u32,
    },
    /// A 5xx answer persisted through every retry.
    #[error("{vendor}: server error HTTP {status} after {attempts} attempts")]
    Server {
        /// Vendor.
        vendor: Vendor,
        /// Last HTTP status.
        status: u16,
        /// Attempts made.
        attempts: u32,
    },
    /// The request never got an answer (connection refused or reset, timeout) through every retry.
    #[error("{vendor}: transport error after {attempts} attempts: {reason}")]
    Transport {
        /// Vendor.
        vendor: Vendor,
        /// Attempts made.
        attempts: u32,
        /// Error text (redacted, no URL).
        reason: String,
    },
    /// The vendor refused the request itself (4xx other than 401/403/429), e.g. a bad token.
    #[error("{vendor}: request refused (HTTP {status}): {message}")]
    Rejected {
        /// Vendor.
        vendor: Vendor,
        /// HTTP status.
        status: u16,
        /// The vendor's message, truncated.
        message: String,
    },
    /// A 200 answer that is not the documented candle JSON.
    #[error("{vendor}: unusable response: {reason}")]
    BadResponse {
        /// Vendor.
        vendor: Vendor,
        /// What was wrong.
        reason: String,
    },
    /// The vendor has no credentials configured.
    #[error("{vendor}: no credentials configured")]
    NoCredentials {
        /// Vendor.
        vendor: Vendor,
    },
    /// Skipped: the vendor already failed for good earlier in this job.
    #[error("{vendor}: skipped, the vendor failed earlier in this job")]
    VendorDown {
        /// Vendor.
        vendor: Vendor,
    },
    /// The requested symbol is not among the instruments.
    #[error("unknown instrument {0}")]
    UnknownSymbol(String),
    /// The producer queue is closed or stayed full past the send timeout; the job stops.
    #[error("producer: {0}")]
    Producer(&'static str),
    /// Some instruments failed; the summary of the job.
    #[error("{failed} of {total} instruments failed; first: {first}")]
    Incomplete {
        /// Instruments that failed.
        failed: usize,
        /// Instruments in the job.
        total: usize,
        /// The first failure.
        first: String,
    },
    /// The job panicked (a bug); caught at the thread boundary.
    #[error("job panicked: {0}")]
    Panic(String),
    /// The engine is stopping.
    #[error("stopped by shutdown")]
    Shutdown,
    /// The backfill threads could not be started.
    #[error("thread could not be spawned: {0}")]
    Spawn(std::io::ErrorKind),
}

impl BackfillError {
    /// True when the failure ends the whole job (rather than one instrument).
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            BackfillError::Redis(_)
                | BackfillError::LockLost
                | BackfillError::Producer(_)
                | BackfillError::Shutdown
                | BackfillError::Panic(_)
        )
    }

    /// True when the vendor should not be asked again in this job.
    pub fn vendor_is_down(&self) -> bool {
        matches!(
            self,
            BackfillError::Auth { .. }
                | BackfillError::RateLimited { .. }
                | BackfillError::Server { .. }
                | BackfillError::Transport { .. }
                | BackfillError::NoCredentials { .. }
        )
    }
}

impl ErrorCode for BackfillError {
    fn code(&self) -> &'static str {
        match self {
            BackfillError::Redis(_) => "BACKFILL_REDIS",
            BackfillError::LockLost => "BACKFILL_LOCK_LOST",
            BackfillError::Auth { .. } => "BACKFILL_AUTH",
            BackfillError::RateLimited { .. } => "BACKFILL_RATE_LIMITED",
            BackfillError::Server { .. } => "BACKFILL_VENDOR_5XX",
            BackfillError::Transport { .. } => "BACKFILL_TRANSPORT",
            BackfillError::Rejected { .. } => "BACKFILL_REJECTED",
            BackfillError::BadResponse { .. } => "BACKFILL_BAD_RESPONSE",
            BackfillError::NoCredentials { .. } => "BACKFILL_NO_CREDENTIALS",
            BackfillError::VendorDown { .. } => "BACKFILL_VENDOR_DOWN",
            BackfillError::UnknownSymbol(_) => "BACKFILL_UNKNOWN_SYMBOL",
            BackfillError::Producer(_) => "BACKFILL_PRODUCER",
            BackfillError::Incomplete { .. } => "BACKFILL_INCOMPLETE",
            BackfillError::Panic(_) => "BACKFILL_PANIC",
            BackfillError::Shutdown => "BACKFILL_SHUTDOWN",
            BackfillError::Spawn(_) => "THREAD_SPAWN",
        }
    }
}

/// Why a trigger was not run.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum Refusal {
    /// This engine is already running a job.
    #[error("a backfill is already running on this engine")]
    Running,
    /// Another engine holds the Redis lock.
    #[error("another engine ({owner}) is running a backfill")]
    Locked {
        /// The holder's engine id.
        owner: String,
    },
    /// The market is open and the command did not say `force`.
    #[error("the market is open ({status}); backfill runs when it is closed, or send START_BACKFILL force")]
    MarketOpen {
        /// The market status.
        status: &'static str,
    },
    /// The parameters cannot be served (e.g. an interval no vendor offers).
    #[error("invalid parameters: {0}")]
    Invalid(String),
    /// The command queue is full (commands arrive faster than they are looked at).
    #[error("too many backfill commands queued")]
    Busy,
}

impl ErrorCode for Refusal {
    fn code(&self) -> &'static str {
        match self {
            Refusal::Running => "BACKFILL_REFUSED_RUNNING",
            Refusal::Locked { .. } => "BACKFILL_REFUSED_LOCKED",
            Refusal::MarketOpen { .. } => "BACKFILL_REFUSED_MARKET_OPEN",
            Refusal::Invalid(_) => "BACKFILL_REFUSED_INVALID",
            Refusal::Busy => "BACKFILL_REFUSED_BUSY",
        }
    }
}
