//! The error catalogue of PROTOCOL.md §3.11: every code, whether it is recoverable, and the exact
//! text of every error frame chatbox emits.
//!
//! [`ErrorCode`] is the closed list of codes; [`ErrorInfo`] is the `error` object of an error
//! frame, built only through the named constructors below so that each text exists once. The
//! fatal rule (§3.11): an error with `recoverable:false` closes the bound connection ~100 ms after
//! it is queued — see [`ErrorInfo::is_fatal`].

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Every code of the §3.11 catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorCode {
    /// `INVALID_FORMAT` — unparsable or invalid frame, unknown model, bad file URL.
    InvalidFormat,
    /// `MISSING_FIELD` — a handler needed a field the frame lacks.
    MissingField,
    /// `NOT_FOUND` — the session is not known.
    NotFound,
    /// `UNAUTHORIZED` — the session belongs to someone else (recoverable as emitted).
    Unauthorized,
    /// `LLM_UNAVAILABLE` — the provider failed before streaming.
    LlmUnavailable,
    /// `LLM_TIMEOUT` — the reply's overall deadline passed.
    LlmTimeout,
    /// `DATABASE_ERROR` — session creation failed.
    DatabaseError,
    /// `SERVICE_ERROR` — busy, binding refused, or an unexpected failure.
    ServiceError,
    /// `TOO_MANY_REQUESTS` — the message rate limit refused the frame (carries `retry_after`).
    TooManyRequests,
    /// `CONNECTION_LIMIT_EXCEEDED` — defined; on the wire only as the handshake 429 text.
    ConnectionLimitExceeded,
    /// `INVALID_TOKEN` — auth category, not recoverable (fatal if emitted).
    InvalidToken,
    /// `EXPIRED_TOKEN` — auth category, not recoverable (fatal if emitted).
    ExpiredToken,
    /// `INSUFFICIENT_PERMISSIONS` — auth category, not recoverable (fatal if emitted).
    InsufficientPermissions,
    /// `INVALID_FILE_TYPE` — an upload's type is refused.
    InvalidFileType,
    /// `INVALID_FILE_SIZE` — an upload is too large.
    InvalidFileSize,
    /// `STORAGE_ERROR` — file storage failed.
    StorageError,
    /// `RESUME_UNAVAILABLE` — a `resume` names a reply that is unknown, expired, or whose
    /// instance died (issue 14); the client reloads the session over REST.
    ResumeUnavailable,
}

impl ErrorCode {
    /// Every code, in catalogue order.
    pub const ALL: [ErrorCode; 17] = [
        ErrorCode::InvalidFormat,
        ErrorCode::MissingField,
        ErrorCode::NotFound,
        ErrorCode::Unauthorized,
        ErrorCode::LlmUnavailable,
        ErrorCode::LlmTimeout,
        ErrorCode::DatabaseError,
        ErrorCode::ServiceError,
        ErrorCode::TooManyRequests,
        ErrorCode::ConnectionLimitExceeded,
        ErrorCode::InvalidToken,
        ErrorCode::ExpiredToken,
        ErrorCode::InsufficientPermissions,
        ErrorCode::InvalidFileType,
        ErrorCode::InvalidFileSize,
        ErrorCode::StorageError,
        ErrorCode::ResumeUnavailable,
    ];

