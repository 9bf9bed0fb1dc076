//! Structured logging: `log` + `fern`, one JSON object per line, credentials redacted, written by
//! a dedicated thread so no engine thread ever blocks on log I/O.
//!
//! A line carries `ts`, `level`, `target`, `event`, the record's key-values and `msg`:
//! `log::info!(event = "connection_state", vendor = "kite", conn = 3; "open")`.
//! Level policy (founding document): `debug` ticks, `info` connection status, `error`
//! disconnections. Records are formatted and redacted on the calling thread, then handed to the
//! writer over a bounded queue with `try_send`: when the writer falls behind, records are dropped
//! and counted ([`dropped`]) instead of stalling a feed thread. A disabled level costs one atomic
//! load at the call site.

use std::{
    fs::OpenOptions,
    io::{self, Write},
    path::PathBuf,
    sync::atomic::{AtomicU64, Ordering},
    thread::JoinHandle,
};

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};
use log::kv::{Key, Value, VisitSource};
use serde_json::{Map, Value as Json};

use crate::redact::redact;

static DROPPED: AtomicU64 = AtomicU64::new(0);
const QUEUE: usize = 16_384;

/// Log records dropped because the writer thread could not keep up.
pub fn dropped() -> u64 {
    DROPPED.load(Ordering::Relaxed)
}

/// Keeps the writer thread alive; dropping it flushes every queued line and joins the writer.
#[derive(Debug)]
pub struct LoggingGuard {
    tx: Option<Sender<String>>,
    writer: Option<JoinHandle<()>>,
}

impl Drop for LoggingGuard {
    fn drop(&mut self) {
        // The global logger keeps a clone of the sender, so the writer is told to stop with an
        // empty line rather than by disconnection.
        if let Some(tx) = self.tx.take() {
            let _ = tx.send(String::new());
        }
        if let Some(w) = self.writer.take() {
            let _ = w.join();
        }
    }
}

/// Installs the process logger. Call once, first thing in `main`.
///
/// # Errors
/// An I/O error when `file` cannot be opened, or `AlreadyExists` when a logger is installed.
pub fn init(level: log::LevelFilter, file: Option<PathBuf>) -> io::Result<LoggingGuard> {
    let mut sink: Box<dyn Write + Send> = match &file {
        Some(path) => Box::new(OpenOptions::new().create(true).append(true).open(path)?),
        None => Box::new(io::stderr()),
    };
    let (tx, rx): (Sender<String>, Receiver<String>) = bounded(QUEUE);
    let writer = std::thread::Builder::new()
        .name("log-writer".into())
        .spawn(move || {
            let mut out = io::BufWriter::with_capacity(64 * 1024, &mut sink);
            while let Ok(line) = rx.recv() {
                if line.is_empty() {
                    break;
                }
                let _ = out.write_all(line.as_bytes());
                // Batch whatever else is queued before one flush (one write(2) per burst).
                for more in rx.try_iter().take(1024) {
                    if more.is_empty() {
                        let _ = out.flush();
                        return;
                    }
                    let _ = out.write_all(more.as_bytes());
                }
                let _ = out.flush();
            }
            let _ = out.flush();
        })?;
    let logger_tx = tx.clone();
    let result = fern::Dispatch::new()
        .level(level)
        // librdkafka's own chatter is routed through rdkafka's log target; keep it to warnings.
        .level_for("rdkafka", log::LevelFilter::Warn)
        .level_for("ureq", log::LevelFilter::Warn)
        .level_for("rustls", log::LevelFilter::Warn)
        .level_for("tungstenite", log::LevelFilter::Warn)
        .chain(fern::Output::call(move |record| {
            let line = format_record(record, crate::clock::now_unix_ns());
            match logger_tx.try_send(line) {
                Ok(()) => {}
                Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                    DROPPED.fetch_add(1, Ordering::Relaxed);
                }
            }
        }))
        .apply();
    if result.is_err() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "a logger is already installed",
        ));
    }
    Ok(LoggingGuard {
        tx: Some(tx),
        writer: Some(writer),
    })
}

struct Fields<'a>(&'a mut Map<String, Json>);

impl<'kvs> VisitSource<'kvs> for Fields<'_> {
    fn visit_pair(&mut self, key: Key<'kvs>, value: Value<'kvs>) -> Result<(), log::kv::Error> {
        let v = if let Some(b) = value.to_bool() {
            Json::Bool(b)
        } else if let Some(u) = value.to_u64() {
            Json::from(u)
        } else if let Some(i) = value.to_i64() {
            Json::from(i)
        } else if let Some(f) = value.to_f64() {
            serde_json::Number::from_f64(f).map_or(Json::Null, Json::Number)
        } else {
            Json::String(redact(&value.to_string()))
        };
        self.0.insert(key.as_str().to_owned(), v);
        Ok(())
    }
}

/// Formats one record as a JSON line (with trailing newline), redacted. Public for tests.
pub fn format_record(record: &log::Record<'_>, now_ns: u64) -> String {
    let mut fields = Map::new();
    let _ = record.key_values().visit(&mut Fields(&mut fields));
    let event = match fields.remove("event") {
        Some(Json::String(s)) => s,
        _ => "log".to_owned(),
    };
    let mut obj = Map::new();
    obj.insert(
        "ts".into(),
        Json::String(crate::clock::format_rfc3339_ms(now_ns)),
    );
    obj.insert(
        "level".into(),
        Json::String(record.level().as_str().to_owned()),
    );
    obj.insert("target".into(), Json::String(record.target().to_owned()));
    obj.insert("event".into(), Json::String(event));
    for (k, v) in fields {
        if !matches!(k.as_str(), "ts" | "level" | "target" | "msg") {
            obj.insert(k, v);
        }
    }
    obj.insert(
        "msg".into(),
        Json::String(redact(&record.args().to_string())),
    );
    let mut line = Json::Object(obj).to_string();
    line.push('\n');
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(msg: std::fmt::Arguments<'_>, kvs: &[(&str, &str)]) -> String {
        let kvs: Vec<(&str, Value<'_>)> = kvs.iter().map(|(k, v)| (*k, Value::from(*v))).collect();
        let record = log::Record::builder()
            .level(log::Level::Info)
            .target("layer1::feed")
            .args(msg)
            .key_values(&kvs)
            .build();
        format_record(&record, 1_795_787_470_123_000_000)
    }

    #[test]
    fn lines_are_json_with_required_fields() {
        let line = render(
            format_args!("open"),
            &[("event", "connection_state"), ("vendor", "kite")],
        );
        let v: Json = serde_json::from_str(&line).expect("json");
        assert_eq!(v["ts"], "2026-11-27T13:51:10.123Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["event"], "connection_state");
        assert_eq!(v["target"], "layer1::feed");
        assert_eq!(v["vendor"], "kite");
        assert_eq!(v["msg"], "open");
        assert!(line.ends_with('\n'));
    }

    #[test]
    fn tokens_in_messages_urls_and_fields_are_redacted() {
        let token = "LEAKME0123456789abcdef";
        let url = format!("wss://ws.kite.trade?api_key=kk_{token}&access_token={token}");
        let line = render(
            format_args!("connecting to {url} with Authorization: Bearer {token}"),
            &[
                ("event", "connecting"),
                ("url", &url),
                ("header", &format!("token kk:{token}")),
            ],
        );
        assert!(!line.contains(token), "{line}");
        let v: Json = serde_json::from_str(&line).expect("still valid json");
        assert!(v["url"]
            .as_str()
            .is_some_and(|u| u.starts_with("wss://ws.kite.trade?api_key=***")));
    }
}
