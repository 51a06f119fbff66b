//! The user's session routes and the public shared view (PROTOCOL.md §4.1–§4.5, issue 15): list
//! own sessions, read one, end one, share one or revoke its link, and read a shared session
//! without a token.
//!
//! User routes take the token from `Authorization: Bearer <jwt>` only (§2.2; `?token=` is
//! ignored) and answer the REST `401` bodies of §2.3. Another user's session is always `404`
//! `Session not found`, never `403`. The public route carries the `shared` public limit (§5).
//!
//! The shared helpers here — [`authenticate`], [`error_response`], [`summary_of`],
//! [`message_views`], [`session_detail`] and [`ApiState`] — are used by the admin routes too.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use chatbox_core::protocol::http::{
    EndResponse, ErrorBody, MessageView, RevokeResponse, SessionDetail, SessionList,
    SessionSummary, ShareResponse, SharedSession,
};
use chrono::{DateTime, Utc};
use http::{header, HeaderMap, StatusCode};

use super::auth::Verifier;
use super::limits::{with_public_limit, PublicFamily};
use super::path_key::{SessionKey, ShareKey};
use super::router::route;
use crate::engine::admin::{self, SessionOpError};
use crate::engine::caller::Caller;
use crate::engine::hub::Engine;
use crate::engine::store::SessionDoc;

/// State of the REST and admin routes.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Token verifier.
    pub verifier: Arc<Verifier>,
}

/// A JSON error body with its status.
pub fn error_response(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

/// The caller of a REST request (§2.2, §2.3): `Authorization: Bearer <token>` with at least one
/// character after the prefix, else `Invalid authorization header`; a token that does not verify
/// is `Invalid or expired authentication token`.
pub fn authenticate(verifier: &Verifier, headers: &HeaderMap) -> Result<Caller, ErrorBody> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .filter(|t| !t.is_empty())
        .ok_or_else(ErrorBody::invalid_auth_header)?;
    verifier.verify(token).map_err(|error| {
        tracing::info!(%error, "REST authentication failed");
        ErrorBody::invalid_token()
    })
}

