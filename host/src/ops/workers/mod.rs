//! Registered workers: finding one, activating and deactivating, keeping the registry
//! in step with the plugins directory ([`crate::discovery`] does the work), and
//! changing settings ([`settings`]).

pub mod settings;

use std::path::Path;

use anyhow::Result;
use serde_json::{Map, Value};
use stask_storage::{Store, WorkerRecord};

use crate::discovery::{self, CleanReport, DiscoverReport, RescanReport};
use crate::problem::Problem;

/// The error for an unknown worker identifier.
pub fn not_found(id: &str) -> anyhow::Error {
    Problem::not_found(
        "worker_not_found",
        format!("no worker '{id}' is registered"),
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
/// active at once when `activate` (which wakes the services).
pub fn discover(
    store: &mut dyn Store,
    exe: &Path,
    plugins_dir: &Path,
    activate: bool,
) -> Result<DiscoverReport> {
    let report = discovery::discover(store, exe, plugins_dir, activate)?;
    if activate && !report.registered.is_empty() {
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
    },
    /// API form: a JSON merge patch (`null` removes a key).
    Patch(&'a Map<String, Value>),
}

/// Changes worker `id`'s settings after validating the result against its schema
/// (nothing is stored when any part is wrong); returns the worker as it is now.
pub fn change_settings(
    store: &dyn Store,
    id: &str,
    change: &SettingsChange<'_>,
) -> Result<WorkerRecord> {
    let w = find(store, id)?;
    let updated = match change {
        SettingsChange::Assignments {
            assignments,
            json_file,
            unset,
        } => settings::update(&w, assignments, *json_file, unset)?,
        SettingsChange::Patch(patch) => settings::apply_patch(&w, patch)?,
    };
    if !store.set_worker_settings(id, &updated)? {
        return Err(not_found(id));
    }
    find(store, id)
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
        let env = Env::new();
        let patch = json!({ "greeting": "Hi", "api_key": "k" });
        let w = change_settings(
            &*env.store,
            "w",
            &SettingsChange::Patch(patch.as_object().unwrap()),
        )
        .unwrap();
        let stored: serde_json::Value = serde_json::from_str(&w.settings).unwrap();
        assert_eq!(stored, patch);

        let assignments = vec!["greeting=Hey".to_owned()];
        let unset = vec!["api_key".to_owned()];
        let change = SettingsChange::Assignments {
            assignments: &assignments,
            json_file: None,
            unset: &unset,
        };
        let w = change_settings(&*env.store, "w", &change).unwrap();
        assert_eq!(w.settings, r#"{"greeting":"Hey"}"#);

        let bad = json!({ "greeting": 5 });
        let p = problem(change_settings(
            &*env.store,
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
        };
        assert!(change_settings(&*env.store, "w", &change).is_err());
        assert_eq!(
            find(&*env.store, "w").unwrap().settings,
            r#"{"greeting":"Hey"}"#
        );
        let p = problem(change_settings(
            &*env.store,
            "ghost",
            &SettingsChange::Patch(&Map::new()),
        ));
        assert_eq!(p.code, "worker_not_found");
    }
}
