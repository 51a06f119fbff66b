//! One session as the table holds it: the [`Session`] record (read-only outside the table), its
//! id type, its lifecycle state, the assisting admin, and the [`SessionSnapshot`] the shell
//! builds from a stored document to load a session on demand.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::response_times::ResponseTimes;
use crate::time::{Instant, UnixMillis};

/// A session id. The shell mints them (32 random hex characters, PROTOCOL.md §6.1) and passes
/// them in; the table never generates one. Cloning is cheap (shared string).
///
/// Compares, hashes and orders exactly like the `str` it holds, so maps keyed by `SessionId`
/// are looked up with a plain `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionId(Arc<str>);

impl SessionId {
    /// Wraps an id minted by the caller (no validation: the table treats ids as opaque).
    pub fn new(id: impl Into<Arc<str>>) -> Self {
        SessionId(id.into())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for SessionId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for SessionId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for SessionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl From<&str> for SessionId {
    fn from(id: &str) -> Self {
        SessionId(id.into())
    }
}

impl From<String> for SessionId {
    fn from(id: String) -> Self {
        SessionId(id.into())
    }
}

impl PartialEq<str> for SessionId {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for SessionId {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

/// The admin assisting a session (PROTOCOL.md §6.8): the admin's `user_id` and display name
/// (the JWT `name`, else the `user_id`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AdminRef {
    /// The admin's `user_id`.
    pub id: String,
    /// The admin's display name.
    pub name: String,
}

/// Why a session ended — which decides whether the reconnect window may resume it (issue 16).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EndCause {
    /// Someone asked: `POST …/end` by its user or an admin. Final: never resumed; the owner's
    /// next message starts a new session.
    Requested,
    /// Nobody asked: idle with no connection (a disconnect ends this way). Resumable within the
    /// reconnect window.
    Idle,
    /// Loaded ended from the store without `endCause: requested` (an idle end, or a document
    /// from before the cause was stored); resumable as before.
    Stored,
}

impl EndCause {
    /// Whether the reconnect window may make the session active again.
    pub fn resumable(self) -> bool {
        !matches!(self, EndCause::Requested)
    }
}

/// Where a session is in its lifecycle (PROTOCOL.md §6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SessionState {
    /// No end time. At most one per user (the table's first invariant).
    Active,
    /// Ended at `at` (monotonic, drives expiry and the reconnect window); `wall` is the stored
    /// `endTs`.
    Ended {
        /// When it ended, on the driver's monotonic clock.
        at: Instant,
        /// When it ended, as stored and shown.
        wall: UnixMillis,
        /// Why it ended.
        cause: EndCause,
    },
}

/// A live session as held in memory. Read-only outside the table: every change goes through a
/// [`SessionTable`](super::SessionTable) method, which keeps the indexes in step.
#[derive(Debug, Clone)]
pub struct Session {
    pub(super) id: SessionId,
    pub(super) user_id: Arc<str>,
    pub(super) name: String,
    pub(super) model_id: Option<String>,
    pub(super) started_at: Instant,
    pub(super) started_wall: UnixMillis,
    pub(super) last_activity: Instant,
    pub(super) state: SessionState,
    pub(super) attached: u32,
    pub(super) assisting_admin: Option<AdminRef>,
    pub(super) help_requested: bool,
    pub(super) response_times: ResponseTimes,
    pub(super) total_tokens: u64,
    pub(super) message_count: u64,
    /// The instant under which this session sits in the table's deadline index, if any. Kept
    /// here so a transition can find and replace its old entry in O(log n).
    pub(super) deadline: Option<Instant>,
}

impl Session {
    /// The session id.
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    /// The owner's `user_id`.
    pub fn user_id(&self) -> &str {
        &self.user_id
    }

    /// The session name (empty until the first user message names it, §6.4).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The selected provider id, if any (`model_select`, §3.8).
    pub fn model_id(&self) -> Option<&str> {
        self.model_id.as_deref()
    }

