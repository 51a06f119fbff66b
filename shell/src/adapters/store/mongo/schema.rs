//! The MongoDB document of a session (PROTOCOL.md §8.1–8.2), mapped by hand in both directions.
//! Everything that decides which field names and BSON types sit in the `sessions` collection
//! lives here, so the original's schema is one file to compare against.
//!
//! Written exactly as the original writes: `_id`, `uid`, `nm`, `modelId`, `msgs[]`, `ts` (date),
//! `endTs` (date, absent while active), `dur` (int64), `adminAssisted`, `assistingAdminId` and
//! `assistingAdminName` (omitted when empty), `helpRequested`, `totalTokens` (int32, int64 when
//! large), `lastActivity` (date, absent before the first message), `maxRespTime` and
//! `avgRespTime` (int64), `shareToken` (absent until shared), `_ts`/`_mt` (dates). Each message:
//! `content`, `ts` (date), `sender`, and `fileId`/`fileUrl`/`meta` omitted when empty.
//!
//! Two fields are ours, and the original ignores them: `msgs[].mid` (the message id that makes
//! appends idempotent) and `activeUid` (= `uid` while the session is active, guarded by the
//! unique partial index `idx_active_user`: one active session per user).
//!
//! Reading is lenient where the original was loose: any BSON numeric type (int32, int64, double)
//! for numeric fields, `null` or missing for every optional field, a missing `msgs`, and messages
//! without `mid` (they get the stable id `legacy-<index>`). A field of the wrong type is a
//! permanent error that names the session and the field, never the value.

use std::collections::BTreeMap;

use chatbox_core::UnixMillis;
use mongodb::bson::{doc, Bson, DateTime, Document};

use super::query;
use crate::engine::store::{HistoryMark, SessionDoc, StoreError, StoredMessage};

/// Field names of the session document.
pub(super) mod field {
    /// Session id (string).
    pub const ID: &str = "_id";
    /// Owner user id.
    pub const USER_ID: &str = "uid";
    /// Session name.
    pub const NAME: &str = "nm";
    /// Selected provider id.
    pub const MODEL_ID: &str = "modelId";
    /// Messages array.
    pub const MESSAGES: &str = "msgs";
    /// Start time (date).
    pub const STARTED: &str = "ts";
    /// End time (date), absent while active.
    pub const ENDED: &str = "endTs";
    /// Why it ended (chatbox, issue 16): `requested` (`POST …/end`, never resumed) or `idle`;
    /// absent while active and in documents written before it.
    pub const END_CAUSE: &str = "endCause";
    /// Duration in whole seconds (int64).
    pub const DURATION: &str = "dur";
    /// Admin-assisted flag.
    pub const ADMIN_ASSISTED: &str = "adminAssisted";
    /// Assisting admin id, omitted when empty.
    pub const ASSISTING_ADMIN_ID: &str = "assistingAdminId";
    /// Assisting admin name, omitted when empty.
    pub const ASSISTING_ADMIN_NAME: &str = "assistingAdminName";
    /// Help-requested flag.
    pub const HELP_REQUESTED: &str = "helpRequested";
    /// Token total (int32, int64 when large).
    pub const TOTAL_TOKENS: &str = "totalTokens";
    /// Time of the latest message write (date).
    pub const LAST_ACTIVITY: &str = "lastActivity";
    /// Max response time in ms (int64).
    pub const MAX_RESPONSE_MS: &str = "maxRespTime";
    /// Average response time in ms (int64).
    pub const AVG_RESPONSE_MS: &str = "avgRespTime";
    /// Public share token, absent until shared.
    pub const SHARE_TOKEN: &str = "shareToken";
    /// Created (date), as the original's helper library writes it.
    pub const CREATED: &str = "_ts";
    /// Modified (date), as the original's helper library writes it.
    pub const MODIFIED: &str = "_mt";
    /// Ours: `uid` while the session is active, absent once ended (the one-active guard).
    pub const ACTIVE_USER: &str = "activeUid";
}

/// Field names of a message sub-document (`msgs[]`).
pub(super) mod msg_field {
    /// Text (or ciphertext, §8.4).
    pub const CONTENT: &str = "content";
    /// Server time when handled (date).
    pub const TS: &str = "ts";
    /// `user`, `ai`, `admin`.
    pub const SENDER: &str = "sender";
    /// Attached file id, omitted when empty.
    pub const FILE_ID: &str = "fileId";
    /// Attached file URL, omitted when empty.
    pub const FILE_URL: &str = "fileUrl";
    /// String→string metadata, omitted when empty.
    pub const META: &str = "meta";
    /// Ours: the message id (`StoredMessage::id`).
    pub const ID: &str = "mid";
}

