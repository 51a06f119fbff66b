//! The replay buffer in Redis (issue 14): what lets a reply produced on one instance be resumed
//! on any other. Behind the engine's `ReplayBuffer` port; this instance's own replies are still
//! kept (and resumed) in the in-process `LocalReplay` first. The buffer's logic is the engine's
//! [`FleetReplay`]; this file is only Redis's keys, the write pipeline and the reads.
//!
//! Per reply, two keys:
//! - `chatbox:replay:{reply_id}` — a Stream, one entry per frame, id `{seq}-0` and one field `m`
//!   (a `ReplayEntry`), trimmed with `MAXLEN ~ REPLAY_STREAM_MAXLEN`; it expires the alive TTL
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

use std::time::Duration;

use chatbox_core::budgets::{BUS_COMMAND_TIMEOUT, REPLAY_STREAM_MAXLEN};
use redis::aio::MultiplexedConnection;
use tokio::time::timeout;

use crate::engine::delivery::fleet_replay::{state_value, FleetReplay, ReplayStore, StoredRead};
use crate::engine::delivery::{BoxFuture, ReplayWrite};

/// The stream key of a reply.
pub fn stream_key(reply_id: &str) -> String {
    format!("chatbox:replay:{reply_id}")
}

/// The state (alive) key of a reply.
pub fn state_key(reply_id: &str) -> String {
    format!("chatbox:replay:{reply_id}:state")
}

/// Adds one queued write to the link's pipeline: XADD (trimmed) + PEXPIRE of the stream and
/// SET of the state key.
pub(super) fn add(pipe: &mut redis::Pipeline, write: &ReplayWrite) {
    let stream = stream_key(&write.reply_id);
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
}

fn millis(ttl: Duration) -> u64 {
    u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1)
}

/// The fleet's replay buffer over Redis: the engine's [`FleetReplay`] with [`RedisStore`] reads.
pub type RedisReplay = FleetReplay<RedisStore>;

/// The reads of the replay buffer in Redis: their own multiplexed connection, each command
/// bounded by `BUS_COMMAND_TIMEOUT`.
pub struct RedisStore {
    client: redis::Client,
    reader: tokio::sync::Mutex<Option<MultiplexedConnection>>,
}

impl RedisStore {
    /// Reads with `client` (connected on the first read).
    pub fn new(client: redis::Client) -> Self {
        RedisStore { client, reader: tokio::sync::Mutex::new(None) }
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

    async fn read_range(&self, reply_id: &str, after_seq: u64) -> Result<StoredRead, String> {
        let mut pipe = redis::pipe();
        pipe.cmd("GET").arg(state_key(reply_id));
        pipe.cmd("XRANGE")
            .arg(stream_key(reply_id))
            .arg(format!("{}-0", after_seq.saturating_add(1)))
            .arg("+")
            .arg("COUNT")
            .arg(REPLAY_STREAM_MAXLEN + 1);
        let (state, range): (Option<String>, redis::Value) = self.query(&pipe).await?;
        Ok(StoredRead { state, entries: stored_range(&range) })
    }
}

impl ReplayStore for RedisStore {
    fn read<'a>(
        &'a self,
        reply_id: &'a str,
        after_seq: u64,
    ) -> BoxFuture<'a, Result<StoredRead, String>> {
        Box::pin(self.read_range(reply_id, after_seq))
    }

    fn state<'a>(&'a self, reply_id: &'a str) -> BoxFuture<'a, Result<Option<String>, String>> {
        Box::pin(async move {
            let mut pipe = redis::pipe();
            pipe.cmd("GET").arg(state_key(reply_id));
            let (state,): (Option<String>,) = self.query(&pipe).await?;
            Ok(state)
        })
    }
}

/// The entries of an XRANGE answer whose id names a seq, as (seq, `m` field); the engine's
/// [`decode_entries`](crate::engine::delivery::fleet_replay::decode_entries) decides which to keep.
fn stored_range(range: &redis::Value) -> Vec<(u64, Option<Vec<u8>>)> {
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
        out.push((seq, value.map(<[u8]>::to_vec)));
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::delivery::fleet_replay::decode_entries;
    use crate::engine::delivery::wire::ReplayEntry;
    use std::sync::Arc;

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
        assert_eq!(
            decode_entries(stored_range(&range)),
            vec![(3, "s".to_string(), Arc::from("{}"))]
        );
        assert!(stored_range(&redis::Value::Nil).is_empty());
    }
}
