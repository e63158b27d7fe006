//! A store in a temporary home with registered workers, for the domain layer's tests.

use std::path::PathBuf;
use std::time::Duration;

use stask_storage::{LibraryFingerprint, Store, WakeListener, WorkerMetadata};

use crate::home::Home;

/// Worker `w`: actions `noop` and `sync` (scheduled), settings `greeting` (text,
/// default "Hello") and `api_key` (secret).
pub const MANIFEST: &str = r#"{"identifier":"w","title":"W","actions":[
    {"name":"noop","title":"No-op"},
    {"name":"sync","title":"Sync","scheduled":true}],
    "settings":[
    {"key":"greeting","kind":"string","default":"Hello"},
    {"key":"api_key","kind":"string","secret":true}]}"#;

/// A worker with nothing to schedule.
pub const PLAIN_MANIFEST: &str =
    r#"{"identifier":"p","title":"P","actions":[{"name":"go","title":"Go"}]}"#;

/// A temporary home with active worker `w` whose library file exists.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub store: Box<dyn Store>,
}

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::init(&dir.path().join("home"), None).unwrap();
        let store = home.store().unwrap();
        let mut env = Env { dir, store };
        env.worker("w", MANIFEST, true, true);
        env
    }

    /// Registers worker `id` with `manifest`; its library file exists when `present`.
    pub fn worker(&mut self, id: &str, manifest: &str, active: bool, present: bool) -> PathBuf {
        let lib = self.dir.path().join(format!("lib{id}.so"));
        if present {
            std::fs::write(&lib, b"not really a library").unwrap();
        }
        let meta = WorkerMetadata {
            scope: "",
            title: id,
            description: "",
            icon: "gear",
            version: "1.0",
            manifest,
        };
        let fingerprint = LibraryFingerprint {
            path: lib.display().to_string(),
            size: 1,
            mtime_ns: 1,
            sha256: "00".into(),
        };
        self.store
            .insert_workers(&[(id.into(), meta, fingerprint, active)])
            .unwrap();
        lib
    }

    /// Starts listening for wake-ups, as a service does.
    pub fn listen(&self) -> Box<dyn WakeListener> {
        self.store.listen().unwrap()
    }
}

/// Whether a wake-up arrives soon.
pub fn woken(l: &dyn WakeListener) -> bool {
    l.wait(Duration::from_secs(2))
}

/// Whether no wake-up arrives for a moment.
pub fn quiet(l: &dyn WakeListener) -> bool {
    !l.wait(Duration::from_millis(50))
}

/// The [`crate::problem::Problem`] of a failed operation.
pub fn problem<T: std::fmt::Debug>(r: anyhow::Result<T>) -> crate::problem::Problem {
    let e = r.expect_err("should fail");
    crate::problem::Problem::find(&e)
        .unwrap_or_else(|| panic!("not a problem: {e:#}"))
        .clone()
}
