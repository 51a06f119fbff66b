//! `file_upload` and `voice_message` (PROTOCOL.md §3.8): check the `file_url` rule (through the
//! DNS port), check the sender's access to the session, store the message and broadcast it. A
//! voice message is then answered in the background through the same reply path as text
//! (core's reply timer and retries), within the voice budget, as one whole `ai_message`.

use std::sync::Arc;

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame, FrameType, Sender};
use chatbox_core::session::Access;
use chatbox_core::upload::is_own_file_url;
use chatbox_core::usage::TokenUsage;

use super::{ai_paused, require_session, ConnCtx};
use crate::engine::dns::file_url_allowed;
use crate::engine::hub::Engine;
use crate::engine::llm::{ChatMessage, ChatRequest, Role};
use crate::engine::replies::{usage_meta, user_key, ReplyEnd, ReplyJob, ReplyMode, VOICE_BUDGET};
use crate::engine::store::StoredMessage;

/// Handles one `file_upload` or `voice_message`.
pub(super) async fn apply(engine: &Arc<Engine>, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(session) = require_session(engine, conn, frame) else { return };
    // This server's own signed file URLs (from `POST {P}/upload`) are relative paths.
    let own = is_own_file_url(&engine.config.server.path_prefix, &frame.file_url);
    if !own && !file_url_allowed(engine.resolver.as_ref(), &frame.file_url).await {
        engine.delivery.send_error(conn.id, Some(session), ErrorInfo::invalid_file_url());
        return;
    }
    engine.sessions.load_on_demand(&engine.persistence, session).await;
    let sender = match engine.sessions.access(&conn.caller, session) {
        Access::Owner => Sender::User,
        Access::AssistingAdmin => Sender::Admin,
        Access::Unknown => {
            engine.delivery.send_error(conn.id, Some(session), ErrorInfo::session_not_found());
            return;
        }
        Access::Denied => {
            engine.delivery.send_error(conn.id, Some(session), ErrorInfo::unauthorized_session());
            return;
        }
    };
    let msg = StoredMessage::new(&frame.content, engine.clock.wall(), sender)
        .with_file(&frame.file_id, &frame.file_url)
        .with_meta(&frame.metadata);
    if engine.persistence.append(session, msg).await.is_err() {
        engine.delivery.send_session_error(session, ErrorInfo::database_error(), conn.id);
        return;
    }
    engine.sessions.record_message(session);
    engine.delivery.message_stored(session, engine.sessions.owner_and_count(session), sender);
    // The assisting admin's file reaches the user as the admin's (§10 item 25).
    let broadcast = Frame::file_broadcast(frame, session, sender, engine.frame_now());
    engine.delivery.send_session(session, &broadcast, Some(conn.id));
    if frame.frame_type == FrameType::VoiceMessage
        && sender == Sender::User
        && !ai_paused(engine, session).await
    {
        voice(engine, session, &conn.caller.user_id, &frame.file_url);
    }
}

/// Answers a voice message in the background (§3.8): the session's chosen model, asked about
/// the file (its query string redacted) through the same reply path within [`VOICE_BUDGET`],
/// stored and sent as one `ai_message`. Failures are logged only.
fn voice(engine: &Arc<Engine>, session: &str, user_id: &str, file_url: &str) {
    let Some(model) =
        engine.sessions.model_of(session).and_then(|m| engine.replies.model(Some(&m)).cloned())
    else {
        return;
    };
    let request = ChatRequest {
        messages: vec![ChatMessage {
            role: Role::User,
            content: format!("Audio file: {}", redact_query(file_url)),
            images: Vec::new(),
        }],
        user_key: user_key(user_id),
        conversation_id: None,
    };
    let job = ReplyJob {
        session_id: session.to_string(),
        model,
        request,
        sender: None,
        mode: ReplyMode::Whole { total: VOICE_BUDGET },
    };
    let task_engine = Arc::clone(engine);
    let (job_model, job_kind) = (job.model.info.id.clone(), job.model.kind);
    let user = user_id.to_string();
    engine.supervisor.spawn("voice-answer", async move {
        let engine = task_engine;
        let session = job.session_id.clone();
        let streamed = engine.replies.run(&engine.delivery, job, engine.cut_signal()).await;
        if streamed.end != ReplyEnd::Done {
            tracing::warn!(session_id = %session, end = ?streamed.end, "voice answer failed");
        } else if !streamed.text.is_empty() {
            let (usage, source) = TokenUsage::settle(streamed.usage, streamed.text.len());
            let answered = streamed.answered_by.as_ref().map_or(&job_model, |m| &m.info.id);
            let kind = streamed.answered_by.as_ref().map_or(job_kind, |m| m.kind);
            engine.replies.record_usage(answered, kind, &user, usage, engine.clock.wall()).await;
            let msg = StoredMessage::new(&streamed.text, engine.clock.wall(), Sender::Ai)
                .with_meta(&usage_meta(answered, usage, source));
            if engine.persistence.append(&session, msg).await.is_ok() {
                let live = engine.sessions.owner_and_count(&session);
                engine.delivery.message_stored(&session, live, Sender::Ai);
                let frame = Frame::ai_message(&session, streamed.text.as_str(), engine.frame_now());
                engine.delivery.send_session(&session, &frame, None);
            }
        }
    });
}

