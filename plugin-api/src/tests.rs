//! Unit tests of the SDK, driven through the test harness.

use crate::prelude::*;
use crate::testing::{Event, TestRun};
use crate::SettingKind;

#[test]
fn export_symbol_matches_abi_stable_root_module_loader_name() {
    // export_workers! hard-codes this symbol; a different abi_stable would rename it.
    assert_eq!(
        abi_stable::library::ROOT_MODULE_LOADER_NAME,
        "_1as_0lib_1header_0root_bmodule_bloader"
    );
}

struct Steps;

impl Worker for Steps {
    fn manifest(&self) -> WorkerManifest {
        WorkerManifest::new("steps", "Steps")
            .icon("clock")
            .action(ActionSpec::new("count", "Count"))
            .action(ActionSpec::new("explode", "Panic"))
            .setting(SettingSpec::integer("step", "Step").default(1))
            .setting(SettingSpec::string("api_key", "API key").secret())
    }

    fn run(&self, ctx: &Context<'_>, action: &str, input: Input) -> Result<Value, Error> {
        match action {
            "count" => {
                let n = input.data_u64_or("n", 3)?;
                let step = input.setting("step").and_then(Value::as_u64).unwrap_or(1);
                ctx.info("starting");
                let mut done = 0;
                while done < n {
                    ctx.check_cancelled()?;
                    done = (done + step).min(n);
                    ctx.progress(done, n, "counting");
                }
                Ok(json!({ "done": done, "task": ctx.task_id() }))
            }
            _ => panic!("boom {}", 42),
        }
    }
}

#[test]
fn harness_records_progress_and_logs_in_order() {
    let out = TestRun::new(&Steps, "count")
        .data(json!({ "n": 3 }))
        .task_id(7)
        .run();
    assert_eq!(out.result, Ok(json!({ "done": 3, "task": 7 })));
    assert_eq!(
        out.events[0],
        Event::Log {
            level: Level::Info,
            message: "starting".into()
        }
    );
    let progress: Vec<_> = out.progress().map(|(p, t, _)| (p, t)).collect();
    assert_eq!(progress, vec![(1, 3), (2, 3), (3, 3)]);
}

#[test]
fn settings_defaults_are_applied_and_given_values_win() {
    let out = TestRun::new(&Steps, "count")
        .data(json!({ "n": 4 }))
        .settings(json!({ "step": 2 }))
        .run();
    assert_eq!(out.progress().count(), 2);
}

#[test]
fn wrong_setting_type_is_refused_naming_key_and_type() {
    let out = TestRun::new(&Steps, "count")
        .settings(json!({ "step": "two" }))
        .run();
    let err = out.result.unwrap_err();
    assert!(err.contains("'step'") && err.contains("integer"), "{err}");
    assert!(out.events.is_empty());
}

#[test]
fn unknown_setting_is_refused() {
    let err = TestRun::new(&Steps, "count")
        .settings(json!({ "stpe": 2 }))
        .run()
        .result
        .unwrap_err();
    assert!(err.contains("no setting 'stpe'"), "{err}");
}

#[test]
fn panic_in_action_becomes_an_error() {
    let out = TestRun::new(&Steps, "explode").run();
    assert_eq!(out.result, Err("worker panicked: boom 42".to_owned()));
}

#[test]
fn undeclared_action_is_refused() {
    let err = TestRun::new(&Steps, "fly").run().result.unwrap_err();
    assert_eq!(err, "worker 'steps' has no action 'fly'");
}

#[test]
fn cancellation_is_seen_by_the_worker() {
    let out = TestRun::new(&Steps, "count")
        .data(json!({ "n": 100 }))
        .cancel_after_progress(5)
        .run();
    assert_eq!(out.result, Err("cancelled".to_owned()));
    assert_eq!(out.progress().count(), 5);
}

