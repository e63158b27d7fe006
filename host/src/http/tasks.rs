//! Task endpoints: list / search, create, show, execute, cancel, retry, delete, bulk
//! actions, process-all, clean.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stask_storage::{now_ms, Priority, Status, TaskQuery};

use super::error::ApiError;
use super::extract::{Id, JsonBody, OptionalJson, Params};
use super::{Principal, Shared};
use crate::auth::Role;
use crate::task_create::{create_tasks, TaskRequest};
use crate::task_ops;
use crate::task_view::TaskView;

/// Largest page of `GET /tasks`.
pub const MAX_PAGE: i64 = 500;

/// Largest `count` of `POST /tasks` (the CLI allows more: it is local).
pub const MAX_CREATE_COUNT: usize = 1000;

/// Largest id list of `POST /tasks/bulk`.
pub const MAX_BULK: usize = 1000;

fn parse_status(v: &str, field: &str) -> Result<Status, ApiError> {
    Status::parse(v).ok_or_else(|| {
        ApiError::bad_field(
            field,
            "invalid_status",
            format!("'{v}' is not a status; use pending, running, completed, failed or cancelled"),
        )
    })
}

fn parse_priority(v: &str, field: &str) -> Result<Priority, ApiError> {
    Priority::parse(v).ok_or_else(|| {
        ApiError::bad_field(
            field,
            "invalid_priority",
            format!("'{v}' is not a priority; use high, normal or low"),
        )
    })
}

/// `GET /tasks`: filters `status`, `worker`, `action`, `priority`, `user`,
/// `created_from`, `created_to` (dates or times; a date `created_to` includes its
/// day), `q` (id, or text in worker / action / message); pages by `limit` (1-500,
/// default 50) and `offset`, or by `before_id` (the `next_before_id` of a page).
pub async fn list(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
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
    let bound = |name: &str, end: bool| -> Result<Option<i64>, ApiError> {
        params
            .text(name)
            .map(|v| {
                crate::stats::parse_bound(&v, tz, end, name)
                    .map_err(|p| ApiError::from(p).into_bad_request())
            })
            .transpose()
    };
    let limit = params.int("limit", 1, MAX_PAGE)?.unwrap_or(50);
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0);
    let query = TaskQuery {
        status: params
            .text("status")
            .map(|v| parse_status(&v, "status"))
            .transpose()?,
        worker: params.text("worker"),
        action: params.text("action"),
        priority: params
            .text("priority")
            .map(|v| parse_priority(&v, "priority"))
            .transpose()?,
        started_by: params.text("user"),
        created_from: bound("created_from", false)?,
        created_to: bound("created_to", true)?,
        text: params.text("q"),
        before_id: params.int("before_id", 1, i64::MAX)?,
        limit: limit as u32,
        offset: offset as u64,
    };
    let page = st
        .db(move |store, _| {
            let page = store.search_tasks(&query)?;
            let views: Vec<TaskView> = page.tasks.iter().map(TaskView::summary).collect();
            Ok((views, page.total))
        })
        .await?;
    let (views, total) = page;
    let next = (views.len() as i64 == limit)
        .then(|| views.last().map(|v| v.task.id))
        .flatten();
    Ok(Json(json!({
        "tasks": views,
        "total": total,
        "limit": limit,
        "offset": offset,
        "next_before_id": next,
    })))
}

impl ApiError {
    /// The same error as a 400 (query parameters are refused with 400, bodies 422).
    fn into_bad_request(mut self) -> ApiError {
        if self.status == StatusCode::UNPROCESSABLE_ENTITY {
            self.status = StatusCode::BAD_REQUEST;
        }
        self
    }
}

/// Body of `POST /tasks`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    worker: String,
    action: String,
    #[serde(default)]
    data: Option<Value>,
    #[serde(default)]
    priority: Option<String>,
    #[serde(default)]
    max_attempts: Option<u32>,
    #[serde(default)]
    allow_sensitive: bool,
    #[serde(default)]
    count: Option<usize>,
}

/// `POST /tasks` (operator): the task is started by the caller.
pub async fn create(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<NewTask>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let priority = match body.priority.as_deref() {
        None => Priority::Normal,
        Some(v) => parse_priority(v, "priority").map_err(|e| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            ..e
        })?,
    };
    let count = body.count.unwrap_or(1);
    if count == 0 || count > MAX_CREATE_COUNT {
        return Err(ApiError::invalid(
            "count",
            "invalid_count",
            format!("count must be between 1 and {MAX_CREATE_COUNT}, got {count}"),
        ));
    }
    let req = TaskRequest {
        worker: body.worker,
        action: body.action,
        data: body
            .data
            .unwrap_or_else(|| Value::Object(Default::default())),
        priority,
        max_attempts: body.max_attempts.unwrap_or(3),
        started_by: Some(p.name.clone()),
        allow_sensitive: body.allow_sensitive,
    };
    let created = st
        .db(move |store, _| {
            let ids = create_tasks(store, &req, count)?;
            store.notify_work();
            let first = task_ops::find(store, ids[0])?;
            Ok((ids, TaskView::summary(&first)))
        })
        .await?;
    let (ids, view) = created;
    tracing::info!(task = ids[0], count = ids.len(), by = %p.name, "task created through the API");
    let location = format!("/api/v1/tasks/{}", ids[0]);
    if ids.len() == 1 {
        Ok((
            StatusCode::CREATED,
            [(header::LOCATION, location)],
            Json(serde_json::to_value(&view).map_err(|e| ApiError::internal(e.into()))?),
        )
            .into_response())
    } else {
        Ok((StatusCode::CREATED, Json(json!({ "ids": ids }))).into_response())
    }
}

