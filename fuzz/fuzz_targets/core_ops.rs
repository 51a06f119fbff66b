//! libFuzzer entry point of `core_ops`; the checks are in `chatbox_fuzz::ops` (see its docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatbox_fuzz::ops::run(data));
