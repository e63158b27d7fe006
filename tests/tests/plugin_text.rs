//! Acceptance tests: text that comes from plugin code (progress and log messages, error
//! messages, manifest texts) never reaches a terminal or a stored log line with its
//! control characters raw, and input of any length quoted in an error message is cut.
//!
//! The fixture worker `misbehaving` has an action `control-text` that reports progress
//! and logs [`CONTROL_TEXT`] (an ESC colour sequence, NUL, BEL and a tab), and fails
//! with it as its error when its data is `{"fail": true}`. Escapes are those of the log
//! line format: `\x1b` for ESC, `\0` for NUL, `\x07` for BEL; tabs are kept.

use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{check_log_line, describe, Home};

const MISBEHAVING: &str = "stask_fixture_misbehaving";

/// What the fixture's `control-text` action reports (progress, log and error).
const CONTROL_TEXT: &str = "\u{1b}[31mred\u{1b}[0m nul:\u{0} bell:\u{7} tab:\t end";

/// [`CONTROL_TEXT`] as a stored line and the CLI show it.
const ESCAPED: &str = "\\x1b[31mred\\x1b[0m nul:\\0 bell:\\x07 tab:\t end";

/// The longest a command of these tests may take.
const WAIT: Duration = Duration::from_secs(30);

/// Control characters a terminal would act on: everything of C0 but tab and newline
/// (line ends separate output lines), DEL and C1.
fn raw_controls(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| c.is_control() && *c != '\t' && *c != '\n')
        .collect()
}

fn assert_no_raw_controls(what: &str, text: &str) {
    let found = raw_controls(text);
    assert!(
        found.is_empty(),
        "{what} holds raw control characters {found:?}:\n{text:?}"
    );
}

/// A home with the misbehaving fixture active.
fn fixture_home() -> Home {
    let home = Home::new();
    home.install_active(&[MISBEHAVING]);
    home
}

/// Runs one `control-text` task with `data` to its end (one attempt) and returns its id.
fn run_control_text(home: &Home, data: Value) -> i64 {
    let id = home.create_task(
        "misbehaving",
        "control-text",
        &data,
        &["--max-attempts", "1"],
    );
    let summary = home.json(&["tasks", "process"]);
    assert_eq!(
        summary["completed"].as_u64().unwrap_or(0) + summary["failed"].as_u64().unwrap_or(0),
        1,
        "{summary:#}"
    );
    id
}

