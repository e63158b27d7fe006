//! Acceptance tests of the task lifecycle: `stask tasks create / list / show / logs /
//! cancel / retry / execute / process / clean`, driven through the real binary against
//! real built plugin libraries (the example workers and the test fixtures).
//!
//! Timing knobs are set per command (`STASK_RETRY_BASE_MS=0` and the like) so that every
//! test finishes in a few seconds; tests that act while a task runs start `tasks process`
//! in the background and poll `tasks show` until the task is running.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{check_log_line, describe, plugin_lib, processes_with_cmdline, wait_until, Home};

const DEMO: &str = "stask_worker_demo";
const PRODUCT: &str = "stask_worker_product";
const MISBEHAVING: &str = "stask_fixture_misbehaving";
const REPLACEABLE_V1: &str = "stask_fixture_replaceable_v1";
const REPLACEABLE_V2: &str = "stask_fixture_replaceable_v2";

/// Automatic retries at once, so one `tasks process` run makes every attempt.
const NO_RETRY_DELAY: (&str, &str) = ("STASK_RETRY_BASE_MS", "0");

/// The longest a test waits for a background command or for a task to change state.
const WAIT: Duration = Duration::from_secs(30);

/// A home with these libraries installed and their workers active.
fn home_with(libs: &[&str]) -> Home {
    let home = Home::new();
    home.install_active(libs);
    home
}

fn demo_home() -> Home {
    home_with(&[DEMO])
}

fn create(home: &Home, worker: &str, action: &str, data: Value, extra: &[&str]) -> i64 {
    home.create_task(worker, action, &data, extra)
}

fn status(home: &Home, id: i64) -> String {
    home.task(id)["status"]
        .as_str()
        .expect("status is a string")
        .to_owned()
}

/// `tasks process --json` with `env`; returns the summary.
fn process(home: &Home, env: &[(&str, &str)]) -> Value {
    home.json_env(&["tasks", "process"], env)
}

/// Ids of `tasks list ARGS --json`, in the order listed.
fn listed_ids(home: &Home, args: &[&str]) -> Vec<i64> {
    let mut all = vec!["tasks", "list"];
    all.extend_from_slice(args);
    let list = home.json(&all);
    list.as_array()
        .unwrap_or_else(|| panic!("not an array: {list:#}"))
        .iter()
        .map(|t| t["id"].as_i64().expect("id"))
        .collect()
}

fn last_log_line(home: &Home, id: i64) -> String {
    home.log_lines(id)
        .pop()
        .unwrap_or_else(|| panic!("task {id} has no log lines"))
}

/// Log lines whose message starts with `prefix` (the message is the sixth field).
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

/// Every line of the task's log has the documented format.
fn assert_log_well_formed(home: &Home, id: i64) {
    let lines = home.log_lines(id);
    assert!(!lines.is_empty(), "task {id} has no log");
    for line in &lines {
        if let Err(e) = check_log_line(line) {
            panic!(
                "task {id}: malformed log line: {e}\nwhole log:\n{}",
                lines.join("\n")
            );
        }
    }
}

/// Waits until the task is running and its start has been logged (by then the engine
/// has prepared the run and handed it to a runner).
fn wait_running(home: &Home, id: i64) {
    wait_until(WAIT, &format!("task {id} is running"), || {
        (status(home, id) == "running" && started_lines(home, id) > 0).then_some(())
    });
}

/// Nothing was stored by a refused `tasks create`: no task row, nothing counted.
fn assert_nothing_stored(home: &Home, what: &str) {
    assert_eq!(
        home.json(&["tasks", "list"]),
        json!([]),
        "{what}: a task was stored"
    );
    let counts = home.json(&["stats"]);
    assert_eq!(counts["overview"]["total"], 0, "{what}: {counts:#}");
}

/// The unique name of the test's temporary directory, which every path of the home
/// (and so every runner's library path in the cache) contains.
fn home_marker(home: &Home) -> String {
    home.path()
        .parent()
        .and_then(Path::file_name)
        .expect("the home is inside a temporary directory")
        .to_string_lossy()
        .into_owned()
}

fn runners_of(home: &Home) -> Vec<u32> {
    processes_with_cmdline(&["__runner", &home_marker(home)])
}

fn sample_csv() -> &'static Path {
    Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../plugins/product-import/examples/products.csv"
    ))
}

fn imports_dir(home: &Home) -> std::path::PathBuf {
    let dir = home.path().join("imports");
    std::fs::create_dir_all(&dir).expect("create HOME/imports");
    dir
}

// ---------------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------------

#[test]
fn create_prints_the_id_and_writes_the_first_log_line() {
    let home = demo_home();
    let out = home.ok(&["tasks", "create", "demo", "noop"]);
    assert_eq!(out, "1\n");
    let reply = home.json(&[
        "tasks",
        "create",
        "demo",
        "echo",
        "--data",
        r#"{"message": "hi"}"#,
    ]);
    assert_eq!(reply, json!({ "id": 2 }));

    assert_eq!(
        home.log_lines(1),
        ["pending|0|0|0|-|Task created (priority normal)"]
    );
    let t = home.task(2);
    assert_eq!(t["id"], 2, "{t:#}");
    assert_eq!(t["worker"], "demo", "{t:#}");
    assert_eq!(t["action"], "echo", "{t:#}");
    assert_eq!(t["status"], "pending", "{t:#}");
    assert_eq!(t["priority"], "normal", "{t:#}");
    assert_eq!(t["attempts"], 0, "{t:#}");
    assert_eq!(t["max_attempts"], 3, "{t:#}");
    assert_eq!(t["data"], json!({ "message": "hi" }), "{t:#}");
    assert_eq!(t["started_by"], Value::Null, "{t:#}");
    assert_eq!(listed_ids(&home, &[]), [2, 1]);
}

