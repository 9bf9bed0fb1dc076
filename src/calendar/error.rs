//! [`CalendarError`]: why a holidays file was refused.

use thiserror::Error;

use crate::error::ErrorCode;

/// A holidays file that cannot be used. Never fatal: the compiled-in list is used instead.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CalendarError {
    /// The file cannot be read.
    #[error("holidays file {path}: {kind}")]
    Io {
        /// The path from `HOLIDAYS_FILE`.
        path: String,
        /// The I/O error kind.
        kind: std::io::ErrorKind,
    },
    /// A line does not parse.
    #[error("holidays file line {line}: {reason}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
}

impl ErrorCode for CalendarError {
    fn code(&self) -> &'static str {
        match self {
            CalendarError::Io { .. } => "CALENDAR_IO",
            CalendarError::Parse { .. } => "CALENDAR_PARSE",
        }
    }
}
