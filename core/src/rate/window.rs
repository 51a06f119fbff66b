//! One key's bucketed sliding window: the bucket arithmetic ([`Geometry`]) and the ring of
//! counters ([`Window`]) that [`super::RateLimiter`] keeps per key. Pure arithmetic on nanosecond
//! values; the limiter decides which time to pass (its own monotone clock, see the module doc of
//! [`super`]).
//!
//! Ring invariant: a window whose newest bucket is `B` holds exactly the buckets
//! `B - (slots - 1) ..= B` (those at or above zero), bucket `i` in `counts[i % slots]`. Buckets
//! older than that are never counted again: a later check at `t` (with `b(t) ≥ B`) counts from
//! `first_counted(t) ≥ b(t) - ⌈W/g⌉ = b(t) - (slots - 1)`, so zeroing them on
//! [`Window::advance`] loses nothing.

use std::time::Duration;

use crate::time::duration_nanos;

/// Sub-buckets per window unless configured otherwise: a 60 s window is counted in 3 s buckets.
pub const DEFAULT_BUCKETS: u32 = 20;

/// The most sub-buckets a window may be split into (bounds the per-key memory at 1 025 counters).
pub const MAX_BUCKETS: u32 = 1024;

/// The bucket arithmetic of one [`super::RateLimit`]: window `W`, bucket width `g` and ring size.
///
/// Invariants: `width ≥ 1`, `width · k ≥ window`, `slots = ⌈window / width⌉ + 1 ≤ k + 1`.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Geometry {
    /// `W` in nanoseconds.
    window: u64,
    /// `g` in nanoseconds, at least 1.
    width: u64,
    /// Counters per key: enough to hold every bucket a check can count.
    slots: u64,
}

impl Geometry {
    /// The geometry of a `window` split into `buckets` sub-buckets (clamped to
    /// `1..=MAX_BUCKETS`); `g = max(1 ns, ⌈W / k⌉)`.
    pub(crate) fn new(window: Duration, buckets: u32) -> Self {
        let window = duration_nanos(window);
        let k = u64::from(buckets.clamp(1, MAX_BUCKETS));
        let width = window.div_ceil(k).max(1);
        let slots = window.div_ceil(width) + 1;
        debug_assert!(width.saturating_mul(k) >= window, "buckets do not cover the window");
        debug_assert!((1..=k + 1).contains(&slots), "ring larger than k + 1");
        Self { window, width, slots }
    }

    /// `g` in nanoseconds.
    pub(crate) fn width(&self) -> u64 {
        self.width
    }

    /// Counters per key (`⌈W/g⌉ + 1`).
    pub(crate) fn slots(&self) -> u64 {
        self.slots
    }

    /// `b(t) = ⌊t / g⌋`: the bucket an event at `t` is counted in.
    pub(crate) fn bucket(&self, t: u64) -> u64 {
        t / self.width
    }

    /// `b(t − W)` (with `t − W` saturating at zero): the oldest bucket a check at `t` counts.
    /// Its start `b(t − W) · g ≤ t − W`, so the counted span covers the whole sliding window.
    pub(crate) fn first_counted(&self, t: u64) -> u64 {
        t.saturating_sub(self.window) / self.width
    }

    /// The first instant at which bucket `i` is no longer counted: `(i + 1) · g + W`, the least
    /// `t` with `first_counted(t) > i` (saturating at `u64::MAX`, "never").
    pub(crate) fn release_of(&self, i: u64) -> u64 {
        i.saturating_add(1).saturating_mul(self.width).saturating_add(self.window)
    }
}

/// One key's counters: a ring of [`Geometry::slots`] event counts and the index of its newest
/// bucket. `C` is the storage: the limiter keeps every key's ring in one flat array and views a
/// key's part as a `Window<&mut [u32]>`; a `Window<Box<[u32]>>` owns its counters.
///
/// Inputs: [`Window::advance`] (time moved to a bucket), [`Window::record`] (one allowed event in
/// the newest bucket). Outputs: [`Window::count_from`], [`Window::release_at`],
/// [`Window::last_event`]. Invariants: see the module doc; each counter is at most the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window<C> {
    /// Bucket index of the newest slot.
    newest: u64,
    /// Bucket `i` lives in `counts[i % slots]`.
    counts: C,
}

