//! Workflows: several tasks created together as a named group, with dependencies
//! between them (the task dependencies of [`crate::TaskQueue::insert_task_after`]).
//! A workflow is stored as its own row (name, creator, creation time); each of its
//! tasks names it and its step. Cancel and retry act on the group in one transaction.

use crate::error::StoreError;
use crate::log_line::LogLine;
use crate::queue::{NewTask, Status, StatusCounts, TaskRecord};

/// One step of a workflow being created ([`Workflows::insert_workflow`]).
#[derive(Debug, Clone)]
pub struct NewStep {
    /// The step's name, unique in its workflow.
    pub step: String,
    /// The task to create.
    pub task: NewTask,
    /// The steps it runs after, as indices of earlier steps in [`NewWorkflow::steps`].
    pub after: Vec<usize>,
    /// Run once they have ended whatever their outcome.
    pub after_any: bool,
    /// Its creation line.
    pub creation: LogLine,
}

/// A workflow to create.
#[derive(Debug, Clone)]
pub struct NewWorkflow {
    /// Its name (not unique).
    pub name: String,
    /// Who creates it.
    pub started_by: Option<String>,
    /// Creation time (ms).
    pub created_at: i64,
    /// Its steps in an order where every step comes after those it runs after.
    pub steps: Vec<NewStep>,
}

/// A stored workflow with the counts of its tasks per status.
#[derive(Debug, Clone)]
pub struct WorkflowRecord {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Created (ms).
    pub created_at: i64,
    /// Who created it.
    pub started_by: Option<String>,
    /// Its tasks (still stored) per status.
    pub counts: StatusCounts,
    /// The sum of its tasks' progress in percent, an ended task counting 100.
    pub progress_sum: i64,
    /// When its last task ended, once all have.
    pub finished_at: Option<i64>,
}

impl WorkflowRecord {
    /// How many of its tasks are stored.
    pub fn tasks(&self) -> i64 {
        let c = &self.counts;
        c.pending + c.running + c.completed + c.failed + c.cancelled
    }

    /// Overall progress in percent: ended tasks count 100, running ones their own.
    pub fn progress(&self) -> i64 {
        let n = self.tasks();
        if n == 0 {
            return 100;
        }
        (self.progress_sum / n).clamp(0, 100)
    }

    /// The workflow's status: `running` while a task runs or some ended and others
    /// wait, `pending` while none has started, else `failed` when one failed,
    /// `cancelled` when one was cancelled, `completed` when all completed.
    pub fn status(&self) -> Status {
        let c = &self.counts;
        if c.running > 0 {
            return Status::Running;
        }
        if c.pending > 0 {
            return if c.completed + c.failed + c.cancelled > 0 {
                Status::Running
            } else {
                Status::Pending
            };
        }
        if c.failed > 0 {
            Status::Failed
        } else if c.cancelled > 0 {
            Status::Cancelled
        } else {
            Status::Completed
        }
    }
}

/// One step of a stored workflow.
#[derive(Debug, Clone)]
pub struct WorkflowStep {
    /// The step's name.
    pub step: String,
    /// Its task.
    pub task: TaskRecord,
    /// The tasks it runs after, in id order.
    pub after: Vec<i64>,
    /// Whether it runs whatever their outcome.
    pub after_any: bool,
}

/// A workflow with its steps ([`Workflows::get_workflow`]).
#[derive(Debug, Clone)]
pub struct WorkflowDetail {
    /// The workflow and its counts.
    pub workflow: WorkflowRecord,
    /// Its steps (tasks still stored), in id order, so each after those it runs after.
    pub steps: Vec<WorkflowStep>,
}

/// What [`Workflows::cancel_workflow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkflowCancel {
    /// Pending tasks cancelled.
    pub cancelled: usize,
    /// Running tasks whose runners were asked to stop.
    pub requested: usize,
}

/// What [`Workflows::retry_workflow`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkflowRetry {
    /// Failed or cancelled tasks queued again.
    pub retried: usize,
    /// Of them, those that wait again for tasks retried with them.
    pub waiting: usize,
}

/// The workflows of one store.
pub trait Workflows {
    /// Creates the workflow and every task of it with its dependencies and creation
    /// line, in one transaction: all of it or nothing. Returns its id and its tasks'
    /// ids, in the order of `workflow.steps`. Wakes the services.
    fn insert_workflow(&mut self, workflow: &NewWorkflow) -> Result<(i64, Vec<i64>), StoreError>;

    /// One workflow with its steps; `None` when it does not exist.
    fn get_workflow(&self, id: i64) -> Result<Option<WorkflowDetail>, StoreError>;

    /// Workflows, newest first, `limit` from `offset`, and how many there are.
    fn list_workflows(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<WorkflowRecord>, i64), StoreError>;

    /// Cancels the workflow's pending tasks (each with `line` as its last log line, their
    /// dependants outside it following as a cancel of a single task does) and asks the
    /// runners of its running ones to stop, in one transaction; wakes the services.
    /// `None` when the workflow does not exist.
    fn cancel_workflow(
        &mut self,
        id: i64,
        now: i64,
        line: &LogLine,
    ) -> Result<Option<WorkflowCancel>, StoreError>;

    /// Puts the workflow's failed and cancelled tasks back to pending (attempt counts
    /// kept), each with the line `line` builds from the task as it was, in one
    /// transaction; a retried task whose dependencies are not all completed (some are
    /// retried with it, or still running) waits for them again. Wakes the services.
    /// `None` when the workflow does not exist.
    fn retry_workflow(
        &mut self,
        id: i64,
        now: i64,
        line: &dyn Fn(&TaskRecord) -> LogLine,
    ) -> Result<Option<WorkflowRetry>, StoreError>;

    /// The workflow and step of task `id`, when it belongs to one.
    fn task_workflow(&self, id: i64) -> Result<Option<(i64, String)>, StoreError>;
}

/// A workflow record from its columns and aggregates (counts per status, the progress sum, the last finish).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record(
    id: i64,
    name: String,
    created_at: i64,
    started_by: Option<String>,
    counts: [i64; 5],
    progress_sum: i64,
    last_finish: Option<i64>,
) -> WorkflowRecord {
    let counts = StatusCounts {
        pending: counts[0],
        running: counts[1],
        completed: counts[2],
        failed: counts[3],
        cancelled: counts[4],
    };
    let unfinished = counts.pending + counts.running;
    WorkflowRecord {
        id,
        name,
        created_at,
        started_by,
        counts,
        progress_sum,
        finished_at: if unfinished == 0 { last_finish } else { None },
    }
}
