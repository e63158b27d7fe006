//! Creating tasks: every check happens before anything is stored, and the tasks are
//! stored with their creation lines in one transaction (the store wakes the services).
//! The answer is built from what was stored, never read back: once the transaction
//! has committed, creating has succeeded, whatever the store does next.

use anyhow::Result;
use serde_json::Value;
use stask_plugin_api::WorkerManifest;
use stask_storage::{now_ms, LogLine, NewTask, Priority, Status, Store, TaskRecord};

use crate::problem::{shown_input, Problem};
use crate::sensitive;

/// Largest accepted task data, in bytes of JSON text.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Highest accepted `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// `max_attempts` when the caller gives none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Input data: must be a JSON object.
    pub data: Value,
    /// Claim priority.
    pub priority: Priority,
    /// Attempts allowed (1-100).
    pub max_attempts: u32,
    /// Who creates it.
    pub started_by: Option<String>,
    /// Accept credential-looking keys in `data`.
    pub allow_sensitive: bool,
}

/// `'a', 'b.c'`: credential-looking paths for a message.
pub(crate) fn quoted(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a command-line user can do about data refused as sensitive.
pub(crate) fn sensitive_hint(worker: &str) -> String {
    format!("set credentials with `stask workers settings {worker}`, or pass --allow-sensitive if this is not a secret")
}

/// Largest batch [`create_tasks`] accepts.
pub const MAX_BATCH: usize = 1_000_000;

/// Tasks stored by [`create`].
#[derive(Debug, Clone)]
pub struct Created {
    /// Their ids, in creation order.
    pub ids: Vec<i64>,
    /// The first of them as it was stored (built from what was inserted, not read
    /// back).
    pub first: TaskRecord,
}

/// Validates the request once and queues `count` identical tasks in one transaction.
pub fn create_tasks(store: &mut dyn Store, req: &TaskRequest, count: usize) -> Result<Vec<i64>> {
    create(store, req, count).map(|c| c.ids)
}

/// [`create_tasks`], answering with the first task as stored too.
pub fn create(store: &mut dyn Store, req: &TaskRequest, count: usize) -> Result<Created> {
    let data = validate(store, req, count)?;
    let created = insert(store, req, data, count)?;
    crate::metrics::global().tasks_created(&req.worker, &req.action, created.ids.len() as u64);
    Ok(created)
}

/// Every check of a request, against the registered worker; returns the data as the
/// JSON text to store.
fn validate(store: &dyn Store, req: &TaskRequest, count: usize) -> Result<String> {
    if count == 0 || count > MAX_BATCH {
        return Err(Problem::invalid(
            "count",
            "invalid_count",
            format!("count must be between 1 and {MAX_BATCH}, got {count}"),
        )
        .into());
    }
    let Some(worker) = store.get_worker(&req.worker)? else {
        return Err(Problem::invalid(
            "worker",
            "unknown_worker",
            format!("no worker '{}' is registered", shown_input(&req.worker)),
        )
        .hint("see `stask workers list`")
        .into());
    };
    if !worker.active {
        return Err(Problem::invalid(
            "worker",
            "worker_inactive",
            match &worker.inactive_reason {
                Some(why) => format!(
                    "worker '{}' is inactive: {why}; activate it first",
                    req.worker
                ),
                None => format!("worker '{}' is inactive; activate it first", req.worker),
            },
        )
        .hint(format!(
            "activate it with `stask workers activate {}`",
            req.worker
        ))
        .into());
    }
    // Its tasks could only fail, each after all its attempts. (One stat per request,
    // not per task of a batch.) On a shared store the file is another host's business:
    // the task waits for a host that holds the library, and `workers show` says which.
    if !store.is_shared() && library_gone(&worker.library.path) {
        return Err(Problem::conflict(
            "library_missing",
            format!(
                "worker '{}' cannot run tasks: its library '{}' no longer exists. Restore the file, or remove the worker (clean up orphaned workers)",
                req.worker, worker.library.path
            ),
        )
        .hint("restore the file, or remove workers whose library is gone with `stask workers clean-orphaned`")
        .into());
    }
    let manifest: WorkerManifest = serde_json::from_str(&worker.manifest)?;
    if manifest.find_action(&req.action).is_none() {
        let names: Vec<&str> = manifest.actions.iter().map(|a| a.name.as_str()).collect();
        return Err(Problem::invalid(
            "action",
            "unknown_action",
            format!(
                "worker '{}' has no action '{}' (its actions: {})",
                req.worker,
                shown_input(&req.action),
                names.join(", ")
            ),
        )
        .into());
    }
    if !req.data.is_object() {
        return Err(Problem::invalid(
            "data",
            "data_not_object",
            format!(
                "task data must be a JSON object like {{\"file\": \"products.csv\"}}, not {}",
                stask_plugin_api::manifest::json_type_name(&req.data)
            ),
        )
        .into());
    }
    let data = serde_json::to_string(&req.data)?;
    if data.len() > MAX_DATA_BYTES {
        return Err(Problem::invalid(
            "data",
            "data_too_large",
            format!(
                "task data is {} bytes; the limit is {} bytes. Pass large inputs as a file path instead",
                data.len(),
                MAX_DATA_BYTES
            ),
        )
        .into());
    }
    if !req.allow_sensitive {
        let found = sensitive::sensitive_paths(&req.data);
        if !found.is_empty() {
            return Err(Problem::invalid(
                "data",
                "sensitive_data",
                format!(
                    "task data contains {} which looks like a credential; task data is stored and shown in plain text. Keep credentials in the worker's secret settings instead",
                    quoted(&found)
                ),
            )
            .hint(sensitive_hint(&req.worker))
            .into());
        }
    }
    if req.max_attempts == 0 || req.max_attempts > MAX_ATTEMPTS_LIMIT {
        return Err(Problem::invalid(
            "max_attempts",
            "invalid_max_attempts",
            format!(
                "max attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {}",
                req.max_attempts
            ),
        )
        .into());
    }
    Ok(data)
}

/// Whether a worker's library file is gone: nothing at its path, or a link to nothing.
/// A file that exists but cannot be read (permissions) is not gone: running says why.
fn library_gone(path: &str) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Stores `count` tasks of `req` with their creation lines, in one transaction.
fn insert(store: &mut dyn Store, req: &TaskRequest, data: String, count: usize) -> Result<Created> {
    let now = now_ms();
    let by = req
        .started_by
        .as_deref()
        .map(|u| format!(", by {u}"))
        .unwrap_or_default();
    let creation = LogLine::new(
        "pending",
        0,
        0,
        0,
        "",
        &format!("Task created (priority {}{by})", req.priority.as_str()),
    );
    let task = NewTask {
        worker: req.worker.clone(),
        action: req.action.clone(),
        data,
        priority: req.priority,
        max_attempts: req.max_attempts,
        started_by: req.started_by.clone(),
        run_after: now,
        created_at: now,
    };
    // One transaction: the tasks with their creation lines, or nothing (and the
    // services are woken by the store).
    let ids = store.insert_tasks(&task, count, &creation)?;
    let Some(&first) = ids.first() else {
        anyhow::bail!("the store created none of {count} tasks");
    };
    let first = stored(first, task, &creation);
    Ok(Created { ids, first })
}

/// Task `id` as [`stask_storage::TaskQueue::insert_tasks`] stores `task`: pending,
/// with the creation line's message, nothing run yet.
fn stored(id: i64, task: NewTask, creation: &LogLine) -> TaskRecord {
    TaskRecord {
        id,
        worker: task.worker,
        action: task.action,
        status: Status::Pending,
        priority: task.priority,
        progress: 0,
        processed: 0,
        total: 0,
        message: creation.message.clone(),
        data: task.data,
        result: None,
        error: None,
        started_by: task.started_by,
        attempts: 0,
        max_attempts: i64::from(task.max_attempts),
        run_after: task.run_after,
        created_at: task.created_at,
        started_at: None,
        finished_at: None,
        heartbeat_at: None,
        owner: None,
        cancel_requested: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ops::testing::{problem, Env, PLAIN_MANIFEST};

    #[test]
    fn a_worker_whose_library_is_gone_gets_no_tasks_and_the_message_names_the_file() {
        let mut env = Env::new();
        let lib = env.worker("gone", PLAIN_MANIFEST, true, false);
        let req = TaskRequest {
            worker: "gone".into(),
            action: "go".into(),
            data: json!({}),
            priority: Priority::Normal,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            started_by: None,
            allow_sensitive: false,
        };
        let p = problem(create_tasks(&mut *env.store, &req, 1));
        assert_eq!(p.code, "library_missing");
        assert!(
            p.message.contains(&lib.display().to_string()),
            "{}",
            p.message
        );
        assert!(p.message.contains("Restore"), "{}", p.message);
        let hint = p.hint.as_deref().unwrap_or_default();
        assert!(hint.contains("stask workers clean-orphaned"), "{hint}");
        assert_eq!(env.store.task_status_counts().unwrap().pending, 0);
    }
}
