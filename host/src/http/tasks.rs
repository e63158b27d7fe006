//! Task endpoints: list / search, create, show, execute, cancel, retry, delete, bulk
//! actions, process-all, clean. Each parses the request, calls [`crate::ops::tasks`]
//! and answers with [`TaskView`]s.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stask_storage::{Priority, TaskQuery};

use super::error::ApiError;
use super::extract::{not_null, Id, JsonBody, OptionalJson, Params};
use super::{Principal, Shared};
use crate::auth::Role;
use crate::ops::tasks::{
    self as ops, BulkAction, CleanRequest, Done, TaskRequest, WaitContext, Waiting,
};
use crate::views::TaskView;

/// Largest page of `GET /tasks`.
pub const MAX_PAGE: i64 = 500;

/// Largest `count` of `POST /tasks` (the CLI allows more: it is local).
pub const MAX_CREATE_COUNT: usize = 1000;

impl ApiError {
    /// The same error as a 400 (query parameters are refused with 400, bodies 422).
    fn into_bad_request(mut self) -> ApiError {
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            self.status = StatusCode::BAD_REQUEST;
        }
        self
    }
}

/// `GET /tasks`: filters `status`, `worker`, `action`, `priority`, `user`,
/// `created_from`, `created_to` (dates or times; a date `created_to` includes its
/// day), `q` (id, or text in worker / action / message); pages by `limit` (1-500,
/// default 50) and `offset`, or by `before_id` (the `next_before_id` of a page).
pub async fn list(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&[
        "status",
        "worker",
        "action",
        "priority",
        "user",
        "created_from",
        "created_to",
        "q",
        "limit",
        "offset",
        "before_id",
    ])?;
    let tz = st.tz;
    let bad_request = |p| ApiError::from(p).into_bad_request();
    let bound = |name: &str, end: bool| -> Result<Option<i64>, ApiError> {
        params
            .value(name)?
            .map(|v| crate::stats::parse_bound(v, tz, end, name).map_err(bad_request))
            .transpose()
    };
    let limit = params.int("limit", 1, MAX_PAGE)?.unwrap_or(50);
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0);
    let query = TaskQuery {
        status: params
            .value("status")?
            .map(|v| ops::parse_status(v, "status").map_err(bad_request))
            .transpose()?,
        worker: params.text("worker"),
        action: params.text("action"),
        priority: params
            .value("priority")?
            .map(|v| ops::parse_priority(v, "priority").map_err(bad_request))
            .transpose()?,
        started_by: params.text("user"),
        created_from: bound("created_from", false)?,
        created_to: bound("created_to", true)?,
        text: params.literal("q"),
        before_id: params.int("before_id", 1, i64::MAX)?,
        limit: limit as u32,
        offset: offset as u64,
    };
    let (views, total) = st
        .db(move |store, st| {
            let page = store.search_tasks(&query)?;
            // A few small reads for the whole page (workers, running tasks, counts, hosts).
            let ctx = WaitContext::load_for(store, &st.capacity, &page.tasks)?;
            let by = p.actor();
            let views: Vec<TaskView> = page
                .tasks
                .iter()
                .map(|t| TaskView::summary(t).explained(t, &ctx, &by))
                .collect();
            Ok((views, page.total))
        })
        .await?;
    let next = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| v.id))
        .flatten();
    Ok(Json(json!({
        "tasks": views,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_before_id": next,
    })))
}

/// Body of `POST /tasks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    worker: String,
    action: String,
    #[serde(default, deserialize_with = "not_null")]
    data: Option<Value>,
    #[serde(default, deserialize_with = "not_null")]
    priority: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    max_attempts: Option<u32>,
    #[serde(default)]
    allow_sensitive: bool,
    #[serde(default, deserialize_with = "not_null")]
    count: Option<usize>,
    #[serde(default, deserialize_with = "not_null")]
    unique_key: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    unique_for: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    unique_states: Option<Vec<String>>,
    #[serde(default)]
    no_unique: bool,
    #[serde(default, deserialize_with = "not_null")]
    after: Option<Vec<i64>>,
    #[serde(default)]
    after_any: bool,
}

