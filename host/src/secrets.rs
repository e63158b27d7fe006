//! Worker secrets at rest: the values of settings a worker's manifest marks `secret` are
//! stored encrypted, and only the engine opens them, for the runs that need them.
//!
//! * **Cipher**: XChaCha20-Poly1305 (RustCrypto's `chacha20poly1305`), a 256-bit key and
//!   a random 192-bit nonce per value (random nonces of that size never collide in
//!   practice, so no counter has to be kept anywhere). The associated data binds a value
//!   to its worker and setting (`stask-secret-v1 \0 worker \0 key`): a value copied to
//!   another setting or worker does not open.
//! * **Stored form**: the setting's value in the worker's settings JSON is replaced by
//!   `{"$enc": "v1:KEYID:BASE64"}`, BASE64 being the nonce followed by the ciphertext of
//!   the value's JSON text (so integers and booleans keep their type). KEYID is the first
//!   8 hex digits of SHA-256 over the key: it names the key a value needs without saying
//!   anything about it. Setting values are never JSON objects, so nothing else looks like
//!   this.
//! * **The key**: `STASK_SECRET_KEY` when set (it then wins), else `HOME/secret.key`
//!   (0600), made by `stask init` or, for a home without one, when a secret is first
//!   stored (with a notice). A key is 32 random bytes in base64 (`openssl rand -base64
//!   32`). The file holds one key a line: the first encrypts, every one decrypts; a file
//!   holds more than one only while a rotation is under way (or was interrupted).
//! * **Never silently**: a missing or wrong key is an error naming the key it takes and
//!   what to do; nothing is stored under a key that cannot open what is already stored,
//!   and no key file is made while values encrypted under another key exist.

use std::fmt;
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use base64ct::{Base64, Encoding};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use stask_plugin_api::WorkerManifest;
use stask_storage::{SettingsSwap, Store, WorkerRecord};
use zeroize::Zeroizing;

use crate::home::Home;
use crate::problem::Problem;

/// The key file's name in the home.
pub const KEY_FILE: &str = "secret.key";
/// The environment variable that holds the key (and then wins over the file).
pub const KEY_ENV: &str = "STASK_SECRET_KEY";
/// The one field of an encrypted setting value.
pub const ENVELOPE: &str = "$enc";
/// Version of the stored form.
const FORMAT: &str = "v1";
const NONCE_LEN: usize = 24;
const KEY_LEN: usize = 32;

/// A 256-bit key. Its bytes are wiped from memory when it is dropped; `Debug` shows only
/// its id.
pub struct SecretKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
    id: String,
}

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretKey({})", self.id)
    }
}

impl SecretKey {
    /// A new random key from the operating system.
    pub fn generate() -> Result<SecretKey> {
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        getrandom::fill(&mut *bytes)
            .map_err(|e| anyhow!("the operating system's random source is unavailable: {e}"))?;
        Ok(SecretKey::from_bytes(bytes))
    }

    fn from_bytes(bytes: Zeroizing<[u8; KEY_LEN]>) -> SecretKey {
        let mut h = Sha256::new();
        h.update(bytes.as_slice());
        let id = hex::encode(&h.finalize()[..4]);
        SecretKey { bytes, id }
    }

    /// Reads a key written as base64 (surrounding white space ignored); `None` when it
    /// is not 32 bytes of base64.
    pub fn parse(text: &str) -> Option<SecretKey> {
        let decoded = Zeroizing::new(Base64::decode_vec(text.trim()).ok()?);
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        if decoded.len() != KEY_LEN {
            return None;
        }
        bytes.copy_from_slice(&decoded);
        Some(SecretKey::from_bytes(bytes))
    }

    /// The key's id: 8 hex digits of its SHA-256, stored with every value it encrypts.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as base64, as the key file and `STASK_SECRET_KEY` hold it.
    pub fn encoded(&self) -> Zeroizing<String> {
        Zeroizing::new(Base64::encode_string(&*self.bytes))
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        XChaCha20Poly1305::new((&*self.bytes).into())
    }
}

/// What a value is bound to: its worker and setting.
fn aad(worker: &str, key: &str) -> Vec<u8> {
    format!("stask-secret-{FORMAT}\0{worker}\0{key}").into_bytes()
}

/// The encrypted text of a stored value, when it is encrypted.
pub fn sealed_text(v: &Value) -> Option<&str> {
    match v {
        Value::Object(m) if m.len() == 1 => m.get(ENVELOPE)?.as_str(),
        _ => None,
    }
}

/// Whether a stored value is encrypted.
pub fn is_sealed(v: &Value) -> bool {
    sealed_text(v).is_some()
}

/// The id of the key an encrypted value needs (`None` when it is not in a form this
/// stask writes).
pub fn sealed_key_id(v: &Value) -> Option<&str> {
    let mut parts = sealed_text(v)?.splitn(3, ':');
    (parts.next()? == FORMAT).then_some(())?;
    parts.next()
}

/// Where a key ring came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// `STASK_SECRET_KEY`.
    Env,
    /// A key file.
    File(PathBuf),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Env => write!(f, "{KEY_ENV}"),
            Origin::File(p) => write!(f, "'{}'", p.display()),
        }
    }
}

/// The keys in use: the first encrypts, every one decrypts.
#[derive(Debug)]
pub struct KeyRing {
    keys: Vec<SecretKey>,
    origin: Origin,
}

/// Why a stored secret does not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// No key is set up at all.
    NoKey,
    /// It was encrypted with a key that is not in use (its id).
    OtherKey(String),
    /// The key matches but the value does not open: damaged, or copied from another
    /// setting or worker.
    Damaged,
}

