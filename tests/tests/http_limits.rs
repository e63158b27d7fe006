//! The HTTP server under abuse: a real `stask serve` with short limits (set through
//! `STASK_HTTP_*` variables), driven over raw TCP connections.
//!
//! Every wait is bounded: a test fails when something that must happen does not happen
//! within a generous bound (far shorter than what it would take without the limit),
//! never because it happened a little late.

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stask_e2e::{wait_until, Background, Home};

const DEMO: &str = "stask_worker_demo";

/// The longest a test waits for the service to start or answer.
const WAIT: Duration = Duration::from_secs(30);

/// A running `stask serve` with an API token per role.
struct Service {
    home: Home,
    bg: Background,
    /// `127.0.0.1:PORT`.
    addr: String,
    tokens: HashMap<&'static str, String>,
}

impl Service {
    /// A service on a new home prepared by `setup`, with `env` set.
    fn start(env: &[(&str, &str)], setup: impl FnOnce(&Home)) -> Service {
        let home = Home::new();
        setup(&home);
        let mut tokens = HashMap::new();
        for role in ["viewer", "operator", "admin"] {
            let t = home.json(&["tokens", "create", "--role", role, "--name", role]);
            tokens.insert(role, t["token"].as_str().expect("token").to_owned());
        }
        let (bg, url) = home.serve_http(&[], env);
        let addr = url.trim_start_matches("http://").to_owned();
        Service {
            home,
            bg,
            addr,
            tokens,
        }
    }

    fn token(&self, role: &str) -> &str {
        &self.tokens[role]
    }

    fn connect(&self) -> TcpStream {
        let s = TcpStream::connect(&self.addr).expect("connect to the service");
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        s
    }

    /// One request on a new connection; the answer.
    fn request(&self, head: &str, body: &str) -> Answer {
        let mut s = self.connect();
        s.write_all(format!("{head}\r\n\r\n{body}").as_bytes())
            .expect("send");
        read_answer(&mut s, WAIT)
    }

    /// `GET path` with the token of `role`.
    fn get(&self, role: &str, path: &str) -> Answer {
        self.request(
            &format!(
                "GET {path} HTTP/1.1\r\nHost: stask\r\nAuthorization: Bearer {}\r\nConnection: close",
                self.token(role)
            ),
            "",
        )
    }

    /// Opens a live event stream of task `id` as `role`: the connection and the
    /// answer's head (for a refusal, its whole answer).
    fn open_stream(&self, role: &str, id: i64) -> (TcpStream, Answer) {
        let mut s = self.connect();
        s.write_all(
            format!(
                "GET /api/v1/tasks/{id}/events HTTP/1.1\r\nHost: stask\r\nAuthorization: Bearer {}\r\nAccept: text/event-stream\r\n\r\n",
                self.token(role)
            )
            .as_bytes(),
        )
        .expect("send");
        let answer = read_answer(&mut s, WAIT);
        (s, answer)
    }

    /// CPU time the service has used (user + system).
    fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.bg.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the command name (which may hold spaces) in parentheses:
        // state is field 3, utime 14, stime 15.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
        let per_sec = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_millis(ticks * 1000 / per_sec)
    }

    /// Open file descriptors of the service.
    fn open_files(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.bg.pid()))
            .map(|d| d.count())
            .unwrap_or(0)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- stask serve stderr ---\n{}", self.bg.stderr_so_far());
        }
    }
}

/// An HTTP answer read from a raw connection (the body only when its length is
/// given).
#[derive(Debug)]
struct Answer {
    status: u16,
    head: String,
    body: String,
}

impl Answer {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.body, self.head))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

