//! Typed failures of domain operations, so callers can tell "you asked for something
//! that does not exist" or "this input is wrong (field X)" from a broken database.
//!
//! A [`Problem`] travels inside `anyhow::Error` like any other error and displays as its
//! message alone. The message makes sense to anyone, whatever front-end they use; what
//! only a command-line user can act on (a command to run, a flag to pass) is its
//! separate [`Problem::hint`]. The CLI prints the message and then the hint; the HTTP
//! API finds the problem with [`Problem::find`] and answers 403 / 404 / 409 / 422 with
//! a stable code, the message and the field concerned, never the hint.

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
    /// The caller may not do this to this thing (an operator changing another's task).
    Forbidden,
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
    /// What is wrong and what to do, for people using any front-end.
    pub message: String,
    /// What a command-line user can do about it (`see `stask tasks list``, `pass
    /// --allow-sensitive …`): printed by the CLI after the message, never sent by the
    /// API.
    pub hint: Option<String>,
}

impl Problem {
    fn new(kind: ProblemKind, code: &'static str, message: String) -> Problem {
        Problem {
            kind,
            code,
            field: None,
            message,
            hint: None,
        }
    }

    /// Something named does not exist.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Problem {
        Problem::new(ProblemKind::NotFound, code, message.into())
    }

    /// Input field `field` is wrong.
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Problem {
        Problem {
            field: Some(field.to_owned()),
            ..Problem::new(ProblemKind::Invalid, code, message.into())
        }
    }

    /// The current state does not allow the operation.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Problem {
        Problem::new(ProblemKind::Conflict, code, message.into())
    }

    /// The caller may not do this.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Problem {
        Problem::new(ProblemKind::Forbidden, code, message.into())
    }

    /// The same problem with a hint for command-line users.
    pub fn hint(mut self, hint: impl Into<String>) -> Problem {
        self.hint = Some(hint.into());
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hint_is_kept_apart_from_the_message() {
        let p = Problem::not_found("task_not_found", "no task 5").hint("see `stask tasks list`");
        assert_eq!(p.to_string(), "no task 5");
        let err = anyhow::Error::from(p).context("cannot show the task");
        assert_eq!(format!("{err:#}"), "cannot show the task: no task 5");
        let found = Problem::find(&err).expect("found in the chain");
        assert_eq!(found.hint.as_deref(), Some("see `stask tasks list`"));
    }
}
