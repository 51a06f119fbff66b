//! The in-process [`Bus`]: which WebSocket connections of this process are open, whose they are,
//! which session each is bound to, and the bounded outbound queue of each. Frames for a session fan out to every
//! connection bound to it (PROTOCOL.md §10 item 11); a connection whose queue is full is a slow
//! consumer and is disconnected rather than silently losing frames of a reply — the session and
//! the reply survive, and the client resumes on reconnect.
//!
//! Shared state behind one `std::sync::Mutex` whose critical sections are map updates and
//! non-blocking `try_send`s; nothing awaits while holding it.
//!
//! A connection can be *held* while a resume reads its replay from Redis: its frames go to a
//! side queue (bounded by `RESUME_HOLD_FRAMES`, overflowing like any queue) and are merged with
//! the replay on release, under the lock, before any later frame.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::queue::{self, OutboundRx, OutboundTx, TrySendError};
use super::{Bus, ConnId, Fanout, Kick, Outbound, Registration};
use chatbox_core::budgets::RESUME_HOLD_FRAMES;

/// The registry's view of one connection.
#[derive(Debug)]
struct Conn {
    user_id: Arc<str>,
    is_admin: bool,
    tx: OutboundTx,
    session: Option<Arc<str>>,
    /// While held: the connection's own queue, and the side queue `tx` points to meanwhile.
    held: Option<(OutboundTx, OutboundRx)>,
    /// After a resume from the shared store: what it covered, so the live copies of those
    /// frames (published after Redis recorded them) are not sent again.
    replayed: Option<Replayed>,
}

impl Conn {
    /// The connection's own queue (`tx` is a side queue while it is held): kicks go here.
    fn own_queue(&self) -> &OutboundTx {
        self.held.as_ref().map_or(&self.tx, |(own, _)| own)
    }
}

/// What a resume from the shared store covered of one reply: every seq up to `upto` (the
/// client's own `after_seq` and the frames replayed after it) and the replayed frames that carry
/// no seq (a failed reply's error frame from an instance of an older release). Their live copies can still reach the connection after
/// the resume: the producer records a frame in the shared store and publishes it in two round
/// trips, so a read can see the record before the publication arrives — including a read that
/// found nothing after `after_seq`, whose client already has the frame being published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replayed {
    reply_id: Arc<str>,
    upto: u64,
    unnumbered: Vec<Arc<str>>,
}

impl Replayed {
    /// A resume of `reply_id` after `after_seq` that replayed `frames` (seq `after_seq + 1 ..`,
    /// core's `shared_replay`).
    pub fn new(reply_id: &str, after_seq: u64, frames: &[Arc<str>]) -> Self {
        let numbered = |f: &&Arc<str>| super::reply_seq(f, reply_id).is_some();
        let (numbered, unnumbered): (Vec<&Arc<str>>, Vec<&Arc<str>>) =
            frames.iter().partition(numbered);
        let top = numbered.iter().filter_map(|f| super::reply_seq(f, reply_id)).max();
        Replayed {
            reply_id: Arc::from(reply_id),
            upto: top.unwrap_or(after_seq).max(after_seq),
            unnumbered: unnumbered.into_iter().cloned().collect(),
        }
    }

    /// Whether `frame` is a live copy of something the resume covered.
    pub fn covers(&self, frame: &str) -> bool {
        if self.unnumbered.iter().any(|f| **f == *frame) {
            return true;
        }
        // The substring test keeps every other frame from being parsed.
        frame.contains(&*self.reply_id)
            && super::reply_seq(frame, &self.reply_id).is_some_and(|seq| seq <= self.upto)
    }
}

/// The connections of one user or one session, ascending: a sorted vector, since there are a
/// few of them (a `BTreeSet` node takes ~100 bytes even for one id, in every connection).
#[derive(Debug, Default)]
struct ConnSet(Vec<ConnId>);

impl ConnSet {
    /// Adds `id` (ids grow, so this is usually a push).
    fn insert(&mut self, id: ConnId) {
        if let Err(at) = self.0.binary_search(&id) {
            self.0.insert(at, id);
        }
    }

    /// Removes `id`; whether it was there.
    fn remove(&mut self, id: &ConnId) -> bool {
        match self.0.binary_search(id) {
            Ok(at) => {
                self.0.remove(at);
                true
            }
            Err(_) => false,
        }
    }

    fn contains(&self, id: &ConnId) -> bool {
        self.0.binary_search(id).is_ok()
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.0.len()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn iter(&self) -> std::slice::Iter<'_, ConnId> {
        self.0.iter()
    }
}

