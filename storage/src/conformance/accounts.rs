//! Users, sessions and API tokens, and failed logins.

use super::Harness;

pub fn users_sessions_and_the_last_admin(h: &dyn Harness) {
    let mut s = h.open();
    assert!(s.insert_first_user("admin", "admin", "h1", 1).unwrap());
    assert!(!s.insert_first_user("other", "admin", "h1", 1).unwrap());
    assert!(s.insert_user("admin", "viewer", "h", 2).unwrap().is_none());
    let bob = s.insert_user("bob", "viewer", "h2", 2).unwrap().unwrap();
    s.insert_session("sid", bob.id, "csrf", 3, 100).unwrap();
    assert_eq!(s.get_session("sid", 50).unwrap().unwrap().user.name, "bob");
    assert!(s.get_session("sid", 100).unwrap().is_none(), "expired");
    // A password change ends the user's sessions.
    assert!(s.set_user_password("bob", "h3", 4).unwrap());
    assert!(s.get_session("sid", 50).unwrap().is_none());
    // The last admin can be neither demoted nor removed.
    assert_eq!(s.set_user_role("admin", "viewer", 5).unwrap(), Some(false));
    assert_eq!(s.delete_user("admin").unwrap(), Some(false));
    assert_eq!(s.set_user_role("bob", "admin", 5).unwrap(), Some(true));
    assert_eq!(s.delete_user("admin").unwrap(), Some(true));
    assert_eq!(s.delete_user("ghost").unwrap(), None);
}

pub fn tokens_get_default_names_and_can_be_revoked(h: &dyn Harness) {
    let mut s = h.open();
    let t = s
        .insert_token(None, "viewer", "hash1", Some("admin"), 1)
        .unwrap()
        .unwrap();
    assert_eq!(t.name, format!("token-{}", t.id));
    assert!(s
        .insert_token(Some(&t.name), "viewer", "hash2", None, 1)
        .unwrap()
        .is_none());
    assert_eq!(s.use_token("hash1", 2).unwrap().unwrap().id, t.id);
    assert_eq!(s.revoke_token(t.id, 3).unwrap(), Some(true));
    assert_eq!(s.revoke_token(t.id, 3).unwrap(), Some(false));
    assert!(s.use_token("hash1", 4).unwrap().is_none());
    assert_eq!(s.revoke_token(99, 3).unwrap(), None);
}

pub fn tokens_may_have_the_metrics_role(h: &dyn Harness) {
    let mut s = h.open();
    let t = s
        .insert_token(Some("prometheus"), "metrics", "hash-m", Some("admin"), 1)
        .unwrap()
        .unwrap();
    assert_eq!(t.role, "metrics");
    let used = s.use_token("hash-m", 2).unwrap().unwrap();
    assert_eq!((used.id, used.role.as_str()), (t.id, "metrics"));
    let listed = s.list_tokens().unwrap();
    assert_eq!(
        listed.iter().find(|x| x.id == t.id).unwrap().role,
        "metrics"
    );
}

/// A user key and an address key, as the host throttles a login.
const ANN: [&str; 2] = ["user:ann", "addr:10.0.0.1"];

