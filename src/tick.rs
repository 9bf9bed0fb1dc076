//! The engine's one tick type, [`Tick`], and the small enums it carries.
//!
//! A `Tick` is a fixed-layout value (`#[repr(C)]`, `Copy`, no heap fields) so it moves through the
//! crossbeam queues by value and costs no allocation. Every vendor is normalised into it: prices in
//! rupees as `f64`, quantities as `f64` holding whole numbers (Upstox sends some as doubles, and the
//! validator must be able to see a non-integral one), times in epoch milliseconds. A field the
//! vendor or mode does not carry is marked absent in [`Fields`]; a carried time of 0 means the
//! vendor sent 0 (JSON `null`).

use std::{cell::Cell, fmt};

use crate::vendor::Vendor;

/// Capacity of the inline token. Upstox keys such as `NSE_INDEX|Nifty 50` or
/// `NSE_EQ|INE002A01018` fit with room to spare; a longer key is a typed parse error.
pub const TOKEN_CAP: usize = 32;

/// Depth levels kept per side. Kite full mode and Upstox `full` send 5; Upstox `full_d30` sends
/// more, of which the best 5 are kept.
pub const DEPTH_LEVELS: usize = 5;

/// The vendor's instrument id as inline UTF-8 text (Kite: the decimal instrument token; Upstox:
/// the instrument key). Bytes past `len` are always zero, so the derived equality is exact.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct Token {
    bytes: [u8; TOKEN_CAP],
    len: u8,
}

/// A token longer than [`TOKEN_CAP`] bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("token of {len} bytes exceeds the {TOKEN_CAP}-byte inline capacity")]
pub struct TokenTooLong {
    /// The length of the rejected token.
    pub len: usize,
}

impl Token {
    /// The empty token (an unset tick).
    pub const EMPTY: Token = Token {
        bytes: [0; TOKEN_CAP],
        len: 0,
    };

    /// Copies `s` inline.
    ///
    /// # Errors
    /// [`TokenTooLong`] when `s` has more than [`TOKEN_CAP`] bytes: truncating would silently merge
    /// two instruments.
    pub fn new(s: &str) -> Result<Token, TokenTooLong> {
        let src = s.as_bytes();
        let mut t = Token::EMPTY;
        match t.bytes.get_mut(..src.len()) {
            Some(dst) => dst.copy_from_slice(src),
            None => return Err(TokenTooLong { len: src.len() }),
        }
        // TOKEN_CAP < 256, so the length fits in a u8 once the copy succeeded.
        t.len = src.len() as u8;
        Ok(t)
    }

    /// Copies `b` inline when it is ASCII (so valid UTF-8) and fits; `None` otherwise. For the
    /// parsers' fast paths, which then need no UTF-8 validation of their own.
    #[inline]
    pub fn from_ascii(b: &[u8]) -> Option<Token> {
        if !b.is_ascii() {
            return None;
        }
        let mut t = Token::EMPTY;
        t.bytes.get_mut(..b.len())?.copy_from_slice(b);
        // TOKEN_CAP < 256, so the length fits in a u8 once the copy succeeded.
        t.len = b.len() as u8;
        Some(t)
    }

    /// The decimal form of a numeric token (Kite's instrument_token).
    ///
    /// Runs once per Kite tick that misses the [`U32TokenCache`], so the digits are computed
    /// branch-free (SWAR: all ten digits at once in a `u128`, leading zeros shifted out) instead
    /// of by a digit loop.
    #[inline]
    pub fn from_u32(v: u32) -> Token {
        Token::from_packed(u32_digits(v))
    }

    /// The token of a packed decimal (see [`u32_digits`]): digits in the low 10 bytes, length in
    /// byte 10; bytes 11.. are ignored.
    #[inline(always)]
    fn from_packed(packed: u128) -> Token {
        let mut t = Token::EMPTY;
        t.set_packed(packed);
        t
    }

    /// Overwrites the token with a packed decimal (as [`Token::from_packed`], in place).
    #[inline(always)]
    fn set_packed(&mut self, packed: u128) {
        if let Some(head) = self.bytes.first_chunk_mut::<16>() {
            *head = (packed & PACKED_DIGITS).to_le_bytes();
        }
        if let Some(tail) = self.bytes.last_chunk_mut::<{ TOKEN_CAP - 16 }>() {
            *tail = [0; TOKEN_CAP - 16];
        }
        // At most 10.
        self.len = (packed >> 80) as u8;
    }

