//! Reading raw values into typed settings, collecting every problem instead of stopping.
//!
//! [`Reader`] wraps [`Sources`]: each method reads one setting as a type (text, integer, duration,
//! boolean, list, networks, choice), returns the default when the setting is unset or
//! unreadable, and records the problem plus the setting's name in `failed`, so rules about a
//! setting that could not be read are not reported on top (they would judge the default).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;
use toml::Value;

use super::error::ConfigError;
use super::keys::SettingName;
use super::secret::{Origin, Secret};
use super::source::{Raw, Sources};
use crate::godur;

/// Longest stretch of a bad value echoed in an error message.
const MAX_ECHO_CHARS: usize = 80;

/// Typed reading over [`Sources`], accumulating errors.
#[derive(Debug)]
pub(crate) struct Reader<'a> {
    /// Where values come from.
    pub(crate) sources: Sources<'a>,
    /// Every problem found so far.
    pub(crate) errors: Vec<ConfigError>,
    /// Non-fatal notes for the operator.
    pub(crate) warnings: Vec<String>,
    /// Environment names of settings that could not be read.
    pub(crate) failed: BTreeSet<&'static str>,
}

impl<'a> Reader<'a> {
    /// A reader with no problems recorded yet.
    pub(crate) fn new(sources: Sources<'a>) -> Self {
        Self { sources, errors: Vec::new(), warnings: Vec::new(), failed: BTreeSet::new() }
    }

    /// Records that `setting` holds something other than `expected`.
    pub(crate) fn unparsable(&mut self, setting: SettingName, expected: &str, found: String) {
        self.failed.insert(setting.env);
        self.errors.push(ConfigError::Unparsable {
            setting,
            expected: expected.to_string(),
            found,
        });
    }

    /// A scalar as text (strings as they are; numbers and booleans printed), with its origin.
    /// Arrays, tables and dates are refused; for secrets only the kind is echoed.
    fn scalar(&mut self, setting: SettingName, secret: bool) -> Option<(String, Origin)> {
        let raw = self.sources.get(setting)?;
        match raw {
            Raw::Env(text) => Some((text.to_string(), raw.origin())),
            Raw::File(value) => match scalar_text(value) {
                Some(text) => Some((text, raw.origin())),
                None => {
                    let found = if secret { kind(value).to_string() } else { describe(raw) };
                    self.unparsable(setting, "a string", found);
                    None
                }
            },
        }
    }

    /// Text, trimmed; `None` when unset.
    pub(crate) fn text_opt(&mut self, setting: SettingName) -> Option<String> {
        self.scalar(setting, false).map(|(text, _)| text.trim().to_string())
    }

    /// Text, trimmed, or `default` when unset.
    pub(crate) fn text(&mut self, setting: SettingName, default: &str) -> String {
        self.text_opt(setting).unwrap_or_else(|| default.to_string())
    }

    /// A secret, untrimmed, with its origin; empty [`Origin::Builtin`] when unset.
    pub(crate) fn secret(&mut self, setting: SettingName) -> Secret {
        self.scalar(setting, true)
            .map(|(value, origin)| Secret::new(value, origin))
            .unwrap_or_default()
    }

    /// A non-negative integer that fits `T`.
    pub(crate) fn integer<T>(&mut self, setting: SettingName, default: T) -> T
    where
        T: TryFrom<u64> + Copy,
    {
        self.bounded_integer(setting, default, "a non-negative integer")
    }

    /// A TCP port (0 to 65535).
    pub(crate) fn port(&mut self, setting: SettingName, default: u16) -> u16 {
        self.bounded_integer(setting, default, "an integer from 0 to 65535")
    }

    fn bounded_integer<T>(&mut self, setting: SettingName, default: T, expected: &str) -> T
    where
        T: TryFrom<u64> + Copy,
    {
        let Some(raw) = self.sources.get(setting) else {
            return default;
        };
        match unsigned(raw).and_then(|n| T::try_from(n).ok()) {
            Some(n) => n,
            None => {
                self.unparsable(setting, expected, describe(raw));
                default
            }
        }
    }

    /// A duration in Go syntax.
    pub(crate) fn duration(&mut self, setting: SettingName, default: Duration) -> Duration {
        let Some(raw) = self.sources.get(setting) else {
            return default;
        };
        let parsed = text_of(raw).and_then(|text| godur::parse(text).ok());
        parsed.unwrap_or_else(|| {
            self.unparsable(
                setting,
                "a non-negative duration in Go syntax such as \"100ms\", \"15m\" or \"2m0s\"",
                describe(raw),
            );
            default
        })
    }

