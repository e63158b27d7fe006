//! Every process a task starts ends with the task.
//!
//! A plugin may start processes, and those may detach: a new process group or a new
//! session (`setsid`) escapes a kill of the runner's process group, and a process whose
//! parent exits is adopted by init, out of anyone's sight. So:
//!
//! * runners are child subreapers: orphans among their descendants become their
//!   children, and after every task the runner ends whatever its task left behind
//!   ([`end_own_descendants`]);
//! * the engine's process is a subreaper too, so the descendants of a runner that died
//!   come to it, and it ends every child it did not start itself ([`end_strays`]);
//! * ending a tree walks it by parent pid (from `/proc`): stop every descendant first
//!   (a stopped process cannot fork), look again until nothing new appears, then kill
//!   them all ([`kill_tree`]).
//!
//! Children the engine starts itself (runners, probes) are spawned through
//! [`spawn_tracked`], which records them, so the stray sweep never touches them.

use std::collections::{HashMap, HashSet};
use std::process::{Child, Command};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Rounds of looking for new descendants before the kill; each round stops what it
/// found, so a tree that keeps forking runs out of running parents quickly.
const MAX_ROUNDS: usize = 64;

/// Children this process started on purpose, by pid.
static TRACKED: Mutex<Option<HashSet<i32>>> = Mutex::new(None);

/// Makes this process a child subreaper (Linux `PR_SET_CHILD_SUBREAPER`): orphaned
/// descendants become its children instead of init's.
pub fn become_subreaper() -> std::io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// A child started through [`spawn_tracked`]; forgotten by the stray sweep when dropped
/// (after the child was waited for).
pub struct Tracked {
    pid: i32,
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut tracked = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = tracked.as_mut() {
            set.remove(&self.pid);
        }
    }
}

/// Spawns `cmd` and records the child as one of ours, atomically with respect to
/// [`end_strays`] (which would otherwise take a child spawned a moment ago for a
/// stray).
pub fn spawn_tracked(cmd: &mut Command) -> std::io::Result<(Child, Tracked)> {
    let mut tracked = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    let pid = child.id() as i32;
    tracked.get_or_insert_with(HashSet::new).insert(pid);
    Ok((child, Tracked { pid }))
}

/// Every process in `/proc`: (pid, state, parent pid).
fn processes() -> Vec<(i32, char, i32)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so read
        // after the last ')'.
        let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
            continue;
        };
        let mut fields = rest.split_ascii_whitespace();
        let state = fields.next().and_then(|s| s.chars().next());
        let ppid = fields.next().and_then(|p| p.parse::<i32>().ok());
        if let (Some(state), Some(ppid)) = (state, ppid) {
            out.push((pid, state, ppid));
        }
    }
    out
}

/// Parent pid of every live process (zombies left out: they are gone already and only
/// wait to be reaped).
fn parents() -> HashMap<i32, i32> {
    processes()
        .into_iter()
        .filter(|(_, state, _)| *state != 'Z' && *state != 'X')
        .map(|(pid, _, ppid)| (pid, ppid))
        .collect()
}

/// Every live descendant of `root` (not `root` itself).
pub fn descendants(root: i32) -> Vec<i32> {
    descendants_in(&parents(), root)
}

fn descendants_in(parents: &HashMap<i32, i32>, root: i32) -> Vec<i32> {
    let mut children: HashMap<i32, Vec<i32>> = HashMap::new();
    for (&pid, &ppid) in parents {
        children.entry(ppid).or_default().push(pid);
    }
    let mut out = Vec::new();
    let mut todo = vec![root];
    while let Some(p) = todo.pop() {
        for &c in children.get(&p).map_or(&[][..], Vec::as_slice) {
            if c != root && !out.contains(&c) {
                out.push(c);
                todo.push(c);
            }
        }
    }
    out
}

fn signal(pid: i32, sig: i32) {
    // SAFETY: sending a signal; no memory is involved.
    unsafe {
        libc::kill(pid, sig);
    }
}

/// Stops every descendant of `root` until no new one appears, then kills them all;
/// `root` itself too when `with_root`. Returns the descendants killed.
pub fn kill_tree(root: i32, with_root: bool) -> Vec<i32> {
    if with_root {
        signal(root, libc::SIGSTOP);
    }
    let mut seen: Vec<i32> = Vec::new();
    for _ in 0..MAX_ROUNDS {
        let fresh: Vec<i32> = descendants(root)
            .into_iter()
            .filter(|p| !seen.contains(p))
            .collect();
        if fresh.is_empty() {
            break;
        }
        for &p in &fresh {
            signal(p, libc::SIGSTOP);
        }
        seen.extend(fresh);
    }
    for &p in &seen {
        signal(p, libc::SIGKILL);
    }
    if with_root {
        signal(root, libc::SIGKILL);
    }
    seen
}

