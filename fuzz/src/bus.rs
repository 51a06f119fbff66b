//! `bus_message`: the fleet bus decoder (issue 14) driven by arbitrary bytes.
//!
//! Every decoder of what comes back from Redis, on arbitrary bytes: `BusMessage::decode` (every
//! channel's messages — a session's frames, a stop relayed to the producing instance, admin
//! events on the admins channel, admin unbinds), `ReplayEntry::decode` and `decode_entries` (the
//! shared replay buffer's stream entries), and `parse_state` (a reply's alive key).
//!
//! Checked: none panics; every `Ok` message or entry has this build's version and re-encodes to
//! JSON that decodes to the same value (the encoder and decoder agree); `decode_entries` keeps an
//! entry only when it decodes and names the seq of its stream id; a state value that parses is
//! one `state_value` writes.

use chatbox::engine::delivery::fleet_replay::{decode_entries, parse_state, state_value};
use chatbox::engine::delivery::wire::{BusMessage, ReplayEntry, BUS_VERSION};
use chatbox_core::replay::Liveness;

/// One fuzz input.
pub fn run(data: &[u8]) {
    if let Ok(message) = BusMessage::decode(data) {
        assert_eq!(message.v, BUS_VERSION, "only this version decodes");
        let again = BusMessage::decode(message.encode().as_bytes());
        assert_eq!(again.as_ref(), Ok(&message), "encode and decode agree");
    }
    if let Ok(entry) = ReplayEntry::decode(data) {
        assert_eq!(entry.v, BUS_VERSION, "only this version decodes");
        let again = ReplayEntry::decode(entry.encode().as_bytes());
        assert_eq!(again.as_ref(), Ok(&entry), "encode and decode agree");
    }
    for id_seq in [1, 3] {
        let kept = decode_entries(vec![(id_seq, Some(data.to_vec())), (id_seq + 1, None)]);
        assert!(kept.len() <= 1, "an entry without a field is left out");
        if let Some((seq, session, frame)) = kept.first() {
            let entry = ReplayEntry::decode(data).expect("a kept entry decodes");
            assert_eq!((*seq, session, &**frame), (id_seq, &entry.session, entry.frame.as_str()));
        }
    }
    if let Some((liveness, session)) = std::str::from_utf8(data).ok().and_then(parse_state) {
        let written = state_value(liveness == Liveness::Ended, &session);
        assert_eq!(written.as_bytes(), data, "a state that parses is one that was written");
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bus_seeds_run_clean() {
        let seeds: Vec<_> =
            crate::seeds::all().into_iter().filter(|(t, _, _)| *t == "bus_message").collect();
        assert_eq!(seeds.len(), 12);
        for (_, name, bytes) in seeds {
            super::run(&bytes);
            if name.starts_with("signal_") {
                assert!(super::BusMessage::decode(&bytes).is_ok(), "{name} decodes");
            }
            if name.starts_with("state_") {
                let text = std::str::from_utf8(&bytes).expect("text");
                assert!(super::parse_state(text).is_some(), "{name} parses");
            }
        }
    }
}
