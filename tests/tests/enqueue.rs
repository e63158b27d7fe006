//! Follow-up tasks a running task enqueues (`Context::enqueue`), through the real binary
//! and the demo plugin on a SQLite home: the children run and are recorded with their
//! parent (CLI and API), from a sandboxed runner too, an undeclared target or data the
//! creation path refuses is refused and the parent's log says so,
//! children already created survive the parent's runner being killed, and a library
//! built against the ABI before `enqueue` still loads and runs.

use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{processes_with_cmdline, wait_until, Home};

#[path = "common/http.rs"]
mod http;
use http::call;

const PREVIOUS_ABI: &str = "stask_fixture_abi_previous";
const WAIT: Duration = Duration::from_secs(60);

fn demo_home() -> Home {
    Home::with_demo()
}

/// Waits until task `id` has ended; returns it.
fn ended(home: &Home, id: i64) -> Value {
    home.ended(id, WAIT)
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|i| i.as_i64().expect("an id"))
        .collect()
}

/// The runner processes of this home (their library copies live under it).
fn runners_of(home: &Home) -> Vec<u32> {
    let marker = home
        .path()
        .parent()
        .and_then(std::path::Path::file_name)
        .expect("the home is inside a temporary directory")
        .to_string_lossy()
        .into_owned();
    processes_with_cmdline(&["__runner", &marker])
}

#[test]
fn a_task_enqueues_children_that_run_and_are_recorded_with_their_parent() {
    let home = demo_home();
    let parent = home.create_task("demo", "fan_out", &json!({"count": 3}), &[]);
    // One drain runs the parent, then the children it created; the runners are
    // sandboxed (no database for them: the engine creates the children).
    home.json_env(&["tasks", "process"], &[("STASK_SANDBOX", "required")]);
    let p = home.task(parent);
    assert_eq!(p["status"], "completed", "{p:#}");
    let children = ids(&p["children"]);
    assert_eq!(children.len(), 3, "{p:#}");
    assert_eq!(p["result"], json!({ "children": children }));
    assert!(p.get("parent").is_none(), "{p:#}");
    let log = home.log_lines(parent);
    for c in &children {
        let child = home.task(*c);
        assert_eq!(
            (
                &child["status"],
                &child["worker"],
                &child["action"],
                &child["parent"],
                &child["started_by"]
            ),
            (
                &json!("completed"),
                &json!("demo"),
                &json!("run"),
                &json!(parent),
                &json!(format!("task #{parent}"))
            ),
            "{child:#}"
        );
        assert_eq!(child["data"], json!({"steps": 1, "step_ms": 10}));
        assert_eq!(child["children"], json!([]));
        let wanted = format!("Enqueued task #{c} (demo/run)");
        assert!(
            log.iter().any(|l| l.ends_with(&wanted)),
            "{wanted:?} in {log:#?}"
        );
        assert!(home.log_lines(*c)[0].ends_with(&format!("by task #{parent})")));
    }

    // `tasks show` names both ends.
    let text = home.ok(&["tasks", "show", &parent.to_string()]);
    let listed: Vec<String> = children.iter().map(|c| format!("#{c}")).collect();
    assert!(
        text.contains(&format!("enqueued:   {}", listed.join(", "))),
        "{text}"
    );
    let text = home.ok(&["tasks", "show", &children[0].to_string()]);
    assert!(text.contains(&format!("enqueued by: #{parent}")), "{text}");

    // Operators see what a worker may enqueue.
    assert_eq!(
        home.json(&["workers", "show", "demo"])["enqueues"],
        json!(["demo/run"])
    );
    let text = home.ok(&["workers", "show", "demo"]);
    assert!(text.contains("enqueues:    demo/run"), "{text}");
}

#[test]
fn an_undeclared_target_is_refused_and_the_parents_log_says_so() {
    let home = demo_home();
    // The demo worker declares demo/run only.
    let parent = home.create_task(
        "demo",
        "fan_out",
        &json!({"count": 1, "action": "noop"}),
        &["--max-attempts", "1"],
    );
    home.json(&["tasks", "process"]);
    let p = home.task(parent);
    let refusal = "worker 'demo' may not enqueue 'demo/noop': its manifest declares only demo/run";
    assert_eq!(
        (&p["status"], &p["error"]),
        (&json!("failed"), &json!(refusal))
    );
    assert_eq!(p["children"], json!([]), "{p:#}");
    let log = home.log_lines(parent);
    let wanted = format!("Enqueue refused: {refusal}");
    assert!(
        log.iter().any(|l| l.ends_with(&wanted)),
        "{wanted:?} in {log:#?}"
    );
    // Nothing else was created.
    assert_eq!(home.json(&["tasks", "list"]).as_array().unwrap().len(), 1);

    // A declared target with data the host refuses: the creator's own checks apply,
    // and a task never passes a credential on, even one its creator allowed in its own
    // data.
    let parent = home.create_task(
        "demo",
        "fan_out",
        &json!({"count": 1, "data": {"password": "hunter2"}}),
        &["--max-attempts", "1", "--allow-sensitive"],
    );
    home.json(&["tasks", "process"]);
    let p = home.task(parent);
    assert_eq!(p["status"], "failed", "{p:#}");
    let error = p["error"].as_str().unwrap();
    assert!(
        error.contains("'password'") && error.contains("credential"),
        "{error}"
    );
    assert_eq!(home.json(&["tasks", "list"]).as_array().unwrap().len(), 2);
}

