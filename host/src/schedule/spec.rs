//! What a schedule is: the [`Spec`] stored as JSON, its validation, parsing from
//! command-line style inputs and its one-line description for people.
//!
//! Every time in a spec is a wall-clock time in the configured timezone; turning it
//! into instants is [`super::next_run`]'s job.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc, Weekday};
use chrono_tz::Tz;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// Schedule kinds accepted on input. `manual` is not stored: a worker without a
/// schedule runs on demand only.
pub const KINDS: &[&str] = &["manual", "once", "hourly", "daily", "weekly", "regular"];

/// How a worker without a schedule is described.
pub const MANUAL_DESCRIPTION: &str = "manual (on demand only)";

const TIME_HINT: &str = "use HH:MM on the 24-hour clock, e.g. 08:30";
const DATE_TIME_HINT: &str = "use \"YYYY-MM-DD HH:MM\" (local time), e.g. \"2026-12-01 08:00\"";
const DAYS_HINT: &str = "use mon, tue, wed, thu, fri, sat or sun, separated by commas";
const INTERVAL_HINT: &str = "use minutes or hours like 30m, 2h or 1h30m";

/// A time of day on the local clock, to the minute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimeOfDay {
    hour: u8,
    minute: u8,
}

impl TimeOfDay {
    /// `hour:minute`, or `None` outside 00:00-23:59.
    pub fn new(hour: u32, minute: u32) -> Option<TimeOfDay> {
        (hour < 24 && minute < 60).then_some(TimeOfDay {
            hour: hour as u8,
            minute: minute as u8,
        })
    }

    /// The hour, 0-23.
    pub fn hour(self) -> u32 {
        self.hour.into()
    }

    /// The minute, 0-59.
    pub fn minute(self) -> u32 {
        self.minute.into()
    }

    /// Minutes since midnight.
    pub fn minutes(self) -> u32 {
        self.hour() * 60 + self.minute()
    }

    /// As a chrono time.
    pub fn naive(self) -> NaiveTime {
        NaiveTime::from_hms_opt(self.hour(), self.minute(), 0).expect("validated time of day")
    }
}

impl fmt::Display for TimeOfDay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02}:{:02}", self.hour, self.minute)
    }
}

impl FromStr for TimeOfDay {
    type Err = String;

    /// Parses `HH:MM` or `H:MM` (24-hour clock).
    fn from_str(s: &str) -> Result<TimeOfDay, String> {
        let t = s.trim();
        let Some((h, m)) = t.split_once(':') else {
            return Err(format!("'{s}' is not a time; {TIME_HINT}"));
        };
        let digits = |p: &str, max_len: usize| {
            !p.is_empty() && p.len() <= max_len && p.bytes().all(|b| b.is_ascii_digit())
        };
        if !digits(h, 2) || !digits(m, 2) || m.len() != 2 {
            return Err(format!("'{s}' is not a time; {TIME_HINT}"));
        }
        let (h, m): (u32, u32) = (h.parse().unwrap_or(99), m.parse().unwrap_or(99));
        if h > 23 {
            return Err(format!(
                "'{s}' is not a valid time: the hour must be 0-23 ({TIME_HINT})"
            ));
        }
        if m > 59 {
            return Err(format!(
                "'{s}' is not a valid time: the minute must be 0-59 ({TIME_HINT})"
            ));
        }
        Ok(TimeOfDay::new(h, m).expect("checked above"))
    }
}

