//! [`FileOutbox`]: the durable [`Outbox`] of the binary — `outbox.redb` in the data directory,
//! one table `entries` of sequence number → JSON [`PendingWrite`]. Every push is one committed
//! redb transaction (fsync'd) before it returns, so a write the engine acknowledged after queueing
//! it survives a crash and is replayed by the drain task at the next start.
//!
//! With `ENCRYPTION_KEY` set, each entry is sealed whole (AES-256-GCM, the §8.4 format), so
//! message content never sits in the data directory in plain text.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};

use crate::engine::persistence::{EntrySeal, Outbox, OutboxError, PendingWrite};

const ENTRIES: TableDefinition<u64, &[u8]> = TableDefinition::new("entries");

/// The outbox file.
#[derive(Debug, Clone)]
pub struct FileOutbox {
    db: Arc<Database>,
    path: PathBuf,
    len: Arc<AtomicUsize>,
    capacity: usize,
    seal: Option<Arc<dyn EntrySeal>>,
}

fn io(error: impl std::fmt::Display) -> OutboxError {
    OutboxError::Io(error.to_string())
}

impl FileOutbox {
    /// Name of the file inside the data directory.
    pub const FILE_NAME: &'static str = "outbox.redb";

    /// Opens (creating if needed) `dir/outbox.redb`, holding at most `capacity` entries, sealing
    /// entries with `seal` when given. Blocks on file IO: call it at start-up.
    pub fn open(
        dir: &Path,
        capacity: usize,
        seal: Option<Arc<dyn EntrySeal>>,
    ) -> Result<Self, OutboxError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let path = dir.join(Self::FILE_NAME);
        let db = Database::create(&path).map_err(|e| match e {
            redb::DatabaseError::DatabaseAlreadyOpen => {
                OutboxError::Io(crate::adapters::data_dir::locked(&path))
            }
            other => io(other),
        })?;
        let txn = db.begin_write().map_err(io)?;
        let len = {
            let table = txn.open_table(ENTRIES).map_err(io)?;
            usize::try_from(table.len().map_err(io)?).unwrap_or(usize::MAX)
        };
        txn.commit().map_err(io)?;
        if len > 0 {
            tracing::warn!(path = %path.display(), entries = len, "outbox holds writes from an earlier run; replaying them");
        }
        Ok(Self { db: Arc::new(db), path, len: Arc::new(AtomicUsize::new(len)), capacity, seal })
    }

    /// Path of the file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn encode(&self, write: &PendingWrite) -> Result<Vec<u8>, OutboxError> {
        let json = serde_json::to_string(write).map_err(io)?;
        Ok(match &self.seal {
            Some(seal) => seal.seal(&json, &mut rand::thread_rng()).into_bytes(),
            None => json.into_bytes(),
        })
    }

    fn decode(seal: Option<&dyn EntrySeal>, bytes: &[u8]) -> Result<PendingWrite, OutboxError> {
        let text = std::str::from_utf8(bytes).map_err(io)?;
        let json = match seal {
            Some(seal) => seal.open(text).ok_or_else(|| {
                OutboxError::Io("outbox entry does not decrypt with ENCRYPTION_KEY".into())
            })?,
            None => text.to_string(),
        };
        serde_json::from_str(&json).map_err(io)
    }

    /// Runs one blocking operation on tokio's blocking pool.
    async fn run<T, F>(&self, body: F) -> Result<T, OutboxError>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T, OutboxError> + Send + 'static,
    {
        let db = Arc::clone(&self.db);
        // adapters may block: redb is synchronous
        #[allow(clippy::disallowed_methods)]
        let task = tokio::task::spawn_blocking(move || body(&db));
        task.await.map_err(io)?
    }
}

#[async_trait]
impl Outbox for FileOutbox {
    async fn push(&self, write: &PendingWrite) -> Result<(), OutboxError> {
        if self.len.load(Ordering::Acquire) >= self.capacity {
            return Err(OutboxError::Full(self.capacity));
        }
        let bytes = self.encode(write)?;
        let (len, capacity) = (Arc::clone(&self.len), self.capacity);
        self.run(move |db| {
            let txn = db.begin_write().map_err(io)?;
            {
                let mut table = txn.open_table(ENTRIES).map_err(io)?;
                let count = usize::try_from(table.len().map_err(io)?).unwrap_or(usize::MAX);
                if count >= capacity {
                    return Err(OutboxError::Full(capacity));
                }
                let next = table.last().map_err(io)?.map_or(1, |(k, _)| k.value() + 1);
                table.insert(next, bytes.as_slice()).map_err(io)?;
            }
            txn.commit().map_err(io)?;
            len.fetch_add(1, Ordering::AcqRel);
            Ok(())
        })
        .await
    }

