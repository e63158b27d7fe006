//! `tasks clean`: removing old finished tasks with their files, and files whose task is
//! gone.

use std::collections::HashSet;
use std::time::Duration;

use anyhow::Result;
use serde::Serialize;
use stask_storage::{now_ms, Status, Store};

use crate::home::Home;
use crate::task_log;

/// What a clean-up removed.
#[derive(Debug, Default, Serialize)]
pub struct CleanReport {
    /// Ids of deleted tasks.
    pub deleted_tasks: Vec<i64>,
    /// Log files removed (of deleted tasks and orphans).
    pub removed_logs: usize,
    /// Result directories removed.
    pub removed_result_dirs: usize,
    /// Orphaned files (no task in the database) that were removed.
    pub orphans: Vec<String>,
}

/// Deletes tasks with the given final statuses that finished more than `older_than`
/// ago, their log files and result directories, then files whose task no longer exists.
pub fn clean(
    home: &Home,
    store: &mut Store,
    older_than: Duration,
    statuses: &[Status],
) -> Result<CleanReport> {
    let mut report = CleanReport::default();
    let cutoff = now_ms() - older_than.as_millis() as i64;
    loop {
        let ids = store.finished_before(statuses, cutoff, 1000)?;
        if ids.is_empty() {
            break;
        }
        let deleted = store.delete_finished_tasks(&ids)?;
        for id in &deleted {
            remove_files(home, *id, &mut report);
        }
        report.deleted_tasks.extend(&deleted);
        if deleted.len() < ids.len() {
            break;
        }
    }
    remove_orphans(home, store, &mut report)?;
    Ok(report)
}

fn remove_files(home: &Home, id: i64, report: &mut CleanReport) {
    if std::fs::remove_file(task_log::log_path(&home.log_dir(), id)).is_ok() {
        report.removed_logs += 1;
    }
    if std::fs::remove_dir_all(task_log::result_dir(&home.results_root(), id)).is_ok() {
        report.removed_result_dirs += 1;
    }
}

/// `{id}.log` files and `results/{id}` directories whose task is not in the database.
fn remove_orphans(home: &Home, store: &Store, report: &mut CleanReport) -> Result<()> {
    let mut found: Vec<(i64, std::path::PathBuf, bool)> = Vec::new();
    if let Ok(entries) = std::fs::read_dir(home.log_dir()) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if let Some(id) = name
                .strip_suffix(".log")
                .and_then(|n| n.parse::<i64>().ok())
            {
                found.push((id, e.path(), false));
            }
        }
    }
    if let Ok(entries) = std::fs::read_dir(home.results_root()) {
        for e in entries.flatten() {
            if let Ok(id) = e.file_name().to_string_lossy().parse::<i64>() {
                found.push((id, e.path(), true));
            }
        }
    }
    let ids: Vec<i64> = found
        .iter()
        .map(|(id, _, _)| *id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let existing = store.existing_task_ids(&ids)?;
    for (id, path, is_dir) in found {
        if existing.contains(&id) {
            continue;
        }
        let removed = if is_dir {
            std::fs::remove_dir_all(&path).is_ok()
        } else {
            std::fs::remove_file(&path).is_ok()
        };
        if removed {
            if is_dir {
                report.removed_result_dirs += 1;
            } else {
                report.removed_logs += 1;
            }
            report.orphans.push(path.display().to_string());
        }
    }
    Ok(())
}
