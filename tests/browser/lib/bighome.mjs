// A home with many tasks, written straight into its SQLite database with the sqlite3
// command-line shell: a million tasks through the engine would take hours. The rows go
// in with one INSERT … SELECT, so the statistics triggers (task_counts, task_activity,
// worker_activity, task_minutes) and the free-text index's triggers run for every row,
// as for any write outside the engine's batches: the counters the dashboard reads agree
// with the rows.

import { execFileSync } from 'node:child_process';
import path from 'node:path';

/**
 * Adds `n` tasks of the demo and product workers to `home` (made by makeHome, the
 * service not running), ids 1…n in creation order:
 *
 * * the newest `pending` are pending, waiting a day for a later start (so a service
 *   leaves them alone);
 * * the `lastHour` before them finished over the last hour, evenly;
 * * the rest finished over the `days` days before that (within the default
 *   retention of 30 days, so clean-up leaves them);
 * * of the finished ones, every 97th was cancelled before it started, every 50th failed,
 *   the others completed.
 *
 * Returns the time (ms) the finish times are counted back from.
 */
export function addTasks(home, { n = 1_000_000, pending = 2_000, lastHour = 100_000, days = 20 } = {}) {
  for (const v of [n, pending, lastHour, days]) if (!Number.isSafeInteger(v) || v < 0) throw new Error(`bad count ${v}`);
  if (pending + lastHour > n) throw new Error('more pending and recent tasks than tasks');
  const now = Date.now();
  const hour = 3_600_000;
  const older = n - pending - lastHour;
  const sql = `
PRAGMA cache_size = -262144;
BEGIN;
WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < ${n}),
f AS (
  SELECT i,
    CASE WHEN i > ${n - pending} THEN NULL
         WHEN i > ${older} THEN ${now - hour} + (i - ${older}) * ${hour} / ${Math.max(lastHour, 1)} - 1
         ELSE ${now - days * 86_400_000} + i * ${days * 86_400_000 - hour} / ${Math.max(older, 1)} - ${hour}
    END AS fin,
    CASE WHEN i > ${n - pending} THEN 'pending'
         WHEN i % 97 = 0 THEN 'cancelled'
         WHEN i % 50 = 0 THEN 'failed'
         ELSE 'completed' END AS st
  FROM s
)
INSERT INTO tasks (id, worker, action, status, priority, progress, processed, total, message,
    data, started_by, attempts, max_attempts, run_after, created_at, started_at, finished_at, error)
SELECT i,
  CASE WHEN i % 4 = 0 THEN 'product' ELSE 'demo' END,
  CASE WHEN i % 4 = 0 THEN 'import' WHEN i % 3 = 0 THEN 'noop' ELSE 'run' END,
  st,
  i % 3,
  CASE st WHEN 'completed' THEN 100 WHEN 'pending' THEN 0 ELSE 40 END,
  CASE st WHEN 'completed' THEN 10 WHEN 'pending' THEN 0 ELSE 4 END,
  CASE st WHEN 'pending' THEN 0 ELSE 10 END,
  CASE st WHEN 'completed' THEN 'Task completed successfully (' || (1 + i % 9) || '.' || (i % 10) || 's)'
          WHEN 'failed' THEN 'Task failed after 2.0s: the input file is missing'
          WHEN 'cancelled' THEN 'Cancelled before it started'
          ELSE 'Task created (priority normal, by alice)' END,
  '{"steps":10}',
  CASE WHEN i % 5 = 0 THEN NULL ELSE 'alice' END,
  CASE st WHEN 'pending' THEN 0 WHEN 'cancelled' THEN 0 ELSE 1 END,
  3,
  CASE st WHEN 'pending' THEN ${now + 86_400_000} ELSE 0 END,
  CASE WHEN fin IS NULL THEN ${now} - (${n} - i) * 10 ELSE fin - 2000 - i % 5000 END,
  CASE WHEN st IN ('completed', 'failed') THEN fin - 100 - i % 3000 END,
  fin,
  CASE st WHEN 'failed' THEN 'the input file is missing' END
FROM f;
UPDATE meta SET value = (SELECT MAX(id) + 1 FROM tasks) WHERE key = 'next_task_id';
COMMIT;
PRAGMA wal_checkpoint(TRUNCATE);
`;
  execFileSync('sqlite3', [path.join(home, 'stask.db')], { input: sql, stdio: ['pipe', 'ignore', 'pipe'] });
  return now;
}
