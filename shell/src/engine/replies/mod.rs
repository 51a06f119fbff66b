//! The replies service: the configured models and their providers, and one reply at a time run
//! under core's rules — the provider call retried and then handed to the model's fallbacks only
//! before the first chunk ([`fallback`], issue 17), the three deadlines of core's `ReplyTimer`
//! (STYLE.md §8), exactly one outcome ([`stream`]). It owns the upstream conversation ids (Dify)
//! per session, the gauge of replies streaming now (which shutdown waits on), the replies a
//! `stop` frame can end ([`stops`]), each provider's circuit breaker, the token usage per model
//! since start and the per-user daily token budget (`USER_TOKEN_BUDGET`). Storing the finished
//! reply is the caller's (`frames::user_message` for text, `frames::file` for voice).

mod fallback;
pub mod stops;
pub mod stream;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chatbox_core::breaker::{BreakerLimits, CallOutcome, CircuitBreaker};
use chatbox_core::config::{Config, ProviderConfig, ProviderKind};
use chatbox_core::protocol::ModelInfo;
use chatbox_core::retry::RetryPolicy;
use chatbox_core::stream::StreamDeadlines;
use chatbox_core::usage::{day_of, DailyTokenBudget, TokenUsage, UsageSource};
use chatbox_core::{Instant, UnixMillis};
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::clock::Clock;
use super::delivery::Delivery;
use super::fleet_limits::{FleetHealth, SharedTokens};
use super::gauge::Gauge;
use super::llm::LlmProvider;
use super::metrics::Metrics;
pub use stops::Stops;
use stream::ConversationUpdate;
pub use stream::{ReplyEnd, ReplyJob, ReplyMode, Streamed};

/// Budget of a voice-message answer (PROTOCOL.md §7.2): its total deadline.
pub use chatbox_core::budgets::VOICE_BUDGET;

/// One configured model: what clients see and the provider that serves it.
#[derive(Debug, Clone)]
pub struct Model {
    /// Client-visible id and label.
    pub info: ModelInfo,
    /// The provider's type label (`openai`, …, from [`LlmProvider::kind`]) for metrics.
    pub kind: &'static str,
    /// The provider.
    pub provider: Arc<dyn LlmProvider>,
    /// The upstream model name (`model` of the provider's settings; its id when empty), the
    /// traces' `gen_ai.request.model`.
    pub upstream_model: Arc<str>,
    /// Whether the model takes images (`vision`, issue 17 item 5).
    pub vision: bool,
}

/// Models, reply rules and the state replies share.
#[derive(Debug)]
pub struct Replies {
    models: Vec<Model>,
    /// Per model (same order): its fallback chain as indices into `models` (itself first).
    chains: Vec<Vec<usize>>,
    /// Per model (same order): its provider's circuit breaker.
    breakers: Mutex<Vec<CircuitBreaker>>,
    /// Tokens of finished replies per answering model id, since start (admin metrics).
    tokens: Mutex<BTreeMap<String, TokenUsage>>,
    /// `USER_TOKEN_BUDGET`: this instance's counts (all of it without a fleet; the fallback
    /// while the fleet's counts cannot be read).
    budget: Mutex<DailyTokenBudget>,
    /// The fleet's shared counts (`REDIS_URL`), when attached.
    fleet_tokens: OnceLock<Arc<dyn SharedTokens>>,
    /// Whether the fleet's counts answered lately.
    fleet_health: FleetHealth,
    model_list: Vec<ModelInfo>,
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
        let models: Vec<Model> = config
            .llm
            .providers
            .iter()
            .zip(providers)
            .map(|(p, provider)| Model {
                info: model_info(p),
                kind: provider.kind(),
                provider,
                upstream_model: Arc::from(
                    if p.model.is_empty() { &p.id } else { &p.model }.as_str(),
                ),
                vision: p.vision,
            })
            .collect();
        for model in &models {
            metrics.init_provider(model.kind);
            metrics.init_model(&model.info.id);
        }
        let model_list = models.iter().map(|m| m.info.clone()).collect();
        let chains = (0..models.len())
            .map(|i| chatbox_core::fallback::chain(&config.llm.providers, i))
            .map(|chain| chain.into_iter().filter(|&i| i < models.len()).collect())
            .collect();
        let breakers = vec![CircuitBreaker::new(BreakerLimits::PROVIDER); models.len()];
        Self {
            models,
            chains,
            breakers: Mutex::new(breakers),
            tokens: Mutex::default(),
            budget: Mutex::new(DailyTokenBudget::new(config.llm.user_token_budget)),
            fleet_tokens: OnceLock::new(),
            fleet_health: FleetHealth::default(),
            model_list,
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
        match id.filter(|m| !m.is_empty()) {
            Some(id) => self.models.iter().find(|m| m.info.id == id),
            None => self.models.first(),
        }
    }

