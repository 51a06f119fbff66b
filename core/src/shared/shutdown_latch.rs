//! The shutdown plan shared by the accept loop, the connections and the replies.
//!
//! One mutex around [`ShutdownPlan`] orders "register a connection" against "begin the
//! shutdown": a connection is either registered before the close broadcast (and so is counted,
//! then closed or force-closed) or refused — it can never slip in after the broadcast and be left
//! open. An atomic flag gives tasks a lock-free "are we shutting down?".

use std::time::Duration;

use crate::shutdown::{Effect, Phase, ShutdownPlan};
use crate::sync::atomic::{AtomicBool, Ordering};
use crate::sync::{Mutex, MutexGuard};
use crate::time::Instant;

/// A thread-safe [`ShutdownPlan`] plus a fast "triggered" flag.
#[derive(Debug)]
pub struct ShutdownLatch {
    plan: Mutex<ShutdownPlan>,
    triggered: AtomicBool,
}

impl Default for ShutdownLatch {
    fn default() -> Self {
        Self::new()
    }
}

impl ShutdownLatch {
    /// A latch in the accepting phase.
    pub fn new() -> Self {
        Self { plan: Mutex::new(ShutdownPlan::new()), triggered: AtomicBool::new(false) }
    }

    fn plan(&self) -> MutexGuard<'_, ShutdownPlan> {
        self.plan.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Whether shutdown has begun (lock-free).
    pub fn is_triggered(&self) -> bool {
        self.triggered.load(Ordering::Acquire)
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.plan().phase()
    }

    /// Registers an upgraded connection; `false` (refuse it) once shutdown has begun.
    #[must_use]
    pub fn try_open_connection(&self) -> bool {
        let mut plan = self.plan();
        if !plan.is_accepting() {
            return false;
        }
        plan.connection_opened();
        true
    }

    /// Registers a reply about to start; `false` (refuse it) once shutdown has begun.
    #[must_use]
    pub fn try_start_reply(&self) -> bool {
        let mut plan = self.plan();
        if !plan.is_accepting() {
            return false;
        }
        plan.reply_started();
        true
    }

    /// Begins the shutdown (idempotent) and returns the effects to perform.
    #[must_use]
    pub fn begin(&self, now: Instant, timeout: Duration) -> Vec<Effect> {
        let mut plan = self.plan();
        let effects = plan.begin(now, timeout);
        self.triggered.store(true, Ordering::Release);
        effects
    }

    /// A registered connection closed.
    #[must_use]
    pub fn connection_closed(&self, now: Instant) -> Vec<Effect> {
        self.plan().connection_closed(now)
    }

    /// A registered reply ended.
    #[must_use]
    pub fn reply_finished(&self, now: Instant) -> Vec<Effect> {
        self.plan().reply_finished(now)
    }

    /// Storage finished flushing.
    #[must_use]
    pub fn storage_flushed(&self, now: Instant) -> Vec<Effect> {
        self.plan().storage_flushed(now)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout).
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.plan().poll_timeout()
    }

    /// Moves the plan on at `now`.
    #[must_use]
    pub fn handle_timeout(&self, now: Instant) -> Vec<Effect> {
        self.plan().handle_timeout(now)
    }

    /// The hard deadline (`Instant::MAX` before `begin`).
    pub fn deadline(&self) -> Instant {
        self.plan().deadline()
    }

    /// Connections registered and not yet closed.
    pub fn open_connections(&self) -> usize {
        self.plan().open_connections()
    }
}
