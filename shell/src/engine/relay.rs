//! The relay of the other instances' signals (issue 15), one task per instance in a fleet: a
//! `stop` received for a session stops its reply if it streams here, an admin event goes to
//! this instance's consoles, and an explicit end (issue 16) ends this instance's in-memory copy
//! of the session, if it has one, so its next message here starts a new session. On a single instance there is nothing to relay and the task ends at
//! once. Runs until shutdown drops the connections (stops still matter while replies drain).

use std::sync::Arc;

use tokio::sync::broadcast::error::RecvError;

use super::delivery::Signal;
use super::hub::Engine;
use super::supervisor::signalled;

/// Relays signals until the force signal (or the bus closes).
pub async fn run(engine: Arc<Engine>) {
    let Some(mut signals) = engine.delivery.signals() else { return };
    let mut force = engine.force_signal();
    loop {
        let received = tokio::select! {
            received = signals.recv() => received,
            _ = signalled(&mut force) => return,
        };
        match received {
            Ok(Signal::StopReply { session }) => {
                let stopped = engine.replies.stop(&session);
                tracing::debug!(session_id = %session, stopped, "stop from another instance");
            }
            Ok(Signal::SessionEnded { session }) => {
                let (now, wall) = (engine.clock.now(), engine.clock.wall());
                if engine.sessions.with(|t| t.end(&session, now, wall)).is_ok() {
                    tracing::info!(session_id = %session, "session ended on another instance");
                }
                engine.forget_session_caches(std::iter::once(session.as_str()));
            }
            Ok(Signal::Admin { event }) => engine.delivery.relay_admin_event(event),
            Ok(Signal::Unbound { session, connections }) => {
                engine.sessions.detach_unbound(&session, connections);
            }
            Err(RecvError::Lagged(skipped)) => {
                tracing::warn!(skipped, "signal relay fell behind; signals skipped");
            }
            Err(RecvError::Closed) => return,
        }
    }
}
