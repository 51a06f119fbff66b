//! The HTTP bodies of PROTOCOL.md §4 and §5 (plus the additions of §10), with their exact keys and
//! texts, and the plain-text answers of the WebSocket handshake (§2.3, §3.1).
//!
//! Every body is a serde type; the server serialises it with `serde_json`. Times are written with
//! [`format_http_time`](super::timestamp::format_http_time) (milliseconds when non-zero, `Z`),
//! except the health/readiness `timestamp` (whole seconds) and the metrics `time_range` (the
//! caller's offset echoed). Status codes are plain `u16` because core has no HTTP types.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

use super::error_code::{duration_ms_ceil, ErrorInfo};
use super::timestamp::{frame_time, http_time, http_time_opt, offset_time};

/// Handshake `401` when no token is found or the header is not `Bearer …` (§2.3).
pub const WS_MISSING_TOKEN: &str = "Missing authentication token";
/// Handshake `401` when the token does not validate (§2.3).
pub const WS_AUTH_FAILED: &str = "Authentication failed";
/// Handshake `429` when the user already holds the maximum of connections (§3.1).
pub const WS_CONNECTION_LIMIT: &str = "Connection limit exceeded, please try again later";
/// Handshake `401` when `?token=` is used while disabled by configuration (§10 item 17).
pub const WS_QUERY_TOKEN_DISABLED: &str =
    "JWT via query parameter is disabled. Use the Authorization header instead.";

/// A handshake rejection body as the original wrote it (`text/plain; charset=utf-8`): the text
/// followed by a newline.
pub fn plain_text_body(text: &str) -> String {
    let mut body = String::with_capacity(text.len() + 1);
    body.push_str(text);
    body.push('\n');
    body
}

/// The `code` of a JSON error body, each with its HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HttpErrorCode {
    /// `BAD_REQUEST` — 400.
    BadRequest,
    /// `UNAUTHORIZED` — 401, missing or malformed `Authorization` header.
    Unauthorized,
    /// `INVALID_TOKEN` — 401, the token does not validate.
    InvalidToken,
    /// `FORBIDDEN` — 403.
    Forbidden,
    /// `NOT_FOUND` — 404.
    NotFound,
    /// `INTERNAL_ERROR` — 500.
    InternalError,
    /// `INVALID_FILE_TYPE` — 400, upload refused by type (§10 item 19).
    InvalidFileType,
    /// `INVALID_FILE_SIZE` — 413, upload too large (§10 item 19).
    InvalidFileSize,
    /// `STORAGE_ERROR` — 500, upload could not be stored (§10 item 19).
    StorageError,
}

impl HttpErrorCode {
    /// The code as written (`"BAD_REQUEST"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            HttpErrorCode::BadRequest => "BAD_REQUEST",
            HttpErrorCode::Unauthorized => "UNAUTHORIZED",
            HttpErrorCode::InvalidToken => "INVALID_TOKEN",
            HttpErrorCode::Forbidden => "FORBIDDEN",
            HttpErrorCode::NotFound => "NOT_FOUND",
            HttpErrorCode::InternalError => "INTERNAL_ERROR",
            HttpErrorCode::InvalidFileType => "INVALID_FILE_TYPE",
            HttpErrorCode::InvalidFileSize => "INVALID_FILE_SIZE",
            HttpErrorCode::StorageError => "STORAGE_ERROR",
        }
    }

    /// The HTTP status that goes with the code.
    pub const fn status(self) -> u16 {
        match self {
            HttpErrorCode::BadRequest | HttpErrorCode::InvalidFileType => 400,
            HttpErrorCode::Unauthorized | HttpErrorCode::InvalidToken => 401,
            HttpErrorCode::Forbidden => 403,
            HttpErrorCode::NotFound => 404,
            HttpErrorCode::InvalidFileSize => 413,
            HttpErrorCode::InternalError | HttpErrorCode::StorageError => 500,
        }
    }
}

