//! [`MongoStore`]: the [`SessionStore`] on MongoDB (a replica set or Atlas), reading and writing
//! the original system's documents (PROTOCOL.md §8). `schema.rs` maps documents, `query.rs`
//! holds the indexes and the admin search, `error.rs` classifies driver errors.
//!
//! Every write is idempotent, so the engine may retry after an ambiguous failure (a timeout
//! after the server applied the write):
//! * create inserts by `_id`; a duplicate `_id` is success, a duplicate on `idx_active_user`
//!   reports the user's active session;
//! * an append filters on `msgs.mid` not yet present, so a message is pushed at most once;
//! * updates `$set`/`$unset` absolute values; ending overwrites `endTs` and `dur`;
//! * a share token is set only where none exists, then read back.
//!
//! Writes use the client's default write concern (the server's default, majority on a replica
//! set), and every call returns only once the server acknowledged it, so `flush` has nothing to
//! do.
//!
//! Limits, on purpose:
//! * Documents the original wrote have no `activeUid`, so its still-active sessions do not
//!   block a new one (the original had no guard at all); they are guarded once reactivated.
//! * The admin search sorts on the stored fields. A document without `totalTokens` (never
//!   written that way by either system) sorts before one with 0, where the port's reference
//!   order would tie them.
//! * `_ts`/`_mt` on insert are the session's start time (the engine's clock; the adapter reads
//!   none); later writes set `_mt` with `$currentDate` (the server's clock).

mod error;
mod query;
mod schema;

use std::fmt;
use std::future::Future;

use async_trait::async_trait;
use chatbox_core::budgets::{MONGO_INDEX_BUDGET, SESSION_CREATE_ATTEMPTS};
use chatbox_core::config::MongoConfig;
use chatbox_core::protocol::query::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;
use futures_util::TryStreamExt;
use mongodb::bson::{doc, Bson, Document};
use mongodb::options::{ClientOptions, ReturnDocument};
use mongodb::{Client, Collection, Cursor, Database};

use self::error::is_duplicate_key;
pub use self::error::{classify, TRANSIENT_CODES, TRANSIENT_LABELS};
pub use self::query::{
    IDX_ACTIVE_USER, IDX_ADMIN_ASSISTED, IDX_SHARE_TOKEN, IDX_START_TIME, IDX_USER_ID,
    IDX_USER_START_TIME,
};
use self::schema::{
    date, field, int64, message_to_document, session_from_document, session_to_document, tokens,
};
use crate::engine::store::WindowStats;
use crate::engine::store::{
    CreateOutcome, HistoryMark, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
};
use chatbox_core::protocol::http::MetricsTotals;

/// Every index [`MongoStore::ensure_indexes`] creates, by name.
pub const INDEX_NAMES: [&str; 6] = [
    IDX_USER_ID,
    IDX_START_TIME,
    IDX_ADMIN_ASSISTED,
    IDX_USER_START_TIME,
    IDX_SHARE_TOKEN,
    IDX_ACTIVE_USER,
];

/// Sessions in one MongoDB collection (default `chat.sessions`).
///
/// Cheap to clone (the driver's client is shared); every clone uses the same connection pool.
/// The client connects lazily and keeps reconnecting in the background, so a store exists while
/// MongoDB is down: operations then fail with a transient error after the connect timeout.
#[derive(Clone)]
pub struct MongoStore {
    client: Client,
    database: Database,
    sessions: Collection<Document>,
    uri_for_logs: String,
}

impl fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MongoStore")
            .field("uri", &self.uri_for_logs)
            .field("database", &self.database.name())
            .field("collection", &self.sessions.name())
            .finish_non_exhaustive()
    }
}

