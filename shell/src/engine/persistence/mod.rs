//! The persistence service: the only owner of the [`SessionStore`] and the durable [`Outbox`].
//! Store calls by id run under core's retry schedule (seed fix #9: transient failures retried
//! with capped exponential backoff on the runtime's clock, permanent ones returned at once; every
//! store write is idempotent, so a retry after an ambiguous failure is safe). Fire-and-forget
//! writes go through [`Persistence::persist`], which keeps them in the outbox while the store is
//! down; [`Persistence::drain`] is the task that applies them later. History reads complete the
//! stored conversation with what still waits in the outbox and, when the store cannot answer
//! within `STORE_HISTORY_READ_TIMEOUT`, fall back to the instance's own recent messages
//! ([`recent`]). Listings are bounded by [`LIST_DEADLINE`]. Readiness (`/readyz`) is the store's
//! last answer and its ping.

pub mod memory;
pub mod outbox;
pub mod recent;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chatbox_core::budgets::STORE_PREPARE_MIN_DELAY;
use chatbox_core::protocol::query::AdminSessionQuery;
use chatbox_core::retry::{ErrorClass, RetryDecision, RetryPolicy};
use chatbox_core::session::{AdminRef, EndCause};
use chatbox_core::UnixMillis;
use tokio::sync::{watch, Notify};
use tracing::Instrument;

use super::clock::Clock;
use super::metrics::Metrics;
use super::store::{
    CreateOutcome, HistoryMark, SessionDoc, SessionPatch, SessionStore, StoreError, StoredMessage,
    WindowStats,
};
pub use memory::MemoryStore;
pub use outbox::{EntrySeal, MemoryOutbox, Outbox, OutboxError, PendingWrite, Persisted};
use recent::RecentMessages;

/// Deadline of the admin listing and the metrics aggregation (§8.5).
pub use chatbox_core::budgets::LIST_DEADLINE;

/// The store, its retry schedule, the outbox and the store's readiness.
#[derive(Debug)]
pub struct Persistence {
    store: Arc<dyn SessionStore>,
    outbox: Arc<dyn Outbox>,
    /// Wakes the drain task when an entry is queued.
    wake: Notify,
    retry: RetryPolicy,
    /// Longest wait of a history read before a reply goes on without it (`STORE_HISTORY_READ_TIMEOUT`).
    history_budget: Duration,
    /// Whether the store answered its last call.
    ready: AtomicBool,
    /// Each live session's recent messages, for replies while the store cannot answer.
    recent: RecentMessages,
    clock: Clock,
    metrics: Arc<Metrics>,
}

#[allow(
    clippy::disallowed_methods,
    reason = "the persistence service is the one caller of the store (clippy.toml)"
)]
impl Persistence {
    /// The service over `store` and `outbox`, retrying with `retry`.
    pub fn new(
        store: Arc<dyn SessionStore>,
        outbox: Arc<dyn Outbox>,
        retry: RetryPolicy,
        history_budget: Duration,
        clock: Clock,
        metrics: Arc<Metrics>,
    ) -> Self {
        metrics.set_outbox_depth(outbox.len());
        Self {
            store,
            outbox,
            wake: Notify::new(),
            retry,
            history_budget,
            ready: AtomicBool::new(true),
            recent: RecentMessages::default(),
            clock,
            metrics,
        }
    }

    /// Sizes the recent-messages cache for replies that read `wanted` messages and `max_bytes`
    /// of text (`LLM_HISTORY_MAX_MESSAGES`, `LLM_HISTORY_MAX_BYTES`), so it can stand in for the
    /// history read (issue 18; [`recent`]'s module doc).
    pub fn with_history_cache(mut self, wanted: usize, max_bytes: usize) -> Self {
        self.recent.widen(wanted, max_bytes);
        self
    }

    /// Runs `op` until it succeeds, fails permanently, or the retry schedule gives up, in a
    /// trace span of the operation (issue 17).
    async fn with_retry<T, F, Fut>(&self, operation: &'static str, op: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let span = super::telemetry::store_span(operation, self.store.system_name());
        self.with_retry_in(operation, op).instrument(span).await
    }

