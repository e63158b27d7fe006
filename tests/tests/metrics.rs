//! Observability: `GET /metrics` (Prometheus text format) scraped from a real `stask
//! serve` over real HTTP and checked against the API's own answers, its credentials
//! (the `metrics` role), and `serve --log-format json`.
//!
//! The exposition is parsed (names, label sets, values, declared types), never grepped.

use std::collections::{BTreeMap, HashMap};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};
use stask_e2e::{processes_with_cmdline, wait_until, Background, Home};

const DEMO: &str = "stask_worker_demo";
const MISBEHAVING: &str = "stask_fixture_misbehaving";

/// The longest a test waits for the service or a task.
const WAIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------
// The exposition format
// ---------------------------------------------------------------------------------

/// One sample line: `name{label="value",…} value`.
#[derive(Debug, Clone)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// A parsed scrape: the declared type of every family and the samples.
#[derive(Debug)]
struct Exposition {
    types: HashMap<String, String>,
    samples: Vec<Sample>,
}

impl Exposition {
    /// Parses the Prometheus text format (0.0.4) strictly: every line is a `# HELP`, a
    /// `# TYPE` or a sample of a family declared before it; label values are unescaped.
    fn parse(text: &str) -> Exposition {
        let mut types: HashMap<String, String> = HashMap::new();
        let mut samples = Vec::new();
        for line in text.lines() {
            if line.is_empty() {
                continue;
            }
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest
                    .split_once(' ')
                    .unwrap_or_else(|| panic!("bad TYPE line {line:?}"));
                assert!(
                    ["counter", "gauge", "histogram", "summary", "untyped"].contains(&kind),
                    "unknown type in {line:?}"
                );
                assert!(
                    types.insert(name.to_owned(), kind.to_owned()).is_none(),
                    "{name} declared twice"
                );
                continue;
            }
            if line.starts_with("# HELP ") {
                continue;
            }
            assert!(!line.starts_with('#'), "unexpected comment {line:?}");
            let sample = parse_sample(line);
            let family = family_of(&sample.name, &types)
                .unwrap_or_else(|| panic!("sample of an undeclared family: {line:?}"));
            if types[&family] == "counter" {
                assert!(sample.value >= 0.0, "negative counter: {line:?}");
            }
            samples.push(sample);
        }
        Exposition { types, samples }
    }

    /// The value of the sample `name` with exactly these labels.
    fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let found: Vec<&Sample> = self
            .samples
            .iter()
            .filter(|s| s.name == name && s.labels == want)
            .collect();
        assert!(found.len() <= 1, "{name}{want:?} listed twice");
        found.first().map(|s| s.value)
    }

    /// Like [`Exposition::get`], 0 when the series is not listed (a counter that never
    /// moved).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        self.get(name, labels).unwrap_or(0.0)
    }

    /// The samples of `name` whose labels include `filter`.
    fn series(&self, name: &str, filter: &[(&str, &str)]) -> Vec<&Sample> {
        self.samples
            .iter()
            .filter(|s| {
                s.name == name
                    && filter
                        .iter()
                        .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
            })
            .collect()
    }

    /// The sum of the samples of `name` whose labels include `filter`.
    fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.series(name, filter).iter().map(|s| s.value).sum()
    }

    /// Checks every series of histogram `name`: cumulative buckets in increasing `le`
    /// order ending at `+Inf`, which equals `_count`. Returns the `_count`s by label set
    /// (without `le`).
    fn histogram(&self, name: &str) -> BTreeMap<BTreeMap<String, String>, f64> {
        assert_eq!(
            self.types.get(name).map(String::as_str),
            Some("histogram"),
            "{name}"
        );
        let mut counts = BTreeMap::new();
        for c in self.series(&format!("{name}_count"), &[]) {
            let mut buckets: Vec<(f64, f64)> = self
                .series(&format!("{name}_bucket"), &[])
                .into_iter()
                .filter(|b| {
                    let mut l = b.labels.clone();
                    l.remove("le");
                    l == c.labels
                })
                .map(|b| {
                    let le = match b.labels["le"].as_str() {
                        "+Inf" => f64::INFINITY,
                        v => v.parse().unwrap_or_else(|_| panic!("bad le {v:?}")),
                    };
                    (le, b.value)
                })
                .collect();
            buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
            assert!(buckets.len() > 2, "{name}{:?}: too few buckets", c.labels);
            assert!(
                buckets.windows(2).all(|w| w[0].1 <= w[1].1),
                "{name}{:?}: buckets are not cumulative: {buckets:?}",
                c.labels
            );
            let last = buckets.last().expect("buckets");
            assert_eq!(
                last.0,
                f64::INFINITY,
                "{name}{:?}: no +Inf bucket",
                c.labels
            );
            assert_eq!(
                last.1, c.value,
                "{name}{:?}: +Inf differs from _count",
                c.labels
            );
            assert!(
                self.get(&format!("{name}_sum"), &labels_of(&c.labels))
                    .is_some(),
                "{name}{:?}: no _sum",
                c.labels
            );
            counts.insert(c.labels.clone(), c.value);
        }
        counts
    }
}

