//! Loom model checking of `chatbox_core::shared`: every interleaving of the wrappers' critical
//! sections, within LOOM_MAX_PREEMPTIONS. Run with
//! `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom \
//!  cargo test -p chatbox-core --release --test loom`.
#![cfg(loom)]

use std::time::Duration;

use chatbox_core::origin::{OriginDecision, OriginPolicy};
use chatbox_core::shared::{OriginList, ShutdownLatch};
use chatbox_core::shutdown::Effect;
use chatbox_core::Instant;
use loom::sync::Arc;
use loom::thread;

/// Seed property 14 under loom: a check racing a replace sees the old list or the new one as a
/// whole — exactly one of the two origins is allowed in any snapshot.
#[test]
fn loom_origin_replace_is_atomic_for_readers() {
    loom::model(|| {
        let list = Arc::new(OriginList::new(OriginPolicy::new(["https://a.example"])));
        let writer = {
            let list = Arc::clone(&list);
            thread::spawn(move || list.replace(OriginPolicy::new(["https://b.example"])))
        };
        let reader = {
            let list = Arc::clone(&list);
            thread::spawn(move || {
                let snap = list.snapshot();
                let a = snap.check(Some("https://a.example")) == OriginDecision::Allowed;
                let b = snap.check(Some("https://b.example")) == OriginDecision::Allowed;
                assert!(a ^ b, "a snapshot is one whole policy");
            })
        };
        writer.join().unwrap();
        reader.join().unwrap();
        assert_eq!(list.check(Some("https://b.example")), OriginDecision::Allowed);
        assert_eq!(list.check(Some("https://a.example")), OriginDecision::Refused);
    });
}

/// A connection registering while shutdown begins is either refused, or counted and then closed
/// or force-closed: `Exit` never happens with a registered connection unaccounted for.
#[test]
fn loom_no_connection_slips_past_shutdown() {
    loom::model(|| {
        let latch = Arc::new(ShutdownLatch::new());
        let conn = {
            let latch = Arc::clone(&latch);
            thread::spawn(move || latch.try_open_connection())
        };
        let effects = latch.begin(Instant::ZERO, Duration::from_secs(30));
        let opened = conn.join().unwrap();
        assert!(effects.contains(&Effect::StopAccepting));
        assert_eq!(latch.open_connections(), usize::from(opened));
        let mut all = effects;
        all.extend(latch.storage_flushed(Instant::ZERO));
        if opened {
            assert!(!all.contains(&Effect::Exit), "cannot exit with a connection open");
            all.extend(latch.handle_timeout(Instant::from_secs(30)));
            assert!(all.contains(&Effect::ForceClose { count: 1 }));
        }
        assert!(all.contains(&Effect::Exit));
        assert!(!latch.try_open_connection(), "refused after shutdown");
    });
}

/// A reply finishing concurrently with `begin` is counted exactly once: the plan closes
/// connections without cutting a reply that already finished.
#[test]
fn loom_reply_finishing_during_begin() {
    loom::model(|| {
        let latch = Arc::new(ShutdownLatch::new());
        assert!(latch.try_start_reply());
        let finisher = {
            let latch = Arc::clone(&latch);
            thread::spawn(move || latch.reply_finished(Instant::from_secs(1)))
        };
        let mut effects = latch.begin(Instant::ZERO, Duration::from_secs(30));
        effects.extend(finisher.join().unwrap());
        assert!(effects.contains(&Effect::CloseConnections));
        assert!(!effects.iter().any(|e| matches!(e, Effect::CutReplies { .. })));
    });
}

/// Two handshakes racing for the last slot: exactly one wins, and dropping the guards returns
/// every slot (no leak, no double release).
#[test]
fn loom_slots_race_for_the_last_slot() {
    use chatbox_core::shared::SharedSlots;
    loom::model(|| {
        let slots = Arc::new(SharedSlots::<String>::new(1));
        let user = "u1".to_string();
        let other = {
            let slots = Arc::clone(&slots);
            let user = user.clone();
            // The guard is returned, so the slot stays held until the end of the model.
            thread::spawn(move || SharedSlots::try_acquire(&slots, &user).ok())
        };
        let mine = SharedSlots::try_acquire(&slots, &user);
        let theirs = other.join().unwrap();
        assert!(mine.is_ok() ^ theirs.is_some(), "exactly one racing handshake gets the slot");
        drop(mine);
        drop(theirs);
        assert_eq!(slots.total(), 0, "every slot returned");
    });
}

/// Two messages racing for the last unit of a user's budget: exactly one is allowed.
#[test]
fn loom_limiter_never_double_spends() {
    use chatbox_core::rate::RateLimit;
    use chatbox_core::shared::SharedLimiter;
    loom::model(|| {
        let limiter =
            Arc::new(SharedLimiter::<String>::new(RateLimit::new(1, Duration::from_secs(60)), 8));
        let other = {
            let limiter = Arc::clone(&limiter);
            thread::spawn(move || limiter.check(&"u".to_string(), Instant::ZERO).is_allowed())
        };
        let mine = limiter.check(&"u".to_string(), Instant::ZERO).is_allowed();
        let theirs = other.join().unwrap();
        assert!(mine ^ theirs, "one allowed, one denied");
    });
}

/// Two connections of one user resolving at the same time (each proposing its own fresh id)
/// end up in the same, single active session.
#[test]
fn loom_concurrent_resolve_yields_one_active_session() {
    use chatbox_core::session::{SessionId, SessionLimits};
    use chatbox_core::shared::SessionHandle;
    use chatbox_core::UnixMillis;
    loom::model(|| {
        let handle = Arc::new(SessionHandle::new(SessionLimits::default()));
        let resolve = |h: &SessionHandle, fresh: &str| {
            h.with(|t| {
                t.resolve("u1", None, SessionId::from(fresh), Instant::ZERO, UnixMillis(0))
                    .expect("the owner may always resolve")
                    .id
            })
        };
        let other = {
            let handle = Arc::clone(&handle);
            thread::spawn(move || resolve(&handle, "fresh-b"))
        };
        let mine = resolve(&handle, "fresh-a");
        let theirs = other.join().unwrap();
        assert_eq!(mine, theirs, "both connections use the same session");
        let stats = handle.with(|t| t.memory_stats());
        assert_eq!((stats.active, stats.total), (1, 1));
    });
}
