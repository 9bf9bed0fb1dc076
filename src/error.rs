//! Error vocabulary shared by every boundary: each error enum implements [`ErrorCode`], whose
//! codes are stable strings documented in `docs/errors.md` and used as metric labels and in the
//! `code` field of log lines.
//!
//! The enums themselves live next to what they describe (config, connection, parse,
//! validation, producer, control); [`Error`] gathers the ones that can end start-up.

use thiserror::Error;

/// A stable, documented, machine-readable code for an error value.
pub trait ErrorCode {
    /// The code, `UPPER_SNAKE_CASE`, never changed once published.
    fn code(&self) -> &'static str;
}

/// Errors that stop the engine from starting or make a subcommand fail.
#[derive(Debug, Error)]
pub enum Error {
    /// Configuration was refused.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The Kafka producer could not be set up.
    #[error(transparent)]
    Producer(#[from] crate::producer::ProducerError),
    /// The HTTP listener could not be bound.
    #[error("http: cannot listen on {addr}: {kind}")]
    HttpBind {
        /// The address from `HTTP_ADDR`.
        addr: std::net::SocketAddr,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// A thread could not be spawned.
    #[error("thread {name} could not be spawned: {kind}")]
    Spawn {
        /// The thread's name.
        name: &'static str,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// The development services (Kafka, Redis) could not be started.
    #[error("services: {0}")]
    Services(String),
    /// `layer1 replay` failed.
    #[error("replay: {0}")]
    Replay(String),
    /// A command-line usage error.
    #[error("usage: {0}")]
    Usage(String),
    /// `layer1 chaos` could not run or broke a promise.
    #[error(transparent)]
    Chaos(#[from] crate::chaos::ChaosError),
}

impl ErrorCode for Error {
    fn code(&self) -> &'static str {
        match self {
            Error::Config(e) => e.code(),
            Error::Producer(e) => e.code(),
            Error::HttpBind { .. } => "HTTP_BIND",
            Error::Spawn { .. } => "THREAD_SPAWN",
            Error::Services(_) => "SERVICES_START",
            Error::Usage(_) => "USAGE",
            Error::Replay(_) => "REPLAY_FAILED",
            Error::Chaos(e) => e.code(),
        }
    }
}
