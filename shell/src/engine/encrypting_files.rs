//! Encryption at rest of uploaded files (issue 17 item 5) when `ENCRYPTION_KEY` is set: a
//! [`FileStore`] wrapper sealing the bytes with the engine's [`ContentCipher`] (AES-256-GCM) in
//! records of [`RECORD`] plaintext bytes, each stored as `nonce ‖ ciphertext ‖ tag` with the
//! file id, the record's index and a last-record flag as associated data — so records cannot be
//! swapped between files, reordered, or dropped from the end without failing to open. Files are
//! streamed both ways; the metadata (owner, type, size, name) is stored in clear.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;

use super::crypto::{ContentCipher, NONCE_LEN, TAG_LEN};
use super::files::{ByteStream, FileMeta, FileStore, FileStoreError, FileWriter};
use super::ids;

/// Plaintext bytes per sealed record.
pub const RECORD: usize = 64 * 1024;

/// Stored bytes per full record.
const SEALED_RECORD: usize = RECORD + NONCE_LEN + TAG_LEN;

fn aad(file_id: &str, index: u64, last: bool) -> Vec<u8> {
    let mut aad = Vec::with_capacity(file_id.len() + 9);
    aad.extend_from_slice(file_id.as_bytes());
    aad.extend_from_slice(&index.to_be_bytes());
    aad.push(u8::from(last));
    aad
}

/// A [`FileStore`] whose files are encrypted in the wrapped store.
#[derive(Debug)]
pub struct EncryptingFileStore {
    inner: Arc<dyn FileStore>,
    cipher: ContentCipher,
}

impl EncryptingFileStore {
    /// Wraps `inner` with `cipher`.
    pub fn new(inner: Arc<dyn FileStore>, cipher: ContentCipher) -> Self {
        EncryptingFileStore { inner, cipher }
    }
}

#[async_trait]
impl FileStore for EncryptingFileStore {
    async fn create(&self, id: &str) -> Result<Box<dyn FileWriter>, FileStoreError> {
        let inner = self.inner.create(id).await?;
        Ok(Box::new(SealingWriter {
            inner,
            cipher: self.cipher.clone(),
            file_id: id.to_string(),
            pending: BytesMut::new(),
            index: 0,
        }))
    }

    async fn meta(&self, id: &str) -> Result<Option<FileMeta>, FileStoreError> {
        self.inner.meta(id).await
    }

    async fn open(&self, id: &str) -> Result<ByteStream, FileStoreError> {
        let Some(meta) = self.inner.meta(id).await? else {
            return Err(FileStoreError(format!("{id}: no such file")));
        };
        let records = meta.size.div_ceil(RECORD as u64);
        let state = Opening {
            inner: self.inner.open(id).await?,
            cipher: self.cipher.clone(),
            file_id: id.to_string(),
            buffer: BytesMut::new(),
            index: 0,
            records,
            last_len: (meta.size - records.saturating_sub(1) * RECORD as u64) as usize,
        };
        Ok(Box::pin(futures_util::stream::unfold(state, Opening::next_record)))
    }
}

struct SealingWriter {
    inner: Box<dyn FileWriter>,
    cipher: ContentCipher,
    file_id: String,
    pending: BytesMut,
    index: u64,
}

impl SealingWriter {
    fn seal(&mut self, plaintext: &[u8], last: bool) -> Bytes {
        let sealed = self.cipher.seal_bytes(
            plaintext,
            &aad(&self.file_id, self.index, last),
            ids::random_bytes(),
        );
        self.index += 1;
        Bytes::from(sealed)
    }
}

#[async_trait]
impl FileWriter for SealingWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), FileStoreError> {
        self.pending.extend_from_slice(&chunk);
        // A full record is sealed only once more bytes follow: the last one is flagged.
        while self.pending.len() > RECORD {
            let record = self.pending.split_to(RECORD);
            let sealed = self.seal(&record, false);
            self.inner.write(sealed).await?;
        }
        Ok(())
    }

    async fn finish(mut self: Box<Self>, meta: &FileMeta) -> Result<(), FileStoreError> {
        let record = std::mem::take(&mut self.pending);
        let sealed = self.seal(&record, true);
        self.inner.write(sealed).await?;
        self.inner.finish(meta).await
    }

    async fn abort(self: Box<Self>) {
        self.inner.abort().await;
    }
}

struct Opening {
    inner: ByteStream,
    cipher: ContentCipher,
    file_id: String,
    buffer: BytesMut,
    index: u64,
    records: u64,
    last_len: usize,
}

