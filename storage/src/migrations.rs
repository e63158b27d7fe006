//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Each entry upgrades from version `index` to `index + 1` and runs in its own
//! transaction, so a failed upgrade leaves the previous version intact. Never edit a
//! released migration; append a new one.

use rusqlite::Connection;

use crate::store::{Context, StoreError};

const MIGRATIONS: &[&str] = &[
    // 1: the worker registry.
    "CREATE TABLE workers (
        identifier      TEXT PRIMARY KEY,
        scope           TEXT NOT NULL DEFAULT '',
        title           TEXT NOT NULL,
        description     TEXT NOT NULL DEFAULT '',
        icon            TEXT NOT NULL DEFAULT 'gear',
        version         TEXT NOT NULL DEFAULT '',
        library_path    TEXT NOT NULL,
        library_size    INTEGER NOT NULL,
        library_mtime_ns INTEGER NOT NULL,
        library_sha256  TEXT NOT NULL,
        manifest        TEXT NOT NULL,
        settings        TEXT NOT NULL DEFAULT '{}',
        schedule        TEXT,
        active          INTEGER NOT NULL DEFAULT 0,
        position        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE INDEX workers_library ON workers(library_path);",
    // 2: the task queue.
    "CREATE TABLE tasks (
        id              INTEGER PRIMARY KEY,
        worker          TEXT NOT NULL,
        action          TEXT NOT NULL,
        status          TEXT NOT NULL CHECK (status IN
                            ('pending', 'running', 'completed', 'failed', 'cancelled')),
        priority        INTEGER NOT NULL DEFAULT 1,
        progress        INTEGER NOT NULL DEFAULT 0,
        processed       INTEGER NOT NULL DEFAULT 0,
        total           INTEGER NOT NULL DEFAULT 0,
        message         TEXT NOT NULL DEFAULT '',
        data            TEXT NOT NULL DEFAULT '{}',
        result          TEXT,
        error           TEXT,
        started_by      TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        max_attempts    INTEGER NOT NULL DEFAULT 3,
        run_after       INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL,
        started_at      INTEGER,
        finished_at     INTEGER,
        heartbeat_at    INTEGER,
        owner           TEXT,
        cancel_requested INTEGER NOT NULL DEFAULT 0
    );
    -- The claim query walks this partial index in claim order.
    CREATE INDEX tasks_claim ON tasks(priority, id) WHERE status = 'pending';
    CREATE INDEX tasks_status ON tasks(status, finished_at);
    CREATE INDEX tasks_worker ON tasks(worker, id);
    CREATE INDEX tasks_owner ON tasks(owner) WHERE owner IS NOT NULL;",
    // 3: worker schedules, one per worker. The row goes with its worker (a schedule of
    // a removed worker could never fire); next_run_at is NULL when nothing is due
    // (paused, or a one-off that already ran).
    "CREATE TABLE schedules (
        worker          TEXT PRIMARY KEY
                            REFERENCES workers(identifier) ON DELETE CASCADE,
        spec            TEXT NOT NULL,
        data            TEXT NOT NULL DEFAULT '{}',
        paused          INTEGER NOT NULL DEFAULT 0,
        next_run_at     INTEGER,
        last_run_at     INTEGER,
        last_task_id    INTEGER,
        skipped_count   INTEGER NOT NULL DEFAULT 0,
        last_skip_at    INTEGER,
        last_skip_reason TEXT,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    -- The service's wake-up query reads the smallest next_run_at of unpaused rows.
    CREATE INDEX schedules_due ON schedules(next_run_at)
        WHERE paused = 0 AND next_run_at IS NOT NULL;",
];

/// The schema version this build expects.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .context("read schema version")?;
    if current > LATEST {
        return Err(StoreError::new(
            format!(
                "database schema version {current} is newer than this stask supports ({LATEST}); upgrade stask"
            ),
            rusqlite::Error::InvalidQuery,
        ));
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        // IMMEDIATE takes the write lock first, so two processes opening a fresh
        // database at once cannot both run the same migration.
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin migration")?;
        let now: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .context("read schema version")?;
        if now >= version {
            continue;
        }
        tx.execute_batch(sql)
            .context(&format!("apply migration {version}"))?;
        tx.pragma_update(None, "user_version", version)
            .context("record schema version")?;
        tx.commit().context("commit migration")?;
    }
    Ok(())
}
