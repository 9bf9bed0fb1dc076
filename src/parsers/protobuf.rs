//! A minimal protobuf wire-format reader and writer, enough for Upstox's `FeedResponse`.
//!
//! The reader borrows: length-delimited fields come back as sub-slices of the input, so keys and
//! nested messages are decoded in place with no allocation (prost would allocate a `String` per
//! map key and a struct per nested message). It follows the wire rules a hand-written decoder must
//! keep: any field order, unknown fields skipped, proto3 defaults absent from the wire, and no
//! recursion driven by the input (the caller walks a fixed schema).

/// A protobuf framing error. None of them panics or reads out of bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PbError {
    /// The input ends inside a tag, varint or fixed-width value.
    #[error("input ends inside a field")]
    Truncated,
    /// A varint longer than 10 bytes.
    #[error("varint longer than 10 bytes")]
    VarintTooLong,
    /// A length-delimited field runs past the end of its message.
    #[error("length-delimited field runs past the end of its message")]
    LengthOverrun,
    /// Wire type 3/4 (groups, not used by this schema) or 6/7 (undefined).
    #[error("unsupported wire type {0}")]
    WireType(u8),
    /// Field number 0, which protobuf forbids.
    #[error("field number 0")]
    FieldZero,
    /// A `string` field that is not UTF-8 (proto3 requires UTF-8).
    #[error("string field is not UTF-8")]
    InvalidUtf8,
}

impl PbError {
    /// Stable upper-case code.
    pub const fn code(&self) -> &'static str {
        match self {
            PbError::Truncated => "PARSE_UPSTOX_PB_TRUNCATED",
            PbError::VarintTooLong => "PARSE_UPSTOX_PB_VARINT",
            PbError::LengthOverrun => "PARSE_UPSTOX_PB_LENGTH",
            PbError::WireType(_) => "PARSE_UPSTOX_PB_WIRE_TYPE",
            PbError::FieldZero => "PARSE_UPSTOX_PB_FIELD_ZERO",
            PbError::InvalidUtf8 => "PARSE_UPSTOX_PB_UTF8",
        }
    }

    /// Stable lower-case metric label.
    pub const fn label(&self) -> &'static str {
        match self {
            PbError::Truncated => "upstox_pb_truncated",
            PbError::VarintTooLong => "upstox_pb_varint",
            PbError::LengthOverrun => "upstox_pb_length",
            PbError::WireType(_) => "upstox_pb_wire_type",
            PbError::FieldZero => "upstox_pb_field_zero",
            PbError::InvalidUtf8 => "upstox_pb_utf8",
        }
    }
}

/// One field's value, by wire type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Wire type 0.
    Varint(u64),
    /// Wire type 1 (a `double` is `f64::from_bits`).
    Fixed64(u64),
    /// Wire type 2: bytes, string, sub-message or map entry.
    Bytes(&'a [u8]),
    /// Wire type 5.
    Fixed32(u32),
}

impl Value<'_> {
    /// The value as a `double` field, if it has that wire type.
    pub fn as_f64(self) -> Option<f64> {
        match self {
            Value::Fixed64(bits) => Some(f64::from_bits(bits)),
            _ => None,
        }
    }

    /// The value as an `int64`/enum field, if it has that wire type.
    pub fn as_i64(self) -> Option<i64> {
        match self {
            // Two's complement reinterpretation is exactly protobuf's int64 mapping.
            Value::Varint(v) => Some(v as i64),
            _ => None,
        }
    }
}

/// Iterates the fields of one message. After an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
    field_start: usize,
}

impl<'a> Reader<'a> {
    /// A reader over one message's bytes.
    #[inline]
    pub fn new(buf: &'a [u8]) -> Reader<'a> {
        Reader {
            buf,
            pos: 0,
            field_start: 0,
        }
    }

    /// Offset where the last field returned (or the failing one) starts.
    pub fn field_start(&self) -> usize {
        self.field_start
    }

    /// A varint; the one-byte form (every tag and small length in this schema) inline.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, PbError> {
        if let Some(&b) = self.buf.get(self.pos) {
            if b < 0x80 {
                self.pos += 1;
                return Ok(u64::from(b));
            }
        }
        self.varint_long()
    }

    #[inline(never)]
    fn varint_long(&mut self) -> Result<u64, PbError> {
        varint_slow(self.buf, &mut self.pos)
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], PbError> {
        let end = self.pos.checked_add(n).ok_or(PbError::LengthOverrun)?;
        let s = self.buf.get(self.pos..end).ok_or(PbError::LengthOverrun)?;
        self.pos = end;
        Ok(s)
    }

