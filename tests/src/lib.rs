//! Helpers for the end-to-end tests: drive the real `stask` binary against real plugin
//! libraries built by `cargo build --workspace`.
//!
//! * [`bin`] and [`plugin_lib`] locate build outputs (see [`target_dir`]).
//! * [`Home`] is a throw-away stask home in a temporary directory, created with
//!   `stask --home DIR init`, with helpers to install libraries and run commands.
//! * Every child process runs under a time limit ([`COMMAND_TIMEOUT`]), so a hung
//!   command fails its test instead of hanging the whole suite.
//! * [`Home::spawn`] starts a command in the background ([`Background`], killed when
//!   dropped; [`Background::signal`] sends it a signal and
//!   [`Background::stderr_so_far`] shows its log while it runs), and [`wait_until`]
//!   polls for a condition with a deadline, for tests that act while a task runs.
//! * Task helpers: [`Home::create_task`], [`Home::task`], [`Home::log_lines`] and
//!   [`check_log_line`] (the progress-log line format).
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
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The longest any single command may run before it is killed and the test fails.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// Environment variables that would change what `stask` does behind a test's back:
/// the home selection, logging, and every configuration key's `STASK_<KEY>` variable
/// (tests that need a knob set it per command, see [`Home::run_env`]).
const SCRUBBED_ENV: &[&str] = &[
    "STASK_HOME",
    "STASK_PLUGINS_DIR",
    "RUST_LOG",
    "STASK_DATABASE_URL",
    "STASK_SANDBOX",
    "STASK_BIND",
    "STASK_CONCURRENCY",
    "STASK_WORKER_CONCURRENCY",
    "STASK_DEFAULT_TIMEOUT_SECS",
    "STASK_CANCEL_GRACE_MS",
    "STASK_RETRY_BASE_MS",
    "STASK_STALE_AFTER_SECS",
    "STASK_SHUTDOWN_GRACE_SECS",
    "STASK_RETENTION",
    "STASK_CLEANUP_INTERVAL",
    "STASK_TIMEZONE",
    "STASK_DISCOVER_ON_START",
    "STASK_MAX_RESULT_FILE_MB",
    "STASK_MAX_RESULT_TASK_MB",
    "STASK_MAX_RESULT_JSON_KB",
    "STASK_LOCK_WAIT_MS",
    "STASK_SECRET_KEY",
    "STASK_HTTP_HEADER_TIMEOUT_SECS",
    "STASK_HTTP_BODY_TIMEOUT_SECS",
    "STASK_HTTP_IDLE_TIMEOUT_SECS",
    "STASK_HTTP_MAX_CONNECTIONS",
    "STASK_HTTP_MAX_STREAMS",
    "STASK_HTTP_MAX_STREAMS_PER_USER",
    "STASK_LOG_FORMAT",
];

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

/// Reads a pipe to its end on a thread. What has arrived so far is readable in
/// `so_far` while the pipe is still open; the thread returns everything.
fn drain<R: Read + Send + 'static>(
    mut pipe: R,
    so_far: Arc<Mutex<Vec<u8>>>,
) -> JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut chunk = [0u8; 8192];
        loop {
            match pipe.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => so_far
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        let all = so_far.lock().unwrap_or_else(PoisonError::into_inner);
        all.clone()
    })
}

/// Runs `cmd` with stdin closed and output captured, killing it (and failing the
/// test) when it takes longer than `timeout`.
pub fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Output {
    Background::start(cmd).wait(timeout)
}

/// A command running in the background with its output captured. Dropping it kills
/// the process (only that process: the one the test started) if it is still running.
pub struct Background {
    shown: String,
    child: Child,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    stderr_so_far: Arc<Mutex<Vec<u8>>>,
    status: Option<ExitStatus>,
}

impl Background {
    /// Starts `cmd` with stdin closed and stdout / stderr captured.
    pub fn start(cmd: &mut Command) -> Background {
        Background::start_with_stdin(cmd, Stdio::null())
    }

