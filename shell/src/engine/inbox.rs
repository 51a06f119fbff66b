//! The admin consoles' live events (issue 15): what a support inbox must learn without reloading
//! — a session started, a message stored (a console adds one to the row's count), a help request, a takeover,
//! a leave, an end. Each is one small JSON object sent through the delivery service, which gives
//! it to this instance's consoles and, in a fleet, publishes it on the admins channel so every
//! instance's consoles get it. The HTTP side streams them as server-sent events
//! (`GET {P}/admin/events`, `http::admin_events`). Events are news, not state: a console that
//! missed some (it lagged, or reconnected) re-reads the list.

use chatbox_core::protocol::Sender;
use serde::Serialize;

use super::hub::Engine;

/// A session's first message was stored (it now exists).
pub const SESSION_STARTED: &str = "session_started";
/// A message was stored in a session.
pub const MESSAGE: &str = "message";
/// The session's user asked for help.
pub const HELP_REQUESTED: &str = "help_requested";
/// An admin took the session over.
pub const ADMIN_JOINED: &str = "admin_joined";
/// The assisting admin left (handed the session back to the AI).
pub const ADMIN_LEFT: &str = "admin_left";
/// The session ended (by its owner, or idle).
pub const SESSION_ENDED: &str = "session_ended";

/// Every event name, as documented.
pub const EVENTS: [&str; 6] =
    [SESSION_STARTED, MESSAGE, HELP_REQUESTED, ADMIN_JOINED, ADMIN_LEFT, SESSION_ENDED];

/// One event's JSON body (fields that do not apply are omitted).
#[derive(Debug, Serialize)]
struct Event<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_name: Option<&'a str>,
    timestamp: chrono::DateTime<chrono::Utc>,
}

/// What an event says besides its kind and session.
#[derive(Debug, Default, Clone, Copy)]
pub struct Details<'a> {
    /// Who sent the message (`message`).
    pub sender: Option<Sender>,
    /// The admin (`admin_joined`, `admin_left`).
    pub admin: Option<(&'a str, &'a str)>,
}

/// Sends event `kind` about `session` to every admin console (this instance and the fleet).
/// The owner comes from the live session table when it holds the session.
pub fn emit(engine: &Engine, kind: &'static str, session: &str, details: Details<'_>) {
    let user_id = engine.sessions.owner_of(session).unwrap_or_default();
    let event = Event {
        kind,
        session_id: session,
        user_id: &user_id,
        sender: details.sender.map(Sender::as_str),
        admin_id: details.admin.map(|(id, _)| id),
        admin_name: details.admin.map(|(_, name)| name),
        timestamp: engine.frame_now(),
    };
    match serde_json::to_string(&event) {
        Ok(json) => engine.delivery.admin_event(json),
        Err(error) => tracing::warn!(%error, "admin event not encoded"),
    }
}

/// A message from `sender` was stored in `session`; the first one also announces the session
/// (the table counts user and admin messages, so a count of one after a user's message means a
/// new session: a session loaded from the store starts from its stored count).
pub fn message(engine: &Engine, session: &str, sender: Sender) {
    let first = engine.sessions.with(|t| t.get(session).map(|s| s.message_count())) == Some(1);
    if first && sender == Sender::User {
        emit(engine, SESSION_STARTED, session, Details::default());
    }
    emit(engine, MESSAGE, session, Details { sender: Some(sender), ..Details::default() });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_without_the_fields_that_do_not_apply() {
        let at = chrono::DateTime::UNIX_EPOCH;
        let event = Event {
            kind: HELP_REQUESTED,
            session_id: "s",
            user_id: "u",
            sender: None,
            admin_id: None,
            admin_name: None,
            timestamp: at,
        };
        let json: serde_json::Value = serde_json::to_value(&event).expect("serialises");
        assert_eq!(
            json,
            serde_json::json!({"type":"help_requested","session_id":"s","user_id":"u","timestamp":"1970-01-01T00:00:00Z"})
        );
    }
}
