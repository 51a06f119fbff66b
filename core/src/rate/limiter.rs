//! [`RateLimiter`]: the keyed bucketed-sliding-window limiter with a bounded, least-recently-used
//! key set. The algorithm and its guarantee are in the module doc of [`super`]; the per-key ring
//! is [`super::window`].
//!
//! # Layout
//!
//! Keys live in a flat arena of slots: `entries[s]` holds slot `s`'s key, the head of its ring
//! (newest bucket and the counters' sum), its recency stamp and, for every default limit, the
//! ring itself, so a key costs no allocation of its own. A [`HashTable`] of slot numbers finds a
//! key's slot (the key is hashed once per check).
//!
//! A check reads the index and then one 64-byte line, the entry. For that:
//! - a limiter keyed by text stores its keys as [`CompactString`] ([`LimiterKey`]): a key of up
//!   to 24 bytes (a typical user id; a longer one, or `help_request:<session>`, goes to the heap)
//!   sits in the entry, so comparing it reads no other line;
//! - counters are bytes when the limit is at most 255 (a counter never exceeds the limit), and a
//!   ring of at most [`INLINE_RING`] byte counters (the default 21) sits in the entry too
//!   ([`Counts::Inline`]). Larger limits, or more buckets, keep their rings in a flat array
//!   beside the entries, `counts[s · stride ..][.. stride]`.
//!
//! Recency is an exact LRU kept as a queue of `(slot, stamp)` pairs in the order they were
//! stamped: using a key gives it a fresh stamp and pushes the pair at the back, so the older pairs
//! of that key go stale (their stamp no longer matches the slot's) and are skipped when they reach
//! the front. The queue is compacted (stale pairs dropped, order kept) when its allocation is
//! full and it holds more than twice the keys plus a constant; it grows only when it is full of
//! at most that many, so it holds at most `2 · (2 · max_keys + 33)` pairs and every operation is
//! O(1) amortised. A slot's newest pair is its live one, so the compaction reads no stamp: it
//! keeps the first pair of each slot it meets walking from the back, marking slots in a bitmap.
//! Stamps are `u32` and wrap; a stale pair can never be mistaken for a live one because fewer
//! than 2³² stamps are issued while a pair sits in the queue (it would have to hold more than 2³²
//! pairs, and it holds at most `4 · max_keys + 66 < 2³²`, `max_keys ≤ MAX_KEYS`).

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::hash::{BuildHasher, Hash};
use std::time::Duration;

use compact_str::CompactString;
use hashbrown::{DefaultHashBuilder, HashTable};

use super::window::{Counter, Geometry, Head, Position, Window, DEFAULT_BUCKETS};
use super::{Decision, RateLimit};
use crate::time::Instant;

/// The most keys one limiter tracks (`max_keys` is clamped to it): keeps the stamp argument of
/// the module doc valid and slot numbers within `u32`.
const MAX_KEYS: usize = 1 << 29;

/// The stamp of a free slot; live stamps are never zero.
const FREE: u32 = 0;

/// Stale pairs the recency queue may hold beyond `len` before it is compacted (keeps tiny
/// limiters from compacting on every use).
const QUEUE_SLACK: usize = 32;

/// Counters an operator reads to size [`RateLimiter::new`]'s `max_keys` and to export metrics.
/// All counts are since construction.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct LimiterStats {
    /// Keys currently tracked (equals [`RateLimiter::len`]).
    pub keys: usize,
    /// The most keys tracked at once.
    pub max_keys: usize,
    /// Checks answered [`Decision::Allowed`].
    pub allowed: u64,
    /// Checks answered [`Decision::Denied`].
    pub denied: u64,
    /// Keys evicted to make room while they still had events in their window: each one got a
    /// fresh budget early. A growing count means `max_keys` is too small for the traffic.
    pub evicted_live: u64,
    /// Keys evicted to make room that had nothing left in their window (harmless: a
    /// [`RateLimiter::cleanup`] would have dropped them).
    pub evicted_idle: u64,
    /// Keys removed by [`RateLimiter::cleanup`].
    pub cleaned: u64,
}

/// How a limiter keyed by `Self` stores a key it is asked about as `Q`: `Q` itself when the
/// caller's key is the stored one (every `Clone` key), or a [`CompactString`] for a `str`, which
/// keeps a key of up to 24 bytes inside the arena's entry so that comparing it reads no heap
/// (module doc, "Layout"). `Self: Borrow<Q>` makes the two hash and compare alike.
pub trait LimiterKey<Q: ?Sized = Self>: Hash + Eq + Borrow<Q> {
    /// The stored form of `key`.
    fn stored(key: &Q) -> Self;
}

impl<K: Hash + Eq + Clone> LimiterKey<K> for K {
    fn stored(key: &K) -> Self {
        key.clone()
    }
}

impl LimiterKey<str> for CompactString {
    fn stored(key: &str) -> Self {
        CompactString::from(key)
    }
}

impl LimiterKey<str> for String {
    fn stored(key: &str) -> Self {
        key.to_owned()
    }
}

/// The most counters a ring keeps inside its key's entry ([`Counts::Inline`]): every default
/// limit's ring (21 counters) fits, and with a 24-byte key the entry is one 64-byte line.
const INLINE_RING: usize = 24;

