//! An in-memory `SessionStore` (a test double for the engine's unit tests and the simulator): the
//! same contract as the embedded store (idempotent appends by message id, one active session per
//! user), without disk IO, so it runs under madsim.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;

use crate::engine::store::{
    search_matches, search_order, search_page, CreateOutcome, SearchKey, SessionDoc, SessionPatch,
    SessionStore, StoreError, StoredMessage,
};
use async_trait::async_trait;
use chatbox_core::protocol::query::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;

/// In-memory sessions keyed by id.
#[derive(Debug, Default)]
pub struct MemoryStore {
    docs: Mutex<BTreeMap<String, SessionDoc>>,
    /// While true, appends and reads by id fail transiently (an outage, for unit tests).
    down: AtomicBool,
    /// What [`SessionStore::exclusive`] answers (false unless a test stands in for the
    /// embedded store).
    exclusive: AtomicBool,
    /// How long each read by id takes, in milliseconds (a slow database, for unit tests).
    load_pause_ms: std::sync::atomic::AtomicU64,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn docs(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, SessionDoc>> {
        self.docs.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Starts (`true`) or ends an outage: appends and reads by id fail transiently meanwhile.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Relaxed);
    }

    /// Answers [`SessionStore::exclusive`] with `exclusive` from now on.
    pub fn set_exclusive(&self, exclusive: bool) {
        self.exclusive.store(exclusive, Ordering::Relaxed);
    }

    /// Makes every read by id (a load, a history read) take `pause` from now on.
    pub fn set_load_pause(&self, pause: std::time::Duration) {
        let ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX);
        self.load_pause_ms.store(ms, Ordering::Relaxed);
    }

    fn available(&self) -> Result<(), StoreError> {
        if self.down.load(Ordering::Relaxed) {
            return Err(StoreError::Transient("store down (test outage)".into()));
        }
        Ok(())
    }

    /// A copy of every stored session.
    pub fn snapshot(&self) -> Vec<SessionDoc> {
        self.docs().values().cloned().collect()
    }
}

fn missing() -> StoreError {
    StoreError::Permanent("session not found".into())
}

#[async_trait]
impl SessionStore for MemoryStore {
    fn exclusive(&self) -> bool {
        self.exclusive.load(Ordering::Relaxed)
    }

    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        let mut docs = self.docs();
        if docs.contains_key(&doc.id) {
            return Ok(CreateOutcome::Created);
        }
        if let Some(active) =
            docs.values().find(|d| d.user_id == doc.user_id && d.ended.is_none() && d.id != doc.id)
        {
            return Ok(CreateOutcome::ActiveExists(active.id.clone()));
        }
        docs.insert(doc.id.clone(), doc.clone());
        Ok(CreateOutcome::Created)
    }

    async fn append_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
    ) -> Result<(), StoreError> {
        self.available()?;
        let mut docs = self.docs();
        let doc = docs.get_mut(session_id).ok_or_else(missing)?;
        if !doc.messages.iter().any(|m| m.id == msg.id) {
            doc.messages.push(msg.clone());
            doc.last_activity = Some(msg.ts);
        }
        Ok(())
    }

    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        let mut docs = self.docs();
        let doc = docs.get_mut(session_id).ok_or_else(missing)?;
        if let Some(name) = &patch.name {
            doc.name = name.clone();
        }
        if let Some(model) = &patch.model_id {
            doc.model_id = model.clone();
        }
        if let Some((assisted, id, name)) = &patch.assistance {
            doc.admin_assisted |= *assisted;
            doc.assisting_admin_id = id.clone();
            doc.assisting_admin_name = name.clone();
        }
        if let Some(help) = patch.help_requested {
            doc.help_requested = help;
        }
        if let Some(tokens) = patch.total_tokens {
            doc.total_tokens = tokens;
        }
        if let Some((max, avg)) = patch.response_ms {
            doc.max_response_ms = max;
            doc.avg_response_ms = avg;
        }
        if patch.reactivate {
            doc.ended_on_request = false;
            doc.ended = None;
        }
        Ok(())
    }

    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        let mut docs = self.docs();
        let Some(doc) = docs.get_mut(session_id) else { return Ok(None) };
        doc.ended = Some(at);
        doc.ended_on_request = cause == EndCause::Requested;
        doc.duration_secs = at.whole_seconds_since(doc.started);
        Ok(Some(doc.clone()))
    }

    async fn end_if_idle(
        &self,
        session_id: &str,
        at: UnixMillis,
        quiet_since: UnixMillis,
    ) -> Result<bool, StoreError> {
        let last = self.docs().get(session_id).map(|d| d.last_activity);
        if last.is_none_or(|last| last.is_some_and(|at| at > quiet_since)) {
            return Ok(false);
        }
        #[allow(clippy::disallowed_methods, reason = "the store's own end, behind the condition")]
        let ended = self.end(session_id, at, EndCause::Idle).await?;
        Ok(ended.is_some())
    }

    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        let pause = self.load_pause_ms.load(Ordering::Relaxed);
        if pause > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(pause)).await;
        }
        self.available()?;
        Ok(self.docs().get(session_id).cloned())
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        let mut list: Vec<SessionDoc> =
            self.docs().values().filter(|d| d.user_id == user_id).cloned().collect();
        list.sort_by_key(|d| std::cmp::Reverse(d.started));
        list.truncate(limit);
        Ok(list)
    }

    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        Ok(self.docs().values().find(|d| d.share_token.as_deref() == Some(token)).cloned())
    }

    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        let mut docs = self.docs();
        match docs.get(session_id) {
            None => return Ok(None),
            Some(doc) => {
                if let Some(existing) = &doc.share_token {
                    return Ok(Some(existing.clone()));
                }
            }
        }
        if docs.values().any(|d| d.id != session_id && d.share_token.as_deref() == Some(token)) {
            return Err(StoreError::Permanent("share token already in use".into()));
        }
        let doc = docs.get_mut(session_id).ok_or_else(missing)?;
        doc.share_token = Some(token.to_string());
        Ok(Some(token.to_string()))
    }

    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError> {
        Ok(self.docs().get_mut(session_id).map(|doc| doc.share_token = None))
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        let mut docs = self.docs();
        let Some(doc) = docs.get_mut(session_id) else { return Ok(None) };
        if doc.assisting_admin_id.is_empty() || doc.assisting_admin_id == admin.id {
            doc.admin_assisted = true;
            doc.assisting_admin_id.clone_from(&admin.id);
            doc.assisting_admin_name.clone_from(&admin.name);
        }
        Ok(Some(AdminRef {
            id: doc.assisting_admin_id.clone(),
            name: doc.assisting_admin_name.clone(),
        }))
    }

    /// A scan of every document, with the port's shared filter and order.
    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        let docs = self.docs();
        let mut keys: Vec<SearchKey<'_>> =
            docs.values().map(SearchKey::of).filter(|k| search_matches(query, k)).collect();
        keys.sort_by(|a, b| search_order(query, a, b));
        Ok(search_page(keys, query).into_iter().filter_map(|k| docs.get(k.id).cloned()).collect())
    }

    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        Ok(self
            .docs()
            .values()
            .filter(|d| d.started >= from && d.started <= to)
            .map(|d| SessionDoc { messages: Vec::new(), ..d.clone() })
            .collect())
    }

    async fn ping(&self) -> Result<(), StoreError> {
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
