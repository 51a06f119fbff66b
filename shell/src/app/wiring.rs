//! Builds the real ports from configuration: one provider per configured model (sharing one HTTP
//! connection pool) and the configured store. Used by the binary; the simulator wires its own.

use std::sync::Arc;

use chatbox_core::budgets::PROVIDER_CONNECT_TIMEOUT;
use chatbox_core::config::{Config, ProviderKind, StoreConfig};

use crate::adapters::llm::anthropic::AnthropicProvider;
use crate::adapters::llm::dify::DifyProvider;
use crate::adapters::llm::echo::EchoProvider;
use crate::adapters::llm::http_client::{build_client, ClientBuildError, ProviderSettings};
use crate::adapters::llm::openai::OpenAiProvider;
use crate::adapters::outbox::FileOutbox;
use crate::adapters::store::EmbeddedStore;
#[cfg(feature = "mongodb")]
use crate::adapters::store::{BreakerStore, MongoStore};
use crate::engine::crypto::ContentCipher;
use crate::engine::llm::LlmProvider;
use crate::engine::persistence::{EntrySeal, Outbox, OutboxError};
use crate::engine::store::{SessionStore, StoreError};
#[cfg(feature = "mongodb")]
use chatbox_core::breaker::BreakerLimits;

/// Why the server could not be wired.
#[derive(Debug, thiserror::Error)]
pub enum WiringError {
    /// The HTTP client for providers could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// The store could not be opened.
    #[error("cannot open the session store: {0}")]
    Store(#[from] StoreError),
    /// `MONGO_URI` is set but this binary was built without the `mongodb` feature.
    #[cfg(not(feature = "mongodb"))]
    #[error(
        "MONGO_URI is set, but this chatbox was built without MongoDB support (feature `mongodb`)"
    )]
    NoMongo,
    /// The durable outbox could not be opened.
    #[error("cannot open the outbox in the data directory: {0}")]
    Outbox(#[from] OutboxError),
}

/// One provider per configured model, in configuration order.
pub fn providers(config: &Config) -> Result<Vec<Arc<dyn LlmProvider>>, WiringError> {
    let client = build_client(PROVIDER_CONNECT_TIMEOUT)?;
    let header_timeout = config.llm.first_chunk_timeout;
    Ok(config
        .llm
        .providers
        .iter()
        .map(|p| {
            let settings = ProviderSettings::from_config(p).with_header_timeout(header_timeout);
            let provider: Arc<dyn LlmProvider> = match p.kind {
                ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(settings, client.clone())),
                ProviderKind::Anthropic => {
                    Arc::new(AnthropicProvider::new(settings, client.clone()))
                }
                ProviderKind::Dify => Arc::new(DifyProvider::new(settings, client.clone())),
                ProviderKind::Echo => Arc::new(EchoProvider),
            };
            provider
        })
        .collect())
}

/// The configured store: MongoDB when `MONGO_URI` is set (not contacted yet: a database that is
/// down at start-up only makes the server not ready) behind a circuit breaker, so calls stop
/// waiting on it once it is known to be down, each call by id bounded by `STORE_CALL_TIMEOUT`;
/// else the embedded store.
pub async fn store(config: &Config) -> Result<Arc<dyn SessionStore>, WiringError> {
    match &config.storage.backend {
        StoreConfig::Embedded => Ok(Arc::new(EmbeddedStore::open_with_linger(
            &config.storage.data_dir,
            config.storage.commit_linger,
        )?)),
        #[cfg(feature = "mongodb")]
        StoreConfig::Mongo(mongo) => {
            let store: Arc<dyn SessionStore> = Arc::new(MongoStore::connect(mongo).await?);
            let call_timeout = config.storage.call_timeout;
            Ok(Arc::new(BreakerStore::new(store, BreakerLimits::default(), call_timeout)))
        }
        #[cfg(not(feature = "mongodb"))]
        StoreConfig::Mongo(_) => Err(WiringError::NoMongo),
    }
}

/// The durable outbox: `outbox.redb` in the data directory, sealed with `ENCRYPTION_KEY` when set.
pub fn outbox(config: &Config) -> Result<Arc<dyn Outbox>, WiringError> {
    let seal = ContentCipher::new(config.storage.encryption_key.expose().as_bytes())
        .map(|cipher| Arc::new(cipher) as Arc<dyn EntrySeal>);
    let outbox =
        FileOutbox::open(&config.storage.data_dir, config.storage.outbox_max_entries, seal)?;
    Ok(Arc::new(outbox))
}
