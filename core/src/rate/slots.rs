//! [`ConnectionSlots`]: how many WebSocket connections each user holds (PROTOCOL.md §3.2, §5:
//! 10 per user per process), separate from the rate limiter. A slot is taken only once the
//! upgrade has succeeded, or released when it fails (§10 item 12), so failed handshakes never
//! leak slots.

use std::collections::HashMap;
use std::hash::Hash;

/// Connections per user per process (PROTOCOL.md §3.2).
pub const DEFAULT_CONNECTIONS_PER_KEY: u32 = 10;

/// Refusal of [`ConnectionSlots::try_acquire`]: the key already holds its maximum.
#[derive(Copy, Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("connection limit reached: {held} of {limit} slots held")]
pub struct SlotsFull {
    /// Slots the key holds (equal to `limit`).
    pub held: u32,
    /// The per-key maximum.
    pub limit: u32,
}

/// Per-key counters of concurrently held slots, each at most `limit`.
///
/// Inputs: [`ConnectionSlots::try_acquire`] when a connection is established,
/// [`ConnectionSlots::release`] exactly once when it closes (or when the upgrade fails after an
/// acquire). Outputs: the acquire result, [`ConnectionSlots::held`], [`ConnectionSlots::len`],
/// [`ConnectionSlots::total`]. No time is involved. A refused acquire changes nothing; releasing a
/// key with no slots is a no-op returning `false` (the caller logs it — it means a double
/// release), so counters never underflow.
///
/// Invariants (checked with `debug_assert!`): every stored count is in `1..=limit` — a key whose
/// count reaches zero is removed, so memory is bounded by the live connections — and `total()`
/// is the sum of the stored counts.
#[derive(Clone, Debug)]
pub struct ConnectionSlots<K: Hash + Eq + Clone> {
    limit: u32,
    held: HashMap<K, u32>,
    total: usize,
}

impl<K: Hash + Eq + Clone> ConnectionSlots<K> {
    /// Slots allowing at most `limit` concurrent connections per key (`0` refuses every one).
    pub fn new(limit: u32) -> Self {
        Self { limit, held: HashMap::new(), total: 0 }
    }

    /// The per-key maximum.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Takes one slot for `key`, or refuses with the count held when `key` is at the limit.
    pub fn try_acquire(&mut self, key: &K) -> Result<(), SlotsFull> {
        let held = self.held(key);
        if held >= self.limit {
            return Err(SlotsFull { held, limit: self.limit });
        }
        *self.held.entry(key.clone()).or_insert(0) += 1;
        self.total += 1;
        self.debug_check(key);
        Ok(())
    }

    /// Gives back one slot of `key`; `false` (and no change) when `key` holds none.
    #[must_use = "a false return means a double release; log it"]
    pub fn release(&mut self, key: &K) -> bool {
        let Some(count) = self.held.get_mut(key) else {
            return false;
        };
        *count = count.saturating_sub(1); // stored counts are at least 1
        if *count == 0 {
            self.held.remove(key);
        }
        self.total = self.total.saturating_sub(1);
        self.debug_check(key);
        true
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &K) -> u32 {
        self.held.get(key).copied().unwrap_or(0)
    }

    /// Keys holding at least one slot.
    pub fn len(&self) -> usize {
        self.held.len()
    }

    /// Whether no slot is held.
    pub fn is_empty(&self) -> bool {
        self.held.is_empty()
    }

    /// Slots held across all keys.
    pub fn total(&self) -> usize {
        self.total
    }

    /// O(1) invariant check for the key just changed (the full sum is checked in tests).
    fn debug_check(&self, key: &K) {
        debug_assert!(self.held(key) <= self.limit, "slot count above the limit");
        debug_assert!(self.held.get(key).is_none_or(|&c| c > 0), "a zero count is stored");
        debug_assert!(self.total >= self.held.len(), "total below the number of keys");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_then_refused() {
        let mut s = ConnectionSlots::new(DEFAULT_CONNECTIONS_PER_KEY);
        for _ in 0..10 {
            assert_eq!(s.try_acquire(&"u"), Ok(()));
        }
        assert_eq!(s.try_acquire(&"u"), Err(SlotsFull { held: 10, limit: 10 }));
        assert_eq!(s.held(&"u"), 10);
        assert_eq!(s.try_acquire(&"v"), Ok(()));
        assert!(s.release(&"u"));
        assert_eq!(s.try_acquire(&"u"), Ok(()));
        assert_eq!((s.len(), s.total()), (2, 11));
    }

    #[test]
    fn release_never_underflows_and_frees_memory() {
        let mut s = ConnectionSlots::new(2);
        assert!(!s.release(&"u"));
        s.try_acquire(&"u").unwrap();
        assert!(s.release(&"u"));
        assert!(!s.release(&"u"));
        assert_eq!(s.held(&"u"), 0);
        assert!(s.is_empty());
        assert_eq!(s.total(), 0);
    }

    #[test]
    fn zero_limit_refuses() {
        let mut s = ConnectionSlots::new(0);
        assert_eq!(s.try_acquire(&1), Err(SlotsFull { held: 0, limit: 0 }));
        assert!(s.is_empty());
    }

    #[test]
    fn error_text_names_the_counts() {
        let e = SlotsFull { held: 10, limit: 10 };
        assert_eq!(e.to_string(), "connection limit reached: 10 of 10 slots held");
    }
}
