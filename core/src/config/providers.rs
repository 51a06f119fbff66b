//! LLM providers: reading them from the file and the environment, and their rules (§7.1,
//! §10 items 14, 15).
//!
//! The file array is `llm.providers`, else `chatbox.llm.providers`. For n = 1..=10,
//! `LLM_PROVIDER_<n>_{ID,NAME,TYPE,ENDPOINT,API_KEY,MODEL,FALLBACK}` override entry n field by
//! field (`FALLBACK` is a comma-separated list of ids, the file's `fallback` an array or such a
//! string; issue 17);
//! beyond the file's entries they define whole providers. Configuration order is kept: the first
//! provider is the default model.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, Ipv6Addr};

use toml::{Table, Value};
use url::{Host, Url};

use super::error::{ConfigError, ProviderRef};
use super::keys::{MAX_ENV_PROVIDERS, PROVIDER_ARRAYS};
use super::model::{ProviderConfig, ProviderKind};
use super::read::kind;
use super::secret::{Origin, Secret};
use super::source::Sources;

/// Host suffixes that count as internal for `http` endpoints.
const INTERNAL_SUFFIXES: [&str; 4] = [".local", ".internal", ".svc", ".cluster.local"];

/// The providers read, and how many definitions were dropped for an unusable type.
#[derive(Debug, Default)]
pub(crate) struct ReadProviders {
    /// Providers whose type is known, in configuration order.
    pub(crate) providers: Vec<ProviderConfig>,
    /// Definitions dropped (malformed entry, missing or unknown type); already reported.
    pub(crate) dropped: usize,
    /// The slot (`n` of `LLM_PROVIDER_<n>_*`, file entry `n`) each kept provider came from.
    pub(crate) slots: Vec<usize>,
}

impl ReadProviders {
    /// Points `error`'s provider, numbered among the kept providers, at the slot it was
    /// defined in, so its message names the operator's keys.
    pub(crate) fn locate(&self, error: &mut ConfigError) {
        if let ConfigError::ProviderMissingFields { provider, .. }
        | ConfigError::ProviderEndpoint { provider, .. }
        | ConfigError::ProviderFallbackUnknown { provider, .. }
        | ConfigError::ProviderFallbackCycle { provider, .. } = error
        {
            if let Some(&slot) = provider.position.checked_sub(1).and_then(|i| self.slots.get(i)) {
                provider.slot = slot;
            }
        }
    }
}

/// One definition as read, before its type is checked.
#[derive(Debug, Default)]
struct RawProvider {
    id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    endpoint: Option<String>,
    api_key: Option<Secret>,
    model: Option<String>,
    /// Fallback provider ids, in order.
    fallback: Option<Vec<String>>,
    /// Whether the model takes images (`vision`), as written.
    vision: Option<String>,
    /// The file entry was not a table: already reported, dropped.
    malformed: bool,
}

/// Reads and merges every provider definition, reporting shape and type problems.
pub(crate) fn read(
    sources: &Sources<'_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> ReadProviders {
    let mut raws = read_file(sources, errors, warnings);
    merge_env(sources, &mut raws, warnings);
    let mut read = ReadProviders::default();
    for (index, raw) in raws.into_iter().enumerate() {
        if raw.malformed {
            read.dropped += 1;
            continue;
        }
        let provider = ProviderRef::new(index + 1, raw.id.clone().unwrap_or_default());
        let kind = match raw.kind.as_deref().map(ProviderKind::from_name) {
            Some(Some(kind)) => kind,
            Some(None) => {
                let value = raw.kind.unwrap_or_default();
                errors.push(ConfigError::ProviderUnknownType { provider, value });
                read.dropped += 1;
                continue;
            }
            None => {
                let mut fields = vec![];
                for (field, present) in [
                    ("id", raw.id.is_some()),
                    ("name", raw.name.is_some()),
                    ("type", false),
                    ("endpoint", raw.endpoint.is_some()),
                    ("apiKey", raw.api_key.is_some()),
                ] {
                    if !present {
                        fields.push(field);
                    }
                }
                errors.push(ConfigError::ProviderMissingFields { provider, fields });
                read.dropped += 1;
                continue;
            }
        };
        // The demo model needs no display name: it defaults to its id (README).
        let name = match (raw.name, kind) {
            (Some(name), _) => name,
            (None, ProviderKind::Echo) => raw.id.clone().unwrap_or_default(),
            (None, _) => String::new(),
        };
        let vision = match raw.vision.as_deref().map(vision_text) {
            None => false,
            Some(Some(vision)) => vision,
            Some(None) => {
                errors.push(ConfigError::ProviderMalformed {
                    location: format!("{provider}: LLM_PROVIDER_{}_VISION / vision", index + 1),
                    expected: "true or false",
                    found: "another value",
                });
                false
            }
        };
        read.slots.push(index + 1);
        read.providers.push(ProviderConfig {
            id: raw.id.unwrap_or_default(),
            name,
            kind,
            endpoint: raw.endpoint.unwrap_or_default(),
            api_key: raw.api_key.unwrap_or_default(),
            model: raw.model.unwrap_or_default(),
            fallback: raw.fallback.unwrap_or_default(),
            vision,
        });
    }
    read
}

