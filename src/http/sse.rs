//! The live stream (`GET /api/events`, Server-Sent Events) and the sampler thread that feeds it.
//!
//! One thread samples every 500 ms and writes the same event to every stream with non-blocking
//! writes; a stream whose socket cannot take a whole event at once (a client that stopped
//! reading) is dropped, so no client can slow the others or the sampling. The number of streams
//! is bounded by `Limits::max_streams`.

use std::{
    io::Write,
    net::TcpStream,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use super::{error::HttpError, lock, routes, snapshot::SAMPLE_MS, Shared};
use crate::shutdown::Shutdown;

const HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\nX-Accel-Buffering: no\r\nConnection: keep-alive\r\n\r\nretry: 2000\n\n";

fn event(json: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(json.len() + 16);
    out.extend_from_slice(b"data: ");
    // serde_json never emits a raw newline inside its compact output, so one data line suffices.
    out.extend_from_slice(json);
    out.extend_from_slice(b"\n\n");
    out
}

/// Takes a stream slot, writes the head and a first event, and hands the connection to the
/// sampler. On refusal the connection comes back so the caller can answer.
pub(super) fn attach(shared: &Shared, mut stream: TcpStream) -> Result<(), (HttpError, TcpStream)> {
    let max = shared.opts.limits.max_streams;
    let reserved = shared
        .stream_count
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
            (n < max).then_some(n + 1)
        })
        .is_ok();
    if !reserved {
        return Err((HttpError::TooManyStreams, stream));
    }
    let first = event(&routes::snapshot_json(shared, false));
    let ok = stream
        .write_all(HEAD)
        .and_then(|()| stream.write_all(&first))
        .and_then(|()| stream.flush())
        .is_ok()
        && stream.set_nonblocking(true).is_ok();
    if ok {
        lock(&shared.streams).push(stream);
    } else {
        shared.stream_count.fetch_sub(1, Ordering::AcqRel);
    }
    Ok(())
}

/// Writes `ev` to every stream; drops those that fail or cannot take it whole.
fn broadcast(shared: &Shared, ev: &[u8]) {
    let mut streams = lock(&shared.streams);
    let before = streams.len();
    streams.retain_mut(|s| matches!(s.write(ev), Ok(n) if n == ev.len()));
    let dropped = before - streams.len();
    if dropped > 0 {
        shared.stream_count.fetch_sub(dropped, Ordering::AcqRel);
    }
}

/// The sampler thread: every [`SAMPLE_MS`], sample the counters, then send one event to every
/// stream, until `shutdown`.
pub(super) fn sampler_loop(shared: &Shared, shutdown: &Shutdown) {
    let period = Duration::from_millis(SAMPLE_MS);
    let mut next = Instant::now() + period;
    while !shutdown.is_triggered() {
        let now = Instant::now();
        if now < next {
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        // Catch up without a burst if the thread was held up (suspend, debugger).
        next = if now > next + period {
            now + period
        } else {
            next + period
        };
        lock(&shared.sampler).sample(shared.state.metrics, now);
        if shared.stream_count.load(Ordering::Acquire) > 0 {
            let ev = event(&routes::snapshot_json(shared, false));
            broadcast(shared, &ev);
        }
    }
    let mut streams = lock(&shared.streams);
    shared
        .stream_count
        .fetch_sub(streams.len(), Ordering::AcqRel);
    streams.clear();
}
