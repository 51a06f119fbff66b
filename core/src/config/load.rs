//! Loading: the environment map and the optional TOML text in, a validated [`Config`] (plus
//! warnings) or every problem out.
//!
//! Each setting is read from its environment variable, else its file key, else its default
//! (see [`keys`] for the names). Unreadable values are reported and replaced by the default so
//! reading goes on; then [`Config::problems`] adds the rule violations, except those about a
//! setting that could not be read (they would judge the default, not what the operator wrote).

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::{ConfigError, ConfigErrors};
use super::keys;
use super::model::{
    health_probe_networks_for, AlertConfig, AuthConfig, Config, HttpConfig, LlmConfig, LogConfig,
    LogFormat, MongoConfig, RateConfig, RateLimit, ServerConfig, SessionConfig, SmsConfig,
    SmtpConfig, SmtpTls, StorageConfig, StoreConfig, StoreRetry, WebSocketConfig,
    MONGO_CONNECT_TIMEOUT_DEFAULT, MONGO_SERVER_SELECTION_TIMEOUT_DEFAULT,
    SMS_API_BASE_URL_DEFAULT,
};
use super::providers;
use super::read::{describe, unsigned, Reader};
use super::secret::Secret;
use super::source::{Raw, Sources};

/// A configuration that passed validation, and what the operator should be told about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The configuration to run with.
    pub config: Config,
    /// Non-fatal notes (e.g. "every origin accepted"), to log at startup.
    pub warnings: Vec<String>,
}

/// Reads the configuration from `env` (the process environment, passed in) and `toml_text`
/// (the configuration file's content, if any), then validates it.
///
/// The environment wins over the file; blank variables count as unset. `Err` carries every
/// problem at once: unreadable values and rule violations alike. Never panics, whatever the input.
pub fn load(
    env: &BTreeMap<String, String>,
    toml_text: Option<&str>,
) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let table = parse_file(toml_text, &mut errors);
    let mut reader = Reader::new(Sources::new(env, table.as_ref()));
    let defaults = Config::with_defaults(Secret::default(), Vec::new());

    let server = read_server(&mut reader, &defaults.server);
    let auth = AuthConfig {
        jwt_secret: reader.secret(keys::JWT_SECRET),
        require_exp: reader.boolean(keys::JWT_REQUIRE_EXP, defaults.auth.require_exp),
        disable_query_token: reader
            .boolean(keys::JWT_DISABLE_QUERY_TOKEN, defaults.auth.disable_query_token),
    };
    let websocket = read_websocket(&mut reader, &defaults.websocket);
    let http = read_http(&mut reader, &defaults.http);
    let rate = read_rate(&mut reader, &defaults.rate);
    let sessions = read_sessions(&mut reader, &defaults.sessions);
    let mut llm = read_llm(&mut reader, &defaults.llm);
    let mut provider_read =
        providers::read(&reader.sources, &mut reader.errors, &mut reader.warnings);
    llm.providers = std::mem::take(&mut provider_read.providers);
    let storage = read_storage(&mut reader, &defaults.storage);
    let alerts = read_alerts(&mut reader);
    let log = read_log(&mut reader, &defaults.log);
    let uploads = super::uploads::read(&mut reader, &defaults.uploads);
    let telemetry = super::telemetry::read(&mut reader);

    let config = Config {
        server,
        auth,
        websocket,
        http,
        rate,
        sessions,
        llm,
        storage,
        alerts,
        log,
        uploads,
        telemetry,
    };

    errors.append(&mut reader.errors);
    let failed = reader.failed;
    errors.extend(
        config
            .problems()
            .into_iter()
            .filter(|problem| {
                let about_unread = problem.settings().iter().any(|env| failed.contains(env));
                // Definitions dropped for a bad type are reported already; "none at all" would
                // mislead.
                let spurious_none =
                    matches!(problem, ConfigError::NoProviders) && provider_read.dropped > 0;
                !about_unread && !spurious_none
            })
            .map(|mut problem| {
                provider_read.locate(&mut problem);
                problem
            }),
    );
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    let mut warnings = reader.warnings;
    warnings.extend(config.warnings());
    Ok(Loaded { config, warnings })
}

