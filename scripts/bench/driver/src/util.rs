//! Running commands with time limits, sampling their memory, temporary homes, statistics.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Errors are messages: the driver reports them and goes on with the next benchmark.
pub type Res<T> = Result<T, String>;

/// Adds context to any error.
pub trait Ctx<T> {
    fn ctx(self, what: &str) -> Res<T>;
}

impl<T, E: std::fmt::Display> Ctx<T> for Result<T, E> {
    fn ctx(self, what: &str) -> Res<T> {
        self.map_err(|e| format!("{what}: {e}"))
    }
}

/// Wall-clock time in ms since the Unix epoch (the unit of stask's timestamps).
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// Wall-clock time in ns since the Unix epoch.
pub fn ns_since_epoch(t: SystemTime) -> i128 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as i128)
}

/// Median (mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let n = v.len();
    match n {
        0 => f64::NAN,
        _ if n % 2 == 1 => v[n / 2],
        _ => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Nearest-rank percentile, `p` in 0-100.
pub fn percentile(values: &[f64], p: f64) -> f64 {
    let mut v = values.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Smallest value.
pub fn min(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::INFINITY, f64::min)
}

/// Largest value.
pub fn max(values: &[f64]) -> f64 {
    values.iter().copied().fold(f64::NEG_INFINITY, f64::max)
}

/// A finished command.
pub struct Ran {
    pub out: Output,
    /// From just before the spawn to just after the exit was reaped.
    pub wall: Duration,
    /// Wall clock right after the exit was reaped.
    pub ended: SystemTime,
}

impl Ran {
    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.out.stdout).into_owned()
    }

    pub fn json(&self) -> Res<serde_json::Value> {
        serde_json::from_slice(&self.out.stdout).ctx("command output is not JSON")
    }
}

fn describe(cmd: &Command) -> String {
    let mut s = Path::new(cmd.get_program())
        .file_name()
        .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// Runs a command to completion (stdout and stderr captured), killing it after
/// `timeout`. A non-zero exit is an error carrying its stderr.
pub fn run(cmd: &mut Command, timeout: Duration) -> Res<Ran> {
    run_observed(cmd, timeout, |_| || ()).map(|(r, ())| r)
}

/// Like [`run`], calling `observe(pid)` right after the spawn; its return value is
/// handed back with the result (e.g. a memory sampler's figures).
pub fn run_observed<T, F, S>(cmd: &mut Command, timeout: Duration, observe: F) -> Res<(Ran, T)>
where
    F: FnOnce(u32) -> S,
    S: FnOnce() -> T,
{
    let what = describe(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let started = Instant::now();
    let child = cmd.spawn().ctx(&format!("cannot start `{what}`"))?;
    let pid = child.id();
    let finish = observe(pid);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let out = child.wait_with_output();
        let _ = tx.send((out, Instant::now(), SystemTime::now()));
    });
    let result = rx.recv_timeout(timeout);
    let observed = finish();
    match result {
        Ok((Ok(out), end, ended)) => {
            if !out.status.success() {
                return Err(format!(
                    "`{what}` failed ({}): {}",
                    out.status,
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
            Ok((
                Ran {
                    out,
                    wall: end - started,
                    ended,
                },
                observed,
            ))
        }
        Ok((Err(e), _, _)) => Err(format!("`{what}`: {e}")),
        Err(_) => {
            kill(pid, libc::SIGKILL);
            Err(format!(
                "`{what}` did not finish within {timeout:?}; killed"
            ))
        }
    }
}

/// Sends a signal to a process.
pub fn kill(pid: u32, signal: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe {
        libc::kill(pid as i32, signal);
    }
}

/// CPU time (user + system) of this process's children that have ended and been
/// waited for, in ms (with theirs: a child's own waited children, e.g. `stask`'s
/// runner processes).
pub fn children_cpu_ms() -> f64 {
    // SAFETY: getrusage fills the struct it is given; a zeroed rusage is a valid value.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_CHILDREN is a valid `who`.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let ms = |t: libc::timeval| t.tv_sec as f64 * 1000.0 + t.tv_usec as f64 / 1000.0;
    ms(usage.ru_utime) + ms(usage.ru_stime)
}

/// Fields of `/proc/PID/stat` after the command name (which may hold spaces): field 3
/// (state) is the first.
pub fn proc_stat(pid: u32) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.rsplit_once(')')?.1;
    // The state is a letter: read as 0.
    Some(
        rest.split_whitespace()
            .map(|f| f.parse::<u64>().unwrap_or(0))
            .collect(),
    )
}

/// CPU time (user + system) a process has used so far, in ms.
pub fn cpu_ms(pid: u32) -> Option<f64> {
    // utime and stime: fields 14 and 15.
    let f = proc_stat(pid)?;
    Some(ticks_ms(f.get(11)? + f.get(12)?))
}

/// Clock ticks of `/proc/PID/stat` as ms.
pub fn ticks_ms(ticks: u64) -> f64 {
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    ticks as f64 * 1000.0 / if hz > 0 { hz as f64 } else { 100.0 }
}

/// Peak resident memory of processes: the observed one and the runner processes it
/// started (children whose command line contains `__runner`).
#[derive(Debug, Default, Clone, Copy)]
pub struct Mem {
    /// VmHWM of the observed process, kB.
    pub main_kb: u64,
    /// Largest VmHWM of one of its runner processes, kB.
    pub runner_kb: u64,
    /// How many runner processes were seen.
    pub runners: usize,
}

/// Samples VmHWM (the kernel's peak-RSS mark) of a process and its runners every
/// 10 ms until stopped.
pub struct Sampler {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<Mem>,
}

fn vm_hwm_kb(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn children(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(t.path().join("children")) {
            out.extend(
                text.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
    }
    out
}

fn is_runner(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|&b| b == 0).any(|arg| arg == b"__runner"))
        .unwrap_or(false)
}

impl Sampler {
    pub fn start(pid: u32) -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut mem = Mem::default();
            let mut runners: HashSet<u32> = HashSet::new();
            loop {
                if let Some(kb) = vm_hwm_kb(pid) {
                    mem.main_kb = mem.main_kb.max(kb);
                }
                for child in children(pid) {
                    // Not remembered when it is no runner: between fork and exec a child
                    // still shows its parent's command line.
                    if runners.contains(&child) || is_runner(child) {
                        runners.insert(child);
                        if let Some(kb) = vm_hwm_kb(child) {
                            mem.runner_kb = mem.runner_kb.max(kb);
                        }
                    }
                }
                if flag.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            mem.runners = runners.len();
            mem
        });
        Sampler { stop, handle }
    }

    pub fn stop(self) -> Mem {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.join().unwrap_or_default()
    }
}

