//! chatbox-benches: shared pieces of the criterion micro-benchmarks in `benches/benches/`
//! (results and how to run them: `BENCHMARKS.md` at the repository root).
//!
//! What lives here, so that every bench target (and the memory report) uses the same inputs:
//! - the run settings ([`MEASUREMENT_TIME`], [`WARM_UP_TIME`], [`SAMPLE_SIZE`],
//!   [`RESAMPLES`]) and the sizes to run at ([`limiter_key_counts`], [`session_counts`]), which
//!   shrink when the binary runs in criterion's test mode ([`bench_mode`] is false: `cargo test`);
//! - a deterministic generator ([`SplitMix64`]) and the inputs built from it ([`key_names`],
//!   [`key_sequence`], [`session_ids`]);
//! - [`SlidingLog`], the naive exact sliding-log limiter the core limiter is compared with;
//! - [`build_session_table`], a table of active sessions built once per size;
//! - [`rss_bytes`], the resident set size, for the memory-per-key report;
//! - [`run`], every bench target's `main` (criterion with the run settings above), and
//!   [`governor`], the comparison limiter as the limiter bench and the memory report build it.
//!
//! Time is [`chatbox_core::Instant`] everywhere: no benchmark input reads a clock (criterion reads
//! its own to measure).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::time::Duration;

use chatbox_core::rate::{Decision, RateLimit};
use chatbox_core::session::{SessionId, SessionLimits, SessionTable};
use chatbox_core::time::duration_nanos;
use chatbox_core::{Instant, UnixMillis};
use governor::clock::FakeRelativeClock;
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::DefaultKeyedStateStore;

/// Criterion's measurement time per benchmark (short: the machine is a shared 2-core one and the
/// whole `cargo bench -p chatbox-benches` run should stay within a few minutes).
pub const MEASUREMENT_TIME: Duration = Duration::from_secs(2);

/// Criterion's warm-up time per benchmark.
pub const WARM_UP_TIME: Duration = Duration::from_millis(500);

/// Samples per benchmark (criterion's default is 100; fewer keeps the analysis short).
pub const SAMPLE_SIZE: usize = 30;

/// Bootstrap resamples of criterion's analysis (default 100 000; the median needs far fewer).
pub const RESAMPLES: usize = 20_000;

/// How far the benchmark clock moves between two consecutive limiter checks.
pub const LIMITER_STEP: Duration = Duration::from_millis(1);

/// Length of every pre-generated random index sequence (a power of two, so the position wraps
/// with a mask).
pub const SEQUENCE_LEN: usize = 1 << 20;

/// Whether the binary runs as a benchmark (`cargo bench` passes `--bench`). Without it criterion
/// runs in test mode (`cargo test` runs each benchmark once), and the benchmarks use small sizes.
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// Key counts of the limiter comparison: 1k, 100k and 1M keys when benchmarking, 1k in test mode.
pub fn limiter_key_counts() -> Vec<usize> {
    if bench_mode() {
        vec![1_000, 100_000, 1_000_000]
    } else {
        vec![1_000]
    }
}

/// Table sizes of the session benchmarks: 10k and 1M sessions when benchmarking, 1k in test mode.
pub fn session_counts() -> Vec<usize> {
    if bench_mode() {
        vec![10_000, 1_000_000]
    } else {
        vec![1_000]
    }
}

/// A short label for a count: `1k`, `100k`, `1M`.
pub fn count_label(n: usize) -> String {
    if n >= 1_000_000 && n.is_multiple_of(1_000_000) {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n.is_multiple_of(1_000) {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// SplitMix64: a tiny deterministic generator, so every run sees the same inputs.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform value in `0..n` (`n > 0`; Lemire's multiply-shift, bias below 2^-32 for the
    /// sizes used here). Returns 0 when `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        let n = n as u64;
        // The product's high half is below `n`, so it fits back in usize.
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as usize
    }
}

/// `n` distinct user-id-like keys (`user-0000000` …), as the shell's message limiter keys by
/// `user_id` strings.
pub fn key_names(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i:07}")).collect()
}

