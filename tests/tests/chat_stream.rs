#![cfg(not(madsim))]
//! Streaming replies through the real binary (PROTOCOL.md §3.8–§3.10, §7, §10 items 1, 14, 21,
//! 27): the greeting, the frame sequence of a reply for each provider type, the conversation
//! history sent upstream, and every way a reply can end — done, `LLM_TIMEOUT` (first chunk, idle,
//! whole reply), `LLM_UNAVAILABLE` (failing upstream, truncated stream) — with exactly one
//! outcome per reply and nothing after it; a failed reply's error frame names the reply and its
//! seq.

use std::time::Duration;

use chatbox_tests::e2e::chat;
use chatbox_tests::harness::{assert_error, is_done, reply_text, Client, Server, ServerOpts};
use chatbox_tests::upstream::{Behaviour, Script, Upstream};
use serde_json::{json, Value};

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);

/// The three provider types with their ids, labels and request path suffixes.
const PROVIDERS: [(&str, &str, &str, &str); 3] = [
    ("openai", "openai-gpt4", "GPT-4", "/chat/completions"),
    ("anthropic", "anthropic-claude", "Claude", "/messages"),
    ("dify", "dify-app", "Dify App", "/chat-messages"),
];

/// Asserts the frames of one successful reply (from the `user_message` on) and returns the
/// authoritative session id: `connection_status` binding frames, `loading`, one chunk frame per
/// expected chunk, one `done` frame.
fn check_reply(frames: &[Value], proposed: &str, model: &str, chunks: &[&str]) -> String {
    let loading = frames
        .iter()
        .position(|f| f["type"] == "loading")
        .unwrap_or_else(|| panic!("no loading frame: {frames:#?}"));
    assert!(loading >= 1, "the binding is announced before loading: {frames:#?}");
    for status in &frames[..loading] {
        assert_eq!(status["type"], "connection_status", "{status}");
        assert_eq!(status["sender"], "system", "{status}");
        assert!(status["models"].is_array(), "{status}");
        assert!(status["session_id"].is_string(), "{status}");
    }
    // The client's id is bound as-is first, then the server-made session takes over (§6.1).
    assert_eq!(frames[0]["session_id"], proposed, "{frames:#?}");
    let session = frames[loading - 1]["session_id"].as_str().expect("session id").to_string();
    assert_ne!(session, proposed, "client-proposed ids are never adopted (§6.1)");
    assert_eq!(session.len(), 32, "32-character session ids: {session}");
    assert!(session.bytes().all(|b| b.is_ascii_hexdigit()), "hex session id: {session}");

    let load = &frames[loading];
    assert_eq!(load["session_id"], session.as_str(), "{load}");
    assert_eq!(load["sender"], "ai", "{load}");
    assert!(load.get("content").is_none(), "{load}");
    assert!(load["timestamp"].is_string(), "{load}");

    let rest = &frames[loading + 1..];
    assert_eq!(rest.len(), chunks.len() + 1, "chunks then one done frame: {rest:#?}");
    // Every frame of the reply names it (issue 14): one reply_id, seq "1", "2", … and the done
    // frame the next one.
    let reply_id = rest[0]["metadata"]["reply_id"].as_str().expect("reply_id").to_string();
    assert!(!reply_id.is_empty(), "{rest:#?}");
    let meta = |done: &str, seq: usize| json!({"streaming": "true", "done": done, "reply_id": reply_id, "seq": seq.to_string()});
    for (i, (frame, chunk)) in rest.iter().zip(chunks).enumerate() {
        assert_eq!(frame["type"], "ai_response", "{frame}");
        assert_eq!(frame["session_id"], session.as_str(), "{frame}");
        assert_eq!(frame["content"], *chunk, "{frame}");
        assert_eq!(frame["model_id"], model, "{frame}");
        assert_eq!(frame["sender"], "ai", "{frame}");
        assert_eq!(frame["metadata"], meta("false", i + 1), "{frame}");
        assert!(frame["timestamp"].is_string(), "{frame}");
    }
    let done = rest.last().expect("done frame");
    assert_eq!(done["type"], "ai_response", "{done}");
    assert_eq!(done["session_id"], session.as_str(), "{done}");
    assert_eq!(done["model_id"], model, "{done}");
    assert_eq!(done["sender"], "ai", "{done}");
    assert_eq!(done["metadata"], meta("true", chunks.len() + 1), "{done}");
    assert!(done.get("content").is_none(), "the done frame has no content: {done}");
    session
}

