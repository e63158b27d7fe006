//! The worker registry.

use super::Harness;
use crate::{LibraryFingerprint, WorkerMetadata};

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
