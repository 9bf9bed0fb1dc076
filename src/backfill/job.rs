//! One backfill job, on the backfill job thread: plan the gaps from coverage, fetch them within
//! each vendor's caps and limits, produce the missing candles, record what was covered.

use std::{collections::BTreeMap, time::Duration};

use super::{
    candle::{format_ist, Candle, CandleRecord, Interval},
    coverage::{self, MinuteSet},
    error::BackfillError,
    fetch::{FetchEvent, Fetcher},
    instruments::BackfillInstrument,
    lock::LockGuard,
    status::Progress,
    Runtime,
};
use crate::{
    calendar::{format_date, ist_day, ist_minute_of_day, Session},
    clock::date_from_days,
    error::ErrorCode,
    producer::{Outbound, Record, Topic},
};

/// What a job was asked to do.
#[derive(Debug, Clone)]
pub(crate) struct JobRequest {
    pub(crate) trigger: String,
    pub(crate) days: u32,
    pub(crate) interval: Interval,
    pub(crate) symbols: Option<Vec<String>>,
    pub(crate) force: bool,
    pub(crate) market: &'static str,
}

/// The gaps of one instrument on one session.
struct DayPlan {
    session: Session,
    /// Minutes of the candles to produce (whole candle buckets).
    needed: MinuteSet,
}

struct Plan {
    symbol: String,
    sources: Vec<BackfillInstrument>,
    days: Vec<DayPlan>,
}

/// Candle starts of `session` for `interval` that touch a minute in `missing`, as the set of all
/// minutes of those candles; and how many candles that is.
fn buckets(session: &Session, interval: Interval, missing: &MinuteSet) -> (MinuteSet, u64) {
    let n = interval.minutes();
    let (open, close) = (session.hours.open, session.hours.close);
    let mut needed = MinuteSet::EMPTY;
    let mut count = 0;
    let mut start = open;
    while start < close {
        let end = (start + n).min(close);
        if (start..end).any(|m| missing.contains(m)) {
            needed.insert_range(start, end);
            count += 1;
        }
        start += n;
    }
    (needed, count)
}

/// Groups sorted days into requests of at most `max_days` calendar days each.
fn chunks(days: &[i64], max_days: u32) -> Vec<(i64, i64)> {
    let mut out: Vec<(i64, i64)> = Vec::new();
    for &d in days {
        match out.last_mut() {
            Some((from, to)) if d - *from < i64::from(max_days) => *to = d,
            _ => out.push((d, d)),
        }
    }
    out
}

