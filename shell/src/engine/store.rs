//! The `SessionStore` port: durable sessions and their messages, in the shape of the original's
//! MongoDB documents (PROTOCOL.md §8). Implemented by the embedded store (`adapters::store`),
//! later by MongoDB, and by the simulator's fault-injecting store. Every write is idempotent, so
//! the engine may retry any of them after an ambiguous failure without storing anything twice.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chatbox_core::protocol::query::{AdminSessionQuery, SortField, SortOrder, StatusFilter};
use chatbox_core::protocol::Sender;
use chatbox_core::retry::ErrorClass;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;
use serde::{Deserialize, Serialize};

/// The admin metrics of one window (the return of [`SessionStore::window_stats`]).
pub use super::admin::WindowStats;

/// The end of a session's stored conversation ([`SessionStore::history_mark`]).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HistoryMark {
    /// Messages stored in the session.
    pub count: u64,
    /// Id of the last of them; `None` when there is none.
    pub last_id: Option<String>,
}

impl HistoryMark {
    /// The mark of a whole conversation, oldest message first.
    pub fn of(messages: &[StoredMessage]) -> Self {
        Self { count: messages.len() as u64, last_id: messages.last().map(|m| m.id.clone()) }
    }
}

/// One stored message (`msgs[]`, PROTOCOL.md §8.2).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredMessage {
    /// Unique id minted by the engine; makes appends idempotent.
    pub id: String,
    /// Message text (plaintext here; encryption is the store's business).
    pub content: String,
    /// Server time when handled.
    pub ts: UnixMillis,
    /// `user`, `ai` or `admin` — decided by the server, never by the client (§10 item 25).
    pub sender: String,
    /// Attached file id, empty when none.
    #[serde(default)]
    pub file_id: String,
    /// Attached file URL, empty when none.
    #[serde(default)]
    pub file_url: String,
    /// Scalar metadata as strings.
    #[serde(default)]
    pub meta: BTreeMap<String, String>,
}

impl StoredMessage {
    /// A new message with a fresh id (32 hex characters), from `sender`, stored at `ts`.
    pub fn new(content: impl Into<String>, ts: UnixMillis, sender: Sender) -> Self {
        StoredMessage {
            id: super::ids::hex32(),
            content: content.into(),
            ts,
            sender: sender.as_str().to_string(),
            file_id: String::new(),
            file_url: String::new(),
            meta: BTreeMap::new(),
        }
    }

    /// With an attached file.
    pub fn with_file(mut self, file_id: &str, file_url: &str) -> Self {
        self.file_id = file_id.to_string();
        self.file_url = file_url.to_string();
        self
    }

    /// With the frame's metadata.
    pub fn with_meta(mut self, meta: &BTreeMap<String, String>) -> Self {
        self.meta = meta.clone();
        self
    }
}

/// A whole session document (PROTOCOL.md §8.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionDoc {
    /// Session id (`_id`).
    pub id: String,
    /// Owner (`uid`).
    pub user_id: String,
    /// Name (`nm`), empty until the first user message.
    pub name: String,
    /// Selected provider id (`modelId`), empty when none.
    pub model_id: String,
    /// Messages in order (`msgs`).
    pub messages: Vec<StoredMessage>,
    /// Start (`ts`).
    pub started: UnixMillis,
    /// End (`endTs`), absent while active.
    pub ended: Option<UnixMillis>,
    /// Ended through `POST …/end` (`endCause: "requested"`, issue 16): never resumed. `false`
    /// while active, after an idle end (`endCause: "idle"`), and for documents that predate
    /// the field.
    pub ended_on_request: bool,
    /// Whole seconds from start to end (`dur`).
    pub duration_secs: i64,
    /// Ever assisted by an admin (`adminAssisted`): set at the first takeover, never cleared.
    pub admin_assisted: bool,
    /// Assisting admin id, empty when none.
    pub assisting_admin_id: String,
    /// Assisting admin name, empty when none.
    pub assisting_admin_name: String,
    /// Help requested (`helpRequested`).
    pub help_requested: bool,
    /// Token total (`totalTokens`).
    pub total_tokens: u64,
    /// Last message write (`lastActivity`).
    pub last_activity: Option<UnixMillis>,
    /// Max response time in ms (`maxRespTime`).
    pub max_response_ms: u64,
    /// Average response time in ms (`avgRespTime`).
    pub avg_response_ms: u64,
    /// Public share token (`shareToken`).
    pub share_token: Option<String>,
}

