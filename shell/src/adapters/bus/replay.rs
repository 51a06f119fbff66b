//! The replay buffer in Redis (issue 14): what lets a reply produced on one instance be resumed
//! on any other. Behind the engine's `ReplayBuffer` port; this instance's own replies are still
//! kept (and resumed) in the in-process [`LocalReplay`] first.
//!
//! Per reply, two keys:
//! - `chatbox:replay:{reply_id}` — a Stream, one entry per frame, id `{seq}-0` and one field `m`
//!   (a [`ReplayEntry`]), trimmed with `MAXLEN ~ REPLAY_STREAM_MAXLEN`; it expires the alive TTL
//!   plus `RESUME_WINDOW` after its last write while the reply streams, `RESUME_WINDOW` after it
//!   ended.
//! - `chatbox:replay:{reply_id}:state` — `live:{session}` with the alive TTL (core's `alive_ttl`:
//!   the idle deadline plus a grace), refreshed by every frame; `ended:{session}` for
//!   `RESUME_WINDOW` once the reply ended. No key while the stream has frames means the
//!   producing instance died.
//!
//! Writes are queued on the fleet bus's link (the same queue as the publications, so a frame is
//! recorded before any instance receives it live) and never delay a local frame; reads (a resume,
//! a watch) use their own multiplexed connection, each command bounded by `BUS_COMMAND_TIMEOUT`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chatbox_core::budgets::{BUS_COMMAND_TIMEOUT, REPLAY_STREAM_MAXLEN};
use chatbox_core::replay::{alive_ttl, stream_ttl, Liveness, Replay};
use chatbox_core::Instant;
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

use crate::engine::delivery::wire::ReplayEntry;
use crate::engine::delivery::{
    BoxFuture, FleetBus, LocalReplay, ReplayBuffer, ReplayWrite, ReplyFrame, SharedRead,
    SharedReplay,
};

/// The stream key of a reply.
pub fn stream_key(reply_id: &str) -> String {
    format!("chatbox:replay:{reply_id}")
}

/// The state (alive) key of a reply.
pub fn state_key(reply_id: &str) -> String {
    format!("chatbox:replay:{reply_id}:state")
}

/// The value of a state key.
fn state_value(ended: bool, session: &str) -> String {
    format!("{}:{session}", if ended { "ended" } else { "live" })
}

/// Parses a state key's value; anything else reads as no key.
fn parse_state(value: &str) -> Option<(Liveness, String)> {
    match value.split_once(':')? {
        ("live", session) => Some((Liveness::Live, session.to_string())),
        ("ended", session) => Some((Liveness::Ended, session.to_string())),
        _ => None,
    }
}

/// Executes one queued write on the link's connection: XADD (trimmed) + PEXPIRE of the stream
/// and SET of the state key, pipelined in one round trip.
pub(super) async fn write(
    conn: &mut MultiplexedConnection,
    write: &ReplayWrite,
) -> Result<(), redis::RedisError> {
    let stream = stream_key(&write.reply_id);
    let mut pipe = redis::pipe();
    if let Some((seq, entry)) = &write.entry {
        pipe.cmd("XADD")
            .arg(&stream)
            .arg("MAXLEN")
            .arg("~")
            .arg(REPLAY_STREAM_MAXLEN)
            .arg(format!("{seq}-0"))
            .arg("m")
            .arg(entry)
            .ignore();
    }
    pipe.cmd("PEXPIRE").arg(&stream).arg(millis(write.stream_ttl)).ignore();
    pipe.cmd("SET")
        .arg(state_key(&write.reply_id))
        .arg(state_value(write.ended, &write.session))
        .arg("PX")
        .arg(millis(write.state_ttl))
        .ignore();
    pipe.query_async::<()>(conn).await
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The fleet's replay buffer: this instance's replies in memory, every reply's frames in Redis.
pub struct RedisReplay {
    local: LocalReplay,
    bus: Arc<FleetBus>,
    client: redis::Client,
    reader: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// Replies produced here that have not ended: their session (an end names only the reply).
    live: Mutex<HashMap<String, String>>,
    alive: Duration,
    window: Duration,
}

impl std::fmt::Debug for RedisReplay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisReplay").field("alive", &self.alive).finish_non_exhaustive()
    }
}

