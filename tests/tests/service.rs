//! Acceptance tests of the service part: `stask serve` (wake-ups, graceful stop on
//! SIGTERM / SIGINT, SIGHUP discovery, discovery at start), `stask config`, `stask
//! workers settings` (validation and secret masking) and `stask workers schedule`,
//! driven through the real binary against real built plugin libraries.
//!
//! A service is started in the background with [`serve`], which returns once the
//! service is ready: its wake-up socket `HOME/run/wake-{pid}.sock` exists (it is bound
//! after the signal handlers are installed, so signals sent from then on are handled,
//! not fatal). Nothing here asserts how long anything takes: every asynchronous change
//! is awaited with a generous deadline ([`WAIT`]).

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use stask_e2e::{describe, find_by, processes_with_cmdline, wait_until, Background, Home};

const DEMO: &str = "stask_worker_demo";
const REPLACEABLE: &str = "stask_fixture_replaceable_v1";

/// The longest a test waits for a service to start or stop, or a task to change state.
const WAIT: Duration = Duration::from_secs(30);

/// Every key of `stask.toml` (and `stask config`).
const CONFIG_KEYS: &[&str] = &[
    "bind",
    "concurrency",
    "worker_concurrency",
    "default_timeout_secs",
    "cancel_grace_ms",
    "retry_base_ms",
    "stale_after_secs",
    "shutdown_grace_secs",
    "retention",
    "cleanup_interval",
    "timezone",
    "plugins_dir",
    "discover_on_start",
    "log_format",
    "max_result_file_mb",
    "max_result_task_mb",
    "max_result_json_kb",
    "worker_max_memory_mb",
    "worker_max_cpu_secs",
    "worker_max_open_files",
    "sandbox",
    "database_url",
    "http_header_timeout_secs",
    "http_body_timeout_secs",
    "http_idle_timeout_secs",
    "http_max_connections",
    "http_max_streams",
    "http_max_streams_per_user",
];

// ---------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------

fn home_with(libs: &[&str]) -> Home {
    let home = Home::new();
    home.install_active(libs);
    home
}

fn demo_home() -> Home {
    home_with(&[DEMO])
}

fn create(home: &Home, worker: &str, action: &str, data: Value) -> i64 {
    home.create_task(worker, action, &data, &[])
}

fn status(home: &Home, id: i64) -> String {
    home.task(id)["status"]
        .as_str()
        .expect("status is a string")
        .to_owned()
}

/// Log lines of a task whose message (the sixth field) starts with `prefix`.
fn log_lines_with_message(home: &Home, id: i64, prefix: &str) -> Vec<String> {
    home.log_lines(id)
        .into_iter()
        .filter(|l| {
            l.splitn(6, '|')
                .nth(5)
                .is_some_and(|m| m.starts_with(prefix))
        })
        .collect()
}

fn started_lines(home: &Home, id: i64) -> usize {
    log_lines_with_message(home, id, "Started attempt ").len()
}

/// Waits until the task runs and its start has been logged.
fn wait_running(home: &Home, id: i64) {
    wait_until(WAIT, &format!("task {id} is running"), || {
        (status(home, id) == "running" && started_lines(home, id) > 0).then_some(())
    });
}

/// Waits until the task has status `want`; returns `tasks show --json`. Fails at once
/// if it reaches another final status.
fn wait_status(home: &Home, id: i64, want: &str) -> Value {
    wait_until(WAIT, &format!("task {id} is {want}"), || {
        let t = home.task(id);
        let s = t["status"].as_str().unwrap_or_default();
        if s == want {
            return Some(t);
        }
        if ["completed", "failed", "cancelled"].contains(&s) {
            panic!("task {id} ended {s} instead of {want}: {t:#}");
        }
        None
    })
}

/// `tasks list --json`.
fn tasks(home: &Home) -> Vec<Value> {
    home.json(&["tasks", "list"])
        .as_array()
        .expect("tasks list is an array")
        .clone()
}

fn none_running(home: &Home) {
    let running: Vec<Value> = tasks(home)
        .into_iter()
        .filter(|t| t["status"] == "running")
        .collect();
    assert!(running.is_empty(), "tasks left running: {running:#?}");
}

/// The unique name of the test's temporary directory, which every runner's library
/// path (in the home's cache) contains.
fn runners_of(home: &Home) -> Vec<u32> {
    let marker = home
        .path()
        .parent()
        .and_then(Path::file_name)
        .expect("the home is inside a temporary directory")
        .to_string_lossy()
        .into_owned();
    processes_with_cmdline(&["__runner", &marker])
}