impl SessionDoc {
    /// A fresh, active, empty session.
    pub fn new(id: String, user_id: String, started: UnixMillis) -> Self {
        Self {
            id,
            user_id,
            name: String::new(),
            model_id: String::new(),
            messages: Vec::new(),
            started,
            ended: None,
            ended_on_request: false,
            duration_secs: 0,
            admin_assisted: false,
            assisting_admin_id: String::new(),
            assisting_admin_name: String::new(),
            help_requested: false,
            total_tokens: 0,
            last_activity: None,
            max_response_ms: 0,
            avg_response_ms: 0,
            share_token: None,
        }
    }
}

/// Fields that change after creation; `None` leaves a field as it is (§10 item 9: every change is
/// persisted).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPatch {
    /// New name.
    pub name: Option<String>,
    /// New model.
    pub model_id: Option<String>,
    /// Assisted flag with the assisting admin's id and name (empty strings clear them, at a
    /// leave). The flag is only ever raised: `adminAssisted` answers "was this session ever
    /// assisted" (issue 15), so `false` leaves it as it is.
    pub assistance: Option<(bool, String, String)>,
    /// Help requested.
    pub help_requested: Option<bool>,
    /// Token total.
    pub total_tokens: Option<u64>,
    /// Max and average response time in ms.
    pub response_ms: Option<(u64, u64)>,
    /// Reactivation: clears the end time (a session resumed within the reconnect window).
    pub reactivate: bool,
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CreateOutcome {
    /// The document was inserted (or was already there with this id: idempotent).
    Created,
    /// The user already has another active session in the store; use it instead (§10 item 8).
    ActiveExists(String),
}

/// A store failure, classified for core's retry schedule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Network, timeout, unavailable: may succeed if retried.
    #[error("transient store failure: {0}")]
    Transient(String),
    /// Corrupt data, validation, I/O error that will not go away.
    #[error("store failure: {0}")]
    Permanent(String),
}

impl StoreError {
    /// Transient or permanent.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Transient(_) => ErrorClass::Transient,
            StoreError::Permanent(_) => ErrorClass::Permanent,
        }
    }
}