    /// The token text.
    pub fn as_str(&self) -> &str {
        // Constructors only ever store a whole `&str`, so this never falls back.
        self.bytes
            .get(..usize::from(self.len))
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }

    /// The token as a number, when it is one (Kite).
    pub fn as_u32(&self) -> Option<u32> {
        self.as_str().parse().ok()
    }

    /// Longest token [`Token::short_key`] packs.
    pub const SHORT_KEY_MAX: usize = 13;

    /// The token as an exact 16-byte key when it has at most [`Token::SHORT_KEY_MAX`] bytes:
    /// its bytes (zero past `len`), the length in byte 13, bytes 14 and 15 zero for the caller
    /// (the routing table puts vendor and exchange there). Numeric tokens (Kite, Angel, Dhan)
    /// always fit, so their lookups hash and compare two words instead of the whole token.
    #[inline]
    pub fn short_key(&self) -> Option<[u8; 16]> {
        if usize::from(self.len) > Self::SHORT_KEY_MAX {
            return None;
        }
        let mut k = *self.bytes.first_chunk::<16>()?;
        k[Self::SHORT_KEY_MAX] = self.len;
        Some(k)
    }

    /// [`Token::short_key`] of [`Token::from_u32`]`(v)`, computed without building the token:
    /// what a parser's look-ahead hands to [`crate::parsers::TickSink::upcoming`].
    #[inline]
    pub fn short_key_of_u32(v: u32) -> [u8; 16] {
        let packed = u32_digits(v);
        // At most 10 digits, so the length lands in byte 13 with bytes 10..13 zero.
        let len = packed >> 80;
        ((packed & PACKED_DIGITS) | (len << (8 * Self::SHORT_KEY_MAX))).to_le_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// True for the empty token.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// The digit bytes (0..10) of a packed decimal ([`u32_digits`]).
const PACKED_DIGITS: u128 = (1 << 80) - 1;

/// `v` in decimal, packed: the digits as ASCII in the low 10 bytes (most significant in the
/// lowest byte, memory order; zero bytes after the last digit), the digit count in byte 10, zeros
/// above.
const fn u32_digits(v: u32) -> u128 {
    let (hi, lo) = (v / 100_000_000, v % 100_000_000);
    // Ten digits, most significant in the lowest byte (memory order), leading zeros as '0'.
    let ten = swar_two_digits(hi) as u128 | ((swar_eight_digits(lo) as u128) << 16);
    // Leading '0' digits: the low bytes that XOR with '0' to zero (all ten for 0, which keeps
    // one).
    const ZEROS: u128 = 0x3030_3030_3030_3030_3030;
    let lead = (ten ^ ZEROS).trailing_zeros() / 8;
    let lead = if lead > 9 { 9 } else { lead };
    // Drop them; the bytes shifted in at the top are zero.
    (ten >> (8 * lead)) | (((10 - lead) as u128) << 80)
}

/// log2 of [`U32TokenCache::SETS`].
const TOKEN_CACHE_BITS: u32 = 10;

/// Marks a filled slot of a [`U32TokenCache`] (byte 11, above the packed text).
const FILLED: u128 = 1 << 88;

/// A cache of numeric tokens' decimal text, for the Kite parser: an instrument ticks again and
/// again, so its token is formatted once and then copied (about a third of the instructions of
/// formatting it; a miss formats and fills a slot). Fixed size, no allocation: [`Self::SETS`]
/// sets of two 16-byte slots (two-way set-associative, so two instruments whose tokens hash
/// alike do not evict each other), 32 KiB. A slot packs the key (bits 96..128) and a filled
/// mark (byte 11) over the packed decimal text of that key (digits in bytes 0..10, length in
/// byte 10), so a hit can only return the key's own text; an all-zero slot (the initial state)
/// matches no key. Not `Sync`: one per thread (the Kite parser keeps one in a thread-local, so
/// every thread of the process has its 32 KiB of zeroed thread-local storage).
pub struct U32TokenCache {
    sets: [[Cell<u128>; 2]; U32TokenCache::SETS],
}

impl U32TokenCache {
    /// Number of sets (two 16-byte slots each).
    pub const SETS: usize = 1 << TOKEN_CACHE_BITS;

    /// An empty cache (32 KiB: meant for a `static` or `thread_local!` initialiser, evaluated at
    /// compile time, as the Kite parser's is).
    // The lint is for arrays built on the stack at run time; a const initialiser builds none.
    #[allow(clippy::large_stack_arrays)]
    pub const fn new() -> U32TokenCache {
        U32TokenCache {
            sets: [const { [const { Cell::new(0) }; 2] }; U32TokenCache::SETS],
        }
    }

    /// The set for `v`: Fibonacci hashing, so the segment in a Kite token's low byte and the
    /// exchange token above it both spread over the sets.
    #[inline(always)]
    fn set(v: u32) -> usize {
        (v.wrapping_mul(0x9e37_79b1) >> (32 - TOKEN_CACHE_BITS)) as usize
    }

    /// `v`'s token, equal to [`Token::from_u32`]`(v)`.
    #[inline]
    pub fn token(&self, v: u32) -> Token {
        let mut t = Token::EMPTY;
        self.write(v, &mut t);
        t
    }

    /// Sets `dst` to `v`'s token: `*dst = self.token(v)`, written in place.
    #[inline]
    pub fn write(&self, v: u32, dst: &mut Token) {
        // The index is below SETS by construction, so `get` compiles to no check.
        let Some([first, second]) = self.sets.get(Self::set(v)) else {
            *dst = Token::from_u32(v);
            return;
        };
        // Key and mark: the top 40 bits of a filled slot of `v`.
        let key = (u64::from(v) << 8) | 1;
        let a = first.get();
        let b = second.get();
        let packed = if (a >> 88) as u64 == key {
            a
        } else if (b >> 88) as u64 == key {
            b
        } else {
            Self::fill(first, second, v)
        };
        dst.set_packed(packed);
    }

    /// Starts loading `v`'s set into the cache, for a packet of `v` further on in the frame
    /// (the 32 KiB are evicted between frames by whatever else the core runs).
    #[inline]
    pub fn prefetch(&self, v: u32) {
        if let Some(set) = self.sets.get(Self::set(v)) {
            crate::prefetch::read(set);
        }
    }

    /// A miss: the newest entry goes first, the one it displaces second (the second's is
    /// dropped).
    #[cold]
    #[inline(never)]
    fn fill(first: &Cell<u128>, second: &Cell<u128>, v: u32) -> u128 {
        let packed = u32_digits(v);
        second.set(first.get());
        first.set(packed | FILLED | (u128::from(v) << 96));
        packed
    }
}

impl Default for U32TokenCache {
    fn default() -> Self {
        U32TokenCache::new()
    }
}

impl fmt::Debug for U32TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("U32TokenCache").finish_non_exhaustive()
    }
}

