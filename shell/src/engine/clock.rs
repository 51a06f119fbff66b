//! The server's clock: the runtime's monotonic clock turned into core's `Instant`, and the wall
//! clock for stored timestamps. The only place in engine/http that reads time, so madsim's
//! simulated clock drives everything under `--cfg madsim`.

use chatbox_core::{Instant, UnixMillis};

/// Reads the runtime's clock.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    origin: tokio::time::Instant,
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock {
    /// A clock whose core origin is now.
    #[allow(clippy::disallowed_methods, reason = "the one reader of the runtime's clock")]
    pub fn new() -> Self {
        Self { origin: tokio::time::Instant::now() }
    }

    /// Monotonic now, as core's `Instant`.
    #[allow(clippy::disallowed_methods, reason = "the one reader of the runtime's clock")]
    pub fn now(&self) -> Instant {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.origin);
        Instant::from_nanos(chatbox_core::time::duration_nanos(elapsed))
    }

    /// The runtime instant corresponding to a core `Instant` (for `sleep_until`).
    pub fn to_runtime(&self, at: Instant) -> tokio::time::Instant {
        // Far-future deadlines are clamped so the runtime's own arithmetic cannot overflow.
        let far = std::time::Duration::from_secs(100 * 365 * 24 * 3600);
        self.origin + at.since_origin().min(far)
    }

    /// Wall-clock now (UTC milliseconds). Under madsim this is the simulated wall clock.
    pub fn wall(&self) -> UnixMillis {
        #[allow(clippy::disallowed_methods)] // the one sanctioned wall-clock read
        let now = std::time::SystemTime::now();
        let ms = now
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        UnixMillis(ms)
    }

    /// Wall-clock now as a chrono UTC date-time (for frame timestamps).
    pub fn wall_datetime(&self) -> chrono::DateTime<chrono::Utc> {
        self.wall().to_datetime()
    }
}
