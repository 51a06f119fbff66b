//! A store decorator that stops calls from waiting on a store known to be down (issue 16): every
//! call asks core's [`CircuitBreaker`] first. Once `STORE_BREAKER_FAILURES` calls in a row failed
//! transiently, calls are refused at once with a transient error (so the engine's fallbacks —
//! the outbox, the history deadline — take over without waiting) until one probe call finds the
//! store back. Calls by id also have a deadline (`STORE_CALL_TIMEOUT`): the MongoDB driver has
//! no per-operation socket timeout, so a server that hangs rather than refuses (a partition, a
//! frozen process) would otherwise hold every call — and every acknowledgement — for as long as
//! it hangs; past the deadline the call fails transiently and counts towards opening the
//! breaker. When the breaker opens, the calls still waiting give up at once (they were sent to
//! the same hanging server), so the messages caught in the first moments of an outage wait at
//! most one deadline, not each its own. Listings, the search, the metrics aggregation and index preparation keep the
//! engine's longer deadline. Wraps the MongoDB store in the binary; the simulator wires its own
//! store.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::breaker::{BreakerLimits, CallOutcome, CircuitBreaker};
use chatbox_core::protocol::AdminSessionQuery;
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;

use crate::engine::clock::Clock;
use crate::engine::store::{
    CreateOutcome, HistoryMark, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
    WindowStats,
};

/// `inner` behind a circuit breaker.
#[derive(Debug)]
pub struct BreakerStore {
    inner: Arc<dyn SessionStore>,
    breaker: Mutex<CircuitBreaker>,
    /// Deadline of one call by id (`STORE_CALL_TIMEOUT`).
    call_timeout: Duration,
    /// Woken when the breaker opens: the calls in flight give up.
    opened: tokio::sync::Notify,
    clock: Clock,
}

impl BreakerStore {
    /// Wraps `inner` with a closed breaker of `limits`; calls by id get `call_timeout` each.
    pub fn new(
        inner: Arc<dyn SessionStore>,
        limits: BreakerLimits,
        call_timeout: Duration,
    ) -> Self {
        let breaker = Mutex::new(CircuitBreaker::new(limits));
        let opened = tokio::sync::Notify::new();
        Self { inner, breaker, call_timeout, opened, clock: Clock::new() }
    }

    /// [`BreakerStore::guarded`] with the call's deadline: past `STORE_CALL_TIMEOUT` it fails
    /// transiently (the call may still complete on the server: every write is idempotent).
    async fn by_id<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let budget = self.call_timeout;
        let bounded = async move {
            tokio::time::timeout(budget, call).await.unwrap_or_else(|_| {
                Err(StoreError::Transient(format!("{operation} over its {budget:?} deadline")))
            })
        };
        self.guarded(operation, bounded).await
    }

    /// Runs `call` if the breaker allows it and reports its outcome; refused calls fail at once.
    /// A transient error is a failure; an answer, even a refusal, shows the store is up.
    async fn guarded<T>(
        &self,
        operation: &'static str,
        call: impl Future<Output = Result<T, StoreError>>,
    ) -> Result<T, StoreError> {
        let permit = self.with_breaker(|b, now| b.check(now));
        if !permit.allowed() {
            return Err(StoreError::Transient(format!(
                "store known to be down (circuit open): {operation} not attempted"
            )));
        }
        let opened = self.opened.notified();
        tokio::pin!(opened);
        // Registered before the call starts, so an opening while it waits is not missed.
        opened.as_mut().enable();
        let result = tokio::select! {
            result = call => result,
            () = opened => Err(StoreError::Transient(format!(
                "store circuit opened while {operation} waited; given up"
            ))),
        };
        let outcome = match &result {
            Err(StoreError::Transient(_)) => CallOutcome::Failure,
            _ => CallOutcome::Success,
        };
        let (was_open, is_open) = self.with_breaker(|b, now| {
            let was_open = b.is_open();
            b.record(outcome, now);
            (was_open, b.is_open())
        });
        match (was_open, is_open) {
            (false, true) => {
                tracing::warn!(operation, "store circuit opened: calls fail fast");
                self.opened.notify_waiters();
            }
            (true, false) => tracing::info!(operation, "store circuit closed: the store answers"),
            _ => {}
        }
        result
    }

    fn with_breaker<R>(
        &self,
        f: impl FnOnce(&mut CircuitBreaker, chatbox_core::Instant) -> R,
    ) -> R {
        let now = self.clock.now();
        // A panic while holding the lock cannot leave the breaker half-updated (each input is
        // one assignment), so a poisoned lock is still usable.
        let mut breaker = self.breaker.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut breaker, now)
    }
}

