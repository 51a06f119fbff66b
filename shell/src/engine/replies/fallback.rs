//! Opening a reply's stream with retries and provider fallback (issue 17), TensorZero's shape:
//! the first chunk is peeked under the reply's one first-chunk deadline, and until it has
//! arrived a failure is retried per core's `RetryPolicy::PROVIDER` (honouring `Retry-After`) and
//! then the next provider of the model's fallback chain is tried (core's `fallback`), skipping
//! providers whose circuit breaker is open. Nothing reaches the user before the first chunk, so
//! nothing sent is ever repeated; once it has arrived the reply is committed to that provider.
//!
//! Every attempt is counted per provider id (`chatbox_provider_requests_total`, `_errors_total`)
//! and every move down the chain (`chatbox_provider_fallbacks_total`). Breakers: a transient
//! failure (connect error, header timeout, 429, 5xx, a connection lost before the first chunk)
//! or the first-chunk deadline passing is a failure; a first chunk, and a permanent refusal
//! (the upstream is up, it just said no), is a success.

use std::time::Duration;

use chatbox_core::breaker::CallOutcome;
use chatbox_core::fallback::FallbackPlan;
use chatbox_core::retry::{retry_after_delay, ErrorClass, Jitter, RetryDecision, RetryPolicy};
use chatbox_core::stream::{Outcome, ReplyTimer};
use chatbox_core::Instant;
use futures_util::{stream, StreamExt};
use tokio::sync::watch;
use tracing::Instrument;

use super::stream::{ConversationUpdate, ReplyEnd, Run};
use super::Model;
use crate::engine::llm::{ChatRequest, EventStream, ProviderError};
use crate::engine::supervisor::signalled;
use crate::engine::telemetry;

/// A stream whose first event has arrived, and the model that sent it.
pub(super) struct Opened {
    /// The stream, its first event first.
    pub(super) stream: EventStream,
    /// The model answering (the reply's own, or a fallback).
    pub(super) model: Model,
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
    pub(super) async fn open_with_fallback(
        &self,
        timer: &mut ReplyTimer,
        cut: &mut watch::Receiver<bool>,
        stop: &mut watch::Receiver<bool>,
        conversation: &mut ConversationUpdate,
    ) -> Result<Opened, ReplyEnd> {
        let (replies, job) = (self.replies, self.job);
        let chain = replies.chain(&job.model);
        let mut plan = FallbackPlan::new(chain.len());
        let mut left: Option<&Model> = None;
        loop {
            let now = replies.clock.now();
            let Some(attempt) = plan.next(|i| replies.breaker_allows(&chain[i], now)) else {
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
        let mut request = job.request.clone();
        if !own_model {
            // An upstream conversation belongs to the provider that started it.
            request.conversation_id = None;
        }
        let mut tries = 0;
        loop {
            let deadline = replies.clock.to_runtime(first_chunk_by);
            replies.metrics.llm_request(model.kind);
            replies.metrics.provider_requests.with_label_values(&[id]).inc();
            tries += 1;
            let span = telemetry::attempt_span(model, tries, !own_model);
            let attempt = tokio::select! {
                r = open_and_peek(model, request.clone()).instrument(span.clone()) => Some(r),
                _ = tokio::time::sleep_until(deadline) => None,
                _ = signalled(cut) => return Tried::Ended(self.unfinished(ReplyEnd::Cut)),
                _ = signalled(stop) => return Tried::Ended(ReplyEnd::Stopped),
            };
            let now = replies.clock.now();
            let error = match attempt {
                Some(Ok(stream)) => {
                    replies.breaker_record(model, CallOutcome::Success, now);
                    return Tried::Opened(stream);
                }
                Some(Err(error)) => error,
                None => {
                    telemetry::record_attempt_failed(&span, "timeout");
                    replies.metrics.provider_errors.with_label_values(&[id]).inc();
                    replies.breaker_record(model, CallOutcome::Failure, now);
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
            let opened = replies.breaker_record(model, outcome, now);
            if opened && stop_when_open {
                return Tried::Failed;
            }
            if error.class() == ErrorClass::Permanent && request.conversation_id.is_some() {
                // An upstream conversation can expire (Dify answers 404 "Conversation Not
                // Exists"): forget it and try once more as a new conversation.
                request.conversation_id = None;
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
async fn open_and_peek(model: &Model, request: ChatRequest) -> Result<EventStream, ProviderError> {
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
