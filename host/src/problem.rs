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

/// Longest part of a caller's input quoted in a message, in characters.
pub const SHOWN_INPUT_CHARS: usize = 64;

/// A caller's input (a worker id, an action or user name, a setting key) as a message
/// quotes it: cut to [`SHOWN_INPUT_CHARS`] characters with `…` and its control
/// characters escaped as in log lines. Input of any length reaches these messages (a
/// 10,000-character worker id typed in `tasks create` or sent to the API); the message
/// must stay readable and the first characters are enough to recognise it. Valid
/// identifiers (at most 64 characters, no control characters) are quoted unchanged.
pub fn shown_input(input: &str) -> String {
    // Cutting a single character would save nothing: the ellipsis takes its place.
    let cut = input
        .char_indices()
        .nth(SHOWN_INPUT_CHARS)
        .filter(|&(i, c)| input.len() > i + c.len_utf8())
        .map(|(i, _)| i);
    let head = &input[..cut.unwrap_or(input.len())];
    let mut out = stask_storage::escape_text(head).into_owned();
    if cut.is_some() {
        out.push('…');
    }
    out
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
    fn long_input_is_cut_and_control_characters_escaped() {
        let long = "x".repeat(10_000);
        let shown = shown_input(&long);
        assert_eq!(shown, format!("{}…", "x".repeat(SHOWN_INPUT_CHARS)));
        let valid = "a".repeat(SHOWN_INPUT_CHARS);
        assert_eq!(shown_input(&valid), valid, "valid ids are quoted whole");
        assert_eq!(shown_input("é\u{1b}[2J"), "é\\x1b[2J");
        assert_eq!(shown_input(&"é".repeat(70)), format!("{}…", "é".repeat(64)));
    }

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
