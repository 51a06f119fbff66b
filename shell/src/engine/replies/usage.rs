//! The replies service's token accounts (issue 17): the tokens of finished replies per answering
//! model since start (the admin metrics), and each user's daily token budget
//! (`USER_TOKEN_BUDGET`, core's `DailyTokenBudget`). A sub-state of [`super::Replies`]; the
//! stored reply's usage metadata is written by [`usage_meta`]. In a fleet (`REDIS_URL`) the
//! budget counts every instance's spending through the [`SharedTokens`] port; this instance's
//! own counts decide while Redis does not answer.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chatbox_core::usage::{day_of, DailyTokenBudget, TokenUsage, UsageSource};
use chatbox_core::{Instant, UnixMillis};

use crate::engine::fleet_limits::{FleetHealth, SharedTokens};

/// Tokens per model since start and the users' daily budgets.
#[derive(Debug)]
pub struct Usage {
    /// Tokens of finished replies per answering model id.
    tokens: Mutex<BTreeMap<String, TokenUsage>>,
    /// `USER_TOKEN_BUDGET`: this instance's counts (all of it without a fleet; the fallback
    /// while the fleet's counts cannot be read).
    budget: Mutex<DailyTokenBudget>,
    /// The fleet's shared counts (`REDIS_URL`), when attached.
    fleet: OnceLock<Arc<dyn SharedTokens>>,
    /// Whether the fleet's counts answered lately.
    fleet_health: FleetHealth,
}

impl Usage {
    /// No tokens yet; each user may use `daily_budget` tokens a UTC day.
    pub fn new(daily_budget: DailyTokenBudget) -> Self {
        Self {
            tokens: Mutex::default(),
            budget: Mutex::new(daily_budget),
            fleet: OnceLock::new(),
            fleet_health: FleetHealth::default(),
        }
    }

    /// Makes the budget count across the fleet through `tokens` (once, at start).
    pub fn attach_fleet(&self, tokens: Arc<dyn SharedTokens>) {
        let _ = self.fleet.set(tokens);
    }

    /// May `user` start a reply at `now` (`at` on the runtime clock)? `Err` carries the wait
    /// until the budget resets.
    pub async fn check(&self, user: &str, now: UnixMillis, at: Instant) -> Result<(), Duration> {
        if !lock(&self.budget).enabled() {
            return Ok(());
        }
        let fleet = self.fleet.get().filter(|_| self.fleet_health.usable(at));
        let spent = match fleet {
            Some(fleet) => match fleet.spent(user, day_of(now)).await {
                Ok(spent) => {
                    self.fleet_health.succeeded();
                    Some(spent)
                }
                Err(error) => {
                    self.fleet_health.failed(at, &error);
                    None
                }
            },
            None => None,
        };
        let mut budget = lock(&self.budget);
        match spent {
            Some(spent) => budget.judge(spent, now),
            None => budget.check(user, now),
        }
    }

    /// Adds a finished reply's `usage` to `model_id`'s total and charges it to `user`, here and
    /// (in a fleet) in the shared counts.
    pub async fn record(
        &self,
        model_id: &str,
        user: &str,
        usage: TokenUsage,
        now: UnixMillis,
        at: Instant,
    ) {
        {
            let mut tokens = lock(&self.tokens);
            let entry = tokens.entry(model_id.to_string()).or_default();
            entry.prompt = entry.prompt.saturating_add(usage.prompt);
            entry.completion = entry.completion.saturating_add(usage.completion);
        }
        let enabled = {
            let mut budget = lock(&self.budget);
            budget.charge(user, usage.total(), now);
            budget.enabled()
        };
        let fleet = self.fleet.get().filter(|_| enabled && usage.total() > 0);
        if let Some(fleet) = fleet {
            if let Err(error) = fleet.charge(user, day_of(now), usage.total()).await {
                self.fleet_health.failed(at, &error);
            }
        }
    }

    /// Tokens of finished replies per answering model id.
    pub fn by_model(&self) -> BTreeMap<String, TokenUsage> {
        lock(&self.tokens).clone()
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The stored reply's metadata (issue 17): who answered and what it cost.
pub fn usage_meta(
    model_id: &str,
    usage: TokenUsage,
    source: UsageSource,
) -> BTreeMap<String, String> {
    let mut meta = BTreeMap::from([
        ("model_id".to_string(), model_id.to_string()),
        ("prompt_tokens".to_string(), usage.prompt.to_string()),
        ("completion_tokens".to_string(), usage.completion.to_string()),
    ]);
    if source == UsageSource::Estimated {
        meta.insert("tokens_estimated".to_string(), "true".to_string());
    }
    meta
}
