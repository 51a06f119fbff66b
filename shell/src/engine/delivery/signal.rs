//! Signals (issue 15): news for a service of every instance, not frames for connections — a
//! `stop` for a reply that may stream on another instance, the admin consoles' live events, and
//! (issue 16) an explicit end, which every instance holding the session in memory must apply.
//! The delivery service sends them through the [`super::Bus`] port: the in-process bus has no
//! other instance to tell; the fleet bus publishes them (a stop on the session's channel, admin
//! events on the fleet-wide admins channel, ends on the fleet-wide ends channel) and hands the ones
//! it receives to its listeners.
//!
//! The admin consoles' live events ([`AdminEvent`]) are what a support inbox must learn without
//! reloading — a session started, a message stored (a console adds one to the row's count), a
//! help request, a takeover, a leave, an end. Each is one small JSON object; the HTTP side
//! streams them as server-sent events (`GET {P}/admin/events`, `http::admin_events`). Events are
//! news, not state: a console that missed some (it lagged, or reconnected) re-reads the list.

use std::sync::Arc;

use chatbox_core::protocol::Sender;
use serde::{Deserialize, Serialize};

/// One signal between instances.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "signal", rename_all = "snake_case", deny_unknown_fields)]
pub enum Signal {
    /// Stop the reply of `session` streaming on the receiving instance, if any (`stop` frame).
    StopReply {
        /// Session id.
        session: String,
    },
    /// Session `session` was ended through `POST {P}/sessions/:id/end` (issue 16): an instance
    /// holding it in memory marks it ended on request, so its next message starts a new session
    /// there too instead of reviving it.
    SessionEnded {
        /// Session id.
        session: String,
    },
    /// An event for every admin console (the JSON text of an [`AdminEvent`]).
    Admin {
        /// The event's JSON text, delivered unchanged.
        event: String,
    },
    /// Never published: raised on this instance when another instance's admin leave unbound
    /// `connections` of this instance's admin connections from `session`, so they stop keeping
    /// its copy here from idling out (they did not close, so nothing else detaches them).
    /// Not on the wire: another instance cannot send it.
    #[serde(skip)]
    Unbound {
        /// Session id.
        session: String,
        /// How many connections were unbound here.
        connections: usize,
    },
}

/// The fan-out of admin events to this instance's consoles (one receiver per open stream).
#[derive(Debug)]
pub struct AdminEvents {
    tx: tokio::sync::broadcast::Sender<Arc<str>>,
}

impl Default for AdminEvents {
    fn default() -> Self {
        let (tx, _) = tokio::sync::broadcast::channel(chatbox_core::budgets::SIGNAL_QUEUE);
        Self { tx }
    }
}

impl AdminEvents {
    /// Gives `event` to every console listening on this instance (none listening is fine).
    pub fn send(&self, event: Arc<str>) {
        let _ = self.tx.send(event);
    }

    /// Whether a console listens on this instance now.
    pub fn heard(&self) -> bool {
        self.tx.receiver_count() > 0
    }

    /// A receiver of the events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}

/// One admin console event (issue 15), named on the wire by its `type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminEvent<'a> {
    /// A session's first message was stored (it now exists): `session_started`.
    SessionStarted,
    /// A message from `sender` was stored in the session: `message`.
    Message {
        /// Who sent it.
        sender: Sender,
    },
    /// The session's user asked for help: `help_requested`.
    HelpRequested,
    /// An admin took the session over: `admin_joined`.
    AdminJoined {
        /// The admin's id and name.
        admin: (&'a str, &'a str),
    },
    /// The assisting admin left (handed the session back to the AI): `admin_left`.
    AdminLeft {
        /// The admin's id and name.
        admin: (&'a str, &'a str),
    },
    /// The session ended (by its owner, or idle): `session_ended`.
    SessionEnded,
}

/// Every event name, as documented.
pub const ADMIN_EVENTS: [&str; 6] =
    ["session_started", "message", "help_requested", "admin_joined", "admin_left", "session_ended"];

impl AdminEvent<'_> {
    /// The event's `type`.
    pub const fn kind(&self) -> &'static str {
        match self {
            AdminEvent::SessionStarted => "session_started",
            AdminEvent::Message { .. } => "message",
            AdminEvent::HelpRequested => "help_requested",
            AdminEvent::AdminJoined { .. } => "admin_joined",
            AdminEvent::AdminLeft { .. } => "admin_left",
            AdminEvent::SessionEnded => "session_ended",
        }
    }

    /// The event's JSON text about `session` of `owner` (empty when unknown), stamped `at`.
    pub fn to_json(
        &self,
        session: &str,
        owner: &str,
        at: chrono::DateTime<chrono::Utc>,
    ) -> serde_json::Result<String> {
        let (sender, admin) = match *self {
            AdminEvent::Message { sender } => (Some(sender.as_str()), None),
            AdminEvent::AdminJoined { admin } | AdminEvent::AdminLeft { admin } => {
                (None, Some(admin))
            }
            _ => (None, None),
        };
        serde_json::to_string(&EventBody {
            kind: self.kind(),
            session_id: session,
            user_id: owner,
            sender,
            admin_id: admin.map(|(id, _)| id),
            admin_name: admin.map(|(_, name)| name),
            timestamp: at,
        })
    }
}

/// One event's JSON body (fields that do not apply are omitted).
#[derive(Debug, Serialize)]
struct EventBody<'a> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_serialise_without_the_fields_that_do_not_apply() {
        let at = chrono::DateTime::UNIX_EPOCH;
        let json = AdminEvent::HelpRequested.to_json("s", "u", at).expect("serialises");
        let json: serde_json::Value = serde_json::from_str(&json).expect("JSON");
        assert_eq!(
            json,
            serde_json::json!({"type":"help_requested","session_id":"s","user_id":"u","timestamp":"1970-01-01T00:00:00Z"})
        );
        let admin = AdminEvent::AdminJoined { admin: ("a1", "Ann") }.to_json("s", "", at).unwrap();
        let admin: serde_json::Value = serde_json::from_str(&admin).unwrap();
        assert_eq!(
            (admin["admin_id"].as_str(), admin["admin_name"].as_str()),
            (Some("a1"), Some("Ann"))
        );
        assert!(admin.get("user_id").is_none(), "an unknown owner is omitted");
    }

    #[test]
    fn every_event_is_named_as_documented() {
        let sender = Sender::User;
        let admin = ("a", "A");
        let all = [
            AdminEvent::SessionStarted,
            AdminEvent::Message { sender },
            AdminEvent::HelpRequested,
            AdminEvent::AdminJoined { admin },
            AdminEvent::AdminLeft { admin },
            AdminEvent::SessionEnded,
        ];
        assert_eq!(all.map(|e| e.kind()), ADMIN_EVENTS);
    }
}
