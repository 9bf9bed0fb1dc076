//! Configuration errors: each names the variable and what was expected, never the value.

use thiserror::Error;

use crate::error::ErrorCode;

/// Why start-up configuration was refused. The offending value is never included: it may be a
/// secret, and the variable name plus the expectation is what an operator needs.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ConfigError {
    /// A required variable is absent or empty.
    #[error("configuration: {var} is required ({expected})")]
    Missing {
        /// The environment variable.
        var: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// A variable is present but its value is not valid.
    #[error("configuration: {var} is invalid: expected {expected}")]
    Invalid {
        /// The environment variable.
        var: &'static str,
        /// What a valid value looks like.
        expected: &'static str,
    },
    /// Two or more values are each valid but do not fit together.
    #[error("configuration: {var} conflicts: {reason}")]
    Conflict {
        /// The environment variable that has to change.
        var: &'static str,
        /// Why the combination is refused.
        reason: &'static str,
    },
    /// The `.env` file exists but could not be read or parsed.
    #[error("configuration: .env file could not be read: {reason}")]
    DotEnv {
        /// What went wrong (line number or I/O error kind; never a value).
        reason: String,
    },
}

impl ErrorCode for ConfigError {
    fn code(&self) -> &'static str {
        match self {
            ConfigError::Missing { .. } => "CONFIG_MISSING",
            ConfigError::Invalid { .. } => "CONFIG_INVALID",
            ConfigError::Conflict { .. } => "CONFIG_CONFLICT",
            ConfigError::DotEnv { .. } => "CONFIG_DOTENV",
        }
    }
}

impl ConfigError {
    /// The variable the error is about (`.env` for a file error).
    pub fn var(&self) -> &'static str {
        match self {
            ConfigError::Missing { var, .. }
            | ConfigError::Invalid { var, .. }
            | ConfigError::Conflict { var, .. } => var,
            ConfigError::DotEnv { .. } => ".env",
        }
    }
}
