//! The free-text index of the task list (`TaskQuery::text`, the API's `q=`).
//!
//! A search matches a task by its id, or by a substring (ASCII case-insensitive, SQLite's
//! `LIKE`) of its worker, action or message. Scanning the task table for that cost
//! 0.2-0.35 s at a million tasks. Tasks share few texts, though: a batch of created
//! tasks has one creation message, and most outcomes read "Task completed successfully
//! (5ms)". So the texts are kept apart, each once:
//!
//! * `task_texts`: every distinct (worker, action, message) of the tasks that are not
//!   running, with a trigram FTS5 index over it (`task_texts_fts`: external content,
//!   `detail=none`, so a text costs its trigrams' row ids and nothing else). A row never
//!   changes; rows no task names any more are deleted by clean-up ([`forget_unused`],
//!   [`sweep`]).
//! * `tasks.text_id`: the text of each task that is not running, with a partial index
//!   (`tasks_text`). A running task's message changes with every progress report, so
//!   while it runs its `text_id` is NULL and a search reads its row instead (the running
//!   tasks are few, found by the status index).
//!
//! A search first finds the matching texts (the trigram index narrows them down, the
//! same `LIKE` as ever decides on each), then counts and pages the tasks naming them
//! through `tasks_text` alone: 0.15 ms for a text no task has and 1.3 ms for one 10,000
//! of a million tasks have. Matching stays exactly what it was: the same `LIKE` on the
//! same strings, only each string once.
//!
//! Writes: the trigger-less connection's writes keep the texts themselves (an insert of
//! tasks names one text; a claim sets `text_id` to NULL; a finish names the outcome's
//! text, looked up once per distinct text of the batch; a delete forgets texts no task
//! names any more), and the triggers of migration 11 do it for every other write. A
//! known text costs a task an entry in `tasks_text`; a new one also its trigrams in the
//! FTS5 index. In all about 2 µs of CPU per task run (5 % of `tasks process` for no-op
//! tasks). Rejected: an FTS5 row per task, replaced at every claim and finish, cost
//! 30-100 µs per replaced row (`contentless_delete` tombstones) and an index of 50 bytes a
//! task; one per finished task only left the pending backlog to scan for every search.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::finish::id_list;
use super::Context;
use crate::error::StoreError;

/// Tasks given their texts per transaction by [`fill`]: short enough that writers
/// waiting for the lock are not held up for long (about 25 ms each on the 2-core
/// development machine; a million tasks take 2.5 s).
const FILL_BATCH: i64 = 10_000;

/// Texts checked per call of [`sweep`].
const SWEEP_BATCH: i64 = 500;

/// At most this many trigrams of a search text are looked up: any of them is a
/// condition every matching text meets, and each costs a walk of its postings.
const MAX_TRIGRAMS: usize = 16;

/// Whether the connection runs triggers: on the trigger-less connection the texts'
/// index is kept here, elsewhere by the triggers on `task_texts`.
fn triggers_on(conn: &Connection) -> Result<bool, StoreError> {
    conn.db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_TRIGGER)
        .context("read trigger setting")
}

/// The id of the text (worker, action, message), added (with its index entry) when no
/// task had it yet. Inside the caller's write transaction.
pub(super) fn intern(
    conn: &Connection,
    worker: &str,
    action: &str,
    message: &str,
) -> Result<i64, StoreError> {
    let known: Option<i64> = conn
        .prepare_cached(
            "SELECT id FROM task_texts WHERE worker = ?1 AND action = ?2 AND message = ?3",
        )
        .and_then(|mut s| s.query_row(params![worker, action, message], |r| r.get(0)))
        .optional()
        .context("read task text")?;
    if let Some(id) = known {
        return Ok(id);
    }
    conn.prepare_cached("INSERT INTO task_texts (worker, action, message) VALUES (?1, ?2, ?3)")
        .and_then(|mut s| s.execute(params![worker, action, message]))
        .context("add task text")?;
    let id = conn.last_insert_rowid();
    if !triggers_on(conn)? {
        conn.prepare_cached(
            "INSERT INTO task_texts_fts (rowid, worker, action, message) VALUES (?1, ?2, ?3, ?4)",
        )
        .and_then(|mut s| s.execute(params![id, worker, action, message]))
        .context("index task text")?;
    }
    Ok(id)
}

