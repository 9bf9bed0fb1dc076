//! The vendors' historical candle APIs over blocking HTTPS (ureq 3, rustls with ring):
//! Kite `GET /instruments/historical/{token}/{interval}` and Upstox V3
//! `GET /v3/historical-candle/{key}/minutes/{n}/{to}/{from}` (plus `.../intraday/...` for today).
//!
//! Every request waits for the vendor's [`RateLimiter`], is counted in
//! `external_api_calls_total{vendor,endpoint,status}`, and is retried with capped exponential
//! backoff on 429 (honouring `Retry-After`), 5xx and transport errors up to the configured number
//! of attempts. 401/403 are reported at once and the vendor is skipped for the rest of the job.
//! URLs never reach a log line (credentials travel in headers only, but paths carry tokens).

use std::time::{Duration, Instant};

use super::{
    candle::{parse_candles, Candle, Interval},
    error::BackfillError,
    instruments::BackfillInstrument,
    ratelimit::RateLimiter,
    RetryPolicy, VendorEndpoint,
};
use crate::{calendar::format_date, clock::date_from_days, vendor::Vendor};

/// Largest response body read (a 60-day minute request is about 2 MB).
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// What a fetch reports to its job while it works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchEvent {
    /// Before each request and between waits: the job answers `Err` to stop (shutdown, lock lost).
    Check,
    /// A request got an HTTP answer (or failed in transport: `None`).
    Call(Option<u16>),
    /// A 429 was answered.
    RateLimited,
    /// A retry is about to wait.
    Retry,
}

struct VendorState {
    ep: VendorEndpoint,
    limiter: RateLimiter,
    down: bool,
}

/// The job's HTTP side: one agent (connection reuse) and per-vendor pacing.
pub struct Fetcher {
    agent: ureq::Agent,
    retry: RetryPolicy,
    kite: Option<VendorState>,
    upstox: Option<VendorState>,
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn date(day: i64) -> String {
    format_date(date_from_days(day))
}

impl Fetcher {
    /// A fetcher for the configured vendors.
    pub fn new(
        kite: Option<VendorEndpoint>,
        upstox: Option<VendorEndpoint>,
        retry: RetryPolicy,
        timeout: Duration,
    ) -> Fetcher {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .timeout_connect(Some(timeout.min(Duration::from_secs(5))))
            .user_agent(concat!("layer1/", env!("CARGO_PKG_VERSION")))
            .build();
        let second = Duration::from_secs(1);
        Fetcher {
            agent: config.into(),
            retry,
            kite: kite.map(|ep| VendorState {
                limiter: RateLimiter::new(&[(ep.rps as usize, second)]),
                ep,
                down: false,
            }),
            upstox: upstox.map(|ep| VendorState {
                // The documented per-minute and per-30-minute caps apply whatever the per-second
                // setting is.
                limiter: RateLimiter::new(&[
                    (ep.rps as usize, second),
                    (500, Duration::from_secs(60)),
                    (2000, Duration::from_secs(1800)),
                ]),
                ep,
                down: false,
            }),
        }
    }

    /// True when `vendor` is configured and has not failed for good in this job.
    pub fn usable(&self, vendor: Vendor) -> bool {
        self.state(vendor).is_some_and(|s| !s.down)
    }

    /// Most calendar days one request may span for `vendor`.
    pub fn max_days(&self, vendor: Vendor) -> u32 {
        self.state(vendor).map_or(1, |s| s.ep.max_days.max(1))
    }

    fn state(&self, vendor: Vendor) -> Option<&VendorState> {
        match vendor {
            Vendor::Kite => self.kite.as_ref(),
            Vendor::Upstox => self.upstox.as_ref(),
            _ => None,
        }
    }

    fn state_mut(&mut self, vendor: Vendor) -> Option<&mut VendorState> {
        match vendor {
            Vendor::Kite => self.kite.as_mut(),
            Vendor::Upstox => self.upstox.as_mut(),
            _ => None,
        }
    }

    /// Candles of `inst` for IST days `from_day..=to_day` (any order; the caller filters and
    /// sorts). `today` is the current IST day: Upstox serves it from the intraday endpoint.
    ///
    /// # Errors
    /// [`BackfillError`] after retries; a vendor-level failure also marks the vendor down.
    pub fn fetch(
        &mut self,
        inst: &BackfillInstrument,
        from_day: i64,
        to_day: i64,
        interval: Interval,
        today: i64,
        hooks: &mut dyn FnMut(FetchEvent) -> Result<(), BackfillError>,
    ) -> Result<Vec<Candle>, BackfillError> {
        let result = match inst.vendor {
            Vendor::Kite => self.fetch_kite(inst, from_day, to_day, interval, hooks),
            Vendor::Upstox => self.fetch_upstox(inst, from_day, to_day, interval, today, hooks),
            v => Err(BackfillError::NoCredentials { vendor: v }),
        };
        if let Err(e) = &result {
            if e.vendor_is_down() {
                if let Some(s) = self.state_mut(inst.vendor) {
                    s.down = true;
                }
            }
        }
        result
    }

