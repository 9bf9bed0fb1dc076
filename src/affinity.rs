//! Thread-to-core placement: which pinned thread gets which core, and the pinning itself; and the
//! opt-in real-time scheduling (`SCHED_FIFO`) of the feed and producer threads.
//!
//! Cores are read once in `main` (from the process's affinity mask, which reflects cpusets and
//! containers) and planned before any thread starts; a thread pins itself first thing. A core id
//! that is not in the mask is reported and the thread runs unpinned instead of failing. Likewise a
//! real-time priority the host refuses is logged as an error and the thread runs with normal
//! scheduling: a latency refinement must never stop ingestion.

use thiserror::Error;

use crate::config::ThreadConfig;

/// Highest CPU id + 1 that the kernel's `cpu_set_t` (and so `core_affinity`) can address.
pub const CPU_SETSIZE: usize = 1024;

/// Where each pinned thread goes; `None` means unpinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorePlan {
    /// One entry per feed thread.
    pub feed: Vec<Option<usize>>,
    /// The producer thread.
    pub producer: Option<usize>,
}

/// The logical CPUs this process may run on (empty if the OS will not say).
pub fn available_cores() -> Vec<usize> {
    core_affinity::get_core_ids()
        .map(|ids| ids.into_iter().map(|c| c.id).collect())
        .unwrap_or_default()
}

/// Plans the placement. Explicit ids win (unavailable ones become `None` with a warning). In
/// automatic mode the feed threads take the highest cores and the producer the next one down,
/// only when there are enough cores for all of them; otherwise nothing is pinned (pinning two
/// busy threads onto one core is worse than letting the scheduler move them).
pub fn plan(cfg: &ThreadConfig, available: &[usize]) -> CorePlan {
    let check = |role: &str, c: usize| -> Option<usize> {
        if available.contains(&c) {
            Some(c)
        } else {
            log::warn!(event = "core_unavailable", role = role, core = c; "core {c} is not in this process's CPU set; {role} runs unpinned");
            None
        }
    };
    let explicit = !cfg.feed_cores.is_empty() || cfg.producer_core.is_some();
    let plan = if explicit {
        CorePlan {
            feed: if cfg.feed_cores.is_empty() {
                vec![None; cfg.feed_threads]
            } else {
                cfg.feed_cores.iter().map(|c| check("feed", *c)).collect()
            },
            producer: cfg.producer_core.and_then(|c| check("producer", c)),
        }
    } else if cfg.pinning && available.len() > cfg.feed_threads {
        let mut sorted = available.to_vec();
        sorted.sort_unstable();
        let mut from_top = sorted.iter().rev().copied();
        let feed: Vec<Option<usize>> = (0..cfg.feed_threads).map(|_| from_top.next()).collect();
        CorePlan {
            feed,
            producer: from_top.next(),
        }
    } else {
        CorePlan {
            feed: vec![None; cfg.feed_threads],
            producer: None,
        }
    };
    warn_shared(&plan);
    warn_not_isolated(&plan, &isolated_cores());
    plan
}

/// Where the kernel lists the cores isolated from the scheduler (`isolcpus=`).
pub const ISOLATED_PATH: &str = "/sys/devices/system/cpu/isolated";

