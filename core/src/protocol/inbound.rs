//! The inbound pipeline of PROTOCOL.md §3.5–§3.6 as one pure function, [`parse_client_frame`]:
//! parse → sanitize → defaults → validate. Binding and dispatch (steps 5–6) belong to the server.
//!
//! Parsing follows the original's Go decoder where it matters to clients: keys match
//! ASCII-case-insensitively and the last duplicate wins, unknown keys are ignored, `null` for a
//! string field, `timestamp`, `metadata` or `error` means "absent". Differences, on purpose:
//! numbers and booleans in `metadata` are kept as strings (§10 item 20); a `null` metadata *value*
//! is refused. An unknown `type` or `sender` string parses and then fails validation, so
//! `{"type":"ping"}` answers `Message validation failed` (§3.3).
//!
//! Never panics, whatever the input; cost is linear in the input length.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};

use super::cut_to_char_boundary;
use super::error_code::ErrorInfo;
use super::frame::{FrameType, Sender, REPLY_ID_KEY};
use super::timestamp::parse_rfc3339;

/// The byte limits of §3.4 and the future-timestamp tolerance of §3.6.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboundLimits {
    /// Longest `session_id`, bytes (128).
    pub session_id: usize,
    /// Longest `content`, bytes (10 000).
    pub content: usize,
    /// Longest `file_id`, bytes (255).
    pub file_id: usize,
    /// Longest `file_url`, bytes (2 048).
    pub file_url: usize,
    /// Longest `model_id`, bytes (100).
    pub model_id: usize,
    /// Longest value of each metadata entry, bytes (1 000).
    pub metadata_value: usize,
    /// How far in the future a client `timestamp` may be (1 minute; exactly this much is fine).
    pub max_future: Duration,
}

impl InboundLimits {
    /// The values of PROTOCOL.md §3.4 and §3.6.
    pub const DEFAULT: InboundLimits = InboundLimits {
        session_id: 128,
        content: 10_000,
        file_id: 255,
        file_url: 2048,
        model_id: 100,
        metadata_value: 1000,
        max_future: Duration::from_secs(60),
    };
}

impl Default for InboundLimits {
    fn default() -> Self {
        InboundLimits::DEFAULT
    }
}

/// The `error` object of a client frame: like [`ErrorInfo`] but with a free-form code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientErrorInfo {
    /// `error.code`, sanitized (not checked against the catalogue).
    pub code: String,
    /// `error.message`, sanitized.
    pub message: String,
    /// `error.recoverable` (absent = false).
    pub recoverable: bool,
    /// `error.retry_after` in ms; `None` when absent, zero or negative.
    pub retry_after: Option<u64>,
}

/// A client frame that passed the pipeline: sanitized, defaulted and valid.
///
/// Invariants: every string field and metadata key/value contains no NUL and has no leading or
/// trailing whitespace, and respects [`InboundLimits`]; the per-type rules of §3.6 hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientFrame {
    /// `type`.
    pub frame_type: FrameType,
    /// `session_id` (empty when absent).
    pub session_id: String,
    /// `content` (empty when absent).
    pub content: String,
    /// `file_id` (empty when absent).
    pub file_id: String,
    /// `file_url` (empty when absent).
    pub file_url: String,
    /// `model_id` (empty when absent).
    pub model_id: String,
    /// `timestamp` in UTC; `now` when absent.
    pub timestamp: DateTime<Utc>,
    /// `sender`; `user` when absent.
    pub sender: Sender,
    /// `metadata`, scalar values as strings.
    pub metadata: BTreeMap<String, String>,
    /// `error` (present on valid `error` frames; may be present on others).
    pub error: Option<ClientErrorInfo>,
}

impl ClientFrame {
    /// `session_id`, or `None` when the frame carried none (for echoing into error frames).
    pub fn session(&self) -> Option<&str> {
        Some(self.session_id.as_str()).filter(|s| !s.is_empty())
    }

    /// Where a `resume` frame asks to continue (`metadata.reply_id`, `metadata.after_seq`);
    /// `None` on other frames. Validation guarantees it on every `resume`.
    pub fn resume_point(&self) -> Option<ResumePoint<'_>> {
        if self.frame_type != FrameType::Resume {
            return None;
        }
        let reply_id = self.metadata.get(REPLY_ID_KEY).filter(|r| !r.is_empty())?;
        let after_seq = parse_seq(self.metadata.get(AFTER_SEQ_KEY)?)?;
        Some(ResumePoint { reply_id, after_seq })
    }
}

/// Metadata key of a `resume` frame: the last seq the client showed ("0" for none).
pub const AFTER_SEQ_KEY: &str = "after_seq";

/// Where a resumed reply continues: its id and the last seq the client has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResumePoint<'a> {
    /// `metadata.reply_id`.
    pub reply_id: &'a str,
    /// `metadata.after_seq`: frames with a greater seq are owed.
    pub after_seq: u64,
}

