//! The ports of the fleet-wide limits (issue 14, Behaviour 3): [`SharedRates`] decides one
//! rate-limited event for a key, [`ConnectionLeases`] holds one lease per open WebSocket
//! connection. [`InProcessRates`] is today's in-process limiter behind the same port (the
//! default, and the fallback while Redis is away); the Redis implementation is an adapter
//! (`adapters::limits`). Also here: [`FleetHealth`], which remembers a failed Redis call so the
//! outage is logged once and Redis is not asked again before a pause, and the registry of this
//! instance's connection leases that a heartbeat renews.

use compact_str::CompactString;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::budgets::FLEET_LIMIT_RETRY_PAUSE;
use chatbox_core::rate::{Decision, RateLimit};
use chatbox_core::shared::SharedLimiter;
use chatbox_core::Instant;
use tokio::sync::{mpsc, Notify};

/// Which fleet-wide rate limit a check counts against.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// `user_message` frames per user (`RATE_LIMIT` / `RATE_LIMIT_WINDOW`).
    Messages,
    /// `{P}/admin/*` requests per admin (`ADMIN_RATE_LIMIT` / `ADMIN_RATE_WINDOW`).
    Admin,
}

impl Scope {
    /// The scope's name in Redis keys and logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            Scope::Messages => "msg",
            Scope::Admin => "admin",
        }
    }
}

/// The shared limiter could not answer (Redis down, slow or refusing); the caller decides
/// locally.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("fleet limits unavailable: {0}")]
pub struct Unavailable(pub String);

/// A rate limiter every instance of the fleet shares.
#[async_trait]
pub trait SharedRates: Send + Sync + fmt::Debug {
    /// Decides one event of `key` under `limit` (`now` is this instance's clock; a shared
    /// implementation may use its own). An allowed event is counted, a denied one is not.
    async fn check(
        &self,
        scope: Scope,
        key: &str,
        limit: RateLimit,
        now: Instant,
    ) -> Result<Decision, Unavailable>;
}

/// Connection leases every instance of the fleet shares: a user holds at most `limit` live
/// leases; a lease not renewed within `ttl` expires by itself (a killed instance's slots).
#[async_trait]
pub trait ConnectionLeases: Send + Sync + fmt::Debug {
    /// Takes lease `lease` of `user`, or renews it when held; `Ok(false)` when `user` already
    /// holds `limit` other live leases.
    async fn lease(
        &self,
        user: &str,
        lease: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, Unavailable>;

    /// Gives lease `lease` of `user` back (idempotent).
    async fn release(&self, user: &str, lease: &str) -> Result<(), Unavailable>;
}

/// Every user's token spending per UTC day, shared by the fleet (`USER_TOKEN_BUDGET` with
/// `REDIS_URL`, issue 17).
#[async_trait]
pub trait SharedTokens: Send + Sync + fmt::Debug {
    /// Tokens `user` spent on UTC day `day` (core's `usage::day_of`) across the fleet.
    async fn spent(&self, user: &str, day: i64) -> Result<u64, Unavailable>;
    /// Adds `tokens` to `user`'s spending of `day`.
    async fn charge(&self, user: &str, day: i64, tokens: u64) -> Result<(), Unavailable>;
}

/// A fleet backend: shared rates and connection leases.
pub trait FleetLimiter: SharedRates + ConnectionLeases {}

impl<T: SharedRates + ConnectionLeases> FleetLimiter for T {}

/// The in-process limiters behind the [`SharedRates`] port: exact for one instance, and what
/// every instance falls back to while the shared one is unavailable.
#[derive(Debug)]
pub struct InProcessRates {
    /// `user_message` limiter per user id.
    pub messages: Arc<SharedLimiter<CompactString>>,
    /// Admin-route limiter per admin user id.
    pub admin: Arc<SharedLimiter<CompactString>>,
}

impl InProcessRates {
    /// The local decision (never fails).
    pub fn decide(&self, scope: Scope, key: &str, now: Instant) -> Decision {
        let limiter = match scope {
            Scope::Messages => &self.messages,
            Scope::Admin => &self.admin,
        };
        limiter.check(key, now)
    }
}

#[async_trait]
impl SharedRates for InProcessRates {
    async fn check(
        &self,
        scope: Scope,
        key: &str,
        _limit: RateLimit,
        now: Instant,
    ) -> Result<Decision, Unavailable> {
        Ok(self.decide(scope, key, now))
    }
}

/// Whether the shared limiter may be asked: after a failure, not before
/// [`FLEET_LIMIT_RETRY_PAUSE`] has passed. The outage and the recovery are logged once each.
#[derive(Debug)]
pub struct FleetHealth {
    /// `Some(retry_at)` while the shared limiter is considered down.
    down: Mutex<Option<Instant>>,
    /// What is down, and what each instance does meanwhile, in the outage's log lines.
    what: &'static str,
    meanwhile: &'static str,
}

impl Default for FleetHealth {
    fn default() -> Self {
        Self::named("fleet-wide limits", "each instance limits locally")
    }
}

impl FleetHealth {
    /// Up; an outage is logged as "`what` unavailable: `meanwhile`".
    pub fn named(what: &'static str, meanwhile: &'static str) -> Self {
        Self { down: Mutex::new(None), what, meanwhile }
    }

    fn lock(&self) -> MutexGuard<'_, Option<Instant>> {
        self.down.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether to ask the shared limiter at `now`.
    pub fn usable(&self, now: Instant) -> bool {
        self.lock().is_none_or(|retry_at| now >= retry_at)
    }

