//! Help alerts by SMS through a Twilio-compatible REST API (the original's path, PROTOCOL.md
//! §6.7): one `POST {base}/2010-04-01/Accounts/{sid}/Messages.json` per admin phone, basic auth
//! `sid:token`, form fields `To`, `From`, `Body` (the original's SMS text). A 429, a 5xx or a
//! transport error is retried on core's [`SMS_RETRY`] schedule, honouring a `Retry-After` hint up
//! to [`SMS_RETRY_AFTER_CAP`]; any other status fails that phone at once. The auth token is never
//! shown, and phone numbers appear in logs only as their last two digits.

use std::fmt;

use async_trait::async_trait;
use chatbox_core::budgets::{SMS_RETRY, SMS_RETRY_AFTER_CAP, SMS_TIMEOUT};
use chatbox_core::config::SmsConfig;
use chatbox_core::retry::{retry_after_delay, ErrorClass, RetryDecision};
use chatbox_core::Instant;
use futures_util::future::join_all;
use reqwest::StatusCode;

use crate::engine::notify::{HelpAlert, Notifier, NotifyError};

const CHANNEL: &str = "sms";

/// Sends help alerts as text messages to every admin phone.
///
/// `Debug` shows the API host, the account id and how many phones, never the token.
#[derive(Clone)]
pub struct SmsNotifier {
    client: reqwest::Client,
    messages_url: reqwest::Url,
    account_sid: String,
    auth_token: String,
    from: String,
    to: Vec<String>,
}

impl fmt::Debug for SmsNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmsNotifier")
            .field("api", &self.messages_url.host_str().unwrap_or("?"))
            .field("account_sid", &self.account_sid)
            .field("phones", &self.to.len())
            .finish()
    }
}

/// One attempt's outcome, before retry policy is applied.
enum Attempt {
    Sent,
    Retryable { detail: String, retry_after: Option<String> },
    Failed(String),
}

impl SmsNotifier {
    /// A notifier for `sms` that texts `phones` (blank entries dropped). Errors when the base
    /// URL is not http(s), no phone is left, or the HTTP client cannot be built.
    pub fn new(sms: &SmsConfig, phones: &[String]) -> Result<Self, NotifyError> {
        let config_error = |detail: String| NotifyError::Config { channel: CHANNEL, detail };
        let base = reqwest::Url::parse(sms.api_base_url.trim())
            .map_err(|_| config_error("SMS_API_BASE_URL does not parse".into()))?;
        if !matches!(base.scheme(), "http" | "https") || base.host_str().is_none() {
            return Err(config_error("SMS_API_BASE_URL must be http(s) with a host".into()));
        }
        let mut messages_url = base;
        messages_url
            .path_segments_mut()
            .map_err(|()| config_error("SMS_API_BASE_URL cannot be a base".into()))?
            .pop_if_empty()
            .extend(["2010-04-01", "Accounts", sms.account_sid.trim(), "Messages.json"]);
        let to: Vec<String> =
            phones.iter().map(|p| p.trim().to_string()).filter(|p| !p.is_empty()).collect();
        if to.is_empty() {
            return Err(config_error("no admin phone (ADMIN_PHONES)".into()));
        }
        let client = reqwest::Client::builder()
            .timeout(SMS_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("chatbox/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| config_error(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self {
            client,
            messages_url,
            account_sid: sms.account_sid.trim().to_string(),
            auth_token: sms.auth_token.expose().to_string(),
            from: sms.from_number.trim().to_string(),
            to,
        })
    }

    /// The URL messages are posted to.
    pub fn messages_url(&self) -> &str {
        self.messages_url.as_str()
    }

