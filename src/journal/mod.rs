//! The outage journal: an append-only, segmented, checksummed on-disk queue of encoded Kafka
//! records, used by the producer thread while Kafka is down or slow and drained back, oldest
//! first, when it returns. It survives restarts: the producer drains it at start-up.
//!
//! Layout: `JOURNAL_DIR/<class>-<number>.seg`. Class 0 ("rescue") holds records that had been
//! handed to Kafka before an outage and came back failed; they are older than anything spilled
//! afterwards, so every class-0 segment drains before any class-1 ("spill") segment. Within a
//! class, segments drain in number order. Each record is
//! `u32 len | u32 crc32(body) | body`, body = `u8 topic | u16 key len | key | u8 header count |
//! (u8 name len | name | u16 value len | value)* | u32 payload len | payload`, little-endian.
//! A torn tail (a crash mid-write) fails its checksum or length and ends that segment's records;
//! it is reported, never replayed.
//!
//! Draining reads a segment into a buffer kept from the segment before ([`LoadedSegment`]),
//! checks every record once, keeping where its fields lie, and hands out views cut at those
//! offsets ([`RecordView`]): nothing is copied, allocated or walked twice per record.
//!
//! A disk that refuses (full, read-only, failing) costs no record the journal took: what it has
//! not written stays buffered and is written again; a segment that must be sealed to drain, or
//! records Kafka handed back, are held in memory and drain from there; a record the disk cut
//! short is cut off; a drained segment it will not delete is not drained again; a segment it
//! cannot read is set aside after [`MAX_READ_ATTEMPTS`] instead of holding the drain
//! (`docs/delivery.md`, The journal).

use std::{
    fs::{self, File, OpenOptions},
    io::{self, BufWriter, Read, Write},
    path::{Path, PathBuf},
};

use thiserror::Error;

use crate::{config::FsyncPolicy, error::ErrorCode};

/// A segment is sealed once it reaches this size; draining reads one segment at a time.
pub const SEGMENT_BYTES: u64 = 8 * 1024 * 1024;
/// Reads of a segment that fail before it is set aside ([`JournalError::Quarantined`]): a
/// transient error gets a second and third chance (the producer tries again at its probe's
/// pace, 500 ms), a bad sector does not wedge the drain, and every record after it, for ever.
pub const MAX_READ_ATTEMPTS: u32 = 3;
const HEADER: usize = 8;

/// Journal failures.
#[derive(Debug, Error)]
pub enum JournalError {
    /// The disk cap (`JOURNAL_MAX_BYTES`) is reached; the record was not written.
    #[error("journal full: {bytes} bytes on disk, cap {cap}")]
    Full {
        /// Bytes on disk.
        bytes: u64,
        /// The cap.
        cap: u64,
    },
    /// An I/O error on the journal directory.
    #[error("journal I/O on {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A record too large for the format (key > 64 KiB, payload > 4 GiB, > 255 headers).
    #[error("record does not fit the journal format")]
    RecordTooLarge,
    /// A segment that could not be read in [`MAX_READ_ATTEMPTS`] attempts was set aside,
    /// renamed `*.quarantined` where the disk allows (a start-up ignores that name; renamed
    /// back to `.seg`, it is drained at the next start): its records are not drained.
    #[error("journal segment {path} unreadable after {attempts} attempts ({source}); set aside as {kept}: {bytes} bytes of records not drained")]
    Quarantined {
        /// The segment's file.
        path: PathBuf,
        /// Where it is now.
        kept: PathBuf,
        /// Its size in the journal's index.
        bytes: u64,
        /// Reads tried.
        attempts: u32,
        /// The last read's error.
        #[source]
        source: io::Error,
    },
}

impl ErrorCode for JournalError {
    fn code(&self) -> &'static str {
        match self {
            JournalError::Full { .. } => "JOURNAL_FULL",
            JournalError::Io { .. } => "JOURNAL_IO",
            JournalError::RecordTooLarge => "JOURNAL_RECORD_TOO_LARGE",
            JournalError::Quarantined { .. } => "JOURNAL_SEGMENT_QUARANTINED",
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A record borrowed for writing.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    /// Topic code (the producer's `Topic` as u8).
    pub topic: u8,
    /// Key bytes (empty for none).
    pub key: &'a [u8],
    /// Headers.
    pub headers: &'a [(&'a str, &'a [u8])],
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// A record read back from a segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRecord {
    /// Topic code.
    pub topic: u8,
    /// Key bytes (empty for none).
    pub key: Vec<u8>,
    /// Headers.
    pub headers: Vec<(String, Vec<u8>)>,
    /// Payload bytes.
    pub payload: Vec<u8>,
}

impl OwnedRecord {
    /// Borrows the record for writing.
    pub fn write_to(&self, buf: &mut Vec<u8>) -> Result<(), JournalError> {
        let headers: Vec<(&str, &[u8])> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        encode(
            &RecordRef {
                topic: self.topic,
                key: &self.key,
                headers: &headers,
                payload: &self.payload,
            },
            buf,
        )
    }
}

/// Appends the framed encoding of `r` to `buf`.
///
/// # Errors
/// [`JournalError::RecordTooLarge`] when a length does not fit its field.
pub fn encode(r: &RecordRef<'_>, buf: &mut Vec<u8>) -> Result<(), JournalError> {
    let start = buf.len();
    buf.extend_from_slice(&[0u8; HEADER]);
    buf.push(r.topic);
    let klen = u16::try_from(r.key.len()).map_err(|_| JournalError::RecordTooLarge)?;
    buf.extend_from_slice(&klen.to_le_bytes());
    buf.extend_from_slice(r.key);
    buf.push(u8::try_from(r.headers.len()).map_err(|_| JournalError::RecordTooLarge)?);
    for (name, value) in r.headers {
        buf.push(u8::try_from(name.len()).map_err(|_| JournalError::RecordTooLarge)?);
        buf.extend_from_slice(name.as_bytes());
        buf.extend_from_slice(
            &u16::try_from(value.len())
                .map_err(|_| JournalError::RecordTooLarge)?
                .to_le_bytes(),
        );
        buf.extend_from_slice(value);
    }
    buf.extend_from_slice(
        &u32::try_from(r.payload.len())
            .map_err(|_| JournalError::RecordTooLarge)?
            .to_le_bytes(),
    );
    buf.extend_from_slice(r.payload);
    let body = buf.get(start + HEADER..).unwrap_or(&[]);
    let len = u32::try_from(body.len()).map_err(|_| JournalError::RecordTooLarge)?;
    let crc = crc32fast::hash(body);
    let mut header = [0u8; HEADER];
    header[..4].copy_from_slice(&len.to_le_bytes());
    header[4..].copy_from_slice(&crc.to_le_bytes());
    if let Some(h) = buf.get_mut(start..start + HEADER) {
        h.copy_from_slice(&header);
    }
    Ok(())
}

#[derive(Debug, Clone)]
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let s = self.buf.get(self.pos..self.pos.checked_add(n)?)?;
        self.pos += n;
        Some(s)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).and_then(|b| b.first().copied())
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2)
            .and_then(|b| b.try_into().ok())
            .map(u16::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take(4)
            .and_then(|b| b.try_into().ok())
            .map(u32::from_le_bytes)
    }
}

