//! The WebSocket frame envelope (PROTOCOL.md §3.4) and a constructor for every frame the server
//! emits (§3.8–§3.11).
//!
//! Output rules, exactly as §3.4: `type`, `sender` and `timestamp` always (the time as whole
//! seconds in UTC, `Z`); `session_id`, `content`, `file_id`, `file_url`, `model_id`, `models`,
//! `metadata` and `user_id` (§10 item 27) only when non-empty; `error` only on `type:"error"`.
//! [`Frame::to_json`] writes these bytes directly (it is on the hot path of every streamed chunk);
//! the `Serialize` impl produces the same text and exists for embedding frames elsewhere.
//!
//! Key order (JSON objects are unordered; chosen to match the document's examples): `type`,
//! `session_id`, `content`, `file_id`, `file_url`, `model_id`, `sender`, `timestamp`, `metadata`,
//! `models`, `user_id`, `error`. Metadata keys come out sorted, as Go's encoder sorts map keys.

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};

use chrono::{DateTime, Utc};
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::cut_to_char_boundary;
use super::error_code::ErrorInfo;
use super::inbound::ClientFrame;
use super::timestamp::{format_frame_time, frame_time, push_frame_time};

/// The 13 frame types of §3.6 (serde `snake_case`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FrameType {
    /// `user_message` — a user's chat line (handled).
    UserMessage,
    /// `ai_response` — a reply chunk, the final `done` frame, or a complete voice answer.
    AiResponse,
    /// `file_upload` — a file reference sent by the client (handled).
    FileUpload,
    /// `voice_message` — an audio file reference (handled).
    VoiceMessage,
    /// `error` — carries the `error` object.
    Error,
    /// `connection_status` — model list, binding, model change, help acknowledgement.
    ConnectionStatus,
    /// `typing_indicator` — defined, never emitted.
    TypingIndicator,
    /// `help_request` — the user asks for an administrator (handled).
    HelpRequest,
    /// `admin_join` — an administrator took the session over.
    AdminJoin,
    /// `admin_leave` — the administrator left.
    AdminLeave,
    /// `model_select` — the user picks a provider (handled).
    ModelSelect,
    /// `loading` — the reply is being prepared.
    Loading,
    /// `notification` — a system notice (connection limit).
    Notification,
    /// `resume` — a reconnected client asks for the rest of a reply (issue 14; handled).
    Resume,
    /// `stop` — a client stops its session's reply in progress (issue 15; handled).
    Stop,
}

impl FrameType {
    /// Every type, in §3.6 order, then the extensions of §11.
    pub const ALL: [FrameType; 15] = [
        FrameType::UserMessage,
        FrameType::AiResponse,
        FrameType::FileUpload,
        FrameType::VoiceMessage,
        FrameType::Error,
        FrameType::ConnectionStatus,
        FrameType::TypingIndicator,
        FrameType::HelpRequest,
        FrameType::AdminJoin,
        FrameType::AdminLeave,
        FrameType::ModelSelect,
        FrameType::Loading,
        FrameType::Notification,
        FrameType::Resume,
        FrameType::Stop,
    ];

    /// The wire text (`"user_message"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            FrameType::UserMessage => "user_message",
            FrameType::AiResponse => "ai_response",
            FrameType::FileUpload => "file_upload",
            FrameType::VoiceMessage => "voice_message",
            FrameType::Error => "error",
            FrameType::ConnectionStatus => "connection_status",
            FrameType::TypingIndicator => "typing_indicator",
            FrameType::HelpRequest => "help_request",
            FrameType::AdminJoin => "admin_join",
            FrameType::AdminLeave => "admin_leave",
            FrameType::ModelSelect => "model_select",
            FrameType::Loading => "loading",
            FrameType::Notification => "notification",
            FrameType::Resume => "resume",
            FrameType::Stop => "stop",
        }
    }

    /// The type for its exact (case-sensitive) wire text.
    pub fn from_wire(text: &str) -> Option<FrameType> {
        FrameType::ALL.into_iter().find(|t| t.as_str() == text)
    }
}

