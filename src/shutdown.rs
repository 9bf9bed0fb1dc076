//! One shutdown path: SIGINT/SIGTERM (or a programmatic request) set one flag that every thread
//! checks after each bounded wait; blocked event loops are woken through their own wakers.

use std::{
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

/// The process-wide stop flag, cheap to clone into every thread.
#[derive(Debug, Clone, Default)]
pub struct Shutdown(Arc<AtomicBool>);

impl Shutdown {
    /// A flag that is not set.
    pub fn new() -> Self {
        Shutdown::default()
    }

    /// Requests shutdown.
    pub fn trigger(&self) {
        self.0.store(true, Ordering::Release);
    }

    /// True once shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }

    /// Routes SIGINT and SIGTERM to this flag.
    ///
    /// # Errors
    /// The OS refused to install the handler.
    pub fn install_signal_handlers(&self) -> std::io::Result<()> {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            signal_hook::flag::register(sig, Arc::clone(&self.0))?;
        }
        Ok(())
    }

    /// Blocks the caller until shutdown is requested, checking every `tick`.
    pub fn wait(&self, tick: Duration) {
        while !self.is_triggered() {
            std::thread::sleep(tick);
        }
    }

    /// Blocks until shutdown is requested or `limit` passes; true if it was requested.
    pub fn wait_for(&self, limit: Duration, tick: Duration) -> bool {
        let end = std::time::Instant::now() + limit;
        while !self.is_triggered() {
            if std::time::Instant::now() >= end {
                return false;
            }
            std::thread::sleep(tick);
        }
        true
    }
}