/// Durable session storage.
#[async_trait]
#[allow(
    clippy::disallowed_methods,
    reason = "default methods are written with the port's own methods"
)]
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// The database behind it, as the traces' `db.system.name` (`mongodb`, `redb`; `memory`
    /// for doubles). Wrappers answer their inner store's.
    fn system_name(&self) -> &'static str {
        "memory"
    }

    /// Whether this process is the store's only writer (the embedded store's file lock): then
    /// every message appended is written by this process's persistence service (directly or
    /// from its outbox), which keeps its recent-messages cache in step and can trust it without
    /// reading the store's history mark. Wrappers answer their inner store's.
    fn exclusive(&self) -> bool {
        false
    }

    /// Inserts a new session unless the user already has an active one (then reports it).
    /// Inserting an id that already exists succeeds without change.
    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError>;

    /// Appends a message; a message id already present is not appended again.
    async fn append_message(&self, session_id: &str, msg: &StoredMessage)
        -> Result<(), StoreError>;

    /// Appends `msg` and applies `patch` (which never reactivates) as one write: a reply and
    /// the session statistics it changed cost one durable write instead of two (issue 18). A
    /// message already stored means the write was applied before (both parts went together),
    /// so nothing is done. The default makes the two writes in turn.
    async fn append_message_with(
        &self,
        session_id: &str,
        msg: &StoredMessage,
        patch: &SessionPatch,
    ) -> Result<(), StoreError> {
        self.append_message(session_id, msg).await?;
        self.update(session_id, patch).await
    }

    /// Applies a patch to a session; an unknown id is a permanent error.
    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError>;

    /// Sets the end time (and `dur`) and why it ended (`endCause`: `requested` when `cause` is
    /// [`EndCause::Requested`], else `idle`); returns the updated document, `None` for an
    /// unknown id. Ending again overwrites both (PROTOCOL.md §4.3); reactivating clears both.
    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError>;

    /// Ends `session_id` for idleness only if no message was stored after `quiet_since` (its
    /// `lastActivity`): another instance sharing the database may be serving it while the
    /// ending instance saw nothing. `false` when it was not ended (a newer message, or an
    /// unknown id). The default, for a store only this process writes (whose own table saw
    /// every message), ends it unconditionally.
    async fn end_if_idle(
        &self,
        session_id: &str,
        at: UnixMillis,
        quiet_since: UnixMillis,
    ) -> Result<bool, StoreError> {
        let _ = quiet_since;
        Ok(self.end(session_id, at, EndCause::Idle).await?.is_some())
    }

    /// Loads one session with its messages.
    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError>;

    /// The last `limit` messages of a session, oldest first; `None` when there is no such
    /// session. The conversation sent to the model needs only the end of a session, and reading
    /// all of it for every message would make each reply cost O(session length). The default
    /// loads the whole session; the embedded store reads only the requested rows and MongoDB
    /// slices the array on the server.
    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        Ok(self.load(session_id).await?.map(|doc| {
            let mut messages = doc.messages;
            messages.drain(..messages.len().saturating_sub(limit));
            messages
        }))
    }

    /// Where a session's conversation ends: how many messages it holds and the id of the last
    /// one; `None` when there is no such session. Messages are only ever appended, so two equal
    /// marks read at different times mean nothing was appended in between — which is how a
    /// cached end of the conversation is checked before a reply uses it instead of a full read
    /// (issue 18). The default loads the whole session; the embedded store reads one row and
    /// MongoDB projects the array's size and last element.
    async fn history_mark(&self, session_id: &str) -> Result<Option<HistoryMark>, StoreError> {
        Ok(self.load(session_id).await?.map(|doc| HistoryMark::of(&doc.messages)))
    }

    /// Up to `limit` of a user's sessions, newest start first.
    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError>;

    /// The session shared under `token` (PROTOCOL.md §4.5), with its messages; `None` when no
    /// session has that token. Read-only.
    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError>;

    /// Gives session `session_id` the share token `token` unless it already has one, and returns
    /// the session's token: the existing one, or `token` (PROTOCOL.md §4.4: a share token is
    /// stable). Check and set are atomic, so concurrent shares agree on one token, and a retry
    /// returns the token the first attempt stored. `None` for an unknown session; a `token`
    /// already used by another session is a permanent error.
    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError>;

    /// Makes `admin` the assisting admin of session `session_id` unless another admin already
    /// assists it (issue 14: one assisting admin at a time, decided atomically fleet-wide): the
    /// check (`assistingAdminId` absent, empty or `admin`'s) and the set (`adminAssisted`,
    /// `assistingAdminId`, `assistingAdminName`) are one atomic step, so of two admins racing on
    /// two instances exactly one wins. Returns the assisting admin after the call — `admin`
    /// when it won or already assisted, the other admin otherwise — and `None` for an unknown
    /// session.
    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError>;

    /// The assisting admin of session `session_id` as stored (`Some(None)`: nobody assists),
    /// `None` for an unknown session. The default loads the session; MongoDB reads only the
    /// two fields.
    async fn assisting_admin(
        &self,
        session_id: &str,
    ) -> Result<Option<Option<AdminRef>>, StoreError> {
        Ok(self.load(session_id).await?.map(|doc| {
            (!doc.assisting_admin_id.is_empty())
                .then_some(AdminRef { id: doc.assisting_admin_id, name: doc.assisting_admin_name })
        }))
    }

    /// Removes session `session_id`'s share token, so its old link no longer resolves and a
    /// later share mints a new one (issue 15). Idempotent: `Some(())` whether or not a token was
    /// set, `None` for an unknown session.
    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError>;

    /// The admin search of PROTOCOL.md §4.6: every session matching the query's filters
    /// ([`search_matches`]), ordered by [`search_order`], then `offset` skipped and at most
    /// `limit` returned, each with its messages. Read-only. An implementation may scan every
    /// session (the embedded store does); it must not return more than `limit` documents.
    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError>;

    /// Every session whose start time lies in `from..=to` (both inclusive), for the admin
    /// metrics (§4.7), in no particular order. Read-only. The documents come **without their
    /// messages** (`messages` is empty): aggregates need only the session fields, and loading
    /// every message of a day's sessions would cost O(messages). An implementation may scan
    /// every session (the embedded store does).
    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError>;

    /// The admin metrics (§4.7) of the sessions that started in `from..=to` (both inclusive),
    /// exactly as [`aggregate`](super::admin::aggregate) defines them, with `now` closing the
    /// sessions still active. The default loads those sessions (without messages) and aggregates
    /// them here; MongoDB runs the aggregation in the database.
    async fn window_stats(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        now: UnixMillis,
    ) -> Result<WindowStats, StoreError> {
        let docs = self.started_between(from, to).await?;
        Ok(super::admin::aggregate(&docs, from, to, now))
    }

    /// One-time preparation (MongoDB: create the indexes). The server calls it in the
    /// background until it succeeds; serving does not wait for it.
    async fn prepare(&self) -> Result<(), StoreError> {
        Ok(())
    }

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes every acknowledged write durable (called at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;
}

