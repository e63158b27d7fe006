//! Roles, passwords and secrets: what users and API tokens are made of. Creating and
//! changing them are operations of the domain layer ([`crate::ops::accounts`]).
//!
//! * Passwords are hashed with argon2id (the crate's defaults: 19 MiB, 2 passes), the
//!   PHC string stored in `users.password_hash`.
//! * Session ids, CSRF tokens and API tokens are 256 random bits from the operating
//!   system; only their SHA-256 is stored, so a copy of the database lets nobody in.
//! * Roles are ordered: metrics < viewer < operator < admin; each role can do everything
//!   the roles below it can. `metrics` is for API tokens only (a Prometheus scraper): it
//!   may read `GET /metrics` and nothing else.

pub mod ratelimit;

use std::fmt;

use anyhow::Result;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::problem::Problem;

/// What a user or token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads `GET /metrics` only (API tokens of scrapers; users never have it).
    Metrics,
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
    pub const ALL: [Role; 4] = [Role::Metrics, Role::Viewer, Role::Operator, Role::Admin];

    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Metrics => "metrics",
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }

    /// Parses `admin`, `operator`, `viewer` or `metrics`.
    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// Parses a role given by a person, as a [`Problem`] naming `field` when wrong.
    pub fn parse_input(s: &str, field: &str) -> Result<Role, Problem> {
        Role::parse(s.trim()).ok_or_else(|| {
            Problem::invalid(
                field,
                "invalid_role",
                format!("'{s}' is not a role; use admin, operator or viewer (or metrics, for API tokens)"),
            )
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// Longest accepted password, in characters (hashing cost grows with its length;
/// counted in characters, as the API's description can state it, so at most 4 KiB).
pub const MAX_PASSWORD_CHARS: usize = 1024;

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

/// Prefix of API tokens.
pub const TOKEN_PREFIX: &str = "stask_";

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
    fn secrets_and_roles() {
        let p = random_password();
        assert_eq!(p.len(), 20);
        assert_ne!(p, random_password());
        let t = random_secret(TOKEN_PREFIX);
        assert!(t.starts_with("stask_") && t.len() == 6 + 64);
        assert!(Role::Admin > Role::Operator && Role::Operator > Role::Viewer);
        assert!(Role::Viewer > Role::Metrics);
        assert_eq!(Role::parse("metrics"), Some(Role::Metrics));
        assert_eq!(
            Role::parse_input("boss", "role")
                .unwrap_err()
                .field
                .as_deref(),
            Some("role")
        );
    }
}
