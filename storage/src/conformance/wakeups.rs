//! Wake-ups: operations that make work claimable wake listening services.

use std::time::Duration;

use super::{insert, register, task, Harness};

pub fn creating_work_wakes_a_listener(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["w"], true);
    let listener = h.open().listen().unwrap();
    assert!(
        !listener.wait(Duration::from_millis(50)),
        "nothing happened yet"
    );
    insert(&mut *s, &task("w", 0), 1);
    assert!(listener.wait(Duration::from_secs(5)), "a new task wakes it");
    s.notify_work();
    s.notify_work();
    assert!(listener.wait(Duration::from_secs(5)));
    assert!(
        !listener.wait(Duration::from_millis(50)),
        "pending wake-ups count as one"
    );
}
