//! Runners contain whatever a plugin does: the protocol is not the plugin's stdio,
//! plugin output never breaks a runner, nothing a task starts outlives it, a runner a
//! task left dirty is retired before the next task, and resource limits end a run with
//! a message naming the limit.
//!
//! Each case runs the real binary with the `misbehaving` fixture library.

use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{wait_until, Home};

const DEMO: &str = "stask_worker_demo";
const MISBEHAVING: &str = "stask_fixture_misbehaving";
const WAIT: Duration = Duration::from_secs(30);

fn home() -> Home {
    let home = Home::new();
    home.install_active(&[MISBEHAVING, DEMO]);
    home
}

fn create(home: &Home, action: &str, data: Value) -> i64 {
    home.create_task("misbehaving", action, &data, &["--max-attempts", "1"])
}

/// `tasks process --concurrency 1 --json` (one slot, so tasks share a runner), with a
/// short time limit so a task that would hang fails instead of blocking the test.
fn process(home: &Home, env: &[(&str, &str)]) -> Value {
    let mut all = vec![("STASK_DEFAULT_TIMEOUT_SECS", "10")];
    all.extend_from_slice(env);
    home.json_env(&["tasks", "process", "--concurrency", "1"], &all)
}

fn status(home: &Home, id: i64) -> String {
    home.task(id)["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn error(home: &Home, id: i64) -> String {
    home.task(id)["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn assert_completed(home: &Home, ids: &[i64]) {
    for &id in ids {
        let t = home.task(id);
        assert_eq!(t["status"], "completed", "task {id}: {t:#}");
        assert_eq!(t["attempts"], 1, "task {id} ran once: {t:#}");
    }
}

/// The pid of the `sleep` a `spawn-child` task started, from its log.
fn child_pid(home: &Home, id: i64) -> u32 {
    wait_until(WAIT, "the task logged its child's pid", || {
        home.log_lines(id).iter().find_map(|l| {
            l.split("child pid ")
                .nth(1)
                .and_then(|p| p.trim().parse::<u32>().ok())
        })
    })
}

/// Whether `pid` is a running process (a zombie has ended: it only waits to be reaped).
fn running(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn assert_gone(pid: u32, how: &str) {
    // The kill is immediate; the bound only absorbs scheduling on a busy machine.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while running(pid) && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    if running(pid) {
        // Do not leave it behind for the next test run.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        panic!("the task's child {pid} outlived the task ({how})");
    }
}

// ---------------------------------------------------------------------------------
// the protocol is not the plugin's stdio
// ---------------------------------------------------------------------------------

#[test]
fn a_plugin_reading_stdin_reads_nothing_and_the_next_task_runs() {
    let home = home();
    let reader = create(&home, "read-stdin", json!({}));
    let next = create(&home, "slow-ok", json!({ "ms": 1 }));
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 2, "{summary:#}");
    assert_completed(&home, &[reader, next]);
    assert_eq!(home.task(reader)["result"], json!({ "read": 0 }));
}

#[test]
fn a_plugin_closing_stdin_does_not_break_its_runner() {
    let home = home();
    let mut svc = home.serve(&["--concurrency", "1"], &[]);
    let done = |id: i64| {
        wait_until(WAIT, &format!("task {id} ended"), || {
            let s = status(&home, id);
            (s != "pending" && s != "running").then_some(s)
        })
    };
    let closer = create(&home, "close-stdin", json!({}));
    assert_eq!(done(closer), "completed");
    // Sent to the same runner after the close: the runner must still take commands.
    let next = create(&home, "slow-ok", json!({ "ms": 300 }));
    assert_eq!(done(next), "completed", "{:#}", home.task(next));
    svc.signal(libc::SIGTERM);
    svc.wait(WAIT);
    assert_completed(&home, &[closer, next]);
}

#[test]
fn invalid_utf8_and_endless_lines_on_stderr_never_break_the_runner() {
    let home = home();
    let bytes = create(&home, "stderr-bytes", json!({ "lines": 20 }));
    let print = create(&home, "print", json!({}));
    let next = create(&home, "slow-ok", json!({ "ms": 1 }));
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 3, "{summary:#}");
    assert_completed(&home, &[bytes, print, next]);
}

