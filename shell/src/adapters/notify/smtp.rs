//! Help alerts by email: one multipart (text + HTML) message to every admin address, sent with
//! lettre's async SMTP transport on tokio, TLS by rustls. `SMTP_TLS` picks plain text (`none`),
//! STARTTLS (`starttls`, required — never falls back to plain) or TLS from the first byte
//! (`tls`); credentials are sent only when `SMTP_USERNAME` is set. Each command has a timeout and
//! the whole delivery a budget, so a silent server cannot hold an alert task forever.

use std::fmt;

use async_trait::async_trait;
use chatbox_core::budgets::{SMTP_COMMAND_TIMEOUT, SMTP_SEND_BUDGET};
use chatbox_core::config::{SmtpConfig, SmtpTls};
use lettre::message::{Mailbox, Mailboxes, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::engine::notify::{HelpAlert, Notifier, NotifyError};

const CHANNEL: &str = "smtp";

/// Sends help alerts as email.
///
/// `Debug` shows the server, the security mode and the recipients, never the password.
#[derive(Clone)]
pub struct SmtpNotifier {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    server: String,
    tls: SmtpTls,
}

impl fmt::Debug for SmtpNotifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let to: Vec<String> = self.to.iter().map(ToString::to_string).collect();
        f.debug_struct("SmtpNotifier")
            .field("server", &self.server)
            .field("tls", &self.tls)
            .field("from", &self.from.to_string())
            .field("to", &to)
            .finish()
    }
}

impl SmtpNotifier {
    /// A notifier for `smtp` that writes to `recipients`. Blank entries are ignored and
    /// unparsable ones skipped with a warning; it is an error when the sender is invalid, no
    /// recipient is left, or the TLS settings cannot be built.
    pub fn new(smtp: &SmtpConfig, recipients: &[String]) -> Result<Self, NotifyError> {
        let from: Mailbox = smtp.from.trim().parse().map_err(|e| NotifyError::Config {
            channel: CHANNEL,
            detail: format!("invalid sender address: {e}"),
        })?;
        let mut to = Vec::new();
        for recipient in recipients.iter().map(|r| r.trim()).filter(|r| !r.is_empty()) {
            match recipient.parse::<Mailbox>() {
                Ok(mailbox) => to.push(mailbox),
                Err(error) => tracing::warn!(recipient, %error, "skipping invalid admin email"),
            }
        }
        if to.is_empty() {
            return Err(NotifyError::Config {
                channel: CHANNEL,
                detail: "no valid recipient address".into(),
            });
        }
        let builder = match smtp.tls {
            SmtpTls::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
            SmtpTls::StartTls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
                .map_err(|e| tls_error(&e))?,
            SmtpTls::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
                .map_err(|e| tls_error(&e))?,
        };
        let mut builder = builder.port(smtp.port).timeout(Some(SMTP_COMMAND_TIMEOUT));
        if !smtp.username.is_empty() {
            builder = builder.credentials(Credentials::new(
                smtp.username.clone(),
                smtp.password.expose().to_string(),
            ));
        }
        Ok(Self {
            transport: builder.build(),
            from,
            to,
            server: format!("{}:{}", smtp.host, smtp.port),
            tls: smtp.tls,
        })
    }

    /// The email for `alert`: subject, a text part and an HTML part (PROTOCOL.md §6.7).
    pub fn message(&self, alert: &HelpAlert) -> Result<Message, NotifyError> {
        let to: Mailboxes = self.to.iter().cloned().collect();
        Message::builder()
            .from(self.from.clone())
            .mailbox(lettre::message::header::To::from(to))
            .subject(alert.subject())
            .multipart(MultiPart::alternative_plain_html(alert.text_body(), alert.html_body()))
            .map_err(|e| NotifyError::Build { channel: CHANNEL, detail: e.to_string() })
    }
}

fn tls_error(error: &lettre::transport::smtp::Error) -> NotifyError {
    NotifyError::Config { channel: CHANNEL, detail: format!("TLS setup failed: {error}") }
}

#[async_trait]
impl Notifier for SmtpNotifier {
    async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError> {
        let message = self.message(alert)?;
        let delivery = tokio::time::timeout(SMTP_SEND_BUDGET, self.transport.send(message));
        match delivery.await {
            Ok(Ok(response)) => {
                tracing::info!(
                    session_id = %alert.session_id,
                    server = %self.server,
                    code = %response.code(),
                    "help alert emailed"
                );
                Ok(())
            }
            Ok(Err(error)) => Err(NotifyError::Delivery {
                channel: CHANNEL,
                detail: format!("{}: {error}", self.server),
            }),
            Err(_) => Err(NotifyError::Delivery {
                channel: CHANNEL,
                detail: format!("{}: no answer within {SMTP_SEND_BUDGET:?}", self.server),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use chatbox_core::config::{Origin, Secret};
    use chrono::{TimeZone, Utc};

    use super::*;

    fn config(tls: SmtpTls) -> SmtpConfig {
        SmtpConfig {
            host: "mail.example.org".into(),
            port: 587,
            username: "bot".into(),
            password: Secret::new("hunter2-very-secret", Origin::Env),
            from: "Chatbox <chatbox@example.org>".into(),
            tls,
        }
    }

    #[test]
    fn notify_smtp_builds_for_every_tls_mode_and_hides_the_password() {
        for tls in [SmtpTls::None, SmtpTls::StartTls, SmtpTls::Tls] {
            let notifier = SmtpNotifier::new(&config(tls), &["ops@example.org".into()])
                .expect("valid configuration");
            let debug = format!("{notifier:?}");
            assert!(!debug.contains("hunter2"), "{debug}");
            assert!(debug.contains("mail.example.org:587"), "{debug}");
        }
    }

    #[test]
    fn notify_smtp_skips_bad_recipients_and_refuses_none() {
        let cfg = config(SmtpTls::None);
        let recipients =
            ["a@example.org".to_string(), "  ".into(), "nope".into(), "b@example.org".into()];
        let notifier = SmtpNotifier::new(&cfg, &recipients).expect("two valid recipients");
        assert_eq!(notifier.to.len(), 2);
        assert!(matches!(
            SmtpNotifier::new(&cfg, &["nope".into()]),
            Err(NotifyError::Config { channel: "smtp", .. })
        ));
        let bad_from = SmtpConfig { from: "chatbox".into(), ..cfg };
        assert!(SmtpNotifier::new(&bad_from, &recipients).is_err());
    }

    #[test]
    fn notify_smtp_message_has_subject_recipients_and_both_parts() {
        let notifier = SmtpNotifier::new(
            &config(SmtpTls::None),
            &["a@example.org".into(), "b@example.org".into()],
        )
        .expect("valid");
        let alert = HelpAlert {
            user_id: "u-1".into(),
            session_id: "s-1".into(),
            at: Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).single().expect("time"),
            admin_panel_url: Some("https://admin.example.org/s".into()),
        };
        let message = notifier.message(&alert).expect("message");
        let envelope = message.envelope();
        let to: Vec<String> = envelope.to().iter().map(ToString::to_string).collect();
        assert_eq!(to, ["a@example.org", "b@example.org"]);
        let raw = String::from_utf8(message.formatted()).expect("utf-8");
        assert!(raw.contains("Subject: Help Request - User u-1"), "{raw}");
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(raw.contains("text/plain") && raw.contains("text/html"), "{raw}");
    }
}