/// A seq as sent on the wire: plain ASCII digits (no sign, no spaces), fitting a `u64`.
fn parse_seq(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A field with a byte limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitedField {
    /// `session_id`.
    SessionId,
    /// `content`.
    Content,
    /// `file_id`.
    FileId,
    /// `file_url`.
    FileUrl,
    /// `model_id`.
    ModelId,
}

impl LimitedField {
    /// The JSON key.
    pub const fn as_str(self) -> &'static str {
        match self {
            LimitedField::SessionId => "session_id",
            LimitedField::Content => "content",
            LimitedField::FileId => "file_id",
            LimitedField::FileUrl => "file_url",
            LimitedField::ModelId => "model_id",
        }
    }
}

impl fmt::Display for LimitedField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which §3.6 rule a frame broke (for logs; the client always sees `Message validation failed`).
/// Texts quoted from the client are cut to 64 bytes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValidationError {
    /// `type` is missing or not one of the 13 types.
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// `sender` is not one of `user`, `ai`, `admin`, `system`.
    #[error("unknown sender {0:?}")]
    UnknownSender(String),
    /// `timestamp` is more than the allowed skew ahead of the server's clock.
    #[error("timestamp {timestamp} is more than {max_future:?} in the future")]
    TimestampInFuture {
        /// The client's time.
        timestamp: DateTime<Utc>,
        /// The tolerance.
        max_future: Duration,
    },
    /// `user_message`/`ai_response` without content.
    #[error("{0} needs non-empty content")]
    EmptyContent(FrameType),
    /// `file_upload`/`voice_message` without `file_id`.
    #[error("{0} needs file_id")]
    MissingFileId(FrameType),
    /// `file_upload`/`voice_message` without `file_url`.
    #[error("{0} needs file_url")]
    MissingFileUrl(FrameType),
    /// `error` frame without an `error` object.
    #[error("error frame needs an error object")]
    MissingErrorObject,
    /// `error` frame with an empty `error.code`.
    #[error("error frame needs error.code")]
    MissingErrorCode,
    /// `error` frame with an empty `error.message`.
    #[error("error frame needs error.message")]
    MissingErrorMessage,
    /// `model_select` without `model_id`.
    #[error("model_select needs model_id")]
    MissingModelId,
    /// `admin_join`/`admin_leave` not from `admin`.
    #[error("{frame_type} needs sender admin, got {sender}")]
    SenderMustBeAdmin {
        /// The frame's type.
        frame_type: FrameType,
        /// The frame's sender.
        sender: Sender,
    },
    /// `help_request` not from `user`.
    #[error("help_request needs sender user, got {0}")]
    SenderMustBeUser(Sender),
    /// `resume` without `session_id`, `metadata.reply_id` or a decimal `metadata.after_seq`.
    #[error("resume needs session_id, metadata.reply_id and a decimal metadata.after_seq")]
    InvalidResume,
    /// A field exceeds its byte limit.
    #[error("{field} is {bytes} bytes, limit {max}")]
    FieldTooLong {
        /// Which field.
        field: LimitedField,
        /// Its length in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// A metadata value exceeds its byte limit.
    #[error("metadata value of {key:?} is {bytes} bytes, limit {max}")]
    MetadataValueTooLong {
        /// The entry's key (cut to 64 bytes).
        key: String,
        /// The value's length in bytes.
        bytes: usize,
        /// The limit.
        max: usize,
    },
}

/// Why a client frame was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InboundError {
    /// Step 1 failed: not a JSON object of the frame's shape, a non-string or unparsable
    /// `timestamp`, a non-object `metadata`, a non-scalar metadata value. The reason is for logs.
    #[error("invalid message format: {0}")]
    Format(String),
    /// Step 4 failed: a §3.6 rule.
    #[error("message validation failed: {0}")]
    Validation(#[from] ValidationError),
}

impl InboundError {
    /// The error frame's object: `INVALID_FORMAT` / `Invalid message format` or
    /// `INVALID_FORMAT` / `Message validation failed`.
    pub fn to_error_info(&self) -> ErrorInfo {
        match self {
            InboundError::Format(_) => ErrorInfo::invalid_format(),
            InboundError::Validation(_) => ErrorInfo::validation_failed(),
        }
    }
}