    /// The code as written on the wire (`"INVALID_FORMAT"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::InvalidFormat => "INVALID_FORMAT",
            ErrorCode::MissingField => "MISSING_FIELD",
            ErrorCode::NotFound => "NOT_FOUND",
            ErrorCode::Unauthorized => "UNAUTHORIZED",
            ErrorCode::LlmUnavailable => "LLM_UNAVAILABLE",
            ErrorCode::LlmTimeout => "LLM_TIMEOUT",
            ErrorCode::DatabaseError => "DATABASE_ERROR",
            ErrorCode::ServiceError => "SERVICE_ERROR",
            ErrorCode::TooManyRequests => "TOO_MANY_REQUESTS",
            ErrorCode::ConnectionLimitExceeded => "CONNECTION_LIMIT_EXCEEDED",
            ErrorCode::InvalidToken => "INVALID_TOKEN",
            ErrorCode::ExpiredToken => "EXPIRED_TOKEN",
            ErrorCode::InsufficientPermissions => "INSUFFICIENT_PERMISSIONS",
            ErrorCode::InvalidFileType => "INVALID_FILE_TYPE",
            ErrorCode::InvalidFileSize => "INVALID_FILE_SIZE",
            ErrorCode::StorageError => "STORAGE_ERROR",
            ErrorCode::ResumeUnavailable => "RESUME_UNAVAILABLE",
        }
    }

    /// The catalogue's `recoverable` flag. Only the auth codes `INVALID_TOKEN`, `EXPIRED_TOKEN`
    /// and `INSUFFICIENT_PERMISSIONS` are not recoverable; `UNAUTHORIZED` is, as the original
    /// emits it.
    pub const fn recoverable(self) -> bool {
        !matches!(
            self,
            ErrorCode::InvalidToken | ErrorCode::ExpiredToken | ErrorCode::InsufficientPermissions
        )
    }

    /// The code's fixed text, or for a templated text its untemplated stem (`Required field
    /// missing`). Prefer the [`ErrorInfo`] constructors, which produce the exact emitted texts.
    pub const fn default_message(self) -> &'static str {
        match self {
            ErrorCode::InvalidFormat => "Invalid message format",
            ErrorCode::MissingField => "Required field missing",
            ErrorCode::NotFound => "Session not found",
            ErrorCode::Unauthorized => "You do not have permission to access this session",
            ErrorCode::LlmUnavailable => "AI service is temporarily unavailable",
            ErrorCode::LlmTimeout => "AI service request timed out",
            ErrorCode::DatabaseError => "Database operation failed",
            ErrorCode::ServiceError => "Service temporarily unavailable",
            ErrorCode::TooManyRequests => "Too many requests, please slow down",
            ErrorCode::ConnectionLimitExceeded => {
                "Connection limit exceeded, please try again later"
            }
            ErrorCode::InvalidToken => "Invalid authentication token",
            ErrorCode::ExpiredToken => "Authentication token has expired",
            ErrorCode::InsufficientPermissions => "Insufficient permissions for this operation",
            ErrorCode::InvalidFileType => "Invalid file type",
            ErrorCode::InvalidFileSize => "File size exceeds maximum",
            ErrorCode::StorageError => "File storage operation failed",
            ErrorCode::ResumeUnavailable => "This reply can no longer be resumed",
        }
    }

    /// The code for its wire text, or `None` for a text outside the catalogue.
    pub fn from_wire(text: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == text)
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for ErrorCode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for ErrorCode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        ErrorCode::from_wire(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown error code {text:?}")))
    }
}

/// The `error` object of an error frame: `{"code","message","recoverable","retry_after"?}`.
///
/// `retry_after` is in milliseconds and is omitted on the wire when `None` or `0`.
/// Build it with the named constructors; the fields are public for matching and for tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// The catalogue code.
    pub code: ErrorCode,
    /// The human text (exact texts are in the constructors).
    pub message: String,
    /// Whether the client may continue; `false` makes the error fatal (§3.11).
    pub recoverable: bool,
    /// Milliseconds until a retry may succeed (`TOO_MANY_REQUESTS` only).
    #[serde(default, skip_serializing_if = "retry_after_is_absent")]
    pub retry_after: Option<u64>,
}

/// `None` and `Some(0)` are both written as an absent key.
fn retry_after_is_absent(v: &Option<u64>) -> bool {
    matches!(v, None | Some(0))
}

