//! The fleet-wide limits in Redis (issue 14): [`RedisLimits`] implements the engine's
//! [`SharedRates`], [`ConnectionLeases`], [`SharedTokens`] and [`SharedTurns`] ports with one
//! command or Lua script per call, so every check is atomic across instances.
//!
//! What Redis holds (all of it may be lost; the instances then limit locally until it is back):
//! - `chatbox:limit:{msg|admin}:{user}` — a ZSET, the user's allowed events of the last window,
//!   scored by Redis `TIME` in microseconds (at most `limit` members; expires one window after
//!   the last event). The script is core's [`chatbox_core::rate::SlidingLog`], exact.
//! - `chatbox:turn:{user}` — a string, the holder id of the instance answering that user's
//!   message now (PROTOCOL.md §10 item 27 across the fleet; `engine::turns`), expiring
//!   `FLEET_TURN_TTL` after its last renewal; `chatbox:turnq:{user}` and `chatbox:turns:{user}`,
//!   ZSETs of the messages waiting for it (holder id → first and last ask, Redis `TIME` in µs),
//!   the queue in arrival order, a waiter silent for `FLEET_TURN_WAITER_TTL` dropped.
//! - `chatbox:limit:conn:{user}` — a ZSET of the user's connection leases scored by their
//!   expiry in milliseconds (at most `MAX_CONNECTIONS` members; renewed by each instance's
//!   heartbeat, so a killed instance's leases expire by themselves).
//!
//! Every call has [`FLEET_LIMIT_TIMEOUT`]; the connection is made lazily and dropped after any
//! failure, so the next call (after the engine's pause) reconnects.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::budgets::{FLEET_LIMIT_TIMEOUT, FLEET_TOKEN_COUNT_TTL, FLEET_TURN_WAITER_TTL};
use chatbox_core::rate::{window_micros, Decision, RateLimit};
use chatbox_core::Instant;
use redis::aio::MultiplexedConnection;
use redis::Script;
use tokio::time::timeout;

use crate::engine::fleet_limits::{
    ConnectionLeases, Scope, SharedRates, SharedTokens, Unavailable,
};
use crate::engine::turns::{SharedTurns, Take};

/// The sliding log of [`chatbox_core::rate::SlidingLog`]: KEYS[1] the log, ARGV limit and window
/// (µs). Returns `{1, 0}` when allowed, `{0, retry_after_us}` when denied.
const CHECK: &str = r"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local window = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
local newest = redis.call('ZRANGE', key, -1, -1, 'WITHSCORES')
if newest[2] and tonumber(newest[2]) > now then now = tonumber(newest[2]) end
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('(%d', now - window))
local count = redis.call('ZCARD', key)
if count < limit then
  redis.call('ZADD', key, string.format('%d', now), string.format('%d-%d', now, count))
  redis.call('PEXPIRE', key, math.floor(window / 1000) + 1000)
  return {1, 0}
end
local pivot = redis.call('ZRANGE', key, count - limit, count - limit, 'WITHSCORES')
local wait = tonumber(pivot[2]) + window + 1 - now
if wait < 1 then wait = 1 end
return {0, wait}
";

/// Takes or renews lease ARGV[3] in KEYS[1] unless ARGV[1] other live leases are held; the
/// lease expires ARGV[2] ms from now. Returns 1 when held, 0 when full.
const LEASE: &str = r"
local key = KEYS[1]
local limit = tonumber(ARGV[1])
local ttl = tonumber(ARGV[2])
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', key, '-inf', string.format('%d', now))
local held = redis.call('ZSCORE', key, ARGV[3])
if (not held) and redis.call('ZCARD', key) >= limit then return 0 end
redis.call('ZADD', key, string.format('%d', now + ttl), ARGV[3])
redis.call('PEXPIRE', key, ttl)
return 1
";

/// Asks for turn KEYS[1] as holder ARGV[1] (lease ARGV[2] ms); core's
/// [`chatbox_core::turn::TurnBook`] is its model (with `RENEW` and `GIVE_BACK`). KEYS[2] is the queue (waiter →
/// first ask, µs), KEYS[3] the waiters' last asks; a waiter silent for ARGV[3] ms leaves it.
/// Returns `{1, holder}` when the turn is ARGV[1]'s, `{0, ahead}` when queued behind `ahead`
/// (the holder, or the queue's head while the turn is free).
const TAKE: &str = r"
local turn, queue, seen = KEYS[1], KEYS[2], KEYS[3]
local me, ttl, patience = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local holder = redis.call('GET', turn)
if holder == me or (not holder and redis.call('EXISTS', queue) == 0) then
  redis.call('SET', turn, me, 'PX', ttl)
  return {1, me}