    /// A boolean: `true`/`false`/`1`/`0`/`yes`/`no` (any case) or a TOML boolean.
    pub(crate) fn boolean(&mut self, setting: SettingName, default: bool) -> bool {
        let Some(raw) = self.sources.get(setting) else {
            return default;
        };
        let parsed = match raw {
            Raw::Env(_) | Raw::File(Value::String(_)) => text_of(raw).and_then(boolean_text),
            Raw::File(Value::Boolean(b)) => Some(*b),
            Raw::File(Value::Integer(0)) => Some(false),
            Raw::File(Value::Integer(1)) => Some(true),
            Raw::File(_) => None,
        };
        parsed.unwrap_or_else(|| {
            self.unparsable(setting, "true, false, 1, 0, yes or no", describe(raw));
            default
        })
    }

    /// One of `options` (case-insensitive).
    pub(crate) fn choice<T: Copy>(
        &mut self,
        setting: SettingName,
        default: T,
        options: &[(&'static str, T)],
    ) -> T {
        let Some(raw) = self.sources.get(setting) else {
            return default;
        };
        let found = text_of(raw).map(str::trim).and_then(|text| {
            options.iter().find(|(name, _)| name.eq_ignore_ascii_case(text)).map(|(_, v)| *v)
        });
        found.unwrap_or_else(|| {
            let names: Vec<&str> = options.iter().map(|(name, _)| *name).collect();
            let expected = format!("one of {}", names.join(", "));
            self.unparsable(setting, &expected, describe(raw));
            default
        })
    }

    /// A list: a comma-separated string or a TOML array; entries trimmed, empty ones dropped.
    /// `None` when unset.
    pub(crate) fn list_opt(&mut self, setting: SettingName) -> Option<Vec<String>> {
        let raw = self.sources.get(setting)?;
        if let Some(text) = text_of(raw) {
            return Some(split_list(text));
        }
        match raw {
            Raw::File(Value::Array(items)) => {
                let mut entries = Vec::new();
                for item in items {
                    match scalar_text(item) {
                        Some(text) => entries.extend(split_list(&text)),
                        None => {
                            self.unparsable(
                                setting,
                                "a comma-separated string or an array of strings",
                                format!("an array containing {}", kind(item)),
                            );
                            return None;
                        }
                    }
                }
                Some(entries)
            }
            Raw::Env(_) | Raw::File(_) => {
                self.unparsable(
                    setting,
                    "a comma-separated string or an array of strings",
                    describe(raw),
                );
                None
            }
        }
    }

    /// A list, or `default` when unset or unreadable.
    pub(crate) fn list(&mut self, setting: SettingName, default: &[&str]) -> Vec<String> {
        self.list_opt(setting)
            .unwrap_or_else(|| default.iter().map(|entry| entry.to_string()).collect())
    }

    /// A list of networks (CIDRs; a bare address means a single host); `None` when unset or
    /// when any entry is invalid (all invalid entries are reported in one error).
    pub(crate) fn networks_opt(&mut self, setting: SettingName) -> Option<Vec<IpNet>> {
        let entries = self.list_opt(setting)?;
        let mut networks = Vec::new();
        let mut invalid = Vec::new();
        for entry in entries {
            match parse_network(&entry) {
                Some(net) => networks.push(net),
                None => invalid.push(truncate(&entry)),
            }
        }
        if invalid.is_empty() {
            Some(networks)
        } else {
            self.failed.insert(setting.env);
            self.errors.push(ConfigError::InvalidNetworks { setting, entries: invalid });
            None
        }
    }
}

/// Strings as they are; integers, floats and booleans printed; other kinds refused.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(text) => Some(text.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Float(x) => Some(x.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        Value::Datetime(_) | Value::Array(_) | Value::Table(_) => None,
    }
}

/// A non-negative integer from text or a TOML integer.
pub(crate) fn unsigned(raw: Raw<'_>) -> Option<u64> {
    match raw {
        Raw::File(Value::Integer(n)) => u64::try_from(*n).ok(),
        _ => text_of(raw)?.trim().parse().ok(),
    }
}

/// The text of an environment variable or of a file string; `None` for other file values.
fn text_of(raw: Raw<'_>) -> Option<&str> {
    match raw {
        Raw::Env(text) => Some(text),
        Raw::File(Value::String(text)) => Some(text),
        Raw::File(_) => None,
    }
}

