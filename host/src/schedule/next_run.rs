//! When a schedule runs next: wall-clock slots in the configured timezone turned into
//! instants with chrono-tz, so daylight-saving changes follow the tz database.
//!
//! Rules for wall-clock times (`once`, `daily`, `weekly` and the slots of `regular`):
//!
//! * **A time that does not exist** (skipped by a spring-forward change, e.g. 02:30 in
//!   New York on 2026-03-08) runs at the first valid instant after the gap: the moment
//!   the clock jumps, shown as 03:00 local — not 03:30. Several slots inside one gap
//!   therefore collapse into a single run at that instant.
//! * **A time that occurs twice** (fall-back, e.g. 01:30 in New York on 2026-11-01)
//!   runs once, at the earlier instant (still on summer time).
//!
//! `hourly` follows the clock's minute instead: it runs at every real hour whose
//! local clock shows the minute, so a fall-back day has one run more (the repeated
//! hour runs again) and a spring-forward day one fewer (the skipped hour has no such
//! minute); runs stay one hour apart.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::spec::{window_minutes, Spec};

/// Longest clock jump searched for the end of a gap. Daylight-saving gaps are an hour
/// or less; two days covers even a whole skipped calendar day (Samoa, 2011).
const MAX_GAP_MINUTES: i64 = 2 * 24 * 60;

/// Days searched ahead for the next slot: a weekly schedule's next day is at most a week
/// away, plus the day before and after for window and timezone edges.
const LOOKAHEAD_DAYS: i64 = 9;

/// The instant a local wall-clock time stands for in `tz`: the earlier one when it
/// occurs twice, the end of the gap when it does not exist. `None` only if no valid
/// local time follows within two days (no real timezone does that).
pub fn resolve_local(tz: Tz, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return Some(t.with_timezone(&Utc));
    }
    // In a gap: the first local minute that exists is the moment the clock jumped to.
    (1..=MAX_GAP_MINUTES).find_map(|m| {
        tz.from_local_datetime(&(local + Duration::minutes(m)))
            .earliest()
            .map(|t| t.with_timezone(&Utc))
    })
}

/// The first run of `spec` strictly after `after`, or `None` when there is none (a
/// one-off whose time has passed). Pure: the same inputs give the same answer.
///
/// Callers pass the current time, not the missed slot, so runs missed while the
/// service was down collapse into at most one.
pub fn next_after(spec: &Spec, tz: Tz, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
    if let Spec::Once { at } = spec {
        return resolve_local(tz, *at).filter(|t| *t > after);
    }
    // Start a day early: a regular window that began yesterday evening may still have
    // slots after midnight.
    let first = after.with_timezone(&tz).date_naive() - Duration::days(1);
    let mut slots = Vec::new();
    for day in 0..=LOOKAHEAD_DAYS {
        let date = first + Duration::days(day);
        slots.clear();
        slots_on(spec, tz, date, &mut slots);
        // Slots of one date come out in order, and dates in order, because resolving
        // never moves a later wall time before an earlier one; so the first slot after
        // `after` is the answer.
        if let Some(t) = slots.iter().find(|t| **t > after) {
            return Some(*t);
        }
    }
    None
}

