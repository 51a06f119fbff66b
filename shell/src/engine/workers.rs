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

use super::hub::Engine;

/// One unit of work for a session.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The queues of the sessions that have work.
#[derive(Debug, Default)]
pub struct Workers {
    queues: Mutex<HashMap<String, mpsc::UnboundedSender<Job>>>,
}

impl Workers {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, mpsc::UnboundedSender<Job>>> {
        self.queues.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Queues `job` behind the earlier jobs of `key`, starting a worker if none runs.
    pub fn submit(&self, engine: &Arc<Engine>, key: &str, job: Job) {
        let mut queues = self.lock();
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
        let engine = Arc::clone(engine);
        let key = key.to_string();
        engine.supervisor.clone().spawn("session-worker", run(engine, key, rx));
    }

    /// Sessions with a worker now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no worker runs.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

async fn run(engine: Arc<Engine>, key: String, mut rx: mpsc::UnboundedReceiver<Job>) {
    loop {
        while let Ok(job) = rx.try_recv() {
            job.await;
        }
        let mut queues = engine.workers.lock();
        if rx.is_empty() {
            queues.remove(&key);
            return;
        }
    }
}
