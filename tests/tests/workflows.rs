//! Workflows through the real binary: a JSON document of tasks with dependencies
//! created with `workflows create` (a file or standard input) and `POST
//! /api/v1/workflows`; a fan-out / fan-in runs in dependency order under a service; a
//! failing step cancels the steps after it, naming it; cancel and retry of the group
//! (CLI and API, with the API's roles); bad documents refused with errors naming the
//! problem, writing nothing; the same on PostgreSQL.

use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{wait_until, Home};

#[path = "common/http.rs"]
mod http;
use http::call;

#[path = "common/pg.rs"]
mod pg;

const DEMO: &str = "stask_worker_demo";
const WAIT: Duration = Duration::from_secs(90);

fn demo_home() -> Home {
    Home::with_demo()
}

/// Writes `doc` to a file in the home and returns its path.
fn doc_file(home: &Home, name: &str, doc: &Value) -> String {
    let path = home.path().join(name);
    std::fs::write(&path, doc.to_string()).unwrap();
    path.to_str().unwrap().to_owned()
}

/// fetch -> (a, b) -> merge, each step a short `run` (merge an `echo`).
fn diamond(name: &str) -> Value {
    let run = |step: &str, after: &[&str]| {
        json!({"step": step, "worker": "demo", "action": "run",
               "data": {"steps": 3, "step_ms": 100}, "after": after})
    };
    json!({"name": name, "tasks": [
        run("fetch", &[]),
        run("a", &["fetch"]),
        run("b", &["fetch"]),
        {"step": "merge", "worker": "demo", "action": "echo", "data": {"x": 1},
         "after": ["a", "b"]},
    ]})
}

/// `workflows show ID --json`.
fn workflow(home: &Home, id: i64) -> Value {
    home.json(&["workflows", "show", &id.to_string()])
}

/// Waits until workflow `id` has `status`; returns it.
fn until_status(home: &Home, id: i64, status: &str) -> Value {
    wait_until(WAIT, &format!("workflow {id} to be {status}"), || {
        let w = workflow(home, id);
        (w["status"] == status).then_some(w)
    })
}

/// The step named `name` of a workflow view.
fn step<'a>(w: &'a Value, name: &str) -> &'a Value {
    w["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["step"] == name)
        .unwrap_or_else(|| panic!("no step {name}: {w:#}"))
}

fn at(w: &Value, name: &str, field: &str) -> i64 {
    step(w, name)["task"][field]
        .as_i64()
        .unwrap_or_else(|| panic!("no {field} for {name}: {w:#}"))
}

/// Checks that every step started after the steps it runs after finished.
fn assert_dependency_order(w: &Value) {
    for s in w["steps"].as_array().unwrap() {
        let name = s["step"].as_str().unwrap();
        for before in s["after"].as_array().unwrap() {
            let before = before.as_str().unwrap();
            assert!(
                at(w, name, "started_at") >= at(w, before, "finished_at"),
                "{name} started before {before} finished: {w:#}"
            );
        }
    }
}

