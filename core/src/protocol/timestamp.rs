//! Timestamps as the wire writes and reads them (PROTOCOL.md §1 "Timestamps").
//!
//! WebSocket frames carry RFC 3339 with whole seconds in UTC (`2026-02-21T10:00:00Z`); HTTP bodies
//! carry RFC 3339 with the fraction only when it is non-zero, as Go's `time.Time` JSON encoding
//! does (trailing zeros of the fraction dropped). Clients may send any RFC 3339 text, fractional
//! seconds and offsets included. Formatting is hand-written because frames are serialised on the
//! hot path; years outside 0000–9999 (never produced by a real clock) fall back to chrono.

use chrono::{DateTime, Datelike, FixedOffset, NaiveDateTime, SecondsFormat, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serializer};

/// A timestamp text that is not RFC 3339.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid RFC 3339 timestamp {text:?}: {reason}")]
pub struct TimeParseError {
    /// The refused text, cut to its first 64 bytes for logging.
    pub text: String,
    /// chrono's explanation.
    pub reason: String,
}

/// Frame time: RFC 3339, whole seconds (truncated, like Go), UTC, `Z` (`2026-02-21T10:00:00Z`).
pub fn format_frame_time(t: DateTime<Utc>) -> String {
    let mut out = String::with_capacity(20);
    push_frame_time(&mut out, t);
    out
}

/// HTTP time: RFC 3339 in UTC with `Z`, truncated to milliseconds; the fraction is written only
/// when non-zero and without trailing zeros (`10:05:12.345Z`, `10:05:12.34Z`, `10:00:00Z`), as the
/// original's Go encoder wrote values read back from MongoDB.
pub fn format_http_time(t: DateTime<Utc>) -> String {
    let nanos = (t.nanosecond() % 1_000_000_000) / 1_000_000 * 1_000_000;
    let mut out = String::with_capacity(24);
    push_go_time(&mut out, t.naive_utc(), nanos, 0);
    out
}

/// Go's `time.RFC3339Nano` text of a time with its own offset: fraction to the nanosecond without
/// trailing zeros, `Z` for a zero offset, else `±hh:mm`. Used where the original echoes a
/// caller's time (`time_range` of PROTOCOL.md §4.7).
pub fn format_http_time_offset(t: DateTime<FixedOffset>) -> String {
    let nanos = t.nanosecond() % 1_000_000_000;
    let mut out = String::with_capacity(32);
    push_go_time(&mut out, t.naive_local(), nanos, t.offset().local_minus_utc());
    out
}

/// Parses RFC 3339 (fractional seconds and any offset allowed), keeping the offset.
pub fn parse_rfc3339(text: &str) -> Result<DateTime<FixedOffset>, TimeParseError> {
    DateTime::parse_from_rfc3339(text).map_err(|e| TimeParseError {
        text: crate::protocol::cut_to_char_boundary(text, 64).to_string(),
        reason: e.to_string(),
    })
}

/// Appends [`format_frame_time`]'s text to `out` without an intermediate allocation.
pub(crate) fn push_frame_time(out: &mut String, t: DateTime<Utc>) {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        out.push_str(&t.to_rfc3339_opts(SecondsFormat::Secs, true));
        return;
    }
    push_date_time(out, year.unsigned_abs(), &t.naive_utc());
    out.push('Z');
}

/// `YYYY-MM-DDThh:mm:ss` of `t`, `year` already checked to be 0..=9999.
fn push_date_time(out: &mut String, year: u32, t: &NaiveDateTime) {
    push_digits(out, year, 4);
    out.push('-');
    push_digits(out, t.month(), 2);
    out.push('-');
    push_digits(out, t.day(), 2);
    out.push('T');
    push_digits(out, t.hour(), 2);
    out.push(':');
    push_digits(out, t.minute(), 2);
    out.push(':');
    push_digits(out, t.second(), 2);
}

/// Go's RFC3339Nano layout: local date-time, trimmed fraction, then the offset.
fn push_go_time(out: &mut String, local: NaiveDateTime, nanos: u32, offset_secs: i32) {
    let year = local.year();
    if !(0..=9999).contains(&year) {
        // Not representable in RFC 3339; chrono's text is at least unambiguous.
        let with_offset = FixedOffset::east_opt(offset_secs)
            .and_then(|o| local.and_local_timezone(o).single())
            .map(|t| t.to_rfc3339_opts(SecondsFormat::AutoSi, true));
        out.push_str(&with_offset.unwrap_or_else(|| local.to_string()));
        return;
    }
    push_date_time(out, year.unsigned_abs(), &local);
    if nanos != 0 {
        out.push('.');
        let start = out.len();
        push_digits(out, nanos, 9);
        let kept = out[start..].trim_end_matches('0').len();
        out.truncate(start + kept);
    }
    if offset_secs == 0 {
        out.push('Z');
    } else {
        out.push(if offset_secs < 0 { '-' } else { '+' });
        let abs = offset_secs.unsigned_abs();
        push_digits(out, abs / 3600, 2);
        out.push(':');
        push_digits(out, (abs % 3600) / 60, 2);
    }
}

/// Appends `value` zero-padded to `width` digits (more digits are written if needed).
fn push_digits(out: &mut String, value: u32, width: usize) {
    let mut buf = [b'0'; 10];
    let mut v = value;
    let mut i = buf.len();
    while v > 0 && i > 0 {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
    }
    let start = i.min(buf.len().saturating_sub(width));
    for &b in &buf[start..] {
        out.push(char::from(b));
    }
}

