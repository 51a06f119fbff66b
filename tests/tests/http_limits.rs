#![cfg(not(madsim))]
//! The HTTP rate limits through the real binary (PROTOCOL.md §5 with §10 item 28): the admin
//! limit per admin with `Retry-After` and `retry_after_ms`, the public limit per client IP and
//! route family, health probes from probe networks never limited, the client IP taken from
//! `X-Forwarded-For` behind a trusted proxy, and the independence of the message, admin and
//! public limits.

use std::time::Duration;

use chatbox_tests::harness::{is_done, Client, HttpResponse, Server, ServerOpts};
use chatbox_tests::http::{assert_forbidden, call, get, json, ok_json};
use chatbox_tests::upstream::Upstream;
use serde_json::json;

/// Generous bound on one step.
const STEP: Duration = Duration::from_secs(5);

/// Asserts a `429` with a whole-seconds `Retry-After` of at least 1 and about the window at most
/// (the limiter counts in sub-buckets, so a retry may wait up to one bucket past the window),
/// and the security headers; returns the header value.
fn assert_429(response: &HttpResponse, window_secs: u64) -> u64 {
    assert_eq!(response.status, 429, "{response:?}");
    let retry = response.header("retry-after").and_then(|v| v.parse::<u64>().ok());
    let retry = retry.unwrap_or_else(|| panic!("integer Retry-After: {response:?}"));
    assert!((1..=window_secs * 2).contains(&retry), "Retry-After {retry}: {response:?}");
    response.assert_security_headers();
    retry
}

/// The public `429` body, exactly.
fn assert_public_429(response: &HttpResponse) {
    assert_429(response, 60);
    assert_eq!(
        json(response),
        json!({"error": "rate_limit_exceeded", "message": "Too many requests. Please try again later."})
    );
}

/// Sends `content` on `session`; returns the frames up to the outcome.
async fn send(client: &mut Client, session: &str, content: &str) -> Vec<serde_json::Value> {
    client.send_user_message(session, content).await;
    client.recv_reply(STEP).await
}

#[tokio::test]
async fn admin_limit_is_per_admin_with_retry_after() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("ADMIN_RATE_LIMIT", "2")).await;
    let admin = server.token("busy-admin", &["admin"], None);
    let other = server.token("calm-admin", &["chat_admin"], None);
    let user = server.token("plain", &["user"], None);

    assert_eq!(get(&server, "/admin/sessions", Some(&admin)).await.status, 200);
    assert_eq!(get(&server, "/admin/metrics", Some(&admin)).await.status, 200);
    let refused = get(&server, "/admin/users/x/sessions", Some(&admin)).await;
    let retry = assert_429(&refused, 60);
    let body = json(&refused);
    assert_eq!(body["error"], "rate_limit_exceeded");
    assert_eq!(body["message"], "Too many requests. Please try again later.");
    let ms = body["retry_after_ms"].as_u64().expect("retry_after_ms");
    assert!(ms > 0 && ms <= 120_000, "{body}");
    assert_eq!(retry, ms.div_ceil(1000).max(1), "Retry-After is retry_after_ms rounded up: {body}");
    assert_eq!(body.as_object().map(|o| o.len()), Some(3), "{body}");
    // Every admin route shares the admin's bucket; refusals are not counted but stay refused.
    assert_429(&call(&server, "POST", "/admin/takeover/whatever", Some(&admin), &[]).await, 60);

    // Another admin has their own bucket; non-admins get 403, not 429; user routes are unlimited.
    assert_eq!(get(&server, "/admin/sessions", Some(&other)).await.status, 200);
    assert_forbidden(&get(&server, "/admin/sessions", Some(&user)).await);
    for _ in 0..5 {
        assert_eq!(get(&server, "/sessions", Some(&admin)).await.status, 200);
    }
}

#[tokio::test]
async fn public_limit_on_shared_links_while_probes_pass() {
    let upstream = Upstream::start().await;
    let server =
        Server::start(ServerOpts::with_upstream(&upstream).env("PUBLIC_RATE_LIMIT", "2")).await;
    let route = "/shared/0123456789abcdef0123456789abcdef";
    assert_eq!(get(&server, route, None).await.status, 404);
    assert_eq!(get(&server, route, None).await.status, 404);
    assert_public_429(&get(&server, route, None).await);
    assert_public_429(&get(&server, "/shared/another-token", None).await);

    // 127.0.0.1 is a health-probe network by default: probes are never limited.
    for _ in 0..6 {
        assert_eq!(get(&server, "/healthz", None).await.status, 200);
        assert!(matches!(get(&server, "/readyz", None).await.status, 200 | 503));
    }
}

