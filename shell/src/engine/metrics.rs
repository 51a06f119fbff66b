//! Prometheus metrics (PROTOCOL.md §4.11): one [`Metrics`] value owns a private registry and a
//! typed handle for every series, so services bump fields instead of looking metrics up by name,
//! and two servers in one process (tests, simulated nodes) never share counters.
//!
//! [`Metrics::render`] is the body of `GET {P}/metrics/prometheus`. In normal Linux builds it also
//! carries the standard `process_*` metrics (CPU, memory, open files); under `--cfg madsim` the
//! process collector is left out (it reads `/proc`), everything else is the same. Durations are
//! passed in by the caller (measured with the engine's clock), never read here.

use std::time::Duration;

use prometheus::core::Collector;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Buckets of `chatbox_websocket_connection_duration_seconds`, in seconds (§4.11).
pub const CONNECTION_DURATION_BUCKETS: [f64; 10] =
    [1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0];

/// Buckets of `chatbox_session_sweep_batch_seconds` (core's, shared with the churn scenario).
pub use chatbox_core::session::SWEEP_BATCH_BUCKETS;

/// A rate limiter, as the `limiter` label of `chatbox_ratelimit_blocked_total` and
/// `chatbox_rate_limiter_keys`.
///
/// §4.11 names `connection` and `message`; the rebuild adds its other limiters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Limiter {
    /// Concurrent WebSocket connections per user (§5).
    Connection,
    /// `user_message` frames per user (§5).
    Message,
    /// Admin routes per admin (§5).
    Admin,
    /// Public routes per client IP (§5).
    Public,
    /// Help alerts per session (§6.7).
    HelpAlert,
}

impl Limiter {
    /// Every limiter, in label order.
    pub const ALL: [Limiter; 5] = [
        Limiter::Connection,
        Limiter::Message,
        Limiter::Admin,
        Limiter::Public,
        Limiter::HelpAlert,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Limiter::Connection => "connection",
            Limiter::Message => "message",
            Limiter::Admin => "admin",
            Limiter::Public => "public",
            Limiter::HelpAlert => "help_alert",
        }
    }
}