/// The instants of the slots that belong to `date` (for `regular`, those of the window
/// starting on `date`, which may run past midnight), in order.
fn slots_on(spec: &Spec, tz: Tz, date: NaiveDate, out: &mut Vec<DateTime<Utc>>) {
    match spec {
        Spec::Once { .. } => {}
        Spec::Hourly { minute } => {
            for hour in 0..24 {
                let Some(local) = date.and_hms_opt(hour, *minute, 0) else {
                    return;
                };
                // Every real instant showing this minute: both of a repeated hour,
                // none of a skipped one.
                match tz.from_local_datetime(&local) {
                    chrono::LocalResult::Single(t) => out.push(t.with_timezone(&Utc)),
                    chrono::LocalResult::Ambiguous(a, b) => {
                        let (a, b) = (a.with_timezone(&Utc), b.with_timezone(&Utc));
                        out.push(a.min(b));
                        out.push(a.max(b));
                    }
                    chrono::LocalResult::None => {}
                }
            }
        }
        Spec::Daily { at } => out.extend(resolve_local(tz, date.and_time(at.naive()))),
        Spec::Weekly { days, at } => {
            if days.contains(&date.weekday()) {
                out.extend(resolve_local(tz, date.and_time(at.naive())));
            }
        }
        Spec::Regular {
            every_minutes,
            from,
            to,
        } => {
            if *every_minutes == 0 {
                return;
            }
            let start = date.and_time(from.naive());
            let window = window_minutes(*from, *to);
            let mut offset = 0;
            // `<=`: a slot landing exactly on the window's end runs.
            while offset <= window {
                out.extend(resolve_local(tz, start + Duration::minutes(offset.into())));
                offset += every_minutes;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schedule::spec::{SpecInput, TimeOfDay};
    use chrono::Weekday;
    use chrono_tz::America::New_York;
    use chrono_tz::Europe::Kyiv;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn t(h: u32, m: u32) -> TimeOfDay {
        TimeOfDay::new(h, m).unwrap()
    }

    fn next(spec: &Spec, tz: Tz, after: &str) -> Option<String> {
        next_after(spec, tz, utc(after)).map(|t| t.to_rfc3339())
    }

    /// Successive runs from `after`, as RFC 3339 UTC.
    fn runs(spec: &Spec, tz: Tz, after: &str, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let mut at = utc(after);
        for _ in 0..n {
            let Some(t) = next_after(spec, tz, at) else {
                break;
            };
            out.push(t.to_rfc3339());
            at = t;
        }
        out
    }

    #[test]
    fn once_runs_at_its_local_time_and_then_never() {
        let at = crate::schedule::spec::parse_local_date_time("2026-12-01 08:00").unwrap();
        let spec = Spec::Once { at };
        // Kyiv is UTC+2 in winter.
        let first = next(&spec, Kyiv, "2026-11-28T10:00:00Z");
        assert_eq!(first.as_deref(), Some("2026-12-01T06:00:00+00:00"));
        assert_eq!(next(&spec, Kyiv, "2026-12-01T06:00:00Z"), None);
    }

    #[test]
    fn hourly_runs_at_the_minute_of_every_hour() {
        let spec = Spec::Hourly { minute: 15 };
        assert_eq!(
            runs(&spec, Kyiv, "2026-06-01T10:15:00Z", 3),
            [
                "2026-06-01T11:15:00+00:00",
                "2026-06-01T12:15:00+00:00",
                "2026-06-01T13:15:00+00:00"
            ]
        );
        // Exactly on a slot: the next one, never the same.
        assert_eq!(
            next(&spec, Kyiv, "2026-06-01T10:14:59Z").as_deref(),
            Some("2026-06-01T10:15:00+00:00")
        );
        // A half-hour-offset zone keeps the local minute.
        let kolkata: Tz = "Asia/Kolkata".parse().unwrap();
        assert_eq!(
            next(&spec, kolkata, "2026-06-01T10:00:00Z").as_deref(),
            Some("2026-06-01T10:45:00+00:00")
        );
    }

    #[test]
    fn hourly_stays_an_hour_apart_across_dst() {
        let spec = Spec::Hourly { minute: 30 };
        // Spring forward in New York: 02:30 does not exist; 01:30 EST -> 03:30 EDT.
        assert_eq!(
            runs(&spec, New_York, "2026-03-08T06:00:00Z", 2),
            ["2026-03-08T06:30:00+00:00", "2026-03-08T07:30:00+00:00"]
        );
        // Fall back: 01:30 happens twice, an hour apart, and both run.
        assert_eq!(
            runs(&spec, New_York, "2026-11-01T05:00:00Z", 3),
            [
                "2026-11-01T05:30:00+00:00",
                "2026-11-01T06:30:00+00:00",
                "2026-11-01T07:30:00+00:00"
            ]
        );
    }

    #[test]
    fn daily_runs_every_day_at_its_local_time() {
        let spec = Spec::Daily { at: t(8, 30) };
        assert_eq!(
            runs(&spec, Kyiv, "2026-06-01T00:00:00Z", 2),
            ["2026-06-01T05:30:00+00:00", "2026-06-02T05:30:00+00:00"]
        );
        assert_eq!(
            next(&spec, chrono_tz::UTC, "2026-06-01T08:30:00Z").as_deref(),
            Some("2026-06-02T08:30:00+00:00")
        );
    }

    #[test]
    fn daily_on_spring_forward_runs_when_the_gap_ends() {
        let spec = Spec::Daily { at: t(2, 30) };
        // New York 2026-03-08: 02:00 EST jumps to 03:00 EDT (07:00 UTC).
        assert_eq!(
            runs(&spec, New_York, "2026-03-07T12:00:00Z", 3),
            [
                "2026-03-08T07:00:00+00:00",
                "2026-03-09T06:30:00+00:00",
                "2026-03-10T06:30:00+00:00"
            ]
        );
        // Kyiv 2026-03-29: 03:00 EET jumps to 04:00 EEST (01:00 UTC).
        let spec = Spec::Daily { at: t(3, 30) };
        assert_eq!(
            runs(&spec, Kyiv, "2026-03-28T12:00:00Z", 2),
            ["2026-03-29T01:00:00+00:00", "2026-03-30T00:30:00+00:00"]
        );
    }

    #[test]
    fn daily_on_fall_back_runs_once_at_the_earlier_instant() {
        let spec = Spec::Daily { at: t(1, 30) };
        // New York 2026-11-01: 01:30 EDT (05:30 UTC), not again at 01:30 EST.
        assert_eq!(
            runs(&spec, New_York, "2026-10-31T12:00:00Z", 2),
            ["2026-11-01T05:30:00+00:00", "2026-11-02T06:30:00+00:00"]
        );
        // Kyiv 2026-10-25: 03:30 EEST (00:30 UTC), not 03:30 EET.
        let spec = Spec::Daily { at: t(3, 30) };
        assert_eq!(
            runs(&spec, Kyiv, "2026-10-24T12:00:00Z", 2),
            ["2026-10-25T00:30:00+00:00", "2026-10-26T01:30:00+00:00"]
        );
    }

    #[test]
    fn weekly_runs_on_its_days_only() {
        let spec = Spec::Weekly {
            days: vec![Weekday::Mon, Weekday::Fri],
            at: t(8, 30),
        };
        // 2026-06-03 is a Wednesday.
        assert_eq!(
            runs(&spec, chrono_tz::UTC, "2026-06-03T12:00:00Z", 3),
            [
                "2026-06-05T08:30:00+00:00",
                "2026-06-08T08:30:00+00:00",
                "2026-06-12T08:30:00+00:00"
            ]
        );
        // The weekday is the local one: Monday 01:00 in Kyiv is Sunday 22:00 UTC.
        let spec = Spec::Weekly {
            days: vec![Weekday::Mon],
            at: t(1, 0),
        };
        assert_eq!(
            next(&spec, Kyiv, "2026-06-03T12:00:00Z").as_deref(),
            Some("2026-06-07T22:00:00+00:00")
        );
    }

    #[test]
    fn regular_runs_within_its_window_ends_included() {
        let spec = Spec::Regular {
            every_minutes: 60,
            from: t(5, 0),
            to: t(23, 0),
        };
        let tz = chrono_tz::UTC;
        assert_eq!(
            next(&spec, tz, "2026-06-01T03:00:00Z").as_deref(),
            Some("2026-06-01T05:00:00+00:00")
        );
        assert_eq!(
            runs(&spec, tz, "2026-06-01T21:30:00Z", 3),
            [
                "2026-06-01T22:00:00+00:00",
                "2026-06-01T23:00:00+00:00",
                "2026-06-02T05:00:00+00:00"
            ]
        );
        // Slots count from the window's start: every 40 min from 05:00 to 06:30.
        let spec = Spec::Regular {
            every_minutes: 40,
            from: t(5, 0),
            to: t(6, 30),
        };
        assert_eq!(
            runs(&spec, tz, "2026-06-01T00:00:00Z", 3),
            [
                "2026-06-01T05:00:00+00:00",
                "2026-06-01T05:40:00+00:00",
                "2026-06-01T06:20:00+00:00"
            ]
        );
    }

    #[test]
    fn regular_window_may_cross_midnight() {
        let spec = Spec::Regular {
            every_minutes: 60,
            from: t(22, 0),
            to: t(2, 0),
        };
        assert_eq!(
            runs(&spec, chrono_tz::UTC, "2026-06-01T12:00:00Z", 6),
            [
                "2026-06-01T22:00:00+00:00",
                "2026-06-01T23:00:00+00:00",
                "2026-06-02T00:00:00+00:00",
                "2026-06-02T01:00:00+00:00",
                "2026-06-02T02:00:00+00:00",
                "2026-06-02T22:00:00+00:00"
            ]
        );
        // After midnight, the window that began yesterday still counts.
        assert_eq!(
            next(&spec, Kyiv, "2026-06-01T21:30:00Z").as_deref(),
            Some("2026-06-01T22:00:00+00:00")
        );
    }

    #[test]
    fn regular_across_spring_forward_collapses_the_gap() {
        let spec = Spec::Regular {
            every_minutes: 30,
            from: t(1, 0),
            to: t(4, 0),
        };
        // New York 2026-03-08: 02:00 and 02:30 do not exist; both become 03:00 EDT,
        // which is also a slot itself, so it runs once.
        assert_eq!(
            runs(&spec, New_York, "2026-03-08T05:00:00Z", 6),
            [
                "2026-03-08T06:00:00+00:00", // 01:00 EST
                "2026-03-08T06:30:00+00:00", // 01:30 EST
                "2026-03-08T07:00:00+00:00", // 03:00 EDT (gap end)
                "2026-03-08T07:30:00+00:00", // 03:30 EDT
                "2026-03-08T08:00:00+00:00", // 04:00 EDT
                "2026-03-09T05:00:00+00:00"  // next day 01:00 EDT
            ]
        );
    }

    #[test]
    fn regular_across_fall_back_runs_each_slot_once() {
        let spec = Spec::Regular {
            every_minutes: 30,
            from: t(0, 30),
            to: t(2, 30),
        };
        // New York 2026-11-01: 01:00 and 01:30 happen twice and run at the earlier
        // (EDT) instants; 02:00 EST follows.
        assert_eq!(
            runs(&spec, New_York, "2026-11-01T04:00:00Z", 6),
            [
                "2026-11-01T04:30:00+00:00", // 00:30 EDT
                "2026-11-01T05:00:00+00:00", // 01:00 EDT
                "2026-11-01T05:30:00+00:00", // 01:30 EDT
                "2026-11-01T07:00:00+00:00", // 02:00 EST
                "2026-11-01T07:30:00+00:00", // 02:30 EST
                "2026-11-02T05:30:00+00:00"  // next day 00:30 EST
            ]
        );
        // Kyiv 2026-10-25: 04:00 EEST falls back to 03:00 EET.
        let spec = Spec::Regular {
            every_minutes: 60,
            from: t(2, 0),
            to: t(5, 0),
        };
        assert_eq!(
            runs(&spec, Kyiv, "2026-10-24T22:00:00Z", 4),
            [
                "2026-10-24T23:00:00+00:00", // 02:00 EEST
                "2026-10-25T00:00:00+00:00", // 03:00 EEST (earlier of two)
                "2026-10-25T02:00:00+00:00", // 04:00 EET
                "2026-10-25T03:00:00+00:00"  // 05:00 EET
            ]
        );
    }

    #[test]
    fn resolve_local_maps_gaps_to_their_end() {
        let gap = crate::schedule::spec::parse_local_date_time("2026-03-08 02:30").unwrap();
        assert_eq!(
            resolve_local(New_York, gap).unwrap().to_rfc3339(),
            "2026-03-08T07:00:00+00:00"
        );
    }

    #[test]
    fn parsed_inputs_drive_next_after() {
        let input = SpecInput {
            kind: "regular".into(),
            every: Some("1h".into()),
            from: Some("22:00".into()),
            to: Some("02:00".into()),
            ..Default::default()
        };
        let spec = input
            .parse(chrono_tz::UTC, utc("2026-06-01T00:00:00Z"))
            .unwrap()
            .unwrap();
        assert_eq!(
            next(&spec, chrono_tz::UTC, "2026-06-02T01:30:00Z").as_deref(),
            Some("2026-06-02T02:00:00+00:00")
        );
    }
}
