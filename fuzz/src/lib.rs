//! # chatbox-fuzz — the fuzz targets' logic
//!
//! Each target in `fuzz_targets/` is one line that calls `run` of a module here, so the checks
//! can also be unit-tested and replayed without libFuzzer:
//!
//! - [`frame`] — `frame_parser`: client-frame parsing, sanitising, validation, serialisation.
//! - [`config`] — `config_loader`: `config::load` from env and TOML, report and secret hygiene.
//! - [`jwt`] — `jwt_verify`: `Verifier::verify` against an independent HMAC and claim oracle.
//! - [`ops`] — `core_ops`: `SessionTable` and `RateLimiter` against reference models.
//! - [`bus`] — `bus_message`: the fleet bus decoder, encode/decode agreement.
//! - [`input`] — the byte format of the structured inputs and its encoder.
//! - [`seeds`] — the committed seed corpus, as values (`cargo test ... -- --ignored
//!   write_corpus` rewrites `corpus/`).
//!
//! A panic in any `run` is a bug in chatbox (or in a check here): never a rejected input.

pub mod bus;
pub mod config;
pub mod frame;
pub mod input;
pub mod jwt;
pub mod ops;
pub mod seeds;
