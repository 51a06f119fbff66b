//! # Configuration: the model, loading from env/TOML, and validation (PROTOCOL.md §9, §10)
//!
//! chatbox starts only with a configuration that passes every rule, and when it does not, the
//! operator sees **every** problem at once (seed issues #17, #19). This module is sans-IO: the
//! caller reads the environment and the file and passes them in.
//!
//! ```text
//! env map + TOML text ──load()──► Loaded { config, warnings }   or   ConfigErrors (all problems)
//!                                   │
//!                        Config::validate() — the same rules, on any Config
//! ```
//!
//! Parts, one job each:
//! - `keys` — every setting's env name and file key ([`SettingName`]).
//! - `source` — raw lookup: environment first (blank = unset), then dotted file keys.
//! - `read` — raw text/TOML values into types, collecting problems (durations through
//!   [`crate::godur`]).
//! - `providers` — LLM providers from file + `LLM_PROVIDER_<n>_*`, and their rules (§7.1).
//! - `secret` — [`Secret`] (redacted `Debug`) and the JWT secret strength rules (§2.4).
//! - `model` — the typed [`Config`] and its defaults.
//! - `validate` — [`Config::validate`] and [`Config::warnings`].
//! - `uploads` — the upload settings and their rules ([`UploadConfig`]).
//! - `telemetry` — the OpenTelemetry settings and their rules ([`TelemetryConfig`]).
//! - `load` — [`load`]: all of the above, in order.
//! - `error` — [`ConfigError`], [`ConfigErrors`].

mod error;
mod keys;
mod load;
mod model;
mod providers;
mod read;
mod secret;
mod source;
mod telemetry;
mod uploads;
mod validate;

#[cfg(test)]
mod tests;

pub use error::{ConfigError, ConfigErrors, ProviderRef, Relation};
pub use keys::SettingName;
pub use load::{load, load_jwt_secret, Loaded};
pub use model::{
    default_metrics_networks, default_trusted_proxies, health_probe_networks_for, AlertConfig,
    AuthConfig, Config, HttpConfig, LlmConfig, LogConfig, LogFormat, MongoConfig, ProviderConfig,
    ProviderKind, RateConfig, RateLimit, ServerConfig, SessionConfig, SmsConfig, SmtpConfig,
    SmtpTls, StorageConfig, StoreConfig, StoreRetry, WebSocketConfig, HISTORY_READ_TIMEOUT_DEFAULT,
    MONGO_CONNECT_TIMEOUT_DEFAULT, MONGO_SERVER_SELECTION_TIMEOUT_DEFAULT,
    STORE_CALL_TIMEOUT_DEFAULT, STORE_COMMIT_LINGER_DEFAULT, STORE_COMMIT_LINGER_MAX,
};
pub use secret::{
    jwt_secret_problems, placeholder_marker, Origin, Secret, SecretProblem, GENERATE_HINT,
    MIN_JWT_SECRET_BYTES, PLACEHOLDER_MARKERS, WEAK_PATTERNS,
};
pub use telemetry::{
    traces_url_of, OtlpConfig, RootSampler, TelemetryConfig, TraceSampler, TraceUserId,
    OTEL_EXPORT_TIMEOUT_DEFAULT, OTEL_SERVICE_NAME_DEFAULT, OTLP_PROTOCOL_HTTP_PROTOBUF,
    OTLP_TRACES_PATH,
};
pub use uploads::{S3Config, UploadConfig, UPLOAD_S3_REGION_DEFAULT};
pub use validate::{is_csp_source_list, redis_url_problem, ENCRYPTION_KEY_BYTES};
