//! Users, roles, passwords and API tokens.
//!
//! * Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes), the
//!   PHC string stored in `users.password_hash`.
//! * Session ids, CSRF tokens and API tokens are 256 random bits from the operating
//!   system; only their SHA-256 is stored, so a copy of the database lets nobody in.
//! * Roles are ordered: viewer < operator < admin; each role can do everything the
//!   roles below it can.

pub mod ratelimit;

use std::fmt;

use anyhow::Result;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sha2::{Digest, Sha256};
use stask_storage::{now_ms, Store, TokenRecord, UserRecord, SCHEDULE_STARTED_BY};

use crate::problem::Problem;

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything except secrets.
    Viewer,
    /// Also creates, executes, cancels and retries tasks (cancel and retry only its own).
    Operator,
    /// Also manages workers, settings, schedules, clean-up, users and tokens, and may
    /// cancel or retry any task.
    Admin,
}

impl Role {
    /// Every role, lowest first.
    pub const ALL: [Role; 3] = [Role::Viewer, Role::Operator, Role::Admin];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `operator` or `viewer`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Parses a role given by a person, as a [`Problem`] naming `field` when wrong.
    pub fn parse_input(s: &str, field: &str) -> Result<Role, Problem> {
        Role::parse(s.trim()).ok_or_else(|| {
            Problem::invalid(
                field,
                "invalid_role",
                format!("'{s}' is not a role; use admin, operator or viewer"),
            )
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Longest accepted password, in bytes (hashing cost grows with it).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// `n` random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).expect("the operating system's random source is unavailable");
    buf
}

/// A new secret: 256 random bits as hex, with a prefix naming what it is (`stask_`
/// for API tokens, so a leaked one is recognisable by secret scanners).
pub fn random_secret(prefix: &str) -> String {
    format!("{prefix}{}", hex::encode(random_bytes::<32>()))
}

/// A random password of 20 letters and digits (about 119 bits), for the first admin.
pub fn random_password() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    let mut out = String::with_capacity(20);
    while out.len() < 20 {
        for b in random_bytes::<32>() {
            // Rejection sampling keeps every character equally likely.
            let limit = 256 - 256 % ALPHABET.len();
            if (b as usize) < limit && out.len() < 20 {
                out.push(ALPHABET[b as usize % ALPHABET.len()] as char);
            }
        }
    }
    out
}

/// SHA-256 of a secret, as stored (hex).
pub fn secret_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Hashes a password with argon2id and a random salt (PHC string).
pub fn hash_password(password: &str) -> Result<String> {
    let salt = SaltString::encode_b64(&random_bytes::<16>())
        .map_err(|e| anyhow::anyhow!("cannot encode a salt: {e}"))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash the password: {e}"))
}

/// Whether `password` matches a stored hash (false for a malformed hash).
pub fn verify_password(hash: &str, password: &str) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Argon2::default()
        .verify_password(password.as_bytes(), &parsed)
        .is_ok()
}

/// Spends the time of one password check, for unknown user names: a login then takes
/// as long whether or not the name exists, so timing does not reveal user names.
pub fn verify_dummy(password: &str) {
    static DUMMY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    let hash = DUMMY.get_or_init(|| hash_password("not a real password").unwrap_or_default());
    let _ = verify_password(hash, password);
}

/// Checks a new user name: 1-64 of `a-z 0-9 . _ -`, starting with a letter or digit;
/// `schedule` is reserved (tasks created by schedules are started by it), and `:`
/// never appears, so no user can be mistaken for a token (`token:NAME`).
pub fn check_user_name(name: &str) -> Result<(), Problem> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if !ok {
        return Err(Problem::invalid(
            "name",
            "invalid_name",
            format!("'{name}' is not a valid user name: use 1-64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"),
        ));
    }
    if name == SCHEDULE_STARTED_BY {
        return Err(Problem::invalid(
            "name",
            "reserved_name",
            format!("'{name}' is reserved (tasks created by schedules are started by it)"),
        ));
    }
    Ok(())
}