/// The headers of a [`RecordView`], read from the segment's bytes as they are iterated.
#[derive(Debug, Clone)]
pub struct Headers<'a> {
    c: Cursor<'a>,
    left: u8,
}

impl<'a> Iterator for Headers<'a> {
    type Item = (&'a str, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        self.left = self.left.checked_sub(1)?;
        let nlen = usize::from(self.c.u8()?);
        let name = std::str::from_utf8(self.c.take(nlen)?).ok()?;
        let vlen = usize::from(self.c.u16()?);
        Some((name, self.c.take(vlen)?))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        // Exact: a view is only made of a body whose every header was read once already.
        (usize::from(self.left), Some(usize::from(self.left)))
    }
}

impl ExactSizeIterator for Headers<'_> {}

/// A record of a loaded segment, borrowed from the segment's bytes (nothing copied).
#[derive(Debug, Clone)]
pub struct RecordView<'a> {
    /// Topic code.
    pub topic: u8,
    /// Key bytes (empty for none).
    pub key: &'a [u8],
    /// Headers, in order.
    pub headers: Headers<'a>,
    /// Payload bytes.
    pub payload: &'a [u8],
}

/// Where a well-formed record body's fields lie, found by walking it once at load so that reading
/// the record later ([`LoadedSegment::get`]) walks nothing but the headers it sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layout {
    /// Offset of the first header (after topic, key length, key and header count).
    headers_at: usize,
    /// Offset of the payload's length field, right after the last header.
    headers_end: usize,
    /// Number of headers.
    count: u8,
}

/// Walks a record body; `None` unless it is well formed to its last byte (every header whole,
/// names UTF-8, the payload ending the body).
fn layout(body: &[u8]) -> Option<Layout> {
    let mut c = Cursor { buf: body, pos: 0 };
    c.u8()?;
    let klen = usize::from(c.u16()?);
    c.take(klen)?;
    let count = c.u8()?;
    let headers_at = c.pos;
    let mut walk = Headers { c, left: count };
    for _ in 0..count {
        walk.next()?;
    }
    let mut c = walk.c;
    let headers_end = c.pos;
    let plen = usize::try_from(c.u32()?).ok()?;
    c.take(plen)?;
    (c.pos == body.len()).then_some(Layout {
        headers_at,
        headers_end,
        count,
    })
}

impl Layout {
    /// The record in `body`, the body this layout was found in: fields cut at the offsets found,
    /// nothing walked. Every cut is bounds-checked, so a body and layout that do not belong
    /// together give `None` or headers that end early, never a panic.
    fn view(self, body: &[u8]) -> Option<RecordView<'_>> {
        let key = body.get(3..self.headers_at.checked_sub(1)?)?;
        let headers = Headers {
            c: Cursor {
                buf: body.get(..self.headers_end)?,
                pos: self.headers_at,
            },
            left: self.count,
        };
        Some(RecordView {
            topic: *body.first()?,
            key,
            headers,
            payload: body.get(self.headers_end.checked_add(4)?..)?,
        })
    }
}

/// Reads a record body; `None` unless it is well formed to its last byte.
#[cfg(test)]
fn view_body(body: &[u8]) -> Option<RecordView<'_>> {
    layout(body)?.view(body)
}

/// Where one record lies in a segment's bytes: its frame (length, checksum, body) starts at
/// `start`, its body is the `len` bytes after the frame header, laid out as `layout` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Span {
    start: usize,
    len: usize,
    layout: Layout,
}

impl Span {
    fn body(self) -> std::ops::Range<usize> {
        self.start + HEADER..self.start + HEADER + self.len
    }

    fn frame(self) -> std::ops::Range<usize> {
        self.start..self.start + HEADER + self.len
    }
}

