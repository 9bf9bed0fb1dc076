//! The backfill side of the status page: reading `system:layer1:backfill` (written by the
//! backfill thread) and publishing `START_BACKFILL` on `system:commands`, the same path as
//! `redis-cli PUBLISH`, so the button and the CLI are one mechanism.
//!
//! The status key is read every 500 ms by a watcher thread (a `GET` is cheaper than a second
//! subscription, and 500 ms is the page's own cadence); the value is sanitised before anyone sees
//! it: every string is redacted and truncated, arrays and nesting are bounded.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use serde::Deserialize;

use super::error::HttpError;
use crate::shutdown::Shutdown;

/// The status key the backfill thread writes.
pub const STATUS_KEY: &str = "system:layer1:backfill";
/// Largest status value read; a larger one is shown as an error.
pub const MAX_STATUS_BYTES: usize = 256 * 1024;
const MAX_STRING: usize = 512;
const MAX_ARRAY: usize = 50;
const MAX_KEYS: usize = 64;
const MAX_DEPTH: usize = 6;
const POLL: Duration = Duration::from_millis(500);

/// Where backfill commands go and where its status is read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisTarget {
    /// `REDIS_URL`.
    pub url: String,
    /// The commands channel (`system:commands`).
    pub commands_channel: String,
    /// The status key (`system:layer1:backfill`).
    pub status_key: String,
}

impl RedisTarget {
    /// The engine's channel and key on `url`.
    pub fn new(url: &str) -> RedisTarget {
        RedisTarget {
            url: url.to_owned(),
            commands_channel: crate::control::COMMANDS_CHANNEL.to_owned(),
            status_key: STATUS_KEY.to_owned(),
        }
    }
}

/// The last status read, shared with the request handlers.
#[derive(Debug)]
pub struct BackfillCache {
    value: Mutex<serde_json::Value>,
}

impl BackfillCache {
    /// Unknown until the first read.
    pub fn new() -> BackfillCache {
        BackfillCache {
            value: Mutex::new(serde_json::json!({"state": "unknown", "error": "not read yet"})),
        }
    }

    /// A copy of the current value.
    pub fn get(&self) -> serde_json::Value {
        match self.value.lock() {
            Ok(g) => g.clone(),
            Err(p) => p.into_inner().clone(),
        }
    }

    /// Runs `f` on the current value without copying it.
    pub fn with<R>(&self, f: impl FnOnce(&serde_json::Value) -> R) -> R {
        match self.value.lock() {
            Ok(g) => f(&g),
            Err(p) => f(&p.into_inner()),
        }
    }

    /// Replaces the value.
    pub(super) fn set(&self, v: serde_json::Value) {
        match self.value.lock() {
            Ok(mut g) => *g = v,
            Err(p) => *p.into_inner() = v,
        }
    }

    /// True while the status says a job runs.
    pub fn running(&self) -> bool {
        self.with(|v| v.get("state").and_then(serde_json::Value::as_str) == Some("running"))
    }
}

impl Default for BackfillCache {
    fn default() -> Self {
        BackfillCache::new()
    }
}

/// Makes a value from Redis safe to show: strings redacted and cut to 512 characters, arrays to
/// their last 50 items (the newest errors), objects to 64 keys, nesting to 6 levels.
pub fn sanitize(v: serde_json::Value, depth: usize) -> serde_json::Value {
    use serde_json::Value;
    if depth > MAX_DEPTH {
        return Value::Null;
    }
    match v {
        Value::String(s) => {
            let mut r = crate::redact::redact(&s);
            if r.len() > MAX_STRING {
                let cut = (0..=MAX_STRING)
                    .rev()
                    .find(|i| r.is_char_boundary(*i))
                    .unwrap_or(0);
                r.truncate(cut);
                r.push('…');
            }
            Value::String(r)
        }
        Value::Array(a) => {
            let skip = a.len().saturating_sub(MAX_ARRAY);
            Value::Array(
                a.into_iter()
                    .skip(skip)
                    .map(|x| sanitize(x, depth + 1))
                    .collect(),
            )
        }
        Value::Object(o) => Value::Object(
            o.into_iter()
                .take(MAX_KEYS)
                .map(|(k, x)| {
                    let k = if k.len() > 64 {
                        k.chars().take(64).collect()
                    } else {
                        k
                    };
                    (crate::redact::redact(&k), sanitize(x, depth + 1))
                })
                .collect(),
        ),
        other => other,
    }
}

/// Parses a status value read from Redis (or its absence) into what the page shows.
pub fn interpret(raw: Option<&[u8]>) -> serde_json::Value {
    match raw {
        None => serde_json::json!({"state": "idle", "note": "no backfill has reported yet"}),
        Some(b) if b.len() > MAX_STATUS_BYTES => {
            serde_json::json!({"state": "unknown", "error": "status value too large"})
        }
        Some(b) => match serde_json::from_slice::<serde_json::Value>(b) {
            Ok(v @ serde_json::Value::Object(_)) => sanitize(v, 0),
            Ok(_) | Err(_) => {
                serde_json::json!({"state": "unknown", "error": "status value is not a JSON object"})
            }
        },
    }
}

fn connect(url: &str) -> redis::RedisResult<redis::Connection> {
    let client = redis::Client::open(url)?;
    let conn = client.get_connection_with_timeout(Duration::from_secs(1))?;
    conn.set_read_timeout(Some(Duration::from_secs(1)))?;
    conn.set_write_timeout(Some(Duration::from_secs(1)))?;
    Ok(conn)
}