#[test]
fn create_refuses_invalid_input_with_a_clear_message_and_stores_nothing() {
    let home = Home::new();
    home.install(DEMO);
    home.install(PRODUCT);
    home.json(&["workers", "discover"]);
    home.ok(&["workers", "activate", "demo"]);
    let scratch = home.scratch_dir();
    let bad_file = scratch.join("bad.json");
    std::fs::write(&bad_file, "{\"steps\": ").unwrap();
    let bad_file_arg = format!("@{}", bad_file.display());
    let missing_file_arg = format!("@{}", scratch.join("missing.json").display());
    let big = json!({ "message": "x".repeat(65 * 1024) }).to_string();

    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (vec!["nosuch", "run"], vec!["no worker 'nosuch'"]),
        (
            vec!["product", "import", "--data", r#"{"file": "a.csv"}"#],
            vec!["'product' is inactive", "stask workers activate product"],
        ),
        (
            vec!["demo", "fly"],
            vec!["no action 'fly'", "run", "noop", "echo"],
        ),
        (
            vec!["demo", "echo", "--data", "[1, 2]"],
            vec!["JSON object"],
        ),
        (
            vec!["demo", "echo", "--data", r#""text""#],
            vec!["JSON object"],
        ),
        (vec!["demo", "echo", "--data", "42"], vec!["JSON object"]),
        (vec!["demo", "echo", "--data", "null"], vec!["JSON object"]),
        (
            vec!["demo", "echo", "--data", r#"{"steps": 3"#],
            vec!["not valid JSON"],
        ),
        (vec!["demo", "echo", "--data", ""], vec!["not valid JSON"]),
        (
            vec!["demo", "echo", "--data", &bad_file_arg],
            vec!["not valid JSON", "bad.json"],
        ),
        (
            vec!["demo", "echo", "--data", &missing_file_arg],
            vec!["cannot read data file", "missing.json"],
        ),
        (vec!["demo", "echo", "--data", &big], vec!["65536 bytes"]),
        (
            vec!["demo", "echo", "--data", r#"{"password": "x"}"#],
            vec![
                "'password'",
                "credential",
                "stask workers settings demo",
                "--allow-sensitive",
            ],
        ),
        (
            vec!["demo", "echo", "--data", r#"{"api_key": "x"}"#],
            vec!["'api_key'", "credential", "workers settings"],
        ),
        (
            vec!["demo", "echo", "--data", r#"{"secret": "x"}"#],
            vec!["'secret'", "credential", "workers settings"],
        ),
        (
            vec!["demo", "echo", "--data", r#"{"token": "x"}"#],
            vec!["'token'", "credential", "workers settings"],
        ),
        (
            vec![
                "demo",
                "echo",
                "--data",
                r#"{"file": "a.csv", "options": {"db": {"password": "x"}}}"#,
            ],
            vec!["'options.db.password'", "credential", "workers settings"],
        ),
        (
            vec!["demo", "echo", "--data", r#"{"hosts": [{"token": "x"}]}"#],
            vec!["'hosts[0].token'", "credential"],
        ),
        (
            vec!["demo", "noop", "--max-attempts", "0"],
            vec!["between 1 and 100", "0"],
        ),
        (
            vec!["demo", "noop", "--max-attempts", "101"],
            vec!["between 1 and 100", "101"],
        ),
        (
            vec!["demo", "noop", "--priority", "urgent"],
            vec!["'urgent' is not a priority", "high, normal or low"],
        ),
    ];
    for (args, expected) in cases {
        let mut all = vec!["tasks", "create"];
        all.extend_from_slice(&args);
        let shown: Vec<&str> = args
            .iter()
            .map(|a| if a.len() > 80 { "<64+ KiB of data>" } else { a })
            .collect();
        let what = shown.join(" ");
        let out = home.run(&all);
        assert!(
            !out.status.success() && out.status.code().is_some(),
            "expected a refusal\n{}",
            describe(&what, &out)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        for fragment in expected {
            assert!(
                err.contains(fragment),
                "`tasks create {what}`: the message does not mention {fragment:?}:\n{err}"
            );
        }
        assert!(
            out.stdout.is_empty(),
            "`tasks create {what}` printed an id: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_nothing_stored(&home, &what);
    }
}

#[test]
fn create_reads_data_from_a_file_given_with_at() {
    let home = demo_home();
    let file = home.scratch_dir().join("data.json");
    let data = json!({ "steps": 2, "step_ms": 1, "message": "data from a file" });
    std::fs::write(&file, serde_json::to_string_pretty(&data).unwrap()).unwrap();
    let out = home.ok(&[
        "tasks",
        "create",
        "demo",
        "run",
        "--data",
        &format!("@{}", file.display()),
    ]);
    let id: i64 = out.trim().parse().expect("an id");
    assert_eq!(home.task(id)["data"], data);
    process(&home, &[]);
    assert_eq!(status(&home, id), "completed");
    assert_eq!(
        log_lines_with_message(&home, id, "data from a file").len(),
        1,
        "{:#?}",
        home.log_lines(id)
    );
}

#[test]
fn create_records_the_user_as_started_by() {
    let home = demo_home();
    let by_alice = create(&home, "demo", "noop", json!({}), &["--user", "alice"]);
    let anonymous = create(&home, "demo", "noop", json!({}), &[]);
    assert_eq!(home.task(by_alice)["started_by"], "alice");
    assert_eq!(home.task(anonymous)["started_by"], Value::Null);
    let list = home.json(&["tasks", "list"]);
    let entry = list
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == by_alice)
        .unwrap();
    assert_eq!(entry["started_by"], "alice", "{list:#}");
    let text = home.ok(&["tasks", "show", &by_alice.to_string()]);
    assert!(
        text.lines()
            .any(|l| l.contains("started by") && l.contains("alice")),
        "{text}"
    );
}

#[test]
fn create_accepts_credential_keys_with_allow_sensitive_and_show_redacts_them() {
    const SECRETS: [&str; 3] = ["hunter2-e2e", "key-e2e-4242", "tok-e2e-77"];
    let home = demo_home();
    let data = json!({
        "file": "a.csv",
        "password": SECRETS[0],
        "nested": { "api_key": SECRETS[1], "depth": 2 },
        "hosts": [{ "name": "db", "token": SECRETS[2] }],
    });
    let id = create(&home, "demo", "echo", data, &["--allow-sensitive"]);
    let t = home.task(id);
    assert_eq!(
        t["data"],
        json!({
            "file": "a.csv",
            "password": "[redacted]",
            "nested": { "api_key": "[redacted]", "depth": 2 },
            "hosts": [{ "name": "db", "token": "[redacted]" }],
        }),
        "{t:#}"
    );
    for args in [
        &["tasks", "show", &id.to_string()][..],
        &["tasks", "show", &id.to_string(), "--json"],
        &["tasks", "list"],
        &["tasks", "list", "--json"],
    ] {
        let out = home.ok(args);
        for secret in SECRETS {
            assert!(
                !out.contains(secret),
                "`{}` shows the credential {secret}:\n{out}",
                args.join(" ")
            );
        }
    }
}

// ---------------------------------------------------------------------------------
// priorities
// ---------------------------------------------------------------------------------

#[test]
fn priorities_run_high_then_normal_then_low_fifo_within_each() {
    let home = demo_home();
    let created = [
        ("low", "low-1"),
        ("normal", "normal-1"),
        ("high", "high-1"),
        ("low", "low-2"),
        ("high", "high-2"),
        ("normal", "normal-2"),
        ("high", "high-3"),
    ];
    let mut label_of = std::collections::HashMap::new();
    for (priority, label) in created {
        let id = create(
            &home,
            "demo",
            "run",
            json!({ "steps": 1, "step_ms": 5, "message": label }),
            &["--priority", priority],
        );
        label_of.insert(id, label);
    }
    let summary = home.json(&["tasks", "process", "--concurrency", "1"]);
    assert_eq!(summary["completed"], created.len(), "{summary:#}");

    let mut started: Vec<(i64, &str)> = label_of
        .iter()
        .map(|(&id, &label)| {
            let t = home.task(id);
            assert_eq!(t["status"], "completed", "{t:#}");
            (t["started_at"].as_i64().expect("started_at"), label)
        })
        .collect();
    started.sort();
    let order: Vec<&str> = started.iter().map(|(_, label)| *label).collect();
    assert_eq!(
        order,
        ["high-1", "high-2", "high-3", "normal-1", "normal-2", "low-1", "low-2"],
        "start times: {started:?}"
    );
    assert!(
        started.windows(2).all(|w| w[0].0 < w[1].0),
        "with one slot, tasks start one after another: {started:?}"
    );
}

// ---------------------------------------------------------------------------------
// CSV import
// ---------------------------------------------------------------------------------

#[test]
fn csv_import_of_the_sample_file_completes_with_a_well_formed_log_and_summary() {
    let home = home_with(&[PRODUCT]);
    std::fs::copy(sample_csv(), imports_dir(&home).join("products.csv")).unwrap();
    let id = create(
        &home,
        "product",
        "import",
        json!({ "file": "products.csv" }),
        &[],
    );
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 1, "{summary:#}");

    let t = home.task(id);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(t["progress"], 100, "{t:#}");
    assert_eq!(t["processed"], 25, "{t:#}");
    assert_eq!(t["total"], 25, "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
    assert_eq!(
        t["result"],
        json!({ "imported": 25, "summary_file": "summary.json" }),
        "{t:#}"
    );

    assert_log_well_formed(&home, id);
    let lines = home.log_lines(id);
    assert_eq!(lines[0], "pending|0|0|0|-|Task created (priority normal)");
    assert_eq!(lines[1], "running|0|0|0|-|Started attempt 1 of 3");
    assert!(
        lines.iter().any(|l| {
            let f = check_log_line(l).unwrap();
            f[0] == "running" && f[3] == "25" && f[5] == "Processing products..."
        }),
        "no progress line with total 25:\n{}",
        lines.join("\n")
    );
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("completed|100|25|25|0s|Task completed successfully (")
            && last.ends_with(')'),
        "last line: {last}"
    );
    assert_eq!(
        t["history"].as_array().map(Vec::len),
        Some(lines.len()),
        "history has every log line: {t:#}"
    );

    let files = t["result_files"].as_array().expect("result_files");
    let summary_file = files
        .iter()
        .find(|f| f["name"] == "summary.json")
        .unwrap_or_else(|| panic!("summary.json not listed: {t:#}"));
    let text = home.ok(&["tasks", "download", &id.to_string(), "summary.json"]);
    assert_eq!(summary_file["size"], text.len(), "{t:#}");
    let parsed: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(parsed["imported"], 25, "{parsed:#}");
}

#[test]
fn csv_import_of_a_malformed_file_fails_naming_the_line() {
    let home = home_with(&[PRODUCT]);
    let dir = imports_dir(&home);
    std::fs::write(
        dir.join("bad-price.csv"),
        "sku,name,price,stock\nA-1,Good,1.50,3\nB-2,Bad price,abc,4\nC-3,Fine,2.00,1\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("short-row.csv"),
        "sku,name,price,stock\nA-1,Good,1.50,3\nB-2,Fine,2.00,1\nC-3,Short\n",
    )
    .unwrap();
    let price = create(
        &home,
        "product",
        "import",
        json!({ "file": "bad-price.csv" }),
        &["--max-attempts", "1"],
    );
    let short = create(
        &home,
        "product",
        "import",
        json!({ "file": "short-row.csv" }),
        &["--max-attempts", "1"],
    );
    let summary = process(&home, &[]);
    assert_eq!(summary["failed"], 2, "{summary:#}");

    for (id, expected) in [
        (price, "bad-price.csv line 3: price 'abc' is not a number"),
        (short, "short-row.csv line 4: expected 4 fields"),
    ] {
        let t = home.task(id);
        assert_eq!(t["status"], "failed", "{t:#}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "error {error:?} lacks {expected:?}"
        );
        let last = last_log_line(&home, id);
        assert!(
            last.starts_with("failed|") && last.contains(expected),
            "last line: {last}"
        );
        assert_log_well_formed(&home, id);
    }
}

// ---------------------------------------------------------------------------------
// execute
// ---------------------------------------------------------------------------------

#[test]
fn execute_runs_one_task_in_the_foreground_and_exits_zero_on_completion() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 2, "step_ms": 5 }),
        &[],
    );
    let other = create(&home, "demo", "noop", json!({}), &[]);
    let out = home.run(&["tasks", "execute", &id.to_string()]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe("tasks execute", &out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Started attempt 1 of 3"), "{text}");
    assert!(
        text.lines()
            .any(|l| l.contains("completed") && l.contains("Task completed successfully")),
        "{text}"
    );
    assert_eq!(status(&home, id), "completed");
    let untouched = home.task(other);
    assert_eq!(
        untouched["status"], "pending",
        "only the given task runs: {untouched:#}"
    );
    assert_eq!(untouched["attempts"], 0, "{untouched:#}");
}

#[test]
fn execute_exits_non_zero_when_the_task_fails() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 2, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "1"],
    );
    let out = home.run(&["tasks", "execute", &id.to_string()]);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "{}",
        describe("tasks execute", &out)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("failed at step 1"), "{text}");
    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
}

#[test]
fn execute_of_a_completed_task_is_refused() {
    let home = demo_home();
    let id = create(&home, "demo", "noop", json!({}), &[]);
    home.ok(&["tasks", "execute", &id.to_string()]);
    let err = home.fail(&["tasks", "execute", &id.to_string()]);
    assert!(err.contains("already completed"), "{err}");
    assert!(err.contains("create a new task"), "{err}");
    let t = home.task(id);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
    assert_eq!(started_lines(&home, id), 1);

    let err = home.fail(&["tasks", "execute", "4242"]);
    assert!(err.contains("no task 4242"), "{err}");
}

// ---------------------------------------------------------------------------------
// cancel
// ---------------------------------------------------------------------------------

#[test]
fn cancel_of_a_pending_task_cancels_it_and_it_never_runs() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1 }),
        &[],
    );
    let out = home.ok(&["tasks", "cancel", &id.to_string()]);
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(status(&home, id), "cancelled");
    let last = last_log_line(&home, id);
    assert!(last.starts_with("cancelled|"), "last line: {last}");

    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 0, "{summary:#}");
    let t = home.task(id);
    assert_eq!(t["status"], "cancelled", "{t:#}");
    assert_eq!(t["attempts"], 0, "{t:#}");
    assert_eq!(t["started_at"], Value::Null, "{t:#}");
    assert_eq!(started_lines(&home, id), 0, "{:#?}", home.log_lines(id));
    assert_eq!(last_log_line(&home, id), last);
}

