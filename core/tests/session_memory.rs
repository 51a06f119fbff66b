//! Bounded memory (seed issue #1): one million create → end cycles over weeks of simulated time
//! keep the table's size bounded by the sessions that may legitimately be held — the active ones
//! plus those ended within `ended_ttl` — never by the number of cycles. The sweeper wakes exactly
//! when `next_deadline` says, as the shell's sweeper does.

use std::collections::VecDeque;
use std::time::Duration;

use chatbox_core::session::{ResolutionKind, SessionId, SessionLimits, SessionTable};
use chatbox_core::time::{Instant, UnixMillis};

const CYCLES: u64 = 1_000_000;
const USERS: u64 = 100_000;

/// A small deterministic generator (xorshift64*), so the run is the same every time.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn wall(now: Instant) -> UnixMillis {
    UnixMillis(
        1_700_000_000_000
            + i64::try_from(now.as_nanos() / 1_000_000)
                .expect("test times fit in i64 milliseconds"),
    )
}

#[test]
fn a_million_sessions_over_weeks_stay_bounded_by_the_live_ones() {
    let limits = SessionLimits::default();
    let mut table = SessionTable::new(limits);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut now = Instant::ZERO;
    // End instants of every session ended so far whose end is within `ended_ttl` of `now`,
    // oldest first: the ended sessions the table may still hold.
    let mut recent_ends: VecDeque<Instant> = VecDeque::new();
    let (mut max_len, mut sweeps, mut created, mut idle_ended) = (0usize, 0u64, 0u64, 0u64);

    for cycle in 0..CYCLES {
        // A few seconds pass between cycles (1..=5 s): about 35 days in all.
        now += Duration::from_millis(1_000 + rng.below(4_001));

        if table.next_deadline().is_some_and(|due| due <= now) {
            let report = table.sweep(now, wall(now));
            sweeps += 1;
            idle_ended += report.idle_ended.len() as u64;
            recent_ends.extend(report.idle_ended.iter().map(|_| now));
            while recent_ends.front().is_some_and(|end| *end + limits.ended_ttl <= now) {
                recent_ends.pop_front();
            }
            let stats = table.memory_stats();
            assert_eq!(stats.active + stats.inactive, table.len());
            assert!(
                stats.inactive <= recent_ends.len(),
                "cycle {cycle}: {} ended sessions held, only {} ended within the TTL",
                stats.inactive,
                recent_ends.len()
            );
            assert!(table.len() <= stats.active + recent_ends.len());
            max_len = max_len.max(table.len());
            if sweeps % 50_000 == 0 {
                table.check_invariants().unwrap();
            }
        }

        let user = format!("user-{}", rng.below(USERS));
        let fresh = SessionId::from(format!("{cycle:032x}"));
        let r = table.resolve(&user, None, fresh, now, wall(now)).unwrap();
        created += u64::from(r.kind == ResolutionKind::Created);
        let id = r.id;
        // Some sessions also see a connection and a reply (they must not change the bound).
        if cycle % 8 == 0 {
            table.attach(id.as_str(), now).unwrap();
            table.record_message(id.as_str(), now).unwrap();
            table.record_reply(id.as_str(), Duration::from_millis(rng.below(3_000)), 12).unwrap();
            table.detach(id.as_str(), now).unwrap();
        }
        // Nine in ten users end their session; the rest walk away and the idle sweep ends it.
        if rng.below(10) != 0 {
            let _ended = table.end(id.as_str(), now, wall(now)).unwrap();
            recent_ends.push_back(now);
        }
        max_len = max_len.max(table.len());
    }

    table.check_invariants().unwrap();
    assert!(created > CYCLES * 99 / 100, "only {created} sessions created");
    assert!(idle_ended > CYCLES / 20, "only {idle_ended} sessions idle-ended");
    // Sessions held at any time: at most (idle_timeout + ended_ttl) / min step = 4,500; in
    // practice ~ 270 ended within 15 min (3 s per cycle, 9 in 10 ended) plus ~ 120 abandoned
    // within the hour and ~ 80 idle-ended within 15 min.
    assert!(max_len < 4_500, "table grew to {max_len} sessions");
    eprintln!("{CYCLES} cycles, {sweeps} sweeps, max {max_len} sessions held");

    // Long after the last cycle everything is ended and then dropped.
    let later = now + limits.idle_timeout + limits.ended_ttl;
    let _ = table.sweep(now + limits.idle_timeout, wall(later));
    let _ = table.sweep(later, wall(later));
    assert!(table.is_empty(), "{} sessions left", table.len());
    assert_eq!(table.next_deadline(), None);
}
