//! The deadline index: every session that has a deadline, ordered by it, so a sweep touches only
//! the k sessions that are due (O(k log n)) and the next wake-up is the first entry.

use std::collections::BTreeSet;

use super::record::SessionId;
use crate::time::Instant;

/// `(deadline, id)` pairs; ties are broken by id, so the order is deterministic.
#[derive(Debug, Clone, Default)]
pub(super) struct DeadlineIndex {
    entries: BTreeSet<(Instant, SessionId)>,
}

impl DeadlineIndex {
    /// Moves `id` from `old` to `new` (either may be `None`). O(log n).
    pub(super) fn reschedule(
        &mut self,
        id: &SessionId,
        old: Option<Instant>,
        new: Option<Instant>,
    ) {
        if old == new {
            return;
        }
        if let Some(at) = old {
            let removed = self.entries.remove(&(at, id.clone()));
            debug_assert!(removed, "deadline index lost the entry of {id} at {at:?}");
        }
        if let Some(at) = new {
            let inserted = self.entries.insert((at, id.clone()));
            debug_assert!(inserted, "deadline index already held {id} at {at:?}");
        }
    }

    /// The earliest entry.
    pub(super) fn first(&self) -> Option<&(Instant, SessionId)> {
        self.entries.first()
    }

    /// The earliest entry that is due at `now` (deadline ≤ `now`).
    pub(super) fn first_due(&self, now: Instant) -> Option<SessionId> {
        self.entries.first().filter(|(at, _)| *at <= now).map(|(_, id)| id.clone())
    }

    /// Whether `(at, id)` is present.
    pub(super) fn contains(&self, at: Instant, id: &SessionId) -> bool {
        self.entries.contains(&(at, id.clone()))
    }

    /// Number of entries.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// All entries, earliest first.
    pub(super) fn iter(&self) -> impl Iterator<Item = &(Instant, SessionId)> {
        self.entries.iter()
    }
}
