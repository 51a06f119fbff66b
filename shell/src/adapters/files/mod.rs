//! Upload storage (issue 17 item 5): one [`FileStore`] over the `object_store` crate, so disk
//! (`DATA_DIR/files`, `LocalFileSystem`) and S3-compatible storage (`AmazonS3`) behave the same.
//!
//! A file `id` is the object `id` (under `files/` in a bucket) and its [`FileMeta`] the object
//! `id.json`, written after the bytes: a file exists for readers once its metadata does. Bytes
//! stream in through a multipart upload, which both backends discard on abort (the local one
//! writes a staging file renamed on completion), so a refused upload leaves nothing behind.

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use chatbox_core::budgets::UPLOAD_PARTS_IN_FLIGHT;
use chatbox_core::config::{S3Config, UploadConfig};
use futures_util::StreamExt;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, PutPayload, WriteMultipart};

use crate::engine::files::{ByteStream, FileMeta, FileStore, FileStoreError, FileWriter};

/// The store of the configuration: S3 when `UPLOAD_S3_*` is set, else `data_dir/files`
/// (created when missing).
pub fn from_config(
    uploads: &UploadConfig,
    data_dir: &Path,
) -> Result<Arc<dyn FileStore>, FileStoreError> {
    let store: Arc<dyn ObjectStore> = match &uploads.s3 {
        Some(s3) => Arc::new(s3_store(s3)?),
        None => {
            let root = data_dir.join("files");
            std::fs::create_dir_all(&root)
                .map_err(|e| FileStoreError(format!("{}: {e}", root.display())))?;
            Arc::new(LocalFileSystem::new_with_prefix(&root).map_err(error)?)
        }
    };
    let prefix = if uploads.s3.is_some() { "files/" } else { "" };
    Ok(Arc::new(ObjectFileStore { store, prefix }))
}

fn s3_store(s3: &S3Config) -> Result<object_store::aws::AmazonS3, FileStoreError> {
    let mut builder =
        AmazonS3Builder::from_env().with_bucket_name(&s3.bucket).with_region(&s3.region);
    if !s3.endpoint.is_empty() {
        // S3-compatible servers (MinIO, moto, …) are addressed by path, often over plain http.
        builder = builder
            .with_endpoint(&s3.endpoint)
            .with_allow_http(s3.endpoint.starts_with("http://"))
            .with_virtual_hosted_style_request(false);
    }
    if !s3.access_key_id.is_empty() {
        builder = builder
            .with_access_key_id(&s3.access_key_id)
            .with_secret_access_key(s3.secret_access_key.expose());
    }
    builder.build().map_err(error)
}

fn error(e: object_store::Error) -> FileStoreError {
    FileStoreError(e.to_string())
}

/// A [`FileStore`] over any `object_store` backend.
#[derive(Debug)]
pub struct ObjectFileStore {
    store: Arc<dyn ObjectStore>,
    prefix: &'static str,
}

impl ObjectFileStore {
    fn data(&self, id: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{id}", self.prefix))
    }

    fn meta_path(&self, id: &str) -> ObjectPath {
        ObjectPath::from(format!("{}{id}.json", self.prefix))
    }
}

#[async_trait]
impl FileStore for ObjectFileStore {
    async fn create(&self, id: &str) -> Result<Box<dyn FileWriter>, FileStoreError> {
        let upload = self.store.put_multipart(&self.data(id)).await.map_err(error)?;
        Ok(Box::new(ObjectWriter {
            upload: WriteMultipart::new(upload),
            store: Arc::clone(&self.store),
            meta_path: self.meta_path(id),
        }))
    }

    async fn meta(&self, id: &str) -> Result<Option<FileMeta>, FileStoreError> {
        let bytes = match self.store.get(&self.meta_path(id)).await {
            Ok(found) => found.bytes().await.map_err(error)?,
            Err(object_store::Error::NotFound { .. }) => return Ok(None),
            Err(e) => return Err(error(e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| FileStoreError(e.to_string()))
    }

    async fn open(&self, id: &str) -> Result<ByteStream, FileStoreError> {
        let found = self.store.get(&self.data(id)).await.map_err(error)?;
        Ok(Box::pin(found.into_stream().map(|chunk| chunk.map_err(error))))
    }
}

struct ObjectWriter {
    upload: WriteMultipart,
    store: Arc<dyn ObjectStore>,
    meta_path: ObjectPath,
}

#[async_trait]
impl FileWriter for ObjectWriter {
    async fn write(&mut self, chunk: Bytes) -> Result<(), FileStoreError> {
        self.upload.wait_for_capacity(UPLOAD_PARTS_IN_FLIGHT).await.map_err(error)?;
        self.upload.write(&chunk);
        Ok(())
    }

    async fn finish(self: Box<Self>, meta: &FileMeta) -> Result<(), FileStoreError> {
        self.upload.finish().await.map_err(error)?;
        let json = serde_json::to_vec(meta).map_err(|e| FileStoreError(e.to_string()))?;
        self.store.put(&self.meta_path, PutPayload::from(json)).await.map_err(error)?;
        Ok(())
    }

    async fn abort(self: Box<Self>) {
        if let Err(e) = self.upload.abort().await {
            tracing::warn!(error = %e, "aborting a refused upload failed");
        }
    }
}
