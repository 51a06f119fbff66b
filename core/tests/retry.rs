//! Seed properties 6, 7 and 8: transient errors are retried up to the limit, the backoff grows
//! exponentially up to its cap, and permanent errors fail at once.

use std::time::Duration;

use chatbox_core::retry::{ErrorClass, GiveUpReason, Jitter, RetryDecision, RetryPolicy};
use chatbox_core::Instant;
use proptest::prelude::*;

fn policy() -> impl Strategy<Value = RetryPolicy> {
    (1u32..12, 1u64..2_000, 10u32..40, 1u64..60_000, prop::option::of(any::<u64>())).prop_map(
        |(max_attempts, initial_ms, mult_tenths, cap_ms, seed)| RetryPolicy {
            max_attempts,
            initial_delay: Duration::from_millis(initial_ms),
            multiplier: f64::from(mult_tenths) / 10.0,
            max_delay: Duration::from_millis(cap_ms),
            jitter: seed.map_or(Jitter::None, Jitter::Seeded),
        },
    )
}

/// Runs an operation that fails transiently `failures` times (or forever) and returns the
/// number of attempts made and the decisions seen.
fn drive(p: &RetryPolicy, fail_times: u32) -> (u32, Vec<RetryDecision>) {
    let mut retry = p.start(None);
    let mut now = Instant::ZERO;
    let mut attempts = 0;
    let mut seen = Vec::new();
    loop {
        attempts += 1;
        if attempts > fail_times {
            return (attempts, seen);
        }
        let d = retry.on_failure(ErrorClass::Transient, now);
        seen.push(d);
        match d {
            RetryDecision::RetryAfter { delay, attempt } => {
                assert_eq!(attempt, attempts + 1);
                now += delay;
            }
            RetryDecision::GiveUp(_) => return (attempts, seen),
        }
    }
}

proptest! {
    #[test]
    fn prop_06_transient_errors_are_retried(p in policy(), fail_times in 0u32..20) {
        let (attempts, seen) = drive(&p, fail_times);
        let max = p.max_attempts.max(1);
        // An operation that fails fewer times than allowed eventually succeeds ...
        if fail_times < max {
            prop_assert_eq!(attempts, fail_times + 1);
            prop_assert!(seen.iter().all(|d| matches!(d, RetryDecision::RetryAfter { .. })), "every early failure is retried");
        } else {
            // ... and one that keeps failing is tried exactly max_attempts times.
            prop_assert_eq!(attempts, max);
            prop_assert_eq!(
                seen.last().copied(),
                Some(RetryDecision::GiveUp(GiveUpReason::Exhausted))
            );
        }
    }

    #[test]
    fn prop_07_retry_backoff_grows(p in policy()) {
        let p = RetryPolicy { max_attempts: 16, ..p };
        let mut previous = Duration::ZERO;
        for attempt in 1..16 {
            let base = p.base_delay(attempt);
            prop_assert!(base >= previous, "delays never shrink");
            prop_assert!(base <= p.max_delay.max(Duration::ZERO), "capped");
            if previous > Duration::ZERO && previous < p.max_delay && p.multiplier >= 1.5 {
                // Strict exponential growth until the cap (allowing nanosecond rounding).
                let grown = previous.as_nanos() as f64 * p.multiplier;
                let want = grown.min(p.max_delay.as_nanos() as f64);
                prop_assert!((base.as_nanos() as f64 - want).abs() <= p.multiplier + 1.0,
                    "attempt {}: {:?} vs {}", attempt, base, want);
            }
            previous = base;
        }
        // Jittered delays stay within [base/2, base] of the schedule.
        let (_, seen) = drive(&p, 16);
        for (i, d) in seen.iter().enumerate() {
            if let RetryDecision::RetryAfter { delay, .. } = d {
                let base = p.base_delay(i as u32 + 1);
                match p.jitter {
                    Jitter::None => prop_assert_eq!(*delay, base),
                    Jitter::Seeded(_) => prop_assert!(*delay >= base / 2 && *delay <= base),
                }
            }
        }
    }

    #[test]
    fn prop_08_permanent_errors_fail_immediately(p in policy(), transient_first in 0u32..3) {
        let mut retry = p.start(None);
        let mut now = Instant::ZERO;
        for _ in 0..transient_first.min(p.max_attempts.saturating_sub(1)) {
            match retry.on_failure(ErrorClass::Transient, now) {
                RetryDecision::RetryAfter { delay, .. } => now += delay,
                RetryDecision::GiveUp(r) => prop_assert!(false, "gave up early: {:?}", r),
            }
        }
        let made = retry.attempts_made();
        prop_assert_eq!(
            retry.on_failure(ErrorClass::Permanent, now),
            RetryDecision::GiveUp(GiveUpReason::Permanent)
        );
        prop_assert_eq!(retry.attempts_made(), made + 1);
    }
}
