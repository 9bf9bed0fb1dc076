//! `layer1 decode [FILE]`: prints a capture's ticks as JSON lines.
//!
//! Reads a capture (stdin when no file), parses every frame with the engine's own parsers,
//! validates each tick as the engine would at that frame's receive time, and prints the ticks
//! that would reach the main topic, one JSON object per line (schema: `docs/tick-schema.md`),
//! with `receivedAt` from the record. Heartbeats, text frames and market-status messages print
//! nothing. Parse errors and validation rejections are counted and summarised on `err`.
//!
//! Exit semantics (see [`DecodeError::exit_code`]): 0 unless the file cannot be opened or read,
//! or is not a capture. A truncated last record (a capture cut off mid-write) is reported on
//! `err` and still exits 0, after every record before it was printed.
//!
//! JSON-feed records (vendor code 5) need the feed's field mapping, which is configuration, not
//! part of the capture: [`DecodeOptions::json_mapping`], built by [`json_mapping`] from
//! `--json-map`/`--json-exchange` or the engine's own `JSON_FEED_MAP`/`JSON_FEED_EXCHANGE` (the
//! environment and `.env`). Without one such records count as `PARSE_JSON_NOT_CONFIGURED` and
//! the summary says how to supply it.

use std::{
    collections::BTreeMap,
    fs::File,
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

use crate::{
    capture::{CaptureError, CaptureReader},
    encode::json::encode_json,
    parsers::{
        self,
        json::{JsonMapping, MappingError},
        FrameKind, FrameMeta, ParseError, TickSink,
    },
    tick::Tick,
    validate::{validate, ValidationLimits},
};

/// What a decode run saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeSummary {
    /// Records read.
    pub records: u64,
    /// Ticks printed.
    pub ticks: u64,
    /// Kite heartbeats.
    pub heartbeats: u64,
    /// Text frames.
    pub text_frames: u64,
    /// Non-tick events (text frames, market statuses).
    pub events: u64,
    /// Parse errors by stable code.
    pub parse_errors: BTreeMap<&'static str, u64>,
    /// Validation rejections by reason label.
    pub rejected: BTreeMap<&'static str, u64>,
    /// Records skipped as corrupt (unknown vendor or kind code).
    pub corrupt_records: u64,
    /// The file ended inside a record, or a record length made the rest unreadable.
    pub truncated: bool,
}

impl DecodeSummary {
    /// Total parse errors.
    pub fn parse_error_count(&self) -> u64 {
        self.parse_errors.values().sum()
    }
}

/// A decode that could not run to the end.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    /// The input file could not be opened.
    #[error("cannot open {path}: {source}")]
    Open {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The input is not a capture, or reading it failed.
    #[error("{0}")]
    Capture(#[from] CaptureError),
    /// Writing the output failed.
    #[error("cannot write output: {0}")]
    Output(io::Error),
    /// The JSON-feed mapping (`--json-map` or `JSON_FEED_MAP`) is not valid.
    #[error("invalid JSON feed mapping ({var}): {source}")]
    JsonMap {
        /// Where it came from: the option or the variable.
        var: &'static str,
        /// What is wrong.
        source: MappingError,
    },
}

impl DecodeError {
    /// The process exit code: 1 for an unreadable input or one that is not a capture; 0 for a
    /// closed output pipe (`layer1 decode f | head` is not a failure); 1 for other output errors;
    /// 2 for an invalid JSON mapping (a usage error).
    pub fn exit_code(&self) -> u8 {
        match self {
            DecodeError::Output(e) if e.kind() == io::ErrorKind::BrokenPipe => 0,
            DecodeError::JsonMap { .. } => 2,
            _ => 1,
        }
    }

    /// A stable code (`docs/errors.md`).
    pub const fn code(&self) -> &'static str {
        match self {
            DecodeError::Open { .. } => "DECODE_OPEN",
            DecodeError::Capture(_) => "DECODE_CAPTURE",
            DecodeError::Output(_) => "DECODE_OUTPUT",
            DecodeError::JsonMap { source, .. } => source.code(),
        }
    }
}

