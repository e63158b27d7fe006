//! The HTTP server's connections: how many, and how long each may stay open.
//!
//! `axum::serve` exposes neither a connection cap nor hyper's header timeout, so the
//! service runs its own accept loop over the same pieces (hyper's HTTP/1 connection
//! builder with hyper-util's tokio glue), adding what an exposed server needs:
//!
//! * **A cap on open connections** ([`HttpLimits::max_connections`]). When it is
//!   reached, the connections that are idle (between requests, or still waiting for a
//!   request's headers), longest idle first, are closed to make room, as nginx does
//!   with its keep-alive connections; when none is idle, the new connection is refused
//!   at once with a fixed `503` and closed, without reading anything or starting a
//!   task for it. Connections that are serving a request are never disturbed.
//! * **Header timeout** ([`HttpLimits::header_timeout`]): a request's headers must
//!   arrive within this time from its first byte (from the connection's opening for
//!   its first request); a slow or partial request is closed.
//! * **Idle timeout** ([`HttpLimits::idle_timeout`]): a keep-alive connection with no
//!   request for this long is closed.
//! * **Body timeout** ([`HttpLimits::body_timeout`]): the whole body must arrive within
//!   this time; enforced where the body is read (`buffer_body` in `mod.rs`), answered
//!   `408`.
//!
//! hyper's own `header_read_timeout` runs one timer from the moment it starts waiting
//! for a request, so it cannot tell a keep-alive connection that is idle from one that
//! is sending headers slowly; it stays on as a backstop (idle + header time), and a
//! small watchdog per connection applies the two limits separately. The watchdog
//! knows a connection's state from the service (requests in flight, counted until
//! their response body is finished) and from its reads (the first byte of the next
//! request), and costs a timer per connection, no polling.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use anyhow::Result;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, OwnedSemaphorePermit, Semaphore};

/// Limits of the HTTP server. Each is a setting (`stask.toml` key, `STASK_<KEY>`
/// variable) named in [`HttpLimits::SETTINGS`] and read by [`crate::config::Config`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Time a request's headers get from its first byte (`http_header_timeout_secs`).
    pub header_timeout: Duration,
    /// Time a request's whole body gets (`http_body_timeout_secs`).
    pub body_timeout: Duration,
    /// Time a keep-alive connection may wait for its next request
    /// (`http_idle_timeout_secs`).
    pub idle_timeout: Duration,
    /// Connections open at once (`http_max_connections`).
    pub max_connections: usize,
    /// Live event streams open at once (`http_max_streams`).
    pub max_streams: usize,
    /// Live event streams one user or token may have open (`http_max_streams_per_user`).
    pub max_streams_per_user: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        HttpLimits {
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 512,
            max_streams: 256,
            max_streams_per_user: 32,
        }
    }
}

impl HttpLimits {
    /// The settings: key, default, smallest and largest value allowed.
    pub const SETTINGS: &'static [(&'static str, u64, u64, u64)] = &[
        ("http_header_timeout_secs", 10, 1, 3600),
        ("http_body_timeout_secs", 30, 1, 3600),
        ("http_idle_timeout_secs", 60, 1, 86_400),
        ("http_max_connections", 512, 1, 1_000_000),
        ("http_max_streams", 256, 0, 1_000_000),
        ("http_max_streams_per_user", 32, 0, 1_000_000),
    ];

    /// The limits from the settings' values, in the order of [`HttpLimits::SETTINGS`]
    /// (the configuration checks each against its range).
    pub fn from_values(values: &[u64; 6]) -> HttpLimits {
        let secs = Duration::from_secs;
        let count = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        HttpLimits {
            header_timeout: secs(values[0]),
            body_timeout: secs(values[1]),
            idle_timeout: secs(values[2]),
            max_connections: count(values[3]),
            max_streams: count(values[4]),
            max_streams_per_user: count(values[5]),
        }
    }
}

/// Descriptors the service needs besides its HTTP connections (store connections,
/// runners and their pipes, wake-up sockets, logs), roughly.
const OTHER_DESCRIPTORS: u64 = 128;