impl fmt::Display for FrameType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Who a frame is from: `user`, `ai`, `admin` or `system`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Sender {
    /// `user` — the default for client frames without `sender`.
    User,
    /// `ai` — replies and every error frame.
    Ai,
    /// `admin` — an administrator.
    Admin,
    /// `system` — server notices.
    System,
}

impl Sender {
    /// Every sender.
    pub const ALL: [Sender; 4] = [Sender::User, Sender::Ai, Sender::Admin, Sender::System];

    /// The wire text (`"user"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Sender::User => "user",
            Sender::Ai => "ai",
            Sender::Admin => "admin",
            Sender::System => "system",
        }
    }

    /// The sender for its exact (case-sensitive) wire text.
    pub fn from_wire(text: &str) -> Option<Sender> {
        Sender::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

impl fmt::Display for Sender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of `models`: a configured provider's client-visible `id` and its label `name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The provider `id` clients send in `model_select`.
    pub id: String,
    /// The provider's display name.
    pub name: String,
}

impl ModelInfo {
    /// A model entry.
    pub fn new(id: impl Into<String>, name: impl Into<String>) -> Self {
        ModelInfo { id: id.into(), name: name.into() }
    }
}

/// Longest admin name, in bytes, inside `admin_join`/`admin_leave` content (§3.9).
pub const ADMIN_NAME_CONTENT_MAX_BYTES: usize = 100;

/// Metadata key naming the reply an `ai_response` frame belongs to (PROTOCOL.md §11).
pub const REPLY_ID_KEY: &str = "reply_id";

/// Metadata key with the frame's decimal position in its reply ("1", "2", …).
pub const SEQ_KEY: &str = "seq";

/// `content` of the connection-limit notification (§3.9).
pub const CONNECTION_LIMIT_NOTIFICATION: &str = "Connection limit reached. You have reached the \
    maximum number of simultaneous connections. Close an existing connection to open a new one.";

/// `content` of the help-request acknowledgement (§3.8 `help_request`).
pub const HELP_REQUESTED_TEXT: &str =
    "Help request sent. An administrator will join your session shortly.";

/// One frame in either direction (§3.4), as the server writes it.
///
/// Invariant for server output: `error` is `Some` exactly on `type:"error"` frames; the
/// serialisers enforce the output side by writing `error` only on error frames. Empty strings,
/// vectors and maps mean "absent".
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Frame {
    /// `type`.
    #[serde(rename = "type")]
    pub frame_type: FrameType,
    /// `session_id`; empty = absent.
    #[serde(default)]
    pub session_id: String,
    /// `content`; empty = absent.
    #[serde(default)]
    pub content: String,
    /// `file_id`; empty = absent.
    #[serde(default)]
    pub file_id: String,
    /// `file_url`; empty = absent.
    #[serde(default)]
    pub file_url: String,
    /// `model_id`; empty = absent.
    #[serde(default)]
    pub model_id: String,
    /// `sender`; always written.
    pub sender: Sender,
    /// `timestamp`; always written, whole seconds, UTC.
    #[serde(with = "frame_time")]
    pub timestamp: DateTime<Utc>,
    /// `metadata`; empty = absent. Keys come out sorted.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// `models` (server → client only); empty = absent.
    #[serde(default)]
    pub models: Vec<ModelInfo>,
    /// `user_id` (§10 item 27, on `connection_status`); empty = absent.
    #[serde(default)]
    pub user_id: String,
    /// `error`; written only when `frame_type` is [`FrameType::Error`].
    #[serde(default)]
    pub error: Option<ErrorInfo>,
}

