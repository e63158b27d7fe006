//! Users, browser sessions and API tokens, and failed password checks, on PostgreSQL.
//!
//! The store keeps only what is needed to check a credential, never the credential:
//! password hashes (argon2, computed by the host), and SHA-256 hashes of session ids,
//! CSRF tokens and API tokens (random 256-bit values, for which a fast hash is enough).
//!
//! What differs from SQLite, and why:
//! * The rules that read before they write — the first user is created only while there
//!   is none, the last admin is neither demoted nor removed — lock the `users` table
//!   in `SHARE ROW EXCLUSIVE` mode for their short transaction (SQLite's
//!   `BEGIN IMMEDIATE`). That mode conflicts with itself and with every insert, update
//!   and delete of users, so two hosts cannot both see "no user yet" (two first
//!   admins), nor both see "two admins" and each remove one (no admin left); readers
//!   and logins (sessions only take a key-share lock on their user's row) go on.
//! * A taken name is found with `ON CONFLICT DO NOTHING` rather than by catching the
//!   unique violation, which in PostgreSQL would abort the surrounding transaction.
//! * A token without a name takes its id from the sequence first, so the `token-{id}`
//!   name is written with the row in one statement (SQLite inserts a placeholder name
//!   holding a NUL, which PostgreSQL text cannot hold, and renames it).
//! * Lists order names with `COLLATE "C"` (byte order, as SQLite's `BINARY`).
//! * Failed logins are recorded and counted in one statement (SQLite: one `IMMEDIATE`
//!   transaction); hosts recording failures of one key at once only insert, and the
//!   deletion of expired failures skips rows another host is deleting.

use postgres::{GenericClient, Row};

use super::{storable, Context, PgStore};
use crate::accounts::{Accounts, SessionRecord, TokenRecord, UserRecord};
use crate::error::StoreError;

fn user_from_row(r: &Row) -> UserRecord {
    UserRecord {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        password_hash: r.get(3),
        created_at: r.get(4),
        updated_at: r.get(5),
    }
}

const USER_COLUMNS: &str = "id, name, role, password_hash, created_at, updated_at";

fn token_from_row(r: &Row) -> TokenRecord {
    TokenRecord {
        id: r.get(0),
        name: r.get(1),
        role: r.get(2),
        created_by: r.get(3),
        created_at: r.get(4),
        last_used_at: r.get(5),
        revoked_at: r.get(6),
    }
}

const TOKEN_COLUMNS: &str = "id, name, role, created_by, created_at, last_used_at, revoked_at";

/// Locks `users` against every other writer until the transaction ends (see the
/// module docs); reads go on.
fn lock_users(tx: &mut impl GenericClient) -> Result<(), StoreError> {
    tx.batch_execute("LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE")
        .context("wait for other changes of users")
}

/// Whether removing the admin role from a user with `role` would leave no admin
/// (inside a transaction holding [`lock_users`]).
fn is_last_admin(tx: &mut impl GenericClient, role: &str) -> Result<bool, StoreError> {
    if role != "admin" {
        return Ok(false);
    }
    let admins: i64 = tx
        .query_one("SELECT COUNT(*) FROM users WHERE role = 'admin'", &[])
        .context("count admins")?
        .get(0);
    Ok(admins <= 1)
}

