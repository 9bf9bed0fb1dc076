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

/// True only for finite, non-negative prices (one integer compare; -0.0 is left to
/// [`price`], which accepts it).
#[inline(always)]
fn price_fast(v: f64) -> bool {
    v.to_bits() < INF_BITS
}

/// True only for whole quantities in [0, 2^52) or exactly representable ones up to 2^53 that
/// survive the rounding trick; never true for a value [`qty`] rejects.
#[inline(always)]
fn qty_fast(v: f64) -> bool {
    (v.to_bits() <= MAX_EXACT_QTY_BITS) & ((v + TWO_52) - TWO_52 == v)
}

/// True only when [`validate_detailed`] would return `Ok` (an exact mirror of each rule for the
/// common case, evaluated without early exits). False sends the tick to the detailed checks.
///
/// The numbers and times are checked whether carried or not: every parser leaves a field it does
/// not carry at its [`Tick::EMPTY`] value (0), which passes, so masking each check with its
/// presence bit would be work for nothing; a tick holding something else there only takes the
/// detailed path, which looks at carried fields alone. Greeks and depth are looked at only when
/// carried, so a quote tick does not pay for a book it does not have.
#[inline]
fn fast_ok(t: &Tick, now_ns: u64, lim: &ValidationLimits) -> bool {
    let f = t.fields;
    let price_bits = [t.ltp, t.atp, t.open, t.high, t.low, t.close, t.iv]
        .into_iter()
        .fold(0, |m, v| m.max(v.to_bits()));
    let qtys_ok = qty_fast(t.ltq)
        & qty_fast(t.volume)
        & qty_fast(t.total_buy_qty)
        & qty_fast(t.total_sell_qty)
        & qty_fast(t.oi)
        & qty_fast(t.oi_day_high)
        & qty_fast(t.oi_day_low);
    // ltp must be positive (a zero ltp is legal only in cases the detailed check sorts out).
    let ltp_ok = !f.has(Fields::LTP) | (t.ltp > 0.0);
    let high_low_ok = !f.has(Fields::HIGH.with(Fields::LOW)) | !((t.low > 0.0) & (t.high < t.low));
    let ok = (price_bits < INF_BITS)
        & qtys_ok
        & ltp_ok
        & high_low_ok
        & !t.token.is_empty()
        & (t.exchange != Exchange::Unknown);
    if !ok {
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

/// True only when [`depth`] would return `Ok`: the same sanity, ordering and crossing rules,
/// without early exits (more than [`DEPTH_LEVELS`] declared levels go to the detailed check).
#[inline(never)]
fn depth_fast(d: &Depth) -> bool {
    let (nb, na) = (usize::from(d.bid_len), usize::from(d.ask_len));
    let mut ok = (nb <= DEPTH_LEVELS) & (na <= DEPTH_LEVELS);
    let (mut prev_bid, mut best_bid) = (f64::INFINITY, 0.0);
    let (mut prev_ask, mut best_ask) = (0.0, 0.0);
    for (i, (b, a)) in d.bids.iter().zip(&d.asks).enumerate() {
        let (has_b, has_a) = (i < nb, i < na);
        ok &= !has_b | (price_fast(b.price) & qty_fast(b.qty));
        ok &= !has_a | (price_fast(a.price) & qty_fast(a.qty));
        // Only priced levels are ordered (empty levels are zeros).
        let (pb, pa) = (has_b & (b.price > 0.0), has_a & (a.price > 0.0));
        ok &= !pb | (b.price <= prev_bid);
        ok &= !pa | (a.price >= prev_ask);
        best_bid = if pb & (best_bid == 0.0) {
            b.price
        } else {
            best_bid
        };
        best_ask = if pa & (best_ask == 0.0) {
            a.price
        } else {
            best_ask
        };
        prev_bid = if pb { b.price } else { prev_bid };
        prev_ask = if pa { a.price } else { prev_ask };
    }
    ok & !((best_bid > 0.0) & (best_ask > 0.0) & (best_bid > best_ask))
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
        tick::Token,
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
        // A small xorshift generator: deterministic, no dependency.
        fn next_u64(state: &mut u64) -> u64 {
            *state ^= *state << 13;
            *state ^= *state >> 7;
            *state ^= *state << 17;
            *state
        }
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
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
            let mut r = next_u64(&mut state);
            macro_rules! maybe {
                ($($field:ident).+) => {
                    if r & 3 == 0 {
                        t.$($field).+ = values[(next_u64(&mut state) % values.len() as u64) as usize];
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
            let mut r = next_u64(&mut state);
            for l in t.depth.bids.iter_mut().chain(t.depth.asks.iter_mut()) {
                if r & 7 == 0 {
                    l.price = values[(next_u64(&mut state) % values.len() as u64) as usize];
                }
                if r & 56 == 0 {
                    l.qty = values[(next_u64(&mut state) % values.len() as u64) as usize];
                }
                if r & 448 == 0 {
                    l.price = 1570.0 + (next_u64(&mut state) % 8) as f64 * 0.5;
                }
                r = r.rotate_right(9);
            }
            let r = next_u64(&mut state);
            t.fields = Fields((r as u32) & ((1 << 19) - 1));
            if r & (1 << 40) != 0 {
                t.fields = base.fields;
            }
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
}
