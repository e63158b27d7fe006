//! Importing what an older stask kept as files beside the database: progress logs
//! (`storage/stask/{id}.log`) and result directories (`storage/stask/results/{id}/`).
//!
//! Runs once per database, at open, in batches: each batch is committed before its
//! files are removed, and every step skips what is already imported, so an import
//! killed half-way finishes at the next open and nothing is lost or doubled. Files of
//! tasks that no longer exist, and files that cannot be read, are left where they are:
//! the import never stops a store from opening.
//!
//! Result files are taken with the rules of the engine's ingest: regular files with a
//! single link only, never a file of the store itself (homes of the older stask could
//! hold hard links to the database there), opened without following links.
//!
//! The older stask wrote a task's final line before it committed the outcome, so a
//! crash could leave a task `running` whose log already says how it ended. Such a task
//! takes the outcome its log tells (it ran; running it again is what must not happen);
//! any other log whose last line disagrees with its task's status gets a line stating
//! the status, so the two agree from the start.

use std::fs::File;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rusqlite::{params, TransactionBehavior};

use super::logs::append_texts;
use super::{Context, SqliteStore};
use crate::error::StoreError;
use crate::files::{PutFileError, ResultFiles};
use crate::log_line::{complete_lines, LogLine};
use crate::Store;

/// Log files imported per transaction.
const BATCH: usize = 1000;

/// Imports the legacy files, once.
pub(super) fn import(store: &mut SqliteStore) -> Result<(), StoreError> {
    let done: i64 = store
        .conn
        .query_row(
            "SELECT value FROM meta WHERE key = 'legacy_files_imported'",
            [],
            |r| r.get(0),
        )
        .context("read import state")?;
    if done != 0 {
        return Ok(());
    }
    let dir = store.dir().join("storage").join("stask");
    if dir.is_dir() {
        import_logs(store, &dir)?;
        import_results(store, &dir.join("results"))?;
        // Empty directories left behind go; anything else stays for the operator.
        let _ = std::fs::remove_dir(dir.join("results"));
        let _ = std::fs::remove_dir(&dir);
        let _ = std::fs::remove_dir(store.dir().join("storage"));
    }
    store
        .conn
        .execute(
            "UPDATE meta SET value = 1 WHERE key = 'legacy_files_imported'",
            [],
        )
        .context("record import")?;
    Ok(())
}

/// Makes task `id` and the last line of its imported log agree: a task left `running`
/// whose log tells how it ended takes that outcome; any other disagreement gets a line
/// stating the task's status.
fn reconcile(tx: &rusqlite::Transaction<'_>, id: i64, last: &str) -> Result<(), StoreError> {
    let Some(line) = LogLine::parse(last) else {
        return Ok(());
    };
    let status: String = tx
        .query_row("SELECT status FROM tasks WHERE id = ?1", [id], |r| r.get(0))
        .context("reconcile an imported log")?;
    if line.status == status {
        return Ok(());
    }
    let now = crate::now_ms();
    let told = line.status.as_str();
    if status == "running" && matches!(told, "completed" | "failed" | "cancelled" | "pending") {
        let finished = (told != "pending").then_some(now);
        tx.execute(
            "UPDATE tasks SET status = ?2, finished_at = ?3, owner = NULL, cancel_requested = 0,
                run_after = CASE WHEN ?2 = 'pending' THEN ?4 ELSE run_after END, message = ?5
             WHERE id = ?1 AND status = 'running'",
            params![id, told, finished, now, line.message],
        )
        .context("reconcile an imported log")?;
        return Ok(());
    }
    let note = LogLine::new(
        &status,
        line.progress,
        line.processed,
        line.total,
        "",
        &format!("Imported from an older stask; the task is {status}"),
    );
    // The note is written now; the imported lines' own times are unknown.
    append_texts(tx, &[(id, note.text())], Some(crate::now_ms()))
}

/// `{id}.log` files of `dir`, by id.
fn log_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Ok(out);
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let id = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<i64>().ok());
        if let (Some(id), Ok(t)) = (id, entry.file_type()) {
            if t.is_file() {
                out.push((id, path));
            }
        }
    }
    out.sort();
    Ok(out)
}

