//! Configuration properties of the seed design (properties 17, 18, 21, 22), driven through
//! `chatbox_core::config::load` with generated environment maps and files.

use std::collections::BTreeMap;
use std::time::Duration;

use chatbox_core::config::{
    load, ConfigError, ConfigErrors, Origin, GENERATE_HINT, MIN_JWT_SECRET_BYTES, WEAK_PATTERNS,
};
use chatbox_core::godur;
use proptest::prelude::*;

type Env = BTreeMap<String, String>;

fn is_weak(secret: &str) -> bool {
    let lower = secret.to_ascii_lowercase();
    WEAK_PATTERNS.iter().any(|p| lower.contains(p))
}

fn echo_provider_env() -> Env {
    [
        ("LLM_PROVIDER_1_ID", "echo"),
        ("LLM_PROVIDER_1_NAME", "Echo"),
        ("LLM_PROVIDER_1_TYPE", "echo"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Puts `secret` in the environment or in a file, and loads.
fn load_with_secret(
    secret: &str,
    in_file: bool,
) -> Result<chatbox_core::config::Loaded, ConfigErrors> {
    let mut env = echo_provider_env();
    if in_file {
        let file = format!("[chatbox]\njwt_secret = {}\n", toml::Value::String(secret.into()));
        load(&env, Some(&file))
    } else {
        env.insert("JWT_SECRET".into(), secret.into());
        load(&env, None)
    }
}

/// A secret that breaks the rule: too short, or long enough but containing a weak pattern in
/// some mix of cases.
fn weak_secret() -> impl Strategy<Value = String> {
    let short =
        any::<String>().prop_filter("shorter than 32 bytes", |s| s.len() < MIN_JWT_SECRET_BYTES);
    let with_pattern = (
        "[A-Za-z0-9+/=_-]{0,40}",
        proptest::sample::select(WEAK_PATTERNS.to_vec()),
        proptest::collection::vec(any::<bool>(), 11),
        "[A-Za-z0-9+/=_-]{0,40}",
    )
        .prop_map(|(before, pattern, upper, after)| {
            let cased: String = pattern
                .chars()
                .zip(upper)
                .map(|(c, up)| if up { c.to_ascii_uppercase() } else { c })
                .collect();
            let mut secret = format!("{before}{cased}{after}");
            while secret.len() < MIN_JWT_SECRET_BYTES {
                secret.push('Q');
            }
            secret
        });
    prop_oneof![short, with_pattern]
}

fn strong_secret() -> impl Strategy<Value = String> {
    "[A-Za-z0-9]{32,96}".prop_filter("avoids weak patterns", |s| !is_weak(s))
}

proptest! {
    /// Property 17: any secret shorter than 32 bytes or containing a weak pattern (any case) is
    /// refused, and every resulting error says how to generate a strong one.
    #[test]
    fn prop_17_weak_secrets_rejected(secret in weak_secret(), in_file in any::<bool>()) {
        let errors = match load_with_secret(&secret, in_file) {
            Ok(_) => return Err(TestCaseError::fail(format!("accepted {secret:?}"))),
            Err(errors) => errors,
        };
        prop_assert!(!errors.is_empty());
        for error in &errors {
            prop_assert!(
                matches!(error, ConfigError::JwtSecret { .. }),
                "unexpected error {error}"
            );
            prop_assert!(error.to_string().contains(GENERATE_HINT), "{error}");
        }
    }

    /// Property 18: random alphanumeric secrets of at least 32 bytes without weak patterns are
    /// accepted, from either source.
    #[test]
    fn prop_18_strong_secrets_accepted(secret in strong_secret(), in_file in any::<bool>()) {
        match load_with_secret(&secret, in_file) {
            Ok(loaded) => {
                prop_assert_eq!(loaded.config.auth.jwt_secret.expose(), secret.as_str());
                let origin = if in_file { Origin::File } else { Origin::Env };
                prop_assert_eq!(loaded.config.auth.jwt_secret.origin(), origin);
            }
            Err(errors) => return Err(TestCaseError::fail(format!("refused:\n{errors}"))),
        }
    }
}

/// A valid environment plus the values the faults need to break it.
#[derive(Debug, Clone)]
struct Base {
    env: Env,
    provider_1_id: String,
    stream_secs: u64,
    pong_secs: u64,
}

/// Durations spelled in several Go forms: `2m0s`, `120s`, `120000ms`.
fn duration_text(secs: u64, style: u8) -> String {
    match style % 3 {
        0 => godur::format(Duration::from_secs(secs)),
        1 => format!("{secs}s"),
        _ => format!("{}ms", secs * 1000),
    }
}

fn bool_text() -> impl Strategy<Value = String> {
    proptest::sample::select(vec!["true", "false", "1", "0", "yes", "no", "TRUE", "No"])
        .prop_map(str::to_string)
}

fn cidr() -> impl Strategy<Value = String> {
    prop_oneof![
        (any::<[u8; 4]>(), 0u8..=32)
            .prop_map(|(a, p)| format!("{}.{}.{}.{}/{p}", a[0], a[1], a[2], a[3])),
        any::<[u8; 4]>().prop_map(|a| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])),
        (any::<u16>(), 16u8..=128).prop_map(|(h, p)| format!("fd{:02x}::/{p}", h & 0xff)),
    ]
}

fn list_of(item: impl Strategy<Value = String>, max: usize) -> impl Strategy<Value = String> {
    proptest::collection::vec(item, 1..=max).prop_map(|items| items.join(", "))
}

/// Timings that satisfy every relation: first chunk and idle ≤ stream, ping < pong,
/// TTL ≥ reconnect, retry cap ≥ delay.
#[derive(Debug, Clone)]
struct Timings {
    stream: u64,
    first_chunk: u64,
    idle: u64,
    pong: u64,
    ping: u64,
    reconnect: u64,
    ttl: u64,
    delay_ms: u64,
    max_delay_ms: u64,
    style: u8,
}

prop_compose! {
    fn timings()(stream in 10u64..=600, pong in 2u64..=300, reconnect in 1u64..=7200,
                 delay_ms in 1u64..=2000, style in any::<u8>())
                (first_chunk in 1..=stream, idle in 1..=stream, ping in 1..pong,
                 ttl in reconnect..=reconnect * 3, max_delay_ms in delay_ms..=delay_ms * 20,
                 stream in Just(stream), pong in Just(pong), reconnect in Just(reconnect),
                 delay_ms in Just(delay_ms), style in Just(style))
                -> Timings {
        Timings { stream, first_chunk, idle, pong, ping, reconnect, ttl, delay_ms, max_delay_ms, style }
    }
}

/// One upstream provider: (type, endpoint).
fn upstream() -> impl Strategy<Value = (&'static str, String)> {
    (
        proptest::sample::select(vec!["openai", "anthropic", "dify"]),
        prop_oneof![
            "https://api[0-9]{1,3}\\.example\\.com/v1",
            Just("http://localhost:11434/v1".to_string()),
            Just("http://10.1.2.3:8000".to_string()),
            Just("http://llm.default.svc.cluster.local".to_string()),
            Just("http://llm-gateway".to_string()),
        ],
    )
}

/// Counts, sizes and switches within their documented ranges.
#[derive(Debug, Clone)]
struct Numbers {
    limits: Vec<u32>,
    windows: Vec<u64>,
    sizes: Vec<usize>,
    bools: Vec<String>,
    port: u16,
    attempts: u32,
}

prop_compose! {
    fn numbers()(
        limits in proptest::collection::vec(1u32..=10_000, 8),
        windows in proptest::collection::vec(1u64..=3600, 4),
        sizes in proptest::collection::vec(1usize..=1_000_000, 6),
        bools in proptest::collection::vec(bool_text(), 5),
        port in any::<u16>(),
        attempts in 1u32..=10,
    ) -> Numbers {
        Numbers { limits, windows, sizes, bools, port, attempts }
    }
}

/// Settings that may be absent.
#[derive(Debug, Clone)]
struct Optionals {
    key: Option<String>,
    origins: Option<String>,
    proxies: Option<String>,
    metrics: Option<String>,
    mongo: Option<String>,
    smtp: bool,
    webhook: Option<String>,
}

prop_compose! {
    fn optionals()(
        key in proptest::option::of("[A-Za-z0-9]{32}"),
        origins in proptest::option::of(list_of("https://[a-z]{1,10}\\.example(:[0-9]{2,4})?", 3)),
        proxies in proptest::option::of(list_of(cidr(), 3)),
        metrics in proptest::option::of(list_of(cidr(), 3)),
        mongo in proptest::option::of(
            "mongodb(\\+srv)?://([a-z]{1,6}:[a-z0-9]{1,8}@)?db[0-9]{0,2}\\.example(:27017)?/chat"
        ),
        smtp in any::<bool>(),
        webhook in proptest::option::of("https://hooks\\.example\\.org/[a-zA-Z0-9]{1,12}"),
    ) -> Optionals {
        Optionals { key, origins, proxies, metrics, mongo, smtp, webhook }
    }
}

prop_compose! {
    fn base()(
        secret in strong_secret(),
        t in timings(),
        n in numbers(),
        o in optionals(),
        prefix in prop_oneof![Just("/".to_string()), "(/[a-z]{1,8}){1,2}/?"],
        provider_1 in upstream(),
        extra_provider in proptest::option::of(upstream()),
        log_format in proptest::sample::select(vec!["json", "text", "JSON"]),
    ) -> Base {
        let Numbers { limits, windows, sizes, bools, port, attempts } = n;
        let Optionals { key, origins, proxies, metrics, mongo, smtp, webhook } = o;
        let d = |secs: u64| duration_text(secs, t.style);
        let mut env: Vec<(&str, String)> = vec![
            ("JWT_SECRET", secret),
            ("CHATBOX_PATH_PREFIX", prefix),
            ("SERVER_PORT", port.to_string()),
            ("LLM_STREAM_TIMEOUT", d(t.stream)),
            ("LLM_FIRST_CHUNK_TIMEOUT", d(t.first_chunk)),
            ("LLM_IDLE_TIMEOUT", d(t.idle)),
            ("WS_PONG_WAIT", d(t.pong)),
            ("WS_PING_INTERVAL", d(t.ping)),
            ("RECONNECT_TIMEOUT", d(t.reconnect)),
            ("SESSION_TTL", d(t.ttl)),
            ("MONGO_RETRY_DELAY", format!("{}ms", t.delay_ms)),
            ("MONGO_RETRY_MAX_DELAY", format!("{}ms", t.max_delay_ms)),
            ("MONGO_RETRY_ATTEMPTS", attempts.to_string()),
            ("RATE_LIMIT", limits[0].to_string()),
            ("ADMIN_RATE_LIMIT", limits[1].to_string()),
            ("PUBLIC_RATE_LIMIT", limits[2].to_string()),
            ("HELP_ALERT_LIMIT", limits[3].to_string()),
            ("MAX_CONNECTIONS", limits[4].to_string()),
            ("WS_MAX_IN_FLIGHT", limits[5].to_string()),
            ("LLM_HISTORY_MAX_MESSAGES", limits[6].to_string()),
            ("OUTBOX_MAX_ENTRIES", limits[7].to_string()),
            ("RATE_LIMIT_WINDOW", d(windows[0])),
            ("ADMIN_RATE_WINDOW", d(windows[1])),
            ("PUBLIC_RATE_WINDOW", d(windows[2])),
            ("SESSION_CLEANUP_INTERVAL", d(windows[3])),
            ("MAX_MESSAGE_SIZE", sizes[0].to_string()),
            ("WS_SEND_QUEUE", sizes[1].to_string()),
            ("WS_READ_BUFFER_SIZE", sizes[2].to_string()),
            ("WS_WRITE_BUFFER_SIZE", sizes[3].to_string()),
            ("RATE_LIMIT_MAX_KEYS", sizes[4].to_string()),
            ("LLM_HISTORY_MAX_BYTES", sizes[5].to_string()),
            ("JWT_REQUIRE_EXP", bools[0].clone()),
            ("JWT_DISABLE_QUERY_TOKEN", bools[1].clone()),
            ("PAUSE_AI_WHEN_ASSISTED", bools[2].clone()),
            ("ENABLE_METRICS", bools[3].clone()),
            ("LOG_STANDARD_OUTPUT", bools[4].clone()),
            ("LOG_FORMAT", log_format.to_string()),
            ("LLM_PROVIDER_1_ID", "primary".into()),
            ("LLM_PROVIDER_1_NAME", "Primary".into()),
            ("LLM_PROVIDER_1_TYPE", provider_1.0.into()),
            ("LLM_PROVIDER_1_ENDPOINT", provider_1.1),
            ("LLM_PROVIDER_1_API_KEY", "key-1".into()),
            ("LLM_PROVIDER_2_ID", "echo".into()),
            ("LLM_PROVIDER_2_NAME", "Echo".into()),
            ("LLM_PROVIDER_2_TYPE", "echo".into()),
        ];
        if let Some((kind, endpoint)) = extra_provider {
            env.extend([
                ("LLM_PROVIDER_3_ID", "extra".to_string()),
                ("LLM_PROVIDER_3_NAME", "Extra".into()),
                ("LLM_PROVIDER_3_TYPE", kind.into()),
                ("LLM_PROVIDER_3_ENDPOINT", endpoint),
                ("LLM_PROVIDER_3_API_KEY", "key-3".into()),
            ]);
        }
        let optional = [
            ("ENCRYPTION_KEY", key),
            ("WS_ALLOWED_ORIGINS", origins.clone()),
            ("CORS_ALLOWED_ORIGINS", origins),
            ("TRUSTED_PROXIES", proxies),
            ("METRICS_ALLOWED_NETWORKS", metrics),
            ("MONGO_URI", mongo),
            ("ALERT_WEBHOOK_URL", webhook),
        ];
        env.extend(optional.into_iter().filter_map(|(k, v)| Some((k, v?))));
        if smtp {
            env.extend([
                ("SMTP_HOST", "smtp.example.org".to_string()),
                ("SMTP_FROM", "chatbox@example.org".into()),
                ("SMTP_PASSWORD", "smtp-pass".into()),
            ]);
        }
        Base {
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            provider_1_id: "primary".into(),
            stream_secs: t.stream,
            pong_secs: t.pong,
        }
    }
}

/// Ways to break a valid configuration. Each touches its own settings, so any combination
/// is independent: every fault must show up as its own error.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Fault {
    ShortSecret,
    PathPrefixWithoutSlash,
    EncryptionKeyLength,
    UnparsableDuration,
    UnparsableInteger,
    UnparsableBoolean,
    InvalidCidr,
    UnknownLogFormat,
    FirstChunkAboveStream,
    IdleAboveStream,
    PingNotBeforePong,
    TtlBelowReconnect,
    ZeroConnections,
    ZeroWindow,
    MongoWrongScheme,
    RetryCapBelowDelay,
    SmtpWithoutSender,
    WebhookNotHttp,
    OriginPlaceholder,
    ProviderPublicHttp,
    ProviderMissingKey,
    ProviderUnknownType,
    DuplicateProviderId,
}

