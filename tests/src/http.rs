//! Plain HTTP helpers for the `http_*` tests: any method over a fresh loopback connection, with
//! the bearer token and the JSON checks the REST and admin routes need. Responses are the
//! harness's [`HttpResponse`].

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use serde_json::Value;

use crate::harness::{send_request, HttpResponse, Server, PREFIX};

/// One request with `method` to `path_and_query` with `headers` and no body, over a fresh
/// connection; the answer is read whole.
///
/// # Panics
/// When the server cannot be reached or does not answer within 10 s.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let pending = send_request(addr, method, path_and_query, headers, Empty::<Bytes>::new()).await;
    HttpResponse::from(pending.within(Duration::from_secs(10)).await)
}

/// `{P}<path>` (the harness prefix).
pub fn path(path: &str) -> String {
    format!("{PREFIX}{path}")
}

/// `method {P}<route>` with `Authorization: Bearer <token>` when a token is given, plus
/// `headers`.
pub async fn call(
    server: &Server,
    method: &str,
    route: &str,
    token: Option<&str>,
    headers: &[(&str, &str)],
) -> HttpResponse {
    let auth = token.map(|t| format!("Bearer {t}"));
    let mut all: Vec<(&str, &str)> = headers.to_vec();
    if let Some(auth) = &auth {
        all.push(("Authorization", auth));
    }
    request(server.addr(), method, &path(route), &all).await
}

/// `GET {P}<route>` with an optional bearer token.
pub async fn get(server: &Server, route: &str, token: Option<&str>) -> HttpResponse {
    call(server, "GET", route, token, &[]).await
}

/// `POST {P}<route>` (no body) with an optional bearer token.
pub async fn post(server: &Server, route: &str, token: Option<&str>) -> HttpResponse {
    call(server, "POST", route, token, &[]).await
}

/// The body as JSON.
///
/// # Panics
/// When the body is not JSON.
pub fn json(response: &HttpResponse) -> Value {
    serde_json::from_str(&response.body)
        .unwrap_or_else(|e| panic!("body is not JSON ({e}): {response:?}"))
}

/// Asserts `status`, a JSON content type, the body `{"error":error,"code":code}` exactly, and
/// the security headers.
pub fn assert_error_body(response: &HttpResponse, status: u16, error: &str, code: &str) {
    assert_eq!(response.status, status, "status of {response:?}");
    assert_eq!(
        json(response),
        serde_json::json!({"error": error, "code": code}),
        "body of {response:?}"
    );
    assert!(
        response.header("content-type").is_some_and(|c| c.starts_with("application/json")),
        "content type of {response:?}"
    );
    response.assert_security_headers();
}

/// Asserts `200`, JSON, the security headers; returns the body.
pub fn ok_json(response: &HttpResponse) -> Value {
    assert_eq!(response.status, 200, "status of {response:?}");
    response.assert_security_headers();
    json(response)
}

/// Asserts the framework `404 page not found` (text/plain) with the security headers.
pub fn assert_not_found_page(response: &HttpResponse) {
    assert_eq!(response.status, 404, "status of {response:?}");
    assert_eq!(response.body, "404 page not found\n", "body of {response:?}");
    assert_eq!(response.header("content-type"), Some("text/plain; charset=utf-8"), "{response:?}");
    response.assert_security_headers();
}

/// The REST `401` for a missing or non-`Bearer` header.
pub fn assert_missing_auth(response: &HttpResponse) {
    assert_error_body(response, 401, "Invalid authorization header", "UNAUTHORIZED");
}

/// The REST `401` for a token that does not verify.
pub fn assert_invalid_token(response: &HttpResponse) {
    assert_error_body(response, 401, "Invalid or expired authentication token", "INVALID_TOKEN");
}

/// The `403` of the admin routes.
pub fn assert_forbidden(response: &HttpResponse) {
    assert_error_body(response, 403, "Insufficient permissions", "FORBIDDEN");
}

/// The `404 Session not found`.
pub fn assert_session_not_found(response: &HttpResponse) {
    assert_error_body(response, 404, "Session not found", "NOT_FOUND");
}

/// The `400` with `text`.
pub fn assert_bad_request(response: &HttpResponse, text: &str) {
    assert_error_body(response, 400, text, "BAD_REQUEST");
}