#[test]
fn cancel_of_a_running_cooperative_task_stops_it() {
    let home = demo_home();
    // 10 s of work unless cancelled.
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1000, "step_ms": 10 }),
        &["--max-attempts", "1"],
    );
    let bg = home.spawn(&["tasks", "process", "--json"], &[]);
    wait_running(&home, id);
    let out = home.ok(&["tasks", "cancel", &id.to_string()]);
    assert!(out.contains("cancel requested"), "{out}");

    let out = bg.wait(WAIT);
    assert!(out.status.success(), "{}", describe("tasks process", &out));
    let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
    assert_eq!(summary["cancelled"], 1, "{summary:#}");
    assert_eq!(summary["completed"], 0, "{summary:#}");

    let t = home.task(id);
    assert_eq!(t["status"], "cancelled", "{t:#}");
    assert!(
        t["processed"].as_i64().unwrap_or_default() < 1000,
        "it stopped early: {t:#}"
    );
    let last = last_log_line(&home, id);
    assert!(
        last.starts_with("cancelled|") && last.contains("Task cancelled after"),
        "last line: {last}"
    );
    assert_log_well_formed(&home, id);
}

#[test]
fn cancel_of_a_running_task_that_ignores_it_kills_it_after_the_grace_period() {
    let home = home_with(&[MISBEHAVING]);
    let id = create(
        &home,
        "misbehaving",
        "ignore-cancel",
        json!({ "seconds": 30 }),
        &["--max-attempts", "1"],
    );
    let bg = home.spawn(
        &["tasks", "process", "--json"],
        &[("STASK_CANCEL_GRACE_MS", "300")],
    );
    wait_running(&home, id);
    home.ok(&["tasks", "cancel", &id.to_string()]);

    let out = bg.wait(WAIT);
    assert!(out.status.success(), "{}", describe("tasks process", &out));
    let t = home.task(id);
    assert_eq!(t["status"], "cancelled", "{t:#}");
    let message = t["message"].as_str().unwrap_or_default();
    assert!(message.contains("killed"), "message: {message}");
    let last = last_log_line(&home, id);
    assert!(
        last.starts_with("cancelled|") && last.contains("killed"),
        "last line: {last}"
    );
}

