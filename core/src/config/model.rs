//! The typed configuration: what the server runs with once loading and validation succeed.
//!
//! Plain data with public fields, grouped by concern. Values are already parsed (durations are
//! `Duration`, networks are `IpNet`) but not necessarily valid: [`Config::validate`] states the
//! rules. Secrets are [`Secret`]s, so `Debug` of a `Config` is safe to log.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;
use std::time::Duration;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};

use super::secret::{Origin, Secret};
use crate::budgets::{HISTORY_MAX_BYTES, HISTORY_MAX_MESSAGES};
use crate::keepalive::KeepaliveTimings;
use crate::rate::{DEFAULT_CONNECTIONS_PER_KEY, DEFAULT_MAX_KEYS};
use crate::retry::RetryPolicy;
use crate::stream::StreamDeadlines;

/// The whole configuration (PROTOCOL.md §9 plus the rebuild's settings of §10).
///
/// Build it with [`super::load`] (env + file, validated), [`Config::with_defaults`] (defaults
/// plus the two settings that have none) or [`Config::for_dev`].
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Listen address, route prefix, shutdown budget.
    pub server: ServerConfig,
    /// JWT checking.
    pub auth: AuthConfig,
    /// WebSocket limits, keepalive timings and allowed origins.
    pub websocket: WebSocketConfig,
    /// CORS, proxies, network allow-lists, framing, metrics switch.
    pub http: HttpConfig,
    /// Rate limiters.
    pub rate: RateConfig,
    /// Session lifetime rules.
    pub sessions: SessionConfig,
    /// Providers, reply deadlines, history budget.
    pub llm: LlmConfig,
    /// Session store, local outbox, content encryption.
    pub storage: StorageConfig,
    /// Help-request alert recipients and channels.
    pub alerts: AlertConfig,
    /// Logging.
    pub log: LogConfig,
    /// Uploads: limits and storage (issue 17 item 5).
    pub uploads: super::UploadConfig,
    /// OpenTelemetry trace export and span contents (issue 17 item 3).
    pub telemetry: super::TelemetryConfig,
}

/// Where and how the server listens.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Bind host (`SERVER_HOST`), default `0.0.0.0`.
    pub host: String,
    /// Bind port (`SERVER_PORT`), default 8080; 0 lets the OS choose.
    pub port: u16,
    /// Route prefix (`CHATBOX_PATH_PREFIX`), default `/chatbox`; no trailing slash unless it is `/`.
    pub path_prefix: String,
    /// Graceful shutdown budget (`SHUTDOWN_TIMEOUT`), default 30 s.
    pub shutdown_timeout: Duration,
}

/// JWT checking (§2, §10 items 17, 18).
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// HMAC key (`JWT_SECRET`); required, at least 32 bytes, not weak.
    pub jwt_secret: Secret,
    /// Refuse tokens without `exp` (`JWT_REQUIRE_EXP`), default false.
    pub require_exp: bool,
    /// Refuse `?token=` on the WebSocket route (`JWT_DISABLE_QUERY_TOKEN`), default false.
    pub disable_query_token: bool,
}

/// WebSocket connection settings (§3.1–§3.3).
#[derive(Debug, Clone, PartialEq)]
pub struct WebSocketConfig {
    /// Exact `Origin` values accepted (`WS_ALLOWED_ORIGINS`); empty accepts every origin.
    pub allowed_origins: Vec<String>,
    /// Largest inbound message in bytes (`MAX_MESSAGE_SIZE`), default 1 MiB; `None` = no limit.
    pub max_message_size: Option<usize>,
    /// Simultaneous connections per user per process (`MAX_CONNECTIONS`), default 10.
    pub max_connections_per_user: u32,
    /// Messages processed concurrently per connection (`WS_MAX_IN_FLIGHT`), default 3.
    pub max_in_flight: u32,
    /// Server ping period (`WS_PING_INTERVAL`), default 54 s; less than `pong_wait`.
    pub ping_interval: Duration,
    /// Read deadline, extended by each pong (`WS_PONG_WAIT`), default 60 s.
    pub pong_wait: Duration,
    /// Budget for one write (`WS_WRITE_WAIT`), default 10 s.
    pub write_wait: Duration,
    /// Outbound frames queued per connection (`WS_SEND_QUEUE`), default 256.
    pub send_queue: usize,
    /// Socket read buffer in bytes (`WS_READ_BUFFER_SIZE`), default 1024.
    pub read_buffer_size: usize,
    /// Socket write buffer in bytes (`WS_WRITE_BUFFER_SIZE`), default 1024.
    pub write_buffer_size: usize,
}

