//! The plugin author's guide (`plugin-api/README.md`) as an executable walkthrough.
//!
//! Every ```` ```sh ```` block of the guide is run, in order, in one bash session
//! (`set -euo pipefail`) in an empty temporary directory, with the `stask` built from
//! this checkout first on `PATH` and a real `cargo` building the worker that
//! `stask new-worker` scaffolds. A command that fails fails the test, naming the block;
//! afterwards the test checks what the walkthrough claims: the tasks completed, the
//! settings and the secret reached the worker, the update was registered, the duplicate
//! library was skipped, and the guide shows the code `new-worker` really generates.
//!
//! Two things the reader does not see, both so the test can run anywhere:
//! `CARGO_TARGET_DIR` is this checkout's target directory (the guide's "build faster"
//! tip, so compiled dependencies are reused), and `STASK_BIND=127.0.0.1:0` keeps the
//! guide's `stask serve` off port 8080.
//!
//! Needs `cargo build --workspace` first (for the `stask` binary), like every e2e test.

use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stask_e2e::{bin, describe, run_with_timeout, scrub_stask_env, stask_command, target_dir};

/// The guide, as the test and a reader see it.
const GUIDE: &str = include_str!("../../plugin-api/README.md");

/// Generous: the walkthrough builds the worker twice (debug, then release), and a cold
/// release build of its dependencies on a busy two-core machine takes minutes.
const WALKTHROUGH_TIMEOUT: Duration = Duration::from_secs(20 * 60);

/// A fenced block of the guide: the line its fence opens on (1-based) and its text.
struct Block {
    line: usize,
    text: String,
}

/// The guide's ```` ```sh ```` blocks, in order.
fn sh_blocks(markdown: &str) -> Vec<Block> {
    let mut blocks = Vec::new();
    let mut open: Option<Block> = None;
    for (index, line) in markdown.lines().enumerate() {
        match &mut open {
            None if line.trim_end() == "```sh" => {
                open = Some(Block {
                    line: index + 1,
                    text: String::new(),
                })
            }
            None => {}
            Some(_) if line.trim_end() == "```" => blocks.push(open.take().expect("open block")),
            Some(block) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "the guide ends inside a ```sh block");
    blocks
}

/// The walkthrough as one bash script: each block announced on stderr with its number,
/// its line in the guide and the time, so a failure names its block and the test can
/// time the steps.
fn script(blocks: &[Block]) -> String {
    let mut script = String::from("set -euo pipefail\nset -x\n");
    for (n, block) in blocks.iter().enumerate() {
        script.push_str(&format!(
            "printf '::guide-block %s %s %s\\n' {n} {} \"$(date +%s%N)\" >&2\n",
            block.line
        ));
        script.push_str(&block.text);
    }
    script.push_str("printf '::guide-done %s\\n' \"$(date +%s%N)\" >&2\n");
    script
}

/// `(block number, nanoseconds)` of every marker the script printed; the end is
/// `usize::MAX`.
fn markers(stderr: &str) -> Vec<(usize, u128)> {
    stderr
        .lines()
        .filter_map(|line| {
            if let Some(rest) = line.strip_prefix("::guide-block ") {
                let mut fields = rest.split(' ');
                let n = fields.next()?.parse().ok()?;
                let _line = fields.next()?;
                Some((n, fields.next()?.parse().ok()?))
            } else {
                let rest = line.strip_prefix("::guide-done ")?;
                Some((usize::MAX, rest.parse().ok()?))
            }
        })
        .collect()
}

/// Runs `stask --home HOME ARGS --json` and parses its output.
fn stask_json(home: &Path, args: &[&str]) -> Value {
    let mut cmd = stask_command();
    cmd.arg("--home").arg(home).args(args).arg("--json");
    let out = run_with_timeout(&mut cmd, stask_e2e::COMMAND_TIMEOUT);
    let what = format!("stask {}", args.join(" "));
    assert!(out.status.success(), "{}", describe(&what, &out));
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e})\n{}", describe(&what, &out)))
}