/// A time as a BSON date (millisecond precision, like the port's `UnixMillis`).
pub(super) fn date(at: UnixMillis) -> Bson {
    Bson::DateTime(DateTime::from_millis(at.0))
}

/// An unsigned count as int64, saturating at `i64::MAX`.
pub(super) fn int64(value: u64) -> Bson {
    Bson::Int64(i64::try_from(value).unwrap_or(i64::MAX))
}

/// The token total as the original writes it: int32, int64 when it does not fit.
pub(super) fn tokens(value: u64) -> Bson {
    match i32::try_from(value) {
        Ok(small) => Bson::Int32(small),
        Err(_) => int64(value),
    }
}

/// The whole document `create` inserts: every field of §8.1 (empty optional ones omitted), the
/// messages (duplicate ids dropped, like repeated appends), `lastActivity` at the latest message
/// (or the document's own value), `activeUid` when the session is active, and `_ts`/`_mt` at the
/// `endCause` of an end on request.
pub(super) const END_CAUSE_REQUESTED: &str = "requested";

/// The stored `endCause` of an end: `requested` or `idle`.
pub(super) fn end_cause(on_request: bool) -> &'static str {
    if on_request {
        END_CAUSE_REQUESTED
    } else {
        "idle"
    }
}

/// session's start (the engine's creation time; the adapter reads no clock).
pub(super) fn session_to_document(doc: &SessionDoc) -> Document {
    // Destructured so that a new `SessionDoc` field is a compile error here.
    let SessionDoc {
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
    } = doc;

    let mut seen = std::collections::BTreeSet::new();
    let unique: Vec<&StoredMessage> =
        messages.iter().filter(|m| seen.insert(m.id.as_str())).collect();
    let last_activity = unique.iter().map(|m| m.ts).chain(*last_activity).max();
    let msgs: Vec<Bson> =
        unique.into_iter().map(|m| Bson::Document(message_to_document(m))).collect();

    let mut out = doc! {
        field::ID: id,
        field::USER_ID: user_id,
        field::NAME: name,
        field::MODEL_ID: model_id,
        field::MESSAGES: msgs,
        field::STARTED: date(*started),
    };
    if let Some(ended) = ended {
        out.insert(field::ENDED, date(*ended));
        out.insert(field::END_CAUSE, end_cause(*ended_on_request));
    }
    out.insert(field::DURATION, Bson::Int64(*duration_secs));
    out.insert(field::ADMIN_ASSISTED, *admin_assisted);
    if !assisting_admin_id.is_empty() {
        out.insert(field::ASSISTING_ADMIN_ID, assisting_admin_id);
    }
    if !assisting_admin_name.is_empty() {
        out.insert(field::ASSISTING_ADMIN_NAME, assisting_admin_name);
    }
    out.insert(field::HELP_REQUESTED, *help_requested);
    out.insert(field::TOTAL_TOKENS, tokens(*total_tokens));
    if let Some(last) = last_activity {
        out.insert(field::LAST_ACTIVITY, date(last));
    }
    out.insert(field::MAX_RESPONSE_MS, int64(*max_response_ms));
    out.insert(field::AVG_RESPONSE_MS, int64(*avg_response_ms));
    if let Some(token) = share_token {
        out.insert(field::SHARE_TOKEN, token);
    }
    out.insert(field::CREATED, date(*started));
    out.insert(field::MODIFIED, date(*started));
    if ended.is_none() {
        out.insert(field::ACTIVE_USER, user_id);
    }
    out
}

/// One `msgs[]` entry: §8.2 plus our `mid`; empty `fileId`/`fileUrl`/`meta` are omitted.
pub(super) fn message_to_document(msg: &StoredMessage) -> Document {
    let StoredMessage { id, content, ts, sender, file_id, file_url, meta } = msg;
    let mut out = doc! {
        msg_field::CONTENT: content,
        msg_field::TS: date(*ts),
        msg_field::SENDER: sender,
    };
    if !file_id.is_empty() {
        out.insert(msg_field::FILE_ID, file_id);
    }
    if !file_url.is_empty() {
        out.insert(msg_field::FILE_URL, file_url);
    }
    if !meta.is_empty() {
        let meta: Document =
            meta.iter().map(|(k, v)| (k.clone(), Bson::String(v.clone()))).collect();
        out.insert(msg_field::META, meta);
    }
    out.insert(msg_field::ID, id);
    out
}

