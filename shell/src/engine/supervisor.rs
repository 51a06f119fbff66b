//! The task supervisor: every background task is spawned here, so shutdown can wait for all of
//! them (STYLE.md §7 bans bare `tokio::spawn` elsewhere). It counts live tasks and wakes
//! `wait_idle` when the count reaches zero.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use futures_util::FutureExt;
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
        tracing::trace!(task = name, "task started");
        // `map` rather than an `async move` wrapper: an async block that captures a future and
        // awaits it keeps two copies of its state (the capture and the awaitee), which doubled
        // every connection task's memory. The token drops when the task ends or is dropped.
        let tracked = task.map(move |()| drop(token));
        #[allow(clippy::disallowed_methods)] // the supervisor is the one place that spawns
        // The JoinHandle is dropped on purpose: the token, not the handle, tracks the task.
        drop(tokio::spawn(tracked));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn wait_idle_returns_once_every_task_has_ended() {
        let supervisor = Supervisor::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        supervisor.spawn("waits", async move {
            let _ = rx.await;
        });
        assert_eq!(supervisor.live(), 1);
        let idle = supervisor.wait_idle();
        tokio::pin!(idle);
        assert!(futures_util::poll!(idle.as_mut()).is_pending(), "a task is still running");
        tx.send(()).expect("the task holds the receiver");
        idle.await;
        assert_eq!(supervisor.live(), 0);
    }

    #[tokio::test]
    async fn a_panicking_task_is_no_longer_counted() {
        let supervisor = Supervisor::new();
        supervisor.spawn("panics", async { panic!("deliberate panic in a supervised task") });
        supervisor.wait_idle().await;
        assert_eq!(supervisor.live(), 0);
    }

    #[test]
    fn tasks_dropped_with_the_runtime_are_no_longer_counted() {
        let supervisor = Supervisor::new();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread runtime builds");
        runtime.block_on(async {
            supervisor.spawn("never ends", std::future::pending());
        });
        assert_eq!(supervisor.live(), 1);
        drop(runtime);
        assert_eq!(supervisor.live(), 0, "dropping the task drops its token");
    }
}
