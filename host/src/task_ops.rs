//! Operations on one task shared by the CLI and the HTTP API: cancel, retry, "run it
//! now" in a service, delete. Each writes the progress-log line that tells the story
//! and wakes services when there may be new work; failures caused by the request are
//! [`Problem`]s (not found, wrong state).

use stask_storage::progress_log::{self, LogLine};
use stask_storage::{now_ms, CancelResult, Status, Store, TaskRecord};

use crate::home::Home;
use crate::problem::Problem;
use crate::task_log;

/// The error for an unknown task id.
pub fn no_task(id: i64) -> anyhow::Error {
    Problem::not_found(
        "task_not_found",
        format!("no task {id} (see `stask tasks list`)"),
    )
    .into()
}

/// Reads a task, failing with [`no_task`] when it does not exist.
pub fn find(store: &Store, id: i64) -> anyhow::Result<TaskRecord> {
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
pub fn cancel(home: &Home, store: &mut Store, id: i64) -> anyhow::Result<Cancelled> {
    let result = store
        .request_cancel(id, now_ms(), "Cancelled before it started")?
        .ok_or_else(|| no_task(id))?;
    match result {
        CancelResult::CancelledPending => {
            let line = LogLine::new("cancelled", 0, 0, 0, "", "Cancelled before it started");
            progress_log::append(&task_log::log_path(&home.log_dir(), id), &[line])?;
            Ok(Cancelled::Now)
        }
        CancelResult::Requested => {
            // The engine looks at cancel requests when it wakes; do not make it wait.
            crate::wake::notify(home);
            Ok(Cancelled::Requested)
        }
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
pub fn retry(home: &Home, store: &mut Store, id: i64) -> anyhow::Result<Retried> {
    let (status, ok) = store.retry_task(id, now_ms())?.ok_or_else(|| no_task(id))?;
    if !ok {
        return Err(Problem::conflict(
            "not_retryable",
            format!("task {id} is {status}; only failed or cancelled tasks can be retried"),
        )
        .into());
    }
    let t = find(store, id)?;
    let line = LogLine::new(
        "pending",
        t.progress.clamp(0, 100) as u8,
        t.processed.max(0) as u64,
        t.total.max(0) as u64,
        "",
        &format!(
            "Queued for retry (was {status}; {})",
            attempts_so_far(t.attempts)
        ),
    );
    progress_log::append(&task_log::log_path(&home.log_dir(), id), &[line])?;
    crate::wake::notify(home);
    Ok(Retried {
        was: status,
        task: t,
    })
}

/// "Run it now" for a service: makes a pending task due at once (a retry waiting for
/// its backoff included) and wakes the services of this home, which claim it in
/// priority order. The task must be pending and its worker active.
pub fn run_now(home: &Home, store: &Store, id: i64) -> anyhow::Result<TaskRecord> {
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
    crate::wake::notify(home);
    find(store, id)
}

/// Deletes a finished task with its progress log and result files.
pub fn delete(home: &Home, store: &mut Store, id: i64) -> anyhow::Result<()> {
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
    let _ = std::fs::remove_file(task_log::log_path(&home.log_dir(), id));
    let _ = std::fs::remove_dir_all(task_log::result_dir(&home.results_root(), id));
    Ok(())
}
