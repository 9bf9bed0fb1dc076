//! The producer thread's capture files (`CAPTURE_DIR`): every raw frame written as received, in
//! the format of `docs/capture-format.md` ([`crate::capture`]), and what happens when the disk
//! fails one. A failed write or flush closes the file (it may end cut off, which readers skip),
//! the frames not known to be in it and every frame until a new file opens are counted in
//! `capture_frames_missed_total` (an upper bound: frames not yet flushed count as missed), and a
//! new file is tried every [`CAPTURE_RETRY`]. Kafka delivery never waits on a capture.

use std::{
    fs::File,
    io::{self, BufWriter},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::RawFrame;
use crate::capture::{CaptureWriter, Record};

/// How long after a capture file fails a new one is tried, and again while that fails.
pub const CAPTURE_RETRY: Duration = Duration::from_secs(5);

type CaptureFile = CaptureWriter<BufWriter<File>>;

/// The capture files of one run, in `dir`.
pub(super) struct CaptureFiles {
    dir: PathBuf,
    state: State,
}

enum State {
    /// A file is open; `unflushed` frames were written since its last flush (not known to be
    /// on disk).
    Writing { file: CaptureFile, unflushed: u64 },
    /// The last file failed (the disk full, say); `missed` frames since, a new one at
    /// `retry_at`.
    Gap { retry_at: Instant, missed: u64 },
}

impl CaptureFiles {
    /// Opens the run's first capture file in `dir`.
    ///
    /// # Errors
    /// The file cannot be created or its header written: the engine does not start with a
    /// capture it was asked for and cannot write.
    pub(super) fn open(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            dir: dir.to_owned(),
            state: State::Writing {
                file: open_file(dir)?,
                unflushed: 0,
            },
        })
    }

    /// Writes a raw frame, or counts it as missed while no file is open.
    pub(super) fn write(&mut self, r: &RawFrame) {
        match &mut self.state {
            State::Writing { file, unflushed } => {
                let rec = Record {
                    received_at_ns: r.received_at_ns,
                    vendor: r.vendor,
                    kind: r.kind,
                    conn_id: r.conn_id,
                };
                match file.write_record(&rec, &r.payload) {
                    Ok(()) => *unflushed += 1,
                    Err(e) => {
                        let missed = *unflushed + 1;
                        self.fail(&e, missed);
                    }
                }
            }
            State::Gap { missed, .. } => {
                *missed += 1;
                crate::metrics::global().capture_frames_missed_total.inc();
            }
        }
    }

    /// Once per producer turn: flushes the open file, or tries a new one once the retry time
    /// of a gap has come.
    pub(super) fn turn(&mut self) {
        match &mut self.state {
            State::Writing { file, unflushed } => match file.flush() {
                Ok(()) => *unflushed = 0,
                Err(e) => {
                    let missed = *unflushed;
                    self.fail(&e, missed);
                }
            },
            State::Gap { retry_at, missed } => {
                if Instant::now() < *retry_at {
                    return;
                }
                match open_file(&self.dir) {
                    Ok(file) => {
                        log::warn!(event = "capture_resumed", missed = *missed; "a new capture file is open; {} raw frames since the failure are missing from the captures (at most)", *missed);
                        self.state = State::Writing { file, unflushed: 0 };
                    }
                    Err(_) => *retry_at = Instant::now() + CAPTURE_RETRY,
                }
            }
        }
    }

    /// The open file failed: closed (dropping it may write part of its buffer, so it may end
    /// cut off), `missed` frames counted, and a gap until a new file opens.
    fn fail(&mut self, e: &io::Error, missed: u64) {
        crate::metrics::global()
            .capture_frames_missed_total
            .inc_by(missed);
        log::error!(event = "capture_write_failed", code = "CAPTURE_IO"; "{e}; raw frames are not captured until a new capture file opens (tried every {} s)", CAPTURE_RETRY.as_secs());
        self.state = State::Gap {
            retry_at: Instant::now() + CAPTURE_RETRY,
            missed,
        };
    }
}

/// Creates `capture-<unix ms>.l1cap` in `dir`, its header written through to the disk: a disk
/// that cannot take it leaves no empty file behind.
fn open_file(dir: &Path) -> io::Result<CaptureFile> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("capture-{}.l1cap", crate::clock::now_unix_ms()));
    let file = std::fs::OpenOptions::new()
        .create_new(true)
        .write(true)
        .open(&path)?;
    let opened = CaptureWriter::new(BufWriter::with_capacity(1 << 20, file)).and_then(|mut c| {
        c.flush()?;
        Ok(c)
    });
    match opened {
        Ok(c) => {
            log::info!(event = "capture_started", path = path.display().to_string(); "writing raw frames to a capture file");
            Ok(c)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&path);
            Err(e)
        }
    }
}