impl RedisReplay {
    /// The buffer over `local`, writing through `bus`'s link and reading with `client`; `idle`
    /// is the replies' idle deadline (`LLM_IDLE_TIMEOUT`), `window` is `RESUME_WINDOW`.
    pub fn new(
        local: LocalReplay,
        bus: Arc<FleetBus>,
        client: redis::Client,
        idle: Duration,
        window: Duration,
    ) -> Self {
        RedisReplay {
            local,
            bus,
            client,
            reader: tokio::sync::Mutex::new(None),
            live: Mutex::new(HashMap::new()),
            alive: alive_ttl(idle),
            window,
        }
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

    /// A connection for reads (cached; a failed one is dropped and made again next time).
    async fn connection(&self) -> Result<MultiplexedConnection, String> {
        let mut cached = self.reader.lock().await;
        if let Some(conn) = cached.as_ref() {
            return Ok(conn.clone());
        }
        let conn = timeout(BUS_COMMAND_TIMEOUT, self.client.get_multiplexed_async_connection())
            .await
            .map_err(|_| "redis did not answer in time".to_string())?
            .map_err(|e| e.to_string())?;
        *cached = Some(conn.clone());
        Ok(conn)
    }

    async fn query<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> Result<T, String> {
        let mut conn = self.connection().await?;
        let outcome = timeout(BUS_COMMAND_TIMEOUT, pipe.query_async::<T>(&mut conn)).await;
        match outcome {
            Ok(Ok(value)) => Ok(value),
            failed => {
                *self.reader.lock().await = None;
                Err(match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "redis did not answer in time".to_string(),
                })
            }
        }
    }

    async fn read_shared(&self, reply_id: &str, after_seq: u64) -> Result<SharedRead, String> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(state_key(reply_id));
        pipe.cmd("XRANGE")
            .arg(stream_key(reply_id))
            .arg(format!("{}-0", after_seq.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(REPLAY_STREAM_MAXLEN + 1);
        let (state, range): (Option<String>, redis::Value) = self.query(&pipe).await?;
        Ok(SharedRead {
            state: state.as_deref().and_then(parse_state),
            entries: decode_range(&range),
        })
    }
}

/// The entries of an XRANGE answer that decode, as (seq, session, frame); an entry that does not
/// (or whose id and seq disagree) is left out, so the resume sees a gap instead of a bad frame.
fn decode_range(range: &redis::Value) -> Vec<(u64, String, Arc<str>)> {
    let redis::Value::Array(entries) = range else { return Vec::new() };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let redis::Value::Array(parts) = entry else { continue };
        let [id, redis::Value::Array(fields)] = parts.as_slice() else { continue };
        let Some(seq) = bytes(id)
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(|id| id.split_once('-'))
            .and_then(|(ms, _)| ms.parse::<u64>().ok())
        else {
            continue;
        };
        let value = fields.chunks(2).find_map(|pair| match pair {
            [name, value] if bytes(name) == Some(b"m") => bytes(value),
            _ => None,
        });
        let Some(Ok(decoded)) = value.map(ReplayEntry::decode) else {
            tracing::warn!(seq, "replay entry rejected");
            continue;
        };
        if decoded.seq == seq {
            out.push((seq, decoded.session, Arc::from(decoded.frame)));
        }
    }
    out
}

fn bytes(value: &redis::Value) -> Option<&[u8]> {
    match value {
        redis::Value::BulkString(b) => Some(b),
        redis::Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

impl ReplayBuffer for RedisReplay {
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

impl SharedReplay for RedisReplay {
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<SharedRead, String>> {
        Box::pin(self.read_shared(reply_id, after_seq))
    }

    fn liveness<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Option<Liveness>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(state_key(reply_id));
            let (state,): (Option<String>,) = self.query(&pipe).await.ok()?;
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
    fn range_entries_decode_and_bad_ones_are_left_out() {
        let bulk = |s: &str| redis::Value::BulkString(s.as_bytes().to_vec());
        let entry = |id: &str, m: &str| {
            redis::Value::Array(vec![bulk(id), redis::Value::Array(vec![bulk("m"), bulk(m)])])
        };
        let good = ReplayEntry::new("s", 3, false, "{}").encode();
        let range = redis::Value::Array(vec![
            entry("3-0", &good),
            entry("4-0", "not json"),
            entry("5-0", &good),
            redis::Value::Nil,
        ]);
        assert_eq!(decode_range(&range), vec![(3, "s".to_string(), Arc::from("{}"))]);
        assert!(decode_range(&redis::Value::Nil).is_empty());
    }
}
