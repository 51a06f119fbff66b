//! `config_loader`: `chatbox_core::config::load(env, toml)` on structured and raw input.
//!
//! Input modes (first byte):
//! * `0x00` — structured ([`ConfigInput`], decoded with `arbitrary`): optionally the smallest
//!   valid environment as a base, then an environment map of known
//!   keys (`JWT_SECRET`, `CHATBOX_PATH_PREFIX`, `MAX_MESSAGE_SIZE`, durations, origin and network
//!   lists, `LLM_PROVIDER_<n>_*`, `MONGO_URI`, `SMTP_*`, ... and arbitrary names) with values drawn
//!   from a dictionary of meaningful values or arbitrary text, plus an optional TOML file that is
//!   either raw text or a document built from dotted keys (always valid TOML, so the semantic
//!   checks are reached, `[[llm.providers]]` entries included);
//! * anything else — the whole input is the TOML file's text, with an empty environment.
//!
//! Checked:
//! * `load` never panics;
//! * `Ok(loaded)` ⇒ `loaded.config.validate()` is `Ok` too (load and validate share the rules);
//! * `Err(errors)` ⇒ the report is non-empty, and so is its `Display` and each error's;
//! * no secret leaks: for every value given to a secret setting (`JWT_SECRET`, provider API
//!   keys, `SMTP_PASSWORD`, `SMS_AUTH_TOKEN`, `MONGO_URI`, `ENCRYPTION_KEY`) of at least 8
//!   characters, neither the error report (`Display` and `Debug`), nor the warnings, nor the
//!   `Debug` of the loaded config contains it. A hit is confirmed before it is reported: when the
//!   secret also occurs in another input value it is skipped, and otherwise the load is repeated
//!   with one character of the secret replaced by a character that appears in no message
//!   template; only if the changed secret shows up too is it a leak (a secret that happens to
//!   spell a piece of a fixed message, e.g. `password`, is not).

use std::collections::BTreeMap;

use arbitrary::{Arbitrary, Unstructured};
use chatbox_core::config::{load, ConfigErrors, Loaded};

use crate::input::{tag, Encode, Text};

/// A strong JWT secret (passes every rule of §2.4).
pub const STRONG_SECRET: &str = "q8Zr4LmWx2Vn7Kp1Tj9Bc6Hs3Gd5Yf0Ne";

/// Meaningful values, picked by [`Val::Known`].
pub const KNOWN_VALUES: &[&str] = &[
    STRONG_SECRET,
    "echo",
    "Echo",
    "openai",
    "anthropic",
    "dify",
    "https://api.openai.com/v1",
    "http://localhost:11434/v1",
    "http://10.0.0.7:8080/v1",
    "http://llm.internal/v1",
    "http://example.com/v1",
    "ftp://example.com",
    "sk-live-0123456789abcdef",
    "gpt-4o",
    "",
    "   ",
    "0",
    "1",
    "-1",
    "65535",
    "65536",
    "18446744073709551616",
    "true",
    "no",
    "maybe",
    "0s",
    "1ns",
    "100ms",
    "1s",
    "20s",
    "2m0s",
    "15m",
    "1h",
    "1.5h",
    "-5s",
    "9999999999999h",
    "5",
    "/",
    "/chatbox",
    "/chatbox/",
    "chatbox",
    "//",
    "10.0.0.0/8",
    "10.0.0.0/8, 192.168.0.0/16",
    "::1",
    "fe80::/10",
    "10.0.0.0/33",
    "not-a-network",
    "https://app.example.com",
    "https://a.example.com,https://b.example.com",
    "*",
    "https://REPLACE_WITH_YOUR_ORIGIN",
    "mongodb://user:pw@db.example.com:27017",
    "mongodb://db.example.com",
    "postgres://db",
    "smtp.example.com",
    "none",
    "starttls",
    "tls",
    "json",
    "text",
    "0123456789abcdef0123456789abcdef",
    "CHANGE-ME-0123456789abcdefghijklmnopqrstuvwxyz",
    "my-secret-password-is-long-enough",
    "ops@example.com, oncall@example.com",
    "AC0123456789",
    "+15550100",
    "https://admin.example.com",
    "https://hooks.example.com/alert",
];

