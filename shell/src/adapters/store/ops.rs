//! The embedded store's operations on redb. Reads are functions of the database, each one read
//! transaction. Writes are functions of a write transaction that say whether they changed
//! anything ([`Write`]); the store's writer thread (`writer.rs`) applies them, several to one
//! transaction, and each is atomic: a write that fails makes no change, since the writer then
//! drops the shared transaction and applies the others one by one. redb runs one write
//! transaction at a time, and only the writer thread writes, which is what makes the
//! one-active-session check in [`create`] race-free across tasks.
//!
//! These functions block: `embedded.rs` runs reads on tokio's blocking pool and writes on the
//! writer thread.

use chatbox_core::protocol::query::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;
use redb::{Database, Durability, ReadableTable, Table, WriteTransaction};

use super::error::{not_found, redb_error};
use super::schema::{
    descending_start, MessageRow, SessionRow, ACTIVE_BY_USER, MESSAGES, MESSAGE_IDS, META,
    SCHEMA_VERSION, SCHEMA_VERSION_KEY, SESSIONS, SESSIONS_BY_USER, SHARE_TOKENS,
};
use crate::engine::store::{
    search_matches, search_order, search_page, CreateOutcome, HistoryMark, SearchKey, SessionDoc,
    SessionPatch, StoreError, StoredMessage,
};

/// What a write decided.
pub(super) enum Write<T> {
    /// Something changed: the transaction must be committed.
    Commit(T),
    /// Nothing changed (a repeated message id, an existing session id): no commit needed.
    Discard(T),
}

/// Creates every table and records (or checks) the schema version, in one immediately durable
/// transaction. Run once at open, before the writer thread starts.
pub(super) fn init(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(redb_error)?;
    txn.set_durability(Durability::Immediate);
    if let Write::Commit(()) = init_tables(&txn)? {
        txn.commit().map_err(redb_error)?;
    }
    Ok(())
}

fn init_tables(txn: &WriteTransaction) -> Result<Write<()>, StoreError> {
    let mut meta = txn.open_table(META).map_err(redb_error)?;
    let stored = meta.get(SCHEMA_VERSION_KEY).map_err(redb_error)?.map(|guard| guard.value());
    match stored {
        Some(SCHEMA_VERSION) => {}
        Some(other) => {
            return Err(StoreError::Permanent(format!(
                "embedded store: file has schema version {other}, this build reads \
                     {SCHEMA_VERSION}"
            )))
        }
        None => {
            meta.insert(SCHEMA_VERSION_KEY, SCHEMA_VERSION).map_err(redb_error)?;
        }
    }
    // Opening a table in a write transaction creates it, so read transactions never meet a
    // missing table.
    txn.open_table(SESSIONS).map_err(redb_error)?;
    txn.open_table(MESSAGES).map_err(redb_error)?;
    txn.open_table(MESSAGE_IDS).map_err(redb_error)?;
    txn.open_table(SESSIONS_BY_USER).map_err(redb_error)?;
    txn.open_table(ACTIVE_BY_USER).map_err(redb_error)?;
    txn.open_table(SHARE_TOKENS).map_err(redb_error)?;
    Ok(Write::Commit(()))
}

