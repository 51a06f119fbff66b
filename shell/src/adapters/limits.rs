//! The fleet-wide limits in Redis (issue 14): [`RedisLimits`] implements the engine's
//! [`SharedRates`] and [`ConnectionLeases`] ports with one Lua script per call, so every check is
//! atomic across instances.
//!
//! What Redis holds (all of it may be lost; the instances then limit locally until it is back):
//! - `chatbox:limit:{msg|admin}:{user}` — a ZSET, the user's allowed events of the last window,
//!   scored by Redis `TIME` in microseconds (at most `limit` members; expires one window after
//!   the last event). The script is core's [`chatbox_core::rate::SlidingLog`], exact.
//! - `chatbox:limit:conn:{user}` — a ZSET of the user's connection leases scored by their
//!   expiry in milliseconds (at most `MAX_CONNECTIONS` members; renewed by each instance's
//!   heartbeat, so a killed instance's leases expire by themselves).
//!
//! Every call has [`FLEET_LIMIT_TIMEOUT`]; the connection is made lazily and dropped after any
//! failure, so the next call (after the engine's pause) reconnects.

use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::budgets::{FLEET_LIMIT_TIMEOUT, FLEET_TOKEN_COUNT_TTL};
use chatbox_core::rate::{window_micros, Decision, RateLimit};
use chatbox_core::Instant;
use redis::aio::MultiplexedConnection;
use redis::Script;
use tokio::time::timeout;

use crate::engine::fleet_limits::{
    ConnectionLeases, Scope, SharedRates, SharedTokens, Unavailable,
};

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
}

impl RedisLimits {
    /// Limits kept in the Redis of `client` (connected on first use).
    pub fn new(client: redis::Client) -> Self {
        Self {
            client,
            conn: Mutex::new(None),
            check: Script::new(CHECK),
            lease: Script::new(LEASE),
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
