//! The HTTP JSON API under `/api/v1`, served by `stask serve`.
//!
//! * Runs on its own tokio runtime thread(s) ([`start`]); the engine keeps its own
//!   threads. Handlers use their own store connections on blocking threads (a small
//!   pool).
//! * Handlers only parse the request, call the domain layer ([`crate::ops`]), exactly
//!   as the CLI does, and answer with a view ([`crate::views`]).
//! * Every route except `POST /api/v1/auth/login` needs a session cookie or an API
//!   token ([`auth`]); credentials and the route's role are checked before any of the
//!   request body is read, and a declared body over the limit is refused at once.
//! * Connections are capped and timed out ([`server`]); live event streams share one
//!   watcher per task and are capped ([`streams`]).
//! * Errors are `{"error": {"code", "message", "field"?}}` ([`error`]).
//! * The OpenAPI description is `openapi.json` beside this file, served at
//!   `/api/v1/openapi.json`.

pub mod auth;
pub mod error;
pub mod extract;
mod metrics;
mod running;
pub mod server;
mod stats;
pub mod streams;
mod task_files;
mod tasks;
mod workers;
mod workflows;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use axum::http::{header, HeaderValue, StatusCode};
use axum::routing::{get, post, put};
use axum::Router;
use stask_storage::Store;

use crate::auth::Role;
use crate::config::Config;
use crate::home::Home;
use error::ApiError;
pub use server::HttpLimits;

/// The OpenAPI 3 description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Idle connections kept for reuse.
const POOL_SIZE: usize = 8;

/// What every handler shares.
pub struct AppState {
    home: Home,
    tz: chrono_tz::Tz,
    exe: PathBuf,
    pool: Mutex<Vec<Box<dyn Store>>>,
    limits: HttpLimits,
    streams: Arc<streams::Streams>,
    /// This machine's slots, for why a pending task waits (tasks.rs).
    capacity: crate::ops::tasks::Capacity,
}

/// The state as handlers receive it.
pub type Shared = Arc<AppState>;

impl Drop for AppState {
    /// The pooled stores are closed on a thread of their own: the last reference to the
    /// state may go with a task of the HTTP runtime (the stream poller's, when the
    /// server stops), and closing a PostgreSQL connection blocks on a runtime of its
    /// own, which panics inside another ("Cannot start a runtime from within a
    /// runtime") and made a stopping service exit with a panic.
    fn drop(&mut self) {
        let pool = std::mem::take(self.pool.get_mut().unwrap_or_else(|e| e.into_inner()));
        if pool.is_empty() {
            return;
        }
        match std::thread::Builder::new()
            .name("close-stores".into())
            .spawn(move || drop(pool))
        {
            Ok(closing) => {
                let _ = closing.join();
            }
            Err(e) => tracing::warn!("cannot close the API's database connections: {e}"),
        }
    }
}

impl AppState {
    /// State for the home, configuration and HTTP limits.
    pub fn new(home: &Home, config: &Config, limits: HttpLimits) -> Result<AppState> {
        Ok(AppState {
            home: home.clone(),
            tz: config.tz(),
            exe: std::env::current_exe().context("cannot locate the stask executable")?,
            pool: Mutex::new(Vec::new()),
            streams: Arc::new(streams::Streams::new(
                limits.max_streams,
                limits.max_streams_per_user,
            )),
            limits,
            capacity: crate::ops::tasks::Capacity::of(config),
        })
    }

    /// Runs `f` with a database connection on a blocking thread.
    pub async fn db<T, F>(self: &Arc<Self>, f: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Store, &AppState) -> Result<T, ApiError> + Send + 'static,
    {
        let st = self.clone();
        tokio::task::spawn_blocking(move || {
            let taken = st.pool.lock().unwrap_or_else(|e| e.into_inner()).pop();
            let mut store = match taken {
                Some(s) => s,
                None => st.home.store().map_err(ApiError::failure)?,
            };
            let result = f(&mut *store, &st);
            let mut pool = st.pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < POOL_SIZE {
                pool.push(store);
            }
            result
        })
        .await
        .map_err(|e| ApiError::internal(anyhow::anyhow!("a request thread failed: {e}")))?
    }

