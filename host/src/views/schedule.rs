//! How a worker's schedule is shown: [`ScheduleView`] (`workers schedule --json`, the
//! API's schedule endpoints and worker details) and its short form in worker lists.

use chrono::SecondsFormat;
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::Value;
use stask_storage::{ScheduleRecord, Store};

use crate::schedule::tick::ms_to_utc;
use crate::schedule::{describe, describe_code, DescriptionCode, Spec, MANUAL_DESCRIPTION};
use crate::sensitive;

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
    /// The description as a code and parameters, for front-ends that word it in their
    /// own language: `{"code": "daily", "params": {"at": "08:30"}}`.
    pub description_code: DescriptionCode,
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
                description_code: DescriptionCode::manual(),
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
        let (kind, description, description_code) = match Spec::from_json(&rec.spec) {
            Ok(spec) => (
                spec.kind().to_owned(),
                describe(&spec),
                describe_code(&spec),
            ),
            Err(e) => (
                "invalid".to_owned(),
                format!("invalid schedule: {e}"),
                DescriptionCode::invalid(&e),
            ),
        };
        let time = |ms: Option<i64>| ms.map(|ms| TimeView::new(ms, tz));
        ScheduleView {
            worker: worker.to_owned(),
            kind,
            description,
            description_code,
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
    pub fn load(store: &dyn Store, worker: &str, tz: Tz) -> anyhow::Result<ScheduleView> {
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

/// The short form of a schedule in the API's worker list.
#[derive(Debug, Clone, Serialize)]
pub struct ScheduleSummary {
    /// `manual` or the spec's kind.
    pub kind: String,
    /// `daily at 08:30`, …
    pub description: String,
    /// [`ScheduleView::description_code`].
    pub description_code: DescriptionCode,
    /// [`ScheduleView::summary`].
    pub summary: String,
    /// Paused schedules never fire.
    pub paused: bool,
    /// Next run.
    pub next_run: Option<TimeView>,
}

impl ScheduleSummary {
    /// The short form of `v`.
    pub fn new(v: &ScheduleView) -> ScheduleSummary {
        ScheduleSummary {
            kind: v.kind.clone(),
            description: v.description.clone(),
            description_code: v.description_code.clone(),
            summary: v.summary(),
            paused: v.paused,
            next_run: v.next_run.clone(),
        }
    }
}
