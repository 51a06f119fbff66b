//! The table's configuration: the reconnect window, how long ended sessions stay in memory, the
//! idle timeout, and the response-time window size.

use std::time::Duration;

use crate::response_times::DEFAULT_CAPACITY;
use crate::time::{HOUR, MINUTE};

/// Time limits and sizes of a [`SessionTable`](super::SessionTable).
///
/// Every expiry is inclusive: a session whose age equals the limit has expired (it is swept, or
/// no longer resumable), so a sweep at exactly the instant [`next_deadline`] returns acts.
///
/// [`next_deadline`]: super::SessionTable::next_deadline
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// `chatbox.reconnect_timeout` (default 15 min): an ended session is resumed when its owner
    /// sends its id less than this long after its end (§10 items 4, 22). Resuming also needs the
    /// session to be in memory, so the effective window is `min(reconnect_window, ended_ttl)`
    /// unless the shell loads ended sessions on demand.
    pub reconnect_window: Duration,
    /// `SESSION_TTL` (default 15 min): how long an ended session stays in memory after its end.
    pub ended_ttl: Duration,
    /// Default 1 h: an active session with no attached connection and no activity for this long
    /// is ended by [`sweep`](super::SessionTable::sweep) (§10 item 23).
    pub idle_timeout: Duration,
    /// Default 100: the response-time window of each session (§6.5; treated as at least 1).
    pub response_time_capacity: usize,
}

impl Default for SessionLimits {
    fn default() -> Self {
        Self {
            reconnect_window: 15 * MINUTE,
            ended_ttl: 15 * MINUTE,
            idle_timeout: HOUR,
            response_time_capacity: DEFAULT_CAPACITY,
        }
    }
}