    /// When the session started, on the driver's monotonic clock (for a loaded session:
    /// reconstructed from its stored start time).
    pub fn started_at(&self) -> Instant {
        self.started_at
    }

    /// When the session started, as stored (`ts`).
    pub fn started_wall(&self) -> UnixMillis {
        self.started_wall
    }

    /// The last activity: resolution to this session, a connection attached or detached,
    /// `touch`, a recorded message, a takeover, or loading. The idle clock runs from here.
    pub fn last_activity(&self) -> Instant {
        self.last_activity
    }

    /// Active or ended.
    pub fn state(&self) -> SessionState {
        self.state
    }

    /// Whether the session has no end time.
    pub fn is_active(&self) -> bool {
        matches!(self.state, SessionState::Active)
    }

    /// The monotonic end instant, if ended.
    pub fn ended_at(&self) -> Option<Instant> {
        match self.state {
            SessionState::Active => None,
            SessionState::Ended { at, .. } => Some(at),
        }
    }

    /// Why the session ended, if ended.
    pub fn end_cause(&self) -> Option<EndCause> {
        match self.state {
            SessionState::Active => None,
            SessionState::Ended { cause, .. } => Some(cause),
        }
    }

    /// The stored end time (`endTs`), if ended.
    pub fn ended_wall(&self) -> Option<UnixMillis> {
        match self.state {
            SessionState::Active => None,
            SessionState::Ended { wall, .. } => Some(wall),
        }
    }

    /// How many connections the shell has attached (user and assisting admin alike).
    pub fn attached(&self) -> u32 {
        self.attached
    }

    /// The admin currently assisting, if any (§6.8).
    pub fn assisting_admin(&self) -> Option<&AdminRef> {
        self.assisting_admin.as_ref()
    }

    /// Whether the owner asked for help (§6.7).
    pub fn help_requested(&self) -> bool {
        self.help_requested
    }

    /// The window of the last response times (§6.5; seed properties 12, 13).
    pub fn response_times(&self) -> &ResponseTimes {
        &self.response_times
    }

    /// Tokens used so far (§6.5).
    pub fn total_tokens(&self) -> u64 {
        self.total_tokens
    }

    /// Messages recorded so far (every stored message: user, AI, admin, file, voice).
    pub fn message_count(&self) -> u64 {
        self.message_count
    }

    /// The instant at which [`SessionTable::sweep`](super::SessionTable::sweep) acts on this
    /// session if nothing else happens first: idle expiry for an active session with no attached
    /// connection, removal for an ended one, `None` for an active session with a connection.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }
}

/// A stored session document, as the shell passes it to
/// [`SessionTable::insert_loaded`](super::SessionTable::insert_loaded) to load a session on
/// demand (PROTOCOL.md §10 item 23) or at start-up (§6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// `_id`.
    pub id: SessionId,
    /// `uid`.
    pub user_id: String,
    /// `nm` (decrypted when encrypted).
    pub name: String,
    /// `modelId`; `None` when empty.
    pub model_id: Option<String>,
    /// `ts`.
    pub started_wall: UnixMillis,
    /// `endTs`; `None` while active.
    pub ended_wall: Option<UnixMillis>,
    /// `endCause` is `requested`: someone ended it through `POST …/end`, so it is never
    /// resumed ([`EndCause::Requested`], issue 16). `false` for an idle end or an older document
    /// that does not say.
    pub ended_on_request: bool,
    /// `assistingAdminId` / `assistingAdminName` when `adminAssisted`.
    pub assisting_admin: Option<AdminRef>,
    /// `helpRequested`.
    pub help_requested: bool,
    /// `totalTokens`.
    pub total_tokens: u64,
    /// Number of entries in `msgs`.
    pub message_count: u64,
    /// `avgRespTime`; a non-zero value seeds the response-time window with one sample (§6.5).
    pub avg_response_time: Duration,
}
