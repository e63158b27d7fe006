//! Messages between the host and a runner process: one JSON object per line, commands
//! on the runner's descriptor 3, events on its descriptor 4. Plugin code gets
//! `/dev/null` as stdin and the host's log as stdout and stderr, so nothing a plugin
//! reads or prints can take a command or forge an event by accident.

use serde::{Deserialize, Serialize};

use crate::loader::LoadError;

/// Host to runner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Command {
    /// Run one task. Runs are executed one at a time in the order sent.
    Run {
        /// Task id.
        id: i64,
        /// Worker identifier.
        worker: String,
        /// Action name.
        action: String,
        /// Input data, JSON object text.
        data: String,
        /// Resolved settings, JSON object text (secrets included: never log this).
        settings: String,
        /// Directory for result files.
        result_dir: String,
        /// Longest result JSON the host accepts, in bytes: a longer one fails the
        /// attempt in the runner, before it crosses the protocol.
        max_result_bytes: u64,
        /// CPU time the run may use, in seconds (`None`: no limit).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpu_secs: Option<u64>,
    },
    /// Ask a queued or running task to stop.
    Cancel {
        /// Task id.
        id: i64,
    },
    /// The answer to an [`Event::Enqueue`]: the created task's id, or why not.
    Enqueued {
        /// The request's number, as the runner gave it.
        request: u64,
        /// The created (or, for a unique key, found) task.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        task: Option<i64>,
        /// Why nothing was created.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
}

/// Runner to host.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "ev", rename_all = "snake_case")]
pub enum Event {
    /// The library loaded; the runner accepts commands.
    Ready {
        /// How its sandbox went: "full", "partial" or "none".
        #[serde(default)]
        sandbox: String,
    },
    /// The library could not be loaded; the runner exits.
    LoadFailed {
        /// Why.
        error: LoadError,
    },
    /// Coalesced progress of a task.
    Progress {
        /// Task id.
        id: i64,
        /// Processed.
        processed: u64,
        /// Total.
        total: u64,
        /// Message.
        message: String,
    },
    /// A log message of a task.
    Log {
        /// Task id.
        id: i64,
        /// Level code (see `stask_plugin_api::abi::level`).
        level: u8,
        /// Message.
        message: String,
    },
    /// A task ended: `ok` holds the result JSON, `err` the error message.
    Done {
        /// Task id.
        id: i64,
        /// Result JSON text.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        ok: Option<String>,
        /// Error message.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        err: Option<String>,
        /// Why the host refuses what the run produced (a result over the size limit):
        /// the attempt fails and is not retried, as another would do the same.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// The running task asks for a follow-up task (`Context::enqueue`); the runner
    /// waits for [`Command::Enqueued`] with the same `request`. The host checks the target
    /// against the worker's registered manifest, never against anything the runner says.
    Enqueue {
        /// The running task (the parent).
        id: i64,
        /// Numbers the runner's requests, to match the answer.
        request: u64,
        /// Worker of the new task.
        worker: String,
        /// Its action.
        action: String,
        /// Its data, JSON text as the plugin gave it.
        data: String,
    },
    /// The task just done left threads or processes behind: the runner exits rather than
    /// run anything else, so what was left cannot crash an innocent task. Tasks sent
    /// after that one never started; the host gives them to a fresh runner.
    Retiring {
        /// What was left behind.
        reason: String,
    },
}
