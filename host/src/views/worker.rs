//! How a registered worker is shown to operators and scripts: [`WorkerView`] (`workers
//! list / show --json`), [`WorkerDetails`] (with its schedule and, in the API, task
//! counts), [`WorkerSummary`] (the API's worker list) and [`SettingsView`]. Setting
//! values of secret keys are never included, only whether they are set.

use std::collections::HashMap;

use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Map, Value};
use stask_plugin_api::{ActionSpec, SettingSpec, WorkerManifest};
use stask_storage::{Store, WorkerRecord};

use super::schedule::{ScheduleSummary, ScheduleView};
use super::StatusCountsView;

/// A worker as `workers list --json` / `workers show --json` print it.
#[derive(Debug, Clone, Serialize)]
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
    /// Why stask made it inactive until an operator activates it (its library was
    /// replaced by a different file); `null` when it did not.
    pub inactive_reason: Option<String>,
    /// Library file and fingerprint.
    pub library: LibraryView,
    /// Declared actions.
    pub actions: Vec<ActionSpec>,
    /// Settings schema.
    pub settings_schema: Vec<SettingSpec>,
    /// Current settings, secrets replaced by `{"secret": true, "set": bool}`.
    pub settings: Map<String, Value>,
    /// What its runs may touch beyond the sandbox's baseline.
    pub access: AccessView,
    /// The follow-up tasks its runs may enqueue (`worker` or `worker/action`, as its
    /// manifest declares them); empty: none.
    pub enqueues: Vec<String>,
    /// Its limits per key in force: the `limits` setting when set, else the manifest's
    /// (see `crate::limits`); empty: none.
    pub limits: Vec<stask_plugin_api::LimitSpec>,
    /// Registered at (ms since epoch).
    pub created_at: i64,
    /// Last changed at (ms since epoch).
    pub updated_at: i64,
}

/// What a worker's runs may touch beyond the sandbox's baseline: what it declares, and
/// what applies (each kind replaced by its `sandbox_*` setting when an operator set it).
/// Paths as written (relative ones are relative to the home).
#[derive(Debug, Clone, Serialize)]
pub struct AccessView {
    /// The manifest's declarations.
    pub declared: stask_plugin_api::access::AccessSpec,
    /// Paths its runs may read now.
    pub reads: Vec<String>,
    /// Paths its runs may write now.
    pub writes: Vec<String>,
    /// `host:port` its runs may connect to now.
    pub connects: Vec<String>,
}

impl AccessView {
    fn new(declared: stask_plugin_api::access::AccessSpec, stored: &Map<String, Value>) -> Self {
        use stask_plugin_api::access::{
            split_list, SANDBOX_CONNECTS, SANDBOX_READS, SANDBOX_WRITES,
        };
        let now = |key: &str, declared: &[String]| match stored.get(key).and_then(Value::as_str) {
            Some(text) => split_list(text),
            None => declared.to_vec(),
        };
        AccessView {
            reads: now(SANDBOX_READS, &declared.reads),
            writes: now(SANDBOX_WRITES, &declared.writes),
            connects: now(SANDBOX_CONNECTS, &declared.connects),
            declared,
        }
    }

    /// One line for people: "reads ${import_dir}; writes nothing; connects to nothing".
    pub fn summary(&self) -> String {
        crate::sandbox::access_line(&self.reads, &self.writes, &self.connects)
    }

    /// The same line for what the worker declares.
    pub fn declared_summary(&self) -> String {
        let d = &self.declared;
        crate::sandbox::access_line(&d.reads, &d.writes, &d.connects)
    }
}

/// Library details.
#[derive(Debug, Clone, Serialize)]
pub struct LibraryView {
    /// The file's name.
    pub file: String,
    /// Its path on the host: for the command line only, never sent to API clients
    /// ([`WorkerDetails::without_server_paths`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
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
        let stored: Map<String, Value> = serde_json::from_str(&w.settings).unwrap_or_default();
        let limits = manifest
            .as_ref()
            .map(|m| m.effective_limits(&stored))
            .unwrap_or_default();
        let (actions, schema, declared, enqueues) = manifest
            .map(|m| (m.actions, m.settings, m.access, m.enqueues))
            .unwrap_or_default();
        let access = AccessView::new(declared, &stored);
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
        // Settings every worker accepts (time and resource limits) show when set.
        for host in stask_plugin_api::manifest::HOST_SETTINGS {
            if let Some(v) = stored.get(host.key) {
                settings.insert(host.key.to_owned(), v.clone());
            }
        }
        WorkerView {
            identifier: w.identifier.clone(),
            scope: w.scope.clone(),
            title: w.title.clone(),
            description: w.description.clone(),
            icon: w.icon.clone(),
            version: w.version.clone(),
            active: w.active,
            inactive_reason: w.inactive_reason.clone(),
            library: LibraryView {
                file: std::path::Path::new(&w.library.path)
                    .file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
                path: Some(w.library.path.clone()),
                size: w.library.size,
                sha256: w.library.sha256.clone(),
                exists: std::path::Path::new(&w.library.path).exists(),
            },
            actions,
            settings_schema: schema,
            settings,
            access,
            enqueues,
            limits,
            created_at: w.created_at,
            updated_at: w.updated_at,
        }
    }
}

