//! Encryption at rest as a store decorator (PROTOCOL.md §8.4): message content is encrypted on
//! the way into any `SessionStore` and decrypted on the way out, in the original's format, so
//! every store (embedded, MongoDB, simulated) gets it the same way and nothing else in the
//! engine handles ciphertext. Only `msgs[].content` is encrypted, as in the original.

use std::sync::Arc;

use async_trait::async_trait;
use chatbox_core::protocol::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;

use super::crypto::ContentCipher;
use super::ids::random_bytes;
use super::store::{
    CreateOutcome, HistoryMark, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
};

/// A store whose message contents are encrypted with `cipher`.
#[derive(Debug)]
pub struct EncryptingStore {
    inner: Arc<dyn SessionStore>,
    cipher: ContentCipher,
}

impl EncryptingStore {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn SessionStore>, cipher: ContentCipher) -> Self {
        Self { inner, cipher }
    }

    fn seal(&self, msg: &StoredMessage) -> StoredMessage {
        let mut sealed = msg.clone();
        // A fresh nonce per message; the engine's generator (seeded under madsim).
        sealed.content = self.cipher.encrypt(&msg.content, random_bytes::<12>());
        sealed
    }

    fn open(&self, mut doc: SessionDoc) -> SessionDoc {
        self.open_messages(&mut doc.messages);
        doc
    }

    fn open_messages(&self, messages: &mut [StoredMessage]) {
        for msg in messages {
            msg.content = self.cipher.decrypt(&msg.content);
        }
    }
}

#[async_trait]
#[allow(clippy::disallowed_methods, reason = "a store decorator forwards to the store it wraps")]
impl SessionStore for EncryptingStore {
    fn system_name(&self) -> &'static str {
        self.inner.system_name()
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        let mut sealed = doc.clone();
        sealed.messages = doc.messages.iter().map(|m| self.seal(m)).collect();
        self.inner.create(&sealed).await
    }

    async fn append_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
    ) -> Result<(), StoreError> {
        self.inner.append_message(session_id, &self.seal(msg)).await
    }

    async fn append_message_with(
        &self,
        session_id: &str,
        msg: &StoredMessage,
        patch: &SessionPatch,
    ) -> Result<(), StoreError> {
        self.inner.append_message_with(session_id, &self.seal(msg), patch).await
    }

    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        self.inner.update(session_id, patch).await
    }

    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        Ok(self.inner.end(session_id, at, cause).await?.map(|d| self.open(d)))
    }

    async fn end_if_idle(
        &self,
        session_id: &str,
        at: UnixMillis,
        quiet_since: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.inner.end_if_idle(session_id, at, quiet_since).await
    }

    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        Ok(self.inner.load(session_id).await?.map(|d| self.open(d)))
    }

    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        let mut messages = self.inner.recent_messages(session_id, limit).await?;
        if let Some(messages) = &mut messages {
            self.open_messages(messages);
        }
        Ok(messages)
    }

    /// Message ids are not encrypted: the inner store's mark is the mark.
    async fn history_mark(&self, session_id: &str) -> Result<Option<HistoryMark>, StoreError> {
        self.inner.history_mark(session_id).await
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        Ok(self
            .inner
            .list_by_user(user_id, limit)
            .await?
            .into_iter()
            .map(|d| self.open(d))
            .collect())
    }

    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        Ok(self.inner.find_by_share_token(token).await?.map(|d| self.open(d)))
    }

    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        self.inner.set_share_token(session_id, token).await
    }

    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError> {
        self.inner.clear_share_token(session_id).await
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        self.inner.claim_assistance(session_id, admin).await
    }

    async fn assisting_admin(
        &self,
        session_id: &str,
    ) -> Result<Option<Option<AdminRef>>, StoreError> {
        self.inner.assisting_admin(session_id).await
    }

    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        Ok(self.inner.search(query).await?.into_iter().map(|d| self.open(d)).collect())
    }

    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        Ok(self.inner.started_between(from, to).await?.into_iter().map(|d| self.open(d)).collect())
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.inner.prepare().await
    }

    async fn window_stats(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        now: UnixMillis,
    ) -> Result<super::admin::WindowStats, StoreError> {
        self.inner.window_stats(from, to, now).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}