fn read_file(
    sources: &Sources<'_>,
    errors: &mut Vec<ConfigError>,
    warnings: &mut Vec<String>,
) -> Vec<RawProvider> {
    let mut found = PROVIDER_ARRAYS.into_iter().filter_map(|key| Some((key, sources.file(key)?)));
    let Some((location, value)) = found.next() else {
        return Vec::new();
    };
    if let Some((ignored, _)) = found.next() {
        warnings.push(format!("both {location} and {ignored} are set; {ignored} is ignored"));
    }
    let Value::Array(entries) = value else {
        errors.push(ConfigError::ProviderMalformed {
            location: location.to_string(),
            expected: "an array of tables ([[llm.providers]])",
            found: kind(value),
        });
        return Vec::new();
    };
    entries
        .iter()
        .enumerate()
        .map(|(index, entry)| {
            let at = format!("{location} entry #{}", index + 1);
            match entry {
                Value::Table(table) => read_entry(table, &at, errors),
                other => {
                    errors.push(ConfigError::ProviderMalformed {
                        location: at,
                        expected: "a table with id, name, type, endpoint, apiKey, model",
                        found: kind(other),
                    });
                    RawProvider { malformed: true, ..RawProvider::default() }
                }
            }
        })
        .collect()
}

fn read_entry(table: &Table, at: &str, errors: &mut Vec<ConfigError>) -> RawProvider {
    let mut field = |names: &[&'static str]| -> Option<String> {
        let value = names.iter().find_map(|name| {
            table.iter().find(|(key, _)| key.eq_ignore_ascii_case(name)).map(|(_, v)| v)
        })?;
        match value {
            Value::String(text) => Some(text.trim().to_string()),
            Value::Integer(n) => Some(n.to_string()),
            other => {
                errors.push(ConfigError::ProviderMalformed {
                    location: format!("{at}, field {}", names.first().copied().unwrap_or_default()),
                    expected: "a string",
                    found: kind(other),
                });
                None
            }
        }
    };
    let id = field(&["id"]);
    let name = field(&["name"]);
    let kind = field(&["type"]);
    let endpoint = field(&["endpoint"]);
    let api_key = field(&["apiKey", "api_key"]).map(|key| Secret::new(key, Origin::File));
    let model = field(&["model"]);
    let fallback = read_fallback(table, at, errors);
    let vision =
        table.iter().find(|(key, _)| key.eq_ignore_ascii_case("vision")).map(|(_, v)| match v {
            Value::String(text) => text.trim().to_string(),
            Value::Boolean(b) => b.to_string(),
            other => super::read::kind(other).to_string(),
        });
    RawProvider { id, name, kind, endpoint, api_key, model, fallback, vision, malformed: false }
}

/// The entry's `fallback`: an array of strings or a comma-separated string.
fn read_fallback(table: &Table, at: &str, errors: &mut Vec<ConfigError>) -> Option<Vec<String>> {
    let value =
        table.iter().find(|(key, _)| key.eq_ignore_ascii_case("fallback")).map(|(_, v)| v)?;
    let malformed = |found| ConfigError::ProviderMalformed {
        location: format!("{at}, field fallback"),
        expected: "an array of provider ids (or a comma-separated string)",
        found,
    };
    match value {
        Value::String(text) => Some(split_ids(text)),
        Value::Array(items) => {
            let mut ids = Vec::new();
            for item in items {
                match item {
                    Value::String(id) if !id.trim().is_empty() => ids.push(id.trim().to_string()),
                    Value::String(_) => {}
                    other => {
                        errors.push(malformed(kind(other)));
                        return None;
                    }
                }
            }
            Some(ids)
        }
        other => {
            errors.push(malformed(kind(other)));
            None
        }
    }
}