/// Runs the script in its own process group and ends whatever it left running (the
/// guide's `stask serve`, if the script stopped before the block that stops it).
fn run_walkthrough(work: &Path, bin_dir: &Path, script: &str) -> Output {
    let script_path = work.join("..").join("walkthrough.sh");
    std::fs::write(&script_path, script).expect("write the walkthrough script");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut search = std::ffi::OsString::from(bin_dir);
    search.push(":");
    search.push(path);
    let mut cmd = Command::new("bash");
    scrub_stask_env(&mut cmd)
        .arg(&script_path)
        .current_dir(work)
        .env("PATH", search)
        .env("CARGO_TARGET_DIR", cargo_target_dir())
        .env("STASK_BIND", "127.0.0.1:0")
        .process_group(0);
    // What `cargo test` sets for this test binary describes this crate, not the
    // worker's build.
    for (key, _) in std::env::vars_os() {
        let key = key.to_string_lossy().into_owned();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|prefix| key.starts_with(prefix))
        {
            cmd.env_remove(key);
        }
    }
    let bg = stask_e2e::Background::start(&mut cmd);
    let group = bg.pid() as libc::pid_t;
    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        bg.wait(WALKTHROUGH_TIMEOUT)
    }));
    // SAFETY: signals the process group this test created (its leader was the script);
    // no memory is involved. ESRCH (nothing left) is fine.
    unsafe {
        libc::kill(-group, libc::SIGKILL);
    }
    out.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
}

/// This checkout's target directory (the parent of `target/debug`), shared with the
/// worker's build as the guide's tip suggests.
fn cargo_target_dir() -> PathBuf {
    target_dir()
        .parent()
        .expect("target/debug has a parent")
        .to_path_buf()
}

#[test]
fn guide_walkthrough_runs_from_new_worker_to_completed_tasks() {
    let blocks = sh_blocks(GUIDE);
    assert!(
        blocks.len() >= 12,
        "expected the whole walkthrough as ```sh blocks, found {}",
        blocks.len()
    );
    let temp = tempfile::Builder::new()
        .prefix("stask-guide-")
        .tempdir()
        .expect("temporary directory");
    let work = temp.path().join("work");
    let bin_dir = temp.path().join("bin");
    std::fs::create_dir(&work).unwrap();
    std::fs::create_dir(&bin_dir).unwrap();
    std::os::unix::fs::symlink(bin(), bin_dir.join("stask")).unwrap();

    let script = script(&blocks);
    let out = run_walkthrough(&work, &bin_dir, &script);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let marks = markers(&stderr);
    if !out.status.success() || marks.last().map(|m| m.0) != Some(usize::MAX) {
        let failed = marks
            .iter()
            .rev()
            .find(|m| m.0 != usize::MAX)
            .map(|m| m.0)
            .unwrap_or(0);
        panic!(
            "the guide's ```sh block {failed} (plugin-api/README.md line {}) failed:\n{}\n{}",
            blocks[failed].line,
            blocks[failed].text,
            describe("bash walkthrough.sh", &out)
        );
    }

    // Timing, reported and not asserted: from `stask new-worker` to the end of the
    // block that runs the first task.
    let new_worker = blocks
        .iter()
        .position(|b| b.text.contains("stask new-worker"))
        .expect("a block runs stask new-worker");
    let first_run = new_worker
        + blocks[new_worker..]
            .iter()
            .position(|b| b.text.contains("stask tasks execute"))
            .expect("a block runs a task");
    let at = |n: usize| marks.iter().find(|m| m.0 == n).map(|m| m.1);
    if let (Some(start), Some(end)) = (at(new_worker), at(first_run + 1)) {
        eprintln!(
            "guide: stask new-worker to the first completed task took {:.1} s; the whole walkthrough {:.1} s",
            (end - start) as f64 / 1e9,
            (marks.last().unwrap().1 - marks[0].1) as f64 / 1e9
        );
    }

    // The guide shows the code new-worker really generates.
    let crate_dir = work.join("my-worker");
    let generated = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert!(
        GUIDE.contains(&format!("```rust\n{generated}```\n")),
        "plugin-api/README.md step 2 no longer shows the src/lib.rs that `stask new-worker my-worker` generates; paste this in:\n{generated}"
    );
    assert!(crate_dir.join("README.md").is_file());

    let home = work.join("stask-home");
    let tasks = stask_json(&home, &["tasks", "list", "--worker", "my-worker"]);
    let tasks = tasks.as_array().expect("a list of tasks");
    // Oldest first: the first run, the cancelled one, the service's, the one after the
    // settings, the update's.
    let by_age: Vec<&Value> = tasks.iter().rev().collect();
    let statuses: Vec<&str> = by_age
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        statuses,
        [
            "completed",
            "cancelled",
            "completed",
            "completed",
            "completed"
        ],
        "{tasks:#?}"
    );
    let by_age: Vec<&Value> = by_age
        .into_iter()
        .filter(|t| t["status"] == "completed")
        .collect();
    assert_eq!(by_age[0]["result"]["greeted"], "Ada");
    assert_eq!(by_age[0]["result"]["times"], 5);
    assert_eq!(by_age[0]["result"]["api_key_set"], false);
    assert_eq!(by_age[1]["result"]["greeted"], "Grace");
    let after_settings = stask_json(&home, &["tasks", "show", &by_age[2]["id"].to_string()]);
    assert_eq!(
        after_settings["result"]["api_key_set"], true,
        "{after_settings:#}"
    );
    assert!(
        after_settings.to_string().contains("Hi, Ada!"),
        "the greeting setting reached the worker: {after_settings:#}"
    );
    assert_eq!(by_age[3]["result"]["greeted"], "Linus");
    assert!(
        stdout.contains("Hello, Grace!"),
        "downloading greetings.txt printed it:\n{stdout}"
    );

    // The secret was stored, and never printed by any command of the walkthrough.
    assert!(!stdout.contains("example-key-123"), "{stdout}");
    let settings = stask_json(&home, &["workers", "settings", "my-worker"]);
    assert!(
        !settings.to_string().contains("example-key-123"),
        "{settings:#}"
    );

    let worker = stask_json(&home, &["workers", "show", "my-worker"]);
    assert_eq!(worker["version"], "0.2.0", "the update was registered");
    assert_eq!(worker["active"], true);
    assert_eq!(worker["schedule"]["kind"], "manual", "{worker:#}");
    assert!(
        stdout.contains("already registered from"),
        "troubleshooting shows the duplicate library skipped:\n{stdout}"
    );
    let listed = stask_json(&home, &["workers", "list"]);
    assert_eq!(
        listed.as_array().map(Vec::len),
        Some(1),
        "the copy was never registered: {listed:#}"
    );
}

