#![cfg(not(madsim))]
//! The admin routes through the real binary (PROTOCOL.md §4.6–§4.8, §6.8 with §10 items 3, 5, 6,
//! 7, 9): the auth matrix, every 400 text, the search filters and sorts, one user's sessions,
//! metrics, takeover and leave with their WebSocket frames, and the persisted assistance flags;
//! issue 15: reading any session's transcript, the `help_requested` filter and flag, and
//! `admin_assisted` answering "ever assisted".

use std::time::Duration;

use chatbox_tests::e2e::chat;
use chatbox_tests::harness::{Client, Server, ServerOpts};
use chatbox_tests::http::{
    assert_bad_request, assert_error_body, assert_forbidden, assert_invalid_token,
    assert_missing_auth, assert_session_not_found, call, get, ok_json, post,
};
use chatbox_tests::upstream::Upstream;
use serde_json::{json, Value};

/// Generous bound on one step.
const STEP: Duration = Duration::from_secs(5);

/// A server on the echo `upstream` with an admin limit no test here reaches.
async fn start(upstream: &Upstream) -> Server {
    Server::start(ServerOpts::with_upstream(upstream).env("ADMIN_RATE_LIMIT", "1000")).await
}

/// A user's connected client and their session (one exchange).
async fn user_session(server: &Server, user: &str, content: &str) -> (Client, String) {
    let token = server.token(user, &["user"], None);
    let mut client = server.connect(&token).await;
    let (session, _) = chat(&mut client, &format!("{user}-first"), content).await;
    (client, session)
}

/// The admin search's items for `query`, as admin `admin`.
async fn search(server: &Server, admin: &str, query: &str) -> Vec<Value> {
    let body = ok_json(&get(server, &format!("/admin/sessions{query}"), Some(admin)).await);
    body["sessions"].as_array().cloned().unwrap_or_default()
}

fn ids(items: &[Value]) -> Vec<String> {
    items.iter().map(|i| i["id"].as_str().unwrap_or_default().to_string()).collect()
}

/// `frame` without its `timestamp` (asserted to be present).
fn without_timestamp(frame: &Value) -> Value {
    let mut frame = frame.clone();
    let removed = frame.as_object_mut().and_then(|o| o.remove("timestamp"));
    assert!(removed.is_some_and(|t| t.is_string()), "timestamp present: {frame}");
    frame
}

#[tokio::test]
async fn admin_routes_require_an_admin_token() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let (_client, session) = user_session(&server, "plain-user", "Hi").await;
    let user = server.token("plain-user", &["user"], None);
    let other = server.token("someone-else", &["user", "support"], None);
    let admin = server.token("root", &["admin"], Some("Root"));
    let chat_admin = server.token("helper", &["chat_admin"], None);
    let routes = [
        ("GET", "/admin/sessions".to_string()),
        ("GET", format!("/admin/sessions/{session}")),
        ("GET", "/admin/metrics".to_string()),
        ("GET", "/admin/users/plain-user/sessions".to_string()),
        ("POST", format!("/admin/takeover/{session}")),
        ("POST", format!("/admin/leave/{session}")),
    ];
    for (method, route) in &routes {
        assert_missing_auth(&call(&server, method, route, None, &[]).await);
        assert_missing_auth(
            &call(&server, method, route, None, &[("Authorization", "Token x")]).await,
        );
        assert_invalid_token(&call(&server, method, route, Some("bad.token.here"), &[]).await);
        assert_forbidden(&call(&server, method, route, Some(&user), &[]).await);
        assert_forbidden(&call(&server, method, route, Some(&other), &[]).await);
    }
    // Both admin roles pass; takeover before leave so that leave has something to clear.
    for token in [&admin, &chat_admin] {
        for (method, route) in &routes {
            let response = call(&server, method, route, Some(token), &[]).await;
            assert_eq!(response.status, 200, "{method} {route}: {response:?}");
            response.assert_security_headers();
        }
    }
}