/// Starts `stask serve ARGS` with `env` and returns once it is ready.
fn serve(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Background {
    home.serve(args, env)
}

/// Sends `signal` to a service and waits for it to exit; asserts it exited with 0.
fn stop_with(mut bg: Background, signal: libc::c_int) -> Output {
    bg.signal(signal);
    let out = bg.wait(WAIT);
    assert_eq!(
        out.status.code(),
        Some(0),
        "serve should exit 0 after signal {signal}\n{}",
        describe("stask serve", &out)
    );
    out
}

fn stop(bg: Background) -> Output {
    stop_with(bg, libc::SIGTERM)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

// ---------------------------------------------------------------------------------
// Picking up tasks
// ---------------------------------------------------------------------------------

#[test]
fn serve_runs_a_task_created_by_the_cli_while_it_is_idle() {
    let home = demo_home();
    let bg = serve(&home, &[], &[]);
    let data = json!({ "message": "picked up", "n": 7 });
    let id = create(&home, "demo", "echo", data.clone());
    let t = wait_status(&home, id, "completed");
    assert_eq!(t["result"], data, "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
    assert_eq!(started_lines(&home, id), 1, "{:#?}", home.log_lines(id));
    let out = stop(bg);
    let log = text(&out.stderr);
    assert!(
        log.contains("stask service started"),
        "{}",
        describe("stask serve", &out)
    );
    // At the default level: one line per attempt as it ends, naming the task, its
    // worker and action, and the outcome; the start is logged only with -vv.
    assert!(
        log.lines().any(|l| l.contains(&format!("task={id} "))
            && l.contains("worker=demo")
            && l.contains("action=echo")
            && l.contains("Task completed successfully")),
        "{}",
        describe("stask serve", &out)
    );
    assert!(
        !log.contains("task started"),
        "{}",
        describe("stask serve", &out)
    );
}

/// Tasks created in batches while the service is busy: a slot frees every few
/// milliseconds and each free slot claims the first visible high-priority task, so a
/// claim can fall between a batch's insert and its log files. Yet no task may start
/// before its creation line is in its log (the creator stores tasks unclaimable until
/// their logs exist). Without that rule, "Started" came first and the creation line
/// last, and the log's current state read "pending" for a finished task.
#[test]
fn every_task_created_while_the_service_is_busy_has_a_log_beginning_with_its_creation() {
    let home = demo_home();
    let bg = serve(&home, &[], &[]);
    let busy = r#"{"steps": 1, "step_ms": 5}"#;
    home.json(&[
        "tasks", "create", "demo", "run", "--count", "200", "--data", busy,
    ]);
    let mut ids: Vec<i64> = Vec::new();
    for _ in 0..6 {
        let created = home.json(&[
            "tasks",
            "create",
            "demo",
            "noop",
            "--count",
            "300",
            "--priority",
            "high",
        ]);
        ids.extend(
            created["ids"]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_i64().expect("id")),
        );
    }
    assert_eq!(ids.len(), 1800);
    wait_until(WAIT, "every task completed", || {
        let done = home.json(&["tasks", "list", "--status", "completed", "--limit", "5000"]);
        (done.as_array().map(Vec::len) == Some(2000)).then_some(())
    });
    for id in &ids {
        let lines = home.log_lines(*id);
        let (first, last) = (lines.first(), lines.last());
        assert!(
            first.is_some_and(|l| l.starts_with("pending|") && l.contains("Task created")),
            "task {id}: the log must begin with the creation line: {lines:#?}"
        );
        assert!(
            last.is_some_and(|l| l.starts_with("completed|")),
            "task {id}: the log must end with the completion line: {lines:#?}"
        );
        assert_eq!(
            lines.len(),
            3,
            "task {id}: created, started, completed: {lines:#?}"
        );
    }
    stop(bg);
}

#[test]
fn task_created_while_the_only_slot_is_busy_waits_for_it_then_runs() {
    let home = demo_home();
    let bg = serve(&home, &["--concurrency", "1"], &[]);
    let long = create(&home, "demo", "run", json!({ "steps": 30, "step_ms": 50 }));
    wait_running(&home, long);
    let waiting = create(&home, "demo", "echo", json!({ "message": "next" }));
    // Read the waiting task first: if the long one still runs afterwards, the waiting
    // one was pending while every slot was busy.
    let seen = status(&home, waiting);
    if status(&home, long) == "running" {
        assert_eq!(
            seen, "pending",
            "task {waiting} ran while the only slot was busy"
        );
    }
    let first = wait_status(&home, long, "completed");
    let second = wait_status(&home, waiting, "completed");
    assert_eq!(second["result"], json!({ "message": "next" }), "{second:#}");
    let (finished, started) = (
        first["finished_at"].as_i64().expect("finished_at"),
        second["started_at"].as_i64().expect("started_at"),
    );
    assert!(
        started >= finished,
        "the waiting task started ({started}) before the busy slot was free ({finished})"
    );
    stop(bg);
}

// ---------------------------------------------------------------------------------
// Stopping
// ---------------------------------------------------------------------------------

/// A long task runs; `signal` with a 1 s grace interrupts it, requeues it without
/// counting the attempt, and serve exits 0 with its runners gone.
fn stop_interrupts_and_requeues_a_long_task(signal: libc::c_int) {
    let home = demo_home();
    let id = create(&home, "demo", "run", json!({ "steps": 100, "step_ms": 50 }));
    assert_eq!(home.task(id)["attempts"], 0);
    let bg = serve(
        &home,
        &["--concurrency", "1", "--shutdown-grace-secs", "1"],
        &[],
    );
    wait_running(&home, id);
    assert_eq!(home.task(id)["attempts"], 1, "claiming counts an attempt");
    wait_until(WAIT, "a runner process is running", || {
        Some(()).filter(|()| !runners_of(&home).is_empty())
    });

    let out = stop_with(bg, signal);

    let t = home.task(id);
    assert_eq!(t["status"], "pending", "{t:#}\n{}", describe("serve", &out));
    assert_eq!(
        t["attempts"], 0,
        "the interrupted attempt must not count: {t:#}"
    );
    let lines = home.log_lines(id);
    let last = lines.last().expect("log lines");
    let message = last.splitn(6, '|').nth(5).unwrap_or_default();
    assert!(
        last.starts_with("pending|") && message.starts_with("Interrupted"),
        "the last log line should say the task was interrupted and queued again: {lines:#?}"
    );
    assert!(message.contains("queued again"), "{lines:#?}");
    none_running(&home);
    wait_until(
        Duration::from_secs(10),
        "the stopped service's runners have exited",
        || runners_of(&home).is_empty().then_some(()),
    );
}

#[test]
fn sigterm_after_the_grace_period_requeues_the_running_task_without_counting_the_attempt() {
    stop_interrupts_and_requeues_a_long_task(libc::SIGTERM);
}

#[test]
fn sigint_after_the_grace_period_requeues_the_running_task_like_sigterm() {
    stop_interrupts_and_requeues_a_long_task(libc::SIGINT);
}

#[test]
fn sigterm_lets_a_short_running_task_complete_within_a_generous_grace() {
    let home = demo_home();
    let id = create(&home, "demo", "run", json!({ "steps": 10, "step_ms": 100 }));
    let mut bg = serve(
        &home,
        &["--concurrency", "1", "--shutdown-grace-secs", "30"],
        &[],
    );
    wait_running(&home, id);
    let signalled_at = now_ms();
    bg.signal(libc::SIGTERM);
    let out = bg.wait(WAIT);
    assert_eq!(out.status.code(), Some(0), "{}", describe("serve", &out));

    let t = home.task(id);
    assert_eq!(
        t["status"],
        "completed",
        "{t:#}\n{}",
        describe("serve", &out)
    );
    assert_eq!(t["attempts"], 1, "{t:#}");
    assert_eq!(t["result"]["steps"], 10, "{t:#}");
    let finished = t["finished_at"].as_i64().expect("finished_at");
    assert!(
        finished >= signalled_at,
        "the task finished before SIGTERM was sent, so the grace was not exercised: {t:#}"
    );
    assert!(
        log_lines_with_message(&home, id, "Interrupted").is_empty(),
        "{:#?}",
        home.log_lines(id)
    );
    none_running(&home);
}

#[test]
fn serve_removes_its_wake_socket_when_it_stops() {
    let home = demo_home();
    let bg = serve(&home, &[], &[]);
    let socket = home.wake_socket(bg.pid());
    assert!(socket.exists());
    stop(bg);
    assert!(
        !socket.exists(),
        "'{}' is left behind after a clean stop",
        socket.display()
    );
}

// ---------------------------------------------------------------------------------
// Workers while serving
// ---------------------------------------------------------------------------------

#[test]
fn worker_deactivated_while_its_task_runs_finishes_it_and_its_pending_task_waits_until_reactivated()
{
    let home = home_with(&[DEMO, REPLACEABLE]);
    let mut bg = serve(&home, &["--concurrency", "1"], &[]);
    let running = create(&home, "demo", "run", json!({ "steps": 40, "step_ms": 50 }));
    wait_running(&home, running);
    let pending = create(&home, "demo", "echo", json!({ "message": "later" }));
    home.ok(&["workers", "deactivate", "demo"]);
    assert_eq!(
        status(&home, running),
        "running",
        "the scenario needs the task to still run when its worker is deactivated"
    );
    // Created after the pending demo task: it only runs first because that one is not
    // claimable.
    let other = create(&home, "replaceable", "version", json!({}));

    let t = wait_status(&home, running, "completed");
    assert_eq!(t["result"]["steps"], 40, "{t:#}");
    let o = wait_status(&home, other, "completed");
    assert_eq!(o["result"], json!({ "version": 1 }), "{o:#}");

    let p = home.task(pending);
    assert_eq!(p["status"], "pending", "{p:#}");
    assert_eq!(p["attempts"], 0, "{p:#}");
    assert_eq!(
        started_lines(&home, pending),
        0,
        "{:#?}",
        home.log_lines(pending)
    );
    assert!(bg.try_status().is_none(), "serve ended early");

    home.ok(&["workers", "activate", "demo"]);
    let p = wait_status(&home, pending, "completed");
    assert_eq!(p["result"], json!({ "message": "later" }), "{p:#}");
    stop(bg);
}

#[test]
fn sighup_makes_a_running_serve_discover_a_new_library_registered_inactive() {
    let home = Home::new();
    let mut bg = serve(&home, &[], &[]);
    assert_eq!(home.json(&["workers", "list"]), json!([]));
    home.install(DEMO);
    bg.signal(libc::SIGHUP);
    let w = wait_until(WAIT, "the new library is registered", || {
        find_by(&home.json(&["workers", "list"]), "identifier", "demo").cloned()
    });
    assert_eq!(w["active"], false, "{w:#}");
    assert!(
        bg.try_status().is_none(),
        "SIGHUP must not stop the service"
    );
    stop(bg);
}

#[test]
fn serve_discovers_new_libraries_at_start_as_inactive_workers_unless_disabled() {
    let home = Home::new();
    home.install(DEMO);
    let bg = serve(&home, &[], &[]);
    let w = wait_until(WAIT, "the library is registered at start", || {
        find_by(&home.json(&["workers", "list"]), "identifier", "demo").cloned()
    });
    assert_eq!(w["active"], false, "{w:#}");
    stop(bg);

    let home = Home::new();
    home.install(DEMO);
    std::fs::write(
        home.path().join("stask.toml"),
        "discover_on_start = false\n",
    )
    .expect("write stask.toml");
    let bg = serve(&home, &[], &[]);
    stop(bg);
    assert_eq!(
        home.json(&["workers", "list"]),
        json!([]),
        "discover_on_start = false must not register anything"
    );
}

// ---------------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------------

fn config(home: &Home, env: &[(&str, &str)]) -> Value {
    home.json_env(&["config"], env)
}

fn write_config(home: &Home, toml: &str) {
    std::fs::write(home.path().join("stask.toml"), toml).expect("write stask.toml");
}

#[test]
fn config_json_shows_every_key_with_its_default_and_source_default() {
    let home = Home::new();
    let c = config(&home, &[]);
    let keys: Vec<&String> = c.as_object().expect("object").keys().collect();
    let mut expected: Vec<&str> = CONFIG_KEYS.to_vec();
    expected.sort_unstable();
    assert_eq!(keys, expected, "{c:#}");
    for key in CONFIG_KEYS {
        assert_eq!(c[key]["source"], "default", "{key}: {c:#}");
    }
    let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
    assert_eq!(c["concurrency"]["value"], cpus.to_string(), "{c:#}");
    assert_eq!(c["bind"]["value"], "127.0.0.1:8080", "{c:#}");
    assert_eq!(c["timezone"]["value"], "UTC", "{c:#}");
    assert_eq!(c["shutdown_grace_secs"]["value"], "30", "{c:#}");
    assert_eq!(c["discover_on_start"]["value"], "true", "{c:#}");
    assert_eq!(
        c["plugins_dir"]["value"],
        home.plugins_dir().display().to_string(),
        "{c:#}"
    );

    let shown = home.ok(&["config"]);
    for key in CONFIG_KEYS {
        let line = shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(key))
            .unwrap_or_else(|| panic!("{key} not shown:\n{shown}"));
        assert!(line.ends_with("(default)"), "{line}");
    }
}

#[test]
fn config_json_shows_stask_toml_values_with_source_stask_toml() {
    let home = Home::new();
    write_config(
        &home,
        "concurrency = 3\ntimezone = \"Europe/Kyiv\"\nshutdown_grace_secs = 7\n\
         discover_on_start = false\n[worker_concurrency]\ndemo = 1\n",
    );
    let c = config(&home, &[]);
    for (key, value) in [
        ("concurrency", "3"),
        ("timezone", "Europe/Kyiv"),
        ("shutdown_grace_secs", "7"),
        ("discover_on_start", "false"),
        ("worker_concurrency", "demo=1"),
    ] {
        assert_eq!(c[key]["value"], value, "{key}: {c:#}");
        assert_eq!(c[key]["source"], "stask.toml", "{key}: {c:#}");
    }
    assert_eq!(c["bind"]["source"], "default", "{c:#}");
    let shown = home.ok(&["config"]);
    assert!(
        shown.lines().any(|l| l.starts_with("timezone")
            && l.contains("Europe/Kyiv")
            && l.ends_with("(stask.toml)")),
        "{shown}"
    );
}

#[test]
fn stask_concurrency_env_overrides_the_file() {
    let home = Home::new();
    write_config(&home, "concurrency = 3\n");
    let c = config(&home, &[("STASK_CONCURRENCY", "5")]);
    assert_eq!(c["concurrency"]["value"], "5", "{c:#}");
    assert_eq!(c["concurrency"]["source"], "env STASK_CONCURRENCY", "{c:#}");
    let shown = home.ok_env(&["config"], &[("STASK_CONCURRENCY", "5")]);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("concurrency ") && l.ends_with("(env STASK_CONCURRENCY)")),
        "{shown}"
    );
}

