//! `file_upload` and `voice_message` (PROTOCOL.md §3.8): check the `file_url` rule (through the
//! DNS port), check the sender's access to the session, store the message and broadcast it. A
//! voice message is then answered in the background through the same reply path as text
//! (core's reply timer and retries), within the voice budget, as one whole `ai_message`.

use std::sync::Arc;

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame, FrameType, Sender};
use chatbox_core::session::Access;
use chatbox_core::upload::is_own_file_url;

use super::{answer, reply_error, require_session, session_error, ConnCtx};
use crate::engine::dns::file_url_allowed;
use crate::engine::hub::Engine;
use crate::engine::store::StoredMessage;

/// Handles one `file_upload` or `voice_message`.
pub(super) async fn apply(engine: &Arc<Engine>, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(session) = require_session(engine, conn, frame) else { return };
    // This server's own signed file URLs (from `POST {P}/upload`) are relative paths.
    let own = is_own_file_url(&engine.config.server.path_prefix, &frame.file_url);
    if !own && !file_url_allowed(engine.resolver.as_ref(), &frame.file_url).await {
        reply_error(engine, conn, Some(session), ErrorInfo::invalid_file_url());
        return;
    }
    engine.sessions.load_on_demand(&engine.persistence, session).await;
    let sender = match engine.sessions.access(&conn.caller, session) {
        Access::Owner => Sender::User,
        Access::AssistingAdmin => Sender::Admin,
        Access::Unknown => {
            reply_error(engine, conn, Some(session), ErrorInfo::session_not_found());
            return;
        }
        Access::Denied => {
            reply_error(engine, conn, Some(session), ErrorInfo::unauthorized_session());
            return;
        }
    };
    let msg = StoredMessage::new(&frame.content, engine.clock.wall(), sender)
        .with_file(&frame.file_id, &frame.file_url)
        .with_meta(&frame.metadata);
    if engine.persistence.append(session, msg).await.is_err() {
        session_error(engine, conn, session, ErrorInfo::database_error());
        return;
    }
    engine.sessions.record_message(session);
    crate::engine::inbox::message(engine, session, sender);
    let broadcast = Frame::file_broadcast(frame, session, Sender::User, engine.frame_now());
    engine.delivery.send_session(session, &broadcast, Some(conn.id));
    if frame.frame_type == FrameType::VoiceMessage {
        answer::voice(engine, session, &conn.caller.user_id, &frame.file_url);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_error, is_type, Harness};

    fn upload(session: &str, url: &str) -> String {
        format!(
            r#"{{"type":"file_upload","session_id":"{session}","file_id":"f1","file_url":"{url}"}}"#
        )
    }

    #[tokio::test]
    async fn a_public_file_is_stored_and_broadcast_and_a_private_host_refused() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        let session = h.start_session(&mut user, "hi").await;
        h.send(&user, &upload(&session, "https://intranet.example.com/a.png")).await;
        h.until(&mut user, is_error("INVALID_FORMAT")).await;
        h.send(&user, &upload(&session, "https://files.example.com/a.png")).await;
        let frames = h.until(&mut user, is_type("file_upload")).await;
        assert_eq!(frames.last().unwrap()["file_url"], "https://files.example.com/a.png");
        let stored = h.messages(&session);
        assert_eq!(stored.last().map(|m| m.file_id.as_str()), Some("f1"));
        assert_eq!(stored.len(), 3, "user, ai, file: the refused one was not stored");
    }

    #[tokio::test]
    async fn a_voice_message_is_answered_whole_through_the_reply_path() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        let session = h.start_session(&mut user, "hi").await;
        // Voice is answered only once the session has chosen a model (as before).
        let select =
            format!(r#"{{"type":"model_select","session_id":"{session}","model_id":"echo"}}"#);
        h.send(&user, &select).await;
        h.until(&mut user, |f| f["content"] == "Model changed to echo").await;
        let voice = format!(
            r#"{{"type":"voice_message","session_id":"{session}","file_id":"v1","file_url":"https://files.example.com/v.ogg?sig=secret"}}"#
        );
        h.send(&user, &voice).await;
        let frames = h
            .until(&mut user, |f| {
                f["type"] == "ai_response"
                    && f["content"].as_str().is_some_and(|c| c.starts_with("Audio"))
            })
            .await;
        let answer = frames.last().unwrap();
        assert_eq!(answer["content"], "Audio file: https://files.example.com/v.ogg?[REDACTED]");
        assert!(frames.iter().all(|f| f["type"] != "loading"), "no streaming frames for voice");
        let stored = h.messages(&session);
        assert_eq!(stored.last().map(|m| m.sender.as_str()), Some("ai"));
    }
}
