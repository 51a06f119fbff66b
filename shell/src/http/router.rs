//! The axum `Router`: every route under the configured prefix (PROTOCOL.md §1), the security
//! headers on every response (framework 404s included), the original's plain
//! `404 page not found` for unknown paths and wrong methods, and CORS when
//! `chatbox.cors_allowed_origins` is set. The web pages ([`super::pages`]) are merged in here; with
//! `FRAME_ANCESTORS` set, CSP `frame-ancestors` replaces `X-Frame-Options` on every response.
//!
//! Layers, outermost first: security headers → CORS gate (403 for an unlisted origin, 204 for a
//! preflight) → tower-http `CorsLayer` → routes. Per route: the user routes' bearer auth, the
//! admin gate and limit, the public limits (`healthz`/`readyz`, `shared`).

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::Response;
use axum::routing::get;
use axum::Router;
use http::{header, HeaderValue, Method, StatusCode};
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::set_header::SetResponseHeaderLayer;

use super::auth::Verifier;
use super::limits::{with_public_limit, PublicFamily};
use super::ops;
use super::pages::{self, PageOptions};
use super::rest::ApiState;
use super::ws::{handshake, WsState};
use super::{admin, rest};
use crate::engine::hub::Engine;

/// Joins the prefix and a route path without doubling slashes (`/` alone means the root).
pub fn route(prefix: &str, path: &str) -> String {
    format!("{}{}", prefix.trim_end_matches('/'), path)
}

/// Builds the router for `engine`, with the web pages served as `pages` says.
pub fn build(
    engine: Arc<Engine>,
    pages: PageOptions,
    files: Option<Arc<dyn crate::engine::files::FileStore>>,
) -> Router {
    let prefix = engine.config.server.path_prefix.clone();
    let verifier = Arc::new(Verifier::new(
        engine.config.auth.jwt_secret.expose().as_bytes(),
        engine.config.auth.require_exp,
    ));
    let ws_state = WsState { engine: Arc::clone(&engine), verifier: Arc::clone(&verifier) };
    let ws = Router::new().route(&route(&prefix, "/ws"), get(handshake)).with_state(ws_state);
    let uploads = files.map(|store| {
        super::upload::routes(Arc::clone(&engine), Arc::clone(&verifier), store, &prefix)
    });
    let api = ApiState { engine: Arc::clone(&engine), verifier };
    let ops = Router::new()
        .route(&route(&prefix, "/healthz"), get(ops::healthz))
        .route(&route(&prefix, "/readyz"), get(ops::readyz));
    let ops = with_public_limit(ops, &engine, PublicFamily::Probes).with_state(Arc::clone(&engine));
    let scrape = Router::new().route(&route(&prefix, "/metrics/prometheus"), get(ops::prometheus));
    // The allow-list is added after the limit so it runs first (§4.11: 403 before counting).
    let scrape = with_public_limit(scrape, &engine, PublicFamily::Metrics)
        .route_layer(from_fn_with_state(Arc::clone(&engine), ops::metrics_gate))
        .with_state(Arc::clone(&engine));
    // Read once: the pages' policy and every other response's header use the same sources.
    let ancestors = pages::frame_ancestors(&engine.config.http.frame_ancestors);
    let mut router = ws
        .merge(ops)
        .merge(scrape)
        .merge(rest::routes(api.clone(), &prefix))
        .merge(admin::routes(api, &prefix))
        .merge(pages::routes(&prefix, pages, ancestors.as_deref()))
        .merge(uploads.unwrap_or_default())
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(from_fn_with_state(Arc::clone(&engine), ops::record_duration));
    let origins = &engine.config.http.cors_allowed_origins;
    if !origins.is_empty() {
        let policy = Arc::new(CorsPolicy::new(origins));
        router = router.layer(cors_layer(&policy)).layer(from_fn_with_state(policy, cors_gate));
    }
    for (name, value) in SECURITY_HEADERS {
        router = router.layer(SetResponseHeaderLayer::overriding(
            header::HeaderName::from_static(name),
            HeaderValue::from_static(value),
        ));
    }
    match pages::frame_ancestors_csp(ancestors.as_deref()) {
        // The pages already carry their fuller policy (with these ancestors), which is kept.
        Some(csp) => router
            .layer(SetResponseHeaderLayer::if_not_present(header::CONTENT_SECURITY_POLICY, csp)),
        None => router.layer(SetResponseHeaderLayer::overriding(
            header::X_FRAME_OPTIONS,
            HeaderValue::from_static("DENY"),
        )),
    }
}

