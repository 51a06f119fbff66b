//! The alerts service (PROTOCOL.md §6.7): tells admins about a help request through the
//! configured [`Notifier`], in the background, at most `config.rate.help_alerts` per session per
//! window — excess requests are acknowledged to the user but not alerted. Owns the notifier and
//! the alert limiter.

use compact_str::CompactString;
use std::sync::Arc;

use chatbox_core::config::Config;
use chatbox_core::rate::RateLimit;
use chatbox_core::shared::SharedLimiter;
use chatbox_core::Instant;

use super::clock::Clock;
use super::metrics::{Limiter, Metrics};
use super::notify::{HelpAlert, Notifier};
use super::supervisor::Supervisor;

/// The notifier and its per-session limiter.
#[derive(Debug)]
pub struct Alerts {
    notifier: Arc<dyn Notifier>,
    limiter: SharedLimiter<CompactString>,
    admin_panel_url: Option<String>,
    clock: Clock,
    supervisor: Supervisor,
    metrics: Arc<Metrics>,
}

impl Alerts {
    /// Alerts through `notifier` with the limits of `config`.
    pub fn new(
        config: &Config,
        notifier: Arc<dyn Notifier>,
        clock: Clock,
        supervisor: Supervisor,
        metrics: Arc<Metrics>,
    ) -> Self {
        let rate = &config.rate;
        Self {
            notifier,
            limiter: SharedLimiter::new(
                RateLimit::new(rate.help_alerts.limit, rate.help_alerts.window),
                rate.max_keys,
            ),
            admin_panel_url: config.alerts.admin_panel_url.clone(),
            clock,
            supervisor,
            metrics,
        }
    }

    /// Alerts admins that `user_id` asked for help in `session`, in the background, unless the
    /// session's alert budget is spent. Returns whether an alert was sent off.
    pub fn help_requested(&self, session: &str, user_id: &str) -> bool {
        let key = format!("help_request:{session}");
        if !self.limiter.check(key.as_str(), self.clock.now()).is_allowed() {
            self.metrics.rate_limited(Limiter::HelpAlert);
            tracing::info!(session_id = session, "help alert skipped: alert rate limit");
            return false;
        }
        let alert = HelpAlert {
            user_id: user_id.to_string(),
            session_id: session.to_string(),
            at: self.clock.wall_datetime(),
            admin_panel_url: self.admin_panel_url.clone(),
        };
        let notifier = Arc::clone(&self.notifier);
        self.supervisor.spawn("help-alert", async move {
            if let Err(error) = notifier.help_requested(&alert).await {
                tracing::error!(session_id = %alert.session_id, %error, "help alert failed");
            }
        });
        true
    }

    /// Drops idle limiter keys; returns how many.
    pub fn cleanup(&self, now: Instant) -> usize {
        let removed = self.limiter.cleanup(now);
        self.metrics.set_limiter_keys(Limiter::HelpAlert, self.limiter.len());
        removed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::notify::LogNotifier;

    #[tokio::test]
    async fn alerts_stop_at_the_per_session_budget() {
        let mut config = Config::for_dev("q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne".into(), "/tmp/unused");
        config.rate.help_alerts.limit = 1;
        let metrics = Arc::new(Metrics::new());
        let alerts =
            Alerts::new(&config, Arc::new(LogNotifier), Clock::new(), Supervisor::new(), metrics);
        assert!(alerts.help_requested("s1", "u1"));
        assert!(!alerts.help_requested("s1", "u1"), "over budget");
        assert!(alerts.help_requested("s2", "u1"), "per session");
    }
}
