//! Capture files, format v1: raw WebSocket frames exactly as received, so any market day can be
//! decoded, replayed or turned into a fixture later. Specified in `docs/capture-format.md`.
//!
//! Layout: an 8-byte header `L1CAP\0\0\x01`, then records of a 16-byte little-endian header
//! (u64 receive time ns since the Unix epoch, u8 vendor, u8 frame kind, u16 connection id,
//! u32 payload length) followed by the payload.
//!
//! [`CaptureWriter`] appends records to any `Write`; [`CaptureReader`] reads them back into a
//! caller-reused buffer and tells a file that is not a capture, a corrupt record and a truncated
//! last record apart with typed errors.

use std::io::{self, Read, Write};

use zerocopy::{
    byteorder::little_endian::{U16, U32, U64},
    FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned,
};

use crate::{parsers::FrameKind, vendor::Vendor};

/// The 8-byte file header of format version 1.
pub const MAGIC_V1: [u8; 8] = *b"L1CAP\x00\x00\x01";

/// Size of a record header.
pub const RECORD_HEADER_LEN: usize = 16;

/// Largest payload the reader accepts: tungstenite's default maximum message size (64 MiB). A
/// larger length is corruption, and refusing it keeps a bad length from allocating gigabytes.
pub const MAX_PAYLOAD_LEN: u32 = 64 << 20;

/// Most of a record's payload reserved before its bytes are read (see `next_record`).
const PREALLOC_LIMIT: usize = 1 << 20;

#[derive(FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct RawRecordHeader {
    received_at_ns: U64,
    vendor: u8,
    kind: u8,
    conn_id: U16,
    len: U32,
}

const _: () = assert!(size_of::<RawRecordHeader>() == RECORD_HEADER_LEN);

/// A record's metadata; the payload is in the buffer passed to [`CaptureReader::next_record`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record {
    /// Receive time, epoch nanoseconds.
    pub received_at_ns: u64,
    /// The vendor.
    pub vendor: Vendor,
    /// Binary or text.
    pub kind: FrameKind,
    /// The connection id.
    pub conn_id: u16,
}

/// A capture could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// Reading failed. Fatal.
    #[error("capture read failed: {0}")]
    Io(#[from] io::Error),
    /// The file does not start with the capture magic (or is shorter than it). Fatal.
    #[error("not a layer1 capture (bad or missing L1CAP header)")]
    NotACapture,
    /// A capture of another format version. Fatal.
    #[error("capture format version {0} is not supported (this build reads 1)")]
    UnsupportedVersion(u8),
    /// The file ends inside a record (a capture cut off mid-write). Fatal for the rest of the
    /// file; every record before it was returned.
    #[error("capture truncated inside the record at byte {offset}")]
    TruncatedRecord {
        /// Offset of the record's header.
        offset: u64,
    },
    /// A record header with a vendor or kind code that does not exist, or an absurd length.
    /// With a valid length the reader has skipped the payload and can go on (`resumable`);
    /// an absurd length leaves the rest of the file unlocatable.
    #[error("corrupt record at byte {offset}: {what}")]
    CorruptRecord {
        /// Offset of the record's header.
        offset: u64,
        /// What is wrong.
        what: &'static str,
        /// True when the next call reads the next record.
        resumable: bool,
    },
}

impl CaptureError {
    /// True when reading can continue with the next record.
    pub fn is_resumable(&self) -> bool {
        matches!(
            self,
            CaptureError::CorruptRecord {
                resumable: true,
                ..
            }
        )
    }
}

/// Writes a capture file.
#[derive(Debug)]
pub struct CaptureWriter<W: Write> {
    inner: W,
}

impl<W: Write> CaptureWriter<W> {
    /// Writes the header and returns the writer.
    ///
    /// # Errors
    /// The underlying write error.
    pub fn new(mut inner: W) -> io::Result<Self> {
        inner.write_all(&MAGIC_V1)?;
        Ok(CaptureWriter { inner })
    }

