//! Fixed budgets and limits of the server, by name: every time or size rule that is not a
//! setting. The settings' defaults live with their machines
//! ([`crate::keepalive::KeepaliveTimings`], [`crate::stream::StreamDeadlines`],
//! [`crate::retry::RetryPolicy`], [`crate::rate::RateLimit`]) or here (the history budgets), and
//! the configuration refers to them, so each value is written once. The shell imports these
//! instead of writing its own `Duration::from_*`.

use std::time::Duration;

use crate::retry::{Jitter, RetryPolicy};

// ---- WebSocket -------------------------------------------------------------------------------

/// How long the close frame of a kicked or force-closed connection may take before the socket
/// is dropped anyway (the peer may be the reason for the kick).
pub const KICK_CLOSE_BUDGET: Duration = Duration::from_millis(100);

// ---- HTTP ------------------------------------------------------------------------------------

/// How long a client may take to send a request's headers (the original's read timeout).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(15);

/// Pause after a failed `accept` (out of file descriptors and similar) instead of spinning.
pub const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// How long browsers may cache a CORS preflight answer (`Access-Control-Max-Age`).
pub const CORS_MAX_AGE: Duration = Duration::from_secs(12 * 3600);

// ---- Replies ---------------------------------------------------------------------------------

/// Budget of a voice-message answer, from the request to the last chunk (PROTOCOL.md §7.2).
pub const VOICE_BUDGET: Duration = Duration::from_secs(60);

/// At shutdown, longest wait for cut replies to send their error frame (at most half of what is
/// left of the shutdown budget).
pub const CUT_GRACE: Duration = Duration::from_secs(1);

/// Default most conversation messages sent to the provider (`LLM_HISTORY_MAX_MESSAGES`).
pub const HISTORY_MAX_MESSAGES: usize = 50;

/// Default most bytes of conversation sent to the provider (`LLM_HISTORY_MAX_BYTES`), 32 KiB.
pub const HISTORY_MAX_BYTES: usize = 32 * 1024;

/// Most recent messages the instance keeps per session for the history fallback (issue 16):
/// when the history read before a model call fails or runs over its budget, the reply is built
/// from these plus what waits in the outbox, or from the current message alone. The shell
/// raises it to `LLM_HISTORY_MAX_MESSAGES` so the cache can also stand in for the read (issue 18).
pub const HISTORY_CACHE_MESSAGES: usize = 20;

/// Bytes of message content that cache keeps per session beyond `LLM_HISTORY_MAX_BYTES` (the
/// newest message is kept whatever its size), so its memory is bounded by live sessions times
/// (`LLM_HISTORY_MAX_BYTES` + 16 KiB).
pub const HISTORY_CACHE_BYTES: usize = 16 * 1024;

/// Attempts at resolving a session for a frame before giving up (fresh ids that collide,
/// another instance creating the user's session first).
pub const SESSION_RESOLVE_ATTEMPTS: usize = 4;

/// Default time a reply stays resumable after it ended (`RESUME_WINDOW`, issue 14).
pub const RESUME_WINDOW: Duration = Duration::from_secs(5 * 60);

/// Most frames of one reply kept for a resume; a client that missed more reloads over REST.
pub const REPLAY_FRAMES_PER_REPLY: usize = 4096;

/// Most reply frames kept for resumes in one instance, all replies together (a chunk frame is a
/// few hundred bytes, so this bounds the buffer to tens of MiB).
pub const REPLAY_FRAMES_TOTAL: usize = 100_000;

/// Most entries of one reply's Redis stream (`XADD … MAXLEN ~`): the per-reply bound of the
/// in-process buffer, so a resume is as exact on another instance as on the producing one.
pub const REPLAY_STREAM_MAXLEN: usize = REPLAY_FRAMES_PER_REPLY;

/// Added to the reply's idle deadline (`LLM_IDLE_TIMEOUT`) to make the TTL of its "alive" key
/// in Redis: a producer refreshes it with every frame, so silence past idle + grace means the
/// producing instance died (the grace covers the write queue and the Redis round trip).
pub const REPLY_ALIVE_GRACE: Duration = Duration::from_secs(2);

