//! A task the engine has claimed and not yet concluded: what its log lines need.

use std::sync::Arc;
use std::time::Instant;

use stask_storage::{LogLine, Status, TaskRecord};

use crate::metrics::TaskSeries;
use crate::task_log;

/// A claimed task in flight.
pub struct Running {
    /// The task as claimed.
    pub task: TaskRecord,
    /// The slot it was queued on; `None` while it waits for one.
    pub slot: Option<usize>,
    /// When this engine dispatched it (for durations and the ETA).
    pub started: Instant,
    /// Items processed, as last reported.
    pub processed: u64,
    /// Items in all, as last reported.
    pub total: u64,
    /// The last progress message.
    pub message: String,
    /// Worker log messages of this attempt so far.
    pub log_lines: u32,
    /// Whether the worker was told to stop.
    pub cancel_sent: bool,
    /// The metrics of its worker and action.
    pub series: Arc<TaskSeries>,
}

impl Running {
    /// Starts tracking a claimed task, recording into `series`.
    pub fn new(task: TaskRecord, series: Arc<TaskSeries>) -> Self {
        Running {
            task,
            slot: None,
            started: Instant::now(),
            processed: 0,
            total: 0,
            message: String::new(),
            log_lines: 0,
            cancel_sent: false,
            series,
        }
    }

    /// A log line with the task's current progress, ETA and `message`.
    pub fn line(&self, status: Status, message: &str) -> LogLine {
        LogLine::new(
            status.as_str(),
            task_log::percent(self.processed, self.total),
            self.processed,
            self.total,
            &task_log::eta(
                self.started.elapsed().as_millis() as i64,
                self.processed,
                self.total,
            ),
            message,
        )
    }
}

/// The line that starts an attempt: `Started attempt 2 of 3`, or for an attempt past
/// the automatic ones (after manual retries) `Started attempt 4 (retried by hand after
/// its 3 automatic attempts)`.
pub fn start_line(t: &TaskRecord) -> LogLine {
    let (attempt, max) = (t.attempts, t.max_attempts);
    let message = if attempt <= max {
        format!("Started attempt {attempt} of {max}")
    } else {
        format!("Started attempt {attempt} (retried by hand after its {max} automatic attempts)")
    };
    LogLine::new("running", 0, 0, 0, "", &message)
}
