//! Group commit for the embedded store: many writes, one fsync.
//!
//! Every write transaction commits with `Durability::None` (redb keeps it, readers see it, but
//! nothing is fsync'd), then waits here until a later `Durability::Immediate` commit has made it
//! durable. One flusher thread makes those durable commits — an empty transaction, which persists
//! every earlier non-durable one — as soon as anything is waiting, so under load each fsync
//! covers every write that committed while the previous fsync ran. A write is acknowledged only
//! after its flush, so "a write that returned `Ok` survives a crash" still holds; one write alone
//! costs what it did before (one fsync), many concurrent writes share them.
//!
//! Drive it like this: after a write transaction ends (committed or aborted), call
//! [`GroupCommit::written`] and await [`GroupCommit::durable`] with the sequence number it
//! returns. An aborted transaction waits too: what it read (say, an existing message id that made
//! it a no-op) may itself be a write that is not yet durable.
//!
//! The flusher is an OS thread, not a task: redb's commit blocks on fsync, and adapters may block
//! (STYLE.md §7). It holds its own handle to the database and is stopped and joined on drop, so
//! the file lock is released when the store is.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;

use redb::{Database, Durability};
use tokio::sync::watch;

use super::error::redb_error;
use crate::engine::store::StoreError;

/// How far the flusher got: every write numbered `<= durable` is on disk; writes numbered
/// `<= failed` (and above `durable`) were in a flush that failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Flushed {
    durable: u64,
    failed: u64,
}

/// What writers and the flusher share under the lock.
#[derive(Debug, Default)]
struct Pending {
    /// Sequence number of the last write that ended.
    written: u64,
    /// The store is being dropped: flush what is left, then stop.
    closing: bool,
}

#[derive(Debug, Default)]
struct Shared {
    pending: Mutex<Pending>,
    wake: Condvar,
}

/// The flusher thread and the barrier writers wait on. Dropping it flushes what is pending and
/// joins the thread.
#[derive(Debug)]
pub(super) struct GroupCommit {
    shared: Arc<Shared>,
    flushed: watch::Receiver<Flushed>,
    thread: Option<JoinHandle<()>>,
}

impl GroupCommit {
    /// Starts the flusher for `db`.
    pub(super) fn start(db: Arc<Database>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let (tx, flushed) = watch::channel(Flushed::default());
        let thread = {
            let shared = Arc::clone(&shared);
            // adapters may block: this thread exists to wait on fsync
            #[allow(clippy::disallowed_methods)]
            std::thread::Builder::new()
                .name("chatbox-store-flush".into())
                .spawn(move || flusher(&db, &shared, &tx))?
        };
        Ok(Self { shared, flushed, thread: Some(thread) })
    }

    /// Records that one write transaction ended and returns its sequence number.
    pub(super) fn written(&self) -> u64 {
        let seq = {
            let mut pending = self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            pending.written += 1;
            pending.written
        };
        self.shared.wake.notify_one();
        seq
    }

    /// The sequence number of the last write that ended (for [`GroupCommit::durable`] in a flush).
    pub(super) fn last_written(&self) -> u64 {
        self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).written
    }

    /// Waits until write `seq` is durable; an error if the flush that carried it failed.
    pub(super) async fn durable(&self, seq: u64) -> Result<(), StoreError> {
        let mut rx = self.flushed.clone();
        let state = match rx.wait_for(|f| f.durable >= seq || f.failed >= seq).await {
            Ok(state) => *state,
            // The sender lives in the flusher, which outlives every borrow of the store.
            Err(_) => return Err(StoreError::Transient("embedded store: flusher stopped".into())),
        };
        if state.durable >= seq {
            Ok(())
        } else {
            // The data may still reach the disk with a later flush; every write is idempotent,
            // so the caller's retry is safe either way.
            Err(StoreError::Transient("embedded store: flush to disk failed".into()))
        }
    }
}

impl Drop for GroupCommit {
    fn drop(&mut self) {
        self.shared.pending.lock().unwrap_or_else(PoisonError::into_inner).closing = true;
        self.shared.wake.notify_one();
        if let Some(thread) = self.thread.take() {
            // A panicked flusher has nothing left to release; its database handle is gone.
            let _ = thread.join();
        }
    }
}

/// The flusher loop: wait for writes, make them durable with one empty immediate commit, publish.
fn flusher(db: &Database, shared: &Shared, tx: &watch::Sender<Flushed>) {
    let mut flushed = Flushed::default();
    loop {
        let target = {
            let mut pending = shared.pending.lock().unwrap_or_else(PoisonError::into_inner);
            while pending.written == flushed.durable.max(flushed.failed) && !pending.closing {
                pending = shared.wake.wait(pending).unwrap_or_else(PoisonError::into_inner);
            }
            if pending.written == flushed.durable.max(flushed.failed) {
                return; // closing, and nothing left to flush
            }
            pending.written
        };
        match flush(db) {
            Ok(()) => flushed.durable = target,
            Err(error) => {
                tracing::error!(%error, "embedded store: flush to disk failed");
                flushed.failed = target;
            }
        }
        tx.send_replace(flushed);
    }
}

/// One empty transaction with immediate durability: persists every earlier non-durable commit.
pub(super) fn flush(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(redb_error)?;
    txn.set_durability(Durability::Immediate);
    txn.commit().map_err(redb_error)
}
