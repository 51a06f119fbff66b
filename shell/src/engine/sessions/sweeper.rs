//! The sweeper task (seed fixes #1 and #11): wakes when core's session table says its next
//! deadline is due (and at least every cleanup interval), ends sessions idle past
//! `SESSION_IDLE_TIMEOUT` and persists their end, drops ended sessions older than `SESSION_TTL`
//! (and the replies' upstream conversation ids with them), and cleans idle rate-limiter keys on
//! its own `Periodic` schedule. Stops when shutdown begins.

use std::sync::Arc;

use chatbox_core::timer::Periodic;

use crate::engine::hub::Engine;
use crate::engine::persistence::PendingWrite;

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
        let stats = engine.sessions.with(|t| t.memory_stats());
        engine.metrics.active_sessions.set(i64::try_from(stats.active).unwrap_or(i64::MAX));
    }
}

/// One sweep: end idle sessions (persisting `endTs`/`dur`) and drop expired ones.
pub async fn sweep_once(engine: &Engine) {
    let (now, wall) = (engine.clock.now(), engine.clock.wall());
    let report = engine.sessions.with(|t| t.sweep(now, wall));
    for ended in &report.idle_ended {
        engine.metrics.sessions_ended.inc();
        let id = ended.id.as_str();
        tracing::info!(session_id = id, "session ended after inactivity");
        let details = crate::engine::inbox::Details::default();
        crate::engine::inbox::emit(engine, crate::engine::inbox::SESSION_ENDED, id, details);
        if let Err(error) = engine
            .persistence
            .persist(PendingWrite::End { session_id: id.to_string(), at: ended.ended_wall })
            .await
        {
            tracing::warn!(session_id = id, %error, "persisting an idle end failed");
        }
    }
    if !report.dropped.is_empty() {
        engine.replies.forget(report.dropped.iter().map(|id| id.as_str()));
        tracing::debug!(dropped = report.dropped.len(), "expired sessions dropped from memory");
    }
}