/// The TOML file's table, `None` when there is no file or it does not parse (its syntax error
/// is added to `errors`).
fn parse_file(toml_text: Option<&str>, errors: &mut Vec<ConfigError>) -> Option<toml::Table> {
    match toml_text.map(str::parse::<toml::Table>) {
        None => None,
        Some(Ok(table)) => Some(table),
        Some(Err(error)) => {
            errors.push(file_syntax_error(toml_text.unwrap_or_default(), &error));
            None
        }
    }
}

/// Reads only the JWT secret (for minting tokens: `chatbox token` needs nothing else), from the
/// same sources and with the same rules as [`load`]. `Err` lists the file's syntax error, if
/// any, and every problem of the secret.
pub fn load_jwt_secret(
    env: &BTreeMap<String, String>,
    toml_text: Option<&str>,
) -> Result<Secret, ConfigErrors> {
    let mut errors = Vec::new();
    let table = parse_file(toml_text, &mut errors);
    let mut reader = Reader::new(Sources::new(env, table.as_ref()));
    let secret = reader.secret(keys::JWT_SECRET);
    errors.append(&mut reader.errors);
    if !reader.failed.contains(keys::JWT_SECRET.env) {
        errors.extend(
            super::secret::jwt_secret_problems(&secret)
                .into_iter()
                .map(|problem| ConfigError::JwtSecret { setting: keys::JWT_SECRET, problem }),
        );
    }
    if errors.is_empty() {
        Ok(secret)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// The parser's message with a line and column, never the offending text (it may be a secret).
fn file_syntax_error(text: &str, error: &toml::de::Error) -> ConfigError {
    let offset = error.span().map_or(0, |span| span.start.min(text.len()));
    let before = &text.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let column = offset - before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1) + 1;
    ConfigError::FileSyntax { line, column, message: error.message().trim().to_string() }
}

fn read_server(r: &mut Reader<'_>, d: &ServerConfig) -> ServerConfig {
    ServerConfig {
        host: r.text(keys::SERVER_HOST, &d.host),
        port: r.port(keys::SERVER_PORT, d.port),
        path_prefix: normalise_path_prefix(&r.text(keys::PATH_PREFIX, &d.path_prefix)),
        shutdown_timeout: r.duration(keys::SHUTDOWN_TIMEOUT, d.shutdown_timeout),
    }
}

/// Drops trailing slashes, keeping `/` alone as the root.
fn normalise_path_prefix(prefix: &str) -> String {
    let trimmed = prefix.trim_end_matches('/');
    if trimmed.is_empty() && !prefix.is_empty() {
        "/".to_string()
    } else {
        trimmed.to_string()
    }
}

fn read_websocket(r: &mut Reader<'_>, d: &WebSocketConfig) -> WebSocketConfig {
    WebSocketConfig {
        allowed_origins: r.list(keys::ALLOWED_ORIGINS, &[]),
        max_message_size: read_max_message_size(r, d.max_message_size),
        max_connections_per_user: r.integer(keys::MAX_CONNECTIONS, d.max_connections_per_user),
        max_in_flight: r.integer(keys::WS_MAX_IN_FLIGHT, d.max_in_flight),
        ping_interval: r.duration(keys::WS_PING_INTERVAL, d.ping_interval),
        pong_wait: r.duration(keys::WS_PONG_WAIT, d.pong_wait),
        write_wait: r.duration(keys::WS_WRITE_WAIT, d.write_wait),
        send_queue: r.integer(keys::WS_SEND_QUEUE, d.send_queue),
        read_buffer_size: r.integer(keys::WS_READ_BUFFER_SIZE, d.read_buffer_size),
        write_buffer_size: r.integer(keys::WS_WRITE_BUFFER_SIZE, d.write_buffer_size),
    }
}

/// §9: from the environment a positive integer, else the default with a warning; from the file
/// an integer where 0 means no limit.
fn read_max_message_size(r: &mut Reader<'_>, default: Option<usize>) -> Option<usize> {
    let setting = keys::MAX_MESSAGE_SIZE;
    let Some(raw) = r.sources.get(setting) else {
        return default;
    };
    let size = unsigned(raw).and_then(|n| usize::try_from(n).ok());
    match (raw, size) {
        (Raw::Env(_), Some(n)) if n > 0 => Some(n),
        (Raw::Env(_), _) => {
            r.warnings.push(format!(
                "{setting}: {} is not a positive integer; using the default {}",
                describe(raw),
                default.unwrap_or_default()
            ));
            default
        }
        (Raw::File(_), Some(0)) => None,
        (Raw::File(_), Some(n)) => Some(n),
        (Raw::File(_), None) => {
            r.unparsable(setting, "a non-negative integer (0 = no limit)", describe(raw));
            default
        }
    }
}

fn read_http(r: &mut Reader<'_>, d: &HttpConfig) -> HttpConfig {
    let trusted_proxies =
        r.networks_opt(keys::TRUSTED_PROXIES).unwrap_or_else(|| d.trusted_proxies.clone());
    let metrics_allowed_networks = r
        .networks_opt(keys::METRICS_ALLOWED_NETWORKS)
        .unwrap_or_else(|| d.metrics_allowed_networks.clone());
    let health_probe_networks = r
        .networks_opt(keys::HEALTH_PROBE_NETWORKS)
        .unwrap_or_else(|| health_probe_networks_for(&trusted_proxies));
    HttpConfig {
        cors_allowed_origins: r.list(keys::CORS_ALLOWED_ORIGINS, &[]),
        trusted_proxies,
        metrics_allowed_networks,
        health_probe_networks,
        frame_ancestors: r.list(keys::FRAME_ANCESTORS, &[]),
        enable_metrics: r.boolean(keys::ENABLE_METRICS, d.enable_metrics),
    }
}

fn read_rate(r: &mut Reader<'_>, d: &RateConfig) -> RateConfig {
    let mut limit = |limit_key, window_key, default: RateLimit| RateLimit {
        limit: r.integer(limit_key, default.limit),
        window: r.duration(window_key, default.window),
    };
    RateConfig {
        messages: limit(keys::RATE_LIMIT, keys::RATE_LIMIT_WINDOW, d.messages),
        admin: limit(keys::ADMIN_RATE_LIMIT, keys::ADMIN_RATE_WINDOW, d.admin),
        public: limit(keys::PUBLIC_RATE_LIMIT, keys::PUBLIC_RATE_WINDOW, d.public),
        help_alerts: limit(keys::HELP_ALERT_LIMIT, keys::HELP_ALERT_WINDOW, d.help_alerts),
        max_keys: r.integer(keys::RATE_LIMIT_MAX_KEYS, d.max_keys),
        cleanup_interval: r.duration(keys::RATE_LIMIT_CLEANUP_INTERVAL, d.cleanup_interval),
    }
}

/// An unset `SESSION_TTL` is at least the reconnect window (an original configuration with a
/// long `reconnect_timeout` and no TTL of its own starts); only set values can contradict.
fn read_sessions(r: &mut Reader<'_>, d: &SessionConfig) -> SessionConfig {
    let reconnect_timeout = r.duration(keys::RECONNECT_TIMEOUT, d.reconnect_timeout);
    SessionConfig {
        reconnect_timeout,
        ttl: r.duration(keys::SESSION_TTL, d.ttl.max(reconnect_timeout)),
        idle_timeout: r.duration(keys::SESSION_IDLE_TIMEOUT, d.idle_timeout),
        cleanup_interval: r.duration(keys::SESSION_CLEANUP_INTERVAL, d.cleanup_interval),
    }
}

/// Everything of [`LlmConfig`] except the providers (read by [`providers::read`]). The per-chunk
/// deadlines default to [`LlmConfig::unset_deadline`] of the whole reply's.
fn read_llm(r: &mut Reader<'_>, d: &LlmConfig) -> LlmConfig {
    let stream_timeout = r.duration(keys::LLM_STREAM_TIMEOUT, d.stream_timeout);
    let mut deadline = |setting, default| {
        let unset = LlmConfig::unset_deadline(default, stream_timeout);
        r.duration(setting, unset)
    };
    LlmConfig {
        providers: Vec::new(),
        stream_timeout,
        first_chunk_timeout: deadline(keys::LLM_FIRST_CHUNK_TIMEOUT, d.first_chunk_timeout),
        idle_timeout: deadline(keys::LLM_IDLE_TIMEOUT, d.idle_timeout),
        history_max_messages: r.integer(keys::LLM_HISTORY_MAX_MESSAGES, d.history_max_messages),
        history_max_bytes: r.integer(keys::LLM_HISTORY_MAX_BYTES, d.history_max_bytes),
        pause_ai_when_assisted: r.boolean(keys::PAUSE_AI_WHEN_ASSISTED, d.pause_ai_when_assisted),
        resume_window: r.duration(keys::RESUME_WINDOW, d.resume_window),
        user_token_budget: r.integer(keys::USER_TOKEN_BUDGET, d.user_token_budget),
    }
}

fn read_storage(r: &mut Reader<'_>, d: &StorageConfig) -> StorageConfig {
    let mut uri = r.secret(keys::MONGO_URI);
    for fallback in keys::MONGO_URI_FALLBACKS {
        if uri.is_empty() {
            uri = r.secret(fallback);
        }
    }
    let database = r.text(keys::MONGO_DATABASE, "chat");
    let collection = r.text(keys::MONGO_COLLECTION, "sessions");
    let connect_timeout = r.duration(keys::MONGO_CONNECT_TIMEOUT, MONGO_CONNECT_TIMEOUT_DEFAULT);
    let server_selection_timeout =
        r.duration(keys::MONGO_SERVER_SELECTION_TIMEOUT, MONGO_SERVER_SELECTION_TIMEOUT_DEFAULT);
    let backend = if uri.expose().trim().is_empty() {
        StoreConfig::Embedded
    } else {
        StoreConfig::Mongo(MongoConfig {
            uri,
            database,
            collection,
            connect_timeout,
            server_selection_timeout,
        })
    };
    StorageConfig {
        backend,
        retry: StoreRetry {
            attempts: r.integer(keys::MONGO_RETRY_ATTEMPTS, d.retry.attempts),
            delay: r.duration(keys::MONGO_RETRY_DELAY, d.retry.delay),
            max_delay: r.duration(keys::MONGO_RETRY_MAX_DELAY, d.retry.max_delay),
        },
        data_dir: PathBuf::from(r.text(keys::DATA_DIR, &d.data_dir.to_string_lossy())),
        outbox_max_entries: r.integer(keys::OUTBOX_MAX_ENTRIES, d.outbox_max_entries),
        encryption_key: r.secret(keys::ENCRYPTION_KEY),
        history_read_timeout: r.duration(keys::STORE_HISTORY_READ_TIMEOUT, d.history_read_timeout),
        call_timeout: r.duration(keys::STORE_CALL_TIMEOUT, d.call_timeout),
        commit_linger: r.duration(keys::STORE_COMMIT_LINGER, d.commit_linger),
        redis_url: r.secret(keys::REDIS_URL),
    }
}

fn read_alerts(r: &mut Reader<'_>) -> AlertConfig {
    let admin_emails = match r.list_opt(keys::ADMIN_EMAILS) {
        Some(emails) => emails,
        None => r.list(keys::ADMIN_EMAILS_FALLBACK, &[]),
    };
    let smtp_host = r.text_opt(keys::SMTP_HOST).filter(|host| !host.is_empty());
    let smtp_port = r.port(keys::SMTP_PORT, 587);
    let smtp_username = r.text(keys::SMTP_USERNAME, "");
    let smtp_password = r.secret(keys::SMTP_PASSWORD);
    let smtp_from = r.text(keys::SMTP_FROM, "");
    let smtp_tls = r.choice(
        keys::SMTP_TLS,
        SmtpTls::StartTls,
        &[("none", SmtpTls::None), ("starttls", SmtpTls::StartTls), ("tls", SmtpTls::Tls)],
    );
    let smtp = smtp_host.map(|host| SmtpConfig {
        host,
        port: smtp_port,
        username: smtp_username,
        password: smtp_password,
        from: smtp_from,
        tls: smtp_tls,
    });
    let account_sid = r.text(keys::SMS_ACCOUNT_SID, "");
    let auth_token = r.secret(keys::SMS_AUTH_TOKEN);
    let from_number = r.text(keys::SMS_FROM_NUMBER, "");
    let api_base_url = r.text(keys::SMS_API_BASE_URL, SMS_API_BASE_URL_DEFAULT);
    // Any of the three turns SMS on; validation then names whatever else is missing.
    let sms = (!account_sid.is_empty() || !auth_token.is_empty() || !from_number.is_empty())
        .then_some(SmsConfig { account_sid, auth_token, from_number, api_base_url });
    AlertConfig {
        admin_emails,
        admin_phones: r.list(keys::ADMIN_PHONES, &[]),
        admin_panel_url: r.text_opt(keys::ADMIN_PANEL_URL).filter(|url| !url.is_empty()),
        webhook_url: r.text_opt(keys::ALERT_WEBHOOK_URL).filter(|url| !url.is_empty()),
        smtp,
        sms,
    }
}

fn read_log(r: &mut Reader<'_>, d: &LogConfig) -> LogConfig {
    LogConfig {
        level: r.text(keys::LOG_LEVEL, &d.level),
        format: r.choice(
            keys::LOG_FORMAT,
            d.format,
            &[("json", LogFormat::Json), ("text", LogFormat::Text)],
        ),
        dir: r.text(keys::LOG_DIR, &d.dir),
        standard_output: r.boolean(keys::LOG_STANDARD_OUTPUT, d.standard_output),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_prefix_loses_trailing_slashes_but_root_stays() {
        assert_eq!(normalise_path_prefix("/chatbox/"), "/chatbox");
        assert_eq!(normalise_path_prefix("/a/b//"), "/a/b");
        assert_eq!(normalise_path_prefix("/"), "/");
        assert_eq!(normalise_path_prefix("//"), "/");
        assert_eq!(normalise_path_prefix(""), "");
        assert_eq!(normalise_path_prefix("chatbox/"), "chatbox");
    }

    #[test]
    fn the_secret_alone_loads_without_providers() {
        let strong = "Zq3vN8xLr5Tm2Wk7Yp4Hs9Jd6Fb1Gc0A";
        let env: BTreeMap<String, String> =
            [("JWT_SECRET".to_string(), strong.to_string())].into_iter().collect();
        assert_eq!(load_jwt_secret(&env, None).map(|s| s.expose().to_string()), Ok(strong.into()));
        let file = format!("[chatbox]\njwt_secret = \"{strong}\"\n");
        assert!(load_jwt_secret(&BTreeMap::new(), Some(&file)).is_ok());
        let errors = load_jwt_secret(&BTreeMap::new(), None).unwrap_err();
        assert_eq!(errors.len(), 1, "{errors}");
        assert!(errors.to_string().contains("JWT_SECRET / chatbox.jwt_secret"), "{errors}");
        assert!(load_jwt_secret(&BTreeMap::new(), Some("not = [toml")).is_err());
    }

    #[test]
    fn syntax_errors_give_line_and_column_without_the_text() {
        let text = "[chatbox]\njwt_secret = \"hunter2-very-secret\nrate_limit = 5\n";
        let Err(error) = text.parse::<toml::Table>() else { panic!("should not parse") };
        let problem = file_syntax_error(text, &error);
        let ConfigError::FileSyntax { line, .. } = &problem else { panic!("{problem:?}") };
        assert_eq!(*line, 2);
        assert!(!problem.to_string().contains("hunter2"), "{problem}");
    }
}