    /// Whether `id` names a configured model.
    pub fn has_model(&self, id: &str) -> bool {
        self.models.iter().any(|m| m.info.id == id)
    }

    /// The models as sent in `connection_status`.
    pub fn model_list(&self) -> &[ModelInfo] {
        &self.model_list
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

    /// The models a reply for `model` may try, in order: `model`, then its fallbacks.
    fn chain(&self, model: &Model) -> Vec<Model> {
        match self.index_of(&model.info.id) {
            Some(i) => self.chains[i].iter().map(|&j| self.models[j].clone()).collect(),
            None => vec![model.clone()],
        }
    }

    fn index_of(&self, id: &str) -> Option<usize> {
        self.models.iter().position(|m| m.info.id == id)
    }

    /// Whether `model`'s breaker lets an attempt start at `now` (as a call or as the probe).
    fn breaker_allows(&self, model: &Model, now: Instant) -> bool {
        let Some(i) = self.index_of(&model.info.id) else { return true };
        self.breakers().get_mut(i).is_none_or(|b| b.check(now).allowed())
    }

    /// Reports how an attempt on `model` ended to its breaker; whether the breaker is open
    /// (or half-open, awaiting a probe) afterwards.
    fn breaker_record(&self, model: &Model, outcome: CallOutcome, now: Instant) -> bool {
        let Some(i) = self.index_of(&model.info.id) else { return false };
        let mut breakers = self.breakers();
        let Some(breaker) = breakers.get_mut(i) else { return false };
        let was_open = breaker.is_open();
        breaker.record(outcome, now);
        let open = breaker.is_open();
        if open != was_open {
            let state = if was_open { "closed" } else { "open" };
            tracing::warn!(provider_id = %model.info.id, state, "provider circuit breaker changed");
        }
        open
    }

    /// Makes `USER_TOKEN_BUDGET` count across the fleet through `tokens` (once, at start).
    pub fn attach_fleet_tokens(&self, tokens: Arc<dyn SharedTokens>) {
        let _ = self.fleet_tokens.set(tokens);
    }

    /// May `user` start a reply at `now` (`USER_TOKEN_BUDGET`)? `Err` carries the wait until the
    /// budget resets. In a fleet the spending of every instance counts (read from Redis); while
    /// Redis does not answer, this instance's own counts decide.
    pub async fn check_budget(&self, user: &str, now: UnixMillis) -> Result<(), Duration> {
        if !self.budget().enabled() {
            return Ok(());
        }
        let fleet = self.fleet_tokens.get().filter(|_| self.fleet_health.usable(self.clock.now()));
        let spent = match fleet {
            Some(fleet) => match fleet.spent(user, day_of(now)).await {
                Ok(spent) => {
                    self.fleet_health.succeeded();
                    Some(spent)
                }
                Err(error) => {
                    self.fleet_health.failed(self.clock.now(), &error);
                    None
                }
            },
            None => None,
        };
        let refused = match spent {
            Some(spent) => self.budget().judge(spent, now),
            None => self.budget().check(user, now),
        };
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
        {
            let mut tokens = self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = tokens.entry(model_id.to_string()).or_default();
            entry.prompt = entry.prompt.saturating_add(usage.prompt);
            entry.completion = entry.completion.saturating_add(usage.completion);
        }
        self.budget().charge(user, usage.total(), now);
        let fleet = self.fleet_tokens.get().filter(|_| self.budget().enabled());
        if let Some(fleet) = fleet.filter(|_| usage.total() > 0) {
            if let Err(error) = fleet.charge(user, day_of(now), usage.total()).await {
                self.fleet_health.failed(self.clock.now(), &error);
            }
        }
    }

    /// Tokens of finished replies per answering model id since this instance started.
    pub fn tokens_by_model(&self) -> BTreeMap<String, TokenUsage> {
        self.tokens.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Runs one reply to its single outcome, sending its frames through `delivery`; `cut`
    /// turns true when shutdown cuts replies in flight. A streamed reply continues the
    /// session's upstream conversation (Dify), counts as live while it runs, and can be stopped
    /// ([`Replies::stop`]).
    pub async fn run(
        &self,
        delivery: &Delivery,
        mut job: ReplyJob,
        cut: watch::Receiver<bool>,
    ) -> Streamed {
        let streamed = job.mode == ReplyMode::Streamed;
        if streamed {
            job.request.conversation_id = self.conversations().get(&job.session_id).cloned();
        }
        let _live = streamed.then(|| self.live.enter());
        let started = self.clock.now();
        let kind = job.model.kind;
        let reply_id = super::ids::hex32();
        let run = stream::Run {
            replies: self,
            delivery,
            job: &job,
            reply_id: &reply_id,
            next_seq: std::sync::atomic::AtomicU64::new(1),
        };
        // Only streamed replies are stoppable; a voice answer gets a signal that never fires.
        let (_never, unstoppable) = watch::channel(false);
        let guard = (job.mode == ReplyMode::Streamed).then(|| self.stops.register(&job.session_id));
        let stop = guard.as_ref().map_or(unstoppable, |g| g.signal.clone());
        let stream::Driven { end, text, decided, next_seq, conversation, answered_by, usage } =
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

    fn breakers(&self) -> MutexGuard<'_, Vec<CircuitBreaker>> {
        self.breakers.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn budget(&self) -> MutexGuard<'_, DailyTokenBudget> {
        self.budget.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The stored reply's metadata (issue 17): who answered and what it cost.
pub fn usage_meta(
    model_id: &str,
    usage: TokenUsage,
    source: UsageSource,
) -> BTreeMap<String, String> {
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

/// A stable, non-identifying key for a user (Dify's `user`, §10 item 29).
pub fn user_key(user_id: &str) -> String {
    let digest = Sha256::digest(user_id.as_bytes());
    format!("user-{}", hex::encode(&digest[..16]))
}

fn model_info(p: &ProviderConfig) -> ModelInfo {
    let name = if p.kind == ProviderKind::Echo && !p.name.to_lowercase().contains("demo") {
        format!("{} (demo)", p.name)
    } else {
        p.name.clone()
    };
    ModelInfo::new(p.id.clone(), name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delivery::{KickSignal, LocalBus, Outbound, Registration};
    use crate::engine::llm::{ChatMessage, ChatRequest, EventStream, ProviderError, Role};
    use async_trait::async_trait;
    use std::time::Duration;
    use tokio::sync::mpsc;

    /// A provider whose upstream always refuses.
    #[derive(Debug)]
    struct Refusing;

    #[async_trait]
    impl LlmProvider for Refusing {
        fn kind(&self) -> &'static str {
            "refusing"
        }

        async fn open_stream(&self, _: ChatRequest) -> Result<EventStream, ProviderError> {
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
        let (tx, mut rx) = mpsc::channel(8);
        let kick = Arc::new(KickSignal::default());
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx, kick });
        let (_cut_tx, cut) = watch::channel(false);

        let streamed = replies
            .run(&delivery, job(&replies, Some(conn), ReplyMode::Streamed), cut.clone())
            .await;
        assert_eq!(streamed.end, ReplyEnd::Failed);
        let Ok(Outbound::Frame(text)) = rx.try_recv() else { panic!("an error frame") };
        assert!(text.contains("LLM_UNAVAILABLE"), "{text}");
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
        async fn open_stream(&self, request: ChatRequest) -> Result<EventStream, ProviderError> {
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
        let (tx, _rx) = mpsc::channel(64);
        let kick = Arc::new(KickSignal::default());
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx, kick });
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
