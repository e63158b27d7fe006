//! The task queue: the records of tasks and the operations that move them through
//! their life (create, claim, progress, finish, cancel, retry, recover, clean up).
//!
//! Every operation that changes a task's status stores the progress-log line that
//! tells it in the same transaction, so a task's status and its log's last line never
//! disagree, whatever process is killed when.

use std::fmt;

use crate::limits::TaskLimit;

use crate::error::StoreError;
use crate::log_line::LogLine;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Waiting to be claimed (possibly not before `run_after`).
    Pending,
    /// Claimed by a process and running in a runner.
    Running,
    /// Finished successfully.
    Completed,
    /// Finished with an error and no attempts left (or not retried yet by hand).
    Failed,
    /// Stopped by an operator.
    Cancelled,
}

impl Status {
    /// All statuses, in lifecycle order.
    pub const ALL: [Status; 5] = [
        Status::Pending,
        Status::Running,
        Status::Completed,
        Status::Failed,
        Status::Cancelled,
    ];

    /// The name stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Running => "running",
            Status::Completed => "completed",
            Status::Failed => "failed",
            Status::Cancelled => "cancelled",
        }
    }

    /// Parses a stored or user-supplied name.
    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// True for completed, failed and cancelled.
    pub fn is_final(self) -> bool {
        matches!(self, Status::Completed | Status::Failed | Status::Cancelled)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad` honours width and alignment, so tables line up.
        f.pad(self.as_str())
    }
}

/// Claim order: high before normal before low.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Claimed first.
    High,
    /// The default.
    Normal,
    /// Claimed last.
    Low,
}

impl Priority {
    /// Stored rank (lower runs first).
    pub fn rank(self) -> i64 {
        match self {
            Priority::High => 0,
            Priority::Normal => 1,
            Priority::Low => 2,
        }
    }

    /// From a stored rank.
    pub fn from_rank(rank: i64) -> Priority {
        match rank {
            0 => Priority::High,
            2 => Priority::Low,
            _ => Priority::Normal,
        }
    }

    /// The name shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Parses `high`, `normal` or `low`.
    pub fn parse(s: &str) -> Option<Priority> {
        [Priority::High, Priority::Normal, Priority::Low]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A task to insert.
#[derive(Debug, Clone)]
pub struct NewTask {
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Input data, a JSON object as text.
    pub data: String,
    /// Claim priority.
    pub priority: Priority,
    /// Attempts allowed before the task stays failed.
    pub max_attempts: u32,
    /// Who created it.
    pub started_by: Option<String>,
    /// Not claimed before this time (ms since epoch).
    pub run_after: i64,
    /// Creation time (ms since epoch).
    pub created_at: i64,
    /// The limit rule it falls under and its key ([`crate::Limits`]); `None`: unlimited.
    pub limit: Option<TaskLimit>,
    /// The running task that enqueued it (a child of that task); `None` for most.
    pub parent: Option<i64>,
}

/// What makes a task being created unique ([`TaskQueue::insert_unique_task`]): another
/// task of the same worker and action with the same key, in one of the statuses, created
/// since a time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uniqueness {
    /// The key (stored with the new task).
    pub key: String,
    /// Statuses in which an existing task counts (never empty).
    pub statuses: Vec<Status>,
    /// Only tasks created at or after this time count (ms); `None`: any age.
    pub since: Option<i64>,
}

/// What [`TaskQueue::insert_unique_task`] did.
#[derive(Debug, Clone)]
pub enum Inserted {
    /// No task matched: this one was created, with this id.
    Created(i64),
    /// This task matched (the newest that did), and nothing was created.
    Existing(Box<TaskRecord>),
}

/// What [`TaskQueue::insert_unique_task_after`] did.
#[derive(Debug, Clone)]
pub enum UniqueAfterInsert {
    /// No task matched: this one was created, with this id, to run after the tasks
    /// named.
    Created(i64),
    /// This task matched (the newest that did), and nothing was created.
    Existing(Box<TaskRecord>),
    /// No task matched, but this dependency does not exist: nothing was created.
    Missing(i64),
}

/// `run_after` of a task waiting for the tasks it depends on: the claim's own
/// `run_after <= now` keeps it out of every claim (no join, no subquery on the hot
/// path) until the last of them ends and sets it to that time.
pub const WAITING_FOR_DEPENDENCIES: i64 = i64::MAX;

/// What a task being created depends on ([`TaskQueue::insert_task_after`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct After {
    /// The tasks it runs after (existing ids, each once).
    pub ids: Vec<i64>,
    /// Run once they have all ended, whatever their outcome; otherwise a failed or
    /// cancelled one cancels the dependant.
    pub any: bool,
}

/// What [`TaskQueue::insert_task_after`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AfterInsert {
    /// The task was created with this id.
    Created(i64),
    /// This dependency does not exist, and nothing was created.
    Missing(i64),
}

/// The dependencies of a task ([`TaskQueue::task_dependencies`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependencies {
    /// The tasks it runs after, in id order (a deleted one is still named).
    pub after: Vec<i64>,
    /// Whether it runs whatever their outcome.
    pub any: bool,
    /// Those it still waits for (empty once released, cancelled or run).
    pub waiting_on: Vec<i64>,
}

/// The message of a dependant cancelled because task `dependency` ended `status`
/// (failed or cancelled).
pub fn dependency_cancel_message(dependency: i64, status: Status) -> String {
    let how = if status == Status::Cancelled {
        "was cancelled"
    } else {
        "failed"
    };
    format!("Cancelled: task #{dependency} it depends on {how}")
}

/// A stored task.
#[derive(Debug, Clone)]
pub struct TaskRecord {
    /// Id.
    pub id: i64,
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Status.
    pub status: Status,
    /// Priority.
    pub priority: Priority,
    /// Percent done.
    pub progress: i64,
    /// Items processed.
    pub processed: i64,
    /// Items in all.
    pub total: i64,
    /// Latest message.
    pub message: String,
    /// Input data (JSON text; may hold values to redact before showing). Not serialized:
    /// views show it redacted and parsed.
    pub data: String,
    /// Result JSON text of a completed task. Not serialized: views show it parsed.
    pub result: Option<String>,
    /// Error message of the last failed attempt.
    pub error: Option<String>,
    /// Who created it.
    pub started_by: Option<String>,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Not claimed before (ms).
    pub run_after: i64,
    /// Created (ms).
    pub created_at: i64,
    /// Last attempt started (ms).
    pub started_at: Option<i64>,
    /// Finished (ms).
    pub finished_at: Option<i64>,
    /// When the process running it claimed it or last renewed its lease on it (ms);
    /// see [`crate::Leases`].
    pub heartbeat_at: Option<i64>,
    /// Process that claimed it.
    pub owner: Option<String>,
    /// An operator asked to cancel it while running.
    pub cancel_requested: bool,
    /// The limit rule it falls under and its key, when it has one.
    pub limit: Option<TaskLimit>,
    /// The task that enqueued it, when a task did.
    pub parent: Option<i64>,
}

/// A claimed task with what the runner needs from its worker's registration.
#[derive(Debug, Clone)]
pub struct ClaimedTask {
    /// The task, now running.
    pub task: TaskRecord,
    /// Its worker's registration, read once per claim and shared by the claim's tasks.
    pub worker: std::sync::Arc<ClaimedWorker>,
}

/// What running a task needs from its worker's registration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClaimedWorker {
    /// The worker's library file (on the host that registered it).
    pub library_path: String,
    /// The SHA-256 of the registered library: another host runs the task from its own
    /// file with this content.
    pub library_sha256: String,
    /// The worker's stored settings (JSON object text, secrets included).
    pub settings: String,
    /// The worker's manifest JSON.
    pub manifest: String,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Success, with the result JSON text.
    Completed {
        /// Result JSON.
        result: String,
    },
    /// Failure. With `retry_at`, the task goes back to pending until then.
    Failed {
        /// Error message.
        error: String,
        /// When to retry (ms), if attempts remain.
        retry_at: Option<i64>,
    },
    /// Stopped on an operator's request.
    Cancelled {
        /// What happened.
        message: String,
    },
    /// Interrupted through no fault of its own (the service stopped): back to pending,
    /// and the attempt does not count.
    Requeued,
}

/// The final state of one attempt, applied by [`TaskQueue::finish_tasks`] (or with the
/// next claim, [`TaskQueue::claim`]).
#[derive(Debug, Clone)]
pub struct Finish {
    /// Task id.
    pub id: i64,
    /// The claim it ends (a recovered and re-claimed task is not touched by a stale owner).
    pub owner: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Final percent.
    pub progress: i64,
    /// Final processed count.
    pub processed: i64,
    /// Final total.
    pub total: i64,
    /// Final message.
    pub message: String,
    /// When (ms).
    pub at: i64,
    /// Progress-log lines that tell how the attempt ended, the last one the line whose
    /// status is the task's new status. They are stored in the same transaction as
    /// the outcome, and only if it applies.
    pub lines: Vec<LogLine>,
}

impl Finish {
    /// Whether this finish queues its task again (a retry, a requeue, a recovery):
    /// such a finish must become a cancel when a cancel was requested while the
    /// attempt ran ([`Finish::as_cancel`]), so the request is not lost with it.
    pub fn queues_again(&self) -> bool {
        matches!(
            self.outcome,
            Outcome::Failed {
                retry_at: Some(_),
                ..
            } | Outcome::Requeued
        )
    }

    /// The columns this finish sets on its task, the same on every backend.
    pub(crate) fn columns(&self) -> FinishColumns<'_> {
        let (status, result, error, finished_at, run_after) = match &self.outcome {
            Outcome::Completed { result } => {
                ("completed", Some(result.as_str()), None, Some(self.at), 0)
            }
            Outcome::Failed {
                error,
                retry_at: Some(at),
            } => ("pending", None, Some(error.as_str()), None, *at),
            Outcome::Failed {
                error,
                retry_at: None,
            } => ("failed", None, Some(error.as_str()), Some(self.at), 0),
            Outcome::Cancelled { message } => {
                ("cancelled", None, Some(message.as_str()), Some(self.at), 0)
            }
            Outcome::Requeued => ("pending", None, None, None, self.at),
        };
        FinishColumns {
            status,
            result,
            error,
            finished_at,
            run_after,
            back: matches!(self.outcome, Outcome::Requeued).into(),
        }
    }

    /// This finish as the cancel a request made while the attempt ran turns it into,
    /// its last line telling it; `None` when it does not queue the task again.
    pub fn as_cancel(&self) -> Option<Finish> {
        let what = match &self.outcome {
            Outcome::Failed {
                error,
                retry_at: Some(_),
            } => format!("the attempt failed: {error}"),
            Outcome::Requeued => "the attempt was interrupted".to_owned(),
            _ => return None,
        };
        let message = format!("Task cancelled as requested ({what})");
        let mut lines = self.lines.clone();
        let last = lines
            .pop()
            .map(|l| LogLine::new("cancelled", l.progress, l.processed, l.total, "", &message));
        lines.extend(last);
        Some(Finish {
            outcome: Outcome::Cancelled {
                message: message.clone(),
            },
            message,
            lines,
            ..self.clone()
        })
    }
}

/// The columns a [`Finish`] sets on its task.
pub(crate) struct FinishColumns<'a> {
    /// The task's new status (`pending` when the attempt queues it again).
    pub status: &'static str,
    /// Its result, when it completed.
    pub result: Option<&'a str>,
    /// Its error (or cancel message), when it failed or was cancelled.
    pub error: Option<&'a str>,
    /// When it ended; `None` when it is queued again.
    pub finished_at: Option<i64>,
    /// When it is due again (a retry's time, a requeue's now; 0 when it ended).
    pub run_after: i64,
    /// 1 when the attempt is given back (an interrupted run is not counted).
    pub back: i64,
}

/// A progress update of a running task.
#[derive(Debug, Clone)]
pub struct ProgressUpdate {
    /// Task id.
    pub id: i64,
    /// Percent.
    pub progress: i64,
    /// Processed.
    pub processed: i64,
    /// Total.
    pub total: i64,
    /// Message.
    pub message: String,
}

/// What [`TaskQueue::request_cancel`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelResult {
    /// The task was pending and is now cancelled.
    CancelledPending,
    /// The task is running; its runner was asked to stop.
    Requested,
    /// The task had already ended with this status.
    AlreadyFinal(Status),
}

/// Filter for [`TaskQueue::list_tasks`].
#[derive(Debug, Clone, Default)]
pub struct TaskFilter {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this worker.
    pub worker: Option<String>,
    /// At most this many (newest first).
    pub limit: Option<u32>,
}

/// Counts per status.
#[derive(Debug, Clone, Default)]
pub struct StatusCounts {
    /// Pending.
    pub pending: i64,
    /// Running.
    pub running: i64,
    /// Completed.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
}

/// What [`TaskQueue::retry_task`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetryResult {
    /// The task was failed or cancelled (the status it had) and is pending again.
    Queued(Status),
    /// The task has this status, which cannot be retried.
    NotRetryable(Status),
}

/// A running task as stuck-task recovery sees it.
#[derive(Debug, Clone)]
pub struct RunningTask {
    /// The task.
    pub task: TaskRecord,
    /// The latest sign of life of its owner: its claim, or the owner's lease renewal,
    /// whichever is later (ms).
    pub alive_at: Option<i64>,
}

/// Builds the line that starts an attempt, from the task as claimed (status running,
/// attempts already counting this one).
pub type StartLine<'a> = &'a dyn Fn(&TaskRecord) -> LogLine;

/// One engine cycle: record how attempts ended, then claim the next tasks, in one
/// transaction ([`TaskQueue::claim`]).
pub struct Claim<'a> {
    /// Outcomes to record first (may be empty).
    pub finishes: &'a [Finish],
    /// Who claims (an owner id, see [`crate::Leases`]).
    pub owner: &'a str,
    /// The current time (ms): due tasks have `run_after <= now`.
    pub now: i64,
    /// Tasks to claim at most (0: only record the finishes).
    pub limit: usize,
    /// Workers whose tasks are not claimed (those at their concurrency limit).
    pub excluded_workers: &'a [&'a str],
    /// The start line of each claimed task, stored with its claim.
    pub start_line: StartLine<'a>,
}

/// The tasks of one store: the queue itself.
pub trait TaskQueue {
    /// Inserts `count` identical pending tasks, each with `creation` as the first line
    /// of its log, in one transaction, and wakes the services waiting for work (see
    /// [`crate::Wakeups`]). Returns their ids in creation order; ids are never reused,
    /// and nothing may assume they are contiguous.
    fn insert_tasks(
        &mut self,
        task: &NewTask,
        count: usize,
        creation: &LogLine,
    ) -> Result<Vec<i64>, StoreError>;

    /// Inserts one pending task like [`TaskQueue::insert_tasks`] unless a task of the
    /// same worker and action has `unique.key` and matches `unique` (a status in
    /// `unique.statuses`, created at or after `unique.since`); then nothing is written
    /// and the newest such task is returned. Atomic: of creators racing with one key,
    /// in any processes or hosts, exactly one creates the task.
    fn insert_unique_task(
        &mut self,
        task: &NewTask,
        unique: &Uniqueness,
        creation: &LogLine,
    ) -> Result<Inserted, StoreError>;

    /// Inserts one pending task like [`TaskQueue::insert_tasks`] that becomes claimable
    /// only once every task in `after.ids` has ended: completed (or, with `after.any`,
    /// ended at all). A dependency that fails finally or is cancelled cancels it with
    /// [`dependency_cancel_message`] (unless `after.any`), in the same transaction as
    /// that outcome; dependencies already ended count at once. Refuses (writing
    /// nothing) when a dependency does not exist.
    fn insert_task_after(
        &mut self,
        task: &NewTask,
        after: &After,
        creation: &LogLine,
    ) -> Result<AfterInsert, StoreError>;

    /// [`TaskQueue::insert_task_after`] for a task with a unique key, as
    /// [`TaskQueue::insert_unique_task`]: when a task matches `unique`, nothing is
    /// written and that task is returned; otherwise the task is created with the key,
    /// to run after `after`. The look-up, the dependencies' check and the insert are one
    /// step for every creator of the key.
    fn insert_unique_task_after(
        &mut self,
        task: &NewTask,
        unique: &Uniqueness,
        after: &After,
        creation: &LogLine,
    ) -> Result<UniqueAfterInsert, StoreError>;

    /// The dependencies of task `id`; `None` when it has none (or does not exist).
    fn task_dependencies(&self, id: i64) -> Result<Option<Dependencies>, StoreError>;

    /// One task.
    fn get_task(&self, id: i64) -> Result<Option<TaskRecord>, StoreError>;

    /// Tasks matching the filter, newest first.
    fn list_tasks(&self, filter: &TaskFilter) -> Result<Vec<TaskRecord>, StoreError>;

    /// Pending tasks that are due and belong to active workers: a claim could take
    /// them now (tasks waiting for their dependencies or parked at a limit per key are
    /// not counted).
    fn count_claimable(&self, now: i64) -> Result<i64, StoreError>;

    /// Pending tasks no claim takes however many slots are free, per worker that has
    /// any, by worker: `(worker, waiting for their dependencies, parked at a limit per
    /// key)`.
    fn count_held(&self) -> Result<Vec<(String, i64, i64)>, StoreError>;

    /// Earliest `run_after` of pending tasks of active workers (to know when to wake).
    fn next_run_after(&self) -> Result<Option<i64>, StoreError>;

    /// Records `claim.finishes` (as [`TaskQueue::finish_tasks`]), then claims up to
    /// `claim.limit` due pending tasks of active workers, in priority then creation
    /// order, storing each one's start line: all in one transaction. No task is ever
    /// claimed twice, whatever other processes do at the same time. Returns which
    /// finishes applied and the claimed tasks, in claim order.
    fn claim(&mut self, claim: &Claim<'_>) -> Result<(Vec<bool>, Vec<ClaimedTask>), StoreError>;

    /// Claims one specific pending task (for `tasks execute`), whatever its `run_after`.
    fn claim_task(
        &mut self,
        id: i64,
        owner: &str,
        now: i64,
        start_line: StartLine<'_>,
    ) -> Result<Option<ClaimedTask>, StoreError>;

    /// Applies progress updates and appends log lines of running tasks in one
    /// transaction. Only tasks still running under `owner` are touched: a task
    /// recovered by another process meanwhile keeps its state and log.
    fn record_progress(
        &mut self,
        owner: &str,
        updates: &[ProgressUpdate],
        lines: &[(i64, LogLine)],
    ) -> Result<(), StoreError>;

    /// Records how attempts ended, each with its log lines, in one transaction.
    /// Returns, per entry, whether it applied: false when the task was no longer
    /// running under that owner (e.g. it was recovered by another process meanwhile).
    fn finish_tasks(&mut self, finishes: &[Finish]) -> Result<Vec<bool>, StoreError>;

    /// Running tasks of `owner` whose cancellation was requested.
    fn cancel_requests(&self, owner: &str) -> Result<Vec<i64>, StoreError>;

    /// Cancels a pending task outright (with `line` as its last log line), or flags a
    /// running one for its owner to stop (and wakes the services). `None` when the
    /// task does not exist.
    fn request_cancel(
        &mut self,
        id: i64,
        now: i64,
        line: &LogLine,
    ) -> Result<Option<CancelResult>, StoreError>;

    /// Puts a failed or cancelled task back to pending (its attempt count is kept),
    /// with the line `line` builds from the task as it was; wakes the services. `None`
    /// when the task does not exist.
    fn retry_task(
        &mut self,
        id: i64,
        now: i64,
        line: &dyn Fn(&TaskRecord) -> LogLine,
    ) -> Result<Option<RetryResult>, StoreError>;

    /// Makes a pending task due now and wakes the services. Returns false when the
    /// task is not pending (or does not exist).
    fn make_task_due(&mut self, id: i64, now: i64) -> Result<bool, StoreError>;

    /// Makes every pending task due now (retries waiting for their backoff included)
    /// and wakes the services. Returns how many were waiting.
    fn make_all_due(&mut self, now: i64) -> Result<usize, StoreError>;

    /// Every running task with its owner's latest sign of life (for recovery).
    fn running_tasks(&self) -> Result<Vec<RunningTask>, StoreError>;

    /// Deletes finished tasks by id, with their logs and result files, in one
    /// transaction (a task that started running again meanwhile is kept). Returns the
    /// ids deleted.
    fn delete_finished_tasks(&mut self, ids: &[i64]) -> Result<Vec<i64>, StoreError>;

    /// Deletes at most `batch` tasks with one of `statuses` that finished before
    /// `cutoff`, oldest first, with their logs and result files, in one short
    /// transaction; returns their ids. Callers repeat until fewer than `batch` come
    /// back, so other writers get the database between batches.
    fn delete_finished_before(
        &mut self,
        statuses: &[Status],
        cutoff: i64,
        batch: usize,
    ) -> Result<Vec<i64>, StoreError>;

    /// Gives the space of deleted rows back to the operating system, a little at a
    /// time (at most `max_bytes` per call); returns the bytes given back. Cheap when
    /// there is nothing to give back.
    fn release_space(&mut self, max_bytes: u64) -> Result<u64, StoreError>;
}