/// Inserts a session unless its user already has a different active one.
///
/// An existing id is left unchanged and reported `Created` (idempotent retry), unless it belongs
/// to another user: that is a permanent error rather than a silent success, since the caller
/// would otherwise write into someone else's session.
pub(super) fn create(
    txn: &WriteTransaction,
    doc: &SessionDoc,
) -> Result<Write<CreateOutcome>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    if let Some(existing) = read_row(&sessions, &doc.id)? {
        if existing.user_id != doc.user_id {
            return Err(StoreError::Permanent("session id already belongs to another user".into()));
        }
        return Ok(Write::Discard(CreateOutcome::Created));
    }
    let mut row = SessionRow::from_doc(doc);

    if row.ended.is_none() {
        let mut active = txn.open_table(ACTIVE_BY_USER).map_err(redb_error)?;
        if let Some(other) = active_holder(&active, &sessions, &row.user_id, &doc.id)? {
            return Ok(Write::Discard(CreateOutcome::ActiveExists(other)));
        }
        active.insert(row.user_id.as_str(), doc.id.as_str()).map_err(redb_error)?;
    }

    let mut by_user = txn.open_table(SESSIONS_BY_USER).map_err(redb_error)?;
    by_user
        .insert((row.user_id.as_str(), descending_start(row.started), doc.id.as_str()), ())
        .map_err(redb_error)?;

    if let Some(token) = &row.share_token {
        let mut tokens = txn.open_table(SHARE_TOKENS).map_err(redb_error)?;
        claim_share_token(&mut tokens, token, &doc.id)?;
    }

    if !doc.messages.is_empty() {
        let mut messages = txn.open_table(MESSAGES).map_err(redb_error)?;
        let mut ids = txn.open_table(MESSAGE_IDS).map_err(redb_error)?;
        for msg in &doc.messages {
            insert_message(&mut messages, &mut ids, &doc.id, &mut row, msg)?;
        }
    }

    sessions.insert(doc.id.as_str(), row.encode()?.as_slice()).map_err(redb_error)?;
    Ok(Write::Commit(CreateOutcome::Created))
}

/// Appends `msg` unless a message with its id is already stored in the session; moves
/// `last_activity` forward to the message's time. An unknown session is a permanent error (a
/// message must never vanish silently).
pub(super) fn append_message(
    txn: &WriteTransaction,
    session_id: &str,
    msg: &StoredMessage,
) -> Result<Write<()>, StoreError> {
    append_patched(txn, session_id, msg, None)
}

/// Appends `msg` and applies `patch` in the same transaction; a message already stored means
/// both were applied before (nothing is written). The session row is read and written once,
/// with the append's and the patch's changes together, unless the patch reactivates the session
/// (that claims the user's active slot: [`update`]'s own path).
pub(super) fn append_message_with(
    txn: &WriteTransaction,
    session_id: &str,
    msg: &StoredMessage,
    patch: &SessionPatch,
) -> Result<Write<()>, StoreError> {
    if !patch.reactivate {
        return append_patched(txn, session_id, msg, Some(patch));
    }
    match append_message(txn, session_id, msg)? {
        Write::Discard(()) => Ok(Write::Discard(())),
        // The append changed the session row: the transaction commits whatever the patch says.
        Write::Commit(()) => update(txn, session_id, patch).map(|_| Write::Commit(())),
    }
}

/// [`append_message`], with `patch`'s plain fields ([`apply_fields`]) applied to the session row
/// after the append's own changes.
fn append_patched(
    txn: &WriteTransaction,
    session_id: &str,
    msg: &StoredMessage,
    patch: Option<&SessionPatch>,
) -> Result<Write<()>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let mut row = read_row(&sessions, session_id)?.ok_or_else(not_found)?;
    let mut messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    let mut ids = txn.open_table(MESSAGE_IDS).map_err(redb_error)?;
    if !insert_message(&mut messages, &mut ids, session_id, &mut row, msg)? {
        return Ok(Write::Discard(()));
    }
    if let Some(patch) = patch {
        apply_fields(&mut row, patch);
    }
    sessions.insert(session_id, row.encode()?.as_slice()).map_err(redb_error)?;
    Ok(Write::Commit(()))
}

