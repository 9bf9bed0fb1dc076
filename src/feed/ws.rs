//! RFC 6455 framing for an open client connection, after tungstenite's handshake: the server
//! frames are read into one reusable buffer per connection and handed out as borrowed slices, and
//! the client's own frames (subscriptions, heartbeats, pongs, close) are masked into one reusable
//! output buffer. Nothing here allocates per frame once the buffers have grown to the largest
//! frame seen (bounded by the configured limits).
//!
//! Why not tungstenite's `WebSocket::read`: it returns every message as a freshly split `Bytes`,
//! one allocation per frame on the feed thread, and its read buffer can never be reused while a
//! frame is still referenced downstream.
//!
//! Also owned here: [`HsStream`], the stream tungstenite performs the upgrade over. It hands
//! tungstenite the HTTP response only up to its blank line and keeps any bytes behind it (frames
//! the server sent right after the 101) for the [`FrameReader`], so nothing is lost when the
//! connection leaves tungstenite.

use std::io::{self, ErrorKind, Read, Write};

use thiserror::Error;
use tungstenite::Message;

use crate::parsers::FrameKind;

/// A server that broke the framing rules, or a limit that was hit. Each ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum WsError {
    /// RSV1-3 set without a negotiated extension.
    #[error("reserved bits set in a frame header")]
    ReservedBits,
    /// The server masked a frame (RFC 6455 5.1 forbids it).
    #[error("masked frame from the server")]
    MaskedFrame,
    /// An opcode RFC 6455 does not define.
    #[error("unknown opcode {0}")]
    BadOpcode(u8),
    /// A 64-bit length with the most significant bit set.
    #[error("invalid 64-bit payload length")]
    BadLength,
    /// A control frame fragmented or longer than 125 bytes.
    #[error("invalid control frame")]
    BadControlFrame,
    /// A continuation frame without a message in progress.
    #[error("continuation frame without a started message")]
    UnexpectedContinuation,
    /// A new data frame while a fragmented message is in progress.
    #[error("data frame inside a fragmented message")]
    ExpectedContinuation,
    /// A frame longer than the configured maximum.
    #[error("frame over the size limit")]
    FrameTooLarge,
    /// A reassembled message longer than the configured maximum.
    #[error("message over the size limit")]
    MessageTooLarge,
    /// A text message (or close reason) that is not UTF-8.
    #[error("invalid utf-8 in a text message")]
    BadUtf8,
    /// A close frame with a one-byte payload.
    #[error("invalid close frame payload")]
    BadClose,
    /// The client's queued output would exceed its cap.
    #[error("write buffer full")]
    WriteBufferFull,
}

impl WsError {
    /// A stable code for logs (listed in `docs/errors.md`).
    pub const fn code(&self) -> &'static str {
        match self {
            WsError::ReservedBits => "WS_RESERVED_BITS",
            WsError::MaskedFrame => "WS_MASKED_SERVER_FRAME",
            WsError::BadOpcode(_) => "WS_BAD_OPCODE",
            WsError::BadLength => "WS_BAD_LENGTH",
            WsError::BadControlFrame => "WS_BAD_CONTROL_FRAME",
            WsError::UnexpectedContinuation => "WS_UNEXPECTED_CONTINUATION",
            WsError::ExpectedContinuation => "WS_EXPECTED_CONTINUATION",
            WsError::FrameTooLarge => "WS_FRAME_TOO_LARGE",
            WsError::MessageTooLarge => "WS_MESSAGE_TOO_LARGE",
            WsError::BadUtf8 => "WS_BAD_UTF8",
            WsError::BadClose => "WS_BAD_CLOSE",
            WsError::WriteBufferFull => "WS_WRITE_BUFFER_FULL",
        }
    }
}

/// Where a complete message's payload lies (read with [`FrameReader::payload`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Src {
    /// In the read buffer, `start..end`.
    Buf(usize, usize),
    /// The reassembled fragmented message.
    Msg,
}

