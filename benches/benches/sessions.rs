//! chatbox-core's [`SessionTable`] at 10k and 1M sessions (1k in criterion's test mode): create
//! (`resolve` of a new user with a fresh id), lookup (`get`), `end` of an active session, and
//! `sweep` of a table whose sessions have all idled out.
//!
//! The table (`n` active sessions, one per user, no connection attached, default limits) is
//! built once per size, lazily, and every measured operation leaves it as it found it: created
//! sessions are removed and ended ones resumed outside the timed sections (`iter_custom`). The
//! sweep runs on a clone of the table (`iter_batched`, one clone per iteration, cloned and
//! dropped outside the timing) at the instant all `n` sessions reach their idle timeout, so each
//! iteration ends `n` sessions; criterion reports the time per sweep and the sessions per second
//! (`Throughput::Elements(n)`).
//!
//! The shell sweeps in batches of [`SWEEP_BATCH`] steps, one lock hold each (issue 18 item 5), so
//! the lock is held for one batch, not one sweep: `sweep_one_batch` times single batches of the
//! same all-expired sweep (a clone swept batch by batch, re-cloned untimed when done), and in
//! benchmark mode the binary then prints the distribution of one batch's time over
//! [`BATCH_PASSES`] whole batched sweeps: p50, p99 and max, the max being the longest lock hold.

use std::hint::black_box;
use std::time::Duration;

use chatbox_benches::{
    bench_mode, build_session_table, count_label, session_counts, SessionFixture, SplitMix64,
    SEQUENCE_LEN, WALL,
};
use chatbox_core::session::{
    ResolutionKind, SessionId, SessionLimits, SessionTable, SweepReport, SWEEP_BATCH,
};
use criterion::{BatchSize, Criterion, SamplingMode, Throughput};

/// Most operations timed between two untimed clean-ups (bounds the temporary growth).
const CHUNK: u64 = 10_000;

/// Whole batched sweeps whose batches make the printed distribution of one batch's time.
const BATCH_PASSES: usize = 3;

/// A stopwatch for `iter_custom`: benchmarks measure real time by definition.
#[allow(clippy::disallowed_methods, reason = "a benchmark harness measures wall time")]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

/// Mints the new users and fresh ids of the create benchmark. Both are spread over the key
/// space like real ones (a new user sorts next to a random existing one, an id is 32 random hex
/// digits), so inserts land in random places of the table's ordered maps, not at one hot edge.
struct Minter {
    rng: SplitMix64,
    count: u64,
}

impl Minter {
    /// A new user and a fresh session id. The id's last 8 hex digits have the top bit set, so it
    /// differs from every fixture id (whose last 8 digits are an index below 2^31).
    fn next(&mut self, n: usize) -> (String, SessionId) {
        self.count += 1;
        let user = format!("user-{:07}-new{}", self.rng.below(n), self.count);
        let high = self.rng.next_u64();
        let low = (self.rng.next_u64() & !0xFFFF_FFFF) | 0x8000_0000 | (self.count & 0x7FFF_FFFF);
        (user, SessionId::from(format!("{high:016x}{low:016x}")))
    }
}

/// Creates `iters` sessions for new users and returns the time the `resolve` calls took; the
/// new sessions are removed afterwards, untimed.
fn create(f: &mut SessionFixture, minter: &mut Minter, iters: u64) -> Duration {
    let n = f.ids.len();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let chunk = left.min(CHUNK);
        let (users, fresh): (Vec<String>, Vec<SessionId>) =
            (0..chunk).map(|_| minter.next(n)).unzip();
        let kept = fresh.clone();
        let start = stopwatch();
        for (user, id) in users.iter().zip(fresh) {
            let now = f.tick();
            let created = f.table.resolve(user, None, id, now, WALL);
            debug_assert!(created.as_ref().is_ok_and(|r| r.kind == ResolutionKind::Created));
            let _ = black_box(created);
        }
        total += start.elapsed();
        for id in &kept {
            let _removed = f.table.remove(id.as_str());
        }
        left -= chunk;
    }
    total
}

/// Ends `iters` distinct active sessions (walking a random permutation) and returns the time
/// the `end` calls took; each is made active again afterwards, untimed: an explicit end is
/// final (issue 16), so the ended record is removed and its owner's `resolve` creates it anew
/// under the same id.
fn end(f: &mut SessionFixture, order: &[u32], cursor: &mut usize, iters: u64) -> Duration {
    let n = f.ids.len();
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        // At most `n` per chunk, so the sessions of one chunk are distinct (still active).
        let chunk = left.min(CHUNK).min(n as u64) as usize;
        let picked: Vec<usize> =
            (0..chunk).map(|k| order[(*cursor + k) % order.len()] as usize).collect();
        *cursor = (*cursor + chunk) % order.len();
        let start = stopwatch();
        for &i in &picked {
            let now = f.tick();
            let ended = f.table.end(f.ids[i].as_str(), now, WALL);
            let _ = black_box(ended);
        }
        total += start.elapsed();
        for &i in &picked {
            let now = f.tick();
            let (user, id) = (&f.users[i], f.ids[i].as_str());
            let _removed = f.table.remove(id);
            let created = f.table.resolve(user, None, SessionId::from(id), now, WALL);
            debug_assert!(created.is_ok_and(|r| r.kind == ResolutionKind::Created));
        }
        left -= chunk as u64;
    }
    total
}

