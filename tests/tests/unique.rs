//! Unique tasks through the real binary on a SQLite home: `tasks create --unique-key`
//! (and the action's default key) returns the task already there instead of a new one,
//! with exit code 3 and `"existing": true`; eight processes creating one key at once
//! make one task; the API answers 200 with the existing task instead of 201.

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{describe, Background, Home};

const WAIT: Duration = Duration::from_secs(60);
/// The exit code of `tasks create` that found the task with the key.
const EXISTING: i32 = 3;

fn demo_home() -> Home {
    Home::with_demo()
}

/// `tasks create ARGS --json`: its exit code and its JSON reply.
fn create(home: &Home, args: &[&str]) -> (i32, Value) {
    let mut all = vec!["tasks", "create"];
    all.extend_from_slice(args);
    all.push("--json");
    let out = home.run(&all);
    reply(&all.join(" "), &out)
}

fn reply(what: &str, out: &Output) -> (i32, Value) {
    let code = out.status.code().expect("an exit code");
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e})\n{}", describe(what, out)));
    (code, v)
}

fn task_count(home: &Home) -> usize {
    home.json(&["tasks", "list", "--limit", "1000"])
        .as_array()
        .expect("a list")
        .len()
}

/// Every command-line process started at once: exactly one creates the task, the
/// others print it with exit code 3. Shared by the SQLite and PostgreSQL tests.
pub fn eight_creators_at_once(home: &Home) {
    let args = [
        "tasks",
        "create",
        "demo",
        "echo",
        "--unique-key",
        "race-1",
        "--json",
    ];
    let creators: Vec<Background> = (0..8).map(|_| home.spawn(&args, &[])).collect();
    let replies: Vec<(i32, Value)> = creators
        .into_iter()
        .map(|bg| reply("tasks create --unique-key race-1", &bg.wait(WAIT)))
        .collect();
    let made: Vec<&Value> = replies
        .iter()
        .filter(|(code, _)| *code == 0)
        .map(|(_, v)| v)
        .collect();
    assert_eq!(made.len(), 1, "exactly one process creates: {replies:#?}");
    let id = made[0]["id"].as_i64().unwrap();
    assert_eq!(made[0]["existing"], false);
    for (code, v) in &replies {
        if *code != 0 {
            assert_eq!(*code, EXISTING, "{v:#}");
            assert_eq!(v["existing"], true, "{v:#}");
            assert_eq!(v["id"].as_i64(), Some(id), "{v:#}");
            assert_eq!(v["unique_key"], "race-1");
        }
    }
    assert_eq!(task_count(home), 1);
}

#[test]
fn eight_processes_creating_one_key_at_once_make_one_task() {
    eight_creators_at_once(&demo_home());
}

#[test]
fn a_key_returns_the_waiting_task_until_it_finishes_and_says_so() {
    let home = demo_home();
    let (code, first) = create(&home, &["demo", "echo", "--unique-key", "k"]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(
        (&first["existing"], &first["status"], &first["unique_key"]),
        (&json!(false), &json!("pending"), &json!("k"))
    );
    let id = first["id"].as_i64().unwrap();
    assert!(home.log_lines(id)[0].ends_with("Task created (priority normal, unique key 'k')"));

    // Text output: the id alone on stdout (so `id=$(stask tasks create …)` works), the
    // reason on stderr, exit code 3.
    let out = home.run(&["tasks", "create", "demo", "echo", "--unique-key", "k"]);
    assert_eq!(
        out.status.code(),
        Some(EXISTING),
        "{}",
        describe("again", &out)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), id.to_string());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("task {id} (pending) already has unique key 'k'")),
        "{err}"
    );
    // Another action or key is another task; a key-less create is never refused.
    assert_eq!(create(&home, &["demo", "noop", "--unique-key", "k"]).0, 0);
    assert_eq!(create(&home, &["demo", "echo", "--unique-key", "k2"]).0, 0);
    home.create_task("demo", "echo", &json!({}), &[]);

    // Once it completed, the key is free for the default states, not for `completed`.
    home.json(&["tasks", "process"]);
    assert_eq!(home.task(id)["status"], "completed");
    let (code, v) = create(
        &home,
        &[
            "demo",
            "echo",
            "--unique-key",
            "k",
            "--unique-states",
            "completed,failed",
        ],
    );
    assert_eq!((code, v["id"].as_i64()), (EXISTING, Some(id)), "{v:#}");
    assert_eq!(v["status"], "completed");
    let (code, again) = create(&home, &["demo", "echo", "--unique-key", "k"]);
    assert_eq!(code, 0, "{again:#}");
    let second = again["id"].as_i64().unwrap();
    assert_ne!(second, id);
    // A period: the task of a moment ago counts within 10 minutes.
    let (code, v) = create(
        &home,
        &["demo", "echo", "--unique-key", "k", "--unique-for", "10m"],
    );
    assert_eq!((code, v["id"].as_i64()), (EXISTING, Some(second)));
}

