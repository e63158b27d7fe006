//! The API's one error shape: `{"error": {"code": "…", "message": "…", "field": "…"}}`
//! with the fitting status. Library [`Problem`]s map to 404 / 409 / 422; anything else
//! is a 500 whose details go to the service log, not to the client.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::problem::{Problem, ProblemKind};

/// An error answer.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: String,
    /// Text for people.
    pub message: String,
    /// The input field concerned.
    pub field: Option<String>,
    /// Seconds for a `Retry-After` header (429).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_owned(),
            message: message.into(),
            field: None,
            retry_after: None,
        }
    }

    /// 400 about one input field.
    pub fn bad_field(field: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, code, message).field(field)
    }

    /// 422 about one input field.
    pub fn invalid(field: &str, code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, code, message).field(field)
    }

    /// 404.
    pub fn not_found(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message)
    }

    /// 403.
    pub fn forbidden(code: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, code, message)
    }

    /// The same error naming `field`.
    pub fn field(mut self, field: &str) -> ApiError {
        self.field = Some(field.to_owned());
        self
    }

    /// A failure of the service itself: logged in full, answered with a generic text.
    pub fn internal(err: anyhow::Error) -> ApiError {
        tracing::error!("API request failed: {err:#}");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "the service failed to handle the request; the service log has the details",
        )
    }
}

/// Drops the CLI's pointers (`(see `stask tasks list`)`) from library messages: an API
/// client has other ways to list things.
fn without_cli_hint(message: &str) -> String {
    match message.find(" (see `stask ") {
        Some(start) => match message[start..].find(')') {
            Some(end) => format!("{}{}", &message[..start], &message[start + end + 1..]),
            None => message.to_owned(),
        },
        None => message.to_owned(),
    }
}

impl From<Problem> for ApiError {
    fn from(p: Problem) -> ApiError {
        let status = match p.kind {
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::Conflict => StatusCode::CONFLICT,
        };
        ApiError {
            status,
            code: p.code.to_owned(),
            message: without_cli_hint(&p.message),
            field: p.field,
            retry_after: None,
        }
    }
}

impl From<anyhow::Error> for ApiError {
    fn from(e: anyhow::Error) -> ApiError {
        match Problem::find(&e) {
            Some(p) => p.clone().into(),
            None => ApiError::internal(e),
        }
    }
}

impl From<stask_storage::StoreError> for ApiError {
    fn from(e: stask_storage::StoreError) -> ApiError {
        ApiError::internal(e.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if let Some(f) = &self.field {
            error["field"] = json!(f);
        }
        let mut res = (self.status, axum::Json(json!({ "error": error }))).into_response();
        if let Some(secs) = self.retry_after {
            if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
                res.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_hints_are_dropped() {
        assert_eq!(
            without_cli_hint("no task 5 (see `stask tasks list`)"),
            "no task 5"
        );
        assert_eq!(
            without_cli_hint("no worker 'x' is registered (see `stask workers list`; new libraries are registered by `stask workers discover`)"),
            "no worker 'x' is registered"
        );
        assert_eq!(without_cli_hint("plain"), "plain");
    }
}