end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000000 + tonumber(time[2])
for _, gone in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - patience * 1000)) do
  redis.call('ZREM', queue, gone)
  redis.call('ZREM', seen, gone)
end
redis.call('ZADD', queue, 'NX', now, me)
redis.call('ZADD', seen, now, me)
-- The queue outlives any one waiter's silence, whatever lease the asker takes.
local keep = math.max(ttl, 2 * patience)
redis.call('PEXPIRE', queue, keep)
redis.call('PEXPIRE', seen, keep)
if holder then return {0, holder} end
local head = redis.call('ZRANGE', queue, 0, 0)[1]
if head ~= me then return {0, head} end
redis.call('ZREM', queue, me)
redis.call('ZREM', seen, me)
redis.call('SET', turn, me, 'PX', ttl)
return {1, me}
";

/// Extends turn KEYS[1] to ARGV[2] ms when holder ARGV[1] has it. Returns 1 when renewed.
const RENEW: &str = r"
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
return redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]))
";

/// Takes holder ARGV[1] out of queue KEYS[2] / KEYS[3] and deletes turn KEYS[1] when it is
/// ARGV[1]'s.
const GIVE_BACK: &str = r"
if redis.call('EXISTS', KEYS[2]) == 1 then
  redis.call('ZREM', KEYS[2], ARGV[1])
  redis.call('ZREM', KEYS[3], ARGV[1])
end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// A turn's keys: the holder, the queue and the waiters' last asks. Each kind has its own
/// prefix, so no user id can name another user's key of another kind (a user called
/// `alice:queue` must not reach alice's queue).
fn turn_keys(key: &str) -> [String; 3] {
    ["chatbox:turn:", "chatbox:turnq:", "chatbox:turns:"].map(|prefix| format!("{prefix}{key}"))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX).max(1)
}

fn rate_key(scope: Scope, user: &str) -> String {
    format!("chatbox:limit:{}:{user}", scope.as_str())
}

fn tokens_key(user: &str, day: i64) -> String {
    format!("chatbox:tokens:{day}:{user}")
}

fn lease_key(user: &str) -> String {
    format!("chatbox:limit:conn:{user}")
}

/// The fleet-wide limits over one Redis.
#[derive(Debug)]
pub struct RedisLimits {
    client: redis::Client,
    conn: Mutex<Option<MultiplexedConnection>>,
    check: Script,
    lease: Script,
    take: Script,
    renew: Script,
    give_back: Script,
}

impl RedisLimits {
    /// Limits kept in the Redis of `client` (connected on first use).
    pub fn new(client: redis::Client) -> Self {
        Self {
            client,
            conn: Mutex::new(None),
            check: Script::new(CHECK),
            lease: Script::new(LEASE),
            take: Script::new(TAKE),
            renew: Script::new(RENEW),
            give_back: Script::new(GIVE_BACK),
        }
    }

    /// Limits kept in the Redis at `url` (`redis://…`, `rediss://…`; connected on first use).
    pub fn open(url: &str) -> Result<Self, redis::RedisError> {
        Ok(Self::new(redis::Client::open(url)?))
    }

    fn cached(&self) -> Option<MultiplexedConnection> {
        self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn store(&self, conn: Option<MultiplexedConnection>) {
        *self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = conn;
    }

    /// Runs `call` on the connection within [`FLEET_LIMIT_TIMEOUT`] (connecting first if
    /// needed); any failure drops the connection.
    async fn run<T, F, Fut>(&self, call: F) -> Result<T, Unavailable>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: std::future::Future<Output = redis::RedisResult<T>>,
    {
        let attempt = async {
            let conn = match self.cached() {
                Some(conn) => conn,
                None => {
                    let conn = self.client.get_multiplexed_async_connection().await?;
                    self.store(Some(conn.clone()));
                    conn
                }
            };
            call(conn).await
        };
        let outcome = match timeout(FLEET_LIMIT_TIMEOUT, attempt).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(error)) => Unavailable(format!("redis: {error}")),
            Err(_) => Unavailable(format!("redis did not answer within {FLEET_LIMIT_TIMEOUT:?}")),
        };
        self.store(None);
        Err(outcome)
    }
}

