//! TLS to PostgreSQL: the `ssl*` parameters of a database URL, and every connection the
//! backend opens (the store's and the wake-up listener's) made with them.
//!
//! | `sslmode` | TLS | the server's certificate is checked against | and its name |
//! |---|---|---|---|
//! | `disable`, `allow`, `prefer` (the default) | no | — | — |
//! | `require` | yes | `sslrootcert=PATH`, or the system's roots | only with the system's roots |
//! | `verify-ca` | yes | `sslrootcert=PATH` (required) | no |
//! | `verify-full` | yes | `sslrootcert=PATH`, or the system's roots | yes |
//!
//! * `prefer` does not try TLS. Verified TLS would fail against the self-signed
//!   certificate a default Debian server has, and falling back to plain text after a
//!   failed check costs a handshake per connection and protects nothing (an attacker can
//!   refuse TLS as easily); encrypting without checking the certificate would look safe
//!   and is not. So a URL gets TLS only by asking for it, and then always verified.
//! * `require` never runs unverified, unlike libpq's (which checks nothing unless it
//!   finds a root certificate). With `sslrootcert` it checks what libpq checks then: that
//!   the certificate chains to that CA. With the system's roots it also checks the host
//!   name, because any public CA signs certificates for anyone; for the same reason
//!   `verify-ca` needs `sslrootcert` (libpq 16 refuses `sslrootcert=system` with
//!   `verify-ca` too).
//! * `sslrootcert=PATH` is a PEM file of one or more CA certificates; `sslrootcert=system`
//!   (as in libpq 16) names the system's roots, which are also used without the
//!   parameter: `/etc/ssl/certs` and `SSL_CERT_FILE` / `SSL_CERT_DIR`
//!   (rustls-native-certs), so a private CA installed with `update-ca-certificates` is
//!   trusted there too. Files under `~/.postgresql/` are not read: every file is named
//!   in the URL.
//! * `sslcert=PATH` and `sslkey=PATH` (both or neither): a client certificate (PEM) and
//!   its unencrypted key (PKCS#8, PKCS#1 or SEC1), for servers that authenticate
//!   clients by certificate.
//! * `sslsni=0` leaves the server name out of the handshake; `ssl_min_protocol_version`
//!   and `ssl_max_protocol_version` take `TLSv1.2` or `TLSv1.3` (rustls speaks no older
//!   TLS; a lower minimum is met anyway). `sslnegotiation=direct` (PostgreSQL 17) needs
//!   one of the TLS modes.
//! * `sslpassword`, `sslcrl`, `sslcrldir`, `sslcertmode`, `sslcompression` and
//!   `requiressl` are refused with what to do instead.
//! * TLS is for TCP: PostgreSQL does not encrypt its local sockets, so a socket path
//!   (`host=/run/postgresql`) with a TLS mode is refused.
//! * A certificate that fails its check, a server that does not speak TLS, or a server
//!   that refuses the handshake is a configuration error ([`ErrorKind::Other`]), not a
//!   lost connection: waiting does not fix it, so a service stops and says so instead of
//!   retrying quietly. The message names the server, what was checked and what failed.
//!
//! The crypto is rustls with ring (aws-lc-rs, rustls' default, needs cmake and nasm to
//! build); the adapter is `tokio-postgres-rustls`, which offers SCRAM channel binding
//! (`tls-server-end-point`) to the server as well.

use std::str::FromStr;
use std::sync::Arc;

