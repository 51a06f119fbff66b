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
//!
//! The hot path divides by nothing: the limiter finds the clock's bucket and ring position once
//! per bucket width ([`Geometry::position_after`]), a ring finds its positions from that by
//! subtraction, and each key keeps the sum of its counters ([`Head`]) so that a check counting
//! the whole ring (always, when `k` divides `W`) reads one number instead of adding `k + 1`.

use std::fmt;
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
    /// `g · (slots − 1) = W`: a check counts exactly the last `slots` buckets, so
    /// [`Geometry::first_counted_at`] needs no division.
    exact: bool,
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
        let exact = width.checked_mul(slots - 1) == Some(window);
        Self { window, width, slots, exact }
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

    /// [`Geometry::first_counted`] of an instant `t` in bucket `at`: when `g · (slots − 1) = W`,
    /// `⌊(t − W) / g⌋ = ⌊t / g⌋ − (slots − 1)` (and both are 0 before `W`), so no division.
    #[inline]
    pub(crate) fn first_counted_at(&self, t: u64, at: Position) -> u64 {
        debug_assert_eq!(at.bucket, self.bucket(t), "the position of another instant");
        if self.exact {
            at.bucket.saturating_sub(self.slots - 1)
        } else {
            self.first_counted(t)
        }
    }

    /// The ring position of `bucket` (one division).
    pub(crate) fn position(&self, bucket: u64) -> Position {
        // The remainder is below `slots`, which is at most `MAX_BUCKETS + 1`: the cast is lossless.
        let slot = (bucket % self.slots) as usize;
        Position { bucket, slot, start: bucket.saturating_mul(self.width) }
    }

    /// The position of instant `t`, given `last`, the position of an earlier-or-equal instant:
    /// the same when `t` is still in its bucket, found by addition when `t` is less than a ring
    /// later, and by [`Geometry::position`] otherwise. The limiter's clock only moves forward,
    /// so most checks need no division at all.
    #[inline]
    pub(crate) fn position_after(&self, t: u64, last: Position) -> Position {
        if t >= last.start && t - last.start < self.width {
            return last;
        }
        let bucket = self.bucket(t);
        let ahead = bucket.wrapping_sub(last.bucket);
        if bucket < last.bucket || ahead >= self.slots {
            return self.position(bucket);
        }
        // `ahead < slots` and `last.slot < slots`, so the sum is below `2 · slots`: one wrap.
        let mut slot = last.slot + ahead as usize;
        if slot as u64 >= self.slots {
            slot -= self.slots as usize;
        }
        Position { bucket, slot, start: bucket * self.width }
    }

    /// The first instant at which bucket `i` is no longer counted: `(i + 1) · g + W`, the least
    /// `t` with `first_counted(t) > i` (saturating at `u64::MAX`, "never").
    pub(crate) fn release_of(&self, i: u64) -> u64 {
        i.saturating_add(1).saturating_mul(self.width).saturating_add(self.window)
    }
}

/// One event counter of a ring: as narrow as the limit allows (a counter never exceeds the
/// limit), so that a ring of a limit up to 255 takes 21 bytes instead of 84 and a check reads
/// one cache line of it instead of two.
pub(crate) trait Counter: Copy + Default + Eq + Into<u64> + fmt::Debug {
    /// The count plus one, `None` when it would overflow.
    fn plus_one(self) -> Option<Self>;
}

impl Counter for u8 {
    #[inline]
    fn plus_one(self) -> Option<Self> {
        self.checked_add(1)
    }
}

impl Counter for u32 {
    #[inline]
    fn plus_one(self) -> Option<Self> {
        self.checked_add(1)
    }
}

/// The storage of a ring's counters, read-only.
pub(crate) trait Ring {
    /// The counter type.
    type Count: Counter;
    /// The counters.
    fn counts(&self) -> &[Self::Count];
}

/// The storage of a ring's counters, writable.
pub(crate) trait RingMut: Ring {
    /// The counters.
    fn counts_mut(&mut self) -> &mut [Self::Count];
}

impl<T: Counter> Ring for &[T] {
    type Count = T;
    #[inline]
    fn counts(&self) -> &[T] {
        self
    }
}

impl<T: Counter> Ring for &mut [T] {
    type Count = T;
    #[inline]
    fn counts(&self) -> &[T] {
        self
    }
}

impl<T: Counter> RingMut for &mut [T] {
    #[inline]
    fn counts_mut(&mut self) -> &mut [T] {
        self
    }
}

