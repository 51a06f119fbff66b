//! The drain plan of a graceful shutdown (seed fix #15, properties 15 and 16).
//!
//! Phases: `Accepting` → `Draining` (stop accepting, readiness says not-ready, let replies in
//! flight finish) → `Closing` (send close 1001 "Server shutting down" to every connection, flush
//! storage) → `Done` (exit 0). The whole plan has one deadline, fixed when it begins; the plan
//! reaches `Done` by that deadline whatever the peers do, because each phase also ends when its
//! share of the budget runs out, and `Done` after a forced step says what was forced.

use std::time::Duration;

use crate::time::Instant;

/// Where the plan is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Phase {
    /// Serving normally.
    Accepting,
    /// Not accepting; waiting for replies in flight.
    Draining,
    /// Close frames sent; waiting for connections to close and storage to flush.
    Closing,
    /// Finished: the process may exit.
    Done,
}

/// Something the driver must do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    /// Stop accepting new connections and report not-ready.
    StopAccepting,
    /// Send close 1001 "Server shutting down" to every open connection.
    CloseConnections,
    /// Replies still in flight at the drain deadline: end each with its documented error frame.
    CutReplies {
        /// How many replies were cut.
        count: usize,
    },
    /// Flush storage (drain the write queue into the store or the durable outbox).
    FlushStorage,
    /// Connections still open at the deadline: drop their sockets.
    ForceClose {
        /// How many connections were dropped.
        count: usize,
    },
    /// The plan is done: exit with status 0.
    Exit,
}

/// The shutdown state machine.
///
/// Inputs: [`begin`](Self::begin), [`reply_started`](Self::reply_started),
/// [`reply_finished`](Self::reply_finished), [`connection_opened`](Self::connection_opened),
/// [`connection_closed`](Self::connection_closed), [`storage_flushed`](Self::storage_flushed),
/// [`handle_timeout`](Self::handle_timeout). Every input returns the effects to perform now, in
/// order. [`poll_timeout`](Self::poll_timeout) tells when to call `handle_timeout`. `now` is the
/// driver's monotonic clock. `begin` is idempotent (the first call fixes the deadline).
///
/// Invariants: `Done` is reached no later than `begin`'s `now + timeout` if the driver calls
/// `handle_timeout` at `poll_timeout`; when `Done`, every connection was either closed or
/// reported in `ForceClose`; `Exit` is emitted exactly once.
#[derive(Debug, Clone)]
pub struct ShutdownPlan {
    phase: Phase,
    in_flight: usize,
    open: usize,
    flushed: bool,
    drain_deadline: Instant,
    deadline: Instant,
}

impl Default for ShutdownPlan {
    fn default() -> Self {
        Self::new()
    }
}

/// Share of the budget kept for closing handshakes and the storage flush after the drain.
const CLOSE_SHARE_DIVISOR: u32 = 5;
/// Upper bound of that share.
const MAX_CLOSE_BUDGET: Duration = Duration::from_secs(5);

