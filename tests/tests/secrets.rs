//! Worker secrets at rest: stored encrypted (never in plaintext in the database), opened
//! only for the runs that need them, with a key from `HOME/secret.key` or
//! `STASK_SECRET_KEY`; a missing or wrong key fails a task with a clear message and
//! loses nothing; the key can be rotated; secret values never come from a command line.

use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{describe, Home};

const SECRET: &str = "e2e-s3cret-VALUE-7781";

/// Runs `stask --home HOME ARGS` with `input` on standard input (a pipe, not a
/// terminal) and `env` set (`STASK_SECRET_KEY` only if `env` sets it: the test library
/// scrubs it from the inherited environment).
fn run_stdin(home: &Home, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
    home.run_with_input(args, env, input)
}

/// Runs a command with `env` (and without an inherited `STASK_SECRET_KEY`).
fn run(home: &Home, args: &[&str], env: &[(&str, &str)]) -> Output {
    run_stdin(home, args, env, "")
}

fn ok(home: &Home, args: &[&str], env: &[(&str, &str)]) -> String {
    let out = run(home, args, env);
    assert!(out.status.success(), "{}", describe(&args.join(" "), &out));
    String::from_utf8(out.stdout).unwrap()
}

fn all_output(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A home with the demo worker active (it declares the secret setting `api_key`).
fn demo_home() -> Home {
    let home = Home::new();
    home.install_active(&["stask_worker_demo"]);
    home
}

/// Sets demo's `api_key` through `--secret` with the value on standard input.
fn set_secret(home: &Home, value: &str, env: &[(&str, &str)]) {
    let args = ["workers", "settings", "demo", "--secret", "api_key"];
    let out = run_stdin(home, &args, env, &format!("{value}\n"));
    assert!(out.status.success(), "{}", describe("set the secret", &out));
    assert!(
        !all_output(&out).contains(value),
        "the secret was printed back"
    );
}

/// Demo's stored settings, exactly as in the database.
fn stored(home: &Home) -> String {
    home.store()
        .get_worker("demo")
        .expect("read the worker")
        .expect("demo is registered")
        .settings
}

/// The stored api_key value.
fn stored_key(home: &Home) -> Value {
    serde_json::from_str::<Value>(&stored(home)).unwrap()["api_key"].clone()
}

/// Creates a demo `run` task (one step), runs pending tasks with `env`, returns the task.
fn run_task(home: &Home, env: &[(&str, &str)]) -> Value {
    let id = home.create_task("demo", "run", &json!({"steps": 1, "step_ms": 1}), &[]);
    ok(home, &["tasks", "process"], env);
    home.task(id)
}

/// Creates a demo `run` task and lets a service started with `env` run it; returns the
/// task once it has ended. (A service, because a task that cannot start ends a
/// one-shot `tasks process` only after its engine's idle wait.)
fn serve_task(home: &Home, env: &[(&str, &str)]) -> Value {
    let id = home.create_task("demo", "run", &json!({"steps": 1, "step_ms": 1}), &[]);
    let mut bg = home.serve(&[], env);
    let t = stask_e2e::wait_until(Duration::from_secs(30), "the task has ended", || {
        let t = home.task(id);
        (t["status"] == "failed" || t["status"] == "completed").then_some(t)
    });
    bg.signal(libc::SIGTERM);
    let out = bg.wait(Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{}", describe("serve", &out));
    t
}

fn key_file(home: &Home) -> std::path::PathBuf {
    home.path().join("secret.key")
}

/// A valid key other than the home's.
fn other_key() -> String {
    use std::io::Read as _;
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut bytes)
        .unwrap();
    base64(&bytes)
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in bytes.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn secrets_are_stored_encrypted_and_tasks_still_get_them() {
    let home = demo_home();
    let key = key_file(&home);
    assert!(key.exists(), "`stask init` creates the key file");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);

    set_secret(&home, SECRET, &[]);
    let settings = stored(&home);
    assert!(
        !settings.contains(SECRET),
        "plaintext in the database: {settings}"
    );
    let value = stored_key(&home);
    let enc = value["$enc"]
        .as_str()
        .unwrap_or_else(|| panic!("not encrypted: {value}"));
    assert!(enc.starts_with("v1:"), "{enc}");
    // Nowhere in the database's files either (old pages, the write-ahead log).
    for name in ["stask.db", "stask.db-wal"] {
        if let Ok(bytes) = std::fs::read(home.path().join(name)) {
            assert!(
                !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
                "plaintext secret in {name}"
            );
        }
    }

    // The run gets the secret decrypted: demo's schema types api_key as a string, so a
    // run handed the encrypted object would fail before it started.
    let t = run_task(&home, &[]);
    assert_eq!(t["status"], "completed", "{t:#}");

    // Nothing shows it back.
    for args in [
        &["workers", "settings", "demo"][..],
        &["workers", "settings", "demo", "--json"],
        &["workers", "show", "demo", "--json"],
        &["tasks", "show", &t["id"].to_string()],
    ] {
        let out = run(&home, args, &[]);
        assert!(out.status.success(), "{}", describe(&args.join(" "), &out));
        let text = all_output(&out);
        assert!(!text.contains(SECRET) && !text.contains(enc), "{text}");
    }
    let view = home.json(&["workers", "settings", "demo"]);
    assert_eq!(
        view["api_key"],
        json!({"secret": true, "set": true}),
        "{view:#}"
    );
}

#[test]
fn a_secret_is_refused_on_the_command_line_and_read_from_stdin() {
    let home = demo_home();
    let out = run(
        &home,
        &["workers", "settings", "demo", &format!("api_key={SECRET}")],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("secret"), "{err}");
    assert!(
        err.contains("--secret api_key"),
        "the hint names --secret: {err}"
    );
    assert!(!err.contains(SECRET), "{err}");
    assert_eq!(stored(&home), "{}", "nothing was stored");

    // Other settings still take KEY=VALUE, in the same command as --secret.
    let out = run_stdin(
        &home,
        &[
            "workers",
            "settings",
            "demo",
            "greeting=Hey",
            "--secret",
            "api_key",
        ],
        &[],
        &format!("{SECRET}\n"),
    );
    assert!(out.status.success(), "{}", describe("settings", &out));
    let settings: Value = serde_json::from_str(&stored(&home)).unwrap();
    assert_eq!(settings["greeting"], "Hey");
    assert!(settings["api_key"]["$enc"].is_string(), "{settings}");

    // An empty standard input, or --secret for a key that is not secret: refused.
    let before = stored(&home);
    let out = run_stdin(
        &home,
        &["workers", "settings", "demo", "--secret", "api_key"],
        &[],
        "",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no value"),
        "{}",
        describe("empty", &out)
    );
    let out = run_stdin(
        &home,
        &["workers", "settings", "demo", "--secret", "greeting"],
        &[],
        "x\n",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not secret"));
    assert_eq!(stored(&home), before);
}

#[test]
fn a_wrong_or_missing_key_fails_the_task_clearly_and_loses_nothing() {
    let home = demo_home();
    set_secret(&home, SECRET, &[]);
    let before = stored(&home);
    let key_text = std::fs::read_to_string(key_file(&home)).unwrap();

    // Another (valid) key in STASK_SECRET_KEY wins over the file: the task fails at
    // once (another attempt would fail the same way), naming the key and the remedy.
    let wrong = other_key();
    let t = serve_task(&home, &[("STASK_SECRET_KEY", &wrong)]);
    assert_eq!(t["status"], "failed", "{t:#}");
    let error = t["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("api_key")
            && error.contains("was encrypted with key")
            && error.contains("STASK_SECRET_KEY"),
        "{error}"
    );
    assert_eq!(stored(&home), before, "settings untouched");
    assert_eq!(std::fs::read_to_string(key_file(&home)).unwrap(), key_text);

    // Not a key at all: named, never echoed.
    let t = serve_task(&home, &[("STASK_SECRET_KEY", "not-a-key")]);
    let error = t["error"].as_str().unwrap_or_default();
    assert!(
        t["status"] == "failed" && error.contains("STASK_SECRET_KEY does not hold a key"),
        "{t:#}"
    );
    assert!(!error.contains("not-a-key"), "{error}");

    // The key file gone: the task fails saying to restore it; nothing is re-keyed.
    std::fs::rename(key_file(&home), home.scratch_dir().join("saved.key")).unwrap();
    let t = serve_task(&home, &[]);
    let error = t["error"].as_str().unwrap_or_default();
    assert!(
        t["status"] == "failed" && error.contains("no secret key") && error.contains("restore"),
        "{t:#}"
    );
    assert!(
        !key_file(&home).exists(),
        "no new key was made behind the operator's back"
    );
    // Setting a secret now is refused too (a new key would strand the stored ones).
    let out = run_stdin(
        &home,
        &["workers", "settings", "demo", "--secret", "api_key"],
        &[],
        "x\n",
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("restore"),
        "{}",
        describe("set", &out)
    );
    assert_eq!(stored(&home), before);

    // The right key back: the failed task runs again and completes.
    std::fs::rename(home.scratch_dir().join("saved.key"), key_file(&home)).unwrap();
    ok(&home, &["tasks", "retry", &t["id"].to_string()], &[]);
    ok(&home, &["tasks", "process"], &[]);
    assert_eq!(home.task(t["id"].as_i64().unwrap())["status"], "completed");
    assert_eq!(stored(&home), before);
}

#[test]
fn rotation_re_encrypts_every_secret_with_a_new_key() {
    let home = demo_home();
    set_secret(&home, SECRET, &[]);
    let old_key = std::fs::read_to_string(key_file(&home)).unwrap();
    let old_id = stored_key(&home)["$enc"]
        .as_str()
        .unwrap()
        .split(':')
        .nth(1)
        .unwrap()
        .to_owned();

    let report: Value =
        serde_json::from_str(&ok(&home, &["secrets", "rotate-key", "--json"], &[])).unwrap();
    assert_eq!(report["secrets"], 1, "{report:#}");
    assert_eq!(report["previous"], json!([old_id]));
    let new_key = std::fs::read_to_string(key_file(&home)).unwrap();
    assert_ne!(new_key, old_key);
    assert_eq!(new_key.lines().count(), 1, "only the new key is left");
    let enc = stored_key(&home)["$enc"].as_str().unwrap().to_owned();
    assert_eq!(enc.split(':').nth(1), report["key_id"].as_str());
    assert!(!stored(&home).contains(SECRET));

    // The secret survived: runs get it with the new key, and the old key opens nothing.
    assert_eq!(run_task(&home, &[])["status"], "completed");
    let t = serve_task(&home, &[("STASK_SECRET_KEY", old_key.trim())]);
    assert_eq!(t["status"], "failed", "{t:#}");

    // An interrupted rotation (the file lists a newer key before the one in use):
    // everything still opens, and rotating again finishes it.
    std::fs::write(key_file(&home), format!("{}\n{new_key}", other_key())).unwrap();
    assert_eq!(run_task(&home, &[])["status"], "completed");
    ok(&home, &["secrets", "rotate-key"], &[]);
    assert_eq!(
        std::fs::read_to_string(key_file(&home))
            .unwrap()
            .lines()
            .count(),
        1
    );
    assert_eq!(run_task(&home, &[])["status"], "completed");

    // A secret no key opens stops the rotation, changing nothing ...
    let mut settings: Value = serde_json::from_str(&stored(&home)).unwrap();
    settings["greeting"] = json!("kept");
    assert!(home
        .store()
        .set_worker_settings("demo", &settings.to_string())
        .unwrap());
    let mut foreign = settings.clone();
    foreign["api_key"] =
        json!({"$enc": "v1:0badc0de:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"});
    assert!(home
        .store()
        .set_worker_settings("demo", &foreign.to_string())
        .unwrap());
    let key_before = std::fs::read_to_string(key_file(&home)).unwrap();
    let out = run(&home, &["secrets", "rotate-key"], &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("0badc0de") && err.contains("--forget-unreadable"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(key_file(&home)).unwrap(),
        key_before
    );
    assert_eq!(stored(&home), foreign.to_string());
    // ... unless told to forget it (listed), keeping everything else.
    let out = ok(
        &home,
        &["secrets", "rotate-key", "--forget-unreadable"],
        &[],
    );
    assert!(out.contains("demo.api_key"), "{out}");
    let after: Value = serde_json::from_str(&stored(&home)).unwrap();
    assert_eq!(after, json!({"greeting": "kept"}));
}

#[test]
fn with_the_key_in_the_environment_rotation_takes_the_new_key_on_stdin() {
    let home = demo_home();
    std::fs::remove_file(key_file(&home)).unwrap();
    let k1 = other_key();
    let env = [("STASK_SECRET_KEY", k1.as_str())];
    set_secret(&home, SECRET, &env);
    assert!(
        !key_file(&home).exists(),
        "the variable wins; no file is made"
    );
    assert_eq!(run_task(&home, &env)["status"], "completed");

    let out = run(&home, &["secrets", "rotate-key"], &env);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--new-key-stdin"));

    let k2 = other_key();
    let out = run_stdin(
        &home,
        &["secrets", "rotate-key", "--new-key-stdin"],
        &env,
        &format!("{k2}\n"),
    );
    assert!(out.status.success(), "{}", describe("rotate", &out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("STASK_SECRET_KEY"));
    assert!(!all_output(&out).contains(&k2), "the key is not printed");
    assert_eq!(
        run_task(&home, &[("STASK_SECRET_KEY", &k2)])["status"],
        "completed"
    );
    assert_eq!(serve_task(&home, &env)["status"], "failed");
}

#[test]
fn plaintext_secrets_of_an_older_stask_are_encrypted_when_the_engine_starts() {
    let home = demo_home();
    // As an older stask stored them.
    let plain = json!({"api_key": SECRET, "greeting": "Hi"}).to_string();
    assert!(home.store().set_worker_settings("demo", &plain).unwrap());
    let t = run_task(&home, &[]);
    assert_eq!(t["status"], "completed", "{t:#}");
    let settings: Value = serde_json::from_str(&stored(&home)).unwrap();
    assert!(settings["api_key"]["$enc"].is_string(), "{settings}");
    assert_eq!(settings["greeting"], "Hi");
    assert_eq!(
        run_task(&home, &[])["status"],
        "completed",
        "the secret was kept"
    );

    // The same through `stask secrets encrypt`, for a home without a key yet: it gets
    // one, with a notice.
    std::fs::remove_file(key_file(&home)).unwrap();
    assert!(home.store().set_worker_settings("demo", &plain).unwrap());
    let out = run(&home, &["secrets", "encrypt"], &[]);
    assert!(out.status.success(), "{}", describe("encrypt", &out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("created a new secret key"));
    assert!(key_file(&home).exists());
    assert!(!stored(&home).contains(SECRET));
    assert_eq!(run_task(&home, &[])["status"], "completed");
}
