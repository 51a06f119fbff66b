//! The rate-limiter comparison: chatbox-core's [`RateLimiter`] (bucketed sliding window with an
//! LRU key set) against `governor`'s keyed limiter (GCRA on a DashMap, fake clock) and the naive
//! exact [`SlidingLog`], side by side in one criterion group per key count (1k, 100k and 1M keys
//! when benchmarking; 1k in criterion's test mode).
//!
//! Every implementation enforces 100 events per minute per key. Each iteration checks one key
//! taken from a pre-generated, uniformly random sequence over the key space, and the benchmark
//! clock moves [`LIMITER_STEP`] (1 ms) per check, so with 1k keys each key is checked about once
//! a second (60 per minute: mostly allowed, some denials after random bursts) and with 1M keys
//! about once every 17 minutes. Each limiter is built lazily, on its first measured call, and is
//! first given one check of every key, so the measured state tracks all `n` keys. The core
//! limiter's `max_keys` is `n`, so it evicts nothing here.

use std::hint::black_box;

use chatbox_benches::{
    bench_mode, count_label, governor, key_names, key_sequence, limiter_key_counts, Governor,
    SlidingLog, LIMITER_STEP, SEQUENCE_LEN,
};
use chatbox_core::rate::{Decision, RateLimit, RateLimiter};
use chatbox_core::time::duration_nanos;
use chatbox_core::Instant;
use compact_str::CompactString;
use criterion::Criterion;
use governor::clock::FakeRelativeClock;

/// The limit under test: `user_message` frames, 100 per 60 s per key.
const LIMIT: RateLimit = RateLimit::USER_MESSAGES;

/// The keys and the order in which they are checked.
struct Workload {
    keys: Vec<String>,
    sequence: Vec<u32>,
}

impl Workload {
    fn new(n: usize) -> Self {
        Self { keys: key_names(n), sequence: key_sequence(n, 0x11A1_7E55 ^ n as u64) }
    }

    /// The key of step `pos` of the random sequence.
    fn key(&self, pos: usize) -> &String {
        &self.keys[self.sequence[pos & (SEQUENCE_LEN - 1)] as usize]
    }
}

/// Position in the sequence, benchmark clock and outcome counts shared by the three drivers.
#[derive(Default)]
struct Cursor {
    pos: usize,
    nanos: u64,
    allowed: u64,
    denied: u64,
}

impl Cursor {
    /// Moves to the next step: the key index and the new `now`.
    fn advance(&mut self) -> (usize, Instant) {
        let pos = self.pos;
        self.pos = self.pos.wrapping_add(1);
        self.nanos += duration_nanos(LIMITER_STEP);
        (pos, Instant::from_nanos(self.nanos))
    }

    fn count(&mut self, allowed: bool) -> bool {
        if allowed {
            self.allowed += 1;
        } else {
            self.denied += 1;
        }
        allowed
    }

    fn summary(&self) -> String {
        let total = (self.allowed + self.denied).max(1);
        format!("{} checks, {:.1}% denied", total, 100.0 * self.denied as f64 / total as f64)
    }
}

/// A limiter that decides one key at an instant the caller gives: chatbox-core's and the naive
/// sliding log.
trait Exact {
    #[allow(clippy::ptr_arg, reason = "both limiters are keyed by String")]
    fn decide(&mut self, key: &String, now: Instant) -> Decision;
}

/// The core limiter is asked about the same `String` keys as the others and stores them as
/// [`CompactString`] (inline up to 24 bytes), as the shell's user-keyed limiters do.
impl Exact for RateLimiter<CompactString> {
    fn decide(&mut self, key: &String, now: Instant) -> Decision {
        self.check(key.as_str(), now)
    }
}

impl Exact for SlidingLog<String> {
    fn decide(&mut self, key: &String, now: Instant) -> Decision {
        self.check(key, now)
    }
}

/// chatbox-core's limiter or the naive exact sliding log, driven on the benchmark clock.
struct ExactDriver<L> {
    limiter: L,
    cursor: Cursor,
}

impl<L: Exact> ExactDriver<L> {
    fn new(limiter: L, work: &Workload) -> Self {
        let mut d = Self { limiter, cursor: Cursor::default() };
        for key in &work.keys {
            let (_, now) = d.cursor.advance();
            let _warm = d.limiter.decide(key, now);
        }
        d.cursor = Cursor { nanos: d.cursor.nanos, ..Cursor::default() };
        d
    }

    fn step(&mut self, work: &Workload) -> bool {
        let (pos, now) = self.cursor.advance();
        let allowed = self.limiter.decide(work.key(pos), now).is_allowed();
        self.cursor.count(allowed)
    }
}

/// `governor`'s keyed limiter: the store `RateLimiter::keyed` uses (DashMap), driven by a
/// `FakeRelativeClock` so no real clock is read.
struct GovernorDriver {
    limiter: Governor,
    clock: FakeRelativeClock,
    cursor: Cursor,
}

impl GovernorDriver {
    fn new(work: &Workload) -> Self {
        let clock = FakeRelativeClock::default();
        let limiter = governor(LIMIT, &clock);
        let d = Self { limiter, clock, cursor: Cursor::default() };
        for key in &work.keys {
            d.clock.advance(LIMITER_STEP);
            let _warm = d.limiter.check_key(key);
        }
        d
    }

    fn step(&mut self, work: &Workload) -> bool {
        let (pos, _) = self.cursor.advance();
        self.clock.advance(LIMITER_STEP);
        let allowed = self.limiter.check_key(work.key(pos)).is_ok();
        self.cursor.count(allowed)
    }
}

/// One group per key count, the three limiters as its functions.
fn limiter(c: &mut Criterion) {
    for n in limiter_key_counts() {
        let label = count_label(n);
        let mut work: Option<Workload> = None;
        let mut core: Option<ExactDriver<RateLimiter<CompactString>>> = None;
        let mut gov: Option<GovernorDriver> = None;
        let mut log: Option<ExactDriver<SlidingLog<String>>> = None;
        let mut group = c.benchmark_group(format!("limiter_{label}"));
        group.bench_function("core", |b| {
            let work = work.get_or_insert_with(|| Workload::new(n));
            let d = core.get_or_insert_with(|| {
                ExactDriver::new(RateLimiter::new(LIMIT, work.keys.len()), work)
            });
            b.iter(|| black_box(d.step(work)));
        });
        group.bench_function("governor", |b| {
            let work = work.get_or_insert_with(|| Workload::new(n));
            let d = gov.get_or_insert_with(|| GovernorDriver::new(work));
            b.iter(|| black_box(d.step(work)));
        });
        group.bench_function("sliding_log", |b| {
            let work = work.get_or_insert_with(|| Workload::new(n));
            let d = log.get_or_insert_with(|| ExactDriver::new(SlidingLog::new(LIMIT), work));
            b.iter(|| black_box(d.step(work)));
        });
        group.finish();
        if bench_mode() {
            let report = |name: &str, cursor: Option<&Cursor>| {
                if let Some(cursor) = cursor {
                    eprintln!("limiter_{label}/{name}: {}", cursor.summary());
                }
            };
            report("core", core.as_ref().map(|d| &d.cursor));
            report("governor", gov.as_ref().map(|d| &d.cursor));
            report("sliding_log", log.as_ref().map(|d| &d.cursor));
        }
    }
}

fn main() {
    chatbox_benches::run(limiter);
}
