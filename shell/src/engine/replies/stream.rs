//! One LLM reply's stream: open the provider stream (retrying transient failures and falling
//! back to other providers only before the first chunk, STYLE.md §8, issue 17: [`super::fallback`]),
//! forward chunks to every connection of the session, enforce the
//! three deadlines of core's `ReplyTimer`, and decide exactly one outcome. A failed or cut reply
//! sends its one error frame here — `LLM_TIMEOUT`, `LLM_UNAVAILABLE` or `SERVICE_UNAVAILABLE`
//! (PROTOCOL.md §10 item 21); a finished one is returned with its text for the caller to store
//! and acknowledge. The reply keeps going if the user's socket drops (STYLE.md §9); it is cut
//! only by shutdown, or stopped by a `stop` frame (issue 15: no error frame; the caller stores the
//! partial text and sends the final frame). Whatever the end, the text delivered so far is
//! returned, so the caller can store a cut reply's partial text. A [`ReplyMode::Whole`] reply (a voice answer) runs under the same rules but
//! sends nothing while it runs.

use chatbox_core::protocol::{ErrorInfo, Frame, FrameType};
use chatbox_core::stream::{ChunkVerdict, Outcome, ReplyTimer, StreamDeadlines};
use chatbox_core::Instant;
use futures_util::StreamExt;
use tokio::sync::watch;

use std::sync::atomic::{AtomicU64, Ordering};

use super::{Model, Replies};
use crate::engine::delivery::{ConnId, Delivery, ReplyFrame};
use crate::engine::llm::{ChatRequest, ProviderError, StreamEvent, TokenUsage};
use crate::engine::supervisor::signalled;

/// How a reply reaches the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyMode {
    /// Chunks as they come, and the failure's error frame (text replies).
    Streamed,
    /// Nothing while it runs, within `total` at most; the caller sends the whole text (voice
    /// answers, §3.8: failures are only logged).
    Whole {
        /// The reply's total budget.
        total: std::time::Duration,
    },
}

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
    pub sender: Option<ConnId>,
    /// How it is delivered.
    pub mode: ReplyMode,
}

/// How the reply ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyEnd {
    /// Finished (once stored and acknowledged by the caller).
    Done,
    /// A deadline or an upstream failure ended it (error frame sent).
    Failed,
    /// Shutdown cut it (error frame sent).
    Cut,
    /// A `stop` frame ended it (issue 15): no frame sent; the caller stores the partial text and
    /// sends the final `done` frame marked `interrupted`.
    Stopped,
}

/// What a stream produced.
#[derive(Debug)]
pub struct Streamed {
    /// The outcome ([`ReplyEnd::Done`] means the whole text is in `text`).
    pub end: ReplyEnd,
    /// The reply text delivered (partial unless the end is [`ReplyEnd::Done`]).
    pub text: String,
    /// When the reply started.
    pub started: Instant,
    /// When its outcome was decided (before it was stored).
    pub decided: Instant,
    /// The reply's identity, stamped on its frames (`metadata.reply_id`).
    pub reply_id: String,
    /// The seq its final `done` frame takes (one past the last chunk's).
    pub next_seq: u64,
    /// The model that answered: the job's own, or a fallback (issue 17); `None` when no
    /// provider produced a first chunk.
    pub answered_by: Option<Model>,
    /// The tokens the provider reported for the reply, if it did.
    pub usage: Option<TokenUsage>,
}

/// What a reply learnt about the session's upstream conversation (Dify), for [`Replies`] to
/// record once the reply ends.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) enum ConversationUpdate {
    /// Nothing new.
    #[default]
    Keep,
    /// The upstream named this conversation id.
    Set(String),
    /// The upstream no longer knows the conversation: start a new one next time.
    Forget,
}

/// What [`Run::drive`] decided: the end, the text delivered, when, the next seq, what became
/// of the upstream conversation, who answered and the reported usage.
pub(super) struct Driven {
    pub(super) end: ReplyEnd,
    pub(super) text: String,
    pub(super) decided: Instant,
    pub(super) next_seq: u64,
    pub(super) conversation: ConversationUpdate,
    pub(super) answered_by: Option<Model>,
    pub(super) usage: Option<TokenUsage>,
}

enum Step {
    Event(Option<Result<StreamEvent, ProviderError>>),
    Deadline,
    Cut,
    Stop,
}

/// How the streaming loop stopped.
enum Stopped {
    /// The timer decided the outcome.
    Outcome(Outcome),
    /// Shutdown cut the reply.
    Cut,
    /// A `stop` frame ended it.
    StopFrame,
    /// The outcome was already emitted (defensive: the loop stops at the first outcome).
    AlreadyEnded,
}

/// One reply being driven.
pub(super) struct Run<'a> {
    pub(super) replies: &'a Replies,
    pub(super) delivery: &'a Delivery,
    pub(super) job: &'a ReplyJob,
    /// Stamped on every `ai_response` frame of this reply.
    pub(super) reply_id: &'a str,
    /// The seq the next frame of the reply takes.
    pub(super) next_seq: AtomicU64,
}

