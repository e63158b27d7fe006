//! Creating tasks: every check happens before anything is stored, and the tasks are
//! stored with their creation lines in one transaction (the store wakes the services).
//! The answer is built from what was stored, never read back: once the transaction
//! has committed, creating has succeeded, whatever the store does next.

use std::time::Duration;

use anyhow::Result;
use serde_json::Value;
use stask_plugin_api::manifest::{render_unique_key, MAX_UNIQUE_KEY_BYTES};
use stask_plugin_api::WorkerManifest;
use stask_storage::{
    now_ms, After, AfterInsert, Inserted, LogLine, NewTask, Priority, Status, Store, TaskLimit,
    TaskRecord, UniqueAfterInsert, Uniqueness,
};

use crate::problem::{shown_input, Problem};
use crate::sensitive;

/// Largest accepted task data, in bytes of JSON text.
pub const MAX_DATA_BYTES: usize = 64 * 1024;

/// Highest accepted `max_attempts`.
pub const MAX_ATTEMPTS_LIMIT: u32 = 100;

/// `max_attempts` when the caller gives none.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;

/// What a caller asks for.
#[derive(Debug, Clone)]
pub struct TaskRequest {
    /// Worker identifier.
    pub worker: String,
    /// Action name.
    pub action: String,
    /// Input data: must be a JSON object.
    pub data: Value,
    /// Claim priority.
    pub priority: Priority,
    /// Attempts allowed (1-100).
    pub max_attempts: u32,
    /// Who creates it.
    pub started_by: Option<String>,
    /// Accept credential-looking keys in `data`.
    pub allow_sensitive: bool,
}

