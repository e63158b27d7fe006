//! Live event streams: how many may be open, and one watcher per task shared by all
//! of the task's streams.
//!
//! A stream first reads what it missed from the store itself (from its offset, a page
//! at a time). Once it has caught up it waits on its task's watcher: one poll of the
//! store per task per interval, however many streams follow the task, all tasks
//! polled by one loop on one blocking thread ([`run`]). The interval is
//! [`POLL_MIN`] while lines arrive and doubles to [`POLL_MAX`] while the task is
//! quiet; a quiet poll is one index lookup that finds nothing. Each poll publishes the
//! lines it found, so the task's streams send them without reading the store; a
//! stream that fell behind (it missed a publication) reads from the store again.
//! An idle stream costs nothing but its connection and a keep-alive comment every
//! 15 s.
//!
//! Streams are counted per user (or token) and in all; past either limit a new stream
//! is refused with a clear error ([`Streams::admit`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::StatusCode;
use stask_storage::{Status, StoreError, StoredLine};
use tokio::sync::{watch, Notify};

use super::error::ApiError;
use super::Shared;

/// Poll interval of a task whose log is growing.
pub const POLL_MIN: Duration = Duration::from_millis(100);
/// Poll interval of a quiet task.
pub const POLL_MAX: Duration = Duration::from_millis(500);
/// How much earlier than due a watcher may be polled, to share a pass with others.
const SLACK: Duration = Duration::from_millis(50);
/// Lines read per poll at most.
const PAGE: usize = 1000;
/// Seconds a refused client is told to wait.
const RETRY_AFTER: u64 = 5;

/// What a task's watcher last saw.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// Whether the watcher has polled at all (the other fields are meaningless before).
    pub ready: bool,
    /// `lines` are every line after `from` up to `last_seq`.
    pub from: u64,
    /// The last line's position.
    pub last_seq: u64,
    /// The lines found by the last poll.
    pub lines: Vec<StoredLine>,
    /// `Some(status)` once the log is complete: the task's final status (`None`: the
    /// task is gone).
    pub end: Option<Option<Status>>,
}

struct Watcher {
    generation: u64,
    tx: watch::Sender<Arc<Snapshot>>,
    last_seq: Option<u64>,
    interval: Duration,
    next_poll: Instant,
    ended: bool,
}

#[derive(Default)]
struct Counts {
    total: usize,
    users: HashMap<String, usize>,
}

/// The live streams of a server.
pub struct Streams {
    max_total: usize,
    max_per_user: usize,
    counts: Mutex<Counts>,
    watchers: Mutex<HashMap<i64, Watcher>>,
    generation: std::sync::atomic::AtomicU64,
    added: Notify,
}

/// An admitted stream; counted until dropped.
pub struct Slot {
    streams: Arc<Streams>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut c = self
            .streams
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.users.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                c.users.remove(&self.user);
            }
        }
    }
}

impl Streams {
    /// Streams limited to `max_total` in all and `max_per_user` per user.
    pub fn new(max_total: usize, max_per_user: usize) -> Streams {
        Streams {
            max_total,
            max_per_user,
            counts: Mutex::default(),
            watchers: Mutex::default(),
            generation: Default::default(),
            added: Notify::new(),
        }
    }

