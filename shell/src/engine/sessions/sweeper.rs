//! The sweeper task (seed fixes #1 and #11): wakes when core's session table says its next
//! deadline is due (and at least every cleanup interval), ends sessions idle past
//! `SESSION_IDLE_TIMEOUT` and persists their end, drops ended sessions older than `SESSION_TTL`
//! (and the replies' upstream conversation ids and the persistence's recent messages with them), and cleans idle rate-limiter keys on
//! its own `Periodic` schedule. Stops when shutdown begins.
//!
//! A sweep takes the table's lock once per batch of at most `SWEEP_BATCH` steps (core's
//! `SessionTable::sweep_batch`) and yields to the runtime between batches, so a million sessions
//! expiring together never hold the lock every connection needs for more than one batch (issue 18
//! item 5; BENCHMARKS.md has the batch times).

use std::sync::Arc;

use chatbox_core::session::SweepReport;
use chatbox_core::timer::Periodic;

use crate::engine::delivery::AdminEvent;
use crate::engine::hub::Engine;
use crate::engine::persistence::{PendingWrite, Persisted};

/// Runs until the server stops accepting.
pub async fn run(engine: Arc<Engine>) {
    let mut stop = engine.stop_signal();
    let interval = engine.config.sessions.cleanup_interval;
    let mut limiter_cleanup =
        Periodic::new(engine.config.rate.cleanup_interval, engine.clock.now());
    loop {
        let now = engine.clock.now();
        let mut next = now + interval;
        if let Some(due) = engine.sessions.with(|t| t.next_deadline()) {
            next = next.min(due);
        }
        if let Some(due) = limiter_cleanup.poll_timeout() {
            next = next.min(due);
        }
        tokio::select! {
            _ = tokio::time::sleep_until(engine.clock.to_runtime(next)) => {}
            _ = crate::engine::supervisor::signalled(&mut stop) => return,
        }
        sweep_once(&engine).await;
        let now = engine.clock.now();
        if limiter_cleanup.handle_timeout(now) {
            let removed = engine.limits.cleanup(now) + engine.alerts.cleanup(now);
            tracing::debug!(removed, "rate limiter cleanup");
        }
        engine.metrics.observe_sessions(engine.sessions.with(|t| t.memory_stats()));
    }
}

/// One sweep: end idle sessions (persisting `endTs`/`dur`) and drop expired ones, batch by
/// batch at one instant, each batch under its own short lock hold and handled before the next.
pub async fn sweep_once(engine: &Engine) {
    let (now, wall) = (engine.clock.now(), engine.clock.wall());
    loop {
        let (report, held) = engine.sessions.with(|t| {
            let taken = engine.clock.now();
            let report = t.sweep_batch(now, wall);
            (report, engine.clock.now() - taken)
        });
        engine.metrics.sweep_batch.observe(held.as_secs_f64());
        handle(engine, &report).await;
        if !report.pending {
            return;
        }
        // Let the connections waiting for the table in before the next batch.
        tokio::task::yield_now().await;
    }
}