#[async_trait]
impl SharedRates for RedisLimits {
    async fn check(
        &self,
        scope: Scope,
        key: &str,
        limit: RateLimit,
        _now: Instant,
    ) -> Result<Decision, Unavailable> {
        let window = window_micros(limit.window);
        if limit.limit == 0 {
            let hint = Duration::from_micros(window.max(1));
            return Ok(Decision::Denied { retry_after: hint });
        }
        let redis_key = rate_key(scope, key);
        let (allowed, wait): (i64, i64) = self
            .run(|mut conn| async move {
                let mut invocation = self.check.key(&redis_key);
                invocation.arg(limit.limit).arg(window);
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        if allowed == 1 {
            return Ok(Decision::Allowed);
        }
        let wait = u64::try_from(wait).unwrap_or(1).max(1);
        Ok(Decision::Denied { retry_after: Duration::from_micros(wait) })
    }
}

#[async_trait]
impl ConnectionLeases for RedisLimits {
    async fn lease(
        &self,
        user: &str,
        lease: &str,
        limit: u32,
        ttl: Duration,
    ) -> Result<bool, Unavailable> {
        let key = lease_key(user);
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let held: i64 = self
            .run(|mut conn| async move {
                let mut invocation = self.lease.key(&key);
                invocation.arg(limit).arg(ttl_ms).arg(lease);
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(held == 1)
    }

    async fn release(&self, user: &str, lease: &str) -> Result<(), Unavailable> {
        let key = lease_key(user);
        self.run(|mut conn| async move {
            redis::cmd("ZREM").arg(&key).arg(lease).query_async::<i64>(&mut conn).await
        })
        .await
        .map(|_| ())
    }
}

#[async_trait]
impl SharedTokens for RedisLimits {
    async fn spent(&self, user: &str, day: i64) -> Result<u64, Unavailable> {
        let key = tokens_key(user, day);
        self.run(|mut conn| async move {
            let spent: Option<u64> = redis::cmd("GET").arg(&key).query_async(&mut conn).await?;
            Ok(spent.unwrap_or(0))
        })
        .await
    }

    async fn charge(&self, user: &str, day: i64, tokens: u64) -> Result<(), Unavailable> {
        let key = tokens_key(user, day);
        let ttl = FLEET_TOKEN_COUNT_TTL.as_secs();
        self.run(|mut conn| async move {
            redis::pipe()
                .atomic()
                .cmd("INCRBY")
                .arg(&key)
                .arg(tokens)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(ttl)
                .ignore()
                .query_async::<()>(&mut conn)
                .await
        })
        .await
    }
}

#[async_trait]
impl SharedTurns for RedisLimits {
    async fn take(&self, key: &str, holder: &str, ttl: Duration) -> Result<Take, Unavailable> {
        let keys = turn_keys(key);
        let (held, ahead): (i64, String) = self
            .run(|mut conn| async move {
                let mut invocation = self.take.key(&keys[0]);
                invocation.key(&keys[1]).key(&keys[2]);
                invocation.arg(holder).arg(millis(ttl)).arg(millis(FLEET_TURN_WAITER_TTL));
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(if held == 1 { Take::Held } else { Take::Queued { ahead } })
    }

    async fn renew(&self, key: &str, holder: &str, ttl: Duration) -> Result<bool, Unavailable> {
        let [turn, ..] = turn_keys(key);
        let renewed: i64 = self
            .run(|mut conn| async move {
                let mut invocation = self.renew.key(&turn);
                invocation.arg(holder).arg(millis(ttl));
                invocation.invoke_async(&mut conn).await
            })
            .await?;
        Ok(renewed == 1)
    }

    async fn give_back(&self, key: &str, holder: &str) -> Result<(), Unavailable> {
        let keys = turn_keys(key);
        self.run(|mut conn| async move {
            let mut invocation = self.give_back.key(&keys[0]);
            invocation.key(&keys[1]).key(&keys[2]).arg(holder);
            invocation.invoke_async::<i64>(&mut conn).await
        })
        .await
        .map(|_| ())
    }
}