    /// Counts a new stream of `user`, or refuses it: `429` when the user has
    /// `http_max_streams_per_user` open, `503` when the server has `http_max_streams`.
    pub fn admit(self: &Arc<Self>, user: &str) -> Result<Slot, ApiError> {
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let mine = c.users.get(user).copied().unwrap_or(0);
        if mine >= self.max_per_user {
            let mut e = ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_streams",
                format!(
                    "{user} already has {mine} live event streams open, the most one user or token may have (http_max_streams_per_user = {}); close one, or read GET /api/v1/tasks/{{id}}/logs instead",
                    self.max_per_user
                ),
            );
            e.retry_after = Some(RETRY_AFTER);
            return Err(e);
        }
        if c.total >= self.max_total {
            let mut e = ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "stream_limit_reached",
                format!(
                    "the service already serves {} live event streams, its limit (http_max_streams = {}); try again later, or read GET /api/v1/tasks/{{id}}/logs instead",
                    c.total, self.max_total
                ),
            );
            e.retry_after = Some(RETRY_AFTER);
            return Err(e);
        }
        c.total += 1;
        *c.users.entry(user.to_owned()).or_default() += 1;
        Ok(Slot {
            streams: self.clone(),
            user: user.to_owned(),
        })
    }

    /// Streams open now (in all).
    pub fn open(&self) -> usize {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).total
    }

    /// The watcher of task `id` (started if there is none, or if the one there has
    /// seen the task end: it may have been retried since).
    pub fn subscribe(&self, id: i64) -> watch::Receiver<Arc<Snapshot>> {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(existing) = w.get(&id).filter(|x| !x.ended) {
            return existing.tx.subscribe();
        }
        let (tx, rx) = watch::channel(Arc::new(Snapshot::default()));
        let generation = self
            .generation
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        w.insert(
            id,
            Watcher {
                generation,
                tx,
                last_seq: None,
                interval: POLL_MIN,
                next_poll: Instant::now(),
                ended: false,
            },
        );
        drop(w);
        self.added.notify_one();
        rx
    }

    /// The watchers due for a poll (dropping those nobody follows any more), and when
    /// the next one is due. Watchers due within [`SLACK`] are polled now too, so the
    /// polls of many tasks fall together into few passes.
    fn due(&self, now: Instant) -> (Vec<Due>, Option<Instant>) {
        let soon = now + SLACK;
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        w.retain(|_, x| x.tx.receiver_count() > 0);
        let mut due = Vec::new();
        let mut next: Option<Instant> = None;
        for (id, x) in w.iter() {
            if x.ended {
                continue;
            }
            if x.next_poll <= soon {
                due.push(Due {
                    id: *id,
                    generation: x.generation,
                    last_seq: x.last_seq,
                });
            } else {
                next = Some(next.map_or(x.next_poll, |n| n.min(x.next_poll)));
            }
        }
        (due, next)
    }

    fn apply(&self, results: Vec<(Due, Result<Option<Snapshot>, StoreError>)>, now: Instant) {
        let mut w = self.watchers.lock().unwrap_or_else(|e| e.into_inner());
        for (due, result) in results {
            let Some(x) = w
                .get_mut(&due.id)
                .filter(|x| x.generation == due.generation)
            else {
                continue;
            };
            match result {
                Ok(Some(snap)) => {
                    x.last_seq = Some(snap.last_seq);
                    x.ended = snap.end.is_some();
                    x.interval = POLL_MIN;
                    x.tx.send_replace(Arc::new(snap));
                }
                Ok(None) => x.interval = (x.interval * 2).min(POLL_MAX),
                Err(e) => {
                    tracing::debug!(task = due.id, "live stream poll failed: {e}");
                    x.interval = POLL_MAX;
                }
            }
            x.next_poll = now + x.interval;
        }
    }
}

/// A watcher to poll.
struct Due {
    id: i64,
    generation: u64,
    last_seq: Option<u64>,
}

