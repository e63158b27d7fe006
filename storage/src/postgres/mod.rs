//! The PostgreSQL backend: one database shared by any number of hosts.
//!
//! * A store is one connection (the blocking `postgres` client; never called from
//!   inside an async task: the host's API calls stores on blocking threads). A lost
//!   connection (a server restart, `pg_terminate_backend`, a network blip) fails the
//!   operation with a transient error ([`ErrorKind::Io`]); the next operation connects
//!   again, so callers that wait out transient errors carry on by themselves.
//! * The location is a `postgres://` URL; its parameters (`connect_timeout`,
//!   `options=-c search_path=…`, …) are the client's, but for the `ssl*` ones, which
//!   [`tls`] reads: `sslmode=require`, `verify-ca` or `verify-full` connect with TLS and
//!   a verified server certificate (`sslrootcert`, or the system's roots; `sslcert` and
//!   `sslkey` for a client certificate), for every connection (the store's and the
//!   wake-up listener's); `prefer`, the default, does not try TLS.
//! * Claims take rows with `FOR UPDATE SKIP LOCKED`, so hosts never wait on each other's
//!   claims and never take the same task ([`claim`]).
//! * Statistics are kept by statement-level triggers ([`migrations`]).
//! * Wake-ups are `NOTIFY stask_work`, sent in the transaction that makes work
//!   claimable, and `LISTEN` on a connection of the listener's own ([`wakeups`]).

mod accounts;
mod claim;
#[cfg(test)]
mod conformance_tests;
mod deps;
mod files;
mod finish;
mod hosts;
mod limits;
mod logs;
mod migrations;
mod queue;
mod registry;
mod schedules;
mod search;
mod stats;
mod tls;
#[cfg(test)]
mod tls_tests;
mod wakeups;
mod workflows;

use std::cell::{RefCell, RefMut};

use postgres::error::SqlState;
use postgres::Client;

use crate::error::{ErrorKind, StoreError};
use crate::{Leases, Store};

/// A connection to an stask PostgreSQL database.
pub struct PgStore {
    client: RefCell<Option<Client>>,
    /// The busiest statements, prepared on this connection (emptied on a reconnect).
    pub(crate) statements: Statements,
    /// Where to connect, and with which TLS.
    target: tls::Target,
    /// The URL without its password, for messages.
    shown: String,
    /// When this store's claims last looked for parked tasks whose time has come
    /// (claim.rs): a statement each claim would cost a round trip, and a parked task
    /// waits seconds anyway.
    pub(crate) unparked_at: std::cell::Cell<i64>,
}

/// Adds the operation's name (and the kind of failure) to a client error.
pub(crate) trait Context<T> {
    fn context(self, what: &str) -> Result<T, StoreError>;
}

impl<T> Context<T> for Result<T, postgres::Error> {
    fn context(self, what: &str) -> Result<T, StoreError> {
        self.map_err(|e| error(what, e))
    }
}

/// A [`StoreError`] from a client error, classified: what clears by itself (a lost
/// connection, a serialization failure, a deadlock, a server shutting down, a full
/// disk) is transient.
pub(crate) fn error(what: &str, e: postgres::Error) -> StoreError {
    let kind = match e.code() {
        Some(code) => match *code {
            SqlState::T_R_SERIALIZATION_FAILURE
            | SqlState::T_R_DEADLOCK_DETECTED
            | SqlState::LOCK_NOT_AVAILABLE
            | SqlState::QUERY_CANCELED
            | SqlState::TOO_MANY_CONNECTIONS
            | SqlState::CANNOT_CONNECT_NOW => ErrorKind::Busy,
            SqlState::UNIQUE_VIOLATION => ErrorKind::Conflict,
            SqlState::DISK_FULL | SqlState::OUT_OF_MEMORY => ErrorKind::DiskFull,
            SqlState::READ_ONLY_SQL_TRANSACTION => ErrorKind::ReadOnly,
            SqlState::ADMIN_SHUTDOWN
            | SqlState::CRASH_SHUTDOWN
            | SqlState::CONNECTION_EXCEPTION
            | SqlState::CONNECTION_FAILURE
            | SqlState::CONNECTION_DOES_NOT_EXIST
            | SqlState::IO_ERROR
            // The server ended a session left idle (a host stopped mid-transaction by
            // SIGSTOP, a debugger, swapping): the next operation connects again.
            | SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT
            | SqlState::IDLE_SESSION_TIMEOUT => ErrorKind::Io,
            // Any other connection exception (class 08) is a lost connection too.
            _ if code.code().starts_with("08") => ErrorKind::Io,
            _ => ErrorKind::Other,
        },
        // No SQL state: the connection itself failed (closed, refused, timed out).
        None if e.is_closed() || is_io(&e) => ErrorKind::Io,
        None => ErrorKind::Other,
    };
    StoreError::new(kind, what, e)
}

