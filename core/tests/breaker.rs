//! Properties of the store circuit breaker (issue 16), driven with random sequences of calls,
//! outcomes and moved time, checked against a naive reference of the documented rules.

use std::time::Duration;

use chatbox_core::breaker::{
    BreakerLimits, BreakerState, CallOutcome, CircuitBreaker, Permit, STORE_BREAKER_FAILURES,
    STORE_BREAKER_OPEN_FOR,
};
use chatbox_core::time::Instant;
use proptest::prelude::*;

/// One input to the breaker.
#[derive(Debug, Clone, Copy)]
enum Step {
    Advance(Duration),
    Check,
    Record(CallOutcome),
    Timer,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0u64..=3_000).prop_map(|ms| Step::Advance(Duration::from_millis(ms))),
        Just(Step::Check),
        Just(Step::Record(CallOutcome::Success)),
        Just(Step::Record(CallOutcome::Failure)),
        Just(Step::Record(CallOutcome::Failure)),
        Just(Step::Timer),
    ]
}

fn limits() -> impl Strategy<Value = BreakerLimits> {
    (1u32..=5, 1u64..=5_000).prop_map(|(failure_threshold, ms)| BreakerLimits {
        failure_threshold,
        open_for: Duration::from_millis(ms),
    })
}

/// The rules written plainly: the state a reference keeps, and what `check` must answer.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reference {
    Closed(u32),
    Open(Instant),
    HalfOpen(Option<Instant>),
}

impl Reference {
    fn expire(&mut self, now: Instant, open_for: Duration) {
        match *self {
            Reference::Open(until) if now >= until => *self = Reference::HalfOpen(None),
            Reference::HalfOpen(Some(since)) if now >= since + open_for => {
                *self = Reference::HalfOpen(None);
            }
            _ => {}
        }
    }

    fn as_state(self) -> BreakerState {
        match self {
            Reference::Closed(failures) => BreakerState::Closed { failures },
            Reference::Open(until) => BreakerState::Open { until },
            Reference::HalfOpen(probe_since) => BreakerState::HalfOpen { probe_since },
        }
    }
}