    /// The home.
    pub fn home(&self) -> &Home {
        &self.home
    }
}

/// Who is making a request.
#[derive(Debug, Clone)]
pub struct Principal {
    /// User name, or `token:NAME` for an API token (what `started_by` records).
    pub name: String,
    /// Role.
    pub role: Role,
    /// Session (hash of its id) or token (its id).
    pub via: Via,
}

/// How a request was authenticated.
#[derive(Debug, Clone)]
pub enum Via {
    /// A browser session cookie.
    Session {
        /// SHA-256 of the session id.
        id_hash: String,
    },
    /// An API token.
    Token {
        /// The token's id.
        id: i64,
    },
}

impl Principal {
    /// Refuses (403) a principal below `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else if self.role == Role::Metrics {
            Err(ApiError::forbidden(
                "forbidden",
                format!(
                    "this needs the {role} role; {} has the metrics role, which may read only GET /metrics",
                    self.name
                ),
            ))
        } else {
            Err(ApiError::forbidden(
                "forbidden",
                format!(
                    "this needs the {role} role; {} is {} {}",
                    self.name,
                    if self.role == Role::Admin { "an" } else { "a" },
                    self.role
                ),
            ))
        }
    }

    /// The principal as the domain layer knows it.
    pub fn actor(&self) -> crate::ops::Actor {
        crate::ops::Actor {
            name: self.name.clone(),
            role: self.role,
        }
    }
}

/// The lowest role allowed to call each operation (`None`: public), checked by
/// [`require_role`] after routing and before the handler reads anything (a refused
/// caller learns nothing from body validation). Handlers check again, and finer rules
/// live in them: operators change only their own tasks, bulk delete needs admin, users
/// may change their own password. A unit test keeps this table and `x-required-role`
/// in openapi.json identical.
pub const ROUTE_ROLES: &[(&str, &str, Option<Role>)] = &[
    ("POST", "/auth/login", None),
    ("POST", "/auth/logout", Some(Role::Viewer)),
    ("GET", "/auth/me", Some(Role::Viewer)),
    ("GET", "/users", Some(Role::Admin)),
    ("POST", "/users", Some(Role::Admin)),
    ("PATCH", "/users/{name}", Some(Role::Admin)),
    ("DELETE", "/users/{name}", Some(Role::Admin)),
    ("PUT", "/users/{name}/password", Some(Role::Viewer)),
    ("GET", "/tokens", Some(Role::Admin)),
    ("POST", "/tokens", Some(Role::Admin)),
    ("DELETE", "/tokens/{id}", Some(Role::Admin)),
    ("GET", "/openapi.json", Some(Role::Viewer)),
    ("GET", "/dashboard", Some(Role::Viewer)),
    ("GET", "/stats", Some(Role::Viewer)),
    ("GET", "/stats/overview", Some(Role::Viewer)),
    ("GET", "/stats/workers", Some(Role::Viewer)),
    ("GET", "/stats/time", Some(Role::Viewer)),
    ("GET", "/stats/throughput", Some(Role::Viewer)),
    ("GET", "/running", Some(Role::Viewer)),
    ("GET", "/tasks", Some(Role::Viewer)),
    ("POST", "/tasks", Some(Role::Operator)),
    ("POST", "/tasks/bulk", Some(Role::Operator)),
    ("POST", "/tasks/process", Some(Role::Operator)),
    ("POST", "/tasks/clean", Some(Role::Admin)),
    ("GET", "/tasks/{id}", Some(Role::Viewer)),
    ("DELETE", "/tasks/{id}", Some(Role::Admin)),
    ("POST", "/tasks/{id}/execute", Some(Role::Operator)),
    ("POST", "/tasks/{id}/cancel", Some(Role::Operator)),
    ("POST", "/tasks/{id}/retry", Some(Role::Operator)),
    ("GET", "/tasks/{id}/progress", Some(Role::Viewer)),
    ("GET", "/tasks/{id}/logs", Some(Role::Viewer)),
    ("GET", "/tasks/{id}/events", Some(Role::Viewer)),
    ("GET", "/tasks/{id}/log", Some(Role::Viewer)),
    ("GET", "/tasks/{id}/files", Some(Role::Viewer)),
    ("GET", "/tasks/{id}/files/{name}", Some(Role::Viewer)),
    ("GET", "/workflows", Some(Role::Viewer)),
    ("POST", "/workflows", Some(Role::Operator)),
    ("GET", "/workflows/{id}", Some(Role::Viewer)),
    ("POST", "/workflows/{id}/cancel", Some(Role::Operator)),
    ("POST", "/workflows/{id}/retry", Some(Role::Operator)),
    ("GET", "/workers", Some(Role::Viewer)),
    ("POST", "/workers/discover", Some(Role::Admin)),
    ("POST", "/workers/rescan", Some(Role::Admin)),
    ("POST", "/workers/clean-orphaned", Some(Role::Admin)),
    ("GET", "/workers/{id}", Some(Role::Viewer)),
    ("POST", "/workers/{id}/activate", Some(Role::Admin)),
    ("POST", "/workers/{id}/deactivate", Some(Role::Admin)),
    ("GET", "/workers/{id}/settings", Some(Role::Viewer)),
    ("PATCH", "/workers/{id}/settings", Some(Role::Admin)),
    ("GET", "/workers/{id}/schedule", Some(Role::Viewer)),
    ("PUT", "/workers/{id}/schedule", Some(Role::Admin)),
    ("DELETE", "/workers/{id}/schedule", Some(Role::Admin)),
    ("POST", "/workers/{id}/schedule/pause", Some(Role::Admin)),
    ("POST", "/workers/{id}/schedule/resume", Some(Role::Admin)),
];

