//! Firing due schedules. The service calls [`tick`] with the real time whenever
//! [`stask_storage::Schedules::next_due_at`] says a slot is due; tests call it with chosen
//! instants, so no test waits for a clock.

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use stask_plugin_api::WorkerManifest;
use stask_storage::{FireOutcome, Firing, LogLine, Store};

use super::next_run::next_after;
use super::spec::{describe, Spec};

/// What one [`tick`] did.
#[derive(Debug, Default, Serialize)]
pub struct TickReport {
    /// Slots fired by this call (created tasks and recorded skips), in due order.
    pub fired: Vec<Fired>,
    /// Due schedules this call left alone because another process (or an earlier
    /// tick) fired the slot first.
    pub already_fired: usize,
    /// Schedules that could not be fired (database errors); they stay due and are
    /// tried again at the next tick.
    pub errors: Vec<TickError>,
    /// The earliest next run of any unpaused schedule after this tick: when to call
    /// `tick` again.
    pub next_due_at: Option<DateTime<Utc>>,
}

impl TickReport {
    /// Ids of the tasks this tick created.
    pub fn created_tasks(&self) -> Vec<i64> {
        self.fired
            .iter()
            .filter_map(|f| match f.result {
                FiredResult::Created { task_id, .. } => Some(task_id),
                FiredResult::Skipped { .. } => None,
            })
            .collect()
    }
}

/// One fired slot.
#[derive(Debug, Serialize)]
pub struct Fired {
    /// The worker whose schedule fired.
    pub worker: String,
    /// The slot that was due.
    pub slot: DateTime<Utc>,
    /// What happened.
    pub result: FiredResult,
    /// The schedule's next run, computed from the tick's time.
    pub next_run_at: Option<DateTime<Utc>>,
}

/// What a fired slot did.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "lowercase")]
pub enum FiredResult {
    /// A pending task was created.
    Created {
        /// Its id.
        task_id: i64,
        /// The action it runs.
        action: String,
    },
    /// No task; the skip was recorded on the schedule.
    Skipped {
        /// Why (`worker inactive`, `previous task 12 is still running`, …).
        reason: String,
    },
}

/// A schedule that could not be fired.
#[derive(Debug, Serialize)]
pub struct TickError {
    /// The worker.
    pub worker: String,
    /// What went wrong.
    pub error: String,
}

/// Fires every schedule due at `now` (an injectable clock: the service passes the real
/// time). For each, in one storage transaction: the slot is checked to be still due
/// and unfired, a task is created for the worker's scheduled action with the
/// schedule's data (or the skip is recorded), and the next run is set to the first
/// slot after `now` — so slots missed during downtime collapse into this one run, and
/// a restart or a second service cannot fire the same slot twice. Each created task
/// gets its first progress-log line.
pub fn tick(store: &mut dyn Store, tz: Tz, now: DateTime<Utc>) -> Result<TickReport> {
    let now_ms = now.timestamp_millis();
    let mut report = TickReport::default();
    for rec in store.due_schedules(now_ms)? {
        let Some(slot) = rec.next_run_at else {
            continue;
        };
        let spec = Spec::from_json(&rec.spec);
        let next = spec.as_ref().ok().and_then(|s| next_after(s, tz, now));
        let what = spec.as_ref().map(describe).unwrap_or_default();
        let creation = LogLine::new(
            "pending",
            0,
            0,
            0,
            "",
            &format!("Task created by schedule ({what})"),
        );
        // The limit the task would fall under, from the worker as read now (the store
        // decides inside the firing whether a task is created at all).
        let limit = store.get_worker(&rec.worker)?.and_then(|w| {
            let action = scheduled_action(&w.manifest).ok()?;
            let data = serde_json::from_str(&rec.data).unwrap_or(serde_json::Value::Null);
            crate::limits::limit_of(&w, &action, &data)
        });
        let firing = Firing {
            worker: &rec.worker,
            slot,
            spec: &rec.spec,
            now: now_ms,
            next_run_at: next.map(|t| t.timestamp_millis()),
            creation: &creation,
            limit,
        };
        let outcome = store.fire_schedule(&firing, &|manifest| match &spec {
            // A stored spec this build cannot read: skipping with the reason (and no
            // next run) makes it visible in `workers schedule` instead of retrying
            // every tick.
            // The reason is stored and shown in every front-end, so it names no command.
            Err(e) => Err(format!("invalid schedule ({e}); set the schedule again")),
            Ok(_) => scheduled_action(manifest),
        });
        let result = match outcome {
            Ok(FireOutcome::Created { task_id, action }) => {
                tracing::info!(worker = %rec.worker, task = task_id, %action, "schedule created a task ({what})");
                FiredResult::Created { task_id, action }
            }
            Ok(FireOutcome::Skipped { reason }) => {
                tracing::info!(worker = %rec.worker, "scheduled run skipped: {reason}");
                FiredResult::Skipped { reason }
            }
            Ok(FireOutcome::NotDue) => {
                report.already_fired += 1;
                continue;
            }
            Err(e) => {
                tracing::warn!(worker = %rec.worker, "cannot fire schedule: {e}");
                report.errors.push(TickError {
                    worker: rec.worker.clone(),
                    error: e.to_string(),
                });
                continue;
            }
        };
        report.fired.push(Fired {
            worker: rec.worker.clone(),
            slot: ms_to_utc(slot),
            result,
            next_run_at: next,
        });
    }
    report.next_due_at = store.next_due_at()?.map(ms_to_utc);
    Ok(report)
}

/// The action a schedule runs, from the worker's stored manifest JSON.
fn scheduled_action(manifest: &str) -> Result<String, String> {
    let m: WorkerManifest = serde_json::from_str(manifest)
        .map_err(|e| format!("cannot read the worker's manifest: {e}"))?;
    m.scheduled_action()
        .map(|a| a.name.clone())
        .ok_or_else(|| "the worker declares no action to schedule".to_owned())
}

/// A database timestamp (ms since the epoch) as a UTC time.
pub fn ms_to_utc(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}
