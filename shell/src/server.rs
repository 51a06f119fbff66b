//! Starting and stopping the server, independent of where its ports come from: the binary
//! (`main.rs`) passes the real store and providers, the simulator passes simulated ones. Both run
//! exactly this code — engine, router, accept loop, sweeper and shutdown driver.

use std::net::SocketAddr;
use std::sync::Arc;

use chatbox_core::budgets::STORE_PREPARE_MIN_DELAY;
use chatbox_core::config::Config;
use chatbox_core::shutdown::Effect;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::engine::clock::Clock;
use crate::engine::crypto::ContentCipher;
use crate::engine::encrypting_store::EncryptingStore;
use crate::engine::hub::Engine;
use crate::engine::lifecycle::{self, ShutdownReport};
use crate::engine::llm::LlmProvider;
use crate::engine::notify::Notifier;
use crate::engine::outbox::{self, Outbox};
use crate::engine::store::SessionStore;
use crate::engine::sweeper;
use crate::http::pages::PageOptions;
use crate::http::{accept, router};

/// A server that is accepting connections.
#[derive(Debug)]
pub struct Running {
    /// The engine, for inspection by tests and the simulator.
    pub engine: Arc<Engine>,
    addr: SocketAddr,
    effects: mpsc::UnboundedReceiver<Effect>,
}

/// The engine's ports, as the caller wires them.
#[derive(Debug)]
pub struct Ports {
    /// Durable sessions (wrapped for encryption here when a key is configured).
    pub store: Arc<dyn SessionStore>,
    /// The durable outbox of writes the store could not take.
    pub outbox: Arc<dyn Outbox>,
    /// One provider per configured model, in `config.llm.providers` order.
    pub providers: Vec<Arc<dyn LlmProvider>>,
    /// Help-request alerts.
    pub notifier: Arc<dyn Notifier>,
}

/// Binds the listener and starts every service (pages in production mode).
pub async fn start(config: Arc<Config>, ports: Ports) -> std::io::Result<Running> {
    start_with_pages(config, ports, PageOptions::default()).await
}

/// [`start`], with the web pages served as `pages` says (`serve --dev` offers a token form).
pub async fn start_with_pages(
    config: Arc<Config>,
    ports: Ports,
    pages: PageOptions,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind((config.server.host.as_str(), config.server.port)).await?;
    let addr = listener.local_addr()?;
    let mut store = ports.store;
    if let Some(cipher) = ContentCipher::new(config.storage.encryption_key.expose().as_bytes()) {
        store = Arc::new(EncryptingStore::new(store, cipher));
    } else if !config.storage.encryption_key.is_empty() {
        tracing::error!(
            "ENCRYPTION_KEY has the wrong length; message content is stored in plain text"
        );
    }
    let (engine, channels) =
        Engine::new(config, store, ports.outbox, ports.providers, ports.notifier, Clock::new());
    let app = router::build(Arc::clone(&engine), pages);
    let supervisor = engine.supervisor.clone();
    supervisor.spawn(
        "accept",
        accept::accept_loop(listener, app, engine.stop_signal(), supervisor.clone()),
    );
    supervisor.spawn("sweeper", sweeper::run(Arc::clone(&engine)));
    engine.metrics.set_outbox_depth(engine.outbox.len());
    supervisor.spawn("outbox", outbox::run(Arc::clone(&engine)));
    supervisor.spawn("store-prepare", prepare_store(Arc::clone(&engine)));
    tracing::info!(%addr, prefix = %engine.config.server.path_prefix, models = engine.models.len(), "chatbox listening");
    Ok(Running { engine, addr, effects: channels.effects })
}

impl Running {
    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Runs the graceful shutdown to its end (never later than `SHUTDOWN_TIMEOUT`).
    pub async fn shutdown(self) -> ShutdownReport {
        lifecycle::run(self.engine, self.effects).await
    }
}

/// Prepares the store in the background (MongoDB: its indexes), retrying with core's backoff
/// until it succeeds or the server stops, so a database that is down at start-up delays nothing
/// but its own indexes (PROTOCOL.md §8.3: failure is logged, never fatal).
async fn prepare_store(engine: Arc<Engine>) {
    let mut stop = engine.stop_signal();
    let mut failures: u32 = 0;
    loop {
        match engine.store.prepare().await {
            Ok(()) => return,
            Err(error) if error.class() == chatbox_core::retry::ErrorClass::Permanent => {
                tracing::error!(%error, "store preparation failed; not retrying (fix and restart)");
                return;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = engine.store_retry.base_delay(failures).max(STORE_PREPARE_MIN_DELAY);
                tracing::warn!(%error, ?delay, "store preparation failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = crate::engine::supervisor::signalled(&mut stop) => return,
                }
            }
        }
    }
}
