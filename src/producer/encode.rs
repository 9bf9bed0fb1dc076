//! Turns hand-over items into Kafka records (topic, key, headers, payload) in buffers the
//! producer thread reuses, so encoding a tick allocates nothing once the buffers have grown.
//!
//! - ticks: key = instrument (`EXCHANGE:SYMBOL` once resolved, else `<vendor>:<token>`), payload
//!   = the JSON form of `docs/tick-schema.md` (or, with `KAFKA_TICK_FORMAT=binary`, its compact
//!   binary form), headers `vendor` and `schema` (`1` for JSON, `bin1` for binary);
//! - raw frames: key = `<vendor>:<connection id>`, payload = the frame bytes as received,
//!   headers `vendor`, `kind` (`binary`/`text`), `receivedAt` (epoch ns);
//! - rejects (DLQ): key = vendor, payload = JSON with the reason, code, vendor, connection,
//!   receive time, the raw bytes in base64 and, for a tick refused by the validator, the tick.

use std::io::Write as _;

use super::{Outbound, Topic};
use crate::{
    config::TickFormat,
    encode::{
        binary::{encode_binary, BINARY_SCHEMA},
        json::encode_json,
    },
    journal::RecordRef,
};

/// A record's headers on the stack (no allocation per record); at most [`MAX_HEADERS`].
#[derive(Debug)]
pub(super) struct HeaderList<'a> {
    items: [(&'a str, &'a [u8]); MAX_HEADERS],
    len: usize,
}

/// Most headers a record carries; further ones are ignored.
pub(super) const MAX_HEADERS: usize = 8;

impl<'a> HeaderList<'a> {
    pub(super) fn new() -> Self {
        HeaderList {
            items: [("", &[]); MAX_HEADERS],
            len: 0,
        }
    }

    fn clear(&mut self) {
        self.len = 0;
    }

    fn push(&mut self, h: (&'a str, &'a [u8])) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = h;
            self.len += 1;
        }
    }

    pub(super) fn as_slice(&self) -> &[(&'a str, &'a [u8])] {
        self.items.get(..self.len).unwrap_or(&[])
    }
}

/// Version of the tick payload schema, sent in the `schema` header.
pub const TICK_SCHEMA_VERSION: &[u8] = b"1";

