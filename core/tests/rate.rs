//! Properties of `chatbox_core::rate` and `chatbox_core::timer` (seed properties 9, 10, 11, 19,
//! 20), a model-based test against naive references, and the bounded-memory check.
//!
//! Time is a plain `u64` of nanoseconds that each test moves by hand; the limiter's guarantee is
//! stated for its own clock (the running maximum of the `now` values it was given), so the
//! checks log allowed events at that clock.

use std::collections::HashMap;
use std::time::Duration;

use chatbox_core::rate::{Decision, LimiterStats, RateLimit, RateLimiter};
use chatbox_core::time::{Instant, MINUTE};
use chatbox_core::timer::Periodic;
use proptest::prelude::*;
use proptest_state_machine::{prop_state_machine, ReferenceStateMachine, StateMachineTest};

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn ns(t: u64) -> Instant {
    Instant::from_nanos(t)
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

/// The most events of a sorted log inside any closed interval `[s, s + w]` (brute force: an
/// interval holding the most events can start at an event).
fn most_in_any_window(sorted: &[u64], w: u64) -> usize {
    (0..sorted.len())
        .map(|i| sorted[i..].iter().take_while(|&&e| e <= sorted[i].saturating_add(w)).count())
        .max()
        .unwrap_or(0)
}

/// Exact sliding log: events in `[t − w, t]`.
fn log_count(events: &[u64], t: u64, w: u64) -> usize {
    events.iter().filter(|&&e| e >= t.saturating_sub(w) && e <= t).count()
}

/// Exact sliding log: the earliest `t' ≥ t` at which fewer than `limit` events lie in
/// `[t' − w, t']`, assuming no new events (`events` all at or before `t`).
fn log_release(events: &[u64], t: u64, w: u64, limit: u32) -> u64 {
    let mut inside: Vec<u64> =
        events.iter().copied().filter(|&e| e >= t.saturating_sub(w) && e <= t).collect();
    inside.sort_unstable();
    let limit = limit as usize;
    if inside.len() < limit {
        return t;
    }
    // The (len − limit + 1)-th oldest event must leave: it leaves after `e + w`.
    let must_leave = inside[inside.len() - limit];
    (must_leave.saturating_add(w).saturating_add(1)).max(t)
}

/// One step of traffic: which key, and how the driver's clock moves before the attempt.
#[derive(Clone, Copy, Debug)]
struct Step {
    key: u8,
    /// Nanoseconds to move the driver's clock; negative moves it back.
    dt: i64,
}

fn move_clock(now: u64, dt: i64) -> u64 {
    if dt >= 0 {
        now.saturating_add(dt.unsigned_abs())
    } else {
        now.saturating_sub(dt.unsigned_abs())
    }
}

/// Clock moves scaled to a window of `w` ns: mostly small or zero (bursts, bucket edges), some
/// over a whole window, a few backwards.
fn dt_strategy(w: u64) -> impl Strategy<Value = i64> {
    let w = i64::try_from(w.max(4)).unwrap_or(i64::MAX / 4);
    prop_oneof![
        3 => Just(0i64),
        5 => 1..=w / 4 + 1,
        2 => 0..=w * 2,
        1 => -(w / 2)..=0,
    ]
}

fn steps_strategy(w: u64, keys: u8, len: usize) -> impl Strategy<Value = Vec<Step>> {
    prop::collection::vec((0..keys, dt_strategy(w)).prop_map(|(key, dt)| Step { key, dt }), 1..len)
}

/// A limit with a window of 0..=`max_w` ns (small windows exercise rounding and bucket edges).
fn small_limit(max_w: u64) -> impl Strategy<Value = (RateLimit, u32)> {
    (1u32..8, 0..=max_w, 1u32..30)
        .prop_map(|(n, w, k)| (RateLimit::new(n, Duration::from_nanos(w)), k))
}

/// Runs `steps` through `limiter`; returns each key's allowed events at the limiter's clock.
fn run(limiter: &mut RateLimiter<u8>, steps: &[Step], start: u64) -> HashMap<u8, Vec<u64>> {
    let mut now = start;
    let mut clock = 0; // the limiter's clock: the largest `now` it has been given
    let mut log: HashMap<u8, Vec<u64>> = HashMap::new();
    for s in steps {
        now = move_clock(now, s.dt);
        clock = clock.max(now);
        if limiter.check(&s.key, ns(now)).is_allowed() {
            log.entry(s.key).or_default().push(clock);
        }
    }
    log
}

// ---------------------------------------------------------------------------------------------
// Seed properties
// ---------------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Property 9: after `cleanup(now)` no key remains whose events are all older than the window
    /// plus one bucket, and every key with an event in the true window stays. In between, the
    /// bucket rule decides exactly.
    #[test]
    fn prop_09_cleanup_removes_old_events(
        (limit, k) in small_limit(200),
        steps in steps_strategy(200, 8, 120),
        cleanups in prop::collection::vec(any::<bool>(), 120),
        late in 0u64..600,
    ) {
        let mut l = RateLimiter::with_buckets(limit, 64, k);
        let w = nanos(limit.window);
        let g = nanos(l.bucket_width());
        let mut now = 1_000;
        let mut clock = 0;
        let mut log: HashMap<u8, Vec<u64>> = HashMap::new();
        let check = |l: &RateLimiter<u8>, log: &HashMap<u8, Vec<u64>>, t: u64| {
            for (key, events) in log {
                let newest = events.iter().copied().max().unwrap_or(0);
                let released = (newest / g + 1) * g + w;
                if newest.saturating_add(w).saturating_add(g) <= t {
                    prop_assert!(!l.contains(key), "key {key} kept after its events expired");
                }
                if newest + w >= t {
                    prop_assert!(l.contains(key), "key {key} with a live event dropped");
                }
                prop_assert_eq!(l.contains(key), released > t);
            }
            Ok(())
        };
        for (i, s) in steps.iter().enumerate() {
            now = move_clock(now, s.dt);
            clock = clock.max(now);
            if l.check(&s.key, ns(now)).is_allowed() {
                log.entry(s.key).or_default().push(clock);
            }
            if cleanups[i % cleanups.len()] {
                let before = l.len();
                let removed = l.cleanup(ns(now));
                prop_assert_eq!(before - removed, l.len());
                check(&l, &log, clock)?;
            }
        }
        let end = clock + late;
        let _ = l.cleanup(ns(end));
        check(&l, &log, end)?;
        let _ = l.cleanup(ns(end + w + g));
        prop_assert!(l.is_empty());
    }

    /// Property 10: a `Periodic` driven by random time steps fires exactly when the step crossed
    /// at least one interval boundary since the previous call — never more than once per call —
    /// and keeps its grid.
    #[test]
    fn prop_10_cleanup_runs_periodically(
        interval in 1u64..1_000,
        start in 0u64..10_000,
        moves in prop::collection::vec(prop_oneof![
            3 => Just(None),                  // call exactly at poll_timeout
            4 => (0i64..3_000).prop_map(Some), // call after a random step
            1 => (-50i64..0).prop_map(Some),   // a small step backwards
        ], 1..200),
    ) {
        let mut p = Periodic::new(Duration::from_nanos(interval), ns(start));
        let boundaries = |t: u64| (t.saturating_sub(start)) / interval; // ticks due by t
        let mut latest = start;
        let mut now = start;
        let mut fired = 0u64;
        for m in moves {
            now = match m {
                None => p.poll_timeout().map_or(now, Instant::as_nanos),
                Some(dt) => move_clock(now, dt),
            };
            let expected = boundaries(now) > boundaries(latest);
            let at_poll = p.poll_timeout() == Some(ns(now));
            let fire = p.handle_timeout(ns(now));
            prop_assert_eq!(fire, expected, "at {} (latest {})", now, latest);
            if at_poll {
                prop_assert!(fire, "calling at poll_timeout must fire");
            }
            prop_assert!(!p.handle_timeout(ns(now)), "fired twice at one instant");
            fired += u64::from(fire);
            latest = latest.max(now);
            let next = start + (boundaries(latest) + 1) * interval;
            prop_assert_eq!(p.poll_timeout(), Some(ns(next)));
        }
        // At most one firing per boundary crossed, and one per call that crossed any.
        prop_assert!(fired <= boundaries(latest));
    }

    /// Property 10, the driver's side: calling at every `poll_timeout` fires every time, one
    /// firing per interval elapsed, with no drift.
    #[test]
    fn prop_10_driver_at_poll_timeout_never_skips(
        interval in 1u64..10_000,
        start in 0u64..10_000,
        calls in 1u64..300,
    ) {
        let mut p = Periodic::new(Duration::from_nanos(interval), ns(start));
        for i in 1..=calls {
            let due = p.poll_timeout().expect("running");
            prop_assert_eq!(due, ns(start + i * interval));
            prop_assert!(p.handle_timeout(due));
        }
    }

    /// Property 11: after `stop`, nothing fires at any future time and no tick is scheduled.
    #[test]
    fn prop_11_cleanup_stops(
        interval in 1u64..1_000,
        before in prop::collection::vec(0u64..3_000, 0..20),
        after in prop::collection::vec(any::<u64>(), 1..20),
    ) {
        let mut p = Periodic::new(Duration::from_nanos(interval), Instant::ZERO);
        let mut now = 0;
        for d in before {
            now += d;
            let _ = p.handle_timeout(ns(now));
        }
        p.stop();
        prop_assert_eq!(p.poll_timeout(), None);
        for t in after.into_iter().chain([u64::MAX]) {
            prop_assert!(!p.handle_timeout(ns(t)));
            prop_assert_eq!(p.poll_timeout(), None);
            prop_assert!(!p.is_running());
        }
    }

    /// Property 19: with the admin limit (20 per minute), every sliding minute holds at most 20
    /// allowed requests per admin, and a request that finds 20 allowed in the minute before it is
    /// denied with a positive `retry_after`.
    #[test]
    fn prop_19_admin_rate_limit_enforced(
        requests in prop::collection::vec((0u8..3, prop_oneof![
            4 => Just(0u64),
            4 => 0u64..2_000,
            2 => 0u64..20_000,
            1 => 0u64..90_000,
        ]), 1..300),
    ) {
        let config = RateLimit::ADMIN_DEFAULT;
        prop_assert_eq!(config, RateLimit::new(20, MINUTE));
        let mut l = RateLimiter::<u8>::new(config, 100);
        let w = nanos(config.window);
        let mut now = 0u64;
        let mut log: HashMap<u8, Vec<u64>> = HashMap::new();
        for (admin, step_ms) in requests {
            now += step_ms * 1_000_000;
            let events = log.entry(admin).or_default();
            let before = log_count(events, now, w);
            let d = l.check(&admin, ns(now));
            if before >= 20 {
                let retry = d.retry_after();
                prop_assert!(retry.is_some_and(|r| r > Duration::ZERO), "21st allowed: {d:?}");
            }
            if d.is_allowed() {
                events.push(now);
            }
        }
        for events in log.values() {
            prop_assert!(most_in_any_window(events, w) <= 20);
        }
    }

    /// Property 20: a user's admin-limiter and message-limiter decisions under interleaved
    /// traffic equal what each limiter decides alone on its own sub-sequence.
    #[test]
    fn prop_20_admin_and_user_limits_independent(
        traffic in prop::collection::vec((any::<bool>(), 0u8..3, prop_oneof![
            3 => Just(0u64),
            3 => 0u64..1_000,
            1 => 0u64..30_000,
        ]), 1..400),
    ) {
        let mut admin = RateLimiter::<u8>::new(RateLimit::ADMIN_DEFAULT, 100);
        let mut messages = RateLimiter::<u8>::new(RateLimit::USER_MESSAGES, 100);
        let mut now = 0u64;
        let mut mixed = (Vec::new(), Vec::new());
        let mut alone_input = (Vec::new(), Vec::new());
        for &(is_admin, user, step_ms) in &traffic {
            now += step_ms * 1_000_000;
            if is_admin {
                mixed.0.push(admin.check(&user, ns(now)));
                alone_input.0.push((user, now));
            } else {
                mixed.1.push(messages.check(&user, ns(now)));
                alone_input.1.push((user, now));
            }
        }
        let alone = |config: RateLimit, input: &[(u8, u64)]| {
            let mut l = RateLimiter::<u8>::new(config, 100);
            input.iter().map(|&(u, t)| l.check(&u, ns(t))).collect::<Vec<_>>()
        };
        prop_assert_eq!(&mixed.0, &alone(RateLimit::ADMIN_DEFAULT, &alone_input.0));
        prop_assert_eq!(&mixed.1, &alone(RateLimit::USER_MESSAGES, &alone_input.1));
    }

    /// Random limits, windows, bucket counts, key counts and time steps (including backwards):
    /// no closed interval of length W holds more than N allowed events of one key, measured on
    /// the limiter's clock.
    #[test]
    fn sliding_window_never_exceeds_limit(
        (limit, k) in small_limit(300),
        keys in 1u8..6,
        seed_steps in steps_strategy(300, 6, 300),
    ) {
        let steps: Vec<Step> =
            seed_steps.into_iter().map(|s| Step { key: s.key % keys, ..s }).collect();
        let mut l = RateLimiter::with_buckets(limit, 16, k);
        let log = run(&mut l, &steps, 500);
        for events in log.values() {
            prop_assert!(most_in_any_window(events, nanos(limit.window)) <= limit.limit as usize);
        }
    }

    /// Limits on both sides of the counters' width change (a byte up to 255, `u32` above):
    /// bursts of attempts at a few instants are allowed exactly as an exact sliding log with
    /// the bucket rule allows them — never more than the limit in any window, and, at a
    /// window's first instant with nothing counted, exactly the limit.
    #[test]
    fn large_limits_are_exact_on_both_counter_widths(
        n in prop_oneof![250u32..=262, 500u32..=700],
        bursts in prop::collection::vec((0u64..200, 1usize..400), 1..8),
    ) {
        let w = nanos(MINUTE);
        let mut l = RateLimiter::<u8>::new(RateLimit::new(n, MINUTE), 4);
        let mut now = 0u64;
        let mut events = Vec::new();
        for (gap_secs, attempts) in bursts {
            now += gap_secs * 1_000_000_000;
            // Nothing counted: no event in the window and the bucket before it.
            let empty = log_count(&events, now, w + nanos(l.bucket_width())) == 0;
            let allowed = (0..attempts).filter(|_| l.check(&0u8, ns(now)).is_allowed()).count();
            events.extend(std::iter::repeat_n(now, allowed));
            if empty {
                prop_assert_eq!(allowed, attempts.min(n as usize));
            }
            prop_assert!(most_in_any_window(&events, w) <= n as usize);
        }
    }

    /// `retry_after` is honest: retrying at `now + retry_after` is allowed, at
    /// `now + retry_after − 1 ns` still denied, when nothing else happens in between.
    #[test]
    fn denied_retry_after_is_honest(
        (limit, k) in small_limit(300),
        steps in steps_strategy(300, 3, 200),
    ) {
        let mut l = RateLimiter::<u8>::with_buckets(limit, 16, k);
        let mut now = 500u64;
        for s in &steps {
            now = move_clock(now, s.dt);
            if let Decision::Denied { retry_after } = l.check(&s.key, ns(now)) {
                prop_assert!(retry_after > Duration::ZERO);
                let r = nanos(retry_after);
                let mut early = l.clone();
                prop_assert!(!early.check(&s.key, ns(now + r - 1)).is_allowed());
                let mut on_time = l.clone();
                prop_assert_eq!(on_time.check(&s.key, ns(now + r)), Decision::Allowed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Model-based test: the limiter against a naive per-key log and an exact sliding log
// ---------------------------------------------------------------------------------------------

/// The reference: every key's allowed timestamps kept forever in a `Vec`, keys in a `Vec` ordered
/// by recency (index 0 = least recently used), the bucket rule applied by scanning.
#[derive(Clone, Debug)]
struct Model {
    limit: u32,
    window: u64,
    buckets: u32,
    max_keys: usize,
    /// `max(1, ⌈W / k⌉)`, computed here independently of the limiter.
    g: u64,
    now: u64,
    clock: u64,
    keys: Vec<(u8, Vec<u64>)>,
    stats: LimiterStats,
    /// What the last transition returned.
    last: Outcome,
    /// The exact sliding log's view of the last check (for the relations).
    log_view: Option<LogView>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Outcome {
    None,
    Checked(Decision),
    Cleaned(usize),
}

/// What an exact sliding log says at the last check's clock, over the same allowed events.
#[derive(Clone, Copy, Debug)]
struct LogView {
    count_before: usize,
    release: u64,
}

#[derive(Clone, Copy, Debug)]
enum Op {
    Check { key: u8, dt: i64 },
    Cleanup { dt: i64 },
}

const MODEL_KEYS: u8 = 8;

impl Model {
    fn first_counted(&self, t: u64) -> u64 {
        t.saturating_sub(self.window) / self.g
    }

    fn counted(&self, events: &[u64], first: u64) -> usize {
        events.iter().filter(|&&e| e / self.g >= first).count()
    }

    fn is_live(&self, events: &[u64], first: u64) -> bool {
        self.counted(events, first) > 0
    }

    fn check(&mut self, key: u8) -> Decision {
        let t = self.clock;
        if self.limit == 0 {
            self.stats.denied += 1;
            return Decision::Denied { retry_after: Duration::from_nanos(self.window.max(1)) };
        }
        let first = self.first_counted(t);
        let w = self.window;
        if let Some(pos) = self.keys.iter().position(|(k, _)| *k == key) {
            let events = self.keys[pos].1.clone();
            self.log_view = Some(LogView {
                count_before: log_count(&events, t, w),
                release: log_release(&events, t, w, self.limit),
            });
            if self.counted(&events, first) < self.limit as usize {
                let mut entry = self.keys.remove(pos);
                entry.1.push(t);
                self.keys.push(entry);
                self.stats.allowed += 1;
                Decision::Allowed
            } else {
                // Drop whole buckets from the oldest until fewer than `limit` remain.
                let newest = t / self.g;
                let keep_from = (first..=newest + 1)
                    .find(|&j| self.counted(&events, j) < self.limit as usize)
                    .unwrap_or(newest + 1);
                let release = keep_from * self.g + w;
                self.stats.denied += 1;
                Decision::Denied { retry_after: Duration::from_nanos((release - self.now).max(1)) }
            }
        } else {
            self.log_view = Some(LogView { count_before: 0, release: t });
            if self.keys.len() == self.max_keys {
                let (_, evicted) = self.keys.remove(0);
                if self.is_live(&evicted, first) {
                    self.stats.evicted_live += 1;
                } else {
                    self.stats.evicted_idle += 1;
                }
            }
            self.keys.push((key, vec![t]));
            self.stats.allowed += 1;
            Decision::Allowed
        }
    }

    fn cleanup(&mut self) -> usize {
        let first = self.first_counted(self.clock);
        let before = self.keys.len();
        let keys = std::mem::take(&mut self.keys);
        self.keys = keys.into_iter().filter(|(_, e)| self.is_live(e, first)).collect();
        let removed = before - self.keys.len();
        self.stats.cleaned += removed as u64;
        removed
    }
}

struct LimiterVsModel;

impl ReferenceStateMachine for LimiterVsModel {
    type State = Model;
    type Transition = Op;

    fn init_state() -> BoxedStrategy<Model> {
        (prop_oneof![1 => Just(0u32), 12 => 1u32..6], 0u64..120, 1u32..25, 1usize..6, 0u64..500)
            .prop_map(|(limit, window, buckets, max_keys, start)| Model {
                limit,
                window,
                buckets,
                max_keys,
                g: window.div_ceil(u64::from(buckets)).max(1),
                now: start,
                clock: 0,
                keys: Vec::new(),
                stats: LimiterStats { max_keys, ..LimiterStats::default() },
                last: Outcome::None,
                log_view: None,
            })
            .boxed()
    }

    fn transitions(state: &Model) -> BoxedStrategy<Op> {
        let w = state.window.max(8);
        prop_oneof![
            8 => (0..MODEL_KEYS, dt_strategy(w)).prop_map(|(key, dt)| Op::Check { key, dt }),
            1 => dt_strategy(w).prop_map(|dt| Op::Cleanup { dt }),
        ]
        .boxed()
    }

    fn apply(mut state: Model, op: &Op) -> Model {
        let dt = match *op {
            Op::Check { dt, .. } | Op::Cleanup { dt } => dt,
        };
        state.now = move_clock(state.now, dt);
        state.clock = state.clock.max(state.now);
        state.log_view = None;
        state.last = match *op {
            Op::Check { key, .. } => Outcome::Checked(state.check(key)),
            Op::Cleanup { .. } => Outcome::Cleaned(state.cleanup()),
        };
        state
    }
}

impl StateMachineTest for LimiterVsModel {
    type SystemUnderTest = RateLimiter<u8>;
    type Reference = LimiterVsModel;

    fn init_test(m: &Model) -> RateLimiter<u8> {
        let l = RateLimiter::with_buckets(
            RateLimit::new(m.limit, Duration::from_nanos(m.window)),
            m.max_keys,
            m.buckets,
        );
        assert_eq!(nanos(l.bucket_width()), m.g);
        l
    }

    fn apply(mut l: RateLimiter<u8>, m: &Model, op: Op) -> RateLimiter<u8> {
        let got = match op {
            Op::Check { key, .. } => Outcome::Checked(l.check(&key, ns(m.now))),
            Op::Cleanup { .. } => Outcome::Cleaned(l.cleanup(ns(m.now))),
        };
        assert_eq!(got, m.last, "{op:?} at now {} clock {}", m.now, m.clock);

        // The exact sliding log, over the same allowed events: never more than N in any W, and a
        // denial waits at least as long as the log would and less than one bucket longer.
        if let (Op::Check { key, .. }, Some(view)) = (op, m.log_view) {
            match got {
                Outcome::Checked(Decision::Allowed) => {
                    assert!(view.count_before < m.limit as usize, "allowed an N+1st event");
                    let events = &m.keys.iter().find(|(k, _)| *k == key).expect("tracked").1;
                    assert!(log_count(events, m.clock, m.window) <= m.limit as usize);
                }
                Outcome::Checked(Decision::Denied { retry_after }) => {
                    let release = m.now + nanos(retry_after);
                    assert!(release >= view.release, "earlier than the exact log allows");
                    assert!(release < view.release + m.g, "more than g later than the exact log");
                }
                _ => {}
            }
        }
        l
    }

    fn check_invariants(l: &RateLimiter<u8>, m: &Model) {
        assert_eq!(l.len(), m.keys.len());
        assert!(l.len() <= l.max_keys());
        assert_eq!(l.stats(), LimiterStats { keys: m.keys.len(), ..m.stats });
        for key in 0..MODEL_KEYS {
            assert_eq!(l.contains(&key), m.keys.iter().any(|(k, _)| *k == key), "key {key}");
        }
    }
}

prop_state_machine! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn limiter_matches_naive_model(sequential 1..200 => LimiterVsModel);
}

// ---------------------------------------------------------------------------------------------
// Bounded memory
// ---------------------------------------------------------------------------------------------

/// One million distinct keys through a limiter holding at most 10 000: the bound holds
/// throughout, every eviction is counted, and a late cleanup empties it.
#[test]
fn a_million_keys_stay_within_max_keys() {
    const MAX: usize = 10_000;
    let mut l = RateLimiter::<u64>::new(RateLimit::USER_MESSAGES, MAX);
    let mut now = Instant::ZERO;
    for key in 0..1_000_000u64 {
        now += Duration::from_micros(1);
        assert_eq!(l.check(&key, now), Decision::Allowed, "a new key is never refused");
        assert!(l.len() <= MAX);
    }
    let s = l.stats();
    assert_eq!(s.keys, MAX);
    // Every key was within its window (1 s of traffic, 60 s window) when evicted.
    assert_eq!(s.evicted_live, 1_000_000 - MAX as u64);
    assert_eq!(l.cleanup(now + MINUTE), 0, "all still live");
    assert_eq!(l.cleanup(now + MINUTE + l.bucket_width()), MAX);
    assert_eq!(l.len(), 0);
}

/// With the cleanup on a `Periodic` tick, idle keys go long before `max_keys` is reached: the
/// limiter holds at most the keys seen in the last window + bucket + tick.
#[test]
fn periodic_cleanup_keeps_the_key_set_small() {
    let window = Duration::from_micros(100);
    let mut l = RateLimiter::<u64>::new(RateLimit::new(1, window), 1_000_000);
    let tick = Duration::from_millis(1);
    let mut periodic = Periodic::new(tick, Instant::ZERO);
    let mut now = Instant::ZERO;
    let mut cleanups = 0;
    for key in 0..200_000u64 {
        now += Duration::from_micros(1);
        let _ = l.check(&key, now);
        if periodic.handle_timeout(now) {
            let _ = l.cleanup(now);
            cleanups += 1;
            let bound = nanos(window + l.bucket_width()) / 1_000 + 1;
            assert!(l.len() as u64 <= bound, "{} keys after cleanup", l.len());
        }
        assert!(l.len() as u64 <= nanos(window + l.bucket_width() + tick) / 1_000 + 1);
    }
    assert_eq!(cleanups, 200);
    assert!(l.stats().evicted_live == 0 && l.stats().evicted_idle == 0);
}
