//! The domain layer: every operation the command line and the HTTP API offer, written
//! once. A front-end parses its input (flags or a JSON body), calls one function here,
//! and renders what it returns (text, `--json`, an HTTP answer with a
//! [`crate::views`] type).
//!
//! * [`tasks`] — create, cancel, retry, run now, delete, bulk actions, process all
//!   pending tasks now, clean-up.
//! * [`workers`] — find, activate / deactivate, discover / rescan / clean-orphaned,
//!   settings.
//! * [`schedules`] — set, change, remove, pause and resume a worker's schedule.
//! * [`accounts`] — users and API tokens.
//! * [`workflows`] — groups of tasks with dependencies: create, list, show, cancel, retry.
//!
//! Every check happens before anything is stored. Failures caused by the request are
//! [`crate::problem::Problem`]s whose messages make sense to any front-end,
//! with what only a command-line user can act on in their hint. Operations that may
//! make work claimable without the store knowing (activating a worker, changing a
//! schedule) wake the services here; the store wakes them itself for new, retried or
//! due tasks.

pub mod accounts;
pub mod schedules;
pub mod tasks;
pub mod workers;
pub mod workflows;

#[cfg(test)]
pub(crate) mod testing;

use stask_storage::TaskRecord;

use crate::auth::Role;
use crate::problem::Problem;

/// Who asks for an operation: what the rules about who may change what are checked
/// against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// User name, `token:NAME`, or [`Actor::LOCAL`].
    pub name: String,
    /// What the actor may do.
    pub role: Role,
}

impl Actor {
    /// The name of the local command line's actor.
    pub const LOCAL: &'static str = "cli";

    /// Whoever runs the command line on the service's machine: it owns the home, so it
    /// may do anything.
    pub fn local() -> Actor {
        Actor {
            name: Actor::LOCAL.to_owned(),
            role: Role::Admin,
        }
    }

    /// Operators may change (cancel, retry) only the tasks they started; admins any.
    pub fn may_change(&self, task: &TaskRecord) -> Result<(), Problem> {
        if self.role == Role::Admin || task.started_by.as_deref() == Some(self.name.as_str()) {
            return Ok(());
        }
        Err(Problem::forbidden(
            "not_your_task",
            format!(
                "task {} was started by {}; operators may change only the tasks they started",
                task.id,
                task.started_by.as_deref().unwrap_or("nobody recorded")
            ),
        ))
    }
}
