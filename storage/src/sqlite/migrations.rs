//! Versioned schema migrations, tracked in SQLite's `user_version`.
//!
//! Each entry upgrades from version `index` to `index + 1` and runs in its own
//! transaction, so a failed upgrade leaves the previous version intact. Never edit a
//! released migration; append a new one.

use rusqlite::Connection;

use super::Context;
use crate::error::{ErrorKind, StoreError};

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
    // 4: users, browser sessions and API tokens; statistics kept up to date by triggers
    // on tasks (so the dashboard and statistics cost the same with a million tasks as
    // with ten); indexes for the task list's filters.
    //
    // * task_counts: tasks now in the table per (worker, status), with the summed
    //   duration of the last attempt of completed and failed tasks.
    // * task_activity: per 15-minute bucket (ms since the epoch, rounded down) and
    //   worker, tasks created in it and tasks finished in it per final status, with
    //   durations. Buckets of 15 minutes compose into local days and hours in every
    //   timezone in use.
    // * worker_activity: when a task of each worker last finished (kept after clean-up).
    //
    // Every trigger adds a row's contribution or takes it away, so the tables always
    // equal the same aggregates computed from tasks (worker and created_at never
    // change after insert).
    "CREATE TABLE users (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        password_hash   TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        updated_at      INTEGER NOT NULL
    );
    CREATE TABLE sessions (
        id_hash         TEXT PRIMARY KEY,
        user_id         INTEGER NOT NULL REFERENCES users(id) ON DELETE CASCADE,
        csrf_hash       TEXT NOT NULL,
        created_at      INTEGER NOT NULL,
        expires_at      INTEGER NOT NULL
    );
    CREATE INDEX sessions_user ON sessions(user_id);
    CREATE INDEX sessions_expiry ON sessions(expires_at);
    CREATE TABLE api_tokens (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        token_hash      TEXT NOT NULL UNIQUE,
        created_by      TEXT,
        created_at      INTEGER NOT NULL,
        last_used_at    INTEGER,
        revoked_at      INTEGER
    );

    CREATE TABLE task_counts (
        worker          TEXT NOT NULL,
        status          TEXT NOT NULL,
        n               INTEGER NOT NULL DEFAULT 0,
        run_ms          INTEGER NOT NULL DEFAULT 0,
        runs            INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (worker, status)
    ) WITHOUT ROWID;
    CREATE TABLE task_activity (
        bucket          INTEGER NOT NULL,
        worker          TEXT NOT NULL,
        created         INTEGER NOT NULL DEFAULT 0,
        completed       INTEGER NOT NULL DEFAULT 0,
        failed          INTEGER NOT NULL DEFAULT 0,
        cancelled       INTEGER NOT NULL DEFAULT 0,
        run_ms          INTEGER NOT NULL DEFAULT 0,
        runs            INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (bucket, worker)
    ) WITHOUT ROWID;
    CREATE TABLE worker_activity (
        worker          TEXT PRIMARY KEY,
        last_finished_at INTEGER
    ) WITHOUT ROWID;

    INSERT INTO task_counts (worker, status, n, run_ms, runs)
        SELECT worker, CASE WHEN status = 'running' THEN 'pending' ELSE status END, COUNT(*),
            COALESCE(SUM(CASE WHEN status IN ('completed', 'failed')
                AND started_at IS NOT NULL AND finished_at IS NOT NULL
                THEN finished_at - started_at END), 0),
            SUM(status IN ('completed', 'failed')
                AND started_at IS NOT NULL AND finished_at IS NOT NULL)
        FROM tasks GROUP BY 1, 2;
    INSERT INTO task_activity (bucket, worker, created)
        SELECT created_at / 900000 * 900000, worker, COUNT(*) FROM tasks
        GROUP BY 1, 2;
    INSERT INTO task_activity (bucket, worker, completed, failed, cancelled, run_ms, runs)
        SELECT finished_at / 900000 * 900000, worker,
            SUM(status = 'completed'), SUM(status = 'failed'), SUM(status = 'cancelled'),
            COALESCE(SUM(CASE WHEN status IN ('completed', 'failed') AND started_at IS NOT NULL
                THEN finished_at - started_at END), 0),
            SUM(status IN ('completed', 'failed') AND started_at IS NOT NULL)
        FROM tasks
        WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at IS NOT NULL
        GROUP BY 1, 2
        ON CONFLICT (bucket, worker) DO UPDATE SET completed = excluded.completed,
            failed = excluded.failed, cancelled = excluded.cancelled,
            run_ms = excluded.run_ms, runs = excluded.runs;
    INSERT INTO worker_activity (worker, last_finished_at)
        SELECT worker, MAX(finished_at) FROM tasks
        WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at IS NOT NULL
        GROUP BY worker;

    -- Triggers with WHEN clauses, so each change runs only the statements it needs, and
    -- no IN lists: SQLite builds a temporary table for an IN list on every row a trigger
    -- fires for, which tripled the cost of a claim. Running tasks are counted in the
    -- 'pending' row of task_counts (readers split it with a count of the few running
    -- rows), so a claim, the engine's most frequent write, runs no trigger statement.
    CREATE TRIGGER tasks_stats_insert AFTER INSERT ON tasks BEGIN
        INSERT INTO task_counts (worker, status, n, run_ms, runs)
            VALUES (NEW.worker, CASE WHEN NEW.status = 'running' THEN 'pending' ELSE NEW.status END, 1,
                CASE WHEN (NEW.status = 'completed' OR NEW.status = 'failed')
                    AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
                    THEN NEW.finished_at - NEW.started_at ELSE 0 END,
                (NEW.status = 'completed' OR NEW.status = 'failed')
                    AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL)
            ON CONFLICT (worker, status) DO UPDATE SET n = n + 1,
                run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs;
        INSERT INTO task_activity (bucket, worker, created)
            VALUES (NEW.created_at / 900000 * 900000, NEW.worker, 1)
            ON CONFLICT (bucket, worker) DO UPDATE SET created = created + 1;
    END;
    CREATE TRIGGER tasks_stats_insert_finished AFTER INSERT ON tasks
    WHEN (NEW.status = 'completed' OR NEW.status = 'failed' OR NEW.status = 'cancelled')
        AND NEW.finished_at IS NOT NULL
    BEGIN
        INSERT INTO task_activity (bucket, worker, completed, failed, cancelled, run_ms, runs)
            VALUES (NEW.finished_at / 900000 * 900000, NEW.worker,
                NEW.status = 'completed', NEW.status = 'failed', NEW.status = 'cancelled',
                CASE WHEN NEW.status <> 'cancelled' AND NEW.started_at IS NOT NULL
                    THEN NEW.finished_at - NEW.started_at ELSE 0 END,
                NEW.status <> 'cancelled' AND NEW.started_at IS NOT NULL)
            ON CONFLICT (bucket, worker) DO UPDATE SET
                completed = completed + excluded.completed, failed = failed + excluded.failed,
                cancelled = cancelled + excluded.cancelled,
                run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs;
        INSERT INTO worker_activity (worker, last_finished_at) VALUES (NEW.worker, NEW.finished_at)
            ON CONFLICT (worker) DO UPDATE SET
                last_finished_at = MAX(COALESCE(last_finished_at, 0), excluded.last_finished_at);
    END;
    CREATE TRIGGER tasks_stats_delete AFTER DELETE ON tasks BEGIN
        UPDATE task_counts SET n = n - 1,
            run_ms = run_ms - CASE WHEN (OLD.status = 'completed' OR OLD.status = 'failed')
                AND OLD.started_at IS NOT NULL AND OLD.finished_at IS NOT NULL
                THEN OLD.finished_at - OLD.started_at ELSE 0 END,
            runs = runs - ((OLD.status = 'completed' OR OLD.status = 'failed')
                AND OLD.started_at IS NOT NULL AND OLD.finished_at IS NOT NULL)
            WHERE worker = OLD.worker AND status = CASE WHEN OLD.status = 'running' THEN 'pending' ELSE OLD.status END;
        UPDATE task_activity SET created = created - 1
            WHERE bucket = OLD.created_at / 900000 * 900000 AND worker = OLD.worker;
    END;
    CREATE TRIGGER tasks_stats_delete_finished AFTER DELETE ON tasks
    WHEN (OLD.status = 'completed' OR OLD.status = 'failed' OR OLD.status = 'cancelled')
        AND OLD.finished_at IS NOT NULL
    BEGIN
        UPDATE task_activity SET
                completed = completed - (OLD.status = 'completed'),
                failed = failed - (OLD.status = 'failed'),
                cancelled = cancelled - (OLD.status = 'cancelled'),
                run_ms = run_ms - CASE WHEN OLD.status <> 'cancelled' AND OLD.started_at IS NOT NULL
                    THEN OLD.finished_at - OLD.started_at ELSE 0 END,
                runs = runs - (OLD.status <> 'cancelled' AND OLD.started_at IS NOT NULL)
            WHERE bucket = OLD.finished_at / 900000 * 900000 AND worker = OLD.worker;
    END;
    CREATE TRIGGER tasks_stats_update AFTER UPDATE OF status, started_at, finished_at ON tasks
    WHEN (CASE WHEN OLD.status = 'running' THEN 'pending' ELSE OLD.status END) IS NOT (CASE WHEN NEW.status = 'running' THEN 'pending' ELSE NEW.status END)
        OR ((OLD.status = 'completed' OR OLD.status = 'failed'
                OR NEW.status = 'completed' OR NEW.status = 'failed')
            AND (OLD.started_at IS NOT NEW.started_at OR OLD.finished_at IS NOT NEW.finished_at))
    BEGIN
        UPDATE task_counts SET n = n - 1,
            run_ms = run_ms - CASE WHEN (OLD.status = 'completed' OR OLD.status = 'failed')
                AND OLD.started_at IS NOT NULL AND OLD.finished_at IS NOT NULL
                THEN OLD.finished_at - OLD.started_at ELSE 0 END,
            runs = runs - ((OLD.status = 'completed' OR OLD.status = 'failed')
                AND OLD.started_at IS NOT NULL AND OLD.finished_at IS NOT NULL)
            WHERE worker = OLD.worker AND status = CASE WHEN OLD.status = 'running' THEN 'pending' ELSE OLD.status END;
        INSERT INTO task_counts (worker, status, n, run_ms, runs)
            VALUES (NEW.worker, CASE WHEN NEW.status = 'running' THEN 'pending' ELSE NEW.status END, 1,
                CASE WHEN (NEW.status = 'completed' OR NEW.status = 'failed')
                    AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL
                    THEN NEW.finished_at - NEW.started_at ELSE 0 END,
                (NEW.status = 'completed' OR NEW.status = 'failed')
                    AND NEW.started_at IS NOT NULL AND NEW.finished_at IS NOT NULL)
            ON CONFLICT (worker, status) DO UPDATE SET n = n + 1,
                run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs;
    END;
    CREATE TRIGGER tasks_stats_update_unfinished AFTER UPDATE OF status, started_at, finished_at ON tasks
    WHEN (OLD.status = 'completed' OR OLD.status = 'failed' OR OLD.status = 'cancelled')
        AND OLD.finished_at IS NOT NULL
        AND (OLD.status IS NOT NEW.status OR OLD.started_at IS NOT NEW.started_at
            OR OLD.finished_at IS NOT NEW.finished_at)
    BEGIN
        UPDATE task_activity SET
                completed = completed - (OLD.status = 'completed'),
                failed = failed - (OLD.status = 'failed'),
                cancelled = cancelled - (OLD.status = 'cancelled'),
                run_ms = run_ms - CASE WHEN OLD.status <> 'cancelled' AND OLD.started_at IS NOT NULL
                    THEN OLD.finished_at - OLD.started_at ELSE 0 END,
                runs = runs - (OLD.status <> 'cancelled' AND OLD.started_at IS NOT NULL)
            WHERE bucket = OLD.finished_at / 900000 * 900000 AND worker = OLD.worker;
    END;
    CREATE TRIGGER tasks_stats_update_finished AFTER UPDATE OF status, started_at, finished_at ON tasks
    WHEN (NEW.status = 'completed' OR NEW.status = 'failed' OR NEW.status = 'cancelled')
        AND NEW.finished_at IS NOT NULL
        AND (OLD.status IS NOT NEW.status OR OLD.started_at IS NOT NEW.started_at
            OR OLD.finished_at IS NOT NEW.finished_at)
    BEGIN
        INSERT INTO task_activity (bucket, worker, completed, failed, cancelled, run_ms, runs)
            VALUES (NEW.finished_at / 900000 * 900000, NEW.worker,
                NEW.status = 'completed', NEW.status = 'failed', NEW.status = 'cancelled',
                CASE WHEN NEW.status <> 'cancelled' AND NEW.started_at IS NOT NULL
                    THEN NEW.finished_at - NEW.started_at ELSE 0 END,
                NEW.status <> 'cancelled' AND NEW.started_at IS NOT NULL)
            ON CONFLICT (bucket, worker) DO UPDATE SET
                completed = completed + excluded.completed, failed = failed + excluded.failed,
                cancelled = cancelled + excluded.cancelled,
                run_ms = run_ms + excluded.run_ms, runs = runs + excluded.runs;
        INSERT INTO worker_activity (worker, last_finished_at) VALUES (NEW.worker, NEW.finished_at)
            ON CONFLICT (worker) DO UPDATE SET
                last_finished_at = MAX(COALESCE(last_finished_at, 0), excluded.last_finished_at);
    END;

    -- The task list's created-date filter and its started_by (user) filter.
    CREATE INDEX tasks_created ON tasks(created_at);
    CREATE INDEX tasks_started_by ON tasks(started_by, id) WHERE started_by IS NOT NULL;",
    // 5: every query by owner also asks for status = 'running', which tasks_status
    // finds among the few running rows; the owner index only cost each claim an insert
    // and each finish a delete.
    "DROP INDEX IF EXISTS tasks_owner;",
    // 6: one store for everything a task leaves behind.
    //
    // * task_logs: every progress-log line, by task and sequence number (from 1), in
    //   the exact text format; written in the transaction of the change it tells.
    // * result_files / result_chunks: result files ingested when an attempt ends, in
    //   chunks of at most 1 MiB; a file is listed once `complete`.
    // * owners: the lease of every process that claims tasks (its last renewal).
    // * meta: next_task_id, so ids are never reused, also after the newest tasks are
    //   deleted; next_line_seq, the store-wide counter numbering log lines (a task's
    //   lines are in order of their numbers); legacy_files_imported, set once the log
    //   files and result directories of an older stask are in the database.
    "CREATE TABLE task_logs (
        task_id         INTEGER NOT NULL,
        seq             INTEGER NOT NULL,
        line            TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    ) WITHOUT ROWID;
    CREATE TABLE result_files (
        id              INTEGER PRIMARY KEY,
        task_id         INTEGER NOT NULL,
        name            TEXT NOT NULL,
        size            INTEGER NOT NULL DEFAULT 0,
        complete        INTEGER NOT NULL DEFAULT 0,
        created_at      INTEGER NOT NULL
    );
    CREATE INDEX result_files_task ON result_files(task_id, name);
    CREATE TABLE result_chunks (
        file_id         INTEGER NOT NULL,
        idx             INTEGER NOT NULL,
        data            BLOB NOT NULL,
        PRIMARY KEY (file_id, idx)
    );
    CREATE TABLE owners (
        id              TEXT PRIMARY KEY,
        renewed_at      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE meta (
        key             TEXT PRIMARY KEY,
        value           INTEGER NOT NULL
    ) WITHOUT ROWID;
    INSERT INTO meta (key, value) SELECT 'next_task_id', COALESCE(MAX(id), 0) + 1 FROM tasks;
    INSERT INTO meta (key, value) VALUES ('next_line_seq', 1);
    INSERT INTO meta (key, value) VALUES ('legacy_files_imported', 0);",
    // 7: API tokens may have the `metrics` role (scrapers of GET /metrics). SQLite
    // cannot change a CHECK constraint, so the table is rebuilt with its rows.
    "CREATE TABLE api_tokens_new (
        id              INTEGER PRIMARY KEY,
        name            TEXT NOT NULL UNIQUE,
        role            TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer', 'metrics')),
        token_hash      TEXT NOT NULL UNIQUE,
        created_by      TEXT,
        created_at      INTEGER NOT NULL,
        last_used_at    INTEGER,
        revoked_at      INTEGER
    );
    INSERT INTO api_tokens_new (id, name, role, token_hash, created_by, created_at,
            last_used_at, revoked_at)
        SELECT id, name, role, token_hash, created_by, created_at, last_used_at, revoked_at
        FROM api_tokens;
    DROP TABLE api_tokens;
    ALTER TABLE api_tokens_new RENAME TO api_tokens;",
    // 8: why stask made a worker inactive (its library was replaced by a file with
    // other contents while it was registered): shown until an operator activates it.
    "ALTER TABLE workers ADD COLUMN inactive_reason TEXT;",
    // The engines sharing the store and the libraries each holds (crate::Hosts).
    "CREATE TABLE hosts (
        id              TEXT PRIMARY KEY,
        name            TEXT NOT NULL,
        version         TEXT NOT NULL,
        capacity        INTEGER NOT NULL,
        libraries       TEXT NOT NULL DEFAULT '[]',
        started_at      INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // 10: failed password checks per throttling key (a user name, a client address),
    // shared by every process of the home, so a login lock-out holds for all of them.
    // One row per failure; rows older than the window are deleted as failures are
    // recorded.
    "CREATE TABLE login_failures (
        id              INTEGER PRIMARY KEY,
        key             TEXT NOT NULL,
        at              INTEGER NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures(key, at);
    CREATE INDEX login_failures_at ON login_failures(at);",
    // 11: the free-text index of the task list (see `texts.rs`). Every distinct
    // (worker, action, message) of the tasks that are not running, once, with a trigram
    // index over it; each task names its text (`text_id`, NULL while it runs). Written
    // by the trigger-less writes themselves and, for every other write, by the triggers
    // below. Existing tasks are given their texts after this step, in batches, from
    // `text_fill_after` up (`texts::fill`); the row goes once all are done.
    "CREATE TABLE task_texts (
        id              INTEGER PRIMARY KEY,
        worker          TEXT NOT NULL,
        action          TEXT NOT NULL,
        message         TEXT NOT NULL,
        UNIQUE (worker, action, message)
    );
    CREATE VIRTUAL TABLE task_texts_fts USING fts5(worker, action, message,
        content = 'task_texts', content_rowid = 'id', tokenize = 'trigram', detail = 'none');
    ALTER TABLE tasks ADD COLUMN text_id INTEGER;
    CREATE INDEX tasks_text ON tasks(text_id) WHERE text_id IS NOT NULL;
    INSERT INTO meta (key, value) VALUES ('text_fill_after', 0);
    INSERT INTO meta (key, value) VALUES ('text_sweep_after', 0);

    -- A text row never changes; the index follows its inserts and deletes.
    CREATE TRIGGER task_texts_index AFTER INSERT ON task_texts BEGIN
        INSERT INTO task_texts_fts (rowid, worker, action, message)
            VALUES (NEW.id, NEW.worker, NEW.action, NEW.message);
    END;
    CREATE TRIGGER task_texts_unindex AFTER DELETE ON task_texts BEGIN
        INSERT INTO task_texts_fts (task_texts_fts, rowid, worker, action, message)
            VALUES ('delete', OLD.id, OLD.worker, OLD.action, OLD.message);
    END;
    CREATE TRIGGER tasks_text_insert AFTER INSERT ON tasks WHEN NEW.status <> 'running' BEGIN
        INSERT OR IGNORE INTO task_texts (worker, action, message)
            VALUES (NEW.worker, NEW.action, NEW.message);
        UPDATE tasks SET text_id = (SELECT x.id FROM task_texts AS x
                WHERE x.worker = NEW.worker AND x.action = NEW.action AND x.message = NEW.message)
            WHERE id = NEW.id;
    END;
    CREATE TRIGGER tasks_text_update AFTER UPDATE OF worker, action, message, status ON tasks
    WHEN OLD.worker IS NOT NEW.worker OR OLD.action IS NOT NEW.action
        OR OLD.message IS NOT NEW.message
        OR (OLD.status = 'running') IS NOT (NEW.status = 'running')
    BEGIN
        INSERT OR IGNORE INTO task_texts (worker, action, message)
            SELECT NEW.worker, NEW.action, NEW.message WHERE NEW.status <> 'running';
        UPDATE tasks SET text_id = CASE WHEN NEW.status = 'running' THEN NULL
                ELSE (SELECT x.id FROM task_texts AS x WHERE x.worker = NEW.worker
                    AND x.action = NEW.action AND x.message = NEW.message) END
            WHERE id = NEW.id;
    END;",
    // The leadership of the store-wide chores (crate::Leases::try_lead): one row.
    "CREATE TABLE leader (
        name            TEXT PRIMARY KEY,
        holder          TEXT NOT NULL,
        expires_at      INTEGER NOT NULL
    ) WITHOUT ROWID;",
    // Unique tasks (TaskQueue::insert_unique_task): the key a task was created with,
    // NULL for most; the partial index holds only keyed tasks, so it costs the others
    // nothing.
    "ALTER TABLE tasks ADD COLUMN unique_key TEXT;
    CREATE INDEX tasks_unique ON tasks (unique_key, worker, action) WHERE unique_key IS NOT NULL;",
    // Completed and failed tasks per minute of their finish (`minute` = finished_at /
    // 60000), for the dashboard's throughput chart (Statistics::finished_per_minute):
    // counting the tasks themselves cost a read of every task finished in the hour
    // (0.1 s for 100,000). Kept like the other statistics: by these triggers, and by
    // the trigger-less finish and delete batches (finish.rs). Rows whose counts fall to
    // zero are deleted. Written so that it can run again (a test that takes a database
    // back to an older version leaves the table): the counts are rebuilt from the tasks.
    "CREATE TABLE IF NOT EXISTS task_minutes (
        minute          INTEGER PRIMARY KEY,
        completed       INTEGER NOT NULL DEFAULT 0,
        failed          INTEGER NOT NULL DEFAULT 0
    );
    DELETE FROM task_minutes;
    INSERT INTO task_minutes (minute, completed, failed)
        SELECT finished_at / 60000, SUM(status = 'completed'), SUM(status = 'failed')
        FROM tasks
        WHERE status IN ('completed', 'failed') AND finished_at IS NOT NULL
        GROUP BY 1;
    CREATE TRIGGER IF NOT EXISTS tasks_minutes_insert AFTER INSERT ON tasks
    WHEN (NEW.status = 'completed' OR NEW.status = 'failed') AND NEW.finished_at IS NOT NULL
    BEGIN
        INSERT INTO task_minutes (minute, completed, failed)
            VALUES (NEW.finished_at / 60000, NEW.status = 'completed', NEW.status = 'failed')
            ON CONFLICT (minute) DO UPDATE SET completed = completed + excluded.completed,
                failed = failed + excluded.failed;
    END;
    CREATE TRIGGER IF NOT EXISTS tasks_minutes_delete AFTER DELETE ON tasks
    WHEN (OLD.status = 'completed' OR OLD.status = 'failed') AND OLD.finished_at IS NOT NULL
    BEGIN
        UPDATE task_minutes SET completed = completed - (OLD.status = 'completed'),
                failed = failed - (OLD.status = 'failed')
            WHERE minute = OLD.finished_at / 60000;
        DELETE FROM task_minutes
            WHERE minute = OLD.finished_at / 60000 AND completed = 0 AND failed = 0;
    END;
    CREATE TRIGGER IF NOT EXISTS tasks_minutes_update AFTER UPDATE OF status, finished_at ON tasks
    WHEN (OLD.status IS NOT NEW.status OR OLD.finished_at IS NOT NEW.finished_at)
        AND (OLD.status = 'completed' OR OLD.status = 'failed'
            OR NEW.status = 'completed' OR NEW.status = 'failed')
    BEGIN
        UPDATE task_minutes SET completed = completed - (OLD.status = 'completed'),
                failed = failed - (OLD.status = 'failed')
            WHERE minute = OLD.finished_at / 60000
                AND (OLD.status = 'completed' OR OLD.status = 'failed');
        DELETE FROM task_minutes
            WHERE minute = OLD.finished_at / 60000 AND completed = 0 AND failed = 0;
        INSERT INTO task_minutes (minute, completed, failed)
            SELECT NEW.finished_at / 60000, NEW.status = 'completed', NEW.status = 'failed'
            WHERE (NEW.status = 'completed' OR NEW.status = 'failed')
                AND NEW.finished_at IS NOT NULL
            ON CONFLICT (minute) DO UPDATE SET completed = completed + excluded.completed,
                failed = failed + excluded.failed;
    END;",
    // The time each log line was stored (ms since the epoch), for the log view's time
    // column. Lines stored before keep NULL (their time is unknown); the inserts bind
    // it (logs.rs).
    "ALTER TABLE task_logs ADD COLUMN at INTEGER;",
    // What a removed worker leaves behind (Registry::delete_worker): its settings (secret
    // values as stored, encrypted), whether it was active, the hash of its library and
    // its schedule, until a worker with the same identifier is registered again and
    // takes them back (Registry::register_workers). No foreign keys: the worker row is
    // gone, and a remembered schedule outlives it by design.
    "CREATE TABLE removed_workers (
        identifier      TEXT PRIMARY KEY,
        library_sha256  TEXT NOT NULL,
        settings        TEXT NOT NULL,
        active          INTEGER NOT NULL,
        inactive_reason TEXT,
        removed_at      INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE removed_schedules (
        worker          TEXT PRIMARY KEY,
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
    ) WITHOUT ROWID;",
    // Dependencies between tasks: who waits for whom (looked up by the dependency when
    // it ends), and per task how many it still waits for (counted down as they end;
    // a waiting task has `run_after` far in the future, so the claim never sees it).
    "ALTER TABLE tasks ADD COLUMN deps_left INTEGER NOT NULL DEFAULT 0;
    CREATE TABLE task_deps (
        depends_on INTEGER NOT NULL,
        task_id    INTEGER NOT NULL,
        after_any  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (depends_on, task_id)
    ) WITHOUT ROWID;
    CREATE INDEX task_deps_task ON task_deps(task_id);",
    // Limits per key (crate::Limits) and children of tasks.
    //
    // * limit_rules: each worker's limit rules, by rule.
    // * tasks.limit_rule / limit_key: the rule a task falls under and its key, fixed at
    //   creation (NULL for most); tasks_limit_running finds a key's running tasks and
    //   tasks_limit_starts its recent starts, holding only tasks with a key (replaced
    //   by the table limit_starts in a later migration).
    // * tasks.parked: a claim met the task while its key was at its limit; its
    //   run_after says until when. The claim index leaves parked tasks and waiting
    //   dependants out, so a claim never walks past them.
    // * tasks.parent_id: the running task that enqueued it.
    "CREATE TABLE limit_rules (
        worker      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        concurrency INTEGER,
        rate        INTEGER,
        period_ms   INTEGER,
        PRIMARY KEY (worker, rule)
    ) WITHOUT ROWID;
    ALTER TABLE tasks ADD COLUMN limit_rule TEXT;
    ALTER TABLE tasks ADD COLUMN limit_key TEXT;
    ALTER TABLE tasks ADD COLUMN parked INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE tasks ADD COLUMN parent_id INTEGER;
    CREATE INDEX tasks_limit_running ON tasks(worker, limit_rule, limit_key)
        WHERE limit_key IS NOT NULL AND status = 'running';
    CREATE INDEX tasks_limit_starts ON tasks(worker, limit_rule, limit_key, started_at)
        WHERE limit_key IS NOT NULL;
    CREATE INDEX tasks_parked ON tasks(worker, limit_rule, limit_key, priority, id)
        WHERE parked = 1;
    CREATE INDEX tasks_parked_until ON tasks(run_after) WHERE parked = 1;
    CREATE INDEX tasks_parent ON tasks(parent_id) WHERE parent_id IS NOT NULL;
    DROP INDEX tasks_claim;
    CREATE INDEX tasks_claim ON tasks(priority, id)
        WHERE status = 'pending' AND deps_left = 0 AND parked = 0;",
    // Workflows (crate::Workflows): a named group of tasks created together; each of
    // its tasks names it and its step. AUTOINCREMENT: an id is never given twice.
    "CREATE TABLE workflows (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        started_by  TEXT
    );
    ALTER TABLE tasks ADD COLUMN workflow_id INTEGER;
    ALTER TABLE tasks ADD COLUMN workflow_step TEXT;
    CREATE INDEX tasks_workflow ON tasks(workflow_id, id) WHERE workflow_id IS NOT NULL;",
    // The starts that rates count, one row per start of a task under a rule with a
    // rate (written by the claim, pruned as they leave their window), instead of an
    // index of every keyed task by its start: that index was written by every claim
    // of every keyed task, rate or not, and a concurrency-only key needs none of it.
    // Starts within their rule's window are carried over.
    "CREATE TABLE limit_starts (
        worker TEXT NOT NULL,
        rule   TEXT NOT NULL,
        key    TEXT NOT NULL,
        at     INTEGER NOT NULL
    );
    CREATE INDEX limit_starts_key ON limit_starts(worker, rule, key, at);
    INSERT INTO limit_starts (worker, rule, key, at)
        SELECT t.worker, t.limit_rule, t.limit_key, t.started_at
        FROM tasks AS t JOIN limit_rules AS r ON r.worker = t.worker AND r.rule = t.limit_rule
        WHERE t.limit_key IS NOT NULL AND t.started_at IS NOT NULL AND r.rate IS NOT NULL
          AND t.started_at > CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)
                             - r.period_ms;
    DROP INDEX tasks_limit_starts;",
];

