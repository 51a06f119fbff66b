//! `user_message` (PROTOCOL.md §3.5, §6.2 with §10 items 1, 2, 4, 8, 22): from the session's
//! owner, check the daily token budget (`USER_TOKEN_BUDGET`, issue 17), resolve the session
//! (moving the connection's binding to it), store the message (acknowledged only once durable), name the session after its first message, show it to the
//! assisting admin, and answer it (unless an admin assists and `pause_ai_when_assisted` is set):
//! the request built from the stored conversation, run through the replies service (core's reply
//! timer, retry schedule and fallbacks), the finished reply stored — naming the model that
//! answered and its tokens (metadata `model_id`, `prompt_tokens`, `completion_tokens`,
//! `tokens_estimated`; issue 17) — and acknowledged with `done`. A reply
//! that ends early — stopped by a `stop` frame, cut by shutdown, ended by a deadline or a failed
//! upstream after some text — stores the text delivered so far with `metadata.interrupted =
//! "true"` (issue 15); a stopped one then ends with its `done` frame marked `interrupted`. From the
//! assisting admin, store it as `admin` and relay it to the session.

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame, Sender};
use chatbox_core::usage::{TokenUsage, UsageSource};
use tracing::Instrument;

use super::{ai_paused, ConnCtx};
use crate::engine::hub::Engine;
use crate::engine::llm::ChatRequest;
use crate::engine::replies::{
    usage_meta, user_key, ReplyEnd, ReplyJob, ReplyMode, StopGuard, Streamed,
};
use crate::engine::sessions::Asker;
use crate::engine::store::{SessionPatch, StoredMessage};
use crate::engine::telemetry;

/// Handles one `user_message` (in the session's ordered worker).
pub(super) async fn apply(engine: &Engine, conn: &ConnCtx, frame: &ClientFrame) {
    let requested = frame.session_id.as_str();
    if conn.caller.is_admin() && engine.sessions.is_assisting(&conn.caller.user_id, requested) {
        from_admin(engine, conn, requested, frame).await;
        return;
    }
    // Refused before anything is stored or any provider called, like the message rate limit.
    if let Err(wait) = engine.replies.check_budget(&conn.caller.user_id, engine.clock.wall()).await
    {
        tracing::info!(user_id = %conn.caller.user_id, "daily token budget used up");
        let refusal = ErrorInfo::too_many_requests(wait);
        engine.delivery.send_error(conn.id, Some(requested), refusal);
        return;
    }
    let user = conn.caller.user_id.as_str();
    let asker = Asker { conn: conn.id, user, models: engine.replies.model_list() };
    let resolving =
        engine.sessions.resolve_for(&engine.persistence, &engine.delivery, asker, requested);
    let Some(session) = resolving.await else { return };
    telemetry::record_session(&session);
    let msg = StoredMessage::new(&frame.content, engine.clock.wall(), Sender::User)
        .with_file(&frame.file_id, &frame.file_url)
        .with_meta(&frame.metadata);
    if engine.persistence.append(&session, msg).await.is_err() {
        engine.delivery.send_session_error(&session, ErrorInfo::database_error(), conn.id);
        return;
    }
    let now = engine.clock.now();
    let name = engine.sessions.with(|t| {
        let _ = t.record_message(&session, now);
        t.name_if_empty(&session, &frame.content).ok().flatten()
    });
    engine.delivery.message_stored(
        &session,
        engine.sessions.owner_and_count(&session),
        Sender::User,
    );
    if let Some(name) = name {
        let _ = engine
            .persistence
            .patch(&session, SessionPatch { name: Some(name), ..Default::default() })
            .await;
    }
    // The assisting admin sees what the user writes (§10 item 2).
    let relay = Frame::relayed_message(&session, &frame.content, Sender::User, engine.frame_now());
    engine.delivery.send_session_admins(&session, user, &relay);
    if ai_paused(engine, &session).await {
        return;
    }
    answer(engine, conn, &session).await;
}

/// A message from the assisting admin: stored as `admin`, relayed with `sender:"admin"`.
async fn from_admin(engine: &Engine, conn: &ConnCtx, session: &str, frame: &ClientFrame) {
    let msg = StoredMessage::new(&frame.content, engine.clock.wall(), Sender::Admin)
        .with_meta(&frame.metadata);
    if engine.persistence.append(session, msg).await.is_err() {
        engine.delivery.send_session_error(session, ErrorInfo::database_error(), conn.id);
        return;
    }
    engine.sessions.record_message(session);
    engine.delivery.message_stored(
        session,
        engine.sessions.owner_and_count(session),
        Sender::Admin,
    );
    let relay = Frame::relayed_message(session, &frame.content, Sender::Admin, engine.frame_now());
    engine.delivery.send_session(session, &relay, Some(conn.id));
}

