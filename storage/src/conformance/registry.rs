//! The worker registry.

use super::Harness;
use crate::{LibraryFingerprint, Restoration, WorkerMetadata};

pub fn workers_are_registered_updated_and_removed(h: &dyn Harness) {
    let mut s = h.open();
    let meta = |title: &'static str| WorkerMetadata {
        scope: "s",
        title,
        description: "d",
        icon: "gear",
        version: "1.0",
        manifest: "{}",
    };
    let lib = |sha: &str| LibraryFingerprint {
        path: "/p/lib.so".into(),
        size: 10,
        mtime_ns: 5,
        sha256: sha.into(),
    };
    s.insert_workers(&[
        ("b".into(), meta("B"), lib("01"), false),
        ("a".into(), meta("A"), lib("01"), true),
    ])
    .unwrap();
    let all = s.list_workers().unwrap();
    assert_eq!(
        all.iter()
            .map(|w| w.identifier.as_str())
            .collect::<Vec<_>>(),
        ["b", "a"],
        "display order is registration order"
    );
    // A second registration of the same identifier fails as a whole.
    assert!(s
        .insert_workers(&[
            ("c".into(), meta("C"), lib("01"), false),
            ("a".into(), meta("A"), lib("01"), false)
        ])
        .is_err());
    assert!(s.get_worker("c").unwrap().is_none());
    let a = s.get_worker("a").unwrap().unwrap();
    assert!(a.active && a.settings == "{}" && a.library.sha256 == "01");
    assert!(s.set_worker_settings("a", r#"{"k":1}"#).unwrap());
    assert!(s
        .update_worker_library("a", &meta("A2"), &lib("02"))
        .unwrap());
    s.touch_library("/p/lib.so", 11, 6).unwrap();
    let a = s.get_worker("a").unwrap().unwrap();
    assert_eq!((a.title.as_str(), a.library.sha256.as_str()), ("A2", "02"));
    assert_eq!((a.library.size, a.library.mtime_ns), (11, 6));
    assert_eq!(a.settings, r#"{"k":1}"#, "operator settings are kept");
    assert!(a.active);
    assert!(s.set_worker_active("a", false).unwrap());
    assert!(!s.get_worker("a").unwrap().unwrap().active);
    assert!(!s.set_worker_active("ghost", true).unwrap());
    assert!(!s.set_worker_settings("ghost", "{}").unwrap());
    assert_eq!(s.count_active_workers().unwrap(), 0);
    assert!(s.delete_worker("a").unwrap());
    assert!(!s.delete_worker("a").unwrap());
    assert_eq!(s.list_workers().unwrap().len(), 1);
}

pub fn a_worker_held_for_review_stays_inactive_until_activated(h: &dyn Harness) {
    let mut s = h.open();
    let meta = |title: &'static str| WorkerMetadata {
        scope: "s",
        title,
        description: "d",
        icon: "gear",
        version: "1.0",
        manifest: "{}",
    };
    let lib = |path: &str, sha: &str| LibraryFingerprint {
        path: path.into(),
        size: 10,
        mtime_ns: 5,
        sha256: sha.into(),
    };
    s.insert_workers(&[("a".into(), meta("A"), lib("/p/old.so", "01"), true)])
        .unwrap();
    assert!(s.set_worker_settings("a", r#"{"k":1}"#).unwrap());
    assert_eq!(s.get_worker("a").unwrap().unwrap().inactive_reason, None);

    let reason = "its library was replaced by another file";
    assert!(s
        .update_worker_library_held("a", &meta("A2"), &lib("/p/new.so", "02"), reason)
        .unwrap());
    let a = s.get_worker("a").unwrap().unwrap();
    assert!(!a.active, "held workers are inactive");
    assert_eq!(a.inactive_reason.as_deref(), Some(reason));
    assert_eq!(
        (
            a.title.as_str(),
            a.library.path.as_str(),
            a.library.sha256.as_str()
        ),
        ("A2", "/p/new.so", "02"),
        "the registration follows the new file"
    );
    assert_eq!(a.settings, r#"{"k":1}"#, "operator settings are kept");
    assert_eq!(s.count_active_workers().unwrap(), 0);
    assert_eq!(
        s.list_workers().unwrap()[0].inactive_reason.as_deref(),
        Some(reason),
        "listed with its reason"
    );

    // Deactivating again keeps the reason; activating clears it.
    assert!(s.set_worker_active("a", false).unwrap());
    assert_eq!(
        s.get_worker("a")
            .unwrap()
            .unwrap()
            .inactive_reason
            .as_deref(),
        Some(reason)
    );
    assert!(s.set_worker_active("a", true).unwrap());
    let a = s.get_worker("a").unwrap().unwrap();
    assert!(a.active);
    assert_eq!(a.inactive_reason, None);
    assert!(s.set_worker_active("a", false).unwrap());
    assert_eq!(s.get_worker("a").unwrap().unwrap().inactive_reason, None);

    assert!(!s
        .update_worker_library_held("ghost", &meta("G"), &lib("/p/g.so", "03"), reason)
        .unwrap());
}

pub fn a_removed_worker_registered_again_gets_back_what_it_had(h: &dyn Harness) {
    let mut s = h.open();
    let meta = WorkerMetadata {
        scope: "s",
        title: "T",
        description: "d",
        icon: "gear",
        version: "1.0",
        manifest: "{}",
    };
    let lib = |sha: &str| LibraryFingerprint {
        path: "/p/lib.so".into(),
        size: 10,
        mtime_ns: 5,
        sha256: sha.into(),
    };
    s.insert_workers(&[("a".into(), meta.clone(), lib("01"), true)])
        .unwrap();
    s.set_worker_settings("a", r#"{"k":1,"secret":{"sealed":"x"}}"#)
        .unwrap();
    s.set_schedule("a", "S", r#"{"d":2}"#, Some(500), 1)
        .unwrap();
    assert!(s.pause_schedule("a", 2).unwrap());
    assert!(s.get_removed_worker("a").unwrap().is_none());

    // The removal remembers settings, state, library and schedule in one step.
    assert!(s.delete_worker("a").unwrap());
    assert!(s.get_worker("a").unwrap().is_none());
    assert!(s.get_schedule("a").unwrap().is_none());
    let kept = s.get_removed_worker("a").unwrap().expect("remembered");
    assert_eq!(
        (
            kept.library_sha256.as_str(),
            kept.settings.as_str(),
            kept.active
        ),
        ("01", r#"{"k":1,"secret":{"sealed":"x"}}"#, true)
    );
    let schedule = kept.schedule.clone().expect("the schedule is remembered");
    assert_eq!(
        (
            schedule.spec.as_str(),
            schedule.data.as_str(),
            schedule.paused
        ),
        ("S", r#"{"d":2}"#, true)
    );
    assert!(kept.removed_at > 0);

    // Registering the identifier again hands what was kept to the host's decision,
    // stores that decision and the schedule, and forgets the memory: all at once.
    let mut seen = Vec::new();
    let back = s
        .register_workers(
            &[
                ("a".into(), meta.clone(), lib("01"), false),
                ("b".into(), meta.clone(), lib("01"), false),
            ],
            &mut |r, l| {
                seen.push((r.identifier.clone(), l.sha256.clone()));
                Restoration {
                    settings: r#"{"k":1}"#.into(),
                    active: true,
                    inactive_reason: None,
                }
            },
        )
        .unwrap();
    assert_eq!(
        seen,
        [("a".to_owned(), "01".to_owned())],
        "only remembered ones"
    );
    assert_eq!(back, [kept]);
    let a = s.get_worker("a").unwrap().unwrap();
    assert_eq!((a.settings.as_str(), a.active), (r#"{"k":1}"#, true));
    assert_eq!(s.get_schedule("a").unwrap(), Some(schedule));
    assert_eq!(s.get_worker("b").unwrap().unwrap().settings, "{}");
    assert!(s.get_removed_worker("a").unwrap().is_none(), "used once");

    // Without a host's decision: active only when the same library comes back.
    s.set_schedule("a", "S2", "{}", Some(700), 3).unwrap();
    assert!(s.delete_worker("a").unwrap());
    assert!(s.delete_worker("b").unwrap());
    s.insert_workers(&[
        ("a".into(), meta.clone(), lib("02"), true),
        ("b".into(), meta.clone(), lib("01"), false),
    ])
    .unwrap();
    let a = s.get_worker("a").unwrap().unwrap();
    assert_eq!(a.settings, r#"{"k":1}"#);
    assert!(!a.active && a.inactive_reason.is_some(), "another library");
    assert_eq!(s.get_schedule("a").unwrap().unwrap().spec, "S2");
    assert!(s.get_schedule("b").unwrap().is_none());
    assert!(
        !s.get_worker("b").unwrap().unwrap().active,
        "b was inactive"
    );

    // A failed registration keeps the memory.
    assert!(s.delete_worker("a").unwrap());
    assert!(s
        .insert_workers(&[
            ("a".into(), meta.clone(), lib("01"), true),
            ("b".into(), meta.clone(), lib("01"), true),
        ])
        .is_err());
    assert!(s.get_worker("a").unwrap().is_none());
    assert!(s.get_removed_worker("a").unwrap().is_some());
    // A second removal replaces the first memory.
    s.insert_workers(&[("a".into(), meta.clone(), lib("03"), false)])
        .unwrap();
    s.set_worker_settings("a", r#"{"k":3}"#).unwrap();
    assert!(s.delete_worker("a").unwrap());
    let again = s.get_removed_worker("a").unwrap().unwrap();
    assert_eq!(
        (again.library_sha256.as_str(), again.settings.as_str()),
        ("03", r#"{"k":3}"#)
    );
    assert!(
        again.schedule.is_some(),
        "the restored schedule was kept again"
    );
    assert!(!s.delete_worker("ghost").unwrap());
    assert!(s.get_removed_worker("ghost").unwrap().is_none());
}
