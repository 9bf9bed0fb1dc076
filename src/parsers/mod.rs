//! Vendor frame parsers: WebSocket frame bytes in, [`Tick`]s, events and typed rejects out.
//!
//! Parsers borrow the frame (no copy), build each tick on the stack (no allocation), and hand it to
//! a caller-supplied [`TickSink`]. They do no I/O, read no clock and log nothing: the frame's
//! receive time comes in with [`FrameMeta`]. A malformed packet is reported to the sink with its
//! bytes and the walk goes on wherever the framing still allows, so the valid packets of a bad
//! frame still come through.
//!
//! Each vendor module also holds that vendor's *encoder* (the inverse of its parser), used by the
//! vendor simulator, by fixtures and by the round-trip and differential tests.

pub mod angel;
pub mod dhan;
pub mod json;
pub mod kite;
pub mod protobuf;
pub mod upstox;

use crate::{
    tick::{Exchange, Tick},
    vendor::Vendor,
};

/// The WebSocket frame kind, with the capture-format code as discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum FrameKind {
    /// A binary message.
    Binary = 1,
    /// A text message.
    Text = 2,
}

impl FrameKind {
    /// The kind for a capture-format code, if any.
    pub const fn from_code(code: u8) -> Option<FrameKind> {
        match code {
            1 => Some(FrameKind::Binary),
            2 => Some(FrameKind::Text),
            _ => None,
        }
    }
}

/// What the caller knows about a frame besides its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameMeta {
    /// Receive time, epoch nanoseconds; copied into every tick.
    pub received_at_ns: u64,
    /// The connection the frame came on; copied into every tick.
    pub conn_id: u16,
}

/// A vendor text message's kind (Kite sends `{"type": ..., "data": ...}` text frames).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TextKind {
    /// An order postback.
    Order,
    /// An error string from the vendor.
    Error,
    /// A broker message or alert.
    Message,
    /// Anything else, including text that is not JSON.
    Unknown,
}

impl TextKind {
    /// A short lower-case label.
    pub const fn as_str(self) -> &'static str {
        match self {
            TextKind::Order => "order",
            TextKind::Error => "error",
            TextKind::Message => "message",
            TextKind::Unknown => "unknown",
        }
    }
}

/// An exchange segment's trading status (Upstox `MarketStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MarketStatus {
    /// Pre-open session started.
    PreOpenStart,
    /// Pre-open session ended.
    PreOpenEnd,
    /// Normal market open.
    NormalOpen,
    /// Normal market closed.
    NormalClose,
    /// Closing session started.
    ClosingStart,
    /// Closing session ended.
    ClosingEnd,
    /// A value this build does not know (proto3 enums are open).
    Unknown(i32),
}

impl MarketStatus {
    /// From the protobuf enum value.
    pub const fn from_code(code: i32) -> MarketStatus {
        match code {
            0 => MarketStatus::PreOpenStart,
            1 => MarketStatus::PreOpenEnd,
            2 => MarketStatus::NormalOpen,
            3 => MarketStatus::NormalClose,
            4 => MarketStatus::ClosingStart,
            5 => MarketStatus::ClosingEnd,
            other => MarketStatus::Unknown(other),
        }
    }

    /// The protobuf enum value.
    pub const fn code(self) -> i32 {
        match self {
            MarketStatus::PreOpenStart => 0,
            MarketStatus::PreOpenEnd => 1,
            MarketStatus::NormalOpen => 2,
            MarketStatus::NormalClose => 3,
            MarketStatus::ClosingStart => 4,
            MarketStatus::ClosingEnd => 5,
            MarketStatus::Unknown(c) => c,
        }
    }

    /// The vendor's name for the status.
    pub const fn as_str(self) -> &'static str {
        match self {
            MarketStatus::PreOpenStart => "PRE_OPEN_START",
            MarketStatus::PreOpenEnd => "PRE_OPEN_END",
            MarketStatus::NormalOpen => "NORMAL_OPEN",
            MarketStatus::NormalClose => "NORMAL_CLOSE",
            MarketStatus::ClosingStart => "CLOSING_START",
            MarketStatus::ClosingEnd => "CLOSING_END",
            MarketStatus::Unknown(_) => "UNKNOWN",
        }
    }
}