/// Applies `patch`. Reactivation clears the end time and the duration and takes the user's
/// active slot; it is refused (permanently, nothing else applied) when another session holds it.
pub(super) fn update(
    txn: &WriteTransaction,
    session_id: &str,
    patch: &SessionPatch,
) -> Result<Write<()>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let before = read_row(&sessions, session_id)?.ok_or_else(not_found)?;
    let mut row = before.clone();

    if patch.reactivate {
        let mut active = txn.open_table(ACTIVE_BY_USER).map_err(redb_error)?;
        if let Some(other) = active_holder(&active, &sessions, &row.user_id, session_id)? {
            return Err(StoreError::Permanent(format!(
                "user already has another active session: {other}"
            )));
        }
        active.insert(row.user_id.as_str(), session_id).map_err(redb_error)?;
        row.ended = None;
        row.ended_on_request = false;
        row.duration_secs = 0;
    }
    apply_fields(&mut row, patch);

    // An unchanged row still commits when the active slot was (re)claimed above.
    if row == before && !patch.reactivate {
        return Ok(Write::Discard(()));
    }
    sessions.insert(session_id, row.encode()?.as_slice()).map_err(redb_error)?;
    Ok(Write::Commit(()))
}

/// The plain field updates of a patch (everything except reactivation).
fn apply_fields(row: &mut SessionRow, patch: &SessionPatch) {
    let SessionPatch {
        name,
        model_id,
        assistance,
        help_requested,
        total_tokens,
        response_ms,
        reactivate: _,
    } = patch;
    if let Some(name) = name {
        row.name.clone_from(name);
    }
    if let Some(model_id) = model_id {
        row.model_id.clone_from(model_id);
    }
    if let Some((assisted, admin_id, admin_name)) = assistance {
        // Only ever raised: it records that the session was assisted at some point.
        row.admin_assisted |= *assisted;
        row.assisting_admin_id.clone_from(admin_id);
        row.assisting_admin_name.clone_from(admin_name);
    }
    if let Some(help) = help_requested {
        row.help_requested = *help;
    }
    if let Some(tokens) = total_tokens {
        row.total_tokens = *tokens;
    }
    if let Some((max_ms, avg_ms)) = response_ms {
        row.max_response_ms = *max_ms;
        row.avg_response_ms = *avg_ms;
    }
}

/// Sets the end time and duration (overwriting an earlier end) and frees the user's active slot
/// if this session holds it. `None` for an unknown id.
pub(super) fn end(
    txn: &WriteTransaction,
    session_id: &str,
    at: UnixMillis,
    cause: EndCause,
) -> Result<Write<Option<SessionDoc>>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let Some(mut row) = read_row(&sessions, session_id)? else {
        return Ok(Write::Discard(None));
    };
    row.ended = Some(at);
    row.ended_on_request = cause == EndCause::Requested;
    row.duration_secs = at.whole_seconds_since(row.started);

    let mut active = txn.open_table(ACTIVE_BY_USER).map_err(redb_error)?;
    let holds_slot = active
        .get(row.user_id.as_str())
        .map_err(redb_error)?
        .is_some_and(|holder| holder.value() == session_id);
    if holds_slot {
        active.remove(row.user_id.as_str()).map_err(redb_error)?;
    }

    sessions.insert(session_id, row.encode()?.as_slice()).map_err(redb_error)?;
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    let stored = read_messages(&messages, session_id)?;
    Ok(Write::Commit(Some(row.into_doc(session_id.to_owned(), stored))))
}

/// One session with its messages in append order.
pub(super) fn load(db: &Database, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    load_doc(&sessions, &messages, session_id)
}

/// The last `limit` messages of a session, oldest first (a reverse range scan: only those rows
/// are read).
pub(super) fn recent_messages(
    db: &Database,
    session_id: &str,
    limit: usize,
) -> Result<Option<Vec<StoredMessage>>, StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    if sessions.get(session_id).map_err(redb_error)?.is_none() {
        return Ok(None);
    }
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    let mut out: Vec<_> =
        message_rows(&messages, session_id)?.rev().take(limit).collect::<Result<_, _>>()?;
    out.reverse();
    Ok(Some(out))
}

