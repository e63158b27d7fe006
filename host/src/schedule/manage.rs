//! Operator actions on a worker's schedule — set, remove, pause, resume — with every
//! check done before anything is stored, and the view shown by the CLI (and reusable
//! by `workers show` or an API).

use anyhow::{anyhow, bail, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use stask_plugin_api::WorkerManifest;
use stask_storage::{ScheduleRecord, Store, WorkerRecord};

use super::next_run::next_after;
use super::spec::{describe, json_type_with_article, Spec, MANUAL_DESCRIPTION};
use super::tick::ms_to_utc;
use crate::sensitive;
use crate::task_create::MAX_DATA_BYTES;

fn worker(store: &dyn Store, id: &str) -> Result<WorkerRecord> {
    store.get_worker(id)?.ok_or_else(|| {
        anyhow!("no worker '{id}' is registered (see `stask workers list`; new libraries are registered by `stask workers discover`)")
    })
}

fn no_schedule(id: &str) -> anyhow::Error {
    anyhow!("worker '{id}' has no schedule (it runs on demand only); set one with e.g. `stask workers schedule {id} daily --at 08:30`")
}

/// Checks schedule data the way `tasks create` checks task data: a JSON object, at
/// most [`MAX_DATA_BYTES`], and no credential-looking keys unless `allow_sensitive`.
/// Returns the JSON text to store.
pub fn check_data(worker: &str, data: &Value, allow_sensitive: bool) -> Result<String> {
    if !data.is_object() {
        bail!(
            "schedule data must be a JSON object like {{\"file\": \"products.csv\"}}, not {}",
            json_type_with_article(data)
        );
    }
    let text = serde_json::to_string(data)?;
    if text.len() > MAX_DATA_BYTES {
        bail!(
            "schedule data is {} bytes; the limit is {MAX_DATA_BYTES} bytes. Pass large inputs as a file path instead",
            text.len()
        );
    }
    if !allow_sensitive {
        let found = sensitive::sensitive_paths(data);
        if !found.is_empty() {
            bail!(
                "schedule data contains {} which looks like a credential; it would be copied in plain text into every task. Keep credentials in the worker's secret settings (`stask workers settings {worker}`), or pass --allow-sensitive if this is not a secret",
                found.iter().map(|p| format!("'{p}'")).collect::<Vec<_>>().join(", ")
            );
        }
    }
    Ok(text)
}

/// Sets (or replaces) `worker`'s schedule after checking everything: the worker exists
/// and has an action to schedule, the spec is valid (a one-off time must be in the
/// future, read in `tz`), the data passes [`check_data`]. The next run is computed from
/// `now`. A replaced schedule keeps its paused state and history. Returns the stored
/// record.
pub fn set(
    store: &dyn Store,
    worker_id: &str,
    spec: &Spec,
    data: &Value,
    allow_sensitive: bool,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord> {
    let w = worker(store, worker_id)?;
    let manifest: WorkerManifest = serde_json::from_str(&w.manifest)?;
    if manifest.scheduled_action().is_none() {
        bail!("worker '{worker_id}' declares no action, so there is nothing to schedule");
    }
    spec.validate_new(tz, now).map_err(|e| anyhow!(e))?;
    let data = check_data(worker_id, data, allow_sensitive)?;
    let next = next_after(spec, tz, now).map(|t| t.timestamp_millis());
    store.set_schedule(
        worker_id,
        &spec.to_json(),
        &data,
        next,
        now.timestamp_millis(),
    )?;
    store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))
}

/// Replaces only the data of an existing schedule (its timing is untouched).
pub fn set_data(
    store: &dyn Store,
    worker_id: &str,
    data: &Value,
    allow_sensitive: bool,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord> {
    worker(store, worker_id)?;
    let rec = store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))?;
    let data = check_data(worker_id, data, allow_sensitive)?;
    store.set_schedule(
        worker_id,
        &rec.spec,
        &data,
        rec.next_run_at,
        now.timestamp_millis(),
    )?;
    store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))
}

/// Makes the worker manual (on demand only) by removing its schedule. Returns whether
/// it had one.
pub fn remove(store: &dyn Store, worker_id: &str) -> Result<bool> {
    worker(store, worker_id)?;
    Ok(store.delete_schedule(worker_id)?)
}

/// Pauses the schedule: kept, but never fires until resumed.
pub fn pause(store: &dyn Store, worker_id: &str, now: DateTime<Utc>) -> Result<ScheduleRecord> {
    worker(store, worker_id)?;
    if !store.pause_schedule(worker_id, now.timestamp_millis())? {
        return Err(no_schedule(worker_id));
    }
    store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))
}