/// Persists and announces what one sweep batch did (outside the table's lock).
async fn handle(engine: &Engine, report: &SweepReport) {
    let idle = engine.config.sessions.idle_timeout;
    for ended in &report.idle_ended {
        let id = ended.id.as_str();
        // Idle here, but another instance sharing the store may have stored messages meanwhile:
        // the store ends it only if none came within the idle timeout (issue 14).
        let quiet_since = ended.ended_wall.minus(idle);
        let end = PendingWrite::End {
            session_id: id.to_string(),
            at: ended.ended_wall,
            quiet_since: Some(quiet_since),
        };
        match engine.persistence.persist(end).await {
            Ok(Persisted::Declined) => {
                // Served elsewhere: this instance's stale copy goes, the stored session stays.
                tracing::info!(session_id = id, "session not ended: messages were stored elsewhere within the idle timeout; forgotten here");
                engine.sessions.with(|t| t.remove(id));
                engine.forget_session_caches(std::iter::once(id));
                continue;
            }
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(session_id = id, %error, "persisting an idle end failed");
            }
        }
        engine.metrics.sessions_ended.inc();
        tracing::info!(session_id = id, "session ended after inactivity");
        let owner = engine.sessions.owner_of(id).unwrap_or_default();
        engine.delivery.admin_event(AdminEvent::SessionEnded, id, &owner);
    }
    if !report.dropped.is_empty() {
        engine.forget_session_caches(report.dropped.iter().map(|id| id.as_str()));
        tracing::debug!(dropped = report.dropped.len(), "expired sessions dropped from memory");
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::engine::frames::testing::Harness;

    const HOUR: Duration = Duration::from_secs(3600);

    /// A session of `user` created through resolution (persisted, no connection attached).
    async fn session(h: &Harness, user: &str) -> String {
        let engine = &h.engine;
        engine.sessions.resolve(&engine.persistence, user, "proposed").await.expect("created")
    }

    fn stored_end(h: &Harness, id: &str) -> Option<chatbox_core::UnixMillis> {
        h.store.snapshot().into_iter().find(|d| d.id == id).and_then(|d| d.ended)
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_session_is_ended_and_its_end_stored_only_after_the_idle_timeout() {
        let h = Harness::with_config(|c| c.sessions.idle_timeout = HOUR).await;
        let id = session(&h, "u1").await;
        tokio::time::advance(HOUR - Duration::from_secs(1)).await;
        sweep_once(&h.engine).await;
        assert_eq!(stored_end(&h, &id), None, "not idle long enough");
        assert_eq!(h.engine.metrics.sessions_ended.get(), 0);

        tokio::time::advance(Duration::from_secs(2)).await;
        sweep_once(&h.engine).await;
        assert!(stored_end(&h, &id).is_some(), "the idle end is persisted");
        assert_eq!(h.engine.metrics.sessions_ended.get(), 1);
        let ended = h.engine.sessions.with(|t| t.get(&id).map(|s| s.end_cause()));
        assert_eq!(ended, Some(Some(chatbox_core::session::EndCause::Idle)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_copy_idle_here_is_not_ended_while_another_instance_stores_its_messages() {
        use std::sync::Arc;
        let store = Arc::new(crate::engine::persistence::MemoryStore::new());
        let echo = || vec![Arc::new(crate::adapters::llm::echo::EchoProvider) as _];
        let edit = |c: &mut chatbox_core::config::Config| c.sessions.idle_timeout = HOUR;
        let a = Harness::with_store(edit, echo(), Arc::clone(&store), 64).await;
        let id = session(&a, "u1").await;
        // Another instance on the same store, where the user chats shortly before A's timeout.
        let b = Harness::with_store(edit, echo(), Arc::clone(&store), 64).await;
        tokio::time::advance(HOUR - Duration::from_secs(60)).await;
        let mut user = b.connect("u1", false);
        let text = format!(r#"{{"type":"user_message","session_id":"{id}","content":"hi"}}"#);
        b.send(&user, &text).await;
        b.until(&mut user, crate::engine::frames::testing::is_done).await;
        tokio::time::advance(Duration::from_secs(120)).await;
        sweep_once(&a.engine).await;
        assert_eq!(stored_end(&a, &id), None, "still active in the store");
        assert_eq!(a.engine.sessions.owner_of(&id), None, "A's stale copy is forgotten");
        assert_eq!(a.engine.metrics.sessions_ended.get(), 0);
        // (That the store ends it once a whole idle timeout passes without a message is
        // `a_copy_idle_on_one_instance_does_not_end_a_session_served_by_the_other` against
        // MongoDB: the wall clock does not move with the paused runtime here.)
        drop(user);
    }

    #[tokio::test(start_paused = true)]
    async fn a_session_with_a_connection_is_not_ended() {
        let h = Harness::with_config(|c| c.sessions.idle_timeout = HOUR).await;
        let id = session(&h, "u1").await;
        let user = h.connect("u1", false);
        h.engine.sessions.bind(&h.engine.delivery, user.ctx.id, &id);
        tokio::time::advance(3 * HOUR).await;
        sweep_once(&h.engine).await;
        assert_eq!(stored_end(&h, &id), None);
        assert_eq!(h.engine.sessions.owner_of(&id).as_deref(), Some("u1"));
    }

    #[tokio::test(start_paused = true)]
    async fn an_ended_session_leaves_memory_after_the_session_ttl() {
        let h = Harness::with_config(|c| {
            c.sessions.idle_timeout = HOUR;
            c.sessions.reconnect_timeout = HOUR;
            c.sessions.ttl = 2 * HOUR;
        })
        .await;
        let id = session(&h, "u1").await;
        tokio::time::advance(HOUR + Duration::from_secs(1)).await;
        sweep_once(&h.engine).await;
        assert_eq!(h.engine.sessions.owner_of(&id).as_deref(), Some("u1"), "ended, still held");

        tokio::time::advance(2 * HOUR - Duration::from_secs(2)).await;
        sweep_once(&h.engine).await;
        assert!(h.engine.sessions.owner_of(&id).is_some(), "not yet SESSION_TTL after its end");
        tokio::time::advance(Duration::from_secs(2)).await;
        sweep_once(&h.engine).await;
        assert_eq!(h.engine.sessions.owner_of(&id), None, "dropped SESSION_TTL after its end");
        assert!(stored_end(&h, &id).is_some(), "the store keeps it");
    }

    #[tokio::test(start_paused = true)]
    async fn a_sweep_larger_than_one_batch_ends_every_due_session() {
        let h = Harness::with_config(|c| c.sessions.idle_timeout = HOUR).await;
        let n = chatbox_core::session::SWEEP_BATCH + 7;
        let mut ids = Vec::new();
        for i in 0..n {
            ids.push(session(&h, &format!("u{i}")).await);
        }
        tokio::time::advance(HOUR + Duration::from_secs(1)).await;
        sweep_once(&h.engine).await;
        assert_eq!(h.engine.metrics.sessions_ended.get(), n as u64, "every batch was handled");
        assert_eq!(h.engine.metrics.sweep_batch.get_sample_count(), 2, "each lock hold timed");
        assert_eq!(h.engine.sessions.with(|t| t.memory_stats().active), 0);
        assert!(ids.iter().all(|id| stored_end(&h, id).is_some()), "every end is stored");
    }

    #[tokio::test(start_paused = true)]
    async fn the_task_wakes_at_the_next_deadline_not_the_cleanup_interval_and_stops_on_stop() {
        let h = Harness::with_config(|c| {
            c.sessions.idle_timeout = HOUR;
            c.sessions.cleanup_interval = 10 * HOUR;
            c.rate.cleanup_interval = 10 * HOUR;
        })
        .await;
        let id = session(&h, "u1").await;
        let sweeper = run(Arc::clone(&h.engine));
        tokio::pin!(sweeper);
        tokio::select! {
            () = &mut sweeper => panic!("the sweeper stopped by itself"),
            () = tokio::time::sleep(HOUR + Duration::from_secs(1)) => {}
        }
        assert!(stored_end(&h, &id).is_some(), "swept at the idle deadline, well before 10 h");
        assert_eq!(h.engine.metrics.active_sessions.get(), 0, "the gauge follows the sweep");
        h.engine.signal_stop();
        tokio::time::timeout(Duration::from_secs(1), sweeper)
            .await
            .expect("the task stops when the server stops accepting");
    }
}
