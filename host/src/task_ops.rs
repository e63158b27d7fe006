//! Operations on one task shared by the CLI and the HTTP API: cancel, retry, "run it
//! now" in a service, delete. Each stores the progress-log line that tells the story
//! with the change (the store wakes services when there may be new work); failures
//! caused by the request are [`Problem`]s (not found, wrong state).

use stask_storage::{now_ms, CancelResult, LogLine, RetryResult, Status, Store, TaskRecord};

use crate::problem::Problem;

/// The error for an unknown task id.
pub fn no_task(id: i64) -> anyhow::Error {
    Problem::not_found(
        "task_not_found",
        format!("no task {id} (see `stask tasks list`)"),
    )
    .into()
}

/// Reads a task, failing with [`no_task`] when it does not exist.
pub fn find(store: &dyn Store, id: i64) -> anyhow::Result<TaskRecord> {
    store.get_task(id)?.ok_or_else(|| no_task(id))
}

/// What a cancel did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancelled {
    /// The task was pending and is now cancelled.
    Now,
    /// The task is running; its worker is being told to stop (and is killed if it
    /// ignores that for the grace period).
    Requested,
}

impl Cancelled {
    /// `cancelled` or `requested`.
    pub fn as_str(self) -> &'static str {
        match self {
            Cancelled::Now => "cancelled",
            Cancelled::Requested => "requested",
        }
    }
}

/// Cancels a pending task, or asks the engine running it to stop it.
pub fn cancel(store: &mut dyn Store, id: i64) -> anyhow::Result<Cancelled> {
    let line = LogLine::new("cancelled", 0, 0, 0, "", "Cancelled before it started");
    let result = store
        .request_cancel(id, now_ms(), &line)?
        .ok_or_else(|| no_task(id))?;
    match result {
        CancelResult::CancelledPending => Ok(Cancelled::Now),
        CancelResult::Requested => Ok(Cancelled::Requested),
        CancelResult::AlreadyFinal(s) => Err(Problem::conflict(
            "already_finished",
            format!("task {id} is already {s}; nothing to cancel"),
        )
        .into()),
    }
}

/// `1 attempt so far`, `3 attempts so far`.
pub fn attempts_so_far(n: i64) -> String {
    if n == 1 {
        "1 attempt so far".to_owned()
    } else {
        format!("{n} attempts so far")
    }
}

/// A task queued again by [`retry`].
#[derive(Debug, Clone)]
pub struct Retried {
    /// The status it had (failed or cancelled).
    pub was: Status,
    /// The task, now pending.
    pub task: TaskRecord,
}

/// Queues a failed or cancelled task again (its attempt count keeps counting).
pub fn retry(store: &mut dyn Store, id: i64) -> anyhow::Result<Retried> {
    let line = |t: &TaskRecord| {
        LogLine::new(
            "pending",
            t.progress.clamp(0, 100) as u8,
            t.processed.max(0) as u64,
            t.total.max(0) as u64,
            "",
            &format!(
                "Queued for retry (was {}; {})",
                t.status,
                attempts_so_far(t.attempts)
            ),
        )
    };
    let status = match store.retry_task(id, now_ms(), &line)? {
        None => return Err(no_task(id)),
        Some(RetryResult::NotRetryable(status)) => {
            return Err(Problem::conflict(
                "not_retryable",
                format!("task {id} is {status}; only failed or cancelled tasks can be retried"),
            )
            .into())
        }
        Some(RetryResult::Queued(status)) => status,
    };
    Ok(Retried {
        was: status,
        task: find(store, id)?,
    })
}

/// "Run it now" for a service: makes a pending task due at once (a retry waiting for
/// its backoff included) and wakes the services of this home, which claim it in
/// priority order. The task must be pending and its worker active.
pub fn run_now(store: &mut dyn Store, id: i64) -> anyhow::Result<TaskRecord> {
    let t = find(store, id)?;
    if t.status != Status::Pending {
        return Err(Problem::conflict(
            "not_pending",
            format!(
                "task {id} is {}; only pending tasks can be executed (retry a failed or cancelled one first)",
                t.status
            ),
        )
        .into());
    }
    match store.get_worker(&t.worker)? {
        Some(w) if w.active => {}
        Some(_) => {
            return Err(Problem::conflict(
                "worker_inactive",
                format!(
                    "worker '{}' is inactive, so its tasks do not run; activate it first",
                    t.worker
                ),
            )
            .into())
        }
        None => {
            return Err(Problem::conflict(
                "unknown_worker",
                format!("worker '{}' is no longer registered", t.worker),
            )
            .into())
        }
    }
    if !store.make_task_due(id, now_ms())? {
        // Claimed (or cancelled) between the two reads.
        return find(store, id);
    }
    find(store, id)
}

/// Deletes a finished task with its progress log and result files.
pub fn delete(store: &mut dyn Store, id: i64) -> anyhow::Result<()> {
    let t = find(store, id)?;
    if !t.status.is_final() {
        return Err(Problem::conflict(
            "not_finished",
            format!(
                "task {id} is {}; only finished tasks can be deleted (cancel it first)",
                t.status
            ),
        )
        .into());
    }
    if store.delete_finished_tasks(&[id])?.is_empty() {
        return Err(Problem::conflict(
            "not_finished",
            format!("task {id} started again meanwhile; it was not deleted"),
        )
        .into());
    }
    Ok(())
}
