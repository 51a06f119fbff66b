//! chatbox-tests: black-box integration tests of the real binary on loopback (arrive with the chat-path issue).
//!
//! - [`harness`] — the real `chatbox` binary on loopback (temp data dir, random secret, env
//!   configuration, SIGTERM, restart) and a WebSocket client with bounded waits.
//! - [`http`] — plain HTTP requests of any method for the REST and admin route tests.
//! - [`upstream`] — a scripted upstream LLM server (OpenAI, Anthropic and Dify dialects) for
//!   the integration tests and the load generator.

#[cfg(not(madsim))]
pub mod harness;
#[cfg(not(madsim))]
pub mod http;
#[cfg(not(madsim))]
pub mod upstream;
