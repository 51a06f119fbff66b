//! The replies service's token accounts (issue 17): the tokens of finished replies per answering
//! model since start (the admin metrics), and each user's daily token budget
//! (`USER_TOKEN_BUDGET`, core's `DailyTokenBudget`). A sub-state of [`super::Replies`]; the
//! stored reply's usage metadata is written by [`usage_meta`].

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use chatbox_core::usage::{DailyTokenBudget, TokenUsage, UsageSource};
use chatbox_core::UnixMillis;

/// Tokens per model since start and the users' daily budgets.
#[derive(Debug)]
pub struct Usage {
    /// Tokens of finished replies per answering model id.
    tokens: Mutex<BTreeMap<String, TokenUsage>>,
    /// `USER_TOKEN_BUDGET`.
    budget: Mutex<DailyTokenBudget>,
}

impl Usage {
    /// No tokens yet; each user may use `daily_budget` tokens a UTC day.
    pub fn new(daily_budget: DailyTokenBudget) -> Self {
        Self { tokens: Mutex::default(), budget: Mutex::new(daily_budget) }
    }

    /// May `user` start a reply at `now`? `Err` carries the wait until the budget resets.
    pub fn check(&self, user: &str, now: UnixMillis) -> Result<(), Duration> {
        lock(&self.budget).check(user, now)
    }

    /// Adds a finished reply's `usage` to `model_id`'s total and charges it to `user`.
    pub fn record(&self, model_id: &str, user: &str, usage: TokenUsage, now: UnixMillis) {
        {
            let mut tokens = lock(&self.tokens);
            let entry = tokens.entry(model_id.to_string()).or_default();
            entry.prompt = entry.prompt.saturating_add(usage.prompt);
            entry.completion = entry.completion.saturating_add(usage.completion);
        }
        lock(&self.budget).charge(user, usage.total(), now);
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
