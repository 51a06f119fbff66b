#![cfg(not(madsim))]
//! Two real chatbox processes on one MongoDB-compatible database (SecantusDB) and one real Redis
//! (issue 14): frames produced on one instance reach the connections bound to the same session on
//! the other; a Redis outage degrades `/readyz` (still ready) without stopping local delivery,
//! and the fleet comes back by itself when Redis does (the outage logged once); credentials in
//! `REDIS_URL` never reach the log. Issue 15: a help request made on one
//! instance reaches an admin console's event stream on the other within 2 s, and a `stop` sent on
//! one instance ends the reply streaming on the other. Issue 16: a session ended through
//! `POST {P}/sessions/:id/end` on one instance is final on the other too, whether or not a
//! connection is bound to it there. PROTOCOL.md §10 item 27 across the fleet: a user's message
//! sent on one instance while their reply streams on the other is answered after that reply,
//! with it in the conversation sent to the model; if the instance answering is killed, the
//! waiting message is answered once that instance's turn expires; one still waiting when its own
//! instance drains is refused and not stored.

use std::time::Duration;

use chatbox_tests::e2e::{chat, is_active, stored_messages};
use chatbox_tests::events::EventStream;
use chatbox_tests::fleet::{wait_bus, Fleet};
use chatbox_tests::harness::{assert_error, is_done, now, Client, Server, ServerOpts};
use chatbox_tests::http::{get, ok_json, post};
use chatbox_tests::redis::RedisServer;
use chatbox_tests::upstream::{Script, Upstream};
use serde_json::{json, Value};

const STEP: Duration = Duration::from_secs(20);

/// Waits for the `done` frame of a reply in `session` on `client`.
async fn done_in(client: &mut Client, session: &str) -> Vec<Value> {
    let frames = client.recv_until(|f| is_done(f) && f["session_id"] == session, STEP).await;
    assert!(frames.last().is_some_and(is_done), "no done frame for {session}: {frames:#?}");
    frames
}

#[tokio::test]
async fn a_reply_reaches_the_users_devices_on_both_instances_and_survives_a_redis_restart() {
    let Fleet { mongo: _mongo, mut redis, upstream: _upstream, a, b } = Fleet::start(&[]).await;
    let token = a.token("fleet-user", &["user"], None);
    let mut phone = a.connect(&token).await;
    let mut laptop = b.connect(&token).await;
    let (session, _) = chat(&mut phone, "fleet-1", "from the phone on A").await;
    let (same, _) = chat(&mut laptop, &session, "from the laptop on B").await;
    assert_eq!(same, session);
    // The laptop's message was answered on B; the phone on A sees that reply too.
    done_in(&mut phone, &session).await;

    redis.stop().await;
    let degraded = wait_bus(&a, "degraded").await;
    assert_eq!(degraded["status"], "ready", "a bus outage alone keeps the instance ready");
    assert!(degraded["checks"]["bus"]["error"].is_string(), "{degraded}");
    // Local delivery goes on during the outage, the message answered without the user's turn.
    chat(&mut phone, &session, "during the outage").await;
    assert!(counter(&a, "chatbox_fleet_turn_fallbacks_total").await >= 1.0, "counted");

    redis.restart().await;
    wait_bus(&a, "ready").await;
    wait_bus(&b, "ready").await;
    chat(&mut laptop, &session, "after the outage").await;
    done_in(&mut phone, &session).await;
    // The outage was logged once, however many reconnects it took, and the return once.
    let log = a.log_text();
    assert_eq!(log.matches("fleet bus down").count(), 1, "one outage, logged once");
    assert_eq!(log.matches("fleet bus up").count(), 2, "at start and after the outage");
    let turns_down = "fleet-wide turns unavailable: each instance orders only its own";
    assert_eq!(log.matches(turns_down).count(), 1, "the turns' outage logged once");
}

#[tokio::test]
async fn redis_credentials_never_reach_the_log() {
    // Redis's `default` user has no password here, so it accepts any: the bus comes up and
    // its address is logged, then logged again when Redis goes away.
    let mut redis = RedisServer::start().await;
    let url = redis.url().replace("redis://", "redis://default:s3cret-pw@");
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream).env("REDIS_URL", &url)).await;
    wait_bus(&server, "ready").await;
    redis.stop().await;
    wait_bus(&server, "degraded").await;
    assert!(server.wait_for_log("fleet bus down", STEP).await, "{}", server.tail());
    let log = server.log_text();
    let masked = url.replace("default:s3cret-pw", "<credentials>");
    assert!(log.matches(&masked).count() >= 2, "the masked URL, up and down: {log}");
    assert!(!log.contains("s3cret-pw"), "the password is never logged: {log}");
}