/// What a decode needs besides the capture.
#[derive(Debug, Clone, Default)]
pub struct DecodeOptions {
    /// The JSON feed's field mapping for vendor-code-5 records; installed for the run.
    pub json_mapping: Option<Arc<JsonMapping>>,
}

/// The JSON-feed mapping for a decode: `map` (`--json-map`) with `exchange`
/// (`--json-exchange`) when given, else `JSON_FEED_MAP` with `JSON_FEED_EXCHANGE` from `lookup`
/// (the engine's configuration: the environment and `.env`); the exchange defaults to `NSE` as
/// in the engine. `Ok(None)` when neither names a mapping.
///
/// # Errors
/// [`DecodeError::JsonMap`] naming the option or variable when the mapping does not parse.
pub fn json_mapping(
    map: Option<&str>,
    exchange: Option<&str>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Arc<JsonMapping>>, DecodeError> {
    let (spec, var) = match map {
        Some(m) => (m.to_owned(), "--json-map"),
        None => match lookup("JSON_FEED_MAP").filter(|v| !v.trim().is_empty()) {
            Some(m) => (m, "JSON_FEED_MAP"),
            None => return Ok(None),
        },
    };
    let exchange = exchange
        .map(str::to_owned)
        .or_else(|| lookup("JSON_FEED_EXCHANGE").filter(|v| !v.trim().is_empty()))
        .unwrap_or_else(|| "NSE".to_owned());
    JsonMapping::parse(&spec, &exchange)
        .map(|m| Some(Arc::new(m)))
        .map_err(|source| DecodeError::JsonMap {
            var: match (&source, map.is_some()) {
                (MappingError::Exchange(_), true) => "--json-exchange",
                (MappingError::Exchange(_), false) => "JSON_FEED_EXCHANGE",
                (_, true) => "--json-map",
                (_, false) => var,
            },
            source,
        })
}

struct Printer<'a, W: Write> {
    out: &'a mut W,
    line: Vec<u8>,
    limits: ValidationLimits,
    summary: DecodeSummary,
    write_error: Option<io::Error>,
}

impl<W: Write> TickSink for Printer<'_, W> {
    fn tick(&mut self, t: &Tick) {
        if let Err(r) = validate(t, t.received_at_ns, &self.limits) {
            *self.summary.rejected.entry(r.reason.label()).or_default() += 1;
            return;
        }
        if self.write_error.is_some() {
            return;
        }
        self.line.clear();
        encode_json(t, None, &mut self.line);
        self.line.push(b'\n');
        match self.out.write_all(&self.line) {
            Ok(()) => self.summary.ticks += 1,
            Err(e) => self.write_error = Some(e),
        }
    }

    fn reject(&mut self, err: &ParseError, _raw: &[u8]) {
        *self.summary.parse_errors.entry(err.code()).or_default() += 1;
    }
}

