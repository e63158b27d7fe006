//! Prometheus metrics, served by `stask serve` at `GET /metrics` ([`crate::http`]) in
//! the Prometheus text format (0.0.4), encoded with `prometheus-client`.
//!
//! Two kinds of figure, kept apart on purpose:
//!
//! * **Facts about the store** (`stask_tasks`: tasks per worker and status now) are
//!   read from the store's maintained counts when scraped ([`Metrics::encode`] takes
//!   them), so they include what every process did: other services sharing the store,
//!   `tasks process`, the CLI.
//! * **Events of this process** (attempts its engine started and finished, their
//!   durations and queue wait, runner processes, retries, recoveries, schedule firings
//!   and skips, log lines its engine stored, HTTP requests it answered, tasks it
//!   created) are counters in memory ([`global`]), starting at zero with the process.
//!   With several services, scrape each and sum.
//!
//! Recording is cheap enough for the engine's hot path (tens of thousands of tasks a
//! second): the engine looks the series of a (worker, action) up once ([`SeriesCache`])
//! and then records with a few relaxed atomic additions, with no lock, no allocation
//! and no store access; log lines are counted once per committed batch. Histograms are
//! this module's own [`Histogram`] (atomic buckets), because the crate's takes a mutex
//! per observation.
//!
//! Every process records (a `tasks process` run too); only `serve` exposes the figures.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, OnceLock};
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;
use stask_storage::WorkerCounts;

/// The `Content-Type` of the exposition (Prometheus text format 0.0.4).
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the task histograms: a no-op task takes well under a
/// millisecond, an import minutes, and the default time limit is an hour.
pub const TASK_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0,
    3600.0,
];

/// Upper bounds (seconds) of the HTTP histogram (Prometheus' defaults and 1 ms).
pub const HTTP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The metrics of this process.
pub fn global() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

/// A histogram whose observations are two relaxed atomic additions (its bucket and
/// the sum): the count is the buckets' total, so `_count` always equals the `+Inf`
/// bucket even while observations land during a scrape.
#[derive(Clone, Debug)]
pub struct Histogram {
    inner: Arc<HistogramInner>,
}

#[derive(Debug)]
struct HistogramInner {
    bounds: &'static [f64],
    /// Observations per bucket (not cumulative); the last is above every bound.
    counts: Box<[AtomicU64]>,
    sum_ns: AtomicU64,
}

