//! The composition root: the command line ([`cli`]) and the wiring of the real ports from
//! configuration ([`wiring`]), logging and trace export ([`telemetry`]). Neither an adapter nor http: it is the one place that knows every
//! layer, so `adapters/` only implements the engine's ports and `http/` only serves.

pub mod cli;
pub mod telemetry;
pub mod wiring;