/// `v < 100` as two ASCII digits, the tens in the low byte (memory order).
#[inline(always)]
const fn swar_two_digits(v: u32) -> u16 {
    let tens = v / 10;
    (tens | ((v - 10 * tens) << 8)) as u16 | 0x3030
}

/// `v < 10^8` as eight ASCII digits with leading zeros, the most significant in the low byte
/// (memory order). Splits into 4+4, then 2+2 per half, then 1+1 per pair, all lanes at once in
/// one `u64`; each multiply-shift is an exact division for the lane's range (checked for every
/// value by the tests against the plain formatter).
#[inline(always)]
const fn swar_eight_digits(v: u32) -> u64 {
    let v = v as u64;
    // Lanes of 32 bits: [v / 10^4, v % 10^4].
    let merged = (v / 10_000) | ((v % 10_000) << 32);
    // Each 32-bit lane x < 10^4: x / 100 = (x * 10486) >> 20.
    let hundreds = ((merged * 10_486) >> 20) & 0x0000_007f_0000_007f;
    // Lanes of 16 bits: [x / 100, x % 100] per half.
    let pairs = (merged - 100 * hundreds) << 16 | hundreds;
    // Each 16-bit lane y < 100: y / 10 = (y * 103) >> 10.
    let tens = ((pairs * 103) >> 10) & 0x000f_000f_000f_000f;
    // Lanes of 8 bits: [y / 10, y % 10] per pair.
    let digits = (pairs - 10 * tens) << 8 | tens;
    digits | 0x3030_3030_3030_3030
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The exchange segment of an instrument, in Kite's segment numbering (`token & 0xff`), which
/// Upstox segments map onto.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Exchange {
    /// Not set; the validator rejects a tick that still has it.
    Unknown = 0,
    /// NSE cash market.
    Nse = 1,
    /// NSE futures and options.
    Nfo = 2,
    /// NSE currency derivatives.
    Cds = 3,
    /// BSE cash market.
    Bse = 4,
    /// BSE futures and options.
    Bfo = 5,
    /// BSE currency derivatives.
    Bcd = 6,
    /// MCX commodities.
    Mcx = 7,
    /// MCX-SX.
    Mcxsx = 8,
    /// Kite's indices segment.
    Indices = 9,
    /// NSE commodity derivatives (Kite segment 12; pykiteconnect 5.2 maps it, divisor 10,000).
    Nco = 12,
}

