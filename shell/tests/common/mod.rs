//! Helpers shared by the store test binaries.

pub mod contract;
