//! Paths and inputs the CLI must handle: a read-only home (reads work, changes say the
//! home is read-only), home and plugins paths that are not UTF-8 (refused at `init`
//! and discovery), a worker whose library is gone (`tasks create` refuses it, `rescan`
//! tells "permission denied" from "missing"), a damaged private copy of a library in
//! `cache/` (replaced before a runner starts from it), and an empty `STASK_HOME`.
//!
//! Permissions do not stop root: when the tests run as root, the commands that must
//! not be able to write run without the capabilities that bypass file permissions
//! (`setpriv --bounding-set=-dac_override,...`), as an ordinary owner would.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use stask_e2e::{
    chmod, copy_library, describe, identifiers, plugin_file_name, plugin_lib, run_with_timeout,
    stask_command, Home, COMMAND_TIMEOUT,
};

const DEMO: &str = "stask_worker_demo";
const PRODUCT: &str = "stask_worker_product";

fn sha256_of(path: &Path) -> String {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("read '{}': {e}", path.display()));
    hex::encode(Sha256::digest(bytes))
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// `cmd` as run by a user whom file permissions bind: unchanged for an ordinary user;
/// for root, without the capabilities that override permissions.
fn bound_by_permissions(cmd: Command) -> Command {
    if !is_root() {
        return cmd;
    }
    let mut wrapped = Command::new("setpriv");
    wrapped
        .arg("--bounding-set=-dac_override,-dac_read_search,-fowner")
        .arg("--")
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    wrapped
}

/// Runs `stask --home HOME ARGS` bound by file permissions.
fn run_bound(home: &Home, args: &[&str]) -> Output {
    run_with_timeout(
        &mut bound_by_permissions(home.command(args, &[])),
        COMMAND_TIMEOUT,
    )
}