/// One reply through provider `index` of [`PROVIDERS`], configured first (so it is the default
/// model) with the two others after it.
async fn provider_reply(index: usize) {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["Hel", "lo", "!"]));
    let order: Vec<usize> = std::iter::once(index).chain((0..3).filter(|i| *i != index)).collect();
    let mut opts = ServerOpts::new();
    for &i in &order {
        let (kind, id, name, _) = PROVIDERS[i];
        opts = opts.provider(id, name, kind, &upstream.url());
    }
    let server = Server::start(opts).await;
    let (kind, model, _, suffix) = PROVIDERS[index];
    let user = format!("user-{kind}");
    let mut client = server.connect(&server.token(&user, &["user"], Some("Stream User"))).await;

    // First frame after the upgrade: models in configuration order, user_id, no session_id.
    let greeting = &client.greeting;
    assert_eq!(greeting["type"], "connection_status", "{greeting}");
    assert_eq!(greeting["sender"], "system", "{greeting}");
    assert_eq!(greeting["user_id"], user.as_str(), "{greeting}");
    assert!(greeting.get("session_id").is_none(), "{greeting}");
    assert!(greeting["timestamp"].is_string(), "{greeting}");
    let expected: Vec<Value> =
        order.iter().map(|&i| json!({"id": PROVIDERS[i].1, "name": PROVIDERS[i].2})).collect();
    assert_eq!(greeting["models"], Value::Array(expected), "models in configuration order");

    let proposed = format!("proposed-{kind}");
    client.send_user_message(&proposed, "Hello there").await;
    let frames = client.recv_reply(STEP).await;
    check_reply(&frames, &proposed, model, &["Hel", "lo", "!"]);
    client.expect_silence(Duration::from_millis(200)).await;

    let requests = upstream.requests();
    assert_eq!(requests.len(), 1, "one upstream call");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert!(request.path.ends_with(suffix), "{} for {kind}", request.path);
    let body = &request.body;
    match kind {
        "dify" => {
            assert_eq!(body["response_mode"], "streaming", "{body}");
            assert!(body["query"].as_str().is_some_and(|q| q.contains("Hello there")), "{body}");
        }
        _ => {
            assert_eq!(body["model"], format!("scripted-{kind}"), "{body}");
            assert_eq!(body["stream"], true, "{body}");
            assert_eq!(body["messages"], json!([{"role": "user", "content": "Hello there"}]));
        }
    }
}

#[tokio::test]
async fn openai_reply_streams_chunks_then_one_done() {
    provider_reply(0).await;
}

#[tokio::test]
async fn anthropic_reply_streams_chunks_then_one_done() {
    provider_reply(1).await;
}

#[tokio::test]
async fn dify_reply_streams_chunks_then_one_done() {
    provider_reply(2).await;
}

#[tokio::test]
async fn second_message_carries_the_conversation_history() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream).provider(
        "anthropic-claude",
        "Claude",
        "anthropic",
        &upstream.url(),
    ))
    .await;
    let mut client = server.connect(&server.token("history-user", &["user"], None)).await;
    upstream.push_script(Script::reply(["First ", "answer"]));
    let (session, frames) = chat(&mut client, "history-1", "First question").await;
    assert_eq!(reply_text(&frames), "First answer");
    upstream.push_script(Script::reply(["Second answer"]));
    let (again, frames) = chat(&mut client, &session, "Second question").await;
    assert_eq!(again, session, "the session continues");
    assert_eq!(reply_text(&frames), "Second answer");
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].body["messages"],
        json!([
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ]),
        "the upstream sees the whole conversation (§10 item 1)"
    );

    // The same history through the Anthropic dialect after switching models.
    client
        .send_json(
            &json!({"type": "model_select", "session_id": session, "model_id": "anthropic-claude"}),
        )
        .await;
    let changed = client.recv_frame(STEP).await;
    assert_eq!(changed["type"], "connection_status", "{changed}");
    assert_eq!(changed["content"], "Model changed to anthropic-claude", "{changed}");
    assert_eq!(changed["session_id"], session.as_str(), "{changed}");
    upstream.push_script(Script::reply(["Third answer"]));
    let (_, frames) = chat(&mut client, &session, "Third question").await;
    assert_eq!(frames.last().expect("done")["model_id"], "anthropic-claude");
    let last = upstream.last_request().expect("a third request");
    assert!(last.path.ends_with("/messages"), "{}", last.path);
    assert_eq!(
        last.body["messages"],
        json!([
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
            {"role": "assistant", "content": "Second answer"},
            {"role": "user", "content": "Third question"},
        ])
    );
}

#[tokio::test]
async fn dify_second_message_carries_the_conversation_id() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::new().provider("dify-app", "Dify", "dify", &upstream.url()))
            .await;
    let mut client = server.connect(&server.token("dify-user", &["user"], None)).await;
    let (session, _) = chat(&mut client, "dify-1", "First question").await;
    chat(&mut client, &session, "Second question").await;
    let requests = upstream.requests();
    assert_eq!(requests.len(), 2);
    assert!(
        requests[0].body.get("conversation_id").is_none_or(Value::is_null),
        "{}",
        requests[0].body
    );
    assert_eq!(
        requests[1].body["conversation_id"], "conv-1",
        "Dify keeps the conversation (§10 item 1)"
    );
}