/// serde helpers: frame time (whole seconds) out, any RFC 3339 in.
pub(crate) mod frame_time {
    use super::*;

    /// Serialises with [`format_frame_time`].
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_frame_time(*t))
    }

    /// Deserialises any RFC 3339 text, converted to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
    }
}

/// serde helpers: HTTP time (milliseconds when non-zero) out, any RFC 3339 in.
pub(crate) mod http_time {
    use super::*;

    /// Serialises with [`format_http_time`].
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_http_time(*t))
    }

    /// Deserialises any RFC 3339 text, converted to UTC.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        super::frame_time::deserialize(d)
    }
}

/// serde helpers for an optional HTTP time (`None` is skipped by the field's attributes).
pub(crate) mod http_time_opt {
    use super::*;

    /// Serialises `Some` with [`format_http_time`], `None` as null.
    pub fn serialize<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format_http_time(*t)),
            None => s.serialize_none(),
        }
    }

    /// Deserialises null or any RFC 3339 text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<DateTime<Utc>>, D::Error> {
        let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(d)?;
        text.map(|text| {
            parse_rfc3339(&text).map(|t| t.with_timezone(&Utc)).map_err(serde::de::Error::custom)
        })
        .transpose()
    }
}

/// serde helpers: a time with its own offset, Go RFC3339Nano out, any RFC 3339 in.
pub(crate) mod offset_time {
    use super::*;

    /// Serialises with [`format_http_time_offset`].
    pub fn serialize<S: Serializer>(t: &DateTime<FixedOffset>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_http_time_offset(*t))
    }

    /// Deserialises any RFC 3339 text, keeping its offset.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<FixedOffset>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        parse_rfc3339(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(y: i32, mo: u32, d: u32, h: u32, mi: u32, s: u32, ms: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(y, mo, d, h, mi, s)
            .single()
            .map(|t| t + chrono::Duration::milliseconds(i64::from(ms)))
            .unwrap_or_default()
    }

    #[test]
    fn frame_time_is_whole_seconds_utc() {
        assert_eq!(format_frame_time(utc(2026, 2, 21, 10, 0, 0, 0)), "2026-02-21T10:00:00Z");
        // Truncated, not rounded.
        assert_eq!(format_frame_time(utc(2026, 2, 21, 10, 0, 5, 999)), "2026-02-21T10:00:05Z");
        assert_eq!(format_frame_time(utc(1, 1, 1, 0, 0, 0, 0)), "0001-01-01T00:00:00Z");
        assert_eq!(format_frame_time(DateTime::<Utc>::UNIX_EPOCH), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn frame_time_matches_chrono_for_ordinary_years() {
        let t = utc(2031, 12, 31, 23, 59, 59, 500);
        assert_eq!(format_frame_time(t), t.to_rfc3339_opts(SecondsFormat::Secs, true));
    }

    #[test]
    fn frame_time_out_of_range_years_do_not_panic() {
        let far = DateTime::<Utc>::MAX_UTC;
        assert!(!format_frame_time(far).is_empty());
        assert!(!format_frame_time(DateTime::<Utc>::MIN_UTC).is_empty());
        assert!(!format_http_time(far).is_empty());
    }

    #[test]
    fn http_time_has_millis_only_when_non_zero() {
        assert_eq!(format_http_time(utc(2026, 2, 21, 10, 5, 12, 345)), "2026-02-21T10:05:12.345Z");
        assert_eq!(format_http_time(utc(2026, 2, 21, 10, 5, 12, 340)), "2026-02-21T10:05:12.34Z");
        assert_eq!(format_http_time(utc(2026, 2, 21, 10, 5, 12, 0)), "2026-02-21T10:05:12Z");
        // Sub-millisecond parts are dropped (MongoDB keeps milliseconds).
        let t = utc(2026, 2, 21, 10, 0, 0, 0) + chrono::Duration::microseconds(123_456);
        assert_eq!(format_http_time(t), "2026-02-21T10:00:00.123Z");
        let t = utc(2026, 2, 21, 10, 0, 0, 0) + chrono::Duration::microseconds(999);
        assert_eq!(format_http_time(t), "2026-02-21T10:00:00Z");
    }

    #[test]
    fn offset_time_keeps_the_callers_offset() {
        let t = parse_rfc3339("2026-02-20T10:00:00.120+02:00").unwrap_or_default();
        assert_eq!(format_http_time_offset(t), "2026-02-20T10:00:00.12+02:00");
        let t = parse_rfc3339("2026-02-20T10:00:00-05:30").unwrap_or_default();
        assert_eq!(format_http_time_offset(t), "2026-02-20T10:00:00-05:30");
        let t = parse_rfc3339("2026-02-20T10:00:00.000000001+00:00").unwrap_or_default();
        assert_eq!(format_http_time_offset(t), "2026-02-20T10:00:00.000000001Z");
    }

    #[test]
    fn parses_rfc3339_with_fraction_and_offset() {
        let t = parse_rfc3339("2026-02-21T10:00:00.000Z").map(|t| t.with_timezone(&Utc));
        assert_eq!(t, Ok(utc(2026, 2, 21, 10, 0, 0, 0)));
        let t = parse_rfc3339("2026-02-21T12:00:00.5+02:00").map(|t| t.with_timezone(&Utc));
        assert_eq!(t, Ok(utc(2026, 2, 21, 10, 0, 0, 500)));
        for bad in ["", "2026-02-21", "2026-02-21T10:00:00", "yesterday", "1700000000"] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
    }
}