/// A worker with its schedule (`workers show --json`) and, in the API, its task
/// counts (the OpenAPI schema `Worker`).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerDetails {
    /// The worker.
    #[serde(flatten)]
    pub worker: WorkerView,
    /// Its schedule.
    pub schedule: ScheduleView,
    /// Its tasks in all ([`WorkerDetails::with_counts`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub task_count: Option<i64>,
    /// Its tasks per status ([`WorkerDetails::with_counts`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tasks: Option<StatusCountsView>,
    /// When hosts share the store: the live hosts that hold the worker's library (an
    /// empty list: no host can run its tasks, they wait). `None` on a store no host
    /// registered with (one machine).
    pub hosts: Option<Vec<HostView>>,
}

/// A host able to run a worker.
#[derive(Debug, Clone, Serialize)]
pub struct HostView {
    /// Its id (machine/pid/start).
    pub id: String,
    /// The machine's name.
    pub name: String,
}

/// A host whose lease was renewed within this long counts as live.
const HOST_LIVE_MS: i64 = 60_000;

/// The live hosts holding the library `sha256`; `None` when no host is registered.
fn hosts_holding(store: &dyn Store, sha256: &str) -> anyhow::Result<Option<Vec<HostView>>> {
    let hosts = store.list_hosts()?;
    if hosts.is_empty() {
        return Ok(None);
    }
    let now = stask_storage::now_ms();
    Ok(Some(
        hosts
            .into_iter()
            .filter(|h| h.renewed_at.is_some_and(|r| now - r <= HOST_LIVE_MS))
            .filter(|h| h.libraries.iter().any(|l| l == sha256))
            .map(|h| HostView {
                id: h.id,
                name: h.name,
            })
            .collect(),
    ))
}

impl WorkerDetails {
    /// The worker `w` with its schedule, times shown in `tz`.
    pub fn load(store: &dyn Store, w: &WorkerRecord, tz: Tz) -> anyhow::Result<WorkerDetails> {
        Ok(WorkerDetails {
            worker: WorkerView::new(w),
            schedule: ScheduleView::load(store, &w.identifier, tz)?,
            task_count: None,
            tasks: None,
            hosts: hosts_holding(store, &w.library.sha256)?,
        })
    }

    /// The same without paths on the server (the API's answers: a client needs the
    /// library's name and fingerprint, not where the host keeps it).
    pub fn without_server_paths(mut self) -> WorkerDetails {
        self.worker.library.path = None;
        self
    }

    /// The same with the worker's task counts.
    pub fn with_counts(mut self, store: &dyn Store) -> anyhow::Result<WorkerDetails> {
        let counts = store
            .worker_counts()?
            .into_iter()
            .find(|c| c.worker == self.worker.identifier)
            .map(|c| StatusCountsView::new(&c.counts))
            .unwrap_or_default();
        self.task_count = Some(counts.total());
        self.tasks = Some(counts);
        Ok(self)
    }
}

/// A worker in the API's list (the OpenAPI schema `WorkerSummary`).
#[derive(Debug, Clone, Serialize)]
pub struct WorkerSummary {
    /// Id.
    pub identifier: String,
    /// Icon name.
    pub icon: String,
    /// Title.
    pub title: String,
    /// Scope.
    pub scope: String,
    /// Description.
    pub description: String,
    /// Worker version.
    pub version: String,
    /// Whether tasks may run.
    pub active: bool,
    /// Why stask made it inactive, as in [`WorkerView::inactive_reason`].
    pub inactive_reason: Option<String>,
    /// Whether its library file still exists.
    pub library_exists: bool,
    /// Its tasks in all.
    pub task_count: i64,
    /// Its tasks per status.
    pub tasks: StatusCountsView,
    /// Its schedule, short.
    pub schedule: ScheduleSummary,
    /// What its runs may touch beyond the sandbox's baseline (as [`WorkerView::access`]).
    pub access: AccessView,
}

impl WorkerSummary {
    /// Every registered worker with its counts and schedule, times shown in `tz`.
    pub fn load_all(store: &dyn Store, tz: Tz) -> anyhow::Result<Vec<WorkerSummary>> {
        let counts: HashMap<String, StatusCountsView> = store
            .worker_counts()?
            .into_iter()
            .map(|w| (w.worker.clone(), StatusCountsView::new(&w.counts)))
            .collect();
        let mut out = Vec::new();
        for w in store.list_workers()? {
            let view = WorkerView::new(&w);
            let schedule = ScheduleView::load(store, &w.identifier, tz)?;
            let tasks = counts.get(&w.identifier).copied().unwrap_or_default();
            out.push(WorkerSummary {
                identifier: view.identifier,
                icon: view.icon,
                title: view.title,
                scope: view.scope,
                description: view.description,
                version: view.version,
                active: view.active,
                inactive_reason: view.inactive_reason,
                library_exists: view.library.exists,
                task_count: tasks.total(),
                tasks,
                schedule: ScheduleSummary::new(&schedule),
                access: view.access,
            });
        }
        Ok(out)
    }
}

/// A worker's settings with their schema (the OpenAPI schema `Settings`).
#[derive(Debug, Clone, Serialize)]
pub struct SettingsView {
    /// Worker id.
    pub identifier: String,
    /// Current settings, secrets replaced by `{"secret": true, "set": bool}`.
    pub settings: Map<String, Value>,
    /// Settings schema.
    pub schema: Vec<SettingSpec>,
}

impl SettingsView {
    /// The settings of `w`.
    pub fn new(w: &WorkerRecord) -> SettingsView {
        let view = WorkerView::new(w);
        SettingsView {
            identifier: view.identifier,
            settings: view.settings,
            schema: view.settings_schema,
        }
    }
}