#[test]
fn a_fan_out_fan_in_created_with_the_cli_runs_in_dependency_order() {
    let home = demo_home();
    let file = doc_file(&home, "wf.json", &diamond("nightly import"));
    let created = home.json(&["workflows", "create", &file, "--user", "ann"]);
    let id = created["id"].as_i64().expect("an id");
    let tasks = created["tasks"].as_object().unwrap();
    assert_eq!(tasks.len(), 4, "{created:#}");
    // Before any service runs: one root due, the others waiting for it.
    let w = workflow(&home, id);
    assert_eq!(
        (&w["name"], &w["status"], &w["progress"], &w["tasks"]),
        (
            &json!("nightly import"),
            &json!("pending"),
            &json!(0),
            &json!(4)
        )
    );
    assert_eq!(step(&w, "merge")["after"], json!(["a", "b"]));
    assert_eq!(step(&w, "merge")["task"]["started_by"], "ann");
    let merge = tasks["merge"].as_i64().unwrap();
    let shown = home.task(merge);
    assert_eq!(shown["status"], "pending");
    assert_eq!(
        shown["dependencies"]["after"],
        json!([tasks["a"], tasks["b"]]),
        "{shown:#}"
    );
    assert_eq!(shown["workflow"], json!({"id": id, "step": "merge"}));
    // Standard input works too, and prints the id alone.
    let out = home.run_with_input(
        &["workflows", "create", "-"],
        &[],
        &diamond("from stdin").to_string(),
    );
    assert!(out.status.success(), "{out:?}");
    let second: i64 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(second > id);

    let _service = home.serve(&["--concurrency", "3"], &[]);
    let w = until_status(&home, id, "completed");
    assert_eq!(w["progress"], 100);
    assert_eq!(w["counts"]["completed"], 4);
    assert_dependency_order(&w);
    assert!(w["finished_at"].as_i64().is_some(), "{w:#}");
    let w2 = until_status(&home, second, "completed");
    assert_dependency_order(&w2);

    let list = home.json(&["workflows", "list"]);
    assert_eq!(list["total"], 2);
    let names: Vec<&str> = list["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["from stdin", "nightly import"]);
    let text = home.ok(&["workflows", "list"]);
    assert!(text.contains("nightly import"), "{text}");
    let text = home.ok(&["workflows", "show", &id.to_string()]);
    assert!(text.contains("a, b -> merge [completed]"), "{text}");
    assert!(text.contains("fetch -> a [completed]"), "{text}");
    // The creation line names the step and the workflow.
    let first_line = &home.log_lines(merge)[0];
    assert!(
        first_line.contains("step 'merge' of workflow 'nightly import', after a, b"),
        "{first_line}"
    );
}

#[test]
fn a_failing_step_cancels_the_steps_after_it_and_a_retry_makes_them_wait_again() {
    let home = demo_home();
    let doc = json!({"name": "fails", "tasks": [
        {"step": "bad", "worker": "demo", "action": "run", "max_attempts": 1,
         "data": {"steps": 2, "step_ms": 50, "fail_at": 2}},
        {"step": "after-bad", "worker": "demo", "action": "echo", "after": ["bad"]},
        {"step": "last", "worker": "demo", "action": "echo", "after": ["after-bad"]},
        {"step": "anyway", "worker": "demo", "action": "echo", "after": ["bad"],
         "after_any": true},
    ]});
    let file = doc_file(&home, "fails.json", &doc);
    let created = home.json(&["workflows", "create", &file]);
    let id = created["id"].as_i64().unwrap();
    let bad = created["tasks"]["bad"].as_i64().unwrap();
    let after_bad = created["tasks"]["after-bad"].as_i64().unwrap();
    {
        let _service = home.serve(&["--concurrency", "2"], &[]);
        let w = until_status(&home, id, "failed");
        let message = format!("Cancelled: task #{bad} it depends on failed");
        assert_eq!(step(&w, "after-bad")["task"]["status"], "cancelled");
        assert_eq!(step(&w, "after-bad")["task"]["message"], message);
        assert_eq!(
            step(&w, "last")["task"]["message"],
            format!("Cancelled: task #{after_bad} it depends on was cancelled")
        );
        wait_until(WAIT, "the after-any step to run", || {
            (step(&workflow(&home, id), "anyway")["task"]["status"] == "completed").then_some(())
        });
    }
    // No service: the retried steps are queued and those after them wait again.
    let out = home.ok(&["workflows", "retry", &id.to_string()]);
    assert!(out.contains("3 task(s) queued again (2 waiting"), "{out}");
    let w = workflow(&home, id);
    // Some steps ended, others wait: the workflow is under way.
    assert_eq!(w["status"], "running", "{w:#}");
    assert_eq!(step(&w, "anyway")["task"]["status"], "completed");
    let shown = home.task(after_bad);
    assert_eq!(shown["status"], "pending");
    assert_eq!(
        shown["dependencies"]["waiting_on"],
        json!([bad]),
        "{shown:#}"
    );
    assert!(
        home.log_lines(after_bad).last().unwrap().contains(&format!(
            "Queued for retry with its workflow #{id} (was cancelled"
        )),
        "{:?}",
        home.log_lines(after_bad)
    );
    // Nothing failed now: a second retry is refused.
    let err = home.fail(&["workflows", "retry", &id.to_string()]);
    assert!(err.contains("no failed or cancelled tasks"), "{err}");
    // The same failure cancels them again.
    let _service = home.serve(&["--concurrency", "2"], &[]);
    let w = until_status(&home, id, "failed");
    assert_eq!(step(&w, "last")["task"]["status"], "cancelled", "{w:#}");
    assert_eq!(step(&w, "bad")["task"]["attempts"], 2);
}

fn token(home: &Home, role: &str) -> String {
    home.json(&["tokens", "create", "--role", role])["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn the_api_creates_cancels_and_retries_a_workflow_as_a_group() {
    let home = demo_home();
    let (_service, base) = home.serve_http(&["--concurrency", "2"], &[]);
    let operator = token(&home, "operator");
    let viewer = token(&home, "viewer");
    let doc = json!({"name": "api", "tasks": [
        {"step": "slow", "worker": "demo", "action": "run",
         "data": {"steps": 30, "step_ms": 100}},
        {"step": "next", "worker": "demo", "action": "echo", "after": ["slow"]},
        {"step": "end", "worker": "demo", "action": "echo", "after": ["next"],
         "priority": "high"},
    ]});
    // Who may: nobody without credentials, not a viewer.
    assert_eq!(call(&base, "", "POST", "workflows", Some(&doc)).0, 401);
    let (status, v) = call(&base, &viewer, "POST", "workflows", Some(&doc));
    assert_eq!(status, 403, "{v:#}");
    let (status, w) = call(&base, &operator, "POST", "workflows", Some(&doc));
    assert_eq!(status, 201, "{w:#}");
    let id = w["id"].as_i64().unwrap();
    assert_eq!(w["steps"].as_array().unwrap().len(), 3, "{w:#}");
    assert_eq!(step(&w, "end")["task"]["priority"], "high");
    assert!(step(&w, "slow")["task"]["started_by"]
        .as_str()
        .unwrap()
        .starts_with("token:"));
    let (status, page) = call(&base, &viewer, "GET", "workflows", None);
    assert_eq!(status, 200, "{page:#}");
    assert_eq!(page["workflows"][0]["id"], id);
    assert_eq!(page["total"], 1);
    assert_eq!(
        call(&base, &viewer, "GET", "workflows?limit=0", None).0,
        400
    );

    // Cancel while the first step runs: it is told to stop, the rest cancelled now.
    wait_until(WAIT, "the slow step to run", || {
        let (_, w) = call(&base, &viewer, "GET", &format!("workflows/{id}"), None);
        (step(&w, "slow")["task"]["status"] == "running").then_some(())
    });
    assert_eq!(
        call(
            &base,
            &viewer,
            "POST",
            &format!("workflows/{id}/cancel"),
            None
        )
        .0,
        403
    );
    let (status, c) = call(
        &base,
        &operator,
        "POST",
        &format!("workflows/{id}/cancel"),
        None,
    );
    assert_eq!(status, 200, "{c:#}");
    assert_eq!((&c["cancelled"], &c["requested"]), (&json!(2), &json!(1)));
    let w = wait_until(WAIT, "the workflow to be cancelled", || {
        let (_, w) = call(&base, &viewer, "GET", &format!("workflows/{id}"), None);
        (w["status"] == "cancelled").then_some(w)
    });
    assert_eq!(w["counts"]["cancelled"], 3, "{w:#}");
    let (status, again) = call(
        &base,
        &operator,
        "POST",
        &format!("workflows/{id}/cancel"),
        None,
    );
    assert_eq!(
        (status, &again["error"]["code"]),
        (409, &json!("workflow_finished"))
    );

    // Retry: all three again, in order, to the end.
    let (status, r) = call(
        &base,
        &operator,
        "POST",
        &format!("workflows/{id}/retry"),
        None,
    );
    assert_eq!(status, 200, "{r:#}");
    assert_eq!((&r["retried"], &r["waiting"]), (&json!(3), &json!(2)));
    let w = wait_until(WAIT, "the retried workflow to complete", || {
        let (_, w) = call(&base, &viewer, "GET", &format!("workflows/{id}"), None);
        (w["status"] == "completed").then_some(w)
    });
    assert_dependency_order(&w);

    let (status, v) = call(&base, &viewer, "GET", "workflows/999999", None);
    assert_eq!(
        (status, &v["error"]["code"]),
        (404, &json!("workflow_not_found"))
    );
    let (status, v) = call(&base, &operator, "POST", "workflows/999999/retry", None);
    assert_eq!(status, 404, "{v:#}");
}

#[test]
fn bad_documents_are_refused_naming_the_problem_and_nothing_is_stored() {
    let home = demo_home();
    let echo = |step: &str, after: &[&str]| json!({"step": step, "worker": "demo", "action": "echo", "after": after});
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"name": "cycle", "tasks": [echo("a", &["c"]), echo("b", &["a"]),
                   echo("c", &["b"]), echo("d", &[])]}),
            "in a cycle: ",
            "tasks",
        ),
        (
            json!({"name": "self", "tasks": [echo("a", &["a"])]}),
            "step 'a' runs after itself",
            "tasks[0].after",
        ),
        (
            json!({"name": "unknown step", "tasks": [echo("a", &["nope"])]}),
            "runs after 'nope', which is not a step of this workflow",
            "tasks[0].after",
        ),
        (
            json!({"name": "unknown worker", "tasks": [echo("a", &[]),
                   {"step": "b", "worker": "ghost", "action": "run"}]}),
            "step 'b': no worker 'ghost' is registered",
            "tasks[1].worker",
        ),
        (
            json!({"name": "unknown action", "tasks": [
                   {"step": "a", "worker": "demo", "action": "fly"}]}),
            "step 'a': worker 'demo' has no action 'fly'",
            "tasks[0].action",
        ),
        (
            json!({"name": "bad data", "tasks": [
                   {"step": "a", "worker": "demo", "action": "echo", "data": [1]}]}),
            "step 'a': task data must be a JSON object",
            "tasks[0].data",
        ),
        (
            json!({"name": "twice", "tasks": [echo("a", &[]), echo("a", &[])]}),
            "step 'a' is named twice",
            "tasks[1].step",
        ),
        (
            json!({"name": "slash", "tasks": [echo("a/b", &[])]}),
            "step name 'a/b' (task 1) is not usable",
            "tasks[0].step",
        ),
        (
            json!({"name": "none", "tasks": []}),
            "a workflow has 1 to 10000 tasks, got 0",
            "tasks",
        ),
        (
            json!({"name": " ", "tasks": [echo("a", &[])]}),
            "a workflow's name is 1 to 200 characters",
            "name",
        ),
    ];
    let (_service, base) = home.serve_http(&["--concurrency", "1"], &[]);
    let operator = token(&home, "operator");
    for (i, (doc, message, field)) in cases.iter().enumerate() {
        let file = doc_file(&home, &format!("bad{i}.json"), doc);
        let err = home.fail(&["workflows", "create", &file]);
        assert!(err.contains(message), "{doc}: {err}");
        let (status, v) = call(&base, &operator, "POST", "workflows", Some(doc));
        assert_eq!(status, 422, "{doc}: {v:#}");
        assert_eq!(v["error"]["field"], *field, "{doc}: {v:#}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(message),
            "{doc}: {v:#}"
        );
    }
    // The cycle is named in order.
    let err = home.fail(&[
        "workflows",
        "create",
        &home.path().join("bad0.json").to_string_lossy(),
    ]);
    assert!(
        ["a -> b -> c -> a", "b -> c -> a -> b", "c -> a -> b -> c"]
            .iter()
            .any(|c| err.contains(c)),
        "{err}"
    );
    // Not JSON, unknown fields, a missing file: each says so.
    let file = doc_file(&home, "broken.json", &json!("x"));
    std::fs::write(&file, "{\"name\": ").unwrap();
    let err = home.fail(&["workflows", "create", &file]);
    assert!(err.contains("the workflow document is not valid"), "{err}");
    let file = doc_file(
        &home,
        "extra.json",
        &json!({"name": "x", "tasks": [], "color": "red"}),
    );
    let err = home.fail(&["workflows", "create", &file]);
    assert!(err.contains("unknown field `color`"), "{err}");
    let err = home.fail(&["workflows", "create", "/nonexistent/wf.json"]);
    assert!(err.contains("cannot read workflow file"), "{err}");
    let (status, _) = call(
        &base,
        &operator,
        "POST",
        "workflows",
        Some(
            &json!({"name": "x", "tasks": [{"step": "a", "worker": "demo",
            "action": "echo", "colour": 1}]}),
        ),
    );
    assert_eq!(status, 422);
    // Nothing was stored.
    assert_eq!(home.json(&["workflows", "list"])["total"], 0);
    assert!(home.json(&["tasks", "list"]).as_array().unwrap().is_empty());
    let err = home.fail(&["workflows", "show", "7"]);
    assert!(err.contains("no workflow 7"), "{err}");
}

