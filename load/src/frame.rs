//! The server frames the generator's clients read (PROTOCOL.md §2): one borrowed struct of the
//! fields they use, shared by every scenario that follows replies (`run`, `churn`, `soak` and
//! `outage` through `convo`, `shutdown`). serde skips the other fields without building them,
//! which a `serde_json::Value` per frame (seven per reply) did not.

use std::borrow::Cow;

use serde::Deserialize;

/// A server frame, as far as a load client reads it.
#[derive(Debug, Deserialize)]
pub struct ServerFrame<'a> {
    /// `type`.
    #[serde(rename = "type", borrow)]
    pub kind: Cow<'a, str>,
    /// The session the frame belongs to (the server's id once it assigned one).
    #[serde(default, borrow)]
    pub session_id: Option<Cow<'a, str>>,
    /// A reply chunk's text.
    #[serde(default, borrow)]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    metadata: Option<FrameMetadata<'a>>,
    #[serde(default, borrow)]
    error: Option<FrameError<'a>>,
}

/// The `metadata` field of a reply chunk: `done` is `"true"` on a reply's last frame.
#[derive(Debug, Deserialize)]
struct FrameMetadata<'a> {
    #[serde(default, borrow)]
    done: Option<Cow<'a, str>>,
}

/// The `error` object of an error frame.
#[derive(Debug, Deserialize)]
struct FrameError<'a> {
    #[serde(default, borrow)]
    code: Option<Cow<'a, str>>,
}

impl<'a> ServerFrame<'a> {
    /// The frame in `text`; `None` when it is not a JSON object with a string `type`.
    pub fn parse(text: &'a str) -> Option<Self> {
        serde_json::from_str(text).ok()
    }

    /// Whether this is a reply's last frame (`harness::is_done`, on the typed frame).
    pub fn is_done(&self) -> bool {
        self.kind == "ai_response"
            && self.metadata.as_ref().and_then(|m| m.done.as_deref()) == Some("true")
    }

    /// An error frame's `error.code`.
    pub fn error_code(&self) -> Option<&str> {
        self.error.as_ref().and_then(|e| e.code.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_frames_are_read_with_the_fields_the_client_needs() {
        let done = json!({"type": "ai_response", "session_id": "s1", "content": "L3.0 ",
            "sender": "ai", "timestamp": "2026-12-06T00:00:00Z",
            "metadata": {"done": "true", "model": "stub", "extra": {"nested": [1, 2]}}});
        let text = done.to_string();
        let frame = ServerFrame::parse(&text).unwrap();
        assert_eq!((&*frame.kind, frame.session_id.as_deref()), ("ai_response", Some("s1")));
        assert_eq!(frame.content.as_deref(), Some("L3.0 "));
        assert!(frame.is_done());
        let chunk =
            json!({"type": "ai_response", "content": "L3.1 ", "metadata": {"done": "false"}});
        assert!(!ServerFrame::parse(&chunk.to_string()).unwrap().is_done());
        let error = json!({"type": "error", "sender": "ai",
            "error": {"code": "rate_limited", "message": "slow down", "recoverable": true}});
        let text = error.to_string();
        let frame = ServerFrame::parse(&text).unwrap();
        assert!(!frame.is_done());
        assert_eq!(frame.error_code(), Some("rate_limited"));
        assert!(ServerFrame::parse("not json").is_none());
        assert!(ServerFrame::parse(r#"{"session_id":"s1"}"#).is_none(), "no type");
    }
}
