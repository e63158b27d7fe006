//! Resolving a worker's registration for its runs: the settings JSON a run receives
//! (secrets decrypted, defaults filled in) and its time limit, validated once per change
//! of the registration rather than once per task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use stask_plugin_api::manifest::{
    CPU_SETTING, MEMORY_SETTING, OPEN_FILES_SETTING, TIMEOUT_SETTING,
};
use stask_plugin_api::WorkerManifest;
use stask_storage::ClaimedWorker;

use super::limits::Limits;
use crate::sandbox::{self, Access};
use crate::secrets::EngineKeys;

/// Why a task cannot start.
#[derive(Debug, Clone)]
pub struct StartError {
    /// What to tell the operator.
    pub message: String,
    /// Whether another attempt could succeed (a library being replaced) or not
    /// (invalid settings).
    pub retryable: bool,
}

/// What a worker's runs get.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Settings JSON with defaults filled in (secrets included).
    pub settings: String,
    /// Time limit of a run.
    pub timeout: Duration,
    /// Resource limits of a run (its settings over the host's defaults).
    pub limits: Limits,
    /// What the run may touch beyond the sandbox's baseline.
    pub access: Arc<Access>,
    /// The follow-up tasks its runs may enqueue (the registered manifest's targets).
    pub enqueues: Arc<Vec<String>>,
}

/// What a worker's runs get where its settings say nothing.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// Time limit.
    pub timeout: Duration,
    /// Resource limits.
    pub limits: Limits,
}

/// Resolved registrations by worker, each with the registration it came from.
#[derive(Default)]
pub struct Resolver {
    by_worker: HashMap<String, (Arc<ClaimedWorker>, Result<Resolved, StartError>)>,
    /// The keys that open stored secrets (loaded once when the engine starts).
    keys: EngineKeys,
    /// The home, which relative sandbox paths are relative to.
    home: std::path::PathBuf,
}

impl Resolver {
    /// A resolver that opens stored secrets with `keys`.
    pub fn new(keys: EngineKeys, home: &std::path::Path) -> Resolver {
        Resolver {
            by_worker: HashMap::new(),
            keys,
            home: home.to_path_buf(),
        }
    }

    /// The settings and limits of `name`'s runs under registration `worker`.
    pub fn resolve(
        &mut self,
        name: &str,
        worker: &Arc<ClaimedWorker>,
        defaults: Defaults,
    ) -> Result<Resolved, StartError> {
        if let Some((seen, resolved)) = self.by_worker.get(name) {
            if Arc::ptr_eq(seen, worker) || **seen == **worker {
                return resolved.clone();
            }
        }
        let resolved = resolve_worker(name, worker, defaults, &mut self.keys, &self.home);
        self.by_worker
            .insert(name.to_owned(), (worker.clone(), resolved.clone()));
        resolved
    }
}