/// The text ids of tasks about to get `messages` (task id, new message), in that order:
/// `None` for a task that does not exist. Each distinct text is looked up once.
pub(super) fn intern_messages(
    conn: &Connection,
    messages: &[(i64, &str)],
) -> Result<Vec<Option<i64>>, StoreError> {
    if messages.is_empty() {
        // A claim without finishes to record.
        return Ok(Vec::new());
    }
    let mut names: HashMap<i64, (String, String)> = HashMap::with_capacity(messages.len());
    {
        let ids: Vec<i64> = messages.iter().map(|(id, _)| *id).collect();
        let mut stmt = conn
            .prepare_cached(
                "SELECT t.id, t.worker, t.action FROM json_each(?1) AS j
                 JOIN tasks AS t ON t.id = j.value",
            )
            .context("read task names")?;
        let mut rows = stmt.query([id_list(&ids)]).context("read task names")?;
        while let Some(r) = rows.next().context("read task names")? {
            names.insert(
                r.get(0).context("read task names")?,
                (
                    r.get(1).context("read task names")?,
                    r.get(2).context("read task names")?,
                ),
            );
        }
    }
    let mut known: HashMap<(&str, &str, &str), i64> = HashMap::new();
    let mut out = Vec::with_capacity(messages.len());
    for (id, message) in messages {
        let Some((worker, action)) = names.get(id) else {
            out.push(None);
            continue;
        };
        let key = (worker.as_str(), action.as_str(), *message);
        let text = match known.get(&key) {
            Some(t) => *t,
            None => {
                let t = intern(conn, worker, action, message)?;
                known.insert(key, t);
                t
            }
        };
        out.push(Some(text));
    }
    Ok(out)
}

/// Deletes those of the texts `ids` that no task names any more, with their index
/// entries. Inside the caller's write transaction, so no other writer can name one of
/// them meanwhile.
pub(super) fn forget_unused(conn: &Connection, ids: &[i64]) -> Result<usize, StoreError> {
    if ids.is_empty() {
        return Ok(0);
    }
    let unused: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached(
                "SELECT j.value FROM json_each(?1) AS j
                 WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE text_id = j.value)",
            )
            .context("find unused task texts")?;
        let rows = stmt
            .query_map([id_list(ids)], |r| r.get(0))
            .context("find unused task texts")?;
        rows.collect::<Result<_, _>>()
            .context("find unused task texts")?
    };
    if unused.is_empty() {
        return Ok(0);
    }
    let list = id_list(&unused);
    if !triggers_on(conn)? {
        // An external-content index forgets a row by its values, which never change.
        conn.prepare_cached(
            "INSERT INTO task_texts_fts (task_texts_fts, rowid, worker, action, message)
             SELECT 'delete', x.id, x.worker, x.action, x.message
             FROM json_each(?1) AS j JOIN task_texts AS x ON x.id = j.value",
        )
        .and_then(|mut s| s.execute([&list]))
        .context("unindex task texts")?;
    }
    conn.prepare_cached("DELETE FROM task_texts WHERE id IN (SELECT value FROM json_each(?1))")
        .and_then(|mut s| s.execute([&list]))
        .context("delete task texts")?;
    Ok(unused.len())
}

