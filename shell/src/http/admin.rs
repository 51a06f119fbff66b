//! The admin routes (PROTOCOL.md §4.6–§4.8 with §10 items 3, 5, 6, 7, and issue 15): search all
//! sessions, read any session's transcript, metrics, one user's sessions, takeover and leave, and
//! the consoles' live events (`admin_events`).
//!
//! Every route passes the admin gate ([`require_admin`]: bearer token as for the user routes,
//! then role `admin` or `chat_admin`, else `403 Insufficient permissions`) and then the admin
//! rate limit keyed by the admin's `user_id` (§5). Unknown paths and wrong methods under
//! `{P}/admin/` are the router's plain `404`, before any check.

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chatbox_core::protocol::http::{
    AdminSessionDetail, AdminSessionList, ErrorBody, LeaveResponse, TakeoverResponse,
};
use chatbox_core::protocol::query::{AdminQueryError, AdminSessionQuery, MetricsQuery};
use chatbox_core::session::SessionError;
use http::Uri;

use super::limits::with_admin_limit;
use super::path_key::{SessionKey, UserKey};
use super::rest::{authenticate, error_response, session_detail, summary_of, ApiState};
use super::router::route;
use crate::engine::admin::{self, SessionOpError};
use crate::engine::caller::Caller;
use crate::engine::store::SessionDoc;

/// Middleware of the admin routes: authenticates (`401` as §2.3), requires an admin role
/// (`403`), and puts the [`Caller`] in the request's extensions for the admin limit and the
/// handlers.
pub async fn require_admin(
    State(state): State<ApiState>,
    mut req: Request,
    next: Next,
) -> Response {
    let caller = match authenticate(&state.verifier, req.headers()) {
        Ok(caller) => caller,
        Err(body) => return error_response(body),
    };
    if !caller.is_admin() {
        tracing::info!(user_id = %caller.user_id, path = %req.uri().path(), "admin route refused: no admin role");
        return error_response(ErrorBody::forbidden());
    }
    req.extensions_mut().insert(caller);
    next.run(req).await
}

/// The decoded query as `(name, value)` pairs in order (an undecodable query counts as empty).
fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    axum::extract::Query::<Vec<(String, String)>>::try_from_uri(uri)
        .map(|q| q.0)
        .unwrap_or_default()
}

fn internal(what: &str, error: &dyn std::fmt::Display) -> Response {
    tracing::error!(%error, "{what} failed");
    error_response(ErrorBody::internal())
}

/// Summaries of `docs` at the engine's now.
fn summaries(
    state: &ApiState,
    docs: &[SessionDoc],
) -> Vec<chatbox_core::protocol::http::SessionSummary> {
    let now = state.engine.frame_now();
    docs.iter().map(|d| summary_of(d, now)).collect()
}

/// `GET {P}/admin/sessions` (§4.6, §10 item 7).
async fn search_sessions(State(state): State<ApiState>, uri: Uri) -> Response {
    let query = match AdminSessionQuery::parse(&query_pairs(&uri)) {
        Ok(query) => query,
        Err(error) => return error_response(error.to_error_body()),
    };
    match admin::search_sessions(&state.engine, &query).await {
        Ok(docs) => {
            Json(AdminSessionList::new(summaries(&state, &docs), query.limit, query.offset))
                .into_response()
        }
        Err(error) => internal("admin session search", &error),
    }
}

/// `GET {P}/admin/sessions/:sessionID` (issue 15): any user's session with its decrypted
/// messages in order, its owner and its state; `404 Session not found` when unknown.
async fn read_session(State(state): State<ApiState>, SessionKey(id): SessionKey) -> Response {
    match admin::admin_session(&state.engine, &id).await {
        Ok(doc) => Json(AdminSessionDetail {
            detail: session_detail(&doc),
            user_id: doc.user_id.clone(),
            is_active: doc.ended.is_none(),
            help_requested: doc.help_requested,
            admin_assisted: doc.admin_assisted,
            assisting_admin_name: doc.assisting_admin_name.clone(),
        })
        .into_response(),
        Err(SessionOpError::Store(error)) => internal("admin session read", &error),
        Err(_) => error_response(ErrorBody::session_not_found()),
    }
}