#[test]
fn serve_refuses_a_wrong_configuration_value_at_start_naming_the_key_and_where_it_came_from() {
    struct Case {
        what: &'static str,
        toml: Option<&'static str>,
        args: &'static [&'static str],
        env: &'static [(&'static str, &'static str)],
        expect: &'static [&'static str],
    }
    let cases = [
        Case {
            what: "serve --concurrency 0",
            toml: None,
            args: &["--concurrency", "0"],
            env: &[],
            expect: &["--concurrency", "out of range"],
        },
        Case {
            what: "serve --shutdown-grace-secs soon",
            toml: None,
            args: &["--shutdown-grace-secs", "soon"],
            env: &[],
            expect: &["--shutdown-grace-secs", "soon"],
        },
        Case {
            what: "serve --timezone Mars/Base",
            toml: None,
            args: &["--timezone", "Mars/Base"],
            env: &[],
            expect: &["--timezone", "Mars/Base"],
        },
        Case {
            what: "a bad timezone in stask.toml",
            toml: Some("timezone = \"Mars/Base\"\n"),
            args: &[],
            env: &[],
            expect: &["stask.toml", "'timezone'", "Mars/Base"],
        },
        Case {
            what: "an unknown key in stask.toml",
            toml: Some("concurency = 2\n"),
            args: &[],
            env: &[],
            expect: &["stask.toml", "unknown key 'concurency'"],
        },
        Case {
            what: "STASK_BIND=nonsense",
            toml: None,
            args: &[],
            env: &[("STASK_BIND", "nonsense")],
            expect: &["STASK_BIND", "nonsense"],
        },
    ];
    for case in cases {
        let home = Home::new();
        if let Some(toml) = case.toml {
            write_config(&home, toml);
        }
        let mut args = vec!["serve"];
        args.extend_from_slice(case.args);
        let out = home.spawn(&args, case.env).wait(WAIT);
        let shown = describe(case.what, &out);
        assert!(
            !out.status.success() && out.status.code().is_some(),
            "expected a non-zero exit\n{shown}"
        );
        let stderr = text(&out.stderr);
        for fragment in case.expect {
            assert!(stderr.contains(fragment), "missing {fragment:?}\n{shown}");
        }
        assert!(
            !home.path().join("run").exists()
                || std::fs::read_dir(home.path().join("run"))
                    .expect("read run/")
                    .next()
                    .is_none(),
            "{}: a service started anyway",
            case.what
        );
    }
}

