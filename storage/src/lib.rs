//! # stask-storage
//!
//! Everything stask keeps, behind one boundary: tasks and their claims, progress logs,
//! result files, workers, schedules, users / sessions / tokens, statistics, owner
//! leases and wake-ups. A task lives in one place, its store, with everything it leaves
//! behind, and every change of a task's status is stored with the log line that tells
//! it in one transaction.
//!
//! The boundary is a set of traits, one per concept ([`TaskQueue`], [`TaskSearch`],
//! [`ProgressLogs`], [`ResultFiles`], [`Registry`], [`Schedules`], [`Accounts`],
//! [`Statistics`], [`Leases`], [`Wakeups`]), gathered in [`Store`]. The host only ever
//! holds a `Box<dyn Store>` from [`open`], so nothing above this crate knows which
//! database it talks to. SQL lives in the backends only ([`sqlite`], [`postgres`]); the
//! [`conformance`] suite states what every backend must do and runs against each.

#![forbid(unsafe_code)]

mod accounts;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod error;
mod files;
mod hosts;
mod leases;
mod limits;
pub mod log_line;
mod logs;
pub mod postgres;
mod queue;
mod registry;
mod schedules;
mod search;
pub mod sqlite;
mod statistics;
mod wakeups;
mod workflows;

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

pub use accounts::{Accounts, SessionRecord, TokenRecord, UserRecord, MAX_THROTTLE_KEY_BYTES};
pub use error::{ErrorKind, StoreError};
pub use files::{PutFileError, ResultFileInfo, ResultFiles, RESULT_CHUNK_BYTES};
pub use hosts::{HostRecord, Hosts};
pub use leases::Leases;
pub use limits::{
    LimitRule, LimitUsage, Limits, TaskLimit, PARKED_UNTIL_RELEASED, PARK_RECHECK_MS,
};
pub use log_line::{escape_text, LogLine, StoredLine};
pub use logs::ProgressLogs;
pub use queue::{
    dependency_cancel_message, After, AfterInsert, Dependencies, UniqueAfterInsert,
    WAITING_FOR_DEPENDENCIES,
};
pub use queue::{
    CancelResult, Claim, ClaimedTask, ClaimedWorker, Finish, Inserted, NewTask, Outcome, Priority,
    ProgressUpdate, RetryResult, RunningTask, StartLine, Status, StatusCounts, TaskFilter,
    TaskQueue, TaskRecord, Uniqueness,
};
pub use registry::{
    LibraryFingerprint, Registry, RemovedWorker, Restoration, Restorer, WorkerMetadata,
    WorkerRecord,
};
pub use schedules::{
    FireOutcome, Firing, ScheduleRecord, Schedules, SCHEDULE_MAX_ATTEMPTS, SCHEDULE_STARTED_BY,
};
pub use search::{TaskPage, TaskQuery, TaskSearch};
pub use statistics::{
    bucket_floor, Activity, MinuteCounts, Statistics, WorkerCounts, WorkerLastRun, BUCKET_MS,
};
pub use wakeups::{WakeListener, Wakeups};
pub use workflows::{
    NewStep, NewWorkflow, WorkflowCancel, WorkflowDetail, WorkflowRecord, WorkflowRetry,
    WorkflowStep, Workflows,
};

/// A store: every storage concept of stask, from one backend. Hold it as
/// `Box<dyn Store>`; one per thread (a store is `Send`, not shared).
pub trait Store:
    TaskQueue
    + TaskSearch
    + ProgressLogs
    + ResultFiles
    + Registry
    + Schedules
    + Accounts
    + Statistics
    + Leases
    + Limits
    + Hosts
    + Wakeups
    + Workflows
    + Send
{
    /// The schema version the database is at.
    fn schema_version(&self) -> Result<i64, StoreError>;

    /// A short description for messages: the backend and where its data is.
    fn describe(&self) -> String;

    /// Whether several hosts may share this store (each with its own plugins
    /// directory), so a library missing here may be held by another host.
    fn is_shared(&self) -> bool {
        false
    }

    /// Files of this backend on this machine that nothing else in the process may
    /// open: for SQLite, closing any descriptor of the database (or its WAL and
    /// shared-memory files) releases every lock the process holds on it. The host's
    /// result-file ingest refuses these files before opening anything.
    fn private_files(&self) -> Vec<std::path::PathBuf>;

    /// Checks the stored data for damage (SQLite: `PRAGMA quick_check`). Returns what is
    /// wrong, one entry per problem found; empty when the data is sound. An error means
    /// the check itself could not run.
    fn check_integrity(&self) -> Result<Vec<String>, StoreError>;

    /// Replaces the settings of several workers in one transaction, each only while its
    /// stored settings are still exactly [`SettingsSwap::expected`]: every change is
    /// stored, or none is. Returns false, having changed nothing, when a worker is gone
    /// or its settings changed since they were read. (Re-encrypting every secret with a
    /// new key must never leave some secrets under the old key and some under the new.)
    fn swap_worker_settings(&mut self, swaps: &[SettingsSwap]) -> Result<bool, StoreError>;
}

/// One worker's change in [`Store::swap_worker_settings`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsSwap {
    /// The worker.
    pub identifier: String,
    /// Its settings JSON as read before the change.
    pub expected: String,
    /// Its new settings JSON.
    pub settings: String,
}

/// Opens (creating if needed) the store at `location` and brings its schema up to
/// date. A location is a PostgreSQL URL (`postgres://…` or `postgresql://…`),
/// `sqlite:PATH`, or a SQLite database file path.
pub fn open(location: &str) -> Result<Box<dyn Store>, StoreError> {
    if is_postgres(location) {
        return Ok(Box::new(postgres::PgStore::open(location)?));
    }
    let path = location.strip_prefix("sqlite:").unwrap_or(location);
    open_sqlite(Path::new(path))
}

/// Whether `location` names a PostgreSQL database.
pub fn is_postgres(location: &str) -> bool {
    location.starts_with("postgres://") || location.starts_with("postgresql://")
}

/// Opens (creating if needed) the SQLite database at `path` (any path, also one that is
/// not valid UTF-8) and brings its schema up to date.
pub fn open_sqlite(path: &Path) -> Result<Box<dyn Store>, StoreError> {
    Ok(Box::new(sqlite::SqliteStore::open(path)?))
}

/// Milliseconds since the Unix epoch: the unit of every timestamp in the store.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
