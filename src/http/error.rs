//! Why a request was refused: one typed error per refusal, each with a stable code
//! (`docs/errors.md`) and the HTTP status it maps to.

use thiserror::Error;

use crate::error::ErrorCode;

/// A refused request. Every variant is answered with its [`HttpError::status`] and a JSON body
/// `{"error": CODE, "message": text}`; none is fatal to the server.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum HttpError {
    /// The request line or a header does not parse.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request head or body exceeds its bound.
    #[error("request too large")]
    TooLarge,
    /// The request did not arrive completely within the read timeout (slow or stalled client).
    #[error("request not received in time")]
    Timeout,
    /// The peer closed the connection before a whole request arrived (nothing is answered).
    #[error("connection closed by the client")]
    Closed,
    /// No such route.
    #[error("not found")]
    NotFound,
    /// The route exists but not for this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Loopback mode and the `Host` header names something other than this machine (a DNS
    /// rebinding attempt, or a misconfigured proxy).
    #[error("host not served here")]
    Host,
    /// A state-changing request from another origin (`Origin` or `Sec-Fetch-Site`).
    #[error("cross-origin request refused")]
    CrossOrigin,
    /// A state-changing request without the right bearer token while not on loopback.
    #[error("a valid bearer token is required")]
    Unauthorized,
    /// The client exceeded its request rate, or backfill was triggered too recently.
    #[error("too many requests; retry in {retry_after_s} s")]
    RateLimited {
        /// Seconds until a retry can succeed.
        retry_after_s: u64,
    },
    /// Every live-stream slot is taken.
    #[error("too many live streams")]
    TooManyStreams,
    /// Every worker is busy and the hand-off queue is full.
    #[error("server busy")]
    Busy,
    /// A backfill is already running (from the backfill status key).
    #[error("a backfill is already running")]
    BackfillRunning,
    /// The command was published but no engine listens on the commands channel.
    #[error("no engine is listening on the commands channel")]
    NoListener,
    /// Redis could not be reached or refused the command.
    #[error("redis: {0}")]
    Redis(String),
    /// The JSON body of `POST /api/backfill` is not valid.
    #[error("bad body: {0}")]
    BadBody(String),
}

impl HttpError {
    /// The HTTP status this refusal is answered with.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(_) | HttpError::BadBody(_) | HttpError::Closed => 400,
            HttpError::Unauthorized => 401,
            HttpError::CrossOrigin => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed => 405,
            HttpError::Timeout => 408,
            HttpError::BackfillRunning => 409,
            HttpError::TooLarge => 413,
            HttpError::Host => 421,
            HttpError::RateLimited { .. } => 429,
            HttpError::TooManyStreams
            | HttpError::Busy
            | HttpError::NoListener
            | HttpError::Redis(_) => 503,
        }
    }
}

impl ErrorCode for HttpError {
    fn code(&self) -> &'static str {
        match self {
            HttpError::BadRequest(_) => "HTTP_BAD_REQUEST",
            HttpError::TooLarge => "HTTP_TOO_LARGE",
            HttpError::Timeout => "HTTP_TIMEOUT",
            HttpError::Closed => "HTTP_CLOSED",
            HttpError::NotFound => "HTTP_NOT_FOUND",
            HttpError::MethodNotAllowed => "HTTP_METHOD",
            HttpError::Host => "HTTP_HOST",
            HttpError::CrossOrigin => "HTTP_CROSS_ORIGIN",
            HttpError::Unauthorized => "HTTP_UNAUTHORIZED",
            HttpError::RateLimited { .. } => "HTTP_RATE_LIMITED",
            HttpError::TooManyStreams => "HTTP_TOO_MANY_STREAMS",
            HttpError::Busy => "HTTP_BUSY",
            HttpError::BackfillRunning => "HTTP_BACKFILL_RUNNING",
            HttpError::NoListener => "HTTP_NO_LISTENER",
            HttpError::Redis(_) => "HTTP_REDIS",
            HttpError::BadBody(_) => "HTTP_BAD_BODY",
        }
    }
}
