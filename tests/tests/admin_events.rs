#![cfg(not(madsim))]
//! The admin consoles' live events over HTTP (issue 15), `GET {P}/admin/events` on the real
//! binary: server-sent events behind the admin gate, opening with `ready`, then a session's
//! start, its messages, a help request (within 2 s), a takeover, a leave and the end, each
//! named by its `type` with the documented JSON. The same across two instances is in `fleet.rs`.

use std::time::Duration;

use chatbox_tests::e2e::chat;
use chatbox_tests::events::EventStream;
use chatbox_tests::harness::{Server, ServerOpts};
use chatbox_tests::http::post;
use chatbox_tests::upstream::Upstream;
use serde_json::json;

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);
/// The bound for a help request to reach every console.
const LIVE: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_console_learns_of_sessions_messages_help_takeovers_leaves_and_ends_live() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let admin = server.token("ann", &["admin"], Some("Ann Admin"));
    let mut events = EventStream::open(server.addr(), &admin).await;
    assert_eq!(events.status, 200);
    assert!(events.content_type.starts_with("text/event-stream"), "{}", events.content_type);
    let ready = events.until("ready", STEP).await;
    assert_eq!(ready.len(), 1, "ready comes first: {ready:#?}");

    let user_token = server.token("live-user", &["user"], None);
    let mut user = server.connect(&user_token).await;
    let (session, _) = chat(&mut user, "live-1", "Hello there").await;
    let seen = events.until("message", STEP).await;
    let started = &seen[0];
    assert_eq!(started.name, "session_started", "{seen:#?}");
    assert_eq!(started.data["session_id"], session.as_str());
    assert_eq!(started.data["user_id"], "live-user");
    let message = &seen.last().expect("message").data;
    assert_eq!(message["type"], "message");
    assert_eq!(message["sender"], "user");
    assert_eq!(message["session_id"], session.as_str());
    assert!(message["timestamp"].is_string(), "{message}");
    let reply = events.until("message", STEP).await;
    assert_eq!(reply.last().expect("the reply").data["sender"], "ai", "{reply:#?}");

    user.send_json(&json!({"type": "help_request", "session_id": session})).await;
    let help = events.until("help_requested", LIVE).await;
    let help = &help.last().expect("help").data;
    assert_eq!(help["session_id"], session.as_str());
    assert_eq!(help["user_id"], "live-user");

    let taken = post(&server, &format!("/admin/takeover/{session}"), Some(&admin)).await;
    assert_eq!(taken.status, 200, "{taken:?}");
    let joined = events.until("admin_joined", STEP).await;
    let joined = &joined.last().expect("joined").data;
    assert_eq!(joined["admin_id"], "ann");
    assert_eq!(joined["admin_name"], "Ann Admin");
    let left = post(&server, &format!("/admin/leave/{session}"), Some(&admin)).await;
    assert_eq!(left.status, 200, "{left:?}");
    let left = events.until("admin_left", STEP).await;
    assert_eq!(left.last().expect("left").data["session_id"], session.as_str());

    let ended = post(&server, &format!("/sessions/{session}/end"), Some(&user_token)).await;
    assert_eq!(ended.status, 200, "{ended:?}");
    let ended = events.until("session_ended", STEP).await;
    assert_eq!(ended.last().expect("ended").data["session_id"], session.as_str());
}

#[tokio::test]
async fn the_event_stream_is_for_administrators_only() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let user = server.token("plain-user", &["user"], None);
    assert_eq!(EventStream::open(server.addr(), &user).await.status, 403);
    assert_eq!(EventStream::open(server.addr(), "not-a-token").await.status, 401);
    let chat_admin = server.token("helper", &["chat_admin"], None);
    let mut events = EventStream::open(server.addr(), &chat_admin).await;
    assert_eq!(events.status, 200);
    events.until("ready", STEP).await;
}
