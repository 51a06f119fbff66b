//! The embedded store's single writer: every write runs on one OS thread, and the writes waiting
//! together share one transaction and one fsync (group commit).
//!
//! redb runs one write transaction at a time anyway, and each commit costs a page-tree flush plus
//! an fsync. So writes arrive on a channel; the thread takes every write that is waiting (up to
//! [`STORE_WRITE_BATCH`]), applies them in order inside one transaction committed with
//! `Durability::Immediate`, and only then answers each caller: "a write that returned `Ok`
//! survives a crash" still holds, one write alone costs what it did before, and concurrent writes
//! share the commit.
//!
//! Under load the writer also waits a little for company before committing
//! ([`store_commit_linger`]): when its previous commit carried more than one write, it holds the
//! next batch open for the configured linger (`STORE_COMMIT_LINGER`, default none) or until the
//! batch is full, because every commit costs its page writes and its fsync whatever its size. A
//! lone write, or a caller writing in sequence, commits at once as before.
//!
//! Each write must stay atomic on its own, and redb cannot roll back part of a transaction. So
//! when any write of a batch fails, the batch's transaction is dropped (nothing of it is written)
//! and its writes are applied again one by one, each in its own transaction committed without an
//! fsync (`Durability::None`), then made durable together by one empty immediate commit. Failures
//! are rare (an unknown session, a full disk), so the common case is one transaction per batch.
//! The write bodies are plain functions of the transaction, so applying one twice (first in the
//! dropped batch, then alone) is the same as applying it once.
//!
//! Drive it like this: [`Writer::start`] after the tables exist, [`Writer::write`] for each write
//! (a function of the write transaction), and drop it to stop: the thread finishes what is
//! queued, and is joined, so the database file is released when the store is.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use chatbox_core::budgets::{store_commit_linger, STORE_WRITE_BATCH};
use redb::{Database, Durability, WriteTransaction};
use tokio::sync::oneshot;

use super::error::redb_error;
use super::ops::Write;
use crate::engine::store::StoreError;

/// One queued write: applied (perhaps twice, see the module docs), then answered.
trait Job: Send {
    /// Applies the write inside `txn`; keeps its result; whether it asks for a commit.
    fn apply(&mut self, txn: &WriteTransaction) -> Applied;
    /// Answers the caller with the kept result, or `failed` when the write is not durable.
    fn answer(self: Box<Self>, failed: Option<StoreError>);
}

/// What applying one write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Applied {
    Changed,
    Unchanged,
    Failed,
}

/// A write body and where its answer goes.
struct Pending<T, F> {
    body: F,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Pending<T, F>
where
    T: Send,
    F: FnMut(&WriteTransaction) -> Result<Write<T>, StoreError> + Send,
{
    fn apply(&mut self, txn: &WriteTransaction) -> Applied {
        let body = &mut self.body;
        let outcome = catch_unwind(AssertUnwindSafe(|| body(txn))).unwrap_or_else(|_| {
            Err(StoreError::Permanent("embedded store: operation panicked".into()))
        });
        let (applied, result) = match outcome {
            Ok(Write::Commit(value)) => (Applied::Changed, Ok(value)),
            Ok(Write::Discard(value)) => (Applied::Unchanged, Ok(value)),
            Err(error) => (Applied::Failed, Err(error)),
        };
        self.result = Some(result);
        applied
    }

    fn answer(self: Box<Self>, failed: Option<StoreError>) {
        let result = match (failed, self.result) {
            (Some(error), _) => Err(error),
            (None, Some(result)) => result,
            (None, None) => Err(StoreError::Permanent("embedded store: write not applied".into())),
        };
        // The caller may have gone away (cancelled); the write stands either way.
        let _ = self.reply.send(result);
    }
}

/// What the writer has done so far: how writes shared commits.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct WriteStats {
    /// Batches taken off the queue (each one transaction, or one by one after a failure).
    pub batches: u64,
    /// Writes in those batches.
    pub writes: u64,
    /// Batches held open for company ([`store_commit_linger`]).
    pub lingered: u64,
}

/// The counters behind [`WriteStats`], written by the writer thread.
#[derive(Debug, Default)]
struct Counters {
    batches: AtomicU64,
    writes: AtomicU64,
    lingered: AtomicU64,
}

/// The writer thread and the queue to it. Dropping it drains the queue and joins the thread.
#[derive(Debug)]
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
    counters: Arc<Counters>,
}

impl Writer {
    /// Starts the writer thread for `db`; under load a batch waits up to `linger` for company.
    pub(super) fn start(db: Arc<Database>, linger: Duration) -> std::io::Result<Self> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let counters = Arc::new(Counters::default());
        let kept = Arc::clone(&counters);
        // adapters may block: this thread exists to wait on redb and fsync
        #[allow(clippy::disallowed_methods)]
        let thread = std::thread::Builder::new()
            .name("chatbox-store-writer".into())
            .spawn(move || run(&db, &jobs, &kept, linger))?;
        Ok(Self { queue: Some(queue), thread: Some(thread), counters })
    }

    /// How writes have shared commits so far.
    pub(super) fn stats(&self) -> WriteStats {
        WriteStats {
            batches: self.counters.batches.load(Ordering::Relaxed),
            writes: self.counters.writes.load(Ordering::Relaxed),
            lingered: self.counters.lingered.load(Ordering::Relaxed),
        }
    }

    /// Applies `body` as one atomic write on the writer thread and returns its result once it
    /// is durable (or the error that kept it from being so).
    pub(super) async fn write<T, F>(&self, body: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnMut(&WriteTransaction) -> Result<Write<T>, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let job: Box<dyn Job> = Box::new(Pending { body, result: None, reply });
        let stopped = || StoreError::Transient("embedded store: writer stopped".into());
        self.queue.as_ref().ok_or_else(stopped)?.send(job).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Waits until every write queued so far is durable.
    pub(super) async fn flush(&self) -> Result<(), StoreError> {
        self.write(|_| Ok(Write::Discard(()))).await
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has applied what is queued.
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            // A panicked writer has nothing left to release; its database handle is gone.
            let _ = thread.join();
        }
    }
}

