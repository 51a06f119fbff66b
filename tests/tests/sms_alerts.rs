#![cfg(not(madsim))]
//! SMS help alerts end to end through the real binary (PROTOCOL.md §6.7, issue 17 item 4): a
//! user asks for help over a real WebSocket, and chatbox posts the original's SMS text to a
//! scripted Twilio-compatible API (`chatbox_tests::twilio`) with basic auth and the `To`, `From`,
//! `Body` form fields, retrying after 429 (honouring `Retry-After`) and 500 until the 201, and
//! not retrying an authentication failure.

use std::time::Duration;

use chatbox_tests::e2e::{chat, STEP};
use chatbox_tests::harness::{now, Client, Server, ServerOpts};
use chatbox_tests::twilio::{SmsRequest, TwilioFake};
use chatbox_tests::upstream::Upstream;
use serde_json::json;

const SID: &str = "AC0123456789abcdef";
const TOKEN: &str = "twilio-token-secret";
const FROM: &str = "+15550000";
const PHONE: &str = "+15550001";

async fn server(twilio: &TwilioFake, upstream: &Upstream, token: &str) -> Server {
    Server::start(
        ServerOpts::with_upstream(upstream)
            .env("SMS_ACCOUNT_SID", SID)
            .env("SMS_AUTH_TOKEN", token)
            .env("SMS_FROM_NUMBER", FROM)
            .env("SMS_API_BASE_URL", twilio.base_url())
            .env("ADMIN_PHONES", PHONE),
    )
    .await
}

async fn ask_for_help(client: &mut Client, session: &str) {
    client
        .send_json(&json!({"type": "help_request", "session_id": session, "sender": "user"}))
        .await;
    let ack = client.recv_frame(STEP).await;
    assert_eq!(ack["type"], "connection_status", "{ack}");
}

/// Waits until the fake API has seen `n` requests.
async fn requests(twilio: &TwilioFake, n: usize, within: Duration) -> Vec<SmsRequest> {
    let give_up = now() + within;
    loop {
        let seen = twilio.requests();
        if seen.len() >= n || now() > give_up {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn help_request_texts_the_admin_after_429_and_500() {
    let twilio = TwilioFake::start(SID, TOKEN).await;
    twilio.push_reply(429, Some("1"));
    twilio.push_reply(500, None);
    let upstream = Upstream::start().await;
    let server = server(&twilio, &upstream, TOKEN).await;
    let mut user = server.connect(&server.token("sms-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "sms-1", "Help me.").await;

    ask_for_help(&mut user, &session).await;
    let seen = requests(&twilio, 3, Duration::from_secs(20)).await;
    assert_eq!(seen.len(), 3, "429, 500, then 201: {seen:?}\n{}", server.tail());
    for request in &seen {
        assert_eq!(request.path, format!("/2010-04-01/Accounts/{SID}/Messages.json"));
        assert!(request.authorized, "basic auth sid:token");
        assert_eq!(request.form.get("To").map(String::as_str), Some(PHONE));
        assert_eq!(request.form.get("From").map(String::as_str), Some(FROM));
        assert_eq!(
            request.form.get("Body"),
            Some(&format!("Help Request - User sms-user needs assistance. Session: {session}"))
        );
    }
    assert!(server.wait_for_log("help alert texted", STEP).await, "{}", server.tail());
    assert!(!server.log_text().contains(TOKEN), "the token never reaches the log");
}

#[tokio::test]
async fn refused_credentials_are_not_retried() {
    let twilio = TwilioFake::start(SID, TOKEN).await;
    let upstream = Upstream::start().await;
    let server = server(&twilio, &upstream, "a-wrong-token").await;
    let mut user = server.connect(&server.token("sms-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "sms-2", "Help me.").await;

    ask_for_help(&mut user, &session).await;
    assert!(server.wait_for_log("help alert not delivered", STEP).await, "{}", server.tail());
    let seen = twilio.requests();
    assert_eq!(seen.len(), 1, "a 401 is final: {seen:?}");
    assert!(!seen[0].authorized);
    assert!(server.log_text().contains("HTTP 401"), "{}", server.tail());
}
