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
use stask_storage::{LimitRule, LimitUsage, Status, Store, TaskLimit, TaskRecord, WorkerRecord};

/// A host whose lease was renewed within this long counts as live (as in the worker
/// views).
const HOST_LIVE_MS: i64 = 60_000;

/// Most tasks of one answer whose dependencies or limit usage [`WaitContext::load_for`]
/// reads (a page of the task list is 50): a read each, so a huge page stays cheap and
/// the rest say `dependencies` without ids, or what their run_after says.
const PER_TASK_READS: usize = 200;

/// Which of a limit's numbers a task waits for ([`Waiting::Limit`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// Its key runs as many tasks as the limit allows.
    Concurrency,
    /// Its key started as many tasks within the period as the limit allows.
    Rate,
}

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
    /// Its limit per key ([`crate::limits`]) is used up: `in_use` of `limit` running
    /// tasks (`kind` `concurrency`) or starts within `per_secs` seconds (`rate`,
    /// until a start leaves the period at `until`, ms since epoch). The service
    /// claims it once its key has room, on whichever host.
    Limit {
        /// The key (`shop:42`).
        key: String,
        /// `concurrency` or `rate`.
        kind: LimitKind,
        /// Running tasks, or starts within the period, of the key.
        in_use: i64,
        /// The limit's number.
        limit: i64,
        /// A rate's period in seconds.
        #[serde(skip_serializing_if = "Option::is_none")]
        per_secs: Option<i64>,
        /// When a rate's next start frees (ms since epoch).
        #[serde(skip_serializing_if = "Option::is_none")]
        until: Option<i64>,
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
            Waiting::Limit { .. } => "limit",
            Waiting::WorkerLimit { .. } => "worker_limit",
            Waiting::SlotsBusy { .. } => "slots_busy",
            Waiting::Queued => "queued",
        }
    }

    /// Why task `t` waits for its limit per key at `now`, from the store's rule and
    /// usage of its key; `None` when it has no limit or its key has room.
    pub fn limit_of(
        t: &TaskRecord,
        rule: &LimitRule,
        usage: &LimitUsage,
        now: i64,
    ) -> Option<Waiting> {
        let key = t.limit.as_ref()?.key.clone();
        if let Some(max) = rule.concurrency {
            if usage.running >= i64::from(max) {
                return Some(Waiting::Limit {
                    key,
                    kind: LimitKind::Concurrency,
                    in_use: usage.running,
                    limit: i64::from(max),
                    per_secs: None,
                    until: None,
                });
            }
        }
        let (max, period) = rule.rate?;
        (usage.started >= i64::from(max)).then(|| Waiting::Limit {
            key,
            kind: LimitKind::Rate,
            in_use: usage.started,
            limit: i64::from(max),
            per_secs: Some(period / 1000),
            until: Some(usage.oldest_start.map_or(now + period, |o| o + period)),
        })
    }

    /// The reason in English, for the command line and error messages:
    /// `limit 'shop:42' 1/1 in use`, `limit 'api' 60/60 starts per 1 min`.
    pub fn limit_text(&self) -> Option<String> {
        let Waiting::Limit {
            key,
            kind,
            in_use,
            limit,
            per_secs,
            ..
        } = self
        else {
            return None;
        };
        Some(match kind {
            LimitKind::Concurrency => format!("limit '{key}' {in_use}/{limit} in use"),
            LimitKind::Rate => format!(
                "limit '{key}' {in_use}/{limit} starts per {}",
                period_text(per_secs.unwrap_or(0))
            ),
        })
    }
}