const ALL_FAULTS: [Fault; 23] = [
    Fault::ShortSecret,
    Fault::PathPrefixWithoutSlash,
    Fault::EncryptionKeyLength,
    Fault::UnparsableDuration,
    Fault::UnparsableInteger,
    Fault::UnparsableBoolean,
    Fault::InvalidCidr,
    Fault::UnknownLogFormat,
    Fault::FirstChunkAboveStream,
    Fault::IdleAboveStream,
    Fault::PingNotBeforePong,
    Fault::TtlBelowReconnect,
    Fault::ZeroConnections,
    Fault::ZeroWindow,
    Fault::MongoWrongScheme,
    Fault::RetryCapBelowDelay,
    Fault::SmtpWithoutSender,
    Fault::WebhookNotHttp,
    Fault::OriginPlaceholder,
    Fault::ProviderPublicHttp,
    Fault::ProviderMissingKey,
    Fault::ProviderUnknownType,
    Fault::DuplicateProviderId,
];

impl Fault {
    fn inject(self, base: &Base, env: &mut Env) {
        let mut set = |k: &str, v: String| {
            env.insert(k.to_string(), v);
        };
        match self {
            Fault::ShortSecret => set("JWT_SECRET", "Zq81xW".into()),
            Fault::PathPrefixWithoutSlash => set("CHATBOX_PATH_PREFIX", "chatbox".into()),
            Fault::EncryptionKeyLength => set("ENCRYPTION_KEY", "only-sixteen-byt".into()),
            Fault::UnparsableDuration => set("ADMIN_RATE_WINDOW", "1 minute".into()),
            Fault::UnparsableInteger => set("PUBLIC_RATE_LIMIT", "plenty".into()),
            Fault::UnparsableBoolean => set("JWT_REQUIRE_EXP", "sometimes".into()),
            Fault::InvalidCidr => set("TRUSTED_PROXIES", "10.0.0.0/8, proxy.internal".into()),
            Fault::UnknownLogFormat => set("LOG_FORMAT", "xml".into()),
            Fault::FirstChunkAboveStream => {
                set("LLM_FIRST_CHUNK_TIMEOUT", format!("{}s", base.stream_secs + 1));
            }
            Fault::IdleAboveStream => set("LLM_IDLE_TIMEOUT", format!("{}s", base.stream_secs + 5)),
            Fault::PingNotBeforePong => set("WS_PING_INTERVAL", format!("{}s", base.pong_secs)),
            Fault::TtlBelowReconnect => {
                set("RECONNECT_TIMEOUT", "10m".into());
                set("SESSION_TTL", "9m59s".into());
            }
            Fault::ZeroConnections => set("MAX_CONNECTIONS", "0".into()),
            Fault::ZeroWindow => set("RATE_LIMIT_WINDOW", "0s".into()),
            Fault::MongoWrongScheme => set("MONGO_URI", "postgres://db.example/chat".into()),
            Fault::RetryCapBelowDelay => {
                set("MONGO_RETRY_DELAY", "5s".into());
                set("MONGO_RETRY_MAX_DELAY", "1s".into());
            }
            Fault::SmtpWithoutSender => {
                set("SMTP_HOST", "smtp.example.org".into());
                env.remove("SMTP_FROM");
            }
            Fault::WebhookNotHttp => set("ALERT_WEBHOOK_URL", "ftp://hooks.example.org/x".into()),
            Fault::OriginPlaceholder => {
                set("WS_ALLOWED_ORIGINS", "https://ok.example, https://YOUR-DOMAIN.example".into());
            }
            Fault::ProviderPublicHttp => {
                set("LLM_PROVIDER_1_ENDPOINT", "http://api.example.com/v1".into());
            }
            Fault::ProviderMissingKey => {
                env.remove("LLM_PROVIDER_1_API_KEY");
            }
            Fault::ProviderUnknownType => set("LLM_PROVIDER_2_TYPE", "gemini".into()),
            Fault::DuplicateProviderId => {
                // After the optional extra provider, so the ids collide whatever the base.
                set("LLM_PROVIDER_4_ID", base.provider_1_id.clone());
                set("LLM_PROVIDER_4_NAME", "Copy".into());
                set("LLM_PROVIDER_4_TYPE", "echo".into());
            }
        }
    }

