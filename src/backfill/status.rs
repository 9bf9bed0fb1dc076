//! The job status a UI renders: JSON in Redis key `system:layer1:backfill`, and every change
//! PUBLISHed on `system:layer1:backfill:events` (the same JSON, with `event` naming the change).
//!
//! One [`StatusBoard`] per engine keeps the current [`Status`] in memory and writes it; updates
//! from the control thread (refusals) and the job thread (progress) are serialised by its mutex,
//! so Redis always holds the latest whole state. A Redis failure is logged and retried on the next
//! change; it never stops a job by itself.

use std::{sync::Mutex, time::Duration};

use serde::Serialize;

/// The job's lifecycle state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// No job has run since the key was created.
    Idle,
    /// A job is running.
    Running,
    /// The last job finished; every instrument was served.
    Completed,
    /// The last job failed (see `reason` and `errors`).
    Failed,
    /// The last trigger was refused (see `reason`).
    Refused,
}

/// Progress counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Progress {
    /// Instruments finished (served or failed).
    pub instruments_done: usize,
    /// Instruments in the job.
    pub instruments_total: usize,
    /// Candles produced to Kafka.
    pub candles_done: u64,
    /// Missing candle slots found before fetching (an upper bound: minutes without trades have
    /// no candle).
    pub candles_total: u64,
    /// REST requests sent.
    pub api_calls: u64,
    /// Requests answered 429 (including the vendor's injected bursts).
    pub rate_limited: u64,
    /// Retries after 429, 5xx or transport errors.
    pub retries: u64,
}

/// One error of the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JobError {
    /// When (RFC 3339 UTC).
    pub at: String,
    /// Instrument, when the error belongs to one.
    pub instrument: Option<String>,
    /// Stable code.
    pub code: &'static str,
    /// Message (never a credential or URL).
    pub message: String,
}

/// A trigger refused while a job ran (the running job's status is kept; this says who knocked).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RefusalNote {
    /// When.
    pub at: String,
    /// The refused trigger.
    pub trigger: String,
    /// Stable code.
    pub code: &'static str,
    /// Why.
    pub reason: String,
}

/// The whole status document.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Status {
    /// State.
    pub state: State,
    /// What changed last: `idle`, `started`, `progress`, `completed`, `failed`, `refused`,
    /// `refused-while-running`.
    pub event: &'static str,
    /// Engine that wrote this.
    pub engine: String,
    /// Job id (`engine:nonce`), when a job ran.
    pub job_id: Option<String>,
    /// `redis`, `http`, `auto-close`, `auto-startup`, ...
    pub trigger: Option<String>,
    /// Market status when the trigger was looked at.
    pub market: Option<&'static str>,
    /// Whether the trigger said `force`.
    pub force: bool,
    /// Interval name.
    pub interval: Option<String>,
    /// Trading days covered (`YYYY-MM-DD`, oldest first).
    pub days: Vec<String>,
    /// Start (RFC 3339 UTC).
    pub started_at: Option<String>,
    /// End (RFC 3339 UTC).
    pub finished_at: Option<String>,
    /// Last write (RFC 3339 UTC).
    pub updated_at: String,
    /// Counters.
    pub progress: Progress,
    /// Instrument being fetched.
    pub current_instrument: Option<String>,
    /// Errors, oldest first, at most [`MAX_ERRORS`].
    pub errors: Vec<JobError>,
    /// Errors not kept because the list was full.
    pub errors_dropped: u64,
    /// Why the job failed or the trigger was refused.
    pub reason: Option<String>,
    /// Code of `reason`.
    pub reason_code: Option<&'static str>,
    /// The last trigger refused while this job ran.
    pub refused_while_running: Option<RefusalNote>,
}

/// Bound on [`Status::errors`].
pub const MAX_ERRORS: usize = 20;

impl Status {
    /// The idle document of an engine.
    pub fn idle(engine: &str) -> Status {
        Status {
            state: State::Idle,
            event: "idle",
            engine: engine.to_owned(),
            job_id: None,
            trigger: None,
            market: None,
            force: false,
            interval: None,
            days: Vec::new(),
            started_at: None,
            finished_at: None,
            updated_at: now_rfc3339(),
            progress: Progress::default(),
            current_instrument: None,
            errors: Vec::new(),
            errors_dropped: 0,
            reason: None,
            reason_code: None,
            refused_while_running: None,
        }
    }