impl Frame {
    /// A frame with only `type`, `sender` and `timestamp` set.
    pub fn new(frame_type: FrameType, sender: Sender, now: DateTime<Utc>) -> Self {
        Frame {
            frame_type,
            session_id: String::new(),
            content: String::new(),
            file_id: String::new(),
            file_url: String::new(),
            model_id: String::new(),
            sender,
            timestamp: now,
            metadata: BTreeMap::new(),
            models: Vec::new(),
            user_id: String::new(),
            error: None,
        }
    }

    /// Sets `session_id`.
    #[must_use]
    pub fn with_session(mut self, session_id: impl Into<String>) -> Self {
        self.session_id = session_id.into();
        self
    }

    /// Sets `content`.
    #[must_use]
    pub fn with_content(mut self, content: impl Into<String>) -> Self {
        self.content = content.into();
        self
    }

    /// Sets `model_id`.
    #[must_use]
    pub fn with_model(mut self, model_id: impl Into<String>) -> Self {
        self.model_id = model_id.into();
        self
    }

    /// Adds one metadata entry.
    #[must_use]
    pub fn with_meta(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.metadata.insert(key.into(), value.into());
        self
    }

    /// `connection_status` from `system` with the model list: right after the upgrade
    /// (`session_id: None`) and on binding (`Some(id)`); `user_id` is added per §10 item 27
    /// (omitted when empty).
    pub fn connection_status(
        models: &[ModelInfo],
        session_id: Option<&str>,
        user_id: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let mut frame = Frame::new(FrameType::ConnectionStatus, Sender::System, now);
        frame.session_id = session_id.unwrap_or_default().to_string();
        frame.models = models.to_vec();
        frame.user_id = user_id.into();
        frame
    }

    /// `connection_status` from `ai` confirming `model_select`: `Model changed to <id>`. Stamped
    /// with `now` (the original sent a zero time; §10 item 27).
    pub fn model_changed(
        session_id: impl Into<String>,
        model_id: impl fmt::Display,
        now: DateTime<Utc>,
    ) -> Self {
        Frame::new(FrameType::ConnectionStatus, Sender::Ai, now)
            .with_session(session_id)
            .with_content(format!("Model changed to {model_id}"))
    }

    /// `connection_status` from `ai` acknowledging `help_request` ([`HELP_REQUESTED_TEXT`]).
    pub fn help_requested(session_id: impl Into<String>, now: DateTime<Utc>) -> Self {
        Frame::new(FrameType::ConnectionStatus, Sender::Ai, now)
            .with_session(session_id)
            .with_content(HELP_REQUESTED_TEXT)
    }

    /// `loading` from `ai`, sent before the LLM is called.
    pub fn loading(session_id: impl Into<String>, now: DateTime<Utc>) -> Self {
        Frame::new(FrameType::Loading, Sender::Ai, now).with_session(session_id)
    }

    /// One streamed `ai_response` chunk: metadata `streaming:"true"`, `done:"false"` (§3.10).
    /// Callers skip empty chunks.
    pub fn ai_chunk(
        session_id: impl Into<String>,
        model_id: impl Into<String>,
        text: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Frame::new(FrameType::AiResponse, Sender::Ai, now)
            .with_session(session_id)
            .with_model(model_id)
            .with_content(text)
            .with_meta("streaming", "true")
            .with_meta("done", "false")
    }

    /// Stamps a streamed `ai_response` with its reply's identity (PROTOCOL.md §11): the same
    /// `metadata.reply_id` on every frame of one reply and `metadata.seq` counting "1", "2", …;
    /// the `done` frame, or the error frame that ends a failed reply, takes the next seq. A resuming client names both (`resume`).
    #[must_use]
    pub fn in_reply(self, reply_id: impl Into<String>, seq: u64) -> Self {
        self.with_meta(REPLY_ID_KEY, reply_id).with_meta(SEQ_KEY, seq.to_string())
    }

