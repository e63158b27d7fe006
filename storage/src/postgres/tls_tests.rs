//! TLS against a real server: a throw-away PostgreSQL cluster of the test's own (the
//! machine's server is never reconfigured), with `ssl=on` and certificates made here:
//! a CA, a server certificate for `localhost` only, a client certificate, and a second
//! CA that signed none of them.
//!
//! `initdb` and `postgres` come from `/usr/lib/postgresql/*/bin` (CI installs Debian's
//! PostgreSQL). They refuse to run as root, so as root they run as the `postgres` user
//! in a directory it owns. Where none of that is possible the test fails and says why:
//! a TLS test that quietly did nothing would read as a pass.

use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

use super::tls::Target;
use super::PgStore;
use crate::error::ErrorKind;
use crate::wakeups::Wakeups;

/// The newest PostgreSQL server binaries on this machine.
fn server_bin() -> PathBuf {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = entry.path().join("bin");
            bin.join("initdb").exists().then_some((version, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, bin)) => bin,
        None => panic!(
            "the TLS tests need PostgreSQL's server programs (initdb) in /usr/lib/postgresql/*/bin: install Debian's postgresql package (scripts/postgres.sh does)"
        ),
    }
}

/// The user the server runs as: this one, or `postgres` when this is root (the server
/// refuses root).
struct RunAs {
    ids: Option<(u32, u32)>,
}

impl RunAs {
    fn find() -> RunAs {
        // /proc/self belongs to the effective user (the crate allows no unsafe code,
        // so no geteuid).
        let euid = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m))
            .expect("read /proc/self");
        if euid != 0 {
            return RunAs { ids: None };
        }
        let id = |flag: &str| {
            Command::new("id")
                .args([flag, "postgres"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| {
                    String::from_utf8(out.stdout)
                        .ok()?
                        .trim()
                        .parse::<u32>()
                        .ok()
                })
        };
        match (id("-u"), id("-g")) {
            (Some(uid), Some(gid)) => RunAs {
                ids: Some((uid, gid)),
            },
            _ => panic!(
                "the TLS tests run as root, and PostgreSQL refuses to run as root; they run it as the `postgres` user, which this machine lacks: install Debian's postgresql package (it creates the user) or run the tests as another user"
            ),
        }
    }

    /// `program` as a command run by the server's user.
    fn command(&self, program: &Path) -> Command {
        match self.ids {
            None => Command::new(program),
            Some((uid, gid)) => {
                // setpriv executes the program in its own process (no parent left
                // waiting, unlike runuser), so the child's pid is the server's.
                let mut c = Command::new("setpriv");
                c.arg(format!("--reuid={uid}"))
                    .arg(format!("--regid={gid}"))
                    .arg("--clear-groups")
                    .arg("--")
                    .arg(program);
                c
            }
        }
    }

    /// Gives `path` to the server's user.
    fn give(&self, path: &Path) {
        if let Some((uid, gid)) = self.ids {
            std::os::unix::fs::chown(path, Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("give {} to the postgres user: {e}", path.display()));
        }
    }
}

/// The certificates of a test: PEM files in the cluster's directory.
struct Certificates {
    ca: PathBuf,
    other_ca: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn write(path: &Path, text: &str, mode: u32, run_as: &RunAs) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    run_as.give(path);
}