/// Counters for metrics.
#[derive(Debug, Default)]
pub struct RegistryStats {
    /// Frames dropped because a queue was full (their connection was then dropped).
    pub overflowed: AtomicU64,
}

#[derive(Debug, Default)]
struct Inner {
    next_id: ConnId,
    conns: HashMap<ConnId, Conn>,
    by_session: HashMap<Arc<str>, ConnSet>,
    by_user: HashMap<Arc<str>, ConnSet>,
}

/// The in-process bus: the registry of this process's open connections.
#[derive(Debug, Default)]
pub struct LocalBus {
    inner: Mutex<Inner>,
    /// Counters.
    pub stats: RegistryStats,
}

/// What binding a connection changed, so the session table counts each connection once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rebound {
    /// The connection is gone (it closed before the binding): nothing was bound.
    Gone,
    /// It was already bound to that session.
    Unchanged,
    /// It is bound there now, moved from `previous`.
    Moved {
        /// The session it was bound to before, if any.
        previous: Option<Arc<str>>,
    },
}

impl LocalBus {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Connections bound to `session`.
    #[cfg(test)]
    fn session_connections(&self, session: &str) -> usize {
        self.lock().by_session.get(session).map_or(0, ConnSet::len)
    }

    fn offer(&self, conn: &Conn, item: Outbound) -> bool {
        if let (Some(replayed), Outbound::Frame(frame)) = (&conn.replayed, &item) {
            if replayed.covers(frame) {
                return true;
            }
        }
        match conn.tx.try_send(item) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.stats.overflowed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(user_id = %conn.user_id, "outbound queue full; dropping slow connection");
                conn.own_queue().kick(Kick::SlowConsumer);
                false
            }
            Err(TrySendError::Closed(_)) => false,
        }
    }
}

/// The in-process bus is the local delivery itself: every method is the trait's default.
impl Bus for LocalBus {
    fn local(&self) -> &LocalBus {
        self
    }
}

impl LocalBus {
    /// Adds a connection; returns its id.
    pub fn register(&self, conn: Registration<'_>) -> ConnId {
        let Registration { user_id, is_admin, tx } = conn;
        let mut inner = self.lock();
        inner.next_id += 1;
        let id = inner.next_id;
        let user: Arc<str> = Arc::from(user_id);
        inner.by_user.entry(Arc::clone(&user)).or_default().insert(id);
        inner.conns.insert(
            id,
            Conn { user_id: user, is_admin, tx, session: None, held: None, replayed: None },
        );
        id
    }

    /// Removes a connection; returns the session it was bound to.
    pub fn unregister(&self, id: ConnId) -> Option<Arc<str>> {
        let mut inner = self.lock();
        let conn = inner.conns.remove(&id)?;
        if let Some(set) = inner.by_user.get_mut(&conn.user_id) {
            set.remove(&id);
            if set.is_empty() {
                inner.by_user.remove(&conn.user_id);
            }
        }
        if let Some(session) = &conn.session {
            remove_binding(&mut inner, session, id);
        }
        conn.session
    }

    /// The session a connection is bound to.
    pub fn bound(&self, id: ConnId) -> Option<Arc<str>> {
        self.lock().conns.get(&id).and_then(|c| c.session.clone())
    }

    /// Binds (or moves) a connection to `session`; says what changed.
    pub fn bind(&self, id: ConnId, session: &str) -> Rebound {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.get_mut(&id) else { return Rebound::Gone };
        if conn.session.as_deref() == Some(session) {
            return Rebound::Unchanged;
        }
        conn.replayed = None;
        let session: Arc<str> = Arc::from(session);
        let previous = conn.session.replace(Arc::clone(&session));
        if let Some(prev) = &previous {
            remove_binding(&mut inner, prev, id);
        }
        inner.by_session.entry(session).or_default().insert(id);
        Rebound::Moved { previous }
    }

    /// Queues a frame on one connection; `false` if it is gone or was dropped as a slow consumer.
    pub fn to_conn(&self, id: ConnId, frame: &Arc<str>) -> bool {
        let inner = self.lock();
        match inner.conns.get(&id) {
            Some(conn) => self.offer(conn, Outbound::Frame(Arc::clone(frame))),
            None => false,
        }
    }

