//! `resume` (issue 14): a reconnected client asks for the rest of a reply. After the usual
//! ownership check (a foreign session gets the §3.7 answer and stays unbound), the connection is
//! bound to the session and gets every recorded frame of the reply after its seq, then the live
//! ones — one step in the delivery service, so nothing is repeated or skipped at the switch. A
//! reply that is unknown, expired, another session's or missing frames gets one
//! `RESUME_UNAVAILABLE`; the client then reloads the session over REST.
//!
//! A reply resumed from the shared store (Redis) while it streams on another instance is
//! watched: its producer's alive key is read every `RESUME_WATCH_INTERVAL`, and a producer gone
//! silent past its idle deadline (killed) gets the connection `RESUME_UNAVAILABLE` — never a
//! wait for a `done` that will not come (issue 14, behaviour 5; core's `ResumeWatch`).

use std::sync::Arc;

use chatbox_core::budgets::RESUME_WATCH_INTERVAL;
use chatbox_core::protocol::{ClientFrame, ErrorInfo};
use chatbox_core::replay::{ResumeWatch, Watch};

use super::{check_access, move_binding, ConnCtx};
use crate::engine::delivery::Resumed;
use crate::engine::hub::Engine;
use crate::engine::supervisor::signalled;

/// Handles one `resume` frame (it binds the connection itself).
pub(super) async fn apply(engine: &Arc<Engine>, conn: &ConnCtx, frame: &ClientFrame) {
    let Some(point) = frame.resume_point() else {
        // Validation guarantees the point; answer as for any invalid frame all the same.
        engine.delivery.send_error(conn.id, None, ErrorInfo::validation_failed());
        return;
    };
    let session = frame.session_id.as_str();
    if !check_access(engine, conn, session).await {
        return;
    }
    let now = engine.clock.now();
    let resumed = engine
        .delivery
        .resume(conn.id, session, (point.reply_id, point.after_seq), now, &mut || {
            let _ = move_binding(engine, conn, session);
        })
        .await;
    tracing::debug!(
        session_id = session,
        reply_id = point.reply_id,
        after_seq = point.after_seq,
        ?resumed,
        "resume"
    );
    match resumed {
        Resumed::Replayed => {}
        Resumed::Live => watch(engine, conn, session, point.reply_id),
        Resumed::Unavailable => {
            engine.delivery.send_error(conn.id, Some(session), ErrorInfo::resume_unavailable());
        }
    }
}

/// Watches the producer of a reply resumed from the shared store until the reply ends, the
/// connection leaves the session, or the server stops; a dead producer is answered.
fn watch(engine: &Arc<Engine>, conn: &ConnCtx, session: &str, reply_id: &str) {
    let Some(ttl) = engine.delivery.alive_ttl() else { return };
    let (engine, conn) = (Arc::clone(engine), conn.clone());
    let (session, reply_id) = (session.to_string(), reply_id.to_string());
    let mut stop = engine.stop_signal();
    let supervisor = engine.supervisor.clone();
    supervisor.spawn("resume-watch", async move {
        let mut watch = ResumeWatch::new(ttl, engine.clock.now());
        loop {
            let wake = engine.clock.to_runtime(engine.clock.now() + RESUME_WATCH_INTERVAL);
            tokio::select! {
                _ = tokio::time::sleep_until(wake) => {}
                _ = signalled(&mut stop) => return,
            }
            if engine.delivery.bound(conn.id).as_deref() != Some(session.as_str()) {
                return;
            }
            let seen = engine.delivery.liveness(&reply_id).await;
            match watch.on_poll(engine.clock.now(), seen) {
                Watch::Keep => {}
                Watch::Stop => return,
                Watch::Unavailable => {
                    tracing::info!(session_id = %session, reply_id = %reply_id, "resumed reply's instance is gone");
                    engine.delivery.send_error(conn.id, Some(&session), ErrorInfo::resume_unavailable());
                    return;
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::super::testing::{is_done, is_error, Client, Harness};

    fn resume(session: &str, reply: &str, after: &str) -> String {
        format!(
            r#"{{"type":"resume","session_id":"{session}","metadata":{{"reply_id":"{reply}","after_seq":"{after}"}}}}"#
        )
    }

    /// `user` says hello in a new session; the reply's `ai_response` frames, the session's id
    /// and the reply's id.
    async fn first_reply(h: &Harness, user: &mut Client) -> (Vec<Value>, String, String) {
        h.send(user, r#"{"type":"user_message","session_id":"p","content":"hello"}"#).await;
        let frames = h.until(user, is_done).await;
        let sent: Vec<_> = frames.into_iter().filter(|f| f["type"] == "ai_response").collect();
        let done = sent.last().expect("done frame");
        let session = done["session_id"].as_str().expect("session").to_string();
        let reply = done["metadata"]["reply_id"].as_str().expect("reply id").to_string();
        (sent, session, reply)
    }

    #[tokio::test]
    async fn a_finished_reply_is_replayed_after_the_seq_and_an_unknown_one_is_unavailable() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        let (sent, session, reply) = first_reply(&h, &mut user).await;
        assert_eq!(h.engine.delivery.replay_frames(), sent.len(), "the reply's frames are held");

        let mut back = h.connect("u1", false);
        h.send(&back, &resume(&session, &reply, "0")).await;
        let replayed = h.until(&mut back, is_done).await;
        let first = replayed.iter().position(|f| f["type"] == "ai_response").expect("replayed");
        let binding = &replayed[first - 1];
        assert_eq!(binding["type"], "connection_status", "bound before the replay: {binding}");
        assert_eq!(binding["session_id"], session.as_str(), "{binding}");
        assert_eq!(replayed[first..].to_vec(), sent, "every frame after seq 0, unchanged");

        let mut again = h.connect("u1", false);
        h.send(&again, &resume(&session, "unknown", "0")).await;
        let frames = h.until(&mut again, is_error("RESUME_UNAVAILABLE")).await;
        assert_eq!(frames.last().unwrap()["session_id"], session.as_str());
        assert_eq!(h.engine.delivery.bound(again.ctx.id).as_deref(), Some(session.as_str()));
    }

    #[tokio::test]
    async fn a_connection_counts_once_on_its_session_however_often_it_binds_there() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        let (_, session, reply) = first_reply(&h, &mut user).await;
        for _ in 0..3 {
            h.send(&user, &resume(&session, &reply, "0")).await;
            h.until(&mut user, is_done).await;
        }
        assert_eq!(h.attached(&session), 1);
        h.disconnect(user);
        assert_eq!(h.attached(&session), 0, "its close lets the session idle out");
    }

    #[tokio::test]
    async fn another_users_session_is_refused_and_left_unbound() {
        let h = Harness::new().await;
        let mut owner = h.connect("u1", false);
        let session = h.start_session(&mut owner, "mine").await;
        let mut other = h.connect("u2", false);
        h.send(&other, &resume(&session, "r", "0")).await;
        h.until(&mut other, is_error("SERVICE_ERROR")).await;
        assert_eq!(h.engine.delivery.bound(other.ctx.id), None);
    }
}