/// A server whose replies have short deadlines: first chunk 1 s, idle 1.5 s, whole reply 2 s.
/// The stall tests listen past the 2 s whole-reply deadline, so a second outcome would show.
async fn deadline_server(upstream: &Upstream) -> Server {
    Server::start(
        ServerOpts::with_upstream(upstream)
            .env("LLM_FIRST_CHUNK_TIMEOUT", "1s")
            .env("LLM_IDLE_TIMEOUT", "1500ms")
            .env("LLM_STREAM_TIMEOUT", "2s"),
    )
    .await
}

/// Sends one message and expects the reply to end with exactly one error `code`/`message`
/// after `chunks` chunk frames, and nothing more for `quiet` afterwards.
async fn expect_failed_reply(
    client: &mut Client,
    session: &str,
    code: &str,
    message: &str,
    chunks: usize,
    quiet: Duration,
) {
    client.send_user_message(session, "Tell me something").await;
    let frames = client.recv_reply(STEP).await;
    let error = frames.last().expect("an outcome");
    assert_error(error, code, message);
    let bound = frames.iter().rev().find(|f| f["type"] == "loading").expect("loading frame");
    assert_eq!(error["session_id"], bound["session_id"], "the error names the session");
    let sent = frames.iter().filter(|f| f["type"] == "ai_response").count();
    assert_eq!(sent, chunks, "chunk frames before the error: {frames:#?}");
    assert!(!frames.iter().any(is_done), "no done frame: {frames:#?}");
    // The error is the reply's last frame: it names the reply and takes the next seq, as `done`
    // would (README, "Frames added for resumable replies").
    let named = &error["metadata"]["reply_id"];
    assert!(named.as_str().is_some_and(|id| !id.is_empty()), "names its reply: {error}");
    for chunk in frames.iter().filter(|f| f["type"] == "ai_response") {
        assert_eq!(&chunk["metadata"]["reply_id"], named, "the same reply: {chunk}");
    }
    assert_eq!(error["metadata"]["seq"], (chunks + 1).to_string().as_str(), "{error}");
    client.expect_silence(quiet).await;
}

#[tokio::test]
async fn stall_before_first_chunk_is_one_llm_timeout() {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["never"]).with_behaviour(Behaviour::StallBeforeFirst));
    let server = deadline_server(&upstream).await;
    let mut client = server.connect(&server.token("stall-first", &["user"], None)).await;
    let started = chatbox_tests::harness::now();
    expect_failed_reply(
        &mut client,
        "s1",
        "LLM_TIMEOUT",
        "AI service request timed out after 1s",
        0,
        Duration::from_millis(1300),
    )
    .await;
    assert!(started.elapsed() >= Duration::from_secs(1), "not before the deadline");
    assert_eq!(upstream.request_count(), 1, "a stall is not retried");
}

/// Issue 16: an operator of the original sets only `LLM_STREAM_TIMEOUT`; the server starts, and
/// the unset first-chunk deadline follows it, so a model that never sends a byte is cut by the
/// 3 s deadline (named in the error), not by the 30 s default.
#[tokio::test]
async fn stream_timeout_alone_bounds_a_silent_model() {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["never"]).with_behaviour(Behaviour::StallBeforeFirst));
    let opts = ServerOpts::with_upstream(&upstream).env("LLM_STREAM_TIMEOUT", "3s");
    let server = Server::start(opts).await;
    let mut client = server.connect(&server.token("stream-only", &["user"], None)).await;
    expect_failed_reply(
        &mut client,
        "s-migrated",
        "LLM_TIMEOUT",
        "AI service request timed out after 3s",
        0,
        Duration::from_millis(500),
    )
    .await;
}

#[tokio::test]
async fn stall_mid_stream_is_one_llm_timeout() {
    let upstream = Upstream::start().await;
    upstream
        .set_default(Script::reply(["a", "b", "c", "d"]).with_behaviour(Behaviour::StallAfter(2)));
    let server = deadline_server(&upstream).await;
    let mut client = server.connect(&server.token("stall-mid", &["user"], None)).await;
    expect_failed_reply(
        &mut client,
        "s2",
        "LLM_TIMEOUT",
        "AI service request timed out after 1.5s",
        2,
        Duration::from_millis(1300),
    )
    .await;
}

