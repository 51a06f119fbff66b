//! Loading end to end: env and file together, precedence, lists, providers, reporting.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;

use super::*;

const STRONG: &str = "q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne";

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

/// The smallest valid environment: a secret and the echo provider (shared by the config
/// modules' own tests).
pub(super) fn minimal(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut map = env(&[
        ("JWT_SECRET", STRONG),
        ("LLM_PROVIDER_1_ID", "echo"),
        ("LLM_PROVIDER_1_NAME", "Echo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
    ]);
    map.extend(env(extra));
    map
}

fn loaded(env: &BTreeMap<String, String>, file: Option<&str>) -> Loaded {
    match load(env, file) {
        Ok(loaded) => loaded,
        Err(errors) => panic!("should load:\n{errors}"),
    }
}

fn refused(env: &BTreeMap<String, String>, file: Option<&str>) -> Vec<ConfigError> {
    match load(env, file) {
        Ok(loaded) => panic!("should be refused: {:?}", loaded.config),
        Err(errors) => errors.0,
    }
}

fn settings_of(errors: &[ConfigError]) -> Vec<Vec<&'static str>> {
    errors.iter().map(ConfigError::settings).collect()
}

#[test]
fn nothing_but_secret_and_provider_gives_the_documented_defaults() {
    let config = loaded(&minimal(&[]), None).config;
    let mut expected = Config::with_defaults(
        Secret::new(STRONG, Origin::Env),
        vec![ProviderConfig::echo("echo", "Echo")],
    );
    assert_eq!(config, expected);
    // Spot-check the table against PROTOCOL.md §9 rather than against the code itself.
    assert_eq!(config.server.path_prefix, "/chatbox");
    assert_eq!(config.server.port, 8080);
    assert_eq!(config.websocket.max_message_size, Some(1_048_576));
    assert_eq!(config.llm.stream_timeout, Duration::from_secs(120));
    assert_eq!(config.sessions.reconnect_timeout, Duration::from_secs(900));
    assert_eq!(config.rate.admin, RateLimit { limit: 20, window: Duration::from_secs(60) });
    assert_eq!(config.storage.backend, StoreConfig::Embedded);
    expected.server.port = 1;
    assert_ne!(config, expected);
}

#[test]
fn missing_everything_reports_secret_and_providers() {
    let errors = refused(&BTreeMap::new(), None);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert!(matches!(errors[0], ConfigError::JwtSecret { problem: SecretProblem::Missing, .. }));
    assert_eq!(errors[1], ConfigError::NoProviders);
}

#[test]
fn file_alone_is_enough() {
    let file = format!(
        r#"
[server]
port = 9000

[chatbox]
jwt_secret = "{STRONG}"
path_prefix = "/api/"
llm_stream_timeout = "3m"
max_message_size = "2048"

[chatbox.websocket]
ping_interval = "20s"

[[llm.providers]]
id = "gpt-4o"
name = "GPT-4o"
type = "openai"
endpoint = "https://api.openai.com/v1"
apiKey = "sk-file"
model = "gpt-4o"
"#
    );
    let config = loaded(&BTreeMap::new(), Some(&file)).config;
    assert_eq!(config.server.port, 9000);
    assert_eq!(config.server.path_prefix, "/api");
    assert_eq!(config.auth.jwt_secret.origin(), Origin::File);
    assert_eq!(config.llm.stream_timeout, Duration::from_secs(180));
    assert_eq!(config.websocket.ping_interval, Duration::from_secs(20));
    assert_eq!(config.websocket.max_message_size, Some(2048));
    assert_eq!(config.llm.providers[0].api_key.expose(), "sk-file");
}

#[test]
fn environment_wins_over_file() {
    let file = r#"
[server]
port = 9000
[chatbox]
jwt_secret = "file-value-is-not-used-because-env-wins"
rate_limit = 5
reconnect_timeout = "10m"
allowed_origins = "https://file.example"
"#;
    let env = minimal(&[
        ("SERVER_PORT", "9100"),
        ("RATE_LIMIT", "7"),
        ("RECONNECT_TIMEOUT", "12m"),
        ("WS_ALLOWED_ORIGINS", "https://env.example"),
    ]);
    let config = loaded(&env, Some(file)).config;
    assert_eq!(config.server.port, 9100);
    assert_eq!(config.rate.messages.limit, 7);
    assert_eq!(config.sessions.reconnect_timeout, Duration::from_secs(720));
    assert_eq!(config.websocket.allowed_origins, ["https://env.example"]);
    assert_eq!(config.auth.jwt_secret.expose(), STRONG);
    assert_eq!(config.auth.jwt_secret.origin(), Origin::Env);
}