    /// Appends one record.
    ///
    /// # Errors
    /// `InvalidInput` for a payload over [`MAX_PAYLOAD_LEN`] (no reader would accept it), else
    /// the underlying write error.
    pub fn write_record(&mut self, rec: &Record, payload: &[u8]) -> io::Result<()> {
        let len = u32::try_from(payload.len())
            .ok()
            .filter(|&l| l <= MAX_PAYLOAD_LEN)
            .ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "capture payload too large")
            })?;
        let h = RawRecordHeader {
            received_at_ns: U64::new(rec.received_at_ns),
            vendor: rec.vendor.code(),
            kind: rec.kind as u8,
            conn_id: U16::new(rec.conn_id),
            len: U32::new(len),
        };
        self.inner.write_all(h.as_bytes())?;
        self.inner.write_all(payload)
    }

    /// Flushes the underlying writer.
    ///
    /// # Errors
    /// The underlying error.
    pub fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }

    /// Returns the underlying writer.
    pub fn into_inner(self) -> W {
        self.inner
    }
}

/// Reads a capture file record by record.
#[derive(Debug)]
pub struct CaptureReader<R: Read> {
    inner: R,
    offset: u64,
    done: bool,
}

/// Reads until `buf` is full or EOF; returns the bytes read (short only at EOF).
fn read_full<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while let Some(rest) = buf.get_mut(n..) {
        if rest.is_empty() {
            break;
        }
        match r.read(rest) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

impl<R: Read> CaptureReader<R> {
    /// Reads and checks the header.
    ///
    /// # Errors
    /// [`CaptureError::NotACapture`], [`CaptureError::UnsupportedVersion`], or `Io`.
    pub fn new(mut inner: R) -> Result<Self, CaptureError> {
        let mut magic = [0u8; 8];
        let n = read_full(&mut inner, &mut magic)?;
        if n < magic.len() || magic.get(..7) != MAGIC_V1.get(..7) {
            return Err(CaptureError::NotACapture);
        }
        if magic != MAGIC_V1 {
            return Err(CaptureError::UnsupportedVersion(magic[7]));
        }
        Ok(CaptureReader {
            inner,
            offset: MAGIC_V1.len() as u64,
            done: false,
        })
    }

    /// Reads the next record's payload into `buf` (cleared first; its capacity is reused).
    /// `Ok(None)` at a clean end of file.
    ///
    /// # Errors
    /// [`CaptureError::TruncatedRecord`] when the file ends inside a record; a
    /// [`CaptureError::CorruptRecord`] (see [`CaptureError::is_resumable`]); `Io`. After a
    /// non-resumable error every later call returns `Ok(None)`.
    pub fn next_record(&mut self, buf: &mut Vec<u8>) -> Result<Option<Record>, CaptureError> {
        buf.clear();
        if self.done {
            return Ok(None);
        }
        let at = self.offset;
        let mut hb = [0u8; RECORD_HEADER_LEN];
        let n = read_full(&mut self.inner, &mut hb)?;
        if n == 0 {
            self.done = true;
            return Ok(None);
        }
        if n < RECORD_HEADER_LEN {
            self.done = true;
            return Err(CaptureError::TruncatedRecord { offset: at });
        }
        let Ok(h) = RawRecordHeader::ref_from_bytes(&hb) else {
            self.done = true;
            return Err(CaptureError::TruncatedRecord { offset: at });
        };
        let len = h.len.get();
        if len > MAX_PAYLOAD_LEN {
            self.done = true;
            return Err(CaptureError::CorruptRecord {
                offset: at,
                what: "payload length over 64 MiB",
                resumable: false,
            });
        }
        let (vendor, kind) = (h.vendor, h.kind);
        let (received_at_ns, conn_id) = (h.received_at_ns.get(), h.conn_id.get());
        // usize is at least 32 bits on every target this builds for.
        let len = len as usize;
        // The length comes from the file: reserve at most 1 MiB up front and let the buffer grow
        // with the bytes actually read, so a corrupt or truncated header claiming up to 64 MiB
        // costs what the file holds, not a 64 MiB zeroed allocation (the `capture` fuzz target
        // ran at ~200 inputs/s because of it).
        buf.reserve(len.min(PREALLOC_LIMIT));
        // `read_to_end` retries on `Interrupted` itself.
        let got = (&mut self.inner).take(len as u64).read_to_end(buf)?;
        if got < len {
            self.done = true;
            return Err(CaptureError::TruncatedRecord { offset: at });
        }
        self.offset += (RECORD_HEADER_LEN + len) as u64;
        let Some(vendor) = Vendor::from_code(vendor) else {
            return Err(CaptureError::CorruptRecord {
                offset: at,
                what: "unknown vendor code",
                resumable: true,
            });
        };
        let Some(kind) = FrameKind::from_code(kind) else {
            return Err(CaptureError::CorruptRecord {
                offset: at,
                what: "unknown frame kind",
                resumable: true,
            });
        };
        Ok(Some(Record {
            received_at_ns,
            vendor,
            kind,
            conn_id,
        }))
    }

    /// Byte offset of the next record.
    pub fn offset(&self) -> u64 {
        self.offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(ns: u64, vendor: Vendor, kind: FrameKind) -> Record {
        Record {
            received_at_ns: ns,
            vendor,
            kind,
            conn_id: 7,
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = CaptureWriter::new(Vec::new()).unwrap();
        w.write_record(
            &rec(1, Vendor::Kite, FrameKind::Binary),
            &[0, 1, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8],
        )
        .unwrap();
        w.write_record(
            &rec(2, Vendor::Kite, FrameKind::Text),
            br#"{"type":"error","data":"x"}"#,
        )
        .unwrap();
        w.write_record(&rec(3, Vendor::Upstox, FrameKind::Binary), &[])
            .unwrap();
        w.into_inner()
    }

    #[test]
    fn layout_is_as_documented() {
        let b = sample();
        assert_eq!(&b[..8], b"L1CAP\0\0\x01");
        // First record header: ts=1 LE, vendor 1, kind 1, conn 7 LE, len 12 LE.
        assert_eq!(
            &b[8..24],
            &[1, 0, 0, 0, 0, 0, 0, 0, 1, 1, 7, 0, 12, 0, 0, 0]
        );
    }

    #[test]
    fn round_trip() {
        let b = sample();
        let mut r = CaptureReader::new(&b[..]).unwrap();
        let mut buf = Vec::new();
        let a = r.next_record(&mut buf).unwrap().unwrap();
        assert_eq!(a, rec(1, Vendor::Kite, FrameKind::Binary));
        assert_eq!(buf.len(), 12);
        let t = r.next_record(&mut buf).unwrap().unwrap();
        assert_eq!(t.kind, FrameKind::Text);
        assert!(buf.starts_with(b"{\"type\""));
        let u = r.next_record(&mut buf).unwrap().unwrap();
        assert_eq!(u.vendor, Vendor::Upstox);
        assert!(buf.is_empty());
        assert!(r.next_record(&mut buf).unwrap().is_none());
        assert_eq!(r.offset(), b.len() as u64);
    }

    #[test]
    fn not_a_capture_and_versions() {
        assert!(matches!(
            CaptureReader::new(&b"hello world"[..]),
            Err(CaptureError::NotACapture)
        ));
        assert!(matches!(
            CaptureReader::new(&b"L1C"[..]),
            Err(CaptureError::NotACapture)
        ));
        assert!(matches!(
            CaptureReader::new(&b""[..]),
            Err(CaptureError::NotACapture)
        ));
        assert!(matches!(
            CaptureReader::new(&b"L1CAP\0\0\x02"[..]),
            Err(CaptureError::UnsupportedVersion(2))
        ));
    }

    #[test]
    fn truncated_last_record_is_reported_after_the_good_ones() {
        let b = sample();
        // Cut inside the second record's payload, then inside the second record's header.
        for cut in [24 + 12 + 16 + 5, 24 + 12 + 3] {
            let mut r = CaptureReader::new(&b[..cut]).unwrap();
            let mut buf = Vec::new();
            assert!(r.next_record(&mut buf).unwrap().is_some());
            match r.next_record(&mut buf) {
                Err(CaptureError::TruncatedRecord { offset: 36 }) => {}
                other => panic!("{other:?}"),
            }
            assert!(r.next_record(&mut buf).unwrap().is_none());
        }
    }

    #[test]
    fn corrupt_codes_resume_and_absurd_lengths_stop() {
        let mut b = sample();
        b[8 + 8] = 99; // first record's vendor
        let mut r = CaptureReader::new(&b[..]).unwrap();
        let mut buf = Vec::new();
        let e = r.next_record(&mut buf).unwrap_err();
        assert!(e.is_resumable(), "{e}");
        assert!(r.next_record(&mut buf).unwrap().is_some());

        let mut b = sample();
        b[8 + 12..8 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        let mut r = CaptureReader::new(&b[..]).unwrap();
        let e = r.next_record(&mut buf).unwrap_err();
        assert!(!e.is_resumable());
        assert!(r.next_record(&mut buf).unwrap().is_none());
    }
}