/// The session's message count (`next_seq`: rows are only ever appended, from seq 0) and its
/// last message's id, read in one transaction.
pub(super) fn history_mark(
    db: &Database,
    session_id: &str,
) -> Result<Option<HistoryMark>, StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let Some(row) = read_row(&sessions, session_id)? else { return Ok(None) };
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    let last = message_rows(&messages, session_id)?.next_back().transpose()?;
    Ok(Some(HistoryMark { count: row.next_seq, last_id: last.map(|m| m.id) }))
}

/// Up to `limit` of a user's sessions, newest start first (ties: by id), each with its messages.
pub(super) fn list_by_user(
    db: &Database,
    user_id: &str,
    limit: usize,
) -> Result<Vec<SessionDoc>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let txn = db.begin_read().map_err(redb_error)?;
    let by_user = txn.open_table(SESSIONS_BY_USER).map_err(redb_error)?;
    let mut ids = Vec::new();
    for entry in by_user.range((user_id, 0_u64, "")..).map_err(redb_error)? {
        let (key, _) = entry.map_err(redb_error)?;
        let (owner, _, session_id) = key.value();
        if owner != user_id || ids.len() == limit {
            break;
        }
        ids.push(session_id.to_owned());
    }

    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    let mut docs = Vec::with_capacity(ids.len());
    for session_id in ids {
        match load_doc(&sessions, &messages, &session_id)? {
            Some(doc) => docs.push(doc),
            // Index and rows are written in the same transactions; a dangling entry is a bug.
            None => {
                tracing::warn!(%session_id, "embedded store: user index names a missing session")
            }
        }
    }
    Ok(docs)
}

/// The session a share token points to.
pub(super) fn find_by_share_token(
    db: &Database,
    token: &str,
) -> Result<Option<SessionDoc>, StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    let tokens = txn.open_table(SHARE_TOKENS).map_err(redb_error)?;
    let Some(session_id) =
        tokens.get(token).map_err(redb_error)?.map(|guard| guard.value().to_owned())
    else {
        return Ok(None);
    };
    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    load_doc(&sessions, &messages, &session_id)
}

/// Gives the session `token` unless it already has one; returns the session's token either way
/// (`None` for an unknown session). A token already used by another session is a permanent error.
pub(super) fn set_share_token(
    txn: &WriteTransaction,
    session_id: &str,
    token: &str,
) -> Result<Write<Option<String>>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let Some(mut row) = read_row(&sessions, session_id)? else {
        return Ok(Write::Discard(None));
    };
    if let Some(existing) = row.share_token {
        return Ok(Write::Discard(Some(existing)));
    }
    let mut tokens = txn.open_table(SHARE_TOKENS).map_err(redb_error)?;
    claim_share_token(&mut tokens, token, session_id)?;
    row.share_token = Some(token.to_owned());
    sessions.insert(session_id, row.encode()?.as_slice()).map_err(redb_error)?;
    Ok(Write::Commit(Some(token.to_owned())))
}

/// Removes the session's share token from its row and from the token index (issue 15);
/// `None` for an unknown session, `Some(())` whether or not it had a token.
pub(super) fn clear_share_token(
    txn: &WriteTransaction,
    session_id: &str,
) -> Result<Write<Option<()>>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let Some(mut row) = read_row(&sessions, session_id)? else {
        return Ok(Write::Discard(None));
    };
    let Some(token) = row.share_token.take() else {
        return Ok(Write::Discard(Some(())));
    };
    let mut tokens = txn.open_table(SHARE_TOKENS).map_err(redb_error)?;
    tokens.remove(token.as_str()).map_err(redb_error)?;
    sessions.insert(session_id, row.encode()?.as_slice()).map_err(redb_error)?;
    Ok(Write::Commit(Some(())))
}