/// The HTTP surface (§1, §4.11, §10 item 28).
#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// CORS origins (`CORS_ALLOWED_ORIGINS`); empty = no CORS handling at all.
    pub cors_allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` are believed (`TRUSTED_PROXIES`).
    pub trusted_proxies: Vec<IpNet>,
    /// Clients allowed to read `/metrics/prometheus` (`METRICS_ALLOWED_NETWORKS`); empty = all.
    pub metrics_allowed_networks: Vec<IpNet>,
    /// Clients whose `/healthz` and `/readyz` calls skip the public limit
    /// (`HEALTH_PROBE_NETWORKS`); default: the trusted proxies plus loopback.
    pub health_probe_networks: Vec<IpNet>,
    /// CSP `frame-ancestors` sources (`FRAME_ANCESTORS`); empty = `X-Frame-Options: DENY`.
    pub frame_ancestors: Vec<String>,
    /// Serve `/metrics/prometheus` (`ENABLE_METRICS`), default true.
    pub enable_metrics: bool,
}

pub use crate::rate::RateLimit;

/// Rate limiters (§5, §6.7).
#[derive(Debug, Clone, PartialEq)]
pub struct RateConfig {
    /// `user_message` frames per user (`RATE_LIMIT` / `RATE_LIMIT_WINDOW`), default 100 per 1 m.
    pub messages: RateLimit,
    /// Admin routes per admin (`ADMIN_RATE_LIMIT` / `ADMIN_RATE_WINDOW`), default 20 per 1 m.
    pub admin: RateLimit,
    /// Public routes per client IP (`PUBLIC_RATE_LIMIT` / `PUBLIC_RATE_WINDOW`), default 60 per 1 m.
    pub public: RateLimit,
    /// Help alerts per session (`HELP_ALERT_LIMIT` / `HELP_ALERT_WINDOW`), default 5 per 5 m.
    pub help_alerts: RateLimit,
    /// Keys each limiter tracks at most (`RATE_LIMIT_MAX_KEYS`), default 100 000.
    pub max_keys: usize,
    /// How often idle keys are swept (`RATE_LIMIT_CLEANUP_INTERVAL`), default 5 m.
    pub cleanup_interval: Duration,
}

/// Session lifetime (§6, §10 items 4, 22, 23).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionConfig {
    /// A session ended or disconnected less than this ago is resumed by its owner
    /// (`RECONNECT_TIMEOUT`), default 15 m.
    pub reconnect_timeout: Duration,
    /// How long an ended session stays in memory (`SESSION_TTL`), default 15 m; at least
    /// `reconnect_timeout`.
    pub ttl: Duration,
    /// An active session with no connection and no activity for this long is ended
    /// (`SESSION_IDLE_TIMEOUT`), default 1 h.
    pub idle_timeout: Duration,
    /// Sweep period (`SESSION_CLEANUP_INTERVAL`), default 5 m.
    pub cleanup_interval: Duration,
}

/// LLM providers and reply deadlines (§7, §10 items 1, 2, 14, 15, 21).
#[derive(Debug, Clone, PartialEq)]
pub struct LlmConfig {
    /// Providers in configuration order; the first is the default model.
    pub providers: Vec<ProviderConfig>,
    /// Budget for a whole reply, retries included (`LLM_STREAM_TIMEOUT`), default 2 m.
    pub stream_timeout: Duration,
    /// Budget until the first chunk (`LLM_FIRST_CHUNK_TIMEOUT`), default 30 s or
    /// `stream_timeout` if smaller ([`LlmConfig::unset_deadline`]).
    pub first_chunk_timeout: Duration,
    /// Longest silence between chunks (`LLM_IDLE_TIMEOUT`), default 60 s or `stream_timeout` if
    /// smaller ([`LlmConfig::unset_deadline`]).
    pub idle_timeout: Duration,
    /// Most conversation messages sent to the provider (`LLM_HISTORY_MAX_MESSAGES`), default 50.
    pub history_max_messages: usize,
    /// Most bytes of conversation sent to the provider (`LLM_HISTORY_MAX_BYTES`), default 32 KiB.
    pub history_max_bytes: usize,
    /// No AI replies while an admin assists the session (`PAUSE_AI_WHEN_ASSISTED`), default true.
    pub pause_ai_when_assisted: bool,
    /// How long a reply stays resumable after it ended (`RESUME_WINDOW`), default
    /// [`crate::budgets::RESUME_WINDOW`] (5 m).
    pub resume_window: Duration,
    /// Tokens one user may use per UTC day (`USER_TOKEN_BUDGET`; issue 17), 0 = no budget (the
    /// default). See [`crate::usage::DailyTokenBudget`].
    pub user_token_budget: u64,
}

impl LlmConfig {
    /// The value of a per-chunk deadline the operator did not set: its `default`, capped at the
    /// whole reply's `stream_timeout` (issue 16). The original had `LLM_STREAM_TIMEOUT` as its
    /// only deadline, so a configuration that sets just that one (say `3s`) must still start,
    /// and the unset deadlines must not outlast it; only values the operator set can contradict.
    pub fn unset_deadline(default: Duration, stream_timeout: Duration) -> Duration {
        default.min(stream_timeout)
    }

    /// The default model: the first configured provider (§10 item 14).
    pub fn default_provider(&self) -> Option<&ProviderConfig> {
        self.providers.first()
    }

    /// The provider whose client-visible id is `id`.
    pub fn provider(&self, id: &str) -> Option<&ProviderConfig> {
        self.providers.iter().find(|p| p.id == id)
    }
}

/// One LLM provider (§7.1). From `[[llm.providers]]` and/or `LLM_PROVIDER_<n>_*`.
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    /// Client-visible model id (`id`).
    pub id: String,
    /// Label shown to clients (`name`).
    pub name: String,
    /// Which API it speaks (`type`).
    pub kind: ProviderKind,
    /// Base URL (`endpoint`); empty for `echo`.
    pub endpoint: String,
    /// API key (`apiKey`); empty for `echo`.
    pub api_key: Secret,
    /// Upstream model name (`model`); may be empty.
    pub model: String,
    /// Provider ids tried, in order, when this one fails before its first chunk (`fallback`,
    /// `LLM_PROVIDER_<n>_FALLBACK`; issue 17); usually empty.
    pub fallback: Vec<String>,
    /// Whether the model takes images (`vision`, `LLM_PROVIDER_<n>_VISION`; issue 17 item 5):
    /// the images a user uploads are then sent to it as image parts. `openai` and `anthropic`
    /// only.
    pub vision: bool,
}

impl ProviderConfig {
    /// The built-in demo provider (`type = "echo"`): needs no endpoint or key.
    pub fn echo(id: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: name.into(),
            kind: ProviderKind::Echo,
            endpoint: String::new(),
            api_key: Secret::default(),
            model: String::new(),
            fallback: Vec::new(),
            vision: false,
        }
    }
}

/// The provider APIs chatbox speaks (§7.3–§7.5) plus the built-in `echo` demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// OpenAI-compatible chat completions (`openai`).
    OpenAi,
    /// Anthropic messages (`anthropic`).
    Anthropic,
    /// Dify chat app (`dify`).
    Dify,
    /// Built-in demo that echoes the user (`echo`); runs everywhere, needs no network.
    Echo,
}

impl ProviderKind {
    /// Every kind, in documentation order.
    pub const ALL: [ProviderKind; 4] = [Self::OpenAi, Self::Anthropic, Self::Dify, Self::Echo];

    /// The configuration spelling, also the Prometheus `provider` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Dify => "dify",
            Self::Echo => "echo",
        }
    }

    /// Reads the configuration spelling (trimmed, case-insensitive).
    pub fn from_name(name: &str) -> Option<Self> {
        let name = name.trim();
        Self::ALL.into_iter().find(|kind| kind.as_str().eq_ignore_ascii_case(name))
    }

    /// Whether `endpoint` and `apiKey` are required.
    pub fn needs_endpoint(self) -> bool {
        self != Self::Echo
    }
}

impl fmt::Display for ProviderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Session storage, the durable outbox and content encryption (§8).
#[derive(Debug, Clone, PartialEq)]
pub struct StorageConfig {
    /// Which store.
    pub backend: StoreConfig,
    /// Retry of transient store failures (`MONGO_RETRY_*`).
    pub retry: StoreRetry,
    /// Directory of the embedded store and the outbox (`DATA_DIR`), default `data`.
    pub data_dir: PathBuf,
    /// Entries the outbox holds at most (`OUTBOX_MAX_ENTRIES`), default 100 000.
    pub outbox_max_entries: usize,
    /// AES-256 key for message content (`ENCRYPTION_KEY`): 32 bytes, or empty = off.
    pub encryption_key: Secret,
    /// Budget of the history read before a model call (`STORE_HISTORY_READ_TIMEOUT`), default
    /// [`HISTORY_READ_TIMEOUT_DEFAULT`].
    pub history_read_timeout: Duration,
    /// Budget of one MongoDB call by id — a write that acknowledges a message, a load, a history
    /// read — before it counts as failed (`STORE_CALL_TIMEOUT`), default
    /// [`STORE_CALL_TIMEOUT_DEFAULT`]: a database that hangs instead of refusing (a network
    /// partition, a frozen server) then sends writes to the outbox and opens the breaker.
    pub call_timeout: Duration,
    /// How long the embedded store's writer holds a batch open for more writes when writes are
    /// arriving together (`STORE_COMMIT_LINGER`), default [`STORE_COMMIT_LINGER_DEFAULT`], at
    /// most [`STORE_COMMIT_LINGER_MAX`]; `0s` commits every batch at once.
    pub commit_linger: Duration,
    /// The fleet's Redis (`REDIS_URL`, `redis://` or `rediss://`; may hold credentials), or empty
    /// for one instance with the in-process bus.
    pub redis_url: Secret,
}

