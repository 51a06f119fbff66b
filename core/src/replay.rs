//! The replay rule of resumable replies (issue 14, STYLE.md §13): the frames of each reply kept
//! by seq, bounded per reply and in total, and forgotten `window` after the reply ended. A resume
//! asks for the frames after a seq; it gets them all, in order, or `Unavailable` when the reply is
//! unknown, expired, belongs to another session, or lost frames it would need to the bounds. Sans
//! IO and generic over the stored frame, so the engine's in-process buffer and the tests share it.
//!
//! A fleet (Redis) adds the rules of a resume served by another instance than the producing one:
//! what the shared store must hold for a resume to be answered ([`shared_replay`]), how live
//! frames held during the read are merged after it without repeating or skipping a seq
//! ([`merge_resumed`]), and when a producer is dead ([`Liveness`], [`alive_ttl`],
//! [`ResumeWatch`]: no refresh of its alive key within idle + grace).

use std::collections::{HashMap, VecDeque};
use std::time::Duration;

use crate::budgets::{
    REPLAY_FRAMES_PER_REPLY, REPLAY_FRAMES_TOTAL, REPLY_ALIVE_GRACE, RESUME_WINDOW,
};
use crate::Instant;

/// The bounds of a [`ReplayLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplayLimits {
    /// Most frames kept of one reply (the oldest go first).
    pub per_reply: usize,
    /// Most frames kept of all replies together (whole ended replies go first).
    pub total: usize,
    /// How long a reply stays resumable after it ended (`RESUME_WINDOW`).
    pub window: Duration,
}

impl ReplayLimits {
    /// The defaults: core's budgets.
    pub const DEFAULT: ReplayLimits = ReplayLimits {
        per_reply: REPLAY_FRAMES_PER_REPLY,
        total: REPLAY_FRAMES_TOTAL,
        window: RESUME_WINDOW,
    };
}

/// What a resume gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replay<T> {
    /// Every kept frame after the asked seq, in order; `ended` when no live frame will follow.
    Frames {
        /// The frames, by increasing seq.
        frames: Vec<T>,
        /// The reply has ended (its last frame is among the kept ones).
        ended: bool,
    },
    /// Unknown, expired, another session's, or a frame it needs was dropped.
    Unavailable,
}

#[derive(Debug)]
struct Entry<T> {
    session: String,
    frames: VecDeque<(u64, T)>,
    /// Highest seq dropped to the bounds (0: none).
    dropped_through: u64,
    ended: Option<Instant>,
    opened: u64,
}

/// Kept frames of recent replies, by reply id.
#[derive(Debug)]
pub struct ReplayLog<T> {
    limits: ReplayLimits,
    entries: HashMap<String, Entry<T>>,
    /// The ended replies by (end, opening order): expiry and eviction take them from the front
    /// instead of walking every reply on every frame (issue 18: at steady state the log holds
    /// tens of thousands of replies, and each frame of each reply went through all of them).
    ended_order: VecDeque<(Instant, u64, String)>,
    total: usize,
    opened: u64,
}

impl<T: Clone> ReplayLog<T> {
    /// An empty log with `limits`.
    pub fn new(limits: ReplayLimits) -> Self {
        Self { limits, entries: HashMap::new(), ended_order: VecDeque::new(), total: 0, opened: 0 }
    }

    /// Frames kept now (all replies).
    pub fn len(&self) -> usize {
        self.total
    }

    /// Whether nothing is kept.
    pub fn is_empty(&self) -> bool {
        self.total == 0
    }

    /// Replies known now.
    pub fn replies(&self) -> usize {
        self.entries.len()
    }

