//! `layer1 replay CAPTURE [--paced]`: feeds a capture file through the same pipeline (parsers,
//! validator, hand-over queue) and producer thread as live frames, so any recorded market day
//! can be re-ingested. Ticks keep the receive time recorded in the capture, so a replay of a
//! live run yields byte-identical tick payloads. Raw frames are not produced again (they are in
//! `market.raw` already, and in the capture).

use std::{
    fs::File,
    io::BufReader,
    path::Path,
    time::{Duration, Instant},
};

use crate::{
    capture::{CaptureError, CaptureReader},
    config::Config,
    feed::{FrameHandler, FrameMeta},
    pipeline::{Pipeline, PipelineCounts},
    producer::{self, FlushReport, ProducerError, ProducerSettings},
    validate::ValidationLimits,
};

/// What a replay did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplaySummary {
    /// Frames, ticks and rejects that went through the pipeline.
    pub pipeline: PipelineCounts,
    /// The producer's accounting.
    pub producer: FlushReport,
    /// The capture ended in a truncated record (reported, not fatal).
    pub truncated: bool,
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// The file cannot be opened or is not a capture.
    #[error("capture {path}: {source}")]
    Capture {
        /// The file.
        path: String,
        /// What is wrong.
        #[source]
        source: CaptureError,
    },
    /// The file cannot be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The file.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The producer could not start or stop.
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

impl crate::error::ErrorCode for ReplayError {
    fn code(&self) -> &'static str {
        match self {
            ReplayError::Capture { .. } => "REPLAY_NOT_A_CAPTURE",
            ReplayError::Open { .. } => "REPLAY_OPEN",
            ReplayError::Producer(e) => e.code(),
        }
    }
}

/// Replays `path` into the topics of `config`; `paced` keeps the recorded inter-frame timing.
///
/// # Errors
/// [`ReplayError`] when the file is unreadable or not a capture, or the producer fails.
pub fn run(config: &Config, path: &Path, paced: bool) -> Result<ReplaySummary, ReplayError> {
    let shown = path.display().to_string();
    let file = File::open(path).map_err(|source| ReplayError::Open {
        path: shown.clone(),
        source,
    })?;
    let mut reader =
        CaptureReader::new(BufReader::with_capacity(1 << 20, file)).map_err(|source| {
            ReplayError::Capture {
                path: shown.clone(),
                source,
            }
        })?;
    // Topics made beforehand with a smaller limit refuse the batches that would not fit it.
    let mut kafka = config.kafka.clone();
    producer::fit_batches_to_topics(&mut kafka);
    let (tx, rx) = producer::queue(config.threads.queue_capacity);
    let handle = producer::spawn(
        ProducerSettings {
            kafka,
            journal: config.journal.clone(),
            core: None,
            rt_priority: None,
            flush_timeout: config.shutdown_timeout,
            batch: 4096,
            capture_dir: None,
            live_coverage: None,
            topics_ready: None,
        },
        vec![rx],
    )?;
    // JSON-feed records parse with the configured mapping, as in the engine.
    if let Some(j) = &config.vendors.json {
        crate::parsers::json::install(std::sync::Arc::clone(&j.mapping));
    }
    let mut pipeline =
        Pipeline::new(tx, ValidationLimits::default(), false).with_wake(handle.wake());
    let mut buf = Vec::with_capacity(64 * 1024);
    let mut truncated = false;
    let started = Instant::now();
    let mut first_ns: Option<u64> = None;
    loop {
        let rec = match reader.next_record(&mut buf) {
            Ok(Some(r)) => r,
            Ok(None) => break,
            Err(e) if e.is_resumable() => {
                log::warn!(event = "replay_corrupt_record", path = shown.as_str(); "{e}; skipped");
                continue;
            }
            Err(source) => {
                log::error!(event = "replay_read_failed", path = shown.as_str(); "{source}");
                truncated = true;
                break;
            }
        };
        if paced {
            let first = *first_ns.get_or_insert(rec.received_at_ns);
            let due = Duration::from_nanos(rec.received_at_ns.saturating_sub(first));
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        let meta = FrameMeta {
            conn: rec.conn_id,
            vendor: rec.vendor,
            kind: rec.kind,
            received_at_ns: rec.received_at_ns,
        };
        pipeline.frame(&meta, &buf);
    }
    let counts = pipeline.counts();
    drop(pipeline);
    let producer = handle.join()?;
    log::info!(event = "replay_done", frames = counts.frames, ticks = counts.ticks, rejects = counts.rejects; "replay finished");
    Ok(ReplaySummary {
        pipeline: counts,
        producer,
        truncated,
    })
}
