//! How a worker describes itself: identity, actions and settings schema.
//!
//! The manifest is what the host stores in its registry and shows to operators. It
//! crosses the ABI as JSON, so fields added later are optional (`#[serde(default)]`)
//! and old libraries keep loading.
//!
//! ```
//! use stask_plugin_api::prelude::*;
//!
//! let manifest = WorkerManifest::new("product-import", "Product import")
//!     .scope("catalog")
//!     .icon("cart")
//!     .action(ActionSpec::new("import", "Import products").scheduled())
//!     .setting(SettingSpec::string("import_dir", "Import directory").required());
//! assert_eq!(manifest.validate(), Ok(()));
//! ```

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::access::{self, AccessSpec};

/// Icons the host can display. Plugins choose one by name; the web interface draws it
/// from an embedded set, so a plugin never supplies markup.
///
/// ```
/// use stask_plugin_api::manifest::ICONS;
///
/// assert!(ICONS.contains(&"cart"));
/// assert!(!ICONS.contains(&"<svg>"));
/// ```
pub const ICONS: &[&str] = &[
    "box", "cart", "clock", "cloud", "database", "download", "file", "gear", "globe", "image",
    "mail", "chart", "bell", "search", "sync", "tag", "trash", "truck", "upload", "users", "bolt",
    "bug",
];

/// Everything one library exports: the SDK version it was built with and its workers.
///
/// ```
/// use stask_plugin_api::{ActionSpec, LibraryManifest, WorkerManifest};
///
/// let library = LibraryManifest {
///     api_version: stask_plugin_api::abi::API_VERSION.to_owned(),
///     workers: vec![WorkerManifest::new("a", "A").action(ActionSpec::new("run", "Run"))],
/// };
/// assert_eq!(library.validate(), Ok(()));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryManifest {
    /// Version of `stask-plugin-api` the library was built against.
    pub api_version: String,
    /// The workers in this library, in the order the author exported them.
    pub workers: Vec<WorkerManifest>,
}

/// One worker's self-description (the admin guide's TaskInterface).
///
/// ```
/// use stask_plugin_api::prelude::*;
///
/// let manifest = WorkerManifest::new("my-worker", "My worker")
///     .scope("examples")
///     .description("Greets people.")
///     .icon("users")
///     .version("1.2.0")
///     .timeout_secs(60)
///     .action(ActionSpec::new("greet", "Greet"))
///     .setting(SettingSpec::string("greeting", "Greeting").default("Hello"));
/// assert_eq!(manifest.validate(), Ok(()));
/// // The host receives it as JSON:
/// let json = serde_json::to_value(&manifest).unwrap();
/// assert_eq!(json["identifier"], "my-worker");
/// assert_eq!(json["timeout_secs"], 60);
/// ```
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
    /// What its runs may touch beyond what every run may (see [`crate::access`]):
    /// nothing when it declares nothing.
    #[serde(default, skip_serializing_if = "AccessSpec::is_empty")]
    pub access: AccessSpec,
    /// Limits per key on its tasks (see [`LimitSpec`]): at most N running, or N starts
    /// per period, per worker, action or key from the task's data. Operators replace
    /// them with the `limits` setting. Left out of the JSON when empty, so manifests
    /// without limits look as they did.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub limits: Vec<LimitSpec>,
    /// Follow-up tasks its runs may create with [`Context::enqueue`](crate::Context::enqueue):
    /// worker identifiers (any of their actions) or `worker/action`; none when empty.
    /// Left out of the JSON when empty, so libraries built before the field keep their
    /// manifest (see [`crate::enqueue`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enqueues: Vec<String>,
}

fn default_icon() -> String {
    "gear".to_owned()
}

/// One action a worker can run.
///
/// ```
/// use stask_plugin_api::ActionSpec;
///
/// let action = ActionSpec::new("import", "Import products")
///     .description("Imports a CSV file. Data: {\"file\": \"products.csv\"}")
///     .scheduled();
/// assert!(action.scheduled);
/// ```
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
    /// Default unique key of the action's tasks, a template over the task's data
    /// (`"shop:{shop_id}"`, see [`render_unique_key`]): while a task of this action with
    /// the same key is pending or running, creating another returns that task instead.
    /// Callers can give their own key or create without one. Left out of the JSON when
    /// unset, so libraries built before the field keep the manifest they had.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_key: Option<String>,
}

/// Longest unique key, in bytes (a rendered template included).
pub const MAX_UNIQUE_KEY_BYTES: usize = 512;