/// Runs steps 1–4 of §3.5 on one text frame. `now` is the server's wall clock (the default
/// timestamp and the reference for the future check).
pub fn parse_client_frame(
    text: &str,
    now: DateTime<Utc>,
    limits: &InboundLimits,
) -> Result<ClientFrame, InboundError> {
    // 1. Parse.
    let raw: RawFrame =
        serde_json::from_str(text).map_err(|e| InboundError::Format(e.to_string()))?;
    let timestamp = match raw.timestamp.as_deref() {
        None => None,
        Some(t) => Some(
            parse_rfc3339(t).map_err(|e| InboundError::Format(e.to_string()))?.with_timezone(&Utc),
        ),
    };
    // 2. Sanitize.
    let metadata = raw.metadata.into_iter().map(|(k, v)| (sanitize(k), sanitize(v))).collect();
    let error = raw.error.map(|e| ClientErrorInfo {
        code: sanitize(e.code),
        message: sanitize(e.message),
        recoverable: e.recoverable,
        retry_after: e.retry_after,
    });
    // 3. Defaults. 4. Validate (type and sender first, as they become typed here).
    let type_text = raw.frame_type.unwrap_or_default();
    let frame_type = FrameType::from_wire(&type_text)
        .ok_or_else(|| ValidationError::UnknownType(cut_for_log(&type_text)))?;
    let sender = match raw.sender {
        None => Sender::User,
        Some(s) => {
            Sender::from_wire(&s).ok_or_else(|| ValidationError::UnknownSender(cut_for_log(&s)))?
        }
    };
    let frame = ClientFrame {
        frame_type,
        session_id: sanitize(raw.session_id.unwrap_or_default()),
        content: sanitize(raw.content.unwrap_or_default()),
        file_id: sanitize(raw.file_id.unwrap_or_default()),
        file_url: sanitize(raw.file_url.unwrap_or_default()),
        model_id: sanitize(raw.model_id.unwrap_or_default()),
        timestamp: timestamp.unwrap_or(now),
        sender,
        metadata,
        error,
    };
    validate(&frame, now, limits)?;
    Ok(frame)
}

/// The §3.6 rules after type and sender are known: future time, per-type rules, byte limits.
fn validate(
    f: &ClientFrame,
    now: DateTime<Utc>,
    limits: &InboundLimits,
) -> Result<(), ValidationError> {
    let skew = chrono::Duration::from_std(limits.max_future).unwrap_or(chrono::TimeDelta::MAX);
    // An overflowing `now + skew` means nothing representable is too far ahead.
    if let Some(latest) = now.checked_add_signed(skew) {
        if f.timestamp > latest {
            return Err(ValidationError::TimestampInFuture {
                timestamp: f.timestamp,
                max_future: limits.max_future,
            });
        }
    }
    match f.frame_type {
        FrameType::UserMessage | FrameType::AiResponse if f.content.is_empty() => {
            return Err(ValidationError::EmptyContent(f.frame_type));
        }
        FrameType::FileUpload | FrameType::VoiceMessage => {
            if f.file_id.is_empty() {
                return Err(ValidationError::MissingFileId(f.frame_type));
            }
            if f.file_url.is_empty() {
                return Err(ValidationError::MissingFileUrl(f.frame_type));
            }
        }
        FrameType::Error => match &f.error {
            None => return Err(ValidationError::MissingErrorObject),
            Some(e) if e.code.is_empty() => return Err(ValidationError::MissingErrorCode),
            Some(e) if e.message.is_empty() => return Err(ValidationError::MissingErrorMessage),
            Some(_) => {}
        },
        FrameType::ModelSelect if f.model_id.is_empty() => {
            return Err(ValidationError::MissingModelId);
        }
        FrameType::AdminJoin | FrameType::AdminLeave if f.sender != Sender::Admin => {
            return Err(ValidationError::SenderMustBeAdmin {
                frame_type: f.frame_type,
                sender: f.sender,
            });
        }
        FrameType::HelpRequest if f.sender != Sender::User => {
            return Err(ValidationError::SenderMustBeUser(f.sender));
        }
        FrameType::Resume if f.session_id.is_empty() || f.resume_point().is_none() => {
            return Err(ValidationError::InvalidResume);
        }
        _ => {}
    }
    for (field, value, max) in [
        (LimitedField::SessionId, &f.session_id, limits.session_id),
        (LimitedField::Content, &f.content, limits.content),
        (LimitedField::FileId, &f.file_id, limits.file_id),
        (LimitedField::FileUrl, &f.file_url, limits.file_url),
        (LimitedField::ModelId, &f.model_id, limits.model_id),
    ] {
        if value.len() > max {
            return Err(ValidationError::FieldTooLong { field, bytes: value.len(), max });
        }
    }
    for (key, value) in &f.metadata {
        if value.len() > limits.metadata_value {
            return Err(ValidationError::MetadataValueTooLong {
                key: cut_for_log(key),
                bytes: value.len(),
                max: limits.metadata_value,
            });
        }
    }
    Ok(())
}

/// Removes NUL bytes, then trims leading/trailing whitespace (Unicode White_Space, as Go's
/// `strings.TrimSpace`). Returns the input unchanged (no allocation) when already clean.
pub fn sanitize(s: String) -> String {
    if s.contains('\0') {
        let cleaned = s.replace('\0', "");
        return trim_owned(cleaned);
    }
    trim_owned(s)
}

