//! HTTP/1.1 on the wire: reading one bounded request within a deadline, writing one response.
//!
//! Every byte read here comes from outside, so parsing never indexes or panics: the head is
//! bounded by [`MAX_HEAD_BYTES`], the body by [`MAX_BODY_BYTES`], the header count by
//! [`MAX_HEADERS`], and the whole request by one deadline (not a per-read timeout, which a client
//! sending one byte per second would never trip).

use std::{
    io::{ErrorKind, Read, Write},
    net::TcpStream,
    time::{Duration, Instant},
};

use super::error::HttpError;
use crate::error::ErrorCode;

/// Largest request head (request line and headers).
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body (only `POST /api/backfill` takes one).
pub const MAX_BODY_BYTES: usize = 4 * 1024;
/// Most header lines.
pub const MAX_HEADERS: usize = 64;
const MAX_TARGET: usize = 2048;

/// One parsed request, keeping only the headers the routes use.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Request {
    /// Method, upper-case ASCII.
    pub method: String,
    /// Path without the query.
    pub path: String,
    /// The query string (after `?`), possibly empty.
    pub query: String,
    /// `Host`.
    pub host: Option<String>,
    /// `Origin`.
    pub origin: Option<String>,
    /// `Sec-Fetch-Site`.
    pub sec_fetch_site: Option<String>,
    /// `Authorization`.
    pub authorization: Option<String>,
    /// Body bytes (`Content-Length`; chunked bodies are refused).
    pub body: Vec<u8>,
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n")
}

/// Parses a request head (everything before the blank line).
///
/// # Errors
/// [`HttpError::BadRequest`] for anything malformed.
pub fn parse_head(head: &[u8]) -> Result<(Request, usize), HttpError> {
    let text = std::str::from_utf8(head)
        .map_err(|_| HttpError::BadRequest("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HttpError::BadRequest("malformed request line"));
    };
    if method.is_empty() || method.len() > 16 || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HttpError::BadRequest("malformed method"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HttpError::BadRequest("unsupported HTTP version"));
    }
    if !target.starts_with('/')
        || target.len() > MAX_TARGET
        || target.bytes().any(|b| b.is_ascii_control())
    {
        return Err(HttpError::BadRequest("malformed request target"));
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut req = Request {
        method: method.to_owned(),
        path: path.to_owned(),
        query: query.to_owned(),
        ..Request::default()
    };
    let mut content_length = 0usize;
    for (n, line) in lines.enumerate() {
        if n >= MAX_HEADERS {
            return Err(HttpError::BadRequest("too many headers"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(HttpError::BadRequest("malformed header line"));
        };
        if name.is_empty()
            || name
                .bytes()
                .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
        {
            return Err(HttpError::BadRequest("malformed header name"));
        }
        let value = value.trim();
        let slot = match name.to_ascii_lowercase().as_str() {
            "host" => &mut req.host,
            "origin" => &mut req.origin,
            "sec-fetch-site" => &mut req.sec_fetch_site,
            "authorization" => &mut req.authorization,
            "content-length" => {
                content_length = value
                    .parse()
                    .map_err(|_| HttpError::BadRequest("bad content-length"))?;
                continue;
            }
            "transfer-encoding" => {
                return Err(HttpError::BadRequest("transfer-encoding is not accepted"))
            }
            _ => continue,
        };
        if slot.is_some() {
            // Two Host (or Origin...) headers are a request-smuggling trick; refuse rather than pick.
            return Err(HttpError::BadRequest("duplicate header"));
        }
        *slot = Some(value.to_owned());
    }
    if content_length > MAX_BODY_BYTES {
        return Err(HttpError::TooLarge);
    }
    Ok((req, content_length))
}

fn read_some(
    stream: &mut TcpStream,
    into: &mut [u8],
    deadline: Instant,
) -> Result<usize, HttpError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(HttpError::Timeout);
        }
        // A zero timeout means "block forever" to the OS; the deadline check above rules it out.
        let _ = stream.set_read_timeout(Some(left.max(Duration::from_millis(1))));
        match stream.read(into) {
            Ok(0) => return Err(HttpError::Closed),
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if Instant::now() >= deadline {
                    return Err(HttpError::Timeout);
                }
            }
            Err(_) => return Err(HttpError::Closed),
        }
    }
}

