//! Help alerts by webhook: one JSON `POST` per alert,
//! `{"event":"help_request","user_id":…,"session_id":…,"time":…,"admin_panel_url":…}` (the last
//! only when an admin panel URL is configured; it is the session's page there). A 10 s budget per
//! call; any status but 2xx (redirects included) is a failure. The URL often carries a token, so
//! neither `Debug` nor error texts show more than its scheme and host.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chatbox_core::budgets::WEBHOOK_TIMEOUT;
use serde::Serialize;

use crate::engine::notify::{HelpAlert, Notifier, NotifyError};

const CHANNEL: &str = "webhook";

/// The JSON body of a webhook call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookPayload {
    /// Always `help_request`.
    pub event: &'static str,
    /// Who asked.
    pub user_id: String,
    /// The session.
    pub session_id: String,
    /// RFC 3339 UTC, whole seconds.
    pub time: String,
    /// `<ADMIN_PANEL_URL>/<session_id>`, omitted when no admin panel URL is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_panel_url: Option<String>,
}

impl WebhookPayload {
    /// The body for `alert`.
    pub fn new(alert: &HelpAlert) -> Self {
        Self {
            event: "help_request",
            user_id: alert.user_id.clone(),
            session_id: alert.session_id.clone(),
            time: alert.time_rfc3339(),
            admin_panel_url: alert.session_link(),
        }
    }
}

/// Posts help alerts to a URL.
#[derive(Clone)]
pub struct WebhookNotifier {
    client: reqwest::Client,
    url: reqwest::Url,
}

impl fmt::Debug for WebhookNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookNotifier").field("target", &self.target()).finish()
    }
}

impl WebhookNotifier {
    /// A notifier posting to `url` (http or https) with [`WEBHOOK_TIMEOUT`].
    pub fn new(url: &str) -> Result<Self, NotifyError> {
        Self::with_timeout(url, WEBHOOK_TIMEOUT)
    }

    /// A notifier posting to `url` with a custom per-call budget.
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, NotifyError> {
        let config_error =
            |detail: &str| NotifyError::Config { channel: CHANNEL, detail: detail.into() };
        let url = reqwest::Url::parse(url).map_err(|_| config_error("the URL does not parse"))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(config_error("the URL must be http(s) with a host"));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("chatbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                config_error(&format!("cannot build the HTTP client: {}", e.without_url()))
            })?;
        Ok(Self { client, url })
    }

    /// `scheme://host[:port]` of the target, safe to log.
    fn target(&self) -> String {
        let host = self.url.host_str().unwrap_or("?");
        match self.url.port() {
            Some(port) => format!("{}://{host}:{port}", self.url.scheme()),
            None => format!("{}://{host}", self.url.scheme()),
        }
    }
}

#[async_trait]
impl Notifier for WebhookNotifier {
    async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError> {
        let delivery_error = |detail: String| NotifyError::Delivery {
            channel: CHANNEL,
            detail: format!("{}: {detail}", self.target()),
        };
        let response = self
            .client
            .post(self.url.clone())
            .json(&WebhookPayload::new(alert))
            .send()
            .await
            .map_err(|e| delivery_error(e.without_url().to_string()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(delivery_error(format!("HTTP {status}")));
        }
        tracing::info!(
            session_id = %alert.session_id,
            target = %self.target(),
            "help alert posted"
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_webhook_payload_shape() {
        let json =
            serde_json::to_value(WebhookPayload::new(&HelpAlert::sample(None))).expect("json");
        assert_eq!(
            json,
            serde_json::json!({"event":"help_request","user_id":"u-1","session_id":"s-9",
                               "time":"2026-02-21T10:00:05Z"})
        );
        let json = serde_json::to_value(WebhookPayload::new(&HelpAlert::sample(Some(
            "https://a.example/p",
        ))))
        .expect("json");
        assert_eq!(json["admin_panel_url"], "https://a.example/p/s-9");
    }

    #[test]
    fn notify_webhook_rejects_bad_urls_and_hides_the_path() {
        for bad in ["not a url", "ftp://example.org/x", "mailto:a@example.org"] {
            assert!(WebhookNotifier::new(bad).is_err(), "{bad}");
        }
        let n = WebhookNotifier::new("https://hooks.example.org:8443/T0/B0/secret").expect("valid");
        assert_eq!(
            format!("{n:?}"),
            "WebhookNotifier { target: \"https://hooks.example.org:8443\" }"
        );
    }
}