    fn fetch_kite(
        &mut self,
        inst: &BackfillInstrument,
        from_day: i64,
        to_day: i64,
        interval: Interval,
        hooks: &mut dyn FnMut(FetchEvent) -> Result<(), BackfillError>,
    ) -> Result<Vec<Candle>, BackfillError> {
        let Some(s) = self.kite.as_ref() else {
            return Err(BackfillError::NoCredentials {
                vendor: Vendor::Kite,
            });
        };
        let base = s.ep.base_url.trim_end_matches('/');
        // Whole IST days: the job keeps only the minutes it is missing.
        let url = format!(
            "{base}/instruments/historical/{}/{}?from={}+00%3A00%3A00&to={}+23%3A59%3A59&continuous=0&oi=0",
            percent_encode(&inst.token),
            interval.name(),
            date(from_day),
            date(to_day)
        );
        let body = self.get(Vendor::Kite, "historical", &url, hooks)?;
        parse_body(Vendor::Kite, &body)
    }

    fn fetch_upstox(
        &mut self,
        inst: &BackfillInstrument,
        from_day: i64,
        to_day: i64,
        interval: Interval,
        today: i64,
        hooks: &mut dyn FnMut(FetchEvent) -> Result<(), BackfillError>,
    ) -> Result<Vec<Candle>, BackfillError> {
        let Some(s) = self.upstox.as_ref() else {
            return Err(BackfillError::NoCredentials {
                vendor: Vendor::Upstox,
            });
        };
        let base = s.ep.base_url.trim_end_matches('/').to_owned();
        let key = percent_encode(&inst.token);
        let n = interval.minutes();
        let mut out = Vec::new();
        let last_past = to_day.min(today - 1);
        if from_day <= last_past {
            // V3 puts to_date before from_date.
            let url = format!(
                "{base}/v3/historical-candle/{key}/minutes/{n}/{}/{}",
                date(last_past),
                date(from_day)
            );
            let body = self.get(Vendor::Upstox, "historical", &url, hooks)?;
            out.extend(parse_body(Vendor::Upstox, &body)?);
        }
        if (from_day..=to_day).contains(&today) {
            let url = format!("{base}/v3/historical-candle/intraday/{key}/minutes/{n}");
            let body = self.get(Vendor::Upstox, "intraday", &url, hooks)?;
            out.extend(parse_body(Vendor::Upstox, &body)?);
        }
        Ok(out)
    }

    fn get(
        &mut self,
        vendor: Vendor,
        endpoint: &'static str,
        url: &str,
        hooks: &mut dyn FnMut(FetchEvent) -> Result<(), BackfillError>,
    ) -> Result<String, BackfillError> {
        let retry = self.retry;
        let agent = self.agent.clone();
        let Some(state) = self.state_mut(vendor) else {
            return Err(BackfillError::NoCredentials { vendor });
        };
        if state.down {
            return Err(BackfillError::VendorDown { vendor });
        }
        let calls = &crate::metrics::global().external_api_calls_total;
        let mut attempts: u32 = 0;
        let mut limited: u32 = 0;
        loop {
            hooks(FetchEvent::Check)?;
            wait(state.limiter.wait_time(Instant::now()), hooks)?;
            attempts += 1;
            let mut req = agent.get(url).header("Accept", "application/json");
            req = match (vendor, &state.ep.api_key) {
                (Vendor::Kite, Some(key)) => req.header("X-Kite-Version", "3").header(
                    "Authorization",
                    format!("token {}:{}", key.expose(), state.ep.token.expose()),
                ),
                _ => req.header(
                    "Authorization",
                    format!("Bearer {}", state.ep.token.expose()),
                ),
            };
            let result = req.call();
            state.limiter.finished(Instant::now());
            let failure = match result {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    calls
                        .with_label_values(&[vendor.as_str(), endpoint, status_label(status)])
                        .inc();
                    hooks(FetchEvent::Call(Some(status)))?;
                    match status {
                        200 => match resp
                            .body_mut()
                            .with_config()
                            .limit(MAX_BODY)
                            .read_to_string()
                        {
                            Ok(body) => return Ok(body),
                            Err(e) => Failure::Transport(e.to_string()),
                        },
                        429 => {
                            limited += 1;
                            hooks(FetchEvent::RateLimited)?;
                            if limited > retry.max_rate_limited {
                                return Err(BackfillError::RateLimited { vendor, attempts });
                            }
                            let after = resp
                                .headers()
                                .get("retry-after")
                                .and_then(|v| v.to_str().ok())
                                .and_then(|v| v.trim().parse::<u64>().ok())
                                .map(|s| Duration::from_secs(s.min(300)));
                            let pause = after.unwrap_or_else(|| retry.backoff(limited));
                            state.limiter.block_until(Instant::now() + pause);
                            hooks(FetchEvent::Retry)?;
                            continue;
                        }
                        401 | 403 => return Err(BackfillError::Auth { vendor, status }),
                        500..=599 => Failure::Server(status),
                        _ => {
                            let body = resp
                                .body_mut()
                                .with_config()
                                .limit(64 * 1024)
                                .read_to_string()
                                .unwrap_or_default();
                            return Err(BackfillError::Rejected {
                                vendor,
                                status,
                                message: vendor_message(&body),
                            });
                        }
                    }
                }
                Err(e) => {
                    calls
                        .with_label_values(&[vendor.as_str(), endpoint, "error"])
                        .inc();
                    hooks(FetchEvent::Call(None))?;
                    Failure::Transport(e.to_string())
                }
            };
            let errors = attempts - limited;
            if errors >= retry.max_attempts {
                return Err(match failure {
                    Failure::Server(status) => BackfillError::Server {
                        vendor,
                        status,
                        attempts,
                    },
                    Failure::Transport(reason) => BackfillError::Transport {
                        vendor,
                        attempts,
                        reason: crate::redact::redact(&reason),
                    },
                });
            }
            hooks(FetchEvent::Retry)?;
            wait(retry.backoff(errors), hooks)?;
        }
    }
}

