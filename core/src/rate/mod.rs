//! Rate limits (PROTOCOL.md §3.2, §5; seed issues #11 and #18; §10 items 12 and 28).
//!
//! One keyed limiter, [`RateLimiter`], serves every limit: user messages (key `user_id`,
//! [`RateLimit::USER_MESSAGES`]), admin requests (admin `user_id`, [`RateLimit::ADMIN_DEFAULT`]
//! or the configured value) and public requests (client IP per route family,
//! [`RateLimit::PUBLIC`]). Concurrent connections are counted separately by [`ConnectionSlots`].
//! The periodic cleanup that seed issue #11 asks for is [`RateLimiter::cleanup`] driven by a
//! [`crate::timer::Periodic`].
//!
//! Files: `window.rs` is the bucket arithmetic and one key's ring of counters, `limiter.rs` the
//! keyed limiter with its LRU key set, `slots.rs` the connection slots, `log.rs` the exact
//! sliding log that the fleet-wide limits keep in Redis (issue 14).
//!
//! # Algorithm: bucketed sliding window
//!
//! Let `N` be the limit and `W` the window. Time is cut into buckets of width
//! `g = max(1 ns, ⌈W / k⌉)` with `k` sub-buckets per window ([`DEFAULT_BUCKETS`] = 20, so a
//! 60 s window has 3 s buckets); `b(t) = ⌊t / g⌋`. A check at time `t` counts the key's allowed
//! events in the buckets `b(t − W) ..= b(t)` (`t − W` saturating at zero) and allows iff that
//! count is `< N`; an allowed event is added to bucket `b(t)`, a denied attempt is not counted.
//! When `k` divides `W` in nanoseconds (so `g · k = W`; with `k = 20`, any window of whole
//! microseconds) the counted buckets are exactly the last `k + 1`, `b(t) − k ..= b(t)`;
//! otherwise they are a suffix of those `k + 1`. Per key the limiter stores
//! `⌈W / g⌉ + 1 ≤ k + 1` `u32` counters and the index of the newest bucket (a ring), so a check
//! costs O(k) whatever the number of keys or events.
//!
//! # Guarantee, compared with "at most N per sliding W"
//!
//! - **Never more than `N` in any window (exact on the safe side).** The counted span
//!   `[b(t − W) · g, t]` always covers the true window `[t − W, t]`, because
//!   `b(t − W) · g = ⌊(t − W) / g⌋ · g ≤ t − W`. Take any closed interval `[s, s + W]` and the
//!   last allowed event in it, at `t`: every other allowed event in the interval lies in
//!   `[t − W, t]`, so it was counted when `t` was checked, and that count was `< N`. Hence every
//!   closed interval of length `W` holds at most `N` allowed events per key.
//! - **Less than `g` late.** An event allowed at `e` is counted while `t < (b(e) + 1) · g + W`,
//!   while an exact sliding log counts it while `t ≤ e + W`; since
//!   `b(e) · g ≤ e < (b(e) + 1) · g`, it stops counting between 0 and `g − 1 ns` after it has
//!   left the true sliding window. Consequently `Denied { retry_after }` — the exact time until
//!   enough of the oldest counted buckets are released that the count drops below `N` — is at
//!   least the retry time of an exact sliding log over the same allowed events and less than it
//!   plus `g`. It is honest: a retry at `now + retry_after` is allowed and one at
//!   `now + retry_after − 1 ns` is denied, if nothing else happens to the key meanwhile.
//!
//! PROTOCOL.md §5 describes the old sliding log; this differs from it only by that `< g`
//! (`< 3 s` for the 60 s limits) of extra delay, in exchange for constant memory per key.
//!
//! # Time
//!
//! `now` is the driver's monotonic clock. The limiter keeps its own clock, the largest `now` it
//! was given; a `now` earlier than that (time standing still or running backwards, e.g. two
//! threads that read the clock before taking the lock) is treated as the clock. In particular a
//! `now` earlier than a key's newest bucket counts as that bucket or later, so a backwards jump
//! never revisits a bucket and never allows an extra event: the guarantee above holds for the
//! limiter's clock. `retry_after` is measured from the `now` given, so it stays honest.
//!
//! # Keys: bounded and least recently used
//!
//! At most `max_keys` keys are tracked. A new key is never refused (§10 item 28): when full, the
//! least recently used key is evicted to make room, and
//! [`LimiterStats::evicted_live`] counts evictions of keys that still had events in their window
//! (each gave one key a fresh budget early) so operators can size `max_keys`. Recency is the time
//! of a key's last *allowed* event — a denied attempt is counted neither in the window nor in the
//! recency — so keys are ordered by their newest event: the evicted key is the one whose events
//! expire first, and [`RateLimiter::cleanup`] finds every idle key by walking from the least
//! recently used end, O(removed). The guarantee above holds per key while it is tracked; an
//! evicted key starts afresh.

use std::time::Duration;

mod limiter;
mod log;
mod slots;
mod window;

pub use limiter::{LimiterKey, LimiterStats, RateLimiter};
pub use log::{window_micros, SlidingLog};
pub use slots::{ConnectionSlots, SlotsFull, DEFAULT_CONNECTIONS_PER_KEY};
pub use window::{DEFAULT_BUCKETS, MAX_BUCKETS};

/// Keys each limiter tracks before evicting the least recently used (PROTOCOL.md §5).
pub const DEFAULT_MAX_KEYS: usize = 100_000;

/// A limit: at most `limit` allowed events per key in any window of `window`.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub struct RateLimit {
    /// Events allowed per window (`0` refuses everything).
    pub limit: u32,
    /// The sliding window (`0` means "per instant": at most `limit` events at the same
    /// nanosecond).
    pub window: Duration,
}

impl RateLimit {
    /// `user_message` frames: 100 per 60 s per `user_id` (PROTOCOL.md §3.2, §5).
    pub const USER_MESSAGES: RateLimit = RateLimit::new(100, Duration::from_secs(60));
    /// Admin routes by default: 20 per minute per admin `user_id` (`chatbox.admin_rate_limit`,
    /// `chatbox.admin_rate_window`; seed issue #18).
    pub const ADMIN_DEFAULT: RateLimit = RateLimit::new(20, Duration::from_secs(60));
    /// Public routes: 60 per 60 s per client IP and route family (PROTOCOL.md §5, §10 item 28).
    pub const PUBLIC: RateLimit = RateLimit::new(60, Duration::from_secs(60));
    /// Help alerts: 5 per 5 minutes per session (`HELP_ALERT_LIMIT` / `HELP_ALERT_WINDOW`).
    pub const HELP_ALERTS: RateLimit = RateLimit::new(5, Duration::from_secs(300));

    /// `limit` events per `window`.
    pub const fn new(limit: u32, window: Duration) -> Self {
        Self { limit, window }
    }
}

/// The answer of [`RateLimiter::check`].
#[must_use = "a rate-limit decision must be enforced"]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Go ahead; the attempt was counted.
    Allowed,
    /// Refused and not counted.
    Denied {
        /// Wait at least this long before the next attempt (always > 0). Exact for this
        /// limiter if nothing else is recorded for the key meanwhile; see the module doc.
        retry_after: Duration,
    },
}

impl Decision {
    /// Whether the attempt was allowed.
    pub fn is_allowed(self) -> bool {
        matches!(self, Decision::Allowed)
    }

    /// The wait of a denial; `None` when allowed.
    pub fn retry_after(self) -> Option<Duration> {
        match self {
            Decision::Allowed => None,
            Decision::Denied { retry_after } => Some(retry_after),
        }
    }
}