fn trim_owned(s: String) -> String {
    let trimmed = s.trim();
    if trimmed.len() == s.len() {
        s
    } else {
        trimmed.to_string()
    }
}

fn cut_for_log(s: &str) -> String {
    cut_to_char_boundary(s, 64).to_string()
}

// ---------------------------------------------------------------------------------------------
// Step 1: the raw shape, decoded with a hand-written visitor so keys can match case-insensitively
// and metadata can take scalars.

/// The frame as decoded, before sanitizing: every field optional, `null` = absent.
#[derive(Default)]
struct RawFrame {
    frame_type: Option<String>,
    session_id: Option<String>,
    content: Option<String>,
    file_id: Option<String>,
    file_url: Option<String>,
    model_id: Option<String>,
    timestamp: Option<String>,
    sender: Option<String>,
    metadata: Vec<(String, String)>,
    error: Option<RawError>,
}

#[derive(Default)]
struct RawError {
    code: String,
    message: String,
    recoverable: bool,
    retry_after: Option<u64>,
}

/// A key of the frame object, matched ASCII-case-insensitively.
enum FrameKey {
    Type,
    SessionId,
    Content,
    FileId,
    FileUrl,
    ModelId,
    Timestamp,
    Sender,
    Metadata,
    Error,
    Other,
}

impl FrameKey {
    fn of(key: &str) -> FrameKey {
        const KEYS: [(&str, FrameKey); 10] = [
            ("type", FrameKey::Type),
            ("session_id", FrameKey::SessionId),
            ("content", FrameKey::Content),
            ("file_id", FrameKey::FileId),
            ("file_url", FrameKey::FileUrl),
            ("model_id", FrameKey::ModelId),
            ("timestamp", FrameKey::Timestamp),
            ("sender", FrameKey::Sender),
            ("metadata", FrameKey::Metadata),
            ("error", FrameKey::Error),
        ];
        KEYS.into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(key))
            .map_or(FrameKey::Other, |(_, k)| k)
    }
}

/// A key, borrowed from the input when it has no escapes.
struct Key<'de>(Cow<'de, str>);

impl<'de> Deserialize<'de> for Key<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = Key<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string key")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v.to_string())))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Key(Cow::Owned(v)))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawFrame {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FrameVisitor;
        impl<'de> Visitor<'de> for FrameVisitor {
            type Value = RawFrame;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            // Go decodes a bare `null` into an empty message, which then fails validation.
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(RawFrame::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut raw = RawFrame::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    match FrameKey::of(&key) {
                        FrameKey::Type => set_opt(&mut raw.frame_type, map.next_value()?),
                        FrameKey::SessionId => set_opt(&mut raw.session_id, map.next_value()?),
                        FrameKey::Content => set_opt(&mut raw.content, map.next_value()?),
                        FrameKey::FileId => set_opt(&mut raw.file_id, map.next_value()?),
                        FrameKey::FileUrl => set_opt(&mut raw.file_url, map.next_value()?),
                        FrameKey::ModelId => set_opt(&mut raw.model_id, map.next_value()?),
                        FrameKey::Timestamp => set_opt(&mut raw.timestamp, map.next_value()?),
                        FrameKey::Sender => set_opt(&mut raw.sender, map.next_value()?),
                        FrameKey::Metadata => {
                            if let Some(RawMetadata(m)) = map.next_value()? {
                                raw.metadata = m;
                            }
                        }
                        FrameKey::Error => {
                            if let Some(e) = map.next_value::<Option<RawError>>()? {
                                raw.error = Some(e);
                            }
                        }
                        FrameKey::Other => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_any(FrameVisitor)
    }
}

/// `null` leaves a field as it was (Go semantics); a value replaces it.
fn set_opt(slot: &mut Option<String>, value: Option<String>) {
    if value.is_some() {
        *slot = value;
    }
}

/// `metadata`: an object whose values are strings, numbers or booleans.
struct RawMetadata(Vec<(String, String)>);

impl<'de> Deserialize<'de> for RawMetadata {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct MetaVisitor;
        impl<'de> Visitor<'de> for MetaVisitor {
            type Value = RawMetadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object of string, number or boolean values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut entries = Vec::new();
                while let Some((k, MetaValue(v))) = map.next_entry::<String, MetaValue>()? {
                    entries.push((k, v));
                }
                Ok(RawMetadata(entries))
            }
        }
        d.deserialize_map(MetaVisitor)
    }
}

/// One metadata value as a string: strings kept, numbers and booleans written out (§10 item 20).
struct MetaValue(String);