/// The dotted file keys the loader reads (`keys.rs`), picked by [`FileKey::Known`].
pub const FILE_KEYS: &[&str] = &[
    "chatbox.jwt_secret",
    "chatbox.jwt_require_exp",
    "server.host",
    "server.port",
    "chatbox.path_prefix",
    "chatbox.shutdown_timeout",
    "chatbox.allowed_origins",
    "chatbox.max_message_size",
    "chatbox.max_connections",
    "chatbox.websocket.ping_interval",
    "chatbox.websocket.pong_wait",
    "chatbox.websocket.write_wait",
    "chatbox.websocket.send_queue",
    "chatbox.cors_allowed_origins",
    "chatbox.trusted_proxies",
    "chatbox.metrics_allowed_networks",
    "chatbox.health_probe_networks",
    "chatbox.frame_ancestors",
    "chatbox.enable_metrics",
    "chatbox.rate_limit",
    "chatbox.rate_limit_window",
    "chatbox.admin_rate_limit",
    "chatbox.admin_rate_window",
    "chatbox.rate_limit_max_keys",
    "chatbox.reconnect_timeout",
    "chatbox.session_ttl",
    "chatbox.session_idle_timeout",
    "chatbox.llm_stream_timeout",
    "chatbox.llm_first_chunk_timeout",
    "chatbox.llm_idle_timeout",
    "chatbox.encryption_key",
    "mongo.uri",
    "database.uri",
    "dbs.chat.uri",
    "mongo.retry_attempts",
    "mongo.retry_delay",
    "mongo.retry_max_delay",
    "notification.adminEmails",
    "mail.adminEmail",
    "notification.adminPanelURL",
    "notification.webhookURL",
    "mail.smtp.host",
    "mail.smtp.port",
    "mail.smtp.password",
    "mail.smtp.tls",
    "sms.accountSID",
    "sms.authToken",
    "log.format",
    "log.level",
];

/// File keys whose values are secrets.
const SECRET_FILE_KEYS: &[&str] = &[
    "chatbox.jwt_secret",
    "chatbox.encryption_key",
    "mongo.uri",
    "database.uri",
    "dbs.chat.uri",
    "mail.smtp.password",
    "sms.authToken",
];

/// The whole structured input.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct ConfigInput {
    /// Start from the smallest valid environment (a strong `JWT_SECRET` and the `echo`
    /// provider), so single settings are explored against a configuration that otherwise loads.
    pub base: bool,
    /// Environment variables, in order (a later duplicate wins).
    pub env: Vec<EnvEntry>,
    /// The configuration file.
    pub file: FileInput,
}

/// One environment variable.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct EnvEntry {
    /// Its name.
    pub key: EnvKey,
    /// Its value.
    pub value: Val,
}

/// An environment variable name.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum EnvKey {
    /// One of [`ENV_KEYS`].
    Known(u8),
    /// `LLM_PROVIDER_<n>_<field>`; `n` is taken modulo 12 (0 and 11 are outside the 1..=10 slots).
    Provider(u8, ProviderField),
    /// Any name.
    Other(Text),
}

/// The environment names picked by [`EnvKey::Known`].
pub const ENV_KEYS: &[&str] = &[
    "JWT_SECRET",
    "CHATBOX_PATH_PREFIX",
    "MAX_MESSAGE_SIZE",
    "RECONNECT_TIMEOUT",
    "LLM_STREAM_TIMEOUT",
    "LLM_FIRST_CHUNK_TIMEOUT",
    "LLM_IDLE_TIMEOUT",
    "WS_ALLOWED_ORIGINS",
    "CORS_ALLOWED_ORIGINS",
    "TRUSTED_PROXIES",
    "METRICS_ALLOWED_NETWORKS",
    "HEALTH_PROBE_NETWORKS",
    "RATE_LIMIT",
    "RATE_LIMIT_WINDOW",
    "ADMIN_RATE_LIMIT",
    "ADMIN_RATE_WINDOW",
    "SESSION_TTL",
    "SESSION_IDLE_TIMEOUT",
    "ENCRYPTION_KEY",
    "MONGO_URI",
    "MONGO_RETRY_ATTEMPTS",
    "MONGO_RETRY_DELAY",
    "MONGO_RETRY_MAX_DELAY",
    "SMTP_HOST",
    "SMTP_PORT",
    "SMTP_PASSWORD",
    "SMTP_TLS",
    "SMTP_FROM",
    "SMS_ACCOUNT_SID",
    "SMS_AUTH_TOKEN",
    "ADMIN_EMAILS",
    "ADMIN_PANEL_URL",
    "ALERT_WEBHOOK_URL",
    "SERVER_PORT",
    "SERVER_HOST",
    "SHUTDOWN_TIMEOUT",
    "MAX_CONNECTIONS",
    "WS_PING_INTERVAL",
    "WS_PONG_WAIT",
    "LOG_FORMAT",
    "JWT_REQUIRE_EXP",
    "JWT_DISABLE_QUERY_TOKEN",
];