#[tokio::test]
async fn search_rules_and_texts() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let admin = server.token("auditor", &["admin"], None);

    for (query, text) in [
        (
            format!("?user_id={}", "u".repeat(256)),
            "user_id exceeds maximum length of 255 characters",
        ),
        ("?start_time_from=yesterday".to_string(), "Invalid time format, expected RFC3339"),
        ("?start_time_to=2026-02-21".to_string(), "Invalid time format, expected RFC3339"),
        ("?start_time=1700000000".to_string(), "Invalid time format, expected RFC3339"),
        ("?end_time=noon".to_string(), "Invalid time format, expected RFC3339"),
        (
            "?sort_by=name".to_string(),
            r#"invalid sort_by field "name"; allowed: start_time, end_time, message_count, total_tokens, user_id"#,
        ),
        ("?sort_order=DESC".to_string(), r#"invalid sort_order "DESC"; allowed: asc, desc"#),
    ] {
        assert_bad_request(
            &get(&server, &format!("/admin/sessions{query}"), Some(&admin)).await,
            text,
        );
    }
    let ok = ok_json(
        &get(&server, &format!("/admin/sessions?user_id={}", "u".repeat(255)), Some(&admin)).await,
    );
    assert_eq!(ok, json!({"sessions": [], "count": 0, "limit": 100, "offset": 0}));

    // Three sessions: a (2 messages, ended), b (4 messages, active), c (2 messages, active).
    let (_ca, a) = user_session(&server, "user-a", "One").await;
    let (mut cb, b) = user_session(&server, "user-b", "Two").await;
    chat(&mut cb, &b, "Two again").await;
    let (_cc, c) = user_session(&server, "user-c", "Three").await;
    let end =
        post(&server, &format!("/sessions/{a}/end"), Some(&server.token("user-a", &[], None)))
            .await;
    assert_eq!(end.status, 200);

    let all = search(&server, &admin, "").await;
    assert_eq!(ids(&all), [c.as_str(), b.as_str(), a.as_str()], "newest start first");
    for item in &all {
        assert_eq!(item["session_id"], item["id"], "session_id on every item: {item}");
    }
    assert_eq!(ids(&search(&server, &admin, "?user_id=user-b").await), [b.as_str()]);
    assert_eq!(ids(&search(&server, &admin, "?status=ended").await), [a.as_str()]);
    assert_eq!(ids(&search(&server, &admin, "?status=active").await), [c.as_str(), b.as_str()]);
    assert_eq!(
        ids(&search(&server, &admin, "?status=everything").await).len(),
        3,
        "other values ignored"
    );
    assert!(search(&server, &admin, "?admin_assisted=true").await.is_empty());
    assert_eq!(search(&server, &admin, "?admin_assisted=no").await.len(), 3);
    let by_count = search(&server, &admin, "?sort_by=message_count&sort_order=desc").await;
    assert_eq!(ids(&by_count)[0], b, "most messages first: {by_count:#?}");
    assert_eq!(by_count[0]["message_count"], 4);
    assert_eq!(
        ids(&search(&server, &admin, "?sort_by=user_id&sort_order=asc").await),
        [a.as_str(), b.as_str(), c.as_str()]
    );
    assert_eq!(
        ids(&search(&server, &admin, "?sort_by=end_time").await)[0],
        a,
        "ended first in desc"
    );

    let page = ok_json(&get(&server, "/admin/sessions?limit=1&offset=1", Some(&admin)).await);
    assert_eq!(
        (page["count"].as_u64(), page["limit"].as_u64(), page["offset"].as_u64()),
        (Some(1), Some(1), Some(1))
    );
    assert_eq!(ids(page["sessions"].as_array().expect("sessions")), [b.as_str()]);
    let fallback =
        ok_json(&get(&server, "/admin/sessions?limit=5000&offset=-3", Some(&admin)).await);
    assert_eq!((fallback["limit"].as_u64(), fallback["offset"].as_u64()), (Some(100), Some(0)));

    // Start-time bounds and their aliases (§10 item 7): a window after every start is empty.
    let future = "2999-01-01T00:00:00Z";
    assert!(search(&server, &admin, &format!("?start_time_from={future}")).await.is_empty());
    assert!(search(&server, &admin, &format!("?start_time={future}")).await.is_empty());
    assert_eq!(search(&server, &admin, &format!("?end_time={future}")).await.len(), 3);
    assert!(search(&server, &admin, "?start_time_to=2000-01-01T00:00:00Z").await.is_empty());
}