    /// Queues a frame on every connection bound to `session` and on `also` (the sender, when it
    /// is not bound there); returns how many connections got it.
    pub fn to_session(&self, session: &str, frame: &Arc<str>, also: Option<ConnId>) -> usize {
        let inner = self.lock();
        let mut delivered = 0;
        let bound = inner.by_session.get(session);
        if let Some(set) = bound {
            for id in set.iter() {
                if let Some(conn) = inner.conns.get(id) {
                    delivered += usize::from(self.offer(conn, Outbound::Frame(Arc::clone(frame))));
                }
            }
        }
        if let Some(extra) = also {
            if !bound.is_some_and(|s| s.contains(&extra)) {
                if let Some(conn) = inner.conns.get(&extra) {
                    delivered += usize::from(self.offer(conn, Outbound::Frame(Arc::clone(frame))));
                }
            }
        }
        delivered
    }

    /// Queues a frame on the admin connections bound to `session` that do not belong to the
    /// session's owner (the assisting admin's view of the user's messages).
    pub fn to_session_admins(&self, session: &str, owner: &str, frame: &Arc<str>) -> Fanout {
        let inner = self.lock();
        let mut fanout = Fanout::default();
        let Some(set) = inner.by_session.get(session) else { return fanout };
        for conn in set.iter().filter_map(|id| inner.conns.get(id)) {
            if conn.is_admin && &*conn.user_id != owner {
                if self.offer(conn, Outbound::Frame(Arc::clone(frame))) {
                    fanout.delivered += 1;
                } else {
                    fanout.dropped += 1;
                }
            }
        }
        fanout
    }

    /// Unbinds the admin connections of `admin_id` from `session` (the admin left: nothing of the
    /// session reaches them any more, §10 item 3). The session owner's own connections are never
    /// touched, even when the owner is an admin. Returns how many were unbound.
    pub fn unbind_admin(&self, session: &str, admin_id: &str, owner: &str) -> usize {
        if admin_id == owner {
            return 0;
        }
        let mut inner = self.lock();
        let Some(set) = inner.by_session.get(session) else { return 0 };
        let leaving: Vec<ConnId> = set
            .iter()
            .copied()
            .filter(|id| inner.conns.get(id).is_some_and(|c| c.is_admin && &*c.user_id == admin_id))
            .collect();
        let key: Arc<str> = Arc::from(session);
        for id in &leaving {
            if let Some(conn) = inner.conns.get_mut(id) {
                conn.session = None;
            }
            remove_binding(&mut inner, &key, *id);
        }
        leaving.len()
    }

    /// Queues a frame on every connection of `user_id`.
    pub fn to_user(&self, user_id: &str, frame: &Arc<str>) -> usize {
        let inner = self.lock();
        let Some(set) = inner.by_user.get(user_id) else { return 0 };
        set.iter()
            .filter_map(|id| inner.conns.get(id))
            .map(|c| usize::from(self.offer(c, Outbound::Frame(Arc::clone(frame)))))
            .sum()
    }

    /// Queues a close on every connection (shutdown); a full queue gets a kick instead.
    pub fn close_all(&self, code: u16, reason: &'static str) -> usize {
        let inner = self.lock();
        for conn in inner.conns.values() {
            if conn.tx.try_send(Outbound::Close(code, reason)).is_err() {
                conn.own_queue().kick(Kick::Forced);
            }
        }
        inner.conns.len()
    }

    /// Drops every connection at once (shutdown deadline).
    pub fn kick_all(&self) -> usize {
        let inner = self.lock();
        for conn in inner.conns.values() {
            conn.own_queue().kick(Kick::Forced);
        }
        inner.conns.len()
    }

    /// Open connections.
    pub fn connections(&self) -> usize {
        self.lock().conns.len()
    }

    /// Takes the frames for `id` aside until [`LocalBus::release`]; `false` if it is gone.
    pub fn hold(&self, id: ConnId) -> bool {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.get_mut(&id) else { return false };
        if conn.held.is_some() {
            return true;
        }
        let (side, rx) = queue::channel(RESUME_HOLD_FRAMES);
        let own = std::mem::replace(&mut conn.tx, side);
        conn.held = Some((own, rx));
        true
    }

    /// From now on `id` skips the live copies of what a resume from the shared store covered
    /// (see [`Replayed`]).
    pub fn skip_replayed(&self, id: ConnId, replayed: Replayed) {
        if let Some(conn) = self.lock().conns.get_mut(&id) {
            conn.replayed = Some(replayed);
        }
    }