/// Runs a command while sampling its memory and its runners' memory.
pub fn run_sampled(cmd: &mut Command, timeout: Duration) -> Res<(Ran, Mem)> {
    run_observed(cmd, timeout, |pid| {
        let s = Sampler::start(pid);
        move || s.stop()
    })
}

/// Where the binaries are and how the benchmarks are sized.
pub struct Env {
    pub quick: bool,
    /// Tasks of the burn-down, the peer's burn-down and the limit.
    pub n: usize,
    /// Runs of each benchmark (the median of them is reported).
    pub runs: usize,
    pub cores: usize,
    pub stask: PathBuf,
    pub demo_lib: PathBuf,
    pub product_lib: PathBuf,
    /// The misbehaving test fixture (its `big-file` action, for the ingest benchmark).
    pub fixture_lib: PathBuf,
    pub bench_lib: PathBuf,
    pub peer: PathBuf,
    /// Scratch directory for homes and generated files (deleted afterwards).
    pub work: PathBuf,
}

impl Env {
    /// `stask` with a clean environment: no inherited `STASK_*` variables, the home,
    /// and `STASK_CONCURRENCY` = the number of cores.
    pub fn stask(&self, home: &Path) -> Command {
        let mut cmd = Command::new(&self.stask);
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("STASK_") || k == "RUST_LOG" {
                cmd.env_remove(k);
            }
        }
        cmd.env("STASK_HOME", home)
            .env("STASK_CONCURRENCY", self.cores.to_string());
        cmd
    }
}

/// A temporary stask home under the scratch directory, removed when dropped.
pub struct Home {
    pub root: PathBuf,
}

/// Copies a library into a plugins directory with the permissions stask accepts.
pub fn install_lib(from: &Path, to: &Path) -> Res<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::copy(from, to).ctx(&format!("copy {}", from.display()))?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
        .ctx(&format!("chmod {}", to.display()))
}