    #[inline(always)]
    fn fixed<const N: usize>(&mut self) -> Result<[u8; N], PbError> {
        let a = *self
            .buf
            .get(self.pos..)
            .and_then(<[u8]>::first_chunk::<N>)
            .ok_or(PbError::Truncated)?;
        self.pos += N;
        Ok(a)
    }

    #[inline(always)]
    fn field(&mut self) -> Result<(u32, Value<'a>), PbError> {
        let tag = self.varint()?;
        let num = tag >> 3;
        if num == 0 {
            return Err(PbError::FieldZero);
        }
        // Field numbers are at most 2^29 - 1; larger tags cannot name a field we know, and
        // saturating keeps them unknown rather than aliasing a small number.
        let num = u32::try_from(num).unwrap_or(u32::MAX);
        let value = match tag & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(self.fixed::<8>()?)),
            2 => {
                let len = self.varint()?;
                let len = usize::try_from(len).map_err(|_| PbError::LengthOverrun)?;
                Value::Bytes(self.take(len)?)
            }
            5 => Value::Fixed32(u32::from_le_bytes(self.fixed::<4>()?)),
            // Masked to 3 bits, so the cast is lossless.
            wt => return Err(PbError::WireType(wt as u8)),
        };
        Ok((num, value))
    }
}

/// A varint of any length at `*pos`, advancing `pos` past it (also on error, which stops the
/// caller anyway).
fn varint_slow(buf: &[u8], pos: &mut usize) -> Result<u64, PbError> {
    let mut v = 0u64;
    // 10 bytes carry 70 bits; the bits past 64 are dropped, as every protobuf runtime does.
    for i in 0..10 {
        let b = *buf.get(*pos).ok_or(PbError::Truncated)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Ok(v);
        }
    }
    Err(PbError::VarintTooLong)
}

/// A forward-only cursor for decoders specialised to one message layout, which know the tags
/// to expect and in what order. Every method answers `None` where [`Reader`] would return an
/// error; such a decoder then gives up and leaves the input to the general [`Reader`] path,
/// which alone decides errors. Values read are those [`Reader`] reads, bit for bit.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// A cursor over one message's bytes.
    #[inline(always)]
    pub fn new(buf: &'a [u8]) -> Cursor<'a> {
        Cursor { buf, pos: 0 }
    }

    /// Consumes the next field's tag when it is the one-byte tag `tag` (`number << 3 | wire
    /// type`, field numbers up to 15) and says so; otherwise consumes nothing.
    #[inline(always)]
    pub fn eat(&mut self, tag: u8) -> bool {
        let hit = self.buf.get(self.pos) == Some(&tag);
        self.pos += usize::from(hit);
        hit
    }

    /// True when every byte was consumed: a layout-specialised decoder that ate the fields it
    /// expects, in their order, ends here, and anything left over (an unknown, repeated or
    /// out-of-order field) means the message is not of that layout.
    #[inline(always)]
    pub fn at_end(&self) -> bool {
        self.pos >= self.buf.len()
    }

    /// A varint (an `int64`, enum or length); the one- and two-byte forms inline.
    #[inline(always)]
    pub fn varint(&mut self) -> Option<u64> {
        let b = *self.buf.get(self.pos)?;
        if b < 0x80 {
            self.pos += 1;
            return Some(u64::from(b));
        }
        if let Some(&c) = self.buf.get(self.pos + 1) {
            if c < 0x80 {
                self.pos += 2;
                return Some(u64::from(b & 0x7f) | u64::from(c) << 7);
            }
        }
        varint_slow(self.buf, &mut self.pos).ok()
    }

    /// A fixed64 read as a `double`.
    #[inline(always)]
    pub fn f64(&mut self) -> Option<f64> {
        let a = *self.buf.get(self.pos..)?.first_chunk::<8>()?;
        self.pos += 8;
        Some(f64::from_le_bytes(a))
    }

    /// A length-delimited value.
    #[inline(always)]
    pub fn bytes(&mut self) -> Option<&'a [u8]> {
        let len = usize::try_from(self.varint()?).ok()?;
        let end = self.pos.checked_add(len)?;
        let s = self.buf.get(self.pos..end)?;
        self.pos = end;
        Some(s)
    }
}

impl<'a> Iterator for Reader<'a> {
    type Item = Result<(u32, Value<'a>), PbError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.buf.len() {
            return None;
        }
        self.field_start = self.pos;
        let r = self.field();
        if r.is_err() {
            // Stop: after a framing error the rest of the message cannot be located.
            self.pos = self.buf.len();
        }
        Some(r)
    }
}

/// Decodes a `string` field.
///
/// # Errors
/// [`PbError::InvalidUtf8`].
pub fn as_str(b: &[u8]) -> Result<&str, PbError> {
    std::str::from_utf8(b).map_err(|_| PbError::InvalidUtf8)
}

