//! The demo worker through the SDK's harness.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use stask_plugin_api::prelude::*;
use stask_plugin_api::testing::TestRun;

use crate::Demo;

#[test]
fn manifest_is_valid() {
    let m = Demo.manifest();
    m.validate().unwrap();
    assert_eq!(m.identifier, "demo");
    assert_eq!(m.scheduled_action().unwrap().name, "run");
    let key = m.settings.iter().find(|s| s.key == "api_key").unwrap();
    assert!(key.secret && !key.required && key.default.is_none());
}

#[test]
fn run_reports_each_step_and_writes_steps_file() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 3, "step_ms": 1, "message": "from the test" }))
        .run();
    assert_eq!(out.result, Ok(json!({ "steps": 3, "greeting": "Hello" })));
    let progress: Vec<_> = out.progress().collect();
    assert_eq!(
        progress,
        vec![
            (1, 3, "Working on step 1"),
            (2, 3, "Working on step 2"),
            (3, 3, "Working on step 3"),
        ]
    );
    let logs: Vec<_> = out.logs().map(|(_, m)| m).collect();
    assert_eq!(
        logs,
        vec![
            "from the test",
            "Hello! Running **3** steps of 1 ms",
            "Step **1** of 3",
            "Step **2** of 3",
            "Step **3** of 3",
        ]
    );
    assert_eq!(
        std::fs::read_to_string(out.result_file("steps.txt")).unwrap(),
        "step 1 of 3: done\nstep 2 of 3: done\nstep 3 of 3: done\n"
    );
}

#[test]
fn defaults_are_ten_steps_and_the_greeting_setting_is_returned() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "step_ms": 0 }))
        .settings(json!({ "greeting": "Bonjour" }))
        .run();
    assert_eq!(
        out.result,
        Ok(json!({ "steps": 10, "greeting": "Bonjour" }))
    );
    assert_eq!(out.progress().count(), 10);
}

#[test]
fn step_ms_is_slept() {
    let started = Instant::now();
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 2, "step_ms": 30 }))
        .run();
    assert!(out.result.is_ok());
    assert!(started.elapsed() >= Duration::from_millis(60));
}

#[test]
fn fail_at_fails_at_that_step() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 5, "step_ms": 0, "fail_at": 3 }))
        .run();
    assert_eq!(out.result, Err("failed at step 3 as requested".to_owned()));
    assert_eq!(out.progress().count(), 2);
    assert_eq!(
        std::fs::read_to_string(out.result_file("steps.txt")).unwrap(),
        "step 1 of 5: done\nstep 2 of 5: done\nstep 3 of 5: failed as requested\n"
    );
}

#[test]
fn fail_at_out_of_range_is_refused() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 2, "fail_at": 5 }))
        .run();
    assert_eq!(
        out.result,
        Err("fail_at must be a step number from 1 to 2, got 5".to_owned())
    );
}

#[test]
fn cancellation_interrupts_the_sleep_quickly() {
    let started = Instant::now();
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 5, "step_ms": 60_000 }))
        .cancel_after_progress(1)
        .run();
    assert_eq!(out.result, Err("cancelled".to_owned()));
    assert_eq!(out.progress().count(), 1);
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[test]
fn cancellation_after_k_steps_reports_k_steps() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 5, "step_ms": 1 }))
        .cancel_after_progress(2)
        .run();
    assert_eq!(out.result, Err("cancelled".to_owned()));
    assert_eq!(out.progress().count(), 2);
}

#[test]
fn noop_returns_null_and_reports_nothing() {
    let out = TestRun::new(&Demo, "noop").run();
    assert_eq!(out.result, Ok(Value::Null));
    assert!(out.events.is_empty());
}