    /// Whether `error` is the report of this fault.
    fn reported_by(self, error: &ConfigError, base: &Base) -> bool {
        let about = |env: &str| error.settings().first() == Some(&env);
        match self {
            Fault::ShortSecret => about("JWT_SECRET") && error.to_string().contains(GENERATE_HINT),
            Fault::PathPrefixWithoutSlash => about("CHATBOX_PATH_PREFIX"),
            Fault::EncryptionKeyLength => about("ENCRYPTION_KEY"),
            Fault::UnparsableDuration => about("ADMIN_RATE_WINDOW"),
            Fault::UnparsableInteger => about("PUBLIC_RATE_LIMIT"),
            Fault::UnparsableBoolean => about("JWT_REQUIRE_EXP"),
            Fault::InvalidCidr => about("TRUSTED_PROXIES"),
            Fault::UnknownLogFormat => about("LOG_FORMAT"),
            Fault::FirstChunkAboveStream => about("LLM_FIRST_CHUNK_TIMEOUT"),
            Fault::IdleAboveStream => about("LLM_IDLE_TIMEOUT"),
            Fault::PingNotBeforePong => about("WS_PING_INTERVAL"),
            Fault::TtlBelowReconnect => about("SESSION_TTL"),
            Fault::ZeroConnections => about("MAX_CONNECTIONS"),
            Fault::ZeroWindow => about("RATE_LIMIT_WINDOW"),
            Fault::MongoWrongScheme => about("MONGO_URI"),
            Fault::RetryCapBelowDelay => about("MONGO_RETRY_MAX_DELAY"),
            Fault::SmtpWithoutSender => about("SMTP_FROM"),
            Fault::WebhookNotHttp => about("ALERT_WEBHOOK_URL"),
            Fault::OriginPlaceholder => about("WS_ALLOWED_ORIGINS"),
            Fault::ProviderPublicHttp => matches!(
                error,
                ConfigError::ProviderEndpoint { provider, .. } if provider.id == base.provider_1_id
            ),
            Fault::ProviderMissingKey => matches!(
                error,
                ConfigError::ProviderMissingFields { provider, fields }
                    if provider.id == base.provider_1_id && fields.contains(&"apiKey")
            ),
            Fault::ProviderUnknownType => matches!(error, ConfigError::ProviderUnknownType { .. }),
            Fault::DuplicateProviderId => matches!(
                error,
                ConfigError::ProviderDuplicateId { id, .. } if *id == base.provider_1_id
            ),
        }
    }
}

