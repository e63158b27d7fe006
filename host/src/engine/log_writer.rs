//! The engine's progress-log writer: a thread that appends the lines the coordinator
//! produces, so file I/O runs beside the database work instead of after it.
//!
//! The coordinator must not record a task as finished before its final line is in the
//! log (a crash in between would leave a finished task whose log says it is still
//! running). So every batch sent here gets a sequence number, the writer reports each
//! number it has written as [`Msg::LogsWritten`], and the coordinator commits a batch's
//! finished tasks only once that number is reported.
//!
//! When the writer falls behind, it takes everything queued at once and writes each
//! task's lines with one call: a fast task's start and final lines then cost one open
//! and one write.

use std::collections::HashMap;
use std::path::Path;
use std::sync::mpsc::{self, Sender};
use std::thread::JoinHandle;

use stask_storage::progress_log::{LogLine, OpenLogs};

use super::Msg;

/// Lines to append and logs to close, in order.
struct Job {
    seq: u64,
    lines: Vec<(i64, LogLine)>,
    /// Tasks whose final line is in `lines`: their files are closed after writing.
    close: Vec<i64>,
    /// Answered once this job and every earlier one are written.
    reply: Option<Sender<()>>,
}

/// Handle to the writer thread.
pub struct LogWriter {
    tx: Option<Sender<Job>>,
    thread: Option<JoinHandle<()>>,
    sent: u64,
}

impl LogWriter {
    /// Starts the thread writing into `dir`; it reports written batches on `events`.
    pub fn start(dir: &Path, events: Sender<Msg>) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel::<Job>();
        let mut logs = OpenLogs::new(dir);
        let thread = std::thread::Builder::new()
            .name("log-writer".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    jobs.extend(rx.try_iter());
                    write_jobs(&mut logs, &mut jobs);
                    let seq = jobs.iter().map(|j| j.seq).max().unwrap_or(0);
                    for reply in jobs.iter_mut().filter_map(|j| j.reply.take()) {
                        let _ = reply.send(());
                    }
                    // The coordinator may be gone (it flushes before it returns).
                    let _ = events.send(Msg::LogsWritten(seq));
                }
            })?;
        Ok(LogWriter {
            tx: Some(tx),
            thread: Some(thread),
            sent: 0,
        })
    }

    /// Queues lines (and the tasks whose logs end with them); returns the batch's
    /// sequence number, reported back once written.
    pub fn send(&mut self, lines: Vec<(i64, LogLine)>, close: Vec<i64>) -> u64 {
        self.sent += 1;
        self.submit(Job {
            seq: self.sent,
            lines,
            close,
            reply: None,
        });
        self.sent
    }

    /// Waits until everything sent so far is written; returns the last sequence number.
    pub fn flush(&mut self) -> u64 {
        let (reply, done) = mpsc::channel();
        self.submit(Job {
            seq: self.sent,
            lines: Vec::new(),
            close: Vec::new(),
            reply: Some(reply),
        });
        let _ = done.recv();
        self.sent
    }

    fn submit(&mut self, job: Job) {
        let Some(tx) = &self.tx else { return };
        if let Err(mpsc::SendError(job)) = tx.send(job) {
            // The thread is gone (it panicked): answer the waiter rather than hang it.
            tracing::warn!("the progress-log writer stopped; lines of this batch are lost");
            if let Some(reply) = job.reply {
                let _ = reply.send(());
            }
        }
    }
}

impl Drop for LogWriter {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes the jobs' lines, one append per task in order of first appearance, then
/// closes the logs that ended.
fn write_jobs(logs: &mut OpenLogs, jobs: &mut [Job]) {
    let mut order: Vec<i64> = Vec::new();
    let mut by_task: HashMap<i64, Vec<LogLine>> = HashMap::new();
    for job in jobs.iter_mut() {
        for (id, line) in job.lines.drain(..) {
            by_task
                .entry(id)
                .or_insert_with(|| {
                    order.push(id);
                    Vec::new()
                })
                .push(line);
        }
    }
    for id in order {
        if let Err(e) = logs.append(id, &by_task[&id]) {
            tracing::warn!(task = id, "cannot write progress log: {e}");
        }
    }
    for id in jobs.iter().flat_map(|j| &j.close) {
        logs.close(*id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(message: &str) -> LogLine {
        LogLine::new("running", 0, 0, 0, "", message)
    }

    fn job(seq: u64, lines: &[(i64, &str)], close: &[i64]) -> Job {
        Job {
            seq,
            lines: lines.iter().map(|(id, m)| (*id, line(m))).collect(),
            close: close.to_vec(),
            reply: None,
        }
    }

    fn messages(dir: &Path, id: i64) -> Vec<String> {
        std::fs::read_to_string(dir.join(format!("{id}.log")))
            .unwrap()
            .lines()
            .map(|l| l.rsplit('|').next().unwrap().to_owned())
            .collect()
    }

    /// Merged batches keep each task's lines in the order they were sent, also for a
    /// task whose log was closed in an earlier batch and written to again in a later
    /// one (a retry).
    #[test]
    fn merged_batches_keep_each_tasks_lines_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut logs = OpenLogs::new(dir.path());
        let mut jobs = vec![
            job(1, &[(1, "start 1"), (2, "start 2")], &[]),
            job(2, &[(1, "end 1")], &[1]),
            job(3, &[(2, "end 2"), (1, "start 1 again")], &[2]),
        ];
        write_jobs(&mut logs, &mut jobs);
        assert_eq!(
            messages(dir.path(), 1),
            ["start 1", "end 1", "start 1 again"]
        );
        assert_eq!(messages(dir.path(), 2), ["start 2", "end 2"]);
    }

    /// `flush` returns only once everything sent before it is on disk, and reports the
    /// last sequence number; every batch is also reported on the events channel.
    #[test]
    fn flush_waits_for_every_batch_sent_before_it() {
        let dir = tempfile::tempdir().unwrap();
        let (events, reports) = mpsc::channel();
        let mut writer = LogWriter::start(dir.path(), events).unwrap();
        let mut last = 0;
        for i in 0..50 {
            last = writer.send(vec![(7, line(&format!("line {i}")))], Vec::new());
        }
        assert_eq!(writer.flush(), last);
        assert_eq!(messages(dir.path(), 7).len(), 50);
        drop(writer);
        let reported = reports
            .try_iter()
            .filter_map(|m| match m {
                Msg::LogsWritten(seq) => Some(seq),
                _ => None,
            })
            .max();
        assert_eq!(reported, Some(last));
    }
}
