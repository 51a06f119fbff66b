//! The few thread-safe wrappers the server shares between tasks. Each one's critical section is
//! a call into a core state machine, so what they add is only the locking, and loom checks it
//! (`core/tests/loom.rs`, run with `--cfg loom`). Primitives come from [`crate::sync`].
//!
//! - [`OriginList`] — the origin allow-list, replaceable while handshakes read it.
//! - [`ShutdownLatch`] — the drain plan, ordered against connection registration.
//! - [`SharedLimiter`] — a rate limiter used by many connections at once.
//! - [`SharedSlots`] and [`SlotGuard`] — per-user connection slots released on drop.
//! - [`SessionHandle`] — the session table.

mod limiter;
mod origin_list;
mod sessions;
mod shutdown_latch;
mod slots;

pub use limiter::SharedLimiter;
pub use origin_list::OriginList;
pub use sessions::SessionHandle;
pub use shutdown_latch::ShutdownLatch;
pub use slots::{SharedSlots, SlotGuard};