impl KeyRing {
    /// A ring of `keys` (at least one) from `origin`.
    pub fn new(keys: Vec<SecretKey>, origin: Origin) -> KeyRing {
        assert!(!keys.is_empty(), "a key ring holds at least one key");
        KeyRing { keys, origin }
    }

    /// The key new values are encrypted with.
    pub fn current(&self) -> &SecretKey {
        &self.keys[0]
    }

    /// Every key's id, the current one first.
    pub fn ids(&self) -> Vec<&str> {
        self.keys.iter().map(SecretKey::id).collect()
    }

    /// How many keys the ring holds (more than one: a rotation is under way).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Never true (a ring holds at least one key).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Where the keys came from.
    pub fn origin(&self) -> &Origin {
        &self.origin
    }

    /// Encrypts `value` of setting `key` of `worker` with the current key.
    pub fn seal(&self, worker: &str, key: &str, value: &Value) -> Result<Value> {
        seal_with(self.current(), worker, key, value)
    }

    /// Decrypts a stored value of setting `key` of `worker`.
    pub fn open(&self, worker: &str, key: &str, stored: &Value) -> Result<Value, OpenError> {
        let text = sealed_text(stored).ok_or(OpenError::Damaged)?;
        let mut parts = text.splitn(3, ':');
        let (Some(FORMAT), Some(id), Some(data)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(OpenError::Damaged);
        };
        let k = self
            .keys
            .iter()
            .find(|k| k.id == id)
            .ok_or_else(|| OpenError::OtherKey(id.to_owned()))?;
        let raw = Base64::decode_vec(data).map_err(|_| OpenError::Damaged)?;
        if raw.len() < NONCE_LEN {
            return Err(OpenError::Damaged);
        }
        let (nonce, ciphertext) = raw.split_at(NONCE_LEN);
        let aad = aad(worker, key);
        let plain = Zeroizing::new(
            k.cipher()
                .decrypt(
                    XNonce::from_slice(nonce),
                    Payload {
                        msg: ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| OpenError::Damaged)?,
        );
        serde_json::from_slice(&plain).map_err(|_| OpenError::Damaged)
    }
}

fn seal_with(k: &SecretKey, worker: &str, key: &str, value: &Value) -> Result<Value> {
    let plain = Zeroizing::new(serde_json::to_vec(value)?);
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce)
        .map_err(|e| anyhow!("the operating system's random source is unavailable: {e}"))?;
    let aad = aad(worker, key);
    let ciphertext = k
        .cipher()
        .encrypt(
            XNonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad,
            },
        )
        .map_err(|_| anyhow!("cannot encrypt setting '{key}'"))?;
    let mut raw = nonce.to_vec();
    raw.extend_from_slice(&ciphertext);
    let text = format!("{FORMAT}:{}:{}", k.id, Base64::encode_string(&raw));
    Ok(serde_json::json!({ ENVELOPE: text }))
}

/// Where the key comes from: `STASK_SECRET_KEY` when set, else the key file.
#[derive(Clone)]
pub struct KeySource {
    env: Option<Zeroizing<String>>,
    file: Option<PathBuf>,
}

impl fmt::Debug for KeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySource")
            .field("env", &self.env.as_ref().map(|_| "(set)"))
            .field("file", &self.file)
            .finish()
    }
}

impl KeySource {
    /// `env` is the variable's value when it is set; `file` the key file, if any.
    pub fn new(env: Option<String>, file: Option<PathBuf>) -> KeySource {
        KeySource {
            env: env.map(Zeroizing::new),
            file,
        }
    }

    /// The key of `home`: `STASK_SECRET_KEY`, else `HOME/secret.key`.
    pub fn for_home(home: &Home) -> KeySource {
        KeySource::for_dir(home.root())
    }

    /// The key of the home at `root`.
    pub fn for_dir(root: &Path) -> KeySource {
        KeySource::new(std::env::var(KEY_ENV).ok(), Some(root.join(KEY_FILE)))
    }

    /// The key of the home a store belongs to, for callers that hold only a store (the
    /// domain layer, on behalf of the API): the key file is in the home, beside the
    /// database. A store with no local files (PostgreSQL) uses the key file of the home
    /// this process opened ([`use_home_key_file`]), as the engine does, else only
    /// `STASK_SECRET_KEY`.
    pub fn for_store(store: &dyn Store) -> KeySource {
        let file = store
            .private_files()
            .first()
            .and_then(|db| db.parent())
            .map(|dir| dir.join(KEY_FILE))
            .or_else(|| HOME_KEY_FILE.get().cloned());
        KeySource::new(std::env::var(KEY_ENV).ok(), file)
    }

    /// Whether `STASK_SECRET_KEY` is set (and so wins).
    pub fn uses_env(&self) -> bool {
        self.env.is_some()
    }

    /// The key file.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Where a key is looked for, for messages.
    pub fn describe(&self) -> String {
        match (&self.env, &self.file) {
            (Some(_), _) => KEY_ENV.to_owned(),
            (None, Some(f)) => format!("'{}'", f.display()),
            (None, None) => format!("{KEY_ENV} (not set)"),
        }
    }

    /// What to do when no key is found.
    fn restore_hint(&self) -> String {
        match &self.file {
            Some(f) => format!(
                "restore '{}' from your backup (or set {KEY_ENV} to the key)",
                f.display()
            ),
            None => format!("set {KEY_ENV} to the key"),
        }
    }

