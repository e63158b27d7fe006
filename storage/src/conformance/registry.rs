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
