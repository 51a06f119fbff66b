//! `admin_leave` (PROTOCOL.md §10 item 3): the assisting admin ends the assistance from its
//! socket. [`end_assistance`] is shared with the REST route (`admin::admin_leave`): clear it in
//! memory, persist it, say `admin_leave` to the session, then stop the admin's sockets seeing it.

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame};
use chatbox_core::session::AdminRef;

use super::{require_session, ConnCtx};
use crate::engine::delivery::AdminEvent;
use crate::engine::hub::Engine;
use crate::engine::store::SessionPatch;

/// Handles one `admin_leave` from an admin connection.
pub(super) async fn apply(engine: &Engine, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(session) = require_session(engine, conn, frame) else { return };
    if !engine.sessions.is_assisting(&conn.caller.user_id, session) {
        engine.delivery.send_error(conn.id, Some(session), ErrorInfo::unauthorized_session());
        return;
    }
    end_assistance(engine, session, &conn.caller.user_id).await;
}

/// Clears assistance, persists it and tells the session (`admin_leave`, §10 item 3); the admin
/// who was assisting, `None` when nobody was.
pub async fn end_assistance(engine: &Engine, session: &str, admin_id: &str) -> Option<AdminRef> {
    let left = engine.sessions.with(|t| t.leave(session, admin_id)).ok()?;
    let patch = SessionPatch {
        assistance: Some((false, String::new(), String::new())),
        ..Default::default()
    };
    let _ = engine.persistence.patch(session, patch).await;
    let owner = engine.sessions.owner_of(session).unwrap_or_default();
    let event = AdminEvent::AdminLeft { admin: (&left.admin.id, &left.admin.name) };
    engine.delivery.admin_event(event, session, &owner);
    let frame = Frame::admin_leave(session, &left.admin.id, &left.admin.name, engine.frame_now());
    engine.delivery.send_session(session, &frame, None);
    // After the farewell, the admin's sockets stop seeing the session (§10 item 3).
    if let Some(owner) = engine.sessions.owner_of(session) {
        let unbound = engine.delivery.unbind_admin(session, admin_id, &owner);
        engine.sessions.detach_unbound(session, unbound);
    }
    Some(left.admin)
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_type, Harness};

    #[tokio::test]
    async fn the_assisting_admin_leaves_and_the_user_is_told() {
        let (h, mut user, session) = Harness::with_session().await;
        let leave =
            format!(r#"{{"type":"admin_leave","session_id":"{session}","sender":"admin"}}"#);
        let mut stranger = h.connect("other-admin", true);
        h.send(&stranger, &leave).await;
        h.until(&mut stranger, |f| f["type"] == "error").await;
        h.assist(&session, "boss").await;
        let mut admin = h.connect("boss", true);
        h.send(&admin, &leave).await;
        // The admin's socket was bound by the frame and is unbound again after the farewell.
        h.until(&mut admin, is_type("admin_leave")).await;
        h.until(&mut user, is_type("admin_leave")).await;
        // Only the user's connection still keeps the session from idling out, and once it
        // closes none does (the admin's closing later takes nothing away).
        assert_eq!(h.attached(&session), 1);
        // Who assists is cleared; `adminAssisted` keeps saying the session was assisted (issue 15).
        assert!(h
            .store
            .snapshot()
            .iter()
            .any(|d| d.id == session && d.assisting_admin_id.is_empty() && d.admin_assisted));
        assert_eq!(h.engine.delivery.bound(admin.ctx.id), None);
        h.disconnect(user);
        h.disconnect(admin);
        assert_eq!(h.attached(&session), 0);
    }
}
