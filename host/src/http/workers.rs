//! Worker endpoints: list, show, activate / deactivate, discover, rescan,
//! clean-orphaned, settings (secrets masked), schedule with pause / resume. Each
//! parses the request, calls [`crate::ops::workers`] or [`crate::ops::schedules`] and
//! answers with a view.

use axum::extract::State;
use axum::{Extension, Json};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stask_storage::Store;

use super::error::ApiError;
use super::extract::{not_null, JsonBody, OptionalJson, PathText};
use super::{AppState, Principal, Shared};
use crate::auth::Role;
use crate::discovery::{CleanReport, DiscoverReport, RescanReport};
use crate::ops::schedules::{self, ScheduleChange};
use crate::ops::workers::{self as ops, SettingsChange};
use crate::schedule::{InputNames, SpecInput};
use crate::views::{ScheduleView, SettingsView, WorkerDetails, WorkerSummary};

/// `GET /workers`: each worker with its icon, identifier, title, scope, description,
/// state, task count and schedule with its next run.
pub async fn list(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    st.db(|store, st| Ok(json!({ "workers": WorkerSummary::load_all(store, st.tz)? })))
        .await
        .map(Json)
}

fn details(store: &dyn Store, st: &AppState, id: &str) -> Result<WorkerDetails, ApiError> {
    let w = ops::find(store, id)?;
    Ok(WorkerDetails::load(store, &w, st.tz)?
        .with_counts(store)?
        .without_server_paths())
}

/// `GET /workers/{id}`: everything `workers show` shows, with task counts.
pub async fn show(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    path: PathText,
) -> Result<Json<WorkerDetails>, ApiError> {
    let id = path.get("id");
    st.db(move |store, st| details(store, st, &id))
        .await
        .map(Json)
}

async fn set_active(
    st: Shared,
    p: Principal,
    id: String,
    active: bool,
) -> Result<Json<WorkerDetails>, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, st| {
        ops::set_active(store, &id, active)?;
        tracing::info!(worker = %id, active, by = %p.name, "worker state changed through the API");
        details(store, st, &id)
    })
    .await
    .map(Json)
}

/// `POST /workers/{id}/activate` (admin).
pub async fn activate(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<WorkerDetails>, ApiError> {
    set_active(st, p, path.get("id"), true).await
}

/// `POST /workers/{id}/deactivate` (admin).
pub async fn deactivate(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<WorkerDetails>, ApiError> {
    set_active(st, p, path.get("id"), false).await
}

/// Body of `POST /workers/discover`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    #[serde(default)]
    activate: bool,
}

/// `POST /workers/discover` (admin): registers workers of new libraries.
pub async fn discover(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    OptionalJson(body): OptionalJson<Discover>,
) -> Result<Json<DiscoverReport>, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, st| {
        Ok(ops::discover(
            store,
            &st.exe,
            st.home().plugins_dir(),
            body.activate,
        )?)
    })
    .await
    .map(Json)
}

