//! Authentication (session cookies with CSRF tokens, API tokens), login throttling,
//! and the user and token endpoints.
//!
//! * `POST /auth/login` checks the password (argon2), then sets two cookies: the
//!   session id (`stask_session`: HttpOnly, SameSite=Strict) and a CSRF token
//!   (`stask_csrf`: readable by the page's script, SameSite=Strict); the body carries
//!   the CSRF token too. Only SHA-256 hashes of both are stored.
//! * A state-changing request (anything but GET/HEAD/OPTIONS) made with the session
//!   cookie must send the CSRF token in `X-CSRF-Token`; it is compared with the one
//!   stored for the session, not merely with the cookie.
//! * Programs send `Authorization: Bearer stask_…` and need no CSRF token (a browser
//!   never attaches it on its own).

use std::net::SocketAddr;
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde::Deserialize;
use serde_json::{json, Value};
use stask_storage::{now_ms, Store};

use super::error::ApiError;
use super::extract::{not_null, Id, JsonBody, PathText};
use super::{Principal, Shared, Via};
use crate::auth::ratelimit::Attempt;
use crate::auth::{self as creds, secret_hash, Role};
use crate::ops::accounts;
use crate::views::{NewTokenView, TokenView, UserView};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "stask_session";
/// Name of the CSRF cookie.
pub const CSRF_COOKIE: &str = "stask_csrf";
/// Header carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts from login.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// Routes anyone may call: logging in, and the web interface (everything outside /api
/// but `/metrics`, which needs credentials like the API).
/// The login path is public whatever the method, so that another method is answered
/// 405 (with `Allow: POST`) as on every other route, not 401.
fn is_public(method: &Method, path: &str) -> bool {
    path == "/api/v1/auth/login"
        || (matches!(*method, Method::GET | Method::HEAD)
            && path != "/api"
            && !path.starts_with("/api/")
            && path != "/metrics")
}

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Resolves the caller (401 when there is none or the credential is wrong), checks the
/// CSRF token of cookie-authenticated state changes (403), and hands the
/// [`Principal`] to the handler.
pub async fn authenticate(State(st): State<Shared>, mut req: Request, next: Next) -> Response {
    if is_public(req.method(), req.uri().path()) {
        return next.run(req).await;
    }
    // Only the method and headers are needed; the request (whose body is not Sync)
    // must not be held across the awaits.
    let (method, headers) = (req.method().clone(), req.headers().clone());
    match principal(&st, &method, &headers).await {
        Ok(p) => {
            req.extensions_mut().insert(p);
            next.run(req).await
        }
        Err(e) => e.into_response(),
    }
}

async fn principal(
    st: &Shared,
    method: &Method,
    headers: &HeaderMap,
) -> Result<Principal, ApiError> {
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let text = value.to_str().unwrap_or("");
        let token = match text.split_once(' ') {
            Some((scheme, t)) if scheme.eq_ignore_ascii_case("bearer") => t.trim().to_owned(),
            _ => {
                return Err(ApiError::unauthenticated(
                    "the Authorization header must be 'Bearer <token>'",
                ))
            }
        };
        let hash = secret_hash(&token);
        let rec = st
            .db(move |store, _| Ok(store.use_token(&hash, now_ms())?))
            .await?;
        let Some(rec) = rec else {
            return Err(ApiError::unauthenticated(
                "the API token is unknown or revoked",
            ));
        };
        let role = Role::parse(&rec.role).unwrap_or(Role::Viewer);
        return Ok(Principal {
            name: creds::token_principal(&rec.name),
            role,
            via: Via::Token { id: rec.id },
        });
    }
    let Some(sid) = cookie(headers, SESSION_COOKIE) else {
        return Err(ApiError::unauthenticated(
            "log in first (POST /api/v1/auth/login) or send an API token as 'Authorization: Bearer <token>'",
        ));
    };
    let id_hash = secret_hash(sid);
    let session = st
        .db(move |store, _| Ok(store.get_session(&id_hash, now_ms())?))
        .await?;
    let Some(session) = session else {
        return Err(ApiError::unauthenticated(
            "the session has expired or was ended; log in again",
        ));
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let sent = headers
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if sent.is_empty() || secret_hash(sent) != session.csrf_hash {
            return Err(ApiError::forbidden(
                "csrf_failed",
                "missing or wrong X-CSRF-Token header: send the csrf_token from the login response (also in the stask_csrf cookie) with every request that changes something",
            ));
        }
    }
    Ok(Principal {
        name: session.user.name,
        role: Role::parse(&session.user.role).unwrap_or(Role::Viewer),
        via: Via::Session {
            id_hash: session.id_hash,
        },
    })
}

