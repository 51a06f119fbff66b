//! Pure parsers for the query strings of `GET {P}/admin/sessions` (PROTOCOL.md §4.6, with the
//! aliases of §10 item 7) and `GET {P}/admin/metrics` (§4.7).
//!
//! Input is the decoded query as `(name, value)` pairs in order. As with the original's
//! framework, the first occurrence of a name counts and an empty value is the same as an absent
//! one. Each error's `Display` is the exact 400 text; `to_error_body()` maps it once.

use chrono::{DateTime, FixedOffset, TimeDelta, Utc};

use super::http::{ErrorBody, TimeRange};
use super::timestamp::parse_rfc3339;

/// The 400 text for an unparsable time parameter.
pub const INVALID_TIME_TEXT: &str = "Invalid time format, expected RFC3339";

/// The first value of `name`; `None` when absent or empty.
fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
}

fn parse_time(value: &str, param: &'static str) -> Result<DateTime<FixedOffset>, &'static str> {
    parse_rfc3339(value).map_err(|_| param)
}

/// `status` filter of §4.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StatusFilter {
    /// `active`: no end time.
    Active,
    /// `ended`: has an end time.
    Ended,
}

/// `sort_by` of §4.6.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SortField {
    /// `start_time` (default).
    #[default]
    StartTime,
    /// `end_time`.
    EndTime,
    /// `message_count`.
    MessageCount,
    /// `total_tokens`.
    TotalTokens,
    /// `user_id`.
    UserId,
}

impl SortField {
    /// Every field, in the order of the error text.
    pub const ALL: [SortField; 5] = [
        SortField::StartTime,
        SortField::EndTime,
        SortField::MessageCount,
        SortField::TotalTokens,
        SortField::UserId,
    ];

    /// The parameter value (`start_time`).
    pub const fn as_str(self) -> &'static str {
        match self {
            SortField::StartTime => "start_time",
            SortField::EndTime => "end_time",
            SortField::MessageCount => "message_count",
            SortField::TotalTokens => "total_tokens",
            SortField::UserId => "user_id",
        }
    }
}

/// `sort_order` of §4.6.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum SortOrder {
    /// `asc`.
    Asc,
    /// `desc` (default).
    #[default]
    Desc,
}

/// Why `GET {P}/admin/sessions` answers 400. `Display` is the exact response text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminQueryError {
    /// `user_id` longer than 255 bytes.
    #[error("user_id exceeds maximum length of 255 characters")]
    UserIdTooLong {
        /// Its length in bytes.
        bytes: usize,
    },
    /// A time parameter is not RFC 3339.
    #[error("Invalid time format, expected RFC3339")]
    InvalidTime {
        /// Which parameter (`start_time_from`, `start_time`, …).
        param: &'static str,
    },
    /// `sort_by` is not one of the allowed fields.
    #[error("invalid sort_by field \"{0}\"; allowed: start_time, end_time, message_count, total_tokens, user_id")]
    InvalidSortBy(String),
    /// `sort_order` is not `asc` or `desc`.
    #[error("invalid sort_order \"{0}\"; allowed: asc, desc")]
    InvalidSortOrder(String),
    /// `help_requested` is not `true` or `false`.
    #[error("invalid help_requested \"{0}\"; allowed: true, false")]
    InvalidHelpRequested(String),
}

impl AdminQueryError {
    /// The 400 body.
    pub fn to_error_body(&self) -> ErrorBody {
        ErrorBody::bad_request(self.to_string())
    }
}