impl Exchange {
    /// Every known exchange (not [`Exchange::Unknown`]), in code order.
    pub const ALL: [Exchange; 10] = [
        Exchange::Nse,
        Exchange::Nfo,
        Exchange::Cds,
        Exchange::Bse,
        Exchange::Bfo,
        Exchange::Bcd,
        Exchange::Mcx,
        Exchange::Mcxsx,
        Exchange::Indices,
        Exchange::Nco,
    ];

    /// The exchange for a Kite segment code (`token & 0xff`), if known.
    pub const fn from_kite_segment(seg: u8) -> Option<Exchange> {
        match seg {
            1 => Some(Exchange::Nse),
            2 => Some(Exchange::Nfo),
            3 => Some(Exchange::Cds),
            4 => Some(Exchange::Bse),
            5 => Some(Exchange::Bfo),
            6 => Some(Exchange::Bcd),
            7 => Some(Exchange::Mcx),
            8 => Some(Exchange::Mcxsx),
            9 => Some(Exchange::Indices),
            12 => Some(Exchange::Nco),
            _ => None,
        }
    }

    /// The exchange for an Upstox key segment (the part before `|`), if known, and whether the
    /// segment is an index segment.
    pub fn from_upstox_segment(seg: &str) -> Option<(Exchange, bool)> {
        Exchange::from_upstox_segment_bytes(seg.as_bytes())
    }

    /// [`Exchange::from_upstox_segment`] for the segment's bytes.
    #[inline]
    pub fn from_upstox_segment_bytes(seg: &[u8]) -> Option<(Exchange, bool)> {
        match seg {
            b"NSE_EQ" => Some((Exchange::Nse, false)),
            b"NSE_INDEX" => Some((Exchange::Nse, true)),
            b"NSE_FO" => Some((Exchange::Nfo, false)),
            b"BSE_EQ" => Some((Exchange::Bse, false)),
            b"BSE_INDEX" => Some((Exchange::Bse, true)),
            b"BSE_FO" => Some((Exchange::Bfo, false)),
            b"NCD_FO" => Some((Exchange::Cds, false)),
            b"BCD_FO" => Some((Exchange::Bcd, false)),
            b"MCX_FO" => Some((Exchange::Mcx, false)),
            _ => None,
        }
    }

    /// The upper-case name used in JSON (`NSE`, `NFO`, ...).
    pub const fn as_str(self) -> &'static str {
        match self {
            Exchange::Unknown => "UNKNOWN",
            Exchange::Nse => "NSE",
            Exchange::Nfo => "NFO",
            Exchange::Cds => "CDS",
            Exchange::Bse => "BSE",
            Exchange::Bfo => "BFO",
            Exchange::Bcd => "BCD",
            Exchange::Mcx => "MCX",
            Exchange::Mcxsx => "MCXSX",
            Exchange::Indices => "INDICES",
            Exchange::Nco => "NCO",
        }
    }
}

/// The subscription mode the tick came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Mode {
    /// Last price only (Kite `ltp`, Upstox `ltpc`).
    Ltp = 1,
    /// Kite `quote`.
    Quote = 2,
    /// Kite `full`, Upstox `full` (market or index).
    Full = 3,
    /// Upstox `option_greeks` (first level with greeks).
    Greeks = 4,
}

impl Mode {
    /// The lower-case name used in JSON.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Ltp => "ltp",
            Mode::Quote => "quote",
            Mode::Full => "full",
            Mode::Greeks => "greeks",
        }
    }
}

/// Presence bitmask: which of a tick's fields the vendor and mode carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(transparent)]
pub struct Fields(pub u32);

