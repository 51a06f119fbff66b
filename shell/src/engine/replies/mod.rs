//! The replies service: the configured models and their providers, and one reply at a time run
//! under core's rules — the provider call retried only before the first chunk on core's retry
//! schedule, the three deadlines of core's `ReplyTimer` (STYLE.md §8), exactly one outcome
//! ([`stream`]). It owns the per-session [`workers`] that keep a session's frames in order, the
//! upstream conversation ids (Dify) per session, and the gauge of replies streaming now (which
//! shutdown waits on). Storing the finished reply is the caller's (`frames::answer`).

pub mod stream;
pub mod workers;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatbox_core::config::{Config, ProviderConfig, ProviderKind};
use chatbox_core::protocol::ModelInfo;
use chatbox_core::retry::{Jitter, RetryPolicy};
use chatbox_core::stream::StreamDeadlines;
use tokio::sync::watch;

use super::clock::Clock;
use super::delivery::Delivery;
use super::gauge::Gauge;
use super::llm::LlmProvider;
use super::metrics::Metrics;
use super::supervisor::Supervisor;
pub use stream::{ReplyEnd, ReplyJob, ReplyMode, Streamed};
pub use workers::Job;
use workers::Workers;

/// Budget of a voice-message answer (PROTOCOL.md §7.2): its total deadline.
pub const VOICE_BUDGET: Duration = Duration::from_secs(60);

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
    workers: Workers,
    clock: Clock,
    metrics: Arc<Metrics>,
}

impl Replies {
    /// One model per configured provider (same order as `config.llm.providers`).
    pub fn new(
        config: &Config,
        providers: Vec<Arc<dyn LlmProvider>>,
        clock: Clock,
        supervisor: Supervisor,
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
            retry: RetryPolicy {
                max_attempts: 3,
                initial_delay: Duration::from_secs(1),
                multiplier: 2.0,
                max_delay: Duration::from_secs(30),
                jitter: Jitter::None,
            },
            conversations: Mutex::default(),
            live: Gauge::default(),
            workers: Workers::new(supervisor),
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

    /// Queues `job` behind the earlier jobs of `key` (one session's ordered frames).
    pub fn submit(&self, key: &str, job: Job) {
        self.workers.submit(key, job);
    }

    /// The upstream conversation id of `session` (Dify), if one was given.
    pub fn conversation(&self, session: &str) -> Option<String> {
        self.conversations().get(session).cloned()
    }

    /// Forgets the upstream conversations of sessions dropped from memory.
    pub fn forget<'a>(&self, sessions: impl Iterator<Item = &'a str>) {
        let mut conversations = self.conversations();
        for id in sessions {
            conversations.remove(id);
        }
    }

    /// Runs one reply to its single outcome, sending its frames through `delivery`; `cut`
    /// turns true when shutdown cuts replies in flight.
    pub async fn run(
        &self,
        delivery: &Delivery,
        job: ReplyJob,
        cut: watch::Receiver<bool>,
    ) -> Streamed {
        let started = self.clock.now();
        let kind = job.model.kind;
        let run = stream::Run { replies: self, delivery, job: &job };
        let (end, text, decided) = run.drive(started, cut).await;
        self.metrics.observe_llm_latency(kind, decided - started);
        if end == ReplyEnd::Failed {
            self.metrics.llm_error(kind);
        }
        Streamed { end, text, started, decided }
    }

    fn conversations(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.conversations.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn model_info(p: &ProviderConfig) -> ModelInfo {
    let name = if p.kind == ProviderKind::Echo && !p.name.to_lowercase().contains("demo") {
        format!("{} (demo)", p.name)
    } else {
        p.name.clone()
    };
    ModelInfo::new(p.id.clone(), name)
}
