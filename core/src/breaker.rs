//! The circuit breaker of one dependency: the store's (issue 16) — once the store is known to be
//! down, new store calls stop waiting on it, and a single probe now and then finds out when it is
//! back — and each LLM provider's (issue 17) — a provider that keeps failing is skipped for a
//! cool-down, so replies go straight to its fallback ([`BreakerLimits::PROVIDER`]).
//!
//! [`CircuitBreaker`] is a sans-IO state machine in the style of quinn-proto: the driver asks
//! [`check`](CircuitBreaker::check) before a call, reports the call's
//! [`CallOutcome`] with [`record`](CircuitBreaker::record), and wakes at
//! [`poll_timeout`](CircuitBreaker::poll_timeout) to call
//! [`handle_timeout`](CircuitBreaker::handle_timeout). It never reads a clock: `now` comes in.
//!
//! ```text
//!            failures ≥ threshold                open_for elapsed
//!  Closed ─────────────────────────▶ Open ─────────────────────────▶ HalfOpen
//!    ▲                                ▲                                │
//!    │            probe failed        └────────────────────────────────┤
//!    └─────────────────────────────────────────────────────────────────┘
//!                              probe succeeded
//! ```

use std::time::Duration;

use crate::time::Instant;

/// Consecutive failed store calls after which the breaker opens.
pub const STORE_BREAKER_FAILURES: u32 = 3;

/// How long an open breaker refuses store calls before it lets one probe through; also how long a
/// probe may stay unanswered before another one is allowed.
pub const STORE_BREAKER_OPEN_FOR: Duration = Duration::from_secs(5);

/// Consecutive failed provider attempts (connect error, header timeout, 429, 5xx) after which a
/// provider is skipped (issue 17).
pub const PROVIDER_BREAKER_FAILURES: u32 = 5;

/// How long a provider is skipped before one reply may probe it again (issue 17).
pub const PROVIDER_BREAKER_OPEN_FOR: Duration = Duration::from_secs(30);

/// The breaker's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerLimits {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long the breaker stays open before probing.
    pub open_for: Duration,
}

impl BreakerLimits {
    /// The store's limits: [`STORE_BREAKER_FAILURES`], [`STORE_BREAKER_OPEN_FOR`].
    pub const STORE: BreakerLimits = BreakerLimits {
        failure_threshold: STORE_BREAKER_FAILURES,
        open_for: STORE_BREAKER_OPEN_FOR,
    };

    /// A provider's limits: [`PROVIDER_BREAKER_FAILURES`], [`PROVIDER_BREAKER_OPEN_FOR`].
    pub const PROVIDER: BreakerLimits = BreakerLimits {
        failure_threshold: PROVIDER_BREAKER_FAILURES,
        open_for: PROVIDER_BREAKER_OPEN_FOR,
    };
}

impl Default for BreakerLimits {
    fn default() -> Self {
        Self::STORE
    }
}

/// Where the breaker is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// The store is believed up: every call is allowed; `failures` counts the consecutive ones.
    Closed {
        /// Consecutive failures so far (below the threshold).
        failures: u32,
    },
    /// The store is believed down: calls are denied until `until`.
    Open {
        /// When probing may start.
        until: Instant,
    },
    /// One probe call may find out whether the store is back.
    HalfOpen {
        /// When the outstanding probe was allowed, if one is.
        probe_since: Option<Instant>,
    },
}

/// How a store call ended, as the driver reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The store answered (a "not found" answer is a success too).
    Success,
    /// The store did not answer in time or failed transiently.
    Failure,
}

/// The answer to "may I call the store now?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Permit {
    /// Call; report the outcome.
    Allow,
    /// Call as the probe; report the outcome (it decides whether the breaker closes).
    Probe,
    /// Do not call: use the fallback at once.
    Deny,
}

impl Permit {
    /// Whether the call may go ahead (as an ordinary call or as the probe).
    pub fn allowed(self) -> bool {
        !matches!(self, Permit::Deny)
    }
}

