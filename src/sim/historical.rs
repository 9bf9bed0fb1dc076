//! A REST simulator of the Kite and Upstox V3 historical candle APIs, on 127.0.0.1 (port 0 unless
//! told), one blocking thread per connection (HTTP/1.1 keep-alive).
//!
//! - Kite: `GET /instruments/historical/{token}/{interval}?from=..&to=..` with
//!   `Authorization: token key:secret` (403 `TokenException` otherwise), the 60-day minute cap
//!   (400 `InputException`), candles oldest first with `+0530` offsets.
//! - Upstox: `GET /v3/historical-candle/{key}/minutes/{n}/{to}/{from}` (days before today) and
//!   `/v3/historical-candle/intraday/{key}/minutes/{n}` (today up to now), `Bearer` auth (401
//!   `UDAPI100050` otherwise), newest first with `+05:30` offsets.
//!
//! Candles exist for every minute of every session of the [`Calendar`] (holidays give empty
//! arrays) and are a pure function of (seed, vendor key, minute): a seeded walk per day whose
//! level uses the same derivation as the live simulator's instruments (seed XOR FNV-1a of the
//! key), so historical and live prices of an instrument agree in scale. OHLC is consistent and
//! volume is never negative.
//!
//! Faults: a per-vendor request limit per sliding second (429 + `Retry-After`), injected 429
//! bursts and 5xx answers, and a die switch (connections are cut without an answer) with revive.
//! [`HistoricalServer::max_requests_in_window`] counts what arrived, so tests can prove a client
//! never exceeded the limit.

use std::{
    collections::VecDeque,
    io::{BufRead, BufReader, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::{
        atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering},
        Arc, Mutex,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use crate::{
    calendar::{ist_day, utc_ms, Calendar, MINUTE_MS},
    vendor::Vendor,
};

/// Simulator settings.
#[derive(Clone)]
pub struct HistoricalConfig {
    /// Seed of every candle. Default 1.
    pub seed: u64,
    /// Kite requests accepted per sliding second; more get 429. Default 3.
    pub kite_rps: u32,
    /// Upstox requests accepted per sliding second. Default 50.
    pub upstox_rps: u32,
    /// `Retry-After` seconds sent with 429. Default 1.
    pub retry_after_s: u32,
    /// Accepted Kite api_key. Default `sim_api_key`.
    pub kite_api_key: String,
    /// Accepted Kite access token. Default `sim_access_token`.
    pub kite_access_token: String,
    /// Accepted Upstox bearer token. Default `sim_upstox_token`.
    pub upstox_token: String,
    /// Sessions to serve. Default the compiled-in calendar.
    pub calendar: Arc<Calendar>,
    /// "Now" in Unix ms (Upstox intraday; "today" for the historical endpoint). Default system.
    pub clock: Arc<dyn Fn() -> i64 + Send + Sync>,
    /// Listen port (0 = any). Default 0.
    pub port: u16,
}

impl Default for HistoricalConfig {
    fn default() -> Self {
        HistoricalConfig {
            seed: 1,
            kite_rps: 3,
            upstox_rps: 50,
            retry_after_s: 1,
            kite_api_key: "sim_api_key".into(),
            kite_access_token: "sim_access_token".into(),
            upstox_token: "sim_upstox_token".into(),
            calendar: Arc::new(Calendar::builtin()),
            clock: Arc::new(|| i64::try_from(crate::clock::now_unix_ms()).unwrap_or(i64::MAX)),
            port: 0,
        }
    }
}

impl std::fmt::Debug for HistoricalConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoricalConfig")
            .field("seed", &self.seed)
            .field("kite_rps", &self.kite_rps)
            .field("upstox_rps", &self.upstox_rps)
            .finish_non_exhaustive()
    }
}

/// Request counters of the simulator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HistoricalStats {
    /// Requests answered 200.
    pub ok: u64,
    /// 429s because the client really exceeded the limit.
    pub over_limit: u64,
    /// 429s injected.
    pub injected_429: u64,
    /// 5xx injected.
    pub injected_5xx: u64,
    /// Auth failures.
    pub auth_failed: u64,
    /// Connections cut while dead.
    pub cut: u64,
}

