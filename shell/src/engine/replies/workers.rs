//! Per-session ordered processing (PROTOCOL.md §10 item 27): the `user_message` and
//! `model_select` frames of one session are handled one after another, in arrival order, by a
//! worker task that exists only while that session has work queued — so the number of workers is
//! bounded by the sessions with work in flight, never by uptime.
//!
//! A job is queued only while holding the map lock, and a worker retires only after seeing its
//! queue empty while holding the same lock, so no job can be queued to a retiring worker.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::engine::supervisor::Supervisor;

/// One unit of work for a session.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

type Queues = Arc<Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>>;

/// The queues of the sessions that have work.
#[derive(Debug)]
pub struct Workers {
    queues: Queues,
    supervisor: Supervisor,
}

impl Workers {
    /// No queues; workers are spawned through `supervisor`.
    pub fn new(supervisor: Supervisor) -> Self {
        Self { queues: Queues::default(), supervisor }
    }

    /// Queues `job` behind the earlier jobs of `key`, starting a worker if none runs.
    pub fn submit(&self, key: &str, job: Job) {
        let mut queues = lock(&self.queues);
        let job = match queues.get(key) {
            Some(tx) => match tx.send(job) {
                Ok(()) => return,
                Err(mpsc::error::SendError(job)) => job,
            },
            None => job,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        // A fresh channel with its receiver alive accepts the send.
        let _ = tx.send(job);
        queues.insert(key.to_string(), tx);
        drop(queues);
        let queues = Arc::clone(&self.queues);
        self.supervisor.spawn("session-worker", run(queues, key.to_string(), rx));
    }

    /// Sessions with a worker now.
    pub fn len(&self) -> usize {
        lock(&self.queues).len()
    }

    /// Whether no worker runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn lock(queues: &Queues) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Job>>> {
    queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn run(queues: Queues, key: String, mut rx: mpsc::UnboundedReceiver<Job>) {
    loop {
        while let Ok(job) = rx.try_recv() {
            job.await;
        }
        let mut map = lock(&queues);
        if rx.is_empty() {
            map.remove(&key);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_of_one_key_run_in_order_and_the_worker_retires() {
        let workers = Workers::new(Supervisor::new());
        let (tx, mut rx) = mpsc::unbounded_channel();
        for n in 0..3 {
            let tx = tx.clone();
            workers.submit(
                "s",
                Box::pin(async move {
                    tokio::task::yield_now().await;
                    let _ = tx.send(n);
                }),
            );
        }
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(rx.recv().await.unwrap());
        }
        assert_eq!(seen, vec![0, 1, 2]);
        while !workers.is_empty() {
            tokio::task::yield_now().await;
        }
    }
}