fn labels_of(m: &BTreeMap<String, String>) -> Vec<(&str, &str)> {
    m.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

/// The declared family a sample belongs to (histograms' `_bucket`, `_sum`, `_count`).
fn family_of(name: &str, types: &HashMap<String, String>) -> Option<String> {
    if types.contains_key(name) {
        return Some(name.to_owned());
    }
    ["_bucket", "_sum", "_count"].iter().find_map(|suffix| {
        let base = name.strip_suffix(suffix)?;
        (types.get(base).map(String::as_str) == Some("histogram")).then(|| base.to_owned())
    })
}

fn parse_sample(line: &str) -> Sample {
    let bad = || -> ! { panic!("malformed sample line {line:?}") };
    let name_end = line.find(['{', ' ']).unwrap_or_else(|| bad());
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        bad();
    }
    let mut labels = BTreeMap::new();
    let mut rest = &line[name_end..];
    if let Some(after) = rest.strip_prefix('{') {
        let mut chars = after.char_indices().peekable();
        let end = loop {
            let Some(&(i, c)) = chars.peek() else { bad() };
            if c == '}' {
                break i + 1;
            }
            if c == ',' {
                chars.next();
                continue;
            }
            let mut key = String::new();
            while let Some(&(_, c)) = chars.peek() {
                if c == '=' {
                    break;
                }
                key.push(c);
                chars.next();
            }
            chars.next(); // '='
            if chars.next().map(|(_, c)| c) != Some('"') {
                bad();
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, '\\')) => value.push('\\'),
                        Some((_, '"')) => value.push('"'),
                        _ => bad(),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => bad(),
                }
            }
            if key.is_empty() || labels.insert(key, value).is_some() {
                bad();
            }
        };
        rest = &after[end..];
    }
    let value_text = rest.strip_prefix(' ').unwrap_or_else(|| bad());
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        v => v.parse().unwrap_or_else(|_| bad()),
    };
    Sample {
        name: name.to_owned(),
        labels,
        value,
    }
}

// ---------------------------------------------------------------------------------
// A service and an HTTP client
// ---------------------------------------------------------------------------------

/// An answer.
struct Reply {
    status: u16,
    content_type: String,
    cookies: Vec<String>,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    fn code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("no error code in {}", self.body))
            .to_owned()
    }
}

/// How a request authenticates.
#[derive(Clone)]
enum Cred {
    None,
    Bearer(String),
    Cookie(String),
}

/// A running `stask serve` on its own home, with an API token per role.
struct Service {
    home: Home,
    bg: Option<Background>,
    base: String,
    agent: ureq::Agent,
    tokens: HashMap<&'static str, String>,
}