/// One slot of the arena (module doc, "Layout"): aligned to a cache line so that a check's
/// reads of the key, the head, the stamp and an inline ring are one line.
#[derive(Clone, Debug)]
#[repr(align(64))]
struct Entry<K> {
    /// The key, `None` when the slot is free.
    key: Option<K>,
    /// The newest bucket of the slot's ring.
    newest: u64,
    /// The sum of the slot's counters (at most the limit, a `u32`): kept beside the stamp so
    /// that an entry of a key up to 24 bytes is 40 bytes, not the 48 a nested [`Head`] pads to.
    total: u32,
    /// The recency stamp of the slot's last allowed event; [`FREE`] when free.
    stamp: u32,
    /// The slot's ring when the counters are [`Counts::Inline`] (unused otherwise).
    ring: [u8; INLINE_RING],
}

impl<K> Entry<K> {
    /// A free slot.
    fn free() -> Self {
        Self { key: None, newest: 0, total: 0, stamp: FREE, ring: [0; INLINE_RING] }
    }

    /// The head of the slot's ring.
    #[inline]
    fn head(&self) -> Head {
        Head::new(self.newest, u64::from(self.total))
    }

    /// Stores the head of the slot's ring.
    #[inline]
    fn set_head(&mut self, head: Head) {
        self.newest = head.newest;
        // A ring counts at most the limit, a `u32`.
        self.total = u32::try_from(head.total()).unwrap_or(u32::MAX);
    }
}

/// Every key's ring of counters, one flat array, its counters as narrow as the limit allows (a
/// counter never exceeds the limit).
#[derive(Clone, Debug)]
enum Counts {
    /// Limits up to 255 and rings of at most [`INLINE_RING`] counters (every default): a byte
    /// per counter, in the key's entry.
    Inline,
    /// Other limits up to 255: a byte per counter.
    Narrow(Vec<u8>),
    /// Larger limits.
    Wide(Vec<u32>),
}

impl Counts {
    /// Empty rings of `stride` counters for `limit`.
    fn for_limit(limit: u32, stride: usize) -> Self {
        if limit > u32::from(u8::MAX) {
            Self::Wide(Vec::new())
        } else if stride <= INLINE_RING {
            Self::Inline
        } else {
            Self::Narrow(Vec::new())
        }
    }

    /// Adds one zeroed ring of `stride` counters (an inline ring comes with its entry).
    fn push_ring(&mut self, stride: usize) {
        match self {
            Self::Inline => {}
            Self::Narrow(c) => c.resize(c.len() + stride, 0),
            Self::Wide(c) => c.resize(c.len() + stride, 0),
        }
    }
}

/// One check of a tracked key whose ring is `ring` and head `head` (`RateLimiter::check`):
/// the decision and the ring's new head.
#[inline]
fn decide<T: Counter>(
    ring: &mut [T],
    head: Head,
    geo: &Geometry,
    (t, at, first): (u64, Position, u64),
    limit: u32,
    now: Instant,
) -> (Decision, Head) {
    let mut window = Window::view_from(head, ring, at);
    window.advance(at);
    let decision = if window.count_from(first) < u64::from(limit) {
        window.record();
        debug_assert!(window.count_from(first) <= u64::from(limit));
        Decision::Allowed
    } else {
        // `release_at` is Some because the count is at the limit; the fallback only guards the
        // arithmetic.
        let release = window.release_at(geo, first, limit).unwrap_or(u64::MAX);
        // `u64::MAX` means "beyond the end of time" (saturated arithmetic).
        debug_assert!(release > t || release == u64::MAX, "a release must be ahead");
        let wait = release.saturating_sub(now.as_nanos()).max(1);
        Decision::Denied { retry_after: Duration::from_nanos(wait) }
    };
    (decision, window.head())
}

/// Empties `ring`, counts one event at `at` in it and returns its head (a new key).
fn start_ring<T: Counter>(ring: &mut [T], at: Position) -> Head {
    let mut window = Window::view_from(Head::empty(at.bucket), ring, at);
    window.reset(at);
    window.record();
    window.head()
}

