//! Go-style duration text, because the original's configuration and error texts use it:
//! settings such as `2m0s`, `15m` or `100ms`, and `AI service request timed out after 2m0s`.
//! Parsing is the `go-parse-duration` crate (a port of Go's `time.ParseDuration`); formatting is
//! hand-written here because no maintained crate reproduces Go's `Duration.String()` exactly and
//! the text is part of the wire contract (PROTOCOL.md §3.8).

use std::time::Duration;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go duration syntax (a number with a unit: ns, us, µs, ms, s, m, h).
    #[error("invalid duration {0:?}: expected Go syntax such as \"100ms\", \"15m\" or \"2m0s\"")]
    Syntax(String),
    /// A negative duration where only non-negative ones make sense.
    #[error("invalid duration {0:?}: must not be negative")]
    Negative(String),
}

/// Parses Go duration syntax (`"2m0s"`, `"1h30m"`, `"100ms"`, `"0"`). Negative values are refused.
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let trimmed = text.trim();
    let nanos = go_parse_duration::parse_duration(trimmed)
        .map_err(|_| DurationError::Syntax(text.to_string()))?;
    let nanos = u64::try_from(nanos).map_err(|_| DurationError::Negative(text.to_string()))?;
    Ok(Duration::from_nanos(nanos))
}

/// Formats like Go's `time.Duration.String()`: `2m0s`, `1h0m0s`, `1.5s`, `100ms`, `0s`.
pub fn format(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000_000_000 {
        // Sub-second values use the largest unit that keeps an integer part.
        let (unit, scale) = if nanos < 1_000 {
            ("ns", 1)
        } else if nanos < 1_000_000 {
            ("µs", 1_000)
        } else {
            ("ms", 1_000_000)
        };
        return format!("{}{unit}", decimal(nanos, scale));
    }
    let total_secs = nanos / 1_000_000_000;
    let frac = nanos % 1_000_000_000;
    let hours = total_secs / 3600;
    let minutes = (total_secs % 3600) / 60;
    let secs = total_secs % 60;
    let mut out = String::new();
    if hours > 0 {
        out.push_str(&format!("{hours}h"));
    }
    if hours > 0 || minutes > 0 {
        out.push_str(&format!("{minutes}m"));
    }
    out.push_str(&decimal(u128::from(secs) * 1_000_000_000 + frac, 1_000_000_000));
    out.push('s');
    out
}

/// `value / scale` as a decimal with trailing zeros of the fraction removed.
fn decimal(value: u128, scale: u128) -> String {
    let int = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return int.to_string();
    }
    let width = scale.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{int}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_like_go() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(120), "2m0s"),
            (Duration::from_secs(60), "1m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_secs(5400), "1h30m0s"),
            (Duration::from_secs(90), "1m30s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(100), "100ms"),
            (Duration::from_micros(1500), "1.5ms"),
            (Duration::from_nanos(42), "42ns"),
            (Duration::from_micros(3), "3µs"),
            (Duration::from_secs(30), "30s"),
        ];
        for (d, want) in cases {
            assert_eq!(format(d), want, "{d:?}");
        }
    }

    #[test]
    fn parses_go_syntax() {
        assert_eq!(parse("2m0s"), Ok(Duration::from_secs(120)));
        assert_eq!(parse("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse(" 30s "), Ok(Duration::from_secs(30)));
        assert!(matches!(parse("15"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("abc"), Err(DurationError::Syntax(_))));
        assert!(matches!(parse(""), Err(DurationError::Syntax(_))));
        assert!(matches!(parse("-5s"), Err(DurationError::Negative(_))));
    }

    #[test]
    fn format_then_parse_round_trips() {
        for ms in [1u64, 999, 1000, 1001, 59_999, 60_000, 3_599_999, 3_600_000, 86_400_123] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d), "{ms} ms");
        }
    }
}