impl Serialize for TimeOfDay {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeOfDay {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<TimeOfDay, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Parses a local date and time: `YYYY-MM-DD HH:MM` (a `T` may replace the space).
pub fn parse_local_date_time(s: &str) -> Result<NaiveDateTime, String> {
    let t = s.trim();
    let Some((date, time)) = t.split_once([' ', 'T']) else {
        return Err(format!("'{s}' is not a date and time; {DATE_TIME_HINT}"));
    };
    let date = NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d")
        .map_err(|_| format!("'{s}' does not start with a valid date; {DATE_TIME_HINT}"))?;
    let time: TimeOfDay = time.parse()?;
    Ok(date.and_time(time.naive()))
}

fn format_local_date_time(t: &NaiveDateTime) -> String {
    t.format("%Y-%m-%d %H:%M").to_string()
}

/// Parses a weekday: `mon` … `sun`, or the full English name, any case.
pub fn parse_weekday(s: &str) -> Result<Weekday, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err(format!("an empty weekday in the list; {DAYS_HINT}"));
    }
    t.parse::<Weekday>()
        .map_err(|_| format!("unknown weekday '{t}'; {DAYS_HINT}"))
}

/// Parses a comma-separated weekday list (`mon,wed,fri`), sorted Monday first and
/// without repeats. An empty list is refused.
pub fn parse_weekdays(s: &str) -> Result<Vec<Weekday>, String> {
    if s.trim().is_empty() {
        return Err(format!(
            "the weekday list is empty; a weekly schedule needs at least one day ({DAYS_HINT})"
        ));
    }
    let mut days = s
        .split(',')
        .map(parse_weekday)
        .collect::<Result<Vec<_>, _>>()?;
    days.sort_by_key(|d| d.num_days_from_monday());
    days.dedup();
    Ok(days)
}

fn weekday_name(d: Weekday) -> &'static str {
    match d {
        Weekday::Mon => "mon",
        Weekday::Tue => "tue",
        Weekday::Wed => "wed",
        Weekday::Thu => "thu",
        Weekday::Fri => "fri",
        Weekday::Sat => "sat",
        Weekday::Sun => "sun",
    }
}

