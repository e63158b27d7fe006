//! How a worker describes itself: identity, actions and settings schema.
//!
//! The manifest is what the host stores in its registry and shows to operators. It
//! crosses the ABI as JSON, so fields added later are optional (`#[serde(default)]`)
//! and old libraries keep loading.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Icons the host can display. Plugins choose one by name; the web interface draws it
/// from an embedded set, so a plugin never supplies markup.
pub const ICONS: &[&str] = &[
    "box", "cart", "clock", "cloud", "database", "download", "file", "gear", "globe", "image",
    "mail", "chart", "bell", "search", "sync", "tag", "trash", "truck", "upload", "users", "bolt",
    "bug",
];

/// Everything one library exports: the SDK version it was built with and its workers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryManifest {
    /// Version of `stask-plugin-api` the library was built against.
    pub api_version: String,
    /// The workers in this library, in the order the author exported them.
    pub workers: Vec<WorkerManifest>,
}

/// One worker's self-description (the admin guide's TaskInterface).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkerManifest {
    /// Unique, URL-safe id: lowercase letters, digits, `-` and `_`, starting with a letter
    /// or digit, at most 64 characters. Tasks and the API refer to the worker by it.
    pub identifier: String,
    /// Groups related workers in listings (e.g. `catalog`, `maintenance`).
    #[serde(default)]
    pub scope: String,
    /// Human title.
    pub title: String,
    /// One or two sentences for the Workers page.
    #[serde(default)]
    pub description: String,
    /// An entry of [`ICONS`].
    #[serde(default = "default_icon")]
    pub icon: String,
    /// The worker's own version, shown to operators.
    #[serde(default)]
    pub version: String,
    /// Actions the worker can run; at least one.
    pub actions: Vec<ActionSpec>,
    /// Settings schema; values are edited by operators and passed to every run.
    #[serde(default)]
    pub settings: Vec<SettingSpec>,
    /// Default time limit of one run, in seconds; operators can override it with the
    /// `timeout_secs` setting. `None` lets the host's default apply.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

fn default_icon() -> String {
    "gear".to_owned()
}

/// One action a worker can run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ActionSpec {
    /// Machine name, same character rules as a worker identifier.
    pub name: String,
    /// Human title.
    pub title: String,
    /// What the action does and which input data it expects.
    #[serde(default)]
    pub description: String,
    /// True for the action a schedule runs. At most one action per worker; when none is
    /// marked, the first action is the scheduled one.
    #[serde(default)]
    pub scheduled: bool,
}

/// Type of a setting value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SettingKind {
    /// Any JSON string.
    String,
    /// A JSON integer.
    Integer,
    /// Any JSON number.
    Number,
    /// `true` or `false`.
    Boolean,
}

impl SettingKind {
    /// The name with its article, for messages ("an integer", "a string").
    pub fn with_article(self) -> &'static str {
        match self {
            SettingKind::String => "a string",
            SettingKind::Integer => "an integer",
            SettingKind::Number => "a number",
            SettingKind::Boolean => "a boolean",
        }
    }

    /// Name used in error messages and the schema.
    pub fn name(self) -> &'static str {
        match self {
            SettingKind::String => "string",
            SettingKind::Integer => "integer",
            SettingKind::Number => "number",
            SettingKind::Boolean => "boolean",
        }
    }

    /// True when `value` is of this kind.
    pub fn accepts(self, value: &Value) -> bool {
        match self {
            SettingKind::String => value.is_string(),
            SettingKind::Integer => value.is_i64() || value.is_u64(),
            SettingKind::Number => value.is_number(),
            SettingKind::Boolean => value.is_boolean(),
        }
    }
}

/// One key of a worker's settings schema.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SettingSpec {
    /// Key in the settings object.
    pub key: String,
    /// Label in the settings form.
    #[serde(default)]
    pub title: String,
    /// Help text in the settings form.
    #[serde(default)]
    pub description: String,
    /// Value type.
    pub kind: SettingKind,
    /// Value used when the operator has not set one.
    #[serde(default)]
    pub default: Option<Value>,
    /// A run is refused while a required key has no value and no default.
    #[serde(default)]
    pub required: bool,
    /// Secret values (API keys, passwords) are never shown back or logged by the host.
    #[serde(default)]
    pub secret: bool,
}

