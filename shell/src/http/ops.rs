//! Operations routes: `/healthz`, `/readyz` (store and providers, 503 while draining) and
//! `/metrics/prometheus` (client network allow-list, then the public limit; PROTOCOL.md §4.9–4.11),
//! plus the request-duration middleware that feeds `chatbox_http_request_duration_seconds`.

use std::sync::Arc;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chatbox_core::budgets::STORE_PING_BUDGET;
use chatbox_core::protocol::http::{DbReadiness, ErrorBody, HealthBody, ReadyBody};
use http::{header, HeaderValue, StatusCode};

use super::client_ip::{client_ip, metrics_allowed};
use crate::engine::hub::Engine;
use crate::engine::metrics::Metrics;

/// `GET {P}/healthz`.
pub async fn healthz(State(engine): State<Arc<Engine>>) -> Json<HealthBody> {
    Json(HealthBody::healthy(engine.frame_now()))
}

/// `GET {P}/readyz`: 503 while draining for shutdown or when the store does not answer in 2 s.
/// `checks.store.backend` names the store pinged (the `mongodb` check keeps its name for
/// clients of §4.10 whichever store is in use).
pub async fn readyz(State(engine): State<Arc<Engine>>) -> Response {
    let ping = tokio::time::timeout(STORE_PING_BUDGET, engine.persistence.ping()).await;
    let db = match ping {
        Ok(Ok(())) => DbReadiness::Ready,
        _ => DbReadiness::Unreachable,
    };
    let mut body = ReadyBody::new(db, engine.replies.model_list().len(), engine.frame_now())
        .with_store(engine.config.storage.backend.backend_name())
        .with_outbox(engine.persistence.outbox_len(), engine.persistence.outbox_capacity())
        .with_bus(engine.delivery.bus_health());
    if engine.is_stopping() {
        body = body.draining();
    }
    let status =
        StatusCode::from_u16(body.status_code()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    (status, Json(body)).into_response()
}

/// `GET {P}/metrics/prometheus`: the text exposition; 404 when `ENABLE_METRICS` is off.
pub async fn prometheus(State(engine): State<Arc<Engine>>) -> Response {
    if !engine.config.http.enable_metrics {
        return StatusCode::NOT_FOUND.into_response();
    }
    // The gauges are read at scrape time so they are exact, not as old as the last sweep.
    engine.metrics.observe_sessions(engine.sessions.with(|t| t.memory_stats()));
    let replay = engine.delivery.replay_frames();
    engine.metrics.replay_buffer_frames.set(i64::try_from(replay).unwrap_or(i64::MAX));
    let mut response = engine.metrics.render().into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(Metrics::CONTENT_TYPE));
    response
}

/// The metrics allow-list (§4.11): clients outside `METRICS_ALLOWED_NETWORKS` get 403.
pub async fn metrics_gate(State(engine): State<Arc<Engine>>, req: Request, next: Next) -> Response {
    let ip = client_ip(&engine.config.http, &req);
    if !metrics_allowed(&engine.config.http, ip) {
        return (StatusCode::FORBIDDEN, Json(ErrorBody::forbidden())).into_response();
    }
    next.run(req).await
}

/// Records each request's duration by route template and method.
pub async fn record_duration(
    State(engine): State<Arc<Engine>>,
    req: Request,
    next: Next,
) -> Response {
    let endpoint = req
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = req.method().as_str().to_string();
    let began = engine.clock.now();
    let response = next.run(req).await;
    engine.metrics.observe_http_request(&endpoint, &method, engine.clock.now() - began);
    response
}
