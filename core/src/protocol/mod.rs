//! # protocol — the wire contract as types (PROTOCOL.md §3–§5)
//!
//! Everything a byte on the wire is made of, with no IO and no clock: time comes in as
//! `now: DateTime<Utc>`.
//!
//! - [`frame`] — the WebSocket envelope [`Frame`] and a constructor for every server frame;
//!   [`Frame::to_json`] is the hot-path serialiser.
//! - [`error_code`] — the §3.11 catalogue: [`ErrorCode`] and [`ErrorInfo`] with one constructor
//!   per emitted text; the fatal rule is [`ErrorInfo::is_fatal`].
//! - [`inbound`] — [`parse_client_frame`]: parse → sanitize → defaults → validate (§3.5–§3.6).
//! - [`file_url`] — the `file_url` rule (§3.8): [`check_file_url`], [`is_forbidden_ip`].
//! - [`http`] — HTTP bodies of §4–§5 and the handshake texts.
//! - [`query`] — the admin query parsers of §4.6–§4.7.
//! - [`timestamp`] — frame and HTTP time texts, RFC 3339 parsing.
//!
//! The one mapping from inner errors to what a client sees lives on the error types themselves
//! ([`InboundError::to_error_info`], [`AdminQueryError::to_error_body`],
//! [`MetricsQueryError::to_error_body`]); the server should not write texts of its own.

pub mod error_code;
pub mod file_url;
pub mod frame;
pub mod http;
pub mod inbound;
pub mod query;
pub mod timestamp;

pub use error_code::{ErrorCode, ErrorInfo};
pub use file_url::{check_file_url, is_forbidden_ip, FileUrlError, FileUrlHost};
pub use frame::{Frame, FrameType, ModelInfo, Sender, REPLY_ID_KEY, SEQ_KEY};
pub use http::{retry_after_header_secs, ErrorBody, HttpErrorCode};
pub use inbound::{
    parse_client_frame, ClientErrorInfo, ClientFrame, InboundError, InboundLimits, ResumePoint,
    ValidationError, AFTER_SEQ_KEY,
};
pub use query::{AdminQueryError, AdminSessionQuery, MetricsQuery, MetricsQueryError};
pub use timestamp::{format_frame_time, format_http_time, parse_rfc3339};

/// The longest prefix of `s` that is at most `max_bytes` long and ends on a character boundary
/// (never splits a UTF-8 sequence; §10 item 26).
pub fn cut_to_char_boundary(s: &str, max_bytes: usize) -> &str {
    if s.len() <= max_bytes {
        return s;
    }
    let mut end = max_bytes;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cut_never_splits_a_character() {
        assert_eq!(cut_to_char_boundary("hello", 10), "hello");
        assert_eq!(cut_to_char_boundary("hello", 5), "hello");
        assert_eq!(cut_to_char_boundary("hello", 3), "hel");
        assert_eq!(cut_to_char_boundary("héllo", 2), "h");
        assert_eq!(cut_to_char_boundary("héllo", 3), "hé");
        assert_eq!(cut_to_char_boundary("✓✓", 4), "✓");
        assert_eq!(cut_to_char_boundary("✓", 0), "");
    }
}
