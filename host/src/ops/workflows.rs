//! Workflows: several tasks created together as a named group, with dependencies
//! between them, from one JSON document; listed and shown as one item with overall
//! progress; cancelled and retried as a group.
//!
//! The document (the same for `stask workflows create` and `POST /api/v1/workflows`):
//!
//! ```json
//! {"name": "nightly import",
//!  "tasks": [
//!    {"step": "fetch", "worker": "demo", "action": "run", "data": {"steps": 3}},
//!    {"step": "load", "worker": "demo", "action": "echo", "after": ["fetch"],
//!     "priority": "high", "max_attempts": 2, "after_any": false}
//!  ]}
//! ```
//!
//! Every check happens before anything is stored: step names (1 to 64 of `A-Z a-z 0-9
//! _ . -`, unique), `after` naming steps of the document, no cycle (the message names
//! one), each task checked exactly as `tasks create` checks it (worker, action, data,
//! priority, attempts). Then the workflow and all its tasks are stored in one
//! transaction.

use std::collections::{BTreeSet, HashMap};

use anyhow::Result;
use serde::{Deserialize, Deserializer};
use serde_json::Value;
use stask_storage::{
    now_ms, LogLine, NewStep, NewTask, NewWorkflow, Priority, Store, TaskRecord, WorkflowDetail,
    WorkflowRecord,
};

use super::tasks::{self, TaskRequest};
use super::Actor;
use crate::problem::{shown_input, Problem};

/// Most tasks in one workflow.
pub const MAX_STEPS: usize = 10_000;

/// Longest step name, in bytes.
pub const MAX_STEP_NAME: usize = 64;

/// Longest workflow name, in characters.
pub const MAX_NAME_CHARS: usize = 200;

/// Largest workflow page.
pub const MAX_PAGE: u32 = 500;

/// A workflow document.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDocument {
    /// Its name.
    pub name: String,
    /// Its tasks.
    pub tasks: Vec<StepDocument>,
}

/// One task of a [`WorkflowDocument`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepDocument {
    /// The step's name, unique in the document.
    pub step: String,
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Input data (a JSON object; `{}` when left out).
    #[serde(default = "empty_object")]
    pub data: Value,
    /// `high`, `normal` (default) or `low`.
    #[serde(default, deserialize_with = "present")]
    pub priority: Option<String>,
    /// Attempts allowed (default 3).
    #[serde(default, deserialize_with = "present")]
    pub max_attempts: Option<u32>,
    /// Steps it runs after.
    #[serde(default)]
    pub after: Vec<String>,
    /// Run once they ended whatever their outcome.
    #[serde(default)]
    pub after_any: bool,
    /// Accept credential-looking keys in `data`.
    #[serde(default)]
    pub allow_sensitive: bool,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// An optional field that, when given, is not `null`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Reads a document from JSON text, as a [`Problem`] naming what is wrong.
pub fn parse_document(text: &str) -> Result<WorkflowDocument, Problem> {
    serde_json::from_str(text).map_err(|e| {
        Problem::invalid(
            "document",
            "invalid_workflow",
            format!(
                "the workflow document is not valid: {e}. A workflow is {{\"name\": \"…\", \"tasks\": [{{\"step\": \"fetch\", \"worker\": \"…\", \"action\": \"…\", \"data\": {{}}, \"after\": []}}]}}"
            ),
        )
    })
}

/// A created workflow.
#[derive(Debug, Clone)]
pub struct CreatedWorkflow {
    /// Its id.
    pub id: i64,
    /// Its tasks' ids by step, in the document's order.
    pub tasks: Vec<(String, i64)>,
}

fn invalid(field: String, code: &'static str, message: String) -> anyhow::Error {
    Problem::invalid(&field, code, message).into()
}

