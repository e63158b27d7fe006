//! Users, browser sessions and API tokens, and failed password checks.
//!
//! The store keeps only what is needed to check a credential, never the credential:
//! password hashes (argon2, computed by the host), and SHA-256 hashes of session ids,
//! CSRF tokens and API tokens (random 256-bit values, for which a fast hash is enough).

use super::{Context, SqliteStore};
use crate::accounts::{Accounts, SessionRecord, TokenRecord, UserRecord};
use crate::error::StoreError;
use rusqlite::{params, OptionalExtension, Row};

fn user_from_row(r: &Row<'_>) -> rusqlite::Result<UserRecord> {
    Ok(UserRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        password_hash: r.get(3)?,
        created_at: r.get(4)?,
        updated_at: r.get(5)?,
    })
}

const USER_COLUMNS: &str = "id, name, role, password_hash, created_at, updated_at";

fn token_from_row(r: &Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        created_by: r.get(3)?,
        created_at: r.get(4)?,
        last_used_at: r.get(5)?,
        revoked_at: r.get(6)?,
    })
}

const TOKEN_COLUMNS: &str = "id, name, role, created_by, created_at, last_used_at, revoked_at";

/// Whether a constraint failure was a UNIQUE one (a name already taken).
fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

impl Accounts for SqliteStore {
    /// Number of users.
    fn count_users(&self) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .context("count users")
    }

    /// Number of users with this role.
    fn count_users_with_role(&self, role: &str) -> Result<i64, StoreError> {
        self.conn
            .query_row("SELECT COUNT(*) FROM users WHERE role = ?1", [role], |r| {
                r.get(0)
            })
            .context("count users")
    }

    /// Creates a user. Returns `Ok(None)` when the name is taken.
    fn insert_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        match self.conn.execute(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![name, role, password_hash, now],
        ) {
            Ok(_) => self.get_user(name),
            Err(e) if is_unique_violation(&e) => Ok(None),
            Err(e) => Err(super::error("create user", e)),
        }
    }

    /// Creates a user only when there is no user at all (first start of the service);
    /// returns whether it was created. Atomic, so two services starting at once create
    /// one admin.
    fn insert_first_user(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin creating the first user")?;
        let n: i64 = tx
            .query_row("SELECT COUNT(*) FROM users", [], |r| r.get(0))
            .context("count users")?;
        if n > 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?4)",
            params![name, role, password_hash, now],
        )
        .context("create user")?;
        tx.commit().context("commit first user")?;
        Ok(true)
    }

    /// One user by name.
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        self.conn
            .query_row(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = ?1"),
                [name],
                user_from_row,
            )
            .optional()
            .context("read user")
    }

    /// Every user, by name.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY name"))
            .context("list users")?;
        let rows = stmt.query_map([], user_from_row).context("list users")?;
        rows.collect::<Result<_, _>>().context("list users")
    }

    /// Replaces a user's password hash and ends their sessions (a changed password
    /// must lock out whoever had the old one). Returns false if there is no such user.
    fn set_user_password(
        &mut self,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let tx = self.conn.transaction().context("begin password change")?;
        let n = tx
            .execute(
                "UPDATE users SET password_hash = ?2, updated_at = ?3 WHERE name = ?1",
                params![name, password_hash, now],
            )
            .context("change password")?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = ?1)",
            [name],
        )
        .context("end sessions")?;
        tx.commit().context("commit password change")?;
        Ok(n > 0)
    }

    /// Changes a user's role, refusing (returns `Err(Refused)`-like `Ok(Some(false))`)
    /// to demote the last admin. `Ok(None)`: no such user.
    fn set_user_role(
        &mut self,
        name: &str,
        role: &str,
        now: i64,
    ) -> Result<Option<bool>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin role change")?;
        let current: Option<String> = tx
            .query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .context("read user")?;
        let Some(current) = current else {
            return Ok(None);
        };
        if current == "admin" && role != "admin" {
            let admins: i64 = tx
                .query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                    r.get(0)
                })
                .context("count admins")?;
            if admins <= 1 {
                return Ok(Some(false));
            }
        }
        tx.execute(
            "UPDATE users SET role = ?2, updated_at = ?3 WHERE name = ?1",
            params![name, role, now],
        )
        .context("change role")?;
        tx.commit().context("commit role change")?;
        Ok(Some(true))
    }

    /// Removes a user (their sessions go with them; tasks keep their `started_by`).
    /// `Ok(None)`: no such user; `Ok(Some(false))`: refused, it is the last admin.
    fn delete_user(&mut self, name: &str) -> Result<Option<bool>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin removing user")?;
        let role: Option<String> = tx
            .query_row("SELECT role FROM users WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .context("read user")?;
        let Some(role) = role else {
            return Ok(None);
        };
        if role == "admin" {
            let admins: i64 = tx
                .query_row("SELECT COUNT(*) FROM users WHERE role = 'admin'", [], |r| {
                    r.get(0)
                })
                .context("count admins")?;
            if admins <= 1 {
                return Ok(Some(false));
            }
        }
        tx.execute("DELETE FROM users WHERE name = ?1", [name])
            .context("remove user")?;
        tx.commit().context("commit removing user")?;
        Ok(Some(true))
    }

    /// Stores a new session of user `user_id`.
    fn insert_session(
        &self,
        id_hash: &str,
        user_id: i64,
        csrf_hash: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        // Expired sessions are swept here, so the table stays small without a timer.
        self.conn
            .execute("DELETE FROM sessions WHERE expires_at <= ?1", [now])
            .context("remove expired sessions")?;
        self.conn
            .execute(
                "INSERT INTO sessions (id_hash, user_id, csrf_hash, created_at, expires_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![id_hash, user_id, csrf_hash, now, expires_at],
            )
            .context("create session")?;
        Ok(())
    }

    /// The unexpired session with this id hash, with its user.
    fn get_session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT s.id_hash, s.csrf_hash, s.expires_at,
                    u.id, u.name, u.role, u.password_hash, u.created_at, u.updated_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id_hash = ?1 AND s.expires_at > ?2",
            )
            .context("read session")?
            .query_row(params![id_hash, now], |r| {
                Ok(SessionRecord {
                    id_hash: r.get(0)?,
                    csrf_hash: r.get(1)?,
                    expires_at: r.get(2)?,
                    user: UserRecord {
                        id: r.get(3)?,
                        name: r.get(4)?,
                        role: r.get(5)?,
                        password_hash: r.get(6)?,
                        created_at: r.get(7)?,
                        updated_at: r.get(8)?,
                    },
                })
            })
            .optional()
            .context("read session")
    }

    /// Ends a session.
    fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM sessions WHERE id_hash = ?1", [id_hash])
            .context("end session")?;
        Ok(n > 0)
    }

    /// Creates an API token; a missing name becomes `token-{id}`. `Ok(None)` when the
    /// name is taken.
    fn insert_token(
        &mut self,
        name: Option<&str>,
        role: &str,
        token_hash: &str,
        created_by: Option<&str>,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        let tx = self.conn.transaction().context("begin creating token")?;
        // A unique placeholder until the id is known.
        let provisional = name.map_or_else(|| format!("\u{0}{token_hash}"), str::to_owned);
        match tx.execute(
            "INSERT INTO api_tokens (name, role, token_hash, created_by, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5)",
            params![provisional, role, token_hash, created_by, now],
        ) {
            Ok(_) => {}
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(super::error("create token", e)),
        }
        let id = tx.last_insert_rowid();
        if name.is_none() {
            match tx.execute(
                "UPDATE api_tokens SET name = ?2 WHERE id = ?1",
                params![id, format!("token-{id}")],
            ) {
                Ok(_) => {}
                Err(e) if is_unique_violation(&e) => return Ok(None),
                Err(e) => return Err(super::error("name token", e)),
            }
        }
        let rec = tx
            .query_row(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
                [id],
                token_from_row,
            )
            .context("read token")?;
        tx.commit().context("commit token")?;
        Ok(Some(rec))
    }

    /// Every token (revoked ones too), by id.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
            ))
            .context("list tokens")?;
        let rows = stmt.query_map([], token_from_row).context("list tokens")?;
        rows.collect::<Result<_, _>>().context("list tokens")
    }

    /// The unrevoked token with this hash. Its `last_used_at` is refreshed when older
    /// than a minute (not on every request: that would be a write per read).
    fn use_token(&self, token_hash: &str, now: i64) -> Result<Option<TokenRecord>, StoreError> {
        let rec = self
            .conn
            .prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
            ))
            .context("read token")?
            .query_row([token_hash], token_from_row)
            .optional()
            .context("read token")?;
        if let Some(t) = &rec {
            if t.last_used_at.is_none_or(|at| now - at > 60_000) {
                self.conn
                    .execute(
                        "UPDATE api_tokens SET last_used_at = ?2 WHERE id = ?1",
                        params![t.id, now],
                    )
                    .context("record token use")?;
            }
        }
        Ok(rec)
    }

    /// Revokes a token. `Ok(None)`: no such token; `Ok(Some(false))`: already revoked.
    fn revoke_token(&self, id: i64, now: i64) -> Result<Option<bool>, StoreError> {
        let exists: Option<Option<i64>> = self
            .conn
            .query_row(
                "SELECT revoked_at FROM api_tokens WHERE id = ?1",
                [id],
                |r| r.get(0),
            )
            .optional()
            .context("read token")?;
        match exists {
            None => Ok(None),
            Some(Some(_)) => Ok(Some(false)),
            Some(None) => {
                self.conn
                    .execute(
                        "UPDATE api_tokens SET revoked_at = ?2 WHERE id = ?1",
                        params![id, now],
                    )
                    .context("revoke token")?;
                Ok(Some(true))
            }
        }
    }
    /// Records a failed password check for each key and counts each key's failures in
    /// the window, in one `IMMEDIATE` transaction: the writers of the file take turns,
    /// so every count includes every failure recorded before it.
    fn record_login_failure(
        &mut self,
        keys: &[&str],
        now: i64,
        window_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let cutoff = now.saturating_sub(window_ms);
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .context("begin recording a failed login")?;
        tx.prepare_cached("DELETE FROM login_failures WHERE at <= ?1")
            .and_then(|mut st| st.execute([cutoff]))
            .context("forget old failed logins")?;
        let mut counts = Vec::with_capacity(keys.len());
        for key in keys {
            tx.prepare_cached("INSERT INTO login_failures (key, at) VALUES (?1, ?2)")
                .and_then(|mut st| st.execute(params![key, now]))
                .context("record a failed login")?;
            let n: i64 = tx
                .prepare_cached("SELECT COUNT(*) FROM login_failures WHERE key = ?1 AND at > ?2")
                .and_then(|mut st| st.query_row(params![key, cutoff], |r| r.get(0)))
                .context("count failed logins")?;
            counts.push(n);
        }
        tx.commit().context("commit a failed login")?;
        Ok(counts)
    }

    /// Until when attempts for `keys` are refused (see the trait).
    fn login_blocked_until(
        &self,
        keys: &[&str],
        now: i64,
        max_failures: u32,
        window_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let skip = max_failures.max(1) - 1;
        let cutoff = now.saturating_sub(window_ms);
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT at FROM login_failures WHERE key = ?1 AND at > ?2
                 ORDER BY at DESC LIMIT 1 OFFSET ?3",
            )
            .context("read failed logins")?;
        let mut until: Option<i64> = None;
        for key in keys {
            let nth: Option<i64> = stmt
                .query_row(params![key, cutoff, skip], |r| r.get(0))
                .optional()
                .context("read failed logins")?;
            if let Some(at) = nth {
                let t = at.saturating_add(window_ms);
                until = Some(until.map_or(t, |u| u.max(t)));
            }
        }
        Ok(until)
    }

    /// Forgets the failures of `key`.
    fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("DELETE FROM login_failures WHERE key = ?1")
            .and_then(|mut st| st.execute([key]))
            .context("forget failed logins")?;
        Ok(())
    }
}