fn is_io(e: &postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    // Errors while connecting carry their cause in the message only.
    let text = e.to_string();
    text.contains("error connecting") || text.contains("connection closed")
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://…` or `postgresql://…`) and brings
    /// its schema up to date.
    pub fn open(url: &str) -> Result<PgStore, StoreError> {
        let store = PgStore::connect(url)?;
        migrations::migrate(&mut *store.client()?)?;
        Ok(store)
    }

    /// The schema version this build migrates a database to.
    pub const SCHEMA_VERSION: i64 = migrations::LATEST;

    /// Connects to the database at `url` without creating or upgrading its schema
    /// (`stask check` reports what [`PgStore::open`] would change, and changes nothing).
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let target = tls::Target::parse(url)?;
        let store = PgStore {
            client: RefCell::new(None),
            statements: Statements::default(),
            shown: redact(url),
            target,
            unparked_at: std::cell::Cell::new(i64::MIN),
        };
        // Connected now, so an unreachable server is this call's error.
        store.client()?;
        Ok(store)
    }

    /// The connection, opened again when it was lost.
    pub(crate) fn client(&self) -> Result<RefMut<'_, Client>, StoreError> {
        let mut slot = self.client.borrow_mut();
        if slot.as_ref().is_none_or(Client::is_closed) {
            let mut client = self.target.connect(&format!("connect to {}", self.shown))?;
            // A process stopped in the middle of a transaction (SIGSTOP, a debugger, a
            // swapped-out host) must not hold its row locks for ever: the server ends
            // such a transaction (its work is redone or recovered). Prepared statements
            // are planned for their values every time: a generic plan of the claim
            // (chosen after five runs) does not know its limit or the workers and halved
            // the throughput.
            client
                .batch_execute(
                    "SET idle_in_transaction_session_timeout = '15s';
                     SET plan_cache_mode = force_custom_plan",
                )
                .map_err(|e| error("configure the connection", e))?;
            // Statements prepared on the lost connection died with it.
            self.statements.clear();
            *slot = Some(client);
        }
        Ok(RefMut::map(slot, |c| c.as_mut().expect("connected above")))
    }

    /// The URL as it may be shown: without a password.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }
}

/// Statements of the claim-and-finish cycle, prepared once per connection and reused:
/// a statement sent as text is parsed and planned on every call, a round trip more
/// each, which for a cycle of five statements cost about as much as a few dozen tasks.
#[derive(Default)]
pub(crate) struct Statements(RefCell<std::collections::HashMap<String, postgres::Statement>>);

impl Statements {
    /// `sql` prepared on the connection `client` belongs to (prepared now if new).
    pub(crate) fn get(
        &self,
        client: &mut impl postgres::GenericClient,
        sql: &str,
    ) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.0.borrow().get(sql) {
            return Ok(statement.clone());
        }
        let statement = client.prepare(sql)?;
        self.0
            .borrow_mut()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    fn clear(&self) {
        self.0.borrow_mut().clear();
    }
}

/// `text` as PostgreSQL can store it: a `TEXT` value cannot hold NUL, which plugin
/// messages and errors may contain; it is kept visible as `\0`, the escape the log
/// lines use.
pub(crate) fn storable(text: &str) -> std::borrow::Cow<'_, str> {
    if text.contains('\0') {
        std::borrow::Cow::Owned(text.replace('\0', "\\0"))
    } else {
        std::borrow::Cow::Borrowed(text)
    }
}

/// `url` with the password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((user_info, host)) => {
            let user = user_info.split(':').next().unwrap_or("");
            let hidden = if user_info.contains(':') { ":***" } else { "" };
            format!("{scheme}://{user}{hidden}@{host}{path}")
        }
        None => url.to_owned(),
    }
}

impl Store for PgStore {
    fn schema_version(&self) -> Result<i64, StoreError> {
        let mut client = self.client()?;
        // A database no stask has opened yet (see `PgStore::connect`) has no schema
        // table: version 0.
        let exists: bool = client
            .query_one("SELECT to_regclass('stask_schema') IS NOT NULL", &[])
            .context("read the schema table")?
            .get(0);
        if !exists {
            return Ok(0);
        }
        migrations::version(&mut client)
    }

    fn describe(&self) -> String {
        format!("PostgreSQL database {}", self.shown)
    }

    fn is_shared(&self) -> bool {
        true
    }