use postgres::config::{Host, SslMode, SslNegotiation};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{verify_server_cert_signed_by_trust_anchor, WebPkiServerVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::{ErrorKind, StoreError};

/// Where and how to connect: the client's configuration and the TLS to use with it.
#[derive(Clone)]
pub(crate) struct Target {
    config: postgres::Config,
    /// `None`: plain connections (`disable`, `allow`, `prefer`).
    tls: Option<Tls>,
    /// The servers as `host:port`, for messages.
    servers: String,
}

#[derive(Clone)]
struct Tls {
    connector: MakeRustlsConnect,
    /// What the certificate is checked against, for messages.
    roots: String,
    /// Whether the certificate must also name the host.
    names_checked: bool,
    /// Whether the roots are `sslrootcert`'s (not the system's).
    roots_from_file: bool,
}

/// The `ssl*` parameters read here (the client's parser knows only some of them, and
/// fewer `sslmode` values).
#[derive(Default)]
struct TlsParams {
    mode: Option<String>,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    sni: Option<String>,
    min_version: Option<String>,
    max_version: Option<String>,
}

/// libpq's TLS parameters this stask does not implement, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "sslpassword",
        "encrypted client keys are not supported: give sslkey a key file without a passphrase (`openssl pkey -in KEY -out PLAIN`), readable only by stask's user",
    ),
    (
        "sslcrl",
        "certificate revocation lists are not supported: remove the revoked certificate's CA from sslrootcert, or issue the server a new certificate from a new CA",
    ),
    (
        "sslcrldir",
        "certificate revocation lists are not supported: remove the revoked certificate's CA from sslrootcert, or issue the server a new certificate from a new CA",
    ),
    (
        "sslcertmode",
        "give sslcert and sslkey to send a client certificate, or leave them out not to",
    ),
    (
        "sslcompression",
        "TLS compression is not supported (PostgreSQL 14 and later never use it): remove the parameter",
    ),
    ("requiressl", "use sslmode=require instead"),
];

fn url_error(message: impl Into<String>) -> StoreError {
    StoreError::new(ErrorKind::Other, "read the database URL", message.into())
}

impl Target {
    /// Reads a `postgres://` URL: the `ssl*` parameters here, the rest by the client.
    pub(crate) fn parse(url: &str) -> Result<Target, StoreError> {
        let (rest, params) = take_tls_params(url)?;
        let mut config = postgres::Config::from_str(&rest).map_err(|e| {
            url_error(format!(
                "{e} (expected postgres://USER@HOST:PORT/DATABASE?PARAMETER=VALUE&…)"
            ))
        })?;
        let servers = servers(&config);
        let mode = params.mode.as_deref().unwrap_or("prefer");
        let tls_mode = match mode {
            "disable" | "allow" | "prefer" => false,
            "require" | "verify-ca" | "verify-full" => true,
            other => {
                return Err(url_error(format!(
                    "sslmode={other} is not a mode: use disable, prefer (the default), require, verify-ca or verify-full"
                )))
            }
        };
        if !tls_mode {
            for (name, value) in [
                ("sslrootcert", &params.rootcert),
                ("sslcert", &params.cert),
                ("sslkey", &params.key),
            ] {
                if value.is_some() {
                    return Err(url_error(format!(
                        "{name} is given but sslmode={mode} does not use TLS (stask uses TLS only when asked): add sslmode=verify-full (or require, or verify-ca)"
                    )));
                }
            }
            if config.get_ssl_negotiation() == SslNegotiation::Direct {
                return Err(url_error(format!(
                    "sslnegotiation=direct needs TLS, which sslmode={mode} does not use: add sslmode=verify-full (or require)"
                )));
            }
            if mode == "disable" {
                config.ssl_mode(SslMode::Disable);
            }
            return Ok(Target {
                config,
                tls: None,
                servers,
            });
        }
        for host in config.get_hosts() {
            if let Host::Unix(path) = host {
                return Err(url_error(format!(
                    "sslmode={mode} cannot apply to the local socket {}: PostgreSQL does not use TLS on local sockets; connect over TCP (a host name or address), or leave sslmode out",
                    path.display()
                )));
            }
        }
        config.ssl_mode(SslMode::Require);
        let tls = Tls::new(mode, &params)?;
        Ok(Target {
            config,
            tls: Some(tls),
            servers,
        })
    }

