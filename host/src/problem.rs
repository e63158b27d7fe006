//! Typed failures of library operations, so callers can tell "you asked for something
//! that does not exist" or "this input is wrong (field X)" from a broken database.
//!
//! A [`Problem`] travels inside `anyhow::Error` like any other error and displays as its
//! message alone, so the CLI prints exactly what it printed before; the HTTP API finds
//! it with [`Problem::find`] and answers 404 / 409 / 422 with a stable code and the
//! field concerned.

use std::fmt;

/// What kind of failure a [`Problem`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// The thing named does not exist.
    NotFound,
    /// The input is wrong; the field says which part.
    Invalid,
    /// The request is fine but the thing is not in a state that allows it.
    Conflict,
}

/// A failure caused by the request rather than by the system.
#[derive(Debug, Clone)]
pub struct Problem {
    /// Kind.
    pub kind: ProblemKind,
    /// Stable machine-readable code (`unknown_worker`, `data_not_object`, …).
    pub code: &'static str,
    /// The input field concerned, when there is one.
    pub field: Option<String>,
    /// What is wrong and what to do, for people.
    pub message: String,
}

impl Problem {
    /// Something named does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::NotFound,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// Input field `field` is wrong.
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::Invalid,
            code,
            field: Some(field.to_owned()),
            message: message.into(),
        }
    }

    /// The current state does not allow the operation.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            kind: ProblemKind::Conflict,
            code,
            field: None,
            message: message.into(),
        }
    }

    /// The same problem about another field.
    pub fn with_field(mut self, field: &str) -> Problem {
        self.field = Some(field.to_owned());
        self
    }

    /// The problem inside an error chain, if there is one.
    pub fn find(err: &anyhow::Error) -> Option<&Problem> {
        err.chain().find_map(|e| e.downcast_ref::<Problem>())
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Problem {}
