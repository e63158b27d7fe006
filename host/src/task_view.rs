//! How a task is shown to scripts and API clients: `tasks show --json`, `tasks list
//! --json` and the HTTP API all serialize [`TaskView`], so they agree field for field.

use serde::Serialize;
use serde_json::Value;
use stask_storage::{LogLine, ResultFileInfo, Store, TaskRecord};

use crate::sensitive;

/// A task as `tasks show --json` / `tasks list --json` print it.
#[derive(Debug, Serialize)]
pub struct TaskView {
    /// The stored record (data and result are shown below, parsed).
    #[serde(flatten)]
    pub task: TaskRecord,
    /// Data with credential-looking values redacted.
    pub data: Value,
    /// Result of a completed task.
    pub result: Option<Value>,
    /// Duration of the last attempt (ms), once finished.
    pub duration_ms: Option<i64>,
    /// Lines in the progress log (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_lines: Option<u64>,
    /// Result files (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_files: Option<Vec<ResultFileInfo>>,
    /// Every progress-log line (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<LogLine>>,
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
            duration_ms: t.started_at.zip(t.finished_at).map(|(s, f)| f - s),
            task: t.clone(),
            data,
            result,
            log_lines: None,
            result_files: None,
            history: None,
        }
    }

    /// The view of `t` with its result files and progress history, read from `store`.
    pub fn details(store: &dyn Store, t: &TaskRecord) -> anyhow::Result<Self> {
        let mut view = TaskView::summary(t);
        let lines = store.log_lines(t.id, 0, usize::MAX)?;
        view.log_lines = Some(lines.last().map_or(0, |l| l.seq));
        view.history = Some(lines.iter().filter_map(|l| l.parse()).collect());
        view.result_files = Some(store.result_files(t.id)?);
        Ok(view)
    }
}

/// A log line for people: status, percent, counts, ETA and message.
pub fn format_line(l: &LogLine) -> String {
    let counts = if l.total > 0 {
        format!(" {}/{}", l.processed, l.total)
    } else {
        String::new()
    };
    let eta = if l.eta != "-" && l.status == "running" {
        format!(" ETA {}", l.eta)
    } else {
        String::new()
    };
    format!(
        "{:<9} {:>3}%{counts}{eta}  {}",
        l.status, l.progress, l.message
    )
}
