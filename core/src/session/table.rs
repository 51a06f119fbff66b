//! [`SessionTable`]: the registry of live sessions of one server process, with its two indexes
//! (owner → active session, deadline → session). See the [module docs](super) for how to drive
//! it and the invariants it keeps.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::deadlines::DeadlineIndex;
use super::error::SessionError;
use super::limits::SessionLimits;
use super::naming::session_name;
use super::outcome::{
    Access, EndedSession, Left, LoadOutcome, MemoryStats, Resolution, ResolutionKind, SweepReport,
    TakeoverOutcome,
};
use super::record::{AdminRef, EndCause, Session, SessionId, SessionSnapshot, SessionState};
use crate::response_times::ResponseTimes;
use crate::time::{Instant, UnixMillis};

/// The steps of one [`SessionTable::sweep_batch`]: idle ends and drops of due sessions. At 3–4 µs
/// a step at a million sessions (BENCHMARKS.md), one batch holds the shell's table lock for about
/// 2 ms (p99 3 ms), under [`SWEEP_HOLD_GOAL`].
pub const SWEEP_BATCH: usize = 512;

/// The longest one sweep batch may hold the shell's session table lock (issue 18 item 5): the
/// goal [`SWEEP_BATCH`] is sized for, measured (never enforced) by the sessions bench and the
/// churn scenario.
pub const SWEEP_HOLD_GOAL: Duration = Duration::from_millis(10);

/// Buckets of the shell's `chatbox_session_sweep_batch_seconds`, in seconds: around
/// [`SWEEP_HOLD_GOAL`], so the histogram tells how many batches kept within it.
pub const SWEEP_BATCH_BUCKETS: [f64; 9] =
    [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 1.0];

/// The in-memory registry of live sessions for one server process (PROTOCOL.md §6).
///
/// A plain state machine: no locks, no IO, no clock reads, no randomness (ids are minted by the
/// caller). The server wraps it in a mutex; the simulator and the tests drive it directly.
///
/// # Driving it
///
/// * **Inputs** (mutate, return a decision): [`resolve`](Self::resolve),
///   [`insert_loaded`](Self::insert_loaded), [`attach`](Self::attach),
///   [`detach`](Self::detach), [`touch`](Self::touch), [`record_message`](Self::record_message),
///   [`record_reply`](Self::record_reply), [`set_model`](Self::set_model),
///   [`name_if_empty`](Self::name_if_empty), [`end`](Self::end), [`takeover`](Self::takeover),
///   [`leave`](Self::leave), [`request_help`](Self::request_help), [`remove`](Self::remove) and
///   the timer input [`sweep`](Self::sweep) (or, bounded, [`sweep_at_most`](Self::sweep_at_most)
///   and [`sweep_batch`](Self::sweep_batch)).
/// * **Outputs**: the returned values (all `#[must_use]`: they say what to persist, whom to
///   rebind, which frame to send), and [`next_deadline`](Self::next_deadline), the instant at
///   which the driver must call `sweep` if nothing else happened first. Any input may move that
///   deadline, so the sweeper re-reads it after waking (or simply wakes at
///   `min(next_deadline, now + cleanup_interval)`); extra sweeps are harmless.
/// * **Queries** (no change): [`check_access`](Self::check_access), [`get`](Self::get),
///   [`active_of`](Self::active_of), [`iter`](Self::iter), [`len`](Self::len),
///   [`memory_stats`](Self::memory_stats), [`check_invariants`](Self::check_invariants).
///
/// `now` is the driver's monotonic clock (the shell's runtime clock, the simulator's virtual
/// clock, a test's explicit `Instant`) and drives every deadline. It should not go backwards; a
/// `now` earlier than one already seen is taken as the latest seen (two tasks may read the clock
/// and then take the mutex in the other order). `wall` is used only for values that are stored
/// or shown (`ts`, `endTs`, `dur`).
///
/// Idempotent calls: `end` (again succeeds, overwriting the end time, §4.3), `takeover` by the
/// assisting admin (`Repeated`), `touch`, `set_model`, `name_if_empty` (names once),
/// `request_help`, `insert_loaded` (`AlreadyPresent`), `remove`, `sweep` at the same `now`, and
/// `resolve` with the id it returned (`Existing`). Not idempotent: `attach`/`detach` (a
/// counter: one `attach` per bound connection, one `detach` when it unbinds or closes),
/// `record_message`, `record_reply`. An `Err` leaves the table unchanged.
///
/// Every operation is O(log n) (sweep: O(k log n) for the k sessions it acts on), except the
/// admin views [`iter`](Self::iter) and [`check_invariants`](Self::check_invariants), which are
/// O(n). Memory is bounded by the active sessions plus the sessions ended within `ended_ttl`.
///
/// # Invariants
///
/// Checked by [`check_invariants`](Self::check_invariants) (proptests, simulator) and, for the
/// session a transition touched, by a `debug_assert!` after every transition:
///
/// * `one_active_per_user` — at most one active session per user.
/// * `user_index_exact` — the user → active-session index holds exactly one entry per active
///   session, under its owner.
/// * `deadline_index_exact` — the deadline index holds exactly one entry per session that has a
///   deadline, at the right instant: `last_activity + idle_timeout` for an active session with no
///   attached connection, `end + ended_ttl` for an ended one, none for an active session with a
///   connection.
/// * `stats_sum` — `active + inactive == total == len()`.
/// * `window_bounded` — every response-time window holds at most `response_time_capacity`
///   samples.
/// * `expired_swept` — after `sweep(t)`, no session whose deadline is ≤ `t` remains, unless
///   the transition that set that deadline happened at or after `t` (possible only with a zero
///   limit).
/// * `clock_monotonic` — no recorded instant lies after the latest `now` seen.
#[derive(Debug, Clone)]
pub struct SessionTable {
    pub(super) limits: SessionLimits,
    pub(super) sessions: BTreeMap<SessionId, Session>,
    /// Owner → their active session.
    pub(super) active_by_user: BTreeMap<Arc<str>, SessionId>,
    pub(super) deadlines: DeadlineIndex,
    /// The latest `now` seen.
    pub(super) clock: Instant,
    /// The `now` of the latest sweep.
    pub(super) swept_through: Option<Instant>,
}

