//! `GET /running`: what runs now, per host, beside each host's slots and this
//! machine's per-worker limits (the "Running now" page).
//!
//! A shared store (PostgreSQL) lists its hosts with their capacity ([`stask_storage::Hosts`]);
//! a SQLite home registers none, so there the hosts are the owners of the running
//! tasks, and this machine is shown with the configured concurrency even while idle.
//! Running tasks are few (at most the hosts' slots and pipelines), so reading them
//! costs little at any size of the task table.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use stask_storage::{HostRecord, RunningTask};

use super::error::ApiError;
use super::extract::Params;
use super::{Principal, Shared};

/// A host whose lease was renewed within this long counts as live (as in the worker
/// views and the waiting reasons).
const HOST_LIVE_MS: i64 = 60_000;

/// One running task as the page shows it.
#[derive(Debug, Serialize)]
struct RunningView {
    id: i64,
    worker: String,
    action: String,
    progress: i64,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<i64>,
    attempts: i64,
    max_attempts: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    owner: Option<String>,
}

impl RunningView {
    fn of(r: RunningTask) -> RunningView {
        let t = r.task;
        RunningView {
            id: t.id,
            worker: t.worker,
            action: t.action,
            progress: t.progress,
            message: t.message,
            started_by: t.started_by,
            started_at: t.started_at,
            attempts: t.attempts,
            max_attempts: t.max_attempts,
            owner: t.owner,
        }
    }
}

/// A host with its slots and what runs in them.
#[derive(Debug, Serialize)]
struct HostView {
    /// Owner id of its engine (`machine/pid/start`); absent for this machine while no
    /// engine on it has claimed anything.
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<String>,
    /// Tasks it runs at once; absent when not known (an unregistered process of
    /// another machine).
    #[serde(skip_serializing_if = "Option::is_none")]
    capacity: Option<i64>,
    /// Whether its lease is current; absent when it registered none (SQLite).
    #[serde(skip_serializing_if = "Option::is_none")]
    alive: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    started_at: Option<i64>,
    tasks: Vec<RunningView>,
}

/// A per-worker limit of this machine's configuration with the tasks running under it.
#[derive(Debug, Serialize)]
struct LimitView {
    worker: String,
    limit: usize,
    running: i64,
}

/// The whole answer (the OpenAPI schema `RunningNow`).
#[derive(Debug, Serialize)]
pub struct RunningNow {
    now: i64,
    hosts: Vec<HostView>,
    worker_limits: Vec<LimitView>,
}

/// The machine part of an owner id (`machine/pid/start`).
fn machine_of(owner: &str) -> &str {
    owner.split('/').next().unwrap_or(owner)
}

/// Groups `running` by owner under `hosts`; owners no host record names become hosts of
/// their own, and this machine (`here`, running `concurrency` at once) is always shown.
fn arrange(
    hosts: Vec<HostRecord>,
    running: Vec<RunningTask>,
    here: &str,
    concurrency: usize,
    now: i64,
) -> Vec<HostView> {
    let registered = !hosts.is_empty();
    let mut by_owner: BTreeMap<String, Vec<RunningView>> = BTreeMap::new();
    for r in running {
        let owner = r.task.owner.clone().unwrap_or_default();
        by_owner.entry(owner).or_default().push(RunningView::of(r));
    }
    let mut out: Vec<HostView> = hosts
        .into_iter()
        .map(|h| HostView {
            tasks: by_owner.remove(&h.id).unwrap_or_default(),
            alive: Some(h.renewed_at.is_some_and(|r| now - r <= HOST_LIVE_MS)),
            id: Some(h.id),
            name: h.name,
            version: Some(h.version),
            capacity: Some(h.capacity),
            started_at: Some(h.started_at),
        })
        .collect();
    for (owner, tasks) in by_owner {
        let name = machine_of(&owner).to_owned();
        // On SQLite the engines of this machine run with its configured concurrency.
        let capacity = (!registered && name == here).then_some(concurrency as i64);
        out.push(HostView {
            id: (!owner.is_empty()).then_some(owner),
            name,
            version: None,
            capacity,
            alive: None,
            started_at: None,
            tasks,
        });
    }
    if !registered && !out.iter().any(|h| h.name == here) {
        out.push(HostView {
            id: None,
            name: here.to_owned(),
            version: None,
            capacity: Some(concurrency as i64),
            alive: None,
            started_at: None,
            tasks: Vec::new(),
        });
    }
    for h in &mut out {
        h.tasks.sort_by_key(|t| (t.started_at, t.id));
    }
    out.sort_by(|a, b| (&a.name, &a.id).cmp(&(&b.name, &b.id)));
    out
}

