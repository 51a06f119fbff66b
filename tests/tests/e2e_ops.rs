#![cfg(not(madsim))]
//! Operations routes end to end through the real binary (PROTOCOL.md §4.9–§4.11, §3.12):
//! the Prometheus exposition after real traffic (every §4.11 family with its kind, the values
//! the traffic implies, histogram buckets), the metrics network allow-list (403, not bypassed by
//! a forged `X-Forwarded-For`), `/healthz` and `/readyz` bodies, and `/readyz` answering `503`
//! while a SIGTERM drains a reply in flight.
//!
//! How `/readyz` is observed during the drain: the accept loop stops at the start of the
//! shutdown and drops the listener, so a probe on a *new* connection gets "connection refused".
//! A probe whose request is already in progress when the signal arrives is still answered
//! (hyper's graceful shutdown finishes in-progress requests), so the test opens such requests
//! before the SIGTERM ([`PendingRequest`]) and completes them during the drain: each answers
//! `503` `"status":"not ready"`. New connections are only accepted as refused after that.

use std::time::Duration;

use chatbox_tests::e2e::{chat, Exposition, PendingRequest, STEP};
use chatbox_tests::harness::{assert_error, is_done, reply_text, Server, ServerOpts, PREFIX};
use chatbox_tests::http::{assert_forbidden, call, get, json, ok_json, post};
use chatbox_tests::upstream::{Script, Upstream};
use serde_json::Value;
use tokio::net::TcpStream;

/// Every family of §4.11 with its kind.
const FAMILIES: [(&str, &str); 17] = [
    ("chatbox_websocket_connections_total", "gauge"),
    ("chatbox_messages_received_total", "counter"),
    ("chatbox_messages_sent_total", "counter"),
    ("chatbox_llm_requests_total", "counter"),
    ("chatbox_llm_latency_seconds", "histogram"),
    ("chatbox_llm_errors_total", "counter"),
    ("chatbox_active_sessions_total", "gauge"),
    ("chatbox_sessions_created_total", "counter"),
    ("chatbox_sessions_ended_total", "counter"),
    ("chatbox_admin_takeovers_total", "counter"),
    ("chatbox_message_errors_total", "counter"),
    ("chatbox_tokens_used_total", "counter"),
    ("chatbox_mongodb_operation_seconds", "histogram"),
    ("chatbox_ratelimit_blocked_total", "counter"),
    ("chatbox_websocket_connection_duration_seconds", "histogram"),
    ("chatbox_http_request_duration_seconds", "histogram"),
    ("chatbox_admin_messages_dropped_total", "counter"),
];

/// The Prometheus client's default buckets (§4.11 "default buckets").
const DEFAULT_BUCKETS: [&str; 12] =
    ["0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"];

/// The buckets of `chatbox_websocket_connection_duration_seconds` (§4.11).
const CONNECTION_BUCKETS: [&str; 11] =
    ["1", "5", "15", "30", "60", "120", "300", "600", "1800", "3600", "+Inf"];

/// `GET {P}/metrics/prometheus` from 127.0.0.1, asserted `200` with the text content type.
async fn scrape(server: &Server) -> Exposition {
    let response = get(server, "/metrics/prometheus", None).await;
    assert_eq!(response.status, 200, "{response:?}");
    let content_type = response.header("content-type").unwrap_or_default();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    Exposition::parse(&response.body)
}

fn at_least(e: &Exposition, name: &str, labels: &[(&str, &str)], min: f64) {
    let value = e.value(name, labels);
    assert!(value.is_some_and(|v| v >= min), "{name}{labels:?} = {value:?}, expected ≥ {min}");
}