/// `GET /tasks/{id}`: the task with its result files and whole progress history.
pub async fn show(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<TaskView>, ApiError> {
    st.db(move |store, _| {
        let t = task_ops::find(store, id)?;
        Ok(TaskView::details(store, &t)?)
    })
    .await
    .map(Json)
}

/// `POST /tasks/{id}/execute` (operator): run it now (202).
pub async fn execute(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let view = st
        .db(move |store, _| {
            let t = task_ops::run_now(store, id)?;
            Ok(TaskView::summary(&t))
        })
        .await?;
    Ok((StatusCode::ACCEPTED, Json(view)).into_response())
}

fn cancel_one(
    store: &mut dyn stask_storage::Store,
    p: &Principal,
    id: i64,
) -> Result<Value, ApiError> {
    let t = task_ops::find(store, id)?;
    p.may_change(&t)?;
    let result = task_ops::cancel(store, id)?;
    let t = task_ops::find(store, id)?;
    Ok(json!({ "id": id, "result": result.as_str(), "task": TaskView::summary(&t) }))
}

fn retry_one(
    store: &mut dyn stask_storage::Store,
    p: &Principal,
    id: i64,
) -> Result<Value, ApiError> {
    let t = task_ops::find(store, id)?;
    p.may_change(&t)?;
    let r = task_ops::retry(store, id)?;
    Ok(json!({
        "id": id,
        "status": "pending",
        "was": r.was,
        "attempts": r.task.attempts,
        "task": TaskView::summary(&r.task),
    }))
}

fn delete_one(store: &mut dyn stask_storage::Store, id: i64) -> Result<Value, ApiError> {
    task_ops::delete(store, id)?;
    Ok(json!({ "id": id, "result": "deleted" }))
}

/// `POST /tasks/{id}/cancel` (operator; own tasks unless admin).
pub async fn cancel(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Operator)?;
    st.db(move |store, _| cancel_one(store, &p, id))
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
    st.db(move |store, _| retry_one(store, &p, id))
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
    st.db(move |store, _| delete_one(store, id)).await?;
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
    let action = body.action.trim().to_owned();
    match action.as_str() {
        "cancel" | "retry" => p.require(Role::Operator)?,
        "delete" => p.require(Role::Admin)?,
        other => {
            return Err(ApiError::invalid(
                "action",
                "invalid_action",
                format!("'{other}' is not a bulk action; use cancel, retry or delete"),
            ))
        }
    }
    if body.ids.is_empty() || body.ids.len() > MAX_BULK {
        return Err(ApiError::invalid(
            "ids",
            "invalid_ids",
            format!("ids must list 1 to {MAX_BULK} task ids"),
        ));
    }
    let mut ids = Vec::with_capacity(body.ids.len());
    for id in body.ids {
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    let results = st
        .db(move |store, _| {
            let mut out = Vec::with_capacity(ids.len());
            let mut ok = 0;
            for id in ids {
                let r = match action.as_str() {
                    "cancel" => cancel_one(store, &p, id),
                    "retry" => retry_one(store, &p, id),
                    _ => delete_one(store, id),
                };
                match r {
                    Ok(mut v) => {
                        ok += 1;
                        v["ok"] = json!(true);
                        if let Some(obj) = v.as_object_mut() {
                            // The per-id answer stays small; details are one GET away.
                            obj.remove("task");
                        }
                        out.push(v);
                    }
                    // A broken database fails the whole request, not one id.
                    Err(e) if e.status.is_server_error() => return Err(e),
                    Err(e) => out.push(json!({
                        "id": id,
                        "ok": false,
                        "status": e.status.as_u16(),
                        "error": { "code": e.code, "message": e.message },
                    })),
                }
            }
            Ok((out, ok))
        })
        .await?;
    let (results, succeeded) = results;
    let failed = results.len() - succeeded;
    Ok(Json(json!({
        "action": body.action.trim(),
        "succeeded": succeeded,
        "failed": failed,
        "results": results,
    })))
}

/// `POST /tasks/process` (operator): every pending task becomes due now (retries
/// waiting for their backoff included) and the engine is woken; answers how many tasks
/// are claimable (202).
pub async fn process(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let (made_due, claimable) = st
        .db(|store, _| {
            let now = now_ms();
            let made_due = store.make_all_due(now)?;
            let claimable = store.count_claimable(now)?;
            store.notify_work();
            Ok((made_due, claimable))
        })
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "claimable": claimable, "made_due": made_due })),
    )
        .into_response())
}

/// Body of `POST /tasks/clean`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Clean {
    #[serde(default)]
    older_than: Option<String>,
    #[serde(default)]
    include_failed: bool,
}

/// `POST /tasks/clean` (admin): like `stask tasks clean`.
pub async fn clean(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    OptionalJson(body): OptionalJson<Clean>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    let text = body.older_than.unwrap_or_else(|| "30d".to_owned());
    let age = crate::task_log::parse_age(&text)
        .map_err(|e| ApiError::invalid("older_than", "invalid_age", e))?;
    let statuses: &'static [Status] = if body.include_failed {
        &[Status::Completed, Status::Failed, Status::Cancelled]
    } else {
        &[Status::Completed]
    };
    let report = st
        .db(move |store, _| Ok(crate::task_clean::clean(store, age, statuses)?))
        .await?;
    Ok(Json(
        serde_json::to_value(&report).map_err(|e| ApiError::internal(e.into()))?,
    ))
}