impl MongoStore {
    /// Ends the session `filter` matches (`session_id`, for `dur` and logs): `endTs`, the end
    /// cause and the freed active guard in one find-and-update, then `dur`; `None` when nothing
    /// matched.
    async fn end_where(
        &self,
        filter: Document,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        observe("end", async {
            let cause = schema::end_cause(cause == EndCause::Requested);
            let update = doc! {
                "$set": { field::ENDED: date(at), field::END_CAUSE: cause },
                "$unset": { field::ACTIVE_USER: "" },
                "$currentDate": touch(),
            };
            let Some(after) = self
                .sessions
                .find_one_and_update(filter, update)
                .return_document(ReturnDocument::After)
                .await
                .map_err(|e| classify(&e))?
            else {
                return Ok(None);
            };
            let mut ended = session_from_document(&after)?;
            let duration = at.whole_seconds_since(ended.started);
            self.sessions
                .update_one(
                    doc! { field::ID: session_id },
                    doc! { "$set": { field::DURATION: Bson::Int64(duration) } },
                )
                .await
                .map_err(|e| classify(&e))?;
            ended.duration_secs = duration;
            tracing::debug!(%session_id, "session ended in store");
            Ok(Some(ended))
        })
        .await
    }

    /// One `update_one`: `msg` pushed unless a message with its id is stored, `lastActivity`
    /// moved forward (never back, like the embedded store), and `patch`'s plain fields set in
    /// the same update. Matching nothing on an existing session means the message (and the
    /// patch that went with it) is already stored: a retry.
    async fn push_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
        patch: &SessionPatch,
    ) -> Result<(), StoreError> {
        let filter = doc! {
            field::ID: session_id,
            format!("{}.{}", field::MESSAGES, schema::msg_field::ID): { "$ne": &msg.id },
        };
        let (set, unset) = patch_fields(patch);
        let mut update = doc! {
            "$push": { field::MESSAGES: message_to_document(msg) },
            "$max": { field::LAST_ACTIVITY: date(msg.ts) },
            "$currentDate": touch(),
        };
        if !set.is_empty() {
            update.insert("$set", set);
        }
        if !unset.is_empty() {
            update.insert("$unset", unset);
        }
        let result = self.sessions.update_one(filter, update).await.map_err(|e| classify(&e))?;
        if result.matched_count == 0 && !self.exists(session_id).await? {
            return Err(not_found());
        }
        Ok(())
    }

    /// A store for `cfg`: parses the URI (for `mongodb+srv` that resolves DNS), sets the connect
    /// timeout (`MONGO_CONNECT_TIMEOUT`), the server-selection timeout
    /// (`MONGO_SERVER_SELECTION_TIMEOUT`, short, so no call waits the driver's 30 s while the
    /// server is down) and the app name `chatbox`.
    /// Does **not** contact the server: starting while MongoDB is down works.
    ///
    /// Errors: an invalid URI (permanent; the message never shows credentials), a failed SRV
    /// lookup (transient).
    pub async fn connect(cfg: &MongoConfig) -> Result<Self, StoreError> {
        let mut options = ClientOptions::parse(cfg.uri.expose()).await.map_err(|err| {
            // The driver's text might quote part of the URI; leave it out when that holds
            // credentials.
            let class = classify(&err);
            let detail = if cfg.has_credentials() { String::new() } else { format!(": {class}") };
            let text = format!("mongo store: cannot use MONGO_URI {}{detail}", cfg.uri_for_logs());
            match class {
                StoreError::Transient(_) => StoreError::Transient(text),
                StoreError::Permanent(_) => StoreError::Permanent(text),
            }
        })?;
        options.app_name = Some("chatbox".to_owned());
        options.connect_timeout = Some(cfg.connect_timeout);
        options.server_selection_timeout = Some(cfg.server_selection_timeout);
        let client = Client::with_options(options).map_err(|err| classify(&err))?;
        let database = client.database(&cfg.database);
        let sessions = database.collection::<Document>(&cfg.collection);
        tracing::info!(
            uri = %cfg.uri_for_logs(),
            database = %cfg.database,
            collection = %cfg.collection,
            connect_timeout_ms = u64::try_from(cfg.connect_timeout.as_millis()).unwrap_or(u64::MAX),
            server_selection_timeout_ms =
                u64::try_from(cfg.server_selection_timeout.as_millis()).unwrap_or(u64::MAX),
            "mongo store configured"
        );
        Ok(Self { client, database, sessions, uri_for_logs: cfg.uri_for_logs() })
    }

    /// Creates the §8.3 indexes with their exact names, plus `idx_active_user` (unique on
    /// `activeUid` where it exists: one active session per user), within [`MONGO_INDEX_BUDGET`].
    /// Existing identical indexes are fine. Errors are returned for the caller to log and retry
    /// later (an index with one of these names but other keys or options is permanent).
    pub async fn ensure_indexes(&self) -> Result<(), StoreError> {
        let create = self.sessions.create_indexes(query::index_models());
        match tokio::time::timeout(MONGO_INDEX_BUDGET, create).await {
            Ok(Ok(_)) => {
                tracing::info!(
                    collection = %self.sessions.name(),
                    indexes = ?INDEX_NAMES,
                    "mongo store indexes ensured"
                );
                Ok(())
            }
            Ok(Err(err)) => Err(classify(&err)),
            Err(_) => Err(StoreError::Transient(format!(
                "mongo store: index creation did not finish within {} s",
                MONGO_INDEX_BUDGET.as_secs()
            ))),
        }
    }

    /// The driver's client (for tests and administration).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The sessions collection as raw documents (for tests and administration).
    pub fn collection(&self) -> &Collection<Document> {
        &self.sessions
    }

    /// Whether a session with this id exists.
    /// The stored assisting admin (only the two fields are read).
    async fn read_assisting(
        &self,
        session_id: &str,
    ) -> Result<Option<Option<AdminRef>>, StoreError> {
        let projection = doc! { field::ASSISTING_ADMIN_ID: 1, field::ASSISTING_ADMIN_NAME: 1 };
        let Some(stored) = self
            .sessions
            .find_one(doc! { field::ID: session_id })
            .projection(projection)
            .await
            .map_err(|e| classify(&e))?
        else {
            return Ok(None);
        };
        let text = |key: &str| stored.get_str(key).unwrap_or_default().to_owned();
        let id = text(field::ASSISTING_ADMIN_ID);
        Ok(Some((!id.is_empty()).then(|| AdminRef { id, name: text(field::ASSISTING_ADMIN_NAME) })))
    }

    async fn exists(&self, session_id: &str) -> Result<bool, StoreError> {
        let found = self
            .sessions
            .find_one(doc! { field::ID: session_id })
            .projection(doc! { field::ID: 1 })
            .await
            .map_err(|e| classify(&e))?;
        Ok(found.is_some())
    }

    /// The id of `user_id`'s guarded active session, if any.
    async fn active_session_of(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        let found = self
            .sessions
            .find_one(doc! { field::ACTIVE_USER: user_id })
            .projection(doc! { field::ID: 1 })
            .await
            .map_err(|e| classify(&e))?;
        Ok(found.and_then(|d| d.get_str(field::ID).ok().map(str::to_owned)))
    }

    /// After a duplicate key on insert: what the collision was with.
    async fn resolve_insert_conflict(
        &self,
        doc: &SessionDoc,
    ) -> Result<Option<CreateOutcome>, StoreError> {
        let existing = self
            .sessions
            .find_one(doc! { field::ID: &doc.id })
            .projection(doc! { field::USER_ID: 1 })
            .await
            .map_err(|e| classify(&e))?;
        if let Some(existing) = existing {
            if existing.get_str(field::USER_ID).ok() != Some(doc.user_id.as_str()) {
                return Err(StoreError::Permanent(
                    "session id already belongs to another user".into(),
                ));
            }
            return Ok(Some(CreateOutcome::Created));
        }
        if doc.ended.is_none() {
            if let Some(active) = self.active_session_of(&doc.user_id).await? {
                return Ok(Some(CreateOutcome::ActiveExists(active)));
            }
        }
        if let Some(token) = &doc.share_token {
            let owner = self
                .sessions
                .find_one(doc! { field::SHARE_TOKEN: token })
                .projection(doc! { field::ID: 1 })
                .await
                .map_err(|e| classify(&e))?;
            if owner.is_some() {
                return Err(StoreError::Permanent("share token already in use".into()));
            }
        }
        // The colliding session ended (or went away) between the insert and the look-up.
        Ok(None)
    }
}

