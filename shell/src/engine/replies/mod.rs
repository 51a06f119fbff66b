//! The replies service: the configured models and their providers, and one reply at a time run
//! under core's rules — the provider call retried only before the first chunk on core's retry
//! schedule, the three deadlines of core's `ReplyTimer` (STYLE.md §8), exactly one outcome
//! ([`stream`]). It owns the upstream conversation ids (Dify) per session and the gauge of
//! replies streaming now (which shutdown waits on). Storing the finished reply is the caller's
//! (`frames::user_message` for text, `frames::file` for voice).

pub mod stops;
pub mod stream;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use chatbox_core::config::{Config, ProviderConfig, ProviderKind};
use chatbox_core::protocol::ModelInfo;
use chatbox_core::retry::RetryPolicy;
use chatbox_core::stream::StreamDeadlines;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::clock::Clock;
use super::delivery::Delivery;
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
}

/// Models, reply rules and the state replies share.
#[derive(Debug)]
pub struct Replies {
    models: Vec<Model>,
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
            .map(|(p, provider)| Model { info: model_info(p), kind: provider.kind(), provider })
            .collect();
        for model in &models {
            metrics.init_provider(model.kind);
        }
        let model_list = models.iter().map(|m| m.info.clone()).collect();
        Self {
            models,
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
        let stream::Driven { end, text, decided, next_seq, conversation } =
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
        self.metrics.observe_llm_latency(kind, decided - started);
        if end == ReplyEnd::Failed {
            self.metrics.llm_error(kind);
        }
        Streamed { end, text, started, decided, reply_id, next_seq }
    }

    fn conversations(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.conversations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
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
            messages: vec![ChatMessage { role: Role::User, content: "hi".into() }],
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
}