/// Routes outside `/api/v1` that need credentials, by their full path, checked like
/// [`ROUTE_ROLES`] (and against openapi.json). Everything else outside `/api` is the web
/// interface's files: public. `GET /metrics` (Prometheus) is at the root, where
/// scrapers look for it; the `metrics` role (API tokens only) may read it and nothing
/// else.
pub const ROOT_ROUTE_ROLES: &[(&str, &str, Option<Role>)] =
    &[("GET", "/metrics", Some(Role::Metrics))];

/// Refuses (403) callers below the route's role in [`ROUTE_ROLES`] (or
/// [`ROOT_ROUTE_ROLES`]); a route missing from the table is refused to everyone but
/// admins, so a forgotten entry fails closed.
async fn require_role(
    matched: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let full = matched
        .as_ref()
        .map(|m| m.as_str().replace("{*", "{"))
        .unwrap_or_default();
    let (table, path) = match full.strip_prefix("/api/v1") {
        Some(p) => (ROUTE_ROLES, p),
        None => (ROOT_ROUTE_ROLES, full.as_str()),
    };
    // HEAD is answered by the GET route, with its role.
    let method = match req.method().as_str() {
        "HEAD" => "GET".to_owned(),
        m => m.to_owned(),
    };
    let needed = table
        .iter()
        .find(|(m, p, _)| *m == method && *p == path)
        .map_or(Some(Role::Admin), |(_, _, r)| *r);
    if let Some(role) = needed {
        match req.extensions().get::<Principal>() {
            Some(p) => {
                if let Err(e) = p.require(role) {
                    return e.into_response();
                }
            }
            None => return ApiError::unauthenticated("log in first").into_response(),
        }
    }
    next.run(req).await
}

/// The query parameters each operation takes, by method and full path template, as
/// openapi.json declares them (path-level and operation-level, `$ref`s resolved).
static QUERY_PARAMETERS: std::sync::LazyLock<
    std::collections::HashMap<(String, String), Vec<String>>,
> = std::sync::LazyLock::new(|| {
    let doc: serde_json::Value = serde_json::from_str(OPENAPI).unwrap_or_default();
    let resolve = |p: &serde_json::Value| -> serde_json::Value {
        match p["$ref"].as_str() {
            Some(r) => doc
                .pointer(r.trim_start_matches('#'))
                .cloned()
                .unwrap_or_default(),
            None => p.clone(),
        }
    };
    let mut out = std::collections::HashMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        let shared = item["parameters"].as_array().cloned().unwrap_or_default();
        for (method, op) in item.as_object().into_iter().flatten() {
            if method == "parameters" {
                continue;
            }
            let own = op["parameters"].as_array().cloned().unwrap_or_default();
            let names = shared
                .iter()
                .chain(&own)
                .map(resolve)
                .filter(|p| p["in"] == "query")
                .filter_map(|p| p["name"].as_str().map(str::to_owned))
                .collect();
            out.insert((method.to_uppercase(), path.clone()), names);
        }
    }
    out
});

