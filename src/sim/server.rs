//! The simulator thread: one `mio` loop serving the Kite, Upstox and authorize listeners and
//! every accepted connection, generating ticks on a fixed period and applying faults.

use std::{
    cell::RefCell,
    collections::{HashMap, HashSet},
    io::{self, ErrorKind, Read, Write},
    net::SocketAddr,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use bytes::Bytes;
use crossbeam_channel::Receiver;
use mio::{
    net::{TcpListener, TcpStream},
    Events, Interest, Poll, Token, Waker,
};
use tungstenite::{
    handshake::{
        server::{Callback, ErrorResponse, Request, Response, ServerHandshake},
        HandshakeError, MidHandshake,
    },
    protocol::{frame::coding::CloseCode, CloseFrame, WebSocketConfig},
    Error as WsError, Message, WebSocket,
};

use super::{
    market::Market, Fault, ScheduledFault, SimCommand, SimConfig, SimConnStats, SimError,
    SimHandle, SimStats, SubRequest, Target,
};
use crate::{
    feed::backoff::SplitMix64,
    parsers::{
        kite::{encode_frame, encode_packet, KiteMode},
        upstox::{encode_feed_response, encode_market_info, FeedType},
        MarketStatus,
    },
    tick::{Mode, Tick},
    vendor::Vendor,
};

const WAKER: Token = Token(0);
const KITE_L: Token = Token(1);
const UPSTOX_L: Token = Token(2);
const HTTP_L: Token = Token(3);
const TLS_L: Token = Token(4);
const ANGEL_L: Token = Token(5);
const DHAN_L: Token = Token(6);
const JSON_L: Token = Token(7);
const FIRST_CONN: usize = 16;

/// A server-side stream: plain TCP or rustls over TCP (both non-blocking; rustls surfaces the
/// socket's `WouldBlock` unchanged, so tungstenite's handshake resumes the same way).
pub(crate) enum SimStream {
    Plain(TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ServerConnection, TcpStream>>),
}

impl SimStream {
    fn tcp(&mut self) -> &mut TcpStream {
        match self {
            SimStream::Plain(s) => s,
            SimStream::Tls(s) => &mut s.sock,
        }
    }
}

impl Read for SimStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            SimStream::Plain(s) => s.read(buf),
            SimStream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for SimStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            SimStream::Plain(s) => s.write(buf),
            SimStream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            SimStream::Plain(s) => s.flush(),
            SimStream::Tls(s) => s.flush(),
        }
    }
}

struct Refusal {
    status: u16,
    retry_after_s: Option<u32>,
    remaining: u32,
}

/// Credentials and pending refusals, shared with the handshake callbacks (same thread).
struct Auth {
    kite_key: String,
    kite_token: String,
    upstox_token: String,
    angel: [String; 4],
    dhan_client: String,
    dhan_token: String,
    /// JSON feed auth header name and accepted value.
    json_auth: (String, String),
    /// Whether the last Dhan upgrade carried valid credentials (Dhan accepts the upgrade and
    /// then sends a disconnect packet, as the vendor does for a bad token).
    dhan_last_ok: bool,
    upstox_codes: HashSet<String>,
    refusals: HashMap<Vendor, Refusal>,
    refused: u64,
}

impl Auth {
    fn take_refusal(&mut self, vendor: Vendor) -> Option<(u16, Option<u32>)> {
        let r = self.refusals.get_mut(&vendor)?;
        if r.remaining == 0 {
            return None;
        }
        r.remaining -= 1;
        self.refused += 1;
        Some((r.status, r.retry_after_s))
    }
}

fn error_response(status: u16, retry_after_s: Option<u32>, body: &str) -> ErrorResponse {
    let mut b = tungstenite::http::Response::builder().status(status);
    if let Some(s) = retry_after_s {
        b = b.header("Retry-After", s.to_string());
    }
    b.body(Some(body.to_owned())).unwrap_or_else(|_| {
        let mut r = tungstenite::http::Response::new(Some(body.to_owned()));
        *r.status_mut() = tungstenite::http::StatusCode::FORBIDDEN;
        r
    })
}

fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The upgrade-request check: scheduled refusals first, then credentials.
struct Gate {
    vendor: Vendor,
    auth: Rc<RefCell<Auth>>,
}

impl Callback for Gate {
    fn on_request(self, request: &Request, response: Response) -> Result<Response, ErrorResponse> {
        let mut a = self.auth.borrow_mut();
        // Upstox refusals apply at the authorize endpoint, where its clients are turned away.
        if self.vendor != Vendor::Upstox {
            if let Some((status, ra)) = a.take_refusal(self.vendor) {
                return Err(error_response(status, ra, "refused by fault injection"));
            }
        }
        let query = request.uri().query().unwrap_or("");
        let ok = match self.vendor {
            Vendor::Kite => {
                query_param(query, "api_key") == Some(a.kite_key.as_str())
                    && query_param(query, "access_token") == Some(a.kite_token.as_str())
            }
            Vendor::Angel => {
                let h = |n: &str| {
                    request
                        .headers()
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned()
                };
                let jwt = h("authorization");
                let jwt = jwt.strip_prefix("Bearer ").unwrap_or(&jwt);
                [
                    jwt,
                    &h("x-api-key"),
                    &h("x-client-code"),
                    &h("x-feed-token"),
                ] == [&a.angel[0], &a.angel[1], &a.angel[2], &a.angel[3]].map(String::as_str)
            }
            Vendor::Json => request
                .headers()
                .get(a.json_auth.0.as_str())
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v == a.json_auth.1),
            Vendor::Dhan => {
                a.dhan_last_ok = query_param(query, "token") == Some(a.dhan_token.as_str())
                    && query_param(query, "clientId") == Some(a.dhan_client.as_str())
                    && query_param(query, "version") == Some("2");
                // Accepted at the upgrade either way: Dhan reports a bad token in-band.
                true
            }
            _ => query_param(query, "code").is_some_and(|c| a.upstox_codes.remove(c)),
        };
        if ok {
            Ok(response)
        } else if self.vendor == Vendor::Angel {
            a.refused += 1;
            let mut r = error_response(401, None, "Unauthorized");
            if let Ok(v) = "Invalid Headers".parse() {
                r.headers_mut().insert("x-error-message", v);
            }
            Err(r)
        } else {
            a.refused += 1;
            Err(error_response(
                403,
                None,
                "TokenException: invalid credentials",
            ))
        }
    }
}