#[cfg(test)]
impl<T: Counter> Ring for Box<[T]> {
    type Count = T;
    fn counts(&self) -> &[T] {
        self
    }
}

#[cfg(test)]
impl<T: Counter> RingMut for Box<[T]> {
    fn counts_mut(&mut self) -> &mut [T] {
        self
    }
}

/// One key's counters: a ring of [`Geometry::slots`] event counts and the index of its newest
/// bucket. `C` is the storage ([`Ring`]): the limiter keeps every key's ring in one flat array
/// and views a key's part as a `Window<&mut [T]>`; the tests' `Window<Box<[T]>>` owns its counters.
///
/// Inputs: [`Window::advance`] (time moved to a bucket), [`Window::record`] (one allowed event in
/// the newest bucket). Outputs: [`Window::count_from`], [`Window::release_at`],
/// [`Window::last_event`]. Invariants: see the module doc; each counter is at most the limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Window<C> {
    /// Bucket index of the newest slot.
    newest: u64,
    /// The sum of all the ring's counters, kept so that a check need not add them up.
    total: u64,
    /// `newest % slots`: the ring position of the newest bucket, kept so that the hot path
    /// finds positions by subtraction instead of division.
    pos: usize,
    /// Bucket `i` lives in `counts[i % slots]`.
    counts: C,
}

/// The sum of `counts`, widened so that no count can overflow it. One slice at a time: over a
/// contiguous run the compiler vectorises it, where a chained iterator adds one by one.
fn total<T: Counter>(counts: &[T]) -> u64 {
    counts.iter().map(|&c| c.into()).sum()
}

/// What a key keeps of its ring besides the counters: the newest bucket and the counters' sum.
/// The limiter stores it per key and hands it to [`Window::view`].
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Head {
    /// The bucket index of the ring's newest slot.
    pub(crate) newest: u64,
    /// The sum of the ring's counters.
    total: u64,
}

impl Head {
    /// The head of an empty ring whose newest bucket is `newest`.
    pub(crate) fn empty(newest: u64) -> Self {
        Self { newest, total: 0 }
    }

    /// The head of a ring whose newest bucket is `newest` and whose counters sum to `total`.
    #[inline]
    pub(crate) fn new(newest: u64, total: u64) -> Self {
        Self { newest, total }
    }

    /// The sum of the ring's counters.
    #[inline]
    pub(crate) fn total(self) -> u64 {
        self.total
    }
}

/// Zeroes `counts` and returns what they held. One pass, and no `memset` call for the one or two
/// counters a check usually clears.
fn take<T: Counter>(counts: &mut [T]) -> u64 {
    let mut taken = 0;
    for count in counts {
        taken += std::mem::take(count).into();
    }
    taken
}

/// A bucket and its ring position (`bucket % slots`), computed once per limiter check and shared
/// by the ring operations of that check (see [`Geometry::position`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Position {
    /// The bucket index.
    pub(crate) bucket: u64,
    /// `bucket % slots`.
    pub(crate) slot: usize,
    /// The first instant of the bucket (`bucket · g`).
    start: u64,
}

impl<T: Counter> Window<Box<[T]>> {
    /// An empty window whose newest bucket is `bucket`, owning its counters.
    #[cfg(test)]
    pub(crate) fn new(geo: &Geometry, bucket: u64) -> Self {
        let slots = usize::try_from(geo.slots()).unwrap_or(1).max(1);
        let pos = geo.position(bucket).slot;
        Self { newest: bucket, total: 0, pos, counts: vec![T::default(); slots].into_boxed_slice() }
    }
}

impl<C: Ring> Window<C> {
    /// The ring stored in `counts` (at least one counter) with head `head`.
    pub(crate) fn view(head: Head, counts: C) -> Self {
        debug_assert!(!counts.counts().is_empty(), "a ring needs at least one counter");
        let pos = (head.newest % counts.counts().len() as u64) as usize;
        Self { newest: head.newest, total: head.total, pos, counts }
    }