/// Reads one answer's head (and its body, when `Content-Length` gives its size) within
/// `bound`; fails the test if none comes.
fn read_answer(s: &mut TcpStream, bound: Duration) -> Answer {
    let start = Instant::now();
    let mut data = Vec::new();
    let mut buf = [0u8; 1];
    let head_end = loop {
        if let Some(i) = find(&data, b"\r\n\r\n") {
            break i + 4;
        }
        match s.read(&mut buf) {
            Ok(0) => panic!(
                "the connection closed before an answer came: {:?}",
                String::from_utf8_lossy(&data)
            ),
            Ok(_) => data.push(buf[0]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                assert!(
                    start.elapsed() < bound,
                    "no answer within {bound:?}: {:?}",
                    String::from_utf8_lossy(&data)
                );
            }
            Err(e) => panic!("reading the answer failed: {e}"),
        }
    };
    let head = String::from_utf8_lossy(&data[..head_end]).into_owned();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {head}"));
    let mut answer = Answer {
        status,
        head,
        body: String::new(),
    };
    if let Some(len) = answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
    {
        let mut body = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match s.read(&mut body[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    assert!(
                        start.elapsed() < bound,
                        "the body did not come within {bound:?}"
                    );
                }
                Err(e) => panic!("reading the body failed: {e}"),
            }
        }
        answer.body = String::from_utf8_lossy(&body[..got]).into_owned();
    }
    answer
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Waits until the service closes the connection (reading and discarding whatever it
/// sends); fails the test if it is still open after `bound`. Returns what was read.
fn closed_within(s: &mut TcpStream, bound: Duration, what: &str) -> String {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).into_owned(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&got).into_owned()
            }
            Err(e) => panic!("{what}: reading failed: {e}"),
        }
        assert!(
            start.elapsed() < bound,
            "{what}: the connection is still open after {bound:?}"
        );
    }
}

