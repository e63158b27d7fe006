//! What can be done to tasks that exist: cancel, retry, "run it now" in a service,
//! delete, the same on many ids at once, and making every pending task due. Each
//! stores the progress-log line that tells the story with the change (the store wakes
//! services when there may be new work); failures caused by the request are
//! [`Problem`]s (not found, wrong state, not the caller's task). Answers are built from
//! what the operation did, not read back afterwards: once a change has committed, the
//! operation has succeeded, whatever the store does next.

use std::cell::RefCell;

use anyhow::Result;
use stask_storage::{now_ms, CancelResult, LogLine, RetryResult, Status, Store, TaskRecord};

use super::find;
use crate::auth::Role;
use crate::ops::Actor;
use crate::problem::Problem;

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

/// Cancels a pending task, or asks the engine running it to stop it. Returns what
/// happened and the task as it is now: as read before the cancel, with the cancel's
/// changes.
pub fn cancel(store: &mut dyn Store, by: &Actor, id: i64) -> Result<(Cancelled, TaskRecord)> {
    let mut task = find(store, id)?;
    by.may_change(&task)?;
    let now = now_ms();
    let line = LogLine::new("cancelled", 0, 0, 0, "", "Cancelled before it started");
    let result = store
        .request_cancel(id, now, &line)?
        .ok_or_else(|| super::no_task(id))?;
    let done = match result {
        CancelResult::CancelledPending => Cancelled::Now,
        CancelResult::Requested => Cancelled::Requested,
        CancelResult::AlreadyFinal(s) => {
            return Err(Problem::conflict(
                "already_finished",
                format!("task {id} is already {s}; nothing to cancel"),
            )
            .into())
        }
    };
    // Committed: from here on nothing may fail.
    let was = match done {
        Cancelled::Now => Status::Pending,
        Cancelled::Requested => Status::Running,
    };
    if task.status != was {
        // It changed between the two reads (claimed, or put back after an attempt):
        // the task as it is now, when the store can tell.
        if let Ok(Some(current)) = store.get_task(id) {
            return Ok((done, current));
        }
    }
    match done {
        Cancelled::Now => {
            task.status = Status::Cancelled;
            task.finished_at = Some(now);
            task.message = line.message.clone();
            task.error = Some(line.message);
        }
        Cancelled::Requested => {
            task.status = Status::Running;
            task.cancel_requested = true;
        }
    }
    Ok((done, task))
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
pub fn retry(store: &mut dyn Store, by: &Actor, id: i64) -> Result<Retried> {
    let before = find(store, id)?;
    by.may_change(&before)?;
    // The task as the retry's transaction read it, and the line stored with it.
    let seen: RefCell<Option<(TaskRecord, LogLine)>> = RefCell::new(None);
    let line = |t: &TaskRecord| {
        let line = retry_line(t);
        *seen.borrow_mut() = Some((t.clone(), line.clone()));
        line
    };
    let now = now_ms();
    let status = match store.retry_task(id, now, &line)? {
        None => return Err(super::no_task(id)),
        Some(RetryResult::NotRetryable(status)) => {
            return Err(Problem::conflict(
                "not_retryable",
                format!("task {id} is {status}; only failed or cancelled tasks can be retried"),
            )
            .into())
        }
        Some(RetryResult::Queued(status)) => status,
    };
    // Committed: the task is what the transaction read, with the retry's changes.
    let (mut task, message) = match seen.into_inner() {
        Some((task, line)) => (task, line.message),
        None => {
            let message = retry_line(&before).message;
            (before, message)
        }
    };
    task.status = Status::Pending;
    task.run_after = now;
    task.finished_at = None;
    task.cancel_requested = false;
    task.message = message;
    Ok(Retried { was: status, task })
}

/// The line a retry stores, from the task as it was.
fn retry_line(t: &TaskRecord) -> LogLine {
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
}

/// What [`run_now`] did.
#[derive(Debug, Clone)]
pub struct RunNow {
    /// The task as it is now (pending and due, or already taken by a service).
    pub task: TaskRecord,
    /// Whether it was waiting until later (a retry's backoff, a later start) and was
    /// made due; false when it was due already, so nothing changed.
    pub made_due: bool,
}

/// "Run it now" for a service: makes a pending task due at once (a retry waiting for
/// its backoff included); the store wakes the services, which claim it in priority
/// order. The task must be pending and its worker active. Whether it then starts is
/// up to the services: [`super::WaitContext`] tells why it may still wait.
pub fn run_now(store: &mut dyn Store, id: i64) -> Result<RunNow> {
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
            .hint(format!(
                "activate it with `stask workers activate {}`",
                t.worker
            ))
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
    let now = now_ms();
    if store.make_task_due(id, now)? {
        // Committed: the task as read, now due.
        let made_due = t.run_after > now;
        let mut t = t;
        t.run_after = t.run_after.min(now);
        return Ok(RunNow { task: t, made_due });
    }
    // Not pending any more: it was claimed (or cancelled) between the two reads, and
    // nothing changed; the task as it is now tells which.
    Ok(RunNow {
        task: find(store, id)?,
        made_due: false,
    })
}

/// Deletes a finished task with its progress log and result files.
pub fn delete(store: &mut dyn Store, id: i64) -> Result<()> {
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

/// What [`process_now`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MadeDue {
    /// Pending tasks that were waiting (for a retry's backoff) and are due now.
    pub made_due: usize,
    /// Tasks a service may claim now (their worker active; tasks waiting for their
    /// dependencies or parked at a limit per key are not).
    pub claimable: i64,
    /// How many of the pending tasks the free slots take, and why the others wait.
    pub due: super::DueSummary,
}

/// "Process everything now" for the services: every pending task becomes due at once
/// (retries waiting for their backoff included) and the services are woken. The
/// answer says how many start and why the others wait, as far as the store tells
/// (slots from `capacity`, or from the hosts of a shared store).
pub fn process_now(store: &mut dyn Store, capacity: &super::Capacity) -> Result<MadeDue> {
    let now = now_ms();
    let made_due = store.make_all_due(now)?;
    // Committed; what follows only reads.
    let claimable = store.count_claimable(now)?;
    let mut context = super::WaitContext::load(store, capacity)?;
    // Tasks waiting for others, or parked at their key's limit, never start now.
    let (dependencies, limit) = context.hold(&store.count_held()?);
    let due = super::DueSummary {
        dependencies,
        limit,
        ..context.due_summary()
    };
    Ok(MadeDue {
        made_due,
        claimable,
        due,
    })
}

/// An action on many tasks at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BulkAction {
    /// [`cancel`] each.
    Cancel,
    /// [`retry`] each.
    Retry,
    /// [`delete`] each.
    Delete,
}

