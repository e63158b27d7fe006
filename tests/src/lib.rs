//! Helpers for the end-to-end tests: drive the real `stask` binary against real plugin
//! libraries built by `cargo build --workspace`.
//!
//! * [`bin`] and [`plugin_lib`] locate build outputs (see [`target_dir`]).
//! * [`Home`] is a throw-away stask home in a temporary directory, created with
//!   `stask --home DIR init`, with helpers to install libraries and run commands.
//! * Every child process runs under a time limit ([`COMMAND_TIMEOUT`]), so a hung
//!   command fails its test instead of hanging the whole suite.
//!
//! ```no_run
//! use stask_e2e::Home;
//!
//! let home = Home::new();
//! home.install("stask_worker_demo");
//! let report = home.json(&["workers", "discover"]);
//! assert_eq!(report["registered"][0]["identifier"], "demo");
//! ```
//!
//! The tests do not build anything themselves: `scripts/test.sh` (or a manual
//! `cargo build --workspace`) must have built the binary and the plugin libraries.

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any single command may run before it is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables that would change what `stask` does behind a test's back.
const SCRUBBED_ENV: &[&str] = &["STASK_HOME", "STASK_PLUGINS_DIR", "RUST_LOG"];

/// The build output directory (`target/debug`).
///
/// `STASK_TARGET_DIR` when set; otherwise derived from the running test executable,
/// which lives in `target/debug/deps/`.
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("STASK_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("cannot locate the test executable");
    exe.parent()
        .and_then(Path::parent)
        .unwrap_or_else(|| panic!("unexpected test executable location '{}'", exe.display()))
        .to_path_buf()
}

fn built(path: PathBuf) -> PathBuf {
    if !path.is_file() {
        panic!(
            "'{}' does not exist: run `cargo build --workspace` first (scripts/test.sh does \
             that), or set STASK_TARGET_DIR to the directory holding the build outputs",
            path.display()
        );
    }
    path
}

/// The `stask` binary.
pub fn bin() -> PathBuf {
    built(target_dir().join(format!("stask{}", std::env::consts::EXE_SUFFIX)))
}

/// The file name a crate's library gets on this platform: `stask_worker_demo` ->
/// `libstask_worker_demo.so`.
pub fn plugin_file_name(crate_lib_name: &str) -> String {
    format!(
        "{}{crate_lib_name}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    )
}

/// A built plugin library, by the crate's library name (`stask_worker_demo`,
/// `stask_fixture_crash_on_load`, ...).
pub fn plugin_lib(crate_lib_name: &str) -> PathBuf {
    built(target_dir().join(plugin_file_name(crate_lib_name)))
}

/// A `Command` for the stask binary with the environment variables that select a home
/// or plugins directory (and `RUST_LOG`) removed.
pub fn stask_command() -> Command {
    let mut cmd = Command::new(bin());
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}

/// Runs `cmd` with stdin closed and output captured, killing it (and failing the
/// test) when it takes longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stdout.read_to_end(&mut buf);
        buf
    });
    let err_reader = std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = stderr.read_to_end(&mut buf);
        buf
    });
    let started = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if started.elapsed() > timeout => {
                let _ = child.kill();
                let _ = child.wait();
                // The readers finish once every holder of the pipes is gone; a
                // grandchild could keep them open, so do not wait for them.
                panic!(
                    "{shown} did not finish within {} s and was killed",
                    timeout.as_secs()
                );
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => panic!("waiting for {shown} failed: {e}"),
        }
    };
    Output {
        status,
        stdout: out_reader.join().unwrap_or_default(),
        stderr: err_reader.join().unwrap_or_default(),
    }
}

/// Runs the stask binary with `args` exactly as given (no `--home` added), under
/// [`COMMAND_TIMEOUT`]. For tests about the home itself; most tests use [`Home::run`].
pub fn stask<S: AsRef<OsStr>>(args: &[S]) -> Output {
    run_with_timeout(stask_command().args(args), COMMAND_TIMEOUT)
}

/// A readable account of a finished command, for assertion messages.
pub fn describe(what: &str, out: &Output) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "command: {what}");
    let _ = writeln!(s, "status:  {}", out.status);
    let _ = writeln!(
        s,
        "--- stdout ---\n{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let _ = write!(
        s,
        "--- stderr ---\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s
}

/// Sets a file's or directory's permission bits.
pub fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("chmod {mode:o} '{}': {e}", path.display()));
}

