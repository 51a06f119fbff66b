//! The synchronisation primitives of [`crate::shared`]: `loom::sync` under `--cfg loom` so the
//! loom model checker can explore every interleaving, `std::sync` otherwise. Nothing else in core
//! uses locks.

#[cfg(loom)]
pub use loom::sync::{atomic, Arc, Mutex, MutexGuard, RwLock};

#[cfg(not(loom))]
pub use std::sync::{atomic, Arc, Mutex, MutexGuard, RwLock};