#[tokio::test]
async fn a_takeover_on_one_instance_reaches_the_user_on_the_other_and_both_talk() {
    let Fleet { mongo: _mongo, redis: _redis, upstream: _upstream, a, b } = Fleet::start(&[]).await;
    let mut user = a.connect(&a.token("fleet-taken", &["user"], None)).await;
    let (session, _) = chat(&mut user, "fleet-taken-1", "I need a person").await;

    let jane = b.token("admin-1", &["admin"], Some("Jane Admin"));
    let taken = post(&b, &format!("/admin/takeover/{session}"), Some(&jane)).await;
    assert_eq!(taken.status, 200, "{taken:?}");
    let join = user.recv_until(|f| f["type"] == "admin_join", STEP).await;
    assert_eq!(join.last().expect("admin_join")["session_id"], session.as_str());

    let mut admin = b.connect(&jane).await;
    admin.send_user_message(&session, "Hi, this is Jane").await;
    let relayed =
        user.recv_until(|f| f["type"] == "user_message" && f["sender"] == "admin", STEP).await;
    assert_eq!(relayed.last().expect("the admin's message")["content"], "Hi, this is Jane");

    user.send_user_message(&session, "Thanks Jane").await;
    let from_user =
        admin.recv_until(|f| f["type"] == "user_message" && f["sender"] == "user", STEP).await;
    assert_eq!(from_user.last().expect("the user's message")["content"], "Thanks Jane");
}

#[tokio::test]
async fn an_instance_killed_with_sigkill_leaves_the_others_serving() {
    let Fleet { mongo: _mongo, redis: _redis, upstream: _upstream, a, b } = Fleet::start(&[]).await;
    let token = a.token("fleet-survivor", &["user"], None);
    let mut phone = a.connect(&token).await;
    let mut laptop = b.connect(&token).await;
    let (session, _) = chat(&mut phone, "fleet-survivor-1", "before the kill").await;
    chat(&mut laptop, &session, "laptop joins").await;
    done_in(&mut phone, &session).await;

    let pid = b.pid().expect("B runs");
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGKILL sent");
    // A keeps serving, with the bus up, and a new connection to A continues the session.
    let mut again = a.connect(&token).await;
    let (same, _) = chat(&mut again, &session, "after the kill").await;
    assert_eq!(same, session);
    let ready = wait_bus(&a, "ready").await;
    assert_eq!(ready["status"], "ready", "{ready}");
}

#[tokio::test]
async fn a_help_request_on_one_instance_reaches_a_console_on_the_other_and_a_stop_crosses_too() {
    let Fleet { mongo: _mongo, redis: _redis, upstream, a, b } = Fleet::start(&[]).await;
    let admin = b.token("admin-2", &["admin"], Some("Ben Admin"));
    let mut console = EventStream::open(b.addr(), &admin).await;
    assert_eq!(console.status, 200);
    console.until("ready", STEP).await;

    let token = a.token("fleet-help", &["user"], None);
    let mut phone = a.connect(&token).await;
    let (session, _) = chat(&mut phone, "fleet-help-1", "Something is wrong").await;
    phone.send_json(&json!({"type": "help_request", "session_id": session})).await;
    let seen = console.until("help_requested", Duration::from_secs(2)).await;
    let help = &seen.last().expect("help_requested").data;
    assert_eq!(help["session_id"], session.as_str(), "{seen:#?}");
    assert_eq!(help["user_id"], "fleet-help");
    assert!(seen.iter().any(|e| e.name == "message"), "messages on A were announced: {seen:#?}");

    // A slow reply streams on A; the user's laptop on B stops it.
    let chunks: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    upstream.push_script(Script::reply(chunks).with_chunk_interval(Duration::from_millis(150)));
    let mut laptop = b.connect(&token).await;
    phone.send_user_message(&session, "Tell me everything").await;
    phone.recv_until(|f| f["type"] == "ai_response" && f["metadata"]["seq"] == "2", STEP).await;
    laptop
        .send_json(&json!({"type": "stop", "session_id": session, "timestamp": chrono::Utc::now().to_rfc3339()}))
        .await;
    let frames = done_in(&mut phone, &session).await;
    let done = frames.last().expect("done");
    assert_eq!(done["metadata"]["interrupted"], "true", "stopped from B: {done}");
    let shown: String = frames
        .iter()
        .filter(|f| f["type"] == "ai_response" && f["metadata"]["done"] == "false")
        .filter_map(|f| f["content"].as_str())
        .collect();
    assert!(!shown.contains("w39"), "stopped before the end: {shown}");
}

