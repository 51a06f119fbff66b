//! The replies in progress that a `stop` frame can end (issue 15): one entry per streamed reply
//! while it runs, by session. A stop flips the signal of every reply of the session; each
//! reply's stream loop sees it, cancels its provider request and ends as
//! [`super::ReplyEnd::Stopped`]. A session's replies run one at a time here (its user's ordered
//! worker, `frames::order_key`), but the registry does not count on it: the reply loop reads a
//! closed signal as a stop, so registering one reply must never drop another's sender (it once
//! did, and a second device's message stopped the first device's reply). A stop for a session
//! with nothing registered does nothing (the issue: "answered by nothing").

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;

type Entries = HashMap<String, Vec<(u64, watch::Sender<bool>)>>;

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
        lock(&self.entries).entry(session.to_string()).or_default().push((token, tx));
        StopGuard {
            entries: Arc::clone(&self.entries),
            session: session.to_string(),
            token,
            signal,
        }
    }

    /// Stops the replies of `session` in progress; `false` when none runs here.
    pub fn stop(&self, session: &str) -> bool {
        match lock(&self.entries).get(session) {
            Some(replies) => {
                for (_, tx) in replies {
                    tx.send_replace(true);
                }
                !replies.is_empty()
            }
            None => false,
        }
    }

    /// Replies registered now.
    pub fn len(&self) -> usize {
        lock(&self.entries).values().map(Vec::len).sum()
    }

    /// Whether no reply is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for StopGuard {
    fn drop(&mut self) {
        let mut entries = lock(&self.entries);
        // Other replies of the same session may be registered: leave them.
        if let Some(replies) = entries.get_mut(&self.session) {
            replies.retain(|(token, _)| *token != self.token);
            if replies.is_empty() {
                entries.remove(&self.session);
            }
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

    #[tokio::test]
    async fn a_second_reply_of_a_session_does_not_stop_the_first_and_a_stop_reaches_both() {
        let stops = Stops::default();
        let mut first = stops.register("s");
        let mut second = stops.register("s");
        let other = stops.register("t");
        assert_eq!(stops.len(), 3);
        // The reply loop waits with `signalled`, which a closed signal also ends: the first
        // reply's signal must still be open and unset.
        assert!(first.signal.has_changed().is_ok(), "the first reply's signal is still open");
        assert!(!*first.signal.borrow());
        assert!(stops.stop("s"));
        crate::engine::supervisor::signalled(&mut first.signal).await;
        crate::engine::supervisor::signalled(&mut second.signal).await;
        assert!(*first.signal.borrow() && *second.signal.borrow(), "both replies see the stop");
        assert!(!*other.signal.borrow(), "another session's reply goes on");
        drop(second);
        assert_eq!(stops.len(), 2, "the first reply stays registered after the second ends");
        drop((first, other));
        assert!(stops.is_empty() && !stops.stop("s"));
    }
}
