//! The API's one error shape: `{"error": {"code": "…", "message": "…", "field": "…"}}`
//! with the fitting status. Domain [`Problem`]s map to 403 / 404 / 409 / 422 (their CLI
//! hints stay out); a storage failure that clears by itself (a locked database, a full
//! disk, an I/O failure) is a 503 with `Retry-After`; anything else is a 500. The
//! details of both go to the service log, not to the client.

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
    /// Seconds for a `Retry-After` header (429, 503).
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

    /// 503 for a storage failure that clears by itself: logged in full, answered with
    /// a text that says to try again and a `Retry-After` of one second.
    pub fn store_unavailable(err: &anyhow::Error) -> ApiError {
        tracing::warn!("API request failed for now: {err:#}");
        ApiError {
            retry_after: Some(1),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_unavailable",
                "the task store is busy or its disk is full at the moment; try again shortly",
            )
        }
    }

    /// 503 for a change refused because the store is read-only for the service (its
    /// home or file system lost write access): reads keep working, so the service
    /// stays up; the operator has to restore write access. Logged in full.
    pub fn store_read_only(err: &anyhow::Error) -> ApiError {
        tracing::error!("API request failed: the store is read-only: {err:#}");
        ApiError {
            retry_after: Some(30),
            ..ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "store_read_only",
                "the task store is read-only for the service at the moment, so nothing can be changed; reading still works. The operator has to make the stask home writable again (the service log names the file)",
            )
        }
    }

    /// Any failure that is not a [`Problem`]: 503 when a transient or read-only
    /// [`stask_storage::StoreError`] caused it, 500 otherwise.
    pub fn failure(err: anyhow::Error) -> ApiError {
        match store_error_kind(&err) {
            Some(stask_storage::ErrorKind::ReadOnly) => ApiError::store_read_only(&err),
            _ if is_transient(&err) => ApiError::store_unavailable(&err),
            _ => ApiError::internal(err),
        }
    }
}

/// Whether a transient storage failure is somewhere in `err`'s chain.
fn is_transient(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<stask_storage::StoreError>()
            .is_some_and(|e| e.is_transient())
    })
}

/// The kind of the first storage failure in `err`'s chain.
fn store_error_kind(err: &anyhow::Error) -> Option<stask_storage::ErrorKind> {
    err.chain()
        .find_map(|cause| cause.downcast_ref::<stask_storage::StoreError>())
        .map(|e| e.kind())
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
            None => ApiError::failure(e),
        }
    }
}

impl From<stask_storage::StoreError> for ApiError {
    fn from(e: stask_storage::StoreError) -> ApiError {
        ApiError::failure(e.into())
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
    use stask_storage::{ErrorKind, StoreError};

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

    fn store_error(kind: ErrorKind) -> StoreError {
        StoreError::new(
            kind,
            "reading task 5",
            "database is locked at /home/x/stask.db",
        )
    }

    #[test]
    fn transient_store_failures_are_503_with_retry_after_and_no_internals() {
        for kind in [ErrorKind::Busy, ErrorKind::DiskFull, ErrorKind::Io] {
            // Directly, inside anyhow, and under added context.
            let errors = [
                ApiError::from(store_error(kind)),
                ApiError::from(anyhow::Error::from(store_error(kind))),
                ApiError::from(anyhow::Error::from(store_error(kind)).context("cancelling task 5")),
            ];
            for e in errors {
                assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE, "{kind:?}");
                assert_eq!(e.code, "store_unavailable");
                assert_eq!(e.retry_after, Some(1));
                assert!(e.message.contains("try again"), "{}", e.message);
                assert!(!e.message.contains("stask.db"), "{}", e.message);
                assert!(!e.message.contains("task 5"), "{}", e.message);
                let res = e.into_response();
                assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
                assert_eq!(res.headers()[header::RETRY_AFTER], "1");
            }
        }
    }

    #[test]
    fn a_read_only_store_is_503_naming_the_cause_without_internals() {
        let e = ApiError::from(anyhow::Error::from(store_error(ErrorKind::ReadOnly)).context("x"));
        assert_eq!(e.status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(e.code, "store_read_only");
        assert!(e.message.contains("read-only"), "{}", e.message);
        assert!(!e.message.contains("stask.db"), "{}", e.message);
    }

    #[test]
    fn other_failures_stay_500_without_retry_after() {
        for kind in [
            ErrorKind::Other,
            ErrorKind::NewerSchema,
            ErrorKind::Conflict,
        ] {
            let e = ApiError::from(anyhow::Error::from(store_error(kind)).context("x"));
            assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR, "{kind:?}");
            assert_eq!((e.code.as_str(), e.retry_after), ("internal_error", None));
            assert!(!e.message.contains("stask.db"));
        }
        let e = ApiError::from(anyhow::anyhow!("something else broke"));
        assert_eq!(e.status, StatusCode::INTERNAL_SERVER_ERROR);
        let res = e.into_response();
        assert!(res.headers().get(header::RETRY_AFTER).is_none());
    }
}
