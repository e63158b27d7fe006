//! Resource limits of a worker's runs, and telling a run that hit one from a crash.
//!
//! Memory and open files are limits of the runner process (`RLIMIT_DATA`,
//! `RLIMIT_NOFILE`), set when it starts, soft and hard alike so plugin code cannot raise
//! them; a runner only runs workers with the same limits. CPU time is counted per
//! process, so the runner sets `RLIMIT_CPU` before each task to what it has used so far
//! plus the task's allowance.
//!
//! When a limit is hit the kernel or the plugin's own runtime ends the run in its own
//! words (an allocation failure aborts, `SIGXCPU`, "Too many open files"); [`explain`]
//! turns that into a message naming the limit and the setting that changes it.

use serde::{Deserialize, Serialize};
use stask_plugin_api::manifest::{CPU_SETTING, MEMORY_SETTING, OPEN_FILES_SETTING};

/// A worker's resource limits; `None` is no limit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Limits {
    /// Private writable memory of the runner (heap, stacks), in MiB.
    pub memory_mb: Option<u64>,
    /// CPU time of one run, in seconds.
    pub cpu_secs: Option<u64>,
    /// Open files of the runner.
    pub open_files: Option<u64>,
}

impl Limits {
    /// The limits that shape a runner process (a runner is only reused for runs with
    /// the same ones); CPU time is set per run.
    pub fn process_key(&self) -> (Option<u64>, Option<u64>) {
        (self.memory_mb, self.open_files)
    }

    /// Sets the process limits on the calling process. Async-signal-safe (only
    /// `setrlimit`), so it may run between `fork` and `exec`.
    pub fn apply_to_process(&self) -> std::io::Result<()> {
        if let Some(mb) = self.memory_mb {
            set(libc::RLIMIT_DATA, mb.saturating_mul(1 << 20), true)?;
        }
        if let Some(n) = self.open_files {
            set(libc::RLIMIT_NOFILE, n, true)?;
        }
        Ok(())
    }
}

/// Sets a soft (and, when `hard`, hard) limit.
fn set(resource: libc::__rlimit_resource_t, value: u64, hard: bool) -> std::io::Result<()> {
    let mut current = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write a local struct.
    unsafe {
        if libc::getrlimit(resource, &mut current) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        let max = if hard {
            value.min(current.rlim_max)
        } else {
            current.rlim_max
        };
        let limit = libc::rlimit {
            rlim_cur: value.min(max),
            rlim_max: max,
        };
        if libc::setrlimit(resource, &limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// In a runner, before a run: CPU time from now on is limited to `secs` (or unlimited).
pub fn limit_cpu_from_now(secs: Option<u64>) {
    let value = match secs {
        Some(secs) => {
            // SAFETY: getrusage writes a local struct.
            let used = unsafe {
                let mut u: libc::rusage = std::mem::zeroed();
                libc::getrusage(libc::RUSAGE_SELF, &mut u);
                u.ru_utime.tv_sec as u64 + u.ru_stime.tv_sec as u64 + 1
            };
            used.saturating_add(secs)
        }
        None => libc::RLIM_INFINITY,
    };
    if let Err(e) = set(libc::RLIMIT_CPU, value, false) {
        eprintln!("stask runner: cannot set the CPU time limit: {e}");
    }
}

/// What ended a runner, in the operator's words, given how it exited (`how`, from
/// [`crate::signals::describe_exit`]), its signal, the last lines it wrote to stderr and
/// the run's limits.
pub fn explain(how: &str, signal: Option<i32>, stderr_tail: &str, limits: &Limits) -> String {
    if signal == Some(libc::SIGXCPU) {
        return match limits.cpu_secs {
            Some(s) => format!(
                "the run used more than its CPU time limit of {s} s and was stopped (change it with the `{CPU_SETTING}` setting)"
            ),
            None => format!("the runner exceeded a CPU time limit ({how})"),
        };
    }
    if stderr_tail.contains("has overflowed its stack") {
        return format!("the worker overflowed its stack (runaway recursion?) and the runner was stopped ({how})");
    }
    if stderr_tail.contains("memory allocation of") && stderr_tail.contains("failed") {
        return match limits.memory_mb {
            Some(mb) => format!(
                "the worker ran out of memory: it needed more than its limit of {mb} MiB (change it with the `{MEMORY_SETTING}` setting)"
            ),
            None => "the worker ran out of memory and the runner was stopped".to_owned(),
        };
    }
    format!("the runner process crashed: {how}")
}

/// An error a run returned, with the open-files limit named when it is what failed.
pub fn explain_error(message: String, limits: &Limits) -> String {
    match limits.open_files {
        Some(n) if message.contains("os error 24") || message.contains("Too many open files") => {
            format!(
                "{message} (the worker may have at most {n} files open at once; change it with the `{OPEN_FILES_SETTING}` setting)"
            )
        }
        _ => message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_limit_is_named_with_its_setting_and_other_crashes_stay_crashes() {
        let l = Limits {
            memory_mb: Some(256),
            cpu_secs: Some(2),
            open_files: Some(64),
        };
        let cpu = explain("killed by SIGXCPU", Some(libc::SIGXCPU), "", &l);
        assert!(
            cpu.contains("CPU time limit of 2 s") && cpu.contains(CPU_SETTING),
            "{cpu}"
        );
        let oom = explain(
            "killed by SIGABRT",
            Some(libc::SIGABRT),
            "memory allocation of 1048576 bytes failed\n",
            &l,
        );
        assert!(
            oom.contains("256 MiB") && oom.contains(MEMORY_SETTING),
            "{oom}"
        );
        let stack = explain(
            "killed by SIGABRT",
            Some(libc::SIGABRT),
            "\nthread 'main' has overflowed its stack\nfatal runtime error: stack overflow\n",
            &l,
        );
        assert!(stack.contains("overflowed its stack"), "{stack}");
        let other = explain("killed by SIGSEGV", Some(libc::SIGSEGV), "", &l);
        assert_eq!(other, "the runner process crashed: killed by SIGSEGV");
        let files = explain_error("open failed: Too many open files (os error 24)".into(), &l);
        assert!(files.contains("at most 64 files") && files.contains(OPEN_FILES_SETTING));
        assert_eq!(explain_error("other".into(), &l), "other");
    }
}
