//! Producer errors.

use thiserror::Error;

use crate::error::ErrorCode;

/// Failures of the Kafka producer and its admin calls.
#[derive(Debug, Error)]
pub enum ProducerError {
    /// librdkafka refused the client configuration.
    #[error("kafka client configuration refused: {0}")]
    ClientConfig(String),
    /// Topic creation or metadata failed.
    #[error("kafka admin: {0}")]
    Admin(String),
    /// The broker did not answer within the time allowed.
    #[error("kafka broker unreachable at {brokers}: {reason}")]
    Unreachable {
        /// Bootstrap servers tried.
        brokers: String,
        /// What the client reported.
        reason: String,
    },
    /// The producer thread is gone (its queue is disconnected).
    #[error("producer thread is not running")]
    Stopped,
    /// The outage journal could not be opened.
    #[error("journal: {0}")]
    Journal(String),
    /// Records were still unacknowledged when the flush deadline passed.
    #[error("{in_flight} records unacknowledged at the flush deadline")]
    FlushTimeout {
        /// Records still in flight.
        in_flight: u64,
    },
}

impl ErrorCode for ProducerError {
    fn code(&self) -> &'static str {
        match self {
            ProducerError::ClientConfig(_) => "PRODUCER_CONFIG",
            ProducerError::Admin(_) => "PRODUCER_ADMIN",
            ProducerError::Unreachable { .. } => "PRODUCER_UNREACHABLE",
            ProducerError::Stopped => "PRODUCER_STOPPED",
            ProducerError::FlushTimeout { .. } => "PRODUCER_FLUSH_TIMEOUT",
            ProducerError::Journal(_) => "PRODUCER_JOURNAL",
        }
    }
}
