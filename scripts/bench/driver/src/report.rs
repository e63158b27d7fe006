//! Figures, targets, the printed table and results.json.

use serde::Serialize;
use serde_json::{json, Value};

use crate::util::{max, median, min};

/// How a figure is compared with its target.
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Cmp {
    /// The median must be at least the value.
    AtLeast,
    /// The median must be below the value.
    Below,
    /// The median must be at most the value.
    AtMost,
}

/// A target to compare a figure against.
#[derive(Debug, Clone, Serialize)]
pub struct Target {
    /// As printed, e.g. `>= 30,000 tasks/s`.
    pub text: String,
    pub cmp: Cmp,
    pub value: f64,
}

/// One reported figure: the median of several runs, with min and max.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    /// Stable key, e.g. `burndown.tasks_per_s`.
    pub key: String,
    /// Benchmark (table section).
    pub bench: String,
    /// What was measured.
    pub label: String,
    pub unit: String,
    pub median: f64,
    pub min: f64,
    pub max: f64,
    /// Every run's value (or every sample's, for latency distributions).
    pub runs: Vec<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// `met`, `missed`, `not measured` or absent (no target).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

impl Metric {
    pub fn new(key: &str, bench: &str, label: &str, unit: &str, runs: Vec<f64>) -> Metric {
        Metric {
            key: key.to_owned(),
            bench: bench.to_owned(),
            label: label.to_owned(),
            unit: unit.to_owned(),
            median: median(&runs),
            min: min(&runs),
            max: max(&runs),
            runs,
            target: None,
            status: None,
            note: None,
        }
    }

    /// A figure computed from others (a ratio): median, min and max given.
    pub fn derived(
        key: &str,
        bench: &str,
        label: &str,
        unit: &str,
        median: f64,
        min: f64,
        max: f64,
    ) -> Metric {
        Metric {
            median,
            min,
            max,
            ..Metric::new(key, bench, label, unit, Vec::new())
        }
    }

    /// `a / b` of two figures: median over median; min and max pair the worst and the
    /// best runs.
    pub fn ratio(key: &str, bench: &str, label: &str, a: &Metric, b: &Metric) -> Metric {
        Metric::derived(
            key,
            bench,
            label,
            "x",
            a.median / b.median,
            a.min / b.max,
            a.max / b.min,
        )
    }

    /// Compares the median with a target.
    pub fn target(mut self, text: &str, cmp: Cmp, value: f64) -> Metric {
        let ok = match cmp {
            Cmp::AtLeast => self.median >= value,
            Cmp::Below => self.median < value,
            Cmp::AtMost => self.median <= value,
        };
        self.status = Some(
            if self.median.is_nan() {
                "not measured"
            } else if ok {
                "met"
            } else {
                "missed"
            }
            .to_owned(),
        );
        self.target = Some(Target {
            text: text.to_owned(),
            cmp,
            value,
        });
        self
    }

    /// A target whose outcome is decided by the caller.
    pub fn target_judged(mut self, text: &str, met: bool) -> Metric {
        self.status = Some(if met { "met" } else { "missed" }.to_owned());
        self.target = Some(Target {
            text: text.to_owned(),
            cmp: Cmp::AtMost,
            value: f64::NAN,
        });
        self
    }

    pub fn note(mut self, note: impl Into<String>) -> Metric {
        self.note = Some(note.into());
        self
    }
}

/// Everything a run of the driver found.
#[derive(Default)]
pub struct Report {
    pub metrics: Vec<Metric>,
    /// Benchmarks that failed, with why.
    pub errors: Vec<(String, String)>,
    /// Per-benchmark configuration and extra facts, for results.json.
    pub details: serde_json::Map<String, Value>,
}

impl Report {
    pub fn add(&mut self, m: Metric) {
        self.metrics.push(m);
    }

    pub fn detail(&mut self, key: &str, value: Value) {
        self.details.insert(key.to_owned(), value);
    }

    pub fn get(&self, key: &str) -> Option<&Metric> {
        self.metrics.iter().find(|m| m.key == key)
    }