    /// Keeps frame `seq` of `reply` (of `session`); `last` marks the reply's final frame.
    pub fn push(
        &mut self,
        reply: &str,
        session: &str,
        seq: u64,
        frame: T,
        last: bool,
        now: Instant,
    ) {
        self.expire(now);
        if !self.entries.contains_key(reply) {
            self.opened += 1;
            let entry = Entry {
                session: session.to_string(),
                frames: VecDeque::new(),
                dropped_through: 0,
                ended: None,
                opened: self.opened,
            };
            self.entries.insert(reply.to_string(), entry);
        }
        while self.total >= self.limits.total && self.evict_one(reply) {}
        let per_reply = self.limits.per_reply;
        let Some(entry) = self.entries.get_mut(reply) else { return };
        if entry.ended.is_some() {
            return;
        }
        entry.frames.push_back((seq, frame));
        self.total += 1;
        while entry.frames.len() > per_reply {
            if let Some((dropped, _)) = entry.frames.pop_front() {
                entry.dropped_through = dropped;
                self.total -= 1;
            }
        }
        if last {
            entry.ended = Some(now);
            let opened = entry.opened;
            self.queue_ended(now, opened, reply);
        }
    }

    /// The reply ended without a final frame of its own (failed, cut): no live frame follows.
    pub fn end(&mut self, reply: &str, now: Instant) {
        if let Some(entry) = self.entries.get_mut(reply) {
            if entry.ended.is_none() {
                entry.ended = Some(now);
                let opened = entry.opened;
                self.queue_ended(now, opened, reply);
            }
        }
    }

    /// Files an ended reply in `ended_order` (at the back whenever time does not go backwards).
    fn queue_ended(&mut self, ended: Instant, opened: u64, reply: &str) {
        let at = self.ended_order.partition_point(|(t, o, _)| (*t, *o) <= (ended, opened));
        self.ended_order.insert(at, (ended, opened, reply.to_string()));
    }

    /// The frames of `reply` after `after_seq`, for a client on `session`.
    pub fn replay(
        &mut self,
        reply: &str,
        session: &str,
        after_seq: u64,
        now: Instant,
    ) -> Replay<T> {
        self.expire(now);
        let Some(entry) = self.entries.get(reply) else { return Replay::Unavailable };
        if entry.session != session || after_seq < entry.dropped_through {
            return Replay::Unavailable;
        }
        let mut after = entry.frames.iter().filter(|(s, _)| *s > after_seq).peekable();
        // The first frame owed is `after_seq + 1`; anything else is a gap (never papered over).
        if after.peek().is_some_and(|(s, _)| *s != after_seq + 1) {
            return Replay::Unavailable;
        }
        let frames = after.map(|(_, f)| f.clone()).collect();
        Replay::Frames { frames, ended: entry.ended.is_some() }
    }

    /// Forgets the replies that ended `window` or more before `now`.
    pub fn expire(&mut self, now: Instant) {
        let window = self.limits.window;
        while let Some((ended, _, _)) = self.ended_order.front() {
            if now.saturating_duration_since(*ended) < window {
                break;
            }
            let Some((_, opened, id)) = self.ended_order.pop_front() else { break };
            if self.entries.get(&id).is_some_and(|e| e.opened == opened) {
                if let Some(e) = self.entries.remove(&id) {
                    self.total -= e.frames.len();
                }
            }
        }
    }

    /// Makes room for one frame: the oldest ended reply goes whole; failing that, the oldest
    /// frame of the oldest reply (possibly `pushing` itself).
    /// Returns whether a frame was freed.
    fn evict_one(&mut self, pushing: &str) -> bool {
        let entries = &self.entries;
        let oldest_ended = self.ended_order.iter().position(|(_, opened, id)| {
            id.as_str() != pushing
                && entries.get(id).is_some_and(|e| e.opened == *opened && !e.frames.is_empty())
        });
        if let Some((_, _, id)) = oldest_ended.and_then(|at| self.ended_order.remove(at)) {
            if let Some(e) = self.entries.remove(&id) {
                self.total -= e.frames.len();
            }
            return true;
        }
        let oldest = self
            .entries
            .iter()
            .filter(|(_, e)| !e.frames.is_empty())
            .min_by_key(|(_, e)| e.opened)
            .map(|(id, _)| id.clone());
        if let Some(entry) = oldest.and_then(|id| self.entries.get_mut(&id)) {
            if let Some((dropped, _)) = entry.frames.pop_front() {
                entry.dropped_through = dropped;
                self.total -= 1;
                return true;
            }
        }
        false
    }
}

