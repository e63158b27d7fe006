//! The conformance suite against PostgreSQL: each case gets a schema of its own in the
//! database of `STASK_TEST_DATABASE_URL` (default: the local server the test scripts
//! start, `postgres://postgres@127.0.0.1:5432/postgres`), dropped afterwards.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::conformance::Harness;
use crate::{Store, TaskQueue};

/// The server the tests use.
pub(crate) fn test_url() -> String {
    std::env::var("STASK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A schema of its own in the test database.
pub struct PgHarness {
    schema: String,
}

impl PgHarness {
    pub fn new() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let schema = format!(
            "stask_test_{}_{}_{}",
            std::process::id(),
            crate::now_ms(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut admin = postgres::Client::connect(&test_url(), postgres::NoTls).unwrap_or_else(|e| {
            panic!(
                "the PostgreSQL conformance tests need a server at {} ({e}); start one with scripts/postgres.sh or set STASK_TEST_DATABASE_URL",
                test_url()
            )
        });
        admin
            .batch_execute(&format!("CREATE SCHEMA \"{schema}\""))
            .unwrap();
        PgHarness { schema }
    }

    /// The URL of a connection whose tables live in this harness's schema.
    pub fn url(&self) -> String {
        let base = test_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}options=-c%20search_path%3D{}", self.schema)
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        if let Ok(mut admin) = postgres::Client::connect(&test_url(), postgres::NoTls) {
            let _ = admin.batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.schema));
        }
    }
}

impl Harness for PgHarness {
    fn open(&self) -> Box<dyn Store> {
        crate::open(&self.url()).unwrap()
    }

    fn check_released(&self, _bytes: u64) {
        // The server keeps freed space for new rows (see `release_space`).
    }
}

crate::conformance_tests!(super::PgHarness::new());

/// A schema name near PostgreSQL's 63-byte limit still gets working wake-ups (the
/// channel is named after a hash of the schema, never cut or refused).
#[test]
fn a_long_schema_name_still_wakes_listeners() {
    use crate::conformance::{insert, register, task};
    let long = format!("stask_test_long_{}_{}", std::process::id(), "x".repeat(30));
    let mut admin = postgres::Client::connect(&test_url(), postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE SCHEMA \"{long}\""))
        .unwrap();
    let base = test_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options=-c%20search_path%3D{long}");
    let result = std::panic::catch_unwind(|| {
        let mut s = crate::open(&url).unwrap();
        register(&mut *s, &["w"], true);
        let listener = crate::open(&url).unwrap().listen().unwrap();
        insert(&mut *s, &task("w", 0), 1);
        assert!(listener.wait(std::time::Duration::from_secs(5)));
    });
    let _ = admin.batch_execute(&format!("DROP SCHEMA \"{long}\" CASCADE"));
    result.unwrap();
}

/// Hosts opening an empty schema at the same moment all succeed and the schema is
/// migrated once: the schema table's creation takes turns under the migrations' lock
/// (`CREATE TABLE IF NOT EXISTS` racing itself failed one of them with "type
/// stask_schema already exists").
#[test]
fn hosts_opening_an_empty_schema_at_once_all_succeed() {
    // A race: ten empty schemas, eight hosts each (before the fix, about half of such
    // rounds failed one host).
    for _ in 0..10 {
        let h = PgHarness::new();
        let url = h.url();
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            let opened: Vec<_> = (0..8)
                .map(|_| {
                    s.spawn(|| {
                        barrier.wait();
                        super::PgStore::open(&url).map(|_| ())
                    })
                })
                .collect();
            for o in opened {
                o.join().unwrap().unwrap();
            }
        });
        let store = super::PgStore::open(&url).unwrap();
        let row = store
            .client()
            .unwrap()
            .query_one(
                "SELECT COUNT(*), COUNT(DISTINCT version) FROM stask_schema",
                &[],
            )
            .unwrap();
        let latest = super::migrations::LATEST;
        assert_eq!(
            (row.get::<_, i64>(0), row.get::<_, i64>(1)),
            (latest, latest)
        );
    }
}

/// The claim-and-finish statements are prepared once per connection; after the
/// connection is lost (here: its backend terminated), the first operation fails as a
/// transient loss and the next one, on a new connection, prepares them again instead of
/// naming statements the server no longer has.
#[test]
fn prepared_statements_are_prepared_again_after_a_lost_connection() {
    use crate::conformance::{claim, completed, finish, insert, register, task};
    let h = PgHarness::new();
    let mut store = super::PgStore::open(&h.url()).unwrap();
    register(&mut store, &["w"], true);
    insert(&mut store, &task("w", 1), 4);
    let first = claim(&mut store, "me", 10, 2);
    assert_eq!(first.len(), 2);
    let pid: i32 = store
        .client()
        .unwrap()
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    postgres::Client::connect(&test_url(), postgres::NoTls)
        .unwrap()
        .execute("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let claim_again = |store: &mut super::PgStore| {
        store.claim(&crate::Claim {
            finishes: &[finish(first[0].task.id, "me", completed(), "completed", 20)],
            owner: "me",
            now: 20,
            limit: 2,
            excluded_workers: &[],
            start_line: &|_| crate::LogLine::new("running", 0, 0, 0, "", "started"),
        })
    };
    let lost = claim_again(&mut store).unwrap_err();
    assert!(lost.is_transient(), "{lost}");
    let (applied, claimed) = claim_again(&mut store).unwrap();
    assert_eq!((applied, claimed.len()), (vec![true], 2));
}
