//! `user_message` (PROTOCOL.md §3.5, §6.2 with §10 items 1, 2, 4, 8, 22): from the session's
//! owner, check the daily token budget (`USER_TOKEN_BUDGET`, issue 17), resolve the session, store the message (acknowledged only once durable), name the
//! session after its first message, show it to the assisting admin, and ask the model for a
//! reply (unless an admin assists and `pause_ai_when_assisted` is set). From the assisting
//! admin, store it as `admin` and relay it to the session.

use std::sync::Arc;

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame, Sender};

use super::{answer, resolve, session_error, ConnCtx};
use crate::engine::hub::Engine;
use crate::engine::store::{SessionPatch, StoredMessage};

/// Handles one `user_message` (in the session's ordered worker).
pub(super) async fn apply(engine: &Arc<Engine>, conn: &ConnCtx, frame: &ClientFrame) {
    let requested = frame.session_id.as_str();
    if conn.caller.is_admin() && engine.sessions.is_assisting(&conn.caller.user_id, requested) {
        from_admin(engine, conn, requested, frame).await;
        return;
    }
    // Refused before anything is stored or any provider called, like the message rate limit.
    if let Err(wait) = engine.replies.check_budget(&conn.caller.user_id, engine.clock.wall()) {
        tracing::info!(user_id = %conn.caller.user_id, "daily token budget used up");
        super::reply_error(engine, conn, Some(requested), ErrorInfo::too_many_requests(wait));
        return;
    }
    let Some(session) = resolve(engine, conn, requested).await else { return };
    let msg = StoredMessage::new(&frame.content, engine.clock.wall(), Sender::User)
        .with_file(&frame.file_id, &frame.file_url)
        .with_meta(&frame.metadata);
    if engine.persistence.append(&session, msg).await.is_err() {
        session_error(engine, conn, &session, ErrorInfo::database_error());
        return;
    }
    let now = engine.clock.now();
    let (name, assisted) = engine.sessions.with(|t| {
        let _ = t.record_message(&session, now);
        let name = t.name_if_empty(&session, &frame.content).ok().flatten();
        let assisted = t.get(&session).and_then(|s| s.assisting_admin().cloned());
        (name, assisted)
    });
    if let Some(name) = name {
        let _ = engine
            .persistence
            .patch(&session, SessionPatch { name: Some(name), ..Default::default() })
            .await;
    }
    // The assisting admin sees what the user writes (§10 item 2).
    let relay = Frame::relayed_message(&session, &frame.content, Sender::User, engine.frame_now());
    engine.delivery.send_session_admins(&session, &conn.caller.user_id, &relay);
    if assisted.is_some() && engine.config.llm.pause_ai_when_assisted {
        return;
    }
    answer::text(engine, conn, &session).await;
}

/// A message from the assisting admin: stored as `admin`, relayed with `sender:"admin"`.
async fn from_admin(engine: &Engine, conn: &ConnCtx, session: &str, frame: &ClientFrame) {
    let msg = StoredMessage::new(&frame.content, engine.clock.wall(), Sender::Admin)
        .with_meta(&frame.metadata);
    if engine.persistence.append(session, msg).await.is_err() {
        session_error(engine, conn, session, ErrorInfo::database_error());
        return;
    }
    engine.sessions.record_message(session);
    let relay = Frame::relayed_message(session, &frame.content, Sender::Admin, engine.frame_now());
    engine.delivery.send_session(session, &relay, Some(conn.id));
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_done, is_type, Harness};

    #[tokio::test]
    async fn a_message_is_stored_and_answered_with_chunks_and_done() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        h.send(&user, r#"{"type":"user_message","session_id":"s-new","content":"hello"}"#).await;
        let frames = h.until(&mut user, is_done).await;
        let session = frames.last().unwrap()["session_id"].as_str().unwrap().to_string();
        assert!(frames
            .iter()
            .any(|f| f["type"] == "connection_status" && f["session_id"] == session));
        assert!(frames.iter().any(|f| f["type"] == "loading"));
        let chunks: String = frames
            .iter()
            .filter(|f| f["type"] == "ai_response" && !is_done(f))
            .map(|f| f["content"].as_str().unwrap())
            .collect();
        let stored = h.messages(&session);
        assert_eq!(stored.iter().map(|m| m.sender.as_str()).collect::<Vec<_>>(), ["user", "ai"]);
        assert_eq!(stored[0].content, "hello");
        assert_eq!(stored[1].content, chunks, "the stored reply is what was streamed");
    }

    #[tokio::test]
    async fn an_assisting_admin_message_is_stored_as_admin_and_relayed() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        let session = h.start_session(&mut user, "hi").await;
        h.assist(&session, "boss").await;
        let admin = h.connect("boss", true);
        let text =
            format!(r#"{{"type":"user_message","session_id":"{session}","content":"I am here"}}"#);
        h.send(&admin, &text).await;
        let frames = h.until(&mut user, is_type("user_message")).await;
        let relayed = frames.last().unwrap();
        assert_eq!(
            (relayed["sender"].as_str(), relayed["content"].as_str()),
            (Some("admin"), Some("I am here"))
        );
        let stored = h.messages(&session);
        assert_eq!(
            stored.last().map(|m| (m.sender.as_str(), m.content.as_str())),
            Some(("admin", "I am here"))
        );
    }
}
