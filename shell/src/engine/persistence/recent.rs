//! The history fallback (issue 16): a bounded cache of each session's recent messages, kept by
//! the persistence service from what this instance stored and read, so a reply can go on when
//! the history read before the model call fails or runs over `STORE_HISTORY_READ_TIMEOUT`.
//! Bounded per session by core's [`HISTORY_CACHE_MESSAGES`] and [`HISTORY_CACHE_BYTES`] (the
//! newest message is always kept), and across sessions by the live sessions: the sweeper
//! forgets a session's entry when the session leaves memory.
//!
//! The same cache also spares a reply its history read (issue 18): an entry read from the store
//! carries the store's [`HistoryMark`] (message count and last id) as of that read, and this
//! instance's own stored appends move it on. Before a reply, the store's mark is read (one row);
//! when it equals the entry's, nothing was appended since — by this instance or any other, since
//! messages are only ever appended — so the entry is the end of the stored conversation and is
//! used when it holds enough of it ([`RecentMessages::serve`]). An entry holding a write still in
//! the outbox has no mark: it serves only as the fallback. With a store this process alone
//! writes (the embedded store) the mark is not even read: every append is written here or from
//! the outbox, which says so ([`RecentMessages::touch`]), so an entry with a mark is the store's
//! end ([`RecentMessages::serve_current`]) unless a write of the session is in flight, or two
//! overlapped and their order in the store is unknown. A store read keeps its mark only when no
//! write of the session began or was applied while it ran ([`RecentMessages::generation`]).
//!
//! [`fallback`] is the choice made when the store cannot answer: the cached messages and the
//! outbox's pending ones, merged by id in time order — which, for a session this instance has
//! not seen before, is at least the current message (its append is cached before the read).
//!
//! Messages are held behind [`Arc`], so serving a reply's history (up to
//! `LLM_HISTORY_MAX_MESSAGES` of them, each with its metadata map) copies pointers, not
//! messages: the copies were a fifth of the server's allocations per reply (BENCHMARKS.md "1d").

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

pub use chatbox_core::budgets::{HISTORY_CACHE_BYTES, HISTORY_CACHE_MESSAGES};

use crate::engine::store::{HistoryMark, StoredMessage};

/// One session's recent messages, oldest first, and their content bytes.
#[derive(Debug, Default)]
struct Recent {
    messages: VecDeque<Arc<StoredMessage>>,
    bytes: usize,
    /// The store's mark these messages end at; `None` when unknown (module doc).
    mark: Option<HistoryMark>,
    /// Writes of the session begun and not yet pushed or abandoned.
    writing: u32,
    /// Whether two of those overlapped since `writing` was last zero: their commits and their
    /// pushes may be in different orders, so the entry cannot know the store's order.
    overlapped: bool,
    /// Counts the writes of the session begun here and applied from the outbox: a store read
    /// during which it moved cannot say where the store's end is ([`RecentMessages::replace`]).
    generation: u64,
}

impl Recent {
    /// One write ended; whether it overlapped another (then the entry's order is unknown).
    fn end_write(&mut self) -> bool {
        self.writing = self.writing.saturating_sub(1);
        let overlapped = self.overlapped;
        if self.writing == 0 {
            self.overlapped = false;
        }
        overlapped
    }

    /// These messages, when they hold all a reply would read at `mark` ([`Recent::covers`]).
    fn served(
        &self,
        mark: &HistoryMark,
        wanted: usize,
        max_bytes: usize,
    ) -> Option<Vec<Arc<StoredMessage>>> {
        self.covers(mark, wanted, max_bytes).then(|| self.messages.iter().cloned().collect())
    }

