//! Schedules against a real store in a temporary home. No test sleeps: every "now" is
//! a chosen instant passed to `tick` and the schedule operations.

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::json;
use stask_storage::{Finish, LibraryFingerprint, Outcome, Priority, Status, Store, WorkerMetadata};

use super::spec::{Spec, SpecInput};
use super::tick::{tick, FiredResult};
use crate::home::Home;
use crate::ops::schedules;
use crate::views::ScheduleView;

const MANIFEST: &str = r#"{"identifier":"w","title":"W","actions":[
    {"name":"noop","title":"No-op"},
    {"name":"sync","title":"Sync","scheduled":true}]}"#;

const UTC: Tz = chrono_tz::UTC;

struct Env {
    _dir: tempfile::TempDir,
    home: Home,
    store: Box<dyn Store>,
}

impl Env {
    fn new(active: bool) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(&dir.path().join("home"), None).unwrap();
        let mut store = home.store().unwrap();
        let meta = WorkerMetadata {
            scope: "",
            title: "W",
            description: "",
            icon: "gear",
            version: "1.0",
            manifest: MANIFEST,
        };
        let lib = LibraryFingerprint {
            path: "/nowhere/libw.so".into(),
            size: 1,
            mtime_ns: 1,
            sha256: "00".into(),
        };
        store
            .insert_workers(&[("w".into(), meta, lib, active)])
            .unwrap();
        Env {
            _dir: dir,
            home,
            store,
        }
    }

    fn set(&self, input: SpecInput, data: serde_json::Value, now: &str) {
        let spec = input.parse(UTC, at(now)).unwrap().unwrap();
        schedules::set(&*self.store, "w", &spec, &data, false, UTC, at(now)).unwrap();
    }

    fn tick(&mut self, now: &str) -> super::TickReport {
        tick(&mut *self.store, UTC, at(now)).unwrap()
    }

    fn task_ids(&self) -> Vec<i64> {
        let mut ids: Vec<i64> = self
            .store
            .list_tasks(&Default::default())
            .unwrap()
            .iter()
            .map(|t| t.id)
            .collect();
        ids.sort();
        ids
    }

    fn view(&self) -> ScheduleView {
        ScheduleView::load(&*self.store, "w", UTC).unwrap()
    }
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

fn daily(time: &str) -> SpecInput {
    SpecInput {
        kind: "daily".into(),
        at: Some(time.into()),
        ..Default::default()
    }
}

fn every(interval: &str, from: &str, to: &str) -> SpecInput {
    SpecInput {
        kind: "regular".into(),
        every: Some(interval.into()),
        from: Some(from.into()),
        to: Some(to.into()),
        ..Default::default()
    }
}

#[test]
fn a_due_schedule_creates_one_task_and_a_restart_no_duplicate() {
    let mut env = Env::new(true);
    env.set(
        daily("08:30"),
        json!({"file": "a.csv"}),
        "2026-06-01T00:00:00Z",
    );
    let view = env.view();
    assert_eq!(view.description, "daily at 08:30");
    assert_eq!(view.next_run.unwrap().utc, "2026-06-01T08:30:00Z");

    // Not due yet.
    let early = env.tick("2026-06-01T08:29:59Z");
    assert!(early.fired.is_empty());
    assert_eq!(early.next_due_at, Some(at("2026-06-01T08:30:00Z")));

    let report = env.tick("2026-06-01T08:30:00Z");
    let created = report.created_tasks();
    assert_eq!(created.len(), 1);
    assert_eq!(report.next_due_at, Some(at("2026-06-02T08:30:00Z")));
    let task = env.store.get_task(created[0]).unwrap().unwrap();
    assert_eq!(task.action, "sync", "the action marked scheduled runs");
    assert_eq!(task.status, Status::Pending);
    assert_eq!(task.priority, Priority::Normal);
    assert_eq!(task.max_attempts, 3);
    assert_eq!(task.started_by.as_deref(), Some("schedule"));
    assert_eq!(
        task.run_after,
        at("2026-06-01T08:30:00Z").timestamp_millis(),
        "due at once"
    );
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&task.data).unwrap(),
        json!({"file": "a.csv"})
    );
    let log: Vec<String> = env
        .store
        .log_lines(task.id, 0, 100)
        .unwrap()
        .into_iter()
        .map(|l| l.text)
        .collect();
    assert_eq!(
        log,
        ["pending|0|0|0|-|Task created by schedule (daily at 08:30)"],
        "stored with the task"
    );
    let view = env.view();
    assert_eq!(view.last_task_id, Some(task.id));
    assert_eq!(view.last_run.unwrap().utc, "2026-06-01T08:30:00Z");

    // The same instant again, then with a fresh connection as a restarted service.
    assert!(env.tick("2026-06-01T08:30:00Z").fired.is_empty());
    let mut restarted = env.home.store().unwrap();
    let again = tick(&mut *restarted, UTC, at("2026-06-01T08:30:30Z")).unwrap();
    assert!(again.fired.is_empty());
    assert_eq!(env.task_ids(), vec![task.id]);
}