/// `'a', 'b.c'`: credential-looking paths for a message.
pub(crate) fn quoted(paths: &[String]) -> String {
    paths
        .iter()
        .map(|p| format!("'{p}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// What a command-line user can do about data refused as sensitive.
pub(crate) fn sensitive_hint(worker: &str) -> String {
    format!("set credentials with `stask workers settings {worker}`, or pass --allow-sensitive if this is not a secret")
}

/// Largest batch [`create_tasks`] accepts.
pub const MAX_BATCH: usize = 1_000_000;

/// Statuses in which a task with the same unique key counts when the creator names
/// none: a task waiting or running makes another pointless, a finished one does not.
pub const DEFAULT_UNIQUE_STATUSES: [Status; 2] = [Status::Pending, Status::Running];

/// A creator's wishes about unique keys (see [`create_with`]). The default: the
/// action's default key if its worker declares one, pending and running tasks of any
/// age counting.
#[derive(Debug, Clone, Default)]
pub struct UniqueRequest {
    /// The key; `None`: the action's default key template, if it declares one.
    pub key: Option<String>,
    /// Only tasks created within this long count; `None`: any age.
    pub within: Option<Duration>,
    /// The statuses in which a task counts; `None`: [`DEFAULT_UNIQUE_STATUSES`].
    pub statuses: Option<Vec<Status>>,
    /// Create the task whatever exists, ignoring the action's default key.
    pub ignore_default: bool,
}

/// Tasks stored by [`create`].
#[derive(Debug, Clone)]
pub struct Created {
    /// Their ids, in creation order.
    pub ids: Vec<i64>,
    /// The first of them as it was stored (built from what was inserted, not read
    /// back); with `existing`, the task found.
    pub first: TaskRecord,
    /// A task with the same unique key was there: it is `first` (and `ids` holds its
    /// id alone), and nothing was created.
    pub existing: bool,
    /// The unique key the task was created or found with.
    pub unique_key: Option<String>,
}

/// Validates the request once and queues `count` identical tasks in one transaction.
pub fn create_tasks(store: &mut dyn Store, req: &TaskRequest, count: usize) -> Result<Vec<i64>> {
    create(store, req, count).map(|c| c.ids)
}

/// [`create_tasks`], answering with the first task as stored too (the action's default
/// unique key applies, see [`create_with`]).
pub fn create(store: &mut dyn Store, req: &TaskRequest, count: usize) -> Result<Created> {
    create_with(store, req, count, &UniqueRequest::default())
}

/// [`create`] with a unique key: when `unique` (or the action's default key) gives
/// one, the task is created only if no task of the same worker and action with that
/// key is in one of the statuses and young enough; otherwise that task is answered,
/// with [`Created::existing`]. Checking and creating are one step in the store, also
/// against creators in other processes and hosts.
pub fn create_with(
    store: &mut dyn Store,
    req: &TaskRequest,
    count: usize,
    unique: &UniqueRequest,
) -> Result<Created> {
    let valid = validate(store, req, count)?;
    let uniqueness = uniqueness(req, count, unique, valid.template.as_deref())?;
    let created = insert(store, req, valid.data, valid.limit, count, uniqueness, None)?;
    if !created.existing {
        crate::metrics::global().tasks_created(&req.worker, &req.action, created.ids.len() as u64);
    }
    Ok(created)
}

/// [`create`] of one task that the running task `parent` enqueues
/// (`Context::enqueue`): the same checks, limits and default unique key as any
/// creator's, stored with `parent` (when the key finds a task already waiting, that
/// task is answered and stays whoever's it was). Whether the parent may enqueue it at
/// all is the engine's to check first ([`crate::engine`]'s slots, against the parent
/// worker's manifest).
pub fn create_child(store: &mut dyn Store, req: &TaskRequest, parent: i64) -> Result<Created> {
    let valid = validate(store, req, 1)?;
    let uniqueness = uniqueness(req, 1, &UniqueRequest::default(), valid.template.as_deref())?;
    let created = insert(
        store,
        req,
        valid.data,
        valid.limit,
        1,
        uniqueness,
        Some(parent),
    )?;
    if !created.existing {
        crate::metrics::global().tasks_created(&req.worker, &req.action, 1);
    }
    Ok(created)
}

/// The unique key and what counts as a match, from the creator's wishes and the
/// action's default key template; `None` when the task is not unique.
fn uniqueness(
    req: &TaskRequest,
    count: usize,
    unique: &UniqueRequest,
    template: Option<&str>,
) -> Result<Option<Uniqueness>> {
    if unique.ignore_default && unique.key.is_some() {
        return Err(Problem::invalid(
            "unique_key",
            "unique_key_conflict",
            "a unique key and 'no unique key' were both given; keep one of them",
        )
        .hint("drop --unique-key or --no-unique")
        .into());
    }
    let key = match (&unique.key, template) {
        (Some(k), _) => Some(k.clone()),
        (None, Some(t)) if !unique.ignore_default => {
            Some(render_unique_key(t, &req.data).map_err(|e| {
                Problem::invalid(
                    "unique_key",
                    "invalid_unique_key",
                    format!(
                        "the default unique key of action '{}' cannot be made: {e}; give a key of your own",
                        req.action
                    ),
                )
                .hint("pass --unique-key KEY, or --no-unique")
            })?)
        }
        _ => None,
    };
    let Some(key) = key else {
        if unique.within.is_some() || unique.statuses.is_some() {
            return Err(Problem::invalid(
                "unique_key",
                "unique_key_missing",
                format!(
                    "a unique period or unique statuses apply only to a task with a unique key, and action '{}' of worker '{}' has no default key; give a unique key too",
                    shown_input(&req.action),
                    shown_input(&req.worker)
                ),
            )
            .hint("pass --unique-key KEY")
            .into());
        }
        return Ok(None);
    };
    if key.trim().is_empty()
        || key.len() > MAX_UNIQUE_KEY_BYTES
        || key.chars().any(char::is_control)
    {
        return Err(Problem::invalid(
            "unique_key",
            "invalid_unique_key",
            format!(
                "unique key '{}' is not usable: a key is 1 to {MAX_UNIQUE_KEY_BYTES} bytes, not blank, without control characters (it is {} bytes)",
                shown_input(&key),
                key.len()
            ),
        )
        .into());
    }
    if count != 1 {
        let p = Problem::invalid(
            "count",
            "unique_count",
            format!(
                "a task with a unique key ('{}') is created once; count must be 1, got {count}",
                shown_input(&key)
            ),
        );
        return Err(if unique.key.is_some() {
            p.hint("drop --count or --unique-key")
        } else {
            p.hint(
                "drop --count, or pass --no-unique to create them without the action's default key",
            )
        }
        .into());
    }
    let statuses = match &unique.statuses {
        None => DEFAULT_UNIQUE_STATUSES.to_vec(),
        Some(list) if list.is_empty() => {
            return Err(Problem::invalid(
                "unique_states",
                "invalid_unique_states",
                "unique states must name at least one status: pending, running, completed, failed or cancelled",
            )
            .into())
        }
        Some(list) => {
            let mut l = list.clone();
            l.dedup();
            l
        }
    };
    let since =
        match unique.within {
            None => None,
            Some(d) if d.is_zero() => return Err(Problem::invalid(
                "unique_for",
                "invalid_unique_for",
                "a unique period must be at least 1s (e.g. 10m, 2h, 1d); leave it out for any age",
            )
            .into()),
            Some(d) => Some(now_ms().saturating_sub(d.as_millis().min(i64::MAX as u128) as i64)),
        };
    Ok(Some(Uniqueness {
        key,
        statuses,
        since,
    }))
}

/// Reads the statuses of a unique key (`pending,running`), as a [`Problem`] naming
/// `field` when one is wrong.
pub fn parse_unique_states<'a>(
    names: impl IntoIterator<Item = &'a str>,
    field: &str,
) -> Result<Vec<Status>, Problem> {
    let mut out = Vec::new();
    for n in names {
        let n = n.trim();
        let s = Status::parse(n).ok_or_else(|| {
            Problem::invalid(
                field,
                "invalid_unique_states",
                format!(
                    "'{}' is not a status; unique states are a list of pending, running, completed, failed and cancelled",
                    shown_input(n)
                ),
            )
        })?;
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// What [`validate`] found: the data as the JSON text to store, the action's default
/// unique key template and the limit rule and key the task falls under
/// ([`crate::limits`]).
struct Valid {
    data: String,
    template: Option<String>,
    limit: Option<TaskLimit>,
}

/// Every check of a request, against the registered worker; returns what inserting
/// needs ([`Valid`]).
fn validate(store: &dyn Store, req: &TaskRequest, count: usize) -> Result<Valid> {
    if count == 0 || count > MAX_BATCH {
        return Err(Problem::invalid(
            "count",
            "invalid_count",
            format!("count must be between 1 and {MAX_BATCH}, got {count}"),
        )
        .into());
    }
    let Some(worker) = store.get_worker(&req.worker)? else {
        return Err(Problem::invalid(
            "worker",
            "unknown_worker",
            format!("no worker '{}' is registered", shown_input(&req.worker)),
        )
        .hint("see `stask workers list`")
        .into());
    };
    if !worker.active {
        return Err(Problem::invalid(
            "worker",
            "worker_inactive",
            match &worker.inactive_reason {
                Some(why) => format!(
                    "worker '{}' is inactive: {why}; activate it first",
                    req.worker
                ),
                None => format!("worker '{}' is inactive; activate it first", req.worker),
            },
        )
        .hint(format!(
            "activate it with `stask workers activate {}`",
            req.worker
        ))
        .into());
    }
    // Its tasks could only fail, each after all its attempts. (One stat per request,
    // not per task of a batch.) On a shared store the file is another host's business:
    // the task waits for a host that holds the library, and `workers show` says which.
    if !store.is_shared() && library_gone(&worker.library.path) {
        return Err(Problem::conflict(
            "library_missing",
            format!(
                "worker '{}' cannot run tasks: its library '{}' no longer exists. Restore the file, or remove the worker (clean up orphaned workers)",
                req.worker, worker.library.path
            ),
        )
        .hint("restore the file, or remove workers whose library is gone with `stask workers clean-orphaned`")
        .into());
    }
    let manifest: WorkerManifest = serde_json::from_str(&worker.manifest)?;
    let Some(action) = manifest.find_action(&req.action) else {
        let names: Vec<&str> = manifest.actions.iter().map(|a| a.name.as_str()).collect();
        return Err(Problem::invalid(
            "action",
            "unknown_action",
            format!(
                "worker '{}' has no action '{}' (its actions: {})",
                req.worker,
                shown_input(&req.action),
                names.join(", ")
            ),
        )
        .into());
    };
    let template = action.unique_key.clone();
    if !req.data.is_object() {
        return Err(Problem::invalid(
            "data",
            "data_not_object",
            format!(
                "task data must be a JSON object like {{\"file\": \"products.csv\"}}, not {}",
                stask_plugin_api::manifest::json_type_name(&req.data)
            ),
        )
        .into());
    }
    let data = serde_json::to_string(&req.data)?;
    if data.len() > MAX_DATA_BYTES {
        return Err(Problem::invalid(
            "data",
            "data_too_large",
            format!(
                "task data is {} bytes; the limit is {} bytes. Pass large inputs as a file path instead",
                data.len(),
                MAX_DATA_BYTES
            ),
        )
        .into());
    }
    if !req.allow_sensitive {
        let found = sensitive::sensitive_paths(&req.data);
        if !found.is_empty() {
            return Err(Problem::invalid(
                "data",
                "sensitive_data",
                format!(
                    "task data contains {} which looks like a credential; task data is stored and shown in plain text. Keep credentials in the worker's secret settings instead",
                    quoted(&found)
                ),
            )
            .hint(sensitive_hint(&req.worker))
            .into());
        }
    }
    if req.max_attempts == 0 || req.max_attempts > MAX_ATTEMPTS_LIMIT {
        return Err(Problem::invalid(
            "max_attempts",
            "invalid_max_attempts",
            format!(
                "max attempts must be between 1 and {MAX_ATTEMPTS_LIMIT}, got {}",
                req.max_attempts
            ),
        )
        .into());
    }
    // Fixed now, with the task: the worker's limits as they are at creation decide
    // which rule it falls under (their numbers may change later and still apply).
    let limit = crate::limits::limit_of(&worker, &req.action, &req.data);
    Ok(Valid {
        data,
        template,
        limit,
    })
}

/// Whether a worker's library file is gone: nothing at its path, or a link to nothing.
/// A file that exists but cannot be read (permissions) is not gone: running says why.
fn library_gone(path: &str) -> bool {
    matches!(std::fs::metadata(path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
}

/// Stores `count` tasks of `req` with their creation lines, in one transaction; a
/// unique one only when no task matches `unique`.
fn insert(
    store: &mut dyn Store,
    req: &TaskRequest,
    data: String,
    limit: Option<TaskLimit>,
    count: usize,
    unique: Option<Uniqueness>,
    parent: Option<i64>,
) -> Result<Created> {
    let now = now_ms();
    let by = req
        .started_by
        .as_deref()
        .map(|u| format!(", by {u}"))
        .unwrap_or_default();
    let key = unique
        .as_ref()
        .map(|u| format!(", unique key '{}'", shown_input(&u.key)))
        .unwrap_or_default();
    let creation = LogLine::new(
        "pending",
        0,
        0,
        0,
        "",
        &format!("Task created (priority {}{by}{key})", req.priority.as_str()),
    );
    let task = NewTask {
        limit,
        parent,
        worker: req.worker.clone(),
        action: req.action.clone(),
        data,
        priority: req.priority,
        max_attempts: req.max_attempts,
        started_by: req.started_by.clone(),
        run_after: now,
        created_at: now,
    };
    if let Some(unique) = unique {
        return Ok(match store.insert_unique_task(&task, &unique, &creation)? {
            Inserted::Created(id) => Created {
                ids: vec![id],
                first: stored(id, task, &creation),
                existing: false,
                unique_key: Some(unique.key),
            },
            Inserted::Existing(found) => Created {
                ids: vec![found.id],
                first: *found,
                existing: true,
                unique_key: Some(unique.key),
            },
        });
    }
    // One transaction: the tasks with their creation lines, or nothing (and the
    // services are woken by the store).
    let ids = store.insert_tasks(&task, count, &creation)?;
    let Some(&first) = ids.first() else {
        anyhow::bail!("the store created none of {count} tasks");
    };
    let first = stored(first, task, &creation);
    Ok(Created {
        ids,
        first,
        existing: false,
        unique_key: None,
    })
}

/// Most tasks one task may depend on.
pub const MAX_AFTER: usize = 1_000;

/// What a creator asks a task to wait for (see [`create_after`]).
#[derive(Debug, Clone, Default)]
pub struct AfterRequest {
    /// The tasks it runs after (`--after`, `"after"`).
    pub ids: Vec<i64>,
    /// Run once they ended whatever their outcome (`--after-any`, `"after_any"`).
    pub any: bool,
}

/// [`create`] for one task that runs after the tasks `after` names: claimable once they
/// all completed (or, with `after.any`, ended), cancelled with a message naming the
/// cause when one fails or is cancelled. A dependency that does not exist is refused,
/// naming it. A unique key (given, or the action's default) applies as in
/// [`create_with`]: when a task with it is there, that task is answered and nothing is
/// created (the key's look-up, the dependencies' check and the insert are one step). A
/// count other than 1 is refused.
pub fn create_after(
    store: &mut dyn Store,
    req: &TaskRequest,
    count: usize,
    unique: &UniqueRequest,
    after: &AfterRequest,
) -> Result<Created> {
    if after.ids.is_empty() {
        return Err(Problem::invalid(
            "after",
            "invalid_after",
            "'after any' needs the tasks to run after; give at least one task id",
        )
        .hint("pass --after ID[,ID...]")
        .into());
    }
    if after.ids.len() > MAX_AFTER {
        return Err(Problem::invalid(
            "after",
            "invalid_after",
            format!(
                "a task depends on at most {MAX_AFTER} tasks, got {}",
                after.ids.len()
            ),
        )
        .into());
    }
    if let Some(bad) = after.ids.iter().find(|id| **id < 1) {
        return Err(Problem::invalid(
            "after",
            "invalid_after",
            format!("'{bad}' is not a task id; ids are whole numbers from 1"),
        )
        .into());
    }
    if count != 1 {
        return Err(Problem::invalid(
            "count",
            "after_count",
            format!("a task with dependencies is created once; count must be 1, got {count}"),
        )
        .hint("drop --count or --after")
        .into());
    }
    let Valid {
        data,
        limit,
        template,
    } = validate(store, req, count)?;
    // A unique key (given, or the action's default) applies as to any task: when a
    // task with it is there, that task is the answer and nothing waits for anything.
    let uniqueness = uniqueness(req, count, unique, template.as_deref())?;
    let key = uniqueness
        .as_ref()
        .map(|u| format!(", unique key '{}'", shown_input(&u.key)))
        .unwrap_or_default();
    let now = now_ms();
    let by = req
        .started_by
        .as_deref()
        .map(|u| format!(", by {u}"))
        .unwrap_or_default();
    let list: Vec<String> = after.ids.iter().map(|id| format!("#{id}")).collect();
    let creation = LogLine::new(
        "pending",
        0,
        0,
        0,
        "",
        &format!(
            "Task created (priority {}{by}{key}, after {}{})",
            req.priority.as_str(),
            list.join(", "),
            if after.any {
                " whatever their outcome"
            } else {
                ""
            }
        ),
    );
    let task = NewTask {
        limit,
        parent: None,
        worker: req.worker.clone(),
        action: req.action.clone(),
        data,
        priority: req.priority,
        max_attempts: req.max_attempts,
        started_by: req.started_by.clone(),
        run_after: now,
        created_at: now,
    };
    let deps = After {
        ids: after.ids.clone(),
        any: after.any,
    };
    let missing = |id: i64| -> anyhow::Error {
        Problem::invalid(
            "after",
            "unknown_dependency",
            format!("task {id} does not exist; a task can only run after existing tasks"),
        )
        .hint("see `stask tasks list`")
        .into()
    };
    let id = match &uniqueness {
        None => match store.insert_task_after(&task, &deps, &creation)? {
            AfterInsert::Created(id) => id,
            AfterInsert::Missing(id) => return Err(missing(id)),
        },
        Some(u) => match store.insert_unique_task_after(&task, u, &deps, &creation)? {
            UniqueAfterInsert::Created(id) => id,
            UniqueAfterInsert::Missing(id) => return Err(missing(id)),
            UniqueAfterInsert::Existing(found) => {
                return Ok(Created {
                    ids: vec![found.id],
                    first: *found,
                    existing: true,
                    unique_key: Some(u.key.clone()),
                })
            }
        },
    };
    crate::metrics::global().tasks_created(&req.worker, &req.action, 1);
    // Read back: it may have been cancelled at once (a dependency had failed) or be
    // waiting, which the creator should see. Created it is: a failed read answers
    // with the task as inserted.
    let first = store
        .get_task(id)
        .ok()
        .flatten()
        .unwrap_or_else(|| stored(id, task, &creation));
    Ok(Created {
        ids: vec![id],
        first,
        existing: false,
        unique_key: uniqueness.map(|u| u.key),
    })
}

/// Every check [`create`] makes of one task, without storing it (a workflow checks each
/// of its tasks so before it stores any): the data as the JSON text to store and the
/// limit rule and key the task falls under.
pub fn validate_task(store: &dyn Store, req: &TaskRequest) -> Result<(String, Option<TaskLimit>)> {
    validate(store, req, 1).map(|v| (v.data, v.limit))
}

/// Task `id` as [`stask_storage::TaskQueue::insert_tasks`] stores `task`: pending,
/// with the creation line's message, nothing run yet.
fn stored(id: i64, task: NewTask, creation: &LogLine) -> TaskRecord {
    TaskRecord {
        id,
        worker: task.worker,
        action: task.action,
        status: Status::Pending,
        priority: task.priority,
        progress: 0,
        processed: 0,
        total: 0,
        message: creation.message.clone(),
        data: task.data,
        result: None,
        error: None,
        started_by: task.started_by,
        attempts: 0,
        max_attempts: i64::from(task.max_attempts),
        run_after: task.run_after,
        created_at: task.created_at,
        started_at: None,
        finished_at: None,
        heartbeat_at: None,
        owner: None,
        cancel_requested: false,
        limit: task.limit,
        parent: task.parent,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ops::testing::{problem, Env, PLAIN_MANIFEST};

    #[test]
    fn a_worker_whose_library_is_gone_gets_no_tasks_and_the_message_names_the_file() {
        let mut env = Env::new();
        let lib = env.worker("gone", PLAIN_MANIFEST, true, false);
        let req = TaskRequest {
            worker: "gone".into(),
            action: "go".into(),
            data: json!({}),
            priority: Priority::Normal,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            started_by: None,
            allow_sensitive: false,
        };
        let p = problem(create_tasks(&mut *env.store, &req, 1));
        assert_eq!(p.code, "library_missing");
        assert!(
            p.message.contains(&lib.display().to_string()),
            "{}",
            p.message
        );
        assert!(p.message.contains("Restore"), "{}", p.message);
        let hint = p.hint.as_deref().unwrap_or_default();
        assert!(hint.contains("stask workers clean-orphaned"), "{hint}");
        assert_eq!(env.store.task_status_counts().unwrap().pending, 0);
    }

    #[test]
    fn a_child_is_stored_with_its_parent_through_the_same_checks() {
        let mut env = Env::new();
        env.worker("kid", PLAIN_MANIFEST, true, true);
        let parent = create_tasks(&mut *env.store, &request("kid", json!({})), 1).unwrap()[0];
        let mut req = request("kid", json!({"n": 1}));
        req.started_by = Some(format!("task #{parent}"));
        let child = create_child(&mut *env.store, &req, parent).unwrap();
        assert_eq!(child.first.parent, Some(parent));
        let stored = env.store.get_task(child.first.id).unwrap().unwrap();
        assert_eq!(
            (stored.parent, stored.started_by.as_deref()),
            (Some(parent), Some(&*format!("task #{parent}")))
        );
        assert_eq!(env.store.task_children(parent, 10).unwrap(), [stored.id]);
        // The creator's checks apply: no credentials pass on, whatever the parent had.
        let p = problem(create_child(
            &mut *env.store,
            &request("kid", json!({"token": "x"})),
            parent,
        ));
        assert_eq!(p.code, "sensitive_data");
        assert_eq!(env.store.task_children(parent, 10).unwrap(), [stored.id]);
    }

    fn request(worker: &str, data: Value) -> TaskRequest {
        TaskRequest {
            worker: worker.into(),
            action: "go".into(),
            data,
            priority: Priority::Normal,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            started_by: None,
            allow_sensitive: false,
        }
    }
}
