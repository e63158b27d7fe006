//! Tasks: creating them ([`mod@create`]), acting on them ([`actions`]: cancel, retry, run
//! now, delete, bulk, process now), why a pending one waits ([`mod@waiting`]) and cleaning
//! up finished ones ([`mod@clean`]), with the
//! input forms both front-ends accept (priorities, statuses, defaults).

pub mod actions;
pub mod allowed;
pub mod clean;
pub mod create;
pub mod waiting;

use stask_storage::{Priority, ResultFileInfo, Status, Store, TaskRecord};

use crate::problem::Problem;

pub use actions::{
    attempts_so_far, bulk, bulk_ids, cancel, delete, process_now, retry, run_now, BulkAction,
    Cancelled, Done, MadeDue, Retried, RunNow, MAX_BULK,
};
pub use allowed::Allowed;
pub use clean::{clean, CleanReport, CleanRequest, DEFAULT_OLDER_THAN};
pub use create::{
    create, create_after, create_tasks, create_with, parse_unique_states, AfterRequest, Created,
    TaskRequest, UniqueRequest, DEFAULT_MAX_ATTEMPTS, DEFAULT_UNIQUE_STATUSES, MAX_AFTER,
    MAX_ATTEMPTS_LIMIT, MAX_BATCH, MAX_DATA_BYTES,
};
pub use waiting::{limit_waiting, Capacity, DueSummary, LimitKind, WaitContext, Waiting};

/// The error for an unknown task id.
pub fn no_task(id: i64) -> anyhow::Error {
    Problem::not_found("task_not_found", format!("no task {id}"))
        .hint("see `stask tasks list`")
        .into()
}

/// Reads a task, failing with [`no_task`] when it does not exist.
pub fn find(store: &dyn Store, id: i64) -> anyhow::Result<TaskRecord> {
    store.get_task(id)?.ok_or_else(|| no_task(id))
}

/// One of task `id`'s result files: the one named `wanted` exactly (`summary.json`,
/// `parts/1.csv`), or else the one at that position in the task's listing (`0`).
pub fn result_file(store: &dyn Store, id: i64, wanted: &str) -> anyhow::Result<ResultFileInfo> {
    find(store, id)?;
    let files = store.result_files(id)?;
    let found = files
        .iter()
        .find(|f| f.name == wanted)
        .or_else(|| wanted.parse::<usize>().ok().and_then(|i| files.get(i)));
    if let Some(f) = found {
        return Ok(f.clone());
    }
    let listed: Vec<&str> = files.iter().map(|f| f.name.as_str()).collect();
    Err(Problem::not_found(
        "file_not_found",
        format!(
            "task {id} has no result file '{wanted}'{}",
            if listed.is_empty() {
                " (it has none)".to_owned()
            } else {
                format!("; its files: {}", listed.join(", "))
            }
        ),
    )
    .into())
}

/// Reads a priority given by a person (`high`, `normal`, `low`), as a [`Problem`]
/// naming `field` when wrong.
pub fn parse_priority(s: &str, field: &str) -> Result<Priority, Problem> {
    Priority::parse(s).ok_or_else(|| {
        Problem::invalid(
            field,
            "invalid_priority",
            format!("'{s}' is not a priority; use high, normal or low"),
        )
    })
}

/// Reads a status given by a person, as a [`Problem`] naming `field` when wrong.
pub fn parse_status(s: &str, field: &str) -> Result<Status, Problem> {
    Status::parse(s).ok_or_else(|| {
        Problem::invalid(
            field,
            "invalid_status",
            format!("'{s}' is not a status; use pending, running, completed, failed or cancelled"),
        )
    })
}

#[cfg(test)]
mod tests;
