//! Workflows on PostgreSQL (as the SQLite backend's, workflows.rs there): the group and
//! its tasks created in one transaction through the queue's and the dependencies' own
//! insert paths; cancel and retry lock the workflow's row, then its tasks in id order
//! (the order every other writer locks tasks in), and change them in one transaction.

use std::collections::BTreeMap;

use postgres::GenericClient;

use super::logs::append;
use super::queue::{from_row, insert_in, COLUMNS};
use super::wakeups::notify_in;
use super::{storable, Context, PgStore};
use crate::error::{ErrorKind, StoreError};
use crate::log_line::LogLine;
use crate::queue::{After, AfterInsert, TaskRecord, WAITING_FOR_DEPENDENCIES};
use crate::workflows::{
    record, NewWorkflow, WorkflowCancel, WorkflowDetail, WorkflowRecord, WorkflowRetry,
    WorkflowStep, Workflows,
};

/// Reads workflow rows with their aggregates: `{WF}` is the subquery of workflows.
const SELECT: &str = "SELECT w.id, w.name, w.created_at, w.started_by,
        COUNT(t.id) FILTER (WHERE t.status = 'pending'),
        COUNT(t.id) FILTER (WHERE t.status = 'running'),
        COUNT(t.id) FILTER (WHERE t.status = 'completed'),
        COUNT(t.id) FILTER (WHERE t.status = 'failed'),
        COUNT(t.id) FILTER (WHERE t.status = 'cancelled'),
        COALESCE(SUM(CASE WHEN t.status IN ('completed', 'failed', 'cancelled') THEN 100
                          WHEN t.status = 'running' THEN LEAST(GREATEST(t.progress, 0), 100)
                          ELSE 0 END), 0)::BIGINT,
        MAX(t.finished_at)
    FROM {WF} AS w LEFT JOIN tasks AS t ON t.workflow_id = w.id
    GROUP BY w.id, w.name, w.created_at, w.started_by ORDER BY w.id DESC";

fn from_row_wf(r: &postgres::Row) -> WorkflowRecord {
    record(
        r.get(0),
        r.get(1),
        r.get(2),
        r.get(3),
        [r.get(4), r.get(5), r.get(6), r.get(7), r.get(8)],
        r.get(9),
        r.get(10),
    )
}

/// Locks workflow `id`'s row (cancels and retries of one workflow take turns); false
/// when it does not exist.
fn lock(tx: &mut impl GenericClient, id: i64) -> Result<bool, StoreError> {
    Ok(tx
        .query_opt("SELECT 1 FROM workflows WHERE id = $1 FOR UPDATE", &[&id])
        .context("read workflow")?
        .is_some())
}

