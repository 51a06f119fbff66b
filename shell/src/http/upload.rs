//! Uploads and stored files (issue 17 item 5, PROTOCOL.md §10 item 19):
//!
//! - `POST {P}/upload`, also `/api/upload` (the original page's address): the user's bearer
//!   token, multipart field `file`. The bytes stream into the [`FileStore`]; the size limit is
//!   enforced while streaming, the type is sniffed from the first bytes (never the client's
//!   `Content-Type`), and the name is checked ([`chatbox_core::upload`]). Any refusal or failure
//!   aborts the write, so no partial file is left behind. Answers
//!   `{"file_id","file_url","content_type","size"}`; refusals `{"error","code"}` with
//!   `INVALID_FILE_SIZE` (413 too large, 400 empty), `INVALID_FILE_TYPE` (415), `MISSING_FIELD`
//!   (400, no `file` field), `INVALID_FORMAT` (400, not a readable multipart body), and the
//!   per-user limit's `429`.
//! - `GET {P}/files/{file_id}`: with a valid, unexpired `expires`/`sig` (the `file_url`) anyone
//!   holding the URL gets the bytes; otherwise only the uploader's or an admin's bearer token.
//!   Everything else — unknown id, bad signature without such a token — is `404`. Served with
//!   `Content-Disposition` (`inline` only for images, audio and video other than SVG),
//!   `X-Content-Type-Options: nosniff` and a sandboxing CSP.

use compact_str::CompactString;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::multipart::{Field, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Multipart, Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use chatbox_core::rate::Decision;
use chatbox_core::shared::SharedLimiter;
use chatbox_core::upload::{self, Refusal, UrlSigner, SNIFF_BYTES};
use http::{header, HeaderMap, HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};

use super::auth::Verifier;
use super::limits::too_many_requests;
use super::rest::authenticate;
use super::router::route;
use crate::engine::files::{FileMeta, FileStore, FileWriter};
use crate::engine::hub::Engine;
use crate::engine::ids;

/// State of the upload routes.
#[derive(Debug, Clone)]
pub struct UploadState {
    engine: Arc<Engine>,
    verifier: Arc<Verifier>,
    store: Arc<dyn FileStore>,
    signer: UrlSigner,
    limiter: Arc<SharedLimiter<CompactString>>,
}

/// The upload and file routes over `store`.
pub fn routes(
    engine: Arc<Engine>,
    verifier: Arc<Verifier>,
    store: Arc<dyn FileStore>,
    prefix: &str,
) -> Router {
    let config = &engine.config;
    let signer = UrlSigner::from_secret(config.auth.jwt_secret.expose().as_bytes());
    let limiter = Arc::new(SharedLimiter::new(config.uploads.rate, config.rate.max_keys));
    let state = UploadState { engine: Arc::clone(&engine), verifier, store, signer, limiter };
    let own = route(prefix, "/upload");
    // The size limit is enforced while streaming; axum's 2 MB default would cut uploads short.
    let mut router = Router::new()
        .route(&own, post(upload))
        .route(&route(prefix, "/files/{file_id}"), get(serve));
    if own != "/api/upload" {
        router = router.route("/api/upload", post(upload));
    }
    router.layer(DefaultBodyLimit::disable()).with_state(state)
}

/// The success answer of an upload.
#[derive(Debug, Serialize)]
struct Uploaded {
    file_id: String,
    file_url: String,
    content_type: String,
    size: u64,
}

/// A refusal: `{"error","code"}` with its status.
fn refusal(status: StatusCode, error: &str, code: &str) -> Response {
    #[derive(Serialize)]
    struct Body<'a> {
        error: &'a str,
        code: &'a str,
    }
    (status, Json(Body { error, code })).into_response()
}

fn refused(r: &Refusal) -> Response {
    let status = StatusCode::from_u16(r.status()).unwrap_or(StatusCode::BAD_REQUEST);
    refusal(status, &r.to_string(), r.code())
}

fn not_found() -> Response {
    refusal(StatusCode::NOT_FOUND, "File not found", "NOT_FOUND")
}

