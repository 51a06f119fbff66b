//! The engine's shared state (`Engine`): configuration, ports, core machines behind their
//! thread-safe wrappers, the connection registry, and the channels that tell tasks to stop. Every
//! service (connections, workers, sweeper, shutdown driver) holds an `Arc<Engine>`.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use chatbox_core::config::{Config, ProviderConfig, ProviderKind};
use chatbox_core::origin::OriginPolicy;
use chatbox_core::protocol::{Frame, InboundLimits, ModelInfo};
use chatbox_core::rate::RateLimit;
use chatbox_core::retry::{Jitter, RetryPolicy};
use chatbox_core::session::SessionLimits;
use chatbox_core::shared::{OriginList, SessionHandle, SharedLimiter, SharedSlots, ShutdownLatch};
use chatbox_core::shutdown::Effect;
use chatbox_core::stream::StreamDeadlines;
use tokio::sync::{mpsc, watch};

use super::clock::Clock;
use super::connections::{ConnId, Registry};
use super::gauge::Gauge;
use super::llm::LlmProvider;
use super::metrics::Metrics;
use super::notify::Notifier;
use super::outbox::Outbox;
use super::probe::Probe;
use super::store::SessionStore;
use super::supervisor::Supervisor;
use super::workers::Workers;

/// One configured model: what clients see and the provider that serves it.
#[derive(Debug, Clone)]
pub struct Model {
    /// Client-visible id and label.
    pub info: ModelInfo,
    /// Provider type label (`openai`, …) for metrics.
    pub kind: &'static str,
    /// The provider.
    pub provider: Arc<dyn LlmProvider>,
}

/// The public-route limiters (PROTOCOL.md §5 with §10 item 28): one bucket per client IP **per
/// route family**, each with `config.rate.public`, so probes, share links and metrics scrapes
/// from one address never starve each other.
#[derive(Debug)]
pub struct PublicLimiters {
    /// `{P}/healthz` and `{P}/readyz` (probes from `health_probe_networks` are exempt).
    pub probes: SharedLimiter<IpAddr>,
    /// `{P}/shared/:token`.
    pub shared: SharedLimiter<IpAddr>,
    /// `{P}/metrics/prometheus`.
    pub metrics: SharedLimiter<IpAddr>,
}

impl PublicLimiters {
    /// Three limiters with `limit`, each tracking at most `max_keys` addresses.
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        PublicLimiters {
            probes: SharedLimiter::new(limit, max_keys),
            shared: SharedLimiter::new(limit, max_keys),
            metrics: SharedLimiter::new(limit, max_keys),
        }
    }

    /// Every limiter (for the sweeper's cleanup and for metrics).
    pub fn all(&self) -> [&SharedLimiter<IpAddr>; 3] {
        [&self.probes, &self.shared, &self.metrics]
    }
}