/// Checks the next [`SWEEP_BATCH`] texts (in id order, from where the last sweep
/// stopped, starting over at the end) and deletes those no task names. Texts of deleted
/// tasks go with them ([`forget_unused`]); this finds the others: the creation text of
/// the last pending task claimed, the message of a failed task that was retried.
/// Returns how many it deleted.
pub(super) fn sweep(conn: &Connection) -> Result<usize, StoreError> {
    let after: i64 = conn
        .prepare_cached("SELECT value FROM meta WHERE key = 'text_sweep_after'")
        .and_then(|mut s| s.query_row([], |r| r.get(0)))
        .optional()
        .context("read text sweep position")?
        .unwrap_or(0);
    let ids: Vec<i64> = {
        let mut stmt = conn
            .prepare_cached("SELECT id FROM task_texts WHERE id > ?1 ORDER BY id LIMIT ?2")
            .context("sweep task texts")?;
        let rows = stmt
            .query_map(params![after, SWEEP_BATCH], |r| r.get(0))
            .context("sweep task texts")?;
        rows.collect::<Result<_, _>>().context("sweep task texts")?
    };
    let next = if (ids.len() as i64) < SWEEP_BATCH {
        0
    } else {
        ids.last().copied().unwrap_or(0)
    };
    conn.prepare_cached(
        "INSERT INTO meta (key, value) VALUES ('text_sweep_after', ?1)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute([next]))
    .context("record text sweep position")?;
    forget_unused(conn, &ids)
}

/// Whether every task that is not running names its text: false while [`fill`] has
/// tasks left (a store that cannot be written may be opened then), and searches then
/// read the task table itself.
pub(super) fn ready(conn: &Connection) -> Result<bool, StoreError> {
    let left = conn
        .prepare_cached("SELECT 1 FROM meta WHERE key = 'text_fill_after'")
        .and_then(|mut s| s.exists([]))
        .context("read text index state")?;
    Ok(!left)
}

/// Gives the tasks stored before migration 11 their texts, [`FILL_BATCH`] at a time in
/// id order, each batch in its own transaction with its position (`text_fill_after` in
/// `meta`): an interrupted fill resumes where it stopped, and processes opening the
/// store at once share the work. Tasks written meanwhile by this version already name
/// their texts and are skipped. The position is deleted once every task is done.
pub(super) fn fill(conn: &mut Connection) -> Result<(), StoreError> {
    fill_batches(conn, FILL_BATCH, usize::MAX).map(|_| ())
}

/// [`fill`] in batches of `batch` tasks, at most `batches` of them; returns whether the
/// fill is done.
pub(super) fn fill_batches(
    conn: &mut Connection,
    batch: i64,
    batches: usize,
) -> Result<bool, StoreError> {
    // Every open asks; only an unfinished fill takes the write lock.
    if ready(conn)? {
        return Ok(true);
    }
    debug_assert!(triggers_on(conn)?, "new texts are indexed by the triggers");
    for _ in 0..batches {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin filling the text index")?;
        let after: Option<i64> = tx
            .query_row(
                "SELECT value FROM meta WHERE key = 'text_fill_after'",
                [],
                |r| r.get(0),
            )
            .optional()
            .context("read text fill position")?;
        let Some(after) = after else {
            return Ok(true);
        };
        let end: Option<i64> = tx
            .query_row(
                "SELECT MAX(id) FROM (SELECT id FROM tasks WHERE id > ?1 ORDER BY id LIMIT ?2)",
                params![after, batch],
                |r| r.get(0),
            )
            .context("fill the text index")?;
        match end {
            None => {
                tx.execute("DELETE FROM meta WHERE key = 'text_fill_after'", [])
                    .context("finish the text index")?;
            }
            Some(end) => {
                // This connection runs the triggers: new texts are indexed by them.
                tx.execute(
                    "INSERT OR IGNORE INTO task_texts (worker, action, message)
                     SELECT worker, action, message FROM tasks
                     WHERE id > ?1 AND id <= ?2 AND status <> 'running' AND text_id IS NULL",
                    params![after, end],
                )
                .context("fill the text index")?;
                tx.execute(
                    "UPDATE tasks SET text_id = (SELECT x.id FROM task_texts AS x
                        WHERE x.worker = tasks.worker AND x.action = tasks.action
                            AND x.message = tasks.message)
                     WHERE id > ?1 AND id <= ?2 AND status <> 'running' AND text_id IS NULL",
                    params![after, end],
                )
                .context("fill the text index")?;
                tx.execute(
                    "UPDATE meta SET value = ?1 WHERE key = 'text_fill_after'",
                    [end],
                )
                .context("record text fill position")?;
            }
        }
        tx.commit().context("commit text index fill")?;
    }
    ready(conn)
}

