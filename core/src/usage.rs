//! Token usage of replies and the per-user daily token budget (issue 17).
//!
//! Providers report what a reply cost (OpenAI's final usage chunk, Anthropic's `message_start` /
//! `message_delta`, Dify's `message_end`); [`TokenUsage::settle`] takes that report, or — only
//! when the provider reported nothing — the original's estimate of reply bytes ÷ 4 as
//! completion tokens (PROTOCOL.md §6.5).
//!
//! [`DailyTokenBudget`] is `USER_TOKEN_BUDGET`: the tokens one user may spend per UTC calendar
//! day. A user whose spending today has reached the budget is refused before a provider is
//! called, with the time left until the next UTC midnight, when every user's count starts again
//! at zero. A reply already running finishes (and is counted) even if it crosses the budget.
//! Time comes in as wall-clock [`UnixMillis`]; nothing here reads a clock.

use std::collections::HashMap;
use std::time::Duration;

use crate::time::UnixMillis;

/// Milliseconds in a UTC day.
const DAY_MS: i64 = 86_400_000;

/// Reply bytes per estimated token when a provider reports no usage (PROTOCOL.md §6.5).
pub const ESTIMATE_BYTES_PER_TOKEN: u64 = 4;

/// What one reply cost, in tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenUsage {
    /// Tokens of the request (the conversation sent).
    pub prompt: u64,
    /// Tokens of the reply.
    pub completion: u64,
}

/// Where a settled [`TokenUsage`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsageSource {
    /// The provider reported it.
    Reported,
    /// Estimated from the reply's length (the provider reported nothing).
    Estimated,
}

impl TokenUsage {
    /// Prompt plus completion (what `totalTokens` and the budget count).
    pub fn total(self) -> u64 {
        self.prompt.saturating_add(self.completion)
    }

    /// The original's estimate for a reply of `reply_bytes` bytes: bytes ÷ 4 (floor) completion
    /// tokens, no prompt tokens.
    pub fn estimate(reply_bytes: usize) -> Self {
        let bytes = u64::try_from(reply_bytes).unwrap_or(u64::MAX);
        TokenUsage { prompt: 0, completion: bytes / ESTIMATE_BYTES_PER_TOKEN }
    }

    /// The usage to record for a finished reply: the provider's report when it sent one, else
    /// [`TokenUsage::estimate`].
    pub fn settle(reported: Option<TokenUsage>, reply_bytes: usize) -> (TokenUsage, UsageSource) {
        match reported {
            Some(usage) => (usage, UsageSource::Reported),
            None => (Self::estimate(reply_bytes), UsageSource::Estimated),
        }
    }
}

/// The UTC day number of `at` (days since 1970-01-01), the key of a day's spending.
pub fn day_of(at: UnixMillis) -> i64 {
    at.0.div_euclid(DAY_MS)
}

/// Time from `at` to the next UTC midnight (never zero: at midnight exactly, a whole day).
pub fn until_utc_midnight(at: UnixMillis) -> Duration {
    let into_day = at.0.rem_euclid(DAY_MS);
    Duration::from_millis(u64::try_from(DAY_MS - into_day).unwrap_or(0))
}

/// The per-user daily token budget (`USER_TOKEN_BUDGET`, 0 = off).
///
/// Inputs: [`check`](Self::check) before a provider is called, [`charge`](Self::charge) when a
/// reply's usage is known. Only today's counts are kept: the first input of a new UTC day drops
/// the others, so memory is bounded by the users active in one day.
#[derive(Debug, Clone, Default)]
pub struct DailyTokenBudget {
    limit: u64,
    day: i64,
    used: HashMap<String, u64>,
}

impl DailyTokenBudget {
    /// A budget of `limit` tokens per user per UTC day; 0 turns it off.
    pub fn new(limit: u64) -> Self {
        Self { limit, day: i64::MIN, used: HashMap::new() }
    }

    /// Whether a budget is in force.
    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// Tokens `user` has used today (as of `now`).
    pub fn used(&mut self, user: &str, now: UnixMillis) -> u64 {
        self.roll(now);
        self.used.get(user).copied().unwrap_or(0)
    }

    /// May `user` start a reply at `now`? `Err` carries the wait until the budget resets (the
    /// next UTC midnight) when today's spending has reached the limit.
    pub fn check(&mut self, user: &str, now: UnixMillis) -> Result<(), Duration> {
        if !self.enabled() {
            return Ok(());
        }
        if self.used(user, now) >= self.limit {
            return Err(until_utc_midnight(now));
        }
        Ok(())
    }