/// Reads one request into `buf` (a worker's reusable buffer of at least
/// `MAX_HEAD_BYTES + MAX_BODY_BYTES`) before `deadline`.
///
/// # Errors
/// [`HttpError::TooLarge`], [`HttpError::Timeout`], [`HttpError::Closed`] or
/// [`HttpError::BadRequest`].
pub fn read_request(
    stream: &mut TcpStream,
    buf: &mut [u8],
    deadline: Instant,
) -> Result<Request, HttpError> {
    let mut len = 0usize;
    // Where the search for the blank line resumes: a client sending one byte per read must not
    // make each read rescan everything received so far.
    let mut scanned = 0usize;
    let head_end = loop {
        if let Some(end) = buf.get(scanned..len).and_then(find_head_end) {
            break scanned + end;
        }
        scanned = len.saturating_sub(3);
        if len >= MAX_HEAD_BYTES {
            return Err(HttpError::TooLarge);
        }
        let space = buf
            .get_mut(len..MAX_HEAD_BYTES)
            .ok_or(HttpError::TooLarge)?;
        len += read_some(stream, space, deadline)?;
    };
    let (mut req, content_length) = parse_head(buf.get(..head_end).unwrap_or(&[]))?;
    let body_start = head_end + 4;
    let body_end = body_start + content_length;
    if buf.len() < body_end {
        return Err(HttpError::TooLarge);
    }
    while len < body_end {
        let space = buf.get_mut(len..body_end).ok_or(HttpError::TooLarge)?;
        len += read_some(stream, space, deadline)?;
    }
    req.body = buf.get(body_start..body_end).unwrap_or(&[]).to_vec();
    Ok(req)
}

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Extra headers.
    pub headers: Vec<(&'static str, String)>,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response.
    pub fn json(status: u16, body: Vec<u8>) -> Self {
        Response {
            status,
            content_type: "application/json",
            headers: Vec::new(),
            body,
        }
    }

    /// A JSON response from a value.
    pub fn json_value(status: u16, v: &serde_json::Value) -> Self {
        Response::json(status, v.to_string().into_bytes())
    }

    /// A static asset.
    pub fn asset(content_type: &'static str, body: &'static str) -> Self {
        Response {
            status: 200,
            content_type,
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
        }
    }

    /// The answer to a refusal: its status, its code and message as JSON, plus the headers some
    /// refusals need (`Retry-After`, `WWW-Authenticate`).
    pub fn error(e: &HttpError) -> Self {
        let mut r = Response::json_value(
            e.status(),
            &serde_json::json!({"error": e.code(), "message": e.to_string()}),
        );
        match e {
            HttpError::RateLimited { retry_after_s } => {
                r.headers.push(("Retry-After", retry_after_s.to_string()))
            }
            HttpError::Unauthorized => r
                .headers
                .push(("WWW-Authenticate", "Bearer realm=\"layer1\"".to_owned())),
            _ => {}
        }
        r
    }
}

/// The reason phrase for a status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        413 => "Payload Too Large",
        421 => "Misdirected Request",
        429 => "Too Many Requests",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Content security policy of every response: the page loads only its own script, style and
/// API, and may not be framed (click-jacking of the backfill button).
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// Serialises `r` (head and body) into bytes.
pub fn encode(r: &Response) -> Vec<u8> {
    let mut out = Vec::with_capacity(256 + r.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Frame-Options: DENY\r\nReferrer-Policy: no-referrer\r\nContent-Security-Policy: {CSP}\r\nConnection: close\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    for (k, v) in &r.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(&r.body);
    out
}

/// Writes a response; errors mean the client went away, which is its business.
pub fn write_response(stream: &mut TcpStream, r: &Response) {
    let _ = stream.write_all(&encode(r)).and_then(|()| stream.flush());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_parse_and_refuse() {
        let (r, len) = parse_head(b"POST /api/backfill?x=1 HTTP/1.1\r\nHost: a:1\r\nOrigin: http://a:1\r\nContent-Length: 3").unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.query.as_str(), len),
            ("POST", "/api/backfill", "x=1", 3)
        );
        assert_eq!(r.origin.as_deref(), Some("http://a:1"));
        for bad in [
            &b"GET /"[..],
            b"GET / HTTP/2.0",
            b"get / HTTP/1.1",
            b"GET x HTTP/1.1",
            b"GET / HTTP/1.1 extra",
            b"GET / HTTP/1.1\r\nno colon",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b",
            b"GET / HTTP/1.1\r\nTransfer-Encoding: chunked",
            b"GET / HTTP/1.1\r\nContent-Length: -1",
            b"\xff\xfe / HTTP/1.1",
        ] {
            assert!(
                matches!(parse_head(bad), Err(HttpError::BadRequest(_))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 999999").unwrap_err(),
            HttpError::TooLarge
        );
    }
}