// ---------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------

fn settings(home: &Home) -> Value {
    home.json(&["workers", "settings", "demo"])
}

/// Runs `workers settings demo ARGS` that must be refused; checks the message has
/// every fragment and that the settings did not change.
fn refused_settings(home: &Home, args: &[&str], expect: &[&str]) {
    let before = settings(home);
    let mut all = vec!["workers", "settings", "demo"];
    all.extend_from_slice(args);
    let stderr = home.fail(&all);
    for fragment in expect {
        assert!(
            stderr.contains(fragment),
            "`{}`: missing {fragment:?} in:\n{stderr}",
            all.join(" ")
        );
    }
    assert_eq!(
        settings(home),
        before,
        "`{}` was refused but changed the settings",
        all.join(" ")
    );
}

#[test]
fn settings_accept_valid_values_and_show_them() {
    let home = demo_home();
    let before = settings(&home);
    assert_eq!(before["greeting"], "Hello", "{before:#}");
    assert_eq!(before["max_steps"], 1000, "{before:#}");
    assert_eq!(before["api_key"], json!({ "secret": true, "set": false }));

    let after = home.json(&["workers", "settings", "demo", "greeting=Hi", "max_steps=5"]);
    assert_eq!(after["greeting"], "Hi", "{after:#}");
    assert_eq!(after["max_steps"], 5, "{after:#}");
    assert_eq!(settings(&home), after);
    let shown = home.ok(&["workers", "settings", "demo"]);
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("greeting") && l.contains("\"Hi\"")),
        "{shown}"
    );
    assert!(
        shown
            .lines()
            .any(|l| l.starts_with("max_steps") && l.ends_with(" 5")),
        "{shown}"
    );
}

