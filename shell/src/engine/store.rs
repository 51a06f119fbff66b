//! The `SessionStore` port: durable sessions and their messages, in the shape of the original's
//! MongoDB documents (PROTOCOL.md §8). Implemented by the embedded store (`adapters::store`),
//! later by MongoDB, and by the simulator's fault-injecting store. Every write is idempotent, so
//! the engine may retry any of them after an ambiguous failure without storing anything twice.

use std::collections::BTreeMap;
use std::fmt;

use async_trait::async_trait;
use chatbox_core::retry::ErrorClass;
use chatbox_core::UnixMillis;
use serde::{Deserialize, Serialize};

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
    /// Whole seconds from start to end (`dur`).
    pub duration_secs: i64,
    /// Assisted by an admin (`adminAssisted`).
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
    /// Assisted flag with admin id and name (empty strings clear them).
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
pub trait SessionStore: Send + Sync + fmt::Debug {
    /// Inserts a new session unless the user already has an active one (then reports it).
    /// Inserting an id that already exists succeeds without change.
    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError>;

    /// Appends a message; a message id already present is not appended again.
    async fn append_message(&self, session_id: &str, msg: &StoredMessage)
        -> Result<(), StoreError>;

    /// Applies a patch to a session; an unknown id is a permanent error.
    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError>;

    /// Sets the end time (and `dur`); returns the updated document, `None` for an unknown id.
    /// Ending again overwrites the end time (PROTOCOL.md §4.3).
    async fn end(&self, session_id: &str, at: UnixMillis) -> Result<Option<SessionDoc>, StoreError>;

    /// Loads one session with its messages.
    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError>;

    /// Up to `limit` of a user's sessions, newest start first.
    async fn list_by_user(&self, user_id: &str, limit: usize)
        -> Result<Vec<SessionDoc>, StoreError>;

    /// Cheap liveness check for `/readyz`.
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes every acknowledged write durable (called at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;
}
