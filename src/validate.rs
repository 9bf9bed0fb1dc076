//! The tick validator: the last gate before the main topic.
//!
//! [`validate`] checks one [`Tick`] against what any real market can produce and returns a typed
//! [`Rejection`] whose [`RejectReason::label`] is the stable metric label `reason` of
//! `ingestion_ticks_rejected_total{vendor,reason}`. It reads no clock: the caller passes `now`
//! (the engine passes the frame's receive time), so replays and tests are deterministic.
//!
//! Only carried fields are checked (see [`Fields`]); a time of 0 means "the vendor sent 0" and is
//! not checked.

use crate::tick::{Depth, Exchange, Fields, Mode, Tick, DEPTH_LEVELS};

/// Tolerances for the time checks. Defaults are in the field docs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ValidationLimits {
    /// How far a vendor time may lie ahead of `now`, in ms. Default 5,000: Kite stamps whole
    /// seconds and vendor clocks drift a little; Dhan's IST-as-UTC slip (+5h30) is far beyond it.
    pub max_future_ms: i64,
    /// How old the exchange time may be, in ms. Default 7 days: a snapshot sent before the open
    /// carries the last session's time, and a long holiday weekend is under a week.
    pub max_exchange_age_ms: i64,
    /// How old the last trade time may be, in ms. Default 400 days: an illiquid contract's last
    /// trade can be months old, but not older than a listed contract's life.
    pub max_trade_age_ms: i64,
}

impl Default for ValidationLimits {
    fn default() -> Self {
        ValidationLimits {
            max_future_ms: 5_000,
            max_exchange_age_ms: 7 * 86_400_000,
            max_trade_age_ms: 400 * 86_400_000,
        }
    }
}

/// Why a tick was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectReason {
    /// A NaN or infinite number.
    NonFinite,
    /// A negative price, quantity or volatility.
    Negative,
    /// A quantity that is not a whole number, or beyond 2^53 (where f64 stops being exact).
    NonIntegralQty,
    /// `ltp` is 0 although the instrument traded (or is an index, or the tick is ltp-only).
    LtpNotPositive,
    /// A vendor time too far ahead of `now`.
    FutureTime,
    /// A vendor time older than the limits allow (or before the year 2000).
    StaleTime,
    /// Best bid above best ask.
    CrossedBook,
    /// Bids not descending or asks not ascending among non-empty levels.
    DepthUnordered,
    /// Day high below day low.
    HighBelowLow,
    /// A delta outside [-1, 1].
    GreekOutOfRange,
    /// No instrument token.
    EmptyToken,
    /// The exchange segment was not resolved.
    UnknownExchange,
}

impl RejectReason {
    /// Stable short label for the metric `reason` and DLQ records.
    pub const fn label(self) -> &'static str {
        match self {
            RejectReason::NonFinite => "non_finite",
            RejectReason::Negative => "negative",
            RejectReason::NonIntegralQty => "non_integral_qty",
            RejectReason::LtpNotPositive => "ltp_not_positive",
            RejectReason::FutureTime => "future_time",
            RejectReason::StaleTime => "stale_time",
            RejectReason::CrossedBook => "crossed_book",
            RejectReason::DepthUnordered => "depth_unordered",
            RejectReason::HighBelowLow => "high_below_low",
            RejectReason::GreekOutOfRange => "greek_out_of_range",
            RejectReason::EmptyToken => "empty_token",
            RejectReason::UnknownExchange => "unknown_exchange",
        }
    }
}

/// A rejection: the reason and the JSON name of the offending field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
#[error("tick rejected ({}): field {field}", reason.label())]
pub struct Rejection {
    /// Why.
    pub reason: RejectReason,
    /// The field (camelCase, as in the JSON form).
    pub field: &'static str,
}

/// 2000-01-01T00:00:00Z in ms: no feed this engine reads predates it.
const EPOCH_FLOOR_MS: i64 = 946_684_800_000;

/// Largest integer an f64 holds exactly.
const MAX_EXACT_QTY: f64 = 9_007_199_254_740_992.0;

fn reject(reason: RejectReason, field: &'static str) -> Result<(), Rejection> {
    Err(Rejection { reason, field })
}

fn price(v: f64, field: &'static str) -> Result<(), Rejection> {
    if !v.is_finite() {
        return reject(RejectReason::NonFinite, field);
    }
    if v < 0.0 {
        return reject(RejectReason::Negative, field);
    }
    Ok(())
}

fn qty(v: f64, field: &'static str) -> Result<(), Rejection> {
    price(v, field)?;
    // `v` is finite and >= 0 here. The round trip through i64 is exact for whole numbers up to
    // 2^53 and is one SSE2 conversion each way (`f64::fract` is a libm call on baseline x86-64,
    // and u64 conversions are emulated).
    if v > MAX_EXACT_QTY || (v as i64) as f64 != v {
        return reject(RejectReason::NonIntegralQty, field);
    }
    Ok(())
}

/// Branch-free forms of [`price`] and [`qty`] for the fast path (NaN fails every comparison).
#[inline]
fn price_ok(v: f64) -> bool {
    (0.0..f64::INFINITY).contains(&v)
}

#[inline]
fn qty_ok(v: f64) -> bool {
    price_ok(v) & (v <= MAX_EXACT_QTY) && (v as i64) as f64 == v
}