/// One poll of task `id`'s log after `last` (`None`: the first poll, which only finds
/// where the log ends). `Ok(None)`: nothing new.
fn poll(
    store: &mut dyn stask_storage::Store,
    id: i64,
    last: Option<u64>,
) -> Result<Option<Snapshot>, StoreError> {
    let Some(last) = last else {
        // Status first: when it is final, every line is already stored.
        let status = store.get_task(id)?.map(|t| t.status);
        let seq = store.last_log_line(id)?.map_or(0, |l| l.seq);
        return Ok(Some(Snapshot {
            ready: true,
            from: seq,
            last_seq: seq,
            lines: Vec::new(),
            end: status.is_none_or(|s| s.is_final()).then_some(status),
        }));
    };
    let mut lines = store.log_lines(id, last, PAGE)?;
    if lines.is_empty() {
        return Ok(None);
    }
    // New lines: has the task ended? (Every status change stores a line, so a quiet
    // task needs no status check.) Once the status read is final, what follows the
    // lines already read is the rest of the log.
    let status = store.get_task(id)?.map(|t| t.status);
    let mut end = None;
    if status.is_none_or(|s| s.is_final()) {
        let after = lines.last().map_or(last, |l| l.seq);
        let rest = store.log_lines(id, after, PAGE)?;
        if rest.len() < PAGE {
            end = Some(status);
        }
        lines.extend(rest);
    }
    Ok(Some(Snapshot {
        ready: true,
        from: last,
        last_seq: lines.last().map_or(last, |l| l.seq),
        lines,
        end,
    }))
}

/// Polls the watched tasks for as long as the server runs: every due watcher in one
/// pass on one blocking thread.
pub async fn run(st: Shared) {
    let streams = st.streams.clone();
    loop {
        let (due, next) = streams.due(Instant::now());
        if due.is_empty() {
            let wait = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = wait => {}
                _ = streams.added.notified() => {}
            }
            continue;
        }
        let polled = st
            .db(move |store, _| {
                Ok(due
                    .into_iter()
                    .map(|d| {
                        let r = poll(store, d.id, d.last_seq);
                        (d, r)
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        match polled {
            Ok(results) => streams.apply(results, Instant::now()),
            Err(e) => {
                // No connection to the store: everything waits the longest interval.
                tracing::debug!("live streams cannot reach the store: {}", e.message);
                tokio::time::sleep(POLL_MAX).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_limited_per_user_and_in_all_and_counted_until_dropped() {
        let s = Arc::new(Streams::new(3, 2));
        let a1 = s.admit("ann").unwrap();
        let _a2 = s.admit("ann").unwrap();
        let e = s.admit("ann").err().unwrap();
        assert_eq!(e.status, StatusCode::TOO_MANY_REQUESTS);
        assert!(
            e.message.contains("http_max_streams_per_user = 2"),
            "{}",
            e.message
        );
        let _b1 = s.admit("token:ci").unwrap();
        let e = s.admit("bob").err().unwrap();
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "stream_limit_reached");
        assert!(e.message.contains("http_max_streams = 3"), "{}", e.message);
        assert_eq!(e.retry_after, Some(RETRY_AFTER));
        drop(a1);
        assert_eq!(s.open(), 2);
        let _b2 = s.admit("bob").unwrap();
    }

    #[test]
    fn one_watcher_per_task_until_it_has_seen_the_end() {
        let s = Streams::new(10, 10);
        let r1 = s.subscribe(7);
        let r2 = s.subscribe(7);
        let _r3 = s.subscribe(8);
        let (due, _) = s.due(Instant::now());
        assert_eq!(due.len(), 2);
        let seven = due.into_iter().find(|d| d.id == 7).unwrap();
        let gen = seven.generation;
        s.apply(
            vec![(
                seven,
                Ok(Some(Snapshot {
                    ready: true,
                    from: 5,
                    last_seq: 9,
                    lines: Vec::new(),
                    end: Some(Some(Status::Completed)),
                })),
            )],
            Instant::now(),
        );
        assert_eq!(r1.borrow().last_seq, 9);
        assert_eq!(r2.borrow().end, Some(Some(Status::Completed)));
        // Ended: a new stream gets a new watcher (the task may have been retried).
        let _r4 = s.subscribe(7);
        let (due, _) = s.due(Instant::now());
        assert!(due.iter().any(|d| d.id == 7 && d.generation != gen));
        // Nobody follows task 8 any more: its watcher goes.
        drop(_r3);
        let (due, _) = s.due(Instant::now());
        assert!(due.iter().all(|d| d.id != 8));
    }
}
