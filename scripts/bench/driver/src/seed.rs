//! Seeding homes with many tasks through the storage crate's public API, as the engine
//! would have left them: each task inserted with its creation line, claimed with its
//! start line and finished with its final line (three log lines per finished task), in
//! big batches. No SQL: the driver only uses `stask_storage::Store`.

use std::time::{Duration, Instant};

use stask_storage::{Claim, Finish, LogLine, NewTask, Outcome, Priority, Store, TaskRecord};

use crate::util::{Ctx, Res};

/// Tasks inserted per `insert_tasks` call while seeding.
const INSERT_BATCH: usize = 20_000;

/// Tasks claimed (and then finished) per transaction while seeding.
const CLAIM_BATCH: usize = 5_000;

/// Owner id of the seeding claims.
const OWNER: &str = "bench/seed";

/// How a seeded task ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    Completed,
    Failed,
    Cancelled,
    /// Its one attempt failed and it waits for a retry far in the future: pending, and
    /// never claimed while the benchmark runs.
    Pending,
}

/// How many tasks of each fate a seeding left.
#[derive(Debug, Clone, Copy, Default)]
pub struct Seeded {
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub pending: i64,
    /// Wall time of the inserts and of the claims + finishes.
    pub insert: Duration,
    pub finish: Duration,
}

impl Seeded {
    pub fn total(&self) -> i64 {
        self.completed + self.failed + self.cancelled + self.pending
    }
}

/// The `pending` creation line `tasks create` writes.
pub fn creation_line() -> LogLine {
    LogLine::new("pending", 0, 0, 0, "", "Task created (priority normal)")
}

/// The start line the engine stores with a claim.
pub fn start_line(t: &TaskRecord) -> LogLine {
    LogLine::new(
        "running",
        0,
        0,
        0,
        "",
        &format!("Started attempt {} of {}", t.attempts, t.max_attempts),
    )
}

/// A no-op demo task created at `at` (ms).
pub fn noop_task(at: i64) -> NewTask {
    NewTask {
        limit: None,
        parent: None,
        worker: "demo".into(),
        action: "noop".into(),
        data: "{}".into(),
        priority: Priority::Normal,
        max_attempts: 3,
        started_by: None,
        run_after: at,
        created_at: at,
    }
}

/// The finish of a claimed task with `fate`, at `at` (ms), with its final line, as the
/// engine records it.
pub fn finish(id: i64, owner: &str, fate: Fate, at: i64) -> Finish {
    let (outcome, status, message) = match fate {
        Fate::Completed => (
            Outcome::Completed {
                result: "null".into(),
            },
            "completed",
            "Task completed successfully (1ms)".to_owned(),
        ),
        Fate::Failed => (
            Outcome::Failed {
                error: "failed on purpose".into(),
                retry_at: None,
            },
            "failed",
            "Task failed after 1ms: failed on purpose".to_owned(),
        ),
        Fate::Cancelled => (
            Outcome::Cancelled {
                message: "Task cancelled after 1ms".into(),
            },
            "cancelled",
            "Task cancelled after 1ms".to_owned(),
        ),
        Fate::Pending => (
            Outcome::Failed {
                error: "failed on purpose".into(),
                // A year ahead: pending, but never due while the benchmark runs.
                retry_at: Some(at + 365 * 86_400_000),
            },
            "pending",
            "Attempt 1 of 3 failed: failed on purpose; retrying in 1y".to_owned(),
        ),
    };
    let progress = if fate == Fate::Completed { 100 } else { 0 };
    Finish {
        id,
        owner: owner.to_owned(),
        outcome,
        progress,
        processed: 0,
        total: 0,
        message: message.clone(),
        at,
        lines: vec![LogLine::new(status, progress as u8, 0, 0, "0s", &message)],
    }
}

/// Inserts `n` no-op demo tasks created at `at` (ms), then claims and finishes every
/// one of them: the `i`-th claimed (in id order) gets `fate(i)`. Finishes are stored
/// with the next claim, in one transaction, as the engine does; each task ends with
/// three log lines. The home's demo worker must be registered and active.
pub fn seed(store: &mut dyn Store, n: usize, at: i64, fate: impl Fn(usize) -> Fate) -> Res<Seeded> {
    let mut out = Seeded::default();
    let t = Instant::now();
    let task = noop_task(at);
    let creation = creation_line();
    let mut left = n;
    while left > 0 {
        let k = left.min(INSERT_BATCH);
        let ids = store
            .insert_tasks(&task, k, &creation)
            .ctx("insert tasks")?;
        if ids.len() != k {
            return Err(format!("insert_tasks stored {} of {k} tasks", ids.len()));
        }
        left -= k;
    }
    out.insert = t.elapsed();
    let t = Instant::now();
    let mut finishes: Vec<Finish> = Vec::new();
    let mut claimed_so_far = 0usize;
    loop {
        let limit = CLAIM_BATCH.min(n - claimed_so_far);
        let (applied, claimed) = store
            .claim(&Claim {
                finishes: &finishes,
                owner: OWNER,
                // Claimed when they were created: the tasks are due then (run_after = at).
                now: at,
                limit,
                excluded_workers: &[],
                start_line: &start_line,
            })
            .ctx("claim")?;
        if applied.iter().any(|a| !a) {
            return Err("a seeded task's finish did not apply".into());
        }
        if claimed.is_empty() {
            break;
        }
        finishes = claimed
            .iter()
            .enumerate()
            .map(|(j, c)| {
                let f = fate(claimed_so_far + j);
                match f {
                    Fate::Completed => out.completed += 1,
                    Fate::Failed => out.failed += 1,
                    Fate::Cancelled => out.cancelled += 1,
                    Fate::Pending => out.pending += 1,
                }
                finish(c.task.id, OWNER, f, at + 1)
            })
            .collect();
        claimed_so_far += claimed.len();
        if claimed_so_far >= n {
            // The last batch's finishes, on their own (a claim of nothing).
            let (applied, _) = store
                .claim(&Claim {
                    finishes: &finishes,
                    owner: OWNER,
                    now: at,
                    limit: 0,
                    excluded_workers: &[],
                    start_line: &start_line,
                })
                .ctx("finish")?;
            if applied.iter().any(|a| !a) {
                return Err("a seeded task's finish did not apply".into());
            }
            break;
        }
    }
    out.finish = t.elapsed();
    if claimed_so_far != n {
        return Err(format!(
            "seeding claimed {claimed_so_far} of {n} tasks (were there other pending tasks?)"
        ));
    }
    Ok(out)
}

/// The mix of a long-running installation: 90 % completed, 5 % failed, 1 % cancelled,
/// 4 % pending, spread over the ids.
pub fn installation_mix(i: usize) -> Fate {
    match i % 100 {
        0..=89 => Fate::Completed,
        90..=94 => Fate::Failed,
        95 => Fate::Cancelled,
        _ => Fate::Pending,
    }
}