/// True when every carried number is sane; the detailed checks then need not run.
#[inline]
fn numbers_ok(t: &Tick) -> bool {
    let f = t.fields;
    let p = |bit: Fields, v: f64| !f.has(bit) | price_ok(v);
    let q = |bit: Fields, v: f64| !f.has(bit) | qty_ok(v);
    p(Fields::LTP, t.ltp)
        & p(Fields::ATP, t.atp)
        & p(Fields::OPEN, t.open)
        & p(Fields::HIGH, t.high)
        & p(Fields::LOW, t.low)
        & p(Fields::CLOSE, t.close)
        & p(Fields::IV, t.iv)
        & q(Fields::LTQ, t.ltq)
        & q(Fields::VOLUME, t.volume)
        & q(Fields::TOTAL_BUY_QTY, t.total_buy_qty)
        & q(Fields::TOTAL_SELL_QTY, t.total_sell_qty)
        & q(Fields::OI, t.oi)
        & q(Fields::OI_DAY_HIGH, t.oi_day_high)
        & q(Fields::OI_DAY_LOW, t.oi_day_low)
}

fn time(
    ms: i64,
    now_ms: i64,
    max_age: i64,
    lim: &ValidationLimits,
    field: &'static str,
) -> Result<(), Rejection> {
    if ms == 0 {
        return Ok(());
    }
    if ms > now_ms.saturating_add(lim.max_future_ms) {
        return reject(RejectReason::FutureTime, field);
    }
    if ms < EPOCH_FLOOR_MS || ms < now_ms.saturating_sub(max_age) {
        return reject(RejectReason::StaleTime, field);
    }
    Ok(())
}

/// Checks `t` as of `now_ns` (epoch ns).
///
/// # Errors
/// The first [`Rejection`] found, checking identity, then numbers, then times, then the book.
#[inline]
pub fn validate(t: &Tick, now_ns: u64, lim: &ValidationLimits) -> Result<(), Rejection> {
    // Almost every tick is sane: one branch-free pass answers "all good" for it. Anything the
    // fast pass does not accept (including the rare legal oddities it does not model, such as a
    // -0.0 price or a zero ltp) goes through the detailed checks, which alone decide rejections.
    if fast_ok(t, now_ns, lim) {
        return Ok(());
    }
    validate_detailed(t, now_ns, lim)
}

/// Bits of +infinity: a non-negative finite f64 (not -0.0) has smaller bits, as an integer.
const INF_BITS: u64 = 0x7ff0_0000_0000_0000;
/// Bits of 2^53 ([`MAX_EXACT_QTY`]).
const MAX_EXACT_QTY_BITS: u64 = 0x4340_0000_0000_0000;
/// 2^52: adding and subtracting it rounds an f64 in [0, 2^52) to an integer.
const TWO_52: f64 = 4_503_599_627_370_496.0;

/// The fields Kite ltp, quote and index quote packets (and Dhan's ticker and quote packets
/// without times) carry: no quantity beyond these, no time, greeks or depth.
const QUOTE_SET: Fields = Fields(
    Fields::LTP.0
        | Fields::LTQ.0
        | Fields::ATP.0
        | Fields::VOLUME.0
        | Fields::TOTAL_BUY_QTY.0
        | Fields::TOTAL_SELL_QTY.0
        | Fields::OPEN.0
        | Fields::HIGH.0
        | Fields::LOW.0
        | Fields::CLOSE.0,
);

/// Added to a price's bits: the sum has its sign bit set exactly when the bits are those of
/// +infinity or a NaN (`>= INF_BITS`, below the sign bit).
const PRICE_K: u64 = 0x8000_0000_0000_0000 - INF_BITS;
/// Added to a quantity's bits: the sum has its sign bit set exactly when the bits exceed those
/// of 2^53 (below the sign bit).
const QTY_K: u64 = 0x8000_0000_0000_0000 - MAX_EXACT_QTY_BITS - 1;

/// One number's verdict as a sign bit (set = fails): a price must be finite and non-negative, a
/// quantity (`QTY`) also integral and at most 2^53. Every failure sets the sign bit (bits of a
/// negative value or -0.0 have it; `+ PRICE_K`/`+ QTY_K` set it for values past the limit,
/// and wrap only for bits that already have it; a quantity changed by rounding through 2^52 is
/// not integral, or an odd integer in (2^52, 2^53] which only [`qty`] decides). So a clear sign
/// bit means [`price`]/[`qty`] accept the value. On x86-64 [`numbers_fast`] computes it two
/// lanes at a time, and this one-lane form is its reference in the tests.
#[cfg(any(test, not(target_arch = "x86_64")))]
#[inline(always)]
fn lane_bad<const QTY: bool>(v: f64) -> u64 {
    let x = v.to_bits();
    if QTY {
        x | x.wrapping_add(QTY_K) | (u64::from((v + TWO_52) - TWO_52 != v) << 63)
    } else {
        x | x.wrapping_add(PRICE_K)
    }
}

/// True only when [`price`] accepts ltp/atp/open/high/low/close and [`qty`] accepts
/// ltq/volume/totalBuyQty/totalSellQty (checked whether carried or not, see [`fast_ok`]); with
/// `ALL`, also iv as a price and oi/oiDayHigh/oiDayLow as quantities: every [`lane_bad`] verdict
/// clear. On x86-64 two adjacent fields (the struct's order) are checked per SSE2 instruction,
/// with one branch at the end.
#[inline(always)]
fn numbers_fast<const ALL: bool>(t: &Tick) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::numbers_ok::<ALL>(t)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        numbers_scalar::<ALL>(t)
    }
}