/// `GET {P}/admin/users/:userID/sessions` (§10 item 5): a JSON array of summaries. The query
/// string takes the §4.6 parameters (`status`, `sort_by`, `limit`, …; same 400 texts) with
/// `user_id` fixed to the path's; by default the user's 100 newest sessions.
async fn user_sessions(
    State(state): State<ApiState>,
    UserKey(user_id): UserKey,
    uri: Uri,
) -> Response {
    let mut query = match AdminSessionQuery::parse(&query_pairs(&uri)) {
        Ok(query) => query,
        Err(error) => return error_response(error.to_error_body()),
    };
    if user_id.len() > AdminSessionQuery::MAX_USER_ID_BYTES {
        return error_response(
            AdminQueryError::UserIdTooLong { bytes: user_id.len() }.to_error_body(),
        );
    }
    query.user_id = Some(user_id);
    match admin::search_sessions(&state.engine, &query).await {
        Ok(docs) => Json(summaries(&state, &docs)).into_response(),
        Err(error) => internal("admin user sessions", &error),
    }
}

/// `GET {P}/admin/metrics` (§4.7, §10 item 6).
async fn metrics(State(state): State<ApiState>, uri: Uri) -> Response {
    let query = match MetricsQuery::parse(&query_pairs(&uri), state.engine.frame_now()) {
        Ok(query) => query,
        Err(error) => {
            tracing::info!(%error, "admin metrics query refused");
            return error_response(error.to_error_body());
        }
    };
    match admin::session_metrics(&state.engine, &query).await {
        Ok(body) => Json(body).into_response(),
        Err(error) => internal("admin metrics", &error),
    }
}

/// `POST {P}/admin/takeover/:sessionID` (§4.8).
async fn takeover(
    State(state): State<ApiState>,
    Extension(admin): Extension<Caller>,
    SessionKey(id): SessionKey,
) -> Response {
    match admin::takeover(&state.engine, &admin, &id).await {
        Ok(_) => Json(TakeoverResponse::new(id, admin.user_id)).into_response(),
        Err(SessionOpError::Session(SessionError::AlreadyAssisted { admin_id, admin_name })) => {
            error_response(ErrorBody::already_assisted(admin_name, admin_id))
        }
        Err(SessionOpError::Session(_)) => error_response(ErrorBody::session_not_found()),
        Err(error) => internal("takeover", &error),
    }
}

/// `POST {P}/admin/leave/:sessionID` (§10 item 3): `404` when the session is not in memory,
/// `400 session is not assisted` when nobody assists it.
async fn leave(
    State(state): State<ApiState>,
    Extension(admin): Extension<Caller>,
    SessionKey(id): SessionKey,
) -> Response {
    match admin::admin_leave(&state.engine, &admin, &id).await {
        Ok(_) => Json(LeaveResponse::new(id, admin.user_id)).into_response(),
        Err(SessionOpError::Session(SessionError::NotAssisted)) => {
            error_response(ErrorBody::bad_request(SessionError::NotAssisted.to_string()))
        }
        Err(SessionOpError::Session(_)) => error_response(ErrorBody::session_not_found()),
        Err(error) => internal("admin leave", &error),
    }
}

/// The admin routes under `prefix`, gated and limited.
pub fn routes(state: ApiState, prefix: &str) -> Router {
    let router = Router::new()
        .route(&route(prefix, "/admin/sessions"), get(search_sessions))
        .route(&route(prefix, "/admin/sessions/{id}"), get(read_session))
        .route(&route(prefix, "/admin/metrics"), get(metrics))
        .route(&route(prefix, "/admin/users/{user_id}/sessions"), get(user_sessions))
        .route(&route(prefix, "/admin/takeover/{id}"), post(takeover))
        .route(&route(prefix, "/admin/leave/{id}"), post(leave))
        .route(&route(prefix, "/admin/events"), get(super::admin_events::stream));
    // Layers added later run first: gate, then limit, then the handler.
    let router = with_admin_limit(router, &state.engine);
    router.route_layer(from_fn_with_state(state.clone(), require_admin)).with_state(state)
}
