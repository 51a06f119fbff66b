//! Properties of provider fallback (issue 17): the chain of any valid configuration, the walk
//! down it past open breakers, and the provider breaker under random outcomes.

use std::time::Duration;

use chatbox_core::breaker::{BreakerLimits, CallOutcome, CircuitBreaker, Permit};
use chatbox_core::config::ProviderConfig;
use chatbox_core::fallback::{chain, FallbackPlan};
use chatbox_core::time::Instant;
use proptest::prelude::*;

/// Providers `p0..pn` whose fallbacks only point forward (so the graph has no cycle).
fn acyclic() -> impl Strategy<Value = Vec<ProviderConfig>> {
    (1usize..8).prop_flat_map(|n| {
        proptest::collection::vec(proptest::collection::vec(0usize..8, 0..4), n).prop_map(
            move |lists| {
                lists
                    .into_iter()
                    .enumerate()
                    .map(|(i, targets)| {
                        let mut p = ProviderConfig::echo(format!("p{i}"), format!("P{i}"));
                        p.fallback = targets
                            .into_iter()
                            .filter(|&t| t > i && t < n)
                            .map(|t| format!("p{t}"))
                            .collect();
                        p
                    })
                    .collect()
            },
        )
    })
}

proptest! {
    /// A chain starts at its model, holds each provider once, and holds exactly the providers
    /// reachable through fallback lists.
    #[test]
    fn prop_chain_is_the_reachable_set_once_each(providers in acyclic(), start in 0usize..8) {
        let start = start % providers.len();
        let order = chain(&providers, start);
        prop_assert_eq!(order.first().copied(), Some(start));
        let mut seen = order.clone();
        seen.sort_unstable();
        seen.dedup();
        prop_assert_eq!(seen.len(), order.len(), "no provider twice");
        let mut reachable = vec![start];
        let mut i = 0;
        while i < reachable.len() {
            for id in &providers[reachable[i]].fallback {
                let next = providers.iter().position(|p| &p.id == id).unwrap();
                if !reachable.contains(&next) {
                    reachable.push(next);
                }
            }
            i += 1;
        }
        reachable.sort_unstable();
        prop_assert_eq!(reachable, seen);
    }

    /// Whatever the breakers answer, the plan attempts positions in chain order, each at most
    /// once, at least one in all, and forces the model only when everything was refused.
    #[test]
    fn prop_plan_attempts_in_order_at_least_once(
        permits in proptest::collection::vec(any::<bool>(), 1..8),
    ) {
        let mut plan = FallbackPlan::new(permits.len());
        let mut attempted = Vec::new();
        let mut asked = Vec::new();
        while let Some(attempt) = plan.next(|i| { asked.push(i); permits[i] }) {
            if attempt.forced {
                prop_assert!(permits.iter().all(|p| !p));
                prop_assert_eq!(attempt.candidate, 0);
            } else {
                prop_assert!(permits[attempt.candidate]);
            }
            attempted.push(attempt.candidate);
        }
        prop_assert!(!attempted.is_empty());
        let allowed: Vec<usize> = (0..permits.len()).filter(|&i| permits[i]).collect();
        if allowed.is_empty() {
            prop_assert_eq!(attempted, vec![0]);
        } else {
            prop_assert_eq!(attempted, allowed);
        }
        let expected_asks: Vec<usize> = (0..permits.len()).collect();
        prop_assert_eq!(asked, expected_asks, "each breaker asked once, in order");
    }

    /// With the provider limits, a provider is skipped only after
    /// `PROVIDER_BREAKER_FAILURES` consecutive failures, and never for longer than
    /// `PROVIDER_BREAKER_OPEN_FOR` without a probe being allowed.
    #[test]
    fn prop_provider_breaker_skips_only_after_consecutive_failures(
        outcomes in proptest::collection::vec(any::<bool>(), 1..60),
        gap_ms in 0u64..20_000,
    ) {
        let limits = BreakerLimits::PROVIDER;
        let mut breaker = CircuitBreaker::new(limits);
        let mut now = Instant::ZERO;
        let mut consecutive = 0u32;
        let mut last_allowed = now;
        for ok in outcomes {
            now += Duration::from_millis(gap_ms);
            let permit = breaker.check(now);
            if consecutive < limits.failure_threshold {
                prop_assert_ne!(permit, Permit::Deny, "closed below the threshold");
            }
            if permit == Permit::Deny {
                prop_assert!(now < last_allowed + limits.open_for + limits.open_for);
                continue;
            }
            last_allowed = now;
            let outcome = if ok { CallOutcome::Success } else { CallOutcome::Failure };
            breaker.record(outcome, now);
            consecutive = if ok { 0 } else { consecutive + 1 };
            if permit == Permit::Probe && !ok {
                consecutive = limits.failure_threshold;
            }
        }
    }
}
