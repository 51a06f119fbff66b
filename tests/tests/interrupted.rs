#![cfg(not(madsim))]
//! Interrupted replies (issue 15) through the real binary and a scripted upstream: the `stop`
//! frame ends a slow reply at once — the provider request is cancelled, the text so far is
//! stored with `metadata.interrupted = "true"` (§4.2 body) and the stream ends with its `done`
//! frame marked `interrupted` —; a stop with nothing in flight is answered by nothing; a reply cut
//! by the idle deadline or by shutdown stores its partial text the same way. One
//! session's messages from two devices, one naming the id it proposed and one the id the server
//! named, are answered in arrival order, neither reply cut.

use std::time::Duration;

use chatbox_tests::harness::{assert_error, is_done, now, reply_text, Client, Server, ServerOpts};
use chatbox_tests::http::{get, ok_json};
use chatbox_tests::upstream::{Behaviour, Script, Upstream};
use serde_json::{json, Value};

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);

fn stop(session: &str) -> Value {
    json!({"type": "stop", "session_id": session, "timestamp": chrono::Utc::now().to_rfc3339()})
}

/// The stored messages of `session` (the §4.2 body's `messages`), read by its owner.
async fn stored(server: &Server, token: &str, session: &str) -> Vec<Value> {
    let body = ok_json(&get(server, &format!("/sessions/{session}"), Some(token)).await);
    body["messages"].as_array().expect("messages").clone()
}

