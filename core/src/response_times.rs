//! The rolling window of a session's last N response times (seed fix #12, properties 12 and 13).
//!
//! A fixed-capacity ring: `record` is O(1) and overwrites the oldest sample once full, `max` and
//! `average` look only at the samples in the window. Memory is allocated once, at construction,
//! and never grows.

use std::time::Duration;

/// Default window size (PROTOCOL.md §6.5: the last 100 response times).
pub const DEFAULT_CAPACITY: usize = 100;

/// A bounded ring of response times.
///
/// Inputs: [`ResponseTimes::record`]. Outputs: [`ResponseTimes::max`], [`ResponseTimes::average`],
/// [`ResponseTimes::iter`] (oldest first).
///
/// Invariants: `len() <= capacity()`; once full, each `record` evicts exactly the oldest sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseTimes {
    samples: Vec<Duration>,
    capacity: usize,
    /// Index of the oldest sample once the ring is full (the next slot to overwrite).
    head: usize,
}

impl Default for ResponseTimes {
    fn default() -> Self {
        Self::new(DEFAULT_CAPACITY)
    }
}

impl ResponseTimes {
    /// An empty window holding at most `capacity` samples (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self { samples: Vec::with_capacity(capacity), capacity, head: 0 }
    }

    /// Records one response time, evicting the oldest when the window is full. O(1).
    pub fn record(&mut self, d: Duration) {
        if self.samples.len() < self.capacity {
            self.samples.push(d);
        } else {
            self.samples[self.head] = d;
            self.head = (self.head + 1) % self.capacity;
        }
        debug_assert!(self.samples.len() <= self.capacity, "response-time window overflowed");
        debug_assert!(self.samples.capacity() <= self.capacity.max(4), "window reallocated");
    }

    /// Number of samples held.
    pub fn len(&self) -> usize {
        self.samples.len()
    }

    /// Whether no sample has been recorded.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The most samples the window holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Largest sample in the window (zero when empty).
    pub fn max(&self) -> Duration {
        self.samples.iter().copied().max().unwrap_or_default()
    }

    /// Mean of the samples in the window (zero when empty).
    pub fn average(&self) -> Duration {
        if self.samples.is_empty() {
            return Duration::ZERO;
        }
        let total: u128 = self.samples.iter().map(Duration::as_nanos).sum();
        let mean = total / self.samples.len() as u128;
        Duration::from_nanos(u64::try_from(mean).unwrap_or(u64::MAX))
    }

    /// Samples from oldest to newest.
    pub fn iter(&self) -> impl Iterator<Item = Duration> + '_ {
        let (newer, older) = self.samples.split_at(self.head);
        older.iter().chain(newer.iter()).copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_last_n_in_order() {
        let mut w = ResponseTimes::new(3);
        for ms in 1..=5 {
            w.record(Duration::from_millis(ms));
        }
        let got: Vec<u64> = w.iter().map(|d| d.as_millis() as u64).collect();
        assert_eq!(got, vec![3, 4, 5]);
        assert_eq!(w.max(), Duration::from_millis(5));
        assert_eq!(w.average(), Duration::from_millis(4));
    }

    #[test]
    fn empty_window_reports_zero() {
        let w = ResponseTimes::default();
        assert_eq!(w.capacity(), DEFAULT_CAPACITY);
        assert_eq!(w.max(), Duration::ZERO);
        assert_eq!(w.average(), Duration::ZERO);
    }
}
