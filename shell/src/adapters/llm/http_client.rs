//! What the three HTTP providers share before any byte is streamed: their settings
//! ([`ProviderSettings`]), the one connection pool the server builds for all of them
//! ([`build_client`]), URL joining, and "send and wait for the response headers" with the
//! PROTOCOL.md §7.2 header budget and status mapping (`send_for_stream`).
//!
//! Transport failures map onto the port's two classes: connection refused or reset, a header
//! timeout, HTTP 5xx and 429 are [`ProviderError::Transient`]; other statuses and requests that
//! cannot be built are [`ProviderError::Permanent`]. API keys are held as
//! [`chatbox_core::config::Secret`], so neither `Debug` nor an error text can show them.

use std::time::Duration;

use chatbox_core::budgets::{
    PROVIDER_ERROR_BODY_BYTES, PROVIDER_HEADER_TIMEOUT, PROVIDER_POOL_IDLE_TIMEOUT,
    PROVIDER_RETRY_AFTER_BYTES,
};
use chatbox_core::config::{ProviderConfig, Secret};
use futures_util::StreamExt;

use crate::engine::llm::ProviderError;

/// How one HTTP provider is reached. A plain value: the server fills it from configuration
/// ([`ProviderSettings::from_config`]), tests fill it by hand.
///
/// `Debug` shows everything but the key (it is a [`Secret`]).
#[derive(Debug, Clone, PartialEq)]
pub struct ProviderSettings {
    /// Client-visible model id (for logs; never sent upstream).
    pub id: String,
    /// Base URL, e.g. `https://api.openai.com/v1`; the API path is appended to it.
    pub endpoint: String,
    /// The upstream API key.
    pub api_key: Secret,
    /// Upstream model name (may be empty; Dify ignores it).
    pub model: String,
    /// Longest wait for the response headers, connecting included (default 30 s). There is no
    /// other transport timeout: deadlines between chunks belong to the engine.
    pub header_timeout: Duration,
}

impl ProviderSettings {
    /// Settings with the default header timeout.
    pub fn new(
        id: impl Into<String>,
        endpoint: impl Into<String>,
        api_key: Secret,
        model: impl Into<String>,
    ) -> Self {
        Self {
            id: id.into(),
            endpoint: endpoint.into(),
            api_key,
            model: model.into(),
            header_timeout: PROVIDER_HEADER_TIMEOUT,
        }
    }

    /// Settings for a configured provider (PROTOCOL.md §7.1), with the default header timeout.
    pub fn from_config(config: &ProviderConfig) -> Self {
        Self::new(
            config.id.clone(),
            config.endpoint.clone(),
            config.api_key.clone(),
            config.model.clone(),
        )
    }

    /// The same settings with another header timeout.
    #[must_use]
    pub fn with_header_timeout(mut self, header_timeout: Duration) -> Self {
        self.header_timeout = header_timeout;
        self
    }
}

/// The shared HTTP client could not be built (TLS backend initialisation failed).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the LLM HTTP client: {0}")]
pub struct ClientBuildError(#[source] reqwest::Error);

/// Builds the one connection pool all HTTP providers share: rustls, `connect_timeout` for
/// establishing connections, no overall request timeout (streams are long; the engine owns
/// their deadlines), no redirects (a redirected POST with credentials is refused, not
/// followed), HTTP/1.1, `TCP_NODELAY`.
///
/// reqwest applies a connect timeout per client, not per request, which is why it is set here
/// once rather than in each [`ProviderSettings`]; [`chatbox_core::budgets::PROVIDER_CONNECT_TIMEOUT`] is the
/// usual value.
pub fn build_client(connect_timeout: Duration) -> Result<reqwest::Client, ClientBuildError> {
    reqwest::Client::builder()
        .use_rustls_tls()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(PROVIDER_POOL_IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chatbox/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(ClientBuildError)
}

/// `endpoint` and `path` joined with exactly one `/` between them
/// (`http://h/v1/` + `/chat/completions` → `http://h/v1/chat/completions`).
pub fn join_url(endpoint: &str, path: &str) -> String {
    format!("{}/{}", endpoint.trim_end_matches('/'), path.trim_start_matches('/'))
}

/// A provider's request URL, parsed once when the provider is built: reqwest parses a URL
/// given as text on every request (~7 000 instructions per reply, BENCHMARKS.md "1h").
#[derive(Debug, Clone)]
pub(crate) struct RequestUrl {
    text: String,
    parsed: Option<reqwest::Url>,
}

impl RequestUrl {
    /// `endpoint` joined with `path` ([`join_url`]).
    pub(crate) fn new(endpoint: &str, path: &str) -> Self {
        let text = join_url(endpoint, path);
        let parsed = reqwest::Url::parse(&text).ok();
        Self { text, parsed }
    }

    /// A POST to this URL. One that does not parse is handed to reqwest as text, which fails
    /// the request the way it always did.
    pub(crate) fn post(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        match &self.parsed {
            Some(url) => client.post(url.clone()),
            None => client.post(&self.text),
        }
    }
}

/// Names a provider in errors and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Upstream {
    /// Provider type label (`openai`, `anthropic`, `dify`), [`ProviderError`]'s `provider`.
    pub(crate) kind: &'static str,
    /// Human name used in status errors (`OpenAI API error (status 500): …`).
    pub(crate) display: &'static str,
}

impl Upstream {
    /// A transient failure of this provider.
    pub(crate) fn transient(self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Transient { provider: self.kind, detail: detail.into() }
    }

    /// A permanent failure of this provider.
    pub(crate) fn permanent(self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Permanent { provider: self.kind, detail: detail.into() }
    }
}

/// Sends `request` (already carrying its body and headers) and waits at most `header_timeout`
/// for a 2xx response head. Returns the response with its body unread.
///
/// Errors: header timeout, connect failure, reset → transient; 5xx / 429 → transient with
/// `<Provider> API error (status <code>): <first 1024 bytes of body>` (throttled, carrying the
/// header, when the upstream sent `Retry-After`); any other non-2xx →
/// permanent with the same text; a request that cannot be built → permanent.
pub(crate) async fn send_for_stream(
    upstream: Upstream,
    provider_id: &str,
    request: reqwest::RequestBuilder,
    header_timeout: Duration,
) -> Result<reqwest::Response, ProviderError> {
    let response = match tokio::time::timeout(header_timeout, request.send()).await {
        Err(_elapsed) => {
            tracing::warn!(
                provider = upstream.kind,
                model_id = provider_id,
                timeout_ms = millis(header_timeout),
                "upstream sent no response headers in time"
            );
            return Err(upstream.transient(format!(
                "timeout: no response headers within {} ms",
                millis(header_timeout)
            )));
        }
        Ok(Err(err)) => {
            let error = classify_send_error(upstream, err);
            tracing::warn!(provider = upstream.kind, model_id = provider_id, error = %error, "upstream request failed");
            return Err(error);
        }
        Ok(Ok(response)) => response,
    };

    let status = response.status();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(|v| truncate(v.trim().to_owned(), PROVIDER_RETRY_AFTER_BYTES));
    if status.is_success() {
        tracing::debug!(
            provider = upstream.kind,
            model_id = provider_id,
            status = status.as_u16(),
            "upstream stream opened"
        );
        return Ok(response);
    }

    let body = error_body(response, header_timeout).await;
    let detail = format!("{} API error (status {}): {}", upstream.display, status.as_u16(), body);
    tracing::warn!(
        provider = upstream.kind,
        model_id = provider_id,
        status = status.as_u16(),
        "upstream refused the request"
    );
    if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        match retry_after {
            Some(retry_after) => {
                Err(ProviderError::Throttled { provider: upstream.kind, detail, retry_after })
            }
            None => Err(upstream.transient(detail)),
        }
    } else {
        Err(upstream.permanent(detail))
    }
}

