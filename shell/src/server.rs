//! Starting and stopping the server, independent of where its ports come from: the binary
//! (`main.rs`) passes the real store and providers, the simulator passes simulated ones. Both run
//! exactly this code — engine, router, accept loop, sweeper and shutdown driver.

use std::net::SocketAddr;
use std::sync::Arc;

use chatbox_core::config::Config;
use chatbox_core::shutdown::Effect;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

use crate::engine::clock::Clock;
use crate::engine::crypto::ContentCipher;
use crate::engine::encrypting_store::EncryptingStore;
use crate::engine::hub::{BusWiring, Engine};
use crate::engine::lifecycle::{self, ShutdownReport};
use crate::engine::sessions::sweeper;
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

pub use crate::engine::hub::Ports;

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
    #[cfg(not(madsim))]
    let fleet = fleet_bus(&config)?;
    #[cfg(madsim)]
    let fleet: Option<BusWiring> = None;
    start_with_delivery(config, ports, pages, fleet).await
}

/// [`start_with_pages`] with the fleet's delivery parts given by the caller (`None`: one
/// instance): the simulator wires its simulated broker here, where the binary wires Redis.
pub async fn start_with_delivery(
    config: Arc<Config>,
    ports: Ports,
    pages: PageOptions,
    fleet: Option<BusWiring>,
) -> std::io::Result<Running> {
    let listener = TcpListener::bind((config.server.host.as_str(), config.server.port)).await?;
    let addr = listener.local_addr()?;
    let mut store = Arc::clone(&ports.store);
    if let Some(cipher) = ContentCipher::new(config.storage.encryption_key.expose().as_bytes()) {
        store = Arc::new(EncryptingStore::new(store, cipher));
    } else if !config.storage.encryption_key.is_empty() {
        tracing::error!(
            "ENCRYPTION_KEY has the wrong length; message content is stored in plain text"
        );
    }
    let wiring = fleet.unwrap_or_else(BusWiring::local);
    let ports = Ports { store, ..ports };
    let (engine, channels) = Engine::new(config, ports, Clock::new(), wiring);
    #[cfg(not(madsim))]
    fleet_limits(&engine)?;
    // Upload storage is real IO; the simulator runs without the upload routes.
    #[cfg(not(madsim))]
    let files = Some(
        crate::adapters::files::from_config(
            &engine.config.uploads,
            &engine.config.storage.data_dir,
        )
        .map_err(|e| std::io::Error::other(e.to_string()))?,
    );
    #[cfg(madsim)]
    let files = None;
    let files = files.map(|files| encrypted_files(&engine.config, files));
    if let Some(files) = &files {
        let _ = engine.files.set(Arc::clone(files));
    }
    let app = router::build(Arc::clone(&engine), pages, files);
    let supervisor = engine.supervisor.clone();
    supervisor.spawn(
        "accept",
        accept::accept_loop(listener, app, engine.stop_signal(), supervisor.clone()),
    );
    supervisor.spawn("sweeper", sweeper::run(Arc::clone(&engine)));
    supervisor.spawn("signal-relay", crate::engine::relay::run(Arc::clone(&engine)));
    let drainer = Arc::clone(&engine);
    supervisor
        .spawn("outbox", async move { drainer.persistence.drain(drainer.force_signal()).await });
    let preparer = Arc::clone(&engine);
    supervisor.spawn("store-prepare", async move {
        preparer.persistence.prepare(preparer.stop_signal()).await;
    });
    tracing::info!(%addr, prefix = %engine.config.server.path_prefix, models = engine.replies.model_list().len(), "chatbox listening");
    Ok(Running { engine, addr, effects: channels.effects })
}

/// Uploaded files sealed with the content cipher when `ENCRYPTION_KEY` is set (issue 17 item 5).
fn encrypted_files(
    config: &Config,
    files: Arc<dyn crate::engine::files::FileStore>,
) -> Arc<dyn crate::engine::files::FileStore> {
    use crate::engine::encrypting_files::EncryptingFileStore;
    match ContentCipher::new(config.storage.encryption_key.expose().as_bytes()) {
        Some(cipher) => Arc::new(EncryptingFileStore::new(files, cipher)),
        None => files,
    }
}

/// The fleet bus and replay buffer when `REDIS_URL` is set (issue 14): the link task is started
/// here and connects in the background, so Redis being down at start-up only makes the bus
/// degraded.
#[cfg(not(madsim))]
fn fleet_bus(config: &Config) -> std::io::Result<Option<BusWiring>> {
    use crate::adapters::bus::replay::{RedisReplay, RedisStore};
    use crate::engine::delivery::{replay_limits, FleetBus, LocalReplay};
    if !config.storage.has_redis() {
        return Ok(None);
    }
    let client =
        crate::adapters::bus::client(config.storage.redis_url.expose().trim()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("REDIS_URL: {e}"))
        })?;
    let metrics = Arc::new(crate::engine::metrics::Metrics::new());
    let instance = format!("{:016x}", rand::random::<u64>());
    let (bus, queues) = FleetBus::new(instance, Arc::clone(&metrics));
    let replay = RedisReplay::new(
        LocalReplay::new(replay_limits(config)),
        Arc::clone(&bus),
        RedisStore::new(client.clone()),
        config.llm.idle_timeout,
        config.llm.resume_window,
    );
    crate::adapters::bus::start(
        client,
        Arc::clone(&bus),
        queues,
        config.storage.redis_url_for_logs(),
    );
    Ok(Some(BusWiring { bus, replay: Some(Arc::new(replay)), metrics }))
}

/// The fleet-wide user, admin and connection limits and the users' turns when `REDIS_URL` is
/// set (issue 14), and the task renewing this instance's connection leases.
#[cfg(not(madsim))]
fn fleet_limits(engine: &Arc<Engine>) -> std::io::Result<()> {
    let config = &engine.config;
    if !config.storage.has_redis() {
        return Ok(());
    }
    let client =
        crate::adapters::bus::client(config.storage.redis_url.expose().trim()).map_err(|e| {
            std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("REDIS_URL: {e}"))
        })?;
    let redis = Arc::new(crate::adapters::limits::RedisLimits::new(client));
    engine.limits.attach_fleet(Arc::clone(&redis) as _);
    // One user's messages answered one at a time across the fleet (§10 item 27).
    engine.turns.attach(Arc::clone(&redis) as _, format!("{:016x}", rand::random::<u64>()));
    // USER_TOKEN_BUDGET counts every instance's replies (issue 17).
    engine.replies.attach_fleet_tokens(redis);
    let leases = Arc::clone(engine);
    engine.supervisor.spawn("fleet-leases", async move {
        leases.limits.run_leases().await;
    });
    Ok(())
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
