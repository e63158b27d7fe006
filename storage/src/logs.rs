//! Reading progress logs. Lines are only ever written by the queue's operations, in
//! the transaction of the state change they describe (see [`crate::TaskQueue`]).

use crate::error::StoreError;
use crate::log_line::StoredLine;

/// The progress logs of a store.
pub trait ProgressLogs {
    /// Lines of task `task` after sequence number `after` (0: from the start), in
    /// order, at most `limit`. Live views pass the last `seq` they received to resume.
    fn log_lines(&self, task: i64, after: u64, limit: usize)
        -> Result<Vec<StoredLine>, StoreError>;

    /// The last line of task `task`'s log.
    fn last_log_line(&self, task: i64) -> Result<Option<StoredLine>, StoreError>;

    /// The last `count` lines of task `task`'s log, oldest first, and how many lines
    /// the log has in all (read without fetching the others).
    fn log_tail(&self, task: i64, count: usize) -> Result<(Vec<StoredLine>, u64), StoreError>;
}
