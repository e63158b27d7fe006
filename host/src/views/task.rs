//! How a task is shown to scripts and API clients: `tasks show --json`, `tasks list
//! --json` and the HTTP API all serialize [`TaskView`], so they agree field for field.

use serde::Serialize;
use serde_json::Value;
use stask_storage::{now_ms, LogLine, ResultFileInfo, Store, StoredLine, TaskRecord};

use crate::ops::tasks::{Allowed, WaitContext, Waiting};
use crate::ops::Actor;
use crate::sensitive;

/// Progress-log lines a task's details hold at most in `history`: the last ones. The
/// whole log is paged through the logs endpoint (`GET /tasks/{id}/logs`) or printed
/// by `stask tasks logs`.
pub const HISTORY_LINES: usize = 10_000;

/// Most child tasks a task's details list.
pub const CHILDREN_SHOWN: u32 = 1_000;

/// A task as `tasks show --json` / `tasks list --json` and the API show it (the
/// OpenAPI schema `Task`). Times are milliseconds since the Unix epoch.
#[derive(Debug, Clone, Serialize)]
pub struct TaskView {
    /// Id.
    pub id: i64,
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// `pending`, `running`, `completed`, `failed` or `cancelled`.
    pub status: &'static str,
    /// `high`, `normal` or `low`.
    pub priority: &'static str,
    /// Percent done.
    pub progress: i64,
    /// Items processed.
    pub processed: i64,
    /// Items in all.
    pub total: i64,
    /// Latest message.
    pub message: String,
    /// Error message of the last failed attempt.
    pub error: Option<String>,
    /// Who created it: a user name, `token:NAME` or `schedule`.
    pub started_by: Option<String>,
    /// Attempts started so far.
    pub attempts: i64,
    /// Attempts allowed.
    pub max_attempts: i64,
    /// Not claimed before.
    pub run_after: i64,
    /// Created.
    pub created_at: i64,
    /// Last attempt started.
    pub started_at: Option<i64>,
    /// Finished.
    pub finished_at: Option<i64>,
    /// Last sign of life of the process running it.
    pub heartbeat_at: Option<i64>,
    /// Process running it.
    pub owner: Option<String>,
    /// An operator asked to cancel it while running.
    pub cancel_requested: bool,
    /// The limit per key it falls under (left out when none; see `crate::limits`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<TaskLimitView>,
    /// The task that enqueued it while running (left out when none did).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<i64>,
    /// The tasks it enqueued while running, oldest first, the first [`CHILDREN_SHOWN`]
    /// (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub children: Option<Vec<i64>>,
    /// Data with credential-looking values redacted.
    pub data: Value,
    /// Result of a completed task.
    pub result: Option<Value>,
    /// Duration of the last attempt (ms), once finished.
    pub duration_ms: Option<i64>,
    /// Lines in the whole progress log (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<u64>,
    /// Result files (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_files: Option<Vec<ResultFileView>>,
    /// The last [`HISTORY_LINES`] (10,000) progress-log lines, oldest first (details
    /// only); `log_lines` counts them all, and the logs endpoint pages through the
    /// rest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<LogLineView>>,
    /// The tasks it runs after, and those it still waits for (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dependencies: Option<DependenciesView>,
    /// The workflow it is a step of (details only; left out when none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow: Option<TaskWorkflowView>,
    /// Why a pending task is not running (API only: [`TaskView::explained`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
    /// Its worker's scope (API only: [`TaskView::explained`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// What the caller may do with it (API only: [`TaskView::explained`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Allowed>,
}

impl TaskView {
    /// The view of `t` for lists.
    pub fn summary(t: &TaskRecord) -> Self {
        let data = serde_json::from_str(&t.data)
            .map(|v| sensitive::redact(&v))
            .unwrap_or(Value::Null);
        let result = t
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        TaskView {
            id: t.id,
            worker: t.worker.clone(),
            action: t.action.clone(),
            status: t.status.as_str(),
            priority: t.priority.as_str(),
            progress: t.progress,
            processed: t.processed,
            total: t.total,
            message: t.message.clone(),
            error: t.error.clone(),
            started_by: t.started_by.clone(),
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            run_after: t.run_after,
            created_at: t.created_at,
            started_at: t.started_at,
            finished_at: t.finished_at,
            heartbeat_at: t.heartbeat_at,
            owner: t.owner.clone(),
            cancel_requested: t.cancel_requested,
            limit: t.limit.as_ref().map(|l| TaskLimitView {
                rule: l.rule.clone(),
                key: l.key.clone(),
            }),
            parent: t.parent,
            children: None,
            data,
            result,
            duration_ms: t.started_at.zip(t.finished_at).map(|(s, f)| f - s),
            log_lines: None,
            result_files: None,
            history: None,
            dependencies: None,
            workflow: None,
            waiting: None,
            scope: None,
            allowed: None,
        }
    }