/// Reads a session document (whatever wrote it: us or the original).
pub(super) fn session_from_document(d: &Document) -> Result<SessionDoc, StoreError> {
    let id = match d.get(field::ID) {
        Some(Bson::String(id)) => id.clone(),
        _ => {
            return Err(StoreError::Permanent(
                "mongo store: session document without a string _id".into(),
            ))
        }
    };
    let r = Reader { doc: d, session_id: &id, what: "session" };
    let user_id = r.required_string(field::USER_ID)?;
    let started = r.required_date(field::STARTED)?;
    let messages = messages_field(&r, usize::MAX, None)?;
    Ok(SessionDoc {
        user_id,
        name: r.string(field::NAME)?,
        model_id: r.string(field::MODEL_ID)?,
        messages,
        started,
        ended: r.date(field::ENDED)?,
        ended_on_request: r.string(field::END_CAUSE)? == END_CAUSE_REQUESTED,
        duration_secs: r.int(field::DURATION)?,
        admin_assisted: r.boolean(field::ADMIN_ASSISTED)?,
        assisting_admin_id: r.string(field::ASSISTING_ADMIN_ID)?,
        assisting_admin_name: r.string(field::ASSISTING_ADMIN_NAME)?,
        help_requested: r.boolean(field::HELP_REQUESTED)?,
        total_tokens: r.count(field::TOTAL_TOKENS)?,
        last_activity: r.date(field::LAST_ACTIVITY)?,
        max_response_ms: r.count(field::MAX_RESPONSE_MS)?,
        avg_response_ms: r.count(field::AVG_RESPONSE_MS)?,
        share_token: r.optional_string(field::SHARE_TOKEN)?,
        id,
    })
}

/// Reads the `{n, msgs}` of [`recent_pipeline`](super::query::recent_pipeline): the last messages
/// of a session and the length of its whole array, so that messages without `mid` get the
/// same `legacy-<index>` ids as through [`session_from_document`].
pub(super) fn recent_from_document(
    session_id: &str,
    d: &Document,
    limit: usize,
) -> Result<Vec<StoredMessage>, StoreError> {
    let r = Reader { doc: d, session_id, what: "session" };
    let total = usize::try_from(r.count(query::RECENT_TOTAL)?).unwrap_or(usize::MAX);
    messages_field(&r, limit, Some(total))
}

/// The mark of a document from the recent-messages pipeline with a limit of one.
pub(super) fn mark_from_document(
    session_id: &str,
    d: &Document,
) -> Result<HistoryMark, StoreError> {
    let r = Reader { doc: d, session_id, what: "session" };
    let count = r.count(query::RECENT_TOTAL)?;
    let total = usize::try_from(count).unwrap_or(usize::MAX);
    let last = messages_field(&r, 1, Some(total))?.pop();
    Ok(HistoryMark { count, last_id: last.map(|m| m.id) })
}

/// The last `last` messages of the `msgs` array of `r`'s document (missing: none). `total` is
/// the length of the session's whole array when `msgs` holds only its end, so mid-less
/// messages are numbered by their position in the whole array.
fn messages_field(
    r: &Reader<'_>,
    last: usize,
    total: Option<usize>,
) -> Result<Vec<StoredMessage>, StoreError> {
    let items = match r.get(field::MESSAGES) {
        None => return Ok(Vec::new()),
        Some(Bson::Array(items)) => items,
        Some(_) => return Err(r.wrong_type(field::MESSAGES, "an array")),
    };
    let skip = items.len().saturating_sub(last);
    let first_index = total.map_or(0, |total| total.saturating_sub(items.len()));
    items
        .iter()
        .enumerate()
        .skip(skip)
        .map(|(i, item)| match item {
            Bson::Document(m) => message_from_document(r.session_id, first_index + i, m),
            _ => Err(r.wrong_type(field::MESSAGES, "an array of documents")),
        })
        .collect()
}