/// What the admin search (§4.6) filters and sorts on, borrowed from whatever an adapter holds
/// (a whole document, or a stored row plus its message count), so every store applies
/// [`search_matches`] and [`search_order`] — one definition of the semantics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchKey<'a> {
    /// Session id (the final tie-break).
    pub id: &'a str,
    /// Owner.
    pub user_id: &'a str,
    /// Start.
    pub started: UnixMillis,
    /// End, `None` while active.
    pub ended: Option<UnixMillis>,
    /// Assisted flag.
    pub admin_assisted: bool,
    /// Help requested.
    pub help_requested: bool,
    /// Number of stored messages.
    pub message_count: u64,
    /// Token total.
    pub total_tokens: u64,
}

impl<'a> SearchKey<'a> {
    /// The key of a whole document (message count = `messages.len()`).
    pub fn of(doc: &'a SessionDoc) -> Self {
        SearchKey {
            id: &doc.id,
            user_id: &doc.user_id,
            started: doc.started,
            ended: doc.ended,
            admin_assisted: doc.admin_assisted,
            help_requested: doc.help_requested,
            message_count: doc.messages.len() as u64,
            total_tokens: doc.total_tokens,
        }
    }
}

/// Whether a session passes the filters of `query` (§4.6): exact `user_id`; `status` active = no
/// end time, ended = an end time; `admin_assisted` true = assisted only, false = not assisted;
/// `help_requested` likewise;
/// start time within the inclusive `start_time_from`/`start_time_to` bounds (compared at the
/// stored millisecond precision against the exact bound).
pub fn search_matches(query: &AdminSessionQuery, key: &SearchKey<'_>) -> bool {
    if query.user_id.as_deref().is_some_and(|u| u != key.user_id) {
        return false;
    }
    match query.status {
        Some(StatusFilter::Active) if key.ended.is_some() => return false,
        Some(StatusFilter::Ended) if key.ended.is_none() => return false,
        _ => {}
    }
    if query.admin_assisted.is_some_and(|want| want != key.admin_assisted) {
        return false;
    }
    if query.help_requested.is_some_and(|want| want != key.help_requested) {
        return false;
    }
    let started = key.started.to_datetime();
    if query.start_time_from.is_some_and(|from| started < from) {
        return false;
    }
    if query.start_time_to.is_some_and(|to| started > to) {
        return false;
    }
    true
}

/// The order of the admin search (§4.6): by `sort_by` in `sort_order`, ties broken by session id
/// ascending so pages are stable. As in MongoDB, a missing end time sorts before every end time
/// (first in `asc`, last in `desc`).
pub fn search_order(query: &AdminSessionQuery, a: &SearchKey<'_>, b: &SearchKey<'_>) -> Ordering {
    let primary = match query.sort_by {
        SortField::StartTime => a.started.cmp(&b.started),
        SortField::EndTime => a.ended.cmp(&b.ended),
        SortField::MessageCount => a.message_count.cmp(&b.message_count),
        SortField::TotalTokens => a.total_tokens.cmp(&b.total_tokens),
        SortField::UserId => a.user_id.cmp(b.user_id),
    };
    let primary = match query.sort_order {
        SortOrder::Asc => primary,
        SortOrder::Desc => primary.reverse(),
    };
    primary.then_with(|| a.id.cmp(b.id))
}