    /// Whether connections use TLS.
    #[cfg(test)]
    pub(crate) fn uses_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection; `what` names it in errors ("connect to URL").
    pub(crate) fn connect(&self, what: &str) -> Result<postgres::Client, StoreError> {
        let result = match &self.tls {
            None => self.config.connect(postgres::NoTls),
            Some(tls) => self.config.connect(tls.connector.clone()),
        };
        result.map_err(|e| {
            let tls = self.tls.as_ref();
            if let Some(message) = tls.and_then(|tls| tls.explain(&e, &self.servers)) {
                return StoreError::new(ErrorKind::Other, what, message);
            }
            // The client's message is only the kind ("db error"); the server's reason
            // (a refused password or certificate, a missing database) is in its causes.
            let message = chain(&e);
            StoreError::new(super::error(what, e).kind(), what, message)
        })
    }
}

impl Tls {
    fn new(mode: &str, params: &TlsParams) -> Result<Tls, StoreError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let (roots, roots_shown, from_file) = match params.rootcert.as_deref() {
            None | Some("system") => (
                system_roots()?,
                "the system's root certificates".to_owned(),
                false,
            ),
            Some(path) => (file_roots(path)?, format!("sslrootcert={path}"), true),
        };
        let names_checked = match mode {
            "verify-full" => true,
            "require" => !from_file,
            _ if !from_file => {
                return Err(url_error(
                    "sslmode=verify-ca checks only who signed the server's certificate, which against the system's roots (any public CA) proves nothing: give sslrootcert=PATH (your CA's certificate), or use sslmode=verify-full",
                ))
            }
            _ => false,
        };
        let builder = ClientConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&versions(params)?)
            .map_err(|e| url_error(format!("TLS settings: {e}")))?;
        let roots = Arc::new(roots);
        let builder = if names_checked {
            let verifier = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                .build()
                .map_err(|e| url_error(format!("{roots_shown}: {e}")))?;
            builder.with_webpki_verifier(verifier)
        } else {
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly {
                    roots,
                    algorithms: provider.signature_verification_algorithms,
                }))
        };
        let mut config = match (params.cert.as_deref(), params.key.as_deref()) {
            (None, None) => builder.with_no_client_auth(),
            (Some(cert), Some(key)) => {
                let (chain, private) = client_identity(cert, key)?;
                builder.with_client_auth_cert(chain, private).map_err(|e| {
                    url_error(format!("sslcert={cert} and sslkey={key}: {e}"))
                })?
            }
            (Some(_), None) => {
                return Err(url_error(
                    "sslcert is given without sslkey: give both (the client certificate and its key), or neither",
                ))
            }
            (None, Some(_)) => {
                return Err(url_error(
                    "sslkey is given without sslcert: give both (the client certificate and its key), or neither",
                ))
            }
        };
        // What libpq 17 offers, and what PostgreSQL 17 requires for sslnegotiation=direct;
        // older servers ignore it.
        config.alpn_protocols = vec![b"postgresql".to_vec()];
        config.enable_sni = match params.sni.as_deref() {
            None | Some("1") => true,
            Some("0") => false,
            Some(other) => return Err(url_error(format!("sslsni={other}: use 0 or 1"))),
        };
        Ok(Tls {
            connector: MakeRustlsConnect::new(config),
            roots: roots_shown,
            names_checked,
            roots_from_file: from_file,
        })
    }

    /// A message for a failure of TLS itself (the certificate, the handshake, a server
    /// without TLS); `None` for anything else (a refused or lost connection, a
    /// password), which the caller classifies as usual.
    fn explain(&self, e: &postgres::Error, servers: &str) -> Option<String> {
        if chain(e).contains("server does not support TLS") {
            return Some(format!(
                "the server {servers} does not accept TLS (its ssl setting is off): turn ssl on in its postgresql.conf, or connect without sslmode"
            ));
        }
        let tls_error = rustls_error(e)?;
        let checked = if self.names_checked {
            format!("checked against {} and the host name", self.roots)
        } else {
            format!("checked against {}, host name not checked", self.roots)
        };
        Some(match tls_error {
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "the TLS certificate of the server {servers} does not hold the name connected to ({tls_error}): connect by a name the certificate holds, or, with sslrootcert, use sslmode=verify-ca to check only who signed it"
            ),
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => format!(
                "the TLS certificate of the server {servers} is not signed by a trusted CA ({checked}): {}",
                if self.roots_from_file {
                    "sslrootcert must hold the CA that signed the server's certificate (or one above it)"
                } else {
                    "give sslrootcert=PATH with the CA that signed the server's certificate"
                }
            ),
            rustls::Error::InvalidCertificate(_) => format!(
                "the TLS certificate of the server {servers} was refused ({checked}): {tls_error}"
            ),
            rustls::Error::AlertReceived(alert) => format!(
                "the server {servers} refused the TLS handshake ({alert:?}): if it asks for a client certificate, give sslcert and sslkey; check its log for why"
            ),
            other => format!("TLS with the server {servers} failed ({checked}): {other}"),
        })
    }
}