    /// Adds `tokens` to `user`'s spending of the day of `now`.
    pub fn charge(&mut self, user: &str, tokens: u64, now: UnixMillis) {
        if !self.enabled() || tokens == 0 {
            return;
        }
        self.roll(now);
        let used = self.used.entry(user.to_string()).or_default();
        *used = used.saturating_add(tokens);
    }

    /// The fleet's answer (`spent`: what `user` spent today across every instance, issue 17)
    /// judged by this budget: `Err` with the wait until the next UTC midnight once it has
    /// reached the limit.
    pub fn judge(&self, spent: u64, now: UnixMillis) -> Result<(), Duration> {
        if self.enabled() && spent >= self.limit {
            return Err(until_utc_midnight(now));
        }
        Ok(())
    }

    /// Users counted today.
    pub fn tracked(&self) -> usize {
        self.used.len()
    }

    /// Starts a new day's counts when `now` is in a later day than the last input (a `now`
    /// in an earlier day counts in the current one: the wall clock may step back a little).
    fn roll(&mut self, now: UnixMillis) {
        let day = day_of(now);
        if day > self.day {
            self.day = day;
            self.used.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON: UnixMillis = UnixMillis(20_000 * DAY_MS + DAY_MS / 2);

    #[test]
    fn settle_prefers_the_report_and_estimates_bytes_over_four() {
        let reported = TokenUsage { prompt: 12, completion: 5 };
        assert_eq!(TokenUsage::settle(Some(reported), 400), (reported, UsageSource::Reported));
        assert_eq!(
            TokenUsage::settle(None, 43),
            (TokenUsage { prompt: 0, completion: 10 }, UsageSource::Estimated)
        );
        assert_eq!(reported.total(), 17);
    }

    #[test]
    fn midnight_arithmetic() {
        assert_eq!(until_utc_midnight(NOON), Duration::from_secs(12 * 3600));
        assert_eq!(until_utc_midnight(UnixMillis(0)), Duration::from_secs(86_400));
        assert_eq!(until_utc_midnight(UnixMillis(DAY_MS - 1)), Duration::from_millis(1));
        assert_eq!(until_utc_midnight(UnixMillis(-1)), Duration::from_millis(1));
    }

    #[test]
    fn a_user_over_the_budget_waits_until_midnight_then_starts_again() {
        let mut b = DailyTokenBudget::new(100);
        assert_eq!(b.check("u", NOON), Ok(()));
        b.charge("u", 99, NOON);
        assert_eq!(b.check("u", NOON), Ok(()), "below the limit");
        b.charge("u", 5, NOON);
        assert_eq!(b.check("u", NOON), Err(Duration::from_secs(12 * 3600)));
        assert_eq!(b.check("other", NOON), Ok(()), "budgets are per user");
        let next_day = UnixMillis(NOON.0 + DAY_MS / 2);
        assert_eq!(b.check("u", next_day), Ok(()));
        assert_eq!(b.used("u", next_day), 0);
    }

    #[test]
    fn zero_is_off() {
        let mut b = DailyTokenBudget::new(0);
        b.charge("u", 1_000_000, NOON);
        assert_eq!(b.check("u", NOON), Ok(()));
        assert_eq!(b.tracked(), 0);
    }

    proptest::proptest! {
        #[test]
        fn refusal_iff_today_reached_the_limit_and_wait_ends_at_midnight(
            limit in 1u64..1_000,
            charges in proptest::collection::vec((0u64..400, 0i64..3 * DAY_MS), 0..40),
        ) {
            let mut b = DailyTokenBudget::new(limit);
            let mut times: Vec<(u64, i64)> = charges;
            times.sort_by_key(|(_, at)| *at);
            let start = 20_000 * DAY_MS;
            let mut today = (i64::MIN, 0u64);
            for (tokens, offset) in times {
                let now = UnixMillis(start + offset);
                let day = day_of(now);
                if day != today.0 {
                    today = (day, 0);
                }
                match b.check("u", now) {
                    Ok(()) => proptest::prop_assert!(today.1 < limit),
                    Err(wait) => {
                        proptest::prop_assert!(today.1 >= limit);
                        let reset = UnixMillis(now.0 + wait.as_millis() as i64);
                        proptest::prop_assert_eq!(day_of(reset), day + 1);
                        proptest::prop_assert_eq!(reset.0 % DAY_MS, 0);
                    }
                }
                b.charge("u", tokens, now);
                today.1 += tokens;
            }
        }
    }
}
