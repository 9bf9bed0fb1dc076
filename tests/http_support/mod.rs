//! Helpers shared by the http tests: a raw HTTP/1.1 client (so hostile requests can be sent
//! byte for byte), servers on 127.0.0.1:0 with their own metrics and status registry, and a
//! guard that stops and joins them.
// Test code: a failed expectation is the test failing, with its message.
#![allow(
    dead_code,
    unreachable_pub,
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    sync::OnceLock,
    time::Duration,
};

use layer1::{
    http::{self, HttpOptions, HttpServer, HttpState},
    metrics::Metrics,
    shutdown::Shutdown,
    status::StatusRegistry,
};

/// Makes sure Redis answers at `REDIS_URL` (starting the project's local one if needed); these
/// tests need Redis only, not the Kafka broker.
pub fn redis_service() {
    static UP: OnceLock<()> = OnceLock::new();
    UP.get_or_init(|| {
        let script =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/redis/start.sh");
        let ok = std::process::Command::new("bash")
            .arg(script)
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "scripts/redis/start.sh failed");
    });
}

/// A parsed response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("json body ({e}): {}", self.body))
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }
}

/// Parses whatever the server sent before closing.
pub fn parse(raw: &[u8]) -> Reply {
    let text = String::from_utf8_lossy(raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map_or((text.clone(), String::new()), |(h, b)| {
            (h.to_owned(), b.to_owned())
        });
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Reply { status, head, body }
}

/// Sends `raw` and reads until the server closes (at most 10 s).
pub fn send(addr: SocketAddr, raw: &[u8]) -> Reply {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    s.write_all(raw).expect("write");
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    parse(&buf)
}

/// `GET path` with a loopback Host.
pub fn get(addr: SocketAddr, path: &str) -> Reply {
    send(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes(),
    )
}

/// `POST path` with extra header lines (each ending in \r\n) and a body.
pub fn post(addr: SocketAddr, path: &str, headers: &str, body: &str) -> Reply {
    send(
        addr,
        format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{headers}\r\n{body}", body.len())
            .as_bytes(),
    )
}

/// A server with its own registries, stopped and joined on drop.
pub struct TestServer {
    pub addr: SocketAddr,
    pub metrics: &'static Metrics,
    pub status: &'static StatusRegistry,
    shutdown: Shutdown,
    join: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    /// Starts a server on 127.0.0.1:0; `configure` adjusts the options (the status registry is
    /// already this server's own).
    pub fn start(configure: impl FnOnce(&mut HttpOptions)) -> TestServer {
        let metrics: &'static Metrics = Box::leak(Box::new(Metrics::new().expect("metrics")));
        let status: &'static StatusRegistry = Box::leak(Box::new(StatusRegistry::new()));
        let addr: SocketAddr = "127.0.0.1:0".parse().expect("addr");
        let mut opts = HttpOptions::for_addr(addr);
        opts.status = status;
        configure(&mut opts);
        let shutdown = Shutdown::new();
        let HttpServer { addr, join } = http::start_with(
            addr,
            HttpState {
                metrics,
                version: "9.9.9-test",
            },
            opts,
            shutdown.clone(),
        )
        .expect("http");
        TestServer {
            addr,
            metrics,
            status,
            shutdown,
            join: Some(join),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.trigger();
        if let Some(j) = self.join.take() {
            let _ = j.join();
        }
    }
}
