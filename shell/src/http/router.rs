//! The axum `Router`: every route under the configured prefix (PROTOCOL.md §1), the security
//! headers on every response (framework 404s included), and the original's plain
//! `404 page not found` for unknown paths and wrong methods.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chatbox_core::protocol::http::{DbReadiness, HealthBody, ReadyBody};
use http::{header, HeaderValue, StatusCode};
use tower_http::set_header::SetResponseHeaderLayer;

use super::auth::Verifier;
use super::ws::{handshake, WsState};
use crate::engine::hub::Engine;

/// Joins the prefix and a route path without doubling slashes (`/` alone means the root).
pub fn route(prefix: &str, path: &str) -> String {
    format!("{}{}", prefix.trim_end_matches('/'), path)
}

/// Builds the router for `engine`.
pub fn build(engine: Arc<Engine>) -> Router {
    let prefix = engine.config.server.path_prefix.clone();
    let verifier = Arc::new(Verifier::new(
        engine.config.auth.jwt_secret.expose().as_bytes(),
        engine.config.auth.require_exp,
    ));
    let ws_state = WsState { engine: Arc::clone(&engine), verifier };
    let ws = Router::new().route(&route(&prefix, "/ws"), get(handshake)).with_state(ws_state);
    let ops = Router::new()
        .route(&route(&prefix, "/healthz"), get(healthz))
        .route(&route(&prefix, "/readyz"), get(readyz))
        .with_state(engine);
    let mut router = ws
        .merge(ops)
        .fallback(not_found)
        .method_not_allowed_fallback(not_found);
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    router
}

/// Headers on every response (PROTOCOL.md §1).
pub const SECURITY_HEADERS: [(&str, &str); 4] = [
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-xss-protection", "1; mode=block"),
];

async fn not_found() -> Response {
    let mut response = Response::new(Body::from("404 page not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

async fn healthz(State(engine): State<Arc<Engine>>) -> Json<HealthBody> {
    Json(HealthBody::healthy(engine.frame_now()))
}

async fn readyz(State(engine): State<Arc<Engine>>) -> Response {
    let db = if engine.is_stopping() {
        DbReadiness::Unreachable
    } else {
        let ping = tokio::time::timeout(std::time::Duration::from_secs(2), engine.store.ping()).await;
        match ping {
            Ok(Ok(())) => DbReadiness::Ready,
            _ => DbReadiness::Unreachable,
        }
    };
    let body = ReadyBody::new(db, engine.models.len(), engine.frame_now());
    let status = if engine.is_stopping() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::from_u16(body.status_code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE)
    };
    (status, Json(body)).into_response()
}