/// `true`/`false`/`1`/`0`/`yes`/`no` (any case).
fn vision_text(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

/// `a, b,,c` → `[a, b, c]`.
fn split_ids(text: &str) -> Vec<String> {
    text.split(',').map(str::trim).filter(|id| !id.is_empty()).map(str::to_string).collect()
}

fn merge_env(sources: &Sources<'_>, raws: &mut Vec<RawProvider>, warnings: &mut Vec<String>) {
    for n in 1..=MAX_ENV_PROVIDERS {
        let var = |field: &str| {
            sources.env(&format!("LLM_PROVIDER_{n}_{field}")).map(|v| v.trim().to_string())
        };
        let env = RawProvider {
            id: var("ID"),
            name: var("NAME"),
            kind: var("TYPE"),
            endpoint: var("ENDPOINT"),
            api_key: var("API_KEY").map(|key| Secret::new(key, Origin::Env)),
            model: var("MODEL"),
            fallback: var("FALLBACK").map(|text| split_ids(&text)),
            vision: var("VISION"),
            malformed: false,
        };
        if let Some(entry) = raws.get_mut(n - 1) {
            entry.id = env.id.or(entry.id.take());
            entry.name = env.name.or(entry.name.take());
            entry.kind = env.kind.or(entry.kind.take());
            entry.endpoint = env.endpoint.or(entry.endpoint.take());
            entry.api_key = env.api_key.or(entry.api_key.take());
            entry.model = env.model.or(entry.model.take());
            entry.fallback = env.fallback.or(entry.fallback.take());
            entry.vision = env.vision.or(entry.vision.take());
        } else if env.id.is_some()
            || env.name.is_some()
            || env.kind.is_some()
            || env.endpoint.is_some()
            || env.api_key.is_some()
            || env.model.is_some()
            || env.fallback.is_some()
            || env.vision.is_some()
        {
            if raws.len() + 1 != n {
                warnings.push(format!(
                    "LLM_PROVIDER_{n}_* defines provider #{} (there is no provider {})",
                    raws.len() + 1,
                    n - 1
                ));
            }
            raws.push(env);
        }
    }
}

/// Every rule violation among `providers` (§7.1): none at all, missing fields, bad endpoints,
/// duplicate ids, unknown fallback ids and fallback cycles (issue 17). Positions are 1-based
/// indices into `providers`.
pub(crate) fn problems(providers: &[ProviderConfig]) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    if providers.is_empty() {
        errors.push(ConfigError::NoProviders);
    }
    let mut positions_by_id: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, p) in providers.iter().enumerate() {
        let provider = ProviderRef::new(index + 1, p.id.clone());
        let needs_endpoint = p.kind.needs_endpoint();
        let fields: Vec<&'static str> = [
            ("id", p.id.trim().is_empty()),
            ("name", p.name.trim().is_empty()),
            ("endpoint", needs_endpoint && p.endpoint.trim().is_empty()),
            ("apiKey", needs_endpoint && p.api_key.expose().trim().is_empty()),
        ]
        .into_iter()
        .filter_map(|(field, missing)| missing.then_some(field))
        .collect();
        if !fields.is_empty() {
            errors.push(ConfigError::ProviderMissingFields { provider: provider.clone(), fields });
        }
        if needs_endpoint && !p.endpoint.trim().is_empty() {
            if let Some(reason) = endpoint_problem(p.endpoint.trim()) {
                errors.push(ConfigError::ProviderEndpoint { provider: provider.clone(), reason });
            }
        }
        if p.vision && !matches!(p.kind, ProviderKind::OpenAi | ProviderKind::Anthropic) {
            errors.push(ConfigError::ProviderVision { provider });
        }
        if !p.id.is_empty() {
            positions_by_id.entry(p.id.as_str()).or_default().push(index + 1);
        }
    }
    for (id, positions) in positions_by_id {
        if positions.len() > 1 {
            errors.push(ConfigError::ProviderDuplicateId { id: id.to_string(), positions });
        }
    }
    errors.extend(crate::fallback::problems(providers));
    errors
}