#[test]
fn settings_refuse_a_wrong_type_naming_key_and_type_and_store_nothing() {
    let home = demo_home();
    home.ok(&["workers", "settings", "demo", "greeting=Before"]);
    refused_settings(
        &home,
        &["greeting=After", "max_steps=abc"],
        &["'max_steps'", "must be an integer"],
    );
    assert_eq!(settings(&home)["greeting"], "Before");
}

#[test]
fn settings_refuse_an_unknown_key_and_store_nothing() {
    let home = demo_home();
    refused_settings(
        &home,
        &["greeting=After", "colour=red"],
        &["'colour'", "greeting, api_key, max_steps"],
    );
    assert_eq!(settings(&home)["greeting"], "Hello");
}

#[test]
fn settings_json_file_sets_values_and_a_wrong_file_is_refused_storing_nothing() {
    let home = demo_home();
    let file = home.scratch_dir().join("settings.json");
    std::fs::write(&file, r#"{"greeting": "FromFile", "max_steps": 7}"#).unwrap();
    let path = file.to_str().expect("UTF-8 path");
    let after = home.json(&["workers", "settings", "demo", "--json-file", path]);
    assert_eq!(after["greeting"], "FromFile", "{after:#}");
    assert_eq!(after["max_steps"], 7, "{after:#}");

    std::fs::write(&file, r#"{"greeting": "Other", "max_steps": "seven"}"#).unwrap();
    refused_settings(
        &home,
        &["--json-file", path],
        &["'max_steps'", "must be an integer"],
    );
    std::fs::write(&file, r#"{"greeting": "Other", "colour": "red"}"#).unwrap();
    refused_settings(&home, &["--json-file", path], &["'colour'"]);
    std::fs::write(&file, r#"["greeting"]"#).unwrap();
    refused_settings(&home, &["--json-file", path], &["JSON object"]);
    assert_eq!(settings(&home)["greeting"], "FromFile");
}

#[test]
fn settings_unset_restores_the_default() {
    let home = demo_home();
    home.ok(&[
        "workers",
        "settings",
        "demo",
        "greeting=Custom",
        "max_steps=3",
    ]);
    let after = home.json(&["workers", "settings", "demo", "--unset", "greeting"]);
    assert_eq!(after["greeting"], "Hello", "{after:#}");
    assert_eq!(after["max_steps"], 3, "{after:#}");
    refused_settings(&home, &["--unset", "greeting"], &["'greeting'", "not set"]);
}

#[test]
fn settings_reach_the_worker_and_a_change_applies_to_the_next_task_of_a_running_serve() {
    let home = demo_home();
    home.ok(&["workers", "settings", "demo", "greeting=Hi-there"]);
    let bg = serve(&home, &[], &[]);
    let quick = json!({ "steps": 1, "step_ms": 1 });
    let id = create(&home, "demo", "run", quick.clone());
    let t = wait_status(&home, id, "completed");
    assert_eq!(t["result"]["greeting"], "Hi-there", "{t:#}");

    home.ok(&["workers", "settings", "demo", "greeting=Changed"]);
    let id = create(&home, "demo", "run", quick.clone());
    let t = wait_status(&home, id, "completed");
    assert_eq!(t["result"]["greeting"], "Changed", "{t:#}");

    home.ok(&["workers", "settings", "demo", "max_steps=2"]);
    let data = json!({ "steps": 3, "step_ms": 1 });
    let id = home.create_task("demo", "run", &data, &["--max-attempts", "1"]);
    let t = wait_until(WAIT, "the task over max_steps ends", || {
        let t = home.task(id);
        (t["status"] == "failed" || t["status"] == "completed").then_some(t)
    });
    assert_eq!(t["status"], "failed", "{t:#}");
    assert!(
        t["error"]
            .as_str()
            .unwrap_or_default()
            .contains("max_steps"),
        "{t:#}"
    );
    stop(bg);
}

/// A value that appears nowhere unless something prints the secret.
fn unique_secret() -> String {
    let mut bytes = [0u8; 12];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut bytes);
    }
    let random: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("sk{random}{:x}", now_ms() ^ i64::from(std::process::id()))
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let path = e.path();
        match e.file_type() {
            Ok(t) if t.is_dir() => out.extend(files_under(&path)),
            Ok(t) if t.is_file() => out.push(path),
            _ => {}
        }
    }
    out
}

#[test]
fn secret_setting_value_is_never_printed_by_any_command_nor_written_to_any_log() {
    let home = demo_home();
    let secret = unique_secret();
    let assignment = format!("api_key={secret}");
    let mut seen: Vec<(String, Output)> = Vec::new();
    // Secret values never come from a command line: `--secret KEY` reads standard input.
    {
        use std::io::Write as _;
        use std::process::Stdio;
        let args = [
            "workers",
            "settings",
            "demo",
            "--secret",
            "api_key",
            "greeting=Hi-there",
        ];
        let mut child = home
            .command(&args, &[])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start stask");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(format!("{secret}\n").as_bytes())
            .expect("write the secret");
        drop(stdin);
        let out = child.wait_with_output().expect("wait for stask");
        assert!(out.status.success(), "{}", describe(&args.join(" "), &out));
        seen.push((args.join(" "), out));
    }
    let mut run = |args: &[&str], env: &[(&str, &str)]| -> Output {
        let out = home.run_env(args, env);
        assert!(out.status.success(), "{}", describe(&args.join(" "), &out));
        seen.push((args.join(" "), out.clone()));
        out
    };

    let view: Value =
        serde_json::from_slice(&run(&["workers", "settings", "demo", "--json"], &[]).stdout)
            .expect("settings JSON");
    assert_eq!(
        view["api_key"],
        json!({ "secret": true, "set": true }),
        "the secret must be stored (else this test proves nothing): {view:#}"
    );
    run(&["workers", "settings", "demo"], &[]);
    run(&["workers", "show", "demo"], &[]);
    run(&["workers", "show", "demo", "--json"], &[]);
    run(&["workers", "list"], &[]);
    run(&["workers", "list", "--json"], &[]);
    run(&["workers", "schedule", "demo"], &[]);
    run(&["config"], &[]);
    run(&["config", "--json"], &[]);

    let created: Value = serde_json::from_slice(
        &run(
            &[
                "tasks",
                "create",
                "demo",
                "echo",
                "--data",
                r#"{"message":"hi"}"#,
                "--json",
            ],
            &[],
        )
        .stdout,
    )
    .expect("create JSON");
    let echo = created["id"].as_i64().expect("id").to_string();
    run(
        &[
            "tasks",
            "create",
            "demo",
            "run",
            "--data",
            r#"{"steps":2,"step_ms":1}"#,
        ],
        &[],
    );
    run(&["tasks", "process", "-vv"], &[]);
    run(&["tasks", "process", "--json"], &[]);
    for args in [
        &["tasks", "show", echo.as_str()][..],
        &["tasks", "show", echo.as_str(), "--json"],
        &["tasks", "logs", echo.as_str()],
        &["tasks", "logs", echo.as_str(), "--raw"],
        &["tasks", "list"],
        &["tasks", "list", "--json"],
    ] {
        run(args, &[]);
    }
    // A refused change that includes the secret (on the command line, which is refused
    // for secret keys) does not echo it either.
    let refused = home.run(&["workers", "settings", "demo", &assignment, "max_steps=abc"]);
    assert!(
        !refused.status.success(),
        "{}",
        describe("refused", &refused)
    );
    seen.push(("refused settings change".into(), refused));

    // The service at debug level, running a task of the worker.
    let bg = serve(&home, &["-vv"], &[]);
    let id = create(&home, "demo", "run", json!({ "steps": 2, "step_ms": 1 }));
    let t = wait_status(&home, id, "completed");
    assert_eq!(t["result"]["greeting"], "Hi-there", "{t:#}");
    seen.push(("serve -vv".into(), stop(bg)));

    for (what, out) in &seen {
        for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !text(bytes).contains(&secret),
                "the secret value appears in the {stream} of `{what}`\n{}",
                describe(what, out)
            );
        }
    }
    // Progress logs and result files live in the database, beside the settings the
    // worker needs: none of them may hold the secret.
    let store = home.store();
    let tasks = home.json(&["tasks", "list"]);
    let ids: Vec<i64> = tasks
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["id"].as_i64())
        .collect();
    assert!(!ids.is_empty());
    for id in ids {
        let log = home.log_lines(id);
        assert!(!log.is_empty(), "task {id} has no log");
        assert!(
            !log.iter().any(|l| l.contains(&secret)),
            "the secret value is in the log of task {id}"
        );
        for f in store.result_files(id).unwrap() {
            let mut content = Vec::new();
            let mut i = 0;
            while let Some(chunk) = store.result_file_chunk(id, f.id, i).unwrap() {
                content.extend(chunk);
                i += 1;
            }
            assert!(
                !text(&content).contains(&secret),
                "the secret value is in result file '{}' of task {id}",
                f.name
            );
        }
    }
    for file in files_under(home.path()) {
        let name = file.file_name().unwrap_or_default().to_string_lossy();
        // The database holds the secret: the worker needs it.
        if name.starts_with("stask.db") {
            continue;
        }
        let bytes = std::fs::read(&file).unwrap_or_default();
        assert!(
            !text(&bytes).contains(&secret),
            "the secret value is written to '{}'",
            file.display()
        );
    }
}

