//! Workflows on SQLite: the group and its tasks created in one IMMEDIATE transaction on
//! the trigger-less connection (the tasks through the queue's and the dependencies'
//! own insert paths), cancel and retry of the group in one transaction each.

use std::collections::BTreeMap;

use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::logs::append;
use super::queue::{from_row, insert_in, COLUMNS};
use super::{Context, SqliteStore};
use crate::error::{ErrorKind, StoreError};
use crate::log_line::LogLine;
use crate::queue::{After, AfterInsert, TaskRecord, WAITING_FOR_DEPENDENCIES};
use crate::wakeups::Wakeups;
use crate::workflows::{
    record, NewWorkflow, WorkflowCancel, WorkflowDetail, WorkflowRecord, WorkflowRetry,
    WorkflowStep, Workflows,
};

/// Reads workflow rows with their aggregates: `{WF}` is the subquery of workflows.
const SELECT: &str = "SELECT w.id, w.name, w.created_at, w.started_by,
        COALESCE(SUM(CASE WHEN t.status = 'pending' THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN t.status = 'running' THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN t.status = 'completed' THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN t.status = 'failed' THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN t.status = 'cancelled' THEN 1 ELSE 0 END), 0),
        COALESCE(SUM(CASE WHEN t.status IN ('completed', 'failed', 'cancelled') THEN 100
                          WHEN t.status = 'running' THEN MIN(MAX(t.progress, 0), 100)
                          ELSE 0 END), 0),
        MAX(t.finished_at)
    FROM {WF} AS w LEFT JOIN tasks AS t ON t.workflow_id = w.id
    GROUP BY w.id ORDER BY w.id DESC";

fn from_row_wf(r: &rusqlite::Row<'_>) -> rusqlite::Result<WorkflowRecord> {
    Ok(record(
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        [r.get(4)?, r.get(5)?, r.get(6)?, r.get(7)?, r.get(8)?],
        r.get(9)?,
        r.get(10)?,
    ))
}

fn exists(conn: &rusqlite::Connection, id: i64) -> Result<bool, StoreError> {
    conn.prepare_cached("SELECT 1 FROM workflows WHERE id = ?1")
        .and_then(|mut s| s.query_row([id], |_| Ok(())).optional())
        .map(|o| o.is_some())
        .context("read workflow")
}

