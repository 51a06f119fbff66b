//! Property tests of `chatbox_core::session` named after the seed's properties
//! (seed/production-readiness-design.md: 1, 2, 3 for issue #1, 12 and 13 for issue #12).
//! Time is explicit: a driver holds `now` and moves it by generated amounts.

use std::collections::{BTreeSet, VecDeque};
use std::time::Duration;

use chatbox_core::session::{SessionId, SessionLimits, SessionTable};
use chatbox_core::time::{Instant, UnixMillis, MINUTE};
use proptest::prelude::*;

/// One step of a random workload.
#[derive(Debug, Clone)]
enum Op {
    /// `resolve` for user `u` with no requested id (creates or reuses).
    Open(u8),
    /// `resolve` for user `u` asking for the `n`-th id minted so far (resume, reuse, refuse…).
    Reopen(u8, usize),
    End(usize),
    Attach(usize),
    Detach(usize),
    Touch(usize),
    Sweep,
    /// Move time forward by this many milliseconds.
    Advance(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (0u8..6).prop_map(Op::Open),
        2 => (0u8..6, 0usize..32).prop_map(|(u, n)| Op::Reopen(u, n)),
        2 => (0usize..32).prop_map(Op::End),
        2 => (0usize..32).prop_map(Op::Attach),
        2 => (0usize..32).prop_map(Op::Detach),
        1 => (0usize..32).prop_map(Op::Touch),
        1 => Just(Op::Sweep),
        3 => advance_millis().prop_map(Op::Advance),
    ]
}

/// Small steps, steps around the 15 min limits, and jumps past the 1 h idle timeout.
fn advance_millis() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..120_000,
        2 => 14 * 60_000u64..16 * 60_000,
        1 => Just(15 * 60_000u64),
        1 => 59 * 60_000u64..61 * 60_000,
        1 => 2 * 3_600_000u64..48 * 3_600_000,
    ]
}

/// Drives a table with [`Op`]s, minting ids `s0`, `s1`, … and ignoring refusals.
struct Driver {
    table: SessionTable,
    now: Instant,
    minted: Vec<SessionId>,
}

impl Driver {
    fn new(limits: SessionLimits) -> Self {
        Self { table: SessionTable::new(limits), now: Instant::ZERO, minted: Vec::new() }
    }

    fn wall(&self) -> UnixMillis {
        UnixMillis(
            i64::try_from(self.now.as_nanos() / 1_000_000)
                .expect("test times fit in i64 milliseconds"),
        )
    }

    fn pick(&self, n: usize) -> String {
        if self.minted.is_empty() {
            "ghost".to_owned()
        } else {
            self.minted[n % self.minted.len()].to_string()
        }
    }

    fn apply(&mut self, op: &Op) {
        let (now, wall) = (self.now, self.wall());
        let fresh = SessionId::from(format!("s{}", self.minted.len()));
        match *op {
            Op::Open(u) => {
                let r = self.table.resolve(&format!("u{u}"), None, fresh.clone(), now, wall);
                if r.is_ok() {
                    self.minted.push(fresh);
                }
            }
            Op::Reopen(u, n) => {
                let requested = self.pick(n);
                let r = self.table.resolve(
                    &format!("u{u}"),
                    Some(&requested),
                    fresh.clone(),
                    now,
                    wall,
                );
                if r.is_ok() {
                    self.minted.push(fresh);
                }
            }
            Op::End(n) => {
                let _ = self.table.end(&self.pick(n), now, wall);
            }
            Op::Attach(n) => {
                let _ = self.table.attach(&self.pick(n), now);
            }
            Op::Detach(n) => {
                let _ = self.table.detach(&self.pick(n), now);
            }
            Op::Touch(n) => {
                let _ = self.table.touch(&self.pick(n), now);
            }
            Op::Sweep => {
                let _ = self.table.sweep(now, wall);
            }
            Op::Advance(ms) => self.now += Duration::from_millis(ms),
        }
    }
}

