//! The fleet [`Bus`] (issue 14): this instance's connections in a [`LocalBus`], plus a link to
//! the other instances. Every fan-out is delivered to the local connections directly and handed
//! once, as a [`BusMessage`], to the link's queue (never awaited: a slow or lost link cannot
//! delay a local frame). The link (an adapter: Redis pub/sub) publishes it on the session's (or
//! user's) channel and feeds messages from other instances back through [`FleetBus::deliver`].
//!
//! Channels: one per session (`chatbox:bus:s:{id}`) and one per user (`chatbox:bus:u:{id}`).
//! This instance subscribes to a channel while at least one of its connections is bound to the
//! session (or belongs to the user) and unsubscribes when the last one goes, so an instance
//! only receives traffic for the sessions it serves. Every message names its instance, and an
//! instance ignores its own.
//!
//! The shared replay buffer's writes ([`ReplayWrite`]) go through the same queue as the
//! publications, just before the frame's own publication: Redis then records a frame before any
//! instance can receive it live, which is what lets a resume elsewhere subscribe first, read the
//! recorded frames second, and miss nothing. A subscription counts as confirmed (see
//! [`Bus::subscribed`]) once Redis acknowledged it.
//!
//! Signals (issue 15) ride the same link: a stop on the session's
//! channel, admin events on the fleet-wide admins channel (`chatbox:bus:admins`) and explicit
//! session ends on the fleet-wide ends channel (`chatbox:bus:ends`, issue 16), to both of which
//! every instance stays subscribed; received ones go to [`Bus::signals`] listeners.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use chatbox_core::budgets::{BUS_COMMAND_TIMEOUT, BUS_PUBLISH_QUEUE};
use tokio::sync::{broadcast, mpsc, Notify};

use super::wire::{BusEvent, BusMessage};
use super::{BoxFuture, Bus, ConnId, Fanout, LocalBus, Rebound, Registration, Signal};
use crate::engine::metrics::Metrics;

/// A request to the link task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkCommand {
    /// Publish `payload` on `channel`.
    Publish {
        /// Redis channel.
        channel: String,
        /// Encoded [`BusMessage`].
        payload: String,
    },
    /// Start receiving `channel`.
    Subscribe(String),
    /// Stop receiving `channel`.
    Unsubscribe(String),
    /// Write to the shared replay buffer (queued before the frame's publication).
    Record(ReplayWrite),
    /// Report flush `n` ([`FleetBus::flush_reached`]) once everything queued before it is done
    /// (publication queue only; shutdown).
    Flush(u64),
}

/// One write to a reply's record in the shared replay buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayWrite {
    /// The reply's id.
    pub reply_id: String,
    /// The session it belongs to.
    pub session: String,
    /// The frame appended: its seq and its encoded [`super::wire::ReplayEntry`]; `None` when
    /// only the reply's state changes (it ended without a final frame of its own).
    pub entry: Option<(u64, String)>,
    /// Whether the reply has ended.
    pub ended: bool,
    /// TTL of the reply's state key (its alive key while live).
    pub state_ttl: Duration,
    /// TTL of its frames.
    pub stream_ttl: Duration,
}

/// The receiving ends the link task consumes, handed out once by [`FleetBus::new`].
#[derive(Debug)]
pub struct LinkQueues {
    /// Publications (bounded: dropped and counted when full).
    pub publish: mpsc::Receiver<LinkCommand>,
    /// Subscription changes (never dropped: the channel set must stay exact).
    pub control: mpsc::UnboundedReceiver<LinkCommand>,
}

/// The channel of a session.
pub fn session_channel(session: &str) -> String {
    format!("chatbox:bus:s:{session}")
}

/// The fleet-wide channel of the admin consoles' live events (issue 15).
pub fn admins_channel() -> String {
    "chatbox:bus:admins".to_string()
}

/// The fleet-wide channel of explicit session ends (issue 16) and of stops. Fleet-wide rather
/// than the session's own channel: an instance may hold the session in memory, or stream its
/// reply, with no connection bound to it (the user disconnected, or is bound elsewhere now), and
/// must still learn of the end or the stop. (The name predates the stops; instances of an older
/// version subscribe to it too, so a rolling deploy keeps both.)
pub fn ends_channel() -> String {
    "chatbox:bus:ends".to_string()
}

/// The channel of a user.
pub fn user_channel(user: &str) -> String {
    format!("chatbox:bus:u:{user}")
}