enum Failure {
    Server(u16),
    Transport(String),
}

fn status_label(status: u16) -> &'static str {
    // A fixed label set keeps the metric's cardinality bounded whatever a vendor answers.
    const KNOWN: &[(u16, &str)] = &[
        (200, "200"),
        (400, "400"),
        (401, "401"),
        (403, "403"),
        (404, "404"),
        (429, "429"),
        (500, "500"),
        (502, "502"),
        (503, "503"),
        (504, "504"),
    ];
    KNOWN.iter().find(|(code, _)| *code == status).map_or_else(
        || match status {
            400..=499 => "4xx",
            500..=599 => "5xx",
            _ => "other",
        },
        |(_, label)| *label,
    )
}

/// The `message` of a vendor error body (Kite `message`, Upstox `errors[0].message`), truncated.
fn vendor_message(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    let msg = v
        .get("message")
        .and_then(serde_json::Value::as_str)
        .or_else(|| {
            v.get("errors")
                .and_then(|e| e.get(0))
                .and_then(|e| e.get("message"))
                .and_then(serde_json::Value::as_str)
        })
        .unwrap_or("");
    crate::redact::redact(&msg.chars().take(200).collect::<String>())
}

fn parse_body(vendor: Vendor, body: &str) -> Result<Vec<Candle>, BackfillError> {
    let (candles, bad) =
        parse_candles(body).map_err(|reason| BackfillError::BadResponse { vendor, reason })?;
    if bad > 0 {
        log::warn!(event = "backfill_bad_rows", vendor = vendor.as_str(), rows = bad; "candle rows that do not parse were skipped");
    }
    Ok(candles)
}

/// Sleeps `d` in short slices, asking the job between them whether to stop.
fn wait(
    d: Duration,
    hooks: &mut dyn FnMut(FetchEvent) -> Result<(), BackfillError>,
) -> Result<(), BackfillError> {
    let end = Instant::now() + d;
    loop {
        let now = Instant::now();
        if now >= end {
            return Ok(());
        }
        std::thread::sleep((end - now).min(Duration::from_millis(50)));
        hooks(FetchEvent::Check)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(
            percent_encode("NSE_EQ|INE009A01021"),
            "NSE_EQ%7CINE009A01021"
        );
        assert_eq!(
            percent_encode("NSE_INDEX|Nifty 50"),
            "NSE_INDEX%7CNifty%2050"
        );
        assert_eq!(percent_encode("408065"), "408065");
    }

    #[test]
    fn vendor_messages() {
        assert_eq!(
            vendor_message(
                r#"{"status":"error","message":"Invalid token","error_type":"InputException"}"#
            ),
            "Invalid token"
        );
        assert_eq!(
            vendor_message(
                r#"{"status":"error","errors":[{"errorCode":"UDAPI1","message":"bad key"}]}"#
            ),
            "bad key"
        );
        assert_eq!(vendor_message("<html>"), "");
    }
}
