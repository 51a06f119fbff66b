//! The seed corpus, as values: `corpus/<target>/<name>` is written from these by the ignored
//! test `write_corpus` (`cargo test --manifest-path fuzz/Cargo.toml --lib -- --ignored
//! write_corpus`). Text seeds (frames, TOML files, tokens) are stored as they are; structured
//! seeds start with a `0x00` byte (the structured mode of `config_loader` and `jwt_verify`) and
//! are encoded with [`crate::input::Encode`].

use crate::config::{
    self, ConfigInput, EnvEntry, EnvKey, FileEntry, FileInput, FileKey, ProviderField, TomlVal, Val,
};
use crate::input::{to_bytes, Encode, Text};
use crate::jwt::{self, Alg, ClaimKey, ClaimVal, HeaderChoice, JwtInput, KeyChoice};
use crate::ops::{Op, OpsInput, Setup, Step};

/// `frame_parser` seeds: client frames of PROTOCOL.md §3 and edge cases of §3.5–§3.6.
pub fn frames() -> Vec<(&'static str, Vec<u8>)> {
    let texts: Vec<(&str, String)> = vec![
        ("user_message.json", r#"{"type":"user_message","session_id":"abc","content":"Hello","timestamp":"2026-02-21T10:00:00.000Z","sender":"user"}"#.into()),
        ("model_select.json", r#"{"type":"model_select","session_id":"abc","model_id":"anthropic-claude","timestamp":"2026-02-21T09:59:00Z"}"#.into()),
        ("help_request.json", r#"{"type":"help_request","session_id":"abc","timestamp":"2026-02-21T10:00:00Z"}"#.into()),
        ("file_upload.json", r#"{"type":"file_upload","session_id":"abc","file_id":"abc.png","file_url":"https://cdn.example.com/abc.png","content":"optional caption","metadata":{"filename":"abc.png"},"timestamp":"2026-02-21T10:00:00Z","sender":"user"}"#.into()),
        ("voice_message.json", r#"{"type":"voice_message","session_id":"abc","file_id":"v1.ogg","file_url":"https://cdn.example.com/v1.ogg?sig=x","metadata":{"duration":12.5,"mono":true,"size":123}}"#.into()),
        ("error.json", r#"{"type":"error","session_id":"S","sender":"ai","error":{"code":"TOO_MANY_REQUESTS","message":"Rate limit exceeded","recoverable":true,"retry_after":1500}}"#.into()),
        ("admin_join.json", r#"{"type":"admin_join","session_id":"S","sender":"admin","content":"Administrator Ann has joined the session","metadata":{"admin_id":"a1","admin_name":"Ann"}}"#.into()),
        ("ai_response_done.json", r#"{"type":"ai_response","session_id":"S","model_id":"openai-gpt4","sender":"ai","content":"lo!","metadata":{"streaming":"true","done":"false"}}"#.into()),
        ("resume.json", r#"{"type":"resume","session_id":"S","timestamp":"2026-02-21T10:00:00Z","metadata":{"reply_id":"0f3a9c","after_seq":"3"}}"#.into()),
        ("resume_bad_seq.json", r#"{"type":"resume","session_id":"S","metadata":{"reply_id":"r","after_seq":"+18446744073709551616"}}"#.into()),
        ("stop.json", r#"{"type":"stop","session_id":"S","timestamp":"2026-02-21T10:00:00Z"}"#.into()),
        ("ping.json", r#"{"type":"ping"}"#.into()),
        ("null.json", "null".into()),
        ("sanitize.json", "{\"type\":\"file_upload\",\"session_id\":\" S\\u0000 \",\"content\":\"\\u0000 hi\\u0000 there \\n\",\"file_id\":\"\\tf\\u0000\",\"file_url\":\" https://x.example/a \",\"model_id\":\" m \",\"metadata\":{\" k\\u0000 \":\" v \\u0000\"}}".into()),
        ("case_and_duplicates.json", r#"{"Type":"user_message","SESSION_ID":"S","Content":"a","CONTENT":"b","content":null,"extra":{"deep":[1,2,{"x":null}]},"user_id":7}"#.into()),
        ("future_timestamp.json", r#"{"type":"user_message","content":"x","timestamp":"2026-02-21T10:01:01+00:00"}"#.into()),
        ("whitespace_content.json", "{\"type\":\"user_message\",\"content\":\" \\u0000\\t \\u00a0\\u3000\"}".into()),
        ("escapes.json", r#"{"typ\u0065":"user_message","content":"caf\u00e9 \ud83d\ude00 \"quoted\" \\ back\u001f","session_id":"\u2028"}"#.into()),
        ("deep.json", format!(r#"{{"type":"loading","x":{}{}}}"#, "[".repeat(300), "]".repeat(300))),
        ("limits.json", format!(r#"{{"type":"user_message","content":"{}","model_id":"{}"}}"#, "é".repeat(5000), "m".repeat(100))),
    ];
    texts.into_iter().map(|(n, t)| (n, t.into_bytes())).collect()
}

/// `config_loader` text seeds: TOML files (raw mode, empty environment).
pub fn config_texts() -> Vec<(&'static str, Vec<u8>)> {
    let valid = format!(
        r#"# A complete, valid configuration file (PROTOCOL.md §9).
[server]
port = 9000
host = "0.0.0.0"

[chatbox]
jwt_secret = "{secret}"
path_prefix = "/api/"
llm_stream_timeout = "3m"
llm_first_chunk_timeout = "30s"
reconnect_timeout = "15m"
max_message_size = "2048"
admin_rate_limit = 20
admin_rate_window = "1m0s"
allowed_origins = "https://app.example.com, https://admin.example.com"
trusted_proxies = "10.0.0.0/8,172.16.0.0/12"
encryption_key = "0123456789abcdef0123456789abcdef"

[chatbox.websocket]
ping_interval = "20s"
pong_wait = "60s"

[mongo]
uri = "mongodb://chat:pw@db.example.com:27017"
retry_attempts = 3

[notification]
adminEmails = "ops@example.com"

[mail.smtp]
host = "smtp.example.com"
port = 587
from = "chatbox@example.com"

[[llm.providers]]
id = "gpt-4o"
name = "GPT-4o"
type = "openai"
endpoint = "https://api.openai.com/v1"
apiKey = "sk-file"
model = "gpt-4o"

[[llm.providers]]
id = "echo"
name = "Echo"
type = "echo"
"#,
        secret = config::STRONG_SECRET
    );
    let sample = r#"[chatbox]
jwt_secret = "REPLACE_WITH_A_LONG_RANDOM_SECRET_0123456789"
allowed_origins = "https://YOUR-DOMAIN.example"
encryption_key = "CHANGE_ME"
llm_stream_timeout = "two minutes"

[[chatbox.llm.providers]]
id = "local"
name = "Local"
type = "openai"
endpoint = "http://192.168.1.10:8000/v1"
"#;
    let broken =
        "[chatbox]\njwt_secret = \"hunter2-very-secret\nrate_limit = 5\n[[llm.providers]\n";
    vec![
        ("valid.toml", valid.into_bytes()),
        ("sample_placeholders.toml", sample.as_bytes().to_vec()),
        ("syntax_error.toml", broken.as_bytes().to_vec()),
    ]
}

fn env(key: &str, value: Val) -> EnvEntry {
    EnvEntry { key: EnvKey::Known(config::env_key(key)), value }
}

fn provider(n: u8, field: ProviderField, value: Val) -> EnvEntry {
    EnvEntry { key: EnvKey::Provider(n, field), value }
}

fn known(v: &str) -> Val {
    Val::Known(config::known(v))
}

/// `config_loader` structured seeds.
pub fn config_inputs() -> Vec<(&'static str, ConfigInput)> {
    let minimal = vec![
        env("JWT_SECRET", known(config::STRONG_SECRET)),
        provider(1, ProviderField::Id, known("echo")),
        provider(1, ProviderField::Name, known("Echo")),
        provider(1, ProviderField::Type, known("echo")),
    ];
    let mut full_env = minimal.clone();
    full_env.extend([
        env("CHATBOX_PATH_PREFIX", known("/chatbox/")),
        env("MAX_MESSAGE_SIZE", Val::Int(65536)),
        env("RECONNECT_TIMEOUT", Val::Duration(15, 4)),
        env("LLM_STREAM_TIMEOUT", known("2m0s")),
        env("WS_ALLOWED_ORIGINS", known("https://a.example.com,https://b.example.com")),
        env("TRUSTED_PROXIES", known("10.0.0.0/8, 192.168.0.0/16")),
        provider(2, ProviderField::Id, known("gpt-4o")),
        provider(2, ProviderField::Name, known("gpt-4o")),
        provider(2, ProviderField::Type, known("openai")),
        provider(2, ProviderField::Endpoint, known("https://api.openai.com/v1")),
        provider(2, ProviderField::ApiKey, known("sk-live-0123456789abcdef")),
        env("MONGO_URI", known("mongodb://user:pw@db.example.com:27017")),
        env("SMTP_HOST", known("smtp.example.com")),
        env("SMTP_PASSWORD", Val::Text(Text::from("smtp-pass-w0rd-long"))),
    ]);
    let broken_env = vec![
        env("JWT_SECRET", known("my-secret-password-is-long-enough")),
        env("CHATBOX_PATH_PREFIX", known("chatbox")),
        env("MAX_MESSAGE_SIZE", known("-1")),
        env("LLM_STREAM_TIMEOUT", known("1.5h")),
        env("RECONNECT_TIMEOUT", known("-5s")),
        env("TRUSTED_PROXIES", known("10.0.0.0/33")),
        env("WS_ALLOWED_ORIGINS", known("https://REPLACE_WITH_YOUR_ORIGIN")),
        provider(1, ProviderField::Type, known("openai")),
        provider(1, ProviderField::Endpoint, known("http://example.com/v1")),
        provider(1, ProviderField::ApiKey, Val::Text(Text::from("sk-api-key-that-must-not-leak"))),
        env("SMTP_HOST", known("smtp.example.com")),
        env("ENCRYPTION_KEY", Val::Text(Text::from("too-short-key"))),
    ];
    let doc = FileInput::Doc(vec![
        FileEntry {
            key: FileKey::Known(config::file_key("chatbox.jwt_secret")),
            value: TomlVal::Str(known(config::STRONG_SECRET)),
        },
        FileEntry {
            key: FileKey::Known(config::file_key("server.port")),
            value: TomlVal::Int(9000),
        },
        FileEntry {
            key: FileKey::Known(config::file_key("chatbox.allowed_origins")),
            value: TomlVal::Strings(vec![known("https://app.example.com"), known("*")]),
        },
        FileEntry {
            key: FileKey::Known(config::file_key("chatbox.enable_metrics")),
            value: TomlVal::Bool(true),
        },
        FileEntry {
            key: FileKey::Providers(false),
            value: TomlVal::Providers(vec![
                vec![
                    (ProviderField::Id, TomlVal::Str(known("echo"))),
                    (ProviderField::Name, TomlVal::Str(known("Echo"))),
                    (ProviderField::Type, TomlVal::Str(known("echo"))),
                ],
                vec![
                    (ProviderField::Id, TomlVal::Str(known("echo"))),
                    (ProviderField::Type, TomlVal::Str(known("anthropic"))),
                    (ProviderField::Endpoint, TomlVal::Str(known("http://llm.internal/v1"))),
                    (ProviderField::ApiKey, TomlVal::Int(5)),
                ],
            ]),
        },
    ]);
    vec![
        ("s_minimal_env", ConfigInput { base: false, env: minimal.clone(), file: FileInput::None }),
        ("s_full_env", ConfigInput { base: false, env: full_env, file: FileInput::None }),
        ("s_broken_env", ConfigInput { base: false, env: broken_env, file: FileInput::None }),
        ("s_file_doc", ConfigInput { base: false, env: vec![], file: doc.clone() }),
        (
            "s_env_over_file",
            ConfigInput {
                base: false,
                env: vec![
                    env(
                        "JWT_SECRET",
                        Val::KnownWith(config::known(config::STRONG_SECRET), Text::from("admin")),
                    ),
                    EnvEntry { key: EnvKey::Other(Text::from("UNRELATED")), value: Val::Int(1) },
                ],
                file: doc,
            },
        ),
        (
            "s_base_plus_one",
            ConfigInput {
                base: true,
                env: vec![env("LLM_FIRST_CHUNK_TIMEOUT", Val::Duration(150, 3))],
                file: FileInput::None,
            },
        ),
        (
            "s_raw_file",
            ConfigInput {
                base: false,
                env: minimal,
                file: FileInput::Raw(Text::from(
                    "[chatbox]\nrate_limit = \"x\"\nadmin_rate_window = 5\n",
                )),
            },
        ),
    ]
}

/// An HS256 token for `header` and `payload` (JSON texts) under `key`.
fn sign(header: &str, payload: &str, key: &str) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let sig = match hmac::Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()) {
        Ok(mut m) => {
            m.update(input.as_bytes());
            m.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    };
    format!("{input}.{}", b64(&sig))
}

const HS256: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

/// `jwt_verify` text seeds: tokens as they arrive on the wire.
pub fn jwt_texts() -> Vec<(&'static str, Vec<u8>)> {
    let h = HS256;
    let good =
        r#"{"user_id":"e2e-test-user","name":"E2E Test User","roles":["user"],"iat":1771668000}"#;
    let admin = r#"{"user_id":"a1","roles":["chat_admin"],"exp":4102444800}"#;
    let expired = r#"{"user_id":"u","roles":[],"exp":1000}"#;
    vec![
        ("valid_hs256.txt", sign(h, good, jwt::SECRET).into_bytes()),
        ("valid_admin_exp_2100.txt", sign(h, admin, jwt::SECRET).into_bytes()),
        ("expired.txt", sign(h, expired, jwt::SECRET).into_bytes()),
        ("other_secret.txt", sign(h, good, "another-secret-of-enough-length-xyz").into_bytes()),
        (
            "alg_none.txt",
            b"eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJ1c2VyX2lkIjoidSIsInJvbGVzIjpbXX0.".to_vec(),
        ),
        ("garbage.txt", b"not.a.jwt".to_vec()),
    ]
}

fn claims(pairs: Vec<(ClaimKey, ClaimVal)>) -> Vec<(ClaimKey, ClaimVal)> {
    pairs
}

/// `jwt_verify` structured seeds.
pub fn jwt_inputs() -> Vec<(&'static str, JwtInput)> {
    let base = claims(vec![
        (ClaimKey::UserId, ClaimVal::Known(jwt::known("u1"))),
        (ClaimKey::Roles, ClaimVal::Strings(vec![Text::from("user")])),
        (ClaimKey::Name, ClaimVal::Str(Text::from("Ann"))),
    ]);
    let with = |extra: Vec<(ClaimKey, ClaimVal)>| {
        let mut c = base.clone();
        c.extend(extra);
        c
    };
    let input = |alg, key, header, claims, tamper| JwtInput { alg, key, header, claims, tamper };
    vec![
        (
            "s_standard",
            input(Alg::Hs256, KeyChoice::Right, HeaderChoice::Standard, base.clone(), None),
        ),
        (
            "s_hs512_exp",
            input(
                Alg::Hs512,
                KeyChoice::Right,
                HeaderChoice::Standard,
                with(vec![(ClaimKey::Exp, ClaimVal::RelSecs(3600))]),
                None,
            ),
        ),
        (
            "s_nbf_future",
            input(
                Alg::Hs384,
                KeyChoice::Right,
                HeaderChoice::Standard,
                with(vec![(ClaimKey::Nbf, ClaimVal::RelSecs(3600))]),
                None,
            ),
        ),
        (
            "s_bad_claims",
            input(
                Alg::Hs256,
                KeyChoice::Right,
                HeaderChoice::Standard,
                claims(vec![
                    (ClaimKey::UserId, ClaimVal::Int(5)),
                    (
                        ClaimKey::Roles,
                        ClaimVal::Array(vec![ClaimVal::Known(jwt::known("admin")), ClaimVal::Null]),
                    ),
                ]),
                None,
            ),
        ),
        (
            "s_wrong_key",
            input(Alg::Hs256, KeyChoice::Flipped(3), HeaderChoice::Standard, base.clone(), None),
        ),
        (
            "s_tampered",
            input(
                Alg::Hs256,
                KeyChoice::Right,
                HeaderChoice::Standard,
                base.clone(),
                Some((40, b'A')),
            ),
        ),
        (
            "s_alg_text",
            input(
                Alg::Hs256,
                KeyChoice::Right,
                HeaderChoice::AlgText(Text::from("none")),
                base.clone(),
                None,
            ),
        ),
        (
            "s_header_extra",
            input(
                Alg::Hs384,
                KeyChoice::Right,
                HeaderChoice::Extra(Text::from("kid"), ClaimVal::Str(Text::from("k1"))),
                base.clone(),
                None,
            ),
        ),
    ]
}

/// The tokens that made `jwt_verify` fail before `Verifier` checked claims itself
/// (fuzz/README.md, "Findings"): fixed, and kept in the corpus so they stay fixed.
pub fn jwt_findings() -> Vec<(&'static str, Vec<u8>)> {
    let texts = [
        ("finding_negative_exp.txt", r#"{"user_id":"u1","roles":["user"],"exp":-1}"#),
        (
            "finding_huge_negative_exp.txt",
            r#"{"user_id":"1800740200","roles":["user"],"exp":-8128634060555066066}"#,
        ),
        ("finding_string_exp.txt", r#"{"user_id":"u1","roles":["user"],"exp":"1000"}"#),
        ("finding_string_nbf.txt", r#"{"user_id":"u1","roles":["user"],"nbf":"99999999999"}"#),
        ("finding_array_sub.txt", r#"{"user_id":"u1","roles":["user"],"sub":["a"]}"#),
        ("finding_object_sub.txt", r#"{"user_id":"u1","roles":["user"],"sub":{"id":7}}"#),
    ];
    texts.into_iter().map(|(n, p)| (n, sign(HS256, p, jwt::SECRET).into_bytes())).collect()
}

/// `core_ops` seeds.
pub fn ops_inputs() -> Vec<(&'static str, OpsInput)> {
    let defaults = Setup {
        reconnect: 7,
        ended_ttl: 7,
        idle: 8,
        capacity: 2,
        limit: 3,
        window: 5,
        max_keys: 3,
        buckets: 20,
    };
    let lifecycle = vec![
        Op::Resolve { user: 0, requested: Some(0), fresh: 0 },
        Op::Attach(0),
        Op::RecordMessage(0),
        Op::Name { sid: 0, content: Text::from("Hello there. How are you?") },
        Op::RecordReply { sid: 0, ms: 250, tokens: 12 },
        Op::RecordReply { sid: 0, ms: 400, tokens: 30 },
        Op::RecordReply { sid: 0, ms: 100, tokens: 1 },
        Op::SetModel { sid: 0, model: 1 },
        Op::Detach(0),
        Op::Advance(Step::Minutes(30)),
        Op::Resolve { user: 0, requested: None, fresh: 1 },
        Op::SweepAtDeadline,
        Op::Resolve { user: 0, requested: Some(0), fresh: 2 },
        Op::End(0),
        Op::Advance(Step::Minutes(14)),
        Op::Resolve { user: 0, requested: Some(0), fresh: 3 },
        Op::End(0),
        Op::Advance(Step::Minutes(16)),
        Op::Sweep,
        Op::Resolve { user: 0, requested: Some(0), fresh: 0 },
    ];
    let admin = vec![
        Op::Resolve { user: 1, requested: Some(4), fresh: 4 },
        Op::Resolve { user: 2, requested: Some(5), fresh: 5 },
        Op::Help { sid: 4, user: 1 },
        Op::Help { sid: 4, user: 2 },
        Op::Takeover { sid: 4, admin: 0, name: 0 },
        Op::Takeover { sid: 4, admin: 0, name: 1 },
        Op::Takeover { sid: 4, admin: 1, name: 0 },
        Op::Access { user: 2, admin: true, sid: 4 },
        Op::Access { user: 2, admin: false, sid: 4 },
        Op::Access { user: 1, admin: false, sid: 4 },
        Op::Access { user: 3, admin: true, sid: 4 },
        Op::Leave { sid: 4, admin: 1 },
        Op::Leave { sid: 4, admin: 1 },
        Op::Resolve { user: 2, requested: Some(4), fresh: 6 },
        Op::Remove(5),
        Op::Access { user: 2, admin: true, sid: 5 },
    ];
    let limiter = vec![
        Op::Burst { key: 0, n: 3 },
        Op::Check(1),
        Op::Advance(Step::Secs(30)),
        Op::Check(0),
        Op::Check(2),
        Op::Check(3),
        Op::Advance(Step::Secs(33)),
        Op::Check(0),
        Op::Stale(5000),
        Op::Check(0),
        Op::Cleanup,
        Op::Advance(Step::Minutes(5)),
        Op::Cleanup,
        Op::Check(4),
    ];
    let zero = vec![
        Op::Resolve { user: 0, requested: None, fresh: 0 },
        Op::Sweep,
        Op::Resolve { user: 0, requested: Some(0), fresh: 1 },
        Op::Check(0),
        Op::Check(0),
        Op::Stale(1),
        Op::Sweep,
        Op::Attach(1),
        Op::Advance(Step::Nanos(1)),
        Op::SweepAtDeadline,
        Op::Cleanup,
    ];
    let loads = vec![
        Op::Resolve { user: 0, requested: None, fresh: 0 },
        Op::Load {
            sid: 1,
            user: 0,
            ended_ago_ms: None,
            started_ago_ms: 60_000,
            admin: None,
            help: false,
            avg_ms: 0,
        },
        Op::Load {
            sid: 2,
            user: 0,
            ended_ago_ms: Some(5_000),
            started_ago_ms: 90_000,
            admin: Some(1),
            help: true,
            avg_ms: 800,
        },
        Op::Load {
            sid: 3,
            user: 1,
            ended_ago_ms: Some(3_600_000),
            started_ago_ms: 4_000_000,
            admin: None,
            help: false,
            avg_ms: 0,
        },
        Op::Load {
            sid: 0,
            user: 1,
            ended_ago_ms: None,
            started_ago_ms: 0,
            admin: None,
            help: false,
            avg_ms: 0,
        },
        Op::End(0),
        Op::Resolve { user: 0, requested: Some(2), fresh: 4 },
        Op::Takeover { sid: 2, admin: 1, name: 2 },
        Op::SweepAtDeadline,
        Op::SweepAtDeadline,
    ];
    let tiny_window = vec![
        Op::Burst { key: 0, n: 7 },
        Op::Advance(Step::Nanos(3)),
        Op::Burst { key: 0, n: 7 },
        Op::Advance(Step::Nanos(5)),
        Op::Check(0),
        Op::Check(1),
        Op::Check(2),
        Op::Advance(Step::Nanos(9)),
        Op::Cleanup,
    ];
    vec![
        ("s_session_lifecycle", OpsInput { setup: defaults.clone(), ops: lifecycle }),
        ("s_admin_takeover", OpsInput { setup: defaults.clone(), ops: admin }),
        ("s_limiter_minute", OpsInput { setup: defaults.clone(), ops: limiter }),
        (
            "s_zero_limits",
            OpsInput {
                setup: Setup {
                    reconnect: 0,
                    ended_ttl: 0,
                    idle: 0,
                    capacity: 0,
                    limit: 1,
                    window: 0,
                    max_keys: 0,
                    buckets: 0,
                },
                ops: zero,
            },
        ),
        ("s_loaded_snapshots", OpsInput { setup: defaults, ops: loads }),
        (
            "s_tiny_window",
            OpsInput {
                setup: Setup {
                    reconnect: 1,
                    ended_ttl: 2,
                    idle: 3,
                    capacity: 1,
                    limit: 3,
                    window: 2,
                    max_keys: 1,
                    buckets: 3,
                },
                ops: tiny_window,
            },
        ),
    ]
}

/// Every seed file: `(target, file name, bytes)`.
pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
    let mut out = Vec::new();
    for (n, b) in frames() {
        out.push(("frame_parser", n.to_string(), b));
    }
    for (n, b) in config_texts() {
        out.push(("config_loader", n.to_string(), b));
    }
    for (n, v) in config_inputs() {
        out.push(("config_loader", n.to_string(), structured(&v)));
    }
    for (n, b) in jwt_texts() {
        out.push(("jwt_verify", n.to_string(), b));
    }
    for (n, v) in jwt_inputs() {
        out.push(("jwt_verify", n.to_string(), structured(&v)));
    }
    for (n, b) in jwt_findings() {
        out.push(("jwt_verify", n.to_string(), b));
    }
    for (n, v) in ops_inputs() {
        out.push(("core_ops", n.to_string(), to_bytes(&v)));
    }
    for (n, b) in bus_messages() {
        out.push(("bus_message", n.to_string(), b.as_bytes().to_vec()));
    }
    out
}

/// `bus_message` seeds: one message of each kind (signals included), a replay stream entry, alive
/// keys' values, and near misses.
fn bus_messages() -> Vec<(&'static str, &'static str)> {
    vec![
        ("session", r#"{"v":1,"from":"a","event":{"kind":"session","session":"s","frame":"{}"}}"#),
        (
            "session_admins",
            r#"{"v":1,"from":"a","event":{"kind":"session_admins","session":"s","owner":"u","frame":"{}"}}"#,
        ),
        ("user", r#"{"v":1,"from":"a","event":{"kind":"user","user":"u","frame":"{}"}}"#),
        (
            "unbind_admin",
            r#"{"v":1,"from":"b","event":{"kind":"unbind_admin","session":"s","admin":"x","owner":"u"}}"#,
        ),
        ("version_2", r#"{"v":2,"from":"a","event":{"kind":"user","user":"u","frame":"{}"}}"#),
        ("unknown_kind", r#"{"v":1,"from":"a","event":{"kind":"nope"}}"#),
        (
            "replay_entry",
            r#"{"v":1,"session":"s","seq":3,"last":false,"frame":"{\"type\":\"ai_response\"}"}"#,
        ),
        ("replay_entry_v2", r#"{"v":2,"session":"s","seq":1,"last":true,"frame":"{}"}"#),
        (
            "signal_stop",
            r#"{"v":1,"from":"a","event":{"kind":"signal","signal":{"signal":"stop_reply","session":"s"}}}"#,
        ),
        (
            "signal_admin",
            r#"{"v":1,"from":"a","event":{"kind":"signal","signal":{"signal":"admin","event":"{\"type\":\"help_request\"}"}}}"#,
        ),
        ("state_live", "live:s"),
        ("state_ended", "ended:s:1"),
    ]
}

/// `0x00` (structured mode) then the encoding.
fn structured<T: Encode>(v: &T) -> Vec<u8> {
    let mut out = vec![0];
    v.encode(&mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use arbitrary::{Arbitrary, Unstructured};

    #[test]
    fn structured_seeds_decode_to_their_values() {
        for (name, v) in config_inputs() {
            let bytes = to_bytes(&v);
            let back = ConfigInput::arbitrary(&mut Unstructured::new(&bytes));
            assert_eq!(back.ok().as_ref(), Some(&v), "{name}");
        }
        for (name, v) in jwt_inputs() {
            let bytes = to_bytes(&v);
            let back = JwtInput::arbitrary(&mut Unstructured::new(&bytes));
            assert_eq!(back.ok().as_ref(), Some(&v), "{name}");
        }
        for (name, v) in ops_inputs() {
            let bytes = to_bytes(&v);
            assert_eq!(OpsInput::decode(&bytes).as_ref(), Some(&v), "{name}");
        }
    }

    #[test]
    fn every_seed_runs_clean() {
        for (target, name, bytes) in all() {
            eprintln!("{target}/{name}");
            match target {
                "frame_parser" => crate::frame::run(&bytes),
                "config_loader" => crate::config::run(&bytes),
                "jwt_verify" => crate::jwt::run(&bytes),
                "core_ops" => crate::ops::run(&bytes),
                "bus_message" => crate::bus::run(&bytes),
                _ => unreachable!(),
            }
        }
    }

    #[test]
    fn committed_corpus_is_up_to_date() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus");
        for (target, name, bytes) in all() {
            let path = root.join(target).join(&name);
            let on_disk = std::fs::read(&path).unwrap_or_default();
            assert!(
                on_disk == bytes,
                "{} is stale: run the ignored test write_corpus",
                path.display()
            );
        }
    }

    /// Rewrites `corpus/` from the values above.
    #[test]
    #[ignore]
    fn write_corpus() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let write = |dir: std::path::PathBuf, name: &str, bytes: &[u8]| {
            std::fs::create_dir_all(&dir).expect("corpus dir");
            std::fs::write(dir.join(name), bytes).expect("seed file");
        };
        for (target, name, bytes) in all() {
            write(root.join("corpus").join(target), &name, &bytes);
        }
    }
}