struct Faults {
    kite_429: AtomicU32,
    upstox_429: AtomicU32,
    kite_5xx: AtomicU32,
    upstox_5xx: AtomicU32,
    dead: AtomicBool,
    /// Requests to answer before dying (u64::MAX = never).
    die_after: AtomicU64,
}

struct State {
    cfg: HistoricalConfig,
    faults: Faults,
    arrivals: Mutex<Vec<(Vendor, Instant)>>,
    recent: Mutex<[VecDeque<Instant>; 2]>,
    stats: Mutex<HistoricalStats>,
    stop: AtomicBool,
}

/// A running simulator.
pub struct HistoricalServer {
    addr: SocketAddr,
    state: Arc<State>,
    accept: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for HistoricalServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HistoricalServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl HistoricalServer {
    /// Binds and starts serving.
    ///
    /// # Errors
    /// The bind or spawn error.
    pub fn start(cfg: HistoricalConfig) -> std::io::Result<HistoricalServer> {
        let listener = TcpListener::bind(("127.0.0.1", cfg.port))?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State {
            cfg,
            faults: Faults {
                kite_429: AtomicU32::new(0),
                upstox_429: AtomicU32::new(0),
                kite_5xx: AtomicU32::new(0),
                upstox_5xx: AtomicU32::new(0),
                dead: AtomicBool::new(false),
                die_after: AtomicU64::new(u64::MAX),
            },
            arrivals: Mutex::new(Vec::new()),
            recent: Mutex::new([VecDeque::new(), VecDeque::new()]),
            stats: Mutex::new(HistoricalStats::default()),
            stop: AtomicBool::new(false),
        });
        let st = Arc::clone(&state);
        let accept = std::thread::Builder::new()
            .name("sim-historical".into())
            .spawn(move || {
                for conn in listener.incoming() {
                    if st.stop.load(Ordering::Acquire) {
                        break;
                    }
                    let Ok(conn) = conn else { continue };
                    let st = Arc::clone(&st);
                    let _ = std::thread::Builder::new()
                        .name("sim-historical-conn".into())
                        .spawn(move || serve(&st, conn));
                }
            })?;
        Ok(HistoricalServer {
            addr,
            state,
            accept: Some(accept),
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`, the base URL for both vendors.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The next `count` requests of `vendor` get 429 with `Retry-After`.
    pub fn inject_429(&self, vendor: Vendor, count: u32) {
        let f = &self.state.faults;
        if vendor == Vendor::Kite {
            &f.kite_429
        } else {
            &f.upstox_429
        }
        .fetch_add(count, Ordering::AcqRel);
    }

    /// The next `count` requests of `vendor` get 503.
    pub fn inject_5xx(&self, vendor: Vendor, count: u32) {
        let f = &self.state.faults;
        if vendor == Vendor::Kite {
            &f.kite_5xx
        } else {
            &f.upstox_5xx
        }
        .fetch_add(count, Ordering::AcqRel);
    }

    /// Dies now: every connection is cut without an answer until [`Self::revive`].
    pub fn die(&self) {
        self.state.faults.dead.store(true, Ordering::Release);
    }

    /// Answers `n` more requests, then dies.
    pub fn die_after(&self, n: u64) {
        self.state.faults.die_after.store(n, Ordering::Release);
    }

    /// Serves again.
    pub fn revive(&self) {
        self.state
            .faults
            .die_after
            .store(u64::MAX, Ordering::Release);
        self.state.faults.dead.store(false, Ordering::Release);
    }

    /// Counters.
    pub fn stats(&self) -> HistoricalStats {
        self.state.stats.lock().map(|s| *s).unwrap_or_default()
    }

    /// Requests of `vendor` that arrived (whatever the answer).
    pub fn requests(&self, vendor: Vendor) -> usize {
        self.state
            .arrivals
            .lock()
            .map(|a| a.iter().filter(|(v, _)| *v == vendor).count())
            .unwrap_or(0)
    }

    /// The most requests of `vendor` that arrived within any sliding `window`.
    pub fn max_requests_in_window(&self, vendor: Vendor, window: Duration) -> usize {
        let times: Vec<Instant> = self
            .state
            .arrivals
            .lock()
            .map(|a| {
                a.iter()
                    .filter(|(v, _)| *v == vendor)
                    .map(|(_, t)| *t)
                    .collect()
            })
            .unwrap_or_default();
        let mut best = 0;
        let mut start = 0;
        for (end, t) in times.iter().enumerate() {
            while times.get(start).is_some_and(|s| *t - *s >= window) {
                start += 1;
            }
            best = best.max(end + 1 - start);
        }
        best
    }

    /// The candle the simulator serves for `key` (Kite token or Upstox key) at `minute_ms`
    /// (1-minute; larger intervals aggregate these), or `None` outside sessions.
    pub fn candle(&self, key: &str, minute_ms: i64) -> Option<crate::backfill::Candle> {
        day_candles(&self.state.cfg, key, ist_day(minute_ms))
            .into_iter()
            .find(|c| c.ts_ms == minute_ms)
    }

    /// Stops accepting (open connections end with their client).
    pub fn stop(&mut self) {
        self.state.stop.store(true, Ordering::Release);
        let _ = TcpStream::connect(self.addr);
        if let Some(j) = self.accept.take() {
            let _ = j.join();
        }
    }
}

impl Drop for HistoricalServer {
    fn drop(&mut self) {
        self.stop();
    }
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Rounds to a multiple of `1 / per_unit` (20 = the 0.05 tick). Dividing the integer count by
/// `per_unit` gives the double nearest the decimal, so prices print as `1026.1`, not with noise.
fn round_to(v: f64, per_unit: f64) -> f64 {
    (v * per_unit).round() / per_unit
}

/// Every 1-minute candle of `key` on IST `day` (empty when the day is not a session).
fn day_candles(cfg: &HistoricalConfig, key: &str, day: i64) -> Vec<crate::backfill::Candle> {
    let Some(session) = cfg.calendar.session(day) else {
        return Vec::new();
    };
    // Same level as the live simulator's instrument: first draw of SplitMix64(seed ^ fnv1a(key)).
    let is_index = key.parse::<u32>().is_ok_and(|t| t & 0xff == 9)
        || key.starts_with("NSE_INDEX|")
        || key.starts_with("BSE_INDEX|");
    let mut level = Rng(cfg.seed ^ fnv1a(key));
    let base = if is_index {
        10_000.0 + level.unit() * 40_000.0
    } else {
        50.0 + level.unit() * 3_000.0
    };
    // Prices on the 0.05 tick, as NSE equities.
    let tick = 0.05;
    let per = 20.0;
    let mut rng = Rng(cfg.seed ^ fnv1a(key) ^ (day as u64).wrapping_mul(0xA24B_AED4_963E_E407));
    let mut price = round_to(base * (0.97 + rng.unit() * 0.06), per);
    let mut out = Vec::with_capacity(session.hours.minutes() as usize);
    for m in session.hours.open..session.hours.close {
        let open = price;
        let steps = rng.below(11) as f64 - 5.0;
        let close = round_to((open + steps * tick).max(tick), per);
        let high = round_to(open.max(close) + rng.below(4) as f64 * tick, per);
        let low = round_to(
            (open.min(close) - rng.below(4) as f64 * tick).max(tick),
            per,
        );
        out.push(crate::backfill::Candle {
            ts_ms: utc_ms(day, m),
            open,
            high,
            low,
            close,
            volume: rng.below(5_000) as f64,
            oi: None,
        });
        price = close;
    }
    out
}

/// Aggregates 1-minute candles into `n`-minute candles aligned to the session open.
fn aggregate(
    cfg: &HistoricalConfig,
    minute: &[crate::backfill::Candle],
    n: u32,
) -> Vec<crate::backfill::Candle> {
    if n <= 1 {
        return minute.to_vec();
    }
    let mut out: Vec<crate::backfill::Candle> = Vec::new();
    for c in minute {
        let day = ist_day(c.ts_ms);
        let open_ms = cfg.calendar.session(day).map_or(c.ts_ms, |s| s.open_ms());
        let bucket =
            open_ms + (c.ts_ms - open_ms) / (i64::from(n) * MINUTE_MS) * i64::from(n) * MINUTE_MS;
        match out.last_mut() {
            Some(last) if last.ts_ms == bucket => {
                last.high = last.high.max(c.high);
                last.low = last.low.min(c.low);
                last.close = c.close;
                last.volume += c.volume;
            }
            _ => out.push(crate::backfill::Candle {
                ts_ms: bucket,
                ..*c
            }),
        }
    }
    out
}

fn candles_json(candles: &[crate::backfill::Candle], colon_offset: bool) -> String {
    let mut s = String::from("{\"status\":\"success\",\"data\":{\"candles\":[");
    for (i, c) in candles.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let mut ts = crate::backfill::candle::format_ist(c.ts_ms);
        if !colon_offset {
            ts = ts.replace("+05:30", "+0530");
        }
        s.push_str(&format!(
            "[\"{ts}\",{},{},{},{},{},0]",
            c.open, c.high, c.low, c.close, c.volume
        ));
    }
    s.push_str("]}}");
    s
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        match c {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                if let Some(v) = hex {
                    out.push(v);
                    i += 2;
                } else {
                    out.push(c);
                }
            }
            _ => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct Response {
    status: u16,
    body: String,
    retry_after: Option<u32>,
}

fn reply(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        body: body.into(),
        retry_after: None,
    }
}

fn serve(st: &State, conn: TcpStream) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut writer) = conn.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(conn);
    loop {
        let mut request_line = String::new();
        match reader.read_line(&mut request_line) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut auth = String::new();
        loop {
            let mut h = String::new();
            match reader.read_line(&mut h) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':') {
                if name.trim().eq_ignore_ascii_case("authorization") {
                    auth = value.trim().to_owned();
                }
            }
        }
        if st.faults.dead.load(Ordering::Acquire)
            || st.faults.die_after.load(Ordering::Acquire) == 0
        {
            st.faults.dead.store(true, Ordering::Release);
            if let Ok(mut s) = st.stats.lock() {
                s.cut += 1;
            }
            let _ = writer.shutdown(std::net::Shutdown::Both);
            return;
        }
        let _ = st
            .faults
            .die_after
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                if n == u64::MAX {
                    None
                } else {
                    Some(n.saturating_sub(1))
                }
            });
        let target = request_line
            .split_whitespace()
            .nth(1)
            .unwrap_or("/")
            .to_owned();
        let resp = handle(st, &target, &auth);
        let reason = match resp.status {
            200 => "OK",
            400 => "Bad Request",
            401 => "Unauthorized",
            403 => "Forbidden",
            404 => "Not Found",
            429 => "Too Many Requests",
            _ => "Service Unavailable",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            resp.status,
            resp.body.len()
        );
        if let Some(s) = resp.retry_after {
            head.push_str(&format!("Retry-After: {s}\r\n"));
        }
        head.push_str("\r\n");
        if writer
            .write_all(head.as_bytes())
            .and_then(|()| writer.write_all(resp.body.as_bytes()))
            .and_then(|()| writer.flush())
            .is_err()
        {
            return;
        }
    }
}

fn take(counter: &AtomicU32) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
        .is_ok()
}

fn handle(st: &State, target: &str, auth: &str) -> Response {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(pct_decode)
        .collect();
    let vendor = match segs.first().map(String::as_str) {
        Some("instruments") => Vendor::Kite,
        Some("v3") => Vendor::Upstox,
        _ => return reply(404, "{\"status\":\"error\",\"message\":\"not found\"}"),
    };
    let now = Instant::now();
    if let Ok(mut a) = st.arrivals.lock() {
        a.push((vendor, now));
    }
    let cfg = &st.cfg;
    let (idx, limit) = if vendor == Vendor::Kite {
        (0, cfg.kite_rps)
    } else {
        (1, cfg.upstox_rps)
    };
    let over = st.recent.lock().map(|mut r| {
        let Some(q) = r.get_mut(idx) else {
            return false;
        };
        while q
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            q.pop_front();
        }
        q.push_back(now);
        q.len() > limit as usize
    });
    let count = |f: &dyn Fn(&mut HistoricalStats)| {
        if let Ok(mut s) = st.stats.lock() {
            f(&mut s);
        }
    };
    let too_many = match vendor {
        Vendor::Kite => "{\"status\":\"error\",\"message\":\"Too many requests\",\"error_type\":\"NetworkException\"}",
        _ => "{\"status\":\"error\",\"errors\":[{\"errorCode\":\"UDAPI10005\",\"message\":\"Too Many Request Sent\"}]}",
    };
    if over.unwrap_or(false) {
        count(&|s| s.over_limit += 1);
        return Response {
            status: 429,
            body: too_many.into(),
            retry_after: Some(cfg.retry_after_s),
        };
    }
    let f = &st.faults;
    if take(if vendor == Vendor::Kite {
        &f.kite_429
    } else {
        &f.upstox_429
    }) {
        count(&|s| s.injected_429 += 1);
        return Response {
            status: 429,
            body: too_many.into(),
            retry_after: Some(cfg.retry_after_s),
        };
    }
    if take(if vendor == Vendor::Kite {
        &f.kite_5xx
    } else {
        &f.upstox_5xx
    }) {
        count(&|s| s.injected_5xx += 1);
        return reply(
            503,
            "{\"status\":\"error\",\"message\":\"upstream unavailable\"}",
        );
    }
    let resp = match vendor {
        Vendor::Kite => kite(cfg, &segs, query, auth),
        _ => upstox(cfg, &segs, auth),
    };
    match resp.status {
        200 => count(&|s| s.ok += 1),
        401 | 403 => count(&|s| s.auth_failed += 1),
        _ => {}
    }
    resp
}

fn parse_kite_time(s: &str) -> Option<(i64, u32)> {
    let (d, t) = s.trim().split_once(' ')?;
    let day = crate::clock::days_from_date(crate::calendar::parse_date(d)?);
    let minute = crate::calendar::parse_hhmm(t.get(0..5)?)?;
    Some((day, minute))
}

fn kite(cfg: &HistoricalConfig, segs: &[String], query: &str, auth: &str) -> Response {
    if auth != format!("token {}:{}", cfg.kite_api_key, cfg.kite_access_token) {
        return reply(403, "{\"status\":\"error\",\"message\":\"Incorrect `api_key` or `access_token`.\",\"error_type\":\"TokenException\"}");
    }
    let (Some(token), Some(interval)) = (segs.get(2), segs.get(3)) else {
        return reply(404, "{\"status\":\"error\",\"message\":\"not found\"}");
    };
    let Some(n) =
        crate::backfill::Interval::parse(interval).map(crate::backfill::Interval::minutes)
    else {
        return reply(400, "{\"status\":\"error\",\"message\":\"invalid interval\",\"error_type\":\"InputException\"}");
    };
    let mut from = None;
    let mut to = None;
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=') {
            match k {
                "from" => from = parse_kite_time(&pct_decode(v)),
                "to" => to = parse_kite_time(&pct_decode(v)),
                _ => {}
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        return reply(400, "{\"status\":\"error\",\"message\":\"invalid from or to\",\"error_type\":\"InputException\"}");
    };
    let cap = if n == 1 { 60 } else { 100 };
    if to.0 - from.0 > cap {
        return reply(400, "{\"status\":\"error\",\"message\":\"interval exceeds max limit\",\"error_type\":\"InputException\"}");
    }
    let lo = utc_ms(from.0, from.1);
    let hi = utc_ms(to.0, to.1);
    let mut candles = Vec::new();
    for day in from.0..=to.0 {
        let minute: Vec<_> = day_candles(cfg, token, day)
            .into_iter()
            .filter(|c| c.ts_ms >= lo && c.ts_ms <= hi)
            .collect();
        candles.extend(aggregate(cfg, &minute, n));
    }
    reply(200, candles_json(&candles, false))
}

fn upstox(cfg: &HistoricalConfig, segs: &[String], auth: &str) -> Response {
    if auth != format!("Bearer {}", cfg.upstox_token) {
        return reply(401, "{\"status\":\"error\",\"errors\":[{\"errorCode\":\"UDAPI100050\",\"message\":\"Invalid token used to access API\"}]}");
    }
    let seg = |i: usize| segs.get(i).map(String::as_str);
    let now = (cfg.clock)();
    let today = ist_day(now);
    let (key, n, days): (&str, u32, (i64, i64)) = match (seg(1), seg(2)) {
        (Some("historical-candle"), Some("intraday")) => {
            let (Some(key), Some("minutes"), Some(n)) =
                (seg(3), seg(4), seg(5).and_then(|n| n.parse::<u32>().ok()))
            else {
                return reply(
                    400,
                    "{\"status\":\"error\",\"errors\":[{\"message\":\"bad intraday path\"}]}",
                );
            };
            (key, n, (today, today))
        }
        (Some("historical-candle"), Some(key)) => {
            let parse = |i: usize| {
                seg(i)
                    .and_then(crate::calendar::parse_date)
                    .map(crate::clock::days_from_date)
            };
            let (Some("minutes"), Some(n), Some(to), Some(from)) = (
                seg(3),
                seg(4).and_then(|n| n.parse::<u32>().ok()),
                parse(5),
                parse(6),
            ) else {
                return reply(
                    400,
                    "{\"status\":\"error\",\"errors\":[{\"message\":\"bad historical path\"}]}",
                );
            };
            if to < from || to - from > 31 {
                return reply(400, "{\"status\":\"error\",\"errors\":[{\"errorCode\":\"UDAPI1148\",\"message\":\"invalid date range\"}]}");
            }
            // Today's candles come only from the intraday endpoint.
            (key, n, (from, to.min(today - 1)))
        }
        _ => {
            return reply(
                404,
                "{\"status\":\"error\",\"errors\":[{\"message\":\"not found\"}]}",
            )
        }
    };
    if !matches!(n, 1 | 3 | 5 | 10 | 15 | 30 | 60) {
        return reply(
            400,
            "{\"status\":\"error\",\"errors\":[{\"message\":\"invalid interval\"}]}",
        );
    }
    let mut candles = Vec::new();
    for day in days.0..=days.1 {
        let minute: Vec<_> = day_candles(cfg, key, day)
            .into_iter()
            .filter(|c| c.ts_ms + MINUTE_MS <= now)
            .collect();
        candles.extend(aggregate(cfg, &minute, n));
    }
    candles.reverse();
    reply(200, candles_json(&candles, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candles_are_deterministic_and_valid() {
        let cfg = HistoricalConfig::default();
        let day = crate::clock::days_from_date(crate::clock::Date {
            year: 2026,
            month: 11,
            day: 27,
        });
        let a = day_candles(&cfg, "408065", day);
        assert_eq!(a.len(), 375);
        assert_eq!(a, day_candles(&cfg, "408065", day));
        assert_ne!(
            a,
            day_candles(
                &HistoricalConfig {
                    seed: 2,
                    ..cfg.clone()
                },
                "408065",
                day
            )
        );
        assert!(a.iter().all(crate::backfill::Candle::is_valid));
        assert!(a.windows(2).all(|w| w[1].open == w[0].close));
        assert!(day_candles(&cfg, "408065", day + 1).is_empty(), "Saturday");
        let five = aggregate(&cfg, &a, 5);
        assert_eq!(five.len(), 75);
        assert!(five.iter().all(crate::backfill::Candle::is_valid));
    }
}