    /// As [`Window::view`], finding the newest bucket's position from `now` (a position at or
    /// after `newest`) by subtraction when the two lie within one ring: no division.
    #[inline]
    pub(crate) fn view_from(head: Head, counts: C, now: Position) -> Self {
        let len = counts.counts().len();
        let newest = head.newest;
        debug_assert!(len > 0 && now.bucket >= newest, "a ring views its past from its present");
        let back = now.bucket - newest;
        if back >= len as u64 {
            return Self::view(head, counts);
        }
        // `back < len`, so the cast is lossless and one wrap suffices.
        let back = back as usize;
        let pos = if now.slot >= back { now.slot - back } else { now.slot + len - back };
        Self { newest, total: head.total, pos, counts }
    }

    /// The head to store for this ring.
    #[inline]
    pub(crate) fn head(&self) -> Head {
        Head { newest: self.newest, total: self.total }
    }

    /// The newest bucket index.
    #[cfg(test)]
    pub(crate) fn newest(&self) -> u64 {
        self.newest
    }

    fn len(&self) -> u64 {
        self.counts.counts().len() as u64
    }

    /// The ring position of `bucket`, one of the buckets the ring holds (`oldest ..= newest`).
    fn slot(&self, bucket: u64) -> usize {
        debug_assert!(
            bucket <= self.newest && self.newest - bucket < self.len(),
            "not in the ring"
        );
        // `newest - bucket < len`, so the cast is lossless and one wrap suffices.
        let back = (self.newest - bucket) as usize;
        if self.pos >= back {
            self.pos - back
        } else {
            self.pos + self.counts.counts().len() - back
        }
    }

    /// The oldest bucket the ring holds.
    fn oldest(&self) -> u64 {
        self.newest.saturating_sub(self.len() - 1)
    }

    /// The ring positions of buckets `lo ..= newest` (`lo` held by the ring), as the position of
    /// `lo` and the lengths before and after the wrap. No division: this is the limiter's hot
    /// path.
    fn span(&self, lo: u64) -> (usize, usize, usize) {
        let start = self.slot(lo);
        let n = (self.newest - lo + 1) as usize;
        let first = n.min(self.counts.counts().len() - start);
        (start, first, n - first)
    }

    /// The counters of buckets `lo ..= newest`, oldest first, as the two contiguous runs of the
    /// ring.
    fn runs(&self, lo: u64) -> (&[C::Count], &[C::Count]) {
        let (start, first, wrapped) = self.span(lo);
        let counts = self.counts.counts();
        (&counts[start..start + first], &counts[..wrapped])
    }

    /// The events in buckets `first ..= newest`.
    #[inline]
    pub(crate) fn count_from(&self, first: u64) -> u64 {
        debug_assert_eq!(self.total, total(self.counts.counts()), "the kept sum is the ring's");
        let oldest = self.oldest();
        let lo = first.max(oldest);
        if lo > self.newest {
            return 0;
        }
        if lo == oldest {
            // The common case: a check counts every bucket the ring holds.
            return self.total;
        }
        // Subtract the held buckets older than `lo`: `oldest ..= lo - 1`.
        let (a, b) = self.runs(oldest);
        let older = (lo - oldest) as usize;
        let before = if older <= a.len() {
            total(&a[..older])
        } else {
            total(a) + total(&b[..older - a.len()])
        };
        self.total - before
    }

    /// The newest bucket holding an event, if any.
    pub(crate) fn last_event(&self) -> Option<u64> {
        let lo = self.oldest();
        let (a, b) = self.runs(lo);
        let newer =
            b.iter().rposition(|&c| c != C::Count::default()).map(|j| lo + (a.len() + j) as u64);
        newer.or_else(|| a.iter().rposition(|&c| c != C::Count::default()).map(|j| lo + j as u64))
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
        let (a, b) = self.runs(lo);
        let mut remaining = self.count_from(first);
        let limit = u64::from(limit);
        let mut dropped = None;
        for (i, &c) in (lo..).zip(a.iter().chain(b)) {
            if remaining < limit {
                break;
            }
            remaining -= c.into();
            dropped = Some(i);
        }
        // Only reachable with limit 0, which the limiter never asks about.
        debug_assert!(remaining < limit || limit == 0, "dropping every bucket must free a slot");
        dropped.map(|i| geo.release_of(i))
    }
}

impl<C: RingMut> Window<C> {
    /// Empties the window and makes `bucket` its newest bucket (reusing the storage).
    pub(crate) fn reset(&mut self, at: Position) {
        self.counts.counts_mut().fill(C::Count::default());
        self.total = 0;
        self.newest = at.bucket;
        self.pos = at.slot;
    }