#[tokio::test]
async fn trickle_past_the_whole_reply_budget_is_one_llm_timeout() {
    let upstream = Upstream::start().await;
    // 10 chunks 300 ms apart: never idle for 1 s, but 2.7 s in total, over the 2 s budget.
    let chunks: Vec<String> = (0..10).map(|i| format!("c{i} ")).collect();
    upstream.set_default(Script::reply(chunks).with_chunk_interval(Duration::from_millis(300)));
    let server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("LLM_FIRST_CHUNK_TIMEOUT", "1s")
            .env("LLM_IDLE_TIMEOUT", "1s")
            .env("LLM_STREAM_TIMEOUT", "2s"),
    )
    .await;
    let mut client = server.connect(&server.token("trickle", &["user"], None)).await;
    client.send_user_message("s3", "Tell me something").await;
    let frames = client.recv_reply(STEP).await;
    let error = frames.last().expect("an outcome");
    assert_error(error, "LLM_TIMEOUT", "AI service request timed out after 2s");
    let sent = frames.iter().filter(|f| f["type"] == "ai_response").count();
    assert!((3..10).contains(&sent), "some chunks, not all, before the error: {sent}");
    assert!(!frames.iter().any(is_done), "no done frame: {frames:#?}");
    // The upstream would have finished at ~2.7 s: nothing may follow the error.
    client.expect_silence(Duration::from_millis(1200)).await;
}

/// A server whose first-chunk budget leaves room for the provider retries (1 s, then 2 s).
async fn retry_server(upstream: &Upstream) -> Server {
    Server::start(
        ServerOpts::with_upstream(upstream)
            .env("LLM_FIRST_CHUNK_TIMEOUT", "8s")
            .env("LLM_IDLE_TIMEOUT", "5s")
            .env("LLM_STREAM_TIMEOUT", "10s"),
    )
    .await
}

#[tokio::test]
async fn upstream_failing_every_attempt_is_one_llm_unavailable() {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::status(500, "{\"error\":\"boom\"}"));
    let server = retry_server(&upstream).await;
    let mut client = server.connect(&server.token("always-500", &["user"], None)).await;
    expect_failed_reply(
        &mut client,
        "s4",
        "LLM_UNAVAILABLE",
        "AI service is temporarily unavailable",
        0,
        Duration::from_millis(300),
    )
    .await;
    assert_eq!(upstream.request_count(), 3, "three attempts before giving up (§7.2)");
}

#[tokio::test]
async fn upstream_failing_once_is_retried_before_the_first_chunk() {
    let upstream = Upstream::start().await;
    upstream.push_script(Script::status(500, "{\"error\":\"boom\"}"));
    upstream.set_default(Script::reply(["Recovered"]));
    let server = retry_server(&upstream).await;
    let mut client = server.connect(&server.token("once-500", &["user"], None)).await;
    client.send_user_message("s5", "Hello").await;
    let frames = client.recv_reply(STEP).await;
    assert!(is_done(frames.last().expect("outcome")), "{frames:#?}");
    assert!(!frames.iter().any(|f| f["type"] == "error"), "{frames:#?}");
    assert_eq!(reply_text(&frames), "Recovered");
    assert_eq!(upstream.request_count(), 2, "one retry");
}

#[tokio::test]
async fn stream_without_end_event_is_one_llm_unavailable() {
    let upstream = Upstream::start().await;
    upstream.set_default(Script::reply(["Part ", "of it"]).with_behaviour(Behaviour::NoEndEvent));
    let server = deadline_server(&upstream).await;
    let mut client = server.connect(&server.token("truncated", &["user"], None)).await;
    expect_failed_reply(
        &mut client,
        "s6",
        "LLM_UNAVAILABLE",
        "AI service is temporarily unavailable",
        2,
        Duration::from_millis(500),
    )
    .await;
}

/// The history budget counts messages with text: a file between two questions does not push the
/// first exchange out, however the store reads the end of the session (§10 item 1).
#[tokio::test]
async fn history_budget_skips_messages_without_text() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("LLM_HISTORY_MAX_MESSAGES", "3"))
            .await;
    let mut client = server.connect(&server.token("history-files", &["user"], None)).await;
    upstream.push_script(Script::reply(["First answer"]));
    let (session, _) = chat(&mut client, "history-files-1", "First question").await;
    client
        .send_json(&json!({"type": "file_upload", "session_id": session, "sender": "user",
            "file_id": "a.png", "file_url": "https://files.invalid/a.png"}))
        .await;
    let echo = client.recv_frame(STEP).await;
    assert_eq!(echo["type"], "file_upload", "the file is stored and echoed: {echo}");
    upstream.push_script(Script::reply(["Second answer"]));
    chat(&mut client, &session, "Second question").await;
    assert_eq!(
        upstream.last_request().expect("a second request").body["messages"],
        json!([
            {"role": "user", "content": "First question"},
            {"role": "assistant", "content": "First answer"},
            {"role": "user", "content": "Second question"},
        ]),
        "three messages with text, the file skipped"
    );
}