impl LibraryManifest {
    /// Checks every worker (see [`WorkerManifest::validate`]) and that identifiers are
    /// unique within the library.
    pub fn validate(&self) -> Result<(), String> {
        if self.workers.is_empty() {
            return Err("the library exports no workers".into());
        }
        for (i, w) in self.workers.iter().enumerate() {
            w.validate()?;
            if self.workers[..i]
                .iter()
                .any(|o| o.identifier == w.identifier)
            {
                return Err(format!(
                    "the library exports worker '{}' twice",
                    w.identifier
                ));
            }
        }
        Ok(())
    }
}

/// True for ids made of lowercase ASCII letters, digits, `-` and `_`, not starting with
/// a separator, 1 to 64 characters: safe in URLs, file names and command lines.
pub fn is_valid_identifier(id: &str) -> bool {
    let b = id.as_bytes();
    !b.is_empty()
        && b.len() <= 64
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-' || *c == b'_')
}

impl WorkerManifest {
    /// Starts a manifest with the two required fields.
    pub fn new(identifier: &str, title: &str) -> Self {
        WorkerManifest {
            identifier: identifier.to_owned(),
            scope: String::new(),
            title: title.to_owned(),
            description: String::new(),
            icon: default_icon(),
            version: String::new(),
            actions: Vec::new(),
            settings: Vec::new(),
            timeout_secs: None,
        }
    }