/// A temporary stask home, deleted when dropped.
///
/// Layout: the temporary directory holds `home/` (the stask home, created with
/// `stask --home DIR init`) and `scratch/`, a directory outside the home for files
/// a test needs elsewhere (e.g. the target of a symlink that leads out of plugins/).
pub struct Home {
    dir: tempfile::TempDir,
    root: PathBuf,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    /// Creates a fresh home with `stask --home DIR init`.
    pub fn new() -> Home {
        let dir = tempfile::Builder::new()
            .prefix("stask-e2e-")
            .tempdir()
            .expect("cannot create a temporary directory");
        let root = dir.path().join("home");
        std::fs::create_dir(dir.path().join("scratch")).expect("create scratch dir");
        let home = Home { dir, root };
        home.ok(&["init"]);
        // Independent of the test runner's umask: the host refuses plugins in a
        // directory that others can write to.
        chmod(&home.plugins_dir(), 0o755);
        home
    }

    /// The home directory (what `--home` is set to).
    pub fn path(&self) -> &Path {
        &self.root
    }

    /// The plugins directory (`HOME/plugins`).
    pub fn plugins_dir(&self) -> PathBuf {
        self.root.join("plugins")
    }

    /// The database file.
    pub fn db_path(&self) -> PathBuf {
        self.root.join("stask.db")
    }

    /// A directory next to the home, outside the plugins directory, for test files.
    pub fn scratch_dir(&self) -> PathBuf {
        self.dir.path().join("scratch")
    }

    /// Copies a built library (by crate library name, see [`plugin_lib`]) into the
    /// plugins directory under its usual file name, with mode 0755.
    pub fn install(&self, crate_lib_name: &str) -> PathBuf {
        self.install_as(crate_lib_name, &plugin_file_name(crate_lib_name))
    }

    /// Copies a built library into the plugins directory as `file_name` (which may
    /// include subdirectories, created with mode 0755), with mode 0755.
    pub fn install_as(&self, crate_lib_name: &str, file_name: &str) -> PathBuf {
        let dest = self.plugins_dir().join(file_name);
        copy_library(&plugin_lib(crate_lib_name), &dest);
        dest
    }

    /// Runs `stask --home HOME ARGS...` (without STASK_HOME / STASK_PLUGINS_DIR /
    /// RUST_LOG from the environment) and returns its output, whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = stask_command();
        cmd.arg("--home").arg(&self.root).args(args);
        run_with_timeout(&mut cmd, COMMAND_TIMEOUT)
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "expected success\n{}",
            describe(&args.join(" "), &out)
        );
        String::from_utf8(out.stdout).expect("stdout is UTF-8")
    }

    /// Runs a command that must fail (non-zero exit) and returns its stderr.
    pub fn fail(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success() && out.status.code().is_some(),
            "expected a non-zero exit code\n{}",
            describe(&args.join(" "), &out)
        );
        String::from_utf8(out.stderr).expect("stderr is UTF-8")
    }

    /// Runs a command with `--json`, asserts success and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run(&all);
        let what = all.join(" ");
        assert!(
            out.status.success(),
            "expected success\n{}",
            describe(&what, &out)
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e})\n{}",
                describe(&what, &out)
            )
        })
    }
}

/// Copies a library to `dest` (creating parent directories with mode 0755) and sets
/// it to mode 0755.
pub fn copy_library(src: &Path, dest: &Path) {
    if let Some(parent) = dest.parent() {
        if !parent.exists() {
            std::fs::create_dir_all(parent)
                .unwrap_or_else(|e| panic!("create '{}': {e}", parent.display()));
            chmod(parent, 0o755);
        }
    }
    std::fs::copy(src, dest)
        .unwrap_or_else(|e| panic!("copy '{}' to '{}': {e}", src.display(), dest.display()));
    chmod(dest, 0o755);
}

/// The entry of a JSON array whose `key` field equals `value`, if any.
pub fn find_by<'a>(array: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    array.as_array()?.iter().find(|v| v[key] == value)
}

/// The `path` fields of a report's entries (`skipped`, `failed`, ...).
pub fn paths_of(array: &Value) -> Vec<String> {
    array
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["path"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Identifiers of the entries of a JSON array (`registered`, `updated`, `list`, ...).
pub fn identifiers(array: &Value) -> Vec<String> {
    let mut ids: Vec<String> = array
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v["identifier"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}