/// In a subreaper (a runner): ends every process this one started or adopted, and
/// reaps them. Returns how many were still running. Costs one `waitpid` when there are
/// none, which is the usual case after a task.
///
/// A runner sees only its own `/proc/self` (the sandbox keeps other processes' files
/// closed), so it kills its direct children, round after round: a killed child's own
/// children are orphans that come to this subreaper, and the next round takes them.
pub fn end_own_descendants() -> usize {
    let mut alive = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes the status into a local.
        let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if r > 0 {
            continue; // reaped one; look again
        }
        if r < 0 {
            // ECHILD: no children at all, running or not.
            return alive;
        }
        // Children are running: stop them all (a stopped process cannot fork), then
        // kill them; what they had started comes to us and is taken next round.
        let kids = own_children();
        for &k in &kids {
            signal(k, libc::SIGSTOP);
        }
        for &k in &kids {
            signal(k, libc::SIGKILL);
        }
        alive += kids.len();
        if kids.is_empty() {
            // Children that are not listed (or refuse to die, stuck in the kernel):
            // wait a little rather than spin, and give up at the deadline.
            std::thread::sleep(Duration::from_millis(10));
        }
        if Instant::now() > deadline {
            return alive;
        }
    }
}

/// This process's children, from `/proc/self/task/*/children` (zombies included; a
/// zombie ignores signals and is reaped by the caller).
fn own_children() -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return out;
    };
    for task in tasks.flatten() {
        if let Ok(text) = std::fs::read_to_string(task.path().join("children")) {
            out.extend(
                text.split_ascii_whitespace()
                    .filter_map(|p| p.parse::<i32>().ok()),
            );
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

/// In the engine's process (a subreaper): ends and reaps every child it did not start
/// through [`spawn_tracked`]: what a runner that died had started (running or already
/// ended and only waiting to be reaped). Returns how many.
pub fn end_strays() -> usize {
    let tracked = TRACKED.lock().unwrap_or_else(|e| e.into_inner());
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let strays: Vec<i32> = children_of(me)
        .into_iter()
        .filter(|pid| !tracked.as_ref().is_some_and(|t| t.contains(pid)))
        .collect();
    for &p in &strays {
        kill_tree(p, true);
    }
    drop(tracked);
    for &p in &strays {
        let mut status = 0;
        // SAFETY: waitpid on a child of ours that ended or was just sent SIGKILL.
        unsafe {
            libc::waitpid(p, &mut status, 0);
        }
    }
    strays.len()
}

/// Children of `parent`, zombies included (those must be reaped too).
fn children_of(parent: i32) -> Vec<i32> {
    processes()
        .into_iter()
        .filter(|(_, _, ppid)| *ppid == parent)
        .map(|(pid, _, _)| pid)
        .collect()
}

/// Threads of this process, or `None` when it cannot be told. procfs gives the
/// directory `/proc/self/task` one link per thread beyond its own two, so one `fstat`
/// of a descriptor kept open says it: a runner looks after every task, and reading
/// `/proc/self/stat` instead (which the kernel assembles field by field) cost a fast
/// task a third of its time.
pub fn thread_count() -> Option<usize> {
    use std::os::unix::fs::MetadataExt as _;
    static TASKS: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    let dir = TASKS
        .get_or_init(|| std::fs::File::open("/proc/self/task").ok())
        .as_ref()?;
    let links = dir.metadata().ok()?.nlink();
    usize::try_from(links.checked_sub(2)?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descendants_follow_parent_links_to_any_depth_and_skip_others() {
        let parents: HashMap<i32, i32> = [(10, 1), (11, 10), (12, 11), (13, 10), (20, 1), (21, 20)]
            .into_iter()
            .collect();
        let mut d = descendants_in(&parents, 10);
        d.sort();
        assert_eq!(d, vec![11, 12, 13]);
        assert!(descendants_in(&parents, 12).is_empty());
    }

    #[test]
    fn threads_are_counted_from_the_task_directory() {
        // Other tests run on threads of their own: only "some" is certain here, and a
        // thread of ours that exists while we look is counted.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let n = thread_count().expect("procfs is mounted");
        assert!(n >= 2, "at least the test's thread and ours: {n}");
        drop(tx);
        t.join().unwrap();
    }
}
