//! `stop` (issue 15): any connection of a session — its owner or the assisting admin — stops the
//! reply in progress. The reply's stream ends at once (the provider request is dropped, which
//! cancels it), its partial text is stored as the `ai` message marked `interrupted`, and it ends
//! with its usual `done` frame marked `interrupted` (`answer.rs`). It is handled at once, not in
//! the session's ordered worker (which is busy with that very reply). In a fleet the stop is also
//! sent through the delivery `Bus` to the other instances, since the reply may stream on the
//! instance that received the message rather than this one. A stop with nothing in flight is
//! answered by nothing.

use chatbox_core::protocol::ClientFrame;

use super::{check_access, require_session, ConnCtx};
use crate::engine::hub::Engine;

/// Handles one `stop`.
pub(super) async fn apply(engine: &Engine, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(session) = require_session(engine, conn, frame) else { return };
    // A connection already bound elsewhere skipped the binding check: check this session too.
    if !check_access(engine, conn, session).await {
        return;
    }
    let here = engine.replies.stop(session);
    engine.delivery.stop_reply(session);
    tracing::debug!(session_id = session, user_id = %conn.caller.user_id, here, "stop requested");
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::testing::{is_done, is_type, Harness};
    use crate::engine::llm::{ChatRequest, EventStream, LlmProvider, ProviderError, StreamEvent};

    /// Streams "w0 ", "w1 ", … one word every 20 ms, 1 000 words: a reply that is still going
    /// when the test stops it.
    #[derive(Debug)]
    struct Slow;

    #[async_trait::async_trait]
    impl LlmProvider for Slow {
        fn kind(&self) -> &'static str {
            "echo"
        }

        async fn open_stream(&self, _: &ChatRequest) -> Result<EventStream, ProviderError> {
            let words = futures_util::stream::unfold(0u32, |n| async move {
                tokio::time::sleep(Duration::from_millis(20)).await;
                let event = if n < 1000 {
                    StreamEvent::Delta(format!("w{n} "))
                } else {
                    StreamEvent::End { conversation_id: None, usage: None }
                };
                (n <= 1000).then_some((Ok(event), n + 1))
            });
            Ok(Box::pin(words))
        }
    }

    fn stop(session: &str) -> String {
        format!(r#"{{"type":"stop","session_id":"{session}","timestamp":"2026-02-21T10:00:00Z"}}"#)
    }

    #[tokio::test]
    async fn a_stop_sent_on_loading_reaches_the_reply_while_its_history_is_read() {
        let store = Arc::new(crate::engine::persistence::MemoryStore::new());
        let h = Harness::with_store(|_| {}, vec![Arc::new(Slow)], Arc::clone(&store), 64).await;
        let mut user = h.connect("u1", false);
        h.send(&user, r#"{"type":"user_message","session_id":"p","content":"talk"}"#).await;
        let frames = h.until(&mut user, |f| f["metadata"]["seq"] == "2").await;
        let session = frames.last().unwrap()["session_id"].as_str().unwrap().to_string();
        h.send(&user, &stop(&session)).await;
        h.until(&mut user, is_done).await;
        // The next reply's history read takes a while; the stop comes right on `loading`.
        store.set_load_pause(Duration::from_millis(300));
        let again =
            format!(r#"{{"type":"user_message","session_id":"{session}","content":"more"}}"#);
        h.send(&user, &again).await;
        h.until(&mut user, is_type("loading")).await;
        h.send(&user, &stop(&session)).await;
        let frames = h.until(&mut user, is_done).await;
        let done = frames.last().unwrap();
        assert_eq!(done["metadata"]["interrupted"], "true", "{done}");
        let chunks = frames.iter().filter(|f| f["metadata"]["done"] == "false").count();
        assert_eq!(chunks, 0, "stopped before the stream opened: {frames:?}");
    }

    #[tokio::test]
    async fn a_stop_ends_the_reply_with_its_partial_text_stored_and_marked() {
        let h = Harness::with_providers(|_| {}, vec![Arc::new(Slow)]).await;
        let mut user = h.connect("u1", false);
        h.send(&user, r#"{"type":"user_message","session_id":"p","content":"talk"}"#).await;
        let frames = h.until(&mut user, |f| f["metadata"]["seq"] == "3").await;
        let session = frames.last().unwrap()["session_id"].as_str().unwrap().to_string();
        h.send(&user, &stop(&session)).await;
        let frames = h.until(&mut user, is_done).await;
        let done = frames.last().unwrap();
        assert_eq!(done["metadata"]["interrupted"], "true", "{done}");
        assert!(!frames.iter().any(|f| f["type"] == "error"), "a stop is not an error: {frames:?}");
        let messages = h.messages(&session);
        let reply = messages.last().expect("the partial reply is stored");
        assert_eq!(reply.sender, "ai");
        assert!(reply.content.starts_with("w0 w1 w2 "), "{}", reply.content);
        assert!(!reply.content.contains("w999"), "stopped early: {}", reply.content);
        assert_eq!(reply.meta.get("interrupted").map(String::as_str), Some("true"));

        // Nothing in flight now: a second stop is answered by nothing, and the session goes on.
        h.send(&user, &stop(&session)).await;
        let next =
            format!(r#"{{"type":"user_message","session_id":"{session}","content":"more"}}"#);
        h.send(&user, &next).await;
        let frames = h.until(&mut user, is_type("loading")).await;
        assert_eq!(frames.len(), 1, "no answer to the idle stop: {frames:?}");
        h.send(&user, &stop(&session)).await;
        h.until(&mut user, is_done).await;
    }

    #[tokio::test]
    async fn another_users_stop_leaves_the_reply_running() {
        let h = Harness::with_providers(|_| {}, vec![Arc::new(Slow)]).await;
        let mut user = h.connect("u1", false);
        h.send(&user, r#"{"type":"user_message","session_id":"p","content":"talk"}"#).await;
        let frames = h.until(&mut user, |f| f["metadata"]["seq"] == "2").await;
        let session = frames.last().unwrap()["session_id"].as_str().unwrap().to_string();
        let mut other = h.connect("u2", false);
        h.send(&other, &stop(&session)).await;
        h.until(&mut other, super::super::testing::is_error("SERVICE_ERROR")).await;
        let frames = h.until(&mut user, |f| f["metadata"]["seq"] == "6").await;
        assert!(frames.iter().all(|f| f["metadata"]["done"] != "true"), "still streaming");
        assert!(h.engine.replies.stop(&session), "the reply is still in flight");
        h.until(&mut user, is_done).await;
    }
}
