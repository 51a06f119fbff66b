//! Retry with exponential backoff (seed fix #9, properties 6, 7 and 8).
//!
//! Two pieces: [`RetryPolicy`], the schedule (attempts, initial delay, multiplier, cap, optional
//! seeded jitter), and [`Retry`], the state of one operation's attempts. Adapters classify each
//! failure into [`ErrorClass`] from the driver's typed error kinds (never from message text) and
//! ask `Retry` what to do next; sleeping is the caller's job, so the schedule runs the same under
//! the real clock, madsim, and proptests that move time by hand.

use std::time::Duration;

use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::time::Instant;

/// Whether a failure may succeed if the same operation is tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Network errors, timeouts, server selection, not-primary, retryable-write labels: try again.
    Transient,
    /// Validation, duplicate key, authentication, bad query: trying again cannot help.
    Permanent,
}

/// How much randomness to add to each delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Jitter {
    /// Exact delays: `initial × multiplier^(n-1)`, capped.
    None,
    /// "Equal jitter": each delay is drawn uniformly from `[d/2, d]` by a generator seeded with
    /// the given value, so runs replay exactly and many clients do not retry in lock-step.
    Seeded(u64),
}

/// The backoff schedule. Defaults (PROTOCOL.md §8.5): 3 attempts, 100 ms, ×2, 2 s cap, no jitter.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Total attempts including the first (at least 1).
    pub max_attempts: u32,
    /// Delay before the second attempt.
    pub initial_delay: Duration,
    /// Growth factor between consecutive delays (at least 1.0).
    pub multiplier: f64,
    /// No delay exceeds this.
    pub max_delay: Duration,
    /// Optional seeded jitter.
    pub jitter: Jitter,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self::STORE_DEFAULT
    }
}

impl RetryPolicy {
    /// The store's schedule by default (PROTOCOL.md §8.5; `STORE_RETRY_ATTEMPTS`,
    /// `STORE_RETRY_DELAY`, `STORE_RETRY_MAX_DELAY`): 3 attempts, 100 ms, ×2, 2 s cap.
    pub const STORE_DEFAULT: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_millis(100),
        multiplier: 2.0,
        max_delay: Duration::from_secs(2),
        jitter: Jitter::None,
    };

    /// The provider schedule before the first chunk (PROTOCOL.md §7.2): 3 attempts, 1 s, ×2,
    /// 30 s cap, all within the reply's first-chunk deadline.
    pub const PROVIDER: RetryPolicy = RetryPolicy {
        max_attempts: 3,
        initial_delay: Duration::from_secs(1),
        multiplier: 2.0,
        max_delay: Duration::from_secs(30),
        jitter: Jitter::None,
    };

    /// The fleet bus's reconnect schedule (issue 14): 100 ms, ×2, capped at 5 s, never giving
    /// up (an instance serves its own sockets meanwhile).
    pub const BUS_RECONNECT: RetryPolicy = RetryPolicy {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_millis(100),
        multiplier: 2.0,
        max_delay: Duration::from_secs(5),
        jitter: Jitter::None,
    };

    /// How often a message waiting for its user's turn held by another instance asks Redis
    /// again: 5 ms, ×2, capped at 50 ms (the turn is usually a reply away).
    pub const FLEET_TURN_POLL: RetryPolicy = RetryPolicy {
        max_attempts: u32::MAX,
        initial_delay: Duration::from_millis(5),
        multiplier: 2.0,
        max_delay: Duration::from_millis(50),
        jitter: Jitter::None,
    };

    /// The un-jittered delay after failed attempt `attempt` (1-based): `initial × mult^(attempt-1)`,
    /// capped at `max_delay`. Non-decreasing in `attempt`.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let multiplier = if self.multiplier.is_finite() { self.multiplier.max(1.0) } else { 1.0 };
        let exponent = attempt.saturating_sub(1).min(1024) as i32;
        let factor = multiplier.powi(exponent);
        let cap = self.max_delay.max(self.initial_delay.min(self.max_delay));
        let nanos = self.initial_delay.as_nanos() as f64 * factor;
        if !nanos.is_finite() || nanos >= cap.as_nanos() as f64 {
            cap
        } else {
            Duration::from_nanos(nanos as u64).min(cap)
        }
    }

    /// Starts the attempt sequence of one operation. `deadline` abandons retries whose next
    /// attempt would start after it (the operation's own time budget).
    pub fn start(&self, deadline: Option<Instant>) -> Retry {
        let rng = match self.jitter {
            Jitter::None => None,
            Jitter::Seeded(seed) => Some(ChaCha8Rng::seed_from_u64(seed)),
        };
        Retry { policy: *self, failures: 0, deadline, rng }
    }
}