    /// A target that could not be measured in this run.
    pub fn not_measured(
        &mut self,
        key: &str,
        bench: &str,
        label: &str,
        unit: &str,
        target: &str,
        why: &str,
    ) {
        let mut m = Metric::new(key, bench, label, unit, Vec::new());
        m.status = Some("not measured".into());
        m.target = Some(Target {
            text: target.to_owned(),
            cmp: Cmp::AtMost,
            value: f64::NAN,
        });
        m.note = Some(why.to_owned());
        self.add(m);
    }

    pub fn json(&self, header: Value) -> Value {
        let mut doc = header;
        doc["benchmarks"] = json!(self.metrics);
        doc["errors"] = Value::Array(
            self.errors
                .iter()
                .map(|(b, e)| json!({ "bench": b, "error": e }))
                .collect(),
        );
        doc["details"] = Value::Object(self.details.clone());
        doc
    }

    /// The same table in Markdown (for scripts/BENCHMARKS.md).
    pub fn markdown(&self) -> String {
        let mut out = String::from(
            "| benchmark | figure | median | min | max | unit | target | status |\n|---|---|--:|--:|--:|---|---|---|\n",
        );
        for m in &self.metrics {
            let target = m.target.as_ref().map_or("", |t| t.text.as_str());
            let status = match m.status.as_deref() {
                Some("missed") => "**missed**",
                Some(s) => s,
                None => "",
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} | {} |\n",
                m.bench,
                m.label.replace('|', "\\|"),
                fmt(m.median),
                fmt(m.min),
                fmt(m.max),
                m.unit,
                target,
                status
            ));
        }
        for (b, e) in &self.errors {
            out.push_str(&format!(
                "| {b} | ERROR: {} | | | | | | |\n",
                e.replace('|', "\\|")
            ));
        }
        out
    }

    /// The table: one line per figure, grouped by benchmark.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let w_label = self
            .metrics
            .iter()
            .map(|m| m.label.chars().count())
            .max()
            .unwrap_or(10)
            .max(10);
        let header = format!(
            "{:<w_label$}  {:>12}  {:>12}  {:>12}  {:<10}  {:<22}  {}\n",
            "figure", "median", "min", "max", "unit", "target", "status"
        );
        out.push_str(&header);
        out.push_str(&"-".repeat(header.trim_end().chars().count()));
        out.push('\n');
        let mut bench = "";
        for m in &self.metrics {
            if m.bench != bench {
                bench = &m.bench;
                out.push_str(&format!("[{bench}]\n"));
            }
            let target = m.target.as_ref().map_or("", |t| t.text.as_str());
            let status = m.status.as_deref().map_or(String::new(), |s| match s {
                "met" => "met".to_owned(),
                "missed" => "MISSED".to_owned(),
                other => other.to_owned(),
            });
            out.push_str(&format!(
                "{:<w_label$}  {:>12}  {:>12}  {:>12}  {:<10}  {:<22}  {}\n",
                m.label,
                fmt(m.median),
                fmt(m.min),
                fmt(m.max),
                m.unit,
                target,
                status
            ));
        }
        for (b, e) in &self.errors {
            out.push_str(&format!("ERROR in {b}: {e}\n"));
        }
        out
    }
}

/// The number a section's name starts with ("10 database size" -> 10, "2b …" -> 2),
/// for ordering; names without one go last.
pub fn section_number(bench: &str) -> u32 {
    let digits: String = bench.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().unwrap_or(u32::MAX)
}

/// A number for the table: thousands separators for large values, 3 significant
/// digits for small ones.
pub fn fmt(v: f64) -> String {
    if v.is_nan() || v.is_infinite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        let s = format!("{:.0}", v.abs());
        let mut grouped = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 {
                grouped.push(',');
            }
            grouped.push(c);
        }
        if v < 0.0 {
            format!("-{grouped}")
        } else {
            grouped
        }
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a == 0.0 {
        "0".into()
    } else {
        format!("{v:.3}")
    }
}