/// Warns when the process's open-file limit cannot hold `http_max_connections`
/// connections next to what the service needs otherwise: connections past the limit
/// would fail to be accepted, and the store to open.
pub fn check_descriptor_limit(limits: &HttpLimits) {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit only writes the struct it is given.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } != 0 {
        return;
    }
    let needed = limits.max_connections as u64 + OTHER_DESCRIPTORS;
    // rlim_t is narrower than u64 on some targets.
    #[allow(clippy::unnecessary_cast)]
    let limit = rl.rlim_cur as u64;
    if limit < needed {
        tracing::warn!(
            "the open-file limit ({}) is below http_max_connections ({}) plus about {OTHER_DESCRIPTORS} descriptors the service needs otherwise; raise it (ulimit -n, LimitNOFILE=) or lower http_max_connections",
            limit,
            limits.max_connections
        );
    }
}

/// Connections the kernel queues for the accept loop: a burst of new connections
/// waits there instead of being dropped (a dropped connection attempt is retried by
/// the client only a second later).
const BACKLOG: libc::c_int = 1024;

/// Raises the listening socket's queue from the standard library's 128 to
/// [`BACKLOG`] (listening again on a listening socket only changes its queue's length;
/// the system may cap it, at `net.core.somaxconn` on Linux).
pub fn deepen_backlog(listener: &std::net::TcpListener) {
    use std::os::fd::AsRawFd as _;
    // SAFETY: listen on a socket descriptor the listener owns and keeps open.
    if unsafe { libc::listen(listener.as_raw_fd(), BACKLOG) } != 0 {
        tracing::debug!(
            "cannot lengthen the listening queue: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// How many idle connections a connection arriving at the cap closes at most.
fn kick_batch(max_connections: usize) -> usize {
    (max_connections / 16).clamp(1, 32)
}

/// How long a connection arriving at the cap waits for the idle ones it closed.
const ROOM_WAIT: Duration = Duration::from_millis(250);

/// Repeated warnings (refused connections, failing accepts) are logged at most this
/// often, with a count.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// What the accept loop and every connection share.
struct Server {
    limits: HttpLimits,
    clock: Instant,
    slots: Arc<Semaphore>,
    conns: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    refusal: Vec<u8>,
    refused: AtomicU64,
    last_refusal_warning: Mutex<Option<Instant>>,
}

/// One connection's state, as the watchdog sees it.
struct Conn {
    clock: Instant,
    /// Requests between the service being called and their response body finishing.
    active: AtomicUsize,
    /// When the last request ended (ms on `clock`, plus one).
    idle_since: AtomicU64,
    /// When the next request's first byte arrived (ms on `clock`, plus one; 0: none).
    request_started: AtomicU64,
    /// The state changed: the watchdog recomputes its deadline.
    changed: Notify,
    /// Asked to close if idle (the connection cap was reached).
    kick: Notify,
}

fn millis(clock: Instant) -> u64 {
    clock.elapsed().as_millis() as u64 + 1
}

impl Conn {
    fn new(clock: Instant) -> Conn {
        let now = millis(clock);
        Conn {
            clock,
            active: AtomicUsize::new(0),
            idle_since: AtomicU64::new(now),
            // A new connection owes its first request's headers within the header
            // timeout (a connection that never sends anything is closed then).
            request_started: AtomicU64::new(now),
            changed: Notify::new(),
            kick: Notify::new(),
        }
    }

    fn is_idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    /// When the connection is closed unless something happens first: `None` while a
    /// request is being served.
    fn deadline(&self, limits: &HttpLimits) -> Option<Instant> {
        if !self.is_idle() {
            return None;
        }
        let started = self.request_started.load(Ordering::Acquire);
        let at = if started != 0 {
            started - 1 + limits.header_timeout.as_millis() as u64
        } else {
            self.idle_since.load(Ordering::Acquire) - 1 + limits.idle_timeout.as_millis() as u64
        };
        Some(self.clock + Duration::from_millis(at))
    }

    /// How long ago the connection last showed a sign of life (for choosing which
    /// idle connections to close first).
    fn last_activity(&self) -> u64 {
        self.idle_since
            .load(Ordering::Acquire)
            .max(self.request_started.load(Ordering::Acquire))
    }

    /// Bytes arrived: when idle, they are the next request's first.
    fn saw_bytes(&self) {
        if self.is_idle() && self.request_started.load(Ordering::Acquire) == 0 {
            self.request_started
                .store(millis(self.clock), Ordering::Release);
            self.changed.notify_one();
        }
    }

    fn start_request(self: &Arc<Conn>) -> RequestGuard {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.request_started.store(0, Ordering::Release);
        self.changed.notify_one();
        RequestGuard { conn: self.clone() }
    }
}

/// A request in flight; dropped when its response body is finished (or abandoned).
struct RequestGuard {
    conn: Arc<Conn>,
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        let c = &self.conn;
        if c.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            c.request_started.store(0, Ordering::Release);
            c.idle_since.store(millis(c.clock), Ordering::Release);
        }
        c.changed.notify_one();
    }
}

/// A response body that keeps its request counted as in flight until it is finished.
struct Tracked {
    body: Body,
    _guard: RequestGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling its connection when bytes arrive.
struct Watched {
    stream: TcpStream,
    conn: Arc<Conn>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.conn.saw_bytes();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl Server {
    fn new(limits: HttpLimits) -> Server {
        let body = serde_json::json!({ "error": {
            "code": "too_many_connections",
            "message": format!(
                "the service has {} connections open, its limit (http_max_connections), all of them busy; try again shortly",
                limits.max_connections
            ),
        }})
        .to_string();
        let refusal = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Server {
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            limits,
            clock: Instant::now(),
            conns: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            refusal,
            refused: AtomicU64::new(0),
            last_refusal_warning: Mutex::new(None),
        }
    }

    /// A connection slot: a free one, or one freed by closing idle connections;
    /// `None` when every connection is busy.
    async fn slot(&self) -> Option<OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Some(p);
        }
        if self.kick_idle() == 0 {
            return None;
        }
        tokio::time::timeout(ROOM_WAIT, self.slots.clone().acquire_owned())
            .await
            .ok()?
            .ok()
    }

    /// Asks the idle connections that have been quiet longest to close; returns how
    /// many were asked.
    fn kick_idle(&self) -> usize {
        let conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let mut idle: Vec<&Arc<Conn>> = conns.values().filter(|c| c.is_idle()).collect();
        idle.sort_by_key(|c| c.last_activity());
        let batch = kick_batch(self.limits.max_connections);
        for c in idle.iter().take(batch) {
            c.kick.notify_one();
        }
        idle.len().min(batch)
    }

    /// Refuses a connection: a fixed 503, then closed.
    fn refuse(&self, stream: TcpStream) {
        // What the client already sent is read first, so closing does not reset the
        // connection before the answer can be read.
        let mut sink = [0u8; 4096];
        let _ = stream.try_read(&mut sink);
        let _ = stream.try_write(&self.refusal);
        drop(stream);
        let n = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_refusal_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            self.refused.store(0, Ordering::Relaxed);
            tracing::warn!(
                "refused {n} connection(s): all {} connections (http_max_connections) are serving requests",
                self.limits.max_connections
            );
        }
    }

    fn register(&self) -> (u64, Arc<Conn>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Conn::new(self.clock));
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, conn.clone());
        (id, conn)
    }

    fn unregister(&self, id: u64) {
        self.conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}

