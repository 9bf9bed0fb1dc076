//! The feed thread's event loop: connection state machines, timers, commands and the frame path.
//!
//! Every connection moves through explicit phases (idle → preparing → TCP connect → handshake →
//! open → waiting → ...). Readiness drives each step: a handshake that would block is resumed on
//! the next event, reads drain until `WouldBlock`, and writes that would block stay queued in the
//! connection's `FrameWriter` and are flushed on the next writable event. Timers live in one heap
//! whose next deadline is the poll timeout. tungstenite does the HTTP upgrade only; an open
//! connection is framed by `super::ws`, so reading a frame allocates nothing.

use std::{
    collections::HashMap,
    io::ErrorKind,
    net::{IpAddr, SocketAddr, ToSocketAddrs},
    sync::{atomic::Ordering, Arc},
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use mio::{net::TcpStream, Events, Interest, Poll, Token, Waker};
use tungstenite::{
    client::IntoClientRequest,
    handshake::{client::ClientHandshake, HandshakeError, MidHandshake},
    http::Uri,
    protocol::WebSocketConfig,
    stream::MaybeTlsStream,
    ClientRequestBuilder, Error as TungError, Message, WebSocket,
};

use super::{
    backoff::Backoff,
    metrics::ConnMetrics,
    now_unix_ns,
    timers::{TimerKind, TimerSlots, Timers},
    ws::{Frame, FrameReader, FrameWriter, HsStream, Payload, WsError},
    Command, ConnState, ConnectError, ConnectRequest, Connector, ConnectorCaps, FeedEvent,
    FeedMetrics, FeedSettings, FeedSpec, FeedStats, FrameHandler, FrameKind, FrameMeta, Instrument,
    InstrumentAges, Prepare,
};
use crate::vendor::Vendor;

pub(crate) const WAKER_TOKEN: Token = Token(usize::MAX);

type WsStream = MaybeTlsStream<TcpStream>;
/// The stream during the upgrade: it keeps the bytes behind the 101 response for our reader.
type Hs = HsStream<WsStream>;
type Mid = MidHandshake<ClientHandshake<Hs>>;
type HandshakeResult = Result<
    (WebSocket<Hs>, tungstenite::handshake::client::Response),
    HandshakeError<ClientHandshake<Hs>>,
>;

/// An open connection: the stream and our own RFC 6455 framing over it (see `super::ws`).
struct Ws {
    stream: WsStream,
    reader: FrameReader,
    writer: FrameWriter,
    /// Receive time of the last read that returned data: every frame those bytes completed
    /// was received then (one clock read per read syscall, not per frame or per batch).
    rx_ns: u64,
    /// A close was queued (ours or the answer to the server's).
    closing: bool,
}

/// Work for the helper thread: produce the request and resolve its address.
type Work = Box<dyn FnOnce() -> Result<(ConnectRequest, SocketAddr), ConnectError> + Send>;

struct Job {
    conn: usize,
    job: u64,
    work: Work,
}

struct JobResult {
    conn: usize,
    job: u64,
    result: Result<(ConnectRequest, SocketAddr), ConnectError>,
}

enum Phase {
    /// Not started or between phases.
    Idle,
    /// The helper thread is producing the request.
    Preparing { job: u64 },
    /// TCP connect in flight.
    Tcp {
        stream: TcpStream,
        request: ConnectRequest,
    },
    /// TLS / HTTP upgrade in flight.
    Handshake(Box<Mid>),
    /// Frames flow.
    Open(Box<Ws>),
    /// Backing off until the retry timer.
    Waiting,
    /// Shut down.
    Closed,
}

struct Conn {
    id: u16,
    feed: usize,
    vendor: Vendor,
    phase: Phase,
    state: ConnState,
    subs: Vec<Instrument>,
    /// Consecutive failed attempts; reset only once real data has arrived.
    attempt: u32,
    attempts_total: u64,
    auth_retry_used: bool,
    got_data: bool,
    last_rx: Instant,
    timers: TimerSlots,
    pending_flush: bool,
    metrics: Option<ConnMetrics>,
}

struct Feed {
    connector: Box<dyn Connector>,
    caps: ConnectorCaps,
    conns: Vec<usize>,
    placed: HashMap<u32, usize>,
    ages: Option<Arc<InstrumentAges>>,
    initial: Vec<Instrument>,
}

struct Helper {
    tx: Sender<Job>,
}

pub(crate) struct FeedLoop {
    settings: FeedSettings,
    poll: Poll,
    waker: Arc<Waker>,
    commands: Receiver<Command>,
    feeds: Vec<Feed>,
    conns: Vec<Conn>,
    tls: Arc<rustls::ClientConfig>,
    metrics: Option<FeedMetrics>,
    stats: Arc<FeedStats>,
    timers: Timers,
    backoff: Backoff,
    helper: Option<Helper>,
    results_tx: Sender<JobResult>,
    results_rx: Receiver<JobResult>,
    next_job: u64,
    revisit: Vec<usize>,
    revisit_next: Vec<usize>,
    scratch: Vec<Message>,
    /// The current read's frames waiting for their `after_frame` (empty between reads).
    later: Later,
    ws_config: WebSocketConfig,
    shutting_down: bool,
    next_metrics_at: Instant,
}

impl FeedLoop {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        settings: FeedSettings,
        poll: Poll,
        waker: Arc<Waker>,
        commands: Receiver<Command>,
        specs: Vec<FeedSpec>,
        tls: Arc<rustls::ClientConfig>,
        metrics: Option<FeedMetrics>,
        stats: Arc<FeedStats>,
    ) -> Self {
        let seed = settings.jitter_seed.unwrap_or_else(now_unix_ns);
        let backoff = Backoff::new(settings.backoff_base_ms, settings.backoff_cap_ms, seed);
        let ws_config = WebSocketConfig::default()
            .read_buffer_size(settings.read_buffer_bytes)
            .max_write_buffer_size(settings.max_write_buffer_bytes)
            .max_message_size(Some(settings.max_message_bytes))
            .max_frame_size(Some(settings.max_message_bytes));
        let feeds = specs
            .into_iter()
            .map(|s| {
                let caps = s.connector.caps();
                Feed {
                    connector: s.connector,
                    caps,
                    conns: Vec::new(),
                    placed: HashMap::new(),
                    ages: s.ages,
                    initial: s.instruments,
                }
            })
            .collect();
        // Helper results are bounded by the number of jobs in flight (one per connection).
        let (results_tx, results_rx) = crossbeam_channel::unbounded();
        FeedLoop {
            settings,
            poll,
            waker,
            commands,
            feeds,
            conns: Vec::new(),
            tls,
            metrics,
            stats,
            timers: Timers::default(),
            backoff,
            helper: None,
            results_tx,
            results_rx,
            next_job: 0,
            revisit: Vec::new(),
            revisit_next: Vec::new(),
            scratch: Vec::new(),
            later: Later::EMPTY,
            ws_config,
            shutting_down: false,
            next_metrics_at: Instant::now(),
        }
    }

    pub(crate) fn run<H: FrameHandler>(mut self, mut handler: H) -> H {
        crate::affinity::pin_current(&self.settings.name, self.settings.core);
        log::info!(event = "feed_thread_start", thread = self.settings.name.as_str(), busy_poll = self.settings.busy_poll; "feed thread started");
        for f in 0..self.feeds.len() {
            let initial = self
                .feeds
                .get_mut(f)
                .map(|feed| std::mem::take(&mut feed.initial))
                .unwrap_or_default();
            self.place(f, initial, &mut handler);
        }
        let mut events = Events::with_capacity(1024);
        while !self.shutting_down {
            let now = Instant::now();
            let timeout = if self.revisit.is_empty() && !self.settings.busy_poll {
                let next = self
                    .timers
                    .next_deadline()
                    .map_or(self.next_metrics_at, |d| d.min(self.next_metrics_at));
                next.saturating_duration_since(now)
            } else {
                Duration::ZERO
            };
            if let Err(e) = self.poll.poll(&mut events, Some(timeout)) {
                if e.kind() != ErrorKind::Interrupted {
                    log::error!(event = "feed_poll_error", thread = self.settings.name.as_str(); "poll failed: {e}");
                    // A failing epoll is not recoverable by retrying hot; pace the loop.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            for ev in events.iter() {
                if ev.token() != WAKER_TOKEN {
                    self.on_ready(ev.token().0, &mut handler);
                }
            }
            std::mem::swap(&mut self.revisit, &mut self.revisit_next);
            let again = std::mem::take(&mut self.revisit_next);
            for idx in &again {
                self.on_ready(*idx, &mut handler);
            }
            self.revisit_next = again;
            self.revisit_next.clear();
            self.drain_commands(&mut handler);
            self.drain_results(&mut handler);
            self.fire_timers(&mut handler);
            self.refresh_metrics();
            self.stats.loop_turns.fetch_add(1, Ordering::Relaxed);
        }
        self.close_all(&mut handler);
        log::info!(event = "feed_thread_stop", thread = self.settings.name.as_str(); "feed thread stopped");
        handler
    }

    // ----- subscriptions -------------------------------------------------------------------

    /// Places instruments on connections of `feed` with room, opening connections as needed, and
    /// sends the subscriptions on connections already open.
    fn place<H: FrameHandler>(
        &mut self,
        feed: usize,
        instruments: Vec<Instrument>,
        handler: &mut H,
    ) {
        let Some(f) = self.feeds.get(feed) else {
            log::error!(event = "feed_unknown", feed = feed; "subscribe for an unknown feed index");
            return;
        };
        let cap = f.caps.max_instruments_per_conn.max(1);
        let vendor = f.connector.vendor();
        let mut added: Vec<(usize, Instrument)> = Vec::new();
        let mut refused = 0usize;
        for ins in instruments {
            let Some(f) = self.feeds.get(feed) else {
                return;
            };
            if let Some(&c) = f.placed.get(&ins.id) {
                // Already placed: a mode change is re-sent on its connection.
                if let Some(conn) = self.conns.get_mut(c) {
                    if let Some(existing) = conn.subs.iter_mut().find(|s| s.id == ins.id) {
                        if existing.mode != ins.mode {
                            *existing = ins.clone();
                            added.push((c, ins));
                        }
                    }
                }
                continue;
            }
            let room = f
                .conns
                .iter()
                .copied()
                .find(|&c| self.conns.get(c).is_some_and(|x| x.subs.len() < cap));
            let target = match room {
                Some(c) => Some(c),
                None => self.new_conn(feed),
            };
            let Some(c) = target else {
                refused += 1;
                continue;
            };
            if let Some(f) = self.feeds.get_mut(feed) {
                f.placed.insert(ins.id, c);
                if let Some(ages) = &f.ages {
                    ages.register(ins.id);
                }
            }
            if let Some(conn) = self.conns.get_mut(c) {
                conn.subs.push(ins.clone());
            }
            added.push((c, ins));
        }
        if refused > 0 {
            log::error!(event = "subscription_capacity", vendor = vendor.as_str(), refused = refused; "instruments refused: every connection is at its cap");
            handler.on_event(&FeedEvent::CapacityExceeded { vendor, refused });
        }
        // Send to connections that are open now; the others replay on open.
        added.sort_by_key(|(c, _)| *c);
        let mut i = 0;
        while i < added.len() {
            let c = added.get(i).map_or(0, |(c, _)| *c);
            let group: Vec<Instrument> = added
                .iter()
                .skip(i)
                .take_while(|(x, _)| *x == c)
                .map(|(_, ins)| ins.clone())
                .collect();
            i += group.len().max(1);
            if self
                .conns
                .get(c)
                .is_some_and(|x| matches!(x.phase, Phase::Open(_)))
            {
                self.send_subscriptions(c, &group, true, handler);
            } else if self
                .conns
                .get(c)
                .is_some_and(|x| matches!(x.phase, Phase::Idle))
            {
                self.start_attempt(c, handler);
            }
        }
    }

    fn unplace<H: FrameHandler>(&mut self, feed: usize, ids: &[u32], handler: &mut H) {
        let mut removed: Vec<(usize, Instrument)> = Vec::new();
        for id in ids {
            let Some(c) = self.feeds.get_mut(feed).and_then(|f| f.placed.remove(id)) else {
                continue;
            };
            if let Some(conn) = self.conns.get_mut(c) {
                if let Some(pos) = conn.subs.iter().position(|s| s.id == *id) {
                    removed.push((c, conn.subs.swap_remove(pos)));
                }
            }
        }
        removed.sort_by_key(|(c, _)| *c);
        let mut i = 0;
        while i < removed.len() {
            let c = removed.get(i).map_or(0, |(c, _)| *c);
            let group: Vec<Instrument> = removed
                .iter()
                .skip(i)
                .take_while(|(x, _)| *x == c)
                .map(|(_, ins)| ins.clone())
                .collect();
            i += group.len().max(1);
            self.send_subscriptions(c, &group, false, handler);
        }
    }

    fn new_conn(&mut self, feed: usize) -> Option<usize> {
        let f = self.feeds.get(feed)?;
        if f.conns.len() >= f.caps.max_connections {
            return None;
        }
        let local = u8::try_from(self.conns.len()).ok()?;
        let id = (u16::from(self.settings.thread_index) << 8) | u16::from(local);
        let vendor = f.connector.vendor();
        let idx = self.conns.len();
        let metrics = self.metrics.as_ref().map(|m| m.connection(vendor, id));
        self.conns.push(Conn {
            id,
            feed,
            vendor,
            phase: Phase::Idle,
            state: ConnState::Closed,
            subs: Vec::new(),
            attempt: 0,
            attempts_total: 0,
            auth_retry_used: false,
            got_data: false,
            last_rx: Instant::now(),
            timers: TimerSlots::default(),
            pending_flush: false,
            metrics,
        });
        if let Some(f) = self.feeds.get_mut(feed) {
            f.conns.push(idx);
        }
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        Some(idx)
    }

    /// Writes subscribe (or unsubscribe) messages for `instruments` on connection `c` if open.
    fn send_subscriptions<H: FrameHandler>(
        &mut self,
        c: usize,
        instruments: &[Instrument],
        subscribe: bool,
        handler: &mut H,
    ) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let Phase::Open(ws) = &mut conn.phase else {
            return;
        };
        let Some(feed) = self.feeds.get(conn.feed) else {
            return;
        };
        self.scratch.clear();
        if subscribe {
            feed.connector
                .subscribe_messages(instruments, &mut self.scratch);
        } else {
            feed.connector
                .unsubscribe_messages(instruments, &mut self.scratch);
        }
        let mut failure = None;
        for m in self.scratch.drain(..) {
            if let Err(e) = ws.writer.queue_message(&m) {
                failure = Some(map_frame_error(e));
                break;
            }
        }
        if failure.is_none() {
            failure = flush(ws, &mut conn.pending_flush).err();
        }
        let (id, vendor) = (conn.id, conn.vendor);
        if let Some(err) = failure {
            self.fail(c, err, handler);
            return;
        }
        if subscribe {
            log::info!(event = "subscriptions_sent", vendor = vendor.as_str(), conn = id, instruments = instruments.len(); "subscriptions sent");
            handler.on_event(&FeedEvent::Subscribed {
                conn: id,
                vendor,
                instruments: instruments.len(),
            });
        }
    }

    // ----- connection lifecycle ----------------------------------------------------------

    fn set_state<H: FrameHandler>(&mut self, c: usize, state: ConnState, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        if conn.state == state {
            return;
        }
        if conn.state == ConnState::Open {
            self.stats.open_connections.fetch_sub(1, Ordering::Relaxed);
        }
        if state == ConnState::Open {
            self.stats.open_connections.fetch_add(1, Ordering::Relaxed);
        }
        conn.state = state;
        if let Some(m) = &conn.metrics {
            m.state.set(i64::from(state as u8));
        }
        log::info!(event = "connection_state", vendor = conn.vendor.as_str(), conn = conn.id, state = state.as_str(); "{}", state.as_str());
        handler.on_event(&FeedEvent::State {
            conn: conn.id,
            vendor: conn.vendor,
            state,
        });
    }

    fn start_attempt<H: FrameHandler>(&mut self, c: usize, handler: &mut H) {
        if self.shutting_down {
            return;
        }
        self.set_state(c, ConnState::Connecting, handler);
        let timeout = Duration::from_millis(self.settings.connect_timeout_ms);
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        self.stats.attempts.fetch_add(1, Ordering::Relaxed);
        if conn.attempts_total > 0 {
            self.stats.reconnects.fetch_add(1, Ordering::Relaxed);
            if let Some(m) = &conn.metrics {
                m.reconnects.inc();
            }
        }
        conn.attempts_total += 1;
        conn.phase = Phase::Idle;
        self.timers.arm(
            &mut conn.timers,
            c,
            TimerKind::ConnectTimeout,
            Instant::now() + timeout,
        );
        let Some(feed) = self.feeds.get_mut(conn.feed) else {
            return;
        };
        let prepared = feed.connector.connect_request();
        let work: Work = match prepared {
            Err(e) => {
                self.fail(c, e, handler);
                return;
            }
            Ok(Prepare::Ready(req)) => match literal_addr(&req.url) {
                Ok(Some(addr)) => {
                    self.begin_tcp(c, req, addr, handler);
                    return;
                }
                Ok(None) => Box::new(move || {
                    let addr = resolve(&req.url)?;
                    Ok((req, addr))
                }),
                Err(e) => {
                    self.fail(c, e, handler);
                    return;
                }
            },
            Ok(Prepare::Deferred(f)) => Box::new(move || {
                let req = f()?;
                let addr = match literal_addr(&req.url)? {
                    Some(a) => a,
                    None => resolve(&req.url)?,
                };
                Ok((req, addr))
            }),
        };
        let job = self.next_job;
        self.next_job += 1;
        if let Err(e) = self.submit(Job { conn: c, job, work }) {
            self.fail(c, e, handler);
            return;
        }
        if let Some(conn) = self.conns.get_mut(c) {
            conn.phase = Phase::Preparing { job };
        }
    }

    fn submit(&mut self, job: Job) -> Result<(), ConnectError> {
        if self.helper.is_none() {
            // Spawned on first use: feeds whose requests are all ready-made never need it.
            let (tx, rx) = crossbeam_channel::bounded::<Job>(256);
            let results = self.results_tx.clone();
            let waker = Arc::clone(&self.waker);
            let name = format!("{}-prep", self.settings.name);
            std::thread::Builder::new()
                .name(name)
                .spawn(move || {
                    // Ends when the loop drops its sender; a job in flight finishes first (ureq
                    // calls are bounded by their timeouts).
                    for j in rx {
                        let result = (j.work)();
                        if results
                            .send(JobResult {
                                conn: j.conn,
                                job: j.job,
                                result,
                            })
                            .is_err()
                        {
                            break;
                        }
                        let _ = waker.wake();
                    }
                })
                .map_err(|e| ConnectError::Io(e.kind()))?;
            self.helper = Some(Helper { tx });
        }
        let Some(h) = &self.helper else {
            return Err(ConnectError::Io(ErrorKind::Other));
        };
        h.tx.try_send(job)
            .map_err(|_| ConnectError::Io(ErrorKind::WouldBlock))
    }

    fn begin_tcp<H: FrameHandler>(
        &mut self,
        c: usize,
        request: ConnectRequest,
        addr: SocketAddr,
        handler: &mut H,
    ) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let url = crate::redact::redact_url(&request.url);
        log::info!(event = "connection_attempt", vendor = conn.vendor.as_str(), conn = conn.id, url = url.as_str(), attempt = conn.attempt; "connecting");
        let mut stream = match TcpStream::connect(addr) {
            Ok(s) => s,
            Err(e) => {
                self.fail(c, ConnectError::Io(e.kind()), handler);
                return;
            }
        };
        if let Err(e) = self.poll.registry().register(
            &mut stream,
            Token(c),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.fail(c, ConnectError::Io(e.kind()), handler);
            return;
        }
        self.stats.sockets.fetch_add(1, Ordering::Relaxed);
        conn.phase = Phase::Tcp { stream, request };
    }

    fn on_ready<H: FrameHandler>(&mut self, c: usize, handler: &mut H) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        match std::mem::replace(&mut conn.phase, Phase::Idle) {
            Phase::Tcp { stream, request } => self.on_tcp_ready(c, stream, request, handler),
            Phase::Handshake(mid) => {
                let r = mid.handshake();
                self.on_handshake(c, r, handler);
            }
            Phase::Open(ws) => {
                conn.phase = Phase::Open(ws);
                self.on_open_ready(c, handler);
            }
            other => conn.phase = other,
        }
    }

    fn on_tcp_ready<H: FrameHandler>(
        &mut self,
        c: usize,
        stream: TcpStream,
        request: ConnectRequest,
        handler: &mut H,
    ) {
        // A non-blocking connect is done when the socket reports no error and has a peer.
        let err = match stream.take_error() {
            Ok(Some(e)) | Err(e) => Some(e.kind()),
            Ok(None) => None,
        };
        if let Some(kind) = err {
            self.drop_socket(stream);
            self.fail(c, ConnectError::Io(kind), handler);
            return;
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotConnected => {
                if let Some(conn) = self.conns.get_mut(c) {
                    conn.phase = Phase::Tcp { stream, request };
                }
                return;
            }
            Err(e) => {
                self.drop_socket(stream);
                self.fail(c, ConnectError::Io(e.kind()), handler);
                return;
            }
        }
        // Only the blocking connect sets TCP_NODELAY; small subscribe and ping frames must not
        // wait for Nagle.
        let _ = stream.set_nodelay(true);
        let req = match build_request(&request) {
            Ok(r) => r,
            Err(e) => {
                self.drop_socket(stream);
                self.fail(c, e, handler);
                return;
            }
        };
        // TLS below, our handshake wrapper above: the bytes behind the 101 response are then
        // plaintext kept for our frame reader.
        let stream = match wrap_tls(&req, stream, &self.tls) {
            Ok(s) => s,
            Err((e, stream)) => {
                if let Some(mut s) = stream {
                    let _ = self.poll.registry().deregister(&mut s);
                }
                self.stats.sockets.fetch_sub(1, Ordering::Relaxed);
                self.fail(c, e, handler);
                return;
            }
        };
        let r = tungstenite::client::client_with_config(
            req,
            HsStream::new(stream),
            Some(self.ws_config),
        );
        self.on_handshake(c, r, handler);
    }

    fn on_handshake<H: FrameHandler>(&mut self, c: usize, r: HandshakeResult, handler: &mut H) {
        match r {
            Ok((ws, _response)) => {
                // From here on the connection is ours: tungstenite only did the upgrade.
                let (stream, tail) = ws.into_inner().into_parts();
                let s = &self.settings;
                let mut reader = FrameReader::new(
                    s.read_buffer_bytes,
                    s.max_message_bytes,
                    s.max_message_bytes,
                );
                reader.push(&tail);
                let seed = now_unix_ns() ^ ((c as u64) << 32) ^ u64::from(s.thread_index);
                let ws = Ws {
                    stream,
                    reader,
                    writer: FrameWriter::new(s.max_write_buffer_bytes, seed),
                    rx_ns: now_unix_ns(),
                    closing: false,
                };
                self.on_open(c, Box::new(ws), handler)
            }
            Err(HandshakeError::Interrupted(mid)) => {
                if let Some(conn) = self.conns.get_mut(c) {
                    conn.phase = Phase::Handshake(Box::new(mid));
                }
            }
            Err(HandshakeError::Failure(e)) => {
                // tungstenite dropped the stream (closing the fd removes it from epoll).
                self.stats.sockets.fetch_sub(1, Ordering::Relaxed);
                self.fail(c, map_handshake_error(&e), handler);
            }
        }
    }

    fn on_open<H: FrameHandler>(&mut self, c: usize, ws: Box<Ws>, handler: &mut H) {
        let now = Instant::now();
        let hb = Duration::from_millis(self.settings.heartbeat_ms.max(1));
        let stale = self.stale_limit();
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        conn.phase = Phase::Open(ws);
        conn.last_rx = now;
        conn.got_data = false;
        conn.pending_flush = false;
        self.timers
            .cancel(&mut conn.timers, TimerKind::ConnectTimeout);
        self.timers
            .arm(&mut conn.timers, c, TimerKind::Heartbeat, now + hb);
        self.timers
            .arm(&mut conn.timers, c, TimerKind::Watchdog, now + stale);
        self.set_state(c, ConnState::Open, handler);
        let subs = self
            .conns
            .get(c)
            .map(|x| x.subs.clone())
            .unwrap_or_default();
        // Replay every desired subscription of this connection, in the connector's batches.
        self.send_subscriptions(c, &subs, true, handler);
        // Data may already be buffered behind the handshake response.
        self.on_open_ready(c, handler);
    }

    fn on_open_ready<H: FrameHandler>(&mut self, c: usize, handler: &mut H) {
        let max_frames = self.settings.max_frames_per_turn.max(1);
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let Some(feed) = self.feeds.get(conn.feed) else {
            return;
        };
        let Phase::Open(ws) = &mut conn.phase else {
            return;
        };
        if conn.pending_flush {
            if let Err(e) = flush(ws, &mut conn.pending_flush) {
                self.fail(c, e, handler);
                return;
            }
        }
        let mut meta = FrameMeta {
            conn: conn.id,
            vendor: conn.vendor,
            kind: FrameKind::Binary,
            received_at_ns: ws.rx_ns,
        };
        let mut frames = 0u64;
        let mut bytes = 0u64;
        let mut messages = 0usize;
        let mut failure = None;
        'drain: loop {
            // Every complete frame in the buffer first: they were all completed by the last
            // read, so they carry its receive time. Only then read again.
            loop {
                if messages >= max_frames {
                    // Fairness: serve the other connections, then come back without an event.
                    self.revisit.push(c);
                    break 'drain;
                }
                let frame = match ws.reader.next_frame() {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        self.stats.frame_errors.fetch_add(1, Ordering::Relaxed);
                        log::warn!(event = "ws_frame_error", vendor = conn.vendor.as_str(), conn = conn.id, code = e.code(); "{e}");
                        failure = Some(map_frame_error(e));
                        break 'drain;
                    }
                };
                messages += 1;
                match frame {
                    Frame::Data(kind, p) => {
                        let payload = ws.reader.payload(p);
                        frames += 1;
                        bytes += payload.len() as u64;
                        meta.kind = kind;
                        meta.received_at_ns = ws.rx_ns;
                        if !conn.got_data && feed.connector.is_data(kind, payload) {
                            conn.got_data = true;
                            conn.attempt = 0;
                            conn.auth_retry_used = false;
                        }
                        handler.on_frame(&meta, payload);
                        if !p.in_read_buffer() {
                            // The reassembled message's bytes last only until the next
                            // fragment: its bookkeeping cannot wait.
                            self.later.run(&ws.reader, &meta, handler);
                            handler.after_frame(&meta, payload);
                        } else if !self.later.push(kind, p) {
                            self.later.run(&ws.reader, &meta, handler);
                            self.later.push(kind, p);
                        }
                    }
                    // Pings are answered at once; they, pongs and close frames still prove the
                    // peer alive.
                    Frame::Ping(p) => {
                        let r = ws.writer.queue_pong(ws.reader.payload(p));
                        if let Err(e) = r {
                            failure = Some(map_frame_error(e));
                            break 'drain;
                        }
                        if let Err(e) = flush(ws, &mut conn.pending_flush) {
                            failure = Some(e);
                            break 'drain;
                        }
                    }
                    Frame::Pong => {}
                    Frame::Close(code) => {
                        // Answer with the same code (best effort), then reconnect.
                        if !ws.closing && ws.writer.queue_close(code).is_ok() {
                            ws.closing = true;
                            let _ = ws.writer.flush(&mut ws.stream);
                        }
                        failure = Some(ConnectError::Closed);
                        break 'drain;
                    }
                }
            }
            // The read reuses the buffer the deferred frames live in.
            self.later.run(&ws.reader, &meta, handler);
            match ws.reader.fill(&mut ws.stream) {
                Ok(0) => {
                    failure = Some(ConnectError::Closed);
                    break;
                }
                Ok(_) => ws.rx_ns = now_unix_ns(),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::UnexpectedEof => {
                    failure = Some(ConnectError::Closed);
                    break;
                }
                Err(e) => {
                    failure = Some(ConnectError::Io(e.kind()));
                    break;
                }
            }
        }
        self.later.run(&ws.reader, &meta, handler);
        if messages > 0 {
            conn.last_rx = Instant::now();
        }
        if frames > 0 {
            if let Some(m) = &conn.metrics {
                m.packets.inc_by(frames);
                m.bytes.inc_by(bytes);
            }
            self.stats.frames.fetch_add(frames, Ordering::Relaxed);
            self.stats.bytes.fetch_add(bytes, Ordering::Relaxed);
        }
        if let Some(err) = failure {
            if err == ConnectError::FrameTooLarge {
                self.stats.refused_frames.fetch_add(1, Ordering::Relaxed);
                if let Some(m) = &conn.metrics {
                    m.refused.inc();
                }
            }
            self.fail(c, err, handler);
        }
    }

    /// Tears the connection down and schedules the next attempt.
    fn fail<H: FrameHandler>(&mut self, c: usize, err: ConnectError, handler: &mut H) {
        let was_open = self
            .conns
            .get(c)
            .is_some_and(|x| matches!(x.phase, Phase::Open(_)) || x.state == ConnState::Stale);
        self.teardown(c);
        if self.shutting_down {
            self.set_state(c, ConnState::Closed, handler);
            return;
        }
        let base = self.settings.backoff_base_ms;
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let Some(feed) = self.feeds.get_mut(conn.feed) else {
            return;
        };
        let drawn = self.backoff.delay_ms(conn.attempt);
        let delay_ms = match &err {
            ConnectError::RateLimited {
                retry_after_ms: Some(ra),
            } => (*ra).max(drawn),
            ConnectError::Unauthorized(_) if !conn.auth_retry_used => {
                // The token may have rotated since this attempt read it: re-read credentials
                // and retry promptly once; a second refusal backs off normally.
                conn.auth_retry_used = true;
                feed.connector.credentials_rejected();
                drawn.min(base.min(100))
            }
            _ => drawn,
        };
        conn.attempt = conn.attempt.saturating_add(1);
        let (id, vendor, attempt) = (conn.id, conn.vendor, conn.attempt);
        self.timers.arm(
            &mut conn.timers,
            c,
            TimerKind::Retry,
            Instant::now() + Duration::from_millis(delay_ms),
        );
        conn.phase = Phase::Waiting;
        if was_open {
            log::error!(event = "connection_lost", vendor = vendor.as_str(), conn = id, code = err.code(), retry_in_ms = delay_ms; "disconnected: {err}");
        } else {
            log::error!(event = "connection_failed", vendor = vendor.as_str(), conn = id, code = err.code(), retry_in_ms = delay_ms, attempt = attempt; "connect attempt failed: {err}");
        }
        self.set_state(c, ConnState::BackingOff, handler);
        handler.on_event(&FeedEvent::Disconnected {
            conn: id,
            vendor,
            reason: err.code(),
            retry_in_ms: delay_ms,
            attempt,
        });
    }

    /// Drops the socket (deregistering it) and cancels the connection's timers.
    fn teardown(&mut self, c: usize) {
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        self.timers.cancel_all(&mut conn.timers);
        conn.pending_flush = false;
        let registry = self.poll.registry();
        let had_socket = match std::mem::replace(&mut conn.phase, Phase::Idle) {
            Phase::Tcp { mut stream, .. } => {
                let _ = registry.deregister(&mut stream);
                true
            }
            Phase::Handshake(mut mid) => {
                if let Some(s) = inner_tcp(mid.get_mut().get_mut().get_mut()) {
                    let _ = registry.deregister(s);
                }
                true
            }
            Phase::Open(mut ws) => {
                if let Some(s) = inner_tcp(&mut ws.stream) {
                    let _ = registry.deregister(s);
                }
                true
            }
            _ => false,
        };
        if had_socket {
            self.stats.sockets.fetch_sub(1, Ordering::Relaxed);
        }
    }

    fn drop_socket(&mut self, mut stream: TcpStream) {
        let _ = self.poll.registry().deregister(&mut stream);
        self.stats.sockets.fetch_sub(1, Ordering::Relaxed);
    }

    fn stale_limit(&self) -> Duration {
        let ms = if (self.settings.market_open)() {
            self.settings.stale_ms
        } else {
            self.settings.closed_stale_ms
        };
        Duration::from_millis(ms.max(1))
    }

    // ----- timers, commands, helper results -------------------------------------------------

    fn fire_timers<H: FrameHandler>(&mut self, handler: &mut H) {
        let now = Instant::now();
        // Bounded: each popped entry is removed; re-armed timers are in the future.
        for _ in 0..100_000 {
            let conns = &self.conns;
            let Some((c, kind, generation)) =
                self.timers.pop_due(now, |i| conns.get(i).map(|x| x.timers))
            else {
                break;
            };
            if let Some(conn) = self.conns.get_mut(c) {
                self.timers.fired(&mut conn.timers, kind, generation);
            }
            match kind {
                TimerKind::Retry => {
                    if self
                        .conns
                        .get(c)
                        .is_some_and(|x| matches!(x.phase, Phase::Waiting))
                    {
                        self.start_attempt(c, handler);
                    }
                }
                TimerKind::ConnectTimeout => {
                    let pending = self.conns.get(c).is_some_and(|x| {
                        matches!(
                            x.phase,
                            Phase::Idle
                                | Phase::Preparing { .. }
                                | Phase::Tcp { .. }
                                | Phase::Handshake(_)
                        )
                    });
                    if pending {
                        self.fail(c, ConnectError::Timeout, handler);
                    }
                }
                TimerKind::Heartbeat => self.heartbeat(c, now, handler),
                TimerKind::Watchdog => self.watchdog(c, now, handler),
            }
        }
        self.stats
            .timers_pending
            .store(self.timers.pending() as u64, Ordering::Relaxed);
    }

    fn heartbeat<H: FrameHandler>(&mut self, c: usize, now: Instant, handler: &mut H) {
        let hb = Duration::from_millis(self.settings.heartbeat_ms.max(1));
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        let Some(feed) = self.feeds.get(conn.feed) else {
            return;
        };
        let Phase::Open(ws) = &mut conn.phase else {
            return;
        };
        let mut failure = None;
        if let Some(msg) = feed.connector.heartbeat() {
            if let Err(e) = ws.writer.queue_message(&msg) {
                failure = Some(map_frame_error(e));
            }
            if failure.is_none() {
                failure = flush(ws, &mut conn.pending_flush).err();
            }
        }
        if let Some(e) = failure {
            self.fail(c, e, handler);
            return;
        }
        self.timers
            .arm(&mut conn.timers, c, TimerKind::Heartbeat, now + hb);
    }

    fn watchdog<H: FrameHandler>(&mut self, c: usize, now: Instant, handler: &mut H) {
        let limit = self.stale_limit();
        let Some(conn) = self.conns.get_mut(c) else {
            return;
        };
        if !matches!(conn.phase, Phase::Open(_)) {
            return;
        }
        let silent = now.saturating_duration_since(conn.last_rx);
        if silent < limit {
            // Re-armed for when the silence would reach the limit; no per-frame timer work. While
            // the market is closed it re-checks at least every open-market limit, so a market
            // that opens (by the calendar or a vendor's market-status report) tightens the limit
            // within that time instead of after the long closed-market one.
            let recheck = now + Duration::from_millis(self.settings.stale_ms.max(1));
            self.timers.arm(
                &mut conn.timers,
                c,
                TimerKind::Watchdog,
                (conn.last_rx + limit).min(recheck),
            );
            return;
        }
        let silent_ms = u64::try_from(silent.as_millis()).unwrap_or(u64::MAX);
        let (id, vendor) = (conn.id, conn.vendor);
        if let Some(m) = &conn.metrics {
            m.stale.inc();
        }
        self.stats.stale_events.fetch_add(1, Ordering::Relaxed);
        log::warn!(event = "connection_stale", vendor = vendor.as_str(), conn = id, silent_ms = silent_ms; "no message within the stale limit");
        self.set_state(c, ConnState::Stale, handler);
        handler.on_event(&FeedEvent::Stale {
            conn: id,
            vendor,
            silent_ms,
        });
        self.fail(c, ConnectError::Stale, handler);
    }

    fn drain_commands<H: FrameHandler>(&mut self, handler: &mut H) {
        // Bounded per turn so a command flood cannot starve the sockets.
        for _ in 0..1024 {
            match self.commands.try_recv() {
                Ok(Command::Subscribe { feed, instruments }) => {
                    self.place(feed, instruments, handler)
                }
                Ok(Command::Unsubscribe { feed, ids }) => self.unplace(feed, &ids, handler),
                Ok(Command::ReconnectAll) => {
                    for c in 0..self.conns.len() {
                        if self
                            .conns
                            .get(c)
                            .is_some_and(|x| x.state != ConnState::Closed)
                        {
                            self.teardown(c);
                            self.start_attempt(c, handler);
                        }
                    }
                }
                Ok(Command::Shutdown) | Err(TryRecvError::Disconnected) => {
                    self.shutting_down = true;
                    return;
                }
                Err(TryRecvError::Empty) => return,
            }
        }
    }

    fn drain_results<H: FrameHandler>(&mut self, handler: &mut H) {
        for _ in 0..1024 {
            let Ok(r) = self.results_rx.try_recv() else {
                return;
            };
            let current = self
                .conns
                .get(r.conn)
                .is_some_and(|x| matches!(x.phase, Phase::Preparing { job } if job == r.job));
            if !current {
                continue; // superseded (timeout, reconnect command)
            }
            match r.result {
                Ok((req, addr)) => self.begin_tcp(r.conn, req, addr, handler),
                Err(e) => self.fail(r.conn, e, handler),
            }
        }
    }

    fn refresh_metrics(&mut self) {
        let now = Instant::now();
        if now < self.next_metrics_at {
            return;
        }
        self.next_metrics_at =
            now + Duration::from_millis(self.settings.metrics_refresh_ms.max(10));
        for conn in &self.conns {
            if let Some(m) = &conn.metrics {
                let age = if conn.state == ConnState::Open {
                    now.saturating_duration_since(conn.last_rx).as_secs_f64()
                } else {
                    -1.0
                };
                m.age.set(age);
            }
        }
    }

    fn close_all<H: FrameHandler>(&mut self, handler: &mut H) {
        for c in 0..self.conns.len() {
            if let Some(Conn {
                phase: Phase::Open(ws),
                ..
            }) = self.conns.get_mut(c)
            {
                // Best effort and non-blocking: queue the close frame and try to send it once.
                if !ws.closing && ws.writer.queue_close(Some(1000)).is_ok() {
                    ws.closing = true;
                }
                let _ = ws.writer.flush(&mut ws.stream);
            }
            self.teardown(c);
            self.set_state(c, ConnState::Closed, handler);
            if let Some(conn) = self.conns.get_mut(c) {
                conn.phase = Phase::Closed;
            }
        }
        self.helper = None;
        self.stats
            .timers_pending
            .store(self.timers.pending() as u64, Ordering::Relaxed);
    }
}