/// A rate's period in words: `1 min`, `90 s`, `2 h`, `1 d`.
fn period_text(secs: i64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s >= 3_600 && s % 3_600 == 0 => format!("{} h", s / 3_600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}

/// Why pending task `t` waits for its limit per key now, read from the store (one
/// read); `None` when it has no limit, its rule is gone or its key has room.
pub fn limit_waiting(store: &dyn Store, t: &TaskRecord) -> anyhow::Result<Option<Waiting>> {
    let Some(limit) = &t.limit else {
        return Ok(None);
    };
    let now = stask_storage::now_ms();
    Ok(store
        .limit_usage(&t.worker, limit, now)?
        .and_then(|(rule, usage)| Waiting::limit_of(t, &rule, &usage, now)))
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
    /// Rule and usage of the keys of the tasks [`WaitContext::load_for`] was given
    /// (`None`: the worker has no such rule any more).
    limits: HashMap<(String, TaskLimit), Option<(LimitRule, LimitUsage)>>,
    /// What the tasks [`WaitContext::load_for`] was given still wait for.
    waiting_on: HashMap<i64, Vec<i64>>,
    /// When the usage was read.
    read_at: i64,
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
            limits: HashMap::new(),
            waiting_on: HashMap::new(),
            read_at: now,
        })
    }

    /// [`WaitContext::load`], and for the pending tasks among `tasks` (up to
    /// [`PER_TASK_READS`]) the usage of their limit's key and the tasks they still
    /// wait for: a read each, so `waiting` names the limit or the dependencies.
    pub fn load_for(
        store: &dyn Store,
        capacity: &Capacity,
        tasks: &[TaskRecord],
    ) -> anyhow::Result<WaitContext> {
        let mut ctx = WaitContext::load(store, capacity)?;
        ctx.read_tasks(store, tasks)?;
        Ok(ctx)
    }

    /// The per-task part of [`WaitContext::load_for`], for tasks read after the
    /// context.
    pub fn read_tasks(&mut self, store: &dyn Store, tasks: &[TaskRecord]) -> anyhow::Result<()> {
        let mut reads = 0;
        for t in tasks.iter().filter(|t| t.status == Status::Pending) {
            if reads >= PER_TASK_READS {
                break;
            }
            if t.run_after == stask_storage::WAITING_FOR_DEPENDENCIES {
                reads += 1;
                if let Some(d) = store.task_dependencies(t.id)? {
                    self.waiting_on.insert(t.id, d.waiting_on);
                }
            } else if let Some(limit) = &t.limit {
                let key = (t.worker.clone(), limit.clone());
                if !self.limits.contains_key(&key) {
                    reads += 1;
                    let usage = store.limit_usage(&t.worker, limit, self.read_at)?;
                    self.limits.insert(key, usage);
                }
            }
        }
        Ok(())
    }

    /// Leaves tasks no claim takes whatever the slots out of the pending counts
    /// ([`stask_storage::TaskQueue::count_held`]: per worker, those waiting for their
    /// dependencies and those parked at a limit per key), so [`Self::due_summary`]
    /// never counts them as starting; returns how many of each it left out.
    pub fn hold(&mut self, held: &[(String, i64, i64)]) -> (i64, i64) {
        let (mut deps, mut parked) = (0, 0);
        for (worker, d, p) in held {
            if let Some(n) = self.pending.get_mut(worker) {
                *n = (*n - d - p).max(0);
            }
            deps += d;
            parked += p;
        }
        (deps, parked)
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
                waiting_on: self.waiting_on.get(&t.id).cloned().unwrap_or_default(),
            });
        }
        // Before the run_after checks: a task a claim parked on its key's limit has
        // its run_after moved into the future, which is not a schedule or a retry.
        if let Some(limit) = &t.limit {
            if let Some(Some((rule, usage))) = self.limits.get(&(t.worker.clone(), limit.clone())) {
                if let Some(w) = Waiting::limit_of(t, rule, usage, now) {
                    return Some(w);
                }
            }
        }
        // A task parked until its key releases it has no time to show.
        if t.run_after > now && t.run_after != stask_storage::PARKED_UNTIL_RELEASED {
            // An attempt that ended put it back with a backoff; one never started
            // was created for later — unless it has a limit: then a claim parked it
            // while its key was full, the key has room again (checked above when it
            // was read), and a claim takes it within moments: a slot is what counts.
            if t.attempts > 0 {
                return Some(Waiting::RetryAt { at: t.run_after });
            }
            if t.limit.is_none() {
                return Some(Waiting::ScheduledFor { at: t.run_after });
            }
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
    /// Waiting for the tasks they run after (set by [`super::process_now`]).
    pub dependencies: i64,
    /// Parked at a limit per key: their key runs as many as its rule allows (set by
    /// [`super::process_now`]).
    pub limit: i64,
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

    fn limited(key: &str) -> TaskRecord {
        TaskRecord {
            id: 1,
            worker: "w".into(),
            action: "a".into(),
            status: Status::Pending,
            priority: stask_storage::Priority::Normal,
            progress: 0,
            processed: 0,
            total: 0,
            message: String::new(),
            data: "{}".into(),
            result: None,
            error: None,
            started_by: None,
            attempts: 0,
            max_attempts: 3,
            run_after: 0,
            created_at: 0,
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
            owner: None,
            cancel_requested: false,
            limit: Some(TaskLimit {
                rule: "*|{shop}".into(),
                key: key.into(),
            }),
            parent: None,
        }
    }

    #[test]
    fn a_key_at_its_limit_says_which_number_and_how_much_is_in_use() {
        let t = limited("shop:42");
        let rule = LimitRule {
            rule: "*|{shop}".into(),
            concurrency: Some(1),
            rate: Some((60, 60_000)),
        };
        let busy = LimitUsage {
            running: 1,
            started: 1,
            oldest_start: Some(1_000),
        };
        let w = Waiting::limit_of(&t, &rule, &busy, 2_000).unwrap();
        assert_eq!(
            serde_json::to_value(&w).unwrap(),
            serde_json::json!({"code": "limit", "key": "shop:42", "kind": "concurrency", "in_use": 1, "limit": 1})
        );
        assert_eq!(w.limit_text().unwrap(), "limit 'shop:42' 1/1 in use");
        let starts = LimitUsage {
            running: 0,
            started: 60,
            oldest_start: Some(1_000),
        };
        let w = Waiting::limit_of(&t, &rule, &starts, 2_000).unwrap();
        assert_eq!(
            w,
            Waiting::Limit {
                key: "shop:42".into(),
                kind: LimitKind::Rate,
                in_use: 60,
                limit: 60,
                per_secs: Some(60),
                until: Some(61_000),
            }
        );
        assert_eq!(w.code(), "limit");
        assert_eq!(
            w.limit_text().unwrap(),
            "limit 'shop:42' 60/60 starts per 1 min"
        );
        let room = LimitUsage {
            running: 0,
            started: 59,
            oldest_start: Some(1_000),
        };
        assert_eq!(Waiting::limit_of(&t, &rule, &room, 2_000), None);
        assert_eq!(period_text(90), "90 s");
        assert_eq!(period_text(7_200), "2 h");
    }
}
