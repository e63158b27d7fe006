//! Worker endpoints: list, show, activate / deactivate, discover, rescan,
//! clean-orphaned, settings (secrets masked), schedule with pause / resume.

use std::collections::HashMap;

use axum::extract::State;
use axum::{Extension, Json};
use chrono::Utc;
use serde::Deserialize;
use serde_json::{json, Map, Value};
use stask_plugin_api::WorkerManifest;
use stask_storage::{Store, WorkerCounts};

use super::error::ApiError;
use super::extract::{JsonBody, OptionalJson, PathText};
use super::{AppState, Principal, Shared};
use crate::auth::Role;
use crate::problem::Problem;
use crate::schedule::{manage, ScheduleView, SpecInput};
use crate::worker_ops;
use crate::workers_view::WorkerView;

fn counts_json(c: Option<&WorkerCounts>) -> (i64, Value) {
    let c = c.map(|w| w.counts.clone()).unwrap_or_default();
    let total = c.pending + c.running + c.completed + c.failed + c.cancelled;
    (total, serde_json::to_value(&c).unwrap_or(Value::Null))
}

fn schedule_json(v: &ScheduleView) -> Value {
    json!({
        "kind": v.kind,
        "description": v.description,
        "summary": v.summary(),
        "paused": v.paused,
        "next_run": v.next_run,
    })
}

/// `GET /workers`: each worker with its icon, identifier, title, scope, description,
/// state, task count and schedule with its next run.
pub async fn list(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    st.db(|store, st| {
        let counts: HashMap<String, WorkerCounts> = store
            .worker_counts()?
            .into_iter()
            .map(|w| (w.worker.clone(), w))
            .collect();
        let mut out = Vec::new();
        for w in store.list_workers()? {
            let view = WorkerView::new(&w);
            let schedule = ScheduleView::load(store, &w.identifier, st.tz)?;
            let (total, by_status) = counts_json(counts.get(&w.identifier));
            out.push(json!({
                "identifier": view.identifier,
                "icon": view.icon,
                "title": view.title,
                "scope": view.scope,
                "description": view.description,
                "version": view.version,
                "active": view.active,
                "library_exists": view.library.exists,
                "task_count": total,
                "tasks": by_status,
                "schedule": schedule_json(&schedule),
            }));
        }
        Ok(json!({ "workers": out }))
    })
    .await
    .map(Json)
}

fn detail(store: &dyn Store, st: &AppState, id: &str) -> Result<Value, ApiError> {
    let w = worker_ops::find(store, id)?;
    let view = WorkerView::new(&w);
    let schedule = ScheduleView::load(store, id, st.tz)?;
    let counts = store.worker_counts()?.into_iter().find(|c| c.worker == id);
    let (total, by_status) = counts_json(counts.as_ref());
    let mut v = serde_json::to_value(&view).map_err(|e| ApiError::internal(e.into()))?;
    v["schedule"] = serde_json::to_value(&schedule).map_err(|e| ApiError::internal(e.into()))?;
    v["task_count"] = json!(total);
    v["tasks"] = by_status;
    Ok(v)
}

/// `GET /workers/{id}`: everything `workers show` shows, with task counts.
pub async fn show(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    let id = path.get("id");
    st.db(move |store, st| detail(store, st, &id))
        .await
        .map(Json)
}

async fn set_active(
    st: Shared,
    p: Principal,
    id: String,
    active: bool,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, st| {
        worker_ops::set_active(store, &id, active)?;
        tracing::info!(worker = %id, active, by = %p.name, "worker state changed through the API");
        detail(store, st, &id)
    })
    .await
    .map(Json)
}

/// `POST /workers/{id}/activate` (admin).
pub async fn activate(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    set_active(st, p, path.get("id"), true).await
}

/// `POST /workers/{id}/deactivate` (admin).
pub async fn deactivate(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    set_active(st, p, path.get("id"), false).await
}

