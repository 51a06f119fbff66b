//! The deadlines of one LLM reply (seed fix #8, properties 4 and 5; PROTOCOL.md §10 item 21).
//!
//! A reply has three deadlines: the first chunk must arrive within `first_chunk` of the start,
//! each later chunk within `idle` of the previous one, and the whole reply must finish within
//! `total` of the start. [`ReplyTimer`] tracks them and guarantees the reply ends with exactly one
//! [`Outcome`]: `Done`, or one error (`Timeout` or `Failed`). Whatever arrives after the outcome
//! (a late chunk, a late end, a second error) is reported as [`ChunkVerdict::Discard`] / `None`,
//! so the shell cannot emit two outcomes or a chunk after the end even if it tries.

use std::time::Duration;

use crate::time::Instant;

/// The three limits of one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDeadlines {
    /// Longest wait for the first chunk, counted from the start (retries included).
    pub first_chunk: Duration,
    /// Longest wait between two chunks.
    pub idle: Duration,
    /// Longest time for the whole reply (LLM_STREAM_TIMEOUT).
    pub total: Duration,
}

impl StreamDeadlines {
    /// The defaults (`LLM_FIRST_CHUNK_TIMEOUT` 30 s, `LLM_IDLE_TIMEOUT` 60 s,
    /// `LLM_STREAM_TIMEOUT` 2 m).
    pub const DEFAULT: StreamDeadlines = StreamDeadlines {
        first_chunk: Duration::from_secs(30),
        idle: Duration::from_secs(60),
        total: Duration::from_secs(120),
    };
}

impl Default for StreamDeadlines {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Which deadline expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeoutKind {
    /// No first chunk within `first_chunk`.
    FirstChunk,
    /// No chunk within `idle` of the previous one.
    Idle,
    /// The whole reply exceeded `total`.
    Total,
}

/// How a reply ended. Exactly one per reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The upstream finished in time: send the `done:"true"` frame.
    Done,
    /// A deadline expired: send one `LLM_TIMEOUT` error naming `after`.
    Timeout {
        /// Which deadline.
        kind: TimeoutKind,
        /// The configured limit that was exceeded (for the error text).
        after: Duration,
    },
    /// The upstream failed: send one `LLM_UNAVAILABLE` error.
    Failed,
}

/// What to do with a chunk that just arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum ChunkVerdict {
    /// In time: forward it to the client.
    Deliver,
    /// Late: do not forward it; the reply ends now with this outcome (emit it once).
    Finish(Outcome),
    /// The reply already ended earlier: drop it silently.
    Discard,
}

/// Deadline tracking for one reply.
///
/// Inputs: [`on_chunk`](Self::on_chunk), [`on_end`](Self::on_end), [`on_error`](Self::on_error),
/// [`handle_timeout`](Self::handle_timeout). Outputs: the returned verdicts/outcomes, and
/// [`poll_timeout`](Self::poll_timeout), the instant at which the driver must call
/// `handle_timeout` if nothing else happened first. `now` is the driver's monotonic clock and must
/// not go backwards between calls (a backwards `now` is treated as "no time passed").
///
/// Invariants: while the reply is open, `poll_timeout()` is `Some` and not later than
/// `started + total`; every input after the outcome is a no-op; exactly one call returns the
/// outcome.
#[derive(Debug, Clone)]
pub struct ReplyTimer {
    limits: StreamDeadlines,
    started: Instant,
    last_chunk: Option<Instant>,
    outcome: Option<Outcome>,
}

impl ReplyTimer {
    /// Starts the clock of a reply at `now` (the moment the upstream call begins).
    pub fn start(limits: StreamDeadlines, now: Instant) -> Self {
        Self { limits, started: now, last_chunk: None, outcome: None }
    }

    /// The instant the reply started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// The outcome, once the reply has ended.
    pub fn outcome(&self) -> Option<Outcome> {
        self.outcome
    }

    /// Whether the reply has ended.
    pub fn is_finished(&self) -> bool {
        self.outcome.is_some()
    }

    /// Whether any chunk has been delivered (retries are allowed only before the first one).
    pub fn has_started_streaming(&self) -> bool {
        self.last_chunk.is_some()
    }

    /// The earliest deadline still pending and its kind; `None` once ended.
    pub fn next_deadline(&self) -> Option<(Instant, TimeoutKind)> {
        if self.outcome.is_some() {
            return None;
        }
        let total = (self.started + self.limits.total, TimeoutKind::Total);
        let step = match self.last_chunk {
            None => (self.started + self.limits.first_chunk, TimeoutKind::FirstChunk),
            Some(at) => (at + self.limits.idle, TimeoutKind::Idle),
        };
        // On a tie the whole-reply deadline names the timeout: it is the one users configure.
        Some(if step.0 < total.0 { step } else { total })
    }

