//! The fleet's replay buffer (issue 14), once for every store behind it: this instance's replies
//! in the in-process [`LocalReplay`], every reply's frames written through the fleet bus's link
//! and read back from a [`ReplayStore`] (Redis in the adapters, the simulated broker in the
//! simulator). This file owns the decisions — what a frame writes, which replies are still live
//! here, how the state key's value reads, which read entries are kept — so the two stores differ
//! only in their IO.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatbox_core::replay::{alive_ttl, stream_ttl, Liveness, Replay};
use chatbox_core::Instant;

use super::wire::ReplayEntry;
use super::{
    BoxFuture, FleetBus, LocalReplay, ReplayBuffer, ReplayWrite, ReplyFrame, SharedRead,
    SharedReplay,
};

/// What a store holds of one reply, as stored (before [`FleetReplay`] interprets it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredRead {
    /// The state key's value (`None`: no key).
    pub state: Option<String>,
    /// The entries after the asked seq, by increasing seq: the seq of the entry's id and its
    /// `m` field (`None` when the entry has none).
    pub entries: Vec<(u64, Option<Vec<u8>>)>,
}

/// The IO of a fleet-wide replay store; the writes go through the fleet bus's link.
pub trait ReplayStore: Send + Sync {
    /// The reply's state value and entries after `after_seq`; `Err` names why it failed.
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<StoredRead, String>>;
    /// The reply's state value alone.
    fn state<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Result<Option<String>, String>>;
}

/// The value of a state key: `live:{session}` or `ended:{session}`.
pub fn state_value(ended: bool, session: &str) -> String {
    format!("{}:{session}", if ended { "ended" } else { "live" })
}

/// Parses a state key's value; anything else reads as no key.
pub fn parse_state(value: &str) -> Option<(Liveness, String)> {
    match value.split_once(':')? {
        ("live", session) => Some((Liveness::Live, session.to_string())),
        ("ended", session) => Some((Liveness::Ended, session.to_string())),
        _ => None,
    }
}

/// The entries that decode, as (seq, session, frame); one that does not (or whose id and seq
/// disagree) is left out, so the resume sees a gap instead of a bad frame.
pub fn decode_entries(entries: Vec<(u64, Option<Vec<u8>>)>) -> Vec<(u64, String, Arc<str>)> {
    entries
        .into_iter()
        .filter_map(|(seq, value)| {
            let Some(Ok(decoded)) = value.as_deref().map(ReplayEntry::decode) else {
                tracing::warn!(seq, "replay entry rejected");
                return None;
            };
            (decoded.seq == seq).then(|| (seq, decoded.session, Arc::from(decoded.frame)))
        })
        .collect()
}

/// The fleet's replay buffer over the store `S`.
pub struct FleetReplay<S> {
    local: LocalReplay,
    bus: Arc<FleetBus>,
    store: S,
    /// Replies produced here that have not ended: their session (an end names only the reply).
    live: Mutex<HashMap<String, String>>,
    alive: Duration,
    window: Duration,
}

impl<S> std::fmt::Debug for FleetReplay<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetReplay").field("alive", &self.alive).finish_non_exhaustive()
    }
}

impl<S: ReplayStore> FleetReplay<S> {
    /// The buffer over `local`, writing through `bus`'s link and reading from `store`; `idle` is
    /// the replies' idle deadline (`LLM_IDLE_TIMEOUT`), `window` is `RESUME_WINDOW`.
    pub fn new(
        local: LocalReplay,
        bus: Arc<FleetBus>,
        store: S,
        idle: Duration,
        window: Duration,
    ) -> Self {
        let live = Mutex::new(HashMap::new());
        FleetReplay { local, bus, store, live, alive: alive_ttl(idle), window }
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn record(&self, at: ReplyFrame<'_>, frame: &str) {
        if at.last {
            self.live().remove(at.reply_id);
        } else {
            self.live().insert(at.reply_id.to_string(), at.session.to_string());
        }
        let state_ttl = if at.last { self.window } else { self.alive };
        let entry = ReplayEntry::new(at.session, at.seq, at.last, frame).encode();
        self.bus.record(ReplayWrite {
            reply_id: at.reply_id.to_string(),
            session: at.session.to_string(),
            entry: Some((at.seq, entry)),
            ended: at.last,
            state_ttl,
            stream_ttl: stream_ttl(self.alive, at.last, self.window),
        });
    }

    async fn read_shared(&self, reply_id: &str, after_seq: u64) -> Result<SharedRead, String> {
        let read = self.store.read(reply_id, after_seq).await?;
        Ok(SharedRead {
            state: read.state.as_deref().and_then(parse_state),
            entries: decode_entries(read.entries),
        })
    }
}

impl<S: ReplayStore> ReplayBuffer for FleetReplay<S> {
    fn publish(
        &self,
        at: ReplyFrame<'_>,
        frame: &Arc<str>,
        now: Instant,
        fan_out: &mut dyn FnMut(),
    ) {
        self.local.publish(at, frame, now, &mut || {
            // Queued before the fan-out's own publication: recorded before anyone sees it live.
            self.record(at, frame);
            fan_out();
        });
    }

    fn end(&self, reply_id: &str, now: Instant) {
        self.local.end(reply_id, now);
        let Some(session) = self.live().remove(reply_id) else { return };
        self.bus.record(ReplayWrite {
            reply_id: reply_id.to_string(),
            session,
            entry: None,
            ended: true,
            state_ttl: self.window,
            stream_ttl: self.window,
        });
    }

    fn resume(
        &self,
        session: &str,
        reply_id: &str,
        after_seq: u64,
        now: Instant,
        attach: &mut dyn FnMut(Replay<Arc<str>>),
    ) {
        self.local.resume(session, reply_id, after_seq, now, attach);
    }

    fn frames(&self) -> usize {
        self.local.frames()
    }

    fn shared(&self) -> Option<&dyn SharedReplay> {
        Some(self)
    }
}

impl<S: ReplayStore> SharedReplay for FleetReplay<S> {
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<SharedRead, String>> {
        Box::pin(self.read_shared(reply_id, after_seq))
    }

    fn liveness<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Option<Liveness>> {
        Box::pin(async move {
            let state = self.store.state(reply_id).await.ok()?;
            Some(state.as_deref().and_then(parse_state).map_or(Liveness::Gone, |(l, _)| l))
        })
    }

    fn alive_ttl(&self) -> Duration {
        self.alive
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_values_round_trip_and_anything_else_reads_as_no_key() {
        assert_eq!(parse_state(&state_value(false, "s:1")), Some((Liveness::Live, "s:1".into())));
        assert_eq!(parse_state(&state_value(true, "s")), Some((Liveness::Ended, "s".into())));
        assert_eq!(parse_state("dead:s"), None);
        assert_eq!(parse_state("live"), None);
    }

    #[test]
    fn entries_that_do_not_decode_or_disagree_on_seq_are_left_out() {
        let good = ReplayEntry::new("s", 2, false, "f").encode().into_bytes();
        let wrong_seq = ReplayEntry::new("s", 9, false, "g").encode().into_bytes();
        let kept = decode_entries(vec![
            (1, None),
            (2, Some(good)),
            (3, Some(b"not json".to_vec())),
            (4, Some(wrong_seq)),
        ]);
        assert_eq!(kept, vec![(2, "s".to_string(), Arc::from("f"))]);
    }
}
