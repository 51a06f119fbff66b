//! [`SlidingLog`]: the fleet-wide rate limit's rule (issue 14), written once here as a model of
//! what the Redis script of `shell/src/adapters/limits` does atomically per check. The shell's
//! script and this model must stay the same algorithm; the property test below proves the model
//! never allows more than `limit` events in any closed window of `window`.
//!
//! # Algorithm: exact sliding log on one shared clock
//!
//! One key holds the times (microseconds, Redis's `TIME`) of its allowed events. A check at `t`
//! first makes time monotonic — `t = max(t, newest event)`, so a clock stepping back (a Redis
//! restart on another host) never revisits the past — then forgets the events older than
//! `t − W`, counts the rest (every event in the closed interval `[t − W, t]`) and allows iff the
//! count is `< N`; an allowed event is recorded at `t`, a denied one is not.
//!
//! Never looser: for any closed interval `[s, s + W]`, take its last allowed event `t`; every
//! other allowed event of the interval lies in `[t − W, t]`, so it was counted at `t`, and that
//! count was `< N`. Never stricter than an exact log either: an event counts exactly while it is
//! inside the window, so `retry_after` is exact (the time until the oldest counted event that
//! must go leaves the window). With one Redis there is one clock, so instances' clock skew does
//! not matter.

use std::collections::VecDeque;
use std::time::Duration;

use super::{Decision, RateLimit};

/// A window in whole microseconds (the Redis script's unit), at least 0.
pub fn window_micros(window: Duration) -> u64 {
    u64::try_from(window.as_micros()).unwrap_or(u64::MAX)
}

/// The exact sliding-window log of one key, on a clock in microseconds.
#[derive(Clone, Debug)]
pub struct SlidingLog {
    limit: u32,
    window: u64,
    /// Allowed events still in the window, oldest first (microseconds).
    events: VecDeque<u64>,
}

impl SlidingLog {
    /// An empty log enforcing `limit`.
    pub fn new(limit: RateLimit) -> Self {
        Self { limit: limit.limit, window: window_micros(limit.window), events: VecDeque::new() }
    }

    /// Allowed events the log still counts.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    /// Whether the log counts no event.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Decides one event at `now_us` (microseconds). Returns the decision and the time it was
    /// taken at, `max(now_us, newest event)`.
    pub fn check(&mut self, now_us: u64) -> (Decision, u64) {
        if self.limit == 0 {
            let hint = Duration::from_micros(self.window.max(1));
            return (Decision::Denied { retry_after: hint }, now_us);
        }
        let t = self.events.back().map_or(now_us, |&newest| newest.max(now_us));
        let oldest_kept = t.saturating_sub(self.window);
        while self.events.front().is_some_and(|&e| e < oldest_kept) {
            self.events.pop_front();
        }
        let count = self.events.len();
        let limit = self.limit as usize;
        if count < limit {
            self.events.push_back(t);
            return (Decision::Allowed, t);
        }
        // The event whose departure brings the count below the limit.
        let pivot = self.events[count - limit];
        let wait = pivot.saturating_add(self.window).saturating_add(1).saturating_sub(t);
        (Decision::Denied { retry_after: Duration::from_micros(wait.max(1)) }, t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn limit_then_exact_retry_after() {
        let mut log = SlidingLog::new(RateLimit::new(2, Duration::from_secs(1)));
        assert_eq!(log.check(10).0, Decision::Allowed);
        assert_eq!(log.check(20).0, Decision::Allowed);
        // The event at 10 µs counts until 1_000_010 µs inclusive.
        let (decision, _) = log.check(30);
        assert_eq!(decision.retry_after(), Some(Duration::from_micros(1_000_010 + 1 - 30)));
        assert!(!log.check(1_000_010).0.is_allowed());
        assert!(log.check(1_000_011).0.is_allowed());
        assert_eq!(log.len(), 2);
    }

    #[test]
    fn a_clock_stepping_back_counts_as_the_newest_event() {
        let mut log = SlidingLog::new(RateLimit::new(1, Duration::from_secs(1)));
        assert_eq!(log.check(5_000_000), (Decision::Allowed, 5_000_000));
        let (decision, at) = log.check(0);
        assert!(!decision.is_allowed());
        assert_eq!(at, 5_000_000);
    }

    #[test]
    fn zero_limit_refuses() {
        let mut log = SlidingLog::new(RateLimit::new(0, Duration::from_secs(3)));
        assert_eq!(log.check(1).0.retry_after(), Some(Duration::from_secs(3)));
        assert!(log.is_empty());
    }

    proptest! {
        /// Several instances share one log (Redis) and check at arbitrary, even decreasing,
        /// times: no closed window of `W` on the log's clock ever holds more than `N` allowed
        /// events, and a denial's `retry_after` is exact.
        #[test]
        fn never_looser_than_the_limit(
            limit in 1u32..6,
            window in 1u64..50,
            steps in proptest::collection::vec((0usize..3, 0u64..200), 1..200),
        ) {
            let mut log = SlidingLog::new(RateLimit::new(limit, Duration::from_micros(window)));
            let mut allowed: Vec<u64> = Vec::new();
            for (_instance, now) in steps {
                let (decision, at) = log.check(now);
                match decision {
                    Decision::Allowed => allowed.push(at),
                    Decision::Denied { retry_after } => {
                        // Retrying exactly then is allowed, one µs earlier is not.
                        let wait = u64::try_from(retry_after.as_micros()).unwrap_or(u64::MAX);
                        let mut early = log.clone();
                        prop_assert!(!early.check(at + wait - 1).0.is_allowed());
                        let mut on_time = log.clone();
                        prop_assert!(on_time.check(at + wait).0.is_allowed());
                    }
                }
            }
            for &end in &allowed {
                let start = end.saturating_sub(window);
                let inside = allowed.iter().filter(|&&e| e >= start && e <= end).count();
                prop_assert!(inside <= limit as usize, "{inside} events in [{start}, {end}]");
            }
        }
    }
}