/// The stored messages of `session` once its last one is the AI's: a cut reply's error frame
/// goes out as the reply ends, and its partial text is stored right after it.
async fn stored_reply(server: &Server, token: &str, session: &str) -> Vec<Value> {
    let deadline = now() + STEP;
    loop {
        let messages = stored(server, token, session).await;
        if messages.last().is_some_and(|m| m["sender"] == "ai") || now() > deadline {
            return messages;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn stop_ends_a_slow_reply_with_its_partial_text_stored_and_marked() {
    let upstream = Upstream::start().await;
    // Forty chunks 150 ms apart: about 6 s of streaming unless stopped.
    let chunks: Vec<String> = (0..40).map(|i| format!("part{i} ")).collect();
    upstream.set_default(Script::reply(chunks).with_chunk_interval(Duration::from_millis(150)));
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("stopper", &["user"], None);
    let mut client = server.connect(&token).await;
    client.send_user_message("stop-1", "Tell me a long story").await;
    let mut frames = client
        .recv_until(|f| f["type"] == "ai_response" && f["metadata"]["seq"] == "3", STEP)
        .await;
    let session = frames.last().expect("chunk")["session_id"].as_str().expect("id").to_string();

    client.send_json(&stop(&session)).await;
    frames.extend(client.recv_reply(STEP).await);
    let done = frames.last().expect("outcome");
    assert!(is_done(done), "the stream ends with its done frame: {frames:#?}");
    assert_eq!(done["metadata"]["interrupted"], "true", "{done}");
    assert_eq!(done["session_id"], session.as_str(), "{done}");
    let shown = reply_text(&frames);
    assert!(shown.starts_with("part0 part1 part2 "), "{shown}");
    assert!(!shown.contains("part39"), "stopped before the end: {shown}");
    client.expect_silence(Duration::from_millis(600)).await;

    let messages = stored(&server, &token, &session).await;
    let reply = messages.last().expect("the partial reply is stored");
    assert_eq!(reply["sender"], "ai", "{messages:#?}");
    assert_eq!(reply["content"], shown.as_str(), "exactly the text the user saw");
    assert_eq!(reply["metadata"]["interrupted"], "true", "{reply}");
    // The provider request was cancelled: the upstream saw its client go before the end.
    let deadline = now() + STEP;
    while upstream.abandoned_streams() == 0 && now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upstream.abandoned_streams(), 1, "the upstream stream was dropped");

    // Nothing in flight: a stop is answered by nothing, and the next message is answered.
    client.send_json(&stop(&session)).await;
    client.expect_silence(Duration::from_millis(500)).await;
    upstream.push_script(Script::reply(["Short ", "answer"]));
    client.send_user_message(&session, "And now briefly").await;
    let frames = client.recv_reply(STEP).await;
    let done = frames.last().expect("outcome");
    assert!(is_done(done), "{frames:#?}");
    assert!(done["metadata"].get("interrupted").is_none(), "a finished reply: {done}");
    let messages = stored(&server, &token, &session).await;
    let last = messages.last().expect("stored");
    assert_eq!(last["content"], "Short answer");
    assert!(last["metadata"].get("interrupted").is_none(), "not marked: {last}");
}

/// The frames of each reply in `frames`, by `metadata.reply_id`, in order of first appearance.
fn by_reply(frames: &[Value]) -> Vec<(String, Vec<Value>)> {
    let mut replies: Vec<(String, Vec<Value>)> = Vec::new();
    for frame in frames.iter().filter(|f| f["type"] == "ai_response") {
        let id = frame["metadata"]["reply_id"].as_str().unwrap_or_default().to_string();
        match replies.iter_mut().find(|(known, _)| *known == id) {
            Some((_, of_reply)) => of_reply.push(frame.clone()),
            None => replies.push((id, vec![frame.clone()])),
        }
    }
    replies
}

/// Reads `client` until `count` replies have ended (`done` or an error), within `limit`.
async fn recv_replies(client: &mut Client, count: usize) -> Vec<Value> {
    let mut frames = Vec::new();
    for _ in 0..count {
        frames.extend(client.recv_until(|f| is_done(f) || f["type"] == "error", 4 * STEP).await);
    }
    frames
}

#[tokio::test]
async fn a_second_device_s_message_waits_for_the_first_reply_and_neither_is_cut() {
    let upstream = Upstream::start().await;
    let chunks: Vec<String> = (0..12).map(|i| format!("w{i} ")).collect();
    upstream
        .set_default(Script::reply(chunks.clone()).with_chunk_interval(Duration::from_millis(100)));
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("two-devices", &["user"], None);
    // The first device asks with the id it proposes for a new session; its reply streams.
    let mut phone = server.connect(&token).await;
    phone.send_user_message("proposed-1", "Count for me").await;
    let mut seen =
        phone.recv_until(|f| f["type"] == "ai_response" && f["metadata"]["seq"] == "2", STEP).await;
    let session = seen.last().expect("chunk")["session_id"].as_str().expect("id").to_string();
    // The second device asks in the session the server named, while that reply streams: a
    // different id naming the same session, answered after the first (§10 item 27), and the
    // first reply is not cut by the second one's start.
    let mut laptop = server.connect(&token).await;
    laptop.send_user_message(&session, "Count again").await;
    seen.extend(recv_replies(&mut phone, 2).await);
    let replies = by_reply(&seen);
    assert_eq!(replies.len(), 2, "two replies on the first device: {seen:#?}");
    let whole = chunks.concat();
    for (id, frames) in &replies {
        let done = frames.last().expect("outcome");
        assert!(is_done(done), "reply {id} ends with done: {frames:#?}");
        assert!(done["metadata"].get("interrupted").is_none(), "reply {id} not cut: {done}");
        assert_eq!(reply_text(frames), whole, "reply {id} whole");
    }
    let chunks_of = |n: usize| {
        let id = replies[n].0.as_str();
        seen.iter()
            .enumerate()
            .filter(move |(_, f)| f["metadata"]["reply_id"] == id)
            .map(|(i, _)| i)
    };
    let first_ends = chunks_of(0).max().expect("first reply");
    let second_starts = chunks_of(1).min().expect("second reply");
    assert!(first_ends < second_starts, "in arrival order, not interleaved: {seen:#?}");
    let messages = stored_reply(&server, &token, &session).await;
    let stored: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["sender"].as_str().unwrap_or(""), m["content"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(
        stored,
        [
            ("user", "Count for me"),
            ("ai", whole.as_str()),
            ("user", "Count again"),
            ("ai", whole.as_str())
        ],
        "{messages:#?}"
    );
}

#[tokio::test]
async fn a_reply_cut_by_the_idle_deadline_stores_its_partial_text_marked_interrupted() {
    let upstream = Upstream::start().await;
    upstream.set_default(
        Script::reply(["Half ", "a ", "story", "never"]).with_behaviour(Behaviour::StallAfter(2)),
    );
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("LLM_IDLE_TIMEOUT", "1s")).await;
    let token = server.token("deadline-cut", &["user"], None);
    let mut client = server.connect(&token).await;
    client.send_user_message("cut-1", "Tell me something").await;
    let frames = client.recv_reply(STEP).await;
    let error = frames.last().expect("outcome");
    assert_error(error, "LLM_TIMEOUT", "AI service request timed out after 1s");
    let session = error["session_id"].as_str().expect("session").to_string();
    let messages = stored_reply(&server, &token, &session).await;
    let reply = messages.last().expect("stored");
    assert_eq!(reply["sender"], "ai", "{messages:#?}");
    assert_eq!(reply["content"], "Half a ", "the text delivered before the deadline");
    assert_eq!(reply["metadata"]["interrupted"], "true", "{reply}");
}

#[tokio::test]
async fn a_reply_cut_by_shutdown_stores_its_partial_text_marked_interrupted() {
    let upstream = Upstream::start().await;
    upstream
        .set_default(Script::reply(["first ", "never"]).with_behaviour(Behaviour::StallAfter(1)));
    let mut server =
        Server::start(ServerOpts::with_upstream(&upstream).env("SHUTDOWN_TIMEOUT", "2s")).await;
    let token = server.token("shutdown-cut", &["user"], None);
    let mut client = server.connect(&token).await;
    client.send_user_message("cut-2", "Tell me a story").await;
    let frames = client.recv_until(|f| f["type"] == "ai_response", STEP).await;
    let session = frames.last().expect("chunk")["session_id"].as_str().expect("id").to_string();

    server.sigterm();
    let cut = client.recv_frame(STEP).await;
    assert_error(&cut, "SERVICE_ERROR", "Service temporarily unavailable");
    let (status, _) = server.wait_exit(Duration::from_secs(6)).await;
    assert!(status.success(), "exit 0: {status}");

    let server = server.restart().await;
    let messages = stored(&server, &token, &session).await;
    let reply = messages.last().expect("stored");
    assert_eq!(reply["sender"], "ai", "{messages:#?}");
    assert_eq!(reply["content"], "first ", "the text delivered before the cut");
    assert_eq!(reply["metadata"]["interrupted"], "true", "{reply}");
}