/// Why `endpoint` breaks the endpoint rule (§7.1), or `None` when it is fine: it must parse with
/// a host; `https` always; `http` only for internal hosts (see [`is_internal_host`]).
pub(crate) fn endpoint_problem(endpoint: &str) -> Option<String> {
    let url = match Url::parse(endpoint) {
        Ok(url) => url,
        Err(error) => return Some(format!("is not a valid URL ({error})")),
    };
    let Some(host) = url.host() else {
        return Some("has no host".to_string());
    };
    match url.scheme() {
        "https" => None,
        "http" if is_internal_host(&host) => None,
        "http" => Some(
            "must use https: http is allowed only for loopback or private IP addresses, \
             hostnames without a dot, and names ending in .local, .internal, .svc or \
             .cluster.local"
                .to_string(),
        ),
        _ => Some("must be an https URL (or http for an internal host)".to_string()),
    }
}

/// Loopback or private IP literals, hostnames without a dot, and internal DNS suffixes.
fn is_internal_host(host: &Host<&str>) -> bool {
    match host {
        Host::Ipv4(ip) => is_internal_v4(*ip),
        Host::Ipv6(ip) => is_internal_v6(*ip),
        Host::Domain(name) => {
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            !name.contains('.') || INTERNAL_SUFFIXES.iter().any(|suffix| name.ends_with(suffix))
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    ip.is_loopback() || ip.is_private()
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    // Loopback, or unique-local fc00::/7 (the IPv6 private range).
    ip.is_loopback() || (ip.segments()[0] & 0xfe00) == 0xfc00
}

#[cfg(test)]
mod tests {
    use super::*;

    fn openai(id: &str, endpoint: &str) -> ProviderConfig {
        ProviderConfig {
            id: id.into(),
            name: id.to_uppercase(),
            kind: ProviderKind::OpenAi,
            endpoint: endpoint.into(),
            api_key: Secret::new("sk-1", Origin::File),
            model: String::new(),
            fallback: Vec::new(),
            vision: false,
        }
    }

    #[test]
    fn endpoint_rule() {
        for ok in [
            "https://api.openai.com/v1",
            "https://8.8.8.8/",
            "http://localhost:8080",
            "http://127.0.0.1:11434/v1",
            "http://10.1.2.3",
            "http://172.20.0.5",
            "http://192.168.1.10:80",
            "http://[::1]:8080",
            "http://[fd12::1]/",
            "http://llm",
            "http://ollama.local",
            "http://llm.internal/v1",
            "http://llm.default.svc",
            "http://llm.ns.svc.cluster.local:8000",
            "HTTP://LLM.INTERNAL",
        ] {
            assert_eq!(endpoint_problem(ok), None, "{ok}");
        }
        for bad in [
            "http://api.openai.com/v1",
            "http://8.8.8.8",
            "http://172.32.0.1",
            "http://[2001:db8::1]",
            "ftp://files.internal",
            "not a url",
            "/v1/chat",
            "https://",
            "unix:/var/run/llm.sock",
        ] {
            assert!(endpoint_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn no_providers_is_an_error() {
        assert_eq!(problems(&[]), vec![ConfigError::NoProviders]);
    }

    #[test]
    fn valid_providers_pass() {
        let providers = [openai("a", "https://x.io"), ProviderConfig::echo("e", "Echo")];
        assert_eq!(problems(&providers), vec![]);
    }

    #[test]
    fn echo_needs_only_id_and_name() {
        assert_eq!(problems(&[ProviderConfig::echo("e", "Echo")]), vec![]);
        let errors = problems(&[ProviderConfig::echo("", "")]);
        assert!(matches!(
            &errors[..],
            [ConfigError::ProviderMissingFields { fields, .. }] if fields == &["id", "name"]
        ));
    }

    #[test]
    fn missing_fields_are_listed_together() {
        let mut p = openai("a", "");
        p.api_key = Secret::default();
        let errors = problems(&[p]);
        assert_eq!(
            errors,
            vec![ConfigError::ProviderMissingFields {
                provider: ProviderRef::new(1, "a"),
                fields: vec!["endpoint", "apiKey"],
            }]
        );
    }

    #[test]
    fn bad_endpoint_names_the_provider() {
        let errors = problems(&[openai("ok", "https://x.io"), openai("gpt", "http://x.io")]);
        assert_eq!(errors.len(), 1);
        let text = errors[0].to_string();
        assert!(
            text.starts_with("LLM provider #2 (id \"gpt\"): endpoint must use https"),
            "{text}"
        );
    }

    #[test]
    fn duplicate_ids_are_one_error_each() {
        let errors = problems(&[
            openai("a", "https://x.io"),
            openai("b", "https://x.io"),
            openai("a", "https://y.io"),
        ]);
        assert_eq!(
            errors,
            vec![ConfigError::ProviderDuplicateId { id: "a".into(), positions: vec![1, 3] }]
        );
    }
}