#[test]
fn a_busy_previous_task_skips_the_run_and_records_it() {
    let mut env = Env::new(true);
    env.set(
        every("1h", "00:00", "23:00"),
        json!({}),
        "2026-06-01T00:30:00Z",
    );
    let first = env.tick("2026-06-01T01:00:00Z").created_tasks();
    assert_eq!(first.len(), 1);

    // Still pending an hour later: skipped, not piled up.
    let report = env.tick("2026-06-01T02:00:00Z");
    let FiredResult::Skipped { reason } = &report.fired[0].result else {
        panic!("expected a skip: {report:?}");
    };
    assert_eq!(
        reason,
        &format!("previous task {} is still pending", first[0])
    );
    let view = env.view();
    assert_eq!(view.skipped_count, 1);
    assert_eq!(view.last_skip.unwrap().utc, "2026-06-01T02:00:00Z");
    assert_eq!(view.next_run.unwrap().utc, "2026-06-01T03:00:00Z");

    // Running counts as busy too.
    env.store
        .claim_task(
            first[0],
            "test/1/1",
            at("2026-06-01T02:10:00Z").timestamp_millis(),
            &crate::engine::start_line,
        )
        .unwrap()
        .unwrap();
    let report = env.tick("2026-06-01T03:00:00Z");
    assert!(
        matches!(&report.fired[0].result, FiredResult::Skipped { reason } if reason.ends_with("still running"))
    );
    assert_eq!(env.view().skipped_count, 2);
    assert_eq!(env.task_ids(), first);

    // Once it has ended, the next slot creates a task again.
    let done = Finish {
        id: first[0],
        owner: "test/1/1".into(),
        outcome: Outcome::Completed {
            result: "{}".into(),
        },
        progress: 100,
        processed: 0,
        total: 0,
        message: "done".into(),
        at: at("2026-06-01T03:30:00Z").timestamp_millis(),
        lines: vec![],
    };
    assert_eq!(env.store.finish_tasks(&[done]).unwrap(), [true]);
    let report = env.tick("2026-06-01T04:00:00Z");
    assert_eq!(report.created_tasks().len(), 1);
    assert_eq!(env.task_ids().len(), 2);
}

#[test]
fn downtime_over_many_slots_makes_exactly_one_run() {
    let mut env = Env::new(true);
    env.set(
        every("10m", "00:00", "23:50"),
        json!({}),
        "2026-06-01T00:05:00Z",
    );
    // The service was down from 00:05 to 05:03: 30 slots passed.
    let report = env.tick("2026-06-01T05:03:00Z");
    assert_eq!(report.fired.len(), 1);
    assert_eq!(report.fired[0].slot, at("2026-06-01T00:10:00Z"));
    assert_eq!(report.created_tasks().len(), 1);
    // The next run is computed from now, not from the missed slot.
    assert_eq!(
        report.fired[0].next_run_at,
        Some(at("2026-06-01T05:10:00Z"))
    );
    assert!(env.tick("2026-06-01T05:09:00Z").fired.is_empty());
    assert_eq!(env.task_ids().len(), 1);
}

#[test]
fn paused_never_fires_and_resume_recomputes_from_now() {
    let mut env = Env::new(true);
    env.set(daily("08:30"), json!({}), "2026-06-01T00:00:00Z");
    let rec = schedules::pause(&*env.store, "w", at("2026-06-01T01:00:00Z")).unwrap();
    assert!(rec.paused);
    assert_eq!(rec.next_run_at, None);
    assert!(env.tick("2026-06-05T12:00:00Z").fired.is_empty());
    assert_eq!(env.store.next_due_at().unwrap(), None);
    let view = env.view();
    assert!(view.paused);
    assert!(view.summary().ends_with("; paused"), "{}", view.summary());

    // Resumed on the 5th after 08:30: the next run is the 6th, nothing caught up.
    let rec = schedules::resume(&*env.store, "w", UTC, at("2026-06-05T12:00:00Z")).unwrap();
    assert!(!rec.paused);
    assert_eq!(env.view().next_run.unwrap().utc, "2026-06-06T08:30:00Z");
    assert!(env.tick("2026-06-05T12:00:01Z").fired.is_empty());
    assert!(env.task_ids().is_empty());
    assert_eq!(env.tick("2026-06-06T08:30:00Z").created_tasks().len(), 1);
}