/// Body of `POST /workers/discover`.
#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Discover {
    #[serde(default)]
    activate: bool,
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.into()))
}

/// `POST /workers/discover` (admin): registers workers of new libraries.
pub async fn discover(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    OptionalJson(body): OptionalJson<Discover>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, st| {
        let report =
            crate::discovery::discover(store, &st.exe, st.home().plugins_dir(), body.activate)?;
        if body.activate && !report.registered.is_empty() {
            store.notify_work();
        }
        to_json(&report)
    })
    .await
    .map(Json)
}

/// `POST /workers/rescan` (admin): refreshes workers whose library changed.
pub async fn rescan(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    st.db(|store, st| {
        to_json(&crate::discovery::rescan(
            store,
            &st.exe,
            st.home().plugins_dir(),
        )?)
    })
    .await
    .map(Json)
}

/// `POST /workers/clean-orphaned` (admin): removes workers whose library is gone.
pub async fn clean_orphaned(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    st.db(|store, _| to_json(&crate::discovery::clean_orphaned(store)?))
        .await
        .map(Json)
}

fn settings_json(w: &stask_storage::WorkerRecord) -> Value {
    let view = WorkerView::new(w);
    json!({
        "identifier": view.identifier,
        "settings": view.settings,
        "schema": view.settings_schema,
    })
}

/// `GET /workers/{id}/settings`: values with secrets shown only as set / not set.
pub async fn settings(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    let id = path.get("id");
    st.db(move |store, _| Ok(settings_json(&worker_ops::find(store, &id)?)))
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
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    let id = path.get("id");
    st.db(move |store, _| {
        let w = worker_ops::find(store, &id)?;
        let updated = crate::settings::apply_patch(&w, &patch)?;
        store.set_worker_settings(&id, &updated)?;
        // Keys only: values may be secrets.
        let keys: Vec<&String> = patch.keys().collect();
        tracing::info!(worker = %id, ?keys, by = %p.name, "settings changed through the API");
        Ok(settings_json(&worker_ops::find(store, &id)?))
    })
    .await
    .map(Json)
}