/// Reads `msgs[index]`; a message without `mid` (written by the original) gets `legacy-<index>`,
/// stable because messages are only ever appended.
fn message_from_document(
    session_id: &str,
    index: usize,
    d: &Document,
) -> Result<StoredMessage, StoreError> {
    let r = Reader { doc: d, session_id, what: "message of session" };
    let id = r.optional_string(msg_field::ID)?.unwrap_or_else(|| format!("legacy-{index}"));
    let meta = match r.get(msg_field::META) {
        None => BTreeMap::new(),
        Some(Bson::Document(meta)) => meta
            .iter()
            .map(|(k, v)| {
                let value = match v {
                    Bson::String(s) => s.clone(),
                    // The original stores strings; tolerate scalars another writer may have put.
                    other => other.to_string(),
                };
                (k.clone(), value)
            })
            .collect(),
        Some(_) => return Err(r.wrong_type(msg_field::META, "a document")),
    };
    Ok(StoredMessage {
        id,
        content: r.string(msg_field::CONTENT)?,
        ts: r.date(msg_field::TS)?.unwrap_or(UnixMillis(0)),
        sender: r.string(msg_field::SENDER)?,
        file_id: r.string(msg_field::FILE_ID)?,
        file_url: r.string(msg_field::FILE_URL)?,
        meta,
    })
}

/// Typed, lenient field access with errors that name the session and field, never the value.
struct Reader<'a> {
    doc: &'a Document,
    session_id: &'a str,
    what: &'static str,
}