    /// Sets the scope.
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_owned();
        self
    }

    /// Sets the description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Sets the icon, one of [`ICONS`].
    pub fn icon(mut self, icon: &str) -> Self {
        self.icon = icon.to_owned();
        self
    }

    /// Sets the worker's version (typically `env!("CARGO_PKG_VERSION")`).
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Adds an action.
    pub fn action(mut self, action: ActionSpec) -> Self {
        self.actions.push(action);
        self
    }

    /// Adds a setting to the schema.
    pub fn setting(mut self, setting: SettingSpec) -> Self {
        self.settings.push(setting);
        self
    }

    /// Sets the default time limit of one run.
    pub fn timeout_secs(mut self, secs: u64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// The action a schedule runs: the one marked `scheduled`, else the first.
    pub fn scheduled_action(&self) -> Option<&ActionSpec> {
        self.actions
            .iter()
            .find(|a| a.scheduled)
            .or_else(|| self.actions.first())
    }

    /// The action called `name`, if declared.
    pub fn find_action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Checks the manifest the way the host does when it registers a worker.
    pub fn validate(&self) -> Result<(), String> {
        let id = &self.identifier;
        if !is_valid_identifier(id) {
            return Err(format!(
                "worker identifier '{id}' is not URL-safe: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter or digit"
            ));
        }
        if self.title.trim().is_empty() {
            return Err(format!("worker '{id}' has an empty title"));
        }
        if !ICONS.contains(&self.icon.as_str()) {
            return Err(format!(
                "worker '{id}' uses unknown icon '{}'; choose one of: {}",
                self.icon,
                ICONS.join(", ")
            ));
        }
        if self.actions.is_empty() {
            return Err(format!("worker '{id}' declares no actions"));
        }
        for (i, a) in self.actions.iter().enumerate() {
            if !is_valid_identifier(&a.name) {
                return Err(format!(
                    "worker '{id}': action name '{}' must be 1-64 lowercase letters, digits, '-' or '_'",
                    a.name
                ));
            }
            if self.actions[..i].iter().any(|o| o.name == a.name) {
                return Err(format!("worker '{id}' declares action '{}' twice", a.name));
            }
        }
        if self.actions.iter().filter(|a| a.scheduled).count() > 1 {
            return Err(format!(
                "worker '{id}' marks more than one action as scheduled"
            ));
        }
        for (i, s) in self.settings.iter().enumerate() {
            if s.key.is_empty() || s.key.len() > 64 {
                return Err(format!(
                    "worker '{id}' has a setting with an empty or over-long key"
                ));
            }
            if s.key == TIMEOUT_SETTING {
                return Err(format!(
                    "worker '{id}' declares the reserved setting '{TIMEOUT_SETTING}'; every worker accepts it already (set a default with WorkerManifest::timeout_secs)"
                ));
            }
            if self.settings[..i].iter().any(|o| o.key == s.key) {
                return Err(format!("worker '{id}' declares setting '{}' twice", s.key));
            }
            if let Some(d) = &s.default {
                if !s.kind.accepts(d) {
                    return Err(format!(
                        "worker '{id}': default of setting '{}' is not {}",
                        s.key,
                        s.kind.with_article()
                    ));
                }
            }
        }
        Ok(())
    }

    /// Checks operator-supplied settings against the schema and fills in defaults.
    ///
    /// Unknown keys are refused (a typo must not silently do nothing), except
    /// `timeout_secs`, which every worker accepts. Errors name the key and the expected
    /// type.
    pub fn resolve_settings(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for (key, value) in given {
            if key == TIMEOUT_SETTING {
                if !(value.is_u64() && value.as_u64() != Some(0)) {
                    return Err(format!(
                        "setting '{TIMEOUT_SETTING}' must be a positive integer (seconds)"
                    ));
                }
                out.insert(key.clone(), value.clone());
                continue;
            }
            let Some(spec) = self.settings.iter().find(|s| &s.key == key) else {
                let known: Vec<&str> = self.settings.iter().map(|s| s.key.as_str()).collect();
                return Err(format!(
                    "worker '{}' has no setting '{key}' (known: {})",
                    self.identifier,
                    if known.is_empty() {
                        "none".to_owned()
                    } else {
                        known.join(", ")
                    }
                ));
            };
            if !spec.kind.accepts(value) {
                return Err(format!(
                    "setting '{key}' must be {}, got {}",
                    spec.kind.with_article(),
                    json_type_name(value)
                ));
            }
            out.insert(key.clone(), value.clone());
        }
        for spec in &self.settings {
            if out.contains_key(&spec.key) {
                continue;
            }
            match &spec.default {
                Some(d) => {
                    out.insert(spec.key.clone(), d.clone());
                }
                None if spec.required => {
                    return Err(format!(
                        "setting '{}' ({}) is required and has no value",
                        spec.key,
                        spec.kind.name()
                    ))
                }
                None => {}
            }
        }
        Ok(out)
    }
}

/// Settings key every worker accepts: the run's time limit in seconds.
pub const TIMEOUT_SETTING: &str = "timeout_secs";

/// Name of a JSON value's type, for error messages.
pub fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_f64() => "number",
        Value::Number(_) => "integer",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

impl ActionSpec {
    /// A new action with its machine name and title.
    pub fn new(name: &str, title: &str) -> Self {
        ActionSpec {
            name: name.to_owned(),
            title: title.to_owned(),
            description: String::new(),
            scheduled: false,
        }
    }

    /// Sets the description.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Marks this as the action schedules run.
    pub fn scheduled(mut self) -> Self {
        self.scheduled = true;
        self
    }
}

impl SettingSpec {
    fn new(key: &str, title: &str, kind: SettingKind) -> Self {
        SettingSpec {
            key: key.to_owned(),
            title: title.to_owned(),
            description: String::new(),
            kind,
            default: None,
            required: false,
            secret: false,
        }
    }

    /// A string setting.
    pub fn string(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::String)
    }

    /// An integer setting.
    pub fn integer(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::Integer)
    }

    /// A number setting.
    pub fn number(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::Number)
    }

    /// A boolean setting.
    pub fn boolean(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::Boolean)
    }

    /// Sets the help text.
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Sets the default value.
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Marks the setting as required.
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the setting as secret: never shown back or logged by the host.
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}