fn run(ops: &[Op]) -> Driver {
    let mut d = Driver::new(SessionLimits::default());
    for op in ops {
        d.apply(op);
    }
    d
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Property 1: any ended session whose end is at least `ended_ttl` old is gone after a sweep,
    /// and the sweep reports exactly those.
    #[test]
    fn prop_01_sweep_removes_expired_sessions(
        ops in prop::collection::vec(op(), 0..120),
        jump in advance_millis(),
    ) {
        let mut d = run(&ops);
        let at = d.now + Duration::from_millis(jump);
        let ttl = d.table.limits().ended_ttl;
        let expired: BTreeSet<SessionId> = d.table.iter()
            .filter(|s| s.ended_at().is_some_and(|end| end + ttl <= at))
            .map(|s| s.id().clone())
            .collect();
        d.now = at;
        let report = d.table.sweep(at, d.wall());
        let dropped: BTreeSet<SessionId> = report.dropped.iter().cloned().collect();
        prop_assert_eq!(dropped.len(), report.dropped.len(), "a session was reported twice");
        prop_assert_eq!(&dropped, &expired);
        for id in &expired {
            prop_assert!(d.table.get(id.as_str()).is_none(), "{} survived", id);
        }
        for s in d.table.iter() {
            if let Some(end) = s.ended_at() {
                prop_assert!(end + ttl > at, "{} ended at {:?} is still held at {:?}", s.id(), end, at);
            }
        }
        prop_assert!(d.table.next_deadline().is_none_or(|next| next > at));
        d.table.check_invariants().unwrap();
    }

    /// Property 2: an active session with an attached connection, or with activity within
    /// `idle_timeout`, survives any sweep and stays active.
    #[test]
    fn prop_02_active_sessions_never_swept(
        ops in prop::collection::vec(op(), 0..120),
        jump in advance_millis(),
    ) {
        let mut d = run(&ops);
        let at = d.now + Duration::from_millis(jump);
        let idle = d.table.limits().idle_timeout;
        let protected: Vec<SessionId> = d.table.iter()
            .filter(|s| s.is_active() && (s.attached() > 0 || at - s.last_activity() < idle))
            .map(|s| s.id().clone())
            .collect();
        d.now = at;
        let report = d.table.sweep(at, d.wall());
        for id in &protected {
            let s = d.table.get(id.as_str());
            prop_assert!(s.is_some_and(|s| s.is_active()), "{} was swept", id);
            prop_assert!(!report.dropped.contains(id));
            prop_assert!(report.idle_ended.iter().all(|e| &e.id != id));
        }
        d.table.check_invariants().unwrap();
    }

    /// Property 3: after every step of any sequence, `active + inactive == total == len()`, and
    /// the counts match the records.
    #[test]
    fn prop_03_memory_stats_accurate(ops in prop::collection::vec(op(), 0..150)) {
        let mut d = Driver::new(SessionLimits::default());
        for op in &ops {
            d.apply(op);
            let stats = d.table.memory_stats();
            prop_assert_eq!(stats.active + stats.inactive, stats.total);
            prop_assert_eq!(stats.total, d.table.len());
            prop_assert_eq!(stats.active, d.table.iter().filter(|s| s.is_active()).count());
            prop_assert_eq!(stats.inactive, d.table.iter().filter(|s| !s.is_active()).count());
            d.table.check_invariants().unwrap();
        }
    }

    /// Issue 18 item 5: sweeping in bounded batches (`sweep_at_most` until nothing is pending)
    /// reports the same ends and drops, in the same order, and leaves the same table as one
    /// whole `sweep` at the same instant; no batch takes more than its limit of steps, and only
    /// the last reports nothing pending. Zero TTLs make sessions take two steps in one sweep.
    #[test]
    fn batched_sweep_equals_one_sweep(
        ops in prop::collection::vec(op(), 0..150),
        jump in advance_millis(),
        max in 1usize..5,
        zero_ttl in any::<bool>(),
    ) {
        let limits = if zero_ttl {
            SessionLimits { ended_ttl: Duration::ZERO, ..SessionLimits::default() }
        } else {
            SessionLimits::default()
        };
        let mut d = Driver::new(limits);
        for op in &ops {
            d.apply(op);
        }
        d.now += Duration::from_millis(jump);
        let (at, wall) = (d.now, d.wall());
        let mut whole = d.table.clone();
        let expected = whole.sweep(at, wall);
        prop_assert!(!expected.pending);

        let mut batched = d.table;
        let (mut ended, mut dropped) = (Vec::new(), Vec::new());
        loop {
            let batch = batched.sweep_at_most(at, wall, max);
            let steps = batch.idle_ended.len() + batch.dropped.len();
            prop_assert!(steps <= max, "{} steps in a batch of {}", steps, max);
            prop_assert!(!batch.pending || steps == max, "pending after a short batch");
            ended.extend(batch.idle_ended);
            dropped.extend(batch.dropped);
            batched.check_invariants().unwrap();
            if !batch.pending {
                break;
            }
        }
        prop_assert_eq!(&ended, &expected.idle_ended);
        prop_assert_eq!(&dropped, &expected.dropped);
        let state = |t: &SessionTable| format!("{:?}", t.iter().collect::<Vec<_>>());
        prop_assert_eq!(state(&batched), state(&whole));
        prop_assert_eq!(batched.next_deadline(), whole.next_deadline());
        prop_assert_eq!(batched.memory_stats(), whole.memory_stats());
        prop_assert!(batched.sweep_batch(at, wall).is_empty(), "a later batch finds nothing");
        whole.check_invariants().unwrap();
    }

    /// Property 12: through `record_reply`, a session's window never exceeds its capacity.
    #[test]
    fn prop_12_response_times_bounded(
        capacity in prop_oneof![1usize..=20, Just(100usize)],
        samples in prop::collection::vec(0u64..10_000, 0..400),
    ) {
        let limits = SessionLimits { response_time_capacity: capacity, ..SessionLimits::default() };
        let mut t = SessionTable::new(limits);
        let r = t.resolve("u", None, SessionId::from("s"), Instant::ZERO, UnixMillis(0)).unwrap();
        for (i, ms) in samples.iter().enumerate() {
            t.record_reply(r.id.as_str(), Duration::from_millis(*ms), 1).unwrap();
            let window = t.get("s").unwrap().response_times();
            prop_assert!(window.len() <= capacity);
            prop_assert_eq!(window.len(), (i + 1).min(capacity));
            prop_assert_eq!(window.capacity(), capacity);
        }
        prop_assert_eq!(t.get("s").unwrap().total_tokens(), samples.len() as u64);
    }

    /// Property 13: once the window is full, each new sample evicts exactly the oldest one; the
    /// window always equals the last `capacity` samples (a `VecDeque` model).
    #[test]
    fn prop_13_rolling_window_keeps_recent(
        capacity in prop_oneof![1usize..=20, Just(100usize)],
        samples in prop::collection::vec(0u64..10_000, 0..400),
    ) {
        let limits = SessionLimits { response_time_capacity: capacity, ..SessionLimits::default() };
        let mut t = SessionTable::new(limits);
        let _ = t.resolve("u", None, SessionId::from("s"), Instant::ZERO, UnixMillis(0)).unwrap();
        let mut model: VecDeque<Duration> = VecDeque::new();
        for ms in samples {
            let sample = Duration::from_millis(ms);
            let before: Vec<Duration> = t.get("s").unwrap().response_times().iter().collect();
            t.record_reply("s", sample, 0).unwrap();
            let after: Vec<Duration> = t.get("s").unwrap().response_times().iter().collect();
            if before.len() == capacity {
                // Full: the oldest left, everything else shifted, the new one is last.
                prop_assert_eq!(&after[..capacity - 1], &before[1..]);
                prop_assert_eq!(after[capacity - 1], sample);
            }
            model.push_back(sample);
            if model.len() > capacity {
                model.pop_front();
            }
            prop_assert_eq!(after, model.iter().copied().collect::<Vec<_>>());
        }
        let window = t.get("s").unwrap().response_times();
        prop_assert_eq!(window.max(), model.iter().copied().max().unwrap_or_default());
    }
}

/// The defaults the brief and PROTOCOL.md §6, §9 give.
#[test]
fn default_limits() {
    let l = SessionLimits::default();
    assert_eq!(l.reconnect_window, 15 * MINUTE);
    assert_eq!(l.ended_ttl, 15 * MINUTE);
    assert_eq!(l.idle_timeout, 60 * MINUTE);
    assert_eq!(l.response_time_capacity, 100);
}