#[tokio::test]
async fn prometheus_exposes_every_family_after_traffic() {
    let upstream = Upstream::start().await;
    let server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("RATE_LIMIT", "1")
            .env("ADMIN_RATE_LIMIT", "1000")
            .env("PUBLIC_RATE_LIMIT", "1000"),
    )
    .await;

    // Traffic: one chat round trip, one rate-limited message, one takeover, one closed socket.
    let mut user = server.connect(&server.token("metrics-user", &["user"], None)).await;
    let (session, _) = chat(&mut user, "metrics-1", "Count me in.").await;
    user.send_user_message(&session, "One too many").await;
    let refused = user.recv_frame(STEP).await;
    assert_error(&refused, "TOO_MANY_REQUESTS", "Too many requests, please slow down");
    let admin = server.token("metrics-admin", &["admin"], Some("Ops"));
    assert_eq!(
        post(&server, &format!("/admin/takeover/{session}"), Some(&admin)).await.status,
        200
    );
    let join = user.recv_frame(STEP).await;
    assert_eq!(join["type"], "admin_join", "{join}");
    let brief = server.connect(&server.token("brief-user", &["user"], None)).await;
    brief.close().await;

    // The closed socket is accounted asynchronously: scrape until it is.
    let deadline = chatbox_tests::harness::now() + STEP;
    let e = loop {
        let e = scrape(&server).await;
        let settled = e.value("chatbox_websocket_connections_total", &[]) == Some(1.0)
            && e.value("chatbox_websocket_connection_duration_seconds_count", &[]) >= Some(1.0);
        if settled || chatbox_tests::harness::now() >= deadline {
            break e;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    for (name, kind) in FAMILIES {
        assert_eq!(e.types.get(name).map(String::as_str), Some(kind), "# TYPE {name} {kind}");
        let samples = if kind == "histogram" {
            e.find(&format!("{name}_bucket"), &[])
        } else {
            e.find(name, &[])
        };
        assert!(!samples.is_empty(), "{name} has samples");
    }
    // Standard process collector (Linux).
    assert_eq!(
        e.types.get("process_resident_memory_bytes").map(String::as_str),
        Some("gauge"),
        "process metrics are exported"
    );

    assert_eq!(e.value("chatbox_websocket_connections_total", &[]), Some(1.0), "one open");
    at_least(&e, "chatbox_websocket_connection_duration_seconds_count", &[], 1.0);
    assert_eq!(
        e.bucket_bounds("chatbox_websocket_connection_duration_seconds", &[]),
        CONNECTION_BUCKETS
    );
    at_least(&e, "chatbox_messages_received_total", &[], 2.0);
    // Greetings, loading, chunks, done, the error and admin_join.
    at_least(&e, "chatbox_messages_sent_total", &[], 5.0);
    let openai = [("provider", "openai")];
    at_least(&e, "chatbox_llm_requests_total", &openai, 1.0);
    assert_eq!(e.value("chatbox_llm_errors_total", &openai), Some(0.0));
    at_least(&e, "chatbox_tokens_used_total", &openai, 1.0);
    at_least(&e, "chatbox_llm_latency_seconds_count", &openai, 1.0);
    assert_eq!(e.bucket_bounds("chatbox_llm_latency_seconds", &openai), DEFAULT_BUCKETS);
    at_least(
        &e,
        "chatbox_llm_latency_seconds_bucket",
        &[("provider", "openai"), ("le", "+Inf")],
        1.0,
    );
    assert!(e.value("chatbox_active_sessions_total", &[]).is_some(), "the gauge is exported");
    at_least(&e, "chatbox_sessions_created_total", &[], 1.0);
    assert_eq!(e.value("chatbox_sessions_ended_total", &[]), Some(0.0));
    at_least(&e, "chatbox_admin_takeovers_total", &[], 1.0);
    at_least(&e, "chatbox_message_errors_total", &[], 1.0);
    at_least(&e, "chatbox_ratelimit_blocked_total", &[("limiter", "message")], 1.0);
    assert_eq!(e.value("chatbox_ratelimit_blocked_total", &[("limiter", "connection")]), Some(0.0));
    assert_eq!(e.value("chatbox_admin_messages_dropped_total", &[]), Some(0.0));
    let store_ops: f64 = e
        .find("chatbox_mongodb_operation_seconds_count", &[])
        .iter()
        .filter(|s| s.labels.contains_key("operation"))
        .map(|s| s.value)
        .sum();
    assert!(store_ops >= 2.0, "store operations are timed (create, append): {store_ops}");

    // HTTP durations by route template and method — never by the concrete path.
    let takeovers: Vec<_> = e
        .find("chatbox_http_request_duration_seconds_count", &[("method", "POST")])
        .into_iter()
        .filter(|s| s.labels.get("endpoint").is_some_and(|p| p.contains("/admin/takeover/")))
        .collect();
    assert_eq!(takeovers.len(), 1, "{takeovers:?}");
    assert!(takeovers[0].value >= 1.0, "{takeovers:?}");
    let endpoint = &takeovers[0].labels["endpoint"];
    assert!(endpoint.starts_with(&format!("{PREFIX}/admin/takeover/")), "{endpoint}");
    for sample in e.find("chatbox_http_request_duration_seconds_count", &[]) {
        let endpoint = sample.labels.get("endpoint").cloned().unwrap_or_default();
        assert!(!endpoint.contains(&session), "concrete path as a label: {endpoint}");
    }
    assert_eq!(
        e.bucket_bounds(
            "chatbox_http_request_duration_seconds",
            &[("endpoint", endpoint.as_str()), ("method", "POST")]
        ),
        DEFAULT_BUCKETS
    );
}

#[tokio::test]
async fn prometheus_outside_the_allowed_networks_is_forbidden() {
    let upstream = Upstream::start().await;
    let server = Server::start(
        ServerOpts::with_upstream(&upstream).env("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8"),
    )
    .await;
    assert_forbidden(&get(&server, "/metrics/prometheus", None).await);
    // 127.0.0.1 is not a trusted proxy: a forged client address does not open the gate.
    let forged =
        call(&server, "GET", "/metrics/prometheus", None, &[("X-Forwarded-For", "10.1.2.3")]).await;
    assert_forbidden(&forged);
    // The other operations routes are not gated.
    assert_eq!(get(&server, "/healthz", None).await.status, 200);
}

#[tokio::test]
async fn behind_a_trusted_proxy_junk_in_forwarded_for_does_not_hand_the_choice_to_x_real_ip() {
    let upstream = Upstream::start().await;
    let server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("TRUSTED_PROXIES", "127.0.0.0/8")
            .env("METRICS_ALLOWED_NETWORKS", "10.0.0.0/8"),
    )
    .await;
    // The proxy (127.0.0.1) reports an allowed client: the gate opens.
    let allowed =
        call(&server, "GET", "/metrics/prometheus", None, &[("X-Forwarded-For", "10.1.2.3")]).await;
    assert_eq!(allowed.status, 200);
    // The client wrote junk and an X-Real-IP; the proxy appended the client's real address.
    let forged = [("X-Forwarded-For", "junk, 203.0.113.7"), ("X-Real-IP", "10.1.2.3")];
    assert_forbidden(&call(&server, "GET", "/metrics/prometheus", None, &forged).await);
}

