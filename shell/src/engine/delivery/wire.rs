//! The fleet bus's message: what one instance publishes so the others deliver a frame to their
//! own connections (issue 14). A small versioned JSON object; [`BusMessage::decode`] never
//! panics and rejects anything it does not know, since Redis is shared infrastructure and a
//! message may come from an older or newer instance, or from anyone with access to it.
//!
//! [`ReplayEntry`] is the entry of a reply's Redis stream (the shared replay buffer), read back
//! by whichever instance serves a resume; it is decoded with the same care.

use chatbox_core::budgets::BUS_MESSAGE_MAX_BYTES;
use serde::{Deserialize, Serialize};

use super::Signal;

/// The version this build writes and reads.
pub const BUS_VERSION: u32 = 1;

/// What the receiving instances do with their own connections.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum BusEvent {
    /// `frame` to every connection bound to `session`.
    Session {
        /// Session id.
        session: String,
        /// The serialised frame, delivered unchanged.
        frame: String,
    },
    /// `frame` to the admin connections bound to `session` that are not `owner`'s.
    SessionAdmins {
        /// Session id.
        session: String,
        /// The session owner's user id.
        owner: String,
        /// The serialised frame.
        frame: String,
    },
    /// `frame` to every connection of `user`.
    User {
        /// User id.
        user: String,
        /// The serialised frame.
        frame: String,
    },
    /// The admin `admin` left `session`: unbind their connections from it.
    UnbindAdmin {
        /// Session id.
        session: String,
        /// The admin's user id.
        admin: String,
        /// The session owner's user id (never unbound).
        owner: String,
    },
    /// A signal for the receiving instance's services (issue 15).
    Signal {
        /// The signal.
        signal: Signal,
    },
}

/// One bus message: version, publishing instance and event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BusMessage {
    /// Always [`BUS_VERSION`] when written by this build.
    pub v: u32,
    /// The publishing instance's id, so it ignores its own publications.
    pub from: String,
    /// What to deliver.
    pub event: BusEvent,
}

/// Why a bus message was rejected.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusDecodeError {
    /// Larger than [`BUS_MESSAGE_MAX_BYTES`].
    #[error("bus message of {0} bytes exceeds the limit")]
    TooLarge(usize),
    /// Not a bus message of any version.
    #[error("bus message does not parse: {0}")]
    Malformed(String),
    /// A version this build does not read.
    #[error("bus message version {0} is not supported")]
    Version(u32),
}

impl BusMessage {
    /// A message of this build's version from instance `from`.
    pub fn new(from: &str, event: BusEvent) -> Self {
        BusMessage { v: BUS_VERSION, from: from.to_string(), event }
    }

    /// The JSON text published.
    pub fn encode(&self) -> String {
        // A struct of strings and an integer always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a received payload; never panics.
    pub fn decode(bytes: &[u8]) -> Result<BusMessage, BusDecodeError> {
        if bytes.len() > BUS_MESSAGE_MAX_BYTES {
            return Err(BusDecodeError::TooLarge(bytes.len()));
        }
        #[derive(Deserialize)]
        struct Versioned {
            v: u32,
        }
        let versioned: Versioned =
            serde_json::from_slice(bytes).map_err(|e| BusDecodeError::Malformed(e.to_string()))?;
        if versioned.v != BUS_VERSION {
            return Err(BusDecodeError::Version(versioned.v));
        }
        serde_json::from_slice(bytes).map_err(|e| BusDecodeError::Malformed(e.to_string()))
    }
}

/// One recorded frame of a reply in the shared replay buffer (the `m` field of a stream entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplayEntry {
    /// Always [`BUS_VERSION`] when written by this build.
    pub v: u32,
    /// The session the reply belongs to (a resume must name the same one).
    pub session: String,
    /// The frame's seq within its reply.
    pub seq: u64,
    /// Whether it is the reply's last frame.
    pub last: bool,
    /// The serialised frame, replayed unchanged.
    pub frame: String,
}

impl ReplayEntry {
    /// An entry of this build's version.
    pub fn new(session: &str, seq: u64, last: bool, frame: &str) -> Self {
        ReplayEntry { v: BUS_VERSION, session: session.to_string(), seq, last, frame: frame.into() }
    }

    /// The JSON text stored.
    pub fn encode(&self) -> String {
        // Strings, an integer and a bool always serialise.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses a stored entry; never panics.
    pub fn decode(bytes: &[u8]) -> Result<ReplayEntry, BusDecodeError> {
        if bytes.len() > BUS_MESSAGE_MAX_BYTES {
            return Err(BusDecodeError::TooLarge(bytes.len()));
        }
        let entry: ReplayEntry =
            serde_json::from_slice(bytes).map_err(|e| BusDecodeError::Malformed(e.to_string()))?;
        if entry.v != BUS_VERSION {
            return Err(BusDecodeError::Version(entry.v));
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_bad_ones_are_rejected() {
        let message = BusMessage::new(
            "i1",
            BusEvent::SessionAdmins { session: "s".into(), owner: "u".into(), frame: "{}".into() },
        );
        assert_eq!(BusMessage::decode(message.encode().as_bytes()), Ok(message));
        assert_eq!(
            BusMessage::decode(br#"{"v":2,"from":"x","event":{"kind":"user"}}"#),
            Err(BusDecodeError::Version(2))
        );
        for bad in [&b"not json"[..], b"{}", br#"{"v":1,"from":"x","event":{"kind":"nope"}}"#] {
            assert!(matches!(BusMessage::decode(bad), Err(BusDecodeError::Malformed(_))));
        }
        let stop = BusMessage::new(
            "i1",
            BusEvent::Signal { signal: Signal::StopReply { session: "s".into() } },
        );
        assert_eq!(BusMessage::decode(stop.encode().as_bytes()), Ok(stop));
        let event = r#"{"v":1,"from":"x","event":{"kind":"signal","signal":{"signal":"admin","event":"{}"}}}"#;
        assert!(BusMessage::decode(event.as_bytes()).is_ok());
        let unknown = r#"{"v":1,"from":"x","event":{"kind":"signal","signal":{"signal":"nope"}}}"#;
        assert!(matches!(
            BusMessage::decode(unknown.as_bytes()),
            Err(BusDecodeError::Malformed(_))
        ));
        let huge = vec![b' '; BUS_MESSAGE_MAX_BYTES + 1];
        assert_eq!(BusMessage::decode(&huge), Err(BusDecodeError::TooLarge(huge.len())));
    }

    #[test]
    fn replay_entries_round_trip_and_bad_ones_are_rejected() {
        let entry = ReplayEntry::new("s", 3, false, r#"{"type":"ai_response"}"#);
        assert_eq!(ReplayEntry::decode(entry.encode().as_bytes()), Ok(entry));
        let v2 = br#"{"v":2,"session":"s","seq":1,"last":true,"frame":"{}"}"#;
        assert_eq!(ReplayEntry::decode(v2), Err(BusDecodeError::Version(2)));
        for bad in [&b"[]"[..], br#"{"v":1,"session":"s","seq":-1,"last":true,"frame":""}"#] {
            assert!(matches!(ReplayEntry::decode(bad), Err(BusDecodeError::Malformed(_))));
        }
    }
}
