//! `bus_message`: the fleet bus decoder (issue 14) driven by arbitrary bytes.
//!
//! Checked: `BusMessage::decode` and `ReplayEntry::decode` (the shared replay buffer's stream
//! entries) never panic; every `Ok` message or entry has this build's version and re-encodes to
//! JSON that decodes to the same value (the encoder and decoder agree).

use chatbox::engine::delivery::wire::{BusMessage, ReplayEntry, BUS_VERSION};

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
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_bus_seeds_run_clean() {
        let seeds: Vec<_> =
            crate::seeds::all().into_iter().filter(|(t, _, _)| *t == "bus_message").collect();
        assert_eq!(seeds.len(), 8);
        for (_, _, bytes) in seeds {
            super::run(&bytes);
        }
    }
}
