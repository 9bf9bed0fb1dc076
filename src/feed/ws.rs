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

    /// The bytes of `p`, a payload of the frame last returned by [`FrameReader::next`].
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