fn ok_bound(home: &Home, args: &[&str]) -> String {
    let out = run_bound(home, args);
    assert!(
        out.status.success(),
        "expected success\n{}",
        describe(&args.join(" "), &out)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

fn json_bound(home: &Home, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let text = ok_bound(home, &all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {text}", all.join(" ")))
}

fn fail_bound(home: &Home, args: &[&str]) -> String {
    let out = run_bound(home, args);
    assert!(
        !out.status.success() && out.status.code().is_some(),
        "expected a non-zero exit code\n{}",
        describe(&args.join(" "), &out)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file and directory under `root` (relative), sorted.
fn tree(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().to_path_buf());
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Takes write permission away from everything under `root` (as `chmod -R a-w`) and
/// gives it back to the owner when dropped, so the temporary home can be removed.
struct WriteProtected(PathBuf);

impl WriteProtected {
    fn new(root: &Path) -> WriteProtected {
        set_write(root, false);
        WriteProtected(root.to_path_buf())
    }
}

impl Drop for WriteProtected {
    fn drop(&mut self) {
        set_write(&self.0, true);
    }
}

fn set_write(path: &Path, writable: bool) {
    let meta = std::fs::symlink_metadata(path).unwrap();
    if meta.file_type().is_symlink() {
        return;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap().flatten() {
            set_write(&entry.path(), writable);
        }
    }
    let mode = meta.permissions().mode() & 0o7777;
    chmod(
        path,
        if writable {
            mode | 0o200
        } else {
            mode & !0o222
        },
    );
}

/// A home with the demo worker active and one completed task (whose id is returned).
fn home_with_a_completed_task() -> (Home, i64) {
    let home = Home::new();
    home.install_active(&[DEMO]);
    let id = home.create_task("demo", "noop", &json!({}), &[]);
    home.ok(&["tasks", "process"]);
    assert_eq!(home.task(id)["status"], "completed");
    (home, id)
}

/// The read commands answer on a home that cannot be written.
fn reads_work(home: &Home, id: i64) {
    let tasks = json_bound(home, &["tasks", "list"]);
    assert_eq!(tasks[0]["id"], id, "{tasks:#}");
    let task = json_bound(home, &["tasks", "show", &id.to_string()]);
    assert_eq!(task["status"], "completed", "{task:#}");
    let log = ok_bound(home, &["tasks", "logs", &id.to_string(), "--raw"]);
    assert!(log.contains("Task completed successfully"), "{log}");
    let workers = json_bound(home, &["workers", "list"]);
    assert_eq!(identifiers(&workers), ["demo"]);
    json_bound(home, &["workers", "show", "demo"]);
    let stats = json_bound(home, &["stats"]);
    assert_eq!(stats["overview"]["total"], 1, "{stats:#}");
    let config = json_bound(home, &["config"]);
    assert!(config["plugins_dir"].is_object(), "{config:#}");
}

/// The commands that change the home fail, saying it is read-only.
fn changes_say_read_only(home: &Home) {
    for args in [
        &["tasks", "create", "demo", "noop", "--data", "{}"][..],
        &["workers", "deactivate", "demo"],
        &["tasks", "process"],
        &["tasks", "clean", "--older-than", "0s", "--include-failed"],
    ] {
        let err = fail_bound(home, args);
        assert!(
            err.contains("read-only") && err.contains("writable"),
            "{}: {err}",
            args.join(" ")
        );
    }
}

#[test]
fn a_read_only_home_answers_reads_and_refuses_changes_saying_it_is_read_only() {
    let (home, id) = home_with_a_completed_task();
    let db = home.db_path();
    let before = sha256_of(&db);
    let files = tree(home.path());
    {
        let _protected = WriteProtected::new(home.path());
        reads_work(&home, id);
        changes_say_read_only(&home);
        // Nothing was written: no new file (no -wal or -shm), the database unchanged.
        assert_eq!(tree(home.path()), files);
        assert_eq!(sha256_of(&db), before);
    }
    // Writable again, the home works as before.
    home.create_task("demo", "noop", &json!({}), &[]);
}

#[test]
fn a_read_only_database_in_a_writable_directory_is_read_and_not_changed() {
    let (home, id) = home_with_a_completed_task();
    let db = home.db_path();
    let before = sha256_of(&db);
    chmod(&db, 0o400);
    reads_work(&home, id);
    changes_say_read_only(&home);
    assert_eq!(sha256_of(&db), before);
    chmod(&db, 0o600);
}

/// Runs `stask --home MOUNT ARGS` where MOUNT is `home` bind-mounted read-only, in a
/// mount namespace of its own; `None` when this machine does not allow that (not
/// root, or no permission to make mount namespaces).
fn on_read_only_mount(home: &Home, args: &[&str]) -> Option<Output> {
    if !is_root() {
        return None;
    }
    let probe = Command::new("unshare").args(["-m", "true"]).output().ok()?;
    if !probe.status.success() {
        return None;
    }
    let mount = home.scratch_dir().join("mnt");
    std::fs::create_dir_all(&mount).unwrap();
    let mut cmd = stask_command();
    cmd.arg("--home").arg(&mount).args(args);
    let mut wrapped = Command::new("unshare");
    wrapped
        .args(["-m", "sh", "-c"])
        .arg(r#"mount --bind "$1" "$2" && mount -o remount,bind,ro "$2" && shift 2 && exec "$@""#)
        .arg("sh")
        .arg(home.path())
        .arg(&mount)
        .arg(cmd.get_program())
        .args(cmd.get_args());
    for (key, value) in cmd.get_envs() {
        match value {
            Some(v) => wrapped.env(key, v),
            None => wrapped.env_remove(key),
        };
    }
    Some(run_with_timeout(&mut wrapped, COMMAND_TIMEOUT))
}

#[test]
fn a_home_on_a_read_only_file_system_is_read_and_a_readable_database_only_warned_about() {
    let (home, id) = home_with_a_completed_task();
    // Left readable by others: it cannot be made private on a read-only file system,
    // and refusing to read it would protect nothing.
    chmod(&home.db_path(), 0o644);
    let Some(out) = on_read_only_mount(&home, &["tasks", "show", &id.to_string(), "--json"]) else {
        eprintln!("skipped: read-only bind mounts need root and mount namespaces");
        return;
    };
    assert!(out.status.success(), "{}", describe("tasks show", &out));
    let task: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(task["status"], "completed");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("read-only file system"), "{stderr}");
    let out = on_read_only_mount(&home, &["tasks", "create", "demo", "noop"]).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("read-only"),
        "{}",
        describe("tasks create", &out)
    );
    chmod(&home.db_path(), 0o600);
}

// ---------------------------------------------------------------------------------
// Paths that are not UTF-8
// ---------------------------------------------------------------------------------

/// `dir/NAME` where NAME ends in a byte that is not UTF-8.
fn not_utf8(dir: &Path, name: &str) -> PathBuf {
    let mut bytes = name.as_bytes().to_vec();
    bytes.extend_from_slice(b"-\xff\xfe");
    dir.join(OsStr::from_bytes(&bytes))
}

fn stask_at(home: &Path, args: &[&str]) -> Output {
    let mut cmd = stask_command();
    cmd.arg("--home").arg(home).args(args);
    run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
}

#[test]
fn init_refuses_a_home_whose_path_is_not_utf8_and_creates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let home = not_utf8(dir.path(), "home");
    let out = stask_at(&home, &["init"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not valid UTF-8") && err.contains("home"),
        "{}",
        describe("init", &out)
    );
    assert!(!home.exists());
    // Nor a plugins directory that is not UTF-8.
    let plugins = not_utf8(dir.path(), "plugins");
    let mut cmd = stask_command();
    cmd.arg("--home")
        .arg(dir.path().join("home"))
        .arg("--plugins-dir")
        .arg(&plugins)
        .arg("init");
    let out = run_with_timeout(&mut cmd, COMMAND_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not valid UTF-8") && err.contains("plugins"),
        "{}",
        describe("init --plugins-dir", &out)
    );
    assert!(!plugins.exists());
}

#[test]
fn discovery_refuses_a_home_moved_to_a_path_that_is_not_utf8() {
    let dir = tempfile::tempdir().unwrap();
    let made = dir.path().join("home");
    let out = stask_at(&made, &["init"]);
    assert!(out.status.success(), "{}", describe("init", &out));
    chmod(&made.join("plugins"), 0o755);
    copy_library(
        &plugin_lib(DEMO),
        &made.join("plugins").join(plugin_file_name(DEMO)),
    );
    let moved = not_utf8(dir.path(), "home");
    std::fs::rename(&made, &moved).unwrap();
    let out = stask_at(&moved, &["workers", "discover", "--activate"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("not valid UTF-8") && err.contains("plugins"),
        "{}",
        describe("workers discover", &out)
    );
    // Nothing registered; the home itself still opens.
    let out = stask_at(&moved, &["workers", "list", "--json"]);
    assert!(out.status.success(), "{}", describe("workers list", &out));
    let listed: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(listed, json!([]));
}

#[test]
fn discovery_skips_a_library_whose_file_name_is_not_utf8_naming_it() {
    let home = Home::new();
    let good = home.install(PRODUCT);
    let odd = not_utf8(&home.plugins_dir(), "libdemo");
    let mut odd_so = odd.into_os_string();
    odd_so.push(".so");
    let odd = PathBuf::from(odd_so);
    copy_library(&plugin_lib(DEMO), &odd);
    let report = home.json(&["workers", "discover"]);
    assert_eq!(
        identifiers(&report["registered"]),
        ["product"],
        "{report:#}"
    );
    let skipped = &report["skipped"][0];
    assert_eq!(skipped["kind"], "path-not-utf8", "{report:#}");
    assert_eq!(skipped["path"], odd.display().to_string());
    assert!(
        skipped["reason"].as_str().unwrap().contains("UTF-8"),
        "{report:#}"
    );
    assert_eq!(
        home.json(&["workers", "show", "product"])["library"]["path"],
        good.display().to_string()
    );
}

#[test]
fn a_plugins_directory_that_is_not_utf8_is_refused_from_the_flag_and_the_variable() {
    let home = Home::new();
    let plugins = not_utf8(&home.scratch_dir(), "plugins");
    std::fs::create_dir(&plugins).unwrap();
    chmod(&plugins, 0o755);
    copy_library(&plugin_lib(DEMO), &plugins.join(plugin_file_name(DEMO)));
    let mut flag = home.command(&["workers", "discover"], &[]);
    flag.arg("--plugins-dir").arg(&plugins);
    let mut variable = home.command(&["workers", "discover"], &[]);
    variable.env("STASK_PLUGINS_DIR", &plugins);
    for (named, mut cmd) in [("--plugins-dir", flag), ("STASK_PLUGINS_DIR", variable)] {
        let out = run_with_timeout(&mut cmd, COMMAND_TIMEOUT);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && err.contains("not valid UTF-8") && err.contains(named),
            "{}",
            describe(named, &out)
        );
    }
    assert_eq!(home.json(&["workers", "list"]), json!([]));
}

// ---------------------------------------------------------------------------------
// Libraries that are gone or cannot be read
// ---------------------------------------------------------------------------------

#[test]
fn tasks_are_refused_for_a_worker_whose_library_is_gone() {
    let home = Home::new();
    home.install_active(&[DEMO]);
    let lib = home.plugins_dir().join(plugin_file_name(DEMO));
    std::fs::remove_file(&lib).unwrap();
    let err = home.fail(&["tasks", "create", "demo", "noop", "--data", "{}"]);
    assert!(err.contains(&lib.display().to_string()), "{err}");
    assert!(err.contains("Restore"), "{err}");
    assert!(
        err.lines()
            .any(|l| l.starts_with("hint:") && l.contains("stask workers clean-orphaned")),
        "{err}"
    );
    let err = home.fail(&["tasks", "create", "demo", "noop", "--json"]);
    let parsed: Value = serde_json::from_str(err.trim()).unwrap();
    assert!(parsed["error"]
        .as_str()
        .unwrap()
        .contains("no longer exists"));
    assert_eq!(home.json(&["tasks", "list"]), json!([]));
    // Restored, it takes tasks again.
    copy_library(&plugin_lib(DEMO), &lib);
    home.create_task("demo", "noop", &json!({}), &[]);
}

#[test]
fn rescan_tells_a_library_it_cannot_read_from_a_missing_one() {
    let home = Home::new();
    let demo = home.install_as(DEMO, &format!("sub/{}", plugin_file_name(DEMO)));
    let product = home.install(PRODUCT);
    let report = home.json(&["workers", "discover"]);
    assert_eq!(identifiers(&report["registered"]), ["demo", "product"]);
    std::fs::remove_file(&product).unwrap();

    // The directory holding it cannot be searched.
    let sub = demo.parent().unwrap();
    chmod(sub, 0o000);
    let report = json_bound(&home, &["workers", "rescan"]);
    chmod(sub, 0o755);
    assert_eq!(report["missing"], json!(["product"]), "{report:#}");
    let failed = &report["failed"][0];
    assert_eq!(failed["path"], demo.display().to_string(), "{report:#}");
    assert_eq!(failed["kind"], "permission-denied", "{report:#}");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .to_lowercase()
            .contains("permission denied"),
        "{report:#}"
    );

    // The file itself cannot be read (its size and time unchanged).
    chmod(&demo, 0o000);
    let report = json_bound(&home, &["workers", "rescan"]);
    chmod(&demo, 0o755);
    assert_eq!(report["missing"], json!(["product"]), "{report:#}");
    assert_eq!(
        report["failed"][0]["kind"], "permission-denied",
        "{report:#}"
    );
    assert_eq!(report["unchanged"], 0, "{report:#}");
    let text = ok_bound(&home, &["workers", "rescan"]);
    assert!(
        text.contains("1 unchanged") && text.contains("1 missing"),
        "{text}"
    );
}

// ---------------------------------------------------------------------------------
// The library cache
// ---------------------------------------------------------------------------------

/// The private copies in `HOME/cache/`.
fn cached_copies(home: &Home) -> Vec<PathBuf> {
    let mut copies: Vec<PathBuf> = std::fs::read_dir(home.path().join("cache"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "so"))
        .collect();
    copies.sort();
    copies
}

#[test]
fn a_truncated_copy_in_the_cache_is_replaced_from_the_plugin_file_before_a_runner_uses_it() {
    let home = Home::new();
    home.install_active(&[DEMO]);
    let lib = home.plugins_dir().join(plugin_file_name(DEMO));
    let first = home.create_task("demo", "noop", &json!({}), &["--max-attempts", "1"]);
    home.ok(&["tasks", "process"]);
    assert_eq!(home.task(first)["status"], "completed");
    let copies = cached_copies(&home);
    assert_eq!(copies.len(), 1, "{copies:?}");
    let copy = &copies[0];
    let sha = sha256_of(&lib);
    assert_eq!(sha256_of(copy), sha);

    // Truncated, as a crash or a full disk can leave it: a runner mapping it dies of
    // SIGBUS while loading it.
    let size = std::fs::metadata(copy).unwrap().len();
    chmod(copy, 0o600);
    std::fs::OpenOptions::new()
        .write(true)
        .open(copy)
        .unwrap()
        .set_len(size / 64)
        .unwrap();
    chmod(copy, 0o500);

    // Every later run (each `tasks process` is a new process) runs from a sound copy.
    for _ in 0..2 {
        let id = home.create_task("demo", "noop", &json!({}), &["--max-attempts", "1"]);
        home.ok(&["tasks", "process"]);
        let task = home.task(id);
        assert_eq!(task["status"], "completed", "{task:#}");
    }
    assert_eq!(cached_copies(&home), copies);
    assert_eq!(std::fs::metadata(copy).unwrap().len(), size);
    assert_eq!(sha256_of(copy), sha);
    assert_eq!(
        std::fs::metadata(copy).unwrap().permissions().mode() & 0o777,
        0o500
    );
}

// ---------------------------------------------------------------------------------
// Choosing the home
// ---------------------------------------------------------------------------------

#[test]
fn an_empty_stask_home_is_refused_naming_the_variable_and_an_empty_flag_naming_the_flag() {
    let mut cmd = stask_command();
    cmd.env("STASK_HOME", "").args(["tasks", "list"]);
    let out = run_with_timeout(&mut cmd, COMMAND_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("STASK_HOME") && !err.contains("--home"),
        "{}",
        describe("STASK_HOME= stask tasks list", &out)
    );
    assert!(err.contains("empty"), "{err}");

    let mut cmd = stask_command();
    cmd.args(["--home", "", "tasks", "list"]);
    let out = run_with_timeout(&mut cmd, COMMAND_TIMEOUT);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("--home") && !err.contains("STASK_HOME="),
        "{}",
        describe("stask --home '' tasks list", &out)
    );

    // A flag still wins over the variable, even an empty one.
    let home = Home::new();
    let mut cmd = home.command(&["tasks", "list", "--json"], &[("STASK_HOME", "")]);
    let out = run_with_timeout(&mut cmd, COMMAND_TIMEOUT);
    assert!(
        out.status.success(),
        "{}",
        describe("STASK_HOME= stask --home H", &out)
    );
}