#[test]
fn blank_environment_variables_count_as_unset() {
    let file = "[chatbox]\nrate_limit = 5";
    let config = loaded(&minimal(&[("RATE_LIMIT", "")]), Some(file)).config;
    assert_eq!(config.rate.messages.limit, 5);
}

#[test]
fn durations_use_go_syntax_everywhere() {
    let env = minimal(&[
        ("LLM_STREAM_TIMEOUT", "2m30s"),
        ("LLM_FIRST_CHUNK_TIMEOUT", "1.5s"),
        ("LLM_IDLE_TIMEOUT", "45s"),
        ("RESUME_WINDOW", "90s"),
        ("MONGO_RETRY_DELAY", "250ms"),
        ("SESSION_IDLE_TIMEOUT", "2h"),
    ]);
    let config = loaded(&env, None).config;
    assert_eq!(config.llm.stream_timeout, Duration::from_secs(150));
    assert_eq!(config.llm.first_chunk_timeout, Duration::from_millis(1500));
    assert_eq!(config.llm.idle_timeout, Duration::from_secs(45));
    assert_eq!(config.llm.resume_window, Duration::from_secs(90));
    assert_eq!(config.storage.retry.delay, Duration::from_millis(250));
    assert_eq!(config.sessions.idle_timeout, Duration::from_secs(7200));

    let errors = refused(&minimal(&[("LLM_STREAM_TIMEOUT", "120")]), None);
    assert_eq!(settings_of(&errors), [["LLM_STREAM_TIMEOUT"]]);
    assert!(errors[0].to_string().contains("Go syntax"), "{}", errors[0]);
}

#[test]
fn lists_accept_comma_strings_and_arrays() {
    let file = r#"
[chatbox]
allowed_origins = ["https://a.example", " https://b.example "]
cors_allowed_origins = "https://c.example, https://d.example,"
trusted_proxies = ["10.0.0.0/8", "203.0.113.7"]
frame_ancestors = "'self', https://portal.example"
[notification]
adminEmails = ["ops@example.org", "oncall@example.org"]
adminPhones = "+15550001, +15550002"
"#;
    let config = loaded(&minimal(&[]), Some(file)).config;
    assert_eq!(config.websocket.allowed_origins, ["https://a.example", "https://b.example"]);
    assert_eq!(config.http.cors_allowed_origins, ["https://c.example", "https://d.example"]);
    let proxies: Vec<String> = config.http.trusted_proxies.iter().map(|n| n.to_string()).collect();
    assert_eq!(proxies, ["10.0.0.0/8", "203.0.113.7/32"]);
    assert_eq!(config.http.frame_ancestors, ["'self'", "https://portal.example"]);
    assert_eq!(config.alerts.admin_emails, ["ops@example.org", "oncall@example.org"]);
    assert_eq!(config.alerts.admin_phones, ["+15550001", "+15550002"]);

    let env = minimal(&[("ADMIN_EMAILS", "a@x.org,b@x.org"), ("ADMIN_PHONES", "+1,+2")]);
    let config = loaded(&env, Some(file)).config;
    assert_eq!(config.alerts.admin_emails, ["a@x.org", "b@x.org"]);
    assert_eq!(config.alerts.admin_phones, ["+1", "+2"]);
}

#[test]
fn admin_emails_fall_back_to_mail_admin_email() {
    let file = "[mail]\nadminEmail = \"boss@example.org\"";
    let config = loaded(&minimal(&[]), Some(file)).config;
    assert_eq!(config.alerts.admin_emails, ["boss@example.org"]);
}

#[test]
fn health_probe_networks_default_to_the_configured_proxies_plus_loopback() {
    let config = loaded(&minimal(&[("TRUSTED_PROXIES", "100.64.0.0/10")]), None).config;
    let shown: Vec<String> =
        config.http.health_probe_networks.iter().map(|n| n.to_string()).collect();
    assert_eq!(shown, ["100.64.0.0/10", "127.0.0.0/8", "::1/128"]);
    let config = loaded(&minimal(&[("HEALTH_PROBE_NETWORKS", "10.9.0.0/16")]), None).config;
    assert_eq!(config.http.health_probe_networks.len(), 1);
}

