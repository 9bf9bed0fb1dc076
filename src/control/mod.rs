//! The control thread: a Redis subscription to `system:commands` that turns messages into typed
//! [`ControlCommand`]s for the rest of the engine (today: backfill triggers).
//!
//! Redis pub/sub neither persists messages nor reconnects by itself, so the listener reconnects
//! with capped backoff, resubscribes, and keeps `redis_up` current. Malformed messages get a typed
//! [`CommandError`], a metric and a log line; they never stop the listener.

use std::time::Duration;

use crossbeam_channel::Sender;
use serde::Deserialize;
use thiserror::Error;

use crate::{error::ErrorCode, shutdown::Shutdown};

/// The channel the engine listens on.
pub const COMMANDS_CHANNEL: &str = "system:commands";
/// The only command word known today.
pub const START_BACKFILL: &str = "START_BACKFILL";
/// Longest message accepted; anything larger is refused unread.
pub const MAX_COMMAND_BYTES: usize = 64 * 1024;

/// Parameters of a backfill request; all optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackfillParams {
    /// Trading days to cover (1..=30); default 5.
    pub days: Option<u32>,
    /// Candle interval, e.g. `1minute`; default 1 minute.
    pub interval: Option<String>,
    /// Restrict to these instruments (`EXCHANGE:SYMBOL`).
    pub symbols: Option<Vec<String>>,
    /// Run even while the market is open.
    #[serde(default)]
    pub force: bool,
    /// Where the request came from (`redis`, `http`, ...), for the status.
    pub source: Option<String>,
}

/// A command received on `system:commands`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlCommand {
    /// Start a historical backfill.
    StartBackfill(BackfillParams),
}

/// Why a message on `system:commands` was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CommandError {
    /// Not a command this engine knows.
    #[error("unknown command")]
    Unknown,
    /// A known command with parameters that do not parse or are out of range.
    #[error("malformed parameters: {0}")]
    Malformed(String),
    /// Larger than [`MAX_COMMAND_BYTES`].
    #[error("command larger than {MAX_COMMAND_BYTES} bytes")]
    TooLarge,
    /// Not UTF-8 text.
    #[error("command is not UTF-8 text")]
    NotText,
}

impl ErrorCode for CommandError {
    fn code(&self) -> &'static str {
        match self {
            CommandError::Unknown => "CONTROL_UNKNOWN_COMMAND",
            CommandError::Malformed(_) => "CONTROL_MALFORMED",
            CommandError::TooLarge => "CONTROL_TOO_LARGE",
            CommandError::NotText => "CONTROL_NOT_TEXT",
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(alias = "type", alias = "cmd")]
    command: String,
    #[serde(flatten)]
    params: serde_json::Map<String, serde_json::Value>,
}

fn params_from(value: serde_json::Value) -> Result<BackfillParams, CommandError> {
    let p: BackfillParams =
        serde_json::from_value(value).map_err(|e| CommandError::Malformed(e.to_string()))?;
    if let Some(d) = p.days {
        if !(1..=30).contains(&d) {
            return Err(CommandError::Malformed("days must be 1..=30".into()));
        }
    }
    if p.symbols.as_ref().is_some_and(|s| s.len() > 10_000) {
        return Err(CommandError::Malformed("at most 10000 symbols".into()));
    }
    Ok(p)
}

/// Parses one message. Accepted forms: `START_BACKFILL`, `START_BACKFILL {"days":3}`,
/// `START_BACKFILL force`, and `{"command":"START_BACKFILL","days":3}`.
///
/// # Errors
/// A [`CommandError`] saying why the message is refused.
pub fn parse_command(payload: &[u8]) -> Result<ControlCommand, CommandError> {
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(CommandError::TooLarge);
    }
    let text = std::str::from_utf8(payload)
        .map_err(|_| CommandError::NotText)?
        .trim();
    if text.starts_with('{') {
        let env: Envelope =
            serde_json::from_str(text).map_err(|e| CommandError::Malformed(e.to_string()))?;
        if !env.command.eq_ignore_ascii_case(START_BACKFILL) {
            return Err(CommandError::Unknown);
        }
        return params_from(serde_json::Value::Object(env.params))
            .map(ControlCommand::StartBackfill);
    }
    let (word, rest) = text.split_once(char::is_whitespace).unwrap_or((text, ""));
    if !word.eq_ignore_ascii_case(START_BACKFILL) {
        return Err(CommandError::Unknown);
    }
    let rest = rest.trim();
    let params = if rest.is_empty() {
        BackfillParams::default()
    } else if rest.eq_ignore_ascii_case("force") {
        BackfillParams {
            force: true,
            ..BackfillParams::default()
        }
    } else {
        let v: serde_json::Value =
            serde_json::from_str(rest).map_err(|e| CommandError::Malformed(e.to_string()))?;
        params_from(v)?
    };
    Ok(ControlCommand::StartBackfill(params))
}