    /// The text of `Frame::ai_chunk(session_id, model_id, text, now).in_reply(reply_id, seq)`
    /// encoded ([`Frame::to_json`]), written without building that frame: a streamed reply sends
    /// one per chunk, and the frame's strings and metadata map were most of its cost (issue 18).
    pub fn ai_chunk_json(
        session_id: &str,
        model_id: &str,
        text: &str,
        (reply_id, seq): (&str, u64),
        now: DateTime<Utc>,
    ) -> String {
        let seq_text = seq.to_string();
        let mut metadata = [
            ("streaming", "true"),
            ("done", "false"),
            (REPLY_ID_KEY, reply_id),
            (SEQ_KEY, seq_text.as_str()),
        ];
        // The frame's metadata map writes its keys sorted.
        metadata.sort_unstable_by_key(|&(key, _)| key);
        let size = 160 + session_id.len() + model_id.len() + text.len() + reply_id.len();
        let mut out = String::with_capacity(size);
        out.push_str("{\"type\":\"");
        out.push_str(FrameType::AiResponse.as_str());
        out.push('"');
        push_str_field(&mut out, "session_id", session_id);
        push_str_field(&mut out, "content", text);
        push_str_field(&mut out, "model_id", model_id);
        out.push_str(",\"sender\":\"");
        out.push_str(Sender::Ai.as_str());
        out.push_str("\",\"timestamp\":\"");
        push_frame_time(&mut out, now);
        out.push_str("\",\"metadata\":{");
        for (i, (key, value)) in metadata.into_iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, key);
            out.push(':');
            push_json_str(&mut out, value);
        }
        out.push_str("}}");
        out
    }

    /// The final streamed `ai_response`: no content, metadata `streaming:"true"`, `done:"true"`.
    pub fn ai_done(
        session_id: impl Into<String>,
        model_id: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Frame::new(FrameType::AiResponse, Sender::Ai, now)
            .with_session(session_id)
            .with_model(model_id)
            .with_meta("streaming", "true")
            .with_meta("done", "true")
    }

    /// A complete, non-streamed `ai_response` (the voice answer of §3.8): no metadata, no
    /// `model_id`.
    pub fn ai_message(
        session_id: impl Into<String>,
        content: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Frame::new(FrameType::AiResponse, Sender::Ai, now)
            .with_session(session_id)
            .with_content(content)
    }

    /// A chat line relayed between a user and the assisting admin (§10 item 2): `user_message`
    /// with the given `sender` (`admin` towards the user, `user` towards the admin).
    pub fn relayed_message(
        session_id: impl Into<String>,
        content: impl Into<String>,
        sender: Sender,
        now: DateTime<Utc>,
    ) -> Self {
        Frame::new(FrameType::UserMessage, sender, now)
            .with_session(session_id)
            .with_content(content)
    }

    /// The broadcast of a `file_upload`/`voice_message` (§3.8 step 5): the client frame's `type`,
    /// `content`, `file_id`, `file_url` and `metadata`, the authoritative `session_id`, server
    /// time, and `sender` (`user`, or `admin` for the assisting admin — §10 item 25).
    pub fn file_broadcast(
        client: &ClientFrame,
        session_id: impl Into<String>,
        sender: Sender,
        now: DateTime<Utc>,
    ) -> Self {
        let mut frame = Frame::new(client.frame_type, sender, now).with_session(session_id);
        frame.content = client.content.clone();
        frame.file_id = client.file_id.clone();
        frame.file_url = client.file_url.clone();
        frame.metadata = client.metadata.clone();
        frame
    }

    /// An error frame (sender `ai`, §3.11); `session_id` is echoed when known (§10 item 10).
    pub fn error(info: ErrorInfo, session_id: Option<&str>, now: DateTime<Utc>) -> Self {
        let mut frame = Frame::new(FrameType::Error, Sender::Ai, now);
        frame.session_id = session_id.unwrap_or_default().to_string();
        frame.error = Some(info);
        frame
    }

    /// `admin_join` (§3.9): content `Administrator <name> has joined the session` with the name
    /// cut to its first 100 bytes on a character boundary; metadata `admin_id`/`admin_name`
    /// uncut; sender `admin`.
    pub fn admin_join(
        session_id: impl Into<String>,
        admin_id: impl Into<String>,
        admin_name: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self::admin_presence(FrameType::AdminJoin, "joined", session_id, admin_id, admin_name, now)
    }

    /// `admin_leave` (§3.9, emitted per §10 item 3): as [`Frame::admin_join`] with
    /// `has left the session`.
    pub fn admin_leave(
        session_id: impl Into<String>,
        admin_id: impl Into<String>,
        admin_name: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self::admin_presence(FrameType::AdminLeave, "left", session_id, admin_id, admin_name, now)
    }

    fn admin_presence(
        frame_type: FrameType,
        verb: &str,
        session_id: impl Into<String>,
        admin_id: impl Into<String>,
        admin_name: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        let admin_name = admin_name.into();
        let shown = cut_to_char_boundary(&admin_name, ADMIN_NAME_CONTENT_MAX_BYTES);
        let content = format!("Administrator {shown} has {verb} the session");
        Frame::new(frame_type, Sender::Admin, now)
            .with_session(session_id)
            .with_content(content)
            .with_meta("admin_id", admin_id)
            .with_meta("admin_name", admin_name)
    }

    /// `notification` from `system` to a user's other connections when a new one is refused by
    /// the per-user cap ([`CONNECTION_LIMIT_NOTIFICATION`]).
    pub fn notification_connection_limit(now: DateTime<Utc>) -> Self {
        Frame::new(FrameType::Notification, Sender::System, now)
            .with_content(CONNECTION_LIMIT_NOTIFICATION)
    }

    /// The frame as one JSON object, per the output rules of §3.4.
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.json_size_hint());
        self.write_json(&mut out);
        out
    }

    /// Appends [`Frame::to_json`]'s text to `out` (lets callers reuse a buffer).
    pub fn write_json(&self, out: &mut String) {
        out.push_str("{\"type\":\"");
        out.push_str(self.frame_type.as_str());
        out.push('"');
        push_str_field(out, "session_id", &self.session_id);
        push_str_field(out, "content", &self.content);
        push_str_field(out, "file_id", &self.file_id);
        push_str_field(out, "file_url", &self.file_url);
        push_str_field(out, "model_id", &self.model_id);
        out.push_str(",\"sender\":\"");
        out.push_str(self.sender.as_str());
        out.push_str("\",\"timestamp\":\"");
        push_frame_time(out, self.timestamp);
        out.push('"');
        if !self.metadata.is_empty() {
            out.push_str(",\"metadata\":{");
            for (i, (k, v)) in self.metadata.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                push_json_str(out, k);
                out.push(':');
                push_json_str(out, v);
            }
            out.push('}');
        }
        if !self.models.is_empty() {
            out.push_str(",\"models\":[");
            for (i, m) in self.models.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str("{\"id\":");
                push_json_str(out, &m.id);
                out.push_str(",\"name\":");
                push_json_str(out, &m.name);
                out.push('}');
            }
            out.push(']');
        }
        push_str_field(out, "user_id", &self.user_id);
        if let Some(e) = self.written_error() {
            out.push_str(",\"error\":{\"code\":\"");
            out.push_str(e.code.as_str());
            out.push_str("\",\"message\":");
            push_json_str(out, &e.message);
            out.push_str(",\"recoverable\":");
            out.push_str(if e.recoverable { "true" } else { "false" });
            if let Some(ms) = e.retry_after_ms() {
                let _ = write!(out, ",\"retry_after\":{ms}");
            }
            out.push('}');
        }
        out.push('}');
    }

    /// The error object as written: only on error frames.
    fn written_error(&self) -> Option<&ErrorInfo> {
        self.error.as_ref().filter(|_| self.frame_type == FrameType::Error)
    }

    fn json_size_hint(&self) -> usize {
        let meta: usize = self.metadata.iter().map(|(k, v)| k.len() + v.len() + 6).sum();
        let models: usize = self.models.iter().map(|m| m.id.len() + m.name.len() + 20).sum();
        96 + self.session_id.len()
            + self.content.len()
            + self.file_id.len()
            + self.file_url.len()
            + self.model_id.len()
            + self.user_id.len()
            + meta
            + models
            + self.error.as_ref().map_or(0, |e| e.message.len() + 80)
    }
}