fn flush(ws: &mut Ws, pending: &mut bool) -> Result<(), ConnectError> {
    match ws.writer.flush(&mut ws.stream) {
        Ok(done) => {
            // Not done: still queued in our writer (or rustls); finished on the next writable
            // event.
            *pending = !done;
            Ok(())
        }
        Err(e) if e.kind() == ErrorKind::UnexpectedEof => Err(ConnectError::Closed),
        Err(e) => Err(ConnectError::Io(e.kind())),
    }
}

/// A framing error as the connection error it ends the connection with (the frame code is
/// logged by the caller).
fn map_frame_error(e: WsError) -> ConnectError {
    match e {
        WsError::FrameTooLarge | WsError::MessageTooLarge => ConnectError::FrameTooLarge,
        other => ConnectError::Protocol(other.code()),
    }
}

/// `wss://`: a rustls client over the socket; `ws://`: the socket itself. On failure the socket
/// is handed back (for deregistering) when it is still ours.
fn wrap_tls(
    req: &tungstenite::handshake::client::Request,
    stream: TcpStream,
    tls: &Arc<rustls::ClientConfig>,
) -> Result<WsStream, (ConnectError, Option<TcpStream>)> {
    let uri = req.uri();
    match uri.scheme_str() {
        Some("ws") => Ok(MaybeTlsStream::Plain(stream)),
        Some("wss") => {
            let Some(host) = uri.host() else {
                return Err((ConnectError::Url, Some(stream)));
            };
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let name = match rustls::pki_types::ServerName::try_from(host.to_owned()) {
                Ok(n) => n,
                Err(_) => return Err((ConnectError::Url, Some(stream))),
            };
            match rustls::ClientConnection::new(Arc::clone(tls), name) {
                Ok(conn) => Ok(MaybeTlsStream::Rustls(rustls::StreamOwned::new(
                    conn, stream,
                ))),
                Err(_) => Err((ConnectError::Tls, Some(stream))),
            }
        }
        _ => Err((ConnectError::Url, Some(stream))),
    }
}