/// Whether `s` is a usable step name.
fn step_name_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_STEP_NAME
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Checks the document and stores the workflow with all its tasks in one transaction,
/// started by `by`.
pub fn create(
    store: &mut dyn Store,
    doc: &WorkflowDocument,
    by: Option<&str>,
) -> Result<CreatedWorkflow> {
    let name = doc.name.trim();
    if name.is_empty()
        || name.chars().count() > MAX_NAME_CHARS
        || name.chars().any(char::is_control)
    {
        return Err(invalid(
            "name".into(),
            "invalid_workflow_name",
            format!("a workflow's name is 1 to {MAX_NAME_CHARS} characters, not blank, without control characters"),
        ));
    }
    let n = doc.tasks.len();
    if n == 0 || n > MAX_STEPS {
        return Err(invalid(
            "tasks".into(),
            "invalid_workflow_size",
            format!("a workflow has 1 to {MAX_STEPS} tasks, got {n}"),
        ));
    }
    let mut index: HashMap<&str, usize> = HashMap::with_capacity(n);
    for (i, t) in doc.tasks.iter().enumerate() {
        if !step_name_ok(&t.step) {
            return Err(invalid(
                format!("tasks[{i}].step"),
                "invalid_step",
                format!(
                    "step name '{}' (task {}) is not usable: a step name is 1 to {MAX_STEP_NAME} letters, digits, '_', '.' or '-'",
                    shown_input(&t.step),
                    i + 1
                ),
            ));
        }
        if index.insert(t.step.as_str(), i).is_some() {
            return Err(invalid(
                format!("tasks[{i}].step"),
                "duplicate_step",
                format!(
                    "step '{}' is named twice; every step of a workflow needs its own name",
                    t.step
                ),
            ));
        }
    }
    // The dependencies as indices, each once.
    let mut after: Vec<Vec<usize>> = Vec::with_capacity(n);
    for (i, t) in doc.tasks.iter().enumerate() {
        if t.after_any && t.after.is_empty() {
            return Err(invalid(
                format!("tasks[{i}].after_any"),
                "invalid_after",
                format!(
                    "step '{}' has 'after_any' but runs after nothing; name the steps it runs after in 'after'",
                    t.step
                ),
            ));
        }
        if t.after.len() > tasks::MAX_AFTER {
            return Err(invalid(
                format!("tasks[{i}].after"),
                "invalid_after",
                format!(
                    "step '{}' runs after {} steps; a task depends on at most {}",
                    t.step,
                    t.after.len(),
                    tasks::MAX_AFTER
                ),
            ));
        }
        let mut deps = BTreeSet::new();
        for a in &t.after {
            let Some(&j) = index.get(a.as_str()) else {
                return Err(invalid(
                    format!("tasks[{i}].after"),
                    "unknown_step",
                    format!(
                        "step '{}' runs after '{}', which is not a step of this workflow; 'after' names steps of the same document",
                        t.step,
                        shown_input(a)
                    ),
                ));
            };
            if j == i {
                return Err(invalid(
                    format!("tasks[{i}].after"),
                    "workflow_cycle",
                    format!(
                        "step '{}' runs after itself; a workflow cannot have cycles",
                        t.step
                    ),
                ));
            }
            deps.insert(j);
        }
        after.push(deps.into_iter().collect());
    }
    let order = topological(&after).map_err(|cycle| {
        let names: Vec<&str> = cycle.iter().map(|i| doc.tasks[*i].step.as_str()).collect();
        invalid(
            "tasks".into(),
            "workflow_cycle",
            format!(
                "the steps depend on each other in a cycle: {} -> {}; a workflow cannot have cycles",
                names.join(" -> "),
                names[0]
            ),
        )
    })?;
    // Every task checked as `tasks create` checks it, before anything is stored.
    let now = now_ms();
    let who = by.map(|u| format!(", by {u}")).unwrap_or_default();
    let mut tasks_in_order = Vec::with_capacity(n);
    let mut position = vec![0usize; n];
    for (k, &i) in order.iter().enumerate() {
        position[i] = k;
    }
    for &i in &order {
        let t = &doc.tasks[i];
        let priority = match t.priority.as_deref() {
            None => Priority::Normal,
            Some(p) => tasks::parse_priority(p, &format!("tasks[{i}].priority"))
                .map_err(|p| in_step(p, &t.step))?,
        };
        let req = TaskRequest {
            worker: t.worker.clone(),
            action: t.action.clone(),
            data: t.data.clone(),
            priority,
            max_attempts: t.max_attempts.unwrap_or(tasks::DEFAULT_MAX_ATTEMPTS),
            started_by: by.map(str::to_owned),
            allow_sensitive: t.allow_sensitive,
        };
        let (data, limit) =
            tasks::create::validate_task(store, &req).map_err(|e| match Problem::find(&e) {
                Some(p) => {
                    let mut p = in_step(p.clone(), &t.step);
                    p.field = p.field.map(|f| format!("tasks[{i}].{f}"));
                    p.into()
                }
                None => e,
            })?;
        let after_names: Vec<&str> = after[i]
            .iter()
            .map(|j| doc.tasks[*j].step.as_str())
            .collect();
        let creation = LogLine::new(
            "pending",
            0,
            0,
            0,
            "",
            &format!(
                "Task created (priority {}{who}, step '{}' of workflow '{}'{})",
                priority.as_str(),
                t.step,
                shown_input(name),
                if after_names.is_empty() {
                    String::new()
                } else {
                    format!(
                        ", after {}{}",
                        after_names.join(", "),
                        if t.after_any {
                            " whatever their outcome"
                        } else {
                            ""
                        }
                    )
                }
            ),
        );
        tasks_in_order.push(NewStep {
            step: t.step.clone(),
            task: NewTask {
                limit,
                parent: None,
                worker: req.worker,
                action: req.action,
                data,
                priority,
                max_attempts: req.max_attempts,
                started_by: req.started_by,
                run_after: now,
                created_at: now,
            },
            after: after[i].iter().map(|j| position[*j]).collect(),
            after_any: t.after_any,
            creation,
        });
    }
    let workflow = NewWorkflow {
        name: name.to_owned(),
        started_by: by.map(str::to_owned),
        created_at: now,
        steps: tasks_in_order,
    };
    let (id, ids) = store.insert_workflow(&workflow)?;
    let m = crate::metrics::global();
    for s in &workflow.steps {
        m.tasks_created(&s.task.worker, &s.task.action, 1);
    }
    let mut by_step: Vec<(String, i64)> = Vec::with_capacity(n);
    for t in &doc.tasks {
        let k = position[index[t.step.as_str()]];
        by_step.push((t.step.clone(), ids[k]));
    }
    Ok(CreatedWorkflow { id, tasks: by_step })
}