pub(crate) fn run(
    rt: &Runtime,
    req: &JobRequest,
    guard: &LockGuard,
) -> Result<Progress, BackfillError> {
    let s = &rt.settings;
    let now = (s.clock)();
    let today = ist_day(now);
    let sessions = s.calendar.last_trading_days(now, req.days as usize);
    let redis_err =
        |e: redis::RedisError| BackfillError::Redis(crate::redact::redact(&e.to_string()));
    let mut con = rt
        .client
        .get_connection_with_timeout(Duration::from_secs(2))
        .map_err(redis_err)?;
    con.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(redis_err)?;
    // Live minutes recorded since the last periodic flush count as covered too.
    if let Err(e) = rt.live.flush(&mut con, &s.keys.prefix, s.coverage_ttl) {
        log::warn!(event = "backfill_live_flush_failed", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
    }
    let interval_name = req.interval.name();
    rt.board.update("progress", |st| {
        st.days = sessions.iter().map(|x| format_date(x.date())).collect();
    });

    // Group the sources by canonical symbol, keeping the configured order.
    let mut plans: Vec<Plan> = Vec::new();
    for inst in rt.source.instruments() {
        match plans.iter_mut().find(|p| p.symbol == inst.symbol) {
            Some(p) => p.sources.push(inst),
            None => plans.push(Plan {
                symbol: inst.symbol.clone(),
                sources: vec![inst],
                days: Vec::new(),
            }),
        }
    }
    let mut failed = 0usize;
    let mut first_failure: Option<String> = None;
    if let Some(wanted) = &req.symbols {
        for w in wanted {
            if !plans.iter().any(|p| &p.symbol == w) {
                let e = BackfillError::UnknownSymbol(w.clone());
                rt.board.update("progress", |st| {
                    st.push_error(Some(w), e.code(), e.to_string())
                });
                failed += 1;
                first_failure.get_or_insert_with(|| e.to_string());
            }
        }
        plans.retain(|p| wanted.contains(&p.symbol));
    }

    let mut total_candles = 0u64;
    for plan in &mut plans {
        for session in &sessions {
            let date = format_date(session.date());
            let keys = [
                coverage::live_key(&s.keys.prefix, &plan.symbol, &date),
                coverage::backfill_key(&s.keys.prefix, &interval_name, &plan.symbol, &date),
            ];
            let covered = coverage::read_union(&mut con, &keys).map_err(redis_err)?;
            let mut all = MinuteSet::EMPTY;
            all.insert_range(session.hours.open, session.hours.close);
            let (needed, count) = buckets(session, req.interval, &all.minus(&covered));
            if count > 0 {
                total_candles += count;
                plan.days.push(DayPlan {
                    session: *session,
                    needed,
                });
            }
        }
    }
    let total_instruments = plans.len() + failed;
    rt.board.update("progress", |st| {
        st.progress.instruments_total = total_instruments;
        st.progress.instruments_done = failed;
        st.progress.candles_total = total_candles;
    });

    let mut fetcher = Fetcher::new(s.kite.clone(), s.upstox.clone(), s.retry, s.http_timeout);
    for plan in &plans {
        if plan.days.is_empty() {
            rt.board
                .update("progress", |st| st.progress.instruments_done += 1);
            continue;
        }
        rt.board.update("progress", |st| {
            st.current_instrument = Some(plan.symbol.clone())
        });
        let mut last_err: Option<BackfillError> = None;
        let mut served = false;
        for src in &plan.sources {
            match fetch_instrument(rt, req, guard, &mut fetcher, &mut con, plan, src, today) {
                Ok(()) => {
                    served = true;
                    break;
                }
                Err(e) if e.is_terminal() => return Err(e),
                Err(e) => {
                    log::warn!(event = "backfill_instrument_failed", code = e.code(), vendor = src.vendor.as_str(), instrument = plan.symbol.as_str(); "{e}");
                    if !matches!(e, BackfillError::VendorDown { .. }) {
                        rt.board.update("progress", |st| {
                            st.push_error(Some(&plan.symbol), e.code(), e.to_string())
                        });
                    }
                    last_err = Some(e);
                }
            }
        }
        if !served {
            failed += 1;
            if let Some(e) = &last_err {
                first_failure.get_or_insert_with(|| e.to_string());
            }
        }
        rt.board
            .update("progress", |st| st.progress.instruments_done += 1);
    }
    rt.board
        .update("progress", |st| st.current_instrument = None);
    let progress = rt.board.snapshot().progress;
    if failed > 0 {
        return Err(BackfillError::Incomplete {
            failed,
            total: total_instruments,
            first: first_failure.unwrap_or_default(),
        });
    }
    Ok(progress)
}

#[allow(clippy::too_many_arguments)]
fn fetch_instrument(
    rt: &Runtime,
    req: &JobRequest,
    guard: &LockGuard,
    fetcher: &mut Fetcher,
    con: &mut redis::Connection,
    plan: &Plan,
    src: &BackfillInstrument,
    today: i64,
) -> Result<(), BackfillError> {
    let s = &rt.settings;
    if !fetcher.usable(src.vendor) {
        return Err(if s.endpoint(src.vendor).is_some() {
            BackfillError::VendorDown { vendor: src.vendor }
        } else {
            BackfillError::NoCredentials { vendor: src.vendor }
        });
    }
    let interval_name = req.interval.name();
    let days: Vec<i64> = plan.days.iter().map(|d| d.session.day).collect();
    for (from, to) in chunks(&days, fetcher.max_days(src.vendor)) {
        let mut counters = Progress::default();
        let mut hooks = |ev: FetchEvent| -> Result<(), BackfillError> {
            match ev {
                FetchEvent::Check => {
                    if rt.shutdown.is_triggered() {
                        return Err(BackfillError::Shutdown);
                    }
                    if guard.is_lost() {
                        return Err(BackfillError::LockLost);
                    }
                }
                FetchEvent::Call(_) => counters.api_calls += 1,
                FetchEvent::RateLimited => counters.rate_limited += 1,
                FetchEvent::Retry => counters.retries += 1,
            }
            Ok(())
        };
        let fetched = fetcher.fetch(src, from, to, req.interval, today, &mut hooks);
        rt.board.update("progress", |st| {
            st.progress.api_calls += counters.api_calls;
            st.progress.rate_limited += counters.rate_limited;
            st.progress.retries += counters.retries;
        });
        let candles = fetched?;
        // Sorted and unique by start time (Upstox answers newest first; overlapping answers
        // must not produce a candle twice).
        let mut by_day: BTreeMap<i64, BTreeMap<i64, Candle>> = BTreeMap::new();
        let mut invalid = 0u64;
        for c in candles {
            if c.is_valid() {
                by_day
                    .entry(ist_day(c.ts_ms))
                    .or_default()
                    .insert(c.ts_ms, c);
            } else {
                invalid += 1;
            }
        }
        if invalid > 0 {
            rt.board.update("progress", |st| {
                st.push_error(
                    Some(&plan.symbol),
                    "BACKFILL_INVALID_CANDLE",
                    format!("{invalid} candles failed validation and were dropped"),
                );
            });
        }
        let mut produced = 0u64;
        for day in plan
            .days
            .iter()
            .filter(|d| (from..=to).contains(&d.session.day))
        {
            let Some(candles) = by_day.get(&day.session.day) else {
                // An empty day is not proof of anything (vendor lag, unlisted closure): leave it
                // uncovered so the next job asks again.
                log::info!(event = "backfill_empty_day", instrument = plan.symbol.as_str(), day = format_date(day.session.date()); "vendor returned no candles for a session day");
                continue;
            };
            for c in candles.values() {
                let m = ist_minute_of_day(c.ts_ms);
                let on_grid =
                    (m.wrapping_sub(day.session.hours.open)) % req.interval.minutes() == 0;
                if !(on_grid && day.needed.contains(m)) {
                    continue;
                }
                send(rt, src, &plan.symbol, &interval_name, c)?;
                produced += 1;
            }
            let date = format_date(date_from_days(day.session.day));
            coverage::merge(
                con,
                &coverage::backfill_key(&s.keys.prefix, &interval_name, &plan.symbol, &date),
                &day.needed,
                s.coverage_ttl,
            )
            .map_err(|e| BackfillError::Redis(crate::redact::redact(&e.to_string())))?;
        }
        rt.board
            .update("progress", |st| st.progress.candles_done += produced);
    }
    Ok(())
}

fn send(
    rt: &Runtime,
    src: &BackfillInstrument,
    symbol: &str,
    interval: &str,
    c: &Candle,
) -> Result<(), BackfillError> {
    if rt.shutdown.is_triggered() {
        return Err(BackfillError::Shutdown);
    }
    let rec = CandleRecord {
        kind: "candle",
        instrument: symbol,
        exchange: symbol.split_once(':').map_or("", |(e, _)| e),
        interval,
        ts: c.ts_ms,
        ts_ist: format_ist(c.ts_ms),
        open: c.open,
        high: c.high,
        low: c.low,
        close: c.close,
        volume: c.volume,
        oi: c.oi,
        vendor: src.vendor.as_str(),
        vendor_token: &src.token,
        source: "backfill",
    };
    let payload =
        serde_json::to_vec(&rec).map_err(|_| BackfillError::Producer("candle did not encode"))?;
    let record = Record {
        topic: Topic::Ohlc,
        key: Some(symbol.as_bytes().to_vec()),
        payload,
        headers: vec![
            ("vendor".to_owned(), src.vendor.as_str().as_bytes().to_vec()),
            ("schema".to_owned(), b"candle.1".to_vec()),
            ("source".to_owned(), b"backfill".to_vec()),
        ],
        received_at_ns: crate::clock::now_unix_ns(),
    };
    rt.producer
        .send_timeout(Outbound::Record(record), rt.settings.producer_send_timeout)
        .map_err(|e| match e {
            crossbeam_channel::SendTimeoutError::Timeout(_) => {
                BackfillError::Producer("producer queue stayed full")
            }
            crossbeam_channel::SendTimeoutError::Disconnected(_) => {
                BackfillError::Producer("producer stopped")
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::calendar::SessionHours;

    #[test]
    fn buckets_cover_whole_candles() {
        let s = Session {
            day: 20_000,
            hours: SessionHours::REGULAR,
            special: false,
        };
        let mut missing = MinuteSet::EMPTY;
        missing.insert(556);
        missing.insert(929);
        let (needed, n) = buckets(&s, Interval::MINUTE, &missing);
        assert_eq!((needed.ranges(), n), (vec![(556, 557), (929, 930)], 2));
        let five = Interval::parse("5minute").expect("5m");
        let (needed, n) = buckets(&s, five, &missing);
        assert_eq!((needed.ranges(), n), (vec![(555, 560), (925, 930)], 2));
    }

    #[test]
    fn requests_respect_the_day_cap() {
        assert_eq!(chunks(&[10, 11, 12, 15, 80], 60), vec![(10, 15), (80, 80)]);
        assert_eq!(chunks(&[10, 11, 12], 1), vec![(10, 10), (11, 11), (12, 12)]);
        assert!(chunks(&[], 5).is_empty());
    }
}
