//! The HTTP surface on the metrics thread: `GET /metrics` (Prometheus text), `GET /health`,
//! `GET /health/live`, `GET /health/ready`.
//!
//! A small blocking server on `std::net` (no async runtime): one thread accepts and serves each
//! request with a read timeout and a request-size bound, so a slow or hostile client can hold it
//! for at most the timeout and never reaches a feed or producer thread.

use std::{
    io::{ErrorKind, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    sync::Arc,
    thread::JoinHandle,
    time::Duration,
};

use crate::{error::Error, metrics::Metrics, shutdown::Shutdown};

/// Largest request head accepted.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(2);

/// A response ready to be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Response {
    fn json(status: u16, v: &serde_json::Value) -> Self {
        Response { status, content_type: "application/json", body: v.to_string().into_bytes() }
    }

    fn text(status: u16, body: &str) -> Self {
        Response { status, content_type: "text/plain; charset=utf-8", body: body.as_bytes().to_vec() }
    }
}

/// The state the routes read.
#[derive(Debug, Clone)]
pub struct HttpState {
    /// Process metrics.
    pub metrics: &'static Metrics,
    /// Engine version.
    pub version: &'static str,
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

/// Routes one request (method, path without query) to a response.
pub fn route(state: &HttpState, method: &str, path: &str) -> Response {
    let m = state.metrics;
    let kafka = m.kafka_up.get() == 1;
    let redis = m.redis_up.get() == 1;
    match (method, path) {
        ("GET", "/metrics") => Response { status: 200, content_type: prometheus::TEXT_FORMAT, body: m.render() },
        ("GET", "/health") => Response::json(
            200,
            &serde_json::json!({
                "status": if kafka { "ok" } else { "degraded" },
                "version": state.version,
                "kafka": if kafka { "up" } else { "down" },
                "redis": if redis { "up" } else { "down" },
            }),
        ),
        ("GET", "/health/live") => Response::json(200, &serde_json::json!({"status": "live"})),
        ("GET", "/health/ready") => {
            if kafka {
                Response::json(200, &serde_json::json!({"status": "ready"}))
            } else {
                Response::json(503, &serde_json::json!({"status": "not_ready", "reasons": ["kafka unreachable"]}))
            }
        }
        (_, "/metrics" | "/health" | "/health/live" | "/health/ready") => Response::text(405, "method not allowed\n"),
        _ => Response::text(404, "not found\n"),
    }
}

/// Reads one request head; `Err(status)` when it cannot be served.
fn read_request(stream: &mut TcpStream) -> Result<(String, String), u16> {
    let mut buf = [0u8; MAX_REQUEST_BYTES];
    let mut len = 0;
    loop {
        let Some(space) = buf.get_mut(len..) else { return Err(413) };
        if space.is_empty() {
            return Err(413);
        }
        match stream.read(space) {
            Ok(0) => return Err(400),
            Ok(n) => len += n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => return Err(408),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(_) => return Err(400),
        }
        let head = buf.get(..len).unwrap_or(&[]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            let text = std::str::from_utf8(head).map_err(|_| 400u16)?;
            let line = text.lines().next().unwrap_or("");
            let mut parts = line.split(' ');
            let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
                return Err(400);
            };
            if !version.starts_with("HTTP/1.") || !target.starts_with('/') {
                return Err(400);
            }
            let path = target.split('?').next().unwrap_or("/");
            return Ok((method.to_owned(), path.to_owned()));
        }
    }
}

fn write_response(stream: &mut TcpStream, r: &Response) {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nConnection: close\r\n\r\n",
        r.status,
        reason(r.status),
        r.content_type,
        r.body.len()
    );
    let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&r.body)).and_then(|()| stream.flush());
}

fn serve(state: &HttpState, mut stream: TcpStream) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(READ_TIMEOUT));
    let response = match read_request(&mut stream) {
        Ok((method, path)) => route(state, &method, &path),
        Err(status) => Response::text(status, "bad request\n"),
    };
    write_response(&mut stream, &response);
}

/// A running HTTP thread.
#[derive(Debug)]
pub struct HttpServer {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// The thread.
    pub join: JoinHandle<()>,
}

/// Binds `addr` and serves until `shutdown`.
///
/// # Errors
/// [`Error::HttpBind`] when the address cannot be bound; [`Error::Spawn`] if the thread fails.
pub fn start(addr: SocketAddr, state: HttpState, shutdown: Shutdown) -> Result<HttpServer, Error> {
    let listener = TcpListener::bind(addr).map_err(|e| Error::HttpBind { addr, kind: e.kind() })?;
    let bound = listener.local_addr().map_err(|e| Error::HttpBind { addr, kind: e.kind() })?;
    listener.set_nonblocking(true).map_err(|e| Error::HttpBind { addr, kind: e.kind() })?;
    let state = Arc::new(state);
    let join = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            log::info!(event = "http_listening", addr = bound.to_string(); "serving /metrics and /health on http://{bound}");
            while !shutdown.is_triggered() {
                match listener.accept() {
                    Ok((stream, _)) => serve(&state, stream),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                    Err(e) => {
                        log::warn!(event = "http_accept_failed"; "{e}");
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            }
        })
        .map_err(|e| Error::Spawn { name: "http", kind: e.kind() })?;
    Ok(HttpServer { addr: bound, join })
}
