//! `frame_parser`: the inbound client-frame pipeline (PROTOCOL.md §3.5–§3.6) and the server-frame
//! serialisers (§3.4), driven by arbitrary bytes.
//!
//! Input: any bytes, read as UTF-8 lossily, passed to
//! `chatbox_core::protocol::parse_client_frame` at a fixed `now` (and, for the no-panic and
//! invariant checks only, at chrono's earliest and latest instants).
//!
//! Checked on every `Ok` frame (the documented invariants of `ClientFrame`):
//! * every string field, metadata key and value, `error.code` and `error.message` contains no
//!   NUL and has no leading or trailing whitespace;
//! * the byte limits of `InboundLimits::default()` hold (`session_id` 128, `content` 10 000,
//!   `file_id` 255, `file_url` 2 048, `model_id` 100, each metadata value 1 000);
//! * the per-type rules of §3.6 hold (non-empty `content` for `user_message`/`ai_response`,
//!   `file_id` and `file_url` for `file_upload`/`voice_message`, a complete `error` object for
//!   `error`, `model_id` for `model_select`, `sender` admin for `admin_join`/`admin_leave`,
//!   `sender` user for `help_request`; for `resume` (issue 14) a `session_id` and a resume point
//!   whose `reply_id` is the non-empty `metadata.reply_id` and whose `after_seq` is
//!   `metadata.after_seq`, all ASCII digits, read as a `u64` — and no resume point on any other
//!   type), the timestamp is at most one minute ahead, and `error.retry_after` is never `Some(0)`;
//! * server frames built from it (`file_broadcast`, `relayed_message`, `model_changed`,
//!   `admin_join`, `ai_chunk`, an `invalid_model` error) serialise without panicking, and
//!   `Frame::to_json` equals `serde_json::to_string(&frame)` (documented), is valid JSON, and
//!   decodes back to the same frame (modulo the sub-second time);
//! * round trip: the JSON of a `file_broadcast` of a file frame, and of a `relayed_message` of
//!   non-empty content, parses again as a client frame with the same fields (sanitising is
//!   idempotent and the serialiser escapes correctly).
//!
//! Every `Err` must map to the `INVALID_FORMAT` error object (§3.5 steps 1 and 4).

use std::sync::LazyLock;

use chatbox_core::protocol::{
    parse_client_frame, ErrorCode, ErrorInfo, Frame, FrameType, InboundError, InboundLimits, Sender,
};
use chrono::{DateTime, TimeZone, Utc};

/// The fixed server clock of the target (2026-02-21T10:00:00.789Z).
pub static NOW: LazyLock<DateTime<Utc>> = LazyLock::new(|| {
    Utc.with_ymd_and_hms(2026, 2, 21, 10, 0, 0).single().unwrap_or_default()
        + chrono::Duration::milliseconds(789)
});

/// One fuzz iteration.
pub fn run(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let limits = InboundLimits::default();
    let now = *NOW;
    match parse_client_frame(&text, now, &limits) {
        Ok(frame) => {
            check_frame(&frame, now, &limits, &text);
            check_server_frames(&frame, now, &limits);
        }
        Err(e) => check_error(&e),
    }
    // The extremes of chrono's range must not panic either (the future check saturates).
    for extreme in [DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC] {
        match parse_client_frame(&text, extreme, &limits) {
            Ok(frame) => check_frame(&frame, extreme, &limits, &text),
            Err(e) => check_error(&e),
        }
    }
}

fn check_error(e: &InboundError) {
    let info = e.to_error_info();
    assert_eq!(info.code, ErrorCode::InvalidFormat, "{e}: wrong error code");
    assert!(info.recoverable, "{e}: inbound errors are recoverable");
    // Display must not panic and must say something.
    assert!(!e.to_string().is_empty());
}

fn clean(what: &str, s: &str, input: &str) {
    assert!(!s.contains('\0'), "{what} {s:?} contains NUL; input {input:?}");
    assert_eq!(s.trim(), s, "{what} {s:?} is not trimmed; input {input:?}");
}