#[async_trait]
#[allow(clippy::disallowed_methods, reason = "a store decorator forwards to the store it wraps")]
impl SessionStore for BreakerStore {
    fn system_name(&self) -> &'static str {
        self.inner.system_name()
    }

    fn exclusive(&self) -> bool {
        self.inner.exclusive()
    }

    async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        self.by_id("create", self.inner.create(doc)).await
    }

    async fn append_message(
        &self,
        session_id: &str,
        msg: &StoredMessage,
    ) -> Result<(), StoreError> {
        self.by_id("append_message", self.inner.append_message(session_id, msg)).await
    }

    async fn append_message_with(
        &self,
        session_id: &str,
        msg: &StoredMessage,
        patch: &SessionPatch,
    ) -> Result<(), StoreError> {
        self.by_id("append_message_with", self.inner.append_message_with(session_id, msg, patch))
            .await
    }

    async fn update(&self, session_id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        self.by_id("update", self.inner.update(session_id, patch)).await
    }

    async fn end(
        &self,
        session_id: &str,
        at: UnixMillis,
        cause: EndCause,
    ) -> Result<Option<SessionDoc>, StoreError> {
        self.by_id("end", self.inner.end(session_id, at, cause)).await
    }

    async fn end_if_idle(
        &self,
        session_id: &str,
        at: UnixMillis,
        quiet_since: UnixMillis,
    ) -> Result<bool, StoreError> {
        self.by_id("end", self.inner.end_if_idle(session_id, at, quiet_since)).await
    }

    async fn load(&self, session_id: &str) -> Result<Option<SessionDoc>, StoreError> {
        self.by_id("load", self.inner.load(session_id)).await
    }

    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Option<Vec<StoredMessage>>, StoreError> {
        self.by_id("recent_messages", self.inner.recent_messages(session_id, limit)).await
    }

    async fn history_mark(&self, session_id: &str) -> Result<Option<HistoryMark>, StoreError> {
        self.by_id("history_mark", self.inner.history_mark(session_id)).await
    }

    async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        self.guarded("list_by_user", self.inner.list_by_user(user_id, limit)).await
    }

    async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        self.by_id("find_by_share_token", self.inner.find_by_share_token(token)).await
    }

    async fn set_share_token(
        &self,
        session_id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        self.by_id("set_share_token", self.inner.set_share_token(session_id, token)).await
    }

    async fn clear_share_token(&self, session_id: &str) -> Result<Option<()>, StoreError> {
        self.by_id("clear_share_token", self.inner.clear_share_token(session_id)).await
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        self.by_id("claim_assistance", self.inner.claim_assistance(session_id, admin)).await
    }

    async fn assisting_admin(
        &self,
        session_id: &str,
    ) -> Result<Option<Option<AdminRef>>, StoreError> {
        self.by_id("assisting_admin", self.inner.assisting_admin(session_id)).await
    }

    async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        self.guarded("search", self.inner.search(query)).await
    }

    async fn started_between(
        &self,
        from: UnixMillis,
        to: UnixMillis,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        self.guarded("started_between", self.inner.started_between(from, to)).await
    }

    async fn window_stats(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        now: UnixMillis,
    ) -> Result<WindowStats, StoreError> {
        self.guarded("window_stats", self.inner.window_stats(from, to, now)).await
    }

    async fn prepare(&self) -> Result<(), StoreError> {
        self.guarded("prepare", self.inner.prepare()).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.by_id("ping", self.inner.ping()).await
    }

    /// Not guarded: at shutdown every acknowledged write should get its chance.
    async fn flush(&self) -> Result<(), StoreError> {
        self.inner.flush().await
    }
}