/// A keyed sliding-window rate limiter: at most `limit.limit` allowed events per key in any
/// window of `limit.window` (module doc of [`super`] for the exact guarantee), at most `max_keys`
/// keys in memory.
///
/// Driving: call [`RateLimiter::check`] once per attempt and act on the returned [`Decision`]
/// (input and output in one call: an allowed attempt is counted, a denied one is not); call
/// [`RateLimiter::cleanup`] periodically (a [`crate::timer::Periodic`] tick) to free the keys that
/// went idle. [`RateLimiter::len`], [`RateLimiter::contains`] and [`RateLimiter::stats`] are
/// read-only. `now` is the driver's monotonic clock ([`Instant`]); the limiter keeps its own
/// clock, the largest `now` it has been given, and a smaller `now` is treated as that clock, so
/// time never runs backwards inside (see "Time" in the module doc). Nothing is idempotent except
/// the read-only calls and a second `cleanup` at the same `now` (which removes nothing).
///
/// Invariants (checked with `debug_assert!` after each transition):
/// - `len() <= max_keys`;
/// - every tracked key has at least one event in its ring, and no key counts more than
///   `limit.limit` events at the limiter's clock;
/// - keys are ordered by the bucket of their last allowed event, least recent at the LRU end
///   (this is what lets `cleanup` stop at the first key still live).
#[derive(Clone, Debug)]
pub struct RateLimiter<K: Hash + Eq + Clone> {
    limit: RateLimit,
    geo: Geometry,
    /// Counters per key (`geo.slots()`).
    stride: usize,
    /// The arena; slot `s` is `entries[s]` with its ring at `counts[s * stride..][..stride]`.
    entries: Vec<Entry<K>>,
    counts: Counts,
    /// One bit per slot, the compaction's scratch (kept to reuse its allocation).
    seen: Vec<u64>,
    /// Free slots of the arena (removed by `cleanup`).
    free: Vec<u32>,
    /// Key → slot, hashed with `hasher`.
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
    /// `(slot, stamp)` in stamping order, least recently used at the front; stale pairs are
    /// skipped (module doc, "Layout").
    order: VecDeque<(u32, u32)>,
    /// The next stamp to hand out (never [`FREE`]).
    next_stamp: u32,
    /// `max_keys`.
    cap: usize,
    /// Keys tracked.
    len: usize,
    /// The largest `now` seen, in nanoseconds.
    clock: u64,
    /// The bucket of `clock` and its ring position ([`Geometry::position_after`]).
    at: Position,
    stats: LimiterStats,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    /// A limiter enforcing `limit` per key and tracking at most `max_keys` keys (at least 1, at
    /// most 2²⁹), counting in [`DEFAULT_BUCKETS`] sub-buckets per window.
    pub fn new(limit: RateLimit, max_keys: usize) -> Self {
        Self::with_buckets(limit, max_keys, DEFAULT_BUCKETS)
    }

    /// As [`RateLimiter::new`] with `buckets` sub-buckets per window (clamped to
    /// `1..=`[`super::MAX_BUCKETS`]): more buckets release events closer to the exact sliding
    /// window at the cost of `buckets + 1` counters per key.
    pub fn with_buckets(limit: RateLimit, max_keys: usize, buckets: u32) -> Self {
        let cap = max_keys.clamp(1, MAX_KEYS);
        let geo = Geometry::new(limit.window, buckets);
        let stride = usize::try_from(geo.slots()).unwrap_or(1).max(1);
        Self {
            limit,
            geo,
            stride,
            entries: Vec::new(),
            counts: Counts::for_limit(limit.limit, stride),
            seen: Vec::new(),
            free: Vec::new(),
            index: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            order: VecDeque::new(),
            next_stamp: 1,
            cap,
            len: 0,
            clock: 0,
            at: geo.position(0),
            stats: LimiterStats { max_keys: cap, ..LimiterStats::default() },
        }
    }

    /// The configured limit.
    pub fn limit(&self) -> RateLimit {
        self.limit
    }

    /// The width `g` of one sub-bucket: how much later than an exact sliding log an event may
    /// stop counting (less than `g`).
    pub fn bucket_width(&self) -> Duration {
        Duration::from_nanos(self.geo.width())
    }

    /// The most keys tracked at once.
    pub fn max_keys(&self) -> usize {
        self.cap
    }

    /// Keys currently tracked.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no key is tracked.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether `key` is tracked (does not change its recency).
    pub fn contains<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: LimiterKey<Q>,
    {
        self.find(key, self.hasher.hash_one(key)).is_some()
    }

    /// The counters since construction.
    pub fn stats(&self) -> LimiterStats {
        LimiterStats { keys: self.len, ..self.stats }
    }

    /// Moves the limiter's clock to `now` if later and returns it (nanoseconds) with its bucket's
    /// position.
    fn tick(&mut self, now: Instant) -> (u64, Position) {
        self.clock = self.clock.max(now.as_nanos());
        self.at = self.geo.position_after(self.clock, self.at);
        (self.clock, self.at)
    }