/// Environment names whose values are secrets (besides `LLM_PROVIDER_<n>_API_KEY`).
const SECRET_ENV_KEYS: &[&str] =
    &["JWT_SECRET", "ENCRYPTION_KEY", "MONGO_URI", "SMTP_PASSWORD", "SMS_AUTH_TOKEN"];

/// A provider field, in the env spelling and the file spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Arbitrary)]
pub enum ProviderField {
    /// `ID` / `id`.
    Id,
    /// `NAME` / `name`.
    Name,
    /// `TYPE` / `type`.
    Type,
    /// `ENDPOINT` / `endpoint`.
    Endpoint,
    /// `API_KEY` / `apiKey`.
    ApiKey,
    /// `MODEL` / `model`.
    Model,
}

impl ProviderField {
    const ALL: [ProviderField; 6] = [
        ProviderField::Id,
        ProviderField::Name,
        ProviderField::Type,
        ProviderField::Endpoint,
        ProviderField::ApiKey,
        ProviderField::Model,
    ];

    fn env(self) -> &'static str {
        match self {
            ProviderField::Id => "ID",
            ProviderField::Name => "NAME",
            ProviderField::Type => "TYPE",
            ProviderField::Endpoint => "ENDPOINT",
            ProviderField::ApiKey => "API_KEY",
            ProviderField::Model => "MODEL",
        }
    }

    fn file(self) -> &'static str {
        match self {
            ProviderField::Id => "id",
            ProviderField::Name => "name",
            ProviderField::Type => "type",
            ProviderField::Endpoint => "endpoint",
            ProviderField::ApiKey => "apiKey",
            ProviderField::Model => "model",
        }
    }
}

/// A text value.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum Val {
    /// One of [`KNOWN_VALUES`] (index modulo its length).
    Known(u8),
    /// Any text.
    Text(Text),
    /// An integer, written in decimal.
    Int(i64),
    /// `n` units of a Go duration (`ns`, `us`, `ms`, `s`, `m`, `h`), e.g. `90s`.
    Duration(u16, u8),
    /// A known value with a suffix (e.g. a strong secret with a weak word appended).
    KnownWith(u8, Text),
}

impl Val {
    /// The value as text.
    pub fn render(&self) -> String {
        match self {
            Val::Known(i) => KNOWN_VALUES[usize::from(*i) % KNOWN_VALUES.len()].to_string(),
            Val::Text(t) => t.0.clone(),
            Val::Int(n) => n.to_string(),
            Val::Duration(n, unit) => {
                let units = ["ns", "us", "ms", "s", "m", "h"];
                format!("{n}{}", units[usize::from(*unit) % units.len()])
            }
            Val::KnownWith(i, t) => {
                format!("{}{}", KNOWN_VALUES[usize::from(*i) % KNOWN_VALUES.len()], t.0)
            }
        }
    }
}

/// The configuration file.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum FileInput {
    /// No file.
    None,
    /// The file's text as given.
    Raw(Text),
    /// A document built from entries (rendered with the `toml` crate, so always valid TOML).
    Doc(Vec<FileEntry>),
}

/// One entry of a generated document.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub struct FileEntry {
    /// Where.
    pub key: FileKey,
    /// What.
    pub value: TomlVal,
}

/// A dotted key.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum FileKey {
    /// One of [`FILE_KEYS`].
    Known(u8),
    /// `llm.providers` (`false`) or `chatbox.llm.providers` (`true`).
    Providers(bool),
    /// Any dotted key.
    Other(Text),
}

/// A TOML value.
#[derive(Debug, Clone, PartialEq, Arbitrary)]
pub enum TomlVal {
    /// A string.
    Str(Val),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A float.
    Float(f64),
    /// An array of strings.
    Strings(Vec<Val>),
    /// An array of provider tables (`[[llm.providers]]`).
    Providers(Vec<Vec<(ProviderField, TomlVal)>>),
    /// An empty table.
    Table,
}

