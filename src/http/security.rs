//! Who may do what: loopback versus remote exposure, the bearer token for `POST`, cross-origin
//! and DNS-rebinding refusals, and the per-client request rate.
//!
//! `GET` never changes state, so reads need no token. A state-changing request (`POST`) must come
//! from the page's own origin (browsers send `Origin` and `Sec-Fetch-Site` on every `POST`; a
//! non-browser client sends neither and is not a CSRF vector) and, when the server is reachable
//! from other hosts, carry `Authorization: Bearer <STATUS_TOKEN>`.

use std::{
    net::{IpAddr, SocketAddr},
    time::Instant,
};

use super::{error::HttpError, wire::Request};
use crate::config::Secret;

/// How the server is exposed.
#[derive(Debug, Clone)]
pub enum Exposure {
    /// Bound to a loopback address: only this machine can connect; `POST` needs no token but
    /// `Host` must name this machine (against DNS rebinding).
    Loopback,
    /// Reachable from elsewhere: `POST` needs the bearer token. `None` (which the configuration
    /// refuses at start-up) fails closed: every `POST` is refused.
    Remote {
        /// The `STATUS_TOKEN`.
        token: Option<Secret>,
    },
}

impl Exposure {
    /// Loopback when `addr` is a loopback address, else remote with `token`.
    pub fn for_addr(addr: SocketAddr, token: Option<Secret>) -> Exposure {
        if addr.ip().is_loopback() {
            Exposure::Loopback
        } else {
            Exposure::Remote { token }
        }
    }

    /// True when `POST` requires a token.
    pub fn token_required(&self) -> bool {
        matches!(self, Exposure::Remote { .. })
    }

    /// The name shown on the page.
    pub fn as_str(&self) -> &'static str {
        match self {
            Exposure::Loopback => "loopback",
            Exposure::Remote { .. } => "remote",
        }
    }
}

/// True when `host` (a `Host` header value) names this machine in a way a DNS-rebinding page
/// cannot produce: an IP literal, `localhost`, or a single-label name.
fn host_is_local(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1]:8080
        return rest
            .split(']')
            .next()
            .and_then(|ip| ip.parse::<IpAddr>().ok())
            .is_some();
    } else {
        host.rsplit_once(':').map_or(host, |(h, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                h
            } else {
                host
            }
        })
    };
    name.parse::<IpAddr>().is_ok()
        || name.eq_ignore_ascii_case("localhost")
        || (!name.is_empty() && !name.contains('.'))
}

/// Checks the `Host` header: in loopback mode it must name this machine.
///
/// # Errors
/// [`HttpError::Host`].
pub fn check_host(req: &Request, exposure: &Exposure) -> Result<(), HttpError> {
    match (exposure, req.host.as_deref()) {
        (Exposure::Loopback, Some(h)) if !host_is_local(h) => Err(HttpError::Host),
        _ => Ok(()),
    }
}

/// `scheme://host[:port]` -> `host[:port]`.
fn origin_authority(origin: &str) -> Option<&str> {
    let rest = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))?;
    Some(rest.split('/').next().unwrap_or(rest))
}

/// Checks a state-changing request: same origin, then the token when remote.
///
/// # Errors
/// [`HttpError::CrossOrigin`] or [`HttpError::Unauthorized`].
pub fn check_post(req: &Request, exposure: &Exposure) -> Result<(), HttpError> {
    if let Some(site) = req.sec_fetch_site.as_deref() {
        if !(site.eq_ignore_ascii_case("same-origin") || site.eq_ignore_ascii_case("none")) {
            return Err(HttpError::CrossOrigin);
        }
    }
    if let Some(origin) = req.origin.as_deref() {
        let same = match (origin_authority(origin), req.host.as_deref()) {
            (Some(a), Some(h)) => a.eq_ignore_ascii_case(h),
            // `Origin: null` (sandboxed frames, file:// pages) or no Host to compare with.
            _ => false,
        };
        if !same {
            return Err(HttpError::CrossOrigin);
        }
    }
    if let Exposure::Remote { token } = exposure {
        let given = req.authorization.as_deref().and_then(|a| {
            let (scheme, value) = a.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then_some(value.trim())
        });
        match (token, given) {
            (Some(t), Some(g)) if constant_time_eq(t.expose().as_bytes(), g.as_bytes()) => {}
            _ => return Err(HttpError::Unauthorized),
        }
    }
    Ok(())
}

/// Compares without an early exit, so the time taken does not reveal how much of a guess matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..a.len().max(b.len()) {
        diff |= a.get(i).copied().unwrap_or(0) ^ b.get(i).copied().unwrap_or(0xff);
    }
    diff == 0
}

/// Most clients tracked at once; the least recently seen is forgotten first.
const MAX_CLIENTS: usize = 128;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    ip: IpAddr,
    tokens: f64,
    last: Instant,
}

/// A token bucket per client address: `burst` requests at once, refilled at `per_s`.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_s: f64,
    buckets: Vec<Bucket>,
}