/// Assigns each fault its own error (a matching in the fault × error graph), by backtracking.
fn distinct_reports(faults: &[Fault], errors: &[ConfigError], base: &Base) -> bool {
    fn assign(faults: &[Fault], errors: &[ConfigError], base: &Base, used: &mut Vec<bool>) -> bool {
        let Some((fault, rest)) = faults.split_first() else {
            return true;
        };
        for (i, error) in errors.iter().enumerate() {
            if !used[i] && fault.reported_by(error, base) {
                used[i] = true;
                if assign(rest, errors, base, used) {
                    return true;
                }
                used[i] = false;
            }
        }
        false
    }
    assign(faults, errors, base, &mut vec![false; errors.len()])
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Property 22: random valid environments within the documented ranges load and validate.
    #[test]
    fn prop_22_valid_config_passes(base in base()) {
        match load(&base.env, None) {
            Ok(loaded) => {
                prop_assert_eq!(loaded.config.validate(), Ok(()));
                let config = &loaded.config;
                prop_assert_eq!(config.llm.stream_timeout, Duration::from_secs(base.stream_secs));
                prop_assert_eq!(config.websocket.pong_wait, Duration::from_secs(base.pong_secs));
                prop_assert_eq!(
                    config.llm.default_provider().map(|p| p.id.as_str()),
                    Some(base.provider_1_id.as_str())
                );
                prop_assert_eq!(
                    config.rate.messages.limit.to_string(),
                    base.env["RATE_LIMIT"].clone()
                );
            }
            Err(errors) => return Err(TestCaseError::fail(format!("refused:\n{errors}"))),
        }
    }

    /// Property 21: a valid environment with 1..=5 distinct injected faults is refused, and the
    /// single report holds one error for each fault — and nothing else.
    #[test]
    fn prop_21_invalid_config_prevents_startup(
        base in base(),
        faults in proptest::sample::subsequence(ALL_FAULTS.to_vec(), 1..=5),
    ) {
        let mut env = base.env.clone();
        for fault in &faults {
            fault.inject(&base, &mut env);
        }
        let errors = match load(&env, None) {
            Ok(_) => return Err(TestCaseError::fail(format!("{faults:?} accepted"))),
            Err(errors) => errors.0,
        };
        prop_assert!(
            distinct_reports(&faults, &errors, &base),
            "faults {:?} not each reported in:\n{}", faults, ConfigErrors(errors.clone())
        );
        for error in &errors {
            prop_assert!(
                faults.iter().any(|f| f.reported_by(error, &base)),
                "error {} matches none of {:?}", error, faults
            );
        }
    }
}