/// The schema version this build expects.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// The version of the text index's migration (texts.rs).
#[cfg(test)]
pub(crate) const TEXT_INDEX_VERSION: i64 = 11;

/// The version of the per-minute counts' migration (stats.rs tests take a database
/// back to the version before it).
#[cfg(test)]
pub(crate) const MINUTES_VERSION: i64 = 14;

/// Takes the migrations after [`MINUTES_VERSION`] out of a database, so that they can
/// run again (the tables of removed workers may not be there yet).
#[cfg(test)]
pub(crate) const UNDO_AFTER_MINUTES: &str = "ALTER TABLE task_logs DROP COLUMN at;
    DROP TABLE IF EXISTS removed_workers; DROP TABLE IF EXISTS removed_schedules;
    DROP TABLE IF EXISTS task_deps; ALTER TABLE tasks DROP COLUMN deps_left;";

/// Takes the migration of the rates' starts out of a database (before
/// [`UNDO_WORKFLOWS`]).
#[cfg(test)]
pub(crate) const UNDO_STARTS: &str = "DROP TABLE limit_starts;
    CREATE INDEX tasks_limit_starts ON tasks(worker, limit_rule, limit_key, started_at)
        WHERE limit_key IS NOT NULL;";

/// Takes the workflows' migration out of a database (before [`UNDO_LIMITS`]).
#[cfg(test)]
pub(crate) const UNDO_WORKFLOWS: &str = "DROP INDEX tasks_workflow; DROP TABLE workflows;
    ALTER TABLE tasks DROP COLUMN workflow_id; ALTER TABLE tasks DROP COLUMN workflow_step;";