/// Times `iters` single batches of the all-expired sweep at `expired`, continuing the partly
/// swept clone in `swept` and cloning `table` afresh (untimed) when a sweep is done.
fn one_batch(
    table: &SessionTable,
    swept: &mut Option<SessionTable>,
    expired: chatbox_core::Instant,
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let t = swept.get_or_insert_with(|| table.clone());
        let start = stopwatch();
        let report = t.sweep_batch(expired, WALL);
        total += start.elapsed();
        if !black_box(&report).pending {
            *swept = None;
        }
    }
    total
}

/// The time of every batch of [`BATCH_PASSES`] batched sweeps of clones of `table` at
/// `expired`, sorted, and the longest whole batched sweep (the sum of its batches).
fn batch_times(table: &SessionTable, expired: chatbox_core::Instant) -> (Vec<Duration>, Duration) {
    let mut times = Vec::new();
    let mut longest = Duration::ZERO;
    for _ in 0..BATCH_PASSES {
        let mut t = table.clone();
        let mut pass = Duration::ZERO;
        loop {
            let start = stopwatch();
            let report: SweepReport = t.sweep_batch(expired, WALL);
            let took = start.elapsed();
            times.push(took);
            pass += took;
            if !black_box(report).pending {
                break;
            }
        }
        longest = longest.max(pass);
    }
    times.sort_unstable();
    (times, longest)
}

/// The `q`-quantile (0..=1) of sorted `times`.
fn quantile(times: &[Duration], q: f64) -> Duration {
    let last = times.len().saturating_sub(1);
    times.get((last as f64 * q).round() as usize).copied().unwrap_or_default()
}

/// A random permutation of `0..n` (Fisher–Yates).
fn permutation(n: usize, seed: u64) -> Vec<u32> {
    let mut rng = SplitMix64::new(seed);
    let mut order: Vec<u32> = (0..n).map(|i| u32::try_from(i).unwrap_or(u32::MAX)).collect();
    for i in (1..n).rev() {
        order.swap(i, rng.below(i + 1));
    }
    order
}

fn sessions(c: &mut Criterion) {
    let idle = SessionLimits::default().idle_timeout;
    for n in session_counts() {
        let label = count_label(n);
        let mut fixture: Option<SessionFixture> = None;
        let lookups: Vec<u32> = chatbox_benches::key_sequence(n, 0x6E7 ^ n as u64);
        let order = permutation(n, 0xE4D ^ n as u64);

        let mut group = c.benchmark_group(format!("sessions_{label}"));
        let mut minter = Minter { rng: SplitMix64::new(0xC4EA7E ^ n as u64), count: 0 };
        group.bench_function("create", |b| {
            let f = fixture.get_or_insert_with(|| build_session_table(n));
            b.iter_custom(|iters| create(f, &mut minter, iters));
        });
        let mut pos = 0usize;
        group.bench_function("get", |b| {
            let f = fixture.get_or_insert_with(|| build_session_table(n));
            b.iter(|| {
                let id = &f.ids[lookups[pos & (SEQUENCE_LEN - 1)] as usize];
                pos = pos.wrapping_add(1);
                black_box(f.table.get(id.as_str())).is_some()
            });
        });
        let mut cursor = 0usize;
        group.bench_function("end", |b| {
            let f = fixture.get_or_insert_with(|| build_session_table(n));
            b.iter_custom(|iters| end(f, &order, &mut cursor, iters));
        });
        group.finish();

        let mut group = c.benchmark_group(format!("sessions_sweep_{label}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(10)
            .throughput(Throughput::Elements(n as u64));
        group.bench_function("sweep_all_expired", |b| {
            let f = fixture.get_or_insert_with(|| build_session_table(n));
            let expired = f.now + idle;
            b.iter_batched(
                || f.table.clone(),
                |mut table: SessionTable| {
                    let report = table.sweep(expired, WALL);
                    debug_assert_eq!(report.idle_ended.len(), n);
                    (table, report)
                },
                BatchSize::PerIteration,
            );
        });
        group.finish();

        let mut group = c.benchmark_group(format!("sessions_sweep_batch_{label}"));
        group.throughput(Throughput::Elements(SWEEP_BATCH.min(n) as u64));
        let mut swept: Option<SessionTable> = None;
        group.bench_function("sweep_one_batch", |b| {
            let f = fixture.get_or_insert_with(|| build_session_table(n));
            let expired = f.now + idle;
            b.iter_custom(|iters| one_batch(&f.table, &mut swept, expired, iters));
        });
        group.finish();
        drop(swept);
        if let (true, Some(f)) = (bench_mode(), &fixture) {
            let (times, longest) = batch_times(&f.table, f.now + idle);
            eprintln!(
                "sessions_sweep_batch_{label}: {} batches of at most {SWEEP_BATCH} steps; one batch \
                 (one lock hold) p50 {:?}, p99 {:?}, max {:?}; longest whole batched sweep {:?}",
                times.len(),
                quantile(&times, 0.5),
                quantile(&times, 0.99),
                times.last().copied().unwrap_or_default(),
                longest,
            );
        }
        if let Some(f) = &fixture {
            // Every measured operation restored the table.
            debug_assert_eq!(f.table.memory_stats().active, n);
            debug_assert!(f.table.next_deadline().is_some_and(|at| at <= f.now + idle));
        }
    }
}

fn main() {
    chatbox_benches::run(sessions);
}