impl Service {
    /// Starts `serve ARGS` on a free port in `home` (tokens are made first).
    fn start(home: Home, args: &[&str], env: &[(&str, &str)]) -> Service {
        let mut tokens = HashMap::new();
        for role in ["metrics", "viewer", "operator", "admin"] {
            let t = home.json(&["tokens", "create", "--role", role, "--name", role]);
            tokens.insert(role, t["token"].as_str().expect("token").to_owned());
        }
        let (bg, base) = home.serve_http(args, env);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(WAIT))
            .build()
            .into();
        Service {
            home,
            bg: Some(bg),
            base,
            agent,
            tokens,
        }
    }

    fn token(&self, role: &str) -> Cred {
        Cred::Bearer(self.tokens[role].clone())
    }

    fn call(&self, cred: &Cred, method: &str, path: &str, body: Option<&Value>) -> Reply {
        let mut req = ureq::http::Request::builder()
            .method(method)
            .uri(format!("{}{path}", self.base));
        match cred {
            Cred::None => {}
            Cred::Bearer(t) => req = req.header("Authorization", format!("Bearer {t}")),
            Cred::Cookie(c) => req = req.header("Cookie", c.as_str()),
        }
        let bytes = match body {
            Some(b) => {
                req = req.header("Content-Type", "application/json");
                b.to_string().into_bytes()
            }
            None => Vec::new(),
        };
        let res = self
            .agent
            .run(req.body(bytes).expect("request"))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        let status = res.status().as_u16();
        let content_type = res
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        // `name=value` of every cookie set.
        let cookies = res
            .headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok()?.split(';').next().map(str::to_owned))
            .collect();
        let body = res.into_body().read_to_string().expect("body");
        assert!(status < 500, "{method} {path}: {status} {body}");
        Reply {
            status,
            content_type,
            cookies,
            body,
        }
    }

    fn get(&self, cred: &Cred, path: &str) -> Reply {
        self.call(cred, "GET", path, None)
    }

    /// A JSON answer with status 200.
    fn get_ok(&self, path: &str) -> Value {
        let r = self.get(&self.token("viewer"), path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.json()
    }

    /// Creates a task through the API (as the admin token); returns its id.
    fn create(&self, action: &str, data: Value, extra: Value) -> i64 {
        let mut body = json!({ "worker": "demo", "action": action, "data": data });
        if let Value::Object(m) = extra {
            for (k, v) in m {
                body[k] = v;
            }
        }
        let r = self.call(&self.token("admin"), "POST", "/api/v1/tasks", Some(&body));
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_i64().expect("id")
    }

    fn wait_status(&self, id: i64, status: &str) -> Value {
        wait_until(WAIT, &format!("task {id} is {status}"), || {
            let t = self.get_ok(&format!("/api/v1/tasks/{id}"));
            (t["status"] == status).then_some(t)
        })
    }

    /// Every task, as the API lists them.
    fn tasks(&self) -> Vec<Value> {
        self.get_ok("/api/v1/tasks?limit=500")["tasks"]
            .as_array()
            .expect("tasks")
            .clone()
    }

    /// Scrapes `/metrics` with the metrics token.
    fn scrape(&self) -> Exposition {
        let r = self.get(&self.token("metrics"), "/metrics");
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.content_type, "text/plain; version=0.0.4; charset=utf-8");
        Exposition::parse(&r.body)
    }

    /// Stops the service with SIGTERM; returns its output.
    fn stop(mut self) -> Output {
        let mut bg = self.bg.take().expect("running");
        bg.signal(libc::SIGTERM);
        bg.wait(WAIT)
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(bg) = &self.bg {
            if std::thread::panicking() {
                eprintln!("--- stask serve stderr ---\n{}", bg.stderr_so_far());
            }
        }
    }
}

/// Runs a command with `input` on its standard input.
fn run_with_stdin(home: &Home, args: &[&str], input: &str) -> Output {
    home.run_with_input(args, &[], input)
}

fn demo_home() -> Home {
    let home = Home::new();
    home.install_active(&[DEMO]);
    home
}