fn storage_failed() -> Response {
    refusal(StatusCode::INTERNAL_SERVER_ERROR, "File storage failed", "INTERNAL_ERROR")
}

async fn upload(
    State(state): State<UploadState>,
    headers: HeaderMap,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let caller = match authenticate(&state.verifier, &headers) {
        Ok(caller) => caller,
        Err(body) => return super::rest::error_response(body),
    };
    if let Decision::Denied { retry_after } =
        state.limiter.check(caller.user_id.as_str(), state.engine.clock.now())
    {
        tracing::info!(user_id = %caller.user_id, ?retry_after, "upload rate limit");
        return too_many_requests(retry_after, true);
    }
    let Ok(mut multipart) = multipart else {
        return refusal(
            StatusCode::BAD_REQUEST,
            "Expected a multipart/form-data body",
            "INVALID_FORMAT",
        );
    };
    let max = state.engine.config.uploads.max_size;
    loop {
        match multipart.next_field().await {
            Ok(Some(field)) if field.name() == Some("file") => {
                return store_field(&state, &caller.user_id, field, max).await;
            }
            // Other fields are skipped (their bytes still count against the limit).
            Ok(Some(mut field)) => {
                let mut seen = 0u64;
                loop {
                    match field.chunk().await {
                        Ok(Some(chunk)) => {
                            seen += chunk.len() as u64;
                            if seen > max {
                                return refused(&Refusal::TooLarge { limit: max });
                            }
                        }
                        Ok(None) => break,
                        Err(_) => return unreadable(),
                    }
                }
            }
            Ok(None) => {
                return refusal(
                    StatusCode::BAD_REQUEST,
                    "Missing multipart field file",
                    "MISSING_FIELD",
                );
            }
            Err(_) => return unreadable(),
        }
    }
}

fn unreadable() -> Response {
    refusal(StatusCode::BAD_REQUEST, "Unreadable multipart body", "INVALID_FORMAT")
}

/// Why streaming a field stopped.
enum Stop {
    Refused(Refusal),
    Unreadable,
    Storage(String),
}

impl Stop {
    fn response(&self) -> Response {
        match self {
            Stop::Refused(r) => refused(r),
            Stop::Unreadable => unreadable(),
            Stop::Storage(error) => {
                tracing::error!(%error, "upload storage failed");
                storage_failed()
            }
        }
    }
}

async fn store_field(state: &UploadState, owner: &str, mut field: Field<'_>, max: u64) -> Response {
    let name = field.file_name().unwrap_or_default().to_string();
    if let Err(r) = upload::check_name(&name) {
        return refused(&r);
    }
    // The first bytes decide the type before anything is written.
    let mut head = Vec::new();
    let mut rest: Option<Bytes> = None;
    while head.len() < SNIFF_BYTES {
        match field.chunk().await {
            Ok(Some(chunk)) => {
                if (head.len() + chunk.len()) as u64 > max {
                    return refused(&Refusal::TooLarge { limit: max });
                }
                let room = SNIFF_BYTES - head.len();
                if chunk.len() > room {
                    head.extend_from_slice(&chunk[..room]);
                    rest = Some(chunk.slice(room..));
                } else {
                    head.extend_from_slice(&chunk);
                }
            }
            Ok(None) => break,
            Err(_) => return unreadable(),
        }
    }
    if head.is_empty() {
        return refused(&Refusal::Empty);
    }
    let content_type = match upload::sniff(&head, &name) {
        Ok(content_type) => content_type,
        Err(r) => return refused(&r),
    };
    let file_id = ids::hex32();
    let mut writer = match state.store.create(&file_id).await {
        Ok(writer) => writer,
        Err(e) => return Stop::Storage(e.to_string()).response(),
    };
    let size = match stream_rest(&mut writer, &mut field, Bytes::from(head), rest, max).await {
        Ok(size) => size,
        Err(stop) => {
            writer.abort().await;
            return stop.response();
        }
    };
    let meta = FileMeta { owner: owner.to_string(), content_type: content_type.into(), size, name };
    if let Err(e) = writer.finish(&meta).await {
        return Stop::Storage(e.to_string()).response();
    }
    tracing::info!(user_id = owner, file_id, content_type, size, "file uploaded");
    let file_url = signed_url(state, &file_id);
    Json(Uploaded { file_id, file_url, content_type: content_type.into(), size }).into_response()
}