/// What the shared store says of a reply's producer (its alive key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Liveness {
    /// The producer refreshed the key within [`alive_ttl`]: frames still come.
    Live,
    /// The reply ended (its last frame is recorded); kept for the resume window.
    Ended,
    /// No key: never known here, the window passed, or the producer went silent past its
    /// deadline (it died).
    Gone,
}

/// The TTL of a reply's alive key: the reply's idle deadline plus [`REPLY_ALIVE_GRACE`]. A live
/// producer writes a frame (and refreshes the key) at least once per idle deadline, or ends the
/// reply with a timeout frame; silence past this means it is dead.
pub fn alive_ttl(idle: Duration) -> Duration {
    idle + REPLY_ALIVE_GRACE
}

/// How long a reply's frames stay in the shared store after their last write: the alive key's
/// TTL plus the resume window while streaming (a dead producer's frames go when the window
/// after its death ends), the window alone after the reply ended.
pub fn stream_ttl(state_ttl: Duration, ended: bool, window: Duration) -> Duration {
    if ended {
        window
    } else {
        state_ttl + window
    }
}

/// Decides a resume from what the shared store holds of a reply: its alive key (state and the
/// session it belongs to) and its recorded frames after `after_seq` (seq, session, frame), by
/// increasing seq. Exactly the frames `after_seq + 1 ..` with no gap, or `Unavailable`: no key
/// (unknown, expired, dead producer), another session's reply, or a frame it needs is missing
/// (trimmed, or lost while Redis was unreachable).
pub fn shared_replay<T>(
    session: &str,
    after_seq: u64,
    state: Option<(Liveness, &str)>,
    entries: Vec<(u64, String, T)>,
) -> Replay<T> {
    let (liveness, owner) = match state {
        Some((liveness @ (Liveness::Live | Liveness::Ended), owner)) => (liveness, owner),
        _ => return Replay::Unavailable,
    };
    if owner != session {
        return Replay::Unavailable;
    }
    let mut frames = Vec::with_capacity(entries.len());
    for (i, (seq, entry_session, frame)) in entries.into_iter().enumerate() {
        if entry_session != session || seq != after_seq + 1 + i as u64 {
            return Replay::Unavailable;
        }
        frames.push(frame);
    }
    Replay::Frames { frames, ended: liveness == Liveness::Ended }
}

/// Merges the live frames held while a resume read the shared store (`held`, in arrival order)
/// with the frames it read (`replayed`, seq `after_seq + 1 ..`). `seq_of` names the seq of a held
/// frame that is a numbered frame of the resumed reply. The held frames that came before any
/// frame of the reply keep their place (the binding's answer among them), then the replayed
/// frames, then the rest of the held ones without those already replayed (by seq, or equal to a
/// replayed one: an unnumbered error frame, as older releases sent a failed reply's outcome). `None` when a numbered frame would be
/// skipped (a gap between the replay and the live frames): the resume is unavailable.
pub fn merge_resumed<T: PartialEq>(
    after_seq: u64,
    replayed: Vec<T>,
    held: Vec<T>,
    seq_of: impl Fn(&T) -> Option<u64>,
) -> Option<Vec<T>> {
    let mut last = after_seq + replayed.len() as u64;
    let of_reply = |frame: &T| seq_of(frame).is_some() || replayed.contains(frame);
    let split = held.iter().position(of_reply).unwrap_or(held.len());
    let mut held = held.into_iter();
    let mut out: Vec<T> = held.by_ref().take(split).collect();
    let mut rest = Vec::new();
    for frame in held {
        match seq_of(&frame) {
            Some(seq) if seq <= last => {}
            Some(seq) if seq == last + 1 => {
                last = seq;
                rest.push(frame);
            }
            Some(_) => return None,
            None if replayed.contains(&frame) => {}
            None => rest.push(frame),
        }
    }
    out.extend(replayed);
    out.extend(rest);
    Some(out)
}