/// Refuses (400 `unknown_parameter`) query parameters the route's operation does not
/// declare in openapi.json, for every route alike, so a misspelt parameter is never
/// silently ignored, even where an operation takes none. Runs after the role check.
async fn refuse_unknown_query(
    matched: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::extract::FromRequestParts as _;
    use axum::response::IntoResponse as _;
    if req.uri().query().is_none() {
        return next.run(req).await;
    }
    let path = matched
        .as_ref()
        .map(|m| m.as_str().replace("{*", "{"))
        .unwrap_or_default();
    let method = match req.method().as_str() {
        "HEAD" => "GET".to_owned(),
        m => m.to_owned(),
    };
    let allowed: Vec<&str> = QUERY_PARAMETERS
        .get(&(method, path))
        .map(|names| names.iter().map(String::as_str).collect())
        .unwrap_or_default();
    let (mut parts, body) = req.into_parts();
    let checked = match extract::Params::from_request_parts(&mut parts, &()).await {
        Ok(params) => params.allow(&allowed),
        Err(e) => Err(e),
    };
    if let Err(e) = checked {
        return e.into_response();
    }
    next.run(axum::extract::Request::from_parts(parts, body))
        .await
}

async fn no_route() -> ApiError {
    ApiError::not_found(
        "no_route",
        "no such API endpoint (see /api/v1/openapi.json)",
    )
}

async fn wrong_method() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        "this endpoint does not take that method (see /api/v1/openapi.json)",
    )
}

/// Security policy of the web interface's pages: its own scripts, styles and API only.
const WEB_CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'";

/// Everything outside `/api/`: the web interface's embedded files, the application page
/// for its client-side routes, and language files (`{home}/lang/` first).
async fn web(
    axum::extract::State(st): axum::extract::State<Shared>,
    method: axum::http::Method,
    uri: axum::http::Uri,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let path = uri.path().to_owned();
    if path == "/api" || path.starts_with("/api/") {
        return no_route().await.into_response();
    }
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return wrong_method().await.into_response();
    }
    let found = if path.starts_with("/lang/") {
        let home = st.home.clone();
        tokio::task::spawn_blocking(move || crate::web_assets::lang_asset(&home, &path))
            .await
            .ok()
            .flatten()
    } else {
        crate::web_assets::asset(&path).map(|(ct, body)| (ct, body.to_vec()))
    };
    match found {
        Some((ct, body)) => (
            [
                (header::CONTENT_TYPE, HeaderValue::from_static(ct)),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::CONTENT_SECURITY_POLICY,
                    HeaderValue::from_static(WEB_CSP),
                ),
            ],
            body,
        )
            .into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn openapi() -> impl axum::response::IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// Headers on every answer: API responses are never cached (they may hold task data)
/// and never rendered as pages, and no page ever sends a `Referer`: addresses hold
/// task ids and search text, and nothing in stask reads the header, so `no-referrer`
/// (stricter than `same-origin`, which would still send it to the service itself)
/// costs nothing.
async fn common_headers(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let mut res = next.run(req).await;
    let h = res.headers_mut();
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    res
}

