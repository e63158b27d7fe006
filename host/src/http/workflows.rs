//! Workflow endpoints: create (the JSON document as the body), list, show, cancel,
//! retry. Each parses the request, calls [`crate::ops::workflows`] and answers with the
//! workflow views.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::{Id, JsonBody, Params};
use super::{Principal, Shared};
use crate::auth::Role;
use crate::ops::workflows::{self as ops, WorkflowDocument};
use crate::views::{WorkflowSummaryView, WorkflowView};

/// `GET /workflows`: newest first, `limit` (1-500, default 50) from `offset`.
pub async fn list(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["limit", "offset"])?;
    let limit = params
        .int("limit", 1, i64::from(ops::MAX_PAGE))?
        .unwrap_or(50);
    let offset = params.int("offset", 0, i64::MAX)?.unwrap_or(0);
    st.db(move |store, _| {
        let (list, total) = ops::list(store, limit as u32, offset as u64)?;
        let views: Vec<WorkflowSummaryView> = list.iter().map(WorkflowSummaryView::new).collect();
        Ok(json!({
            "workflows": views,
            "total": total,
            "limit": limit,
            "offset": offset,
        }))
    })
    .await
    .map(Json)
}

/// `POST /workflows` (operator): the workflow and all its tasks, started by the caller,
/// stored whole or not at all; answers 201 with the workflow as stored.
pub async fn create(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    JsonBody(doc): JsonBody<WorkflowDocument>,
) -> Result<Response, ApiError> {
    p.require(Role::Operator)?;
    let by = p.name.clone();
    let (id, view) = st
        .db(move |store, _| {
            let created = ops::create(store, &doc, Some(&by))?;
            // Committed: a failed read answers with the ids alone.
            let view = store
                .get_workflow(created.id)
                .ok()
                .flatten()
                .and_then(|d| serde_json::to_value(WorkflowView::new(&d)).ok())
                .unwrap_or_else(|| json!({ "id": created.id }));
            Ok((created.id, view))
        })
        .await?;
    tracing::info!(workflow = id, by = %p.name, "workflow created through the API");
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, format!("/api/v1/workflows/{id}"))],
        Json(view),
    )
        .into_response())
}

/// `GET /workflows/{id}`: the workflow with its steps.
pub async fn show(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<WorkflowView>, ApiError> {
    st.db(move |store, _| Ok(WorkflowView::new(&ops::find(store, id)?)))
        .await
        .map(Json)
}

/// `POST /workflows/{id}/cancel` (operator; own workflows unless admin).
pub async fn cancel(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Operator)?;
    st.db(move |store, _| {
        let done = ops::cancel(store, &p.actor(), id)?;
        Ok(with_workflow(
            store,
            json!({ "id": id, "cancelled": done.cancelled, "requested": done.requested }),
        ))
    })
    .await
    .map(Json)
}

/// `POST /workflows/{id}/retry` (operator; own workflows unless admin).
pub async fn retry(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Operator)?;
    st.db(move |store, _| {
        let done = ops::retry(store, &p.actor(), id)?;
        Ok(with_workflow(
            store,
            json!({ "id": id, "retried": done.retried, "waiting": done.waiting }),
        ))
    })
    .await
    .map(Json)
}

/// `answer` with the workflow as it is now under `workflow`, when the store can tell
/// (the change has committed: a failed read must not turn it into an error).
fn with_workflow(store: &dyn stask_storage::Store, mut answer: Value) -> Value {
    let id = answer["id"].as_i64().unwrap_or(0);
    if let Some(view) = store
        .get_workflow(id)
        .ok()
        .flatten()
        .and_then(|d| serde_json::to_value(WorkflowView::new(&d)).ok())
    {
        answer["workflow"] = view;
    }
    answer
}
