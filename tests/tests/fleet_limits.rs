#![cfg(not(madsim))]
//! Limits for the user across the fleet (issue 14, Behaviour 3 and 4): two real chatbox
//! processes on one MongoDB-compatible database (SecantusDB) and one real Redis. The user
//! message rate, the connections per user and the admin request rate hold across both
//! instances, refusals answer exactly as on one instance, and with Redis stopped each instance
//! still limits locally and returns to fleet-wide limits when Redis is back. The users' turns
//! (one message answered at a time across instances) have one holder at a time in Redis.

use std::collections::HashSet;
use std::time::Duration;

use chatbox::adapters::limits::RedisLimits;
use chatbox::engine::fleet_limits::{ConnectionLeases, Scope, SharedRates, SharedTokens};
use chatbox::engine::turns::{SharedTurns, Take};
use chatbox_core::rate::{Decision, RateLimit};
use chatbox_core::Instant;
use chatbox_tests::fleet::{wait_bus, Fleet};
use chatbox_tests::harness::{assert_error, is_done, now, unix_now, Client, Refused};
use chatbox_tests::http::{get, json};
use chatbox_tests::redis::RedisServer;
use serde_json::Value;

const STEP: Duration = Duration::from_secs(20);

/// A user's device: its connection and whether it is bound to the session yet (a bound device
/// also receives the replies to the user's other devices).
struct Device {
    client: Client,
    bound: bool,
}

/// One user writing to one session from several devices, and the replies already read to their
/// end. A device that binds on one instance while the other instance's publication of the
/// previous reply is still on its way through Redis gets that reply's last frames after its own
/// binding (a live frame of the session, delivered late); they belong to a finished reply and
/// are skipped, never taken for the answer to the message being sent.
struct User {
    devices: Vec<Device>,
    session: String,
    finished: HashSet<String>,
}

impl User {
    /// Unbound devices on `clients`, writing first to the proposed session id `session`.
    fn new(clients: Vec<Client>, session: &str) -> Self {
        let devices = clients.into_iter().map(|client| Device { client, bound: false }).collect();
        User { devices, session: session.to_string(), finished: HashSet::new() }
    }

    /// Sends one message from `devices[from]` and returns whether it was accepted; the refusal
    /// is checked to be today's `TOO_MANY_REQUESTS` answer. The other bound devices' copy of an
    /// accepted reply is read too (up to that reply's own `done`), so every device starts the
    /// next step with nothing of it pending.
    async fn send(&mut self, from: usize, text: &str) -> bool {
        let sender = &mut self.devices[from];
        sender.client.send_user_message(&self.session, text).await;
        sender.bound = true;
        let finished = &self.finished;
        let outcome = |f: &Value| !is_late(finished, f) && (is_done(f) || f["type"] == "error");
        let frames = sender.client.recv_until(outcome, STEP).await;
        let outcome = frames.last().expect("an outcome").clone();
        if outcome["type"] == "error" {
            assert_error(&outcome, "TOO_MANY_REQUESTS", "Too many requests, please slow down");
            let retry_after = outcome["error"]["retry_after"].as_u64().expect("retry_after in ms");
            // Exact in Redis (≤ the window); the local fallback's buckets may add under 3 s.
            assert!(retry_after > 0 && retry_after < 63_000, "{outcome}");
            assert_eq!(outcome["session_id"], self.session.as_str(), "{outcome}");
            return false;
        }
        assert!(is_done(&outcome), "{frames:#?}");
        self.session = outcome["session_id"].as_str().expect("session id").to_string();
        let reply = outcome["metadata"]["reply_id"].as_str().expect("reply id").to_string();
        for (i, other) in self.devices.iter_mut().enumerate() {
            if i != from && other.bound {
                let own = |f: &Value| is_done(f) && f["metadata"]["reply_id"] == reply.as_str();
                other.client.recv_until(own, STEP).await;
            }
        }
        self.finished.insert(reply);
        true
    }
}

/// Whether `frame` belongs to a reply already read to its end (a late copy of it).
fn is_late(finished: &HashSet<String>, frame: &Value) -> bool {
    frame["metadata"]["reply_id"].as_str().is_some_and(|id| finished.contains(id))
}