impl fmt::Display for HttpErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The shared JSON error body of §4: `{"error":"<text>","code":"<CODE>"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// The human text.
    pub error: String,
    /// The code.
    pub code: HttpErrorCode,
}

impl ErrorBody {
    /// A body with any text and code.
    pub fn new(code: HttpErrorCode, error: impl Into<String>) -> Self {
        ErrorBody { error: error.into(), code }
    }

    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// 400 `BAD_REQUEST` with a route-specific text.
    pub fn bad_request(text: impl Into<String>) -> Self {
        Self::new(HttpErrorCode::BadRequest, text)
    }

    /// 401 `Invalid authorization header` / `UNAUTHORIZED` (no or non-`Bearer` header).
    pub fn invalid_auth_header() -> Self {
        Self::new(HttpErrorCode::Unauthorized, "Invalid authorization header")
    }

    /// 401 `Invalid or expired authentication token` / `INVALID_TOKEN`.
    pub fn invalid_token() -> Self {
        Self::new(HttpErrorCode::InvalidToken, "Invalid or expired authentication token")
    }

    /// 403 `Insufficient permissions` / `FORBIDDEN` (admin routes, metrics allow-list).
    pub fn forbidden() -> Self {
        Self::new(HttpErrorCode::Forbidden, "Insufficient permissions")
    }

    /// 404 `NOT_FOUND` with a route-specific text.
    pub fn not_found(text: impl Into<String>) -> Self {
        Self::new(HttpErrorCode::NotFound, text)
    }

    /// 404 `Session not found` / `NOT_FOUND`.
    pub fn session_not_found() -> Self {
        Self::not_found("Session not found")
    }

    /// 404 `Shared session not found` / `NOT_FOUND` (§4.5).
    pub fn shared_not_found() -> Self {
        Self::not_found("Shared session not found")
    }

    /// 500 `An internal error occurred` / `INTERNAL_ERROR`.
    pub fn internal() -> Self {
        Self::new(HttpErrorCode::InternalError, "An internal error occurred")
    }

    /// 400 `session already assisted by another admin: <name> (<id>)` (§4.8).
    pub fn already_assisted(admin_name: impl fmt::Display, admin_id: impl fmt::Display) -> Self {
        Self::bad_request(format!(
            "session already assisted by another admin: {admin_name} ({admin_id})"
        ))
    }

    /// 400 `Invalid file type: <type>` / `INVALID_FILE_TYPE` (upload, §10 item 19).
    pub fn invalid_file_type(file_type: impl fmt::Display) -> Self {
        Self::new(HttpErrorCode::InvalidFileType, ErrorInfo::invalid_file_type(file_type).message)
    }

    /// 413 `File size <n> bytes exceeds maximum <max> bytes` / `INVALID_FILE_SIZE`.
    pub fn invalid_file_size(size: u64, max: u64) -> Self {
        Self::new(HttpErrorCode::InvalidFileSize, ErrorInfo::invalid_file_size(size, max).message)
    }

    /// 500 `File storage operation failed` / `STORAGE_ERROR`.
    pub fn storage_error() -> Self {
        Self::new(HttpErrorCode::StorageError, ErrorInfo::storage_error().message)
    }
}

/// The session summary of §4 (listings), with `session_id` = `id` added (§10 items 5 and 7).
///
/// `end_time`, `assisting_admin_name` and `share_token` are omitted when empty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionSummary {
    /// The session id.
    pub id: String,
    /// The session id again (§10 item 7).
    pub session_id: String,
    /// The owner.
    pub user_id: String,
    /// The session name (may be empty).
    pub name: String,
    /// The last stored message's time, else the start time.
    #[serde(with = "http_time")]
    pub last_activity: DateTime<Utc>,
    /// Number of stored messages.
    pub message_count: u64,
    /// Whether an admin ever assisted (set at the first takeover, never cleared; issue 15).
    pub admin_assisted: bool,
    /// Whether the user asked for help (`helpRequested`, issue 15).
    pub help_requested: bool,
    /// Start time.
    #[serde(with = "http_time")]
    pub start_time: DateTime<Utc>,
    /// End time; omitted while active.
    #[serde(default, with = "http_time_opt", skip_serializing_if = "Option::is_none")]
    pub end_time: Option<DateTime<Utc>>,
    /// No end time stored.
    pub is_active: bool,
    /// Whole seconds: end − start when ended, now − start otherwise (never negative).
    pub duration: i64,
    /// Token total.
    pub total_tokens: i64,
    /// Milliseconds.
    pub max_response_time: i64,
    /// Milliseconds.
    pub avg_response_time: i64,
    /// The assisting admin's name; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assisting_admin_name: String,
    /// The share token; omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub share_token: String,
}

impl SessionSummary {
    /// A summary with the derived fields computed (`session_id`, `last_activity`, `is_active`,
    /// `duration`) and the rest zero/empty; set the others on the returned value.
    pub fn new(
        id: impl Into<String>,
        user_id: impl Into<String>,
        start_time: DateTime<Utc>,
        end_time: Option<DateTime<Utc>>,
        last_message_time: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Self {
        let id = id.into();
        let until = end_time.unwrap_or(now);
        SessionSummary {
            session_id: id.clone(),
            id,
            user_id: user_id.into(),
            name: String::new(),
            last_activity: last_message_time.unwrap_or(start_time),
            message_count: 0,
            admin_assisted: false,
            help_requested: false,
            start_time,
            end_time,
            is_active: end_time.is_none(),
            duration: (until - start_time).num_seconds().max(0),
            total_tokens: 0,
            max_response_time: 0,
            avg_response_time: 0,
            assisting_admin_name: String::new(),
            share_token: String::new(),
        }
    }
}

/// `GET {P}/sessions` (§4.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionList {
    /// Newest start time first; `[]` when none.
    pub sessions: Vec<SessionSummary>,
    /// The caller.
    pub user_id: String,
    /// `sessions.len()`.
    pub count: usize,
    /// The cap (100).
    pub limit: usize,
    /// `count == limit` (more may exist).
    pub truncated: bool,
}

impl SessionList {
    /// The cap of §4.1.
    pub const LIMIT: usize = 100;

    /// The body for `sessions`, computing `count` and `truncated`.
    pub fn new(user_id: impl Into<String>, sessions: Vec<SessionSummary>, limit: usize) -> Self {
        let count = sessions.len();
        SessionList { sessions, user_id: user_id.into(), count, limit, truncated: count >= limit }
    }
}

/// One stored message as shown by §4.2 and §4.5.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageView {
    /// Decrypted content (always present, may be empty).
    pub content: String,
    /// When it was stored.
    #[serde(with = "http_time")]
    pub timestamp: DateTime<Utc>,
    /// The stored sender (`user`, `ai`, `admin`).
    pub sender: String,
    /// Omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_id: String,
    /// Omitted when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_url: String,
    /// Omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// `GET {P}/sessions/:id` (§4.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDetail {
    /// The session id.
    pub session_id: String,
    /// The name (always present).
    pub name: String,
    /// The selected model (always present, may be empty).
    pub model_id: String,
    /// Messages in order.
    pub messages: Vec<MessageView>,
}

/// `GET {P}/admin/sessions/:id` (issue 15): the §4.2 body of any user's session plus who owns
/// it and its state, for the admin console's transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSessionDetail {
    /// The §4.2 fields (`session_id`, `name`, `model_id`, `messages`).
    #[serde(flatten)]
    pub detail: SessionDetail,
    /// The owner.
    pub user_id: String,
    /// No end time stored.
    pub is_active: bool,
    /// Whether the user asked for help.
    pub help_requested: bool,
    /// Whether an admin ever assisted.
    pub admin_assisted: bool,
    /// The admin assisting now; omitted when nobody does.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub assisting_admin_name: String,
}

/// `GET {P}/shared/:token` (§4.5).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SharedSession {
    /// The session id.
    pub session_id: String,
    /// The name.
    pub name: String,
    /// Messages in order.
    pub messages: Vec<MessageView>,
}

/// `POST {P}/sessions/:id/end` → `{"status":"ended"}` (§4.3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndResponse {
    /// Always `ended`.
    pub status: String,
}

impl EndResponse {
    /// `{"status":"ended"}`.
    pub fn ended() -> Self {
        EndResponse { status: "ended".to_string() }
    }
}

/// `DELETE {P}/sessions/:id/share` → `{"status":"revoked"}` (issue 15).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokeResponse {
    /// Always `revoked`.
    pub status: String,
}

impl RevokeResponse {
    /// `{"status":"revoked"}`.
    pub fn revoked() -> Self {
        RevokeResponse { status: "revoked".to_string() }
    }
}

/// `POST {P}/sessions/:id/share` → `{"share_token":…}` (§4.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareResponse {
    /// The 32-character token.
    pub share_token: String,
}

/// `GET {P}/admin/sessions` (§4.6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdminSessionList {
    /// The page.
    pub sessions: Vec<SessionSummary>,
    /// `sessions.len()`.
    pub count: usize,
    /// The effective limit.
    pub limit: u32,
    /// The effective offset.
    pub offset: u64,
}

impl AdminSessionList {
    /// The body for one page, computing `count`.
    pub fn new(sessions: Vec<SessionSummary>, limit: u32, offset: u64) -> Self {
        AdminSessionList { count: sessions.len(), sessions, limit, offset }
    }
}

/// The inner `metrics` object of §4.7, with its capitalised keys.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetricsTotals {
    /// Sessions started in the window.
    #[serde(rename = "TotalSessions")]
    pub total_sessions: i64,
    /// Of those, without end time.
    #[serde(rename = "ActiveSessions")]
    pub active_sessions: i64,
    /// Sum of token totals.
    #[serde(rename = "TotalTokens")]
    pub total_tokens: i64,
    /// Mean of per-session averages, ms, truncated.
    #[serde(rename = "AvgResponseTime")]
    pub avg_response_time: i64,
    /// Max of per-session maxima, ms.
    #[serde(rename = "MaxResponseTime")]
    pub max_response_time: i64,
    /// Sessions an admin assisted.
    #[serde(rename = "AdminAssistedCount")]
    pub admin_assisted_count: i64,
}

/// `time_range` of §4.7: the window, with the caller's offsets when supplied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeRange {
    /// Window start.
    #[serde(with = "offset_time")]
    pub start: DateTime<FixedOffset>,
    /// Window end.
    #[serde(with = "offset_time")]
    pub end: DateTime<FixedOffset>,
}

/// `GET {P}/admin/metrics` (§4.7) with the top-level snake_case additions of §10 item 6.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsResponse {
    /// The original's capitalised object.
    pub metrics: MetricsTotals,
    /// The window.
    pub time_range: TimeRange,
    /// = `metrics.TotalSessions`.
    pub total_sessions: i64,
    /// = `metrics.ActiveSessions`.
    pub active_sessions: i64,
    /// = `metrics.TotalTokens`.
    pub total_tokens: i64,
    /// = `metrics.AvgResponseTime` (ms).
    pub avg_response_time: i64,
    /// = `metrics.MaxResponseTime` (ms).
    pub max_response_time: i64,
    /// = `metrics.AdminAssistedCount`.
    pub admin_assisted_count: i64,
    /// Average number of concurrently active sessions over the window.
    pub avg_concurrent: f64,
    /// Peak number of concurrently active sessions over the window.
    pub max_concurrent: i64,
    /// Tokens of replies finished on this instance since it started, per answering model id
    /// (issue 17; not limited to the window); omitted when empty.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tokens_by_model: BTreeMap<String, ModelTokens>,
}

/// One model's entry of [`MetricsResponse::tokens_by_model`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelTokens {
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Completion tokens.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl MetricsResponse {
    /// The body, copying `metrics` into the snake_case keys.
    pub fn new(
        metrics: MetricsTotals,
        time_range: TimeRange,
        avg_concurrent: f64,
        max_concurrent: i64,
    ) -> Self {
        MetricsResponse {
            total_sessions: metrics.total_sessions,
            active_sessions: metrics.active_sessions,
            total_tokens: metrics.total_tokens,
            avg_response_time: metrics.avg_response_time,
            max_response_time: metrics.max_response_time,
            admin_assisted_count: metrics.admin_assisted_count,
            metrics,
            time_range,
            avg_concurrent,
            max_concurrent,
            tokens_by_model: BTreeMap::new(),
        }
    }
}

/// `POST {P}/admin/takeover/:id` success (§4.8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TakeoverResponse {
    /// `Takeover initiated successfully`.
    pub message: String,
    /// The session.
    pub session_id: String,
    /// The admin's `user_id`.
    pub admin_id: String,
}

impl TakeoverResponse {
    /// `{"message":"Takeover initiated successfully","session_id":S,"admin_id":A}`.
    pub fn new(session_id: impl Into<String>, admin_id: impl Into<String>) -> Self {
        TakeoverResponse {
            message: "Takeover initiated successfully".to_string(),
            session_id: session_id.into(),
            admin_id: admin_id.into(),
        }
    }
}

/// `POST {P}/admin/leave/:id` success (new route, §10 item 3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaveResponse {
    /// `Admin left the session`.
    pub message: String,
    /// The session.
    pub session_id: String,
    /// The admin's `user_id`.
    pub admin_id: String,
}

impl LeaveResponse {
    /// `{"message":"Admin left the session","session_id":S,"admin_id":A}`.
    pub fn new(session_id: impl Into<String>, admin_id: impl Into<String>) -> Self {
        LeaveResponse {
            message: "Admin left the session".to_string(),
            session_id: session_id.into(),
            admin_id: admin_id.into(),
        }
    }
}

/// `POST {P}/upload` success (§10 item 19).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResponse {
    /// The stored file's id.
    pub file_id: String,
    /// Where it can be fetched.
    pub file_url: String,
}

/// `GET {P}/healthz` (§4.9): `{"status":"healthy","timestamp":…}`, time in whole seconds UTC.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthBody {
    /// Always `healthy`.
    pub status: String,
    /// Now.
    #[serde(with = "frame_time")]
    pub timestamp: DateTime<Utc>,
}

impl HealthBody {
    /// The healthy body at `now`.
    pub fn healthy(now: DateTime<Utc>) -> Self {
        HealthBody { status: "healthy".to_string(), timestamp: now }
    }
}

/// What the database ping of `/readyz` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DbReadiness {
    /// The ping answered in time.
    Ready,
    /// The ping failed or timed out (`Database connectivity check failed`).
    Unreachable,
    /// No database client exists (`MongoDB not initialized`).
    NotInitialized,
}

/// `ready` or `not ready`.
const READY: &str = "ready";
const NOT_READY: &str = "not ready";

/// One check of `/readyz`: `{"status":"ready"}` or `{"status":"not ready","reason":…}`, and for
/// `llm` also `providers_count` when ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyCheck {
    /// `ready` or `not ready`.
    pub status: String,
    /// Number of configured models (llm check, when ready).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub providers_count: Option<usize>,
    /// Entries waiting in the durable outbox (outbox check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub depth: Option<usize>,
    /// Which store the database check pinged: `embedded` or `mongodb` (store check).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Why the check failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl ReadyCheck {
    fn ready(providers_count: Option<usize>) -> Self {
        ReadyCheck {
            status: READY.to_string(),
            providers_count,
            depth: None,
            backend: None,
            reason: None,
        }
    }

    fn not_ready(reason: &str) -> Self {
        ReadyCheck {
            status: NOT_READY.to_string(),
            providers_count: None,
            depth: None,
            backend: None,
            reason: Some(reason.to_string()),
        }
    }

    /// Whether this check passed.
    pub fn is_ready(&self) -> bool {
        self.status == READY
    }
}

/// The `checks` object of `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyChecks {
    /// The database ping, under the name clients know (§4.10), whichever store is in use.
    pub mongodb: ReadyCheck,
    /// The configured providers.
    pub llm: ReadyCheck,
    /// The same ping naming the store it reached (an addition, issue 16): `backend` is
    /// `embedded` or `mongodb`, so an operator can tell which one `mongodb` reports on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<ReadyCheck>,
    /// The durable outbox (an addition: not ready when full, since then no write can be
    /// acknowledged while the database is down).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbox: Option<ReadyCheck>,
    /// Present only while the server drains for shutdown (an addition): always not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shutdown: Option<ReadyCheck>,
    /// The fleet bus (issue 14): `ready`, or `degraded` with an `error` during a bus outage,
    /// which alone never makes the instance not ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bus: Option<BusCheck>,
}

