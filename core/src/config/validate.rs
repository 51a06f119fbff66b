//! The rules a configuration must satisfy before anything is served (seed issue #19), and the
//! non-fatal warnings.
//!
//! [`Config::validate`] checks every rule and reports every violation at once; it judges the
//! typed values only, so it works the same on a loaded configuration and on one built in code.
//! Rule list, in report order: JWT secret (§2.4); host, path prefix, shutdown budget; WebSocket
//! origins, counts and timings (ping < pong); CORS and frame-ancestor placeholders; rate limits;
//! session timings (TTL ≥ reconnect window); providers (§7.1) and reply deadlines (first chunk and
//! idle ≤ whole reply); history budget; encryption key (§8.4), data dir, outbox, retry (max delay ≥
//! delay), MongoDB URI; alert webhook and SMTP sender; log level.

use std::time::Duration;

use url::Url;

use super::error::{ConfigError, ConfigErrors, Relation};
use super::keys::{self, SettingName};
use super::model::{Config, LogConfig, SmtpTls, StoreConfig, STORE_COMMIT_LINGER_MAX};
use super::providers;
use super::secret::{jwt_secret_problems, placeholder_marker, Origin};
use crate::godur;

/// Required length of the content encryption key in bytes (AES-256, §8.4).
pub const ENCRYPTION_KEY_BYTES: usize = 32;

/// Whether `entry` is one or more Content-Security-Policy sources separated by spaces: visible
/// ASCII only, and no `;` or `,`, which would end the directive or the header. The rule for
/// `FRAME_ANCESTORS` entries, shared with the shell that builds the header from them.
pub fn is_csp_source_list(entry: &str) -> bool {
    entry.bytes().all(|b| b == b' ' || (b.is_ascii_graphic() && b != b';' && b != b','))
}

/// What is wrong with a `REDIS_URL` (`redis://[user:password@]host[:port][/db]`, `rediss://`
/// for TLS), or `None`. The URL itself is never echoed: it may carry a password.
pub fn redis_url_problem(url: &str) -> Option<String> {
    let Some(rest) = url.strip_prefix("redis://").or_else(|| url.strip_prefix("rediss://")) else {
        return Some("must start with redis:// or rediss://".into());
    };
    let (authority, db) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let (host, port) = match host_port.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(']') || host_port.starts_with('[') => {
            (host, Some(port))
        }
        _ => (host_port, None),
    };
    if host.is_empty() {
        return Some("has no host".into());
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return Some("port must be a number from 1 to 65535".into());
    }
    let db = db.split('?').next().unwrap_or("");
    if !db.is_empty() && db.parse::<u32>().is_err() {
        return Some("database must be a number (redis://host:port/0)".into());
    }
    None
}