impl RateLimiter {
    /// A limiter allowing `burst` requests at once and `per_s` per second sustained.
    pub fn new(burst: u32, per_s: u32) -> RateLimiter {
        RateLimiter {
            burst: f64::from(burst.max(1)),
            per_s: f64::from(per_s.max(1)),
            buckets: Vec::with_capacity(MAX_CLIENTS),
        }
    }

    /// Takes one token for `ip`.
    ///
    /// # Errors
    /// [`HttpError::RateLimited`] with the wait until the next token.
    pub fn check(&mut self, ip: IpAddr, now: Instant) -> Result<(), HttpError> {
        let pos = match self.buckets.iter().position(|b| b.ip == ip) {
            Some(p) => p,
            None => {
                let fresh = Bucket {
                    ip,
                    tokens: self.burst,
                    last: now,
                };
                if self.buckets.len() < MAX_CLIENTS {
                    self.buckets.push(fresh);
                    self.buckets.len() - 1
                } else {
                    let oldest = self
                        .buckets
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, b)| b.last)
                        .map_or(0, |(i, _)| i);
                    if let Some(b) = self.buckets.get_mut(oldest) {
                        *b = fresh;
                    }
                    oldest
                }
            }
        };
        let (burst, per_s) = (self.burst, self.per_s);
        let Some(b) = self.buckets.get_mut(pos) else {
            return Ok(());
        };
        b.tokens =
            (b.tokens + now.saturating_duration_since(b.last).as_secs_f64() * per_s).min(burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            Ok(())
        } else {
            // Whole seconds, at least one: Retry-After takes an integer.
            let wait = ((1.0 - b.tokens) / per_s).ceil().max(1.0);
            Err(HttpError::RateLimited {
                retry_after_s: wait as u64,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn post(host: &str, origin: Option<&str>, site: Option<&str>, auth: Option<&str>) -> Request {
        Request {
            method: "POST".into(),
            path: "/api/backfill".into(),
            host: Some(host.into()),
            origin: origin.map(Into::into),
            sec_fetch_site: site.map(Into::into),
            authorization: auth.map(Into::into),
            ..Request::default()
        }
    }

    #[test]
    fn origin_and_token_rules() {
        let l = Exposure::Loopback;
        assert!(check_post(&post("127.0.0.1:8080", None, None, None), &l).is_ok());
        assert!(check_post(
            &post(
                "127.0.0.1:8080",
                Some("http://127.0.0.1:8080"),
                Some("same-origin"),
                None
            ),
            &l
        )
        .is_ok());
        assert_eq!(
            check_post(
                &post("127.0.0.1:8080", Some("http://evil.example"), None, None),
                &l
            ),
            Err(HttpError::CrossOrigin)
        );
        assert_eq!(
            check_post(&post("127.0.0.1:8080", Some("null"), None, None), &l),
            Err(HttpError::CrossOrigin)
        );
        assert_eq!(
            check_post(&post("127.0.0.1:8080", None, Some("cross-site"), None), &l),
            Err(HttpError::CrossOrigin)
        );
        let r = Exposure::Remote {
            token: Some(Secret::new("0123456789abcdefXYZ")),
        };
        assert_eq!(
            check_post(&post("10.0.0.5:8080", None, None, None), &r),
            Err(HttpError::Unauthorized)
        );
        assert_eq!(
            check_post(&post("10.0.0.5:8080", None, None, Some("Bearer wrong")), &r),
            Err(HttpError::Unauthorized)
        );
        assert!(check_post(
            &post(
                "10.0.0.5:8080",
                None,
                None,
                Some("Bearer 0123456789abcdefXYZ")
            ),
            &r
        )
        .is_ok());
        let closed = Exposure::Remote { token: None };
        assert_eq!(
            check_post(
                &post("10.0.0.5:8080", None, None, Some("Bearer x")),
                &closed
            ),
            Err(HttpError::Unauthorized)
        );
    }

    #[test]
    fn rebinding_hosts_are_refused_on_loopback() {
        for ok in [
            "127.0.0.1:8080",
            "localhost:8080",
            "[::1]:8080",
            "x",
            "myhost:80",
            "127.0.0.1",
        ] {
            assert!(host_is_local(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "attacker.com", "a.b"] {
            assert!(!host_is_local(bad), "{bad}");
        }
    }

    #[test]
    fn rate_limiter_refills() {
        let mut l = RateLimiter::new(2, 1);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let t = Instant::now();
        assert!(l.check(ip, t).is_ok());
        assert!(l.check(ip, t).is_ok());
        assert_eq!(
            l.check(ip, t),
            Err(HttpError::RateLimited { retry_after_s: 1 })
        );
        assert!(l.check(ip, t + Duration::from_millis(1100)).is_ok());
        // Another client has its own bucket.
        assert!(l.check([10, 0, 0, 1].into(), t).is_ok());
    }
}