/// Middleware of the user routes: authenticates and puts the [`Caller`] in the request's
/// extensions, or answers `401`.
pub async fn require_user(State(state): State<ApiState>, mut req: Request, next: Next) -> Response {
    match authenticate(&state.verifier, req.headers()) {
        Ok(caller) => {
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(body) => error_response(body),
    }
}

/// The session summary of §4 for a stored document at `now` (with `session_id`, §10 item 7).
pub fn summary_of(doc: &SessionDoc, now: DateTime<Utc>) -> SessionSummary {
    let last_message = doc.last_activity.or_else(|| doc.messages.last().map(|m| m.ts));
    let mut summary = SessionSummary::new(
        doc.id.clone(),
        doc.user_id.clone(),
        doc.started.to_datetime(),
        doc.ended.map(|t| t.to_datetime()),
        last_message.map(|t| t.to_datetime()),
        now,
    );
    let saturate = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    summary.name.clone_from(&doc.name);
    summary.message_count = doc.messages.len() as u64;
    summary.admin_assisted = doc.admin_assisted;
    summary.help_requested = doc.help_requested;
    summary.total_tokens = saturate(doc.total_tokens);
    summary.max_response_time = saturate(doc.max_response_ms);
    summary.avg_response_time = saturate(doc.avg_response_ms);
    summary.assisting_admin_name.clone_from(&doc.assisting_admin_name);
    summary.share_token = doc.share_token.clone().unwrap_or_default();
    summary
}

/// The message objects of §4.2 / §4.5 (content as stored in the document: the store decrypts).
pub fn message_views(doc: &SessionDoc) -> Vec<MessageView> {
    doc.messages
        .iter()
        .map(|m| MessageView {
            content: m.content.clone(),
            timestamp: m.ts.to_datetime(),
            sender: m.sender.clone(),
            file_id: m.file_id.clone(),
            file_url: m.file_url.clone(),
            metadata: m.meta.clone(),
        })
        .collect()
}

/// The §4.2 body of a stored document.
pub fn session_detail(doc: &SessionDoc) -> SessionDetail {
    SessionDetail {
        session_id: doc.id.clone(),
        name: doc.name.clone(),
        model_id: doc.model_id.clone(),
        messages: message_views(doc),
    }
}

/// `404 Session not found` for refusals, `500` for storage failures.
fn op_error(error: SessionOpError) -> Response {
    match error {
        SessionOpError::Store(error) => {
            tracing::error!(%error, "session route: storage failure");
            error_response(ErrorBody::internal())
        }
        _ => error_response(ErrorBody::session_not_found()),
    }
}

/// `GET {P}/sessions` (§4.1).
async fn list_sessions(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
) -> Response {
    match admin::user_sessions(&state.engine, &caller.user_id).await {
        Ok(docs) => {
            let now = state.engine.frame_now();
            let sessions = docs.iter().map(|d| summary_of(d, now)).collect();
            Json(SessionList::new(caller.user_id, sessions, SessionList::LIMIT)).into_response()
        }
        Err(error) => {
            tracing::error!(user_id = %caller.user_id, %error, "listing sessions failed");
            error_response(ErrorBody::internal())
        }
    }
}

/// `GET {P}/sessions/:sessionID` (§4.2): any failure, including storage, is `404`.
async fn get_session(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SessionKey(id): SessionKey,
) -> Response {
    match admin::owned_session(&state.engine, &caller.user_id, &id).await {
        Ok(doc) => Json(session_detail(&doc)).into_response(),
        Err(error) => {
            tracing::debug!(session_id = %id, %error, "session lookup refused");
            error_response(ErrorBody::session_not_found())
        }
    }
}

/// `POST {P}/sessions/:sessionID/end` (§4.3).
async fn end_session(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SessionKey(id): SessionKey,
) -> Response {
    match admin::end_session(&state.engine, &caller.user_id, &id).await {
        Ok(_) => Json(EndResponse::ended()).into_response(),
        Err(error) => op_error(error),
    }
}

/// `POST {P}/sessions/:sessionID/share` (§4.4).
async fn share_session(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SessionKey(id): SessionKey,
) -> Response {
    match admin::share_session(&state.engine, &caller.user_id, &id).await {
        Ok(share_token) => Json(ShareResponse { share_token }).into_response(),
        Err(error) => op_error(error),
    }
}

/// `DELETE {P}/sessions/:sessionID/share` (issue 15): `{"status":"revoked"}`; the old link then
/// answers `404`, and a later share makes a new token.
async fn revoke_share(
    State(state): State<ApiState>,
    Extension(caller): Extension<Caller>,
    SessionKey(id): SessionKey,
) -> Response {
    match admin::revoke_share(&state.engine, &caller.user_id, &id).await {
        Ok(()) => Json(RevokeResponse::revoked()).into_response(),
        Err(error) => op_error(error),
    }
}

/// `GET {P}/shared/:shareToken` (§4.5), public.
async fn shared_session(State(state): State<ApiState>, ShareKey(token): ShareKey) -> Response {
    match admin::shared_session(&state.engine, &token).await {
        Ok(Some(doc)) => Json(SharedSession {
            session_id: doc.id.clone(),
            name: doc.name.clone(),
            messages: message_views(&doc),
        })
        .into_response(),
        Ok(None) => error_response(ErrorBody::shared_not_found()),
        Err(error) => {
            tracing::error!(%error, "reading a shared session failed");
            error_response(ErrorBody::internal())
        }
    }
}

/// The user session routes (bearer auth) and the public shared view (public limit) under
/// `prefix`.
pub fn routes(state: ApiState, prefix: &str) -> Router {
    let user = Router::new()
        .route(&route(prefix, "/sessions"), get(list_sessions))
        .route(&route(prefix, "/sessions/{id}"), get(get_session))
        .route(&route(prefix, "/sessions/{id}/end"), post(end_session))
        .route(&route(prefix, "/sessions/{id}/share"), post(share_session).delete(revoke_share))
        .route_layer(from_fn_with_state(state.clone(), require_user));
    let public = Router::new().route(&route(prefix, "/shared/{token}"), get(shared_session));
    let public = with_public_limit(public, &state.engine, PublicFamily::Shared);
    user.merge(public).with_state(state)
}
