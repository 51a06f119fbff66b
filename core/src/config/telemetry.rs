//! The OpenTelemetry settings (issue 17 item 3): the standard `OTEL_*` environment variables
//! that turn OTLP trace export on and shape it, and `TRACE_USER_ID` (how a user id appears on
//! spans). Reading ([`read`]) and rules ([`problems`]) live together here, like the upload
//! settings. Export is off unless `OTEL_EXPORTER_OTLP_ENDPOINT` or
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` is set (and `OTEL_SDK_DISABLED` /
//! `OTEL_TRACES_EXPORTER=none` do not turn it off).

use std::time::Duration;

use super::error::ConfigError;
use super::keys::{self, SettingName};
use super::read::Reader;
use super::secret::{Origin, Secret};

/// Default `OTEL_SERVICE_NAME`.
pub const OTEL_SERVICE_NAME_DEFAULT: &str = "chatbox";
/// Default `OTEL_EXPORTER_OTLP_TIMEOUT` (the specification's 10 s), the budget of one export
/// request.
pub const OTEL_EXPORT_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);
/// The path appended to `OTEL_EXPORTER_OTLP_ENDPOINT` for traces (OTLP/HTTP specification).
pub const OTLP_TRACES_PATH: &str = "v1/traces";
/// The one OTLP protocol this build exports with.
pub const OTLP_PROTOCOL_HTTP_PROTOBUF: &str = "http/protobuf";

/// Trace export and what spans may carry.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TelemetryConfig {
    /// OTLP trace export; `None` = off (no exporter, no span of chatbox's is even created).
    pub otlp: Option<OtlpConfig>,
    /// How the user id appears on spans (`TRACE_USER_ID`).
    pub user_id: TraceUserId,
}

/// How a user id appears on spans (`TRACE_USER_ID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TraceUserId {
    /// `user.id` is a keyed hash of the id (`hashed`, the default): the same user has the same
    /// value across messages and instances, and the id cannot be read back from it.
    #[default]
    Hashed,
    /// No `user.id` attribute at all (`omitted`).
    Omitted,
}