impl ShutdownPlan {
    /// A plan in the `Accepting` phase with nothing open.
    pub fn new() -> Self {
        Self {
            phase: Phase::Accepting,
            in_flight: 0,
            open: 0,
            flushed: false,
            drain_deadline: Instant::MAX,
            deadline: Instant::MAX,
        }
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Connections currently open.
    pub fn open_connections(&self) -> usize {
        self.open
    }

    /// Replies currently in flight.
    pub fn replies_in_flight(&self) -> usize {
        self.in_flight
    }

    /// The hard deadline (`Instant::MAX` before `begin`).
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Whether new connections may be accepted.
    pub fn is_accepting(&self) -> bool {
        self.phase == Phase::Accepting
    }

    /// Starts the shutdown at `now` with a total budget of `timeout`.
    #[must_use]
    pub fn begin(&mut self, now: Instant, timeout: Duration) -> Vec<Effect> {
        if self.phase != Phase::Accepting {
            return Vec::new();
        }
        let close_budget = (timeout / CLOSE_SHARE_DIVISOR).min(MAX_CLOSE_BUDGET);
        self.deadline = now + timeout;
        self.drain_deadline = self.deadline - close_budget;
        self.phase = Phase::Draining;
        let mut effects = vec![Effect::StopAccepting];
        self.advance(now, &mut effects);
        effects
    }

    /// A reply started streaming (only counted while accepting or draining).
    pub fn reply_started(&mut self) {
        self.in_flight += 1;
    }

    /// A reply ended (any outcome).
    #[must_use]
    pub fn reply_finished(&mut self, now: Instant) -> Vec<Effect> {
        self.in_flight = self.in_flight.saturating_sub(1);
        self.step(now)
    }

    /// A connection finished its upgrade.
    pub fn connection_opened(&mut self) {
        self.open += 1;
    }

    /// A connection closed.
    #[must_use]
    pub fn connection_closed(&mut self, now: Instant) -> Vec<Effect> {
        self.open = self.open.saturating_sub(1);
        self.step(now)
    }

    /// Storage reported that its queue is flushed.
    #[must_use]
    pub fn storage_flushed(&mut self, now: Instant) -> Vec<Effect> {
        self.flushed = true;
        self.step(now)
    }

    /// When to call [`handle_timeout`](Self::handle_timeout); `None` when no deadline is pending.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            Phase::Accepting | Phase::Done => None,
            Phase::Draining => Some(self.drain_deadline),
            Phase::Closing => Some(self.deadline),
        }
    }

    /// Moves the plan on if a deadline has passed at `now`.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<Effect> {
        self.step(now)
    }

    fn step(&mut self, now: Instant) -> Vec<Effect> {
        let mut effects = Vec::new();
        self.advance(now, &mut effects);
        effects
    }

    fn advance(&mut self, now: Instant, effects: &mut Vec<Effect>) {
        if self.phase == Phase::Draining && (self.in_flight == 0 || now >= self.drain_deadline) {
            if self.in_flight > 0 {
                effects.push(Effect::CutReplies { count: self.in_flight });
                self.in_flight = 0;
            }
            effects.push(Effect::CloseConnections);
            effects.push(Effect::FlushStorage);
            self.phase = Phase::Closing;
        }
        if self.phase == Phase::Closing {
            let settled = self.open == 0 && self.flushed;
            if settled || now >= self.deadline {
                if self.open > 0 {
                    effects.push(Effect::ForceClose { count: self.open });
                    self.open = 0;
                }
                effects.push(Effect::Exit);
                self.phase = Phase::Done;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SECOND;

    #[test]
    fn quiet_server_exits_after_close_and_flush() {
        let mut p = ShutdownPlan::new();
        p.connection_opened();
        let t = Instant::from_secs(10);
        let fx = p.begin(t, 30 * SECOND);
        assert_eq!(fx, vec![Effect::StopAccepting, Effect::CloseConnections, Effect::FlushStorage]);
        assert_eq!(p.phase(), Phase::Closing);
        assert!(p.connection_closed(t).is_empty());
        assert_eq!(p.storage_flushed(t), vec![Effect::Exit]);
        assert_eq!(p.phase(), Phase::Done);
    }

    #[test]
    fn replies_in_flight_finish_before_close() {
        let mut p = ShutdownPlan::new();
        p.connection_opened();
        p.reply_started();
        let t = Instant::ZERO;
        assert_eq!(p.begin(t, 30 * SECOND), vec![Effect::StopAccepting]);
        assert_eq!(p.poll_timeout(), Some(t + 25 * SECOND));
        assert_eq!(
            p.reply_finished(t + SECOND),
            vec![Effect::CloseConnections, Effect::FlushStorage]
        );
    }

    #[test]
    fn stuck_peers_are_cut_and_forced_by_the_deadline() {
        let mut p = ShutdownPlan::new();
        p.connection_opened();
        p.connection_opened();
        p.reply_started();
        let t = Instant::ZERO;
        let _ = p.begin(t, 30 * SECOND);
        let fx = p.handle_timeout(t + 25 * SECOND);
        assert_eq!(
            fx,
            vec![Effect::CutReplies { count: 1 }, Effect::CloseConnections, Effect::FlushStorage]
        );
        assert_eq!(p.poll_timeout(), Some(t + 30 * SECOND));
        assert!(p.handle_timeout(t + 29 * SECOND).is_empty());
        assert_eq!(
            p.handle_timeout(t + 30 * SECOND),
            vec![Effect::ForceClose { count: 2 }, Effect::Exit]
        );
        assert!(p.handle_timeout(t + 31 * SECOND).is_empty());
    }

    #[test]
    fn begin_is_idempotent() {
        let mut p = ShutdownPlan::new();
        p.reply_started();
        let _ = p.begin(Instant::ZERO, 30 * SECOND);
        assert!(p.begin(Instant::from_secs(5), 30 * SECOND).is_empty());
        assert_eq!(p.deadline(), Instant::from_secs(30));
    }
}