/// Resumes the schedule with its next run recomputed from `now`: slots that passed
/// while it was paused are not caught up.
pub fn resume(
    store: &dyn Store,
    worker_id: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord> {
    worker(store, worker_id)?;
    let rec = store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))?;
    let spec = Spec::from_json(&rec.spec).map_err(|e| {
        anyhow!("the stored schedule of '{worker_id}' is invalid ({e}); set it again")
    })?;
    let next = next_after(&spec, tz, now).map(|t| t.timestamp_millis());
    store.resume_schedule(worker_id, next, now.timestamp_millis())?;
    store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))
}

/// An instant shown three ways.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TimeView {
    /// Milliseconds since the epoch.
    pub at: i64,
    /// Local time in the schedule timezone: `2026-12-01 08:00 EET`.
    pub local: String,
    /// RFC 3339 in UTC: `2026-12-01T06:00:00Z`.
    pub utc: String,
}

impl TimeView {
    /// The instant `ms` (since the epoch) in `tz`.
    pub fn new(ms: i64, tz: Tz) -> TimeView {
        let t = ms_to_utc(ms);
        TimeView {
            at: ms,
            local: t.with_timezone(&tz).format("%Y-%m-%d %H:%M %Z").to_string(),
            utc: t.to_rfc3339_opts(SecondsFormat::Secs, true),
        }
    }
}

/// A worker's schedule as `workers schedule ID` shows it (`--json` prints this).
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleView {
    /// Worker identifier.
    pub worker: String,
    /// `manual` when there is no schedule, else the spec's kind.
    pub kind: String,
    /// `daily at 08:30`, `manual (on demand only)`, …
    pub description: String,
    /// The stored spec (`null` for manual).
    pub spec: Option<Value>,
    /// Data of the tasks it creates (credential-looking values redacted).
    pub data: Value,
    /// Paused schedules never fire.
    pub paused: bool,
    /// The timezone times are read and shown in.
    pub timezone: String,
    /// Next run (`null`: manual, paused, or nothing left to run).
    pub next_run: Option<TimeView>,
    /// Last time it created a task.
    pub last_run: Option<TimeView>,
    /// The last task it created.
    pub last_task_id: Option<i64>,
    /// Slots that passed without a task.
    pub skipped_count: i64,
    /// When the last skip happened.
    pub last_skip: Option<TimeView>,
    /// Why the last skip happened.
    pub last_skip_reason: Option<String>,
}

impl ScheduleView {
    /// The view of `worker`'s schedule record (`None`: manual).
    pub fn new(worker: &str, rec: Option<&ScheduleRecord>, tz: Tz) -> ScheduleView {
        let Some(rec) = rec else {
            return ScheduleView {
                worker: worker.to_owned(),
                kind: "manual".to_owned(),
                description: MANUAL_DESCRIPTION.to_owned(),
                spec: None,
                data: Value::Object(Default::default()),
                paused: false,
                timezone: tz.name().to_owned(),
                next_run: None,
                last_run: None,
                last_task_id: None,
                skipped_count: 0,
                last_skip: None,
                last_skip_reason: None,
            };
        };
        let (kind, description) = match Spec::from_json(&rec.spec) {
            Ok(spec) => (spec.kind().to_owned(), describe(&spec)),
            Err(e) => ("invalid".to_owned(), format!("invalid schedule: {e}")),
        };
        let time = |ms: Option<i64>| ms.map(|ms| TimeView::new(ms, tz));
        ScheduleView {
            worker: worker.to_owned(),
            kind,
            description,
            spec: serde_json::from_str(&rec.spec).ok(),
            data: serde_json::from_str(&rec.data)
                .map(|v| sensitive::redact(&v))
                .unwrap_or(Value::Null),
            paused: rec.paused,
            timezone: tz.name().to_owned(),
            next_run: time(rec.next_run_at),
            last_run: time(rec.last_run_at),
            last_task_id: rec.last_task_id,
            skipped_count: rec.skipped_count,
            last_skip: time(rec.last_skip_at),
            last_skip_reason: rec.last_skip_reason.clone(),
        }
    }

    /// Reads `worker`'s schedule from the store and builds its view.
    pub fn load(store: &dyn Store, worker: &str, tz: Tz) -> Result<ScheduleView> {
        let rec = store.get_schedule(worker)?;
        Ok(ScheduleView::new(worker, rec.as_ref(), tz))
    }

    /// One line for listings: `daily at 08:30 (Europe/Kyiv); next run 2026-12-01 08:30
    /// EET (2026-12-01T06:30:00Z)`, `… (paused)`, `manual (on demand only)`.
    pub fn summary(&self) -> String {
        if self.spec.is_none() {
            return self.description.clone();
        }
        let next = if self.paused {
            "paused".to_owned()
        } else {
            match &self.next_run {
                Some(t) => format!("next run {} ({})", t.local, t.utc),
                None => "no next run".to_owned(),
            }
        };
        format!("{} ({}); {next}", self.description, self.timezone)
    }
}