/// Every metric the server exports, each a typed handle into one private registry.
///
/// Cheap to share behind an `Arc`; every handle is internally atomic. Labelled series appear in
/// [`Metrics::render`] once they have a value: [`Metrics::new`] creates the `limiter` series up
/// front and [`Metrics::init_provider`] the per-provider ones, so dashboards see zeros rather
/// than gaps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// `chatbox_websocket_connections_total` (gauge): open WebSocket connections. `inc` after a
    /// successful upgrade, `dec` when the connection's loop ends.
    pub websocket_connections: IntGauge,
    /// `chatbox_messages_received_total`: client frames accepted by the inbound pipeline.
    pub messages_received: IntCounter,
    /// `chatbox_messages_sent_total`: frames written to a client.
    pub messages_sent: IntCounter,
    /// `chatbox_llm_requests_total{provider}`: provider calls opened (one per reply attempt).
    pub llm_requests: IntCounterVec,
    /// `chatbox_llm_latency_seconds{provider}` (default buckets): request to end of reply.
    pub llm_latency: HistogramVec,
    /// `chatbox_llm_errors_total{provider}`: replies that ended in an error frame.
    pub llm_errors: IntCounterVec,
    /// `chatbox_active_sessions_total` (gauge): sessions active in memory.
    pub active_sessions: IntGauge,
    /// `chatbox_ended_sessions_in_memory` (gauge): ended sessions still held, each for
    /// `SESSION_TTL` after its end (so memory grows with the end rate for that long).
    pub ended_sessions: IntGauge,
    /// `chatbox_sessions_created_total`: sessions created.
    pub sessions_created: IntCounter,
    /// `chatbox_sessions_ended_total`: sessions ended (by the user, by expiry, by shutdown).
    pub sessions_ended: IntCounter,
    /// `chatbox_admin_takeovers_total`: successful takeovers.
    pub admin_takeovers: IntCounter,
    /// `chatbox_message_errors_total`: error frames sent to clients.
    pub message_errors: IntCounter,
    /// `chatbox_tokens_used_total{provider}`: tokens reported for finished replies.
    pub tokens_used: IntCounterVec,
    /// `chatbox_mongodb_operation_seconds{operation}` (default buckets): one store operation,
    /// retries included (the name is kept from the original; any store backend reports here).
    pub store_operation: HistogramVec,
    /// `chatbox_ratelimit_blocked_total{limiter}`: attempts a limiter refused.
    pub ratelimit_blocked: IntCounterVec,
    /// `chatbox_websocket_connection_duration_seconds` (buckets
    /// [`CONNECTION_DURATION_BUCKETS`]): lifetime of a closed WebSocket connection.
    pub websocket_connection_duration: Histogram,
    /// `chatbox_http_request_duration_seconds{endpoint,method}` (default buckets): HTTP
    /// requests by route template (`/chatbox/sessions/:sessionID`, never the concrete path).
    pub http_request_duration: HistogramVec,
    /// `chatbox_admin_messages_dropped_total`: frames for an assisting admin that could not be
    /// delivered.
    pub admin_messages_dropped: IntCounter,
    /// `chatbox_outbox_depth` (gauge): entries waiting in the durable outbox.
    pub outbox_depth: IntGauge,
    /// `chatbox_bus_up` (gauge): 1 while the fleet bus (Redis) is connected or the bus is
    /// in-process, 0 during a bus outage.
    pub bus_up: IntGauge,
    /// `chatbox_bus_frames_published_total`: bus messages this instance published to the fleet.
    pub bus_published: IntCounter,
    /// `chatbox_bus_frames_received_total`: bus messages from other instances delivered here.
    pub bus_received: IntCounter,
    /// `chatbox_bus_messages_rejected_total`: bus messages that did not decode (logged).
    pub bus_rejected: IntCounter,
    /// `chatbox_bus_frames_unpublished_total`: frames not published because the bus was down
    /// or its queue full (local connections still got them).
    pub bus_unpublished: IntCounter,
    /// `chatbox_replay_buffer_frames` (gauge): frames held for resumable replies.
    pub replay_buffer_frames: IntGauge,
    /// `chatbox_outbox_dropped_total`: outbox entries the store refused permanently (logged).
    pub outbox_dropped: IntCounter,
    /// `chatbox_history_cache_hits_total`: replies whose conversation came from the recent-
    /// messages cache, current by the store's mark, instead of a history read (issue 18).
    pub history_cache_hits: IntCounter,
    /// `chatbox_session_sweep_batch_seconds` (buckets [`SWEEP_BATCH_BUCKETS`]): how long one
    /// sweep batch held the session table's lock, the longest hold there is (issue 18 item 5).
    pub sweep_batch: Histogram,
    /// `chatbox_rate_limiter_keys{limiter}` (gauge): keys a limiter currently tracks.
    pub rate_limiter_keys: IntGaugeVec,
    /// `chatbox_fleet_limit_fallbacks_total`: fleet-wide limit checks (rate or connection lease)
    /// decided by the local limiter because Redis did not answer in time (issue 14).
    pub fleet_limit_fallbacks: IntCounter,
    /// `chatbox_fleet_turn_waits_total`: messages that waited for their user's turn while
    /// another instance answered that user (PROTOCOL.md §10 item 27 across a fleet).
    pub fleet_turn_waits: IntCounter,
    /// `chatbox_fleet_turn_fallbacks_total`: messages answered without the fleet-wide turn
    /// because Redis did not answer, or because the holder kept it past the longest wait.
    pub fleet_turn_fallbacks: IntCounter,
    /// `chatbox_provider_requests_total{provider_id}`: attempts made to a configured provider
    /// (by its id; issue 17).
    pub provider_requests: IntCounterVec,
    /// `chatbox_provider_errors_total{provider_id}`: attempts that failed before the first chunk.
    pub provider_errors: IntCounterVec,
    /// `chatbox_provider_fallbacks_total{provider_id}`: replies that moved on from this
    /// provider to a fallback (it failed, or its breaker was open).
    pub provider_fallbacks: IntCounterVec,
    /// `chatbox_provider_breaker_skips_total{provider_id}`: attempts skipped because the
    /// provider's circuit breaker was open.
    pub provider_breaker_skips: IntCounterVec,
    /// `chatbox_model_tokens_total{model_id,type}`: tokens of finished replies by the model that
    /// answered, `type` = `prompt` or `completion` (provider-reported, else estimated).
    pub model_tokens: IntCounterVec,
    /// `chatbox_token_budget_refusals_total`: messages refused by `USER_TOKEN_BUDGET`.
    pub token_budget_refusals: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Content type of [`Metrics::render`]'s output (text exposition format 0.0.4).
    pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

    /// A fresh registry with every metric at zero (and, in normal Linux builds, the process
    /// collector).
    pub fn new() -> Self {
        let registry = Registry::new();
        let r = &registry;
        let metrics = Self {
            websocket_connections: register(
                r,
                IntGauge::new("chatbox_websocket_connections_total", "Open WebSocket connections"),
            ),
            messages_received: register(
                r,
                IntCounter::new(
                    "chatbox_messages_received_total",
                    "Messages received from clients",
                ),
            ),
            messages_sent: register(
                r,
                IntCounter::new("chatbox_messages_sent_total", "Messages sent to clients"),
            ),
            llm_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new("chatbox_llm_requests_total", "LLM provider requests"),
                    &["provider"],
                ),
            ),
            llm_latency: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new("chatbox_llm_latency_seconds", "LLM reply latency"),
                    &["provider"],
                ),
            ),
            llm_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new("chatbox_llm_errors_total", "LLM provider errors"),
                    &["provider"],
                ),
            ),
            active_sessions: register(
                r,
                IntGauge::new("chatbox_active_sessions_total", "Active sessions in memory"),
            ),
            ended_sessions: register(
                r,
                IntGauge::new(
                    "chatbox_ended_sessions_in_memory",
                    "Ended sessions held in memory until SESSION_TTL after their end",
                ),
            ),
            sessions_created: register(
                r,
                IntCounter::new("chatbox_sessions_created_total", "Sessions created"),
            ),
            sessions_ended: register(
                r,
                IntCounter::new("chatbox_sessions_ended_total", "Sessions ended"),
            ),
            admin_takeovers: register(
                r,
                IntCounter::new("chatbox_admin_takeovers_total", "Admin takeovers"),
            ),
            message_errors: register(
                r,
                IntCounter::new("chatbox_message_errors_total", "Error frames sent to clients"),
            ),
            tokens_used: register(
                r,
                IntCounterVec::new(
                    Opts::new("chatbox_tokens_used_total", "LLM tokens used"),
                    &["provider"],
                ),
            ),
            store_operation: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "chatbox_mongodb_operation_seconds",
                        "Session store operation duration",
                    ),
                    &["operation"],
                ),
            ),
            ratelimit_blocked: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "chatbox_ratelimit_blocked_total",
                        "Requests refused by a rate limiter",
                    ),
                    &["limiter"],
                ),
            ),
            websocket_connection_duration: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "chatbox_websocket_connection_duration_seconds",
                        "WebSocket connection lifetime",
                    )
                    .buckets(CONNECTION_DURATION_BUCKETS.to_vec()),
                ),
            ),
            http_request_duration: register(
                r,
                HistogramVec::new(
                    HistogramOpts::new(
                        "chatbox_http_request_duration_seconds",
                        "HTTP request duration",
                    ),
                    &["endpoint", "method"],
                ),
            ),
            admin_messages_dropped: register(
                r,
                IntCounter::new(
                    "chatbox_admin_messages_dropped_total",
                    "Frames for an assisting admin that were dropped",
                ),
            ),
            outbox_depth: register(
                r,
                IntGauge::new("chatbox_outbox_depth", "Entries waiting in the durable outbox"),
            ),
            bus_up: register(
                r,
                IntGauge::new("chatbox_bus_up", "1 while the fleet bus is connected, else 0"),
            ),
            bus_published: register(
                r,
                IntCounter::new(
                    "chatbox_bus_frames_published_total",
                    "Bus messages published to the other instances",
                ),
            ),
            bus_received: register(
                r,
                IntCounter::new(
                    "chatbox_bus_frames_received_total",
                    "Bus messages from other instances delivered here",
                ),
            ),
            bus_rejected: register(
                r,
                IntCounter::new(
                    "chatbox_bus_messages_rejected_total",
                    "Bus messages that did not decode",
                ),
            ),
            bus_unpublished: register(
                r,
                IntCounter::new(
                    "chatbox_bus_frames_unpublished_total",
                    "Frames not published to the fleet (bus down or queue full)",
                ),
            ),
            replay_buffer_frames: register(
                r,
                IntGauge::new("chatbox_replay_buffer_frames", "Frames held for resumable replies"),
            ),
            outbox_dropped: register(
                r,
                IntCounter::new(
                    "chatbox_outbox_dropped_total",
                    "Outbox entries the store refused permanently",
                ),
            ),
            history_cache_hits: register(
                r,
                IntCounter::new(
                    "chatbox_history_cache_hits_total",
                    "Replies whose conversation came from the recent-messages cache",
                ),
            ),
            sweep_batch: register(
                r,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "chatbox_session_sweep_batch_seconds",
                        "Time one sweep batch held the session table's lock",
                    )
                    .buckets(SWEEP_BATCH_BUCKETS.to_vec()),
                ),
            ),
            rate_limiter_keys: register(
                r,
                IntGaugeVec::new(
                    Opts::new("chatbox_rate_limiter_keys", "Keys tracked by a rate limiter"),
                    &["limiter"],
                ),
            ),
            fleet_limit_fallbacks: register(
                r,
                IntCounter::new(
                    "chatbox_fleet_limit_fallbacks_total",
                    "Fleet-wide limit checks decided locally because Redis did not answer",
                ),
            ),
            fleet_turn_waits: register(
                r,
                IntCounter::new(
                    "chatbox_fleet_turn_waits_total",
                    "Messages that waited while another instance answered the same user",
                ),
            ),
            fleet_turn_fallbacks: register(
                r,
                IntCounter::new(
                    "chatbox_fleet_turn_fallbacks_total",
                    "Messages answered without the fleet-wide turn (Redis away or holder too long)",
                ),
            ),
            provider_requests: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "chatbox_provider_requests_total",
                        "Attempts per configured provider",
                    ),
                    &["provider_id"],
                ),
            ),
            provider_errors: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "chatbox_provider_errors_total",
                        "Provider attempts that failed before the first chunk",
                    ),
                    &["provider_id"],
                ),
            ),
            provider_fallbacks: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "chatbox_provider_fallbacks_total",
                        "Replies that fell back from this provider",
                    ),
                    &["provider_id"],
                ),
            ),
            provider_breaker_skips: register(
                r,
                IntCounterVec::new(
                    Opts::new(
                        "chatbox_provider_breaker_skips_total",
                        "Provider attempts skipped by an open circuit breaker",
                    ),
                    &["provider_id"],
                ),
            ),
            model_tokens: register(
                r,
                IntCounterVec::new(
                    Opts::new("chatbox_model_tokens_total", "Tokens of finished replies per model"),
                    &["model_id", "type"],
                ),
            ),
            token_budget_refusals: register(
                r,
                IntCounter::new(
                    "chatbox_token_budget_refusals_total",
                    "Messages refused by the daily token budget",
                ),
            ),
            registry,
        };
        for limiter in Limiter::ALL {
            metrics.ratelimit_blocked.with_label_values(&[limiter.as_str()]);
            metrics.rate_limiter_keys.with_label_values(&[limiter.as_str()]);
        }
        register_process_collector(&metrics.registry);
        metrics
    }

    /// Creates the per-provider series (`chatbox_llm_*`, `chatbox_tokens_used_total`) at zero
    /// for provider type `provider`; call once per configured model at start-up.
    pub fn init_provider(&self, provider: &str) {
        self.llm_requests.with_label_values(&[provider]);
        self.llm_errors.with_label_values(&[provider]);
        self.tokens_used.with_label_values(&[provider]);
        self.llm_latency.with_label_values(&[provider]);
    }

    /// Creates the per-model series (`chatbox_provider_*`, `chatbox_model_tokens_total`) at
    /// zero for configured provider id `id`.
    pub fn init_model(&self, id: &str) {
        for vec in [
            &self.provider_requests,
            &self.provider_errors,
            &self.provider_fallbacks,
            &self.provider_breaker_skips,
        ] {
            vec.with_label_values(&[id]);
        }
        for kind in ["prompt", "completion"] {
            self.model_tokens.with_label_values(&[id, kind]);
        }
    }

    /// `prompt` and `completion` tokens of a reply answered by model `id`.
    pub fn add_model_tokens(&self, id: &str, prompt: u64, completion: u64) {
        self.model_tokens.with_label_values(&[id, "prompt"]).inc_by(prompt);
        self.model_tokens.with_label_values(&[id, "completion"]).inc_by(completion);
    }

    /// One provider call opened (`chatbox_llm_requests_total{provider}`).
    pub fn llm_request(&self, provider: &str) {
        self.llm_requests.with_label_values(&[provider]).inc();
    }

    /// A reply finished or failed after `latency` (`chatbox_llm_latency_seconds{provider}`).
    pub fn observe_llm_latency(&self, provider: &str, latency: Duration) {
        self.llm_latency.with_label_values(&[provider]).observe(latency.as_secs_f64());
    }

    /// A reply ended in an error (`chatbox_llm_errors_total{provider}`).
    pub fn llm_error(&self, provider: &str) {
        self.llm_errors.with_label_values(&[provider]).inc();
    }

    /// `tokens` used by a finished reply (`chatbox_tokens_used_total{provider}`).
    pub fn add_tokens(&self, provider: &str, tokens: u64) {
        self.tokens_used.with_label_values(&[provider]).inc_by(tokens);
    }

    /// A store operation named `operation` took `elapsed`
    /// (`chatbox_mongodb_operation_seconds{operation}`).
    pub fn observe_store_operation(&self, operation: &str, elapsed: Duration) {
        self.store_operation.with_label_values(&[operation]).observe(elapsed.as_secs_f64());
    }

    /// `limiter` refused an attempt (`chatbox_ratelimit_blocked_total{limiter}`).
    pub fn rate_limited(&self, limiter: Limiter) {
        self.ratelimit_blocked.with_label_values(&[limiter.as_str()]).inc();
    }

    /// `limiter` now tracks `keys` keys (`chatbox_rate_limiter_keys{limiter}`).
    pub fn set_limiter_keys(&self, limiter: Limiter, keys: usize) {
        let keys = i64::try_from(keys).unwrap_or(i64::MAX);
        self.rate_limiter_keys.with_label_values(&[limiter.as_str()]).set(keys);
    }

    /// The durable outbox now holds `entries` entries (`chatbox_outbox_depth`).
    pub fn set_outbox_depth(&self, entries: usize) {
        self.outbox_depth.set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The sessions in memory: `chatbox_active_sessions_total` and
    /// `chatbox_ended_sessions_in_memory`.
    pub fn observe_sessions(&self, stats: chatbox_core::session::MemoryStats) {
        self.active_sessions.set(i64::try_from(stats.active).unwrap_or(i64::MAX));
        self.ended_sessions.set(i64::try_from(stats.inactive).unwrap_or(i64::MAX));
    }

    /// A WebSocket connection closed after `lifetime`
    /// (`chatbox_websocket_connection_duration_seconds`).
    pub fn observe_connection_duration(&self, lifetime: Duration) {
        self.websocket_connection_duration.observe(lifetime.as_secs_f64());
    }

    /// An HTTP request to route template `endpoint` with `method` took `elapsed`
    /// (`chatbox_http_request_duration_seconds{endpoint,method}`).
    pub fn observe_http_request(&self, endpoint: &str, method: &str, elapsed: Duration) {
        self.http_request_duration
            .with_label_values(&[endpoint, method])
            .observe(elapsed.as_secs_f64());
    }

    /// The Prometheus text exposition of every metric (the body of `/metrics/prometheus`; serve
    /// it with [`Metrics::CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(error) = TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out) {
            // Only reachable with malformed metric families, which the fixed definitions above
            // cannot produce; serve what was encoded rather than nothing.
            tracing::error!(%error, "cannot encode metrics");
        }
        out
    }
}