/// The circuit breaker of one dependency.
///
/// Inputs: [`check`](Self::check) (a call wants to start), [`record`](Self::record) (a call
/// ended), [`handle_timeout`](Self::handle_timeout) (the timer fired). Outputs: the returned
/// [`Permit`], [`state`](Self::state), and [`poll_timeout`](Self::poll_timeout), the instant at
/// which the driver should call `handle_timeout` if nothing else happened first (calling `check`
/// does the same work, so a driver without a timer loses nothing). A `now` earlier than one
/// already seen is taken as the latest seen.
///
/// Rules: closed, `failure_threshold` consecutive failures open it for `open_for`; open, every
/// call is denied and outcomes of calls started earlier are ignored (the store was already judged
/// down); when `open_for` has passed it is half-open and allows exactly one probe at a time (a
/// probe unanswered for `open_for` is given up and another allowed); half-open, a success closes
/// it and a failure opens it again for `open_for`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitBreaker {
    limits: BreakerLimits,
    state: BreakerState,
    clock: Instant,
}

impl CircuitBreaker {
    /// A closed breaker with `limits` (a zero threshold counts as 1).
    pub fn new(limits: BreakerLimits) -> Self {
        let limits = BreakerLimits { failure_threshold: limits.failure_threshold.max(1), ..limits };
        Self { limits, state: BreakerState::Closed { failures: 0 }, clock: Instant::ZERO }
    }

    /// The limits in force.
    pub fn limits(&self) -> BreakerLimits {
        self.limits
    }

    /// The current state (as of the latest input).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether the store is currently believed down (open, or half-open awaiting a probe).
    pub fn is_open(&self) -> bool {
        !matches!(self.state, BreakerState::Closed { .. })
    }

    /// A call wants to start at `now`.
    pub fn check(&mut self, now: Instant) -> Permit {
        let now = self.observe(now);
        self.handle_timeout(now);
        match &mut self.state {
            BreakerState::Closed { .. } => Permit::Allow,
            BreakerState::Open { .. } => Permit::Deny,
            BreakerState::HalfOpen { probe_since } => match probe_since {
                Some(_) => Permit::Deny,
                None => {
                    *probe_since = Some(now);
                    Permit::Probe
                }
            },
        }
    }

    /// A call ended at `now` with `outcome`.
    pub fn record(&mut self, outcome: CallOutcome, now: Instant) {
        let now = self.observe(now);
        self.handle_timeout(now);
        self.state = match (self.state, outcome) {
            (BreakerState::Closed { .. }, CallOutcome::Success) => {
                BreakerState::Closed { failures: 0 }
            }
            (BreakerState::Closed { failures }, CallOutcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.limits.failure_threshold {
                    self.open(now)
                } else {
                    BreakerState::Closed { failures }
                }
            }
            (open @ BreakerState::Open { .. }, _) => open,
            (BreakerState::HalfOpen { .. }, CallOutcome::Success) => {
                BreakerState::Closed { failures: 0 }
            }
            (BreakerState::HalfOpen { .. }, CallOutcome::Failure) => self.open(now),
        };
    }

    /// The timer input: moves open → half-open once `open_for` has passed, and gives up a probe
    /// unanswered for `open_for`. Harmless at any other time.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.observe(now);
        match self.state {
            BreakerState::Open { until } if now >= until => {
                self.state = BreakerState::HalfOpen { probe_since: None };
            }
            BreakerState::HalfOpen { probe_since: Some(since) }
                if now >= since + self.limits.open_for =>
            {
                self.state = BreakerState::HalfOpen { probe_since: None };
            }
            _ => {}
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) has work to do: the end of the open period,
    /// or the moment an outstanding probe is given up; `None` when closed or ready to probe.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            BreakerState::Closed { .. } | BreakerState::HalfOpen { probe_since: None } => None,
            BreakerState::Open { until } => Some(until),
            BreakerState::HalfOpen { probe_since: Some(since) } => {
                Some(since + self.limits.open_for)
            }
        }
    }

    fn open(&self, now: Instant) -> BreakerState {
        BreakerState::Open { until: now + self.limits.open_for }
    }

    fn observe(&mut self, now: Instant) -> Instant {
        self.clock = self.clock.max(now);
        self.clock
    }
}

impl Default for CircuitBreaker {
    fn default() -> Self {
        Self::new(BreakerLimits::default())
    }
}
