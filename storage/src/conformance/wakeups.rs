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
    for _ in 0..5 {
        s.notify_work();
    }
    assert!(listener.wait(Duration::from_secs(5)));
    // Pending wake-ups count as one. A burst sent in separate transactions may still
    // be on its way when the listener drains what arrived (PostgreSQL delivers each
    // commit's notification on its own), so it may wake again — never once per
    // wake-up sent.
    let mut more = 0;
    while listener.wait(Duration::from_millis(50)) {
        more += 1;
        assert!(
            more <= 2,
            "a burst of 5 wake-ups woke the listener {} times",
            more + 1
        );
    }
}
