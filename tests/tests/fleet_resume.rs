#![cfg(not(madsim))]
//! Resumable replies across a fleet (issue 14): two real chatbox processes on one
//! MongoDB-compatible database (SecantusDB) and one real Redis. A reply streaming on A is resumed
//! on B with exactly the frames the client missed, then the live ones, once each; a reply that
//! ended is resumed on B within the window; a failed reply's error frame names the reply on both
//! instances and is replayed by a later resume; a reply whose instance was killed with SIGKILL gets
//! `RESUME_UNAVAILABLE` within its deadline, never a hang; and a Redis restart under traffic does
//! not break the replies an instance streams to its own connections.

use std::collections::BTreeSet;
use std::time::Duration;

use chatbox_tests::e2e::stored_messages;
use chatbox_tests::fleet::{wait_bus, Fleet};
use chatbox_tests::harness::{assert_error, is_done, now, Client};
use chatbox_tests::resume::{first_chunks, resume_frame, seq};
use chatbox_tests::upstream::{Behaviour, Script};
use serde_json::Value;

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(20);

/// The chunks of the scripted reply.
const CHUNKS: [&str; 8] = ["One ", "two ", "three ", "four ", "five ", "six ", "seven ", "eight."];

/// Sends a message and reads up to the first `chunks` reply frames; the session id, the reply
/// id and the `ai_response` frames seen.
async fn start_reply(client: &mut Client, chunks: usize) -> (String, String, Vec<Value>) {
    let frames = first_chunks(client, chunks, STEP).await;
    let replies: Vec<Value> = frames.into_iter().filter(|f| f["type"] == "ai_response").collect();
    assert_eq!(replies.len(), chunks, "the first frames of the reply: {replies:#?}");
    let session = replies[0]["session_id"].as_str().expect("session").to_string();
    let reply = replies[0]["metadata"]["reply_id"].as_str().expect("reply id").to_string();
    (session, reply, replies)
}

/// `user`'s phone on A asks and reads its reply's first two chunks; their laptop binds on B by
/// resuming that reply after `after`. Returns the token, the phone, the laptop, the session and
/// the reply id.
async fn resuming_on_b(
    fleet: &Fleet,
    user: &str,
    after: u64,
) -> (String, Client, Client, String, String) {
    let token = fleet.a.token(user, &["user"], None);
    let mut phone = fleet.a.connect(&token).await;
    let (session, reply, _) = start_reply(&mut phone, 2).await;
    let mut laptop = fleet.b.connect(&token).await;
    laptop.send_json(&resume_frame(&session, &reply, after)).await;
    (token, phone, laptop, session, reply)
}

/// The reply frames a resumed connection gets up to `done`, after its binding's answer.
async fn resumed(client: &mut Client) -> Vec<Value> {
    let frames = client.recv_until(is_done, STEP).await;
    assert_eq!(frames[0]["type"], "connection_status", "bound first: {frames:#?}");
    let replies: Vec<Value> =
        frames[1..].iter().filter(|f| f["type"] != "status").cloned().collect();
    assert!(replies.last().is_some_and(is_done), "ends with done: {frames:#?}");
    replies
}