#[tokio::test]
async fn one_users_sessions_as_an_array() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let admin = server.token("auditor", &["chat_admin"], None);
    let (_client, session) = user_session(&server, "listed-user", "Hello").await;
    let (_other, _) = user_session(&server, "not-listed", "Hello").await;

    let body = ok_json(&get(&server, "/admin/users/listed-user/sessions", Some(&admin)).await);
    let items = body.as_array().expect("a JSON array");
    assert_eq!(items.len(), 1, "{body}");
    assert_eq!(items[0]["id"], session.as_str());
    assert_eq!(items[0]["session_id"], session.as_str());
    assert_eq!(items[0]["user_id"], "listed-user");
    assert_eq!(
        ok_json(&get(&server, "/admin/users/nobody/sessions", Some(&admin)).await),
        json!([])
    );
    let long = format!("/admin/users/{}/sessions", "x".repeat(256));
    assert_bad_request(
        &get(&server, &long, Some(&admin)).await,
        "user_id exceeds maximum length of 255 characters",
    );
    assert_bad_request(
        &get(&server, "/admin/users/listed-user/sessions?sort_order=up", Some(&admin)).await,
        r#"invalid sort_order "up"; allowed: asc, desc"#,
    );
}

#[tokio::test]
async fn metrics_totals_concurrency_and_texts() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let admin = server.token("auditor", &["admin"], None);

    let empty = ok_json(&get(&server, "/admin/metrics", Some(&admin)).await);
    assert_eq!(
        empty["metrics"],
        json!({"TotalSessions": 0, "ActiveSessions": 0, "TotalTokens": 0, "AvgResponseTime": 0,
               "MaxResponseTime": 0, "AdminAssistedCount": 0})
    );

    let (_ca, a) = user_session(&server, "metric-a", "Session number one, please").await;
    let (_cb, _b) = user_session(&server, "metric-b", "Session number two, please").await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    let end =
        post(&server, &format!("/sessions/{a}/end"), Some(&server.token("metric-a", &[], None)))
            .await;
    assert_eq!(end.status, 200);
    let takeover = post(&server, &format!("/admin/takeover/{a}"), Some(&admin)).await;
    assert_eq!(takeover.status, 200, "{takeover:?}");

    let body = ok_json(&get(&server, "/admin/metrics", Some(&admin)).await);
    let m = &body["metrics"];
    assert_eq!(
        (m["TotalSessions"].as_i64(), m["ActiveSessions"].as_i64()),
        (Some(2), Some(1)),
        "{body}"
    );
    assert_eq!(m["AdminAssistedCount"], 1, "{body}");
    assert!(
        m["TotalTokens"].as_i64().is_some_and(|t| t > 0),
        "streamed replies count tokens: {body}"
    );
    for (snake, capital) in [
        ("total_sessions", "TotalSessions"),
        ("active_sessions", "ActiveSessions"),
        ("total_tokens", "TotalTokens"),
        ("avg_response_time", "AvgResponseTime"),
        ("max_response_time", "MaxResponseTime"),
        ("admin_assisted_count", "AdminAssistedCount"),
    ] {
        assert_eq!(body[snake], m[capital], "{snake} mirrors {capital}: {body}");
    }
    assert_eq!(body["max_concurrent"], 2, "both sessions were open at once: {body}");
    let avg = body["avg_concurrent"].as_f64().expect("avg_concurrent");
    assert!(avg > 0.0 && avg < 2.0, "time-weighted over a 24 h window: {body}");
    for key in ["start", "end"] {
        let t = body["time_range"][key].as_str().expect("time_range");
        assert!(chrono::DateTime::parse_from_rfc3339(t).is_ok(), "{t}");
    }

    // An explicit window is echoed with the caller's offsets; a window before everything is empty.
    let window = "?start_time=2020-01-01T00:00:00%2B02:00&end_time=2020-01-02T00:00:00Z";
    let old = ok_json(&get(&server, &format!("/admin/metrics{window}"), Some(&admin)).await);
    assert_eq!(
        old["time_range"],
        json!({"start": "2020-01-01T00:00:00+02:00", "end": "2020-01-02T00:00:00Z"})
    );
    assert_eq!(
        (old["total_sessions"].as_i64(), old["max_concurrent"].as_i64()),
        (Some(0), Some(0))
    );
    assert_eq!(old["avg_concurrent"].as_f64(), Some(0.0));

    for query in ["?start_time=yesterday", "?end_time=2026-02-21"] {
        let response = get(&server, &format!("/admin/metrics{query}"), Some(&admin)).await;
        assert_bad_request(&response, "Invalid time format, expected RFC3339");
    }
    let inverted = get(
        &server,
        "/admin/metrics?start_time=2026-02-21T10:00:00Z&end_time=2026-02-21T09:00:00Z",
        Some(&admin),
    )
    .await;
    assert_error_body(&inverted, 500, "An internal error occurred", "INTERNAL_ERROR");
}