impl Workflows for PgStore {
    fn insert_workflow(&mut self, wf: &NewWorkflow) -> Result<(i64, Vec<i64>), StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin creating a workflow")?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO workflows (name, created_at, started_by) VALUES ($1, $2, $3)
                 RETURNING id",
                &[
                    &storable(&wf.name),
                    &wf.created_at,
                    &wf.started_by.as_deref().map(storable),
                ],
            )
            .context("create workflow")?
            .get(0);
        let mut ids: Vec<i64> = Vec::with_capacity(wf.steps.len());
        for (i, step) in wf.steps.iter().enumerate() {
            let task_id = if step.after.is_empty() {
                insert_in(&mut tx, &step.task, 1, &step.creation)?[0]
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
                match super::deps::insert_after_in(&mut tx, &step.task, &after, &step.creation)? {
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
            ids.push(task_id);
        }
        let steps: Vec<std::borrow::Cow<'_, str>> =
            wf.steps.iter().map(|s| storable(&s.step)).collect();
        let steps: Vec<&str> = steps.iter().map(|s| s.as_ref()).collect();
        tx.execute(
            "UPDATE tasks t SET workflow_id = $1, workflow_step = v.step
             FROM UNNEST($2::BIGINT[], $3::TEXT[]) AS v(id, step) WHERE t.id = v.id",
            &[&id, &ids, &steps],
        )
        .context("create workflow")?;
        notify_in(&mut tx)?;
        tx.commit().context("commit workflow")?;
        Ok((id, ids))
    }

    fn get_workflow(&self, id: i64) -> Result<Option<WorkflowDetail>, StoreError> {
        let mut client = self.client()?;
        // One snapshot for the workflow, its tasks and its edges.
        let mut tx = client
            .build_transaction()
            .isolation_level(postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .context("begin reading a workflow")?;
        let sql = SELECT.replace("{WF}", "(SELECT * FROM workflows WHERE id = $1)");
        let Some(workflow) = tx
            .query_opt(&sql, &[&id])
            .context("read workflow")?
            .as_ref()
            .map(from_row_wf)
        else {
            return Ok(None);
        };
        let names: BTreeMap<i64, String> = tx
            .query(
                "SELECT id, COALESCE(workflow_step, '') FROM tasks WHERE workflow_id = $1",
                &[&id],
            )
            .context("read workflow")?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let mut steps: Vec<WorkflowStep> = tx
            .query(
                &format!("SELECT {COLUMNS} FROM tasks WHERE workflow_id = $1 ORDER BY id"),
                &[&id],
            )
            .context("read workflow")?
            .iter()
            .map(from_row)
            .map(|task| WorkflowStep {
                step: names.get(&task.id).cloned().unwrap_or_default(),
                task,
                after: Vec::new(),
                after_any: false,
            })
            .collect();
        let mut edges: BTreeMap<i64, (Vec<i64>, bool)> = BTreeMap::new();
        for r in tx
            .query(
                "SELECT d.task_id, d.depends_on, d.after_any FROM tasks t
                 JOIN task_deps d ON d.task_id = t.id
                 WHERE t.workflow_id = $1 ORDER BY d.task_id, d.depends_on",
                &[&id],
            )
            .context("read workflow")?
        {
            let e = edges.entry(r.get(0)).or_default();
            e.0.push(r.get(1));
            e.1 |= r.get::<_, bool>(2);
        }
        tx.commit().context("end reading a workflow")?;
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
        let mut client = self.client()?;
        let sql = SELECT.replace(
            "{WF}",
            "(SELECT * FROM workflows ORDER BY id DESC LIMIT $1 OFFSET $2)",
        );
        let limit = i64::from(limit);
        let offset = i64::try_from(offset).unwrap_or(i64::MAX);
        let list = client
            .query(&sql, &[&limit, &offset])
            .context("list workflows")?
            .iter()
            .map(from_row_wf)
            .collect();
        let total: i64 = client
            .query_one("SELECT COUNT(*) FROM workflows", &[])
            .context("count workflows")?
            .get(0);
        Ok((list, total))
    }

    fn cancel_workflow(
        &mut self,
        id: i64,
        now: i64,
        line: &LogLine,
    ) -> Result<Option<WorkflowCancel>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .context("begin cancelling a workflow")?;
        if !lock(&mut tx, id)? {
            return Ok(None);
        }
        let live: Vec<(i64, String)> = tx
            .query(
                "SELECT id, status FROM tasks
                 WHERE workflow_id = $1 AND status IN ('pending', 'running')
                 ORDER BY id FOR UPDATE",
                &[&id],
            )
            .context("cancel workflow")?
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        let pending: Vec<i64> = live
            .iter()
            .filter(|(_, s)| s == "pending")
            .map(|(t, _)| *t)
            .collect();
        let running: Vec<i64> = live
            .iter()
            .filter(|(_, s)| s == "running")
            .map(|(t, _)| *t)
            .collect();
        if !pending.is_empty() {
            let keys: Vec<crate::limits::KeyOf> = tx
                .query(
                    "UPDATE tasks SET status = 'cancelled', finished_at = $2, message = $3,
                        error = $3, deps_left = 0, parked = FALSE
                     WHERE id = ANY($1)
                     RETURNING worker, limit_rule, limit_key",
                    &[&pending, &now, &storable(&line.message)],
                )
                .context("cancel workflow")?
                .iter()
                .filter_map(|r| Some((r.get(0), crate::limits::limit_of(r.get(1), r.get(2))?)))
                .collect();
            let lines: Vec<(i64, &LogLine)> = pending.iter().map(|t| (*t, line)).collect();
            append(&mut tx, &lines)?;
            // Dependants outside the workflow follow, as after a single cancel.
            super::deps::release(&mut tx, &pending, now, None)?;
            // So do the tasks of their keys parked behind them.
            super::limits::release(
                &mut tx,
                &keys,
                now,
                &self.statements,
                super::limits::Release::Due(super::limits::Order::KeyLocks),
            )?;
        }
        let requested = if running.is_empty() {
            0
        } else {
            let n = tx
                .execute(
                    "UPDATE tasks SET cancel_requested = TRUE
                     WHERE id = ANY($1) AND NOT cancel_requested",
                    &[&running],
                )
                .context("cancel workflow")?;
            // The engines running them look at cancel requests when they wake.
            notify_in(&mut tx)?;
            n as usize
        };
        tx.commit().context("commit workflow cancel")?;
        Ok(Some(WorkflowCancel {
            cancelled: pending.len(),
            requested,
        }))
    }

    fn retry_workflow(
        &mut self,
        id: i64,
        now: i64,
        line: &dyn Fn(&TaskRecord) -> LogLine,
    ) -> Result<Option<WorkflowRetry>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin retrying a workflow")?;
        if !lock(&mut tx, id)? {
            return Ok(None);
        }
        let tasks: Vec<TaskRecord> = tx
            .query(
                &format!(
                    "SELECT {COLUMNS} FROM tasks WHERE workflow_id = $1
                       AND status IN ('failed', 'cancelled') ORDER BY id FOR UPDATE"
                ),
                &[&id],
            )
            .context("read workflow")?
            .iter()
            .map(from_row)
            .collect();
        if tasks.is_empty() {
            tx.commit().context("commit workflow retry")?;
            return Ok(Some(WorkflowRetry::default()));
        }
        let ids: Vec<i64> = tasks.iter().map(|t| t.id).collect();
        let lines: Vec<LogLine> = tasks.iter().map(line).collect();
        let messages: Vec<std::borrow::Cow<'_, str>> =
            lines.iter().map(|l| storable(&l.message)).collect();
        let messages: Vec<&str> = messages.iter().map(|m| m.as_ref()).collect();
        tx.execute(
            "UPDATE tasks t SET status = 'pending', run_after = $3, finished_at = NULL,
                cancel_requested = FALSE, message = v.message, deps_left = 0, parked = FALSE
             FROM UNNEST($1::BIGINT[], $2::TEXT[]) AS v(id, message) WHERE t.id = v.id",
            &[&ids, &messages, &now],
        )
        .context("retry workflow")?;
        let refs: Vec<(i64, &LogLine)> = ids.iter().copied().zip(lines.iter()).collect();
        append(&mut tx, &refs)?;
        // Their dependencies locked in id order first (`FOR SHARE`, as a creator of a
        // dependant does): one that another host is ending right now is counted as it
        // ends, not as it was, since that host's release skipped these tasks (they were
        // not waiting then).
        tx.execute(
            "SELECT e.id FROM tasks e
             WHERE e.id IN (SELECT depends_on FROM task_deps WHERE task_id = ANY($1))
             ORDER BY e.id FOR SHARE",
            &[&ids],
        )
        .context("retry workflow")?;
        // Every retried task waits again for its dependencies that have not completed
        // (retried with it, or still pending or running); a deleted one has ended.
        let waiting = tx
            .query(
                "UPDATE tasks t SET deps_left = c.n, run_after = $2
                 FROM (SELECT d.task_id, COUNT(*) AS n FROM task_deps d
                       JOIN tasks e ON e.id = d.depends_on
                       WHERE d.task_id = ANY($1) AND e.status IN ('pending', 'running')
                       GROUP BY d.task_id) AS c
                 WHERE t.id = c.task_id RETURNING t.id",
                &[&ids, &WAITING_FOR_DEPENDENCIES],
            )
            .context("retry workflow")?
            .len();
        notify_in(&mut tx)?;
        tx.commit().context("commit workflow retry")?;
        Ok(Some(WorkflowRetry {
            retried: ids.len(),
            waiting,
        }))
    }

    fn task_workflow(&self, id: i64) -> Result<Option<(i64, String)>, StoreError> {
        Ok(self
            .client()?
            .query_opt(
                "SELECT workflow_id, COALESCE(workflow_step, '') FROM tasks
                 WHERE id = $1 AND workflow_id IS NOT NULL",
                &[&id],
            )
            .context("read task workflow")?
            .map(|r| (r.get(0), r.get(1))))
    }
}
