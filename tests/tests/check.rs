//! `stask check`: audits a home (modes and owners, plugin directory safety, the secret
//! key, database integrity, free disk space), prints each problem with its fix, exits 1
//! when something is wrong and 0 when all is well, and changes nothing.

use std::io::{Seek, SeekFrom, Write as _};
use std::os::unix::fs::PermissionsExt;
use std::process::{Output, Stdio};

use serde_json::{json, Value};
use stask_e2e::{chmod, describe, Home};

/// `stask check [--json]`, without an inherited `STASK_SECRET_KEY`.
fn check(home: &Home, json: bool) -> Output {
    let mut args = vec!["check"];
    if json {
        args.push("--json");
    }
    let mut cmd = home.command(&args, &[]);
    cmd.env_remove("STASK_SECRET_KEY");
    stask_e2e::run_with_timeout(&mut cmd, stask_e2e::COMMAND_TIMEOUT)
}

/// The JSON report, asserting the exit code (0 when `ok`, else 1).
fn report(home: &Home, ok: bool) -> Value {
    let out = check(home, true);
    assert_eq!(
        out.status.code(),
        Some(if ok { 0 } else { 1 }),
        "{}",
        describe("check --json", &out)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
    assert_eq!(r["ok"], ok, "{r:#}");
    r
}

/// The problems of check `name`.
fn problems<'a>(r: &'a Value, name: &str) -> Vec<&'a Value> {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == name && f["ok"] == false)
        .collect()
}

fn finding<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == name)
        .unwrap_or_else(|| panic!("no {name} finding: {r:#}"))
}

/// A home with the demo worker active and its secret set.
fn healthy_home() -> Home {
    let home = Home::new();
    home.install_active(&["stask_worker_demo"]);
    let mut cmd = home.command(&["workers", "settings", "demo", "--secret", "api_key"], &[]);
    cmd.env_remove("STASK_SECRET_KEY")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"s3cret\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe("set the secret", &out));
    home
}

#[test]
fn a_healthy_home_passes_with_a_readable_database() {
    let home = healthy_home();
    let out = check(&home, false);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", describe("check", &out));
    assert!(text.contains("All is well"), "{text}");
    let r = report(&home, true);
    assert_eq!(r["problems"], 0);
    let db = finding(&r, "database");
    assert!(
        db["message"]
            .as_str()
            .unwrap()
            .contains("readable and sound"),
        "{db:#}"
    );
    let key = finding(&r, "key");
    assert!(
        key["message"]
            .as_str()
            .unwrap()
            .contains("opens all 1 stored secret"),
        "{key:#}"
    );
    for name in ["home", "modes", "plugins", "disk"] {
        assert_eq!(finding(&r, name)["ok"], true, "{r:#}");
    }
}

#[test]
fn a_missing_key_is_reported_with_what_to_do() {
    let home = healthy_home();
    std::fs::remove_file(home.path().join("secret.key")).unwrap();
    let out = check(&home, false);
    assert_eq!(out.status.code(), Some(1), "{}", describe("check", &out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("FAIL") && text.contains("fix:"), "{text}");
    let r = report(&home, false);
    let p = problems(&r, "key");
    assert_eq!(p.len(), 1, "{r:#}");
    let message = p[0]["message"].as_str().unwrap();
    assert!(message.contains("there is no secret key"), "{message}");
    assert!(message.contains("1 stored secret"), "{message}");
    assert!(p[0]["fix"].as_str().unwrap().contains("restore"), "{p:#?}");
    assert!(
        !home.path().join("secret.key").exists(),
        "check creates nothing"
    );

    // A home without secrets and without a key: `stask init` makes one.
    let fresh = Home::new();
    std::fs::remove_file(fresh.path().join("secret.key")).unwrap();
    let r = report(&fresh, false);
    let p = problems(&r, "key");
    assert!(
        p[0]["fix"].as_str().unwrap().contains("stask init"),
        "{p:#?}"
    );
    fresh.ok(&["init"]);
    report(&fresh, true);
}

#[test]
fn a_world_writable_plugins_directory_is_reported_and_left_alone() {
    let home = healthy_home();
    chmod(&home.plugins_dir(), 0o777);
    let r = report(&home, false);
    let p = problems(&r, "plugins");
    assert_eq!(p.len(), 1, "reported once, not once per library: {r:#}");
    assert!(
        p[0]["message"]
            .as_str()
            .unwrap()
            .contains("writable by other users"),
        "{p:#?}"
    );
    assert!(
        p[0]["fix"].as_str().unwrap().contains("chmod go-w"),
        "{p:#?}"
    );
    let mode = std::fs::metadata(home.plugins_dir())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o777, "check changes nothing");
    chmod(&home.plugins_dir(), 0o755);
    report(&home, true);
}

#[test]
fn open_modes_plaintext_secrets_and_a_damaged_database_are_reported() {
    let home = healthy_home();
    chmod(home.path(), 0o755);
    let plain = json!({"api_key": "older-stask-plaintext"}).to_string();
    assert!(home.store().set_worker_settings("demo", &plain).unwrap());
    let r = report(&home, false);
    let modes = problems(&r, "modes");
    assert_eq!(modes.len(), 1, "{r:#}");
    assert!(modes[0]["fix"].as_str().unwrap().contains("chmod go-rwx"));
    let key = problems(&r, "key");
    assert!(
        key.iter()
            .any(|p| p["message"].as_str().unwrap().contains("demo.api_key")
                && p["fix"] == "stask secrets encrypt"),
        "{r:#}"
    );
    let out = check(&home, false);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("older-stask-plaintext"),
        "the value is never shown"
    );

    // Damage in the database's pages.
    let data = json!({"filler": "x".repeat(60_000)}).to_string();
    for _ in 0..3 {
        home.json(&[
            "tasks", "create", "demo", "echo", "--data", &data, "--count", "100",
        ]);
    }
    drop(home.store()); // the last connection checkpoints the write-ahead log
    let db = home.db_path();
    let len = std::fs::metadata(&db).unwrap().len();
    let mut f = std::fs::OpenOptions::new().write(true).open(&db).unwrap();
    f.seek(SeekFrom::Start((len / 2) & !4095)).unwrap();
    f.write_all(&[0xA5; 4096 * 16]).unwrap();
    drop(f);
    let r = report(&home, false);
    let p = problems(&r, "database");
    assert_eq!(p.len(), 1, "{r:#}");
    assert!(
        p[0]["message"].as_str().unwrap().contains("damaged"),
        "{p:#?}"
    );
    assert!(p[0]["fix"].as_str().unwrap().contains("backup"), "{p:#?}");
}

#[test]
fn a_missing_home_is_one_problem() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nothing-here");
    let out = stask_e2e::stask(&[
        std::ffi::OsStr::new("--home"),
        missing.as_os_str(),
        std::ffi::OsStr::new("check"),
        std::ffi::OsStr::new("--json"),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", describe("check", &out));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["problems"], 1, "{r:#}");
    assert!(r["findings"][0]["fix"].as_str().unwrap().contains("init"));
    assert!(!missing.exists(), "check creates no home");
}
