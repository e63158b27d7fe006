//! How a registered worker is shown to operators and scripts.

use serde::Serialize;
use serde_json::{Map, Value};
use stask_plugin_api::WorkerManifest;
use stask_storage::WorkerRecord;

/// A worker as `workers list --json` / `workers show --json` print it. Setting values
/// of secret keys are never included, only whether they are set.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// Id.
    pub identifier: String,
    /// Scope.
    pub scope: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Icon name.
    pub icon: String,
    /// Worker version.
    pub version: String,
    /// Whether tasks may run.
    pub active: bool,
    /// Library file and fingerprint.
    pub library: LibraryView,
    /// Declared actions.
    pub actions: Vec<stask_plugin_api::ActionSpec>,
    /// Settings schema.
    pub settings_schema: Vec<stask_plugin_api::SettingSpec>,
    /// Current settings, secrets replaced by `{"secret": true, "set": bool}`.
    pub settings: Map<String, Value>,
    /// Registered at (ms since epoch).
    pub created_at: i64,
    /// Last changed at (ms since epoch).
    pub updated_at: i64,
}

/// Library details.
#[derive(Debug, Serialize)]
pub struct LibraryView {
    /// File path.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256.
    pub sha256: String,
    /// Whether the file still exists.
    pub exists: bool,
}

impl WorkerView {
    /// Builds the view; the stored manifest was validated at registration.
    pub fn new(w: &WorkerRecord) -> Self {
        let manifest: Option<WorkerManifest> = serde_json::from_str(&w.manifest).ok();
        let (actions, schema) = manifest
            .map(|m| (m.actions, m.settings))
            .unwrap_or_default();
        let stored: Map<String, Value> = serde_json::from_str(&w.settings).unwrap_or_default();
        let mut settings = Map::new();
        for spec in &schema {
            let value = stored.get(&spec.key).or(spec.default.as_ref());
            let shown = if spec.secret {
                serde_json::json!({ "secret": true, "set": stored.contains_key(&spec.key) })
            } else {
                value.cloned().unwrap_or(Value::Null)
            };
            settings.insert(spec.key.clone(), shown);
        }
        if let Some(t) = stored.get(stask_plugin_api::manifest::TIMEOUT_SETTING) {
            settings.insert(
                stask_plugin_api::manifest::TIMEOUT_SETTING.to_owned(),
                t.clone(),
            );
        }
        WorkerView {
            identifier: w.identifier.clone(),
            scope: w.scope.clone(),
            title: w.title.clone(),
            description: w.description.clone(),
            icon: w.icon.clone(),
            version: w.version.clone(),
            active: w.active,
            library: LibraryView {
                path: w.library.path.clone(),
                size: w.library.size,
                sha256: w.library.sha256.clone(),
                exists: std::path::Path::new(&w.library.path).exists(),
            },
            actions,
            settings_schema: schema,
            settings,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}