/// One complete server message or control frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// A text or binary message (reassembled if it came in fragments).
    Data(FrameKind, Payload),
    /// A ping; its payload must be echoed in a pong.
    Ping(Payload),
    /// A pong.
    Pong,
    /// A close frame with its status code, if any.
    Close(Option<u16>),
}

/// A handle to the bytes of a [`Frame`], valid until the next call to [`FrameReader::next`] or
/// [`FrameReader::fill`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload(Src);

impl Payload {
    /// No bytes (a placeholder).
    pub const EMPTY: Payload = Payload(Src::Buf(0, 0));

    /// Whether the bytes are in the read buffer, and so stay valid until the next
    /// [`FrameReader::fill`]; a reassembled message's bytes last only until the next fragment.
    pub fn in_read_buffer(self) -> bool {
        matches!(self.0, Src::Buf(..))
    }
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xA;

/// Longest frame header: 2 bytes + a 64-bit length (server frames carry no mask key).
const MAX_HEADER: usize = 10;
/// The buffer is compacted before a read that would have less room than this.
const MIN_READ: usize = 4096;

/// Reads server frames into one buffer that grows to the largest frame seen and is then reused.
#[derive(Debug)]
pub struct FrameReader {
    /// Allocated and zero-filled up to `buf.len()`; `start..end` holds unparsed bytes.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes the frame at `start` needs in full (0: unknown yet).
    need: usize,
    /// A fragmented message being reassembled.
    msg: Vec<u8>,
    msg_kind: Option<FrameKind>,
    max_frame: usize,
    max_message: usize,
}

impl FrameReader {
    /// A reader with a `read_buffer`-byte buffer, refusing frames over `max_frame` bytes and
    /// messages over `max_message` bytes of payload.
    pub fn new(read_buffer: usize, max_frame: usize, max_message: usize) -> Self {
        FrameReader {
            buf: vec![0; read_buffer.max(MAX_HEADER * 2)],
            start: 0,
            end: 0,
            need: 0,
            msg: Vec::new(),
            msg_kind: None,
            max_frame,
            max_message,
        }
    }

    /// Adds bytes that were read elsewhere (those behind the handshake response).
    pub fn push(&mut self, bytes: &[u8]) {
        self.make_room(bytes.len());
        if let Some(dst) = self.buf.get_mut(self.end..self.end + bytes.len()) {
            dst.copy_from_slice(bytes);
            self.end += bytes.len();
        }
    }

    /// Bytes buffered and not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.end - self.start
    }

    /// Makes room for at least `extra` more bytes after `end`: compacts when the free tail is
    /// short, and grows (an allocation) only when the frame being read is larger than the buffer.
    fn make_room(&mut self, extra: usize) {
        let min_read = MIN_READ.min(self.buf.len() / 2);
        if self.buf.len() - self.end >= extra.max(min_read) {
            return;
        }
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.buf.len() - self.end < extra {
            let needed = self.end + extra;
            let limit = (self.max_frame + MAX_HEADER).max(needed);
            let grown = needed.max(self.buf.len().saturating_mul(2)).min(limit);
            self.buf.resize(grown, 0);
        }
    }

    /// One `read` from `r` into the buffer. `Ok(0)` is end of stream.
    ///
    /// # Errors
    /// The stream's error (`WouldBlock` when nothing is available on a non-blocking socket).
    pub fn fill<R: Read>(&mut self, r: &mut R) -> io::Result<usize> {
        let extra = self.need.saturating_sub(self.buffered()).max(1);
        self.make_room(extra);
        let dst = self.buf.get_mut(self.end..).unwrap_or(&mut []);
        let room = dst.len();
        let n = r.read(dst)?;
        self.end += n.min(room);
        Ok(n)
    }

    /// The bytes of `p`, a payload [`FrameReader::next_frame`] returned: one in the read buffer
    /// until the next [`FrameReader::fill`], a reassembled message until the next fragment.
    pub fn payload(&self, p: Payload) -> &[u8] {
        match p.0 {
            Src::Buf(s, e) => self.buf.get(s..e).unwrap_or(&[]),
            Src::Msg => &self.msg,
        }
    }

