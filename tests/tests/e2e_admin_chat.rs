#![cfg(not(madsim))]
//! Admin chat end to end through the real binary (PROTOCOL.md §3.7, §3.9, §4.8, §6.8 with §10
//! items 2 and 3): after `POST {P}/admin/takeover/S` the assisting admin binds a WebSocket to
//! the session and both sides talk — the admin's `user_message` reaches the user with
//! `sender:"admin"` (and is stored as `admin`), the user's messages reach the admin with
//! `sender:"user"`; the AI pauses while assisted (`PAUSE_AI_WHEN_ASSISTED`, default on) or keeps
//! answering both when the pause is off; `admin_leave` over the WebSocket hands the session back
//! to the AI. Another admin can neither take over nor bind while the session is assisted.

use std::time::Duration;

use chatbox_tests::e2e::{chat, stored_messages, without_timestamp, STEP};
use chatbox_tests::harness::{assert_error, is_done, reply_text, Client, Server, ServerOpts};
use chatbox_tests::http::{assert_bad_request, ok_json, post};
use chatbox_tests::upstream::Upstream;
use serde_json::{json, Value};

/// How long "nothing more arrives" is watched.
const SILENCE: Duration = Duration::from_millis(500);

/// A user with a live session (one AI exchange) and the admin that took it over (`Jane Admin`,
/// `admin-1`), whose WebSocket is bound to the session.
struct Assisted {
    server: Server,
    user: Client,
    admin: Client,
    session: String,
}

/// Starts a server with `opts` (an echoing upstream), lets `user-1` chat once, takes the session over as
/// `admin-1` and binds the admin's WebSocket to it with a frame that has no handler.
async fn assisted(opts: ServerOpts) -> Assisted {
    let server = Server::start(opts.env("ADMIN_RATE_LIMIT", "1000")).await;
    let mut user = server.connect(&server.token("user-1", &["user"], None)).await;
    let (session, frames) = chat(&mut user, "user-1-first", "Hello, I need help.").await;
    assert_eq!(reply_text(&frames), "Hello, I need help.", "the echo upstream answered");

    let jane = server.token("admin-1", &["admin"], Some("Jane Admin"));
    let taken = ok_json(&post(&server, &format!("/admin/takeover/{session}"), Some(&jane)).await);
    assert_eq!(
        taken,
        json!({"message": "Takeover initiated successfully", "session_id": session,
               "admin_id": "admin-1"})
    );
    let join = user.recv_frame(STEP).await;
    assert_eq!(
        without_timestamp(&join),
        json!({"type": "admin_join", "session_id": session, "sender": "admin",
               "content": "Administrator Jane Admin has joined the session",
               "metadata": {"admin_id": "admin-1", "admin_name": "Jane Admin"}})
    );

    // Any validated frame naming the session binds the admin's connection (§3.7): first the
    // binding's `connection_status`, then the handler's answer (this type has none, §3.8).
    let mut admin = server.connect(&jane).await;
    admin
        .send_json(&json!({"type": "typing_indicator", "session_id": session, "sender": "admin"}))
        .await;
    let bound = admin.recv_frame(STEP).await;
    assert_eq!(bound["type"], "connection_status", "{bound}");
    assert_eq!(bound["session_id"], session.as_str(), "{bound}");
    assert_eq!(bound["sender"], "system", "{bound}");
    let unknown = admin.recv_frame(STEP).await;
    assert_error(
        &unknown,
        "INVALID_FORMAT",
        "Invalid message format: unknown message type typing_indicator",
    );
    user.expect_silence(Duration::from_millis(100)).await;
    Assisted { server, user, admin, session }
}

/// The admin's next frame that is not the echo of its own message, i.e. the relay of the
/// user's line.
async fn next_from_user(admin: &mut Client) -> Value {
    admin
        .recv_until(|f| f["type"] == "user_message" && f["sender"] == "user", STEP)
        .await
        .pop()
        .expect("a relayed user message")
}

/// `(sender, content)` of every stored message of `session`, as its owner reads it.
async fn stored(server: &Server, owner: &str, session: &str) -> Vec<(String, String)> {
    stored_messages(server, &server.token(owner, &["user"], None), session).await
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected.iter().map(|(s, c)| (s.to_string(), c.to_string())).collect()
}

