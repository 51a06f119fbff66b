//! Path segments that name a session, a share token or a user (PROTOCOL.md §4).
//!
//! axum's own `Path` rejection is a plain-text `400 Invalid URL` for a segment that does not
//! decode to UTF-8; §4 wants every error body as JSON. A session id or a share token that cannot
//! be decoded cannot name anything stored, so it is answered like any unknown one (`404`, the
//! route's own not-found body); a user id that cannot be decoded is a `400` JSON body.

use axum::extract::{FromRequestParts, Path};
use axum::response::Response;
use chatbox_core::protocol::http::ErrorBody;
use http::request::Parts;

use super::rest::error_response;

/// A session id from the path; undecodable → `404 Session not found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionKey(pub String);

/// A share token from the path; undecodable → `404 Shared session not found`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareKey(pub String);

/// A user id from the path; undecodable → `400` with a JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserKey(pub String);

/// The single path parameter as text, or the rejection's body answered by `refuse`.
async fn single<S: Send + Sync>(
    parts: &mut Parts,
    state: &S,
    refuse: fn() -> ErrorBody,
) -> Result<String, Response> {
    match Path::<String>::from_request_parts(parts, state).await {
        Ok(Path(text)) => Ok(text),
        Err(rejection) => {
            tracing::debug!(path = %parts.uri.path(), %rejection, "undecodable path segment");
            Err(error_response(refuse()))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for SessionKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        single(parts, state, ErrorBody::session_not_found).await.map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ShareKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        single(parts, state, ErrorBody::shared_not_found).await.map(Self)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for UserKey {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        single(parts, state, || ErrorBody::bad_request("user_id is not valid UTF-8"))
            .await
            .map(Self)
    }
}
