//! The completer: what running tasks reported and how attempts ended, kept until the
//! store has recorded it.
//!
//! Progress and log lines are recorded in one transaction per coordinator cycle;
//! finished attempts wait for the next claim and are committed in its transaction (one
//! commit per cycle), or on their own before the coordinator waits. Nothing is dropped
//! when the store fails for a while (a lock held elsewhere, a full disk): everything
//! stays here, in order, until a later try succeeds; a task's lines always reach the
//! store before the outcome that ends it.

use std::collections::HashMap;

use stask_storage::{Finish, LogLine, ProgressUpdate, Store};

/// Reports and outcomes not yet recorded.
#[derive(Default)]
pub struct Completer {
    /// The latest progress of each task (older ones are superseded).
    progress: HashMap<i64, ProgressUpdate>,
    /// Lines in the order they were produced.
    lines: Vec<(i64, LogLine)>,
    /// Finished attempts whose earlier lines are recorded or queued before them.
    finishes: Vec<Finish>,
}

impl Completer {
    /// A progress report of a running task, with its line.
    pub fn progress(&mut self, update: ProgressUpdate, line: LogLine) {
        self.lines.push((update.id, line));
        self.progress.insert(update.id, update);
    }

    /// A line of a running task (a worker's log message).
    pub fn line(&mut self, id: i64, line: LogLine) {
        self.lines.push((id, line));
    }

    /// A finished attempt (its own lines travel inside it).
    pub fn finish(&mut self, finish: Finish) {
        // A progress update queued for the task would be refused after the finish
        // anyway (the task no longer runs under this owner).
        self.progress.remove(&finish.id);
        self.finishes.push(finish);
    }

    /// Whether anything waits to be recorded.
    pub fn is_empty(&self) -> bool {
        self.progress.is_empty() && self.lines.is_empty() && self.finishes.is_empty()
    }

    /// Whether progress or lines wait.
    pub fn has_progress(&self) -> bool {
        !self.progress.is_empty() || !self.lines.is_empty()
    }

    /// Whether finished attempts wait.
    pub fn has_finishes(&self) -> bool {
        !self.finishes.is_empty()
    }

    /// Records progress and lines in one transaction; on failure keeps them.
    pub fn record_progress(&mut self, store: &mut dyn Store, owner: &str) -> anyhow::Result<()> {
        if self.progress.is_empty() && self.lines.is_empty() {
            return Ok(());
        }
        let updates: Vec<ProgressUpdate> = self.progress.values().cloned().collect();
        store.record_progress(owner, &updates, &self.lines)?;
        // (Lines of a task another process recovered meanwhile count though the store
        // dropped them: rare, and not worth a count back from every batch.)
        crate::metrics::global().log_lines_written(self.lines.len());
        self.progress.clear();
        self.lines.clear();
        Ok(())
    }

    /// The finished attempts, for a claim to commit; give them back with
    /// [`Completer::restore`] if it fails.
    pub fn take_finishes(&mut self) -> Vec<Finish> {
        std::mem::take(&mut self.finishes)
    }

    /// Puts back finishes a failed claim took (before any that came since).
    pub fn restore(&mut self, mut finishes: Vec<Finish>) {
        finishes.append(&mut self.finishes);
        self.finishes = finishes;
    }

    /// Records lines, then finished attempts, each in one transaction; on failure
    /// keeps what was not recorded.
    pub fn record_all(&mut self, store: &mut dyn Store, owner: &str) -> anyhow::Result<()> {
        self.record_progress(store, owner)?;
        if !self.finishes.is_empty() {
            let applied = store.finish_tasks(&self.finishes)?;
            crate::metrics::global().log_lines_written(finished_lines(&self.finishes, &applied));
            self.finishes.clear();
        }
        Ok(())
    }
}

/// The log lines of the finishes that applied (those of a task no longer running under
/// this owner were not stored).
pub fn finished_lines(finishes: &[Finish], applied: &[bool]) -> usize {
    finishes
        .iter()
        .zip(applied)
        .filter(|(_, ok)| **ok)
        .map(|(f, _)| f.lines.len())
        .sum()
}
