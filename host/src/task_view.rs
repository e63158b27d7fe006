//! How a task is shown to scripts and API clients: `tasks show --json`, `tasks list
//! --json` and the HTTP API all serialize [`TaskView`], so they agree field for field.

use std::path::Path;

use serde::Serialize;
use serde_json::Value;
use stask_storage::progress_log::{self, LogLine};
use stask_storage::TaskRecord;

use crate::home::Home;
use crate::sensitive;
use crate::task_log;

/// A result file of a task: its path relative to the task's result directory.
#[derive(Debug, Clone, Serialize)]
pub struct ResultFile {
    /// Relative path (`summary.json`, `parts/1.csv`).
    pub name: String,
    /// Size in bytes.
    pub size: u64,
}

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
    /// The progress log's path.
    pub log_file: String,
    /// Result files (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result_files: Option<Vec<ResultFile>>,
    /// Every progress-log line (details only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<LogLine>>,
}

impl TaskView {
    /// The view of `t`; `details` adds result files and the progress history.
    pub fn new(home: &Home, t: &TaskRecord, details: bool) -> Self {
        let data = serde_json::from_str(&t.data)
            .map(|v| sensitive::redact(&v))
            .unwrap_or(Value::Null);
        let result = t
            .result
            .as_deref()
            .and_then(|r| serde_json::from_str(r).ok());
        let log_file = task_log::log_path(&home.log_dir(), t.id);
        let (result_files, history) = if details {
            (
                Some(result_files(&task_log::result_dir(
                    &home.results_root(),
                    t.id,
                ))),
                Some(
                    progress_log::read_from(&log_file, 0)
                        .map(|(l, _)| l)
                        .unwrap_or_default(),
                ),
            )
        } else {
            (None, None)
        };
        TaskView {
            duration_ms: t.started_at.zip(t.finished_at).map(|(s, f)| f - s),
            task: t.clone(),
            data,
            result,
            log_file: log_file.display().to_string(),
            result_files,
            history,
        }
    }
}

/// The regular files under a result directory, by name. Symbolic links are left out
/// (neither followed nor listed): a plugin cannot make stask serve a file from
/// elsewhere.
pub fn result_files(dir: &Path) -> Vec<ResultFile> {
    let mut out: Vec<ResultFile> = walk_files(dir, dir);
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn walk_files(root: &Path, dir: &Path) -> Vec<ResultFile> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        // DirEntry::metadata does not follow symbolic links.
        let Ok(meta) = e.metadata() else { continue };
        if meta.is_dir() {
            out.extend(walk_files(root, &e.path()));
        } else if meta.is_file() {
            let name = e
                .path()
                .strip_prefix(root)
                .unwrap_or(&e.path())
                .display()
                .to_string();
            out.push(ResultFile {
                name,
                size: meta.len(),
            });
        }
    }
    out
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