impl Serialize for Frame {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("type", &self.frame_type)?;
        for (key, value) in [
            ("session_id", &self.session_id),
            ("content", &self.content),
            ("file_id", &self.file_id),
            ("file_url", &self.file_url),
            ("model_id", &self.model_id),
        ] {
            if !value.is_empty() {
                map.serialize_entry(key, value)?;
            }
        }
        map.serialize_entry("sender", &self.sender)?;
        map.serialize_entry("timestamp", &format_frame_time(self.timestamp))?;
        if !self.metadata.is_empty() {
            map.serialize_entry("metadata", &self.metadata)?;
        }
        if !self.models.is_empty() {
            map.serialize_entry("models", &self.models)?;
        }
        if !self.user_id.is_empty() {
            map.serialize_entry("user_id", &self.user_id)?;
        }
        if let Some(e) = self.written_error() {
            map.serialize_entry("error", e)?;
        }
        map.end()
    }
}

/// `,"key":"value"` when `value` is non-empty.
fn push_str_field(out: &mut String, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    out.push_str(",\"");
    out.push_str(key);
    out.push_str("\":");
    push_json_str(out, value);
}

/// A JSON string literal, escaped exactly as `serde_json` does (`"`, `\`, and control
/// characters; everything else verbatim UTF-8).
fn push_json_str(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let escape: Option<&str> = match b {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            b'\n' => Some("\\n"),
            b'\r' => Some("\\r"),
            b'\t' => Some("\\t"),
            0x08 => Some("\\b"),
            0x0c => Some("\\f"),
            0x00..=0x1f => Some(""),
            _ => None,
        };
        let Some(escape) = escape else { continue };
        // Escaped bytes are ASCII, so both slice ends are character boundaries.
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::error_code::ErrorCode;
    use chrono::TimeZone;
    use std::time::Duration;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 2, 21, 10, 0, 0).single().unwrap_or_default()
            + chrono::Duration::milliseconds(789)
    }

    const T: &str = "2026-02-21T10:00:00Z";

    fn golden(frame: &Frame, want: &str) {
        assert_eq!(frame.to_json(), want);
        assert_eq!(serde_json::to_string(frame).unwrap_or_default(), want);
        // The text is valid JSON and decodes back to the same frame (modulo sub-second time).
        let back: Frame = serde_json::from_str(want).unwrap_or_else(|e| panic!("{e}: {want}"));
        let mut expected = frame.clone();
        expected.timestamp = back.timestamp;
        if expected.frame_type != FrameType::Error {
            expected.error = None;
        }
        assert_eq!(back, expected);
    }

    fn models() -> Vec<ModelInfo> {
        vec![ModelInfo::new("openai-gpt4", "GPT-4"), ModelInfo::new("anthropic-claude", "Claude")]
    }

    #[test]
    fn connection_status_on_connect_has_models_and_user_id_only() {
        golden(
            &Frame::connection_status(&models(), None, "u1", now()),
            &format!(
                r#"{{"type":"connection_status","sender":"system","timestamp":"{T}","models":[{{"id":"openai-gpt4","name":"GPT-4"}},{{"id":"anthropic-claude","name":"Claude"}}],"user_id":"u1"}}"#
            ),
        );
    }

    #[test]
    fn connection_status_on_binding_adds_session_id() {
        golden(
            &Frame::connection_status(&models()[..1], Some("S"), "", now()),
            &format!(
                r#"{{"type":"connection_status","session_id":"S","sender":"system","timestamp":"{T}","models":[{{"id":"openai-gpt4","name":"GPT-4"}}]}}"#
            ),
        );
    }

    #[test]
    fn loading_frame() {
        golden(
            &Frame::loading("S", now()),
            &format!(r#"{{"type":"loading","session_id":"S","sender":"ai","timestamp":"{T}"}}"#),
        );
    }

    #[test]
    fn streaming_chunks_and_done() {
        golden(
            &Frame::ai_chunk("S", "openai-gpt4", "Hel", now()),
            &format!(
                r#"{{"type":"ai_response","session_id":"S","content":"Hel","model_id":"openai-gpt4","sender":"ai","timestamp":"{T}","metadata":{{"done":"false","streaming":"true"}}}}"#
            ),
        );
        golden(
            &Frame::ai_done("S", "openai-gpt4", now()),
            &format!(
                r#"{{"type":"ai_response","session_id":"S","model_id":"openai-gpt4","sender":"ai","timestamp":"{T}","metadata":{{"done":"true","streaming":"true"}}}}"#
            ),
        );
    }

    #[test]
    fn reply_frames_carry_their_reply_id_and_seq() {
        let now = DateTime::UNIX_EPOCH;
        let chunk = Frame::ai_chunk("S", "m", "Hel", now).in_reply("r1", 1);
        let done = Frame::ai_done("S", "m", now).in_reply("r1", 2);
        assert_eq!(chunk.metadata.get("reply_id").map(String::as_str), Some("r1"));
        assert_eq!(chunk.metadata.get("seq").map(String::as_str), Some("1"));
        assert_eq!(done.metadata.get("seq").map(String::as_str), Some("2"));
        assert_eq!(done.metadata.get("done").map(String::as_str), Some("true"), "others kept");
    }

    #[test]
    fn voice_answer_has_no_metadata_or_model() {
        golden(
            &Frame::ai_message("S", "It says hello", now()),
            &format!(
                r#"{{"type":"ai_response","session_id":"S","content":"It says hello","sender":"ai","timestamp":"{T}"}}"#
            ),
        );
    }

    #[test]
    fn error_frames() {
        golden(
            &Frame::error(
                ErrorInfo::too_many_requests(Duration::from_millis(41_234)),
                Some("S"),
                now(),
            ),
            &format!(
                r#"{{"type":"error","session_id":"S","sender":"ai","timestamp":"{T}","error":{{"code":"TOO_MANY_REQUESTS","message":"Too many requests, please slow down","recoverable":true,"retry_after":41234}}}}"#
            ),
        );
        golden(
            &Frame::error(ErrorInfo::validation_failed(), None, now()),
            &format!(
                r#"{{"type":"error","sender":"ai","timestamp":"{T}","error":{{"code":"INVALID_FORMAT","message":"Message validation failed","recoverable":true}}}}"#
            ),
        );
        golden(
            &Frame::error(ErrorInfo::invalid_token(), None, now()),
            &format!(
                r#"{{"type":"error","sender":"ai","timestamp":"{T}","error":{{"code":"INVALID_TOKEN","message":"Invalid authentication token","recoverable":false}}}}"#
            ),
        );
    }

    #[test]
    fn error_object_only_on_error_frames() {
        let mut f = Frame::loading("S", now());
        f.error = Some(ErrorInfo::unexpected());
        assert!(!f.to_json().contains("\"error\""));
        assert!(!serde_json::to_string(&f).unwrap_or_default().contains("\"error\""));
    }

    #[test]
    fn admin_join_and_leave() {
        golden(
            &Frame::admin_join("S", "a1", "Jane", now()),
            &format!(
                r#"{{"type":"admin_join","session_id":"S","content":"Administrator Jane has joined the session","sender":"admin","timestamp":"{T}","metadata":{{"admin_id":"a1","admin_name":"Jane"}}}}"#
            ),
        );
        golden(
            &Frame::admin_leave("S", "a1", "Jane", now()),
            &format!(
                r#"{{"type":"admin_leave","session_id":"S","content":"Administrator Jane has left the session","sender":"admin","timestamp":"{T}","metadata":{{"admin_id":"a1","admin_name":"Jane"}}}}"#
            ),
        );
    }

    #[test]
    fn admin_name_is_cut_to_100_bytes_on_a_char_boundary_in_content_only() {
        // 99 ASCII bytes then a 2-byte 'é': byte 100 falls inside it, so the cut keeps 99.
        let name = format!("{}é{}", "a".repeat(99), "tail");
        let f = Frame::admin_join("S", "a1", name.clone(), now());
        assert_eq!(f.content, format!("Administrator {} has joined the session", "a".repeat(99)));
        assert_eq!(f.metadata.get("admin_name"), Some(&name));
        let exact = "b".repeat(100);
        let f = Frame::admin_leave("S", "a1", format!("{exact}c"), now());
        assert_eq!(f.content, format!("Administrator {exact} has left the session"));
    }

    #[test]
    fn connection_limit_notification() {
        golden(
            &Frame::notification_connection_limit(now()),
            &format!(
                r#"{{"type":"notification","content":"Connection limit reached. You have reached the maximum number of simultaneous connections. Close an existing connection to open a new one.","sender":"system","timestamp":"{T}"}}"#
            ),
        );
    }

    #[test]
    fn model_changed_and_help_requested() {
        golden(
            &Frame::model_changed("S", "anthropic-claude", now()),
            &format!(
                r#"{{"type":"connection_status","session_id":"S","content":"Model changed to anthropic-claude","sender":"ai","timestamp":"{T}"}}"#
            ),
        );
        golden(
            &Frame::help_requested("S", now()),
            &format!(
                r#"{{"type":"connection_status","session_id":"S","content":"Help request sent. An administrator will join your session shortly.","sender":"ai","timestamp":"{T}"}}"#
            ),
        );
    }

    #[test]
    fn relayed_message_keeps_sender() {
        golden(
            &Frame::relayed_message("S", "Hi, I'm here", Sender::Admin, now()),
            &format!(
                r#"{{"type":"user_message","session_id":"S","content":"Hi, I'm here","sender":"admin","timestamp":"{T}"}}"#
            ),
        );
    }

    #[test]
    fn file_fields_and_escaping() {
        let mut f = Frame::new(FrameType::FileUpload, Sender::User, now())
            .with_session("S")
            .with_content("quote \" backslash \\ nl \n tab \t ctl \u{1} del \u{7f} é ✓ <&>")
            .with_meta("filename", "a.png");
        f.file_id = "a.png".into();
        f.file_url = "https://cdn.example.com/a.png".into();
        let want = serde_json::to_string(&f).unwrap_or_default();
        assert_eq!(f.to_json(), want);
        assert!(want.contains(r#""content":"quote \" backslash \\ nl \n tab \t ctl \u0001 del "#));
        assert!(want.contains(r#""file_id":"a.png","file_url":"https://cdn.example.com/a.png""#));
    }

    #[test]
    fn wire_names_round_trip() {
        for t in FrameType::ALL {
            assert_eq!(FrameType::from_wire(t.as_str()), Some(t));
            let quoted = format!("\"{t}\"");
            assert_eq!(serde_json::to_string(&t).unwrap_or_default(), quoted);
        }
        for s in Sender::ALL {
            assert_eq!(Sender::from_wire(s.as_str()), Some(s));
            assert_eq!(serde_json::to_string(&s).unwrap_or_default(), format!("\"{s}\""));
        }
        assert_eq!(FrameType::from_wire("ping"), None);
        assert_eq!(FrameType::from_wire("USER_MESSAGE"), None);
        assert_eq!(Sender::from_wire("bot"), None);
    }

    #[test]
    fn error_info_code_is_typed() {
        let f = Frame::error(ErrorInfo::database_error(), Some("S"), now());
        assert_eq!(f.error.map(|e| e.code), Some(ErrorCode::DatabaseError));
    }
}