#[derive(Debug, Default)]
struct State {
    /// Local connections interested in each channel.
    channels: HashMap<String, usize>,
    /// The user of each local connection (for its user channel on unregister).
    users: HashMap<ConnId, String>,
    /// `None` while the link is up, else why it is down.
    down: Option<String>,
    /// Channels whose subscription Redis acknowledged on the current link.
    confirmed: HashSet<String>,
    /// Flushes handed out ([`LinkCommand::Flush`]) and the highest one the link reached.
    flushes: (u64, u64),
}

/// The fleet bus: local delivery plus publication to, and subscription from, the other instances.
#[derive(Debug)]
pub struct FleetBus {
    local: LocalBus,
    instance: String,
    publish: mpsc::Sender<LinkCommand>,
    control: mpsc::UnboundedSender<LinkCommand>,
    state: Mutex<State>,
    /// Woken when a subscription is confirmed, a flush is reached or the link drops.
    confirmations: Notify,
    /// Signals received from the other instances, for this instance's listeners.
    signals: broadcast::Sender<Signal>,
    metrics: Arc<Metrics>,
}

impl FleetBus {
    /// A fleet bus for instance `instance` (unique per process), counting into `metrics`; the
    /// link starts down until it reports [`FleetBus::link_up`].
    pub fn new(instance: String, metrics: Arc<Metrics>) -> (Arc<FleetBus>, LinkQueues) {
        let (publish, publish_rx) = mpsc::channel(BUS_PUBLISH_QUEUE);
        let (control, control_rx) = mpsc::unbounded_channel();
        metrics.bus_up.set(0);
        let state = State { down: Some("not connected yet".into()), ..State::default() };
        let (signals, _) = broadcast::channel(chatbox_core::budgets::SIGNAL_QUEUE);
        let bus = FleetBus {
            local: LocalBus::default(),
            instance,
            publish,
            control,
            state: Mutex::new(state),
            confirmations: Notify::new(),
            signals,
            metrics,
        };
        // Every instance hears the admin events, whether or not a console is open on it now,
        // and every explicit end, whether or not a connection is bound to the session here.
        bus.acquire(admins_channel());
        bus.acquire(ends_channel());
        (Arc::new(bus), LinkQueues { publish: publish_rx, control: control_rx })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// This instance's id.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// Every channel this instance should be subscribed to (after a reconnect).
    pub fn channels(&self) -> BTreeSet<String> {
        self.lock().channels.keys().cloned().collect()
    }

    /// The link is connected and subscribed; returns whether it was down before (log once).
    pub fn link_up(&self) -> bool {
        self.metrics.bus_up.set(1);
        self.lock().down.take().is_some()
    }

    /// The link is down for `error`; returns whether it was up before (log once).
    pub fn link_down(&self, error: &str) -> bool {
        self.metrics.bus_up.set(0);
        let mut state = self.lock();
        state.confirmed.clear();
        let was_up = state.down.replace(error.to_string()).is_none();
        drop(state);
        self.confirmations.notify_waiters();
        was_up
    }

    /// Waits until `ready` answers for the state: checked now and after each wake-up of
    /// `confirmations` (a confirmed subscription, a reached flush, the link dropping).
    async fn wait_for<T>(&self, ready: impl Fn(&State) -> Option<T>) -> T {
        loop {
            let notified = self.confirmations.notified();
            tokio::pin!(notified);
            // Registered before the check, so a wake-up in between is not missed.
            notified.as_mut().enable();
            if let Some(answer) = ready(&self.lock()) {
                return answer;
            }
            notified.await;
        }
    }

    /// The link handled everything queued before flush `n` (it reports it).
    pub fn flush_reached(&self, n: u64) {
        let mut state = self.lock();
        state.flushes.1 = state.flushes.1.max(n);
        drop(state);
        self.confirmations.notify_waiters();
    }

    /// Redis acknowledged the subscription to `channel` (the link reports it).
    pub fn confirm(&self, channel: &str) {
        let mut state = self.lock();
        if state.channels.contains_key(channel) {
            state.confirmed.insert(channel.to_string());
        }
        drop(state);
        self.confirmations.notify_waiters();
    }

    /// Queues a write to the shared replay buffer, in order with the publications; `false` when
    /// it cannot be made (link down, queue full): a resume elsewhere then finds the gap and
    /// answers `RESUME_UNAVAILABLE` rather than skip a frame.
    pub fn record(&self, write: ReplayWrite) -> bool {
        if self.lock().down.is_some() {
            return false;
        }
        self.publish.try_send(LinkCommand::Record(write)).is_ok()
    }

    /// A payload received on a subscribed channel: decoded defensively and delivered to this
    /// instance's connections unless it is this instance's own. A bad message is counted and
    /// logged, never a panic.
    pub fn deliver(&self, payload: &[u8]) {
        let message = match BusMessage::decode(payload) {
            Ok(message) => message,
            Err(error) => {
                self.metrics.bus_rejected.inc();
                tracing::warn!(%error, bytes = payload.len(), "bus message rejected");
                return;
            }
        };
        if message.from == self.instance {
            return;
        }
        self.metrics.bus_received.inc();
        match message.event {
            BusEvent::Session { session, frame } => {
                self.local.to_session(&session, &Arc::from(frame), None);
            }
            BusEvent::SessionAdmins { session, owner, frame } => {
                let fanout = self.local.to_session_admins(&session, &owner, &Arc::from(frame));
                self.metrics.admin_messages_dropped.inc_by(fanout.dropped as u64);
            }
            BusEvent::User { user, frame } => {
                self.local.to_user(&user, &Arc::from(frame));
            }
            BusEvent::UnbindAdmin { session, admin, owner } => {
                let unbound = self.local.unbind_admin(&session, &admin, &owner);
                self.release(&session_channel(&session), unbound);
                if unbound > 0 {
                    let _ = self.signals.send(Signal::Unbound { session, connections: unbound });
                }
            }
            BusEvent::Signal { signal } => {
                // No listener (none started yet) is fine: signals are not kept.
                let _ = self.signals.send(signal);
            }
        }
    }

    fn publish(&self, channel: String, event: BusEvent) {
        if self.lock().down.is_some() {
            self.metrics.bus_unpublished.inc();
            return;
        }
        let payload = BusMessage::new(&self.instance, event).encode();
        match self.publish.try_send(LinkCommand::Publish { channel, payload }) {
            Ok(()) => self.metrics.bus_published.inc(),
            Err(_) => self.metrics.bus_unpublished.inc(),
        }
    }

    fn acquire(&self, channel: String) {
        let mut state = self.lock();
        let count = state.channels.entry(channel.clone()).or_default();
        *count += 1;
        if *count == 1 {
            let _ = self.control.send(LinkCommand::Subscribe(channel));
        }
    }

    fn release(&self, channel: &str, times: usize) {
        if times == 0 {
            return;
        }
        let mut state = self.lock();
        let Some(count) = state.channels.get_mut(channel) else { return };
        *count = count.saturating_sub(times);
        if *count == 0 {
            state.channels.remove(channel);
            state.confirmed.remove(channel);
            let _ = self.control.send(LinkCommand::Unsubscribe(channel.to_string()));
        }
    }
}

/// Local delivery (the trait's defaults) plus the channels and publications of the fleet.
impl Bus for FleetBus {
    fn local(&self) -> &LocalBus {
        &self.local
    }

