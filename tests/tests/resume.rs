#![cfg(not(madsim))]
//! Resumable replies through the real binary (issue 14; single instance, embedded store): every
//! `ai_response` frame names its reply and seq; a client that reconnects and sends `resume` gets
//! exactly the frames it missed — mid-reply, then the live ones, or after `done` within the
//! window — and an unknown reply or a foreign session gets its documented answer.

use std::time::Duration;

use chatbox_tests::harness::{assert_error, is_done, Client, Server, ServerOpts};
use chatbox_tests::resume::{first_chunks, resume_frame, seq};
use chatbox_tests::upstream::{Script, Upstream};
use serde_json::Value;

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(10);

/// The chunks of the scripted reply.
const CHUNKS: [&str; 8] = ["One ", "two ", "three ", "four ", "five ", "six ", "seven ", "eight."];

async fn server(interval: Duration) -> (Upstream, Server) {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(CHUNKS).with_chunk_interval(interval));
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    (upstream, server)
}

/// Sends a message and reads up to the first `chunks` reply chunks; returns the session id and
/// the `ai_response` frames seen.
async fn start_reply(client: &mut Client, chunks: usize) -> (String, Vec<Value>) {
    let frames = first_chunks(client, chunks, STEP).await;
    let session =
        frames.last().and_then(|f| f["session_id"].as_str()).expect("session").to_string();
    let replies = frames.into_iter().filter(|f| f["type"] == "ai_response").collect();
    (session, replies)
}

/// The resumed connection's frames: `connection_status` for the binding, then reply frames up
/// to `done`.
async fn resumed(client: &mut Client) -> Vec<Value> {
    let frames = client.recv_until(is_done, STEP).await;
    assert_eq!(frames[0]["type"], "connection_status", "bound first: {frames:#?}");
    frames[1..].to_vec()
}

#[tokio::test]
async fn every_reply_frame_names_its_reply_and_counts_seq() {
    let (_upstream, server) = server(Duration::ZERO).await;
    let mut client = server.connect(&server.token("u1", &["user"], None)).await;
    let (_, frames) = start_reply(&mut client, CHUNKS.len() + 1).await;
    assert_eq!(frames.len(), CHUNKS.len() + 1, "chunks and done: {frames:#?}");
    let reply = &frames[0]["metadata"]["reply_id"];
    for (i, frame) in frames.iter().enumerate() {
        assert_eq!(&frame["metadata"]["reply_id"], reply, "{frame}");
        assert_eq!(seq(frame), i as u64 + 1, "{frame}");
    }
    assert!(is_done(frames.last().unwrap()));
}

#[tokio::test]
async fn a_resume_mid_reply_gets_the_missed_frames_then_the_live_ones_once_each() {
    let (_upstream, server) = server(Duration::from_millis(200)).await;
    let token = server.token("u1", &["user"], None);
    let mut first = server.connect(&token).await;
    let (session, before) = start_reply(&mut first, 2).await;
    let reply = before[0]["metadata"]["reply_id"].as_str().expect("reply id").to_string();
    // The page showed only the first chunk: it asks for everything after seq 1.
    drop(first);

    let mut second = server.connect(&token).await;
    second.send_json(&resume_frame(&session, &reply, 1)).await;
    let after = resumed(&mut second).await;
    let seqs: Vec<u64> = after.iter().map(seq).collect();
    let want: Vec<u64> = (2..=CHUNKS.len() as u64 + 1).collect();
    assert_eq!(seqs, want, "every frame after seq 1, once, in order: {after:#?}");
    let text: String = after.iter().filter_map(|f| f["content"].as_str()).collect();
    assert_eq!(format!("{}{text}", CHUNKS[0]), CHUNKS.concat());
    assert!(after.iter().all(|f| f["metadata"]["reply_id"] == reply.as_str()));
    second.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_resume_after_done_replays_the_rest_of_the_reply() {
    let (_upstream, server) = server(Duration::ZERO).await;
    let token = server.token("u1", &["user"], None);
    let mut first = server.connect(&token).await;
    let (session, frames) = start_reply(&mut first, CHUNKS.len() + 1).await;
    let reply = frames[0]["metadata"]["reply_id"].as_str().expect("reply id").to_string();
    first.close().await;

    let mut second = server.connect(&token).await;
    second.send_json(&resume_frame(&session, &reply, 5)).await;
    let after = resumed(&mut second).await;
    assert_eq!(after, frames[5..].to_vec(), "the recorded frames, unchanged");
}

#[tokio::test]
async fn an_unknown_reply_is_resume_unavailable_with_the_session_id() {
    let (_upstream, server) = server(Duration::ZERO).await;
    let token = server.token("u1", &["user"], None);
    let mut first = server.connect(&token).await;
    let (session, _) = start_reply(&mut first, CHUNKS.len() + 1).await;
    first.close().await;

    let mut second = server.connect(&token).await;
    second.send_json(&resume_frame(&session, "no-such-reply", 0)).await;
    let frames = second.recv_until(|f| f["type"] == "error", STEP).await;
    let error = frames.last().unwrap();
    assert_error(error, "RESUME_UNAVAILABLE", "This reply can no longer be resumed");
    assert_eq!(error["session_id"], session.as_str(), "{error}");
    second.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_resume_of_another_users_session_gets_the_binding_refusal() {
    let (_upstream, server) = server(Duration::ZERO).await;
    let mut owner = server.connect(&server.token("u1", &["user"], None)).await;
    let (session, frames) = start_reply(&mut owner, CHUNKS.len() + 1).await;
    let reply = frames[0]["metadata"]["reply_id"].as_str().expect("reply id").to_string();

    let mut other = server.connect(&server.token("u2", &["user"], None)).await;
    other.send_json(&resume_frame(&session, &reply, 0)).await;
    let error = other.recv_frame(STEP).await;
    assert_error(&error, "SERVICE_ERROR", "Failed to establish session connection");
    assert_eq!(error["session_id"], session.as_str(), "{error}");
    other.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_reply_past_its_resume_window_is_resume_unavailable() {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(CHUNKS));
    let opts = ServerOpts::with_upstream(&upstream).env("RESUME_WINDOW", "1s");
    let server = Server::start(opts).await;
    let token = server.token("u1", &["user"], None);
    let mut first = server.connect(&token).await;
    let (session, frames) = start_reply(&mut first, CHUNKS.len() + 1).await;
    let reply = frames[0]["metadata"]["reply_id"].as_str().expect("reply id").to_string();
    first.close().await;
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mut second = server.connect(&token).await;
    second.send_json(&resume_frame(&session, &reply, 0)).await;
    let frames = second.recv_until(|f| f["type"] == "error", STEP).await;
    assert_error(
        frames.last().unwrap(),
        "RESUME_UNAVAILABLE",
        "This reply can no longer be resumed",
    );
    assert!(frames.iter().all(|f| f["type"] != "ai_response"), "nothing replayed: {frames:#?}");
}