/// The invariants of a `ClientFrame` that passed the pipeline.
pub fn check_frame(
    f: &chatbox_core::protocol::ClientFrame,
    now: DateTime<Utc>,
    limits: &InboundLimits,
    input: &str,
) {
    for (what, value, max) in [
        ("session_id", &f.session_id, limits.session_id),
        ("content", &f.content, limits.content),
        ("file_id", &f.file_id, limits.file_id),
        ("file_url", &f.file_url, limits.file_url),
        ("model_id", &f.model_id, limits.model_id),
    ] {
        clean(what, value, input);
        assert!(value.len() <= max, "{what} is {} bytes > {max}; input {input:?}", value.len());
    }
    for (k, v) in &f.metadata {
        clean("metadata key", k, input);
        clean("metadata value", v, input);
        assert!(
            v.len() <= limits.metadata_value,
            "metadata value of {k:?} is {} bytes; input {input:?}",
            v.len()
        );
    }
    if let Some(e) = &f.error {
        clean("error.code", &e.code, input);
        clean("error.message", &e.message, input);
        assert_ne!(e.retry_after, Some(0), "retry_after 0 must read as absent; input {input:?}");
    }
    let skew = chrono::Duration::from_std(limits.max_future).unwrap_or(chrono::TimeDelta::MAX);
    if let Some(latest) = now.checked_add_signed(skew) {
        assert!(f.timestamp <= latest, "timestamp {} too far ahead; input {input:?}", f.timestamp);
    }
    assert_eq!(f.session(), Some(f.session_id.as_str()).filter(|s| !s.is_empty()));
    match f.frame_type {
        FrameType::UserMessage | FrameType::AiResponse => {
            assert!(!f.content.is_empty(), "{} without content; input {input:?}", f.frame_type);
        }
        FrameType::FileUpload | FrameType::VoiceMessage => {
            assert!(!f.file_id.is_empty(), "{} without file_id; input {input:?}", f.frame_type);
            assert!(!f.file_url.is_empty(), "{} without file_url; input {input:?}", f.frame_type);
        }
        FrameType::Error => {
            let e = f.error.as_ref();
            assert!(
                e.is_some_and(|e| !e.code.is_empty() && !e.message.is_empty()),
                "error frame without a complete error object; input {input:?}"
            );
        }
        FrameType::ModelSelect => {
            assert!(!f.model_id.is_empty(), "model_select without model_id; input {input:?}");
        }
        FrameType::AdminJoin | FrameType::AdminLeave => {
            assert_eq!(f.sender, Sender::Admin, "{} not from admin; input {input:?}", f.frame_type);
        }
        FrameType::HelpRequest => {
            assert_eq!(f.sender, Sender::User, "help_request not from user; input {input:?}");
        }
        FrameType::Resume => check_resume(f, input),
        _ => {}
    }
    if f.frame_type != FrameType::Resume {
        assert!(f.resume_point().is_none(), "a resume point on {}; input {input:?}", f.frame_type);
    }
}

/// A `resume` that passed the pipeline names its session, its reply and a decimal seq.
fn check_resume(f: &chatbox_core::protocol::ClientFrame, input: &str) {
    assert!(!f.session_id.is_empty(), "resume without session_id; input {input:?}");
    let Some(point) = f.resume_point() else {
        panic!("a valid resume without a resume point; input {input:?}")
    };
    assert_eq!(Some(point.reply_id), f.metadata.get("reply_id").map(String::as_str));
    assert!(!point.reply_id.is_empty(), "empty reply_id; input {input:?}");
    let text = f.metadata.get("after_seq").map(String::as_str).unwrap_or_default();
    assert!(text.bytes().all(|b| b.is_ascii_digit()), "after_seq {text:?}; input {input:?}");
    assert_eq!(text.parse::<u64>().ok(), Some(point.after_seq), "after_seq; input {input:?}");
}

/// Serialises `frame` both ways and checks they agree and decode back.
fn check_serialisation(frame: &Frame) -> String {
    let json = frame.to_json();
    let via_serde = serde_json::to_string(frame);
    assert_eq!(via_serde.as_deref().ok(), Some(json.as_str()), "to_json differs from Serialize");
    let back: Frame = match serde_json::from_str(&json) {
        Ok(back) => back,
        Err(e) => panic!("to_json wrote JSON that does not decode as a Frame: {e}: {json}"),
    };
    let mut expected = frame.clone();
    expected.timestamp = back.timestamp;
    if expected.frame_type != FrameType::Error {
        expected.error = None;
    }
    assert_eq!(back, expected, "frame does not survive a JSON round trip: {json}");
    json
}

fn check_server_frames(
    f: &chatbox_core::protocol::ClientFrame,
    now: DateTime<Utc>,
    limits: &InboundLimits,
) {
    let session = if f.session_id.is_empty() { "S" } else { f.session_id.as_str() };

    let broadcast = Frame::file_broadcast(f, session, Sender::User, now);
    let json = check_serialisation(&broadcast);
    if matches!(f.frame_type, FrameType::FileUpload | FrameType::VoiceMessage) {
        match parse_client_frame(&json, now, limits) {
            Ok(again) => {
                assert_eq!(again.frame_type, f.frame_type, "{json}");
                assert_eq!(again.session_id, session, "{json}");
                assert_eq!(again.content, f.content, "{json}");
                assert_eq!(again.file_id, f.file_id, "{json}");
                assert_eq!(again.file_url, f.file_url, "{json}");
                assert_eq!(again.metadata, f.metadata, "{json}");
                assert_eq!(again.sender, Sender::User, "{json}");
            }
            Err(e) => panic!("our own broadcast does not parse back: {e}: {json}"),
        }
    }

    if !f.content.is_empty() {
        let relayed = Frame::relayed_message(session, f.content.clone(), Sender::Admin, now);
        let json = check_serialisation(&relayed);
        match parse_client_frame(&json, now, limits) {
            Ok(again) => {
                assert_eq!(again.frame_type, FrameType::UserMessage, "{json}");
                assert_eq!(again.content, f.content, "{json}");
                assert_eq!(again.sender, Sender::Admin, "{json}");
            }
            Err(e) => panic!("a relayed message does not parse back: {e}: {json}"),
        }
        check_serialisation(&Frame::ai_chunk(session, f.model_id.clone(), f.content.clone(), now));
        check_serialisation(&Frame::admin_join(session, f.file_id.clone(), f.content.clone(), now));
    }
    check_serialisation(&Frame::model_changed(session, &f.model_id, now));
    let invalid_model = ErrorInfo::invalid_model(&f.model_id);
    check_serialisation(&Frame::error(invalid_model, f.session(), now));
    if let Some(e) = &f.error {
        // A client's error text echoed in a server error object must serialise too.
        let info = ErrorInfo::new(ErrorCode::InvalidFormat, e.message.clone());
        check_serialisation(&Frame::error(info, f.session(), now));
    }
}
