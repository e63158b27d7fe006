//! Users, sessions and API tokens.

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