/// [`SEQUENCE_LEN`] indices drawn uniformly from `0..n` (the keys each iteration checks).
pub fn key_sequence(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    (0..SEQUENCE_LEN).map(|_| u32::try_from(rng.below(n)).unwrap_or(u32::MAX)).collect()
}

/// `n` distinct session id strings shaped like the shell's (32 lowercase hex digits, random
/// order).
pub fn session_id_strings(n: usize, seed: u64) -> Vec<String> {
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|i| {
            // The low 32 bits are the index, so the ids are distinct whatever the random bits.
            let high = rng.next_u64();
            let low = (rng.next_u64() & !0xFFFF_FFFF) | i as u64;
            format!("{high:016x}{low:016x}")
        })
        .collect()
}

/// [`session_id_strings`] as [`SessionId`]s.
pub fn session_ids(n: usize, seed: u64) -> Vec<SessionId> {
    session_id_strings(n, seed).into_iter().map(SessionId::from).collect()
}

/// The owner of session `i` of the fixtures (one user per session).
pub fn session_users(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("user-{i:07}")).collect()
}

/// The seed of the fixtures' session ids.
pub const SESSION_SEED: u64 = 0x5E55_1045;

/// A naive, exact sliding-log limiter: per key the instants of its allowed events (a
/// `VecDeque`), at most `limit` of them within any `window`. A check first drops the events older
/// than the window, then allows iff fewer than `limit` remain. Keys are never forgotten and the
/// map is std's `HashMap` (SipHash): this is the textbook baseline, not a production design.
///
/// Memory: one `VecDeque` per key holding up to `limit` instants (8 bytes each) plus the key.
#[derive(Clone, Debug)]
pub struct SlidingLog<K> {
    limit: usize,
    window: Duration,
    keys: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> SlidingLog<K> {
    /// A limiter enforcing `limit` (its count and window) per key.
    pub fn new(limit: RateLimit) -> Self {
        Self {
            limit: usize::try_from(limit.limit).unwrap_or(usize::MAX),
            window: limit.window,
            keys: HashMap::new(),
        }
    }

    /// Keys tracked.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Decides one attempt by `key` at `now`: allowed (and logged) iff fewer than `limit` events
    /// lie in `(now - window, now]`; a denial's `retry_after` is when the oldest one leaves.
    pub fn check(&mut self, key: &K, now: Instant) -> Decision {
        let log = match self.keys.get_mut(key) {
            Some(log) => log,
            None => self.keys.entry(key.clone()).or_default(),
        };
        // An event at `at` counts while `now - at < window`; nothing is old before `window`.
        if let Some(horizon) = now.as_nanos().checked_sub(duration_nanos(self.window)) {
            while log.front().is_some_and(|&at| at.as_nanos() <= horizon && at < now) {
                log.pop_front();
            }
        }
        if log.len() < self.limit {
            log.push_back(now);
            Decision::Allowed
        } else {
            let oldest = log.front().copied().unwrap_or(now);
            let retry_after = (oldest + self.window).saturating_duration_since(now);
            Decision::Denied { retry_after: retry_after.max(Duration::from_nanos(1)) }
        }
    }
}

/// The wall-clock time the session benchmarks pass (only stored, never compared).
pub const WALL: UnixMillis = UnixMillis(1_700_000_000_000);

/// The `now` at which [`build_session_table`] creates its first session.
pub const SESSIONS_BORN: Instant = Instant::from_secs(1_000);

/// How far apart the fixtures' sessions are created (and how far the benchmark clock moves per
/// session operation), so that their idle deadlines differ as they would in a real server.
pub const SESSION_STEP: Duration = Duration::from_micros(1);

/// A session table as the benchmarks use it.
#[derive(Debug, Clone)]
pub struct SessionFixture {
    /// `n` active sessions, none attached, default limits; session `i` was created (and last
    /// active) at `SESSIONS_BORN + i · SESSION_STEP`.
    pub table: SessionTable,
    /// Owner of session `i` (one session per user).
    pub users: Vec<String>,
    /// Id of session `i`.
    pub ids: Vec<SessionId>,
    /// The latest instant given to the table; every session is idle-expired at
    /// `now + idle_timeout`.
    pub now: Instant,
}

impl SessionFixture {
    /// Moves the fixture's clock one [`SESSION_STEP`] on and returns it.
    pub fn tick(&mut self) -> Instant {
        self.now += SESSION_STEP;
        self.now
    }
}

/// Builds a table of `n` active sessions, one per user, through `resolve` (as the shell does),
/// session `i` created at `SESSIONS_BORN + i · SESSION_STEP`.
pub fn build_session_table(n: usize) -> SessionFixture {
    let mut table = SessionTable::new(SessionLimits::default());
    let users = session_users(n);
    let ids = session_ids(n, SESSION_SEED);
    let mut now = SESSIONS_BORN;
    for (user, id) in users.iter().zip(&ids) {
        now += SESSION_STEP;
        let created = table.resolve(user, None, id.clone(), now, WALL);
        debug_assert!(created.is_ok(), "fixture session {id} was refused");
    }
    SessionFixture { table, users, ids, now }
}

/// The resident set size of this process in bytes (`VmRSS` of `/proc/self/status`), `None` when
/// unavailable.
pub fn rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Runs `bench` under criterion with this crate's run settings (and the command line's), then
/// prints criterion's summary: every bench target's `main`.
pub fn run(bench: fn(&mut criterion::Criterion)) {
    let mut c = criterion::Criterion::default()
        .measurement_time(MEASUREMENT_TIME)
        .warm_up_time(WARM_UP_TIME)
        .sample_size(SAMPLE_SIZE)
        .nresamples(RESAMPLES)
        .configure_from_args();
    bench(&mut c);
    c.final_summary();
}