impl StorageConfig {
    /// The Redis URL with any `user:password@` replaced by `<credentials>@`, for logs.
    pub fn redis_url_for_logs(&self) -> String {
        redact_uri_credentials(self.redis_url.expose())
    }

    /// Whether a fleet bus is configured (`REDIS_URL` set).
    pub fn has_redis(&self) -> bool {
        !self.redis_url.expose().trim().is_empty()
    }
}

/// The session store: MongoDB when `MONGO_URI` is set, else the embedded store in `data_dir`.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreConfig {
    /// MongoDB.
    Mongo(MongoConfig),
    /// The embedded store under [`StorageConfig::data_dir`].
    Embedded,
}

impl StoreConfig {
    /// The store's name in `/readyz` and logs: `mongodb` or `embedded`.
    pub fn backend_name(&self) -> &'static str {
        match self {
            StoreConfig::Mongo(_) => "mongodb",
            StoreConfig::Embedded => "embedded",
        }
    }
}

/// MongoDB connection (§8, §10 item 16).
#[derive(Debug, Clone, PartialEq)]
pub struct MongoConfig {
    /// `mongodb://` or `mongodb+srv://` URI (`MONGO_URI`); may hold credentials.
    pub uri: Secret,
    /// Database (`MONGO_DATABASE`), default `chat`.
    pub database: String,
    /// Collection (`MONGO_COLLECTION`), default `sessions`.
    pub collection: String,
    /// TCP/TLS connect budget of one connection (`MONGO_CONNECT_TIMEOUT`), default
    /// [`MONGO_CONNECT_TIMEOUT_DEFAULT`].
    pub connect_timeout: Duration,
    /// How long one operation waits for a usable server (`MONGO_SERVER_SELECTION_TIMEOUT`),
    /// default [`MONGO_SERVER_SELECTION_TIMEOUT_DEFAULT`]. The driver's own 30 s made every
    /// reply wait half a minute during an outage (issue 16).
    pub server_selection_timeout: Duration,
}

