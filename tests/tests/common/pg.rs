//! A schema of its own per PostgreSQL test, on the local server the test scripts start
//! (`scripts/postgres.sh`; `STASK_TEST_DATABASE_URL` names another), shared by the test
//! files that need one (`#[path = "common/pg.rs"] mod pg;`).

/// The server the tests use.
pub fn server_url() -> String {
    std::env::var("STASK_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// A connection for the tests' own administration (schemas, sessions).
pub fn admin() -> postgres::Client {
    postgres::Client::connect(&server_url(), postgres::NoTls).unwrap_or_else(|e| {
        panic!(
            "these tests need PostgreSQL at {} ({e}); start it with scripts/postgres.sh",
            server_url()
        )
    })
}

/// A schema of its own, dropped at the end; its connections carry the schema's name
/// as their application name, so a test can find (and terminate) them.
pub struct Schema {
    /// The schema's name (`PREFIX_PID_NANOS`).
    pub name: String,
}

impl Schema {
    /// A new empty schema named after `prefix`, this process and the time.
    pub fn named(prefix: &str) -> Schema {
        let name = format!(
            "{prefix}_{}_{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        );
        admin()
            .batch_execute(&format!("CREATE SCHEMA \"{name}\""))
            .unwrap();
        Schema { name }
    }

    /// A home (with its own plugins directory) whose store is this schema: a host of
    /// its own, as on another machine.
    pub fn home(&self) -> stask_e2e::Home {
        let home = stask_e2e::Home::new();
        std::fs::write(
            home.path().join("stask.toml"),
            format!("database_url = \"{}\"\n", self.url()),
        )
        .unwrap();
        // The harness made the home with a SQLite database; from now on nothing may
        // use it.
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(home.path().join(format!("stask.db{suffix}")));
        }
        home
    }

    /// The database URL of a store in this schema.
    pub fn url(&self) -> String {
        let base = server_url();
        let sep = if base.contains('?') { '&' } else { '?' };
        format!(
            "{base}{sep}options=-c%20search_path%3D{0}&application_name={0}",
            self.name
        )
    }
}

impl Drop for Schema {
    fn drop(&mut self) {
        let _ = admin().batch_execute(&format!("DROP SCHEMA \"{}\" CASCADE", self.name));
    }
}