/// Parses a kernel CPU list such as `1-3,5` (empty or malformed parts are skipped; ids at or
/// beyond [`CPU_SETSIZE`] are ignored, so a hostile file cannot make this allocate without bound).
pub fn parse_cpu_list(text: &str) -> Vec<usize> {
    let mut out = Vec::new();
    for part in text
        .trim()
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        if let (Ok(a), Ok(b)) = (a.trim().parse::<usize>(), b.trim().parse::<usize>()) {
            out.extend((a..=b.min(CPU_SETSIZE - 1)).filter(|c| *c < CPU_SETSIZE));
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// The isolated cores of this host (empty when none, or when the file cannot be read).
pub fn isolated_cores() -> Vec<usize> {
    std::fs::read_to_string(ISOLATED_PATH)
        .map(|t| parse_cpu_list(&t))
        .unwrap_or_default()
}

/// Pinned cores that the scheduler may still give to other tasks; each is logged as a warning
/// (`core_not_isolated`), since pinning only owns a core when nothing else is placed there.
pub fn warn_not_isolated(plan: &CorePlan, isolated: &[usize]) -> Vec<usize> {
    let mut shared: Vec<usize> = plan
        .feed
        .iter()
        .flatten()
        .copied()
        .chain(plan.producer)
        .filter(|c| !isolated.contains(c))
        .collect();
    shared.sort_unstable();
    shared.dedup();
    for c in &shared {
        log::warn!(event = "core_not_isolated", core = *c; "pinned core {c} is not in {ISOLATED_PATH}; other tasks may run on it (see tuning/README.md)");
    }
    shared
}

fn warn_shared(plan: &CorePlan) {
    let mut pinned: Vec<usize> = plan
        .feed
        .iter()
        .flatten()
        .copied()
        .chain(plan.producer)
        .collect();
    pinned.sort_unstable();
    for w in pinned.windows(2) {
        if let [a, b] = w {
            if a == b {
                log::warn!(event = "core_shared", core = *a; "core {a} is given to more than one pinned thread");
            }
        }
    }
}

/// Pins the calling thread to `core` (if any) and logs the outcome.
pub fn pin_current(thread: &str, core: Option<usize>) -> bool {
    match core {
        Some(id) => {
            // core_affinity indexes a fixed CPU_SETSIZE (1024) bitmap and panics beyond it.
            let ok =
                id < CPU_SETSIZE && core_affinity::set_for_current(core_affinity::CoreId { id });
            if ok {
                log::info!(event = "thread_pinned", thread = thread, core = id; "pinned");
            } else {
                log::warn!(event = "thread_pin_failed", thread = thread, core = id; "could not pin; running unpinned");
            }
            ok
        }
        None => {
            log::info!(event = "thread_unpinned", thread = thread; "not pinned");
            false
        }
    }
}

/// Why a thread could not be given real-time scheduling (codes in `docs/errors.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum RealtimeError {
    /// The priority is outside what `SCHED_FIFO` accepts on this host (1..=99 on Linux).
    #[error("priority {0} is outside SCHED_FIFO's range (1..=99)")]
    InvalidPriority(u8),
    /// The kernel refused (`EPERM`): the process lacks root or `CAP_SYS_NICE` with an
    /// `RLIMIT_RTPRIO` at least the priority, or its cgroup has no real-time budget.
    #[error("not permitted to use SCHED_FIFO (needs root or CAP_SYS_NICE, RLIMIT_RTPRIO, and a real-time budget for the cgroup)")]
    NotPermitted,
    /// Any other refusal, with its errno.
    #[error("sched_setscheduler failed with errno {0}")]
    Os(i32),
}

impl RealtimeError {
    /// The stable code for logs.
    pub const fn code(&self) -> &'static str {
        match self {
            RealtimeError::InvalidPriority(_) => "RT_INVALID_PRIORITY",
            RealtimeError::NotPermitted => "RT_NOT_PERMITTED",
            RealtimeError::Os(_) => "RT_OS",
        }
    }
}

/// Puts the calling thread under `SCHED_FIFO` at `priority`, with `SCHED_RESET_ON_FORK` so that
/// threads it spawns later (the feed thread's connect helper) start with normal scheduling
/// instead of inheriting a real-time policy they were not planned for.
///
/// # Errors
/// [`RealtimeError`] when the priority is out of range or the kernel refuses; the thread's
/// scheduling is then unchanged.
pub fn set_realtime_current(priority: u8) -> Result<(), RealtimeError> {
    // SAFETY: both calls take a policy constant and touch no memory.
    let (min, max) = unsafe {
        (
            libc::sched_get_priority_min(libc::SCHED_FIFO),
            libc::sched_get_priority_max(libc::SCHED_FIFO),
        )
    };
    let p = i32::from(priority);
    if p < min.max(1) || p > max {
        return Err(RealtimeError::InvalidPriority(priority));
    }
    let param = libc::sched_param { sched_priority: p };
    // SAFETY: pid 0 names the calling thread; `param` is an initialised `sched_param` that lives
    // across the call and is only read by the kernel.
    let rc = unsafe {
        libc::sched_setscheduler(0, libc::SCHED_FIFO | libc::SCHED_RESET_ON_FORK, &param)
    };
    if rc == 0 {
        return Ok(());
    }
    Err(match std::io::Error::last_os_error().raw_os_error() {
        Some(libc::EPERM) => RealtimeError::NotPermitted,
        Some(libc::EINVAL) => RealtimeError::InvalidPriority(priority),
        Some(e) => RealtimeError::Os(e),
        None => RealtimeError::Os(0),
    })
}

/// The calling thread's scheduling as the kernel reports it: the policy (`libc::SCHED_*`, the
/// reset-on-fork flag removed), whether reset-on-fork is set, and the static priority.
pub fn current_scheduling() -> (i32, bool, i32) {
    // SAFETY: pid 0 names the calling thread; no memory is passed.
    let raw = unsafe { libc::sched_getscheduler(0) };
    let mut param = libc::sched_param { sched_priority: 0 };
    // SAFETY: pid 0 names the calling thread; `param` is a valid, writable `sched_param`.
    let rc = unsafe { libc::sched_getparam(0, &mut param) };
    let priority = if rc == 0 { param.sched_priority } else { -1 };
    (
        raw & !libc::SCHED_RESET_ON_FORK,
        raw >= 0 && raw & libc::SCHED_RESET_ON_FORK != 0,
        priority,
    )
}