/// Everything the engine's services share.
#[derive(Debug)]
pub struct Engine {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// Models in configuration order (the first is the default, §10 item 14).
    pub models: Vec<Model>,
    /// `models` as sent in `connection_status`.
    pub model_list: Vec<ModelInfo>,
    /// Durable sessions.
    pub store: Arc<dyn SessionStore>,
    /// Writes kept while the store is down (drained by `outbox::run`).
    pub outbox: Arc<dyn Outbox>,
    /// Wakes the outbox drain task when an entry is queued.
    pub outbox_wake: tokio::sync::Notify,
    /// The runtime's clock.
    pub clock: Clock,
    /// Tracked tasks.
    pub supervisor: Supervisor,
    /// Live sessions.
    pub sessions: SessionHandle,
    /// Open connections.
    pub registry: Registry,
    /// Origin allow-list, replaceable at runtime.
    pub origins: OriginList,
    /// `user_message` limiter per user id.
    pub message_limiter: SharedLimiter<String>,
    /// `{P}/admin/*` limiter per admin user id (`config.rate.admin`, PROTOCOL.md §5).
    pub admin_limiter: SharedLimiter<String>,
    /// Public-route limiters per client IP, one per route family (§5, §10 item 28).
    pub public_limiters: PublicLimiters,
    /// Connection slots per user id.
    pub slots: Arc<SharedSlots<String>>,
    /// The drain plan.
    pub shutdown: ShutdownLatch,
    /// Per-session ordered processing of messages.
    pub workers: Workers,
    /// Dify conversation ids per session (dropped with the session).
    pub conversations: Mutex<HashMap<String, String>>,
    /// Inbound frame limits.
    pub inbound_limits: InboundLimits,
    /// Reply deadlines.
    pub deadlines: StreamDeadlines,
    /// Retry schedule for store operations.
    pub store_retry: RetryPolicy,
    /// Retry schedule for provider calls before the first chunk (§7.2: 1 s, 2 s, cap 30 s).
    pub provider_retry: RetryPolicy,
    /// Whether the store answered its last check.
    pub store_ready: AtomicBool,
    /// Replies streaming now.
    pub replies: Gauge,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Help-request alerts.
    pub notifier: Arc<dyn Notifier>,
    /// Help alerts per session (§6.7: 5 per 5 minutes).
    pub help_limiter: SharedLimiter<String>,
    /// Optional observer (simulator, tests).
    pub probe: std::sync::OnceLock<Arc<dyn Probe>>,
    stop_tx: watch::Sender<bool>,
    cut_tx: watch::Sender<bool>,
    force_tx: watch::Sender<bool>,
    effects_tx: mpsc::UnboundedSender<Effect>,
}

/// The receiving ends the server's tasks need, handed out once by [`Engine::new`].
#[derive(Debug)]
pub struct EngineChannels {
    /// Shutdown effects for the shutdown driver.
    pub effects: mpsc::UnboundedReceiver<Effect>,
}