/// A non-tick message from a feed. Borrows from the frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedEvent<'a> {
    /// A text frame, classified (Kite order/error/message JSON).
    Text {
        /// The vendor.
        vendor: Vendor,
        /// Its classification.
        kind: TextKind,
        /// The raw text.
        raw: &'a [u8],
    },
    /// One segment's status from an Upstox `market_info` message.
    MarketStatus {
        /// The vendor.
        vendor: Vendor,
        /// Segment name as sent (`NSE_EQ`, `NSE_FO`, ...).
        segment: &'a str,
        /// The status.
        status: MarketStatus,
        /// The message's `currentTs`, epoch ms (0 when absent).
        at_ms: i64,
    },
    /// The vendor announced it is closing the connection (Dhan response code 50), with its
    /// reason code (Dhan: 805 too many connections ... 807 token expired, 809 auth failed).
    VendorDisconnect {
        /// The vendor.
        vendor: Vendor,
        /// The vendor's reason code.
        reason: u16,
    },
}

/// Where a parser delivers its output.
pub trait TickSink {
    /// One valid tick. The reference is valid only for the call: copy the tick to keep it.
    fn tick(&mut self, tick: &Tick);
    /// One packet, map entry or frame remainder that could not be parsed, with its raw bytes.
    fn reject(&mut self, err: &ParseError, raw: &[u8]);
    /// A non-tick message (text frame, market status). Ignored unless overridden.
    fn event(&mut self, event: &FeedEvent<'_>) {
        let _ = event;
    }
    /// Whether the sink takes [`TickSink::upcoming`] hints; a parser skips its look-ahead when
    /// not. False unless overridden.
    fn wants_upcoming(&self) -> bool {
        false
    }
    /// A packet of this instrument (`vendor`, `exchange`, its token's [`Token::short_key`])
    /// follows a few packets on in the frame. A sink that looks instruments up can start loading
    /// the entry now, so that a frame's lookups overlap instead of each waiting for memory in
    /// turn. A hint only: the packet may still be rejected. Ignored unless overridden.
    ///
    /// [`Token::short_key`]: crate::tick::Token::short_key
    fn upcoming(&mut self, vendor: Vendor, exchange: Exchange, short_key: [u8; 16]) {
        let _ = (vendor, exchange, short_key);
    }
}

/// Counts of what one frame produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameOutcome {
    /// Ticks delivered.
    pub ticks: u32,
    /// Rejects delivered.
    pub rejects: u32,
    /// Events delivered.
    pub events: u32,
    /// The frame was a Kite heartbeat.
    pub heartbeat: bool,
}

