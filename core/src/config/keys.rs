//! The name of every setting: its environment variable and its key in the TOML file.
//!
//! One constant per setting, so a rule, an error message and the defaults table all refer to the
//! same pair of names (PROTOCOL.md §9, §10 item 16).

use std::fmt;

/// A setting's two names: the environment variable and the dotted key in the configuration file.
///
/// Displayed as `ENV_NAME / file.key`, the form every configuration error starts with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SettingName {
    /// Environment variable, e.g. `JWT_SECRET`.
    pub env: &'static str,
    /// Dotted key in the TOML file, e.g. `chatbox.jwt_secret`.
    pub file: &'static str,
}

impl fmt::Display for SettingName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} / {}", self.env, self.file)
    }
}

const fn name(env: &'static str, file: &'static str) -> SettingName {
    SettingName { env, file }
}

// Authentication (§2.4, §10 items 17, 18).
pub(crate) const JWT_SECRET: SettingName = name("JWT_SECRET", "chatbox.jwt_secret");
pub(crate) const JWT_REQUIRE_EXP: SettingName = name("JWT_REQUIRE_EXP", "chatbox.jwt_require_exp");
pub(crate) const JWT_DISABLE_QUERY_TOKEN: SettingName =
    name("JWT_DISABLE_QUERY_TOKEN", "chatbox.jwt_disable_query_token");

// Server (§1).
pub(crate) const SERVER_HOST: SettingName = name("SERVER_HOST", "server.host");
pub(crate) const SERVER_PORT: SettingName = name("SERVER_PORT", "server.port");
pub(crate) const PATH_PREFIX: SettingName = name("CHATBOX_PATH_PREFIX", "chatbox.path_prefix");
pub(crate) const SHUTDOWN_TIMEOUT: SettingName =
    name("SHUTDOWN_TIMEOUT", "chatbox.shutdown_timeout");

// WebSocket (§3.1–§3.3).
pub(crate) const ALLOWED_ORIGINS: SettingName =
    name("WS_ALLOWED_ORIGINS", "chatbox.allowed_origins");
pub(crate) const MAX_MESSAGE_SIZE: SettingName =
    name("MAX_MESSAGE_SIZE", "chatbox.max_message_size");
pub(crate) const MAX_CONNECTIONS: SettingName = name("MAX_CONNECTIONS", "chatbox.max_connections");
pub(crate) const WS_MAX_IN_FLIGHT: SettingName =
    name("WS_MAX_IN_FLIGHT", "chatbox.websocket.max_in_flight");
pub(crate) const WS_PING_INTERVAL: SettingName =
    name("WS_PING_INTERVAL", "chatbox.websocket.ping_interval");
pub(crate) const WS_PONG_WAIT: SettingName = name("WS_PONG_WAIT", "chatbox.websocket.pong_wait");
pub(crate) const WS_WRITE_WAIT: SettingName = name("WS_WRITE_WAIT", "chatbox.websocket.write_wait");
pub(crate) const WS_SEND_QUEUE: SettingName = name("WS_SEND_QUEUE", "chatbox.websocket.send_queue");
pub(crate) const WS_READ_BUFFER_SIZE: SettingName =
    name("WS_READ_BUFFER_SIZE", "chatbox.websocket.read_buffer_size");
pub(crate) const WS_WRITE_BUFFER_SIZE: SettingName =
    name("WS_WRITE_BUFFER_SIZE", "chatbox.websocket.write_buffer_size");

// HTTP surface (§1, §4.11, §10 item 28).
pub(crate) const CORS_ALLOWED_ORIGINS: SettingName =
    name("CORS_ALLOWED_ORIGINS", "chatbox.cors_allowed_origins");
pub(crate) const TRUSTED_PROXIES: SettingName = name("TRUSTED_PROXIES", "chatbox.trusted_proxies");
pub(crate) const METRICS_ALLOWED_NETWORKS: SettingName =
    name("METRICS_ALLOWED_NETWORKS", "chatbox.metrics_allowed_networks");
pub(crate) const HEALTH_PROBE_NETWORKS: SettingName =
    name("HEALTH_PROBE_NETWORKS", "chatbox.health_probe_networks");