    async fn attempt(&self, phone: &str, body: &str) -> Attempt {
        let sent = self
            .client
            .post(self.messages_url.clone())
            .basic_auth(&self.account_sid, Some(&self.auth_token))
            .form(&[("To", phone), ("From", self.from.as_str()), ("Body", body)])
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Attempt::Retryable {
                    detail: error.without_url().to_string(),
                    retry_after: None,
                }
            }
        };
        let status = response.status();
        if status.is_success() {
            return Attempt::Sent;
        }
        if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            return Attempt::Retryable { detail: format!("HTTP {status}"), retry_after };
        }
        Attempt::Failed(format!("HTTP {status}"))
    }

    /// Sends `body` to `phone`, retrying per [`SMS_RETRY`].
    async fn send_one(&self, phone: &str, body: &str) -> Result<u32, String> {
        // No deadline on the schedule, so the instant passed to `on_failure` is never compared.
        let mut retry = SMS_RETRY.start(None);
        loop {
            let (detail, retry_after) = match self.attempt(phone, body).await {
                Attempt::Sent => return Ok(retry.attempts_made() + 1),
                Attempt::Failed(detail) => return Err(detail),
                Attempt::Retryable { detail, retry_after } => (detail, retry_after),
            };
            let scheduled = match retry.on_failure(ErrorClass::Transient, Instant::ZERO) {
                RetryDecision::RetryAfter { delay, .. } => delay,
                RetryDecision::GiveUp(_) => {
                    return Err(format!("{detail} after {} attempts", retry.attempts_made()))
                }
            };
            let Some(wait) =
                retry_after_delay(retry_after.as_deref(), scheduled, SMS_RETRY_AFTER_CAP)
            else {
                return Err(format!("{detail}; Retry-After beyond {SMS_RETRY_AFTER_CAP:?}"));
            };
            tracing::info!(phone = %phone_tail(phone), %detail, wait_ms = wait.as_millis() as u64, "SMS alert retry");
            tokio::time::sleep(wait).await;
        }
    }
}

/// `…12`: enough to tell phones apart in logs without writing the number.
fn phone_tail(phone: &str) -> String {
    let digits: Vec<char> = phone.chars().filter(char::is_ascii_digit).collect();
    let tail: String = digits[digits.len().saturating_sub(2)..].iter().collect();
    format!("…{tail}")
}

#[async_trait]
impl Notifier for SmsNotifier {
    async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError> {
        let body = alert.sms_text();
        let results = join_all(self.to.iter().map(|phone| self.send_one(phone, &body))).await;
        let mut failures = Vec::new();
        for (phone, result) in self.to.iter().zip(results) {
            match result {
                Ok(attempts) => tracing::info!(
                    session_id = %alert.session_id,
                    phone = %phone_tail(phone),
                    attempts,
                    "help alert texted"
                ),
                Err(detail) => failures.push(format!("{}: {detail}", phone_tail(phone))),
            }
        }
        if failures.is_empty() {
            Ok(())
        } else {
            Err(NotifyError::Delivery { channel: CHANNEL, detail: failures.join("; ") })
        }
    }
}

#[cfg(test)]
mod tests {
    use chatbox_core::config::{Origin, Secret};

    use super::*;

    fn config(base: &str) -> SmsConfig {
        SmsConfig {
            account_sid: "AC0123".into(),
            auth_token: Secret::new("tok-very-secret", Origin::Env),
            from_number: "+15550000".into(),
            api_base_url: base.into(),
        }
    }

    #[test]
    fn notify_sms_builds_the_twilio_path_and_hides_the_token() {
        let n = SmsNotifier::new(&config("https://api.twilio.com"), &["+1555 0001".into()])
            .expect("valid");
        assert_eq!(
            n.messages_url(),
            "https://api.twilio.com/2010-04-01/Accounts/AC0123/Messages.json"
        );
        let debug = format!("{n:?}");
        assert!(!debug.contains("tok-very-secret") && debug.contains("AC0123"), "{debug}");
        let n =
            SmsNotifier::new(&config("http://127.0.0.1:9/twilio/"), &["+1".into()]).expect("ok");
        assert_eq!(
            n.messages_url(),
            "http://127.0.0.1:9/twilio/2010-04-01/Accounts/AC0123/Messages.json"
        );
    }

    #[test]
    fn notify_sms_refuses_bad_bases_and_no_phones() {
        assert!(SmsNotifier::new(&config("ftp://x.example"), &["+1".into()]).is_err());
        assert!(SmsNotifier::new(&config("https://api.twilio.com"), &[" ".into()]).is_err());
        assert_eq!(phone_tail("+1 555 0142"), "…42");
    }
}