fn inner_tcp(s: &mut WsStream) -> Option<&mut TcpStream> {
    match s {
        MaybeTlsStream::Plain(t) => Some(t),
        MaybeTlsStream::Rustls(t) => Some(&mut t.sock),
        _ => None,
    }
}

fn build_request(
    r: &ConnectRequest,
) -> Result<tungstenite::handshake::client::Request, ConnectError> {
    let uri: Uri = r.url.parse().map_err(|_| ConnectError::Url)?;
    let mut b = ClientRequestBuilder::new(uri);
    for (k, v) in &r.headers {
        b = b.with_header(k.as_str(), v.as_str());
    }
    b.into_client_request().map_err(|_| ConnectError::Url)
}

/// Host and port of a ws/wss URL.
fn host_port(url: &str) -> Result<(String, u16), ConnectError> {
    let uri: Uri = url.parse().map_err(|_| ConnectError::Url)?;
    let default_port = match uri.scheme_str() {
        Some("ws") => 80,
        Some("wss") => 443,
        _ => return Err(ConnectError::Url),
    };
    let host = uri.host().ok_or(ConnectError::Url)?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok((host, uri.port_u16().unwrap_or(default_port)))
}

/// The address when the host is an IP literal (no DNS needed on the loop).
fn literal_addr(url: &str) -> Result<Option<SocketAddr>, ConnectError> {
    let (host, port) = host_port(url)?;
    Ok(host
        .parse::<IpAddr>()
        .ok()
        .map(|ip| SocketAddr::new(ip, port)))
}