/// Body of `POST /auth/login`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Login {
    name: String,
    password: String,
}

fn set_cookie(res: &mut Response, value: String) {
    if let Ok(v) = HeaderValue::from_str(&value) {
        res.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// `POST /auth/login`.
pub async fn login(
    State(st): State<Shared>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    JsonBody(body): JsonBody<Login>,
) -> Result<Response, ApiError> {
    let name = body.name.trim().to_owned();
    if name.is_empty() {
        return Err(ApiError::invalid(
            "name",
            "invalid_field",
            "name is required",
        ));
    }
    if body.password.is_empty() {
        return Err(ApiError::invalid(
            "password",
            "invalid_field",
            "password is required",
        ));
    }
    if body.password.chars().count() > creds::MAX_PASSWORD_CHARS {
        return Err(ApiError::invalid(
            "password",
            "password_too_long",
            format!(
                "the password must have at most {} characters",
                creds::MAX_PASSWORD_CHARS
            ),
        ));
    }
    let attempt = Attempt::new(&name, client.ip());
    let password = body.password;
    let lookup = name.clone();
    let checked = st
        .db(move |store, _| {
            throttled(store, &attempt, |store| {
                let user = store.get_user(&lookup)?;
                // The hash check runs for unknown names too, so timing reveals nothing.
                match user {
                    Some(u) if creds::verify_password(&u.password_hash, &password) => Ok(u),
                    Some(_) => Err(wrong_login()),
                    None => {
                        creds::verify_dummy(&password);
                        Err(wrong_login())
                    }
                }
            })
        })
        .await?;
    let user = match checked {
        Checked::Blocked(wait) => {
            tracing::warn!(user = %name, client = %client.ip(), "login refused: too many failed attempts");
            return Err(too_many_attempts("logins", wait));
        }
        Checked::Wrong { error, locks_out } => {
            tracing::warn!(user = %name, client = %client.ip(), "failed login");
            log_lock_out(&name, client, locks_out);
            return Err(error);
        }
        Checked::Passed(user) => user,
    };
    let sid = creds::random_secret("");
    let csrf = creds::random_secret("");
    let now = now_ms();
    let expires_at = now + SESSION_LIFETIME.as_millis() as i64;
    let (sid_hash, csrf_hash, user_id) = (secret_hash(&sid), secret_hash(&csrf), user.id);
    st.db(move |store, _| {
        Ok(store.insert_session(&sid_hash, user_id, &csrf_hash, now, expires_at)?)
    })
    .await?;
    tracing::info!(user = %user.name, client = %client.ip(), "logged in");
    let max_age = SESSION_LIFETIME.as_secs();
    let mut res = Json(json!({
        "user": { "name": user.name, "role": user.role },
        "csrf_token": csrf,
        "expires_at": expires_at,
    }))
    .into_response();
    set_cookie(
        &mut res,
        format!("{SESSION_COOKIE}={sid}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}"),
    );
    set_cookie(
        &mut res,
        format!("{CSRF_COOKIE}={csrf}; Path=/; SameSite=Strict; Max-Age={max_age}"),
    );
    Ok(res)
}

/// `POST /auth/logout`: ends the session (a token caller has nothing to end).
pub async fn logout(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Response, ApiError> {
    if let Via::Session { id_hash } = p.via {
        st.db(move |store, _| Ok(store.delete_session(&id_hash)?))
            .await?;
    }
    let mut res = StatusCode::NO_CONTENT.into_response();
    for name in [SESSION_COOKIE, CSRF_COOKIE] {
        set_cookie(
            &mut res,
            format!("{name}=; Path=/; SameSite=Strict; Max-Age=0"),
        );
    }
    Ok(res)
}

/// `GET /auth/me`.
pub async fn me(Extension(p): Extension<Principal>) -> Json<Value> {
    let (kind, token_id) = match p.via {
        Via::Session { .. } => ("session", None),
        Via::Token { id } => ("token", Some(id)),
    };
    Json(json!({ "name": p.name, "role": p.role, "auth": kind, "token_id": token_id }))
}

/// `GET /users` (admin).
pub async fn list_users(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    let list = st.db(|store, _| Ok(store.list_users()?)).await?;
    let users: Vec<UserView> = list.iter().map(UserView::new).collect();
    Ok(Json(json!({ "users": users })))
}

/// Body of `POST /users`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewUser {
    name: String,
    role: String,
    password: String,
}

/// `POST /users` (admin).
pub async fn add_user(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<NewUser>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let role = Role::parse_input(&body.role, "role")?;
    let user = st
        .db(move |store, _| Ok(accounts::add_user(store, &body.name, role, &body.password)?))
        .await?;
    tracing::info!(user = %user.name, role = %user.role, by = %p.name, "user created");
    Ok((StatusCode::CREATED, Json(UserView::new(&user))).into_response())
}

/// Body of `PATCH /users/{name}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserChange {
    role: String,
}

/// `PATCH /users/{name}` (admin): change the role.
pub async fn change_user(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
    JsonBody(body): JsonBody<UserChange>,
) -> Result<Json<UserView>, ApiError> {
    p.require(Role::Admin)?;
    let name = path.get("name");
    let role = Role::parse_input(&body.role, "role")?;
    let user = st
        .db(move |store, _| {
            accounts::set_role(store, &name, role)?;
            store
                .get_user(&name)?
                .ok_or_else(|| accounts::no_user(&name).into())
        })
        .await?;
    Ok(Json(UserView::new(&user)))
}

/// `DELETE /users/{name}` (admin). The user's sessions end; API tokens the user
/// created are not the user's (each is a principal of its own, `token:NAME`, with its
/// own role) and stay valid until revoked. The log names those still valid, so the
/// admin can revoke them.
pub async fn remove_user(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    path: PathText,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    let name = path.get("name");
    let removed = name.clone();
    let kept = st
        .db(move |store, _| {
            accounts::remove_user(store, &name)?;
            Ok(accounts::tokens_created_by(store, &name))
        })
        .await?;
    tracing::info!(user = %removed, by = %p.name, "user removed");
    if !kept.is_empty() {
        tracing::warn!(
            user = %removed,
            "API tokens created by '{removed}' stay valid: {}; revoke any that should not with `stask tokens revoke ID` or DELETE /api/v1/tokens/ID",
            kept.join(", ")
        );
    }
    Ok(StatusCode::NO_CONTENT)
}

/// How a throttled password check (a login, a password change) ended.
enum Checked<T> {
    /// Refused unchecked: the name or the address is blocked for this long.
    Blocked(Duration),
    /// The password was wrong (`error` is the answer); `locks_out`: this failure
    /// blocked the name or the address.
    Wrong { error: ApiError, locks_out: bool },
    /// The password was right.
    Passed(T),
}

/// Runs `check` (which answers `invalid_credentials` for a wrong password) unless the
/// attempt is blocked, and records its outcome in the store, where every host sees it
/// ([`crate::auth::ratelimit`]).
fn throttled<T>(
    store: &mut dyn Store,
    attempt: &Attempt,
    check: impl FnOnce(&mut dyn Store) -> Result<T, ApiError>,
) -> Result<Checked<T>, ApiError> {
    if let Some(wait) = attempt.blocked_for(store, now_ms())? {
        return Ok(Checked::Blocked(wait));
    }
    match check(store) {
        Ok(value) => {
            attempt.succeeded(store)?;
            Ok(Checked::Passed(value))
        }
        Err(error) if error.code == "invalid_credentials" => {
            let locks_out = attempt.failed(store, now_ms())?;
            Ok(Checked::Wrong { error, locks_out })
        }
        Err(error) => Err(error),
    }
}

/// The answer to a wrong user name or password.
fn wrong_login() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
        "wrong user name or password",
    )
}