/// The declared length of a request's body, if any.
fn content_length(headers: &axum::http::HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Set once a request's body has been read whole ([`buffer_body`]).
#[derive(Clone)]
struct BodyRead(Arc<AtomicBool>);

/// Answers that leave a request's body unread (a refusal before the body was read, a
/// body too large or too slow) close the connection, and say so (`Connection:
/// close`), so a client never sends its next request on a connection the server is
/// about to close.
async fn close_if_unread(
    mut req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let has_body = content_length(req.headers()).is_some_and(|n| n > 0)
        || req.headers().contains_key(header::TRANSFER_ENCODING);
    let read = Arc::new(AtomicBool::new(false));
    if has_body {
        req.extensions_mut().insert(BodyRead(read.clone()));
    }
    let mut res = next.run(req).await;
    if has_body && !read.load(Ordering::Acquire) {
        res.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    res
}

/// The 413 for a body over [`extract::MAX_BODY_BYTES`].
fn body_too_large(declared: Option<u64>) -> ApiError {
    let max = extract::MAX_BODY_BYTES;
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        match declared {
            Some(n) => format!(
                "the request body is larger than {max} bytes (Content-Length: {n}); nothing was read"
            ),
            None => format!("the request body is larger than {max} bytes"),
        },
    )
}

/// Refuses a declared `Content-Length` over the limit at once, before credentials are
/// even looked at: nothing of the body is read or waited for.
async fn refuse_oversized(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match content_length(req.headers()) {
        Some(n) if n > extract::MAX_BODY_BYTES as u64 => body_too_large(Some(n)).into_response(),
        _ => next.run(req).await,
    }
}

/// Reads the whole request body (at most [`extract::MAX_BODY_BYTES`], within the body
/// timeout) once the caller's credentials and role have been checked and before the
/// handler runs. A refusal after this point leaves the connection clean for the
/// client's next request.
async fn buffer_body(
    axum::extract::State(st): axum::extract::State<Shared>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (parts, body) = req.into_parts();
    let limit = st.limits.body_timeout;
    let read = tokio::time::timeout(limit, axum::body::to_bytes(body, extract::MAX_BODY_BYTES));
    match read.await {
        Ok(Ok(bytes)) => {
            if let Some(flag) = parts.extensions.get::<BodyRead>() {
                flag.0.store(true, Ordering::Release);
            }
            let req = axum::extract::Request::from_parts(parts, axum::body::Body::from(bytes));
            next.run(req).await
        }
        Ok(Err(e)) => {
            // Over the limit (a body without a declared length), or the client went
            // away or sent a malformed body.
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_large {
                body_too_large(None).into_response()
            } else {
                ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_body",
                    "the request body could not be read",
                )
                .into_response()
            }
        }
        Err(_) => {
            tracing::debug!(
                "request body not received within {} s (http_body_timeout_secs)",
                limit.as_secs()
            );
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!(
                    "the request body did not arrive within {} s (http_body_timeout_secs)",
                    limit.as_secs()
                ),
            )
            .into_response()
        }
    }
}