impl ErrorInfo {
    /// An error with `code`, `message`, the code's catalogue `recoverable` flag and no
    /// `retry_after`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorInfo {
            code,
            message: message.into(),
            recoverable: code.recoverable(),
            retry_after: None,
        }
    }

    /// The fatal rule of §3.11: a non-recoverable error closes the bound connection ~100 ms after
    /// the frame is queued.
    pub fn is_fatal(&self) -> bool {
        !self.recoverable
    }

    /// `retry_after` as written on the wire: `None` when absent or zero.
    pub fn retry_after_ms(&self) -> Option<u64> {
        self.retry_after.filter(|&ms| ms != 0)
    }

    /// `INVALID_FORMAT` / `Invalid message format` — the frame did not parse (§3.5 step 1).
    pub fn invalid_format() -> Self {
        Self::new(ErrorCode::InvalidFormat, "Invalid message format")
    }

    /// `INVALID_FORMAT` / `Message validation failed` — the frame broke a §3.6 rule.
    pub fn validation_failed() -> Self {
        Self::new(ErrorCode::InvalidFormat, "Message validation failed")
    }

    /// `INVALID_FORMAT` / `Invalid message format: unknown message type <t>` — a valid type with
    /// no handler (§3.8 "Every other valid type").
    pub fn unknown_type(frame_type: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::InvalidFormat,
            format!("Invalid message format: unknown message type {frame_type}"),
        )
    }

    /// `INVALID_FORMAT` / `Invalid model ID: <id>` — `model_select` named no configured provider.
    pub fn invalid_model(model_id: impl fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidFormat, format!("Invalid model ID: {model_id}"))
    }

    /// `INVALID_FORMAT` / `Invalid file URL` — see [`crate::protocol::file_url`].
    pub fn invalid_file_url() -> Self {
        Self::new(ErrorCode::InvalidFormat, "Invalid file URL")
    }

    /// `MISSING_FIELD` / `Required field missing: <field>`.
    pub fn missing_field(field: impl fmt::Display) -> Self {
        Self::new(ErrorCode::MissingField, format!("Required field missing: {field}"))
    }

    /// `NOT_FOUND` / `Session not found`.
    pub fn session_not_found() -> Self {
        Self::new(ErrorCode::NotFound, "Session not found")
    }

    /// `UNAUTHORIZED` / `You do not have permission to access this session` (recoverable).
    pub fn unauthorized_session() -> Self {
        Self::new(ErrorCode::Unauthorized, "You do not have permission to access this session")
    }

    /// `LLM_UNAVAILABLE` / `AI service is temporarily unavailable`.
    pub fn llm_unavailable() -> Self {
        Self::new(ErrorCode::LlmUnavailable, "AI service is temporarily unavailable")
    }

    /// `LLM_TIMEOUT` / `AI service request timed out after <d>`, `<d>` in Go duration text
    /// (`2m0s` for the default 120 s).
    pub fn llm_timeout(timeout: Duration) -> Self {
        Self::new(
            ErrorCode::LlmTimeout,
            format!("AI service request timed out after {}", crate::godur::format(timeout)),
        )
    }

    /// `DATABASE_ERROR` / `Database operation failed`.
    pub fn database_error() -> Self {
        Self::new(ErrorCode::DatabaseError, "Database operation failed")
    }

    /// `SERVICE_ERROR` / `Server busy — please retry` (em dash) — a 4th message in flight (§3.2).
    pub fn server_busy() -> Self {
        Self::new(ErrorCode::ServiceError, "Server busy \u{2014} please retry")
    }

    /// `RESUME_UNAVAILABLE` / `This reply can no longer be resumed` (recoverable, issue 14).
    pub fn resume_unavailable() -> Self {
        Self::new(ErrorCode::ResumeUnavailable, ErrorCode::ResumeUnavailable.default_message())
    }

    /// `SERVICE_ERROR` / `Failed to establish session connection` — binding refused (§3.7).
    pub fn bind_failed() -> Self {
        Self::new(ErrorCode::ServiceError, "Failed to establish session connection")
    }

    /// `SERVICE_ERROR` / `Service temporarily unavailable`.
    pub fn service_unavailable() -> Self {
        Self::new(ErrorCode::ServiceError, "Service temporarily unavailable")
    }

    /// `SERVICE_ERROR` / `An unexpected error occurred`.
    pub fn unexpected() -> Self {
        Self::new(ErrorCode::ServiceError, "An unexpected error occurred")
    }

    /// `TOO_MANY_REQUESTS` / `Too many requests, please slow down`, with `retry_after` in
    /// milliseconds rounded up (at least 1, so the key is never omitted).
    pub fn too_many_requests(retry_after: Duration) -> Self {
        ErrorInfo {
            retry_after: Some(duration_ms_ceil(retry_after)),
            ..Self::new(ErrorCode::TooManyRequests, "Too many requests, please slow down")
        }
    }

    /// `CONNECTION_LIMIT_EXCEEDED` / `Connection limit exceeded, please try again later`.
    pub fn connection_limit_exceeded() -> Self {
        Self::new(
            ErrorCode::ConnectionLimitExceeded,
            "Connection limit exceeded, please try again later",
        )
    }

    /// `INVALID_TOKEN` / `Invalid authentication token` (not recoverable: fatal).
    pub fn invalid_token() -> Self {
        Self::new(ErrorCode::InvalidToken, "Invalid authentication token")
    }

    /// `EXPIRED_TOKEN` / `Authentication token has expired` (not recoverable: fatal).
    pub fn expired_token() -> Self {
        Self::new(ErrorCode::ExpiredToken, "Authentication token has expired")
    }

    /// `INSUFFICIENT_PERMISSIONS` / `Insufficient permissions for this operation` (fatal).
    pub fn insufficient_permissions() -> Self {
        Self::new(ErrorCode::InsufficientPermissions, "Insufficient permissions for this operation")
    }

    /// `INVALID_FILE_TYPE` / `Invalid file type: <type>`.
    pub fn invalid_file_type(file_type: impl fmt::Display) -> Self {
        Self::new(ErrorCode::InvalidFileType, format!("Invalid file type: {file_type}"))
    }

    /// `INVALID_FILE_SIZE` / `File size <n> bytes exceeds maximum <max> bytes`.
    pub fn invalid_file_size(size: u64, max: u64) -> Self {
        Self::new(
            ErrorCode::InvalidFileSize,
            format!("File size {size} bytes exceeds maximum {max} bytes"),
        )
    }

    /// `STORAGE_ERROR` / `File storage operation failed`.
    pub fn storage_error() -> Self {
        Self::new(ErrorCode::StorageError, "File storage operation failed")
    }
}

