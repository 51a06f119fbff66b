//! One LLM reply, end to end: open the provider stream (retrying transient failures only before
//! the first chunk, STYLE.md §8), forward chunks to every connection of the session, enforce the
//! three deadlines of core's `ReplyTimer`, store the finished reply, and end with exactly one
//! outcome frame — `done:"true"`, `LLM_TIMEOUT` or `LLM_UNAVAILABLE` (PROTOCOL.md §10 item 21).
//! The reply keeps going if the user's socket drops (STYLE.md §9); it is cut only by shutdown.

use std::sync::Arc;
use std::time::Duration;

use chatbox_core::protocol::{ErrorInfo, Frame};
use chatbox_core::retry::{ErrorClass, Jitter, RetryDecision, RetryPolicy};
use chatbox_core::stream::{ChunkVerdict, Outcome, ReplyTimer};
use futures_util::StreamExt;

use super::connections::ConnId;
use super::hub::{Engine, Model};
use super::llm::{ChatRequest, EventStream, ProviderError, StreamEvent};
use super::outbox::PendingWrite;
use super::store::{SessionPatch, StoredMessage};

/// Everything one reply needs.
#[derive(Debug)]
pub struct ReplyJob {
    /// Session the reply belongs to.
    pub session_id: String,
    /// The model answering.
    pub model: Model,
    /// What to send upstream.
    pub request: ChatRequest,
    /// The connection whose message started the reply (gets errors even if not bound there).
    pub sender: ConnId,
}

/// How the reply ended, after its frames were sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyEnd {
    /// Finished, stored, `done` sent.
    Done,
    /// A deadline or an upstream failure ended it (error frame sent).
    Failed,
    /// Shutdown cut it (error frame sent).
    Cut,
}

enum Step {
    Event(Option<Result<StreamEvent, ProviderError>>),
    Deadline,
    Cut,
}

/// How the streaming loop stopped.
enum Stopped {
    /// The timer decided the outcome.
    Outcome(Outcome),
    /// Shutdown cut the reply.
    Cut,
    /// The outcome was already emitted (defensive: the loop stops at the first outcome).
    AlreadyEnded,
}

/// Runs one reply to its single outcome.
pub async fn run(engine: &Arc<Engine>, job: ReplyJob) -> ReplyEnd {
    let started = engine.clock.now();
    let session = job.session_id.clone();
    let mut decided = started;
    let kind = job.model.kind;
    let end = drive(engine, job, started, &mut decided).await;
    engine.metrics.observe_llm_latency(kind, decided - started);
    if end == ReplyEnd::Failed {
        engine.metrics.llm_error(kind);
    }
    if let Some(probe) = engine.probe.get() {
        probe.on_reply(&session, started, decided, &end);
    }
    end
}