/// `checks.bus` of `/readyz`: `{"status":"ready"}` or `{"status":"degraded","error":…}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusCheck {
    /// `ready` or `degraded`.
    pub status: String,
    /// Why the bus is degraded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `GET {P}/readyz` (§4.10); answer [`ReadyBody::status_code`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadyBody {
    /// `ready` or `not ready`.
    pub status: String,
    /// Now, whole seconds UTC.
    #[serde(with = "frame_time")]
    pub timestamp: DateTime<Utc>,
    /// Each check.
    pub checks: ReadyChecks,
}

impl ReadyBody {
    /// The body from the database check and the number of configured providers.
    pub fn new(db: DbReadiness, providers_count: usize, now: DateTime<Utc>) -> Self {
        let mongodb = match db {
            DbReadiness::Ready => ReadyCheck::ready(None),
            DbReadiness::Unreachable => ReadyCheck::not_ready("Database connectivity check failed"),
            DbReadiness::NotInitialized => ReadyCheck::not_ready("MongoDB not initialized"),
        };
        let llm = if providers_count > 0 {
            ReadyCheck::ready(Some(providers_count))
        } else {
            ReadyCheck::not_ready("No LLM providers configured")
        };
        let checks =
            ReadyChecks { mongodb, llm, store: None, outbox: None, shutdown: None, bus: None };
        ReadyBody { status: String::new(), timestamp: now, checks }.with_status()
    }

