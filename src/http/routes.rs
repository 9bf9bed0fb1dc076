//! Request workers and the routes. `GET` handlers only read; the one state-changing route,
//! `POST /api/backfill`, passes the origin/token checks and the trigger interval first.

use std::{
    net::{SocketAddr, TcpStream},
    time::Instant,
};

use crossbeam_channel::Receiver;

use super::{
    assets,
    error::HttpError,
    lock, security,
    snapshot::{self, Snapshot},
    sse,
    wire::{self, Request, Response},
    Shared,
};
use crate::{
    error::ErrorCode,
    feed::auth::AuthState,
    metrics::Metrics,
    status::{ConnectionView, MarketPhase},
};

/// Write timeout of an ordinary response: a client that does not read is dropped.
const WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What a route asks the worker to do.
enum Outcome {
    Respond(Response),
    /// Answer with the event-stream head and hand the connection to the sampler.
    Stream,
}

/// A worker: takes connections off the queue until the accept thread drops its sender.
pub(super) fn worker(shared: &Shared, rx: &Receiver<(TcpStream, SocketAddr)>) {
    // One buffer per worker for the whole life of the thread.
    let mut buf = vec![0u8; wire::MAX_HEAD_BYTES + wire::MAX_BODY_BYTES];
    while let Ok((stream, peer)) = rx.recv() {
        serve(shared, stream, peer, &mut buf);
    }
}

fn serve(shared: &Shared, mut stream: TcpStream, peer: SocketAddr, buf: &mut [u8]) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let deadline = Instant::now() + shared.opts.limits.read_timeout;
    let outcome = match wire::read_request(&mut stream, buf, deadline) {
        Ok(req) => lock(&shared.limiter)
            .check(peer.ip(), Instant::now())
            .and_then(|()| security::check_host(&req, &shared.opts.exposure))
            .and_then(|()| route(shared, &req)),
        Err(HttpError::Closed) => return,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(Outcome::Respond(r)) => wire::write_response(&mut stream, &r),
        Ok(Outcome::Stream) => {
            if let Err((e, mut stream)) = sse::attach(shared, stream) {
                shared
                    .state
                    .metrics
                    .http_refused_total
                    .with_label_values(&[e.code()])
                    .inc();
                log::debug!(event = "http_refused", code = e.code(); "{e}");
                wire::write_response(&mut stream, &Response::error(&e));
            }
        }
        Err(e) => {
            shared
                .state
                .metrics
                .http_refused_total
                .with_label_values(&[e.code()])
                .inc();
            log::debug!(event = "http_refused", code = e.code(), peer = peer.to_string(); "{e}");
            wire::write_response(&mut stream, &Response::error(&e));
            linger(&mut stream);
        }
    }
}

