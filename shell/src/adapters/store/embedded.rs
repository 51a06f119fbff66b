//! [`EmbeddedStore`]: the out-of-the-box [`SessionStore`], a single redb file in the data
//! directory. redb is synchronous, so every operation runs as one transaction on tokio's blocking
//! pool (`ops.rs` holds the transactions, `schema.rs` the layout); writes run on the store's
//! writer thread, which makes batches of them durable with one fsync (`writer.rs`). Used when no MongoDB is configured, and by
//! the black-box tests.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::protocol::query::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;
use redb::{Database, WriteTransaction};

use super::error::{join_error, redb_error};
use super::ops::{self, Write};
pub use super::writer::WriteStats;
use super::writer::Writer;
use crate::engine::store::{
    CreateOutcome, HistoryMark, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
};

/// Durable sessions in `<data dir>/chatbox.redb`.
///
/// Cheap to clone (the database handle is shared); every clone sees the same data. Each call is
/// one atomic, durable transaction: when a write returns `Ok`, it survives a crash. Writes are
/// idempotent as the port requires, and one process at a time may hold the file (a second
/// [`EmbeddedStore::open`] of the same directory fails with a transient error until the first
/// store and all its clones are dropped).
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    writer: Arc<Writer>,
    path: PathBuf,
}

impl fmt::Debug for EmbeddedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedStore").field("path", &self.path).finish_non_exhaustive()
    }
}

impl EmbeddedStore {
    /// Name of the database file inside the data directory.
    pub const FILE_NAME: &'static str = "chatbox.redb";

    /// Opens (creating if needed) the data directory `dir` and `chatbox.redb` inside it, and
    /// creates the tables on first use.
    ///
    /// Blocks on file IO: call it at start-up, before serving. Errors: the directory or file
    /// cannot be created or read, the file is not a chatbox store of this schema version, or
    /// another process holds the file (all permanent: retrying would not help).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with_linger(dir, chatbox_core::config::STORE_COMMIT_LINGER_DEFAULT)
    }

    /// [`EmbeddedStore::open`] with the writer's wait for company under load
    /// (`STORE_COMMIT_LINGER`; zero commits every batch at once).
    pub fn open_with_linger(dir: &Path, linger: Duration) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| {
            StoreError::Permanent(format!(
                "embedded store: cannot create data directory {}: {e}",
                dir.display()
            ))
        })?;
        let path = dir.join(Self::FILE_NAME);
        let db = Arc::new(
            redb::Builder::new()
                .set_cache_size(chatbox_core::budgets::EMBEDDED_CACHE_BYTES)
                .create(&path)
                .map_err(|e| match e {
                    redb::DatabaseError::DatabaseAlreadyOpen => StoreError::Permanent(format!(
                        "embedded store: {}",
                        crate::adapters::data_dir::locked(&path)
                    )),
                    other => redb_error(other),
                })?,
        );
        ops::init(&db)?;
        let writer = Writer::start(Arc::clone(&db), linger).map_err(|e| {
            StoreError::Permanent(format!("embedded store: cannot start the writer: {e}"))
        })?;
        tracing::info!(path = %path.display(), "embedded store opened");
        Ok(Self { db, writer: Arc::new(writer), path })
    }

    /// Path of the database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the writes so far shared commits (group commit and its waiting under load).
    pub fn write_stats(&self) -> WriteStats {
        self.writer.stats()
    }

    /// Runs one blocking operation on tokio's blocking pool with a handle to the database.
    async fn run<T, F>(&self, op: &'static str, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, StoreError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        // adapters may block: redb is synchronous
        #[allow(clippy::disallowed_methods)]
        let task = tokio::task::spawn_blocking(move || body(&db));
        let result = match task.await {
            Ok(result) => result,
            Err(err) => Err(join_error(&err)),
        };
        if let Err(err) = &result {
            // The caller (the store writer) decides whether this is worth a warning or a retry.
            tracing::debug!(op, error = %err, "embedded store operation failed");
        }
        result
    }

    /// Runs one write transaction on the writer thread; returns once it is durable.
    async fn run_write<T, F>(&self, op: &'static str, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<Write<T>, StoreError> + Send + 'static,
    {
        let result = self.writer.write(body).await;
        if let Err(err) = &result {
            tracing::debug!(op, error = %err, "embedded store operation failed");
        }
        result
    }
}

