//! # chatbox-core — the decisions
//!
//! Every rule of chatbox that involves time or a limit, as sans-IO state machines. Nothing here
//! performs IO, reads a clock, spawns a task or draws randomness on its own: time comes in as
//! [`time::Instant`] arguments, randomness as seeds, and effects go out as returned values.
//! The server (`shell/`) drives these machines; the simulator (`sim/`), the proptests and the fuzz
//! targets drive the very same code with moved time.
//!
//! Map:
//! - [`time`] — the `Instant` and `UnixMillis` value types every machine takes.
//! - [`session`] — `SessionTable`: create, bind, resume within the reconnect window, end, expire,
//!   one active session per user, ownership, takeover state, naming (PROTOCOL.md §6).
//! - [`response_times`] — bounded ring of response times (seed properties 12, 13), of
//!   [`response_times::DEFAULT_CAPACITY`].
//! - [`replay`] — the replay log of resumable replies: bounded, expiring, exact after a seq (issue 14);
//!   its bounds [`replay::ReplayLimits::DEFAULT`] from [`budgets::RESUME_WINDOW`],
//!   [`budgets::REPLAY_FRAMES_PER_REPLY`] and [`budgets::REPLAY_FRAMES_TOTAL`].
//! - [`rate`] — the keyed sliding-window limiter and per-user connection slots (PROTOCOL.md §5);
//!   the default limits [`rate::RateLimit::USER_MESSAGES`], [`rate::RateLimit::ADMIN_DEFAULT`],
//!   [`rate::RateLimit::PUBLIC`], [`rate::RateLimit::HELP_ALERTS`], [`rate::DEFAULT_MAX_KEYS`],
//!   [`rate::DEFAULT_CONNECTIONS_PER_KEY`]; a window's buckets [`rate::DEFAULT_BUCKETS`]
//!   (at most [`rate::MAX_BUCKETS`]).
//! - [`timer`] — a periodic schedule (cleanup and sweep ticks) that can be stopped.
//! - [`retry`] — backoff schedule and transient/permanent classification (seed fix #9); the
//!   store's default schedule [`retry::RetryPolicy::STORE_DEFAULT`] and the provider schedule
//!   [`retry::RetryPolicy::PROVIDER`] (1 s, ×2, cap 30 s; PROTOCOL.md §7.2), and the fleet bus's
//!   reconnect schedule [`retry::RetryPolicy::BUS_RECONNECT`].
//! - [`breaker`] — the circuit breaker: closed / open / half-open; the store's (issue 16: after
//!   [`breaker::STORE_BREAKER_FAILURES`] failures, probing every [`breaker::STORE_BREAKER_OPEN_FOR`])
//!   and each LLM provider's ([`breaker::BreakerLimits::PROVIDER`]: after
//!   [`breaker::PROVIDER_BREAKER_FAILURES`], open for [`breaker::PROVIDER_BREAKER_OPEN_FOR`];
//!   issue 17).
//! - [`fallback`] — provider fallback chains, their validation (unknown ids, cycles) and the
//!   walk down a chain past open breakers (issue 17).
//! - [`usage`] — token usage of a reply (reported, else bytes ÷
//!   [`usage::ESTIMATE_BYTES_PER_TOKEN`]) and the per-user daily token budget
//!   `USER_TOKEN_BUDGET` (issue 17).
//! - [`stream`] — an LLM reply's three deadlines and its single outcome (seed fix #8); defaults
//!   [`stream::StreamDeadlines::DEFAULT`].
//! - [`keepalive`] — a WebSocket connection's ping period, pong wait and write wait
//!   (`Keepalive`, defaults [`keepalive::KeepaliveTimings::DEFAULT`]; PROTOCOL.md §3.3).
//! - [`budgets`] — the fixed budgets and limits that are not settings, by name:
//!   [`budgets::KICK_CLOSE_BUDGET`], [`budgets::HEADER_READ_TIMEOUT`],
//!   [`budgets::ACCEPT_RETRY_PAUSE`], [`budgets::CORS_MAX_AGE`], [`budgets::VOICE_BUDGET`],
//!   [`budgets::CUT_GRACE`], the history budgets [`budgets::HISTORY_MAX_MESSAGES`] and
//!   [`budgets::HISTORY_MAX_BYTES`], the history fallback's per-session cache
//!   [`budgets::HISTORY_CACHE_MESSAGES`] and [`budgets::HISTORY_CACHE_BYTES`],
//!   [`budgets::SESSION_RESOLVE_ATTEMPTS`], the provider client's [`budgets::PROVIDER_CONNECT_TIMEOUT`],
//!   [`budgets::PROVIDER_HEADER_TIMEOUT`], [`budgets::PROVIDER_POOL_IDLE_TIMEOUT`],
//!   [`budgets::PROVIDER_ERROR_BODY_BYTES`], [`budgets::SSE_MAX_LINE_BYTES`],
//!   [`budgets::SSE_MAX_EVENT_BYTES`], [`budgets::ANTHROPIC_MAX_TOKENS`],
//!   [`budgets::PROVIDER_RETRY_AFTER_BYTES`], the `echo` provider's [`budgets::ECHO_CHUNK_PAUSE`]
//!   and [`budgets::ECHO_CHUNKS`], the uploads' [`budgets::UPLOAD_PARTS_IN_FLIGHT`] and [`budgets::FILE_URL_LOOKUP_TIMEOUT`], the store's
//!   [`budgets::STORE_PING_BUDGET`], [`budgets::STORE_PREPARE_MIN_DELAY`],
//!   [`budgets::MONGO_INDEX_BUDGET`], [`budgets::SESSION_CREATE_ATTEMPTS`],
//!   [`budgets::STORE_WRITE_BATCH`], the rule [`budgets::store_commit_linger`],
//!   [`budgets::EMBEDDED_CACHE_BYTES`], the fleet bus's
//!   [`budgets::BUS_MESSAGE_MAX_BYTES`], [`budgets::BUS_PUBLISH_QUEUE`], [`budgets::BUS_PIPELINE_MAX`],
//!   [`budgets::BUS_COMMAND_TIMEOUT`] and [`budgets::BUS_HEARTBEAT`], the signals' queue
//!   [`budgets::SIGNAL_QUEUE`], the resumes' [`budgets::REPLAY_STREAM_MAXLEN`],
//!   [`budgets::REPLY_ALIVE_GRACE`], [`budgets::RESUME_WATCH_INTERVAL`] and
//!   [`budgets::RESUME_HOLD_FRAMES`], the fleet-wide limits' [`budgets::FLEET_LIMIT_TIMEOUT`],
//!   [`budgets::FLEET_LIMIT_RETRY_PAUSE`], [`budgets::CONNECTION_LEASE_HEARTBEAT`], [`budgets::CONNECTION_LEASE_RENEWALS_IN_FLIGHT`] and
//!   [`budgets::CONNECTION_LEASE_TTL`], the admin event stream's
//!   [`budgets::ADMIN_EVENTS_KEEPALIVE`], the admin routes'
//!   [`budgets::LIST_DEADLINE`] and [`budgets::USER_SESSIONS_LIMIT`], the alert channels'
//!   [`budgets::SMTP_COMMAND_TIMEOUT`], [`budgets::SMTP_SEND_BUDGET`],
//!   [`budgets::WEBHOOK_TIMEOUT`], [`budgets::SMS_TIMEOUT`], [`budgets::SMS_RETRY`],
//!   [`budgets::SMS_RETRY_AFTER_CAP`], and [`budgets::RUNTIME_SHUTDOWN_GRACE`].
//! - [`godur`] — Go-style duration text (`2m0s`), parsed and formatted.
//! - [`config`] — the configuration model, loading from env/TOML, and `validate()` (PROTOCOL.md §9);
//!   its defaults refer to the constants above, so each default is written once; the store's own
//!   defaults [`config::MONGO_CONNECT_TIMEOUT_DEFAULT`],
//!   [`config::MONGO_SERVER_SELECTION_TIMEOUT_DEFAULT`] and
//!   [`config::HISTORY_READ_TIMEOUT_DEFAULT`] live there, with the secrets' sizes
//!   [`config::MIN_JWT_SECRET_BYTES`] and [`config::ENCRYPTION_KEY_BYTES`].
//! - [`origin`] — the allowed-origin policy (PROTOCOL.md §3.1).
//! - [`shutdown`] — the drain plan (seed fix #15).
//! - [`protocol`] — frames, HTTP bodies, the inbound pipeline and the error catalogue (§3–§5),
//!   with their size limits ([`protocol::InboundLimits::DEFAULT`],
//!   [`protocol::frame::ADMIN_NAME_CONTENT_MAX_BYTES`], the admin query's
//!   [`protocol::query::AdminSessionQuery::DEFAULT_LIMIT`], `MAX_LIMIT`, `MAX_USER_ID_BYTES` and
//!   window bounds); [`session`] names its session-name limits
//!   ([`session::naming::MAX_NAME_BYTES`], [`session::naming::CUT_NAME_BYTES`]).
//! - [`shared`] — the few thread-safe wrappers the server shares between tasks (loom-checked).
//! - [`sync`] — `std::sync` normally, `loom::sync` under `--cfg loom`.
//! - [`turn`] — a user's fleet-wide turn, the model of the Redis turn scripts ([`turn::TurnBook`]).
//! - [`upload`] — upload rules: name checks ([`upload::MAX_NAME_BYTES`]), type sniffed from the
//!   first [`upload::SNIFF_BYTES`], the defaults [`upload::MAX_UPLOAD_SIZE_DEFAULT`],
//!   [`upload::UPLOAD_RATE_DEFAULT`] and [`upload::FILE_URL_TTL_DEFAULT`], the signed `file_url`
//!   (issue 17 item 5).

pub mod breaker;
pub mod budgets;
pub mod config;
pub mod fallback;
pub mod godur;
pub mod keepalive;
pub mod origin;
pub mod protocol;
pub mod rate;
pub mod replay;
pub mod response_times;
pub mod retry;
pub mod session;
pub mod shared;
pub mod shutdown;
pub mod stream;
pub mod sync;
pub mod time;
pub mod timer;
pub mod turn;
pub mod upload;
pub mod usage;

pub use time::{Instant, UnixMillis};