#[tokio::test]
async fn client_ip_behind_a_trusted_proxy_and_separate_families() {
    let upstream = Upstream::start().await;
    let opts = ServerOpts::with_upstream(&upstream)
        .env("PUBLIC_RATE_LIMIT", "2")
        .env("TRUSTED_PROXIES", "127.0.0.0/8")
        .env("HEALTH_PROBE_NETWORKS", "192.0.2.0/24");
    let server = Server::start(opts).await;
    let from = |ip: &'static str| [("X-Forwarded-For", ip)];

    // Loopback is no probe network here, so the client 203.0.113.1 is limited on probes...
    for _ in 0..2 {
        assert_eq!(call(&server, "GET", "/healthz", None, &from("203.0.113.1")).await.status, 200);
    }
    assert_public_429(&call(&server, "GET", "/healthz", None, &from("203.0.113.1")).await);
    assert_public_429(&call(&server, "GET", "/readyz", None, &from("203.0.113.1")).await);
    // ...per client address (the right-most untrusted hop)...
    let chain = [("X-Forwarded-For", "203.0.113.1, 198.51.100.7, 127.0.0.1")];
    assert_eq!(call(&server, "GET", "/healthz", None, &chain).await.status, 200);
    assert_eq!(
        call(&server, "GET", "/healthz", None, &[("X-Real-IP", "198.51.100.8")]).await.status,
        200
    );
    // ...and per route family: the shared links have their own bucket.
    let shared = "/shared/unknown-token";
    assert_eq!(call(&server, "GET", shared, None, &from("203.0.113.1")).await.status, 404);
    // A probe from a probe network (behind the proxy) is never limited.
    for _ in 0..5 {
        assert_eq!(call(&server, "GET", "/healthz", None, &from("192.0.2.10")).await.status, 200);
    }
}

#[tokio::test]
async fn message_admin_and_public_limits_are_independent() {
    let upstream = Upstream::start().await;
    let opts = ServerOpts::with_upstream(&upstream)
        .env("RATE_LIMIT", "1")
        .env("ADMIN_RATE_LIMIT", "2")
        .env("PUBLIC_RATE_LIMIT", "1");
    let server = Server::start(opts).await;

    // Admin A exhausts the message limit: admin routes still work.
    let a = server.token("admin-a", &["admin"], None);
    let mut client = server.connect(&a).await;
    let frames = send(&mut client, "a-1", "First message").await;
    assert!(frames.last().is_some_and(is_done), "{frames:#?}");
    let session =
        frames.last().and_then(|f| f["session_id"].as_str()).unwrap_or_default().to_string();
    let refused = send(&mut client, &session, "Second message").await;
    let last = refused.last().expect("an outcome");
    assert_eq!(last["error"]["code"], "TOO_MANY_REQUESTS", "{refused:#?}");
    ok_json(&get(&server, "/admin/sessions", Some(&a)).await);
    // The public limit is per IP and separate too.
    assert_eq!(get(&server, "/shared/nothing-here", None).await.status, 404);
    ok_json(&get(&server, "/admin/metrics", Some(&a)).await);
    assert_eq!(get(&server, "/shared/nothing-here", None).await.status, 429);
    assert_eq!(get(&server, "/admin/sessions", Some(&a)).await.status, 429);

    // Admin B exhausts the admin limit: chatting still works.
    let b = server.token("admin-b", &["chat_admin"], None);
    for _ in 0..2 {
        assert_eq!(get(&server, "/admin/sessions", Some(&b)).await.status, 200);
    }
    assert_eq!(get(&server, "/admin/sessions", Some(&b)).await.status, 429);
    let mut client = server.connect(&b).await;
    let frames = send(&mut client, "b-1", "Still allowed to chat").await;
    assert!(frames.last().is_some_and(is_done), "{frames:#?}");
}