/// Runs one operation and logs its failure at debug level: the caller (the store writer)
/// decides whether it is worth a warning or a retry.
async fn observe<T>(
    op: &'static str,
    body: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let result = body.await;
    if let Err(err) = &result {
        tracing::debug!(op, error = %err, "mongo store operation failed");
    }
    result
}

/// A numeric field of an aggregation result, whatever its BSON type (0 when absent).
fn number(d: &Document, key: &str) -> f64 {
    match d.get(key) {
        Some(Bson::Int32(v)) => f64::from(*v),
        Some(Bson::Int64(v)) => *v as f64,
        Some(Bson::Double(v)) => *v,
        Some(Bson::Decimal128(v)) => v.to_string().parse().unwrap_or(0.0),
        _ => 0.0,
    }
}

/// [`WindowStats`] from the `$group` result (`None`: no session in the window) and the peak.
fn window_stats_of(
    group: Option<&Document>,
    from: UnixMillis,
    to: UnixMillis,
    peak: i64,
) -> WindowStats {
    let Some(g) = group else {
        return WindowStats {
            totals: MetricsTotals::default(),
            avg_concurrent: 0.0,
            max_concurrent: 0,
        };
    };
    let int = |key: &str| number(g, key) as i64;
    let count = int("count");
    let totals = MetricsTotals {
        total_sessions: count,
        active_sessions: int("active"),
        total_tokens: int("tokens"),
        avg_response_time: if count > 0 { int("sum_avg_ms") / count } else { 0 },
        max_response_time: int("max_ms"),
        admin_assisted_count: int("assisted"),
    };
    let window_ms = (to.0 - from.0) as f64;
    let avg_concurrent = if window_ms > 0.0 { number(g, "open_ms") / window_ms } else { 0.0 };
    WindowStats { totals, avg_concurrent, max_concurrent: peak }
}