/// What to do after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum RetryDecision {
    /// Sleep for `delay`, then make attempt number `attempt` (1-based).
    RetryAfter {
        /// How long to wait before the next attempt.
        delay: Duration,
        /// The number of the attempt about to be made.
        attempt: u32,
    },
    /// Stop and report the last error.
    GiveUp(GiveUpReason),
}

/// Why an operation stopped retrying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUpReason {
    /// The failure was permanent: no retry was attempted.
    Permanent,
    /// Every allowed attempt failed.
    Exhausted,
    /// The next attempt would start after the operation's deadline.
    DeadlinePassed,
}

/// The attempt state of one operation.
///
/// Drive it like this: make an attempt; on failure call [`Retry::on_failure`] with the failure's
/// class and the current time; sleep for the returned delay and try again, or stop on `GiveUp`.
/// `attempts_made()` counts failures reported so far. Invariants: at most `max_attempts`
/// attempts; a permanent failure never yields `RetryAfter`; un-jittered delays never shrink.
#[derive(Debug, Clone)]
pub struct Retry {
    policy: RetryPolicy,
    failures: u32,
    deadline: Option<Instant>,
    rng: Option<ChaCha8Rng>,
}

impl Retry {
    /// Reports that the latest attempt failed with an error of class `class` at `now`.
    pub fn on_failure(&mut self, class: ErrorClass, now: Instant) -> RetryDecision {
        self.failures = self.failures.saturating_add(1);
        if class == ErrorClass::Permanent {
            return RetryDecision::GiveUp(GiveUpReason::Permanent);
        }
        if self.failures >= self.policy.max_attempts.max(1) {
            return RetryDecision::GiveUp(GiveUpReason::Exhausted);
        }
        let base = self.policy.base_delay(self.failures);
        let delay = match self.rng.as_mut() {
            None => base,
            Some(rng) => {
                let half = base / 2;
                let spread = base.saturating_sub(half).as_nanos() as u64;
                let extra = if spread == 0 { 0 } else { rng.next_u64() % (spread + 1) };
                half + Duration::from_nanos(extra)
            }
        };
        if let Some(deadline) = self.deadline {
            if now.saturating_add(delay) > deadline {
                return RetryDecision::GiveUp(GiveUpReason::DeadlinePassed);
            }
        }
        RetryDecision::RetryAfter { delay, attempt: self.failures + 1 }
    }

    /// Failed attempts reported so far.
    pub fn attempts_made(&self) -> u32 {
        self.failures
    }
}

