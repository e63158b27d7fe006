//! Importing what an older stask kept as files beside the database: progress logs
//! (`storage/stask/{id}.log`) and result directories (`storage/stask/results/{id}/`).
//!
//! Runs once per database, at open, in batches: each batch is committed before its
//! files are removed, and every step skips what is already imported, so an import
//! killed half-way finishes at the next open and nothing is lost or doubled. Files of
//! tasks that no longer exist are left where they are.

use std::fs::File;
use std::path::{Path, PathBuf};

use rusqlite::{params, TransactionBehavior};

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
                // The text is kept exactly; only the parse decides nothing here.
                let texts = complete_lines(&bytes);
                let mut stmt = tx
                    .prepare_cached(
                        "INSERT INTO task_logs (task_id, seq, line) VALUES (?1, ?2, ?3)",
                    )
                    .context("import logs")?;
                for (i, text) in texts.iter().enumerate() {
                    stmt.execute(params![id, i as i64 + 1, text])
                        .context("import logs")?;
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