/// Whole milliseconds, rounded up, at least 1, saturating at `u64::MAX`.
pub(crate) fn duration_ms_ceil(d: Duration) -> u64 {
    let ms = d.as_nanos().div_ceil(1_000_000).max(1);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(e: &ErrorInfo) -> String {
        serde_json::to_string(e).unwrap_or_default()
    }

    #[test]
    fn codes_round_trip_their_wire_text() {
        for code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_wire(code.as_str()), Some(code));
            assert_eq!(code.to_string(), code.as_str());
            let quoted = format!("\"{}\"", code.as_str());
            assert_eq!(serde_json::to_string(&code).unwrap_or_default(), quoted);
            assert_eq!(serde_json::from_str::<ErrorCode>(&quoted).ok(), Some(code));
        }
        assert_eq!(ErrorCode::from_wire("invalid_format"), None);
    }

    #[test]
    fn only_token_and_permission_codes_are_fatal() {
        let fatal: Vec<_> = ErrorCode::ALL.into_iter().filter(|c| !c.recoverable()).collect();
        assert_eq!(
            fatal,
            [ErrorCode::InvalidToken, ErrorCode::ExpiredToken, ErrorCode::InsufficientPermissions]
        );
        assert!(ErrorInfo::invalid_token().is_fatal());
        assert!(ErrorInfo::expired_token().is_fatal());
        assert!(ErrorInfo::insufficient_permissions().is_fatal());
        assert!(!ErrorInfo::unauthorized_session().is_fatal());
    }

    #[test]
    fn every_emitted_text_is_exact() {
        let cases: Vec<(ErrorInfo, &str, &str, bool)> = vec![
            (ErrorInfo::invalid_format(), "INVALID_FORMAT", "Invalid message format", true),
            (ErrorInfo::validation_failed(), "INVALID_FORMAT", "Message validation failed", true),
            (
                ErrorInfo::unknown_type("admin_join"),
                "INVALID_FORMAT",
                "Invalid message format: unknown message type admin_join",
                true,
            ),
            (ErrorInfo::invalid_model("gpt-5"), "INVALID_FORMAT", "Invalid model ID: gpt-5", true),
            (ErrorInfo::invalid_file_url(), "INVALID_FORMAT", "Invalid file URL", true),
            (
                ErrorInfo::missing_field("session_id"),
                "MISSING_FIELD",
                "Required field missing: session_id",
                true,
            ),
            (ErrorInfo::session_not_found(), "NOT_FOUND", "Session not found", true),
            (
                ErrorInfo::unauthorized_session(),
                "UNAUTHORIZED",
                "You do not have permission to access this session",
                true,
            ),
            (
                ErrorInfo::llm_unavailable(),
                "LLM_UNAVAILABLE",
                "AI service is temporarily unavailable",
                true,
            ),
            (
                ErrorInfo::llm_timeout(Duration::from_secs(120)),
                "LLM_TIMEOUT",
                "AI service request timed out after 2m0s",
                true,
            ),
            (ErrorInfo::database_error(), "DATABASE_ERROR", "Database operation failed", true),
            (ErrorInfo::server_busy(), "SERVICE_ERROR", "Server busy \u{2014} please retry", true),
            (
                ErrorInfo::bind_failed(),
                "SERVICE_ERROR",
                "Failed to establish session connection",
                true,
            ),
            (
                ErrorInfo::service_unavailable(),
                "SERVICE_ERROR",
                "Service temporarily unavailable",
                true,
            ),
            (ErrorInfo::unexpected(), "SERVICE_ERROR", "An unexpected error occurred", true),
            (
                ErrorInfo::resume_unavailable(),
                "RESUME_UNAVAILABLE",
                "This reply can no longer be resumed",
                true,
            ),
            (
                ErrorInfo::connection_limit_exceeded(),
                "CONNECTION_LIMIT_EXCEEDED",
                "Connection limit exceeded, please try again later",
                true,
            ),
            (ErrorInfo::invalid_token(), "INVALID_TOKEN", "Invalid authentication token", false),
            (
                ErrorInfo::expired_token(),
                "EXPIRED_TOKEN",
                "Authentication token has expired",
                false,
            ),
            (
                ErrorInfo::insufficient_permissions(),
                "INSUFFICIENT_PERMISSIONS",
                "Insufficient permissions for this operation",
                false,
            ),
            (
                ErrorInfo::invalid_file_type("application/x-msdownload"),
                "INVALID_FILE_TYPE",
                "Invalid file type: application/x-msdownload",
                true,
            ),
            (
                ErrorInfo::invalid_file_size(200, 100),
                "INVALID_FILE_SIZE",
                "File size 200 bytes exceeds maximum 100 bytes",
                true,
            ),
            (ErrorInfo::storage_error(), "STORAGE_ERROR", "File storage operation failed", true),
        ];
        for (info, code, message, recoverable) in cases {
            assert_eq!(info.code.as_str(), code, "{message}");
            assert_eq!(info.message, message);
            assert_eq!(info.recoverable, recoverable, "{message}");
            assert_eq!(info.retry_after, None);
        }
    }

    #[test]
    fn server_busy_uses_an_em_dash() {
        assert!(ErrorInfo::server_busy().message.contains('\u{2014}'));
        assert_eq!(
            json(&ErrorInfo::server_busy()),
            "{\"code\":\"SERVICE_ERROR\",\"message\":\"Server busy \u{2014} please retry\",\"recoverable\":true}"
        );
    }

    #[test]
    fn too_many_requests_rounds_retry_after_up_in_ms() {
        let e = ErrorInfo::too_many_requests(Duration::from_micros(41_233_001));
        assert_eq!(e.retry_after, Some(41_234));
        assert_eq!(
            json(&e),
            r#"{"code":"TOO_MANY_REQUESTS","message":"Too many requests, please slow down","recoverable":true,"retry_after":41234}"#
        );
        assert_eq!(ErrorInfo::too_many_requests(Duration::ZERO).retry_after, Some(1));
        assert_eq!(ErrorInfo::too_many_requests(Duration::from_nanos(1)).retry_after, Some(1));
        assert_eq!(ErrorInfo::too_many_requests(Duration::from_millis(5)).retry_after, Some(5));
        assert_eq!(ErrorInfo::too_many_requests(Duration::MAX).retry_after, Some(u64::MAX));
    }

    #[test]
    fn retry_after_zero_or_none_is_omitted() {
        let mut e = ErrorInfo::llm_unavailable();
        assert!(!json(&e).contains("retry_after"));
        e.retry_after = Some(0);
        assert!(!json(&e).contains("retry_after"));
        assert_eq!(e.retry_after_ms(), None);
    }

    #[test]
    fn llm_timeout_uses_go_duration_text() {
        assert_eq!(
            ErrorInfo::llm_timeout(Duration::from_secs(90)).message,
            "AI service request timed out after 1m30s"
        );
        assert_eq!(
            ErrorInfo::llm_timeout(Duration::from_millis(1500)).message,
            "AI service request timed out after 1.5s"
        );
    }

    #[test]
    fn default_messages_match_fixed_texts() {
        assert_eq!(ErrorCode::InvalidFormat.default_message(), ErrorInfo::invalid_format().message);
        assert_eq!(ErrorCode::NotFound.default_message(), ErrorInfo::session_not_found().message);
        assert_eq!(ErrorCode::StorageError.default_message(), ErrorInfo::storage_error().message);
        for code in ErrorCode::ALL {
            assert!(!code.default_message().is_empty());
        }
    }
}