#[tokio::test]
async fn healthz_and_readyz_bodies() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream).provider(
        "claude",
        "Claude",
        "anthropic",
        &upstream.url(),
    ))
    .await;

    let health = ok_json(&get(&server, "/healthz", None).await);
    let keys: Vec<&String> = health.as_object().expect("an object").keys().collect();
    assert_eq!(keys, ["status", "timestamp"], "{health}");
    assert_eq!(health["status"], "healthy");
    let stamp = health["timestamp"].as_str().expect("timestamp");
    assert!(stamp.ends_with('Z'), "UTC: {stamp}");
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "RFC 3339: {stamp}");

    let ready = ok_json(&get(&server, "/readyz", None).await);
    assert_eq!(ready["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["mongodb"], serde_json::json!({"status": "ready"}), "{ready}");
    // Issue 16: the store the ping reached is named beside the compatible `mongodb` check.
    let backend = if chatbox_tests::mongo::shared_uri().is_some() { "mongodb" } else { "embedded" };
    assert_eq!(
        ready["checks"]["store"],
        serde_json::json!({"status": "ready", "backend": backend}),
        "{ready}"
    );
    assert_eq!(ready["checks"]["llm"]["status"], "ready", "{ready}");
    assert_eq!(ready["checks"]["llm"]["providers_count"], 2, "{ready}");
    assert_eq!(ready["checks"]["outbox"], serde_json::json!({"status": "ready", "depth": 0}));
    let stamp = ready["timestamp"].as_str().expect("timestamp");
    assert!(chrono::DateTime::parse_from_rfc3339(stamp).is_ok(), "RFC 3339: {stamp}");
}

/// Whether a new TCP connection to the server is refused (the listener is closed).
async fn refused(server: &Server) -> bool {
    match tokio::time::timeout(STEP, TcpStream::connect(server.addr())).await {
        Ok(Err(_)) => true,
        Ok(Ok(_)) => false,
        Err(_) => panic!("connect neither succeeded nor failed within {STEP:?}"),
    }
}

fn assert_not_ready(response: &chatbox_tests::harness::HttpResponse) -> Value {
    assert_eq!(response.status, 503, "{response:?}");
    let body = json(response);
    assert_eq!(body["status"], "not ready", "{body}");
    body
}

#[tokio::test]
async fn readyz_answers_503_while_sigterm_drains_a_reply() {
    let upstream = Upstream::start().await;
    // Five chunks 450 ms apart: about 2 s of streaming.
    let chunks: Vec<String> = (0..5).map(|i| format!("slow{i} ")).collect();
    upstream.set_default(Script::reply(chunks).with_chunk_interval(Duration::from_millis(450)));
    let mut server = Server::start(
        ServerOpts::with_upstream(&upstream)
            .env("SHUTDOWN_TIMEOUT", "10s")
            .env("PUBLIC_RATE_LIMIT", "1000"),
    )
    .await;
    let ready = ok_json(&get(&server, "/readyz", None).await);
    assert_eq!(ready["status"], "ready", "{ready}");

    let mut client = server.connect(&server.token("drain-user", &["user"], None)).await;
    client.send_user_message("drain-1", "Tell me slowly").await;
    let mut frames = client.recv_until(|f| f["type"] == "ai_response", STEP).await;

    // Probes already in progress when the signal arrives; let the server read their heads.
    let path = format!("{PREFIX}/readyz");
    let mut pending = Vec::new();
    for _ in 0..3 {
        pending.push(PendingRequest::open(server.addr(), &path).await);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    server.sigterm();
    // The accept loop logs this once the shutdown has begun (readiness already reports it).
    assert!(
        server.wait_for_log("stopped accepting connections", STEP).await,
        "the shutdown begins\n{}",
        server.tail()
    );
    let mut not_ready = 0;
    for probe in pending {
        let body = assert_not_ready(&probe.finish().await);
        assert_eq!(body["checks"]["llm"]["status"], "ready", "only draining: {body}");
        assert_eq!(body["checks"]["mongodb"]["status"], "ready", "the store is fine: {body}");
        assert_eq!(
            body["checks"]["shutdown"],
            serde_json::json!({"status": "not ready", "reason": "Server is shutting down"}),
            "{body}"
        );
        not_ready += 1;
        // A new connection now: the listener is closed (or, if the accept loop had not yet
        // seen the signal, the probe is answered — also not ready).
        if !refused(&server).await {
            assert_not_ready(&get(&server, "/readyz", None).await);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    assert_eq!(not_ready, 3);

    // Meanwhile the reply in flight completes, then every connection closes with 1001.
    frames.extend(client.recv_reply(STEP).await);
    assert!(is_done(frames.last().expect("outcome")), "the reply finishes: {frames:#?}");
    assert_eq!(reply_text(&frames), "slow0 slow1 slow2 slow3 slow4 ");
    let close = client.expect_close(STEP).await.expect("a close frame");
    assert_eq!(u16::from(close.code), 1001, "{close:?}");
    let (status, after) = server.wait_exit(Duration::from_secs(12)).await;
    assert!(status.success(), "exit 0: {status}");
    assert!(after < Duration::from_secs(10), "exits once drained: {after:?}");
    assert!(refused(&server).await, "nothing listens after the exit");
}

#[tokio::test]
async fn active_sessions_gauge_follows_creation_and_end_at_once() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("PUBLIC_RATE_LIMIT", "1000")).await;
    let token = server.token("gauge-user", &["user"], None);
    let mut user = server.connect(&token).await;
    let (session, _) = chat(&mut user, "gauge-1", "Am I counted?").await;
    let e = scrape(&server).await;
    assert_eq!(e.value("chatbox_sessions_created_total", &[]), Some(1.0));
    assert_eq!(e.value("chatbox_active_sessions_total", &[]), Some(1.0), "one active session");

    assert_eq!(post(&server, &format!("/sessions/{session}/end"), Some(&token)).await.status, 200);
    let e = scrape(&server).await;
    assert_eq!(e.value("chatbox_sessions_ended_total", &[]), Some(1.0));
    assert_eq!(e.value("chatbox_active_sessions_total", &[]), Some(0.0), "none active");
}

#[tokio::test]
async fn sigterm_right_after_start_is_graceful() {
    let upstream = Upstream::start().await;
    for attempt in 0..5 {
        let mut server = Server::start(ServerOpts::with_upstream(&upstream)).await;
        server.sigterm();
        let (status, _) = server.wait_exit(Duration::from_secs(10)).await;
        assert!(status.success(), "attempt {attempt}: graceful exit 0, got {status}");
    }
}