    /// Adds the store check: the database check's result, naming the store `backend` it
    /// pinged (`embedded` or `mongodb`).
    #[must_use]
    pub fn with_store(mut self, backend: &str) -> Self {
        let mut check = self.checks.mongodb.clone();
        check.backend = Some(backend.to_string());
        self.checks.store = Some(check);
        self
    }

    /// Adds the outbox check: `depth` entries waiting of at most `capacity`.
    #[must_use]
    pub fn with_outbox(mut self, depth: usize, capacity: usize) -> Self {
        let mut check = if depth >= capacity {
            ReadyCheck::not_ready("Outbox full")
        } else {
            ReadyCheck::ready(None)
        };
        check.depth = Some(depth);
        self.checks.outbox = Some(check);
        self.with_status()
    }

    /// Adds the bus check: `Err` is a bus outage (degraded, still ready).
    #[must_use]
    pub fn with_bus(mut self, health: Result<(), String>) -> Self {
        self.checks.bus = Some(match health {
            Ok(()) => BusCheck { status: READY.to_string(), error: None },
            Err(error) => BusCheck { status: "degraded".to_string(), error: Some(error) },
        });
        self
    }

    /// Marks the server as draining for shutdown (not ready, whatever else holds).
    #[must_use]
    pub fn draining(mut self) -> Self {
        self.checks.shutdown = Some(ReadyCheck::not_ready("Server is shutting down"));
        self.with_status()
    }