#[test]
fn invalid_networks_are_errors_listing_every_bad_entry() {
    let env = minimal(&[
        ("TRUSTED_PROXIES", "10.0.0.0/8, proxy.local, 300.1.1.1"),
        ("METRICS_ALLOWED_NETWORKS", "everyone"),
    ]);
    let errors = refused(&env, None);
    assert_eq!(
        errors,
        vec![
            ConfigError::InvalidNetworks {
                setting: SettingName { env: "TRUSTED_PROXIES", file: "chatbox.trusted_proxies" },
                entries: vec!["proxy.local".into(), "300.1.1.1".into()],
            },
            ConfigError::InvalidNetworks {
                setting: SettingName {
                    env: "METRICS_ALLOWED_NETWORKS",
                    file: "chatbox.metrics_allowed_networks"
                },
                entries: vec!["everyone".into()],
            },
        ]
    );
}

#[test]
fn placeholder_is_checked_only_on_file_jwt_secrets() {
    let marked = format!("{STRONG}-REPLACE_WITH");
    let from_env = env(&[
        ("JWT_SECRET", marked.as_str()),
        ("LLM_PROVIDER_1_ID", "e"),
        ("LLM_PROVIDER_1_NAME", "E"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
    ]);
    assert!(load(&from_env, None).is_ok());

    let mut from_file = from_env.clone();
    from_file.remove("JWT_SECRET");
    let file = format!("[chatbox]\njwt_secret = \"{marked}\"");
    let errors = refused(&from_file, Some(&file));
    assert_eq!(
        errors,
        vec![ConfigError::JwtSecret {
            setting: SettingName { env: "JWT_SECRET", file: "chatbox.jwt_secret" },
            problem: SecretProblem::Placeholder { marker: "REPLACE_WITH" },
        }]
    );
    assert!(errors[0].to_string().contains("openssl rand -base64 48"));
}

#[test]
fn max_message_size_env_falls_back_with_a_warning_file_zero_means_unlimited() {
    for bad in ["0", "-1", "big"] {
        let loaded = loaded(&minimal(&[("MAX_MESSAGE_SIZE", bad)]), None);
        assert_eq!(loaded.config.websocket.max_message_size, Some(1_048_576), "{bad}");
        assert!(loaded.warnings.iter().any(|w| w.contains("MAX_MESSAGE_SIZE")), "{bad}");
    }
    let config = loaded(&minimal(&[("MAX_MESSAGE_SIZE", "4096")]), None).config;
    assert_eq!(config.websocket.max_message_size, Some(4096));

    let loaded = loaded(&minimal(&[]), Some("[chatbox]\nmax_message_size = 0"));
    assert_eq!(loaded.config.websocket.max_message_size, None);
    assert!(loaded.warnings.iter().any(|w| w.contains("no size limit")));

    let errors = refused(&minimal(&[]), Some("[chatbox]\nmax_message_size = \"big\""));
    assert_eq!(settings_of(&errors), [["MAX_MESSAGE_SIZE"]]);
}

#[test]
fn encryption_key_from_file_with_placeholder_is_refused_from_env_only_length_counts() {
    let file = format!("[chatbox]\nencryption_key = \"CHANGE_ME{}\"", "k".repeat(23));
    assert_eq!(settings_of(&refused(&minimal(&[]), Some(&file))), [["ENCRYPTION_KEY"]]);
    let env_key = format!("CHANGE_ME{}", "k".repeat(23));
    let config = loaded(&minimal(&[("ENCRYPTION_KEY", &env_key)]), None).config;
    assert_eq!(config.storage.encryption_key.len(), 32);
    assert_eq!(
        settings_of(&refused(&minimal(&[("ENCRYPTION_KEY", "short")]), None)),
        [["ENCRYPTION_KEY"]]
    );
}

#[test]
fn booleans() {
    let env = minimal(&[
        ("JWT_REQUIRE_EXP", "YES"),
        ("JWT_DISABLE_QUERY_TOKEN", "1"),
        ("PAUSE_AI_WHEN_ASSISTED", "false"),
        ("ENABLE_METRICS", "No"),
    ]);
    let config = loaded(&env, None).config;
    assert!(config.auth.require_exp && config.auth.disable_query_token);
    assert!(!config.llm.pause_ai_when_assisted && !config.http.enable_metrics);
    let errors = refused(&minimal(&[("JWT_REQUIRE_EXP", "sometimes")]), None);
    assert_eq!(settings_of(&errors), [["JWT_REQUIRE_EXP"]]);
}

#[test]
fn providers_from_file_env_overrides_and_env_only_definitions_in_order() {
    let file = r#"
[[llm.providers]]
id = "gpt"
name = "GPT"
type = "openai"
endpoint = "https://api.openai.com/v1"
apiKey = "sk-file"
model = "gpt-4o-mini"

[[llm.providers]]
id = "claude"
name = "Claude"
type = "anthropic"
endpoint = "https://api.anthropic.com"
apiKey = "ak-file"
"#;
    let env = env(&[
        ("JWT_SECRET", STRONG),
        ("LLM_PROVIDER_1_API_KEY", "sk-env"),
        ("LLM_PROVIDER_1_MODEL", "gpt-4o"),
        ("LLM_PROVIDER_3_ID", "dify"),
        ("LLM_PROVIDER_3_NAME", "Support bot"),
        ("LLM_PROVIDER_3_TYPE", "dify"),
        ("LLM_PROVIDER_3_ENDPOINT", "http://dify.internal/v1"),
        ("LLM_PROVIDER_3_API_KEY", "app-key"),
        ("LLM_PROVIDER_4_ID", "demo-echo"),
        ("LLM_PROVIDER_4_NAME", "Echo"),
        ("LLM_PROVIDER_4_TYPE", "echo"),
    ]);
    let loaded = loaded(&env, Some(file));
    let providers = &loaded.config.llm.providers;
    let ids: Vec<&str> = providers.iter().map(|p| p.id.as_str()).collect();
    assert_eq!(ids, ["gpt", "claude", "dify", "demo-echo"]);
    assert_eq!(providers[0].api_key.expose(), "sk-env");
    assert_eq!(providers[0].api_key.origin(), Origin::Env);
    assert_eq!(providers[0].model, "gpt-4o");
    assert_eq!(providers[0].name, "GPT");
    assert_eq!(providers[1].api_key.expose(), "ak-file");
    assert_eq!(providers[2].kind, ProviderKind::Dify);
    assert_eq!(providers[3].kind, ProviderKind::Echo);
    assert_eq!(loaded.config.llm.default_provider().map(|p| p.id.as_str()), Some("gpt"));
    assert!(loaded.config.llm.provider("dify").is_some());
}

#[test]
fn providers_are_also_read_from_chatbox_llm_providers() {
    let file = r#"
[[chatbox.llm.providers]]
id = "e"
name = "E"
type = "echo"
"#;
    let config = loaded(&env(&[("JWT_SECRET", STRONG)]), Some(file)).config;
    assert_eq!(config.llm.providers.len(), 1);

    let both = format!("{file}\n[[llm.providers]]\nid = \"x\"\nname = \"X\"\ntype = \"echo\"\n");
    let loaded = loaded(&env(&[("JWT_SECRET", STRONG)]), Some(&both));
    assert_eq!(loaded.config.llm.providers[0].id, "x");
    assert!(loaded.warnings.iter().any(|w| w.contains("chatbox.llm.providers is ignored")));
}

#[test]
fn provider_problems_each_name_the_provider() {
    let env = env(&[
        ("JWT_SECRET", STRONG),
        ("LLM_PROVIDER_1_ID", "a"),
        ("LLM_PROVIDER_1_NAME", "A"),
        ("LLM_PROVIDER_1_TYPE", "gemini"),
        ("LLM_PROVIDER_2_ID", "b"),
        ("LLM_PROVIDER_2_TYPE", "openai"),
        ("LLM_PROVIDER_2_ENDPOINT", "http://api.example.com"),
        ("LLM_PROVIDER_3_ID", "c"),
        ("LLM_PROVIDER_3_NAME", "C"),
        ("LLM_PROVIDER_4_ID", "d"),
        ("LLM_PROVIDER_4_NAME", "D"),
        ("LLM_PROVIDER_4_TYPE", "echo"),
        ("LLM_PROVIDER_5_ID", "d"),
        ("LLM_PROVIDER_5_NAME", "D again"),
        ("LLM_PROVIDER_5_TYPE", "echo"),
    ]);
    let texts: Vec<String> = refused(&env, None).iter().map(ToString::to_string).collect();
    assert_eq!(texts.len(), 5, "{texts:#?}");
    assert!(texts[0].starts_with("LLM provider #1 (id \"a\"): unknown type \"gemini\""));
    assert!(texts[1].starts_with(
        "LLM provider #3 (id \"c\"): missing LLM_PROVIDER_3_TYPE / llm.providers[2].type, \
         LLM_PROVIDER_3_ENDPOINT / llm.providers[2].endpoint, \
         LLM_PROVIDER_3_API_KEY / llm.providers[2].apiKey"
    ));
    // After the two dropped definitions, positions are those of the providers kept; the keys
    // named are those of the slot the provider was defined in.
    assert!(
        texts[2].starts_with(
            "LLM provider #1 (id \"b\"): missing LLM_PROVIDER_2_NAME / llm.providers[1].name, \
             LLM_PROVIDER_2_API_KEY / llm.providers[1].apiKey"
        ),
        "{texts:#?}"
    );
    assert!(texts[3].starts_with("LLM provider #1 (id \"b\"): endpoint must use https"));
    assert!(texts[4].contains("share the id \"d\""));
}

#[test]
fn echo_provider_needs_no_name_and_defaults_it_to_its_id() {
    let env = env(&[
        ("JWT_SECRET", STRONG),
        ("LLM_PROVIDER_1_ID", "demo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
    ]);
    let providers = loaded(&env, None).config.llm.providers;
    assert_eq!(providers, vec![ProviderConfig::echo("demo", "demo")]);
    // Other types still need a name (their display name is not guessed).
    let env = minimal(&[
        ("LLM_PROVIDER_2_ID", "gpt"),
        ("LLM_PROVIDER_2_TYPE", "openai"),
        ("LLM_PROVIDER_2_ENDPOINT", "https://api.example.com/v1"),
        ("LLM_PROVIDER_2_API_KEY", "sk-1234567890"),
    ]);
    let texts: Vec<String> = refused(&env, None).iter().map(ToString::to_string).collect();
    assert_eq!(
        texts,
        ["LLM provider #2 (id \"gpt\"): missing LLM_PROVIDER_2_NAME / llm.providers[1].name"]
    );
}

#[test]
fn malformed_provider_entries_are_reported() {
    let file = "[llm]\nproviders = [\"openai\", { id = 5, name = [1], type = \"openai\" }]";
    let errors = refused(&env(&[("JWT_SECRET", STRONG)]), Some(file));
    let texts: Vec<String> = errors.iter().map(ToString::to_string).collect();
    assert!(texts[0].starts_with("llm.providers entry #1: expected a table"), "{texts:#?}");
    assert!(texts[1].starts_with("llm.providers entry #2, field name: expected a string"));
    assert!(
        texts.iter().any(|t| t.contains("missing LLM_PROVIDER_2_NAME / llm.providers[1].name")),
        "{texts:#?}"
    );
    assert!(!errors.contains(&ConfigError::NoProviders));

    let errors = refused(&env(&[("JWT_SECRET", STRONG)]), Some("[llm]\nproviders = 3"));
    assert!(errors[0].to_string().contains("expected an array of tables"), "{errors:?}");
}

#[test]
fn gap_in_env_provider_numbers_is_a_warning() {
    let env = env(&[
        ("JWT_SECRET", STRONG),
        ("LLM_PROVIDER_2_ID", "e"),
        ("LLM_PROVIDER_2_NAME", "E"),
        ("LLM_PROVIDER_2_TYPE", "echo"),
    ]);
    let loaded = loaded(&env, None);
    assert_eq!(loaded.config.llm.providers.len(), 1);
    assert!(
        loaded.warnings.iter().any(|w| w.contains("LLM_PROVIDER_2_*")),
        "{:?}",
        loaded.warnings
    );
}

#[test]
fn mongo_uri_from_env_or_any_file_location() {
    let config = loaded(&minimal(&[("MONGO_URI", "mongodb://u:p@db/chat")]), None).config;
    let StoreConfig::Mongo(mongo) = &config.storage.backend else { panic!("mongo expected") };
    assert_eq!((mongo.database.as_str(), mongo.collection.as_str()), ("chat", "sessions"));
    // Issue 16: short client budgets, so no store call waits long on a server that is down.
    assert_eq!(mongo.connect_timeout, Duration::from_secs(3));
    assert_eq!(mongo.server_selection_timeout, Duration::from_secs(2));
    assert_eq!(config.storage.history_read_timeout, Duration::from_secs(1));
    assert_eq!(config.storage.call_timeout, Duration::from_secs(2));
    let set = loaded(&minimal(&[("STORE_CALL_TIMEOUT", "250ms")]), None).config;
    assert_eq!(set.storage.call_timeout, Duration::from_millis(250));
    // Issue 18: the embedded store's wait for company, none unless set.
    assert_eq!(config.storage.commit_linger, Duration::ZERO);
    let set = loaded(&minimal(&[("STORE_COMMIT_LINGER", "1ms")]), None).config;
    assert_eq!(set.storage.commit_linger, Duration::from_millis(1));
    assert!(set.validate().is_ok(), "1ms is valid");
    let set = loaded(&minimal(&[("STORE_COMMIT_LINGER", "250us")]), None).config;
    assert_eq!(set.storage.commit_linger, Duration::from_micros(250));

    for file in [
        "[mongo]\nuri = \"mongodb://db1\"",
        "[database]\nuri = \"mongodb://db1\"",
        "[dbs.chat]\nuri = \"mongodb://db1\"",
    ] {
        let loaded = loaded(&minimal(&[]), Some(file));
        assert!(matches!(loaded.config.storage.backend, StoreConfig::Mongo(_)), "{file}");
        assert!(loaded.warnings.iter().any(|w| w.contains("no credentials")), "{file}");
    }
    // A long reconnect window with no TTL of its own: the TTL follows it; set, they must agree.
    let long = loaded(&minimal(&[("RECONNECT_TIMEOUT", "30m")]), None).config;
    assert_eq!(long.sessions.ttl, Duration::from_secs(30 * 60));
    assert!(long.validate().is_ok());
    let both = minimal(&[("RECONNECT_TIMEOUT", "30m"), ("SESSION_TTL", "15m")]);
    assert_eq!(settings_of(&refused(&both, None)), [["SESSION_TTL", "RECONNECT_TIMEOUT"]]);
    // The original connected through `dbs.chat.uri`; its `database.uri` only warned (§9).
    let both = "[database]\nuri = \"mongodb://warn-only\"\n[dbs.chat]\nuri = \"mongodb://db1\"";
    let StoreConfig::Mongo(mongo) = loaded(&minimal(&[]), Some(both)).config.storage.backend else {
        panic!("mongo")
    };
    assert_eq!(mongo.uri.expose(), "mongodb://db1");
    let errors = refused(&minimal(&[("MONGO_URI", "redis://cache")]), None);
    assert_eq!(settings_of(&errors), [["MONGO_URI"]]);
    assert!(!errors[0].to_string().contains("cache"));
}

#[test]
fn smtp_and_sms() {
    let env = minimal(&[
        ("SMTP_HOST", "smtp.example.org"),
        ("SMTP_FROM", "chatbox@example.org"),
        ("SMTP_PASSWORD", "smtp-pass"),
        ("SMTP_TLS", "TLS"),
        ("SMS_ACCOUNT_SID", "AC123"),
    ]);
    let without_sms: BTreeMap<_, _> = env
        .iter()
        .filter(|(k, _)| !k.starts_with("SMS_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let loaded = loaded(&without_sms, None);
    let smtp = loaded.config.alerts.smtp.as_ref().unwrap();
    assert_eq!((smtp.port, smtp.tls), (587, SmtpTls::Tls));
    assert_eq!(loaded.config.alerts.sms, None);
    assert_eq!(
        settings_of(&refused(&env, None)),
        [["SMS_AUTH_TOKEN", "SMS_FROM_NUMBER", "ADMIN_PHONES"]]
    );

    let errors = refused(&minimal(&[("SMTP_HOST", "smtp.example.org")]), None);
    assert_eq!(settings_of(&errors), [["SMTP_FROM", "SMTP_HOST"]]);
    let errors = refused(&minimal(&[("SMTP_TLS", "ssl")]), None);
    assert_eq!(settings_of(&errors), [["SMTP_TLS"]]);
}

#[test]
fn sms_needs_every_setting_and_an_http_base_url() {
    let full = [
        ("SMS_ACCOUNT_SID", "AC123"),
        ("SMS_AUTH_TOKEN", "sms-token"),
        ("SMS_FROM_NUMBER", "+15550000"),
        ("ADMIN_PHONES", "+15550001, +15550002"),
    ];
    let sms = loaded(&minimal(&full), None).config.alerts.sms.expect("SMS on");
    assert_eq!(sms.api_base_url, "https://api.twilio.com");
    assert_eq!((sms.account_sid.as_str(), sms.from_number.as_str()), ("AC123", "+15550000"));

    let errors = refused(&minimal(&[("SMS_AUTH_TOKEN", "sms-token")]), None);
    assert_eq!(settings_of(&errors), [["SMS_ACCOUNT_SID", "SMS_FROM_NUMBER", "ADMIN_PHONES"]]);
    let report = ConfigErrors(errors).to_string();
    assert!(
        report.contains("SMS alerts partially configured: missing SMS_ACCOUNT_SID"),
        "{report}"
    );
    assert!(!report.contains("sms-token"), "{report}");

    let mut bad_base = full.to_vec();
    bad_base.push(("SMS_API_BASE_URL", "ftp://api.example"));
    assert_eq!(settings_of(&refused(&minimal(&bad_base), None)), [["SMS_API_BASE_URL"]]);

    let phones_only = loaded(&minimal(&[("ADMIN_PHONES", "+1")]), None);
    assert_eq!(phones_only.config.alerts.sms, None, "recipients alone do not turn SMS on");
}

#[test]
fn several_bad_settings_are_all_reported_in_one_report() {
    let env = env(&[
        ("JWT_SECRET", "admin123"),
        ("CHATBOX_PATH_PREFIX", "chatbox"),
        ("RATE_LIMIT", "many"),
        ("ADMIN_RATE_WINDOW", "1 minute"),
        ("WS_PING_INTERVAL", "90s"),
        ("TRUSTED_PROXIES", "everywhere"),
        ("LOG_FORMAT", "xml"),
    ]);
    let errors = ConfigErrors(refused(&env, None));
    let report = errors.to_string();
    let lines: Vec<&str> = report.lines().collect();
    assert_eq!(lines.len(), errors.len());
    assert!(lines.iter().all(|line| line.starts_with("- ")), "{report}");
    for name in [
        "JWT_SECRET",
        "CHATBOX_PATH_PREFIX",
        "RATE_LIMIT /",
        "ADMIN_RATE_WINDOW",
        "WS_PING_INTERVAL",
        "TRUSTED_PROXIES",
        "LOG_FORMAT",
        "no LLM provider",
    ] {
        assert!(report.contains(name), "{name} missing from:\n{report}");
    }
    // JWT secret: too short and weak; plus the other six settings and no providers.
    assert_eq!(errors.len(), 9, "{report}");
}

#[test]
fn rules_about_unreadable_settings_are_not_reported_on_top() {
    // RECONNECT_TIMEOUT is unreadable; SESSION_TTL would violate "≥ reconnect" against the
    // default only, so just the parse error is reported.
    let env = minimal(&[("RECONNECT_TIMEOUT", "soon"), ("SESSION_TTL", "5m")]);
    assert_eq!(settings_of(&refused(&env, None)), [["RECONNECT_TIMEOUT"]]);
}

#[test]
fn file_syntax_errors_are_reported_with_everything_else() {
    let errors = refused(&minimal(&[("RATE_LIMIT", "x")]), Some("[chatbox\njwt_secret = 1"));
    assert!(matches!(errors[0], ConfigError::FileSyntax { line: 1, .. }), "{errors:?}");
    assert_eq!(errors[1].settings(), ["RATE_LIMIT"]);
}

#[test]
fn loaded_config_debug_shows_no_secret() {
    let env = minimal(&[
        ("ENCRYPTION_KEY", "0123456789abcdefghijklmnopqrstuv"),
        ("SMTP_HOST", "smtp.x.org"),
        ("SMTP_FROM", "a@x.org"),
        ("SMTP_PASSWORD", "smtp-hunter2"),
        ("SMS_ACCOUNT_SID", "AC1"),
        ("SMS_AUTH_TOKEN", "sms-hunter3"),
        ("SMS_FROM_NUMBER", "+15550000"),
        ("ADMIN_PHONES", "+15550001"),
        ("LLM_PROVIDER_2_ID", "gpt"),
        ("LLM_PROVIDER_2_NAME", "GPT"),
        ("LLM_PROVIDER_2_TYPE", "openai"),
        ("LLM_PROVIDER_2_ENDPOINT", "https://api.openai.com/v1"),
        ("LLM_PROVIDER_2_API_KEY", "sk-hunter4"),
        ("MONGO_URI", "mongodb://app:db-hunter5@db/chat"),
    ]);
    let loaded = loaded(&env, None);
    let shown = format!("{loaded:?} {loaded:#?}");
    for secret in
        [STRONG, "0123456789abcdefghijklmnopqrstuv", "smtp-hunter2", "sms-hunter3", "sk-hunter4"]
    {
        assert!(!shown.contains(secret), "{secret} leaked");
    }
    assert!(!shown.contains("db-hunter5"));
}

#[test]
fn errors_never_contain_secret_values() {
    let secret = "hunter2-very-bad";
    let env = env(&[("JWT_SECRET", secret), ("ENCRYPTION_KEY", secret), ("SMTP_PASSWORD", secret)]);
    let report = ConfigErrors(refused(&env, None)).to_string();
    assert!(!report.contains(secret), "{report}");
}

fn any_env_value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9]{0,25}",
        "[0-9.]{1,30}(ns|us|µs|ms|s|m|h)?",
        "(https?|ftp)://[a-z0-9.\\[\\]:]{0,20}/?",
        "[ ,a-zA-Z0-9/.:]{0,40}",
    ]
}

const ENV_NAMES: &[&str] = &[
    "JWT_SECRET",
    "CHATBOX_PATH_PREFIX",
    "ENCRYPTION_KEY",
    "MAX_MESSAGE_SIZE",
    "RECONNECT_TIMEOUT",
    "LLM_STREAM_TIMEOUT",
    "LLM_FIRST_CHUNK_TIMEOUT",
    "WS_PING_INTERVAL",
    "SERVER_PORT",
    "TRUSTED_PROXIES",
    "WS_ALLOWED_ORIGINS",
    "MONGO_URI",
    "SMTP_HOST",
    "ALERT_WEBHOOK_URL",
    "LOG_FORMAT",
    "JWT_REQUIRE_EXP",
    "LLM_PROVIDER_1_TYPE",
    "LLM_PROVIDER_1_ENDPOINT",
    "LLM_PROVIDER_1_ID",
    "LLM_PROVIDER_10_TYPE",
];

proptest! {
    /// Whatever the environment and file hold, `load` returns (no panic, no hang), and a refusal
    /// always carries at least one problem.
    #[test]
    fn load_never_panics(
        values in proptest::collection::vec((0..ENV_NAMES.len(), any_env_value()), 0..12),
        file in proptest::option::of(prop_oneof![
            any::<String>(),
            "\\[(chatbox|llm|server)\\]\n[a-z_]{1,20} = (\"[^\"\n]{0,20}\"|[0-9]{1,20}|\\[\\]|true)\n",
            "\\[\\[llm.providers\\]\\]\n(id|type|endpoint|apiKey) = (\"[^\"\n]{0,20}\"|[0-9]{1,5})\n",
        ]),
    ) {
        let env: BTreeMap<String, String> =
            values.into_iter().map(|(i, v)| (ENV_NAMES[i].to_string(), v)).collect();
        if let Err(errors) = load(&env, file.as_deref()) {
            prop_assert!(!errors.is_empty());
        }
    }
}

#[test]
fn fallbacks_load_from_env_and_file_and_every_problem_is_listed() {
    let file = r#"
[[llm.providers]]
id = "a"
name = "A"
type = "echo"
fallback = ["b", "ghost"]

[[llm.providers]]
id = "b"
name = "B"
type = "echo"
fallback = "c"

[[llm.providers]]
id = "c"
name = "C"
type = "echo"
"#;
    let ok =
        loaded(&env(&[("JWT_SECRET", STRONG), ("LLM_PROVIDER_1_FALLBACK", "b, c")]), Some(file));
    let fallbacks: Vec<Vec<String>> =
        ok.config.llm.providers.iter().map(|p| p.fallback.clone()).collect();
    assert_eq!(fallbacks, vec![vec!["b".to_string(), "c".into()], vec!["c".into()], vec![]]);
    assert_eq!(ok.config.llm.user_token_budget, 0, "the budget is off by default");

    let texts: Vec<String> =
        refused(&env(&[("JWT_SECRET", STRONG), ("LLM_PROVIDER_3_FALLBACK", "a,c")]), Some(file))
            .iter()
            .map(ToString::to_string)
            .collect();
    assert_eq!(
        texts,
        vec![
            "LLM provider #1 (id \"a\"): LLM_PROVIDER_1_FALLBACK / llm.providers[0].fallback \
             names \"ghost\", which is not a configured provider id",
            "LLM provider #1 (id \"a\"): LLM_PROVIDER_1_FALLBACK / llm.providers[0].fallback \
             makes a fallback cycle: a → b → c → a",
        ],
        "c → c is in the same group as a → b → c → a and is reported with it"
    );
    let budget = loaded(&minimal(&[("USER_TOKEN_BUDGET", "5000")]), None);
    assert_eq!(budget.config.llm.user_token_budget, 5000);
}