/// Blocking DNS; only ever called on the helper thread.
fn resolve(url: &str) -> Result<SocketAddr, ConnectError> {
    let (host, port) = host_port(url)?;
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(|_| ConnectError::Resolve)?
        .next()
        .ok_or(ConnectError::Resolve)
}

fn map_ws_error(e: &TungError) -> ConnectError {
    match e {
        TungError::ConnectionClosed | TungError::AlreadyClosed => ConnectError::Closed,
        TungError::Io(io) if io.kind() == ErrorKind::UnexpectedEof => ConnectError::Closed,
        TungError::Io(io) => ConnectError::Io(io.kind()),
        TungError::Tls(_) => ConnectError::Tls,
        TungError::Capacity(_) => ConnectError::FrameTooLarge,
        TungError::WriteBufferFull(_) => ConnectError::Protocol("write buffer full"),
        TungError::Protocol(tungstenite::error::ProtocolError::ResetWithoutClosingHandshake) => {
            ConnectError::Closed
        }
        TungError::Protocol(_) => ConnectError::Protocol("protocol violation"),
        TungError::Utf8(_) => ConnectError::Protocol("invalid utf-8 in text frame"),
        TungError::Url(_) => ConnectError::Url,
        TungError::Http(resp) => ConnectError::Http(resp.status().as_u16()),
        TungError::HttpFormat(_) => ConnectError::Protocol("malformed http"),
        _ => ConnectError::Protocol("websocket error"),
    }
}

