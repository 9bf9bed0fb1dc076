//! Brings up the development services (a local Kafka broker and Redis) through the project's
//! scripts, for `layer1 demo` and the test suite. Production deployments point `KAFKA_BROKERS`
//! and `REDIS_URL` at their own services and never call this.

use std::{path::PathBuf, process::Command};

use crate::error::Error;

/// The repository root (where `scripts/` lives), as compiled in, or `LAYER1_ROOT` when set.
pub fn repo_root() -> PathBuf {
    std::env::var_os("LAYER1_ROOT")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
}

/// Runs `scripts/services.sh up`: reuses services that answer, starts the missing ones.
///
/// # Errors
/// [`Error::Services`] when the script is missing or fails (its stderr went to ours).
pub fn up() -> Result<(), Error> {
    run("up")
}

/// Runs `scripts/services.sh down`.
///
/// # Errors
/// [`Error::Services`] when the script is missing or fails.
pub fn down() -> Result<(), Error> {
    run("down")
}

fn run(action: &str) -> Result<(), Error> {
    let script = repo_root().join("scripts").join("services.sh");
    if !script.exists() {
        return Err(Error::Services(format!(
            "{} not found: run from a clone of the repository, or start Kafka and Redis yourself",
            script.display()
        )));
    }
    let status = Command::new("bash")
        .arg(&script)
        .arg(action)
        .status()
        .map_err(|e| Error::Services(format!("cannot run {}: {e}", script.display())))?;
    if status.success() {
        Ok(())
    } else {
        Err(Error::Services(format!(
            "{} {action} failed ({status})",
            script.display()
        )))
    }
}