impl Window<Box<[u32]>> {
    /// An empty window whose newest bucket is `bucket`, owning its counters.
    #[cfg(test)]
    pub(crate) fn new(geo: &Geometry, bucket: u64) -> Self {
        let slots = usize::try_from(geo.slots()).unwrap_or(1).max(1);
        Self { newest: bucket, counts: vec![0; slots].into_boxed_slice() }
    }
}

impl<C: AsRef<[u32]>> Window<C> {
    /// The ring stored in `counts` (at least one counter) whose newest bucket is `newest`.
    pub(crate) fn view(newest: u64, counts: C) -> Self {
        debug_assert!(!counts.as_ref().is_empty(), "a ring needs at least one counter");
        Self { newest, counts }
    }

    /// The newest bucket index.
    pub(crate) fn newest(&self) -> u64 {
        self.newest
    }

    fn len(&self) -> u64 {
        self.counts.as_ref().len() as u64
    }

    fn slot(&self, bucket: u64) -> usize {
        // `counts.len()` fits in u64 and the remainder is below it, so both casts are lossless.
        (bucket % self.len()) as usize
    }

    /// The oldest bucket the ring holds.
    fn oldest(&self) -> u64 {
        self.newest.saturating_sub(self.len() - 1)
    }

    /// The ring positions of buckets `lo ..= hi` (`lo ≤ hi`, at most one ring apart), as the
    /// position of `lo` and the lengths before and after the wrap. One division per call instead
    /// of one per bucket: this is the limiter's hot path.
    fn span(&self, lo: u64, hi: u64) -> (usize, usize, usize) {
        debug_assert!(lo <= hi && hi - lo < self.len(), "span wider than the ring");
        let start = self.slot(lo);
        let n = (hi - lo + 1) as usize;
        let first = n.min(self.counts.as_ref().len() - start);
        (start, first, n - first)
    }

    /// The counters of buckets `lo ..= hi`, oldest first, as the two contiguous runs of the ring.
    fn runs(&self, lo: u64, hi: u64) -> (&[u32], &[u32]) {
        let (start, first, wrapped) = self.span(lo, hi);
        let counts = self.counts.as_ref();
        (&counts[start..start + first], &counts[..wrapped])
    }

    /// The events in buckets `first ..= newest`.
    pub(crate) fn count_from(&self, first: u64) -> u64 {
        let lo = first.max(self.oldest());
        if lo > self.newest {
            return 0;
        }
        let (a, b) = self.runs(lo, self.newest);
        a.iter().chain(b).map(|&c| u64::from(c)).sum()
    }

    /// The newest bucket holding an event, if any.
    pub(crate) fn last_event(&self) -> Option<u64> {
        let lo = self.oldest();
        let (a, b) = self.runs(lo, self.newest);
        let newer = b.iter().rposition(|&c| c > 0).map(|j| lo + (a.len() + j) as u64);
        newer.or_else(|| a.iter().rposition(|&c| c > 0).map(|j| lo + j as u64))
    }

    /// Whether a check counting from bucket `first` would see any event.
    pub(crate) fn is_live(&self, first: u64) -> bool {
        self.last_event().is_some_and(|b| b >= first)
    }

    /// The earliest instant at which a check counting from `first` at the newest bucket or later
    /// would see fewer than `limit` events, if nothing is recorded meanwhile: drop the oldest
    /// counted buckets until fewer than `limit` remain; the answer is the release of the last
    /// bucket dropped. `None` when the count is already below `limit`.
    pub(crate) fn release_at(&self, geo: &Geometry, first: u64, limit: u32) -> Option<u64> {
        let lo = first.max(self.oldest());
        if lo > self.newest {
            return None;
        }
        let (a, b) = self.runs(lo, self.newest);
        let mut remaining: u64 = a.iter().chain(b).map(|&c| u64::from(c)).sum();
        let limit = u64::from(limit);
        let mut dropped = None;
        for (i, &c) in (lo..).zip(a.iter().chain(b)) {
            if remaining < limit {
                break;
            }
            remaining -= u64::from(c);
            dropped = Some(i);
        }
        // Only reachable with limit 0, which the limiter never asks about.
        debug_assert!(remaining < limit || limit == 0, "dropping every bucket must free a slot");
        dropped.map(|i| geo.release_of(i))
    }
}

impl<C: AsRef<[u32]> + AsMut<[u32]>> Window<C> {
    /// Empties the window and makes `bucket` its newest bucket (reusing the storage).
    pub(crate) fn reset(&mut self, bucket: u64) {
        self.counts.as_mut().fill(0);
        self.newest = bucket;
    }

