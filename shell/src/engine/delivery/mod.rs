//! The delivery service: which connections are bound to which session, and sending frames to
//! them — to one connection, to a session, to a session's admins, to a user (PROTOCOL.md §10
//! item 11). It owns the [`Bus`], the one port every fan-out goes through: [`LocalBus`] delivers
//! to this process's sockets; a fleet implementation (Redis) publishes to the other instances
//! behind the same trait, so nothing else in the engine changes when one is added. Frames are
//! serialised once per fan-out here, and error frames are counted for metrics. Reply frames
//! also go into the [`ReplayBuffer`] (resumable replies, issue 14). A resume of a reply this
//! instance did not produce is served from the buffer's [`SharedReplay`] (Redis): the connection
//! is held, bound (its channel subscription confirmed), the recorded frames read, and the live
//! frames held meanwhile merged after them by seq (core's `merge_resumed`). [`Signal`]s — stops and the
//! admin consoles' live events (issue 15, [`AdminEvent`]: a session started, a message stored, …)
//! — go through the same port to the other instances; admin events also fan out to this
//! instance's consoles ([`AdminEvents`]).

mod fleet;
pub mod fleet_replay;
mod local;
pub mod queue;
pub mod replay;
pub mod signal;
pub mod wire;

use std::sync::Arc;

use chatbox_core::protocol::{ErrorInfo, Frame, FrameType, ModelInfo, Sender};
use chatbox_core::replay::{merge_resumed, shared_replay, Liveness, Replay};
use chatbox_core::Instant;
use tokio::sync::broadcast;

use super::clock::Clock;
use super::metrics::Metrics;
pub use fleet::{admins_channel, ends_channel};
pub use fleet::{session_channel, user_channel, FleetBus, LinkCommand, LinkQueues, ReplayWrite};
pub use local::{LocalBus, Rebound, Replayed};
pub use replay::{replay_limits, LocalReplay, ReplayBuffer, ReplyFrame, SharedRead, SharedReplay};
pub use signal::{AdminEvent, AdminEvents, Signal, ADMIN_EVENTS};

/// Identifies one connection for its lifetime.
pub type ConnId = u64;

/// What the connection task writes next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// One serialised frame (shared by every connection of a fan-out).
    Frame(Arc<str>),
    /// Send a close frame with this code and reason, then end the connection.
    Close(u16, &'static str),
}

/// Why a connection is being dropped without a queued close (read by the connection task).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kick {
    /// Its outbound queue overflowed.
    SlowConsumer,
    /// The shutdown deadline passed.
    Forced,
}

/// How a fan-out went: connections that got the frame, and those that could not take it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Queued.
    pub delivered: usize,
    /// Not queued (full queue: that connection is being dropped; or already closed).
    pub dropped: usize,
}

/// How a resume went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resumed {
    /// The frames after the seq were queued; the live ones follow on this instance's own
    /// delivery (or the reply had ended).
    Replayed,
    /// Replayed from the shared store while the reply streams on another instance: its
    /// producer must be watched (core's `ResumeWatch`) so a dead one is answered.
    Live,
    /// It cannot be resumed: answer `RESUME_UNAVAILABLE`.
    Unavailable,
}

/// The seq of `frame` if it is a numbered frame of `reply_id`: an `ai_response`, or the error
/// frame that ended the reply (an instance of an older release sends it without a seq).
fn reply_seq(frame: &str, reply_id: &str) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_str(frame).ok()?;
    let metadata = value.get("metadata")?;
    let kind = value.get("type")?;
    if (kind != "ai_response" && kind != "error") || metadata.get("reply_id")? != reply_id {
        return None;
    }
    metadata.get("seq")?.as_str()?.parse().ok()
}

/// A connection of this process, as it is registered with the [`Bus`].
#[derive(Debug)]
pub struct Registration<'a> {
    /// Its user.
    pub user_id: &'a str,
    /// Whether that user is an admin.
    pub is_admin: bool,
    /// Its outbound queue (which also carries the kick).
    pub tx: queue::OutboundTx,
}

