//! The service log's formats: `text` (tracing's human-readable lines) or `json` (one
//! JSON object a line, for log shippers), chosen with `serve --log-format`,
//! `STASK_LOG_FORMAT` or `log_format` in `stask.toml`.
//!
//! A JSON line is
//! `{"timestamp":"2026-11-30T10:00:00.123456Z","level":"INFO","target":"stask_host::engine::coordinator","message":"Task completed successfully (5ms)","fields":{"task":7,"worker":"demo"}}`:
//! the time in UTC (RFC 3339, microseconds), the level, the module that logged, the
//! message, and the event's other fields with their types (numbers and booleans stay
//! JSON numbers and booleans, everything else is text). The keys are always present
//! (`fields` may be `{}`), so a shipper can rely on them.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};
use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// How the service writes its log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Lines for people (tracing's default format).
    #[default]
    Text,
    /// One JSON object a line.
    Json,
}

impl LogFormat {
    /// The configuration value.
    pub fn as_str(self) -> &'static str {
        match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        }
    }

    /// Parses `text` or `json`; the error names the choices.
    pub fn parse(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "'{other}' is not a log format; choose text or json"
            )),
        }
    }
}

/// Reports panics through the log (an `ERROR` event of target `stask::panic`, with the
/// thread and, when `RUST_BACKTRACE` asks for one, the backtrace) instead of as text on
/// standard error, so that with JSON logs a panic is a JSON line too.
pub fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let backtrace = std::backtrace::Backtrace::capture();
        let backtrace = match backtrace.status() {
            std::backtrace::BacktraceStatus::Captured => backtrace.to_string(),
            _ => String::new(),
        };
        tracing::error!(
            target: "stask::panic",
            thread = thread.name().unwrap_or("<unnamed>"),
            backtrace = %backtrace,
            "{info}"
        );
    }));
}

/// The JSON event format (see the module documentation).
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        writer.write_str(&json_line(event))?;
        writer.write_char('\n')
    }
}

/// One event as a JSON object (without the newline).
fn json_line(event: &Event<'_>) -> String {
    let meta = event.metadata();
    let mut fields = Fields::default();
    event.record(&mut fields);
    let timestamp = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    // Written key by key so the order reads well; every value is serialized by
    // serde_json, so the line is valid JSON whatever a message holds.
    let text = |v: &str| Value::String(v.to_owned()).to_string();
    format!(
        "{{\"timestamp\":{},\"level\":{},\"target\":{},\"message\":{},\"fields\":{}}}",
        text(&timestamp),
        text(meta.level().as_str()),
        text(meta.target()),
        text(fields.message.as_deref().unwrap_or("")),
        Value::Object(fields.fields)
    )
}

/// An event's message and other fields.
#[derive(Default)]
struct Fields {
    message: Option<String>,
    fields: Map<String, Value>,
}

impl Fields {
    fn put(&mut self, field: &Field, value: Value) {
        if field.name() == "message" {
            self.message = Some(match value {
                Value::String(s) => s,
                other => other.to_string(),
            });
        } else {
            self.fields.insert(field.name().to_owned(), value);
        }
    }
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.put(field, Value::String(format!("{value:?}")));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.put(field, Value::String(value.to_owned()));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, Value::from(value));
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, Value::from(value));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, Value::from(value));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities are not JSON numbers.
        let v = serde_json::Number::from_f64(value)
            .map_or_else(|| Value::String(value.to_string()), Value::Number);
        self.put(field, v);
    }

    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.put(field, Value::String(value.to_string()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_event_is_one_json_object_with_typed_fields() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let worker = "demo";
            tracing::info!(task = 7_i64, worker = %worker, ok = true, ratio = 0.5, "line \"one\"\nand a newline");
            tracing::warn!("plain");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        let first = &lines[0];
        assert_eq!(first["level"], "INFO");
        assert_eq!(first["message"], "line \"one\"\nand a newline");
        assert_eq!(first["fields"]["task"], 7);
        assert_eq!(first["fields"]["worker"], "demo");
        assert_eq!(first["fields"]["ok"], true);
        assert_eq!(first["fields"]["ratio"], 0.5);
        assert!(first["target"].as_str().unwrap().starts_with("stask_host"));
        let ts = first["timestamp"].as_str().unwrap();
        assert!(chrono::DateTime::parse_from_rfc3339(ts).is_ok(), "{ts}");
        assert_eq!(lines[1]["fields"], serde_json::json!({}));
        assert_eq!(lines[1]["level"], "WARN");
    }

    #[test]
    fn a_panic_is_logged_as_one_json_line() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .event_format(JsonLines)
            .finish();
        let previous = std::panic::take_hook();
        log_panics();
        let caught = tracing::subscriber::with_default(subscriber, || {
            std::panic::catch_unwind(|| panic!("boom {}", 42))
        });
        std::panic::set_hook(previous);
        assert!(caught.is_err());
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let line: Value =
            serde_json::from_str(text.trim_end()).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(line["level"], "ERROR");
        assert_eq!(line["target"], "stask::panic");
        assert!(
            line["message"].as_str().unwrap().contains("boom 42"),
            "{line}"
        );
        assert!(line["fields"]["thread"].is_string(), "{line}");
    }

    #[test]
    fn formats_parse_and_a_wrong_one_names_the_choices() {
        assert_eq!(LogFormat::parse("json"), Ok(LogFormat::Json));
        assert_eq!(LogFormat::parse("text"), Ok(LogFormat::Text));
        let e = LogFormat::parse("xml").unwrap_err();
        assert!(e.contains("'xml'") && e.contains("text or json"), "{e}");
    }
}