#[tokio::test]
async fn the_message_rate_holds_for_the_user_across_two_instances() {
    let fleet = Fleet::start(&[("RATE_LIMIT", "4")]).await;
    let token = fleet.a.token("fleet-rate", &["user"], None);
    let clients = vec![fleet.a.connect(&token).await, fleet.b.connect(&token).await];
    let mut user = User::new(clients, "fleet-rate-1");
    let mut accepted = Vec::new();
    for i in 0..8 {
        accepted.push(user.send(i % 2, &format!("message {i}")).await);
    }
    assert_eq!(accepted.iter().filter(|a| **a).count(), 4, "{accepted:?}");
    assert_eq!(accepted, [true, true, true, true, false, false, false, false]);
}

#[tokio::test]
async fn connections_per_user_hold_across_two_instances() {
    let fleet = Fleet::start(&[("MAX_CONNECTIONS", "2")]).await;
    let token = fleet.a.token("fleet-conns", &["user"], None);
    let header = format!("Bearer {token}");
    let auth = [("Authorization", header.as_str())];
    let on_a = fleet.a.try_connect(None, &auth).await.expect("first connection, on A");
    let _on_b = fleet.b.try_connect(None, &auth).await.expect("second connection, on B");
    for server in [&fleet.a, &fleet.b] {
        match server.try_connect(None, &auth).await {
            Err(Refused::Http { status: 429, body }) => {
                assert!(body.contains("Connection limit exceeded"), "{body}");
            }
            other => panic!("the third connection is refused fleet-wide: {other:?}"),
        }
    }
    // Closing the one on A frees a slot for the whole fleet (the release is asynchronous).
    on_a.close().await;
    let deadline = now() + Duration::from_secs(10);
    loop {
        match fleet.b.try_connect(None, &auth).await {
            Ok(_) => break,
            Err(Refused::Http { status: 429, .. }) if now() < deadline => {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(refused) => panic!("the freed slot is usable on B: {refused:?}"),
        }
    }
}

#[tokio::test]
async fn the_admin_rate_holds_across_two_instances() {
    let fleet = Fleet::start(&[("ADMIN_RATE_LIMIT", "3")]).await;
    let admin = fleet.a.token("fleet-admin", &["admin"], None);
    let mut statuses = Vec::new();
    let mut refusal: Option<Value> = None;
    for i in 0..6 {
        let server = if i % 2 == 0 { &fleet.a } else { &fleet.b };
        let answer = get(server, "/admin/sessions", Some(&admin)).await;
        if answer.status == 429 {
            refusal = Some(json(&answer));
            assert!(answer.header("retry-after").is_some(), "{answer:?}");
        }
        statuses.push(answer.status);
    }
    assert_eq!(statuses, [200, 200, 200, 429, 429, 429]);
    let body = refusal.expect("a refusal");
    assert_eq!(body["error"], "rate_limit_exceeded", "{body}");
    assert_eq!(body["message"], "Too many requests. Please try again later.", "{body}");
    let ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(ms > 0 && ms <= 60_000, "{body}");
}

#[tokio::test]
async fn without_redis_each_instance_limits_locally_and_the_fleet_limit_returns_with_it() {
    let mut fleet = Fleet::start(&[("RATE_LIMIT", "2")]).await;
    fleet.redis.stop().await;
    wait_bus(&fleet.a, "degraded").await;
    wait_bus(&fleet.b, "degraded").await;

    // During the outage each instance enforces the limit on its own traffic.
    let outage = fleet.a.token("fleet-outage", &["user"], None);
    for server in [&fleet.a, &fleet.b] {
        let mut user = User::new(vec![server.connect(&outage).await], "fleet-outage-1");
        let mut accepted = Vec::new();
        for i in 0..3 {
            accepted.push(user.send(0, &format!("outage {i}")).await);
        }
        assert_eq!(accepted, [true, true, false], "local limit on {}", server.addr());
    }
    let metrics = get(&fleet.a, "/metrics/prometheus", None).await;
    let fallbacks = metrics
        .body
        .lines()
        .find_map(|l| l.strip_prefix("chatbox_fleet_limit_fallbacks_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(fallbacks >= 1.0, "fallbacks counted: {}", metrics.body);

    fleet.redis.restart().await;
    wait_bus(&fleet.a, "ready").await;
    wait_bus(&fleet.b, "ready").await;
    // Past the limiter's pause after a failure, the limit is fleet-wide again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let token = fleet.a.token("fleet-back", &["user"], None);
    let clients = vec![fleet.a.connect(&token).await, fleet.b.connect(&token).await];
    let mut user = User::new(clients, "fleet-back-1");
    let mut accepted = Vec::new();
    for i in 0..4 {
        accepted.push(user.send(i % 2, &format!("back {i}")).await);
    }
    assert_eq!(accepted, [true, true, false, false]);
}

#[tokio::test]
async fn the_redis_script_allows_exactly_the_limit_under_concurrent_checks() {
    let redis = RedisServer::start().await;
    // Two limiters with their own connections, as two instances have.
    let a = RedisLimits::open(&redis.url()).expect("client");
    let b = RedisLimits::open(&redis.url()).expect("client");
    let limit = RateLimit::new(5, Duration::from_secs(2));
    let checks = (0..40).map(|i| {
        let limiter = if i % 2 == 0 { &a } else { &b };
        limiter.check(Scope::Messages, "racer", limit, Instant::ZERO)
    });
    let decisions: Vec<Decision> = futures_util::future::join_all(checks)
        .await
        .into_iter()
        .map(|d| d.expect("redis answers"))
        .collect();
    assert_eq!(decisions.iter().filter(|d| d.is_allowed()).count(), 5, "{decisions:?}");
    let wait = decisions.iter().filter_map(|d| d.retry_after()).max().expect("refusals");
    assert!(wait <= Duration::from_secs(2) + Duration::from_millis(1), "exact: {wait:?}");
    // Another key and the admin scope have their own logs.
    assert!(a.check(Scope::Admin, "racer", limit, Instant::ZERO).await.expect("ok").is_allowed());
    // Once the window has passed the budget is back.
    tokio::time::sleep(wait + Duration::from_millis(50)).await;
    assert!(b
        .check(Scope::Messages, "racer", limit, Instant::ZERO)
        .await
        .expect("ok")
        .is_allowed());

    // Leases: at most the limit live at once; a released one frees its slot at once.
    let ttl = Duration::from_secs(30);
    assert!(a.lease("u", "l1", 2, ttl).await.expect("ok"));
    assert!(b.lease("u", "l2", 2, ttl).await.expect("ok"));
    assert!(!a.lease("u", "l3", 2, ttl).await.expect("ok"), "full");
    assert!(a.lease("u", "l1", 2, ttl).await.expect("ok"), "renewing a held lease");
    b.release("u", "l2").await.expect("ok");
    assert!(a.lease("u", "l3", 2, ttl).await.expect("ok"));
    // A lease that is not renewed expires by itself.
    assert!(a.lease("v", "short", 1, Duration::from_millis(300)).await.expect("ok"));
    assert!(!b.lease("v", "other", 1, ttl).await.expect("ok"));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(b.lease("v", "other", 1, ttl).await.expect("ok"), "the expired lease left");
}

#[tokio::test]
async fn a_killed_instances_connection_slots_expire_by_themselves() {
    let fleet = Fleet::start(&[("MAX_CONNECTIONS", "1")]).await;
    let token = fleet.a.token("fleet-killed", &["user"], None);
    let header = format!("Bearer {token}");
    let auth = [("Authorization", header.as_str())];
    let _on_b = fleet.b.try_connect(None, &auth).await.expect("the connection on B");
    assert!(
        matches!(fleet.a.try_connect(None, &auth).await, Err(Refused::Http { status: 429, .. })),
        "B's connection holds the user's only slot"
    );
    let pid = fleet.b.pid().expect("B runs");
    let killed = std::process::Command::new("kill").args(["-9", &pid.to_string()]).status();
    assert!(killed.is_ok_and(|s| s.success()), "SIGKILL sent");
    // Nobody releases B's lease: it expires (CONNECTION_LEASE_TTL, 15 s) and A accepts again.
    let started = now();
    loop {
        match fleet.a.try_connect(None, &auth).await {
            Ok(_) => break,
            Err(Refused::Http { status: 429, .. })
                if started.elapsed() < Duration::from_secs(40) =>
            {
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(refused) => panic!("the dead instance's slot never expired: {refused:?}"),
        }
    }
}

#[tokio::test]
async fn an_instance_shutting_down_gives_its_connection_slots_back_at_once() {
    let mut fleet = Fleet::start(&[("MAX_CONNECTIONS", "1")]).await;
    let token = fleet.a.token("fleet-drained", &["user"], None);
    let header = format!("Bearer {token}");
    let auth = [("Authorization", header.as_str())];
    let mut on_b = fleet.b.try_connect(None, &auth).await.expect("the connection on B");
    // B subscribes the user's channel in the background once the connection registered; the
    // refusal on A is published there, so A is tried once B listens (under load it may lag).
    let channel = chatbox::engine::delivery::user_channel("fleet-drained");
    assert!(fleet.redis.until_subscribed(&channel, STEP).await, "B listens to {channel}");
    assert!(
        matches!(fleet.a.try_connect(None, &auth).await, Err(Refused::Http { status: 429, .. })),
        "B's connection holds the user's only slot"
    );
    // The refusal on A is told to the user's open connection on B, as on one instance.
    let note = on_b.recv_frame(STEP).await;
    assert_eq!(note["type"], "notification", "{note}");
    // A rolling deploy: B drains (close 1001) and exits, and its lease goes with the connection.
    fleet.b.sigterm();
    on_b.expect_close(STEP).await;
    let (status, _) = fleet.b.wait_exit(Duration::from_secs(35)).await;
    assert!(status.success(), "{status}");
    let started = now();
    loop {
        match fleet.a.try_connect(None, &auth).await {
            Ok(_) => break,
            // Well within the 15 s a lease lives without renewal.
            Err(Refused::Http { status: 429, .. })
                if started.elapsed() < Duration::from_secs(5) =>
            {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(refused) => panic!("the drained instance kept the slot: {refused:?}"),
        }
    }
}

/// `USER_TOKEN_BUDGET` with `REDIS_URL` (issue 17): the spending of every instance counts. Two
/// replies of 60 tokens on instance A use up a budget of 100; the user's next message, sent to
/// instance B (which answered nothing for them), is refused before any provider is called.
#[tokio::test]
async fn the_daily_token_budget_holds_for_the_user_across_two_instances() {
    let script = chatbox_tests::upstream::Script::reply(["Sixty tokens"]).with_usage(30, 30);
    let fleet = Fleet::scripted(Some(script), &[("USER_TOKEN_BUDGET", "100")]).await;
    let token = fleet.a.token("fleet-tokens", &["user"], None);
    let mut on_a = fleet.a.connect(&token).await;
    let mut session = "new-fleet-tokens".to_string();
    for text in ["one", "two"] {
        on_a.send_user_message(&session, text).await;
        let frames = on_a.recv_reply(STEP).await;
        let outcome = frames.last().expect("an outcome");
        assert!(is_done(outcome), "{frames:#?}");
        session = outcome["session_id"].as_str().expect("session id").to_string();
    }
    let requests = fleet.upstream.request_count();
    let mut on_b = fleet.b.connect(&token).await;
    on_b.send_user_message(&session, "three").await;
    let frames = on_b.recv_reply(STEP).await;
    let outcome = frames.last().expect("an outcome");
    assert_error(outcome, "TOO_MANY_REQUESTS", "Too many requests, please slow down");
    let retry_after = outcome["error"]["retry_after"].as_u64().expect("retry_after in ms");
    assert!(retry_after > 0 && retry_after <= 86_400_000, "until the next UTC midnight: {outcome}");
    assert_eq!(fleet.upstream.request_count(), requests, "refused before the provider");
    // The count is in Redis under the day's key.
    let day = chatbox_core::usage::day_of(chatbox_core::UnixMillis(unix_now() * 1000));
    let redis = RedisLimits::open(&fleet.redis.url()).expect("redis url");
    assert_eq!(redis.spent("fleet-tokens", day).await, Ok(120));
}

#[tokio::test]
async fn a_users_turn_has_one_holder_at_a_time_goes_to_waiters_in_order_and_frees_itself() {
    let redis = RedisServer::start().await;
    let a = RedisLimits::open(&redis.url()).expect("client");
    let b = RedisLimits::open(&redis.url()).expect("client");
    let ttl = Duration::from_millis(800);
    let held = |take: Result<Take, _>| take.expect("redis answers") == Take::Held;
    let queued_behind = |take: Result<Take, _>, who: &str| {
        take.expect("redis answers") == Take::Queued { ahead: who.to_string() }
    };
    // Many holders on two connections race for one free turn: exactly one gets it, and the
    // others queue behind it.
    let takes = (0..20).map(|i| {
        let turns = if i % 2 == 0 { &a } else { &b };
        async move { (i, turns.take("racer", &format!("h{i}"), ttl).await) }
    });
    let answers = futures_util::future::join_all(takes).await;
    let winners: Vec<usize> =
        answers.iter().filter(|(_, t)| t == &Ok(Take::Held)).map(|(i, _)| *i).collect();
    assert_eq!(winners.len(), 1, "one holder: {answers:?}");
    let holder = format!("h{}", winners[0]);
    for (i, take) in &answers {
        if *i != winners[0] {
            assert_eq!(take, &Ok(Take::Queued { ahead: holder.clone() }), "h{i}");
        }
    }
    for i in 0..20 {
        if i != winners[0] {
            b.give_back("racer", &format!("h{i}")).await.expect("redis answers");
        }
    }
    // Only the holder renews it; another holder giving it back changes nothing.
    assert_eq!(a.renew("racer", &holder, ttl).await, Ok(true));
    assert_eq!(b.renew("racer", "other", ttl).await, Ok(false));
    assert_eq!(b.give_back("racer", "other").await, Ok(()));
    // Waiters get it in the order they first asked, not in the order they ask once it is free
    // (names sorting against the arrival order, so a tie broken by name would show).
    assert!(queued_behind(b.take("racer", "z-first", ttl).await, &holder));
    assert_eq!(a.give_back("racer", &holder).await, Ok(()));
    assert!(queued_behind(a.take("racer", &holder, ttl).await, "z-first"), "the old holder queues");
    assert!(queued_behind(a.take("racer", "a-second", ttl).await, "z-first"));
    assert!(held(b.take("racer", "z-first", Duration::from_secs(10)).await));
    // Other users' turns are their own, even a user whose id ends like a key of another kind.
    assert!(held(b.take("racer:queue", "z-first", ttl).await), "not racer's queue");
    assert!(held(b.take("someone-else", "z-first", ttl).await));
    // A waiter that stops asking leaves the queue: the old holder, ahead of "a-second", asks no
    // more; once "z-first" gives the turn back, "a-second" gets it.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert!(queued_behind(a.take("racer", "a-second", ttl).await, "z-first"));
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert_eq!(b.give_back("racer", "z-first").await, Ok(()));
    assert!(held(a.take("racer", "a-second", ttl).await), "silent waiters dropped after 2 s");
    // Renewed, it outlives its first TTL; not renewed (a killed instance), it expires.
    tokio::time::sleep(ttl / 2).await;
    assert_eq!(a.renew("racer", "a-second", ttl).await, Ok(true));
    tokio::time::sleep(ttl * 2 / 3).await;
    assert!(queued_behind(b.take("racer", "third", ttl).await, "a-second"), "renewed");
    b.give_back("racer", "third").await.expect("redis answers");
    tokio::time::sleep(ttl).await;
    assert!(held(b.take("racer", "third", ttl).await), "expired without renewal");
    assert_eq!(a.renew("racer", "a-second", ttl).await, Ok(false));
}