/// The FTS5 query that every text containing `text` (as `LIKE` matches it: ASCII
/// letters in either case) matches: up to [`MAX_TRIGRAMS`] of its trigrams, all
/// required. The index folds case (Unicode, so beyond ASCII as well), so it finds a
/// superset and `LIKE` decides.
///
/// `None` when the index cannot help: a text shorter than three characters has no
/// trigram (such a search reads every text instead, which are few), and `LIKE` stops
/// at a NUL character while the tokenizer would not see past it either way, so a text
/// with one is left to `LIKE` alone.
pub(super) fn fts_query(text: &str) -> Option<String> {
    if text.contains('\0') {
        return None;
    }
    let chars: Vec<char> = text.chars().collect();
    if chars.len() < 3 {
        return None;
    }
    let mut grams: Vec<String> = chars
        .windows(3)
        .map(|w| w.iter().flat_map(|c| c.to_lowercase()).collect())
        .collect::<Vec<String>>();
    // Distinct ones, in order; lower-cased only to spot repeats (the index folds).
    let mut seen = std::collections::HashSet::new();
    let mut distinct: Vec<usize> = Vec::new();
    for (i, g) in grams.iter().enumerate() {
        if seen.insert(g.clone()) {
            distinct.push(i);
        }
    }
    // Spread over the text when there are more than enough: the first and the last
    // always, so both ends of a long text narrow the search.
    let pick: Vec<usize> = if distinct.len() <= MAX_TRIGRAMS {
        distinct
    } else {
        (0..MAX_TRIGRAMS)
            .map(|k| distinct[k * (distinct.len() - 1) / (MAX_TRIGRAMS - 1)])
            .collect()
    };
    grams = pick
        .into_iter()
        .map(|i| {
            let gram: String = chars[i..i + 3].iter().collect();
            format!("\"{}\"", gram.replace('"', "\"\""))
        })
        .collect();
    Some(grams.join(" AND "))
}