/// The parsed query of `GET {P}/admin/sessions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminSessionQuery {
    /// Exact owner match.
    pub user_id: Option<String>,
    /// `active`/`ended`; other values are ignored (`None`).
    pub status: Option<StatusFilter>,
    /// `Some(true)` for `true`, `Some(false)` for any other non-empty value.
    pub admin_assisted: Option<bool>,
    /// `help_requested=true|false` (issue 15); any other value is refused.
    pub help_requested: Option<bool>,
    /// Inclusive lower bound on the start time (`start_time_from`, alias `start_time`).
    pub start_time_from: Option<DateTime<Utc>>,
    /// Inclusive upper bound on the start time (`start_time_to`, alias `end_time`).
    pub start_time_to: Option<DateTime<Utc>>,
    /// Sort key.
    pub sort_by: SortField,
    /// Sort direction.
    pub sort_order: SortOrder,
    /// Page size, 1..=1000 (default 100).
    pub limit: u32,
    /// Rows skipped (default 0).
    pub offset: u64,
}

impl Default for AdminSessionQuery {
    fn default() -> Self {
        AdminSessionQuery {
            user_id: None,
            status: None,
            admin_assisted: None,
            help_requested: None,
            start_time_from: None,
            start_time_to: None,
            sort_by: SortField::StartTime,
            sort_order: SortOrder::Desc,
            limit: Self::DEFAULT_LIMIT,
            offset: 0,
        }
    }
}

impl AdminSessionQuery {
    /// `limit` when absent or out of range.
    pub const DEFAULT_LIMIT: u32 = 100;
    /// Largest accepted `limit`.
    pub const MAX_LIMIT: u32 = 1000;
    /// Longest accepted `user_id`, bytes.
    pub const MAX_USER_ID_BYTES: usize = 255;

    /// Parses per §4.6; the checks run in the table's order, the first failure is returned.
    /// `start_time`/`end_time` are aliases of `start_time_from`/`start_time_to`; when both names
    /// are given the explicit one is used and the alias is not looked at.
    pub fn parse(params: &[(String, String)]) -> Result<Self, AdminQueryError> {
        let mut q = AdminSessionQuery::default();
        if let Some(user_id) = param(params, "user_id") {
            if user_id.len() > Self::MAX_USER_ID_BYTES {
                return Err(AdminQueryError::UserIdTooLong { bytes: user_id.len() });
            }
            q.user_id = Some(user_id.to_string());
        }
        q.status = match param(params, "status") {
            Some("active") => Some(StatusFilter::Active),
            Some("ended") => Some(StatusFilter::Ended),
            _ => None,
        };
        q.admin_assisted = param(params, "admin_assisted").map(|v| v == "true");
        q.help_requested = match param(params, "help_requested") {
            None => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(v) => return Err(AdminQueryError::InvalidHelpRequested(v.to_string())),
        };
        q.start_time_from = Self::bound(params, "start_time_from", "start_time")?;
        q.start_time_to = Self::bound(params, "start_time_to", "end_time")?;
        if let Some(v) = param(params, "sort_by") {
            q.sort_by = SortField::ALL
                .into_iter()
                .find(|f| f.as_str() == v)
                .ok_or_else(|| AdminQueryError::InvalidSortBy(v.to_string()))?;
        }
        q.sort_order = match param(params, "sort_order") {
            None | Some("desc") => SortOrder::Desc,
            Some("asc") => SortOrder::Asc,
            Some(v) => return Err(AdminQueryError::InvalidSortOrder(v.to_string())),
        };
        q.limit = param(params, "limit")
            .and_then(|v| v.parse::<i64>().ok())
            .filter(|&n| n > 0 && n <= i64::from(Self::MAX_LIMIT))
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(Self::DEFAULT_LIMIT);
        q.offset = param(params, "offset")
            .and_then(|v| v.parse::<i64>().ok())
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(0);
        Ok(q)
    }

    fn bound(
        params: &[(String, String)],
        name: &'static str,
        alias: &'static str,
    ) -> Result<Option<DateTime<Utc>>, AdminQueryError> {
        let found = param(params, name)
            .map(|v| (v, name))
            .or_else(|| param(params, alias).map(|v| (v, alias)));
        found
            .map(|(v, which)| {
                parse_time(v, which)
                    .map(|t| t.with_timezone(&Utc))
                    .map_err(|param| AdminQueryError::InvalidTime { param })
            })
            .transpose()
    }
}