#[tokio::test]
async fn a_stop_on_one_instance_reaches_a_reply_streaming_on_the_other_after_the_user_left_it() {
    let Fleet { mongo: _mongo, redis: _redis, upstream, a, b } = Fleet::start(&[]).await;
    let token = a.token("fleet-stop", &["user"], None);
    let mut phone = a.connect(&token).await;
    let (session, _) = chat(&mut phone, "fleet-stop-1", "Hello").await;
    let chunks: Vec<String> = (0..40).map(|i| format!("w{i} ")).collect();
    upstream.push_script(Script::reply(chunks).with_chunk_interval(Duration::from_millis(150)));
    phone.send_user_message(&session, "Tell me everything").await;
    phone.recv_until(|f| f["type"] == "ai_response" && f["metadata"]["seq"] == "2", STEP).await;
    // The phone leaves A, which keeps streaming the reply with no connection of the session.
    drop(phone);
    let mut laptop = b.connect(&token).await;
    laptop
        .send_json(&json!({"type": "stop", "session_id": session, "timestamp": chrono::Utc::now().to_rfc3339()}))
        .await;
    // The reply is stored when it ends: at once when stopped, after 6 s of chunks if not.
    let reply = tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let body = ok_json(&get(&b, &format!("/sessions/{session}"), Some(&token)).await);
            let messages = body["messages"].as_array().cloned().unwrap_or_default();
            if let Some(reply) = messages.get(3) {
                break reply.clone();
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("the reply is stored");
    assert_eq!(reply["metadata"]["interrupted"], "true", "stopped from B: {reply}");
    let text = reply["content"].as_str().unwrap_or_default();
    assert!(!text.contains("w39"), "stopped before the end: {text}");
}

/// The `session_id`s announced by `connection_status` frames among `frames`.
fn announced(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| f["type"] == "connection_status")
        .filter_map(|f| f["session_id"].as_str())
        .collect()
}

