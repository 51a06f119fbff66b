//! The inbound path of one client frame (PROTOCOL.md §3.5–§3.8 with the §10 fixes): parse and
//! validate, bind the connection to a session (only on success, §10 item 13), then one `match`
//! hands the frame to its handler — one file per frame type (STYLE.md §12). Errors always answer
//! the connection that sent the frame, echoing its `session_id` (§10 item 10). `user_message`
//! and `model_select` run in the session's ordered worker ([`Ordered`], §10 item 27) while
//! holding one of the connection's in-flight permits; in a fleet a `user_message` is also
//! handled in its user's turn across instances (`turns`). Adding a frame type means adding a file
//! and a match arm. Handlers call the services (sessions, persistence, delivery, replies), which
//! never call back into this module.

mod admin_leave;
mod file;
mod help_request;
mod model_select;
mod resume;
mod stop;
#[cfg(test)]
pub(crate) mod testing;
mod user_message;

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use chatbox_core::protocol::{parse_client_frame, ClientFrame, ErrorInfo, FrameType};
use chatbox_core::session::Access;
use tokio::sync::{mpsc, Semaphore};
use tracing::Instrument;

use super::caller::Caller;
use super::delivery::ConnId;
use super::hub::Engine;
use super::supervisor::Supervisor;
use super::turns::NotHandled;
pub use admin_leave::end_assistance;

/// One connection as the engine sees it.
#[derive(Debug, Clone)]
pub struct ConnCtx {
    /// Connection id (delivery's).
    pub id: ConnId,
    /// Who is connected.
    pub caller: Caller,
    /// Frames of this connection being processed (`WS_MAX_IN_FLIGHT` permits).
    pub in_flight: Arc<Semaphore>,
}

/// Handles one text frame from a connection: the one dispatch.
pub async fn on_text(engine: &Arc<Engine>, conn: &ConnCtx, text: &str) {
    let now = engine.frame_now();
    let frame = match parse_client_frame(text, now, &engine.inbound_limits) {
        Ok(frame) => frame,
        Err(error) => {
            engine.metrics.messages_received.inc();
            tracing::debug!(user_id = %conn.caller.user_id, %error, "refused client frame");
            engine.delivery.send_error(conn.id, None, error.to_error_info());
            return;
        }
    };
    engine.metrics.messages_received.inc();
    if frame.frame_type == FrameType::Resume {
        // A resume binds in the same step as its replay (resume.rs).
        resume::apply(engine, conn, &frame).await;
        return;
    }
    if let Some(requested) = frame.session() {
        let ordered = matches!(frame.frame_type, FrameType::UserMessage | FrameType::ModelSelect);
        if engine.delivery.bound(conn.id).is_none() && !bind(engine, conn, requested, ordered).await
        {
            return;
        }
    }
    match frame.frame_type {
        FrameType::UserMessage | FrameType::ModelSelect => queue_ordered(engine, conn, frame).await,
        FrameType::HelpRequest => help_request::apply(engine, conn, &frame).await,
        FrameType::Stop => stop::apply(engine, conn, &frame).await,
        FrameType::FileUpload | FrameType::VoiceMessage => file::apply(engine, conn, &frame).await,
        FrameType::AdminLeave if conn.caller.is_admin() => {
            admin_leave::apply(engine, conn, &frame).await
        }
        other => {
            reply_error(engine, conn, frame.session(), ErrorInfo::unknown_type(other.as_str()))
        }
    }
}

/// The upgrade succeeded: greet the connection with the model list (§3.9).
pub fn on_connect(engine: &Engine, conn: &ConnCtx) {
    announce(engine, conn, None);
}

/// The connection closed: unbind it and let its session's idle clock start (§3.12).
pub fn on_disconnect(engine: &Engine, conn: ConnId) {
    if let Some(session) = engine.delivery.unregister(conn) {
        engine.sessions.detach(&session);
    }
}

/// Sends an error to the connection that sent a frame (§10 item 10).
fn reply_error(engine: &Engine, conn: &ConnCtx, session: Option<&str>, info: ErrorInfo) {
    engine.delivery.send_error(conn.id, session, info);
}

/// The frame's `session_id`, or the `MISSING_FIELD` answer.
fn require_session<'f>(engine: &Engine, conn: &ConnCtx, frame: &'f ClientFrame) -> Option<&'f str> {
    let session = frame.session();
    if session.is_none() {
        reply_error(engine, conn, None, ErrorInfo::missing_field("session_id"));
    }
    session
}

