#![cfg(not(madsim))]
//! The user session routes and the public shared view through the real binary (PROTOCOL.md
//! §2.2, §2.3, §4.1–§4.5, §6.6): the auth matrix of every route (no token, a bad token, the
//! owner, another user, an admin), listing, reading, ending twice, sharing and the public view,
//! plus the framework 404 for unknown paths and wrong methods.

use std::time::Duration;

use chatbox_tests::e2e::chat;
use chatbox_tests::harness::{Server, ServerOpts};
use chatbox_tests::http::{
    assert_error_body, assert_invalid_token, assert_missing_auth, assert_not_found_page,
    assert_session_not_found, call, get, ok_json, post,
};
use chatbox_tests::upstream::Upstream;
use serde_json::{json, Value};

/// An RFC 3339 time of a body.
fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    let text = value.as_str().unwrap_or_else(|| panic!("not a time: {value}"));
    chrono::DateTime::parse_from_rfc3339(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// A server with the echo upstream, and a session of `owner` with one exchange
/// ("Hello there. How are you?" → echo).
async fn server_with_session(owner: &str) -> (Upstream, Server, String) {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let token = server.token(owner, &["user"], None);
    let mut client = server.connect(&token).await;
    let (session, _) = chat(&mut client, "first", "Hello there. How are you?").await;
    client.close().await;
    (upstream, server, session)
}

#[tokio::test]
async fn user_routes_authenticate_with_the_bearer_header_only() {
    let (_upstream, server, session) = server_with_session("owner-1").await;
    let owner = server.token("owner-1", &["user"], None);
    let routes = [
        ("GET", "/sessions".to_string()),
        ("GET", format!("/sessions/{session}")),
        ("POST", format!("/sessions/{session}/end")),
        ("POST", format!("/sessions/{session}/share")),
        ("DELETE", format!("/sessions/{session}/share")),
    ];
    for (method, route) in &routes {
        assert_missing_auth(&call(&server, method, route, None, &[]).await);
        let basic = call(&server, method, route, None, &[("Authorization", "Basic dTpw")]).await;
        assert_missing_auth(&basic);
        let empty = call(&server, method, route, None, &[("Authorization", "Bearer ")]).await;
        assert_missing_auth(&empty);
        assert_invalid_token(&call(&server, method, route, Some("not.a.jwt"), &[]).await);
        let expired =
            server.token_with_claims(&json!({"user_id": "owner-1", "roles": [], "exp": 1000}));
        assert_invalid_token(&call(&server, method, route, Some(&expired), &[]).await);
        // `?token=` is ignored on REST routes (§2.2).
        let with_query = format!("{route}?token={owner}");
        assert_missing_auth(&call(&server, method, &with_query, None, &[]).await);
    }
}

#[tokio::test]
async fn list_and_read_own_sessions() {
    let (_upstream, server, session) = server_with_session("owner-2").await;
    let owner = server.token("owner-2", &["user"], None);

    let list = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    assert_eq!(list["user_id"], "owner-2");
    assert_eq!((list["count"].as_u64(), list["limit"].as_u64()), (Some(1), Some(100)));
    assert_eq!(list["truncated"], false);
    let item = &list["sessions"][0];
    assert_eq!(item["id"], session.as_str());
    assert_eq!(item["session_id"], session.as_str());
    assert_eq!(item["user_id"], "owner-2");
    assert_eq!(item["name"], "Hello there.");
    assert_eq!(item["message_count"], 2);
    assert_eq!(
        (item["is_active"].as_bool(), item["admin_assisted"].as_bool()),
        (Some(true), Some(false))
    );
    assert_eq!(item["help_requested"], false, "{item}");
    for key in ["end_time", "assisting_admin_name", "share_token"] {
        assert!(item.get(key).is_none(), "{key} omitted while empty: {item}");
    }
    for key in [
        "last_activity",
        "start_time",
        "duration",
        "total_tokens",
        "max_response_time",
        "avg_response_time",
    ] {
        assert!(item.get(key).is_some(), "{key} present: {item}");
    }

    let detail = ok_json(&get(&server, &format!("/sessions/{session}"), Some(&owner)).await);
    assert_eq!(detail["session_id"], session.as_str());
    assert_eq!(detail["name"], "Hello there.");
    assert_eq!(detail["model_id"], "", "no model_select was sent");
    let messages = detail["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 2, "{detail}");
    assert_eq!(messages[0]["content"], "Hello there. How are you?");
    assert_eq!(messages[0]["sender"], "user");
    assert_eq!(messages[1]["sender"], "ai");
    for m in messages {
        assert!(m["timestamp"].as_str().is_some_and(|t| t.ends_with('Z')), "{m}");
        for key in ["file_id", "file_url"] {
            assert!(m.get(key).is_none(), "{key} omitted while empty: {m}");
        }
    }
    assert!(messages[0].get("metadata").is_none(), "metadata omitted while empty");
    // A stored reply names its model and tokens (issue 17).
    assert_eq!(messages[1]["metadata"]["model_id"], "openai-gpt4", "{}", messages[1]);

    // Someone with no sessions gets an empty list.
    let nobody = server.token("nobody", &["user"], None);
    let empty = ok_json(&get(&server, "/sessions", Some(&nobody)).await);
    assert_eq!(
        empty,
        json!({"sessions": [], "user_id": "nobody", "count": 0, "limit": 100, "truncated": false})
    );
}

#[tokio::test]
async fn other_users_and_admins_never_see_a_session() {
    let (_upstream, server, session) = server_with_session("owner-3").await;
    let other = server.token("intruder", &["user"], None);
    let admin = server.token("boss", &["admin"], Some("Boss"));
    for token in [&other, &admin] {
        assert_session_not_found(&get(&server, &format!("/sessions/{session}"), Some(token)).await);
        assert_session_not_found(
            &post(&server, &format!("/sessions/{session}/end"), Some(token)).await,
        );
        assert_session_not_found(
            &post(&server, &format!("/sessions/{session}/share"), Some(token)).await,
        );
        let list = ok_json(&get(&server, "/sessions", Some(token)).await);
        assert_eq!(list["count"], 0, "{list}");
    }
    let owner = server.token("owner-3", &["user"], None);
    for route in [
        "/sessions/does-not-exist",
        "/sessions/does-not-exist/end",
        "/sessions/does-not-exist/share",
    ] {
        let method = if route.ends_with("exist") { "GET" } else { "POST" };
        assert_session_not_found(&call(&server, method, route, Some(&owner), &[]).await);
    }
    // The session was neither ended nor shared by the refused calls.
    let detail = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    assert_eq!(detail["sessions"][0]["is_active"], true);
    assert!(detail["sessions"][0].get("share_token").is_none());
}

#[tokio::test]
async fn ending_twice_succeeds_and_frees_the_active_slot() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let owner = server.token("ender", &["user"], None);
    let mut client = server.connect(&owner).await;
    let (session, _) = chat(&mut client, "e1", "First conversation").await;

    let end = post(&server, &format!("/sessions/{session}/end"), Some(&owner)).await;
    assert_eq!(ok_json(&end), json!({"status": "ended"}));
    let first = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    let item = &first["sessions"][0];
    assert_eq!(item["is_active"], false, "{item}");
    let end_time = time(&item["end_time"]);

    tokio::time::sleep(Duration::from_millis(20)).await;
    let again = post(&server, &format!("/sessions/{session}/end"), Some(&owner)).await;
    assert_eq!(ok_json(&again), json!({"status": "ended"}), "ending again succeeds");
    let second = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    let later = time(&second["sessions"][0]["end_time"]);
    assert!(later > end_time, "ending again overwrites the end time: {end_time} → {later}");

    // The connection stays open, and a fresh id now starts a new session (the slot is free).
    let (fresh, _) = chat(&mut client, "e2-brand-new", "Second conversation").await;
    assert_ne!(fresh, session, "a new session after ending the old one");
    let list = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    assert_eq!(list["count"], 2);
    assert_eq!(list["sessions"][0]["id"], fresh.as_str(), "newest start first: {list}");
    assert_eq!(list["sessions"][1]["id"], session.as_str());
}

#[tokio::test]
async fn sharing_gives_a_stable_token_and_a_public_view() {
    let (_upstream, server, session) = server_with_session("sharer").await;
    let owner = server.token("sharer", &["user"], None);

    let shared = ok_json(&post(&server, &format!("/sessions/{session}/share"), Some(&owner)).await);
    let token = shared["share_token"].as_str().expect("share_token").to_string();
    assert_eq!(token.len(), 32, "{shared}");
    assert!(token.chars().all(|c| c.is_ascii_alphanumeric()), "{token}");
    assert_eq!(shared.as_object().map(|o| o.len()), Some(1), "{shared}");
    let again = ok_json(&post(&server, &format!("/sessions/{session}/share"), Some(&owner)).await);
    assert_eq!(again["share_token"], token.as_str(), "the token is stable");

    let list = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    assert_eq!(list["sessions"][0]["share_token"], token.as_str());

    // Public: no token needed, and a token (even another user's) changes nothing.
    let view = ok_json(&get(&server, &format!("/shared/{token}"), None).await);
    assert_eq!(view["session_id"], session.as_str());
    assert_eq!(view["name"], "Hello there.");
    let messages: Vec<&Value> = view["messages"].as_array().expect("messages").iter().collect();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0]["content"], "Hello there. How are you?");
    assert_eq!(view.as_object().map(|o| o.len()), Some(3), "session_id, name, messages: {view}");
    let other = server.token("stranger", &["user"], None);
    assert_eq!(ok_json(&get(&server, &format!("/shared/{token}"), Some(&other)).await), view);

    // Works on ended sessions too.
    ok_json(&post(&server, &format!("/sessions/{session}/end"), Some(&owner)).await);
    assert_eq!(ok_json(&get(&server, &format!("/shared/{token}"), None).await), view);

    let unknown = get(&server, "/shared/0123456789abcdef0123456789abcdef", None).await;
    assert_error_body(&unknown, 404, "Shared session not found", "NOT_FOUND");
}