/// After refusing a request that may not have been read whole (too large, malformed), half-close
/// and drain what the client is still sending for a moment: closing with unread data makes the
/// kernel send a reset, which can destroy the refusal before the client reads it. Bounded to
/// 64 KiB and 200 ms, so a refused client cannot hold the worker.
fn linger(stream: &mut TcpStream) {
    use std::io::Read;
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let deadline = Instant::now() + std::time::Duration::from_millis(200);
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 64 * 1024 {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

fn route(shared: &Shared, req: &Request) -> Result<Outcome, HttpError> {
    let get = req.method == "GET";
    let respond = |r: Response| Ok(Outcome::Respond(r));
    match req.path.as_str() {
        "/" | "/index.html" if get => respond(Response::asset(
            "text/html; charset=utf-8",
            assets::INDEX_HTML,
        )),
        "/assets/app.css" if get => {
            respond(Response::asset("text/css; charset=utf-8", assets::APP_CSS))
        }
        "/assets/app.js" if get => respond(Response::asset(
            "text/javascript; charset=utf-8",
            assets::APP_JS,
        )),
        "/metrics" if get => respond(Response {
            status: 200,
            content_type: prometheus::TEXT_FORMAT,
            headers: Vec::new(),
            body: shared.state.metrics.render(),
        }),
        "/health" if get => respond(health(shared)),
        "/health/live" if get => respond(Response::json_value(
            200,
            &serde_json::json!({"status": "live"}),
        )),
        "/health/ready" if get => respond(ready(shared)),
        "/api/status" if get => respond(Response::json(200, snapshot_json(shared, true))),
        "/api/events" if get => Ok(Outcome::Stream),
        "/api/backfill" if req.method == "POST" => trigger(shared, req).map(Outcome::Respond),
        "/" | "/index.html" | "/assets/app.css" | "/assets/app.js" | "/metrics" | "/health"
        | "/health/live" | "/health/ready" | "/api/status" | "/api/events" | "/api/backfill" => {
            Err(HttpError::MethodNotAllowed)
        }
        _ => Err(HttpError::NotFound),
    }
}

/// `/health`: always 200 while the process serves; `status` is `degraded` while Kafka is down or
/// ticks are being dropped (the journal refusing records at its cap, or a feed queue the producer
/// makes no room in), with the counts behind it.
fn health(shared: &Shared) -> Response {
    let m = shared.state.metrics;
    let kafka = m.kafka_up.get() == 1;
    let ok = kafka && dropping_ticks(m).is_empty();
    Response::json_value(
        200,
        &serde_json::json!({
            "status": if ok { "ok" } else { "degraded" },
            "version": shared.state.version,
            "kafka": if kafka { "up" } else { "down" },
            "redis": if m.redis_up.get() == 1 { "up" } else { "down" },
            "journal": {
                "bytes": m.journal_bytes.get(),
                "full": m.journal_full.get() > 0,
                "dropped": m.journal_dropped_total.get(),
            },
            "feedQueues": {
                "fullWaits": m.queue_full_total.with_label_values(&["feed"]).get(),
                "dropping": m.feed_queues_dropping.get(),
                "ticksDropped": snapshot::sum_counter(&m.ticks_dropped_total),
            },
        }),
    )
}

/// Vendors whose credentials were refused, one reason each (`kite: credentials refused ...`).
pub(super) fn auth_failures(shared: &Shared) -> Vec<String> {
    (shared.opts.auth)()
        .into_iter()
        .filter(|(_, state, _)| *state == AuthState::Failed)
        .map(|(v, _, n)| {
            format!(
                "{}: credentials refused ({n} refusals since start; rewrite the token)",
                v.as_str()
            )
        })
        .collect()
}

/// Every vendor with a credential verdict or a refusal so far, for the `/health/ready` body:
/// `{"kite": {"state": "ok", "failures": 0}, ...}`.
fn auth_view(shared: &Shared) -> serde_json::Value {
    let map: serde_json::Map<String, serde_json::Value> = (shared.opts.auth)()
        .into_iter()
        .filter(|(_, state, n)| *state != AuthState::Unknown || *n > 0)
        .map(|(v, state, n)| {
            (
                v.as_str().to_owned(),
                serde_json::json!({"state": state.as_str(), "failures": n}),
            )
        })
        .collect();
    serde_json::Value::Object(map)
}

/// Why ticks are being dropped right now, if they are: the journal refusing records at its cap,
/// or feed queues the producer makes no room in. `/health` is degraded and `/health/ready` 503
/// while this is not empty.
fn dropping_ticks(m: &Metrics) -> Vec<String> {
    let mut reasons = Vec::new();
    if m.journal_full.get() > 0 {
        reasons.push(format!(
            "journal full: records dropped ({} so far)",
            m.journal_dropped_total.get()
        ));
    }
    let dropping = m.feed_queues_dropping.get();
    if dropping > 0 {
        reasons.push(format!(
            "{dropping} feed queue(s) dropping ticks: the producer makes no room"
        ));
    }
    reasons
}

/// Why the engine is not ready: Kafka unreachable, ticks being dropped (the journal full, a
/// feed queue the producer makes no room in), or (during market hours) a configured feed
/// without a connection, a connection not open or stale, or a vendor refusing our credentials.
pub(super) fn readiness(
    shared: &Shared,
    conns: &[ConnectionView],
    phase: MarketPhase,
) -> Vec<String> {
    let m = shared.state.metrics;
    let mut reasons = Vec::new();
    if m.kafka_up.get() != 1 {
        reasons.push("kafka unreachable".to_owned());
    }
    reasons.extend(dropping_ticks(m));
    if phase.is_trading_hours() {
        for v in &shared.opts.feeds {
            if !conns.iter().any(|c| c.vendor == v.as_str()) {
                reasons.push(format!("{}: no connection", v.as_str()));
            }
        }
        for c in conns {
            if c.state != "open" {
                reasons.push(format!("{} conn {}: {}", c.vendor, c.conn, c.state));
            } else if c.stale {
                let silent = c.last_message_age_ms.map_or_else(
                    || "no message yet".to_owned(),
                    |ms| format!("no message for {:.1} s", ms as f64 / 1000.0),
                );
                reasons.push(format!("{} conn {}: stale ({silent})", c.vendor, c.conn));
            }
        }
        reasons.extend(auth_failures(shared));
    }
    reasons
}

fn ready(shared: &Shared) -> Response {
    let now = crate::clock::now_unix_ns();
    let conns = shared.opts.status.snapshot(now, shared.opts.stale_after);
    let phase = shared.opts.market.phase(now);
    let reasons = readiness(shared, &conns, phase);
    let auth = auth_view(shared);
    if reasons.is_empty() {
        Response::json_value(
            200,
            &serde_json::json!({"status": "ready", "market": phase.as_str(), "auth": auth}),
        )
    } else {
        Response::json_value(
            503,
            &serde_json::json!({"status": "not_ready", "market": phase.as_str(), "reasons": reasons, "auth": auth}),
        )
    }
}

/// Builds the snapshot JSON (with the rate history for `/api/status`, without for events).
pub(super) fn snapshot_json(shared: &Shared, with_history: bool) -> Vec<u8> {
    let m = shared.state.metrics;
    let now = crate::clock::now_unix_ns();
    let connections = shared.opts.status.snapshot(now, shared.opts.stale_after);
    let phase = shared.opts.market.phase(now);
    let mut reasons = readiness(shared, &connections, phase);
    let ready = reasons.is_empty();
    let kafka = m.kafka_up.get() == 1;
    let redis = m.redis_up.get() == 1;
    if !redis {
        reasons.push("redis command subscription down".to_owned());
    }
    if !phase.is_trading_hours() {
        for c in connections.iter().filter(|c| c.stale) {
            reasons.push(format!("{} conn {}: stale", c.vendor, c.conn));
        }
        // Outside market hours a refused token does not make the engine unready, but the page
        // says so: it has to be rewritten before the open.
        reasons.extend(auth_failures(shared));
    }
    let (seq, rates, totals, (handoff, ack), history) = {
        let s = lock(&shared.sampler);
        (
            s.seq(),
            s.rates(),
            s.last_totals(),
            s.latency(),
            with_history.then(|| s.history()),
        )
    };
    let backfill = shared.backfill.get();
    let snap = Snapshot {
        engine: snapshot::EngineView {
            name: "layer1",
            version: shared.state.version,
            uptime_s: shared.started.elapsed().as_secs(),
            now_ms: now / 1_000_000,
        },
        health: snapshot::HealthView {
            overall: if !kafka {
                "down"
            } else if reasons.is_empty() {
                "ok"
            } else {
                "degraded"
            },
            ready,
            reasons,
            kafka,
            redis,
        },
        market: snapshot::MarketView {
            phase: phase.as_str(),
            source: shared.opts.market.name,
        },
        security: snapshot::SecurityView {
            exposure: shared.opts.exposure.as_str(),
            token_required: shared.opts.exposure.token_required(),
        },
        connections,
        seq,
        rates,
        totals,
        rejected: snapshot::rejected(m),
        queues: snapshot::queues(m),
        kafka: snapshot::KafkaView {
            up: kafka,
            in_flight: m.kafka_in_flight.get(),
        },
        journal: snapshot::JournalView {
            bytes: m.journal_bytes.get(),
        },
        latency: snapshot::LatencyView { handoff, ack },
        backfill: &backfill,
        history,
    };
    // Serialising plain structs into a Vec cannot fail; an empty object keeps the page alive if
    // it ever did.
    serde_json::to_vec(&snap).unwrap_or_else(|_| b"{}".to_vec())
}

/// `POST /api/backfill`: same-origin (and token when remote), at most one trigger per interval,
/// refused while a job runs, then `PUBLISH system:commands "START_BACKFILL {...}"`.
fn trigger(shared: &Shared, req: &Request) -> Result<Response, HttpError> {
    security::check_post(req, &shared.opts.exposure)?;
    let message = super::backfill::command_for(&req.body)?;
    let Some(target) = shared.opts.redis.as_ref() else {
        return Err(HttpError::Redis(
            "backfill is not configured in this server".into(),
        ));
    };
    if shared.backfill.running() {
        return Err(HttpError::BackfillRunning);
    }
    {
        let mut last = lock(&shared.last_trigger);
        let now = Instant::now();
        if let Some(at) = *last {
            let since = now.saturating_duration_since(at);
            if since < shared.opts.limits.trigger_interval {
                let left = shared.opts.limits.trigger_interval - since;
                return Err(HttpError::RateLimited {
                    retry_after_s: left.as_secs().max(1),
                });
            }
        }
        *last = Some(now);
    }
    let receivers = super::backfill::publish(target, &message)?;
    log::info!(event = "backfill_triggered", source = "http", receivers = receivers; "published START_BACKFILL");
    Ok(Response::json_value(
        202,
        &serde_json::json!({"status": "published", "channel": target.commands_channel, "receivers": receivers}),
    ))
}