    fn with_status(mut self) -> Self {
        let c = &self.checks;
        let ready = c.mongodb.is_ready()
            && c.llm.is_ready()
            && c.outbox.as_ref().is_none_or(ReadyCheck::is_ready)
            && c.shutdown.is_none();
        self.status = if ready { READY } else { NOT_READY }.to_string();
        self
    }

    /// Whether every check passed.
    pub fn is_ready(&self) -> bool {
        self.status == READY
    }

    /// 200 when ready, else 503.
    pub fn status_code(&self) -> u16 {
        if self.is_ready() {
            200
        } else {
            503
        }
    }
}

/// The 429 body of the admin and public limiters (§5); send with a `Retry-After` header of
/// [`retry_after_header_secs`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitBody {
    /// Always `rate_limit_exceeded`.
    pub error: String,
    /// Always `Too many requests. Please try again later.`.
    pub message: String,
    /// Admin limiter only: milliseconds until a retry may succeed (rounded up, at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl RateLimitBody {
    fn with(retry_after_ms: Option<u64>) -> Self {
        RateLimitBody {
            error: "rate_limit_exceeded".to_string(),
            message: "Too many requests. Please try again later.".to_string(),
            retry_after_ms,
        }
    }

    /// The admin limiter's body, with `retry_after_ms`.
    pub fn admin(retry_after: Duration) -> Self {
        Self::with(Some(duration_ms_ceil(retry_after)))
    }

    /// The public limiter's body, without `retry_after_ms`.
    pub fn public() -> Self {
        Self::with(None)
    }
}