#[tokio::test]
async fn takeover_and_leave_reach_the_user_and_persist() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let (mut client, session) = user_session(&server, "helped-user", "I need a human").await;
    let jane = server.token("admin-1", &["admin"], Some("Jane Admin"));
    let max = server.token("admin-2", &["chat_admin"], Some("Max"));

    let first = ok_json(&post(&server, &format!("/admin/takeover/{session}"), Some(&jane)).await);
    assert_eq!(
        first,
        json!({"message": "Takeover initiated successfully", "session_id": session, "admin_id": "admin-1"})
    );
    let join =
        client.recv_until(|f| f["type"] == "admin_join", STEP).await.pop().expect("admin_join");
    assert_eq!(
        without_timestamp(&join),
        json!({"type": "admin_join", "session_id": session, "sender": "admin",
               "content": "Administrator Jane Admin has joined the session",
               "metadata": {"admin_id": "admin-1", "admin_name": "Jane Admin"}})
    );

    // The same admin again succeeds; another admin is refused with the exact text.
    let again = post(&server, &format!("/admin/takeover/{session}"), Some(&jane)).await;
    assert_eq!(again.status, 200, "{again:?}");
    let refused = post(&server, &format!("/admin/takeover/{session}"), Some(&max)).await;
    assert_bad_request(&refused, "session already assisted by another admin: Jane Admin (admin-1)");

    // Persisted (§10 item 9): the admin list shows the flags.
    let listed = search(&server, &max, "?admin_assisted=true").await;
    assert_eq!(ids(&listed), [session.as_str()], "{listed:#?}");
    assert_eq!(listed[0]["admin_assisted"], true);
    assert_eq!(listed[0]["assisting_admin_name"], "Jane Admin");

    // Leave: the response, the `admin_leave` frame, who assists cleared (issue 15:
    // `admin_assisted` stays true — the session was assisted).
    let left = ok_json(&post(&server, &format!("/admin/leave/{session}"), Some(&jane)).await);
    assert_eq!(
        left,
        json!({"message": "Admin left the session", "session_id": session, "admin_id": "admin-1"})
    );
    let leave =
        client.recv_until(|f| f["type"] == "admin_leave", STEP).await.pop().expect("admin_leave");
    assert_eq!(
        without_timestamp(&leave),
        json!({"type": "admin_leave", "session_id": session, "sender": "admin",
               "content": "Administrator Jane Admin has left the session",
               "metadata": {"admin_id": "admin-1", "admin_name": "Jane Admin"}})
    );
    let item = &search(&server, &max, "?user_id=helped-user").await[0];
    assert_eq!(item["admin_assisted"], true, "ever assisted: {item}");
    assert!(item.get("assisting_admin_name").is_none(), "nobody assists now: {item}");
    assert_eq!(ids(&search(&server, &max, "?admin_assisted=true").await), [session.as_str()]);
    let metrics = ok_json(&get(&server, "/admin/metrics", Some(&max)).await);
    assert_eq!(metrics["admin_assisted_count"], 1, "{metrics}");
    assert_bad_request(
        &post(&server, &format!("/admin/leave/{session}"), Some(&jane)).await,
        "session is not assisted",
    );

    // Now the second admin can take over.
    let second = ok_json(&post(&server, &format!("/admin/takeover/{session}"), Some(&max)).await);
    assert_eq!(second["admin_id"], "admin-2");
    let join =
        client.recv_until(|f| f["type"] == "admin_join", STEP).await.pop().expect("admin_join");
    assert_eq!(join["content"], "Administrator Max has joined the session");
    let item = &search(&server, &jane, "?user_id=helped-user").await[0];
    assert_eq!(
        (item["admin_assisted"].as_bool(), item["assisting_admin_name"].as_str()),
        (Some(true), Some("Max"))
    );

    // Unknown sessions.
    assert_session_not_found(&post(&server, "/admin/takeover/no-such-session", Some(&jane)).await);
    assert_session_not_found(&post(&server, "/admin/leave/no-such-session", Some(&jane)).await);
}