/// Binds an unbound connection to the first session id it names (§3.7). Returns `false`
/// when the binding was refused (the frame is dropped, the connection stays unbound).
///
/// An id whose owner the store cannot tell (it is down) is never bound: the connection would
/// receive that session's frames if it is someone else's (§10 item 13, bind only on success).
/// An `ordered` frame (`user_message`, `model_select`) still goes on unbound: its session is
/// resolved for its sender (their own, or a new one), and the connection is bound to that.
async fn bind(engine: &Engine, conn: &ConnCtx, requested: &str, ordered: bool) -> bool {
    match verdict(engine, conn, requested).await {
        Verdict::Allowed => {
            move_binding_confirmed(engine, conn, requested).await;
            true
        }
        Verdict::Unverified if ordered => true,
        Verdict::Unverified => {
            reply_error(engine, conn, Some(requested), ErrorInfo::service_unavailable());
            false
        }
        Verdict::Refused => false,
    }
}

/// [`move_binding`], answered (`connection_status` and anything after it) only once frames
/// published for the session by other instances reach this one: the fleet's subscription is
/// acknowledged (bounded; at once without a fleet). So no frame after the answer is lost to the
/// subscribe race (issue 14).
async fn move_binding_confirmed(engine: &Engine, conn: &ConnCtx, session: &str) {
    engine.delivery.hold(conn.id);
    if move_binding(engine, conn, session) {
        engine.delivery.subscribed(session).await;
    }
    engine.delivery.release(conn.id);
}

/// The ownership check of a binding (§3.7): `false`, with the `SERVICE_ERROR` answer sent,
/// when the session belongs to another user, or when the store cannot say whose it is.
async fn check_access(engine: &Engine, conn: &ConnCtx, requested: &str) -> bool {
    match verdict(engine, conn, requested).await {
        Verdict::Allowed => true,
        Verdict::Refused => false,
        Verdict::Unverified => {
            reply_error(engine, conn, Some(requested), ErrorInfo::service_unavailable());
            false
        }
    }
}

/// What the ownership check of a binding found.
enum Verdict {
    /// The caller's own session, one it assists, or an id that is nobody's (a new session).
    Allowed,
    /// Another user's session; the `SERVICE_ERROR` answer is sent.
    Refused,
    /// Not in memory, and the store could not be asked: nothing is answered yet.
    Unverified,
}

/// The ownership check of a binding (§3.7), loading the session from the store if needed.
async fn verdict(engine: &Engine, conn: &ConnCtx, requested: &str) -> Verdict {
    let mut access = engine.sessions.access(&conn.caller, requested);
    if access == Access::Unknown {
        let answered = engine.sessions.load_on_demand(&engine.persistence, requested).await;
        access = engine.sessions.access(&conn.caller, requested);
        if !answered && access == Access::Unknown {
            tracing::info!(user_id = %conn.caller.user_id, session_id = requested, "binding not verified: the store did not answer");
            return Verdict::Unverified;
        }
    }
    match access {
        Access::Denied => {
            tracing::info!(user_id = %conn.caller.user_id, session_id = requested, "binding refused");
            reply_error(engine, conn, Some(requested), ErrorInfo::bind_failed());
            Verdict::Refused
        }
        Access::Owner | Access::AssistingAdmin | Access::Unknown => Verdict::Allowed,
    }
}

/// Binds `conn` to `session` (detaching it from its previous session) and announces it;
/// `false` when the connection had closed meanwhile.
fn move_binding(engine: &Engine, conn: &ConnCtx, session: &str) -> bool {
    let bound = engine.sessions.bind(&engine.delivery, conn.id, session);
    if bound {
        announce(engine, conn, Some(session));
    }
    bound
}

/// Tells `conn` where it is bound, with the model list (`connection_status`).
fn announce(engine: &Engine, conn: &ConnCtx, session: Option<&str>) {
    let models = engine.replies.model_list();
    engine.delivery.announce(conn.id, &conn.caller.user_id, session, models, engine.frame_now());
}

/// Whether the model stays silent in `session` because an admin assists (§10 item 2), for a
/// `user_message` and a `voice_message` alike. In a fleet the takeover (or the leave) may have
/// happened on another instance: the store says who assists (issue 14).
async fn ai_paused(engine: &Engine, session: &str) -> bool {
    if !engine.config.llm.pause_ai_when_assisted {
        return false;
    }
    if engine.config.storage.has_redis() {
        engine.sessions.refresh_assistance(&engine.persistence, session).await;
    }
    engine.sessions.with(|t| t.get(session).is_some_and(|s| s.assisting_admin().is_some()))
}

/// The ordered worker a frame of `conn` naming `requested` queues on: the user's own, since a
/// user has one active session (§6.2) and the id a frame names is only the session's once
/// resolved — a device still using the id it proposed for a new session and another using the
/// id the server named reach the same session, and must not run side by side (§10 item 27:
/// one session's `user_message` frames in arrival order). Two users never wait for each other.
/// An assisting admin's messages (stored and relayed, no reply) queue per session they assist.
fn order_key<'a>(engine: &Engine, conn: &'a ConnCtx, requested: &str) -> Cow<'a, str> {
    let user = &conn.caller.user_id;
    if conn.caller.is_admin() && engine.sessions.is_assisting(user, requested) {
        Cow::Owned(format!("{user}\u{0}{requested}"))
    } else {
        Cow::Borrowed(user)
    }
}