/// The session named by a write does not exist.
fn not_found() -> StoreError {
    StoreError::Permanent("session not found".into())
}

/// Decodes every document of a cursor.
async fn collect(cursor: Cursor<Document>) -> Result<Vec<SessionDoc>, StoreError> {
    let raw: Vec<Document> = cursor.try_collect().await.map_err(|e| classify(&e))?;
    raw.iter().map(session_from_document).collect()
}

/// `$currentDate` of the modified time: the server's clock, as the original's helper library.
fn touch() -> Document {
    doc! { field::MODIFIED: true }
}

#[async_trait]
impl SessionStore for MongoStore {
    fn system_name(&self) -> &'static str {
        "mongodb"
    }

    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        observe("create", async {
            let document = session_to_document(doc);
            for _ in 0..SESSION_CREATE_ATTEMPTS {
                match self.sessions.insert_one(document.clone()).await {
                    Ok(_) => {
                        tracing::debug!(session_id = %doc.id, user_id = %doc.user_id, "session stored");
                        return Ok(CreateOutcome::Created);
                    }
                    Err(err) if is_duplicate_key(&err) => {
                        if let Some(outcome) = self.resolve_insert_conflict(doc).await? {
                            if let CreateOutcome::ActiveExists(active) = &outcome {
                                tracing::debug!(
                                    session_id = %doc.id,
                                    user_id = %doc.user_id,
                                    active_session_id = %active,
                                    "session not stored: user has another active session"
                                );
                            }
                            return Ok(outcome);
                        }
                    }
                    Err(err) => return Err(classify(&err)),
                }
            }
            Err(StoreError::Transient(
                "mongo store: create kept colliding with a session that was ending".into(),
            ))
        })
        .await
    }

    async fn append_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
    ) -> Result<(), StoreError> {
        observe("append_message", self.push_message(session_id, msg, &SessionPatch::default()))
            .await
    }

    /// One `update_one`: the `append_message` filter and push with the patch's `$set`/`$unset`.
    #[allow(clippy::disallowed_methods, reason = "a reactivating patch takes the two-write path")]
    async fn append_message_with(
        &self,
        session_id: &str,
        msg: &StoredMessage,
        patch: &SessionPatch,
    ) -> Result<(), StoreError> {
        if patch.reactivate {
            // Reactivation checks the active-user slot first: never combined.
            self.append_message(session_id, msg).await?;
            return self.update(session_id, patch).await;
        }
        observe("append_message_with", self.push_message(session_id, msg, patch)).await
    }

    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        observe("update", async {
            let (mut set, mut unset) = patch_fields(patch);
            let reactivate = &patch.reactivate;
            let mut user_id = None;
            if *reactivate {
                let current = self
                    .sessions
                    .find_one(doc! { field::ID: session_id })
                    .projection(doc! { field::USER_ID: 1 })
                    .await
                    .map_err(|e| classify(&e))?
                    .ok_or_else(not_found)?;
                let uid = current.get_str(field::USER_ID).map_err(|_| {
                    StoreError::Permanent(format!(
                        "mongo store: corrupt session {session_id}: field uid is not a string"
                    ))
                })?;
                unset.insert(field::ENDED, "");
                unset.insert(field::END_CAUSE, "");
                set.insert(field::DURATION, Bson::Int64(0));
                set.insert(field::ACTIVE_USER, uid);
                user_id = Some(uid.to_owned());
            }
            if set.is_empty() && unset.is_empty() {
                return if self.exists(session_id).await? { Ok(()) } else { Err(not_found()) };
            }

            let mut update = doc! { "$currentDate": touch() };
            if !set.is_empty() {
                update.insert("$set", set);
            }
            if !unset.is_empty() {
                update.insert("$unset", unset);
            }
            match self.sessions.update_one(doc! { field::ID: session_id }, update).await {
                Ok(result) if result.matched_count == 0 => Err(not_found()),
                Ok(_) => Ok(()),
                Err(err) if is_duplicate_key(&err) => {
                    // Only the active-user guard can collide here: another session is active.
                    let other = match &user_id {
                        Some(uid) => self.active_session_of(uid).await?,
                        None => None,
                    };
                    Err(StoreError::Permanent(format!(
                        "user already has another active session: {}",
                        other.as_deref().unwrap_or("(ended meanwhile)")
                    )))
                }
                Err(err) => Err(classify(&err)),
            }
        })
        .await
    }

    /// Sets `endTs` and frees the active guard in one find-and-update, then sets `dur` from the
    /// stored start (§8.5: the original also needs two writes).
    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        self.end_where(doc! { field::ID: session_id }, session_id, at, cause).await
    }

    /// [`MongoStore::end`] for idleness, only while `lastActivity` is not after `quiet_since`
    /// (in the same find-and-update, so an append by another instance in between wins; a
    /// document of the original without the field counts as quiet).
    async fn end_if_idle(
        &self,
        session_id: &str,
        at: UnixMillis,
        quiet_since: UnixMillis,
    ) -> Result<bool, StoreError> {
        let quiet = doc! { "$or": [
            { field::LAST_ACTIVITY: { "$lte": date(quiet_since) } },
            { field::LAST_ACTIVITY: { "$exists": false } },
        ] };
        let filter = doc! { field::ID: session_id, "$and": [quiet] };
        Ok(self.end_where(filter, session_id, at, EndCause::Idle).await?.is_some())
    }

    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        observe("load", async {
            let found = self
                .sessions
                .find_one(doc! { field::ID: session_id })
                .await
                .map_err(|e| classify(&e))?;
            found.as_ref().map(session_from_document).transpose()
        })
        .await
    }

    /// An aggregation that `$slice`s the message array on the server (`query::recent_pipeline`).
    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        observe("recent_messages", async {
            let mut cursor = self
                .sessions
                .aggregate(query::recent_pipeline(session_id, limit))
                .await
                .map_err(|e| classify(&e))?;
            let Some(found) = cursor.try_next().await.map_err(|e| classify(&e))? else {
                return Ok(None);
            };
            schema::recent_from_document(session_id, &found, limit).map(Some)
        })
        .await
    }

    /// The recent-messages pipeline with a limit of one: the array's size and last element.
    async fn history_mark(&self, session_id: &str) -> Result<Option<HistoryMark>, StoreError> {
        observe("history_mark", async {
            let mut cursor = self
                .sessions
                .aggregate(query::recent_pipeline(session_id, 1))
                .await
                .map_err(|e| classify(&e))?;
            let Some(found) = cursor.try_next().await.map_err(|e| classify(&e))? else {
                return Ok(None);
            };
            schema::mark_from_document(session_id, &found).map(Some)
        })
        .await
    }

    /// `{uid}` sorted `{ts: -1, _id: 1}`: served by `idx_user_start_time`.
    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        if limit == 0 {
            // MongoDB reads a limit of 0 as "no limit".
            return Ok(Vec::new());
        }
        observe("list_by_user", async {
            let cursor = self
                .sessions
                .find(doc! { field::USER_ID: user_id })
                .sort(doc! { field::STARTED: -1, field::ID: 1 })
                .limit(i64::try_from(limit).unwrap_or(i64::MAX))
                .await
                .map_err(|e| classify(&e))?;
            collect(cursor).await
        })
        .await
    }

    /// One look-up on `idx_share_token`.
    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        observe("find_by_share_token", async {
            let found = self
                .sessions
                .find_one(doc! { field::SHARE_TOKEN: token })
                .await
                .map_err(|e| classify(&e))?;
            found.as_ref().map(session_from_document).transpose()
        })
        .await
    }

    /// Sets the token only where none is stored (one atomic update), then reads back the
    /// session's token: concurrent shares and retries agree on the first one stored.
    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        observe("set_share_token", async {
            let filter = doc! { field::ID: session_id, field::SHARE_TOKEN: Bson::Null };
            let update = doc! { "$set": { field::SHARE_TOKEN: token }, "$currentDate": touch() };
            match self.sessions.update_one(filter, update).await {
                Ok(_) => {}
                Err(err) if is_duplicate_key(&err) => {
                    return Err(StoreError::Permanent("share token already in use".into()))
                }
                Err(err) => return Err(classify(&err)),
            }
            let Some(stored) = self
                .sessions
                .find_one(doc! { field::ID: session_id })
                .projection(doc! { field::SHARE_TOKEN: 1 })
                .await
                .map_err(|e| classify(&e))?
            else {
                return Ok(None);
            };
            match stored.get(field::SHARE_TOKEN) {
                Some(Bson::String(stored)) => Ok(Some(stored.clone())),
                _ => Err(StoreError::Permanent(format!(
                    "mongo store: corrupt session {session_id}: field shareToken is not a string"
                ))),
            }
        })
        .await
    }

    /// One conditional `updateOne` (`assistingAdminId` absent, empty or this admin's): MongoDB
    /// applies it atomically to the document, so of two racing admins exactly one matches. The
    /// holder is then read back.
    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        observe("claim_assistance", async {
            let filter = doc! {
                field::ID: session_id,
                "$or": [
                    { field::ASSISTING_ADMIN_ID: { "$exists": false } },
                    { field::ASSISTING_ADMIN_ID: { "$in": ["", admin.id.as_str()] } },
                ],
            };
            let update = doc! {
                "$set": {
                    field::ADMIN_ASSISTED: true,
                    field::ASSISTING_ADMIN_ID: admin.id.as_str(),
                    field::ASSISTING_ADMIN_NAME: admin.name.as_str(),
                },
                "$currentDate": touch(),
            };
            // Not matched but nobody assists when read back: the holder left in between, so
            // the claim is tried again (twice at most; then the caller may retry).
            for _ in 0..2 {
                let result = self
                    .sessions
                    .update_one(filter.clone(), update.clone())
                    .await
                    .map_err(|e| classify(&e))?;
                if result.matched_count > 0 {
                    return Ok(Some(admin.clone()));
                }
                match self.read_assisting(session_id).await? {
                    None => return Ok(None),
                    Some(Some(holder)) => return Ok(Some(holder)),
                    Some(None) => {}
                }
            }
            Err(StoreError::Transient("the assisting admin changed during the claim".into()))
        })
        .await
    }

    async fn assisting_admin(
        &self,
        session_id: &str,
    ) -> Result<Option<Option<AdminRef>>, StoreError> {
        observe("assisting_admin", self.read_assisting(session_id)).await
    }

    /// `$unset` of `shareToken` (the sparse unique index drops the entry with it).
    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError> {
        observe("clear_share_token", async {
            let update = doc! { "$unset": { field::SHARE_TOKEN: "" }, "$currentDate": touch() };
            let result = self
                .sessions
                .update_one(doc! { field::ID: session_id }, update)
                .await
                .map_err(|e| classify(&e))?;
            Ok((result.matched_count > 0).then_some(()))
        })
        .await
    }

    /// Filter, sort, skip and limit run in MongoDB (`ts` sorts use `idx_start_time`); sorting
    /// by message count is an aggregation that adds the size of `msgs`.
    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        if query.limit == 0 {
            return Ok(Vec::new());
        }
        observe("search", async {
            let cursor = if query::needs_pipeline(query) {
                self.sessions.aggregate(query::search_pipeline(query)).await
            } else {
                self.sessions
                    .find(query::search_filter(query))
                    .sort(query::search_sort(query))
                    .skip(query.offset)
                    .limit(i64::from(query.limit))
                    .await
            }
            .map_err(|e| classify(&e))?;
            collect(cursor).await
        })
        .await
    }

    /// `ts` within the bounds (`idx_start_time`), `msgs` projected away.
    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        observe("started_between", async {
            let cursor = self
                .sessions
                .find(query::started_between_filter(from, to))
                .projection(doc! { field::MESSAGES: 0 })
                .await
                .map_err(|e| classify(&e))?;
            collect(cursor).await
        })
        .await
    }

    /// Both aggregations run in MongoDB (`idx_start_time` serves the `$match`): one `$group` for
    /// the totals and open time, one sorted event stream for the peak, read in O(1) memory.
    async fn window_stats(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        now: UnixMillis,
    ) -> Result<WindowStats, StoreError> {
        observe("window_stats", async {
            let mut totals_cursor = self
                .sessions
                .aggregate(query::window_totals_pipeline(from, to, now))
                .await
                .map_err(|e| classify(&e))?;
            let group = totals_cursor.try_next().await.map_err(|e| classify(&e))?;
            let mut events = self
                .sessions
                .aggregate(query::window_events_pipeline(from, to, now))
                .allow_disk_use(true)
                .await
                .map_err(|e| classify(&e))?;
            let (mut open, mut peak) = (0_i64, 0_i64);
            while let Some(event) = events.try_next().await.map_err(|e| classify(&e))? {
                open += number(&event, "d") as i64;
                peak = peak.max(open);
            }
            Ok(window_stats_of(group.as_ref(), from, to, peak))
        })
        .await
    }

    /// The indexes (the server retries this in the background until it succeeds).
    async fn prepare(&self) -> Result<(), StoreError> {
        self.ensure_indexes().await
    }

    /// `{ping: 1}` on the database.
    async fn ping(&self) -> Result<(), StoreError> {
        observe("ping", async {
            self.database.run_command(doc! { "ping": 1 }).await.map_err(|e| classify(&e))?;
            Ok(())
        })
        .await
    }

    /// Nothing to do: every write returned only after the server acknowledged it with the
    /// client's default write concern; there is no client-side buffer to flush.
    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The `$set` and `$unset` documents of a patch's plain fields (everything but reactivation).