    /// Loads the keys. `Ok(None)`: no key is set up (the variable unset and no key
    /// file). A key file others can read is made private first (with a warning).
    pub fn load(&self) -> Result<Option<KeyRing>> {
        if let Some(text) = &self.env {
            if text.trim().is_empty() {
                bail!("{KEY_ENV} is set but empty: set it to a key (32 random bytes in base64, e.g. from `openssl rand -base64 32`), or unset it to use the key file");
            }
            let key = SecretKey::parse(text).ok_or_else(|| {
                anyhow!("{KEY_ENV} does not hold a key: it must be 32 bytes in base64 (e.g. from `openssl rand -base64 32`)")
            })?;
            return Ok(Some(KeyRing::new(vec![key], Origin::Env)));
        }
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!(
                "cannot read the secret key file '{}': {e}; run stask as the home's owner, or make the file readable by its owner (`chmod 600 {}`)",
                path.display(),
                path.display()
            ),
        };
        let done = crate::privacy::tighten(std::slice::from_ref(path), std::slice::from_ref(path))?;
        for (p, mode) in &done.changed {
            tracing::warn!(
                "made the secret key file '{}' private to its owner (it was mode {mode:04o})",
                p.display()
            );
        }
        let mut keys = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            keys.push(SecretKey::parse(line).ok_or_else(|| {
                anyhow!(
                    "line {} of the secret key file '{}' is not a key (32 bytes in base64); restore the file from your backup",
                    n + 1,
                    path.display()
                )
            })?);
        }
        if keys.is_empty() {
            bail!(
                "the secret key file '{}' holds no key; restore it from your backup",
                path.display()
            );
        }
        Ok(Some(KeyRing::new(keys, Origin::File(path.clone()))))
    }

    /// Creates the key file with a new key (0600; fails if it already exists).
    fn create_file(&self) -> Result<KeyRing> {
        let Some(path) = &self.file else {
            bail!("no key file to create; set {KEY_ENV}");
        };
        let key = SecretKey::generate()?;
        write_new(path, &[&key])?;
        Ok(KeyRing::new(vec![key], Origin::File(path.clone())))
    }
}

/// The key file of the home this process opened, for stores that live elsewhere.
static HOME_KEY_FILE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// Makes `HOME/secret.key` of `home` the key file of stores with no files of their own
/// (a PostgreSQL database): without it, storing a secret through the CLI or the API on
/// such a home would need `STASK_SECRET_KEY` even though the home has a key file, which
/// its engine reads. The first home a process opens wins.
pub fn use_home_key_file(home: &Home) {
    let _ = HOME_KEY_FILE.set(home.root().join(KEY_FILE));
}

/// Creates `path` holding `keys` (one a line), mode 0600, synced to disk.
fn write_new(path: &Path, keys: &[&SecretKey]) -> Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create the secret key file '{}'", path.display()))?;
    write_keys(&mut f, keys)
        .and_then(|()| sync_dir(path))
        .with_context(|| format!("cannot write the secret key file '{}'", path.display()))
}

fn write_keys(f: &mut std::fs::File, keys: &[&SecretKey]) -> Result<()> {
    let mut text = Zeroizing::new(String::new());
    for k in keys {
        text.push_str(&k.encoded());
        text.push('\n');
    }
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    Ok(())
}

fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Replaces the key file's contents with `keys` at once (a new file renamed over it).
fn replace_file(path: &Path, keys: &[&SecretKey]) -> Result<()> {
    let tmp = path.with_file_name(format!("{KEY_FILE}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let write = || -> Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        write_keys(&mut f, keys)?;
        std::fs::rename(&tmp, path)?;
        sync_dir(path)
    };
    write().with_context(|| format!("cannot write the secret key file '{}'", path.display()))
}

/// What `stask init` did about the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum InitKey {
    /// A new key file was created.
    Created {
        /// The key file.
        path: PathBuf,
    },
    /// The key file exists.
    Exists {
        /// The key file.
        path: PathBuf,
    },
    /// `STASK_SECRET_KEY` is set; no file is made.
    FromEnv,
    /// No key file was made: the stored secrets were encrypted with a key that is gone.
    Missing {
        /// What to do.
        message: String,
    },
}

/// Makes sure a new home, or an older one, has a key (`stask init`), and encrypts the
/// secrets an older stask stored in plaintext.
pub fn init_key(home: &Home) -> Result<InitKey> {
    let source = KeySource::for_home(home);
    let mut store = home.store()?;
    let state = if source.uses_env() {
        source.load()?;
        InitKey::FromEnv
    } else {
        let path = source.file().expect("a home has a key file").to_path_buf();
        if source.load()?.is_some() {
            InitKey::Exists { path }
        } else if let Some(u) = first_sealed(&*store)? {
            InitKey::Missing {
                message: format!(
                    "no secret key was created: secret setting '{}' of worker '{}' (and maybe others) is encrypted with key {} and '{}' is missing. {}; if the key is lost, run `stask secrets rotate-key --forget-unreadable` and set those secrets again",
                    u.key,
                    u.worker,
                    u.key_id,
                    path.display(),
                    source.restore_hint()
                ),
            }
        } else {
            source.create_file()?;
            InitKey::Created { path }
        }
    };
    if !matches!(state, InitKey::Missing { .. }) {
        let report = encrypt_plaintext(&source, &mut *store)?;
        report.log();
    }
    Ok(state)
}

/// One encrypted value found in the store.
struct SealedValue {
    worker: String,
    key: String,
    key_id: String,
}

fn first_sealed(store: &dyn Store) -> Result<Option<SealedValue>> {
    for w in store.list_workers()? {
        for (key, value) in settings_of(&w) {
            if is_sealed(&value) {
                return Ok(Some(SealedValue {
                    worker: w.identifier.clone(),
                    key,
                    key_id: sealed_key_id(&value).unwrap_or("?").to_owned(),
                }));
            }
        }
    }
    Ok(None)
}