/// Parses an interval of whole minutes: `30m`, `2h`, `1h30m`. Zero and seconds are
/// refused (schedules have minute resolution).
pub fn parse_interval(s: &str) -> Result<u32, String> {
    let t = s.trim().to_ascii_lowercase();
    if t.is_empty() {
        return Err(format!("an empty interval; {INTERVAL_HINT}"));
    }
    let mut minutes: u64 = 0;
    let mut number = String::new();
    let mut units = 0;
    for c in t.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let factor = match c {
            'h' => 60,
            'm' => 1,
            's' => {
                return Err(format!(
                    "'{s}' is in seconds; schedules run at minute resolution ({INTERVAL_HINT})"
                ))
            }
            _ => return Err(format!("'{s}' is not an interval; {INTERVAL_HINT}")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{s}' is not an interval; {INTERVAL_HINT}"))?;
        minutes = minutes.saturating_add(n.saturating_mul(factor));
        number.clear();
        units += 1;
    }
    if !number.is_empty() {
        return Err(if units == 0 {
            format!("'{s}' has no unit; {INTERVAL_HINT}")
        } else {
            format!("'{s}' ends without a unit; {INTERVAL_HINT}")
        });
    }
    if minutes == 0 {
        return Err(format!(
            "the interval '{s}' is zero; it must be at least 1 minute"
        ));
    }
    u32::try_from(minutes).map_err(|_| format!("the interval '{s}' is too long"))
}

/// `90` -> `1h30m`, `60` -> `1h`, `45` -> `45m`.
pub fn format_minutes(minutes: u32) -> String {
    match (minutes / 60, minutes % 60) {
        (0, m) => format!("{m}m"),
        (h, 0) => format!("{h}h"),
        (h, m) => format!("{h}h{m}m"),
    }
}

mod weekdays {
    //! Weekday lists as `["mon", "fri"]`.
    use super::*;

    pub fn serialize<S: Serializer>(days: &[Weekday], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(days.iter().map(|d| weekday_name(*d)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Weekday>, D::Error> {
        let names = Vec::<String>::deserialize(d)?;
        names
            .iter()
            .map(|n| parse_weekday(n))
            .collect::<Result<_, _>>()
            .map_err(serde::de::Error::custom)
    }
}

mod local_date_time {
    //! A local date and time as `"2026-12-01 08:00"`.
    use super::*;

    pub fn serialize<S: Serializer>(t: &NaiveDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_local_date_time(t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDateTime, D::Error> {
        let s = String::deserialize(d)?;
        parse_local_date_time(&s).map_err(serde::de::Error::custom)
    }
}

/// A schedule definition, stored as JSON tagged by `kind`:
///
/// ```json
/// {"kind": "once", "at": "2026-12-01 08:00"}
/// {"kind": "hourly", "minute": 15}
/// {"kind": "daily", "at": "08:30"}
/// {"kind": "weekly", "days": ["mon", "fri"], "at": "08:30"}
/// {"kind": "regular", "every_minutes": 60, "from": "05:00", "to": "23:00"}
/// ```
///
/// Times are wall-clock times in the configured timezone. How they map to instants
/// across daylight-saving changes is described in [`super::next_run`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Spec {
    /// Once, at a local date and time; afterwards there is no next run.
    Once {
        /// The local date and time.
        #[serde(with = "local_date_time")]
        at: NaiveDateTime,
    },
    /// Every hour, when the local clock shows this minute.
    Hourly {
        /// Minute of the hour, 0-59.
        minute: u32,
    },
    /// Every day at a local time.
    Daily {
        /// The local time.
        at: TimeOfDay,
    },
    /// On the given weekdays at a local time.
    Weekly {
        /// The weekdays, Monday first.
        #[serde(with = "weekdays")]
        days: Vec<Weekday>,
        /// The local time.
        at: TimeOfDay,
    },
    /// Every `every_minutes` within a daily window, starting at `from`; a slot that
    /// lands exactly on `to` runs. A window with `to` before `from` crosses midnight.
    Regular {
        /// The interval in minutes (at least 1, at most the window's length).
        every_minutes: u32,
        /// Start of the window, local time (the first slot).
        from: TimeOfDay,
        /// End of the window, local time (inclusive).
        to: TimeOfDay,
    },
}

/// Length of the window from `from` to `to` in minutes, going past midnight when `to`
/// is earlier than `from` (0 when they are equal).
pub fn window_minutes(from: TimeOfDay, to: TimeOfDay) -> u32 {
    (to.minutes() + 24 * 60 - from.minutes()) % (24 * 60)
}

impl Spec {
    /// The kind's name, as in the JSON `kind` field.
    pub fn kind(&self) -> &'static str {
        match self {
            Spec::Once { .. } => "once",
            Spec::Hourly { .. } => "hourly",
            Spec::Daily { .. } => "daily",
            Spec::Weekly { .. } => "weekly",
            Spec::Regular { .. } => "regular",
        }
    }

    /// Checks what the types cannot: minute range, a non-empty weekday list, and an
    /// interval between 1 minute and the window's length. (A one-off time in the past
    /// is only refused when a schedule is set, see [`Spec::validate_new`]: a stored
    /// one-off that already ran is still valid.)
    pub fn validate(&self) -> Result<(), String> {
        self.check().map_err(|e| e.message)
    }

    /// [`Spec::validate`], naming the input concerned.
    fn check(&self) -> Result<(), SpecError> {
        match self {
            Spec::Once { .. } | Spec::Daily { .. } => Ok(()),
            Spec::Hourly { minute } => minute_in_range((*minute).into())
                .map(|_| ())
                .map_err(about("minute")),
            Spec::Weekly { days, .. } => {
                if days.is_empty() {
                    Err(about("days")(format!(
                        "the weekday list is empty; a weekly schedule needs at least one day ({DAYS_HINT})"
                    )))
                } else {
                    Ok(())
                }
            }
            Spec::Regular {
                every_minutes,
                from,
                to,
            } => {
                let window = window_minutes(*from, *to);
                if *every_minutes == 0 {
                    Err(about("every")(
                        "the interval is zero; it must be at least 1 minute".to_owned(),
                    ))
                } else if window == 0 {
                    Err(about("from")(format!(
                        "the window from {from} to {to} is empty; its start and end must differ"
                    )))
                } else if *every_minutes > window {
                    Err(about("every")(format!(
                        "the interval {} is longer than the window from {from} to {to} ({})",
                        format_minutes(*every_minutes),
                        format_minutes(window)
                    )))
                } else {
                    Ok(())
                }
            }
        }
    }

    /// [`Spec::validate`], and for a one-off also that its time, read in `tz`, is after
    /// `now`; the error names the input concerned.
    pub fn validate_new(&self, tz: Tz, now: DateTime<Utc>) -> Result<(), SpecError> {
        self.check()?;
        if let Spec::Once { at } = self {
            let future = matches!(super::next_run::resolve_local(tz, *at), Some(w) if w > now);
            if !future {
                return Err(about("at")(format!(
                    "the time {} ({tz}) is in the past (it is now {}); give a future time",
                    format_local_date_time(at),
                    now.with_timezone(&tz).format("%Y-%m-%d %H:%M")
                )));
            }
        }
        Ok(())
    }

    /// Reads a stored or submitted JSON spec and validates it, with messages that name
    /// the problem (unknown kind, bad time, …).
    pub fn from_json(text: &str) -> Result<Spec, String> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| format!("the schedule is not JSON: {e}"))?;
        Spec::from_value(value)
    }

    /// Like [`Spec::from_json`], from a parsed value.
    pub fn from_value(value: Value) -> Result<Spec, String> {
        let Some(obj) = value.as_object() else {
            return Err(format!(
                "a schedule must be a JSON object like {{\"kind\": \"daily\", \"at\": \"08:30\"}}, not {}",
                json_type_with_article(&value)
            ));
        };
        match obj.get("kind").and_then(Value::as_str) {
            None => return Err(format!("the schedule has no \"kind\"; {}", kinds_hint())),
            Some("manual") => {
                return Err(
                    "a manual schedule is not stored: remove the schedule instead".to_owned(),
                )
            }
            Some(k) if !KINDS.contains(&k) => return Err(unknown_kind(k)),
            Some("hourly") => {
                // Caught here because serde would only say "expected u32" for -1.
                if let Some(n) = obj.get("minute").and_then(Value::as_i64) {
                    minute_in_range(n)?;
                }
            }
            Some(_) => {}
        }
        let spec: Spec =
            serde_json::from_value(value).map_err(|e| format!("invalid schedule: {e}"))?;
        spec.validate()?;
        Ok(spec)
    }

    /// The JSON text stored for this spec.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a spec always serializes")
    }
}

/// `an array`, `a string`, `null`: a JSON value's type for error messages.
pub fn json_type_with_article(v: &Value) -> String {
    let name = stask_plugin_api::manifest::json_type_name(v);
    match name {
        "null" => name.to_owned(),
        _ if name.starts_with(['a', 'e', 'i', 'o', 'u']) => format!("an {name}"),
        _ => format!("a {name}"),
    }
}

fn minute_in_range(n: i64) -> Result<u32, String> {
    match u32::try_from(n) {
        Ok(m) if m <= 59 => Ok(m),
        _ => Err(format!("minute {n} is out of range; use 0-59")),
    }
}

fn kinds_hint() -> String {
    let (last, rest) = KINDS.split_last().expect("kinds are listed");
    format!("use {} or {last}", rest.join(", "))
}

fn unknown_kind(k: &str) -> String {
    format!("unknown schedule kind '{k}'; {}", kinds_hint())
}

/// One line for people: `daily at 08:30`, `every 60 min between 05:00 and 23:00`.
pub fn describe(spec: &Spec) -> String {
    match spec {
        Spec::Once { at } => format!("once at {}", format_local_date_time(at)),
        Spec::Hourly { minute } => format!("hourly at minute {minute}"),
        Spec::Daily { at } => format!("daily at {at}"),
        Spec::Weekly { days, at } => {
            let names: Vec<&str> = days.iter().map(|d| weekday_name(*d)).collect();
            format!("weekly on {} at {at}", names.join(","))
        }
        Spec::Regular {
            every_minutes,
            from,
            to,
        } => format!("every {every_minutes} min between {from} and {to}"),
    }
}

/// [`describe`] as a code and its parameters, so that a front-end can word it in its
/// own language: `{"code": "daily", "params": {"at": "08:30"}}`. The codes are the
/// kinds (`once`, `hourly`, `daily`, `weekly`, `regular`) with the spec's fields as
/// parameters (times as `HH:MM`, a one-off's as `YYYY-MM-DD HH:MM`, weekdays as `mon`…
/// `sun`), and `manual` and `invalid` (with the English `error`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DescriptionCode {
    /// What kind of description.
    pub code: &'static str,
    /// Its parameters.
    pub params: serde_json::Map<String, Value>,
}

