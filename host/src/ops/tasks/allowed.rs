//! What a caller may do with a task, by the same rules the operations check, so a
//! front-end shows exactly the actions that would be accepted instead of guessing.

use serde::Serialize;
use stask_storage::{Status, TaskRecord};

use crate::auth::Role;
use crate::ops::Actor;

/// The actions `Actor` may take on a task now (the OpenAPI schema `TaskAllowed`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Allowed {
    /// Run it now ([`super::run_now`]): operators, a pending task of an active worker.
    pub execute: bool,
    /// Cancel it ([`super::cancel`]): operators their own tasks, admins any; pending,
    /// or running without a cancel asked for already.
    pub cancel: bool,
    /// Queue it again ([`super::retry`]): operators their own, admins any; failed or
    /// cancelled.
    pub retry: bool,
    /// Delete it ([`super::delete`]): admins, a finished task.
    pub delete: bool,
}

impl Allowed {
    /// What `by` may do with `t`; `worker_active` is whether its worker is registered
    /// and active (execute refuses the others).
    pub fn of(by: &Actor, t: &TaskRecord, worker_active: bool) -> Allowed {
        let operator = by.role >= Role::Operator;
        let mine = operator && by.may_change(t).is_ok();
        Allowed {
            execute: operator && t.status == Status::Pending && worker_active,
            cancel: mine
                && (t.status == Status::Pending
                    || (t.status == Status::Running && !t.cancel_requested)),
            retry: mine && matches!(t.status, Status::Failed | Status::Cancelled),
            delete: by.role >= Role::Admin && t.status.is_final(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stask_storage::Priority;

    fn task(status: Status, by: &str) -> TaskRecord {
        TaskRecord {
            id: 1,
            worker: "w".into(),
            action: "a".into(),
            status,
            priority: Priority::Normal,
            progress: 0,
            processed: 0,
            total: 0,
            message: String::new(),
            data: "{}".into(),
            result: None,
            error: None,
            started_by: Some(by.into()),
            attempts: 0,
            max_attempts: 3,
            run_after: 0,
            created_at: 0,
            started_at: None,
            finished_at: None,
            heartbeat_at: None,
            owner: None,
            cancel_requested: false,
            limit: None,
            parent: None,
        }
    }

    fn actor(name: &str, role: Role) -> Actor {
        Actor {
            name: name.into(),
            role,
        }
    }

    #[test]
    fn what_each_role_may_do_follows_the_operations_rules() {
        let ann = actor("ann", Role::Operator);
        let bob = actor("bob", Role::Operator);
        let root = actor("root", Role::Admin);
        let vera = actor("vera", Role::Viewer);
        let pending = task(Status::Pending, "ann");
        assert_eq!(
            Allowed::of(&ann, &pending, true),
            Allowed {
                execute: true,
                cancel: true,
                ..Allowed::default()
            }
        );
        // Execute is anyone's (an operator's), cancel only one's own.
        assert_eq!(
            Allowed::of(&bob, &pending, true),
            Allowed {
                execute: true,
                ..Allowed::default()
            }
        );
        // An inactive worker's task cannot be executed.
        assert!(!Allowed::of(&root, &pending, false).execute);
        assert_eq!(Allowed::of(&vera, &pending, true), Allowed::default());
        let failed = task(Status::Failed, "ann");
        assert_eq!(
            Allowed::of(&root, &failed, true),
            Allowed {
                retry: true,
                delete: true,
                ..Allowed::default()
            }
        );
        assert_eq!(
            Allowed::of(&ann, &failed, true),
            Allowed {
                retry: true,
                ..Allowed::default()
            }
        );
        let mut asked = task(Status::Running, "ann");
        assert!(Allowed::of(&ann, &asked, true).cancel);
        asked.cancel_requested = true;
        assert!(!Allowed::of(&ann, &asked, true).cancel);
    }
}
