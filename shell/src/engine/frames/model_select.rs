//! `model_select` (PROTOCOL.md §3.6): resolve the session, check the model is configured, record
//! it in memory and in the store, and tell the session (`model_changed`). Runs in the session's
//! ordered worker, so it applies between the messages it was sent between.

use chatbox_core::protocol::{ClientFrame, ErrorInfo, Frame};

use super::ConnCtx;
use crate::engine::hub::Engine;
use crate::engine::sessions::Asker;
use crate::engine::store::SessionPatch;

/// Handles one `model_select` (in the session's ordered worker).
pub(super) async fn apply(engine: &Engine, conn: &ConnCtx, frame: &ClientFrame) {
    let (user, requested) = (conn.caller.user_id.as_str(), frame.session_id.as_str());
    let asker = Asker { conn: conn.id, user, models: engine.replies.model_list() };
    let resolving =
        engine.sessions.resolve_for(&engine.persistence, &engine.delivery, asker, requested);
    let Some(session) = resolving.await else { return };
    if !engine.replies.has_model(&frame.model_id) {
        engine.delivery.send_session_error(
            &session,
            ErrorInfo::invalid_model(&frame.model_id),
            conn.id,
        );
        return;
    }
    engine.sessions.with(|t| {
        let _ = t.set_model(&session, frame.model_id.clone());
    });
    let patch = SessionPatch { model_id: Some(frame.model_id.clone()), ..Default::default() };
    if let Err(error) = engine.persistence.patch(&session, patch).await {
        tracing::warn!(session_id = %session, %error, "persisting the model failed");
    }
    let changed = Frame::model_changed(&session, &frame.model_id, engine.frame_now());
    engine.delivery.send_session(&session, &changed, Some(conn.id));
}

#[cfg(test)]
mod tests {
    use super::super::testing::{is_error, Harness};

    #[tokio::test]
    async fn a_configured_model_is_recorded_and_an_unknown_one_refused() {
        let (h, mut user, session) = Harness::with_session().await;
        let select = |model: &str| {
            format!(r#"{{"type":"model_select","session_id":"{session}","model_id":"{model}"}}"#)
        };
        h.send(&user, &select("echo")).await;
        let frames = h.until(&mut user, |f| f["content"] == "Model changed to echo").await;
        assert_eq!(frames.last().unwrap()["session_id"], session.as_str());
        assert_eq!(h.engine.sessions.model_of(&session).as_deref(), Some("echo"));
        h.send(&user, &select("nope")).await;
        h.until(&mut user, is_error("INVALID_FORMAT")).await;
        assert_eq!(h.engine.sessions.model_of(&session).as_deref(), Some("echo"), "unchanged");
    }
}