/// `POST /tasks` (operator): the task is started by the caller. With a unique key
/// (given, or the action's default) and a task with that key there, answers 200 with
/// that task and `"existing": true` instead of creating one.
pub async fn create(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<NewTask>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let priority = match body.priority.as_deref() {
        None => Priority::Normal,
        Some(v) => ops::parse_priority(v, "priority")?,
    };
    let count = body.count.unwrap_or(1);
    if count == 0 || count > MAX_CREATE_COUNT {
        return Err(ApiError::invalid(
            "count",
            "invalid_count",
            format!("count must be between 1 and {MAX_CREATE_COUNT}, got {count}"),
        ));
    }
    let unique = ops::UniqueRequest {
        key: body.unique_key,
        within: body
            .unique_for
            .map(|v| {
                crate::task_log::parse_age(&v)
                    .map_err(|e| ApiError::invalid("unique_for", "invalid_unique_for", e))
            })
            .transpose()?,
        statuses: body
            .unique_states
            .map(|v| ops::parse_unique_states(v.iter().map(String::as_str), "unique_states"))
            .transpose()?,
        ignore_default: body.no_unique,
    };
    // Dependencies (`after`, `after_any`): one task that waits for others.
    let after = (body.after.is_some() || body.after_any).then(|| ops::AfterRequest {
        ids: body.after.unwrap_or_default(),
        any: body.after_any,
    });
    let req = TaskRequest {
        worker: body.worker,
        action: body.action,
        data: body
            .data
            .unwrap_or_else(|| Value::Object(Default::default())),
        priority,
        max_attempts: body.max_attempts.unwrap_or(ops::DEFAULT_MAX_ATTEMPTS),
        started_by: Some(p.name.clone()),
        allow_sensitive: body.allow_sensitive,
    };
    // The view is built from what was stored, not read back: once the tasks are
    // committed the answer is 201, so a client never retries into duplicates.
    let (ids, view, unique) = st
        .db(move |store, _| {
            let created = match &after {
                Some(after) => ops::create_after(store, &req, count, &unique, after)?,
                None => ops::create_with(store, &req, count, &unique)?,
            };
            let unique = created.unique_key.map(|k| (k, created.existing));
            Ok((created.ids, TaskView::summary(&created.first), unique))
        })
        .await?;
    let location = format!("/api/v1/tasks/{}", ids[0]);
    if let Some((key, existing)) = unique {
        // The view with what the unique key did: 200 and the task that was there, or
        // 201 and the new one.
        let mut body = serde_json::to_value(&view).map_err(anyhow::Error::from)?;
        if let Some(o) = body.as_object_mut() {
            o.insert("existing".into(), Value::Bool(existing));
            o.insert("unique_key".into(), Value::String(key));
        }
        let status = if existing {
            tracing::info!(task = ids[0], by = %p.name, "task with the unique key found through the API");
            StatusCode::OK
        } else {
            tracing::info!(task = ids[0], by = %p.name, "unique task created through the API");
            StatusCode::CREATED
        };
        return Ok((status, [(header::LOCATION, location)], Json(body)).into_response());
    }
    tracing::info!(task = ids[0], count = ids.len(), by = %p.name, "task created through the API");
    if ids.len() == 1 {
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(view),
        )
            .into_response())
    } else {
        Ok((StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response())
    }
}

/// `GET /tasks/{id}`: the task with its result files and the last lines of its
/// progress log (`history`; `GET /tasks/{id}/logs` pages through all of them).
pub async fn show(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<TaskView>, ApiError> {
    st.db(move |store, st| {
        let t = ops::find(store, id)?;
        let ctx = WaitContext::load_for(store, &st.capacity, std::slice::from_ref(&t))?;
        Ok(TaskView::details(store, &t)?.explained(&t, &ctx, &p.actor()))
    })
    .await
    .map(Json)
}

/// How long `execute` watches a task it made due, with a free slot, for a service to
/// take it: long enough for an idle local service (which starts a task within
/// milliseconds of the wake-up), short enough not to hold the click up.
const EXECUTE_WATCH: Duration = Duration::from_millis(1500);

/// The answer of `POST /tasks/{id}/execute` (the OpenAPI schema `Executed`): the task
/// with what happened.
#[derive(Serialize)]
struct Executed {
    #[serde(flatten)]
    task: TaskView,
    /// `started` (a service took it: running, ended, or back to pending after a quick
    /// failed attempt) or `waiting` (not taken; `waiting` says why).
    result: &'static str,
    /// Whether it was waiting until later (a retry's backoff) and was made due.
    made_due: bool,
}

/// `POST /tasks/{id}/execute` (operator): run it now (202). The task is made due and
/// watched for a moment: the answer says whether a service took it, or why it still
/// waits, rather than promising that it runs.
pub async fn execute(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let by = p.actor();
    // The context is read before the task: a claim in between then shows as the task
    // running, never as a pending task beside a slot it already fills.
    let explain = move |store: &dyn stask_storage::Store, st: &super::AppState| {
        let mut ctx = WaitContext::load(store, &st.capacity)?;
        let t = ops::find(store, id)?;
        ctx.read_tasks(store, std::slice::from_ref(&t))?;
        Ok::<_, ApiError>(TaskView::summary(&t).explained(&t, &ctx, &by))
    };
    let again = explain.clone();
    let (made_due, mut view) = st
        .db(move |store, st| {
            let r = ops::run_now(store, id)?;
            Ok((r.made_due, explain(store, st)?))
        })
        .await?;
    // Only a task nothing holds back is worth watching: one that waits for a slot, a
    // limit or a host will not start within the moment. A quick attempt can end (and
    // put the task back to pending for its next retry) between two looks: a new
    // attempt counts as started too.
    let attempts = view.attempts;
    let ran = |v: &TaskView| v.status != "pending" || v.attempts > attempts;
    let watching = Instant::now();
    while !ran(&view)
        && matches!(view.waiting, Some(Waiting::Queued))
        && watching.elapsed() < EXECUTE_WATCH
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let explain = again.clone();
        view = st.db(move |store, st| explain(store, st)).await?;
    }
    let result = if ran(&view) { "started" } else { "waiting" };
    Ok((
        StatusCode::ACCEPTED,
        Json(Executed {
            task: view,
            result,
            made_due,
        }),
    )
        .into_response())
}