/// Checks a new password's length (the message never repeats the password).
pub fn check_password(password: &str, field: &str) -> Result<(), Problem> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(Problem::invalid(
            field,
            "password_too_short",
            format!("the password must have at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(Problem::invalid(
            field,
            "password_too_long",
            format!("the password must have at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Checks a token name: the same characters as user names.
pub fn check_token_name(name: &str) -> Result<(), Problem> {
    check_user_name(name)
        .map_err(|p| Problem::invalid("name", p.code, p.message.replace("user name", "token name")))
}

/// The error for an unknown user.
pub fn no_user(name: &str) -> anyhow::Error {
    Problem::not_found(
        "user_not_found",
        format!("no user '{name}' (see `stask users list`)"),
    )
    .into()
}

/// Creates a user after checking name and password.
pub fn add_user(store: &dyn Store, name: &str, role: Role, password: &str) -> Result<UserRecord> {
    check_user_name(name)?;
    check_password(password, "password")?;
    let hash = hash_password(password)?;
    store
        .insert_user(name, role.as_str(), &hash, now_ms())?
        .ok_or_else(|| {
            Problem::conflict(
                "user_exists",
                format!("a user named '{name}' already exists"),
            )
            .into()
        })
}

/// Sets a user's password (ending their sessions).
pub fn set_password(store: &mut dyn Store, name: &str, password: &str) -> Result<()> {
    check_password(password, "password")?;
    let hash = hash_password(password)?;
    if !store.set_user_password(name, &hash, now_ms())? {
        return Err(no_user(name));
    }
    Ok(())
}

/// Changes a user's role; the last admin keeps theirs.
pub fn set_role(store: &mut dyn Store, name: &str, role: Role) -> Result<()> {
    match store.set_user_role(name, role.as_str(), now_ms())? {
        None => Err(no_user(name)),
        Some(false) => Err(Problem::conflict(
            "last_admin",
            format!("'{name}' is the last admin; make another user admin first"),
        )
        .into()),
        Some(true) => Ok(()),
    }
}

/// Removes a user; the last admin stays.
pub fn remove_user(store: &mut dyn Store, name: &str) -> Result<()> {
    match store.delete_user(name)? {
        None => Err(no_user(name)),
        Some(false) => Err(Problem::conflict(
            "last_admin",
            format!("'{name}' is the last admin; make another user admin first"),
        )
        .into()),
        Some(true) => Ok(()),
    }
}

/// Name of the first user, created by the service when there is none.
pub const FIRST_ADMIN: &str = "admin";

/// Creates user `admin` (role admin) with a random password when there are no users
/// yet; returns the password (to be shown once) if it did.
pub fn ensure_first_admin(store: &mut dyn Store) -> Result<Option<String>> {
    if store.count_users()? > 0 {
        return Ok(None);
    }
    let password = random_password();
    let hash = hash_password(&password)?;
    Ok(store
        .insert_first_user(FIRST_ADMIN, Role::Admin.as_str(), &hash, now_ms())?
        .then_some(password))
}

/// Prefix of API tokens.
pub const TOKEN_PREFIX: &str = "stask_";

/// Creates an API token; returns its record and the token itself (shown once, never
/// stored).
pub fn create_token(
    store: &mut dyn Store,
    name: Option<&str>,
    role: Role,
    created_by: Option<&str>,
) -> Result<(TokenRecord, String)> {
    if let Some(n) = name {
        check_token_name(n)?;
    }
    let secret = random_secret(TOKEN_PREFIX);
    let rec = store
        .insert_token(
            name,
            role.as_str(),
            &secret_hash(&secret),
            created_by,
            now_ms(),
        )?
        .ok_or_else(|| {
            anyhow::Error::from(Problem::conflict(
                "token_exists",
                format!(
                    "a token named '{}' already exists",
                    name.unwrap_or_default()
                ),
            ))
        })?;
    Ok((rec, secret))
}

/// Revokes an API token by id.
pub fn revoke_token(store: &dyn Store, id: i64) -> Result<()> {
    match store.revoke_token(id, now_ms())? {
        None => Err(Problem::not_found(
            "token_not_found",
            format!("no token {id} (see `stask tokens list`)"),
        )
        .into()),
        Some(false) => {
            Err(Problem::conflict("token_revoked", format!("token {id} is already revoked")).into())
        }
        Some(true) => Ok(()),
    }
}

/// The principal name of a token: what its tasks' `started_by` holds.
pub fn token_principal(name: &str) -> String {
    format!("token:{name}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "correct horse"));
        assert!(!verify_password(&h, "wrong horse"));
        assert!(!verify_password("garbage", "x"));
    }

    #[test]
    fn names_secrets_and_roles() {
        assert!(check_user_name("ann.b-c_1").is_ok());
        for bad in ["", "Ann", "-x", "a:b", "a b", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad:?}");
        }
        assert_eq!(
            check_user_name("schedule").unwrap_err().code,
            "reserved_name"
        );
        let p = random_password();
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password());
        let t = random_secret(TOKEN_PREFIX);
        assert!(t.starts_with("stask_") && t.len() == 6 + 64);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert_eq!(
            Role::parse_input("boss", "role")
                .unwrap_err()
                .field
                .as_deref(),
            Some("role")
        );
        assert!(check_password("short", "password").is_err());
    }
}