    fn has_peers(&self) -> bool {
        true
    }

    fn register(&self, conn: Registration<'_>) -> ConnId {
        let user_id = conn.user_id;
        let id = self.local.register(conn);
        self.lock().users.insert(id, user_id.to_string());
        self.acquire(user_channel(user_id));
        id
    }

    fn unregister(&self, conn: ConnId) -> Option<Arc<str>> {
        let session = self.local.unregister(conn);
        if let Some(session) = &session {
            self.release(&session_channel(session), 1);
        }
        let user = self.lock().users.remove(&conn);
        if let Some(user) = user {
            self.release(&user_channel(&user), 1);
        }
        session
    }

    fn bind(&self, conn: ConnId, session: &str) -> Rebound {
        // The channel is taken before the binding moves, and given back when it did not: a
        // close racing with this bind releases whatever the connection is bound to when it
        // runs, and always finds that count taken (taken after the move, a release in between
        // could unsubscribe a channel another connection still needs, or leave one taken).
        let channel = session_channel(session);
        self.acquire(channel.clone());
        let rebound = self.local.bind(conn, session);
        match &rebound {
            Rebound::Moved { previous: Some(previous) } => {
                self.release(&session_channel(previous), 1);
            }
            Rebound::Moved { previous: None } => {}
            Rebound::Unchanged | Rebound::Gone => self.release(&channel, 1),
        }
        rebound
    }