/// How often a connection resumed from Redis checks that the reply's producer is still alive.
pub const RESUME_WATCH_INTERVAL: Duration = Duration::from_secs(1);

/// Most live frames held for a connection while its resume reads the replay from Redis; past
/// it the connection is a slow consumer (dropped, and it resumes again).
pub const RESUME_HOLD_FRAMES: usize = 1024;

// ---- Providers (HTTP upstreams) --------------------------------------------------------------

/// Budget to establish a TCP (and TLS) connection to a provider.
pub const PROVIDER_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Default wait for a provider's response headers (PROTOCOL.md §7.2: 30 s).
pub const PROVIDER_HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long an idle pooled connection to a provider is kept.
pub const PROVIDER_POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Bytes of a provider's non-2xx reply body kept in the error text (PROTOCOL.md §7.2).
pub const PROVIDER_ERROR_BODY_BYTES: usize = 1024;

/// Longest SSE line accepted from a provider (PROTOCOL.md §7.2: 1 MiB).
pub const SSE_MAX_LINE_BYTES: usize = 1024 * 1024;

/// Longest SSE event accepted (all its lines together). Real upstreams send one `data:` line
/// per event; this only bounds memory against a peer that never sends the blank line.
pub const SSE_MAX_EVENT_BYTES: usize = 2 * SSE_MAX_LINE_BYTES;

/// `max_tokens` of every Anthropic request (PROTOCOL.md §7.4).
pub const ANTHROPIC_MAX_TOKENS: u32 = 4096;

/// Longest `Retry-After` value kept from a provider (a delta-seconds or HTTP-date value is far
/// shorter; more is an upstream's mistake, not a hint).
pub const PROVIDER_RETRY_AFTER_BYTES: usize = 64;

/// Pause between the chunks of the built-in `echo` provider's reply, so streaming is visible
/// in a browser.
pub const ECHO_CHUNK_PAUSE: Duration = Duration::from_millis(15);

/// Chunks of an `echo` reply (fewer for short texts).
pub const ECHO_CHUNKS: usize = 4;

// ---- Uploads ---------------------------------------------------------------------------------

/// Parts a multipart upload to object storage may have in flight before the next write waits
/// (bounds memory to about this many 5 MiB parts).
pub const UPLOAD_PARTS_IN_FLIGHT: usize = 2;

/// Longest wait for the host lookup of a `file_url` check (§3.8). The check runs on the
/// connection's own loop, so a resolver that hangs would stop its writes and pings; past this
/// the URL is refused (`INVALID_FORMAT`), since its host could not be shown to be public.
pub const FILE_URL_LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

// ---- Store -----------------------------------------------------------------------------------

/// How long `/readyz` waits for the store's ping (PROTOCOL.md §4.10).
pub const STORE_PING_BUDGET: Duration = Duration::from_secs(2);

/// Shortest pause between two attempts to prepare the store at start-up (indexes, schema).
pub const STORE_PREPARE_MIN_DELAY: Duration = Duration::from_secs(1);

/// Time budget of MongoDB index creation at start-up (PROTOCOL.md §8.3).
pub const MONGO_INDEX_BUDGET: Duration = Duration::from_secs(30);

/// How often the MongoDB store re-inserts a new session when the active session it collided
/// with ended in between.
pub const SESSION_CREATE_ATTEMPTS: usize = 3;

/// Most writes the embedded store applies in one transaction (bounds how long the first waits).
pub const STORE_WRITE_BATCH: usize = 256;

/// How long the embedded store's writer waits for company before committing a batch, given how
/// many writes its previous commit carried and the configured wait (`STORE_COMMIT_LINGER`):
/// the configured wait when that commit had company (writes are arriving together), none when
/// it was alone. So a lone writer, or one caller writing in sequence, is never delayed, and a
/// wait that gathers nothing ends the waiting. Each commit costs page writes and an fsync
/// whatever its size, so under load a short wait makes fewer, larger commits (BENCHMARKS.md,
/// "1e").
#[must_use]
pub const fn store_commit_linger(previous_batch: usize, configured: Duration) -> Duration {
    if previous_batch >= 2 {
        configured
    } else {
        Duration::ZERO
    }
}

