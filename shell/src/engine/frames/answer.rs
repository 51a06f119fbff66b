//! The answer to a message, shared by `user_message` (streamed) and `voice_message` (whole):
//! build the request from the stored conversation, run it through the replies service (core's
//! reply timer, retry schedule and fallbacks), then store the finished reply and acknowledge it —
//! `done` for a streamed reply, one `ai_message` for a voice answer. The stored reply names the
//! model that answered and its tokens (metadata `model_id`, `prompt_tokens`,
//! `completion_tokens`, and `tokens_estimated: "true"` when the provider reported none; issue
//! 17), which also go to the session's `totalTokens`, the per-model counters and the user's daily
//! budget. Text replies are reported to the probe (simulator, tests).

use std::collections::BTreeMap;
use std::sync::Arc;

use chatbox_core::protocol::{ErrorInfo, Frame, Sender};
use chatbox_core::usage::{TokenUsage, UsageSource};
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
    drop(live);
    let end = match streamed.end {
        ReplyEnd::Done => complete(engine, conn, session, (&model_id, kind), &streamed).await,
        ref other => other.clone(),
    };
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
    let (model_id, kind) =
        streamed.answered_by.as_ref().map_or((model_id, kind), |m| (m.info.id.as_str(), m.kind));
    let (usage, source) = TokenUsage::settle(streamed.usage, text.len());
    if !text.is_empty() {
        let msg = StoredMessage::new(text, engine.clock.wall(), Sender::Ai)
            .with_meta(&usage_meta(model_id, usage, source));
        if engine.persistence.append(session, msg).await.is_err() {
            session_error(engine, conn, session, ErrorInfo::database_error());
            return ReplyEnd::Failed;
        }
    }
    let tokens = usage.total();
    engine.replies.record_usage(model_id, kind, &conn.caller.user_id, usage, engine.clock.wall());
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
            engine.replies.record_usage(answered, kind, &user, usage, engine.clock.wall());
            let msg = StoredMessage::new(&streamed.text, engine.clock.wall(), Sender::Ai)
                .with_meta(&usage_meta(answered, usage, source));
            if engine.persistence.append(&session, msg).await.is_ok() {
                let frame = Frame::ai_message(&session, streamed.text.as_str(), engine.frame_now());
                engine.delivery.send_session(&session, &frame, None);
            }
        }
    });
}

/// The stored reply's metadata: who answered and what it cost.
fn usage_meta(model_id: &str, usage: TokenUsage, source: UsageSource) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::from([
        ("model_id".to_string(), model_id.to_string()),
        ("prompt_tokens".to_string(), usage.prompt.to_string()),
        ("completion_tokens".to_string(), usage.completion.to_string()),
    ]);
    if source == UsageSource::Estimated {
        meta.insert("tokens_estimated".to_string(), "true".to_string());
    }
    meta
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