/// `GET /workers/{id}/schedule`.
pub async fn schedule(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    let id = path.get("id");
    st.db(move |store, st| {
        worker_ops::find(store, &id)?;
        to_json(&ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

/// Body of `PUT /workers/{id}/schedule`: the same options as `stask workers schedule`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleBody {
    kind: String,
    at: Option<String>,
    /// A number or text.
    minute: Option<Value>,
    /// `"mon,fri"` or `["mon", "fri"]`.
    days: Option<Value>,
    every: Option<String>,
    from: Option<String>,
    to: Option<String>,
    data: Option<Value>,
    #[serde(default)]
    allow_sensitive: bool,
    paused: Option<bool>,
}

/// Which input a schedule error is about, read from its message.
fn spec_error_field(message: &str, input: &SpecInput) -> &'static str {
    let named: [(&'static str, &Option<String>); 6] = [
        ("at", &input.at),
        ("minute", &input.minute),
        ("days", &input.days),
        ("every", &input.every),
        ("from", &input.from),
        ("to", &input.to),
    ];
    // The option named first is the one the message is about ("--every does not
    // apply to a daily schedule (it takes --at)").
    if let Some((_, n)) = named
        .iter()
        .filter_map(|(n, _)| message.find(&format!("--{n}")).map(|at| (at, *n)))
        .min()
    {
        return n;
    }
    if let Some((n, _)) = named.iter().find(|(_, v)| {
        v.as_deref()
            .is_some_and(|v| !v.trim().is_empty() && message.contains(&format!("'{}'", v.trim())))
    }) {
        return n;
    }
    for (word, field) in [
        ("in the past", "at"),
        ("weekday", "days"),
        ("interval", "every"),
        ("window", "from"),
        ("minute", "minute"),
    ] {
        if message.contains(word) {
            return field;
        }
    }
    "kind"
}

fn text_value(v: Option<Value>, field: &str) -> Result<Option<String>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
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
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    let id = path.get("id");
    let input = SpecInput {
        kind: body.kind.clone(),
        at: body.at.clone(),
        minute: text_value(body.minute.clone(), "minute")?,
        days: text_value(body.days.clone(), "days")?,
        every: body.every.clone(),
        from: body.from.clone(),
        to: body.to.clone(),
    };
    st.db(move |store, st| {
        let w = worker_ops::find(store, &id)?;
        let now = Utc::now();
        let spec = input
            .parse(st.tz, now)
            .map_err(|e| ApiError::invalid(spec_error_field(&e, &input), "invalid_schedule", e))?;
        let Some(spec) = spec else {
            if body.data.is_some() || body.paused.is_some() {
                return Err(ApiError::invalid(
                    if body.data.is_some() {
                        "data"
                    } else {
                        "paused"
                    },
                    "invalid_field",
                    "manual removes the schedule, so it takes no data or paused",
                ));
            }
            manage::remove(store, &id)?;
            store.notify_work();
            return to_json(&ScheduleView::load(store, &id, st.tz)?);
        };
        let manifest: WorkerManifest =
            serde_json::from_str(&w.manifest).map_err(|e| ApiError::internal(e.into()))?;
        if manifest.scheduled_action().is_none() {
            return Err(Problem::conflict(
                "nothing_to_schedule",
                format!("worker '{id}' declares no action, so there is nothing to schedule"),
            )
            .into());
        }
        let data = match body.data {
            Some(d) => d,
            // Changing the timing keeps the data already set.
            None => match store.get_schedule(&id)? {
                Some(rec) => serde_json::from_str(&rec.data).unwrap_or_default(),
                None => Value::Object(Default::default()),
            },
        };
        manage::check_data(&id, &data, body.allow_sensitive)
            .map_err(|e| ApiError::invalid("data", "invalid_data", format!("{e:#}")))?;
        manage::set(store, &id, &spec, &data, body.allow_sensitive, st.tz, now)?;
        let paused_now = store.get_schedule(&id)?.is_some_and(|s| s.paused);
        match body.paused {
            Some(true) if !paused_now => {
                manage::pause(store, &id, Utc::now())?;
            }
            Some(false) if paused_now => {
                manage::resume(store, &id, st.tz, Utc::now())?;
            }
            _ => {}
        }
        store.notify_work();
        tracing::info!(worker = %id, by = %p.name, "schedule set through the API");
        to_json(&ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

/// `DELETE /workers/{id}/schedule` (admin): the worker runs on demand only.
pub async fn remove_schedule(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    let id = path.get("id");
    st.db(move |store, st| {
        worker_ops::find(store, &id)?;
        manage::remove(store, &id)?;
        store.notify_work();
        to_json(&ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

async fn pause_or_resume(
    st: Shared,
    p: Principal,
    id: String,
    pause: bool,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, st| {
        worker_ops::find(store, &id)?;
        if store.get_schedule(&id)?.is_none() {
            return Err(Problem::conflict(
                "no_schedule",
                format!("worker '{id}' has no schedule (it runs on demand only)"),
            )
            .into());
        }
        if pause {
            manage::pause(store, &id, Utc::now())?;
        } else {
            manage::resume(store, &id, st.tz, Utc::now())?;
        }
        store.notify_work();
        to_json(&ScheduleView::load(store, &id, st.tz)?)
    })
    .await
    .map(Json)
}

/// `POST /workers/{id}/schedule/pause` (admin).
pub async fn pause(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    pause_or_resume(st, p, path.get("id"), true).await
}

/// `POST /workers/{id}/schedule/resume` (admin): the next run counts from now.
pub async fn resume(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<Json<Value>, ApiError> {
    pause_or_resume(st, p, path.get("id"), false).await
}
