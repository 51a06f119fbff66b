#![cfg(not(madsim))]
//! Help alerts end to end through the real binary (PROTOCOL.md §3.8 `help_request`, §6.7): a
//! user chats, asks for help, gets the exact acknowledgement, and the alert reaches a real SMTP
//! server (aiosmtpd via `scripts/smtp-server.sh`, as in `alerts.rs`) with the subject, the text
//! part and the admin-panel link; at most `HELP_ALERT_LIMIT` (default 5) alerts per session per
//! window are delivered, the rest are acknowledged but not sent. The same flow through a webhook
//! (`ALERT_WEBHOOK_URL`) delivers the JSON event.
//!
//! The SMTP test needs python3 and PyPI on first use (the script installs aiosmtpd into a cache
//! venv); without them it fails with the script's message.

use std::time::Duration;

use chatbox_tests::e2e::{chat, without_timestamp, SmtpSink, WebhookRecorder, STEP};
use chatbox_tests::harness::{assert_error, Client, Server, ServerOpts};
use chatbox_tests::http::get;
use chatbox_tests::upstream::Upstream;
use mail_parser::MessageParser;
use serde_json::json;

const PANEL: &str = "https://admin.example/sessions";
const HELP_SENT: &str = "Help request sent. An administrator will join your session shortly.";

/// Sends `help_request` for `session` and asserts the exact acknowledgement.
async fn ask_for_help(client: &mut Client, session: &str) {
    client
        .send_json(&json!({"type": "help_request", "session_id": session, "sender": "user"}))
        .await;
    let ack = client.recv_frame(STEP).await;
    assert_eq!(
        without_timestamp(&ack),
        json!({"type": "connection_status", "session_id": session, "sender": "ai",
               "content": HELP_SENT})
    );
}

#[tokio::test]
async fn help_request_emails_the_admins_at_most_five_times() {
    let sink = SmtpSink::start().await;
    let upstream = Upstream::start().await;
    let server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("SMTP_HOST", "127.0.0.1")
            .env("SMTP_PORT", &sink.port().to_string())
            .env("SMTP_FROM", "Chatbox Alerts <alerts@chatbox.test>")
            .env("SMTP_TLS", "none")
            .env("ADMIN_EMAILS", "ops@example.com")
            .env("ADMIN_PANEL_URL", PANEL)
            .env("PUBLIC_RATE_LIMIT", "1000"),
    )
    .await;
    let mut user = server.connect(&server.token("needy-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "needy-1", "Nothing works.").await;

    ask_for_help(&mut user, &session).await;
    let (raw, envelope) = sink.message(1).await;
    assert_eq!(envelope["mail_from"], "alerts@chatbox.test", "{envelope}");
    assert_eq!(envelope["rcpt_tos"], json!(["ops@example.com"]), "{envelope}");
    let email = MessageParser::default().parse(&raw).expect("a parsable email");
    assert_eq!(email.subject(), Some("Help Request - User needy-user"));
    let to: Vec<_> = email.to().expect("To").iter().filter_map(|a| a.address()).collect();
    assert_eq!(to, ["ops@example.com"]);
    let text = email.body_text(0).expect("a text part");
    let prefix = format!("Help Request - User: needy-user, Session: {session}, Time: ");
    let time = text.trim_end().strip_prefix(&prefix).unwrap_or_else(|| panic!("text: {text}"));
    let parsed = chrono::DateTime::parse_from_rfc3339(time).expect("an RFC 3339 time");
    let age = chrono::Utc::now().signed_duration_since(parsed);
    assert!(age.num_seconds().abs() < 60, "the alert's time is now: {time}");
    let html = email.body_html(0).expect("an HTML part");
    assert!(html.contains(&format!("<a href=\"{PANEL}/{session}\">")), "link in {html}");
    assert!(html.contains("needy-user") && html.contains(&session), "{html}");

    // Five more requests: all acknowledged, only four more alerts (5 per session per window).
    for _ in 0..5 {
        ask_for_help(&mut user, &session).await;
    }
    assert!(
        server.wait_for_log("help alert skipped: alert rate limit", STEP).await,
        "the sixth alert is rate limited\n{}",
        server.tail()
    );
    for n in 2..=5 {
        let (raw, _) = sink.message(n).await;
        let email = MessageParser::default().parse(&raw).expect("a parsable email");
        assert_eq!(email.subject(), Some("Help Request - User needy-user"), "message {n}");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(sink.count(), 5, "at most five emails per session and window");

    let metrics = get(&server, "/metrics/prometheus", None).await;
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .body
            .lines()
            .any(|l| l == "chatbox_ratelimit_blocked_total{limiter=\"help_alert\"} 1"),
        "the skipped alert is counted:\n{}",
        metrics.body
    );
}

#[tokio::test]
async fn help_request_posts_the_webhook_event() {
    let hooks = WebhookRecorder::start().await;
    let upstream = Upstream::start().await;
    let server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("ALERT_WEBHOOK_URL", &hooks.url())
            .env("ADMIN_PANEL_URL", &format!("{PANEL}/")),
    )
    .await;
    let mut user = server.connect(&server.token("hook-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "hook-1", "Please call a human.").await;

    ask_for_help(&mut user, &session).await;
    assert!(hooks.wait_for(1, STEP).await, "the webhook is called\n{}", server.tail());
    let hook = hooks.hooks().remove(0);
    assert!(hook.head.starts_with("POST /hooks/chatbox HTTP/1.1\r\n"), "{}", hook.head);
    assert!(
        hook.head.to_ascii_lowercase().contains("content-type: application/json"),
        "{}",
        hook.head
    );
    let time = hook.body["time"].as_str().expect("time").to_string();
    assert!(chrono::DateTime::parse_from_rfc3339(&time).is_ok(), "{time}");
    assert_eq!(
        hook.body,
        json!({"event": "help_request", "user_id": "hook-user", "session_id": session,
               "time": time, "admin_panel_url": format!("{PANEL}/{session}")}),
        "one trailing `/` of ADMIN_PANEL_URL is dropped"
    );

    // Someone else's session: refused, and nobody is alerted.
    let mut other = server.connect(&server.token("other-user", &["user"], None)).await;
    other
        .send_json(&json!({"type": "help_request", "session_id": session, "sender": "user"}))
        .await;
    let refused = other.recv_frame(STEP).await;
    assert_error(&refused, "SERVICE_ERROR", "Failed to establish session connection");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hooks.hooks().len(), 1, "no alert for a refused request");
}