    /// Appends an error, keeping the list bounded (the oldest are kept: the first failure is
    /// usually the cause).
    pub fn push_error(&mut self, instrument: Option<&str>, code: &'static str, message: String) {
        if self.errors.len() >= MAX_ERRORS {
            self.errors_dropped += 1;
            return;
        }
        self.errors.push(JobError {
            at: now_rfc3339(),
            instrument: instrument.map(str::to_owned),
            code,
            message,
        });
    }
}

/// Wall-clock time as RFC 3339 (status times are real times even under a test clock).
pub fn now_rfc3339() -> String {
    crate::clock::format_rfc3339_ms(crate::clock::now_unix_ns())
}

/// Key names of a status board.
#[derive(Debug, Clone)]
pub struct StatusKeys {
    /// The status key (`system:layer1:backfill`).
    pub key: String,
    /// The change channel (`system:layer1:backfill:events`).
    pub channel: String,
}

/// Holds and writes the engine's status.
#[derive(Debug)]
pub struct StatusBoard {
    client: redis::Client,
    keys: StatusKeys,
    inner: Mutex<Inner>,
}

struct Inner {
    status: Status,
    con: Option<redis::Connection>,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("status", &self.status)
            .field("connected", &self.con.is_some())
            .finish()
    }
}

impl StatusBoard {
    /// A board for `engine`; writes the idle document only if the key does not exist yet (another
    /// engine's job status is never overwritten at start-up).
    pub fn new(client: redis::Client, keys: StatusKeys, engine: &str) -> StatusBoard {
        let board = StatusBoard {
            client,
            keys,
            inner: Mutex::new(Inner {
                status: Status::idle(engine),
                con: None,
            }),
        };
        let mut inner = board.lock();
        if let Ok(json) = serde_json::to_string(&inner.status) {
            let key = board.keys.key.clone();
            let _ = board.with_con(&mut inner, |con| {
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&json)
                    .arg("NX")
                    .query::<Option<String>>(con)
                    .map(|_| ())
            });
        }
        drop(inner);
        board
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock leaves a consistent Status (every update is a plain
        // assignment), so the poison is ignored.
        match self.inner.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    fn with_con(
        &self,
        inner: &mut Inner,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<()>,
    ) -> redis::RedisResult<()> {
        if inner.con.is_none() {
            let con = self
                .client
                .get_connection_with_timeout(Duration::from_secs(2))?;
            con.set_read_timeout(Some(Duration::from_secs(2)))?;
            con.set_write_timeout(Some(Duration::from_secs(2)))?;
            inner.con = Some(con);
        }
        let Some(con) = inner.con.as_mut() else {
            return Ok(());
        };
        let r = f(con);
        if r.is_err() {
            inner.con = None;
        }
        r
    }

    /// Applies `f` to the status, then SETs and PUBLISHes it with `event`.
    pub fn update(&self, event: &'static str, f: impl FnOnce(&mut Status)) {
        let mut inner = self.lock();
        f(&mut inner.status);
        inner.status.event = event;
        inner.status.updated_at = now_rfc3339();
        let Ok(json) = serde_json::to_string(&inner.status) else {
            return;
        };
        let (key, channel) = (self.keys.key.clone(), self.keys.channel.clone());
        let written = self.with_con(&mut inner, |con| {
            redis::pipe()
                .cmd("SET")
                .arg(&key)
                .arg(&json)
                .ignore()
                .cmd("PUBLISH")
                .arg(&channel)
                .arg(&json)
                .ignore()
                .query::<()>(con)
        });
        if let Err(e) = written {
            log::warn!(event = "backfill_status_write_failed", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
        }
    }

    /// PUBLISHes `status` with `event` without touching the key or this board's state (a refusal
    /// by an engine that does not own the current job).
    pub fn publish_only(&self, event: &'static str, mut status: Status) {
        status.event = event;
        status.updated_at = now_rfc3339();
        let Ok(json) = serde_json::to_string(&status) else {
            return;
        };
        let channel = self.keys.channel.clone();
        let mut inner = self.lock();
        let r = self.with_con(&mut inner, |con| {
            redis::cmd("PUBLISH")
                .arg(&channel)
                .arg(&json)
                .query::<i64>(con)
                .map(|_| ())
        });
        if let Err(e) = r {
            log::warn!(event = "backfill_status_write_failed", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
        }
    }

    /// A copy of the current status.
    pub fn snapshot(&self) -> Status {
        self.lock().status.clone()
    }
}