pub(crate) const FRAME_ANCESTORS: SettingName = name("FRAME_ANCESTORS", "chatbox.frame_ancestors");
pub(crate) const ENABLE_METRICS: SettingName = name("ENABLE_METRICS", "chatbox.enable_metrics");

// Rate limits (§5, §6.7).
pub(crate) const RATE_LIMIT: SettingName = name("RATE_LIMIT", "chatbox.rate_limit");
pub(crate) const RATE_LIMIT_WINDOW: SettingName =
    name("RATE_LIMIT_WINDOW", "chatbox.rate_limit_window");
pub(crate) const ADMIN_RATE_LIMIT: SettingName =
    name("ADMIN_RATE_LIMIT", "chatbox.admin_rate_limit");
pub(crate) const ADMIN_RATE_WINDOW: SettingName =
    name("ADMIN_RATE_WINDOW", "chatbox.admin_rate_window");
pub(crate) const PUBLIC_RATE_LIMIT: SettingName =
    name("PUBLIC_RATE_LIMIT", "chatbox.public_rate_limit");
pub(crate) const PUBLIC_RATE_WINDOW: SettingName =
    name("PUBLIC_RATE_WINDOW", "chatbox.public_rate_window");
pub(crate) const HELP_ALERT_LIMIT: SettingName =
    name("HELP_ALERT_LIMIT", "notification.help_alert_limit");
pub(crate) const HELP_ALERT_WINDOW: SettingName =
    name("HELP_ALERT_WINDOW", "notification.help_alert_window");
pub(crate) const RATE_LIMIT_MAX_KEYS: SettingName =
    name("RATE_LIMIT_MAX_KEYS", "chatbox.rate_limit_max_keys");
pub(crate) const RATE_LIMIT_CLEANUP_INTERVAL: SettingName =
    name("RATE_LIMIT_CLEANUP_INTERVAL", "chatbox.rate_limit_cleanup_interval");

// Sessions (§6, §10 items 4, 23).
pub(crate) const RECONNECT_TIMEOUT: SettingName =
    name("RECONNECT_TIMEOUT", "chatbox.reconnect_timeout");
pub(crate) const SESSION_TTL: SettingName = name("SESSION_TTL", "chatbox.session_ttl");
pub(crate) const SESSION_IDLE_TIMEOUT: SettingName =
    name("SESSION_IDLE_TIMEOUT", "chatbox.session_idle_timeout");
pub(crate) const SESSION_CLEANUP_INTERVAL: SettingName =
    name("SESSION_CLEANUP_INTERVAL", "chatbox.session_cleanup_interval");

// LLM (§7, §10 items 1, 2, 21).
pub(crate) const LLM_STREAM_TIMEOUT: SettingName =
    name("LLM_STREAM_TIMEOUT", "chatbox.llm_stream_timeout");
pub(crate) const LLM_FIRST_CHUNK_TIMEOUT: SettingName =
    name("LLM_FIRST_CHUNK_TIMEOUT", "chatbox.llm_first_chunk_timeout");
pub(crate) const LLM_IDLE_TIMEOUT: SettingName =
    name("LLM_IDLE_TIMEOUT", "chatbox.llm_idle_timeout");
pub(crate) const LLM_HISTORY_MAX_MESSAGES: SettingName =
    name("LLM_HISTORY_MAX_MESSAGES", "chatbox.llm_history_max_messages");
pub(crate) const LLM_HISTORY_MAX_BYTES: SettingName =
    name("LLM_HISTORY_MAX_BYTES", "chatbox.llm_history_max_bytes");
pub(crate) const RESUME_WINDOW: SettingName = name("RESUME_WINDOW", "chatbox.resume_window");
/// The per-user daily token budget (issue 17).
pub(crate) const USER_TOKEN_BUDGET: SettingName =
    name("USER_TOKEN_BUDGET", "chatbox.user_token_budget");
pub(crate) const PAUSE_AI_WHEN_ASSISTED: SettingName =
    name("PAUSE_AI_WHEN_ASSISTED", "chatbox.pause_ai_when_assisted");