impl TomlVal {
    fn to_toml(&self, replace: &Replace<'_>) -> toml::Value {
        match self {
            TomlVal::Str(v) => toml::Value::String(replace.apply(v.render())),
            TomlVal::Int(n) => toml::Value::Integer(*n),
            TomlVal::Bool(b) => toml::Value::Boolean(*b),
            TomlVal::Float(f) => toml::Value::Float(*f),
            TomlVal::Strings(vs) => toml::Value::Array(
                vs.iter().map(|v| toml::Value::String(replace.apply(v.render()))).collect(),
            ),
            TomlVal::Providers(entries) => toml::Value::Array(
                entries
                    .iter()
                    .map(|fields| {
                        let mut t = toml::Table::new();
                        for (field, value) in fields {
                            t.insert(field.file().to_string(), value.to_toml(replace));
                        }
                        toml::Value::Table(t)
                    })
                    .collect(),
            ),
            TomlVal::Table => toml::Value::Table(toml::Table::new()),
        }
    }
}

/// Replaces one exact value by another while rendering (the leak confirmation).
struct Replace<'a>(Option<(&'a str, &'a str)>);

impl Replace<'_> {
    fn apply(&self, value: String) -> String {
        match self.0 {
            Some((from, to)) if value == from => to.to_string(),
            _ => value,
        }
    }
}

/// The loader's two inputs.
#[derive(Debug, Clone)]
pub struct Rendered {
    /// The environment.
    pub env: BTreeMap<String, String>,
    /// The file's text.
    pub toml: Option<String>,
    /// Values given to secret settings (env and generated file).
    pub secrets: Vec<String>,
    /// Every other input text (values of other settings, names, a raw file).
    pub others: Vec<String>,
}

impl ConfigInput {
    /// The environment map and TOML text, with `replace` applied to every value.
    fn render(&self, replace: &Replace<'_>) -> Rendered {
        let mut env = BTreeMap::new();
        if self.base {
            for (k, v) in [
                ("JWT_SECRET", STRONG_SECRET),
                ("LLM_PROVIDER_1_ID", "echo"),
                ("LLM_PROVIDER_1_NAME", "Echo"),
                ("LLM_PROVIDER_1_TYPE", "echo"),
            ] {
                env.insert(k.to_string(), replace.apply(v.to_string()));
            }
        }
        for entry in &self.env {
            let key = match &entry.key {
                EnvKey::Known(i) => ENV_KEYS[usize::from(*i) % ENV_KEYS.len()].to_string(),
                EnvKey::Provider(n, field) => format!("LLM_PROVIDER_{}_{}", n % 12, field.env()),
                EnvKey::Other(t) => t.0.clone(),
            };
            env.insert(key, replace.apply(entry.value.render()));
        }
        let mut secrets = Vec::new();
        let mut others = Vec::new();
        for (k, v) in &env {
            others.push(k.clone());
            // The loader trims nothing from secrets and treats blank as unset.
            if is_secret_env(k) {
                secrets.push(v.clone());
            } else {
                others.push(v.clone());
            }
        }
        let toml = match &self.file {
            FileInput::None => None,
            FileInput::Raw(text) => {
                others.push(text.0.clone());
                Some(text.0.clone())
            }
            FileInput::Doc(entries) => {
                let mut root = toml::Table::new();
                for entry in entries {
                    let (path, secret) = match &entry.key {
                        FileKey::Known(i) => {
                            let key = FILE_KEYS[usize::from(*i) % FILE_KEYS.len()];
                            (key.to_string(), SECRET_FILE_KEYS.contains(&key))
                        }
                        FileKey::Providers(false) => ("llm.providers".to_string(), false),
                        FileKey::Providers(true) => ("chatbox.llm.providers".to_string(), false),
                        FileKey::Other(t) => {
                            others.push(t.0.clone());
                            (t.0.clone(), false)
                        }
                    };
                    let value = entry.value.to_toml(replace);
                    collect_strings(&value, &path, secret, &mut secrets, &mut others);
                    insert_dotted(&mut root, &path, value);
                }
                toml::to_string(&root).ok()
            }
        };
        Rendered { env, toml, secrets, others }
    }
}