enum Phase {
    Handshake(Box<MidHandshake<ServerHandshake<SimStream, Gate>>>),
    Open(Box<WebSocket<SimStream>>),
}

struct SConn {
    id: u64,
    vendor: Vendor,
    phase: Phase,
    subs: Vec<(usize, Mode)>,
    sub_pos: HashMap<usize, usize>,
    cursor: usize,
    owed: f64,
    last_gen: Instant,
    last_sent: Instant,
    stalled_until: Option<Instant>,
    slow_until: Option<Instant>,
    backlogged: bool,
    record: Option<usize>,
}

struct HttpConn {
    stream: TcpStream,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    written: usize,
}

struct Sim {
    cfg: SimConfig,
    poll: Poll,
    rx: Receiver<SimCommand>,
    kite_l: TcpListener,
    upstox_l: TcpListener,
    http_l: TcpListener,
    tls_l: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
    angel_l: TcpListener,
    dhan_l: TcpListener,
    json_l: TcpListener,
    json_map: Option<crate::parsers::json::JsonMapping>,
    upstox_addr: SocketAddr,
    auth: Rc<RefCell<Auth>>,
    market: Market,
    ws: HashMap<u64, SConn>,
    http: HashMap<u64, HttpConn>,
    records: Vec<SimConnStats>,
    next_id: u64,
    rng: SplitMix64,
    started: Instant,
    next_fault: Option<Instant>,
    faults: Vec<(u64, String)>,
    authorize_calls: u64,
    ws_config: WebSocketConfig,
    pkt: Vec<u8>,
    ranges: Vec<(usize, usize)>,
    ticks: Vec<Tick>,
    stop: bool,
    /// Segment statuses set through [`SimHandle::set_market_status`]; `None` until then, when the
    /// greeting follows the built-in exchange calendar.
    market_info: Option<Vec<(String, MarketStatus)>>,
}

fn bind(port: u16) -> Result<TcpListener, SimError> {
    Ok(TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port)))?)
}

