//! `GET /metrics` (Prometheus text format) and the HTTP request counters behind it.
//!
//! The scrape reads tasks per worker and status from the store (constant cost: the
//! store's maintained counts) and adds this process's counters ([`crate::metrics`]).
//! It needs credentials like the API: a token with the `metrics` role (made for
//! scrapers: it may read nothing else), or any user or token of a higher role.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::extract::Params;
use super::Shared;

/// `GET /metrics` (no query parameters: unknown ones are refused, as everywhere).
pub async fn scrape(State(st): State<Shared>, params: Params) -> Result<Response, ApiError> {
    params.allow(&[])?;
    let counts = st.db(|store, _| Ok(store.worker_counts()?)).await?;
    let body = crate::metrics::global().encode(&counts);
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
        )],
        body,
    )
        .into_response())
}

/// Counts every answer by method, route template and status code, and times it (to
/// the response's head). Outermost layer: refusals (401, 403, 413) count too.
pub async fn count_requests(req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(req.method());
    let route = route_label(req.extensions().get::<MatchedPath>(), req.uri().path());
    let res = next.run(req).await;
    crate::metrics::global().http_request(method, &route, res.status().as_u16(), started.elapsed());
    res
}

/// The method as a label; others than the usual ones are `other`, so a client cannot
/// create label values.
fn method_label(m: &Method) -> &'static str {
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// The route as a label: the template a request matched (`/api/v1/tasks/{id}`, as in
/// openapi.json), never the raw path, so ids and names create no label values. Requests
/// no route matched are `unmatched` under `/api` and `web` (the web interface's files
/// and pages) elsewhere.
fn route_label(matched: Option<&MatchedPath>, path: &str) -> String {
    match matched {
        Some(m) => m.as_str().replace("{*", "{"),
        None if path == "/api" || path.starts_with("/api/") => "unmatched".to_owned(),
        None => "web".to_owned(),
    }
}
