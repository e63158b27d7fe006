//! Owner leases: renewing one keeps its running tasks alive for recovery.

use super::{claim, insert, register, task, Harness};

pub fn a_renewed_lease_keeps_running_tasks_alive(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    insert(&mut *s, &task("w", 0), 2);
    claim(&mut *s, "a", 1_000, 1);
    claim(&mut *s, "b", 1_000, 1);
    let alive = |s: &dyn crate::Store, owner: &str| {
        s.running_tasks()
            .unwrap()
            .into_iter()
            .find(|r| r.task.owner.as_deref() == Some(owner))
            .unwrap()
            .alive_at
    };
    assert_eq!(
        alive(&*s, "a"),
        Some(1_000),
        "the claim counts as a sign of life"
    );
    s.renew_lease("a", 5_000).unwrap();
    s.renew_lease("a", 7_000).unwrap();
    assert_eq!(alive(&*s, "a"), Some(7_000));
    assert_eq!(alive(&*s, "b"), Some(1_000));
    s.release_lease("a").unwrap();
    assert_eq!(alive(&*s, "a"), Some(1_000));
    assert_eq!(s.running_tasks().unwrap().len(), 2);
}