    async fn front(&self) -> Result<Option<(u64, PendingWrite)>, OutboxError> {
        let seal = self.seal.clone();
        self.run(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(ENTRIES).map_err(io)?;
            let Some((key, value)) = table.first().map_err(io)? else { return Ok(None) };
            let write = Self::decode(seal.as_deref(), value.value())?;
            Ok(Some((key.value(), write)))
        })
        .await
    }

    async fn remove(&self, seq: u64) -> Result<(), OutboxError> {
        let len = Arc::clone(&self.len);
        self.run(move |db| {
            let txn = db.begin_write().map_err(io)?;
            let removed = {
                let mut table = txn.open_table(ENTRIES).map_err(io)?;
                let removed = table.remove(seq).map_err(io)?.is_some();
                removed
            };
            txn.commit().map_err(io)?;
            if removed {
                len.fetch_sub(1, Ordering::AcqRel);
            }
            Ok(())
        })
        .await
    }

    async fn pending(&self, session_id: &str) -> Result<Vec<PendingWrite>, OutboxError> {
        let (seal, session_id) = (self.seal.clone(), session_id.to_string());
        self.run(move |db| {
            let txn = db.begin_read().map_err(io)?;
            let table = txn.open_table(ENTRIES).map_err(io)?;
            let mut found = Vec::new();
            for entry in table.iter().map_err(io)? {
                let (_, value) = entry.map_err(io)?;
                let write = Self::decode(seal.as_deref(), value.value())?;
                if write.session_id() == session_id {
                    found.push(write);
                }
            }
            Ok(found)
        })
        .await
    }

    fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::UnixMillis;

    /// A seal for these tests: hex, so nothing of the entry is readable on disk.
    #[derive(Debug)]
    struct HexSeal;

    impl EntrySeal for HexSeal {
        fn seal(&self, plain: &str, _: &mut dyn rand::RngCore) -> String {
            hex::encode(plain)
        }

        fn open(&self, sealed: &str) -> Option<String> {
            String::from_utf8(hex::decode(sealed).ok()?).ok()
        }
    }

    fn end(n: i64) -> PendingWrite {
        PendingWrite::End { session_id: format!("s{n}"), at: UnixMillis(n), quiet_since: None }
    }

    #[tokio::test]
    async fn entries_survive_reopening_in_order() {
        let dir = tempfile::tempdir().unwrap();
        {
            let outbox = FileOutbox::open(dir.path(), 10, None).unwrap();
            for n in 1..=3 {
                outbox.push(&end(n)).await.unwrap();
            }
            let (seq, first) = outbox.front().await.unwrap().unwrap();
            assert_eq!(first, end(1));
            outbox.remove(seq).await.unwrap();
        }
        let outbox = FileOutbox::open(dir.path(), 10, None).unwrap();
        assert_eq!(outbox.len(), 2);
        let (seq, second) = outbox.front().await.unwrap().unwrap();
        assert_eq!(second, end(2));
        outbox.remove(seq).await.unwrap();
        outbox.push(&end(4)).await.unwrap();
        let (seq, third) = outbox.front().await.unwrap().unwrap();
        assert_eq!(third, end(3));
        outbox.remove(seq).await.unwrap();
        assert_eq!(outbox.front().await.unwrap().map(|(_, w)| w), Some(end(4)));
    }

    #[tokio::test]
    async fn a_full_outbox_refuses() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path(), 2, None).unwrap();
        outbox.push(&end(1)).await.unwrap();
        outbox.push(&end(2)).await.unwrap();
        assert_eq!(outbox.push(&end(3)).await, Err(OutboxError::Full(2)));
        assert_eq!(outbox.len(), 2);
    }

    #[tokio::test]
    async fn sealed_entries_hold_no_plaintext() {
        let dir = tempfile::tempdir().unwrap();
        let outbox = FileOutbox::open(dir.path(), 10, Some(Arc::new(HexSeal))).unwrap();
        let secret = PendingWrite::End {
            session_id: "very-private-session".into(),
            at: UnixMillis(1),
            quiet_since: Some(UnixMillis(0)),
        };
        outbox.push(&secret).await.unwrap();
        drop(outbox);
        let raw = std::fs::read(dir.path().join(FileOutbox::FILE_NAME)).unwrap();
        assert!(!raw.windows(20).any(|w| w == b"very-private-session"), "plaintext on disk");
        let outbox = FileOutbox::open(dir.path(), 10, Some(Arc::new(HexSeal))).unwrap();
        assert_eq!(outbox.front().await.unwrap().map(|(_, w)| w), Some(secret));
    }
}
