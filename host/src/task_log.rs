//! Building progress-log lines: percentages, ETA and durations.

use std::time::Duration;

/// Percent done, 0-100 (0 while the total is unknown).
pub fn percent(processed: u64, total: u64) -> u8 {
    if total == 0 {
        0
    } else {
        ((processed.min(total) as u128 * 100) / total as u128) as u8
    }
}

/// Estimated time left from the rate observed since the attempt started.
pub fn eta(elapsed_ms: i64, processed: u64, total: u64) -> String {
    if processed == 0 || total == 0 || elapsed_ms <= 0 {
        return "-".to_owned();
    }
    if processed >= total {
        return "0s".to_owned();
    }
    let left_ms = elapsed_ms as f64 * (total - processed) as f64 / processed as f64;
    format_eta(Duration::from_millis(left_ms as u64))
}

/// Short human duration: `850ms`, `5.2s`, `2m 15s`, `1h 3m`, `2d 4h`.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis() as u64;
    if ms < 1000 {
        return format!("{ms}ms");
    }
    if ms < 60_000 {
        return format!("{:.1}s", ms as f64 / 1000.0);
    }
    let s = ms / 1000;
    let (d, h, m, s) = (s / 86_400, s / 3600 % 24, s / 60 % 60, s % 60);
    if d > 0 {
        format!("{d}d {h}h")
    } else if h > 0 {
        format!("{h}h {m}m")
    } else {
        format!("{m}m {s}s")
    }
}

/// Bytes for people: `512 bytes`, `3.2 KB`, `12.0 MB`, `1.5 GB`.
pub fn format_bytes(n: u64) -> String {
    const UNITS: [&str; 3] = ["KB", "MB", "GB"];
    if n < 1024 {
        return format!("{n} bytes");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// Seconds-resolution ETA style used in log lines (`2m 15s`, `45s`).
pub fn format_eta(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format_duration(d)
    }
}

/// The longest age [`parse_age`] accepts: 100 years (of 365 days). Longer ages mean
/// nothing for clean-up and retention, and would overflow the millisecond clock.
pub const MAX_AGE: Duration = Duration::from_secs(100 * 365 * 86_400);

/// Parses an age such as `30d`, `12h`, `90m`, `45s` or `2w`, up to [`MAX_AGE`].
pub fn parse_age(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("'{s}' has no unit; use e.g. 30d, 12h, 90m or 45s"))?;
    let (num, unit) = s.split_at(split);
    if num.is_empty() {
        return Err(format!("'{s}' does not start with a number; use e.g. 30d"));
    }
    let unit_secs: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => {
            return Err(format!(
                "unknown unit '{unit}' in '{s}'; use s, m, h, d or w"
            ))
        }
    };
    let too_long = || {
        format!(
            "'{s}' is too long an age; the maximum is 100 years ({}d or {}w)",
            MAX_AGE.as_secs() / 86_400,
            MAX_AGE.as_secs() / (7 * 86_400)
        )
    };
    // Digits only, so a parse failure is an overflow of u64: too long as well.
    let n: u64 = num.parse().map_err(|_| too_long())?;
    let secs = n.checked_mul(unit_secs).ok_or_else(too_long)?;
    if secs > MAX_AGE.as_secs() {
        return Err(too_long());
    }
    Ok(Duration::from_secs(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eta_follows_the_observed_rate() {
        // 150 of 325 in 115 s -> 175 left at 1.3/s -> ~134 s.
        assert_eq!(eta(115_000, 150, 325), "2m 14s");
        assert_eq!(eta(1_000, 0, 10), "-");
        assert_eq!(eta(1_000, 10, 10), "0s");
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(format_duration(Duration::from_millis(5_200)), "5.2s");
        assert_eq!(format_duration(Duration::from_secs(135)), "2m 15s");
        assert_eq!(format_duration(Duration::from_secs(3_780)), "1h 3m");
        assert_eq!(format_duration(Duration::from_millis(12)), "12ms");
    }

    #[test]
    fn ages_parse_with_units_and_refuse_garbage() {
        assert_eq!(parse_age("30d").unwrap(), Duration::from_secs(30 * 86_400));
        assert_eq!(parse_age("0s").unwrap(), Duration::ZERO);
        assert!(parse_age("30").unwrap_err().contains("no unit"));
        assert!(parse_age("3x").unwrap_err().contains("unknown unit"));
        assert!(parse_age("d").unwrap_err().contains("number"));
    }

    #[test]
    fn ages_beyond_a_hundred_years_are_refused_not_wrapped() {
        assert_eq!(parse_age("36500d").unwrap(), MAX_AGE);
        assert_eq!(
            parse_age("5214w").unwrap(),
            Duration::from_secs(5214 * 7 * 86_400)
        );
        // Each of these once wrapped around (or overflowed) into a short age.
        for huge in [
            "36501d",
            "5215w",
            "28847129751w",
            "30500568904943d",
            "99999999999999999999s",
            "18446744073709551615m",
        ] {
            let e = parse_age(huge).unwrap_err();
            assert!(e.contains("maximum is 100 years (36500d"), "{huge}: {e}");
        }
    }

    #[test]
    fn bytes_read_naturally() {
        assert_eq!(format_bytes(512), "512 bytes");
        assert_eq!(format_bytes(3 * 1024 + 200), "3.2 KB");
        assert_eq!(format_bytes(12 << 20), "12.0 MB");
        assert_eq!(format_bytes(3 << 30), "3.0 GB");
    }

    #[test]
    fn percent_is_bounded() {
        assert_eq!(percent(150, 325), 46);
        assert_eq!(percent(400, 325), 100);
        assert_eq!(percent(5, 0), 0);
    }
}