    /// Decides one attempt by `key` at `now`. Allowed attempts are counted and make `key` the
    /// most recently used; denied ones change nothing but the key's ring position in time (old
    /// buckets are forgotten) and the stats.
    ///
    /// A new key is always allowed (when `limit > 0`): if `max_keys` keys are tracked, the least
    /// recently used one is evicted to make room — a new key is never refused (PROTOCOL.md §10
    /// item 28). `Denied { retry_after }` is the exact wait, from `now`, after which this key's
    /// next check is allowed if nothing else is recorded for it meanwhile (always > 0). With
    /// `limit == 0` every attempt is denied with `retry_after = max(window, 1 ns)`, a hint only.
    ///
    /// O(k) for k sub-buckets, independent of the number of keys and events (amortised: the
    /// recency queue is compacted now and then, see the module doc).
    pub fn check<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, now: Instant) -> Decision
    where
        K: LimiterKey<Q>,
    {
        let (t, at) = self.tick(now);
        let limit = self.limit.limit;
        if limit == 0 {
            self.stats.denied += 1;
            let hint = self.limit.window.max(Duration::from_nanos(1));
            return Decision::Denied { retry_after: hint };
        }
        let first = self.geo.first_counted_at(t, at);
        let hash = self.hasher.hash_one(key);
        let decision = match self.find(key, hash) {
            Some(slot) => {
                let ring = self.ring(slot);
                let entry = &mut self.entries[slot as usize];
                let state = (t, at, first);
                let (decision, head) = match &mut self.counts {
                    Counts::Inline => {
                        let head = entry.head();
                        decide(&mut entry.ring[..self.stride], head, &self.geo, state, limit, now)
                    }
                    Counts::Narrow(c) => {
                        decide(&mut c[ring], entry.head(), &self.geo, state, limit, now)
                    }
                    Counts::Wide(c) => {
                        decide(&mut c[ring], entry.head(), &self.geo, state, limit, now)
                    }
                };
                entry.set_head(head);
                if decision.is_allowed() {
                    self.promote(slot);
                }
                decision
            }
            None => {
                self.insert(key, hash, at, first);
                Decision::Allowed
            }
        };
        match decision {
            Decision::Allowed => self.stats.allowed += 1,
            Decision::Denied { .. } => self.stats.denied += 1,
        }
        debug_assert!(self.len <= self.cap, "more keys than max_keys");
        debug_assert!(
            self.find(key, hash).is_none_or(|s| self.last_event(s).is_some()),
            "a tracked key without events"
        );
        decision
    }

    /// The slot of `key` (whose hash is `hash`), if tracked.
    fn find<Q: Hash + Eq + ?Sized>(&self, key: &Q, hash: u64) -> Option<u32>
    where
        K: LimiterKey<Q>,
    {
        let entries = &self.entries;
        self.index
            .find(hash, |&s| entries[s as usize].key.as_ref().is_some_and(|k| k.borrow() == key))
            .copied()
    }

    /// Where `slot`'s ring lies in [`Counts`]'s array.
    fn ring(&self, slot: u32) -> std::ops::Range<usize> {
        let start = slot as usize * self.stride;
        start..start + self.stride
    }

    /// The newest bucket of `slot`'s ring holding an event, if any.
    fn last_event(&self, slot: u32) -> Option<u64> {
        // Every key's newest bucket is at or before the clock's.
        let ring = self.ring(slot);
        let head = self.entries[slot as usize].head();
        match &self.counts {
            Counts::Inline => {
                let inline = &self.entries[slot as usize].ring[..self.stride];
                Window::view_from(head, inline, self.at).last_event()
            }
            Counts::Narrow(c) => Window::view_from(head, &c[ring], self.at).last_event(),
            Counts::Wide(c) => Window::view_from(head, &c[ring], self.at).last_event(),
        }
    }

    /// Whether a check counting from bucket `first` would see an event of `slot`.
    fn is_live(&self, slot: u32, first: u64) -> bool {
        self.last_event(slot).is_some_and(|b| b >= first)
    }

    /// Hands out the next stamp (wrapping, skipping [`FREE`]).
    fn stamp(&mut self) -> u32 {
        let stamp = self.next_stamp;
        self.next_stamp = self.next_stamp.wrapping_add(1).max(FREE + 1);
        stamp
    }

    /// Makes `slot` the most recently used. When the recency queue is full (its allocation) and
    /// holds more than twice the keys, it is compacted instead of grown (module doc, "Layout"):
    /// compacting reads one random stamp per pair, so the fuller the queue the fewer reads per
    /// use, and the allocation stays at the power of two above `2 · len + QUEUE_SLACK`.
    fn promote(&mut self, slot: u32) {
        if self.order.len() == self.order.capacity()
            && self.order.len() > 2 * self.len + QUEUE_SLACK
        {
            // Before the new stamp: the compaction keeps each slot's newest pair, this slot's too.
            self.compact();
            // One live pair per key, but a key being inserted: counted already, not queued yet.
            debug_assert!(
                self.order.len() <= self.len && self.len <= self.order.len() + 1,
                "one live pair per key"
            );
        }
        let stamp = self.stamp();
        self.entries[slot as usize].stamp = stamp;
        self.order.push_back((slot, stamp));
    }

    /// Drops the queue's stale pairs, keeping the order. A slot's newest pair is its live one
    /// (a slot leaves the queue only from the front, after its older pairs), so one pass from
    /// the back keeps the first pair it meets of each slot, marking slots in a bitmap of
    /// `entries.len()` bits: no stamp is read, and the bitmap (128 KiB at a million keys) stays
    /// in cache where the stamps, one per random slot, would not. Runs once per `len`
    /// promotions or so.
    fn compact(&mut self) {
        let words = self.entries.len().div_ceil(64);
        self.seen.clear();
        self.seen.resize(words, 0);
        let seen = &mut self.seen;
        let pairs = self.order.make_contiguous();
        let mut start = pairs.len();
        for i in (0..pairs.len()).rev() {
            let pair = pairs[i];
            let (word, bit) = (pair.0 as usize / 64, 1u64 << (pair.0 % 64));
            if seen[word] & bit == 0 {
                seen[word] |= bit;
                start -= 1;
                pairs[start] = pair;
            }
        }
        // Move the kept pairs to the front of the buffer rather than advancing the queue's head:
        // a queue that starts at its buffer's start is contiguous until it wraps, so the next
        // compaction's `make_contiguous` has nothing to rotate.
        let kept = pairs.len() - start;
        pairs.copy_within(start.., 0);
        self.order.truncate(kept);
        debug_assert!(
            self.order.iter().all(|&(slot, stamp)| self.entries[slot as usize].stamp == stamp),
            "the compaction kept a stale pair"
        );
    }

    /// The least recently used slot, dropping the stale pairs in front of it.
    fn lru(&mut self) -> Option<u32> {
        while let Some(&(slot, stamp)) = self.order.front() {
            if self.entries[slot as usize].stamp == stamp {
                return Some(slot);
            }
            self.order.pop_front();
        }
        None
    }

    /// Takes the least recently used key out of the index and the queue; its slot keeps the
    /// key and ring until the caller overwrites or frees it.
    fn unlink_lru(&mut self) -> Option<u32> {
        let slot = self.lru()?;
        self.order.pop_front();
        let hash = self.entries[slot as usize].key.as_ref().map(|k| self.hasher.hash_one(k));
        let found = hash.and_then(|h| self.index.find_entry(h, |&s| s == slot).ok());
        debug_assert!(found.is_some(), "an LRU slot missing from the index");
        if let Some(entry) = found {
            entry.remove();
        }
        self.len -= 1;
        Some(slot)
    }

    /// Adds `key` (hash `hash`) with one event in `bucket`, evicting the least recently used key
    /// when full (its slot is reused).
    fn insert<Q: Hash + Eq + ?Sized>(&mut self, key: &Q, hash: u64, at: Position, first: u64)
    where
        K: LimiterKey<Q>,
    {
        let evicted = if self.len >= self.cap { self.unlink_lru() } else { None };
        if let Some(slot) = evicted {
            if self.is_live(slot, first) {
                self.stats.evicted_live += 1;
            } else {
                self.stats.evicted_idle += 1;
            }
        }
        let slot = match evicted.or_else(|| self.free.pop()) {
            Some(slot) => slot,
            None => {
                // `len < cap ≤ 2²⁹` here, so the arena holds fewer than 2²⁹ slots.
                let slot = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
                self.entries.push(Entry::free());
                self.counts.push_ring(self.stride);
                slot
            }
        };
        let ring = self.ring(slot);
        let head = match &mut self.counts {
            Counts::Inline => start_ring(&mut self.entries[slot as usize].ring[..self.stride], at),
            Counts::Narrow(c) => start_ring(&mut c[ring], at),
            Counts::Wide(c) => start_ring(&mut c[ring], at),
        };
        let entry = &mut self.entries[slot as usize];
        entry.key = Some(K::stored(key));
        entry.set_head(head);
        let (entries, hasher) = (&self.entries, &self.hasher);
        self.index.insert_unique(hash, slot, |&s| {
            entries[s as usize].key.as_ref().map_or(0, |k| hasher.hash_one(k))
        });
        self.len += 1;
        self.promote(slot);
    }

    /// Drops every key with nothing left in its window at `now` and returns how many were
    /// dropped. Walks from the least recently used end and stops at the first key still live, so
    /// it costs O(removed · k): keys are ordered by their last allowed event, so the idle ones are
    /// exactly that end of the list. Keys with events still counted are kept.
    pub fn cleanup(&mut self, now: Instant) -> usize {
        let (t, at) = self.tick(now);
        let first = self.geo.first_counted_at(t, at);
        let mut removed = 0;
        while self.lru().is_some_and(|slot| !self.is_live(slot, first)) {
            if let Some(slot) = self.unlink_lru() {
                let entry = &mut self.entries[slot as usize];
                entry.key = None;
                entry.stamp = FREE;
                self.free.push(slot);
                removed += 1;
            }
        }
        self.stats.cleaned += removed as u64;
        debug_assert!(self.recency_matches_events(), "LRU order differs from event order");
        debug_assert!(
            self.live_slots().all(|s| self.is_live(s, first)),
            "cleanup left an idle key behind"
        );
        removed
    }

    /// The tracked slots, least recently used first.
    fn live_slots(&self) -> impl Iterator<Item = u32> + '_ {
        self.order
            .iter()
            .filter(|&&(slot, stamp)| self.entries[slot as usize].stamp == stamp)
            .map(|&(slot, _)| slot)
    }

    /// The ordering invariant: from least to most recently used, last-event buckets never
    /// decrease, and the queue holds one live pair per key. O(len · k); only used in debug
    /// assertions (after `cleanup`) and tests.
    fn recency_matches_events(&self) -> bool {
        let mut previous = 0;
        let mut keys = 0;
        for slot in self.live_slots() {
            keys += 1;
            let Some(last) = self.last_event(slot) else {
                return false;
            };
            if last < previous {
                return false;
            }
            previous = last;
        }
        keys == self.len && self.index.len() == self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MINUTE, SECOND};

    const G: Duration = Duration::from_secs(3);

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    fn admin() -> RateLimiter<&'static str> {
        RateLimiter::new(RateLimit::new(3, MINUTE), 10)
    }

    #[test]
    fn limit_then_deny() {
        let mut l = admin();
        for _ in 0..3 {
            assert_eq!(l.check(&"a", at(1)), Decision::Allowed);
        }
        // All three sit in bucket 0 (0..3 s), released at (0+1)·3 s + 60 s = 63 s.
        assert_eq!(l.check(&"a", at(1)), Decision::Denied { retry_after: 62 * SECOND });
        assert_eq!(l.check(&"b", at(1)), Decision::Allowed);
        let s = l.stats();
        assert_eq!((s.allowed, s.denied, s.keys), (4, 1, 2));
    }

    #[test]
    fn retry_after_at_bucket_edges() {
        let mut l = admin();
        // Two events in bucket 0 (0..3 s), one in bucket 1.
        assert!(l.check(&"a", at(0)).is_allowed());
        assert!(l.check(&"a", at(3) - Duration::from_nanos(1)).is_allowed());
        assert!(l.check(&"a", at(3)).is_allowed());
        // Denied at 3 s: dropping bucket 0 (2 events) frees room, released at 63 s.
        assert_eq!(l.check(&"a", at(3)).retry_after(), Some(60 * SECOND));
        assert_eq!(l.check(&"a", at(40)).retry_after(), Some(23 * SECOND));
        let one = Duration::from_nanos(1);
        assert_eq!(l.check(&"a", at(63) - one).retry_after(), Some(one));
        assert_eq!(l.check(&"a", at(63)), Decision::Allowed);
        // Now bucket 1 holds one event and bucket 21 two; the next release is bucket 1's at 66 s.
        assert_eq!(l.check(&"a", at(63)), Decision::Allowed);
        assert_eq!(l.check(&"a", at(64)).retry_after(), Some(2 * SECOND));
    }

    #[test]
    fn refills_after_the_window() {
        let mut l = admin();
        for _ in 0..3 {
            assert!(l.check(&"a", at(10)).is_allowed());
        }
        assert!(!l.check(&"a", at(70)).is_allowed()); // 70 - 60 = 10: bucket 3 still counted
        for _ in 0..3 {
            assert!(l.check(&"a", at(72)).is_allowed()); // bucket 3 released at 72 s
        }
        assert!(!l.check(&"a", at(72)).is_allowed());
        // Long idle: a fresh budget.
        for _ in 0..3 {
            assert!(l.check(&"a", at(10_000)).is_allowed());
        }
    }

    #[test]
    fn full_limiter_evicts_least_recently_used() {
        let mut l = RateLimiter::<&str>::new(RateLimit::new(1, MINUTE), 2);
        assert!(l.check(&"a", at(0)).is_allowed());
        assert!(l.check(&"b", at(1)).is_allowed());
        // A denied check does not refresh "a": recency is the last allowed event.
        assert!(!l.check(&"a", at(2)).is_allowed());
        assert!(l.check(&"c", at(5)).is_allowed());
        assert_eq!(l.len(), 2);
        assert!(!l.contains(&"a") && l.contains(&"b") && l.contains(&"c"));
        assert_eq!(l.stats().evicted_live, 1);
        // "a" lost its history: its next attempt is a new key and evicts "b".
        assert!(l.check(&"a", at(6)).is_allowed());
        assert!(!l.contains(&"b"));
        // Idle eviction is counted separately.
        assert!(l.check(&"d", at(200)).is_allowed());
        assert_eq!((l.stats().evicted_live, l.stats().evicted_idle), (2, 1));
    }

    #[test]
    fn max_keys_zero_means_one() {
        let mut l = RateLimiter::<i32>::new(RateLimit::new(1, MINUTE), 0);
        assert_eq!(l.max_keys(), 1);
        assert!(l.check(&1, at(0)).is_allowed());
        assert!(l.check(&2, at(0)).is_allowed());
        assert_eq!(l.len(), 1);
    }

    #[test]
    fn cleanup_drops_idle_keys_and_keeps_live_ones() {
        let mut l = admin();
        assert!(l.check(&"old", at(0)).is_allowed()); // bucket 0, released at 63 s
        assert!(l.check(&"mid", at(30)).is_allowed()); // bucket 10, released at 93 s
        assert!(l.check(&"new", at(62)).is_allowed());
        assert_eq!(l.cleanup(at(62)), 0);
        assert_eq!(l.cleanup(at(63)), 1);
        assert!(!l.contains(&"old") && l.contains(&"mid") && l.contains(&"new"));
        assert_eq!(l.cleanup(at(63)), 0, "idempotent at the same time");
        assert_eq!(l.cleanup(at(1_000)), 2);
        assert!(l.is_empty());
        assert_eq!(l.stats().cleaned, 3);
    }

    #[test]
    fn cleanup_keeps_a_denied_key() {
        let mut l = RateLimiter::<&str>::new(RateLimit::new(1, MINUTE), 10);
        assert!(l.check(&"a", at(0)).is_allowed());
        assert!(l.check(&"b", at(50)).is_allowed());
        assert!(!l.check(&"a", at(59)).is_allowed()); // not promoted: "a" stays LRU
        assert_eq!(l.cleanup(at(62)), 0);
        assert_eq!(l.cleanup(at(63)), 1);
        assert!(l.contains(&"b"));
    }

    #[test]
    fn time_standing_still_and_running_backwards() {
        let mut l = admin();
        for _ in 0..3 {
            assert!(l.check(&"a", at(100)).is_allowed());
        }
        // Back to 10 s: treated as 100 s, so still denied; retry_after counts from the real now.
        // Bucket 33 (99..102 s) is released at 102 + 60 = 162 s.
        assert_eq!(l.check(&"a", at(10)).retry_after(), Some(152 * SECOND));
        assert_eq!(l.check(&"a", Instant::ZERO).retry_after(), Some(162 * SECOND));
        // A new key after a backwards jump is recorded at the limiter's clock, not earlier.
        for _ in 0..3 {
            assert!(l.check(&"b", at(5)).is_allowed());
        }
        assert!(!l.check(&"b", at(160)).is_allowed());
        assert!(l.check(&"b", at(162)).is_allowed());
        // Cleanup with an old `now` uses the clock (162 s): "a" (bucket 33) is released, "b"
        // (bucket 54) is not.
        assert_eq!(l.cleanup(at(0)), 1);
        assert!(!l.contains(&"a") && l.contains(&"b"));
    }

    #[test]
    fn zero_window_limits_per_instant() {
        let mut l = RateLimiter::<&str>::new(RateLimit::new(2, Duration::ZERO), 10);
        assert_eq!(l.bucket_width(), Duration::from_nanos(1));
        assert!(l.check(&"a", at(1)).is_allowed());
        assert!(l.check(&"a", at(1)).is_allowed());
        assert_eq!(l.check(&"a", at(1)).retry_after(), Some(Duration::from_nanos(1)));
        assert!(l.check(&"a", at(1) + Duration::from_nanos(1)).is_allowed());
        assert_eq!(l.cleanup(at(2)), 1);
    }

    #[test]
    fn odd_window() {
        // 7 per 61 s + 1 ns: g rounds up to 3.05 s + 1 ns.
        let w = 61 * SECOND + Duration::from_nanos(1);
        let mut l = RateLimiter::<&str>::new(RateLimit::new(7, w), 10);
        assert_eq!(l.bucket_width(), Duration::from_nanos(3_050_000_001));
        for _ in 0..7 {
            assert!(l.check(&"a", at(0)).is_allowed());
        }
        let retry = l.check(&"a", at(0)).retry_after().unwrap();
        assert_eq!(retry, w + l.bucket_width());
        assert!(!l.check(&"a", at(0) + retry - Duration::from_nanos(1)).is_allowed());
        assert!(l.check(&"a", at(0) + retry).is_allowed());
    }

    #[test]
    fn zero_limit_denies_everything_without_tracking() {
        let mut l = RateLimiter::<&str>::new(RateLimit::new(0, MINUTE), 10);
        assert_eq!(l.check(&"a", at(0)), Decision::Denied { retry_after: MINUTE });
        assert!(l.is_empty());
        let mut l = RateLimiter::<&str>::new(RateLimit::new(0, Duration::ZERO), 10);
        assert_eq!(l.check(&"a", at(0)).retry_after(), Some(Duration::from_nanos(1)));
    }

    #[test]
    fn recency_survives_stamp_wraparound_and_queue_compaction() {
        // The same traffic on a limiter whose stamps start just below the wrap: every decision,
        // eviction and cleanup must match, and the queue must stay bounded.
        let fresh = || RateLimiter::<u64>::new(RateLimit::new(2, MINUTE), 4);
        let (mut plain, mut wrapping) = (fresh(), fresh());
        wrapping.next_stamp = u32::MAX - 40;
        let mut x: u64 = 0x9E37_79B9;
        for step in 0..2_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let key = (x >> 33) % 7;
            let now = Instant::from_millis(step * 700);
            assert_eq!(plain.check(&key, now), wrapping.check(&key, now), "step {step}");
            if step % 97 == 0 {
                assert_eq!(plain.cleanup(now), wrapping.cleanup(now), "cleanup at {step}");
            }
            assert!(wrapping.order.len() <= 4 * wrapping.max_keys() + 2 * QUEUE_SLACK + 2);
            assert!(wrapping.recency_matches_events());
        }
        assert!(wrapping.next_stamp < 10_000, "the stamps wrapped");
        assert_eq!(plain.stats(), wrapping.stats());
        for key in 0..7 {
            assert_eq!(plain.contains(&key), wrapping.contains(&key));
        }
    }

    /// The same limiter with `u32` counters whatever its limit.
    fn wide<K: Hash + Eq + Clone>(mut l: RateLimiter<K>) -> RateLimiter<K> {
        assert!(l.is_empty(), "widened before use");
        l.counts = Counts::Wide(Vec::new());
        l
    }

    /// The same limiter with its byte counters in the flat array instead of the entries.
    fn outside<K: Hash + Eq + Clone>(mut l: RateLimiter<K>) -> RateLimiter<K> {
        assert!(l.is_empty(), "moved before use");
        l.counts = Counts::Narrow(Vec::new());
        l
    }

    #[test]
    fn counters_are_as_narrow_as_the_limit() {
        let narrow = |n, stride| !matches!(Counts::for_limit(n, stride), Counts::Wide(_));
        assert!(narrow(1, 21) && narrow(100, 21) && narrow(255, 21) && narrow(255, 1025));
        assert!(!narrow(256, 21) && !narrow(u32::MAX, 21));
        // Every default ring (21 counters) lives in its entry; longer ones outside.
        assert!(matches!(Counts::for_limit(100, 21), Counts::Inline));
        assert!(matches!(Counts::for_limit(100, INLINE_RING), Counts::Inline));
        assert!(matches!(Counts::for_limit(100, INLINE_RING + 1), Counts::Narrow(_)));
        // At the widest narrow limit and the narrowest wide one, a burst at one instant is allowed
        // exactly `limit` times: no counter overflows, none is cut short.
        for n in [255, 256, 1_000] {
            let mut l = RateLimiter::<&str>::new(RateLimit::new(n, MINUTE), 4);
            let allowed = (0..n + 50).filter(|_| l.check(&"a", at(7)).is_allowed()).count();
            assert_eq!(allowed, n as usize, "limit {n}");
            // Bucket 2 (6..9 s) is released at 9 s + 60 s.
            assert_eq!(l.check(&"a", at(7)).retry_after(), Some(62 * SECOND));
        }
    }

    #[test]
    fn narrow_and_wide_counters_decide_alike() {
        // Random traffic over more keys than fit (evictions), with cleanups: byte counters in the
        // entries, byte counters in the flat array and `u32` counters give the same decisions,
        // waits, stats and key sets.
        for (limit, buckets) in [(3, 20), (5, 1), (2, 7), (4, 23)] {
            let fresh =
                || RateLimiter::<u64>::with_buckets(RateLimit::new(limit, MINUTE), 6, buckets);
            let (mut inline, mut flat, mut wide) = (fresh(), outside(fresh()), wide(fresh()));
            assert!(matches!(inline.counts, Counts::Inline));
            let mut x: u64 = 0x2545_F491_4F6C_DD1D ^ u64::from(limit);
            let mut now = Instant::ZERO;
            for step in 0..5_000u64 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let key = x % 9;
                now += Duration::from_millis((x >> 20) % 4_000);
                let decided = inline.check(&key, now);
                assert_eq!(decided, flat.check(&key, now), "flat, step {step}");
                assert_eq!(decided, wide.check(&key, now), "wide, step {step}");
                if step % 101 == 0 {
                    let cleaned = inline.cleanup(now);
                    assert_eq!(cleaned, flat.cleanup(now), "flat cleanup at {step}");
                    assert_eq!(cleaned, wide.cleanup(now), "wide cleanup at {step}");
                }
            }
            assert_eq!(inline.stats(), flat.stats());
            assert_eq!(inline.stats(), wide.stats());
            assert!(
                inline.stats().denied > 0 && inline.stats().evicted_live > 0,
                "traffic too thin"
            );
            for key in 0..9 {
                assert_eq!(inline.contains(&key), flat.contains(&key));
                assert_eq!(inline.contains(&key), wide.contains(&key));
            }
        }
    }

    #[test]
    fn a_compaction_while_a_key_is_inserted_keeps_every_key() {
        // One key used until the queue is full of its stale pairs, so that the next promotion
        // compacts; that promotion is a new key's, counted but not queued yet.
        let mut l = RateLimiter::<&str>::new(RateLimit::new(255, MINUTE), 100);
        let mut ms = 0;
        while !(l.order.len() == l.order.capacity() && l.order.len() > 2 * l.len + QUEUE_SLACK) {
            ms += 1;
            assert!(l.check(&"a", Instant::from_millis(ms)).is_allowed(), "within the limit");
        }
        assert!(l.check(&"b", Instant::from_millis(ms)).is_allowed());
        assert_eq!(l.order.len(), 2, "the compaction ran: one pair per key");
        assert!(l.recency_matches_events());
        assert_eq!(l.cleanup(Instant::from_millis(ms) + 2 * MINUTE), 2, "both keys tracked");
    }

    #[test]
    fn far_future_does_not_panic() {
        let mut l = RateLimiter::<&str>::new(RateLimit::new(1, Duration::MAX), 10);
        assert!(l.check(&"a", Instant::MAX).is_allowed());
        assert!(l.check(&"a", Instant::MAX).retry_after().is_some());
        assert_eq!(l.cleanup(Instant::MAX), 0);
        let mut l = RateLimiter::<&str>::new(RateLimit::new(1, MINUTE), 10);
        assert!(l.check(&"a", Instant::MAX - G).is_allowed());
        assert!(!l.check(&"a", Instant::MAX).is_allowed());
    }

    #[test]
    fn an_entry_of_an_inline_key_is_one_cache_line() {
        // The layout the module doc counts on: key inline, newest bucket, sum, stamp and ring.
        assert_eq!(std::mem::size_of::<Entry<CompactString>>(), 64);
        assert_eq!(std::mem::size_of::<Entry<String>>(), 64);
        assert_eq!(std::mem::align_of::<Entry<CompactString>>(), 64);
    }

    #[test]
    fn inline_keys_decide_as_owned_strings() {
        // Keys asked about as `str` and stored as `CompactString` (inline up to 24 bytes, on the
        // heap beyond) decide, evict and clean up exactly as the same keys stored as `String`.
        let keys: Vec<String> = (0..12)
            .map(|i| {
                if i % 3 == 0 {
                    format!("a-long-user-id-past-24-bytes-{i}")
                } else {
                    format!("u{i}")
                }
            })
            .collect();
        let mut inline = RateLimiter::<CompactString>::new(RateLimit::new(2, MINUTE), 8);
        let mut owned = RateLimiter::<String>::new(RateLimit::new(2, MINUTE), 8);
        let mut x: u64 = 0x5DEE_CE66;
        let mut now = Instant::ZERO;
        for step in 0..3_000u64 {
            x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            let key = keys[(x >> 33) as usize % keys.len()].as_str();
            now += Duration::from_millis((x >> 20) % 3_000);
            assert_eq!(inline.check(key, now), owned.check(key, now), "step {step}");
            assert_eq!(inline.contains(key), owned.contains(key));
            if step % 89 == 0 {
                assert_eq!(inline.cleanup(now), owned.cleanup(now), "cleanup at {step}");
            }
        }
        assert_eq!(inline.stats(), owned.stats());
        assert!(inline.stats().evicted_live > 0, "the traffic evicted live keys");
        for key in &keys {
            assert_eq!(inline.contains(key.as_str()), owned.contains(key.as_str()));
        }
    }
}
