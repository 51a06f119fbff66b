#![cfg(not(madsim))]
//! The WebSocket handshake's refusals through the real binary (PROTOCOL.md §2.2, §2.3, §3.1,
//! §10 items 17, 18): every authentication failure answers `401` with the exact plain-text body
//! and the security headers; the origin allow-list answers `403`; good tokens upgrade.

use chatbox_tests::harness::{sign, unix_now, Server, ServerOpts};
use chatbox_tests::upstream::Upstream;
use serde_json::json;

const MISSING: &str = "Missing authentication token";
const FAILED: &str = "Authentication failed";

/// `token` with its header replaced by `{"alg": alg, "typ": "JWT"}`; signed over the new header
/// with HMAC-SHA256 under `secret` (so only the `alg` is wrong), or with an empty signature.
fn with_header(token: &str, alg: &str, secret: Option<&str>) -> String {
    let payload = token.split('.').nth(1).expect("a JWT has a payload");
    let header = b64url(format!(r#"{{"alg":"{alg}","typ":"JWT"}}"#).as_bytes());
    let signing_input = format!("{header}.{payload}");
    let signature = match secret {
        Some(secret) => jsonwebtoken::crypto::sign(
            signing_input.as_bytes(),
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            jsonwebtoken::Algorithm::HS256,
        )
        .expect("HMAC"),
        None => String::new(),
    };
    format!("{signing_input}.{signature}")
}

/// Unpadded base64url (RFC 7515 §2).
fn b64url(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

async fn server_with(upstream: &Upstream, env: &[(&str, &str)]) -> Server {
    let mut opts = ServerOpts::with_upstream(upstream);
    for (key, value) in env {
        opts = opts.env(key, value);
    }
    Server::start(opts).await
}

#[tokio::test]
async fn handshake_auth_failures_are_401_plain_text() {
    let upstream = Upstream::start().await;
    let server = server_with(&upstream, &[]).await;
    let good = server.token("auth-user", &["user"], Some("Auth User"));
    let bearer = |t: &str| format!("Bearer {t}");

    // No token at all, and a header that is not `Bearer …`.
    server.ws_handshake(None, &[]).await.assert_plain(401, MISSING);
    server.ws_handshake(None, &[("Authorization", "Basic x")]).await.assert_plain(401, MISSING);
    server.ws_handshake(None, &[("Authorization", "Bearer ")]).await.assert_plain(401, MISSING);
    server.ws_handshake(None, &[("Authorization", "bearer abc")]).await.assert_plain(401, MISSING);

    // Tokens that do not validate.
    let hour = unix_now() + 3600;
    let claims = json!({"user_id": "auth-user", "roles": ["user"], "exp": hour});
    let other_secret = sign(b"another-secret-that-is-long-enough-0123456789", &claims);
    let expired =
        server.token_with_claims(&json!({"user_id": "u", "roles": [], "exp": unix_now() - 10}));
    let not_yet = server.token_with_claims(&json!({"user_id": "u", "roles": [], "nbf": hour}));
    let no_user = server.token_with_claims(&json!({"roles": ["user"], "exp": hour}));
    let empty_user = server.token_with_claims(&json!({"user_id": "", "roles": [], "exp": hour}));
    let no_roles = server.token_with_claims(&json!({"user_id": "u", "exp": hour}));
    let null_roles = server.token_with_claims(&json!({"user_id": "u", "roles": null, "exp": hour}));
    let bad_role = server.token_with_claims(&json!({"user_id": "u", "roles": [1], "exp": hour}));
    let garbage = "not.a.jwt".to_string();
    let alg_none = with_header(&server.token("u", &["user"], None), "none", None);
    let alg_rs256 =
        with_header(&server.token("u", &["user"], None), "RS256", Some(server.secret()));
    let alg_es256 =
        with_header(&server.token("u", &["user"], None), "ES256", Some(server.secret()));
    for (what, token) in [
        ("alg none", &alg_none),
        ("alg RS256 (HMAC-signed)", &alg_rs256),
        ("alg ES256 (HMAC-signed)", &alg_es256),
        ("bad signature", &other_secret),
        ("expired", &expired),
        ("not yet valid", &not_yet),
        ("missing user_id", &no_user),
        ("empty user_id", &empty_user),
        ("missing roles", &no_roles),
        ("roles null", &null_roles),
        ("non-string role", &bad_role),
        ("malformed", &garbage),
    ] {
        let header = bearer(token);
        let answer = server.ws_handshake(None, &[("Authorization", &header)]).await;
        assert_eq!(answer.status, 401, "{what}: {answer:?}");
        answer.assert_plain(401, FAILED);
        let answer = server.ws_handshake(Some(&format!("token={token}")), &[]).await;
        assert_eq!(answer.status, 401, "{what} as ?token=: {answer:?}");
        answer.assert_plain(401, FAILED);
    }

    // Every HMAC algorithm is accepted (§2.1).
    for alg in [jsonwebtoken::Algorithm::HS384, jsonwebtoken::Algorithm::HS512] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &json!({"user_id": "hmac-user", "roles": ["user"], "exp": hour}),
            &jsonwebtoken::EncodingKey::from_secret(server.secret().as_bytes()),
        )
        .expect("sign");
        let client = server.connect(&token).await;
        assert_eq!(client.greeting["user_id"], "hmac-user", "{alg:?}");
    }

    // Any Authorization header wins over a good ?token= (§2.2).
    let query = format!("token={good}");
    server
        .ws_handshake(Some(&query), &[("Authorization", "Basic x")])
        .await
        .assert_plain(401, MISSING);
    let bad_header = bearer(&other_secret);
    server
        .ws_handshake(Some(&query), &[("Authorization", &bad_header)])
        .await
        .assert_plain(401, FAILED);

    // Good tokens upgrade, by header and by query.
    let via_header = server.ws_handshake(None, &[("Authorization", &bearer(&good))]).await;
    assert_eq!(via_header.status, 101, "{via_header:?}");
    let via_query = server.ws_handshake(Some(&query), &[]).await;
    assert_eq!(via_query.status, 101, "{via_query:?}");
    let client = server.try_connect(Some(&query), &[]).await.expect("query token upgrades");
    assert_eq!(client.greeting["user_id"], "auth-user");
    let token_without_exp = server.token_with_claims(&json!({"user_id": "no-exp", "roles": []}));
    let client = server.connect(&token_without_exp).await;
    assert_eq!(client.greeting["user_id"], "no-exp", "exp is optional by default (§2.1)");
}

#[tokio::test]
async fn query_token_can_be_disabled() {
    let upstream = Upstream::start().await;
    let server = server_with(&upstream, &[("JWT_DISABLE_QUERY_TOKEN", "true")]).await;
    let good = server.token("query-user", &["user"], None);
    server.ws_handshake(Some(&format!("token={good}")), &[]).await.assert_plain(
        401,
        "JWT via query parameter is disabled. Use the Authorization header instead.",
    );
    // The header still works.
    let client = server.connect(&good).await;
    assert_eq!(client.greeting["user_id"], "query-user");
}

#[tokio::test]
async fn exp_can_be_required() {
    let upstream = Upstream::start().await;
    let server = server_with(&upstream, &[("JWT_REQUIRE_EXP", "true")]).await;
    let without = server.token_with_claims(&json!({"user_id": "exp-user", "roles": ["user"]}));
    let header = format!("Bearer {without}");
    server.ws_handshake(None, &[("Authorization", &header)]).await.assert_plain(401, FAILED);
    let with = server.token("exp-user", &["user"], None);
    let client = server.connect(&with).await;
    assert_eq!(client.greeting["user_id"], "exp-user");
}

#[tokio::test]
async fn origin_allow_list_refuses_other_and_missing_origins() {
    let upstream = Upstream::start().await;
    let server = server_with(&upstream, &[("WS_ALLOWED_ORIGINS", "https://app.example")]).await;
    let header = format!("Bearer {}", server.token("origin-user", &["user"], None));
    let auth = ("Authorization", header.as_str());

    for origin in [
        "https://evil.example",
        "http://app.example",
        "https://app.example:8443",
        "https://APP.example",
    ] {
        let answer = server.ws_handshake(None, &[auth, ("Origin", origin)]).await;
        assert_eq!(answer.status, 403, "origin {origin}: {answer:?}");
        answer.assert_plain(403, "Forbidden");
    }
    let answer = server.ws_handshake(None, &[auth]).await;
    assert_eq!(answer.status, 403, "missing origin: {answer:?}");
    answer.assert_security_headers();

    let answer = server.ws_handshake(None, &[auth, ("Origin", "https://app.example")]).await;
    assert_eq!(answer.status, 101, "matching origin: {answer:?}");
    let client = server
        .try_connect(None, &[auth, ("Origin", "https://app.example")])
        .await
        .expect("the allowed origin upgrades");
    assert_eq!(client.greeting["type"], "connection_status");
}
