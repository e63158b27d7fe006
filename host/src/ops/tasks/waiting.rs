//! Why a pending task is not running: the answer the task page, "Execute now" and
//! "Process tasks" give instead of a hopeful "being executed now". Reasons are codes
//! with parameters ([`Waiting`]), so every front-end words them in its own language.
//!
//! What the store knows decides: the worker's registration (active, held), the live
//! hosts holding its library on a shared store, the task's `run_after`, and the running
//! counts the statistics keep. Slot capacity comes from the hosts registered on a shared
//! store, or else from this machine's configuration ([`Capacity`]); the engine's own
//! queue is not visible here, so "queued" means "due, and nothing in the store keeps it
//! from being claimed".

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;
use stask_storage::{Status, Store, TaskRecord, WorkerRecord};

/// A host whose lease was renewed within this long counts as live (as in the worker
/// views).
const HOST_LIVE_MS: i64 = 60_000;

/// How many tasks the services run at once, as configured on this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Tasks one host runs at once (`concurrency`).
    pub concurrency: usize,
    /// Per-worker limits (`worker_concurrency`).
    pub worker_limits: BTreeMap<String, usize>,
}

impl Capacity {
    /// The capacity `config` gives a service on this machine.
    pub fn of(config: &crate::config::Config) -> Capacity {
        Capacity {
            concurrency: config.concurrency,
            worker_limits: config.worker_concurrency.clone(),
        }
    }
}

/// Why a pending task waits (the OpenAPI schema `Waiting`): a `code` and its
/// parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum Waiting {
    /// Its worker is no longer registered: nothing will run it.
    UnknownWorker,
    /// Its worker is inactive; `reason` is set when stask made it so (`held`: its
    /// library was replaced and waits for an operator).
    WorkerInactive {
        /// Why stask deactivated it, when it did.
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// On a shared store, no live host holds the worker's library.
    NoHost,
    /// It runs after other tasks, and `waiting_on` have not ended yet (empty when the
    /// answer did not read them, as in lists).
    Dependencies {
        /// The tasks it still waits for.
        waiting_on: Vec<i64>,
    },
    /// A failed attempt's retry waits until `at` (ms since epoch).
    RetryAt {
        /// When it becomes due.
        at: i64,
    },
    /// It was created to run no earlier than `at` (ms since epoch).
    ScheduledFor {
        /// When it becomes due.
        at: i64,
    },
    /// Its worker runs `running` tasks, its limit (`worker_concurrency`).
    WorkerLimit {
        /// The worker's limit.
        limit: i64,
        /// Its tasks running now.
        running: i64,
    },
    /// Every slot is busy: `running` tasks of `capacity`.
    SlotsBusy {
        /// Tasks running now.
        running: i64,
        /// Slots of the live hosts (or of this machine's service).
        capacity: i64,
    },
    /// Due, with a free slot: a service takes it next, after higher-priority and older
    /// due tasks.
    Queued,
}

impl Waiting {
    /// The code alone (`slots_busy`).
    pub fn code(&self) -> &'static str {
        match self {
            Waiting::UnknownWorker => "unknown_worker",
            Waiting::WorkerInactive { .. } => "worker_inactive",
            Waiting::NoHost => "no_host",
            Waiting::Dependencies { .. } => "dependencies",
            Waiting::RetryAt { .. } => "retry_at",
            Waiting::ScheduledFor { .. } => "scheduled_for",
            Waiting::WorkerLimit { .. } => "worker_limit",
            Waiting::SlotsBusy { .. } => "slots_busy",
            Waiting::Queued => "queued",
        }
    }
}

/// What deciding [`Waiting`] needs, read once for any number of tasks (a page of the
/// task list costs four small reads: workers, running tasks, counts, hosts).
pub struct WaitContext {
    workers: HashMap<String, WorkerRecord>,
    /// Running tasks per worker, and in all.
    running: HashMap<String, i64>,
    running_total: i64,
    /// Pending tasks per worker.
    pending: HashMap<String, i64>,
    /// Live hosts' (capacity, libraries); `None` when no host registered (one machine).
    hosts: Option<Vec<(i64, Vec<String>)>>,
    capacity: Capacity,
}

impl WaitContext {
    /// Reads the workers, the running counts and the hosts.
    pub fn load(store: &dyn Store, capacity: &Capacity) -> anyhow::Result<WaitContext> {
        let workers = store
            .list_workers()?
            .into_iter()
            .map(|w| (w.identifier.clone(), w))
            .collect();
        let mut running = HashMap::new();
        // Running tasks from the tasks themselves (at most every host's slots): the
        // statistics' running counts were seen to lag behind a retried attempt.
        let mut running_total = 0;
        for r in store.running_tasks()? {
            running_total += 1;
            *running.entry(r.task.worker).or_insert(0) += 1;
        }
        let mut pending = HashMap::new();
        for c in store.worker_counts()? {
            // The statistics' pending row counts running tasks too on some backends;
            // what is not running is pending.
            let total = c.counts.pending + c.counts.running;
            let run = running.get(&c.worker).copied().unwrap_or(0);
            pending.insert(c.worker, (total - run).max(0));
        }
        let hosts = store.list_hosts()?;
        let now = stask_storage::now_ms();
        let hosts = (!hosts.is_empty()).then(|| {
            hosts
                .into_iter()
                .filter(|h| h.renewed_at.is_some_and(|r| now - r <= HOST_LIVE_MS))
                .map(|h| (h.capacity, h.libraries))
                .collect()
        });
        Ok(WaitContext {
            workers,
            running,
            running_total,
            pending,
            hosts,
            capacity: capacity.clone(),
        })
    }