fn boolean_text(text: &str) -> Option<bool> {
    let text = text.trim();
    if ["true", "1", "yes"].iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(true)
    } else if ["false", "0", "no"].iter().any(|t| t.eq_ignore_ascii_case(text)) {
        Some(false)
    } else {
        None
    }
}

/// Comma-separated entries, trimmed, empties dropped.
pub(crate) fn split_list(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|e| !e.is_empty()).map(str::to_string).collect()
}

/// `10.0.0.0/8` style, or a bare address as a one-host network. Host bits are cleared.
pub(crate) fn parse_network(entry: &str) -> Option<IpNet> {
    entry
        .parse::<IpNet>()
        .map(|net| net.trunc())
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// A value for an error message: quoted and shortened text, or the TOML kind.
pub(crate) fn describe(raw: Raw<'_>) -> String {
    if let Some(text) = text_of(raw) {
        return format!("{:?}", truncate(text));
    }
    match raw {
        Raw::File(Value::Integer(n)) => n.to_string(),
        Raw::File(Value::Boolean(b)) => b.to_string(),
        Raw::File(value) => kind(value).to_string(),
        Raw::Env(text) => text.to_string(),
    }
}

/// The kind of a TOML value, for messages that must not echo it.
pub(crate) fn kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a date-time",
        Value::Array(_) => "an array",
        Value::Table(_) => "a table",
    }
}

