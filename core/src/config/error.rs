//! What can be wrong with a configuration, one variant per kind of problem.
//!
//! Every message names the setting by environment variable and file key (`JWT_SECRET /
//! chatbox.jwt_secret: ...`) and says what is acceptable. Messages never contain a secret's value.
//! [`ConfigErrors`] is the whole report: every problem found, one per line.

use std::fmt;

use super::keys::SettingName;
use super::secret::{SecretProblem, GENERATE_HINT};

/// One configuration problem. Loading and [`super::Config::validate`] collect all of them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The configuration file is not TOML. (The text is not echoed: it may hold secrets.)
    #[error("configuration file is not valid TOML (line {line}, column {column}): {message}")]
    FileSyntax {
        /// 1-based line of the problem.
        line: usize,
        /// 1-based column (in bytes) of the problem.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// A value that cannot be read as the setting's type (integer, duration, boolean, ...).
    #[error("{setting}: expected {expected}, got {found}")]
    Unparsable {
        /// The setting.
        setting: SettingName,
        /// What the setting accepts.
        expected: String,
        /// What was found (the value for ordinary settings, only its kind for secrets).
        found: String,
    },
    /// The JWT secret is missing or weak (§2.4).
    #[error("{setting}: {problem}; {GENERATE_HINT}")]
    JwtSecret {
        /// Always the JWT secret setting.
        setting: SettingName,
        /// What is wrong with it.
        problem: SecretProblem,
    },
    /// The encryption key is neither empty nor 32 bytes (§8.4).
    #[error(
        "{setting}: must be exactly 32 bytes (AES-256) or empty to turn encryption off, \
         got {len} bytes"
    )]
    EncryptionKeyLength {
        /// Always the encryption key setting.
        setting: SettingName,
        /// The key's length in bytes.
        len: usize,
    },
    /// A value copied from a sample configuration unchanged (§2.4, §3.1, §8.4).
    #[error("{setting}: contains the placeholder marker {marker:?} from a sample configuration")]
    Placeholder {
        /// The setting.
        setting: SettingName,
        /// The marker found.
        marker: &'static str,
    },
    /// A `FRAME_ANCESTORS` entry that cannot be a Content-Security-Policy source list: it holds
    /// a `;` or `,` (which would end the directive or the header), a control or a non-ASCII
    /// character.
    #[error(
        "{setting}: {entry:?} is not a CSP source (e.g. 'self' or https://portal.example; no \
         ';', ',', control or non-ASCII characters)"
    )]
    FrameAncestor {
        /// Always the frame-ancestors setting.
        setting: SettingName,
        /// The entry as configured.
        entry: String,
    },
    /// The HTTP path prefix is not an absolute path (§1).
    #[error("{setting}: must start with \"/\" (e.g. \"/chatbox\", or \"/\" for the root)")]
    PathPrefix {
        /// Always the path prefix setting.
        setting: SettingName,
    },
    /// A duration above the largest the setting accepts.
    #[error("{setting}: must be at most {max}")]
    TooLong {
        /// The setting.
        setting: SettingName,
        /// The largest accepted value, in Go syntax.
        max: String,
    },
    /// A count, size, limit or duration that must be greater than zero.
    #[error("{setting}: must be greater than zero")]
    NotPositive {
        /// The setting.
        setting: SettingName,
    },
    /// Two settings that contradict each other, e.g. a first-chunk timeout above the whole-reply
    /// timeout.
    #[error("{setting} ({value}) must be {relation} {other} ({other_value})")]
    Relation {
        /// The setting that is out of line.
        setting: SettingName,
        /// Its value, formatted.
        value: String,
        /// How it must compare.
        relation: Relation,
        /// The setting it is compared with.
        other: SettingName,
        /// That setting's value, formatted.
        other_value: String,
    },
    /// Entries of a network list that are neither CIDRs nor IP addresses.
    #[error(
        "{setting}: invalid network(s) {}; expected CIDR notation such as 10.0.0.0/8 or a single \
         IP address",
        quoted(entries)
    )]
    InvalidNetworks {
        /// The setting.
        setting: SettingName,
        /// Every refused entry.
        entries: Vec<String>,
    },
    /// A setting that must not be empty.
    #[error("{setting}: must not be empty")]
    Empty {
        /// The setting.
        setting: SettingName,
    },
    /// A URL setting that does not parse or has the wrong scheme. (The URL itself is not echoed:
    /// webhook and database URLs often carry credentials.)
    #[error("{setting}: {reason}")]
    InvalidUrl {
        /// The setting.
        setting: SettingName,
        /// What is wrong.
        reason: String,
    },
    /// A setting required because another one is set.
    #[error("{setting} is required when {because} is set")]
    Required {
        /// The missing setting.
        setting: SettingName,
        /// The setting that requires it.
        because: SettingName,
    },
    /// A feature whose settings are only partly given (e.g. SMS alerts with an account id but no
    /// token): every missing setting is named.
    #[error("{feature} partially configured: missing {}", names_text(missing))]
    Incomplete {
        /// What the settings turn on, e.g. `SMS alerts`.
        feature: &'static str,
        /// Every setting still needed.
        missing: Vec<SettingName>,
    },
    /// No LLM provider is configured (§7.1).
    #[error(
        "no LLM provider configured: add [[llm.providers]] entries to the file or set \
         LLM_PROVIDER_1_ID, _NAME, _TYPE, _ENDPOINT and _API_KEY"
    )]
    NoProviders,
    /// A provider array or entry of the file has the wrong shape.
    #[error("{location}: expected {expected}, got {found}")]
    ProviderMalformed {
        /// Where, e.g. `llm.providers entry #2, field endpoint`.
        location: String,
        /// What is accepted there.
        expected: &'static str,
        /// What was found (its kind only).
        found: &'static str,
    },
    /// A provider whose `type` is not one of the known kinds (§7.1).
    #[error("{provider}: unknown type {value:?}; expected one of openai, anthropic, dify, echo")]
    ProviderUnknownType {
        /// Which provider.
        provider: ProviderRef,
        /// The type given.
        value: String,
    },
    /// A provider lacking required fields (`id`, `name`, `type`; and `endpoint`, `apiKey` unless
    /// it is `echo`). Each field is named by its environment variable and its file key, like
    /// every other setting (`LLM_PROVIDER_1_NAME / llm.providers[0].name`).
    #[error("{provider}: missing {}", provider_fields_text(provider.slot, fields))]
    ProviderMissingFields {
        /// Which provider.
        provider: ProviderRef,
        /// Every missing field, by its file key name.
        fields: Vec<&'static str>,
    },
    /// A provider endpoint that breaks the endpoint rule (§7.1).
    #[error("{provider}: endpoint {reason}")]
    ProviderEndpoint {
        /// Which provider.
        provider: ProviderRef,
        /// What is wrong.
        reason: String,
    },
    /// Two or more providers with the same `id`.
    #[error("LLM providers {} share the id {id:?}; ids must be unique", positions_text(positions))]
    ProviderDuplicateId {
        /// The shared id.
        id: String,
        /// 1-based positions of the providers that carry it.
        positions: Vec<usize>,
    },
    /// A fallback list names an id no provider has (issue 17).
    #[error(
        "{provider}: {} names {id:?}, which is not a configured provider id",
        provider_fields_text(provider.slot, &["fallback"])
    )]
    ProviderFallbackUnknown {
        /// The provider whose list it is.
        provider: ProviderRef,
        /// The unknown id.
        id: String,
    },
    /// Fallback lists that lead back to where they started (issue 17); a provider naming
    /// itself is one.
    #[error(
        "{provider}: {} makes a fallback cycle: {}",
        provider_fields_text(provider.slot, &["fallback"]),
        cycle.join(" → ")
    )]
    ProviderFallbackCycle {
        /// The first provider of the cycle, in configuration order.
        provider: ProviderRef,
        /// The ids along the cycle, first and last the same.
        cycle: Vec<String>,
    },
    /// `vision` on a provider whose API chatbox sends no images to (only `openai` and
    /// `anthropic` take image parts).
    #[error(
        "{provider}: {} is only supported for type openai or anthropic",
        provider_fields_text(provider.slot, &["vision"])
    )]
    ProviderVision {
        /// Which provider.
        provider: ProviderRef,
    },
}

