//! The WebSocket route (PROTOCOL.md §3.1–§3.3, §3.12): the handshake checks in the original's
//! order — token, per-user connection cap, upgrade headers, origin — and then one connection:
//! registered with the engine, run by the session loop (`ws_session.rs`: frames both ways,
//! keepalive, close codes) over the real socket, unregistered when the loop ends.
//!
//! The connection slot is taken before the upgrade checks and held by an RAII guard, so a failed
//! upgrade releases it at once and a finished connection releases it on exit (§10 item 12).

use std::future::Future;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use chatbox_core::keepalive::KeepaliveTimings;
use chatbox_core::origin::OriginDecision;
use chatbox_core::protocol::http::{
    plain_text_body, WS_AUTH_FAILED, WS_CONNECTION_LIMIT, WS_MISSING_TOKEN, WS_QUERY_TOKEN_DISABLED,
};
use chatbox_core::protocol::Frame;
use chatbox_core::shared::{SharedSlots, SlotGuard};
use futures_util::{FutureExt, SinkExt};
use http::{header, HeaderMap, StatusCode};
use hyper::upgrade::Upgraded;
use hyper_util::rt::TokioIo;
use tokio::sync::Semaphore;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::WebSocketStream;
use tracing::Instrument;

use super::auth::Verifier;
use super::ws_session::{close_message, EngineSide, SessionLoop};
use crate::engine::caller::Caller;
use crate::engine::delivery::{queue, Registration};
use crate::engine::fleet_limits::LeaseGuard;
use crate::engine::frames::{self, ConnCtx};
use crate::engine::hub::Engine;
use crate::engine::telemetry;

/// State of the WebSocket route.
#[derive(Debug, Clone)]
pub struct WsState {
    /// The engine.
    pub engine: Arc<Engine>,
    /// Token verifier.
    pub verifier: Arc<Verifier>,
}

fn text_response(status: StatusCode, text: &str) -> Response {
    let mut response = Response::new(Body::from(plain_text_body(text)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Where the token came from, or why there is none.
enum TokenSource<'a> {
    Found(&'a str),
    Missing,
    QueryDisabled,
}

fn find_token<'a>(
    headers: &'a HeaderMap,
    query: Option<&'a str>,
    query_disabled: bool,
) -> TokenSource<'a> {
    // Any Authorization header wins over the query token, even a malformed one (§2.2).
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        return match value.to_str().ok().and_then(|v| v.strip_prefix("Bearer ")) {
            Some(token) if !token.is_empty() => TokenSource::Found(token),
            _ => TokenSource::Missing,
        };
    }
    let from_query = query.and_then(|q| {
        q.split('&').find_map(|pair| pair.strip_prefix("token=")).filter(|t| !t.is_empty())
    });
    match from_query {
        Some(_) if query_disabled => TokenSource::QueryDisabled,
        Some(token) => TokenSource::Found(token),
        None => TokenSource::Missing,
    }
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str().is_ok_and(|s| s.split(',').any(|part| part.trim().eq_ignore_ascii_case(token)))
    })
}