/// The lines of a task's log, through the API.
fn log_line_count(svc: &Service, id: i64) -> usize {
    let r = svc.get(&svc.token("viewer"), &format!("/api/v1/tasks/{id}/log"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.lines().filter(|l| !l.is_empty()).count()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn metrics_agree_with_the_api_after_completed_failed_retried_and_cancelled_tasks() {
    let svc = Service::start(
        demo_home(),
        &["--concurrency", "2"],
        &[
            ("STASK_RETRY_BASE_MS", "10"),
            ("STASK_CANCEL_GRACE_MS", "5000"),
        ],
    );
    // Completed: three no-ops in one request and an echo that logs a message.
    let r = svc.call(
        &svc.token("admin"),
        "POST",
        "/api/v1/tasks",
        Some(&json!({ "worker": "demo", "action": "noop", "count": 3 })),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    svc.create("echo", json!({ "message": "hello" }), json!({}));
    // Failed at once, and failed after two automatic retries.
    let failed_once = svc.create(
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        json!({ "max_attempts": 1 }),
    );
    let retried = svc.create(
        "run",
        json!({ "steps": 1, "step_ms": 1, "fail_at": 1 }),
        json!({ "max_attempts": 3 }),
    );
    // Cancelled while running.
    let long = svc.create("run", json!({ "steps": 1000, "step_ms": 30 }), json!({}));
    svc.wait_status(long, "running");
    let r = svc.call(
        &svc.token("admin"),
        "POST",
        &format!("/api/v1/tasks/{long}/cancel"),
        None,
    );
    assert!(r.status < 300, "{}", r.body);
    svc.wait_status(long, "cancelled");
    svc.wait_status(failed_once, "failed");
    let t = svc.wait_status(retried, "failed");
    assert_eq!(t["attempts"], 3, "{t:#}");

    let tasks = wait_until(WAIT, "every task has finished", || {
        let all = svc.tasks();
        all.iter()
            .all(|t| !["pending", "running"].contains(&t["status"].as_str().unwrap_or("")))
            .then_some(all)
    });
    assert_eq!(tasks.len(), 7);
    let count_of = |status: &str| tasks.iter().filter(|t| t["status"] == status).count() as f64;
    let attempts: Vec<i64> = tasks
        .iter()
        .map(|t| t["attempts"].as_i64().unwrap())
        .collect();
    let all_attempts: i64 = attempts.iter().sum();
    // Every line of every log, but the creation lines the API wrote, was written by the
    // engine (a cancel of a running task adds no line of its own).
    let engine_lines: usize = tasks
        .iter()
        .map(|t| log_line_count(&svc, t["id"].as_i64().unwrap()))
        .sum::<usize>()
        - tasks.len();
    // The counters are bumped when the engine decides, the log-line count when the store
    // has committed: wait until the scrape has caught up with what the API shows.
    let m = wait_until(WAIT, "the scrape counts every stored log line", || {
        let m = svc.scrape();
        (m.value("stask_log_lines_written_total", &[]) == engine_lines as f64).then_some(m)
    });

    // Tasks per status: the store's answer, as the API gives it.
    for status in ["pending", "running", "completed", "failed", "cancelled"] {
        let total = svc.get_ok(&format!(
            "/api/v1/tasks?worker=demo&status={status}&limit=1"
        ))["total"]
            .as_f64()
            .unwrap();
        assert_eq!(total, count_of(status), "{status}");
        assert_eq!(
            m.get("stask_tasks", &[("worker", "demo"), ("status", status)]),
            Some(total),
            "stask_tasks{{status={status}}}"
        );
    }
    assert_eq!(m.types["stask_tasks"], "gauge");
    // Created through this service's API, by action.
    for action in ["noop", "echo", "run"] {
        let n = tasks.iter().filter(|t| t["action"] == action).count() as f64;
        assert_eq!(
            m.get(
                "stask_tasks_created_total",
                &[("worker", "demo"), ("action", action)]
            ),
            Some(n),
            "{action}"
        );
    }
    // Attempts: started = the attempts the API shows; finished by outcome.
    assert_eq!(
        m.sum("stask_task_attempts_started_total", &[("worker", "demo")]),
        all_attempts as f64
    );
    let finished = |outcome: &str| {
        m.sum(
            "stask_task_attempts_finished_total",
            &[("worker", "demo"), ("outcome", outcome)],
        )
    };
    assert_eq!(finished("completed"), count_of("completed"));
    assert_eq!(finished("failed"), count_of("failed"));
    assert_eq!(finished("cancelled"), count_of("cancelled"));
    let retried_attempts: i64 = attempts.iter().map(|a| a - 1).sum();
    assert_eq!(retried_attempts, 2);
    assert_eq!(finished("retried"), retried_attempts as f64);
    assert_eq!(finished("interrupted"), 0.0);
    assert_eq!(
        m.sum("stask_task_retries_total", &[("worker", "demo")]),
        retried_attempts as f64
    );
    assert_eq!(
        m.value(
            "stask_task_retries_total",
            &[("worker", "demo"), ("action", "run")]
        ),
        2.0
    );
    // Histograms: an observation per finished attempt (by outcome) and per start.
    for (labels, count) in m.histogram("stask_task_attempt_duration_seconds") {
        assert_eq!(
            Some(count),
            m.get("stask_task_attempts_finished_total", &labels_of(&labels)),
            "{labels:?}"
        );
    }
    let waits = m.histogram("stask_task_queue_wait_seconds");
    assert_eq!(waits.values().sum::<f64>(), all_attempts as f64);
    for (labels, count) in waits {
        assert_eq!(
            Some(count),
            m.get("stask_task_attempts_started_total", &labels_of(&labels)),
            "{labels:?}"
        );
    }
    // The cancelled run took at least the time until its cancel; it ran well over 10 ms.
    assert!(
        m.value(
            "stask_task_attempt_duration_seconds_sum",
            &[
                ("worker", "demo"),
                ("action", "run"),
                ("outcome", "cancelled")
            ]
        ) > 0.01
    );
    // Runner processes: the gauge is what runs now, under this home.
    let home = svc.home.path().display().to_string();
    let runners = processes_with_cmdline(&["__runner", &home]).len() as f64;
    let alive = m.value("stask_runners", &[]);
    assert_eq!(alive, runners, "stask_runners against the runner processes");
    assert!((1.0..=2.0).contains(&alive), "{alive}");
    assert!(m.value("stask_runners_started_total", &[]) >= alive);
    assert_eq!(m.value("stask_log_lines_dropped_total", &[]), 0.0);
    assert_eq!(m.types["stask_build_info"], "gauge");
    svc.stop();
}

#[test]
fn metrics_need_credentials_and_a_metrics_token_reads_nothing_else() {
    let home = demo_home();
    let added = run_with_stdin(
        &home,
        &[
            "users",
            "add",
            "vera",
            "--role",
            "viewer",
            "--password-stdin",
        ],
        "a long password\n",
    );
    assert!(added.status.success(), "{added:?}");
    let svc = Service::start(home, &[], &[]);
    // No or wrong credentials: 401 with the API's error shape.
    for cred in [Cred::None, Cred::Bearer("stask_0000".into())] {
        let r = svc.get(&cred, "/metrics");
        assert_eq!(r.status, 401, "{}", r.body);
        assert_eq!(r.code(), "unauthenticated");
    }
    // The metrics token reads /metrics, and nothing of the API.
    let metrics = svc.token("metrics");
    assert_eq!(svc.get(&metrics, "/metrics").status, 200);
    // Like every endpoint, it refuses query parameters it does not take.
    let r = svc.get(&metrics, "/metrics?name=stask_tasks");
    assert_eq!(
        (r.status, r.code().as_str()),
        (400, "unknown_parameter"),
        "{}",
        r.body
    );
    for (method, path) in [
        ("GET", "/api/v1/tasks"),
        ("GET", "/api/v1/auth/me"),
        ("GET", "/api/v1/dashboard"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/workers/demo"),
        ("POST", "/api/v1/tasks"),
        ("POST", "/api/v1/tokens"),
    ] {
        let body = (method == "POST").then(|| json!({ "worker": "demo", "action": "noop" }));
        let r = svc.call(&metrics, method, path, body.as_ref());
        assert_eq!(r.status, 403, "{method} {path}: {}", r.body);
        assert_eq!(r.code(), "forbidden");
        assert!(r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("/metrics"));
    }
    assert!(svc.tasks().is_empty(), "the refused create stored nothing");
    // Viewers and above read it too, with a token or a session.
    for role in ["viewer", "operator", "admin"] {
        assert_eq!(svc.get(&svc.token(role), "/metrics").status, 200, "{role}");
    }
    let login = svc.call(
        &Cred::None,
        "POST",
        "/api/v1/auth/login",
        Some(&json!({ "name": "vera", "password": "a long password" })),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let session = Cred::Cookie(login.cookies.join("; "));
    assert_eq!(
        svc.get(&session, "/metrics").status,
        200,
        "a viewer's session"
    );
    // The metrics role is for tokens only.
    let r = svc.call(
        &svc.token("admin"),
        "POST",
        "/api/v1/users",
        Some(&json!({ "name": "prom", "role": "metrics", "password": "a long password" })),
    );
    assert_eq!(
        (r.status, r.code().as_str()),
        (422, "invalid_role"),
        "{}",
        r.body
    );
    let err = svc.home.fail(&["users", "role", "vera", "metrics"]);
    assert!(err.contains("tokens only"), "{err}");
    let r = svc.call(
        &svc.token("admin"),
        "POST",
        "/api/v1/tokens",
        Some(&json!({ "name": "prom", "role": "metrics" })),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.json()["role"], "metrics");
    let listed = svc.home.json(&["tokens", "list"]);
    assert!(
        listed.to_string().contains("\"metrics\""),
        "tokens list shows the role: {listed}"
    );
    svc.stop();
}

#[test]
fn http_requests_are_counted_by_method_route_template_and_code() {
    let svc = Service::start(demo_home(), &[], &[]);
    // A task made without HTTP (the command line), so the test's requests are the only
    // ones the service answers.
    let id = svc.home.create_task("demo", "noop", &json!({}), &[]);
    wait_until(WAIT, "the task completed", || {
        (svc.home.task(id)["status"] == "completed").then_some(())
    });
    let viewer = svc.token("viewer");
    assert_eq!(svc.get(&viewer, &format!("/api/v1/tasks/{id}")).status, 200);
    for missing in ["987654", "876543"] {
        assert_eq!(
            svc.get(&viewer, &format!("/api/v1/tasks/{missing}")).status,
            404
        );
    }
    for _ in 0..2 {
        assert_eq!(svc.get(&viewer, "/api/v1/tasks").status, 200);
    }
    assert_eq!(svc.get(&Cred::None, "/api/v1/tasks").status, 401);
    assert_eq!(svc.get(&viewer, "/api/v1/nothing/765432").status, 404);
    assert_eq!(svc.get(&Cred::None, "/").status, 200);
    assert_eq!(svc.get(&Cred::None, "/tasks/654321").status, 200);
    assert_eq!(
        svc.call(&viewer, "DELETE", "/api/v1/dashboard", None)
            .status,
        405
    );

    let m = svc.scrape();
    let requests = |method: &str, route: &str, code: &str| {
        m.value(
            "stask_http_requests_total",
            &[("method", method), ("route", route), ("code", code)],
        )
    };
    assert_eq!(m.types["stask_http_requests_total"], "counter");
    assert_eq!(requests("GET", "/api/v1/tasks/{id}", "200"), 1.0);
    assert_eq!(requests("GET", "/api/v1/tasks/{id}", "404"), 2.0);
    assert_eq!(requests("GET", "/api/v1/tasks", "200"), 2.0);
    assert_eq!(requests("GET", "/api/v1/tasks", "401"), 1.0);
    assert_eq!(requests("GET", "unmatched", "404"), 1.0);
    assert_eq!(requests("GET", "web", "200"), 2.0);
    assert_eq!(requests("DELETE", "/api/v1/dashboard", "405"), 1.0);
    // Nothing else was counted: this scrape shows up in the next one.
    assert_eq!(m.sum("stask_http_requests_total", &[]), 10.0);
    let durations = m.histogram("stask_http_request_duration_seconds");
    let key: BTreeMap<String, String> = [("method", "GET"), ("route", "/api/v1/tasks/{id}")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert_eq!(durations.get(&key), Some(&3.0));

    // Route labels are templates of the documented routes (or web / unmatched), never
    // a path with an id in it.
    let doc = svc.get_ok("/api/v1/openapi.json");
    let documented: Vec<&String> = doc["paths"].as_object().unwrap().keys().collect();
    let m = svc.scrape();
    for s in m.series("stask_http_requests_total", &[]) {
        let route = &s.labels["route"];
        assert!(
            documented.contains(&route) || route == "web" || route == "unmatched",
            "{route} is not a route template"
        );
        assert!(
            !route
                .split('/')
                .any(|seg| !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())),
            "{route} holds an id"
        );
    }
    assert_eq!(
        m.value(
            "stask_http_requests_total",
            &[("method", "GET"), ("route", "/metrics"), ("code", "200")]
        ),
        1.0
    );
    assert_eq!(
        m.value(
            "stask_http_requests_total",
            &[
                ("method", "GET"),
                ("route", "/api/v1/openapi.json"),
                ("code", "200")
            ]
        ),
        1.0
    );
    svc.stop();
}

/// Makes `worker`'s schedule due now, keeping its definition and data (no command can
/// set a slot that falls due within a test's few seconds).
fn make_schedule_due_now(home: &Home, worker: &str) {
    let store = home.store();
    let current = store
        .get_schedule(worker)
        .unwrap()
        .unwrap_or_else(|| panic!("{worker} has a schedule"));
    let now = stask_storage::now_ms();
    store
        .set_schedule(worker, &current.spec, &current.data, Some(now - 1_000), now)
        .expect("make the schedule due");
}

#[test]
fn a_recovered_task_and_fired_and_skipped_schedule_slots_are_counted() {
    let home = Home::new();
    home.install_active(&[DEMO, MISBEHAVING]);
    home.ok(&["workers", "deactivate", "misbehaving"]);
    home.ok(&[
        "workers",
        "schedule",
        "demo",
        "once",
        "--at",
        "2099-01-01 00:00",
        "--data",
        r#"{"steps": 1, "step_ms": 1}"#,
    ]);
    home.ok(&[
        "workers",
        "schedule",
        "misbehaving",
        "once",
        "--at",
        "2099-01-01 00:00",
    ]);
    // A task left running by a process that was killed.
    let stuck = home.create_task("demo", "run", &json!({ "steps": 20, "step_ms": 50 }), &[]);
    let mut execute = home.spawn(&["tasks", "execute", &stuck.to_string()], &[]);
    wait_until(WAIT, "the task runs", || {
        (home.task(stuck)["status"] == "running").then_some(())
    });
    execute.kill9();
    assert_eq!(home.task(stuck)["status"], "running");
    make_schedule_due_now(&home, "demo");
    make_schedule_due_now(&home, "misbehaving");

    let svc = Service::start(home, &[], &[]);
    svc.wait_status(stuck, "completed");
    let skipped = wait_until(WAIT, "the inactive worker's slot was skipped", || {
        let s = svc.get_ok("/api/v1/workers/misbehaving/schedule");
        (s["skipped_count"].as_i64() > Some(0)).then_some(s)
    });
    let fired = wait_until(WAIT, "the schedule created a task", || {
        let list = svc.get_ok("/api/v1/tasks?user=schedule");
        (list["total"].as_i64() > Some(0)).then_some(list)
    });
    let fired_id = fired["tasks"][0]["id"].as_i64().unwrap();
    svc.wait_status(fired_id, "completed");
    assert_eq!(
        svc.get_ok("/api/v1/workers/demo/schedule")["last_task_id"],
        fired_id
    );
    let recovered_logs = svc
        .tasks()
        .iter()
        .filter(|t| {
            let id = t["id"].as_i64().unwrap();
            svc.get(&svc.token("viewer"), &format!("/api/v1/tasks/{id}/log"))
                .body
                .contains("Recovered: ")
        })
        .count();
    assert_eq!(recovered_logs, 1);

    let m = svc.scrape();
    assert_eq!(
        m.get(
            "stask_task_recoveries_total",
            &[
                ("worker", "demo"),
                ("action", "run"),
                ("outcome", "retried")
            ]
        ),
        Some(recovered_logs as f64)
    );
    assert_eq!(m.sum("stask_task_recoveries_total", &[]), 1.0);
    assert_eq!(
        m.get("stask_schedule_firings_total", &[("worker", "demo")]),
        Some(fired["total"].as_f64().unwrap())
    );
    assert_eq!(m.sum("stask_schedule_firings_total", &[]), 1.0);
    assert_eq!(
        m.get("stask_schedule_skips_total", &[("worker", "misbehaving")]),
        Some(skipped["skipped_count"].as_f64().unwrap())
    );
    assert_eq!(m.sum("stask_schedule_skips_total", &[]), 1.0);
    // Created by this service: the scheduled task only (the stuck one came from the
    // command line, another process); the store counts both.
    assert_eq!(
        m.value(
            "stask_tasks_created_total",
            &[("worker", "demo"), ("action", "run")]
        ),
        1.0
    );
    assert_eq!(
        m.get(
            "stask_tasks",
            &[("worker", "demo"), ("status", "completed")]
        ),
        Some(2.0)
    );
    // This service ran both: the recovered task again, and the scheduled one.
    assert_eq!(
        m.value(
            "stask_task_attempts_finished_total",
            &[
                ("worker", "demo"),
                ("action", "run"),
                ("outcome", "completed")
            ]
        ),
        2.0
    );
    svc.stop();
}

/// Checks that every line of `stderr` but those `allowed` to be text is one JSON object
/// with the documented keys; returns the objects.
fn json_log_lines(stderr: &str, allowed: impl Fn(&str) -> bool) -> Vec<Value> {
    let mut out = Vec::new();
    for line in stderr.lines().filter(|l| !l.is_empty()) {
        if allowed(line) {
            continue;
        }
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("a log line is not JSON ({e}): {line:?}"));
        let obj = v
            .as_object()
            .unwrap_or_else(|| panic!("not an object: {line}"));
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["fields", "level", "message", "target", "timestamp"],
            "{line}"
        );
        let ts = v["timestamp"].as_str().unwrap_or("");
        let b = ts.as_bytes();
        assert!(
            ts.len() == 27
                && b[4] == b'-'
                && b[10] == b'T'
                && b[19] == b'.'
                && ts.ends_with('Z')
                && ts[..4].bytes().all(|c| c.is_ascii_digit()),
            "timestamp {ts:?} is not RFC 3339 UTC with microseconds"
        );
        assert!(
            ["TRACE", "DEBUG", "INFO", "WARN", "ERROR"]
                .contains(&v["level"].as_str().unwrap_or("")),
            "{line}"
        );
        assert!(!v["target"].as_str().unwrap_or("").is_empty(), "{line}");
        assert!(
            v["message"].is_string() && v["fields"].is_object(),
            "{line}"
        );
        out.push(v);
    }
    out
}

#[test]
fn serve_log_format_json_writes_every_line_as_one_json_object() {
    let home = demo_home();
    // A user exists, so the service prints no first password (see the next test).
    let added = run_with_stdin(
        &home,
        &["users", "add", "ann", "--role", "admin", "--password-stdin"],
        "a long password\n",
    );
    assert!(added.status.success(), "{added:?}");
    let svc = Service::start(home, &["--log-format", "json", "-vv"], &[]);
    let id = svc.create("echo", json!({ "message": "hello" }), json!({}));
    svc.wait_status(id, "completed");
    let out = svc.stop();
    assert!(out.status.success(), "{out:?}");
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    let lines = json_log_lines(&stderr, |_| false);
    let find = |what: &str, f: &dyn Fn(&Value) -> bool| {
        lines
            .iter()
            .find(|v| f(v))
            .unwrap_or_else(|| panic!("no line {what} in\n{stderr}"))
            .clone()
    };
    find("listening on …", &|v| {
        v["message"]
            .as_str()
            .unwrap()
            .starts_with("listening on http://127.0.0.1:")
    });
    let done = find("telling how the task ended", &|v| {
        v["fields"]["task"] == id && v["fields"]["status"] == "completed"
    });
    assert_eq!(done["level"], "INFO");
    assert_eq!(done["fields"]["worker"], "demo");
    assert_eq!(done["fields"]["action"], "echo");
    assert!(done["target"]
        .as_str()
        .unwrap()
        .starts_with("stask_host::engine"));
    find("at debug level (-vv)", &|v| v["level"] == "DEBUG");
    find("stask service stopped", &|v| {
        v["message"] == "stask service stopped"
    });
}

#[test]
fn with_json_logs_the_first_admins_password_is_printed_once_outside_the_log() {
    let svc = Service::start(demo_home(), &["--log-format", "json"], &[]);
    let bg = svc.bg.as_ref().expect("running");
    let password = wait_until(WAIT, "the first admin's password is printed", || {
        let text = bg.stderr_so_far();
        let rest = text.split("with password ").nth(1)?;
        Some(rest.split_whitespace().next()?.to_owned())
    });
    // It is the real password.
    let login = svc.call(
        &Cred::None,
        "POST",
        "/api/v1/auth/login",
        Some(&json!({ "name": "admin", "password": password })),
    );
    assert_eq!(login.status, 200, "{}", login.body);
    let out = svc.stop();
    let stderr = String::from_utf8(out.stderr).expect("UTF-8");
    let text: Vec<&str> = stderr
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_err())
        .collect();
    assert_eq!(text.len(), 1, "one line outside the log: {stderr}");
    assert!(
        text[0].starts_with("Created user 'admin' (role admin) with password "),
        "{}",
        text[0]
    );
    assert_eq!(stderr.matches(password.as_str()).count(), 1, "{stderr}");
    let lines = json_log_lines(&stderr, |l| l == text[0]);
    assert!(lines.iter().all(|v| !v.to_string().contains(&password)));
    let notice = lines
        .iter()
        .find(|v| {
            v["message"]
                .as_str()
                .unwrap()
                .starts_with("created user 'admin'")
        })
        .unwrap_or_else(|| panic!("no notice in the log: {stderr}"));
    assert_eq!(notice["level"], "WARN");
    assert!(notice["message"].as_str().unwrap().contains("not logged"));
}

#[test]
fn a_log_format_other_than_text_or_json_is_refused_naming_where_it_came_from() {
    let home = demo_home();
    let refused = |args: &[&str], env: &[(&str, &str)]| -> String {
        let mut all = vec!["serve", "--bind", "127.0.0.1:0"];
        all.extend_from_slice(args);
        let out = home.run_env(&all, env);
        assert_eq!(out.status.code(), Some(1), "{out:?}");
        let stderr = String::from_utf8(out.stderr).expect("UTF-8");
        assert!(stderr.contains("text or json"), "{stderr}");
        assert!(!stderr.contains("listening"), "{stderr}");
        stderr
    };
    let e = refused(&["--log-format", "xml"], &[]);
    assert!(e.contains("--log-format") && e.contains("'xml'"), "{e}");
    let e = refused(&[], &[("STASK_LOG_FORMAT", "yaml")]);
    assert!(
        e.contains("STASK_LOG_FORMAT") && e.contains("'yaml'"),
        "{e}"
    );
    std::fs::write(home.path().join("stask.toml"), "log_format = \"JSON\"\n").unwrap();
    let e = refused(&[], &[]);
    assert!(e.contains("'log_format'") && e.contains("'JSON'"), "{e}");
    // The environment wins over the file; `config` shows the effective value.
    std::fs::write(home.path().join("stask.toml"), "log_format = \"text\"\n").unwrap();
    let c = home.json_env(&["config"], &[("STASK_LOG_FORMAT", "json")]);
    assert_eq!(c["log_format"]["value"], "json", "{c:#}");
    assert_eq!(c["log_format"]["source"], "env STASK_LOG_FORMAT", "{c:#}");
}
