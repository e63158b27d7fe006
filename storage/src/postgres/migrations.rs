//! The PostgreSQL schema, in versioned steps recorded in `stask_schema`.
//!
//! Several hosts may start at once against one database: every step runs in a
//! transaction that first takes a transaction-level advisory lock, re-reads the version
//! and applies only what is still missing, so each step runs exactly once and a host
//! that waited finds the schema done.
//!
//! Timestamps are milliseconds since the Unix epoch (`BIGINT`), as in every backend.
//! The statistics tables are kept by statement-level triggers with transition tables:
//! one aggregate per statement, so a batch of a thousand claims or finishes costs one
//! update per worker, not one per row.

use postgres::Client;

use super::Context;
use crate::error::{ErrorKind, StoreError};

/// Key of the advisory lock held while migrating (any constant unique to stask).
const MIGRATION_LOCK: i64 = 0x5354_4153_4b4d_4947; // "STASKMIG"

const MIGRATIONS: &[&str] = &[
    // 1: everything of schema version 8 of the SQLite backend, at once.
    r#"
    CREATE TABLE workers (
        identifier       TEXT PRIMARY KEY,
        scope            TEXT NOT NULL DEFAULT '',
        title            TEXT NOT NULL,
        description      TEXT NOT NULL DEFAULT '',
        icon             TEXT NOT NULL DEFAULT 'gear',
        version          TEXT NOT NULL DEFAULT '',
        library_path     TEXT NOT NULL,
        library_size     BIGINT NOT NULL,
        library_mtime_ns BIGINT NOT NULL,
        library_sha256   TEXT NOT NULL,
        manifest         TEXT NOT NULL,
        settings         TEXT NOT NULL DEFAULT '{}',
        schedule         TEXT,
        active           BOOLEAN NOT NULL DEFAULT FALSE,
        position         BIGINT NOT NULL DEFAULT 0,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL,
        inactive_reason  TEXT
    );
    CREATE INDEX workers_library ON workers (library_path);

    CREATE SEQUENCE task_ids;
    CREATE TABLE tasks (
        id               BIGINT PRIMARY KEY,
        worker           TEXT NOT NULL,
        action           TEXT NOT NULL,
        status           TEXT NOT NULL CHECK (status IN
                             ('pending', 'running', 'completed', 'failed', 'cancelled')),
        priority         SMALLINT NOT NULL DEFAULT 1,
        progress         BIGINT NOT NULL DEFAULT 0,
        processed        BIGINT NOT NULL DEFAULT 0,
        total            BIGINT NOT NULL DEFAULT 0,
        message          TEXT NOT NULL DEFAULT '',
        data             TEXT NOT NULL DEFAULT '{}',
        result           TEXT,
        error            TEXT,
        started_by       TEXT,
        attempts         BIGINT NOT NULL DEFAULT 0,
        max_attempts     BIGINT NOT NULL DEFAULT 3,
        run_after        BIGINT NOT NULL DEFAULT 0,
        created_at       BIGINT NOT NULL,
        started_at       BIGINT,
        finished_at      BIGINT,
        heartbeat_at     BIGINT,
        owner            TEXT,
        cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
        -- The sequence number of the task's last log line: every statement that adds
        -- lines bumps it, which also locks the row, so a task's lines are numbered in
        -- the order they are stored whatever the number of writers.
        log_seq          BIGINT NOT NULL DEFAULT 0
    );
    -- The claim walks this partial index in claim order.
    CREATE INDEX tasks_claim ON tasks (priority, id) WHERE status = 'pending';
    CREATE INDEX tasks_status ON tasks (status, finished_at);
    CREATE INDEX tasks_worker ON tasks (worker, id);
    CREATE INDEX tasks_running_owner ON tasks (owner) WHERE status = 'running';
    CREATE INDEX tasks_created ON tasks (created_at);
    CREATE INDEX tasks_started_by ON tasks (started_by, id) WHERE started_by IS NOT NULL;

    CREATE TABLE task_logs (
        task_id          BIGINT NOT NULL,
        seq              BIGINT NOT NULL,
        line             TEXT NOT NULL,
        PRIMARY KEY (task_id, seq)
    );

    CREATE TABLE result_files (
        id               BIGSERIAL PRIMARY KEY,
        task_id          BIGINT NOT NULL,
        name             TEXT NOT NULL,
        size             BIGINT NOT NULL DEFAULT 0,
        complete         BOOLEAN NOT NULL DEFAULT FALSE,
        created_at       BIGINT NOT NULL
    );
    CREATE INDEX result_files_task ON result_files (task_id, name);
    CREATE TABLE result_chunks (
        file_id          BIGINT NOT NULL,
        idx              BIGINT NOT NULL,
        data             BYTEA NOT NULL,
        PRIMARY KEY (file_id, idx)
    );

    CREATE TABLE schedules (
        worker           TEXT PRIMARY KEY REFERENCES workers (identifier) ON DELETE CASCADE,
        spec             TEXT NOT NULL,
        data             TEXT NOT NULL DEFAULT '{}',
        paused           BOOLEAN NOT NULL DEFAULT FALSE,
        next_run_at      BIGINT,
        last_run_at      BIGINT,
        last_task_id     BIGINT,
        skipped_count    BIGINT NOT NULL DEFAULT 0,
        last_skip_at     BIGINT,
        last_skip_reason TEXT,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL
    );
    CREATE INDEX schedules_due ON schedules (next_run_at)
        WHERE NOT paused AND next_run_at IS NOT NULL;

    CREATE TABLE users (
        id               BIGSERIAL PRIMARY KEY,
        name             TEXT NOT NULL UNIQUE,
        role             TEXT NOT NULL CHECK (role IN ('admin', 'operator', 'viewer')),
        password_hash    TEXT NOT NULL,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL
    );
    CREATE TABLE sessions (
        id_hash          TEXT PRIMARY KEY,
        user_id          BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        csrf_hash        TEXT NOT NULL,
        created_at       BIGINT NOT NULL,
        expires_at       BIGINT NOT NULL
    );
    CREATE INDEX sessions_user ON sessions (user_id);
    CREATE INDEX sessions_expiry ON sessions (expires_at);
    CREATE TABLE api_tokens (
        id               BIGSERIAL PRIMARY KEY,
        name             TEXT NOT NULL UNIQUE,
        role             TEXT NOT NULL
                             CHECK (role IN ('admin', 'operator', 'viewer', 'metrics')),
        token_hash       TEXT NOT NULL UNIQUE,
        created_by       TEXT,
        created_at       BIGINT NOT NULL,
        last_used_at     BIGINT,
        revoked_at       BIGINT
    );

    CREATE TABLE owners (
        id               TEXT PRIMARY KEY,
        renewed_at       BIGINT NOT NULL
    );

    -- Statistics, kept by the triggers below. Running tasks are counted in the
    -- 'pending' row of task_counts (readers split it with a count of the running rows),
    -- so a claim, the most frequent write, changes no statistics.
    CREATE TABLE task_counts (
        worker           TEXT NOT NULL,
        status           TEXT NOT NULL,
        n                BIGINT NOT NULL DEFAULT 0,
        run_ms           BIGINT NOT NULL DEFAULT 0,
        runs             BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (worker, status)
    );
    CREATE TABLE task_activity (
        bucket           BIGINT NOT NULL,
        worker           TEXT NOT NULL,
        created          BIGINT NOT NULL DEFAULT 0,
        completed        BIGINT NOT NULL DEFAULT 0,
        failed           BIGINT NOT NULL DEFAULT 0,
        cancelled        BIGINT NOT NULL DEFAULT 0,
        run_ms           BIGINT NOT NULL DEFAULT 0,
        runs             BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (bucket, worker)
    );
    CREATE TABLE worker_activity (
        worker           TEXT PRIMARY KEY,
        last_finished_at BIGINT
    );

    -- What one row contributes to the statistics, positive for rows that appear and
    -- negative for rows that go: the counted status ('running' counts as 'pending'),
    -- run time of completed and failed runs, the creation bucket and the finish bucket.
    CREATE FUNCTION stask_stats_apply(rows_in JSONB, sign INT) RETURNS VOID
    LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO task_counts AS c (worker, status, n, run_ms, runs)
        SELECT r.worker, CASE WHEN r.status = 'running' THEN 'pending' ELSE r.status END,
               sign * COUNT(*),
               sign * COALESCE(SUM(CASE WHEN r.status IN ('completed', 'failed')
                   AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL
                   THEN r.finished_at - r.started_at END), 0),
               sign * COUNT(*) FILTER (WHERE r.status IN ('completed', 'failed')
                   AND r.started_at IS NOT NULL AND r.finished_at IS NOT NULL)
        FROM jsonb_to_recordset(rows_in) AS r(worker TEXT, status TEXT, created_at BIGINT,
             started_at BIGINT, finished_at BIGINT)
        GROUP BY 1, 2
        ORDER BY 1, 2
        ON CONFLICT (worker, status) DO UPDATE SET n = c.n + excluded.n,
            run_ms = c.run_ms + excluded.run_ms, runs = c.runs + excluded.runs;
        RETURN;
    END
    $fn$;

    CREATE FUNCTION stask_stats_insert() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
    BEGIN
        INSERT INTO task_counts AS c (worker, status, n, run_ms, runs)
        SELECT worker, CASE WHEN status = 'running' THEN 'pending' ELSE status END,
               COUNT(*),
               COALESCE(SUM(CASE WHEN status IN ('completed', 'failed')
                   AND started_at IS NOT NULL AND finished_at IS NOT NULL
                   THEN finished_at - started_at END), 0),
               COUNT(*) FILTER (WHERE status IN ('completed', 'failed')
                   AND started_at IS NOT NULL AND finished_at IS NOT NULL)
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (worker, status) DO UPDATE SET n = c.n + excluded.n,
            run_ms = c.run_ms + excluded.run_ms, runs = c.runs + excluded.runs;
        INSERT INTO task_activity AS a (bucket, worker, created)
        SELECT created_at / 900000 * 900000, worker, COUNT(*)
        FROM new_rows GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (bucket, worker) DO UPDATE SET created = a.created + excluded.created;
        PERFORM stask_finish_activity((SELECT jsonb_agg(to_jsonb(n)) FROM new_rows n
            WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at IS NOT NULL), 1);
        RETURN NULL;
    END
    $fn$;

    CREATE FUNCTION stask_finish_activity(rows_in JSONB, sign INT) RETURNS VOID
    LANGUAGE plpgsql AS $fn$
    BEGIN
        IF rows_in IS NULL THEN
            RETURN;
        END IF;
        INSERT INTO task_activity AS a (bucket, worker, completed, failed, cancelled, run_ms, runs)
        SELECT r.finished_at / 900000 * 900000, r.worker,
               sign * COUNT(*) FILTER (WHERE r.status = 'completed'),
               sign * COUNT(*) FILTER (WHERE r.status = 'failed'),
               sign * COUNT(*) FILTER (WHERE r.status = 'cancelled'),
               sign * COALESCE(SUM(CASE WHEN r.status <> 'cancelled' AND r.started_at IS NOT NULL
                   THEN r.finished_at - r.started_at END), 0),
               sign * COUNT(*) FILTER (WHERE r.status <> 'cancelled' AND r.started_at IS NOT NULL)
        FROM jsonb_to_recordset(rows_in) AS r(worker TEXT, status TEXT, started_at BIGINT,
             finished_at BIGINT)
        GROUP BY 1, 2 ORDER BY 1, 2
        ON CONFLICT (bucket, worker) DO UPDATE SET
            completed = a.completed + excluded.completed, failed = a.failed + excluded.failed,
            cancelled = a.cancelled + excluded.cancelled,
            run_ms = a.run_ms + excluded.run_ms, runs = a.runs + excluded.runs;
        IF sign > 0 THEN
            INSERT INTO worker_activity AS w (worker, last_finished_at)
            SELECT r.worker, MAX(r.finished_at)
            FROM jsonb_to_recordset(rows_in) AS r(worker TEXT, finished_at BIGINT)
            GROUP BY 1 ORDER BY 1
            ON CONFLICT (worker) DO UPDATE SET
                last_finished_at = GREATEST(COALESCE(w.last_finished_at, 0), excluded.last_finished_at);
        END IF;
        RETURN;
    END
    $fn$;

    CREATE FUNCTION stask_stats_delete() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
    BEGIN
        PERFORM stask_stats_apply((SELECT jsonb_agg(to_jsonb(o)) FROM old_rows o), -1);
        UPDATE task_activity a SET created = a.created - d.n
        FROM (SELECT created_at / 900000 * 900000 AS bucket, worker, COUNT(*) AS n
              FROM old_rows GROUP BY 1, 2) d
        WHERE a.bucket = d.bucket AND a.worker = d.worker;
        PERFORM stask_finish_activity((SELECT jsonb_agg(to_jsonb(o)) FROM old_rows o
            WHERE status IN ('completed', 'failed', 'cancelled') AND finished_at IS NOT NULL), -1);
        RETURN NULL;
    END
    $fn$;

    -- An update counts only rows whose counted status changed, or whose run time
    -- changed while they were (or become) completed or failed; a claim (pending ->
    -- running, started_at set) and a log-line number bump change nothing here.
    CREATE FUNCTION stask_stats_update() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
    DECLARE
        before_rows JSONB;
        after_rows JSONB;
        gone JSONB;
        came JSONB;
    BEGIN
        SELECT jsonb_agg(to_jsonb(o)), jsonb_agg(to_jsonb(n)) INTO before_rows, after_rows
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE (CASE WHEN o.status = 'running' THEN 'pending' ELSE o.status END)
                  IS DISTINCT FROM (CASE WHEN n.status = 'running' THEN 'pending' ELSE n.status END)
           OR ((o.status IN ('completed', 'failed') OR n.status IN ('completed', 'failed'))
               AND (o.started_at IS DISTINCT FROM n.started_at
                    OR o.finished_at IS DISTINCT FROM n.finished_at));
        IF before_rows IS NOT NULL THEN
            PERFORM stask_stats_apply(before_rows, -1);
            PERFORM stask_stats_apply(after_rows, 1);
        END IF;
        SELECT jsonb_agg(to_jsonb(o)) FILTER (WHERE o.status IN ('completed', 'failed', 'cancelled')
                   AND o.finished_at IS NOT NULL),
               jsonb_agg(to_jsonb(n)) FILTER (WHERE n.status IN ('completed', 'failed', 'cancelled')
                   AND n.finished_at IS NOT NULL)
        INTO gone, came
        FROM old_rows o JOIN new_rows n ON n.id = o.id
        WHERE o.status IS DISTINCT FROM n.status
           OR o.started_at IS DISTINCT FROM n.started_at
           OR o.finished_at IS DISTINCT FROM n.finished_at;
        PERFORM stask_finish_activity(gone, -1);
        PERFORM stask_finish_activity(came, 1);
        RETURN NULL;
    END
    $fn$;

    CREATE TRIGGER tasks_stats_insert AFTER INSERT ON tasks
        REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION stask_stats_insert();
    CREATE TRIGGER tasks_stats_delete AFTER DELETE ON tasks
        REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION stask_stats_delete();
    CREATE TRIGGER tasks_stats_update AFTER UPDATE ON tasks
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION stask_stats_update();
    "#,
    // 2: the hosts sharing the database and the libraries each holds (crate::Hosts).
    r#"
    CREATE TABLE hosts (
        id               TEXT PRIMARY KEY,
        name             TEXT NOT NULL,
        version          TEXT NOT NULL,
        capacity         BIGINT NOT NULL,
        libraries        TEXT NOT NULL DEFAULT '[]',
        started_at       BIGINT NOT NULL
    );
    "#,
    // 3: failed password checks per throttling key (a user name, a client address),
    // shared by every host, so a login lock-out holds on all of them. One row per
    // failure, so hosts recording failures of one key at once only insert (no row to
    // wait for); rows older than the window are deleted as failures are recorded.
    r#"
    CREATE TABLE login_failures (
        id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        key              TEXT NOT NULL,
        at               BIGINT NOT NULL
    );
    CREATE INDEX login_failures_key ON login_failures (key, at);
    CREATE INDEX login_failures_at ON login_failures (at);
    "#,
    // The leadership of the store-wide chores (crate::Leases::try_lead): one row.
    r#"
    CREATE TABLE leader (
        name             TEXT PRIMARY KEY,
        holder           TEXT NOT NULL,
        expires_at       BIGINT NOT NULL
    );
    "#,
    // 5: statistics that hosts do not queue on. Every finishing transaction added to
    // the same (worker, status) counter rows and held their locks until it committed,
    // so hosts committed one after another (~270 commits/s on this disk for all of
    // them). Each connection now adds to a shard of its own (backend pid modulo 16)
    // and readers sum the shards. The triggers also stop turning whole rows (data,
    // results) into JSON: they pass the six columns that count, and leave at once when
    // no counted column changed (a claim, a log-line number, progress).
    r#"
    -- A queue table turns over all the time: every claim and finish leaves a dead row
    -- version and dead index entries that the next claims walk past until they are
    -- vacuumed. Vacuum it after 2 % of its rows changed (PostgreSQL waits for 20 %),
    -- and leave room in its pages so updates that change no indexed column (progress,
    -- heartbeats, log-line numbers of running tasks) stay on their page (HOT).
    ALTER TABLE tasks SET (autovacuum_vacuum_scale_factor = 0.02,
        autovacuum_analyze_scale_factor = 0.02, fillfactor = 90);
    ALTER TABLE task_counts ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
    ALTER TABLE task_counts DROP CONSTRAINT task_counts_pkey,
        ADD PRIMARY KEY (worker, status, shard);
    ALTER TABLE task_activity ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
    ALTER TABLE task_activity DROP CONSTRAINT task_activity_pkey,
        ADD PRIMARY KEY (bucket, worker, shard);
    ALTER TABLE worker_activity ADD COLUMN shard SMALLINT NOT NULL DEFAULT 0;
    ALTER TABLE worker_activity DROP CONSTRAINT worker_activity_pkey,
        ADD PRIMARY KEY (worker, shard);

    -- Completed and failed tasks per minute of their finish (the dashboard's
    -- throughput chart), kept like the other statistics so a read costs a few rows
    -- however many tasks finished.
    CREATE TABLE task_minutes (
        minute           BIGINT NOT NULL,
        shard            SMALLINT NOT NULL DEFAULT 0,
        completed        BIGINT NOT NULL DEFAULT 0,
        failed           BIGINT NOT NULL DEFAULT 0,
        PRIMARY KEY (minute, shard)
    );
    INSERT INTO task_minutes (minute, completed, failed)
    SELECT finished_at / 60000 * 60000, COUNT(*) FILTER (WHERE status = 'completed'),
           COUNT(*) FILTER (WHERE status = 'failed')
    FROM tasks WHERE status IN ('completed', 'failed') AND finished_at IS NOT NULL
    GROUP BY 1;

    -- One row's appearance (sign 1) or departure (sign -1); `creates` is the sign
    -- for inserts and deletes and 0 for updates (the creation bucket does not move).
    CREATE TYPE stask_delta AS (sign INT, creates INT, worker TEXT, status TEXT,
        created_at BIGINT, started_at BIGINT, finished_at BIGINT);

    -- The counted status: running tasks are counted as pending (see stats.rs).
    CREATE FUNCTION stask_counted(status TEXT) RETURNS TEXT LANGUAGE sql IMMUTABLE AS
        $$ SELECT CASE WHEN status = 'running' THEN 'pending' ELSE status END $$;
    -- Whether a row is a finished run whose time counts.
    CREATE FUNCTION stask_timed(status TEXT, started BIGINT, finished BIGINT) RETURNS BOOLEAN
        LANGUAGE sql IMMUTABLE AS
        $$ SELECT status IN ('completed', 'failed') AND started IS NOT NULL
               AND finished IS NOT NULL $$;

    CREATE FUNCTION stask_stats_add(d stask_delta[]) RETURNS VOID LANGUAGE plpgsql AS $fn$
    DECLARE
        s SMALLINT := (pg_backend_pid() % 16)::SMALLINT;
    BEGIN
        INSERT INTO task_counts AS c (worker, status, shard, n, run_ms, runs)
        SELECT r.worker, stask_counted(r.status), s, SUM(r.sign),
               COALESCE(SUM(r.sign * (r.finished_at - r.started_at))
                   FILTER (WHERE stask_timed(r.status, r.started_at, r.finished_at)), 0),
               COALESCE(SUM(r.sign)
                   FILTER (WHERE stask_timed(r.status, r.started_at, r.finished_at)), 0)
        FROM unnest(d) r
        GROUP BY 1, 2
        HAVING SUM(r.sign) <> 0
            OR COUNT(*) FILTER (WHERE stask_timed(r.status, r.started_at, r.finished_at)) > 0
        ORDER BY 1, 2
        ON CONFLICT (worker, status, shard) DO UPDATE SET n = c.n + excluded.n,
            run_ms = c.run_ms + excluded.run_ms, runs = c.runs + excluded.runs;

        INSERT INTO task_activity AS a (bucket, worker, shard, created, completed, failed,
            cancelled, run_ms, runs)
        SELECT bucket, worker, s, SUM(created), SUM(completed), SUM(failed), SUM(cancelled),
               SUM(run_ms), SUM(runs)
        FROM (
            SELECT r.created_at / 900000 * 900000 AS bucket, r.worker, r.creates AS created,
                   0 AS completed, 0 AS failed, 0 AS cancelled, 0 AS run_ms, 0 AS runs
            FROM unnest(d) r WHERE r.creates <> 0
            UNION ALL
            SELECT r.finished_at / 900000 * 900000, r.worker, 0,
                   CASE WHEN r.status = 'completed' THEN r.sign ELSE 0 END,
                   CASE WHEN r.status = 'failed' THEN r.sign ELSE 0 END,
                   CASE WHEN r.status = 'cancelled' THEN r.sign ELSE 0 END,
                   CASE WHEN r.status <> 'cancelled' AND r.started_at IS NOT NULL
                        THEN r.sign * (r.finished_at - r.started_at) ELSE 0 END,
                   CASE WHEN r.status <> 'cancelled' AND r.started_at IS NOT NULL
                        THEN r.sign ELSE 0 END
            FROM unnest(d) r
            WHERE r.status IN ('completed', 'failed', 'cancelled') AND r.finished_at IS NOT NULL
        ) x
        GROUP BY 1, 2
        HAVING SUM(created) <> 0 OR SUM(completed) <> 0 OR SUM(failed) <> 0
            OR SUM(cancelled) <> 0 OR SUM(run_ms) <> 0 OR SUM(runs) <> 0
        ORDER BY 1, 2
        ON CONFLICT (bucket, worker, shard) DO UPDATE SET
            created = a.created + excluded.created,
            completed = a.completed + excluded.completed, failed = a.failed + excluded.failed,
            cancelled = a.cancelled + excluded.cancelled,
            run_ms = a.run_ms + excluded.run_ms, runs = a.runs + excluded.runs;

        INSERT INTO task_minutes AS m (minute, shard, completed, failed)
        SELECT r.finished_at / 60000 * 60000, s,
               COALESCE(SUM(r.sign) FILTER (WHERE r.status = 'completed'), 0),
               COALESCE(SUM(r.sign) FILTER (WHERE r.status = 'failed'), 0)
        FROM unnest(d) r
        WHERE r.status IN ('completed', 'failed') AND r.finished_at IS NOT NULL
        GROUP BY 1
        HAVING SUM(r.sign) <> 0
        ORDER BY 1
        ON CONFLICT (minute, shard) DO UPDATE SET
            completed = m.completed + excluded.completed, failed = m.failed + excluded.failed;

        INSERT INTO worker_activity AS w (worker, shard, last_finished_at)
        SELECT r.worker, s, MAX(r.finished_at) FROM unnest(d) r
        WHERE r.sign > 0 AND r.status IN ('completed', 'failed', 'cancelled')
          AND r.finished_at IS NOT NULL
        GROUP BY 1 ORDER BY 1
        ON CONFLICT (worker, shard) DO UPDATE SET
            last_finished_at = GREATEST(COALESCE(w.last_finished_at, 0),
                                        excluded.last_finished_at);
        RETURN;
    END
    $fn$;

    CREATE OR REPLACE FUNCTION stask_stats_insert() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
    BEGIN
        PERFORM stask_stats_add(ARRAY(
            SELECT ROW(1, 1, worker, status, created_at, started_at, finished_at)::stask_delta
            FROM new_rows));
        RETURN NULL;
    END
    $fn$;

    CREATE OR REPLACE FUNCTION stask_stats_delete() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
    BEGIN
        PERFORM stask_stats_add(ARRAY(
            SELECT ROW(-1, -1, worker, status, created_at, started_at, finished_at)::stask_delta
            FROM old_rows));
        RETURN NULL;
    END
    $fn$;

    -- Only rows whose counted status changed, or whose times changed while they were
    -- (or become) finished, count; a claim, progress and log-line numbers do not.
    CREATE OR REPLACE FUNCTION stask_stats_update() RETURNS TRIGGER LANGUAGE plpgsql AS $fn$
    DECLARE
        d stask_delta[];
    BEGIN
        -- The usual statements first, with no join: claims (pending -> running),
        -- progress and log-line numbers of running tasks change no counted value.
        IF NOT EXISTS (SELECT 1 FROM new_rows WHERE status <> 'running')
           AND NOT EXISTS (SELECT 1 FROM old_rows WHERE status NOT IN ('pending', 'running'))
        THEN
            RETURN NULL;
        END IF;
        SELECT array_agg(x) INTO d FROM (
            SELECT ROW(v.sign, 0, v.worker, v.status, v.created_at, v.started_at,
                       v.finished_at)::stask_delta AS x
            FROM old_rows o JOIN new_rows n ON n.id = o.id
            CROSS JOIN LATERAL (VALUES
                (-1, o.worker, o.status, o.created_at, o.started_at, o.finished_at),
                (1, n.worker, n.status, n.created_at, n.started_at, n.finished_at))
                AS v(sign, worker, status, created_at, started_at, finished_at)
            WHERE stask_counted(o.status) IS DISTINCT FROM stask_counted(n.status)
               OR o.worker IS DISTINCT FROM n.worker
               OR ((o.status IN ('completed', 'failed', 'cancelled')
                    OR n.status IN ('completed', 'failed', 'cancelled'))
                   AND (o.started_at IS DISTINCT FROM n.started_at
                        OR o.finished_at IS DISTINCT FROM n.finished_at))
        ) y;
        IF d IS NOT NULL THEN
            PERFORM stask_stats_add(d);
        END IF;
        RETURN NULL;
    END
    $fn$;
    DROP FUNCTION stask_stats_apply(JSONB, INT);
    DROP FUNCTION stask_finish_activity(JSONB, INT);
    "#,
    // Unique tasks (TaskQueue::insert_unique_task): the key a task was created with,
    // NULL for most; the partial index holds only keyed tasks. Creators of one key take
    // turns through an advisory lock on its hash (queue.rs), not through this index:
    // which statuses and ages count is the creator's choice.
    r#"
    ALTER TABLE tasks ADD COLUMN unique_key TEXT;
    CREATE INDEX tasks_unique ON tasks (unique_key, worker, action) WHERE unique_key IS NOT NULL;
    "#,
    // The time each log line was stored (ms since the epoch), for the log view's time
    // column. A column default fills it, so no insert names it. The default is set
    // after the column is added: added with a volatile default, every existing row
    // would get the migration's time, and lines stored before must stay NULL (unknown).
    // clock_timestamp(), not now(): a long transaction's lines get their own times.
    r#"
    ALTER TABLE task_logs ADD COLUMN at BIGINT;
    ALTER TABLE task_logs ALTER COLUMN at
        SET DEFAULT (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT;
    "#,
    // What a removed worker leaves behind (Registry::delete_worker): its settings (secret
    // values as stored, encrypted), whether it was active, the hash of its library and
    // its schedule, until a worker with the same identifier is registered again and
    // takes them back (Registry::register_workers). No foreign keys: the worker row is
    // gone, and a remembered schedule outlives it by design.
    r#"
    CREATE TABLE removed_workers (
        identifier       TEXT PRIMARY KEY,
        library_sha256   TEXT NOT NULL,
        settings         TEXT NOT NULL,
        active           BOOLEAN NOT NULL,
        inactive_reason  TEXT,
        removed_at       BIGINT NOT NULL
    );
    CREATE TABLE removed_schedules (
        worker           TEXT PRIMARY KEY,
        spec             TEXT NOT NULL,
        data             TEXT NOT NULL DEFAULT '{}',
        paused           BOOLEAN NOT NULL DEFAULT FALSE,
        next_run_at      BIGINT,
        last_run_at      BIGINT,
        last_task_id     BIGINT,
        skipped_count    BIGINT NOT NULL DEFAULT 0,
        last_skip_at     BIGINT,
        last_skip_reason TEXT,
        created_at       BIGINT NOT NULL,
        updated_at       BIGINT NOT NULL
    );
    "#,
    // Dependencies between tasks (as the SQLite backend's): who waits for whom, and per
    // task how many it still waits for; a waiting task's `run_after` keeps it out of
    // every claim until the last one ends.
    r#"
    ALTER TABLE tasks ADD COLUMN deps_left BIGINT NOT NULL DEFAULT 0;
    CREATE TABLE task_deps (
        depends_on BIGINT NOT NULL,
        task_id    BIGINT NOT NULL,
        after_any  BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (depends_on, task_id)
    );
    CREATE INDEX task_deps_task ON task_deps (task_id);
    "#,
    // Limits per key and children of tasks (as the SQLite backend's): each worker's
    // limit rules; the rule and key of a task (NULL for most), with partial indexes
    // for a key's running tasks and recent starts; tasks parked by a claim while their
    // key was at its limit (until run_after); the task that enqueued a task. The claim
    // index leaves parked tasks and waiting dependants out, so a claim never walks past
    // them.
    r#"
    CREATE TABLE limit_rules (
        worker      TEXT NOT NULL,
        rule        TEXT NOT NULL,
        concurrency BIGINT,
        rate        BIGINT,
        period_ms   BIGINT,
        PRIMARY KEY (worker, rule)
    );
    ALTER TABLE tasks ADD COLUMN limit_rule TEXT;
    ALTER TABLE tasks ADD COLUMN limit_key TEXT;
    ALTER TABLE tasks ADD COLUMN parked BOOLEAN NOT NULL DEFAULT FALSE;
    ALTER TABLE tasks ADD COLUMN parent_id BIGINT;
    CREATE INDEX tasks_limit_running ON tasks (worker, limit_rule, limit_key)
        WHERE limit_key IS NOT NULL AND status = 'running';
    CREATE INDEX tasks_limit_starts ON tasks (worker, limit_rule, limit_key, started_at)
        WHERE limit_key IS NOT NULL;
    CREATE INDEX tasks_parked ON tasks (worker, limit_rule, limit_key, priority, id)
        WHERE parked;
    CREATE INDEX tasks_parked_until ON tasks (run_after) WHERE parked;
    CREATE INDEX tasks_parent ON tasks (parent_id) WHERE parent_id IS NOT NULL;
    DROP INDEX tasks_claim;
    CREATE INDEX tasks_claim ON tasks (priority, id)
        WHERE status = 'pending' AND deps_left = 0 AND NOT parked;
    "#,
    // Workflows (crate::Workflows): a named group of tasks created together; each of
    // its tasks names it and its step.
    r#"
    CREATE TABLE workflows (
        id          BIGSERIAL PRIMARY KEY,
        name        TEXT NOT NULL,
        created_at  BIGINT NOT NULL,
        started_by  TEXT
    );
    ALTER TABLE tasks ADD COLUMN workflow_id BIGINT;
    ALTER TABLE tasks ADD COLUMN workflow_step TEXT;
    CREATE INDEX tasks_workflow ON tasks (workflow_id, id) WHERE workflow_id IS NOT NULL;
    "#,
    // The index of parked tasks by their recheck time holds only those with a time
    // (not those parked until released, crate::PARKED_UNTIL_RELEASED): it stays small
    // however long a key's queue, and a look-up of one key's parked tasks can only use
    // tasks_parked. With both partial on `parked` alone, a planner that read the table
    // while nothing was parked walked this one for every key (70 ms a finish).
    r#"
    DROP INDEX tasks_parked_until;
    CREATE INDEX tasks_parked_until ON tasks (run_after)
        WHERE parked AND run_after < 9223372036854775806;
    "#,
    // The starts that rates count, one row per start of a task under a rule with a
    // rate (written by the claim, pruned as they leave their window), instead of an
    // index of every keyed task by its start: that index took an entry at every claim
    // and finish of every keyed task, rate or not. Starts within their rule's window
    // are carried over.
    r#"
    CREATE TABLE limit_starts (
        worker TEXT NOT NULL,
        rule   TEXT NOT NULL,
        key    TEXT NOT NULL,
        at     BIGINT NOT NULL
    );
    CREATE INDEX limit_starts_key ON limit_starts (worker, rule, key, at);
    INSERT INTO limit_starts (worker, rule, key, at)
        SELECT t.worker, t.limit_rule, t.limit_key, t.started_at
        FROM tasks t JOIN limit_rules r ON r.worker = t.worker AND r.rule = t.limit_rule
        WHERE t.limit_key IS NOT NULL AND t.started_at IS NOT NULL AND r.rate IS NOT NULL
          AND t.started_at > (extract(epoch FROM clock_timestamp()) * 1000)::BIGINT
                             - r.period_ms;
    DROP INDEX tasks_limit_starts;
    "#,
    // The key locks of limits (postgres/limits.rs) and what must be read under them,
    // in one round trip each: a volatile function's statements each take a snapshot of
    // their own, so what it reads after taking the locks sees every claim or finish
    // committed before (a single statement reads from a snapshot taken before its
    // locks, which missed parks). The lock ids come from the caller, as before, so
    // hosts of the previous version, which take the locks with statements of their
    // own, exclude the same keys.
    //
    // stask_try_limit_keys: tries each key's lock (never waits, so claims cannot
    // deadlock) and, for each key held, counts its running tasks and, where since is
    // not NULL (the rule has a rate), its starts after it.
    r#"
    CREATE FUNCTION stask_try_limit_keys(p_class INT, p_hashes INT[], p_workers TEXT[],
                                         p_rules TEXT[], p_keys TEXT[], p_since BIGINT[])
    RETURNS TABLE (key_index BIGINT, key_held BOOLEAN, key_running BIGINT,
                   key_started BIGINT, key_oldest BIGINT)
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        held BOOLEAN[];
    BEGIN
        held := ARRAY(SELECT pg_try_advisory_xact_lock(p_class, u.h)
                      FROM UNNEST(p_hashes) WITH ORDINALITY AS u(h, n) ORDER BY u.n);
        RETURN QUERY
        SELECT k.n, held[k.n],
               CASE WHEN held[k.n] THEN (
                   SELECT COUNT(*) FROM tasks t
                   WHERE t.limit_key IS NOT NULL AND t.status = 'running'
                     AND t.worker = k.w AND t.limit_rule = k.r AND t.limit_key = k.k)
               END,
               s.n, s.oldest
        FROM UNNEST(p_workers, p_rules, p_keys, p_since) WITH ORDINALITY AS k(w, r, k, since, n)
        CROSS JOIN LATERAL (
            SELECT COUNT(*) AS n, MIN(ls.at) AS oldest FROM limit_starts ls
            WHERE held[k.n] AND k.since IS NOT NULL
              AND ls.worker = k.w AND ls.rule = k.r AND ls.key = k.k AND ls.at > k.since
        ) s
        ORDER BY k.n;
    END $$;

    -- stask_lock_limit_keys: waits for each key's lock, in the caller's order (sorted,
    -- the same on every host).
    CREATE FUNCTION stask_lock_limit_keys(p_class INT, p_hashes INT[]) RETURNS VOID
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM pg_advisory_xact_lock(p_class, u.h)
        FROM UNNEST(p_hashes) WITH ORDINALITY AS u(h, n) ORDER BY u.n;
    END $$;

    -- stask_hand_parked: under the keys' locks, the first p_counts parked tasks of each
    -- key in claim order, locked, with their worker's activity and their rule. It and
    -- stask_release_parked first ask whether the keys' workers have any parked task
    -- (one probe of tasks_parked, with the same fresh snapshot) and probe key by key
    -- only then: a queue whose keys rarely wait is spared a probe per key (about 6 us
    -- each, 128 per finish of a batch).
    CREATE FUNCTION stask_hand_parked(p_class INT, p_hashes INT[], p_workers TEXT[],
                                      p_rules TEXT[], p_keys TEXT[], p_counts BIGINT[])
    RETURNS TABLE (task_id BIGINT, task_worker TEXT, task_rule TEXT, task_key TEXT,
                   task_priority SMALLINT, worker_active BOOLEAN, rule_name TEXT,
                   rule_concurrency BIGINT, rule_rate BIGINT, rule_period_ms BIGINT)
    LANGUAGE plpgsql VOLATILE AS $$
    BEGIN
        PERFORM stask_lock_limit_keys(p_class, p_hashes);
        IF NOT EXISTS (SELECT 1 FROM tasks t WHERE t.parked AND t.worker = ANY(p_workers)) THEN
            RETURN;
        END IF;
        RETURN QUERY
        SELECT p.id, p.worker, p.limit_rule, p.limit_key, p.priority,
               COALESCE(w.active, FALSE), r.rule, r.concurrency, r.rate, r.period_ms
        FROM UNNEST(p_workers, p_rules, p_keys, p_counts) AS k(w, r, k, n)
        CROSS JOIN LATERAL (
            SELECT t.id, t.worker, t.limit_rule, t.limit_key, t.priority FROM tasks t
            WHERE t.worker = k.w AND t.limit_rule = k.r AND t.limit_key = k.k AND t.parked
              AND t.status = 'pending'
            ORDER BY t.priority, t.id LIMIT k.n FOR UPDATE OF t SKIP LOCKED) p
        LEFT JOIN workers w ON w.identifier = p.worker
        LEFT JOIN limit_rules r ON r.worker = p.worker AND r.rule = p.limit_rule;
    END $$;

    -- stask_release_parked: under the keys' locks, makes the first p_counts parked
    -- tasks of each key due at p_now; returns how many.
    CREATE FUNCTION stask_release_parked(p_class INT, p_hashes INT[], p_workers TEXT[],
                                         p_rules TEXT[], p_keys TEXT[], p_counts BIGINT[],
                                         p_now BIGINT)
    RETURNS BIGINT
    LANGUAGE plpgsql VOLATILE AS $$
    DECLARE
        released BIGINT;
    BEGIN
        PERFORM stask_lock_limit_keys(p_class, p_hashes);
        IF NOT EXISTS (SELECT 1 FROM tasks t WHERE t.parked AND t.worker = ANY(p_workers)) THEN
            RETURN 0;
        END IF;
        UPDATE tasks t SET parked = FALSE, run_after = p_now
        FROM UNNEST(p_workers, p_rules, p_keys, p_counts) AS k(w, r, k, n)
        CROSS JOIN LATERAL (
            SELECT x.id FROM tasks x
            WHERE x.worker = k.w AND x.limit_rule = k.r AND x.limit_key = k.k AND x.parked
              AND x.status = 'pending'
            ORDER BY x.priority, x.id LIMIT k.n FOR UPDATE OF x SKIP LOCKED) p
        WHERE t.id = p.id;
        GET DIAGNOSTICS released = ROW_COUNT;
        RETURN released;
    END $$;
    "#,
];

/// The newest schema version this build knows.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

/// Brings the schema up to date (see the module docs for running on several hosts at
/// once).
pub(crate) fn migrate(client: &mut Client) -> Result<(), StoreError> {
    let exists: bool = client
        .query_one("SELECT to_regclass('stask_schema') IS NOT NULL", &[])
        .context("read the schema table")?
        .get(0);
    if exists {
        return migrate_steps(client);
    }
    // Under the migrations' lock: `CREATE TABLE IF NOT EXISTS` is not safe against
    // itself (two hosts creating the table at the same moment, one of them fails with
    // "type … already exists" on the catalog), so hosts starting at once take turns.
    let mut tx = client
        .transaction()
        .context("begin creating the schema table")?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .context("wait for other hosts' migrations")?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS stask_schema (
             version BIGINT NOT NULL,
             applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
         )",
    )
    .context("create the schema table")?;
    tx.commit().context("create the schema table")?;
    migrate_steps(client)
}

/// Applies the steps the database lacks.
fn migrate_steps(client: &mut Client) -> Result<(), StoreError> {
    let current = version(client)?;
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
        let target = index as i64 + 1;
        let mut tx = client.transaction().context("begin migration")?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
            .context("wait for other hosts' migrations")?;
        let now: i64 = tx
            .query_one("SELECT COALESCE(MAX(version), 0) FROM stask_schema", &[])
            .context("read schema version")?
            .get(0);
        if now >= target {
            tx.commit().context("end migration")?;
            continue;
        }
        tx.batch_execute(sql)
            .context(&format!("apply migration {target}"))?;
        tx.execute("INSERT INTO stask_schema (version) VALUES ($1)", &[&target])
            .context("record schema version")?;
        tx.commit().context("commit migration")?;
    }
    Ok(())
}

/// The schema version the database is at (0: empty).
pub(crate) fn version(client: &mut Client) -> Result<i64, StoreError> {
    Ok(client
        .query_one("SELECT COALESCE(MAX(version), 0) FROM stask_schema", &[])
        .context("read schema version")?
        .get(0))
}