#[test]
fn the_runner_refuses_to_start_outside_an_engine_and_says_why() {
    let home = home();
    let lib = home
        .plugins_dir()
        .join(stask_e2e::plugin_file_name(MISBEHAVING));
    let out = home.run(&["__runner", lib.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("descriptors 3 and 4") && stderr.contains("stask tasks process"),
        "{stderr}"
    );
}

// ---------------------------------------------------------------------------------
// nothing a task starts outlives it
// ---------------------------------------------------------------------------------

/// Runs a `spawn-child` task (`then` says how it goes on) under `tasks process`,
/// calling `end` once the child is known; returns the child's pid and the task id after
/// the process command ended.
fn child_of_task(home: &Home, data: Value, end: impl FnOnce(&Home, i64)) -> (u32, i64) {
    let id = create(home, "spawn-child", data);
    let bg = home.spawn(
        &["tasks", "process", "--concurrency", "1", "--json"],
        &[
            ("STASK_DEFAULT_TIMEOUT_SECS", "2"),
            ("STASK_CANCEL_GRACE_MS", "300"),
        ],
    );
    let pid = child_pid(home, id);
    end(home, id);
    let out = bg.wait(WAIT);
    assert!(out.status.success(), "{out:?}");
    (pid, id)
}

#[test]
fn children_end_with_a_task_that_completes_also_when_they_started_a_new_session() {
    for setsid in [false, true] {
        let home = home();
        let (pid, id) = child_of_task(&home, json!({ "setsid": setsid }), |_, _| {});
        assert_eq!(status(&home, id), "completed");
        assert_gone(pid, &format!("completed, setsid {setsid}"));
    }
}

#[test]
fn children_end_with_a_task_that_is_cancelled_cooperatively_or_killed_after_the_grace() {
    for (then, setsid) in [("sleep", false), ("sleep", true), ("hang", true)] {
        let home = home();
        let (pid, id) = child_of_task(
            &home,
            json!({ "setsid": setsid, "then": then }),
            |home, id| {
                assert!(
                    running(child_pid(home, id)),
                    "the child runs while its task does"
                );
                home.ok(&["tasks", "cancel", &id.to_string()]);
            },
        );
        assert_eq!(status(&home, id), "cancelled", "then {then}");
        assert_gone(
            pid,
            &format!("cancelled while it did {then}, setsid {setsid}"),
        );
    }
}

#[test]
fn children_end_with_a_task_that_times_out_or_crashes() {
    for then in ["hang", "abort"] {
        let home = home();
        let (pid, id) = child_of_task(&home, json!({ "setsid": true, "then": then }), |_, _| {});
        assert_eq!(status(&home, id), "failed", "then {then}");
        assert_gone(pid, &format!("task that did {then}"));
    }
}

#[test]
fn children_end_when_the_service_stops() {
    let home = home();
    let id = create(
        &home,
        "spawn-child",
        json!({ "setsid": true, "then": "sleep" }),
    );
    let mut svc = home.serve(&[], &[("STASK_SHUTDOWN_GRACE_SECS", "0")]);
    let pid = child_pid(&home, id);
    svc.signal(libc::SIGTERM);
    let out = svc.wait(WAIT);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        status(&home, id),
        "pending",
        "an interrupted task is requeued"
    );
    assert_gone(pid, "service stopped");
}

// ---------------------------------------------------------------------------------
// a runner a task left dirty is retired
// ---------------------------------------------------------------------------------

