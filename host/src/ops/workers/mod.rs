//! Registered workers: finding one, activating and deactivating, keeping the registry
//! in step with the plugins directory ([`crate::discovery`] does the work), and
//! changing settings ([`settings`]).

pub mod settings;

use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value};
use stask_plugin_api::WorkerManifest;
use stask_storage::{SettingsSwap, Store, WorkerRecord};

use crate::discovery::{self, CleanReport, DiscoverReport, RescanReport};
use crate::problem::{shown_input, Problem};

/// The error for an unknown worker identifier.
pub fn not_found(id: &str) -> anyhow::Error {
    Problem::not_found(
        "worker_not_found",
        format!("no worker '{}' is registered", shown_input(id)),
    )
    .hint("see `stask workers list`; new libraries are registered by `stask workers discover`")
    .into()
}

/// Reads a worker, failing with [`not_found`] when it is not registered.
pub fn find(store: &dyn Store, id: &str) -> Result<WorkerRecord> {
    store.get_worker(id)?.ok_or_else(|| not_found(id))
}

/// Activates or deactivates a worker. A worker whose library file is gone cannot be
/// activated. Activation wakes the services (its pending tasks may now run).
pub fn set_active(store: &dyn Store, id: &str, active: bool) -> Result<()> {
    if active {
        let w = find(store, id)?;
        if !Path::new(&w.library.path).exists() {
            return Err(Problem::conflict(
                "library_missing",
                format!(
                    "worker '{id}' cannot be activated: its library '{}' no longer exists (restore it, or remove the worker)",
                    w.library.path
                ),
            )
            .hint("remove workers whose library is gone with `stask workers clean-orphaned`")
            .into());
        }
    }
    if !store.set_worker_active(id, active)? {
        return Err(not_found(id));
    }
    if active {
        store.notify_work();
    }
    Ok(())
}

/// Registers the workers of new libraries in `plugins_dir` (probed through `exe`),
/// active at once when `activate` (which wakes the services). Workers removed before
/// come back with what they had ([`DiscoverReport::restored`]); one that comes back
/// active wakes the services too.
pub fn discover(
    store: &mut dyn Store,
    exe: &Path,
    plugins_dir: &Path,
    activate: bool,
) -> Result<DiscoverReport> {
    let report = discovery::discover(store, exe, plugins_dir, activate)?;
    let restored_active = report.restored.iter().any(|r| r.worker.active);
    if (activate && !report.registered.is_empty()) || restored_active {
        store.notify_work();
    }
    Ok(report)
}

/// Refreshes registered workers whose library changed.
pub fn rescan(store: &mut dyn Store, exe: &Path, plugins_dir: &Path) -> Result<RescanReport> {
    discovery::rescan(store, exe, plugins_dir)
}

/// Removes workers whose library is gone (their tasks stay).
pub fn clean_orphaned(store: &mut dyn Store) -> Result<CleanReport> {
    discovery::clean_orphaned(store)
}

/// A change of a worker's settings, in the form a front-end received it.
#[derive(Debug, Clone)]
pub enum SettingsChange<'a> {
    /// Command-line form: a JSON file merged first, then `KEY=VALUE` pairs read as the
    /// schema's types, then keys removed.
    Assignments {
        /// `KEY=VALUE` pairs.
        assignments: &'a [String],
        /// A file holding a JSON object.
        json_file: Option<&'a Path>,
        /// Keys to remove (their defaults apply again).
        unset: &'a [String],
        /// A secret key and its value, read from a prompt or standard input (never
        /// from the command line).
        secret: Option<(&'a str, &'a str)>,
    },
    /// API form: a JSON merge patch (`null` removes a key).
    Patch(&'a Map<String, Value>),
}