    /// The registered worker `identifier`, if any.
    pub fn worker(&self, identifier: &str) -> Option<&WorkerRecord> {
        self.workers.get(identifier)
    }

    /// Why `t` waits at `now`; `None` unless it is pending.
    pub fn waiting(&self, t: &TaskRecord, now: i64) -> Option<Waiting> {
        if t.status != Status::Pending {
            return None;
        }
        if let Some(blocked) = self.worker_blocked(&t.worker) {
            return Some(blocked);
        }
        if t.run_after == stask_storage::WAITING_FOR_DEPENDENCIES {
            return Some(Waiting::Dependencies {
                waiting_on: Vec::new(),
            });
        }
        if t.run_after > now {
            // An attempt that ended put it back with a backoff; one never started
            // was created for later.
            return Some(if t.attempts > 0 {
                Waiting::RetryAt { at: t.run_after }
            } else {
                Waiting::ScheduledFor { at: t.run_after }
            });
        }
        let running = self.running.get(&t.worker).copied().unwrap_or(0);
        if let Some(&limit) = self.capacity.worker_limits.get(&t.worker) {
            if running >= limit as i64 {
                return Some(Waiting::WorkerLimit {
                    limit: limit as i64,
                    running,
                });
            }
        }
        let capacity = self.slots();
        if capacity > 0 && self.running_total >= capacity {
            return Some(Waiting::SlotsBusy {
                running: self.running_total,
                capacity,
            });
        }
        Some(Waiting::Queued)
    }

    /// What keeps every task of `worker` from running, whatever the task: the worker
    /// unknown or inactive, or no live host holding its library.
    fn worker_blocked(&self, worker: &str) -> Option<Waiting> {
        let Some(w) = self.workers.get(worker) else {
            return Some(Waiting::UnknownWorker);
        };
        if !w.active {
            return Some(Waiting::WorkerInactive {
                reason: w.inactive_reason.clone(),
            });
        }
        // On a shared store only hosts holding the library with the same content
        // claim the worker's tasks (engine/hosting.rs).
        if let Some(hosts) = &self.hosts {
            if !hosts
                .iter()
                .any(|(_, libs)| libs.contains(&w.library.sha256))
            {
                return Some(Waiting::NoHost);
            }
        }
        None
    }

    /// Slots in all: the live hosts' on a shared store (running counts are store-wide,
    /// so the capacity they compare with is every host's), else this machine's.
    fn slots(&self) -> i64 {
        match &self.hosts {
            Some(hosts) => hosts.iter().map(|(c, _)| *c).sum(),
            None => self.capacity.concurrency as i64,
        }
    }

    /// Where the due pending tasks go, by worker: how many can start in the free slots
    /// and how many wait, per reason. Meant for right after every pending task was made
    /// due ([`super::process_now`]).
    pub fn due_summary(&self) -> DueSummary {
        let mut out = DueSummary::default();
        let mut runnable = 0;
        let mut workers: Vec<(&String, &i64)> = self.pending.iter().collect();
        workers.sort();
        for (worker, &n) in workers {
            if n <= 0 {
                continue;
            }
            match self.worker_blocked(worker) {
                Some(Waiting::UnknownWorker) => out.unknown_worker += n,
                Some(Waiting::WorkerInactive { .. }) => out.worker_inactive += n,
                Some(_) => out.no_host += n,
                None => {
                    let free = match self.capacity.worker_limits.get(worker) {
                        Some(&limit) => {
                            let running = self.running.get(worker).copied().unwrap_or(0);
                            (limit as i64 - running).max(0)
                        }
                        None => n,
                    };
                    out.worker_limit += n - n.min(free);
                    runnable += n.min(free);
                }
            }
        }
        let free = (self.slots() - self.running_total).max(0);
        out.starting = runnable.min(free);
        out.slots_busy = runnable - out.starting;
        out
    }
}

/// Where the pending tasks go after "process now": how many start, and how many wait
/// for each reason (see [`Waiting`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct DueSummary {
    /// Tasks the free slots take now.
    pub starting: i64,
    /// Waiting for a slot.
    pub slots_busy: i64,
    /// Waiting for their worker's limit.
    pub worker_limit: i64,
    /// Their worker is inactive.
    pub worker_inactive: i64,
    /// Their worker is no longer registered.
    pub unknown_worker: i64,
    /// No live host holds their worker's library.
    pub no_host: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiting_serializes_as_a_code_with_its_parameters() {
        let v = serde_json::to_value(Waiting::RetryAt { at: 5 }).unwrap();
        assert_eq!(v, serde_json::json!({ "code": "retry_at", "at": 5 }));
        let v = serde_json::to_value(Waiting::WorkerInactive { reason: None }).unwrap();
        assert_eq!(v, serde_json::json!({ "code": "worker_inactive" }));
        let v = serde_json::to_value(Waiting::Dependencies {
            waiting_on: vec![3, 4],
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "code": "dependencies", "waiting_on": [3, 4] })
        );
        let v = serde_json::to_value(Waiting::SlotsBusy {
            running: 4,
            capacity: 4,
        })
        .unwrap();
        assert_eq!(
            v,
            serde_json::json!({ "code": "slots_busy", "running": 4, "capacity": 4 })
        );
        assert_eq!(Waiting::NoHost.code(), "no_host");
    }
}