/// Reused encoding buffers and the view of the last encoded record.
#[derive(Debug, Default)]
pub(super) struct Encoder {
    key: Vec<u8>,
    payload: Vec<u8>,
    /// Header value scratch (receive time as decimal).
    h_time: Vec<u8>,
    topic: Option<Topic>,
    vendor: &'static str,
    kind: Kind,
    /// The `market.ticks` payload form (`KAFKA_TICK_FORMAT`).
    format: TickFormat,
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Kind {
    #[default]
    Tick,
    Raw(&'static str),
    Dlq,
    Record,
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

fn base64(out: &mut Vec<u8>, bytes: &[u8]) {
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let sym = |shift: u32| {
            B64.get(((n >> shift) & 63) as usize)
                .copied()
                .unwrap_or(b'A')
        };
        out.push(sym(18));
        out.push(sym(12));
        out.push(if chunk.len() > 1 { sym(6) } else { b'=' });
        out.push(if chunk.len() > 2 { sym(0) } else { b'=' });
    }
}

impl Encoder {
    /// An encoder writing ticks in `format`.
    pub(super) fn new(format: TickFormat) -> Self {
        Encoder {
            format,
            ..Encoder::default()
        }
    }

    /// Encodes `item`, replacing the previous record. `record` items are borrowed as they are.
    pub(super) fn encode(&mut self, item: &Outbound) {
        self.key.clear();
        self.payload.clear();
        self.h_time.clear();
        match item {
            Outbound::Tick(t) => {
                self.topic = Some(Topic::Ticks);
                self.kind = Kind::Tick;
                self.vendor = t.vendor.as_str();
                // The canonical `EXCHANGE:SYMBOL` when the instrument master resolved the tick
                // (a lock-free, allocation-free lookup); else `<vendor>:<token>`, the same string
                // the JSON carries as `instrument`.
                let name = crate::instruments::names::name_of(t.instrument_id);
                match name {
                    Some(n) => self.key.extend_from_slice(n.as_bytes()),
                    None => {
                        let _ = write!(self.key, "{}:{}", t.vendor.as_str(), t.token.as_str());
                    }
                }
                match self.format {
                    TickFormat::Json => encode_json(t, name, &mut self.payload),
                    TickFormat::Binary => encode_binary(t, &self.key, &mut self.payload),
                }
            }
            Outbound::Raw(r) => {
                self.topic = Some(Topic::Raw);
                self.kind = Kind::Raw(match r.kind {
                    crate::parsers::FrameKind::Binary => "binary",
                    crate::parsers::FrameKind::Text => "text",
                });
                self.vendor = r.vendor.as_str();
                let _ = write!(self.key, "{}:{}", r.vendor.as_str(), r.conn_id);
                let _ = write!(self.h_time, "{}", r.received_at_ns);
                self.payload.extend_from_slice(&r.payload);
            }
            Outbound::Reject(r) => {
                self.topic = Some(Topic::Dlq);
                self.kind = Kind::Dlq;
                self.vendor = r.vendor.as_str();
                self.key.extend_from_slice(r.vendor.as_str().as_bytes());
                let _ = write!(
                    self.payload,
                    "{{\"reason\":\"{}\",\"code\":\"{}\",\"vendor\":\"{}\",\"connId\":{},\"receivedAt\":{},\"detail\":\"{}\",\"rawBase64\":\"",
                    r.reason,
                    r.code,
                    r.vendor.as_str(),
                    r.conn_id,
                    r.received_at_ns / 1_000_000,
                    r.detail
                );
                base64(&mut self.payload, &r.raw);
                self.payload.push(b'"');
                if let Some(t) = &r.tick {
                    self.payload.extend_from_slice(b",\"tick\":");
                    encode_json(t, None, &mut self.payload);
                }
                self.payload.push(b'}');
            }
            Outbound::Record(r) => {
                self.topic = Some(r.topic);
                self.kind = Kind::Record;
                self.vendor = "";
                if let Some(k) = &r.key {
                    self.key.extend_from_slice(k);
                }
                self.payload.extend_from_slice(&r.payload);
            }
        }
    }

    /// The key of the last encoded record.
    pub(super) fn key(&self) -> &[u8] {
        &self.key
    }

    /// The topic of the last encoded record.
    pub(super) fn topic(&self) -> Topic {
        self.topic.unwrap_or(Topic::Ticks)
    }

    /// The last encoded record as a borrowed view, with its headers in `headers`.
    pub(super) fn view<'a>(
        &'a self,
        item: &'a Outbound,
        headers: &'a mut HeaderList<'a>,
    ) -> RecordRef<'a> {
        headers.clear();
        match (self.kind, item) {
            (Kind::Tick, _) => {
                headers.push(("vendor", self.vendor.as_bytes()));
                headers.push((
                    "schema",
                    match self.format {
                        TickFormat::Json => TICK_SCHEMA_VERSION,
                        TickFormat::Binary => BINARY_SCHEMA,
                    },
                ));
            }
            (Kind::Raw(kind), _) => {
                headers.push(("vendor", self.vendor.as_bytes()));
                headers.push(("kind", kind.as_bytes()));
                headers.push(("receivedAt", &self.h_time));
            }
            (Kind::Dlq, _) => {
                headers.push(("vendor", self.vendor.as_bytes()));
            }
            (Kind::Record, Outbound::Record(r)) => {
                for (k, v) in &r.headers {
                    headers.push((k.as_str(), v.as_slice()));
                }
            }
            (Kind::Record, _) => {}
        }
        RecordRef {
            topic: self.topic() as u8,
            key: &self.key,
            headers: headers.as_slice(),
            payload: &self.payload,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (input, expect) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            let mut out = Vec::new();
            base64(&mut out, input.as_bytes());
            assert_eq!(out, expect.as_bytes());
        }
    }

    /// The largest frame a feed accepts fits the producer's record limit on `market.raw`, and
    /// so does its dead-letter record (its bytes in base64 plus the reject's fields), so neither
    /// is refused by librdkafka or by the topics the engine creates.
    #[test]
    fn the_largest_frame_and_its_reject_fit_the_record_limit() {
        use crate::{
            parsers::FrameKind,
            producer::{RawFrame, Reject, MAX_RECORD_BYTES},
            rawpool::RawBuf,
            vendor::Vendor,
        };
        let frame = vec![0xa5u8; crate::feed::MAX_MESSAGE_BYTES];
        let items = [
            Outbound::Raw(RawFrame {
                vendor: Vendor::Upstox,
                conn_id: u16::MAX,
                kind: FrameKind::Binary,
                received_at_ns: u64::MAX,
                payload: RawBuf::from_slice(&frame),
            }),
            Outbound::Reject(Box::new(Reject {
                vendor: Vendor::Upstox,
                conn_id: u16::MAX,
                received_at_ns: u64::MAX,
                reason: "frame_too_large",
                code: "PARSE_FRAME_TOO_LARGE",
                detail: "a detail",
                raw: RawBuf::from_slice(&frame),
                tick: None,
            })),
        ];
        let mut enc = Encoder::new(TickFormat::Json);
        for item in &items {
            enc.encode(item);
            let mut headers = HeaderList::new();
            let view = enc.view(item, &mut headers);
            let size = view.key.len()
                + view.payload.len()
                + view
                    .headers
                    .iter()
                    .map(|(k, v)| k.len() + v.len())
                    .sum::<usize>();
            assert!(
                size > crate::feed::MAX_MESSAGE_BYTES && size < MAX_RECORD_BYTES,
                "{:?}: {size} bytes",
                enc.topic()
            );
        }
    }
}