/// Asks the session's model for a streamed reply to the conversation so far.
async fn answer(engine: &Engine, conn: &ConnCtx, session: &str) {
    if !engine.shutdown.try_start_reply() {
        engine.delivery.send_session_error(session, ErrorInfo::service_unavailable(), conn.id);
        return;
    }
    // Stoppable before it is acknowledged: a stop sent on `loading` reaches it (issue 15).
    let stop = engine.replies.stoppable(session);
    engine.delivery.send_session(
        session,
        &Frame::loading(session, engine.frame_now()),
        Some(conn.id),
    );
    let model = engine.replies.model(engine.sessions.model_of(session).as_deref());
    let span = telemetry::reply_span(session, model);
    let end = streamed(engine, conn, session, stop).instrument(span.clone()).await;
    telemetry::record_reply_end(
        &span,
        end.as_ref(),
        matches!(end, Some(ReplyEnd::Done | ReplyEnd::Stopped)),
    );
    tracing::info!(session_id = session, ?end, "reply ended");
    engine.forward_effects(engine.shutdown.reply_finished(engine.clock.now()));
}

async fn streamed(
    engine: &Engine,
    conn: &ConnCtx,
    session: &str,
    stop: StopGuard,
) -> Option<ReplyEnd> {
    let model_id = engine.sessions.model_of(session);
    let Some(model) = engine.replies.model(model_id.as_deref()).cloned() else {
        tracing::warn!(session_id = session, model_id = ?model_id, "no provider for the session's model");
        engine.delivery.send_session_error(session, ErrorInfo::llm_unavailable(), conn.id);
        return None;
    };
    let llm = &engine.config.llm;
    let stored = engine
        .persistence
        .conversation_messages(session, llm.history_max_messages, llm.history_max_bytes)
        .await;
    let mut messages = crate::engine::history::conversation(
        &stored,
        llm.history_max_messages,
        llm.history_max_bytes,
    );
    if messages.is_empty() {
        tracing::warn!(session_id = session, "history unavailable; nothing to answer");
        engine.delivery.send_session_error(session, ErrorInfo::llm_unavailable(), conn.id);
        return None;
    }
    messages.shrink_to_fit();
    // A vision-capable model also sees the images attached since the last reply (issue 17).
    crate::engine::vision::attach(engine, &model, &conn.caller.user_id, &stored, &mut messages)
        .await;
    // The replies service adds the upstream conversation id (Dify) it keeps for the session.
    let request =
        ChatRequest { messages, user_key: user_key(&conn.caller.user_id), conversation_id: None };
    let (model_id, kind) = (model.info.id.clone(), model.kind);
    let job = ReplyJob {
        session_id: session.to_string(),
        model,
        request,
        sender: Some(conn.id),
        mode: ReplyMode::Streamed,
    };
    // Counted live until the reply is stored too, so shutdown waits (bounded) for a cut
    // reply's partial text; the replies service counts the run itself as well.
    let live = engine.replies.live().enter();
    let streamed =
        engine.replies.run_stoppable(&engine.delivery, job, engine.cut_signal(), stop).await;
    let end = match streamed.end {
        ReplyEnd::Done => complete(engine, conn, session, (&model_id, kind), &streamed).await,
        ReplyEnd::Stopped => stopped(engine, conn, session, &model_id, &streamed).await,
        ref other => {
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
    let (model_id, kind) =
        streamed.answered_by.as_ref().map_or((model_id, kind), |m| (m.info.id.as_str(), m.kind));
    let (usage, source) = TokenUsage::settle(streamed.usage, text.len());
    telemetry::record_usage(streamed.answered_by.as_ref(), usage, source == UsageSource::Estimated);
    // The session's statistics with this reply, stored with it in one write (issue 18).
    let tokens = usage.total();
    let response_time = streamed.decided - streamed.started;
    let stats = engine.sessions.with(|t| {
        t.record_reply(session, response_time, tokens).ok()?;
        let s = t.get(session)?;
        let rt = s.response_times();
        Some((s.total_tokens(), rt.max().as_millis() as u64, rt.average().as_millis() as u64))
    });
    let patch = stats.map(|(total, max_ms, avg_ms)| SessionPatch {
        total_tokens: Some(total),
        response_ms: Some((max_ms, avg_ms)),
        ..Default::default()
    });
    if !text.is_empty() {
        let msg = StoredMessage::new(text, engine.clock.wall(), Sender::Ai)
            .with_meta(&usage_meta(model_id, usage, source));
        let stored = match patch {
            Some(patch) => engine.persistence.append_with(session, msg, patch).await,
            None => engine.persistence.append(session, msg).await,
        };
        if stored.is_err() {
            unstored(engine, conn, session, streamed);
            return ReplyEnd::Failed;
        }
        engine.delivery.message_stored(
            session,
            engine.sessions.owner_and_count(session),
            Sender::Ai,
        );
    } else if let Some(patch) = patch {
        let _ = engine.persistence.patch(session, patch).await;
    }
    engine
        .replies
        .record_usage(model_id, kind, &conn.caller.user_id, usage, engine.clock.wall())
        .await;
    outcome(engine, conn, session, streamed, Frame::ai_done(session, model_id, engine.frame_now()));
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
        unstored(engine, conn, session, streamed);
        return ReplyEnd::Failed;
    }
    let done = Frame::ai_done(session, model_id, engine.frame_now()).with_meta(INTERRUPTED, "true");
    outcome(engine, conn, session, streamed, done);
    ReplyEnd::Stopped
}

/// A reply whose text could not be stored ends with `DATABASE_ERROR` instead of `done`, as
/// its outcome like any other.
fn unstored(engine: &Engine, conn: &ConnCtx, session: &str, streamed: &Streamed) {
    let error = Frame::error(ErrorInfo::database_error(), Some(session), engine.frame_now());
    outcome(engine, conn, session, streamed, error);
}

/// Sends `frame` as the streamed reply's last frame, at its next seq.
fn outcome(engine: &Engine, conn: &ConnCtx, session: &str, streamed: &Streamed, frame: Frame) {
    let at = (streamed.reply_id.as_str(), session, streamed.next_seq);
    engine.delivery.send_reply_outcome(at, frame, Some(conn.id), engine.clock.now());
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
            engine.delivery.message_stored(
                session,
                engine.sessions.owner_and_count(session),
                Sender::Ai,
            );
            true
        }
        Err(error) => {
            tracing::warn!(session_id = session, %error, "storing an interrupted reply failed");
            false
        }
    }
}