/// The `Retry-After` header value: whole seconds, rounded up, at least 1 (§5).
pub fn retry_after_header_secs(retry_after: Duration) -> u64 {
    let secs = retry_after.as_secs();
    let secs = if retry_after.subsec_nanos() > 0 { secs.saturating_add(1) } else { secs };
    secs.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn t(h: u32, m: u32, s: u32, ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 21, h, m, s).single().unwrap_or_default()
            + chrono::Duration::milliseconds(ms)
    }

    fn json<T: Serialize>(v: &T) -> String {
        serde_json::to_string(v).unwrap_or_else(|e| e.to_string())
    }

    #[test]
    fn error_bodies_are_exact() {
        let cases = [
            (
                ErrorBody::invalid_auth_header(),
                401,
                r#"{"error":"Invalid authorization header","code":"UNAUTHORIZED"}"#,
            ),
            (
                ErrorBody::invalid_token(),
                401,
                r#"{"error":"Invalid or expired authentication token","code":"INVALID_TOKEN"}"#,
            ),
            (
                ErrorBody::forbidden(),
                403,
                r#"{"error":"Insufficient permissions","code":"FORBIDDEN"}"#,
            ),
            (
                ErrorBody::session_not_found(),
                404,
                r#"{"error":"Session not found","code":"NOT_FOUND"}"#,
            ),
            (
                ErrorBody::shared_not_found(),
                404,
                r#"{"error":"Shared session not found","code":"NOT_FOUND"}"#,
            ),
            (
                ErrorBody::internal(),
                500,
                r#"{"error":"An internal error occurred","code":"INTERNAL_ERROR"}"#,
            ),
            (ErrorBody::bad_request("x"), 400, r#"{"error":"x","code":"BAD_REQUEST"}"#),
            (
                ErrorBody::already_assisted("Jane", "a1"),
                400,
                r#"{"error":"session already assisted by another admin: Jane (a1)","code":"BAD_REQUEST"}"#,
            ),
            (
                ErrorBody::invalid_file_type("x/y"),
                400,
                r#"{"error":"Invalid file type: x/y","code":"INVALID_FILE_TYPE"}"#,
            ),
            (
                ErrorBody::invalid_file_size(2, 1),
                413,
                r#"{"error":"File size 2 bytes exceeds maximum 1 bytes","code":"INVALID_FILE_SIZE"}"#,
            ),
            (
                ErrorBody::storage_error(),
                500,
                r#"{"error":"File storage operation failed","code":"STORAGE_ERROR"}"#,
            ),
        ];
        for (body, status, want) in cases {
            assert_eq!(json(&body), want);
            assert_eq!(body.status(), status, "{want}");
            assert_eq!(serde_json::from_str::<ErrorBody>(want).ok(), Some(body));
        }
    }

    #[test]
    fn handshake_texts() {
        assert_eq!(WS_MISSING_TOKEN, "Missing authentication token");
        assert_eq!(WS_AUTH_FAILED, "Authentication failed");
        assert_eq!(WS_CONNECTION_LIMIT, "Connection limit exceeded, please try again later");
        assert_eq!(
            WS_QUERY_TOKEN_DISABLED,
            "JWT via query parameter is disabled. Use the Authorization header instead."
        );
        assert_eq!(plain_text_body(WS_AUTH_FAILED), "Authentication failed\n");
    }

    #[test]
    fn ended_session_summary() {
        let mut s = SessionSummary::new(
            "S1",
            "u1",
            t(10, 0, 0, 123),
            Some(t(10, 30, 0, 0)),
            Some(t(10, 5, 12, 345)),
            t(12, 0, 0, 0),
        );
        s.name = "How do I reset my password?".into();
        s.message_count = 6;
        s.assisting_admin_name = "Jane".into();
        s.share_token = "9f".into();
        s.help_requested = true;
        let want = r#"{"id":"S1","session_id":"S1","user_id":"u1","name":"How do I reset my password?","last_activity":"2026-02-21T10:05:12.345Z","message_count":6,"admin_assisted":false,"help_requested":true,"start_time":"2026-02-21T10:00:00.123Z","end_time":"2026-02-21T10:30:00Z","is_active":false,"duration":1799,"total_tokens":0,"max_response_time":0,"avg_response_time":0,"assisting_admin_name":"Jane","share_token":"9f"}"#;
        assert_eq!(json(&s), want);
        assert_eq!(serde_json::from_str::<SessionSummary>(want).ok(), Some(s));
    }

    #[test]
    fn admin_session_detail_is_the_detail_plus_state() {
        let detail = SessionDetail {
            session_id: "S1".into(),
            name: "Hi".into(),
            model_id: String::new(),
            messages: Vec::new(),
        };
        let mut body = AdminSessionDetail {
            detail,
            user_id: "u1".into(),
            is_active: true,
            help_requested: true,
            admin_assisted: false,
            assisting_admin_name: String::new(),
        };
        assert_eq!(
            json(&body),
            r#"{"session_id":"S1","name":"Hi","model_id":"","messages":[],"user_id":"u1","is_active":true,"help_requested":true,"admin_assisted":false}"#
        );
        body.admin_assisted = true;
        body.assisting_admin_name = "Jane".into();
        assert!(json(&body).ends_with(r#""admin_assisted":true,"assisting_admin_name":"Jane"}"#));
    }

    #[test]
    fn active_session_summary_omits_empty_fields() {
        let s = SessionSummary::new("S2", "u1", t(10, 0, 0, 0), None, None, t(10, 1, 40, 900));
        assert_eq!(
            json(&s),
            r#"{"id":"S2","session_id":"S2","user_id":"u1","name":"","last_activity":"2026-02-21T10:00:00Z","message_count":0,"admin_assisted":false,"help_requested":false,"start_time":"2026-02-21T10:00:00Z","is_active":true,"duration":100,"total_tokens":0,"max_response_time":0,"avg_response_time":0}"#
        );
        // A start time after `now` (clock skew between instances) gives 0, not a negative value.
        let s = SessionSummary::new("S3", "u1", t(11, 0, 0, 0), None, None, t(10, 0, 0, 0));
        assert_eq!(s.duration, 0);
    }

    #[test]
    fn session_list_truncation() {
        let one = SessionSummary::new("S", "u", t(10, 0, 0, 0), None, None, t(10, 0, 0, 0));
        let list = SessionList::new("u", vec![one.clone(); 3], SessionList::LIMIT);
        assert_eq!((list.count, list.limit, list.truncated), (3, 100, false));
        let list = SessionList::new("u", vec![one; 100], SessionList::LIMIT);
        assert!(list.truncated);
        let empty = SessionList::new("u1", vec![], 100);
        assert_eq!(
            json(&empty),
            r#"{"sessions":[],"user_id":"u1","count":0,"limit":100,"truncated":false}"#
        );
    }

    #[test]
    fn session_detail_and_messages() {
        let detail = SessionDetail {
            session_id: "S".into(),
            name: "Hello".into(),
            model_id: "openai-gpt4".into(),
            messages: vec![
                MessageView {
                    content: "Hello".into(),
                    timestamp: t(10, 0, 0, 123),
                    sender: "user".into(),
                    file_id: String::new(),
                    file_url: String::new(),
                    metadata: BTreeMap::new(),
                },
                MessageView {
                    content: String::new(),
                    timestamp: t(10, 0, 1, 0),
                    sender: "user".into(),
                    file_id: "a.png".into(),
                    file_url: "https://x.example/a.png".into(),
                    metadata: BTreeMap::from([("filename".to_string(), "a.png".to_string())]),
                },
            ],
        };
        assert_eq!(
            json(&detail),
            r#"{"session_id":"S","name":"Hello","model_id":"openai-gpt4","messages":[{"content":"Hello","timestamp":"2026-02-21T10:00:00.123Z","sender":"user"},{"content":"","timestamp":"2026-02-21T10:00:01Z","sender":"user","file_id":"a.png","file_url":"https://x.example/a.png","metadata":{"filename":"a.png"}}]}"#
        );
        let shared =
            SharedSession { session_id: "S".into(), name: "Hello".into(), messages: vec![] };
        assert_eq!(json(&shared), r#"{"session_id":"S","name":"Hello","messages":[]}"#);
    }

    #[test]
    fn small_bodies() {
        assert_eq!(json(&EndResponse::ended()), r#"{"status":"ended"}"#);
        assert_eq!(json(&ShareResponse { share_token: "abc".into() }), r#"{"share_token":"abc"}"#);
        assert_eq!(
            json(&TakeoverResponse::new("S", "a1")),
            r#"{"message":"Takeover initiated successfully","session_id":"S","admin_id":"a1"}"#
        );
        assert_eq!(
            json(&LeaveResponse::new("S", "a1")),
            r#"{"message":"Admin left the session","session_id":"S","admin_id":"a1"}"#
        );
        assert_eq!(
            json(&UploadResponse { file_id: "f".into(), file_url: "https://x/f".into() }),
            r#"{"file_id":"f","file_url":"https://x/f"}"#
        );
        assert_eq!(
            json(&AdminSessionList::new(vec![], 100, 0)),
            r#"{"sessions":[],"count":0,"limit":100,"offset":0}"#
        );
        assert_eq!(
            json(&HealthBody::healthy(t(10, 0, 0, 500))),
            r#"{"status":"healthy","timestamp":"2026-02-21T10:00:00Z"}"#
        );
    }

    #[test]
    fn metrics_body_has_both_key_styles() {
        let range = TimeRange {
            start: t(10, 0, 0, 0).fixed_offset(),
            end: crate::protocol::timestamp::parse_rfc3339("2026-02-21T12:00:00+02:00")
                .unwrap_or_default(),
        };
        let totals = MetricsTotals {
            total_sessions: 12,
            active_sessions: 3,
            total_tokens: 7,
            avg_response_time: 5,
            max_response_time: 9,
            admin_assisted_count: 1,
        };
        let body = MetricsResponse::new(totals, range, 1.5, 4);
        assert_eq!(
            json(&body),
            r#"{"metrics":{"TotalSessions":12,"ActiveSessions":3,"TotalTokens":7,"AvgResponseTime":5,"MaxResponseTime":9,"AdminAssistedCount":1},"time_range":{"start":"2026-02-21T10:00:00Z","end":"2026-02-21T12:00:00+02:00"},"total_sessions":12,"active_sessions":3,"total_tokens":7,"avg_response_time":5,"max_response_time":9,"admin_assisted_count":1,"avg_concurrent":1.5,"max_concurrent":4}"#
        );
    }

    #[test]
    fn readiness_bodies() {
        let ok = ReadyBody::new(DbReadiness::Ready, 2, t(10, 0, 0, 0));
        assert_eq!(ok.status_code(), 200);
        assert_eq!(
            json(&ok),
            r#"{"status":"ready","timestamp":"2026-02-21T10:00:00Z","checks":{"mongodb":{"status":"ready"},"llm":{"status":"ready","providers_count":2}}}"#
        );
        let db_down = ReadyBody::new(DbReadiness::Unreachable, 2, t(10, 0, 0, 0));
        assert_eq!(db_down.status_code(), 503);
        assert_eq!(
            json(&db_down),
            r#"{"status":"not ready","timestamp":"2026-02-21T10:00:00Z","checks":{"mongodb":{"status":"not ready","reason":"Database connectivity check failed"},"llm":{"status":"ready","providers_count":2}}}"#
        );
        let no_db = ReadyBody::new(DbReadiness::NotInitialized, 0, t(10, 0, 0, 0));
        assert_eq!(
            json(&no_db.checks),
            r#"{"mongodb":{"status":"not ready","reason":"MongoDB not initialized"},"llm":{"status":"not ready","reason":"No LLM providers configured"}}"#
        );
        assert!(!no_db.is_ready());

        let with_outbox = ReadyBody::new(DbReadiness::Ready, 1, t(10, 0, 0, 0)).with_outbox(3, 10);
        assert!(with_outbox.is_ready());
        assert_eq!(
            json(&with_outbox.checks),
            r#"{"mongodb":{"status":"ready"},"llm":{"status":"ready","providers_count":1},"outbox":{"status":"ready","depth":3}}"#
        );
        let full = ReadyBody::new(DbReadiness::Ready, 1, t(10, 0, 0, 0)).with_outbox(10, 10);
        assert_eq!(full.status_code(), 503);
        assert_eq!(
            json(&full.checks.outbox),
            r#"{"status":"not ready","depth":10,"reason":"Outbox full"}"#
        );
        let embedded = ReadyBody::new(DbReadiness::Ready, 1, t(10, 0, 0, 0)).with_store("embedded");
        assert_eq!(
            json(&embedded.checks),
            r#"{"mongodb":{"status":"ready"},"llm":{"status":"ready","providers_count":1},"store":{"status":"ready","backend":"embedded"}}"#
        );
        let down =
            ReadyBody::new(DbReadiness::Unreachable, 1, t(10, 0, 0, 0)).with_store("mongodb");
        assert_eq!(
            json(&down.checks.store),
            r#"{"status":"not ready","backend":"mongodb","reason":"Database connectivity check failed"}"#
        );
        assert_eq!(down.status_code(), 503);
        let draining = ReadyBody::new(DbReadiness::Ready, 1, t(10, 0, 0, 0)).draining();
        assert_eq!(draining.status_code(), 503);
        assert_eq!(
            json(&draining.checks.shutdown),
            r#"{"status":"not ready","reason":"Server is shutting down"}"#
        );
    }

    #[test]
    fn rate_limit_bodies_and_header() {
        assert_eq!(
            json(&RateLimitBody::admin(Duration::from_millis(11_234))),
            r#"{"error":"rate_limit_exceeded","message":"Too many requests. Please try again later.","retry_after_ms":11234}"#
        );
        assert_eq!(
            json(&RateLimitBody::public()),
            r#"{"error":"rate_limit_exceeded","message":"Too many requests. Please try again later."}"#
        );
        assert_eq!(RateLimitBody::admin(Duration::ZERO).retry_after_ms, Some(1));
        assert_eq!(retry_after_header_secs(Duration::from_millis(11_234)), 12);
        assert_eq!(retry_after_header_secs(Duration::from_secs(12)), 12);
        assert_eq!(retry_after_header_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_header_secs(Duration::from_nanos(1)), 1);
        assert_eq!(retry_after_header_secs(Duration::from_millis(1001)), 2);
        assert_eq!(retry_after_header_secs(Duration::MAX), u64::MAX);
    }
}