// Storage (§8).
/// The fleet's Redis (issue 14).
pub(crate) const REDIS_URL: SettingName = name("REDIS_URL", "chatbox.redis_url");
pub(crate) const ENCRYPTION_KEY: SettingName = name("ENCRYPTION_KEY", "chatbox.encryption_key");
pub(crate) const MONGO_URI: SettingName = name("MONGO_URI", "mongo.uri");
/// Older file locations of the MongoDB URI, tried in this order after `mongo.uri`: the
/// original connected through `dbs.chat.uri` and used `database.uri` only to warn (§9), so
/// with both set the former wins.
pub(crate) const MONGO_URI_FALLBACKS: [SettingName; 2] =
    [name("MONGO_URI", "dbs.chat.uri"), name("MONGO_URI", "database.uri")];
pub(crate) const MONGO_DATABASE: SettingName = name("MONGO_DATABASE", "mongo.database");
pub(crate) const MONGO_COLLECTION: SettingName = name("MONGO_COLLECTION", "mongo.collection");
pub(crate) const MONGO_CONNECT_TIMEOUT: SettingName =
    name("MONGO_CONNECT_TIMEOUT", "mongo.connect_timeout");
pub(crate) const MONGO_SERVER_SELECTION_TIMEOUT: SettingName =
    name("MONGO_SERVER_SELECTION_TIMEOUT", "mongo.server_selection_timeout");
pub(crate) const STORE_HISTORY_READ_TIMEOUT: SettingName =
    name("STORE_HISTORY_READ_TIMEOUT", "chatbox.store_history_read_timeout");
pub(crate) const STORE_CALL_TIMEOUT: SettingName =
    name("STORE_CALL_TIMEOUT", "chatbox.store_call_timeout");
pub(crate) const STORE_COMMIT_LINGER: SettingName =
    name("STORE_COMMIT_LINGER", "chatbox.store_commit_linger");
pub(crate) const MONGO_RETRY_ATTEMPTS: SettingName =
    name("MONGO_RETRY_ATTEMPTS", "mongo.retry_attempts");
pub(crate) const MONGO_RETRY_DELAY: SettingName = name("MONGO_RETRY_DELAY", "mongo.retry_delay");
pub(crate) const MONGO_RETRY_MAX_DELAY: SettingName =
    name("MONGO_RETRY_MAX_DELAY", "mongo.retry_max_delay");
pub(crate) const DATA_DIR: SettingName = name("DATA_DIR", "chatbox.data_dir");
pub(crate) const OUTBOX_MAX_ENTRIES: SettingName =
    name("OUTBOX_MAX_ENTRIES", "chatbox.outbox_max_entries");

// Alerts (§6.7, §10 item 30).
pub(crate) const ADMIN_EMAILS: SettingName = name("ADMIN_EMAILS", "notification.adminEmails");
/// The original's fallback location for alert recipients.
pub(crate) const ADMIN_EMAILS_FALLBACK: SettingName = name("ADMIN_EMAILS", "mail.adminEmail");
pub(crate) const ADMIN_PHONES: SettingName = name("ADMIN_PHONES", "notification.adminPhones");
pub(crate) const ADMIN_PANEL_URL: SettingName =
    name("ADMIN_PANEL_URL", "notification.adminPanelURL");
pub(crate) const ALERT_WEBHOOK_URL: SettingName =
    name("ALERT_WEBHOOK_URL", "notification.webhookURL");
pub(crate) const SMTP_HOST: SettingName = name("SMTP_HOST", "mail.smtp.host");
pub(crate) const SMTP_PORT: SettingName = name("SMTP_PORT", "mail.smtp.port");
pub(crate) const SMTP_USERNAME: SettingName = name("SMTP_USERNAME", "mail.smtp.username");
pub(crate) const SMTP_PASSWORD: SettingName = name("SMTP_PASSWORD", "mail.smtp.password");
pub(crate) const SMTP_FROM: SettingName = name("SMTP_FROM", "mail.smtp.from");
pub(crate) const SMTP_TLS: SettingName = name("SMTP_TLS", "mail.smtp.tls");
pub(crate) const SMS_ACCOUNT_SID: SettingName = name("SMS_ACCOUNT_SID", "sms.accountSID");
pub(crate) const SMS_AUTH_TOKEN: SettingName = name("SMS_AUTH_TOKEN", "sms.authToken");
pub(crate) const SMS_FROM_NUMBER: SettingName = name("SMS_FROM_NUMBER", "sms.fromNumber");
pub(crate) const SMS_API_BASE_URL: SettingName = name("SMS_API_BASE_URL", "sms.apiBaseURL");
pub(crate) const MAX_UPLOAD_SIZE: SettingName = name("MAX_UPLOAD_SIZE", "chatbox.max_upload_size");
pub(crate) const UPLOAD_RATE_LIMIT: SettingName =
    name("UPLOAD_RATE_LIMIT", "chatbox.upload_rate_limit");