/// Tells the probe (simulator, tests) how a reply ended.
fn report(engine: &Engine, session: &str, streamed: &Streamed, end: &ReplyEnd) {
    if let Some(probe) = engine.probe.get() {
        probe.on_reply(session, streamed.started, streamed.decided, end);
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_done, is_type, Harness};
    use crate::adapters::llm::echo::EchoProvider;
    use crate::engine::llm::{ChatRequest, EventStream, LlmProvider, ProviderError};
    use crate::engine::persistence::MemoryStore;
    use std::sync::Arc;

    /// The echo model, which takes the store down as it starts answering: the user's message is
    /// stored, the reply's own write is refused.
    #[derive(Debug)]
    struct DownsTheStore(Arc<MemoryStore>);

    #[async_trait::async_trait]
    impl LlmProvider for DownsTheStore {
        fn kind(&self) -> &'static str {
            "echo"
        }

        async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
            self.0.set_down(true);
            EchoProvider.open_stream(request).await
        }
    }

    #[tokio::test]
    async fn a_reply_that_cannot_be_stored_ends_with_its_named_database_error() {
        let store = Arc::new(MemoryStore::new());
        let provider = Arc::new(DownsTheStore(Arc::clone(&store)));
        let h = Harness::with_store(|_| {}, vec![provider], store, 0).await;
        let mut user = h.connect("u1", false);
        h.send(&user, r#"{"type":"user_message","session_id":"s-new","content":"hello"}"#).await;
        let frames = h.until(&mut user, is_type("error")).await;
        let chunks: Vec<_> = frames.iter().filter(|f| f["type"] == "ai_response").collect();
        assert!(!chunks.is_empty() && !chunks.iter().any(|f| is_done(f)), "{frames:#?}");
        let error = frames.last().unwrap();
        assert_eq!(error["error"]["code"], "DATABASE_ERROR", "{error}");
        let reply = &chunks[0]["metadata"]["reply_id"];
        assert_eq!(&error["metadata"]["reply_id"], reply, "names the reply: {error}");
        assert_eq!(error["metadata"]["seq"], (chunks.len() + 1).to_string().as_str(), "{error}");
        let replayed = h.engine.delivery.replay_frames();
        assert_eq!(replayed, chunks.len() + 1, "a resume replays the outcome too");
    }

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
        let (h, mut user, session) = Harness::with_session().await;
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