#[tokio::test]
async fn a_reply_resumed_on_another_instance_gets_the_missed_frames_then_the_live_ones_once_each() {
    let fleet = Fleet::scripted(
        Some(Script::reply(CHUNKS).with_chunk_interval(Duration::from_millis(300))),
        &[],
    )
    .await;
    let token = fleet.a.token("resumer", &["user"], None);
    let mut phone = fleet.a.connect(&token).await;
    let (session, reply, before) = start_reply(&mut phone, 2).await;
    // The connection drops mid-reply; the client reconnects to the other instance.
    drop(phone);

    let mut laptop = fleet.b.connect(&token).await;
    laptop.send_json(&resume_frame(&session, &reply, 2)).await;
    let after = resumed(&mut laptop).await;
    let seqs: Vec<u64> = after.iter().map(seq).collect();
    let want: Vec<u64> = (3..=CHUNKS.len() as u64 + 1).collect();
    assert_eq!(seqs, want, "every frame after seq 2, once, in order: {after:#?}");
    assert_eq!(seqs.iter().collect::<BTreeSet<_>>().len(), seqs.len(), "no duplicate seq");
    assert!(after.iter().all(|f| f["metadata"]["reply_id"] == reply.as_str()));
    let text: String =
        before.iter().chain(&after).filter_map(|f| f["content"].as_str()).collect::<String>();
    assert_eq!(text, CHUNKS.concat());
    laptop.expect_silence(Duration::from_millis(500)).await;

    let stored = stored_messages(&fleet.b, &token, &session).await;
    let ai: Vec<&str> = stored.iter().filter(|(s, _)| s == "ai").map(|(_, c)| c.as_str()).collect();
    assert_eq!(ai, [text.as_str()], "the resumed text is the stored message: {stored:?}");
}

#[tokio::test]
async fn a_reply_that_ended_is_resumed_on_another_instance_within_the_window() {
    let fleet = Fleet::scripted(Some(Script::reply(CHUNKS)), &[]).await;
    let token = fleet.a.token("late", &["user"], None);
    let mut phone = fleet.a.connect(&token).await;
    let (session, reply, frames) = start_reply(&mut phone, CHUNKS.len() + 1).await;
    assert!(is_done(frames.last().unwrap()));
    phone.close().await;

    let mut laptop = fleet.b.connect(&token).await;
    laptop.send_json(&resume_frame(&session, &reply, 5)).await;
    let after = resumed(&mut laptop).await;
    assert_eq!(after, frames[5..].to_vec(), "the recorded frames, unchanged");
}