fn patch_fields(patch: &SessionPatch) -> (Document, Document) {
    let SessionPatch {
        name,
        model_id,
        assistance,
        help_requested,
        total_tokens,
        response_ms,
        reactivate: _,
    } = patch;
    let mut set = Document::new();
    let mut unset = Document::new();
    if let Some(name) = name {
        set.insert(field::NAME, name);
    }
    if let Some(model_id) = model_id {
        set.insert(field::MODEL_ID, model_id);
    }
    if let Some((assisted, admin_id, admin_name)) = assistance {
        // Only ever raised: it records that the session was assisted at some point.
        if *assisted {
            set.insert(field::ADMIN_ASSISTED, true);
        }
        for (key, value) in
            [(field::ASSISTING_ADMIN_ID, admin_id), (field::ASSISTING_ADMIN_NAME, admin_name)]
        {
            if value.is_empty() {
                unset.insert(key, "");
            } else {
                set.insert(key, value);
            }
        }
    }
    if let Some(help) = help_requested {
        set.insert(field::HELP_REQUESTED, *help);
    }
    if let Some(total) = total_tokens {
        set.insert(field::TOTAL_TOKENS, tokens(*total));
    }
    if let Some((max_ms, avg_ms)) = response_ms {
        set.insert(field::MAX_RESPONSE_MS, int64(*max_ms));
        set.insert(field::AVG_RESPONSE_MS, int64(*avg_ms));
    }
    (set, unset)
}