/// The embedded store's (redb's) page cache. Its default (1 GiB) let the server's memory grow
/// with the file — about 1.4 KiB per session ever created in the churn scenario
/// (BENCHMARKS.md); the operating system's page cache still keeps hot pages beyond this.
pub const EMBEDDED_CACHE_BYTES: usize = 64 * 1024 * 1024;

// ---- Fleet bus (issue 14) ---------------------------------------------------------------------

/// Largest bus message an instance accepts from Redis; larger ones are rejected and counted.
pub const BUS_MESSAGE_MAX_BYTES: usize = 1024 * 1024;

/// Publications queued for the bus task; past it a frame is not published (local connections
/// still get it), so a slow or lost Redis never holds up the reply path.
pub const BUS_PUBLISH_QUEUE: usize = 4096;

/// Most queued bus commands (publications, replay-buffer writes) the link sends to Redis in one
/// pipeline, one round trip: a burst of chunks costs one wait for Redis, not one per command.
pub const BUS_PIPELINE_MAX: usize = 256;

/// Signals (stops, admin events) held for one slow listener of an instance (issue 15); one that
/// falls further behind skips the oldest (an admin console then re-reads its list).
pub const SIGNAL_QUEUE: usize = 1024;

/// How often the admin event stream sends a keep-alive comment, so proxies keep it open.
pub const ADMIN_EVENTS_KEEPALIVE: Duration = Duration::from_secs(15);

/// Budget of connecting to Redis (TCP, TLS, AUTH, SELECT) and of one bus command.
pub const BUS_COMMAND_TIMEOUT: Duration = Duration::from_secs(2);

/// How often a connected bus pings Redis, so an outage is noticed without traffic.
pub const BUS_HEARTBEAT: Duration = Duration::from_secs(1);

/// Deadline of one fleet-limit call to Redis (a rate check, a connection lease): past it the
/// instance decides with its local limiter, so a slow Redis never holds up a message or a
/// handshake for longer than this.
pub const FLEET_LIMIT_TIMEOUT: Duration = Duration::from_millis(500);

/// After a fleet-limit call failed, how long the instance decides locally before it asks Redis
/// again (so an outage costs one deadline per pause, not one per message).
pub const FLEET_LIMIT_RETRY_PAUSE: Duration = Duration::from_secs(1);

/// Lease renewals a heartbeat has in flight at once on its multiplexed Redis connection: one at
/// a time, a heartbeat of tens of thousands of connections over a network would outlast the
/// leases' TTL.
pub const CONNECTION_LEASE_RENEWALS_IN_FLIGHT: usize = 64;

/// How often an instance renews the Redis leases of its open WebSocket connections.
pub const CONNECTION_LEASE_HEARTBEAT: Duration = Duration::from_secs(5);

/// Lifetime of a connection lease without renewal (three heartbeats): the slots of a killed
/// instance free themselves within it.
pub const CONNECTION_LEASE_TTL: Duration = Duration::from_secs(15);

/// Longest an exiting instance waits for the releases of its connection leases to reach Redis
/// (two fleet-limit deadlines): without the wait a drained instance's slots stay taken until
/// their TTL.
pub const CONNECTION_LEASE_RELEASE_GRACE: Duration = Duration::from_secs(1);

/// Lifetime of a user's fleet-wide turn (`chatbox:turn:{user}` in Redis) without renewal: the
/// instance answering that user's message renews it every [`FLEET_TURN_RENEW`], so a killed
/// instance's turn frees itself within this.
pub const FLEET_TURN_TTL: Duration = Duration::from_secs(15);

/// How often the instance holding a turn renews it (three renewals per TTL).
pub const FLEET_TURN_RENEW: Duration = Duration::from_secs(5);

/// How long a message queued for its user's turn stays queued without asking again (it asks at
/// least every 50 ms, `RetryPolicy::FLEET_TURN_POLL`): a waiter whose instance died leaves the
/// queue within this, so it does not hold up those behind it.
pub const FLEET_TURN_WAITER_TTL: Duration = Duration::from_secs(2);