impl DescriptionCode {
    fn new(code: &'static str, params: Value) -> DescriptionCode {
        let Value::Object(params) = params else {
            unreachable!("parameters are built as objects")
        };
        DescriptionCode { code, params }
    }

    /// A worker without a schedule ([`MANUAL_DESCRIPTION`]).
    pub fn manual() -> DescriptionCode {
        DescriptionCode::new("manual", serde_json::json!({}))
    }

    /// A stored spec that cannot be read, with why (in English).
    pub fn invalid(error: &str) -> DescriptionCode {
        DescriptionCode::new("invalid", serde_json::json!({ "error": error }))
    }
}

/// [`describe`]'s code and parameters ([`DescriptionCode`]).
pub fn describe_code(spec: &Spec) -> DescriptionCode {
    use serde_json::json;
    match spec {
        Spec::Once { at } => {
            DescriptionCode::new("once", json!({ "at": format_local_date_time(at) }))
        }
        Spec::Hourly { minute } => DescriptionCode::new("hourly", json!({ "minute": minute })),
        Spec::Daily { at } => DescriptionCode::new("daily", json!({ "at": at.to_string() })),
        Spec::Weekly { days, at } => DescriptionCode::new(
            "weekly",
            json!({
                "days": days.iter().map(|d| weekday_name(*d)).collect::<Vec<_>>(),
                "at": at.to_string(),
            }),
        ),
        Spec::Regular {
            every_minutes,
            from,
            to,
        } => DescriptionCode::new(
            "regular",
            json!({
                "every_minutes": every_minutes,
                "from": from.to_string(),
                "to": to.to_string(),
            }),
        ),
    }
}