#[async_trait]
impl SessionStore for EmbeddedStore {
    fn system_name(&self) -> &'static str {
        "redb"
    }

    /// redb locks its file: no other process writes this database while the server runs.
    fn exclusive(&self) -> bool {
        true
    }

    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        let doc = doc.clone();
        let (id, user) = (doc.id.clone(), doc.user_id.clone());
        let outcome = self.run_write("create", move |txn| ops::create(txn, &doc)).await?;
        match &outcome {
            CreateOutcome::Created => {
                tracing::debug!(session_id = %id, user_id = %user, "session stored")
            }
            CreateOutcome::ActiveExists(active) => tracing::debug!(
                session_id = %id,
                user_id = %user,
                active_session_id = %active,
                "session not stored: user has another active session"
            ),
        }
        Ok(outcome)
    }

    async fn append_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
    ) -> Result<(), StoreError> {
        let (session_id, msg) = (session_id.to_owned(), msg.clone());
        self.run_write("append_message", move |txn| ops::append_message(txn, &session_id, &msg))
            .await
    }

    /// One transaction: the message's rows and the patched session row.
    async fn append_message_with(
        &self,
        session_id: &str,
        msg: &StoredMessage,
        patch: &SessionPatch,
    ) -> Result<(), StoreError> {
        let (session_id, msg, patch) = (session_id.to_owned(), msg.clone(), patch.clone());
        self.run_write("append_message_with", move |txn| {
            ops::append_message_with(txn, &session_id, &msg, &patch)
        })
        .await
    }

    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        let (session_id, patch) = (session_id.to_owned(), patch.clone());
        self.run_write("update", move |txn| ops::update(txn, &session_id, &patch)).await
    }

    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        let id = session_id.to_owned();
        let ended = self.run_write("end", move |txn| ops::end(txn, &id, at, cause)).await?;
        if ended.is_some() {
            tracing::debug!(%session_id, "session ended in store");
        }
        Ok(ended)
    }

    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        let session_id = session_id.to_owned();
        self.run("load", move |db| ops::load(db, &session_id)).await
    }

    /// A reverse range scan over the session's message rows: O(limit), not O(session).
    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let session_id = session_id.to_owned();
        self.run("recent_messages", move |db| ops::recent_messages(db, &session_id, limit)).await
    }

    /// The session row's message count and the last message row: two look-ups.
    async fn history_mark(&self, session_id: &str) -> Result<Option<HistoryMark>, StoreError> {
        let session_id = session_id.to_owned();
        self.run("history_mark", move |db| ops::history_mark(db, &session_id)).await
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        let user_id = user_id.to_owned();
        self.run("list_by_user", move |db| ops::list_by_user(db, &user_id, limit)).await
    }

    /// One lookup in the `share_tokens` index, then the session and its messages.
    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        let token = token.to_owned();
        self.run("find_by_share_token", move |db| ops::find_by_share_token(db, &token)).await
    }

    /// Check and set in one write transaction, so two concurrent shares agree on one token.
    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        let (session_id, token) = (session_id.to_owned(), token.to_owned());
        self.run_write("set_share_token", move |txn| ops::set_share_token(txn, &session_id, &token))
            .await
    }

    /// Reads and (when free or already `admin`'s) sets the assisting admin in one write
    /// transaction.
    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        let (session_id, admin) = (session_id.to_owned(), admin.clone());
        self.run_write("claim_assistance", move |txn| {
            ops::claim_assistance(txn, &session_id, &admin)
        })
        .await
    }

    /// Drops the token from the row and from the `share_tokens` index in one write transaction.
    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError> {
        let session_id = session_id.to_owned();
        self.run_write("clear_share_token", move |txn| ops::clear_share_token(txn, &session_id))
            .await
    }

    /// Scans every session row in one read transaction (O(sessions); there is no secondary
    /// index for the filters), sorting on the rows alone (the message count is the row's
    /// `next_seq`), then loads messages only for the returned page.
    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        let query = query.clone();
        self.run("search", move |db| ops::search(db, &query)).await
    }

    /// Scans every session row in one read transaction (O(sessions)); messages are not read.
    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        self.run("started_between", move |db| ops::started_between(db, from, to)).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.run("ping", ops::ping).await
    }

    /// Waits for the group commit that covers every write ended so far. Cheap when nothing is
    /// pending: every acknowledged write is already durable.
    async fn flush(&self) -> Result<(), StoreError> {
        self.writer.flush().await
    }
}