fn stdout_of(home: &Home, args: &[&str]) -> String {
    let out = home.run(args);
    assert!(out.status.success(), "{}", describe(&args.join(" "), &out));
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

#[test]
fn control_characters_in_progress_and_log_messages_are_stored_escaped() {
    let home = fixture_home();
    let id = run_control_text(&home, json!({}));
    assert_eq!(home.task(id)["status"], "completed");
    let lines = home.log_lines(id);
    let plugin_lines: Vec<&String> = lines.iter().filter(|l| l.contains("red")).collect();
    assert!(
        !plugin_lines.is_empty(),
        "the plugin's messages are in the log: {lines:#?}"
    );
    for line in &lines {
        assert_no_raw_controls("a stored log line", line);
        check_log_line(line).unwrap_or_else(|e| panic!("{e}"));
    }
    for line in plugin_lines {
        let message = check_log_line(line).unwrap()[5];
        assert_eq!(message, ESCAPED, "escaped visibly, tab kept: {line:?}");
    }
}

#[test]
fn a_plugin_error_full_of_control_characters_is_escaped_in_the_log_and_in_tasks_show() {
    let home = fixture_home();
    let id = run_control_text(&home, json!({ "fail": true }));

    // JSON keeps the text as the plugin wrote it, in JSON's own escapes.
    let out = home.run(&["tasks", "show", &id.to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        describe("tasks show --json", &out)
    );
    assert!(
        !out.stdout.iter().any(|&b| b == 0x1b || b == 0 || b == 7),
        "no raw control byte in JSON output"
    );
    let t: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(t["status"], "failed", "{t:#}");
    assert_eq!(t["error"], CONTROL_TEXT, "{t:#}");

    let last = home.log_lines(id).pop().unwrap();
    assert!(
        last.starts_with("failed|") && last.ends_with(&format!(": {ESCAPED}")),
        "the final line tells the error escaped: {last:?}"
    );
    assert_no_raw_controls("the final line", &last);

    let text = stdout_of(&home, &["tasks", "show", &id.to_string()]);
    assert_no_raw_controls("tasks show", &text);
    let error = text
        .lines()
        .find(|l| l.trim_start().starts_with("error:"))
        .unwrap_or_else(|| panic!("no error line:\n{text}"));
    assert!(error.ends_with(ESCAPED), "{error:?}");

    let list = stdout_of(&home, &["tasks", "list"]);
    assert_no_raw_controls("tasks list", &list);
    assert!(list.contains("\\x1b[31mred"), "{list}");
}

#[test]
fn tasks_logs_prints_plugin_text_escaped_and_raw_prints_the_stored_text() {
    let home = fixture_home();
    let id = run_control_text(&home, json!({}));
    let text = stdout_of(&home, &["tasks", "logs", &id.to_string()]);
    assert_no_raw_controls("tasks logs", &text);
    assert!(
        text.lines().any(|l| l.ends_with(&format!("  {ESCAPED}"))),
        "the message is shown as the stored line has it:\n{text}"
    );
    let raw = stdout_of(&home, &["tasks", "logs", &id.to_string(), "--raw"]);
    let mut stored = home.log_lines(id).join("\n");
    stored.push('\n');
    assert_eq!(raw, stored, "--raw prints the stored text exactly");
}

#[test]
fn tasks_execute_prints_plugin_messages_escaped() {
    let home = fixture_home();
    let id = home.create_task(
        "misbehaving",
        "control-text",
        &json!({ "fail": true }),
        &["--max-attempts", "1"],
    );
    let out = home.run(&["tasks", "execute", &id.to_string()]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed task: {}",
        describe("tasks execute", &out)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    assert_no_raw_controls("tasks execute", &text);
    assert!(text.contains(ESCAPED), "{text}");
}

#[test]
fn manifest_texts_with_control_characters_are_escaped_in_workers_list_and_show() {
    let home = fixture_home();
    // The library's manifest has none, so give the registration one with them, as a
    // library could (titles and descriptions are free text).
    let w = home.store().get_worker("misbehaving").unwrap().unwrap();
    let mut manifest: Value = serde_json::from_str(&w.manifest).unwrap();
    manifest["title"] = json!("Evil \u{1b}]0;owned\u{7}title");
    manifest["description"] = json!("line\u{1b}[2Jcleared\u{0}");
    manifest["actions"][0]["title"] = json!("act\u{1b}[5mblink");
    let manifest = manifest.to_string();
    let meta = stask_storage::WorkerMetadata {
        scope: "scope\u{1b}[1m",
        title: "Evil \u{1b}]0;owned\u{7}title",
        description: "line\u{1b}[2Jcleared\u{0}",
        icon: &w.icon,
        version: "1.0\u{9b}",
        manifest: &manifest,
    };
    assert!(home
        .store()
        .update_worker_library("misbehaving", &meta, &w.library)
        .unwrap());

    let show = stdout_of(&home, &["workers", "show", "misbehaving"]);
    assert_no_raw_controls("workers show", &show);
    assert!(show.contains("Evil \\x1b]0;owned\\x07title"), "{show}");
    assert!(show.contains("line\\x1b[2Jcleared\\0"), "{show}");
    assert!(show.contains("act\\x1b[5mblink"), "{show}");
    let list = stdout_of(&home, &["workers", "list"]);
    assert_no_raw_controls("workers list", &list);
    assert!(list.contains("Evil \\x1b]0;owned\\x07title"), "{list}");
    assert!(list.contains("1.0\\x9b"), "{list}");
}

#[test]
fn an_overlong_worker_id_is_cut_in_error_messages() {
    let home = fixture_home();
    let long = "w".repeat(10_000);
    let cut = format!("'{}…'", "w".repeat(64));
    let err = home.fail(&["tasks", "create", &long, "run"]);
    assert!(err.contains(&cut), "{err}");
    assert!(
        !err.contains(&"w".repeat(65)),
        "the id is cut: {} bytes",
        err.len()
    );
    assert!(err.len() < 1000, "{} bytes of error", err.len());

    for cmd in ["show", "activate"] {
        let err = home.fail(&["workers", cmd, &long]);
        assert!(err.contains(&cut), "{cmd}: {err}");
        assert!(!err.contains(&"w".repeat(65)), "{cmd}: {} bytes", err.len());
    }
    // An action name too.
    let err = home.fail(&["tasks", "create", "misbehaving", &long]);
    assert!(err.contains(&cut) && err.len() < 2000, "{err}");
}

#[test]
fn an_overlong_worker_id_sent_to_the_api_is_cut_in_its_error() {
    let home = fixture_home();
    let token = home.json(&["tokens", "create", "--role", "operator", "--name", "op"])["token"]
        .as_str()
        .expect("a token")
        .to_owned();
    let (_service, url) = home.serve_http(&[], &[]);
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .into();
    let long = "w".repeat(10_000);
    let mut res = agent
        .post(&format!("{url}/api/v1/tasks"))
        .header("Authorization", &format!("Bearer {token}"))
        .header("Content-Type", "application/json")
        .send(json!({ "worker": long, "action": "run" }).to_string())
        .expect("the request is answered");
    let status = res.status().as_u16();
    let text = res.body_mut().read_to_string().expect("a body");
    let body: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(status, 422, "{body:#}");
    let message = body["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no message: {body:#}"));
    assert!(
        message.contains(&format!("'{}…'", "w".repeat(64))),
        "{message}"
    );
    assert!(
        !message.contains(&"w".repeat(65)),
        "{} bytes",
        message.len()
    );
}