/// `GET {P}/ws`.
pub async fn handshake(State(state): State<WsState>, mut req: Request) -> Response {
    let engine = &state.engine;
    let headers = req.headers();
    // Percent-encoded tokens are not expected (JWTs are URL-safe), so the raw query is read.
    let token = match find_token(headers, req.uri().query(), engine.config.auth.disable_query_token)
    {
        TokenSource::Found(token) => token,
        TokenSource::Missing => return text_response(StatusCode::UNAUTHORIZED, WS_MISSING_TOKEN),
        TokenSource::QueryDisabled => {
            return text_response(StatusCode::UNAUTHORIZED, WS_QUERY_TOKEN_DISABLED)
        }
    };
    let caller = match state.verifier.verify(token) {
        Ok(caller) => caller,
        Err(error) => {
            tracing::info!(%error, "websocket authentication failed");
            return text_response(StatusCode::UNAUTHORIZED, WS_AUTH_FAILED);
        }
    };
    let slot = match SharedSlots::try_acquire(&engine.limits.slots, &caller.user_id) {
        Ok(slot) => slot,
        Err(full) => {
            tracing::info!(user_id = %caller.user_id, held = full.held, "connection limit reached");
            engine.metrics.rate_limited(crate::engine::metrics::Limiter::Connection);
            let note = Frame::notification_connection_limit(engine.frame_now());
            engine.delivery.send_user(&caller.user_id, &note);
            return text_response(StatusCode::TOO_MANY_REQUESTS, WS_CONNECTION_LIMIT);
        }
    };
    // Fleet-wide (issue 14): one lease per connection, refused exactly like the local slot.
    let lease = match engine.limits.lease_connection(&caller.user_id, engine.clock.now()).await {
        Ok(lease) => lease,
        Err(full) => {
            tracing::info!(user_id = %caller.user_id, held = full.held, "fleet connection limit reached");
            engine.metrics.rate_limited(crate::engine::metrics::Limiter::Connection);
            let note = Frame::notification_connection_limit(engine.frame_now());
            engine.delivery.send_user(&caller.user_id, &note);
            return text_response(StatusCode::TOO_MANY_REQUESTS, WS_CONNECTION_LIMIT);
        }
    };
    let upgrade_ok = header_has_token(headers, header::CONNECTION, "upgrade")
        && header_has_token(headers, header::UPGRADE, "websocket")
        && headers.get(header::SEC_WEBSOCKET_VERSION).is_some_and(|v| v == "13");
    let Some(key) = headers.get(header::SEC_WEBSOCKET_KEY).filter(|_| upgrade_ok) else {
        return text_response(StatusCode::BAD_REQUEST, "Bad Request");
    };
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    if engine.origins.check(origin) == OriginDecision::Refused {
        tracing::info!(user_id = %caller.user_id, origin = origin.unwrap_or(""), "origin refused");
        return text_response(StatusCode::FORBIDDEN, "Forbidden");
    }
    if engine.is_stopping() {
        return text_response(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable");
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let task_engine = Arc::clone(engine);
    // The connection's trace span (issue 17): every message's span is its child.
    let span = telemetry::connection_span(&engine.config, &caller.user_id);
    // `then`, not an `async move` block awaiting both: the block would keep the caller, the
    // slot and the engine in its state beside the connection's own copies, in every connection.
    let task = on_upgrade
        .then(move |upgraded| run_connection(task_engine, upgraded, caller, (slot, lease)));
    engine.supervisor.spawn("websocket", task.instrument(span));
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = response.headers_mut();
    h.insert(header::CONNECTION, header::HeaderValue::from_static("Upgrade"));
    h.insert(header::UPGRADE, header::HeaderValue::from_static("websocket"));
    if let Ok(value) = header::HeaderValue::from_str(&accept) {
        h.insert(header::SEC_WEBSOCKET_ACCEPT, value);
    }
    response
}

/// Runs one upgraded connection until it closes; the slot and the fleet lease are released
/// when it returns.
///
/// A plain function returning an `async move` block, not an `async fn` (which keeps its
/// arguments twice in its state), and the socket is opened by [`open_socket`] so it is never
/// a local across an await here: this state sits in every open connection (issue 18, item 4).
fn run_connection(
    engine: Arc<Engine>,
    upgraded: Result<Upgraded, hyper::Error>,
    caller: Caller,
    slot: (SlotGuard<String>, Option<LeaseGuard>),
) -> impl Future<Output = ()> + Send {
    // Built before the block so the caller sits once in the state (moved inside the block, it
    // would also keep its captured copy); the id is set once the connection is registered.
    let max_in_flight = engine.config.websocket.max_in_flight.max(1) as usize;
    let mut ctx = ConnCtx { id: 0, caller, in_flight: Arc::new(Semaphore::new(max_in_flight)) };
    async move {
        let Some(ws) = open_socket(&engine, upgraded).await else { return };
        let ws_cfg = &engine.config.websocket;
        let (tx, rx) = queue::channel(ws_cfg.send_queue);
        let caller = &ctx.caller;
        let registration =
            Registration { user_id: &caller.user_id, is_admin: caller.is_admin(), tx };
        let id = engine.delivery.register(registration);
        ctx.id = id;
        if engine.is_forced() {
            // The shutdown deadline passed between opening and registering: its kick of every
            // connection came before this one was there to get it.
            engine.delivery.kick_all();
        }
        telemetry::record_connection(&tracing::Span::current(), id);
        tracing::debug!(user_id = %ctx.caller.user_id, conn = id, "websocket connected");
        engine.metrics.websocket_connections.inc();
        let opened = engine.clock.now();
        frames::on_connect(&engine, &ctx);
        let session = SessionLoop {
            conn: id,
            handler: EngineSide { engine: &engine, conn: &ctx },
            outbound: rx,
            clock: engine.clock,
            timings: KeepaliveTimings {
                ping_interval: ws_cfg.ping_interval,
                pong_wait: ws_cfg.pong_wait,
                write_wait: ws_cfg.write_wait,
            },
        };
        let end = session.run(ws).await;
        telemetry::record_connection_end(&tracing::Span::current(), &end);
        frames::on_disconnect(&engine, id);
        engine.metrics.websocket_connections.dec();
        engine.metrics.observe_connection_duration(engine.clock.now() - opened);
        engine.forward_effects(engine.shutdown.connection_closed(engine.clock.now()));
        tracing::debug!(conn = id, ?end, "websocket closed");
        // Released last, after the connection's own cleanup.
        drop(slot);
    }
}

/// The WebSocket over the upgraded connection, or `None`: the upgrade failed, or the server is
/// shutting down (the client then gets a 1001 close).
async fn open_socket(
    engine: &Engine,
    upgraded: Result<Upgraded, hyper::Error>,
) -> Option<WebSocketStream<TokioIo<Upgraded>>> {
    let upgraded = match upgraded {
        Ok(upgraded) => upgraded,
        Err(error) => {
            tracing::debug!(%error, "upgrade failed");
            return None;
        }
    };
    let ws_cfg = &engine.config.websocket;
    let config = WebSocketConfig::default()
        .max_message_size(ws_cfg.max_message_size)
        .max_frame_size(ws_cfg.max_message_size)
        .read_buffer_size(ws_cfg.read_buffer_size.max(256))
        .write_buffer_size(0)
        .max_write_buffer_size(usize::MAX);
    let mut ws =
        WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config)).await;
    if !engine.shutdown.try_open_connection() {
        let _ = ws.send(close_message(1001, "Server shutting down")).await;
        return None;
    }
    Some(ws)
}