#[test]
fn a_thread_left_running_retires_the_runner_and_the_next_task_is_not_charged() {
    let home = home();
    let leaver = create(&home, "leave-thread", json!({ "ms": 300 }));
    // Long enough that the left thread would abort the runner during it.
    let innocent = create(&home, "slow-ok", json!({ "ms": 1000 }));
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 2, "{summary:#}");
    assert_completed(&home, &[leaver, innocent]);
}

#[test]
fn a_process_left_running_is_ended_and_the_next_task_runs_in_a_fresh_runner() {
    let home = home();
    let leaver = create(&home, "spawn-child", json!({}));
    let next = create(&home, "slow-ok", json!({ "ms": 1 }));
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 2, "{summary:#}");
    assert_completed(&home, &[leaver, next]);
    let pid = home.task(leaver)["result"]["pid"].as_u64().unwrap() as u32;
    assert_gone(pid, "completed before another task");
}

// ---------------------------------------------------------------------------------
// resource limits
// ---------------------------------------------------------------------------------

#[test]
fn memory_over_the_worker_limit_fails_the_task_naming_the_limit() {
    let home = home();
    home.ok(&["workers", "settings", "misbehaving", "max_memory_mb=128"]);
    let big = create(&home, "grow-memory", json!({ "mb": 256 }));
    let small = create(&home, "grow-memory", json!({ "mb": 16 }));
    process(&home, &[]);
    assert_eq!(status(&home, big), "failed");
    let e = error(&home, big);
    assert!(
        e.contains("ran out of memory") && e.contains("128 MiB") && e.contains("max_memory_mb"),
        "{e}"
    );
    assert_completed(&home, &[small]);
}

#[test]
fn the_host_default_memory_limit_stops_a_worker_that_grows_without_end() {
    let home = home();
    let id = create(&home, "grow-memory", json!({ "mb": 400 }));
    process(&home, &[("STASK_WORKER_MAX_MEMORY_MB", "200")]);
    assert_eq!(status(&home, id), "failed");
    let e = error(&home, id);
    assert!(e.contains("200 MiB") && e.contains("max_memory_mb"), "{e}");
}

#[test]
fn cpu_time_over_the_worker_limit_fails_the_task_naming_the_limit() {
    let home = home();
    home.ok(&["workers", "settings", "misbehaving", "max_cpu_secs=1"]);
    let id = create(&home, "spin", json!({ "seconds": 8 }));
    process(&home, &[]);
    assert_eq!(status(&home, id), "failed");
    let e = error(&home, id);
    assert!(
        e.contains("CPU time limit of 1 s") && e.contains("max_cpu_secs"),
        "{e}"
    );
}

#[test]
fn open_files_over_the_worker_limit_fail_the_task_naming_the_limit() {
    let home = home();
    home.ok(&["workers", "settings", "misbehaving", "max_open_files=64"]);
    let id = create(&home, "open-files", json!({ "count": 200 }));
    let fits = create(&home, "open-files", json!({ "count": 20 }));
    process(&home, &[]);
    assert_eq!(status(&home, id), "failed");
    let e = error(&home, id);
    assert!(
        e.contains("at most 64 files") && e.contains("max_open_files"),
        "{e}"
    );
    assert_completed(&home, &[fits]);
}

#[test]
fn a_stack_overflow_is_reported_as_such() {
    let home = home();
    let id = create(&home, "overflow-stack", json!({}));
    process(&home, &[]);
    assert_eq!(status(&home, id), "failed");
    let e = error(&home, id);
    assert!(e.contains("overflowed its stack"), "{e}");
}

#[test]
fn limits_are_settings_every_worker_accepts_and_bad_values_name_the_range() {
    let home = home();
    let err = home.fail(&["workers", "settings", "misbehaving", "max_memory_mb=1"]);
    assert!(err.contains("max_memory_mb") && err.contains("64"), "{err}");
    home.ok(&["workers", "settings", "demo", "max_open_files=100"]);
    let w = home.json(&["workers", "show", "demo"]);
    assert_eq!(w["settings"]["max_open_files"], 100, "{w:#}");
}
