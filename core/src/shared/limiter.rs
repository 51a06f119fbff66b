//! A rate limiter shared by every connection (user messages) or every request (admin, public).
//! The critical section is one `RateLimiter::check`, O(k) with k ≤ 1024 buckets.

use std::hash::Hash;

use crate::rate::{Decision, LimiterKey, LimiterStats, RateLimit, RateLimiter};
use crate::sync::{Mutex, MutexGuard};
use crate::time::Instant;

/// A thread-safe [`RateLimiter`].
#[derive(Debug)]
pub struct SharedLimiter<K: Hash + Eq + Clone> {
    inner: Mutex<RateLimiter<K>>,
}

impl<K: Hash + Eq + Clone> SharedLimiter<K> {
    /// A limiter allowing `limit` per window for each of at most `max_keys` keys.
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self { inner: Mutex::new(RateLimiter::new(limit, max_keys)) }
    }

    fn lock(&self) -> MutexGuard<'_, RateLimiter<K>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Decides one event for `key` at `now` (a denied event is not counted).
    pub fn check<Q: Hash + Eq + ?Sized>(&self, key: &Q, now: Instant) -> Decision
    where
        K: LimiterKey<Q>,
    {
        self.lock().check(key, now)
    }

    /// Drops keys with nothing left in their window; returns how many.
    pub fn cleanup(&self, now: Instant) -> usize {
        self.lock().cleanup(now)
    }

    /// Whether `key` is tracked now (its recency is not changed).
    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: LimiterKey<Q>,
    {
        self.lock().contains(key)
    }

    /// Keys tracked now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Counters for metrics.
    pub fn stats(&self) -> LimiterStats {
        self.lock().stats()
    }
}