fn map_handshake_error(e: &TungError) -> ConnectError {
    match e {
        TungError::Http(resp) => {
            let status = resp.status().as_u16();
            match status {
                401 | 403 => ConnectError::Unauthorized(status),
                429 => ConnectError::RateLimited {
                    retry_after_ms: resp
                        .headers()
                        .get("retry-after")
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_retry_after_ms),
                },
                s => ConnectError::Http(s),
            }
        }
        other => map_ws_error(other),
    }
}

/// `Retry-After` in delta-seconds (the HTTP-date form is not used by these vendors; it falls back
/// to the backoff schedule). Capped at one hour so a hostile value cannot park a connection.
pub(crate) fn parse_retry_after_ms(v: &str) -> Option<u64> {
    let secs: u64 = v.trim().parse().ok()?;
    Some(secs.min(3600) * 1000)
}

/// How many frames of one read wait for their [`FrameHandler::after_frame`] at most; a read
/// with more runs them in groups of this many.
const LATER_FRAMES: usize = 32;

/// The frames of the current read whose `after_frame` waits until every frame of the read has
/// had its `on_frame`: their payloads stay valid in the read buffer until the next read. They
/// share the read's connection and receive time, so only each one's kind is kept.
struct Later {
    items: [(FrameKind, Payload); LATER_FRAMES],
    len: usize,
}