impl Accounts for PgStore {
    /// Number of users.
    fn count_users(&self) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one("SELECT COUNT(*) FROM users", &[])
            .context("count users")?
            .get(0))
    }

    /// Number of users with this role.
    fn count_users_with_role(&self, role: &str) -> Result<i64, StoreError> {
        Ok(self
            .client()?
            .query_one("SELECT COUNT(*) FROM users WHERE role = $1", &[&role])
            .context("count users")?
            .get(0))
    }

    /// Creates a user. Returns `Ok(None)` when the name is taken.
    fn insert_user(
        &self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "INSERT INTO users (name, role, password_hash, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $4)
                     ON CONFLICT (name) DO NOTHING
                     RETURNING {USER_COLUMNS}"
                ),
                &[&name, &role, &password_hash, &now],
            )
            .context("create user")?;
        Ok(row.as_ref().map(user_from_row))
    }

    /// Creates a user only when there is no user at all (first start of the service);
    /// returns whether it was created. Atomic across hosts: the table lock makes the
    /// count and the insert one step (see the module docs).
    fn insert_first_user(
        &mut self,
        name: &str,
        role: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .context("begin creating the first user")?;
        lock_users(&mut tx)?;
        let n: i64 = tx
            .query_one("SELECT COUNT(*) FROM users", &[])
            .context("count users")?
            .get(0);
        if n > 0 {
            return Ok(false);
        }
        tx.execute(
            "INSERT INTO users (name, role, password_hash, created_at, updated_at)
             VALUES ($1, $2, $3, $4, $4)",
            &[&name, &role, &password_hash, &now],
        )
        .context("create user")?;
        tx.commit().context("commit first user")?;
        Ok(true)
    }

    /// One user by name.
    fn get_user(&self, name: &str) -> Result<Option<UserRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                &format!("SELECT {USER_COLUMNS} FROM users WHERE name = $1"),
                &[&name],
            )
            .context("read user")?;
        Ok(row.as_ref().map(user_from_row))
    }

    /// Every user, by name.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!("SELECT {USER_COLUMNS} FROM users ORDER BY name COLLATE \"C\""),
                &[],
            )
            .context("list users")?;
        Ok(rows.iter().map(user_from_row).collect())
    }

    /// Replaces a user's password hash and ends their sessions (a changed password
    /// must lock out whoever had the old one). Returns false if there is no such user.
    fn set_user_password(
        &mut self,
        name: &str,
        password_hash: &str,
        now: i64,
    ) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin password change")?;
        let n = tx
            .execute(
                "UPDATE users SET password_hash = $2, updated_at = $3 WHERE name = $1",
                &[&name, &password_hash, &now],
            )
            .context("change password")?;
        tx.execute(
            "DELETE FROM sessions WHERE user_id = (SELECT id FROM users WHERE name = $1)",
            &[&name],
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
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin role change")?;
        lock_users(&mut tx)?;
        let current = tx
            .query_opt("SELECT role FROM users WHERE name = $1", &[&name])
            .context("read user")?;
        let Some(current) = current else {
            return Ok(None);
        };
        let current: String = current.get(0);
        if role != "admin" && is_last_admin(&mut tx, &current)? {
            return Ok(Some(false));
        }
        tx.execute(
            "UPDATE users SET role = $2, updated_at = $3 WHERE name = $1",
            &[&name, &role, &now],
        )
        .context("change role")?;
        tx.commit().context("commit role change")?;
        Ok(Some(true))
    }

    /// Removes a user (their sessions go with them; tasks keep their `started_by`).
    /// `Ok(None)`: no such user; `Ok(Some(false))`: refused, it is the last admin.
    fn delete_user(&mut self, name: &str) -> Result<Option<bool>, StoreError> {
        let mut client = self.client()?;
        let mut tx = client.transaction().context("begin removing user")?;
        lock_users(&mut tx)?;
        let role = tx
            .query_opt("SELECT role FROM users WHERE name = $1", &[&name])
            .context("read user")?;
        let Some(role) = role else {
            return Ok(None);
        };
        let role: String = role.get(0);
        if is_last_admin(&mut tx, &role)? {
            return Ok(Some(false));
        }
        tx.execute("DELETE FROM users WHERE name = $1", &[&name])
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
        let mut client = self.client()?;
        // Expired sessions are swept here, so the table stays small without a timer.
        client
            .execute("DELETE FROM sessions WHERE expires_at <= $1", &[&now])
            .context("remove expired sessions")?;
        client
            .execute(
                "INSERT INTO sessions (id_hash, user_id, csrf_hash, created_at, expires_at)
                 VALUES ($1, $2, $3, $4, $5)",
                &[&id_hash, &user_id, &csrf_hash, &now, &expires_at],
            )
            .context("create session")?;
        Ok(())
    }

    /// The unexpired session with this id hash, with its user.
    fn get_session(&self, id_hash: &str, now: i64) -> Result<Option<SessionRecord>, StoreError> {
        let row = self
            .client()?
            .query_opt(
                "SELECT s.id_hash, s.csrf_hash, s.expires_at,
                    u.id, u.name, u.role, u.password_hash, u.created_at, u.updated_at
                 FROM sessions s JOIN users u ON u.id = s.user_id
                 WHERE s.id_hash = $1 AND s.expires_at > $2",
                &[&id_hash, &now],
            )
            .context("read session")?;
        Ok(row.map(|r| SessionRecord {
            id_hash: r.get(0),
            csrf_hash: r.get(1),
            expires_at: r.get(2),
            user: UserRecord {
                id: r.get(3),
                name: r.get(4),
                role: r.get(5),
                password_hash: r.get(6),
                created_at: r.get(7),
                updated_at: r.get(8),
            },
        }))
    }

    /// Ends a session.
    fn delete_session(&self, id_hash: &str) -> Result<bool, StoreError> {
        let n = self
            .client()?
            .execute("DELETE FROM sessions WHERE id_hash = $1", &[&id_hash])
            .context("end session")?;
        Ok(n > 0)
    }

    /// Creates an API token; a missing name becomes `token-{id}`. `Ok(None)` when the
    /// name (or the hash) is taken.
    fn insert_token(
        &mut self,
        name: Option<&str>,
        role: &str,
        token_hash: &str,
        created_by: Option<&str>,
        now: i64,
    ) -> Result<Option<TokenRecord>, StoreError> {
        // The id first, so that the default name is stored with the row; a conflict on
        // any unique column (name, hash) inserts nothing.
        let row = self
            .client()?
            .query_opt(
                &format!(
                    "WITH next AS (
                         SELECT nextval(pg_get_serial_sequence('api_tokens', 'id')) AS id
                     )
                     INSERT INTO api_tokens (id, name, role, token_hash, created_by, created_at)
                     SELECT next.id, COALESCE($1, 'token-' || next.id), $2, $3, $4, $5
                     FROM next
                     ON CONFLICT DO NOTHING
                     RETURNING {TOKEN_COLUMNS}"
                ),
                &[&name, &role, &token_hash, &created_by, &now],
            )
            .context("create token")?;
        Ok(row.as_ref().map(token_from_row))
    }

    /// Every token (revoked ones too), by id.
    fn list_tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let rows = self
            .client()?
            .query(
                &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"),
                &[],
            )
            .context("list tokens")?;
        Ok(rows.iter().map(token_from_row).collect())
    }

    /// The unrevoked token with this hash. Its `last_used_at` is refreshed when older
    /// than a minute (not on every request: that would be a write per read).
    fn use_token(&self, token_hash: &str, now: i64) -> Result<Option<TokenRecord>, StoreError> {
        let mut client = self.client()?;
        let rec = client
            .query_opt(
                &format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens
                     WHERE token_hash = $1 AND revoked_at IS NULL"
                ),
                &[&token_hash],
            )
            .context("read token")?
            .as_ref()
            .map(token_from_row);
        if let Some(t) = &rec {
            if t.last_used_at.is_none_or(|at| now - at > 60_000) {
                client
                    .execute(
                        "UPDATE api_tokens SET last_used_at = $2 WHERE id = $1",
                        &[&t.id, &now],
                    )
                    .context("record token use")?;
            }
        }
        Ok(rec)
    }

    /// Revokes a token. `Ok(None)`: no such token; `Ok(Some(false))`: already revoked.
    fn revoke_token(&self, id: i64, now: i64) -> Result<Option<bool>, StoreError> {
        let mut client = self.client()?;
        // One statement decides, so of two revocations at once exactly one reports it.
        let revoked = client
            .execute(
                "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                &[&id, &now],
            )
            .context("revoke token")?;
        if revoked > 0 {
            return Ok(Some(true));
        }
        let exists = client
            .query_opt("SELECT 1 FROM api_tokens WHERE id = $1", &[&id])
            .context("read token")?;
        Ok(exists.map(|_| false))
    }
    /// Records a failed password check for each key and counts each key's failures in
    /// the window, in one statement (one round trip). Hosts recording failures of one
    /// key at once only insert rows, so none waits and none is lost; the count is of
    /// the failures committed before this statement, plus this one. Expired rows are
    /// deleted in the same statement, a bounded batch of those no other host is
    /// deleting at the moment (`SKIP LOCKED`: no waiting, no deadlock between hosts).
    fn record_login_failure(
        &mut self,
        keys: &[&str],
        now: i64,
        window_ms: i64,
    ) -> Result<Vec<i64>, StoreError> {
        let cutoff = now.saturating_sub(window_ms);
        let stored: Vec<_> = keys.iter().map(|k| storable(k)).collect();
        let keys: Vec<&str> = stored.iter().map(|k| k.as_ref()).collect();
        let rows = self
            .client()?
            .query(
                "WITH purged AS (
                     DELETE FROM login_failures WHERE id IN (
                         SELECT id FROM login_failures WHERE at <= $3
                         ORDER BY at LIMIT 1000 FOR UPDATE SKIP LOCKED)
                 ), added AS (
                     INSERT INTO login_failures (key, at)
                     SELECT k, $2 FROM unnest($1::text[]) AS k
                 )
                 SELECT (SELECT COUNT(*) FROM login_failures f
                         WHERE f.key = u.k AND f.at > $3) + 1
                 FROM unnest($1::text[]) WITH ORDINALITY AS u(k, i)
                 ORDER BY u.i",
                &[&keys, &now, &cutoff],
            )
            .context("record a failed login")?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Until when attempts for `keys` are refused (see the trait), in one statement.
    fn login_blocked_until(
        &self,
        keys: &[&str],
        now: i64,
        max_failures: u32,
        window_ms: i64,
    ) -> Result<Option<i64>, StoreError> {
        let cutoff = now.saturating_sub(window_ms);
        let skip = i64::from(max_failures.max(1) - 1);
        let stored: Vec<_> = keys.iter().map(|k| storable(k)).collect();
        let keys: Vec<&str> = stored.iter().map(|k| k.as_ref()).collect();
        let nth: Option<i64> = self
            .client()?
            .query_one(
                "SELECT MAX((SELECT f.at FROM login_failures f
                             WHERE f.key = k AND f.at > $2
                             ORDER BY f.at DESC LIMIT 1 OFFSET $3))
                 FROM unnest($1::text[]) AS k",
                &[&keys, &cutoff, &skip],
            )
            .context("read failed logins")?
            .get(0);
        Ok(nth.map(|at| at.saturating_add(window_ms)))
    }

    /// Forgets the failures of `key`.
    fn clear_login_failures(&self, key: &str) -> Result<(), StoreError> {
        self.client()?
            .execute(
                "DELETE FROM login_failures WHERE key = $1",
                &[&storable(key).as_ref()],
            )
            .context("forget failed logins")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Barrier;

    use super::super::conformance_tests::PgHarness;
    use crate::conformance::Harness;
    use crate::Store;

    /// Runs `f` on `n` connections of `h` at the same moment; returns their results.
    fn race<T: Send>(
        h: &PgHarness,
        n: usize,
        f: impl Fn(usize, &mut dyn Store) -> T + Sync,
    ) -> Vec<T> {
        let barrier = Barrier::new(n);
        let mut stores: Vec<Box<dyn Store>> = (0..n).map(|_| h.open()).collect();
        std::thread::scope(|scope| {
            let runs: Vec<_> = stores
                .iter_mut()
                .enumerate()
                .map(|(i, store)| {
                    let (barrier, f) = (&barrier, &f);
                    scope.spawn(move || {
                        barrier.wait();
                        f(i, &mut **store)
                    })
                })
                .collect();
            runs.into_iter().map(|r| r.join().unwrap()).collect()
        })
    }

    #[test]
    fn hosts_starting_at_once_create_one_first_user() {
        let h = PgHarness::new();
        let created = race(&h, 6, |i, s| {
            s.insert_first_user(&format!("admin{i}"), "admin", "h", 1)
                .unwrap()
        });
        assert_eq!(created.iter().filter(|c| **c).count(), 1, "{created:?}");
        assert_eq!(h.open().count_users().unwrap(), 1);
    }

    #[test]
    fn two_admins_removed_at_once_leave_one() {
        let h = PgHarness::new();
        let mut s = h.open();
        for round in 0..10 {
            let (a, b) = (format!("a{round}"), format!("b{round}"));
            s.insert_user(&a, "admin", "h", 1).unwrap().unwrap();
            s.insert_user(&b, "admin", "h", 1).unwrap().unwrap();
            // Only these two are admins: earlier rounds' survivors are demoted first.
            for u in s.list_users().unwrap() {
                if u.role == "admin" && u.name != a && u.name != b {
                    assert_eq!(s.delete_user(&u.name).unwrap(), Some(true));
                }
            }
            let names = [a.clone(), b.clone()];
            let results = race(&h, 2, |i, st| {
                if round % 2 == 0 {
                    st.delete_user(&names[i]).unwrap()
                } else {
                    st.set_user_role(&names[i], "viewer", 2).unwrap()
                }
            });
            assert_eq!(
                results.iter().filter(|r| **r == Some(true)).count(),
                1,
                "round {round}: {results:?}"
            );
            assert_eq!(s.count_users_with_role("admin").unwrap(), 1);
        }
    }
}
