//! Logging and, when configured, OpenTelemetry trace export (issue 17 item 3).
//!
//! Logs: `tracing-subscriber`'s fmt layer, JSON or text, filtered by `LOG_LEVEL` / `RUST_LOG`.
//! It never shows spans (the engine's spans exist for traces only), so log lines look the same
//! with or without export.
//!
//! Traces: with `OTEL_EXPORTER_OTLP_ENDPOINT` (or `..._TRACES_ENDPOINT`) set, a
//! `tracing-opentelemetry` layer turns the engine's `chatbox::trace` spans (and the `chatbox`
//! events inside them, as span events) into OpenTelemetry spans, sampled per
//! `OTEL_TRACES_SAMPLER`, which the SDK's batch span processor exports over OTLP/HTTP with
//! protobuf bodies. The processor runs on its own thread with a bounded queue (it drops spans
//! when full), so a slow or dead collector never blocks or slows a reply. The export requests go
//! through the workspace's `reqwest` client, run on the server's runtime. JSON log lines written
//! inside a traced span carry its `trace_id` and `span_id`. Without an endpoint none of this
//! exists: no layer, no thread, and the engine's spans are disabled at their call sites.

use std::collections::HashMap;
use std::fmt;

use chatbox_core::budgets::TRACE_FLUSH_BUDGET;
use chatbox_core::config::{Config, LogFormat, OtlpConfig, RootSampler, TraceSampler};
use opentelemetry::trace::{TraceContextExt as _, TracerProvider as _};
use opentelemetry::KeyValue;
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};
use opentelemetry_sdk::Resource;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::filter::{filter_fn, FilterExt as _, LevelFilter, Targets};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::layer::Filter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::engine::telemetry::TARGET;

/// Why trace export could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The OTLP exporter refused its settings (e.g. an `OTEL_EXPORTER_OTLP_COMPRESSION` this
    /// build does not support).
    #[error("cannot set up OpenTelemetry trace export: {0}")]
    Exporter(String),
}

/// The trace pipeline while the server runs; [`Telemetry::shutdown`] flushes it.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Exports the spans still queued (within [`TRACE_FLUSH_BUDGET`]) and stops the exporter.
    /// Call it from outside the runtime's worker threads while the runtime still runs: the
    /// export requests run on it.
    pub fn shutdown(self) {
        if let Some(provider) = self.provider {
            if let Err(error) = provider.shutdown_with_timeout(TRACE_FLUSH_BUDGET) {
                tracing::warn!(%error, "flushing the trace exporter failed");
            }
        }
    }
}

/// Installs the global subscriber: logs per `config.log`, plus OTLP trace export when
/// `config.telemetry.otlp` is set. `runtime` runs the export requests.
pub fn init(
    config: &Config,
    colour: bool,
    runtime: &tokio::runtime::Handle,
) -> Result<Telemetry, TelemetryError> {
    let env_filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(config.log.filter().unwrap_or_default()));
    let log_filter = log_filter(env_filter);
    let otlp = config.telemetry.otlp.as_ref();
    let provider = otlp.map(|otlp| provider(otlp, runtime)).transpose()?;
    let base = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(colour);
    let log_layer = match config.log.format {
        LogFormat::Json if provider.is_some() => base
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .event_format(WithTraceIds(
                tracing_subscriber::fmt::format()
                    .json()
                    .with_current_span(false)
                    .with_span_list(false),
            ))
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Json => base
            .json()
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(log_filter)
            .boxed(),
        LogFormat::Text => base.with_filter(log_filter).boxed(),
    };
    let trace_layer = provider.as_ref().map(|provider| {
        let tracer = provider.tracer("chatbox");
        // The engine's spans, and the chatbox events inside them as span events.
        let wanted = Targets::new()
            .with_target(TARGET, tracing::Level::INFO)
            .with_target("chatbox", tracing::Level::INFO);
        tracing_opentelemetry::layer().with_tracer(tracer).with_threads(false).with_filter(wanted)
    });
    let _ = tracing_subscriber::registry().with(log_layer).with(trace_layer).try_init();
    Ok(Telemetry { provider })
}

/// The log layer's filter: `env_filter`'s events, never spans (spans are for traces only).
fn log_filter<S: Subscriber>(env_filter: EnvFilter) -> impl Filter<S> {
    // The level hint keeps the subscriber's maximum level at LOG_LEVEL's: without it the
    // combined filter has none, so every disabled `trace!`/`debug!` (and every `log` record of
    // hyper, tungstenite, reqwest…) went through the dispatcher to be refused there (issue 18).
    let hint = env_filter.max_level_hint().unwrap_or(LevelFilter::TRACE);
    env_filter.and(filter_fn(|meta| !meta.is_span()).with_max_level_hint(hint))
}