#[cfg(target_arch = "x86_64")]
mod sse2 {
    use core::arch::x86_64::{
        __m128i, _mm_add_epi64, _mm_add_pd, _mm_castpd_si128, _mm_castsi128_pd, _mm_cmpneq_pd,
        _mm_movemask_pd, _mm_or_si128, _mm_set_epi64x, _mm_set_pd, _mm_setzero_si128, _mm_sub_pd,
    };

    use super::{PRICE_K, QTY_K, TWO_52};
    use crate::tick::{Depth, Tick};

    // SSE2 is part of the x86-64 baseline: rustc enables it for every x86_64 target.
    const _: () = assert!(cfg!(target_feature = "sse2"));

    /// [`super::lane_bad`] for the adjacent fields `a` (lane 0) and `b` (lane 1), ORed into
    /// `acc`; `QA`/`QB` say which lane holds a quantity.
    #[inline(always)]
    fn pair_bad<const QA: bool, const QB: bool>(acc: __m128i, a: f64, b: f64) -> __m128i {
        let k = |q: bool| (if q { QTY_K } else { PRICE_K }) as i64;
        // Rounding through 2^52 in a quantity lane; a price lane adds and subtracts 0, which
        // changes only a NaN (failed anyway).
        let c = |q: bool| if q { TWO_52 } else { 0.0 };
        // SAFETY: these intrinsics need SSE2, which every x86_64 target has (asserted above);
        // they compute on values only and touch no memory.
        unsafe {
            let v = _mm_set_pd(b, a);
            let x = _mm_castpd_si128(v);
            let range = _mm_or_si128(x, _mm_add_epi64(x, _mm_set_epi64x(k(QB), k(QA))));
            let acc = _mm_or_si128(acc, range);
            if !(QA || QB) {
                return acc;
            }
            let round = _mm_set_pd(c(QB), c(QA));
            let changed = _mm_cmpneq_pd(_mm_sub_pd(_mm_add_pd(v, round), round), v);
            _mm_or_si128(acc, _mm_castpd_si128(changed))
        }
    }

    /// [`super::levels_fast`] on x86-64: each level's price and quantity, adjacent in
    /// [`Level`](crate::tick::Level), as one pair.
    #[inline(always)]
    pub(super) fn levels_ok(d: &Depth) -> bool {
        // SAFETY: as in `pair_bad`.
        let mut acc = unsafe { _mm_setzero_si128() };
        // Two loops over fixed arrays (fully unrolled; a chained iterator is not).
        for l in &d.bids {
            acc = pair_bad::<false, true>(acc, l.price, l.qty);
        }
        for l in &d.asks {
            acc = pair_bad::<false, true>(acc, l.price, l.qty);
        }
        // SAFETY: as in `pair_bad`.
        unsafe { _mm_movemask_pd(_mm_castsi128_pd(acc)) == 0 }
    }

    /// [`super::numbers_fast`] on x86-64.
    #[inline(always)]
    pub(super) fn numbers_ok<const ALL: bool>(t: &Tick) -> bool {
        // SAFETY: as in `pair_bad`.
        let acc = unsafe { _mm_setzero_si128() };
        let acc = pair_bad::<false, true>(acc, t.ltp, t.ltq);
        let acc = pair_bad::<false, true>(acc, t.atp, t.volume);
        let acc = pair_bad::<true, true>(acc, t.total_buy_qty, t.total_sell_qty);
        let acc = pair_bad::<false, false>(acc, t.open, t.high);
        let mut acc = pair_bad::<false, false>(acc, t.low, t.close);
        if ALL {
            acc = pair_bad::<true, true>(acc, t.oi, t.oi_day_high);
            acc = pair_bad::<true, false>(acc, t.oi_day_low, t.iv);
        }
        // SAFETY: as in `pair_bad`.
        unsafe { _mm_movemask_pd(_mm_castsi128_pd(acc)) == 0 }
    }
}

/// [`numbers_fast`] one field at a time: the form off x86-64, and the tests' reference for the
/// paired one.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn numbers_scalar<const ALL: bool>(t: &Tick) -> bool {
    let mut bad = lane_bad::<false>(t.ltp)
        | lane_bad::<true>(t.ltq)
        | lane_bad::<false>(t.atp)
        | lane_bad::<true>(t.volume)
        | lane_bad::<true>(t.total_buy_qty)
        | lane_bad::<true>(t.total_sell_qty)
        | lane_bad::<false>(t.open)
        | lane_bad::<false>(t.high)
        | lane_bad::<false>(t.low)
        | lane_bad::<false>(t.close);
    if ALL {
        bad |= lane_bad::<true>(t.oi)
            | lane_bad::<true>(t.oi_day_high)
            | lane_bad::<true>(t.oi_day_low)
            | lane_bad::<false>(t.iv);
    }
    bad >> 63 == 0
}

