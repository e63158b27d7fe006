//! A worker's schedule: set (or replace), change its data, remove, pause and resume,
//! with every check done before anything is stored. [`change`] is what both
//! front-ends call for "set the schedule like this" (`stask workers schedule ID …`,
//! `PUT /workers/{id}/schedule`); the others are its parts and the single-purpose
//! operations. Every change of a schedule's timing or state wakes the services: they
//! sleep until the next due schedule they know of.

use anyhow::Result;
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use stask_plugin_api::WorkerManifest;
use stask_storage::{ScheduleRecord, Store};

use crate::ops::tasks::create::{quoted, sensitive_hint};
use crate::ops::tasks::MAX_DATA_BYTES;
use crate::ops::workers;
use crate::problem::Problem;
use crate::schedule::spec::json_type_with_article;
use crate::schedule::{next_after, InputNames, Spec, SpecError, SpecInput};
use crate::sensitive;

fn no_schedule(id: &str) -> anyhow::Error {
    Problem::conflict(
        "no_schedule",
        format!("worker '{id}' has no schedule (it runs on demand only)"),
    )
    .hint(format!(
        "set one with e.g. `stask workers schedule {id} daily --at 08:30`"
    ))
    .into()
}

fn invalid_schedule(e: SpecError) -> anyhow::Error {
    Problem::invalid(e.field, "invalid_schedule", e.message).into()
}

fn invalid_data(message: String) -> Problem {
    Problem::invalid("data", "invalid_data", message)
}

/// Checks schedule data the way task creation checks task data: a JSON object, at most
/// [`MAX_DATA_BYTES`], and no credential-looking keys unless `allow_sensitive`.
/// Returns the JSON text to store.
pub fn check_data(worker: &str, data: &Value, allow_sensitive: bool) -> Result<String, Problem> {
    if !data.is_object() {
        return Err(invalid_data(format!(
            "schedule data must be a JSON object like {{\"file\": \"products.csv\"}}, not {}",
            json_type_with_article(data)
        )));
    }
    let text = serde_json::to_string(data).map_err(|e| invalid_data(e.to_string()))?;
    if text.len() > MAX_DATA_BYTES {
        return Err(invalid_data(format!(
            "schedule data is {} bytes; the limit is {MAX_DATA_BYTES} bytes. Pass large inputs as a file path instead",
            text.len()
        )));
    }
    if !allow_sensitive {
        let found = sensitive::sensitive_paths(data);
        if !found.is_empty() {
            return Err(invalid_data(format!(
                "schedule data contains {} which looks like a credential; it would be copied in plain text into every task. Keep credentials in the worker's secret settings instead",
                quoted(&found)
            ))
            .hint(sensitive_hint(worker)));
        }
    }
    Ok(text)
}

fn stored(store: &dyn Store, worker_id: &str) -> Result<ScheduleRecord> {
    store
        .get_schedule(worker_id)?
        .ok_or_else(|| no_schedule(worker_id))
}