impl Home {
    /// A new home with `libs` installed and discovered (and activated).
    pub fn create(env: &Env, name: &str, libs: &[&Path]) -> Res<Home> {
        let root = env.work.join(name);
        if root.exists() {
            discard(&root);
        }
        run(
            env.stask(&root).args(["init", "--json"]),
            Duration::from_secs(30),
        )?;
        let home = Home { root };
        for lib in libs {
            let name = lib.file_name().ok_or("library path has no file name")?;
            install_lib(lib, &home.plugins().join(name))?;
        }
        if !libs.is_empty() {
            let report = run(
                env.stask(&home.root)
                    .args(["workers", "discover", "--activate", "--json"]),
                Duration::from_secs(60),
            )?
            .json()?;
            let registered = report["registered"].as_array().map_or(0, Vec::len);
            if registered != libs.len() {
                return Err(format!(
                    "discovery registered {registered} of {} libraries: {report}",
                    libs.len()
                ));
            }
        }
        Ok(home)
    }

    pub fn plugins(&self) -> PathBuf {
        self.root.join("plugins")
    }

    pub fn db(&self) -> PathBuf {
        self.root.join("stask.db")
    }

    /// Opens the home's store through the storage crate's public API (every figure the
    /// driver reads from a home goes through it: no SQL outside storage/).
    pub fn store(&self) -> Res<Box<dyn stask_storage::Store>> {
        let db = self.db();
        let path = db.to_str().ok_or("the home's path is not UTF-8")?;
        stask_storage::open(path).ctx("open the store")
    }

    /// Bytes of the database on disk: the database file and its WAL (when one exists).
    pub fn db_bytes(&self) -> u64 {
        let db = self.db();
        let wal = db.with_file_name("stask.db-wal");
        file_size(&db) + file_size(&wal)
    }
}

/// Size of a file in bytes, 0 when it does not exist.
pub fn file_size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

impl Drop for Home {
    fn drop(&mut self) {
        discard(&self.root);
    }
}