/// How a front-end names the inputs of a schedule in messages: `--at` on the command
/// line, `'at'` in an API body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum InputNames {
    /// Command-line flags: `--at`.
    #[default]
    Flags,
    /// Fields of a JSON body: `'at'`.
    Fields,
}

impl InputNames {
    /// How input `name` is called.
    pub fn name(self, name: &str) -> String {
        match self {
            InputNames::Flags => format!("--{name}"),
            InputNames::Fields => format!("'{name}'"),
        }
    }

    /// How input `name` is asked for, with the form its value takes.
    fn wanted(self, name: &str, form: &str) -> String {
        match self {
            InputNames::Flags => format!("--{name} {form}"),
            InputNames::Fields => format!("'{name}' ({form})"),
        }
    }
}

/// Why a [`SpecInput`] was refused: the input concerned (`kind`, `at`, `minute`,
/// `days`, `every`, `from` or `to`) and what is wrong, naming inputs as the front-end
/// does ([`InputNames`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    /// The input concerned.
    pub field: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecError {}

/// The input `message` is about.
fn about(field: &'static str) -> impl Fn(String) -> SpecError {
    move |message| SpecError { field, message }
}

/// A schedule as given on the command line (`KIND --at … --minute … --days … --every …
/// --from … --to …`) or in an API body (the same names as fields), before validation.
#[derive(Debug, Clone, Default)]
pub struct SpecInput {
    /// `manual`, `once`, `hourly`, `daily`, `weekly` or `regular`.
    pub kind: String,
    /// `--at`: `HH:MM`, or `YYYY-MM-DD HH:MM` for `once`.
    pub at: Option<String>,
    /// `--minute` of `hourly` (default 0).
    pub minute: Option<String>,
    /// `--days` of `weekly`: `mon,fri`.
    pub days: Option<String>,
    /// `--every` of `regular`: `60m`, `2h`, `1h30m`.
    pub every: Option<String>,
    /// `--from` of `regular` (default 00:00).
    pub from: Option<String>,
    /// `--to` of `regular` (default 23:59).
    pub to: Option<String>,
    /// How messages name the inputs.
    pub names: InputNames,
}