/// Default MongoDB connect budget: short, so an unreachable server is noticed quickly.
pub const MONGO_CONNECT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(3);

/// Default MongoDB server-selection budget: short, so no store call on the reply path waits
/// long for a server that is down (issue 16).
pub const MONGO_SERVER_SELECTION_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Default budget of the history read before a model call (issue 16: at most 1 s); past it
/// the reply goes on with what the instance has.
pub const HISTORY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(1);

/// Default budget of one MongoDB call by id (issue 16). The driver has no per-operation socket
/// timeout, so a server that stops answering without closing its connections would hold a
/// message's acknowledgement for as long as it hangs; past this the call fails transiently (the
/// write goes to the outbox; every store write is idempotent, so one that lands late is
/// harmless). Listings and aggregations keep their own, longer deadline.
pub const STORE_CALL_TIMEOUT_DEFAULT: Duration = Duration::from_secs(2);

/// Default wait of the embedded store's writer for company under load (issue 18): none. Every
/// commit costs its page writes and its fsync whatever its size, and at 1 000 msg/s a 1 ms wait
/// cut the server's CPU per reply by about 10 %, but it put about 1 ms on every
/// acknowledgement and on the first token, and gained nothing at 500 msg/s (BENCHMARKS.md,
/// "1e"), so it is an operator's choice. It applies only after a commit that carried several
/// writes ([`crate::budgets::store_commit_linger`]).
pub const STORE_COMMIT_LINGER_DEFAULT: Duration = Duration::ZERO;