impl Config {
    /// Checks every rule; `Err` lists all violations at once.
    pub fn validate(&self) -> Result<(), ConfigErrors> {
        let problems = self.problems();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigErrors(problems))
        }
    }

    /// Every rule violation, in report order (empty when valid).
    pub fn problems(&self) -> Vec<ConfigError> {
        let mut rules = Rules::default();
        self.check_auth_and_server(&mut rules);
        self.check_websocket_and_http(&mut rules);
        self.check_rates_and_sessions(&mut rules);
        self.check_llm(&mut rules);
        self.check_storage(&mut rules);
        self.check_alerts_and_log(&mut rules);
        super::uploads::problems(&self.uploads, &mut rules.errors);
        super::telemetry::problems(&self.telemetry, &mut rules.errors);
        rules.errors
    }

    /// Settings that are allowed but deserve the operator's attention (logged at startup).
    pub fn warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.websocket.allowed_origins.is_empty() {
            warnings.push(format!(
                "{} is empty: WebSocket connections are accepted from every origin",
                keys::ALLOWED_ORIGINS
            ));
        }
        if self.storage.encryption_key.is_empty() {
            warnings.push(format!(
                "{} is empty: message content is stored unencrypted",
                keys::ENCRYPTION_KEY
            ));
        }
        if self.websocket.max_message_size.is_none() {
            warnings.push(format!(
                "{} is 0: inbound WebSocket messages have no size limit",
                keys::MAX_MESSAGE_SIZE
            ));
        }
        if self.http.enable_metrics && self.http.metrics_allowed_networks.is_empty() {
            warnings.push(format!(
                "{} is empty: /metrics/prometheus is open to every client",
                keys::METRICS_ALLOWED_NETWORKS
            ));
        }
        if let StoreConfig::Mongo(mongo) = &self.storage.backend {
            if !mongo.has_credentials() {
                warnings.push(format!("{} has no credentials", keys::MONGO_URI));
            }
        }
        if self.alerts.sms.is_none() && !self.alerts.admin_phones.is_empty() {
            warnings.push(format!(
                "{} is set but {} is not: SMS alerts are off",
                keys::ADMIN_PHONES,
                keys::SMS_ACCOUNT_SID
            ));
        }
        if self.alerts.smtp.as_ref().is_some_and(|smtp| smtp.tls == SmtpTls::None) {
            warnings.push(format!("{} is none: alert emails are sent unencrypted", keys::SMTP_TLS));
        }
        warnings
    }

    fn check_auth_and_server(&self, rules: &mut Rules) {
        for problem in jwt_secret_problems(&self.auth.jwt_secret) {
            rules.errors.push(ConfigError::JwtSecret { setting: keys::JWT_SECRET, problem });
        }
        rules.not_empty(keys::SERVER_HOST, &self.server.host);
        let prefix = &self.server.path_prefix;
        if prefix.is_empty() {
            rules.errors.push(ConfigError::Empty { setting: keys::PATH_PREFIX });
        } else if !prefix.starts_with('/') {
            rules.errors.push(ConfigError::PathPrefix { setting: keys::PATH_PREFIX });
        }
        rules.positive_duration(keys::SHUTDOWN_TIMEOUT, self.server.shutdown_timeout);
    }

    fn check_websocket_and_http(&self, rules: &mut Rules) {
        let ws = &self.websocket;
        rules.no_placeholder(keys::ALLOWED_ORIGINS, &ws.allowed_origins);
        if ws.max_message_size == Some(0) {
            rules.errors.push(ConfigError::NotPositive { setting: keys::MAX_MESSAGE_SIZE });
        }
        rules.positive(keys::MAX_CONNECTIONS, u64::from(ws.max_connections_per_user));
        rules.positive(keys::WS_MAX_IN_FLIGHT, u64::from(ws.max_in_flight));
        rules.positive_usize(keys::WS_SEND_QUEUE, ws.send_queue);
        rules.positive_usize(keys::WS_READ_BUFFER_SIZE, ws.read_buffer_size);
        rules.positive_usize(keys::WS_WRITE_BUFFER_SIZE, ws.write_buffer_size);
        rules.positive_duration(keys::WS_PING_INTERVAL, ws.ping_interval);
        rules.positive_duration(keys::WS_PONG_WAIT, ws.pong_wait);
        rules.positive_duration(keys::WS_WRITE_WAIT, ws.write_wait);
        rules.ordered(
            (keys::WS_PING_INTERVAL, ws.ping_interval),
            Relation::LessThan,
            (keys::WS_PONG_WAIT, ws.pong_wait),
        );
        rules.no_placeholder(keys::CORS_ALLOWED_ORIGINS, &self.http.cors_allowed_origins);
        rules.no_placeholder(keys::FRAME_ANCESTORS, &self.http.frame_ancestors);
        for entry in &self.http.frame_ancestors {
            if !is_csp_source_list(entry) {
                rules.errors.push(ConfigError::FrameAncestor {
                    setting: keys::FRAME_ANCESTORS,
                    entry: entry.clone(),
                });
            }
        }
    }

    fn check_rates_and_sessions(&self, rules: &mut Rules) {
        let rate = &self.rate;
        for (limit_key, window_key, limit) in [
            (keys::RATE_LIMIT, keys::RATE_LIMIT_WINDOW, rate.messages),
            (keys::ADMIN_RATE_LIMIT, keys::ADMIN_RATE_WINDOW, rate.admin),
            (keys::PUBLIC_RATE_LIMIT, keys::PUBLIC_RATE_WINDOW, rate.public),
            (keys::HELP_ALERT_LIMIT, keys::HELP_ALERT_WINDOW, rate.help_alerts),
        ] {
            rules.positive(limit_key, u64::from(limit.limit));
            rules.positive_duration(window_key, limit.window);
        }
        rules.positive_usize(keys::RATE_LIMIT_MAX_KEYS, rate.max_keys);
        rules.positive_duration(keys::RATE_LIMIT_CLEANUP_INTERVAL, rate.cleanup_interval);

        let sessions = &self.sessions;
        rules.positive_duration(keys::RECONNECT_TIMEOUT, sessions.reconnect_timeout);
        rules.positive_duration(keys::SESSION_TTL, sessions.ttl);
        rules.positive_duration(keys::SESSION_IDLE_TIMEOUT, sessions.idle_timeout);
        rules.positive_duration(keys::SESSION_CLEANUP_INTERVAL, sessions.cleanup_interval);
        // Ended sessions must stay in memory, resumable, for the whole reconnect window.
        rules.ordered(
            (keys::SESSION_TTL, sessions.ttl),
            Relation::AtLeast,
            (keys::RECONNECT_TIMEOUT, sessions.reconnect_timeout),
        );
    }

    fn check_llm(&self, rules: &mut Rules) {
        let llm = &self.llm;
        rules.errors.extend(providers::problems(&llm.providers));
        rules.positive_duration(keys::LLM_STREAM_TIMEOUT, llm.stream_timeout);
        rules.positive_duration(keys::LLM_FIRST_CHUNK_TIMEOUT, llm.first_chunk_timeout);
        rules.positive_duration(keys::LLM_IDLE_TIMEOUT, llm.idle_timeout);
        rules.positive_duration(keys::RESUME_WINDOW, llm.resume_window);
        rules.ordered(
            (keys::LLM_FIRST_CHUNK_TIMEOUT, llm.first_chunk_timeout),
            Relation::AtMost,
            (keys::LLM_STREAM_TIMEOUT, llm.stream_timeout),
        );
        rules.ordered(
            (keys::LLM_IDLE_TIMEOUT, llm.idle_timeout),
            Relation::AtMost,
            (keys::LLM_STREAM_TIMEOUT, llm.stream_timeout),
        );
        rules.positive_usize(keys::LLM_HISTORY_MAX_MESSAGES, llm.history_max_messages);
        rules.positive_usize(keys::LLM_HISTORY_MAX_BYTES, llm.history_max_bytes);
    }

    fn check_storage(&self, rules: &mut Rules) {
        let storage = &self.storage;
        let key = &storage.encryption_key;
        if storage.encryption_key.origin() == Origin::File {
            if let Some(marker) = placeholder_marker(key.expose()) {
                rules
                    .errors
                    .push(ConfigError::Placeholder { setting: keys::ENCRYPTION_KEY, marker });
            }
        }
        if !key.is_empty() && key.len() != ENCRYPTION_KEY_BYTES {
            rules.errors.push(ConfigError::EncryptionKeyLength {
                setting: keys::ENCRYPTION_KEY,
                len: key.len(),
            });
        }
        rules.not_empty(keys::DATA_DIR, &storage.data_dir.to_string_lossy());
        rules.positive_usize(keys::OUTBOX_MAX_ENTRIES, storage.outbox_max_entries);
        rules.positive_duration(keys::STORE_HISTORY_READ_TIMEOUT, storage.history_read_timeout);
        rules.positive_duration(keys::STORE_CALL_TIMEOUT, storage.call_timeout);
        rules.duration_at_most(
            keys::STORE_COMMIT_LINGER,
            storage.commit_linger,
            STORE_COMMIT_LINGER_MAX,
        );
        rules.positive(keys::MONGO_RETRY_ATTEMPTS, u64::from(storage.retry.attempts));
        rules.ordered(
            (keys::MONGO_RETRY_MAX_DELAY, storage.retry.max_delay),
            Relation::AtLeast,
            (keys::MONGO_RETRY_DELAY, storage.retry.delay),
        );
        if storage.has_redis() {
            if let Some(reason) = redis_url_problem(storage.redis_url.expose().trim()) {
                rules.errors.push(ConfigError::InvalidUrl { setting: keys::REDIS_URL, reason });
            }
        }
        if let StoreConfig::Mongo(mongo) = &storage.backend {
            let uri = mongo.uri.expose().trim();
            let rest =
                uri.strip_prefix("mongodb://").or_else(|| uri.strip_prefix("mongodb+srv://"));
            match rest {
                None => rules.errors.push(ConfigError::InvalidUrl {
                    setting: keys::MONGO_URI,
                    reason: "must start with mongodb:// or mongodb+srv://".into(),
                }),
                Some(rest) if rest.is_empty() || rest.starts_with(['/', '?']) => {
                    rules.errors.push(ConfigError::InvalidUrl {
                        setting: keys::MONGO_URI,
                        reason: "has no host".into(),
                    });
                }
                Some(_) => {}
            }
            rules.not_empty(keys::MONGO_DATABASE, &mongo.database);
            rules.not_empty(keys::MONGO_COLLECTION, &mongo.collection);
            rules.positive_duration(keys::MONGO_CONNECT_TIMEOUT, mongo.connect_timeout);
            rules.positive_duration(
                keys::MONGO_SERVER_SELECTION_TIMEOUT,
                mongo.server_selection_timeout,
            );
        }
    }

    fn check_alerts_and_log(&self, rules: &mut Rules) {
        let alerts = &self.alerts;
        if let Some(webhook) = &alerts.webhook_url {
            if let Some(reason) = http_url_problem(webhook) {
                rules.errors.push(ConfigError::InvalidUrl {
                    setting: keys::ALERT_WEBHOOK_URL,
                    reason: reason.into(),
                });
            }
        }
        if let Some(smtp) = &alerts.smtp {
            rules.not_empty(keys::SMTP_HOST, &smtp.host);
            if smtp.from.trim().is_empty() {
                rules.errors.push(ConfigError::Required {
                    setting: keys::SMTP_FROM,
                    because: keys::SMTP_HOST,
                });
            }
        }
        if let Some(sms) = &alerts.sms {
            let missing: Vec<_> = [
                (keys::SMS_ACCOUNT_SID, sms.account_sid.trim().is_empty()),
                (keys::SMS_AUTH_TOKEN, sms.auth_token.is_empty()),
                (keys::SMS_FROM_NUMBER, sms.from_number.trim().is_empty()),
                (keys::ADMIN_PHONES, alerts.admin_phones.iter().all(|p| p.trim().is_empty())),
            ]
            .into_iter()
            .filter_map(|(setting, absent)| absent.then_some(setting))
            .collect();
            if !missing.is_empty() {
                rules.errors.push(ConfigError::Incomplete { feature: "SMS alerts", missing });
            }
            if let Some(reason) = http_url_problem(&sms.api_base_url) {
                rules.errors.push(ConfigError::InvalidUrl {
                    setting: keys::SMS_API_BASE_URL,
                    reason: reason.into(),
                });
            }
        }
        let LogConfig { level, .. } = &self.log;
        rules.not_empty(keys::LOG_LEVEL, level);
        if !level.trim().is_empty() && self.log.filter().is_none() {
            rules.errors.push(ConfigError::Unparsable {
                setting: keys::LOG_LEVEL,
                expected: "a level (error, warn, info, debug, trace, off) or comma-separated \
                           target=level directives"
                    .into(),
                found: format!("{level:?}"),
            });
        }
    }
}

