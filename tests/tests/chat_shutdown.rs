#![cfg(not(madsim))]
//! The process lifecycle of the real binary (PROTOCOL.md §3.12, §9, §10 items 1, 23; seed fixes
//! #15, #19): graceful shutdown on SIGTERM (a reply in flight finishes, or is cut at
//! `SHUTDOWN_TIMEOUT` with `Service temporarily unavailable`; every connection gets close 1001;
//! exit 0 in time), a restart on the same data directory that keeps the conversation, and
//! `check-config` reporting every problem at once.

use std::time::Duration;

use chatbox_tests::harness::{assert_error, check_config, is_done, reply_text, Server, ServerOpts};
use chatbox_tests::upstream::{Behaviour, Script, Upstream};
use serde_json::json;

/// Generous bound on one step, so a bug fails the test instead of hanging it.
const STEP: Duration = Duration::from_secs(5);

#[tokio::test]
async fn sigterm_lets_a_reply_in_flight_finish_then_closes_1001() {
    let upstream = Upstream::start().await;
    // Five chunks 500 ms apart: about 2 s of streaming.
    let chunks: Vec<String> = (0..5).map(|i| format!("part{i} ")).collect();
    upstream.set_default(Script::reply(chunks).with_chunk_interval(Duration::from_millis(500)));
    let mut server =
        Server::start(ServerOpts::with_upstream(&upstream).env("SHUTDOWN_TIMEOUT", "10s")).await;
    let mut client = server.connect(&server.token("drain-user", &["user"], None)).await;
    let mut idle = server.connect(&server.token("idle-user", &["user"], None)).await;
    client.send_user_message("drain-1", "Tell me a story").await;
    let mut frames = client.recv_until(|f| f["type"] == "ai_response", STEP).await;

    server.sigterm();
    frames.extend(client.recv_reply(STEP).await);
    assert!(is_done(frames.last().expect("outcome")), "the reply finishes: {frames:#?}");
    assert_eq!(reply_text(&frames), "part0 part1 part2 part3 part4 ");
    for c in [&mut client, &mut idle] {
        let close = c.expect_close(STEP).await.expect("a close frame");
        assert_eq!(u16::from(close.code), 1001, "{close:?}");
        assert_eq!(close.reason.as_str(), "Server shutting down", "{close:?}");
    }
    let (status, after) = server.wait_exit(Duration::from_secs(12)).await;
    assert!(status.success(), "exit 0: {status}");
    assert!(after < Duration::from_secs(10), "exits when drained, not at the deadline: {after:?}");
}

#[tokio::test]
async fn sigterm_cuts_a_stalled_reply_at_the_shutdown_deadline() {
    let upstream = Upstream::start().await;
    upstream
        .set_default(Script::reply(["first ", "never"]).with_behaviour(Behaviour::StallAfter(1)));
    let mut server =
        Server::start(ServerOpts::with_upstream(&upstream).env("SHUTDOWN_TIMEOUT", "2s")).await;
    let mut client = server.connect(&server.token("cut-user", &["user"], None)).await;
    client.send_user_message("cut-1", "Tell me a story").await;
    let frames = client.recv_until(|f| f["type"] == "ai_response", STEP).await;
    let session = frames.last().expect("chunk")["session_id"].clone();

    server.sigterm();
    let cut = client.recv_frame(STEP).await;
    assert_error(&cut, "SERVICE_ERROR", "Service temporarily unavailable");
    assert_eq!(cut["session_id"], session, "{cut}");
    let close = client.expect_close(STEP).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    assert_eq!(close.reason.as_str(), "Server shutting down", "{close:?}");
    let (status, after) = server.wait_exit(Duration::from_secs(6)).await;
    assert!(status.success(), "exit 0: {status}");
    // A correctness bound (the deadline is honoured), not a performance claim.
    assert!(after < Duration::from_secs(4), "exit within SHUTDOWN_TIMEOUT + 2 s: {after:?}");
    // The reply is cut at the drain deadline, a share of SHUTDOWN_TIMEOUT before the end
    // that is kept for closing; not at once.
    assert!(after >= Duration::from_secs(1), "the reply had its drain time: {after:?}");
}

#[tokio::test]
async fn restart_on_the_same_data_dir_keeps_the_conversation() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token("restart-user", &["user"], None);
    let mut client = server.connect(&token).await;
    upstream.push_script(Script::reply(["Stored ", "answer"]));
    client.send_user_message("restart-1", "Stored question").await;
    let frames = client.recv_reply(STEP).await;
    let done = frames.last().expect("outcome");
    assert!(is_done(done), "{frames:#?}");
    let session = done["session_id"].as_str().expect("session").to_string();

    let mut server = server.restart().await;
    let _ = client.expect_close(STEP).await;
    let mut client = server.connect(&token).await;
    client.send_user_message(&session, "After the restart").await;
    let frames = client.recv_reply(STEP).await;
    let done = frames.last().expect("outcome");
    assert!(is_done(done), "{frames:#?}");
    assert_eq!(done["session_id"], session.as_str(), "the session survives the restart");
    assert_eq!(
        upstream.last_request().expect("request").body["messages"],
        json!([
            {"role": "user", "content": "Stored question"},
            {"role": "assistant", "content": "Stored answer"},
            {"role": "user", "content": "After the restart"},
        ]),
        "the stored conversation was reloaded"
    );
    server.sigterm();
    let (status, _) = server.wait_exit(Duration::from_secs(10)).await;
    assert!(status.success(), "{status}");
}

#[tokio::test]
async fn check_config_reports_every_problem_and_exits_non_zero() {
    let (status, stdout, stderr) = check_config(&[
        ("JWT_SECRET", "short"),
        ("CHATBOX_PATH_PREFIX", "nope"),
        ("ENCRYPTION_KEY", "abc"),
    ])
    .await;
    assert!(!status.success(), "invalid configuration: {status}\n{stdout}\n{stderr}");
    let report = format!("{stdout}{stderr}");
    for needle in ["JWT_SECRET", "CHATBOX_PATH_PREFIX", "ENCRYPTION_KEY", "LLM_PROVIDER_1_ID"] {
        assert!(report.contains(needle), "{needle} is reported:\n{report}");
    }
    assert!(report.contains("4 problems"), "all four at once:\n{report}");

    // The same binary accepts a good configuration.
    let secret = chatbox::app::cli::generate_secret();
    let (status, stdout, stderr) = check_config(&[
        ("JWT_SECRET", &secret),
        ("LLM_PROVIDER_1_ID", "m"),
        ("LLM_PROVIDER_1_NAME", "M"),
        ("LLM_PROVIDER_1_TYPE", "openai"),
        ("LLM_PROVIDER_1_ENDPOINT", "http://127.0.0.1:9"),
        ("LLM_PROVIDER_1_API_KEY", "k"),
    ])
    .await;
    assert!(status.success(), "valid configuration: {status}\n{stdout}\n{stderr}");
    assert!(stdout.contains("configuration is valid"), "{stdout}");
}