#[test]
fn guide_has_no_shell_commands_outside_sh_blocks() {
    // The test above runs ```sh blocks only; a command in another kind of block would
    // go untested.
    for fence in [
        "```bash",
        "```shell",
        "```console",
        "```zsh",
        "```shell-session",
    ] {
        assert!(
            !GUIDE.contains(fence),
            "plugin-api/README.md has a {fence} block: use ```sh, which the walkthrough test runs, or ```text for output"
        );
    }
    let first = &sh_blocks(GUIDE)[0];
    assert!(
        first.text.contains("STASK_HOME"),
        "the walkthrough starts by choosing its home: {}",
        first.text
    );
}

/// `stask new-worker` in `dir`, with no home anywhere (it needs none).
fn new_worker(dir: &Path, args: &[&str]) -> Output {
    let mut cmd = stask_command();
    cmd.current_dir(dir)
        .env("STASK_HOME", dir.join("no-such-home"))
        .arg("new-worker")
        .args(args);
    run_with_timeout(&mut cmd, stask_e2e::COMMAND_TIMEOUT)
}

#[test]
fn new_worker_needs_no_home_and_reports_what_it_created() {
    let temp = tempfile::tempdir().unwrap();
    let out = new_worker(temp.path(), &["report-worker", "--json"]);
    assert!(out.status.success(), "{}", describe("new-worker", &out));
    let created: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(created["identifier"], "report-worker");
    assert_eq!(created["library_file"], "libreport_worker.so");
    for file in created["files"].as_array().unwrap() {
        let file = file.as_str().unwrap();
        assert!(
            temp.path().join("report-worker").join(file).is_file(),
            "{file}"
        );
    }
    assert!(!temp.path().join("no-such-home").exists());
    let manifest = std::fs::read_to_string(temp.path().join("report-worker/Cargo.toml")).unwrap();
    let sdk = created["sdk"].as_str().unwrap();
    assert!(
        manifest.contains(&format!("path = \"{sdk}\"")),
        "{manifest}"
    );
}

#[test]
fn new_worker_refuses_bad_names_existing_directories_and_a_missing_sdk_writing_nothing() {
    let temp = tempfile::tempdir().unwrap();
    let taken = temp.path().join("taken");
    std::fs::create_dir(&taken).unwrap();
    std::fs::write(taken.join("notes.txt"), "mine").unwrap();
    let not_sdk = temp.path().join("not-sdk");
    std::fs::create_dir(&not_sdk).unwrap();

    for (args, says) in [
        (vec!["My Worker"], "lowercase"),
        (vec!["fn"], "Rust keyword"),
        (vec!["taken"], "not empty"),
        (vec!["fresh", "--dir", "taken"], "not empty"),
        (vec!["fresh", "--sdk", "not-sdk"], "--sdk"),
        (vec!["fresh", "--sdk", "missing"], "--sdk"),
    ] {
        let out = new_worker(temp.path(), &args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "{}",
            describe(&args.join(" "), &out)
        );
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let mut left: Vec<String> = std::fs::read_dir(temp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["not-sdk", "taken"], "nothing was created");
    let kept: Vec<_> = std::fs::read_dir(&taken).unwrap().collect();
    assert_eq!(kept.len(), 1);
    assert_eq!(
        std::fs::read_to_string(taken.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(std::fs::read_dir(&not_sdk).unwrap().count(), 0);
}