impl Run<'_> {
    fn deadlines(&self) -> StreamDeadlines {
        match self.job.mode {
            ReplyMode::Streamed => self.replies.deadlines,
            ReplyMode::Whole { total } => StreamDeadlines { total, ..self.replies.deadlines },
        }
    }

    /// Runs the reply; returns its end, its text, the instant the outcome was decided and the
    /// seq the `done` frame takes.
    pub(super) async fn drive(
        &self,
        started: Instant,
        mut cut: watch::Receiver<bool>,
        mut stop: watch::Receiver<bool>,
    ) -> Driven {
        let (replies, job) = (self.replies, self.job);
        let mut timer = ReplyTimer::start(self.deadlines(), started);
        let mut text = String::new();
        let mut usage = None;

        let mut conversation = ConversationUpdate::Keep;
        let opened =
            self.open_with_fallback(&mut timer, &mut cut, &mut stop, &mut conversation).await;
        let (mut stream, answered_by) = match opened {
            Ok(opened) => (opened.stream, opened.model),
            Err(end) => {
                let decided = replies.clock.now();
                let (next_seq, answered_by) = (self.seq(), None);
                return Driven { end, text, decided, next_seq, conversation, answered_by, usage };
            }
        };
        let model_id = answered_by.info.id.clone();
        let own_model = model_id == job.model.info.id;
        let stopped = loop {
            let deadline = replies.clock.to_runtime(timer.poll_timeout().unwrap_or(Instant::MAX));
            let step = tokio::select! {
                ev = stream.next() => Step::Event(ev),
                _ = tokio::time::sleep_until(deadline) => Step::Deadline,
                _ = signalled(&mut cut) => Step::Cut,
                _ = signalled(&mut stop) => Step::Stop,
            };
            let now = replies.clock.now();
            let decided = match step {
                Step::Event(Some(Ok(StreamEvent::Delta(chunk)))) => match timer.on_chunk(now) {
                    ChunkVerdict::Deliver => {
                        if job.mode == ReplyMode::Streamed {
                            let frame = Frame::ai_chunk(
                                &job.session_id,
                                &model_id,
                                chunk.as_str(),
                                replies.clock.wall_datetime(),
                            );
                            self.send_reply_frame(frame, false);
                        }
                        text.push_str(&chunk);
                        None
                    }
                    ChunkVerdict::Finish(outcome) => Some(outcome),
                    // The timer ended the reply earlier and that call returned the outcome.
                    ChunkVerdict::Discard => None,
                },
                Step::Event(Some(Ok(StreamEvent::End { conversation_id, usage: reported }))) => {
                    usage = reported;
                    // A fallback's conversation is not the session model's to continue.
                    if let Some(id) = conversation_id.filter(|_| own_model) {
                        conversation = ConversationUpdate::Set(id);
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
                Step::Stop => break Stopped::StopFrame,
            };
            match decided {
                Some(outcome) => break Stopped::Outcome(outcome),
                None if timer.is_finished() => break Stopped::AlreadyEnded,
                None => {}
            }
        };
        let decided = replies.clock.now();
        let end = match stopped {
            Stopped::Outcome(Outcome::Done) => ReplyEnd::Done,
            Stopped::Outcome(outcome) => self.emit_failure(outcome),
            Stopped::Cut => self.unfinished(ReplyEnd::Cut),
            Stopped::StopFrame => ReplyEnd::Stopped,
            Stopped::AlreadyEnded => ReplyEnd::Failed,
        };
        let answered_by = Some(answered_by);
        Driven { end, text, decided, next_seq: self.seq(), conversation, answered_by, usage }
    }

    fn seq(&self) -> u64 {
        // Only this reply's task touches it; atomic just so `&Run` is `Send`.
        self.next_seq.load(Ordering::Relaxed)
    }

    /// Stamps `frame` with the reply's id and next seq (only `ai_response` frames show them),
    /// records it for resumes and fans it out.
    fn send_reply_frame(&self, frame: Frame, last: bool) {
        let (job, seq) = (self.job, self.seq());
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        let frame = if frame.frame_type == FrameType::AiResponse {
            frame.in_reply(self.reply_id, seq)
        } else {
            frame
        };
        let at = ReplyFrame { reply_id: self.reply_id, session: &job.session_id, seq, last };
        self.delivery.send_reply_frame(at, &frame, job.sender, self.replies.clock.now());
    }

    /// Sends the one error frame of a failed reply.
    pub(super) fn emit_failure(&self, outcome: Outcome) -> ReplyEnd {
        let job = self.job;
        let info = match outcome {
            Outcome::Timeout { after, .. } => ErrorInfo::llm_timeout(after),
            Outcome::Failed | Outcome::Done => ErrorInfo::llm_unavailable(),
        };
        tracing::warn!(session_id = %job.session_id, model_id = %job.model.info.id, code = info.code.as_str(), "reply failed");
        self.send_error(info);
        ReplyEnd::Failed
    }

    /// A reply that did not complete: cut replies get the documented service error.
    pub(super) fn unfinished(&self, end: ReplyEnd) -> ReplyEnd {
        if end == ReplyEnd::Cut {
            self.send_error(ErrorInfo::service_unavailable());
        }
        end
    }

    fn send_error(&self, info: ErrorInfo) {
        let job = self.job;
        if job.mode == ReplyMode::Streamed {
            let now = self.replies.clock.wall_datetime();
            // The outcome is the reply's last frame: a resume replays it too.
            self.send_reply_frame(Frame::error(info, Some(&job.session_id), now), true);
        }
    }
}