/// Why bytes from a feed could not become a tick. Each variant has a stable [`code`](Self::code)
/// (DLQ records, logs) and [`label`](Self::label) (the metric label `reason`).
///
/// None of these is fatal to a connection: the frame's other packets are still delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The frame is longer than the parser accepts; nothing of it was parsed.
    #[error("frame of {len} bytes exceeds the {max}-byte limit")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The vendor has no parser here.
    #[error("no parser for vendor code {code}")]
    UnsupportedVendor {
        /// The vendor code.
        code: u8,
    },
    /// A Kite frame ends inside the packet count or a packet's length prefix.
    #[error("kite frame truncated at byte {at}")]
    KiteTruncated {
        /// Offset in the frame.
        at: usize,
    },
    /// A Kite packet's declared length runs past the end of the frame.
    #[error("kite packet declares {declared} bytes but {available} remain")]
    KitePacketOverrun {
        /// Declared length.
        declared: u16,
        /// Bytes left in the frame.
        available: usize,
    },
    /// A Kite packet length that no official client knows (8, 28, 32, 44, 184 are known).
    #[error("kite packet of unknown length {len}")]
    KiteUnknownLength {
        /// The length.
        len: u16,
    },
    /// A Kite token whose segment (`token & 0xff`) is not 1..=9 or 12.
    #[error("kite token {token} has unknown segment {}", token & 0xff)]
    KiteUnknownSegment {
        /// The instrument token.
        token: u32,
    },
    /// Bytes left after the packets a Kite frame declared.
    #[error("{extra} bytes after the declared kite packets")]
    KiteTrailingBytes {
        /// Number of extra bytes.
        extra: usize,
    },
    /// The protobuf framing is broken.
    #[error("upstox protobuf: {0}")]
    Protobuf(#[from] protobuf::PbError),
    /// An Upstox instrument key longer than the inline token.
    #[error("upstox instrument key of {len} bytes is too long")]
    UpstoxKeyTooLong {
        /// Key length.
        len: usize,
    },
    /// An Upstox instrument key without `SEGMENT|ID` form.
    #[error("upstox instrument key is not SEGMENT|ID")]
    UpstoxBadKey,
    /// An Upstox key whose segment this build does not map.
    #[error("upstox instrument key has an unknown segment")]
    UpstoxUnknownSegment,
    /// An Upstox feed entry with none of ltpc, fullFeed, firstLevelWithGreeks.
    #[error("upstox feed carries no ltpc, fullFeed or firstLevelWithGreeks")]
    UpstoxEmptyFeed,
    /// An Angel packet shorter than its mode's length.
    #[error("angel packet of {len} bytes, mode needs {need}")]
    AngelTruncated {
        /// Bytes present.
        len: usize,
        /// Bytes the mode needs.
        need: usize,
    },
    /// An Angel packet whose mode byte is not 1..=4.
    #[error("angel packet of unknown mode {mode}")]
    AngelUnknownMode {
        /// The mode byte.
        mode: u8,
    },
    /// An Angel exchange type this build does not map.
    #[error("angel packet of unknown exchange type {code}")]
    AngelUnknownExchange {
        /// The exchange type byte.
        code: u8,
    },
    /// An Angel token field that is empty or not printable ASCII.
    #[error("angel token field is empty or not ascii")]
    AngelBadToken,
    /// Bytes after an Angel packet (one packet per frame).
    #[error("{extra} bytes after the angel packet")]
    AngelTrailingBytes {
        /// Number of extra bytes.
        extra: usize,
    },
    /// A Dhan frame ends inside a header or packet.
    #[error("dhan frame truncated at byte {at}")]
    DhanTruncated {
        /// Offset in the frame (or the packet length).
        at: usize,
    },
    /// A Dhan response code this build does not know.
    #[error("dhan packet of unknown response code {code}")]
    DhanUnknownCode {
        /// The response code.
        code: u8,
    },
    /// A Dhan packet whose declared length fits neither reading of its code's size.
    #[error("dhan packet code {code} declares length {declared}")]
    DhanLengthMismatch {
        /// The response code.
        code: u8,
        /// The declared length.
        declared: u16,
    },
    /// A Dhan exchange segment this build does not map.
    #[error("dhan packet of unknown exchange segment {code}")]
    DhanUnknownSegment {
        /// The segment code.
        code: u8,
    },
    /// A JSON feed frame is not valid JSON (or has bytes after the value).
    #[error("json feed frame is not valid JSON")]
    JsonSyntax,
    /// A JSON feed frame (or array element) that is not an object.
    #[error("json feed message is not an object")]
    JsonNotObject,
    /// A JSON feed tick object lacks a required mapped field.
    #[error("json feed tick lacks `{field}`")]
    JsonMissingField {
        /// The tick field.
        field: json::JsonField,
    },
    /// A JSON feed value of the wrong type (a non-numeric string for a number, an unknown
    /// exchange, a token that is neither a string nor an integer or is too long).
    #[error("json feed value for `{field}` has the wrong type")]
    JsonBadField {
        /// The tick field.
        field: json::JsonField,
    },
    /// A JSON feed frame arrived but no field mapping is installed.
    #[error("json feed frame but no JSON_FEED_MAP is installed")]
    JsonNotConfigured,
}

