//! Seed properties 15 and 16: shutdown finishes by its deadline, and when it finishes every
//! connection has been closed or was force-closed.

use std::time::Duration;

use chatbox_core::shutdown::{Effect, Phase, ShutdownPlan};
use chatbox_core::Instant;
use proptest::prelude::*;

#[derive(Debug, Clone, Copy)]
enum Ev {
    ReplyDone,
    ConnClosed,
    Flushed,
    Wait(u64),
}

fn ev() -> impl Strategy<Value = Ev> {
    prop_oneof![
        Just(Ev::ReplyDone),
        Just(Ev::ConnClosed),
        Just(Ev::Flushed),
        (0u64..10_000).prop_map(Ev::Wait),
    ]
}

proptest! {
    #[test]
    fn prop_15_shutdown_respects_deadline(
        conns in 0usize..50, replies in 0usize..20, timeout_ms in 1u64..60_000,
        events in prop::collection::vec(ev(), 0..200),
    ) {
        let mut p = ShutdownPlan::new();
        for _ in 0..conns { p.connection_opened(); }
        for _ in 0..replies { p.reply_started(); }
        let start = Instant::from_secs(7);
        let timeout = Duration::from_millis(timeout_ms);
        let mut now = start;
        let mut exits = 0;
        let mut done_at = None;
        let mut apply = |fx: Vec<Effect>, now: Instant, exits: &mut usize| {
            if fx.contains(&Effect::Exit) { done_at = Some(now); }
            *exits += fx.iter().filter(|e| **e == Effect::Exit).count();
        };
        apply(p.begin(start, timeout), start, &mut exits);
        for e in events {
            // The driver honours poll_timeout: it never sleeps past the pending deadline.
            let fx = match e {
                Ev::ReplyDone => p.reply_finished(now),
                Ev::ConnClosed => p.connection_closed(now),
                Ev::Flushed => p.storage_flushed(now),
                Ev::Wait(ms) => {
                    let target = now + Duration::from_millis(ms);
                    now = p.poll_timeout().map_or(target, |d| d.min(target));
                    p.handle_timeout(now)
                }
            };
            apply(fx, now, &mut exits);
            prop_assert!(p.poll_timeout().is_none_or(|d| d <= start + timeout));
        }
        // Whatever the peers did, the driver reaches Done by the deadline.
        while let Some(at) = p.poll_timeout() {
            prop_assert!(at <= start + timeout);
            now = at;
            apply(p.handle_timeout(now), now, &mut exits);
        }
        prop_assert_eq!(p.phase(), Phase::Done);
        let done_at = done_at.expect("Exit was emitted");
        prop_assert!(done_at <= start + timeout, "done at {:?}", done_at);
        prop_assert_eq!(exits, 1, "Exit exactly once");
    }

    #[test]
    fn prop_16_shutdown_closes_all_connections(
        conns in 0usize..50, closes in 0usize..60, flush in any::<bool>(), timeout_ms in 1u64..60_000,
    ) {
        let mut p = ShutdownPlan::new();
        for _ in 0..conns { p.connection_opened(); }
        let start = Instant::ZERO;
        let mut effects = p.begin(start, Duration::from_millis(timeout_ms));
        let mut closed_gracefully = 0;
        for _ in 0..closes.min(conns) {
            effects.extend(p.connection_closed(start));
            closed_gracefully += 1;
        }
        if flush { effects.extend(p.storage_flushed(start)); }
        while let Some(at) = p.poll_timeout() { effects.extend(p.handle_timeout(at)); }
        prop_assert_eq!(p.phase(), Phase::Done);
        prop_assert!(effects.contains(&Effect::CloseConnections), "close frames were sent");
        let forced: usize = effects.iter().map(|e| match e { Effect::ForceClose { count } => *count, _ => 0 }).sum();
        prop_assert_eq!(closed_gracefully + forced, conns, "every connection closed or force-closed");
        prop_assert_eq!(p.open_connections(), 0);
    }
}