/// The message of `e` and of each of its causes.
fn chain(e: &postgres::Error) -> String {
    let mut message = e.to_string();
    let mut next = std::error::Error::source(e);
    while let Some(cause) = next {
        message.push_str(&format!(": {cause}"));
        next = cause.source();
    }
    message
}

/// The rustls error under a connection error: tokio-rustls wraps it in an
/// `io::Error`, whose `source()` skips it, so each `io::Error` is opened by hand.
fn rustls_error(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut next: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<rustls::Error>() {
            return Some(found);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(found) = io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            {
                return Some(found);
            }
        }
        next = err.source();
    }
    None
}

/// Checks that the server's certificate chains to a trusted root, not the names it
/// holds (`verify-ca`, and `require` with `sslrootcert`): the handshake's signatures
/// are checked as always.
#[derive(Debug)]
struct ChainOnly {
    roots: Arc<RootCertStore>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.algorithms.all,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The system's trusted roots.
fn system_roots() -> Result<RootCertStore, StoreError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = RootCertStore::empty();
    roots.add_parsable_certificates(found.certs);
    if roots.is_empty() {
        let why = found
            .errors
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ");
        return Err(url_error(format!(
            "TLS needs root certificates to check the server's, and the system has none{}: install the ca-certificates package, or give sslrootcert=PATH with the CA that signed the server's certificate",
            if why.is_empty() { String::new() } else { format!(" ({why})") }
        )));
    }
    Ok(roots)
}

/// The CA certificates of a PEM file.
fn file_roots(path: &str) -> Result<RootCertStore, StoreError> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path).map_err(|e| {
        url_error(format!(
            "sslrootcert={path}: cannot read it: {}",
            pem_error(&e)
        ))
    })? {
        let cert = cert.map_err(|e| url_error(format!("sslrootcert={path}: {}", pem_error(&e))))?;
        roots.add(cert).map_err(|e| {
            url_error(format!(
                "sslrootcert={path}: not a usable CA certificate: {e}"
            ))
        })?;
    }
    if roots.is_empty() {
        return Err(url_error(format!(
            "sslrootcert={path} holds no certificate: it must be a PEM file (-----BEGIN CERTIFICATE-----) of the CA that signed the server's certificate"
        )));
    }
    Ok(roots)
}

/// The client certificate chain and key of `sslcert` and `sslkey`.
fn client_identity(
    cert: &str,
    key: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), StoreError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| url_error(format!("sslcert={cert}: cannot read it: {}", pem_error(&e))))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| url_error(format!("sslcert={cert}: {}", pem_error(&e))))?;
    if chain.is_empty() {
        return Err(url_error(format!(
            "sslcert={cert} holds no certificate: it must be a PEM file (-----BEGIN CERTIFICATE-----)"
        )));
    }
    let private = PrivateKeyDer::from_pem_file(key).map_err(|e| {
        url_error(format!(
            "sslkey={key}: {} (it must be an unencrypted PEM key: PKCS#8, PKCS#1 or SEC1)",
            pem_error(&e)
        ))
    })?;
    Ok((chain, private))
}

fn pem_error(e: &rustls::pki_types::pem::Error) -> String {
    match e {
        rustls::pki_types::pem::Error::Io(io) => io.to_string(),
        rustls::pki_types::pem::Error::NoItemsFound => "no PEM item of that kind in it".to_owned(),
        other => format!("not valid PEM ({other:?})"),
    }
}

