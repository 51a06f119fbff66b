//! The fleet-wide limits of the fleet world (issue 14, Behaviour 3): [`SimLimits`] implements
//! the engine's `SharedRates`, `ConnectionLeases` and `SharedTurns` ports over the simulated
//! broker, as
//! `RedisLimits` (`shell/src/adapters/limits.rs`) does over Redis — one atomic broker command per
//! call, each bounded by `FLEET_LIMIT_TIMEOUT`, each on a connection of the broker's current
//! epoch. So a partition or a delay past the deadline makes the engine fall back to its local
//! limiters exactly as a Redis outage does, and a restart empties the logs as losing Redis does.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatbox::engine::fleet_limits::{ConnectionLeases, Scope, SharedRates, Unavailable};
use chatbox::engine::turns::{SharedTurns, Take};
use chatbox_core::budgets::FLEET_LIMIT_TIMEOUT;
use chatbox_core::rate::{Decision, RateLimit};
use chatbox_core::Instant;

use crate::broker::{Lost, SimBroker};

/// The broker's key of a rate log (the adapter's `chatbox:limit:{scope}:{key}`).
pub fn log_key(scope: Scope, key: &str) -> String {
    format!("{}:{key}", scope.as_str())
}

/// The fleet-wide limits of instance `index` over the simulated broker.
#[derive(Debug)]
pub struct SimLimits {
    broker: Arc<SimBroker>,
    index: usize,
}

impl SimLimits {
    /// The limits of instance `index`, kept in `broker`.
    pub fn new(broker: Arc<SimBroker>, index: usize) -> Self {
        SimLimits { broker, index }
    }

    /// Runs one broker call within the adapter's deadline.
    async fn bounded<T>(
        &self,
        call: impl std::future::Future<Output = Result<T, Lost>>,
    ) -> Result<T, Unavailable> {
        match tokio::time::timeout(FLEET_LIMIT_TIMEOUT, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(Lost)) => Err(Unavailable("simulated broker lost".into())),
            Err(_) => Err(Unavailable("simulated broker did not answer in time".into())),
        }
    }
}

#[async_trait]
impl SharedRates for SimLimits {
    async fn check(
        &self,
        scope: Scope,
        key: &str,
        limit: RateLimit,
        _now: Instant,
    ) -> Result<Decision, Unavailable> {
        let conn = self.broker.conn(self.index);
        self.bounded(self.broker.rate_check(conn, &log_key(scope, key), limit)).await
    }
}

#[async_trait]
impl ConnectionLeases for SimLimits {
    async fn lease(
        &self,
        user: &str,
        lease: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let conn = self.broker.conn(self.index);
        self.bounded(self.broker.lease(conn, user, lease, limit, ttl)).await
    }

    async fn release(&self, user: &str, lease: &str) -> Result<(), Unavailable> {
        let conn = self.broker.conn(self.index);
        self.bounded(self.broker.release(conn, user, lease)).await
    }
}

#[async_trait]
impl SharedTurns for SimLimits {
    async fn take(&self, key: &str, holder: &str, ttl: Duration) -> Result<Take, Unavailable> {
        let conn = self.broker.conn(self.index);
        self.bounded(self.broker.take_turn(conn, key, holder, ttl)).await
    }

    async fn renew(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let conn = self.broker.conn(self.index);
        self.bounded(self.broker.renew_turn(conn, key, holder, ttl)).await
    }

    async fn give_back(&self, key: &str, holder: &str) -> Result<(), Unavailable> {
        let conn = self.broker.conn(self.index);
        self.bounded(self.broker.give_back(conn, key, holder)).await
    }
}