fn is_secret_env(key: &str) -> bool {
    SECRET_ENV_KEYS.contains(&key)
        || (key.starts_with("LLM_PROVIDER_") && key.ends_with("_API_KEY"))
}

/// Sorts the strings of a file value into secrets and others.
fn collect_strings(
    value: &toml::Value,
    path: &str,
    secret: bool,
    secrets: &mut Vec<String>,
    others: &mut Vec<String>,
) {
    match value {
        toml::Value::String(s) => {
            if secret {
                secrets.push(s.clone());
            } else {
                others.push(s.clone());
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                collect_strings(item, path, secret, secrets, others);
            }
        }
        toml::Value::Table(t) => {
            for (k, v) in t {
                others.push(k.clone());
                collect_strings(v, path, k == "apiKey", secrets, others);
            }
        }
        other => others.push(other.to_string()),
    }
}

/// Inserts `value` at a dotted `path`, creating tables; an entry whose path runs through a
/// non-table is dropped (the generated document stays valid).
fn insert_dotted(root: &mut toml::Table, path: &str, value: toml::Value) {
    let segments: Vec<&str> = path.split('.').collect();
    let Some((last, parents)) = segments.split_last() else { return };
    let mut table = root;
    for segment in parents {
        let entry = table
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        match entry {
            toml::Value::Table(t) => table = t,
            _ => return,
        }
    }
    table.insert(last.to_string(), value);
}

/// Everything the operator can see of a load's outcome.
fn visible_text(result: &Result<Loaded, ConfigErrors>) -> String {
    match result {
        Ok(loaded) => format!("{}\n{:?}", loaded.warnings.join("\n"), loaded.config),
        Err(errors) => format!("{errors}\n{errors:?}"),
    }
}

/// One fuzz iteration.
pub fn run(data: &[u8]) {
    match data.split_first() {
        Some((0, rest)) => {
            let mut u = Unstructured::new(rest);
            if let Ok(input) = ConfigInput::arbitrary(&mut u) {
                run_structured(&input);
            }
        }
        _ => {
            let text = String::from_utf8_lossy(data);
            let result = load(&BTreeMap::new(), Some(&text));
            check_result(&result);
        }
    }
}

/// What `load` says about a structured input (for replaying and inspecting corpus entries).
pub fn load_structured(input: &ConfigInput) -> Result<Loaded, ConfigErrors> {
    let rendered = input.render(&Replace(None));
    load(&rendered.env, rendered.toml.as_deref())
}

/// Loads a structured input and checks the outcome.
pub fn run_structured(input: &ConfigInput) {
    let rendered = input.render(&Replace(None));
    let result = load(&rendered.env, rendered.toml.as_deref());
    check_result(&result);
    let visible = visible_text(&result);
    for secret in &rendered.secrets {
        check_no_leak(input, &rendered, secret, &visible);
    }
}

fn check_result(result: &Result<Loaded, ConfigErrors>) {
    match result {
        Ok(loaded) => {
            if let Err(errors) = loaded.config.validate() {
                panic!("load accepted a configuration that validate() refuses:\n{errors}");
            }
        }
        Err(errors) => {
            assert!(!errors.is_empty(), "load failed with an empty report");
            assert!(!errors.to_string().is_empty(), "empty error report text");
            for error in errors {
                assert!(!error.to_string().is_empty(), "an error with no text: {error:?}");
            }
        }
    }
}

/// A character that appears in no message template, of the same UTF-8 length as `c`.
fn marker_for(c: char) -> char {
    match c.len_utf8() {
        1 => '\u{7f}',
        2 => '\u{7ff}',
        3 => '\u{2603}',
        _ => '\u{1F511}',
    }
}

fn check_no_leak(input: &ConfigInput, rendered: &Rendered, secret: &str, visible: &str) {
    if secret.chars().count() < 8 || !visible.contains(secret) {
        return;
    }
    // Echoed because another input holds it too: not the secret's fault.
    if rendered.others.iter().any(|o| o.contains(secret))
        || rendered.secrets.iter().any(|s| s != secret && s.contains(secret))
    {
        return;
    }
    // Confirm: change one character and load again; a template hit will not follow the change.
    let chars: Vec<char> = secret.chars().collect();
    let mid = chars.len() / 2;
    let mut changed: Vec<char> = chars.clone();
    changed[mid] = marker_for(chars[mid]);
    if changed[mid] == chars[mid] {
        return;
    }
    let changed: String = changed.into_iter().collect();
    let again = input.render(&Replace(Some((secret, &changed))));
    if again.others.iter().any(|o| o.contains(&changed)) {
        return;
    }
    let result = load(&again.env, again.toml.as_deref());
    let visible_again = visible_text(&result);
    if visible_again.contains(&changed) {
        panic!(
            "a secret value reaches the operator's output.\nsecret: {secret:?}\noutput:\n{visible}"
        );
    }
}