/// The TLS versions `ssl_min_protocol_version` and `ssl_max_protocol_version` allow.
fn versions(
    params: &TlsParams,
) -> Result<Vec<&'static rustls::SupportedProtocolVersion>, StoreError> {
    // 0: any version below TLS 1.2 (rustls has none), 2: TLS 1.2, 3: TLS 1.3.
    let level = |name: &str, value: &Option<String>, default: u8| match value.as_deref() {
        None | Some("") => Ok(default),
        Some("TLSv1" | "TLSv1.1") => Ok(0),
        Some("TLSv1.2") => Ok(2),
        Some("TLSv1.3") => Ok(3),
        Some(other) => Err(url_error(format!("{name}={other}: use TLSv1.2 or TLSv1.3"))),
    };
    let min = level("ssl_min_protocol_version", &params.min_version, 2)?.max(2);
    let max = level("ssl_max_protocol_version", &params.max_version, 3)?;
    let versions: Vec<_> = [(2, &rustls::version::TLS12), (3, &rustls::version::TLS13)]
        .into_iter()
        .filter(|(v, _)| (min..=max).contains(v))
        .map(|(_, version)| version)
        .collect();
    if versions.is_empty() {
        return Err(url_error(
            "ssl_min_protocol_version and ssl_max_protocol_version leave no TLS version stask speaks (TLSv1.2 and TLSv1.3)",
        ));
    }
    Ok(versions)
}