fn import_logs(store: &mut SqliteStore, dir: &Path) -> Result<(), StoreError> {
    let private = private_ids(store);
    for batch in log_files(dir)?.chunks(BATCH) {
        let mut imported = Vec::new();
        let tx = store
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .context("begin importing logs")?;
        for (id, path) in batch {
            let exists: bool = tx
                .query_row("SELECT 1 FROM tasks WHERE id = ?1", [id], |_| Ok(true))
                .or_else(|e| match e {
                    rusqlite::Error::QueryReturnedNoRows => Ok(false),
                    e => Err(e),
                })
                .context("import logs")?;
            if !exists {
                continue;
            }
            let has_lines: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM task_logs WHERE task_id = ?1)",
                    [id],
                    |r| r.get(0),
                )
                .context("import logs")?;
            if !has_lines {
                // Unreadable or unsafe (a link, perhaps to the database): left in place
                // for the operator, and the store opens.
                let Candidate::File(mut file) = open_safely(path, &private) else {
                    continue;
                };
                let mut bytes = Vec::new();
                if std::io::Read::read_to_end(&mut file, &mut bytes).is_err() {
                    continue;
                }
                // The text is kept exactly, even a line that does not parse.
                let texts: Vec<(i64, String)> = complete_lines(&bytes)
                    .into_iter()
                    .map(|t| (*id, t))
                    .collect();
                append_texts(&tx, &texts, None)?;
                if let Some((_, last)) = texts.last() {
                    reconcile(&tx, *id, last)?;
                }
            }
            imported.push(path.clone());
        }
        tx.commit().context("commit imported logs")?;
        for path in imported {
            let _ = std::fs::remove_file(path);
        }
    }
    Ok(())
}

/// Files under `dir` (relative names) that are candidates: regular files seen without
/// following links. Directories are walked to a bounded depth.
fn regular_files(root: &Path, dir: &Path, depth: usize, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(t) = entry.file_type() else { continue };
        let path = entry.path();
        if t.is_dir() && depth < 32 {
            regular_files(root, &path, depth + 1, out);
        } else if t.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                out.push((rel.to_string_lossy().into_owned(), path.clone()));
            }
        }
    }
}

/// (device, inode) of the store's own files.
fn private_ids(store: &SqliteStore) -> Vec<(u64, u64)> {
    store
        .private_files()
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| (m.dev(), m.ino()))
        .collect()
}

/// What [`open_safely`] found.
enum Candidate {
    /// A regular file with one link, opened.
    File(File),
    /// Not a result file (a link, a hard link, a file of the store, swapped meanwhile).
    Skip,
    /// A regular file that cannot be read: it stays where it is.
    Unreadable,
}

/// Opens a legacy result file when it is safe to read: a regular file with one link,
/// not a file of the store, the same file before and after opening. A file that turns
/// into a file of the store while it is opened is never closed (closing a descriptor of
/// the database releases this process's locks on it).
fn open_safely(path: &Path, private: &[(u64, u64)]) -> Candidate {
    let Ok(before) = std::fs::symlink_metadata(path) else {
        return Candidate::Skip;
    };
    let seen = (before.dev(), before.ino());
    if !before.file_type().is_file() || before.nlink() > 1 || private.contains(&seen) {
        return Candidate::Skip;
    }
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Candidate::Skip,
        Err(_) => return Candidate::Unreadable,
    };
    let Ok(after) = file.metadata() else {
        return Candidate::Unreadable;
    };
    let now = (after.dev(), after.ino());
    if private.contains(&now) {
        std::mem::forget(file);
        return Candidate::Skip;
    }
    if now == seen && after.nlink() == 1 && after.file_type().is_file() {
        Candidate::File(file)
    } else {
        Candidate::Skip
    }
}