#[test]
fn cancel_of_a_finished_task_is_refused() {
    let home = demo_home();
    let done = create(&home, "demo", "noop", json!({}), &[]);
    let failed = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "1"],
    );
    process(&home, &[]);
    for (id, state) in [(done, "completed"), (failed, "failed")] {
        let before = home.log_lines(id);
        let err = home.fail(&["tasks", "cancel", &id.to_string()]);
        assert!(
            err.contains(&format!("already {state}")) && err.contains("nothing to cancel"),
            "{err}"
        );
        assert_eq!(status(&home, id), state);
        assert_eq!(home.log_lines(id), before, "the log is unchanged");
    }
    let err = home.fail(&["tasks", "cancel", "4242"]);
    assert!(err.contains("no task 4242"), "{err}");
}

// ---------------------------------------------------------------------------------
// retry
// ---------------------------------------------------------------------------------

#[test]
fn retry_by_hand_requeues_a_failed_task_and_attempts_keep_counting() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "1"],
    );
    let text = home.ok(&["tasks", "process"]);
    assert!(
        text.contains("0 completed, 1 failed, 0 cancelled, 0 queued for retry"),
        "{text}"
    );
    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");

    let out = home.ok(&["tasks", "retry", &id.to_string()]);
    assert!(out.contains("queued again"), "{out}");
    let t = home.task(id);
    assert_eq!(t["status"], "pending", "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
    let last = last_log_line(&home, id);
    assert!(last.starts_with("pending|"), "last line: {last}");

    process(&home, &[]);
    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 2, "{t:#}");
    assert_eq!(started_lines(&home, id), 2, "{:#?}", home.log_lines(id));
}