    fn unbind_admin(&self, session: &str, admin_id: &str, owner: &str) -> usize {
        let unbound = self.local.unbind_admin(session, admin_id, owner);
        self.release(&session_channel(session), unbound);
        if admin_id != owner {
            let event = BusEvent::UnbindAdmin {
                session: session.to_string(),
                admin: admin_id.to_string(),
                owner: owner.to_string(),
            };
            self.publish(session_channel(session), event);
        }
        unbound
    }

    fn to_session(&self, session: &str, frame: &Arc<str>, also: Option<ConnId>) -> usize {
        let delivered = self.local.to_session(session, frame, also);
        let event = BusEvent::Session { session: session.to_string(), frame: frame.to_string() };
        self.publish(session_channel(session), event);
        delivered
    }

    fn to_session_admins(&self, session: &str, owner: &str, frame: &Arc<str>) -> Fanout {
        let fanout = self.local.to_session_admins(session, owner, frame);
        let event = BusEvent::SessionAdmins {
            session: session.to_string(),
            owner: owner.to_string(),
            frame: frame.to_string(),
        };
        self.publish(session_channel(session), event);
        fanout
    }

    fn to_user(&self, user_id: &str, frame: &Arc<str>) -> usize {
        let delivered = self.local.to_user(user_id, frame);
        let event = BusEvent::User { user: user_id.to_string(), frame: frame.to_string() };
        self.publish(user_channel(user_id), event);
        delivered
    }

    fn health(&self) -> Result<(), String> {
        self.lock().down.clone().map_or(Ok(()), Err)
    }

