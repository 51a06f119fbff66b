//! The embedded store's on-disk layout: redb table definitions, the schema version, the row types
//! stored as JSON, and the key encodings. Everything that decides how bytes sit in `chatbox.redb`
//! lives here, so a format change is one file to read.
//!
//! | table | key | value |
//! |---|---|---|
//! | `meta` | `&str` name | `u64` (only `schema_version`) |
//! | `sessions` | session id | JSON [`SessionRow`] (the document without its messages) |
//! | `messages` | (session id, seq) | JSON [`MessageRow`]; seq counts from 0 in append order |
//! | `message_ids` | (session id, message id) | seq — makes appends idempotent |
//! | `sessions_by_user` | (user id, [`descending_start`], session id) | `()` — `list_by_user` |
//! | `active_by_user` | user id | session id of the user's one active session |
//! | `share_tokens` | share token | session id |
//!
//! Rows are written by this module's own serde types rather than by the port's `SessionDoc`, so
//! the port can change shape without silently changing (or breaking) the file format: adding a
//! field to `SessionDoc` fails to compile here until the row says how it is stored. Every row field
//! added after version 1 must carry `#[serde(default)]` so older files still read.

use std::collections::BTreeMap;

use chatbox_core::UnixMillis;
use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use super::error::corrupt;
use crate::engine::store::{SessionDoc, StoreError, StoredMessage};

/// Version of the layout described above; stored in `meta` on first open and checked afterwards.
pub(super) const SCHEMA_VERSION: u64 = 1;

/// Key of the schema version in [`META`].
pub(super) const SCHEMA_VERSION_KEY: &str = "schema_version";

/// Small named values about the file itself.
pub(super) const META: TableDefinition<&str, u64> = TableDefinition::new("meta");

/// Session rows by session id.
pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

/// Messages by (session id, seq).
pub(super) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

/// Seq of each stored message by (session id, message id).
pub(super) const MESSAGE_IDS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("message_ids");

/// Index for `list_by_user`: (user id, descending start, session id).
pub(super) const SESSIONS_BY_USER: TableDefinition<(&str, u64, &str), ()> =
    TableDefinition::new("sessions_by_user");

/// The one active session of each user that has one.
pub(super) const ACTIVE_BY_USER: TableDefinition<&str, &str> =
    TableDefinition::new("active_by_user");

/// Session id by share token.
pub(super) const SHARE_TOKENS: TableDefinition<&str, &str> = TableDefinition::new("share_tokens");

/// Maps a start time to a `u64` that sorts **newest first**: flip the sign bit so signed order
/// becomes unsigned order, then complement to reverse it.
pub(super) fn descending_start(started: UnixMillis) -> u64 {
    // Reinterpreting the bits is the point: i64::MIN..=i64::MAX maps monotonically onto u64.
    let ascending = (started.0 as u64) ^ (1 << 63);
    !ascending
}

/// A session as stored: every `SessionDoc` field except `id` (the key) and `messages` (their own
/// table), plus the next message seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct SessionRow {
    /// Owner.
    pub user_id: String,
    /// Start time.
    pub started: UnixMillis,
    /// Name, empty until named.
    #[serde(default)]
    pub name: String,
    /// Selected provider id.
    #[serde(default)]
    pub model_id: String,
    /// End time; absent while active.
    #[serde(default)]
    pub ended: Option<UnixMillis>,
    /// Ended through `POST …/end` (never resumed); absent in rows written before issue 16.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ended_on_request: bool,
    /// Whole seconds from start to end.
    #[serde(default)]
    pub duration_secs: i64,
    /// Assisted by an admin.
    #[serde(default)]
    pub admin_assisted: bool,
    /// Assisting admin id.
    #[serde(default)]
    pub assisting_admin_id: String,
    /// Assisting admin name.
    #[serde(default)]
    pub assisting_admin_name: String,
    /// Help requested.
    #[serde(default)]
    pub help_requested: bool,
    /// Token total.
    #[serde(default)]
    pub total_tokens: u64,
    /// Time of the latest stored message.
    #[serde(default)]
    pub last_activity: Option<UnixMillis>,
    /// Max response time, ms.
    #[serde(default)]
    pub max_response_ms: u64,
    /// Average response time, ms.
    #[serde(default)]
    pub avg_response_ms: u64,
    /// Public share token.
    #[serde(default)]
    pub share_token: Option<String>,
    /// Seq the next appended message gets (= number of stored messages).
    #[serde(default)]
    pub next_seq: u64,
}

