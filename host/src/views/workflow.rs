//! Workflows as `--json` and the API show them: a summary with overall progress and the
//! counts of its tasks per status, and the workflow with its steps (each its task and
//! the steps it runs after).

use std::collections::HashMap;

use serde::Serialize;
use stask_storage::{WorkflowDetail, WorkflowRecord};

use super::{StatusCountsView, TaskView};

/// A workflow with overall progress.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowSummaryView {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// `pending` (nothing started), `running`, `completed`, `failed` or `cancelled`.
    pub status: &'static str,
    /// Overall percent: ended tasks count 100, running ones their own progress.
    pub progress: i64,
    /// Its tasks (still stored).
    pub tasks: i64,
    /// Its tasks per status.
    pub counts: StatusCountsView,
    /// Who created it.
    pub started_by: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// When its last task ended, once all have (ms).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<i64>,
}

impl WorkflowSummaryView {
    /// The view of a stored workflow.
    pub fn new(w: &WorkflowRecord) -> Self {
        WorkflowSummaryView {
            id: w.id,
            name: w.name.clone(),
            status: w.status().as_str(),
            progress: w.progress(),
            tasks: w.tasks(),
            counts: StatusCountsView::new(&w.counts),
            started_by: w.started_by.clone(),
            created_at: w.created_at,
            finished_at: w.finished_at,
        }
    }
}

/// One step of a workflow.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowStepView {
    /// Its name.
    pub step: String,
    /// The steps it runs after (by name; a task deleted by clean-up is left out).
    pub after: Vec<String>,
    /// Whether it runs whatever their outcome.
    pub after_any: bool,
    /// Its task.
    pub task: TaskView,
}

/// A workflow with its steps, in an order where each comes after those it runs after.
#[derive(Debug, Clone, Serialize)]
pub struct WorkflowView {
    /// The workflow.
    #[serde(flatten)]
    pub summary: WorkflowSummaryView,
    /// Its steps.
    pub steps: Vec<WorkflowStepView>,
}

impl WorkflowView {
    /// The view of a stored workflow with its steps.
    pub fn new(d: &WorkflowDetail) -> Self {
        let names: HashMap<i64, &str> = d
            .steps
            .iter()
            .map(|s| (s.task.id, s.step.as_str()))
            .collect();
        WorkflowView {
            summary: WorkflowSummaryView::new(&d.workflow),
            steps: d
                .steps
                .iter()
                .map(|s| WorkflowStepView {
                    step: s.step.clone(),
                    after: s
                        .after
                        .iter()
                        .filter_map(|id| names.get(id).map(|n| (*n).to_owned()))
                        .collect(),
                    after_any: s.after_any,
                    task: TaskView::summary(&s.task),
                })
                .collect(),
        }
    }
}
