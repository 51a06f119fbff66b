//! The composition root: the command line ([`cli`]) and the wiring of the real ports from
//! configuration ([`wiring`]). Neither an adapter nor http: it is the one place that knows every
//! layer, so `adapters/` only implements the engine's ports and `http/` only serves.

pub mod cli;
pub mod wiring;
