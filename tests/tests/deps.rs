//! Tasks that run after others, through the real binary on a SQLite home: `tasks create
//! --after A` runs once A completed (with a running service), a failed dependency
//! cancels its dependant naming it (or, with `--after-any`, lets it run), a missing one
//! is refused; the API's `after` / `after_any` and its `waiting` code.

use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::Home;

#[path = "common/http.rs"]
mod http;
use http::call;

const WAIT: Duration = Duration::from_secs(60);

fn demo_home() -> Home {
    Home::with_demo()
}

/// Waits until task `id` has ended; returns it.
fn ended(home: &Home, id: i64) -> Value {
    home.ended(id, WAIT)
}

#[test]
fn a_task_created_after_another_runs_once_it_completed() {
    let home = demo_home();
    let _service = home.serve(&["--concurrency", "2"], &[]);
    let a = home.create_task("demo", "run", &json!({"steps": 4, "step_ms": 150}), &[]);
    let a_text = a.to_string();
    let b = home.create_task("demo", "echo", &json!({}), &["--after", &a_text]);
    // Two slots, yet B waits for A.
    let shown = home.task(b);
    assert_eq!(shown["dependencies"]["after"], json!([a]), "{shown:#}");
    let b_done = ended(&home, b);
    let a_done = home.task(a);
    assert_eq!(
        (&a_done["status"], &b_done["status"]),
        (&json!("completed"), &json!("completed"))
    );
    assert!(
        b_done["started_at"].as_i64() >= a_done["finished_at"].as_i64(),
        "B started after A finished: {a_done:#} {b_done:#}"
    );
    assert!(home.log_lines(b)[0].ends_with(&format!("after #{a})")));
    let text = home.ok(&["tasks", "show", &b.to_string()]);
    assert!(text.contains(&format!("after:      #{a}")), "{text}");

    // A failed dependency cancels its dependant, naming it; --after-any runs anyway.
    let f = home.create_task(
        "demo",
        "run",
        &json!({"steps": 2, "step_ms": 100, "fail_at": 2}),
        &["--max-attempts", "1"],
    );
    let f_text = f.to_string();
    let c = home.create_task("demo", "echo", &json!({}), &["--after", &f_text]);
    let d = home.create_task(
        "demo",
        "echo",
        &json!({}),
        &["--after", &format!("{a},{f}"), "--after-any"],
    );
    let c_done = ended(&home, c);
    assert_eq!(c_done["status"], "cancelled", "{c_done:#}");
    assert_eq!(
        c_done["message"],
        format!("Cancelled: task #{f} it depends on failed")
    );
    assert_eq!(ended(&home, d)["status"], "completed");

    // After a task that already failed: cancelled at once, and said so.
    let out = home.run(&["tasks", "create", "demo", "echo", "--after", &f_text]);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it depends on failed"),
        "{out:?}"
    );

    // A dependency that does not exist is refused, naming it; nothing is created.
    let before = home.json(&["tasks", "list"]).as_array().unwrap().len();
    let err = home.fail(&["tasks", "create", "demo", "echo", "--after", "999999"]);
    assert!(err.contains("task 999999 does not exist"), "{err}");
    let err = home.fail(&["tasks", "create", "demo", "echo", "--after-any"]);
    assert!(err.contains("--after"), "{err}");
    let err = home.fail(&[
        "tasks", "create", "demo", "echo", "--after", &a_text, "--count", "2",
    ]);
    assert!(err.contains("count must be 1"), "{err}");
    assert_eq!(
        home.json(&["tasks", "list"]).as_array().unwrap().len(),
        before
    );
}

#[test]
fn the_api_creates_dependants_and_says_what_they_wait_for() {
    let home = demo_home();
    // One slot, held by a long task created first: every other task stays pending.
    home.create_task(
        "demo",
        "run",
        &json!({"steps": 600, "step_ms": 100}),
        &["--priority", "high"],
    );
    let (_service, base) = home.serve_http(&["--concurrency", "1"], &[]);
    let token = home.json(&["tokens", "create", "--role", "operator"])["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let post = |body: Value| call(&base, &token, "POST", "tasks", Some(&body));
    let (status, a) = post(json!({"worker": "demo", "action": "echo"}));
    assert_eq!(status, 201, "{a:#}");
    let a = a["id"].as_i64().unwrap();
    let (status, b) = post(json!({"worker": "demo", "action": "echo", "after": [a]}));
    assert_eq!(status, 201, "{b:#}");
    let b = b["id"].as_i64().unwrap();
    let (status, any) = post(json!({"worker": "demo", "action": "echo", "after": [a],
        "after_any": true}));
    assert_eq!(status, 201, "{any:#}");
    let any = any["id"].as_i64().unwrap();

    let (status, shown) = call(&base, &token, "GET", &format!("tasks/{b}"), None);
    assert_eq!(status, 200, "{shown:#}");
    assert_eq!(
        shown["waiting"],
        json!({"code": "dependencies", "waiting_on": [a]})
    );
    assert_eq!(
        shown["dependencies"],
        json!({"after": [a], "any": false, "waiting_on": [a]})
    );

    // Cancelling the dependency cancels B, naming it, and lets the other wait no more.
    let (status, v) = call(&base, &token, "POST", &format!("tasks/{a}/cancel"), None);
    assert_eq!(status, 200, "{v:#}");
    let (_, shown) = call(&base, &token, "GET", &format!("tasks/{b}"), None);
    assert_eq!(shown["status"], "cancelled", "{shown:#}");
    assert_eq!(
        shown["message"],
        format!("Cancelled: task #{a} it depends on was cancelled")
    );
    let (_, shown) = call(&base, &token, "GET", &format!("tasks/{any}"), None);
    assert_eq!(shown["status"], "pending", "{shown:#}");
    assert_ne!(shown["waiting"]["code"], "dependencies", "{shown:#}");

    // Bad input: 422 naming the field.
    for (body, field) in [
        (json!({"after": [999_999]}), "after"),
        (json!({"after": []}), "after"),
        (json!({"after": [0]}), "after"),
        (json!({"after_any": true}), "after"),
        (json!({"after": [a], "count": 2}), "count"),
        (json!({"after": [a], "unique_key": " "}), "unique_key"),
    ] {
        let mut full = json!({"worker": "demo", "action": "echo"});
        for (k, v) in body.as_object().unwrap() {
            full[k] = v.clone();
        }
        let (status, v) = post(full.clone());
        assert_eq!(
            (status, &v["error"]["field"]),
            (422, &json!(field)),
            "{full}: {v:#}"
        );
    }

    // With a unique key: created once, waiting for its dependency; the same key again
    // answers that task (200, existing) and creates nothing.
    let body = json!({"worker": "demo", "action": "echo", "after": [any], "unique_key": "after-k"});
    let (status, first) = post(body.clone());
    assert_eq!(status, 201, "{first:#}");
    assert_eq!(
        (&first["unique_key"], &first["existing"]),
        (&json!("after-k"), &json!(false)),
        "{first:#}"
    );
    let first = first["id"].as_i64().unwrap();
    let (_, shown) = call(&base, &token, "GET", &format!("tasks/{first}"), None);
    assert_eq!(
        shown["dependencies"],
        json!({"after": [any], "any": false, "waiting_on": [any]}),
        "{shown:#}"
    );
    let (status, again) = post(body);
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(
        (again["id"].as_i64(), &again["existing"]),
        (Some(first), &json!(true)),
        "{again:#}"
    );
}