/// The fan-out port. Every method returns at once (no IO is awaited): an implementation that
/// talks to other instances queues its publications on its own task. Counts returned are the
/// connections **of this instance** that took the frame.
///
/// Every instance delivers to its own sockets through a [`LocalBus`] ([`Bus::local`]), so each
/// method defaults to the local delivery; an implementation overrides only what it adds to it
/// (the fleet bus: subscriptions and publications to the other instances).
pub trait Bus: Send + Sync + std::fmt::Debug {
    /// This instance's connections.
    fn local(&self) -> &LocalBus;
    /// Adds a local connection; returns its id.
    fn register(&self, conn: Registration<'_>) -> ConnId {
        self.local().register(conn)
    }
    /// Removes a local connection; returns the session it was bound to.
    fn unregister(&self, conn: ConnId) -> Option<Arc<str>> {
        self.local().unregister(conn)
    }
    /// The session a local connection is bound to.
    fn bound(&self, conn: ConnId) -> Option<Arc<str>> {
        self.local().bound(conn)
    }
    /// Binds (or moves) a local connection to `session`; says what changed.
    fn bind(&self, conn: ConnId, session: &str) -> Rebound {
        self.local().bind(conn, session)
    }
    /// Unbinds the admin connections of `admin_id` from `session` (never the owner's own).
    fn unbind_admin(&self, session: &str, admin_id: &str, owner: &str) -> usize {
        self.local().unbind_admin(session, admin_id, owner)
    }
    /// A frame for one local connection; `false` if it is gone or too slow.
    fn to_conn(&self, conn: ConnId, frame: &Arc<str>) -> bool {
        self.local().to_conn(conn, frame)
    }
    /// A frame for every connection bound to `session`, and for `also` if not bound there.
    fn to_session(&self, session: &str, frame: &Arc<str>, also: Option<ConnId>) -> usize {
        self.local().to_session(session, frame, also)
    }
    /// A frame for the admin connections bound to `session` that are not the owner's.
    fn to_session_admins(&self, session: &str, owner: &str, frame: &Arc<str>) -> Fanout {
        self.local().to_session_admins(session, owner, frame)
    }
    /// A frame for every connection of `user_id`.
    fn to_user(&self, user_id: &str, frame: &Arc<str>) -> usize {
        self.local().to_user(user_id, frame)
    }
    /// Queues a close on every local connection (shutdown).
    fn close_all(&self, code: u16, reason: &'static str) -> usize {
        self.local().close_all(code, reason)
    }
    /// Drops every local connection at once (shutdown deadline).
    fn kick_all(&self) -> usize {
        self.local().kick_all()
    }
    /// Open local connections.
    fn connections(&self) -> usize {
        self.local().connections()
    }
    /// Whether the link to the other instances is up (`/readyz` `checks.bus`): `Err` names
    /// why not. The in-process bus has no link and is always up.
    fn health(&self) -> Result<(), String> {
        Ok(())
    }
    /// Takes the frames for `conn` aside until [`Bus::release`] (a resume is reading what
    /// precedes them from Redis); `false` if the connection is gone.
    fn hold(&self, conn: ConnId) -> bool {
        self.local().hold(conn)
    }
    /// Ends a hold: `merge` turns the frames taken aside into what the connection gets, queued
    /// before any later frame.
    fn release(&self, conn: ConnId, merge: &mut dyn FnMut(Vec<Arc<str>>) -> Vec<Arc<str>>) {
        self.local().release(conn, merge);
    }
    /// `conn` skips the live copies of what a resume from the shared store covered from now on
    /// (see [`Replayed`]).
    fn skip_replayed(&self, conn: ConnId, replayed: Replayed) {
        self.local().skip_replayed(conn, replayed);
    }
    /// Resolves once frames published for `session` by other instances reach this one (its
    /// channel subscription is confirmed); `false` if that cannot be known now (link down).
    /// The in-process bus has no other instances: at once.
    fn subscribed(&self, _session: &str) -> BoxFuture<'_, bool> {
        Box::pin(std::future::ready(true))
    }
    /// Resolves once every publication queued so far has been handed to the other instances
    /// (or could not be: the link is down); the in-process bus has nothing queued.
    fn flushed(&self) -> BoxFuture<'_, ()> {
        Box::pin(std::future::ready(()))
    }
    /// Sends `signal` to the other instances (issue 15); the in-process bus has none.
    fn publish_signal(&self, _signal: &Signal) {}
    /// Whether [`Bus::publish_signal`] reaches other instances (the in-process bus: no).
    fn has_peers(&self) -> bool {
        false
    }
    /// The signals received from the other instances from now on; `None` without any.
    fn signals(&self) -> Option<broadcast::Receiver<Signal>> {
        None
    }
}