/// Longest one holder (or queue head) may stand in front of a waiting message before the message
/// is answered anyway: the whole-reply deadline (`LLM_STREAM_TIMEOUT`) plus one turn lifetime. A
/// live holder ends its reply within the deadline and a dead one's turn expires within the TTL,
/// so only a holder that never lets go is overtaken; the clock restarts whenever the queue moves.
pub const fn fleet_turn_wait(stream_timeout: Duration) -> Duration {
    stream_timeout.saturating_add(FLEET_TURN_TTL)
}

/// Longest an exiting instance waits for the frames it queued on the fleet bus (a reply's last
/// chunks and `done`, for a user who resumed it on another instance) to be published: the
/// process must not end with them still queued.
pub const BUS_FLUSH_GRACE: Duration = Duration::from_secs(1);

// ---- Admin -----------------------------------------------------------------------------------

/// Deadline of the admin listing and the metrics aggregation (PROTOCOL.md §8.5).
pub const LIST_DEADLINE: Duration = Duration::from_secs(30);

/// Sessions `GET {P}/sessions` returns at most (PROTOCOL.md §4.1).
pub const USER_SESSIONS_LIMIT: usize = 100;

// ---- Alerts ----------------------------------------------------------------------------------

/// Budget of one SMTP command (connect, EHLO, AUTH, DATA …).
pub const SMTP_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// Budget of one whole SMTP delivery.
pub const SMTP_SEND_BUDGET: Duration = Duration::from_secs(30);

/// Budget of one webhook call (connect, send, response headers).
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);

/// Budget of one SMS API call (connect, send, response).
pub const SMS_TIMEOUT: Duration = Duration::from_secs(10);

/// Retries of one SMS to one phone on 429 / 5xx / transport errors: 3 attempts, 1 s, ×2, 10 s
/// cap — an alert is worth a few seconds, not minutes.
pub const SMS_RETRY: RetryPolicy = RetryPolicy {
    max_attempts: 3,
    initial_delay: Duration::from_secs(1),
    multiplier: 2.0,
    max_delay: Duration::from_secs(10),
    jitter: Jitter::None,
};

/// The longest `Retry-After` an SMS retry waits for; a longer hint gives up instead.
pub const SMS_RETRY_AFTER_CAP: Duration = Duration::from_secs(30);

// ---- Process ---------------------------------------------------------------------------------

/// After the drain plan exits, how long the runtime waits for tasks that are still running
/// (e.g. a stuck store call) before abandoning them.
pub const RUNTIME_SHUTDOWN_GRACE: Duration = Duration::from_millis(500);

/// At shutdown, how long the trace exporter may take to send the spans still queued (issue 17);
/// past it they are dropped and the process exits anyway.
pub const TRACE_FLUSH_BUDGET: Duration = Duration::from_secs(3);

/// How long a day's fleet-wide token count of one user lives in Redis (`USER_TOKEN_BUDGET` with
/// `REDIS_URL`, issue 17): two days, so a count outlives its UTC day and then goes by itself.
pub const FLEET_TOKEN_COUNT_TTL: Duration = Duration::from_secs(2 * 24 * 60 * 60);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_writer_waits_only_after_a_commit_with_company() {
        let configured = Duration::from_millis(1);
        assert_eq!(store_commit_linger(0, configured), Duration::ZERO);
        assert_eq!(store_commit_linger(1, configured), Duration::ZERO);
        assert_eq!(store_commit_linger(2, configured), configured);
        assert_eq!(store_commit_linger(STORE_WRITE_BATCH, configured), configured);
        assert_eq!(store_commit_linger(STORE_WRITE_BATCH, Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_turn_is_renewed_before_it_expires_and_waited_for_past_a_whole_reply() {
        assert!(FLEET_TURN_RENEW * 3 <= FLEET_TURN_TTL, "three renewals per lifetime");
        let stream = Duration::from_secs(120);
        assert_eq!(fleet_turn_wait(stream), stream + FLEET_TURN_TTL);
        assert_eq!(fleet_turn_wait(Duration::MAX), Duration::MAX, "saturates");
        let poll = crate::retry::RetryPolicy::FLEET_TURN_POLL;
        let pauses: Vec<u64> = (1..=6).map(|n| poll.base_delay(n).as_millis() as u64).collect();
        assert_eq!(pauses, [5, 10, 20, 40, 50, 50]);
    }
}