impl ParseError {
    /// Stable upper-case code, e.g. `PARSE_KITE_TRUNCATED`.
    pub const fn code(&self) -> &'static str {
        match self {
            ParseError::FrameTooLarge { .. } => "PARSE_FRAME_TOO_LARGE",
            ParseError::UnsupportedVendor { .. } => "PARSE_UNSUPPORTED_VENDOR",
            ParseError::KiteTruncated { .. } => "PARSE_KITE_TRUNCATED",
            ParseError::KitePacketOverrun { .. } => "PARSE_KITE_PACKET_OVERRUN",
            ParseError::KiteUnknownLength { .. } => "PARSE_KITE_UNKNOWN_LENGTH",
            ParseError::KiteUnknownSegment { .. } => "PARSE_KITE_UNKNOWN_SEGMENT",
            ParseError::KiteTrailingBytes { .. } => "PARSE_KITE_TRAILING_BYTES",
            ParseError::Protobuf(e) => e.code(),
            ParseError::UpstoxKeyTooLong { .. } => "PARSE_UPSTOX_KEY_TOO_LONG",
            ParseError::UpstoxBadKey => "PARSE_UPSTOX_BAD_KEY",
            ParseError::UpstoxUnknownSegment => "PARSE_UPSTOX_UNKNOWN_SEGMENT",
            ParseError::UpstoxEmptyFeed => "PARSE_UPSTOX_EMPTY_FEED",
            ParseError::AngelTruncated { .. } => "PARSE_ANGEL_TRUNCATED",
            ParseError::AngelUnknownMode { .. } => "PARSE_ANGEL_UNKNOWN_MODE",
            ParseError::AngelUnknownExchange { .. } => "PARSE_ANGEL_UNKNOWN_EXCHANGE",
            ParseError::AngelBadToken => "PARSE_ANGEL_BAD_TOKEN",
            ParseError::AngelTrailingBytes { .. } => "PARSE_ANGEL_TRAILING_BYTES",
            ParseError::DhanTruncated { .. } => "PARSE_DHAN_TRUNCATED",
            ParseError::DhanUnknownCode { .. } => "PARSE_DHAN_UNKNOWN_CODE",
            ParseError::DhanLengthMismatch { .. } => "PARSE_DHAN_LENGTH_MISMATCH",
            ParseError::DhanUnknownSegment { .. } => "PARSE_DHAN_UNKNOWN_SEGMENT",
            ParseError::JsonSyntax => "PARSE_JSON_SYNTAX",
            ParseError::JsonNotObject => "PARSE_JSON_NOT_OBJECT",
            ParseError::JsonMissingField { .. } => "PARSE_JSON_MISSING_FIELD",
            ParseError::JsonBadField { .. } => "PARSE_JSON_BAD_FIELD",
            ParseError::JsonNotConfigured => "PARSE_JSON_NOT_CONFIGURED",
        }
    }

    /// Stable lower-case label for the metric `reason` (the code without `PARSE_`, lower-cased).
    pub const fn label(&self) -> &'static str {
        match self {
            ParseError::FrameTooLarge { .. } => "frame_too_large",
            ParseError::UnsupportedVendor { .. } => "unsupported_vendor",
            ParseError::KiteTruncated { .. } => "kite_truncated",
            ParseError::KitePacketOverrun { .. } => "kite_packet_overrun",
            ParseError::KiteUnknownLength { .. } => "kite_unknown_length",
            ParseError::KiteUnknownSegment { .. } => "kite_unknown_segment",
            ParseError::KiteTrailingBytes { .. } => "kite_trailing_bytes",
            ParseError::Protobuf(e) => e.label(),
            ParseError::UpstoxKeyTooLong { .. } => "upstox_key_too_long",
            ParseError::UpstoxBadKey => "upstox_bad_key",
            ParseError::UpstoxUnknownSegment => "upstox_unknown_segment",
            ParseError::UpstoxEmptyFeed => "upstox_empty_feed",
            ParseError::AngelTruncated { .. } => "angel_truncated",
            ParseError::AngelUnknownMode { .. } => "angel_unknown_mode",
            ParseError::AngelUnknownExchange { .. } => "angel_unknown_exchange",
            ParseError::AngelBadToken => "angel_bad_token",
            ParseError::AngelTrailingBytes { .. } => "angel_trailing_bytes",
            ParseError::DhanTruncated { .. } => "dhan_truncated",
            ParseError::DhanUnknownCode { .. } => "dhan_unknown_code",
            ParseError::DhanLengthMismatch { .. } => "dhan_length_mismatch",
            ParseError::DhanUnknownSegment { .. } => "dhan_unknown_segment",
            ParseError::JsonSyntax => "json_syntax",
            ParseError::JsonNotObject => "json_not_object",
            ParseError::JsonMissingField { .. } => "json_missing_field",
            ParseError::JsonBadField { .. } => "json_bad_field",
            ParseError::JsonNotConfigured => "json_not_configured",
        }
    }
}

/// The check every parser makes first: a frame over `max` bytes is refused whole (one reject,
/// nothing parsed). `Some(outcome)` when refused.
pub(crate) fn refuse_oversized<S: TickSink + ?Sized>(
    frame: &[u8],
    max: usize,
    sink: &mut S,
) -> Option<FrameOutcome> {
    if frame.len() <= max {
        return None;
    }
    sink.reject(
        &ParseError::FrameTooLarge {
            len: frame.len(),
            max,
        },
        frame,
    );
    Some(FrameOutcome {
        rejects: 1,
        ..FrameOutcome::default()
    })
}