    fn private_files(&self) -> Vec<std::path::PathBuf> {
        // The data lives in the server; no file here is the store's.
        Vec::new()
    }

    fn check_integrity(&self) -> Result<Vec<String>, StoreError> {
        // The server checks its pages itself (checksums, WAL); what can be checked from
        // here is that every table answers.
        let mut client = self.client()?;
        let mut problems = Vec::new();
        for table in [
            "tasks",
            "task_logs",
            "result_files",
            "result_chunks",
            "workers",
            "schedules",
            "users",
            "api_tokens",
            "hosts",
            "login_failures",
            "workflows",
        ] {
            if let Err(e) = client.query_one(&format!("SELECT COUNT(*) FROM {table}"), &[]) {
                problems.push(format!("table {table}: {e}"));
            }
        }
        Ok(problems)
    }

    fn swap_worker_settings(&mut self, swaps: &[crate::SettingsSwap]) -> Result<bool, StoreError> {
        let mut client = self.client()?;
        let mut tx = client
            .transaction()
            .context("begin replacing worker settings")?;
        let now = crate::now_ms();
        for swap in swaps {
            let changed = tx
                .execute(
                    "UPDATE workers SET settings = $3, updated_at = $4
                     WHERE identifier = $1 AND settings = $2",
                    &[&swap.identifier, &swap.expected, &swap.settings, &now],
                )
                .context("replace worker settings")?;
            if changed == 0 {
                // Dropping the transaction rolls back what the earlier swaps changed.
                return Ok(false);
            }
        }
        tx.commit().context("commit worker settings")?;
        Ok(true)
    }
}

impl Leases for PgStore {
    fn renew_lease(&mut self, owner: &str, now: i64) -> Result<(), StoreError> {
        self.client()?
            .execute(
                "INSERT INTO owners (id, renewed_at) VALUES ($1, $2)
                 ON CONFLICT (id) DO UPDATE SET renewed_at = excluded.renewed_at",
                &[&owner, &now],
            )
            .context("renew lease")?;
        Ok(())
    }

    fn release_lease(&mut self, owner: &str) -> Result<(), StoreError> {
        self.client()?
            .execute("DELETE FROM owners WHERE id = $1", &[&owner])
            .context("release lease")?;
        Ok(())
    }

    fn try_lead(&mut self, owner: &str, now: i64, ttl_ms: i64) -> Result<bool, StoreError> {
        // One statement: the row is locked while it is decided, so two hosts never
        // both win.
        let row = self
            .client()?
            .query_opt(
                "INSERT INTO leader AS l (name, holder, expires_at) VALUES ('chores', $1, $2)
                 ON CONFLICT (name) DO UPDATE SET holder = excluded.holder,
                     expires_at = excluded.expires_at
                 WHERE l.holder = excluded.holder OR l.expires_at < $3
                 RETURNING holder",
                &[&owner, &now.saturating_add(ttl_ms), &now],
            )
            .context("take the leadership")?;
        Ok(row.is_some_and(|r| r.get::<_, &str>(0) == owner))
    }

    fn resign(&mut self, owner: &str) -> Result<(), StoreError> {
        self.client()?
            .execute("DELETE FROM leader WHERE holder = $1", &[&owner])
            .context("give the leadership up")?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host stopped in the middle of a transaction for longer than the server's
    /// idle-in-transaction timeout finds its session ended when it resumes: that is a
    /// lost connection, waited out and reconnected, not a reason for a service to
    /// exit (which it did: the error was classified as permanent).
    #[test]
    fn a_session_ended_for_idling_in_a_transaction_is_a_transient_loss() {
        let url = conformance_tests::test_url();
        let mut client = <postgres::Config as std::str::FromStr>::from_str(&url)
            .unwrap()
            .connect(postgres::NoTls)
            .unwrap();
        client
            .batch_execute("SET idle_in_transaction_session_timeout = '200ms'; BEGIN")
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(800));
        let e = client.simple_query("SELECT 1").unwrap_err();
        let e = error("read", e);
        assert!(e.is_transient(), "{e} ({:?})", e.kind());
    }

    #[test]
    fn passwords_never_show_in_the_url_of_messages() {
        assert_eq!(
            redact("postgres://stask:s3cret@db.example:5432/stask?connect_timeout=5"),
            "postgres://stask:***@db.example:5432/stask?connect_timeout=5"
        );
        assert_eq!(
            redact("postgres://postgres@127.0.0.1/x"),
            "postgres://postgres@127.0.0.1/x"
        );
        assert_eq!(redact("postgres://h/x"), "postgres://h/x");
    }
}