/// True only when [`validate_detailed`] would return `Ok` (an exact mirror of each rule for the
/// common case, evaluated without early exits). False sends the tick to the detailed checks.
///
/// The numbers and times are checked whether carried or not: every parser leaves a field it does
/// not carry at its [`Tick::EMPTY`] value (0), which passes, so masking each check with its
/// presence bit would be work for nothing; a tick holding something else there only takes the
/// detailed path, which looks at carried fields alone. Greeks and depth are looked at only when
/// carried, so a quote tick does not pay for a book it does not have.
///
/// Specialised by what the tick carries: an ltp-only tick (Kite ltp mode) checks its one price;
/// a tick within [`QUOTE_SET`] (Kite quote and index quote) checks those ten numbers and nothing
/// of times, open interest, greeks or depth, which [`validate_detailed`] does not look at when
/// they are not carried; anything else gets every check.
#[inline]
fn fast_ok(t: &Tick, now_ns: u64, lim: &ValidationLimits) -> bool {
    let f = t.fields;
    let identity_ok = !t.token.is_empty() & (t.exchange != Exchange::Unknown);
    if f == Fields::LTP {
        // Positive and finite (NaN fails both).
        return (t.ltp > 0.0) & (t.ltp < f64::INFINITY) & identity_ok;
    }
    // ltp must be positive (a zero ltp is legal only in cases the detailed check sorts out).
    let ltp_ok = !f.has(Fields::LTP) | (t.ltp > 0.0);
    let high_low_ok = !f.has(Fields::HIGH.with(Fields::LOW)) | !((t.low > 0.0) & (t.high < t.low));
    let rules_ok = ltp_ok & high_low_ok & identity_ok;
    if f.0 & !QUOTE_SET.0 == 0 {
        return numbers_fast::<false>(t) & rules_ok;
    }
    if !(numbers_fast::<true>(t) & rules_ok) {
        return false;
    }
    // Kite ltp and quote packets carry no time: the window need not be computed for them.
    if (t.exchange_time_ms | t.last_trade_time_ms) != 0 {
        let now_ms = i64::try_from(now_ns / 1_000_000).unwrap_or(i64::MAX);
        let latest = now_ms.saturating_add(lim.max_future_ms);
        let time_ok = |ms: i64, max_age: i64| {
            (ms == 0)
                | ((ms <= latest) & (ms >= EPOCH_FLOOR_MS) & (ms >= now_ms.saturating_sub(max_age)))
        };
        if !(time_ok(t.exchange_time_ms, lim.max_exchange_age_ms)
            & time_ok(t.last_trade_time_ms, lim.max_trade_age_ms))
        {
            return false;
        }
    }
    if f.has(Fields::GREEKS) && !greeks_fast(&t.greeks) {
        return false;
    }
    !f.has(Fields::DEPTH) || depth_fast(&t.depth)
}

/// True only when the greeks rules pass: all finite, delta in [-1, 1]. Not inlined (nor is
/// [`depth_fast`]): kept out of [`fast_ok`], the checks of a tick without greeks or depth need
/// fewer registers and no spills.
#[inline(never)]
fn greeks_fast(g: &crate::tick::Greeks) -> bool {
    let finite = |v: f64| (v.to_bits() & !(1 << 63)) < INF_BITS;
    finite(g.delta)
        & finite(g.theta)
        & finite(g.gamma)
        & finite(g.vega)
        & finite(g.rho)
        & (g.delta >= -1.0)
        & (g.delta <= 1.0)
}

/// [`validate`] without its fast pass: the rules one by one, in order. Always the same result as
/// [`validate`] (which only skips these checks for ticks its fast pass proves sane); public as
/// the reference the tests hold [`validate`] to.
///
/// # Errors
/// As [`validate`].
pub fn validate_exact(t: &Tick, now_ns: u64, lim: &ValidationLimits) -> Result<(), Rejection> {
    validate_detailed(t, now_ns, lim)
}