/// The whole application.
pub fn router(state: Shared) -> Router {
    let api = Router::new()
        .route("/auth/login", post(auth::login))
        .route("/auth/logout", post(auth::logout))
        .route("/auth/me", get(auth::me))
        .route("/users", get(auth::list_users).post(auth::add_user))
        .route(
            "/users/{name}",
            axum::routing::patch(auth::change_user).delete(auth::remove_user),
        )
        .route("/users/{name}/password", put(auth::change_password))
        .route("/tokens", get(auth::list_tokens).post(auth::create_token))
        .route("/tokens/{id}", axum::routing::delete(auth::revoke_token))
        .route("/openapi.json", get(openapi))
        .route("/dashboard", get(stats::dashboard))
        .route("/stats", get(stats::report))
        .route("/stats/overview", get(stats::overview))
        .route("/stats/workers", get(stats::workers))
        .route("/stats/time", get(stats::time))
        .route("/stats/throughput", get(stats::throughput))
        .route("/running", get(running::running))
        .route("/tasks", get(tasks::list).post(tasks::create))
        .route("/tasks/bulk", post(tasks::bulk))
        .route("/tasks/process", post(tasks::process))
        .route("/tasks/clean", post(tasks::clean))
        .route("/tasks/{id}", get(tasks::show).delete(tasks::delete))
        .route("/tasks/{id}/execute", post(tasks::execute))
        .route("/tasks/{id}/cancel", post(tasks::cancel))
        .route("/tasks/{id}/retry", post(tasks::retry))
        .route("/tasks/{id}/progress", get(task_files::progress))
        .route("/tasks/{id}/logs", get(task_files::logs))
        .route("/tasks/{id}/events", get(task_files::events))
        .route("/tasks/{id}/log", get(task_files::download_log))
        .route("/tasks/{id}/files", get(task_files::list_files))
        .route("/tasks/{id}/files/{*name}", get(task_files::download_file))
        .route("/workflows", get(workflows::list).post(workflows::create))
        .route("/workflows/{id}", get(workflows::show))
        .route("/workflows/{id}/cancel", post(workflows::cancel))
        .route("/workflows/{id}/retry", post(workflows::retry))
        .route("/workers", get(workers::list))
        .route("/workers/discover", post(workers::discover))
        .route("/workers/rescan", post(workers::rescan))
        .route("/workers/clean-orphaned", post(workers::clean_orphaned))
        .route("/workers/{id}", get(workers::show))
        .route("/workers/{id}/activate", post(workers::activate))
        .route("/workers/{id}/deactivate", post(workers::deactivate))
        .route(
            "/workers/{id}/settings",
            get(workers::settings).patch(workers::change_settings),
        )
        .route(
            "/workers/{id}/schedule",
            get(workers::schedule)
                .put(workers::set_schedule)
                .delete(workers::remove_schedule),
        )
        .route("/workers/{id}/schedule/pause", post(workers::pause))
        .route("/workers/{id}/schedule/resume", post(workers::resume))
        // Layers run outside in: the role first, then the body is read.
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            buffer_body,
        ))
        .route_layer(axum::middleware::from_fn(refuse_unknown_query))
        .route_layer(axum::middleware::from_fn(require_role))
        .method_not_allowed_fallback(wrong_method);
    // Everything outside /api/v1 is the web interface ([`web`]), public so a browser
    // can load the login page (`auth::is_public`). Layers run outside in: headers,
    // the connection's fate, an oversized declared body, credentials; then the route's
    // role and the body (above).
    Router::new()
        .route(
            "/metrics",
            get(metrics::scrape)
                .route_layer(axum::middleware::from_fn(refuse_unknown_query))
                .route_layer(axum::middleware::from_fn(require_role)),
        )
        .nest("/api/v1", api)
        .fallback(web)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            auth::authenticate,
        ))
        .layer(axum::middleware::from_fn(refuse_oversized))
        .layer(axum::middleware::from_fn(close_if_unread))
        .layer(axum::middleware::from_fn(common_headers))
        // Outermost, so every answer is counted (refusals too).
        .layer(axum::middleware::from_fn(metrics::count_requests))
        .with_state(state)
}

/// A running HTTP server; stopped (and its address file removed) by [`HttpServer::stop`]
/// or when dropped.
pub struct HttpServer {
    addr: SocketAddr,
    addr_file: PathBuf,
    shutdown: Option<tokio::sync::watch::Sender<bool>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// How long open requests (live event streams above all) get once the service stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Binds `config.bind`, creates the first admin when there are no users (printing its
/// password once on standard error, never through the log), and serves the API on a
/// thread of its own. The bound address is logged (`listening on http://ADDR`) and
/// written to `HOME/run/http-{pid}.addr`, so `--bind 127.0.0.1:0` can be found. The
/// server's limits are `config`'s `http_*` settings.
pub fn start(home: &Home, config: &Config) -> Result<HttpServer> {
    let limits = config.http_limits();
    let wanted: SocketAddr = config
        .bind
        .parse()
        .with_context(|| format!("'{}' is not an address like 127.0.0.1:8080", config.bind))?;
    let listener = std::net::TcpListener::bind(wanted).with_context(|| {
        format!("cannot listen on {wanted} (choose another address with --bind, STASK_BIND or bind in stask.toml)")
    })?;
    listener.set_nonblocking(true)?;
    server::deepen_backlog(&listener);
    let addr = listener.local_addr()?;

    let mut store = home.store()?;
    if let Some(password) = crate::ops::accounts::ensure_first_admin(&mut *store)? {
        let admin = crate::ops::accounts::FIRST_ADMIN;
        // Straight to standard error (the terminal of whoever starts the service), not
        // through tracing: the log, whatever its format or destination, never holds
        // the password.
        {
            use std::io::Write as _;
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "Created user '{admin}' (role admin) with password {password} — it is shown only this once; change it with `stask users passwd {admin}`"
            );
            let _ = err.flush();
        }
        tracing::warn!(
            "created user '{admin}' (role admin); its password was printed once on standard error and is not logged"
        );
    }
    drop(store);

