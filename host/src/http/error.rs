//! The API's one error shape: `{"error": {"code": "…", "message": "…", "field": "…"}}`
//! with the fitting status. Domain [`Problem`]s map to 403 / 404 / 409 / 422 (their CLI
//! hints stay out); anything else is a 500 whose details go to the service log, not to
//! the client.

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

impl From<Problem> for ApiError {
    fn from(p: Problem) -> ApiError {
        let status = match p.kind {
            ProblemKind::NotFound => StatusCode::NOT_FOUND,
            ProblemKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
            ProblemKind::Conflict => StatusCode::CONFLICT,
            ProblemKind::Forbidden => StatusCode::FORBIDDEN,
        };
        ApiError {
            status,
            code: p.code.to_owned(),
            // The hint is for command-line users; an API client gets the message.
            message: p.message,
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
    fn problems_are_answered_without_their_cli_hint() {
        let p = Problem::invalid("data", "sensitive_data", "task data contains 'password'")
            .hint("pass --allow-sensitive if this is not a secret");
        let e = ApiError::from(anyhow::Error::from(p));
        assert_eq!(e.status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            (e.code.as_str(), e.message.as_str(), e.field.as_deref()),
            (
                "sensitive_data",
                "task data contains 'password'",
                Some("data")
            )
        );
        let e = ApiError::from(Problem::forbidden(
            "not_your_task",
            "task 1 was started by ann",
        ));
        assert_eq!(e.status, StatusCode::FORBIDDEN);
    }
}
