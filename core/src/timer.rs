//! [`Periodic`]: a fixed-rate schedule for periodic work — rate-limiter cleanup (seed issue #11,
//! properties 10 and 11), session sweeps — as a sans-IO value. It never sleeps or reads a clock:
//! the driver asks when the next tick is due, sleeps on its own clock, and reports back.

use std::time::Duration;

use crate::time::{duration_nanos, Instant};

/// A periodic schedule with ticks at `start + m · interval` for `m = 1, 2, …`, until stopped.
///
/// Driving contract (quinn style):
/// - Output: [`Periodic::poll_timeout`] — when the next tick is due, or `None` once stopped.
///   Ask again after every other call; arm one timer for that instant.
/// - Input: [`Periodic::handle_timeout`]`(now)` when that timer fires (calling it earlier, or
///   more often, is harmless: it returns `false` until a tick is due). `true` means "do the
///   periodic work now" (e.g. `limiter.cleanup(now)`).
/// - Input: [`Periodic::stop`] — idempotent; afterwards `poll_timeout()` is `None` and
///   `handle_timeout` returns `false` forever (property 11: the cleanup loop ends).
///
/// `now` is the driver's monotonic clock ([`Instant`]), the same one `new` was given. A call
/// fires at most once: if the driver was late by several intervals (a long pause, a suspended
/// process), it fires once and the next tick is the first grid point after `now` — missed ticks
/// are skipped, not replayed in a burst, and the grid never drifts because ticks are computed
/// from the start, not from when the driver got round to calling. A `now` earlier than the due
/// tick (including a backwards jump) does nothing.
///
/// Invariants (checked with `debug_assert!`): while running, the due tick lies on the grid
/// `start + m · interval` and, after a firing at `now`, lies strictly after `now`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Periodic {
    /// Interval in nanoseconds, at least 1.
    interval: u64,
    /// The due tick; `None` once stopped (or when the next tick would lie past `Instant::MAX`).
    next: Option<u64>,
}

impl Periodic {
    /// A schedule whose first tick is due at `now + interval` (a zero `interval` counts as 1 ns).
    pub fn new(interval: Duration, now: Instant) -> Self {
        let interval = duration_nanos(interval).max(1);
        Self { interval, next: now.as_nanos().checked_add(interval) }
    }

    /// The interval between ticks.
    pub fn interval(&self) -> Duration {
        Duration::from_nanos(self.interval)
    }

    /// When the next tick is due; `None` once stopped. Output; does not change anything.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next.map(Instant::from_nanos)
    }

    /// Reports the time; `true` when a tick is due at `now` (do the periodic work). Schedules the
    /// next tick on the grid strictly after `now`, skipping any ticks missed while the driver
    /// was late.
    #[must_use = "true means the periodic work is due now"]
    pub fn handle_timeout(&mut self, now: Instant) -> bool {
        let Some(due) = self.next else { return false };
        let now = now.as_nanos();
        if now < due {
            return false;
        }
        let ticks = (now - due) / self.interval + 1;
        // Past `Instant::MAX` there is no next tick to schedule: the schedule ends.
        self.next = ticks.checked_mul(self.interval).and_then(|d| due.checked_add(d));
        debug_assert!(
            self.next.is_none_or(|n| n > now && (n - due) % self.interval == 0),
            "next tick off the grid or not in the future"
        );
        true
    }

    /// Stops the schedule for good. Idempotent.
    pub fn stop(&mut self) {
        self.next = None;
    }

    /// Whether a tick is still scheduled (false after [`Periodic::stop`]).
    pub fn is_running(&self) -> bool {
        self.next.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MINUTE, SECOND};

    #[test]
    fn fires_on_the_grid() {
        let start = Instant::from_secs(7);
        let mut p = Periodic::new(5 * MINUTE, start);
        assert_eq!(p.poll_timeout(), Some(start + 5 * MINUTE));
        assert!(!p.handle_timeout(start + 5 * MINUTE - SECOND));
        assert!(p.handle_timeout(start + 5 * MINUTE));
        assert!(!p.handle_timeout(start + 5 * MINUTE), "at most once per call and per tick");
        assert_eq!(p.poll_timeout(), Some(start + 10 * MINUTE));
        // Late by 2 s: fires, and the next tick stays on the grid (no drift).
        assert!(p.handle_timeout(start + 10 * MINUTE + 2 * SECOND));
        assert_eq!(p.poll_timeout(), Some(start + 15 * MINUTE));
    }

    #[test]
    fn a_long_gap_fires_once() {
        let mut p = Periodic::new(MINUTE, Instant::ZERO);
        assert!(p.handle_timeout(Instant::ZERO + 10 * MINUTE + SECOND));
        assert!(!p.handle_timeout(Instant::ZERO + 10 * MINUTE + 2 * SECOND));
        assert_eq!(p.poll_timeout(), Some(Instant::ZERO + 11 * MINUTE));
        // Backwards: nothing.
        assert!(!p.handle_timeout(Instant::ZERO));
        assert_eq!(p.poll_timeout(), Some(Instant::ZERO + 11 * MINUTE));
    }

    #[test]
    fn stop_is_final() {
        let mut p = Periodic::new(SECOND, Instant::ZERO);
        p.stop();
        p.stop();
        assert!(!p.is_running());
        assert_eq!(p.poll_timeout(), None);
        assert!(!p.handle_timeout(Instant::MAX));
    }

    #[test]
    fn zero_interval_and_end_of_time() {
        let mut p = Periodic::new(Duration::ZERO, Instant::ZERO);
        assert_eq!(p.interval(), Duration::from_nanos(1));
        assert!(p.handle_timeout(Instant::from_nanos(1)));
        assert_eq!(p.poll_timeout(), Some(Instant::from_nanos(2)));
        let mut p = Periodic::new(Duration::MAX, Instant::from_secs(1));
        assert_eq!(p.poll_timeout(), None, "first tick beyond Instant::MAX");
        assert!(!p.handle_timeout(Instant::MAX));
        let mut p = Periodic::new(SECOND, Instant::MAX - SECOND);
        assert!(p.handle_timeout(Instant::MAX));
        assert_eq!(p.poll_timeout(), None);
        assert!(!p.handle_timeout(Instant::MAX));
    }
}