/// The tracer provider: OTLP/HTTP protobuf exporter behind the batch span processor.
fn provider(
    otlp: &OtlpConfig,
    runtime: &tokio::runtime::Handle,
) -> Result<SdkTracerProvider, TelemetryError> {
    let client = ExportClient::new(runtime.clone(), otlp.timeout)?;
    let headers: HashMap<String, String> =
        otlp.headers.iter().map(|(k, v)| (k.clone(), v.expose().to_string())).collect();
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_endpoint(otlp.traces_url.clone())
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(otlp.timeout)
        .with_headers(headers)
        .with_http_client(client)
        .build()
        .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
    let resource = Resource::builder()
        .with_service_name(otlp.service_name.clone())
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_sampler(sampler(otlp.sampler))
        .with_resource(resource)
        .build())
}

fn sampler(config: TraceSampler) -> Sampler {
    let root = match config.root {
        RootSampler::AlwaysOn => Sampler::AlwaysOn,
        RootSampler::AlwaysOff => Sampler::AlwaysOff,
        RootSampler::Ratio(ratio) => Sampler::TraceIdRatioBased(ratio),
    };
    if config.parent_based {
        Sampler::ParentBased(Box::new(root))
    } else {
        root
    }
}

/// The exporter's HTTP client: the workspace's `reqwest`, each request run on the server's
/// runtime (the batch processor's thread only waits for it), bounded by the export timeout.
#[derive(Debug)]
struct ExportClient {
    client: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

/// Largest collector answer read (an OTLP answer is a few bytes; a partial-success message a
/// few hundred).
const EXPORT_RESPONSE_LIMIT: usize = 64 * 1024;

impl ExportClient {
    fn new(
        runtime: tokio::runtime::Handle,
        timeout: std::time::Duration,
    ) -> Result<Self, TelemetryError> {
        let client = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("chatbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| TelemetryError::Exporter(e.to_string()))?;
        Ok(Self { client, runtime })
    }
}

#[async_trait::async_trait]
impl opentelemetry_http::HttpClient for ExportClient {
    async fn send_bytes(
        &self,
        request: http::Request<bytes::Bytes>,
    ) -> Result<http::Response<bytes::Bytes>, opentelemetry_http::HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let task = self.runtime.spawn(async move {
            let mut response = client
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await?;
            let mut answer = http::Response::builder().status(response.status());
            if let Some(headers) = answer.headers_mut() {
                *headers = std::mem::take(response.headers_mut());
            }
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await? {
                let room = EXPORT_RESPONSE_LIMIT.saturating_sub(body.len());
                body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok::<_, reqwest::Error>(answer.body(bytes::Bytes::from(body)))
        });
        Ok(task.await??.map_err(Box::new)?)
    }
}

/// The JSON log format with the current span's `trace_id` and `span_id` first, when the event
/// happens inside a traced span.
struct WithTraceIds<F>(F);

impl<S, N, F> FormatEvent<S, N> for WithTraceIds<F>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
    F: FormatEvent<S, N>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> fmt::Result {
        let current = tracing::Span::current();
        let ids = (!current.is_none()).then(|| {
            let cx = current.context();
            let span = cx.span();
            let span_context = span.span_context();
            span_context
                .is_valid()
                .then(|| (span_context.trace_id().to_string(), span_context.span_id().to_string()))
        });
        let Some((trace_id, span_id)) = ids.flatten() else {
            return self.0.format_event(ctx, writer, event);
        };
        let mut line = String::new();
        self.0.format_event(ctx, Writer::new(&mut line), event)?;
        match line.strip_prefix('{') {
            Some(rest) => {
                write!(writer, "{{\"trace_id\":\"{trace_id}\",\"span_id\":\"{span_id}\",{rest}")
            }
            None => writer.write_str(&line),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samplers_follow_the_settings() {
        let parent = sampler(TraceSampler { parent_based: true, root: RootSampler::Ratio(0.5) });
        assert!(matches!(parent, Sampler::ParentBased(_)));
        let plain = sampler(TraceSampler { parent_based: false, root: RootSampler::AlwaysOff });
        assert!(matches!(plain, Sampler::AlwaysOff));
    }

    #[test]
    fn the_log_filter_caps_the_level_at_log_level() {
        use tracing_subscriber::Registry;
        let hint = |directives: &str| {
            Filter::<Registry>::max_level_hint(&log_filter::<Registry>(EnvFilter::new(directives)))
        };
        assert_eq!(hint("warn"), Some(LevelFilter::WARN));
        assert_eq!(hint("info,chatbox=debug"), Some(LevelFilter::DEBUG));
        assert_eq!(hint("trace"), Some(LevelFilter::TRACE));
    }
}