#[test]
fn retry_of_a_cancelled_task_queues_it_and_it_runs() {
    let home = demo_home();
    let id = create(&home, "demo", "noop", json!({}), &[]);
    home.ok(&["tasks", "cancel", &id.to_string()]);
    let reply = home.json(&["tasks", "retry", &id.to_string()]);
    assert_eq!(reply["status"], "pending", "{reply:#}");
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 1, "{summary:#}");
    assert_eq!(status(&home, id), "completed");
}

#[test]
fn retry_of_a_pending_or_completed_task_is_refused() {
    let home = demo_home();
    let done = create(&home, "demo", "noop", json!({}), &[]);
    process(&home, &[]);
    let pending = create(&home, "demo", "noop", json!({}), &[]);
    for (id, state) in [(done, "completed"), (pending, "pending")] {
        let err = home.fail(&["tasks", "retry", &id.to_string()]);
        assert!(
            err.contains(&format!("is {state}")) && err.contains("only failed or cancelled"),
            "{err}"
        );
        assert_eq!(status(&home, id), state);
    }
}

#[test]
fn automatic_retry_makes_every_attempt_in_one_process_run() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 2, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "3"],
    );
    let summary = process(&home, &[NO_RETRY_DELAY]);
    assert_eq!(summary["failed"], 1, "{summary:#}");
    assert_eq!(summary["retried"], 2, "{summary:#}");
    assert_eq!(summary["completed"], 0, "{summary:#}");

    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 3, "{t:#}");
    let error = t["error"].as_str().unwrap_or_default();
    assert!(error.contains("failed at step 1"), "{t:#}");

    let lines = home.log_lines(id);
    let retries = log_lines_with_message(&home, id, "Attempt ");
    assert_eq!(retries.len(), 2, "{lines:#?}");
    for (n, line) in retries.iter().enumerate() {
        let prefix = format!("Attempt {} of 3 failed: ", n + 1);
        let f = check_log_line(line).unwrap();
        assert_eq!(f[0], "pending", "{line}");
        assert!(
            f[5].starts_with(&prefix) && f[5].contains("failed at step 1"),
            "{line}"
        );
    }
    assert_eq!(started_lines(&home, id), 3, "{lines:#?}");
    let last = lines.last().unwrap();
    assert!(
        last.starts_with("failed|") && last.contains("Task failed after"),
        "last line: {last}"
    );
    assert_log_well_formed(&home, id);
}

// ---------------------------------------------------------------------------------
// misbehaving workers
// ---------------------------------------------------------------------------------

#[test]
fn timeout_fails_a_hanging_task_saying_it_timed_out() {
    let home = home_with(&[MISBEHAVING]);
    let id = create(
        &home,
        "misbehaving",
        "hang",
        json!({}),
        &["--max-attempts", "1"],
    );
    let summary = process(&home, &[("STASK_DEFAULT_TIMEOUT_SECS", "1")]);
    assert_eq!(summary["failed"], 1, "{summary:#}");
    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    let error = t["error"].as_str().unwrap_or_default();
    assert!(error.contains("timed out after 1.0s"), "error: {error}");
    let last = last_log_line(&home, id);
    assert!(
        last.starts_with("failed|") && last.contains("timed out"),
        "last line: {last}"
    );
}

#[test]
fn misbehaving_workers_fail_their_tasks_clearly_while_other_tasks_complete() {
    let home = home_with(&[DEMO, MISBEHAVING]);
    let cases = [
        ("panic", "worker panicked: fixture panic"),
        (
            "abort",
            "the runner process crashed: killed by signal SIGABRT (aborted)",
        ),
        (
            "segfault",
            "the runner process crashed: killed by signal SIGSEGV (segmentation fault)",
        ),
        ("exit", "the runner process crashed: exited with status 3"),
        ("hang", "timed out after"),
    ];
    let mut bad = Vec::new();
    let mut good = Vec::new();
    for (action, expected) in cases {
        bad.push((
            create(
                &home,
                "misbehaving",
                action,
                json!({}),
                &["--max-attempts", "1"],
            ),
            action,
            expected,
        ));
        good.push(create(
            &home,
            "demo",
            "run",
            json!({ "steps": 2, "step_ms": 5 }),
            &[],
        ));
    }
    let print = create(
        &home,
        "misbehaving",
        "print",
        json!({}),
        &["--max-attempts", "1"],
    );

    let summary = home.json_env(
        &["tasks", "process", "--concurrency", "2"],
        &[("STASK_DEFAULT_TIMEOUT_SECS", "1")],
    );
    assert_eq!(summary["failed"], cases.len(), "{summary:#}");
    assert_eq!(summary["completed"], good.len() + 1, "{summary:#}");

    for (id, action, expected) in bad {
        let t = home.task(id);
        assert_eq!(t["status"], "failed", "{action}: {t:#}");
        let error = t["error"].as_str().unwrap_or_default();
        assert!(
            error.contains(expected),
            "{action}: error {error:?} lacks {expected:?}"
        );
        let last = last_log_line(&home, id);
        assert!(
            last.starts_with("failed|") && last.contains(expected),
            "{action}: last line: {last}"
        );
        assert_log_well_formed(&home, id);
    }
    for id in good {
        let t = home.task(id);
        assert_eq!(t["status"], "completed", "{t:#}");
        assert_eq!(t["result"]["steps"], 2, "{t:#}");
    }
    let t = home.task(print);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(t["result"], json!({ "printed": 3 }), "{t:#}");
    assert_log_well_formed(&home, print);
}

