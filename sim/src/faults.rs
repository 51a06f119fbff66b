//! Store faults drawn from the seed: transient errors before a write, ambiguous failures after a
//! write (the write happened but the caller is told it failed — the engine's retry must not store
//! it twice), slow operations, and outage windows during which every operation fails.
//!
//! `lose_acknowledged_every` is the test-only switch that breaks an invariant on purpose: it
//! makes every n-th message append report success without storing anything, which the simulator
//! must catch as "acknowledged and then lost" — and replay identically from the same seed.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chatbox::engine::store::{
    CreateOutcome, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
};
use chatbox_core::protocol::AdminSessionQuery;
use chatbox_core::session::AdminRef;
use chatbox_core::UnixMillis;
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use chatbox::engine::persistence::MemoryStore as SimStore;

/// What goes wrong, and how often.
#[derive(Debug, Clone, Default)]
pub struct StoreFaults {
    /// Per-mille of operations failing transiently before doing anything.
    pub transient_per_mille: u64,
    /// Per-mille of writes failing transiently after they were applied (ambiguous failures).
    pub ambiguous_per_mille: u64,
    /// Longest injected delay per operation.
    pub max_delay: Duration,
    /// Windows (from the store's creation) during which every operation fails.
    pub outages: Vec<(Duration, Duration)>,
    /// Test-only: every n-th append reports success but stores nothing.
    pub lose_acknowledged_every: Option<u64>,
}

/// A [`SimStore`] with injected faults.
#[derive(Debug)]
pub struct FaultyStore {
    /// The store underneath (inspected by invariant checks).
    pub inner: SimStore,
    faults: StoreFaults,
    rng: Mutex<ChaCha8Rng>,
    born: tokio::time::Instant,
    appends: AtomicU64,
    /// Faults injected so far.
    pub injected: AtomicU64,
    /// What [`SessionStore::exclusive`] answers: the one server of the chaos world is the
    /// store's only writer, as with the embedded store.
    only_writer: bool,
}

impl FaultyStore {
    /// The ids of the sessions that have not ended (what an administrator may take over).
    pub fn live_sessions(&self) -> Vec<String> {
        self.inner.snapshot().into_iter().filter(|d| d.ended.is_none()).map(|d| d.id).collect()
    }

    /// A store whose faults are drawn from `seed`.
    #[allow(clippy::disallowed_methods, reason = "the simulator's fault schedule, not server code")]
    pub fn new(seed: u64, faults: StoreFaults) -> Self {
        Self {
            inner: SimStore::new(),
            faults,
            rng: Mutex::new(ChaCha8Rng::seed_from_u64(seed)),
            born: tokio::time::Instant::now(),
            appends: AtomicU64::new(0),
            injected: AtomicU64::new(0),
            only_writer: false,
        }
    }

    /// Declares the server the store's only writer ([`SessionStore::exclusive`]), so its
    /// persistence service trusts its history cache as with the embedded store.
    #[must_use]
    pub fn only_writer(mut self) -> Self {
        self.only_writer = true;
        self
    }

    fn roll(&self, per_mille: u64) -> bool {
        per_mille > 0 && self.next() % 1000 < per_mille
    }

    fn next(&self) -> u64 {
        self.rng.lock().unwrap_or_else(std::sync::PoisonError::into_inner).next_u64()
    }

    /// Delay, outage and transient checks before an operation.
    async fn before(&self, op: &str) -> Result<(), StoreError> {
        let max = self.faults.max_delay.as_millis() as u64;
        if max > 0 {
            tokio::time::sleep(Duration::from_millis(self.next() % (max + 1))).await;
        }
        let age = self.born.elapsed();
        let down = self.faults.outages.iter().any(|(from, to)| age >= *from && age < *to);
        if down || self.roll(self.faults.transient_per_mille) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Transient(format!("injected: {op} unavailable")));
        }
        Ok(())
    }

    /// After a successful write: sometimes report it as failed anyway.
    fn after_write(&self, op: &str) -> Result<(), StoreError> {
        if self.roll(self.faults.ambiguous_per_mille) {
            self.injected.fetch_add(1, Ordering::Relaxed);
            return Err(StoreError::Transient(format!("injected: {op} timed out after writing")));
        }
        Ok(())
    }
}

#[async_trait]
#[allow(clippy::disallowed_methods, reason = "a store decorator forwards to the store it wraps")]
impl SessionStore for FaultyStore {
    fn exclusive(&self) -> bool {
        self.only_writer
    }

    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        self.before("create").await?;
        let outcome = self.inner.create(doc).await?;
        self.after_write("create")?;
        Ok(outcome)
    }

    async fn append_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
    ) -> Result<(), StoreError> {
        self.before("append").await?;
        let n = self.appends.fetch_add(1, Ordering::Relaxed) + 1;
        if self.faults.lose_acknowledged_every.is_some_and(|every| n.is_multiple_of(every.max(1))) {
            return Ok(());
        }
        let stored = self.inner.append_message(session_id, msg).await;
        tracing::debug!(session_id, message_id = %msg.id, content = %msg.content, ?stored, "sim store append");
        stored?;
        self.after_write("append")
    }

    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        self.before("update").await?;
        self.inner.update(session_id, patch).await?;
        self.after_write("update")
    }

    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: chatbox_core::session::EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        self.before("end").await?;
        self.inner.end(session_id, at, cause).await
    }

    async fn end_if_idle(
        &self,
        session_id: &str,
        at: UnixMillis,
        quiet_since: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.before("end").await?;
        self.inner.end_if_idle(session_id, at, quiet_since).await
    }

    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        self.before("load").await?;
        self.inner.load(session_id).await
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        self.before("list").await?;
        self.inner.list_by_user(user_id, limit).await
    }

    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        self.before("find_by_share_token").await?;
        self.inner.find_by_share_token(token).await
    }

    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        self.before("set_share_token").await?;
        self.inner.set_share_token(session_id, token).await
    }

    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError> {
        self.before("clear_share_token").await?;
        self.inner.clear_share_token(session_id).await
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        self.before("claim_assistance").await?;
        self.inner.claim_assistance(session_id, admin).await
    }

    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        self.before("search").await?;
        self.inner.search(query).await
    }

    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        self.before("started_between").await?;
        self.inner.started_between(from, to).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.before("ping").await
    }

    async fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