/// A boxed future of the ports (object-safe async).
pub type BoxFuture<'a, T> = std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>;

/// The delivery service: the bus and the replay buffer, plus encoding and error counting.
#[derive(Debug)]
pub struct Delivery {
    bus: Arc<dyn Bus>,
    replay: Arc<dyn ReplayBuffer>,
    admin_events: AdminEvents,
    metrics: Arc<Metrics>,
    /// Stamps the error frames it builds; only the wall clock is read, which has no origin.
    clock: Clock,
}

impl Delivery {
    /// Waits (at most `within`) until the frames queued on the bus have been published, so an
    /// exiting instance does not take a resumed reply's last frames with it.
    pub async fn flush_bus(&self, within: std::time::Duration) {
        if tokio::time::timeout(within, self.bus.flushed()).await.is_err() {
            tracing::debug!(?within, "fleet bus publications not all sent before exit");
        }
    }

    /// Delivery through `bus` with an in-process replay buffer, counting into `metrics`.
    pub fn new(bus: Arc<dyn Bus>, metrics: Arc<Metrics>) -> Self {
        Self::with_replay(bus, Arc::new(LocalReplay::default()), metrics)
    }

    /// Delivery through `bus`, keeping reply frames in `replay`.
    pub fn with_replay(
        bus: Arc<dyn Bus>,
        replay: Arc<dyn ReplayBuffer>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self { bus, replay, admin_events: AdminEvents::default(), metrics, clock: Clock::default() }
    }

    /// Sends the last frame of reply `reply_id` — `done`, or the error frame that ends it — to
    /// `session` (and `also`): stamped with the reply's id and `seq` like its chunks (PROTOCOL.md
    /// §11), and recorded for resumes.
    pub fn send_reply_outcome(
        &self,
        (reply_id, session, seq): (&str, &str, u64),
        frame: Frame,
        also: Option<ConnId>,
        now: Instant,
    ) -> usize {
        let text = self.encode_counted(&frame.in_reply(reply_id, seq));
        self.send_reply_text(ReplyFrame { reply_id, session, seq, last: true }, text, also, now)
    }

    /// Sends a frame of a reply already encoded (a streamed chunk, written by core's
    /// `Frame::ai_chunk_json`, or the outcome from [`Delivery::send_reply_outcome`]) to the
    /// session (and `also`), recording it for resumes.
    pub fn send_reply_text(
        &self,
        at: ReplyFrame<'_>,
        text: Arc<str>,
        also: Option<ConnId>,
        now: Instant,
    ) -> usize {
        let mut delivered = 0;
        self.replay.publish(at, &text, now, &mut || {
            delivered = self.bus.to_session(at.session, &text, also);
        });
        delivered
    }

    /// The reply ended (whatever way): nothing live follows its recorded frames.
    pub fn end_reply(&self, reply_id: &str, now: Instant) {
        self.replay.end(reply_id, now);
    }