/// The servers of `config` as `host:port`, for messages.
fn servers(config: &postgres::Config) -> String {
    let ports = config.get_ports();
    config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, host)| {
            let port = ports.get(i).or(ports.first()).copied().unwrap_or(5432);
            match host {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]:{port}"),
                Host::Tcp(name) => format!("{name}:{port}"),
                Host::Unix(path) => path.display().to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `url` without the parameters read here, and those parameters.
fn take_tls_params(url: &str) -> Result<(String, TlsParams), StoreError> {
    let mut params = TlsParams::default();
    // The query starts at the first `?` after the credentials, as the client's parser
    // reads it (credentials end at the first `@`).
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let after_credentials = url[after_scheme..]
        .find('@')
        .map_or(after_scheme, |i| after_scheme + i + 1);
    let Some(query_at) = url[after_credentials..]
        .find('?')
        .map(|i| after_credentials + i)
    else {
        return Ok((url.to_owned(), params));
    };
    let mut kept = Vec::new();
    for pair in url[query_at + 1..].split('&') {
        let (raw_key, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = decode(raw_key)?;
        let slot = match key.as_str() {
            "sslmode" => &mut params.mode,
            "sslrootcert" => &mut params.rootcert,
            "sslcert" => &mut params.cert,
            "sslkey" => &mut params.key,
            "sslsni" => &mut params.sni,
            "ssl_min_protocol_version" => &mut params.min_version,
            "ssl_max_protocol_version" => &mut params.max_version,
            _ => {
                if let Some((name, what)) = UNSUPPORTED.iter().find(|(name, _)| *name == key) {
                    return Err(url_error(format!(
                        "the parameter {name} is not supported by this stask: {what}"
                    )));
                }
                kept.push(pair);
                continue;
            }
        };
        *slot = Some(decode(raw_value)?);
    }
    let mut rest = url[..query_at].to_owned();
    if !kept.is_empty() {
        rest.push('?');
        rest.push_str(&kept.join("&"));
    }
    Ok((rest, params))
}

/// A percent-encoded URL part, decoded (a `%` not followed by two hex digits is kept,
/// as the client's parser keeps it).
fn decode(raw: &str) -> Result<String, StoreError> {
    let hex = |b: Option<&u8>| b.and_then(|&b| (b as char).to_digit(16));
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            if let (Some(high), Some(low)) = (hex(bytes.get(i + 1)), hex(bytes.get(i + 2))) {
                out.push((high * 16 + low) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out).map_err(|_| url_error(format!("{raw}: not UTF-8 once decoded")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(url: &str) -> String {
        match Target::parse(url) {
            Ok(_) => panic!("{url} was accepted"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        let (rest, params) = take_tls_params(
            "postgres://u:p%3F@h:5/db?connect_timeout=5&sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(
            rest,
            "postgres://u:p%3F@h:5/db?connect_timeout=5&application_name=x"
        );
        assert_eq!(params.mode.as_deref(), Some("verify-full"));
        assert_eq!(params.rootcert.as_deref(), Some("/tmp/ca.pem"));
        let (rest, _) = take_tls_params("postgres://h/db?sslmode=require").unwrap();
        assert_eq!(rest, "postgres://h/db");
        let (rest, _) = take_tls_params("postgres://h/db").unwrap();
        assert_eq!(rest, "postgres://h/db");
    }

    #[test]
    fn prefer_and_disable_stay_plain() {
        for url in [
            "postgres://h/db",
            "postgres://h/db?sslmode=prefer",
            "postgres://h/db?sslmode=disable",
        ] {
            assert!(!Target::parse(url).unwrap().uses_tls(), "{url}");
        }
        assert!(Target::parse("postgres://h/db?sslmode=require")
            .unwrap()
            .uses_tls());
    }

    #[test]
    fn unusable_tls_settings_are_refused_with_what_to_do() {
        assert!(refused("postgres://h/db?sslrootcert=/x.pem").contains("add sslmode=verify-full"));
        assert!(refused("postgres://h/db?sslmode=verify-ca").contains("give sslrootcert=PATH"));
        assert!(refused("postgres://h/db?sslmode=require&sslpassword=x").contains("sslpassword"));
        assert!(refused("postgres://h/db?sslmode=require&sslcrl=/c").contains("revocation"));
        assert!(
            refused("postgres://h/db?sslmode=required").contains("sslmode=required is not a mode")
        );
        assert!(
            refused("postgres://h/db?sslmode=require&sslcert=/c.pem").contains("without sslkey")
        );
        assert!(
            refused("postgres://h/db?sslmode=require&sslrootcert=/nonexistent/ca.pem")
                .contains("sslrootcert=/nonexistent/ca.pem: cannot read it")
        );
        assert!(
            refused("postgres://h/db?sslmode=require&host=/run/postgresql")
                .contains("local socket")
        );
        assert!(refused("postgres://h/db?sslmode=require&ssl_min_protocol_version=TLSv1.3&ssl_max_protocol_version=TLSv1.2")
            .contains("no TLS version"));
        assert!(refused("postgres://h/db?sslnegotiation=direct").contains("needs TLS"));
    }

    #[test]
    fn a_server_without_tls_is_named_and_not_waited_out() {
        // A server that answers the TLS request with "N", as one with ssl=off does.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut socket, _) = listener.accept().unwrap();
            let mut request = [0u8; 8];
            socket.read_exact(&mut request).unwrap();
            socket.write_all(b"N").unwrap();
        });
        let url = format!("postgres://u@127.0.0.1:{port}/db?sslmode=require");
        let e = Target::parse(&url)
            .unwrap()
            .connect("connect")
            .err()
            .unwrap();
        server.join().unwrap();
        assert_eq!(e.kind(), ErrorKind::Other, "{e}");
        let text = e.to_string();
        assert!(
            text.contains(&format!("server 127.0.0.1:{port} does not accept TLS")),
            "{text}"
        );
    }

    #[test]
    fn protocol_versions_follow_the_url() {
        let params = |min: Option<&str>, max: Option<&str>| TlsParams {
            min_version: min.map(str::to_owned),
            max_version: max.map(str::to_owned),
            ..TlsParams::default()
        };
        assert_eq!(versions(&params(None, None)).unwrap().len(), 2);
        assert_eq!(versions(&params(Some("TLSv1"), None)).unwrap().len(), 2);
        assert_eq!(
            versions(&params(Some("TLSv1.3"), None)).unwrap()[0].version,
            rustls::ProtocolVersion::TLSv1_3
        );
        assert_eq!(
            versions(&params(None, Some("TLSv1.2"))).unwrap()[0].version,
            rustls::ProtocolVersion::TLSv1_2
        );
        assert!(versions(&params(None, Some("TLSv1.1"))).is_err());
    }
}
