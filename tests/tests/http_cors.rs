#![cfg(not(madsim))]
//! CORS through the real binary (PROTOCOL.md §1): installed only when `CORS_ALLOWED_ORIGINS` is
//! set — then preflights are answered `204` with the configured methods, headers, credentials
//! and max-age, listed origins get the CORS headers, and an origin that is neither listed nor the
//! request's own host is refused `403` before any route; without the setting there is no CORS
//! handling at all.

use chatbox_tests::harness::{Server, ServerOpts};
use chatbox_tests::http::{assert_not_found_page, call, ok_json};
use chatbox_tests::upstream::Upstream;

const APP: &str = "https://app.example.com";

fn preflight(origin: &str) -> [(&str, &str); 3] {
    [
        ("Origin", origin),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "authorization,content-type"),
    ]
}

/// The comma-separated values of a header, lower-cased and trimmed.
fn values(response: &chatbox_tests::harness::HttpResponse, name: &str) -> Vec<String> {
    response
        .headers
        .get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_ascii_lowercase())
        .collect()
}

#[tokio::test]
async fn configured_origins_get_cors() {
    let upstream = Upstream::start().await;
    let opts = ServerOpts::with_upstream(&upstream)
        .env("CORS_ALLOWED_ORIGINS", " https://app.example.com , https://other.example ");
    let server = Server::start(opts).await;

    let answer = call(&server, "OPTIONS", "/sessions", None, &preflight(APP)).await;
    assert_eq!(answer.status, 204, "{answer:?}");
    answer.assert_security_headers();
    assert_eq!(answer.header("access-control-allow-origin"), Some(APP));
    assert_eq!(answer.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(answer.header("access-control-max-age"), Some("43200"));
    let methods = values(&answer, "access-control-allow-methods");
    for m in ["get", "post", "put", "patch", "delete", "options"] {
        assert!(methods.contains(&m.to_string()), "{m} in {methods:?}");
    }
    let headers = values(&answer, "access-control-allow-headers");
    for h in ["origin", "content-type", "accept", "authorization"] {
        assert!(headers.contains(&h.to_string()), "{h} in {headers:?}");
    }
    // The second listed origin too (entries are trimmed).
    let other =
        call(&server, "OPTIONS", "/admin/sessions", None, &preflight("https://other.example"))
            .await;
    assert_eq!(
        (other.status, other.header("access-control-allow-origin")),
        (204, Some("https://other.example"))
    );

    // A simple request from a listed origin: the route answers, with the CORS headers.
    let health = call(&server, "GET", "/healthz", None, &[("Origin", APP)]).await;
    ok_json(&health);
    assert_eq!(health.header("access-control-allow-origin"), Some(APP));
    assert_eq!(health.header("access-control-allow-credentials"), Some("true"));
    assert!(
        values(&health, "access-control-expose-headers").contains(&"content-length".to_string())
    );

    // An unlisted origin is refused before any route (the WebSocket upgrade included).
    for (method, route) in
        [("GET", "/healthz"), ("OPTIONS", "/sessions"), ("GET", "/ws"), ("GET", "/nope")]
    {
        let refused =
            call(&server, method, route, None, &[("Origin", "https://evil.example")]).await;
        assert_eq!(refused.status, 403, "{method} {route}: {refused:?}");
        assert!(refused.header("access-control-allow-origin").is_none());
        refused.assert_security_headers();
    }
    // The request's own host as origin is not a cross-origin request.
    let own = format!("http://{}", server.addr());
    let same = call(&server, "GET", "/healthz", None, &[("Origin", &own)]).await;
    assert_eq!(same.status, 200, "{same:?}");
    // No origin at all: no CORS involvement.
    let plain = call(&server, "GET", "/healthz", None, &[]).await;
    assert_eq!(plain.status, 200);
    assert!(plain.header("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn no_cors_without_configuration() {
    let upstream = Upstream::start().await;
    let server = Server::start(ServerOpts::with_upstream(&upstream)).await;
    let answer = call(&server, "OPTIONS", "/sessions", None, &preflight(APP)).await;
    assert_not_found_page(&answer);
    assert!(
        answer.headers.keys().all(|k| !k.as_str().starts_with("access-control-")),
        "{answer:?}"
    );
    let health =
        call(&server, "GET", "/healthz", None, &[("Origin", "https://evil.example")]).await;
    ok_json(&health);
    assert!(health.header("access-control-allow-origin").is_none(), "{health:?}");
}

/// Issue 16: `*` lets any origin in without credentials — a literal `*` and no
/// `Access-Control-Allow-Credentials`, preflights and simple requests alike — while an origin
/// listed by name beside it keeps its mirrored origin and credentials.
#[tokio::test]
async fn star_means_any_origin_without_credentials() {
    let upstream = Upstream::start().await;
    for list in ["*", "*, https://app.example.com"] {
        let opts = ServerOpts::with_upstream(&upstream).env("CORS_ALLOWED_ORIGINS", list);
        let server = Server::start(opts).await;
        let evil = "https://evil.example";

        let answer = call(&server, "OPTIONS", "/sessions", None, &preflight(evil)).await;
        assert_eq!(answer.status, 204, "{list}: {answer:?}");
        assert_eq!(answer.header("access-control-allow-origin"), Some("*"), "{list}");
        assert_eq!(answer.header("access-control-allow-credentials"), None, "{list}");
        answer.assert_security_headers();

        let health = call(&server, "GET", "/healthz", None, &[("Origin", evil)]).await;
        ok_json(&health);
        assert_eq!(health.header("access-control-allow-origin"), Some("*"), "{list}");
        assert_eq!(health.header("access-control-allow-credentials"), None, "{list}");

        let listed = call(&server, "OPTIONS", "/sessions", None, &preflight(APP)).await;
        assert_eq!(listed.status, 204, "{list}: {listed:?}");
        if list == "*" {
            assert_eq!(listed.header("access-control-allow-origin"), Some("*"));
            assert_eq!(listed.header("access-control-allow-credentials"), None);
        } else {
            assert_eq!(listed.header("access-control-allow-origin"), Some(APP));
            assert_eq!(listed.header("access-control-allow-credentials"), Some("true"));
        }
    }
}