/// Headers on every response (PROTOCOL.md §1), besides the framing rule: `X-Frame-Options:
/// DENY`, or — with `FRAME_ANCESTORS` set — CSP `frame-ancestors` in its place, since browsers
/// apply both and DENY would block the configured embedders.
pub const SECURITY_HEADERS: [(&str, &str); 3] = [
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "strict-origin-when-cross-origin"),
    ("x-xss-protection", "1; mode=block"),
];

/// The CORS origin list (PROTOCOL.md §1): entries as configured (trimmed by the loader); `*`
/// allows every origin, but only anonymously: an origin that is not listed by name is answered
/// with a literal `*` and no credentials, which browsers refuse to combine with cookies or
/// authorization (credentials for anyone would let any site act as the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorsPolicy {
    origins: Vec<String>,
    any: bool,
}

impl CorsPolicy {
    /// The policy for the configured list.
    pub fn new(origins: &[String]) -> Self {
        CorsPolicy { any: origins.iter().any(|o| o == "*"), origins: origins.to_vec() }
    }

    /// Whether `origin` is allowed.
    pub fn allows(&self, origin: &str) -> bool {
        self.any || self.listed(origin)
    }

    /// Whether `origin` is listed by name (and so may send credentials).
    pub fn listed(&self, origin: &str) -> bool {
        self.origins.iter().any(|o| o == origin)
    }

    /// Whether the answer to `origin` must be the anonymous `*` without credentials.
    fn anonymous(&self, origin: &str) -> bool {
        self.any && !origin.is_empty() && !self.listed(origin)
    }
}

/// tower-http's CORS for `policy`: the listed origins, methods `GET, POST, PUT, PATCH, DELETE,
/// OPTIONS`, request headers `Origin, Content-Type, Accept, Authorization`, exposed
/// `Content-Length`, credentials, max-age 12 h. With `*` the origin is mirrored here and
/// [`cors_gate`] turns the answer anonymous for origins not listed by name.
fn cors_layer(policy: &CorsPolicy) -> CorsLayer {
    let allow_origin = if policy.any {
        AllowOrigin::mirror_request()
    } else {
        let values = policy.origins.iter().filter(|o| *o != "*").filter_map(|o| match HeaderValue::from_str(o) {
            Ok(value) => Some(value),
            Err(_) => {
                tracing::warn!(origin = %o, "CORS_ALLOWED_ORIGINS entry is not a valid header value; ignored");
                None
            }
        });
        AllowOrigin::list(values)
    };
    CorsLayer::new()
        .allow_origin(allow_origin)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
        ])
        .allow_headers([
            header::ORIGIN,
            header::CONTENT_TYPE,
            header::ACCEPT,
            header::AUTHORIZATION,
        ])
        .expose_headers([header::CONTENT_LENGTH])
        .allow_credentials(true)
        .max_age(chatbox_core::budgets::CORS_MAX_AGE)
}

/// What the original's CORS library did around tower-http's layer (§1, inferred): a request
/// whose `Origin` is neither listed nor the request's own host (`http(s)://<Host>`) is refused
/// `403` with an empty body before any route — the WebSocket upgrade included — and a preflight
/// (`OPTIONS`) is answered `204` rather than tower-http's `200`. An origin allowed only through
/// `*` gets `Access-Control-Allow-Origin: *` and no `Access-Control-Allow-Credentials` (issue 16).
async fn cors_gate(State(policy): State<Arc<CorsPolicy>>, req: Request, next: Next) -> Response {
    let origin = req.headers().get(header::ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !origin.is_empty() && !policy.allows(origin) {
        let host = req.headers().get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or("");
        let same_host = !host.is_empty()
            && (origin.strip_prefix("http://") == Some(host)
                || origin.strip_prefix("https://") == Some(host));
        if !same_host {
            tracing::info!(origin, path = %req.uri().path(), "CORS: origin refused");
            let mut response = Response::new(Body::empty());
            *response.status_mut() = StatusCode::FORBIDDEN;
            return response;
        }
    }
    let preflight = req.method() == Method::OPTIONS;
    let anonymous = policy.anonymous(origin);
    let mut response = next.run(req).await;
    if preflight && response.status() == StatusCode::OK {
        *response.status_mut() = StatusCode::NO_CONTENT;
    }
    if anonymous {
        let headers = response.headers_mut();
        headers.remove(header::ACCESS_CONTROL_ALLOW_CREDENTIALS);
        if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
        }
    }
    response
}

/// The framework's plain `404 page not found` (§1), for unknown paths, wrong methods and
/// unknown assets.
pub(crate) async fn not_found() -> Response {
    let mut response = Response::new(Body::from("404 page not found\n"));
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}