impl Histogram {
    /// An empty histogram with these upper bounds (ascending, in seconds).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            inner: Arc::new(HistogramInner {
                bounds,
                counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
                sum_ns: AtomicU64::new(0),
            }),
        }
    }

    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        // The first bucket whose bound is >= the value (`le`).
        let i = self.inner.bounds.partition_point(|b| *b < secs);
        self.inner.counts[i].fetch_add(1, Ordering::Relaxed);
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.inner.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl TypedMetric for Histogram {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Histogram {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        let inner = &self.inner;
        let counts: Vec<u64> = inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        let mut buckets: Vec<(f64, u64)> = inner
            .bounds
            .iter()
            .copied()
            .zip(counts.iter().copied())
            .collect();
        buckets.push((f64::INFINITY, counts[counts.len() - 1]));
        let sum = inner.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        encoder.encode_histogram::<NoLabelSet>(sum, counts.iter().sum(), &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

fn task_histogram() -> Histogram {
    Histogram::new(TASK_BUCKETS)
}

fn http_histogram() -> Histogram {
    Histogram::new(HTTP_BUCKETS)
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// How an attempt ended (the `outcome` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The task completed.
    Completed,
    /// The task failed with no attempts left (or for good).
    Failed,
    /// The attempt failed and the task was queued again with back-off.
    Retried,
    /// The task was cancelled.
    Cancelled,
    /// A stopping service interrupted it; queued again without the attempt counting.
    Interrupted,
}

impl Outcome {
    const ALL: [Outcome; 5] = [
        Outcome::Completed,
        Outcome::Failed,
        Outcome::Retried,
        Outcome::Cancelled,
        Outcome::Interrupted,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Completed => "completed",
            Outcome::Failed => "failed",
            Outcome::Retried => "retried",
            Outcome::Cancelled => "cancelled",
            Outcome::Interrupted => "interrupted",
        }
    }

    fn index(self) -> usize {
        Outcome::ALL
            .iter()
            .position(|o| *o == self)
            .expect("every outcome is in ALL")
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct TaskLabels {
    worker: String,
    action: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    worker: String,
    action: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct WorkerLabels {
    worker: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StatusLabels {
    worker: String,
    status: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: String,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpRouteLabels {
    method: &'static str,
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: &'static str,
}

/// Everything this process counts (see the module documentation for the names).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    tasks_created: Family<TaskLabels, Counter>,
    attempts_started: Family<TaskLabels, Counter>,
    attempts_finished: Family<OutcomeLabels, Counter>,
    attempt_duration: HistogramFamily<OutcomeLabels>,
    queue_wait: HistogramFamily<TaskLabels>,
    retries: Family<TaskLabels, Counter>,
    recoveries: Family<OutcomeLabels, Counter>,
    schedule_firings: Family<WorkerLabels, Counter>,
    schedule_skips: Family<WorkerLabels, Counter>,
    log_lines_written: Counter,
    log_lines_dropped: Counter,
    runners: Gauge,
    runners_started: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_duration: HistogramFamily<HttpRouteLabels>,
}

impl Metrics {
    fn new() -> Metrics {
        let m = Metrics {
            registry: Registry::with_prefix("stask"),
            tasks_created: Family::default(),
            attempts_started: Family::default(),
            attempts_finished: Family::default(),
            attempt_duration: Family::new_with_constructor(task_histogram),
            queue_wait: Family::new_with_constructor(task_histogram),
            retries: Family::default(),
            recoveries: Family::default(),
            schedule_firings: Family::default(),
            schedule_skips: Family::default(),
            log_lines_written: Counter::default(),
            log_lines_dropped: Counter::default(),
            runners: Gauge::default(),
            runners_started: Counter::default(),
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(http_histogram),
        };
        let mut registry = Registry::with_prefix("stask");
        let build = Family::<VersionLabels, Gauge>::default();
        build
            .get_or_create(&VersionLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        registry.register(
            "build_info",
            "The stask version of this process (always 1)",
            build,
        );
        registry.register(
            "tasks_created",
            "Tasks this process created (API requests and schedules), by worker and action",
            m.tasks_created.clone(),
        );
        registry.register(
            "task_attempts_started",
            "Task attempts this process's engine started (claimed), by worker and action",
            m.attempts_started.clone(),
        );
        registry.register(
            "task_attempts_finished",
            "Task attempts this process's engine finished, by worker, action and outcome (completed, failed, retried, cancelled, interrupted)",
            m.attempts_finished.clone(),
        );
        registry.register(
            "task_attempt_duration_seconds",
            "How long attempts ran, from the claim to the outcome, by worker, action and outcome",
            m.attempt_duration.clone(),
        );
        registry.register(
            "task_queue_wait_seconds",
            "From when an attempt could start (its task's creation, or the end of a retry's back-off) to its claim, by worker and action (millisecond resolution)",
            m.queue_wait.clone(),
        );
        registry.register(
            "task_retries",
            "Failed attempts this process's engine queued again with back-off (automatic retries), by worker and action",
            m.retries.clone(),
        );
        registry.register(
            "task_recoveries",
            "Stuck tasks of dead or silent processes this process recovered, by worker, action and outcome (retried, failed)",
            m.recoveries.clone(),
        );
        registry.register(
            "schedule_firings",
            "Schedule slots this process fired with a new task, by worker",
            m.schedule_firings.clone(),
        );
        registry.register(
            "schedule_skips",
            "Schedule slots this process skipped (previous task still pending or running, worker inactive), by worker",
            m.schedule_skips.clone(),
        );
        registry.register(
            "log_lines_written",
            "Progress-log lines this process's engine stored (start, progress, worker messages, final lines, recovery notes)",
            m.log_lines_written.clone(),
        );
        registry.register(
            "log_lines_dropped",
            "Worker log messages dropped over the per-attempt limit",
            m.log_lines_dropped.clone(),
        );
        registry.register(
            "runners",
            "Runner processes of this process alive now",
            m.runners.clone(),
        );
        registry.register(
            "runners_started",
            "Runner processes this process started",
            m.runners_started.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests answered, by method, route template and status code",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time to answer HTTP requests (to the response's head; streams go on after it), by method and route template",
            m.http_duration.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The exposition: `tasks` (tasks per worker and status in the store, as
    /// `store_counts` holds them, read at scrape time) followed by this process's
    /// figures.
    pub fn encode(&self, store_counts: &[WorkerCounts]) -> String {
        let mut store = Registry::with_prefix("stask");
        let tasks = Family::<StatusLabels, Gauge>::default();
        for w in store_counts {
            let c = &w.counts;
            for (status, n) in [
                ("pending", c.pending),
                ("running", c.running),
                ("completed", c.completed),
                ("failed", c.failed),
                ("cancelled", c.cancelled),
            ] {
                tasks
                    .get_or_create(&StatusLabels {
                        worker: w.worker.clone(),
                        status,
                    })
                    .set(n);
            }
        }
        store.register(
            "tasks",
            "Tasks in the store now, by worker and status (read from the store when scraped: every process's tasks)",
            tasks,
        );
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &store)
            .and_then(|()| {
                prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry)
            })
            .expect("writing to a String cannot fail");
        out
    }

    /// The series of a (worker, action), to keep and record into without lookups.
    pub fn task_series(&'static self, worker: &str, action: &str) -> TaskSeries {
        let labels = TaskLabels {
            worker: worker.to_owned(),
            action: action.to_owned(),
        };
        TaskSeries {
            metrics: self,
            started: self.attempts_started.get_or_create_owned(&labels),
            queue_wait: self.queue_wait.get_or_create_owned(&labels),
            finished: Default::default(),
            retries: OnceLock::new(),
            labels,
        }
    }

    /// `n` tasks of `worker` and `action` were created by this process.
    pub fn tasks_created(&self, worker: &str, action: &str, n: u64) {
        self.tasks_created
            .get_or_create(&TaskLabels {
                worker: worker.to_owned(),
                action: action.to_owned(),
            })
            .inc_by(n);
    }

    /// A stuck task was recovered: queued again (`requeued`) or failed for good. Its
    /// recovery note is a log line this process stored.
    pub fn task_recovered(&self, worker: &str, action: &str, requeued: bool) {
        self.recoveries
            .get_or_create(&OutcomeLabels {
                worker: worker.to_owned(),
                action: action.to_owned(),
                outcome: if requeued { "retried" } else { "failed" },
            })
            .inc();
        self.log_lines_written.inc();
    }

    /// A schedule of `worker` fired a task running `action`.
    pub fn schedule_fired(&self, worker: &str, action: &str) {
        self.schedule_firings
            .get_or_create(&WorkerLabels {
                worker: worker.to_owned(),
            })
            .inc();
        self.tasks_created(worker, action, 1);
    }

    /// A schedule slot of `worker` was skipped.
    pub fn schedule_skipped(&self, worker: &str) {
        self.schedule_skips
            .get_or_create(&WorkerLabels {
                worker: worker.to_owned(),
            })
            .inc();
    }

    /// The engine committed `n` progress-log lines.
    pub fn log_lines_written(&self, n: usize) {
        if n > 0 {
            self.log_lines_written.inc_by(n as u64);
        }
    }

    /// A worker log message was dropped over the per-attempt limit.
    pub fn log_line_dropped(&self) {
        self.log_lines_dropped.inc();
    }

    /// A runner process started; it counts as alive until the guard is dropped.
    pub fn runner_started(&'static self) -> RunnerAlive {
        self.runners_started.inc();
        self.runners.inc();
        RunnerAlive(self)
    }

    /// An HTTP request was answered with `code` after `took`. `route` is the route
    /// template (never the raw path: ids must not become label values).
    pub fn http_request(&self, method: &'static str, route: &str, code: u16, took: Duration) {
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route: route.to_owned(),
                code,
            })
            .inc();
        self.http_duration
            .get_or_create(&HttpRouteLabels {
                method,
                route: route.to_owned(),
            })
            .observe(took);
    }
}

/// A runner process alive; dropped when it has been reaped.
#[derive(Debug)]
pub struct RunnerAlive(&'static Metrics);

impl Drop for RunnerAlive {
    fn drop(&mut self) {
        self.0.runners.dec();
    }
}

/// The engine's series of one (worker, action): recording is relaxed atomic additions.
/// The outcome series are created on first use, so outcomes that never happened are
/// not listed.
#[derive(Debug)]
pub struct TaskSeries {
    metrics: &'static Metrics,
    labels: TaskLabels,
    started: Counter,
    queue_wait: Histogram,
    finished: [OnceLock<(Counter, Histogram)>; 5],
    retries: OnceLock<Counter>,
}

impl TaskSeries {
    /// An attempt started after waiting `queue_wait` since it could start.
    pub fn started(&self, queue_wait: Duration) {
        self.started.inc();
        self.queue_wait.observe(queue_wait);
    }

    /// An attempt ended with `outcome` after running `took`.
    pub fn finished(&self, outcome: Outcome, took: Duration) {
        let (count, duration) = self.finished[outcome.index()].get_or_init(|| {
            let labels = OutcomeLabels {
                worker: self.labels.worker.clone(),
                action: self.labels.action.clone(),
                outcome: outcome.as_str(),
            };
            (
                self.metrics.attempts_finished.get_or_create_owned(&labels),
                self.metrics.attempt_duration.get_or_create_owned(&labels),
            )
        });
        count.inc();
        duration.observe(took);
        if outcome == Outcome::Retried {
            self.retries
                .get_or_init(|| self.metrics.retries.get_or_create_owned(&self.labels))
                .inc();
        }
    }
}

/// The engine's series by worker and action, looked up without allocating.
#[derive(Default)]
pub struct SeriesCache {
    by_worker: HashMap<String, HashMap<String, Arc<TaskSeries>>>,
}

impl SeriesCache {
    /// The series of `worker` and `action` (created on first use).
    pub fn get(&mut self, worker: &str, action: &str) -> Arc<TaskSeries> {
        if let Some(s) = self.by_worker.get(worker).and_then(|a| a.get(action)) {
            return s.clone();
        }
        let series = Arc::new(global().task_series(worker, action));
        self.by_worker
            .entry(worker.to_owned())
            .or_default()
            .insert(action.to_owned(), series.clone());
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_are_upper_inclusive_and_count_matches_inf() {
        let h = Histogram::new(&[0.001, 0.01, 1.0]);
        for ms in [0, 1, 2, 10, 500, 5_000] {
            h.observe(Duration::from_millis(ms));
        }
        let mut reg = Registry::default();
        reg.register("h_seconds", "test", h.clone());
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &reg).unwrap();
        for expected in [
            "h_seconds_bucket{le=\"0.001\"} 2\n",
            "h_seconds_bucket{le=\"0.01\"} 4\n",
            "h_seconds_bucket{le=\"1\"} 5\n",
            "h_seconds_bucket{le=\"+Inf\"} 6\n",
            "h_seconds_sum 5.513\n",
            "h_seconds_count 6\n",
            "# TYPE h_seconds histogram\n",
        ] {
            assert!(out.contains(expected), "{expected:?} missing in\n{out}");
        }
        assert_eq!(h.count(), 6);
    }

    #[test]
    fn names_follow_prometheus_conventions_and_store_counts_are_listed_per_status() {
        let m = Metrics::new();
        m.tasks_created("demo", "noop", 3);
        m.http_request("GET", "/api/v1/tasks/{id}", 200, Duration::from_millis(3));
        let counts = WorkerCounts {
            worker: "demo \"x\"".into(),
            counts: stask_storage::StatusCounts {
                pending: 1,
                running: 2,
                completed: 3,
                failed: 4,
                cancelled: 5,
            },
            ..WorkerCounts::default()
        };
        let out = m.encode(&[counts]);
        for expected in [
            "# TYPE stask_tasks gauge\n",
            "stask_tasks{worker=\"demo \\\"x\\\"\",status=\"failed\"} 4\n",
            "# TYPE stask_tasks_created_total counter\n",
            "stask_tasks_created_total{worker=\"demo\",action=\"noop\"} 3\n",
            "stask_http_requests_total{method=\"GET\",route=\"/api/v1/tasks/{id}\",code=\"200\"} 1\n",
            "stask_build_info{version=\"",
        ] {
            assert!(out.contains(expected), "{expected:?} missing in\n{out}");
        }
        // Counters end in _total, histograms in _seconds, nothing else ends so.
        for line in out.lines().filter(|l| l.starts_with("# TYPE")) {
            let mut parts = line.split_whitespace().skip(2);
            let (name, kind) = (parts.next().unwrap(), parts.next().unwrap());
            assert!(name.starts_with("stask_"), "{line}");
            assert_eq!(kind == "counter", name.ends_with("_total"), "{line}");
            if kind == "histogram" {
                assert!(name.ends_with("_seconds"), "{line}");
            }
        }
    }

    #[test]
    fn task_series_record_outcomes_retries_and_runners() {
        let m: &'static Metrics = Box::leak(Box::new(Metrics::new()));
        let s = m.task_series("w", "a");
        s.started(Duration::from_millis(4));
        s.finished(Outcome::Retried, Duration::from_millis(2));
        s.started(Duration::ZERO);
        s.finished(Outcome::Completed, Duration::from_millis(2));
        let alive = m.runner_started();
        let out = m.encode(&[]);
        for expected in [
            "stask_task_attempts_started_total{worker=\"w\",action=\"a\"} 2\n",
            "stask_task_attempts_finished_total{worker=\"w\",action=\"a\",outcome=\"retried\"} 1\n",
            "stask_task_retries_total{worker=\"w\",action=\"a\"} 1\n",
            "stask_task_queue_wait_seconds_count{worker=\"w\",action=\"a\"} 2\n",
            "stask_task_attempt_duration_seconds_count{worker=\"w\",action=\"a\",outcome=\"completed\"} 1\n",
            "stask_runners 1\n",
        ] {
            assert!(out.contains(expected), "{expected:?} missing in\n{out}");
        }
        assert!(!out.contains("outcome=\"failed\""), "{out}");
        drop(alive);
        assert!(m.encode(&[]).contains("stask_runners 0\n"));
    }
}