impl SpecInput {
    /// The timing inputs with their names, in the order messages mention them.
    pub fn timing(&self) -> [(&'static str, &Option<String>); 6] {
        [
            ("at", &self.at),
            ("minute", &self.minute),
            ("days", &self.days),
            ("every", &self.every),
            ("from", &self.from),
            ("to", &self.to),
        ]
    }

    /// Builds and validates the spec; `None` means `manual` (no schedule). A one-off
    /// time is read in `tz` and must be after `now`. Options that do not belong to the
    /// kind are refused rather than ignored, so a typo never goes unnoticed.
    pub fn parse(&self, tz: Tz, now: DateTime<Utc>) -> Result<Option<Spec>, SpecError> {
        let names = self.names;
        let kind = self.kind.trim().to_ascii_lowercase();
        let allowed: &[&str] = match kind.as_str() {
            "manual" => &[],
            "once" | "daily" => &["at"],
            "hourly" => &["minute"],
            "weekly" => &["days", "at"],
            "regular" => &["every", "from", "to"],
            other => return Err(about("kind")(unknown_kind(other))),
        };
        for (name, value) in self.timing() {
            if value.is_some() && !allowed.contains(&name) {
                let takes = if allowed.is_empty() {
                    "no options".to_owned()
                } else {
                    allowed
                        .iter()
                        .map(|a| names.name(a))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                return Err(SpecError {
                    field: name,
                    message: format!(
                        "{} does not apply to a {kind} schedule (it takes {takes})",
                        names.name(name)
                    ),
                });
            }
        }
        let need = |field: &'static str, v: &Option<String>, form: &str| {
            v.clone().ok_or_else(|| SpecError {
                field,
                message: format!("a {kind} schedule needs {}", names.wanted(field, form)),
            })
        };
        let spec = match kind.as_str() {
            "manual" => return Ok(None),
            "once" => Spec::Once {
                at: parse_local_date_time(&need("at", &self.at, "\"YYYY-MM-DD HH:MM\"")?)
                    .map_err(about("at"))?,
            },
            "hourly" => Spec::Hourly {
                minute: match &self.minute {
                    None => 0,
                    Some(m) => {
                        let n: i64 = m.trim().parse().map_err(|_| {
                            about("minute")(format!("minute '{m}' is not a whole number; use 0-59"))
                        })?;
                        minute_in_range(n).map_err(about("minute"))?
                    }
                },
            },
            "daily" => Spec::Daily {
                at: need("at", &self.at, "HH:MM")?
                    .parse()
                    .map_err(about("at"))?,
            },
            "weekly" => Spec::Weekly {
                days: parse_weekdays(&need("days", &self.days, "like mon,fri")?)
                    .map_err(about("days"))?,
                at: need("at", &self.at, "HH:MM")?
                    .parse()
                    .map_err(about("at"))?,
            },
            _ => Spec::Regular {
                every_minutes: parse_interval(&need("every", &self.every, "like 60m")?)
                    .map_err(about("every"))?,
                from: self
                    .from
                    .as_deref()
                    .unwrap_or("00:00")
                    .parse()
                    .map_err(about("from"))?,
                to: self
                    .to
                    .as_deref()
                    .unwrap_or("23:59")
                    .parse()
                    .map_err(about("to"))?,
            },
        };
        spec.validate_new(tz, now)?;
        Ok(Some(spec))
    }
}
