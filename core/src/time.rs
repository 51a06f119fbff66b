//! Time as a value. Core never reads a clock: every decision takes `now: Instant`, a point on a
//! monotonic clock whose origin the driver picks (the shell uses the runtime's clock at start-up,
//! tests use zero). Wall-clock time (for stored timestamps) is passed separately as `UnixMillis`.

use std::ops::{Add, AddAssign, Sub};
use std::time::Duration;

/// A point on a monotonic clock, in nanoseconds since an origin chosen by the driver.
///
/// Arithmetic saturates instead of panicking: `Instant::ZERO - d` is `Instant::ZERO`, and adding a
/// huge `Duration` gives `Instant::MAX`, so "never" deadlines need no special case.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(u64);

impl Instant {
    /// The driver's origin.
    pub const ZERO: Instant = Instant(0);
    /// The far future; used for "no deadline".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `nanos` nanoseconds after the origin.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// An instant `millis` milliseconds after the origin.
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000_000))
    }

    /// An instant `secs` seconds after the origin.
    pub const fn from_secs(secs: u64) -> Self {
        Instant(secs.saturating_mul(1_000_000_000))
    }

    /// Nanoseconds since the origin.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time elapsed since the origin.
    pub const fn since_origin(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// `self - earlier`, or zero when `earlier` is later than `self`.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }

    /// `self + d`, saturating at [`Instant::MAX`].
    pub fn saturating_add(self, d: Duration) -> Instant {
        Instant(self.0.saturating_add(duration_nanos(d)))
    }

    /// `self - d`, saturating at [`Instant::ZERO`].
    pub fn saturating_sub(self, d: Duration) -> Instant {
        Instant(self.0.saturating_sub(duration_nanos(d)))
    }
}

/// Nanoseconds in `d`, saturating at `u64::MAX` (584 years).
pub fn duration_nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, d: Duration) {
        *self = self.saturating_add(d);
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    fn sub(self, d: Duration) -> Instant {
        self.saturating_sub(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

/// Wall-clock time in milliseconds since the Unix epoch (UTC). Used only for values that are
/// stored or shown (session start and end, message times), never for deadlines.
#[derive(
    Copy,
    Clone,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct UnixMillis(pub i64);

impl UnixMillis {
    /// Whole seconds from `earlier` to `self`, zero when negative (the stored `dur`).
    pub fn whole_seconds_since(self, earlier: UnixMillis) -> i64 {
        (self.0.saturating_sub(earlier.0) / 1000).max(0)
    }

    /// `d` earlier (saturating).
    pub fn minus(self, d: Duration) -> UnixMillis {
        UnixMillis(self.0.saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
    }

    /// The same instant as a UTC `chrono` date-time (the epoch when out of chrono's range).
    pub fn to_datetime(self) -> chrono::DateTime<chrono::Utc> {
        chrono::DateTime::from_timestamp_millis(self.0).unwrap_or_default()
    }
}

/// Handy constants for tests and defaults.
pub const SECOND: Duration = Duration::from_secs(1);
/// One minute.
pub const MINUTE: Duration = Duration::from_secs(60);
/// One hour.
pub const HOUR: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arithmetic_saturates() {
        assert_eq!(Instant::ZERO - SECOND, Instant::ZERO);
        assert_eq!(Instant::MAX + SECOND, Instant::MAX);
        assert_eq!(Instant::from_secs(5) - Instant::from_secs(7), Duration::ZERO);
        assert_eq!(Instant::from_secs(7) - Instant::from_secs(5), 2 * SECOND);
        assert_eq!(UnixMillis(5_000).minus(2 * SECOND), UnixMillis(3_000));
        assert_eq!(UnixMillis(i64::MIN).minus(SECOND), UnixMillis(i64::MIN));
        assert_eq!(Instant::from_millis(1500), Instant::from_secs(1) + Duration::from_millis(500));
    }

    #[test]
    fn whole_seconds_truncate_and_clamp() {
        assert_eq!(UnixMillis(10_999).whole_seconds_since(UnixMillis(1_000)), 9);
        assert_eq!(UnixMillis(0).whole_seconds_since(UnixMillis(1_000)), 0);
    }
}