/// The writer loop: take what is waiting (waiting a little for more under load), apply it as
/// one batch, answer.
fn run(db: &Database, jobs: &mpsc::Receiver<Box<dyn Job>>, counters: &Counters, linger: Duration) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(STORE_WRITE_BATCH);
    let mut previous = 0;
    while let Ok(first) = jobs.recv() {
        batch.push(first);
        take_waiting(jobs, &mut batch);
        let wait = store_commit_linger(previous, linger);
        if !wait.is_zero() && batch.len() < STORE_WRITE_BATCH {
            counters.lingered.fetch_add(1, Ordering::Relaxed);
            linger_for_company(jobs, &mut batch, wait);
        }
        previous = batch.len();
        counters.batches.fetch_add(1, Ordering::Relaxed);
        counters.writes.fetch_add(batch.len() as u64, Ordering::Relaxed);
        let failed = match apply_together(db, &mut batch) {
            Ok(()) => None,
            Err(Retry::OneByOne) => apply_one_by_one(db, &mut batch).err(),
            Err(Retry::Failed(error)) => Some(error),
        };
        if let Some(error) = &failed {
            tracing::error!(%error, writes = batch.len(), "embedded store: writes not durable");
        }
        for job in batch.drain(..) {
            job.answer(failed.as_ref().map(|_| {
                // The data may still reach the disk later; every write is idempotent, so the
                // caller's retry is safe either way.
                StoreError::Transient("embedded store: write not durable".into())
            }));
        }
    }
}

/// Adds the writes already waiting, up to a full batch.
fn take_waiting(jobs: &mpsc::Receiver<Box<dyn Job>>, batch: &mut Vec<Box<dyn Job>>) {
    while batch.len() < STORE_WRITE_BATCH {
        match jobs.try_recv() {
            Ok(job) => batch.push(job),
            Err(_) => break,
        }
    }
}

/// Adds the writes that arrive within `linger`, until the batch is full or the queue closes.
fn linger_for_company(
    jobs: &mpsc::Receiver<Box<dyn Job>>,
    batch: &mut Vec<Box<dyn Job>>,
    linger: Duration,
) {
    // The writer is an OS thread outside the simulated engine; it times its own wait.
    #[allow(clippy::disallowed_methods)]
    let until = Instant::now() + linger;
    while batch.len() < STORE_WRITE_BATCH {
        #[allow(clippy::disallowed_methods)]
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        match jobs.recv_timeout(left) {
            Ok(job) => {
                batch.push(job);
                take_waiting(jobs, batch);
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return,
        }
    }
}

/// Why a batch was not committed as one transaction.
enum Retry {
    /// A write failed: apply each on its own so the others still land.
    OneByOne,
    /// The transaction itself failed (begin or commit): nothing landed.
    Failed(StoreError),
}

/// Applies every write in one immediate transaction; dropped (nothing written) if any fails.
fn apply_together(db: &Database, batch: &mut [Box<dyn Job>]) -> Result<(), Retry> {
    let mut txn = db.begin_write().map_err(|e| Retry::Failed(redb_error(e)))?;
    txn.set_durability(Durability::Immediate);
    let mut changed = false;
    for job in batch.iter_mut() {
        match job.apply(&txn) {
            Applied::Failed => return Err(Retry::OneByOne), // dropping `txn` aborts it
            Applied::Changed => changed = true,
            Applied::Unchanged => {}
        }
    }
    if changed {
        txn.commit().map_err(|e| Retry::Failed(redb_error(e)))
    } else {
        // Nothing to write (repeated writes, a flush request): every earlier batch was durable
        // before it was answered, so there is nothing to sync either.
        txn.abort().map_err(|e| Retry::Failed(redb_error(e)))
    }
}

/// Applies each write in its own transaction without an fsync, then one flush for all.
fn apply_one_by_one(db: &Database, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    for job in batch.iter_mut() {
        let mut txn = db.begin_write().map_err(redb_error)?;
        txn.set_durability(Durability::None);
        match job.apply(&txn) {
            Applied::Changed => txn.commit().map_err(redb_error)?,
            Applied::Unchanged | Applied::Failed => txn.abort().map_err(redb_error)?,
        }
    }
    flush(db)
}

/// One empty transaction with immediate durability: persists every earlier non-durable commit.
fn flush(db: &Database) -> Result<(), StoreError> {
    let mut txn = db.begin_write().map_err(redb_error)?;
    txn.set_durability(Durability::Immediate);
    txn.commit().map_err(redb_error)
}