#[tokio::test]
async fn admin_and_user_chat_both_ways_while_the_ai_pauses_then_leave_resumes_it() {
    let upstream = Upstream::start().await;
    let Assisted { server, mut user, mut admin, session } =
        assisted(ServerOpts::with_upstream(&upstream)).await;

    // Admin → user, with `sender:"admin"`.
    admin.send_user_message(&session, "Hi, this is Jane from support.").await;
    let relayed = user.recv_frame(STEP).await;
    assert_eq!(
        without_timestamp(&relayed),
        json!({"type": "user_message", "session_id": session, "sender": "admin",
               "content": "Hi, this is Jane from support."})
    );

    // User → admin, with `sender:"user"`; the AI stays silent (PAUSE_AI_WHEN_ASSISTED default).
    let requests_before = upstream.request_count();
    user.send_user_message(&session, "My invoice is wrong.").await;
    let from_user = next_from_user(&mut admin).await;
    assert_eq!(
        without_timestamp(&from_user),
        json!({"type": "user_message", "session_id": session, "sender": "user",
               "content": "My invoice is wrong."})
    );
    user.expect_silence(SILENCE).await;
    admin.expect_silence(Duration::from_millis(100)).await;
    assert_eq!(upstream.request_count(), requests_before, "no LLM call while assisted");

    // Another admin can neither take over nor bind to the assisted session.
    let max = server.token("admin-2", &["chat_admin"], Some("Max"));
    assert_bad_request(
        &post(&server, &format!("/admin/takeover/{session}"), Some(&max)).await,
        "session already assisted by another admin: Jane Admin (admin-1)",
    );
    let mut intruder = server.connect(&max).await;
    intruder.send_user_message(&session, "Let me see that").await;
    let refused = intruder.recv_frame(STEP).await;
    assert_error(&refused, "SERVICE_ERROR", "Failed to establish session connection");
    assert_eq!(refused["session_id"], session.as_str(), "{refused}");
    intruder.expect_silence(Duration::from_millis(200)).await;
    user.expect_silence(Duration::from_millis(100)).await;

    // Stored: the admin's line with sender `admin`, in order (§10 item 2).
    assert_eq!(
        stored(&server, "user-1", &session).await,
        pairs(&[
            ("user", "Hello, I need help."),
            ("ai", "Hello, I need help."),
            ("admin", "Hi, this is Jane from support."),
            ("user", "My invoice is wrong."),
        ])
    );

    // `admin_leave` over the WebSocket (§10 item 3) → the user is told, the AI answers again.
    admin
        .send_json(&json!({"type": "admin_leave", "session_id": session, "sender": "admin"}))
        .await;
    let leave = user.recv_frame(STEP).await;
    assert_eq!(
        without_timestamp(&leave),
        json!({"type": "admin_leave", "session_id": session, "sender": "admin",
               "content": "Administrator Jane Admin has left the session",
               "metadata": {"admin_id": "admin-1", "admin_name": "Jane Admin"}})
    );
    let (after, frames) = chat(&mut user, &session, "Are you still there?").await;
    assert_eq!(after, session, "same session");
    assert_eq!(frames[0]["type"], "loading", "{frames:#?}");
    assert_eq!(reply_text(&frames), "Are you still there?");
    assert_eq!(upstream.request_count(), requests_before + 1);

    // Assistance is cleared: the other admin may take over now.
    let second = ok_json(&post(&server, &format!("/admin/takeover/{session}"), Some(&max)).await);
    assert_eq!(second["admin_id"], "admin-2");
}

#[tokio::test]
async fn with_the_pause_off_the_ai_reply_reaches_user_and_admin() {
    let upstream = Upstream::start().await;
    let opts = ServerOpts::with_upstream(&upstream).env("PAUSE_AI_WHEN_ASSISTED", "false");
    let Assisted { server, mut user, mut admin, session } = assisted(opts).await;

    let requests_before = upstream.request_count();
    user.send_user_message(&session, "Can the bot answer too?").await;
    let user_frames = user.recv_reply(STEP).await;
    assert!(is_done(user_frames.last().expect("outcome")), "{user_frames:#?}");
    assert_eq!(user_frames[0]["type"], "loading", "{user_frames:#?}");
    assert_eq!(reply_text(&user_frames), "Can the bot answer too?");
    assert!(
        user_frames.iter().all(|f| f["type"] != "user_message"),
        "the user's own line is not echoed: {user_frames:#?}"
    );

    // The admin sees the user's line and the same streamed reply.
    let admin_frames = admin.recv_reply(STEP).await;
    assert!(is_done(admin_frames.last().expect("outcome")), "{admin_frames:#?}");
    let relayed: Vec<&Value> =
        admin_frames.iter().filter(|f| f["type"] == "user_message").collect();
    assert_eq!(relayed.len(), 1, "{admin_frames:#?}");
    assert_eq!(
        without_timestamp(relayed[0]),
        json!({"type": "user_message", "session_id": session, "sender": "user",
               "content": "Can the bot answer too?"})
    );
    assert_eq!(reply_text(&admin_frames), "Can the bot answer too?");
    for frame in admin_frames.iter().filter(|f| f["type"] == "ai_response") {
        assert_eq!(frame["session_id"], session.as_str(), "{frame}");
        assert_eq!(frame["sender"], "ai", "{frame}");
    }
    assert_eq!(upstream.request_count(), requests_before + 1, "one LLM call for both");

    // The admin still writes to the user, and no AI reply follows an admin line.
    admin.send_user_message(&session, "I am watching as well.").await;
    let relayed = user.recv_frame(STEP).await;
    assert_eq!(relayed["sender"], "admin", "{relayed}");
    assert_eq!(relayed["content"], "I am watching as well.", "{relayed}");
    user.expect_silence(SILENCE).await;
    assert_eq!(upstream.request_count(), requests_before + 1, "admin lines are not answered");
    assert_eq!(
        stored(&server, "user-1", &session).await,
        pairs(&[
            ("user", "Hello, I need help."),
            ("ai", "Hello, I need help."),
            ("user", "Can the bot answer too?"),
            ("ai", "Can the bot answer too?"),
            ("admin", "I am watching as well."),
        ])
    );
}

#[tokio::test]
async fn an_admin_who_left_no_longer_receives_the_conversation() {
    let upstream = Upstream::start().await;
    let Assisted { server: _server, mut user, mut admin, session } =
        assisted(ServerOpts::with_upstream(&upstream)).await;

    admin
        .send_json(&json!({"type": "admin_leave", "session_id": session, "sender": "admin"}))
        .await;
    let leave = user.recv_frame(STEP).await;
    assert_eq!(leave["type"], "admin_leave", "{leave}");
    // The admin may see its own `admin_leave`; nothing after it.
    let _ = admin.recv_until(|f| f["type"] == "admin_leave", STEP).await;

    let (_, frames) = chat(&mut user, &session, "This is private again.").await;
    assert_eq!(reply_text(&frames), "This is private again.");
    if let Some(frame) = admin.try_recv_frame(SILENCE).await {
        panic!("the admin left, yet still receives the session's frames: {frame}");
    }
}