    /// Starts `cmd` with `input` on its standard input (a pipe, closed after it) and
    /// stdout / stderr captured.
    pub fn start_with_input(cmd: &mut Command, input: &[u8]) -> Background {
        let mut bg = Background::start_with_stdin(cmd, Stdio::piped());
        let mut stdin = bg.child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        // On a thread: a command that does not read all of it must not block the test.
        std::thread::spawn(move || {
            use std::io::Write as _;
            let _ = stdin.write_all(&input);
        });
        bg
    }

    fn start_with_stdin(cmd: &mut Command, stdin: Stdio) -> Background {
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {shown}: {e}"));
        let stdout = drain(child.stdout.take().expect("piped stdout"), Arc::default());
        let stderr_so_far = Arc::<Mutex<Vec<u8>>>::default();
        let stderr = drain(
            child.stderr.take().expect("piped stderr"),
            stderr_so_far.clone(),
        );
        Background {
            shown,
            child,
            stdout: Some(stdout),
            stderr: Some(stderr),
            stderr_so_far,
            status: None,
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the process has written to stderr so far (lossily decoded), while it
    /// runs: for waiting on a log line of a long-running command.
    pub fn stderr_so_far(&self) -> String {
        let buf = self
            .stderr_so_far
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// Sends `signal` (`libc::SIGTERM`, ...) to the process, which must still be
    /// running (so the pid cannot belong to another process yet).
    pub fn signal(&mut self, signal: libc::c_int) {
        if let Some(status) = self.try_status() {
            panic!(
                "{} had already ended ({status}) when it was to get signal {signal}",
                self.shown
            );
        }
        // SAFETY: sends a signal to the child this test started and has not reaped;
        // no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(
            rc,
            0,
            "kill -{signal} {}: {}",
            self.child.id(),
            std::io::Error::last_os_error()
        );
    }

    /// The exit status if the process has ended (it is reaped then), `None` while it
    /// runs.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.status = status,
                Err(e) => panic!("waiting for {} failed: {e}", self.shown),
            }
        }
        self.status
    }

    /// Like [`Background::kill9`], for a process that may have ended by itself (a kill
    /// at a random moment): returns its exit status either way.
    pub fn kill9_if_running(&mut self) -> ExitStatus {
        match self.try_status() {
            Some(status) => status,
            None => self.kill9(),
        }
    }

    /// Sends SIGKILL to the process and reaps it (so that nothing, not even a zombie,
    /// is left of it). Returns its exit status.
    pub fn kill9(&mut self) -> ExitStatus {
        if let Some(status) = self.try_status() {
            panic!(
                "{} had already ended ({status}) when it was to be killed",
                self.shown
            );
        }
        // SAFETY: sends a signal to the child this test started; no memory is involved.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(
            rc,
            0,
            "kill -9 {}: {}",
            self.child.id(),
            std::io::Error::last_os_error()
        );
        let status = self
            .child
            .wait()
            .unwrap_or_else(|e| panic!("waiting for {} failed: {e}", self.shown));
        self.status = Some(status);
        status
    }

    /// Waits for the process to end and returns its output; kills it and fails the
    /// test when it has not ended within `timeout`.
    pub fn wait(mut self, timeout: Duration) -> Output {
        let started = Instant::now();
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if started.elapsed() > timeout {
                let _ = self.child.kill();
                self.status = self.child.wait().ok();
                // The readers finish once every holder of the pipes is gone; a
                // grandchild could keep them open, so do not wait for them.
                panic!(
                    "{} did not finish within {:.1} s and was killed",
                    self.shown,
                    timeout.as_secs_f64()
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        Output {
            status,
            stdout: self
                .stdout
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default(),
            stderr: self
                .stderr
                .take()
                .map(|h| h.join().unwrap_or_default())
                .unwrap_or_default(),
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if self.status.is_none() && matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Polls `check` every 10 ms until it returns `Some`, and returns that; fails the test
/// naming `what` when `timeout` passes first.
pub fn wait_until<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return v;
        }
        if started.elapsed() > timeout {
            panic!(
                "timed out after {:.1} s waiting until {what}",
                timeout.as_secs_f64()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Checks one progress-log line (without its newline) against the format
/// `status|progress|processed|total|eta|message`, i.e. the regular expression
/// `^(pending|running|completed|failed|cancelled)\|\d{1,3}\|\d+\|\d+\|[^|]*\|.*$`.
/// Returns the six fields (the message still escaped), or why the line does not match.
pub fn check_log_line(line: &str) -> Result<[&str; 6], String> {
    let fields: Vec<&str> = line.splitn(6, '|').collect();
    let [status, progress, processed, total, eta, message] = fields[..] else {
        return Err(format!("{line:?} has fewer than six '|'-separated fields"));
    };
    let digits = |s: &str, max: usize| {
        !s.is_empty() && s.len() <= max && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !["pending", "running", "completed", "failed", "cancelled"].contains(&status) {
        return Err(format!("{line:?}: '{status}' is not a task status"));
    }
    if !digits(progress, 3) {
        return Err(format!("{line:?}: progress '{progress}' is not 1-3 digits"));
    }
    if !digits(processed, usize::MAX) || !digits(total, usize::MAX) {
        return Err(format!(
            "{line:?}: processed '{processed}' / total '{total}' are not numbers"
        ));
    }
    if line.contains('\n') || line.contains('\r') {
        return Err(format!("{line:?} contains a raw line break"));
    }
    Ok([status, progress, processed, total, eta, message])
}

/// Process ids of running processes (other than zombies) whose command line contains
/// every one of `needles`, found through /proc.
pub fn processes_with_cmdline(needles: &[&str]) -> Vec<u32> {
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(raw) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        if cmdline.is_empty() || !needles.iter().all(|n| cmdline.contains(n)) {
            continue;
        }
        let zombie = std::fs::read_to_string(e.path().join("stat"))
            .ok()
            .and_then(|stat| {
                let rest = &stat[stat.rfind(')')? + 2..];
                rest.split_whitespace().next().map(|state| state == "Z")
            })
            .unwrap_or(false);
        if !zombie {
            found.push(pid);
        }
    }
    found
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
    /// A fresh home with the demo worker (`stask_worker_demo`) installed and active.
    pub fn with_demo() -> Home {
        let home = Home::new();
        home.install_active(&["stask_worker_demo"]);
        home
    }

    /// Waits up to `wait` until task `id` has ended (completed, failed or cancelled);
    /// returns it as `tasks show --json` shows it.
    pub fn ended(&self, id: i64, wait: Duration) -> Value {
        wait_until(wait, &format!("task {id} to end"), || {
            let t = self.task(id);
            matches!(
                t["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
            .then_some(t)
        })
    }

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

    /// Copies built libraries into the plugins directory and registers them active
    /// (`workers discover --activate`); fails the test unless all of them registered.
    pub fn install_active(&self, crate_lib_names: &[&str]) {
        for name in crate_lib_names {
            self.install(name);
        }
        let report = self.json(&["workers", "discover", "--activate"]);
        let registered = report["registered"].as_array().map_or(0, Vec::len);
        assert_eq!(
            registered,
            crate_lib_names.len(),
            "not every library registered: {report:#}"
        );
    }

    /// The home's store, through the storage crate's public API (what no command
    /// shows, such as the exact stored log lines).
    pub fn store(&self) -> Box<dyn stask_storage::Store> {
        stask_storage::open(self.db_path().to_str().expect("a UTF-8 path"))
            .unwrap_or_else(|e| panic!("open the store of '{}': {e}", self.root.display()))
    }

    /// The lines of a task's progress log, exactly as stored. Empty when there is no
    /// such task.
    pub fn log_lines(&self, id: i64) -> Vec<String> {
        self.store()
            .log_lines(id, 0, usize::MAX)
            .unwrap_or_else(|e| panic!("read the log of task {id}: {e}"))
            .into_iter()
            .map(|l| l.text)
            .collect()
    }

    /// The wake-up socket a service with process id `pid` binds in this home.
    pub fn wake_socket(&self, pid: u32) -> PathBuf {
        self.root.join("run").join(format!("wake-{pid}.sock"))
    }

    /// Starts `stask serve ARGS` on a free port with `env` in the background and
    /// returns once it is ready (its wake-up socket, bound last, exists). Fails the test
    /// if it ends before that.
    pub fn serve(&self, args: &[&str], env: &[(&str, &str)]) -> Background {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("find a free port")
            .port();
        let bind = format!("127.0.0.1:{port}");
        let mut all = vec!["serve", "--bind", &bind];
        all.extend_from_slice(args);
        let mut bg = self.spawn(&all, env);
        let socket = self.wake_socket(bg.pid());
        wait_until(
            COMMAND_TIMEOUT,
            "the service has bound its wake-up socket",
            || {
                if let Some(status) = bg.try_status() {
                    panic!(
                        "stask serve ended ({status}) before it was ready\n--- stderr ---\n{}",
                        bg.stderr_so_far()
                    );
                }
                socket.exists().then_some(())
            },
        );
        bg
    }

    /// Creates a task with `tasks create WORKER ACTION --data DATA EXTRA... --json` and
    /// returns its id.
    pub fn create_task(&self, worker: &str, action: &str, data: &Value, extra: &[&str]) -> i64 {
        let data = data.to_string();
        let mut args = vec!["tasks", "create", worker, action, "--data", &data];
        args.extend_from_slice(extra);
        let reply = self.json(&args);
        reply["id"]
            .as_i64()
            .unwrap_or_else(|| panic!("no id in the reply of `tasks create`: {reply:#}"))
    }

    /// `tasks show ID --json`.
    pub fn task(&self, id: i64) -> Value {
        self.json(&["tasks", "show", &id.to_string()])
    }

    /// A `Command` running `stask --home HOME ARGS...` with `env` set (and the
    /// variables of [`stask_command`] removed).
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = stask_command();
        cmd.arg("--home").arg(&self.root).args(args);
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Runs `stask --home HOME ARGS...` (without STASK_HOME / STASK_PLUGINS_DIR /
    /// RUST_LOG or the engine knobs from the environment) and returns its output,
    /// whatever the exit code.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Like [`Home::run`], with environment variables set for this command only.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        run_with_timeout(&mut self.command(args, env), COMMAND_TIMEOUT)
    }

    /// Like [`Home::run_env`], with `input` on standard input (a pipe, not a terminal).
    pub fn run_with_input(&self, args: &[&str], env: &[(&str, &str)], input: &str) -> Output {
        Background::start_with_input(&mut self.command(args, env), input.as_bytes())
            .wait(COMMAND_TIMEOUT)
    }

    /// Starts `stask serve --bind 127.0.0.1:0 ARGS...` with `env` and waits until it
    /// has published its address (`HOME/run/http-{pid}.addr`); returns the process and
    /// its base URL (`http://127.0.0.1:PORT`). Panics with its stderr if it ends first.
    pub fn serve_http(&self, args: &[&str], env: &[(&str, &str)]) -> (Background, String) {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let mut bg = self.spawn(&all, env);
        let file = self
            .root
            .join("run")
            .join(format!("http-{}.addr", bg.pid()));
        let url = wait_until(
            COMMAND_TIMEOUT,
            "the service wrote its address file",
            || {
                if let Some(status) = bg.try_status() {
                    panic!(
                        "stask serve ended ({status}) before it was ready\n{}",
                        bg.stderr_so_far()
                    );
                }
                std::fs::read_to_string(&file)
                    .ok()
                    .filter(|t| t.ends_with('\n'))
                    .map(|t| t.trim().to_owned())
            },
        );
        (bg, url)
    }

    /// Starts `stask --home HOME ARGS...` with `env` in the background.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Background {
        Background::start(&mut self.command(args, env))
    }

    /// Runs a command that must succeed and returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        self.ok_env(args, &[])
    }

    /// Like [`Home::ok`], with environment variables set for this command only.
    pub fn ok_env(&self, args: &[&str], env: &[(&str, &str)]) -> String {
        let out = self.run_env(args, env);
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
        self.json_env(args, &[])
    }

    /// Like [`Home::json`], with environment variables set for this command only.
    pub fn json_env(&self, args: &[&str], env: &[(&str, &str)]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out = self.run_env(&all, env);
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

/// Removes from `cmd` the environment variables [`stask_command`] removes, for commands
/// that run `stask` indirectly (a shell script running a walkthrough).
pub fn scrub_stask_env(cmd: &mut Command) -> &mut Command {
    for var in SCRUBBED_ENV {
        cmd.env_remove(var);
    }
    cmd
}