    /// The next complete message or control frame among the buffered bytes, `None` if more
    /// bytes are needed.
    ///
    /// # Errors
    /// A [`WsError`] when the server broke the framing rules or a limit; the connection must
    /// then be closed (the reader's state is unspecified afterwards).
    pub fn next_frame(&mut self) -> Result<Option<Frame>, WsError> {
        loop {
            let avail = self.buf.get(self.start..self.end).unwrap_or(&[]);
            let (Some(&b0), Some(&b1)) = (avail.first(), avail.get(1)) else {
                self.need = 2;
                return Ok(None);
            };
            let fin = b0 & 0x80 != 0;
            if b0 & 0x70 != 0 {
                return Err(WsError::ReservedBits);
            }
            let opcode = b0 & 0x0F;
            if b1 & 0x80 != 0 {
                return Err(WsError::MaskedFrame);
            }
            if !matches!(
                opcode,
                OP_CONT | OP_TEXT | OP_BINARY | OP_CLOSE | OP_PING | OP_PONG
            ) {
                return Err(WsError::BadOpcode(opcode));
            }
            let (header, len) = match b1 & 0x7F {
                126 => match avail.get(2..4) {
                    Some(&[a, b]) => (4usize, u64::from(u16::from_be_bytes([a, b]))),
                    _ => {
                        self.need = 4;
                        return Ok(None);
                    }
                },
                127 => match avail.get(2..10) {
                    Some(&[a, b, c, d, e, f, g, h]) => {
                        let l = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                        if l >> 63 != 0 {
                            return Err(WsError::BadLength);
                        }
                        (10, l)
                    }
                    _ => {
                        self.need = 10;
                        return Ok(None);
                    }
                },
                l => (2, u64::from(l)),
            };
            let control = opcode >= OP_CLOSE;
            if control && (!fin || len > 125) {
                return Err(WsError::BadControlFrame);
            }
            // Refused from the header, before any payload is buffered.
            let len = match usize::try_from(len) {
                Ok(l) if l <= self.max_frame => l,
                _ => return Err(WsError::FrameTooLarge),
            };
            let total = header + len;
            if avail.len() < total {
                self.need = total;
                return Ok(None);
            }
            self.need = 0;
            let (ps, pe) = (self.start + header, self.start + total);
            self.start += total;
            if self.start == self.end {
                // Empty: the next read starts at the front, no compaction needed.
                self.start = 0;
                self.end = 0;
            }
            let here = Payload(Src::Buf(ps, pe));
            match opcode {
                OP_TEXT | OP_BINARY => {
                    if self.msg_kind.is_some() {
                        return Err(WsError::ExpectedContinuation);
                    }
                    let kind = if opcode == OP_TEXT {
                        FrameKind::Text
                    } else {
                        FrameKind::Binary
                    };
                    if len > self.max_message {
                        return Err(WsError::MessageTooLarge);
                    }
                    if fin {
                        if kind == FrameKind::Text {
                            check_utf8(self.payload(here))?;
                        }
                        return Ok(Some(Frame::Data(kind, here)));
                    }
                    self.msg.clear();
                    self.extend_msg(ps, pe)?;
                    self.msg_kind = Some(kind);
                }
                OP_CONT => {
                    let Some(kind) = self.msg_kind else {
                        return Err(WsError::UnexpectedContinuation);
                    };
                    self.extend_msg(ps, pe)?;
                    if fin {
                        self.msg_kind = None;
                        if kind == FrameKind::Text {
                            check_utf8(&self.msg)?;
                        }
                        return Ok(Some(Frame::Data(kind, Payload(Src::Msg))));
                    }
                }
                OP_PING => return Ok(Some(Frame::Ping(here))),
                OP_PONG => return Ok(Some(Frame::Pong)),
                _ => {
                    let p = self.payload(here);
                    return match p {
                        [] => Ok(Some(Frame::Close(None))),
                        [_] => Err(WsError::BadClose),
                        [a, b, reason @ ..] => {
                            check_utf8(reason)?;
                            Ok(Some(Frame::Close(Some(u16::from_be_bytes([*a, *b])))))
                        }
                    };
                }
            }
        }
    }