/// Runs the listener until `shutdown`: subscribes to [`COMMANDS_CHANNEL`] on `redis_url`,
/// forwards parsed commands to `out`, reconnects with capped backoff when Redis goes away.
pub fn run_listener(redis_url: &str, out: &Sender<ControlCommand>, shutdown: &Shutdown) {
    let m = crate::metrics::global();
    let mut backoff = Duration::from_millis(100);
    let mut announced_down = false;
    while !shutdown.is_triggered() {
        match listen_once(redis_url, out, shutdown) {
            Ok(()) => break,
            Err(e) => {
                m.redis_up.set(0);
                if !announced_down {
                    log::error!(event = "redis_disconnected", code = "CONTROL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
                    announced_down = true;
                }
                let _ = shutdown.wait_for(backoff, Duration::from_millis(20));
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        }
    }
    m.redis_up.set(0);
    let _ = announced_down;
}

fn listen_once(
    redis_url: &str,
    out: &Sender<ControlCommand>,
    shutdown: &Shutdown,
) -> redis::RedisResult<()> {
    let client = redis::Client::open(redis_url)?;
    let mut conn = client.get_connection_with_timeout(Duration::from_secs(2))?;
    conn.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut pubsub = conn.as_pubsub();
    pubsub.subscribe(COMMANDS_CHANNEL)?;
    let m = crate::metrics::global();
    m.redis_up.set(1);
    log::info!(event = "redis_subscribed", channel = COMMANDS_CHANNEL; "listening for commands");
    while !shutdown.is_triggered() {
        let msg = match pubsub.get_message() {
            Ok(msg) => msg,
            Err(e) if e.is_timeout() => continue,
            Err(e) => return Err(e),
        };
        let payload: &[u8] = msg.get_payload_bytes();
        match parse_command(payload) {
            Ok(cmd) => {
                m.control_commands_total
                    .with_label_values(&["START_BACKFILL", "accepted"])
                    .inc();
                log::info!(event = "control_command", command = START_BACKFILL; "received");
                if out.send(cmd).is_err() {
                    // The consumer is gone: the engine is stopping.
                    return Ok(());
                }
            }
            Err(e) => {
                m.control_commands_total
                    .with_label_values(&["invalid", e.code()])
                    .inc();
                log::warn!(event = "control_command_refused", code = e.code(), bytes = payload.len(); "{e}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        assert_eq!(
            parse_command(b"START_BACKFILL"),
            Ok(ControlCommand::StartBackfill(BackfillParams::default()))
        );
        assert_eq!(
            parse_command(b" START_BACKFILL force "),
            Ok(ControlCommand::StartBackfill(BackfillParams {
                force: true,
                ..Default::default()
            }))
        );
        let Ok(ControlCommand::StartBackfill(p)) =
            parse_command(br#"START_BACKFILL {"days":3,"symbols":["NSE:INFY"]}"#)
        else {
            panic!("json params")
        };
        assert_eq!(p.days, Some(3));
        let Ok(ControlCommand::StartBackfill(p)) =
            parse_command(br#"{"command":"START_BACKFILL","force":true}"#)
        else {
            panic!("envelope")
        };
        assert!(p.force);
    }

    #[test]
    fn refusals_are_typed() {
        assert_eq!(parse_command(b"DROP_ALL"), Err(CommandError::Unknown));
        assert_eq!(parse_command(b""), Err(CommandError::Unknown));
        assert_eq!(parse_command(&[0xff, 0xfe]), Err(CommandError::NotText));
        assert_eq!(
            parse_command(&vec![b'x'; MAX_COMMAND_BYTES + 1]),
            Err(CommandError::TooLarge)
        );
        assert!(matches!(
            parse_command(b"START_BACKFILL {"),
            Err(CommandError::Malformed(_))
        ));
        assert!(matches!(
            parse_command(br#"START_BACKFILL {"days":99}"#),
            Err(CommandError::Malformed(_))
        ));
        assert!(matches!(
            parse_command(br#"START_BACKFILL {"rm":1}"#),
            Err(CommandError::Malformed(_))
        ));
        assert_eq!(
            parse_command(br#"{"command":"EXPLODE"}"#),
            Err(CommandError::Unknown)
        );
    }
}