    /// Resumes `reply_id` on `conn`: runs `bind` (which binds the connection to `session` and
    /// announces it), then queues the recorded frames after `after_seq` — all before any later
    /// live frame of the reply. From this instance's buffer when it knows the reply, else from
    /// the shared store (another instance produced it). The connection is bound whatever the
    /// answer.
    pub async fn resume(
        &self,
        conn: ConnId,
        session: &str,
        (reply_id, after_seq): (&str, u64),
        now: Instant,
        bind: &mut (dyn FnMut() + Send),
    ) -> Resumed {
        let mut local = false;
        self.replay.resume(session, reply_id, after_seq, now, &mut |replay| {
            if let Replay::Frames { frames, .. } = replay {
                bind();
                for frame in &frames {
                    self.bus.to_conn(conn, frame);
                }
                local = true;
            }
        });
        if local {
            return Resumed::Replayed;
        }
        let Some(shared) = self.replay.shared() else {
            bind();
            return Resumed::Unavailable;
        };
        // Held from before the binding: live frames wait for the replay that precedes them.
        self.bus.hold(conn);
        bind();
        let replay = if self.bus.subscribed(session).await {
            match shared.read(reply_id, after_seq).await {
                Ok(read) => {
                    let state = read.state.as_ref().map(|(l, s)| (*l, s.as_str()));
                    shared_replay(session, after_seq, state, read.entries)
                }
                Err(error) => {
                    tracing::warn!(%error, reply_id, "replay buffer unreadable; resume unavailable");
                    Replay::Unavailable
                }
            }
        } else {
            Replay::Unavailable
        };
        // An unavailable resume gives the connection none of the reply's frames held meanwhile
        // (they may repeat or skip seqs): the client reloads the session instead.
        let others = |held: Vec<Arc<str>>| -> Vec<Arc<str>> {
            held.into_iter().filter(|f| reply_seq(f, reply_id).is_none()).collect()
        };
        let Replay::Frames { frames, ended } = replay else {
            self.bus.release(conn, &mut |held| others(held));
            return Resumed::Unavailable;
        };
        // Live copies of what the resume covers can still arrive after the release — also when
        // it replayed nothing: the read can land between a frame's record and its publication,
        // and the client named that frame in `after_seq`.
        self.bus.skip_replayed(conn, Replayed::new(reply_id, after_seq, &frames));
        let mut replayed = Some(frames);
        let mut merged = true;
        self.bus.release(conn, &mut |held| {
            let replayed = replayed.take().unwrap_or_default();
            let seq_of = |frame: &Arc<str>| reply_seq(frame, reply_id);
            merge_resumed(after_seq, replayed, held.clone(), seq_of).unwrap_or_else(|| {
                merged = false;
                others(held)
            })
        });
        match (merged, ended) {
            (false, _) => Resumed::Unavailable,
            (true, true) => Resumed::Replayed,
            (true, false) => Resumed::Live,
        }
    }

    /// The liveness of a reply in the shared store (`None`: no shared store, or unreadable).
    pub async fn liveness(&self, reply_id: &str) -> Option<Liveness> {
        self.replay.shared()?.liveness(reply_id).await
    }

    /// The TTL of a reply's alive key in the shared store, if there is one.
    pub fn alive_ttl(&self) -> Option<std::time::Duration> {
        self.replay.shared().map(SharedReplay::alive_ttl)
    }

    /// Asks the other instances to stop the reply of `session` they stream, if any (a `stop`
    /// frame; this instance's own reply is stopped by the replies service directly).
    pub fn stop_reply(&self, session: &str) {
        self.bus.publish_signal(&Signal::StopReply { session: session.to_string() });
    }

    /// Tells the other instances that `session` was ended on request (issue 16), so none of them
    /// revives it from its in-memory copy; this instance's own copy is ended by the caller.
    pub fn session_ended(&self, session: &str) {
        self.bus.publish_signal(&Signal::SessionEnded { session: session.to_string() });
    }

    /// Sends `event` about `session` (of `owner`; empty when this instance does not know it)
    /// to every admin console, on this instance and the others.
    /// Nothing is encoded when no console listens here and there are no other instances (two
    /// events per reply: ~1 % of a reply's instructions).
    pub fn admin_event(&self, event: AdminEvent<'_>, session: &str, owner: &str) {
        if !self.admin_events.heard() && !self.bus.has_peers() {
            return;
        }
        let json = match event.to_json(session, owner, self.clock.wall_datetime()) {
            Ok(json) => json,
            Err(error) => {
                tracing::warn!(%error, "admin event not encoded");
                return;
            }
        };
        self.bus.publish_signal(&Signal::Admin { event: json.clone() });
        self.admin_events.send(Arc::from(json));
    }

