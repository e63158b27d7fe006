//! Changing a worker's settings: parse, merge, validate against the manifest's schema.
//!
//! Values of keys the schema marks secret are stored encrypted ([`crate::secrets`]; the
//! worker gets them only when it runs) and never printed or logged: views show only
//! whether they are set, and error messages name keys and types, never values. They are
//! never taken from a command line either: `KEY=VALUE` for a secret key is refused, the
//! value comes from a prompt or standard input (`--secret KEY`).
//!
//! The functions here return the new settings with new secret values still in
//! plaintext; [`super::change_settings`] encrypts them before anything is stored.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde_json::{Map, Value};
use stask_plugin_api::manifest::{
    host_setting, parse_limits, HostKind, SettingKind, LIMITS_SETTING,
};
use stask_plugin_api::WorkerManifest;
use stask_storage::WorkerRecord;

use crate::problem::Problem;
use crate::secrets::is_sealed;

/// Applies a JSON file, `KEY=VALUE` assignments, a secret value read apart from the
/// command line (`secret`: key and text) and removals to a worker's stored settings and
/// returns the new settings, validated against the schema. Nothing is returned (and so
/// nothing stored) when any part is wrong.
pub fn update(
    w: &WorkerRecord,
    assignments: &[String],
    json_file: Option<&Path>,
    unset: &[String],
    secret: Option<(&str, &str)>,
) -> Result<Map<String, Value>> {
    let manifest: WorkerManifest = serde_json::from_str(&w.manifest)?;
    let stored: Map<String, Value> = serde_json::from_str(&w.settings).unwrap_or_default();
    let mut settings = stored.clone();
    if let Some(path) = json_file {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read settings file '{}'", path.display()))?;
        let Value::Object(map) = serde_json::from_str(&text)
            .with_context(|| format!("settings file '{}' is not valid JSON", path.display()))?
        else {
            bail!("settings file '{}' must hold a JSON object", path.display());
        };
        settings.extend(map);
    }
    for a in assignments {
        let Some((key, raw)) = a.split_once('=') else {
            bail!("'{a}' is not KEY=VALUE");
        };
        let key = key.trim();
        if manifest.settings.iter().any(|s| s.key == key && s.secret) {
            return Err(Problem::invalid(
                key,
                "secret_on_command_line",
                format!(
                    "setting '{key}' is secret, so its value is not taken from the command line (other users see command lines in `ps`, and shells keep them in their history); nothing was changed"
                ),
            )
            .hint(format!(
                "pass it with `stask workers settings {} --secret {key}`: typed at a prompt without echo, or piped on standard input",
                w.identifier
            ))
            .into());
        }
        settings.insert(key.to_owned(), parse_value(&manifest, key, raw)?);
    }
    if let Some((key, raw)) = secret {
        let not_secret = host_setting(key).is_some()
            || manifest.settings.iter().any(|s| s.key == key && !s.secret);
        if not_secret {
            return Err(Problem::invalid(
                key,
                "not_secret",
                format!("setting '{key}' is not secret; give it as {key}=VALUE"),
            )
            .into());
        }
        // An unknown key is refused here, naming the known ones.
        settings.insert(key.to_owned(), parse_value(&manifest, key, raw)?);
    }
    for key in unset {
        if settings.remove(key).is_none() {
            bail!("setting '{key}' is not set");
        }
    }
    // Validates types, unknown keys and required keys; the result (with defaults) is
    // not stored, so later default changes in the plugin still apply.
    validate(&manifest, &stored, &settings).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(settings)
}

/// Validates new settings against the schema. Encrypted values kept from the stored
/// settings were checked when they were set: they stand in as a value of their key's
/// type (opening them would need the key for every change).
fn validate(
    manifest: &WorkerManifest,
    stored: &Map<String, Value>,
    settings: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let mut view = settings.clone();
    for (key, value) in view.iter_mut() {
        if !is_sealed(value) || stored.get(key) != Some(value) {
            continue;
        }
        if let Some(spec) = manifest.settings.iter().find(|s| &s.key == key) {
            *value = match spec.kind {
                SettingKind::String => Value::String(String::new()),
                SettingKind::Integer | SettingKind::Number => Value::from(0),
                SettingKind::Boolean => Value::Bool(false),
            };
        }
    }
    let resolved = manifest.resolve_settings(&view)?;
    // Its form was checked by the schema; the actions it names are the worker's
    // business (checked here, on change, and not for every run, so a library that
    // drops an action leaves its tasks running and the limit matching nothing).
    if let Some(v) = resolved.get(LIMITS_SETTING) {
        let limits = parse_limits(v)?;
        manifest
            .check_limits(&limits)
            .map_err(|e| format!("setting '{LIMITS_SETTING}': {e}"))?;
    }
    Ok(resolved)
}

