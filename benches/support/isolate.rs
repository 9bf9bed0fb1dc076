//! Keeps the feed core for the feed thread during a bench phase, as `isolcpus` does on a tuned
//! host (`tuning/apply-isolation.sh`) but from user space and for this run only: every thread of
//! the bench process except the feed threads, of the simulator child, of the Kafka broker and of
//! Redis is moved to the other cores, and put back when the guard is dropped. Threads those
//! processes start meanwhile inherit the narrowed set from their creator. Interrupts and kernel
//! threads are not moved (that needs root: `tuning/apply-irq.sh`).
#![allow(dead_code, unsafe_code)]

use std::{fs, mem};

/// The threads moved off the feed cores and the CPU set each had before.
pub(crate) struct Isolation {
    moved: Vec<(i32, libc::cpu_set_t)>,
    /// The other processes, whose threads started meanwhile get every core back.
    others: Vec<u32>,
    /// Every core this process could use before (the calling thread is moved too).
    all: libc::cpu_set_t,
    /// Threads that could not be moved (exited meanwhile, or refused).
    pub(crate) refused: usize,
    /// Processes whose threads were moved, by name.
    pub(crate) processes: Vec<String>,
}

/// The set of `cores` (ids past `CPU_SETSIZE` are left out).
fn cpu_set(cores: impl Iterator<Item = usize>) -> libc::cpu_set_t {
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { mem::zeroed() };
    for c in cores.filter(|c| *c < layer1::affinity::CPU_SETSIZE) {
        // SAFETY: c < CPU_SETSIZE, the set's size in bits; the set is ours.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    set
}

fn tasks(pid: u32) -> Vec<(i32, String)> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let tid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            Some((tid, comm.trim().to_owned()))
        })
        .collect()
}

/// Processes named by their command line: the broker (`kafka.Kafka`) and Redis.
pub(crate) fn services() -> Vec<(u32, String)> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = fs::read(e.path().join("cmdline")).ok()?;
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains("kafka.Kafka") {
                Some((pid, "kafka broker".to_owned()))
            } else if cmd.starts_with("redis-server") || cmd.contains("/redis-server") {
                Some((pid, "redis".to_owned()))
            } else {
                None
            }
        })
        .collect()
}

impl Isolation {
    /// Moves every thread of this process not named `feed-*`, and every thread of the `others`
    /// processes (pid, name), to the cores not in `feed_cores`.
    pub(crate) fn apply(feed_cores: &[usize], others: &[(u32, String)]) -> Isolation {
        let cores = layer1::affinity::available_cores();
        let rest = cpu_set(cores.iter().copied().filter(|c| !feed_cores.contains(c)));
        let mut iso = Isolation {
            moved: Vec::new(),
            others: Vec::new(),
            all: cpu_set(cores.into_iter()),
            refused: 0,
            processes: Vec::new(),
        };
        let mut procs = vec![(std::process::id(), "bench (engine)".to_owned())];
        procs.extend(others.iter().cloned());
        for (pid, name) in procs {
            let own = pid == std::process::id();
            if !own {
                iso.others.push(pid);
            }
            let mut any = false;
            for (tid, comm) in tasks(pid) {
                if own && comm.starts_with("feed-") {
                    continue;
                }
                let mut before = cpu_set(std::iter::empty());
                let size = mem::size_of::<libc::cpu_set_t>();
                // SAFETY: both sets are valid for `size` bytes; a tid that has exited only
                // makes the calls fail.
                let ok = unsafe {
                    libc::sched_getaffinity(tid, size, &mut before) == 0
                        && libc::sched_setaffinity(tid, size, &rest) == 0
                };
                if ok {
                    iso.moved.push((tid, before));
                    any = true;
                } else {
                    iso.refused += 1;
                }
            }
            if any {
                iso.processes.push(name);
            }
        }
        iso
    }
}

impl Drop for Isolation {
    fn drop(&mut self) {
        for pid in &self.others {
            for (tid, _) in tasks(*pid) {
                if !self.moved.iter().any(|(t, _)| *t == tid) {
                    // SAFETY: as below.
                    unsafe {
                        libc::sched_setaffinity(tid, mem::size_of::<libc::cpu_set_t>(), &self.all);
                    }
                }
            }
        }
        for (tid, before) in &self.moved {
            // SAFETY: the set was filled by sched_getaffinity; a tid that has exited only makes
            // the call fail, which leaves nothing to restore.
            unsafe {
                libc::sched_setaffinity(*tid, mem::size_of::<libc::cpu_set_t>(), before);
            }
        }
    }
}