// ---------------------------------------------------------------------------------
// replaced plugin
// ---------------------------------------------------------------------------------

#[test]
fn plugin_file_replaced_while_a_task_runs_is_safe_and_the_next_task_uses_the_new_code() {
    let home = Home::new();
    let lib = home.install_as(REPLACEABLE_V1, "libstask_fixture_replaceable.so");
    let report = home.json(&["workers", "discover", "--activate"]);
    assert_eq!(
        report["registered"][0]["identifier"], "replaceable",
        "{report:#}"
    );

    let id = create(&home, "replaceable", "sleep", json!({ "ms": 1500 }), &[]);
    let bg = home.spawn(&["tasks", "process", "--json"], &[]);
    wait_running(&home, id);
    // The task is claimed before its library is copied; replace the file once a runner
    // started from the copy (a change during the copy is another, tested, case).
    wait_until(WAIT, "a runner started", || {
        (!runners_of(&home).is_empty()).then_some(())
    });

    // Overwrite the file in place (same inode), as `cp new.so old.so` does.
    let inode = std::fs::metadata(&lib).unwrap().ino();
    std::fs::copy(plugin_lib(REPLACEABLE_V2), &lib).unwrap();
    assert_eq!(
        std::fs::metadata(&lib).unwrap().ino(),
        inode,
        "replaced in place"
    );

    let out = bg.wait(WAIT);
    assert!(out.status.success(), "{}", describe("tasks process", &out));
    let t = home.task(id);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(
        t["result"],
        json!({ "version": 1, "slept_ms": 1500 }),
        "{t:#}"
    );

    let rescan = home.json(&["workers", "rescan"]);
    let updated = rescan["updated"].as_array().expect("updated");
    assert!(
        updated.iter().any(|u| u["identifier"] == "replaceable"),
        "{rescan:#}"
    );
    let next = create(&home, "replaceable", "version", json!({}), &[]);
    let summary = process(&home, &[]);
    assert_eq!(summary["completed"], 1, "{summary:#}");
    let t = home.task(next);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(t["result"], json!({ "version": 2 }), "{t:#}");
}

// ---------------------------------------------------------------------------------
// concurrency and recovery
// ---------------------------------------------------------------------------------

#[test]
fn two_concurrent_process_commands_run_every_task_exactly_once() {
    const TASKS: usize = 200;
    let home = demo_home();
    for _ in 0..TASKS {
        home.ok(&["tasks", "create", "demo", "noop"]);
    }
    let a = home.spawn(&["tasks", "process", "--concurrency", "2", "--json"], &[]);
    let b = home.spawn(&["tasks", "process", "--concurrency", "2", "--json"], &[]);
    let mut completed = 0;
    for bg in [a, b] {
        let out = bg.wait(WAIT);
        assert!(out.status.success(), "{}", describe("tasks process", &out));
        let summary: Value = serde_json::from_slice(&out.stdout).expect("summary JSON");
        assert_eq!(summary["failed"], 0, "{summary:#}");
        completed += summary["completed"].as_u64().expect("completed");
    }
    assert_eq!(
        completed, TASKS as u64,
        "the two runs together completed each task once"
    );

    let list = home.json(&["tasks", "list", "--limit", "1000"]);
    let tasks = list.as_array().expect("array");
    assert_eq!(tasks.len(), TASKS);
    for t in tasks {
        assert_eq!(t["status"], "completed", "{t:#}");
        assert_eq!(t["attempts"], 1, "{t:#}");
        let id = t["id"].as_i64().unwrap();
        assert_eq!(
            started_lines(&home, id),
            1,
            "task {id}: {:#?}",
            home.log_lines(id)
        );
    }
}

/// Starts `tasks process` in the background, waits until task `id` runs in a runner,
/// kills the host with SIGKILL and checks the task is left "running" and the runner
/// goes away by itself.
fn kill_host_while_running(home: &Home, id: i64) {
    let mut bg = home.spawn(&["tasks", "process"], &[]);
    wait_running(home, id);
    let runners = wait_until(WAIT, "a runner process is running", || {
        Some(runners_of(home)).filter(|r| !r.is_empty())
    });
    let status = bg.kill9();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}");
    let t = home.task(id);
    assert_eq!(
        t["status"], "running",
        "right after the kill the database still says running: {t:#}"
    );
    // Runners exit when their stdin (a pipe from the dead host) closes.
    wait_until(
        Duration::from_secs(10),
        &format!("the runners {runners:?} of the killed host have exited"),
        || runners_of(home).is_empty().then_some(()),
    );
}

/// The `process --json` summary reports exactly task `id` as recovered, requeued or not.
fn assert_recovered_once(summary: &Value, id: i64, requeued: bool) {
    let recovered = summary["recovered"].as_array().expect("recovered");
    assert_eq!(recovered.len(), 1, "{summary:#}");
    assert_eq!(recovered[0]["id"], id, "{summary:#}");
    assert_eq!(recovered[0]["requeued"], requeued, "{summary:#}");
}

