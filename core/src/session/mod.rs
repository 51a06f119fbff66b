//! Sessions (PROTOCOL.md §6; seed issue #1 and #12, properties 1, 2, 3, 12, 13).
//!
//! [`SessionTable`] is the in-memory registry of live sessions of one server process: it
//! resolves which session a frame uses (create, reuse, resume within the reconnect window a
//! session that ended without anyone asking — an explicit end is final, [`EndCause`]),
//! decides who may bind a connection, ends sessions (explicitly or after idleness), drops ended
//! ones after `ended_ttl`, and holds the takeover, help and statistics state. It is a sans-IO
//! state machine: time comes in as `now`, ids are minted by the caller, and every effect (what to
//! persist, whom to rebind, which frame to send) goes out as a returned value. Its type docs say
//! how to drive it and list its invariants.
//!
//! Files: `table.rs` the machine, `record.rs` one session, `deadlines.rs` the expiry index,
//! `invariants.rs` the checks, `outcome.rs` the decisions it returns, `error.rs` its errors,
//! `limits.rs` its configuration, [`naming`] the session name rule (§6.4), `tests.rs` the unit
//! tests of every rule.

mod deadlines;
mod error;
mod invariants;
mod limits;
pub mod naming;
mod outcome;
mod record;
mod table;

pub use error::{InvariantViolation, SessionError};
pub use limits::SessionLimits;
pub use naming::session_name;
pub use outcome::{
    Access, EndedSession, Left, LoadOutcome, MemoryStats, Resolution, ResolutionKind, SweepReport,
    TakeoverOutcome,
};
pub use record::{AdminRef, EndCause, Session, SessionId, SessionSnapshot, SessionState};
pub use table::{SessionTable, SWEEP_BATCH, SWEEP_BATCH_BUCKETS, SWEEP_HOLD_GOAL};

#[cfg(test)]
mod tests;