/// Whether an accept error is about one connection (which is simply gone) rather than
/// the server (out of descriptors or memory: wait a moment before trying again).
fn is_connection_error(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::ConnectionRefused
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::ConnectionReset
    )
}

/// Serves `app` on `listener` until `stop` turns true, then lets open connections
/// finish their requests (the caller bounds how long it waits).
pub async fn run(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    limits: HttpLimits,
    mut stop: watch::Receiver<bool>,
) {
    let server = Arc::new(Server::new(limits));
    let mut last_accept_warning: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.wait_for(|s| *s) => break,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) if is_connection_error(&e) => continue,
            Err(e) => {
                if last_accept_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY) {
                    last_accept_warning = Some(Instant::now());
                    tracing::warn!(
                        "cannot accept HTTP connections: {e} (if the process is out of file descriptors, raise its limit or lower http_max_connections)"
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(permit) = server.slot().await else {
            server.refuse(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(
            server.clone(),
            stream,
            remote,
            permit,
            app.clone(),
            stop.clone(),
        ));
    }
    drop(listener);
    // Every connection finishes its request and closes (see `connection`); all slots
    // back means all are gone.
    let all = u32::try_from(server.limits.max_connections).unwrap_or(u32::MAX);
    let _ = server.slots.acquire_many(all).await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

async fn connection(
    server: Arc<Server>,
    stream: TcpStream,
    remote: SocketAddr,
    permit: OwnedSemaphorePermit,
    app: axum::Router,
    mut stop: watch::Receiver<bool>,
) {
    let (id, conn) = server.register();
    let io = hyper_util::rt::TokioIo::new(Watched {
        stream,
        conn: conn.clone(),
    });
    let tracked = conn.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let guard = tracked.start_request();
            req.extensions_mut().insert(ConnectInfo(remote));
            let mut app = app.clone();
            async move {
                let res = tower_service::Service::call(&mut app, req)
                    .await
                    .unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(res.map(|body| Tracked {
                    body,
                    _guard: guard,
                }))
            }
        });
    let limits = &server.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(hyper_util::rt::TokioTimer::new())
        // hyper's one timer, from when it starts waiting for a request: the backstop.
        .header_read_timeout(limits.idle_timeout + limits.header_timeout);
    let served = builder.serve_connection(io, service);
    tokio::pin!(served);
    let mut stopping = false;
    loop {
        let deadline = conn.deadline(limits);
        tokio::select! {
            result = served.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(client = %remote, "HTTP connection ended: {e}");
                }
                break;
            }
            _ = sleep_until(deadline) => {
                if conn.deadline(limits).is_some_and(|d| d <= Instant::now()) {
                    tracing::debug!(
                        client = %remote,
                        "closing an HTTP connection: no complete request within the header or idle timeout"
                    );
                    break;
                }
            }
            _ = conn.changed.notified() => {}
            _ = conn.kick.notified() => {
                if conn.is_idle() {
                    tracing::debug!(client = %remote, "closing an idle HTTP connection to make room for a new one");
                    break;
                }
            }
            _ = stop.wait_for(|s| *s), if !stopping => {
                stopping = true;
                served.as_mut().graceful_shutdown();
            }
        }
    }
    server.unregister(id);
    drop(permit);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_settings_table_and_the_defaults_agree() {
        let defaults: [u64; 6] = std::array::from_fn(|i| HttpLimits::SETTINGS[i].1);
        assert_eq!(HttpLimits::from_values(&defaults), HttpLimits::default());
        for (key, default, min, max) in HttpLimits::SETTINGS {
            assert!((min..=max).contains(&default), "{key}");
        }
    }

    #[test]
    fn the_watchdog_applies_the_header_timeout_from_a_first_byte_and_the_idle_timeout_between_requests(
    ) {
        let limits = HttpLimits {
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            ..HttpLimits::default()
        };
        let clock = Instant::now() - Duration::from_secs(1000);
        let conn = Arc::new(Conn::new(clock));
        // A new connection: its first request within the header timeout.
        let first = conn.deadline(&limits).unwrap();
        assert!(first <= Instant::now() + limits.header_timeout);
        // Serving a request: no deadline.
        let guard = conn.start_request();
        assert_eq!(conn.deadline(&limits), None);
        // Bytes while serving (the body) do not start a header timer.
        conn.saw_bytes();
        assert_eq!(conn.deadline(&limits), None);
        drop(guard);
        // Idle: the idle timeout.
        let idle = conn.deadline(&limits).unwrap();
        assert!(idle > Instant::now() + Duration::from_secs(50), "{idle:?}");
        // The next request's first byte: the header timeout.
        conn.saw_bytes();
        let headers = conn.deadline(&limits).unwrap();
        assert!(headers <= Instant::now() + limits.header_timeout);
        assert!(headers > Instant::now() + Duration::from_secs(5));
        assert_eq!(kick_batch(512), 32);
        assert_eq!(kick_batch(20), 1);
    }
}
