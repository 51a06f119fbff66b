//! How the embedded store's failures become the port's [`StoreError`], classified for core's
//! retry schedule.
//!
//! redb has almost no transient failures: writers queue on a lock instead of failing, and after
//! an I/O error it refuses every transaction (`PreviousIo`) until the file is reopened, so
//! retrying the same handle cannot help. The classification is therefore:
//!
//! * **Transient** — `DatabaseAlreadyOpen` (another process, typically the previous instance
//!   still shutting down, holds the file lock; it goes away when that process exits; at start-up,
//!   where nothing retries, `EmbeddedStore::open` reports it as a permanent error naming the
//!   file instead), and a
//!   blocking task that was cancelled before it started (the runtime is shutting down; nothing
//!   was written, and every write is idempotent anyway).
//! * **Permanent** — everything else: corruption, I/O, a full value, an unexpected table type,
//!   undecodable rows, a panicked blocking task, and the store's own refusals (unknown session,
//!   another active session).

use std::fmt;

use crate::engine::store::StoreError;

/// Maps any redb error (they all convert into [`redb::Error`]).
pub(super) fn redb_error(err: impl Into<redb::Error>) -> StoreError {
    let err: redb::Error = err.into();
    match err {
        redb::Error::DatabaseAlreadyOpen => StoreError::Transient(
            "embedded store: database file is locked by another process".into(),
        ),
        other => StoreError::Permanent(format!("embedded store: {other}")),
    }
}

/// A row that does not decode. Names what and which session, never the row's content.
pub(super) fn corrupt(what: &str, session_id: &str, err: &dyn fmt::Display) -> StoreError {
    StoreError::Permanent(format!("embedded store: corrupt {what} {session_id}: {err}"))
}

/// The session named by an update does not exist.
pub(super) fn not_found() -> StoreError {
    StoreError::Permanent("session not found".into())
}

/// A blocking task that did not finish.
pub(super) fn join_error(err: &tokio::task::JoinError) -> StoreError {
    if err.is_cancelled() {
        StoreError::Transient("embedded store: operation cancelled before it ran".into())
    } else {
        StoreError::Permanent("embedded store: operation panicked".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_locked_file_is_transient() {
        assert!(matches!(
            redb_error(redb::DatabaseError::DatabaseAlreadyOpen),
            StoreError::Transient(_)
        ));
        assert!(matches!(
            redb_error(redb::StorageError::Corrupted("x".into())),
            StoreError::Permanent(_)
        ));
        assert!(matches!(redb_error(redb::StorageError::PreviousIo), StoreError::Permanent(_)));
    }
}