// ----- seed encoding ---------------------------------------------------------------------------

impl Encode for ConfigInput {
    fn encode(&self, out: &mut Vec<u8>) {
        self.base.encode(out);
        self.env.encode(out);
        self.file.encode(out);
    }
}

impl Encode for EnvEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.key.encode(out);
        self.value.encode(out);
    }
}

impl Encode for EnvKey {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            EnvKey::Known(i) => {
                tag(out, 0, 3);
                i.encode(out);
            }
            EnvKey::Provider(n, f) => {
                tag(out, 1, 3);
                n.encode(out);
                f.encode(out);
            }
            EnvKey::Other(t) => {
                tag(out, 2, 3);
                t.encode(out);
            }
        }
    }
}

impl Encode for ProviderField {
    fn encode(&self, out: &mut Vec<u8>) {
        let i = ProviderField::ALL.iter().position(|f| f == self).unwrap_or(0);
        tag(out, i as u32, 6);
    }
}

impl Encode for Val {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Val::Known(i) => {
                tag(out, 0, 5);
                i.encode(out);
            }
            Val::Text(t) => {
                tag(out, 1, 5);
                t.encode(out);
            }
            Val::Int(n) => {
                tag(out, 2, 5);
                n.encode(out);
            }
            Val::Duration(n, u) => {
                tag(out, 3, 5);
                n.encode(out);
                u.encode(out);
            }
            Val::KnownWith(i, t) => {
                tag(out, 4, 5);
                i.encode(out);
                t.encode(out);
            }
        }
    }
}

impl Encode for FileInput {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FileInput::None => tag(out, 0, 3),
            FileInput::Raw(t) => {
                tag(out, 1, 3);
                t.encode(out);
            }
            FileInput::Doc(entries) => {
                tag(out, 2, 3);
                entries.encode(out);
            }
        }
    }
}

impl Encode for FileEntry {
    fn encode(&self, out: &mut Vec<u8>) {
        self.key.encode(out);
        self.value.encode(out);
    }
}

impl Encode for FileKey {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            FileKey::Known(i) => {
                tag(out, 0, 3);
                i.encode(out);
            }
            FileKey::Providers(b) => {
                tag(out, 1, 3);
                b.encode(out);
            }
            FileKey::Other(t) => {
                tag(out, 2, 3);
                t.encode(out);
            }
        }
    }
}

impl Encode for TomlVal {
    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            TomlVal::Str(v) => {
                tag(out, 0, 7);
                v.encode(out);
            }
            TomlVal::Int(n) => {
                tag(out, 1, 7);
                n.encode(out);
            }
            TomlVal::Bool(b) => {
                tag(out, 2, 7);
                b.encode(out);
            }
            TomlVal::Float(f) => {
                tag(out, 3, 7);
                out.extend_from_slice(&f.to_le_bytes());
            }
            TomlVal::Strings(vs) => {
                tag(out, 4, 7);
                vs.encode(out);
            }
            TomlVal::Providers(entries) => {
                tag(out, 5, 7);
                entries.encode(out);
            }
            TomlVal::Table => tag(out, 6, 7),
        }
    }
}

/// Index of `value` in [`KNOWN_VALUES`] (for writing seeds).
pub fn known(value: &str) -> u8 {
    KNOWN_VALUES.iter().position(|v| *v == value).map_or(0, |i| i as u8)
}

/// Index of `name` in [`ENV_KEYS`] (for writing seeds).
pub fn env_key(name: &str) -> u8 {
    ENV_KEYS.iter().position(|v| *v == name).map_or(0, |i| i as u8)
}

/// Index of `key` in [`FILE_KEYS`] (for writing seeds).
pub fn file_key(key: &str) -> u8 {
    FILE_KEYS.iter().position(|v| *v == key).map_or(0, |i| i as u8)
}