// ---------------------------------------------------------------------------------
// Schedules
// ---------------------------------------------------------------------------------

const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 24 * HOUR_MS;

/// `workers schedule demo ARGS --json`.
fn schedule(home: &Home, args: &[&str]) -> Value {
    schedule_env(home, args, &[])
}

fn schedule_env(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Value {
    let mut all = vec!["workers", "schedule", "demo"];
    all.extend_from_slice(args);
    home.json_env(&all, env)
}

/// The next run of a schedule view as (ms since the epoch, RFC 3339 UTC text).
fn next_run(view: &Value) -> (i64, String) {
    let next = &view["next_run"];
    (
        next["at"]
            .as_i64()
            .unwrap_or_else(|| panic!("no next run: {view:#}")),
        next["utc"].as_str().expect("utc").to_owned(),
    )
}

/// Monday = 0 … Sunday = 6 of an instant (UTC).
fn weekday_utc(ms: i64) -> i64 {
    // 1970-01-01 was a Thursday.
    (ms.div_euclid(DAY_MS) + 3).rem_euclid(7)
}

/// (hour, minute) of an instant (UTC).
fn hour_minute_utc(ms: i64) -> (i64, i64) {
    let of_day = ms.rem_euclid(DAY_MS);
    (of_day / HOUR_MS, (of_day % HOUR_MS) / 60_000)
}

/// Asserts the schedule is shown the same by `workers show` (JSON and text).
fn assert_shown_by_workers_show(home: &Home, view: &Value) {
    let w = home.json(&["workers", "show", "demo"]);
    assert_eq!(w["schedule"]["kind"], view["kind"], "{w:#}");
    assert_eq!(w["schedule"]["next_run"], view["next_run"], "{w:#}");
    let shown = home.ok(&["workers", "show", "demo"]);
    let line = shown
        .lines()
        .find(|l| l.trim_start().starts_with("schedule:"))
        .unwrap_or_else(|| panic!("no schedule line:\n{shown}"));
    let description = view["description"].as_str().expect("description");
    assert!(line.contains(description), "{line}");
    if let Some(utc) = view["next_run"]["utc"].as_str() {
        assert!(line.contains("next run") && line.contains(utc), "{line}");
    }
}

#[test]
fn schedule_of_each_kind_is_set_and_shown_with_its_next_run() {
    let home = demo_home();
    let now = now_ms();

    let v = schedule(&home, &["once", "--at", "2099-12-01 08:00"]);
    assert_eq!(v["kind"], "once", "{v:#}");
    assert_eq!(next_run(&v).1, "2099-12-01T08:00:00Z", "{v:#}");
    assert_shown_by_workers_show(&home, &v);

    let v = schedule(&home, &["hourly", "--minute", "15"]);
    assert_eq!(v["kind"], "hourly", "{v:#}");
    let (at, _) = next_run(&v);
    assert!(at > now && at <= now_ms() + HOUR_MS, "{v:#}");
    assert_eq!(hour_minute_utc(at).1, 15, "{v:#}");
    assert_shown_by_workers_show(&home, &v);

    let v = schedule(&home, &["daily", "--at", "08:30"]);
    assert_eq!(v["kind"], "daily", "{v:#}");
    let (at, utc) = next_run(&v);
    assert!(at > now && at <= now_ms() + DAY_MS, "{v:#}");
    assert!(utc.ends_with("T08:30:00Z"), "{v:#}");
    assert_shown_by_workers_show(&home, &v);

    let v = schedule(&home, &["weekly", "--days", "mon,fri", "--at", "08:30"]);
    assert_eq!(v["kind"], "weekly", "{v:#}");
    let (at, utc) = next_run(&v);
    assert!(at > now && at <= now_ms() + 7 * DAY_MS, "{v:#}");
    assert!(utc.ends_with("T08:30:00Z"), "{v:#}");
    assert!(
        [0, 4].contains(&weekday_utc(at)),
        "not a Monday or Friday: {v:#}"
    );
    assert_shown_by_workers_show(&home, &v);

    let v = schedule(
        &home,
        &[
            "regular", "--every", "30m", "--from", "05:00", "--to", "23:00",
        ],
    );
    assert_eq!(v["kind"], "regular", "{v:#}");
    let (at, _) = next_run(&v);
    assert!(at > now && at <= now_ms() + DAY_MS, "{v:#}");
    let (h, m) = hour_minute_utc(at);
    assert!(
        m % 30 == 0 && (5..=23).contains(&h) && (h < 23 || m == 0),
        "not a slot of every 30 min between 05:00 and 23:00: {v:#}"
    );
    assert_shown_by_workers_show(&home, &v);

    // Times are read in the configured timezone.
    let kyiv = [("STASK_TIMEZONE", "Europe/Kyiv")];
    let v = schedule_env(&home, &["daily", "--at", "08:30"], &kyiv);
    assert_eq!(v["timezone"], "Europe/Kyiv", "{v:#}");
    let local = v["next_run"]["local"].as_str().expect("local");
    assert!(local.contains(" 08:30 "), "{v:#}");
    let (at, _) = next_run(&v);
    assert!(
        [(5, 30), (6, 30)].contains(&hour_minute_utc(at)),
        "08:30 in Kyiv is 05:30 or 06:30 UTC: {v:#}"
    );

    let shown = home.ok(&["workers", "schedule", "demo"]);
    assert!(shown.contains("next run:"), "{shown}");
}

#[test]
fn invalid_schedules_are_refused_with_clear_messages_and_store_nothing() {
    let home = demo_home();
    schedule(&home, &["daily", "--at", "07:00"]);
    let before = schedule(&home, &[]);
    let cases: &[(&[&str], &[&str])] = &[
        (&["daily", "--at", "25:00"], &["25:00", "hour must be 0-23"]),
        (
            &["daily", "--at", "08:61"],
            &["08:61", "minute must be 0-59"],
        ),
        (&["daily"], &["needs --at"]),
        (
            &["weekly", "--days", "", "--at", "08:30"],
            &["weekday list is empty"],
        ),
        (
            &["weekly", "--days", "mon,funday", "--at", "08:30"],
            &["unknown weekday 'funday'"],
        ),
        (
            &[
                "regular", "--every", "2h", "--from", "09:00", "--to", "10:00",
            ],
            &["2h", "longer than the window", "09:00", "10:00"],
        ),
        (&["regular", "--every", "0m"], &["zero"]),
        (
            &["once", "--at", "2000-01-01 08:00"],
            &["2000-01-01 08:00", "in the past"],
        ),
        (&["hourly", "--minute", "60"], &["60", "0-59"]),
        (
            &["daily", "--at", "08:30", "--days", "mon"],
            &["--days", "does not apply"],
        ),
        (&["fortnightly"], &["unknown schedule kind 'fortnightly'"]),
    ];
    for (args, expect) in cases {
        let mut all = vec!["workers", "schedule", "demo"];
        all.extend_from_slice(args);
        let stderr = home.fail(&all);
        for fragment in *expect {
            assert!(
                stderr.contains(fragment),
                "`{}`: missing {fragment:?} in:\n{stderr}",
                all.join(" ")
            );
        }
        assert_eq!(
            schedule(&home, &[]),
            before,
            "`{}` was refused but changed the schedule",
            all.join(" ")
        );
    }
}

#[test]
fn pause_and_resume_keep_the_schedule() {
    let home = demo_home();
    let set = schedule(
        &home,
        &["daily", "--at", "08:30", "--data", r#"{"steps": 2}"#],
    );
    assert_eq!(set["paused"], false, "{set:#}");
    next_run(&set);

    let paused = schedule(&home, &["--pause"]);
    assert_eq!(paused["paused"], true, "{paused:#}");
    assert_eq!(paused["next_run"], Value::Null, "{paused:#}");
    for key in ["kind", "spec", "data", "description"] {
        assert_eq!(paused[key], set[key], "{key} changed by --pause");
    }
    let shown = home.ok(&["workers", "show", "demo"]);
    assert!(
        shown
            .lines()
            .any(|l| l.trim_start().starts_with("schedule:") && l.contains("paused")),
        "{shown}"
    );

    let resumed = schedule(&home, &["--resume"]);
    assert_eq!(resumed["paused"], false, "{resumed:#}");
    for key in ["kind", "spec", "data", "description"] {
        assert_eq!(resumed[key], set[key], "{key} changed by --resume");
    }
    let (_, utc) = next_run(&resumed);
    assert!(utc.ends_with("T08:30:00Z"), "{resumed:#}");
}

#[test]
fn manual_removes_the_schedule() {
    let home = demo_home();
    schedule(&home, &["hourly", "--minute", "5"]);
    let v = schedule(&home, &["manual"]);
    assert_eq!(v["kind"], "manual", "{v:#}");
    assert_eq!(v["spec"], Value::Null, "{v:#}");
    assert_eq!(v["next_run"], Value::Null, "{v:#}");
    let w = home.json(&["workers", "show", "demo"]);
    assert_eq!(w["schedule"]["kind"], "manual", "{w:#}");
    let shown = home.ok(&["workers", "show", "demo"]);
    assert!(shown.contains("manual"), "{shown}");
    let again = home.ok(&["workers", "schedule", "demo", "manual"]);
    assert!(again.contains("had no schedule"), "{again}");
}

/// `YYYY-MM-DD HH:MM` of an instant (UTC), from days since the epoch (H. Hinnant's
/// civil-from-days algorithm).
fn utc_minute_text(ms: i64) -> String {
    let z = ms.div_euclid(DAY_MS) + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m) = hour_minute_utc(ms);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}")
}

