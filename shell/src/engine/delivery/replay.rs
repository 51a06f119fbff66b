//! The replay-buffer port of resumable replies (issue 14, STYLE.md §13) and its in-process
//! implementation. Every `ai_response` frame of a reply is recorded by seq as it is fanned out;
//! a `resume` gets the recorded frames after its seq and is attached to the live stream in the
//! same step, so the switch from replay to live neither repeats nor skips a frame. The rule and
//! its bounds are core's [`ReplayLog`]; this file adds only the lock that makes "record and fan
//! out" and "replay and attach" atomic with respect to each other.
//!
//! A fleet's buffer (Redis, in the adapters) also answers [`ReplayBuffer::shared`]: the
//! [`SharedReplay`] port a resume falls back to when the reply was produced on another instance.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatbox_core::replay::{Liveness, Replay, ReplayLimits, ReplayLog};
use chatbox_core::Instant;

use super::BoxFuture;

/// One recorded frame of a reply.
#[derive(Debug, Clone, Copy)]
pub struct ReplyFrame<'a> {
    /// The reply's id (`metadata.reply_id`).
    pub reply_id: &'a str,
    /// The session it belongs to (a resume must name the same one).
    pub session: &'a str,
    /// Its seq (`metadata.seq`; an error outcome takes the next seq as `done` does).
    pub seq: u64,
    /// Whether no frame of the reply follows.
    pub last: bool,
}

/// Where reply frames are kept for resumes. Every method returns at once (no IO is awaited).
pub trait ReplayBuffer: Send + Sync + std::fmt::Debug {
    /// Records `frame` and runs `fan_out` (the live delivery) so that no resume of the same
    /// reply observes one without the other.
    fn publish(
        &self,
        at: ReplyFrame<'_>,
        frame: &Arc<str>,
        now: Instant,
        fan_out: &mut dyn FnMut(),
    );
    /// The reply ended without a final frame of its own; nothing live follows.
    fn end(&self, reply_id: &str, now: Instant);
    /// The recorded frames of `reply_id` after `after_seq` for `session`, handed to `attach`
    /// together with the binding of the resuming connection (before any later live frame).
    fn resume(
        &self,
        session: &str,
        reply_id: &str,
        after_seq: u64,
        now: Instant,
        attach: &mut dyn FnMut(Replay<Arc<str>>),
    );
    /// Frames held now (for metrics).
    fn frames(&self) -> usize;
    /// The fleet-wide store behind this buffer; `None` for the in-process one.
    fn shared(&self) -> Option<&dyn SharedReplay> {
        None
    }
}

/// What the fleet-wide store holds of one reply.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SharedRead {
    /// Its state key: liveness and the session it belongs to (`None`: no key).
    pub state: Option<(Liveness, String)>,
    /// Its recorded frames after the asked seq: seq, session, frame (by increasing seq; entries
    /// that did not decode are left out, so they show as a gap).
    pub entries: Vec<(u64, String, Arc<str>)>,
}

/// The fleet-wide replay store (Redis): read by the instance serving a resume of a reply that
/// another instance produced.
pub trait SharedReplay: Send + Sync {
    /// The reply's state and recorded frames after `after_seq`; `Err` names why it could not
    /// be read.
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<SharedRead, String>>;
    /// The reply's liveness now; `None` when it could not be read.
    fn liveness<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Option<Liveness>>;
    /// The TTL of a reply's alive key (core's `alive_ttl` of the idle deadline).
    fn alive_ttl(&self) -> Duration;
}

/// The in-process buffer's bounds for `config`: core's, with its `RESUME_WINDOW`.
pub fn replay_limits(config: &chatbox_core::config::Config) -> ReplayLimits {
    ReplayLimits { window: config.llm.resume_window, ..ReplayLimits::DEFAULT }
}

/// The replay buffer of one instance (the default; what `serve --dev` uses).
#[derive(Debug)]
pub struct LocalReplay {
    log: Mutex<ReplayLog<Arc<str>>>,
}

impl LocalReplay {
    /// An empty buffer with `limits`.
    pub fn new(limits: ReplayLimits) -> Self {
        Self { log: Mutex::new(ReplayLog::new(limits)) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ReplayLog<Arc<str>>> {
        self.log.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for LocalReplay {
    fn default() -> Self {
        Self::new(ReplayLimits::DEFAULT)
    }
}

impl ReplayBuffer for LocalReplay {
    fn publish(
        &self,
        at: ReplyFrame<'_>,
        frame: &Arc<str>,
        now: Instant,
        fan_out: &mut dyn FnMut(),
    ) {
        let mut log = self.lock();
        log.push(at.reply_id, at.session, at.seq, Arc::clone(frame), at.last, now);
        // Under the lock: a resume sees this frame either in its replay or live, never both.
        fan_out();
    }

    fn end(&self, reply_id: &str, now: Instant) {
        self.lock().end(reply_id, now);
    }

    fn resume(
        &self,
        session: &str,
        reply_id: &str,
        after_seq: u64,
        now: Instant,
        attach: &mut dyn FnMut(Replay<Arc<str>>),
    ) {
        let mut log = self.lock();
        let replay = log.replay(reply_id, session, after_seq, now);
        attach(replay);
    }

    fn frames(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resume_between_two_publishes_gets_the_first_replayed_and_the_second_live() {
        let replay = LocalReplay::default();
        let at = |seq| ReplyFrame { reply_id: "r", session: "s", seq, last: false };
        let now = Instant::ZERO;
        let mut live = Vec::new();
        let first: Arc<str> = Arc::from("1");
        replay.publish(at(1), &first, now, &mut || live.push(1));
        let mut got = None;
        replay.resume("s", "r", 0, now, &mut |r| got = Some(r));
        assert_eq!(got, Some(Replay::Frames { frames: vec![first], ended: false }));
        assert_eq!(replay.frames(), 1);
        replay.end("r", now);
        replay.resume("s", "r", 1, now, &mut |r| got = Some(r));
        assert_eq!(got, Some(Replay::Frames { frames: vec![], ended: true }));
        assert_eq!(live, vec![1]);
    }
}
