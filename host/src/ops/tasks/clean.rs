//! Clean-up: removing old finished tasks with their logs and result files, in short
//! batches so the queue never waits long behind it, then giving the freed space back.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use stask_storage::{now_ms, Status, Store};

use crate::problem::Problem;
use crate::task_log::parse_age;

/// The age cutoff when none is given: finished more than 30 days ago.
pub const DEFAULT_OLDER_THAN: &str = "30d";

/// Tasks deleted per transaction: each batch holds the write lock for a few
/// milliseconds, so claims and new tasks go on between batches.
const BATCH: usize = 2_000;

/// Space given back per step, in bytes.
const RELEASE_STEP: u64 = 8 << 20;

/// What a clean-up removed.
#[derive(Debug, Default, Serialize)]
pub struct CleanReport {
    /// Tasks deleted (with their logs and result files).
    pub deleted_tasks: usize,
    /// Bytes of database space given back to the file system.
    pub released_bytes: u64,
}

/// What to clean up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CleanRequest {
    /// Only tasks that finished longer ago than this.
    pub older_than: Duration,
    /// Failed and cancelled tasks too, not only completed ones.
    pub include_failed: bool,
}

impl CleanRequest {
    /// Reads a request given by a person: an age like `30d`, `12h` or `90m`
    /// ([`DEFAULT_OLDER_THAN`] when `None`), as a [`Problem`] about `older_than` when
    /// wrong.
    pub fn parse(older_than: Option<&str>, include_failed: bool) -> Result<CleanRequest, Problem> {
        let text = older_than.unwrap_or(DEFAULT_OLDER_THAN);
        let older_than =
            parse_age(text).map_err(|e| Problem::invalid("older_than", "invalid_age", e))?;
        Ok(CleanRequest {
            older_than,
            include_failed,
        })
    }

    /// The final statuses it removes.
    pub fn statuses(&self) -> &'static [Status] {
        if self.include_failed {
            &[Status::Completed, Status::Failed, Status::Cancelled]
        } else {
            &[Status::Completed]
        }
    }
}

/// Deletes the tasks `req` names with their logs and result files, in batches, then
/// gives the space back.
pub fn clean(store: &mut dyn Store, req: &CleanRequest) -> Result<CleanReport> {
    clean_before(store, req.statuses(), cutoff(now_ms(), req.older_than))
}

/// The finish time (ms) before which tasks `older_than` at `now` finished. Saturates
/// instead of wrapping: an age longer than the clock reaches back gives the earliest
/// time, which removes nothing, never a time in the future, which would remove all.
pub(super) fn cutoff(now: i64, older_than: Duration) -> i64 {
    let age = i64::try_from(older_than.as_millis()).unwrap_or(i64::MAX);
    now.saturating_sub(age)
}

/// Deletes the tasks with `statuses` that finished before `cutoff` (ms), then gives
/// the space back.
pub(super) fn clean_before(
    store: &mut dyn Store,
    statuses: &[Status],
    cutoff: i64,
) -> Result<CleanReport> {
    let mut report = CleanReport::default();
    loop {
        let deleted = store.delete_finished_before(statuses, cutoff, BATCH)?;
        report.deleted_tasks += deleted.len();
        if deleted.len() < BATCH {
            break;
        }
    }
    loop {
        let released = store.release_space(RELEASE_STEP)?;
        report.released_bytes += released;
        if released < RELEASE_STEP {
            break;
        }
    }
    Ok(report)
}
