//! How things are shown to scripts and API clients: the JSON of `--json` and of the
//! HTTP API. Each view is a type of its own, built from storage records field by field,
//! so a change in storage never changes the API by accident, and what is never shown
//! (password hashes, raw task data, secret settings) is simply not a field.

pub mod account;
pub mod schedule;
pub mod task;
pub mod worker;
pub mod workflow;

use serde::Serialize;
use stask_storage::StatusCounts;

pub use account::{NewTokenView, TokenView, UserView};
pub use schedule::{ScheduleSummary, ScheduleView, TimeView};
pub use task::{DependenciesView, LogLineView, ResultFileView, TaskView, HISTORY_LINES};
pub use worker::{LibraryView, SettingsView, WorkerDetails, WorkerSummary, WorkerView};
pub use workflow::{WorkflowStepView, WorkflowSummaryView, WorkflowView};

/// Tasks per status.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StatusCountsView {
    /// Pending.
    pub pending: i64,
    /// Running.
    pub running: i64,
    /// Completed.
    pub completed: i64,
    /// Failed.
    pub failed: i64,
    /// Cancelled.
    pub cancelled: i64,
}

impl StatusCountsView {
    /// The counts as stored.
    pub fn new(c: &StatusCounts) -> StatusCountsView {
        StatusCountsView {
            pending: c.pending,
            running: c.running,
            completed: c.completed,
            failed: c.failed,
            cancelled: c.cancelled,
        }
    }

    /// Tasks in all.
    pub fn total(&self) -> i64 {
        self.pending + self.running + self.completed + self.failed + self.cancelled
    }
}