/// Watches the status key until `shutdown`, reconnecting with capped backoff.
pub fn watch(target: &RedisTarget, cache: &Arc<BackfillCache>, shutdown: &Shutdown) {
    let mut backoff = POLL;
    while !shutdown.is_triggered() {
        let mut conn = match connect(&target.url) {
            Ok(c) => c,
            Err(e) => {
                cache.set(serde_json::json!({"state": "unknown", "error": format!("redis unreachable: {}", crate::redact::redact(&e.to_string()))}));
                let _ = shutdown.wait_for(backoff, Duration::from_millis(20));
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = POLL;
        while !shutdown.is_triggered() {
            let raw: redis::RedisResult<Option<Vec<u8>>> =
                redis::cmd("GET").arg(&target.status_key).query(&mut conn);
            match raw {
                Ok(v) => cache.set(interpret(v.as_deref())),
                Err(e) => {
                    // WRONGTYPE and the like are the writer's bug, shown as such; I/O drops reconnect.
                    let msg = crate::redact::redact(&e.to_string());
                    cache.set(serde_json::json!({"state": "unknown", "error": format!("status unreadable: {msg}")}));
                    if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() {
                        break;
                    }
                }
            }
            if shutdown.wait_for(POLL, Duration::from_millis(20)) {
                return;
            }
        }
    }
}

/// The optional body of `POST /api/backfill`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerBody {
    /// Trading days to cover (1..=30).
    pub days: Option<u32>,
    /// Run even while the market is open.
    #[serde(default)]
    pub force: bool,
}

/// The message published for a trigger from the page: `START_BACKFILL {"source":"http",...}`,
/// which `control::parse_command` accepts.
///
/// # Errors
/// [`HttpError::BadBody`] when the body is not a valid [`TriggerBody`].
pub fn command_for(body: &[u8]) -> Result<String, HttpError> {
    let b: TriggerBody = if body.iter().all(u8::is_ascii_whitespace) {
        TriggerBody::default()
    } else {
        serde_json::from_slice(body).map_err(|e| HttpError::BadBody(e.to_string()))?
    };
    if let Some(d) = b.days {
        if !(1..=30).contains(&d) {
            return Err(HttpError::BadBody("days must be 1..=30".into()));
        }
    }
    let mut params = serde_json::Map::new();
    params.insert("source".into(), "http".into());
    if let Some(d) = b.days {
        params.insert("days".into(), d.into());
    }
    if b.force {
        params.insert("force".into(), true.into());
    }
    Ok(format!(
        "{} {}",
        crate::control::START_BACKFILL,
        serde_json::Value::Object(params)
    ))
}

/// Publishes `message` on the commands channel; returns how many subscribers received it.
///
/// # Errors
/// [`HttpError::Redis`] when Redis cannot be reached, [`HttpError::NoListener`] when nobody
/// subscribes to the channel (the engine's control thread is down).
pub fn publish(target: &RedisTarget, message: &str) -> Result<u64, HttpError> {
    let mut conn = connect(&target.url)
        .map_err(|e| HttpError::Redis(crate::redact::redact(&e.to_string())))?;
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg(&target.commands_channel)
        .arg(message)
        .query(&mut conn)
        .map_err(|e| HttpError::Redis(crate::redact::redact(&e.to_string())))?;
    if receivers == 0 {
        return Err(HttpError::NoListener);
    }
    Ok(receivers)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_parse_back_through_control() {
        for (body, force, days) in [
            (&b""[..], false, None),
            (b"{\"force\":true,\"days\":3}", true, Some(3)),
        ] {
            let cmd = command_for(body).unwrap();
            let crate::control::ControlCommand::StartBackfill(p) =
                crate::control::parse_command(cmd.as_bytes()).unwrap();
            assert_eq!(
                (p.force, p.days, p.source.as_deref()),
                (force, days, Some("http"))
            );
        }
        assert!(matches!(
            command_for(b"{\"days\":0}"),
            Err(HttpError::BadBody(_))
        ));
        assert!(matches!(
            command_for(b"{\"rm\":1}"),
            Err(HttpError::BadBody(_))
        ));
        assert!(matches!(command_for(b"nope"), Err(HttpError::BadBody(_))));
    }

    #[test]
    fn status_values_are_sanitised() {
        let raw = serde_json::json!({
            "state": "failed",
            "reason": "upstream said: Authorization: Bearer abcdefghijklmnopqrstuvwxyz",
            "errors": (0..80).map(|i| format!("e{i}")).collect::<Vec<_>>(),
            "current": "x".repeat(2000),
        });
        let v = interpret(Some(raw.to_string().as_bytes()));
        assert_eq!(v["state"], "failed");
        assert!(!v["reason"].as_str().unwrap().contains("abcdefghijklmnop"));
        assert_eq!(v["errors"].as_array().unwrap().len(), MAX_ARRAY);
        assert_eq!(v["errors"][0], "e30");
        assert!(v["current"].as_str().unwrap().len() <= MAX_STRING + 4);
        assert_eq!(interpret(None)["state"], "idle");
        assert_eq!(interpret(Some(b"[1]"))["state"], "unknown");
        assert_eq!(interpret(Some(b"{oops"))["state"], "unknown");
    }
}