fn settings_of(w: &WorkerRecord) -> Map<String, Value> {
    serde_json::from_str(&w.settings).unwrap_or_default()
}

fn manifest_of(w: &WorkerRecord) -> Option<WorkerManifest> {
    serde_json::from_str(&w.manifest).ok()
}

/// Keys of `settings` that `manifest` marks secret and that are stored in plaintext.
pub fn plaintext_secrets(manifest: &WorkerManifest, settings: &Map<String, Value>) -> Vec<String> {
    manifest
        .settings
        .iter()
        .filter(|s| s.secret)
        .filter(|s| settings.get(&s.key).is_some_and(|v| !is_sealed(v)))
        .map(|s| s.key.clone())
        .collect()
}

/// The keys to encrypt new values with, for an operation that stores secrets: the keys
/// in use, or a new key file (with a notice) for a home that never had one. Refused,
/// saying what to do, when encrypted values exist but their key is not found.
fn ring_for_writing(source: &KeySource, store: &dyn Store, field: &str) -> Result<KeyRing> {
    if let Some(ring) = source.load()? {
        return Ok(ring);
    }
    if let Some(u) = first_sealed(store)? {
        return Err(Problem::invalid(
            field,
            "secret_key_missing",
            format!(
                "cannot store secrets: there is no secret key ({} is missing and {KEY_ENV} is not set), and secret setting '{}' of worker '{}' is already encrypted with key {}. {}; if the key is lost, run `stask secrets rotate-key --forget-unreadable` and set those secrets again",
                source.file().map_or_else(|| "the key file".to_owned(), |f| format!("'{}'", f.display())),
                u.key,
                u.worker,
                u.key_id,
                source.restore_hint()
            ),
        )
        .into());
    }
    let ring = source.create_file()?;
    tracing::warn!(
        "created a new secret key {} (key {}) to encrypt worker secrets: back it up with the database; without it the stored secrets cannot be read",
        ring.origin(),
        ring.current().id()
    );
    Ok(ring)
}

/// An operator-readable account of why a stored secret does not open, with what to do.
pub fn unreadable_message(
    worker: &str,
    key: &str,
    e: &OpenError,
    ring: Option<&KeyRing>,
    source: &KeySource,
) -> String {
    let again = format!("`stask workers settings {worker} --secret {key}`");
    match (e, ring) {
        (OpenError::NoKey, _) | (_, None) => format!(
            "secret setting '{key}' of worker '{worker}' is encrypted, but there is no secret key ({} is missing and {KEY_ENV} is not set): {}, or set the secret again with {again}",
            source.file().map_or_else(|| "the key file".to_owned(), |f| format!("'{}'", f.display())),
            source.restore_hint()
        ),
        (OpenError::OtherKey(id), Some(ring)) => format!(
            "secret setting '{key}' of worker '{worker}' was encrypted with key {id}, but the key in use (from {}) is {}: run stask with the key the secrets were stored with (in {} or {KEY_ENV}), or set the secret again with {again}",
            ring.origin(),
            ring.ids().join(", "),
            source.file().map_or_else(|| "the key file".to_owned(), |f| format!("'{}'", f.display())),
        ),
        (OpenError::Damaged, Some(_)) => format!(
            "secret setting '{key}' of worker '{worker}' cannot be decrypted: the stored value is damaged or was copied from another setting; set it again with {again}"
        ),
    }
}

/// Encrypts the plaintext secrets of a worker's new settings for storing (the domain
/// layer's settings change). `settings` is the whole new settings object; values that
/// are already encrypted stay as they are, but must open with the keys in use (nothing
/// is stored under a key that cannot open the rest). Nothing needs a key when there is
/// no plaintext secret.
pub fn seal_settings(
    store: &dyn Store,
    worker: &str,
    manifest: &WorkerManifest,
    settings: &mut Map<String, Value>,
) -> Result<()> {
    let plain = plaintext_secrets(manifest, settings);
    let Some(first) = plain.first() else {
        return Ok(());
    };
    let source = KeySource::for_store(store);
    let ring = ring_for_writing(&source, store, first)?;
    for (key, value) in settings.iter() {
        if is_sealed(value) {
            if let Err(e) = ring.open(worker, key, value) {
                let message = unreadable_message(worker, key, &e, Some(&ring), &source);
                return Err(Problem::invalid(
                    key,
                    "secret_unreadable",
                    format!("{message}; nothing was changed (secrets of one worker all use one key; set or unset '{key}' in the same change)"),
                )
                .into());
            }
        }
    }
    for key in plain {
        let sealed = ring.seal(worker, &key, &settings[&key])?;
        settings.insert(key, sealed);
    }
    Ok(())
}

/// What [`encrypt_plaintext`] did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct EncryptReport {
    /// Secret values encrypted.
    pub encrypted: usize,
    /// Workers whose settings changed.
    pub workers: Vec<String>,
    /// Workers left as they were because their encrypted values do not open with the
    /// keys in use (each with why).
    pub skipped: Vec<String>,
    /// The key used.
    pub key_id: Option<String>,
}

impl EncryptReport {
    /// Logs what was done (a warning when something was left in plaintext).
    pub fn log(&self) {
        if self.encrypted > 0 {
            tracing::warn!(
                "encrypted {} secret setting value(s) of worker(s) {} that an older stask stored in plaintext (key {})",
                self.encrypted,
                self.workers.join(", "),
                self.key_id.as_deref().unwrap_or("?")
            );
        }
        for s in &self.skipped {
            tracing::warn!("left secrets in plaintext: {s}");
        }
    }
}