/// The assisting admin of `session_id` after making it `admin` if nobody (or `admin` itself)
/// assists it; `None` for an unknown session.
pub(super) fn claim_assistance(
    txn: &WriteTransaction,
    session_id: &str,
    admin: &AdminRef,
) -> Result<Write<Option<AdminRef>>, StoreError> {
    let mut sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let Some(mut row) = read_row(&sessions, session_id)? else {
        return Ok(Write::Discard(None));
    };
    if !row.assisting_admin_id.is_empty() && row.assisting_admin_id != admin.id {
        let holder =
            AdminRef { id: row.assisting_admin_id.clone(), name: row.assisting_admin_name.clone() };
        return Ok(Write::Discard(Some(holder)));
    }
    row.admin_assisted = true;
    row.assisting_admin_id.clone_from(&admin.id);
    row.assisting_admin_name.clone_from(&admin.name);
    sessions.insert(session_id, row.encode()?.as_slice()).map_err(redb_error)?;
    Ok(Write::Commit(Some(admin.clone())))
}

/// Every session row, decoded, with its id (one pass over the `sessions` table).
fn all_rows(
    sessions: &impl ReadableTable<&'static str, &'static [u8]>,
) -> Result<Vec<(String, SessionRow)>, StoreError> {
    let mut rows = Vec::new();
    for entry in sessions.iter().map_err(redb_error)? {
        let (key, bytes) = entry.map_err(redb_error)?;
        let id = key.value().to_owned();
        let row = SessionRow::decode(&id, bytes.value())?;
        rows.push((id, row));
    }
    Ok(rows)
}

/// The search key of a stored row: its `next_seq` is its number of stored messages.
fn row_key<'a>(id: &'a str, row: &'a SessionRow) -> SearchKey<'a> {
    SearchKey {
        id,
        user_id: &row.user_id,
        started: row.started,
        ended: row.ended,
        admin_assisted: row.admin_assisted,
        help_requested: row.help_requested,
        message_count: row.next_seq,
        total_tokens: row.total_tokens,
    }
}

/// The admin search: filter and sort the rows, then load messages for the page only.
pub(super) fn search(
    db: &Database,
    query: &AdminSessionQuery,
) -> Result<Vec<SessionDoc>, StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    let rows = all_rows(&sessions)?;
    let mut keys: Vec<SearchKey<'_>> = rows
        .iter()
        .map(|(id, row)| row_key(id, row))
        .filter(|key| search_matches(query, key))
        .collect();
    keys.sort_by(|a, b| search_order(query, a, b));
    let page: Vec<String> = search_page(keys, query).into_iter().map(|k| k.id.to_owned()).collect();
    drop(rows);
    let messages = txn.open_table(MESSAGES).map_err(redb_error)?;
    let mut docs = Vec::with_capacity(page.len());
    for session_id in page {
        if let Some(doc) = load_doc(&sessions, &messages, &session_id)? {
            docs.push(doc);
        }
    }
    Ok(docs)
}

/// Sessions started within `from..=to`, without their messages.
pub(super) fn started_between(
    db: &Database,
    from: UnixMillis,
    to: UnixMillis,
) -> Result<Vec<SessionDoc>, StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    let sessions = txn.open_table(SESSIONS).map_err(redb_error)?;
    Ok(all_rows(&sessions)?
        .into_iter()
        .filter(|(_, row)| row.started >= from && row.started <= to)
        .map(|(id, row)| row.into_doc(id, Vec::new()))
        .collect())
}

/// A read transaction that opens the sessions table: proves the file is readable.
pub(super) fn ping(db: &Database) -> Result<(), StoreError> {
    let txn = db.begin_read().map_err(redb_error)?;
    txn.open_table(SESSIONS).map_err(redb_error)?;
    Ok(())
}

// ---- helpers shared by the operations ----

/// Reads and decodes one session row.
fn read_row(
    sessions: &impl ReadableTable<&'static str, &'static [u8]>,
    session_id: &str,
) -> Result<Option<SessionRow>, StoreError> {
    match sessions.get(session_id).map_err(redb_error)? {
        Some(bytes) => SessionRow::decode(session_id, bytes.value()).map(Some),
        None => Ok(None),
    }
}