pub fn failed_logins_block_a_key_until_its_oldest_counted_failure_leaves_the_window(
    h: &dyn Harness,
) {
    let mut s = h.open();
    let (t0, window) = (1_000_000, 60_000);
    for i in 0..3 {
        assert_eq!(
            s.login_blocked_until(&ANN, t0 + i * 1_000, 3, window)
                .unwrap(),
            None
        );
        let n = i + 1;
        assert_eq!(
            s.record_login_failure(&ANN, t0 + i * 1_000, window)
                .unwrap(),
            vec![n, n],
            "the failures within the window, this one included"
        );
    }
    // Blocked until the third newest failure (the first) leaves the window; every
    // connection sees it, and one blocked key of several is enough.
    let other = h.open();
    for store in [&*s, &*other] {
        let blocked = |keys: &[&str], now| store.login_blocked_until(keys, now, 3, window).unwrap();
        assert_eq!(blocked(&ANN, t0 + 10_000), Some(t0 + window));
        assert_eq!(
            blocked(&["user:bob", ANN[1]], t0 + 10_000),
            Some(t0 + window)
        );
        assert_eq!(
            blocked(&[ANN[0], "addr:10.0.0.2"], t0 + 10_000),
            Some(t0 + window)
        );
        assert_eq!(blocked(&["user:bob", "addr:10.0.0.2"], t0 + 10_000), None);
        assert_eq!(blocked(&ANN, t0 + window - 1), Some(t0 + window));
        assert_eq!(
            blocked(&ANN, t0 + window),
            None,
            "the first failure has left"
        );
    }
    // The limit is the caller's.
    assert_eq!(
        s.login_blocked_until(&ANN, t0 + 10_000, 4, window).unwrap(),
        None
    );
    assert_eq!(
        s.login_blocked_until(&ANN, t0 + 10_000, 2, window).unwrap(),
        Some(t0 + 1_000 + window),
        "the second newest failure"
    );
    // The latest of several blocked keys decides.
    s.record_login_failure(&[ANN[1]], t0 + 5_000, window)
        .unwrap();
    assert_eq!(
        s.login_blocked_until(&ANN, t0 + 10_000, 3, window).unwrap(),
        Some(t0 + 1_000 + window),
        "the address has a later third newest failure than the user"
    );
    // A success clears its key only.
    s.clear_login_failures(ANN[0]).unwrap();
    assert_eq!(
        other
            .login_blocked_until(&[ANN[0]], t0 + 10_000, 3, window)
            .unwrap(),
        None
    );
    assert!(other
        .login_blocked_until(&[ANN[1]], t0 + 10_000, 3, window)
        .unwrap()
        .is_some());
    assert_eq!(
        s.record_login_failure(&[ANN[0]], t0 + 11_000, window)
            .unwrap(),
        vec![1],
        "counting starts again"
    );
    // Keys as long as every backend takes, of any text.
    let long = "k".repeat(crate::MAX_THROTTLE_KEY_BYTES - 2) + "é";
    assert_eq!(long.len(), crate::MAX_THROTTLE_KEY_BYTES);
    for _ in 0..3 {
        s.record_login_failure(&[&long], t0, window).unwrap();
    }
    assert_eq!(
        s.login_blocked_until(&[&long], t0, 3, window).unwrap(),
        Some(t0 + window)
    );
    assert_eq!(s.login_blocked_until(&[], t0, 3, window).unwrap(), None);
}

pub fn failures_older_than_the_window_are_deleted_as_failures_are_recorded(h: &dyn Harness) {
    let mut s = h.open();
    let window = 1_000;
    s.record_login_failure(&["user:old"], 0, window).unwrap();
    // (A longer window here, so this one deletes nothing.)
    s.record_login_failure(&["user:kept"], 4_500, 10 * window)
        .unwrap();
    // Read back with a window long enough to see them, had they been kept.
    let seen =
        |s: &dyn crate::Store, key: &str| s.login_blocked_until(&[key], 5_000, 1, 100_000).unwrap();
    assert_eq!(seen(&*s, "user:old"), Some(100_000));
    // Recording a failure of any key at 5 000 deletes what is older than its window.
    s.record_login_failure(&["user:new"], 5_000, window)
        .unwrap();
    assert_eq!(seen(&*s, "user:old"), None, "deleted");
    assert_eq!(
        seen(&*s, "user:kept"),
        Some(104_500),
        "still within the window"
    );
    assert_eq!(seen(&*s, "user:new"), Some(105_000));
}

pub fn failures_of_one_key_recorded_at_once_are_all_counted(h: &dyn Harness) {
    const STORES: usize = 6;
    const EACH: i64 = 15;
    let (now, window) = (1_000_000, 900_000);
    // Every store opened first (nothing can fail between them and the barrier).
    let mut stores: Vec<Box<dyn crate::Store>> = (0..STORES).map(|_| h.open()).collect();
    let barrier = std::sync::Barrier::new(STORES);
    let counts: Vec<Vec<i64>> = std::thread::scope(|scope| {
        let runs: Vec<_> = stores
            .iter_mut()
            .enumerate()
            .map(|(i, s)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    let addr = format!("addr:{i}");
                    barrier.wait();
                    (1..=EACH)
                        .map(|j| {
                            let n = s
                                .record_login_failure(&["user:victim", &addr], now, window)
                                .unwrap();
                            assert_eq!(n[1], j, "this store's own key");
                            n[0]
                        })
                        .collect()
                })
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let total = STORES as i64 * EACH;
    for n in counts.iter().flatten() {
        assert!(*n >= 1 && *n <= total, "{counts:?}");
    }
    // Every failure was stored: the next one is number total + 1, and the key is
    // blocked at exactly `total` allowed failures, not at one more.
    let mut s = h.open();
    let limit = u32::try_from(total).unwrap();
    assert_eq!(
        s.login_blocked_until(&["user:victim"], now, limit, window)
            .unwrap(),
        Some(now + window)
    );
    assert_eq!(
        s.login_blocked_until(&["user:victim"], now, limit + 1, window)
            .unwrap(),
        None
    );
    assert_eq!(
        s.record_login_failure(&["user:victim"], now, window)
            .unwrap(),
        vec![total + 1]
    );
    for i in 0..STORES {
        assert_eq!(
            s.record_login_failure(&[&format!("addr:{i}")], now, window)
                .unwrap(),
            vec![EACH + 1]
        );
    }
}
