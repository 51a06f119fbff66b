//! Signals (issue 15): news for a service of every instance, not frames for connections — a
//! `stop` for a reply that may stream on another instance, the admin consoles' live events, and
//! (issue 16) an explicit end, which every instance holding the session in memory must apply.
//! The delivery service sends them through the [`super::Bus`] port: the in-process bus has no
//! other instance to tell; the fleet bus publishes them (a stop on the session's channel, admin
//! events and ends on fleet-wide channels) and hands the ones it receives to its listeners.

use std::sync::Arc;

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
    /// An event for every admin console (the JSON text of an `admin_event`, see `engine::inbox`).
    Admin {
        /// The event's JSON text, delivered unchanged.
        event: String,
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

    /// A receiver of the events from now on.
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }
}
