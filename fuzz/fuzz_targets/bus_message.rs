//! libFuzzer entry point of `bus_message`; the checks are in `chatbox_fuzz::bus` (see its docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatbox_fuzz::bus::run(data));
