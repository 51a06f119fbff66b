//! The engine: a small struct of services, each owning its state in its own module (STYLE.md
//! §11) — [`Sessions`], [`Delivery`], [`Persistence`], [`Limits`], [`Replies`], [`Alerts`] —
//! wired here with the shared utilities they all use (configuration, clock, task supervisor,
//! metrics) and the shutdown latch with the signals that tell tasks to stop. No service reaches
//! into another's fields: a service that needs another is handed it as an argument, and the
//! frame handlers (`frames`, entered directly by the WebSocket loop) and session operations
//! (`admin`) drive them together.

use std::sync::{Arc, OnceLock};

use chatbox_core::config::Config;
use chatbox_core::origin::OriginPolicy;
use chatbox_core::protocol::InboundLimits;
use chatbox_core::retry::{Jitter, RetryPolicy};
use chatbox_core::session::SessionLimits;
use chatbox_core::shared::{OriginList, ShutdownLatch};
use chatbox_core::shutdown::Effect;
use tokio::sync::{mpsc, watch};

use super::alerts::Alerts;
use super::clock::Clock;
use super::delivery::{replay_limits, Bus, Delivery, LocalBus, LocalReplay, ReplayBuffer};
use super::dns::Resolver;
use super::frames::Ordered;
use super::limits::Limits;
use super::llm::LlmProvider;
use super::metrics::Metrics;
use super::notify::Notifier;
use super::persistence::{Outbox, Persistence};
use super::probe::Probe;
use super::replies::Replies;
use super::sessions::Sessions;
use super::store::SessionStore;
use super::supervisor::Supervisor;
use super::turns::Turns;

