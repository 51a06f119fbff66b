//! `resume` (issue 14): a reconnected client asks for the rest of a reply. After the usual
//! ownership check (a foreign session gets the §3.7 answer and stays unbound), the connection is
//! bound to the session and gets every recorded frame of the reply after its seq, then the live
//! ones — one step in the delivery service, so nothing is repeated or skipped at the switch. A
//! reply that is unknown, expired, another session's or missing frames gets one
//! `RESUME_UNAVAILABLE`; the client then reloads the session over REST.

use chatbox_core::protocol::{ClientFrame, ErrorInfo};

use super::{check_access, move_binding, reply_error, ConnCtx};
use crate::engine::hub::Engine;

/// Handles one `resume` frame (it binds the connection itself).
pub(super) async fn apply(engine: &Engine, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(point) = frame.resume_point() else {
        // Validation guarantees the point; answer as for any invalid frame all the same.
        reply_error(engine, conn, None, ErrorInfo::validation_failed());
        return;
    };
    let session = frame.session_id.as_str();
    if !check_access(engine, conn, session).await {
        return;
    }
    let now = engine.clock.now();
    let resumed = engine.delivery.resume(
        conn.id,
        session,
        (point.reply_id, point.after_seq),
        now,
        &mut || move_binding(engine, conn, session),
    );
    tracing::debug!(
        session_id = session,
        reply_id = point.reply_id,
        after_seq = point.after_seq,
        resumed,
        "resume"
    );
    if !resumed {
        reply_error(engine, conn, Some(session), ErrorInfo::resume_unavailable());
    }
}