pub(crate) const UPLOAD_RATE_WINDOW: SettingName =
    name("UPLOAD_RATE_WINDOW", "chatbox.upload_rate_window");
pub(crate) const FILE_URL_TTL: SettingName = name("FILE_URL_TTL", "chatbox.file_url_ttl");
pub(crate) const UPLOAD_S3_BUCKET: SettingName = name("UPLOAD_S3_BUCKET", "upload.s3.bucket");
pub(crate) const UPLOAD_S3_ENDPOINT: SettingName = name("UPLOAD_S3_ENDPOINT", "upload.s3.endpoint");
pub(crate) const UPLOAD_S3_REGION: SettingName = name("UPLOAD_S3_REGION", "upload.s3.region");
pub(crate) const UPLOAD_S3_ACCESS_KEY_ID: SettingName =
    name("UPLOAD_S3_ACCESS_KEY_ID", "upload.s3.access_key_id");
pub(crate) const UPLOAD_S3_SECRET_ACCESS_KEY: SettingName =
    name("UPLOAD_S3_SECRET_ACCESS_KEY", "upload.s3.secret_access_key");

// OpenTelemetry trace export (issue 17 item 3): the standard `OTEL_*` variables, and how user
// ids appear on spans.
pub(crate) const OTEL_SDK_DISABLED: SettingName = name("OTEL_SDK_DISABLED", "otel.sdk_disabled");
pub(crate) const OTEL_TRACES_EXPORTER: SettingName =
    name("OTEL_TRACES_EXPORTER", "otel.traces_exporter");
pub(crate) const OTEL_EXPORTER_OTLP_ENDPOINT: SettingName =
    name("OTEL_EXPORTER_OTLP_ENDPOINT", "otel.endpoint");
pub(crate) const OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: SettingName =
    name("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "otel.traces_endpoint");
pub(crate) const OTEL_EXPORTER_OTLP_PROTOCOL: SettingName =
    name("OTEL_EXPORTER_OTLP_PROTOCOL", "otel.protocol");
pub(crate) const OTEL_EXPORTER_OTLP_HEADERS: SettingName =
    name("OTEL_EXPORTER_OTLP_HEADERS", "otel.headers");
pub(crate) const OTEL_EXPORTER_OTLP_TIMEOUT: SettingName =
    name("OTEL_EXPORTER_OTLP_TIMEOUT", "otel.timeout");
pub(crate) const OTEL_SERVICE_NAME: SettingName = name("OTEL_SERVICE_NAME", "otel.service_name");
pub(crate) const OTEL_TRACES_SAMPLER: SettingName =
    name("OTEL_TRACES_SAMPLER", "otel.traces_sampler");
pub(crate) const OTEL_TRACES_SAMPLER_ARG: SettingName =
    name("OTEL_TRACES_SAMPLER_ARG", "otel.traces_sampler_arg");
pub(crate) const TRACE_USER_ID: SettingName = name("TRACE_USER_ID", "otel.trace_user_id");

// Logging.
pub(crate) const LOG_LEVEL: SettingName = name("LOG_LEVEL", "log.level");
pub(crate) const LOG_FORMAT: SettingName = name("LOG_FORMAT", "log.format");
pub(crate) const LOG_DIR: SettingName = name("LOG_DIR", "log.dir");
pub(crate) const LOG_STANDARD_OUTPUT: SettingName =
    name("LOG_STANDARD_OUTPUT", "log.standardOutput");

/// The two file locations of the provider array (§10 item 15), in order of preference.
pub(crate) const PROVIDER_ARRAYS: [&str; 2] = ["llm.providers", "chatbox.llm.providers"];
/// Env provider slots are `LLM_PROVIDER_1_*` ..= `LLM_PROVIDER_<this>_*`.
pub(crate) const MAX_ENV_PROVIDERS: usize = 10;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn displays_env_then_file_key() {
        assert_eq!(JWT_SECRET.to_string(), "JWT_SECRET / chatbox.jwt_secret");
    }
}