impl Later {
    const EMPTY: Later = Later {
        items: [(FrameKind::Binary, Payload::EMPTY); LATER_FRAMES],
        len: 0,
    };

    /// Queues a frame; false when full (run the queued ones first).
    fn push(&mut self, kind: FrameKind, p: Payload) -> bool {
        let Some(slot) = self.items.get_mut(self.len) else {
            return false;
        };
        *slot = (kind, p);
        self.len += 1;
        true
    }

    /// The queued frames' `after_frame`, in their order; `meta` is the read's.
    fn run<H: FrameHandler>(&mut self, reader: &FrameReader, meta: &FrameMeta, handler: &mut H) {
        for &(kind, p) in self.items.iter().take(self.len) {
            handler.after_frame(&FrameMeta { kind, ..*meta }, reader.payload(p));
        }
        self.len = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_into_host_and_port() {
        assert_eq!(
            host_port("ws://127.0.0.1:9001/x?a=1").ok(),
            Some(("127.0.0.1".into(), 9001))
        );
        assert_eq!(
            host_port("wss://ws.kite.trade?api_key=k").ok(),
            Some(("ws.kite.trade".into(), 443))
        );
        assert_eq!(host_port("ws://[::1]/").ok(), Some(("::1".into(), 80)));
        assert_eq!(host_port("http://x/"), Err(ConnectError::Url));
        assert!(matches!(literal_addr("ws://127.0.0.1:5/"), Ok(Some(_))));
        assert!(matches!(literal_addr("wss://example.com/"), Ok(None)));
    }

    #[test]
    fn retry_after_parses_seconds_only() {
        assert_eq!(parse_retry_after_ms("2"), Some(2000));
        assert_eq!(parse_retry_after_ms(" 7200 "), Some(3_600_000));
        assert_eq!(parse_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }
}
