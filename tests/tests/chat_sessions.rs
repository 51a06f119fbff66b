#![cfg(not(madsim))]
//! Sessions through the real binary (PROTOCOL.md §3.5, §3.7, §6, §10 items 4, 10, 11, 13, 23):
//! reconnecting to a session, the reconnect window after an idle end (and never after an explicit
//! end, issue 16), the end of a session's
//! life in memory, fan-out to every connection bound to a session, and error frames that reach
//! the sender even without a bound session.

use std::time::Duration;

use chatbox_tests::e2e::chat;
use chatbox_tests::harness::{assert_error, is_done, reply_text, Server, ServerOpts};
use chatbox_tests::http::{get, ok_json, post};
use chatbox_tests::upstream::{Behaviour, Script, Upstream};
use serde_json::{json, Value};

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);

/// The `session_id`s of the `connection_status` frames among `frames`, in order.
fn announced(frames: &[Value]) -> Vec<String> {
    frames
        .iter()
        .filter(|f| f["type"] == "connection_status")
        .filter_map(|f| f["session_id"].as_str().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn reconnect_with_the_session_id_continues_the_session() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("reconnect-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let (session, _) = chat(&mut client, "reconnect-1", "Remember me").await;
    client.close().await;

    let mut client = server.connect(&token).await;
    let (again, frames) = chat(&mut client, &session, "Still there?").await;
    assert_eq!(again, session, "same session after reconnecting");
    assert_eq!(announced(&frames), vec![session.clone()], "bound to S, no other id: {frames:#?}");
    assert!(frames.iter().all(|f| f["session_id"] == session.as_str()), "{frames:#?}");
    let history = &upstream.last_request().expect("request").body["messages"];
    assert_eq!(history.as_array().map(Vec::len), Some(3), "the conversation continues: {history}");
}

/// Session timings for the expiry tests: idle end after 1 s, swept every 200 ms.
fn expiry_opts(upstream: &Upstream, window: &str) -> ServerOpts {
    ServerOpts::with_upstream(upstream)
        .env("SESSION_IDLE_TIMEOUT", "1s")
        .env("SESSION_CLEANUP_INTERVAL", "200ms")
        .env("RECONNECT_TIMEOUT", window)
        .env("SESSION_TTL", window)
}

#[tokio::test]
async fn idle_ended_session_resumes_within_the_reconnect_window() {
    let upstream = Upstream::start().await;
    let server = Server::start(expiry_opts(&upstream, "3s")).await;
    let token = server.token("resume-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let (session, _) = chat(&mut client, "resume-1", "Hello").await;
    client.close().await;
    assert!(
        server.wait_for_log("session ended after inactivity", STEP).await,
        "the idle session is ended by the sweeper\n{}",
        server.tail()
    );
    let mut client = server.connect(&token).await;
    let (again, frames) = chat(&mut client, &session, "Back again").await;
    assert_eq!(again, session, "resumed within RECONNECT_TIMEOUT (§10 item 4): {frames:#?}");
    assert_eq!(announced(&frames), vec![session]);
}

/// Issue 16: a session ended through `POST {P}/sessions/:id/end` is final. The next message on
/// the same open socket — well within the reconnect window — starts a new session, announced
/// with its new id (§6.2), and the ended one stays ended with its conversation closed.
#[tokio::test]
async fn an_explicitly_ended_session_is_never_revived() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("end-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let (session, _) = chat(&mut client, "end-1", "Before the end").await;

    let end = post(&server, &format!("/sessions/{session}/end"), Some(&token)).await;
    assert_eq!(ok_json(&end), json!({"status": "ended"}));

    let (fresh, frames) = chat(&mut client, &session, "After the end").await;
    assert_ne!(fresh, session, "a new session, not the ended one: {frames:#?}");
    assert_eq!(announced(&frames).last(), Some(&fresh), "the new id is announced: {frames:#?}");
    let history = &upstream.last_request().expect("request").body["messages"];
    assert_eq!(
        history,
        &json!([{"role": "user", "content": "After the end"}]),
        "the new session starts a new conversation"
    );
    let list = ok_json(&get(&server, "/sessions", Some(&token)).await);
    let active = |id: &str| {
        let items = list["sessions"].as_array().expect("sessions");
        let item = items.iter().find(|s| s["id"] == id).unwrap_or_else(|| panic!("{id}: {list}"));
        item["is_active"].as_bool().expect("is_active")
    };
    assert!(!active(&session), "the ended session stays ended: {list}");
    assert!(active(&fresh), "{list}");
}

/// Issue 16: the end's cause is stored with the session, so an explicit end stays final after a
/// restart (the session is loaded from the store, not remembered), while a session that ended
/// idle is still resumed within the reconnect window.
#[tokio::test]
async fn an_explicit_end_stays_final_after_a_restart_and_an_idle_end_still_resumes() {
    let upstream = Upstream::start().await;
    let server = Server::start(expiry_opts(&upstream, "5m")).await;
    let (final_token, idle_token) =
        (server.token("final-user", &["user"], None), server.token("idle-user", &["user"], None));
    let mut ending = server.connect(&final_token).await;
    let (ended, _) = chat(&mut ending, "final-1", "Before the end").await;
    let end = post(&server, &format!("/sessions/{ended}/end"), Some(&final_token)).await;
    assert_eq!(ok_json(&end), json!({"status": "ended"}));
    let mut idling = server.connect(&idle_token).await;
    let (idled, _) = chat(&mut idling, "idle-1", "Before the pause").await;
    idling.close().await;
    assert!(
        server.wait_for_log("session ended after inactivity", STEP).await,
        "the idle session is ended by the sweeper\n{}",
        server.tail()
    );

    let server = server.restart().await;
    let mut ending = server.connect(&final_token).await;
    let (fresh, frames) = chat(&mut ending, &ended, "After the restart").await;
    assert_ne!(fresh, ended, "the explicitly ended session is not revived: {frames:#?}");
    assert_eq!(announced(&frames).last(), Some(&fresh), "the new id is announced: {frames:#?}");
    let mut idling = server.connect(&idle_token).await;
    let (again, frames) = chat(&mut idling, &idled, "Back after the restart").await;
    assert_eq!(again, idled, "an idle end resumes within RECONNECT_TIMEOUT: {frames:#?}");
}

#[tokio::test]
async fn expired_session_is_replaced_by_a_new_one_on_reconnect() {
    let upstream = Upstream::start().await;
    let server = Server::start(expiry_opts(&upstream, "1s")).await;
    let token = server.token("expire-user", &["user"], None);
    let mut client = server.connect(&token).await;
    let (session, _) = chat(&mut client, "expire-1", "Hello").await;
    client.close().await;
    // Ended after 1 s idle, then dropped from memory 1 s (SESSION_TTL) after its end.
    assert!(
        server.wait_for_log("session ended after inactivity", STEP).await,
        "the idle session is ended\n{}",
        server.tail()
    );
    assert!(
        server.wait_for_log("expired sessions dropped from memory", STEP).await,
        "the ended session leaves memory after SESSION_TTL\n{}",
        server.tail()
    );
    let mut client = server.connect(&token).await;
    let (fresh, frames) = chat(&mut client, &session, "Anyone?").await;
    assert_ne!(fresh, session, "a new session replaces the expired one: {frames:#?}");
    let ids = announced(&frames);
    assert_eq!(ids.last(), Some(&fresh), "the new id is announced: {frames:#?}");
    assert!(frames
        .iter()
        .skip_while(|f| f["type"] != "loading")
        .all(|f| f["session_id"] == fresh.as_str()));
    let history = &upstream.last_request().expect("request").body["messages"];
    assert_eq!(
        history,
        &json!([{"role": "user", "content": "Anyone?"}]),
        "the new session starts a new conversation"
    );
}

/// The reply frames (`loading`, chunks, done) among `frames`.
fn reply_frames(frames: &[Value]) -> Vec<Value> {
    frames
        .iter()
        .filter(|f| f["type"] == "loading" || f["type"] == "ai_response")
        .map(|f| {
            let mut f = f.clone();
            f.as_object_mut().map(|o| o.remove("timestamp"));
            f
        })
        .collect()
}

#[tokio::test]
async fn two_connections_of_a_session_both_receive_the_stream() {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["Shared ", "reply"]));
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("fanout-user", &["user"], None);
    let mut one = server.connect(&token).await;
    let (session, _) = chat(&mut one, "fanout-1", "Hello").await;

    // The second connection binds by sending on the session; both get the reply.
    let mut two = server.connect(&token).await;
    let (again, sent) = chat(&mut two, &session, "From the second tab").await;
    assert_eq!(again, session);
    assert_eq!(announced(&sent), vec![session.clone()]);
    let seen = one.recv_reply(STEP).await;
    assert_eq!(reply_frames(&seen), reply_frames(&sent), "the first tab sees the same reply");
    assert_eq!(reply_text(&seen), "Shared reply");

    // And the other way round.
    let (_, sent) = chat(&mut one, &session, "From the first tab").await;
    let seen = two.recv_reply(STEP).await;
    assert_eq!(reply_frames(&seen), reply_frames(&sent), "the second tab sees the same reply");
    one.expect_silence(Duration::from_millis(200)).await;
    two.expect_silence(Duration::from_millis(200)).await;
}

#[tokio::test]
async fn errors_without_a_bound_session_reach_the_sender() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let mut client = server.connect(&server.token("errors-user", &["user"], None)).await;

    client.send_json(&json!({"type": "user_message", "content": "x"})).await;
    let error = client.recv_frame(STEP).await;
    assert_error(&error, "MISSING_FIELD", "Required field missing: session_id");
    assert!(error.get("session_id").is_none(), "{error}");

    client.send_json(&json!({"type": "ping"})).await;
    let error = client.recv_frame(STEP).await;
    assert_error(&error, "INVALID_FORMAT", "Message validation failed");
    assert!(error.get("session_id").is_none(), "{error}");

    client.send_text("{not json").await;
    let error = client.recv_frame(STEP).await;
    assert_error(&error, "INVALID_FORMAT", "Invalid message format");
    assert!(error.get("session_id").is_none(), "{error}");

    client.expect_silence(Duration::from_millis(200)).await;
    assert_eq!(upstream.request_count(), 0);
}