impl Fields {
    /// Last traded price.
    pub const LTP: Fields = Fields(1 << 0);
    /// Last traded quantity.
    pub const LTQ: Fields = Fields(1 << 1);
    /// Average traded price.
    pub const ATP: Fields = Fields(1 << 2);
    /// Volume traded today.
    pub const VOLUME: Fields = Fields(1 << 3);
    /// Total pending buy quantity.
    pub const TOTAL_BUY_QTY: Fields = Fields(1 << 4);
    /// Total pending sell quantity.
    pub const TOTAL_SELL_QTY: Fields = Fields(1 << 5);
    /// Day open.
    pub const OPEN: Fields = Fields(1 << 6);
    /// Day high.
    pub const HIGH: Fields = Fields(1 << 7);
    /// Day low.
    pub const LOW: Fields = Fields(1 << 8);
    /// Previous session's close.
    pub const CLOSE: Fields = Fields(1 << 9);
    /// Open interest.
    pub const OI: Fields = Fields(1 << 10);
    /// Open interest day high.
    pub const OI_DAY_HIGH: Fields = Fields(1 << 11);
    /// Open interest day low.
    pub const OI_DAY_LOW: Fields = Fields(1 << 12);
    /// Implied volatility.
    pub const IV: Fields = Fields(1 << 13);
    /// Option greeks.
    pub const GREEKS: Fields = Fields(1 << 14);
    /// Last trade time.
    pub const LAST_TRADE_TIME: Fields = Fields(1 << 15);
    /// Exchange time.
    pub const EXCHANGE_TIME: Fields = Fields(1 << 16);
    /// Market depth.
    pub const DEPTH: Fields = Fields(1 << 17);
    /// Depth levels carry an order count (Kite); Upstox does not.
    pub const DEPTH_ORDERS: Fields = Fields(1 << 18);

    /// No field.
    pub const NONE: Fields = Fields(0);

    /// True when every bit of `other` is set.
    pub const fn has(self, other: Fields) -> bool {
        self.0 & other.0 == other.0
    }

    /// The union.
    pub const fn with(self, other: Fields) -> Fields {
        Fields(self.0 | other.0)
    }

    /// Sets the bits of `other`.
    pub fn insert(&mut self, other: Fields) {
        self.0 |= other.0;
    }
}

impl std::ops::BitOr for Fields {
    type Output = Fields;
    fn bitor(self, rhs: Fields) -> Fields {
        Fields(self.0 | rhs.0)
    }
}

/// One depth level.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct Level {
    /// Price in rupees.
    pub price: f64,
    /// Quantity (a whole number).
    pub qty: f64,
    /// Number of orders; meaningful only with [`Fields::DEPTH_ORDERS`].
    pub orders: u32,
}

/// Up to [`DEPTH_LEVELS`] levels per side, best first.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct Depth {
    /// Bid levels; only the first `bid_len` are meaningful.
    pub bids: [Level; DEPTH_LEVELS],
    /// Ask levels; only the first `ask_len` are meaningful.
    pub asks: [Level; DEPTH_LEVELS],
    /// Number of bid levels carried.
    pub bid_len: u8,
    /// Number of ask levels carried.
    pub ask_len: u8,
}

impl Depth {
    /// The carried bid levels, best first.
    pub fn bids(&self) -> &[Level] {
        self.bids.get(..usize::from(self.bid_len)).unwrap_or(&[])
    }

    /// The carried ask levels, best first.
    pub fn asks(&self) -> &[Level] {
        self.asks.get(..usize::from(self.ask_len)).unwrap_or(&[])
    }
}

/// Option greeks.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[repr(C)]
pub struct Greeks {
    /// Delta.
    pub delta: f64,
    /// Theta.
    pub theta: f64,
    /// Gamma.
    pub gamma: f64,
    /// Vega.
    pub vega: f64,
    /// Rho.
    pub rho: f64,
}