    /// Adds `message` unless it is already cached; returns whether it was added.
    fn push(
        &mut self,
        message: Arc<StoredMessage>,
        (max_messages, max_bytes): (usize, usize),
    ) -> bool {
        if self.messages.iter().any(|m| m.id == message.id) {
            return false;
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
        true
    }

    /// Whether these messages, ending at the store's `mark`, hold all the conversation a reply
    /// would read: every stored message, or `wanted` with text, or more text than `max_bytes`
    /// (the conversation is cut before its oldest message either way).
    fn covers(&self, mark: &HistoryMark, wanted: usize, max_bytes: usize) -> bool {
        if self.mark.as_ref() != Some(mark) {
            return false;
        }
        if self.messages.len() as u64 == mark.count {
            return true;
        }
        // `bytes` is the text the model would get: a message without text adds none.
        self.bytes > max_bytes
            || self.messages.iter().filter(|m| super::super::history::sent_to_model(m)).count()
                >= wanted.max(1)
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

    /// Widens the bounds to what a reply reads (`wanted` messages, `max_bytes` of text) plus the
    /// fallback's own bounds, so that a long conversation can still be served from the cache.
    pub fn widen(&mut self, wanted: usize, max_bytes: usize) {
        self.max_messages = self.max_messages.max(wanted);
        self.max_bytes = self.max_bytes.max(max_bytes.saturating_add(HISTORY_CACHE_BYTES));
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Recent>> {
        self.sessions.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A write of a message to `session` begins; [`RecentMessages::push`] or
    /// [`RecentMessages::abandon`] ends it.
    pub fn begin(&self, session: &str) {
        let mut map = self.lock();
        let recent = map.entry(session.to_string()).or_default();
        recent.writing += 1;
        recent.overlapped |= recent.writing > 1;
        recent.generation = recent.generation.wrapping_add(1);
    }

    /// A write of `session` waiting in the outbox is being applied to the store: the entry no
    /// longer knows the store's end, and a read in progress cannot tell it either.
    pub fn touch(&self, session: &str) {
        let mut map = self.lock();
        let recent = map.entry(session.to_string()).or_default();
        recent.mark = None;
        recent.generation = recent.generation.wrapping_add(1);
    }

    /// Taken before a store read of `session`: what [`RecentMessages::replace`] needs to know
    /// that no write of the session began or was applied while the read ran. `None` while a
    /// write is in flight (it may or may not be in what the read sees).
    pub fn generation(&self, session: &str) -> Option<u64> {
        let map = self.lock();
        match map.get(session) {
            Some(recent) if recent.writing > 0 => None,
            Some(recent) => Some(recent.generation),
            None => Some(0),
        }
    }

    /// A write begun with [`RecentMessages::begin`] failed (or was dropped): the entry no longer
    /// knows the store's end.
    pub fn abandon(&self, session: &str) {
        if let Some(recent) = self.lock().get_mut(session) {
            recent.end_write();
            // A failure can be ambiguous (a store call timed out after the write committed):
            // the store may hold a message the entry does not.
            recent.mark = None;
        }
    }

    /// `message` was made durable in `session`: `stored` in the store (the entry's mark moves
    /// on by this message), or queued in the outbox (the entry loses its mark). Ends the write
    /// begun for it ([`RecentMessages::begin`]), if any.
    pub fn push(&self, session: &str, message: Arc<StoredMessage>, stored: bool) {
        let bounds = (self.max_messages, self.max_bytes);
        let id = message.id.clone();
        let mut map = self.lock();
        let recent = map.entry(session.to_string()).or_default();
        let added = recent.push(message, bounds);
        let overlapped = recent.end_write();
        if !stored || overlapped {
            recent.mark = None;
        } else if added {
            // A message this instance stored after the marked ones: one more, and the last —
            // unless something else was appended meanwhile, which the next check sees.
            recent.mark = recent
                .mark
                .take()
                .map(|mark| HistoryMark { count: mark.count.saturating_add(1), last_id: Some(id) });
        }
    }

    /// The store answered with `messages` (the end of `session`'s conversation, oldest first,
    /// read after the store's mark was `mark`; `None` when they include writes still in the
    /// outbox): they replace what was cached, within the bounds. The mark is kept only when
    /// `seen`, the [`RecentMessages::generation`] taken before the read, is still current: a
    /// write that began or was applied meanwhile may be missing from the read, or counted in
    /// the messages and not in the mark.
    pub fn replace(
        &self,
        session: &str,
        messages: &[Arc<StoredMessage>],
        mark: Option<HistoryMark>,
        seen: Option<u64>,
    ) {
        let bounds = (self.max_messages, self.max_bytes);
        let mut fresh = Recent::default();
        let start = messages.len().saturating_sub(self.max_messages);
        for message in &messages[start..] {
            fresh.push(Arc::clone(message), bounds);
        }
        let mut map = self.lock();
        // The writes in flight go on: their pushes still end them.
        if let Some(old) = map.get(session) {
            (fresh.writing, fresh.overlapped) = (old.writing, old.overlapped);
            fresh.generation = old.generation;
        }
        fresh.mark = mark.filter(|_| seen == Some(fresh.generation));
        map.insert(session.to_string(), fresh);
    }

    /// The cached end of `session`'s conversation when the store's mark is `mark` and the entry
    /// holds all a reply would read ([`Recent::covers`]); `None` means "read the store".
    pub fn serve(
        &self,
        session: &str,
        mark: &HistoryMark,
        wanted: usize,
        max_bytes: usize,
    ) -> Option<Vec<Arc<StoredMessage>>> {
        self.lock().get(session)?.served(mark, wanted, max_bytes)
    }

    /// The cached end of `session`'s conversation, trusted as the store's end without reading
    /// the store's mark: for a store this process alone writes, where every append goes through
    /// this cache ([`crate::engine::store::SessionStore::exclusive`]). Only an entry that has a
    /// mark, with no write of the session in flight (one may be durable and not pushed yet), that
    /// holds all a reply would read.
    pub fn serve_current(
        &self,
        session: &str,
        wanted: usize,
        max_bytes: usize,
    ) -> Option<Vec<Arc<StoredMessage>>> {
        let map = self.lock();
        let recent = map.get(session)?;
        let mark = recent.mark.as_ref().filter(|_| recent.writing == 0)?;
        recent.served(mark, wanted, max_bytes)
    }

    /// The cached messages of `session`, oldest first.
    pub fn get(&self, session: &str) -> Vec<Arc<StoredMessage>> {
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
    cached: Vec<Arc<StoredMessage>>,
    pending: impl IntoIterator<Item = StoredMessage>,
) -> Vec<Arc<StoredMessage>> {
    let mut messages = cached;
    for message in pending {
        if !messages.iter().any(|m| m.id == message.id) {
            messages.push(Arc::new(message));
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

    fn message(text: &str, ts: i64) -> Arc<StoredMessage> {
        Arc::new(StoredMessage::new(text, UnixMillis(ts), Sender::User))
    }

    fn texts(messages: &[Arc<StoredMessage>]) -> Vec<&str> {
        messages.iter().map(|m| m.content.as_str()).collect()
    }

    /// The trusted entry of an exclusive store: served only with a mark, no write in flight,
    /// and no overlap of two writes since the store's order was last known.
    #[test]
    fn an_entry_is_current_only_with_a_mark_and_no_write_in_flight_or_overlapped() {
        let cache = RecentMessages::new(10, 1024);
        let first = message("first", 1);
        let mark = HistoryMark::of(&[(*first).clone()]);
        cache.replace("s", std::slice::from_ref(&first), Some(mark), cache.generation("s"));
        assert_eq!(cache.serve_current("s", 10, 1024).as_deref().map(texts), Some(vec!["first"]));
        cache.begin("s");
        assert_eq!(cache.serve_current("s", 10, 1024), None, "a write may be durable, not pushed");
        cache.push("s", message("second", 2), true);
        let served = cache.serve_current("s", 10, 1024).expect("current, mark moved on");
        assert_eq!(texts(&served), ["first", "second"]);
        cache.begin("s");
        cache.begin("s");
        cache.push("s", message("third", 3), true);
        cache.abandon("s");
        assert_eq!(cache.serve_current("s", 10, 1024), None, "overlapped writes: order unknown");
        cache.push("s", message("fourth", 4), true);
        assert_eq!(cache.serve_current("s", 10, 1024), None, "the mark stays unknown until a read");
        assert_eq!(cache.serve_current("other", 10, 1024), None, "no entry");
    }

    /// A store read during which a write of the session began, or the outbox applied one,
    /// keeps its messages but not its mark: that write may be missing from them.
    #[test]
    fn a_read_overlapping_a_write_or_a_drain_keeps_no_mark() {
        let cache = RecentMessages::new(10, 1024);
        let first = message("first", 1);
        let read = std::slice::from_ref(&first);
        let mark = HistoryMark::of(&[(*first).clone()]);
        let seen = cache.generation("s");
        cache.begin("s");
        cache.push("s", message("second", 2), true);
        cache.replace("s", read, Some(mark.clone()), seen);
        assert_eq!(cache.serve_current("s", 10, 1024), None, "a write ended during the read");
        let seen = cache.generation("s");
        cache.touch("s");
        cache.replace("s", read, Some(mark.clone()), seen);
        assert_eq!(cache.serve_current("s", 10, 1024), None, "the outbox wrote during the read");
        cache.begin("s");
        assert_eq!(cache.generation("s"), None, "a write in flight: no read can be trusted");
        cache.abandon("s");
        let seen = cache.generation("s");
        cache.replace("s", read, Some(mark), seen);
        let served = cache.serve_current("s", 10, 1024).expect("nothing happened meanwhile");
        assert_eq!(texts(&served), ["first"]);
    }

    #[test]
    fn the_cache_keeps_the_newest_messages_within_its_count_and_byte_bounds() {
        let cache = RecentMessages::new(3, 10);
        for (n, text) in ["a", "b", "c", "d"].into_iter().enumerate() {
            cache.push("s", message(text, n as i64), true);
        }
        assert_eq!(texts(&cache.get("s")), ["b", "c", "d"], "the count bound drops the oldest");
        cache.push("s", message("0123456789", 5), true);
        assert_eq!(texts(&cache.get("s")), ["0123456789"], "the byte bound drops the oldest");
        cache.push("s", message("far too long for ten bytes", 6), true);
        assert_eq!(texts(&cache.get("s")), ["far too long for ten bytes"], "the newest stays");
        assert!(cache.get("other").is_empty(), "per session");
    }

    #[test]
    fn a_message_is_cached_once_and_a_store_read_replaces_the_entry() {
        let cache = RecentMessages::new(2, 1024);
        let repeated = message("again", 1);
        cache.push("s", Arc::clone(&repeated), true);
        cache.push("s", Arc::clone(&repeated), true);
        assert_eq!(texts(&cache.get("s")), ["again"]);
        let read = [message("x", 1), message("y", 2), message("z", 3)];
        cache.replace("s", &read, None, cache.generation("s"));
        assert_eq!(texts(&cache.get("s")), ["y", "z"], "the end of the read, within the bound");
        cache.forget(["s"].into_iter());
        assert!(cache.is_empty());
    }

    fn mark(count: u64, last: &StoredMessage) -> HistoryMark {
        HistoryMark { count, last_id: Some(last.id.clone()) }
    }

    #[test]
    fn an_entry_serves_only_at_the_stores_mark_and_when_it_holds_enough() {
        let cache = RecentMessages::new(2, 1024);
        let read = [message("x", 1), message("yy", 2), message("zzz", 3)];
        cache.replace("s", &read, Some(mark(3, &read[2])), cache.generation("s"));
        assert_eq!(cache.get("s").len(), 2, "the oldest fell out of the bounds");
        let at = mark(3, &read[2]);
        let served = cache.serve("s", &at, 2, 1024).expect("two with text were wanted");
        assert_eq!(texts(&served), ["yy", "zzz"]);
        assert!(cache.serve("s", &at, 3, 1024).is_none(), "three wanted, the oldest not cached");
        assert!(cache.serve("s", &at, 3, 4).is_some(), "more text than the byte budget");
        assert!(cache.serve("s", &mark(4, &read[2]), 2, 1024).is_none(), "the store moved on");
        assert!(cache.serve("other", &at, 1, 1024).is_none());
        // Holding the whole session serves any request.
        let whole = RecentMessages::new(5, 1024);
        whole.replace("s", &read, Some(mark(3, &read[2])), whole.generation("s"));
        assert!(whole.serve("s", &mark(3, &read[2]), 50, 32 * 1024).is_some());
    }

    #[test]
    fn own_appends_move_the_mark_and_a_queued_one_drops_it() {
        let cache = RecentMessages::new(10, 1024);
        let read = [message("a", 1)];
        cache.replace("s", &read, Some(mark(1, &read[0])), cache.generation("s"));
        let (b, c) = (message("b", 2), message("c", 3));
        cache.push("s", Arc::clone(&b), true);
        assert!(cache.serve("s", &mark(2, &b), 10, 1024).is_some(), "stored: one more, the last");
        cache.push("s", Arc::clone(&b), true);
        assert!(cache.serve("s", &mark(2, &b), 10, 1024).is_some(), "a repeat moves nothing");
        // Two appends stored as c then e but cached as e then c: the last ids differ.
        let e = message("e", 4);
        cache.push("s", Arc::clone(&e), true);
        cache.push("s", Arc::clone(&c), true);
        assert!(cache.serve("s", &mark(4, &e), 10, 1024).is_none(), "cached in another order");
        cache.replace(
            "s",
            &[read[0].clone(), b.clone(), c.clone(), e.clone()],
            Some(mark(4, &e)),
            cache.generation("s"),
        );
        assert!(cache.serve("s", &mark(4, &e), 10, 1024).is_some());
        let d = message("d", 5);
        cache.push("s", Arc::clone(&d), false);
        assert!(
            cache.serve("s", &mark(4, &e), 10, 1024).is_none(),
            "queued: no longer the store's"
        );
        assert!(cache.serve("s", &mark(5, &d), 10, 1024).is_none());
        assert_eq!(texts(&cache.get("s")), ["a", "b", "c", "e", "d"], "still the fallback");
        // A read that had to add queued writes gives no mark either.
        cache.replace("s", &read, None, cache.generation("s"));
        assert!(cache.serve("s", &mark(1, &read[0]), 10, 1024).is_none());
    }

    #[test]
    fn the_fallback_merges_cached_and_pending_once_each_in_time_order() {
        let before = message("before the outage", 1);
        let during = message("during the outage", 3);
        let answer = Arc::new(StoredMessage::new("an answer", UnixMillis(2), Sender::Ai));
        let cached = vec![before.clone(), answer.clone(), during.clone()];
        // The outbox holds the outage's writes, some of which this instance also cached.
        let pending = [(*during).clone(), (*message("queued elsewhere", 4)).clone()];
        let merged = fallback(cached, pending);
        assert_eq!(
            texts(&merged),
            ["before the outage", "an answer", "during the outage", "queued elsewhere"]
        );
    }

    #[test]
    fn with_nothing_cached_the_fallback_is_what_waits_in_the_outbox_or_nothing() {
        let current = message("the current message", 1);
        assert_eq!(texts(&fallback(Vec::new(), [(*current).clone()])), ["the current message"]);
        assert!(fallback(Vec::new(), []).is_empty());
    }
}