/// Reads a live event stream until its `end` event; fails the test if it does not
/// come within `bound`.
fn read_until_end(s: &mut TcpStream, bound: Duration) -> String {
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while find(&got, b"event: end").is_none() {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("reading the stream failed: {e}"),
        }
        assert!(
            start.elapsed() < bound,
            "no end event within {bound:?}: {}",
            String::from_utf8_lossy(&got)
        );
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Tasks that stay pending (their worker is deactivated before any service runs).
fn pending_tasks(home: &Home, n: usize) -> Vec<i64> {
    home.install_active(&[DEMO]);
    let ids = (0..n)
        .map(|_| home.create_task("demo", "run", &json!({ "steps": 1 }), &[]))
        .collect();
    home.ok(&["workers", "deactivate", "demo"]);
    ids
}

#[test]
fn silent_partial_and_slow_header_connections_are_closed_at_the_header_timeout() {
    // The idle timeout is long: what closes these connections is the header timeout.
    let svc = Service::start(
        &[
            ("STASK_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("STASK_HTTP_IDLE_TIMEOUT_SECS", "120"),
        ],
        |_| {},
    );
    let bound = Duration::from_secs(20);

    // A connection that never sends anything.
    let mut silent = svc.connect();
    // A request cut off in its headers.
    let mut partial = svc.connect();
    partial
        .write_all(b"GET /api/v1/auth/me HTTP/1.1\r\nHost: stask\r\n")
        .unwrap();
    // Headers trickling in, a byte every 200 ms, forever.
    let mut slow = svc.connect();
    slow.write_all(b"GET /api/v1/auth/me HTTP/1.1\r\nHost: stask\r\nX-Slow: ")
        .unwrap();
    let mut writer = slow.try_clone().unwrap();
    let trickle = std::thread::spawn(move || {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(25) {
            if writer.write_all(b"a").is_err() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        false
    });

    closed_within(&mut silent, bound, "a silent connection");
    closed_within(&mut partial, bound, "a partial request");
    closed_within(&mut slow, bound, "headers trickling in");
    assert!(
        trickle.join().unwrap(),
        "the trickling client could write until the end"
    );
    // The service serves on.
    assert_eq!(svc.get("viewer", "/api/v1/auth/me").status, 200);
}

#[test]
fn keep_alive_connections_wait_the_idle_timeout_between_requests_then_close() {
    let svc = Service::start(
        &[
            ("STASK_HTTP_HEADER_TIMEOUT_SECS", "1"),
            ("STASK_HTTP_IDLE_TIMEOUT_SECS", "4"),
        ],
        |_| {},
    );
    let mut s = svc.connect();
    let request = format!(
        "GET /api/v1/auth/me HTTP/1.1\r\nHost: stask\r\nAuthorization: Bearer {}\r\n\r\n",
        svc.token("viewer")
    );
    s.write_all(request.as_bytes()).unwrap();
    assert_eq!(read_answer(&mut s, WAIT).status, 200);
    // Longer than the header timeout, shorter than the idle timeout: still open.
    std::thread::sleep(Duration::from_millis(1500));
    s.write_all(request.as_bytes()).unwrap();
    let again = read_answer(&mut s, WAIT);
    assert_eq!(again.status, 200, "{again:?}");
    // Then, idle, it is closed.
    closed_within(
        &mut s,
        Duration::from_secs(30),
        "an idle keep-alive connection",
    );
}

#[test]
fn a_body_that_does_not_arrive_in_time_is_answered_408_and_the_connection_closed() {
    let svc = Service::start(&[("STASK_HTTP_BODY_TIMEOUT_SECS", "2")], |_| {});
    for (path, auth) in [
        ("/api/v1/auth/login", String::new()),
        (
            "/api/v1/tasks",
            format!("Authorization: Bearer {}\r\n", svc.token("admin")),
        ),
    ] {
        let mut s = svc.connect();
        s.write_all(
            format!(
                "POST {path} HTTP/1.1\r\nHost: stask\r\n{auth}Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"name\": "
            )
            .as_bytes(),
        )
        .unwrap();
        let mut writer = s.try_clone().unwrap();
        let trickle = std::thread::spawn(move || {
            for _ in 0..100 {
                if writer.write_all(b" ").is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(300));
            }
        });
        let answer = read_answer(&mut s, Duration::from_secs(20));
        assert_eq!(
            (answer.status, answer.code().as_str()),
            (408, "body_timeout"),
            "{path}: {answer:?}"
        );
        assert!(answer.body.contains("http_body_timeout_secs"), "{answer:?}");
        assert_eq!(answer.header("connection").as_deref(), Some("close"));
        closed_within(&mut s, Duration::from_secs(20), path);
        trickle.join().unwrap();
    }
}

#[test]
fn credentials_roles_and_declared_sizes_are_checked_before_any_body_is_read() {
    // A service that waited for the body would wait this long.
    let svc = Service::start(&[("STASK_HTTP_BODY_TIMEOUT_SECS", "600")], |_| {});
    let bound = Duration::from_secs(20);
    let post = |auth: &str, length: &str, extra: &str| -> (TcpStream, Answer) {
        let mut s = svc.connect();
        s.write_all(
            format!(
                "POST /api/v1/tasks HTTP/1.1\r\nHost: stask\r\n{auth}{extra}Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
            )
            .as_bytes(),
        )
        .unwrap();
        let answer = read_answer(&mut s, bound);
        (s, answer)
    };
    let bearer = |role: &str| format!("Authorization: Bearer {}\r\n", svc.token(role));

    // No credentials: 401 without waiting for the 1,000 announced bytes, and the
    // connection is closed (its body was never read).
    let (mut s, a) = post("", "1000", "");
    assert_eq!(
        (a.status, a.code().as_str()),
        (401, "unauthenticated"),
        "{a:?}"
    );
    assert_eq!(a.header("connection").as_deref(), Some("close"), "{a:?}");
    closed_within(&mut s, bound, "a refused request");
    // A client that waits for "100 Continue" gets the refusal instead.
    let (_, a) = post("", "1000", "Expect: 100-continue\r\n");
    assert_eq!(a.status, 401, "{a:?}");
    // A wrong token, the same.
    let (_, a) = post("Authorization: Bearer stask_wrong\r\n", "1000", "");
    assert_eq!(a.status, 401, "{a:?}");
    // A viewer may not create tasks: 403 before the body.
    let (_, a) = post(&bearer("viewer"), "1000", "");
    assert_eq!((a.status, a.code().as_str()), (403, "forbidden"), "{a:?}");
    // A declared terabyte: 413 at once, whoever asks.
    for auth in [bearer("admin"), String::new()] {
        let (mut s, a) = post(&auth, "1099511627776", "");
        assert_eq!(
            (a.status, a.code().as_str()),
            (413, "body_too_large"),
            "{a:?}"
        );
        assert!(a.body.contains("1099511627776"), "{a:?}");
        assert_eq!(a.header("connection").as_deref(), Some("close"), "{a:?}");
        closed_within(&mut s, bound, "a refused terabyte");
    }
    // A body within the limit is read and answered as before.
    let mut s = svc.connect();
    let body = json!({ "worker": "nope", "action": "x" }).to_string();
    s.write_all(
        format!(
            "POST /api/v1/tasks HTTP/1.1\r\nHost: stask\r\n{}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            bearer("operator"),
            body.len()
        )
        .as_bytes(),
    )
    .unwrap();
    let a = read_answer(&mut s, bound);
    assert_eq!(
        (a.status, a.code().as_str()),
        (422, "unknown_worker"),
        "{a:?}"
    );
    // Its body was read: the connection stays open for the next request.
    assert_ne!(a.header("connection").as_deref(), Some("close"), "{a:?}");
}

#[test]
fn at_the_connection_cap_idle_connections_make_room_and_busy_ones_are_kept() {
    const CAP: usize = 16;
    let svc = Service::start(
        &[
            ("STASK_HTTP_MAX_CONNECTIONS", &CAP.to_string()),
            // Long timeouts: only the cap frees connections here.
            ("STASK_HTTP_HEADER_TIMEOUT_SECS", "300"),
            ("STASK_HTTP_IDLE_TIMEOUT_SECS", "300"),
        ],
        |home| {
            pending_tasks(home, 1);
        },
    );
    let task = 1;
    assert_eq!(svc.get("viewer", "/api/v1/auth/me").status, 200);
    let files_before = svc.open_files();

    // A flood of connections that send nothing: the service keeps at most CAP of
    // them open and still answers a client.
    let flood: Vec<TcpStream> = (0..300).map(|_| svc.connect()).collect();
    let answer = svc.get("viewer", "/api/v1/auth/me");
    assert_eq!(answer.status, 200, "{answer:?}");
    let files = svc.open_files();
    assert!(
        files <= files_before + CAP + 8,
        "the service holds {files} descriptors ({files_before} before the flood, cap {CAP})"
    );
    drop(flood);

    // Every connection busy (a live stream each): a new one is refused at once with
    // a 503 naming the limit, and the streams are not disturbed.
    let mut streams = Vec::new();
    for _ in 0..CAP {
        let (s, a) = wait_until(WAIT, "a stream is admitted", || {
            let (s, a) = svc.open_stream("viewer", task);
            (a.status == 200).then_some((s, a))
        });
        assert_eq!(
            a.header("content-type").as_deref(),
            Some("text/event-stream")
        );
        streams.push(s);
    }
    for _ in 0..3 {
        let mut s = svc.connect();
        let a = read_answer(&mut s, Duration::from_secs(20));
        assert_eq!(
            (a.status, a.code().as_str()),
            (503, "too_many_connections"),
            "{a:?}"
        );
        assert!(a.body.contains("http_max_connections"), "{a:?}");
        closed_within(&mut s, Duration::from_secs(20), "a refused connection");
    }
    // The streams still work: cancelling the task ends every one of them.
    let out = svc.home.run(&["tasks", "cancel", &task.to_string()]);
    assert!(out.status.success(), "{out:?}");
    for s in &mut streams {
        let text = read_until_end(s, WAIT);
        assert!(text.contains("cancelled"), "{text}");
    }
    drop(streams);
    let answer = wait_until(WAIT, "a request is served again", || {
        let mut s = svc.connect();
        s.write_all(
            format!(
                "GET /api/v1/auth/me HTTP/1.1\r\nHost: stask\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
                svc.token("viewer")
            )
            .as_bytes(),
        )
        .ok()?;
        let a = read_answer(&mut s, WAIT);
        (a.status == 200).then_some(a)
    });
    assert_eq!(answer.status, 200);
}

#[test]
fn live_streams_are_capped_per_user_and_in_all_with_errors_naming_the_limit() {
    let svc = Service::start(
        &[
            ("STASK_HTTP_MAX_STREAMS", "5"),
            ("STASK_HTTP_MAX_STREAMS_PER_USER", "3"),
        ],
        |home| {
            pending_tasks(home, 1);
        },
    );
    let mut open = Vec::new();
    for _ in 0..3 {
        let (s, a) = svc.open_stream("viewer", 1);
        assert_eq!(a.status, 200, "{a:?}");
        open.push(s);
    }
    let (_, a) = svc.open_stream("viewer", 1);
    assert_eq!(
        (a.status, a.code().as_str()),
        (429, "too_many_streams"),
        "{a:?}"
    );
    assert!(a.body.contains("http_max_streams_per_user = 3"), "{a:?}");
    assert!(a.header("retry-after").is_some(), "{a:?}");
    for _ in 0..2 {
        let (s, a) = svc.open_stream("operator", 1);
        assert_eq!(a.status, 200, "{a:?}");
        open.push(s);
    }
    let (_, a) = svc.open_stream("admin", 1);
    assert_eq!(
        (a.status, a.code().as_str()),
        (503, "stream_limit_reached"),
        "{a:?}"
    );
    assert!(a.body.contains("http_max_streams = 5"), "{a:?}");
    assert!(a.header("retry-after").is_some(), "{a:?}");
    // The rest of the API is unaffected.
    assert_eq!(svc.get("admin", "/api/v1/tasks/1").status, 200);
    // A closed stream gives its place back.
    drop(open.remove(0));
    let (_s, a) = wait_until(WAIT, "a closed stream's place is free again", || {
        let (s, a) = svc.open_stream("admin", 1);
        (a.status == 200).then_some((s, a))
    });
    assert_eq!(a.status, 200);
}

#[test]
fn idle_live_streams_cost_almost_no_cpu() {
    const TASKS: usize = 20;
    const PER_TASK: usize = 10;
    let svc = Service::start(
        &[
            ("STASK_HTTP_MAX_STREAMS", "1000"),
            ("STASK_HTTP_MAX_STREAMS_PER_USER", "1000"),
        ],
        |home| {
            pending_tasks(home, TASKS);
        },
    );
    let mut streams = Vec::new();
    for task in 1..=TASKS as i64 {
        for _ in 0..PER_TASK {
            let (s, a) = svc.open_stream("viewer", task);
            assert_eq!(a.status, 200, "{a:?}");
            streams.push(s);
        }
    }
    // Settled (each stream has read the task's log and is waiting), then measured.
    std::thread::sleep(Duration::from_secs(1));
    let window = Duration::from_secs(3);
    let before = svc.cpu_time();
    std::thread::sleep(window);
    let used = svc.cpu_time() - before;
    eprintln!(
        "{} idle streams: {used:?} of CPU time in {window:?}",
        streams.len()
    );
    // A bound, not a benchmark: polling the store per stream every 100 ms cost these
    // 200 streams about a sixth of a core (debug build); one watcher per task, a small
    // fraction of that.
    assert!(
        used < window / 20,
        "{} idle streams used {used:?} of CPU time in {window:?}",
        streams.len()
    );
    // And they are live: a change reaches every stream of the task.
    let out = svc.home.run(&["tasks", "cancel", "1"]);
    assert!(out.status.success(), "{out:?}");
    for s in streams.iter_mut().take(PER_TASK) {
        let text = read_until_end(s, WAIT);
        assert!(
            text.contains("event: line") && text.contains("cancelled"),
            "{text}"
        );
    }
}