impl ConfigError {
    /// Environment names of the settings this problem is about (empty for file syntax and
    /// provider problems). Lets callers and tests match problems to settings without parsing
    /// message text.
    pub fn settings(&self) -> Vec<&'static str> {
        match self {
            Self::Unparsable { setting, .. }
            | Self::JwtSecret { setting, .. }
            | Self::EncryptionKeyLength { setting, .. }
            | Self::Placeholder { setting, .. }
            | Self::FrameAncestor { setting, .. }
            | Self::PathPrefix { setting }
            | Self::NotPositive { setting }
            | Self::TooLong { setting, .. }
            | Self::InvalidNetworks { setting, .. }
            | Self::Empty { setting }
            | Self::InvalidUrl { setting, .. } => vec![setting.env],
            Self::Relation { setting, other, .. } => vec![setting.env, other.env],
            Self::Incomplete { missing, .. } => missing.iter().map(|s| s.env).collect(),
            Self::Required { setting, because } => vec![setting.env, because.env],
            Self::FileSyntax { .. }
            | Self::NoProviders
            | Self::ProviderMalformed { .. }
            | Self::ProviderUnknownType { .. }
            | Self::ProviderMissingFields { .. }
            | Self::ProviderEndpoint { .. }
            | Self::ProviderDuplicateId { .. }
            | Self::ProviderFallbackUnknown { .. }
            | Self::ProviderFallbackCycle { .. }
            | Self::ProviderVision { .. } => Vec::new(),
        }
    }
}

/// `A / a.key, B / b.key`.
fn names_text(names: &[SettingName]) -> String {
    names.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
}

/// How two settings must compare, in [`ConfigError::Relation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relation {
    /// `value <= other`.
    AtMost,
    /// `value < other`.
    LessThan,
    /// `value >= other`.
    AtLeast,
}

impl fmt::Display for Relation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::AtMost => "at most",
            Self::LessThan => "less than",
            Self::AtLeast => "at least",
        })
    }
}

