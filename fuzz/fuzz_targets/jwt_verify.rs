//! libFuzzer entry point of `jwt_verify`; the checks are in `chatbox_fuzz::jwt` (see its docs).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| chatbox_fuzz::jwt::run(data));
