//! Go-style duration text, because the original's configuration and error texts use it:
//! settings such as `2m0s`, `15m` or `100ms`, and `AI service request timed out after 2m0s`.
//!
//! Both directions are hand-written here. Formatting: no maintained crate reproduces Go's
//! `Duration.String()` exactly, and the text is part of the wire contract (PROTOCOL.md §3.8).
//! Parsing: the one crate that ports Go's `time.ParseDuration` (`go-parse-duration` 0.1) loops
//! forever on long fractions, panics on some non-ASCII input and on overflow, and cannot read
//! `µs`; configuration text is untrusted (the loader is fuzzed), so a small total parser is safer.

use std::time::Duration;

/// Why a duration text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not Go duration syntax (a number with a unit: ns, us, µs, ms, s, m, h), or too large.
    #[error("invalid duration {0:?}: expected Go syntax such as \"100ms\", \"15m\" or \"2m0s\"")]
    Syntax(String),
    /// A negative duration where only non-negative ones make sense.
    #[error("invalid duration {0:?}: must not be negative")]
    Negative(String),
}

/// Largest accepted total: about 146 years, far below every overflow.
const LIMIT_NANOS: u128 = 1 << 62;

/// Parses Go duration syntax (`"2m0s"`, `"1h30m"`, `"1.5s"`, `"250µs"`, `"0"`), ignoring
/// surrounding whitespace. Negative values and totals above ~146 years are refused. Total: never
/// panics, never loops, O(length).
pub fn parse(text: &str) -> Result<Duration, DurationError> {
    let syntax = || DurationError::Syntax(cut(text));
    let trimmed = text.trim();
    let (negative, unsigned) = match trimmed.as_bytes().first() {
        Some(b'-') => (true, &trimmed[1..]),
        Some(b'+') => (false, &trimmed[1..]),
        _ => (false, trimmed),
    };
    if unsigned == "0" {
        return Ok(Duration::ZERO);
    }
    if unsigned.is_empty() {
        return Err(syntax());
    }
    let mut rest = unsigned;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_digits, after_int) = rest.split_at(int_len);
        let (frac_digits, after_num) = match after_int.strip_prefix('.') {
            Some(f) => {
                let n = f.bytes().take_while(u8::is_ascii_digit).count();
                f.split_at(n)
            }
            None => ("", after_int),
        };
        if int_digits.is_empty() && frac_digits.is_empty() {
            return Err(syntax());
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, after_unit) = after_num.split_at(unit_len);
        let scale: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(syntax()),
        };
        let mut whole: u128 = 0;
        for d in int_digits.bytes() {
            whole = whole.saturating_mul(10).saturating_add(u128::from(d - b'0'));
            if whole >= LIMIT_NANOS {
                return Err(syntax());
            }
        }
        // Fraction digits beyond nanosecond precision of the unit only round down, as in Go.
        let mut frac_nanos: u128 = 0;
        let mut place = scale;
        for d in frac_digits.bytes() {
            place /= 10;
            if place == 0 {
                break;
            }
            frac_nanos += u128::from(d - b'0') * place;
        }
        total = total.saturating_add(whole.saturating_mul(scale)).saturating_add(frac_nanos);
        if total >= LIMIT_NANOS {
            return Err(syntax());
        }
        rest = after_unit;
    }
    if negative && total > 0 {
        return Err(DurationError::Negative(cut(text)));
    }
    let nanos = u64::try_from(total).map_err(|_| syntax())?;
    Ok(Duration::from_nanos(nanos))
}

/// Error texts quote at most 80 bytes of the input.
fn cut(text: &str) -> String {
    let mut end = text.len().min(80);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
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
    out.push_str(&decimal(secs * 1_000_000_000 + frac, 1_000_000_000));
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
        assert_eq!(parse("250µs"), Ok(Duration::from_micros(250)));
        assert_eq!(parse("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse(".5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("1.123456789123456789s"), Ok(Duration::from_nanos(1_123_456_789)));
    }

    #[test]
    fn hostile_input_is_refused_not_fatal() {
        for text in ["1aµ", "1µµs", "1.s.", ".s", "5 m", "1d", "--1s", "1mss", "µ", "1.", "s"] {
            assert!(parse(text).is_err(), "{text:?}");
        }
        assert!(parse(&"3000000000000000000ns".repeat(4)).is_err());
        assert!(parse(&format!("1.{}s", "1".repeat(10_000))).is_ok());
        assert!(parse(&"9".repeat(100)).is_err());
    }

    #[test]
    fn format_then_parse_round_trips() {
        for ms in [1u64, 999, 1000, 1001, 59_999, 60_000, 3_599_999, 3_600_000, 86_400_123] {
            let d = Duration::from_millis(ms);
            assert_eq!(parse(&format(d)), Ok(d), "{ms} ms");
        }
    }
}