#[test]
fn data_must_be_an_object() {
    let err = TestRun::new(&Steps, "count")
        .data(json!([1, 2]))
        .run()
        .result
        .unwrap_err();
    assert!(err.contains("JSON object"), "{err}");
}

#[test]
fn manifest_validation_catches_bad_identifiers_and_icons() {
    let bad_id = WorkerManifest::new("Product Import", "x").action(ActionSpec::new("a", "A"));
    assert!(bad_id.validate().unwrap_err().contains("URL-safe"));
    let bad_icon = WorkerManifest::new("p", "x")
        .icon("<svg>")
        .action(ActionSpec::new("a", "A"));
    assert!(bad_icon.validate().unwrap_err().contains("unknown icon"));
    let no_actions = WorkerManifest::new("p", "x");
    assert!(no_actions.validate().unwrap_err().contains("no actions"));
    let bad_default = WorkerManifest::new("p", "x")
        .action(ActionSpec::new("a", "A"))
        .setting(SettingSpec::boolean("b", "B").default("yes"));
    assert!(bad_default
        .validate()
        .unwrap_err()
        .contains("not a boolean"));
}

#[test]
fn required_setting_without_value_is_refused() {
    let m = WorkerManifest::new("p", "x")
        .action(ActionSpec::new("a", "A"))
        .setting(SettingSpec::string("url", "URL").required());
    let err = m.resolve_settings(&Default::default()).unwrap_err();
    assert!(err.contains("'url'") && err.contains("required"), "{err}");
}

#[test]
fn scheduled_action_defaults_to_the_first() {
    let m = WorkerManifest::new("p", "x")
        .action(ActionSpec::new("a", "A"))
        .action(ActionSpec::new("b", "B"));
    assert_eq!(m.scheduled_action().unwrap().name, "a");
    let m = m.action(ActionSpec::new("c", "C").scheduled());
    assert_eq!(m.scheduled_action().unwrap().name, "c");
}

#[test]
fn manifest_json_round_trips_and_tolerates_missing_optional_fields() {
    let m = Steps.manifest();
    let text = serde_json::to_string(&m).unwrap();
    let back: WorkerManifest = serde_json::from_str(&text).unwrap();
    assert_eq!(back, m);
    let minimal: WorkerManifest = serde_json::from_str(
        r#"{"identifier":"x","title":"X","actions":[{"name":"a","title":"A"}]}"#,
    )
    .unwrap();
    assert_eq!(minimal.icon, "gear");
    assert!(minimal.settings.is_empty());
    assert_eq!(Steps.manifest().settings[1].kind, SettingKind::String);
}

struct PanickyManifest;

impl Worker for PanickyManifest {
    fn manifest(&self) -> WorkerManifest {
        panic!("no manifest today")
    }

    fn run(&self, _ctx: &Context<'_>, _action: &str, _input: Input) -> Result<Value, Error> {
        Ok(Value::Null)
    }
}

#[test]
fn harness_reports_a_panicking_manifest_as_an_error() {
    let err = TestRun::new(&PanickyManifest, "run")
        .run()
        .result
        .unwrap_err();
    assert_eq!(
        err,
        "the worker panicked while describing itself: no manifest today"
    );
}

#[test]
fn declaring_the_reserved_timeout_setting_is_refused() {
    let m = WorkerManifest::new("p", "x")
        .action(ActionSpec::new("a", "A"))
        .setting(SettingSpec::integer("timeout_secs", "Timeout"));
    assert!(m.validate().unwrap_err().contains("reserved"));
}

#[test]
fn wrong_type_messages_use_the_right_article() {
    let m = WorkerManifest::new("p", "x")
        .action(ActionSpec::new("a", "A"))
        .setting(SettingSpec::integer("n", "N"));
    let given = serde_json::from_value(json!({ "n": "x" })).unwrap();
    assert_eq!(
        m.resolve_settings(&given).unwrap_err(),
        "setting 'n' must be an integer, got string"
    );
}
