//! Clean-up: removing old finished tasks with their logs and result files, in short
//! batches so the queue never waits long behind it, then giving the freed space back.

use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use stask_storage::{now_ms, Status, Store};

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

/// Deletes tasks with the given final statuses that finished more than `older_than`
/// ago, with their logs and result files, then gives the space back.
pub fn clean(
    store: &mut dyn Store,
    older_than: Duration,
    statuses: &[Status],
) -> Result<CleanReport> {
    let mut report = CleanReport::default();
    let cutoff = now_ms() - older_than.as_millis() as i64;
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