/// Queues `user_message` / `model_select` behind the session's earlier frames.
async fn queue_ordered(engine: &Arc<Engine>, conn: &ConnCtx, frame: ClientFrame) {
    let Ok(permit) = Arc::clone(&conn.in_flight).try_acquire_owned() else {
        reply_error(engine, conn, None, ErrorInfo::server_busy());
        return;
    };
    // A frame refused for its shape does not use up the sender's rate budget.
    let Some(requested) = require_session(engine, conn, &frame) else { return };
    if frame.frame_type == FrameType::UserMessage {
        let now = engine.clock.now();
        let probe = engine.probe.get();
        let tracked = probe.map(|_| engine.limits.messages.contains(conn.caller.user_id.as_str()));
        let decision = engine.limits.check_message(&conn.caller.user_id, now).await;
        if let Some(probe) = probe {
            probe.on_rate_decision(&conn.caller.user_id, now, decision.is_allowed());
            if tracked == Some(false) && decision.is_allowed() {
                probe.on_rate_fresh_key(&conn.caller.user_id, now);
            }
        }
        if let chatbox_core::rate::Decision::Denied { retry_after } = decision {
            let info = ErrorInfo::too_many_requests(retry_after);
            reply_error(engine, conn, frame.session(), info);
            return;
        }
    }
    let key = order_key(engine, conn, requested);
    let (task_engine, conn) = (Arc::clone(engine), conn.clone());
    let job: Job = match frame.frame_type {
        FrameType::ModelSelect => Box::pin(async move {
            // The connection's in-flight permit is held until the frame is handled.
            let _permit = permit;
            model_select::apply(task_engine.as_ref(), &conn, &frame).await;
        }),
        _ => {
            // The message's trace span (issue 17), a child of the connection's, from its
            // queueing to its reply's end.
            let span =
                super::telemetry::message_span(&engine.config, &conn.caller.user_id, requested);
            // The turn's key outlives this call only in a fleet: no allocation without one.
            let turn = engine.turns.is_fleet().then(|| key.to_string());
            Box::pin(
                async move {
                    let _permit = permit;
                    // In a fleet, also in the user's turn across instances (turns.rs).
                    let engine = task_engine.as_ref();
                    let handled = user_message::apply(engine, &conn, &frame);
                    let stop = || engine.stop_signal();
                    let turn = engine.turns.in_turn(turn.as_deref(), stop, handled).await;
                    if let Err(NotHandled) = turn {
                        // Still waiting when the drain began: nothing stored, sent elsewhere.
                        let refusal = ErrorInfo::service_unavailable();
                        engine.delivery.send_error(conn.id, Some(&frame.session_id), refusal);
                    }
                }
                .instrument(span),
            )
        }
    };
    engine.ordered.submit(&key, job);
}

/// One unit of a session's ordered work.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

type Queues = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>;

/// Per-session ordered processing (§10 item 27): the `user_message` and `model_select` frames
/// of one session are handled one after another, in arrival order, by a worker task that exists
/// only while that session has work queued — so the number of workers is bounded by the
/// sessions with work in flight, never by uptime.
///
/// A job is queued only while holding the map lock, and a worker retires only after seeing its
/// queue empty while holding the same lock, so no job can be queued to a retiring worker.
#[derive(Debug)]
pub struct Ordered {
    queues: Queues,
    supervisor: Supervisor,
}

impl Ordered {
    /// No queues; workers are spawned through `supervisor`.
    pub fn new(supervisor: Supervisor) -> Self {
        Self { queues: Queues::default(), supervisor }
    }

    /// Queues `job` behind the earlier jobs of `key`, starting a worker if none runs.
    pub fn submit(&self, key: &str, job: Job) {
        let mut queues = lock(&self.queues);
        let job = match queues.get(key) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // A fresh channel with its receiver alive accepts the send.
        let _ = tx.send(job);
        queues.insert(key.to_string(), tx);
        drop(queues);
        let queues = Arc::clone(&self.queues);
        self.supervisor.spawn("session-worker", work(queues, key.to_string(), rx));
    }

    /// Sessions with a worker now.
    pub fn len(&self) -> usize {
        lock(&self.queues).len()
    }

