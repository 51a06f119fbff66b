//! The replies service: the configured models and one reply at a time, run under core's rules
//! from the provider call to its single outcome — read top to bottom, this file is the whole
//! run (STYLE.md §8, issue 17):
//! 1. [`Replies::run`] takes the session's upstream conversation id (Dify), counts the reply as
//!    live, registers it for `stop` frames ([`stops`]) and drives it;
//! 2. `Run::open_with_fallback` opens the provider stream, peeking its first event under the
//!    reply's one first-chunk deadline: until it arrives a failure is retried per core's
//!    `RetryPolicy::PROVIDER` (honouring `Retry-After`) and then handed to the next model of
//!    the fallback chain, skipping providers whose circuit breaker is open ([`models`]);
//!    nothing reaches the user before the first chunk, so nothing sent is ever repeated;
//! 3. `Run::drive` forwards the chunks to the session through the delivery service under the
//!    three deadlines of core's `ReplyTimer` and decides exactly one outcome. A failed or cut
//!    reply sends its one error frame here — `LLM_TIMEOUT`, `LLM_UNAVAILABLE` or
//!    `SERVICE_UNAVAILABLE` (PROTOCOL.md §10 item 21); a finished one is returned with its
//!    text for the caller to store and acknowledge. The reply keeps going if the user's socket
//!    drops (STYLE.md §9); it is cut only by shutdown, or stopped by a `stop` frame (issue 15:
//!    no error frame; the caller stores the partial text and sends the final frame). Whatever
//!    the end, the text delivered so far is returned. A [`ReplyMode::Whole`] reply (a voice
//!    answer) runs under the same rules but sends nothing while it runs.
//!
//! The service also owns the upstream conversation ids per session, the gauge of replies
//! streaming now (which shutdown waits on) and the token accounts ([`usage`]: per model since
//! start, and the per-user daily budget `USER_TOKEN_BUDGET`). Storing the finished reply is the
//! caller's (`frames::user_message` for text, `frames::file` for voice).
//!
//! Every attempt is counted per provider id (`chatbox_provider_requests_total`, `_errors_total`)
//! and every move down the chain (`chatbox_provider_fallbacks_total`). Breakers: a transient
//! failure (connect error, header timeout, 429, 5xx, a connection lost before the first chunk)
//! or the first-chunk deadline passing is a failure; a first chunk, and a permanent refusal
//! (the upstream is up, it just said no), is a success.