    /// When the driver must call [`handle_timeout`](Self::handle_timeout); `None` once ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.next_deadline().map(|(at, _)| at)
    }

    /// Whether a deadline has passed at `now` (without ending the reply).
    pub fn expired(&self, now: Instant) -> bool {
        self.poll_timeout().is_some_and(|at| now >= at)
    }

    /// Ends the reply with a timeout if a deadline has passed at `now`. Returns the outcome the
    /// first time only.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Outcome> {
        let (at, kind) = self.next_deadline()?;
        if now < at {
            return None;
        }
        self.finish(self.timeout(kind))
    }

    /// A chunk arrived at `now`.
    pub fn on_chunk(&mut self, now: Instant) -> ChunkVerdict {
        if self.outcome.is_some() {
            return ChunkVerdict::Discard;
        }
        if let Some(outcome) = self.handle_timeout(now) {
            return ChunkVerdict::Finish(outcome);
        }
        self.last_chunk = Some(now.max(self.last_chunk.unwrap_or(self.started)));
        ChunkVerdict::Deliver
    }

    /// The upstream signalled the end of the reply at `now`. Returns `Done`, or a timeout if a
    /// deadline passed first; `None` if the reply had already ended.
    pub fn on_end(&mut self, now: Instant) -> Option<Outcome> {
        if let Some(outcome) = self.handle_timeout(now) {
            return Some(outcome);
        }
        self.finish(Outcome::Done)
    }

    /// The upstream failed at `now` (after its retries). Returns `Failed`, or a timeout if a
    /// deadline passed first; `None` if the reply had already ended.
    pub fn on_error(&mut self, now: Instant) -> Option<Outcome> {
        if let Some(outcome) = self.handle_timeout(now) {
            return Some(outcome);
        }
        self.finish(Outcome::Failed)
    }

    fn timeout(&self, kind: TimeoutKind) -> Outcome {
        let after = match kind {
            TimeoutKind::FirstChunk => self.limits.first_chunk,
            TimeoutKind::Idle => self.limits.idle,
            TimeoutKind::Total => self.limits.total,
        };
        Outcome::Timeout { kind, after }
    }

    fn finish(&mut self, outcome: Outcome) -> Option<Outcome> {
        if self.outcome.is_some() {
            return None;
        }
        self.outcome = Some(outcome);
        Some(outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::SECOND;

    fn limits() -> StreamDeadlines {
        StreamDeadlines { first_chunk: 10 * SECOND, idle: 5 * SECOND, total: 60 * SECOND }
    }

    #[test]
    fn first_chunk_deadline() {
        let t0 = Instant::from_secs(100);
        let mut r = ReplyTimer::start(limits(), t0);
        assert_eq!(r.poll_timeout(), Some(t0 + 10 * SECOND));
        assert_eq!(r.handle_timeout(t0 + 9 * SECOND), None);
        let out = r.handle_timeout(t0 + 10 * SECOND);
        assert_eq!(
            out,
            Some(Outcome::Timeout { kind: TimeoutKind::FirstChunk, after: 10 * SECOND })
        );
        assert_eq!(r.on_chunk(t0 + 11 * SECOND), ChunkVerdict::Discard);
        assert_eq!(r.on_end(t0 + 11 * SECOND), None);
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn expired_reports_a_passed_deadline_without_ending_the_reply() {
        let t0 = Instant::ZERO;
        let mut r = ReplyTimer::start(limits(), t0);
        assert!(!r.expired(t0 + 9 * SECOND));
        assert!(r.expired(t0 + 10 * SECOND), "the first-chunk deadline has passed");
        assert!(r.expired(t0 + 10 * SECOND), "asking again changes nothing");
        assert_eq!(r.poll_timeout(), Some(t0 + 10 * SECOND), "the reply is still open");
        assert_eq!(
            r.handle_timeout(t0 + 10 * SECOND),
            Some(Outcome::Timeout { kind: TimeoutKind::FirstChunk, after: 10 * SECOND })
        );
        assert!(!r.expired(t0 + 100 * SECOND), "an ended reply has no deadline");
    }

    #[test]
    fn idle_deadline_moves_with_chunks() {
        let t0 = Instant::ZERO;
        let mut r = ReplyTimer::start(limits(), t0);
        assert_eq!(r.on_chunk(t0 + 2 * SECOND), ChunkVerdict::Deliver);
        assert_eq!(r.poll_timeout(), Some(t0 + 7 * SECOND));
        assert_eq!(r.on_chunk(t0 + 6 * SECOND), ChunkVerdict::Deliver);
        assert_eq!(r.poll_timeout(), Some(t0 + 11 * SECOND));
        assert_eq!(
            r.on_chunk(t0 + 12 * SECOND),
            ChunkVerdict::Finish(Outcome::Timeout { kind: TimeoutKind::Idle, after: 5 * SECOND })
        );
    }

    #[test]
    fn total_deadline_caps_a_trickle() {
        let t0 = Instant::ZERO;
        let mut r = ReplyTimer::start(limits(), t0);
        let mut t = t0;
        let mut outcome = None;
        for _ in 0..100 {
            t += 4 * SECOND;
            match r.on_chunk(t) {
                ChunkVerdict::Deliver => {}
                ChunkVerdict::Finish(o) => {
                    outcome = Some((t, o));
                    break;
                }
                ChunkVerdict::Discard => unreachable!("discard before any outcome"),
            }
        }
        let (at, o) = outcome.expect("a 60 s cap ends a 4 s trickle");
        assert_eq!(at, t0 + 60 * SECOND);
        assert_eq!(o, Outcome::Timeout { kind: TimeoutKind::Total, after: 60 * SECOND });
    }

    #[test]
    fn done_and_failed_are_single_outcomes() {
        let mut r = ReplyTimer::start(limits(), Instant::ZERO);
        assert_eq!(r.on_chunk(Instant::from_secs(1)), ChunkVerdict::Deliver);
        assert_eq!(r.on_end(Instant::from_secs(2)), Some(Outcome::Done));
        assert_eq!(r.on_error(Instant::from_secs(2)), None);
        let mut r = ReplyTimer::start(limits(), Instant::ZERO);
        assert_eq!(r.on_error(Instant::from_secs(1)), Some(Outcome::Failed));
        assert_eq!(r.on_end(Instant::from_secs(1)), None);
    }

    #[test]
    fn end_after_deadline_is_a_timeout_not_done() {
        let mut r = ReplyTimer::start(limits(), Instant::ZERO);
        assert!(matches!(r.on_end(Instant::from_secs(61)), Some(Outcome::Timeout { .. })));
    }
}
