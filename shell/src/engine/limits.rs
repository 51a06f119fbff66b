//! The limits service (PROTOCOL.md §5 with §10 items 12 and 28): the `user_message` limiter per
//! user, the `{P}/admin/*` limiter per admin, the public-route limiters per client IP and route
//! family, and the WebSocket connection slots per user. The rules are core's (`rate`,
//! `shared`); this service holds their state, counts refusals for metrics and cleans idle keys.
//!
//! In a fleet (issue 14, `REDIS_URL`) a [`FleetLimiter`] is attached: user messages, admin
//! requests and connections per user are then decided by it for the whole fleet, with the
//! in-process limiters as the fallback whenever it does not answer within its deadline
//! ([`FleetHealth`]). Allowed fleet decisions are also recorded locally, so the fallback starts
//! from this instance's recent traffic. Public-route limits stay per instance.

use compact_str::CompactString;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chatbox_core::budgets::{
    CONNECTION_LEASE_HEARTBEAT, CONNECTION_LEASE_RENEWALS_IN_FLIGHT, CONNECTION_LEASE_TTL,
};
use chatbox_core::config::Config;
use chatbox_core::rate::{Decision, RateLimit, SlotsFull};
use chatbox_core::shared::{SharedLimiter, SharedSlots};
use chatbox_core::Instant;
use futures_util::TryStreamExt;

use super::fleet_limits::{
    FleetHealth, FleetLimiter, InProcessRates, LeaseGuard, LeaseRegistry, Scope, Unavailable,
};
use super::metrics::{Limiter, Metrics};

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