    /// A message from `sender` was stored in `session`: the consoles' `message` event, announced
    /// by `session_started` when it is the session's first user message. `live` is the session's
    /// owner and message count as the live table has them (user and admin messages; a session
    /// loaded from the store starts from its stored count), `None` when it does not hold it.
    pub fn message_stored(&self, session: &str, live: Option<(String, u64)>, sender: Sender) {
        let (owner, count) = live.unzip();
        let owner = owner.unwrap_or_default();
        if count == Some(1) && sender == Sender::User {
            self.admin_event(AdminEvent::SessionStarted, session, &owner);
        }
        self.admin_event(AdminEvent::Message { sender }, session, &owner);
    }

    /// An admin event received from another instance: to this instance's consoles.
    pub fn relay_admin_event(&self, event: String) {
        self.admin_events.send(Arc::from(event));
    }

    /// A receiver of the admin events for one console, from now on.
    pub fn admin_events(&self) -> broadcast::Receiver<Arc<str>> {
        self.admin_events.subscribe()
    }

    /// The signals of the other instances from now on (`None` on a single instance).
    pub fn signals(&self) -> Option<broadcast::Receiver<Signal>> {
        self.bus.signals()
    }

    /// Reply frames held for resumes now.
    pub fn replay_frames(&self) -> usize {
        self.replay.frames()
    }

    /// Serialises a frame once for every connection that will receive it.
    pub fn encode(frame: &Frame) -> Arc<str> {
        Arc::from(frame.to_json())
    }

    fn encode_counted(&self, frame: &Frame) -> Arc<str> {
        if frame.frame_type == FrameType::Error {
            self.metrics.message_errors.inc();
        }
        Self::encode(frame)
    }

    /// Adds a connection of this process; see [`Bus::register`].
    pub fn register(&self, conn: Registration<'_>) -> ConnId {
        self.bus.register(conn)
    }

    /// Removes a connection; returns the session it was bound to.
    pub fn unregister(&self, conn: ConnId) -> Option<Arc<str>> {
        self.bus.unregister(conn)
    }

    /// The session a connection is bound to.
    pub fn bound(&self, conn: ConnId) -> Option<Arc<str>> {
        self.bus.bound(conn)
    }

    /// Binds (or moves) a connection to `session`; says what changed.
    pub fn bind(&self, conn: ConnId, session: &str) -> Rebound {
        self.bus.bind(conn, session)
    }

    /// The admin left: its connections stop seeing the session (§10 item 3).
    pub fn unbind_admin(&self, session: &str, admin_id: &str, owner: &str) -> usize {
        self.bus.unbind_admin(session, admin_id, owner)
    }

    /// Takes the frames for `conn` aside until [`Delivery::release`] (see [`Bus::hold`]).
    pub fn hold(&self, conn: ConnId) -> bool {
        self.bus.hold(conn)
    }

    /// Queues the frames taken aside for `conn`, in order, before any later frame.
    pub fn release(&self, conn: ConnId) {
        self.bus.release(conn, &mut |held| held);
    }

    /// Whether frames published for `session` by other instances reach this one now (waits,
    /// bounded, for the subscription's acknowledgement; see [`Bus::subscribed`]).
    pub async fn subscribed(&self, session: &str) -> bool {
        self.bus.subscribed(session).await
    }

    /// Tells `conn` (of `user`) which session it is bound to, if any, and the models it may
    /// choose (`connection_status`, §3.7, §3.9).
    pub fn announce(
        &self,
        conn: ConnId,
        user: &str,
        session: Option<&str>,
        models: &[ModelInfo],
        now: chrono::DateTime<chrono::Utc>,
    ) -> bool {
        self.send_conn(conn, &Frame::connection_status(models, session, user, now))
    }

    /// Sends an error to the connection that sent a frame, echoing its `session` (§10 item 10).
    pub fn send_error(&self, conn: ConnId, session: Option<&str>, info: ErrorInfo) -> bool {
        self.send_conn(conn, &Frame::error(info, session, self.clock.wall_datetime()))
    }

