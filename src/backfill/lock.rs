//! The Redis lock that keeps two engines from backfilling at once: `SET key token NX PX ttl`,
//! renewed by a small thread every third of the TTL while the job runs, released at the end only
//! if the token is still ours (a Lua compare-and-delete), so an engine never frees a lock that
//! expired and was taken by another.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

const RENEW: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) else return 0 end";
const RELEASE: &str = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) else return 0 end";

/// A held lock. Dropping it stops the renewal and releases the lock (token-checked).
#[derive(Debug)]
pub struct LockGuard {
    client: redis::Client,
    key: String,
    token: String,
    lost: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    renewer: Option<JoinHandle<()>>,
}

/// Tries to take the lock. `Ok(None)` when another holder has it.
///
/// # Errors
/// The Redis error (connection, command).
pub fn acquire(
    client: &redis::Client,
    key: &str,
    token: &str,
    ttl: Duration,
) -> redis::RedisResult<Option<LockGuard>> {
    let mut con = client.get_connection_with_timeout(Duration::from_secs(2))?;
    con.set_read_timeout(Some(Duration::from_secs(2)))?;
    let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(100);
    let ok: Option<String> = redis::cmd("SET")
        .arg(key)
        .arg(token)
        .arg("NX")
        .arg("PX")
        .arg(ttl_ms)
        .query(&mut con)?;
    if ok.is_none() {
        return Ok(None);
    }
    let lost = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let renewer = {
        let (key, token, lost, stop) = (
            key.to_owned(),
            token.to_owned(),
            Arc::clone(&lost),
            Arc::clone(&stop),
        );
        std::thread::Builder::new()
            .name("backfill-lock".into())
            .spawn(move || renew_loop(con, &key, &token, ttl_ms, &lost, &stop))
            .map_err(|e| {
                redis::RedisError::from(std::io::Error::new(e.kind(), "spawn lock renewer"))
            })?
    };
    Ok(Some(LockGuard {
        client: client.clone(),
        key: key.to_owned(),
        token: token.to_owned(),
        lost,
        stop,
        renewer: Some(renewer),
    }))
}

fn renew_loop(
    mut con: redis::Connection,
    key: &str,
    token: &str,
    ttl_ms: u64,
    lost: &AtomicBool,
    stop: &AtomicBool,
) {
    let every = Duration::from_millis((ttl_ms / 3).max(50));
    let mut last_ok = Instant::now();
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(20).min(every));
        if Instant::now() < next {
            continue;
        }
        next = Instant::now() + every;
        let renewed: redis::RedisResult<i64> = redis::cmd("EVAL")
            .arg(RENEW)
            .arg(1)
            .arg(key)
            .arg(token)
            .arg(ttl_ms)
            .query(&mut con);
        match renewed {
            Ok(1) => last_ok = Instant::now(),
            Ok(_) => {
                log::error!(event = "backfill_lock_lost", code = "BACKFILL_LOCK_LOST"; "the lock expired or was taken by another engine");
                lost.store(true, Ordering::Release);
                return;
            }
            Err(e) => {
                log::warn!(event = "backfill_lock_renew_failed", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
                // Past the TTL without a renewal the lock may be someone else's now.
                if last_ok.elapsed() >= Duration::from_millis(ttl_ms) {
                    lost.store(true, Ordering::Release);
                    return;
                }
            }
        }
    }
}

impl LockGuard {
    /// True once the lock could not be renewed: the job must stop.
    pub fn is_lost(&self) -> bool {
        self.lost.load(Ordering::Acquire)
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(r) = self.renewer.take() {
            let _ = r.join();
        }
        let released = self
            .client
            .get_connection_with_timeout(Duration::from_secs(2))
            .and_then(|mut con| {
                redis::cmd("EVAL")
                    .arg(RELEASE)
                    .arg(1)
                    .arg(&self.key)
                    .arg(&self.token)
                    .query::<i64>(&mut con)
            });
        if let Err(e) = released {
            // The lock expires by itself within its TTL.
            log::warn!(event = "backfill_lock_release_failed", code = "BACKFILL_REDIS"; "{}", crate::redact::redact(&e.to_string()));
        }
    }
}

/// The engine id part of the current holder's token (`engine:nonce`), if the lock is held.
///
/// # Errors
/// The Redis error.
pub fn holder(con: &mut redis::Connection, key: &str) -> redis::RedisResult<Option<String>> {
    let v: Option<String> = redis::cmd("GET").arg(key).query(con)?;
    Ok(v.map(|t| {
        t.rsplit_once(':')
            .map_or(t.clone(), |(engine, _)| engine.to_owned())
    }))
}