impl Workflows for SqliteStore {
    fn insert_workflow(&mut self, wf: &NewWorkflow) -> Result<(i64, Vec<i64>), StoreError> {
        let tx = self
            .untracked()?
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin creating a workflow")?;
        tx.prepare_cached(
            "INSERT INTO workflows (name, created_at, started_by) VALUES (?1, ?2, ?3)",
        )
        .and_then(|mut s| s.execute(params![wf.name, wf.created_at, wf.started_by]))
        .context("create workflow")?;
        let id = tx.last_insert_rowid();
        let mut ids: Vec<i64> = Vec::with_capacity(wf.steps.len());
        for (i, step) in wf.steps.iter().enumerate() {
            let task_id = if step.after.is_empty() {
                insert_in(&tx, &step.task, 1, &step.creation, None)?[0]
            } else {
                let mut deps = Vec::with_capacity(step.after.len());
                for a in &step.after {
                    match ids.get(*a) {
                        Some(d) if *a < i => deps.push(*d),
                        _ => {
                            return Err(StoreError::new(
                                ErrorKind::Other,
                                "create workflow",
                                format!(
                                    "step '{}' runs after step {a}, which does not come before it",
                                    step.step
                                ),
                            ))
                        }
                    }
                }
                let after = After {
                    ids: deps,
                    any: step.after_any,
                };
                match super::deps::insert_after_in(&tx, &step.task, &after, &step.creation)? {
                    AfterInsert::Created(t) => t,
                    AfterInsert::Missing(m) => {
                        return Err(StoreError::new(
                            ErrorKind::Other,
                            "create workflow",
                            format!("task {m} of the workflow vanished while it was created"),
                        ))
                    }
                }
            };
            tx.prepare_cached(
                "UPDATE tasks SET workflow_id = ?2, workflow_step = ?3 WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![task_id, id, step.step]))
            .context("create workflow")?;
            ids.push(task_id);
        }
        tx.commit().context("commit workflow")?;
        self.notify_work();
        Ok((id, ids))
    }

    fn get_workflow(&self, id: i64) -> Result<Option<WorkflowDetail>, StoreError> {
        let sql = SELECT.replace("{WF}", "(SELECT * FROM workflows WHERE id = ?1)");
        let Some(workflow) = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| s.query_row([id], from_row_wf).optional())
            .context("read workflow")?
        else {
            return Ok(None);
        };
        // The step names apart from the task columns, whose count other features grow.
        let names: BTreeMap<i64, String> = self
            .conn
            .prepare_cached(
                "SELECT id, COALESCE(workflow_step, '') FROM tasks WHERE workflow_id = ?1",
            )
            .and_then(|mut s| {
                s.query_map([id], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<Result<_, _>>()
            })
            .context("read workflow")?;
        let mut steps: Vec<WorkflowStep> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE workflow_id = ?1 ORDER BY id"
            ))
            .and_then(|mut s| s.query_map([id], from_row)?.collect::<Result<Vec<_>, _>>())
            .context("read workflow")?
            .into_iter()
            .map(|task| WorkflowStep {
                step: names.get(&task.id).cloned().unwrap_or_default(),
                task,
                after: Vec::new(),
                after_any: false,
            })
            .collect();
        let mut edges: BTreeMap<i64, (Vec<i64>, bool)> = BTreeMap::new();
        {
            let mut stmt = self
                .conn
                .prepare_cached(
                    "SELECT d.task_id, d.depends_on, d.after_any FROM tasks AS t
                     JOIN task_deps AS d ON d.task_id = t.id
                     WHERE t.workflow_id = ?1 ORDER BY d.task_id, d.depends_on",
                )
                .context("read workflow")?;
            let rows = stmt
                .query_map([id], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, bool>(2)?,
                    ))
                })
                .context("read workflow")?;
            for row in rows {
                let (task, dep, any) = row.context("read workflow")?;
                let e = edges.entry(task).or_default();
                e.0.push(dep);
                e.1 |= any;
            }
        }
        for s in &mut steps {
            if let Some((after, any)) = edges.remove(&s.task.id) {
                s.after = after;
                s.after_any = any;
            }
        }
        Ok(Some(WorkflowDetail { workflow, steps }))
    }

    fn list_workflows(
        &self,
        limit: u32,
        offset: u64,
    ) -> Result<(Vec<WorkflowRecord>, i64), StoreError> {
        let sql = SELECT.replace(
            "{WF}",
            "(SELECT * FROM workflows ORDER BY id DESC LIMIT ?1 OFFSET ?2)",
        );
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let list = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut s| {
                s.query_map(params![limit, offset], from_row_wf)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .context("list workflows")?;
        let total: i64 = self
            .conn
            .prepare_cached("SELECT COUNT(*) FROM workflows")
            .and_then(|mut s| s.query_row([], |r| r.get(0)))
            .context("count workflows")?;
        Ok((list, total))
    }

    fn cancel_workflow(
        &mut self,
        id: i64,
        now: i64,
        line: &LogLine,
    ) -> Result<Option<WorkflowCancel>, StoreError> {
        // On this connection the triggers keep texts and statistics, as for a single
        // cancel.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin cancelling a workflow")?;
        if !exists(&tx, id)? {
            return Ok(None);
        }
        let cancelled: Vec<i64> = tx
            .prepare_cached(
                "UPDATE tasks SET status = 'cancelled', finished_at = ?2, message = ?3,
                    error = ?3, deps_left = 0, parked = 0
                 WHERE workflow_id = ?1 AND status = 'pending' RETURNING id",
            )
            .and_then(|mut s| {
                s.query_map(params![id, now, line.message], |r| r.get(0))?
                    .collect::<Result<Vec<i64>, _>>()
            })
            .context("cancel workflow")?;
        let lines: Vec<(i64, &LogLine)> = cancelled.iter().map(|t| (*t, line)).collect();
        append(&tx, &lines)?;
        // Dependants outside the workflow follow, as after a single cancel.
        let released = super::deps::release(&tx, &cancelled, now, true)?;
        // So do the tasks of their keys parked behind them.
        let released = super::limits::release(&tx, &cancelled, now)? || released;
        let requested = tx
            .prepare_cached(
                "UPDATE tasks SET cancel_requested = 1
                 WHERE workflow_id = ?1 AND status = 'running' AND cancel_requested = 0",
            )
            .and_then(|mut s| s.execute([id]))
            .context("cancel workflow")?;
        tx.commit().context("commit workflow cancel")?;
        if requested > 0 || released {
            self.notify_work();
        }
        Ok(Some(WorkflowCancel {
            cancelled: cancelled.len(),
            requested,
        }))
    }

    fn retry_workflow(
        &mut self,
        id: i64,
        now: i64,
        line: &dyn Fn(&TaskRecord) -> LogLine,
    ) -> Result<Option<WorkflowRetry>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin retrying a workflow")?;
        if !exists(&tx, id)? {
            return Ok(None);
        }
        let tasks: Vec<TaskRecord> = tx
            .prepare_cached(&format!(
                "SELECT {COLUMNS} FROM tasks WHERE workflow_id = ?1
                   AND status IN ('failed', 'cancelled') ORDER BY id"
            ))
            .and_then(|mut s| s.query_map([id], from_row)?.collect::<Result<Vec<_>, _>>())
            .context("read workflow")?;
        let mut lines = Vec::with_capacity(tasks.len());
        {
            let mut back = tx
                .prepare_cached(
                    "UPDATE tasks SET status = 'pending', run_after = ?2, finished_at = NULL,
                        cancel_requested = 0, message = ?3, deps_left = 0, parked = 0
                     WHERE id = ?1",
                )
                .context("retry workflow")?;
            for t in &tasks {
                let l = line(t);
                back.execute(params![t.id, now, l.message])
                    .context("retry workflow")?;
                lines.push((t.id, l));
            }
        }
        let refs: Vec<(i64, &LogLine)> = lines.iter().map(|(t, l)| (*t, l)).collect();
        append(&tx, &refs)?;
        // Every retried task waits again for its dependencies that have not completed
        // (retried with it, or still pending or running); a deleted one has ended.
        let mut waiting = 0;
        {
            let mut rearm = tx
                .prepare_cached(
                    "UPDATE tasks SET deps_left = (
                            SELECT COUNT(*) FROM task_deps AS d JOIN tasks AS e
                                ON e.id = d.depends_on
                            WHERE d.task_id = ?1 AND e.status IN ('pending', 'running'))
                     WHERE id = ?1 RETURNING deps_left",
                )
                .context("retry workflow")?;
            let mut wait = tx
                .prepare_cached("UPDATE tasks SET run_after = ?2 WHERE id = ?1")
                .context("retry workflow")?;
            for t in &tasks {
                let left: i64 = rearm
                    .query_row([t.id], |r| r.get(0))
                    .context("retry workflow")?;
                if left > 0 {
                    wait.execute(params![t.id, WAITING_FOR_DEPENDENCIES])
                        .context("retry workflow")?;
                    waiting += 1;
                }
            }
        }
        tx.commit().context("commit workflow retry")?;
        if !tasks.is_empty() {
            self.notify_work();
        }
        Ok(Some(WorkflowRetry {
            retried: tasks.len(),
            waiting,
        }))
    }

    fn task_workflow(&self, id: i64) -> Result<Option<(i64, String)>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT workflow_id, COALESCE(workflow_step, '') FROM tasks
                 WHERE id = ?1 AND workflow_id IS NOT NULL",
            )
            .and_then(|mut s| s.query_row([id], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .context("read task workflow")
    }
}