    /// Sends an error about `session` to its connections and to `sender`, the connection
    /// whose frame failed.
    pub fn send_session_error(&self, session: &str, info: ErrorInfo, sender: ConnId) -> usize {
        let frame = Frame::error(info, Some(session), self.clock.wall_datetime());
        self.send_session(session, &frame, Some(sender))
    }

    /// Sends a frame to one connection.
    pub fn send_conn(&self, conn: ConnId, frame: &Frame) -> bool {
        self.bus.to_conn(conn, &self.encode_counted(frame))
    }

    /// Sends a frame to every connection of a session, and to `also` if it is not bound there.
    pub fn send_session(&self, session: &str, frame: &Frame, also: Option<ConnId>) -> usize {
        self.bus.to_session(session, &self.encode_counted(frame), also)
    }

    /// Sends a frame to the session's admins (not the owner); counts what they could not take.
    pub fn send_session_admins(&self, session: &str, owner: &str, frame: &Frame) -> Fanout {
        let fanout = self.bus.to_session_admins(session, owner, &self.encode_counted(frame));
        self.metrics.admin_messages_dropped.inc_by(fanout.dropped as u64);
        fanout
    }

    /// Sends a frame to every connection of a user.
    pub fn send_user(&self, user_id: &str, frame: &Frame) -> usize {
        self.bus.to_user(user_id, &self.encode_counted(frame))
    }

