//! Importing what an older stask kept as files beside the database: progress logs
//! (`storage/stask/{id}.log`) and result directories (`storage/stask/results/{id}/`).
//!
//! Runs once per database, at open, in batches: each batch is committed before its
//! files are removed, and every step skips what is already imported, so an import
//! killed half-way finishes at the next open and nothing is lost or doubled. Files of
//! tasks that no longer exist are left where they are.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::TransactionBehavior;

use super::logs::append_texts;

use super::{Context, SqliteStore};
use crate::error::{ErrorKind, StoreError};
use crate::files::{PutFileError, ResultFiles};
use crate::log_line::complete_lines;

/// Log files imported per transaction.
const BATCH: usize = 1000;

fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::new(ErrorKind::Io, format!("{what} {}", path.display()), e)
}

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

/// `{id}.log` files of `dir`, by id.
fn log_files(dir: &Path) -> Result<Vec<(i64, PathBuf)>, StoreError> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| io_error("read", dir, e))?;
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
                let bytes = std::fs::read(path).map_err(|e| io_error("read", path, e))?;
                // The text is kept exactly, even a line that does not parse.
                let texts: Vec<(i64, String)> = complete_lines(&bytes)
                    .into_iter()
                    .map(|t| (*id, t))
                    .collect();
                append_texts(&tx, &texts)?;
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

/// Regular files under `dir` (relative names), skipping symbolic links and anything
/// else that is not a plain file or directory.
fn regular_files(root: &Path, dir: &Path, out: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let Ok(t) = entry.file_type() else { continue };
        let path = entry.path();
        if t.is_dir() {
            regular_files(root, &path, out);
        } else if t.is_file() {
            if let Ok(rel) = path.strip_prefix(root) {
                out.push((rel.to_string_lossy().into_owned(), path.clone()));
            }
        }
    }
}

fn import_results(store: &mut SqliteStore, root: &Path) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    let mut dirs: Vec<(i64, PathBuf)> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter_map(|e| Some((e.file_name().to_str()?.parse().ok()?, e.path())))
        .collect();
    dirs.sort();
    for (id, dir) in dirs {
        if store.get_task_exists(id)? {
            let have: Vec<String> = store
                .result_files(id)?
                .into_iter()
                .map(|f| f.name)
                .collect();
            let mut files = Vec::new();
            regular_files(&dir, &dir, &mut files);
            for (name, path) in files {
                if have.contains(&name) {
                    continue;
                }
                let mut f = File::open(&path).map_err(|e| io_error("read", &path, e))?;
                match store.put_result_file(id, &name, &mut f, u64::MAX) {
                    Ok(_) => {}
                    Err(PutFileError::Store(e)) => return Err(e),
                    Err(PutFileError::Read(e)) => return Err(io_error("read", &path, e)),
                    Err(PutFileError::TooLarge { .. }) => unreachable!("no limit"),
                }
            }
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
            .execute_batch(
                "DROP TABLE task_logs; DROP TABLE result_files; DROP TABLE result_chunks;
                 DROP TABLE owners; DROP TABLE meta; PRAGMA user_version = 5;
                 INSERT INTO tasks (id, worker, action, status, created_at)
                    VALUES (1, 'w', 'run', 'completed', 1), (2, 'w', 'run', 'failed', 2),
                           (3, 'w', 'run', 'pending', 3);",
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
        assert_eq!(id, 4);
        s.conn
            .execute("DELETE FROM tasks WHERE id = 4", [])
            .unwrap();
        assert_eq!(s.insert_tasks(&t, 1, &line).unwrap()[0], 5);
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
