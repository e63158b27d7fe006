//! Operations on the store as a whole: its integrity check, and replacing the settings
//! of several workers at once.

use super::{register, Harness};
use crate::SettingsSwap;

pub fn a_sound_store_passes_its_integrity_check(h: &dyn Harness) {
    let mut s = h.open();
    assert_eq!(s.check_integrity().unwrap(), Vec::<String>::new());
    register(&mut *s, &["a", "b"], true);
    super::insert(&mut *s, &super::task("a", 1), 50);
    assert_eq!(
        s.check_integrity().unwrap(),
        Vec::<String>::new(),
        "a store in use is sound"
    );
}

pub fn settings_swaps_apply_together_or_not_at_all(h: &dyn Harness) {
    let mut s = h.open();
    register(&mut *s, &["a", "b", "c"], true);
    assert!(s.set_worker_settings("a", r#"{"k":"a1"}"#).unwrap());
    assert!(s.set_worker_settings("b", r#"{"k":"b1"}"#).unwrap());
    let swap = |id: &str, expected: &str, settings: &str| SettingsSwap {
        identifier: id.into(),
        expected: expected.into(),
        settings: settings.into(),
    };
    let settings = |s: &dyn crate::Store, id: &str| s.get_worker(id).unwrap().unwrap().settings;

    // One worker's settings changed since they were read: nothing is stored.
    let stale = [
        swap("a", r#"{"k":"a1"}"#, r#"{"k":"a2"}"#),
        swap("b", r#"{"k":"old"}"#, r#"{"k":"b2"}"#),
    ];
    assert!(!s.swap_worker_settings(&stale).unwrap());
    assert_eq!(
        settings(&*s, "a"),
        r#"{"k":"a1"}"#,
        "the first swap was undone"
    );
    assert_eq!(settings(&*s, "b"), r#"{"k":"b1"}"#);

    // A worker that is gone: nothing is stored.
    let gone = [
        swap("a", r#"{"k":"a1"}"#, r#"{"k":"a2"}"#),
        swap("ghost", "{}", r#"{"k":"g"}"#),
    ];
    assert!(!s.swap_worker_settings(&gone).unwrap());
    assert_eq!(settings(&*s, "a"), r#"{"k":"a1"}"#);

    // All current: all are stored, seen by every connection.
    let all = [
        swap("a", r#"{"k":"a1"}"#, r#"{"k":"a2"}"#),
        swap("b", r#"{"k":"b1"}"#, r#"{"k":"b2"}"#),
        swap("c", "{}", r#"{"k":"c2"}"#),
    ];
    assert!(s.swap_worker_settings(&all).unwrap());
    let other = h.open();
    for (id, want) in [("a", "a2"), ("b", "b2"), ("c", "c2")] {
        assert_eq!(settings(&*other, id), format!(r#"{{"k":"{want}"}}"#));
    }
    assert!(
        s.swap_worker_settings(&[]).unwrap(),
        "nothing to do is done"
    );
}
