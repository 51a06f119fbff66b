//! The spans of one user message (issue 17 item 3), as plain `tracing` spans: the engine never
//! sees OpenTelemetry. The composition root (`app::telemetry`) exports them over OTLP when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set; otherwise no subscriber layer wants them, so every
//! span here is disabled at its call site and costs one cached interest check (the simulator
//! builds exactly this code and exports nothing).
//!
//! The tree of one message (span names, in the exporter's words):
//! ```text
//! websocket.connection            user.id, chatbox.connection.id      (kind server)
//! └─ user_message                 session.id, user.id
//!    ├─ store load / create_session / append / update …  db.system.name, db.operation.name
//!    └─ chat <model>              gen_ai.* request and usage, session.id  (kind client)
//!       ├─ provider.attempt       chatbox.provider.id, chatbox.attempt, chatbox.fallback, error.type
//!       ├─ provider.attempt       (one per try; a fallback hop is a second provider's attempt)
//!       └─ store load_history / append / update
//! ```
//! Attribute names follow the OpenTelemetry semantic conventions (GenAI: `gen_ai.system`,
//! `gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.response.model`,
//! `gen_ai.usage.input_tokens`, `gen_ai.usage.output_tokens`; database: `db.system.name`,
//! `db.operation.name`; `session.id`, `user.id`, `error.type`); chatbox's own are under
//! `chatbox.`. `user.id` is a keyed hash of the user id, or absent, per `TRACE_USER_ID`.

use chatbox_core::config::{Config, TraceUserId};
use chatbox_core::usage::TokenUsage;
use sha2::{Digest, Sha256};
use tracing::field::Empty;
use tracing::Span;

use super::replies::Model;

/// The target of every span here (the exporter's filter selects it).
pub const TARGET: &str = "chatbox::trace";

/// The `user.id` attribute of `user` for this configuration, or `None` when `TRACE_USER_ID` is
/// `omitted` or no trace is exported (the hash runs for every message and connection, and
/// without an exporter nothing reads it).
pub fn user_attribute(config: &Config, user: &str) -> Option<String> {
    config.telemetry.otlp.as_ref()?;
    match config.telemetry.user_id {
        TraceUserId::Omitted => None,
        TraceUserId::Hashed => Some(hashed_user_id(config.auth.jwt_secret.expose(), user)),
    }
}

/// The hashed `user.id`: the first 16 bytes, in hex, of SHA-256 over a domain label, the JWT
/// secret and the user id — stable for one deployment (every instance shares the secret), not
/// reversible without the secret (a bare hash of a guessable id would be).
pub fn hashed_user_id(secret: &str, user: &str) -> String {
    let mut hash = Sha256::new();
    hash.update(b"chatbox trace user.id\0");
    hash.update(secret.as_bytes());
    hash.update(b"\0");
    hash.update(user.as_bytes());
    super::ids::hex_lower(&hash.finalize()[..16])
}

/// The span of one WebSocket connection, from the upgrade to the close.
pub fn connection_span(config: &Config, user: &str) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "websocket.connection",
        otel.kind = "server",
        user.id = Empty,
        chatbox.connection.id = Empty,
        chatbox.connection.end = Empty,
    );
    if let Some(user) = user_attribute(config, user) {
        span.record("user.id", user);
    }
    span
}

/// Records the registry's id of the connection on its span.
pub fn record_connection(span: &Span, conn: u64) {
    span.record("chatbox.connection.id", as_i64(conn));
}

/// Records how the connection ended.
pub fn record_connection_end(span: &Span, end: &impl std::fmt::Debug) {
    span.record("chatbox.connection.end", tracing::field::debug(end));
}

/// The span of one `user_message` frame, from its queueing to its reply's end; a child of the
/// current span (its connection's). `session.id` starts as the id the frame named and is
/// replaced by the resolved one ([`record_session`]).
pub fn message_span(config: &Config, user: &str, requested_session: &str) -> Span {
    let span = tracing::info_span!(
        target: TARGET,
        "user_message",
        session.id = requested_session,
        user.id = Empty,
    );
    if let Some(user) = user_attribute(config, user) {
        span.record("user.id", user);
    }
    span
}

