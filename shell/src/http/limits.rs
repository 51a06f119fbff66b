//! The HTTP rate limits (PROTOCOL.md §5 with §10 item 28), as axum middleware over the engine's
//! `SharedLimiter`s:
//!
//! - [`admin_limit`] — `{P}/admin/*`, keyed by the admin's `user_id`, after authentication (it
//!   reads the [`Caller`] the admin gate put in the request's extensions).
//! - [`public_limit`] — per client IP ([`client_ip`](super::client_ip)), one limiter per
//!   [`PublicFamily`]; health probes from `health_probe_networks` are exempt.
//!
//! A refusal is `429` with `Retry-After` (whole seconds, rounded up, at least 1) and the body of
//! [`RateLimitBody`]. A refused attempt is not counted. Idle keys are cleaned by the sweeper.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use chatbox_core::protocol::http::{retry_after_header_secs, RateLimitBody};
use chatbox_core::rate::Decision;
use chatbox_core::shared::SharedLimiter;
use http::{header, HeaderValue, StatusCode};

use super::client_ip::{client_ip, is_health_probe};
use crate::engine::caller::Caller;
use crate::engine::hub::Engine;
use crate::engine::metrics::Limiter;

/// The `429` of a limiter: `Retry-After` and the admin body (with `retry_after_ms`) or the
/// public body (without).
pub fn too_many_requests(retry_after: Duration, admin: bool) -> Response {
    let body = if admin { RateLimitBody::admin(retry_after) } else { RateLimitBody::public() };
    let mut response = (StatusCode::TOO_MANY_REQUESTS, Json(body)).into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_header_secs(retry_after)));
    response
}

/// Middleware for `{P}/admin/*`: one event per request of the authenticated admin. Install it
/// inside the admin gate (which inserts the [`Caller`]); without a caller it lets the request
/// through, since the gate has then already refused it.
pub async fn admin_limit(State(engine): State<Arc<Engine>>, req: Request, next: Next) -> Response {
    let Some(user_id) = req.extensions().get::<Caller>().map(|c| c.user_id.clone()) else {
        return next.run(req).await;
    };
    // Counted, logged and fleet-wide (issue 14) in the limits service.
    if let Decision::Denied { retry_after } =
        engine.limits.check_admin(&user_id, engine.clock.now()).await
    {
        return too_many_requests(retry_after, true);
    }
    next.run(req).await
}

/// The route families of the public limit, each with its own bucket per client IP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PublicFamily {
    /// `{P}/healthz`, `{P}/readyz`; exempt from `health_probe_networks`.
    Probes,
    /// `{P}/shared/:token`.
    Shared,
    /// `{P}/metrics/prometheus`.
    Metrics,
}

impl PublicFamily {
    /// The family's name in logs.
    pub const fn as_str(self) -> &'static str {
        match self {
            PublicFamily::Probes => "probes",
            PublicFamily::Shared => "shared",
            PublicFamily::Metrics => "metrics",
        }
    }

    /// The engine's limiter for this family.
    pub fn limiter(self, engine: &Engine) -> &SharedLimiter<IpAddr> {
        let limiters = &engine.limits.public;
        match self {
            PublicFamily::Probes => &limiters.probes,
            PublicFamily::Shared => &limiters.shared,
            PublicFamily::Metrics => &limiters.metrics,
        }
    }
}

/// State of [`public_limit`]: the engine and the family the routes belong to.
#[derive(Debug, Clone)]
pub struct PublicGate {
    /// The engine (configuration, limiters, clock).
    pub engine: Arc<Engine>,
    /// Which bucket.
    pub family: PublicFamily,
}

/// Middleware for the public routes: one event per request of the client IP in the family's
/// limiter; probes from `health_probe_networks` pass without counting.
pub async fn public_limit(State(gate): State<PublicGate>, req: Request, next: Next) -> Response {
    let engine = &gate.engine;
    let ip = client_ip(&engine.config.http, &req);
    if gate.family == PublicFamily::Probes && is_health_probe(&engine.config.http, ip) {
        return next.run(req).await;
    }
    if let Decision::Denied { retry_after } =
        gate.family.limiter(engine).check(&ip, engine.clock.now())
    {
        tracing::info!(client_ip = %ip, family = gate.family.as_str(), ?retry_after, "public rate limit");
        engine.metrics.rate_limited(Limiter::Public);
        return too_many_requests(retry_after, false);
    }
    next.run(req).await
}

/// `router` with the public limit of `family` on each of its routes (not on its fallback).
pub fn with_public_limit<S>(
    router: Router<S>,
    engine: &Arc<Engine>,
    family: PublicFamily,
) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(from_fn_with_state(
        PublicGate { engine: Arc::clone(engine), family },
        public_limit,
    ))
}

/// `router` with the admin limit on each of its routes; add the admin gate after this call so it
/// runs first.
pub fn with_admin_limit<S>(router: Router<S>, engine: &Arc<Engine>) -> Router<S>
where
    S: Clone + Send + Sync + 'static,
{
    router.route_layer(from_fn_with_state(Arc::clone(engine), admin_limit))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    async fn body(response: Response) -> String {
        let bytes = response.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    #[tokio::test]
    async fn refusals_carry_retry_after_and_the_exact_bodies() {
        let admin = too_many_requests(Duration::from_millis(11_234), true);
        assert_eq!(admin.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(
            admin.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("12")
        );
        assert_eq!(
            body(admin).await,
            r#"{"error":"rate_limit_exceeded","message":"Too many requests. Please try again later.","retry_after_ms":11234}"#
        );
        let public = too_many_requests(Duration::from_millis(10), false);
        assert_eq!(
            public.headers().get(header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            Some("1")
        );
        assert_eq!(
            body(public).await,
            r#"{"error":"rate_limit_exceeded","message":"Too many requests. Please try again later."}"#
        );
    }
}