#[tokio::test]
async fn admin_names_are_cut_in_the_content_only() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let (mut client, session) = user_session(&server, "long-name-user", "Hello").await;
    let name = "N".repeat(120);
    let admin = server.token("admin-long", &["admin"], Some(&name));
    assert_eq!(
        post(&server, &format!("/admin/takeover/{session}"), Some(&admin)).await.status,
        200
    );
    let join =
        client.recv_until(|f| f["type"] == "admin_join", STEP).await.pop().expect("admin_join");
    assert_eq!(
        join["content"],
        format!("Administrator {} has joined the session", "N".repeat(100))
    );
    assert_eq!(join["metadata"]["admin_name"], name.as_str());
    // Without a `name` claim the admin's user id is the name.
    let nameless = server.token("admin-nameless", &["admin"], None);
    let refused = post(&server, &format!("/admin/takeover/{session}"), Some(&nameless)).await;
    assert_bad_request(
        &refused,
        &format!("session already assisted by another admin: {name} (admin-long)"),
    );
    assert_eq!(
        post(&server, &format!("/admin/leave/{session}"), Some(&nameless)).await.status,
        200
    );
    assert_eq!(
        post(&server, &format!("/admin/takeover/{session}"), Some(&nameless)).await.status,
        200
    );
    let join =
        client.recv_until(|f| f["type"] == "admin_join", STEP).await.pop().expect("admin_join");
    assert_eq!(join["content"], "Administrator admin-nameless has joined the session");
}

#[tokio::test]
async fn takeover_loads_a_stored_session_after_a_restart() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let (client, session) = user_session(&server, "restarted-user", "Before the restart").await;
    let admin = server.token("admin-r", &["admin"], Some("Rita"));
    assert_eq!(
        post(&server, &format!("/admin/takeover/{session}"), Some(&admin)).await.status,
        200
    );
    client.close().await;

    let server = server.restart().await;
    let admin = server.token("admin-r", &["admin"], Some("Rita"));
    let other = server.token("admin-s", &["admin"], Some("Sam"));
    // The stored assistance survives the restart.
    let refused = post(&server, &format!("/admin/takeover/{session}"), Some(&other)).await;
    assert_bad_request(&refused, "session already assisted by another admin: Rita (admin-r)");
    assert_eq!(post(&server, &format!("/admin/leave/{session}"), Some(&admin)).await.status, 200);
    assert_eq!(
        post(&server, &format!("/admin/takeover/{session}"), Some(&other)).await.status,
        200
    );
}

