//! The origin allow-list shared by every handshake, replaceable at runtime (seed fix #13).
//!
//! The original read its origin map without a lock while a setter wrote it. Here a handshake
//! takes a snapshot (`Arc<OriginPolicy>`) under a read lock held only for the clone, and
//! `replace` swaps the whole policy under the write lock: a check sees the old list or the new
//! one, never a mix, and never waits for another check.

use crate::origin::{OriginDecision, OriginPolicy};
use crate::sync::{Arc, RwLock};

/// A thread-safe, replaceable [`OriginPolicy`].
#[derive(Debug)]
pub struct OriginList {
    current: RwLock<Arc<OriginPolicy>>,
}

impl OriginList {
    /// A list starting with `policy`.
    pub fn new(policy: OriginPolicy) -> Self {
        Self { current: RwLock::new(Arc::new(policy)) }
    }

    /// The policy in force now (a consistent snapshot).
    pub fn snapshot(&self) -> Arc<OriginPolicy> {
        let guard = self.current.read().unwrap_or_else(std::sync::PoisonError::into_inner);
        Arc::clone(&guard)
    }

    /// Decides a handshake against the policy in force now.
    pub fn check(&self, origin: Option<&str>) -> OriginDecision {
        self.snapshot().check(origin)
    }

    /// Replaces the policy; checks already holding a snapshot finish with the old one.
    pub fn replace(&self, policy: OriginPolicy) {
        let fresh = Arc::new(policy);
        let mut guard = self.current.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        *guard = fresh;
    }
}