#[test]
fn sigkill_of_the_host_is_recovered_by_the_next_process_run_requeueing_the_task() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 40, "step_ms": 50 }),
        &["--max-attempts", "2"],
    );
    kill_host_while_running(&home, id);

    let summary = process(&home, &[]);
    assert_recovered_once(&summary, id, true);
    assert_eq!(summary["completed"], 1, "{summary:#}");

    let t = home.task(id);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(t["attempts"], 2, "{t:#}");
    let lines = home.log_lines(id);
    let recovered_lines = log_lines_with_message(&home, id, "Recovered");
    assert_eq!(recovered_lines.len(), 1, "{lines:#?}");
    assert!(recovered_lines[0].starts_with("pending|"), "{lines:#?}");
    assert_eq!(started_lines(&home, id), 2, "{lines:#?}");
    assert!(
        lines.last().unwrap().starts_with("completed|100|40|40|0s|"),
        "{lines:#?}"
    );
    assert_log_well_formed(&home, id);
}

#[test]
fn sigkill_of_the_host_with_no_attempts_left_is_recovered_as_failed() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1000, "step_ms": 10 }),
        &["--max-attempts", "1"],
    );
    kill_host_while_running(&home, id);

    let summary = process(&home, &[]);
    assert_recovered_once(&summary, id, false);
    assert_eq!(summary["completed"], 0, "{summary:#}");

    let t = home.task(id);
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["attempts"], 1, "{t:#}");
    assert!(
        t["error"]
            .as_str()
            .unwrap_or_default()
            .contains("interrupted"),
        "{t:#}"
    );
    let last = last_log_line(&home, id);
    assert!(
        last.starts_with("failed|")
            && last.contains("Recovered")
            && last.contains("no attempts left"),
        "last line: {last}"
    );
    assert_eq!(started_lines(&home, id), 1);
}

// ---------------------------------------------------------------------------------
// logs
// ---------------------------------------------------------------------------------

/// Files under the home, relative, that are not the database, plugins or caches.
fn stray_files(home: &Home) -> Vec<String> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = e.path();
            let rel = path.strip_prefix(root).unwrap().display().to_string();
            if rel.starts_with("plugins")
                || rel.starts_with("cache")
                || rel.starts_with("stask.db")
                || rel == "secret.key"
            {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else {
                out.push(rel);
            }
        }
    }
    let mut out = Vec::new();
    walk(home.path(), home.path(), &mut out);
    out
}

/// A task's log is rows in the database: `--raw` prints them exactly, nothing is
/// written beside the database (no file an outsider could tear or delete), and the
/// scratch directory of the attempt is gone once its files are ingested.
#[test]
fn raw_logs_print_the_stored_lines_and_the_home_holds_no_loose_files() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 2, "step_ms": 1 }),
        &[],
    );
    process(&home, &[]);
    let stored = home.log_lines(id);
    assert!(stored.len() >= 4, "{stored:?}");
    let raw = home.ok(&["tasks", "logs", &id.to_string(), "--raw"]);
    let mut expected = stored.join("\n");
    expected.push('\n');
    assert_eq!(raw, expected);
    let history = home.task(id)["history"].as_array().unwrap().len();
    assert_eq!(history, stored.len());
    assert_eq!(
        stray_files(&home),
        Vec::<String>::new(),
        "loose files in the home"
    );
}

#[test]
fn logs_follow_prints_lines_until_the_task_ends() {
    let home = demo_home();
    let id = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 10, "step_ms": 100 }),
        &[],
    );
    let bg = home.spawn(&["tasks", "process"], &[]);
    let out = home.run(&["tasks", "logs", &id.to_string(), "--follow", "--raw"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        describe("tasks logs --follow", &out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"running|0|0|0|-|Started attempt 1 of 3"),
        "{text}"
    );
    let last = lines.last().copied().unwrap_or_default();
    assert!(
        last.starts_with("completed|100|10|10|0s|Task completed successfully ("),
        "follow ends with the final line: {text}"
    );
    assert_eq!(lines, home.log_lines(id), "follow printed the whole log");
    let out = bg.wait(WAIT);
    assert!(out.status.success(), "{}", describe("tasks process", &out));

    // Following a finished task prints its log and returns at once.
    let again = home.ok(&["tasks", "logs", &id.to_string(), "--follow", "--raw"]);
    assert_eq!(again, text);
}

// ---------------------------------------------------------------------------------
// list / show
// ---------------------------------------------------------------------------------

#[test]
fn list_filters_by_status_worker_and_limit() {
    let home = home_with(&[DEMO, MISBEHAVING]);
    let done = create(&home, "demo", "noop", json!({}), &[]);
    let failed = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "1"],
    );
    let done_m = create(&home, "misbehaving", "slow-ok", json!({ "ms": 1 }), &[]);
    process(&home, &[]);
    let pending = create(&home, "demo", "noop", json!({}), &[]);
    let pending_m = create(&home, "misbehaving", "slow-ok", json!({ "ms": 1 }), &[]);

    assert_eq!(
        listed_ids(&home, &[]),
        [pending_m, pending, done_m, failed, done]
    );
    assert_eq!(
        listed_ids(&home, &["--status", "completed"]),
        [done_m, done]
    );
    assert_eq!(listed_ids(&home, &["--status", "failed"]), [failed]);
    assert_eq!(
        listed_ids(&home, &["--status", "pending"]),
        [pending_m, pending]
    );
    assert_eq!(
        listed_ids(&home, &["--status", "cancelled"]),
        Vec::<i64>::new()
    );
    assert_eq!(
        listed_ids(&home, &["--worker", "demo"]),
        [pending, failed, done]
    );
    assert_eq!(
        listed_ids(&home, &["--worker", "misbehaving", "--status", "pending"]),
        [pending_m]
    );
    assert_eq!(listed_ids(&home, &["--limit", "2"]), [pending_m, pending]);
    assert_eq!(
        listed_ids(&home, &["--worker", "demo", "--limit", "1"]),
        [pending]
    );
    assert_eq!(
        listed_ids(&home, &["--worker", "nobody"]),
        Vec::<i64>::new()
    );

    let err = home.fail(&["tasks", "list", "--status", "bogus"]);
    assert!(err.contains("'bogus' is not a status"), "{err}");

    let text = home.ok(&["tasks", "list", "--status", "pending"]);
    let rows: Vec<&str> = text.lines().skip(1).collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows[0].trim_start().starts_with(&pending_m.to_string()),
        "{text}"
    );
    assert!(
        rows[1].trim_start().starts_with(&pending.to_string()),
        "{text}"
    );
}

