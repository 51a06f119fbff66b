//! The history fallback (issue 16): a bounded cache of each session's recent messages, kept by
//! the persistence service from what this instance stored and read, so a reply can go on when
//! the history read before the model call fails or runs over `STORE_HISTORY_READ_TIMEOUT`.
//! Bounded per session by core's [`HISTORY_CACHE_MESSAGES`] and [`HISTORY_CACHE_BYTES`] (the
//! newest message is always kept), and across sessions by the live sessions: the sweeper
//! forgets a session's entry when the session leaves memory.
//!
//! [`fallback`] is the choice made when the store cannot answer: the cached messages and the
//! outbox's pending ones, merged by id in time order — which, for a session this instance has
//! not seen before, is at least the current message (its append is cached before the read).

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

pub use chatbox_core::budgets::{HISTORY_CACHE_BYTES, HISTORY_CACHE_MESSAGES};

use crate::engine::store::StoredMessage;

/// One session's recent messages, oldest first, and their content bytes.
#[derive(Debug, Default)]
struct Recent {
    messages: VecDeque<StoredMessage>,
    bytes: usize,
}

impl Recent {
    fn push(&mut self, message: StoredMessage, (max_messages, max_bytes): (usize, usize)) {
        if self.messages.iter().any(|m| m.id == message.id) {
            return;
        }
        self.bytes += message.content.len();
        self.messages.push_back(message);
        while self.messages.len() > 1
            && (self.messages.len() > max_messages || self.bytes > max_bytes)
        {
            if let Some(old) = self.messages.pop_front() {
                self.bytes -= old.content.len();
            }
        }
    }
}

/// The cache: per session, its recent messages within the bounds.
#[derive(Debug)]
pub struct RecentMessages {
    sessions: Mutex<HashMap<String, Recent>>,
    max_messages: usize,
    max_bytes: usize,
}

impl Default for RecentMessages {
    fn default() -> Self {
        Self::new(HISTORY_CACHE_MESSAGES, HISTORY_CACHE_BYTES)
    }
}

impl RecentMessages {
    /// An empty cache keeping at most `max_messages` and `max_bytes` of content per session.
    pub fn new(max_messages: usize, max_bytes: usize) -> Self {
        Self { sessions: Mutex::default(), max_messages: max_messages.max(1), max_bytes }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Recent>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// `message` was made durable in `session` (stored or queued in the outbox).
    pub fn push(&self, session: &str, message: &StoredMessage) {
        let bounds = (self.max_messages, self.max_bytes);
        self.lock().entry(session.to_string()).or_default().push(message.clone(), bounds);
    }

    /// The store answered with `messages` (the end of `session`'s conversation, oldest first):
    /// they replace what was cached, within the bounds.
    pub fn replace(&self, session: &str, messages: &[StoredMessage]) {
        let bounds = (self.max_messages, self.max_bytes);
        let mut fresh = Recent::default();
        let start = messages.len().saturating_sub(self.max_messages);
        for message in &messages[start..] {
            fresh.push(message.clone(), bounds);
        }
        self.lock().insert(session.to_string(), fresh);
    }

    /// The cached messages of `session`, oldest first.
    pub fn get(&self, session: &str) -> Vec<StoredMessage> {
        self.lock().get(session).map(|r| r.messages.iter().cloned().collect()).unwrap_or_default()
    }

    /// Drops the entries of sessions that left memory.
    pub fn forget<'a>(&self, sessions: impl Iterator<Item = &'a str>) {
        let mut map = self.lock();
        for id in sessions {
            map.remove(id);
        }
    }

    /// Sessions with an entry.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether no session has an entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The conversation a reply uses when the store cannot give it: `cached` and `pending` (the
/// outbox's waiting appends) merged — each message once, by id — in time order (stable, so
/// messages of the same millisecond keep the order they were made in).
pub fn fallback(
    cached: Vec<StoredMessage>,
    pending: impl IntoIterator<Item = StoredMessage>,
) -> Vec<StoredMessage> {
    let mut messages = cached;
    for message in pending {
        if !messages.iter().any(|m| m.id == message.id) {
            messages.push(message);
        }
    }
    messages.sort_by_key(|m| m.ts);
    messages
}

#[cfg(test)]
mod tests {
    use chatbox_core::protocol::Sender;
    use chatbox_core::UnixMillis;

    use super::*;

    fn message(text: &str, ts: i64) -> StoredMessage {
        StoredMessage::new(text, UnixMillis(ts), Sender::User)
    }

    fn texts(messages: &[StoredMessage]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    #[test]
    fn the_cache_keeps_the_newest_messages_within_its_count_and_byte_bounds() {
        let cache = RecentMessages::new(3, 10);
        for (n, text) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.push("s", &message(text, n as i64));
        }
        assert_eq!(texts(&cache.get("s")), ["b", "c", "d"], "the count bound drops the oldest");
        cache.push("s", &message("0123456789", 5));
        assert_eq!(texts(&cache.get("s")), ["0123456789"], "the byte bound drops the oldest");
        cache.push("s", &message("far too long for ten bytes", 6));
        assert_eq!(texts(&cache.get("s")), ["far too long for ten bytes"], "the newest stays");
        assert!(cache.get("other").is_empty(), "per session");
    }

    #[test]
    fn a_message_is_cached_once_and_a_store_read_replaces_the_entry() {
        let cache = RecentMessages::new(2, 1024);
        let repeated = message("again", 1);
        cache.push("s", &repeated);
        cache.push("s", &repeated);
        assert_eq!(texts(&cache.get("s")), ["again"]);
        let read = [message("x", 1), message("y", 2), message("z", 3)];
        cache.replace("s", &read);
        assert_eq!(texts(&cache.get("s")), ["y", "z"], "the end of the read, within the bound");
        cache.forget(["s"].into_iter());
        assert!(cache.is_empty());
    }

    #[test]
    fn the_fallback_merges_cached_and_pending_once_each_in_time_order() {
        let before = message("before the outage", 1);
        let during = message("during the outage", 3);
        let answer = StoredMessage::new("an answer", UnixMillis(2), Sender::Ai);
        let cached = vec![before.clone(), answer.clone(), during.clone()];
        // The outbox holds the outage's writes, some of which this instance also cached.
        let merged = fallback(cached, [during.clone(), message("queued elsewhere", 4)]);
        assert_eq!(
            texts(&merged),
            ["before the outage", "an answer", "during the outage", "queued elsewhere"]
        );
    }

    #[test]
    fn with_nothing_cached_the_fallback_is_what_waits_in_the_outbox_or_nothing() {
        let current = message("the current message", 1);
        assert_eq!(texts(&fallback(Vec::new(), [current])), ["the current message"]);
        assert!(fallback(Vec::new(), []).is_empty());
    }
}