/// Logs that a failed check blocked further attempts for the name or the address.
fn log_lock_out(name: &str, client: SocketAddr, locks_out: bool) {
    if locks_out {
        tracing::warn!(
            user = %name,
            client = %client.ip(),
            "too many failed password checks: the name or the address is refused for up to {} minutes, on every host",
            crate::auth::ratelimit::WINDOW.as_secs() / 60
        );
    }
}

/// Body of `PUT /users/{name}/password`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordChange {
    password: String,
    /// Required when users change their own password (left out otherwise; `null` is
    /// refused).
    #[serde(default, deserialize_with = "not_null")]
    current_password: Option<String>,
}

/// The answer to a throttled password check (a login or a password change).
fn too_many_attempts(what: &str, wait: Duration) -> ApiError {
    let secs = wait.as_secs().max(1);
    let mut e = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
        format!("too many failed {what}; try again in {secs} s"),
    );
    e.retry_after = Some(secs);
    e
}

/// `PUT /users/{name}/password`: admins set anyone's; every user their own, giving the
/// current one. The user's sessions end (the caller logs in again). Wrong
/// `current_password` attempts are throttled like logins, and count with them: the
/// same keys (the user name, the client address) in the same store, so a stolen
/// session gets no more guesses at the password than the login form gives.
pub async fn change_password(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    path: PathText,
    JsonBody(body): JsonBody<PasswordChange>,
) -> Result<StatusCode, ApiError> {
    let name = path.get("name");
    let own = matches!(p.via, Via::Session { .. }) && p.name == name;
    if !own {
        p.require(Role::Admin)?;
        st.db(move |store, _| Ok(accounts::set_password(store, &name, &body.password)?))
            .await?;
        return Ok(StatusCode::NO_CONTENT);
    }
    let attempt = Attempt::new(&name, client.ip());
    let user = name.clone();
    let checked = st
        .db(move |store, _| {
            throttled(store, &attempt, |store| {
                let current = body.current_password.as_deref().unwrap_or("");
                Ok(accounts::change_own_password(
                    store,
                    &user,
                    current,
                    &body.password,
                )?)
            })
        })
        .await?;
    match checked {
        Checked::Blocked(wait) => {
            tracing::warn!(user = %name, client = %client.ip(), "password change refused: too many failed attempts");
            Err(too_many_attempts("password checks", wait))
        }
        Checked::Wrong { error, locks_out } => {
            tracing::warn!(user = %name, client = %client.ip(), "wrong current password in a password change");
            log_lock_out(&name, client, locks_out);
            Err(error)
        }
        Checked::Passed(()) => Ok(StatusCode::NO_CONTENT),
    }
}

