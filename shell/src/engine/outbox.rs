//! The durable outbox (seed fix #9, "no acknowledged message is ever lost"): a store write that
//! still fails transiently after core's retry schedule is kept in an [`Outbox`] and acknowledged;
//! the drain task applies the kept writes to the store, oldest first, with capped exponential
//! backoff while the store is down. While anything waits in the outbox, new writes queue behind
//! it, so a session's messages reach the store in the order they were acknowledged.
//!
//! How to drive it: the engine calls [`Engine::persist`] for every fire-and-forget write
//! (message appends, session patches, idle ends); the server spawns [`run`] once. The port is
//! [`Outbox`]: [`MemoryOutbox`] here (tests, simulator), a redb file in the data directory in the
//! binary (`adapters::outbox`), so a restart replays what a crash left behind.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chatbox_core::retry::ErrorClass;
use chatbox_core::UnixMillis;
use serde::{Deserialize, Serialize};

use super::hub::Engine;
use super::store::{SessionPatch, SessionStore, StoreError, StoredMessage};

/// A store write that can wait: it returns nothing the caller needs, and applying it twice
/// stores it once (the store port's idempotency), so a replay after a crash is safe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum PendingWrite {
    /// [`SessionStore::append_message`].
    Append {
        /// Session id.
        session_id: String,
        /// The message (plaintext; the store encrypts on the way in).
        message: StoredMessage,
    },
    /// [`SessionStore::update`].
    Update {
        /// Session id.
        session_id: String,
        /// The change.
        patch: SessionPatch,
    },
    /// [`SessionStore::end`] (the result is not needed).
    End {
        /// Session id.
        session_id: String,
        /// End time.
        at: UnixMillis,
    },
}

impl PendingWrite {
    /// The session the write belongs to.
    pub fn session_id(&self) -> &str {
        match self {
            PendingWrite::Append { session_id, .. }
            | PendingWrite::Update { session_id, .. }
            | PendingWrite::End { session_id, .. } => session_id,
        }
    }

    /// The operation name used in logs and metrics.
    pub fn operation(&self) -> &'static str {
        match self {
            PendingWrite::Append { .. } => "append_message",
            PendingWrite::Update { .. } => "update",
            PendingWrite::End { .. } => "end_session",
        }
    }

    /// Applies the write to `store` once.
    pub async fn apply(&self, store: &dyn SessionStore) -> Result<(), StoreError> {
        match self {
            PendingWrite::Append { session_id, message } => {
                store.append_message(session_id, message).await
            }
            PendingWrite::Update { session_id, patch } => store.update(session_id, patch).await,
            PendingWrite::End { session_id, at } => store.end(session_id, *at).await.map(drop),
        }
    }
}

/// Why the outbox could not take or give an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutboxError {
    /// It already holds its maximum number of entries (`OUTBOX_MAX_ENTRIES`).
    #[error("the outbox is full ({0} entries)")]
    Full(usize),
    /// Its storage failed.
    #[error("outbox storage failed: {0}")]
    Io(String),
}

/// Durable FIFO of [`PendingWrite`]s. `push` returns only once the entry survives a crash;
/// entries come out in push order with increasing sequence numbers.
#[async_trait]
pub trait Outbox: Send + Sync + fmt::Debug {
    /// Appends `write` at the back.
    async fn push(&self, write: &PendingWrite) -> Result<(), OutboxError>;
    /// The oldest entry and its sequence number, without removing it.
    async fn front(&self) -> Result<Option<(u64, PendingWrite)>, OutboxError>;
    /// Removes entry `seq` (removing an absent entry is not an error).
    async fn remove(&self, seq: u64) -> Result<(), OutboxError>;
    /// The waiting writes of one session, oldest first (O(entries): used only while the outbox
    /// is not empty, to complete a conversation's history).
    async fn pending(&self, session_id: &str) -> Result<Vec<PendingWrite>, OutboxError>;
    /// Entries waiting (kept in memory, cheap).
    fn len(&self) -> usize;
    /// Whether nothing waits.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The most entries it holds.
    fn capacity(&self) -> usize;
}

/// An in-memory [`Outbox`] (unit tests and the simulator, where a "crash" is not simulated).
#[derive(Debug)]
pub struct MemoryOutbox {
    entries: Mutex<VecDeque<(u64, PendingWrite)>>,
    next: AtomicU64,
    len: AtomicUsize,
    capacity: usize,
}