    fn extend_msg(&mut self, s: usize, e: usize) -> Result<(), WsError> {
        if self.msg.len() + (e - s) > self.max_message {
            return Err(WsError::MessageTooLarge);
        }
        let part = self.buf.get(s..e).unwrap_or(&[]);
        self.msg.extend_from_slice(part);
        Ok(())
    }
}

fn check_utf8(b: &[u8]) -> Result<(), WsError> {
    std::str::from_utf8(b)
        .map(|_| ())
        .map_err(|_| WsError::BadUtf8)
}

/// Masks and queues the client's frames in one reusable buffer; [`FrameWriter::flush`] writes
/// what the socket takes and keeps the rest for the next writable event.
#[derive(Debug)]
pub struct FrameWriter {
    out: Vec<u8>,
    sent: usize,
    max: usize,
    /// splitmix64 state for the mask keys.
    rng: u64,
}

impl FrameWriter {
    /// A writer that refuses to queue more than `max` unsent bytes. `seed` starts the mask-key
    /// sequence: RFC 6455 asks for unpredictable keys so that attacker-chosen payloads cannot be
    /// made to look like other protocols to intermediaries; ours carry only the engine's own
    /// subscriptions and pings, and a clock-seeded generator per connection serves.
    pub fn new(max: usize, seed: u64) -> Self {
        FrameWriter {
            out: Vec::with_capacity(4096),
            sent: 0,
            max,
            rng: seed,
        }
    }

    fn mask_key(&mut self) -> [u8; 4] {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        let [a, b, c, d, ..] = z.to_le_bytes();
        [a, b, c, d]
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.len() - self.sent
    }

    /// Queues one final (unfragmented) masked frame.
    ///
    /// # Errors
    /// [`WsError::WriteBufferFull`] when the unsent bytes would exceed the cap;
    /// [`WsError::BadControlFrame`] for a control payload over 125 bytes.
    pub fn queue(&mut self, opcode: u8, payload: &[u8]) -> Result<(), WsError> {
        if opcode >= OP_CLOSE && payload.len() > 125 {
            return Err(WsError::BadControlFrame);
        }
        let len = payload.len();
        if self.pending() + len + 14 > self.max {
            return Err(WsError::WriteBufferFull);
        }
        if self.sent == self.out.len() {
            self.out.clear();
            self.sent = 0;
        }
        self.out.push(0x80 | opcode);
        if len < 126 {
            self.out.push(0x80 | len as u8);
        } else if let Ok(l) = u16::try_from(len) {
            self.out.push(0x80 | 126);
            self.out.extend_from_slice(&l.to_be_bytes());
        } else {
            self.out.push(0x80 | 127);
            self.out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        let key = self.mask_key();
        self.out.extend_from_slice(&key);
        self.out
            .extend(payload.iter().zip(key.iter().cycle()).map(|(b, k)| b ^ k));
        Ok(())
    }

    /// Queues a tungstenite [`Message`] (the type connectors build subscriptions with).
    ///
    /// # Errors
    /// As [`FrameWriter::queue`].
    pub fn queue_message(&mut self, m: &Message) -> Result<(), WsError> {
        match m {
            Message::Text(t) => self.queue(OP_TEXT, t.as_bytes()),
            Message::Binary(b) => self.queue(OP_BINARY, b),
            Message::Ping(b) => self.queue(OP_PING, b),
            Message::Pong(b) => self.queue(OP_PONG, b),
            Message::Close(c) => self.queue_close(c.as_ref().map(|c| u16::from(c.code))),
            // A raw frame is never built by a connector; refused rather than sent unchecked.
            Message::Frame(_) => Err(WsError::BadOpcode(0xF)),
        }
    }

    /// Queues a pong echoing a ping's payload.
    ///
    /// # Errors
    /// As [`FrameWriter::queue`].
    pub fn queue_pong(&mut self, payload: &[u8]) -> Result<(), WsError> {
        self.queue(OP_PONG, payload)
    }

    /// Queues a close frame with `code` (none: an empty close).
    ///
    /// # Errors
    /// As [`FrameWriter::queue`].
    pub fn queue_close(&mut self, code: Option<u16>) -> Result<(), WsError> {
        match code {
            Some(c) => self.queue(OP_CLOSE, &c.to_be_bytes()),
            None => self.queue(OP_CLOSE, &[]),
        }
    }

    /// Writes queued bytes until done or the socket would block, then flushes the stream (a TLS
    /// stream writes its records then). `Ok(true)`: everything is on the wire.
    ///
    /// # Errors
    /// The stream's error other than `WouldBlock`/`Interrupted`; `WriteZero` if it took nothing.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        while self.sent < self.out.len() {
            let chunk = self.out.get(self.sent..).unwrap_or(&[]);
            match w.write(chunk) {
                Ok(0) => return Err(io::Error::from(ErrorKind::WriteZero)),
                Ok(n) => self.sent += n.min(chunk.len()),
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.out.clear();
        self.sent = 0;
        match w.flush() {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::WouldBlock => Ok(false),
            Err(e) => Err(e),
        }
    }
}

/// The stream tungstenite's handshake runs over: passes everything through, but gives tungstenite
/// the HTTP response only up to and including its terminating blank line. Whatever the server
/// sent after it stays in [`HsStream::tail`] for the [`FrameReader`].
#[derive(Debug)]
pub struct HsStream<S> {
    inner: S,
    /// How much of `\r\n\r\n` the bytes passed on so far end with.
    matched: u8,
    done: bool,
    tail: Vec<u8>,
}

impl<S> HsStream<S> {
    /// Wraps `inner` for a handshake.
    pub fn new(inner: S) -> Self {
        HsStream {
            inner,
            matched: 0,
            done: false,
            tail: Vec::new(),
        }
    }