/// Runs the reply; `decided` is set to the instant its outcome was decided (before storing).
async fn drive(
    engine: &Arc<Engine>,
    job: ReplyJob,
    started: chatbox_core::Instant,
    decided: &mut chatbox_core::Instant,
) -> ReplyEnd {
    let mut timer = ReplyTimer::start(engine.deadlines, started);
    let mut cut = engine.cut_signal();
    let mut text = String::new();
    let model_id = job.model.info.id.clone();

    let mut stream = match open_with_retry(engine, &job, &mut timer, &mut cut).await {
        Ok(stream) => stream,
        Err(end) => {
            *decided = engine.clock.now();
            return finish(engine, &job, end).await;
        }
    };
    let stopped = loop {
        let deadline =
            engine.clock.to_runtime(timer.poll_timeout().unwrap_or(chatbox_core::Instant::MAX));
        let step = tokio::select! {
            ev = stream.next() => Step::Event(ev),
            _ = tokio::time::sleep_until(deadline) => Step::Deadline,
            _ = crate::engine::supervisor::signalled(&mut cut) => Step::Cut,
        };
        let now = engine.clock.now();
        let decided = match step {
            Step::Event(Some(Ok(StreamEvent::Delta(chunk)))) => match timer.on_chunk(now) {
                ChunkVerdict::Deliver => {
                    let frame = Frame::ai_chunk(
                        &job.session_id,
                        &model_id,
                        chunk.as_str(),
                        engine.frame_now(),
                    );
                    engine.send_session(&job.session_id, &frame, Some(job.sender));
                    text.push_str(&chunk);
                    None
                }
                ChunkVerdict::Finish(outcome) => Some(outcome),
                // The timer ended the reply earlier and that call returned the outcome.
                ChunkVerdict::Discard => None,
            },
            Step::Event(Some(Ok(StreamEvent::End { conversation_id }))) => {
                if let Some(conversation) = conversation_id {
                    engine
                        .conversations
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .insert(job.session_id.clone(), conversation);
                }
                timer.on_end(now)
            }
            Step::Event(Some(Err(error))) => {
                tracing::warn!(session_id = %job.session_id, model_id = %model_id, %error, "stream failed");
                timer.on_error(now)
            }
            Step::Event(None) => {
                tracing::warn!(session_id = %job.session_id, model_id = %model_id, "stream ended without completion");
                timer.on_error(now)
            }
            Step::Deadline => timer.handle_timeout(now),
            Step::Cut => break Stopped::Cut,
        };
        match decided {
            Some(outcome) => break Stopped::Outcome(outcome),
            None if timer.is_finished() => break Stopped::AlreadyEnded,
            None => {}
        }
    };
    *decided = engine.clock.now();
    let response_time = *decided - started;
    match stopped {
        Stopped::Outcome(Outcome::Done) => complete(engine, &job, &text, response_time).await,
        Stopped::Outcome(outcome) => emit_failure(engine, &job, outcome),
        Stopped::Cut => finish(engine, &job, ReplyEnd::Cut).await,
        Stopped::AlreadyEnded => ReplyEnd::Failed,
    }
}

/// Opens the stream, retrying transient failures while no chunk has been sent and the
/// first-chunk deadline allows.
async fn open_with_retry(
    engine: &Arc<Engine>,
    job: &ReplyJob,
    timer: &mut ReplyTimer,
    cut: &mut tokio::sync::watch::Receiver<bool>,
) -> Result<EventStream, ReplyEnd> {
    // Seeded per reply so many sessions failing together do not retry in lock-step.
    let policy =
        RetryPolicy { jitter: Jitter::Seeded(super::ids::random_u64()), ..engine.provider_retry };
    let mut retry = policy.start(timer.poll_timeout());
    let mut request = job.request.clone();
    loop {
        let deadline =
            engine.clock.to_runtime(timer.poll_timeout().unwrap_or(chatbox_core::Instant::MAX));
        engine.metrics.llm_request(job.model.kind);
        let attempt = tokio::select! {
            r = job.model.provider.open_stream(request.clone()) => Some(r),
            _ = tokio::time::sleep_until(deadline) => None,
            _ = crate::engine::supervisor::signalled(cut) => return Err(ReplyEnd::Cut),
        };
        let now = engine.clock.now();
        let error = match attempt {
            Some(Ok(stream)) => return Ok(stream),
            Some(Err(error)) => error,
            None => {
                let outcome = timer.handle_timeout(now).unwrap_or(Outcome::Failed);
                return Err(emit_failure(engine, job, outcome));
            }
        };
        tracing::warn!(session_id = %job.session_id, model_id = %job.model.info.id, %error, "provider call failed");
        if error.class() == ErrorClass::Permanent && request.conversation_id.is_some() {
            // An upstream conversation can expire (Dify answers 404 "Conversation Not Exists"):
            // forget it and try once more as a new conversation.
            request.conversation_id = None;
            engine
                .conversations
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .remove(&job.session_id);
            continue;
        }
        match retry.on_failure(error.class(), now) {
            RetryDecision::RetryAfter { delay, .. } => {
                let wake = engine.clock.to_runtime(now + delay);
                tokio::select! {
                    _ = tokio::time::sleep_until(wake.min(deadline)) => {}
                    _ = crate::engine::supervisor::signalled(cut) => return Err(ReplyEnd::Cut),
                }
                if let Some(outcome) = timer.handle_timeout(engine.clock.now()) {
                    return Err(emit_failure(engine, job, outcome));
                }
            }
            RetryDecision::GiveUp(_) => {
                let outcome = timer.on_error(now).unwrap_or(Outcome::Failed);
                return Err(emit_failure(engine, job, outcome));
            }
        }
    }
}