/// Indexes every intact record of a segment's bytes into `spans` (cleared first); returns true
/// when a torn or corrupt tail was found (and left out).
fn index(buf: &[u8], spans: &mut Vec<Span>) -> bool {
    spans.clear();
    let mut c = Cursor { buf, pos: 0 };
    while c.pos < buf.len() {
        let start = c.pos;
        let (Some(len), Some(crc)) = (c.u32(), c.u32()) else {
            return true;
        };
        let Some(body) = usize::try_from(len).ok().and_then(|l| c.take(l)) else {
            return true;
        };
        if crc32fast::hash(body) != crc {
            return true;
        }
        let Some(layout) = layout(body) else {
            return true;
        };
        spans.push(Span {
            start,
            len: body.len(),
            layout,
        });
    }
    false
}

/// A segment's identity: drain order is `(class, number)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId {
    /// 0 = rescue, 1 = spill.
    pub class: u8,
    /// Monotonic number.
    pub number: u64,
}

impl SegmentId {
    fn file_name(self) -> String {
        format!("{}-{:020}.seg", self.class, self.number)
    }

    fn parse(name: &str) -> Option<SegmentId> {
        let stem = name.strip_suffix(".seg")?;
        let (class, number) = stem.split_once('-')?;
        Some(SegmentId {
            class: class.parse().ok()?,
            number: number.parse().ok()?,
        })
    }
}

/// A segment loaded for draining: its bytes as read from disk and where each intact record
/// lies in them. Records are read in place ([`LoadedSegment::get`]); the buffers are reused by
/// the next [`Journal::load_oldest`] into the same value, so draining allocates per segment at
/// most, never per record.
#[derive(Default)]
pub struct LoadedSegment {
    id: Option<SegmentId>,
    bytes: Vec<u8>,
    spans: Vec<Span>,
}

impl std::fmt::Debug for LoadedSegment {
    // Not the bytes: a segment is megabytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedSegment")
            .field("id", &self.id)
            .field("bytes", &self.bytes.len())
            .field("records", &self.spans.len())
            .finish()
    }
}

impl LoadedSegment {
    /// Which segment (`None` before the first load).
    pub fn id(&self) -> Option<SegmentId> {
        self.id
    }

    /// Intact records in it.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    /// True when it holds no intact record.
    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Record `i`, in order, borrowed from the segment's bytes.
    pub fn get(&self, i: usize) -> Option<RecordView<'_>> {
        let span = self.spans.get(i)?;
        span.layout.view(self.bytes.get(span.body())?)
    }

    /// Record `i`'s frame as it is on disk (length, checksum, body), to copy it unchanged.
    fn frame(&self, i: usize) -> Option<&[u8]> {
        self.bytes.get(self.spans.get(i)?.frame())
    }
}

struct Writer {
    id: SegmentId,
    file: BufWriter<File>,
    bytes: u64,
}

/// The journal directory.
pub struct Journal {
    dir: PathBuf,
    cap: u64,
    fsync: FsyncPolicy,
    /// Sealed segments on disk, in drain order.
    sealed: Vec<(SegmentId, u64)>,
    writer: Option<Writer>,
    /// Sealed segments, or their last bytes, that the disk refused (full, or failing): the open
    /// segment's unwritten tail when it had to be sealed to drain it, a rescue segment whole.
    /// Their records drain from the file (if any) and these bytes together, and the bytes go
    /// with the segment at [`Journal::commit`] or [`Journal::replace`]. Without them a full disk
    /// would hold the drain that frees it: the open segment could not be sealed, nor the
    /// records Kafka handed back be journaled ahead of it, until the disk had room again.
    unwritten: Vec<(SegmentId, Vec<u8>)>,
    /// Drained segments whose files the disk refused to delete (read-only, failing): out of
    /// the index, so never sent again in this run, and deleted at the next commit or close
    /// that can.
    undeleted: Vec<SegmentId>,
    /// The oldest segment's failed reads so far ([`MAX_READ_ATTEMPTS`]).
    read_failures: Option<(SegmentId, u32)>,
    next_number: u64,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("bytes", &self.bytes())
            .finish()
    }
}