    /// The same with what an API client needs beside the stored task: why it waits
    /// when pending, its worker's scope, and what `by` may do with it (by the rules the
    /// operations apply), all from `ctx`, read once per answer.
    pub fn explained(mut self, t: &TaskRecord, ctx: &WaitContext, by: &Actor) -> Self {
        let worker = ctx.worker(&t.worker);
        self.waiting = ctx.waiting(t, now_ms());
        if let (Some(Waiting::Dependencies { waiting_on }), Some(d)) =
            (&mut self.waiting, &self.dependencies)
        {
            waiting_on.clone_from(&d.waiting_on);
        }
        self.scope = worker.map(|w| w.scope.clone());
        self.allowed = Some(Allowed::of(by, t, worker.is_some_and(|w| w.active)));
        self
    }

    /// The view of `t` with its result files and the last [`HISTORY_LINES`] lines of
    /// its progress log, read from `store`.
    pub fn details(store: &dyn Store, t: &TaskRecord) -> anyhow::Result<Self> {
        let mut view = TaskView::summary(t);
        let (last, total) = store.log_tail(t.id, HISTORY_LINES)?;
        view.log_lines = Some(total);
        view.dependencies = store.task_dependencies(t.id)?.map(|d| DependenciesView {
            after: d.after,
            any: d.any,
            waiting_on: d.waiting_on,
        });
        view.children = Some(store.task_children(t.id, CHILDREN_SHOWN)?);
        view.workflow = store
            .task_workflow(t.id)?
            .map(|(id, step)| TaskWorkflowView { id, step });
        view.history = Some(last.iter().filter_map(LogLineView::stored).collect());
        view.result_files = Some(
            store
                .result_files(t.id)?
                .iter()
                .map(ResultFileView::new)
                .collect(),
        );
        Ok(view)
    }
}

/// The limit per key a task falls under (the OpenAPI schema `TaskLimit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskLimitView {
    /// The limit's identity within its worker: `ACTION|TEMPLATE` (`*` for every
    /// action, an empty template for one key per scope).
    pub rule: String,
    /// Its key, rendered from the task's data when it was created (`shop:42`).
    pub key: String,
}

/// The workflow a task is a step of (the OpenAPI schema `TaskWorkflow`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TaskWorkflowView {
    /// The workflow's id.
    pub id: i64,
    /// The task's step in it.
    pub step: String,
}

/// What a task runs after (the OpenAPI schema `TaskDependencies`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DependenciesView {
    /// The tasks it runs after, in id order (a deleted one is still named).
    pub after: Vec<i64>,
    /// Whether it runs whatever their outcome (otherwise a failed or cancelled one
    /// cancels it).
    pub any: bool,
    /// Those it still waits for.
    pub waiting_on: Vec<i64>,
}

/// One progress-log event (the OpenAPI schema `LogLine`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogLineView {
    /// Task status when the line was written.
    pub status: String,
    /// Percent done, 0-100.
    pub progress: u8,
    /// Items processed.
    pub processed: u64,
    /// Items in all (0 when unknown).
    pub total: u64,
    /// Estimated time left (`2m 15s`), `-` when unknown.
    pub eta: String,
    /// Message.
    pub message: String,
    /// When the line was stored (ms since the epoch); `null` for lines stored before
    /// stask kept the time of each line, and for lines not read from the store.
    pub at: Option<i64>,
}

impl LogLineView {
    /// The view of a parsed line (with no time: see [`LogLineView::stored`]).
    pub fn new(l: &LogLine) -> LogLineView {
        LogLineView {
            status: l.status.clone(),
            progress: l.progress,
            processed: l.processed,
            total: l.total,
            eta: l.eta.clone(),
            message: l.message.clone(),
            at: None,
        }
    }

    /// The view of a stored line with the time it was stored; `None` when its text
    /// does not parse (an imported legacy line).
    pub fn stored(l: &StoredLine) -> Option<LogLineView> {
        l.parse().map(|p| LogLineView {
            at: l.at,
            ..LogLineView::new(&p)
        })
    }
}

/// A result file (the OpenAPI schema `ResultFile`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ResultFileView {
    /// Its path in the task's results (`summary.json`, `parts/1.csv`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

impl ResultFileView {
    /// The view of a stored file.
    pub fn new(f: &ResultFileInfo) -> ResultFileView {
        ResultFileView {
            name: f.name.clone(),
            size: f.size,
        }
    }
}