/// Parses one frame of any supported vendor (the capture decoder and the engine's feed threads use
/// this one entry point). Text frames become [`FeedEvent::Text`]; Upstox sends none, but one is
/// still reported as an event rather than dropped.
pub fn parse_frame<S: TickSink + ?Sized>(
    vendor: Vendor,
    kind: FrameKind,
    payload: &[u8],
    meta: &FrameMeta,
    sink: &mut S,
) -> FrameOutcome {
    match (vendor, kind) {
        (Vendor::Kite, FrameKind::Binary) => kite::parse_frame(payload, meta, sink),
        (Vendor::Upstox, FrameKind::Binary) => upstox::parse_frame(payload, meta, sink),
        (Vendor::Angel, FrameKind::Binary) => angel::parse_frame(payload, meta, sink),
        (Vendor::Angel, FrameKind::Text) => angel::parse_text(payload, sink),
        (Vendor::Dhan, FrameKind::Binary) => dhan::parse_frame(payload, meta, sink),
        (Vendor::Json, FrameKind::Text) => json::parse_frame(payload, meta, sink),
        (Vendor::Kite | Vendor::Upstox | Vendor::Dhan, FrameKind::Text) => {
            let kind = if vendor == Vendor::Kite {
                kite::classify_text(payload)
            } else {
                TextKind::Unknown
            };
            sink.event(&FeedEvent::Text {
                vendor,
                kind,
                raw: payload,
            });
            FrameOutcome {
                events: 1,
                ..FrameOutcome::default()
            }
        }
        (other, _) => {
            sink.reject(
                &ParseError::UnsupportedVendor { code: other.code() },
                payload,
            );
            FrameOutcome {
                rejects: 1,
                ..FrameOutcome::default()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_and_labels_agree() {
        let all = [
            ParseError::FrameTooLarge { len: 1, max: 0 },
            ParseError::UnsupportedVendor { code: 3 },
            ParseError::KiteTruncated { at: 0 },
            ParseError::KitePacketOverrun {
                declared: 9,
                available: 1,
            },
            ParseError::KiteUnknownLength { len: 64 },
            ParseError::KiteUnknownSegment { token: 10 },
            ParseError::KiteTrailingBytes { extra: 1 },
            ParseError::Protobuf(protobuf::PbError::Truncated),
            ParseError::Protobuf(protobuf::PbError::VarintTooLong),
            ParseError::Protobuf(protobuf::PbError::LengthOverrun),
            ParseError::Protobuf(protobuf::PbError::WireType(3)),
            ParseError::Protobuf(protobuf::PbError::FieldZero),
            ParseError::Protobuf(protobuf::PbError::InvalidUtf8),
            ParseError::UpstoxKeyTooLong { len: 40 },
            ParseError::UpstoxBadKey,
            ParseError::UpstoxUnknownSegment,
            ParseError::UpstoxEmptyFeed,
            ParseError::AngelTruncated { len: 1, need: 51 },
            ParseError::AngelUnknownMode { mode: 9 },
            ParseError::AngelUnknownExchange { code: 7 },
            ParseError::AngelBadToken,
            ParseError::AngelTrailingBytes { extra: 1 },
            ParseError::DhanTruncated { at: 0 },
            ParseError::DhanUnknownCode { code: 99 },
            ParseError::DhanLengthMismatch {
                code: 2,
                declared: 3,
            },
            ParseError::DhanUnknownSegment { code: 6 },
            ParseError::JsonSyntax,
            ParseError::JsonNotObject,
            ParseError::JsonMissingField {
                field: json::JsonField::Ltp,
            },
            ParseError::JsonBadField {
                field: json::JsonField::Token,
            },
            ParseError::JsonNotConfigured,
        ];
        let mut seen = std::collections::HashSet::new();
        for e in all {
            assert!(seen.insert(e.code()), "duplicate code {}", e.code());
            let expect = e.code().trim_start_matches("PARSE_").to_ascii_lowercase();
            assert_eq!(e.label(), expect);
            assert!(!e.to_string().is_empty());
        }
    }
}
