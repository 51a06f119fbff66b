//! Help alerts over real channels (PROTOCOL.md §6.7): the SMTP notifier against a real SMTP
//! server (aiosmtpd, started by `scripts/smtp-server.sh`, which writes each message it receives
//! to a directory), and the webhook notifier against a local HTTP listener. The delivered email is
//! parsed and checked: subject, recipients, text part, HTML link.
//!
//! The SMTP tests need python3 and PyPI (the script installs aiosmtpd into a cache venv on first
//! use). Without them they fail with the script's message — they never skip.

#![cfg(not(madsim))]

use std::time::Duration;

use chatbox::adapters::notify::{from_config, SmtpNotifier, WebhookNotifier};
use chatbox::engine::notify::{HelpAlert, Notifier, NotifyError};
use chatbox_core::config::{AlertConfig, Origin, Secret, SmtpConfig, SmtpTls};
use chatbox_tests::e2e::SmtpSink;
use chatbox_tests::script_server::read_request;
use chrono::{TimeZone, Utc};
use mail_parser::MessageParser;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::oneshot;

/// Bound on any other step, so a bug fails instead of hanging.
const STEP: Duration = Duration::from_secs(15);
const PANEL: &str = "https://admin.example.org/sessions";

fn alert(session_id: &str) -> HelpAlert {
    HelpAlert {
        user_id: "user-42".into(),
        session_id: session_id.into(),
        at: Utc.with_ymd_and_hms(2026, 2, 21, 10, 30, 0).single().expect("valid time"),
        admin_panel_url: Some(PANEL.into()),
    }
}

/// The notifier settings that deliver to `sink` (no TLS, no AUTH).
fn smtp_config(sink: &SmtpSink) -> SmtpConfig {
    SmtpConfig {
        host: "127.0.0.1".into(),
        port: sink.port(),
        username: String::new(),
        password: Secret::default(),
        from: "Chatbox Alerts <alerts@chatbox.test>".into(),
        tls: SmtpTls::None,
    }
}

fn recipients() -> Vec<String> {
    vec!["ops@example.org".into(), " oncall@example.org ".into()]
}

/// Checks a delivered alert email for `session_id`.
fn assert_alert_email(raw: &[u8], envelope: &Value, session_id: &str) {
    assert_eq!(envelope["mail_from"], "alerts@chatbox.test");
    assert_eq!(envelope["rcpt_tos"], json!(["ops@example.org", "oncall@example.org"]));

    let message = MessageParser::default().parse(raw).expect("a parsable email");
    assert_eq!(message.subject(), Some("Help Request - User user-42"));
    let from: Vec<_> = message.from().expect("From").iter().filter_map(|a| a.address()).collect();
    assert_eq!(from, ["alerts@chatbox.test"]);
    let to: Vec<_> = message.to().expect("To").iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["ops@example.org", "oncall@example.org"]);

    let text = message.body_text(0).expect("a text part");
    assert_eq!(
        text.trim_end(),
        format!("Help Request - User: user-42, Session: {session_id}, Time: 2026-02-21T10:30:00Z")
    );
    let html = message.body_html(0).expect("an HTML part");
    let escaped_link = format!("{PANEL}/{}", session_id.replace('&', "&amp;"));
    assert!(html.contains(&format!("<a href=\"{escaped_link}\">")), "link missing in {html}");
    for part in ["user-42", "2026-02-21T10:30:00Z"] {
        assert!(html.contains(part), "{part} missing in {html}");
    }
}

#[tokio::test]
async fn smtp_alert_is_delivered_with_subject_recipients_text_and_link() {
    let sink = SmtpSink::start().await;
    let notifier = SmtpNotifier::new(&smtp_config(&sink), &recipients()).expect("notifier");
    let session = "sess-1&b";
    tokio::time::timeout(STEP, notifier.help_requested(&alert(session)))
        .await
        .expect("delivery within the step budget")
        .expect("delivered");
    let (raw, envelope) = sink.message(1).await;
    assert_alert_email(&raw, &envelope, session);
    assert_eq!(envelope["authenticated"], false);
}

#[tokio::test]
async fn smtp_alert_authenticates_when_a_username_is_set() {
    let sink = SmtpSink::start_with_auth(Some("alert-bot:pa55-word")).await;
    let config = SmtpConfig {
        username: "alert-bot".into(),
        password: Secret::new("pa55-word", Origin::Env),
        ..smtp_config(&sink)
    };
    let notifier = SmtpNotifier::new(&config, &recipients()).expect("notifier");
    tokio::time::timeout(STEP, notifier.help_requested(&alert("sess-2")))
        .await
        .expect("delivery within the step budget")
        .expect("delivered");
    let (raw, envelope) = sink.message(1).await;
    assert_alert_email(&raw, &envelope, "sess-2");
    assert_eq!(envelope["authenticated"], true);

    let wrong = SmtpConfig { password: Secret::new("wrong", Origin::Env), ..config.clone() };
    let notifier = SmtpNotifier::new(&wrong, &recipients()).expect("notifier");
    let refused = tokio::time::timeout(STEP, notifier.help_requested(&alert("sess-3")))
        .await
        .expect("answer within the step budget");
    match refused {
        Err(NotifyError::Delivery { channel: "smtp", detail }) => {
            assert!(!detail.contains("wrong"), "the password must not appear: {detail}")
        }
        other => panic!("expected an SMTP delivery error, got {other:?}"),
    }

    let anonymous = SmtpConfig { username: String::new(), ..config };
    let notifier = SmtpNotifier::new(&anonymous, &recipients()).expect("notifier");
    let refused = tokio::time::timeout(STEP, notifier.help_requested(&alert("sess-4")))
        .await
        .expect("answer within the step budget");
    assert!(matches!(refused, Err(NotifyError::Delivery { .. })), "{refused:?}");
    assert!(!sink.mail_dir().join("2.eml").exists(), "refused alerts must not arrive");
}