/// The engine's services and what they share.
#[derive(Debug)]
pub struct Engine {
    /// The validated configuration.
    pub config: Arc<Config>,
    /// The runtime's clock.
    pub clock: Clock,
    /// Tracked tasks.
    pub supervisor: Supervisor,
    /// Prometheus metrics (every service counts into them).
    pub metrics: Arc<Metrics>,
    /// Optional observer (simulator, tests).
    pub probe: OnceLock<Arc<dyn Probe>>,
    /// Uploaded files, for images sent to vision-capable models (set by the server when upload
    /// storage exists; the simulator has none).
    pub files: OnceLock<Arc<dyn crate::engine::files::FileStore>>,
    /// Origin allow-list, replaceable at runtime.
    pub origins: OriginList,
    /// Inbound frame limits.
    pub inbound_limits: InboundLimits,
    /// Live sessions: the table, loading, resolution.
    pub sessions: Sessions,
    /// Connections, bindings and fan-out (the bus).
    pub delivery: Delivery,
    /// The store, its retries, the outbox, history reads.
    pub persistence: Persistence,
    /// Rate limiters and connection slots.
    pub limits: Limits,
    /// Models and replies under core's deadlines; the per-session workers.
    pub replies: Replies,
    /// Help-request alerts.
    pub alerts: Alerts,
    /// The per-session queues that keep `user_message`/`model_select` in order.
    pub ordered: Ordered,
    /// In a fleet, the user's turn across instances that each ordered message is handled in.
    pub turns: Turns,
    /// Host name lookups for the `file_url` rule.
    pub resolver: Arc<dyn Resolver>,
    /// The drain plan.
    pub shutdown: ShutdownLatch,
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

/// The engine's ports, as the caller wires them (the binary: real IO; the simulator and the
/// unit tests: doubles).
#[derive(Debug)]
pub struct Ports {
    /// Durable sessions (the server wraps it for encryption when a key is configured).
    pub store: Arc<dyn SessionStore>,
    /// The durable outbox of writes the store could not take.
    pub outbox: Arc<dyn Outbox>,
    /// One provider per configured model, in `config.llm.providers` order.
    pub providers: Vec<Arc<dyn LlmProvider>>,
    /// Help-request alerts.
    pub notifier: Arc<dyn Notifier>,
    /// Host name lookups for the `file_url` rule.
    pub resolver: Arc<dyn Resolver>,
}

/// The delivery [`Bus`] and the metrics it counts into (a fleet bus counts its own traffic,
/// so it is built with the engine's metrics).
#[derive(Debug)]
pub struct BusWiring {
    /// The fan-out port.
    pub bus: Arc<dyn Bus>,
    /// The fleet's replay buffer (issue 14); `None`: the in-process one.
    pub replay: Option<Arc<dyn ReplayBuffer>>,
    /// The engine's metrics.
    pub metrics: Arc<Metrics>,
}

impl BusWiring {
    /// In-process delivery ([`LocalBus`]): one instance, its link always up.
    pub fn local() -> Self {
        let metrics = Arc::new(Metrics::new());
        metrics.bus_up.set(1);
        Self { bus: Arc::new(LocalBus::default()), replay: None, metrics }
    }
}

impl Engine {
    /// Builds the engine from a validated configuration, its ports and its delivery bus.
    pub fn new(
        config: Arc<Config>,
        ports: Ports,
        clock: Clock,
        wiring: BusWiring,
    ) -> (Arc<Engine>, EngineChannels) {
        let Ports { store, outbox, providers, notifier, resolver } = ports;
        let BusWiring { bus, replay, metrics } = wiring;
        let (stop_tx, _) = watch::channel(false);
        let (cut_tx, _) = watch::channel(false);
        let (force_tx, _) = watch::channel(false);
        let (effects_tx, effects) = mpsc::unbounded_channel();
        let supervisor = Supervisor::new();
        let session_limits = SessionLimits {
            reconnect_window: config.sessions.reconnect_timeout,
            ended_ttl: config.sessions.ttl,
            idle_timeout: config.sessions.idle_timeout,
            ..SessionLimits::default()
        };
        let retry = &config.storage.retry;
        let store_retry = RetryPolicy {
            max_attempts: retry.attempts,
            initial_delay: retry.delay,
            multiplier: 2.0,
            max_delay: retry.max_delay,
            jitter: Jitter::None,
        };
        let engine = Engine {
            sessions: Sessions::new(session_limits, clock, Arc::clone(&metrics)),
            delivery: Delivery::with_replay(
                bus,
                replay.unwrap_or_else(|| Arc::new(LocalReplay::new(replay_limits(&config)))),
                Arc::clone(&metrics),
            ),
            persistence: Persistence::new(
                store,
                outbox,
                store_retry,
                config.storage.history_read_timeout,
                clock,
                Arc::clone(&metrics),
            )
            .with_history_cache(config.llm.history_max_messages, config.llm.history_max_bytes),
            limits: Limits::new(&config, Arc::clone(&metrics)),
            replies: Replies::new(&config, providers, clock, Arc::clone(&metrics)),
            ordered: Ordered::new(supervisor.clone()),
            turns: Turns::new(config.llm.stream_timeout, clock, Arc::clone(&metrics)),
            alerts: Alerts::new(&config, notifier, clock, supervisor.clone(), Arc::clone(&metrics)),
            resolver,
            origins: OriginList::new(OriginPolicy::new(&config.websocket.allowed_origins)),
            inbound_limits: InboundLimits::default(),
            shutdown: ShutdownLatch::new(),
            probe: OnceLock::new(),
            files: OnceLock::new(),
            metrics,
            supervisor,
            clock,
            stop_tx,
            cut_tx,
            force_tx,
            effects_tx,
            config,
        };
        (Arc::new(engine), EngineChannels { effects })
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

    /// Whether the shutdown deadline passed (connections are being dropped).
    pub(crate) fn is_forced(&self) -> bool {
        *self.force_tx.borrow()
    }

    /// Drops the per-session caches of `sessions` — their recent messages (the history
    /// fallback) and upstream conversations: when the sweeper drops them from memory, and at
    /// once when they end on request (final: nothing will resume them, so holding the caches
    /// until `SESSION_TTL` would only grow memory with the rate of ends, issue 16's soak).
    pub fn forget_session_caches<'a>(&self, sessions: impl Iterator<Item = &'a str> + Clone) {
        self.replies.forget(sessions.clone());
        self.persistence.forget(sessions);
    }
}