proptest! {
    /// Every sequence of inputs gives the states and permits of the documented rules; the
    /// poll timeout is exactly the next instant at which the timer changes something.
    #[test]
    fn prop_breaker_follows_its_rules(
        limits in limits(),
        steps in proptest::collection::vec(step(), 1..200),
    ) {
        let mut breaker = CircuitBreaker::new(limits);
        let mut reference = Reference::Closed(0);
        let mut now = Instant::ZERO;
        for step in steps {
            match step {
                Step::Advance(by) => now += by,
                Step::Check => {
                    reference.expire(now, limits.open_for);
                    let expected = match reference {
                        Reference::Closed(_) => Permit::Allow,
                        Reference::Open(_) | Reference::HalfOpen(Some(_)) => Permit::Deny,
                        Reference::HalfOpen(None) => {
                            reference = Reference::HalfOpen(Some(now));
                            Permit::Probe
                        }
                    };
                    prop_assert_eq!(breaker.check(now), expected);
                }
                Step::Record(outcome) => {
                    reference.expire(now, limits.open_for);
                    reference = match (reference, outcome) {
                        (Reference::Closed(_), CallOutcome::Success)
                        | (Reference::HalfOpen(_), CallOutcome::Success) => Reference::Closed(0),
                        (Reference::Closed(n), CallOutcome::Failure)
                            if n + 1 < limits.failure_threshold => Reference::Closed(n + 1),
                        (Reference::Closed(_), CallOutcome::Failure)
                        | (Reference::HalfOpen(_), CallOutcome::Failure) => {
                            Reference::Open(now + limits.open_for)
                        }
                        (open @ Reference::Open(_), _) => open,
                    };
                    breaker.record(outcome, now);
                }
                Step::Timer => {
                    reference.expire(now, limits.open_for);
                    breaker.handle_timeout(now);
                }
            }
            prop_assert_eq!(breaker.state(), reference.as_state());
            let expected_timeout = match reference {
                Reference::Open(until) => Some(until),
                Reference::HalfOpen(Some(since)) => Some(since + limits.open_for),
                _ => None,
            };
            prop_assert_eq!(breaker.poll_timeout(), expected_timeout);
            if !matches!(step, Step::Advance(_)) {
                if let Some(at) = breaker.poll_timeout() {
                    prop_assert!(at > now, "a due timeout is handled by every input");
                }
            }
        }
    }

    /// Closed, any run of fewer than `threshold` consecutive failures (successes between them)
    /// never denies a call.
    #[test]
    fn prop_closed_never_denies_below_the_threshold(
        threshold in 2u32..=6,
        runs in proptest::collection::vec(0u32..6, 1..20),
    ) {
        let limits = BreakerLimits { failure_threshold: threshold, open_for: Duration::from_secs(1) };
        let mut breaker = CircuitBreaker::new(limits);
        let now = Instant::ZERO;
        for run in runs {
            for _ in 0..run.min(threshold - 1) {
                prop_assert_eq!(breaker.check(now), Permit::Allow);
                breaker.record(CallOutcome::Failure, now);
            }
            prop_assert_eq!(breaker.check(now), Permit::Allow);
            breaker.record(CallOutcome::Success, now);
        }
        prop_assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
    }

    /// Open, every call is denied until `open_for` has passed; then exactly one probe goes
    /// through however many calls ask, and its outcome alone decides.
    #[test]
    fn prop_open_denies_then_allows_one_probe(
        open_ms in 1u64..=10_000,
        asks in 1usize..20,
        probe_ok in any::<bool>(),
    ) {
        let limits = BreakerLimits { failure_threshold: 1, open_for: Duration::from_millis(open_ms) };
        let mut breaker = CircuitBreaker::new(limits);
        let t0 = Instant::ZERO + Duration::from_secs(1);
        breaker.record(CallOutcome::Failure, t0);
        prop_assert!(breaker.is_open());
        let just_before = t0 + limits.open_for - Duration::from_nanos(1);
        for _ in 0..asks {
            prop_assert_eq!(breaker.check(just_before), Permit::Deny);
        }
        let at = t0 + limits.open_for;
        let permits: Vec<Permit> = (0..asks).map(|_| breaker.check(at)).collect();
        prop_assert_eq!(permits.iter().filter(|p| p.allowed()).count(), 1);
        prop_assert_eq!(permits[0], Permit::Probe);
        let outcome = if probe_ok { CallOutcome::Success } else { CallOutcome::Failure };
        breaker.record(outcome, at);
        if probe_ok {
            prop_assert_eq!(breaker.check(at), Permit::Allow);
        } else {
            prop_assert_eq!(breaker.check(at), Permit::Deny);
            prop_assert_eq!(breaker.poll_timeout(), Some(at + limits.open_for));
        }
    }
}

#[test]
fn defaults_are_the_named_constants() {
    let breaker = CircuitBreaker::default();
    assert_eq!(
        breaker.limits(),
        BreakerLimits {
            failure_threshold: STORE_BREAKER_FAILURES,
            open_for: STORE_BREAKER_OPEN_FOR
        }
    );
    assert_eq!(breaker.state(), BreakerState::Closed { failures: 0 });
    assert_eq!(breaker.poll_timeout(), None);
}

#[test]
fn a_lost_probe_is_given_up_after_open_for() {
    let limits = BreakerLimits { failure_threshold: 1, open_for: Duration::from_secs(2) };
    let mut breaker = CircuitBreaker::new(limits);
    let t0 = Instant::ZERO;
    breaker.record(CallOutcome::Failure, t0);
    let probing = t0 + Duration::from_secs(2);
    assert_eq!(breaker.check(probing), Permit::Probe);
    assert_eq!(breaker.check(probing + Duration::from_secs(1)), Permit::Deny);
    assert_eq!(breaker.poll_timeout(), Some(probing + Duration::from_secs(2)));
    assert_eq!(breaker.check(probing + Duration::from_secs(2)), Permit::Probe);
}

#[test]
fn a_zero_threshold_counts_as_one() {
    let mut breaker = CircuitBreaker::new(BreakerLimits {
        failure_threshold: 0,
        open_for: Duration::from_secs(1),
    });
    assert_eq!(breaker.check(Instant::ZERO), Permit::Allow);
    breaker.record(CallOutcome::Failure, Instant::ZERO);
    assert_eq!(breaker.check(Instant::ZERO), Permit::Deny);
}