    /// The wrapped stream.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// The wrapped stream and the bytes read behind the response.
    pub fn into_parts(self) -> (S, Vec<u8>) {
        (self.inner, self.tail)
    }
}

impl<S: Read> Read for HsStream<S> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.done {
            // tungstenite stops reading once the response is complete; never hand it more.
            return Err(io::Error::from(ErrorKind::WouldBlock));
        }
        let n = self.inner.read(out)?;
        let got = out.get(..n).unwrap_or(&[]);
        for (i, &b) in got.iter().enumerate() {
            self.matched = match (self.matched, b) {
                (0 | 2, b'\r') => self.matched + 1,
                (1 | 3, b'\n') => self.matched + 1,
                (_, b'\r') => 1,
                _ => 0,
            };
            if self.matched == 4 {
                self.done = true;
                self.tail.extend_from_slice(got.get(i + 1..).unwrap_or(&[]));
                return Ok(i + 1);
            }
        }
        Ok(n)
    }
}

impl<S: Write> Write for HsStream<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.inner.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    /// xorshift64*: deterministic randomness for the property tests.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n.max(1)
        }
    }

    /// A server frame (unmasked), with the length in the form `form` forces (0: shortest,
    /// 1: 16-bit, 2: 64-bit) where it fits.
    fn frame(fin: bool, opcode: u8, payload: &[u8], form: u8) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        let len = payload.len();
        if len < 126 && form == 0 {
            f.push(len as u8);
        } else if len <= 0xFFFF && form < 2 {
            f.push(126);
            f.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            f.push(127);
            f.extend_from_slice(&(len as u64).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    /// Yields the wire in chunks of random size, with `WouldBlock` between some of them.
    struct Chunky<'a> {
        data: &'a [u8],
        pos: usize,
        rng: Rng,
    }
    impl Read for Chunky<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            if self.pos == self.data.len() {
                return Err(ErrorKind::WouldBlock.into());
            }
            if self.rng.below(4) == 0 {
                return Err(ErrorKind::WouldBlock.into());
            }
            let n = (1 + self.rng.below(300) as usize)
                .min(out.len())
                .min(self.data.len() - self.pos);
            out[..n].copy_from_slice(&self.data[self.pos..self.pos + n]);
            self.pos += n;
            Ok(n)
        }
    }

    #[derive(Debug, PartialEq)]
    enum Got {
        Data(FrameKind, Vec<u8>),
        Ping(Vec<u8>),
        Pong,
        Close(Option<u16>),
    }

    /// Everything the reader yields from `wire`, read in random chunks; stops at the first error.
    fn read_all(wire: &[u8], seed: u64, buf: usize, max: usize) -> (Vec<Got>, Option<WsError>) {
        let mut r = FrameReader::new(buf, max, max);
        let mut src = Chunky {
            data: wire,
            pos: 0,
            rng: Rng(seed | 1),
        };
        let mut got = Vec::new();
        let mut idle = 0;
        loop {
            loop {
                match r.next_frame() {
                    Ok(Some(f)) => got.push(match f {
                        Frame::Data(k, p) => Got::Data(k, r.payload(p).to_vec()),
                        Frame::Ping(p) => Got::Ping(r.payload(p).to_vec()),
                        Frame::Pong => Got::Pong,
                        Frame::Close(c) => Got::Close(c),
                    }),
                    Ok(None) => break,
                    Err(e) => return (got, Some(e)),
                }
            }
            match r.fill(&mut src) {
                Ok(n) => {
                    assert!(n > 0);
                    idle = 0;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => {
                    if src.pos == wire.len() {
                        idle += 1;
                        if idle > 2 {
                            return (got, None);
                        }
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }

    #[test]
    fn random_frame_sequences_in_random_chunks_come_out_whole() {
        let mut rng = Rng(0x5EED);
        for case in 0..300 {
            let mut wire = Vec::new();
            let mut want = Vec::new();
            for _ in 0..rng.below(20) + 1 {
                let kind = if rng.below(2) == 0 {
                    FrameKind::Binary
                } else {
                    FrameKind::Text
                };
                let len = match rng.below(10) {
                    0 => 0,
                    1..=5 => rng.below(126) as usize,
                    6..=8 => rng.below(70_000) as usize,
                    _ => 126 + rng.below(4) as usize,
                };
                let payload: Vec<u8> = (0..len)
                    .map(|_| {
                        if kind == FrameKind::Text {
                            b'a' + rng.below(26) as u8
                        } else {
                            rng.next() as u8
                        }
                    })
                    .collect();
                let op = if kind == FrameKind::Text { 1 } else { 2 };
                let parts = rng.below(4) as usize + 1;
                if parts == 1 || payload.len() < parts {
                    wire.extend(frame(true, op, &payload, rng.below(3) as u8));
                } else {
                    // Fragmented, with control frames interleaved between the fragments.
                    let step = payload.len() / parts;
                    for i in 0..parts {
                        let s = i * step;
                        let e = if i + 1 == parts {
                            payload.len()
                        } else {
                            s + step
                        };
                        let opcode = if i == 0 { op } else { 0 };
                        wire.extend(frame(i + 1 == parts, opcode, &payload[s..e], 0));
                        if i + 1 < parts && rng.below(2) == 0 {
                            let ping: Vec<u8> = (0..rng.below(126)).map(|x| x as u8).collect();
                            wire.extend(frame(true, 9, &ping, 0));
                            want.push(Got::Ping(ping));
                        }
                        if i + 1 < parts && rng.below(3) == 0 {
                            wire.extend(frame(true, 10, b"p", 0));
                            want.push(Got::Pong);
                        }
                    }
                }
                want.push(Got::Data(kind, payload));
            }
            if rng.below(2) == 0 {
                wire.extend(frame(true, 8, &1000u16.to_be_bytes(), 0));
                want.push(Got::Close(Some(1000)));
            }
            // A small starting buffer makes the reader compact and grow; a large one does not.
            let buf = if case % 2 == 0 { 64 } else { 128 << 10 };
            let (got, err) = read_all(&wire, rng.next(), buf, 1 << 20);
            assert_eq!(err, None, "case {case}");
            assert_eq!(got, want, "case {case}");
        }
    }

    #[test]
    fn malformed_headers_are_refused_with_their_code() {
        let cases: Vec<(Vec<u8>, WsError)> = vec![
            (vec![0x80 | 0x40 | 2, 0], WsError::ReservedBits),
            (vec![0x80 | 0x10 | 1, 0], WsError::ReservedBits),
            (vec![0x82, 0x80 | 1, 1, 2, 3, 4, 9], WsError::MaskedFrame),
            (vec![0x83, 0], WsError::BadOpcode(3)),
            (vec![0x8B, 0], WsError::BadOpcode(0xB)),
            (
                [vec![0x82, 127], (1u64 << 63).to_be_bytes().to_vec()].concat(),
                WsError::BadLength,
            ),
            (
                [vec![0x82, 127], (1u64 << 40).to_be_bytes().to_vec()].concat(),
                WsError::FrameTooLarge,
            ),
            (frame(false, 9, b"", 0), WsError::BadControlFrame),
            (frame(true, 9, &[0; 126], 1), WsError::BadControlFrame),
            (frame(true, 0, b"x", 0), WsError::UnexpectedContinuation),
            (
                [frame(false, 2, b"a", 0), frame(true, 2, b"b", 0)].concat(),
                WsError::ExpectedContinuation,
            ),
            (frame(true, 1, &[0xFF, 0xFE], 0), WsError::BadUtf8),
            (
                [
                    frame(false, 1, &[0xE2, 0x82], 0),
                    frame(true, 0, &[0x28], 0),
                ]
                .concat(),
                WsError::BadUtf8,
            ),
            (frame(true, 8, &[3], 0), WsError::BadClose),
            (frame(true, 8, &[3, 232, 0xFF], 0), WsError::BadUtf8),
            (
                [frame(false, 2, &[0; 700], 1), frame(true, 0, &[0; 400], 1)].concat(),
                WsError::MessageTooLarge,
            ),
        ];
        for (i, (wire, want)) in cases.iter().enumerate() {
            for seed in 1..20 {
                let (_, err) = read_all(wire, seed, 32, 1000);
                assert_eq!(err, Some(*want), "case {i} seed {seed}");
            }
            assert!(want.code().starts_with("WS_"));
        }
        // A UTF-8 character split across fragments is fine.
        let ok = [
            frame(false, 1, &[0xE2, 0x82], 0),
            frame(true, 0, &[0xAC], 0),
        ]
        .concat();
        let (got, err) = read_all(&ok, 3, 32, 1000);
        assert_eq!(err, None);
        assert_eq!(
            got,
            vec![Got::Data(FrameKind::Text, "€".as_bytes().to_vec())]
        );
    }

    #[test]
    fn random_garbage_never_panics_and_limits_hold() {
        let mut rng = Rng(77);
        for _ in 0..3000 {
            let len = rng.below(400) as usize;
            let mut wire: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            if rng.below(2) == 0 && !wire.is_empty() {
                // Mostly-valid headers reach deeper states.
                wire[0] = (wire[0] & 0x8F) | if rng.below(2) == 0 { 0 } else { 0x80 };
                if wire.len() > 1 {
                    wire[1] &= 0x7F;
                }
            }
            let max = 1 + rng.below(300) as usize;
            let (got, _) = read_all(&wire, rng.next(), 1 + rng.below(64) as usize, max);
            for g in got {
                if let Got::Data(_, p) = g {
                    assert!(p.len() <= max);
                }
            }
        }
    }

    #[test]
    fn the_buffer_is_reused_once_grown() {
        // Thousands of frames of varying size through a reader: its buffers keep their size.
        let mut rng = Rng(9);
        let mut wire = Vec::new();
        for _ in 0..2000 {
            let n = rng.below(5000) as usize;
            wire.extend(frame(true, 2, &vec![1; n], 0));
        }
        let mut r = FrameReader::new(8 << 10, 1 << 20, 1 << 20);
        let mut src = Chunky {
            data: &wire,
            pos: 0,
            rng: Rng(5),
        };
        let mut frames = 0;
        let mut sizes = std::collections::BTreeSet::new();
        while src.pos < wire.len() || r.buffered() > 0 {
            while let Some(f) = r.next_frame().unwrap() {
                assert!(matches!(f, Frame::Data(FrameKind::Binary, _)));
                frames += 1;
            }
            let _ = r.fill(&mut src);
            sizes.insert(r.buf.len());
        }
        assert_eq!(frames, 2000);
        assert_eq!(sizes.len(), 1, "never grew: frames fit the initial buffer");
    }

    #[test]
    fn client_frames_are_masked_and_decode_back() {
        let mut w = FrameWriter::new(1 << 20, 42);
        let long = vec![b'x'; 70_000];
        w.queue_message(&Message::Text("{\"a\":1}".into())).unwrap();
        w.queue_message(&Message::Binary(bytes::Bytes::from(long.clone())))
            .unwrap();
        w.queue_pong(b"hi").unwrap();
        w.queue_close(Some(1000)).unwrap();
        assert_eq!(w.queue(9, &[0; 126]), Err(WsError::BadControlFrame));
        let mut out = Vec::new();
        assert!(w.flush(&mut out).unwrap());
        // Decode: every frame masked, FIN set, unmasked payloads as queued.
        let mut pos = 0;
        let mut got = Vec::new();
        while pos < out.len() {
            let (b0, b1) = (out[pos], out[pos + 1]);
            assert_eq!(b0 & 0xF0, 0x80);
            assert_eq!(b1 & 0x80, 0x80, "client frames are masked");
            let (mut len, mut h) = (u64::from(b1 & 0x7F), 2);
            if len == 126 {
                len = u64::from(u16::from_be_bytes([out[pos + 2], out[pos + 3]]));
                h = 4;
            } else if len == 127 {
                len = u64::from_be_bytes(out[pos + 2..pos + 10].try_into().unwrap());
                h = 10;
            }
            let key = &out[pos + h..pos + h + 4];
            let body: Vec<u8> = out[pos + h + 4..pos + h + 4 + len as usize]
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ key[i % 4])
                .collect();
            got.push((b0 & 0x0F, body));
            pos += h + 4 + len as usize;
        }
        assert_eq!(
            got,
            vec![
                (1, b"{\"a\":1}".to_vec()),
                (2, long),
                (0xA, b"hi".to_vec()),
                (8, 1000u16.to_be_bytes().to_vec())
            ]
        );
        // The cap on unsent bytes holds.
        let mut small = FrameWriter::new(100, 1);
        assert_eq!(small.queue(2, &[0; 200]), Err(WsError::WriteBufferFull));
    }

    #[test]
    fn a_writer_resumes_after_would_block() {
        struct Slow(Vec<u8>, usize);
        impl Write for Slow {
            fn write(&mut self, b: &[u8]) -> io::Result<usize> {
                self.1 += 1;
                if self.1 % 2 == 0 {
                    return Err(ErrorKind::WouldBlock.into());
                }
                let n = b.len().min(3);
                self.0.extend_from_slice(&b[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut w = FrameWriter::new(1 << 10, 3);
        w.queue(2, b"abcdefghij").unwrap();
        let mut s = Slow(Vec::new(), 0);
        let mut rounds = 0;
        while !w.flush(&mut s).unwrap() {
            rounds += 1;
            assert!(rounds < 100);
        }
        assert_eq!(s.0.len(), 2 + 4 + 10);
        assert_eq!(w.pending(), 0);
    }

    #[test]
    fn the_handshake_stream_keeps_bytes_behind_the_response() {
        let response = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n";
        let after = frame(true, 2, b"early data", 0);
        let wire = [response.to_vec(), after.clone()].concat();
        for seed in 1..50 {
            let mut hs = HsStream::new(Chunky {
                data: &wire,
                pos: 0,
                rng: Rng(seed),
            });
            let mut given = Vec::new();
            let mut buf = [0u8; 64];
            for _ in 0..10_000 {
                match hs.read(&mut buf) {
                    Ok(n) => given.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        if hs.done || hs.inner.pos == wire.len() {
                            break;
                        }
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(given, response.to_vec(), "seed {seed}");
            let (inner, tail) = hs.into_parts();
            let rest = [tail, wire[inner.pos..].to_vec()].concat();
            assert_eq!(rest, after, "seed {seed}");
        }
    }
}