/// Maps a `send()` failure: a request that could not be built is permanent (retrying builds
/// it the same way); everything else (refused, reset, DNS, TLS handshake) is transport trouble.
fn classify_send_error(upstream: Upstream, err: reqwest::Error) -> ProviderError {
    let permanent = err.is_builder();
    let detail = describe(&err.without_url());
    if permanent {
        upstream.permanent(detail)
    } else {
        upstream.transient(detail)
    }
}

/// The first [`PROVIDER_ERROR_BODY_BYTES`] of an error reply (lossy UTF-8, cut on a character
/// boundary), read within `budget`; whatever arrived by then if the upstream trickles.
async fn error_body(response: reqwest::Response, budget: Duration) -> String {
    let mut kept: Vec<u8> = Vec::new();
    let mut body = response.bytes_stream();
    let read = async {
        while kept.len() < PROVIDER_ERROR_BODY_BYTES {
            match body.next().await {
                Some(Ok(bytes)) => {
                    let room = PROVIDER_ERROR_BODY_BYTES - kept.len();
                    kept.extend_from_slice(&bytes[..bytes.len().min(room)]);
                }
                Some(Err(_)) | None => break,
            }
        }
    };
    let _ = tokio::time::timeout(budget, read).await;
    // A cut in the middle of a multi-byte character shows as a replacement character; lossy
    // decoding can also grow the text, so cut it back to the byte budget.
    truncate(String::from_utf8_lossy(&kept).into_owned(), PROVIDER_ERROR_BODY_BYTES)
}

/// `text` cut to at most `max` bytes on a character boundary.
pub(crate) fn truncate(mut text: String, max: usize) -> String {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
    text
}

/// An error and its sources, `outer: inner: innermost` (reqwest's own text is only the
/// outermost layer, e.g. "error sending request"; the cause, e.g. "Connection refused", is
/// deeper). Callers strip URLs first.
pub(crate) fn describe(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// `duration` in whole milliseconds, for logs and error texts.
pub(crate) fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chatbox_core::config::Origin;

    #[test]
    fn joins_without_double_slashes() {
        assert_eq!(join_url("http://h/v1", "chat/completions"), "http://h/v1/chat/completions");
        assert_eq!(join_url("http://h/v1/", "/chat/completions"), "http://h/v1/chat/completions");
        assert_eq!(join_url("http://h//", "/messages"), "http://h/messages");
    }

    #[test]
    fn a_parsed_url_sends_what_the_text_would() {
        let client = reqwest::Client::new();
        let url = RequestUrl::new("http://h:8080/v1/", "/chat/completions");
        let parsed = url.post(&client).build().map(|r| r.url().to_string());
        let text = client.post(&url.text).build().map(|r| r.url().to_string());
        assert_eq!(parsed.ok(), Some("http://h:8080/v1/chat/completions".to_owned()));
        assert_eq!(text.ok(), Some("http://h:8080/v1/chat/completions".to_owned()));
        let broken = RequestUrl::new("http://[bad", "messages");
        assert!(broken.parsed.is_none());
        assert!(broken.post(&client).build().is_err(), "fails as reqwest fails it");
    }

    #[test]
    fn debug_hides_the_key() {
        let settings = ProviderSettings::new(
            "gpt",
            "http://h",
            Secret::new("sk-very-secret", Origin::Env),
            "m",
        );
        let shown = format!("{settings:?}");
        assert!(!shown.contains("sk-very-secret"), "{shown}");
        assert_eq!(settings.header_timeout, PROVIDER_HEADER_TIMEOUT);
    }
}
