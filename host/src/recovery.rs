//! Stuck-task recovery: nothing stays "running" after the process that ran it is gone.
//!
//! Every process that claims tasks has an owner id `host/pid/start-time` and renews a
//! lease in the store while it runs (see [`stask_storage::Leases`]). A running task is
//! abandoned when its owner has not renewed its lease within the stale limit (covering
//! other machines and hung hosts) or, as a fast path, when its owner is a dead process
//! on this machine (checked through /proc at once, so a SIGKILLed host's tasks are
//! recovered at the next start). Abandoned tasks are requeued while attempts remain,
//! otherwise failed, with a `Recovered:` line in the same transaction.

use std::path::Path;

use anyhow::Result;
use stask_storage::{Finish, LogLine, Outcome, Store};

/// This machine's name, for owner ids.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "localhost".to_owned())
}

/// Start time of a process in clock ticks since boot (field 22 of /proc/PID/stat).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields resume after its ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// The owner id of this process.
pub fn owner_id() -> String {
    let pid = std::process::id();
    format!("{}/{pid}/{}", hostname(), process_start(pid).unwrap_or(0))
}

/// `Some(alive)` for an owner on this machine, `None` when it cannot be told.
pub fn owner_alive(owner: &str) -> Option<bool> {
    let mut parts = owner.rsplitn(3, '/');
    let start: u64 = parts.next()?.parse().ok()?;
    let pid: u32 = parts.next()?.parse().ok()?;
    let host = parts.next()?;
    if host != hostname() {
        return None;
    }
    Some(process_start(pid) == Some(start))
}

fn describe_owner(owner: &str) -> String {
    let mut parts = owner.rsplitn(3, '/');
    let _ = parts.next();
    match (parts.next(), parts.next()) {
        (Some(pid), Some(host)) => format!("process {pid} on {host}"),
        _ => format!("'{owner}'"),
    }
}

/// A recovered task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Recovered {
    /// Task id.
    pub id: i64,
    /// True when it went back to pending, false when it failed for good.
    pub requeued: bool,
    /// Why.
    pub reason: String,
}

/// The name of this process's scratch directory (`pid-starttime`): scratch
/// directories of processes that are gone can be told apart and removed.
pub fn scratch_name() -> String {
    let pid = std::process::id();
    format!("{pid}-{}", process_start(pid).unwrap_or(0))
}

/// Removes the scratch directories under `root` of processes that are gone (a killed
/// engine's unfinished attempts; their tasks are recovered and run again).
pub fn remove_dead_scratch(root: &Path) {
    let Ok(entries) = std::fs::read_dir(root) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((pid, start)) = name.split_once('-') else {
            continue;
        };
        let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
            continue;
        };
        if process_start(pid) != Some(start) {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Recovers running tasks whose owner is gone (or silent for `stale_ms`).
pub fn recover_stuck(
    store: &mut dyn Store,
    me: &str,
    now: i64,
    stale_ms: i64,
) -> Result<Vec<Recovered>> {
    let mut finishes = Vec::new();
    let mut recovered = Vec::new();
    // Worker and action of each, for the metrics.
    let mut kinds = Vec::new();
    for running in store.running_tasks()? {
        let t = running.task;
        let Some(owner) = t.owner.clone() else {
            continue;
        };
        if owner == me {
            continue;
        }
        let stale = running.alive_at.is_none_or(|h| now - h > stale_ms);
        let reason = match owner_alive(&owner) {
            Some(false) => format!("the {} that ran it is gone", describe_owner(&owner)),
            _ if stale => format!(
                "the {} that ran it has not renewed its lease for {} s",
                describe_owner(&owner),
                (now - running.alive_at.unwrap_or(0)) / 1000
            ),
            _ => continue,
        };
        let requeued = t.attempts < t.max_attempts;
        let message = if requeued {
            format!(
                "Recovered: {reason}; requeued (attempt {} of {} was lost)",
                t.attempts, t.max_attempts
            )
        } else {
            format!("Recovered: {reason}; no attempts left")
        };
        let line = LogLine::new(
            if requeued { "pending" } else { "failed" },
            t.progress.clamp(0, 100) as u8,
            t.processed.max(0) as u64,
            t.total.max(0) as u64,
            "",
            &message,
        );
        finishes.push(Finish {
            id: t.id,
            owner,
            outcome: Outcome::Failed {
                error: format!("interrupted: {reason}"),
                retry_at: requeued.then_some(now),
            },
            progress: t.progress,
            processed: t.processed,
            total: t.total,
            message: message.clone(),
            at: now,
            lines: vec![line],
        });
        recovered.push(Recovered {
            id: t.id,
            requeued,
            reason: message,
        });
        kinds.push((t.worker, t.action));
    }
    if finishes.is_empty() {
        return Ok(recovered);
    }
    let applied = store.finish_tasks(&finishes)?;
    let mut out = Vec::new();
    for (((f, r), ok), (worker, action)) in finishes.iter().zip(recovered).zip(applied).zip(kinds) {
        if ok {
            tracing::warn!(task = f.id, "{}", f.message);
            crate::metrics::global().task_recovered(&worker, &action, r.requeued);
            out.push(r);
        }
    }
    Ok(out)
}