/// `GET /api/v1/PATH` with the bearer token `token`.
fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    call(base, token, "GET", path, None)
}

#[test]
fn the_api_shows_a_tasks_parent_and_children() {
    let home = demo_home();
    let parent = home.create_task("demo", "fan_out", &json!({"count": 2}), &[]);
    let (_service, base) = home.serve_http(&["--concurrency", "2"], &[]);
    let token = home.json(&["tokens", "create", "--role", "viewer"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let p = ended(&home, parent);
    let children = ids(&p["children"]);
    assert_eq!(children.len(), 2, "{p:#}");
    for c in &children {
        ended(&home, *c);
    }
    let (status, shown) = get(&base, &token, &format!("tasks/{parent}"));
    assert_eq!(status, 200, "{shown:#}");
    assert_eq!(shown["children"], json!(children), "{shown:#}");
    assert!(shown.get("parent").is_none(), "{shown:#}");
    let (status, child) = get(&base, &token, &format!("tasks/{}", children[1]));
    assert_eq!(status, 200, "{child:#}");
    assert_eq!(
        (&child["parent"], &child["children"], &child["status"]),
        (&json!(parent), &json!([]), &json!("completed")),
        "{child:#}"
    );
    // Lists carry the parent too.
    let (status, list) = get(&base, &token, "tasks?worker=demo&action=run");
    assert_eq!(status, 200, "{list:#}");
    let listed: Vec<&Value> = list["tasks"]
        .as_array()
        .unwrap_or_else(|| panic!("{list:#}"))
        .iter()
        .collect();
    assert_eq!(listed.len(), 2, "{list:#}");
    assert!(
        listed.iter().all(|t| t["parent"] == json!(parent)),
        "{list:#}"
    );
}

#[test]
fn children_created_before_the_runner_is_killed_stay_and_run() {
    let home = demo_home();
    // Enqueues two children, then waits long enough to be killed mid-run.
    let parent = home.create_task(
        "demo",
        "fan_out",
        &json!({"count": 2, "wait_ms": 60_000}),
        &["--max-attempts", "1"],
    );
    // Retries at once: a child whose runner is killed too runs again.
    let _service = home.serve(&["--concurrency", "2"], &[("STASK_RETRY_BASE_MS", "0")]);
    let children = wait_until(WAIT, "the parent to have enqueued two children", || {
        let p = home.task(parent);
        let c = ids(&p["children"]);
        (p["status"] == "running" && c.len() == 2).then_some(c)
    });
    // Every runner of the home dies, the parent's among them.
    let runners = runners_of(&home);
    assert!(!runners.is_empty(), "a runner is running the parent");
    for pid in runners {
        // SAFETY: kill(2) on a process id this test found; no memory is involved.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
    }
    let p = ended(&home, parent);
    assert_eq!(p["status"], "failed", "{p:#}");
    // The children it had created are still there, its own, and run.
    assert_eq!(ids(&p["children"]), children, "{p:#}");
    for c in &children {
        let t = ended(&home, *c);
        assert_eq!(
            (&t["status"], &t["parent"]),
            (&json!("completed"), &json!(parent)),
            "{t:#}"
        );
    }
}

#[test]
fn one_attempt_enqueues_at_most_a_thousand_tasks() {
    let home = demo_home();
    let parent = home.create_task(
        "demo",
        "fan_out",
        &json!({"count": 1001, "data": {"steps": 0}}),
        &["--max-attempts", "1"],
    );
    // One slot: the children wait while the parent runs.
    let _service = home.serve(&["--concurrency", "1"], &[]);
    let p = ended(&home, parent);
    assert_eq!(p["status"], "failed", "{p:#}");
    assert_eq!(
        p["error"],
        "a task may enqueue at most 1000 tasks per attempt; this one has reached the limit"
    );
    assert_eq!(ids(&p["children"]).len(), 1000);
}

#[test]
fn a_library_built_before_enqueue_still_loads_and_runs() {
    let home = Home::new();
    home.install_active(&[PREVIOUS_ABI]);
    let id = home.create_task("previous-abi", "run", &json!({"n": 1}), &[]);
    home.json(&["tasks", "process"]);
    let t = home.task(id);
    assert_eq!(t["status"], "completed", "{t:#}");
    assert_eq!(t["result"], json!({"task": id, "echo": {"n": 1}}));
    assert!(
        home.log_lines(id)
            .iter()
            .any(|l| l.ends_with("built against the previous ABI")),
        "{:#?}",
        home.log_lines(id)
    );
}