    async fn with_retry_in<T, F, Fut>(
        &self,
        operation: &'static str,
        mut op: F,
    ) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, StoreError>>,
    {
        let mut retry = self.retry.start(None);
        loop {
            let began = self.clock.now();
            let result = op().await;
            self.metrics.observe_store_operation(operation, self.clock.now() - began);
            match result {
                Ok(value) => {
                    self.ready.store(true, Ordering::Relaxed);
                    return Ok(value);
                }
                Err(error) => match retry.on_failure(error.class(), self.clock.now()) {
                    RetryDecision::RetryAfter { delay, attempt } => {
                        tracing::warn!(operation, attempt, ?delay, %error, "store operation failed; retrying");
                        tokio::time::sleep(delay).await;
                    }
                    RetryDecision::GiveUp(reason) => {
                        if error.class() == ErrorClass::Transient {
                            self.ready.store(false, Ordering::Relaxed);
                        }
                        let span = tracing::Span::current();
                        super::telemetry::record_store_failed(
                            &span,
                            error.class() == ErrorClass::Transient,
                        );
                        tracing::error!(operation, ?reason, %error, "store operation failed");
                        return Err(error);
                    }
                },
            }
        }
    }

    /// Makes `write` durable: in the store (with core's retry schedule), or — while the store
    /// fails transiently, or while older writes still wait — in the outbox. `Err` means the write
    /// is **not** durable (a permanent store error, or the outbox is full or failing): the caller
    /// must not acknowledge it.
    pub async fn persist(&self, write: PendingWrite) -> Result<Persisted, StoreError> {
        if self.outbox.is_empty() {
            let store = Arc::clone(&self.store);
            match self.with_retry(write.operation(), || write.apply(store.as_ref())).await {
                Ok(true) => return Ok(Persisted::Stored),
                Ok(false) => return Ok(Persisted::Declined),
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

    /// Appends `message` to `session` ([`Persistence::persist`]); once durable, it is also
    /// kept among the session's recent messages (the history fallback).
    pub async fn append(
        &self,
        session: &str,
        message: StoredMessage,
    ) -> Result<Persisted, StoreError> {
        let cached = Arc::new(message.clone());
        self.message_write(
            session,
            cached,
            PendingWrite::Append { session_id: session.to_string(), message },
        )
        .await
    }

    /// Appends `message` to `session` and applies `patch` in one write ([`Persistence::append`]
    /// otherwise): a reply with the session statistics it changed.
    pub async fn append_with(
        &self,
        session: &str,
        message: StoredMessage,
        patch: SessionPatch,
    ) -> Result<Persisted, StoreError> {
        let cached = Arc::new(message.clone());
        let write = PendingWrite::AppendWith { session_id: session.to_string(), message, patch };
        self.message_write(session, cached, write).await
    }

    /// Persists `write`, which stores `message`; once durable the message is also cached among
    /// the session's recent messages (moving the cache's mark only when it reached the store).
    async fn message_write(
        &self,
        session: &str,
        message: Arc<StoredMessage>,
        write: PendingWrite,
    ) -> Result<Persisted, StoreError> {
        let writing = Writing::begin(&self.recent, session);
        let persisted = self.persist(write).await?;
        writing.pushed(message, persisted == Persisted::Stored);
        Ok(persisted)
    }

    /// Applies `patch` to `session` ([`Persistence::persist`]).
    pub async fn patch(&self, session: &str, patch: SessionPatch) -> Result<Persisted, StoreError> {
        self.persist(PendingWrite::Update { session_id: session.to_string(), patch }).await
    }

    async fn queue(&self, write: &PendingWrite) -> Result<(), StoreError> {
        match self.outbox.push(write).await {
            Ok(()) => {
                self.metrics.set_outbox_depth(self.outbox.len());
                self.wake.notify_one();
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
            // A message the cache did not see as stored lands in the store.
            if write.appends() {
                self.recent.touch(write.session_id());
            }
            let began = self.clock.now();
            let result = write.apply(self.store.as_ref()).await;
            self.metrics.observe_store_operation(write.operation(), self.clock.now() - began);
            match result {
                // Declined (a conditional write whose condition no longer held) is done too.
                Ok(_) => applied += 1,
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

    /// The drain task: applies outbox entries whenever there are any, backing off (core's retry
    /// schedule, restarted after each success) while the store fails. Runs until `force` turns
    /// true (the shutdown deadline); entries left then stay in the outbox for the next start.
    pub async fn drain(&self, mut force: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            if self.outbox.is_empty() {
                failures = 0;
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = super::supervisor::signalled(&mut force) => return,
                }
                continue;
            }
            match self.drain_outbox_once().await {
                Ok(applied) => {
                    if applied > 0 {
                        tracing::info!(applied, "outbox drained");
                    }
                    failures = 0;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.retry.base_delay(failures);
                    tracing::warn!(%error, ?delay, waiting = self.outbox.len(), "outbox drain paused");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = super::supervisor::signalled(&mut force) => return,
                    }
                }
            }
        }
    }

    /// Writes waiting in the outbox.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// The most writes the outbox holds.
    pub fn outbox_capacity(&self) -> usize {
        self.outbox.capacity()
    }

    /// A session's stored messages followed by those still waiting in the outbox (acknowledged,
    /// not yet in the store), so a reply during a store outage still sees the whole conversation.
    /// Only the end of the stored conversation is read: enough to hold `wanted` messages with
    /// text (see `recent_history`). The read has its own short budget (`STORE_HISTORY_READ_TIMEOUT`,
    /// issue 16): when it fails or runs over, the reply goes on with what this instance has —
    /// the session's cached recent messages and the outbox's pending ones ([`recent::fallback`]),
    /// at least the current message once it was appended here.
    ///
    /// When the store's [`HistoryMark`] shows nothing was appended since this instance's cached
    /// entry, and the entry holds `wanted` messages with text or more than `max_bytes` of text
    /// (or the whole session), the entry is the answer and the messages are not read (issue 18).
    /// With an exclusive store the mark is not read either when the entry knows it is current
    /// ([`RecentMessages::serve_current`]).
    pub async fn conversation_messages(
        &self,
        session: &str,
        wanted: usize,
        max_bytes: usize,
    ) -> Vec<Arc<StoredMessage>> {
        let budget = self.history_budget;
        let read = tokio::time::timeout(budget, self.history(session, wanted, max_bytes)).await;
        let stored = match read {
            Ok(Ok(Some(History::Cached(mut messages)))) => {
                // An entry with a mark holds no queued write; one queued since is added.
                merge_pending(
                    &mut messages,
                    self.pending_appends(session).await.unwrap_or_default(),
                );
                return messages;
            }
            Ok(Ok(Some(History::Read(messages, mark, seen)))) => {
                Some((messages.into_iter().map(Arc::new).collect(), Some(mark), seen))
            }
            Ok(Ok(None)) => Some((Vec::new(), None, None)),
            Ok(Err(error)) => {
                tracing::warn!(session_id = session, %error, "history read failed; replying from this instance's recent messages");
                None
            }
            Err(_) => {
                tracing::warn!(
                    session_id = session,
                    ?budget,
                    "history read over budget; replying from this instance's recent messages"
                );
                None
            }
        };
        let pending = self.pending_appends(session).await;
        match stored {
            Some((mut messages, mark, seen)) => {
                // Writes not in the store yet (or an outbox that could not be read): the entry
                // is not the store's end.
                let known = pending.is_some();
                let queued = merge_pending(&mut messages, pending.unwrap_or_default());
                let mark = mark.filter(|_| known && !queued);
                self.recent.replace(session, &messages, mark, seen);
                messages
            }
            None => recent::fallback(self.recent.get(session), pending.unwrap_or_default()),
        }
    }

    /// The appends of `session` still waiting in the outbox; `None` when it cannot be read.
    async fn pending_appends(&self, session: &str) -> Option<Vec<StoredMessage>> {
        if self.outbox.is_empty() {
            return Some(Vec::new());
        }
        let pending = match self.outbox.pending(session).await {
            Ok(pending) => pending,
            Err(error) => {
                tracing::warn!(session_id = session, %error, "reading the outbox for history failed");
                return None;
            }
        };
        let appends = pending.into_iter().filter_map(PendingWrite::into_appended).collect();
        Some(appends)
    }

    /// Forgets the recent messages of sessions dropped from memory.
    pub fn forget<'a>(&self, sessions: impl Iterator<Item = &'a str>) {
        self.recent.forget(sessions);
    }

    /// Sessions whose recent messages are cached.
    pub fn cached_sessions(&self) -> usize {
        self.recent.len()
    }

    /// The end of `session`'s conversation: this instance's cached entry when it holds enough
    /// and is current — by itself with an exclusive store ([`RecentMessages::serve_current`]),
    /// else by the store's mark ([`RecentMessages::serve`]) — or read from the store after the
    /// mark (so a later equal mark proves nothing was appended since the read). `None` when
    /// there is no such session.
    async fn history(
        &self,
        session: &str,
        wanted: usize,
        max_bytes: usize,
    ) -> Result<Option<History>, StoreError> {
        // Nobody else appends to an exclusive store: the cache, kept in step by this process's
        // appends and told of the outbox's, is the store's end without asking (a hop through the
        // store's threads and ~10 % of a reply's instructions outside the writer; BENCHMARKS.md
        // "1j").
        if self.store.exclusive() {
            if let Some(cached) = self.recent.serve_current(session, wanted, max_bytes) {
                self.metrics.history_cache_hits.inc();
                return Ok(Some(History::Cached(cached)));
            }
        }
        // Taken before the mark: the read keeps it only if no write of the session came between.
        let seen = self.recent.generation(session);
        let mark = self.with_retry("history_mark", || self.store.history_mark(session)).await?;
        let Some(mark) = mark else { return Ok(None) };
        if let Some(cached) = self.recent.serve(session, &mark, wanted, max_bytes) {
            self.metrics.history_cache_hits.inc();
            return Ok(Some(History::Cached(cached)));
        }
        let read = self.recent_history(session, wanted).await?;
        Ok(read.map(|messages| History::Read(messages, mark, seen)))
    }

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
                .with_retry("load_history", || self.store.recent_messages(session, limit))
                .await?;
            let Some(messages) = read else { return Ok(None) };
            let with_text = messages.iter().filter(|m| super::history::sent_to_model(m)).count();
            if with_text >= wanted || messages.len() < limit {
                return Ok(Some(messages));
            }
            limit = limit.saturating_mul(2);
        }
    }

    /// Session `id` (retried).
    pub async fn load(&self, id: &str) -> Result<Option<SessionDoc>, StoreError> {
        self.with_retry("load", || self.store.load(id)).await
    }

    /// Creates a session (retried).
    pub async fn create(&self, doc: &SessionDoc) -> Result<CreateOutcome, StoreError> {
        self.with_retry("create_session", || self.store.create(doc)).await
    }

    /// Applies `patch` now (retried, never queued: the caller wants to know).
    pub async fn update_now(&self, id: &str, patch: &SessionPatch) -> Result<(), StoreError> {
        self.with_retry("reactivate", || self.store.update(id, patch)).await
    }

    /// Ends session `id` at `at` on request (`POST …/end`: final, stored as such so no
    /// instance resumes it; retried); the ended document, `None` when unknown.
    pub async fn end(&self, id: &str, at: UnixMillis) -> Result<Option<SessionDoc>, StoreError> {
        self.with_retry("end", || self.store.end(id, at, EndCause::Requested)).await
    }

    /// Stores a share token unless one exists (retried); the token in force.
    pub async fn set_share_token(
        &self,
        id: &str,
        token: &str,
    ) -> Result<Option<String>, StoreError> {
        self.with_retry("set_share_token", || self.store.set_share_token(id, token)).await
    }

    /// Claims the assistance of session `id` for `admin` atomically in the store (retried); the
    /// assisting admin after the claim, `None` when the session is unknown (issue 14).
    pub async fn claim_assistance(
        &self,
        id: &str,
        admin: &AdminRef,
    ) -> Result<Option<AdminRef>, StoreError> {
        self.with_retry("claim_assistance", || self.store.claim_assistance(id, admin)).await
    }

    /// The stored assisting admin of session `id` (one attempt, not retried: it runs on the
    /// reply path, and a failure leaves this instance's view as it is).
    pub async fn assisting_admin(&self, id: &str) -> Result<Option<Option<AdminRef>>, StoreError> {
        self.store.assisting_admin(id).await
    }

    /// Clears session `id`'s share token (retried); `None` when the session is unknown.
    pub async fn clear_share_token(&self, id: &str) -> Result<Option<()>, StoreError> {
        self.with_retry("clear_share_token", || self.store.clear_share_token(id)).await
    }

    /// The session shared under `token` (retried).
    pub async fn find_by_share_token(&self, token: &str) -> Result<Option<SessionDoc>, StoreError> {
        self.with_retry("find_by_share_token", || self.store.find_by_share_token(token)).await
    }

    /// Up to `limit` of a user's sessions (bounded by [`LIST_DEADLINE`]).
    pub async fn list_by_user(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionDoc>, StoreError> {
        bounded(self.store.list_by_user(user_id, limit)).await
    }

    /// The admin search (bounded by [`LIST_DEADLINE`]).
    pub async fn search(&self, query: &AdminSessionQuery) -> Result<Vec<SessionDoc>, StoreError> {
        bounded(self.store.search(query)).await
    }

    /// The admin metrics of a window (bounded by [`LIST_DEADLINE`]).
    pub async fn window_stats(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        now: UnixMillis,
    ) -> Result<WindowStats, StoreError> {
        bounded(self.store.window_stats(from, to, now)).await
    }

    /// Whether the store answered its last call.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Relaxed)
    }

    /// Asks the store whether it answers (the caller bounds the wait).
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.store.ping().await
    }