#[test]
fn utc_minute_text_formats_known_instants() {
    assert_eq!(utc_minute_text(0), "1970-01-01 00:00");
    assert_eq!(
        utc_minute_text(951_782_400_000 + 90_000),
        "2000-02-29 00:01"
    );
    assert_eq!(utc_minute_text(4_102_444_799_000), "2099-12-31 23:59");
}

/// Makes demo's one-off schedule due now, as if it had been set a minute ago for the
/// current minute: `once --at` takes whole minutes and must be in the future, so no
/// command can set a one-off that falls due within a test's few seconds.
fn make_once_schedule_due_now(home: &Home) -> i64 {
    let slot = now_ms() - now_ms().rem_euclid(60_000);
    let spec = json!({ "kind": "once", "at": utc_minute_text(slot) }).to_string();
    let store = home.store();
    let current = store
        .get_schedule("demo")
        .unwrap()
        .expect("demo has a schedule");
    store
        .set_schedule("demo", &spec, &current.data, Some(slot), now_ms())
        .expect("make the schedule due");
    slot
}

#[test]
fn once_schedule_falling_due_fires_one_task_under_serve_and_no_second_one_after_a_restart() {
    let home = demo_home();
    schedule(
        &home,
        &[
            "once",
            "--at",
            "2099-01-01 00:00",
            "--data",
            r#"{"steps": 1, "step_ms": 1}"#,
        ],
    );
    let slot = make_once_schedule_due_now(&home);
    assert_eq!(next_run(&schedule(&home, &[])).0, slot);

    let bg = serve(&home, &[], &[]);
    let fired = wait_until(WAIT, "the schedule created a task", || {
        tasks(&home).first().cloned()
    });
    let id = fired["id"].as_i64().expect("id");
    let t = wait_status(&home, id, "completed");
    assert_eq!(t["action"], "run", "{t:#}");
    assert_eq!(
        t["result"]["steps"], 1,
        "the schedule's data is used: {t:#}"
    );
    let first = home.log_lines(id).into_iter().next().unwrap_or_default();
    assert!(
        first.starts_with("pending|") && first.contains("Task created by schedule (once at"),
        "{first}"
    );
    let v = schedule(&home, &[]);
    assert_eq!(v["last_task_id"], id, "{v:#}");
    assert_eq!(
        v["next_run"],
        Value::Null,
        "a one-off has nothing left: {v:#}"
    );
    // One more task through the same service, so it has gone round its loop again.
    let echo = create(&home, "demo", "echo", json!({}));
    wait_status(&home, echo, "completed");
    stop(bg);

    // A restart: the service ticks at start; a task it runs afterwards shows it did.
    let bg = serve(&home, &[], &[]);
    let after = create(&home, "demo", "echo", json!({}));
    wait_status(&home, after, "completed");
    stop(bg);
    let all = tasks(&home);
    let ids: Vec<i64> = all.iter().filter_map(|t| t["id"].as_i64()).collect();
    assert_eq!(
        all.len(),
        3,
        "expected the fired task and two echo tasks: {all:#?}"
    );
    assert!(ids.contains(&id) && ids.contains(&echo) && ids.contains(&after));
    let scheduled: Vec<&Value> = all.iter().filter(|t| t["action"] == "run").collect();
    assert_eq!(scheduled.len(), 1, "the slot fired twice: {all:#?}");
    assert_eq!(schedule(&home, &[])["last_task_id"], id);
}
