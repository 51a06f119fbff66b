//! `help_request` (PROTOCOL.md §3.8, §6.7): the session's owner asks for a human. Marks the
//! session (persisted once, when it changes), alerts the admins through the alerts service
//! (which enforces the per-session alert budget) and acknowledges to the session.

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame};
use chatbox_core::session::SessionError;

use super::{require_session, ConnCtx};
use crate::engine::delivery::AdminEvent;
use crate::engine::hub::Engine;
use crate::engine::store::SessionPatch;

/// Handles one `help_request`.
pub(super) async fn apply(engine: &Engine, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(session) = require_session(engine, conn, frame) else { return };
    engine.sessions.load_on_demand(&engine.persistence, session).await;
    let user_id = conn.caller.user_id.as_str();
    let changed = match engine.sessions.with(|t| t.request_help(session, user_id)) {
        Ok(changed) => changed,
        Err(SessionError::NotOwner) => {
            engine.delivery.send_error(conn.id, Some(session), ErrorInfo::unauthorized_session());
            return;
        }
        Err(_) => {
            engine.delivery.send_error(conn.id, Some(session), ErrorInfo::session_not_found());
            return;
        }
    };
    if changed {
        let patch = SessionPatch { help_requested: Some(true), ..Default::default() };
        let _ = engine.persistence.patch(session, patch).await;
    }
    tracing::warn!(session_id = session, user_id, "help requested");
    engine.alerts.help_requested(session, user_id);
    let owner = engine.sessions.owner_of(session).unwrap_or_default();
    engine.delivery.admin_event(AdminEvent::HelpRequested, session, &owner);
    let ack = Frame::help_requested(session, engine.frame_now());
    engine.delivery.send_session(session, &ack, Some(conn.id));
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_error, is_type, Harness};

    #[tokio::test]
    async fn the_owner_is_acknowledged_and_others_refused() {
        let (h, mut user, session) = Harness::with_session().await;
        let mut consoles = h.engine.delivery.admin_events();
        let help = format!(r#"{{"type":"help_request","session_id":"{session}"}}"#);
        h.send(&user, &help).await;
        h.until(&mut user, is_type("connection_status")).await;
        let event: serde_json::Value =
            serde_json::from_str(&consoles.try_recv().expect("an admin event")).expect("JSON");
        assert_eq!(event["type"], "help_requested", "{event}");
        assert_eq!(event["session_id"], session.as_str());
        assert_eq!(event["user_id"], "u1");
        assert!(h.store.snapshot().iter().any(|d| d.id == session && d.help_requested));
        let mut other = h.connect("u2", false);
        h.send(&other, &help).await;
        h.until(&mut other, is_error("SERVICE_ERROR")).await;
        let mut missing = h.connect("u1", false);
        h.send(&missing, r#"{"type":"help_request"}"#).await;
        h.until(&mut missing, is_error("MISSING_FIELD")).await;
    }
}
