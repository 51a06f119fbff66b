#![cfg(not(madsim))]
//! A rolling deploy across a fleet (issue 14, behaviour 6): two real chatbox processes on one
//! MongoDB-compatible database (SecantusDB) and one real Redis. Instance A is stopped with
//! SIGTERM while its users have sessions — one idle, one receiving a reply, one whose connection
//! dropped mid-reply. A drains as a single instance does (the reply in flight finishes, every
//! connection gets 1001, exit 0); the dropped client resumes its reply on B while A drains; every
//! user reconnects to B with their session id and the session goes on there: the same session,
//! its history intact over REST, a new message answered with the earlier turns as context, and
//! nothing that was acknowledged lost. B's bus metrics show the relayed frames.

use std::time::Duration;

use chatbox_tests::e2e::{chat, stored_messages, Exposition};
use chatbox_tests::fleet::Fleet;
use chatbox_tests::harness::{is_done, reply_text, Client, Server};
use chatbox_tests::http::get;
use chatbox_tests::resume::{first_chunks, resume_frame, seq};
use chatbox_tests::upstream::Script;
use serde_json::{json, Value};

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(20);

/// The chunks of every scripted reply.
const CHUNKS: [&str; 8] = ["One ", "two ", "three ", "four ", "five ", "six ", "seven ", "eight."];

/// What `first_chunks` sends.
const QUESTION: &str = "Count to eight";

/// Starts a reply in a new session and reads its first two chunks: session id, reply id and
/// the chunks' frames.
async fn mid_reply(client: &mut Client) -> (String, String, Vec<Value>) {
    let frames = first_chunks(client, 2, STEP).await;
    let chunks: Vec<Value> = frames.into_iter().filter(|f| f["type"] == "ai_response").collect();
    assert_eq!(chunks.len(), 2, "two chunks before the deploy: {chunks:#?}");
    let session = chunks[0]["session_id"].as_str().expect("session").to_string();
    let reply = chunks[0]["metadata"]["reply_id"].as_str().expect("reply id").to_string();
    (session, reply, chunks)
}

/// B's Prometheus metrics.
async fn metrics(server: &Server) -> Exposition {
    let response = get(server, "/metrics/prometheus", None).await;
    assert_eq!(response.status, 200, "{response:?}");
    Exposition::parse(&response.body)
}

/// The user's messages and the AI's replies, in order, as a session on B must show them after
/// the deploy: `(sender, content)`.
fn turns(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .flat_map(|(user, ai)| {
            [("user".to_string(), user.to_string()), ("ai".into(), ai.to_string())]
        })
        .collect()
}

#[tokio::test]
async fn sigterm_on_one_instance_drains_and_its_users_continue_their_sessions_on_the_other() {
    let script = Script::reply(CHUNKS).with_chunk_interval(Duration::from_millis(300));
    let mut fleet = Fleet::scripted(Some(script), &[("SHUTDOWN_TIMEOUT", "15s")]).await;
    let full = CHUNKS.concat();

    // Three users on A: one idle with a finished exchange, one receiving a reply, one whose
    // connection will drop mid-reply.
    let idle_token = fleet.a.token("deploy-idle", &["user"], None);
    let mut idle = fleet.a.connect(&idle_token).await;
    let (idle_session, frames) = chat(&mut idle, "deploy-idle-1", "before the deploy").await;
    assert_eq!(reply_text(&frames), full);

    let streaming_token = fleet.a.token("deploy-streaming", &["user"], None);
    let mut streaming = fleet.a.connect(&streaming_token).await;
    let (streaming_session, _, mut streamed) = mid_reply(&mut streaming).await;

    let dropped_token = fleet.a.token("deploy-dropped", &["user"], None);
    let mut dropped = fleet.a.connect(&dropped_token).await;
    let (dropped_session, dropped_reply, before) = mid_reply(&mut dropped).await;

    // The deploy stops A.
    fleet.a.sigterm();

    // The dropped client reconnects to B while A drains and resumes its reply there: the frames
    // after the last seq it had, then the live ones, once each, up to `done`.
    drop(dropped);
    let last = seq(before.last().expect("a chunk"));
    let mut dropped = fleet.b.connect(&dropped_token).await;
    dropped.send_json(&resume_frame(&dropped_session, &dropped_reply, last)).await;
    let frames = dropped.recv_until(is_done, STEP).await;
    assert_eq!(frames[0]["type"], "connection_status", "bound first: {frames:#?}");
    assert_eq!(frames[0]["session_id"], dropped_session.as_str(), "{frames:#?}");
    let rest: Vec<&Value> = frames.iter().filter(|f| f["type"] == "ai_response").collect();
    let seqs: Vec<u64> = rest.iter().map(|f| seq(f)).collect();
    assert_eq!(seqs, (last + 1..=CHUNKS.len() as u64 + 1).collect::<Vec<_>>(), "{frames:#?}");
    let text: String =
        before.iter().chain(rest.iter().copied()).filter_map(|f| f["content"].as_str()).collect();
    assert_eq!(text, full, "the reply, whole, across the two instances");

    // The connected clients see A drain as a single instance does: the reply in flight
    // finishes, then every connection is closed with 1001; A exits 0.
    streamed.extend(streaming.recv_until(is_done, STEP).await);
    assert_eq!(reply_text(&streamed), full, "the reply in flight finished: {streamed:#?}");
    for client in [&mut streaming, &mut idle] {
        let close = client.expect_close(STEP).await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1001, "{close:?}");
        assert_eq!(close.reason.as_str(), "Server shutting down", "{close:?}");
    }
    let (status, _) = fleet.a.wait_exit(Duration::from_secs(20)).await;
    assert!(status.success(), "A exits 0 after its drain: {status}");

    // B's view of the bus (issue 14's Prometheus series): up, A's frames received here (the
    // resumed reply's live frames), its own publications, and the replay buffer's size.
    let seen = metrics(&fleet.b).await;
    assert_eq!(seen.value("chatbox_bus_up", &[]), Some(1.0));
    assert!(seen.value("chatbox_bus_frames_received_total", &[]).is_some_and(|v| v > 0.0));
    assert!(seen.value("chatbox_bus_frames_published_total", &[]).is_some());
    assert!(seen.value("chatbox_bus_messages_rejected_total", &[]) == Some(0.0));
    assert!(seen.value("chatbox_replay_buffer_frames", &[]).is_some());

    // Every user reconnects to B with their session id and goes on there.
    let sessions = [
        (&idle_token, &idle_session, "before the deploy"),
        (&streaming_token, &streaming_session, QUESTION),
        (&dropped_token, &dropped_session, QUESTION),
    ];
    for (token, session, first) in sessions {
        let mut client = fleet.b.connect(token).await;
        let (same, frames) = chat(&mut client, session, "after the deploy").await;
        assert_eq!(&same, session, "the same session continues on B");
        assert_eq!(reply_text(&frames), full);
        // The reply on B was asked with the whole conversation, read back from the database.
        let asked = fleet.upstream.last_request().expect("a request").body["messages"].clone();
        assert_eq!(
            asked,
            json!([
                {"role": "user", "content": first},
                {"role": "assistant", "content": full},
                {"role": "user", "content": "after the deploy"},
            ]),
            "the conversation of {session} was continued"
        );
        // Nothing acknowledged was lost: both turns are stored, whole, and read back over REST.
        let stored = stored_messages(&fleet.b, token, session).await;
        let want = turns(&[(first, full.as_str()), ("after the deploy", full.as_str())]);
        assert_eq!(stored, want, "the history of {session}");
    }
}