/// Moves a benchmark's directory into `.trash` beside it instead of deleting it; the
/// driver deletes everything once the last figure is taken.
///
/// Deleting many files slows creating files for minutes afterwards on this machine: its
/// ext4 runs without a journal, and then the inode allocator skips inodes freed in the
/// last 60-360 s, reading each one's inode-table block to find out (`recently_deleted`
/// in the kernel's profile, 30 µs per new file becoming 300-800 µs). Homes no longer
/// hold a file per task (logs and result files live in the database), but the peer's
/// databases, scratch directories and big files still go this way, so no benchmark
/// pays for another's deletions.
pub fn discard(dir: &Path) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let (Some(parent), Some(name)) = (dir.parent(), dir.file_name()) else {
        return;
    };
    let trash = parent.join(".trash");
    let _ = std::fs::create_dir_all(&trash);
    let dest = trash.join(format!(
        "{}-{}",
        name.to_string_lossy(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    if std::fs::rename(dir, &dest).is_err() && dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// A running `stask serve`, stopped (SIGTERM, then SIGKILL after 60 s) when dropped.
pub struct Service {
    child: Option<Child>,
    sampler: Option<Sampler>,
}

impl Service {
    /// Starts the service on `home` (no discovery at start, HTTP on an ephemeral port)
    /// and waits until its wake-up socket exists.
    pub fn start(env: &Env, home: &Home) -> Res<Service> {
        let log = std::fs::File::create(home.root.join("serve.log")).ctx("create serve.log")?;
        let child = env
            .stask(&home.root)
            .arg("serve")
            .env("STASK_DISCOVER_ON_START", "false")
            // Its HTTP listener on an ephemeral loopback port: never in the way of a
            // service on the default port, nor of another benchmark.
            .env("STASK_BIND", "127.0.0.1:0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .ctx("cannot start `stask serve`")?;
        let pid = child.id();
        let mut service = Service {
            sampler: Some(Sampler::start(pid)),
            child: Some(child),
        };
        let socket = home.root.join("run").join(format!("wake-{pid}.sock"));
        let deadline = Instant::now() + Duration::from_secs(20);
        while !socket.exists() {
            if let Some(c) = service.child.as_mut() {
                if let Ok(Some(status)) = c.try_wait() {
                    let log =
                        std::fs::read_to_string(home.root.join("serve.log")).unwrap_or_default();
                    return Err(format!(
                        "`stask serve` exited at start ({status}): {}",
                        log.trim()
                    ));
                }
            }
            if Instant::now() > deadline {
                return Err("`stask serve` did not bind its wake-up socket within 20 s".into());
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(service)
    }

    /// The service's process id.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The base URL of its HTTP API (`http://127.0.0.1:PORT`), read from
    /// `HOME/run/http-{pid}.addr` (written once it listens), waiting up to `timeout`.
    pub fn http_base(&mut self, home: &Home, timeout: Duration) -> Res<String> {
        let pid = self.pid().ok_or("the service is not running")?;
        let file = home.root.join("run").join(format!("http-{pid}.addr"));
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(text) = std::fs::read_to_string(&file) {
                let base = text.trim().trim_end_matches('/');
                if !base.is_empty() {
                    return Ok(base.to_owned());
                }
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                let log = std::fs::read_to_string(home.root.join("serve.log")).unwrap_or_default();
                return Err(format!("`stask serve` exited ({status}): {}", log.trim()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "`stask serve` wrote no {} within {timeout:?}",
                    file.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Waits until the service is idle: its CPU time (user + system, from
    /// `/proc/PID/stat`) grew by at most 20 ms over the last 500 ms, so start-up work
    /// (the clean-up at start, for one) does not overlap what is
    /// measured. Returns the wait and the CPU time spent until then (ms).
    pub fn settle(&self, timeout: Duration) -> Res<(Duration, f64)> {
        let pid = self.pid().ok_or("the service is not running")?;
        let started = Instant::now();
        let mut window: std::collections::VecDeque<(Instant, f64)> = Default::default();
        loop {
            let now = Instant::now();
            let cpu = cpu_ms(pid).ok_or("cannot read the service's CPU time")?;
            window.push_back((now, cpu));
            while window
                .front()
                .is_some_and(|(t, _)| now - *t > Duration::from_millis(500))
            {
                window.pop_front();
            }
            let (first_t, first_cpu) = window.front().copied().unwrap_or((now, cpu));
            if now - first_t >= Duration::from_millis(450) && cpu - first_cpu <= 20.0 {
                return Ok((started.elapsed(), cpu));
            }
            if now - started > timeout {
                return Err(format!(
                    "`stask serve` was still busy {timeout:?} after its start"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the service and returns its peak memory figures.
    pub fn stop(mut self) -> Res<Mem> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Res<Mem> {
        let Some(mut child) = self.child.take() else {
            return Ok(Mem::default());
        };
        let status = stop_child(&mut child, Duration::from_secs(60));
        let mem = self.sampler.take().map(Sampler::stop).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(mem),
            Some(s) => Err(format!("`stask serve` exited with {s} when stopped")),
            None => Err("`stask serve` did not stop within 60 s of SIGTERM; killed".into()),
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Parses one `--json` id document (`{"id": N}`).
pub fn id_of(ran: &Ran) -> Res<i64> {
    ran.json()?["id"]
        .as_i64()
        .ok_or_else(|| format!("no id in {}", ran.stdout().trim()))
}

/// Sends SIGTERM to `child` and waits up to `grace` for it to end; kills it after
/// that. The exit status, `None` when it had to be killed.
pub fn stop_child(
    child: &mut std::process::Child,
    grace: Duration,
) -> Option<std::process::ExitStatus> {
    kill(child.id(), libc::SIGTERM);
    let deadline = Instant::now() + grace;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
}

/// Runs `producers` threads, each calling `produce` (which makes `batch` items) until
/// `deadline`; returns how many items they made, or the first producer's error.
pub fn produce_until(
    deadline: Instant,
    producers: usize,
    batch: usize,
    produce: impl Fn() -> Res<()> + Sync,
) -> Res<usize> {
    let made = std::sync::atomic::AtomicUsize::new(0);
    let errors: Vec<String> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|_| {
                s.spawn(|| -> Res<()> {
                    while Instant::now() < deadline {
                        produce()?;
                        made.fetch_add(batch, std::sync::atomic::Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .filter_map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err("producer panicked".into()))
                    .err()
            })
            .collect()
    });
    match errors.first() {
        Some(e) => Err(format!("producer failed: {e}")),
        None => Ok(made.into_inner()),
    }
}
