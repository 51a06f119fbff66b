//! The delivery service: which connections are bound to which session, and sending frames to
//! them — to one connection, to a session, to a session's admins, to a user (PROTOCOL.md §10
//! item 11). It owns the [`Bus`], the one port every fan-out goes through: [`LocalBus`] delivers
//! to this process's sockets; a fleet implementation (Redis) publishes to the other instances
//! behind the same trait, so nothing else in the engine changes when one is added. Frames are
//! serialised once per fan-out here, and error frames are counted for metrics. Reply frames
//! also go into the [`ReplayBuffer`] (resumable replies, issue 14).

mod fleet;
mod local;
pub mod replay;
pub mod wire;

use std::sync::{Arc, Mutex};

use chatbox_core::protocol::{ErrorInfo, Frame, FrameType, ModelInfo};
use chatbox_core::replay::Replay;
use chatbox_core::Instant;
use tokio::sync::{mpsc, Notify};

use super::clock::Clock;
use super::metrics::Metrics;
pub use fleet::{session_channel, user_channel, FleetBus, LinkCommand, LinkQueues};
pub use local::LocalBus;
pub use replay::{LocalReplay, ReplayBuffer, ReplyFrame};

/// Identifies one connection for its lifetime.
pub type ConnId = u64;

/// What the connection task writes next.
#[derive(Debug, Clone)]
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

/// A one-shot "drop this connection now" signal.
#[derive(Debug, Default)]
pub struct KickSignal {
    notify: Notify,
    reason: Mutex<Option<Kick>>,
}

impl KickSignal {
    /// Signals the connection task; the first reason wins.
    pub fn kick(&self, reason: Kick) {
        let mut slot = self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(reason);
        }
        drop(slot);
        self.notify.notify_one();
    }

    /// Waits for a kick and returns its reason.
    pub async fn kicked(&self) -> Kick {
        loop {
            self.notify.notified().await;
            let slot = self.reason.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(reason) = *slot {
                return reason;
            }
        }
    }
}

/// How a fan-out went: connections that got the frame, and those that could not take it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Fanout {
    /// Queued.
    pub delivered: usize,
    /// Not queued (full queue: that connection is being dropped; or already closed).
    pub dropped: usize,
}

/// A connection of this process, as it is registered with the [`Bus`].
#[derive(Debug)]
pub struct Registration<'a> {
    /// Its user.
    pub user_id: &'a str,
    /// Whether that user is an admin.
    pub is_admin: bool,
    /// Its outbound queue.
    pub tx: mpsc::Sender<Outbound>,
    /// How to drop it at once.
    pub kick: Arc<KickSignal>,
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
    /// Binds (or moves) a local connection to `session`; returns the previous binding.
    fn bind(&self, conn: ConnId, session: &str) -> Option<Arc<str>> {
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
}

/// The delivery service: the bus and the replay buffer, plus encoding and error counting.
#[derive(Debug)]
pub struct Delivery {
    bus: Arc<dyn Bus>,
    replay: Arc<dyn ReplayBuffer>,
    metrics: Arc<Metrics>,
    /// Stamps the error frames it builds; only the wall clock is read, which has no origin.
    clock: Clock,
}

impl Delivery {
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
        Self { bus, replay, metrics, clock: Clock::default() }
    }

    /// Sends a frame of a reply to the session (and `also`), recording it for resumes.
    pub fn send_reply_frame(
        &self,
        at: ReplyFrame<'_>,
        frame: &Frame,
        also: Option<ConnId>,
        now: Instant,
    ) -> usize {
        let text = self.encode_counted(frame);
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
    /// live frame of the reply. Returns `false` when the reply cannot be resumed (the connection
    /// is bound all the same).
    pub fn resume(
        &self,
        conn: ConnId,
        session: &str,
        (reply_id, after_seq): (&str, u64),
        now: Instant,
        bind: &mut dyn FnMut(),
    ) -> bool {
        let mut resumed = false;
        self.replay.resume(session, reply_id, after_seq, now, &mut |replay| {
            bind();
            if let Replay::Frames { frames, .. } = replay {
                for frame in &frames {
                    self.bus.to_conn(conn, frame);
                }
                resumed = true;
            }
        });
        resumed
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

    /// Binds (or moves) a connection to `session`; returns the previous binding.
    pub fn bind(&self, conn: ConnId, session: &str) -> Option<Arc<str>> {
        self.bus.bind(conn, session)
    }

    /// The admin left: its connections stop seeing the session (§10 item 3).
    pub fn unbind_admin(&self, session: &str, admin_id: &str, owner: &str) -> usize {
        self.bus.unbind_admin(session, admin_id, owner)
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

    #[test]
    fn error_frames_are_counted_once_per_fan_out() {
        let metrics = Arc::new(Metrics::new());
        let delivery = Delivery::new(Arc::new(LocalBus::default()), Arc::clone(&metrics));
        let (tx, mut rx) = mpsc::channel(4);
        let kick = Arc::new(KickSignal::default());
        let conn = delivery.register(Registration { user_id: "u1", is_admin: false, tx, kick });
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
}