#[test]
fn list_text_output_lines_up_its_columns() {
    let home = demo_home();
    create(&home, "demo", "noop", json!({}), &[]);
    create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "1"],
    );
    process(&home, &[]);
    create(&home, "demo", "noop", json!({}), &["--priority", "low"]);
    let text = home.ok(&["tasks", "list"]);
    let mut lines = text.lines();
    let header = lines.next().expect("a header");
    let column = header.find("PRIO").expect("a PRIO column");
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3, "{text}");
    for row in rows {
        let prio = row.get(column..).unwrap_or_default();
        assert!(
            ["normal", "low", "high"]
                .iter()
                .any(|p| prio.starts_with(p)),
            "the PRIO column does not line up with the header (statuses of different \
             lengths shift it):\n{text}"
        );
    }
}

/// Keys that occur more than once in one object of pretty-printed JSON, looking at the
/// objects whose keys are indented by `indent` spaces.
fn duplicate_keys(pretty: &str, indent: usize) -> Vec<String> {
    let mut seen = HashSet::new();
    let mut duplicates = Vec::new();
    for line in pretty.lines() {
        let depth = line.len() - line.trim_start().len();
        if depth < indent {
            seen.clear();
            continue;
        }
        if depth == indent {
            if let Some(key) = line
                .trim_start()
                .strip_prefix('"')
                .and_then(|r| r.split_once("\":"))
            {
                if !seen.insert(key.0.to_owned()) {
                    duplicates.push(key.0.to_owned());
                }
            }
        }
    }
    duplicates
}

#[test]
fn show_and_list_json_have_each_field_once() {
    let home = demo_home();
    let id = create(&home, "demo", "echo", json!({ "message": "hi" }), &[]);
    process(&home, &[]);
    let show = home.ok(&["tasks", "show", &id.to_string(), "--json"]);
    assert_eq!(duplicate_keys(&show, 2), Vec::<String>::new(), "{show}");
    let list = home.ok(&["tasks", "list", "--json"]);
    assert_eq!(duplicate_keys(&list, 4), Vec::<String>::new(), "{list}");
    let t: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(t["data"], json!({ "message": "hi" }), "{t:#}");
    assert_eq!(t["result"], json!({ "message": "hi" }), "{t:#}");
}

// ---------------------------------------------------------------------------------
// clean
// ---------------------------------------------------------------------------------

#[test]
fn clean_removes_old_finished_tasks_with_their_logs_and_files_keeping_the_rest() {
    let home = demo_home();
    let done = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1 }),
        &[],
    );
    let failed = create(
        &home,
        "demo",
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        &["--max-attempts", "1"],
    );
    let cancelled = create(&home, "demo", "noop", json!({}), &[]);
    home.ok(&["tasks", "cancel", &cancelled.to_string()]);
    process(&home, &[]);
    let pending = create(&home, "demo", "noop", json!({}), &[]);
    assert_eq!(status(&home, done), "completed");
    assert_eq!(status(&home, failed), "failed");
    let store = home.store();
    assert!(!store.log_lines(done, 0, 10).unwrap().is_empty());
    assert_eq!(store.result_files(done).unwrap()[0].name, "steps.txt");
    assert!(!store.result_files(failed).unwrap().is_empty());

    // Nothing is 30 days old yet.
    let report = home.json(&["tasks", "clean"]);
    assert_eq!(report["deleted_tasks"], 0, "{report:#}");

    let report = home.json(&["tasks", "clean", "--older-than", "0s"]);
    assert_eq!(report["deleted_tasks"], 1, "{report:#}");
    let err = home.fail(&["tasks", "show", &done.to_string()]);
    assert!(err.contains(&format!("no task {done}")), "{err}");
    assert!(
        store.log_lines(done, 0, 10).unwrap().is_empty(),
        "its log is gone"
    );
    assert!(
        store.result_files(done).unwrap().is_empty(),
        "its files are gone"
    );
    for id in [failed, cancelled, pending] {
        home.task(id);
        assert!(!home.log_lines(id).is_empty(), "task {id} keeps its log");
    }
    assert!(
        !store.result_files(failed).unwrap().is_empty(),
        "the failed task keeps its result files"
    );

    let report = home.json(&["tasks", "clean", "--older-than", "0s", "--include-failed"]);
    assert_eq!(report["deleted_tasks"], 2, "{report:#}");
    for id in [failed, cancelled] {
        assert!(home.log_lines(id).is_empty());
        assert!(store.result_files(id).unwrap().is_empty());
    }
    assert_eq!(listed_ids(&home, &[]), [pending]);
    assert!(
        !home.log_lines(pending).is_empty(),
        "the pending task keeps its log"
    );

    let text = home.ok(&["tasks", "clean", "--older-than", "0s", "--include-failed"]);
    assert!(text.contains("Removed 0 tasks"), "{text}");
}
