//! [`RateLimiter`]: the keyed bucketed-sliding-window limiter with a bounded, least-recently-used
//! key set. The algorithm and its guarantee are in the module doc of [`super`]; the per-key ring
//! is [`super::window`].

use std::hash::Hash;
use std::num::NonZeroUsize;
use std::time::Duration;

use lru::LruCache;

use super::window::{Geometry, Window, DEFAULT_BUCKETS};
use super::{Decision, RateLimit};
use crate::time::Instant;

/// Counters an operator reads to size [`RateLimiter::new`]'s `max_keys` and to export metrics.
/// All counts are since construction.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Keys currently tracked (equals [`RateLimiter::len`]).
    pub keys: usize,
    /// The most keys tracked at once.
    pub max_keys: usize,
    /// Checks answered [`Decision::Allowed`].
    pub allowed: u64,
    /// Checks answered [`Decision::Denied`].
    pub denied: u64,
    /// Keys evicted to make room while they still had events in their window: each one got a
    /// fresh budget early. A growing count means `max_keys` is too small for the traffic.
    pub evicted_live: u64,
    /// Keys evicted to make room that had nothing left in their window (harmless: a
    /// [`RateLimiter::cleanup`] would have dropped them).
    pub evicted_idle: u64,
    /// Keys removed by [`RateLimiter::cleanup`].
    pub cleaned: u64,
}