/// Longest `STORE_COMMIT_LINGER` accepted: past a few milliseconds the wait costs more latency
/// than the commits it saves are worth.
pub const STORE_COMMIT_LINGER_MAX: Duration = Duration::from_millis(100);

impl MongoConfig {
    /// The URI with any `user:password@` replaced by `<credentials>@`, for logs.
    pub fn uri_for_logs(&self) -> String {
        redact_uri_credentials(self.uri.expose())
    }

    /// Whether the URI carries credentials (`user@` or `user:password@`).
    pub fn has_credentials(&self) -> bool {
        uri_authority(self.uri.expose()).is_some_and(|(_, authority, _)| authority.contains('@'))
    }
}

/// Splits `scheme://authority/rest` into its three parts (scheme includes `://`).
fn uri_authority(uri: &str) -> Option<(&str, &str, &str)> {
    let start = uri.find("://")? + 3;
    let (scheme, after) = uri.split_at(start);
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    Some((scheme, authority, rest))
}

fn redact_uri_credentials(uri: &str) -> String {
    match uri_authority(uri) {
        Some((scheme, authority, rest)) => match authority.rfind('@') {
            Some(at) => format!("{scheme}<credentials>{}{rest}", &authority[at..]),
            None => uri.to_string(),
        },
        None => uri.to_string(),
    }
}

/// Retry of transient store failures (§8.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRetry {
    /// Attempts in total, at least 1 (`MONGO_RETRY_ATTEMPTS`), default 3.
    pub attempts: u32,
    /// First wait (`MONGO_RETRY_DELAY`), default 100 ms; doubles each time.
    pub delay: Duration,
    /// Cap on a wait (`MONGO_RETRY_MAX_DELAY`), default 2 s; at least `delay`.
    pub max_delay: Duration,
}

/// Help-request alerts (§6.7, §10 item 30); the default has no recipient and no channel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct AlertConfig {
    /// Email recipients (`ADMIN_EMAILS`, file `notification.adminEmails` or `mail.adminEmail`).
    pub admin_emails: Vec<String>,
    /// SMS recipients (`ADMIN_PHONES`).
    pub admin_phones: Vec<String>,
    /// Base of the session link in alert emails (`ADMIN_PANEL_URL`).
    pub admin_panel_url: Option<String>,
    /// An http(s) URL that receives alerts as JSON (`ALERT_WEBHOOK_URL`).
    pub webhook_url: Option<String>,
    /// SMTP delivery, present when `SMTP_HOST` is set.
    pub smtp: Option<SmtpConfig>,
    /// SMS delivery through a Twilio-compatible API, present when any of `SMS_ACCOUNT_SID`,
    /// `SMS_AUTH_TOKEN`, `SMS_FROM_NUMBER` is set (validation then requires all of them and
    /// `ADMIN_PHONES`).
    pub sms: Option<SmsConfig>,
}

/// SMTP delivery of alert emails.
#[derive(Debug, Clone, PartialEq)]
pub struct SmtpConfig {
    /// Server host (`SMTP_HOST`).
    pub host: String,
    /// Server port (`SMTP_PORT`), default 587.
    pub port: u16,
    /// Login (`SMTP_USERNAME`); empty = no authentication.
    pub username: String,
    /// Password (`SMTP_PASSWORD`).
    pub password: Secret,
    /// Sender address (`SMTP_FROM`); required.
    pub from: String,
    /// Transport security (`SMTP_TLS`), default STARTTLS.
    pub tls: SmtpTls,
}