#[tokio::test]
async fn smtp_alert_to_a_closed_port_fails_fast() {
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let config = SmtpConfig {
        host: "127.0.0.1".into(),
        port,
        username: String::new(),
        password: Secret::default(),
        from: "alerts@chatbox.test".into(),
        tls: SmtpTls::None,
    };
    let notifier = SmtpNotifier::new(&config, &recipients()).expect("notifier");
    let outcome = tokio::time::timeout(STEP, notifier.help_requested(&alert("s")))
        .await
        .expect("answer within the step budget");
    assert!(matches!(outcome, Err(NotifyError::Delivery { channel: "smtp", .. })), "{outcome:?}");
}

/// One request as the local webhook server saw it.
#[derive(Debug)]
struct Received {
    head: String,
    body: Vec<u8>,
}

/// Serves one HTTP request on a free port with `status` (after `delay`), reporting what it got.
async fn webhook_server(status: u16, delay: Duration) -> (String, oneshot::Receiver<Received>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (tx, rx) = oneshot::channel();
    #[allow(clippy::disallowed_methods)] // a test fixture, not a server task
    tokio::spawn(async move {
        let Ok((mut socket, _)) = listener.accept().await else { return };
        let Some((head, body)) = read_request(&mut socket).await else { return };
        let _ = tx.send(Received { head, body });
        tokio::time::sleep(delay).await;
        let reply =
            format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
        let _ = socket.write_all(reply.as_bytes()).await;
        let _ = socket.shutdown().await;
    });
    (format!("http://{addr}/hooks/T000/secret-token"), rx)
}

#[tokio::test]
async fn webhook_alert_posts_the_json_event() {
    let (url, received) = webhook_server(204, Duration::ZERO).await;
    let notifier = WebhookNotifier::new(&url).expect("notifier");
    tokio::time::timeout(STEP, notifier.help_requested(&alert("sess-9")))
        .await
        .expect("answer within the step budget")
        .expect("delivered");
    let got = tokio::time::timeout(STEP, received).await.expect("request").expect("request");
    assert!(got.head.starts_with("POST /hooks/T000/secret-token HTTP/1.1\r\n"), "{}", got.head);
    assert!(
        got.head.to_ascii_lowercase().contains("content-type: application/json"),
        "{}",
        got.head
    );
    let body: Value = serde_json::from_slice(&got.body).expect("JSON body");
    assert_eq!(
        body,
        json!({"event": "help_request", "user_id": "user-42", "session_id": "sess-9",
               "time": "2026-02-21T10:30:00Z", "admin_panel_url": format!("{PANEL}/sess-9")})
    );
}

#[tokio::test]
async fn webhook_non_2xx_and_silence_are_errors_without_the_url_path() {
    let (url, _received) = webhook_server(500, Duration::ZERO).await;
    let notifier = WebhookNotifier::new(&url).expect("notifier");
    let outcome = tokio::time::timeout(STEP, notifier.help_requested(&alert("s"))).await;
    match outcome.expect("answer within the step budget") {
        Err(NotifyError::Delivery { channel: "webhook", detail }) => {
            assert!(detail.contains("500"), "{detail}");
            assert!(!detail.contains("secret-token"), "the URL path must not appear: {detail}");
        }
        other => panic!("expected a webhook delivery error, got {other:?}"),
    }

    let (url, _received) = webhook_server(200, Duration::from_secs(5)).await;
    let notifier =
        WebhookNotifier::with_timeout(&url, Duration::from_millis(300)).expect("notifier");
    let outcome = tokio::time::timeout(STEP, notifier.help_requested(&alert("s"))).await;
    match outcome.expect("answer within the step budget") {
        Err(NotifyError::Delivery { channel: "webhook", detail }) => {
            assert!(!detail.contains("secret-token"), "the URL path must not appear: {detail}");
        }
        other => panic!("expected a webhook timeout, got {other:?}"),
    }
}

#[tokio::test]
async fn configured_channels_all_receive_one_alert() {
    let sink = SmtpSink::start().await;
    let (url, received) = webhook_server(200, Duration::ZERO).await;
    let alerts = AlertConfig {
        admin_emails: recipients(),
        admin_phones: Vec::new(),
        admin_panel_url: Some(PANEL.into()),
        webhook_url: Some(url),
        smtp: Some(smtp_config(&sink)),
        sms: None,
    };
    let notifier = from_config(&alerts);
    tokio::time::timeout(STEP, notifier.help_requested(&alert("sess-both")))
        .await
        .expect("answer within the step budget")
        .expect("fan-out never fails");
    let (raw, envelope) = sink.message(1).await;
    assert_alert_email(&raw, &envelope, "sess-both");
    let got = tokio::time::timeout(STEP, received).await.expect("request").expect("request");
    let body: Value = serde_json::from_slice(&got.body).expect("JSON body");
    assert_eq!(body["session_id"], "sess-both");
}
