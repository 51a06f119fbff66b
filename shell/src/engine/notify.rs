//! The `Notifier` port: how the engine alerts administrators that a user asked for help
//! (PROTOCOL.md §6.7). Adapters deliver by SMTP and by webhook (`adapters::notify`);
//! [`MultiNotifier`] fans one alert out to all of them and [`LogNotifier`] stands in when nothing
//! is configured. The texts of the alert live here, next to [`HelpAlert`], so every channel and
//! every test renders the same words. Rate limiting (5 per session per 5 minutes) and running the
//! alert in the background are the caller's business.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, SecondsFormat, Utc};
use futures_util::future::join_all;

/// One help request, as every channel reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelpAlert {
    /// Who asked (the JWT `user_id`).
    pub user_id: String,
    /// The session that needs help.
    pub session_id: String,
    /// When the request was handled (server wall clock).
    pub at: DateTime<Utc>,
    /// Base URL of the admin panel (`ADMIN_PANEL_URL`), if configured.
    pub admin_panel_url: Option<String>,
}

#[cfg(test)]
impl HelpAlert {
    /// The alert the unit tests check (here and in the notifier adapters): user `u-1`, session
    /// `s-9`, 2026-02-21T10:00:05Z, `url` as the admin panel.
    pub(crate) fn sample(url: Option<&str>) -> Self {
        use chrono::TimeZone;
        HelpAlert {
            user_id: "u-1".into(),
            session_id: "s-9".into(),
            at: Utc.with_ymd_and_hms(2026, 2, 21, 10, 0, 5).single().expect("valid time"),
            admin_panel_url: url.map(str::to_string),
        }
    }
}

impl HelpAlert {
    /// `Help Request - User <user_id>` (the email subject).
    pub fn subject(&self) -> String {
        format!("Help Request - User {}", self.user_id)
    }

    /// The time as RFC 3339 in UTC with whole seconds (`2026-02-21T10:00:00Z`), as the original
    /// formats it.
    pub fn time_rfc3339(&self) -> String {
        self.at.to_rfc3339_opts(SecondsFormat::Secs, true)
    }

    /// `<admin_panel_url>/<session_id>` when the admin panel URL is set and not blank (one
    /// trailing `/` of the base is dropped so the link never has `//`). Not escaped.
    pub fn session_link(&self) -> Option<String> {
        let base = self.admin_panel_url.as_deref()?.trim();
        if base.is_empty() {
            return None;
        }
        let base = base.strip_suffix('/').unwrap_or(base);
        Some(format!("{base}/{}", self.session_id))
    }

    /// The plain-text part: `Help Request - User: <uid>, Session: <sid>, Time: <RFC 3339>`.
    pub fn text_body(&self) -> String {
        format!(
            "Help Request - User: {}, Session: {}, Time: {}",
            self.user_id,
            self.session_id,
            self.time_rfc3339()
        )
    }

    /// The HTML part: user id, session id, time and, when [`HelpAlert::session_link`] is set, a
    /// link to the session. Every interpolated value is HTML-escaped.
    pub fn html_body(&self) -> String {
        let mut html = String::from(
            "<html><body>\n<h2>Help Request</h2>\n<p>A user has requested assistance.</p>\n<ul>\n",
        );
        for (label, value) in [
            ("User ID", self.user_id.as_str()),
            ("Session ID", self.session_id.as_str()),
            ("Time", self.time_rfc3339().as_str()),
        ] {
            html.push_str(&format!("<li><strong>{label}:</strong> {}</li>\n", escape_html(value)));
        }
        html.push_str("</ul>\n");
        if let Some(link) = self.session_link() {
            let link = escape_html(&link);
            html.push_str(&format!("<p><a href=\"{link}\">View session in admin panel</a></p>\n"));
        }
        html.push_str("</body></html>\n");
        html
    }

    /// The SMS text of the original: `Help Request - User <uid> needs assistance. Session: <sid>`.
    pub fn sms_text(&self) -> String {
        format!(
            "Help Request - User {} needs assistance. Session: {}",
            self.user_id, self.session_id
        )
    }
}

/// `text` with `& < > " '` replaced by entities, safe inside element content and quoted
/// attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Why an alert was not delivered. Details never carry secrets (passwords, webhook URLs).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotifyError {
    /// The channel's configuration is unusable (bad address, TLS setup failed).
    #[error("{channel} alerts misconfigured: {detail}")]
    Config {
        /// `smtp`, `webhook`, …
        channel: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The message could not be built (e.g. an invalid recipient).
    #[error("{channel} alert could not be built: {detail}")]
    Build {
        /// `smtp`, `webhook`, …
        channel: &'static str,
        /// What is wrong.
        detail: String,
    },
    /// The channel refused or did not answer in time.
    #[error("{channel} alert delivery failed: {detail}")]
    Delivery {
        /// `smtp`, `webhook`, …
        channel: &'static str,
        /// What happened.
        detail: String,
    },
}

/// Delivers help alerts to administrators.
#[async_trait]
pub trait Notifier: Send + Sync + fmt::Debug {
    /// Sends one alert. May take seconds (network); callers run it in the background.
    async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError>;
}