#[test]
fn several_bad_settings_produce_all_their_errors_in_one_report() {
    let env: Env = [
        ("JWT_SECRET", "password123"),
        ("CHATBOX_PATH_PREFIX", "api"),
        ("ENCRYPTION_KEY", "too-short"),
        ("LLM_STREAM_TIMEOUT", "forever"),
        ("WS_PING_INTERVAL", "2m"),
        ("MAX_CONNECTIONS", "0"),
        ("METRICS_ALLOWED_NETWORKS", "the-office"),
        ("LLM_PROVIDER_1_ID", "gpt"),
        ("LLM_PROVIDER_1_NAME", "GPT"),
        ("LLM_PROVIDER_1_TYPE", "openai"),
        ("LLM_PROVIDER_1_ENDPOINT", "http://api.openai.com/v1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let report = load(&env, None).expect_err("must not start");
    let text = report.to_string();
    for expected in [
        "JWT_SECRET / chatbox.jwt_secret: is too short",
        "JWT_SECRET / chatbox.jwt_secret: is weak",
        "CHATBOX_PATH_PREFIX / chatbox.path_prefix: must start with \"/\"",
        "ENCRYPTION_KEY / chatbox.encryption_key: must be exactly 32 bytes",
        "LLM_STREAM_TIMEOUT / chatbox.llm_stream_timeout: expected a non-negative duration",
        "WS_PING_INTERVAL / chatbox.websocket.ping_interval (2m0s) must be less than",
        "MAX_CONNECTIONS / chatbox.max_connections: must be greater than zero",
        "METRICS_ALLOWED_NETWORKS / chatbox.metrics_allowed_networks: invalid network(s)",
        "LLM provider #1 (id \"gpt\"): missing LLM_PROVIDER_1_API_KEY / llm.providers[0].apiKey",
        "LLM provider #1 (id \"gpt\"): endpoint must use https",
    ] {
        assert!(text.contains(expected), "{expected:?} missing from:\n{text}");
    }
    assert_eq!(report.len(), 10, "{text}");
    assert!(text.lines().all(|line| line.starts_with("- ")));
    assert!(!text.contains("password123"));
}

/// A strong secret, the echo provider and `extra`.
fn echo_env_with(extra: &[(&str, String)]) -> Env {
    let mut env = echo_provider_env();
    env.insert("JWT_SECRET".into(), "Zq3vN8xLr5Tm2Wk7Yp4Hs9Jd6Fb1Gc0A".into());
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.clone())));
    env
}

