//! The limits service (PROTOCOL.md §5 with §10 items 12 and 28): the `user_message` limiter per
//! user, the `{P}/admin/*` limiter per admin, the public-route limiters per client IP and route
//! family, and the WebSocket connection slots per user. The rules are core's (`rate`,
//! `shared`); this service holds their state, counts refusals for metrics and cleans idle keys.

use std::net::IpAddr;
use std::sync::Arc;

use chatbox_core::config::Config;
use chatbox_core::rate::{Decision, RateLimit};
use chatbox_core::shared::{SharedLimiter, SharedSlots};
use chatbox_core::Instant;

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
    /// `user_message` limiter per user id.
    pub messages: SharedLimiter<String>,
    /// `{P}/admin/*` limiter per admin user id (`config.rate.admin`, PROTOCOL.md §5).
    pub admin: SharedLimiter<String>,
    /// Public-route limiters per client IP, one per route family (§5, §10 item 28).
    pub public: PublicLimiters,
    /// Connection slots per user id.
    pub slots: Arc<SharedSlots<String>>,
    metrics: Arc<Metrics>,
}

impl Limits {
    /// The limits `config` sets.
    pub fn new(config: &Config, metrics: Arc<Metrics>) -> Self {
        let rate = &config.rate;
        Self {
            messages: SharedLimiter::new(
                RateLimit::new(rate.messages.limit, rate.messages.window),
                rate.max_keys,
            ),
            admin: SharedLimiter::new(
                RateLimit::new(rate.admin.limit, rate.admin.window),
                rate.max_keys,
            ),
            public: PublicLimiters::new(
                RateLimit::new(rate.public.limit, rate.public.window),
                rate.max_keys,
            ),
            slots: Arc::new(SharedSlots::new(config.websocket.max_connections_per_user)),
            metrics,
        }
    }

    /// One `user_message` of `user_id` at `now`: allowed, or denied (counted, logged).
    pub fn check_message(&self, user_id: &str, now: Instant) -> Decision {
        let decision = self.messages.check(&user_id.to_string(), now);
        if let Decision::Denied { retry_after } = decision {
            self.metrics.rate_limited(Limiter::Message);
            tracing::info!(user_id, ?retry_after, "message rate limit");
        }
        decision
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

    #[test]
    fn the_message_limit_denies_past_the_configured_count() {
        let mut config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        config.rate.messages.limit = 2;
        let limits = Limits::new(&config, Arc::new(Metrics::new()));
        let now = Instant::ZERO;
        assert!(limits.check_message("u1", now).is_allowed());
        assert!(limits.check_message("u1", now).is_allowed());
        assert!(!limits.check_message("u1", now).is_allowed());
        assert!(limits.check_message("u2", now).is_allowed(), "per user");
        assert_eq!(limits.cleanup(now), 0, "keys are not idle yet");
    }
}