/// At most [`MAX_ECHO_CHARS`] characters of `text`, marked when cut.
fn truncate(text: &str) -> String {
    if text.chars().count() <= MAX_ECHO_CHARS {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(MAX_ECHO_CHARS).collect();
        cut.push('…');
        cut
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::config::keys;

    fn with<R>(env: &[(&str, &str)], file: &str, f: impl FnOnce(&mut Reader<'_>) -> R) -> R {
        let env: BTreeMap<String, String> =
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let table: toml::Table = file.parse().unwrap();
        let mut reader = Reader::new(Sources::new(&env, Some(&table)));
        f(&mut reader)
    }

    #[test]
    fn integers_from_env_text_file_integer_and_file_string() {
        with(&[("RATE_LIMIT", " 42 ")], "", |r| assert_eq!(r.integer(keys::RATE_LIMIT, 1u32), 42));
        with(&[], "[chatbox]\nrate_limit = 7", |r| {
            assert_eq!(r.integer(keys::RATE_LIMIT, 1u32), 7);
        });
        with(&[], "[chatbox]\nrate_limit = \"8\"", |r| {
            assert_eq!(r.integer(keys::RATE_LIMIT, 1u32), 8);
        });
    }

    #[test]
    fn bad_integers_are_reported_and_default_is_kept() {
        with(&[("RATE_LIMIT", "-3")], "", |r| {
            assert_eq!(r.integer(keys::RATE_LIMIT, 100u32), 100);
            assert_eq!(r.errors.len(), 1);
            assert!(r.failed.contains("RATE_LIMIT"));
            let text = r.errors[0].to_string();
            assert!(text.contains("RATE_LIMIT / chatbox.rate_limit"), "{text}");
            assert!(text.contains("\"-3\""), "{text}");
        });
        with(&[("SERVER_PORT", "70000")], "", |r| {
            assert_eq!(r.port(keys::SERVER_PORT, 8080), 8080);
            assert!(r.errors[0].to_string().contains("0 to 65535"));
        });
        with(&[], "[chatbox]\nrate_limit = [1]", |r| {
            r.integer(keys::RATE_LIMIT, 1u32);
            assert!(r.errors[0].to_string().contains("got an array"));
        });
    }

    #[test]
    fn durations_in_go_syntax_from_both_sources() {
        with(&[("RECONNECT_TIMEOUT", "1h30m")], "", |r| {
            assert_eq!(
                r.duration(keys::RECONNECT_TIMEOUT, Duration::ZERO),
                Duration::from_secs(5400)
            );
        });
        with(&[], "[chatbox]\nllm_stream_timeout = \"2m0s\"", |r| {
            assert_eq!(
                r.duration(keys::LLM_STREAM_TIMEOUT, Duration::ZERO),
                Duration::from_secs(120)
            );
        });
        for bad in
            ["[chatbox]\nllm_stream_timeout = \"120\"", "[chatbox]\nllm_stream_timeout = 120"]
        {
            with(&[], bad, |r| {
                let d = r.duration(keys::LLM_STREAM_TIMEOUT, Duration::from_secs(1));
                assert_eq!(d, Duration::from_secs(1));
                assert!(r.errors[0].to_string().contains("Go syntax"), "{:?}", r.errors);
            });
        }
    }

    #[test]
    fn booleans_accept_the_usual_spellings() {
        for (text, want) in
            [("TRUE", true), ("yes", true), ("1", true), ("No", false), ("0", false)]
        {
            with(&[("ENABLE_METRICS", text)], "", |r| {
                assert_eq!(r.boolean(keys::ENABLE_METRICS, !want), want);
            });
        }
        with(&[], "[chatbox]\nenable_metrics = false", |r| {
            assert!(!r.boolean(keys::ENABLE_METRICS, true));
        });
        with(&[("ENABLE_METRICS", "maybe")], "", |r| {
            assert!(r.boolean(keys::ENABLE_METRICS, true));
            assert_eq!(r.errors.len(), 1);
        });
    }

    #[test]
    fn lists_from_comma_strings_and_arrays() {
        with(&[("WS_ALLOWED_ORIGINS", " https://a.com , ,https://b.com,")], "", |r| {
            assert_eq!(
                r.list(keys::ALLOWED_ORIGINS, &[]),
                vec!["https://a.com".to_string(), "https://b.com".to_string()]
            );
        });
        with(
            &[],
            "[chatbox]\nallowed_origins = [\" https://a.com\", \"\", \"https://b.com\"]",
            |r| {
                assert_eq!(
                    r.list(keys::ALLOWED_ORIGINS, &[]),
                    vec!["https://a.com", "https://b.com"]
                );
            },
        );
        with(&[], "[chatbox]\nallowed_origins = [{ a = 1 }]", |r| {
            assert_eq!(r.list(keys::ALLOWED_ORIGINS, &["x"]), vec!["x"]);
            assert_eq!(r.errors.len(), 1);
        });
        with(&[], "", |r| assert_eq!(r.list(keys::ALLOWED_ORIGINS, &["d"]), vec!["d"]));
    }

    #[test]
    fn networks_accept_cidrs_and_bare_addresses_and_list_every_bad_entry() {
        with(&[("TRUSTED_PROXIES", "10.1.2.3/8, 192.168.1.1, ::1, fd00::/8")], "", |r| {
            let nets = r.networks_opt(keys::TRUSTED_PROXIES).unwrap();
            let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
            assert_eq!(shown, ["10.0.0.0/8", "192.168.1.1/32", "::1/128", "fd00::/8"]);
        });
        with(&[("TRUSTED_PROXIES", "10.0.0.0/8,nope,1.2.3.4/40")], "", |r| {
            assert_eq!(r.networks_opt(keys::TRUSTED_PROXIES), None);
            assert_eq!(
                r.errors,
                vec![ConfigError::InvalidNetworks {
                    setting: keys::TRUSTED_PROXIES,
                    entries: vec!["nope".into(), "1.2.3.4/40".into()],
                }]
            );
        });
    }

    #[test]
    fn choices_are_case_insensitive() {
        let options = [("json", 1), ("text", 2)];
        with(&[("LOG_FORMAT", "TEXT")], "", |r| {
            assert_eq!(r.choice(keys::LOG_FORMAT, 1, &options), 2);
        });
        with(&[("LOG_FORMAT", "xml")], "", |r| {
            assert_eq!(r.choice(keys::LOG_FORMAT, 1, &options), 1);
            assert!(r.errors[0].to_string().contains("one of json, text"));
        });
    }

    #[test]
    fn secrets_keep_origin_and_are_never_echoed() {
        with(&[("JWT_SECRET", " abc ")], "", |r| {
            let secret = r.secret(keys::JWT_SECRET);
            assert_eq!((secret.expose(), secret.origin()), (" abc ", Origin::Env));
        });
        with(&[], "[chatbox]\njwt_secret = \"from-file\"", |r| {
            assert_eq!(r.secret(keys::JWT_SECRET).origin(), Origin::File);
        });
        with(&[], "[chatbox]\njwt_secret = [\"hidden-value\"]", |r| {
            assert!(r.secret(keys::JWT_SECRET).is_empty());
            let text = r.errors[0].to_string();
            assert!(!text.contains("hidden-value") && text.contains("an array"), "{text}");
        });
    }

    #[test]
    fn long_values_are_shortened_in_messages() {
        let long = "x".repeat(500);
        with(&[("RATE_LIMIT", long.as_str())], "", |r| {
            r.integer(keys::RATE_LIMIT, 1u32);
            assert!(r.errors[0].to_string().len() < 250);
        });
    }
}