    /// Flushes the store (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.store.flush().await
    }

    /// Prepares the store (MongoDB: its indexes) in the background, retrying with core's backoff
    /// until it succeeds or `stop` turns true, so a database that is down at start-up delays
    /// nothing but its own indexes (PROTOCOL.md §8.3: failure is logged, never fatal).
    pub async fn prepare(&self, mut stop: watch::Receiver<bool>) {
        let mut failures: u32 = 0;
        loop {
            match self.store.prepare().await {
                Ok(()) => return,
                Err(error) if error.class() == ErrorClass::Permanent => {
                    tracing::error!(%error, "store preparation failed; not retrying (fix and restart)");
                    return;
                }
                Err(error) => {
                    failures = failures.saturating_add(1);
                    let delay = self.retry.base_delay(failures).max(STORE_PREPARE_MIN_DELAY);
                    tracing::warn!(%error, ?delay, "store preparation failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(delay) => {}
                        _ = super::supervisor::signalled(&mut stop) => return,
                    }
                }
            }
        }
    }
}

/// A listing bounded by [`LIST_DEADLINE`]; running out is a transient failure.
async fn bounded<T>(op: impl Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    match tokio::time::timeout(LIST_DEADLINE, op).await {
        Ok(result) => result,
        Err(_) => Err(StoreError::Transient("store listing timed out".into())),
    }
}