impl Opening {
    async fn next_record(mut self) -> Option<(Result<Bytes, FileStoreError>, Self)> {
        if self.index >= self.records {
            return None;
        }
        let last = self.index + 1 == self.records;
        let want = if last { self.last_len + NONCE_LEN + TAG_LEN } else { SEALED_RECORD };
        while self.buffer.len() < want {
            match self.inner.next().await {
                Some(Ok(chunk)) => self.buffer.extend_from_slice(&chunk),
                Some(Err(e)) => return self.fail(e),
                None => return self.fail(FileStoreError("stored file is truncated".into())),
            }
        }
        let sealed = self.buffer.split_to(want);
        match self.cipher.open_bytes(&sealed, &aad(&self.file_id, self.index, last)) {
            Some(plain) => {
                self.index += 1;
                Some((Ok(Bytes::from(plain)), self))
            }
            None => self.fail(FileStoreError("stored file does not decrypt".into())),
        }
    }

    fn fail(mut self, error: FileStoreError) -> Option<(Result<Bytes, FileStoreError>, Self)> {
        // One error, then the end of the stream.
        self.index = self.records;
        Some((Err(error), self))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::Mutex;

    use super::*;

    /// Files in memory; finished ones only.
    #[derive(Debug, Default)]
    struct Memory {
        files: Mutex<HashMap<String, (FileMeta, Vec<u8>)>>,
    }

    struct MemoryWriter {
        store: Arc<Memory>,
        id: String,
        bytes: Vec<u8>,
    }

    #[async_trait]
    impl FileWriter for MemoryWriter {
        async fn write(&mut self, chunk: Bytes) -> Result<(), FileStoreError> {
            self.bytes.extend_from_slice(&chunk);
            Ok(())
        }
        async fn finish(self: Box<Self>, meta: &FileMeta) -> Result<(), FileStoreError> {
            let mut files = self.store.files.lock().unwrap();
            files.insert(self.id, (meta.clone(), self.bytes));
            Ok(())
        }
        async fn abort(self: Box<Self>) {}
    }

    #[derive(Debug)]
    struct Shared(Arc<Memory>);

    #[async_trait]
    impl FileStore for Shared {
        async fn create(&self, id: &str) -> Result<Box<dyn FileWriter>, FileStoreError> {
            let store = Arc::clone(&self.0);
            Ok(Box::new(MemoryWriter { store, id: id.into(), bytes: Vec::new() }))
        }
        async fn meta(&self, id: &str) -> Result<Option<FileMeta>, FileStoreError> {
            Ok(self.0.files.lock().unwrap().get(id).map(|(m, _)| m.clone()))
        }
        async fn open(&self, id: &str) -> Result<ByteStream, FileStoreError> {
            let bytes = self.0.files.lock().unwrap()[id].1.clone();
            // Odd chunk sizes, as a network store would deliver them.
            let chunks: Vec<_> =
                bytes.chunks(7_001).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
            Ok(Box::pin(futures_util::stream::iter(chunks)))
        }
    }

    async fn read_all(store: &EncryptingFileStore, id: &str) -> Result<Vec<u8>, FileStoreError> {
        let mut stream = store.open(id).await?;
        let mut out = Vec::new();
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out)
    }

    async fn sealed(memory: &Arc<Memory>, plain: &[u8]) -> EncryptingFileStore {
        let cipher = ContentCipher::new(&[7u8; 32]).unwrap();
        let store = EncryptingFileStore::new(Arc::new(Shared(Arc::clone(memory))), cipher);
        let mut writer = store.create("f").await.unwrap();
        for chunk in plain.chunks(10_000) {
            writer.write(Bytes::copy_from_slice(chunk)).await.unwrap();
        }
        let meta = FileMeta {
            owner: "u".into(),
            content_type: "text/plain".into(),
            size: plain.len() as u64,
            name: "a.txt".into(),
        };
        writer.finish(&meta).await.unwrap();
        store
    }

    #[tokio::test]
    async fn round_trips_across_record_boundaries() {
        for len in [1, RECORD - 1, RECORD, RECORD + 1, 3 * RECORD + 17] {
            let plain: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let memory = Arc::new(Memory::default());
            let store = sealed(&memory, &plain).await;
            let stored = memory.files.lock().unwrap()["f"].1.clone();
            assert_ne!(&stored[NONCE_LEN..NONCE_LEN + len.min(32)], &plain[..len.min(32)]);
            assert_eq!(read_all(&store, "f").await.unwrap(), plain, "len {len}");
        }
    }

    #[tokio::test]
    async fn tampered_truncated_or_reordered_files_fail() {
        let plain = vec![5u8; 2 * RECORD + 10];
        let memory = Arc::new(Memory::default());
        let store = sealed(&memory, &plain).await;
        let original = memory.files.lock().unwrap()["f"].1.clone();
        let mut flipped = original.clone();
        flipped[NONCE_LEN + 3] ^= 1;
        let mut swapped = original[SEALED_RECORD..2 * SEALED_RECORD].to_vec();
        swapped.extend_from_slice(&original[..SEALED_RECORD]);
        swapped.extend_from_slice(&original[2 * SEALED_RECORD..]);
        for bad in [flipped, original[..original.len() - 1].to_vec(), swapped] {
            memory.files.lock().unwrap().get_mut("f").unwrap().1 = bad;
            assert!(read_all(&store, "f").await.is_err());
        }
    }
}