/// Where and how spans are exported (OTLP over HTTP with protobuf bodies).
#[derive(Debug, Clone, PartialEq)]
pub struct OtlpConfig {
    /// The URL spans are posted to: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` as it is, else
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces`.
    pub traces_url: String,
    /// Extra request headers (`OTEL_EXPORTER_OTLP_HEADERS`, `k=v,k2=v2`); values are secrets
    /// (they usually carry an API key).
    pub headers: Vec<(String, Secret)>,
    /// Budget of one export request (`OTEL_EXPORTER_OTLP_TIMEOUT`, milliseconds).
    pub timeout: Duration,
    /// `service.name` of the resource (`OTEL_SERVICE_NAME`).
    pub service_name: String,
    /// Which traces are recorded (`OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG`).
    pub sampler: TraceSampler,
}

/// The specification's built-in samplers.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TraceSampler {
    /// Follow the parent span's decision when there is one (`parentbased_*`).
    pub parent_based: bool,
    /// The decision for a root span.
    pub root: RootSampler,
}

impl Default for TraceSampler {
    /// `parentbased_always_on`, the specification's default.
    fn default() -> Self {
        TraceSampler { parent_based: true, root: RootSampler::AlwaysOn }
    }
}

/// The decision for a root span.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RootSampler {
    /// Every trace.
    AlwaysOn,
    /// No trace.
    AlwaysOff,
    /// This fraction of traces (0 to 1), decided from the trace id.
    Ratio(f64),
}

/// `OTEL_TRACES_SAMPLER` values.
const SAMPLERS: [(&str, bool, Option<RootSampler>); 6] = [
    ("always_on", false, Some(RootSampler::AlwaysOn)),
    ("always_off", false, Some(RootSampler::AlwaysOff)),
    ("traceidratio", false, None),
    ("parentbased_always_on", true, Some(RootSampler::AlwaysOn)),
    ("parentbased_always_off", true, Some(RootSampler::AlwaysOff)),
    ("parentbased_traceidratio", true, None),
];

/// Reads the telemetry settings, recording unreadable values in `r`.
pub(crate) fn read(r: &mut Reader<'_>) -> TelemetryConfig {
    let user_id = r.choice(
        keys::TRACE_USER_ID,
        TraceUserId::Hashed,
        &[("hashed", TraceUserId::Hashed), ("omitted", TraceUserId::Omitted)],
    );
    let disabled = r.boolean(keys::OTEL_SDK_DISABLED, false);
    let exporter_on =
        r.choice(keys::OTEL_TRACES_EXPORTER, true, &[("otlp", true), ("none", false)]);
    let endpoint = r.text_opt(keys::OTEL_EXPORTER_OTLP_ENDPOINT).filter(|s| !s.is_empty());
    let traces_endpoint =
        r.text_opt(keys::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT).filter(|s| !s.is_empty());
    if let Some(protocol) = r.text_opt(keys::OTEL_EXPORTER_OTLP_PROTOCOL) {
        if protocol != OTLP_PROTOCOL_HTTP_PROTOBUF {
            r.unparsable(
                keys::OTEL_EXPORTER_OTLP_PROTOCOL,
                "http/protobuf (the only OTLP protocol this build exports with; grpc and \
                 http/json are not supported)",
                format!("{protocol:?}"),
            );
        }
    }
    let headers = read_headers(r);
    let timeout_ms =
        r.integer(keys::OTEL_EXPORTER_OTLP_TIMEOUT, OTEL_EXPORT_TIMEOUT_DEFAULT.as_millis() as u64);
    if timeout_ms == 0 {
        fail(r, ConfigError::NotPositive { setting: keys::OTEL_EXPORTER_OTLP_TIMEOUT });
    }
    let service_name = r.text(keys::OTEL_SERVICE_NAME, OTEL_SERVICE_NAME_DEFAULT);
    if service_name.is_empty() {
        fail(r, ConfigError::Empty { setting: keys::OTEL_SERVICE_NAME });
    }
    let sampler = read_sampler(r);

    let mut traces_url = None;
    if let Some(url) = &traces_endpoint {
        match url_problem(url) {
            None => traces_url = Some(url.clone()),
            Some(reason) => fail(r, invalid(keys::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, reason)),
        }
    }
    if let Some(base) = &endpoint {
        match url_problem(base) {
            None => traces_url = traces_url.or_else(|| Some(traces_url_of(base))),
            Some(reason) => fail(r, invalid(keys::OTEL_EXPORTER_OTLP_ENDPOINT, reason)),
        }
    }
    let on = !disabled && exporter_on;
    let otlp = traces_url.filter(|_| on).map(|traces_url| OtlpConfig {
        traces_url,
        headers,
        timeout: Duration::from_millis(timeout_ms),
        service_name,
        sampler,
    });
    TelemetryConfig { otlp, user_id }
}

/// Records a problem found while reading (so the rules do not report it again).
fn fail(r: &mut Reader<'_>, error: ConfigError) {
    r.failed.extend(error.settings());
    r.errors.push(error);
}

/// Every problem of a telemetry configuration built in code (loading reports them while
/// reading).
pub(crate) fn problems(telemetry: &TelemetryConfig, errors: &mut Vec<ConfigError>) {
    let Some(otlp) = &telemetry.otlp else { return };
    if let Some(reason) = url_problem(&otlp.traces_url) {
        errors.push(invalid(keys::OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, reason));
    }
    if otlp.timeout.is_zero() {
        errors.push(ConfigError::NotPositive { setting: keys::OTEL_EXPORTER_OTLP_TIMEOUT });
    }
    if otlp.service_name.is_empty() {
        errors.push(ConfigError::Empty { setting: keys::OTEL_SERVICE_NAME });
    }
    if let RootSampler::Ratio(ratio) = otlp.sampler.root {
        if !(0.0..=1.0).contains(&ratio) {
            errors.push(ConfigError::Unparsable {
                setting: keys::OTEL_TRACES_SAMPLER_ARG,
                expected: "a ratio from 0 to 1 (e.g. 0.25)".into(),
                found: ratio.to_string(),
            });
        }
    }
}

/// `OTEL_EXPORTER_OTLP_ENDPOINT` + `/v1/traces` (one slash between them).
pub fn traces_url_of(base: &str) -> String {
    format!("{}/{OTLP_TRACES_PATH}", base.trim_end_matches('/'))
}

/// What is wrong with an OTLP endpoint URL, if anything. (The URL is not echoed: it may carry
/// credentials.)
fn url_problem(text: &str) -> Option<String> {
    match url::Url::parse(text) {
        Err(error) => Some(format!("is not a URL ({error})")),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => {
            Some(format!("must be an http or https URL (OTLP/HTTP), not {}:", url.scheme()))
        }
        Ok(url) if url.host().is_none() => Some("has no host".into()),
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            Some("must not have a query or a fragment".into())
        }
        Ok(_) => None,
    }
}

fn invalid(setting: SettingName, reason: String) -> ConfigError {
    ConfigError::InvalidUrl { setting, reason }
}

/// `OTEL_EXPORTER_OTLP_HEADERS`: `key=value` pairs separated by commas, values
/// percent-decoded (W3C baggage format, as the specification says).
fn read_headers(r: &mut Reader<'_>) -> Vec<(String, Secret)> {
    let Some(text) = r.text_opt(keys::OTEL_EXPORTER_OTLP_HEADERS) else { return Vec::new() };
    let mut headers = Vec::new();
    for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        let parsed = entry.split_once('=').and_then(|(key, value)| {
            let key = key.trim();
            let token = !key.is_empty()
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            let value = percent_decode(value.trim())?;
            let printable = value.bytes().all(|b| b == b'\t' || (b' '..=b'~').contains(&b));
            (token && printable).then(|| (key.to_string(), Secret::new(value, Origin::Env)))
        });
        match parsed {
            Some(header) => headers.push(header),
            None => {
                // Only the key is echoed: the value is usually an API key.
                let key = entry.split('=').next().unwrap_or_default().trim();
                r.unparsable(
                    keys::OTEL_EXPORTER_OTLP_HEADERS,
                    "comma-separated key=value pairs with a header name as key and printable \
                     ASCII values (percent-encoded where needed)",
                    format!("an unusable entry for {key:?}"),
                );
                return Vec::new();
            }
        }
    }
    headers
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `OTEL_TRACES_SAMPLER` and its argument (a ratio from 0 to 1 for the `*traceidratio`
/// samplers, 1 when not given; ignored by the others).
fn read_sampler(r: &mut Reader<'_>) -> TraceSampler {
    let name = r.text_opt(keys::OTEL_TRACES_SAMPLER).map(|s| s.to_ascii_lowercase());
    let arg = r.text_opt(keys::OTEL_TRACES_SAMPLER_ARG);
    let Some(name) = name else {
        return TraceSampler::default();
    };
    let Some(&(_, parent_based, root)) = SAMPLERS.iter().find(|(n, _, _)| *n == name) else {
        let names: Vec<&str> = SAMPLERS.iter().map(|(n, _, _)| *n).collect();
        r.unparsable(
            keys::OTEL_TRACES_SAMPLER,
            &format!("one of {}", names.join(", ")),
            format!("{name:?}"),
        );
        return TraceSampler::default();
    };
    let root = match root {
        Some(root) => root,
        None => match arg.as_deref().map(str::parse::<f64>) {
            None => RootSampler::Ratio(1.0),
            Some(Ok(ratio)) if (0.0..=1.0).contains(&ratio) => RootSampler::Ratio(ratio),
            Some(_) => {
                r.unparsable(
                    keys::OTEL_TRACES_SAMPLER_ARG,
                    "a ratio from 0 to 1 (e.g. 0.25)",
                    format!("{:?}", arg.unwrap_or_default()),
                );
                RootSampler::Ratio(1.0)
            }
        },
    };
    TraceSampler { parent_based, root }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::minimal as env;
    use crate::config::{load, ConfigError};

    fn telemetry(pairs: &[(&str, &str)]) -> TelemetryConfig {
        load(&env(pairs), None).expect("valid").config.telemetry
    }

    fn problems(pairs: &[(&str, &str)]) -> String {
        match load(&env(pairs), None) {
            Ok(_) => String::new(),
            Err(errors) => {
                errors.0.iter().map(ConfigError::to_string).collect::<Vec<_>>().join("\n")
            }
        }
    }

    #[test]
    fn off_unless_an_endpoint_is_set() {
        assert_eq!(telemetry(&[]), TelemetryConfig::default());
        let on = telemetry(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]);
        let otlp = on.otlp.expect("on");
        assert_eq!(otlp.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(otlp.service_name, "chatbox");
        assert_eq!(otlp.timeout, Duration::from_secs(10));
        assert_eq!(otlp.sampler, TraceSampler::default());
        for off in [("OTEL_SDK_DISABLED", "true"), ("OTEL_TRACES_EXPORTER", "none")] {
            let t = telemetry(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"), off]);
            assert!(t.otlp.is_none(), "{off:?}");
        }
    }

    #[test]
    fn the_traces_endpoint_is_used_as_it_is_and_wins() {
        let t = telemetry(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "https://traces.example/custom"),
            ("OTEL_SERVICE_NAME", "gateway"),
            ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
            ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "x-api-key=abc%3D%3D, team = core"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "2500"),
            ("TRACE_USER_ID", "omitted"),
        ]);
        assert_eq!(t.user_id, TraceUserId::Omitted);
        let otlp = t.otlp.expect("on");
        assert_eq!(otlp.traces_url, "https://traces.example/custom");
        assert_eq!(otlp.service_name, "gateway");
        assert_eq!(otlp.timeout, Duration::from_millis(2500));
        assert_eq!(
            otlp.sampler,
            TraceSampler { parent_based: true, root: RootSampler::Ratio(0.25) }
        );
        let headers: Vec<(&str, &str)> =
            otlp.headers.iter().map(|(k, v)| (k.as_str(), v.expose())).collect();
        assert_eq!(headers, [("x-api-key", "abc=="), ("team", "core")]);
    }

    #[test]
    fn the_file_keys_work_too() {
        let file =
            "[otel]\nendpoint = \"http://127.0.0.1:4318\"\ntraces_sampler = \"always_off\"\n";
        let loaded = load(&env(&[]), Some(file)).expect("valid");
        let otlp = loaded.config.telemetry.otlp.expect("on");
        assert_eq!(otlp.sampler.root, RootSampler::AlwaysOff);
        assert!(!otlp.sampler.parent_based);
    }

    #[test]
    fn every_problem_is_listed() {
        let text = problems(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "not a url"),
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "ftp://collector/v1/traces"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
            ("OTEL_TRACES_SAMPLER", "sometimes"),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "0"),
            ("OTEL_EXPORTER_OTLP_HEADERS", "novalue"),
            ("TRACE_USER_ID", "plain"),
        ]);
        for setting in [
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
            "OTEL_TRACES_SAMPLER /",
            "OTEL_EXPORTER_OTLP_TIMEOUT",
            "OTEL_EXPORTER_OTLP_HEADERS",
            "TRACE_USER_ID",
        ] {
            assert!(text.contains(setting), "{setting} missing from:\n{text}");
        }
        let ratio =
            problems(&[("OTEL_TRACES_SAMPLER", "traceidratio"), ("OTEL_TRACES_SAMPLER_ARG", "2")]);
        assert!(ratio.contains("OTEL_TRACES_SAMPLER_ARG"), "{ratio}");
        // Bad settings are reported even while export is off.
        let off = problems(&[("OTEL_TRACES_SAMPLER", "sometimes")]);
        assert!(off.contains("OTEL_TRACES_SAMPLER"), "{off}");
    }
}