/// Takes the limits' migration out of a database (before the dependencies' can go:
/// the claim index names `deps_left`).
#[cfg(test)]
pub(crate) const UNDO_LIMITS: &str = "DROP TABLE limit_rules; DROP INDEX tasks_limit_running;
    DROP INDEX tasks_limit_starts; DROP INDEX tasks_parked; DROP INDEX tasks_parked_until;
    DROP INDEX tasks_parent; DROP INDEX tasks_claim;
    CREATE INDEX tasks_claim ON tasks(priority, id) WHERE status = 'pending';
    ALTER TABLE tasks DROP COLUMN limit_rule; ALTER TABLE tasks DROP COLUMN limit_key;
    ALTER TABLE tasks DROP COLUMN parked; ALTER TABLE tasks DROP COLUMN parent_id;";

/// Takes migration 11 out of a database, for tests that make an older stask's
/// database out of a fresh one (the column can only go once nothing refers to it).
#[cfg(test)]
pub(crate) const UNDO_TEXT_INDEX: &str = "DROP TRIGGER tasks_text_insert;
    DROP TRIGGER tasks_text_update; DROP TABLE task_texts_fts; DROP TABLE task_texts;
    DROP INDEX tasks_text; ALTER TABLE tasks DROP COLUMN text_id;
    DELETE FROM meta WHERE key IN ('text_fill_after', 'text_sweep_after');";