/// A keyed sliding-window rate limiter: at most `limit.limit` allowed events per key in any
/// window of `limit.window` (module doc of [`super`] for the exact guarantee), at most `max_keys`
/// keys in memory.
///
/// Driving: call [`RateLimiter::check`] once per attempt and act on the returned [`Decision`]
/// (input and output in one call: an allowed attempt is counted, a denied one is not); call
/// [`RateLimiter::cleanup`] periodically (a [`crate::timer::Periodic`] tick) to free the keys that
/// went idle. [`RateLimiter::len`], [`RateLimiter::contains`] and [`RateLimiter::stats`] are
/// read-only. `now` is the driver's monotonic clock ([`Instant`]); the limiter keeps its own
/// clock, the largest `now` it has been given, and a smaller `now` is treated as that clock, so
/// time never runs backwards inside (see "Time" in the module doc). Nothing is idempotent except
/// the read-only calls and a second `cleanup` at the same `now` (which removes nothing).
///
/// Invariants (checked with `debug_assert!` after each transition):
/// - `len() <= max_keys`;
/// - every tracked key has at least one event in its ring, and no key counts more than
///   `limit.limit` events at the limiter's clock;
/// - keys are ordered by the bucket of their last allowed event, least recent at the LRU end
///   (this is what lets `cleanup` stop at the first key still live).
#[derive(Clone, Debug)]
pub struct RateLimiter<K: Hash + Eq + Clone> {
    limit: RateLimit,
    geo: Geometry,
    /// Per-key windows; recency = the key's last allowed event.
    keys: LruCache<K, Window>,
    /// The largest `now` seen, in nanoseconds.
    clock: u64,
    stats: LimiterStats,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter enforcing `limit` per key and tracking at most `max_keys` keys (at least 1),
    /// counting in [`DEFAULT_BUCKETS`] sub-buckets per window.
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self::with_buckets(limit, max_keys, DEFAULT_BUCKETS)
    }

    /// As [`RateLimiter::new`] with `buckets` sub-buckets per window (clamped to
    /// `1..=`[`super::MAX_BUCKETS`]): more buckets release events closer to the exact sliding
    /// window at the cost of `buckets + 1` counters per key.
    pub fn with_buckets(limit: RateLimit, max_keys: usize, buckets: u32) -> Self {
        let cap = NonZeroUsize::new(max_keys).unwrap_or(NonZeroUsize::MIN);
        Self {
            limit,
            geo: Geometry::new(limit.window, buckets),
            keys: LruCache::new(cap),
            clock: 0,
            stats: LimiterStats { max_keys: cap.get(), ..LimiterStats::default() },
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// The width `g` of one sub-bucket: how much later than an exact sliding log an event may
    /// stop counting (less than `g`).
    pub fn bucket_width(&self) -> Duration {
        Duration::from_nanos(self.geo.width())
    }

    /// The most keys tracked at once.
    pub fn max_keys(&self) -> usize {
        self.keys.cap().get()
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `key` is tracked (does not change its recency).
    pub fn contains(&self, key: &K) -> bool {
        self.keys.contains(key)
    }

    /// The counters since construction.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats { keys: self.keys.len(), ..self.stats }
    }

    /// Moves the limiter's clock to `now` if later and returns it (nanoseconds).
    fn tick(&mut self, now: Instant) -> u64 {
        self.clock = self.clock.max(now.as_nanos());
        self.clock
    }

    /// Decides one attempt by `key` at `now`. Allowed attempts are counted and make `key` the
    /// most recently used; denied ones change nothing but the key's ring position in time (old
    /// buckets are forgotten) and the stats.
    ///
    /// A new key is always allowed (when `limit > 0`): if `max_keys` keys are tracked, the least
    /// recently used one is evicted to make room — a new key is never refused (PROTOCOL.md §10
    /// item 28). `Denied { retry_after }` is the exact wait, from `now`, after which this key's
    /// next check is allowed if nothing else is recorded for it meanwhile (always > 0). With
    /// `limit == 0` every attempt is denied with `retry_after = max(window, 1 ns)`, a hint only.
    ///
    /// O(k) for k sub-buckets, independent of the number of keys and events.
    pub fn check(&mut self, key: &K, now: Instant) -> Decision {
        let t = self.tick(now);
        let limit = self.limit.limit;
        if limit == 0 {
            self.stats.denied += 1;
            let hint = self.limit.window.max(Duration::from_nanos(1));
            return Decision::Denied { retry_after: hint };
        }
        let bucket = self.geo.bucket(t);
        let first = self.geo.first_counted(t);
        let decision = match self.keys.peek_mut(key) {
            Some(window) => {
                window.advance(bucket);
                if window.count_from(first) < u64::from(limit) {
                    window.record();
                    debug_assert!(window.count_from(first) <= u64::from(limit));
                    self.keys.promote(key);
                    Decision::Allowed
                } else {
                    // `release_at` is Some because the count is at the limit; the fallback only
                    // guards the arithmetic.
                    let at = window.release_at(&self.geo, first, limit).unwrap_or(u64::MAX);
                    // `at == u64::MAX` means "beyond the end of time" (saturated arithmetic).
                    debug_assert!(at > t || at == u64::MAX, "a release must lie in the future");
                    let wait = at.saturating_sub(now.as_nanos()).max(1);
                    Decision::Denied { retry_after: Duration::from_nanos(wait) }
                }
            }
            None => {
                self.insert(key, bucket, first);
                Decision::Allowed
            }
        };
        match decision {
            Decision::Allowed => self.stats.allowed += 1,
            Decision::Denied { .. } => self.stats.denied += 1,
        }
        debug_assert!(self.keys.len() <= self.keys.cap().get(), "more keys than max_keys");
        debug_assert!(
            self.keys.peek_lru().is_none_or(|(_, w)| w.last_event().is_some()),
            "a tracked key without events"
        );
        decision
    }

    /// Adds `key` with one event in `bucket`, evicting the least recently used key when full.
    fn insert(&mut self, key: &K, bucket: u64, first: u64) {
        let mut window = if self.keys.len() >= self.keys.cap().get() {
            match self.keys.pop_lru() {
                Some((_, mut old)) => {
                    if old.is_live(first) {
                        self.stats.evicted_live += 1;
                    } else {
                        self.stats.evicted_idle += 1;
                    }
                    old.reset(bucket);
                    old
                }
                None => Window::new(&self.geo, bucket),
            }
        } else {
            Window::new(&self.geo, bucket)
        };
        window.record();
        // The key is new, so `push` evicts nothing (room was made above).
        let evicted = self.keys.push(key.clone(), window);
        debug_assert!(evicted.is_none(), "insert evicted a second key");
    }

    /// Drops every key with nothing left in its window at `now` and returns how many were
    /// dropped. Walks from the least recently used end and stops at the first key still live, so
    /// it costs O(removed · k): keys are ordered by their last allowed event, so the idle ones are
    /// exactly that end of the list. Keys with events still counted are kept.
    pub fn cleanup(&mut self, now: Instant) -> usize {
        let t = self.tick(now);
        let first = self.geo.first_counted(t);
        let mut removed = 0;
        while self.keys.peek_lru().is_some_and(|(_, w)| !w.is_live(first)) {
            self.keys.pop_lru();
            removed += 1;
        }
        self.stats.cleaned += removed as u64;
        debug_assert!(self.recency_matches_events(), "LRU order differs from event order");
        debug_assert!(
            self.keys.iter().all(|(_, w)| w.is_live(first)),
            "cleanup left an idle key behind"
        );
        removed
    }

    /// The ordering invariant: from least to most recently used, last-event buckets never
    /// decrease. O(len · k); only used in debug assertions (after `cleanup`) and tests.
    fn recency_matches_events(&self) -> bool {
        let mut previous = 0;
        // `iter()` runs from the most recently used; walk from the other end.
        for (_, w) in self.keys.iter().rev() {
            let Some(last) = w.last_event() else {
                return false;
            };
            if last < previous {
                return false;
            }
            previous = last;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MINUTE, SECOND};

    const G: Duration = Duration::from_secs(3);

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn admin() -> RateLimiter<&'static str> {
        RateLimiter::new(RateLimit::new(3, MINUTE), 10)
    }

    #[test]
    fn limit_then_deny() {
        let mut l = admin();
        for _ in 0..3 {
            assert_eq!(l.check(&"a", at(1)), Decision::Allowed);
        }
        // All three sit in bucket 0 (0..3 s), released at (0+1)·3 s + 60 s = 63 s.
        assert_eq!(l.check(&"a", at(1)), Decision::Denied { retry_after: 62 * SECOND });
        assert_eq!(l.check(&"b", at(1)), Decision::Allowed);
        let s = l.stats();
        assert_eq!((s.allowed, s.denied, s.keys), (4, 1, 2));
    }

    #[test]
    fn retry_after_at_bucket_edges() {
        let mut l = admin();
        // Two events in bucket 0 (0..3 s), one in bucket 1.
        assert!(l.check(&"a", at(0)).is_allowed());
        assert!(l.check(&"a", at(3) - Duration::from_nanos(1)).is_allowed());
        assert!(l.check(&"a", at(3)).is_allowed());
        // Denied at 3 s: dropping bucket 0 (2 events) frees room, released at 63 s.
        assert_eq!(l.check(&"a", at(3)).retry_after(), Some(60 * SECOND));
        assert_eq!(l.check(&"a", at(40)).retry_after(), Some(23 * SECOND));
        let one = Duration::from_nanos(1);
        assert_eq!(l.check(&"a", at(63) - one).retry_after(), Some(one));
        assert_eq!(l.check(&"a", at(63)), Decision::Allowed);
        // Now bucket 1 holds one event and bucket 21 two; the next release is bucket 1's at 66 s.
        assert_eq!(l.check(&"a", at(63)), Decision::Allowed);
        assert_eq!(l.check(&"a", at(64)).retry_after(), Some(2 * SECOND));
    }

    #[test]
    fn refills_after_the_window() {
        let mut l = admin();
        for _ in 0..3 {
            assert!(l.check(&"a", at(10)).is_allowed());
        }
        assert!(!l.check(&"a", at(70)).is_allowed()); // 70 - 60 = 10: bucket 3 still counted
        for _ in 0..3 {
            assert!(l.check(&"a", at(72)).is_allowed()); // bucket 3 released at 72 s
        }
        assert!(!l.check(&"a", at(72)).is_allowed());
        // Long idle: a fresh budget.
        for _ in 0..3 {
            assert!(l.check(&"a", at(10_000)).is_allowed());
        }
    }

    #[test]
    fn full_limiter_evicts_least_recently_used() {
        let mut l = RateLimiter::new(RateLimit::new(1, MINUTE), 2);
        assert!(l.check(&"a", at(0)).is_allowed());
        assert!(l.check(&"b", at(1)).is_allowed());
        // A denied check does not refresh "a": recency is the last allowed event.
        assert!(!l.check(&"a", at(2)).is_allowed());
        assert!(l.check(&"c", at(5)).is_allowed());
        assert_eq!(l.len(), 2);
        assert!(!l.contains(&"a") && l.contains(&"b") && l.contains(&"c"));
        assert_eq!(l.stats().evicted_live, 1);
        // "a" lost its history: its next attempt is a new key and evicts "b".
        assert!(l.check(&"a", at(6)).is_allowed());
        assert!(!l.contains(&"b"));
        // Idle eviction is counted separately.
        assert!(l.check(&"d", at(200)).is_allowed());
        assert_eq!((l.stats().evicted_live, l.stats().evicted_idle), (2, 1));
    }

    #[test]
    fn max_keys_zero_means_one() {
        let mut l = RateLimiter::new(RateLimit::new(1, MINUTE), 0);
        assert_eq!(l.max_keys(), 1);
        assert!(l.check(&1, at(0)).is_allowed());
        assert!(l.check(&2, at(0)).is_allowed());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn cleanup_drops_idle_keys_and_keeps_live_ones() {
        let mut l = admin();
        assert!(l.check(&"old", at(0)).is_allowed()); // bucket 0, released at 63 s
        assert!(l.check(&"mid", at(30)).is_allowed()); // bucket 10, released at 93 s
        assert!(l.check(&"new", at(62)).is_allowed());
        assert_eq!(l.cleanup(at(62)), 0);
        assert_eq!(l.cleanup(at(63)), 1);
        assert!(!l.contains(&"old") && l.contains(&"mid") && l.contains(&"new"));
        assert_eq!(l.cleanup(at(63)), 0, "idempotent at the same time");
        assert_eq!(l.cleanup(at(1_000)), 2);
        assert!(l.is_empty());
        assert_eq!(l.stats().cleaned, 3);
    }

    #[test]
    fn cleanup_keeps_a_denied_key() {
        let mut l = RateLimiter::new(RateLimit::new(1, MINUTE), 10);
        assert!(l.check(&"a", at(0)).is_allowed());
        assert!(l.check(&"b", at(50)).is_allowed());
        assert!(!l.check(&"a", at(59)).is_allowed()); // not promoted: "a" stays LRU
        assert_eq!(l.cleanup(at(62)), 0);
        assert_eq!(l.cleanup(at(63)), 1);
        assert!(l.contains(&"b"));
    }

    #[test]
    fn time_standing_still_and_running_backwards() {
        let mut l = admin();
        for _ in 0..3 {
            assert!(l.check(&"a", at(100)).is_allowed());
        }
        // Back to 10 s: treated as 100 s, so still denied; retry_after counts from the real now.
        // Bucket 33 (99..102 s) is released at 102 + 60 = 162 s.
        assert_eq!(l.check(&"a", at(10)).retry_after(), Some(152 * SECOND));
        assert_eq!(l.check(&"a", Instant::ZERO).retry_after(), Some(162 * SECOND));
        // A new key after a backwards jump is recorded at the limiter's clock, not earlier.
        for _ in 0..3 {
            assert!(l.check(&"b", at(5)).is_allowed());
        }
        assert!(!l.check(&"b", at(160)).is_allowed());
        assert!(l.check(&"b", at(162)).is_allowed());
        // Cleanup with an old `now` uses the clock (162 s): "a" (bucket 33) is released, "b"
        // (bucket 54) is not.
        assert_eq!(l.cleanup(at(0)), 1);
        assert!(!l.contains(&"a") && l.contains(&"b"));
    }

    #[test]
    fn zero_window_limits_per_instant() {
        let mut l = RateLimiter::new(RateLimit::new(2, Duration::ZERO), 10);
        assert_eq!(l.bucket_width(), Duration::from_nanos(1));
        assert!(l.check(&"a", at(1)).is_allowed());
        assert!(l.check(&"a", at(1)).is_allowed());
        assert_eq!(l.check(&"a", at(1)).retry_after(), Some(Duration::from_nanos(1)));
        assert!(l.check(&"a", at(1) + Duration::from_nanos(1)).is_allowed());
        assert_eq!(l.cleanup(at(2)), 1);
    }

    #[test]
    fn odd_window() {
        // 7 per 61 s + 1 ns: g rounds up to 3.05 s + 1 ns.
        let w = 61 * SECOND + Duration::from_nanos(1);
        let mut l = RateLimiter::new(RateLimit::new(7, w), 10);
        assert_eq!(l.bucket_width(), Duration::from_nanos(3_050_000_001));
        for _ in 0..7 {
            assert!(l.check(&"a", at(0)).is_allowed());
        }
        let retry = l.check(&"a", at(0)).retry_after().unwrap();
        assert_eq!(retry, w + l.bucket_width());
        assert!(!l.check(&"a", at(0) + retry - Duration::from_nanos(1)).is_allowed());
        assert!(l.check(&"a", at(0) + retry).is_allowed());
    }

    #[test]
    fn zero_limit_denies_everything_without_tracking() {
        let mut l = RateLimiter::new(RateLimit::new(0, MINUTE), 10);
        assert_eq!(l.check(&"a", at(0)), Decision::Denied { retry_after: MINUTE });
        assert!(l.is_empty());
        let mut l = RateLimiter::new(RateLimit::new(0, Duration::ZERO), 10);
        assert_eq!(l.check(&"a", at(0)).retry_after(), Some(Duration::from_nanos(1)));
    }

    #[test]
    fn far_future_does_not_panic() {
        let mut l = RateLimiter::new(RateLimit::new(1, Duration::MAX), 10);
        assert!(l.check(&"a", Instant::MAX).is_allowed());
        assert!(l.check(&"a", Instant::MAX).retry_after().is_some());
        assert_eq!(l.cleanup(Instant::MAX), 0);
        let mut l = RateLimiter::new(RateLimit::new(1, MINUTE), 10);
        assert!(l.check(&"a", Instant::MAX - G).is_allowed());
        assert!(!l.check(&"a", Instant::MAX).is_allowed());
    }
}
