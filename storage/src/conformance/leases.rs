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

pub fn one_leader_at_a_time_until_its_term_runs_out_or_it_resigns(h: &dyn Harness) {
    let mut s = h.open();
    assert!(
        s.try_lead("a", 1_000, 500).unwrap(),
        "nobody leads: a takes it"
    );
    assert!(
        !h.open().try_lead("b", 1_200, 500).unwrap(),
        "a's term runs"
    );
    assert!(s.try_lead("a", 1_400, 500).unwrap(), "a keeps it");
    assert!(
        !h.open().try_lead("b", 1_800, 500).unwrap(),
        "renewed until 1,900"
    );
    assert!(
        h.open().try_lead("b", 2_000, 500).unwrap(),
        "a's term ran out: b takes it"
    );
    assert!(!s.try_lead("a", 2_100, 500).unwrap());
    s.resign("a").unwrap(); // not the leader: nothing happens
    assert!(!s.try_lead("a", 2_200, 500).unwrap());
    h.open().resign("b").unwrap();
    assert!(
        s.try_lead("a", 2_300, 500).unwrap(),
        "b resigned: a takes it at once"
    );
}

pub fn hosts_racing_for_the_leadership_elect_one(h: &dyn Harness) {
    // The database exists before the racers open it (creating one is not the race).
    drop(h.open());
    let winners: usize = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..6)
            .map(|i| {
                scope.spawn(move || {
                    let mut s = h.open();
                    s.try_lead(&format!("host-{i}"), 10_000, 60_000).unwrap() as usize
                })
            })
            .collect();
        racers.into_iter().map(|r| r.join().unwrap()).sum()
    });
    assert_eq!(winners, 1);
}