pub(crate) fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
    let current: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .context("read schema version")?;
    if current > LATEST {
        return Err(StoreError::new(
            ErrorKind::NewerSchema,
            "open database",
            format!(
                "its schema version {current} is newer than this stask supports ({LATEST}); upgrade stask"
            ),
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
    enable_incremental_vacuum(conn)
}

/// Databases created before migration 6 were made without `auto_vacuum`, which can
/// only be switched on by rebuilding the file once; afterwards clean-up can give freed
/// space back in small steps. Best effort: the rebuild needs free space about the size
/// of the database, and without it the store still works (clean-up then keeps the
/// freed pages for reuse instead of giving them back).
fn enable_incremental_vacuum(conn: &mut Connection) -> Result<(), StoreError> {
    let mode: i64 = conn
        .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
        .context("read auto_vacuum")?;
    if mode == 2 {
        return Ok(());
    }
    if conn
        .pragma_update(None, "auto_vacuum", "INCREMENTAL")
        .and_then(|()| conn.execute_batch("VACUUM"))
        .is_err()
    {
        // Back to what the file has, so the next open tries again.
        let _ = conn.pragma_update(None, "auto_vacuum", mode);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::{texts, SqliteStore};
    use crate::Accounts as _;
    use crate::{Store as _, TaskQuery, TaskSearch as _};

    /// A database as the version before the text index left it, with `n` tasks of
    /// worker `w`: task `i` (from 1) is running when `i % 5 == 0`, else completed with
    /// the message `message i of n`.
    fn before_text_index(path: &std::path::Path, n: i64) {
        let conn = Connection::open(path).unwrap();
        let before = TEXT_INDEX_VERSION as usize - 1;
        for sql in &MIGRATIONS[..before] {
            conn.execute_batch(sql).unwrap();
        }
        conn.pragma_update(None, "user_version", before as i64)
            .unwrap();
        for i in 1..=n {
            let (status, message) = if i % 5 == 0 {
                ("running", "copying".to_owned())
            } else {
                ("completed", format!("message {i} of {n}"))
            };
            conn.execute(
                "INSERT INTO tasks (id, worker, action, status, created_at, message)
                 VALUES (?1, 'w', 'run', ?2, ?1, ?3)",
                rusqlite::params![i, status, message],
            )
            .unwrap();
        }
    }

    /// Ids of the tasks a search for `text` finds (newest first), checked against its
    /// total.
    fn found(s: &SqliteStore, text: &str) -> Vec<i64> {
        let page = s
            .search_tasks(&TaskQuery {
                text: Some(text.into()),
                limit: 100,
                ..Default::default()
            })
            .unwrap();
        assert_eq!(page.total, page.tasks.len() as i64, "{text:?}");
        page.tasks.iter().map(|t| t.id).collect()
    }

    #[test]
    fn the_text_index_migration_gives_every_existing_task_its_text() {
        assert!(MIGRATIONS[TEXT_INDEX_VERSION as usize - 1].contains("CREATE TABLE task_texts"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        before_text_index(&path, 40);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), LATEST);
        assert!(texts::ready(&s.conn).unwrap(), "filled at open");
        assert!(
            texts::problems(&s.conn).is_empty(),
            "{:?}",
            texts::problems(&s.conn)
        );
        assert_eq!(found(&s, "message 17 of"), [17]);
        assert_eq!(found(&s, "MESSAGE 3"), [39, 38, 37, 36, 34, 33, 32, 31, 3]);
        assert_eq!(
            found(&s, "copying"),
            [40, 35, 30, 25, 20, 15, 10, 5],
            "running"
        );
        let named: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM tasks WHERE text_id IS NOT NULL",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(named, 32, "every task but the running ones");
    }

    #[test]
    fn an_interrupted_fill_resumes_at_the_next_open_and_searches_stay_right_meanwhile() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        before_text_index(&path, 25);
        {
            // The migration, then one batch of the fill, then the process is gone.
            let mut conn = Connection::open(&path).unwrap();
            migrate(&mut conn).unwrap();
            assert!(!texts::fill_batches(&mut conn, 10, 1).unwrap());
            let after: i64 = conn
                .query_row(
                    "SELECT value FROM meta WHERE key = 'text_fill_after'",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(after, 10);
        }
        // Meanwhile a store that cannot write (and so cannot fill) searches the table.
        let read_only = SqliteStore::with_connection(
            &path,
            crate::sqlite::connect_read_only(&path).unwrap(),
            crate::sqlite::Access::ReadOnly,
        )
        .unwrap();
        assert!(!texts::ready(&read_only.conn).unwrap());
        assert_eq!(found(&read_only, "message 2"), [24, 23, 22, 21, 2]);
        assert_eq!(found(&read_only, "age 7 "), [7]);
        drop(read_only);
        let s = SqliteStore::open(&path).unwrap();
        assert!(texts::ready(&s.conn).unwrap());
        assert!(
            texts::problems(&s.conn).is_empty(),
            "{:?}",
            texts::problems(&s.conn)
        );
        assert_eq!(found(&s, "message 2"), [24, 23, 22, 21, 2]);
        assert_eq!(found(&s, "age 7 "), [7]);
        assert_eq!(found(&s, "copying"), [25, 20, 15, 10, 5]);
    }

    #[test]
    fn migration_7_keeps_the_tokens_and_admits_the_metrics_role() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        {
            // A database as stask left it at version 6, with a token.
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..6] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 6).unwrap();
            conn.execute(
                "INSERT INTO api_tokens (name, role, token_hash, created_by, created_at, last_used_at)
                 VALUES ('ci', 'operator', 'h1', 'ann', 5, 6)",
                [],
            )
            .unwrap();
            let refused = conn.execute(
                "INSERT INTO api_tokens (name, role, token_hash, created_at)
                 VALUES ('prom', 'metrics', 'h2', 5)",
                [],
            );
            assert!(refused.is_err(), "version 6 refuses the metrics role");
        }
        let mut s = SqliteStore::open(&path).unwrap();
        let kept = s.use_token("h1", 7).unwrap().expect("the token survives");
        assert_eq!(
            (
                kept.name.as_str(),
                kept.role.as_str(),
                kept.created_by.as_deref()
            ),
            ("ci", "operator", Some("ann"))
        );
        let t = s
            .insert_token(Some("prom"), "metrics", "h2", None, 8)
            .unwrap()
            .unwrap();
        assert_eq!(t.role, "metrics");
        assert!(t.id > kept.id);
        // The constraint still holds for anything else.
        assert!(s.insert_token(Some("x"), "boss", "h3", None, 9).is_err());
        assert!(s
            .insert_token(Some("ci"), "viewer", "h4", None, 9)
            .unwrap()
            .is_none());
    }

    #[test]
    fn lines_stored_before_line_times_keep_no_time_and_new_lines_get_one() {
        use crate::{LogLine, NewTask, Priority, ProgressLogs as _, TaskQueue as _};
        let version = MIGRATIONS
            .iter()
            .position(|m| m.contains("ALTER TABLE task_logs ADD COLUMN at"))
            .expect("the migration of line times")
            + 1;
        assert!(MIGRATIONS[MINUTES_VERSION as usize - 1].contains("task_minutes"));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        {
            // A database as the version before left it, with a task and its line.
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..version - 1] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", version as i64 - 1)
                .unwrap();
            conn.execute_batch(
                "INSERT INTO tasks (id, worker, action, status, created_at)
                     VALUES (1, 'w', 'run', 'pending', 1);
                 INSERT INTO task_logs (task_id, seq, line)
                     VALUES (1, 1, 'pending|0|0|0|-|Task created');
                 UPDATE meta SET value = 2 WHERE key = 'next_line_seq';",
            )
            .unwrap();
        }
        let mut s = SqliteStore::open(&path).unwrap();
        let old = s.log_lines(1, 0, 10).unwrap();
        assert_eq!((old.len(), old[0].at), (1, None), "{old:?}");
        let before = crate::now_ms();
        let t = NewTask {
            limit: None,
            parent: None,
            worker: "w".into(),
            action: "run".into(),
            data: "{}".into(),
            priority: Priority::Normal,
            max_attempts: 1,
            started_by: None,
            run_after: 0,
            created_at: 0,
        };
        let id = s
            .insert_tasks(&t, 1, &LogLine::new("pending", 0, 0, 0, "", "created"))
            .unwrap()[0];
        let at = s.log_lines(id, 0, 10).unwrap()[0].at.expect("a time");
        assert!((before..=crate::now_ms()).contains(&at));
    }

    #[test]
    fn recent_starts_under_a_rate_are_carried_into_the_starts_table() {
        use crate::conformance::{claim, insert, register, task};
        use crate::{LimitRule, Limits as _, NewTask, TaskLimit};
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stask.db");
        let mut s = SqliteStore::open(&path).unwrap();
        register(&mut s, &["w"], true);
        let rule = |rate| LimitRule {
            rule: "api".into(),
            concurrency: None,
            rate,
        };
        s.set_limit_rules(
            "w",
            &[
                rule(Some((5, 3_600_000))),
                LimitRule {
                    rule: "once".into(),
                    ..rule(None)
                },
            ],
        )
        .unwrap();
        let limit = |rule: &str| TaskLimit {
            rule: rule.into(),
            key: "k".into(),
        };
        let now = crate::now_ms();
        for (rule, n) in [("api", 3), ("once", 2)] {
            let keyed = NewTask {
                limit: Some(limit(rule)),
                ..task("w", now - 6_000_000)
            };
            insert(&mut s, &keyed, n);
        }
        // Started an hour and a half ago, then three just now: the old start has left
        // the rule's hour; the concurrency-only rule's starts are not the rate's.
        assert_eq!(claim(&mut s, "o", now - 5_400_000, 1).len(), 1);
        assert_eq!(claim(&mut s, "o", now, 10).len(), 4);
        // Back to the version before, as an older stask left it: starts on tasks only.
        s.conn.execute_batch(UNDO_STARTS).unwrap();
        s.conn
            .pragma_update(None, "user_version", LATEST - 1)
            .unwrap();
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.schema_version().unwrap(), LATEST);
        let usage = |rule: &str| s.limit_usage("w", &limit(rule), now).unwrap().unwrap().1;
        assert_eq!(usage("api").started, 2);
        assert_eq!(usage("once").started, 0);
    }
}