/// Encrypts every secret stored in plaintext (by an older stask, or under a manifest
/// that marked the key secret later), in one store operation. Creates the key file when
/// the home has none and nothing is encrypted yet. A worker whose encrypted values do
/// not open with the keys in use is left as it is (reported).
pub fn encrypt_plaintext(source: &KeySource, store: &mut dyn Store) -> Result<EncryptReport> {
    let mut report = EncryptReport::default();
    let workers = store.list_workers()?;
    let pending: Vec<(&WorkerRecord, Map<String, Value>, Vec<String>)> = workers
        .iter()
        .filter_map(|w| {
            let settings = settings_of(w);
            let plain = plaintext_secrets(&manifest_of(w)?, &settings);
            (!plain.is_empty()).then_some((w, settings, plain))
        })
        .collect();
    let Some((_, _, first)) = pending.first() else {
        return Ok(report);
    };
    let ring = ring_for_writing(source, &*store, &first[0])?;
    report.key_id = Some(ring.current().id().to_owned());
    let mut swaps = Vec::new();
    'workers: for (w, mut settings, plain) in pending {
        for (key, value) in &settings {
            if is_sealed(value) {
                if let Err(e) = ring.open(&w.identifier, key, value) {
                    report.skipped.push(unreadable_message(
                        &w.identifier,
                        key,
                        &e,
                        Some(&ring),
                        source,
                    ));
                    continue 'workers;
                }
            }
        }
        for key in plain {
            let sealed = ring.seal(&w.identifier, &key, &settings[&key])?;
            settings.insert(key, sealed);
            report.encrypted += 1;
        }
        report.workers.push(w.identifier.clone());
        swaps.push(SettingsSwap {
            identifier: w.identifier.clone(),
            expected: w.settings.clone(),
            settings: Value::Object(settings).to_string(),
        });
    }
    if !store.swap_worker_settings(&swaps)? {
        bail!("worker settings changed while their secrets were being encrypted; nothing was changed, run the command again");
    }
    Ok(report)
}

/// What [`rotate`] did.
#[derive(Debug, Clone, Serialize)]
pub struct RotateReport {
    /// The new key's id.
    pub key_id: String,
    /// The ids of the keys replaced.
    pub previous: Vec<String>,
    /// Secret values now encrypted with the new key.
    pub secrets: usize,
    /// Workers they belong to.
    pub workers: usize,
    /// Values removed because no key opened them (`--forget-unreadable`), as
    /// `worker.key`.
    pub forgotten: Vec<String>,
    /// The key file written, when the keys come from a file.
    pub key_file: Option<PathBuf>,
    /// Whether `STASK_SECRET_KEY` must now be set to the new key.
    pub set_env: bool,
}