    server::check_descriptor_limit(&limits);
    let state = Arc::new(AppState::new(home, config, limits)?);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("http")
        .enable_all()
        .build()
        .context("cannot start the HTTP runtime")?;
    let (tx, rx) = tokio::sync::watch::channel(false);
    let thread = std::thread::Builder::new()
        .name("http".into())
        .spawn(move || {
            runtime.block_on(serve(listener, state, rx));
            // Whatever is still open (a stream that outlived the grace) is dropped.
            runtime.shutdown_timeout(Duration::from_millis(500));
        })
        .context("cannot start the HTTP thread")?;

    let run_dir = home.root().join("run");
    std::fs::create_dir_all(&run_dir)
        .with_context(|| format!("cannot create '{}'", run_dir.display()))?;
    let addr_file = run_dir.join(format!("http-{}.addr", std::process::id()));
    // Written whole under another name, then renamed: a reader never sees half of it.
    let tmp = addr_file.with_extension("addr.tmp");
    // Logged first: whoever sees the file can find the line.
    tracing::info!("listening on http://{addr}");
    std::fs::write(&tmp, format!("http://{addr}\n"))
        .and_then(|()| std::fs::rename(&tmp, &addr_file))
        .with_context(|| format!("cannot write '{}'", addr_file.display()))?;
    Ok(HttpServer {
        addr,
        addr_file,
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

async fn serve(
    listener: std::net::TcpListener,
    state: Shared,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("cannot use the listening socket: {e}");
            return;
        }
    };
    let limits = state.limits.clone();
    tokio::spawn(streams::run(state.clone()));
    let server = server::run(listener, router(state), limits, stop.clone());
    tokio::select! {
        _ = server => {}
        _ = async {
            let _ = stop.wait_for(|s| *s).await;
            tokio::time::sleep(SHUTDOWN_GRACE).await;
        } => {}
    }
}

impl HttpServer {
    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting requests, gives open ones a moment, and waits for the thread.
    pub fn stop(mut self) {
        self.shut_down();
    }

    fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let _ = std::fs::remove_file(&self.addr_file);
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_has_its_query_parameters_from_the_description() {
        let routes = ROUTE_ROLES
            .iter()
            .map(|(m, p, _)| (m.to_string(), format!("/api/v1{p}")))
            .chain(
                ROOT_ROUTE_ROLES
                    .iter()
                    .map(|(m, p, _)| (m.to_string(), p.to_string())),
            );
        for key in routes {
            assert!(QUERY_PARAMETERS.contains_key(&key), "{key:?}");
        }
        let tasks = &QUERY_PARAMETERS[&("GET".to_owned(), "/api/v1/tasks".to_owned())];
        assert!(tasks.iter().any(|n| n == "before_id"), "{tasks:?}");
        let events = &QUERY_PARAMETERS[&("GET".to_owned(), "/api/v1/tasks/{id}/events".to_owned())];
        assert_eq!(events, &["offset"]);
    }

    #[test]
    fn the_role_table_and_the_openapi_description_agree() {
        let doc: serde_json::Value = serde_json::from_str(OPENAPI).expect("openapi.json is JSON");
        assert!(doc["openapi"].as_str().unwrap_or("").starts_with("3."));
        let mut documented = Vec::new();
        for (path, ops) in doc["paths"].as_object().expect("paths") {
            for (method, op) in ops.as_object().expect("operations") {
                let role = op["x-required-role"].as_str().expect("x-required-role");
                documented.push((method.to_uppercase(), path.clone(), role.to_owned()));
            }
        }
        // API routes are relative to /api/v1; the others are full paths.
        let api = ROUTE_ROLES
            .iter()
            .map(|(m, p, r)| (m, format!("/api/v1{p}"), r));
        let root = ROOT_ROUTE_ROLES
            .iter()
            .map(|(m, p, r)| (m, p.to_string(), r));
        let mut table: Vec<(String, String, String)> = api
            .chain(root)
            .map(|(m, p, r)| {
                (
                    m.to_string(),
                    p,
                    r.map_or("public".to_owned(), |r| r.as_str().to_owned()),
                )
            })
            .collect();
        documented.sort();
        table.sort();
        assert_eq!(documented, table);
    }
}
