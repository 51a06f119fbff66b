#![cfg(not(madsim))]
//! Limits through the real binary (PROTOCOL.md §3.1, §3.2, §3.12, §5, §10 items 12, 16): the
//! per-user message rate, the per-user connection cap (with the notification to the open
//! connections, no slot leaked by failed upgrades, a slot freed by a close), the inbound message
//! size (close 1009), the WebSocket protocol itself (close 1002, RFC 6455 §7.1.7) and the
//! per-connection in-flight cap.

use std::time::Duration;

use chatbox_tests::harness::{assert_error, is_done, Refused, Server, ServerOpts};
use chatbox_tests::upstream::{Script, Upstream};
use serde_json::json;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data as OpData, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::Frame;

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);

const LIMIT_NOTIFICATION: &str = "Connection limit reached. You have reached the maximum number \
    of simultaneous connections. Close an existing connection to open a new one.";

#[tokio::test]
async fn fourth_message_over_the_rate_limit_is_too_many_requests() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream).env("RATE_LIMIT", "3")).await;
    let mut client = server.connect(&server.token("rate-user", &["user"], None)).await;
    let mut session = "rate-1".to_string();
    for i in 0..3 {
        client.send_user_message(&session, &format!("message {i}")).await;
        let frames = client.recv_reply(STEP).await;
        let done = frames.last().expect("outcome");
        assert!(is_done(done), "message {i} is answered: {frames:#?}");
        session = done["session_id"].as_str().expect("session").to_string();
    }
    client.send_user_message(&session, "one too many").await;
    let refused = client.recv_frame(STEP).await;
    assert_error(&refused, "TOO_MANY_REQUESTS", "Too many requests, please slow down");
    assert_eq!(refused["session_id"], session.as_str(), "{refused}");
    let retry_after = refused["error"]["retry_after"].as_u64().expect("retry_after in ms");
    // The bucketed window (core::rate, 3 s buckets for 60 s) may add less than one bucket.
    assert!(retry_after > 0 && retry_after < 63_000, "retry_after {retry_after} ms");
    client.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(upstream.request_count(), 3, "the refused message is not answered");
}

#[tokio::test]
async fn messages_refused_for_a_missing_session_id_use_no_rate_budget() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream).env("RATE_LIMIT", "2")).await;
    let mut client = server.connect(&server.token("budget-user", &["user"], None)).await;
    for _ in 0..3 {
        client
            .send_json(&serde_json::json!({"type": "user_message", "content": "no session"}))
            .await;
        let refused = client.recv_frame(STEP).await;
        assert_error(&refused, "MISSING_FIELD", "Required field missing: session_id");
    }
    // The whole budget of two is still there.
    let mut session = "budget-1".to_string();
    for i in 0..2 {
        client.send_user_message(&session, &format!("counted {i}")).await;
        let frames = client.recv_reply(STEP).await;
        let done = frames.last().expect("outcome");
        assert!(is_done(done), "message {i} is answered, not rate limited: {frames:#?}");
        session = done["session_id"].as_str().expect("session").to_string();
    }
    client.send_user_message(&session, "third").await;
    let refused = client.recv_frame(STEP).await;
    assert_error(&refused, "TOO_MANY_REQUESTS", "Too many requests, please slow down");
}

#[tokio::test]
async fn connection_cap_refuses_with_429_and_notifies_open_connections() {
    let upstream = Upstream::start().await;
    let server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("MAX_CONNECTIONS", "2")
            .env("WS_ALLOWED_ORIGINS", "https://app.example"),
    )
    .await;
    let token = server.token("cap-user", &["user"], None);
    let header = format!("Bearer {token}");
    let auth = ("Authorization", header.as_str());
    let good_origin = ("Origin", "https://app.example");

    // Failed upgrades with a valid token do not keep a slot (§10 item 12).
    for _ in 0..5 {
        let answer = server.ws_handshake(None, &[auth, ("Origin", "https://evil.example")]).await;
        assert_eq!(answer.status, 403, "{answer:?}");
    }
    for _ in 0..5 {
        let answer =
            server.http_get("/chatbox/ws", &[auth, good_origin, ("Connection", "Upgrade")]).await;
        assert_eq!(answer.status, 400, "no Upgrade/Sec-WebSocket-Key headers: {answer:?}");
    }
    let mut first = server.try_connect(None, &[auth, good_origin]).await.expect("first slot");
    let mut second = server.try_connect(None, &[auth, good_origin]).await.expect("second slot");

    // The third is refused, and both open connections are told.
    let third = server.ws_handshake(None, &[auth, good_origin]).await;
    third.assert_plain(429, "Connection limit exceeded, please try again later");
    assert!(third.header("retry-after").is_none(), "no Retry-After: {third:?}");
    for client in [&mut first, &mut second] {
        let note = client.recv_frame(STEP).await;
        assert_eq!(note["type"], "notification", "{note}");
        assert_eq!(note["sender"], "system", "{note}");
        assert_eq!(note["content"], LIMIT_NOTIFICATION, "{note}");
        assert!(note["timestamp"].is_string(), "{note}");
        assert!(note.get("session_id").is_none(), "{note}");
    }
    // Another user is not affected by this user's cap.
    let other = server.token("cap-other", &["user"], None);
    let other_header = format!("Bearer {other}");
    server
        .try_connect(None, &[("Authorization", &other_header), good_origin])
        .await
        .expect("another user connects");

    // Closing one frees its slot. The server releases it right after the socket closes, so
    // allow a short bounded window for that instead of a fixed sleep.
    first.close().await;
    let deadline = chatbox_tests::harness::now() + Duration::from_secs(2);
    let _replacement = loop {
        match server.try_connect(None, &[auth, good_origin]).await {
            Ok(client) => break client,
            Err(Refused::Http { status: 429, .. }) if chatbox_tests::harness::now() < deadline => {
                let _ = second.try_recv_frame(Duration::from_millis(20)).await;
            }
            Err(refused) => panic!("the freed slot is reusable: {refused:?}"),
        }
    };
}