#[tokio::test]
async fn admins_read_any_session_with_its_state() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let (mut client, session) = user_session(&server, "reader-user", "First question").await;
    chat(&mut client, &session, "Second question").await;
    let admin = server.token("admin-read", &["admin"], Some("Ada"));
    let chat_admin = server.token("helper-read", &["chat_admin"], None);
    let route = format!("/admin/sessions/{session}");

    let body = ok_json(&get(&server, &route, Some(&admin)).await);
    assert_eq!(body["session_id"], session.as_str());
    assert_eq!(body["name"], "First question");
    assert_eq!(body["model_id"], "");
    assert_eq!(body["user_id"], "reader-user");
    assert_eq!(
        (
            body["is_active"].as_bool(),
            body["help_requested"].as_bool(),
            body["admin_assisted"].as_bool()
        ),
        (Some(true), Some(false), Some(false)),
        "{body}"
    );
    assert!(body.get("assisting_admin_name").is_none(), "omitted while nobody assists: {body}");
    let messages = body["messages"].as_array().expect("messages");
    let said: Vec<(&str, &str)> = messages
        .iter()
        .map(|m| (m["sender"].as_str().unwrap_or(""), m["content"].as_str().unwrap_or("")))
        .collect();
    assert_eq!(said.len(), 4, "{body}");
    assert_eq!(said[0], ("user", "First question"));
    assert_eq!(said[1].0, "ai");
    assert_eq!(said[2], ("user", "Second question"));
    assert_eq!(said[3].0, "ai");
    // The owner's own view is the same §4.2 body.
    let owner = server.token("reader-user", &["user"], None);
    let own = ok_json(&get(&server, &format!("/sessions/{session}"), Some(&owner)).await);
    assert_eq!(own["messages"], body["messages"]);
    assert_eq!(
        ok_json(&get(&server, &route, Some(&chat_admin)).await)["messages"],
        body["messages"]
    );

    // Help requested, then taken over: both show.
    client
        .send_json(&json!({"type": "help_request", "session_id": session, "sender": "user"}))
        .await;
    client.recv_until(|f| f["type"] == "connection_status", STEP).await;
    assert_eq!(
        ok_json(&post(&server, &format!("/admin/takeover/{session}"), Some(&admin)).await)
            ["admin_id"],
        "admin-read"
    );
    let body = ok_json(&get(&server, &route, Some(&chat_admin)).await);
    assert_eq!(
        (body["help_requested"].as_bool(), body["admin_assisted"].as_bool()),
        (Some(true), Some(true)),
        "{body}"
    );
    assert_eq!(body["assisting_admin_name"], "Ada");
    // After the leave: still assisted once, nobody assisting now.
    assert_eq!(post(&server, &format!("/admin/leave/{session}"), Some(&admin)).await.status, 200);
    let body = ok_json(&get(&server, &route, Some(&admin)).await);
    assert_eq!(body["admin_assisted"], true, "{body}");
    assert!(body.get("assisting_admin_name").is_none(), "{body}");
    // Ended.
    assert_eq!(post(&server, &format!("/sessions/{session}/end"), Some(&owner)).await.status, 200);
    assert_eq!(ok_json(&get(&server, &route, Some(&admin)).await)["is_active"], false);

    // Unknown is 404; other roles are 403 (even the owner).
    assert_session_not_found(&get(&server, "/admin/sessions/no-such-session", Some(&admin)).await);
    assert_forbidden(&get(&server, &route, Some(&owner)).await);
}

#[tokio::test]
async fn help_requests_are_flagged_and_filtered() {
    let upstream = Upstream::start().await;
    let server = start(&upstream).await;
    let admin = server.token("admin-help", &["admin"], None);
    let (mut asking, helped) = user_session(&server, "asking-user", "Help me please").await;
    let (_quiet, quiet) = user_session(&server, "quiet-user", "All fine").await;
    asking
        .send_json(&json!({"type": "help_request", "session_id": helped, "sender": "user"}))
        .await;
    asking.recv_until(|f| f["type"] == "connection_status", STEP).await;

    let all = search(&server, &admin, "").await;
    assert_eq!(all.len(), 2);
    for item in &all {
        let expected = item["id"] == helped.as_str();
        assert_eq!(item["help_requested"].as_bool(), Some(expected), "{item}");
    }
    assert_eq!(ids(&search(&server, &admin, "?help_requested=true").await), [helped.as_str()]);
    assert_eq!(ids(&search(&server, &admin, "?help_requested=false").await), [quiet.as_str()]);
    let both = search(&server, &admin, "?help_requested=true&status=active").await;
    assert_eq!(ids(&both), [helped.as_str()]);
    assert_bad_request(
        &get(&server, "/admin/sessions?help_requested=yes", Some(&admin)).await,
        r#"invalid help_requested "yes"; allowed: true, false"#,
    );
    // One user's list carries the flag too.
    let mine = ok_json(&get(&server, "/admin/users/asking-user/sessions", Some(&admin)).await);
    assert_eq!(mine[0]["help_requested"], true, "{mine}");
}