#[test]
fn an_inactive_worker_records_a_skip() {
    let mut env = Env::new(false);
    env.set(daily("08:30"), json!({}), "2026-06-01T00:00:00Z");
    let report = env.tick("2026-06-01T08:30:00Z");
    assert!(
        matches!(&report.fired[0].result, FiredResult::Skipped { reason } if reason == "worker inactive")
    );
    assert!(env.task_ids().is_empty());
    let view = env.view();
    assert_eq!(view.skipped_count, 1);
    assert_eq!(view.last_skip_reason.as_deref(), Some("worker inactive"));
    assert_eq!(view.next_run.unwrap().utc, "2026-06-02T08:30:00Z");
}

#[test]
fn once_fires_once_then_has_no_next_run() {
    let mut env = Env::new(true);
    let input = SpecInput {
        kind: "once".into(),
        at: Some("2026-06-01 08:00".into()),
        ..Default::default()
    };
    env.set(input, json!({}), "2026-05-01T00:00:00Z");
    assert_eq!(env.view().description, "once at 2026-06-01 08:00");
    let report = env.tick("2026-06-01T09:00:00Z");
    assert_eq!(report.created_tasks().len(), 1);
    assert_eq!(report.fired[0].next_run_at, None);
    assert_eq!(report.next_due_at, None);
    let view = env.view();
    assert!(view.next_run.is_none());
    assert_eq!(
        view.summary(),
        "once at 2026-06-01 08:00 (UTC); no next run"
    );
    assert!(env.tick("2027-06-01T09:00:00Z").fired.is_empty());
    // Resuming a finished one-off does not bring it back.
    schedules::pause(&*env.store, "w", at("2027-06-01T09:00:00Z")).unwrap();
    let rec = schedules::resume(&*env.store, "w", UTC, at("2027-06-01T09:00:00Z")).unwrap();
    assert_eq!(rec.next_run_at, None);
    assert_eq!(env.task_ids().len(), 1);
}

#[test]
fn several_due_schedules_fire_in_one_tick() {
    let mut env = Env::new(true);
    let meta = WorkerMetadata {
        scope: "",
        title: "V",
        description: "",
        icon: "gear",
        version: "1",
        manifest: r#"{"identifier":"v","title":"V","actions":[{"name":"go","title":"Go"}]}"#,
    };
    let lib = LibraryFingerprint {
        path: "/nowhere/libv.so".into(),
        size: 1,
        mtime_ns: 1,
        sha256: "01".into(),
    };
    env.store
        .insert_workers(&[("v".into(), meta, lib, true)])
        .unwrap();
    env.set(daily("08:30"), json!({}), "2026-06-01T00:00:00Z");
    let spec = Spec::Hourly { minute: 0 };
    schedules::set(
        &*env.store,
        "v",
        &spec,
        &json!({"n": 1}),
        false,
        UTC,
        at("2026-06-01T00:00:00Z"),
    )
    .unwrap();
    let report = env.tick("2026-06-01T09:00:00Z");
    assert_eq!(report.created_tasks().len(), 2);
    let actions: Vec<String> = env
        .store
        .list_tasks(&Default::default())
        .unwrap()
        .into_iter()
        .map(|t| format!("{}:{}", t.worker, t.action))
        .collect();
    assert!(actions.contains(&"v:go".to_owned()) && actions.contains(&"w:sync".to_owned()));
}