/// Decodes the capture at `input` (stdin when `None`) to JSON lines on `out`, with warnings and
/// the summary on `err`. The lead's `main` maps `Ok` to exit 0 and `Err(e)` to `e.exit_code()`.
///
/// # Errors
/// [`DecodeError`]: the input cannot be opened or read, is not a capture, or `out` fails.
pub fn run_decode(
    input: Option<&Path>,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<DecodeSummary, DecodeError> {
    run_decode_with(input, &DecodeOptions::default(), out, err)
}

/// [`run_decode`] with [`DecodeOptions`] (the JSON feed's mapping).
///
/// # Errors
/// As [`run_decode`].
pub fn run_decode_with(
    input: Option<&Path>,
    options: &DecodeOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<DecodeSummary, DecodeError> {
    match input {
        Some(path) => {
            let file = File::open(path).map_err(|source| DecodeError::Open {
                path: path.to_path_buf(),
                source,
            })?;
            decode_from_with(
                io::BufReader::with_capacity(1 << 16, file),
                options,
                out,
                err,
            )
        }
        None => decode_from_with(
            io::BufReader::with_capacity(1 << 16, io::stdin().lock()),
            options,
            out,
            err,
        ),
    }
}

/// [`run_decode`] over any reader.
///
/// # Errors
/// As [`run_decode`].
pub fn decode_from(
    input: impl Read,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<DecodeSummary, DecodeError> {
    decode_from_with(input, &DecodeOptions::default(), out, err)
}

/// [`decode_from`] with [`DecodeOptions`]: the JSON mapping, when given, is installed for the
/// parsers (process-wide, as the engine does at start-up).
///
/// # Errors
/// As [`run_decode`].
pub fn decode_from_with(
    input: impl Read,
    options: &DecodeOptions,
    out: &mut impl Write,
    err: &mut impl Write,
) -> Result<DecodeSummary, DecodeError> {
    if let Some(m) = &options.json_mapping {
        parsers::json::install(Arc::clone(m));
    }
    let mut reader = CaptureReader::new(input)?;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    let mut p = Printer {
        out: &mut out,
        line: Vec::with_capacity(2048),
        limits: ValidationLimits::default(),
        summary: DecodeSummary::default(),
        write_error: None,
    };
    let mut payload = Vec::new();
    loop {
        let rec = match reader.next_record(&mut payload) {
            Ok(Some(rec)) => rec,
            Ok(None) => break,
            Err(e @ CaptureError::TruncatedRecord { .. }) => {
                p.summary.truncated = true;
                // Stderr is best effort: a closed stderr must not turn a decode into a failure.
                let _ = writeln!(err, "layer1 decode: warning: {e}");
                break;
            }
            Err(e) if e.is_resumable() => {
                p.summary.corrupt_records += 1;
                let _ = writeln!(err, "layer1 decode: warning: {e}; record skipped");
                continue;
            }
            Err(e @ CaptureError::CorruptRecord { .. }) => {
                p.summary.truncated = true;
                let _ = writeln!(err, "layer1 decode: warning: {e}; rest of file skipped");
                break;
            }
            Err(e) => return Err(e.into()),
        };
        p.summary.records += 1;
        if rec.kind == FrameKind::Text {
            p.summary.text_frames += 1;
        }
        let meta = FrameMeta {
            received_at_ns: rec.received_at_ns,
            conn_id: rec.conn_id,
        };
        let o = parsers::parse_frame(rec.vendor, rec.kind, &payload, &meta, &mut p);
        p.summary.events += u64::from(o.events);
        if o.heartbeat {
            p.summary.heartbeats += 1;
        }
        if let Some(e) = p.write_error.take() {
            return Err(DecodeError::Output(e));
        }
    }
    let summary = p.summary;
    out.flush().map_err(DecodeError::Output)?;
    let _ = write_summary(err, &summary);
    Ok(summary)
}

fn write_summary(err: &mut impl Write, s: &DecodeSummary) -> io::Result<()> {
    write!(
        err,
        "layer1 decode: {} records, {} ticks, {} heartbeats, {} text frames, {} parse errors",
        s.records,
        s.ticks,
        s.heartbeats,
        s.text_frames,
        s.parse_error_count()
    )?;
    for (code, n) in &s.parse_errors {
        write!(err, " [{code}: {n}]")?;
    }
    write!(err, ", {} rejected", s.rejected.values().sum::<u64>())?;
    for (label, n) in &s.rejected {
        write!(err, " [{label}: {n}]")?;
    }
    if s.corrupt_records > 0 {
        write!(err, ", {} corrupt records skipped", s.corrupt_records)?;
    }
    if s.truncated {
        write!(err, ", capture truncated")?;
    }
    writeln!(err)?;
    if s.parse_errors.contains_key("PARSE_JSON_NOT_CONFIGURED") {
        writeln!(
            err,
            "layer1 decode: JSON-feed records need the feed's mapping: set JSON_FEED_MAP (and JSON_FEED_EXCHANGE) in the environment or .env, or pass --json-map SPEC [--json-exchange EX]"
        )?;
    }
    Ok(())
}