/// A problem of one step's task, its message naming the step.
fn in_step(mut p: Problem, step: &str) -> Problem {
    p.message = format!("step '{step}': {}", p.message);
    p
}

/// The steps in an order where each comes after those it runs after (the document's
/// order where it allows), or a cycle (indices, each once, each running after the
/// previous one... the last one's dependency is the first).
fn topological(after: &[Vec<usize>]) -> Result<Vec<usize>, Vec<usize>> {
    let n = after.len();
    let mut left: Vec<usize> = after.iter().map(Vec::len).collect();
    let mut dependants: Vec<Vec<usize>> = vec![Vec::new(); n];
    for (i, deps) in after.iter().enumerate() {
        for &d in deps {
            dependants[d].push(i);
        }
    }
    let mut ready: BTreeSet<usize> = (0..n).filter(|i| left[*i] == 0).collect();
    let mut order = Vec::with_capacity(n);
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for &d in &dependants[i] {
            left[d] -= 1;
            if left[d] == 0 {
                ready.insert(d);
            }
        }
    }
    if order.len() == n {
        return Ok(order);
    }
    // Every step left waits for another step left: walk dependencies until one repeats.
    let start = (0..n).find(|i| left[*i] > 0).unwrap_or(0);
    let mut seen: HashMap<usize, usize> = HashMap::new();
    let mut path = Vec::new();
    let mut at = start;
    loop {
        if let Some(&k) = seen.get(&at) {
            // path[k..] is the cycle, each depending on the next; show it in run order.
            let mut cycle: Vec<usize> = path[k..].to_vec();
            cycle.reverse();
            return Err(cycle);
        }
        seen.insert(at, path.len());
        path.push(at);
        at = after[at]
            .iter()
            .copied()
            .find(|d| left[*d] > 0)
            .unwrap_or(start);
    }
}

