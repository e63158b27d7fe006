//! Engine settings from the environment (`STASK_*`), with errors that name the variable.

use std::time::Duration;

use anyhow::{bail, Result};

use crate::engine::EngineConfig;

fn env_u64(name: &str) -> Result<Option<u64>> {
    match std::env::var(name) {
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) => Ok(Some(n)),
            Err(_) => bail!("{name}='{v}' is not a non-negative integer"),
        },
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(_) => bail!("{name} is not valid UTF-8"),
    }
}

/// The engine configuration: defaults, overridden by environment variables.
///
/// | variable | meaning |
/// |---|---|
/// | `STASK_CONCURRENCY` | runner processes at once |
/// | `STASK_DEFAULT_TIMEOUT_SECS` | time limit of a run when the worker sets none |
/// | `STASK_CANCEL_GRACE_MS` | time a cancelled task gets to stop before it is killed |
/// | `STASK_RETRY_BASE_MS` | first automatic-retry delay (doubles per attempt) |
/// | `STASK_STALE_AFTER_SECS` | heartbeat age after which a running task is recovered |
pub fn engine_config() -> Result<EngineConfig> {
    let mut cfg = EngineConfig::default();
    if let Some(n) = env_u64("STASK_CONCURRENCY")? {
        if n == 0 || n > 256 {
            bail!("STASK_CONCURRENCY must be between 1 and 256, got {n}");
        }
        cfg.concurrency = n as usize;
    }
    if let Some(n) = env_u64("STASK_DEFAULT_TIMEOUT_SECS")? {
        if n == 0 {
            bail!("STASK_DEFAULT_TIMEOUT_SECS must be at least 1");
        }
        cfg.default_timeout = Duration::from_secs(n);
    }
    if let Some(n) = env_u64("STASK_CANCEL_GRACE_MS")? {
        cfg.cancel_grace = Duration::from_millis(n);
    }
    if let Some(n) = env_u64("STASK_RETRY_BASE_MS")? {
        cfg.retry_base = Duration::from_millis(n);
    }
    if let Some(n) = env_u64("STASK_STALE_AFTER_SECS")? {
        if n == 0 {
            bail!("STASK_STALE_AFTER_SECS must be at least 1");
        }
        cfg.stale_after = Duration::from_secs(n);
    }
    Ok(cfg)
}