fn set_quietly(
    store: &dyn Store,
    worker_id: &str,
    spec: &Spec,
    data: &Value,
    allow_sensitive: bool,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<()> {
    let w = workers::find(store, worker_id)?;
    let manifest: WorkerManifest = serde_json::from_str(&w.manifest)?;
    if manifest.scheduled_action().is_none() {
        return Err(Problem::conflict(
            "nothing_to_schedule",
            format!("worker '{worker_id}' declares no action, so there is nothing to schedule"),
        )
        .into());
    }
    spec.validate_new(tz, now).map_err(invalid_schedule)?;
    let data = check_data(worker_id, data, allow_sensitive)?;
    let next = next_after(spec, tz, now).map(|t| t.timestamp_millis());
    store.set_schedule(
        worker_id,
        &spec.to_json(),
        &data,
        next,
        now.timestamp_millis(),
    )?;
    Ok(())
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
    set_quietly(store, worker_id, spec, data, allow_sensitive, tz, now)?;
    store.notify_work();
    stored(store, worker_id)
}

fn set_data_quietly(
    store: &dyn Store,
    worker_id: &str,
    data: &Value,
    allow_sensitive: bool,
    now: DateTime<Utc>,
) -> Result<()> {
    workers::find(store, worker_id)?;
    let rec = stored(store, worker_id)?;
    let data = check_data(worker_id, data, allow_sensitive)?;
    store.set_schedule(
        worker_id,
        &rec.spec,
        &data,
        rec.next_run_at,
        now.timestamp_millis(),
    )?;
    Ok(())
}

/// Replaces only the data of an existing schedule (its timing is untouched).
pub fn set_data(
    store: &dyn Store,
    worker_id: &str,
    data: &Value,
    allow_sensitive: bool,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord> {
    set_data_quietly(store, worker_id, data, allow_sensitive, now)?;
    stored(store, worker_id)
}

fn remove_quietly(store: &dyn Store, worker_id: &str) -> Result<bool> {
    workers::find(store, worker_id)?;
    Ok(store.delete_schedule(worker_id)?)
}

/// Makes the worker manual (on demand only) by removing its schedule. Returns whether
/// it had one.
pub fn remove(store: &dyn Store, worker_id: &str) -> Result<bool> {
    let had = remove_quietly(store, worker_id)?;
    store.notify_work();
    Ok(had)
}

fn pause_quietly(store: &dyn Store, worker_id: &str, now: DateTime<Utc>) -> Result<()> {
    workers::find(store, worker_id)?;
    if !store.pause_schedule(worker_id, now.timestamp_millis())? {
        return Err(no_schedule(worker_id));
    }
    Ok(())
}

/// Pauses the schedule: kept, but never fires until resumed.
pub fn pause(store: &dyn Store, worker_id: &str, now: DateTime<Utc>) -> Result<ScheduleRecord> {
    pause_quietly(store, worker_id, now)?;
    store.notify_work();
    stored(store, worker_id)
}

fn resume_quietly(store: &dyn Store, worker_id: &str, tz: Tz, now: DateTime<Utc>) -> Result<()> {
    workers::find(store, worker_id)?;
    let rec = stored(store, worker_id)?;
    let spec = Spec::from_json(&rec.spec).map_err(|e| {
        Problem::conflict(
            "invalid_schedule",
            format!("the stored schedule of '{worker_id}' is invalid ({e}); set it again"),
        )
    })?;
    let next = next_after(&spec, tz, now).map(|t| t.timestamp_millis());
    store.resume_schedule(worker_id, next, now.timestamp_millis())?;
    Ok(())
}

/// Resumes the schedule with its next run recomputed from `now`: slots that passed
/// while it was paused are not caught up.
pub fn resume(
    store: &dyn Store,
    worker_id: &str,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<ScheduleRecord> {
    resume_quietly(store, worker_id, tz, now)?;
    store.notify_work();
    stored(store, worker_id)
}

/// "Set the schedule like this", as a front-end received it.
#[derive(Debug, Clone, Default)]
pub struct ScheduleChange {
    /// The new timing: a kind with its inputs (`manual` removes the schedule). `None`
    /// keeps the timing, for changing only the data or pausing / resuming.
    pub timing: Option<SpecInput>,
    /// Data of the tasks it creates. `None` keeps the data already set (`{}` for a new
    /// schedule).
    pub data: Option<Value>,
    /// Accept credential-looking keys in the data.
    pub allow_sensitive: bool,
    /// Pause (`true`) or resume (`false`) it once set.
    pub paused: Option<bool>,
}

/// What [`change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    /// `manual`: the schedule was removed; `had` says whether there was one.
    Removed {
        /// There was a schedule.
        had: bool,
    },
    /// A timing was set (and the schedule paused or resumed, when asked).
    Set,
    /// The timing was kept.
    Kept {
        /// The data was replaced.
        data: bool,
        /// Paused (`true`) or resumed (`false`).
        paused: Option<bool>,
    },
}

impl Changed {
    /// Whether anything was asked for at all.
    pub fn anything(self) -> bool {
        !matches!(
            self,
            Changed::Kept {
                data: false,
                paused: None
            }
        )
    }
}

/// Applies `change` to `worker_id`'s schedule: the timing (or its removal), the data,
/// then pause or resume, each checked before it is stored; times are read in `tz` and
/// next runs computed from `now`. Wakes the services when anything changed.
pub fn change(
    store: &dyn Store,
    worker_id: &str,
    change: &ScheduleChange,
    tz: Tz,
    now: DateTime<Utc>,
) -> Result<Changed> {
    workers::find(store, worker_id)?;
    let done = match &change.timing {
        Some(input) => {
            let spec = input.parse(tz, now).map_err(invalid_schedule)?;
            match spec {
                None => {
                    if change.data.is_some() || change.paused.is_some() {
                        let message = match input.names {
                            InputNames::Flags => "manual removes the schedule, so it takes no --data, --pause or --resume",
                            InputNames::Fields => "manual removes the schedule, so it takes no data or paused",
                        };
                        let field = if change.data.is_some() {
                            "data"
                        } else {
                            "paused"
                        };
                        return Err(Problem::invalid(field, "invalid_field", message).into());
                    }
                    Changed::Removed {
                        had: remove_quietly(store, worker_id)?,
                    }
                }
                Some(spec) => {
                    let data = match &change.data {
                        Some(d) => d.clone(),
                        None => match store.get_schedule(worker_id)? {
                            Some(rec) => serde_json::from_str(&rec.data).unwrap_or_default(),
                            None => Value::Object(Default::default()),
                        },
                    };
                    set_quietly(
                        store,
                        worker_id,
                        &spec,
                        &data,
                        change.allow_sensitive,
                        tz,
                        now,
                    )?;
                    Changed::Set
                }
            }
        }
        None => {
            if let Some(d) = &change.data {
                set_data_quietly(store, worker_id, d, change.allow_sensitive, now)?;
            }
            Changed::Kept {
                data: change.data.is_some(),
                paused: change.paused,
            }
        }
    };
    if !matches!(done, Changed::Removed { .. }) {
        // After any set, so a resumed schedule's next run counts from `now`.
        match change.paused {
            Some(true) => pause_quietly(store, worker_id, now)?,
            Some(false) => resume_quietly(store, worker_id, tz, now)?,
            None => {}
        }
    }
    if done.anything() {
        store.notify_work();
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ops::testing::{problem, quiet, woken, Env};
    use crate::problem::ProblemKind;

    const UTC: Tz = chrono_tz::UTC;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-06-01T00:00:00Z")
            .unwrap()
            .with_timezone(&Utc)
    }

    fn timing(kind: &str, names: InputNames) -> SpecInput {
        SpecInput {
            kind: kind.into(),
            names,
            ..Default::default()
        }
    }

    fn daily(at: &str) -> Option<SpecInput> {
        Some(SpecInput {
            at: Some(at.into()),
            ..timing("daily", InputNames::Flags)
        })
    }

    #[test]
    fn a_change_sets_the_timing_keeps_the_data_and_wakes_the_services() {
        let env = Env::new();
        let wake = env.listen();
        let set = ScheduleChange {
            timing: daily("08:30"),
            data: Some(json!({"file": "a.csv"})),
            ..Default::default()
        };
        assert_eq!(
            change(&*env.store, "w", &set, UTC, now()).unwrap(),
            Changed::Set
        );
        assert!(woken(&*wake));
        let rec = env.store.get_schedule("w").unwrap().unwrap();
        assert_eq!(rec.data, r#"{"file":"a.csv"}"#);
        assert_eq!(
            rec.next_run_at,
            Some(now().timestamp_millis() + 8 * 3_600_000 + 1_800_000)
        );

        // A new timing without data keeps the data; paused at once when asked.
        let again = ScheduleChange {
            timing: daily("09:00"),
            paused: Some(true),
            ..Default::default()
        };
        assert_eq!(
            change(&*env.store, "w", &again, UTC, now()).unwrap(),
            Changed::Set
        );
        let rec = env.store.get_schedule("w").unwrap().unwrap();
        assert_eq!(
            (rec.data.as_str(), rec.paused, rec.next_run_at),
            (r#"{"file":"a.csv"}"#, true, None)
        );

        let resume = ScheduleChange {
            data: Some(json!({"file": "b.csv"})),
            paused: Some(false),
            ..Default::default()
        };
        assert_eq!(
            change(&*env.store, "w", &resume, UTC, now()).unwrap(),
            Changed::Kept {
                data: true,
                paused: Some(false)
            }
        );
        let rec = env.store.get_schedule("w").unwrap().unwrap();
        assert_eq!(
            (rec.data.as_str(), rec.paused, rec.next_run_at.is_some()),
            (r#"{"file":"b.csv"}"#, false, true)
        );

        while !quiet(&*wake) {}
        let nothing = ScheduleChange::default();
        assert!(!change(&*env.store, "w", &nothing, UTC, now())
            .unwrap()
            .anything());
        assert!(quiet(&*wake), "nothing changed, nobody woken");

        let manual = ScheduleChange {
            timing: Some(timing("manual", InputNames::Flags)),
            ..Default::default()
        };
        assert_eq!(
            change(&*env.store, "w", &manual, UTC, now()).unwrap(),
            Changed::Removed { had: true }
        );
        assert_eq!(
            change(&*env.store, "w", &manual, UTC, now()).unwrap(),
            Changed::Removed { had: false }
        );
    }

    #[test]
    fn refusals_name_inputs_as_the_front_end_does_and_store_nothing() {
        let mut env = Env::new();
        env.worker(
            "n",
            r#"{"identifier":"n","title":"N","actions":[]}"#,
            true,
            true,
        );
        let with = |names, kind: &str, at: Option<&str>, every: Option<&str>| ScheduleChange {
            timing: Some(SpecInput {
                at: at.map(Into::into),
                every: every.map(Into::into),
                ..timing(kind, names)
            }),
            ..Default::default()
        };
        let cases = [
            (
                with(InputNames::Flags, "daily", Some("08:00"), Some("5m")),
                "every",
                "--every does not apply to a daily schedule (it takes --at)",
            ),
            (
                with(InputNames::Fields, "daily", Some("08:00"), Some("5m")),
                "every",
                "'every' does not apply to a daily schedule (it takes 'at')",
            ),
            (
                with(InputNames::Flags, "daily", None, None),
                "at",
                "a daily schedule needs --at HH:MM",
            ),
            (
                with(InputNames::Fields, "daily", None, None),
                "at",
                "a daily schedule needs 'at' (HH:MM)",
            ),
            (
                with(InputNames::Fields, "daily", Some("25:00"), None),
                "at",
                "'25:00' is not a valid time: the hour must be 0-23 (use HH:MM on the 24-hour clock, e.g. 08:30)",
            ),
            (
                with(InputNames::Fields, "fortnightly", None, None),
                "kind",
                "unknown schedule kind 'fortnightly'; use manual, once, hourly, daily, weekly or regular",
            ),
        ];
        for (c, field, message) in cases {
            let p = problem(change(&*env.store, "w", &c, UTC, now()));
            assert_eq!(
                (p.code, p.field.as_deref(), p.message.as_str()),
                ("invalid_schedule", Some(field), message)
            );
        }
        let window = ScheduleChange {
            timing: Some(SpecInput {
                every: Some("1h".into()),
                from: Some("05:00".into()),
                to: Some("05:00".into()),
                ..timing("regular", InputNames::Fields)
            }),
            ..Default::default()
        };
        let p = problem(change(&*env.store, "w", &window, UTC, now()));
        assert_eq!(p.field.as_deref(), Some("from"));
        assert!(!p.message.contains("--"), "{}", p.message);

        for (names, message) in [
            (
                InputNames::Flags,
                "manual removes the schedule, so it takes no --data, --pause or --resume",
            ),
            (
                InputNames::Fields,
                "manual removes the schedule, so it takes no data or paused",
            ),
        ] {
            let manual = ScheduleChange {
                timing: Some(timing("manual", names)),
                paused: Some(true),
                ..Default::default()
            };
            let p = problem(change(&*env.store, "w", &manual, UTC, now()));
            assert_eq!(
                (p.field.as_deref(), p.message.as_str()),
                (Some("paused"), message)
            );
        }

        let secret = ScheduleChange {
            timing: daily("08:00"),
            data: Some(json!({"token": "t"})),
            ..Default::default()
        };
        let p = problem(change(&*env.store, "w", &secret, UTC, now()));
        assert_eq!((p.field.as_deref(), p.code), (Some("data"), "invalid_data"));
        assert!(!p.message.contains("--allow-sensitive"), "{}", p.message);
        assert!(p.hint.unwrap().contains("--allow-sensitive"));

        let daily_at_8 = with(InputNames::Flags, "daily", Some("08:00"), None);
        let p = problem(change(&*env.store, "n", &daily_at_8, UTC, now()));
        assert_eq!(
            (p.kind, p.code),
            (ProblemKind::Conflict, "nothing_to_schedule")
        );

        let data_only = ScheduleChange {
            data: Some(json!({})),
            ..Default::default()
        };
        let p = problem(change(&*env.store, "w", &data_only, UTC, now()));
        assert_eq!(
            (p.code, p.message.as_str()),
            (
                "no_schedule",
                "worker 'w' has no schedule (it runs on demand only)"
            )
        );
        assert!(p.hint.unwrap().contains("stask workers schedule w daily"));
        assert_eq!(problem(pause(&*env.store, "w", now())).code, "no_schedule");
        assert_eq!(
            problem(change(&*env.store, "ghost", &data_only, UTC, now())).code,
            "worker_not_found"
        );
        assert!(
            env.store.get_schedule("w").unwrap().is_none(),
            "nothing stored"
        );
    }
}