/// Largest id list of one bulk action.
pub const MAX_BULK: usize = 1000;

impl BulkAction {
    /// Parses `cancel`, `retry` or `delete` (surrounding spaces ignored).
    pub fn parse(s: &str) -> Result<BulkAction, Problem> {
        match s.trim() {
            "cancel" => Ok(BulkAction::Cancel),
            "retry" => Ok(BulkAction::Retry),
            "delete" => Ok(BulkAction::Delete),
            other => Err(Problem::invalid(
                "action",
                "invalid_action",
                format!("'{other}' is not a bulk action; use cancel, retry or delete"),
            )),
        }
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        match self {
            BulkAction::Cancel => "cancel",
            BulkAction::Retry => "retry",
            BulkAction::Delete => "delete",
        }
    }

    /// The lowest role that may take it: deleting is for admins.
    pub fn role(self) -> Role {
        match self {
            BulkAction::Cancel | BulkAction::Retry => Role::Operator,
            BulkAction::Delete => Role::Admin,
        }
    }
}

/// What a bulk action did to one task.
#[derive(Debug, Clone)]
pub enum Done {
    /// Cancelled, or cancel requested.
    Cancelled(Cancelled),
    /// Queued again.
    Retried {
        /// The status it had (failed or cancelled).
        was: Status,
        /// Attempts so far.
        attempts: i64,
    },
    /// Deleted.
    Deleted,
}

/// The ids of a bulk request, checked (1 to [`MAX_BULK`] ids, each at least 1: no task
/// has another id) and without repeats, in their first order.
pub fn bulk_ids(ids: &[i64]) -> Result<Vec<i64>, Problem> {
    if ids.is_empty() || ids.len() > MAX_BULK {
        return Err(Problem::invalid(
            "ids",
            "invalid_ids",
            format!("ids must list 1 to {MAX_BULK} task ids"),
        ));
    }
    if let Some(i) = ids.iter().position(|&id| id < 1) {
        let field = format!("ids[{i}]");
        return Err(Problem::invalid(
            &field,
            "invalid_ids",
            format!("{field}: {} is not a task id (ids start at 1)", ids[i]),
        ));
    }
    let mut out = Vec::with_capacity(ids.len());
    for id in ids {
        if !out.contains(id) {
            out.push(*id);
        }
    }
    Ok(out)
}

/// Takes `action` on each of `ids` (see [`bulk_ids`]) for `by`, with a result per id:
/// one refused id (not found, wrong state, not the actor's task) does not stop the
/// others, but a failing store fails the whole.
pub fn bulk(
    store: &mut dyn Store,
    by: &Actor,
    action: BulkAction,
    ids: &[i64],
) -> Result<Vec<(i64, Result<Done, Problem>)>> {
    if by.role < action.role() {
        return Err(Problem::forbidden(
            "forbidden",
            format!("{} needs the {} role", action.as_str(), action.role()),
        )
        .into());
    }
    let mut out = Vec::with_capacity(ids.len());
    for &id in &bulk_ids(ids)? {
        let done = match action {
            BulkAction::Cancel => cancel(store, by, id).map(|(c, _)| Done::Cancelled(c)),
            BulkAction::Retry => retry(store, by, id).map(|r| Done::Retried {
                was: r.was,
                attempts: r.task.attempts,
            }),
            BulkAction::Delete => delete(store, id).map(|()| Done::Deleted),
        };
        match done {
            Ok(d) => out.push((id, Ok(d))),
            Err(e) => match Problem::find(&e) {
                Some(p) => out.push((id, Err(p.clone()))),
                None => return Err(e),
            },
        }
    }
    Ok(out)
}
