//! libFuzzer entry point of `config_loader`; the checks are in `chatbox_fuzz::config` (see its docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatbox_fuzz::config::run(data));