impl Reader<'_> {
    /// The field's value; `null` counts as missing.
    fn get(&self, name: &str) -> Option<&Bson> {
        self.doc.get(name).filter(|v| !matches!(v, Bson::Null | Bson::Undefined))
    }

    fn wrong_type(&self, name: &str, expected: &str) -> StoreError {
        StoreError::Permanent(format!(
            "mongo store: corrupt {} {}: field {name} is not {expected}",
            self.what, self.session_id
        ))
    }

    fn missing(&self, name: &str) -> StoreError {
        StoreError::Permanent(format!(
            "mongo store: corrupt {} {}: field {name} is missing",
            self.what, self.session_id
        ))
    }

    fn optional_string(&self, name: &str) -> Result<Option<String>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(Bson::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(self.wrong_type(name, "a string")),
        }
    }

    /// A string; missing is empty.
    fn string(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.optional_string(name)?.unwrap_or_default())
    }

    fn required_string(&self, name: &str) -> Result<String, StoreError> {
        self.optional_string(name)?.ok_or_else(|| self.missing(name))
    }

    fn date(&self, name: &str) -> Result<Option<UnixMillis>, StoreError> {
        match self.get(name) {
            None => Ok(None),
            Some(Bson::DateTime(at)) => Ok(Some(UnixMillis(at.timestamp_millis()))),
            Some(_) => Err(self.wrong_type(name, "a date")),
        }
    }

    fn required_date(&self, name: &str) -> Result<UnixMillis, StoreError> {
        self.date(name)?.ok_or_else(|| self.missing(name))
    }

    /// A boolean; missing is `false`.
    fn boolean(&self, name: &str) -> Result<bool, StoreError> {
        match self.get(name) {
            None => Ok(false),
            Some(Bson::Boolean(b)) => Ok(*b),
            Some(_) => Err(self.wrong_type(name, "a boolean")),
        }
    }

    /// Any BSON number as i64 (doubles truncated, saturating); missing is 0.
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        match self.get(name) {
            None => Ok(0),
            Some(Bson::Int32(n)) => Ok(i64::from(*n)),
            Some(Bson::Int64(n)) => Ok(*n),
            // `as` saturates and maps NaN to 0: the lenient reading wanted here.
            Some(Bson::Double(x)) => Ok(*x as i64),
            Some(_) => Err(self.wrong_type(name, "a number")),
        }
    }

    /// Any BSON number as u64 (negative values read as 0); missing is 0.
    fn count(&self, name: &str) -> Result<u64, StoreError> {
        Ok(u64::try_from(self.int(name)?).unwrap_or(0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, ts: i64) -> StoredMessage {
        StoredMessage {
            id: id.into(),
            content: "hi".into(),
            ts: UnixMillis(ts),
            sender: "user".into(),
            file_id: String::new(),
            file_url: String::new(),
            meta: BTreeMap::new(),
        }
    }

    #[test]
    fn a_full_document_round_trips() {
        let mut doc = SessionDoc::new("s1".into(), "u1".into(), UnixMillis(1_000));
        doc.name = "Hello".into();
        doc.model_id = "m".into();
        let mut with_file = message("m2", 3_000);
        with_file.file_id = "f".into();
        with_file.file_url = "https://f".into();
        with_file.meta.insert("k".into(), "v".into());
        doc.messages = vec![message("m1", 2_000), with_file];
        doc.ended = Some(UnixMillis(9_000));
        doc.duration_secs = 8;
        doc.admin_assisted = true;
        doc.assisting_admin_id = "a".into();
        doc.assisting_admin_name = "Ann".into();
        doc.help_requested = true;
        doc.total_tokens = u64::from(u32::MAX) + 1;
        doc.last_activity = Some(UnixMillis(3_000));
        doc.max_response_ms = 7;
        doc.avg_response_ms = 5;
        doc.share_token = Some("t".into());
        let written = session_to_document(&doc);
        assert!(matches!(written.get(field::TOTAL_TOKENS), Some(Bson::Int64(_))));
        assert!(written.get(field::ACTIVE_USER).is_none(), "an ended session is not guarded");
        assert_eq!(session_from_document(&written).unwrap(), doc);
    }

    #[test]
    fn an_active_empty_session_omits_optional_fields() {
        let doc = SessionDoc::new("s1".into(), "u1".into(), UnixMillis(1_000));
        let written = session_to_document(&doc);
        for absent in [
            field::ENDED,
            field::ASSISTING_ADMIN_ID,
            field::ASSISTING_ADMIN_NAME,
            field::LAST_ACTIVITY,
            field::SHARE_TOKEN,
        ] {
            assert!(written.get(absent).is_none(), "{absent}");
        }
        assert_eq!(written.get_str(field::ACTIVE_USER).unwrap(), "u1");
        assert!(matches!(written.get(field::TOTAL_TOKENS), Some(Bson::Int32(0))));
        assert_eq!(session_from_document(&written).unwrap(), doc);
    }

    #[test]
    fn legacy_shapes_read_leniently() {
        let d = doc! {
            "_id": "s1", "uid": "u1", "ts": DateTime::from_millis(5),
            "totalTokens": 12.9_f64, "maxRespTime": 3_i32, "avgRespTime": -4_i64, "dur": 2.0_f64,
            "endTs": Bson::Null,
            "msgs": [ { "content": "a", "ts": DateTime::from_millis(6), "sender": "user",
                        "meta": { "n": 1_i32, "s": "x" } },
                      { "content": "b", "sender": "ai" } ],
        };
        let doc = session_from_document(&d).unwrap();
        assert_eq!(doc.total_tokens, 12);
        assert_eq!(doc.max_response_ms, 3);
        assert_eq!(doc.avg_response_ms, 0);
        assert_eq!(doc.duration_secs, 2);
        assert_eq!(doc.ended, None);
        let ids: Vec<_> = doc.messages.iter().map(|m| m.id.as_str()).collect();
        assert_eq!(ids, ["legacy-0", "legacy-1"]);
        assert_eq!(doc.messages[0].meta["n"], "1");
        assert_eq!(doc.messages[0].meta["s"], "x");
    }

    #[test]
    fn wrong_types_are_permanent_errors_naming_the_field() {
        let d = doc! { "_id": "s1", "uid": "u1", "ts": DateTime::from_millis(5), "nm": 3_i32 };
        match session_from_document(&d) {
            Err(StoreError::Permanent(text)) => assert!(text.contains("nm") && text.contains("s1")),
            other => panic!("{other:?}"),
        }
        assert!(session_from_document(&doc! { "_id": 1_i32 }).is_err());
        assert!(session_from_document(&doc! { "_id": "s1", "uid": "u1" }).is_err());
    }

    #[test]
    fn duplicate_message_ids_are_inserted_once() {
        let mut doc = SessionDoc::new("s1".into(), "u1".into(), UnixMillis(1_000));
        doc.messages = vec![message("m1", 2_000), message("m1", 9_000), message("m2", 3_000)];
        let back = session_from_document(&session_to_document(&doc)).unwrap();
        assert_eq!(back.messages.len(), 2);
        assert_eq!(back.last_activity, Some(UnixMillis(3_000)));
    }
}