/// The page `offset .. offset + limit` of `items` (already filtered and sorted).
pub fn search_page<T>(items: Vec<T>, query: &AdminSessionQuery) -> Vec<T> {
    let offset = usize::try_from(query.offset).unwrap_or(usize::MAX);
    let limit = usize::try_from(query.limit).unwrap_or(usize::MAX);
    items.into_iter().skip(offset).take(limit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::protocol::query::AdminSessionQuery;

    fn doc(id: &str, user: &str, started: i64, ended: Option<i64>, msgs: usize) -> SessionDoc {
        let mut d = SessionDoc::new(id.into(), user.into(), UnixMillis(started));
        d.ended = ended.map(UnixMillis);
        for n in 0..msgs {
            d.messages.push(StoredMessage {
                id: format!("m{n}"),
                ..StoredMessage::new("", UnixMillis(started), Sender::User)
            });
        }
        d
    }

    fn run(query: &AdminSessionQuery, docs: &[SessionDoc]) -> Vec<String> {
        let mut keys: Vec<SearchKey<'_>> =
            docs.iter().map(SearchKey::of).filter(|k| search_matches(query, k)).collect();
        keys.sort_by(|a, b| search_order(query, a, b));
        search_page(keys, query).into_iter().map(|k| k.id.to_string()).collect()
    }

    fn parse(pairs: &[(&str, &str)]) -> AdminSessionQuery {
        let pairs: Vec<(String, String)> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        AdminSessionQuery::parse(&pairs).unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn filters_sort_and_page() {
        let mut assisted = doc("d", "u2", 4_000, None, 1);
        assisted.admin_assisted = true;
        assisted.help_requested = true;
        let docs = vec![
            doc("a", "u1", 1_000, Some(1_500), 5),
            doc("b", "u1", 2_000, None, 0),
            doc("c", "u2", 3_000, Some(9_000), 2),
            assisted,
        ];
        assert_eq!(run(&parse(&[]), &docs), ["d", "c", "b", "a"]);
        assert_eq!(run(&parse(&[("user_id", "u1")]), &docs), ["b", "a"]);
        assert_eq!(run(&parse(&[("status", "active")]), &docs), ["d", "b"]);
        assert_eq!(run(&parse(&[("status", "ended")]), &docs), ["c", "a"]);
        assert_eq!(run(&parse(&[("admin_assisted", "true")]), &docs), ["d"]);
        assert_eq!(run(&parse(&[("admin_assisted", "no")]), &docs), ["c", "b", "a"]);
        assert_eq!(run(&parse(&[("help_requested", "true")]), &docs), ["d"]);
        assert_eq!(run(&parse(&[("help_requested", "false")]), &docs), ["c", "b", "a"]);
        let window = [
            ("start_time_from", "1970-01-01T00:00:02Z"),
            ("start_time_to", "1970-01-01T00:00:03Z"),
        ];
        assert_eq!(run(&parse(&window), &docs), ["c", "b"]);
        let by_count = [("sort_by", "message_count"), ("sort_order", "asc")];
        assert_eq!(run(&parse(&by_count), &docs), ["b", "d", "c", "a"]);
        assert_eq!(run(&parse(&[("sort_by", "end_time")]), &docs), ["c", "a", "b", "d"]);
        let by_end_asc = [("sort_by", "end_time"), ("sort_order", "asc")];
        assert_eq!(run(&parse(&by_end_asc), &docs), ["b", "d", "a", "c"]);
        let by_user = [("sort_by", "user_id"), ("sort_order", "asc")];
        assert_eq!(run(&parse(&by_user), &docs), ["a", "b", "c", "d"]);
        assert_eq!(run(&parse(&[("limit", "2"), ("offset", "1")]), &docs), ["c", "b"]);
        assert!(run(&parse(&[("offset", "10")]), &docs).is_empty());
    }
}