impl Default for SessionTable {
    fn default() -> Self {
        Self::new(SessionLimits::default())
    }
}

impl SessionTable {
    /// An empty table.
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            sessions: BTreeMap::new(),
            active_by_user: BTreeMap::new(),
            deadlines: DeadlineIndex::default(),
            clock: Instant::ZERO,
            swept_through: None,
        }
    }

    /// The limits the table was built with.
    pub fn limits(&self) -> &SessionLimits {
        &self.limits
    }

    // ----- inputs -------------------------------------------------------------------------

    /// The session a `user_message` or `model_select` frame from `user_id` uses (PROTOCOL.md
    /// §6.2 with §10 items 4 and 22). `fresh_id` is a new random id minted by the shell, used
    /// only when a session is created.
    ///
    /// 1. `requested` is in memory and owned by someone else → `Err(NotOwner)`.
    /// 2. `requested` is the caller's active session → [`Existing`](ResolutionKind::Existing).
    /// 3. `requested` is the caller's session, ended less than `reconnect_window` ago without
    ///    anyone asking ([`EndCause::resumable`]): if the caller has another active session →
    ///    that one ([`Reused`](ResolutionKind::Reused)); else it becomes active again
    ///    ([`Resumed`](ResolutionKind::Resumed)).
    /// 4. Otherwise (absent, unknown, ended on request, or ended too long ago — then treated as
    ///    unknown, so the reply announces another id, §6.2): the
    ///    caller's active session if any ([`Reused`](ResolutionKind::Reused)), else a new session
    ///    under `fresh_id` ([`Created`](ResolutionKind::Created); `Err(IdInUse)` if that id is
    ///    already in memory).
    ///
    /// The chosen session counts as active at `now` (its idle clock restarts).
    pub fn resolve(
        &mut self,
        user_id: &str,
        requested: Option<&str>,
        fresh_id: SessionId,
        now: Instant,
        wall: UnixMillis,
    ) -> Result<Resolution, SessionError> {
        let now = self.observe(now);
        let mut resumable: Option<SessionId> = None;
        if let Some(session) = requested.and_then(|id| self.sessions.get(id)) {
            if &*session.user_id != user_id {
                return Err(SessionError::NotOwner);
            }
            match session.state {
                SessionState::Active => {
                    let id = session.id.clone();
                    self.mark_activity(id.as_str(), now);
                    return Ok(Resolution { id, kind: ResolutionKind::Existing, rebind: false });
                }
                SessionState::Ended { at, cause, .. } => {
                    let recent = now.saturating_duration_since(at) < self.limits.reconnect_window;
                    if recent && cause.resumable() {
                        resumable = Some(session.id.clone());
                    }
                }
            }
        }
        let rebind_to = |id: &SessionId| requested != Some(id.as_str());
        if let Some(active) = self.active_by_user.get(user_id).cloned() {
            self.mark_activity(active.as_str(), now);
            let rebind = rebind_to(&active);
            return Ok(Resolution { id: active, kind: ResolutionKind::Reused, rebind });
        }
        if let Some(id) = resumable {
            self.reactivate(&id, now);
            return Ok(Resolution { id, kind: ResolutionKind::Resumed, rebind: false });
        }
        if self.sessions.contains_key(fresh_id.as_str()) {
            return Err(SessionError::IdInUse);
        }
        let rebind = rebind_to(&fresh_id);
        self.create(user_id, fresh_id.clone(), now, wall);
        Ok(Resolution { id: fresh_id, kind: ResolutionKind::Created, rebind })
    }

    /// Loads a stored session the shell read from the database (on demand by id, §10 item 23, or
    /// at start-up, §6.1). `now` and `wall` are read together; they place the stored start and
    /// end times on the monotonic clock. A loaded session counts as active at `now`.
    ///
    /// Keeps one active session per user: an active snapshot whose owner already has another
    /// active session in memory is refused with [`LoadOutcome::ActiveConflict`]. An ended
    /// snapshot whose end is at least `ended_ttl` old is not inserted ([`LoadOutcome::Expired`]).
    pub fn insert_loaded(
        &mut self,
        snapshot: SessionSnapshot,
        now: Instant,
        wall: UnixMillis,
    ) -> LoadOutcome {
        let now = self.observe(now);
        if self.sessions.contains_key(snapshot.id.as_str()) {
            return LoadOutcome::AlreadyPresent;
        }
        let ago = |stored: UnixMillis| {
            let millis = wall.0.saturating_sub(stored.0).max(0);
            now - Duration::from_millis(u64::try_from(millis).unwrap_or(0))
        };
        let state = match snapshot.ended_wall {
            Some(ended_wall) => {
                let at = ago(ended_wall);
                if at + self.limits.ended_ttl <= now {
                    return LoadOutcome::Expired;
                }
                let cause =
                    if snapshot.ended_on_request { EndCause::Requested } else { EndCause::Stored };
                SessionState::Ended { at, wall: ended_wall, cause }
            }
            None => {
                if let Some(active) = self.active_by_user.get(snapshot.user_id.as_str()) {
                    return LoadOutcome::ActiveConflict { active: active.clone() };
                }
                SessionState::Active
            }
        };
        let mut response_times = ResponseTimes::new(self.limits.response_time_capacity);
        if !snapshot.avg_response_time.is_zero() {
            response_times.record(snapshot.avg_response_time);
        }
        let session = Session {
            id: snapshot.id.clone(),
            user_id: Arc::from(snapshot.user_id),
            name: snapshot.name,
            model_id: snapshot.model_id.filter(|m| !m.is_empty()),
            started_at: ago(snapshot.started_wall),
            started_wall: snapshot.started_wall,
            last_activity: now,
            state,
            attached: 0,
            assisting_admin: snapshot.assisting_admin,
            help_requested: snapshot.help_requested,
            response_times,
            total_tokens: snapshot.total_tokens,
            message_count: snapshot.message_count,
            deadline: None,
        };
        self.insert_new(session);
        LoadOutcome::Inserted
    }

    /// A connection was bound to session `id` (by the owner or the assisting admin). Counts as
    /// activity; while at least one connection is attached an active session never idles out.
    pub fn attach(&mut self, id: &str, now: Instant) -> Result<(), SessionError> {
        let now = self.observe(now);
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        session.attached = session.attached.saturating_add(1);
        session.last_activity = now;
        self.refresh_deadline(id);
        Ok(())
    }

    /// A connection bound to session `id` was unbound or closed. Counts as activity, so the
    /// idle clock of a session left with no connection starts at `now`. `NotFound` (the session
    /// was swept meanwhile) and `NotAttached` are harmless for the shell.
    pub fn detach(&mut self, id: &str, now: Instant) -> Result<(), SessionError> {
        let now = self.observe(now);
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        session.attached = session.attached.checked_sub(1).ok_or(SessionError::NotAttached)?;
        session.last_activity = now;
        self.refresh_deadline(id);
        Ok(())
    }

    /// Activity on session `id` at `now` (any inbound frame of its owner or assisting admin that
    /// does not go through [`resolve`](Self::resolve)). Restarts the idle clock.
    pub fn touch(&mut self, id: &str, now: Instant) -> Result<(), SessionError> {
        let now = self.observe(now);
        if !self.sessions.contains_key(id) {
            return Err(SessionError::NotFound);
        }
        self.mark_activity(id, now);
        Ok(())
    }

    /// A message was stored for session `id` (any sender). Counts it and counts as activity.
    pub fn record_message(&mut self, id: &str, now: Instant) -> Result<(), SessionError> {
        let now = self.observe(now);
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        session.message_count = session.message_count.saturating_add(1);
        self.mark_activity(id, now);
        Ok(())
    }

    /// An AI reply finished on session `id`: records its response time in the bounded window
    /// (oldest evicted, §6.5) and adds its tokens. Works on ended sessions too (a reply may
    /// finish after the end). Does not move the idle clock; store the reply with
    /// [`record_message`](Self::record_message).
    pub fn record_reply(
        &mut self,
        id: &str,
        response_time: Duration,
        tokens: u64,
    ) -> Result<(), SessionError> {
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        session.response_times.record(response_time);
        session.total_tokens = session.total_tokens.saturating_add(tokens);
        self.debug_check(id);
        Ok(())
    }

    /// Stores the selected provider id (`model_select`, §3.8 step 4). An empty `model` clears it.
    pub fn set_model(&mut self, id: &str, model: impl Into<String>) -> Result<(), SessionError> {
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        let model = model.into();
        session.model_id = if model.is_empty() { None } else { Some(model) };
        self.debug_check(id);
        Ok(())
    }

    /// Names session `id` from a user message if it has no name yet (§6.4). Returns the new name
    /// to persist (`nm`), or `None` when it was already named.
    pub fn name_if_empty(
        &mut self,
        id: &str,
        content: &str,
    ) -> Result<Option<String>, SessionError> {
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        if !session.name.is_empty() {
            return Ok(None);
        }
        session.name = session_name(content);
        let name = session.name.clone();
        self.debug_check(id);
        Ok(Some(name))
    }

    /// Ends session `id` at `now` / `wall` (`POST …/end`, §4.3, §6.6) on request, freeing its
    /// owner's active slot. The end is final ([`EndCause::Requested`]): the reconnect window
    /// never resumes it. Ending an ended session succeeds again, overwrites the end time (its
    /// memory TTL restarts) and makes that end final too. Returns the values to store.
    pub fn end(
        &mut self,
        id: &str,
        now: Instant,
        wall: UnixMillis,
    ) -> Result<EndedSession, SessionError> {
        let now = self.observe(now);
        self.end_at(id, now, wall, EndCause::Requested).ok_or(SessionError::NotFound)
    }

    /// Admin `admin_id` (display name `admin_name`) takes session `id` over (§4.8). The same
    /// admin again succeeds ([`TakeoverOutcome::Repeated`], name refreshed); another admin
    /// assisting → `Err(AlreadyAssisted)`. Allowed on ended sessions still in memory (§4.8 asks
    /// only that the session be in memory). Counts as activity.
    pub fn takeover(
        &mut self,
        id: &str,
        admin_id: &str,
        admin_name: &str,
        now: Instant,
    ) -> Result<TakeoverOutcome, SessionError> {
        let now = self.observe(now);
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        let outcome = match &mut session.assisting_admin {
            Some(admin) if admin.id == admin_id => {
                admin_name.clone_into(&mut admin.name);
                TakeoverOutcome::Repeated
            }
            Some(other) => {
                return Err(SessionError::AlreadyAssisted {
                    admin_id: other.id.clone(),
                    admin_name: other.name.clone(),
                })
            }
            None => {
                session.assisting_admin =
                    Some(AdminRef { id: admin_id.to_owned(), name: admin_name.to_owned() });
                TakeoverOutcome::Started
            }
        };
        self.mark_activity(id, now);
        Ok(outcome)
    }

    /// Clears the assistance of session `id` (§10 item 3). `admin_id` is the caller, who must
    /// hold an admin role (the shell checks roles; the table cannot): the assisting admin ends
    /// their own takeover, and any other admin may clear it too, so a departed admin can never
    /// lock a session (reported as [`Left::by_other_admin`]). Over WebSocket only the assisting
    /// admin can reach this, since only it can bind ([`check_access`](Self::check_access)).
    pub fn leave(&mut self, id: &str, admin_id: &str) -> Result<Left, SessionError> {
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        let admin = session.assisting_admin.take().ok_or(SessionError::NotAssisted)?;
        let by_other_admin = admin.id != admin_id;
        self.debug_check(id);
        Ok(Left { admin, by_other_admin })
    }

    /// The owner `user_id` asks for help on session `id` (§3.8 `help_request`, §6.7). Returns
    /// `true` when the flag changed (persist `helpRequested`, §10 item 9); alerting is the
    /// shell's, rate-limited per session.
    pub fn request_help(&mut self, id: &str, user_id: &str) -> Result<bool, SessionError> {
        let session = self.sessions.get_mut(id).ok_or(SessionError::NotFound)?;
        if &*session.user_id != user_id {
            return Err(SessionError::NotOwner);
        }
        let changed = !session.help_requested;
        session.help_requested = true;
        self.debug_check(id);
        Ok(changed)
    }

    /// Forgets session `id` entirely, whatever its state. For the rollback of a
    /// [`Created`](ResolutionKind::Created) session whose document could not be inserted (§6.2):
    /// unlike ending it, removing it cannot later resume a session the database never had.
    pub fn remove(&mut self, id: &str) -> Option<Session> {
        let session = self.sessions.remove(id)?;
        if session.is_active() {
            let removed = self.active_by_user.remove(&*session.user_id);
            debug_assert!(removed.is_some(), "user_index_exact: active {id} was not indexed");
        }
        self.deadlines.reschedule(&session.id, session.deadline, None);
        self.debug_check(id);
        Some(session)
    }

    /// The timer input: at `now` (with `wall` for stored end times), ends every active session
    /// with no attached connection and no activity for `idle_timeout` (it is ended at `now`), and
    /// drops every ended session whose end is at least `ended_ttl` old, whether or not a
    /// connection is still attached (memory stays bounded; the shell's later `detach` then gets a
    /// harmless `NotFound`). Touches only those sessions: O(k log n), in deadline order. Call it
    /// when `now >= next_deadline()`; other calls are harmless.
    ///
    /// This is [`sweep_at_most`](Self::sweep_at_most) repeated until nothing is due, in one
    /// call: a driver that shares the table (the shell's mutex) sweeps batch by batch instead,
    /// so that no lock is held for the whole of a large sweep.
    pub fn sweep(&mut self, now: Instant, wall: UnixMillis) -> SweepReport {
        let mut report = SweepReport::default();
        loop {
            let batch = self.sweep_at_most(now, wall, usize::MAX);
            report.idle_ended.extend(batch.idle_ended);
            report.dropped.extend(batch.dropped);
            if !batch.pending {
                return report;
            }
        }
    }

    /// [`sweep_at_most`](Self::sweep_at_most) with [`SWEEP_BATCH`] steps: one bounded batch.
    pub fn sweep_batch(&mut self, now: Instant, wall: UnixMillis) -> SweepReport {
        self.sweep_at_most(now, wall, SWEEP_BATCH)
    }

    /// One batch of [`sweep`](Self::sweep): the same steps in the same (deadline) order, but at
    /// most `max` of them (at least one), each an idle end or a drop, so one call costs
    /// O(max · log n) however many sessions are due. [`SweepReport::pending`] says whether a
    /// deadline at or before `now` is left; calling again with the same `now` and `wall` until
    /// it is `false` does exactly what one `sweep` does, in the same order. Inputs that come
    /// between two batches see the sweep partly done, as if the sessions not yet reached were
    /// due a little later; an input may then save a session the whole sweep would have ended
    /// (activity arrived before its end), which is the same race as activity arriving just
    /// before the sweeper woke.
    pub fn sweep_at_most(&mut self, now: Instant, wall: UnixMillis, max: usize) -> SweepReport {
        let now = self.observe(now);
        let mut report = SweepReport::default();
        let mut steps = 0;
        // Each session is visited at most twice (idle end, then drop when `ended_ttl` is zero),
        // so the loop ends even without `max`.
        while let Some(id) = self.deadlines.first_due(now) {
            if steps >= max.max(1) {
                report.pending = true;
                return report;
            }
            steps += 1;
            let state = self.sessions.get(id.as_str()).map(|s| s.state);
            match state {
                Some(SessionState::Active) => {
                    report.idle_ended.extend(self.end_at(id.as_str(), now, wall, EndCause::Idle));
                }
                Some(SessionState::Ended { .. }) => {
                    let _dropped = self.remove(id.as_str());
                    report.dropped.push(id);
                }
                None => {
                    debug_assert!(false, "deadline_index_exact: entry for missing session {id}");
                    // Heal in release builds so the loop cannot spin.
                    if let Some(&(at, _)) = self.deadlines.first() {
                        self.deadlines.reschedule(&id, Some(at), None);
                    }
                }
            }
        }
        self.swept_through = Some(now);
        debug_assert!(
            self.deadlines.first().is_none_or(|(at, _)| *at > now),
            "expired_swept: a due deadline survived the sweep at {now:?}"
        );
        report
    }

    // ----- outputs and queries -------------------------------------------------------------

    /// When the sweeper should next call [`sweep`](Self::sweep): the earliest idle expiry or
    /// ended-session expiry, `None` when no session has a deadline.
    #[must_use]
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.first().map(|(at, _)| *at)
    }

    /// May `user_id` bind a connection to session `id` (§3.7, §10 items 2, 13)? The owner may;
    /// an admin-role caller (`is_admin`) may if it is the admin assisting the session.
    pub fn check_access(&self, user_id: &str, is_admin: bool, id: &str) -> Access {
        let Some(session) = self.sessions.get(id) else {
            return Access::Unknown;
        };
        if &*session.user_id == user_id {
            Access::Owner
        } else if is_admin && session.assisting_admin.as_ref().is_some_and(|a| a.id == user_id) {
            Access::AssistingAdmin
        } else {
            Access::Denied
        }
    }

    /// Session `id`, if in memory.
    pub fn get(&self, id: &str) -> Option<&Session> {
        self.sessions.get(id)
    }

    /// The active session of `user_id`, if any.
    pub fn active_of(&self, user_id: &str) -> Option<&Session> {
        self.active_by_user.get(user_id).and_then(|id| self.sessions.get(id))
    }

    /// Every session held, ordered by id (admin views; O(n)).
    pub fn iter(&self) -> impl Iterator<Item = &Session> + '_ {
        self.sessions.values()
    }

    /// Number of sessions held.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// Session counts (seed property 3). O(1).
    pub fn memory_stats(&self) -> MemoryStats {
        let total = self.sessions.len();
        let active = self.active_by_user.len();
        MemoryStats { active, inactive: total.saturating_sub(active), total }
    }

    // ----- transitions shared by the inputs ------------------------------------------------

    /// Takes `now` as the latest time seen (never going backwards) and returns it.
    fn observe(&mut self, now: Instant) -> Instant {
        self.clock = self.clock.max(now);
        self.clock
    }

    /// Activity on `id` at `now`: restart its idle clock.
    fn mark_activity(&mut self, id: &str, now: Instant) {
        if let Some(session) = self.sessions.get_mut(id) {
            session.last_activity = now;
            self.refresh_deadline(id);
        }
    }

    /// Ends `id` at `now` for `cause`, freeing its owner's active slot; `None` if it is not in
    /// memory.
    fn end_at(
        &mut self,
        id: &str,
        now: Instant,
        wall: UnixMillis,
        cause: EndCause,
    ) -> Option<EndedSession> {
        let session = self.sessions.get_mut(id)?;
        if session.is_active() {
            let freed = self.active_by_user.remove(&*session.user_id);
            debug_assert!(freed.is_some(), "user_index_exact: active {id} was not indexed");
        }
        session.state = SessionState::Ended { at: now, wall, cause };
        let ended = EndedSession {
            id: session.id.clone(),
            started_wall: session.started_wall,
            ended_wall: wall,
            duration_secs: wall.whole_seconds_since(session.started_wall),
        };
        self.refresh_deadline(id);
        Some(ended)
    }

    /// Makes the ended session `id` active again at `now` (its owner has no active session).
    fn reactivate(&mut self, id: &SessionId, now: Instant) {
        if let Some(session) = self.sessions.get_mut(id.as_str()) {
            session.state = SessionState::Active;
            session.last_activity = now;
            let previous = self.active_by_user.insert(session.user_id.clone(), id.clone());
            debug_assert!(previous.is_none(), "one_active_per_user: resumed {id} beside another");
            self.refresh_deadline(id.as_str());
        }
    }

    /// Creates an active session `id` for `user_id` (the id is known to be free).
    fn create(&mut self, user_id: &str, id: SessionId, now: Instant, wall: UnixMillis) {
        self.insert_new(Session {
            id,
            user_id: Arc::from(user_id),
            name: String::new(),
            model_id: None,
            started_at: now,
            started_wall: wall,
            last_activity: now,
            state: SessionState::Active,
            attached: 0,
            assisting_admin: None,
            help_requested: false,
            response_times: ResponseTimes::new(self.limits.response_time_capacity),
            total_tokens: 0,
            message_count: 0,
            deadline: None,
        });
    }

    /// Inserts a session whose id is free (and, if active, whose owner has no active session),
    /// then indexes it.
    fn insert_new(&mut self, session: Session) {
        let id = session.id.clone();
        if session.is_active() {
            let previous = self.active_by_user.insert(session.user_id.clone(), id.clone());
            debug_assert!(previous.is_none(), "one_active_per_user: inserted {id} beside another");
        }
        let previous = self.sessions.insert(id.clone(), session);
        debug_assert!(previous.is_none(), "insert_new: id {id} was already in memory");
        self.refresh_deadline(id.as_str());
    }

    /// Recomputes the deadline of `id` from its record and moves its index entry. Every
    /// transition that changes state, attachment or activity ends here.
    fn refresh_deadline(&mut self, id: &str) {
        if let Some(session) = self.sessions.get_mut(id) {
            let new = expected_deadline(&self.limits, session);
            let old = std::mem::replace(&mut session.deadline, new);
            self.deadlines.reschedule(&session.id, old, new);
        }
        self.debug_check(id);
    }

    /// The per-transition form of [`check_invariants`](Self::check_invariants): the touched
    /// session and the O(1) global checks.
    fn debug_check(&self, id: &str) {
        debug_assert_eq!(self.check_session(id), Ok(()));
    }
}

/// The deadline a session must sit under in the index (`deadline_index_exact`).
pub(super) fn expected_deadline(limits: &SessionLimits, session: &Session) -> Option<Instant> {
    match session.state {
        SessionState::Active if session.attached > 0 => None,
        SessionState::Active => Some(session.last_activity + limits.idle_timeout),
        SessionState::Ended { at, .. } => Some(at + limits.ended_ttl),
    }
}