/// Appends a varint.
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends a field tag.
pub fn put_tag(out: &mut Vec<u8>, field: u32, wire_type: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire_type & 7));
}

/// Appends a `double` field, omitted when it is +0.0 (proto3 implicit presence).
pub fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    if v.to_bits() != 0 {
        put_tag(out, field, 1);
        out.extend_from_slice(&v.to_le_bytes());
    }
}

/// Appends an `int64`/enum field, omitted when 0 (proto3 implicit presence).
pub fn put_int64(out: &mut Vec<u8>, field: u32, v: i64) {
    if v != 0 {
        put_tag(out, field, 0);
        put_varint(out, v as u64);
    }
}

/// Appends a length-delimited field holding `bytes`.
pub fn put_bytes(out: &mut Vec<u8>, field: u32, bytes: &[u8]) {
    put_tag(out, field, 2);
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a sub-message field whose body `body` writes. The body is written in place and then
/// moved right by the size of its length prefix, so no scratch buffer is allocated.
pub fn put_message(out: &mut Vec<u8>, field: u32, body: impl FnOnce(&mut Vec<u8>)) {
    put_tag(out, field, 2);
    let start = out.len();
    body(out);
    let len = out.len() - start;
    let mut prefix = [0u8; 10];
    let mut n = 0;
    let mut v = len as u64;
    for slot in prefix.iter_mut() {
        n += 1;
        if v < 0x80 {
            *slot = v as u8;
            break;
        }
        *slot = (v as u8) | 0x80;
        v >>= 7;
    }
    let prefix = prefix.get(..n).unwrap_or(&[]);
    // Grow by the prefix size, shift the body right, then write the prefix in front of it.
    out.extend_from_slice(prefix);
    out.copy_within(start..start + len, start + n);
    if let Some(dst) = out.get_mut(start..start + n) {
        dst.copy_from_slice(prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varints_round_trip_including_negative_int64() {
        for v in [
            0i64,
            1,
            127,
            128,
            300,
            -1,
            i64::MIN,
            i64::MAX,
            1_700_000_000_000,
        ] {
            let mut out = Vec::new();
            put_int64(&mut out, 3, v);
            if v == 0 {
                assert!(out.is_empty());
                continue;
            }
            let mut r = Reader::new(&out);
            let (num, val) = r.next().unwrap().unwrap();
            assert_eq!(num, 3);
            assert_eq!(val.as_i64(), Some(v));
            assert!(r.next().is_none());
        }
        let mut out = Vec::new();
        put_int64(&mut out, 1, -1);
        assert_eq!(out.len(), 11, "a negative int64 takes a 10-byte varint");
    }

    #[test]
    fn nested_message_length_prefix() {
        for body_len in [0usize, 5, 127, 128, 300, 20_000] {
            let mut out = vec![0xAA];
            put_message(&mut out, 2, |o| {
                o.extend(std::iter::repeat_n(7u8, body_len))
            });
            let mut r = Reader::new(&out[1..]);
            let (num, val) = r.next().unwrap().unwrap();
            assert_eq!(num, 2);
            assert_eq!(val, Value::Bytes(&vec![7u8; body_len][..]));
            assert_eq!(out[0], 0xAA);
        }
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let cases: [(&[u8], PbError); 6] = [
            (&[0x08], PbError::Truncated),
            (&[0x09, 1, 2, 3], PbError::Truncated),
            (&[0x12, 5, 1], PbError::LengthOverrun),
            (&[0x0b], PbError::WireType(3)),
            (&[0x00, 0x00], PbError::FieldZero),
            (
                &[
                    0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01,
                ],
                PbError::VarintTooLong,
            ),
        ];
        for (bytes, want) in cases {
            let mut r = Reader::new(bytes);
            assert_eq!(r.next(), Some(Err(want)), "{bytes:?}");
            assert_eq!(r.next(), None);
        }
        assert_eq!(as_str(&[0xff]), Err(PbError::InvalidUtf8));
    }

    #[test]
    fn doubles_and_fixed32() {
        let mut out = Vec::new();
        put_double(&mut out, 1, 1573.7);
        put_double(&mut out, 2, 0.0);
        put_tag(&mut out, 9, 5);
        out.extend_from_slice(&7u32.to_le_bytes());
        let got: Vec<_> = Reader::new(&out).map(|f| f.unwrap()).collect();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].1.as_f64(), Some(1573.7));
        assert_eq!(got[1], (9, Value::Fixed32(7)));
        assert_eq!(got[1].1.as_f64(), None);
    }
}