/// One instrument update, normalised across vendors. See the module docs and
/// `docs/tick-schema.md`.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct Tick {
    /// When the frame arrived, epoch nanoseconds (the engine's clock, not the vendor's).
    pub received_at_ns: u64,
    /// Last trade time, epoch ms; 0 where the vendor sent 0.
    pub last_trade_time_ms: i64,
    /// Exchange time, epoch ms (Kite's exchange timestamp, Upstox's `currentTs`); 0 where the
    /// vendor sent 0.
    pub exchange_time_ms: i64,
    /// Last traded price.
    pub ltp: f64,
    /// Last traded quantity.
    pub ltq: f64,
    /// Average traded price.
    pub atp: f64,
    /// Volume traded today.
    pub volume: f64,
    /// Total pending buy quantity.
    pub total_buy_qty: f64,
    /// Total pending sell quantity.
    pub total_sell_qty: f64,
    /// Day open.
    pub open: f64,
    /// Day high.
    pub high: f64,
    /// Day low.
    pub low: f64,
    /// Previous session's close, as the vendors send it.
    pub close: f64,
    /// Open interest.
    pub oi: f64,
    /// Open interest day high.
    pub oi_day_high: f64,
    /// Open interest day low.
    pub oi_day_low: f64,
    /// Implied volatility.
    pub iv: f64,
    /// Instrument-master id; 0 = unresolved.
    pub instrument_id: u32,
    /// Which fields are carried.
    pub fields: Fields,
    /// The connection the frame came on.
    pub conn_id: u16,
    /// The vendor.
    pub vendor: Vendor,
    /// The exchange segment.
    pub exchange: Exchange,
    /// The subscription mode.
    pub mode: Mode,
    /// True for an index (not tradable).
    pub is_index: bool,
    /// The vendor's instrument id.
    pub token: Token,
    // Greeks and depth come last: the fields before them are the tick's head, all that most
    // ticks carry, and the hand-over queue moves only the head unless the tick has these
    // (`crate::producer::handover`).
    /// Option greeks.
    pub greeks: Greeks,
    /// Market depth.
    pub depth: Depth,
}

impl Tick {
    /// A tick with nothing carried, the starting point of every parser.
    pub const EMPTY: Tick = Tick {
        received_at_ns: 0,
        last_trade_time_ms: 0,
        exchange_time_ms: 0,
        ltp: 0.0,
        ltq: 0.0,
        atp: 0.0,
        volume: 0.0,
        total_buy_qty: 0.0,
        total_sell_qty: 0.0,
        open: 0.0,
        high: 0.0,
        low: 0.0,
        close: 0.0,
        oi: 0.0,
        oi_day_high: 0.0,
        oi_day_low: 0.0,
        iv: 0.0,
        greeks: Greeks {
            delta: 0.0,
            theta: 0.0,
            gamma: 0.0,
            vega: 0.0,
            rho: 0.0,
        },
        depth: Depth {
            bids: [Level {
                price: 0.0,
                qty: 0.0,
                orders: 0,
            }; DEPTH_LEVELS],
            asks: [Level {
                price: 0.0,
                qty: 0.0,
                orders: 0,
            }; DEPTH_LEVELS],
            bid_len: 0,
            ask_len: 0,
        },
        instrument_id: 0,
        fields: Fields::NONE,
        conn_id: 0,
        vendor: Vendor::Kite,
        exchange: Exchange::Unknown,
        mode: Mode::Ltp,
        is_index: false,
        token: Token::EMPTY,
    };

    /// Marks every field in `f` absent and resets it to its [`Tick::EMPTY`] value, so a tick
    /// reused as scratch keeps the invariant every parser output has: a field not carried holds
    /// its empty value. ([`Fields::DEPTH`] resets the whole book, [`Fields::DEPTH_ORDERS`] the
    /// order counts.)
    #[inline]
    pub fn clear_fields(&mut self, f: Fields) {
        let e = &Tick::EMPTY;
        macro_rules! reset {
            ($bit:expr, $($field:ident).+) => {
                if f.has($bit) {
                    self.$($field).+ = e.$($field).+;
                }
            };
        }
        reset!(Fields::LTP, ltp);
        reset!(Fields::LTQ, ltq);
        reset!(Fields::ATP, atp);
        reset!(Fields::VOLUME, volume);
        reset!(Fields::TOTAL_BUY_QTY, total_buy_qty);
        reset!(Fields::TOTAL_SELL_QTY, total_sell_qty);
        reset!(Fields::OPEN, open);
        reset!(Fields::HIGH, high);
        reset!(Fields::LOW, low);
        reset!(Fields::CLOSE, close);
        reset!(Fields::OI, oi);
        reset!(Fields::OI_DAY_HIGH, oi_day_high);
        reset!(Fields::OI_DAY_LOW, oi_day_low);
        reset!(Fields::IV, iv);
        reset!(Fields::GREEKS, greeks);
        reset!(Fields::LAST_TRADE_TIME, last_trade_time_ms);
        reset!(Fields::EXCHANGE_TIME, exchange_time_ms);
        reset!(Fields::DEPTH, depth);
        if f.has(Fields::DEPTH_ORDERS) {
            for l in self.depth.bids.iter_mut().chain(self.depth.asks.iter_mut()) {
                l.orders = 0;
            }
        }
        self.fields = Fields(self.fields.0 & !f.0);
    }

