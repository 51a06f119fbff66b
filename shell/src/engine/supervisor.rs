//! The task supervisor: every background task is spawned here, so shutdown can wait for all of
//! them (STYLE.md §7 bans bare `tokio::spawn` elsewhere). It counts live tasks and wakes
//! `wait_idle` when the count reaches zero.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

/// Tracks spawned tasks.
#[derive(Debug, Clone, Default)]
pub struct Supervisor {
    inner: Arc<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    live: AtomicUsize,
    idle: Notify,
}

/// Decrements the live count when the task ends, however it ends (including panics).
struct Token(Arc<Inner>);

impl Drop for Token {
    fn drop(&mut self) {
        if self.0.live.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

impl Supervisor {
    /// A supervisor with no tasks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Spawns a tracked task named `name` (for logs).
    pub fn spawn<F>(&self, name: &'static str, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.inner.live.fetch_add(1, Ordering::AcqRel);
        let token = Token(Arc::clone(&self.inner));
        #[allow(clippy::disallowed_methods)] // the supervisor is the one place that spawns
        // The JoinHandle is dropped on purpose: the token, not the handle, tracks the task.
        drop(tokio::spawn(async move {
            let _token = token;
            tracing::trace!(task = name, "task started");
            task.await;
        }));
    }

    /// Tasks still running.
    pub fn live(&self) -> usize {
        self.inner.live.load(Ordering::Acquire)
    }

    /// Waits until no task is running.
    pub async fn wait_idle(&self) {
        loop {
            let notified = self.inner.idle.notified();
            if self.live() == 0 {
                return;
            }
            notified.await;
        }
    }
}

/// Resolves once `signal` turns true (or its sender is gone). Unlike `wait_for`, holds no borrow
/// of the value afterwards, so it can be used in `select!` arms that await further.
pub async fn signalled(signal: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = signal.wait_for(|s| *s).await;
}
