//! Per-user connection slots shared by every handshake, with an RAII guard: a slot taken for a
//! handshake is released when the guard drops — on a failed upgrade or when the connection
//! ends — so no path can leak a slot (PROTOCOL.md §10 item 12).

use std::hash::Hash;

use crate::rate::{ConnectionSlots, SlotsFull};
use crate::sync::{Arc, Mutex, MutexGuard};

/// Thread-safe [`ConnectionSlots`].
#[derive(Debug)]
pub struct SharedSlots<K: Hash + Eq + Clone> {
    inner: Mutex<ConnectionSlots<K>>,
}

/// One held slot; dropping it releases the slot exactly once.
#[derive(Debug)]
pub struct SlotGuard<K: Hash + Eq + Clone> {
    slots: Arc<SharedSlots<K>>,
    key: K,
}

impl<K: Hash + Eq + Clone> SharedSlots<K> {
    /// Slots allowing `limit` concurrent connections per key.
    pub fn new(limit: u32) -> Self {
        Self { inner: Mutex::new(ConnectionSlots::new(limit)) }
    }

    fn lock(&self) -> MutexGuard<'_, ConnectionSlots<K>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes a slot for `key`, or refuses when it holds the maximum. (An associated function
    /// because the guard keeps the `Arc`; `self: &Arc<Self>` is not allowed with loom's `Arc`.)
    pub fn try_acquire(slots: &Arc<Self>, key: &K) -> Result<SlotGuard<K>, SlotsFull> {
        slots.lock().try_acquire(key)?;
        Ok(SlotGuard { slots: Arc::clone(slots), key: key.clone() })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &K) -> u32 {
        self.lock().held(key)
    }

    /// Slots held over all keys.
    pub fn total(&self) -> usize {
        self.lock().total()
    }
}

impl<K: Hash + Eq + Clone> SlotGuard<K> {
    /// The key this slot belongs to.
    pub fn key(&self) -> &K {
        &self.key
    }
}

impl<K: Hash + Eq + Clone> Drop for SlotGuard<K> {
    fn drop(&mut self) {
        let released = self.slots.lock().release(&self.key);
        debug_assert!(released, "a guard releases a slot it holds exactly once");
    }
}