impl<'de> Deserialize<'de> for MetaValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ValueVisitor;
        impl Visitor<'_> for ValueVisitor {
            type Value = MetaValue;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string, number or boolean metadata value")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(MetaValue(v))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(MetaValue(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                // serde_json's number text (shortest round-trip form: 1.5, 1e300, 2.0).
                serde_json::Number::from_f64(v)
                    .map(|n| MetaValue(n.to_string()))
                    .ok_or_else(|| E::custom("non-finite number"))
            }
        }
        d.deserialize_any(ValueVisitor)
    }
}

impl<'de> Deserialize<'de> for RawError {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ErrorVisitor;
        impl<'de> Visitor<'de> for ErrorVisitor {
            type Value = RawError;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut raw = RawError::default();
                while let Some(Key(key)) = map.next_key::<Key<'de>>()? {
                    if key.eq_ignore_ascii_case("code") {
                        if let Some(v) = map.next_value::<Option<String>>()? {
                            raw.code = v;
                        }
                    } else if key.eq_ignore_ascii_case("message") {
                        if let Some(v) = map.next_value::<Option<String>>()? {
                            raw.message = v;
                        }
                    } else if key.eq_ignore_ascii_case("recoverable") {
                        if let Some(v) = map.next_value::<Option<bool>>()? {
                            raw.recoverable = v;
                        }
                    } else if key.eq_ignore_ascii_case("retry_after") {
                        if let Some(v) = map.next_value::<Option<i64>>()? {
                            raw.retry_after = u64::try_from(v).ok().filter(|&ms| ms > 0);
                        }
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(raw)
            }
        }
        d.deserialize_map(ErrorVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 21, 10, 0, 0).single().unwrap_or_default()
    }

    fn parse(text: &str) -> Result<ClientFrame, InboundError> {
        parse_client_frame(text, now(), &InboundLimits::DEFAULT)
    }

    fn ok(text: &str) -> ClientFrame {
        parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    fn format_err(text: &str) {
        match parse(text) {
            Err(e @ InboundError::Format(_)) => {
                assert_eq!(e.to_error_info(), ErrorInfo::invalid_format(), "{text}");
            }
            other => panic!("{text}: expected a format error, got {other:?}"),
        }
    }

    fn invalid(text: &str) -> ValidationError {
        match parse(text) {
            Err(InboundError::Validation(v)) => {
                assert_eq!(
                    InboundError::Validation(v.clone()).to_error_info(),
                    ErrorInfo::validation_failed()
                );
                v
            }
            other => panic!("{text}: expected a validation error, got {other:?}"),
        }
    }

    #[test]
    fn minimal_user_message_gets_defaults() {
        let f = ok(r#"{"type":"user_message","session_id":"S","content":"Hello"}"#);
        assert_eq!(f.frame_type, FrameType::UserMessage);
        assert_eq!(f.sender, Sender::User);
        assert_eq!(f.timestamp, now());
        assert_eq!(f.session(), Some("S"));
        assert_eq!(f.content, "Hello");
        assert!(f.metadata.is_empty());
        assert_eq!(f.error, None);
    }

    #[test]
    fn documented_client_frames_pass() {
        ok(
            r#"{"type":"user_message","session_id":"abc","content":"Hello","timestamp":"2026-02-21T10:00:00.000Z","sender":"user"}"#,
        );
        ok(
            r#"{"type":"model_select","session_id":"abc","model_id":"anthropic-claude","timestamp":"2026-02-21T09:59:00Z"}"#,
        );
        ok(r#"{"type":"help_request","session_id":"abc","timestamp":"2026-02-21T10:00:00Z"}"#);
        let f = ok(
            r#"{"type":"file_upload","session_id":"abc","file_id":"abc.png","file_url":"https://cdn.example.com/abc.png","content":"optional caption","metadata":{"filename":"abc.png"},"timestamp":"2026-02-21T10:00:00Z","sender":"user"}"#,
        );
        assert_eq!(f.metadata.get("filename").map(String::as_str), Some("abc.png"));
    }

    #[test]
    fn json_errors_are_format_errors() {
        for text in ["", "not json", "{", "[]", "\"user_message\"", "42", "{\"type\":}", "{} {}"] {
            format_err(text);
        }
    }

    #[test]
    fn session_is_none_when_absent() {
        assert_eq!(ok(r#"{"type":"loading","session_id":"  "}"#).session(), None);
    }

    #[test]
    fn bare_null_fails_validation_like_an_empty_message() {
        assert_eq!(invalid("null"), ValidationError::UnknownType(String::new()));
        assert_eq!(invalid("{}"), ValidationError::UnknownType(String::new()));
    }

    #[test]
    fn ping_is_a_validation_failure_not_a_format_error() {
        assert_eq!(invalid(r#"{"type":"ping"}"#), ValidationError::UnknownType("ping".into()));
    }

    #[test]
    fn unknown_sender_is_a_validation_failure() {
        assert_eq!(
            invalid(r#"{"type":"user_message","content":"x","sender":"bot"}"#),
            ValidationError::UnknownSender("bot".into())
        );
        // type and sender are not trimmed.
        assert!(matches!(
            invalid(r#"{"type":" user_message","content":"x"}"#),
            ValidationError::UnknownType(_)
        ));
    }

    #[test]
    fn wrong_json_types_are_format_errors() {
        format_err(r#"{"type":"user_message","content":5}"#);
        format_err(r#"{"type":5,"content":"x"}"#);
        format_err(r#"{"type":"user_message","content":"x","sender":true}"#);
        format_err(r#"{"type":"error","error":"boom"}"#);
        format_err(r#"{"type":"error","error":{"code":1,"message":"m"}}"#);
        format_err(r#"{"type":"error","error":{"code":"C","message":"m","recoverable":"yes"}}"#);
        format_err(r#"{"type":"error","error":{"code":"C","message":"m","retry_after":1.5}}"#);
    }

    #[test]
    fn timestamp_must_be_an_rfc3339_string() {
        format_err(r#"{"type":"user_message","content":"x","timestamp":1700000000}"#);
        format_err(r#"{"type":"user_message","content":"x","timestamp":"yesterday"}"#);
        format_err(r#"{"type":"user_message","content":"x","timestamp":"2026-02-21 10:00"}"#);
        format_err(r#"{"type":"user_message","content":"x","timestamp":{}}"#);
        let f = ok(
            r#"{"type":"user_message","content":"x","timestamp":"2026-02-21T11:00:00.5+01:00"}"#,
        );
        assert_eq!(f.timestamp, now() + chrono::Duration::milliseconds(500));
        // null = absent = now.
        let f = ok(r#"{"type":"user_message","content":"x","timestamp":null}"#);
        assert_eq!(f.timestamp, now());
    }

    #[test]
    fn future_timestamps_up_to_one_minute_pass() {
        let at = |secs: i64| {
            let t = now() + chrono::Duration::seconds(secs);
            format!(r#"{{"type":"user_message","content":"x","timestamp":"{}"}}"#, t.to_rfc3339())
        };
        ok(&at(59));
        ok(&at(60));
        ok(&at(-86_400 * 365));
        assert!(matches!(invalid(&at(61)), ValidationError::TimestampInFuture { .. }));
        // A millisecond over the minute is too far.
        let t = now() + chrono::Duration::milliseconds(60_001);
        let text =
            format!(r#"{{"type":"user_message","content":"x","timestamp":"{}"}}"#, t.to_rfc3339());
        assert!(matches!(invalid(&text), ValidationError::TimestampInFuture { .. }));
    }

    #[test]
    fn scalar_metadata_values_become_strings() {
        let f = ok(
            r#"{"type":"file_upload","file_id":"a","file_url":"https://x.example/a","metadata":{"size":123,"neg":-4,"ratio":1.5,"ok":true,"no":false,"name":"a.png"}}"#,
        );
        let m: Vec<(&str, &str)> =
            f.metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(
            m,
            [
                ("name", "a.png"),
                ("neg", "-4"),
                ("no", "false"),
                ("ok", "true"),
                ("ratio", "1.5"),
                ("size", "123")
            ]
        );
    }

    #[test]
    fn non_scalar_metadata_values_are_format_errors() {
        format_err(r#"{"type":"user_message","content":"x","metadata":{"k":null}}"#);
        format_err(r#"{"type":"user_message","content":"x","metadata":{"k":[1]}}"#);
        format_err(r#"{"type":"user_message","content":"x","metadata":{"k":{"a":"b"}}}"#);
        format_err(r#"{"type":"user_message","content":"x","metadata":"k=v"}"#);
        format_err(r#"{"type":"user_message","content":"x","metadata":["k"]}"#);
        format_err(r#"{"type":"user_message","content":"x","metadata":5}"#);
        // A null metadata object is absent (Go semantics).
        assert!(ok(r#"{"type":"user_message","content":"x","metadata":null}"#).metadata.is_empty());
    }

    #[test]
    fn nul_bytes_are_removed_and_fields_trimmed() {
        let f = ok(
            "{\"type\":\"file_upload\",\"session_id\":\" S\\u0000 \",\"content\":\"\\u0000 hi\\u0000 there \\n\",\
             \"file_id\":\"\\tf\\u0000\",\"file_url\":\" https://x.example/a \",\"model_id\":\" m \",\
             \"metadata\":{\" k\\u0000 \":\" v \\u0000\"}}",
        );
        assert_eq!(f.session_id, "S");
        assert_eq!(f.content, "hi there");
        assert_eq!(f.file_id, "f");
        assert_eq!(f.file_url, "https://x.example/a");
        assert_eq!(f.model_id, "m");
        assert_eq!(f.metadata.get("k").map(String::as_str), Some("v"));
        let e =
            ok(r#"{"type":"error","sender":"ai","error":{"code":" E ","message":"\u0000 m "}}"#);
        let info = e.error.unwrap_or_default();
        assert_eq!((info.code.as_str(), info.message.as_str()), ("E", "m"));
    }

    #[test]
    fn content_of_only_whitespace_and_nul_is_empty() {
        let text = "{\"type\":\"user_message\",\"content\":\" \\u0000\\t \\u00a0\"}";
        assert_eq!(invalid(text), ValidationError::EmptyContent(FrameType::UserMessage));
        assert_eq!(
            invalid(r#"{"type":"ai_response","sender":"ai"}"#),
            ValidationError::EmptyContent(FrameType::AiResponse)
        );
        ok(r#"{"type":"ai_response","sender":"ai","content":"x"}"#);
    }

    #[test]
    fn file_frames_need_id_and_url() {
        assert_eq!(
            invalid(r#"{"type":"file_upload","file_url":"https://x.example/a"}"#),
            ValidationError::MissingFileId(FrameType::FileUpload)
        );
        assert_eq!(
            invalid(r#"{"type":"voice_message","file_id":"a"}"#),
            ValidationError::MissingFileUrl(FrameType::VoiceMessage)
        );
        ok(r#"{"type":"voice_message","file_id":"a","file_url":"https://x.example/a"}"#);
    }

    #[test]
    fn error_frames_need_code_and_message() {
        assert_eq!(invalid(r#"{"type":"error"}"#), ValidationError::MissingErrorObject);
        assert_eq!(
            invalid(r#"{"type":"error","error":null}"#),
            ValidationError::MissingErrorObject
        );
        assert_eq!(
            invalid(r#"{"type":"error","error":{"code":" ","message":"m"}}"#),
            ValidationError::MissingErrorCode
        );
        assert_eq!(
            invalid(r#"{"type":"error","error":{"code":"C"}}"#),
            ValidationError::MissingErrorMessage
        );
        let f = ok(
            r#"{"type":"error","error":{"code":"C","message":"m","recoverable":true,"retry_after":5,"extra":[1]}}"#,
        );
        assert_eq!(
            f.error,
            Some(ClientErrorInfo {
                code: "C".into(),
                message: "m".into(),
                recoverable: true,
                retry_after: Some(5)
            })
        );
        let f = ok(r#"{"type":"error","error":{"code":"C","message":"m","retry_after":-3}}"#);
        assert_eq!(f.error.and_then(|e| e.retry_after), None);
    }

    #[test]
    fn model_select_needs_model_id() {
        assert_eq!(
            invalid(r#"{"type":"model_select","session_id":"S"}"#),
            ValidationError::MissingModelId
        );
        ok(r#"{"type":"model_select","model_id":"m"}"#);
    }

    #[test]
    fn admin_frames_need_admin_sender_and_help_needs_user() {
        assert!(matches!(
            invalid(r#"{"type":"admin_join"}"#),
            ValidationError::SenderMustBeAdmin { sender: Sender::User, .. }
        ));
        assert!(matches!(
            invalid(r#"{"type":"admin_leave","sender":"ai"}"#),
            ValidationError::SenderMustBeAdmin { .. }
        ));
        ok(r#"{"type":"admin_join","sender":"admin"}"#);
        ok(r#"{"type":"admin_leave","sender":"admin"}"#);
        assert_eq!(
            invalid(r#"{"type":"help_request","sender":"admin"}"#),
            ValidationError::SenderMustBeUser(Sender::Admin)
        );
        ok(r#"{"type":"help_request"}"#);
        ok(r#"{"type":"help_request","sender":"user"}"#);
    }

    #[test]
    fn types_without_rules_pass() {
        for t in ["connection_status", "typing_indicator", "loading", "notification"] {
            ok(&format!(r#"{{"type":"{t}"}}"#));
        }
    }

    #[test]
    fn byte_limits_are_exact() {
        let cases = [
            ("session_id", 128, LimitedField::SessionId),
            ("content", 10_000, LimitedField::Content),
            ("file_id", 255, LimitedField::FileId),
            ("file_url", 2048, LimitedField::FileUrl),
            ("model_id", 100, LimitedField::ModelId),
        ];
        for (key, max, field) in cases {
            let frame = |n: usize| {
                format!(
                    r#"{{"type":"file_upload","file_id":"f","file_url":"u","content":"c","{key}":"{}"}}"#,
                    "x".repeat(n)
                )
            };
            ok(&frame(max));
            assert_eq!(
                invalid(&frame(max + 1)),
                ValidationError::FieldTooLong { field, bytes: max + 1, max },
                "{key}"
            );
        }
        // Bytes, not characters: 5 000 two-byte characters fill the content limit exactly.
        ok(&format!(r#"{{"type":"user_message","content":"{}"}}"#, "é".repeat(5000)));
        assert!(matches!(
            invalid(&format!(r#"{{"type":"user_message","content":"{}x"}}"#, "é".repeat(5000))),
            ValidationError::FieldTooLong { field: LimitedField::Content, .. }
        ));
        let meta = |n: usize| {
            format!(
                r#"{{"type":"user_message","content":"c","metadata":{{"k":"{}"}}}}"#,
                "v".repeat(n)
            )
        };
        ok(&meta(1000));
        assert_eq!(
            invalid(&meta(1001)),
            ValidationError::MetadataValueTooLong { key: "k".into(), bytes: 1001, max: 1000 }
        );
    }

    #[test]
    fn limits_apply_after_trimming() {
        let text = format!(r#"{{"type":"user_message","content":"  {}  "}}"#, "x".repeat(10_000));
        ok(&text);
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_keys_are_ignored() {
        let f = ok(
            r#"{"Type":"user_message","SESSION_ID":"S","Content":"hi","Sender":"user","extra":{"deep":[1,2,{"x":null}]},"models":5,"user_id":7}"#,
        );
        assert_eq!((f.session_id.as_str(), f.content.as_str()), ("S", "hi"));
        // The last duplicate wins; null leaves the earlier value.
        let f = ok(r#"{"type":"user_message","content":"a","CONTENT":"b","content":null}"#);
        assert_eq!(f.content, "b");
    }

    #[test]
    fn escaped_keys_are_matched() {
        let f = ok(r#"{"typ\u0065":"user_message","content":"x"}"#);
        assert_eq!(f.frame_type, FrameType::UserMessage);
    }

    #[test]
    fn deep_nesting_does_not_overflow_the_stack() {
        // Unknown keys are skipped iteratively, whatever their depth.
        let deep =
            format!(r#"{{"type":"loading","x":{}{}}}"#, "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse(&deep).is_ok());
        let unclosed = format!(r#"{{"type":"loading","x":{}"#, "[".repeat(100_000));
        assert!(matches!(parse(&unclosed), Err(InboundError::Format(_))));
        let deep_meta =
            format!(r#"{{"type":"loading","metadata":{{"k":{}}}}}"#, "[".repeat(100_000));
        format_err(&deep_meta);
    }

    #[test]
    fn sanitize_does_not_allocate_when_clean() {
        let s = String::from("clean");
        let ptr = s.as_ptr();
        let out = sanitize(s);
        assert_eq!(out.as_ptr(), ptr);
        assert_eq!(sanitize("\0 a \0".into()), "a");
        assert_eq!(sanitize("a\0b".into()), "ab");
        assert_eq!(sanitize("\u{3000}x\u{85}".into()), "x");
    }

    #[test]
    fn custom_limits_are_honoured() {
        let limits = InboundLimits { content: 3, ..InboundLimits::DEFAULT };
        assert!(parse_client_frame(r#"{"type":"user_message","content":"abc"}"#, now(), &limits)
            .is_ok());
        assert!(parse_client_frame(r#"{"type":"user_message","content":"abcd"}"#, now(), &limits)
            .is_err());
    }

    #[test]
    fn resume_names_its_reply_and_seq_or_is_invalid() {
        let ok =
            r#"{"type":"resume","session_id":"S","metadata":{"reply_id":"r1","after_seq":"3"}}"#;
        let f = parse_client_frame(ok, Utc::now(), &InboundLimits::DEFAULT).expect("valid");
        assert_eq!(f.resume_point(), Some(ResumePoint { reply_id: "r1", after_seq: 3 }));
        for bad in [
            r#"{"type":"resume","metadata":{"reply_id":"r1","after_seq":"3"}}"#,
            r#"{"type":"resume","session_id":"S","metadata":{"after_seq":"3"}}"#,
            r#"{"type":"resume","session_id":"S","metadata":{"reply_id":"r1"}}"#,
            r#"{"type":"resume","session_id":"S","metadata":{"reply_id":"r1","after_seq":"-1"}}"#,
            r#"{"type":"resume","session_id":"S","metadata":{"reply_id":"r1","after_seq":"x"}}"#,
        ] {
            let error = parse_client_frame(bad, Utc::now(), &InboundLimits::DEFAULT).unwrap_err();
            assert_eq!(error.to_error_info().message, "Message validation failed", "{bad}");
        }
    }

    #[test]
    fn stop_frames_parse_with_or_without_a_session() {
        let f = parse_client_frame(
            r#"{"type":"stop","session_id":"S","timestamp":"2026-02-21T10:00:00Z"}"#,
            now(),
            &InboundLimits::DEFAULT,
        )
        .expect("a stop frame is valid");
        assert_eq!(f.frame_type, FrameType::Stop);
        assert_eq!(f.session(), Some("S"));
        // Without a session the handler answers MISSING_FIELD; the parser accepts it.
        let bare = parse_client_frame(r#"{"type":"stop"}"#, now(), &InboundLimits::DEFAULT);
        assert_eq!(bare.expect("valid").session(), None);
    }
}