#[tokio::test]
async fn a_failed_reply_ends_with_its_named_error_on_both_instances_and_in_a_later_resume() {
    // Two chunks, then the model stalls: the idle deadline (2 s) fails the reply on A.
    let script = Script::reply(["One ", "two ", "three "]).with_behaviour(Behaviour::StallAfter(2));
    let fleet = Fleet::scripted(Some(script), &[("LLM_IDLE_TIMEOUT", "2s")]).await;
    // A second device binds on B by resuming after seq 1 while the model is silent.
    let (token, mut phone, mut laptop, session, reply) = resuming_on_b(&fleet, "stalled", 1).await;

    let on_a = phone.recv_until(|f| f["type"] == "error", STEP).await;
    let on_b = laptop.recv_until(|f| f["type"] == "error", STEP).await;
    let outcome = on_a.last().unwrap();
    assert_eq!(outcome["error"]["code"], "LLM_TIMEOUT", "{outcome}");
    assert_eq!(outcome["metadata"]["reply_id"], reply.as_str(), "names its reply: {outcome}");
    assert_eq!(outcome["metadata"]["seq"], "3", "the seq after the two chunks: {outcome}");
    assert_eq!(on_b.last(), Some(outcome), "B gets the same outcome frame");
    let seqs_b: Vec<u64> = on_b.iter().filter(|f| f["type"] == "ai_response").map(seq).collect();
    assert_eq!(seqs_b, [2], "B: the chunk after its resume point, then the outcome: {on_b:#?}");

    // A device resuming on B after the reply failed gets just the outcome, from Redis.
    let mut tablet = fleet.b.connect(&token).await;
    tablet.send_json(&resume_frame(&session, &reply, 2)).await;
    let later = tablet.recv_until(|f| f["type"] == "error", STEP).await;
    assert_eq!(later.last(), Some(outcome), "the recorded outcome: {later:#?}");
    assert!(!later.iter().any(|f| f["type"] == "ai_response"), "nothing else: {later:#?}");
    tablet.expect_silence(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn a_reply_whose_instance_was_killed_is_resume_unavailable_within_its_deadline() {
    // Idle deadline 3 s: a live producer writes at least every 3 s; a dead one is known as dead
    // 3 s + the grace after its last frame.
    let script = Script::reply((0..40).map(|i| format!("w{i} ")))
        .with_chunk_interval(Duration::from_millis(250));
    let fleet = Fleet::scripted(Some(script), &[("LLM_IDLE_TIMEOUT", "3s")]).await;
    // One client resumes on B while A still streams; then A is killed mid-reply.
    let (token, phone, mut laptop, session, reply) = resuming_on_b(&fleet, "orphan", 2).await;
    laptop.recv_until(|f| f["type"] == "ai_response" && seq(f) > 4, STEP).await;
    let pid = fleet.a.pid().expect("A runs");
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGKILL sent");
    let killed_at = now();
    drop(phone);

    // Another client resumes on B after the kill.
    let mut tablet = fleet.b.connect(&token).await;
    tablet.send_json(&resume_frame(&session, &reply, 1)).await;

    for client in [&mut laptop, &mut tablet] {
        let frames = client.recv_until(|f| f["type"] == "error", STEP).await;
        let error = frames.last().unwrap();
        assert_error(error, "RESUME_UNAVAILABLE", "This reply can no longer be resumed");
        assert_eq!(error["session_id"], session.as_str(), "{error}");
        assert!(!frames.iter().any(is_done), "no done from a dead instance: {frames:#?}");
    }
    // Idle deadline + grace + one watch interval, with a wide margin for a loaded machine.
    let waited = now() - killed_at;
    assert!(waited < Duration::from_secs(15), "answered after {waited:?}");
}

#[tokio::test]
async fn a_redis_restart_under_traffic_does_not_break_local_replies() {
    let script = Script::reply(CHUNKS).with_chunk_interval(Duration::from_millis(250));
    let mut fleet = Fleet::scripted(Some(script), &[]).await;
    let token = fleet.a.token("steady", &["user"], None);
    let mut phone = fleet.a.connect(&token).await;
    let (session, reply, before) = start_reply(&mut phone, 2).await;

    fleet.redis.stop().await;
    let rest = phone.recv_until(is_done, STEP).await;
    let after: Vec<&Value> = rest.iter().filter(|f| f["type"] == "ai_response").collect();
    let seqs: Vec<u64> = after.iter().map(|f| seq(f)).collect();
    assert_eq!(seqs, (3..=CHUNKS.len() as u64 + 1).collect::<Vec<_>>(), "{rest:#?}");
    let text: String =
        before.iter().chain(after.iter().copied()).filter_map(|f| f["content"].as_str()).collect();
    assert_eq!(text, CHUNKS.concat());
    wait_bus(&fleet.a, "degraded").await;

    // Without Redis, the producing instance still resumes its own reply (in-process buffer),
    // and the other one answers RESUME_UNAVAILABLE instead of hanging.
    let mut again = fleet.a.connect(&token).await;
    again.send_json(&resume_frame(&session, &reply, 4)).await;
    let replayed = resumed(&mut again).await;
    assert_eq!(replayed.iter().map(seq).collect::<Vec<_>>(), (5..=9).collect::<Vec<_>>());
    let mut elsewhere = fleet.b.connect(&token).await;
    elsewhere.send_json(&resume_frame(&session, &reply, 4)).await;
    let answer = elsewhere.recv_until(|f| f["type"] == "error", STEP).await;
    assert_error(
        answer.last().unwrap(),
        "RESUME_UNAVAILABLE",
        "This reply can no longer be resumed",
    );

    fleet.redis.restart().await;
    wait_bus(&fleet.a, "ready").await;
    wait_bus(&fleet.b, "ready").await;
    // Back to fleet behaviour: a new reply on A is resumable on B.
    let (session, reply, _) = start_reply(&mut phone, 1).await;
    let mut laptop = fleet.b.connect(&token).await;
    laptop.send_json(&resume_frame(&session, &reply, 1)).await;
    let after = resumed(&mut laptop).await;
    assert_eq!(after.iter().map(seq).collect::<Vec<_>>(), (2..=9).collect::<Vec<_>>());
}
