//! The replies in progress that a `stop` frame can end (issue 15): one entry per session while
//! its streamed reply runs (a session's replies run one at a time in its ordered worker). A stop
//! flips the entry's signal; the reply's stream loop sees it, cancels the provider request and
//! ends as [`super::ReplyEnd::Stopped`]. A stop for a session with nothing registered does
//! nothing (the issue: "answered by nothing").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

type Entries = HashMap<String, (u64, watch::Sender<bool>)>;

/// The stop signals of the replies streaming now, by session.
#[derive(Debug, Default)]
pub struct Stops {
    entries: Arc<Mutex<Entries>>,
    next: Mutex<u64>,
}

/// A reply's registration: its stop signal, unregistered when dropped.
#[derive(Debug)]
pub struct StopGuard {
    entries: Arc<Mutex<Entries>>,
    session: String,
    token: u64,
    /// Turns true when the reply must stop.
    pub signal: watch::Receiver<bool>,
}

fn lock(entries: &Mutex<Entries>) -> MutexGuard<'_, Entries> {
    entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Stops {
    /// Registers the reply of `session` now starting.
    pub fn register(&self, session: &str) -> StopGuard {
        let token = {
            let mut next = self.next.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            *next += 1;
            *next
        };
        let (tx, signal) = watch::channel(false);
        lock(&self.entries).insert(session.to_string(), (token, tx));
        StopGuard {
            entries: Arc::clone(&self.entries),
            session: session.to_string(),
            token,
            signal,
        }
    }

    /// Stops the reply of `session` in progress; `false` when none runs here.
    pub fn stop(&self, session: &str) -> bool {
        match lock(&self.entries).get(session) {
            Some((_, tx)) => {
                tx.send_replace(true);
                true
            }
            None => false,
        }
    }

    /// Replies registered now.
    pub fn len(&self) -> usize {
        lock(&self.entries).len()
    }

    /// Whether no reply is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut entries = lock(&self.entries);
        // A later reply of the same session may have registered meanwhile: leave it.
        if entries.get(&self.session).is_some_and(|(token, _)| *token == self.token) {
            entries.remove(&self.session);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_reaches_the_registered_reply_only_while_it_runs() {
        let stops = Stops::default();
        assert!(!stops.stop("s"), "nothing in flight");
        let guard = stops.register("s");
        assert!(!*guard.signal.borrow());
        assert!(stops.stop("s"));
        assert!(*guard.signal.borrow(), "the reply sees the stop");
        let newer = stops.register("s");
        drop(guard);
        assert_eq!(stops.len(), 1, "the older reply's end leaves the newer one registered");
        drop(newer);
        assert!(stops.is_empty() && !stops.stop("s"));
    }
}