/// Applies the configured real-time priority (if any) to the calling thread and logs the outcome:
/// `thread_realtime` on success, `thread_realtime_failed` (error, with its code) when refused, in
/// which case the thread goes on with normal scheduling. Returns whether the policy is in force.
pub fn apply_realtime(thread: &str, priority: Option<u8>) -> bool {
    let Some(p) = priority else {
        return false;
    };
    match set_realtime_current(p) {
        Ok(()) => {
            log::info!(event = "thread_realtime", thread = thread, priority = p; "SCHED_FIFO priority {p}");
            true
        }
        Err(e) => {
            log::error!(event = "thread_realtime_failed", thread = thread, priority = p, code = e.code(); "could not set SCHED_FIFO priority {p}: {e}; {thread} runs with normal scheduling");
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(
        feed_threads: usize,
        feed_cores: Vec<usize>,
        producer_core: Option<usize>,
    ) -> ThreadConfig {
        ThreadConfig {
            feed_threads,
            pinning: true,
            feed_cores,
            producer_core,
            queue_capacity: 1024,
        }
    }

    #[test]
    fn auto_uses_top_cores_when_enough() {
        let p = plan(&cfg(1, vec![], None), &[0, 1]);
        assert_eq!(
            p,
            CorePlan {
                feed: vec![Some(1)],
                producer: Some(0)
            }
        );
        let p = plan(&cfg(2, vec![], None), &[0, 1, 2, 3]);
        assert_eq!(
            p,
            CorePlan {
                feed: vec![Some(3), Some(2)],
                producer: Some(1)
            }
        );
    }

    #[test]
    fn auto_does_not_pin_when_short_of_cores() {
        let p = plan(&cfg(2, vec![], None), &[0, 1]);
        assert_eq!(
            p,
            CorePlan {
                feed: vec![None, None],
                producer: None
            }
        );
        let p = plan(&cfg(1, vec![], None), &[]);
        assert_eq!(p.producer, None);
    }

    #[test]
    fn explicit_cores_fall_back_when_absent() {
        let p = plan(&cfg(2, vec![1, 99], Some(0)), &[0, 1]);
        assert_eq!(
            p,
            CorePlan {
                feed: vec![Some(1), None],
                producer: Some(0)
            }
        );
    }

    #[test]
    fn cpu_lists_and_isolation() {
        assert_eq!(parse_cpu_list("1-3,5\n"), vec![1, 2, 3, 5]);
        assert_eq!(parse_cpu_list(""), Vec::<usize>::new());
        assert_eq!(parse_cpu_list("x,7,2-1,0-0"), vec![0, 7]);
        assert_eq!(parse_cpu_list("0-999999999").len(), CPU_SETSIZE);
        let p = CorePlan {
            feed: vec![Some(3), Some(2)],
            producer: Some(1),
        };
        assert_eq!(warn_not_isolated(&p, &[2, 3]), vec![1]);
        assert!(warn_not_isolated(&p, &[1, 2, 3]).is_empty());
    }

    #[test]
    fn realtime_is_applied_and_read_back_or_refused_with_a_typed_error() {
        let t = std::thread::spawn(|| {
            let before = current_scheduling();
            match set_realtime_current(3) {
                Ok(()) => {
                    let now = current_scheduling();
                    // A thread spawned now must not inherit the real-time policy.
                    let child = std::thread::spawn(current_scheduling)
                        .join()
                        .map_err(|_| "child panicked");
                    Ok((before, now, child))
                }
                Err(e) => Err((before, e, current_scheduling())),
            }
        });
        match t.join().expect("thread") {
            Ok((before, now, child)) => {
                assert_eq!(before.0, libc::SCHED_OTHER);
                assert_eq!(now, (libc::SCHED_FIFO, true, 3));
                let child = child.expect("child");
                assert_eq!(child.0, libc::SCHED_OTHER);
                assert!(!child.1);
            }
            Err((before, e, after)) => {
                // Hosts without the privilege refuse cleanly and leave the thread as it was.
                assert_eq!(e, RealtimeError::NotPermitted);
                assert_eq!(e.code(), "RT_NOT_PERMITTED");
                assert_eq!(before, after);
            }
        }
    }

    #[test]
    fn realtime_priority_out_of_range_changes_nothing() {
        let t = std::thread::spawn(|| {
            let before = current_scheduling();
            let zero = set_realtime_current(0);
            let high = set_realtime_current(100);
            let off = apply_realtime("test", None);
            (before, zero, high, off, current_scheduling())
        });
        let (before, zero, high, off, after) = t.join().expect("thread");
        assert_eq!(zero, Err(RealtimeError::InvalidPriority(0)));
        assert_eq!(high, Err(RealtimeError::InvalidPriority(100)));
        assert_eq!(
            RealtimeError::InvalidPriority(0).code(),
            "RT_INVALID_PRIORITY"
        );
        assert!(!off);
        assert_eq!(before, after);
        assert_eq!(after.0, libc::SCHED_OTHER);
    }

    #[test]
    fn pinning_to_an_absent_core_does_not_panic() {
        let t = std::thread::spawn(|| pin_current("test", Some(4095)));
        assert!(!t.join().expect("thread"));
    }
}