/// `GET /running`: the hosts, their slots and the tasks running in them.
pub async fn running(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<RunningNow>, ApiError> {
    params.allow(&[])?;
    st.db(|store, st| {
        let now = stask_storage::now_ms();
        let running = store.running_tasks()?;
        let mut per_worker: BTreeMap<&str, i64> = BTreeMap::new();
        for r in &running {
            *per_worker.entry(r.task.worker.as_str()).or_default() += 1;
        }
        let worker_limits = st
            .capacity
            .worker_limits
            .iter()
            .map(|(w, &limit)| LimitView {
                worker: w.clone(),
                limit,
                running: per_worker.get(w.as_str()).copied().unwrap_or(0),
            })
            .collect();
        let hosts = arrange(
            store.list_hosts()?,
            running,
            &crate::recovery::hostname(),
            st.capacity.concurrency,
            now,
        );
        Ok(RunningNow {
            now,
            hosts,
            worker_limits,
        })
    })
    .await
    .map(Json)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stask_storage::{Priority, Status, TaskRecord};

    fn running(id: i64, owner: &str, started_at: i64) -> RunningTask {
        RunningTask {
            task: TaskRecord {
                id,
                worker: "demo".into(),
                action: "run".into(),
                status: Status::Running,
                priority: Priority::Normal,
                progress: 10,
                processed: 0,
                total: 0,
                message: String::new(),
                data: "{}".into(),
                result: None,
                error: None,
                started_by: None,
                attempts: 1,
                max_attempts: 3,
                run_after: 0,
                created_at: 0,
                started_at: Some(started_at),
                finished_at: None,
                heartbeat_at: None,
                owner: Some(owner.into()),
                cancel_requested: false,
                limit: None,
                parent: None,
            },
            alive_at: None,
        }
    }

    #[test]
    fn without_registered_hosts_owners_are_hosts_and_this_machine_has_its_slots() {
        let hosts = arrange(
            Vec::new(),
            vec![
                running(2, "here/10/1", 20),
                running(1, "here/10/1", 10),
                running(3, "there/7/1", 5),
            ],
            "here",
            4,
            100,
        );
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[0].name, "here");
        assert_eq!(hosts[0].capacity, Some(4));
        assert_eq!(
            hosts[0].tasks.iter().map(|t| t.id).collect::<Vec<_>>(),
            [1, 2],
            "oldest first"
        );
        assert_eq!(hosts[1].name, "there");
        assert_eq!(
            hosts[1].capacity, None,
            "another machine's slots are unknown"
        );
        // Idle: this machine is still shown with its slots.
        let idle = arrange(Vec::new(), Vec::new(), "here", 4, 100);
        assert_eq!(idle.len(), 1);
        assert_eq!((idle[0].capacity, idle[0].tasks.len()), (Some(4), 0));
    }

    #[test]
    fn registered_hosts_carry_their_tasks_capacity_and_liveness() {
        let host = |id: &str, renewed_at| HostRecord {
            id: id.into(),
            name: id.split('/').next().unwrap().into(),
            version: "1".into(),
            capacity: 8,
            libraries: Vec::new(),
            started_at: 0,
            renewed_at,
        };
        let hosts = arrange(
            vec![host("a/1/1", Some(100_000)), host("b/1/1", Some(1))],
            vec![running(1, "a/1/1", 5)],
            "a",
            2,
            100_000,
        );
        assert_eq!(hosts.len(), 2);
        assert_eq!((hosts[0].capacity, hosts[0].tasks.len()), (Some(8), 1));
        assert_eq!(hosts[0].alive, Some(true));
        assert_eq!(hosts[1].alive, Some(false));
    }
}