/// Why `text` is not an absolute http(s) URL with a host. Never echoes the URL (it may carry a
/// token).
fn http_url_problem(text: &str) -> Option<&'static str> {
    match Url::parse(text.trim()) {
        Err(_) => Some("is not a valid URL"),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Some("must be an http or https URL")
        }
        Ok(url) if url.host().is_none() => Some("has no host"),
        Ok(_) => None,
    }
}

/// The violations found so far, with one helper per kind of rule.
#[derive(Debug, Default)]
struct Rules {
    errors: Vec<ConfigError>,
}

impl Rules {
    fn positive(&mut self, setting: SettingName, value: u64) {
        if value == 0 {
            self.errors.push(ConfigError::NotPositive { setting });
        }
    }

    fn positive_usize(&mut self, setting: SettingName, value: usize) {
        if value == 0 {
            self.errors.push(ConfigError::NotPositive { setting });
        }
    }

    fn positive_duration(&mut self, setting: SettingName, value: Duration) {
        if value.is_zero() {
            self.errors.push(ConfigError::NotPositive { setting });
        }
    }

    fn duration_at_most(&mut self, setting: SettingName, value: Duration, max: Duration) {
        if value > max {
            self.errors.push(ConfigError::TooLong { setting, max: godur::format(max) });
        }
    }

