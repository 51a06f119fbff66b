//! Observation points for the simulator and tests: the engine reports each rate decision and
//! each finished reply to an optional [`Probe`], so invariants ("never more than N per window",
//! "no reply outlives its deadline") are checked against what the server really decided, not
//! against what a client could infer. No probe is installed in production.

use std::fmt;

use chatbox_core::Instant;

use super::replies::ReplyEnd;

/// Receives engine events. Calls are synchronous and must be cheap.
pub trait Probe: Send + Sync + fmt::Debug {
    /// A `user_message` rate decision for `key` at `now`.
    fn on_rate_decision(&self, key: &str, now: Instant, allowed: bool) {
        let _ = (key, now, allowed);
    }

    /// The in-process message limiter did not track `key` before an event it allowed at `now`:
    /// the key starts a fresh budget (a first use, or a return after `cleanup` or after an LRU
    /// eviction — with more live keys than `RATE_LIMIT_MAX_KEYS`, PROTOCOL.md §10 item 28).
    fn on_rate_fresh_key(&self, key: &str, now: Instant) {
        let _ = (key, now);
    }

    /// A reply of `session` started at `started`; its outcome was decided at `decided` (before
    /// the finished reply was stored) and it ended as `end`.
    fn on_reply(&self, session: &str, started: Instant, decided: Instant, end: &ReplyEnd) {
        let _ = (session, started, decided, end);
    }
}