#[test]
fn the_default_key_of_an_action_applies_unless_refused() {
    let home = demo_home();
    // demo's `digest` declares the key `digest:{topic}`.
    let (code, first) = create(&home, &["demo", "digest", "--data", r#"{"topic":"news"}"#]);
    assert_eq!(code, 0, "{first:#}");
    assert_eq!(first["unique_key"], "digest:news");
    let (code, v) = create(&home, &["demo", "digest", "--data", r#"{"topic":"news"}"#]);
    assert_eq!((code, &v["id"]), (EXISTING, &first["id"]));
    let (code, _) = create(&home, &["demo", "digest", "--data", r#"{"topic":"sport"}"#]);
    assert_eq!(code, 0);
    // --no-unique creates it anyway (and only then may --count make several).
    let v = home.json(&[
        "tasks",
        "create",
        "demo",
        "digest",
        "--data",
        r#"{"topic":"news"}"#,
        "--no-unique",
        "--count",
        "2",
    ]);
    assert_eq!(v["ids"].as_array().map(Vec::len), Some(2));
    // A key of one's own replaces the default.
    let (code, v) = create(
        &home,
        &[
            "demo",
            "digest",
            "--data",
            r#"{"topic":"news"}"#,
            "--unique-key",
            "mine",
        ],
    );
    assert_eq!((code, &v["unique_key"]), (0, &json!("mine")));
    assert_eq!(task_count(&home), 5);
}

#[test]
fn bad_unique_options_are_refused_with_what_to_do() {
    let home = demo_home();
    let long = "x".repeat(513);
    for (args, expected) in [
        (
            vec!["--unique-key", "k", "--unique-for", "10 minutes"],
            "unknown unit",
        ),
        (
            vec!["--unique-key", "k", "--unique-states", "pending,done"],
            "'done' is not a status",
        ),
        (vec!["--unique-key", &long], "1 to 512 bytes"),
        (vec!["--unique-key", "  "], "not blank"),
        (
            vec!["--unique-key", "a\u{7}b"],
            "without control characters",
        ),
        (vec!["--unique-key", "k", "--count", "2"], "count must be 1"),
        (vec!["--unique-for", "10m"], "give a unique key too"),
        (vec!["--unique-key", "k", "--no-unique"], "keep one of them"),
        (
            vec!["--unique-key", "k", "--unique-for", "0s"],
            "at least 1s",
        ),
    ] {
        let mut all = vec!["tasks", "create", "demo", "echo"];
        all.extend_from_slice(&args);
        let out = home.run(&all);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            matches!(out.status.code(), Some(1 | 2)),
            "{}",
            describe(&all.join(" "), &out)
        );
        assert!(err.contains(expected), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // The default key with --count names the way out.
    let err = home.fail(&["tasks", "create", "demo", "digest", "--count", "3"]);
    assert!(err.contains("--no-unique"), "{err}");
    assert_eq!(task_count(&home), 0);
}

/// `POST /api/v1/tasks` with `body` as an operator: status, Location and reply.
fn post(base: &str, token: &str, body: &Value) -> (u16, Option<String>, Value) {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let req = ureq::http::Request::builder()
        .method("POST")
        .uri(format!("{base}/api/v1/tasks"))
        .header("Authorization", format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .body(body.to_string().into_bytes())
        .unwrap();
    let res = agent.run(req).expect("the request is answered");
    let location = res
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    let status = res.status().as_u16();
    let text = res.into_body().read_to_string().expect("a reply");
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, location, v)
}

#[test]
fn the_api_answers_200_with_the_existing_task_instead_of_201() {
    let home = demo_home();
    // One slot, held by a long task created first: every other task stays pending,
    // so what counts as "there" does not change under the test.
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
    let body = json!({"worker": "demo", "action": "echo", "unique_key": "api-1",
        "unique_for": "1h", "unique_states": ["pending", "running"]});
    let (status, location, first) = post(&base, &token, &body);
    assert_eq!(status, 201, "{first:#}");
    assert_eq!(
        (&first["existing"], &first["unique_key"]),
        (&json!(false), &json!("api-1"))
    );
    let id = first["id"].as_i64().unwrap();
    assert_eq!(location, Some(format!("/api/v1/tasks/{id}")));

    let (status, location, again) = post(&base, &token, &body);
    assert_eq!(status, 200, "{again:#}");
    assert_eq!(
        (again["id"].as_i64(), &again["existing"]),
        (Some(id), &json!(true))
    );
    assert_eq!(again["status"], "pending");
    assert_eq!(location, Some(format!("/api/v1/tasks/{id}")));

    // The action's default key, and what the CLI created counts for the API too.
    let cli = home.json(&[
        "tasks",
        "create",
        "demo",
        "digest",
        "--data",
        r#"{"topic":"t"}"#,
    ]);
    let (status, _, v) = post(
        &base,
        &token,
        &json!({"worker": "demo", "action": "digest", "data": {"topic": "t"}}),
    );
    assert_eq!(
        (status, &v["id"], &v["unique_key"]),
        (200, &cli["id"], &json!("digest:t"))
    );
    let (status, _, v) = post(
        &base,
        &token,
        &json!({"worker": "demo", "action": "digest", "data": {"topic": "t"}, "no_unique": true}),
    );
    assert_eq!(status, 201, "{v:#}");
    assert!(v.get("existing").is_none(), "a task without a key: {v:#}");

    // Bad input: 422 naming the field.
    for (extra, field) in [
        (
            json!({"unique_key": "k", "unique_for": "soon"}),
            "unique_for",
        ),
        (
            json!({"unique_key": "k", "unique_states": ["later"]}),
            "unique_states",
        ),
        (
            json!({"unique_key": "k", "unique_states": []}),
            "unique_states",
        ),
        (json!({"unique_key": "x".repeat(600)}), "unique_key"),
        (json!({"unique_key": "k", "count": 2}), "count"),
        (json!({"unique_for": "1h"}), "unique_key"),
    ] {
        let mut body = json!({"worker": "demo", "action": "echo"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, _, v) = post(&base, &token, &body);
        assert_eq!(
            (status, &v["error"]["field"]),
            (422, &json!(field)),
            "{body}: {v:#}"
        );
    }
}
