//! The answer to a message, shared by `user_message` (streamed) and `voice_message` (whole):
//! build the request from the stored conversation, run it through the replies service (core's
//! reply timer and retry schedule), then store the finished reply and acknowledge it — `done`
//! for a streamed reply, one `ai_message` for a voice answer. A streamed reply that ends early —
//! stopped by a `stop` frame, cut by shutdown, ended by a deadline or a failed upstream after some
//! text — stores the text delivered so far with `metadata.interrupted = "true"` (issue 15); a
//! stopped one then ends with its `done` frame marked `interrupted` too. Text replies are
//! reported to the probe (simulator, tests).

use std::sync::Arc;

use chatbox_core::protocol::{ErrorInfo, Frame, Sender};
use sha2::{Digest, Sha256};

use super::{session_error, ConnCtx};
use crate::engine::delivery::ReplyFrame;
use crate::engine::hub::Engine;
use crate::engine::llm::{ChatMessage, ChatRequest, Role};
use crate::engine::replies::{ReplyEnd, ReplyJob, ReplyMode, Streamed, VOICE_BUDGET};
use crate::engine::store::{SessionPatch, StoredMessage};

/// Asks the session's model for a streamed reply to the conversation so far.
pub(super) async fn text(engine: &Engine, conn: &ConnCtx, session: &str) {
    if !engine.shutdown.try_start_reply() {
        session_error(engine, conn, session, ErrorInfo::service_unavailable());
        return;
    }
    engine.delivery.send_session(
        session,
        &Frame::loading(session, engine.frame_now()),
        Some(conn.id),
    );
    let end = streamed(engine, conn, session).await;
    tracing::debug!(session_id = session, ?end, "reply ended");
    engine.forward_effects(engine.shutdown.reply_finished(engine.clock.now()));
}

async fn streamed(engine: &Engine, conn: &ConnCtx, session: &str) -> Option<ReplyEnd> {
    let model_id = engine.sessions.model_of(session);
    let Some(model) = engine.replies.model(model_id.as_deref()).cloned() else {
        tracing::warn!(session_id = session, model_id = ?model_id, "no provider for the session's model");
        session_error(engine, conn, session, ErrorInfo::llm_unavailable());
        return None;
    };
    let llm = &engine.config.llm;
    let stored = engine
        .persistence
        .conversation_messages(session, llm.history_max_messages)
        .await
        .unwrap_or_default();
    let mut messages = crate::engine::history::conversation(
        &stored,
        llm.history_max_messages,
        llm.history_max_bytes,
    );
    if messages.is_empty() {
        tracing::warn!(session_id = session, "history unavailable; nothing to answer");
        session_error(engine, conn, session, ErrorInfo::llm_unavailable());
        return None;
    }
    messages.shrink_to_fit();
    let request = ChatRequest {
        messages,
        user_key: user_key(&conn.caller.user_id),
        conversation_id: engine.replies.conversation(session),
    };
    let (model_id, kind) = (model.info.id.clone(), model.kind);
    let job = ReplyJob {
        session_id: session.to_string(),
        model,
        request,
        sender: Some(conn.id),
        mode: ReplyMode::Streamed,
    };
    let live = engine.replies.live().enter();
    let streamed = engine.replies.run(&engine.delivery, job, engine.cut_signal()).await;
    let end = match streamed.end {
        ReplyEnd::Done => complete(engine, conn, session, (&model_id, kind), &streamed).await,
        ReplyEnd::Stopped => stopped(engine, conn, session, &model_id, &streamed).await,
        ref other => {
            // Still counted live, so shutdown waits (bounded) for a cut reply's partial text.
            store_interrupted(engine, session, &streamed.text).await;
            other.clone()
        }
    };
    drop(live);
    // However it ended (a failed store write sends no done frame), nothing live follows.
    engine.delivery.end_reply(&streamed.reply_id, engine.clock.now());
    report(engine, session, &streamed, &end);
    Some(end)
}