/// The first-chunk and idle deadlines of a loaded configuration.
fn reply_deadlines(loaded: &chatbox_core::config::Loaded) -> (Duration, Duration) {
    (loaded.config.llm.first_chunk_timeout, loaded.config.llm.idle_timeout)
}

proptest! {
    /// Issue 16: with only `LLM_STREAM_TIMEOUT` set (any value, any spelling) the configuration
    /// loads, and the unset per-chunk deadlines are their defaults capped at the whole reply's.
    #[test]
    fn prop_unset_reply_deadlines_follow_the_stream_timeout(
        millis in 1u64..=600_000,
        style in any::<u8>(),
    ) {
        let stream = Duration::from_millis(millis);
        let text = if millis % 1000 == 0 { duration_text(millis / 1000, style) } else { format!("{millis}ms") };
        let loaded = load(&echo_env_with(&[("LLM_STREAM_TIMEOUT", text)]), None)
            .unwrap_or_else(|e| panic!("LLM_STREAM_TIMEOUT alone must load: {e}"));
        prop_assert_eq!(loaded.config.llm.stream_timeout, stream);
        prop_assert_eq!(
            reply_deadlines(&loaded),
            (stream.min(Duration::from_secs(30)), stream.min(Duration::from_secs(60)))
        );
    }

    /// Issue 16: a per-chunk deadline the operator set is kept as set when it fits the whole
    /// reply, and refused — naming both settings — when it exceeds it; the other one still
    /// follows the default rule.
    #[test]
    fn prop_set_reply_deadlines_are_kept_or_refused(
        stream in 1u64..=600,
        first_chunk in 1u64..=1200,
        set_idle in any::<bool>(),
    ) {
        let (key, other) = if set_idle {
            ("LLM_IDLE_TIMEOUT", "LLM_FIRST_CHUNK_TIMEOUT")
        } else {
            ("LLM_FIRST_CHUNK_TIMEOUT", "LLM_IDLE_TIMEOUT")
        };
        let env = echo_env_with(&[
            ("LLM_STREAM_TIMEOUT", format!("{stream}s")),
            (key, format!("{first_chunk}s")),
        ]);
        match load(&env, None) {
            Ok(loaded) => {
                prop_assert!(first_chunk <= stream);
                let (first, idle) = reply_deadlines(&loaded);
                let (set, unset, default) =
                    if set_idle { (idle, first, 30) } else { (first, idle, 60) };
                prop_assert_eq!(set, Duration::from_secs(first_chunk));
                prop_assert_eq!(unset, Duration::from_secs(stream.min(default)));
            }
            Err(errors) => {
                prop_assert!(first_chunk > stream);
                prop_assert_eq!(errors.len(), 1, "{}", errors);
                prop_assert_eq!(errors.0[0].settings(), vec![key, "LLM_STREAM_TIMEOUT"]);
                prop_assert!(!errors.to_string().contains(other), "{}", errors);
            }
        }
    }
}