/// SMTP transport security.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain text (`none`).
    None,
    /// Upgrade with STARTTLS (`starttls`).
    StartTls,
    /// TLS from the first byte (`tls`).
    Tls,
}

/// The default `SMS_API_BASE_URL`: Twilio's REST API.
pub const SMS_API_BASE_URL_DEFAULT: &str = "https://api.twilio.com";

/// SMS delivery of help alerts through a Twilio-compatible REST API (the original's path).
#[derive(Debug, Clone, PartialEq)]
pub struct SmsConfig {
    /// Account id (`SMS_ACCOUNT_SID`).
    pub account_sid: String,
    /// Auth token (`SMS_AUTH_TOKEN`).
    pub auth_token: Secret,
    /// Sender number (`SMS_FROM_NUMBER`, file `sms.fromNumber`).
    pub from_number: String,
    /// Base URL of the API (`SMS_API_BASE_URL`), default [`SMS_API_BASE_URL_DEFAULT`]; messages
    /// go to `{base}/2010-04-01/Accounts/{sid}/Messages.json`.
    pub api_base_url: String,
}

/// Logging.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// Level or filter directive (`LOG_LEVEL`), default `info`.
    pub level: String,
    /// Output format (`LOG_FORMAT`), default JSON.
    pub format: LogFormat,
    /// The original's log directory (`log.dir`), default `logs`; kept, unused.
    pub dir: String,
    /// The original's stdout switch (`log.standardOutput`), default true; kept, unused.
    pub standard_output: bool,
}

/// The levels a `LOG_LEVEL` directive may name (`tracing`'s, and the original's words).
const LOG_LEVELS: [(&str, &str); 9] = [
    ("trace", "trace"),
    ("debug", "debug"),
    ("info", "info"),
    ("warn", "warn"),
    ("warning", "warn"),
    ("error", "error"),
    ("fatal", "error"),
    ("panic", "error"),
    ("off", "off"),
];

impl LogConfig {
    /// `level` as a `tracing` filter: each comma-separated directive a level or
    /// `target=level`, the original's level words mapped (`warning` → `warn`, `fatal` and
    /// `panic` → `error`). `None` when a directive is neither (a typo such as `inf` would be
    /// read as a target name and silence every log line).
    pub fn filter(&self) -> Option<String> {
        let level = |word: &str| {
            let word = word.trim().to_ascii_lowercase();
            LOG_LEVELS.iter().find(|(name, _)| *name == word).map(|(_, level)| *level)
        };
        let mut directives = Vec::new();
        for directive in self.level.split(',') {
            let directive = match directive.split_once('=') {
                Some((target, word)) if !target.trim().is_empty() => {
                    format!("{}={}", target.trim(), level(word)?)
                }
                Some(_) => return None,
                None => level(directive)?.to_string(),
            };
            directives.push(directive);
        }
        Some(directives.join(","))
    }
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// One JSON object per line (`json`).
    Json,
    /// Human-readable text (`text`).
    Text,
}

/// `10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16` — the default trusted proxies (§1).
pub fn default_trusted_proxies() -> Vec<IpNet> {
    vec![
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(10, 0, 0, 0), 8)),
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(172, 16, 0, 0), 12)),
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(192, 168, 0, 0), 16)),
    ]
}

/// The private ranges plus `127.0.0.0/8` — the default metrics allow-list (§4.11).
pub fn default_metrics_networks() -> Vec<IpNet> {
    let mut nets = default_trusted_proxies();
    nets.push(IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)));
    nets
}

/// `trusted_proxies` plus `127.0.0.0/8` and `::1/128` — the default health-probe networks.
pub fn health_probe_networks_for(trusted_proxies: &[IpNet]) -> Vec<IpNet> {
    let mut nets = trusted_proxies.to_vec();
    for loopback in [
        IpNet::V4(Ipv4Net::new_assert(Ipv4Addr::new(127, 0, 0, 0), 8)),
        IpNet::V6(Ipv6Net::new_assert(Ipv6Addr::LOCALHOST, 128)),
    ] {
        if !nets.contains(&loopback) {
            nets.push(loopback);
        }
    }
    nets
}