    /// True when `f` is carried.
    pub const fn has(&self, f: Fields) -> bool {
        self.fields.has(f)
    }

    /// Percent change of `ltp` against `close` (the vendors' own formula,
    /// `(ltp - close) * 100 / close`), 0 when `close` is 0; `None` unless both are carried.
    pub fn change_percent(&self) -> Option<f64> {
        if !self.has(Fields::LTP.with(Fields::CLOSE)) {
            return None;
        }
        if self.close == 0.0 {
            return Some(0.0);
        }
        Some((self.ltp - self.close) * 100.0 / self.close)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_key_of_u32_is_the_tokens_short_key() {
        let mut v = 0x9e37_79b9u32;
        let edges = (0..=10u32).flat_map(|d| {
            let p = 10u64.pow(d);
            [p.saturating_sub(1), p, p + 1].map(|x| u32::try_from(x).unwrap_or(u32::MAX))
        });
        for x in edges.chain([0, u32::MAX]).chain((0..10_000).map(|_| {
            v ^= v << 13;
            v ^= v >> 17;
            v ^= v << 5;
            v
        })) {
            assert_eq!(
                Some(Token::short_key_of_u32(x)),
                Token::from_u32(x).short_key(),
                "{x}"
            );
        }
    }

    #[test]
    fn token_fits_upstox_keys_and_rejects_longer() {
        let t = Token::new("NSE_INDEX|Nifty 50").unwrap();
        assert_eq!(t.as_str(), "NSE_INDEX|Nifty 50");
        assert_eq!(t.len(), 18);
        let long = "X".repeat(TOKEN_CAP + 1);
        assert_eq!(Token::new(&long), Err(TokenTooLong { len: 33 }));
        assert!(Token::new(&long[..TOKEN_CAP]).is_ok());
        assert_eq!(
            Token::from_ascii(b"NSE_INDEX|Nifty 50"),
            Token::new("NSE_INDEX|Nifty 50").ok()
        );
        assert_eq!(Token::from_ascii(long.as_bytes()), None);
        assert_eq!(
            Token::from_ascii(&long.as_bytes()[..TOKEN_CAP]),
            Token::new(&long[..TOKEN_CAP]).ok()
        );
        assert_eq!(Token::from_ascii("é".as_bytes()), None);
        assert_eq!(Token::from_u32(408065).as_str(), "408065");
        assert_eq!(Token::from_u32(408065).as_u32(), Some(408065));
        assert_eq!(Token::from_u32(u32::MAX).as_u32(), Some(u32::MAX));
    }

    #[test]
    fn from_u32_is_the_decimal_text() {
        let check = |x: u32| {
            let t = Token::from_u32(x);
            assert_eq!(t, Token::new(&x.to_string()).unwrap(), "{x}");
        };
        // Every digit count's edges, then a sweep of low values, then random ones.
        let mut p = 1u64;
        while p <= u64::from(u32::MAX) {
            for d in [p.saturating_sub(1), p, p + 1] {
                check(d.min(u64::from(u32::MAX)) as u32);
            }
            p *= 10;
        }
        check(u32::MAX);
        (0..1_000_000).for_each(check);
        let mut v = 1u64;
        for _ in 0..1_000_000 {
            v = v.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            check((v >> 32) as u32 >> (v % 32));
        }
    }

    #[test]
    fn token_cache_returns_each_tokens_own_text() {
        // Random tokens, then keys forced into one set (colliding and evicting each other),
        // looked up again and again in shifting orders: every answer must be the formatter's.
        let cache = U32TokenCache::new();
        let check = |v: u32| assert_eq!(cache.token(v), Token::from_u32(v), "{v}");
        let mut next = crate::test_rng::xorshift(0x2545_f491_4f6c_dd1d);
        let random: Vec<u32> = (0..10_000).map(|_| next() as u32).collect();
        let mut colliding = Vec::new();
        let mut v = 1u32;
        while colliding.len() < 5 {
            if U32TokenCache::set(v) == U32TokenCache::set(408_065) {
                colliding.push(v);
            }
            v += 1;
        }
        // 0 (the key an all-zero slot would mean if the mark were not there) and edges.
        for v in [0, 1, 9, 10, u32::MAX, 408_065] {
            check(v);
            check(v);
        }
        for round in 0..20u64 {
            for (i, &v) in random.iter().enumerate() {
                if (i as u64 + round) % 3 != 0 {
                    check(v);
                }
            }
            for w in 2..=colliding.len() {
                for &v in colliding
                    .iter()
                    .take(w)
                    .cycle()
                    .skip(round as usize)
                    .take(12)
                {
                    check(v);
                }
            }
            check(0);
        }
        // Two keys of one set both stay: after one miss each, lookups hit (no refill).
        let (a, b) = (colliding[0], colliding[1]);
        check(a);
        check(b);
        let [first, second] = &cache.sets[U32TokenCache::set(a)];
        let before = (first.get(), second.get());
        for _ in 0..3 {
            check(a);
            check(b);
        }
        assert_eq!((first.get(), second.get()), before);
        let mut slots = [before.0, before.1];
        slots.sort();
        let mut want = [a, b].map(|v| u32_digits(v) | FILLED | (u128::from(v) << 96));
        want.sort();
        assert_eq!(slots, want);
        // An untouched set holds zeros, which no key matches (0's own entry is marked).
        let fresh = U32TokenCache::new();
        assert_eq!(fresh.token(0), Token::from_u32(0));
        assert_eq!(fresh.token(0).as_str(), "0");
    }

    #[test]
    fn clear_fields_resets_to_empty() {
        let mut t = Tick::EMPTY;
        t.ltp = 1.0;
        t.volume = 2.0;
        t.exchange_time_ms = 3;
        t.depth.bids[0] = Level {
            price: 1.0,
            qty: 2.0,
            orders: 3,
        };
        t.depth.bid_len = 1;
        t.greeks.delta = 0.5;
        t.fields = Fields::LTP | Fields::VOLUME | Fields::EXCHANGE_TIME | Fields::DEPTH;
        t.fields.insert(Fields::DEPTH_ORDERS | Fields::GREEKS);
        let mut only_orders = t;
        only_orders.clear_fields(Fields::DEPTH_ORDERS);
        assert_eq!(only_orders.depth.bids[0].orders, 0);
        assert_eq!(only_orders.depth.bids[0].price, 1.0);
        t.clear_fields(Fields::VOLUME | Fields::EXCHANGE_TIME | Fields::DEPTH | Fields::GREEKS);
        let mut want = Tick::EMPTY;
        want.ltp = 1.0;
        want.fields = Fields::LTP | Fields::DEPTH_ORDERS;
        assert_eq!(t, want);
        t.clear_fields(Fields(u32::MAX));
        assert_eq!(t, Tick::EMPTY);
    }

    #[test]
    fn change_follows_the_vendor_formula() {
        let mut t = Tick::EMPTY;
        t.ltp = 1573.7;
        t.close = 1567.8;
        assert_eq!(t.change_percent(), None);
        t.fields = Fields::LTP | Fields::CLOSE;
        assert_eq!(t.change_percent(), Some(0.3763235106518747));
        t.close = 0.0;
        assert_eq!(t.change_percent(), Some(0.0));
    }

    #[test]
    fn segment_maps() {
        for seg in (1..=9u8).chain([12]) {
            assert_eq!(Exchange::from_kite_segment(seg).map(|e| e as u8), Some(seg));
        }
        assert_eq!(Exchange::from_kite_segment(0), None);
        assert_eq!(Exchange::from_kite_segment(10), None);
        assert_eq!(Exchange::from_kite_segment(11), None);
        assert_eq!(
            Exchange::from_upstox_segment("NSE_INDEX"),
            Some((Exchange::Nse, true))
        );
        assert_eq!(
            Exchange::from_upstox_segment("NCD_FO"),
            Some((Exchange::Cds, false))
        );
        assert_eq!(Exchange::from_upstox_segment("XYZ"), None);
    }
}