#[test]
fn echo_returns_data_unchanged_and_logs_the_message() {
    let data = json!({
        "message": "quotes \" and <tags> & ünïcode\nnew line",
        "nested": { "list": [1, 2.5, null, true] },
    });
    let out = TestRun::new(&Demo, "echo").data(data.clone()).run();
    assert_eq!(out.result, Ok(data));
    let logs: Vec<_> = out.logs().map(|(_, m)| m).collect();
    assert_eq!(logs, vec!["quotes \" and <tags> & ünïcode\nnew line"]);

    let out = TestRun::new(&Demo, "echo").run();
    assert_eq!(out.result, Ok(json!({})));
    assert!(out.events.is_empty());
}

#[test]
fn steps_above_max_steps_are_refused_naming_both() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": 20 }))
        .settings(json!({ "max_steps": 5 }))
        .run();
    assert_eq!(
        out.result,
        Err("20 steps requested but the max_steps setting allows at most 5".to_owned())
    );
    assert!(out.events.is_empty());
}

#[test]
fn wrong_data_types_are_clear_errors() {
    let out = TestRun::new(&Demo, "run")
        .data(json!({ "steps": "many" }))
        .run();
    assert_eq!(
        out.result,
        Err("task data field 'steps' must be a non-negative integer, got \"many\"".to_owned())
    );
}

#[test]
fn spin_reports_progress_calls_times_and_returns_the_cost_per_call() {
    let out = TestRun::new(&Demo, "spin")
        .data(json!({ "calls": 1000 }))
        .run();
    let result = out.result.clone().unwrap();
    assert_eq!(result["calls"], json!(1000));
    assert!(result["ns_per_call"].as_f64().unwrap() > 0.0);
    let progress: Vec<_> = out.progress().collect();
    assert_eq!(progress.len(), 1000);
    assert_eq!(progress[0], (1, 1000, "spinning"));
    assert_eq!(progress[999], (1000, 1000, "spinning"));
}

#[test]
fn spin_with_zero_calls_reports_nothing() {
    let out = TestRun::new(&Demo, "spin")
        .data(json!({ "calls": 0 }))
        .run();
    assert_eq!(out.result, Ok(json!({ "calls": 0, "ns_per_call": 0.0 })));
    assert!(out.events.is_empty());
}

#[test]
fn spin_refuses_a_wrong_calls_type() {
    let out = TestRun::new(&Demo, "spin")
        .data(json!({ "calls": -1 }))
        .run();
    assert_eq!(
        out.result,
        Err("task data field 'calls' must be a non-negative integer, got -1".to_owned())
    );
}

#[test]
fn stamp_returns_the_start_time_in_ns() {
    let now = || {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_nanos() as u64
    };
    let before = now();
    let out = TestRun::new(&Demo, "stamp").run();
    let after = now();
    let started = out.result.unwrap()["started_ns"].as_u64().unwrap();
    assert!(
        before <= started && started <= after,
        "{before} <= {started} <= {after}"
    );
    assert!(out.events.is_empty());
}

#[test]
fn fan_out_enqueues_run_tasks_of_itself_and_returns_their_ids() {
    let out = TestRun::new(&Demo, "fan_out")
        .task_id(20)
        .data(json!({ "count": 2, "data": { "steps": 2 } }))
        .run();
    assert_eq!(out.result, Ok(json!({ "children": [21, 22] })));
    let enqueued: Vec<_> = out
        .enqueued()
        .iter()
        .map(|e| (e.target(), e.data.clone()))
        .collect();
    assert_eq!(
        enqueued,
        vec![
            ("demo/run".to_owned(), json!({ "steps": 2 })),
            ("demo/run".to_owned(), json!({ "steps": 2 })),
        ]
    );
    assert_eq!(out.progress().last(), Some((2, 2, "Enqueued task #22")));
}

#[test]
fn fan_out_to_an_undeclared_action_fails_with_the_refusal() {
    let out = TestRun::new(&Demo, "fan_out")
        .data(json!({ "count": 1, "action": "noop" }))
        .run();
    assert_eq!(
        out.result,
        Err(
            "worker 'demo' may not enqueue 'demo/noop': its manifest declares only demo/run"
                .to_owned()
        )
    );
    assert!(out.enqueued().is_empty());
}