/// A session's messages in seq order.
fn read_messages(
    messages: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    session_id: &str,
) -> Result<Vec<StoredMessage>, StoreError> {
    message_rows(messages, session_id)?.collect()
}

/// A session's message rows in seq order (or from the end, reversed), decoded as they are read.
fn message_rows<'a>(
    messages: &'a impl ReadableTable<(&'static str, u64), &'static [u8]>,
    session_id: &'a str,
) -> Result<impl DoubleEndedIterator<Item = Result<StoredMessage, StoreError>> + 'a, StoreError> {
    let range = messages.range((session_id, 0_u64)..=(session_id, u64::MAX)).map_err(redb_error)?;
    Ok(range.map(move |entry| {
        let (_, bytes) = entry.map_err(redb_error)?;
        MessageRow::decode(session_id, bytes.value())
    }))
}

/// Row plus messages, as the port's document.
fn load_doc(
    sessions: &impl ReadableTable<&'static str, &'static [u8]>,
    messages: &impl ReadableTable<(&'static str, u64), &'static [u8]>,
    session_id: &str,
) -> Result<Option<SessionDoc>, StoreError> {
    let Some(row) = read_row(sessions, session_id)? else {
        return Ok(None);
    };
    let stored = read_messages(messages, session_id)?;
    Ok(Some(row.into_doc(session_id.to_owned(), stored)))
}

/// The id of the user's active session if it is a session other than `session_id`.
///
/// The slot and the rows change in the same transactions, so the holder is always an active row.
/// Should that ever not hold (a bug), the stale slot is treated as free — and overwritten by the
/// caller — rather than locking the user out of new sessions forever.
fn active_holder(
    active: &Table<&'static str, &'static str>,
    sessions: &impl ReadableTable<&'static str, &'static [u8]>,
    user_id: &str,
    session_id: &str,
) -> Result<Option<String>, StoreError> {
    let Some(holder) =
        active.get(user_id).map_err(redb_error)?.map(|guard| guard.value().to_owned())
    else {
        return Ok(None);
    };
    if holder == session_id {
        return Ok(None);
    }
    match read_row(sessions, &holder)? {
        Some(row) if row.ended.is_none() => Ok(Some(holder)),
        _ => {
            tracing::warn!(
                session_id = %holder,
                "embedded store: active slot named a missing or ended session; freeing it"
            );
            Ok(None)
        }
    }
}

/// Points `token` at `session_id`; refuses a token another session already uses.
fn claim_share_token(
    tokens: &mut Table<&'static str, &'static str>,
    token: &str,
    session_id: &str,
) -> Result<(), StoreError> {
    let owner = tokens.get(token).map_err(redb_error)?.map(|guard| guard.value().to_owned());
    match owner {
        Some(owner) if owner != session_id => {
            Err(StoreError::Permanent("share token already in use".into()))
        }
        Some(_) => Ok(()),
        None => {
            tokens.insert(token, session_id).map_err(redb_error)?;
            Ok(())
        }
    }
}

/// Stores `msg` as the session's next message unless its id is already stored; updates the row's
/// `next_seq` and `last_activity` (never moving it backwards). Returns whether it was stored.
fn insert_message(
    messages: &mut Table<(&'static str, u64), &'static [u8]>,
    ids: &mut Table<(&'static str, &'static str), u64>,
    session_id: &str,
    row: &mut SessionRow,
    msg: &StoredMessage,
) -> Result<bool, StoreError> {
    let seen = ids.get((session_id, msg.id.as_str())).map_err(redb_error)?.is_some();
    if seen {
        return Ok(false);
    }
    let seq = row.next_seq;
    messages.insert((session_id, seq), MessageRow::encode(msg)?.as_slice()).map_err(redb_error)?;
    ids.insert((session_id, msg.id.as_str()), seq).map_err(redb_error)?;
    row.next_seq = seq.saturating_add(1);
    row.last_activity = Some(row.last_activity.map_or(msg.ts, |last| last.max(msg.ts)));
    Ok(true)
}
