//! # chatbox — the server
//!
//! The server drives chatbox-core's state machines with real IO: `engine` (async services),
//! `http` (router, WebSocket loop) and `adapters` (stores, providers, notifiers). They arrive with
//! the chat-path issue; until then this crate only carries the command-line entry point.