/// Writes the sniffed head, the rest of its chunk, and every further chunk; the size limit is
/// checked before each write.
async fn stream_rest(
    writer: &mut Box<dyn FileWriter>,
    field: &mut Field<'_>,
    head: Bytes,
    rest: Option<Bytes>,
    max: u64,
) -> Result<u64, Stop> {
    let mut size = 0u64;
    let mut pending = vec![head];
    pending.extend(rest);
    loop {
        for chunk in pending.drain(..) {
            size += chunk.len() as u64;
            if size > max {
                return Err(Stop::Refused(Refusal::TooLarge { limit: max }));
            }
            writer.write(chunk).await.map_err(|e| Stop::Storage(e.to_string()))?;
        }
        match field.chunk().await {
            Ok(Some(chunk)) => pending.push(chunk),
            Ok(None) => return Ok(size),
            Err(_) => return Err(Stop::Unreadable),
        }
    }
}

/// The signed `file_url` of `file_id`: `{P}/files/{id}?expires=<unix s>&sig=<hex>`.
fn signed_url(state: &UploadState, file_id: &str) -> String {
    let config = &state.engine.config;
    let now = state.engine.clock.wall().0 / 1000;
    let ttl = i64::try_from(config.uploads.url_ttl.as_secs()).unwrap_or(i64::MAX);
    let expires = now.saturating_add(ttl);
    let sig = state.signer.sign(file_id, expires);
    format!(
        "{}?expires={expires}&sig={sig}",
        upload::file_path(&config.server.path_prefix, file_id)
    )
}

/// The capability of a `file_url`. `expires` is read as text: a value that is not a number is
/// a bad signature (404 like any other), not a query the extractor refuses in plain text.
#[derive(Debug, Deserialize)]
struct Signature {
    expires: Option<String>,
    sig: Option<String>,
}

async fn serve(
    State(state): State<UploadState>,
    Path(file_id): Path<String>,
    Query(signature): Query<Signature>,
    headers: HeaderMap,
) -> Response {
    if !upload::is_file_id(&file_id) {
        return not_found();
    }
    let now = state.engine.clock.wall().0 / 1000;
    let expires = signature.expires.and_then(|e| e.parse::<i64>().ok());
    let signed = match (expires, signature.sig.as_deref()) {
        (Some(expires), Some(sig)) => state.signer.verify(&file_id, expires, sig, now),
        _ => false,
    };
    let meta = match state.store.meta(&file_id).await {
        Ok(Some(meta)) => meta,
        Ok(None) => return not_found(),
        Err(error) => {
            tracing::error!(%error, file_id, "reading file metadata failed");
            return storage_failed();
        }
    };
    if !signed {
        let allowed = authenticate(&state.verifier, &headers)
            .is_ok_and(|caller| caller.user_id == meta.owner || caller.is_admin());
        if !allowed {
            return not_found();
        }
    }
    let stream = match state.store.open(&file_id).await {
        Ok(stream) => stream,
        Err(error) => {
            tracing::error!(%error, file_id, "opening a stored file failed");
            return storage_failed();
        }
    };
    let mut response = Response::new(Body::from_stream(stream));
    let h = response.headers_mut();
    let content_type = HeaderValue::from_str(&meta.content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(meta.size));
    h.insert(header::CONTENT_DISPOSITION, disposition(&meta));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, max-age=3600"));
    response
}

/// `inline` or `attachment` with the name reduced to safe ASCII (it was checked at upload, but
/// a header needs no quotes, backslashes or non-ASCII).
fn disposition(meta: &FileMeta) -> HeaderValue {
    let kind = if upload::inline_allowed(&meta.content_type) { "inline" } else { "attachment" };
    let name: String = meta
        .name
        .chars()
        .map(|c| if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' { c } else { '_' })
        .collect();
    HeaderValue::from_str(&format!("{kind}; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"))
}