    /// Moves the newest bucket forward to `bucket`, zeroing the buckets that fall out of the
    /// ring. A `bucket` at or before the newest changes nothing (time never moves a ring back).
    pub(crate) fn advance(&mut self, bucket: u64) {
        if bucket <= self.newest {
            return;
        }
        if bucket - self.newest >= self.len() {
            self.counts.as_mut().fill(0);
        } else {
            let (start, first, wrapped) = self.span(self.newest + 1, bucket);
            let counts = self.counts.as_mut();
            counts[start..start + first].fill(0);
            counts[..wrapped].fill(0);
        }
        self.newest = bucket;
    }

    /// Counts one event in the newest bucket.
    pub(crate) fn record(&mut self) {
        let slot = self.slot(self.newest);
        let counts = self.counts.as_mut();
        counts[slot] = counts[slot].saturating_add(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::{MINUTE, SECOND};

    #[test]
    fn sixty_seconds_in_twenty_buckets() {
        let geo = Geometry::new(MINUTE, DEFAULT_BUCKETS);
        assert_eq!(geo.width(), 3_000_000_000);
        assert_eq!(geo.slots(), 21);
        let t = 100 * 3_000_000_000 + 5;
        assert_eq!(geo.bucket(t), 100);
        assert_eq!(geo.first_counted(t), 80);
        assert_eq!(geo.release_of(80), 81 * 3_000_000_000 + 60_000_000_000);
    }

    #[test]
    fn odd_and_tiny_windows() {
        // 7 ns in 20 buckets: 1 ns buckets, 8 counters.
        let geo = Geometry::new(Duration::from_nanos(7), 20);
        assert_eq!((geo.width(), geo.slots()), (1, 8));
        // 61 s in 20 buckets: g = 3.05 s, exactly 20 buckets of span.
        let geo = Geometry::new(61 * SECOND, 20);
        assert_eq!((geo.width(), geo.slots()), (3_050_000_000, 21));
        // 1 ns more: g rounds up, the ring never grows past k + 1.
        let geo = Geometry::new(61 * SECOND + Duration::from_nanos(1), 20);
        assert_eq!(geo.slots(), 21);
        // Zero window: one 1 ns bucket, the check counts only events at the same instant.
        let geo = Geometry::new(Duration::ZERO, 20);
        assert_eq!((geo.width(), geo.slots()), (1, 1));
        assert_eq!(geo.first_counted(42), 42);
        // Buckets clamp.
        assert_eq!(Geometry::new(MINUTE, 0).slots(), 2);
        assert_eq!(Geometry::new(MINUTE, u32::MAX).slots(), u64::from(MAX_BUCKETS) + 1);
    }

    #[test]
    fn ring_advances_and_forgets() {
        let geo = Geometry::new(Duration::from_nanos(30), 3); // g = 10, 4 slots
        let mut w = Window::new(&geo, 5);
        w.record();
        w.advance(6);
        w.record();
        w.record();
        assert_eq!(w.count_from(0), 3);
        assert_eq!(w.count_from(6), 2);
        assert_eq!(w.last_event(), Some(6));
        w.advance(4); // backwards: no-op
        assert_eq!(w.newest(), 6);
        w.advance(9); // bucket 5 falls out of the 4-slot ring 6..=9
        assert_eq!(w.count_from(0), 2);
        w.advance(100);
        assert_eq!(w.count_from(0), 0);
        assert_eq!(w.last_event(), None);
        assert!(!w.is_live(0));
    }

    #[test]
    fn release_drops_oldest_buckets_first() {
        let geo = Geometry::new(Duration::from_nanos(30), 3); // g = 10
        let mut w = Window::new(&geo, 1);
        w.record(); // bucket 1
        w.advance(2);
        w.record(); // bucket 2
        w.record();
        // limit 3 reached; dropping bucket 1 leaves 2 < 3: released at (1+1)*10 + 30 = 50.
        assert_eq!(w.release_at(&geo, 0, 3), Some(50));
        // limit 2: must drop bucket 2 as well: (2+1)*10 + 30 = 60.
        assert_eq!(w.release_at(&geo, 0, 2), Some(60));
        assert_eq!(w.release_at(&geo, 0, 4), None);
    }
}