/// `POST /workers/rescan` (admin): refreshes workers whose library changed.
pub async fn rescan(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Json<RescanReport>, ApiError> {
    p.require(Role::Admin)?;
    st.db(|store, st| Ok(ops::rescan(store, &st.exe, st.home().plugins_dir())?))
        .await
        .map(Json)
}

/// `POST /workers/clean-orphaned` (admin): removes workers whose library is gone.
pub async fn clean_orphaned(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Json<CleanReport>, ApiError> {
    p.require(Role::Admin)?;
    st.db(|store, _| Ok(ops::clean_orphaned(store)?))
        .await
        .map(Json)
}

/// `GET /workers/{id}/settings`: values with secrets shown only as set / not set.
pub async fn settings(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    path: PathText,
) -> Result<Json<SettingsView>, ApiError> {
    let id = path.get("id");
    st.db(move |store, _| Ok(SettingsView::new(&ops::find(store, &id)?)))
        .await
        .map(Json)
}

/// `PATCH /workers/{id}/settings` (admin): a JSON merge patch (`null` removes a key),
/// validated against the worker's schema before anything is stored.
pub async fn change_settings(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
    JsonBody(patch): JsonBody<Map<String, Value>>,
) -> Result<Json<SettingsView>, ApiError> {
    p.require(Role::Admin)?;
    let id = path.get("id");
    st.db(move |store, _| {
        let w = ops::change_settings(store, &id, &SettingsChange::Patch(&patch))?;
        // Keys only: values may be secrets.
        let keys: Vec<&String> = patch.keys().collect();
        tracing::info!(worker = %id, ?keys, by = %p.name, "settings changed through the API");
        Ok(SettingsView::new(&w))
    })
    .await
    .map(Json)
}

/// `GET /workers/{id}/schedule`.
pub async fn schedule(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    path: PathText,
) -> Result<Json<ScheduleView>, ApiError> {
    let id = path.get("id");
    st.db(move |store, st| {
        ops::find(store, &id)?;
        Ok(ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

/// Body of `PUT /workers/{id}/schedule`: the same options as `stask workers schedule`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    kind: String,
    // Optional fields are left out, never `null` (refused, naming the field).
    #[serde(default, deserialize_with = "not_null")]
    at: Option<String>,
    /// A number or text.
    #[serde(default, deserialize_with = "not_null")]
    minute: Option<Value>,
    /// `"mon,fri"` or `["mon", "fri"]`.
    #[serde(default, deserialize_with = "not_null")]
    days: Option<Value>,
    #[serde(default, deserialize_with = "not_null")]
    every: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    from: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    to: Option<String>,
    #[serde(default, deserialize_with = "not_null")]
    data: Option<Value>,
    #[serde(default)]
    allow_sensitive: bool,
    #[serde(default, deserialize_with = "not_null")]
    paused: Option<bool>,
}

fn text_value(v: Option<Value>, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(Value::Number(n)) if field == "minute" => Ok(Some(n.to_string())),
        Some(Value::Array(items)) if field == "days" => {
            let mut names = Vec::new();
            for i in items {
                match i {
                    Value::String(s) => names.push(s),
                    _ => {
                        return Err(ApiError::invalid(
                            field,
                            "invalid_field",
                            "days must be weekday names like [\"mon\", \"fri\"]",
                        ))
                    }
                }
            }
            Ok(Some(names.join(",")))
        }
        Some(_) => Err(ApiError::invalid(
            field,
            "invalid_field",
            format!(
                "{field} must be {}",
                if field == "minute" {
                    "a number 0-59"
                } else {
                    "text like \"mon,fri\" or a list of weekday names"
                }
            ),
        )),
    }
}

/// `PUT /workers/{id}/schedule` (admin): sets (or, with kind `manual`, removes) the
/// schedule; `paused` pauses or resumes it.
pub async fn set_schedule(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
    JsonBody(body): JsonBody<ScheduleBody>,
) -> Result<Json<ScheduleView>, ApiError> {
    p.require(Role::Admin)?;
    let id = path.get("id");
    let change = ScheduleChange {
        timing: Some(SpecInput {
            kind: body.kind,
            at: body.at,
            minute: text_value(body.minute, "minute")?,
            days: text_value(body.days, "days")?,
            every: body.every,
            from: body.from,
            to: body.to,
            names: InputNames::Fields,
        }),
        data: body.data,
        allow_sensitive: body.allow_sensitive,
        paused: body.paused,
    };
    st.db(move |store, st| {
        schedules::change(store, &id, &change, st.tz, Utc::now())?;
        tracing::info!(worker = %id, by = %p.name, "schedule set through the API");
        Ok(ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

/// `DELETE /workers/{id}/schedule` (admin): the worker runs on demand only.
pub async fn remove_schedule(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<ScheduleView>, ApiError> {
    p.require(Role::Admin)?;
    let id = path.get("id");
    st.db(move |store, st| {
        schedules::remove(store, &id)?;
        Ok(ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

async fn pause_or_resume(
    st: Shared,
    p: Principal,
    id: String,
    pause: bool,
) -> Result<Json<ScheduleView>, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, st| {
        if pause {
            schedules::pause(store, &id, Utc::now())?;
        } else {
            schedules::resume(store, &id, st.tz, Utc::now())?;
        }
        Ok(ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

/// `POST /workers/{id}/schedule/pause` (admin).
pub async fn pause(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<ScheduleView>, ApiError> {
    pause_or_resume(st, p, path.get("id"), true).await
}

/// `POST /workers/{id}/schedule/resume` (admin): the next run counts from now.
pub async fn resume(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<ScheduleView>, ApiError> {
    pause_or_resume(st, p, path.get("id"), false).await
}