/// Renders a unique-key template against task data: `{field}` is replaced by the data's
/// top-level `field` (`{a.b}` reaches into objects), strings as they are and any other
/// value as its JSON text (a missing field as `null`); `{{` and `}}` stand for braces.
///
/// ```
/// use stask_plugin_api::manifest::render_unique_key;
/// use serde_json::json;
///
/// let data = json!({"shop": {"id": 42}, "file": "a.csv"});
/// assert_eq!(render_unique_key("import:{shop.id}:{file}", &data).unwrap(), "import:42:a.csv");
/// assert_eq!(render_unique_key("{{literal}} {missing}", &data).unwrap(), "{literal} null");
/// assert!(render_unique_key("open {brace", &data).is_err());
/// ```
pub fn render_unique_key(template: &str, data: &Value) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(i) = rest.find(['{', '}']) {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        if tail.starts_with("{{") || tail.starts_with("}}") {
            out.push_str(&tail[..1]);
            rest = &tail[2..];
            continue;
        }
        if tail.starts_with('}') {
            return Err(format!(
                "unique key template '{template}' has a '}}' without its '{{' (write '}}}}' for a brace)"
            ));
        }
        let Some(end) = tail.find('}') else {
            return Err(format!(
                "unique key template '{template}' has a '{{' without its '}}' (write '{{{{' for a brace)"
            ));
        };
        let path = &tail[1..end];
        if path.is_empty() || path.contains('{') || path.split('.').any(str::is_empty) {
            return Err(format!(
                "unique key template '{template}' has an empty or malformed field '{{{path}}}'; name a data field, e.g. {{shop_id}} or {{shop.id}}"
            ));
        }
        let value = path
            .split('.')
            .try_fold(data, |v, k| v.get(k))
            .unwrap_or(&Value::Null);
        match value {
            Value::String(s) => out.push_str(s),
            other => out.push_str(&other.to_string()),
        }
        rest = &tail[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Type of a setting value.
///
/// ```
/// use stask_plugin_api::{SettingKind, SettingSpec};
///
/// assert_eq!(SettingSpec::integer("n", "N").kind, SettingKind::Integer);
/// assert_eq!(serde_json::to_string(&SettingKind::Boolean).unwrap(), "\"boolean\"");
/// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::SettingKind;
    /// assert_eq!(SettingKind::Integer.with_article(), "an integer");
    /// ```
    pub fn with_article(self) -> &'static str {
        match self {
            SettingKind::String => "a string",
            SettingKind::Integer => "an integer",
            SettingKind::Number => "a number",
            SettingKind::Boolean => "a boolean",
        }
    }

    /// Name used in error messages and the schema.
    ///
    /// ```
    /// # use stask_plugin_api::SettingKind;
    /// assert_eq!(SettingKind::Number.name(), "number");
    /// ```
    pub fn name(self) -> &'static str {
        match self {
            SettingKind::String => "string",
            SettingKind::Integer => "integer",
            SettingKind::Number => "number",
            SettingKind::Boolean => "boolean",
        }
    }

    /// True when `value` is of this kind.
    ///
    /// ```
    /// # use stask_plugin_api::SettingKind;
    /// # use serde_json::json;
    /// assert!(SettingKind::Number.accepts(&json!(2)));
    /// assert!(SettingKind::Integer.accepts(&json!(2)));
    /// assert!(!SettingKind::Integer.accepts(&json!(2.5)));
    /// assert!(!SettingKind::String.accepts(&json!(null)));
    /// ```
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
///
/// ```
/// use stask_plugin_api::SettingSpec;
///
/// let password = SettingSpec::string("smtp_password", "SMTP password")
///     .description("Password of the SMTP account.")
///     .required()
///     .secret();
/// assert!(password.required && password.secret && password.default.is_none());
/// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::{ActionSpec, LibraryManifest, WorkerManifest};
    /// let worker = WorkerManifest::new("a", "A").action(ActionSpec::new("run", "Run"));
    /// let library = LibraryManifest { api_version: "0.1.0".into(), workers: vec![worker.clone(), worker] };
    /// assert_eq!(library.validate(), Err("the library exports worker 'a' twice".to_owned()));
    /// ```
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
///
/// ```
/// use stask_plugin_api::manifest::is_valid_identifier;
///
/// assert!(is_valid_identifier("product-import"));
/// assert!(is_valid_identifier("v2_sync"));
/// assert!(!is_valid_identifier("Product Import"));
/// assert!(!is_valid_identifier("-leading-dash"));
/// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("my-worker", "My worker");
    /// assert_eq!((m.identifier.as_str(), m.icon.as_str()), ("my-worker", "gear"));
    /// // At least one action is needed before it validates:
    /// assert!(m.validate().unwrap_err().contains("declares no actions"));
    /// ```
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
            access: AccessSpec::default(),
            limits: Vec::new(),
            enqueues: Vec::new(),
        }
    }

    /// Sets the scope.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("sync", "Sync").scope("maintenance");
    /// assert_eq!(m.scope, "maintenance");
    /// ```
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_owned();
        self
    }

    /// Sets the description.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("sync", "Sync").description("Mirrors the catalog to the shop.");
    /// assert_eq!(m.description, "Mirrors the catalog to the shop.");
    /// ```
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Sets the icon, one of [`ICONS`].
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("mailer", "Mailer").icon("mail").action(ActionSpec::new("send", "Send"));
    /// assert!(m.validate().is_ok());
    /// let bad = m.icon("envelope");
    /// assert!(bad.validate().unwrap_err().contains("unknown icon 'envelope'"));
    /// ```
    pub fn icon(mut self, icon: &str) -> Self {
        self.icon = icon.to_owned();
        self
    }

    /// Sets the worker's version (typically `env!("CARGO_PKG_VERSION")`).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("mailer", "Mailer").version(env!("CARGO_PKG_VERSION"));
    /// assert!(!m.version.is_empty());
    /// ```
    pub fn version(mut self, version: &str) -> Self {
        self.version = version.to_owned();
        self
    }

    /// Adds an action.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("mailer", "Mailer")
    ///     .action(ActionSpec::new("send", "Send"))
    ///     .action(ActionSpec::new("preview", "Preview"));
    /// assert_eq!(m.actions.len(), 2);
    /// ```
    pub fn action(mut self, action: ActionSpec) -> Self {
        self.actions.push(action);
        self
    }

    /// Adds a setting to the schema.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("mailer", "Mailer")
    ///     .action(ActionSpec::new("send", "Send"))
    ///     .setting(SettingSpec::string("sender", "Sender address").required());
    /// assert_eq!(m.settings[0].key, "sender");
    /// ```
    pub fn setting(mut self, setting: SettingSpec) -> Self {
        self.settings.push(setting);
        self
    }

    /// Sets the default time limit of one run.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// // Operators can still override it with the `timeout_secs` setting.
    /// let m = WorkerManifest::new("mailer", "Mailer").timeout_secs(600);
    /// assert_eq!(m.timeout_secs, Some(600));
    /// ```
    pub fn timeout_secs(mut self, secs: u64) -> Self {
        self.timeout_secs = Some(secs);
        self
    }

    /// Adds a limit on its tasks (see [`LimitSpec`]). A task falls under the first
    /// limit that matches it, so put the narrower ones first.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("shop", "Shop")
    ///     .action(ActionSpec::new("import", "Import"))
    ///     .action(ActionSpec::new("notify", "Notify"))
    ///     // One import per shop at a time.
    ///     .limit(LimitSpec::action("import").key("shop:{shop_id}").concurrency(1))
    ///     // At most 60 notifications a minute, whatever the shop.
    ///     .limit(LimitSpec::action("notify").rate(60, 60));
    /// assert_eq!(m.validate(), Ok(()));
    /// let bad = m.limit(LimitSpec::action("export").concurrency(2));
    /// assert!(bad.validate().unwrap_err().contains("no action 'export'"));
    /// ```
    pub fn limit(mut self, limit: LimitSpec) -> Self {
        self.limits.push(limit);
        self
    }

    /// Checks limits — the manifest's own or an operator's `limits` setting — against
    /// this worker: each valid ([`LimitSpec::validate`]), naming only its actions, and
    /// no two with the same action and key template.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W").action(ActionSpec::new("run", "Run"));
    /// assert_eq!(m.check_limits(&[LimitSpec::worker().concurrency(2)]), Ok(()));
    /// let twice = [LimitSpec::worker().concurrency(2), LimitSpec::worker().rate(1, 1)];
    /// assert!(m.check_limits(&twice).unwrap_err().contains("twice"));
    /// ```
    pub fn check_limits(&self, limits: &[LimitSpec]) -> Result<(), String> {
        if limits.len() > MAX_LIMITS {
            return Err(format!(
                "{} limits given; a worker has at most {MAX_LIMITS}",
                limits.len()
            ));
        }
        for (i, l) in limits.iter().enumerate() {
            l.validate()?;
            if let Some(action) = &l.action {
                if self.find_action(action).is_none() {
                    let names: Vec<&str> = self.actions.iter().map(|a| a.name.as_str()).collect();
                    return Err(format!(
                        "limit {} names no action '{action}' of worker '{}' (its actions: {})",
                        i + 1,
                        self.identifier,
                        names.join(", ")
                    ));
                }
            }
            if limits[..i].iter().any(|o| o.rule() == l.rule()) {
                return Err(format!(
                    "limit {} ({}) is given twice; give concurrency and rate in one limit",
                    i + 1,
                    l.describe()
                ));
            }
        }
        Ok(())
    }

    /// The limits in force for settings `settings` (stored or resolved): the `limits`
    /// setting when it is there (it replaces the manifest's entirely; `[]` means
    /// none), otherwise the manifest's. A setting that cannot be read counts as absent
    /// (it was checked when it was stored).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W")
    ///     .action(ActionSpec::new("run", "Run"))
    ///     .limit(LimitSpec::worker().concurrency(2));
    /// assert_eq!(m.effective_limits(&Default::default()).len(), 1);
    /// let none = json!({ "limits": [] }).as_object().unwrap().clone();
    /// assert!(m.effective_limits(&none).is_empty());
    /// ```
    pub fn effective_limits(&self, settings: &Map<String, Value>) -> Vec<LimitSpec> {
        settings
            .get(LIMITS_SETTING)
            .and_then(|v| serde_json::from_value::<Vec<LimitSpec>>(v.clone()).ok())
            .unwrap_or_else(|| self.limits.clone())
    }

    /// Declares a follow-up task its runs may enqueue: `"worker"` (any of its actions) or
    /// `"worker/action"`. Call it once per target; anything not declared is refused.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("feed", "Feed")
    ///     .action(ActionSpec::new("fetch", "Fetch"))
    ///     .enqueues("feed/fetch")
    ///     .enqueues("mailer");
    /// assert!(m.may_enqueue("mailer", "send"));
    /// assert!(!m.may_enqueue("feed", "purge"));
    /// assert_eq!(serde_json::to_value(&m).unwrap()["enqueues"], json!(["feed/fetch", "mailer"]));
    /// ```
    pub fn enqueues(mut self, target: &str) -> Self {
        self.enqueues.push(target.to_owned());
        self
    }

    /// Whether its runs may enqueue `action` of `worker` (see [`WorkerManifest::enqueues`]).
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("feed", "Feed").action(ActionSpec::new("fetch", "Fetch"));
    /// assert!(!m.may_enqueue("feed", "fetch")); // nothing declared
    /// ```
    pub fn may_enqueue(&self, worker: &str, action: &str) -> bool {
        crate::enqueue::allows(&self.enqueues, worker, action)
    }

    /// The action a schedule runs: the one marked `scheduled`, else the first.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W")
    ///     .action(ActionSpec::new("check", "Check"))
    ///     .action(ActionSpec::new("sync", "Sync").scheduled());
    /// assert_eq!(m.scheduled_action().unwrap().name, "sync");
    /// ```
    pub fn scheduled_action(&self) -> Option<&ActionSpec> {
        self.actions
            .iter()
            .find(|a| a.scheduled)
            .or_else(|| self.actions.first())
    }

    /// The action called `name`, if declared.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W").action(ActionSpec::new("sync", "Sync"));
    /// assert!(m.find_action("sync").is_some());
    /// assert!(m.find_action("fly").is_none());
    /// ```
    pub fn find_action(&self, name: &str) -> Option<&ActionSpec> {
        self.actions.iter().find(|a| a.name == name)
    }

    /// Checks the manifest the way the host does when it registers a worker.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W")
    ///     .action(ActionSpec::new("run", "Run"))
    ///     .setting(SettingSpec::boolean("dry_run", "Dry run").default("yes"));
    /// assert_eq!(
    ///     m.validate(),
    ///     Err("worker 'w': default of setting 'dry_run' is not a boolean".to_owned())
    /// );
    /// ```
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
            if let Some(template) = &a.unique_key {
                // Rendering against nothing finds every syntax error, once, here.
                render_unique_key(template, &Value::Null)
                    .map_err(|e| format!("worker '{id}', action '{}': {e}", a.name))?;
                if template.trim().is_empty() || template.len() > MAX_UNIQUE_KEY_BYTES {
                    return Err(format!(
                        "worker '{id}', action '{}': the unique key template must be 1-{MAX_UNIQUE_KEY_BYTES} bytes and not blank",
                        a.name
                    ));
                }
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
            if host_setting(&s.key).is_some() {
                return Err(format!(
                    "worker '{id}' declares the reserved setting '{}'; every worker accepts it already (the host enforces it)",
                    s.key
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
        self.access
            .validate(&self.settings)
            .map_err(|e| format!("worker '{id}': {e}"))?;
        crate::enqueue::validate_targets(&self.enqueues)
            .map_err(|e| format!("worker '{id}': {e}"))?;
        self.check_limits(&self.limits)
            .map_err(|e| format!("worker '{id}': {e}"))?;
        Ok(())
    }

    /// Checks operator-supplied settings against the schema and fills in defaults.
    ///
    /// Unknown keys are refused (a typo must not silently do nothing), except the
    /// [`HOST_SETTINGS`] (`timeout_secs`, the resource limits), which every worker accepts. Errors name the key and the expected
    /// type.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("mailer", "Mailer")
    ///     .action(ActionSpec::new("send", "Send"))
    ///     .setting(SettingSpec::integer("batch_size", "Batch size").default(100));
    /// let given = json!({ "timeout_secs": 60 }).as_object().unwrap().clone();
    /// let resolved = m.resolve_settings(&given).unwrap();
    /// assert_eq!(Value::Object(resolved), json!({ "batch_size": 100, "timeout_secs": 60 }));
    ///
    /// let typo = json!({ "batch_sise": 5 }).as_object().unwrap().clone();
    /// assert!(m.resolve_settings(&typo).unwrap_err().contains("no setting 'batch_sise'"));
    /// ```
    pub fn resolve_settings(
        &self,
        given: &Map<String, Value>,
    ) -> Result<Map<String, Value>, String> {
        let mut out = Map::new();
        for (key, value) in given {
            if let Some(host) = host_setting(key) {
                host.check(value)?;
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
///
/// ```
/// use stask_plugin_api::manifest::TIMEOUT_SETTING;
///
/// assert_eq!(TIMEOUT_SETTING, "timeout_secs");
/// ```
pub const TIMEOUT_SETTING: &str = "timeout_secs";

/// Settings key every worker accepts: the most memory its runner may use, in MiB
/// (heap and other private writable memory).
pub const MEMORY_SETTING: &str = "max_memory_mb";

/// Settings key every worker accepts: the most CPU time one run may use, in seconds.
pub const CPU_SETTING: &str = "max_cpu_secs";

/// Settings key every worker accepts: the most files its runner may have open at once.
pub const OPEN_FILES_SETTING: &str = "max_open_files";

/// Settings key every worker accepts: its limits per key, a JSON array of
/// [`LimitSpec`] objects replacing the manifest's entirely (`[]`: no limits).
///
/// ```
/// use stask_plugin_api::manifest::{host_setting, LIMITS_SETTING};
/// use serde_json::json;
///
/// let limits = host_setting(LIMITS_SETTING).unwrap();
/// assert!(limits.accepts(&json!([{ "key": "shop:{shop_id}", "concurrency": 1 }])));
/// assert!(limits.check(&json!([{ "key": "shop:{}", "concurrency": 1 }])).unwrap_err().contains("empty"));
/// ```
pub const LIMITS_SETTING: &str = "limits";

/// Most limits one worker has.
pub const MAX_LIMITS: usize = 64;

/// Longest key template of a limit, in bytes.
pub const MAX_LIMIT_KEY_BYTES: usize = 256;

/// Longest rate period of a limit, in seconds (a year).
pub const MAX_LIMIT_PERIOD_SECS: u64 = 31_536_000;

/// A limit on a worker's tasks, per key: at most `concurrency` of them running at
/// once, and at most `rate.starts` of them started within any `rate.per_secs` seconds,
/// among the tasks that share a key. The host enforces it when a task is claimed
/// (never two at once, also across hosts sharing a store); a task over the limit waits
/// pending, it never fails for it.
///
/// * `action`: the action whose tasks it covers; `None`: every action of the worker.
/// * `key`: a template over the task's data (`"shop:{shop_id}"`, the syntax of
///   [`render_unique_key`]); tasks with the same rendered key share the limit.
///   `None`: one key for the whole scope (the action's name, or the worker's
///   identifier). A task whose data lacks a field the template names (or holds `null`
///   there) does not fall under this limit; the next one that matches applies.
/// * A task falls under the **first** limit that matches it: one rule per task.
///
/// In a manifest's (or the `limits` setting's) JSON:
/// `{"action": "import", "key": "shop:{shop_id}", "concurrency": 1}`,
/// `{"rate": {"starts": 60, "per_secs": 60}}`.
///
/// ```
/// use stask_plugin_api::prelude::*;
///
/// let one_per_shop = LimitSpec::action("import").key("shop:{shop_id}").concurrency(1);
/// assert_eq!(one_per_shop.validate(), Ok(()));
/// let json = serde_json::to_value(&one_per_shop).unwrap();
/// assert_eq!(json, json!({"action": "import", "key": "shop:{shop_id}", "concurrency": 1}));
/// // Neither a concurrency nor a rate: a limit that limits nothing.
/// assert!(LimitSpec::worker().validate().unwrap_err().contains("neither a concurrency nor a rate"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitSpec {
    /// The action it covers; `None`: every action.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// Key template over the task's data; `None`: one key for the scope.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    /// At most this many running at once per key (1 or more).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// At most this many starts per period per key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<RateSpec>,
}

/// A rate: at most `starts` task starts within any `per_secs` seconds. Every start
/// counts, a retried attempt's too (it calls what the rate protects again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateSpec {
    /// Starts allowed per period (1 or more).
    pub starts: u32,
    /// The period, in seconds (1 or more).
    pub per_secs: u64,
}

impl LimitSpec {
    /// A limit on every action of the worker.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// assert_eq!(LimitSpec::worker().concurrency(4).action, None);
    /// ```
    pub fn worker() -> Self {
        LimitSpec {
            action: None,
            key: None,
            concurrency: None,
            rate: None,
        }
    }

    /// A limit on the tasks of one action.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// assert_eq!(LimitSpec::action("import").action.as_deref(), Some("import"));
    /// ```
    pub fn action(name: &str) -> Self {
        LimitSpec {
            action: Some(name.to_owned()),
            ..LimitSpec::worker()
        }
    }

    /// Sets the key template: tasks whose data renders the same key share the limit.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let l = LimitSpec::worker().key("shop:{shop_id}").concurrency(1);
    /// assert_eq!(l.key.as_deref(), Some("shop:{shop_id}"));
    /// ```
    pub fn key(mut self, template: &str) -> Self {
        self.key = Some(template.to_owned());
        self
    }

    /// Sets the most tasks running at once per key.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// assert_eq!(LimitSpec::worker().concurrency(3).concurrency, Some(3));
    /// assert!(LimitSpec::worker().concurrency(0).validate().is_err());
    /// ```
    pub fn concurrency(mut self, n: u32) -> Self {
        self.concurrency = Some(n);
        self
    }

    /// Sets the most task starts per `per_secs` seconds per key.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// // 60 calls a minute toward an external API.
    /// let l = LimitSpec::action("call").rate(60, 60);
    /// assert_eq!((l.rate.unwrap().starts, l.rate.unwrap().per_secs), (60, 60));
    /// ```
    pub fn rate(mut self, starts: u32, per_secs: u64) -> Self {
        self.rate = Some(RateSpec { starts, per_secs });
        self
    }

    /// Its identity within its worker: `ACTION|TEMPLATE`, `*` for every action and an
    /// empty template for none. Tasks store it with their key, so changing a limit's
    /// numbers keeps its identity, changing its scope or template makes a new one.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// assert_eq!(LimitSpec::action("import").key("shop:{shop_id}").rule(), "import|shop:{shop_id}");
    /// assert_eq!(LimitSpec::worker().rule(), "*|");
    /// ```
    pub fn rule(&self) -> String {
        format!(
            "{}|{}",
            self.action.as_deref().unwrap_or("*"),
            self.key.as_deref().unwrap_or("")
        )
    }

    /// The limit in words for messages: `action 'import', key 'shop:{shop_id}'`.
    pub fn describe(&self) -> String {
        let scope = match &self.action {
            Some(a) => format!("action '{a}'"),
            None => "every action".to_owned(),
        };
        match &self.key {
            Some(k) => format!("{scope}, key '{k}'"),
            None => scope,
        }
    }

    /// Checks the limit on its own (the worker's actions are checked by
    /// [`WorkerManifest::check_limits`]): a concurrency or a rate, numbers of 1 or
    /// more, an action name that could be one, a key template that renders.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// assert!(LimitSpec::worker().key("shop:{}").concurrency(1).validate().unwrap_err().contains("empty"));
    /// assert!(LimitSpec::worker().rate(0, 60).validate().unwrap_err().contains("starts"));
    /// ```
    pub fn validate(&self) -> Result<(), String> {
        let what = self.describe();
        if let Some(a) = &self.action {
            if !is_valid_identifier(a) {
                return Err(format!(
                    "limit on action '{a}': an action name is 1-64 lowercase letters, digits, '-' or '_'"
                ));
            }
        }
        if self.concurrency.is_none() && self.rate.is_none() {
            return Err(format!(
                "limit on {what} sets neither a concurrency nor a rate; give \"concurrency\": N or \"rate\": {{\"starts\": N, \"per_secs\": S}}"
            ));
        }
        if self.concurrency == Some(0) {
            return Err(format!(
                "limit on {what}: concurrency must be 1 or more (leave the limit out for no limit)"
            ));
        }
        if let Some(rate) = &self.rate {
            if rate.starts == 0 {
                return Err(format!("limit on {what}: rate starts must be 1 or more"));
            }
            if rate.per_secs == 0 || rate.per_secs > MAX_LIMIT_PERIOD_SECS {
                return Err(format!(
                    "limit on {what}: rate per_secs must be from 1 to {MAX_LIMIT_PERIOD_SECS} seconds, got {}",
                    rate.per_secs
                ));
            }
        }
        if let Some(template) = &self.key {
            if template.trim().is_empty() || template.len() > MAX_LIMIT_KEY_BYTES {
                return Err(format!(
                    "limit on {what}: the key template must be 1-{MAX_LIMIT_KEY_BYTES} bytes and not blank"
                ));
            }
            render_unique_key(template, &Value::Null).map_err(|e| {
                format!(
                    "limit on {what}: {}",
                    e.replacen("unique key template", "key template", 1)
                )
            })?;
        }
        Ok(())
    }
}

/// A setting every worker accepts without declaring it: the host enforces it rather
/// than the worker (a time limit, a resource limit, the sandbox).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostSetting {
    /// The settings key.
    pub key: &'static str,
    /// What the value means, for messages ("seconds").
    pub unit: &'static str,
    /// The values it takes.
    pub kind: HostKind,
}

/// The values a [`HostSetting`] takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostKind {
    /// A whole number within `min..=max`.
    Integer {
        /// Smallest value accepted.
        min: u64,
        /// Largest value accepted.
        max: u64,
    },
    /// A comma-separated list of paths (absolute or relative to the home).
    Paths,
    /// A comma-separated list of `host:port`.
    Addresses,
    /// A JSON array of [`LimitSpec`] objects.
    Limits,
}

impl HostSetting {
    /// Whether `value` is a valid value.
    pub fn accepts(&self, value: &Value) -> bool {
        match (self.kind, value) {
            (HostKind::Integer { min, max }, v) => {
                v.as_u64().is_some_and(|n| (min..=max).contains(&n))
            }
            (HostKind::Paths, Value::String(s)) => access::split_list(s)
                .iter()
                .all(|p| !p.starts_with("${") && access::check_path(p, &[]).is_ok()),
            (HostKind::Addresses, Value::String(s)) => access::split_list(s)
                .iter()
                .all(|a| access::check_address(a).is_ok()),
            (HostKind::Limits, v) => parse_limits(v).is_ok(),
            _ => false,
        }
    }

    /// [`HostSetting::accepts`] with the reason when it does not: for `limits`, which
    /// limit is wrong and how.
    pub fn check(&self, value: &Value) -> Result<(), String> {
        if self.kind == HostKind::Limits {
            return parse_limits(value)
                .map(drop)
                .map_err(|e| format!("setting '{}': {e}", self.key));
        }
        if self.accepts(value) {
            Ok(())
        } else {
            Err(format!(
                "setting '{}' must be {}",
                self.key,
                self.expected()
            ))
        }
    }

    /// What a value must be, for messages: "an integer from 1 to … (seconds)".
    pub fn expected(&self) -> String {
        match self.kind {
            HostKind::Integer { min, max } => {
                format!("an integer from {min} to {max} ({})", self.unit)
            }
            HostKind::Paths | HostKind::Addresses => {
                format!("a string: {}", self.unit)
            }
            HostKind::Limits => format!("a JSON array: {}", self.unit),
        }
    }

    /// The settings kind its values have.
    pub fn setting_kind(&self) -> SettingKind {
        match self.kind {
            HostKind::Integer { .. } => SettingKind::Integer,
            // Given as JSON text on a command line.
            HostKind::Paths | HostKind::Addresses | HostKind::Limits => SettingKind::String,
        }
    }
}

/// Reads a `limits` setting's value: a JSON array of valid [`LimitSpec`] objects, no
/// two with the same action and key template. Which actions the worker has is checked
/// by [`WorkerManifest::check_limits`].
///
/// ```
/// use stask_plugin_api::manifest::parse_limits;
/// use serde_json::json;
///
/// assert_eq!(parse_limits(&json!([{"rate": {"starts": 60, "per_secs": 60}}])).unwrap().len(), 1);
/// assert!(parse_limits(&json!({"concurrency": 1})).unwrap_err().contains("JSON array"));
/// assert!(parse_limits(&json!([{"concurency": 1}])).unwrap_err().contains("concurency"));
/// ```
pub fn parse_limits(value: &Value) -> Result<Vec<LimitSpec>, String> {
    const EXAMPLE: &str = r#"[{"action": "import", "key": "shop:{shop_id}", "concurrency": 1}, {"rate": {"starts": 60, "per_secs": 60}}]"#;
    let Value::Array(items) = value else {
        return Err(format!(
            "limits must be a JSON array of limits like {EXAMPLE}, got {}",
            json_type_name(value)
        ));
    };
    let mut out = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let spec: LimitSpec = serde_json::from_value(item.clone()).map_err(|e| {
            format!(
                "limit {} is not a limit ({e}); a limit looks like {{\"action\": \"import\", \"key\": \"shop:{{shop_id}}\", \"concurrency\": 1, \"rate\": {{\"starts\": 60, \"per_secs\": 60}}}} with every field optional but a concurrency or a rate",
                i + 1
            )
        })?;
        out.push(spec);
    }
    for (i, l) in out.iter().enumerate() {
        l.validate()?;
        if out[..i].iter().any(|o| o.rule() == l.rule()) {
            return Err(format!(
                "limit {} ({}) is given twice; give concurrency and rate in one limit",
                i + 1,
                l.describe()
            ));
        }
    }
    if out.len() > MAX_LIMITS {
        return Err(format!(
            "{} limits given; a worker has at most {MAX_LIMITS}",
            out.len()
        ));
    }
    Ok(out)
}

/// The settings every worker accepts, enforced by the host. The lower bounds keep a
/// runner able to start at all (it needs some memory and descriptors of its own).
pub const HOST_SETTINGS: &[HostSetting] = &[
    HostSetting {
        key: TIMEOUT_SETTING,
        unit: "seconds",
        kind: HostKind::Integer {
            min: 1,
            max: 31_536_000,
        },
    },
    HostSetting {
        key: MEMORY_SETTING,
        unit: "MiB",
        kind: HostKind::Integer {
            min: 64,
            max: 1 << 30,
        },
    },
    HostSetting {
        key: CPU_SETTING,
        unit: "seconds of CPU time",
        kind: HostKind::Integer {
            min: 1,
            max: 31_536_000,
        },
    },
    HostSetting {
        key: OPEN_FILES_SETTING,
        unit: "open files",
        kind: HostKind::Integer {
            min: 32,
            max: 1 << 20,
        },
    },
    HostSetting {
        key: access::SANDBOX_READS,
        unit: "comma-separated paths the worker may read, replacing what it declares",
        kind: HostKind::Paths,
    },
    HostSetting {
        key: access::SANDBOX_WRITES,
        unit: "comma-separated paths the worker may write, replacing what it declares",
        kind: HostKind::Paths,
    },
    HostSetting {
        key: access::SANDBOX_CONNECTS,
        unit: "comma-separated host:port the worker may connect to, replacing what it declares",
        kind: HostKind::Addresses,
    },
    HostSetting {
        key: LIMITS_SETTING,
        unit: "limits per key replacing what the worker declares ([] for none)",
        kind: HostKind::Limits,
    },
];

/// The host setting named `key`, if it is one.
pub fn host_setting(key: &str) -> Option<&'static HostSetting> {
    HOST_SETTINGS.iter().find(|h| h.key == key)
}

