//! The table's invariants, written once (STYLE.md §5) and used three ways: per transition by
//! `debug_assert!` (the touched session plus O(1) global checks), and in full by
//! [`SessionTable::check_invariants`] from the proptests and the simulator.
//! The rules are listed in the [`SessionTable`] docs.

use super::error::InvariantViolation;
use super::record::{Session, SessionState};
use super::table::{expected_deadline, SessionTable};
use crate::time::Instant;

impl SessionTable {
    /// Checks every invariant over the whole table. O(n log n): for tests, the simulator and
    /// debugging, not for the request path.
    pub fn check_invariants(&self) -> Result<(), InvariantViolation> {
        self.check_globals()?;
        let mut active = 0usize;
        let mut with_deadline = 0usize;
        for (key, session) in &self.sessions {
            if key != &session.id {
                return Err(InvariantViolation::new(
                    "user_index_exact",
                    format!("session {} is stored under key {key}", session.id),
                ));
            }
            self.check_record(session)?;
            active += usize::from(session.is_active());
            with_deadline += usize::from(session.deadline.is_some());
        }
        for (user, id) in &self.active_by_user {
            match self.sessions.get(id) {
                Some(s) if s.is_active() && s.user_id == *user => {}
                _ => {
                    return Err(InvariantViolation::new(
                        "user_index_exact",
                        format!(
                            "index maps user {user} to {id}, which is not their active session"
                        ),
                    ))
                }
            }
        }
        let stats = self.memory_stats();
        if stats.active != active
            || stats.inactive != self.sessions.len() - active
            || stats.active + stats.inactive != stats.total
            || stats.total != self.len()
        {
            return Err(InvariantViolation::new(
                "stats_sum",
                format!("{stats:?} but {active} active of {} held", self.len()),
            ));
        }
        if with_deadline != self.deadlines.len() {
            return Err(InvariantViolation::new(
                "deadline_index_exact",
                format!(
                    "{} index entries for {with_deadline} sessions with a deadline",
                    self.deadlines.len()
                ),
            ));
        }
        if let Some((at, id)) = self
            .deadlines
            .iter()
            .find(|(at, id)| self.sessions.get(id).map(|s| s.deadline) != Some(Some(*at)))
        {
            return Err(InvariantViolation::new(
                "deadline_index_exact",
                format!("index entry ({at:?}, {id}) matches no session deadline"),
            ));
        }
        Ok(())
    }

    /// The invariants of session `id` (if still held) and the O(1) global ones; what the
    /// `debug_assert!` after each transition checks.
    pub(super) fn check_session(&self, id: &str) -> Result<(), InvariantViolation> {
        self.check_globals()?;
        match self.sessions.get(id) {
            Some(session) => self.check_record(session),
            None => Ok(()),
        }
    }

    /// Cheap whole-table checks.
    fn check_globals(&self) -> Result<(), InvariantViolation> {
        if self.active_by_user.len() > self.sessions.len() {
            return Err(InvariantViolation::new(
                "stats_sum",
                format!("{} active of {} held", self.active_by_user.len(), self.sessions.len()),
            ));
        }
        if self.deadlines.len() > self.sessions.len() {
            return Err(InvariantViolation::new(
                "deadline_index_exact",
                format!("{} deadlines for {} sessions", self.deadlines.len(), self.sessions.len()),
            ));
        }
        if self.swept_through.is_some_and(|t| t > self.clock) {
            return Err(InvariantViolation::new(
                "clock_monotonic",
                format!("swept through {:?} after clock {:?}", self.swept_through, self.clock),
            ));
        }
        Ok(())
    }

    /// Every invariant that concerns one session.
    fn check_record(&self, s: &Session) -> Result<(), InvariantViolation> {
        let id = &s.id;
        let indexed = self.active_by_user.get(&*s.user_id);
        match s.state {
            SessionState::Active if indexed != Some(id) => {
                let rule = match indexed.and_then(|other| self.sessions.get(other)) {
                    Some(other) if other.is_active() => "one_active_per_user",
                    _ => "user_index_exact",
                };
                return Err(InvariantViolation::new(
                    rule,
                    format!("{id} is active for {} but the index says {indexed:?}", s.user_id),
                ));
            }
            SessionState::Ended { .. } if indexed == Some(id) => {
                return Err(InvariantViolation::new(
                    "user_index_exact",
                    format!("{id} has ended but is indexed as {}'s active session", s.user_id),
                ));
            }
            _ => {}
        }

        let expected = expected_deadline(&self.limits, s);
        if s.deadline != expected {
            return Err(InvariantViolation::new(
                "deadline_index_exact",
                format!("{id} sits under {:?}, expected {expected:?}", s.deadline),
            ));
        }
        if let Some(at) = s.deadline {
            if !self.deadlines.contains(at, id) {
                return Err(InvariantViolation::new(
                    "deadline_index_exact",
                    format!("{id} has deadline {at:?} but no index entry"),
                ));
            }
            // The instant of the transition that set this deadline.
            let set_at = match s.state {
                SessionState::Active => s.last_activity,
                SessionState::Ended { at, .. } => at,
            };
            if let Some(swept) = self.swept_through {
                if at <= swept && set_at < swept {
                    return Err(InvariantViolation::new(
                        "expired_swept",
                        format!("{id} was due at {at:?} but survived the sweep at {swept:?}"),
                    ));
                }
            }
        }

        let capacity = self.limits.response_time_capacity.max(1);
        if s.response_times.capacity() != capacity || s.response_times.len() > capacity {
            return Err(InvariantViolation::new(
                "window_bounded",
                format!(
                    "{id} holds {} response times, capacity {} (limit {capacity})",
                    s.response_times.len(),
                    s.response_times.capacity()
                ),
            ));
        }

        let ended_at = s.ended_at().unwrap_or(Instant::ZERO);
        if s.last_activity > self.clock || s.started_at > self.clock || ended_at > self.clock {
            return Err(InvariantViolation::new(
                "clock_monotonic",
                format!("{id} records an instant after the clock {:?}", self.clock),
            ));
        }
        Ok(())
    }
}
