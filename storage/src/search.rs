//! Searching tasks: filters, free text and pagination for the API's task list.

use crate::error::StoreError;
use crate::queue::{Priority, Status, TaskRecord};

/// What to search for. Every field is optional; all given ones must match.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Only this status.
    pub status: Option<Status>,
    /// Only this worker.
    pub worker: Option<String>,
    /// Only this action.
    pub action: Option<String>,
    /// Only this priority.
    pub priority: Option<Priority>,
    /// Only tasks started by this user (`started_by`).
    pub started_by: Option<String>,
    /// Created at or after (ms).
    pub created_from: Option<i64>,
    /// Created before (ms, exclusive).
    pub created_to: Option<i64>,
    /// Free text: the task id (`#` optional), or a substring of the worker, action or
    /// message, compared as SQLite's `LIKE` compares: ASCII letters in either case,
    /// every other character (control characters included) only as itself, `%` and `_`
    /// literally. Spaces around it are ignored.
    pub text: Option<String>,
    /// Only tasks with an id below this (keyset pagination: the last id of a page).
    pub before_id: Option<i64>,
    /// Page size.
    pub limit: u32,
    /// Tasks to skip (offset pagination).
    pub offset: u64,
}

/// One page of a search.
#[derive(Debug, Clone)]
pub struct TaskPage {
    /// The tasks, newest first.
    pub tasks: Vec<TaskRecord>,
    /// How many tasks match in all (ignoring `before_id`, `limit` and `offset`).
    pub total: i64,
}

/// Task search for the API and the web interface.
pub trait TaskSearch {
    /// Tasks matching `q`, newest first, with the number of matches.
    fn search_tasks(&self, q: &TaskQuery) -> Result<TaskPage, StoreError>;

    /// The `limit` newest tasks with their worker's scope (`None` when the worker is
    /// no longer registered).
    fn recent_tasks(&self, limit: u32) -> Result<Vec<(TaskRecord, Option<String>)>, StoreError>;

    /// The ids of the tasks task `parent` enqueued (its children), oldest first, at most
    /// `limit` of them (index `tasks_parent`).
    fn task_children(&self, parent: i64, limit: u32) -> Result<Vec<i64>, StoreError>;
}