impl Config {
    /// Every setting at its default, with the two settings that have none: the JWT secret and
    /// the providers. Not validated: call [`Config::validate`].
    pub fn with_defaults(jwt_secret: Secret, providers: Vec<ProviderConfig>) -> Self {
        let trusted_proxies = default_trusted_proxies();
        let health_probe_networks = health_probe_networks_for(&trusted_proxies);
        Self {
            server: ServerConfig {
                host: "0.0.0.0".into(),
                port: 8080,
                path_prefix: "/chatbox".into(),
                shutdown_timeout: Duration::from_secs(30),
            },
            auth: AuthConfig { jwt_secret, require_exp: false, disable_query_token: false },
            websocket: WebSocketConfig {
                allowed_origins: Vec::new(),
                max_message_size: Some(1_048_576),
                max_connections_per_user: DEFAULT_CONNECTIONS_PER_KEY,
                max_in_flight: 3,
                ping_interval: KeepaliveTimings::DEFAULT.ping_interval,
                pong_wait: KeepaliveTimings::DEFAULT.pong_wait,
                write_wait: KeepaliveTimings::DEFAULT.write_wait,
                send_queue: 256,
                read_buffer_size: 1024,
                write_buffer_size: 1024,
            },
            http: HttpConfig {
                cors_allowed_origins: Vec::new(),
                trusted_proxies,
                metrics_allowed_networks: default_metrics_networks(),
                health_probe_networks,
                frame_ancestors: Vec::new(),
                enable_metrics: true,
            },
            rate: RateConfig {
                messages: RateLimit::USER_MESSAGES,
                admin: RateLimit::ADMIN_DEFAULT,
                public: RateLimit::PUBLIC,
                help_alerts: RateLimit::HELP_ALERTS,
                max_keys: DEFAULT_MAX_KEYS,
                cleanup_interval: 5 * MINUTE,
            },
            sessions: SessionConfig {
                reconnect_timeout: 15 * MINUTE,
                ttl: 15 * MINUTE,
                idle_timeout: 60 * MINUTE,
                cleanup_interval: 5 * MINUTE,
            },
            llm: LlmConfig {
                providers,
                stream_timeout: StreamDeadlines::DEFAULT.total,
                first_chunk_timeout: StreamDeadlines::DEFAULT.first_chunk,
                idle_timeout: StreamDeadlines::DEFAULT.idle,
                history_max_messages: HISTORY_MAX_MESSAGES,
                history_max_bytes: HISTORY_MAX_BYTES,
                pause_ai_when_assisted: true,
                resume_window: crate::budgets::RESUME_WINDOW,
                user_token_budget: 0,
            },
            storage: StorageConfig {
                backend: StoreConfig::Embedded,
                retry: StoreRetry {
                    attempts: RetryPolicy::STORE_DEFAULT.max_attempts,
                    delay: RetryPolicy::STORE_DEFAULT.initial_delay,
                    max_delay: RetryPolicy::STORE_DEFAULT.max_delay,
                },
                data_dir: PathBuf::from("data"),
                outbox_max_entries: 100_000,
                encryption_key: Secret::default(),
                history_read_timeout: HISTORY_READ_TIMEOUT_DEFAULT,
                call_timeout: STORE_CALL_TIMEOUT_DEFAULT,
                commit_linger: STORE_COMMIT_LINGER_DEFAULT,
                redis_url: Secret::default(),
            },
            alerts: AlertConfig::default(),
            log: LogConfig {
                level: "info".into(),
                format: LogFormat::Json,
                dir: "logs".into(),
                standard_output: true,
            },
            uploads: super::UploadConfig::default(),
            telemetry: super::TelemetryConfig::default(),
        }
    }

    /// The server's `--dev` mode: defaults, the given secret, one `echo` provider (id `echo`),
    /// the embedded store in `data_dir`, listening on `127.0.0.1`, text logs. Valid whenever
    /// `jwt_secret` is strong.
    pub fn for_dev(jwt_secret: String, data_dir: impl Into<PathBuf>) -> Self {
        let mut config = Self::with_defaults(
            Secret::new(jwt_secret, Origin::Builtin),
            vec![ProviderConfig::echo("echo", "Echo (demo)")],
        );
        config.server.host = "127.0.0.1".into();
        config.storage.data_dir = data_dir.into();
        config.log.format = LogFormat::Text;
        config
    }
}

const MINUTE: Duration = Duration::from_secs(60);

#[cfg(test)]
mod tests {
    use super::*;

    const STRONG: &str = "q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne";