impl SessionRow {
    /// The row for a document; `next_seq` starts at 0 (messages are inserted separately).
    pub fn from_doc(doc: &SessionDoc) -> Self {
        // Destructured so that a new `SessionDoc` field is a compile error here.
        let SessionDoc {
            id: _,
            user_id,
            name,
            model_id,
            messages: _,
            started,
            ended,
            ended_on_request,
            duration_secs,
            admin_assisted,
            assisting_admin_id,
            assisting_admin_name,
            help_requested,
            total_tokens,
            last_activity,
            max_response_ms,
            avg_response_ms,
            share_token,
        } = doc;
        Self {
            user_id: user_id.clone(),
            started: *started,
            name: name.clone(),
            model_id: model_id.clone(),
            ended: *ended,
            ended_on_request: *ended_on_request,
            duration_secs: *duration_secs,
            admin_assisted: *admin_assisted,
            assisting_admin_id: assisting_admin_id.clone(),
            assisting_admin_name: assisting_admin_name.clone(),
            help_requested: *help_requested,
            total_tokens: *total_tokens,
            last_activity: *last_activity,
            max_response_ms: *max_response_ms,
            avg_response_ms: *avg_response_ms,
            share_token: share_token.clone(),
            next_seq: 0,
        }
    }

    /// The document for this row, with the given id and messages.
    pub fn into_doc(self, id: String, messages: Vec<StoredMessage>) -> SessionDoc {
        let SessionRow {
            user_id,
            started,
            name,
            model_id,
            ended,
            ended_on_request,
            duration_secs,
            admin_assisted,
            assisting_admin_id,
            assisting_admin_name,
            help_requested,
            total_tokens,
            last_activity,
            max_response_ms,
            avg_response_ms,
            share_token,
            next_seq: _,
        } = self;
        SessionDoc {
            id,
            user_id,
            name,
            model_id,
            messages,
            started,
            ended,
            ended_on_request,
            duration_secs,
            admin_assisted,
            assisting_admin_id,
            assisting_admin_name,
            help_requested,
            total_tokens,
            last_activity,
            max_response_ms,
            avg_response_ms,
            share_token,
        }
    }

    /// JSON bytes for the `sessions` table.
    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self)
            .map_err(|e| StoreError::Permanent(format!("cannot encode session row: {e}")))
    }

    /// Reads a row; bad bytes are a permanent error naming the session, never a panic.
    pub fn decode(session_id: &str, bytes: &[u8]) -> Result<Self, StoreError> {
        serde_json::from_slice(bytes).map_err(|e| corrupt("session", session_id, &e))
    }
}

/// A message as stored; empty optional fields are left out of the JSON.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct MessageRow {
    /// Message id.
    pub id: String,
    /// Text.
    pub content: String,
    /// Server time when handled.
    pub ts: UnixMillis,
    /// `user`, `ai` or `admin`.
    pub sender: String,
    /// Attached file id.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_id: String,
    /// Attached file URL.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub file_url: String,
    /// Scalar metadata.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub meta: BTreeMap<String, String>,
}

impl MessageRow {
    /// JSON bytes for the `messages` table.
    pub fn encode(msg: &StoredMessage) -> Result<Vec<u8>, StoreError> {
        let StoredMessage { id, content, ts, sender, file_id, file_url, meta } = msg;
        // Borrowing would save the clones, but a message is written once; clarity wins.
        let row = MessageRow {
            id: id.clone(),
            content: content.clone(),
            ts: *ts,
            sender: sender.clone(),
            file_id: file_id.clone(),
            file_url: file_url.clone(),
            meta: meta.clone(),
        };
        serde_json::to_vec(&row)
            .map_err(|e| StoreError::Permanent(format!("cannot encode message row: {e}")))
    }

    /// Reads a message of `session_id`; bad bytes are a permanent error, never a panic.
    pub fn decode(session_id: &str, bytes: &[u8]) -> Result<StoredMessage, StoreError> {
        let row: MessageRow = serde_json::from_slice(bytes)
            .map_err(|e| corrupt("message of session", session_id, &e))?;
        let MessageRow { id, content, ts, sender, file_id, file_url, meta } = row;
        Ok(StoredMessage { id, content, ts, sender, file_id, file_url, meta })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descending_start_sorts_newest_first_across_the_sign() {
        let times = [i64::MIN, -5, -1, 0, 1, 1_700_000_000_000, i64::MAX];
        for pair in times.windows(2) {
            assert!(
                descending_start(UnixMillis(pair[0])) > descending_start(UnixMillis(pair[1])),
                "{pair:?}"
            );
        }
    }

    #[test]
    fn session_row_round_trips_a_document() {
        let mut doc = SessionDoc::new("s1".into(), "u1".into(), UnixMillis(1_000));
        doc.name = "Hello".into();
        doc.ended = Some(UnixMillis(9_000));
        doc.duration_secs = 8;
        doc.share_token = Some("t".into());
        let row = SessionRow::from_doc(&doc);
        let bytes = row.encode().unwrap();
        let back = SessionRow::decode("s1", &bytes).unwrap();
        assert_eq!(back.into_doc("s1".into(), Vec::new()), doc);
    }

    #[test]
    fn corrupt_rows_are_permanent_errors() {
        assert!(matches!(SessionRow::decode("s1", b"{not json"), Err(StoreError::Permanent(_))));
        assert!(matches!(MessageRow::decode("s1", b"\xff\x00"), Err(StoreError::Permanent(_))));
    }
}