#[tokio::test]
async fn an_end_on_one_instance_is_final_on_the_other_where_the_user_is_connected() {
    let Fleet { mongo: _mongo, redis: _redis, upstream: _upstream, a, b } = Fleet::start(&[]).await;
    let token = a.token("fleet-ender", &["user"], None);
    let mut phone = a.connect(&token).await;
    let (ended, _) = chat(&mut phone, "fleet-end-1", "before the end").await;
    let before = stored_messages(&b, &token, &ended).await;

    // Ended through B while the phone stays connected to A, which holds the session in memory.
    let end = post(&b, &format!("/sessions/{ended}/end"), Some(&token)).await;
    assert_eq!(ok_json(&end), json!({"status": "ended"}));
    assert!(
        a.wait_for_log("session ended on another instance", STEP).await,
        "A heard of the end\n{}",
        a.tail()
    );
    let (fresh, frames) = chat(&mut phone, &ended, "after the end").await;
    assert_ne!(fresh, ended, "a new session, not the ended one: {frames:#?}");
    assert_eq!(announced(&frames).last(), Some(&fresh.as_str()), "announced: {frames:#?}");
    for server in [&a, &b] {
        assert!(!is_active(server, &token, &ended).await, "the ended session stays ended");
        assert!(is_active(server, &token, &fresh).await);
    }
    assert_eq!(stored_messages(&a, &token, &ended).await, before, "nothing appended to it");

    // With no connection bound to it on A (the user went away), A still hears of an end made
    // on B and the user's return to A starts yet another session.
    phone.close().await;
    let end = post(&b, &format!("/sessions/{fresh}/end"), Some(&token)).await;
    assert_eq!(ok_json(&end), json!({"status": "ended"}));
    let heard = || a.log_text().matches("session ended on another instance").count();
    let deadline = now() + STEP;
    while heard() < 2 {
        assert!(now() < deadline, "A heard of the second end\n{}", a.tail());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut back = a.connect(&token).await;
    let (third, frames) = chat(&mut back, &fresh, "back again").await;
    assert!(third != fresh && third != ended, "yet another session: {frames:#?}");
    assert!(!is_active(&b, &token, &fresh).await, "the second ended session stays ended");
    assert_eq!(stored_messages(&b, &token, &fresh).await.len(), 2, "its one exchange only");
}

#[tokio::test]
async fn a_message_on_one_instance_waits_for_the_users_reply_streaming_on_the_other() {
    let chunks: Vec<String> = (0..10).map(|i| format!("w{i} ")).collect();
    let script = Script::reply(chunks.clone()).with_chunk_interval(Duration::from_millis(150));
    let fleet = Fleet::scripted(Some(script), &[]).await;
    // The phone asks on A with the id it proposes; its reply streams.
    let (token, mut phone, mut seen, session) =
        phone_streaming_on_a(&fleet, "two-instances", "turns-1").await;
    // The laptop asks on B in the same session while that reply streams.
    let mut laptop = fleet.b.connect(&token).await;
    laptop.send_user_message(&session, "Count again").await;
    // The phone sees both replies (B's through the bus), the second after the first's done.
    for _ in 0..2 {
        seen.extend(phone.recv_until(|f| is_done(f) || f["type"] == "error", 4 * STEP).await);
    }
    let replies: Vec<&Value> = seen.iter().filter(|f| f["type"] == "ai_response").collect();
    let ids: Vec<&str> =
        replies.iter().filter_map(|f| f["metadata"]["reply_id"].as_str()).collect();
    let first = ids[0];
    let first_done = ids.iter().rposition(|id| *id == first).expect("first reply");
    let second_start = ids.iter().position(|id| *id != first).expect("a second reply: {seen:#?}");
    assert!(first_done < second_start, "answered one after the other: {seen:#?}");
    let whole = chunks.concat();
    for id in [first, ids[second_start]] {
        let of_reply: Vec<Value> = replies
            .iter()
            .filter(|f| f["metadata"]["reply_id"] == id)
            .map(|f| (*f).clone())
            .collect();
        let done = of_reply.last().expect("frames");
        assert!(is_done(done) && done["metadata"].get("interrupted").is_none(), "{of_reply:#?}");
        assert_eq!(chatbox_tests::harness::reply_text(&of_reply), whole, "reply {id} whole");
    }
    // B asked the model with A's exchange in the conversation.
    let requests = fleet.upstream.requests();
    let second = &requests.last().expect("two requests").body;
    let contents: Vec<&str> = second["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents[contents.len() - 3..], ["Count for me", whole.as_str(), "Count again"]);
    let stored = stored_messages(&fleet.a, &token, &session).await;
    let stored: Vec<(&str, &str)> = stored.iter().map(|(s, c)| (s.as_str(), c.as_str())).collect();
    assert_eq!(
        stored,
        [("user", "Count for me"), ("ai", &whole), ("user", "Count again"), ("ai", &whole)]
    );
    let metrics = get(&fleet.b, "/metrics/prometheus", None).await;
    let waits =
        metrics.body.lines().find_map(|l| l.strip_prefix("chatbox_fleet_turn_waits_total "));
    assert_eq!(waits.map(str::trim), Some("1"), "{}", metrics.body);
}

/// `user`'s phone on A asks "Count for me" in a new session proposed as `proposed` and reads
/// its reply's first two chunks: the token, the phone, the frames seen and the session id.
async fn phone_streaming_on_a(
    fleet: &Fleet,
    user: &str,
    proposed: &str,
) -> (String, Client, Vec<Value>, String) {
    let token = fleet.a.token(user, &["user"], None);
    let mut phone = fleet.a.connect(&token).await;
    phone.send_user_message(proposed, "Count for me").await;
    let seen =
        phone.recv_until(|f| f["type"] == "ai_response" && f["metadata"]["seq"] == "2", STEP).await;
    let session = seen.last().expect("chunk")["session_id"].as_str().expect("id").to_string();
    (token, phone, seen, session)
}

/// The user's laptop on B asks "Are you there?" in `session`; returns once B counts the
/// message waiting for the user's turn.
async fn laptop_waiting_on_b(fleet: &Fleet, token: &str, session: &str) -> Client {
    let mut laptop = fleet.b.connect(token).await;
    laptop.send_user_message(session, "Are you there?").await;
    let deadline = now() + STEP;
    while counter(&fleet.b, "chatbox_fleet_turn_waits_total").await < 1.0 {
        assert!(now() < deadline, "B never waited for A's turn");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    laptop
}

/// The value of counter `name` in `server`'s Prometheus metrics (0 when absent).
async fn counter(server: &Server, name: &str) -> f64 {
    let metrics = get(server, "/metrics/prometheus", None).await;
    let prefix = format!("{name} ");
    let value = metrics.body.lines().find_map(|l| l.strip_prefix(prefix.as_str()).map(str::trim));
    value.and_then(|v| v.parse().ok()).unwrap_or(0.0)
}

#[tokio::test]
async fn a_message_waiting_for_a_killed_instance_is_answered_once_its_turn_expires() {
    // A's reply would stream for 15 s; B's is short.
    let long = Script::reply((0..60).map(|i| format!("w{i} ")))
        .with_chunk_interval(Duration::from_millis(250));
    let fleet = Fleet::scripted(Some(long), &[]).await;
    let (token, phone, _, session) =
        phone_streaming_on_a(&fleet, "killed-holder", "killed-1").await;
    fleet.upstream.push_script(Script::reply(["Still ", "here."]));
    // B's message waits for A's turn.
    let mut laptop = laptop_waiting_on_b(&fleet, &token, &session).await;
    let pid = fleet.a.pid().expect("A runs");
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGKILL sent");
    drop(phone);
    // Nobody renews A's turn now: it expires within FLEET_TURN_TTL (15 s) and B answers.
    let frames = laptop.recv_until(|f| is_done(f) || f["type"] == "error", 3 * STEP).await;
    let done = frames.last().expect("frames");
    assert!(is_done(done) && done["metadata"].get("interrupted").is_none(), "{frames:#?}");
    let replies: Vec<Value> = frames.into_iter().filter(|f| f["type"] == "ai_response").collect();
    assert_eq!(chatbox_tests::harness::reply_text(&replies), "Still here.");
    // With the turn, not by giving up on it: A's stored message is in B's conversation.
    assert_eq!(counter(&fleet.b, "chatbox_fleet_turn_fallbacks_total").await, 0.0);
    let request = fleet.upstream.last_request().expect("B asked the model");
    let contents: Vec<&str> = request.body["messages"]
        .as_array()
        .expect("messages")
        .iter()
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(contents[contents.len() - 2..], ["Count for me", "Are you there?"]);
}

#[tokio::test]
async fn a_message_still_waiting_when_its_instance_drains_is_refused_and_not_stored() {
    let chunks: Vec<String> = (0..24).map(|i| format!("w{i} ")).collect();
    let script = Script::reply(chunks.clone()).with_chunk_interval(Duration::from_millis(250));
    let mut fleet = Fleet::scripted(Some(script), &[]).await;
    let (token, mut phone, seen, session) =
        phone_streaming_on_a(&fleet, "drained-waiter", "drained-1").await;
    let mut laptop = laptop_waiting_on_b(&fleet, &token, &session).await;
    // B drains while its message waits: nothing is stored, and the laptop is told so — by the
    // refusal a draining server gives, unless B's close (1001, at once: B streams no reply)
    // overtakes it; either way the message was never acknowledged.
    fleet.b.sigterm();
    let (frames, close) = laptop.frames_until_close(STEP).await;
    for frame in frames.iter().filter(|f| f["type"] != "connection_status") {
        assert_error(frame, "SERVICE_ERROR", "Service temporarily unavailable");
    }
    let close = close.expect("a close frame");
    assert_eq!((u16::from(close.code), close.reason.as_str()), (1001, "Server shutting down"));
    let (status, _) = fleet.b.wait_exit(STEP).await;
    assert!(status.success(), "B drained: {status}");
    // A's reply goes on whole, and the store holds only A's exchange.
    let rest = phone.recv_until(is_done, STEP).await;
    let whole = chunks.concat();
    let mut replies: Vec<Value> = seen.into_iter().filter(|f| f["type"] == "ai_response").collect();
    replies.extend(rest.into_iter().filter(|f| f["type"] == "ai_response"));
    assert_eq!(chatbox_tests::harness::reply_text(&replies), whole);
    let deadline = now() + STEP;
    let stored = loop {
        let stored = stored_messages(&fleet.a, &token, &session).await;
        if stored.len() >= 2 || now() > deadline {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let stored: Vec<(&str, &str)> = stored.iter().map(|(s, c)| (s.as_str(), c.as_str())).collect();
    assert_eq!(stored, [("user", "Count for me"), ("ai", whole.as_str())]);
}