impl MemoryOutbox {
    /// An empty outbox holding at most `capacity` entries.
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::default(),
            next: AtomicU64::new(1),
            len: AtomicUsize::new(0),
            capacity,
        }
    }

    /// Every waiting entry, oldest first (for checks).
    pub fn snapshot(&self) -> Vec<PendingWrite> {
        self.lock().iter().map(|(_, w)| w.clone()).collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, PendingWrite)>> {
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl Outbox for MemoryOutbox {
    async fn push(&self, write: &PendingWrite) -> Result<(), OutboxError> {
        let mut entries = self.lock();
        if entries.len() >= self.capacity {
            return Err(OutboxError::Full(self.capacity));
        }
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        entries.push_back((seq, write.clone()));
        self.len.store(entries.len(), Ordering::Relaxed);
        Ok(())
    }

    async fn front(&self) -> Result<Option<(u64, PendingWrite)>, OutboxError> {
        Ok(self.lock().front().cloned())
    }

    async fn remove(&self, seq: u64) -> Result<(), OutboxError> {
        let mut entries = self.lock();
        entries.retain(|(s, _)| *s != seq);
        self.len.store(entries.len(), Ordering::Relaxed);
        Ok(())
    }

    async fn pending(&self, session_id: &str) -> Result<Vec<PendingWrite>, OutboxError> {
        Ok(self
            .lock()
            .iter()
            .filter(|(_, w)| w.session_id() == session_id)
            .map(|(_, w)| w.clone())
            .collect())
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

/// Where an acknowledged write went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persisted {
    /// The store has it.
    Stored,
    /// The outbox has it; the drain task will store it.
    Queued,
}

impl Engine {
    /// Makes `write` durable: in the store (with core's retry schedule), or — while the store
    /// fails transiently, or while older writes still wait — in the outbox. `Err` means the write
    /// is **not** durable (a permanent store error, or the outbox is full or failing): the caller
    /// must not acknowledge it.
    pub async fn persist(&self, write: PendingWrite) -> Result<Persisted, StoreError> {
        if self.outbox.is_empty() {
            let store = Arc::clone(&self.store);
            match self.with_store_retry(write.operation(), || write.apply(store.as_ref())).await {
                Ok(()) => return Ok(Persisted::Stored),
                Err(error) if error.class() == ErrorClass::Permanent => return Err(error),
                Err(error) => {
                    tracing::warn!(
                        session_id = write.session_id(),
                        operation = write.operation(),
                        %error,
                        "store unavailable; keeping the write in the outbox"
                    );
                }
            }
        }
        self.queue(&write).await.map(|()| Persisted::Queued)
    }

    async fn queue(&self, write: &PendingWrite) -> Result<(), StoreError> {
        match self.outbox.push(write).await {
            Ok(()) => {
                self.metrics.set_outbox_depth(self.outbox.len());
                self.outbox_wake.notify_one();
                Ok(())
            }
            Err(error) => {
                tracing::error!(
                    session_id = write.session_id(),
                    operation = write.operation(),
                    %error,
                    "write not durable: the outbox refused it"
                );
                Err(StoreError::Permanent(error.to_string()))
            }
        }
    }

    /// Applies waiting outbox entries, oldest first, until the outbox is empty or the store
    /// fails transiently (returns that error). Permanent failures drop the entry with an error
    /// log and a metric: retrying them cannot help.
    pub async fn drain_outbox_once(&self) -> Result<usize, StoreError> {
        let mut applied = 0;
        loop {
            let front =
                self.outbox.front().await.map_err(|e| StoreError::Transient(e.to_string()))?;
            let Some((seq, write)) = front else { return Ok(applied) };
            let began = self.clock.now();
            let result = write.apply(self.store.as_ref()).await;
            self.metrics.observe_store_operation(write.operation(), self.clock.now() - began);
            match result {
                Ok(()) => applied += 1,
                Err(error) if error.class() == ErrorClass::Transient => return Err(error),
                Err(error) => {
                    self.metrics.outbox_dropped.inc();
                    tracing::error!(
                        session_id = write.session_id(),
                        operation = write.operation(),
                        %error,
                        "outbox entry cannot be applied; dropped"
                    );
                }
            }
            self.outbox.remove(seq).await.map_err(|e| StoreError::Transient(e.to_string()))?;
            self.metrics.set_outbox_depth(self.outbox.len());
        }
    }
}

impl Engine {
    /// A session's stored messages followed by those still waiting in the outbox (acknowledged,
    /// not yet in the store), so a reply during a store outage still sees the whole conversation.
    /// `None` when neither the store nor the outbox could be read. Only the end of the stored
    /// conversation is read: enough to hold `wanted` messages with text (see `recent_history`).
    pub async fn conversation_messages(
        &self,
        session: &str,
        wanted: usize,
    ) -> Option<Vec<StoredMessage>> {
        // The read has its own short budget (`STORE_HISTORY_READ_TIMEOUT`, issue 16): past it the
        // reply goes on with what this instance has rather than waiting on a store that is down.
        let budget = self.config.storage.history_read_timeout;
        let read = tokio::time::timeout(budget, self.recent_history(session, wanted)).await;
        let (mut messages, stored_ok) = match read {
            Ok(Ok(messages)) => (messages.unwrap_or_default(), true),
            Ok(Err(_)) => (Vec::new(), false),
            Err(_) => {
                tracing::warn!(session_id = session, ?budget, "history read over budget");
                (Vec::new(), false)
            }
        };
        if self.outbox.is_empty() {
            return stored_ok.then_some(messages);
        }
        let pending = match self.outbox.pending(session).await {
            Ok(pending) => pending,
            Err(_) if stored_ok => return Some(messages),
            Err(_) => return None,
        };
        for write in pending {
            if let PendingWrite::Append { message, .. } = write {
                if !messages.iter().any(|m| m.id == message.id) {
                    messages.push(message);
                }
            }
        }
        Some(messages)
    }
}

impl Engine {
    /// The end of a session's stored conversation: enough of its last messages to hold `wanted`
    /// with content (messages without text, such as files, are not sent to the model), or all
    /// of them. Reads `wanted` rows first and twice as many each time that falls short, so a
    /// session of text messages costs one read of `wanted` rows however long it is.
    async fn recent_history(
        &self,
        session: &str,
        wanted: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let wanted = wanted.max(1);
        let mut limit = wanted;
        loop {
            let read = self
                .with_store_retry("load_history", || self.store.recent_messages(session, limit))
                .await?;
            let Some(messages) = read else { return Ok(None) };
            let with_text = messages.iter().filter(|m| super::history::sent_to_model(m)).count();
            if with_text >= wanted || messages.len() < limit {
                return Ok(Some(messages));
            }
            limit = limit.saturating_mul(2);
        }
    }
}

/// The drain task: applies outbox entries whenever there are any, backing off (core's retry
/// schedule, restarted after each success) while the store fails. Runs until the shutdown
/// deadline forces connections closed; entries left then stay in the outbox for the next start.
pub async fn run(engine: Arc<Engine>) {
    let mut force = engine.force_signal();
    let mut failures: u32 = 0;
    loop {
        if engine.outbox.is_empty() {
            failures = 0;
            tokio::select! {
                _ = engine.outbox_wake.notified() => {}
                _ = super::supervisor::signalled(&mut force) => return,
            }
            continue;
        }
        match engine.drain_outbox_once().await {
            Ok(applied) => {
                if applied > 0 {
                    tracing::info!(applied, "outbox drained");
                }
                failures = 0;
            }
            Err(error) => {
                failures = failures.saturating_add(1);
                let delay = engine.store_retry.base_delay(failures);
                tracing::warn!(%error, ?delay, waiting = engine.outbox.len(), "outbox drain paused");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = super::supervisor::signalled(&mut force) => return,
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn append(n: u32) -> PendingWrite {
        PendingWrite::Append {
            session_id: "s".into(),
            message: StoredMessage {
                id: format!("m{n}"),
                content: format!("hello {n}"),
                ts: UnixMillis(i64::from(n)),
                sender: "user".into(),
                file_id: String::new(),
                file_url: String::new(),
                meta: Default::default(),
            },
        }
    }

    #[tokio::test]
    async fn memory_outbox_is_a_bounded_fifo() {
        let outbox = MemoryOutbox::new(2);
        outbox.push(&append(1)).await.unwrap();
        outbox.push(&append(2)).await.unwrap();
        assert_eq!(outbox.push(&append(3)).await, Err(OutboxError::Full(2)));
        let (first, write) = outbox.front().await.unwrap().unwrap();
        assert_eq!(write, append(1));
        outbox.remove(first).await.unwrap();
        outbox.remove(first).await.unwrap();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.front().await.unwrap().map(|(_, w)| w), Some(append(2)));
    }

    #[test]
    fn pending_writes_round_trip_through_json() {
        let writes = vec![
            append(7),
            PendingWrite::Update {
                session_id: "s".into(),
                patch: SessionPatch { name: Some("n".into()), ..Default::default() },
            },
            PendingWrite::End { session_id: "s".into(), at: UnixMillis(5) },
        ];
        for write in writes {
            let json = serde_json::to_string(&write).unwrap();
            assert_eq!(serde_json::from_str::<PendingWrite>(&json).unwrap(), write, "{json}");
        }
    }
}