/// Names a provider in messages: its 1-based position in configuration order and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderRef {
    /// 1-based position (the `n` of `LLM_PROVIDER_<n>_*` when there are no gaps).
    pub position: usize,
    /// Its id, empty when not set.
    pub id: String,
    /// Where it was defined: the `n` of `LLM_PROVIDER_<n>_*`, which is also file entry `n`
    /// (differs from `position` when earlier definitions were dropped).
    pub slot: usize,
}

impl ProviderRef {
    /// The provider at 1-based `position`, defined at the same slot.
    pub fn new(position: usize, id: impl Into<String>) -> Self {
        Self { position, id: id.into(), slot: position }
    }
}

impl fmt::Display for ProviderRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.id.is_empty() {
            write!(f, "LLM provider #{} (no id)", self.position)
        } else {
            write!(f, "LLM provider #{} (id {:?})", self.position, self.id)
        }
    }
}

/// Every problem found in a configuration; `Display` gives one per line, each prefixed `- `.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl ConfigErrors {
    /// The problems, in the order found (file syntax and unreadable values first, then rules).
    pub fn iter(&self) -> std::slice::Iter<'_, ConfigError> {
        self.0.iter()
    }

    /// How many problems.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// `true` when there are none (never the case for a returned `Err`).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The line above the list: `configuration is invalid (1 problem)` / `(3 problems)`.
    pub fn headline(&self) -> String {
        let n = self.len();
        let noun = if n == 1 { "problem" } else { "problems" };
        format!("configuration is invalid ({n} {noun})")
    }

    /// Whether nothing at all is configured: the JWT secret is not set and there is no
    /// provider — a newcomer's first run, who should hear about `serve --dev`.
    pub fn nothing_configured(&self) -> bool {
        let no_secret = self
            .0
            .iter()
            .any(|e| matches!(e, ConfigError::JwtSecret { problem: SecretProblem::Missing, .. }));
        no_secret && self.0.contains(&ConfigError::NoProviders)
    }
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "- {error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

impl IntoIterator for ConfigErrors {
    type Item = ConfigError;
    type IntoIter = std::vec::IntoIter<ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.into_iter()
    }
}

impl<'a> IntoIterator for &'a ConfigErrors {
    type Item = &'a ConfigError;
    type IntoIter = std::slice::Iter<'a, ConfigError>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// The environment variable suffix of a provider field named by its file key.
fn provider_env_field(field: &str) -> String {
    match field {
        "apiKey" => "API_KEY".to_string(),
        other => other.to_ascii_uppercase(),
    }
}

/// `LLM_PROVIDER_<n>_<FIELD> / llm.providers[<n-1>].<field>` for each field, comma-separated.
fn provider_fields_text(slot: usize, fields: &[&'static str]) -> String {
    let index = slot.saturating_sub(1);
    let names: Vec<String> = fields
        .iter()
        .map(|field| {
            let env = provider_env_field(field);
            format!("LLM_PROVIDER_{slot}_{env} / llm.providers[{index}].{field}")
        })
        .collect();
    names.join(", ")
}

fn quoted(entries: &[String]) -> String {
    let quoted: Vec<String> = entries.iter().map(|e| format!("{e:?}")).collect();
    quoted.join(", ")
}

fn positions_text(positions: &[usize]) -> String {
    let texts: Vec<String> = positions.iter().map(|p| format!("#{p}")).collect();
    texts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::super::keys;
    use super::*;

    #[test]
    fn report_lists_one_problem_per_line() {
        let errors = ConfigErrors(vec![
            ConfigError::NotPositive { setting: keys::RATE_LIMIT },
            ConfigError::Empty { setting: keys::SERVER_HOST },
        ]);
        assert_eq!(
            errors.to_string(),
            "- RATE_LIMIT / chatbox.rate_limit: must be greater than zero\n\
             - SERVER_HOST / server.host: must not be empty"
        );
    }

    #[test]
    fn secret_errors_say_how_to_generate_one() {
        let error = ConfigError::JwtSecret {
            setting: keys::JWT_SECRET,
            problem: SecretProblem::TooShort { len: 3 },
        };
        let text = error.to_string();
        assert!(text.starts_with("JWT_SECRET / chatbox.jwt_secret: "), "{text}");
        assert!(text.contains("chatbox gen-secret"), "{text}");
        assert!(text.contains("openssl rand -base64 48"), "{text}");
    }

    #[test]
    fn relation_names_both_settings() {
        let error = ConfigError::Relation {
            setting: keys::WS_PING_INTERVAL,
            value: "1m0s".into(),
            relation: Relation::LessThan,
            other: keys::WS_PONG_WAIT,
            other_value: "1m0s".into(),
        };
        assert_eq!(error.settings(), vec!["WS_PING_INTERVAL", "WS_PONG_WAIT"]);
        assert_eq!(
            error.to_string(),
            "WS_PING_INTERVAL / chatbox.websocket.ping_interval (1m0s) must be less than \
             WS_PONG_WAIT / chatbox.websocket.pong_wait (1m0s)"
        );
    }
}