/// The detailed checks, in order; the first failure is the result.
#[cold]
#[inline(never)]
fn validate_detailed(t: &Tick, now_ns: u64, lim: &ValidationLimits) -> Result<(), Rejection> {
    if t.token.is_empty() {
        return reject(RejectReason::EmptyToken, "token");
    }
    if t.exchange == Exchange::Unknown {
        return reject(RejectReason::UnknownExchange, "exchange");
    }
    let f = t.fields;
    // Checked field by field (not through a table) so the common case compiles to straight-line
    // compares: this runs on every tick.
    macro_rules! check {
        ($check:ident, $bit:expr, $v:expr, $name:literal) => {
            if f.has($bit) {
                $check($v, $name)?;
            }
        };
    }
    if !numbers_ok(t) {
        check!(price, Fields::LTP, t.ltp, "ltp");
        check!(price, Fields::ATP, t.atp, "atp");
        check!(price, Fields::OPEN, t.open, "open");
        check!(price, Fields::HIGH, t.high, "high");
        check!(price, Fields::LOW, t.low, "low");
        check!(price, Fields::CLOSE, t.close, "close");
        check!(price, Fields::IV, t.iv, "iv");
        check!(qty, Fields::LTQ, t.ltq, "ltq");
        check!(qty, Fields::VOLUME, t.volume, "volume");
        check!(qty, Fields::TOTAL_BUY_QTY, t.total_buy_qty, "totalBuyQty");
        check!(
            qty,
            Fields::TOTAL_SELL_QTY,
            t.total_sell_qty,
            "totalSellQty"
        );
        check!(qty, Fields::OI, t.oi, "oi");
        check!(qty, Fields::OI_DAY_HIGH, t.oi_day_high, "oiDayHigh");
        check!(qty, Fields::OI_DAY_LOW, t.oi_day_low, "oiDayLow");
    }
    if f.has(Fields::GREEKS) {
        let g = &t.greeks;
        for v in [g.delta, g.theta, g.gamma, g.vega, g.rho] {
            if !v.is_finite() {
                return reject(RejectReason::NonFinite, "greeks");
            }
        }
        if !(-1.0..=1.0).contains(&g.delta) {
            return reject(RejectReason::GreekOutOfRange, "greeks");
        }
    }
    if f.has(Fields::LTP) && t.ltp <= 0.0 {
        // An instrument that never traded may legitimately show 0; one that shows trading
        // activity, an index, or an ltp-only tick (which carries nothing else) may not.
        let traded = (f.has(Fields::VOLUME) && t.volume > 0.0)
            || (f.has(Fields::LTQ) && t.ltq > 0.0)
            || (f.has(Fields::LAST_TRADE_TIME) && t.last_trade_time_ms != 0);
        if traded || t.is_index || t.exchange == Exchange::Indices || t.mode == Mode::Ltp {
            return reject(RejectReason::LtpNotPositive, "ltp");
        }
    }
    if f.has(Fields::HIGH.with(Fields::LOW)) && t.low > 0.0 && t.high < t.low {
        return reject(RejectReason::HighBelowLow, "high");
    }
    let now_ms = i64::try_from(now_ns / 1_000_000).unwrap_or(i64::MAX);
    if f.has(Fields::EXCHANGE_TIME) {
        time(
            t.exchange_time_ms,
            now_ms,
            lim.max_exchange_age_ms,
            lim,
            "exchangeTime",
        )?;
    }
    if f.has(Fields::LAST_TRADE_TIME) {
        time(
            t.last_trade_time_ms,
            now_ms,
            lim.max_trade_age_ms,
            lim,
            "lastTradeTime",
        )?;
    }
    if f.has(Fields::DEPTH) {
        depth(t)?;
    }
    Ok(())
}

/// True only when [`depth`] would return `Ok`, for the common book: all [`DEPTH_LEVELS`] levels
/// of each side are checked whether carried or not (a level past `bid_len`/`ask_len` holds zeros,
/// which pass; anything else there only sends the tick to the detailed check, which looks at
/// carried levels alone), and the empty (zero-priced) levels must come after the priced ones.
/// Then:
/// - every price is finite and non-negative and every quantity whole, at most 2^53 (the
///   [`lane_bad`] verdicts, two lanes at a time on x86-64);
/// - bids do not increase, `b[i+1] <= b[i]` (so zeros, the smallest prices, only at the end);
/// - asks do not decrease until the first zero, and are zero after it;
/// - the best bid, `b[0]`, is not above the best ask, `a[0]`, when both are priced.
///
/// Each rule of [`depth`] follows for the carried levels (a prefix of each side), so a book
/// this accepts, [`depth`] accepts; a book with a gap, more than [`DEPTH_LEVELS`] declared levels
/// or a `-0.0` goes to [`depth`], which decides. Branch-free.
#[inline(never)]
fn depth_fast(d: &Depth) -> bool {
    let counts_ok =
        (usize::from(d.bid_len) <= DEPTH_LEVELS) & (usize::from(d.ask_len) <= DEPTH_LEVELS);
    let [b0, b1, b2, b3, b4] = d.bids.map(|l| l.price);
    let [a0, a1, a2, a3, a4] = d.asks.map(|l| l.price);
    // NaN fails every comparison.
    let bids_ok = (b1 <= b0) & (b2 <= b1) & (b3 <= b2) & (b4 <= b3);
    let ask_step = |lo: f64, hi: f64| (hi == 0.0) | ((lo > 0.0) & (hi >= lo));
    let asks_ok = ask_step(a0, a1) & ask_step(a1, a2) & ask_step(a2, a3) & ask_step(a3, a4);
    let uncrossed = !((b0 > 0.0) & (a0 > 0.0) & (b0 > a0));
    counts_ok & bids_ok & asks_ok & uncrossed & levels_fast(d)
}

/// True only when every level of both sides has a price [`price`] accepts and a quantity [`qty`]
/// accepts (all [`DEPTH_LEVELS`] levels, carried or not).
#[inline(always)]
fn levels_fast(d: &Depth) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        sse2::levels_ok(d)
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        levels_scalar(d)
    }
}

/// [`levels_fast`] one value at a time: the form off x86-64, and the tests' reference.
#[cfg(any(test, not(target_arch = "x86_64")))]
fn levels_scalar(d: &Depth) -> bool {
    let bad = d.bids.iter().chain(&d.asks).fold(0, |m, l| {
        m | lane_bad::<false>(l.price) | lane_bad::<true>(l.qty)
    });
    bad >> 63 == 0
}