/// Changes worker `id`'s settings after validating the result against its schema
/// (nothing is stored when any part is wrong); returns the worker as it is now.
///
/// Secret values are encrypted before they are stored ([`crate::secrets::seal_settings`],
/// which creates the key file for a home that has none), together with any an older
/// stask left in plaintext. The change is stored only if the settings it started from
/// are still the stored ones (a concurrent change or key rotation is never overwritten);
/// otherwise it is made again on what is stored now.
pub fn change_settings(
    store: &mut dyn Store,
    id: &str,
    change: &SettingsChange<'_>,
) -> Result<WorkerRecord> {
    for _ in 0..5 {
        let w = find(store, id)?;
        let mut updated = match change {
            SettingsChange::Assignments {
                assignments,
                json_file,
                unset,
                secret,
            } => settings::update(&w, assignments, *json_file, unset, *secret)?,
            SettingsChange::Patch(patch) => settings::apply_patch(&w, patch)?,
        };
        let manifest: WorkerManifest = serde_json::from_str(&w.manifest)?;
        crate::secrets::seal_settings(&*store, id, &manifest, &mut updated)?;
        let swap = SettingsSwap {
            identifier: id.to_owned(),
            expected: w.settings.clone(),
            settings: Value::Object(updated).to_string(),
        };
        if store.swap_worker_settings(&[swap])? {
            let w = find(store, id)?;
            // The `limits` setting replaces the manifest's limits: the claim must
            // enforce what is stored now.
            crate::limits::sync_worker(store, &w)?;
            return Ok(w);
        }
    }
    find(store, id)?;
    Err(Problem::conflict(
        "settings_changed",
        format!("the settings of worker '{id}' keep changing while this change is made; nothing was stored, try again"),
    )
    .into())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::ops::testing::{problem, quiet, woken, Env, PLAIN_MANIFEST};
    use crate::problem::ProblemKind;

    #[test]
    fn activation_wakes_the_services_and_needs_the_library() {
        let mut env = Env::new();
        let wake = env.listen();
        set_active(&*env.store, "w", false).unwrap();
        assert!(quiet(&*wake), "deactivating makes no work");
        set_active(&*env.store, "w", true).unwrap();
        assert!(woken(&*wake));
        assert!(find(&*env.store, "w").unwrap().active);

        env.worker("gone", PLAIN_MANIFEST, false, false);
        let p = problem(set_active(&*env.store, "gone", true));
        assert_eq!((p.kind, p.code), (ProblemKind::Conflict, "library_missing"));
        assert!(!p.message.contains("stask "), "{}", p.message);
        assert!(p.hint.unwrap().contains("stask workers clean-orphaned"));
        set_active(&*env.store, "gone", false).unwrap();

        let p = problem(set_active(&*env.store, "ghost", false));
        assert_eq!(
            (p.kind, p.code, p.message.as_str()),
            (
                ProblemKind::NotFound,
                "worker_not_found",
                "no worker 'ghost' is registered"
            )
        );
        assert!(p.hint.unwrap().contains("stask workers discover"));
    }

    #[test]
    fn settings_change_in_either_form_and_store_nothing_when_wrong() {
        let mut env = Env::new();
        let key_file = env.dir.path().join("home").join(crate::secrets::KEY_FILE);
        std::fs::remove_file(&key_file).ok();
        let patch = json!({ "greeting": "Hi", "api_key": "k" });
        let w = change_settings(
            &mut *env.store,
            "w",
            &SettingsChange::Patch(patch.as_object().unwrap()),
        )
        .unwrap();
        let stored: serde_json::Value = serde_json::from_str(&w.settings).unwrap();
        assert_eq!(stored["greeting"], "Hi");
        assert!(
            crate::secrets::is_sealed(&stored["api_key"]),
            "the secret is stored encrypted: {stored}"
        );
        assert!(
            key_file.exists(),
            "a home without a key gets one when first needed"
        );

        let assignments = vec!["greeting=Hey".to_owned()];
        let unset = vec!["api_key".to_owned()];
        let change = SettingsChange::Assignments {
            assignments: &assignments,
            json_file: None,
            unset: &unset,
            secret: None,
        };
        let w = change_settings(&mut *env.store, "w", &change).unwrap();
        assert_eq!(w.settings, r#"{"greeting":"Hey"}"#);

        let bad = json!({ "greeting": 5 });
        let p = problem(change_settings(
            &mut *env.store,
            "w",
            &SettingsChange::Patch(bad.as_object().unwrap()),
        ));
        assert_eq!(
            (p.field.as_deref(), p.code),
            (Some("greeting"), "invalid_setting")
        );
        let unknown = vec!["colour=red".to_owned()];
        let change = SettingsChange::Assignments {
            assignments: &unknown,
            json_file: None,
            unset: &[],
            secret: None,
        };
        assert!(change_settings(&mut *env.store, "w", &change).is_err());
        assert_eq!(
            find(&*env.store, "w").unwrap().settings,
            r#"{"greeting":"Hey"}"#
        );
        let p = problem(change_settings(
            &mut *env.store,
            "ghost",
            &SettingsChange::Patch(&Map::new()),
        ));
        assert_eq!(p.code, "worker_not_found");
    }

    #[test]
    fn secrets_come_apart_from_the_command_line_and_keep_their_key() {
        let mut env = Env::new();
        let on_line = vec!["api_key=k".to_owned()];
        let change = SettingsChange::Assignments {
            assignments: &on_line,
            json_file: None,
            unset: &[],
            secret: None,
        };
        let p = problem(change_settings(&mut *env.store, "w", &change));
        assert_eq!(
            (p.field.as_deref(), p.code),
            (Some("api_key"), "secret_on_command_line")
        );
        assert!(p.hint.unwrap().contains("--secret api_key"));
        assert!(!p.message.contains("=k"), "{}", p.message);

        let secret = |key, value| SettingsChange::Assignments {
            assignments: &[],
            json_file: None,
            unset: &[],
            secret: Some((key, value)),
        };
        let w = change_settings(&mut *env.store, "w", &secret("api_key", "s3cr3t")).unwrap();
        assert!(!w.settings.contains("s3cr3t"), "{}", w.settings);
        let p = problem(change_settings(
            &mut *env.store,
            "w",
            &secret("greeting", "x"),
        ));
        assert_eq!(p.code, "not_secret");

        // Changing another setting keeps the encrypted value as it is, without a key.
        let home = env.dir.path().join("home");
        let key_file = home.join(crate::secrets::KEY_FILE);
        let saved = std::fs::read(&key_file).unwrap();
        std::fs::remove_file(&key_file).unwrap();
        let before: serde_json::Value = serde_json::from_str(&w.settings).unwrap();
        let greeting = vec!["greeting=Yo".to_owned()];
        let change = SettingsChange::Assignments {
            assignments: &greeting,
            json_file: None,
            unset: &[],
            secret: None,
        };
        let w = change_settings(&mut *env.store, "w", &change).unwrap();
        let after: serde_json::Value = serde_json::from_str(&w.settings).unwrap();
        assert_eq!(after["api_key"], before["api_key"]);
        // A new secret with the key gone: refused, saying what to do; no key is made.
        let p = problem(change_settings(
            &mut *env.store,
            "w",
            &secret("api_key", "new"),
        ));
        assert_eq!(p.code, "secret_key_missing");
        assert!(p.message.contains("restore"), "{}", p.message);
        assert!(!key_file.exists());
        std::fs::write(&key_file, saved).unwrap();
        let w = change_settings(&mut *env.store, "w", &secret("api_key", "new")).unwrap();
        let now: serde_json::Value = serde_json::from_str(&w.settings).unwrap();
        assert_eq!(
            crate::secrets::sealed_key_id(&now["api_key"]),
            crate::secrets::sealed_key_id(&before["api_key"]),
            "the same key"
        );
    }
}