    /// A call failed at `now` with `error`.
    pub fn failed(&self, now: Instant, error: &Unavailable) {
        let was_up = self.lock().replace(now + FLEET_LIMIT_RETRY_PAUSE).is_none();
        if was_up {
            tracing::warn!(%error, "{} unavailable: {}", self.what, self.meanwhile);
        }
    }

    /// A call succeeded.
    pub fn succeeded(&self) {
        if self.lock().take().is_some() {
            tracing::info!("{} available again", self.what);
        }
    }

    /// Whether the shared limiter is considered down.
    pub fn is_down(&self) -> bool {
        self.lock().is_some()
    }
}

/// The connection leases this instance holds (renewed by the heartbeat) and the queue of
/// releases for the heartbeat task, with how many of them it has not sent yet (an exiting
/// instance waits for those, [`LeaseRegistry::settled`]).
#[derive(Debug)]
pub struct LeaseRegistry {
    live: Mutex<HashMap<String, String>>,
    release_tx: mpsc::UnboundedSender<(String, String)>,
    release_rx: Mutex<Option<mpsc::UnboundedReceiver<(String, String)>>>,
    unsent: AtomicUsize,
    changed: Notify,
}

impl Default for LeaseRegistry {
    fn default() -> Self {
        let (release_tx, release_rx) = mpsc::unbounded_channel();
        Self {
            live: Mutex::default(),
            release_tx,
            release_rx: Mutex::new(Some(release_rx)),
            unsent: AtomicUsize::new(0),
            changed: Notify::new(),
        }
    }
}

impl LeaseRegistry {
    fn live(&self) -> MutexGuard<'_, HashMap<String, String>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Records lease `id` of `user`; dropping the guard gives it back.
    pub fn hold(registry: &Arc<Self>, user: &str, id: String) -> LeaseGuard {
        registry.live().insert(id.clone(), user.to_string());
        LeaseGuard { registry: Arc::clone(registry), id }
    }

    /// Every live lease as `(lease id, user)`.
    pub fn snapshot(&self) -> Vec<(String, String)> {
        self.live().iter().map(|(id, user)| (id.clone(), user.clone())).collect()
    }

    /// Leases held now.
    pub fn len(&self) -> usize {
        self.live().len()
    }

    /// Whether no lease is held.
    pub fn is_empty(&self) -> bool {
        self.live().is_empty()
    }

    /// The release queue, handed out once to the heartbeat task.
    pub fn take_releases(&self) -> Option<mpsc::UnboundedReceiver<(String, String)>> {
        self.release_rx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take()
    }

    fn drop_lease(&self, id: &str) {
        if let Some(user) = self.live().remove(id) {
            // Counted before it is queued, so the heartbeat task cannot mark it sent first.
            self.unsent.fetch_add(1, Ordering::SeqCst);
            // Without a heartbeat task (shutting down) the lease simply expires.
            if self.release_tx.send((user, id.to_string())).is_err() {
                self.unsent.fetch_sub(1, Ordering::SeqCst);
            }
        }
        self.changed.notify_waiters();
    }

    /// The heartbeat task is done with one queued release (sent, or failed: it then expires).
    pub fn release_sent(&self) {
        self.unsent.fetch_sub(1, Ordering::SeqCst);
        self.changed.notify_waiters();
    }

    /// Waits, at most `within`, until no lease is held and every release was handled; whether
    /// that happened. An exiting instance calls it so its drained connections' slots are free
    /// for the fleet at once rather than after [`chatbox_core::budgets::CONNECTION_LEASE_TTL`].
    pub async fn settled(&self, within: Duration) -> bool {
        let wait = async {
            loop {
                let changed = self.changed.notified();
                tokio::pin!(changed);
                // Registered before the check, so a change in between is not missed.
                changed.as_mut().enable();
                if self.is_empty() && self.unsent.load(Ordering::SeqCst) == 0 {
                    return;
                }
                changed.await;
            }
        };
        tokio::time::timeout(within, wait).await.is_ok()
    }
}

/// One connection's fleet lease; dropping it queues the release.
#[derive(Debug)]
pub struct LeaseGuard {
    registry: Arc<LeaseRegistry>,
    id: String,
}

impl Drop for LeaseGuard {
    fn drop(&mut self) {
        self.registry.drop_lease(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_pauses_after_a_failure_and_recovers() {
        let health = FleetHealth::default();
        let t = Instant::from_secs(10);
        assert!(health.usable(t));
        health.failed(t, &Unavailable("down".into()));
        assert!(!health.usable(t));
        assert!(health.usable(t + FLEET_LIMIT_RETRY_PAUSE));
        health.succeeded();
        assert!(!health.is_down());
    }

    #[test]
    fn a_dropped_lease_is_queued_for_release_once() {
        let registry = Arc::new(LeaseRegistry::default());
        let mut releases = registry.take_releases().expect("once");
        assert!(registry.take_releases().is_none());
        let guard = LeaseRegistry::hold(&registry, "u1", "l1".into());
        assert_eq!(registry.snapshot(), [("l1".to_string(), "u1".to_string())]);
        drop(guard);
        assert!(registry.is_empty());
        assert_eq!(releases.try_recv().ok(), Some(("u1".to_string(), "l1".to_string())));
        assert!(releases.try_recv().is_err());
    }
}
