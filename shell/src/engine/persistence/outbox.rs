//! The durable outbox (seed fix #9, "no acknowledged message is ever lost"): a store write that
//! still fails transiently after core's retry schedule is kept in an [`Outbox`] and acknowledged;
//! the drain task applies the kept writes to the store, oldest first, with capped exponential
//! backoff while the store is down. While anything waits in the outbox, new writes queue behind
//! it, so a session's messages reach the store in the order they were acknowledged.
//!
//! How to drive it: the persistence service (`super::Persistence`) calls the port for every
//! fire-and-forget write (message appends, session patches, idle ends) and runs the drain task.
//! The port is
//! [`Outbox`]: [`MemoryOutbox`] here (tests, simulator), a redb file in the data directory in the
//! binary (`adapters::outbox`), so a restart replays what a crash left behind.

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Mutex;

use async_trait::async_trait;
use chatbox_core::session::EndCause;
use chatbox_core::UnixMillis;
use serde::{Deserialize, Serialize};

use crate::engine::store::{SessionPatch, SessionStore, StoreError, StoredMessage};

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
    /// [`SessionStore::append_message_with`]: a reply and the statistics it changed.
    AppendWith {
        /// Session id.
        session_id: String,
        /// The message (plaintext; the store encrypts on the way in).
        message: StoredMessage,
        /// The change that goes with it.
        patch: SessionPatch,
    },
    /// [`SessionStore::update`].
    Update {
        /// Session id.
        session_id: String,
        /// The change.
        patch: SessionPatch,
    },
    /// [`SessionStore::end`] (the result is not needed) for idleness; with `quiet_since`,
    /// [`SessionStore::end_if_idle`].
    End {
        /// Session id.
        session_id: String,
        /// End time.
        at: UnixMillis,
        /// End only if no message was stored after this (entries of older versions: always).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        quiet_since: Option<UnixMillis>,
    },
}

impl PendingWrite {
    /// The session the write belongs to.
    pub fn session_id(&self) -> &str {
        match self {
            PendingWrite::Append { session_id, .. }
            | PendingWrite::AppendWith { session_id, .. }
            | PendingWrite::Update { session_id, .. }
            | PendingWrite::End { session_id, .. } => session_id,
        }
    }

    /// Whether the write appends a message (the only writes that move a session's history
    /// mark).
    pub fn appends(&self) -> bool {
        matches!(self, PendingWrite::Append { .. } | PendingWrite::AppendWith { .. })
    }

    /// The message the write appends, taken out of it; `None` for other writes.
    pub fn into_appended(self) -> Option<StoredMessage> {
        match self {
            PendingWrite::Append { message, .. } | PendingWrite::AppendWith { message, .. } => {
                Some(message)
            }
            PendingWrite::Update { .. } | PendingWrite::End { .. } => None,
        }
    }

    /// The operation name used in logs and metrics.
    pub fn operation(&self) -> &'static str {
        match self {
            PendingWrite::Append { .. } => "append_message",
            PendingWrite::AppendWith { .. } => "append_message_with",
            PendingWrite::Update { .. } => "update",
            PendingWrite::End { .. } => "end_session",
        }
    }

    /// Applies the write to `store` once; `false` when it is conditional and the store
    /// declined it (an idle end of a session that another instance stored messages in).
    #[allow(clippy::disallowed_methods, reason = "applied only by the persistence service")]
    pub async fn apply(&self, store: &dyn SessionStore) -> Result<bool, StoreError> {
        match self {
            PendingWrite::Append { session_id, message } => {
                store.append_message(session_id, message).await.map(|()| true)
            }
            PendingWrite::AppendWith { session_id, message, patch } => {
                store.append_message_with(session_id, message, patch).await.map(|()| true)
            }
            PendingWrite::Update { session_id, patch } => {
                store.update(session_id, patch).await.map(|()| true)
            }
            // Only the sweeper's idle ends wait in the outbox; an end on request is made now.
            PendingWrite::End { session_id, at, quiet_since: None } => {
                store.end(session_id, *at, EndCause::Idle).await.map(|_| true)
            }
            PendingWrite::End { session_id, at, quiet_since: Some(quiet) } => {
                store.end_if_idle(session_id, *at, *quiet).await
            }
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

/// How an [`Outbox`] that writes to disk seals its entries at rest (`ENCRYPTION_KEY`, the §8.4
/// format over the whole entry): it stores what [`EntrySeal::seal`] returns and hands what it
/// stored to [`EntrySeal::open`]. Part of the outbox port, so an adapter needs nothing else of
/// the engine; the engine's cipher implements it.
pub trait EntrySeal: Send + Sync + fmt::Debug {
    /// Seals `plain` with a fresh nonce from `rng`.
    fn seal(&self, plain: &str, rng: &mut dyn rand::RngCore) -> String;
    /// Opens what [`EntrySeal::seal`] made; `None` when it does not open with this key.
    fn open(&self, sealed: &str) -> Option<String>;
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
    /// The store declined it: a conditional write whose condition did not hold (an idle end
    /// of a session with a message within the idle timeout).
    Declined,
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::protocol::Sender;

    fn append(n: u32) -> PendingWrite {
        PendingWrite::Append {
            session_id: "s".into(),
            message: StoredMessage {
                id: format!("m{n}"),
                ..StoredMessage::new(format!("hello {n}"), UnixMillis(i64::from(n)), Sender::User)
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
            PendingWrite::End { session_id: "s".into(), at: UnixMillis(5), quiet_since: None },
            PendingWrite::AppendWith {
                session_id: "s".into(),
                message: StoredMessage::new("an answer", UnixMillis(6), Sender::Ai),
                patch: SessionPatch { total_tokens: Some(3), ..Default::default() },
            },
        ];
        for write in writes {
            let json = serde_json::to_string(&write).unwrap();
            assert_eq!(serde_json::from_str::<PendingWrite>(&json).unwrap(), write, "{json}");
        }
    }
}
