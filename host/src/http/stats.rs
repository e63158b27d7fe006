//! The dashboard and statistics endpoints (formulas: README.md, "Statistics").

use axum::extract::State;
use axum::{Extension, Json};
use chrono::Utc;
use serde_json::{json, Value};

use super::error::ApiError;
use super::extract::Params;
use super::{Principal, Shared};
use crate::stats;

fn to_json<T: serde::Serialize>(v: &T) -> Result<Value, ApiError> {
    serde_json::to_value(v).map_err(|e| ApiError::internal(e.into()))
}

/// `GET /dashboard`: task counts, active workers and the ten newest tasks.
pub async fn dashboard(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    st.db(|store, _| {
        let c = crate::views::StatusCountsView::new(&store.task_status_counts()?);
        let recent: Vec<Value> = store
            .recent_tasks(10)?
            .into_iter()
            .map(|(t, scope)| {
                json!({
                    "id": t.id,
                    "worker": t.worker,
                    "scope": scope,
                    "action": t.action,
                    "status": t.status.as_str(),
                    "progress": t.progress,
                    "message": t.message,
                    "started_by": t.started_by,
                    "created_at": t.created_at,
                })
            })
            .collect();
        Ok(json!({
            "tasks": {
                "pending": c.pending,
                "running": c.running,
                "completed": c.completed,
                "failed": c.failed,
                "cancelled": c.cancelled,
                "total": c.total(),
            },
            "active_workers": store.count_active_workers()?,
            "recent_tasks": recent,
            "queues": queues(store)?,
        }))
    })
    .await
    .map(Json)
}

/// Queue depth per worker: pending and running tasks of every worker that has any,
/// from the kept counts (constant cost), deepest queue first.
fn queues(store: &dyn stask_storage::Store) -> Result<Vec<Value>, ApiError> {
    let mut per: Vec<_> = store
        .worker_counts()?
        .into_iter()
        .filter(|w| w.counts.pending > 0 || w.counts.running > 0)
        .collect();
    per.sort_by(|a, b| {
        (b.counts.pending + b.counts.running)
            .cmp(&(a.counts.pending + a.counts.running))
            .then_with(|| a.worker.cmp(&b.worker))
    });
    Ok(per
        .into_iter()
        .map(|w| json!({"worker": w.worker, "pending": w.counts.pending, "running": w.counts.running}))
        .collect())
}

/// One minute in milliseconds.
const MINUTE_MS: i64 = 60_000;

/// `GET /stats/throughput?minutes=`: tasks completed and failed per minute over the
/// last `minutes` (default 60) minutes, the current one included, oldest first, every
/// minute present (zeros included) so a chart needs no gap filling.
pub async fn throughput(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["minutes"])?;
    let minutes = params.int("minutes", 1, 1440)?.unwrap_or(60);
    st.db(move |store, _| {
        let now = stask_storage::now_ms();
        let until = (now.div_euclid(MINUTE_MS) + 1) * MINUTE_MS;
        let since = until - minutes * MINUTE_MS;
        let found = store.finished_per_minute(since, until)?;
        let mut found = found.into_iter().peekable();
        let series: Vec<Value> = (0..minutes)
            .map(|i| {
                let at = since + i * MINUTE_MS;
                let (completed, failed) = match found.peek() {
                    Some(m) if m.minute == at => {
                        let m = found.next().expect("peeked");
                        (m.completed, m.failed)
                    }
                    _ => (0, 0),
                };
                json!({"at": at, "completed": completed, "failed": failed})
            })
            .collect();
        Ok(json!({"since": since, "until": until, "now": now, "series": series}))
    })
    .await
    .map(Json)
}

/// A custom range from `since` / `until`, if given.
fn range(params: &Params, tz: chrono_tz::Tz) -> Result<Option<(String, i64, i64)>, ApiError> {
    let (since, until) = (params.value("since")?, params.value("until")?);
    if since.is_none() && until.is_none() {
        return Ok(None);
    }
    stats::resolve_range(None, since, until, tz, Utc::now())
        .map(Some)
        .map_err(|p| ApiError::from(p).with_status(axum::http::StatusCode::BAD_REQUEST))
}

impl ApiError {
    fn with_status(mut self, status: axum::http::StatusCode) -> ApiError {
        self.status = status;
        self
    }
}

/// `GET /stats?since=&until=`: what `stask stats --json` prints.
pub async fn report(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["since", "until"])?;
    let range = range(&params, st.tz)?;
    st.db(move |store, st| to_json(&stats::report(store, range, st.tz, Utc::now())?))
        .await
        .map(Json)
}

/// `GET /stats/overview`.
pub async fn overview(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&[])?;
    st.db(|store, _| to_json(&stats::overview(store)?))
        .await
        .map(Json)
}

/// `GET /stats/workers?since=&until=`: per worker, all time or over a range.
pub async fn workers(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["since", "until"])?;
    let range = range(&params, st.tz)?;
    st.db(move |store, _| {
        let list = stats::per_worker(store, range.map(|(_, a, b)| (a, b)))?;
        Ok(json!({ "workers": to_json(&list)? }))
    })
    .await
    .map(Json)
}

/// `GET /stats/time?period=today|week|month|custom&since=&until=`: one period with its
/// per-hour (up to two days) or per-day series.
pub async fn time(
    State(st): State<Shared>,
    Extension(_p): Extension<Principal>,
    params: Params,
) -> Result<Json<Value>, ApiError> {
    params.allow(&["period", "since", "until"])?;
    let period = params.value("period")?;
    let (since, until) = (params.value("since")?, params.value("until")?);
    let period = if period.is_none() && since.is_none() && until.is_none() {
        Some("today")
    } else {
        period
    };
    let (name, a, b) = stats::resolve_range(period, since, until, st.tz, Utc::now())
        .map_err(|p| ApiError::from(p).with_status(axum::http::StatusCode::BAD_REQUEST))?;
    st.db(move |store, st| to_json(&stats::period(store, &name, a, b, st.tz)?))
        .await
        .map(Json)
}