    /// Ends a hold: `merge` turns the frames taken aside into what `id` gets, queued first.
    pub fn release(&self, id: ConnId, merge: &mut dyn FnMut(Vec<Arc<str>>) -> Vec<Arc<str>>) {
        let mut inner = self.lock();
        let Some(conn) = inner.conns.get_mut(&id) else { return };
        let Some((own, mut rx)) = conn.held.take() else { return };
        conn.tx = own;
        let (mut frames, mut closes) = (Vec::new(), Vec::new());
        while let Ok(item) = rx.try_recv() {
            match item {
                Outbound::Frame(frame) => frames.push(frame),
                close @ Outbound::Close(..) => closes.push(close),
            }
        }
        // The merge is what the connection gets: skipping replayed seqs applies only to the live
        // copies that follow, so it is set aside while the merge is queued.
        let skipping = inner.conns.get_mut(&id).and_then(|conn| conn.replayed.take());
        if let Some(conn) = inner.conns.get(&id) {
            let queued = merge(frames).into_iter().all(|f| self.offer(conn, Outbound::Frame(f)));
            if queued {
                for close in closes {
                    self.offer(conn, close);
                }
            }
        }
        if let Some(conn) = inner.conns.get_mut(&id) {
            conn.replayed = skipping;
        }
    }
}