/// Reads a command-line value as the type the schema declares for `key`.
fn parse_value(manifest: &WorkerManifest, key: &str, raw: &str) -> Result<Value> {
    if let Some(host) = host_setting(key).filter(|h| h.kind == HostKind::Limits) {
        // A JSON array on the command line (`limits='[{"concurrency": 1}]'`).
        let value: Value = serde_json::from_str(raw)
            .map_err(|e| anyhow::anyhow!("setting '{key}' must be {} ({e})", host.expected()))?;
        host.check(&value).map_err(|e| anyhow::anyhow!("{e}"))?;
        return Ok(value);
    }
    let kind = if let Some(host) = host_setting(key) {
        host.setting_kind()
    } else {
        match manifest.settings.iter().find(|s| s.key == key) {
            Some(spec) => spec.kind,
            None => {
                let known: Vec<&str> = manifest.settings.iter().map(|s| s.key.as_str()).collect();
                bail!(
                    "worker '{}' has no setting '{}' (known: {})",
                    manifest.identifier,
                    crate::problem::shown_input(key),
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                );
            }
        }
    };
    let bad = || anyhow::anyhow!("setting '{key}' must be {}", kind.with_article());
    Ok(match kind {
        SettingKind::String => Value::String(raw.to_owned()),
        SettingKind::Integer => Value::from(raw.trim().parse::<i64>().map_err(|_| bad())?),
        SettingKind::Number => {
            let n: f64 = raw.trim().parse().map_err(|_| bad())?;
            serde_json::Number::from_f64(n)
                .map(Value::Number)
                .ok_or_else(bad)?
        }
        SettingKind::Boolean => match raw.trim() {
            "true" | "yes" | "1" => Value::Bool(true),
            "false" | "no" | "0" => Value::Bool(false),
            _ => return Err(bad()),
        },
    })
}

/// Applies a JSON merge patch to a worker's stored settings (the HTTP API's form of a
/// change): each key is set to its value, `null` removes the key so its default
/// applies again. Every key is checked against the schema first, so an error names the
/// key ([`Problem`] with the key as its field) and never a value. Returns the new
/// settings; nothing is returned (and so nothing stored) when any part is wrong.
pub fn apply_patch(w: &WorkerRecord, patch: &Map<String, Value>) -> Result<Map<String, Value>> {
    let manifest: WorkerManifest = serde_json::from_str(&w.manifest)?;
    let stored: Map<String, Value> = serde_json::from_str(&w.settings).unwrap_or_default();
    let mut settings = stored.clone();
    for (key, value) in patch {
        if value.is_null() {
            settings.remove(key);
            continue;
        }
        let ok = if let Some(host) = host_setting(key) {
            host.accepts(value)
        } else {
            match manifest.settings.iter().find(|s| &s.key == key) {
                Some(spec) => spec.kind.accepts(value),
                None => {
                    let known: Vec<&str> =
                        manifest.settings.iter().map(|s| s.key.as_str()).collect();
                    return Err(Problem::invalid(
                        key,
                        "unknown_setting",
                        format!(
                            "worker '{}' has no setting '{}' (known: {})",
                            manifest.identifier,
                            crate::problem::shown_input(key),
                            if known.is_empty() {
                                "none".to_owned()
                            } else {
                                known.join(", ")
                            }
                        ),
                    )
                    .into());
                }
            }
        };
        if let Some(host) = host_setting(key).filter(|h| h.kind == HostKind::Limits) {
            // Which limit is wrong and how, rather than the expected type alone.
            if let Err(e) = host.check(value) {
                return Err(Problem::invalid(key, "invalid_setting", e).into());
            }
        }
        if !ok {
            let expected = match host_setting(key) {
                Some(host) => host.expected(),
                None => manifest
                    .settings
                    .iter()
                    .find(|s| &s.key == key)
                    .map_or("another type", |s| s.kind.with_article())
                    .to_owned(),
            };
            return Err(Problem::invalid(
                key,
                "invalid_setting",
                format!(
                    "setting '{key}' must be {expected}, got {}",
                    stask_plugin_api::manifest::json_type_name(value)
                ),
            )
            .into());
        }
        settings.insert(key.clone(), value.clone());
    }
    // What is left to check concerns the whole (a required key without a value).
    validate(&manifest, &stored, &settings).map_err(|e| {
        let field = e
            .split('\'')
            .nth(1)
            .filter(|k| !k.is_empty())
            .unwrap_or("settings")
            .to_owned();
        anyhow::Error::from(Problem::invalid(&field, "invalid_setting", e))
    })?;
    Ok(settings)
}