    #[test]
    fn dev_config_is_valid() {
        let config = Config::for_dev(STRONG.into(), "/tmp/x");
        assert_eq!(config.validate(), Ok(()));
        assert_eq!(config.llm.default_provider().map(|p| p.kind), Some(ProviderKind::Echo));
        assert_eq!(config.storage.data_dir, PathBuf::from("/tmp/x"));
    }

    #[test]
    fn debug_redacts_every_secret() {
        let mut config = Config::for_dev(STRONG.into(), "data");
        config.storage.encryption_key = Secret::new("K".repeat(32), Origin::Env);
        config.llm.providers.push(ProviderConfig {
            id: "gpt".into(),
            name: "GPT".into(),
            kind: ProviderKind::OpenAi,
            endpoint: "https://api.openai.com/v1".into(),
            api_key: Secret::new("sk-live-abcdef", Origin::File),
            model: "gpt-4o".into(),
            fallback: Vec::new(),
            vision: false,
        });
        config.alerts.smtp = Some(SmtpConfig {
            host: "smtp.mail.internal".into(),
            port: 587,
            username: "bot".into(),
            password: Secret::new("hunter2-smtp", Origin::Env),
            from: "bot@x.org".into(),
            tls: SmtpTls::StartTls,
        });
        config.alerts.sms = Some(SmsConfig {
            account_sid: "AC1".into(),
            auth_token: Secret::new("sms-token-xyz", Origin::Env),
            from_number: "+1555".into(),
            api_base_url: SMS_API_BASE_URL_DEFAULT.into(),
        });
        config.storage.backend = StoreConfig::Mongo(MongoConfig {
            uri: Secret::new("mongodb://u:dbpass-777@h/chat", Origin::Env),
            database: "chat".into(),
            collection: "sessions".into(),
            connect_timeout: Duration::from_secs(10),
            server_selection_timeout: Duration::from_secs(2),
        });
        let shown = format!("{config:?}");
        for secret in [STRONG, &"K".repeat(32), "sk-live-abcdef", "hunter2-smtp", "sms-token-xyz"] {
            assert!(!shown.contains(secret), "{secret} leaked");
        }
        assert!(!shown.contains("dbpass-777"));
        let alt = format!("{config:#?}");
        assert!(!alt.contains(STRONG) && !alt.contains("sk-live-abcdef"));
    }

    #[test]
    fn redis_url_credentials_are_redacted_for_logs() {
        let mut storage = Config::with_defaults(Secret::default(), Vec::new()).storage;
        assert!(!storage.has_redis());
        storage.redis_url = Secret::new("rediss://default:hunter2@cache:6380/2", Origin::Env);
        assert!(storage.has_redis());
        assert_eq!(storage.redis_url_for_logs(), "rediss://<credentials>@cache:6380/2");
    }

    #[test]
    fn mongo_uri_credentials_are_redacted_for_logs() {
        let mongo = |uri: &str| MongoConfig {
            uri: Secret::new(uri, Origin::Env),
            database: "chat".into(),
            collection: "sessions".into(),
            connect_timeout: Duration::from_secs(1),
            server_selection_timeout: Duration::from_secs(1),
        };
        let with = mongo("mongodb://user:p%40ss@db1:27017,db2:27017/chat?authSource=admin");
        assert_eq!(
            with.uri_for_logs(),
            "mongodb://<credentials>@db1:27017,db2:27017/chat?authSource=admin"
        );
        assert!(with.has_credentials());
        let without = mongo("mongodb+srv://cluster0.example.net/chat");
        assert_eq!(without.uri_for_logs(), "mongodb+srv://cluster0.example.net/chat");
        assert!(!without.has_credentials());
        assert!(!mongo("not a uri").has_credentials());
    }

    #[test]
    fn health_probes_default_to_proxies_plus_loopback() {
        let nets = health_probe_networks_for(&default_trusted_proxies());
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8", "::1/128"]
        );
    }

    #[test]
    fn provider_kinds_round_trip() {
        for kind in ProviderKind::ALL {
            assert_eq!(ProviderKind::from_name(kind.as_str()), Some(kind));
        }
        assert_eq!(ProviderKind::from_name(" OpenAI "), Some(ProviderKind::OpenAi));
        assert_eq!(ProviderKind::from_name("gemini"), None);
    }
}