/// Stores the finished reply, then acknowledges it with the `done` frame.
async fn complete(
    engine: &Engine,
    conn: &ConnCtx,
    session: &str,
    (model_id, kind): (&str, &'static str),
    streamed: &Streamed,
) -> ReplyEnd {
    let text = streamed.text.as_str();
    if !text.is_empty() {
        let msg = StoredMessage::new(text, engine.clock.wall(), Sender::Ai);
        if engine.persistence.append(session, msg).await.is_err() {
            session_error(engine, conn, session, ErrorInfo::database_error());
            return ReplyEnd::Failed;
        }
        crate::engine::inbox::message(engine, session, Sender::Ai);
    }
    let tokens = (text.len() / 4) as u64;
    engine.metrics.add_tokens(kind, tokens);
    let response_time = streamed.decided - streamed.started;
    let stats = engine.sessions.with(|t| {
        t.record_reply(session, response_time, tokens).ok()?;
        let s = t.get(session)?;
        let rt = s.response_times();
        Some((s.total_tokens(), rt.max().as_millis() as u64, rt.average().as_millis() as u64))
    });
    let done = Frame::ai_done(session, model_id, engine.frame_now())
        .in_reply(&streamed.reply_id, streamed.next_seq);
    let at =
        ReplyFrame { reply_id: &streamed.reply_id, session, seq: streamed.next_seq, last: true };
    engine.delivery.send_reply_frame(at, &done, Some(conn.id), engine.clock.now());
    if let Some((total, max_ms, avg_ms)) = stats {
        let patch = SessionPatch {
            total_tokens: Some(total),
            response_ms: Some((max_ms, avg_ms)),
            ..Default::default()
        };
        let _ = engine.persistence.patch(session, patch).await;
    }
    ReplyEnd::Done
}

/// A reply ended by a `stop` frame: the partial text stored as interrupted, then the usual
/// final frame marked `done` and `interrupted`.
async fn stopped(
    engine: &Engine,
    conn: &ConnCtx,
    session: &str,
    model_id: &str,
    streamed: &Streamed,
) -> ReplyEnd {
    tracing::info!(session_id = session, chars = streamed.text.len(), "reply stopped by the user");
    if !store_interrupted(engine, session, &streamed.text).await {
        session_error(engine, conn, session, ErrorInfo::database_error());
        return ReplyEnd::Failed;
    }
    let done = Frame::ai_done(session, model_id, engine.frame_now())
        .in_reply(&streamed.reply_id, streamed.next_seq)
        .with_meta(INTERRUPTED, "true");
    let at =
        ReplyFrame { reply_id: &streamed.reply_id, session, seq: streamed.next_seq, last: true };
    engine.delivery.send_reply_frame(at, &done, Some(conn.id), engine.clock.now());
    ReplyEnd::Stopped
}

/// The metadata key marking a reply that did not finish (issue 15).
pub const INTERRUPTED: &str = "interrupted";

/// Stores the partial text of a reply that did not finish as the `ai` message with
/// `metadata.interrupted = "true"`; nothing when no text arrived. `false` if the write failed.
async fn store_interrupted(engine: &Engine, session: &str, text: &str) -> bool {
    if text.is_empty() {
        return true;
    }
    let meta = std::collections::BTreeMap::from([(INTERRUPTED.to_string(), "true".to_string())]);
    let msg = StoredMessage::new(text, engine.clock.wall(), Sender::Ai).with_meta(&meta);
    match engine.persistence.append(session, msg).await {
        Ok(_) => {
            crate::engine::inbox::message(engine, session, Sender::Ai);
            true
        }
        Err(error) => {
            tracing::warn!(session_id = session, %error, "storing an interrupted reply failed");
            false
        }
    }
}

/// Answers a voice message in the background (§3.8): the session's chosen model, asked about
/// the file (its query string redacted) through the same reply path within [`VOICE_BUDGET`],
/// stored and sent as one `ai_message`. Failures are logged only.
pub(super) fn voice(engine: &Arc<Engine>, session: &str, user_id: &str, file_url: &str) {
    let Some(model) =
        engine.sessions.model_of(session).and_then(|m| engine.replies.model(Some(&m)).cloned())
    else {
        return;
    };
    let request = ChatRequest {
        messages: vec![ChatMessage {
            role: Role::User,
            content: format!("Audio file: {}", redact_query(file_url)),
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
    engine.supervisor.spawn("voice-answer", async move {
        let engine = task_engine;
        let session = job.session_id.clone();
        let streamed = engine.replies.run(&engine.delivery, job, engine.cut_signal()).await;
        if streamed.end != ReplyEnd::Done {
            tracing::warn!(session_id = %session, end = ?streamed.end, "voice answer failed");
        } else if !streamed.text.is_empty() {
            let msg = StoredMessage::new(&streamed.text, engine.clock.wall(), Sender::Ai);
            if engine.persistence.append(&session, msg).await.is_ok() {
                crate::engine::inbox::message(&engine, &session, Sender::Ai);
                let frame = Frame::ai_message(&session, streamed.text.as_str(), engine.frame_now());
                engine.delivery.send_session(&session, &frame, None);
            }
        }
    });
}

/// Tells the probe (simulator, tests) how a reply ended.
fn report(engine: &Engine, session: &str, streamed: &Streamed, end: &ReplyEnd) {
    if let Some(probe) = engine.probe.get() {
        probe.on_reply(session, streamed.started, streamed.decided, end);
    }
}

/// A stable, non-identifying key for a user (Dify's `user`, §10 item 29).
pub fn user_key(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    format!("user-{}", hex::encode(&digest[..16]))
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
    use super::*;

    #[test]
    fn user_keys_are_stable_and_do_not_reveal_the_id() {
        assert_eq!(user_key("alice"), user_key("alice"));
        assert_ne!(user_key("alice"), user_key("bob"));
        assert!(!user_key("alice").contains("alice"));
    }

    #[test]
    fn query_strings_are_redacted() {
        assert_eq!(redact_query("https://x/a.ogg?sig=1"), "https://x/a.ogg?[REDACTED]");
        assert_eq!(redact_query("https://x/a.ogg"), "https://x/a.ogg");
    }
}