impl Journal {
    /// Opens (creating it if needed) the journal directory and indexes its segments.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the directory cannot be created or listed.
    pub fn open(dir: &Path, cap: u64, fsync: FsyncPolicy) -> Result<Journal, JournalError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let mut sealed = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(SegmentId::parse) else {
                // Leftover temporaries from a crash during a rewrite are not data.
                if name.to_str().is_some_and(|n| n.ends_with(".tmp")) {
                    let _ = fs::remove_file(entry.path());
                }
                continue;
            };
            let len = entry.metadata().map_err(io_err(&entry.path()))?.len();
            if len == 0 {
                let _ = fs::remove_file(entry.path());
                continue;
            }
            sealed.push((id, len));
        }
        sealed.sort_unstable();
        let next_number = sealed
            .iter()
            .map(|(id, _)| id.number + 1)
            .max()
            .unwrap_or(1);
        Ok(Journal {
            dir: dir.to_owned(),
            cap,
            fsync,
            sealed,
            writer: None,
            unwritten: Vec::new(),
            undeleted: Vec::new(),
            read_failures: None,
            next_number,
            scratch: Vec::with_capacity(4096),
        })
    }

    /// Bytes journaled: sealed segments plus what the open segment has taken, written or still
    /// buffered (and the bytes of a sealed segment the disk refused, [`Journal::unwritten_bytes`]).
    pub fn bytes(&self) -> u64 {
        self.sealed.iter().map(|(_, b)| *b).sum::<u64>()
            + self.writer.as_ref().map_or(0, |w| w.bytes)
    }

    /// True when the journal could take a whole segment's worth of records again (half its cap
    /// when the cap is under two segments): how the producer tells that a refusal at the cap is
    /// over without flapping between records refused and records that just fit under it.
    pub fn has_room(&self) -> bool {
        let margin = SEGMENT_BYTES.min(self.cap / 2);
        self.bytes().saturating_add(margin) <= self.cap
    }

    /// Bytes of journaled records held only in memory because the disk refused them (full, or
    /// failing): the open segment's buffer and a sealed segment's refused tail. They are written
    /// once the disk takes them, or drained from memory; what is left of them when the journal
    /// is dropped is lost, so the producer reports it at shutdown.
    pub fn unwritten_bytes(&self) -> u64 {
        let buffered = self.writer.as_ref().map_or(0, |w| w.file.buffer().len());
        let refused: usize = self.unwritten.iter().map(|(_, b)| b.len()).sum();
        (buffered + refused) as u64
    }

    /// True when nothing is journaled.
    pub fn is_empty(&self) -> bool {
        self.sealed.is_empty() && self.writer.as_ref().is_none_or(|w| w.bytes == 0)
    }

    /// True when no sealed segment is left, only (at most) the open one being appended to.
    pub fn only_tail_left(&self) -> bool {
        self.sealed.is_empty()
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, id: SegmentId) -> PathBuf {
        self.dir.join(id.file_name())
    }

    /// Appends one record to the open spill segment (class 1), rolling segments at
    /// [`SEGMENT_BYTES`]. A record is taken once it is in the segment's write buffer; under
    /// `JOURNAL_FSYNC=always` it is also flushed and synced, and if the disk refuses that, it
    /// stays buffered for [`Journal::sync`].
    ///
    /// # Errors
    /// [`JournalError::Full`] at the cap, [`JournalError::Io`] when the disk refuses to take
    /// it (its buffer full of records not yet written, a roll that cannot seal the segment);
    /// nothing of the record is kept.
    pub fn append(&mut self, r: &RecordRef<'_>) -> Result<(), JournalError> {
        self.scratch.clear();
        encode(r, &mut self.scratch)?;
        let n = self.scratch.len() as u64;
        let bytes = self.bytes();
        if bytes + n > self.cap {
            return Err(JournalError::Full {
                bytes,
                cap: self.cap,
            });
        }
        if self
            .writer
            .as_ref()
            .is_some_and(|w| w.bytes + n > SEGMENT_BYTES)
        {
            self.seal()?;
        }
        if self.writer.is_none() {
            let id = SegmentId {
                class: 1,
                number: self.next_number,
            };
            self.next_number += 1;
            let path = self.path(id);
            let file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            self.writer = Some(Writer {
                id,
                file: BufWriter::with_capacity(256 * 1024, file),
                bytes: 0,
            });
        }
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.file.write_all(&self.scratch) {
                // With its buffer empty, the writer wrote this record straight to the file (a
                // record larger than the buffer), and a full disk may have taken part of it:
                // cut that part off, or the records appended after it would be read back as a
                // torn tail and lost. (With records still buffered, the error came from writing
                // those, before this record was touched; they stay buffered for the next try.)
                if w.file.buffer().is_empty() {
                    let _ = w.file.get_ref().set_len(w.bytes);
                }
                return Err(io_err(&self.dir)(e));
            }
            w.bytes += n;
            if self.fsync == FsyncPolicy::Always {
                // The record is taken (buffered) whether or not the disk takes it now. A failure
                // here leaves it to the turn's `sync`, which writes it again and reports the
                // error, as under `batch`; refusing it here would count as dropped a record
                // that is written, and drained, later.
                let _ = w.file.flush().and_then(|()| w.file.get_ref().sync_data());
            }
        }
        Ok(())
    }

    /// Ends a batch: flushes the open segment and, under the `batch` policy, fsyncs it.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn sync(&mut self) -> Result<(), JournalError> {
        if let Some(w) = self.writer.as_mut() {
            w.file.flush().map_err(io_err(&self.dir))?;
            if self.fsync != FsyncPolicy::Never {
                w.file.get_ref().sync_data().map_err(io_err(&self.dir))?;
            }
        }
        Ok(())
    }

    /// Flushes, syncs and closes the open segment. On an error the writer stays open with what
    /// it has not written still buffered (dropping it would lose those records), to be tried
    /// again.
    fn seal(&mut self) -> Result<(), JournalError> {
        if let Some(w) = self.writer.as_mut() {
            w.file.flush().map_err(io_err(&self.dir))?;
            if self.fsync != FsyncPolicy::Never {
                w.file.get_ref().sync_data().map_err(io_err(&self.dir))?;
            }
        }
        if let Some(w) = self.writer.take() {
            if w.bytes > 0 {
                self.add_sealed(w.id, w.bytes);
            } else {
                let _ = fs::remove_file(self.path(w.id));
            }
        }
        Ok(())
    }

    /// Writes `records` as one rescue segment (class 0), drained before every spill segment.
    /// Atomic: written to a temporary file, synced, then renamed. If the disk refuses it (full,
    /// or failing), the segment is kept in memory (`unwritten`) and drains all the
    /// same: these records are older than everything journaled, so no drain could start
    /// without them, and on a disk the journal itself filled only a drain frees room.
    ///
    /// # Errors
    /// [`JournalError::RecordTooLarge`] for a record the format cannot hold (nothing is kept);
    /// the cap is not applied (these records already existed in memory and dropping them would
    /// lose data that was accepted).
    pub fn write_rescue(&mut self, records: &[OwnedRecord]) -> Result<(), JournalError> {
        if records.is_empty() {
            return Ok(());
        }
        let id = SegmentId {
            class: 0,
            number: self.next_number,
        };
        self.next_number += 1;
        let mut buf = Vec::new();
        for r in records {
            r.write_to(&mut buf)?;
        }
        if let Err(e) = self.write_segment(id, &buf) {
            log::error!(event = "journal_rescue_in_memory", code = "JOURNAL_IO", segment = id.file_name().as_str(), unwritten_bytes = buf.len(); "{e}; the records Kafka handed back are kept in memory and drain first");
            self.add_sealed(id, buf.len() as u64);
            self.unwritten.push((id, buf));
        }
        Ok(())
    }

    /// Writes `buf` (whole record frames) as segment `id`, atomically: to a temporary file,
    /// synced, then renamed over any earlier file of that id.
    fn write_segment(&mut self, id: SegmentId, buf: &[u8]) -> Result<(), JournalError> {
        let path = self.path(id);
        let tmp = path.with_extension("tmp");
        let written = File::create(&tmp).and_then(|mut f| {
            f.write_all(buf)?;
            f.sync_data()
        });
        if let Err(e) = written {
            // Whatever part of it the disk took is no use, and takes room.
            let _ = fs::remove_file(&tmp);
            return Err(io_err(&tmp)(e));
        }
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        self.add_sealed(id, buf.len() as u64);
        Ok(())
    }

    /// Loads the oldest segment into `seg` for draining (sealing the open one first if it is the
    /// only one left), reusing `seg`'s buffers; its id, or `None` when the journal is empty. The segment stays
    /// on disk until [`Journal::commit`] or [`Journal::replace`].
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn load_oldest(
        &mut self,
        seg: &mut LoadedSegment,
    ) -> Result<Option<SegmentId>, JournalError> {
        seg.id = None;
        seg.bytes.clear();
        seg.spans.clear();
        if self.sealed.is_empty() && self.seal().is_err() {
            self.seal_in_memory();
        }
        let Some((id, _)) = self.sealed.first().copied() else {
            return Ok(None);
        };
        let path = self.path(id);
        let held = self.unwritten.iter().find(|(u, _)| *u == id);
        match File::open(&path).and_then(|mut f| f.read_to_end(&mut seg.bytes)) {
            Ok(_) => {}
            // A segment the disk refused whole has no file.
            Err(e) if e.kind() == io::ErrorKind::NotFound && held.is_some() => {}
            Err(e) => {
                seg.bytes.clear();
                return Err(self.read_failed(id, path, e));
            }
        }
        self.read_failures = None;
        if let Some((_, rest)) = held {
            seg.bytes.extend_from_slice(rest);
        }
        let torn = index(&seg.bytes, &mut seg.spans);
        if torn {
            log::error!(event = "journal_torn_tail", segment = id.file_name().as_str(), records = seg.spans.len(); "segment ends in an incomplete or corrupt record (a crash mid-write); the intact records are replayed");
        }
        seg.id = Some(id);
        Ok(Some(id))
    }

    /// Counts a failed read of segment `id`; at the [`MAX_READ_ATTEMPTS`]th, sets it aside:
    /// out of the index, renamed `*.quarantined` if the disk allows.
    fn read_failed(&mut self, id: SegmentId, path: PathBuf, e: io::Error) -> JournalError {
        let attempts = match self.read_failures {
            Some((failing, n)) if failing == id => n + 1,
            _ => 1,
        };
        if attempts < MAX_READ_ATTEMPTS {
            self.read_failures = Some((id, attempts));
            return io_err(&path)(e);
        }
        self.read_failures = None;
        let bytes = self.forget(id);
        let quarantined = path.with_extension("quarantined");
        let kept = match fs::rename(&path, &quarantined) {
            Ok(()) => quarantined,
            Err(_) => path.clone(),
        };
        JournalError::Quarantined {
            path,
            kept,
            bytes,
            attempts,
            source: e,
        }
    }

    /// Seals the open segment although the disk refuses its last bytes (the disk full: `seal`
    /// failed), keeping those bytes in memory (`unwritten`), so that it can drain and
    /// free the disk. The file holds whole records up to, at most, a record split where the disk
    /// stopped taking them, and the kept bytes are exactly the rest: read back together they are
    /// every record the segment took, in order.
    fn seal_in_memory(&mut self) {
        let Some(w) = self.writer.take() else { return };
        let Writer { id, file, bytes } = w;
        // `into_parts` hands back the buffer without trying to write it again.
        let (file, buffered) = file.into_parts();
        drop(file);
        let rest = buffered.unwrap_or_else(|panicked| panicked.into_inner());
        log::error!(event = "journal_sealed_in_memory", code = "JOURNAL_IO", segment = id.file_name().as_str(), unwritten_bytes = rest.len(); "the disk refused the journal's last records: they drain from memory");
        self.add_sealed(id, bytes);
        self.unwritten.push((id, rest));
    }

    /// Puts segment `id` of `bytes` in the index, in drain order (replacing an entry it had).
    fn add_sealed(&mut self, id: SegmentId, bytes: u64) {
        self.sealed.retain(|(s, _)| *s != id);
        self.sealed.push((id, bytes));
        self.sealed.sort_unstable();
    }

    /// Takes segment `id` out of the index, with any of its bytes held in memory: drained, or
    /// set aside. Its size in the index.
    fn forget(&mut self, id: SegmentId) -> u64 {
        let bytes = self
            .sealed
            .iter()
            .find(|(s, _)| *s == id)
            .map_or(0, |(_, b)| *b);
        self.sealed.retain(|(s, _)| *s != id);
        self.unwritten.retain(|(u, _)| *u != id);
        bytes
    }

    /// Deletes a fully drained segment. It leaves the index whether or not its file can be
    /// deleted: every record of it is acknowledged, and loading it again would send them all a
    /// second time (on a disk that refuses deletes, over and over). A file the disk keeps is
    /// deleted at a later commit or close; until then a restart would drain it again.
    ///
    /// # Errors
    /// [`JournalError::Io`] when the file could not be deleted.
    pub fn commit(&mut self, id: SegmentId) -> Result<(), JournalError> {
        self.forget(id);
        self.delete_undeleted();
        let path = self.path(id);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => {
                self.undeleted.push(id);
                Err(io_err(&path)(e))
            }
        }
    }

    /// Deletes the drained segments' files the disk kept before, where it now can.
    fn delete_undeleted(&mut self) {
        let dir = &self.dir;
        self.undeleted.retain(|id| {
            fs::remove_file(dir.join(id.file_name()))
                .is_err_and(|e| e.kind() != io::ErrorKind::NotFound)
        });
    }

    /// The files of drained segments that the disk has refused to delete so far: a restart now
    /// would send their records again.
    pub fn undeleted(&self) -> Vec<PathBuf> {
        self.undeleted.iter().map(|id| self.path(*id)).collect()
    }

    /// Replaces a partly drained segment with the records of it that `keep` selects (those not
    /// yet acknowledged), copied as they are on disk, under the same id, so it keeps its place in
    /// the drain order; deletes it when none is kept.
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn replace(
        &mut self,
        seg: &LoadedSegment,
        keep: impl Fn(usize) -> bool,
    ) -> Result<(), JournalError> {
        let Some(id) = seg.id else {
            return Ok(());
        };
        let mut buf = Vec::new();
        for i in (0..seg.len()).filter(|i| keep(*i)) {
            if let Some(frame) = seg.frame(i) {
                buf.extend_from_slice(frame);
            }
        }
        if buf.is_empty() {
            return self.commit(id);
        }
        self.write_segment(id, &buf)?;
        // The rewritten file holds what is kept; bytes held in memory for it are spent.
        self.unwritten.retain(|(u, _)| *u != id);
        Ok(())
    }

    /// Flushes and seals the open segment (shutdown).
    ///
    /// # Errors
    /// [`JournalError::Io`].
    pub fn close(&mut self) -> Result<(), JournalError> {
        self.delete_undeleted();
        self.seal()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(i: u32) -> OwnedRecord {
        OwnedRecord {
            topic: (i % 3) as u8,
            key: format!("k{}", i % 5).into_bytes(),
            headers: vec![
                ("vendor".into(), b"kite".to_vec()),
                ("schema".into(), b"1".to_vec()),
            ],
            payload: format!("{{\"i\":{i}}}").into_bytes(),
        }
    }

    fn append(j: &mut Journal, r: &OwnedRecord) -> Result<(), JournalError> {
        let h: Vec<(&str, &[u8])> = r
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_slice()))
            .collect();
        j.append(&RecordRef {
            topic: r.topic,
            key: &r.key,
            headers: &h,
            payload: &r.payload,
        })
    }

    /// A view copied out, to compare with what was written.
    fn to_owned_record(v: &RecordView<'_>) -> OwnedRecord {
        OwnedRecord {
            topic: v.topic,
            key: v.key.to_vec(),
            headers: v
                .headers
                .clone()
                .map(|(k, v)| (k.to_owned(), v.to_vec()))
                .collect(),
            payload: v.payload.to_vec(),
        }
    }

    /// Every record of `seg`, copied out.
    fn owned(seg: &LoadedSegment) -> Vec<OwnedRecord> {
        (0..seg.len())
            .map(|i| to_owned_record(&seg.get(i).expect("indexed record reads")))
            .collect()
    }

    fn temp_dir(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!(
            "l1-journal-{name}-{}-{}",
            std::process::id(),
            crate::clock::now_unix_ns()
        ))
    }

    #[test]
    fn records_survive_reopen_in_order_rescue_first() {
        let dir = temp_dir("reopen");
        let mut j = Journal::open(&dir, 1 << 30, FsyncPolicy::Batch).expect("open");
        for i in 0..1000 {
            append(&mut j, &rec(i)).expect("append");
        }
        j.write_rescue(&[rec(9000), rec(9001)]).expect("rescue");
        j.sync().expect("sync");
        j.close().expect("close");
        drop(j);
        let mut j = Journal::open(&dir, 1 << 30, FsyncPolicy::Batch).expect("reopen");
        assert!(!j.is_empty());
        let mut seg = LoadedSegment::default();
        let first = j.load_oldest(&mut seg).expect("load").expect("a segment");
        assert_eq!(seg.id(), Some(first));
        assert_eq!(first.class, 0);
        assert_eq!(owned(&seg), vec![rec(9000), rec(9001)]);
        j.commit(first).expect("commit");
        // The same value takes the next segment, its buffers reused.
        let spill = j.load_oldest(&mut seg).expect("load").expect("a segment");
        assert_eq!(seg.len(), 1000);
        // Its debug form names it and counts, without the bytes.
        let shown = format!("{seg:?}");
        assert!(
            shown.contains("records: 1000") && shown.len() < 200,
            "{shown}"
        );
        assert!(owned(&seg)
            .iter()
            .enumerate()
            .all(|(i, r)| *r == rec(i as u32)));
        assert!(seg.get(1000).is_none());
        // A partly drained segment keeps its place with only what remains.
        j.replace(&seg, |i| i >= 600).expect("replace");
        assert_eq!(j.load_oldest(&mut seg).expect("load"), Some(spill));
        assert_eq!(owned(&seg), (600..1000).map(rec).collect::<Vec<_>>());
        // Nothing kept: the segment goes.
        j.replace(&seg, |_| false).expect("replace with none");
        assert_eq!(j.load_oldest(&mut seg).expect("load"), None);
        assert_eq!(seg.id(), None);
        assert!(seg.is_empty());
        assert!(j.is_empty());
        assert_eq!(j.bytes(), 0);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn views_read_every_field_in_place() {
        let r = OwnedRecord {
            topic: 2,
            key: Vec::new(),
            headers: vec![
                ("vendor".into(), b"upstox".to_vec()),
                ("kind".into(), Vec::new()),
                ("receivedAt".into(), b"1764400000000000000".to_vec()),
            ],
            payload: vec![0, 255, 7],
        };
        let mut buf = Vec::new();
        r.write_to(&mut buf).expect("encode");
        rec(4).write_to(&mut buf).expect("encode");
        let seg = LoadedSegment {
            id: None,
            spans: {
                let mut spans = Vec::new();
                assert!(!index(&buf, &mut spans));
                spans
            },
            bytes: buf,
        };
        let v = seg.get(0).expect("first");
        assert_eq!(
            (v.topic, v.key, v.payload),
            (2, &b""[..], &[0u8, 255, 7][..])
        );
        assert_eq!(v.headers.len(), 3);
        let headers: Vec<(&str, &[u8])> = v.headers.collect();
        assert_eq!(
            headers,
            vec![
                ("vendor", &b"upstox"[..]),
                ("kind", &b""[..]),
                ("receivedAt", &b"1764400000000000000"[..]),
            ]
        );
        assert_eq!(to_owned_record(&seg.get(1).expect("second")), rec(4));
        // A frame is copied as it is on disk.
        let mut again = Vec::new();
        rec(4).write_to(&mut again).expect("encode");
        assert_eq!(seg.frame(1), Some(&again[..]));
    }

    #[test]
    fn a_layout_cuts_only_its_own_body_and_never_panics_on_another() {
        let mut long = Vec::new();
        rec(7).write_to(&mut long).expect("encode");
        let body = long.get(HEADER..).expect("body");
        let at = layout(body).expect("well formed");
        // Applied to its own body, the cut record is the record.
        assert_eq!(to_owned_record(&at.view(body).expect("view")), rec(7));
        // Applied to every shorter prefix, or to a body of other fields, it gives None or
        // headers that end early: no panic, no read past the slice.
        for cut in 0..body.len() {
            let prefix = body.get(..cut).expect("prefix");
            if let Some(v) = at.view(prefix) {
                assert!(v.headers.count() <= usize::from(at.count));
            }
        }
        let other = OwnedRecord {
            topic: 1,
            key: b"k".to_vec(),
            headers: Vec::new(),
            payload: Vec::new(),
        };
        let mut short = Vec::new();
        other.write_to(&mut short).expect("encode");
        if let Some(v) = at.view(short.get(HEADER..).expect("body")) {
            assert!(v.headers.count() <= usize::from(at.count));
        }
    }

    #[test]
    fn a_body_that_lies_about_its_headers_is_a_torn_tail() {
        // Checksummed, but its header count promises a header its bytes do not hold.
        let mut buf = Vec::new();
        rec(1).write_to(&mut buf).expect("encode");
        let good = buf.len();
        let mut body = vec![0u8, 0, 0, 3];
        body.extend_from_slice(&[6]);
        body.extend_from_slice(b"vendor");
        body.extend_from_slice(&1u16.to_le_bytes());
        body.push(b'k');
        body.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        buf.extend_from_slice(&body);
        let mut spans = Vec::new();
        assert!(index(&buf, &mut spans), "flagged as torn");
        assert_eq!(spans.len(), 1, "the intact record before it is kept");
        assert_eq!(spans.first().map(|s| s.frame()), Some(0..good));
        // A header name that is not UTF-8 is refused the same way.
        assert!(view_body(&[0, 0, 0, 1, 1, 0xff, 0, 0, 0, 0, 0, 0]).is_none());
        assert!(view_body(&[0, 0, 0, 1, 1, b'a', 0, 0, 0, 0, 0, 0]).is_some());
    }

    /// Checksummed bodies mutated at random (bytes changed, including the length fields, cut
    /// short or lengthened): each is either refused as a torn tail or indexed, and an indexed
    /// one reads back through its layout into exactly its bytes when encoded again. Never a
    /// panic, never a record read out of another's bytes.
    #[test]
    fn any_checksummed_body_is_refused_or_reads_back_to_its_own_bytes() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let (mut indexed, mut refused) = (0, 0);
        for i in 0..20_000u32 {
            let mut frame = Vec::new();
            rec(i).write_to(&mut frame).expect("encode");
            let mut body = frame.split_off(HEADER);
            for _ in 0..=next() % 3 {
                let at = usize::try_from(next()).unwrap_or(0) % body.len();
                match next() % 4 {
                    0 => body.truncate(at),
                    1 => body.extend((0..next() % 8).map(|b| b as u8)),
                    _ => body[at] = next() as u8,
                }
                if body.is_empty() {
                    body.push(0);
                }
            }
            let mut buf = Vec::new();
            buf.extend_from_slice(&u32::try_from(body.len()).expect("len").to_le_bytes());
            buf.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
            buf.extend_from_slice(&body);
            let mut seg = LoadedSegment::default();
            let torn = index(&buf, &mut seg.spans);
            seg.bytes = buf;
            if torn {
                assert!(seg.is_empty());
                refused += 1;
                continue;
            }
            indexed += 1;
            let v = seg.get(0).expect("an indexed record reads");
            let headers: Vec<(&str, &[u8])> = v.headers.clone().collect();
            assert_eq!(headers.len(), v.headers.len(), "the header count is exact");
            let mut again = Vec::new();
            encode(
                &RecordRef {
                    topic: v.topic,
                    key: v.key,
                    headers: &headers,
                    payload: v.payload,
                },
                &mut again,
            )
            .expect("encode");
            assert_eq!(again.get(HEADER..), Some(&body[..]), "case {i}");
        }
        // Both outcomes were exercised (payload bytes changed keep a record well formed).
        assert!(
            indexed > 1_000 && refused > 1_000,
            "{indexed} indexed, {refused} refused"
        );
    }

    /// A segment that cannot be read is read again: a read that succeeds before the last
    /// attempt loads it whole and starts the count afresh; [`MAX_READ_ATTEMPTS`] failures in a
    /// row set it aside (renamed, out of the index) and the next segment loads.
    #[test]
    fn an_unreadable_segment_is_tried_again_then_set_aside() {
        let dir = temp_dir("unreadable");
        let mut j = Journal::open(&dir, u64::MAX, FsyncPolicy::Never).expect("open");
        for i in 0..5 {
            append(&mut j, &rec(i)).expect("append");
        }
        j.close().expect("close");
        for i in 5..8 {
            append(&mut j, &rec(i)).expect("append");
        }
        j.close().expect("close");
        let first = dir.join(
            SegmentId {
                class: 1,
                number: 1,
            }
            .file_name(),
        );
        let aside = dir.join("moved");
        // Unreadable: a directory where the file is.
        let break_it = || {
            fs::rename(&first, &aside).expect("move the file away");
            fs::create_dir(&first).expect("a directory in its place");
        };
        let mend_it = || {
            fs::remove_dir(&first).expect("remove the directory");
            fs::rename(&aside, &first).expect("the file back");
        };
        let mut seg = LoadedSegment::default();
        break_it();
        for _ in 1..MAX_READ_ATTEMPTS {
            assert!(matches!(
                j.load_oldest(&mut seg),
                Err(JournalError::Io { .. })
            ));
        }
        mend_it();
        let id = j.load_oldest(&mut seg).expect("read").expect("a segment");
        assert_eq!((id.number, seg.len()), (1, 5), "loaded whole once readable");

        break_it();
        for _ in 1..MAX_READ_ATTEMPTS {
            assert!(matches!(
                j.load_oldest(&mut seg),
                Err(JournalError::Io { .. })
            ));
        }
        match j.load_oldest(&mut seg) {
            Err(JournalError::Quarantined { attempts, kept, .. }) => {
                assert_eq!(attempts, MAX_READ_ATTEMPTS);
                assert!(kept.is_dir(), "renamed, not deleted: {}", kept.display());
            }
            other => panic!("set aside at the last attempt: {other:?}"),
        }
        let id = j
            .load_oldest(&mut seg)
            .expect("read")
            .expect("the next segment");
        assert_eq!((id.number, seg.len()), (2, 3));
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn torn_tail_is_skipped_and_cap_refuses() {
        let mut buf = Vec::new();
        for i in 0..10 {
            rec(i).write_to(&mut buf).expect("encode");
        }
        let full = buf.len();
        buf.truncate(full - 3);
        let mut spans = Vec::new();
        assert!(index(&buf, &mut spans));
        assert_eq!(spans.len(), 9);
        buf[20] ^= 0xff;
        assert!(index(&buf, &mut spans));
        assert!(spans.is_empty());

        let dir = temp_dir("cap");
        let mut j = Journal::open(&dir, 200, FsyncPolicy::Never).expect("open");
        let mut written = 0;
        let err = loop {
            match append(&mut j, &rec(written)) {
                Ok(()) => written += 1,
                Err(e) => break e,
            }
        };
        assert!(matches!(err, JournalError::Full { .. }));
        assert!(j.bytes() <= 200);
        assert!(written > 0);
        assert!(!j.has_room(), "no room at the cap");
        // A record that still fits is not room: the cap is 200 bytes, the margin 100.
        let mut seg = LoadedSegment::default();
        let id = j.load_oldest(&mut seg).expect("load").expect("a segment");
        assert_eq!(seg.len(), written as usize);
        j.commit(id).expect("commit");
        assert!(j.has_room(), "room once the drained segment is gone");
        let mut fits = 0;
        while append(&mut j, &rec(fits)).is_ok() && j.has_room() {
            fits += 1;
        }
        assert!(
            j.bytes() > 100,
            "room ends before the cap: {} bytes",
            j.bytes()
        );
        let _ = fs::remove_dir_all(&dir);
    }
}
