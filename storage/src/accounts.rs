//! Users, browser sessions and API tokens, and the failed password checks that
//! throttle logins.
//!
//! The store keeps only what is needed to check a credential, never the credential:
//! password hashes (argon2, computed by the host), and SHA-256 hashes of session ids,
//! CSRF tokens and API tokens (random 256-bit values, for which a fast hash is enough).
//!
//! Failed password checks are kept per throttling key (the host's keys: a user name, a
//! client address) in the store, so every host sharing it sees the same failures and a
//! lock-out holds on all of them. Each operation on them is one atomic step: two hosts
//! recording failures of one key at once both count. The rules (how many failures in
//! which window block a key) are the host's; the store counts and expires.

use crate::error::StoreError;

/// A user account.
#[derive(Debug, Clone)]
pub struct UserRecord {
    /// Id.
    pub id: i64,
    /// Login name (unique).
    pub name: String,
    /// `admin`, `operator` or `viewer`.
    pub role: String,
    /// Password hash in PHC format. Never serialized.
    pub password_hash: String,
    /// Created (ms).
    pub created_at: i64,
    /// Last changed (ms).
    pub updated_at: i64,
}

/// A live browser session with its user.
#[derive(Debug, Clone)]
pub struct SessionRecord {
    /// SHA-256 of the session id (hex).
    pub id_hash: String,
    /// SHA-256 of the session's CSRF token (hex).
    pub csrf_hash: String,
    /// Expires at (ms).
    pub expires_at: i64,
    /// Its user.
    pub user: UserRecord,
}

/// An API token (without its secret).
#[derive(Debug, Clone)]
pub struct TokenRecord {
    /// Id (what `tokens revoke` takes).
    pub id: i64,
    /// Name (unique), also the principal name its tasks are started by (`token:NAME`).
    pub name: String,
    /// `admin`, `operator`, `viewer` or `metrics` (scrapers of `/metrics`: tokens only).
    pub role: String,
    /// Who created it.
    pub created_by: Option<String>,
    /// Created (ms).
    pub created_at: i64,
    /// Last used (ms), refreshed at most once a minute.
    pub last_used_at: Option<i64>,
    /// Revoked (ms); a revoked token is refused.
    pub revoked_at: Option<i64>,
}

/// Users, sessions and API tokens of a store.
pub trait Accounts {
    /// Number of users.
    fn count_users(&self) -> Result<i64, StoreError>;

    /// Number of users with this role.
    fn count_users_with_role(&self, role: &str) -> Result<i64, StoreError>;

    /// Creates a user. Returns `Ok(None)` when the name is taken.
    fn insert_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError>;

    /// Creates a user only when there is no user at all (first start of the service);
    /// returns whether it was created. Atomic, so two services starting at once create
    /// one admin.
    fn insert_first_user(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// One user by name.
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError>;

    /// Every user, by name.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// Replaces a user's password hash and ends their sessions (a changed password
    /// must lock out whoever had the old one). Returns false if there is no such user.
    fn set_user_password(
        &mut self,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError>;

    /// Changes a user's role, refusing (returns `Err(Refused)`-like `Ok(Some(false))`)
    /// to demote the last admin. `Ok(None)`: no such user.
    fn set_user_role(
        &mut self,
        name: &str,
        role: &str,
        now: i64,
    ) -> Result<Option<bool>, StoreError>;

    /// Removes a user (their sessions go with them; tasks keep their `started_by`).
    /// `Ok(None)`: no such user; `Ok(Some(false))`: refused, it is the last admin.
    fn delete_user(&mut self, name: &str) -> Result<Option<bool>, StoreError>;

    /// Stores a new session of user `user_id`.
    fn insert_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;

    /// The unexpired session with this id hash, with its user.
    fn get_session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError>;

    /// Ends a session.
    fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError>;

    /// Creates an API token; a missing name becomes `token-{id}`. `Ok(None)` when the
    /// name is taken.
    fn insert_token(
        &mut self,
        name: Option<&str>,
        role: &str,
        token_hash: &str,
        created_by: Option<&str>,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError>;

    /// Every token (revoked ones too), by id.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;

    /// The unrevoked token with this hash. Its `last_used_at` is refreshed when older
    /// than a minute (not on every request: that would be a write per read).
    fn use_token(&self, token_hash: &str, now: i64) -> Result<Option<TokenRecord>, StoreError>;

    /// Revokes a token. `Ok(None)`: no such token; `Ok(Some(false))`: already revoked.
    fn revoke_token(&self, id: i64, now: i64) -> Result<Option<bool>, StoreError>;

    /// Records one failed password check at `now` for each of `keys` (distinct keys,
    /// each at most [`MAX_THROTTLE_KEY_BYTES`] long) and returns, per key in order, its
    /// failures within the `window_ms` before `now`, this one included (with failures
    /// recorded by other stores at the same moment: every one is stored, none is lost).
    /// Failures of any key older than the window are deleted on the way, so the stored
    /// failures stay about as many as there were within one window.
    fn record_login_failure(
        &mut self,
        keys: &[&str],
        now: i64,
        window_ms: i64,
    ) -> Result<Vec<i64>, StoreError>;

    /// Until when (ms) attempts for `keys` are refused: `Some(t)` when one of them has at
    /// least `max_failures` failures within the `window_ms` before `now`; `t` is when
    /// the latest of these keys falls under the limit again (the `max_failures`-th
    /// newest failure of a key leaves the window at `t`). `None`: none is blocked.
    /// A `max_failures` of 0 is taken as 1.
    fn login_blocked_until(
        &self,
        keys: &[&str],
        now: i64,
        max_failures: u32,
        window_ms: i64,
    ) -> Result<Option<i64>, StoreError>;

    /// Forgets the failures of `key` (a user who logged in).
    fn clear_login_failures(&self, key: &str) -> Result<(), StoreError>;
}

/// The longest throttling key every backend stores (the host keeps its keys short:
/// hashes and addresses).
pub const MAX_THROTTLE_KEY_BYTES: usize = 256;