fn import_results(store: &mut SqliteStore, root: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    let private = private_ids(store);
    let mut dirs: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    dirs.sort();
    for (id, dir) in dirs {
        if !store.get_task_exists(id)? {
            continue;
        }
        let have: Vec<String> = store
            .result_files(id)?
            .into_iter()
            .map(|f| f.name)
            .collect();
        let mut files = Vec::new();
        regular_files(&dir, &dir, 0, &mut files);
        let mut left_behind = false;
        for (name, path) in files {
            if have.contains(&name) {
                continue;
            }
            // Links and anything unsafe are not result files (as at ingest); they go
            // with the directory. A file that cannot be read keeps it in place.
            let mut f = match open_safely(&path, &private) {
                Candidate::File(f) => f,
                Candidate::Skip => continue,
                Candidate::Unreadable => {
                    left_behind = true;
                    continue;
                }
            };
            match store.put_result_file(id, &name, &mut f, u64::MAX) {
                Ok(_) => {}
                Err(PutFileError::Store(e)) => return Err(e),
                Err(PutFileError::Read(_)) => left_behind = true,
                Err(PutFileError::TooLarge { .. }) => unreachable!("no limit"),
            }
        }
        if !left_behind {
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
    Ok(())
}

impl SqliteStore {
    fn get_task_exists(&self, id: i64) -> Result<bool, StoreError> {
        self.conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM tasks WHERE id = ?1)",
                [id],
                |r| r.get(0),
            )
            .context("read task")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{LogLine, NewTask, Priority, ProgressLogs, ResultFiles, TaskQueue};

    /// A database as an stask before migration 6 left it: tasks in the table, their
    /// logs and result files as files beside it.
    fn old_home(dir: &Path) {
        let fresh = SqliteStore::open(&dir.join("stask.db")).unwrap();
        fresh
            .conn
            .execute_batch(super::super::migrations::UNDO_STARTS)
            .unwrap();
        fresh
            .conn
            .execute_batch(super::super::migrations::UNDO_WORKFLOWS)
            .unwrap();
        fresh
            .conn
            .execute_batch(super::super::migrations::UNDO_LIMITS)
            .unwrap();
        fresh
            .conn
            .execute_batch(super::super::migrations::UNDO_TEXT_INDEX)
            .unwrap();
        fresh
            .conn
            .execute_batch(
                "DROP TABLE task_logs; DROP TABLE result_files; DROP TABLE result_chunks;
                 DROP TABLE owners; DROP TABLE meta; DROP TABLE login_failures;
                 DROP TABLE hosts; DROP TABLE leader; ALTER TABLE workers DROP COLUMN inactive_reason;
                 DROP INDEX tasks_unique; ALTER TABLE tasks DROP COLUMN unique_key;
                 DROP TABLE removed_workers; DROP TABLE removed_schedules;
                 DROP TABLE task_deps; ALTER TABLE tasks DROP COLUMN deps_left; PRAGMA user_version = 5;
                 INSERT INTO tasks (id, worker, action, status, created_at, started_at, owner)
                    VALUES (1, 'w', 'run', 'completed', 1, NULL, NULL),
                           (2, 'w', 'run', 'failed', 2, NULL, NULL),
                           (3, 'w', 'run', 'pending', 3, NULL, NULL),
                           (4, 'w', 'run', 'running', 4, 4, 'gone/1/1'),
                           (5, 'w', 'run', 'pending', 5, NULL, NULL);",
            )
            .unwrap();
        drop(fresh);
        let logs = dir.join("storage").join("stask");
        std::fs::create_dir_all(logs.join("results/1/sub")).unwrap();
        std::fs::write(
            logs.join("1.log"),
            "pending|0|0|0|-|Task created (priority normal)\ncompleted|100|0|0|0s|Task completed successfully (5ms)\nrunning|50|1|2|1s|torn by an outsid",
        )
        .unwrap();
        std::fs::write(
            logs.join("2.log"),
            "pending|0|0|0|-|Task created\nnot a parsable line\n",
        )
        .unwrap();
        std::fs::write(logs.join("99.log"), "pending|0|0|0|-|of a task long gone\n").unwrap();
        // The old crash: the final line written, the outcome never committed.
        std::fs::write(
            logs.join("4.log"),
            "pending|0|0|0|-|Task created\nrunning|0|0|0|-|Started attempt 1 of 3\ncompleted|100|0|0|0s|Task completed successfully (2ms)\n",
        )
        .unwrap();
        std::fs::write(
            logs.join("5.log"),
            "pending|0|0|0|-|Task created\nrunning|0|0|0|-|Started attempt 1 of 3\n",
        )
        .unwrap();
        // A hard link to the database among the result files, as plugins could leave.
        std::fs::hard_link(dir.join("stask.db"), logs.join("results/1/copy.db")).unwrap();
        std::fs::write(logs.join("results/1/summary.json"), "{}").unwrap();
        std::fs::write(logs.join("results/1/sub/x.txt"), "x").unwrap();
        std::os::unix::fs::symlink(dir.join("stask.db"), logs.join("results/1/db")).unwrap();
    }

    #[test]
    fn an_older_home_is_migrated_and_its_files_imported_without_losing_anything() {
        let dir = tempfile::tempdir().unwrap();
        old_home(dir.path());
        let mut s = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
        let texts = |s: &SqliteStore, id| -> Vec<String> {
            s.log_lines(id, 0, 100)
                .unwrap()
                .into_iter()
                .map(|l| l.text)
                .collect()
        };
        assert_eq!(
            texts(&s, 1),
            [
                "pending|0|0|0|-|Task created (priority normal)",
                "completed|100|0|0|0s|Task completed successfully (5ms)"
            ],
            "complete lines only, the torn one left out"
        );
        assert_eq!(
            texts(&s, 2),
            ["pending|0|0|0|-|Task created", "not a parsable line"],
            "kept exactly, even a line that does not parse"
        );
        assert!(texts(&s, 3).is_empty());
        let t4 = s.get_task(4).unwrap().unwrap();
        assert_eq!(
            (t4.status, t4.owner.as_deref()),
            (crate::Status::Completed, None),
            "the outcome its log told is applied, so it never runs again"
        );
        assert_eq!(
            texts(&s, 5).last().unwrap(),
            "pending|0|0|0|-|Imported from an older stask; the task is pending"
        );
        let names: Vec<String> = s
            .result_files(1)
            .unwrap()
            .into_iter()
            .map(|f| f.name)
            .collect();
        assert_eq!(
            names,
            ["sub/x.txt", "summary.json"],
            "the link is not imported"
        );
        let logs = dir.path().join("storage").join("stask");
        assert!(!logs.join("1.log").exists() && !logs.join("results/1").exists());
        assert!(
            logs.join("99.log").exists(),
            "a file of no task is left in place"
        );
        let vacuum: i64 = s
            .conn
            .pragma_query_value(None, "auto_vacuum", |r| r.get(0))
            .unwrap();
        assert_eq!(vacuum, 2, "incremental vacuum is on after the upgrade");
        // Ids continue after the old ones, and are not reused after deletes.
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
        let line = LogLine::new("pending", 0, 0, 0, "", "created");
        let id = s.insert_tasks(&t, 1, &line).unwrap()[0];
        assert_eq!(id, 6);
        s.conn
            .execute("DELETE FROM tasks WHERE id = 6", [])
            .unwrap();
        assert_eq!(s.insert_tasks(&t, 1, &line).unwrap()[0], 7);
        // Opening again imports nothing twice.
        drop(s);
        let s = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
        assert_eq!(texts(&s, 1).len(), 2);
        assert_eq!(s.result_files(1).unwrap().len(), 2);
    }

    #[test]
    fn an_import_killed_half_way_finishes_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        old_home(dir.path());
        // As if the first open imported task 1 and died before removing its file and
        // before the rest: the log rows exist, the file too.
        {
            let s = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
            s.conn
                .execute_batch("UPDATE meta SET value = 0 WHERE key = 'legacy_files_imported'")
                .unwrap();
        }
        let logs = dir.path().join("storage").join("stask");
        std::fs::write(logs.join("1.log"), "pending|0|0|0|-|again\n").unwrap();
        let s = SqliteStore::open(&dir.path().join("stask.db")).unwrap();
        let lines = s.log_lines(1, 0, 100).unwrap();
        assert_eq!(lines.len(), 2, "not imported twice: {lines:?}");
        assert!(!logs.join("1.log").exists());
    }
}