/// Re-encrypts every stored secret with a new key (`new`, or a random one) in one store
/// operation: either all secrets use the new key or none does.
///
/// With a key file the sequence survives a crash at any point: the file first lists the
/// new key before the old ones (both open everything; new values use the new key), then
/// the store changes in one transaction, then the file keeps only the new key once the
/// store holds nothing else. With `STASK_SECRET_KEY` the new key must be given (`new`),
/// and the variable must be set to it afterwards.
///
/// Refused, changing nothing, when a stored secret does not open with the keys in use,
/// unless `forget_unreadable`: then those values are removed (listed in the report) so
/// they can be set again.
pub fn rotate(
    source: &KeySource,
    store: &mut dyn Store,
    new: Option<SecretKey>,
    forget_unreadable: bool,
) -> Result<RotateReport> {
    if source.uses_env() && new.is_none() {
        return Err(Problem::conflict(
            "secret_key_from_env",
            format!("the secret key comes from {KEY_ENV}, which stask cannot change"),
        )
        .hint(format!(
            "give the new key on standard input with --new-key-stdin (e.g. `openssl rand -base64 32 > new.key; stask secrets rotate-key --new-key-stdin < new.key`), then set {KEY_ENV} to it; or unset {KEY_ENV} to rotate the key file"
        ))
        .into());
    }
    let ring = source.load()?;
    let workers = store.list_workers()?;
    // Every secret, opened.
    let mut unreadable = Vec::new();
    let mut forgotten = Vec::new();
    let mut opened: Vec<(&WorkerRecord, Map<String, Value>, Vec<String>)> = Vec::new();
    for w in &workers {
        let mut settings = settings_of(w);
        let secret_keys: Vec<String> = manifest_of(w)
            .map(|m| {
                m.settings
                    .iter()
                    .filter(|s| s.secret)
                    .map(|s| s.key.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut to_seal = Vec::new();
        let keys: Vec<String> = settings.keys().cloned().collect();
        for key in keys {
            let value = settings[&key].clone();
            if is_sealed(&value) {
                let result = match &ring {
                    Some(r) => r.open(&w.identifier, &key, &value),
                    None => Err(OpenError::NoKey),
                };
                match result {
                    Ok(plain) => {
                        settings.insert(key.clone(), plain);
                        to_seal.push(key);
                    }
                    Err(e) => {
                        unreadable.push(unreadable_message(
                            &w.identifier,
                            &key,
                            &e,
                            ring.as_ref(),
                            source,
                        ));
                        forgotten.push(format!("{}.{key}", w.identifier));
                        settings.remove(&key);
                    }
                }
            } else if secret_keys.contains(&key) {
                to_seal.push(key);
            }
        }
        if !to_seal.is_empty() || settings.len() != settings_of(w).len() {
            opened.push((w, settings, to_seal));
        }
    }
    if !unreadable.is_empty() && !forget_unreadable {
        return Err(Problem::conflict(
            "secret_unreadable",
            format!(
                "the key was not rotated, nothing was changed: {} stored secret(s) do not open with the keys in use:\n  {}",
                unreadable.len(),
                unreadable.join("\n  ")
            ),
        )
        .hint("run stask with the key those secrets were stored with, or remove them with `stask secrets rotate-key --forget-unreadable` and set them again")
        .into());
    }
    let new = match new {
        Some(k) => k,
        None => SecretKey::generate()?,
    };
    if ring.as_ref().is_some_and(|r| r.ids().contains(&new.id())) {
        bail!(
            "the new key is already in use (key {}); give a different one",
            new.id()
        );
    }
    let previous: Vec<String> = ring
        .as_ref()
        .map(|r| r.ids().iter().map(|s| (*s).to_owned()).collect())
        .unwrap_or_default();
    let key_file = if source.uses_env() {
        None
    } else {
        let path = source.file().context("no key file")?.to_path_buf();
        // First: the new key in front of the old ones, so that whatever happens next
        // every stored value opens.
        let mut keys = vec![&new];
        if let Some(r) = &ring {
            keys.extend(r.keys.iter());
        }
        if path.exists() {
            replace_file(&path, &keys)?;
        } else {
            write_new(&path, &keys)?;
        }
        Some(path)
    };
    let mut swaps = Vec::new();
    let mut secrets = 0;
    for (w, mut settings, to_seal) in opened {
        for key in to_seal {
            let sealed = seal_with(&new, &w.identifier, &key, &settings[&key])?;
            settings.insert(key, sealed);
            secrets += 1;
        }
        swaps.push(SettingsSwap {
            identifier: w.identifier.clone(),
            expected: w.settings.clone(),
            settings: Value::Object(settings).to_string(),
        });
    }
    let workers_changed = swaps.len();
    if !store.swap_worker_settings(&swaps)? {
        bail!(
            "worker settings changed while the key was being rotated; no secret was re-encrypted{}: run the command again",
            if key_file.is_some() {
                " (the key file lists the new key and the old, so every secret still opens)"
            } else {
                ""
            }
        );
    }
    if let Some(path) = &key_file {
        // Last: drop the old keys, once nothing stored needs them.
        let stale = store.list_workers()?.iter().any(|w| {
            settings_of(w)
                .values()
                .any(|v| is_sealed(v) && sealed_key_id(v) != Some(new.id()))
        });
        if stale {
            tracing::warn!(
                "settings changed during the rotation: '{}' keeps the old key(s) beside the new one; run `stask secrets rotate-key` again",
                path.display()
            );
        } else {
            replace_file(path, &[&new])?;
        }
    }
    Ok(RotateReport {
        key_id: new.id().to_owned(),
        previous,
        secrets,
        workers: workers_changed,
        forgotten: if forget_unreadable {
            forgotten
        } else {
            Vec::new()
        },
        key_file,
        set_env: source.uses_env(),
    })
}

/// One finding of [`audit`]: what is wrong and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyProblem {
    /// What is wrong.
    pub problem: String,
    /// What to do.
    pub fix: String,
}

/// What `stask check` needs to know about the key and the stored secrets.
#[derive(Debug, Default)]
pub struct KeyAudit {
    /// Where the key comes from, when one was found.
    pub origin: Option<String>,
    /// The current key's id.
    pub key_id: Option<String>,
    /// Encrypted values, all of which opened when `problems` is empty.
    pub encrypted: usize,
    /// What is wrong.
    pub problems: Vec<KeyProblem>,
}

/// Checks that a key is present, private and able to open every stored secret, and
/// that no secret is stored in plaintext. Changes nothing (a key file others can read
/// is reported, not fixed).
pub fn audit(source: &KeySource, store: Option<&dyn Store>) -> KeyAudit {
    let mut out = KeyAudit::default();
    let mut problems = Vec::new();
    let mut problem = |problem: String, fix: String| problems.push(KeyProblem { problem, fix });
    if let (false, Some(path)) = (source.uses_env(), source.file()) {
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.mode() & 0o7777;
            if mode & 0o077 != 0 {
                problem(
                    format!(
                        "the secret key file '{}' can be used by other users (mode {mode:04o})",
                        path.display()
                    ),
                    format!("chmod 600 {}", path.display()),
                );
            }
            // SAFETY: geteuid cannot fail.
            let me = unsafe { libc::geteuid() };
            if meta.uid() != me {
                problem(
                    format!(
                        "the secret key file '{}' belongs to uid {}, not to the user running stask (uid {me})",
                        path.display(),
                        meta.uid()
                    ),
                    format!("chown {me} {}", path.display()),
                );
            }
        }
    }
    let ring = match source.load_quietly() {
        Ok(r) => r,
        Err(e) => {
            problem(
                format!("{e:#}"),
                "restore the key from your backup".to_owned(),
            );
            out.problems = problems;
            return out;
        }
    };
    if let Some(r) = &ring {
        out.origin = Some(r.origin().to_string());
        out.key_id = Some(r.current().id().to_owned());
        if r.len() > 1 {
            problem(
                format!(
                    "{} holds {} keys: a key rotation did not finish",
                    r.origin(),
                    r.len()
                ),
                "stask secrets rotate-key".to_owned(),
            );
        }
    }
    let workers = match store.map(|s| s.list_workers()) {
        Some(Ok(w)) => w,
        _ => Vec::new(),
    };
    let mut unreadable = Vec::new();
    let mut plaintext = Vec::new();
    for w in &workers {
        let settings = settings_of(w);
        for (key, value) in &settings {
            if is_sealed(value) {
                out.encrypted += 1;
                let result = match &ring {
                    Some(r) => r.open(&w.identifier, key, value),
                    None => Err(OpenError::NoKey),
                };
                if let Err(e) = result {
                    unreadable.push(unreadable_message(
                        &w.identifier,
                        key,
                        &e,
                        ring.as_ref(),
                        source,
                    ));
                }
            }
        }
        if let Some(m) = manifest_of(w) {
            for key in plaintext_secrets(&m, &settings) {
                plaintext.push(format!("{}.{key}", w.identifier));
            }
        }
    }
    if ring.is_none() {
        let file = source.file().map_or_else(
            || "the key file".to_owned(),
            |f| format!("'{}'", f.display()),
        );
        if unreadable.is_empty() {
            problem(
                format!("there is no secret key: {file} is missing and {KEY_ENV} is not set"),
                "stask init (creates the key file)".to_owned(),
            );
        } else {
            problem(
                format!(
                    "there is no secret key ({file} is missing and {KEY_ENV} is not set), and {} stored secret(s) are encrypted",
                    unreadable.len()
                ),
                format!(
                    "{}; if the key is lost: stask secrets rotate-key --forget-unreadable, then set those secrets again",
                    source.restore_hint()
                ),
            );
        }
    } else {
        for u in unreadable {
            problem(
                u,
                "use the key the secret was stored with, or set the secret again".to_owned(),
            );
        }
    }
    if !plaintext.is_empty() {
        problem(
            format!(
                "secret settings stored unencrypted (by an older stask): {}",
                plaintext.join(", ")
            ),
            "stask secrets encrypt".to_owned(),
        );
    }
    out.problems = problems;
    out
}

impl KeySource {
    /// [`KeySource::load`] without tightening the key file's mode.
    fn load_quietly(&self) -> Result<Option<KeyRing>> {
        if self.env.is_some() {
            return self.load();
        }
        let Some(path) = &self.file else {
            return Ok(None);
        };
        let text = match std::fs::read_to_string(path) {
            Ok(t) => Zeroizing::new(t),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => bail!("cannot read the secret key file '{}': {e}", path.display()),
        };
        let keys: Option<Vec<SecretKey>> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(SecretKey::parse)
            .collect();
        match keys {
            Some(k) if !k.is_empty() => Ok(Some(KeyRing::new(k, Origin::File(path.clone())))),
            Some(_) => bail!(
                "the secret key file '{}' holds no key; restore it from your backup",
                path.display()
            ),
            None => bail!(
                "the secret key file '{}' holds something that is not a key (32 bytes in base64); restore it from your backup",
                path.display()
            ),
        }
    }
}

/// The keys an engine loaded when it started, for opening secrets as runs need them.
#[derive(Debug, Default)]
pub struct EngineKeys {
    source: Option<KeySource>,
    /// The keys, or why they could not be loaded.
    ring: Option<Result<Option<KeyRing>, String>>,
}

impl EngineKeys {
    /// Loads the keys of `home` for an engine (once per engine start), first encrypting
    /// secrets an older stask stored in plaintext (the upgrade; a failure there is
    /// logged and the plaintext values keep working). A key that cannot be loaded is
    /// not an error here: tasks that need it fail, each with the reason.
    pub fn start(home: &Home, store: &mut dyn Store) -> EngineKeys {
        let source = KeySource::for_home(home);
        match encrypt_plaintext(&source, store) {
            Ok(report) => report.log(),
            Err(e) => tracing::warn!("secrets stored in plaintext were not encrypted: {e:#}"),
        }
        let ring = source.load().map_err(|e| format!("{e:#}"));
        if let Err(e) = &ring {
            tracing::warn!("tasks of workers with secret settings will fail: {e}");
        }
        EngineKeys {
            source: Some(source),
            ring: Some(ring),
        }
    }

    /// Keys for tests: `ring` as if loaded from `source`.
    pub fn with(source: KeySource, ring: Option<KeyRing>) -> EngineKeys {
        EngineKeys {
            source: Some(source),
            ring: Some(Ok(ring)),
        }
    }

    /// Replaces the encrypted values of worker `worker`'s settings with what they hold.
    /// A value encrypted with a key this engine does not know makes it read the key
    /// file again first (the key may have been rotated while it ran). The error says
    /// which setting and what to do.
    pub fn open_settings(
        &mut self,
        worker: &str,
        settings: &mut Map<String, Value>,
    ) -> Result<(), String> {
        if !settings.values().any(is_sealed) {
            return Ok(());
        }
        let needs_reload = match &self.ring {
            Some(Ok(Some(r))) => settings
                .values()
                .any(|v| is_sealed(v) && sealed_key_id(v).is_some_and(|id| !r.ids().contains(&id))),
            _ => true,
        };
        // Only a key file can change while the engine runs; a failed read keeps the
        // keys already loaded.
        let file_source = self
            .source
            .as_ref()
            .filter(|s| !s.uses_env() && s.file().is_some());
        if let (true, Some(source)) = (needs_reload, file_source) {
            let have = matches!(self.ring, Some(Ok(Some(_))));
            match source.load() {
                Ok(Some(r)) => self.ring = Some(Ok(Some(r))),
                Ok(None) if !have => self.ring = Some(Ok(None)),
                Err(e) if !have => self.ring = Some(Err(format!("{e:#}"))),
                _ => {}
            }
        }
        let source = self
            .source
            .clone()
            .unwrap_or_else(|| KeySource::new(None, None));
        let ring = match &self.ring {
            Some(Ok(r)) => r.as_ref(),
            Some(Err(e)) => {
                return Err(format!(
                    "worker '{worker}' has secret settings but the secret key cannot be loaded: {e}"
                ))
            }
            None => None,
        };
        for (key, value) in settings.iter_mut() {
            if !is_sealed(value) {
                continue;
            }
            let opened = match ring {
                Some(r) => r.open(worker, key, value),
                None => Err(OpenError::NoKey),
            };
            match opened {
                Ok(plain) => *value = plain,
                Err(e) => return Err(unreadable_message(worker, key, &e, ring, &source)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ring() -> KeyRing {
        KeyRing::new(vec![SecretKey::generate().unwrap()], Origin::Env)
    }

    #[test]
    fn values_keep_their_type_and_open_only_where_they_were_stored() {
        let r = ring();
        for v in [json!("s3cr3t"), json!(42), json!(true), json!(1.5)] {
            let sealed = r.seal("w", "k", &v).unwrap();
            assert!(is_sealed(&sealed));
            assert!(!sealed.to_string().contains("s3cr3t"));
            assert_eq!(sealed_key_id(&sealed), Some(r.current().id()));
            assert_eq!(r.open("w", "k", &sealed).unwrap(), v);
            // Bound to its worker and setting.
            assert_eq!(r.open("w", "other", &sealed), Err(OpenError::Damaged));
            assert_eq!(r.open("v", "k", &sealed), Err(OpenError::Damaged));
        }
        // Two encryptions of one value differ (random nonces).
        let v = json!("same");
        assert_ne!(r.seal("w", "k", &v).unwrap(), r.seal("w", "k", &v).unwrap());
        // Another key: named by its id.
        let other = ring();
        let sealed = r.seal("w", "k", &v).unwrap();
        assert_eq!(
            other.open("w", "k", &sealed),
            Err(OpenError::OtherKey(r.current().id().to_owned()))
        );
        // Tampering is detected.
        let text = sealed_text(&sealed).unwrap();
        let mut bytes = text.as_bytes().to_vec();
        let last = bytes.len() - 3;
        bytes[last] = if bytes[last] == b'A' { b'B' } else { b'A' };
        let tampered = json!({ ENVELOPE: String::from_utf8(bytes).unwrap() });
        assert_eq!(r.open("w", "k", &tampered), Err(OpenError::Damaged));
        assert!(!is_sealed(&json!({"$enc": 1})) && !is_sealed(&json!("x")));
    }

    #[test]
    fn keys_are_base64_of_32_bytes_and_the_file_wins_only_without_the_variable() {
        let k = SecretKey::generate().unwrap();
        let again = SecretKey::parse(&format!(" {}\n", &*k.encoded())).unwrap();
        assert_eq!(again.id(), k.id());
        assert!(SecretKey::parse("c2hvcnQ=").is_none());
        assert!(SecretKey::parse("not base64!").is_none());
        assert!(!format!("{k:?}").contains(&*k.encoded()));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(KEY_FILE);
        let src = KeySource::new(None, Some(file.clone()));
        assert!(src.load().unwrap().is_none(), "no file: no key");
        let created = src.create_file().unwrap();
        let mode = std::fs::metadata(&file).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(src.create_file().is_err(), "never overwritten");
        let loaded = src.load().unwrap().unwrap();
        assert_eq!(loaded.current().id(), created.current().id());

        let env = SecretKey::generate().unwrap();
        let src = KeySource::new(Some(env.encoded().to_string()), Some(file.clone()));
        let r = src.load().unwrap().unwrap();
        assert_eq!((r.current().id(), r.origin()), (env.id(), &Origin::Env));
        let bad = KeySource::new(Some("nope".into()), Some(file.clone()));
        let e = format!("{:#}", bad.load().unwrap_err());
        assert!(e.contains(KEY_ENV) && !e.contains("nope"), "{e}");
        let empty = KeySource::new(Some(String::new()), None);
        assert!(format!("{:#}", empty.load().unwrap_err()).contains("empty"));

        std::fs::write(&file, "garbage\n").unwrap();
        let e = format!("{:#}", src_file(&file).load().unwrap_err());
        assert!(e.contains("line 1") && e.contains("restore"), "{e}");
    }

    fn src_file(file: &Path) -> KeySource {
        KeySource::new(None, Some(file.to_path_buf()))
    }

    #[test]
    fn an_engine_without_the_right_key_says_which_and_what_to_do() {
        let r = ring();
        let mut settings = Map::new();
        settings.insert("k".into(), r.seal("w", "k", &json!("v")).unwrap());
        settings.insert("n".into(), json!(3));
        let mut keys = EngineKeys::with(KeySource::new(None, None), Some(r));
        let mut opened = settings.clone();
        keys.open_settings("w", &mut opened).unwrap();
        assert_eq!(Value::Object(opened), json!({"k": "v", "n": 3}));

        let mut keys = EngineKeys::with(KeySource::new(None, None), Some(ring()));
        let e = keys.open_settings("w", &mut settings.clone()).unwrap_err();
        assert!(
            e.contains("was encrypted with key") && e.contains("--secret k"),
            "{e}"
        );
        let mut keys = EngineKeys::default();
        let e = keys.open_settings("w", &mut settings.clone()).unwrap_err();
        assert!(e.contains("no secret key"), "{e}");
        // Nothing encrypted: no key needed.
        let mut plain = Map::new();
        plain.insert("n".into(), json!(1));
        EngineKeys::default()
            .open_settings("w", &mut plain)
            .unwrap();
    }
}