    /// Moves the newest bucket forward to `bucket`, zeroing the buckets that fall out of the
    /// ring. A `bucket` at or before the newest changes nothing (time never moves a ring back).
    #[inline]
    pub(crate) fn advance(&mut self, to: Position) {
        if to.bucket <= self.newest {
            return;
        }
        let (old_newest, old_pos) = (self.newest, self.pos);
        self.newest = to.bucket;
        self.pos = to.slot;
        if to.bucket - old_newest >= self.len() {
            self.counts.counts_mut().fill(C::Count::default());
            self.total = 0;
        } else {
            // The buckets after the old newest up to the new one take the places of the oldest.
            let (start, first, wrapped) = self.span(old_newest + 1);
            debug_assert_eq!(start, (old_pos + 1) % self.counts.counts().len());
            let counts = self.counts.counts_mut();
            self.total -= take(&mut counts[start..start + first]) + take(&mut counts[..wrapped]);
        }
    }

    /// Counts one event in the newest bucket.
    #[inline]
    pub(crate) fn record(&mut self) {
        let slot = self.pos;
        let counts = self.counts.counts_mut();
        // A counter never exceeds the limit (it is as wide as the limit needs), so it cannot
        // overflow; were it full, the event would be dropped from the counter and the sum alike.
        if let Some(count) = counts[slot].plus_one() {
            counts[slot] = count;
            self.total += 1;
        }
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
        let mut w: Window<Box<[u32]>> = Window::new(&geo, 5);
        w.record();
        w.advance(geo.position(6));
        w.record();
        w.record();
        assert_eq!(w.count_from(0), 3);
        assert_eq!(w.count_from(6), 2);
        assert_eq!(w.last_event(), Some(6));
        w.advance(geo.position(4)); // backwards: no-op
        assert_eq!(w.newest(), 6);
        w.advance(geo.position(9)); // bucket 5 falls out of the 4-slot ring 6..=9
        assert_eq!(w.count_from(0), 2);
        w.advance(geo.position(100));
        assert_eq!(w.count_from(0), 0);
        assert_eq!(w.last_event(), None);
    }

    #[test]
    fn release_drops_oldest_buckets_first() {
        let geo = Geometry::new(Duration::from_nanos(30), 3); // g = 10
        let mut w: Window<Box<[u8]>> = Window::new(&geo, 1);
        w.record(); // bucket 1
        w.advance(geo.position(2));
        w.record(); // bucket 2
        w.record();
        // limit 3 reached; dropping bucket 1 leaves 2 < 3: released at (1+1)*10 + 30 = 50.
        assert_eq!(w.release_at(&geo, 0, 3), Some(50));
        // limit 2: must drop bucket 2 as well: (2+1)*10 + 30 = 60.
        assert_eq!(w.release_at(&geo, 0, 2), Some(60));
        assert_eq!(w.release_at(&geo, 0, 4), None);
    }

    #[test]
    fn positions_without_division_match_the_arithmetic() {
        // Exact (60 s in 3 s buckets), inexact (61 s + 1 ns) and degenerate (zero, 7 ns) windows;
        // instants that stay in a bucket, step to the next, jump within a ring and beyond it.
        let windows = [MINUTE, 61 * SECOND + Duration::from_nanos(1), Duration::ZERO];
        let windows = windows.into_iter().chain([Duration::from_nanos(7)]);
        for geo in windows.map(|w| Geometry::new(w, DEFAULT_BUCKETS)) {
            let mut last = geo.position(0);
            let mut t: u64 = 0;
            let mut x: u64 = 0x2545_F491_4F6C_DD1D;
            for _ in 0..20_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                t += match x % 4 {
                    0 => 0,
                    1 => x % geo.width(),
                    2 => x % (geo.width() * geo.slots()),
                    _ => x % (geo.width() * geo.slots() * 3),
                };
                let now = geo.position_after(t, last);
                assert_eq!(now, geo.position(geo.bucket(t)), "t = {t} in {geo:?}");
                assert_eq!(geo.first_counted_at(t, now), geo.first_counted(t), "t = {t}");
                for back in [0, 1, geo.slots() - 1, geo.slots()] {
                    let newest = now.bucket.saturating_sub(back);
                    let counts = vec![0u8; geo.slots() as usize];
                    let head = Head::empty(newest);
                    let viewed = Window::view_from(head, counts.as_slice(), now);
                    assert_eq!(viewed, Window::view(head, counts.as_slice()), "back {back}");
                }
                last = now;
            }
        }
    }
}