fn remove_binding(inner: &mut Inner, session: &Arc<str>, id: ConnId) {
    if let Some(set) = inner.by_session.get_mut(session) {
        set.remove(&id);
        if set.is_empty() {
            inner.by_session.remove(session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(reg: &LocalBus, user: &str, admin: bool, cap: usize) -> (ConnId, OutboundRx) {
        let (tx, rx) = queue::channel(cap);
        (reg.register(Registration { user_id: user, is_admin: admin, tx }), rx)
    }

    fn frame(text: &str) -> Arc<str> {
        Arc::from(text)
    }

    #[test]
    fn fan_out_reaches_every_bound_connection_and_unbind_removes_only_one() {
        let reg = LocalBus::default();
        let (a, mut ra) = conn(&reg, "u1", false, 8);
        let (b, mut rb) = conn(&reg, "u1", false, 8);
        reg.bind(a, "s1");
        reg.bind(b, "s1");
        assert_eq!(reg.to_session("s1", &frame("x"), None), 2);
        assert!(ra.try_recv().is_ok() && rb.try_recv().is_ok());
        assert_eq!(reg.unregister(a).as_deref(), Some("s1"));
        assert_eq!(reg.to_session("s1", &frame("y"), None), 1, "b is still bound");
        assert!(rb.try_recv().is_ok());
    }

    #[test]
    fn sender_outside_the_session_still_gets_its_frame_once() {
        let reg = LocalBus::default();
        let (a, mut ra) = conn(&reg, "u1", false, 8);
        assert_eq!(reg.to_session("s1", &frame("err"), Some(a)), 1);
        reg.bind(a, "s1");
        assert_eq!(reg.to_session("s1", &frame("err"), Some(a)), 1, "not twice");
        assert!(ra.try_recv().is_ok() && ra.try_recv().is_ok() && ra.try_recv().is_err());
    }

    #[test]
    fn a_conn_set_keeps_each_id_once_in_order() {
        let mut set = ConnSet::default();
        for id in [5, 2, 9, 2, 7] {
            set.insert(id);
        }
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [2, 5, 7, 9]);
        assert!(set.contains(&7) && !set.contains(&3));
        assert!(set.remove(&5) && !set.remove(&5));
        assert_eq!(set.iter().copied().collect::<Vec<_>>(), [2, 7, 9]);
        assert_eq!(set.len(), 3);
    }

    #[test]
    fn rebinding_moves_the_connection() {
        let reg = LocalBus::default();
        let (a, _ra) = conn(&reg, "u1", false, 8);
        reg.bind(a, "old");
        assert_eq!(reg.bind(a, "new"), Rebound::Moved { previous: Some(Arc::from("old")) });
        assert_eq!(reg.bind(a, "new"), Rebound::Unchanged);
        assert_eq!(reg.session_connections("old"), 0);
        assert_eq!(reg.session_connections("new"), 1);
        reg.unregister(a);
        assert_eq!(reg.bind(a, "new"), Rebound::Gone, "a closed connection is not bound");
        assert_eq!(reg.session_connections("new"), 0);
    }

    #[test]
    fn a_full_queue_kicks_the_slow_connection() {
        let reg = LocalBus::default();
        let (a, _ra) = conn(&reg, "u1", false, 1);
        reg.bind(a, "s");
        assert_eq!(reg.to_session("s", &frame("1"), None), 1);
        assert_eq!(reg.to_session("s", &frame("2"), None), 0);
        assert_eq!(reg.stats.overflowed.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn a_held_connection_gets_the_merge_of_its_held_frames_before_any_later_frame() {
        let reg = LocalBus::default();
        let (a, mut ra) = conn(&reg, "u1", false, 8);
        reg.bind(a, "s");
        assert!(reg.hold(a));
        assert_eq!(reg.to_session("s", &frame("live"), None), 1, "taken aside");
        assert!(ra.try_recv().is_err(), "nothing reaches the socket while held");
        reg.release(a, &mut |held| {
            assert_eq!(held, vec![frame("live")]);
            vec![frame("replayed"), frame("live")]
        });
        reg.to_session("s", &frame("later"), None);
        let got: Vec<_> = std::iter::from_fn(|| match ra.try_recv() {
            Ok(Outbound::Frame(f)) => Some(f),
            _ => None,
        })
        .collect();
        assert_eq!(got, vec![frame("replayed"), frame("live"), frame("later")]);
        assert!(!reg.hold(99), "unknown connection");
    }

    fn chunk(reply: &str, seq: u64) -> Arc<str> {
        frame(&format!(
            r#"{{"type":"ai_response","metadata":{{"reply_id":"{reply}","seq":"{seq}"}}}}"#
        ))
    }

    fn drain(rx: &mut OutboundRx) -> Vec<Arc<str>> {
        std::iter::from_fn(|| match rx.try_recv() {
            Ok(Outbound::Frame(f)) => Some(f),
            _ => None,
        })
        .collect()
    }

    #[test]
    fn live_copies_of_replayed_frames_are_skipped_and_later_ones_delivered() {
        let reg = LocalBus::default();
        let (a, mut ra) = conn(&reg, "u1", false, 8);
        reg.bind(a, "s");
        reg.skip_replayed(a, Replayed::new("r1", 1, &[chunk("r1", 2), chunk("r1", 3)]));
        for f in [chunk("r1", 2), chunk("r1", 3), chunk("r2", 1), chunk("r1", 4), frame("x")] {
            reg.to_session("s", &f, None);
        }
        assert_eq!(drain(&mut ra), vec![chunk("r2", 1), chunk("r1", 4), frame("x")]);
        reg.bind(a, "other");
        reg.to_session("other", &chunk("r1", 1), None);
        assert!(ra.try_recv().is_ok(), "a new binding ends the skipping");
    }

    /// The fleet world's seeds 1 and 14 (broker delayed): the resume read landed after seq 1
    /// was recorded but before it was published, found nothing after the client's `after_seq`
    /// of 1, and the live seq 1 that followed reached the client a second time.
    #[test]
    fn a_resume_that_replayed_nothing_still_skips_the_live_copies_up_to_its_after_seq() {
        let covered = Replayed::new("r1", 1, &[]);
        assert!(covered.covers(&chunk("r1", 1)) && covered.covers(&chunk("r1", 0)));
        assert!(!covered.covers(&chunk("r1", 2)) && !covered.covers(&chunk("r2", 1)));
        let reg = LocalBus::default();
        let (a, mut ra) = conn(&reg, "u1", false, 8);
        reg.bind(a, "s");
        reg.skip_replayed(a, covered);
        for f in [chunk("r1", 1), chunk("r1", 2), chunk("r1", 3)] {
            reg.to_session("s", &f, None);
        }
        assert_eq!(drain(&mut ra), vec![chunk("r1", 2), chunk("r1", 3)]);
    }

    #[test]
    fn a_replayed_error_frame_is_not_delivered_again_live() {
        let error = frame(r#"{"type":"error","session_id":"s","error":{"code":"LLM_TIMEOUT"}}"#);
        let covered = Replayed::new("r1", 2, &[chunk("r1", 3), Arc::clone(&error)]);
        assert!(covered.covers(&chunk("r1", 3)) && covered.covers(&error));
        assert!(!covered.covers(&chunk("r1", 4)));
        let other = frame(r#"{"type":"error","session_id":"s","error":{"code":"RATE_LIMITED"}}"#);
        assert!(!covered.covers(&other), "another error still reaches the client");
    }

    #[test]
    fn admins_see_user_messages_but_the_owner_does_not() {
        let reg = LocalBus::default();
        let (user, mut ru) = conn(&reg, "u1", false, 8);
        let (admin, mut ra) = conn(&reg, "boss", true, 8);
        reg.bind(user, "s");
        reg.bind(admin, "s");
        assert_eq!(reg.to_session_admins("s", "u1", &frame("m")).delivered, 1);
        assert!(ra.try_recv().is_ok());
        assert!(ru.try_recv().is_err());
    }
}