fn ca(name: &str) -> (rcgen::Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

/// Makes the CAs and certificates; the server's go where `postgresql.conf` names them.
fn make_certificates(dir: &Path, run_as: &RunAs) -> Certificates {
    let (ca_cert, ca_key) = ca("stask test CA");
    let (other_cert, _) = ca("stask test CA that signed nothing");

    // The server's certificate holds `localhost` only, so connecting to 127.0.0.1 is a
    // name mismatch.
    let mut server = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server_key = KeyPair::generate().unwrap();
    let server_cert = server.signed_by(&server_key, &ca_cert, &ca_key).unwrap();

    // The `cert` method maps the certificate's common name to the role.
    let mut client = CertificateParams::new(Vec::<String>::new()).unwrap();
    client
        .distinguished_name
        .push(DnType::CommonName, "certuser");
    client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client_key = KeyPair::generate().unwrap();
    let client_cert = client.signed_by(&client_key, &ca_cert, &ca_key).unwrap();

    let certs = Certificates {
        ca: dir.join("ca.pem"),
        other_ca: dir.join("other-ca.pem"),
        client_cert: dir.join("client.pem"),
        client_key: dir.join("client.key"),
    };
    write(&certs.ca, &ca_cert.pem(), 0o644, run_as);
    write(&certs.other_ca, &other_cert.pem(), 0o644, run_as);
    write(&dir.join("server.pem"), &server_cert.pem(), 0o644, run_as);
    // The server refuses a key others can read.
    write(
        &dir.join("server.key"),
        &server_key.serialize_pem(),
        0o600,
        run_as,
    );
    write(&certs.client_cert, &client_cert.pem(), 0o644, run_as);
    write(
        &certs.client_key,
        &client_key.serialize_pem(),
        0o600,
        run_as,
    );
    certs
}

/// A running throw-away cluster; stopped and removed when dropped.
struct Cluster {
    server: Child,
    port: u16,
    certs: Certificates,
    dir: tempfile::TempDir,
}

impl Cluster {
    fn start() -> Cluster {
        let bin = server_bin();
        let run_as = RunAs::find();
        // As root, in /tmp: the postgres user may not be able to reach a TMPDIR of
        // root's. The path stays short enough for the server's socket.
        let mut builder = tempfile::Builder::new();
        builder.prefix("stask-tls-");
        let dir = match run_as.ids {
            Some(_) => builder.tempdir_in("/tmp"),
            None => builder.tempdir(),
        }
        .unwrap();
        run_as.give(dir.path());
        let data = dir.path().join("data");
        let log = dir.path().join("initdb.log");
        let out = run_as
            .command(&bin.join("initdb"))
            .args([
                "--auth=trust",
                "--username=postgres",
                "--no-sync",
                "--encoding=UTF8",
            ])
            .arg("-D")
            .arg(&data)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("run {}: {e}", bin.join("initdb").display()));
        assert!(
            out.status.success(),
            "initdb failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::write(&log, &out.stdout);
        let certs = make_certificates(dir.path(), &run_as);
        // Client certificates for `certuser` only; everyone else by trust, with or
        // without TLS (so a plain connection can check on the server).
        std::fs::write(
            data.join("pg_hba.conf"),
            "local all all trust\n\
             hostssl all certuser 127.0.0.1/32 cert\n\
             hostssl all certuser ::1/128 cert\n\
             host all all 127.0.0.1/32 trust\n\
             host all all ::1/128 trust\n",
        )
        .unwrap();
        run_as.give(&data.join("pg_hba.conf"));

        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server_log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        run_as.give(&dir.path().join("server.log"));
        let d = dir.path().display();
        let server = run_as
            .command(&bin.join("postgres"))
            .arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string()])
            .args(["-k", &d.to_string()])
            .args(["-c", "listen_addresses=localhost"])
            .args(["-c", "ssl=on"])
            .args(["-c", &format!("ssl_cert_file={d}/server.pem")])
            .args(["-c", &format!("ssl_key_file={d}/server.key")])
            .args(["-c", &format!("ssl_ca_file={}", certs.ca.display())])
            .args(["-c", "fsync=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(server_log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.join("postgres").display()));
        let mut cluster = Cluster {
            server,
            port,
            certs,
            dir,
        };
        cluster.wait_ready();
        cluster
            .plain()
            .batch_execute("CREATE ROLE certuser LOGIN")
            .unwrap();
        cluster
    }

    fn server_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.server.try_wait().unwrap() {
                panic!(
                    "the test's PostgreSQL server exited ({status}):\n{}",
                    self.server_log()
                );
            }
            match postgres::Client::connect(
                &self.url("127.0.0.1", "sslmode=disable"),
                postgres::NoTls,
            ) {
                Ok(_) => return,
                Err(e) if Instant::now() > deadline => panic!(
                    "the test's PostgreSQL server did not answer within 60 s ({e}):\n{}",
                    self.server_log()
                ),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    fn url(&self, host: &str, params: &str) -> String {
        format!("postgres://postgres@{host}:{}/postgres?{params}", self.port)
    }

    /// A plain connection, to look at the server from outside.
    fn plain(&self) -> postgres::Client {
        postgres::Client::connect(&self.url("127.0.0.1", "sslmode=disable"), postgres::NoTls)
            .unwrap()
    }

    /// Connects with `params` the way the store does.
    fn connect(&self, host: &str, params: &str) -> Result<postgres::Client, String> {
        let url = self.url(host, params);
        Target::parse(&url)
            .and_then(|t| t.connect("connect"))
            .map_err(|e| {
                assert_eq!(
                    e.kind(),
                    ErrorKind::Other,
                    "{e}: a configuration error, not transient"
                );
                // Shown with --nocapture, to read the messages people will get.
                eprintln!("refused: {e}");
                e.to_string()
            })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // A fast shutdown: sessions end, the server exits; then the directory goes.
        // The pid is our child's, not yet reaped, so it is the server's.
        let _ = Command::new("kill")
            .args(["-INT", &self.server.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.server.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// Whether the session of `client` is encrypted, as the server sees it.
fn encrypted(client: &mut postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .unwrap()
        .get(0)
}

#[test]
fn tls_to_a_real_server_is_verified_and_encrypted() {
    let cluster = Cluster::start();
    let ca = cluster.certs.ca.display().to_string();
    let other_ca = cluster.certs.other_ca.display().to_string();
    let port = cluster.port;

    // The store and its wake-up listener: both connections encrypted, wake-ups arrive.
    let url = cluster.url("127.0.0.1", &format!("sslmode=require&sslrootcert={ca}"));
    let store = PgStore::open(&url).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        encrypted(&mut store.client().unwrap()),
        "sslmode=require: the store's session is encrypted"
    );
    let listener = store.listen().unwrap();
    // The listener's session is the one whose last statement was its LISTEN (other
    // sessions, closed a moment ago, may not have left the server's view yet).
    let listeners: Vec<bool> = store
        .client()
        .unwrap()
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.query LIKE 'LISTEN %' AND a.pid <> pg_backend_pid()",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        listeners,
        [true],
        "the wake-up listener's session is encrypted too"
    );
    store.notify_work();
    assert!(
        listener.wait(Duration::from_secs(10)),
        "a wake-up arrives over TLS"
    );
    drop(listener);
    drop(store);

    // verify-full by the name the certificate holds.
    let mut client = cluster
        .connect(
            "localhost",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        )
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(encrypted(&mut client));
    drop(client);

    // verify-ca checks the chain only: the address is not in the certificate.
    let mut client = cluster
        .connect("127.0.0.1", &format!("sslmode=verify-ca&sslrootcert={ca}"))
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(encrypted(&mut client));
    drop(client);

    // verify-full by a name the certificate does not hold.
    let e = cluster
        .connect(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        )
        .err()
        .expect("verify-full refuses a certificate for another name");
    assert!(e.contains(&format!("server 127.0.0.1:{port}")), "{e}");
    assert!(e.contains("does not hold the name"), "{e}");
    assert!(
        e.contains("localhost"),
        "names what the certificate holds: {e}"
    );

    // A CA that did not sign the server's certificate.
    for mode in ["require", "verify-ca", "verify-full"] {
        let e = cluster
            .connect(
                "localhost",
                &format!("sslmode={mode}&sslrootcert={other_ca}"),
            )
            .err()
            .unwrap_or_else(|| panic!("sslmode={mode} with the wrong CA is refused"));
        assert!(e.contains(&format!("server localhost:{port}")), "{e}");
        assert!(e.contains("not signed by a trusted CA"), "{e}");
        assert!(e.contains(&format!("sslrootcert={other_ca}")), "{e}");
    }

    // The system's roots do not know the test's CA.
    let e = cluster
        .connect("localhost", "sslmode=require")
        .err()
        .expect("the system's roots do not trust the test's CA");
    assert!(
        e.contains("the system's root certificates") || e.contains("the system has none"),
        "{e}"
    );

    // A client certificate for a role that must show one.
    let with_cert = format!(
        "sslmode=verify-full&sslrootcert={ca}&sslcert={}&sslkey={}",
        cluster.certs.client_cert.display(),
        cluster.certs.client_key.display()
    );
    let url = format!("postgres://certuser@localhost:{port}/postgres?{with_cert}");
    let mut client = Target::parse(&url)
        .and_then(|t| t.connect("connect"))
        .unwrap_or_else(|e| panic!("{e}"));
    let user: String = client
        .query_one("SELECT current_user::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(user, "certuser");
    assert!(encrypted(&mut client));
    drop(client);
    let url = format!(
        "postgres://certuser@localhost:{port}/postgres?sslmode=verify-full&sslrootcert={ca}"
    );
    let e = Target::parse(&url)
        .and_then(|t| t.connect("connect"))
        .err()
        .expect("without its certificate certuser is refused");
    assert!(e.to_string().contains("certificate"), "{e}");

    // disable and prefer (the default) stay plain.
    for params in ["sslmode=disable", "sslmode=prefer", "connect_timeout=5"] {
        let url = cluster.url("127.0.0.1", params);
        let mut client = Target::parse(&url).unwrap().connect("connect").unwrap();
        assert!(!encrypted(&mut client), "{params}: no TLS");
    }
}