    /// Whether no worker runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(queues: &Queues) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Job>>> {
    queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// One session's worker: runs its jobs in order and retires when none is left.
async fn work(queues: Queues, key: String, mut rx: mpsc::UnboundedReceiver<Job>) {
    loop {
        while let Ok(job) = rx.try_recv() {
            job.await;
        }
        let mut map = lock(&queues);
        if rx.is_empty() {
            map.remove(&key);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{is_error, Harness};
    use super::*;

    #[tokio::test]
    async fn jobs_of_one_key_run_in_order_and_the_worker_retires() {
        let ordered = Ordered::new(Supervisor::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 0..3 {
            let tx = tx.clone();
            ordered.submit(
                "s",
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    let _ = tx.send(n);
                }),
            );
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(rx.recv().await.unwrap());
        }
        assert_eq!(seen, vec![0, 1, 2]);
        while !ordered.is_empty() {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test]
    async fn malformed_and_unhandled_frames_answer_the_sender() {
        let h = Harness::new().await;
        let mut user = h.connect("u1", false);
        h.send(&user, "{not json").await;
        h.until(&mut user, is_error("INVALID_FORMAT")).await;
        h.send(&user, r#"{"type":"typing_indicator","session_id":"s1"}"#).await;
        let frames = h.until(&mut user, |f| f["type"] == "error").await;
        assert_eq!(frames.last().unwrap()["session_id"], "s1", "the error echoes the session");
    }

    #[tokio::test]
    async fn messages_past_the_rate_limit_are_refused_before_any_work() {
        let h = Harness::with_config(|c| c.rate.messages.limit = 1).await;
        let mut user = h.connect("u1", false);
        let session = h.start_session(&mut user, "one").await;
        let text = format!(r#"{{"type":"user_message","session_id":"{session}","content":"two"}}"#);
        h.send(&user, &text).await;
        h.until(&mut user, is_error("TOO_MANY_REQUESTS")).await;
        assert_eq!(h.messages(&session).len(), 2, "only the first message and its reply");
    }

    #[tokio::test]
    async fn a_message_whose_connection_closed_before_its_session_was_made_leaves_it_unattached() {
        let h = Harness::new().await;
        let user = h.connect("u1", false);
        // The ordered worker runs the message after the connection is gone.
        h.send(&user, r#"{"type":"user_message","session_id":"p","content":"hello"}"#).await;
        h.disconnect(user);
        let session = loop {
            let stored = h.store.snapshot().into_iter().find(|d| d.messages.len() == 2);
            if let Some(doc) = stored {
                break doc.id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        };
        assert_eq!(h.attached(&session), 0, "nothing holds the new session from idling out");
    }

    #[tokio::test]
    async fn a_session_the_store_cannot_vouch_for_is_not_bound() {
        let store = Arc::new(crate::engine::persistence::MemoryStore::new());
        let providers = || vec![Arc::new(crate::adapters::llm::echo::EchoProvider) as _];
        let first = Harness::with_store(|_| {}, providers(), Arc::clone(&store), 64).await;
        let mut owner = first.connect("u1", false);
        let session = first.start_session(&mut owner, "mine").await;
        // Another instance sharing the store, which is down: it cannot tell whose `session` is.
        let h = Harness::with_store(|_| {}, providers(), Arc::clone(&store), 64).await;
        store.set_down(true);
        let mut other = h.connect("u2", false);
        let typing = format!(r#"{{"type":"typing_indicator","session_id":"{session}"}}"#);
        h.send(&other, &typing).await;
        let frames = h.until(&mut other, is_error("SERVICE_ERROR")).await;
        let refusal = frames.last().unwrap();
        assert_eq!(refusal["error"]["message"], "Service temporarily unavailable", "{refusal}");
        assert_eq!(h.engine.delivery.bound(other.ctx.id), None);
        let stop = format!(r#"{{"type":"stop","session_id":"{session}"}}"#);
        h.send(&other, &stop).await;
        h.until(&mut other, is_error("SERVICE_ERROR")).await;
        assert_eq!(h.engine.delivery.bound(other.ctx.id), None);
        // A message still gets its sender a session of their own, never the one it named.
        let text = format!(r#"{{"type":"user_message","session_id":"{session}","content":"x"}}"#);
        h.send(&other, &text).await;
        let frames = h.until(&mut other, |f| f["type"] == "connection_status").await;
        let bound = h.engine.delivery.bound(other.ctx.id).expect("bound to its own session");
        assert_ne!(&*bound, session.as_str(), "{frames:?}");
        assert_eq!(h.engine.sessions.owner_of(&bound).as_deref(), Some("u2"));
    }

    #[tokio::test]
    async fn another_users_session_is_not_bound() {
        let h = Harness::new().await;
        let mut owner = h.connect("u1", false);
        let session = h.start_session(&mut owner, "mine").await;
        let mut other = h.connect("u2", false);
        let text = format!(r#"{{"type":"user_message","session_id":"{session}","content":"x"}}"#);
        h.send(&other, &text).await;
        h.until(&mut other, is_error("SERVICE_ERROR")).await;
        assert_eq!(h.engine.delivery.bound(other.ctx.id), None);
    }
}