/// What a resumed connection does after one look at the producer's alive key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// The reply is still live: look again later.
    Keep,
    /// The reply ended: its last frame comes (or came) live; stop watching.
    Stop,
    /// The producer is dead (or cannot be known alive for a whole [`alive_ttl`]): answer
    /// `RESUME_UNAVAILABLE` and stop.
    Unavailable,
}

/// Watches the producer of a reply resumed from the shared store, so a client never waits
/// forever for the rest of a reply whose instance died (issue 14, behaviour 5).
#[derive(Debug, Clone, Copy)]
pub struct ResumeWatch {
    ttl: Duration,
    last_live: Instant,
}

impl ResumeWatch {
    /// Starts watching at `now` (the resume just saw the reply live); `ttl` is [`alive_ttl`].
    pub fn new(ttl: Duration, now: Instant) -> Self {
        Self { ttl, last_live: now }
    }

    /// One look at the alive key at `now`: `None` when the store could not be read.
    pub fn on_poll(&mut self, now: Instant, seen: Option<Liveness>) -> Watch {
        match seen {
            Some(Liveness::Live) => {
                self.last_live = now;
                Watch::Keep
            }
            Some(Liveness::Ended) => Watch::Stop,
            Some(Liveness::Gone) => Watch::Unavailable,
            None if now.saturating_duration_since(self.last_live) >= self.ttl => Watch::Unavailable,
            None => Watch::Keep,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn limits(per_reply: usize, total: usize) -> ReplayLimits {
        ReplayLimits { per_reply, total, window: Duration::from_secs(300) }
    }

    fn at(secs: u64) -> Instant {
        Instant::from_secs(secs)
    }

    #[test]
    fn a_resume_gets_exactly_the_frames_after_its_seq() {
        let mut log = ReplayLog::new(ReplayLimits::DEFAULT);
        for seq in 1..=4 {
            log.push("r", "s", seq, seq, seq == 4, at(0));
        }
        assert_eq!(
            log.replay("r", "s", 2, at(1)),
            Replay::Frames { frames: vec![3, 4], ended: true }
        );
        assert_eq!(log.replay("r", "s", 4, at(1)), Replay::Frames { frames: vec![], ended: true });
    }

    #[test]
    fn unknown_foreign_and_expired_replies_are_unavailable() {
        let mut log = ReplayLog::new(limits(8, 64));
        log.push("r", "s", 1, 1, true, at(0));
        assert_eq!(log.replay("x", "s", 0, at(1)), Replay::Unavailable);
        assert_eq!(log.replay("r", "other", 0, at(1)), Replay::Unavailable);
        assert!(matches!(log.replay("r", "s", 0, at(299)), Replay::Frames { .. }));
        assert_eq!(log.replay("r", "s", 0, at(300)), Replay::Unavailable, "window passed");
        assert!(log.is_empty());
    }

    #[test]
    fn a_live_reply_never_expires_and_a_gap_is_unavailable() {
        let mut log = ReplayLog::new(limits(2, 64));
        for seq in 1..=3 {
            log.push("r", "s", seq, seq, false, at(0));
        }
        assert_eq!(log.replay("r", "s", 0, at(10_000)), Replay::Unavailable, "frame 1 dropped");
        let replay = log.replay("r", "s", 1, at(10_000));
        assert_eq!(replay, Replay::Frames { frames: vec![2, 3], ended: false });
    }

    #[test]
    fn a_shared_replay_needs_a_live_or_ended_key_of_the_same_session_and_no_gap() {
        let entries = |seqs: &[u64]| -> Vec<(u64, String, u64)> {
            seqs.iter().map(|s| (*s, "s".to_string(), *s)).collect()
        };
        let live = Some((Liveness::Live, "s"));
        assert_eq!(
            shared_replay("s", 2, live, entries(&[3, 4])),
            Replay::Frames { frames: vec![3, 4], ended: false }
        );
        assert_eq!(
            shared_replay("s", 4, Some((Liveness::Ended, "s")), entries(&[])),
            Replay::Frames { frames: vec![], ended: true }
        );
        assert_eq!(shared_replay("s", 2, None, entries(&[3])), Replay::Unavailable, "no key");
        let gone = Some((Liveness::Gone, "s"));
        assert_eq!(shared_replay("s", 2, gone, entries(&[3])), Replay::Unavailable, "dead");
        let other = Some((Liveness::Live, "other"));
        assert_eq!(shared_replay("s", 2, other, entries(&[3])), Replay::Unavailable);
        assert_eq!(shared_replay("s", 2, live, entries(&[4, 5])), Replay::Unavailable, "trimmed");
        assert_eq!(shared_replay("s", 2, live, entries(&[3, 5])), Replay::Unavailable, "hole");
        let foreign = vec![(3, "other".to_string(), 3)];
        assert_eq!(shared_replay("s", 2, live, foreign), Replay::Unavailable);
    }

    #[test]
    fn held_frames_are_merged_after_the_replay_without_repeats_or_gaps() {
        // Frames: numbers are seqs of the reply; 100+ are other frames; 99 the reply's error.
        let seq_of = |f: &u64| (*f < 99).then_some(*f);
        let merged = merge_resumed(2, vec![3, 4, 99], vec![100, 4, 101, 99], seq_of);
        assert_eq!(merged, Some(vec![100, 3, 4, 99, 101]), "the binding's answer first");
        let merged = merge_resumed(2, vec![3], vec![3, 4, 5], seq_of);
        assert_eq!(merged, Some(vec![3, 4, 5]));
        assert_eq!(merge_resumed(2, vec![3], vec![5], seq_of), None, "seq 4 would be skipped");
        assert_eq!(merge_resumed(2, Vec::new(), vec![100], seq_of), Some(vec![100]));
    }

    #[test]
    fn a_watch_answers_unavailable_when_the_producer_is_gone_or_unknown_for_a_ttl() {
        let ttl = alive_ttl(Duration::from_secs(5));
        assert_eq!(ttl, Duration::from_secs(5) + REPLY_ALIVE_GRACE);
        let mut watch = ResumeWatch::new(ttl, at(0));
        assert_eq!(watch.on_poll(at(1), Some(Liveness::Live)), Watch::Keep);
        assert_eq!(watch.on_poll(at(2), None), Watch::Keep, "one failed read is not death");
        let silent = Instant::from_secs(1) + ttl;
        assert_eq!(watch.on_poll(silent, None), Watch::Unavailable);
        assert_eq!(watch.on_poll(at(3), Some(Liveness::Ended)), Watch::Stop);
        assert_eq!(watch.on_poll(at(3), Some(Liveness::Gone)), Watch::Unavailable);
        let window = Duration::from_secs(300);
        assert_eq!(stream_ttl(ttl, true, window), window);
        assert_eq!(stream_ttl(ttl, false, window), ttl + window);
    }

    proptest! {
        /// A resume that subscribed at frame `sub` and read the recorded frames up to `read`
        /// (`sub <= read + 1`: subscribed before reading, and every frame is recorded before it
        /// is published) gets exactly the frames after its seq, once each, in order, with the
        /// other frames of the session kept in order; a live frame after a hole (frames neither
        /// read nor held: their records were lost) is refused, never skipped.
        #[test]
        fn merging_a_replay_with_held_frames_is_exact_or_refused(
            n in 1u64..30,
            after in 0u64..30,
            read in 0u64..30,
            sub in 1u64..32,
            others in proptest::collection::vec(0usize..40, 0..6),
        ) {
            let after = after.min(n);
            let read = read.clamp(after, n);
            let replayed: Vec<u64> = (after + 1..=read).collect();
            let mut held: Vec<u64> = (sub..=n).collect();
            for (i, at) in others.iter().enumerate() {
                held.insert((*at).min(held.len()), 1000 + i as u64);
            }
            let seq_of = |f: &u64| (*f < 1000).then_some(*f);
            let merged = merge_resumed(after, replayed, held.clone(), seq_of);
            if sub <= read + 1 {
                let merged = merged.expect("no hole");
                let seqs: Vec<u64> = merged.iter().copied().filter(|f| *f < 1000).collect();
                prop_assert_eq!(seqs, (after + 1..=n).collect::<Vec<_>>());
                let kept: Vec<u64> = merged.iter().copied().filter(|f| *f >= 1000).collect();
                let want: Vec<u64> = held.iter().copied().filter(|f| *f >= 1000).collect();
                prop_assert_eq!(kept, want);
            } else if sub <= n {
                prop_assert_eq!(merged, None);
            }
        }
    }

    /// The log as it was before `ended_order` (every reply walked on every call): the
    /// reference the indexed log must match answer for answer.
    struct WalkingLog {
        limits: ReplayLimits,
        entries: HashMap<String, Entry<u64>>,
        total: usize,
        opened: u64,
    }

    impl WalkingLog {
        fn push(&mut self, reply: &str, seq: u64, last: bool, now: Instant) {
            self.expire(now);
            if !self.entries.contains_key(reply) {
                self.opened += 1;
                let entry = Entry {
                    session: "s".into(),
                    frames: VecDeque::new(),
                    dropped_through: 0,
                    ended: None,
                    opened: self.opened,
                };
                self.entries.insert(reply.to_string(), entry);
            }
            while self.total >= self.limits.total && self.evict_one(reply) {}
            let per_reply = self.limits.per_reply;
            let Some(entry) = self.entries.get_mut(reply) else { return };
            if entry.ended.is_some() {
                return;
            }
            entry.frames.push_back((seq, seq));
            self.total += 1;
            while entry.frames.len() > per_reply {
                if let Some((dropped, _)) = entry.frames.pop_front() {
                    entry.dropped_through = dropped;
                    self.total -= 1;
                }
            }
            if last {
                entry.ended = Some(now);
            }
        }

        fn end(&mut self, reply: &str, now: Instant) {
            if let Some(entry) = self.entries.get_mut(reply) {
                entry.ended.get_or_insert(now);
            }
        }

        fn replay(&mut self, reply: &str, after_seq: u64, now: Instant) -> Replay<u64> {
            self.expire(now);
            let Some(entry) = self.entries.get(reply) else { return Replay::Unavailable };
            if after_seq < entry.dropped_through {
                return Replay::Unavailable;
            }
            let mut after = entry.frames.iter().filter(|(s, _)| *s > after_seq).peekable();
            if after.peek().is_some_and(|(s, _)| *s != after_seq + 1) {
                return Replay::Unavailable;
            }
            let frames = after.map(|(_, f)| *f).collect();
            Replay::Frames { frames, ended: entry.ended.is_some() }
        }

        fn expire(&mut self, now: Instant) {
            let window = self.limits.window;
            let mut freed = 0;
            self.entries.retain(|_, e| {
                let keep = e.ended.is_none_or(|t| now.saturating_duration_since(t) < window);
                if !keep {
                    freed += e.frames.len();
                }
                keep
            });
            self.total -= freed;
        }

        fn evict_one(&mut self, pushing: &str) -> bool {
            let oldest_ended = self
                .entries
                .iter()
                .filter(|(id, e)| {
                    e.ended.is_some() && !e.frames.is_empty() && id.as_str() != pushing
                })
                .min_by_key(|(_, e)| (e.ended, e.opened))
                .map(|(id, _)| id.clone());
            if let Some(id) = oldest_ended {
                if let Some(e) = self.entries.remove(&id) {
                    self.total -= e.frames.len();
                }
                return true;
            }
            let oldest = self
                .entries
                .iter()
                .filter(|(_, e)| !e.frames.is_empty())
                .min_by_key(|(_, e)| e.opened)
                .map(|(id, _)| id.clone());
            if let Some(entry) = oldest.and_then(|id| self.entries.get_mut(&id)) {
                if let Some((dropped, _)) = entry.frames.pop_front() {
                    entry.dropped_through = dropped;
                    self.total -= 1;
                    return true;
                }
            }
            false
        }
    }

    proptest! {
        /// Expiry and eviction through `ended_order` answer exactly as walking every reply
        /// did: the same resumes, the same kept frames and replies, after every operation
        /// (reply ids reused after they are forgotten, ends without a final frame, windows
        /// passing mid-run).
        #[test]
        fn the_indexed_log_answers_as_the_walking_one(
            ops in proptest::collection::vec((0u8..4, 0u64..8, 0u64..40), 1..300),
            per_reply in 1usize..6,
            total in 1usize..24,
        ) {
            let limits = ReplayLimits { per_reply, total, window: Duration::from_secs(50) };
            let mut log = ReplayLog::new(limits);
            let mut walking =
                WalkingLog { limits, entries: HashMap::new(), total: 0, opened: 0 };
            let mut next_seq: HashMap<String, u64> = HashMap::new();
            let mut now = 0;
            for (op, reply, arg) in ops {
                let id = format!("r{reply}");
                now += arg % 20;
                match op {
                    0 | 1 => {
                        let seq = next_seq.entry(id.clone()).or_default();
                        *seq += 1;
                        log.push(&id, "s", *seq, *seq, op == 1, at(now));
                        walking.push(&id, *seq, op == 1, at(now));
                    }
                    2 => {
                        log.end(&id, at(now));
                        walking.end(&id, at(now));
                    }
                    _ => {
                        prop_assert_eq!(
                            log.replay(&id, "s", arg % 6, at(now)),
                            walking.replay(&id, arg % 6, at(now))
                        );
                    }
                }
                prop_assert_eq!(log.len(), walking.total);
                prop_assert_eq!(log.replies(), walking.entries.len());
                let ended = log.entries.values().filter(|e| e.ended.is_some()).count();
                prop_assert_eq!(log.ended_order.len(), ended, "one queue place per ended reply");
            }
        }
    }

    proptest! {
        /// Whatever is pushed, the bounds hold and every answered resume is exactly the pushed
        /// frames after its seq (nothing missing, nothing duplicated, in order).
        #[test]
        fn bounds_hold_and_answers_are_exact(
            ops in proptest::collection::vec((0u8..4, 0u64..6, 0u64..20), 1..200),
            per_reply in 1usize..8,
            total in 1usize..20,
        ) {
            let mut log = ReplayLog::new(limits(per_reply, total));
            // The model: every frame pushed per reply; a reply takes no frame after its end
            // (reply ids are never reused).
            let mut pushed: HashMap<String, Vec<u64>> = HashMap::new();
            let mut ended: std::collections::HashSet<String> = Default::default();
            let mut now = 0;
            for (op, reply, arg) in ops {
                let id = format!("r{reply}");
                now += arg;
                match op {
                    0 | 1 if !ended.contains(&id) => {
                        let seqs = pushed.entry(id.clone()).or_default();
                        let seq = seqs.last().copied().unwrap_or(0) + 1;
                        log.push(&id, "s", seq, seq, op == 1, at(now));
                        seqs.push(seq);
                        if op == 1 {
                            ended.insert(id);
                        }
                    }
                    0..=2 => {
                        log.end(&id, at(now));
                        ended.insert(id);
                    }
                    _ => {
                        if let Replay::Frames { frames, .. } = log.replay(&id, "s", arg, at(now)) {
                            let seqs = pushed.get(&id).cloned().unwrap_or_default();
                            let want: Vec<u64> = seqs.into_iter().filter(|s| *s > arg).collect();
                            prop_assert_eq!(frames, want, "exactly the missing frames");
                        }
                    }
                }
                prop_assert!(log.len() <= total);
                let counted: usize = log.entries.values().map(|e| e.frames.len()).sum();
                prop_assert_eq!(counted, log.len());
                prop_assert!(log.entries.values().all(|e| e.frames.len() <= per_reply));
            }
        }
    }
}