/// The URL with any query string replaced by `?[REDACTED]` (§3.8 voice rule).
fn redact_query(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?[REDACTED]"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_error, is_type, Harness};
    use super::redact_query;

    #[test]
    fn query_strings_are_redacted() {
        assert_eq!(redact_query("https://x/a.ogg?sig=1"), "https://x/a.ogg?[REDACTED]");
        assert_eq!(redact_query("https://x/a.ogg"), "https://x/a.ogg");
    }

    fn upload(session: &str, url: &str) -> String {
        format!(
            r#"{{"type":"file_upload","session_id":"{session}","file_id":"f1","file_url":"{url}"}}"#
        )
    }

    #[tokio::test]
    async fn a_public_file_is_stored_and_broadcast_and_a_private_host_refused() {
        let (h, mut user, session) = Harness::with_session().await;
        h.send(&user, &upload(&session, "https://intranet.example.com/a.png")).await;
        h.until(&mut user, is_error("INVALID_FORMAT")).await;
        h.send(&user, &upload(&session, "https://files.example.com/a.png")).await;
        let frames = h.until(&mut user, is_type("file_upload")).await;
        assert_eq!(frames.last().unwrap()["file_url"], "https://files.example.com/a.png");
        let stored = h.messages(&session);
        assert_eq!(stored.last().map(|m| m.file_id.as_str()), Some("f1"));
        assert_eq!(stored.len(), 3, "user, ai, file: the refused one was not stored");
    }

    /// `user` chooses the `echo` model for `session` (voice is answered only once one is).
    async fn choose_echo(h: &Harness, user: &mut super::super::testing::Client, session: &str) {
        let select =
            format!(r#"{{"type":"model_select","session_id":"{session}","model_id":"echo"}}"#);
        h.send(user, &select).await;
        h.until(user, |f| f["content"] == "Model changed to echo").await;
    }

    #[tokio::test]
    async fn a_voice_message_is_answered_whole_through_the_reply_path() {
        let (h, mut user, session) = Harness::with_session().await;
        // Voice is answered only once the session has chosen a model (as before).
        choose_echo(&h, &mut user, &session).await;
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

    #[tokio::test]
    async fn while_an_admin_assists_voice_is_not_answered_and_the_admins_file_is_the_admins() {
        let (h, mut user, session) = Harness::with_session().await;
        choose_echo(&h, &mut user, &session).await;
        h.assist(&session, "boss").await;
        let voice = |id: &str| {
            format!(
                r#"{{"type":"voice_message","session_id":"{session}","file_id":"{id}","file_url":"https://files.example.com/{id}.ogg"}}"#
            )
        };
        let mut admin = h.connect("boss", true);
        h.send(&admin, &voice("v1")).await;
        let frames = h.until(&mut user, |f| f["file_id"] == "v1").await;
        assert_eq!(frames.last().unwrap()["sender"], "admin", "{frames:?}");
        h.send(&user, &voice("v2")).await;
        h.until(&mut admin, |f| f["file_id"] == "v2").await;
        // Every task spawned for the two (an answer would be one) has ended.
        let idle = h.engine.supervisor.wait_idle();
        assert!(tokio::time::timeout(std::time::Duration::from_secs(20), idle).await.is_ok());
        let senders: Vec<_> = h.messages(&session).iter().map(|m| m.sender.clone()).collect();
        assert_eq!(&senders[senders.len() - 2..], ["admin", "user"], "no answer: {senders:?}");
    }
}