/// Registers `metric` (built from the fixed definitions above) and returns its handle.
fn register<M>(registry: &Registry, metric: prometheus::Result<M>) -> M
where
    M: Collector + Clone + 'static,
{
    // The definitions are constants with distinct, valid names: failing here is a programming
    // error that the unit tests catch, not a runtime condition.
    let metric = metric.expect("metric definition is valid");
    registry.register(Box::new(metric.clone())).expect("metric names are unique");
    metric
}

/// Adds the standard `process_*` metrics in normal Linux builds.
#[cfg(all(not(madsim), target_os = "linux"))]
fn register_process_collector(registry: &Registry) {
    let collector = prometheus::process_collector::ProcessCollector::for_self();
    if let Err(error) = registry.register(Box::new(collector)) {
        tracing::warn!(%error, "process metrics unavailable");
    }
}

/// No process metrics under madsim (they read `/proc`) or off Linux.
#[cfg(not(all(not(madsim), target_os = "linux")))]
fn register_process_collector(_registry: &Registry) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every name of PROTOCOL.md §4.11 plus the rebuild's.
    const NAMES: [&str; 30] = [
        "chatbox_websocket_connections_total",
        "chatbox_messages_received_total",
        "chatbox_messages_sent_total",
        "chatbox_llm_requests_total",
        "chatbox_llm_latency_seconds",
        "chatbox_llm_errors_total",
        "chatbox_active_sessions_total",
        "chatbox_sessions_created_total",
        "chatbox_sessions_ended_total",
        "chatbox_admin_takeovers_total",
        "chatbox_message_errors_total",
        "chatbox_tokens_used_total",
        "chatbox_mongodb_operation_seconds",
        "chatbox_ratelimit_blocked_total",
        "chatbox_websocket_connection_duration_seconds",
        "chatbox_http_request_duration_seconds",
        "chatbox_admin_messages_dropped_total",
        "chatbox_outbox_depth",
        "chatbox_replay_buffer_frames",
        "chatbox_outbox_dropped_total",
        "chatbox_history_cache_hits_total",
        "chatbox_session_sweep_batch_seconds",
        "chatbox_rate_limiter_keys",
        "chatbox_provider_requests_total",
        "chatbox_provider_errors_total",
        "chatbox_provider_fallbacks_total",
        "chatbox_provider_breaker_skips_total",
        "chatbox_model_tokens_total",
        "chatbox_token_budget_refusals_total",
        "chatbox_ended_sessions_in_memory",
    ];

    fn type_line(text: &str, name: &str) -> Option<String> {
        let prefix = format!("# TYPE {name} ");
        text.lines().find_map(|l| l.strip_prefix(prefix.as_str()).map(str::to_string))
    }

    fn sample(text: &str, series: &str) -> Option<f64> {
        text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    }

    #[test]
    fn metrics_render_contains_every_name_with_its_kind() {
        let metrics = Metrics::new();
        metrics.init_provider("openai");
        metrics.init_model("gpt");
        metrics.observe_store_operation("find_by_id", Duration::from_millis(3));
        metrics.observe_http_request("/chatbox/healthz", "GET", Duration::from_millis(1));
        let text = metrics.render();
        for name in NAMES {
            let kind = type_line(&text, name).unwrap_or_else(|| panic!("{name} missing:\n{text}"));
            let expected = if name.ends_with("_seconds") {
                "histogram"
            } else if matches!(
                name,
                "chatbox_websocket_connections_total"
                    | "chatbox_active_sessions_total"
                    | "chatbox_ended_sessions_in_memory"
                    | "chatbox_outbox_depth"
                    | "chatbox_rate_limiter_keys"
                    | "chatbox_replay_buffer_frames"
            ) {
                "gauge"
            } else {
                "counter"
            };
            assert_eq!(kind, expected, "{name}");
        }
    }

    #[test]
    fn metrics_unlabelled_and_limiter_series_exist_before_any_event() {
        let text = Metrics::new().render();
        for series in [
            "chatbox_websocket_connections_total",
            "chatbox_messages_received_total",
            "chatbox_outbox_depth",
            "chatbox_websocket_connection_duration_seconds_count",
            "chatbox_ratelimit_blocked_total{limiter=\"connection\"}",
            "chatbox_ratelimit_blocked_total{limiter=\"message\"}",
            "chatbox_rate_limiter_keys{limiter=\"public\"}",
        ] {
            assert_eq!(sample(&text, series), Some(0.0), "{series} in\n{text}");
        }
    }

    #[test]
    fn metrics_counters_and_gauges_move() {
        let m = Metrics::new();
        m.messages_received.inc();
        m.messages_received.inc();
        m.sessions_created.inc();
        m.websocket_connections.inc();
        m.websocket_connections.inc();
        m.websocket_connections.dec();
        m.llm_request("anthropic");
        m.llm_error("anthropic");
        m.add_tokens("anthropic", 42);
        m.rate_limited(Limiter::Message);
        m.set_limiter_keys(Limiter::Public, 7);
        m.set_outbox_depth(3);
        let text = m.render();
        let expect = [
            ("chatbox_messages_received_total", 2.0),
            ("chatbox_sessions_created_total", 1.0),
            ("chatbox_websocket_connections_total", 1.0),
            ("chatbox_llm_requests_total{provider=\"anthropic\"}", 1.0),
            ("chatbox_llm_errors_total{provider=\"anthropic\"}", 1.0),
            ("chatbox_tokens_used_total{provider=\"anthropic\"}", 42.0),
            ("chatbox_ratelimit_blocked_total{limiter=\"message\"}", 1.0),
            ("chatbox_ratelimit_blocked_total{limiter=\"connection\"}", 0.0),
            ("chatbox_rate_limiter_keys{limiter=\"public\"}", 7.0),
            ("chatbox_outbox_depth", 3.0),
        ];
        for (series, value) in expect {
            assert_eq!(sample(&text, series), Some(value), "{series} in\n{text}");
        }
    }

    #[test]
    fn metrics_connection_duration_uses_the_protocol_buckets() {
        let m = Metrics::new();
        m.observe_connection_duration(Duration::from_secs(20));
        let text = m.render();
        let bucket = |le: &str| {
            sample(
                &text,
                &format!("chatbox_websocket_connection_duration_seconds_bucket{{le=\"{le}\"}}"),
            )
        };
        for le in ["1", "5", "15", "30", "60", "120", "300", "600", "1800", "3600", "+Inf"] {
            let expected = if ["1", "5", "15"].contains(&le) { 0.0 } else { 1.0 };
            assert_eq!(bucket(le), Some(expected), "le={le} in\n{text}");
        }
        assert_eq!(sample(&text, "chatbox_websocket_connection_duration_seconds_sum"), Some(20.0));
    }

    #[test]
    fn metrics_http_histogram_is_labelled_by_route_and_method() {
        let m = Metrics::new();
        m.observe_http_request("/chatbox/sessions/:sessionID", "GET", Duration::from_millis(5));
        let text = m.render();
        let series = concat!(
            "chatbox_http_request_duration_seconds_count",
            "{endpoint=\"/chatbox/sessions/:sessionID\",method=\"GET\"}"
        );
        assert_eq!(sample(&text, series), Some(1.0), "{text}");
    }

    #[test]
    fn metrics_two_instances_do_not_share_counters() {
        let (a, b) = (Metrics::new(), Metrics::new());
        a.messages_sent.inc();
        assert_eq!(sample(&b.render(), "chatbox_messages_sent_total"), Some(0.0));
        assert_eq!(sample(&a.render(), "chatbox_messages_sent_total"), Some(1.0));
    }

    #[cfg(all(not(madsim), target_os = "linux"))]
    #[test]
    fn metrics_include_standard_process_metrics() {
        let text = Metrics::new().render();
        for name in
            ["process_cpu_seconds_total", "process_resident_memory_bytes", "process_open_fds"]
        {
            assert!(type_line(&text, name).is_some(), "{name} missing:\n{text}");
        }
    }
}