#[tokio::test]
async fn frame_for_another_users_session_is_refused_and_leaves_the_connection_unbound() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let mut owner = server.connect(&server.token("owner", &["user"], None)).await;
    let (owned, _) = chat(&mut owner, "owner-1", "Mine").await;

    let mut intruder = server.connect(&server.token("intruder", &["user"], None)).await;
    intruder.send_user_message(&owned, "Let me in").await;
    let error = intruder.recv_frame(STEP).await;
    assert_error(&error, "SERVICE_ERROR", "Failed to establish session connection");
    assert_eq!(error["session_id"], owned.as_str(), "the requested id is echoed: {error}");
    intruder.expect_silence(Duration::from_millis(200)).await;

    // Unbound: its next error goes to itself, not to the owner (§10 item 13)…
    intruder.send_json(&json!({"type": "typing_indicator", "session_id": owned})).await;
    let error = intruder.recv_frame(STEP).await;
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["code"], "SERVICE_ERROR", "still refused: {error}");
    // …and a frame with its own id binds it.
    let (mine, frames) = chat(&mut intruder, "intruder-1", "My own chat").await;
    assert_ne!(mine, owned);
    assert_eq!(announced(&frames).last(), Some(&mine), "{frames:#?}");
    assert!(
        announced(&frames).iter().all(|id| *id != owned),
        "never bound to the foreign session: {frames:#?}"
    );
    owner.expect_silence(Duration::from_millis(300)).await;
    assert_eq!(upstream.request_count(), 2, "the refused message was not answered");
}

#[tokio::test]
async fn users_proposing_the_same_new_id_do_not_wait_for_each_other() {
    let upstream = Upstream::start().await;
    // The first request (user A) stalls before its first chunk; the second (user B) answers.
    upstream.push_script(Script::reply(["never"]).with_behaviour(Behaviour::StallBeforeFirst));
    upstream.push_script(Script::reply(["Hi B"]));
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let mut a = server.connect(&server.token("same-id-a", &["user"], None)).await;
    let mut b = server.connect(&server.token("same-id-b", &["user"], None)).await;
    // Both clients propose the same fresh id (e.g. a constant placeholder of a client).
    a.send_user_message("new-chat", "Hello from A").await;
    a.recv_until(|f| f["type"] == "loading", STEP).await;
    b.send_user_message("new-chat", "Hello from B").await;
    let frames = b.recv_reply(STEP).await;
    assert!(is_done(frames.last().expect("outcome")), "B is answered at once: {frames:#?}");
    assert_eq!(reply_text(&frames), "Hi B");
}