    fn not_empty(&mut self, setting: SettingName, value: &str) {
        if value.trim().is_empty() {
            self.errors.push(ConfigError::Empty { setting });
        }
    }

    /// Entries must not contain a placeholder marker; one error per setting.
    fn no_placeholder(&mut self, setting: SettingName, entries: &[String]) {
        if let Some(marker) = entries.iter().find_map(|entry| placeholder_marker(entry)) {
            self.errors.push(ConfigError::Placeholder { setting, marker });
        }
    }

    /// `left relation right`. Skipped when either is zero: that is reported on its own.
    fn ordered(
        &mut self,
        (setting, value): (SettingName, Duration),
        relation: Relation,
        (other, other_value): (SettingName, Duration),
    ) {
        if value.is_zero() || other_value.is_zero() {
            return;
        }
        let holds = match relation {
            Relation::AtMost => value <= other_value,
            Relation::LessThan => value < other_value,
            Relation::AtLeast => value >= other_value,
        };
        if !holds {
            self.errors.push(ConfigError::Relation {
                setting,
                value: godur::format(value),
                relation,
                other,
                other_value: godur::format(other_value),
            });
        }
    }
}

#[cfg(test)]
mod redis_url_tests {
    use super::redis_url_problem;

    #[test]
    fn redis_urls_are_checked_without_echoing_them() {
        for good in [
            "redis://127.0.0.1:6379/0",
            "rediss://user:s3cret@cache.internal:6380/2",
            "redis://cache",
        ] {
            assert_eq!(redis_url_problem(good), None, "{good}");
        }
        for (bad, why) in [
            ("http://cache:6379", "must start with"),
            ("redis://:pw@/0", "no host"),
            ("redis://cache:http/0", "port"),
            ("redis://cache:6379/zero", "database"),
        ] {
            let reason = redis_url_problem(bad).expect(bad);
            assert!(reason.contains(why), "{bad}: {reason}");
            assert!(!reason.contains("pw"), "no URL echoed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::model::{MongoConfig, ProviderConfig, SmtpConfig};
    use crate::config::secret::{Secret, SecretProblem};

    const STRONG: &str = "q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne";

    fn valid() -> Config {
        Config::for_dev(STRONG.into(), "data")
    }

    /// Applies `change` to a valid config and returns the settings named by its errors.
    fn fails(change: impl FnOnce(&mut Config)) -> Vec<Vec<&'static str>> {
        let mut config = valid();
        change(&mut config);
        let errors = config.validate().expect_err("should be refused").0;
        errors.iter().map(ConfigError::settings).collect()
    }

    fn passes(change: impl FnOnce(&mut Config)) {
        let mut config = valid();
        change(&mut config);
        assert_eq!(config.validate(), Ok(()));
    }

    fn mongo(uri: &str) -> StoreConfig {
        StoreConfig::Mongo(MongoConfig {
            uri: Secret::new(uri, Origin::Env),
            database: "chat".into(),
            collection: "sessions".into(),
            connect_timeout: Duration::from_secs(10),
            server_selection_timeout: Duration::from_secs(2),
        })
    }

    #[test]
    fn defaults_with_a_strong_secret_and_a_provider_are_valid() {
        assert_eq!(valid().validate(), Ok(()));
    }

    #[test]
    fn jwt_secret_rule() {
        assert_eq!(fails(|c| c.auth.jwt_secret = Secret::default()), [["JWT_SECRET"]]);
        assert_eq!(
            fails(|c| c.auth.jwt_secret = Secret::new("short", Origin::Env)),
            [["JWT_SECRET"]]
        );
        let weak = format!("{STRONG}admin");
        assert_eq!(fails(|c| c.auth.jwt_secret = Secret::new(weak, Origin::Env)), [["JWT_SECRET"]]);
        passes(|c| c.auth.jwt_secret = Secret::new(STRONG, Origin::File));
    }

    #[test]
    fn short_and_weak_are_both_reported() {
        let mut config = valid();
        config.auth.jwt_secret = Secret::new("demo", Origin::Env);
        let errors = config.validate().unwrap_err().0;
        assert_eq!(
            errors,
            vec![
                ConfigError::JwtSecret {
                    setting: keys::JWT_SECRET,
                    problem: SecretProblem::TooShort { len: 4 }
                },
                ConfigError::JwtSecret {
                    setting: keys::JWT_SECRET,
                    problem: SecretProblem::Weak { patterns: vec!["demo"] }
                },
            ]
        );
    }

    #[test]
    fn path_prefix_rule() {
        assert_eq!(fails(|c| c.server.path_prefix = "chatbox".into()), [["CHATBOX_PATH_PREFIX"]]);
        assert_eq!(fails(|c| c.server.path_prefix = String::new()), [["CHATBOX_PATH_PREFIX"]]);
        passes(|c| c.server.path_prefix = "/".into());
        passes(|c| c.server.path_prefix = "/api/chat".into());
    }

    #[test]
    fn host_and_log_level_must_not_be_empty() {
        assert_eq!(fails(|c| c.server.host = " ".into()), [["SERVER_HOST"]]);
        assert_eq!(fails(|c| c.log.level = String::new()), [["LOG_LEVEL"]]);
    }

    #[test]
    fn a_log_level_must_name_levels_and_the_originals_words_are_understood() {
        for typo in ["inf", "chatbox", "info,hyper", "=debug", "chatbox=loud"] {
            assert_eq!(fails(|c| c.log.level = typo.into()), [["LOG_LEVEL"]], "{typo}");
        }
        let filter = |level: &str| LogConfig { level: level.into(), ..valid().log }.filter();
        assert_eq!(filter("Warning").as_deref(), Some("warn"));
        assert_eq!(filter("fatal").as_deref(), Some("error"));
        assert_eq!(filter("info, hyper=WARN").as_deref(), Some("info,hyper=warn"));
        assert_eq!(filter("chatbox::engine=debug").as_deref(), Some("chatbox::engine=debug"));
    }

    #[test]
    fn encryption_key_rule() {
        assert_eq!(
            fails(|c| c.storage.encryption_key = Secret::new("k".repeat(31), Origin::Env)),
            [["ENCRYPTION_KEY"]]
        );
        assert_eq!(
            fails(|c| c.storage.encryption_key = Secret::new("k".repeat(33), Origin::Env)),
            [["ENCRYPTION_KEY"]]
        );
        passes(|c| c.storage.encryption_key = Secret::new("k".repeat(32), Origin::Env));
        passes(|c| c.storage.encryption_key = Secret::default());
        let marked = format!("YOUR-KEY-{}", "k".repeat(23));
        assert_eq!(
            fails(|c| c.storage.encryption_key = Secret::new(marked.clone(), Origin::File)),
            [["ENCRYPTION_KEY"]]
        );
        passes(|c| c.storage.encryption_key = Secret::new(marked, Origin::Env));
    }

    #[test]
    fn origin_lists_refuse_placeholders() {
        let marked = vec!["https://your-domain.com".to_string()];
        assert_eq!(
            fails(|c| c.websocket.allowed_origins = marked.clone()),
            [["WS_ALLOWED_ORIGINS"]]
        );
        assert_eq!(
            fails(|c| c.http.cors_allowed_origins = marked.clone()),
            [["CORS_ALLOWED_ORIGINS"]]
        );
        assert_eq!(fails(|c| c.http.frame_ancestors = marked), [["FRAME_ANCESTORS"]]);
        passes(|c| c.websocket.allowed_origins = vec!["https://chat.example.org".into()]);
    }

    #[test]
    fn frame_ancestors_must_be_csp_sources() {
        for bad in
            ["https://a.example; script-src *", "https://a.example\nX: y", "https://é.example"]
        {
            assert_eq!(
                fails(|c| c.http.frame_ancestors = vec![bad.to_string()]),
                [["FRAME_ANCESTORS"]],
                "{bad:?}"
            );
        }
        passes(|c| {
            c.http.frame_ancestors =
                vec!["'self'".into(), "https://portal.example *.corp.example".into()]
        });
    }

    #[test]
    fn counts_must_be_positive() {
        assert_eq!(fails(|c| c.websocket.max_connections_per_user = 0), [["MAX_CONNECTIONS"]]);
        assert_eq!(fails(|c| c.websocket.max_in_flight = 0), [["WS_MAX_IN_FLIGHT"]]);
        assert_eq!(fails(|c| c.websocket.send_queue = 0), [["WS_SEND_QUEUE"]]);
        assert_eq!(fails(|c| c.websocket.read_buffer_size = 0), [["WS_READ_BUFFER_SIZE"]]);
        assert_eq!(fails(|c| c.websocket.write_buffer_size = 0), [["WS_WRITE_BUFFER_SIZE"]]);
        assert_eq!(fails(|c| c.websocket.max_message_size = Some(0)), [["MAX_MESSAGE_SIZE"]]);
        assert_eq!(fails(|c| c.rate.messages.limit = 0), [["RATE_LIMIT"]]);
        assert_eq!(fails(|c| c.rate.admin.limit = 0), [["ADMIN_RATE_LIMIT"]]);
        assert_eq!(fails(|c| c.rate.public.limit = 0), [["PUBLIC_RATE_LIMIT"]]);
        assert_eq!(fails(|c| c.rate.help_alerts.limit = 0), [["HELP_ALERT_LIMIT"]]);
        assert_eq!(fails(|c| c.rate.max_keys = 0), [["RATE_LIMIT_MAX_KEYS"]]);
        assert_eq!(fails(|c| c.llm.history_max_messages = 0), [["LLM_HISTORY_MAX_MESSAGES"]]);
        assert_eq!(fails(|c| c.llm.history_max_bytes = 0), [["LLM_HISTORY_MAX_BYTES"]]);
        assert_eq!(fails(|c| c.storage.outbox_max_entries = 0), [["OUTBOX_MAX_ENTRIES"]]);
        assert_eq!(fails(|c| c.storage.retry.attempts = 0), [["MONGO_RETRY_ATTEMPTS"]]);
        passes(|c| c.websocket.max_message_size = None);
    }

    #[test]
    fn durations_must_be_positive() {
        let zero = Duration::ZERO;
        assert_eq!(fails(|c| c.server.shutdown_timeout = zero), [["SHUTDOWN_TIMEOUT"]]);
        assert_eq!(fails(|c| c.websocket.write_wait = zero), [["WS_WRITE_WAIT"]]);
        assert_eq!(fails(|c| c.rate.messages.window = zero), [["RATE_LIMIT_WINDOW"]]);
        assert_eq!(fails(|c| c.rate.admin.window = zero), [["ADMIN_RATE_WINDOW"]]);
        assert_eq!(fails(|c| c.rate.public.window = zero), [["PUBLIC_RATE_WINDOW"]]);
        assert_eq!(fails(|c| c.rate.help_alerts.window = zero), [["HELP_ALERT_WINDOW"]]);
        assert_eq!(fails(|c| c.rate.cleanup_interval = zero), [["RATE_LIMIT_CLEANUP_INTERVAL"]]);
        assert_eq!(fails(|c| c.sessions.idle_timeout = zero), [["SESSION_IDLE_TIMEOUT"]]);
        assert_eq!(fails(|c| c.sessions.cleanup_interval = zero), [["SESSION_CLEANUP_INTERVAL"]]);
        // Zero on one side of a relation is reported once, not twice.
        assert_eq!(fails(|c| c.llm.stream_timeout = zero), [["LLM_STREAM_TIMEOUT"]]);
        assert_eq!(fails(|c| c.llm.first_chunk_timeout = zero), [["LLM_FIRST_CHUNK_TIMEOUT"]]);
        assert_eq!(fails(|c| c.llm.idle_timeout = zero), [["LLM_IDLE_TIMEOUT"]]);
        assert_eq!(fails(|c| c.llm.resume_window = zero), [["RESUME_WINDOW"]]);
        assert_eq!(fails(|c| c.websocket.ping_interval = zero), [["WS_PING_INTERVAL"]]);
        assert_eq!(fails(|c| c.websocket.pong_wait = zero), [["WS_PONG_WAIT"]]);
        assert_eq!(fails(|c| c.sessions.ttl = zero), [["SESSION_TTL"]]);
        assert_eq!(fails(|c| c.sessions.reconnect_timeout = zero), [["RECONNECT_TIMEOUT"]]);
    }

    #[test]
    fn the_store_commit_linger_is_bounded() {
        let max = STORE_COMMIT_LINGER_MAX;
        assert_eq!(
            fails(|c| c.storage.commit_linger = max + Duration::from_micros(1)),
            [["STORE_COMMIT_LINGER"]]
        );
        passes(|c| c.storage.commit_linger = max);
        passes(|c| c.storage.commit_linger = Duration::ZERO);
    }

    #[test]
    fn llm_deadlines_fit_inside_the_whole_reply() {
        let stream = Duration::from_secs(120);
        assert_eq!(
            fails(|c| c.llm.first_chunk_timeout = stream + Duration::from_secs(1)),
            [["LLM_FIRST_CHUNK_TIMEOUT", "LLM_STREAM_TIMEOUT"]]
        );
        assert_eq!(
            fails(|c| c.llm.idle_timeout = stream + Duration::from_secs(1)),
            [["LLM_IDLE_TIMEOUT", "LLM_STREAM_TIMEOUT"]]
        );
        passes(|c| {
            c.llm.first_chunk_timeout = stream;
            c.llm.idle_timeout = stream;
        });
    }

    #[test]
    fn ping_must_come_before_the_pong_deadline() {
        let pong = Duration::from_secs(60);
        assert_eq!(
            fails(|c| c.websocket.ping_interval = pong),
            [["WS_PING_INTERVAL", "WS_PONG_WAIT"]]
        );
        passes(|c| c.websocket.ping_interval = pong - Duration::from_secs(1));
    }

    #[test]
    fn ended_sessions_outlive_the_reconnect_window() {
        assert_eq!(
            fails(|c| c.sessions.ttl = Duration::from_secs(60)),
            [["SESSION_TTL", "RECONNECT_TIMEOUT"]]
        );
        passes(|c| c.sessions.ttl = c.sessions.reconnect_timeout);
    }

    #[test]
    fn retry_cap_is_at_least_the_first_delay() {
        assert_eq!(
            fails(|c| c.storage.retry.max_delay = Duration::from_millis(50)),
            [["MONGO_RETRY_MAX_DELAY", "MONGO_RETRY_DELAY"]]
        );
        passes(|c| c.storage.retry.max_delay = c.storage.retry.delay);
    }

    #[test]
    fn mongo_rules() {
        assert_eq!(fails(|c| c.storage.backend = mongo("postgres://db/x")), [["MONGO_URI"]]);
        assert_eq!(fails(|c| c.storage.backend = mongo("mongodb://")), [["MONGO_URI"]]);
        passes(|c| c.storage.backend = mongo("mongodb://u:p@db:27017/chat"));
        passes(|c| c.storage.backend = mongo("mongodb+srv://cluster0.example.net"));
        let mut no_db = mongo("mongodb://db");
        if let StoreConfig::Mongo(m) = &mut no_db {
            m.database.clear();
            m.connect_timeout = Duration::ZERO;
        }
        assert_eq!(
            fails(|c| c.storage.backend = no_db),
            [["MONGO_DATABASE"], ["MONGO_CONNECT_TIMEOUT"]]
        );
        let mut no_collection = mongo("mongodb://db");
        if let StoreConfig::Mongo(m) = &mut no_collection {
            m.collection.clear();
        }
        assert_eq!(fails(|c| c.storage.backend = no_collection), [["MONGO_COLLECTION"]]);
    }

    #[test]
    fn data_dir_must_not_be_empty() {
        assert_eq!(fails(|c| c.storage.data_dir = "".into()), [["DATA_DIR"]]);
    }

    #[test]
    fn webhook_must_be_http_url() {
        for bad in ["ftp://x.org/hook", "not a url", "mailto:a@b.c"] {
            assert_eq!(
                fails(|c| c.alerts.webhook_url = Some(bad.into())),
                [["ALERT_WEBHOOK_URL"]],
                "{bad}"
            );
        }
        passes(|c| c.alerts.webhook_url = Some("https://hooks.example.org/T0/B0/x".into()));
    }

    #[test]
    fn webhook_errors_do_not_echo_the_url() {
        let mut config = valid();
        config.alerts.webhook_url = Some("ftp://hooks/secret-token-123".into());
        let text = config.validate().unwrap_err().to_string();
        assert!(!text.contains("secret-token-123"), "{text}");
    }

    #[test]
    fn smtp_needs_a_sender() {
        let smtp = SmtpConfig {
            host: "smtp.example.org".into(),
            port: 587,
            username: String::new(),
            password: Secret::default(),
            from: String::new(),
            tls: SmtpTls::StartTls,
        };
        assert_eq!(fails(|c| c.alerts.smtp = Some(smtp.clone())), [["SMTP_FROM", "SMTP_HOST"]]);
        let no_host =
            SmtpConfig { host: String::new(), from: "bot@example.org".into(), ..smtp.clone() };
        assert_eq!(fails(|c| c.alerts.smtp = Some(no_host)), [["SMTP_HOST"]]);
        passes(|c| c.alerts.smtp = Some(SmtpConfig { from: "bot@example.org".into(), ..smtp }));
    }

    #[test]
    fn provider_rules_are_part_of_validate() {
        let mut config = valid();
        config.llm.providers.clear();
        assert_eq!(config.validate(), Err(ConfigErrors(vec![ConfigError::NoProviders])));
        passes(|c| c.llm.providers.push(ProviderConfig::echo("echo2", "Echo 2")));
    }

    #[test]
    fn every_violation_is_reported_at_once() {
        let mut config = valid();
        config.auth.jwt_secret = Secret::new("x", Origin::Env);
        config.server.path_prefix = "nope".into();
        config.rate.messages.limit = 0;
        config.llm.providers.clear();
        config.sessions.ttl = Duration::from_secs(1);
        let errors = config.validate().unwrap_err();
        assert_eq!(errors.len(), 5, "{errors}");
    }

    #[test]
    fn warnings_for_open_settings() {
        let mut config = valid();
        let warnings = config.warnings().join("\n");
        assert!(warnings.contains("every origin"), "{warnings}");
        assert!(warnings.contains("unencrypted"), "{warnings}");
        config.websocket.allowed_origins = vec!["https://a.org".into()];
        config.storage.encryption_key = Secret::new("k".repeat(32), Origin::Env);
        assert_eq!(config.warnings(), Vec::<String>::new());
    }
}
