//! Creating tasks: every check happens before anything is stored.

use anyhow::Result;
use serde_json::Value;
use stask_plugin_api::WorkerManifest;
use stask_storage::progress_log::{self, LogLine};
use stask_storage::{now_ms, NewTask, Priority, Store, NEW_TASK_HIDDEN_MS};

use crate::home::Home;
use crate::problem::Problem;
use crate::sensitive;
use crate::task_log;

/// Largest accepted task data, in bytes of JSON text.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Highest accepted `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// What a caller asks for. Build with [`TaskRequest::new`] and set fields as needed.
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

impl TaskRequest {
    /// A normal-priority request with empty data and 3 attempts.
    pub fn new(worker: &str, action: &str) -> Self {
        TaskRequest {
            worker: worker.to_owned(),
            action: action.to_owned(),
            data: Value::Object(Default::default()),
            priority: Priority::Normal,
            max_attempts: 3,
            started_by: None,
            allow_sensitive: false,
        }
    }
}

/// Validates the request and queues the task; returns its id. The first progress-log
/// line (`pending`) is written right after the row is stored.
pub fn create_task(home: &Home, store: &mut Store, req: &TaskRequest) -> Result<i64> {
    Ok(create_tasks(home, store, req, 1)?[0])
}

/// Largest batch [`create_tasks`] accepts.
pub const MAX_BATCH: usize = 1_000_000;

/// Validates the request once and queues `count` identical tasks in one transaction.
pub fn create_tasks(
    home: &Home,
    store: &mut Store,
    req: &TaskRequest,
    count: usize,
) -> Result<Vec<i64>> {
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
            format!(
                "no worker '{}' is registered (see `stask workers list`)",
                req.worker
            ),
        )
        .into());
    };
    if !worker.active {
        return Err(Problem::invalid(
            "worker",
            "worker_inactive",
            format!(
                "worker '{}' is inactive; activate it first with `stask workers activate {}`",
                req.worker, req.worker
            ),
        )
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
                req.action,
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
                    "task data contains {} which looks like a credential; task data is stored and shown in plain text. Keep credentials in the worker's secret settings (`stask workers settings {}`), or pass --allow-sensitive if this is not a secret",
                    found.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", "),
                    req.worker
                ),
            )
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
    let now = now_ms();
    // Stored hidden from claims until the creation lines below are written: a service
    // claiming a task first would write its start line before the creation line. If
    // this process dies in between, the tasks become claimable when the time passes.
    let hidden_until = now + NEW_TASK_HIDDEN_MS;
    let ids = store.insert_tasks(
        &NewTask {
            worker: req.worker.clone(),
            action: req.action.clone(),
            data,
            priority: req.priority,
            max_attempts: req.max_attempts,
            started_by: req.started_by.clone(),
            run_after: hidden_until,
            created_at: now,
        },
        count,
    )?;
    let by = req
        .started_by
        .as_deref()
        .map(|u| format!(", by {u}"))
        .unwrap_or_default();
    let line = LogLine::new(
        "pending",
        0,
        0,
        0,
        "",
        &format!("Task created (priority {}{by})", req.priority.as_str()),
    );
    let log_dir = home.log_dir();
    for id in &ids {
        if let Err(e) = progress_log::append(
            &task_log::log_path(&log_dir, *id),
            std::slice::from_ref(&line),
        ) {
            tracing::warn!(task = id, "cannot write progress log: {e}");
        }
    }
    if let (Some(first), Some(last)) = (ids.first(), ids.last()) {
        store.release_new_tasks(*first, *last, hidden_until, now)?;
    }
    Ok(ids)
}