impl Engine {
    /// Builds the engine from a validated configuration, its store and one provider per
    /// configured model (same order as `config.llm.providers`).
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn SessionStore>,
        outbox: Arc<dyn Outbox>,
        providers: Vec<Arc<dyn LlmProvider>>,
        notifier: Arc<dyn Notifier>,
        clock: Clock,
    ) -> (Arc<Engine>, EngineChannels) {
        let models: Vec<Model> = config
            .llm
            .providers
            .iter()
            .zip(providers)
            .map(|(p, provider)| Model { info: model_info(p), kind: p.kind.as_str(), provider })
            .collect();
        let model_list = models.iter().map(|m| m.info.clone()).collect();
        let rate = &config.rate;
        let (stop_tx, _) = watch::channel(false);
        let (cut_tx, _) = watch::channel(false);
        let (force_tx, _) = watch::channel(false);
        let (effects_tx, effects) = mpsc::unbounded_channel();
        let limits = SessionLimits {
            reconnect_window: config.sessions.reconnect_timeout,
            ended_ttl: config.sessions.ttl,
            idle_timeout: config.sessions.idle_timeout,
            ..SessionLimits::default()
        };
        let retry = &config.storage.retry;
        let metrics = Metrics::new();
        for model in &models {
            metrics.init_provider(model.kind);
        }
        let engine = Engine {
            metrics,
            notifier,
            help_limiter: SharedLimiter::new(
                RateLimit::new(rate.help_alerts.limit, rate.help_alerts.window),
                rate.max_keys,
            ),
            models,
            model_list,
            store,
            outbox,
            outbox_wake: tokio::sync::Notify::new(),
            clock,
            supervisor: Supervisor::new(),
            sessions: SessionHandle::new(limits),
            registry: Registry::default(),
            origins: OriginList::new(OriginPolicy::new(&config.websocket.allowed_origins)),
            message_limiter: SharedLimiter::new(
                RateLimit::new(rate.messages.limit, rate.messages.window),
                rate.max_keys,
            ),
            admin_limiter: SharedLimiter::new(
                RateLimit::new(rate.admin.limit, rate.admin.window),
                rate.max_keys,
            ),
            public_limiters: PublicLimiters::new(
                RateLimit::new(rate.public.limit, rate.public.window),
                rate.max_keys,
            ),
            slots: Arc::new(SharedSlots::new(config.websocket.max_connections_per_user)),
            shutdown: ShutdownLatch::new(),
            workers: Workers::default(),
            conversations: Mutex::new(HashMap::new()),
            inbound_limits: InboundLimits::default(),
            deadlines: StreamDeadlines {
                first_chunk: config.llm.first_chunk_timeout,
                idle: config.llm.idle_timeout,
                total: config.llm.stream_timeout,
            },
            store_retry: RetryPolicy {
                max_attempts: retry.attempts,
                initial_delay: retry.delay,
                multiplier: 2.0,
                max_delay: retry.max_delay,
                jitter: Jitter::None,
            },
            provider_retry: RetryPolicy {
                max_attempts: 3,
                initial_delay: std::time::Duration::from_secs(1),
                multiplier: 2.0,
                max_delay: std::time::Duration::from_secs(30),
                jitter: Jitter::None,
            },
            store_ready: AtomicBool::new(true),
            replies: Gauge::default(),
            probe: std::sync::OnceLock::new(),
            stop_tx,
            cut_tx,
            force_tx,
            effects_tx,
            config,
        };
        (Arc::new(engine), EngineChannels { effects })
    }

    /// The model for `id`, or the default (first) model when `id` is `None` or empty.
    pub fn model(&self, id: Option<&str>) -> Option<&Model> {
        match id.filter(|m| !m.is_empty()) {
            Some(id) => self.models.iter().find(|m| m.info.id == id),
            None => self.models.first(),
        }
    }

    /// Serialises a frame once for every connection that will receive it.
    pub fn encode(frame: &Frame) -> Arc<str> {
        Arc::from(frame.to_json())
    }

    /// Sends a frame to one connection.
    pub fn send_conn(&self, conn: ConnId, frame: &Frame) {
        self.count_error(frame);
        self.registry.send_to(conn, &Self::encode(frame));
    }

    /// Sends a frame to every connection of a session, and to `also` if it is not bound there.
    pub fn send_session(&self, session: &str, frame: &Frame, also: Option<ConnId>) {
        self.count_error(frame);
        self.registry.send_to_session(session, &Self::encode(frame), also);
    }

    fn count_error(&self, frame: &Frame) {
        if frame.frame_type == chatbox_core::protocol::FrameType::Error {
            self.metrics.message_errors.inc();
        }
    }

    /// Frame timestamps: wall-clock now.
    pub fn frame_now(&self) -> chrono::DateTime<chrono::Utc> {
        self.clock.wall_datetime()
    }

    /// A receiver that turns true when the server stops accepting.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// A receiver that turns true when replies in flight must be cut (drain deadline).
    pub fn cut_signal(&self) -> watch::Receiver<bool> {
        self.cut_tx.subscribe()
    }

    /// A receiver that turns true when remaining connections must be dropped.
    pub fn force_signal(&self) -> watch::Receiver<bool> {
        self.force_tx.subscribe()
    }

    /// Whether the server has begun shutting down.
    pub fn is_stopping(&self) -> bool {
        self.shutdown.is_triggered()
    }

    /// Hands shutdown effects to the shutdown driver.
    pub fn forward_effects(&self, effects: Vec<Effect>) {
        for effect in effects {
            let _ = self.effects_tx.send(effect);
        }
    }

    pub(crate) fn signal_stop(&self) {
        self.stop_tx.send_replace(true);
    }

    pub(crate) fn signal_cut(&self) {
        self.cut_tx.send_replace(true);
    }

    pub(crate) fn signal_force(&self) {
        self.force_tx.send_replace(true);
    }

    /// Whether the store answered its last check.
    pub fn store_is_ready(&self) -> bool {
        self.store_ready.load(Ordering::Relaxed)
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