/// Sends the one error frame of a failed reply.
fn emit_failure(engine: &Arc<Engine>, job: &ReplyJob, outcome: Outcome) -> ReplyEnd {
    let info = match outcome {
        Outcome::Timeout { after, .. } => ErrorInfo::llm_timeout(after),
        Outcome::Failed | Outcome::Done => ErrorInfo::llm_unavailable(),
    };
    tracing::warn!(session_id = %job.session_id, model_id = %job.model.info.id, code = info.code.as_str(), "reply failed");
    let frame = Frame::error(info, Some(&job.session_id), engine.frame_now());
    engine.send_session(&job.session_id, &frame, Some(job.sender));
    ReplyEnd::Failed
}

/// A reply that did not complete: cut replies get the documented service error.
async fn finish(engine: &Arc<Engine>, job: &ReplyJob, end: ReplyEnd) -> ReplyEnd {
    if end == ReplyEnd::Cut {
        let frame = Frame::error(
            ErrorInfo::service_unavailable(),
            Some(&job.session_id),
            engine.frame_now(),
        );
        engine.send_session(&job.session_id, &frame, Some(job.sender));
    }
    end
}

/// Stores the finished reply, then acknowledges it with the `done` frame.
async fn complete(
    engine: &Arc<Engine>,
    job: &ReplyJob,
    text: &str,
    response_time: Duration,
) -> ReplyEnd {
    let now_wall = engine.clock.wall();
    if !text.is_empty() {
        let msg = StoredMessage {
            id: new_message_id(),
            content: text.to_string(),
            ts: now_wall,
            sender: "ai".to_string(),
            file_id: String::new(),
            file_url: String::new(),
            meta: Default::default(),
        };
        let stored = engine
            .persist(PendingWrite::Append {
                session_id: job.session_id.to_string(),
                message: msg.clone(),
            })
            .await;
        if stored.is_err() {
            let frame = Frame::error(
                ErrorInfo::database_error(),
                Some(&job.session_id),
                engine.frame_now(),
            );
            engine.send_session(&job.session_id, &frame, Some(job.sender));
            return ReplyEnd::Failed;
        }
    }
    let tokens = (text.len() / 4) as u64;
    engine.metrics.add_tokens(job.model.kind, tokens);
    let stats = engine.sessions.with(|t| {
        t.record_reply(&job.session_id, response_time, tokens).ok()?;
        let s = t.get(&job.session_id)?;
        let rt = s.response_times();
        Some((s.total_tokens(), rt.max().as_millis() as u64, rt.average().as_millis() as u64))
    });
    let done = Frame::ai_done(&job.session_id, &job.model.info.id, engine.frame_now());
    engine.send_session(&job.session_id, &done, Some(job.sender));
    if let Some((total, max_ms, avg_ms)) = stats {
        let patch = SessionPatch {
            total_tokens: Some(total),
            response_ms: Some((max_ms, avg_ms)),
            ..Default::default()
        };
        let _ = engine
            .persist(PendingWrite::Update {
                session_id: job.session_id.to_string(),
                patch: patch.clone(),
            })
            .await;
    }
    ReplyEnd::Done
}

/// A fresh message id (32 hex characters).
pub fn new_message_id() -> String {
    super::ids::hex32()
}