/// `GET /tokens` (admin): tokens without their secrets.
pub async fn list_tokens(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
) -> Result<Json<Value>, ApiError> {
    p.require(Role::Admin)?;
    let list = st.db(|store, _| Ok(store.list_tokens()?)).await?;
    let tokens: Vec<TokenView> = list.iter().map(TokenView::new).collect();
    Ok(Json(json!({ "tokens": tokens })))
}

/// Body of `POST /tokens`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    role: String,
    #[serde(default, deserialize_with = "not_null")]
    name: Option<String>,
}

/// `POST /tokens` (admin): the token is in the answer, once.
pub async fn create_token(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    JsonBody(body): JsonBody<NewToken>,
) -> Result<Response, ApiError> {
    p.require(Role::Admin)?;
    let role = Role::parse_input(&body.role, "role")?;
    let by = p.name.clone();
    let (rec, secret) = st
        .db(move |store, _| {
            Ok(accounts::create_token(
                store,
                // Left out: a name is made up; given, it must be a valid name (an
                // empty one is refused, as the description says).
                body.name.as_deref(),
                role,
                Some(&by),
            )?)
        })
        .await?;
    let created = NewTokenView {
        info: TokenView::new(&rec),
        token: secret,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// `DELETE /tokens/{id}` (admin).
pub async fn revoke_token(
    State(st): State<Shared>,
    Extension(p): Extension<Principal>,
    Id(id): Id,
) -> Result<StatusCode, ApiError> {
    p.require(Role::Admin)?;
    st.db(move |store, _| Ok(accounts::revoke_token(store, id)?))
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