/// Opens a worker's stored secrets and validates its settings against its manifest. A
/// secret that does not open (no key, another key, a damaged value) fails the run with
/// the reason and what to do; the stored settings are left as they are.
fn resolve_worker(
    name: &str,
    worker: &ClaimedWorker,
    defaults: Defaults,
    keys: &mut EngineKeys,
    home: &std::path::Path,
) -> Result<Resolved, StartError> {
    let fail = |message: String| StartError {
        message,
        retryable: false,
    };
    let manifest: WorkerManifest = serde_json::from_str(&worker.manifest)
        .map_err(|_| fail(format!("worker '{name}' is no longer registered")))?;
    let mut stored: Map<String, Value> = serde_json::from_str(&worker.settings).map_err(|e| {
        fail(format!(
            "worker '{name}' has unreadable stored settings ({e}); an administrator must set them again"
        ))
    })?;
    keys.open_settings(name, &mut stored).map_err(fail)?;
    let resolved = manifest.resolve_settings(&stored).map_err(|e| {
        fail(format!(
            "worker '{name}' settings are invalid: {e}; an administrator must fix them in the worker's settings"
        ))
    })?;
    let timeout = resolved
        .get(TIMEOUT_SETTING)
        .and_then(Value::as_u64)
        .or(manifest.timeout_secs)
        .map_or(defaults.timeout, Duration::from_secs);
    let setting =
        |key: &str, default: Option<u64>| resolved.get(key).and_then(Value::as_u64).or(default);
    let limits = Limits {
        memory_mb: setting(MEMORY_SETTING, defaults.limits.memory_mb),
        cpu_secs: setting(CPU_SETTING, defaults.limits.cpu_secs),
        open_files: setting(OPEN_FILES_SETTING, defaults.limits.open_files),
    };
    let access = sandbox::resolve(&manifest.access, &resolved, home)
        .map_err(|e| fail(format!("worker '{name}' cannot run: {e:#}")))?;
    Ok(Resolved {
        settings: Value::Object(resolved).to_string(),
        timeout,
        limits,
        access: Arc::new(access),
        enqueues: Arc::new(manifest.enqueues.clone()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn nine() -> Defaults {
        Defaults {
            timeout: Duration::from_secs(9),
            limits: Limits::default(),
        }
    }

    fn worker(settings: &str) -> Arc<ClaimedWorker> {
        Arc::new(ClaimedWorker {
            library_path: "/x.so".into(),
            library_sha256: "ab".into(),
            settings: settings.into(),
            manifest: r#"{"identifier":"w","title":"W","actions":[{"name":"run","title":"Run"}],
                "settings":[{"key":"n","kind":"integer","default":3},
                            {"key":"token","kind":"string","secret":true}]}"#
                .into(),
        })
    }

    #[test]
    fn runs_get_secrets_decrypted_and_a_wrong_key_fails_them_with_the_reason() {
        use crate::secrets::{KeyRing, KeySource, Origin, SecretKey};
        let key = || SecretKey::generate().unwrap();
        let ring = KeyRing::new(vec![key()], Origin::Env);
        let sealed = ring
            .seal("w", "token", &Value::String("s3cr3t".into()))
            .unwrap();
        let stored = serde_json::json!({ "token": sealed }).to_string();
        let none = KeySource::new(None, None);
        let mut r = Resolver::new(EngineKeys::with(none.clone(), Some(ring)), Path::new("/h"));
        let ok = r.resolve("w", &worker(&stored), nine()).unwrap();
        let settings: Value = serde_json::from_str(&ok.settings).unwrap();
        assert_eq!(settings, serde_json::json!({ "token": "s3cr3t", "n": 3 }));

        let other = KeyRing::new(vec![key()], Origin::Env);
        let mut r = Resolver::new(EngineKeys::with(none, Some(other)), Path::new("/h"));
        let e = r.resolve("w", &worker(&stored), nine()).unwrap_err();
        assert!(
            !e.retryable,
            "another attempt with the same key fails the same way"
        );
        assert!(
            e.message.contains("was encrypted with key") && !e.message.contains("s3cr3t"),
            "{}",
            e.message
        );
        let e = Resolver::default()
            .resolve("w", &worker(&stored), nine())
            .unwrap_err();
        assert!(e.message.contains("no secret key"), "{}", e.message);
    }

    #[test]
    fn defaults_fill_in_and_bad_settings_are_final() {
        let mut r = Resolver::default();
        let ok = r.resolve("w", &worker("{}"), nine()).unwrap();
        assert_eq!(ok.timeout, Duration::from_secs(9));
        assert_eq!(ok.limits, Limits::default());
        assert!(ok.settings.contains("\"n\":3"), "{}", ok.settings);
        let bad = r.resolve("w", &worker("not json"), nine());
        let e = bad.unwrap_err();
        assert!(
            !e.retryable && e.message.contains("unreadable"),
            "{}",
            e.message
        );
        let gone = ClaimedWorker::default();
        let e = r.resolve("v", &Arc::new(gone), nine()).unwrap_err();
        assert!(e.message.contains("no longer registered"), "{}", e.message);
    }

    #[test]
    fn limits_come_from_the_settings_over_the_host_defaults() {
        let mut d = nine();
        d.limits = Limits {
            memory_mb: Some(1024),
            cpu_secs: None,
            open_files: Some(1024),
        };
        let ok = Resolver::default()
            .resolve(
                "w",
                &worker(r#"{"max_memory_mb": 128, "max_cpu_secs": 5}"#),
                d,
            )
            .unwrap();
        assert_eq!(
            ok.limits,
            Limits {
                memory_mb: Some(128),
                cpu_secs: Some(5),
                open_files: Some(1024),
            }
        );
    }
}
