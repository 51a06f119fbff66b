//! The table's outputs: what a call decided, for the shell to act on (persist, rebind, send a
//! frame, log). All are `#[must_use]`.

use super::record::{AdminRef, SessionId};
use crate::time::UnixMillis;

/// Which case of the resolution rule (PROTOCOL.md §6.2 with §10 items 4 and 22) applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum ResolutionKind {
    /// The requested id is the caller's active session. Nothing to persist.
    Existing,
    /// The requested id is the caller's session, ended less than the reconnect window ago, and
    /// the caller had no other active session: it is active again. Persist: unset `endTs`/`dur`.
    Resumed,
    /// The caller's other active session is used instead of the requested id (absent, unknown,
    /// ended too long ago, or ended while another is active). Nothing to persist; rebind.
    Reused,
    /// A new session was created under the caller-minted fresh id. Persist: insert the document
    /// (on failure call [`SessionTable::remove`](super::SessionTable::remove)); rebind.
    Created,
}

/// The authoritative session for a `user_message` / `model_select` frame.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Resolution {
    /// The id to use from now on.
    pub id: SessionId,
    /// Which case happened.
    pub kind: ResolutionKind,
    /// `id` differs from the requested id (or none was requested): move the connection's
    /// binding to `id` (§3.7) — `detach` the old id if it was attached, `attach` the new one.
    pub rebind: bool,
}

/// May this caller bind a connection to this session id (§3.7, §10 items 2 and 13)?
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum Access {
    /// The caller owns the session.
    Owner,
    /// The caller is an admin and is the admin currently assisting the session.
    AssistingAdmin,
    /// The id is not in memory: the shell decides (load it, or bind as-is, §3.7).
    Unknown,
    /// The session belongs to someone else: refuse and leave the connection unbound.
    Denied,
}

/// A session that just ended (by [`end`](super::SessionTable::end) or by the idle sweep):
/// the values to store (`endTs`, `dur`).
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct EndedSession {
    /// The session.
    pub id: SessionId,
    /// Its stored start time (`ts`).
    pub started_wall: UnixMillis,
    /// The end time to store (`endTs`).
    pub ended_wall: UnixMillis,
    /// Whole seconds from start to end (`dur`), never negative.
    pub duration_secs: i64,
}

/// What a successful takeover did (§4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[must_use]
pub enum TakeoverOutcome {
    /// The admin now assists the session: persist the assistance (§10 item 9), send `admin_join`.
    Started,
    /// The same admin already assisted it: success again (the name is refreshed).
    Repeated,
}

/// What [`leave`](super::SessionTable::leave) cleared.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub struct Left {
    /// The admin whose assistance ended (for the `admin_leave` frame).
    pub admin: AdminRef,
    /// The caller was another admin than the assisting one (an override; worth logging).
    pub by_other_admin: bool,
}

/// What [`insert_loaded`](super::SessionTable::insert_loaded) did with a stored session.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum LoadOutcome {
    /// Now in memory.
    Inserted,
    /// A session with that id was already in memory; memory is newer, nothing changed.
    AlreadyPresent,
    /// The stored session ended at least `ended_ttl` ago; it would be swept at once, so it was
    /// not inserted (the id resolves as unknown).
    Expired,
    /// The stored session is active but its owner already has this other active session in
    /// memory; inserting would make two. Not inserted: the shell reconciles (e.g. end the stored
    /// one, §10 item 8).
    ActiveConflict {
        /// The owner's active session in memory.
        active: SessionId,
    },
}

/// What a [`sweep`](super::SessionTable::sweep) did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[must_use]
pub struct SweepReport {
    /// Active sessions ended for idleness: persist `endTs`/`dur` for each.
    pub idle_ended: Vec<EndedSession>,
    /// Ended sessions dropped from memory (their stored documents stay).
    pub dropped: Vec<SessionId>,
    /// A bounded sweep ([`sweep_at_most`](super::SessionTable::sweep_at_most)) stopped at its
    /// limit with sessions still due: call it again. Always `false` after a whole
    /// [`sweep`](super::SessionTable::sweep).
    pub pending: bool,
}

impl SweepReport {
    /// Whether the sweep changed nothing (a batch that changed nothing leaves nothing pending).
    pub fn is_empty(&self) -> bool {
        self.idle_ended.is_empty() && self.dropped.is_empty()
    }
}

/// Session counts (seed property 3): `active + inactive == total == SessionTable::len()`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct MemoryStats {
    /// Sessions without an end time.
    pub active: usize,
    /// Ended sessions still held (for at most `ended_ttl`).
    pub inactive: usize,
    /// All sessions held.
    pub total: usize,
}
