//! Memory per key of the three rate limiters (and per session of the session table), measured as
//! the growth of the resident set size (`VmRSS`) while one structure is filled with `n` keys:
//! 1M when benchmarking, 10k in test mode. Not a criterion benchmark: it prints a table.
//!
//! Each case runs in a fresh child process (this binary re-executed with `--child CASE N`), so
//! memory freed by an earlier case cannot be reused and hide a later one's growth. The keys are
//! generated before the first reading, so only what the structure itself holds is counted —
//! including its own copy of each key (about 32 bytes of heap for a 12-byte `String`; none for
//! the core limiter, which keeps a key of up to 24 bytes inline) and the spare capacity of its
//! hash table.
//!
//! Cases: `core` (one allowed event per key; its per-key ring is fixed-size whatever the
//! events), `governor` (one check per key), `sliding_log_1` (one event per key, the 1M-key
//! benchmark's steady state), `sliding_log_100` (100 events per key: a key at its limit) and
//! `sessions` (`n` active sessions with default limits, built through `resolve`; the users and
//! id strings are generated before the first reading, the table's own copies are counted).

use std::hint::black_box;
use std::process::Command;

use chatbox_benches::{
    bench_mode, count_label, governor, key_names, rss_bytes, session_id_strings, session_users,
    SlidingLog, LIMITER_STEP, SESSIONS_BORN, SESSION_SEED, SESSION_STEP, WALL,
};
use chatbox_core::rate::{RateLimit, RateLimiter};
use chatbox_core::session::{SessionId, SessionLimits, SessionTable};
use chatbox_core::time::duration_nanos;
use chatbox_core::Instant;
use compact_str::CompactString;
use governor::clock::FakeRelativeClock;

/// The limit every limiter enforces (100 per minute).
const LIMIT: RateLimit = RateLimit::USER_MESSAGES;

/// The cases, in report order.
const CASES: [&str; 5] = ["core", "governor", "sliding_log_1", "sliding_log_100", "sessions"];

/// A stopwatch for the build time shown beside each case.
#[allow(clippy::disallowed_methods, reason = "a benchmark harness measures wall time")]
fn stopwatch() -> std::time::Instant {
    std::time::Instant::now()
}

/// Fills one structure with `n` keys and prints `rss_growth_bytes build_millis`.
fn child(case: &str, n: usize) {
    let keys = key_names(n);
    let (users, ids) = if case == "sessions" {
        (session_users(n), session_id_strings(n, SESSION_SEED))
    } else {
        (Vec::new(), Vec::new())
    };
    let step = duration_nanos(LIMITER_STEP);
    let before = rss_bytes().unwrap_or(0);
    let start = stopwatch();
    let held: Box<dyn std::any::Any> = match case {
        "core" => {
            let mut limiter = RateLimiter::<CompactString>::new(LIMIT, n);
            for (i, key) in keys.iter().enumerate() {
                let _ = limiter.check(key.as_str(), Instant::from_nanos(i as u64 * step));
            }
            Box::new(limiter)
        }
        "governor" => {
            let clock = FakeRelativeClock::default();
            let limiter = governor(LIMIT, &clock);
            for key in &keys {
                clock.advance(LIMITER_STEP);
                let _ = limiter.check_key(key);
            }
            Box::new(limiter)
        }
        "sliding_log_1" | "sliding_log_100" => {
            let events = if case == "sliding_log_1" { 1 } else { LIMIT.limit as u64 };
            let mut log = SlidingLog::new(LIMIT);
            for (i, key) in keys.iter().enumerate() {
                for e in 0..events {
                    // All events lie within 0.1 s (key-major order): none leaves the window.
                    let at = Instant::from_nanos(i as u64 * events + e);
                    let _ = log.check(key, at);
                }
            }
            Box::new(log)
        }
        "sessions" => {
            let mut table = SessionTable::new(SessionLimits::default());
            let mut now = SESSIONS_BORN;
            for (user, id) in users.iter().zip(&ids) {
                now += SESSION_STEP;
                let created = table.resolve(user, None, SessionId::from(id.as_str()), now, WALL);
                assert!(created.is_ok(), "session {id} refused");
            }
            Box::new(table)
        }
        other => panic!("unknown case {other}"),
    };
    let millis = start.elapsed().as_millis();
    let after = rss_bytes().unwrap_or(0);
    black_box(&held);
    black_box((&keys, &users, &ids));
    println!("{} {}", after.saturating_sub(before), millis);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let case = args.get(i + 1).map(String::as_str).unwrap_or_default();
        let n = args.get(i + 2).and_then(|s| s.parse().ok()).unwrap_or(1);
        child(case, n);
        return;
    }
    // `cargo bench -- FILTER` passes the filter to every bench binary: run only when it names us.
    let filters: Vec<&String> = args.iter().skip(1).filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "memory".contains(f.as_str())) {
        return;
    }
    let n: usize = if bench_mode() { 1_000_000 } else { 10_000 };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => panic!("cannot find this executable: {e}"),
    };
    println!("memory: RSS growth while filling one structure with {} keys", count_label(n));
    println!("{:<16} {:>14} {:>12} {:>10}", "case", "growth (MiB)", "bytes/key", "build ms");
    for case in CASES {
        let out = Command::new(&exe).arg("--child").arg(case).arg(n.to_string()).output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => panic!("case {case} failed: {}", String::from_utf8_lossy(&out.stderr)),
            Err(e) => panic!("cannot run case {case}: {e}"),
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let mut fields = text.split_whitespace().map(|f| f.parse::<u64>().unwrap_or(0));
        let growth = fields.next().unwrap_or(0);
        let millis = fields.next().unwrap_or(0);
        println!(
            "{:<16} {:>14.1} {:>12.0} {:>10}",
            case,
            growth as f64 / (1024.0 * 1024.0),
            growth as f64 / n as f64,
            millis
        );
    }
}