#[test]
fn a_workflow_runs_cancels_and_retries_on_postgresql() {
    let db = pg::Schema::named("stask_workflows");
    let home = db.home();
    home.install(DEMO);
    home.ok(&["workers", "discover", "--activate"]);
    let file = doc_file(&home, "wf.json", &diamond("on postgres"));
    let id = home.json(&["workflows", "create", &file])["id"]
        .as_i64()
        .unwrap();
    // Cancelled before anything ran, then retried and run to the end.
    let out = home.json(&["workflows", "cancel", &id.to_string()]);
    assert_eq!(
        (&out["cancelled"], &out["requested"]),
        (&json!(4), &json!(0))
    );
    assert_eq!(workflow(&home, id)["status"], "cancelled");
    let out = home.json(&["workflows", "retry", &id.to_string()]);
    assert_eq!((&out["retried"], &out["waiting"]), (&json!(4), &json!(3)));
    // Ready once its HTTP address is published (no wake-up socket on PostgreSQL).
    let _service = home.serve_http(&["--concurrency", "3"], &[]);
    let w = until_status(&home, id, "completed");
    assert_dependency_order(&w);
    assert_eq!(
        home.json(&["workflows", "list"])["workflows"][0]["progress"],
        100
    );
    // A bad document writes nothing here either.
    let bad = doc_file(
        &home,
        "bad.json",
        &json!({"name": "bad", "tasks": [
            {"step": "a", "worker": "demo", "action": "echo", "after": ["b"]},
            {"step": "b", "worker": "ghost", "action": "echo"}]}),
    );
    let err = home.fail(&["workflows", "create", &bad]);
    assert!(err.contains("step 'b': no worker 'ghost'"), "{err}");
    assert_eq!(home.json(&["workflows", "list"])["total"], 1);
}
