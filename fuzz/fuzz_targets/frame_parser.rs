//! libFuzzer entry point of `frame_parser`; the checks are in `chatbox_fuzz::frame` (see its docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatbox_fuzz::frame::run(data));