/// What is wrong with the text index, one entry per problem: a task that is not running
/// without its exact text, a running task with one, a text stored twice, an index that
/// differs from the texts. (A text no task names is no problem: clean-up deletes it.)
#[cfg(test)]
pub(super) fn problems(conn: &Connection) -> Vec<String> {
    let mut out = Vec::new();
    let mut stmt = conn
        .prepare(
            "SELECT t.id, t.status, t.text_id FROM tasks AS t
             LEFT JOIN task_texts AS x ON x.id = t.text_id
             WHERE (t.status = 'running' AND t.text_id IS NOT NULL)
                OR (t.status <> 'running' AND (x.id IS NULL OR x.worker IS NOT t.worker
                    OR x.action IS NOT t.action OR x.message IS NOT t.message))",
        )
        .unwrap();
    let rows = stmt
        .query_map([], |r| {
            Ok(format!(
                "task {} ({}) names text {:?}",
                r.get::<_, i64>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, Option<i64>>(2)?
            ))
        })
        .unwrap();
    out.extend(rows.map(Result::unwrap));
    let duplicates: i64 = conn
        .query_row(
            "SELECT COUNT(*) - COUNT(DISTINCT worker || char(1) || action || char(1) || message)
             FROM task_texts",
            [],
            |r| r.get(0),
        )
        .unwrap();
    if duplicates != 0 {
        out.push(format!("{duplicates} duplicate texts"));
    }
    if let Err(e) = conn.execute(
        "INSERT INTO task_texts_fts (task_texts_fts, rank) VALUES ('integrity-check', 1)",
        [],
    ) {
        out.push(format!("the trigram index differs from the texts: {e}"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::{completed, finish, line, task};
    use crate::sqlite::search::like_pattern;
    use crate::sqlite::test_support::store_with_workers;
    use crate::sqlite::SqliteStore;
    use crate::{
        Claim, NewTask, Outcome, ProgressUpdate, Status, TaskQuery, TaskQueue, TaskSearch,
    };

    fn assert_sound(s: &SqliteStore, after: &str) {
        let p = problems(&s.conn);
        assert!(p.is_empty(), "after {after}: {p:?}");
    }

    fn claim_n(s: &mut SqliteStore, n: usize, now: i64) -> Vec<i64> {
        s.claim(&Claim {
            finishes: &[],
            owner: "me",
            now,
            limit: n,
            excluded_workers: &[],
            start_line: &|_| line("running", "started"),
        })
        .unwrap()
        .1
        .iter()
        .map(|c| c.task.id)
        .collect()
    }

    fn texts(s: &SqliteStore) -> i64 {
        s.conn
            .query_row("SELECT COUNT(*) FROM task_texts", [], |r| r.get(0))
            .unwrap()
    }

    #[test]
    fn every_write_keeps_each_task_naming_its_exact_text() {
        let (_dir, mut s) = store_with_workers(&["w", "v"]);
        assert_sound(&s, "opening");
        let ids = s
            .insert_tasks(&task("w", 0), 6, &line("pending", "made"))
            .unwrap();
        s.insert_tasks(&task("v", 0), 2, &line("pending", "made"))
            .unwrap();
        assert_sound(&s, "inserting");
        assert_eq!(texts(&s), 2, "one text per (worker, action, message)");
        let running = claim_n(&mut s, 4, 10);
        assert_eq!(running, ids[..4]);
        assert_sound(&s, "claiming");
        let update = |id, message: &str| ProgressUpdate {
            id,
            progress: 1,
            processed: 1,
            total: 2,
            message: message.into(),
        };
        s.record_progress("me", &[update(ids[0], "half"), update(ids[1], "half")], &[])
            .unwrap();
        assert_sound(&s, "progress");
        let failed = |id, retry_at| {
            finish(
                id,
                "me",
                Outcome::Failed {
                    error: "boom".into(),
                    retry_at,
                },
                "failed",
                20,
            )
        };
        let applied = s
            .finish_tasks(&[
                finish(ids[0], "me", completed(), "completed", 20),
                finish(ids[1], "me", completed(), "completed", 20),
                failed(ids[2], None),
                failed(ids[3], Some(30)),
                // Not this owner's claim: nothing changes.
                finish(ids[4], "me", completed(), "completed", 20),
            ])
            .unwrap();
        assert_eq!(applied, [true, true, true, true, false]);
        assert_sound(&s, "finishing");
        // The writes of the connection with triggers: a cancel, a retry, a cancel
        // request, a scheduled task's insert, an edit, a delete.
        s.request_cancel(ids[5], 40, &line("cancelled", "stopped by ann"))
            .unwrap();
        s.retry_task(ids[2], 41, &|_| line("pending", "again"))
            .unwrap();
        let again = claim_n(&mut s, 1, 42);
        s.request_cancel(again[0], 43, &line("cancelled", "x"))
            .unwrap();
        assert_sound(&s, "cancelling and retrying");
        s.conn
            .execute(
                "INSERT INTO tasks (id, worker, action, status, created_at, message)
                 VALUES (1000, 'w', 'run', 'pending', 1, 'by hand'),
                        (1001, 'w', 'run', 'running', 1, 'by hand')",
                [],
            )
            .unwrap();
        assert_sound(&s, "inserting with triggers");
        s.conn
            .execute_batch(
                "UPDATE tasks SET status = 'running' WHERE id = 1000;
                 UPDATE tasks SET status = 'failed', message = 'lost' WHERE id = 1001;
                 UPDATE tasks SET message = 'edited' WHERE id = 1001;
                 UPDATE tasks SET status = 'completed' WHERE id = 1001;",
            )
            .unwrap();
        assert_sound(&s, "updating with triggers");
        s.conn
            .execute("DELETE FROM tasks WHERE id = 1001", [])
            .unwrap();
        assert_sound(&s, "deleting with triggers");
        // Clean-up forgets the texts of what it deletes and sweeps the rest.
        let deleted = s
            .delete_finished_before(
                &[Status::Completed, Status::Failed, Status::Cancelled],
                100,
                100,
            )
            .unwrap();
        assert!(deleted.len() >= 3, "{deleted:?}");
        assert_sound(&s, "cleaning up");
        let unused: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM task_texts AS x
                 WHERE NOT EXISTS (SELECT 1 FROM tasks WHERE text_id = x.id)",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(unused, 0, "every text left is named by a task");
    }

    #[test]
    fn a_text_no_task_names_any_more_is_swept_by_clean_up() {
        let (_dir, mut s) = store_with_workers(&["w"]);
        s.insert_tasks(&task("w", 0), 2, &line("pending", "made"))
            .unwrap();
        // Claiming both leaves the creation text unnamed; nothing is deleted.
        claim_n(&mut s, 2, 10);
        assert_eq!(texts(&s), 1);
        let deleted = s
            .delete_finished_before(&[Status::Completed], 100, 100)
            .unwrap();
        assert!(deleted.is_empty());
        assert_eq!(texts(&s), 0, "the sweep deleted it");
        assert_sound(&s, "sweeping");
        let indexed: i64 = s
            .conn
            .query_row(
                "SELECT COUNT(*) FROM task_texts_fts WHERE task_texts_fts MATCH '\"mad\"'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(indexed, 0, "and its index entries");
    }

    /// The search of every version before the text index: the task table itself.
    fn searched_before(s: &SqliteStore, text: &str) -> Vec<i64> {
        let text = text.trim_matches(' ');
        let id = text.trim_start_matches('#').parse::<i64>().ok();
        let mut stmt = s
            .conn
            .prepare(
                "SELECT id FROM tasks WHERE id = ?1 OR worker LIKE ?2 ESCAPE '\\'
                    OR action LIKE ?2 ESCAPE '\\' OR message LIKE ?2 ESCAPE '\\'
                 ORDER BY id DESC",
            )
            .unwrap();
        let rows = stmt
            .query_map(rusqlite::params![id, like_pattern(text)], |r| r.get(0))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    #[test]
    fn searches_find_exactly_what_the_task_table_scan_found() {
        const MESSAGES: &[&str] = &[
            "Ärger über Öl",
            "at 300 \u{212A} now",
            "tab\there",
            "new\nline",
            "nul\0byte",
            "100% done_ok",
            "back\\slash",
            "quote \"x\" 'y'",
            "CamelCase Mixed",
            "ends with space ",
            "emoji 🎉 party",
            "ＦＵＬＬ width",
            "ǅemal ǆ ǅ",
            "Straße STRASSE",
        ];
        const QUERIES: &[&str] = &[
            "ärger",
            "ÄRGER",
            "Ärger",
            "äRGER",
            "öl",
            "Öl",
            "ÜBER",
            "über",
            "300 k",
            "300 \u{212A}",
            "\u{212A} n",
            "tab\th",
            "tab",
            "\t",
            "\n",
            "new\nl",
            "nul",
            "byte",
            "nul\0b",
            "l\0",
            "%",
            "100%",
            "0% d",
            "_",
            "done_ok",
            "e_o",
            "\\",
            "back\\s",
            "\"x\"",
            "'y'",
            "\"",
            "camelcase",
            "MIXED",
            "space ",
            " space",
            "🎉",
            "🎉 p",
            "ｆｕｌｌ",
            "ＦＵＬＬ",
            "ǆ",
            "ǅ",
            "ǆemal",
            "strasse",
            "STRAßE",
            "ab",
            "a",
            "e",
            "#3",
            "3",
            "run",
            "RUN",
            "w",
            "v",
            "vv",
            "half",
            "made",
            "ended",
            "ENDED COMP",
            "boom",
            "x",
        ];
        let (_dir, mut s) = store_with_workers(&["w", "vv"]);
        // Every message as a creation message, as the message of a running task, and as
        // an outcome's.
        for m in MESSAGES {
            let t = NewTask {
                limit: None,
                parent: None,
                action: format!("run_{}", m.len() % 3),
                ..task("w", 0)
            };
            s.insert_tasks(&t, 3, &line("pending", m)).unwrap();
        }
        s.insert_tasks(&task("vv", 0), 2, &line("pending", "made"))
            .unwrap();
        let running = claim_n(&mut s, 2 * MESSAGES.len(), 10);
        let updates: Vec<_> = running
            .iter()
            .zip(MESSAGES.iter().cycle())
            .map(|(id, m)| ProgressUpdate {
                id: *id,
                progress: 1,
                processed: 1,
                total: 2,
                message: (*m).into(),
            })
            .collect();
        s.record_progress("me", &updates, &[]).unwrap();
        let ends: Vec<_> = running
            .iter()
            .step_by(2)
            .zip(MESSAGES.iter().rev().cycle())
            .map(|(id, m)| crate::Finish {
                message: (*m).into(),
                ..finish(*id, "me", completed(), "completed", 20)
            })
            .collect();
        s.finish_tasks(&ends).unwrap();
        assert_sound(&s, "writing");
        for q in QUERIES {
            let want = searched_before(&s, q);
            let page = s
                .search_tasks(&TaskQuery {
                    text: Some((*q).into()),
                    limit: 500,
                    ..Default::default()
                })
                .unwrap();
            let got: Vec<i64> = page.tasks.iter().map(|t| t.id).collect();
            assert_eq!((&got, page.total), (&want, want.len() as i64), "q = {q:?}");
        }
        // A few cases spelled out, so a scan that changed would not pass unnoticed.
        let total = |q: &str| searched_before(&s, q).len();
        assert_eq!(total("ärger"), 0, "LIKE folds ASCII letters only");
        assert!(total("ÄRGER") > 0, "Ä as itself, RGER as rger");
        assert_eq!(total("300 k"), 0, "the Kelvin sign is not k");
        assert!(total("300 \u{212A}") > 0);
        assert_eq!(total("byte"), 0, "LIKE stops at a NUL");
        assert!(total("nul") > 0);
    }

    #[test]
    fn short_texts_and_texts_with_nul_use_no_trigram_query() {
        assert_eq!(fts_query("ab"), None);
        assert_eq!(fts_query("a\0bcd"), None);
        assert_eq!(fts_query("abc").as_deref(), Some("\"abc\""));
        assert_eq!(
            fts_query("a\"bcd").as_deref(),
            Some("\"a\"\"b\" AND \"\"\"bc\" AND \"bcd\"")
        );
        // Repeats once, whatever their case.
        assert_eq!(fts_query("abcABC").unwrap().matches("abc").count(), 1);
    }

    #[test]
    fn a_long_text_asks_for_a_spread_of_its_trigrams_ending_with_the_last() {
        let text: String = ('a'..='z').collect();
        let q = fts_query(&text).unwrap();
        let terms: Vec<&str> = q.split(" AND ").collect();
        assert_eq!(terms.len(), MAX_TRIGRAMS);
        assert_eq!(terms[0], "\"abc\"");
        assert_eq!(*terms.last().unwrap(), "\"xyz\"");
    }
}