mod models;
pub mod stops;
mod usage;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatbox_core::breaker::CallOutcome;
use chatbox_core::config::Config;
use chatbox_core::fallback::FallbackPlan;
use chatbox_core::protocol::{ErrorInfo, Frame, ModelInfo};
use chatbox_core::retry::{retry_after_delay, ErrorClass, Jitter, RetryDecision, RetryPolicy};
use chatbox_core::stream::{ChunkVerdict, Outcome, ReplyTimer, StreamDeadlines};
use chatbox_core::usage::{DailyTokenBudget, TokenUsage};
use chatbox_core::{Instant, UnixMillis};
use futures_util::{stream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::watch;
use tracing::Instrument;

use super::clock::Clock;
use super::delivery::{ConnId, Delivery, ReplyFrame};
use super::fleet_limits::SharedTokens;
use super::gauge::Gauge;
use super::llm::{ChatRequest, EventStream, LlmProvider, ProviderError, StreamEvent};
use super::metrics::Metrics;
use super::supervisor::signalled;
use super::telemetry;
pub use models::Model;
use models::Models;
pub use stops::{StopGuard, Stops};
pub use usage::usage_meta;
use usage::Usage;

/// Budget of a voice-message answer (PROTOCOL.md §7.2): its total deadline.
pub use chatbox_core::budgets::VOICE_BUDGET;

/// Models, reply rules and the state replies share.
#[derive(Debug)]
pub struct Replies {
    models: Models,
    /// Tokens per model since start and the per-user daily budget.
    usage: Usage,
    deadlines: StreamDeadlines,
    /// Retry schedule for provider calls before the first chunk (§7.2: 1 s, 2 s, cap 30 s).
    retry: RetryPolicy,
    /// Dify conversation ids per session (dropped with the session).
    conversations: Mutex<HashMap<String, String>>,
    live: Gauge,
    /// The streamed replies a `stop` frame can end, by session.
    stops: Stops,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Replies {
    /// One model per configured provider (same order as `config.llm.providers`).
    pub fn new(
        config: &Config,
        providers: Vec<Arc<dyn LlmProvider>>,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            models: Models::new(config, providers, &metrics),
            usage: Usage::new(DailyTokenBudget::new(config.llm.user_token_budget)),
            deadlines: StreamDeadlines {
                first_chunk: config.llm.first_chunk_timeout,
                idle: config.llm.idle_timeout,
                total: config.llm.stream_timeout,
            },
            retry: RetryPolicy::PROVIDER,
            conversations: Mutex::default(),
            live: Gauge::default(),
            stops: Stops::default(),
            clock,
            metrics,
        }
    }

    /// The model for `id`, or the default (first) model when `id` is `None` or empty.
    pub fn model(&self, id: Option<&str>) -> Option<&Model> {
        self.models.get(id)
    }

    /// Whether `id` names a configured model.
    pub fn has_model(&self, id: &str) -> bool {
        self.models.has(id)
    }

    /// The models as sent in `connection_status`.
    pub fn model_list(&self) -> &[ModelInfo] {
        self.models.list()
    }

    /// Replies streaming now (shutdown waits for them to settle).
    pub fn live(&self) -> &Gauge {
        &self.live
    }

    /// Stops the streamed reply of `session` in progress here (a `stop` frame, issue 15);
    /// `false` when none runs on this instance.
    pub fn stop(&self, session: &str) -> bool {
        self.stops.stop(session)
    }

    /// Forgets the upstream conversations of sessions dropped from memory.
    pub fn forget<'a>(&self, sessions: impl Iterator<Item = &'a str>) {
        let mut conversations = self.conversations();
        for id in sessions {
            conversations.remove(id);
        }
    }

    /// Makes `USER_TOKEN_BUDGET` count across the fleet through `tokens` (once, at start).
    pub fn attach_fleet_tokens(&self, tokens: Arc<dyn SharedTokens>) {
        self.usage.attach_fleet(tokens);
    }

    /// May `user` start a reply at `now` (`USER_TOKEN_BUDGET`)? `Err` carries the wait until the
    /// budget resets. In a fleet the spending of every instance counts (read from Redis); while
    /// Redis does not answer, this instance's own counts decide.
    pub async fn check_budget(&self, user: &str, now: UnixMillis) -> Result<(), Duration> {
        let refused = self.usage.check(user, now, self.clock.now()).await;
        if refused.is_err() {
            self.metrics.token_budget_refusals.inc();
        }
        refused
    }

    /// Records a finished reply's `usage`: the per-model counters (Prometheus and the admin
    /// metrics) and `user`'s budget.
    pub async fn record_usage(
        &self,
        model_id: &str,
        kind: &str,
        user: &str,
        usage: TokenUsage,
        now: UnixMillis,
    ) {
        self.metrics.add_tokens(kind, usage.total());
        self.metrics.add_model_tokens(model_id, usage.prompt, usage.completion);
        self.usage.record(model_id, user, usage, now, self.clock.now()).await;
    }

    /// Tokens of finished replies per answering model id since this instance started.
    pub fn tokens_by_model(&self) -> BTreeMap<String, TokenUsage> {
        self.usage.by_model()
    }

    /// Runs one reply to its single outcome, sending its frames through `delivery`; `cut`
    /// turns true when shutdown cuts replies in flight. A streamed reply continues the
    /// session's upstream conversation (Dify), counts as live while it runs, and can be stopped
    /// ([`Replies::stop`]).
    pub async fn run(
        &self,
        delivery: &Delivery,
        job: ReplyJob,
        cut: watch::Receiver<bool>,
    ) -> Streamed {
        let stop = (job.mode == ReplyMode::Streamed).then(|| self.stops.register(&job.session_id));
        self.run_with(delivery, job, cut, stop).await
    }

    /// A stop registration for the streamed reply of `session` about to run: taken before the
    /// message is acknowledged, so a `stop` sent as soon as `loading` arrives (while history is
    /// read) reaches the reply instead of finding nothing in flight.
    pub fn stoppable(&self, session: &str) -> StopGuard {
        self.stops.register(session)
    }

    /// [`Replies::run`] for a streamed reply whose stop registration was taken earlier
    /// ([`Replies::stoppable`]).
    pub async fn run_stoppable(
        &self,
        delivery: &Delivery,
        job: ReplyJob,
        cut: watch::Receiver<bool>,
        stop: StopGuard,
    ) -> Streamed {
        self.run_with(delivery, job, cut, Some(stop)).await
    }

    async fn run_with(
        &self,
        delivery: &Delivery,
        mut job: ReplyJob,
        cut: watch::Receiver<bool>,
        guard: Option<StopGuard>,
    ) -> Streamed {
        let streamed = job.mode == ReplyMode::Streamed;
        if streamed {
            job.request.conversation_id = self.conversations().get(&job.session_id).cloned();
        }
        let _live = streamed.then(|| self.live.enter());
        let started = self.clock.now();
        let kind = job.model.kind;
        let reply_id = super::ids::hex32();
        let run = Run {
            replies: self,
            delivery,
            job: &job,
            reply_id: &reply_id,
            next_seq: AtomicU64::new(1),
        };
        // Only streamed replies are stoppable; a voice answer gets a signal that never fires.
        let (_never, unstoppable) = watch::channel(false);
        let stop = guard.as_ref().map_or(unstoppable, |g| g.signal.clone());
        let Driven { end, text, decided, next_seq, conversation, answered_by, usage } =
            run.drive(started, cut, stop).await;
        drop(guard);
        match conversation {
            ConversationUpdate::Keep => {}
            ConversationUpdate::Set(id) if streamed => {
                self.conversations().insert(job.session_id.clone(), id);
            }
            ConversationUpdate::Set(_) => {}
            ConversationUpdate::Forget => {
                self.conversations().remove(&job.session_id);
            }
        }
        let kind = answered_by.as_ref().map_or(kind, |m| m.kind);
        self.metrics.observe_llm_latency(kind, decided - started);
        if end == ReplyEnd::Failed {
            self.metrics.llm_error(kind);
        }
        Streamed { end, text, started, decided, reply_id, next_seq, answered_by, usage }
    }

    fn conversations(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.conversations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A stable, non-identifying key for a user (Dify's `user`, §10 item 29).
pub fn user_key(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    format!("user-{}", super::ids::hex_lower(&digest[..16]))
}

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
enum ConversationUpdate {
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
struct Driven {
    end: ReplyEnd,
    text: String,
    decided: Instant,
    next_seq: u64,
    conversation: ConversationUpdate,
    answered_by: Option<Model>,
    usage: Option<TokenUsage>,
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
struct Run<'a> {
    replies: &'a Replies,
    delivery: &'a Delivery,
    job: &'a ReplyJob,
    /// Stamped on every `ai_response` frame of this reply and on the error frame that ends it.
    reply_id: &'a str,
    /// The seq the next frame of the reply takes.
    next_seq: AtomicU64,
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
    async fn drive(
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
        // One timer and one wait per signal for the whole stream, moved or kept between chunks,
        // instead of new ones per chunk, each registered with (and removed from) the timer wheel
        // and the signals' waiter lists under their locks (BENCHMARKS.md "1i").
        let mut armed = replies.clock.to_runtime(timer.poll_timeout().unwrap_or(Instant::MAX));
        let sleep = tokio::time::sleep_until(armed);
        let (cut_signal, stop_signal) = (signalled(&mut cut), signalled(&mut stop));
        tokio::pin!(sleep, cut_signal, stop_signal);
        let stopped = loop {
            let deadline = replies.clock.to_runtime(timer.poll_timeout().unwrap_or(Instant::MAX));
            if deadline != armed {
                sleep.as_mut().reset(deadline);
                armed = deadline;
            }
            // A signal's future is polled again only while pending: its arm ends the loop.
            let step = tokio::select! {
                ev = stream.next() => Step::Event(ev),
                () = &mut sleep => Step::Deadline,
                () = &mut cut_signal => Step::Cut,
                () = &mut stop_signal => Step::Stop,
            };
            let now = replies.clock.now();
            let decided = match step {
                Step::Event(Some(Ok(StreamEvent::Delta(chunk)))) => match timer.on_chunk(now) {
                    ChunkVerdict::Deliver => {
                        if job.mode == ReplyMode::Streamed {
                            self.send_chunk(&model_id, &chunk);
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

    /// Sends one streamed chunk of the reply, written straight to its wire text.
    fn send_chunk(&self, model_id: &str, chunk: &str) {
        let (job, seq) = (self.job, self.seq());
        self.next_seq.store(seq + 1, Ordering::Relaxed);
        let now = self.replies.clock.wall_datetime();
        let text =
            Frame::ai_chunk_json(&job.session_id, model_id, chunk, (self.reply_id, seq), now);
        let at = ReplyFrame { reply_id: self.reply_id, session: &job.session_id, seq, last: false };
        self.delivery.send_reply_text(at, Arc::from(text), job.sender, self.replies.clock.now());
    }

    /// Sends the one error frame of a failed reply.
    fn emit_failure(&self, outcome: Outcome) -> ReplyEnd {
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
    fn unfinished(&self, end: ReplyEnd) -> ReplyEnd {
        if end == ReplyEnd::Cut {
            self.send_error(ErrorInfo::service_unavailable());
        }
        end
    }

    /// Sends the error frame that ends a failed streamed reply: its last frame, which names it
    /// (a client with replies of one session streaming on two instances can tell whose outcome
    /// it is) and which a resume replays too.
    fn send_error(&self, info: ErrorInfo) {
        let job = self.job;
        if job.mode == ReplyMode::Streamed {
            let seq = self.seq();
            self.next_seq.store(seq + 1, Ordering::Relaxed);
            let error =
                Frame::error(info, Some(&job.session_id), self.replies.clock.wall_datetime());
            let at = (self.reply_id, job.session_id.as_str(), seq);
            self.delivery.send_reply_outcome(at, error, job.sender, self.replies.clock.now());
        }
    }
}

/// A stream whose first event has arrived, and the model that sent it.
struct Opened {
    /// The stream, its first event first.
    stream: EventStream,
    /// The model answering (the reply's own, or a fallback).
    model: Model,
}

/// The signals that end a reply before its first chunk: shutdown's cut and a `stop` frame.
struct Signals<'a> {
    cut: &'a mut watch::Receiver<bool>,
    stop: &'a mut watch::Receiver<bool>,
}

/// How one provider's attempts ended.
enum Tried {
    /// A first event arrived.
    Opened(EventStream),
    /// It failed (retries used up, or a permanent refusal): try the next one.
    Failed,
    /// The reply ended (deadline, shutdown); its error frame is sent.
    Ended(ReplyEnd),
}

impl Run<'_> {
    /// Opens the reply's stream on its model or one of its fallbacks (see the module doc).
    async fn open_with_fallback(
        &self,
        timer: &mut ReplyTimer,
        cut: &mut watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
        conversation: &mut ConversationUpdate,
    ) -> Result<Opened, ReplyEnd> {
        let (replies, job) = (self.replies, self.job);
        let chain = replies.models.chain(&job.model);
        let mut plan = FallbackPlan::new(chain.len());
        let mut left: Option<&Model> = None;
        loop {
            let now = replies.clock.now();
            let Some(attempt) = plan.next(|i| replies.models.breaker_allows(&chain[i], now)) else {
                let outcome = timer.on_error(now).unwrap_or(Outcome::Failed);
                return Err(self.emit_failure(outcome));
            };
            for &i in &attempt.skipped {
                let skipped = &chain[i].info.id;
                replies.metrics.provider_breaker_skips.with_label_values(&[skipped]).inc();
                if !attempt.forced {
                    replies.metrics.provider_fallbacks.with_label_values(&[skipped]).inc();
                }
                tracing::info!(session_id = %job.session_id, provider_id = %skipped, "provider skipped: circuit breaker open");
            }
            let model = &chain[attempt.candidate];
            if let Some(from) = left.take() {
                replies.metrics.provider_fallbacks.with_label_values(&[&from.info.id]).inc();
                tracing::warn!(session_id = %job.session_id, from = %from.info.id, to = %model.info.id, "falling back to the next provider");
            }
            // With another provider left to try, a provider whose breaker opens on this
            // reply's failure is not retried further (the breaker says it is down).
            let more_left = !attempt.forced && attempt.candidate + 1 < chain.len();
            let signals = Signals { cut: &mut *cut, stop: &mut *stop };
            match self.try_provider(model, more_left, timer, signals, conversation).await {
                Tried::Opened(stream) => return Ok(Opened { stream, model: model.clone() }),
                Tried::Failed => left = Some(model),
                Tried::Ended(end) => return Err(end),
            }
        }
    }

    /// Attempts `model` until its first event arrives, retrying transient failures per the
    /// provider schedule within the first-chunk deadline; with `stop_when_open`, no retry once
    /// the provider's breaker has opened.
    async fn try_provider(
        &self,
        model: &Model,
        stop_when_open: bool,
        timer: &mut ReplyTimer,
        signals: Signals<'_>,
        conversation: &mut ConversationUpdate,
    ) -> Tried {
        let Signals { cut, stop } = signals;
        let (replies, job) = (self.replies, self.job);
        let id = model.info.id.as_str();
        // Seeded per attempt sequence so many sessions failing together do not retry in
        // lock-step.
        let policy = RetryPolicy {
            jitter: Jitter::Seeded(crate::engine::ids::random_u64()),
            ..replies.retry
        };
        let first_chunk_by = timer.poll_timeout().unwrap_or(Instant::MAX);
        let mut retry = policy.start(Some(first_chunk_by));
        let own_model = model.info.id == job.model.info.id;
        // The job's request is lent to each attempt (up to `LLM_HISTORY_MAX_MESSAGES` lines:
        // no copy per attempt); a copy without the upstream conversation id is made only when
        // that id must not be sent — it belongs to the provider that started it.
        let mut unthreaded = None;
        if !own_model && job.request.conversation_id.is_some() {
            unthreaded = Some(ChatRequest { conversation_id: None, ..job.request.clone() });
        }
        let mut tries = 0;
        loop {
            let request = unthreaded.as_ref().unwrap_or(&job.request);
            let deadline = replies.clock.to_runtime(first_chunk_by);
            replies.metrics.llm_request(model.kind);
            replies.metrics.provider_requests.with_label_values(&[id]).inc();
            tries += 1;
            let span = telemetry::attempt_span(model, tries, !own_model);
            let attempt = tokio::select! {
                r = open_and_peek(model, request).instrument(span.clone()) => Some(r),
                _ = tokio::time::sleep_until(deadline) => None,
                _ = signalled(cut) => return Tried::Ended(self.unfinished(ReplyEnd::Cut)),
                _ = signalled(stop) => return Tried::Ended(ReplyEnd::Stopped),
            };
            let now = replies.clock.now();
            let error = match attempt {
                Some(Ok(stream)) => {
                    replies.models.breaker_record(model, CallOutcome::Success, now);
                    return Tried::Opened(stream);
                }
                Some(Err(error)) => error,
                None => {
                    replies.metrics.provider_errors.with_label_values(&[id]).inc();
                    replies.models.breaker_record(model, CallOutcome::Failure, now);
                    telemetry::record_attempt_failed(&span, "timeout");
                    let outcome = timer.handle_timeout(now).unwrap_or(Outcome::Failed);
                    return Tried::Ended(self.emit_failure(outcome));
                }
            };
            telemetry::record_attempt_failed(&span, error.kind_label());
            replies.metrics.provider_errors.with_label_values(&[id]).inc();
            tracing::warn!(session_id = %job.session_id, provider_id = id, %error, "provider call failed");
            let outcome = match error.class() {
                ErrorClass::Transient => CallOutcome::Failure,
                ErrorClass::Permanent => CallOutcome::Success,
            };
            let opened = replies.models.breaker_record(model, outcome, now);
            if opened && stop_when_open {
                return Tried::Failed;
            }
            if error.class() == ErrorClass::Permanent && request.conversation_id.is_some() {
                // An upstream conversation can expire (Dify answers 404 "Conversation Not
                // Exists"): forget it and try once more as a new conversation.
                unthreaded = Some(ChatRequest { conversation_id: None, ..request.clone() });
                *conversation = ConversationUpdate::Forget;
                continue;
            }
            let delay = match retry.on_failure(error.class(), now) {
                RetryDecision::RetryAfter { delay, .. } => delay,
                RetryDecision::GiveUp(_) => return Tried::Failed,
            };
            // The upstream's Retry-After wins over the schedule, unless it asks for longer than
            // the first-chunk deadline leaves: then this provider is given up.
            let left = first_chunk_by.saturating_duration_since(now);
            let Some(wait) = retry_after_delay(error.retry_after(), delay, left) else {
                return Tried::Failed;
            };
            let signals = Signals { cut: &mut *cut, stop: &mut *stop };
            if let Some(end) = self.pause(now, wait, deadline, timer, signals).await {
                return Tried::Ended(end);
            }
        }
    }

    /// Sleeps `wait` from `now` (not past `deadline`); `Some` when the reply ended meanwhile.
    async fn pause(
        &self,
        now: Instant,
        wait: Duration,
        deadline: tokio::time::Instant,
        timer: &mut ReplyTimer,
        signals: Signals<'_>,
    ) -> Option<ReplyEnd> {
        let Signals { cut, stop } = signals;
        let replies = self.replies;
        let wake = replies.clock.to_runtime(now.saturating_add(wait));
        tokio::select! {
            _ = tokio::time::sleep_until(wake.min(deadline)) => {}
            _ = signalled(cut) => return Some(self.unfinished(ReplyEnd::Cut)),
            _ = signalled(stop) => return Some(ReplyEnd::Stopped),
        }
        let outcome = timer.handle_timeout(replies.clock.now())?;
        Some(self.emit_failure(outcome))
    }
}

/// Opens `model`'s stream and waits for its first event: a delta or the end is success (the
/// stream is given back with that event first); an error, or a body that ends first, is the
/// attempt's failure.
async fn open_and_peek(model: &Model, request: &ChatRequest) -> Result<EventStream, ProviderError> {
    let mut events = model.provider.open_stream(request).await?;
    match events.next().await {
        Some(Ok(first)) => Ok(Box::pin(stream::once(async move { Ok(first) }).chain(events))),
        Some(Err(error)) => Err(error),
        None => Err(ProviderError::Permanent {
            provider: model.kind,
            detail: "stream ended without completion".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delivery::{LocalBus, Outbound, Registration};
    use crate::engine::llm::{ChatMessage, ChatRequest, EventStream, ProviderError, Role};
    use async_trait::async_trait;
    use chatbox_core::config::ProviderConfig;
    use std::time::Duration;

    /// A provider whose upstream always refuses.
    #[derive(Debug)]
    struct Refusing;

    #[async_trait]
    impl LlmProvider for Refusing {
        fn kind(&self) -> &'static str {
            "refusing"
        }

        async fn open_stream(&self, _: &ChatRequest) -> Result<EventStream, ProviderError> {
            Err(ProviderError::Permanent { provider: "refusing", detail: "400".into() })
        }
    }

    fn job(replies: &Replies, sender: Option<u64>, mode: ReplyMode) -> ReplyJob {
        let request = ChatRequest {
            messages: vec![ChatMessage {
                role: Role::User,
                content: "hi".into(),
                images: Vec::new(),
            }],
            user_key: "user-x".into(),
            conversation_id: None,
        };
        let model = replies.model(None).cloned().expect("one model");
        ReplyJob { session_id: "s".into(), model, request, sender, mode }
    }

    #[test]
    fn user_keys_are_stable_and_do_not_reveal_the_id() {
        assert_eq!(user_key("alice"), user_key("alice"));
        assert_ne!(user_key("alice"), user_key("bob"));
        assert!(!user_key("alice").contains("alice"));
    }

    #[tokio::test]
    async fn a_refused_reply_ends_once_with_llm_unavailable_and_a_whole_one_silently() {
        let config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        let metrics = Arc::new(Metrics::new());
        let replies =
            Replies::new(&config, vec![Arc::new(Refusing)], Clock::new(), Arc::clone(&metrics));
        assert_eq!(replies.model(None).map(|m| m.kind), Some("refusing"), "kind() labels metrics");
        let delivery = Delivery::new(Arc::new(LocalBus::default()), metrics);
        let (tx, mut rx) = crate::engine::delivery::queue::channel(8);
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx });
        let (_cut_tx, cut) = watch::channel(false);

        let streamed = replies
            .run(&delivery, job(&replies, Some(conn), ReplyMode::Streamed), cut.clone())
            .await;
        assert_eq!(streamed.end, ReplyEnd::Failed);
        let Ok(Outbound::Frame(text)) = rx.try_recv() else { panic!("an error frame") };
        assert!(text.contains("LLM_UNAVAILABLE"), "{text}");
        let frame: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(frame["metadata"]["reply_id"], streamed.reply_id.as_str(), "names its reply");
        assert_eq!(frame["metadata"]["seq"], "1", "the reply's next seq: {text}");
        assert!(rx.try_recv().is_err(), "exactly one outcome frame");

        let whole = ReplyMode::Whole { total: VOICE_BUDGET };
        let streamed = replies.run(&delivery, job(&replies, Some(conn), whole), cut).await;
        assert_eq!(streamed.end, ReplyEnd::Failed);
        assert!(rx.try_recv().is_err(), "a whole reply sends nothing of its own");
    }

    /// A provider that answers from a script of outcomes (then succeeds), recording when each
    /// call came.
    #[derive(Debug)]
    struct Scripted {
        outcomes: Mutex<std::collections::VecDeque<Result<(), ProviderError>>>,
        calls: Mutex<Vec<tokio::time::Instant>>,
    }

    impl Scripted {
        fn new(outcomes: Vec<Result<(), ProviderError>>) -> Arc<Self> {
            Arc::new(Self { outcomes: Mutex::new(outcomes.into()), calls: Mutex::default() })
        }

        fn calls(&self) -> Vec<tokio::time::Instant> {
            self.calls.lock().unwrap().clone()
        }
    }

    #[async_trait]
    impl LlmProvider for Scripted {
        fn kind(&self) -> &'static str {
            "scripted"
        }

        #[allow(clippy::disallowed_methods, reason = "a test double records its call times")]
        async fn open_stream(&self, request: &ChatRequest) -> Result<EventStream, ProviderError> {
            self.calls.lock().unwrap().push(tokio::time::Instant::now());
            let outcome = self.outcomes.lock().unwrap().pop_front().unwrap_or(Ok(()));
            outcome?;
            crate::adapters::llm::echo::EchoProvider.open_stream(request).await
        }
    }

    fn throttled(retry_after: &str) -> ProviderError {
        ProviderError::Throttled {
            provider: "scripted",
            detail: "429".into(),
            retry_after: retry_after.into(),
        }
    }

    fn transient() -> ProviderError {
        ProviderError::Transient { provider: "scripted", detail: "connection refused".into() }
    }

    /// Replies over `providers` (ids `p0`, `p1`, …), `p0` falling back to the others in order.
    fn replies_over(providers: Vec<Arc<dyn LlmProvider>>) -> (Replies, Arc<Metrics>) {
        let mut config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        config.llm.providers = (0..providers.len())
            .map(|i| ProviderConfig::echo(format!("p{i}"), format!("P{i}")))
            .collect();
        config.llm.providers[0].fallback = (1..providers.len()).map(|i| format!("p{i}")).collect();
        let metrics = Arc::new(Metrics::new());
        let replies = Replies::new(&config, providers, Clock::new(), Arc::clone(&metrics));
        (replies, metrics)
    }

    async fn run_once(replies: &Replies, metrics: &Arc<Metrics>) -> Streamed {
        let delivery = Delivery::new(Arc::new(LocalBus::default()), Arc::clone(metrics));
        let (tx, _rx) = crate::engine::delivery::queue::channel(64);
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx });
        let (_cut_tx, cut) = watch::channel(false);
        replies.run(&delivery, job(replies, Some(conn), ReplyMode::Streamed), cut).await
    }

    #[tokio::test(start_paused = true)]
    async fn retry_after_replaces_the_schedule_before_the_first_chunk() {
        let provider = Scripted::new(vec![Err(throttled("7")), Err(throttled("0"))]);
        let (replies, metrics) = replies_over(vec![provider.clone()]);
        let streamed = run_once(&replies, &metrics).await;
        assert_eq!(streamed.end, ReplyEnd::Done);
        let calls = provider.calls();
        assert_eq!(calls.len(), 3);
        assert_eq!(calls[1] - calls[0], Duration::from_secs(7), "the upstream's 7 s, not 1 s");
        assert_eq!(calls[2] - calls[1], Duration::ZERO, "Retry-After: 0 retries at once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_retry_after_beyond_the_first_chunk_deadline_moves_to_the_fallback() {
        let primary = Scripted::new(vec![Err(throttled("3600"))]);
        let backup = Scripted::new(vec![]);
        let (replies, metrics) = replies_over(vec![primary.clone(), backup.clone()]);
        let streamed = run_once(&replies, &metrics).await;
        assert_eq!(streamed.end, ReplyEnd::Done);
        assert_eq!(streamed.answered_by.map(|m| m.info.id), Some("p1".to_string()));
        assert_eq!((primary.calls().len(), backup.calls().len()), (1, 1));
        assert_eq!(backup.calls()[0], primary.calls()[0], "no wait for a hopeless Retry-After");
    }

    #[tokio::test(start_paused = true)]
    async fn a_provider_that_keeps_failing_is_skipped_until_its_cool_down_ends() {
        use chatbox_core::breaker::{PROVIDER_BREAKER_FAILURES, PROVIDER_BREAKER_OPEN_FOR};
        // Every attempt of the primary fails; three per reply (the provider schedule).
        let failures = vec![Err(transient()); 100];
        let primary = Scripted::new(failures);
        let backup = Scripted::new(vec![]);
        let (replies, metrics) = replies_over(vec![primary.clone(), backup.clone()]);
        let mut replies_needed = 0;
        while (primary.calls().len() as u32) < PROVIDER_BREAKER_FAILURES {
            let streamed = run_once(&replies, &metrics).await;
            assert_eq!(streamed.answered_by.map(|m| m.info.id), Some("p1".to_string()));
            replies_needed += 1;
        }
        let tried = primary.calls().len();
        let streamed = run_once(&replies, &metrics).await;
        assert_eq!(streamed.answered_by.map(|m| m.info.id), Some("p1".to_string()));
        assert_eq!(
            primary.calls().len(),
            tried,
            "skipped while open (after {replies_needed} replies)"
        );
        assert_eq!(
            metrics.provider_breaker_skips.with_label_values(&["p0"]).get(),
            1,
            "the skip is counted"
        );
        tokio::time::advance(PROVIDER_BREAKER_OPEN_FOR).await;
        run_once(&replies, &metrics).await;
        assert_eq!(primary.calls().len(), tried + 1, "one probe after the cool-down");
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_provider_with_an_open_breaker_is_still_called() {
        let primary = Scripted::new(vec![Err(transient()); 20]);
        let (replies, metrics) = replies_over(vec![primary.clone()]);
        for _ in 0..3 {
            assert_eq!(run_once(&replies, &metrics).await.end, ReplyEnd::Failed);
        }
        let before = primary.calls().len();
        assert!(before >= 5, "the breaker opened");
        let _ = run_once(&replies, &metrics).await;
        assert!(primary.calls().len() > before, "nothing else to try: the model is called anyway");
    }
}
