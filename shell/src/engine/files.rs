//! The file storage port of uploads (issue 17 item 5): a file is written in chunks as it streams
//! in and becomes visible only when finished (an aborted or failed write leaves nothing behind),
//! then read back as a stream with its metadata. Adapters: `adapters::files` (disk under
//! `DATA_DIR/files`, S3-compatible object storage).

use std::fmt;
use std::pin::Pin;

use async_trait::async_trait;
use bytes::Bytes;
use futures_util::Stream;
use serde::{Deserialize, Serialize};

/// What is kept beside a stored file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileMeta {
    /// The uploader's `user_id`.
    pub owner: String,
    /// The type sniffed from the bytes.
    pub content_type: String,
    /// Size in bytes.
    pub size: u64,
    /// The client's file name (checked by `chatbox_core::upload::check_name`).
    pub name: String,
}

/// A storage failure (logged; the client gets a generic 500).
#[derive(Debug, thiserror::Error)]
#[error("file storage: {0}")]
pub struct FileStoreError(pub String);

/// A stored file's bytes, in chunks.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, FileStoreError>> + Send>>;

/// A file being written: nothing is visible under its id until [`FileWriter::finish`].
#[async_trait]
pub trait FileWriter: Send {
    /// Appends a chunk.
    async fn write(&mut self, chunk: Bytes) -> Result<(), FileStoreError>;
    /// Makes the file and its metadata visible.
    async fn finish(self: Box<Self>, meta: &FileMeta) -> Result<(), FileStoreError>;
    /// Discards everything written (best effort; failures are logged).
    async fn abort(self: Box<Self>);
}

/// Where uploaded files live.
#[async_trait]
pub trait FileStore: Send + Sync + fmt::Debug {
    /// Starts writing the file `id` (a generated id, never client text).
    async fn create(&self, id: &str) -> Result<Box<dyn FileWriter>, FileStoreError>;
    /// The metadata of `id`, or `None` when there is no such file.
    async fn meta(&self, id: &str) -> Result<Option<FileMeta>, FileStoreError>;
    /// The bytes of `id` (after [`FileStore::meta`] said it exists).
    async fn open(&self, id: &str) -> Result<ByteStream, FileStoreError>;
}
