//! The home is private: whatever umask stask is started with, the home, its database
//! (with its WAL and shared-memory files), caches and scratch space are for its user
//! only; a home left readable by an older stask is tightened, with a warning; another
//! local user cannot read the database.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::json;
use stask_e2e::{bin, describe, Home};

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat '{}': {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Runs `stask --home HOME ARGS` from a shell whose umask is 022 (the usual default).
fn stask_under_umask_022(home: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("umask 022 && exec \"$0\" \"$@\"")
        .arg(bin())
        .arg("--home")
        .arg(home)
        .args(args)
        .env_remove("STASK_HOME")
        .env_remove("RUST_LOG");
    cmd.output().expect("run stask")
}

#[test]
fn a_home_made_under_umask_022_is_private_to_its_user() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    let out = stask_under_umask_022(&home, &["init"]);
    assert!(out.status.success(), "{}", describe("init", &out));
    std::fs::copy(
        stask_e2e::plugin_lib("stask_worker_demo"),
        home.join("plugins").join("libstask_worker_demo.so"),
    )
    .unwrap();
    for args in [
        &["workers", "discover", "--activate"][..],
        &["tasks", "create", "demo", "noop", "--data", "{}"],
        &["tasks", "process"],
    ] {
        let out = stask_under_umask_022(&home, args);
        assert!(out.status.success(), "{}", describe("stask", &out));
    }
    assert_eq!(mode(&home), 0o700, "the home");
    for name in ["stask.db", "stask.db-wal", "stask.db-shm"] {
        let path = home.join(name);
        if path.exists() {
            assert_eq!(mode(&path), 0o600, "{name}");
        }
    }
    assert_eq!(mode(&home.join("stask.db")), 0o600);
    for name in ["cache", "scratch"] {
        assert_eq!(mode(&home.join(name)), 0o700, "{name}");
    }
    for entry in std::fs::read_dir(home.join("cache")).unwrap().flatten() {
        assert_eq!(mode(&entry.path()) & 0o077, 0, "{}", entry.path().display());
    }
}

#[test]
fn a_readable_home_is_tightened_when_opened_and_the_change_is_reported() {
    let home = Home::new();
    home.install_active(&["stask_worker_demo"]);
    home.create_task("demo", "noop", &json!({}), &[]);
    let db = home.db_path();
    for (path, m) in [(home.path().to_path_buf(), 0o755), (db.clone(), 0o644)] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let out = home.run(&["tasks", "list"]);
    assert!(out.status.success(), "{}", describe("tasks list", &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("private") && stderr.contains("stask.db") && stderr.contains("0644"),
        "the change is reported: {stderr}"
    );
    assert_eq!(mode(home.path()), 0o700);
    assert_eq!(mode(&db), 0o600);
    // Once private, nothing more is said.
    let again = home.run(&["tasks", "list"]);
    assert!(String::from_utf8_lossy(&again.stderr).is_empty());
}

#[test]
fn another_local_user_cannot_read_the_database() {
    let home = Home::new();
    home.install_active(&["stask_worker_demo"]);
    home.create_task("demo", "noop", &json!({}), &[]);
    // The test's temporary directory (0700) must not be what stops the other user.
    let home_dir = home.path().to_path_buf();
    let temp = home_dir.parent().unwrap();
    std::fs::set_permissions(temp, std::fs::Permissions::from_mode(0o711)).unwrap();
    // Opening the home made it private again (0700): let others traverse it, to show
    // the database itself is private.
    std::fs::set_permissions(&home_dir, std::fs::Permissions::from_mode(0o711)).unwrap();
    let out = Command::new("setpriv")
        .args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "cat"])
        .arg(home.db_path())
        .output()
        .expect("run setpriv (util-linux) as root");
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Permission denied"),
        "user nobody read the database: {}",
        describe("cat as nobody", &out)
    );
}
