//! Where a setting's raw value comes from: the environment map, else the TOML file.
//!
//! Lookup only, no parsing: [`Sources::get`] returns the raw text or TOML value and its
//! [`Origin`]. The environment wins; an empty (or blank) variable counts as unset. File keys are
//! dotted paths matched exactly, then case-insensitively per segment (the original's
//! configuration library lower-cased keys).

use std::collections::BTreeMap;

use toml::{Table, Value};

use super::keys::SettingName;
use super::secret::Origin;

/// A raw value, before it is parsed into the setting's type.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Raw<'a> {
    /// An environment variable's text.
    Env(&'a str),
    /// A value from the TOML file.
    File(&'a Value),
}

impl Raw<'_> {
    /// Where it came from.
    pub(crate) fn origin(&self) -> Origin {
        match self {
            Raw::Env(_) => Origin::Env,
            Raw::File(_) => Origin::File,
        }
    }
}

/// The two sources of configuration, borrowed for the duration of a load.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Sources<'a> {
    env: &'a BTreeMap<String, String>,
    file: Option<&'a Table>,
}

impl<'a> Sources<'a> {
    /// Both sources; `file` is the parsed TOML document, if any.
    pub(crate) fn new(env: &'a BTreeMap<String, String>, file: Option<&'a Table>) -> Self {
        Self { env, file }
    }

    /// The environment variable `name`, unless unset or blank.
    pub(crate) fn env(&self, name: &str) -> Option<&'a str> {
        self.env.get(name).map(String::as_str).filter(|v| !v.trim().is_empty())
    }

    /// The file value at dotted `key` (`chatbox.websocket.ping_interval`).
    pub(crate) fn file(&self, key: &str) -> Option<&'a Value> {
        let mut table = self.file?;
        let mut segments = key.split('.').peekable();
        while let Some(segment) = segments.next() {
            let value = lookup(table, segment)?;
            if segments.peek().is_none() {
                return Some(value);
            }
            table = value.as_table()?;
        }
        None
    }

    /// The setting's value: the environment variable if set, else the file key.
    pub(crate) fn get(&self, setting: SettingName) -> Option<Raw<'a>> {
        self.env(setting.env).map(Raw::Env).or_else(|| self.file(setting.file).map(Raw::File))
    }
}

/// `table[segment]`, else the first key equal to `segment` ignoring ASCII case.
fn lookup<'t>(table: &'t Table, segment: &str) -> Option<&'t Value> {
    table.get(segment).or_else(|| {
        table.iter().find(|(key, _)| key.eq_ignore_ascii_case(segment)).map(|(_, value)| value)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::keys;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    fn file(text: &str) -> Table {
        text.parse().unwrap()
    }

    #[test]
    fn environment_wins_over_file() {
        let env = env(&[("RATE_LIMIT", "7")]);
        let file = file("[chatbox]\nrate_limit = 9");
        let sources = Sources::new(&env, Some(&file));
        assert!(matches!(sources.get(keys::RATE_LIMIT), Some(Raw::Env("7"))));
    }

    #[test]
    fn blank_environment_falls_back_to_file() {
        let env = env(&[("RATE_LIMIT", "  ")]);
        let file = file("[chatbox]\nrate_limit = 9");
        let sources = Sources::new(&env, Some(&file));
        let raw = sources.get(keys::RATE_LIMIT);
        assert!(matches!(raw, Some(Raw::File(Value::Integer(9)))), "{raw:?}");
        assert_eq!(raw.map(|r| r.origin()), Some(Origin::File));
    }

    #[test]
    fn nested_keys_and_case_insensitive_fallback() {
        let env = BTreeMap::new();
        let file = file(
            "[chatbox.websocket]\nping_interval = \"30s\"\n[Notification]\nADMINEMAILS = \"a@b\"",
        );
        let sources = Sources::new(&env, Some(&file));
        assert_eq!(
            sources.file("chatbox.websocket.ping_interval").and_then(Value::as_str),
            Some("30s")
        );
        assert_eq!(sources.file("notification.adminEmails").and_then(Value::as_str), Some("a@b"));
        assert!(sources.file("chatbox.websocket.ping_interval.deeper").is_none());
        assert!(sources.file("chatbox.missing").is_none());
    }

    #[test]
    fn no_file_means_environment_only() {
        let env = env(&[("JWT_SECRET", "x")]);
        let sources = Sources::new(&env, None);
        assert!(sources.get(keys::JWT_SECRET).is_some());
        assert!(sources.get(keys::RATE_LIMIT).is_none());
    }
}