/// The wait before the next attempt when the server answered with `Retry-After: header`
/// (RFC 9110 §10.2.3, delta-seconds form): the server's hint when it parses, else `scheduled`.
/// `None` when the hint exceeds `cap` (waiting that long is not worth it: give up). The HTTP-date
/// form is not read (core has no clock) and falls back to the schedule.
pub fn retry_after_delay(
    header: Option<&str>,
    scheduled: Duration,
    cap: Duration,
) -> Option<Duration> {
    let hint = header.and_then(|text| text.trim().parse::<u64>().ok()).map(Duration::from_secs);
    match hint {
        Some(wait) if wait > cap => None,
        Some(wait) => Some(wait),
        None => Some(scheduled),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_schedule_is_100ms_then_200ms_then_gives_up() {
        let mut r = RetryPolicy::default().start(None);
        let ms = Duration::from_millis;
        assert_eq!(
            r.on_failure(ErrorClass::Transient, Instant::ZERO),
            RetryDecision::RetryAfter { delay: ms(100), attempt: 2 }
        );
        assert_eq!(
            r.on_failure(ErrorClass::Transient, Instant::ZERO),
            RetryDecision::RetryAfter { delay: ms(200), attempt: 3 }
        );
        assert_eq!(
            r.on_failure(ErrorClass::Transient, Instant::ZERO),
            RetryDecision::GiveUp(GiveUpReason::Exhausted)
        );
    }

    #[test]
    fn retry_after_hint_wins_when_it_parses_and_fits_the_cap() {
        let s = Duration::from_secs;
        assert_eq!(retry_after_delay(Some(" 3 "), s(1), s(30)), Some(s(3)));
        assert_eq!(retry_after_delay(Some("0"), s(1), s(30)), Some(s(0)));
        assert_eq!(retry_after_delay(Some("31"), s(1), s(30)), None);
        assert_eq!(
            retry_after_delay(Some("Wed, 21 Oct 2026 07:28:00 GMT"), s(1), s(30)),
            Some(s(1))
        );
        assert_eq!(retry_after_delay(None, s(2), s(30)), Some(s(2)));
    }

    proptest::proptest! {
        #[test]
        fn retry_after_never_exceeds_the_cap_or_invents_a_wait(
            header in proptest::option::of(".{0,12}"),
            scheduled_ms in 0u64..60_000,
            cap_ms in 0u64..60_000,
        ) {
            let scheduled = Duration::from_millis(scheduled_ms);
            let cap = Duration::from_millis(cap_ms);
            match retry_after_delay(header.as_deref(), scheduled, cap) {
                Some(wait) if wait != scheduled => proptest::prop_assert!(wait <= cap),
                Some(_) => {}
                None => proptest::prop_assert!(header.is_some()),
            }
        }
    }

    #[test]
    fn delays_are_capped() {
        let p = RetryPolicy { max_attempts: 10, ..RetryPolicy::default() };
        assert_eq!(p.base_delay(5), Duration::from_millis(1600));
        assert_eq!(p.base_delay(6), Duration::from_secs(2));
        assert_eq!(p.base_delay(60), Duration::from_secs(2));
    }

    #[test]
    fn permanent_errors_stop_at_once() {
        let mut r = RetryPolicy::default().start(None);
        assert_eq!(
            r.on_failure(ErrorClass::Permanent, Instant::ZERO),
            RetryDecision::GiveUp(GiveUpReason::Permanent)
        );
    }

    #[test]
    fn deadline_abandons_retries() {
        let deadline = Instant::from_millis(150);
        let mut r = RetryPolicy::default().start(Some(deadline));
        assert!(matches!(
            r.on_failure(ErrorClass::Transient, Instant::from_millis(10)),
            RetryDecision::RetryAfter { .. }
        ));
        assert_eq!(
            r.on_failure(ErrorClass::Transient, Instant::from_millis(110)),
            RetryDecision::GiveUp(GiveUpReason::DeadlinePassed)
        );
    }

    #[test]
    fn seeded_jitter_replays_and_stays_in_range() {
        let p = RetryPolicy { max_attempts: 8, jitter: Jitter::Seeded(7), ..Default::default() };
        let run = || {
            let mut r = p.start(None);
            (1..8)
                .map(|_| match r.on_failure(ErrorClass::Transient, Instant::ZERO) {
                    RetryDecision::RetryAfter { delay, .. } => delay,
                    RetryDecision::GiveUp(_) => Duration::MAX,
                })
                .collect::<Vec<_>>()
        };
        let a = run();
        assert_eq!(a, run());
        for (i, d) in a.iter().enumerate() {
            let base = p.base_delay(i as u32 + 1);
            assert!(*d >= base / 2 && *d <= base, "attempt {i}: {d:?} vs {base:?}");
        }
    }
}
