//! What the resume tests share (issue 14, resumable replies; on one instance and across a
//! fleet): a frame's seq, the `resume` frame, and starting a reply to read its first chunks.

use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::{is_done, Client};

/// The frame's `metadata.seq`.
pub fn seq(frame: &Value) -> u64 {
    frame["metadata"]["seq"].as_str().and_then(|s| s.parse().ok()).expect("a decimal seq")
}

/// A `resume` frame of `reply` in `session` after `after_seq`.
pub fn resume_frame(session: &str, reply: &str, after_seq: u64) -> Value {
    json!({"type": "resume", "session_id": session, "timestamp": "2026-01-01T00:00:00Z",
           "metadata": {"reply_id": reply, "after_seq": after_seq.to_string()}})
}

/// Sends "Count to eight" in a new session and reads until `chunks` `ai_response` frames (or
/// `done`) came, each within `step`; every frame read.
pub async fn first_chunks(client: &mut Client, chunks: usize, step: Duration) -> Vec<Value> {
    client.send_user_message("new", "Count to eight").await;
    let mut seen = 0;
    client
        .recv_until(
            |f| {
                seen += usize::from(f["type"] == "ai_response");
                seen == chunks || is_done(f)
            },
            step,
        )
        .await
}