#[tokio::test]
async fn oversized_message_closes_with_1009() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("MAX_MESSAGE_SIZE", "1024")).await;
    let mut client = server.connect(&server.token("size-user", &["user"], None)).await;

    // Just under the limit: processed (an unknown type, so a validation error comes back).
    let small = json!({"type": "ping", "pad": "x".repeat(900)}).to_string();
    assert!(small.len() < 1024);
    client.send_text(&small).await;
    let answer = client.recv_frame(STEP).await;
    assert_error(&answer, "INVALID_FORMAT", "Message validation failed");

    let big = json!({"type": "user_message", "session_id": "s", "content": "y".repeat(2000)});
    let big = big.to_string();
    assert!(big.len() > 2000);
    client.send_text(&big).await;
    let close = client.expect_close(STEP).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1009, "{close:?}");
    assert_eq!(upstream.request_count(), 0, "the oversized message was not processed");
}

#[tokio::test]
async fn a_text_message_that_is_not_utf8_closes_with_1007_and_a_client_close_is_answered() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("utf8-user", &["user"], None);

    let mut client = server.connect(&token).await;
    client
        .send_frame(Frame::message(vec![0xff, 0xfe, b'{'], OpCode::Data(OpData::Text), true))
        .await;
    let close = client.expect_close(STEP).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1007, "{close:?}");

    // The client closes first: the server answers the close handshake (a browser would
    // otherwise see 1006, an abnormal closure).
    let client = server.connect(&token).await;
    let answer = client.close_handshake(1000, "bye", STEP).await.expect("the server's close");
    assert_eq!(u16::from(answer.code), 1000, "{answer:?}");
}

#[tokio::test]
async fn frames_breaking_the_websocket_protocol_close_with_1002() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("protocol-user", &["user"], None);

    // Reserved bits set without a negotiated extension (RFC 6455 §5.2).
    let mut client = server.connect(&token).await;
    let mut frame = Frame::message("{\"type\":\"ping\"}", OpCode::Data(OpData::Text), true);
    frame.header_mut().rsv1 = true;
    client.send_frame(frame).await;
    let close = client.expect_close(STEP).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1002, "{close:?}");

    // A reserved opcode (RFC 6455 §5.2: the connection must fail).
    let mut client = server.connect(&token).await;
    client.send_frame(Frame::message("x", OpCode::Data(OpData::Reserved(3)), true)).await;
    let close = client.expect_close(STEP).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1002, "{close:?}");
    assert_eq!(upstream.request_count(), 0, "nothing reached the model");
}

#[tokio::test]
async fn fourth_message_in_flight_is_refused_as_busy() {
    let upstream = Upstream::start().await;
    upstream
        .set_default(Script::reply(["slow"]).with_first_chunk_delay(Duration::from_millis(500)));
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let mut client = server.connect(&server.token("busy-user", &["user"], None)).await;
    for i in 0..4 {
        client.send_user_message("busy-1", &format!("quick {i}")).await;
    }
    let mut dones = 0;
    let mut busy = Vec::new();
    let mut before_first_done = false;
    let frames = client
        .recv_until(
            |f| {
                if f["type"] == "error" {
                    busy.push(f.clone());
                    before_first_done = dones == 0;
                }
                if is_done(f) {
                    dones += 1;
                }
                dones == 3
            },
            Duration::from_secs(8),
        )
        .await;
    assert_eq!(busy.len(), 1, "exactly one refusal: {frames:#?}");
    assert_error(&busy[0], "SERVICE_ERROR", "Server busy \u{2014} please retry");
    assert!(busy[0].get("session_id").is_none(), "no session_id (§3.2): {}", busy[0]);
    assert!(before_first_done, "refused at once, not after a reply: {frames:#?}");
    client.expect_silence(Duration::from_millis(700)).await;
    assert_eq!(upstream.request_count(), 3, "three replies, the fourth never reached upstream");
}