#[test]
fn a_stored_spec_that_cannot_be_read_is_skipped_visibly() {
    let mut env = Env::new(true);
    env.store
        .set_schedule("w", r#"{"kind":"yearly"}"#, "{}", Some(1_000), 1)
        .unwrap();
    let report = env.tick("2026-06-01T00:00:00Z");
    assert!(
        matches!(&report.fired[0].result, FiredResult::Skipped { reason } if reason.contains("unknown schedule kind 'yearly'"))
    );
    assert_eq!(report.next_due_at, None);
    assert_eq!(env.view().kind, "invalid");
}

#[test]
fn manual_removes_the_schedule_and_data_can_change_alone() {
    let env = Env::new(true);
    env.set(daily("08:30"), json!({"a": 1}), "2026-06-01T00:00:00Z");
    let rec = schedules::set_data(
        &*env.store,
        "w",
        &json!({"a": 2}),
        false,
        at("2026-06-01T01:00:00Z"),
    )
    .unwrap();
    assert_eq!(rec.data, r#"{"a":2}"#);
    assert_eq!(env.view().next_run.unwrap().utc, "2026-06-01T08:30:00Z");
    let manual = SpecInput {
        kind: "manual".into(),
        ..Default::default()
    };
    assert_eq!(manual.parse(UTC, at("2026-06-01T00:00:00Z")).unwrap(), None);
    assert!(schedules::remove(&*env.store, "w").unwrap());
    assert!(!schedules::remove(&*env.store, "w").unwrap());
    let view = env.view();
    assert_eq!(
        (view.kind.as_str(), view.summary().as_str()),
        ("manual", "manual (on demand only)")
    );
    let err = schedules::pause(&*env.store, "w", at("2026-06-01T00:00:00Z")).unwrap_err();
    assert!(err.to_string().contains("has no schedule"), "{err}");
}

#[test]
fn views_show_local_and_utc_times() {
    let env = Env::new(true);
    let kyiv: Tz = "Europe/Kyiv".parse().unwrap();
    let spec = Spec::from_json(r#"{"kind":"weekly","days":["fri","mon"],"at":"08:30"}"#).unwrap();
    schedules::set(
        &*env.store,
        "w",
        &spec,
        &json!({"token": "t", "file": "x"}),
        true,
        kyiv,
        at("2026-11-28T12:00:00Z"),
    )
    .unwrap();
    let view = ScheduleView::load(&*env.store, "w", kyiv).unwrap();
    assert_eq!(view.description, "weekly on fri,mon at 08:30");
    let next = view.next_run.clone().unwrap();
    // 2026-11-30 is a Monday; Kyiv is UTC+2 in winter.
    assert_eq!(next.local, "2026-11-30 08:30 EET");
    assert_eq!(next.utc, "2026-11-30T06:30:00Z");
    assert_eq!(view.data, json!({"token": "[redacted]", "file": "x"}));
    assert_eq!(view.timezone, "Europe/Kyiv");
    assert_eq!(
        view.summary(),
        "weekly on fri,mon at 08:30 (Europe/Kyiv); next run 2026-11-30 08:30 EET (2026-11-30T06:30:00Z)"
    );
    let json = serde_json::to_value(&view).unwrap();
    assert_eq!(json["spec"]["kind"], "weekly");
    assert_eq!(json["next_run"]["utc"], "2026-11-30T06:30:00Z");
}

/// The error of parsing `input` at a fixed time.
fn refused(input: SpecInput) -> String {
    input
        .parse(UTC, at("2026-06-01T00:00:00Z"))
        .expect_err("should be refused")
        .message
}

fn kind(kind: &str) -> SpecInput {
    SpecInput {
        kind: kind.into(),
        ..Default::default()
    }
}

#[test]
fn invalid_schedules_are_refused_naming_the_problem() {
    let cases: Vec<(SpecInput, &str)> = vec![
        (daily("25:00"), "the hour must be 0-23"),
        (daily("8h"), "'8h' is not a time"),
        (daily("08:60"), "the minute must be 0-59"),
        (daily("8:5"), "'8:5' is not a time"),
        (daily(""), "is not a time"),
        (
            SpecInput {
                minute: Some("60".into()),
                ..kind("hourly")
            },
            "minute 60 is out of range; use 0-59",
        ),
        (
            SpecInput {
                minute: Some("-1".into()),
                ..kind("hourly")
            },
            "minute -1 is out of range",
        ),
        (
            SpecInput {
                minute: Some("x".into()),
                ..kind("hourly")
            },
            "not a whole number",
        ),
        (
            SpecInput {
                days: Some("".into()),
                at: Some("08:30".into()),
                ..kind("weekly")
            },
            "the weekday list is empty",
        ),
        (
            SpecInput {
                days: Some("mon,funday".into()),
                at: Some("08:30".into()),
                ..kind("weekly")
            },
            "unknown weekday 'funday'",
        ),
        (
            SpecInput {
                days: Some("mon".into()),
                ..kind("weekly")
            },
            "a weekly schedule needs --at",
        ),
        (
            every("0m", "05:00", "23:00"),
            "is zero; it must be at least 1 minute",
        ),
        (
            every("20h", "05:00", "23:00"),
            "the interval 20h is longer than the window from 05:00 to 23:00 (18h)",
        ),
        (
            every("5h", "22:00", "02:00"),
            "longer than the window from 22:00 to 02:00 (4h)",
        ),
        (every("60", "05:00", "23:00"), "'60' has no unit"),
        (every("30s", "05:00", "23:00"), "minute resolution"),
        (
            every("1h", "05:00", "05:00"),
            "window from 05:00 to 05:00 is empty",
        ),
        (every("1h", "05:00", "24:00"), "the hour must be 0-23"),
        (
            SpecInput {
                at: Some("2026-05-31 23:59".into()),
                ..kind("once")
            },
            "is in the past",
        ),
        (
            SpecInput {
                at: Some("2026-02-30 08:00".into()),
                ..kind("once")
            },
            "does not start with a valid date",
        ),
        (
            SpecInput {
                at: Some("08:00".into()),
                ..kind("once")
            },
            "is not a date and time",
        ),
        (
            kind("yearly"),
            "unknown schedule kind 'yearly'; use manual, once, hourly, daily, weekly or regular",
        ),
        (
            SpecInput {
                minute: Some("5".into()),
                ..daily("08:30")
            },
            "--minute does not apply to a daily schedule (it takes --at)",
        ),
        (
            SpecInput {
                at: Some("08:30".into()),
                ..kind("manual")
            },
            "takes no options",
        ),
    ];
    for (input, expected) in cases {
        let shown = format!("{input:?}");
        let err = refused(input);
        assert!(
            err.contains(expected),
            "{shown}: got {err:?}, want {expected:?}"
        );
    }
}

#[test]
fn invalid_json_specs_and_data_are_refused() {
    for (text, expected) in [
        (r#"{"kind":"yearly"}"#, "unknown schedule kind 'yearly'"),
        (r#"{"at":"08:30"}"#, "has no \"kind\""),
        (r#"{"kind":"daily","at":"25:00"}"#, "the hour must be 0-23"),
        (
            r#"{"kind":"hourly","minute":75}"#,
            "minute 75 is out of range",
        ),
        (
            r#"{"kind":"hourly","minute":-3}"#,
            "minute -3 is out of range",
        ),
        (
            r#"{"kind":"weekly","days":[],"at":"08:30"}"#,
            "the weekday list is empty",
        ),
        (
            r#"{"kind":"regular","every_minutes":0,"from":"05:00","to":"06:00"}"#,
            "at least 1 minute",
        ),
        (r#"{"kind":"manual"}"#, "not stored"),
        (r#"[1]"#, "must be a JSON object"),
        ("nope", "not JSON"),
    ] {
        let err = Spec::from_json(text).expect_err(text);
        assert!(err.contains(expected), "{text}: got {err:?}");
    }

    let env = Env::new(true);
    let spec = Spec::Daily {
        at: "08:30".parse().unwrap(),
    };
    let now = at("2026-06-01T00:00:00Z");
    for (data, expected) in [
        (
            json!([1, 2]),
            "must be a JSON object like {\"file\": \"products.csv\"}, not an array",
        ),
        (json!("x"), "not a string"),
        (
            json!({"api_key": "k"}),
            "'api_key' which looks like a credential",
        ),
    ] {
        let err = schedules::set(&*env.store, "w", &spec, &data, false, UTC, now).unwrap_err();
        assert!(err.to_string().contains(expected), "{data}: got {err}");
    }
    let err = schedules::set(&*env.store, "ghost", &spec, &json!({}), false, UTC, now).unwrap_err();
    assert!(err.to_string().contains("no worker 'ghost'"), "{err}");
    // A one-off in the past is refused on this path too (API-style input).
    let once = Spec::from_json(r#"{"kind":"once","at":"2020-01-01 08:00"}"#).unwrap();
    let err = schedules::set(&*env.store, "w", &once, &json!({}), false, UTC, now).unwrap_err();
    assert!(err.to_string().contains("in the past"), "{err}");
    assert!(
        env.store.get_schedule("w").unwrap().is_none(),
        "nothing stored"
    );
}

#[test]
fn specs_round_trip_as_json_and_describe_themselves() {
    let now = at("2026-06-01T00:00:00Z");
    let cases = [
        (
            SpecInput {
                at: Some("2026-12-01T08:00".into()),
                ..kind("once")
            },
            r#"{"kind":"once","at":"2026-12-01 08:00"}"#,
            "once at 2026-12-01 08:00",
        ),
        (
            SpecInput {
                minute: Some("15".into()),
                ..kind("hourly")
            },
            r#"{"kind":"hourly","minute":15}"#,
            "hourly at minute 15",
        ),
        (
            kind("hourly"),
            r#"{"kind":"hourly","minute":0}"#,
            "hourly at minute 0",
        ),
        (
            daily("8:30"),
            r#"{"kind":"daily","at":"08:30"}"#,
            "daily at 08:30",
        ),
        (
            SpecInput {
                days: Some("Fri, mon,MONDAY".into()),
                at: Some("08:30".into()),
                ..kind("weekly")
            },
            r#"{"kind":"weekly","days":["mon","fri"],"at":"08:30"}"#,
            "weekly on mon,fri at 08:30",
        ),
        (
            every("60m", "05:00", "23:00"),
            r#"{"kind":"regular","every_minutes":60,"from":"05:00","to":"23:00"}"#,
            "every 60 min between 05:00 and 23:00",
        ),
        (
            every("1h30m", "22:00", "02:00"),
            r#"{"kind":"regular","every_minutes":90,"from":"22:00","to":"02:00"}"#,
            "every 90 min between 22:00 and 02:00",
        ),
    ];
    for (input, stored, described) in cases {
        let spec = input.parse(UTC, now).unwrap().unwrap();
        assert_eq!(spec.to_json(), stored);
        assert_eq!(Spec::from_json(stored).unwrap(), spec);
        assert_eq!(super::describe(&spec), described);
    }
    // Regular defaults to the whole day.
    let spec = SpecInput {
        every: Some("2h".into()),
        ..kind("regular")
    }
    .parse(UTC, now)
    .unwrap()
    .unwrap();
    assert_eq!(
        super::describe(&spec),
        "every 120 min between 00:00 and 23:59"
    );
}

/// The API sends each description also as a code and parameters (the page words it in
/// the user's language): every kind, manual and an unreadable spec, in the view and in
/// the worker list's summary.
#[test]
fn descriptions_come_with_a_code_and_parameters() {
    let now = at("2026-06-01T00:00:00Z");
    let cases = [
        (
            SpecInput {
                at: Some("2026-12-01T08:00".into()),
                ..kind("once")
            },
            json!({"code": "once", "params": {"at": "2026-12-01 08:00"}}),
        ),
        (
            SpecInput {
                minute: Some("15".into()),
                ..kind("hourly")
            },
            json!({"code": "hourly", "params": {"minute": 15}}),
        ),
        (
            daily("8:30"),
            json!({"code": "daily", "params": {"at": "08:30"}}),
        ),
        (
            SpecInput {
                days: Some("fri,mon".into()),
                at: Some("08:30".into()),
                ..kind("weekly")
            },
            json!({"code": "weekly", "params": {"days": ["mon", "fri"], "at": "08:30"}}),
        ),
        (
            every("1h30m", "22:00", "02:00"),
            json!({"code": "regular", "params": {"every_minutes": 90, "from": "22:00", "to": "02:00"}}),
        ),
    ];
    for (input, code) in cases {
        let spec = input.parse(UTC, now).unwrap().unwrap();
        assert_eq!(
            serde_json::to_value(super::describe_code(&spec)).unwrap(),
            code
        );
    }

    let env = Env::new(true);
    let manual = serde_json::to_value(env.view()).unwrap();
    assert_eq!(
        manual["description_code"],
        json!({"code": "manual", "params": {}})
    );
    env.set(daily("03:00"), json!({}), "2026-06-01T00:00:00Z");
    let view = env.view();
    let shown = serde_json::to_value(&view).unwrap();
    assert_eq!(shown["description"], "daily at 03:00");
    assert_eq!(
        shown["description_code"],
        json!({"code": "daily", "params": {"at": "03:00"}})
    );
    let summary = serde_json::to_value(crate::views::ScheduleSummary::new(&view)).unwrap();
    assert_eq!(summary["description_code"], shown["description_code"]);

    let rec = stask_storage::ScheduleRecord {
        spec: r#"{"kind":"fortnightly"}"#.into(),
        ..env.store.get_schedule("w").unwrap().unwrap()
    };
    let broken = serde_json::to_value(ScheduleView::new("w", Some(&rec), UTC)).unwrap();
    assert_eq!(broken["description_code"]["code"], "invalid");
    assert!(broken["description_code"]["params"]["error"].is_string());
}