/// The user, admin and public limiters and the connection slots.
#[derive(Debug)]
pub struct Limits {
    /// `user_message` limiter per user id (this instance's).
    pub messages: Arc<SharedLimiter<CompactString>>,
    /// `{P}/admin/*` limiter per admin user id (`config.rate.admin`, PROTOCOL.md §5).
    pub admin: Arc<SharedLimiter<CompactString>>,
    /// Public-route limiters per client IP, one per route family (§5, §10 item 28).
    pub public: PublicLimiters,
    /// Connection slots per user id (this instance's).
    pub slots: Arc<SharedSlots<String>>,
    local: InProcessRates,
    message_limit: RateLimit,
    admin_limit: RateLimit,
    max_connections: u32,
    fleet: OnceLock<Arc<dyn FleetLimiter>>,
    health: FleetHealth,
    leases: Arc<LeaseRegistry>,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// The limits `config` sets.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let rate = &config.rate;
        let message_limit = RateLimit::new(rate.messages.limit, rate.messages.window);
        let admin_limit = RateLimit::new(rate.admin.limit, rate.admin.window);
        let messages = Arc::new(SharedLimiter::new(message_limit, rate.max_keys));
        let admin = Arc::new(SharedLimiter::new(admin_limit, rate.max_keys));
        Self {
            local: InProcessRates { messages: Arc::clone(&messages), admin: Arc::clone(&admin) },
            messages,
            admin,
            public: PublicLimiters::new(
                RateLimit::new(rate.public.limit, rate.public.window),
                rate.max_keys,
            ),
            slots: Arc::new(SharedSlots::new(config.websocket.max_connections_per_user)),
            message_limit,
            admin_limit,
            max_connections: config.websocket.max_connections_per_user,
            fleet: OnceLock::new(),
            health: FleetHealth::default(),
            leases: Arc::new(LeaseRegistry::default()),
            metrics,
        }
    }

    /// Makes the user, admin and connection limits fleet-wide through `fleet` (once, at start).
    pub fn attach_fleet(&self, fleet: Arc<dyn FleetLimiter>) {
        if self.fleet.set(fleet).is_err() {
            tracing::warn!("a fleet limiter was already attached; keeping the first");
        }
    }

    /// Whether the fleet limiter is attached and currently considered down.
    pub fn fleet_degraded(&self) -> bool {
        self.fleet.get().is_some() && self.health.is_down()
    }

    /// One `user_message` of `user_id` at `now`: allowed, or denied (counted, logged).
    pub async fn check_message(&self, user_id: &str, now: Instant) -> Decision {
        let decision = self.decide(Scope::Messages, user_id, now).await;
        if let Decision::Denied { retry_after } = decision {
            self.metrics.rate_limited(Limiter::Message);
            tracing::info!(user_id, ?retry_after, "message rate limit");
        }
        decision
    }

    /// One `{P}/admin/*` request of admin `user_id` at `now`: allowed, or denied (counted,
    /// logged).
    pub async fn check_admin(&self, user_id: &str, now: Instant) -> Decision {
        let decision = self.decide(Scope::Admin, user_id, now).await;
        if let Decision::Denied { retry_after } = decision {
            self.metrics.rate_limited(Limiter::Admin);
            tracing::info!(user_id, ?retry_after, "admin rate limit");
        }
        decision
    }

    /// The fleet's decision when it answers, else the local one.
    async fn decide(&self, scope: Scope, key: &str, now: Instant) -> Decision {
        let Some(fleet) = self.fleet.get().filter(|_| self.health.usable(now)) else {
            if self.fleet.get().is_some() {
                self.metrics.fleet_limit_fallbacks.inc();
            }
            return self.local.decide(scope, key, now);
        };
        let limit = match scope {
            Scope::Messages => self.message_limit,
            Scope::Admin => self.admin_limit,
        };
        match fleet.check(scope, key, limit, now).await {
            Ok(decision) => {
                self.health.succeeded();
                if decision.is_allowed() {
                    // Kept warm for an outage; the fleet already allowed it, so the local
                    // answer (never looser than the fleet's) is not needed.
                    let _ = self.local.decide(scope, key, now);
                }
                decision
            }
            Err(error) => {
                self.health.failed(now, &error);
                self.metrics.fleet_limit_fallbacks.inc();
                self.local.decide(scope, key, now)
            }
        }
    }

    /// The fleet-wide connection lease of a new connection of `user_id` (the local slot is
    /// taken separately): `Ok(None)` without a fleet, `Err` when the user already holds
    /// `MAX_CONNECTIONS` across the fleet. While the fleet is unavailable the connection is let
    /// through (the local slot limits alone) with a lease the heartbeat registers once Redis
    /// answers again, if the user is then under the limit.
    pub async fn lease_connection(
        &self,
        user_id: &str,
        now: Instant,
    ) -> Result<Option<LeaseGuard>, SlotsFull> {
        let Some(fleet) = self.fleet.get() else { return Ok(None) };
        let id = super::ids::hex32();
        if !self.health.usable(now) {
            self.metrics.fleet_limit_fallbacks.inc();
            return Ok(Some(LeaseRegistry::hold(&self.leases, user_id, id)));
        }
        match fleet.lease(user_id, &id, self.max_connections, CONNECTION_LEASE_TTL).await {
            Ok(true) => {
                self.health.succeeded();
                Ok(Some(LeaseRegistry::hold(&self.leases, user_id, id)))
            }
            Ok(false) => {
                self.health.succeeded();
                Err(SlotsFull { held: self.max_connections, limit: self.max_connections })
            }
            Err(error) => {
                self.health.failed(now, &error);
                self.metrics.fleet_limit_fallbacks.inc();
                Ok(Some(LeaseRegistry::hold(&self.leases, user_id, id)))
            }
        }
    }

    /// Renews this instance's connection leases every [`CONNECTION_LEASE_HEARTBEAT`] and sends
    /// the releases of closed connections. Returns at once without a fleet; otherwise it runs
    /// until the runtime ends — through a shutdown's drain too, so connections closed while
    /// draining give their leases back at once (nothing waits for it). A lease left behind (a
    /// failed release, a killed process) expires after [`CONNECTION_LEASE_TTL`].
    pub async fn run_leases(&self) {
        let Some(fleet) = self.fleet.get() else { return };
        let Some(mut releases) = self.leases.take_releases() else { return };
        let mut heartbeat = tokio::time::interval(CONNECTION_LEASE_HEARTBEAT);
        loop {
            tokio::select! {
                Some((user, id)) = releases.recv() => {
                    if let Err(error) = fleet.release(&user, &id).await {
                        tracing::debug!(%error, "lease release failed; it expires by itself");
                    }
                    self.leases.release_sent();
                }
                _ = heartbeat.tick() => self.renew_leases(fleet.as_ref()).await,
            }
        }
    }

    /// One heartbeat: renews every lease of this instance, several at once on the multiplexed
    /// connection (one at a time, a heartbeat of many connections would outlast the leases'
    /// TTL); stops at the first failure (Redis away: the leases expire by themselves).
    async fn renew_leases(&self, fleet: &dyn FleetLimiter) {
        let renewals = futures_util::stream::iter(self.leases.snapshot().into_iter().map(Ok));
        let renewed = renewals
            .try_for_each_concurrent(CONNECTION_LEASE_RENEWALS_IN_FLIGHT, |(id, user)| async move {
                let ttl = CONNECTION_LEASE_TTL;
                if !fleet.lease(&user, &id, self.max_connections, ttl).await? {
                    // Lost with Redis and no room now: the connection stays open (it was
                    // allowed), but it no longer takes a fleet slot.
                    tracing::debug!(user_id = %user, "lease not renewed: the user is at the limit");
                }
                Ok::<(), Unavailable>(())
            })
            .await;
        if let Err(error) = renewed {
            tracing::debug!(%error, "lease heartbeat failed");
        }
    }

    /// Waits, at most `within`, for this instance's connection leases to be given back to the
    /// fleet (every connection closed and its release sent); whether they were. At once without
    /// a fleet.
    pub async fn leases_released(&self, within: Duration) -> bool {
        self.fleet.get().is_none() || self.leases.settled(within).await
    }

    /// Drops idle keys from every limiter, reports how many each still holds, and returns how
    /// many were removed.
    pub fn cleanup(&self, now: Instant) -> usize {
        let public = &self.public;
        let removed = self.messages.cleanup(now)
            + self.admin.cleanup(now)
            + public.all().iter().map(|l| l.cleanup(now)).sum::<usize>();
        self.metrics.set_limiter_keys(Limiter::Message, self.messages.len());
        self.metrics.set_limiter_keys(Limiter::Admin, self.admin.len());
        self.metrics
            .set_limiter_keys(Limiter::Public, public.all().iter().map(|l| l.len()).sum::<usize>());
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::fleet_limits::{ConnectionLeases, SharedRates, Unavailable};
    use async_trait::async_trait;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    /// A fleet limiter double: refuses everything while up, fails while down; counts calls.
    #[derive(Debug, Default)]
    struct Fleet {
        down: AtomicBool,
        calls: AtomicUsize,
        released: AtomicUsize,
    }

    impl Fleet {
        fn answer<T>(&self, value: T) -> Result<T, Unavailable> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            if self.down.load(Ordering::SeqCst) {
                Err(Unavailable("down".into()))
            } else {
                Ok(value)
            }
        }
    }

    #[async_trait]
    impl SharedRates for Fleet {
        async fn check(
            &self,
            _: Scope,
            _: &str,
            _: RateLimit,
            _: Instant,
        ) -> Result<Decision, Unavailable> {
            self.answer(Decision::Denied { retry_after: Duration::from_secs(7) })
        }
    }

    #[async_trait]
    impl ConnectionLeases for Fleet {
        async fn lease(&self, _: &str, _: &str, _: u32, _: Duration) -> Result<bool, Unavailable> {
            self.answer(false)
        }
        async fn release(&self, _: &str, _: &str) -> Result<(), Unavailable> {
            self.released.fetch_add(1, Ordering::SeqCst);
            self.answer(())
        }
    }

    #[tokio::test]
    async fn a_heartbeat_renews_every_lease_and_stops_at_the_first_failure() {
        let config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        let limits = Limits::new(&config, Arc::new(Metrics::new()));
        let fleet = Arc::new(Fleet::default());
        limits.attach_fleet(Arc::clone(&fleet) as Arc<dyn FleetLimiter>);
        // Let through while Redis is away: registered for the heartbeat.
        fleet.down.store(true, Ordering::SeqCst);
        let mut held = Vec::new();
        for i in 0..200 {
            let guard = limits.lease_connection(&format!("u{i}"), Instant::from_secs(1)).await;
            held.push(guard.expect("let through").expect("a lease"));
        }
        fleet.down.store(false, Ordering::SeqCst);
        let before = fleet.calls.load(Ordering::SeqCst);
        limits.renew_leases(fleet.as_ref()).await;
        assert_eq!(fleet.calls.load(Ordering::SeqCst) - before, 200, "every lease renewed");
        fleet.down.store(true, Ordering::SeqCst);
        let before = fleet.calls.load(Ordering::SeqCst);
        limits.renew_leases(fleet.as_ref()).await;
        let asked = fleet.calls.load(Ordering::SeqCst) - before;
        assert!((1..=CONNECTION_LEASE_RENEWALS_IN_FLIGHT).contains(&asked), "stopped: {asked}");
    }

    #[tokio::test]
    async fn the_fleet_decides_while_it_answers_and_the_local_limiter_while_it_does_not() {
        let config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        let metrics = Arc::new(Metrics::new());
        let limits = Limits::new(&config, Arc::clone(&metrics));
        let fleet = Arc::new(Fleet::default());
        limits.attach_fleet(Arc::clone(&fleet) as Arc<dyn FleetLimiter>);
        let t = Instant::from_secs(100);
        // Up: the fleet's answers, refusals included, are final.
        let refused = limits.check_message("u1", t).await;
        assert_eq!(refused.retry_after(), Some(Duration::from_secs(7)));
        assert!(!limits.check_admin("a1", t).await.is_allowed());
        assert!(limits.lease_connection("u1", t).await.is_err(), "full fleet-wide");
        assert_eq!(metrics.fleet_limit_fallbacks.get(), 0);
        // Down: local decisions, one failed call, then no call until the pause has passed.
        fleet.down.store(true, Ordering::SeqCst);
        let before = fleet.calls.load(Ordering::SeqCst);
        assert!(limits.check_message("u1", t).await.is_allowed(), "local budget");
        assert!(limits.check_message("u1", t).await.is_allowed());
        let pending = limits.lease_connection("u1", t).await;
        assert!(matches!(pending, Ok(Some(_))), "let through, registered for the heartbeat");
        assert_eq!(fleet.calls.load(Ordering::SeqCst), before + 1, "paused after the failure");
        assert_eq!(metrics.fleet_limit_fallbacks.get(), 3);
        assert!(limits.fleet_degraded());
        // Back: asked again after the pause.
        fleet.down.store(false, Ordering::SeqCst);
        let later = t + chatbox_core::budgets::FLEET_LIMIT_RETRY_PAUSE;
        assert!(!limits.check_message("u1", later).await.is_allowed());
        assert!(!limits.fleet_degraded());
    }

    /// A rolling deploy's drained instance: the release of a closed connection's lease is sent
    /// before the instance says its leases are back, so the process does not exit first.
    #[tokio::test]
    async fn a_closed_connections_lease_is_released_before_the_leases_count_as_back() {
        let config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        let limits = Limits::new(&config, Arc::new(Metrics::new()));
        let fleet = Arc::new(Fleet::default());
        limits.attach_fleet(Arc::clone(&fleet) as Arc<dyn FleetLimiter>);
        // Down: the connection is let through with a lease the heartbeat would register.
        fleet.down.store(true, Ordering::SeqCst);
        let guard = limits.lease_connection("u1", Instant::from_secs(1)).await;
        let guard = guard.expect("let through").expect("a lease");
        fleet.down.store(false, Ordering::SeqCst);
        let checks = async {
            assert!(!limits.leases_released(Duration::from_millis(50)).await, "a lease is held");
            drop(guard);
            assert!(limits.leases_released(Duration::from_secs(5)).await);
            assert_eq!(fleet.released.load(Ordering::SeqCst), 1, "the release was sent");
        };
        // The lease task runs until the runtime ends: here, until the checks are done.
        tokio::select! {
            () = limits.run_leases() => panic!("the lease task runs while the fleet is attached"),
            () = checks => {}
        }
    }

    #[tokio::test]
    async fn the_message_limit_denies_past_the_configured_count() {
        let mut config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        config.rate.messages.limit = 2;
        let limits = Limits::new(&config, Arc::new(Metrics::new()));
        let now = Instant::ZERO;
        assert!(limits.check_message("u1", now).await.is_allowed());
        assert!(limits.check_message("u1", now).await.is_allowed());
        assert!(!limits.check_message("u1", now).await.is_allowed());
        assert!(limits.check_message("u2", now).await.is_allowed(), "per user");
        assert_eq!(limits.cleanup(now), 0, "keys are not idle yet");
    }
}