/// Why `GET {P}/admin/metrics` is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MetricsQueryError {
    /// A time parameter is not RFC 3339 → 400 [`INVALID_TIME_TEXT`].
    #[error("Invalid time format, expected RFC3339")]
    InvalidTime {
        /// `start_time` or `end_time`.
        param: &'static str,
    },
    /// `end_time` is before `start_time` → 500 (as the original answers).
    #[error("end time {end} is before start time {start}")]
    EndBeforeStart {
        /// The window start.
        start: DateTime<FixedOffset>,
        /// The window end.
        end: DateTime<FixedOffset>,
    },
}

impl MetricsQueryError {
    /// The body: 400 for a bad time, 500 `An internal error occurred` for an inverted window.
    pub fn to_error_body(&self) -> ErrorBody {
        match self {
            MetricsQueryError::InvalidTime { .. } => ErrorBody::bad_request(INVALID_TIME_TEXT),
            MetricsQueryError::EndBeforeStart { .. } => ErrorBody::internal(),
        }
    }
}

/// The parsed window of `GET {P}/admin/metrics`, offsets kept for the `time_range` echo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricsQuery {
    /// Window start (inclusive); default `now − 24 h`.
    pub start: DateTime<FixedOffset>,
    /// Window end (inclusive); default `now`.
    pub end: DateTime<FixedOffset>,
}

impl MetricsQuery {
    /// The default window length.
    pub const DEFAULT_WINDOW: TimeDelta = TimeDelta::hours(24);

    /// Parses `start_time`/`end_time` per §4.7 with `now` for the defaults.
    pub fn parse(
        params: &[(String, String)],
        now: DateTime<Utc>,
    ) -> Result<Self, MetricsQueryError> {
        let start = match param(params, "start_time") {
            Some(v) => parse_time(v, "start_time")
                .map_err(|param| MetricsQueryError::InvalidTime { param })?,
            None => now
                .checked_sub_signed(Self::DEFAULT_WINDOW)
                .unwrap_or(DateTime::<Utc>::MIN_UTC)
                .fixed_offset(),
        };
        let end = match param(params, "end_time") {
            Some(v) => parse_time(v, "end_time")
                .map_err(|param| MetricsQueryError::InvalidTime { param })?,
            None => now.fixed_offset(),
        };
        if end < start {
            return Err(MetricsQueryError::EndBeforeStart { start, end });
        }
        Ok(MetricsQuery { start, end })
    }

    /// The window start in UTC.
    pub fn start_utc(&self) -> DateTime<Utc> {
        self.start.with_timezone(&Utc)
    }

    /// The window end in UTC.
    pub fn end_utc(&self) -> DateTime<Utc> {
        self.end.with_timezone(&Utc)
    }

