//! # stask-storage
//!
//! Everything stask keeps on disk, behind one boundary so another backend can replace
//! it: the SQLite database ([`Store`]) and the append-only progress logs.
//!
//! All SQL lives in this crate. The host sees typed records and operations, never
//! statements, so a PostgreSQL backend can be added later without touching it.

mod migrations;
pub mod progress_log;
mod schedules;
mod stats;
mod store;
mod task_query;
mod tasks;
#[cfg(test)]
mod test_support;
mod users;
mod workers;

pub use schedules::{
    FireOutcome, Firing, ScheduleRecord, SCHEDULE_MAX_ATTEMPTS, SCHEDULE_STARTED_BY,
};
pub use stats::{bucket_floor, Activity, WorkerCounts, WorkerLastRun, BUCKET_MS};
pub use store::{now_ms, Store, StoreError};
pub use task_query::{TaskPage, TaskQuery};
pub use tasks::{
    CancelResult, ClaimedTask, ClaimedWorker, Finish, NewTask, Outcome, Priority, ProgressUpdate,
    Status, StatusCounts, TaskFilter, TaskRecord, NEW_TASK_HIDDEN_MS,
};
pub use users::{SessionRecord, TokenRecord, UserRecord};
pub use workers::{LibraryFingerprint, WorkerMetadata, WorkerRecord};