/// `governor`'s keyed limiter on the store `RateLimiter::keyed` uses (DashMap), with a fake clock.
pub type Governor = governor::RateLimiter<
    String,
    DefaultKeyedStateStore<String>,
    FakeRelativeClock,
    NoOpMiddleware<Nanos>,
>;

/// A [`Governor`] enforcing `limit` (a per-minute limit, as every limit compared here) on `clock`.
pub fn governor(limit: RateLimit, clock: &FakeRelativeClock) -> Governor {
    let per_minute = std::num::NonZeroU32::MIN.saturating_add(limit.limit - 1);
    Governor::dashmap_with_clock(governor::Quota::per_minute(per_minute), clock.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: RateLimit = RateLimit::new(3, Duration::from_secs(60));

    #[test]
    fn sliding_log_is_exact() {
        let mut log = SlidingLog::new(LIMIT);
        let key = "a".to_string();
        for s in 0..3 {
            assert_eq!(log.check(&key, Instant::from_secs(s)), Decision::Allowed);
        }
        assert_eq!(
            log.check(&key, Instant::from_secs(10)),
            Decision::Denied { retry_after: Duration::from_secs(50) }
        );
        // The event at 0 leaves the window at exactly 60 s.
        assert_eq!(log.check(&key, Instant::from_secs(60)), Decision::Allowed);
        assert_eq!(
            log.check(&key, Instant::from_secs(60)),
            Decision::Denied { retry_after: Duration::from_secs(1) }
        );
        assert_eq!(log.len(), 1);
    }

    #[test]
    fn sequences_are_deterministic_and_in_range() {
        let a = key_sequence(1000, 7);
        assert_eq!(a, key_sequence(1000, 7));
        assert!(a.iter().all(|&i| i < 1000));
        assert_eq!(a.len(), SEQUENCE_LEN);
        let ids = session_ids(1000, 1);
        let distinct: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(distinct.len(), 1000);
        assert!(ids.iter().all(|id| id.as_str().len() == 32));
    }

    #[test]
    fn labels() {
        assert_eq!(count_label(1_000), "1k");
        assert_eq!(count_label(100_000), "100k");
        assert_eq!(count_label(1_000_000), "1M");
        assert_eq!(count_label(1_500), "1500");
    }

    #[test]
    fn fixture_holds_active_sessions() {
        let f = build_session_table(100);
        assert_eq!(f.table.len(), 100);
        assert_eq!(f.table.memory_stats().active, 100);
        assert!(f.table.get(f.ids[42].as_str()).is_some());
    }
}