fn tls_config() -> Result<(Arc<rustls::ServerConfig>, Vec<u8>), SimError> {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .map_err(|e| SimError::Tls(e.to_string()))?;
    let pem = ck.cert.pem().into_bytes();
    let cert = ck.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ck.signing_key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| SimError::Tls(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(vec![cert], key)
    .map_err(|e| SimError::Tls(e.to_string()))?;
    Ok((Arc::new(cfg), pem))
}

pub(super) fn start(cfg: SimConfig) -> Result<SimHandle, SimError> {
    let poll = Poll::new()?;
    let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
    let mut kite_l = bind(cfg.kite_port)?;
    let mut upstox_l = bind(cfg.upstox_port)?;
    let mut http_l = bind(cfg.http_port)?;
    poll.registry()
        .register(&mut kite_l, KITE_L, Interest::READABLE)?;
    poll.registry()
        .register(&mut upstox_l, UPSTOX_L, Interest::READABLE)?;
    poll.registry()
        .register(&mut http_l, HTTP_L, Interest::READABLE)?;
    let (tls_l, ca_pem) = if cfg.tls {
        let (server_cfg, pem) = tls_config()?;
        let mut l = bind(cfg.tls_port)?;
        poll.registry()
            .register(&mut l, TLS_L, Interest::READABLE)?;
        (Some((l, server_cfg)), Some(pem))
    } else {
        (None, None)
    };
    let mut angel_l = bind(cfg.angel_port)?;
    let mut dhan_l = bind(cfg.dhan_port)?;
    poll.registry()
        .register(&mut angel_l, ANGEL_L, Interest::READABLE)?;
    poll.registry()
        .register(&mut dhan_l, DHAN_L, Interest::READABLE)?;
    let angel_addr = angel_l.local_addr()?;
    let dhan_addr = dhan_l.local_addr()?;
    let mut json_l = bind(cfg.json_port)?;
    poll.registry()
        .register(&mut json_l, JSON_L, Interest::READABLE)?;
    let json_addr = json_l.local_addr()?;
    let kite_addr = kite_l.local_addr()?;
    let upstox_addr = upstox_l.local_addr()?;
    let http_addr = http_l.local_addr()?;
    let kite_tls_addr = match &tls_l {
        Some((l, _)) => Some(l.local_addr()?),
        None => None,
    };
    let (tx, rx) = crossbeam_channel::bounded(1024);
    let join = std::thread::Builder::new()
        .name("sim".to_owned())
        .spawn(move || {
            let auth = Rc::new(RefCell::new(Auth {
                kite_key: cfg.kite_api_key.clone(),
                kite_token: cfg.kite_access_token.clone(),
                upstox_token: cfg.upstox_access_token.clone(),
                angel: [
                    cfg.angel_jwt.clone(),
                    cfg.angel_api_key.clone(),
                    cfg.angel_client_code.clone(),
                    cfg.angel_feed_token.clone(),
                ],
                dhan_client: cfg.dhan_client_id.clone(),
                dhan_token: cfg.dhan_access_token.clone(),
                json_auth: (
                    cfg.json_auth_header.to_ascii_lowercase(),
                    cfg.json_auth_value.clone(),
                ),
                dhan_last_ok: false,
                upstox_codes: HashSet::new(),
                refusals: HashMap::new(),
                refused: 0,
            }));
            let now = Instant::now();
            let next_fault = cfg
                .fault_schedule
                .as_ref()
                .map(|s| now + Duration::from_millis(s.every_ms.max(1)));
            let mut sim = Sim {
                market: Market::new(cfg.seed),
                rng: SplitMix64::new(cfg.seed.wrapping_mul(31).wrapping_add(7)),
                ws_config: WebSocketConfig::default().max_message_size(Some(1 << 20)),
                cfg,
                poll,
                rx,
                kite_l,
                upstox_l,
                http_l,
                tls_l,
                angel_l,
                dhan_l,
                json_l,
                json_map: super::json::mapping(),
                upstox_addr,
                auth,
                ws: HashMap::new(),
                http: HashMap::new(),
                records: Vec::new(),
                next_id: 0,
                started: now,
                next_fault,
                faults: Vec::new(),
                authorize_calls: 0,
                pkt: Vec::new(),
                ranges: Vec::new(),
                ticks: Vec::new(),
                stop: false,
                market_info: None,
            };
            sim.run();
        })?;
    Ok(SimHandle {
        kite_addr,
        upstox_addr,
        http_addr,
        kite_tls_addr,
        ca_pem,
        angel_addr,
        dhan_addr,
        json_addr,
        tx,
        waker,
        join: Some(join),
    })
}

fn now_ms() -> i64 {
    i64::try_from(crate::clock::now_unix_ms()).unwrap_or(i64::MAX)
}

impl Sim {
    fn run(&mut self) {
        log::info!(event = "sim_start"; "simulator started");
        let mut events = Events::with_capacity(256);
        while !self.stop {
            let streaming = self
                .ws
                .values()
                .any(|c| matches!(c.phase, Phase::Open(_)) && !c.subs.is_empty());
            let timeout = if streaming {
                Duration::from_millis(self.cfg.tick_interval_ms.max(1))
            } else {
                Duration::from_millis(20)
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!(event = "sim_poll_error"; "{e}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            // Commands first: a fault injected before a client connects (a refusal) must be in
            // force when that client's connection event is handled in this same turn.
            self.commands();
            for ev in events.iter() {
                match ev.token() {
                    WAKER => {}
                    KITE_L => self.accept(Vendor::Kite, false),
                    UPSTOX_L => self.accept(Vendor::Upstox, false),
                    TLS_L => self.accept(Vendor::Kite, true),
                    ANGEL_L => self.accept(Vendor::Angel, false),
                    DHAN_L => self.accept(Vendor::Dhan, false),
                    JSON_L => self.accept(Vendor::Json, false),
                    HTTP_L => self.accept_http(),
                    Token(t) => {
                        let id = (t - FIRST_CONN) as u64;
                        if self.http.contains_key(&id) {
                            self.service_http(id);
                        } else {
                            self.service_ws(id);
                        }
                    }
                }
            }
            self.scheduled_faults();
            self.generate();
        }
        log::info!(event = "sim_stop"; "simulator stopped");
    }

    fn new_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn accept(&mut self, vendor: Vendor, tls: bool) {
        // Bounded: a listener backlog is finite; stop at WouldBlock.
        for _ in 0..1024 {
            let listener = match (vendor, tls) {
                (_, true) => match &self.tls_l {
                    Some((l, _)) => l,
                    None => return,
                },
                (Vendor::Kite, false) => &self.kite_l,
                (Vendor::Angel, false) => &self.angel_l,
                (Vendor::Dhan, false) => &self.dhan_l,
                (Vendor::Json, false) => &self.json_l,
                _ => &self.upstox_l,
            };
            let (mut stream, _) = match listener.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) => {
                    log::warn!(event = "sim_accept_error"; "{e}");
                    return;
                }
            };
            let _ = stream.set_nodelay(true);
            let id = self.new_id();
            let token = Token(FIRST_CONN + id as usize);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            let stream = match (&self.tls_l, tls) {
                (Some((_, cfg)), true) => match rustls::ServerConnection::new(Arc::clone(cfg)) {
                    Ok(c) => SimStream::Tls(Box::new(rustls::StreamOwned::new(c, stream))),
                    Err(_) => continue,
                },
                _ => SimStream::Plain(stream),
            };
            let gate = Gate {
                vendor,
                auth: Rc::clone(&self.auth),
            };
            let r = tungstenite::accept_hdr_with_config(stream, gate, Some(self.ws_config));
            let now = Instant::now();
            let conn = SConn {
                id,
                vendor,
                phase: Phase::Handshake(Box::new(match r {
                    Ok(ws) => {
                        self.open(id, vendor, ws);
                        continue;
                    }
                    Err(HandshakeError::Interrupted(mid)) => mid,
                    Err(HandshakeError::Failure(_)) => continue,
                })),
                subs: Vec::new(),
                sub_pos: HashMap::new(),
                cursor: 0,
                owed: 0.0,
                last_gen: now,
                last_sent: now,
                stalled_until: None,
                slow_until: None,
                backlogged: false,
                record: None,
            };
            self.ws.insert(id, conn);
        }
    }

    fn open(&mut self, id: u64, vendor: Vendor, mut ws: WebSocket<SimStream>) {
        let rec = self.records.len();
        self.records.push(SimConnStats {
            id,
            vendor,
            open: true,
            requests: Vec::new(),
            subscribed: 0,
            ticks_sent: 0,
            frames_sent: 0,
        });
        // Greeting: Kite clients see a JSON text message; Upstox clients get market_info first;
        // a Dhan client with bad credentials gets the disconnect packet (809) and is closed.
        let dhan_refused = vendor == Vendor::Dhan && !self.auth.borrow().dhan_last_ok;
        let greeting = match vendor {
            Vendor::Kite => {
                Message::text(r#"{"type":"message","data":"layer1 simulator: connected"}"#)
            }
            Vendor::Angel => Message::Pong(Bytes::new()),
            Vendor::Dhan if dhan_refused => {
                self.auth.borrow_mut().refused += 1;
                Message::binary(super::vendors::dhan_disconnect(809))
            }
            Vendor::Dhan => Message::Pong(Bytes::new()),
            Vendor::Json => Message::text(r#"{"type":"welcome","data":"layer1 simulator"}"#),
            _ => Message::binary(self.market_info_frame()),
        };
        let _ = ws.write(greeting);
        if dhan_refused {
            let _ = ws.flush();
            let _ = ws.close(Some(CloseFrame {
                code: CloseCode::Policy,
                reason: "authentication failed".into(),
            }));
            let _ = ws.flush();
        }
        let backlogged =
            matches!(ws.flush(), Err(WsError::Io(ref e)) if e.kind() == ErrorKind::WouldBlock);
        let now = Instant::now();
        self.ws.insert(
            id,
            SConn {
                id,
                vendor,
                phase: Phase::Open(Box::new(ws)),
                subs: Vec::new(),
                sub_pos: HashMap::new(),
                cursor: 0,
                owed: 0.0,
                last_gen: now,
                last_sent: now,
                stalled_until: None,
                slow_until: None,
                backlogged,
                record: Some(rec),
            },
        );
        log::info!(event = "sim_conn_open", vendor = vendor.as_str(), conn = id; "client connected");
        if dhan_refused {
            self.close(id);
        }
    }

    fn close(&mut self, id: u64) {
        if let Some(mut c) = self.ws.remove(&id) {
            let stream = match &mut c.phase {
                Phase::Handshake(m) => m.get_mut().get_mut().tcp(),
                Phase::Open(ws) => ws.get_mut().tcp(),
            };
            let _ = self.poll.registry().deregister(stream);
            if let Some(r) = c.record.and_then(|r| self.records.get_mut(r)) {
                r.open = false;
                r.subscribed = 0;
            }
        }
    }

    fn service_ws(&mut self, id: u64) {
        let Some(mut c) = self.ws.remove(&id) else {
            return;
        };
        c.phase = match c.phase {
            Phase::Handshake(mid) => match mid.handshake() {
                Ok(ws) => {
                    self.open(id, c.vendor, ws);
                    return;
                }
                Err(HandshakeError::Interrupted(mid)) => Phase::Handshake(Box::new(mid)),
                // Refused (the error response was written) or broken: drop the socket.
                Err(HandshakeError::Failure(_)) => return,
            },
            open => open,
        };
        let alive = self.read_requests(&mut c);
        let id = c.id;
        self.ws.insert(id, c);
        if !alive {
            self.close(id);
        }
    }

    /// Flushes a backlog and reads client requests; false when the connection is gone.
    fn read_requests(&mut self, c: &mut SConn) -> bool {
        let now = Instant::now();
        if c.stalled_until.is_some_and(|t| now < t) || c.slow_until.is_some_and(|t| now < t) {
            return true;
        }
        let Phase::Open(ws) = &mut c.phase else {
            return true;
        };
        if c.backlogged {
            match ws.flush() {
                Ok(()) => c.backlogged = false,
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => return false,
            }
        }
        let mut replies: Vec<Message> = Vec::new();
        for _ in 0..1024 {
            match ws.read() {
                Ok(Message::Text(t)) => self.on_request(
                    c.vendor,
                    c.record,
                    &mut c.subs,
                    &mut c.sub_pos,
                    t.as_bytes(),
                    &mut replies,
                ),
                Ok(Message::Binary(b)) => self.on_request(
                    c.vendor,
                    c.record,
                    &mut c.subs,
                    &mut c.sub_pos,
                    &b,
                    &mut replies,
                ),
                Ok(_) => {}
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => break,
                Err(_) => return false,
            }
        }
        if let Some(r) = c.record.and_then(|r| self.records.get_mut(r)) {
            r.subscribed = c.subs.len();
        }
        for m in replies {
            if let Message::Binary(ref b) = m {
                // Upstox initial_feed snapshot: counted as sent ticks.
                if let Some(r) = c.record.and_then(|r| self.records.get_mut(r)) {
                    r.frames_sent += 1;
                    let _ = b;
                }
            }
            match ws.write(m) {
                Ok(()) => {}
                Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => c.backlogged = true,
                Err(_) => return false,
            }
        }
        match ws.flush() {
            Ok(()) => true,
            Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                c.backlogged = true;
                true
            }
            Err(_) => false,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_request(
        &mut self,
        vendor: Vendor,
        record: Option<usize>,
        subs: &mut Vec<(usize, Mode)>,
        sub_pos: &mut HashMap<usize, usize>,
        raw: &[u8],
        replies: &mut Vec<Message>,
    ) {
        if vendor == Vendor::Angel && raw.trim_ascii() == b"ping" {
            replies.push(Message::text("pong"));
            return;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(raw) else {
            replies.push(Message::text(r#"{"type":"error","data":"invalid json"}"#));
            return;
        };
        let now = now_ms();
        let mut forced_mode: Option<Mode> = None;
        let mut vendor_keys: Option<Vec<String>> = None;
        let (action, mode, keys): (String, Option<String>, Vec<String>) = match vendor {
            Vendor::Kite => {
                let action = v.get("a").and_then(|a| a.as_str()).unwrap_or("").to_owned();
                let (mode, list) = if action == "mode" {
                    let arr = v.get("v").and_then(|x| x.as_array());
                    (
                        arr.and_then(|a| a.first())
                            .and_then(|m| m.as_str())
                            .map(str::to_owned),
                        arr.and_then(|a| a.get(1)).and_then(|l| l.as_array()),
                    )
                } else {
                    (None, v.get("v").and_then(|x| x.as_array()))
                };
                let keys = list
                    .map(|l| {
                        l.iter()
                            .filter_map(|t| t.as_u64())
                            .map(|t| t.to_string())
                            .collect()
                    })
                    .unwrap_or_default();
                (action, mode, keys)
            }
            Vendor::Angel | Vendor::Dhan | Vendor::Json => {
                let req = match vendor {
                    Vendor::Angel => super::vendors::angel_request(&v),
                    Vendor::Json => super::json::request(&v),
                    _ => super::vendors::dhan_request(&v),
                };
                let Some(r) = req else {
                    if vendor == Vendor::Angel {
                        replies.push(Message::text(
                            r#"{"correlationID":"","errorCode":"E1001","errorMessage":"Invalid Request Payload."}"#,
                        ));
                    }
                    if vendor == Vendor::Json {
                        replies.push(Message::text(r#"{"type":"error","data":"bad request"}"#));
                    }
                    return;
                };
                if vendor == Vendor::Json {
                    replies.push(Message::text(format!(
                        r#"{{"type":"ack","action":"{}","count":{}}}"#,
                        r.action,
                        r.keys.len()
                    )));
                }
                forced_mode = Some(r.mode_value);
                vendor_keys = Some(r.keys.iter().map(|k| k.0.clone()).collect());
                (r.action, r.mode, r.keys.into_iter().map(|k| k.1).collect())
            }
            _ => {
                let action = v
                    .get("method")
                    .and_then(|a| a.as_str())
                    .unwrap_or("")
                    .to_owned();
                let data = v.get("data");
                let mode = data
                    .and_then(|d| d.get("mode"))
                    .and_then(|m| m.as_str())
                    .map(str::to_owned);
                let keys = data
                    .and_then(|d| d.get("instrumentKeys"))
                    .and_then(|k| k.as_array())
                    .map(|l| {
                        l.iter()
                            .filter_map(|k| k.as_str())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                (action, mode, keys)
            }
        };
        let tick_mode = |m: Option<&str>| match (forced_mode, m) {
            (Some(f), _) => f,
            (None, m) => match m {
                Some("ltp" | "ltpc") => Mode::Ltp,
                Some("quote") => Mode::Quote,
                Some("option_greeks") => Mode::Greeks,
                Some(_) => Mode::Full,
                // Kite's default after subscribe is quote; Upstox's is ltpc.
                None if vendor == Vendor::Kite => Mode::Quote,
                None => Mode::Ltp,
            },
        };
        let mut snapshot: Vec<usize> = Vec::new();
        match action.as_str() {
            "subscribe" | "sub" | "mode" | "change_mode" => {
                let m = tick_mode(mode.as_deref());
                let subscribing = action != "mode" && action != "change_mode";
                for k in &keys {
                    let Some(i) = self.market.get_or_create(vendor, k, now) else {
                        continue;
                    };
                    match sub_pos.get(&i) {
                        // A plain Kite subscribe keeps an earlier mode; everything else sets it.
                        Some(&p) if !(vendor == Vendor::Kite && action == "subscribe") => {
                            if let Some(s) = subs.get_mut(p) {
                                s.1 = m;
                            }
                        }
                        Some(_) => {}
                        None if subscribing => {
                            sub_pos.insert(i, subs.len());
                            subs.push((i, m));
                            snapshot.push(i);
                        }
                        None => {}
                    }
                }
            }
            "unsubscribe" | "unsub" => {
                for k in &keys {
                    let Some(i) = self.market.get_or_create(vendor, k, now) else {
                        continue;
                    };
                    if let Some(p) = sub_pos.remove(&i) {
                        subs.swap_remove(p);
                        if let Some((moved, _)) = subs.get(p) {
                            sub_pos.insert(*moved, p);
                        }
                    }
                }
            }
            _ => {
                if vendor == Vendor::Kite {
                    replies.push(Message::text(r#"{"type":"error","data":"unknown action"}"#));
                }
            }
        }
        if let Some(r) = record.and_then(|r| self.records.get_mut(r)) {
            r.requests.push(SubRequest {
                action,
                mode,
                instruments: vendor_keys.unwrap_or(keys),
            });
        }
        // Upstox answers a subscription with an initial_feed snapshot of the new instruments.
        if vendor == Vendor::Upstox && !snapshot.is_empty() {
            self.ticks.clear();
            for i in &snapshot {
                if let Some(ins) = self.market.instruments.get_mut(*i) {
                    ins.ticks_sent += 1;
                    let mut t = ins.tick;
                    t.mode = subs
                        .get(sub_pos.get(i).copied().unwrap_or(usize::MAX))
                        .map_or(Mode::Ltp, |s| s.1);
                    self.ticks.push(t);
                }
            }
            if let Some(r) = record.and_then(|r| self.records.get_mut(r)) {
                r.ticks_sent += self.ticks.len() as u64;
            }
            let mut buf = Vec::new();
            encode_feed_response(&self.ticks, FeedType::InitialFeed, now, &mut buf);
            replies.push(Message::binary(buf));
        }
    }

    /// Sends the ticks each streaming connection is owed, and heartbeats to idle ones.
    fn generate(&mut self) {
        let now = Instant::now();
        let ms = now_ms();
        let rate = self.cfg.ticks_per_sec as f64;
        let max_pk = self.cfg.max_packets_per_frame.clamp(1, 65_535);
        let hb = Duration::from_millis(self.cfg.heartbeat_ms.max(1));
        let mut dead: Vec<u64> = Vec::new();
        for c in self.ws.values_mut() {
            let Phase::Open(ws) = &mut c.phase else {
                continue;
            };
            let elapsed = now.saturating_duration_since(c.last_gen).as_secs_f64();
            c.last_gen = now;
            if c.stalled_until.is_some_and(|t| now < t) {
                c.owed = 0.0;
                continue;
            }
            c.stalled_until = None;
            if c.backlogged {
                // A slow client: nothing more is generated until the socket drains, so the
                // rate adapts to the reader instead of buffering without bound.
                c.owed = 0.0;
                continue;
            }
            let mut wrote = false;
            if !c.subs.is_empty() {
                // At most 50 ms of catch-up after a pause, so a burst stays bounded.
                c.owed = (c.owed + rate * elapsed).min((rate * 0.05).max(max_pk as f64));
                // Angel sends one packet per frame.
                let max_pk = if c.vendor == Vendor::Angel { 1 } else { max_pk };
                while c.owed >= 1.0 {
                    let n = (c.owed as usize).min(max_pk);
                    let frame = build_frame(
                        c.vendor,
                        &c.subs,
                        &mut c.cursor,
                        n,
                        &mut self.market,
                        &mut self.pkt,
                        &mut self.ranges,
                        &mut self.ticks,
                        ms,
                    );
                    let frame = if c.vendor == Vendor::Json {
                        Message::text(super::json::encode_frame(
                            self.json_map.as_ref(),
                            &self.ticks,
                        ))
                    } else {
                        Message::Binary(Bytes::from(frame))
                    };
                    c.owed -= n as f64;
                    if let Some(r) = c.record.and_then(|r| self.records.get_mut(r)) {
                        r.ticks_sent += n as u64;
                        r.frames_sent += 1;
                    }
                    wrote = true;
                    match ws.write(frame) {
                        Ok(()) => {}
                        Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => {
                            c.backlogged = true;
                            break;
                        }
                        Err(_) => {
                            dead.push(c.id);
                            break;
                        }
                    }
                }
            }
            if !wrote && now.saturating_duration_since(c.last_sent) >= hb {
                let beat = match c.vendor {
                    Vendor::Kite => Message::binary(vec![0u8]),
                    _ => Message::Ping(Bytes::new()),
                };
                let _ = ws.write(beat);
                wrote = true;
            }
            if wrote {
                c.last_sent = now;
                match ws.flush() {
                    Ok(()) => {}
                    Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => c.backlogged = true,
                    Err(_) => dead.push(c.id),
                }
            }
        }
        for id in dead {
            self.close(id);
        }
        // Connections whose stall or slow-read ended may have requests waiting with no new
        // event (edge-triggered): read them now.
        let resumed: Vec<u64> = self
            .ws
            .values_mut()
            .filter_map(|c| {
                let ended = c.slow_until.is_some_and(|t| now >= t);
                if ended {
                    c.slow_until = None;
                }
                ended.then_some(c.id)
            })
            .collect();
        for id in resumed {
            self.service_ws(id);
        }
    }

    /// The Upstox `market_info` frame: the statuses set by the test, else what the built-in
    /// exchange calendar says now (so an engine against the simulator sees the real session).
    fn market_info_frame(&self) -> Vec<u8> {
        let mut buf = Vec::new();
        let set: Vec<(&str, MarketStatus)> = match &self.market_info {
            Some(v) => v.iter().map(|(s, st)| (s.as_str(), *st)).collect(),
            None => {
                let st = match crate::calendar::Calendar::builtin().status(now_ms()) {
                    crate::calendar::MarketStatus::PreOpen => MarketStatus::PreOpenStart,
                    crate::calendar::MarketStatus::Open => MarketStatus::NormalOpen,
                    crate::calendar::MarketStatus::Closing => MarketStatus::ClosingStart,
                    crate::calendar::MarketStatus::Closed
                    | crate::calendar::MarketStatus::Holiday => MarketStatus::NormalClose,
                };
                vec![
                    ("NSE_EQ", st),
                    ("NSE_FO", st),
                    ("NSE_INDEX", st),
                    ("BSE_EQ", st),
                ]
            }
        };
        encode_market_info(&set, now_ms(), &mut buf);
        buf
    }

    fn commands(&mut self) {
        for _ in 0..256 {
            match self.rx.try_recv() {
                Ok(SimCommand::MarketInfo(v)) => {
                    self.market_info = Some(v);
                    let frame = Message::binary(self.market_info_frame());
                    let ids = self.targets(Target::all(Vendor::Upstox));
                    self.send_raw(&ids, &frame);
                    self.note(format!("market_info to {ids:?}"));
                }
                Ok(SimCommand::Fault(f)) => self.apply(f),
                Ok(SimCommand::SetRate(r)) => self.cfg.ticks_per_sec = r,
                Ok(SimCommand::Stats(tx)) => {
                    let _ = tx.send(self.snapshot());
                }
                Ok(SimCommand::Shutdown) | Err(crossbeam_channel::TryRecvError::Disconnected) => {
                    self.stop = true;
                    return;
                }
                Err(crossbeam_channel::TryRecvError::Empty) => return,
            }
        }
    }

    fn snapshot(&self) -> SimStats {
        let ticks_sent = self
            .market
            .instruments
            .iter()
            .filter(|i| i.ticks_sent > 0)
            .map(|i| ((i.tick.vendor, i.key.clone()), i.ticks_sent))
            .collect();
        SimStats {
            connections: self.records.clone(),
            ticks_sent,
            refused: self.auth.borrow().refused,
            authorize_calls: self.authorize_calls,
            faults: self.faults.clone(),
        }
    }

    fn targets(&self, t: Target) -> Vec<u64> {
        let mut v: Vec<u64> = self
            .ws
            .values()
            .filter(|c| c.vendor == t.vendor && matches!(c.phase, Phase::Open(_)))
            .filter(|c| t.conn.is_none_or(|id| id == c.id))
            .map(|c| c.id)
            .collect();
        v.sort_unstable();
        v
    }

    fn note(&mut self, what: String) {
        let at = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        log::info!(event = "sim_fault", at_ms = at; "{what}");
        self.faults.push((at, what));
    }

    fn send_raw(&mut self, ids: &[u64], msg: &Message) {
        let mut dead = Vec::new();
        for id in ids {
            if let Some(SConn {
                phase: Phase::Open(ws),
                backlogged,
                ..
            }) = self.ws.get_mut(id)
            {
                let r = ws.write(msg.clone()).and_then(|()| ws.flush());
                match r {
                    Ok(()) => {}
                    Err(WsError::Io(e)) if e.kind() == ErrorKind::WouldBlock => *backlogged = true,
                    Err(_) => dead.push(*id),
                }
            }
        }
        for id in dead {
            self.close(id);
        }
    }

    fn apply(&mut self, f: Fault) {
        let now = Instant::now();
        match f {
            Fault::Drop(t) => {
                let ids = self.targets(t);
                for id in &ids {
                    self.close(*id);
                }
                self.note(format!("drop {} {ids:?}", t.vendor));
            }
            Fault::Stall { target, ms } => {
                let ids = self.targets(target);
                for id in &ids {
                    if let Some(c) = self.ws.get_mut(id) {
                        c.stalled_until = Some(now + Duration::from_millis(ms));
                    }
                }
                self.note(format!("stall {} {ids:?} {ms} ms", target.vendor));
            }
            Fault::SlowReader { target, ms } => {
                let ids = self.targets(target);
                for id in &ids {
                    if let Some(c) = self.ws.get_mut(id) {
                        c.slow_until = Some(now + Duration::from_millis(ms));
                    }
                }
                self.note(format!("slow reader {} {ids:?} {ms} ms", target.vendor));
            }
            Fault::Refuse {
                vendor,
                status,
                retry_after_s,
                count,
            } => {
                self.auth.borrow_mut().refusals.insert(
                    vendor,
                    Refusal {
                        status,
                        retry_after_s,
                        remaining: count,
                    },
                );
                self.note(format!("refuse {vendor} x{count} with {status}"));
            }
            Fault::Malformed(t) => {
                let ids = self.targets(t);
                if t.vendor == Vendor::Json {
                    self.send_raw(&ids, &Message::text(super::json::MALFORMED));
                    self.note(format!("malformed {} {ids:?}", t.vendor));
                    return;
                }
                let bytes: Vec<u8> = match t.vendor {
                    // Two packets of lengths no Kite mode has.
                    Vendor::Kite => vec![0, 2, 0, 3, 1, 2, 3, 0, 5, 1, 2, 3, 4, 5],
                    // An invalid protobuf tag (field 0) and a runaway varint.
                    _ => vec![
                        0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                    ],
                };
                self.send_raw(&ids, &Message::binary(bytes));
                self.note(format!("malformed {} {ids:?}", t.vendor));
            }
            Fault::Truncated(t) => {
                let ids = self.targets(t);
                if t.vendor == Vendor::Json {
                    self.send_raw(&ids, &Message::text(super::json::TRUNCATED));
                    self.note(format!("truncated {} {ids:?}", t.vendor));
                    return;
                }
                let bytes: Vec<u8> = match t.vendor {
                    // One 184-byte packet announced, 20 bytes present.
                    Vendor::Kite => {
                        let mut b = vec![0, 1, 0, 184];
                        b.extend_from_slice(&[7u8; 20]);
                        b
                    }
                    // A feeds entry whose declared length runs past the frame.
                    _ => vec![0x08, 0x01, 0x12, 0x7f, 0x0a, 0x03, b'N', b'S', b'E'],
                };
                self.send_raw(&ids, &Message::binary(bytes));
                self.note(format!("truncated {} {ids:?}", t.vendor));
            }
            Fault::Oversize { target, bytes } => {
                let ids = self.targets(target);
                self.send_raw(&ids, &Message::binary(vec![0u8; bytes]));
                self.note(format!("oversize {} {ids:?} {bytes} bytes", target.vendor));
            }
            Fault::ExpireToken { vendor, new_token } => {
                {
                    let mut a = self.auth.borrow_mut();
                    match vendor {
                        Vendor::Kite => a.kite_token = new_token,
                        Vendor::Angel => a.angel[0] = new_token,
                        Vendor::Dhan => a.dhan_token = new_token,
                        _ => a.upstox_token = new_token,
                    }
                }
                let ids = self.targets(Target::all(vendor));
                let err = match vendor {
                    Vendor::Dhan => Message::binary(super::vendors::dhan_disconnect(807)),
                    _ => Message::text(
                        r#"{"type":"error","data":"TokenException: access token expired"}"#,
                    ),
                };
                self.send_raw(&ids, &err);
                let close = Message::Close(Some(CloseFrame {
                    code: CloseCode::Policy,
                    reason: "token expired".into(),
                }));
                self.send_raw(&ids, &close);
                for id in &ids {
                    self.close(*id);
                }
                self.note(format!("token expired {vendor} {ids:?}"));
            }
        }
    }

    fn scheduled_faults(&mut self) {
        let Some(at) = self.next_fault else { return };
        let now = Instant::now();
        if now < at {
            return;
        }
        let Some(s) = self.cfg.fault_schedule.clone() else {
            return;
        };
        self.next_fault = Some(now + Duration::from_millis(s.every_ms.max(1)));
        let mut open: Vec<(u64, Vendor)> = self
            .ws
            .values()
            .filter(|c| matches!(c.phase, Phase::Open(_)))
            .map(|c| (c.id, c.vendor))
            .collect();
        open.sort_unstable();
        if open.is_empty() || s.kinds.is_empty() {
            return;
        }
        let pick = self.rng.up_to(open.len() as u64 - 1) as usize;
        let kind = self.rng.up_to(s.kinds.len() as u64 - 1) as usize;
        let (Some(&(id, vendor)), Some(&k)) = (open.get(pick), s.kinds.get(kind)) else {
            return;
        };
        let target = Target {
            vendor,
            conn: Some(id),
        };
        let fault = match k {
            ScheduledFault::Drop => Fault::Drop(target),
            ScheduledFault::Stall(ms) => Fault::Stall { target, ms },
            ScheduledFault::Malformed => Fault::Malformed(target),
            ScheduledFault::Truncated => Fault::Truncated(target),
        };
        self.apply(fault);
    }

    // ----- the Upstox authorize endpoint -----------------------------------------------------

    fn accept_http(&mut self) {
        for _ in 0..1024 {
            let (mut stream, _) = match self.http_l.accept() {
                Ok(s) => s,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => return,
            };
            let id = self.new_id();
            let token = Token(FIRST_CONN + id as usize);
            if self
                .poll
                .registry()
                .register(&mut stream, token, Interest::READABLE | Interest::WRITABLE)
                .is_err()
            {
                continue;
            }
            self.http.insert(
                id,
                HttpConn {
                    stream,
                    inbuf: Vec::new(),
                    out: Vec::new(),
                    written: 0,
                },
            );
            self.service_http(id);
        }
    }

    fn service_http(&mut self, id: u64) {
        let Some(mut h) = self.http.remove(&id) else {
            return;
        };
        let mut buf = [0u8; 4096];
        let mut closed = false;
        if h.out.is_empty() {
            loop {
                match h.stream.read(&mut buf) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => {
                        h.inbuf.extend_from_slice(buf.get(..n).unwrap_or(&[]));
                        if h.inbuf.len() > 16 * 1024 {
                            closed = true;
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if let Some(end) = find(&h.inbuf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(h.inbuf.get(..end).unwrap_or(&[])).into_owned();
                h.out = self.authorize_response(&head);
            }
        }
        if !h.out.is_empty() {
            while h.written < h.out.len() {
                match h.stream.write(h.out.get(h.written..).unwrap_or(&[])) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    Ok(n) => h.written += n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
            if h.written >= h.out.len() {
                closed = true;
            }
        }
        if closed {
            let _ = self.poll.registry().deregister(&mut h.stream);
        } else {
            self.http.insert(id, h);
        }
    }

    fn authorize_response(&mut self, head: &str) -> Vec<u8> {
        self.authorize_calls += 1;
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or("");
        let path_ok = request_line.starts_with("GET ")
            && request_line.contains("/v3/feed/market-data-feed/authorize");
        let bearer = lines
            .filter_map(|l| l.split_once(':'))
            .find(|(k, _)| k.trim().eq_ignore_ascii_case("authorization"))
            .map(|(_, v)| v.trim().trim_start_matches("Bearer ").trim().to_owned());
        if let Some(rest) = request_line
            .strip_prefix("GET /instruments/")
            .and_then(|r| r.split_whitespace().next())
        {
            return match Vendor::from_name(rest).and_then(super::vendors::instrument_list) {
                Some(body) => http_response(200, None, &body),
                None => http_response(404, None, r#"{"status":"error"}"#),
            };
        }
        let mut a = self.auth.borrow_mut();
        if !path_ok {
            return http_response(
                404,
                None,
                r#"{"status":"error","errors":[{"message":"not found"}]}"#,
            );
        }
        if let Some((status, ra)) = a.take_refusal(Vendor::Upstox) {
            let code = if status == 429 {
                "UDAPI10005"
            } else {
                "UDAPI100050"
            };
            let body = format!(
                r#"{{"status":"error","errors":[{{"errorCode":"{code}","message":"refused by fault injection"}}]}}"#
            );
            return http_response(status, ra, &body);
        }
        if bearer.as_deref() != Some(a.upstox_token.as_str()) {
            a.refused += 1;
            return http_response(
                401,
                None,
                r#"{"status":"error","errors":[{"errorCode":"UDAPI100050","message":"Invalid token used to access API"}]}"#,
            );
        }
        let code = format!("{:016x}", self.rng.next_u64());
        a.upstox_codes.insert(code.clone());
        let uri = format!(
            "ws://{}/v3/feed/market-data-feed?requestId=sim-{}&code={code}",
            self.upstox_addr, self.authorize_calls
        );
        let body = serde_json::json!({
            "status": "success",
            "data": { "authorized_redirect_uri": uri, "authorizedRedirectUri": uri },
        })
        .to_string();
        http_response(200, None, &body)
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn http_response(status: u16, retry_after_s: Option<u32>, body: &str) -> Vec<u8> {
    let reason = match status {
        200 => "OK",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Error",
    };
    let mut s = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    if let Some(ra) = retry_after_s {
        s.push_str(&format!("Retry-After: {ra}\r\n"));
    }
    s.push_str("\r\n");
    s.push_str(body);
    s.into_bytes()
}

/// Builds one data frame of `n` ticks for a connection, stepping the market round-robin.
#[allow(clippy::too_many_arguments)]
fn build_frame(
    vendor: Vendor,
    subs: &[(usize, Mode)],
    cursor: &mut usize,
    n: usize,
    market: &mut Market,
    pkt: &mut Vec<u8>,
    ranges: &mut Vec<(usize, usize)>,
    ticks: &mut Vec<Tick>,
    ms: i64,
) -> Vec<u8> {
    pkt.clear();
    ranges.clear();
    ticks.clear();
    for _ in 0..n {
        let Some(&(inst, mode)) = subs.get(*cursor % subs.len().max(1)) else {
            break;
        };
        *cursor = cursor.wrapping_add(1);
        let Some(t) = market.step(inst, ms) else {
            continue;
        };
        match vendor {
            Vendor::Kite => {
                let start = pkt.len();
                let km = match mode {
                    Mode::Ltp => KiteMode::Ltp,
                    Mode::Quote => KiteMode::Quote,
                    Mode::Full | Mode::Greeks => KiteMode::Full,
                };
                encode_packet(t, km, pkt);
                ranges.push((start, pkt.len()));
            }
            Vendor::Angel | Vendor::Dhan => {
                super::vendors::encode(vendor, t, mode, *cursor as i64, pkt);
            }
            _ => {
                let mut t = *t;
                t.mode = mode;
                ticks.push(t);
            }
        }
    }
    let mut frame = Vec::with_capacity(pkt.len() + 2 + 2 * ranges.len() + 64);
    match vendor {
        Vendor::Kite => {
            let slices: Vec<&[u8]> = ranges.iter().filter_map(|(a, b)| pkt.get(*a..*b)).collect();
            encode_frame(&slices, &mut frame);
        }
        // Angel: the one packet; Dhan: every packet back to back.
        Vendor::Angel | Vendor::Dhan => frame.extend_from_slice(pkt),
        // The JSON feed's text is built from `ticks` by the caller.
        Vendor::Json => {}
        _ => encode_feed_response(ticks, FeedType::LiveFeed, ms, &mut frame),
    }
    frame
}