#[tokio::test]
async fn revoking_a_share_link_ends_the_old_link() {
    let (_upstream, server, session) = server_with_session("revoker").await;
    let owner = server.token("revoker", &["user"], None);
    let route = format!("/sessions/{session}/share");
    let first = ok_json(&post(&server, &route, Some(&owner)).await)["share_token"]
        .as_str()
        .expect("share_token")
        .to_string();
    assert_eq!(get(&server, &format!("/shared/{first}"), None).await.status, 200);

    // Only the owner may revoke: anyone else, and an unknown session, is 404.
    let stranger = server.token("stranger", &["user"], None);
    let admin = server.token("boss", &["admin"], None);
    for token in [&stranger, &admin] {
        assert_session_not_found(&call(&server, "DELETE", &route, Some(token), &[]).await);
    }
    assert_session_not_found(
        &call(&server, "DELETE", "/sessions/does-not-exist/share", Some(&owner), &[]).await,
    );
    assert_eq!(get(&server, &format!("/shared/{first}"), None).await.status, 200, "still shared");

    let revoked = ok_json(&call(&server, "DELETE", &route, Some(&owner), &[]).await);
    assert_eq!(revoked, json!({"status": "revoked"}));
    let gone = get(&server, &format!("/shared/{first}"), None).await;
    assert_error_body(&gone, 404, "Shared session not found", "NOT_FOUND");
    let list = ok_json(&get(&server, "/sessions", Some(&owner)).await);
    assert!(list["sessions"][0].get("share_token").is_none(), "{list}");
    // Revoking again is fine; a later share makes a new token that works.
    assert_eq!(call(&server, "DELETE", &route, Some(&owner), &[]).await.status, 200);
    let second = ok_json(&post(&server, &route, Some(&owner)).await)["share_token"]
        .as_str()
        .expect("share_token")
        .to_string();
    assert_ne!(second, first, "a new token");
    assert_eq!(
        ok_json(&get(&server, &format!("/shared/{second}"), None).await)["session_id"],
        session.as_str()
    );
    assert_eq!(get(&server, &format!("/shared/{first}"), None).await.status, 404);
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_the_plain_404() {
    let (_upstream, server, session) = server_with_session("paths").await;
    let owner = server.token("paths", &["user"], None);
    let admin = server.token("boss", &["admin"], None);
    for (method, route, token) in [
        ("GET", "/nope".to_string(), None),
        ("GET", "/sessions/a/b/c".to_string(), Some(&owner)),
        ("GET", format!("/sessions/{session}/end"), Some(&owner)),
        ("DELETE", format!("/sessions/{session}"), Some(&owner)),
        ("POST", "/sessions".to_string(), Some(&owner)),
        ("POST", "/shared/abc".to_string(), None),
        ("GET", "/admin/nope".to_string(), None),
        ("GET", "/admin/takeover/x".to_string(), Some(&admin)),
        ("POST", "/admin/sessions".to_string(), None),
        ("OPTIONS", "/sessions".to_string(), None),
    ] {
        let response = call(&server, method, &route, token.map(String::as_str), &[]).await;
        assert_not_found_page(&response);
    }
    let outside = chatbox_tests::http::request(server.addr(), "GET", "/sessions", &[]).await;
    assert_not_found_page(&outside);
}

/// Issue 16: a path segment that does not decode to UTF-8 names nothing, so it is answered like
/// an unknown session or share token — the §4 JSON body, never axum's plain-text `Invalid URL`.
#[tokio::test]
async fn undecodable_path_segments_are_unknown_sessions() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let user = server.token("owner-1", &["user"], None);
    let admin = server.token("admin-1", &["admin"], None);
    for (method, route) in [
        ("GET", "/sessions/%ff%fe"),
        ("POST", "/sessions/%ff%fe/end"),
        ("POST", "/sessions/%ff%fe/share"),
    ] {
        assert_session_not_found(&call(&server, method, route, Some(&user), &[]).await);
    }
    for route in ["/admin/takeover/%ff%fe", "/admin/leave/%ff%fe"] {
        assert_session_not_found(&call(&server, "POST", route, Some(&admin), &[]).await);
    }
    assert_error_body(
        &get(&server, "/admin/users/%ff%fe/sessions", Some(&admin)).await,
        400,
        "user_id is not valid UTF-8",
        "BAD_REQUEST",
    );
    assert_error_body(
        &get(&server, "/shared/%ff%fe", None).await,
        404,
        "Shared session not found",
        "NOT_FOUND",
    );
}
