//! What can go wrong when driving the table ([`SessionError`]) and what the invariant check
//! reports ([`InvariantViolation`]). The shell maps `SessionError` to PROTOCOL.md codes in one
//! place (§3.11, §4).

/// A refused operation. The table is unchanged when a method returns an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No session with this id is in memory (`NOT_FOUND` / 404 `Session not found`).
    #[error("session not found")]
    NotFound,
    /// The session belongs to another user (`UNAUTHORIZED` /
    /// `You do not have permission to access this session`).
    #[error("session belongs to another user")]
    NotOwner,
    /// Another admin assists the session (§4.8: 400 with exactly this text).
    #[error("session already assisted by another admin: {admin_name} ({admin_id})")]
    AlreadyAssisted {
        /// The assisting admin's `user_id`.
        admin_id: String,
        /// The assisting admin's display name.
        admin_name: String,
    },
    /// `leave` on a session nobody assists.
    #[error("session is not assisted")]
    NotAssisted,
    /// `resolve` would create a session under an id that is already in memory (a minting bug or
    /// a random collision: mint another id and retry).
    #[error("session id already in use")]
    IdInUse,
    /// `detach` on a session with no attached connection (a driver bug, harmless).
    #[error("no connection is attached to this session")]
    NotAttached,
}

/// A broken table invariant, named as in the [`SessionTable`](super::SessionTable) docs.
///
/// Returned by [`SessionTable::check_invariants`](super::SessionTable::check_invariants); a
/// violation is a bug in the table, never a consequence of input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("session table invariant `{rule}` violated: {detail}")]
pub struct InvariantViolation {
    /// The invariant's name (`one_active_per_user`, `user_index_exact`, `deadline_index_exact`,
    /// `stats_sum`, `window_bounded`, `expired_swept`, `clock_monotonic`).
    pub rule: &'static str,
    /// What was found.
    pub detail: String,
}

impl InvariantViolation {
    pub(super) fn new(rule: &'static str, detail: impl Into<String>) -> Self {
        Self { rule, detail: detail.into() }
    }
}