/// Logs alerts; used when no channel is configured, so a help request still leaves a trace.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError> {
        tracing::warn!(
            user_id = %alert.user_id,
            session_id = %alert.session_id,
            time = %alert.time_rfc3339(),
            link = alert.session_link().as_deref(),
            "help requested (no alert channel configured)"
        );
        Ok(())
    }
}

/// Sends each alert through every inner notifier concurrently.
///
/// Individual failures are logged and do not fail the call: one broken channel must not hide
/// the alert from the others, and the user's `help_request` has already been answered.
#[derive(Debug, Clone, Default)]
pub struct MultiNotifier {
    notifiers: Vec<Arc<dyn Notifier>>,
}

impl MultiNotifier {
    /// Fans out to `notifiers` (none: alerts are only logged as delivered nowhere).
    pub fn new(notifiers: Vec<Arc<dyn Notifier>>) -> Self {
        Self { notifiers }
    }

    /// How many channels alerts go to.
    pub fn len(&self) -> usize {
        self.notifiers.len()
    }

    /// `true` when alerts go nowhere.
    pub fn is_empty(&self) -> bool {
        self.notifiers.is_empty()
    }
}

#[async_trait]
impl Notifier for MultiNotifier {
    async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError> {
        if self.notifiers.is_empty() {
            return LogNotifier.help_requested(alert).await;
        }
        let results = join_all(self.notifiers.iter().map(|n| n.help_requested(alert))).await;
        for error in results.into_iter().filter_map(Result::err) {
            tracing::error!(
                user_id = %alert.user_id,
                session_id = %alert.session_id,
                %error,
                "help alert not delivered"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    #[test]
    fn notify_texts_match_the_protocol() {
        let a = HelpAlert::sample(None);
        assert_eq!(a.subject(), "Help Request - User u-1");
        assert_eq!(
            a.text_body(),
            "Help Request - User: u-1, Session: s-9, Time: 2026-02-21T10:00:05Z"
        );
        assert_eq!(a.sms_text(), "Help Request - User u-1 needs assistance. Session: s-9");
        let html = a.html_body();
        for part in ["u-1", "s-9", "2026-02-21T10:00:05Z"] {
            assert!(html.contains(part), "{part} in {html}");
        }
        assert!(!html.contains("<a "), "no link without a panel URL: {html}");
    }

    #[test]
    fn notify_link_is_joined_and_escaped() {
        let a = HelpAlert::sample(Some("https://admin.example.org/panel?a=1&b=\"2\"/"));
        assert_eq!(
            a.session_link().as_deref(),
            Some("https://admin.example.org/panel?a=1&b=\"2\"/s-9")
        );
        assert!(a
            .html_body()
            .contains("<a href=\"https://admin.example.org/panel?a=1&amp;b=&quot;2&quot;/s-9\">"));
        assert_eq!(HelpAlert::sample(Some("  ")).session_link(), None);
        assert_eq!(
            HelpAlert::sample(Some("https://p.example")).session_link().as_deref(),
            Some("https://p.example/s-9")
        );
    }

    #[test]
    fn notify_html_escapes_ids() {
        let mut a = HelpAlert::sample(Some("https://p.example"));
        a.user_id = "<script>alert('x')</script>".into();
        a.session_id = "a&b".into();
        let html = a.html_body();
        assert!(!html.contains("<script>"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"), "{html}");
        assert!(html.contains("href=\"https://p.example/a&amp;b\""), "{html}");
    }

    #[derive(Debug)]
    struct Recording {
        fail: bool,
        seen: Mutex<Vec<String>>,
    }

    #[async_trait]
    impl Notifier for Recording {
        async fn help_requested(&self, alert: &HelpAlert) -> Result<(), NotifyError> {
            self.seen.lock().expect("lock").push(alert.session_id.clone());
            if self.fail {
                Err(NotifyError::Delivery { channel: "test", detail: "refused".into() })
            } else {
                Ok(())
            }
        }
    }

    #[tokio::test]
    async fn notify_multi_reaches_every_channel_despite_failures() {
        let failing = Arc::new(Recording { fail: true, seen: Mutex::default() });
        let working = Arc::new(Recording { fail: false, seen: Mutex::default() });
        let multi = MultiNotifier::new(vec![failing.clone(), working.clone()]);
        assert_eq!(multi.len(), 2);
        assert_eq!(multi.help_requested(&HelpAlert::sample(None)).await, Ok(()));
        assert_eq!(*failing.seen.lock().expect("lock"), vec!["s-9".to_string()]);
        assert_eq!(*working.seen.lock().expect("lock"), vec!["s-9".to_string()]);
    }

    #[tokio::test]
    async fn notify_empty_multi_and_log_notifier_succeed() {
        assert!(MultiNotifier::default().is_empty());
        assert_eq!(MultiNotifier::default().help_requested(&HelpAlert::sample(None)).await, Ok(()));
        assert_eq!(LogNotifier.help_requested(&HelpAlert::sample(None)).await, Ok(()));
    }
}
