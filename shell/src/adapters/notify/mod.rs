//! Help-alert channels (PROTOCOL.md §6.7): email over SMTP ([`smtp`]), a JSON webhook
//! ([`webhook`]) and SMS through a Twilio-compatible API ([`sms`]), all implementations of the engine's [`Notifier`] port. [`from_config`] builds
//! whatever the configuration asks for behind one [`MultiNotifier`], or a [`LogNotifier`] when
//! nothing is configured.

pub mod sms;
pub mod smtp;
pub mod webhook;

use std::sync::Arc;

use chatbox_core::config::AlertConfig;

use crate::engine::notify::{LogNotifier, MultiNotifier, Notifier};

pub use sms::SmsNotifier;
pub use smtp::SmtpNotifier;
pub use webhook::WebhookNotifier;

/// The configured alert channels: SMTP when `SMTP_HOST` and at least one admin email are set, a
/// webhook when `ALERT_WEBHOOK_URL` is set, SMS when the `SMS_*` settings are (validation made
/// sure they are complete); every one that is configured. A channel that cannot be built
/// (bad sender address, TLS setup) is logged and left out rather than stopping the server; with
/// no channel at all, alerts are only logged.
pub fn from_config(alerts: &AlertConfig) -> Arc<dyn Notifier> {
    let mut channels: Vec<Arc<dyn Notifier>> = Vec::new();
    match (&alerts.smtp, alerts.admin_emails.is_empty()) {
        (Some(smtp), false) => match SmtpNotifier::new(smtp, &alerts.admin_emails) {
            Ok(notifier) => channels.push(Arc::new(notifier)),
            Err(error) => tracing::error!(%error, "email alerts disabled"),
        },
        (Some(_), true) => {
            tracing::warn!("SMTP_HOST is set but ADMIN_EMAILS is empty: email alerts disabled")
        }
        (None, false) => {
            tracing::warn!("ADMIN_EMAILS is set but SMTP_HOST is not: email alerts disabled")
        }
        (None, true) => {}
    }
    if let Some(url) = &alerts.webhook_url {
        match WebhookNotifier::new(url) {
            Ok(notifier) => channels.push(Arc::new(notifier)),
            Err(error) => tracing::error!(%error, "webhook alerts disabled"),
        }
    }
    if let Some(sms) = &alerts.sms {
        match SmsNotifier::new(sms, &alerts.admin_phones) {
            Ok(notifier) => channels.push(Arc::new(notifier)),
            Err(error) => tracing::error!(%error, "SMS alerts disabled"),
        }
    }
    if channels.is_empty() {
        tracing::info!("no alert channel configured: help requests are only logged");
        Arc::new(LogNotifier)
    } else {
        Arc::new(MultiNotifier::new(channels))
    }
}

#[cfg(test)]
mod tests {
    use chatbox_core::config::{Origin, Secret, SmtpConfig, SmtpTls};

    use super::*;

    fn smtp() -> SmtpConfig {
        SmtpConfig {
            host: "127.0.0.1".into(),
            port: 2525,
            username: String::new(),
            password: Secret::new("", Origin::Env),
            from: "chatbox@example.org".into(),
            tls: SmtpTls::None,
        }
    }

    #[test]
    fn notify_from_config_picks_the_configured_channels() {
        let debug = |a: &AlertConfig| format!("{:?}", from_config(a));
        assert_eq!(debug(&AlertConfig::default()), "LogNotifier");

        let email_without_recipients = AlertConfig { smtp: Some(smtp()), ..AlertConfig::default() };
        assert_eq!(debug(&email_without_recipients), "LogNotifier");

        let both = AlertConfig {
            smtp: Some(smtp()),
            admin_emails: vec!["ops@example.org".into()],
            webhook_url: Some("http://127.0.0.1:9/hook/secret-token".into()),
            ..AlertConfig::default()
        };
        let text = debug(&both);
        assert!(text.contains("SmtpNotifier") && text.contains("WebhookNotifier"), "{text}");
        assert!(!text.contains("secret-token"), "webhook path must not be shown: {text}");

        let sms = AlertConfig {
            admin_phones: vec!["+15550001".into()],
            sms: Some(chatbox_core::config::SmsConfig {
                account_sid: "AC1".into(),
                auth_token: Secret::new("sms-token-secret", Origin::Env),
                from_number: "+15550000".into(),
                api_base_url: "https://api.twilio.com".into(),
            }),
            ..AlertConfig::default()
        };
        let text = debug(&sms);
        assert!(text.contains("SmsNotifier") && !text.contains("sms-token-secret"), "{text}");

        let mut bad_sender = both.clone();
        bad_sender.smtp = Some(SmtpConfig { from: "not an address".into(), ..smtp() });
        let text = debug(&bad_sender);
        assert!(!text.contains("SmtpNotifier") && text.contains("WebhookNotifier"), "{text}");
    }
}