fn depth(t: &Tick) -> Result<(), Rejection> {
    let d = &t.depth;
    let (nb, na) = (usize::from(d.bid_len), usize::from(d.ask_len));
    // Fast path over the fixed arrays (no iterator chains: this runs on every full tick).
    let mut sane = true;
    for (i, (b, a)) in d.bids.iter().zip(&d.asks).enumerate() {
        sane &= (i >= nb) | (price_ok(b.price) & qty_ok(b.qty));
        sane &= (i >= na) | (price_ok(a.price) & qty_ok(a.qty));
    }
    if !sane {
        for l in d.bids().iter().chain(d.asks()) {
            price(l.price, "depth")?;
            qty(l.qty, "depth")?;
        }
    }
    // Empty levels are zeros (Kite pads to 5); only priced levels are ordered.
    let mut best_bid = 0.0;
    let mut prev = f64::INFINITY;
    for l in d.bids() {
        if l.price > 0.0 {
            if l.price > prev {
                return reject(RejectReason::DepthUnordered, "depth");
            }
            if prev == f64::INFINITY {
                best_bid = l.price;
            }
            prev = l.price;
        }
    }
    let mut best_ask = 0.0;
    let mut prev = 0.0;
    for l in d.asks() {
        if l.price > 0.0 {
            if l.price < prev {
                return reject(RejectReason::DepthUnordered, "depth");
            }
            if prev == 0.0 {
                best_ask = l.price;
            }
            prev = l.price;
        }
    }
    if best_bid > 0.0 && best_ask > 0.0 && best_bid > best_ask {
        return reject(RejectReason::CrossedBook, "depth");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        parsers::{kite, FrameMeta},
        tick::{Level, Token},
    };

    const NOW_NS: u64 = 1_625_461_890_000_000_000; // 3 s after the sample's exchange time

    fn real_full() -> Tick {
        let pkt = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/kite/real_full.bin"
        ))
        .unwrap();
        kite::decode_packet(&pkt, &FrameMeta::default()).unwrap()
    }

    fn check(t: &Tick) -> Result<(), Rejection> {
        validate(t, NOW_NS, &ValidationLimits::default())
    }

    fn reason(t: &Tick) -> Option<&'static str> {
        check(t).err().map(|r| r.reason.label())
    }

    #[test]
    fn real_packet_passes() {
        assert_eq!(check(&real_full()), Ok(()));
    }

    #[test]
    fn each_rule_rejects() {
        let base = real_full();
        type Mutation = Box<dyn Fn(&mut Tick)>;
        let cases: Vec<(&str, Mutation)> = vec![
            ("non_finite", Box::new(|t| t.ltp = f64::NAN)),
            ("non_finite", Box::new(|t| t.open = f64::INFINITY)),
            ("negative", Box::new(|t| t.close = -1.0)),
            ("non_integral_qty", Box::new(|t| t.total_buy_qty = 1.5)),
            ("non_integral_qty", Box::new(|t| t.volume = 1e17)),
            ("negative", Box::new(|t| t.oi = -3.0)),
            ("ltp_not_positive", Box::new(|t| t.ltp = 0.0)),
            ("future_time", Box::new(|t| t.exchange_time_ms += 10_000)),
            (
                "stale_time",
                Box::new(|t| t.exchange_time_ms -= 8 * 86_400_000),
            ),
            ("stale_time", Box::new(|t| t.last_trade_time_ms = 5_000)),
            ("crossed_book", Box::new(|t| t.depth.bids[0].price = 1600.0)),
            (
                "depth_unordered",
                Box::new(|t| t.depth.asks[3].price = 1500.0),
            ),
            ("non_integral_qty", Box::new(|t| t.depth.asks[1].qty = 0.5)),
            ("high_below_low", Box::new(|t| t.high = 1500.0)),
            ("empty_token", Box::new(|t| t.token = Token::EMPTY)),
            (
                "unknown_exchange",
                Box::new(|t| t.exchange = Exchange::Unknown),
            ),
            (
                "greek_out_of_range",
                Box::new(|t| {
                    t.fields.insert(Fields::GREEKS);
                    t.greeks.delta = 1.5;
                }),
            ),
        ];
        for (want, mutate) in cases {
            let mut t = base;
            mutate(&mut t);
            assert_eq!(reason(&t), Some(want), "{t:?}");
        }
    }

    #[test]
    fn absent_fields_and_zero_times_are_not_checked() {
        let mut t = real_full();
        t.exchange_time_ms = 0;
        t.last_trade_time_ms = 0;
        assert_eq!(check(&t), Ok(()));
        // Not carried: garbage there is ignored.
        t.fields = Fields::LTP;
        t.mode = Mode::Ltp;
        t.oi = f64::NAN;
        t.depth.bids[0].price = 1e9;
        assert_eq!(check(&t), Ok(()));
        // An untraded option in quote mode may show ltp 0.
        let mut q = real_full();
        q.fields = Fields::LTP | Fields::VOLUME | Fields::LTQ | Fields::CLOSE;
        q.ltp = 0.0;
        q.volume = 0.0;
        q.ltq = 0.0;
        q.mode = Mode::Quote;
        assert_eq!(check(&q), Ok(()));
        // Empty (zero) depth levels do not cross the book.
        let mut d = real_full();
        d.depth.bids[0] = Default::default();
        d.depth.asks[0] = Default::default();
        assert_eq!(check(&d), Ok(()));
    }

    #[test]
    fn fast_path_never_accepts_what_the_detailed_checks_reject() {
        let mut next = crate::test_rng::xorshift(0x9e37_79b9_7f4a_7c15);
        let values = [
            0.0,
            -0.0,
            1.0,
            1573.7,
            1573.75,
            0.5,
            -1.0,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            MAX_EXACT_QTY,
            MAX_EXACT_QTY + 2.0,
            TWO_52 + 1.0,
            1e300,
            f64::MIN_POSITIVE,
        ];
        let base = real_full();
        let mut fast_accepted = 0;
        for _ in 0..200_000 {
            let mut t = base;
            let mut r = next();
            macro_rules! maybe {
                ($($field:ident).+) => {
                    if r & 3 == 0 {
                        t.$($field).+ = values[(next() % values.len() as u64) as usize];
                    }
                    r = r.rotate_right(2);
                };
            }
            maybe!(ltp);
            maybe!(ltq);
            maybe!(atp);
            maybe!(volume);
            maybe!(total_buy_qty);
            maybe!(total_sell_qty);
            maybe!(open);
            maybe!(high);
            maybe!(low);
            maybe!(close);
            maybe!(oi);
            maybe!(oi_day_high);
            maybe!(oi_day_low);
            maybe!(iv);
            maybe!(greeks.delta);
            maybe!(greeks.rho);
            let mut r = next();
            for l in t.depth.bids.iter_mut().chain(t.depth.asks.iter_mut()) {
                if r & 7 == 0 {
                    l.price = values[(next() % values.len() as u64) as usize];
                }
                if r & 56 == 0 {
                    l.qty = values[(next() % values.len() as u64) as usize];
                }
                if r & 448 == 0 {
                    l.price = 1570.0 + (next() % 8) as f64 * 0.5;
                }
                r = r.rotate_right(9);
            }
            let r = next();
            // Any field set, the full packet's, a quote-set subset (the specialised pass), or
            // ltp alone.
            t.fields = match (r >> 47) % 6 {
                0 | 1 => Fields((r as u32) & ((1 << 19) - 1)),
                2 => base.fields,
                3 | 4 => Fields((r as u32) & QUOTE_SET.0),
                _ => Fields::LTP,
            };
            t.depth.bid_len = ((r >> 20) % 7) as u8;
            t.depth.ask_len = ((r >> 24) % 7) as u8;
            if r & (1 << 41) != 0 {
                t.exchange_time_ms += ((r >> 28) % 20_000) as i64 - 10_000;
            }
            if r & (1 << 42) != 0 {
                t.last_trade_time_ms = [0, 5_000, t.exchange_time_ms][((r >> 43) % 3) as usize];
            }
            if r & (1 << 45) != 0 {
                t.mode = Mode::Ltp;
            }
            if r & (1 << 46) != 0 {
                t.is_index = true;
            }
            let lim = ValidationLimits::default();
            let detailed = validate_detailed(&t, NOW_NS, &lim);
            if fast_ok(&t, NOW_NS, &lim) {
                fast_accepted += 1;
                assert_eq!(detailed, Ok(()), "{t:?}");
            }
            assert_eq!(validate(&t, NOW_NS, &lim), detailed);
        }
        assert!(fast_accepted > 1000, "{fast_accepted}");
        assert!(fast_ok(&base, NOW_NS, &ValidationLimits::default()));
    }

    #[test]
    fn depth_fast_pass_never_accepts_what_depth_rejects() {
        let nasty = [
            -0.0,
            -1.0,
            0.5,
            f64::NAN,
            f64::INFINITY,
            MAX_EXACT_QTY + 2.0,
        ];
        let mut next = crate::test_rng::xorshift(0xdead_beef_cafe_f00d);
        let (mut accepted, mut gaps_seen) = (0, 0);
        for _ in 0..200_000 {
            let mut t = real_full();
            let r = next();
            // Priced prefixes of random lengths (bids down, asks up from around the spread),
            // zeros after; sometimes a gap, a swapped pair, a crossed or nasty value.
            let mid = 1000.0 + (r % 100) as f64 * 0.05;
            let (pb, pa) = ((r >> 8) % 6, (r >> 12) % 6);
            for i in 0..DEPTH_LEVELS {
                let step = 0.05 * (i as f64 + ((r >> 16) & 1) as f64);
                t.depth.bids[i] = Level {
                    price: if (i as u64) < pb { mid - step } else { 0.0 },
                    qty: if (i as u64) < pb {
                        10.0 * (i + 1) as f64
                    } else {
                        0.0
                    },
                    orders: 1,
                };
                t.depth.asks[i] = Level {
                    price: if (i as u64) < pa {
                        mid + 0.05 + step
                    } else {
                        0.0
                    },
                    qty: if (i as u64) < pa { 5.0 } else { 0.0 },
                    orders: 2,
                };
            }
            let m = next();
            fn side(m: u64, t: &mut Tick) -> &mut [Level; DEPTH_LEVELS] {
                if m & 1 == 0 {
                    &mut t.depth.bids
                } else {
                    &mut t.depth.asks
                }
            }
            let i = ((m >> 1) % DEPTH_LEVELS as u64) as usize;
            let j = ((m >> 4) % DEPTH_LEVELS as u64) as usize;
            match (m >> 8) % 8 {
                0 => {
                    side(m, &mut t)[i].price = 0.0; // a gap (or a shorter side)
                    gaps_seen += 1;
                }
                1 => side(m, &mut t).swap(i, j),
                2 => side(m, &mut t)[i].price = nasty[j % nasty.len()],
                3 => side(m, &mut t)[i].qty = nasty[(j + 1) % nasty.len()],
                4 => t.depth.bids[0].price = mid + 1.0, // crossed when asks are priced
                _ => {}
            }
            t.depth.bid_len = [5, 5, 5, 0, 3, 6][((m >> 12) % 6) as usize];
            t.depth.ask_len = [5, 5, 5, 0, 2, 7][((m >> 16) % 6) as usize];
            let want = depth(&t);
            assert_eq!(levels_fast(&t.depth), levels_scalar(&t.depth), "{t:?}");
            if depth_fast(&t.depth) {
                accepted += 1;
                assert_eq!(want, Ok(()), "{:?}", t.depth);
            }
            let lim = ValidationLimits::default();
            assert_eq!(
                validate(&t, NOW_NS, &lim),
                validate_detailed(&t, NOW_NS, &lim)
            );
        }
        assert!(
            accepted > 50_000 && gaps_seen > 10_000,
            "{accepted} {gaps_seen}"
        );
    }

    #[test]
    fn specialised_passes_accept_sane_kite_ticks() {
        // The passes must not just be safe but used: real ltp, quote and full ticks take them.
        let lim = ValidationLimits::default();
        let full = real_full();
        assert!(fast_ok(&full, NOW_NS, &lim));
        let mut quote = full;
        quote.clear_fields(Fields(!QUOTE_SET.0));
        quote.mode = Mode::Quote;
        assert!(fast_ok(&quote, NOW_NS, &lim));
        let mut ltp = quote;
        ltp.clear_fields(Fields(!Fields::LTP.0));
        assert!(fast_ok(&ltp, NOW_NS, &lim));
        // A value the quote pass does not look at (not carried) is no reason to leave it.
        quote.oi = f64::NAN;
        quote.exchange_time_ms = 1;
        assert!(fast_ok(&quote, NOW_NS, &lim));
        assert_eq!(validate_exact(&quote, NOW_NS, &lim), Ok(()));
        // One it does look at is.
        quote.volume = 0.5;
        assert!(!fast_ok(&quote, NOW_NS, &lim));
        ltp.ltp = f64::INFINITY;
        assert!(!fast_ok(&ltp, NOW_NS, &lim));
    }

    #[test]
    fn paired_number_checks_equal_the_scalar_ones_and_never_pass_a_bad_value() {
        // Values at every boundary of the rules, and random bit patterns.
        let edges = [
            0.0,
            -0.0,
            1.0,
            0.5,
            -1.0,
            1573.75,
            f64::MIN_POSITIVE,
            f64::from_bits(1),
            f64::MAX,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            -f64::NAN,
            TWO_52 - 0.5,
            TWO_52,
            TWO_52 + 1.0,
            MAX_EXACT_QTY - 1.0,
            MAX_EXACT_QTY,
            MAX_EXACT_QTY + 2.0,
            f64::from_bits(INF_BITS - 1),
            f64::from_bits(MAX_EXACT_QTY_BITS + 1),
            4_294_967_295.0,
        ];
        let mut next = crate::test_rng::xorshift(0x0123_4567_89ab_cdef);
        let pick = |next: &mut dyn FnMut() -> u64| {
            let r = next();
            if r & 1 == 0 {
                edges[(r >> 1) as usize % edges.len()]
            } else if r & 2 == 0 {
                f64::from_bits(next())
            } else {
                // Mostly sane values, so passing tuples are common.
                ((r >> 8) % 100_000) as f64 / [1.0, 100.0, 1e4][(r >> 40) as usize % 3]
            }
        };
        let mut passed = 0;
        for i in 0..300_000u64 {
            let mut t = Tick::EMPTY;
            let r = next();
            for (k, v) in [
                &mut t.ltp,
                &mut t.ltq,
                &mut t.atp,
                &mut t.volume,
                &mut t.total_buy_qty,
                &mut t.total_sell_qty,
                &mut t.open,
                &mut t.high,
                &mut t.low,
                &mut t.close,
                &mut t.oi,
                &mut t.oi_day_high,
                &mut t.oi_day_low,
                &mut t.iv,
            ]
            .into_iter()
            .enumerate()
            {
                // Each field: sane (a whole number) most of the time, else anything.
                if (r >> (4 * k)) & 15 == 0 || i % 7 == 0 {
                    *v = pick(&mut next);
                } else {
                    *v = (next() % 1_000_000) as f64;
                }
            }
            for all in [false, true] {
                let (paired, scalar) = if all {
                    (numbers_fast::<true>(&t), numbers_scalar::<true>(&t))
                } else {
                    (numbers_fast::<false>(&t), numbers_scalar::<false>(&t))
                };
                assert_eq!(paired, scalar, "{t:?}");
                if paired {
                    passed += 1;
                    let prices = [t.ltp, t.atp, t.open, t.high, t.low, t.close];
                    let qtys = [t.ltq, t.volume, t.total_buy_qty, t.total_sell_qty];
                    for v in prices {
                        assert_eq!(price(v, "p"), Ok(()), "{v:e}");
                    }
                    for v in qtys {
                        assert_eq!(qty(v, "q"), Ok(()), "{v:e}");
                    }
                    if all {
                        assert_eq!(price(t.iv, "p"), Ok(()));
                        for v in [t.oi, t.oi_day_high, t.oi_day_low] {
                            assert_eq!(qty(v, "q"), Ok(()), "{v:e}");
                        }
                    }
                }
            }
        }
        assert!(passed > 100_000, "{passed}");
        // And the ordinary values pass (a fast pass that refuses everything would be useless).
        let mut t = real_full();
        t.total_buy_qty = 4_294_967_295.0;
        t.low = 0.0;
        assert!(numbers_fast::<true>(&t) && numbers_scalar::<true>(&t));
    }
}