    /// A [`LinkCommand::Flush`] behind the queued publications, then a wait until the link
    /// reaches it or drops (an outage discards the queue: nothing is left to wait for).
    fn flushed(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            let n = {
                let mut state = self.lock();
                if state.down.is_some() {
                    return;
                }
                state.flushes.0 += 1;
                state.flushes.0
            };
            if self.publish.send(LinkCommand::Flush(n)).await.is_err() {
                return;
            }
            self.wait_for(|state| (state.down.is_some() || state.flushes.1 >= n).then_some(()))
                .await;
        })
    }

    fn subscribed(&self, session: &str) -> BoxFuture<'_, bool> {
        let channel = session_channel(session);
        Box::pin(async move {
            let wait = self.wait_for(|state| {
                if state.confirmed.contains(&channel) {
                    Some(true)
                } else {
                    state.down.is_some().then_some(false)
                }
            });
            tokio::time::timeout(BUS_COMMAND_TIMEOUT, wait).await.unwrap_or(false)
        })
    }

    fn publish_signal(&self, signal: &Signal) {
        let channel = match signal {
            Signal::StopReply { .. } => ends_channel(),
            Signal::Admin { .. } => admins_channel(),
            Signal::SessionEnded { .. } => ends_channel(),
            // This instance's own bookkeeping: never published.
            Signal::Unbound { .. } => return,
        };
        self.publish(channel, BusEvent::Signal { signal: signal.clone() });
    }

    fn signals(&self) -> Option<broadcast::Receiver<Signal>> {
        Some(self.signals.subscribe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delivery::Delivery;

    fn conn(bus: &FleetBus, user: &str, admin: bool) -> (ConnId, super::super::queue::OutboundRx) {
        let (tx, rx) = super::super::queue::channel(8);
        (bus.register(Registration { user_id: user, is_admin: admin, tx }), rx)
    }

    #[test]
    fn subscriptions_follow_local_bindings() {
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::new(Metrics::new()));
        let (c1, _r1) = conn(&bus, "u1", false);
        let (c2, _r2) = conn(&bus, "u1", false);
        bus.bind(c1, "s");
        bus.bind(c2, "s");
        // A repeat bind takes nothing more; a closed connection's bind leaves nothing taken.
        assert_eq!(bus.bind(c2, "s"), Rebound::Unchanged);
        let (gone, _rg) = conn(&bus, "u1", false);
        bus.unregister(gone);
        assert_eq!(bus.bind(gone, "t"), Rebound::Gone);
        assert!(!bus.channels().contains(&session_channel("t")));
        let mut seen = Vec::new();
        while let Ok(command) = queues.control.try_recv() {
            seen.push(command);
        }
        assert_eq!(
            seen,
            [
                LinkCommand::Subscribe(admins_channel()),
                LinkCommand::Subscribe(ends_channel()),
                LinkCommand::Subscribe(user_channel("u1")),
                LinkCommand::Subscribe(session_channel("s")),
                LinkCommand::Subscribe(session_channel("t")),
                LinkCommand::Unsubscribe(session_channel("t")),
            ]
        );
        bus.unregister(c1);
        assert!(queues.control.try_recv().is_err(), "c2 still needs both channels");
        bus.unregister(c2);
        assert_eq!(
            queues.control.try_recv().ok(),
            Some(LinkCommand::Unsubscribe(session_channel("s")))
        );
        assert_eq!(
            queues.control.try_recv().ok(),
            Some(LinkCommand::Unsubscribe(user_channel("u1")))
        );
        assert_eq!(
            bus.channels().into_iter().collect::<Vec<_>>(),
            [admins_channel(), ends_channel()]
        );
    }

    #[test]
    fn frames_reach_local_connections_at_once_and_are_published_only_while_up() {
        let metrics = Arc::new(Metrics::new());
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::clone(&metrics));
        let (c, mut rx) = conn(&bus, "u1", false);
        bus.bind(c, "s");
        assert_eq!(bus.to_session("s", &Arc::from("f1"), None), 1, "local while down");
        assert!(rx.try_recv().is_ok());
        assert!(queues.publish.try_recv().is_err());
        assert_eq!(metrics.bus_unpublished.get(), 1);
        assert!(bus.health().is_err());
        assert!(bus.link_up());
        assert_eq!(bus.health(), Ok(()));
        bus.to_session("s", &Arc::from("f2"), None);
        let Ok(LinkCommand::Publish { channel, payload }) = queues.publish.try_recv() else {
            panic!("published")
        };
        assert_eq!(channel, session_channel("s"));
        let message = BusMessage::decode(payload.as_bytes()).expect("decodes");
        assert_eq!(message.from, "a");
        assert_eq!(message.event, BusEvent::Session { session: "s".into(), frame: "f2".into() });
    }

    #[tokio::test]
    async fn a_subscription_counts_once_confirmed_and_replay_writes_queue_before_publications() {
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::new(Metrics::new()));
        let (c, _rx) = conn(&bus, "u1", false);
        bus.bind(c, "s");
        assert!(!bus.subscribed("s").await, "link down: cannot be known");
        bus.link_up();
        let waiting = bus.subscribed("s");
        bus.confirm(&session_channel("s"));
        assert!(waiting.await, "confirmed while waiting");
        assert!(bus.subscribed("s").await);
        let write = ReplayWrite {
            reply_id: "r".into(),
            session: "s".into(),
            entry: Some((1, "{}".into())),
            ended: false,
            state_ttl: Duration::from_secs(3),
            stream_ttl: Duration::from_secs(9),
        };
        assert!(bus.record(write.clone()));
        bus.to_session("s", &Arc::from("f1"), None);
        assert_eq!(queues.publish.try_recv().ok(), Some(LinkCommand::Record(write)));
        assert!(matches!(queues.publish.try_recv(), Ok(LinkCommand::Publish { .. })));
        bus.link_down("gone");
        assert!(!bus.subscribed("s").await, "confirmations end with the link");
    }

    #[tokio::test(start_paused = true)]
    async fn a_flush_waits_for_the_publications_queued_before_it() {
        let metrics = Arc::new(Metrics::new());
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::clone(&metrics));
        bus.flushed().await; // link down: nothing can be queued, nothing to wait for
        assert!(queues.publish.try_recv().is_err(), "no flush queued while down");
        assert!(bus.link_up());
        let (c, _rx) = conn(&bus, "u1", false);
        bus.bind(c, "s");
        bus.to_session("s", &Arc::from("done"), None);
        let flushed = bus.flushed();
        tokio::pin!(flushed);
        assert!(futures_util::poll!(flushed.as_mut()).is_pending(), "the link has not sent it");
        assert!(matches!(queues.publish.try_recv(), Ok(LinkCommand::Publish { .. })));
        assert_eq!(queues.publish.try_recv().ok(), Some(LinkCommand::Flush(1)), "behind it");
        bus.flush_reached(0);
        assert!(
            futures_util::poll!(flushed.as_mut()).is_pending(),
            "an older flush is not this one"
        );
        bus.flush_reached(1);
        assert!(futures_util::poll!(flushed.as_mut()).is_ready());
        // A second flush that the link never reaches ends when the link drops (its queue is gone).
        let second = bus.flushed();
        tokio::pin!(second);
        assert!(futures_util::poll!(second.as_mut()).is_pending());
        assert_eq!(queues.publish.try_recv().ok(), Some(LinkCommand::Flush(2)));
        bus.link_down("gone");
        assert!(futures_util::poll!(second.as_mut()).is_ready());
    }

    #[tokio::test(start_paused = true)]
    async fn an_exiting_instance_waits_for_the_flush_at_most_its_grace() {
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::new(Metrics::new()));
        assert!(bus.link_up());
        let delivery = Delivery::new(bus.clone(), Arc::new(Metrics::new()));
        let clock = crate::engine::clock::Clock::new();
        let started = clock.now();
        delivery.flush_bus(Duration::from_secs(1)).await;
        assert_eq!(clock.now() - started, Duration::from_secs(1), "nobody answered: the grace");
        assert_eq!(queues.publish.try_recv().ok(), Some(LinkCommand::Flush(1)));
        let link = async {
            if let Some(LinkCommand::Flush(n)) = queues.publish.recv().await {
                tokio::time::sleep(Duration::from_millis(5)).await;
                bus.flush_reached(n);
            }
        };
        let started = clock.now();
        tokio::join!(delivery.flush_bus(Duration::from_secs(1)), link);
        assert_eq!(clock.now() - started, Duration::from_millis(5), "ends when the link answers");
    }

    #[test]
    fn signals_are_published_on_the_fleet_wide_admins_or_ends_channel() {
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::new(Metrics::new()));
        assert!(bus.link_up());
        bus.publish_signal(&Signal::StopReply { session: "s".into() });
        bus.publish_signal(&Signal::Admin { event: "{}".into() });
        bus.publish_signal(&Signal::SessionEnded { session: "s".into() });
        let mut published = Vec::new();
        while let Ok(LinkCommand::Publish { channel, payload }) = queues.publish.try_recv() {
            let message = BusMessage::decode(payload.as_bytes()).expect("decodes");
            published.push((channel, message.event));
        }
        assert_eq!(
            published,
            [
                (
                    // Fleet-wide: the instance streaming the reply may have no connection of the
                    // session left, so it is not subscribed to the session's channel.
                    ends_channel(),
                    BusEvent::Signal { signal: Signal::StopReply { session: "s".into() } }
                ),
                (
                    admins_channel(),
                    BusEvent::Signal { signal: Signal::Admin { event: "{}".into() } }
                ),
                (
                    ends_channel(),
                    BusEvent::Signal { signal: Signal::SessionEnded { session: "s".into() } }
                ),
            ]
        );
    }

    #[test]
    fn messages_from_other_instances_are_delivered_and_own_ones_ignored() {
        let metrics = Arc::new(Metrics::new());
        let (bus, mut queues) = FleetBus::new("a".into(), Arc::clone(&metrics));
        let (user, mut ru) = conn(&bus, "u1", false);
        let (admin, mut ra) = conn(&bus, "boss", true);
        bus.bind(user, "s");
        bus.bind(admin, "s");
        let frame = |from: &str| {
            BusMessage::new(from, BusEvent::Session { session: "s".into(), frame: "x".into() })
                .encode()
        };
        bus.deliver(frame("a").as_bytes());
        assert!(ru.try_recv().is_err(), "own publication ignored");
        bus.deliver(frame("b").as_bytes());
        assert!(ru.try_recv().is_ok() && ra.try_recv().is_ok());
        let leave = BusMessage::new(
            "b",
            BusEvent::UnbindAdmin { session: "s".into(), admin: "boss".into(), owner: "u1".into() },
        );
        let mut signals = bus.signals().expect("a fleet bus has signals");
        bus.deliver(leave.encode().as_bytes());
        assert_eq!(bus.bound(admin), None, "the admin left on another instance");
        assert_eq!(bus.bound(user).as_deref(), Some("s"));
        // The session table here hears of it: that connection no longer keeps it alive.
        let unbound = Signal::Unbound { session: "s".into(), connections: 1 };
        assert_eq!(signals.try_recv().ok(), Some(unbound.clone()));
        bus.publish_signal(&unbound);
        while let Ok(command) = queues.publish.try_recv() {
            assert!(!matches!(command, LinkCommand::Publish { .. }), "never published");
        }
        let stop = BusMessage::new(
            "b",
            BusEvent::Signal { signal: Signal::StopReply { session: "s".into() } },
        );
        bus.deliver(stop.encode().as_bytes());
        assert_eq!(signals.try_recv().ok(), Some(Signal::StopReply { session: "s".into() }));
        bus.deliver(b"\xff garbage");
        assert_eq!(metrics.bus_rejected.get(), 1);
        assert_eq!(metrics.bus_received.get(), 3);
    }
}