    /// The `time_range` object of the response.
    pub fn time_range(&self) -> TimeRange {
        TimeRange { start: self.start, end: self.end }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn q(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn admin(pairs: &[(&str, &str)]) -> Result<AdminSessionQuery, AdminQueryError> {
        AdminSessionQuery::parse(&q(pairs))
    }

    fn admin_ok(pairs: &[(&str, &str)]) -> AdminSessionQuery {
        admin(pairs).unwrap_or_else(|e| panic!("{pairs:?}: {e}"))
    }

    fn text(pairs: &[(&str, &str)]) -> String {
        match admin(pairs) {
            Err(e) => {
                let body = e.to_error_body();
                assert_eq!(body.status(), 400);
                body.error
            }
            Ok(q) => panic!("{pairs:?}: expected an error, got {q:?}"),
        }
    }

    fn utc(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 21, h, 0, 0).single().unwrap_or_default()
    }

    #[test]
    fn defaults() {
        assert_eq!(admin_ok(&[]), AdminSessionQuery::default());
        let d = AdminSessionQuery::default();
        assert_eq!(
            (d.sort_by, d.sort_order, d.limit, d.offset),
            (SortField::StartTime, SortOrder::Desc, 100, 0)
        );
    }

    #[test]
    fn user_id_limit() {
        assert_eq!(admin_ok(&[("user_id", &"u".repeat(255))]).user_id.map(|u| u.len()), Some(255));
        assert_eq!(
            text(&[("user_id", &"u".repeat(256))]),
            "user_id exceeds maximum length of 255 characters"
        );
        assert_eq!(admin_ok(&[("user_id", "")]).user_id, None);
    }

    #[test]
    fn status_filter() {
        assert_eq!(admin_ok(&[("status", "active")]).status, Some(StatusFilter::Active));
        assert_eq!(admin_ok(&[("status", "ended")]).status, Some(StatusFilter::Ended));
        assert_eq!(admin_ok(&[("status", "Active")]).status, None);
        assert_eq!(admin_ok(&[("status", "all")]).status, None);
    }

    #[test]
    fn help_requested_filter_is_true_or_false() {
        assert_eq!(admin_ok(&[]).help_requested, None);
        assert_eq!(admin_ok(&[("help_requested", "true")]).help_requested, Some(true));
        assert_eq!(admin_ok(&[("help_requested", "false")]).help_requested, Some(false));
        let refused = AdminSessionQuery::parse(&[("help_requested".into(), "yes".into())]);
        assert_eq!(refused, Err(AdminQueryError::InvalidHelpRequested("yes".into())));
    }

    #[test]
    fn admin_assisted_filter() {
        assert_eq!(admin_ok(&[("admin_assisted", "true")]).admin_assisted, Some(true));
        assert_eq!(admin_ok(&[("admin_assisted", "false")]).admin_assisted, Some(false));
        assert_eq!(admin_ok(&[("admin_assisted", "yes")]).admin_assisted, Some(false));
        assert_eq!(admin_ok(&[("admin_assisted", "")]).admin_assisted, None);
    }

    #[test]
    fn time_bounds_and_aliases() {
        let q = admin_ok(&[
            ("start_time_from", "2026-02-21T10:00:00Z"),
            ("start_time_to", "2026-02-21T13:00:00+02:00"),
        ]);
        assert_eq!((q.start_time_from, q.start_time_to), (Some(utc(10)), Some(utc(11))));
        let q = admin_ok(&[
            ("start_time", "2026-02-21T10:00:00Z"),
            ("end_time", "2026-02-21T11:00:00Z"),
        ]);
        assert_eq!((q.start_time_from, q.start_time_to), (Some(utc(10)), Some(utc(11))));
        // The explicit name wins, and the alias is then not even parsed.
        let q = admin_ok(&[
            ("start_time", "garbage"),
            ("start_time_from", "2026-02-21T12:00:00Z"),
            ("end_time", "2026-02-21T05:00:00Z"),
            ("start_time_to", "2026-02-21T13:00:00Z"),
        ]);
        assert_eq!((q.start_time_from, q.start_time_to), (Some(utc(12)), Some(utc(13))));
        for bad in [
            &[("start_time_from", "2026-02-21")][..],
            &[("start_time_to", "tomorrow")][..],
            &[("start_time", "1700000000")][..],
            &[("end_time", "2026-02-21 10:00:00")][..],
        ] {
            assert_eq!(text(bad), "Invalid time format, expected RFC3339");
        }
    }

    #[test]
    fn sort_by_and_order() {
        for f in SortField::ALL {
            assert_eq!(admin_ok(&[("sort_by", f.as_str())]).sort_by, f);
        }
        assert_eq!(
            text(&[("sort_by", "name")]),
            r#"invalid sort_by field "name"; allowed: start_time, end_time, message_count, total_tokens, user_id"#
        );
        assert_eq!(admin_ok(&[("sort_order", "asc")]).sort_order, SortOrder::Asc);
        assert_eq!(admin_ok(&[("sort_order", "desc")]).sort_order, SortOrder::Desc);
        assert_eq!(
            text(&[("sort_order", "DESC")]),
            r#"invalid sort_order "DESC"; allowed: asc, desc"#
        );
    }

    #[test]
    fn limit_and_offset_fall_back_silently() {
        for (v, want) in [
            ("1", 1),
            ("1000", 1000),
            ("0", 100),
            ("-5", 100),
            ("1001", 100),
            ("ten", 100),
            ("99999999999999999999", 100),
            ("+7", 7),
        ] {
            assert_eq!(admin_ok(&[("limit", v)]).limit, want, "limit={v}");
        }
        for (v, want) in [("0", 0), ("250", 250), ("-1", 0), ("x", 0), ("1.5", 0)] {
            assert_eq!(admin_ok(&[("offset", v)]).offset, want, "offset={v}");
        }
    }

    #[test]
    fn first_occurrence_counts() {
        let q = admin_ok(&[("sort_by", "user_id"), ("sort_by", "bogus")]);
        assert_eq!(q.sort_by, SortField::UserId);
    }

    #[test]
    fn checks_run_in_table_order() {
        let err =
            admin(&[("sort_by", "x"), ("start_time_from", "bad"), ("user_id", &"u".repeat(300))]);
        assert!(matches!(err, Err(AdminQueryError::UserIdTooLong { bytes: 300 })));
    }

    #[test]
    fn metrics_defaults_to_the_last_day() {
        let now = utc(10);
        let m = MetricsQuery::parse(&[], now).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(m.end_utc(), now);
        assert_eq!(m.start_utc(), now - TimeDelta::hours(24));
        let body = serde_json::to_string(&m.time_range()).unwrap_or_default();
        assert_eq!(body, r#"{"start":"2026-02-20T10:00:00Z","end":"2026-02-21T10:00:00Z"}"#);
    }

    #[test]
    fn metrics_echoes_caller_offsets() {
        let m = MetricsQuery::parse(
            &q(&[
                ("start_time", "2026-02-20T12:00:00+02:00"),
                ("end_time", "2026-02-21T10:00:00.5Z"),
            ]),
            utc(10),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let body = serde_json::to_string(&m.time_range()).unwrap_or_default();
        assert_eq!(body, r#"{"start":"2026-02-20T12:00:00+02:00","end":"2026-02-21T10:00:00.5Z"}"#);
    }

    #[test]
    fn metrics_errors() {
        let bad = MetricsQuery::parse(&q(&[("start_time", "yesterday")]), utc(10));
        assert_eq!(bad, Err(MetricsQueryError::InvalidTime { param: "start_time" }));
        let body = bad.err().map(|e| e.to_error_body()).unwrap_or_else(ErrorBody::internal);
        assert_eq!((body.status(), body.error.as_str()), (400, INVALID_TIME_TEXT));
        let inverted = MetricsQuery::parse(
            &q(&[("start_time", "2026-02-21T10:00:00Z"), ("end_time", "2026-02-21T09:00:00Z")]),
            utc(10),
        );
        let body = inverted.err().map(|e| e.to_error_body());
        assert_eq!(body, Some(ErrorBody::internal()));
        // An end given alone but earlier than the default start is also inverted.
        let inverted = MetricsQuery::parse(&q(&[("end_time", "2020-01-01T00:00:00Z")]), utc(10));
        assert!(matches!(inverted, Err(MetricsQueryError::EndBeforeStart { .. })));
        // Equal bounds are fine.
        let same = MetricsQuery::parse(
            &q(&[
                ("start_time", "2026-02-21T10:00:00Z"),
                ("end_time", "2026-02-21T12:00:00+02:00"),
            ]),
            utc(10),
        );
        assert!(same.is_ok());
    }
}