/// Records the resolved session id on the current span.
pub fn record_session(session: &str) {
    Span::current().record("session.id", session);
}

/// The span of one model reply (GenAI `chat` operation) of `session`'s `model` (`None` when the
/// session's model is not configured: the reply fails at once). The span is named
/// `chat <upstream model>`; `gen_ai.system` is the provider type, `gen_ai.request.model` the
/// upstream model name.
pub fn reply_span(session: &str, model: Option<&Model>) -> Span {
    let upstream = model.map_or("", |m| &*m.upstream_model);
    tracing::info_span!(
        target: TARGET,
        "chat",
        otel.name = format!("chat {upstream}").trim_end(),
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.operation.name = "chat",
        gen_ai.system = model.map(|m| m.kind),
        gen_ai.request.model = model.map(|m| &*m.upstream_model),
        gen_ai.response.model = Empty,
        gen_ai.usage.input_tokens = Empty,
        gen_ai.usage.output_tokens = Empty,
        session.id = session,
        chatbox.model.id = model.map(|m| m.info.id.as_str()),
        chatbox.answered_by = Empty,
        chatbox.tokens_estimated = Empty,
        chatbox.reply.end = Empty,
    )
}

/// Records who answered and the tokens on the current (reply) span.
pub fn record_usage(answered_by: Option<&Model>, usage: TokenUsage, estimated: bool) {
    let span = Span::current();
    if let Some(model) = answered_by {
        span.record("gen_ai.response.model", &*model.upstream_model);
        span.record("chatbox.answered_by", model.info.id.as_str());
    }
    span.record("gen_ai.usage.input_tokens", as_i64(usage.prompt));
    span.record("gen_ai.usage.output_tokens", as_i64(usage.completion));
    span.record("chatbox.tokens_estimated", estimated);
}

/// Records how the reply ended on `span`; a failed or cut reply marks the span as an error.
pub fn record_reply_end(span: &Span, end: Option<&impl std::fmt::Debug>, ok: bool) {
    match end {
        Some(end) => span.record("chatbox.reply.end", tracing::field::debug(end)),
        None => span.record("chatbox.reply.end", "not_started"),
    };
    if !ok {
        span.record("otel.status_code", "ERROR");
    }
}

/// The span of one provider attempt (open the stream and wait for its first event), a child of
/// the current (reply) span. `attempt` counts from 1 within the reply; `fallback` says the
/// provider is not the session model's own.
pub fn attempt_span(model: &Model, attempt: u32, fallback: bool) -> Span {
    tracing::info_span!(
        target: TARGET,
        "provider.attempt",
        otel.kind = "client",
        otel.status_code = Empty,
        gen_ai.system = model.kind,
        gen_ai.request.model = &*model.upstream_model,
        chatbox.provider.id = model.info.id.as_str(),
        chatbox.attempt = i64::from(attempt),
        chatbox.fallback = fallback,
        error.type = Empty,
    )
}

/// Marks an attempt as failed with `error_type` (`transient`, `throttled`, `permanent`,
/// `timeout`).
pub fn record_attempt_failed(span: &Span, error_type: &'static str) {
    span.record("error.type", error_type);
    span.record("otel.status_code", "ERROR");
}

/// The span of one store operation (all its retries), a child of the current span.
pub fn store_span(operation: &'static str, system: &'static str) -> Span {
    tracing::info_span!(
        target: TARGET,
        "store",
        otel.name = format!("store {operation}"),
        otel.kind = "client",
        otel.status_code = Empty,
        db.system.name = system,
        db.operation.name = operation,
        error.type = Empty,
    )
}

/// Marks a store operation as failed.
pub fn record_store_failed(span: &Span, transient: bool) {
    span.record("error.type", if transient { "transient" } else { "permanent" });
    span.record("otel.status_code", "ERROR");
}

/// OTLP integers are signed: an unsigned field would be exported as a string.
fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_user_hash_is_keyed_stable_and_short() {
        let a = hashed_user_id("secret-one", "alice");
        assert_eq!(a, hashed_user_id("secret-one", "alice"));
        assert_ne!(a, hashed_user_id("secret-two", "alice"), "keyed by the secret");
        assert_ne!(a, hashed_user_id("secret-one", "bob"));
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
    }
}