/// `POST /tasks/{id}/cancel` (operator; own tasks unless admin).
pub async fn cancel(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Operator)?;
    st.db(move |store, _| {
        let (done, t) = ops::cancel(store, &p.actor(), id)?;
        Ok(json!({ "id": id, "result": done.as_str(), "task": TaskView::summary(&t) }))
    })
    .await
    .map(Json)
}

/// `POST /tasks/{id}/retry` (operator; own tasks unless admin).
pub async fn retry(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Operator)?;
    st.db(move |store, _| {
        let r = ops::retry(store, &p.actor(), id)?;
        Ok(json!({
            "id": id,
            "status": "pending",
            "was": r.was.as_str(),
            "attempts": r.task.attempts,
            "task": TaskView::summary(&r.task),
        }))
    })
    .await
    .map(Json)
}

/// `DELETE /tasks/{id}` (admin): a finished task with its files.
pub async fn delete(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, _| Ok(ops::delete(store, id)?)).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Body of `POST /tasks/bulk`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bulk {
    action: String,
    ids: Vec<i64>,
}

/// `POST /tasks/bulk` (cancel and retry: operator, own tasks unless admin; delete:
/// admin): the action on each id, with a result per id; one failing id does not stop
/// the others.
pub async fn bulk(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<Bulk>,
) -> Result<Json<Value>, ApiError> {
    let action = BulkAction::parse(&body.action)?;
    p.require(action.role())?;
    let ids = ops::bulk_ids(&body.ids)?;
    let done = st
        .db(move |store, _| Ok(ops::bulk(store, &p.actor(), action, &ids)?))
        .await?;
    let mut succeeded = 0;
    let results: Vec<Value> = done
        .into_iter()
        .map(|(id, r)| match r {
            // The per-id answer stays small; details are one GET away.
            Ok(d) => {
                succeeded += 1;
                match d {
                    Done::Cancelled(c) => json!({ "id": id, "ok": true, "result": c.as_str() }),
                    Done::Retried { was, attempts } => json!({
                        "id": id,
                        "ok": true,
                        "status": "pending",
                        "was": was.as_str(),
                        "attempts": attempts,
                    }),
                    Done::Deleted => json!({ "id": id, "ok": true, "result": "deleted" }),
                }
            }
            Err(problem) => {
                let e = ApiError::from(problem);
                json!({
                    "id": id,
                    "ok": false,
                    "status": e.status.as_u16(),
                    "error": { "code": e.code, "message": e.message },
                })
            }
        })
        .collect();
    Ok(Json(json!({
        "action": action.as_str(),
        "succeeded": succeeded,
        "failed": results.len() - succeeded,
        "results": results,
    })))
}

/// `POST /tasks/process` (operator): every pending task becomes due now (retries
/// waiting for their backoff included) and the services are woken; answers how many
/// tasks are claimable, how many the free slots take and why the others wait (202).
pub async fn process(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let due = st
        .db(|store, st| Ok(ops::process_now(store, &st.capacity)?))
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "claimable": due.claimable,
            "made_due": due.made_due,
            "starting": due.due.starting,
            "waiting": {
                "slots_busy": due.due.slots_busy,
                "worker_limit": due.due.worker_limit,
                "worker_inactive": due.due.worker_inactive,
                "unknown_worker": due.due.unknown_worker,
                "no_host": due.due.no_host,
                "dependencies": due.due.dependencies,
                "limit": due.due.limit,
            },
        })),
    )
        .into_response())
}

/// Body of `POST /tasks/clean`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Clean {
    /// Left out: the default age; `null` is refused.
    #[serde(default, deserialize_with = "not_null")]
    older_than: Option<String>,
    #[serde(default)]
    include_failed: bool,
}

/// `POST /tasks/clean` (admin): like `stask tasks clean`.
pub async fn clean(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    OptionalJson(body): OptionalJson<Clean>,
) -> Result<Json<ops::CleanReport>, ApiError> {
    p.require(Role::Admin)?;
    let req = CleanRequest::parse(body.older_than.as_deref(), body.include_failed)?;
    st.db(move |store, _| Ok(ops::clean(store, &req)?))
        .await
        .map(Json)
}