/// Appends the `pending` messages not already in `messages`; returns whether any was.
fn merge_pending(messages: &mut Vec<Arc<StoredMessage>>, pending: Vec<StoredMessage>) -> bool {
    let mut added = false;
    for message in pending {
        if !messages.iter().any(|m| m.id == message.id) {
            messages.push(Arc::new(message));
            added = true;
        }
    }
    added
}

/// A write of a session's message in flight, as the recent-messages cache counts them
/// ([`RecentMessages::begin`]): ended by its push, or abandoned when it fails or its future is
/// dropped (shutdown), so the count never stays up.
struct Writing<'a> {
    recent: &'a RecentMessages,
    session: &'a str,
    ended: bool,
}

impl<'a> Writing<'a> {
    fn begin(recent: &'a RecentMessages, session: &'a str) -> Self {
        recent.begin(session);
        Writing { recent, session, ended: false }
    }

    /// The message was made durable: `stored` in the store, or queued in the outbox.
    fn pushed(mut self, message: Arc<StoredMessage>, stored: bool) {
        self.recent.push(self.session, message, stored);
        self.ended = true;
    }
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.recent.abandon(self.session);
        }
    }
}

/// Where a reply's conversation came from ([`Persistence::history`]).
enum History {
    /// This instance's cached entry, current by the store's mark or, with an exclusive store,
    /// by its own.
    Cached(Vec<Arc<StoredMessage>>),
    /// Read from the store, after the store's mark was the one given and the cache's
    /// [`RecentMessages::generation`] before that.
    Read(Vec<StoredMessage>, HistoryMark, Option<u64>),
}