    /// Queues a close on every connection (shutdown).
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        self.bus.close_all(code, reason)
    }

    /// Drops every connection at once (shutdown deadline).
    pub fn kick_all(&self) -> usize {
        self.bus.kick_all()
    }

    /// Open connections of this process.
    pub fn connections(&self) -> usize {
        self.bus.connections()
    }

    /// The bus link's state (see [`Bus::health`]).
    pub fn bus_health(&self) -> Result<(), String> {
        self.bus.health()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::protocol::ErrorInfo;
    use chatbox_core::replay::Liveness;

    #[test]
    fn error_frames_are_counted_once_per_fan_out() {
        let metrics = Arc::new(Metrics::new());
        let delivery = Delivery::new(Arc::new(LocalBus::default()), Arc::clone(&metrics));
        let (tx, mut rx) = queue::channel(4);
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx });
        delivery.bind(conn, "s");
        let now = chrono::DateTime::UNIX_EPOCH;
        let error = Frame::error(ErrorInfo::unexpected(), Some("s"), now);
        assert_eq!(delivery.send_session("s", &error, Some(conn)), 1);
        assert_eq!(metrics.message_errors.get(), 1);
        let Ok(Outbound::Frame(text)) = rx.try_recv() else { panic!("frame queued") };
        assert_eq!(&*text, error.to_json().as_str());
        assert!(delivery.send_conn(conn, &Frame::loading("s", now)));
        assert_eq!(metrics.message_errors.get(), 1, "only error frames count");
    }

    /// A replay buffer whose shared store always reads `read` (another instance's reply); while
    /// a read is made, the frames of `during` are published on its bus (they land between the
    /// read and the release).
    #[derive(Debug)]
    struct Remote(SharedRead, Option<(Arc<LocalBus>, Vec<Arc<str>>)>);

    impl ReplayBuffer for Remote {
        fn publish(&self, _: ReplyFrame<'_>, _: &Arc<str>, _: Instant, fan_out: &mut dyn FnMut()) {
            fan_out();
        }
        fn end(&self, _: &str, _: Instant) {}
        fn resume(
            &self,
            _: &str,
            _: &str,
            _: u64,
            _: Instant,
            attach: &mut dyn FnMut(Replay<Arc<str>>),
        ) {
            attach(Replay::Unavailable);
        }
        fn frames(&self) -> usize {
            0
        }
        fn shared(&self) -> Option<&dyn SharedReplay> {
            Some(self)
        }
    }

    impl SharedReplay for Remote {
        fn read<'a>(&'a self, _: &'a str, _: u64) -> BoxFuture<'a, Result<SharedRead, String>> {
            if let Some((bus, during)) = &self.1 {
                for frame in during {
                    bus.to_session("s", frame, None);
                }
            }
            Box::pin(std::future::ready(Ok(self.0.clone())))
        }
        fn liveness<'a>(&'a self, _: &'a str) -> BoxFuture<'a, Option<Liveness>> {
            Box::pin(std::future::ready(Some(Liveness::Live)))
        }
        fn alive_ttl(&self) -> std::time::Duration {
            std::time::Duration::from_secs(1)
        }
    }

    fn chunk(seq: u64) -> Arc<str> {
        Arc::from(format!(
            r#"{{"type":"ai_response","metadata":{{"reply_id":"r1","seq":"{seq}"}}}}"#
        ))
    }

    /// The error frame that ends reply `r1` at `seq`, named as the replies service sends it.
    fn failed(seq: u64) -> Arc<str> {
        Arc::from(format!(
            r#"{{"type":"error","error":{{"code":"LLM_TIMEOUT"}},"metadata":{{"reply_id":"r1","seq":"{seq}"}}}}"#
        ))
    }

    /// Resumes reply `r1` after `after_seq` on a fresh connection against a shared store that
    /// holds `recorded` (live), then publishes `live` to the session; returns what the
    /// connection got.
    async fn resumed_then_live(after_seq: u64, recorded: &[u64], live: &[u64]) -> Vec<Arc<str>> {
        let live: Vec<_> = live.iter().map(|seq| chunk(*seq)).collect();
        resumed(after_seq, recorded, &[], &live).await
    }

    /// As [`resumed_then_live`], with `during` published while the resume reads the store.
    async fn resumed(
        after_seq: u64,
        recorded: &[u64],
        during: &[Arc<str>],
        live: &[Arc<str>],
    ) -> Vec<Arc<str>> {
        let read = SharedRead {
            state: Some((Liveness::Live, "s".to_string())),
            entries: recorded.iter().map(|seq| (*seq, "s".to_string(), chunk(*seq))).collect(),
        };
        let bus = Arc::new(LocalBus::default());
        let remote = Remote(read, Some((Arc::clone(&bus), during.to_vec())));
        let delivery =
            Delivery::with_replay(bus.clone(), Arc::new(remote), Arc::new(Metrics::new()));
        let (tx, mut rx) = queue::channel(16);
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx });
        let resumed = delivery
            .resume(conn, "s", ("r1", after_seq), Instant::ZERO, &mut || {
                bus.bind(conn, "s");
            })
            .await;
        assert_eq!(resumed, Resumed::Live);
        for frame in live {
            delivery.bus.to_session("s", frame, None);
        }
        std::iter::from_fn(|| match rx.try_recv() {
            Ok(Outbound::Frame(f)) => Some(f),
            _ => None,
        })
        .collect()
    }

    /// The record/publish race: the producer records a frame in the shared store, then
    /// publishes it; a resume read in between replays it, and its live copy follows.
    #[tokio::test]
    async fn a_resume_skips_the_live_copies_of_the_frames_it_replayed() {
        let got = resumed_then_live(1, &[2, 3], &[2, 3, 4]).await;
        assert_eq!(got, vec![chunk(2), chunk(3), chunk(4)]);
    }

    /// The reply's error frame, recorded after the read and published while the connection was
    /// held, comes after the replayed chunks (merged by its seq), not before them.
    #[tokio::test]
    async fn a_held_outcome_follows_the_replayed_frames() {
        let got = resumed(1, &[2, 3], &[failed(4)], &[]).await;
        assert_eq!(got, vec![chunk(2), chunk(3), failed(4)]);
    }

    /// The fleet world's seeds 1 and 14 under broker delay: the read came after seq 1 was
    /// recorded and before it was published, so it found nothing after the client's
    /// `after_seq` of 1 — and the live seq 1 reached the client again (`[1, 2, 3, 4]`).
    #[tokio::test]
    async fn a_resume_that_replayed_nothing_skips_the_live_copies_up_to_its_after_seq() {
        let got = resumed_then_live(1, &[], &[1, 2, 3]).await;
        assert_eq!(got, vec![chunk(2), chunk(3)]);
    }
}