/// Name of a JSON value's type, for error messages.
///
/// ```
/// use stask_plugin_api::manifest::json_type_name;
/// use serde_json::json;
///
/// assert_eq!(json_type_name(&json!(1)), "integer");
/// assert_eq!(json_type_name(&json!(1.5)), "number");
/// assert_eq!(json_type_name(&json!("x")), "string");
/// ```
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
    ///
    /// ```
    /// # use stask_plugin_api::ActionSpec;
    /// let a = ActionSpec::new("import", "Import products");
    /// assert_eq!((a.name.as_str(), a.scheduled), ("import", false));
    /// ```
    pub fn new(name: &str, title: &str) -> Self {
        ActionSpec {
            name: name.to_owned(),
            title: title.to_owned(),
            description: String::new(),
            scheduled: false,
            unique_key: None,
        }
    }

    /// Sets the description.
    ///
    /// ```
    /// # use stask_plugin_api::ActionSpec;
    /// let a = ActionSpec::new("import", "Import").description("Data: {\"file\": \"products.csv\"}");
    /// assert!(a.description.contains("products.csv"));
    /// ```
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Marks this as the action schedules run.
    ///
    /// ```
    /// # use stask_plugin_api::ActionSpec;
    /// assert!(ActionSpec::new("sync", "Sync").scheduled().scheduled);
    /// ```
    pub fn scheduled(mut self) -> Self {
        self.scheduled = true;
        self
    }

    /// Sets the default unique key template of the action's tasks (see
    /// [`render_unique_key`]): one import per file at a time, say.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("shop", "Shop")
    ///     .action(ActionSpec::new("import", "Import").unique_key("import:{file}"));
    /// assert_eq!(m.validate(), Ok(()));
    /// let bad = WorkerManifest::new("shop", "Shop")
    ///     .action(ActionSpec::new("import", "Import").unique_key("import:{file"));
    /// assert!(bad.validate().unwrap_err().contains("without its '}'"));
    /// ```
    pub fn unique_key(mut self, template: &str) -> Self {
        self.unique_key = Some(template.to_owned());
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
    ///
    /// ```
    /// # use stask_plugin_api::{SettingKind, SettingSpec};
    /// let s = SettingSpec::string("sender", "Sender");
    /// assert_eq!(s.kind, SettingKind::String);
    /// ```
    pub fn string(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::String)
    }

    /// An integer setting.
    ///
    /// ```
    /// # use stask_plugin_api::{SettingKind, SettingSpec};
    /// let s = SettingSpec::integer("batch_size", "Batch size");
    /// assert_eq!(s.kind, SettingKind::Integer);
    /// ```
    pub fn integer(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::Integer)
    }

    /// A number setting.
    ///
    /// ```
    /// # use stask_plugin_api::{SettingKind, SettingSpec};
    /// let s = SettingSpec::number("rate", "Messages per second");
    /// assert_eq!(s.kind, SettingKind::Number);
    /// ```
    pub fn number(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::Number)
    }

    /// A boolean setting.
    ///
    /// ```
    /// # use stask_plugin_api::{SettingKind, SettingSpec};
    /// let s = SettingSpec::boolean("dry_run", "Dry run");
    /// assert_eq!(s.kind, SettingKind::Boolean);
    /// ```
    pub fn boolean(key: &str, title: &str) -> Self {
        Self::new(key, title, SettingKind::Boolean)
    }

    /// Sets the help text.
    ///
    /// ```
    /// # use stask_plugin_api::SettingSpec;
    /// let s = SettingSpec::string("sender", "Sender").description("Address the newsletter comes from.");
    /// assert_eq!(s.description, "Address the newsletter comes from.");
    /// ```
    pub fn description(mut self, description: &str) -> Self {
        self.description = description.to_owned();
        self
    }

    /// Sets the default value.
    ///
    /// ```
    /// # use stask_plugin_api::SettingSpec;
    /// # use serde_json::json;
    /// // Anything that converts into a JSON value; it must match the kind.
    /// let s = SettingSpec::number("rate", "Rate").default(2.5);
    /// assert_eq!(s.default, Some(json!(2.5)));
    /// ```
    pub fn default(mut self, value: impl Into<Value>) -> Self {
        self.default = Some(value.into());
        self
    }

    /// Marks the setting as required.
    ///
    /// ```
    /// # use stask_plugin_api::prelude::*;
    /// let m = WorkerManifest::new("w", "W")
    ///     .action(ActionSpec::new("run", "Run"))
    ///     .setting(SettingSpec::string("url", "URL").required());
    /// let err = m.resolve_settings(&Default::default()).unwrap_err();
    /// assert_eq!(err, "setting 'url' (string) is required and has no value");
    /// ```
    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    /// Marks the setting as secret: never shown back or logged by the host.
    ///
    /// ```
    /// # use stask_plugin_api::SettingSpec;
    /// // Operators set it with `stask workers settings ID --secret api_key`.
    /// let s = SettingSpec::string("api_key", "API key").secret();
    /// assert!(s.secret);
    /// ```
    pub fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
}