#[cfg(test)]
impl Persistence {
    /// The service over in-memory doubles, one attempt per call (unit tests).
    pub(crate) fn for_tests(store: Arc<MemoryStore>, outbox: Arc<MemoryOutbox>) -> Self {
        let retry = RetryPolicy {
            max_attempts: 1,
            initial_delay: Duration::from_millis(1),
            multiplier: 2.0,
            max_delay: Duration::from_millis(1),
            jitter: chatbox_core::retry::Jitter::None,
        };
        Persistence::new(
            store,
            outbox,
            retry,
            chatbox_core::config::HISTORY_READ_TIMEOUT_DEFAULT,
            Clock::new(),
            Arc::new(Metrics::new()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::protocol::Sender;

    fn service(store: Arc<MemoryStore>, outbox: Arc<MemoryOutbox>) -> Persistence {
        Persistence::for_tests(store, outbox)
    }

    fn message(text: &str) -> StoredMessage {
        StoredMessage::new(text, UnixMillis(1), Sender::User)
    }

    fn contents(messages: &[Arc<StoredMessage>]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[tokio::test]
    #[allow(
        clippy::disallowed_methods,
        reason = "the test stands in for another instance writing to the shared database"
    )]
    async fn replies_use_the_cached_history_until_another_writer_appends() {
        let (store, outbox) = (Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new(8)));
        let persistence = service(Arc::clone(&store), outbox);
        let hits = || persistence.metrics.history_cache_hits.get();
        let doc = SessionDoc::new("s".into(), "u".into(), UnixMillis(0));
        persistence.create(&doc).await.unwrap();
        let first = message("first");
        assert_eq!(persistence.append("s", first.clone()).await, Ok(Persisted::Stored));
        // Nothing read yet: the entry has no mark, so the store is read.
        let read = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((contents(&read), hits()), (vec!["first"], 0));
        // This instance's own appends move the entry's mark with the store's.
        let answer = StoredMessage::new("answer", UnixMillis(2), Sender::Ai);
        persistence.append("s", answer).await.unwrap();
        persistence.append("s", message("second")).await.unwrap();
        let cached = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((contents(&cached), hits()), (vec!["first", "answer", "second"], 1));
        let stored = persistence.load("s").await.unwrap().unwrap().messages;
        let cached: Vec<StoredMessage> = cached.iter().map(|m| (**m).clone()).collect();
        assert_eq!(cached, stored, "the cached history is the stored one");
        // A repeated append stores nothing and leaves the entry current.
        persistence.append("s", first).await.unwrap();
        persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!(hits(), 2);
        // Another instance sharing the database appends: the mark differs, the store is read.
        store.append_message("s", &message("from another instance")).await.unwrap();
        let read = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!(contents(&read), ["first", "answer", "second", "from another instance"]);
        assert_eq!(hits(), 2, "not served from the cache");
        // The read made the entry current again.
        let cached = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((cached, hits()), (read, 3));
    }

    /// The embedded store (issue 18, BENCHMARKS.md "1j"): nobody else appends, so a current
    /// entry is served without asking the store — not even while it is down — and an entry
    /// whose order is unknown (two writes overlapped) is read again first.
    #[tokio::test]
    async fn an_exclusive_store_serves_replies_from_the_cache_without_asking_it() {
        let (store, outbox) = (Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new(8)));
        store.set_exclusive(true);
        let persistence = service(Arc::clone(&store), outbox);
        let hits = || persistence.metrics.history_cache_hits.get();
        let doc = SessionDoc::new("s".into(), "u".into(), UnixMillis(0));
        persistence.create(&doc).await.unwrap();
        persistence.append("s", message("first")).await.unwrap();
        let read = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((contents(&read), hits()), (vec!["first"], 0), "no mark yet: read");
        persistence.append("s", message("second")).await.unwrap();
        store.set_down(true);
        let cached = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((contents(&cached), hits()), (vec!["first", "second"], 1), "not asked");
        store.set_down(false);

        // Two writes of the session at once: their pushes may not follow their commits.
        persistence.recent.begin("s");
        persistence.append("s", message("third")).await.unwrap();
        persistence.recent.abandon("s");
        let read = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((contents(&read), hits()), (vec!["first", "second", "third"], 1), "read");
        let cached = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((cached, hits()), (read, 2), "current again after the read");
    }