/// The error for an unknown workflow id.
pub fn no_workflow(id: i64) -> anyhow::Error {
    Problem::not_found("workflow_not_found", format!("no workflow {id}"))
        .hint("see `stask workflows list`")
        .into()
}

/// One workflow with its steps.
pub fn find(store: &dyn Store, id: i64) -> Result<WorkflowDetail> {
    store.get_workflow(id)?.ok_or_else(|| no_workflow(id))
}

/// A page of workflows, newest first, and how many there are.
pub fn list(store: &dyn Store, limit: u32, offset: u64) -> Result<(Vec<WorkflowRecord>, i64)> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(invalid(
            "limit".into(),
            "invalid_limit",
            format!("limit must be between 1 and {MAX_PAGE}, got {limit}"),
        ));
    }
    Ok(store.list_workflows(limit, offset)?)
}

/// Operators may change only the workflows they started; admins any.
fn may_change(by: &Actor, w: &WorkflowRecord) -> Result<(), Problem> {
    if by.role == crate::auth::Role::Admin || w.started_by.as_deref() == Some(by.name.as_str()) {
        return Ok(());
    }
    Err(Problem::forbidden(
        "not_your_workflow",
        format!(
            "workflow {} was started by {}; operators may change only the workflows they started",
            w.id,
            w.started_by.as_deref().unwrap_or("nobody recorded")
        ),
    ))
}

/// Cancels workflow `id`: its pending tasks at once, its running ones as their runners
/// stop. Refused when nothing is left to cancel.
pub fn cancel(store: &mut dyn Store, by: &Actor, id: i64) -> Result<stask_storage::WorkflowCancel> {
    let w = find(store, id)?;
    may_change(by, &w.workflow)?;
    let line = LogLine::new(
        "cancelled",
        0,
        0,
        0,
        "",
        &format!("Cancelled with its workflow #{id} before it started"),
    );
    let done = store
        .cancel_workflow(id, now_ms(), &line)?
        .ok_or_else(|| no_workflow(id))?;
    if done.cancelled == 0 && done.requested == 0 {
        return Err(Problem::conflict(
            "workflow_finished",
            format!("workflow {id} has no pending or running tasks left; nothing to cancel"),
        )
        .into());
    }
    Ok(done)
}

/// Queues workflow `id`'s failed and cancelled tasks again; those after them wait for
/// them again. Refused when none failed or was cancelled.
pub fn retry(store: &mut dyn Store, by: &Actor, id: i64) -> Result<stask_storage::WorkflowRetry> {
    let w = find(store, id)?;
    may_change(by, &w.workflow)?;
    let line = |t: &TaskRecord| {
        LogLine::new(
            "pending",
            t.progress.clamp(0, 100) as u8,
            t.processed.max(0) as u64,
            t.total.max(0) as u64,
            "",
            &format!(
                "Queued for retry with its workflow #{id} (was {}; {})",
                t.status,
                tasks::attempts_so_far(t.attempts)
            ),
        )
    };
    let done = store
        .retry_workflow(id, now_ms(), &line)?
        .ok_or_else(|| no_workflow(id))?;
    if done.retried == 0 {
        return Err(Problem::conflict(
            "workflow_not_retryable",
            format!("workflow {id} has no failed or cancelled tasks; nothing to retry"),
        )
        .into());
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cycle_is_found_and_named_in_run_order() {
        // 0 <- 1 <- 2 <- 1 (1 and 2 wait for each other), 3 after 0.
        let after = vec![vec![], vec![0, 2], vec![1], vec![0]];
        let cycle = topological(&after).unwrap_err();
        let mut sorted = cycle.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, [1, 2]);
        let order = topological(&[vec![2], vec![], vec![1]]).unwrap();
        assert_eq!(order, [1, 2, 0]);
    }

    #[test]
    fn step_names_are_url_safe() {
        assert!(step_name_ok("fetch-1.a_b"));
        assert!(!step_name_ok(""));
        assert!(!step_name_ok("a b"));
        assert!(!step_name_ok("a/b"));
        assert!(!step_name_ok(&"x".repeat(65)));
    }
}