    /// The outbox draining into an exclusive store: an append the cache did not see as stored
    /// makes the entry read the store again; a patch (no message) leaves it current.
    #[tokio::test]
    async fn a_drained_append_makes_the_exclusive_cache_read_again_and_a_patch_does_not() {
        let (store, outbox) = (Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new(8)));
        store.set_exclusive(true);
        let persistence = service(Arc::clone(&store), Arc::clone(&outbox));
        let hits = || persistence.metrics.history_cache_hits.get();
        let doc = SessionDoc::new("s".into(), "u".into(), UnixMillis(0));
        persistence.create(&doc).await.unwrap();
        persistence.append("s", message("first")).await.unwrap();
        persistence.conversation_messages("s", 10, 32 * 1024).await;
        let patch = SessionPatch { name: Some("named".into()), ..Default::default() };
        outbox.push(&PendingWrite::Update { session_id: "s".into(), patch }).await.unwrap();
        assert_eq!(persistence.drain_outbox_once().await, Ok(1));
        persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!(hits(), 1, "a drained patch leaves the entry current");
        let late = PendingWrite::Append { session_id: "s".into(), message: message("late") };
        outbox.push(&late).await.unwrap();
        assert_eq!(persistence.drain_outbox_once().await, Ok(1));
        let read = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!((contents(&read), hits()), (vec!["first", "late"], 1), "read again");
    }

    #[tokio::test]
    async fn writes_queue_behind_waiting_ones_and_drain_in_order() {
        let (store, outbox) = (Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new(8)));
        let persistence = service(Arc::clone(&store), Arc::clone(&outbox));
        let doc = SessionDoc::new("s".into(), "u".into(), UnixMillis(0));
        assert_eq!(persistence.create(&doc).await, Ok(CreateOutcome::Created));
        // A write left over from an outage waits in the outbox.
        let first = PendingWrite::Append { session_id: "s".into(), message: message("first") };
        outbox.push(&first).await.unwrap();
        // A new write queues behind it although the store answers, to keep the order.
        assert_eq!(persistence.append("s", message("second")).await, Ok(Persisted::Queued));
        let history = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!(
            history.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(persistence.drain_outbox_once().await, Ok(2));
        assert_eq!(persistence.outbox_len(), 0);
        let stored = persistence.load("s").await.unwrap().unwrap();
        assert_eq!(
            stored.messages.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["first", "second"]
        );
        assert_eq!(persistence.append("s", message("third")).await, Ok(Persisted::Stored));
    }

    #[tokio::test]
    async fn history_falls_back_to_the_recent_messages_and_the_outbox_while_the_store_is_down() {
        let (store, outbox) = (Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new(8)));
        let persistence = service(Arc::clone(&store), Arc::clone(&outbox));
        let doc = SessionDoc::new("s".into(), "u".into(), UnixMillis(0));
        persistence.create(&doc).await.unwrap();
        persistence.append("s", message("before")).await.unwrap();
        let up = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!(up.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(), ["before"]);

        store.set_down(true);
        let during = StoredMessage::new("during", UnixMillis(2), Sender::User);
        assert_eq!(persistence.append("s", during).await, Ok(Persisted::Queued));
        // Written by another instance's outbox replay, say: pending here but never cached.
        let elsewhere = StoredMessage::new("elsewhere", UnixMillis(3), Sender::Ai);
        let write = PendingWrite::Append { session_id: "s".into(), message: elsewhere };
        outbox.push(&write).await.unwrap();
        let down = persistence.conversation_messages("s", 10, 32 * 1024).await;
        assert_eq!(
            down.iter().map(|m| m.content.as_str()).collect::<Vec<_>>(),
            ["before", "during", "elsewhere"],
            "the cached conversation, then what waits in the outbox"
        );
        assert!(persistence.conversation_messages("unknown", 10, 32 * 1024).await.is_empty());
    }

    #[tokio::test]
    async fn a_permanent_failure_is_not_durable() {
        let persistence = service(Arc::new(MemoryStore::new()), Arc::new(MemoryOutbox::new(8)));
        // The memory store refuses appends to unknown sessions permanently.
        assert!(persistence.append("missing", message("x")).await.is_err());
        assert_eq!(persistence.outbox_len(), 0, "not kept: retrying cannot help");
        assert!(persistence.is_ready(), "a permanent refusal says nothing about readiness");
    }
}
